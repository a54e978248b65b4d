//! Deleting layers: batches, children first, wipe.

use std::collections::{HashMap, HashSet};

use layerstore_lockfile::WriteGuard;

use crate::crash;
use crate::error::{Error, Result};
use crate::records::{self, SetAside};
use crate::state::State;

use super::{LayerStore, LayerWriter, tar_split_name, tar_split_temp_name, usable};

impl LayerStore {
    /// Deletes the layer (by ID, name or unique prefix): unmounts it, removes its files,
    /// tar-split and big data, and its record. A layer that is another's parent is refused.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.write_session()?.delete(key)
    }

    /// Deletes several layers, saving `layers.json` twice in all (not twice per layer).
    /// Each must have no children outside the batch.
    pub fn delete_many(&self, keys: &[&str]) -> Result<()> {
        self.write_session()?.delete_many(keys)
    }

    /// Deletes every layer, newest first (Go's `Wipe`), in one batch. Records that are not
    /// usable layers (see [`check`](Self::check)) are moved to the set-aside file, their files
    /// left alone.
    pub fn wipe(&self) -> Result<()> {
        self.write_session()?.wipe()
    }
}

impl LayerWriter<'_> {
    /// Deletes the layer (see [`LayerStore::delete`]).
    pub fn delete(&mut self, key: &str) -> Result<()> {
        self.delete_many(&[key])
    }

    /// Deletes several layers (see [`LayerStore::delete_many`]).
    pub fn delete_many(&mut self, keys: &[&str]) -> Result<()> {
        let store = self.store;
        self.run(|state, guard| {
            let mut ids = Vec::with_capacity(keys.len());
            for key in keys {
                let id = state.layers[state.resolve(key)?].id.clone();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let doomed: HashSet<&str> = ids.iter().map(String::as_str).collect();
            // One pass over the store: which doomed layers have which children.
            let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
            for layer in state.live() {
                if doomed.contains(layer.parent.as_str()) {
                    if !doomed.contains(layer.id.as_str()) {
                        return Err(Error::HasChildren {
                            id: layer.parent.clone(),
                            child: layer.id.clone(),
                        });
                    }
                    children
                        .entry(layer.parent.as_str())
                        .or_default()
                        .push(layer.id.as_str());
                }
            }
            // Children before parents (post-order), so a failure half-way never orphans one.
            // A layer met again while its own children are being visited is its own ancestor
            // (a parent cycle in hand-edited records): it has a child, as Go says.
            let mut ordered: Vec<String> = Vec::with_capacity(ids.len());
            let mut done: HashSet<&str> = HashSet::new();
            let mut in_progress: HashSet<&str> = HashSet::new();
            for id in &ids {
                // (layer, expanded, its parent on this walk)
                let mut stack: Vec<(&str, bool, &str)> = vec![(id.as_str(), false, "")];
                while let Some((current, expanded, parent)) = stack.pop() {
                    if done.contains(current) {
                        continue;
                    }
                    if expanded {
                        in_progress.remove(current);
                        done.insert(current);
                        ordered.push(current.to_string());
                    } else if !in_progress.insert(current) {
                        return Err(Error::HasChildren {
                            id: parent.to_string(),
                            child: current.to_string(),
                        });
                    } else {
                        stack.push((current, true, parent));
                        for child in children.get(current).into_iter().flatten() {
                            stack.push((child, false, current));
                        }
                    }
                }
            }
            store.delete_locked(state, guard, &ordered)
        })
    }

    /// Deletes every layer (see [`LayerStore::wipe`]).
    pub fn wipe(&mut self) -> Result<()> {
        let store = self.store;
        self.run(|state, guard| {
            let mut all: Vec<(layerstore_model::Timestamp, usize, String)> = state
                .layers
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.id.is_empty())
                .map(|(i, l)| (l.created, i, l.id.clone()))
                .collect();
            all.sort_by(|a, b| {
                b.0.to_system_time()
                    .cmp(&a.0.to_system_time())
                    .then(b.1.cmp(&a.1))
            });
            let ids: Vec<String> = all.into_iter().map(|(_, _, id)| id).collect();
            store.delete_locked(state, guard, &ids)?;
            // Records that are not usable layers go to the set-aside file, not away.
            if !state.unreadable.is_empty() {
                let records = state
                    .unreadable
                    .iter()
                    .map(|u| SetAside {
                        raw: u.raw.clone(),
                        reason: format!("wiped: {}", u.reason),
                    })
                    .collect();
                records::set_aside(&store.layers_dir_rw()?, records)?;
                state.unreadable.clear();
                store.save(state, guard)?;
            }
            Ok(())
        })
    }
}

impl LayerStore {
    /// Removes the layer's files in `<driver>-layers/`: its tar-split (and temp) file and its
    /// big-data directory, never following a symlink.
    pub(super) fn remove_layer_files(&self, id: &str) -> Result<()> {
        let Some(dir) = self.open_layers_dir()? else {
            return Ok(());
        };
        dir.remove_file(&tar_split_name(id))?;
        dir.remove_file(&tar_split_temp_name(id))?;
        dir.remove_tree(id)
    }

    /// Go's delete sequence for a batch: unmount, flag `incomplete` and save once, remove
    /// driver files, tar-split and big data, drop the records, save once.
    pub(super) fn delete_locked(
        &self,
        state: &mut State,
        guard: &WriteGuard<'_>,
        ids: &[String],
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // Records whose ID breaks the rule: moved to the set-aside file, their files untouched.
        let mut set_aside = Vec::new();
        for id in ids {
            if let Some(&index) = state.by_id.get(id)
                && let Err(e) = usable(&state.layers[index])
            {
                let mut record = state.layers[index].clone();
                record.set_incomplete(false);
                set_aside.push((
                    index,
                    SetAside::layer(
                        &record,
                        format!("deleted: {}", layerstore_model::error_chain(&e)),
                    )?,
                ));
            }
        }
        if !set_aside.is_empty() {
            let (indexes, records): (Vec<usize>, Vec<SetAside>) = set_aside.into_iter().unzip();
            records::set_aside(&self.layers_dir_rw()?, records)?;
            for index in indexes {
                state.remove(index);
            }
        }
        let mut flagged = false;
        for id in ids {
            let Some(&index) = state.by_id.get(id) else {
                continue;
            };
            while state.layers[index].mount_count > 0 {
                self.unmount_locked(state, id, false)?;
            }
            if !state.layers[index].is_incomplete() {
                state.layers[index].set_incomplete(true);
                flagged = true;
            }
        }
        if flagged {
            self.save(state, guard)?;
        }
        crash::point(crash::DELETE_AFTER_INCOMPLETE_RECORD);
        let mut failure = None;
        for id in ids {
            let Some(&index) = state.by_id.get(id) else {
                continue;
            };
            let removed = self
                .driver
                .remove(id)
                .map_err(|e| Error::driver(id, "remove", e))
                .and_then(|()| {
                    crash::point(crash::DELETE_AFTER_DRIVER_REMOVE);
                    self.remove_layer_files(id)
                });
            match removed {
                Ok(()) => state.remove(index),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        self.save(state, guard)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
