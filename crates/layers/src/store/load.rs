//! Locking and loading: fresh records under `layers.lock`, reloads, the cleanup of incomplete
//! layers, and the saves of `layers.json` and `mountpoints.json`.

use std::collections::HashMap;
use std::fs::{self};
use std::io::{self};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use layerstore_lockfile::{LastWrite, WriteGuard};
use layerstore_model::{Layer, MountPointRecord, encode_mountpoints_json};

use crate::crash;
use crate::error::{Error, Result};
use crate::files::read_store_file;
use crate::records::{self, Records};
use crate::state::State;

use super::LayerStore;

/// What a refresh under a read lock found.
pub(super) enum Refresh {
    Fresh,
    /// Incomplete layers or duplicate names: cleaning up needs the write lock.
    NeedWriteLock,
}

fn mtime_of(path: &Path) -> Result<Option<SystemTime>> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.modified().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

impl LayerStore {
    pub(super) fn is_stale(&self, state: &State, current: &LastWrite) -> Result<bool> {
        if state.layers_seen.as_ref() != Some(current)
            || mtime_of(&self.layers_json)? != state.layers_mtime
        {
            return Ok(true);
        }
        if let Some(lock) = &self.mounts_lock {
            let guard = lock.rlock()?;
            if state.mounts_seen != Some(guard.get_last_write()?) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reloads what changed. With the write lock (`write`), also deletes incomplete layers
    /// and fixes names given to several layers, as Go's `load` does; without it, reports that
    /// such a cleanup is needed instead of changing anything.
    ///
    /// With `dirty_ok` (a reader that cannot upgrade because it keeps its shared lock), the
    /// records are installed as they are (names fixed in memory only) and marked stale, so the
    /// next call cleans up.
    pub(super) fn refresh(
        &self,
        state: &mut State,
        current: LastWrite,
        write: Option<&WriteGuard<'_>>,
        dirty_ok: bool,
    ) -> Result<Refresh> {
        let layers_mtime = mtime_of(&self.layers_json)?;
        if state.layers_seen.as_ref() != Some(&current) || layers_mtime != state.layers_mtime {
            let records = self.read_layers_json()?;
            let mut layers = records.layers;
            // Later records win a name (Go); remember whether anything had to change.
            let mut owner: HashMap<&str, usize> = HashMap::new();
            let mut conflicts = Vec::new();
            for (index, layer) in layers.iter().enumerate() {
                for name in &layer.names {
                    if let Some(earlier) = owner.insert(name, index) {
                        conflicts.push((earlier, name.clone()));
                    }
                }
            }
            let failed = self.cleanup_failures.lock().clone();
            let to_clean = |l: &Layer| l.is_incomplete() && !failed.contains_key(&l.id);
            let incomplete = !self.read_only && layers.iter().any(to_clean);
            if let Some((_, name)) = conflicts.first()
                && self.read_only
            {
                return Err(Error::DuplicateNamesReadOnly {
                    path: self.layers_json.clone(),
                    name: name.clone(),
                });
            }
            let dirty = (incomplete || !conflicts.is_empty()) && write.is_none();
            if dirty && !dirty_ok {
                return Ok(Refresh::NeedWriteLock);
            }
            for (earlier, name) in &conflicts {
                layers[*earlier].names.retain(|n| n != name);
            }
            for layer in &mut layers {
                layer.read_only = self.read_only;
            }
            *state = State {
                layers,
                unreadable: records.unreadable,
                ..State::default()
            };
            state.rebuild();
            state.layers_seen = (!dirty).then_some(current);
            state.layers_mtime = layers_mtime;
            self.load_mounts(state)?;
            if let Some(guard) = write {
                let doomed: Vec<String> = state
                    .live()
                    .filter(|l| to_clean(l))
                    .map(|l| l.id.clone())
                    .collect();
                if !doomed.is_empty() {
                    self.clean_up_incomplete(state, guard, doomed);
                } else if !conflicts.is_empty() {
                    self.save(state, guard)?;
                }
            }
        } else {
            self.load_mounts(state)?;
        }
        Ok(Refresh::Fresh)
    }

    /// Deletes incomplete layers (Go's load does). One that cannot be deleted (its files
    /// cannot be removed: a busy mount, a read-only filesystem, ...) stays flagged and is
    /// reported by [`cleanup_failures`](Self::cleanup_failures); the others are still deleted
    /// and the store opens. The next handle tries again, and `check` reports the layer.
    fn clean_up_incomplete(&self, state: &mut State, guard: &WriteGuard<'_>, doomed: Vec<String>) {
        let mut remaining = doomed;
        while !remaining.is_empty() {
            let Err(err) = self.delete_locked(state, guard, &remaining) else {
                return;
            };
            // The batch stops at its first failure: the first layer still there.
            let failed = remaining
                .iter()
                .position(|id| state.by_id.contains_key(id))
                .unwrap_or(0);
            let id = remaining.remove(failed);
            self.cleanup_failures
                .lock()
                .insert(id, layerstore_model::error_chain(&err));
            remaining.retain(|id| state.by_id.contains_key(id));
            // What is on disk is the truth now (a save may have failed too): read it again.
            state.layers_seen = None;
        }
    }

    /// The incomplete layers (left by an interrupted create or delete) this handle could not
    /// delete when it loaded the records, with why: they stay listed, flagged `incomplete`,
    /// until a later open (or `check --repair`) deletes them.
    pub fn cleanup_failures(&self) -> Vec<(String, String)> {
        self.cleanup_failures
            .lock()
            .iter()
            .map(|(id, err)| (id.clone(), err.clone()))
            .collect()
    }

    /// Loads `mountpoints.json` if its lock says it changed (read-write stores only).
    fn load_mounts(&self, state: &mut State) -> Result<()> {
        let Some(lock) = &self.mounts_lock else {
            return Ok(());
        };
        let guard = lock.rlock()?;
        let current = guard.get_last_write()?;
        if state.mounts_seen.as_ref() == Some(&current) {
            return Ok(());
        }
        state.mounts_bytes = self.read_mounts_file(state)?;
        state.mounts_seen = Some(current);
        Ok(())
    }

    /// Applies `mountpoints.json` to `state`; returns the bytes it held (`None`: no file).
    pub(super) fn read_mounts_file(&self, state: &mut State) -> Result<Option<Vec<u8>>> {
        let bytes = read_store_file(&self.mounts_json)?;
        let (records, bad) = self.parse_mountpoints_json(bytes.as_deref())?;
        state.apply_mounts(records, |id, path| self.trusted_mount_point(id, path));
        state.untrusted_mounts.extend(bad);
        Ok(bytes)
    }

    /// Whether `path`, read from `mountpoints.json` (which anyone who can write the run root
    /// can edit), may be layer `id`'s mount point: an absolute, plain path that lies below the
    /// driver's home (or an additional image store's) and names the layer, where it resolves
    /// (symlinks included) to a place that still does. `/`, a host directory, another layer's
    /// directory or a path through a symlink out of the home are refused; the store never
    /// hands them out, counts them or unmounts them.
    pub(crate) fn trusted_mount_point(&self, id: &str, path: &Path) -> bool {
        use std::path::Component;
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
        {
            return false;
        }
        let names_layer = |home: &Path, path: &Path| {
            path.strip_prefix(home)
                .is_ok_and(|rel| rel.components().any(|c| c.as_os_str() == id))
        };
        let homes: Vec<PathBuf> = std::iter::once(self.driver.home().to_path_buf())
            .chain(self.driver.additional_image_stores())
            .collect();
        match fs::canonicalize(path) {
            Ok(real) => homes
                .iter()
                .filter_map(|home| fs::canonicalize(home).ok())
                .any(|home| names_layer(&home, &real)),
            // A mount point that is gone (a stale count) is judged by its spelling.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                homes.iter().any(|home| names_layer(home, path))
            }
            Err(_) => false,
        }
    }

    /// The records of `layers.json` as the file holds them (none if it does not exist).
    pub(crate) fn read_layers_json(&self) -> Result<Records> {
        let Some(bytes) = read_store_file(&self.layers_json)? else {
            return Ok(Records::default());
        };
        records::parse(&bytes).map_err(|source| Error::CorruptLayers {
            path: self.layers_json.clone(),
            source,
        })
    }

    /// The records of `mountpoints.json` as the file holds them (none if it does not exist),
    /// and those that do not decode.
    pub(crate) fn read_mountpoints_json(
        &self,
    ) -> Result<(Vec<MountPointRecord>, Vec<MountPointRecord>)> {
        self.parse_mountpoints_json(read_store_file(&self.mounts_json)?.as_deref())
    }

    /// The records in `bytes` of `mountpoints.json` (none if there is no file), and those
    /// that do not decode.
    fn parse_mountpoints_json(
        &self,
        bytes: Option<&[u8]>,
    ) -> Result<(Vec<MountPointRecord>, Vec<MountPointRecord>)> {
        let Some(bytes) = bytes else {
            return Ok(Default::default());
        };
        records::parse_mounts(bytes).map_err(|source| Error::CorruptMounts {
            path: self.mounts_json.clone(),
            source,
        })
    }

    /// Saves `layers.json` (token first, then the file, atomically) and `mountpoints.json`.
    pub(super) fn save(&self, state: &mut State, guard: &WriteGuard<'_>) -> Result<()> {
        if state.tombstones > 0 {
            state.rebuild();
        }
        state.layers_seen = Some(guard.record_write()?);
        crash::point(crash::SAVE_AFTER_TOKEN);
        let (layers, unreadable) = (&state.layers, &state.unreadable);
        self.layers_dir_rw()?
            .write_atomic(layerstore_model::LAYERS_JSON, 0o600, |out| {
                records::write(out, layers, unreadable)
            })?;
        state.layers_mtime = mtime_of(&self.layers_json)?;
        self.save_mounts(state)
    }

    /// Saves `mountpoints.json` under its own lock (token first), unless it holds these
    /// records already: no other writer since we read or wrote it, and the same bytes. Most
    /// layer changes (an import, a new layer) leave the mounts as they were, and rewriting
    /// them cost two fsyncs of an import on ext4 (3 ms).
    pub(super) fn save_mounts(&self, state: &mut State) -> Result<()> {
        let Some(lock) = &self.mounts_lock else {
            return Ok(());
        };
        let guard = lock.lock()?;
        let bytes = encode_mountpoints_json(&state.mount_records())?;
        if state.mounts_bytes.as_deref() == Some(bytes.as_slice())
            && state.mounts_seen == Some(guard.get_last_write()?)
        {
            return Ok(());
        }
        state.mounts_seen = Some(guard.record_write()?);
        state.mounts_bytes = None;
        self.mounts_dir_rw()?
            .write_atomic(layerstore_model::MOUNTPOINTS_JSON, 0o600, |out| {
                out.write_all(&bytes)
                    .map_err(|e| Error::io("write", &self.mounts_json, e))
            })?;
        state.mounts_bytes = Some(bytes);
        Ok(())
    }
}
