//! Repairing what was found, under the write lock: broken layers deleted children first,
//! records set aside, orphans and temp files removed, mount counts fixed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use layerstore_driver::mount::is_mount_point;
use layerstore_lockfile::WriteGuard;
use layerstore_model::validate_store_id;
use rustix::fs::FileType;

use crate::error::{Error, Result};
use crate::files::StoreDir;
use crate::records::{self, SetAside};
use crate::state::State;
use crate::store::LayerStore;

use super::{Action, Beyond, CheckOptions, CheckReport, Problem, Repair};

impl LayerStore {
    /// The driver's own directories in its home (`dir/`, `l/`, `staging/`, `subvolumes/`,
    /// ...): its directories that are not named after a record.
    fn driver_layout_dirs(&self, state: &State) -> Vec<String> {
        let Ok(Some(home)) = StoreDir::open(self.driver.home()) else {
            return Vec::new();
        };
        home.entries()
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, file_type)| {
                *file_type == FileType::Directory && !state.by_id.contains_key(name)
            })
            .map(|(name, _)| name)
            .collect()
    }

    /// The symlinks named `id` in the driver's home or one of its own directories
    /// (`layout_dirs`): where a driver asked to unmount or remove layer `id` would follow a
    /// symlink to what it points to (another store's layer).
    fn symlinked_layer_entries(&self, id: &str, layout_dirs: &[String]) -> Vec<PathBuf> {
        let Ok(Some(home)) = StoreDir::open(self.driver.home()) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        if home.file_type(id).ok().flatten() == Some(FileType::Symlink) {
            found.push(home.join(id));
        }
        for dir in layout_dirs {
            if let Ok(Some(dir)) = home.subdir(dir, false)
                && dir.file_type(id).ok().flatten() == Some(FileType::Symlink)
            {
                found.push(dir.join(id));
            }
        }
        found
    }

    /// Removes layer `id`'s driver data: the symlinks standing where the driver keeps it
    /// first (the links themselves), so that the driver follows none of them.
    fn remove_driver_data(&self, id: &str, layout_dirs: &[String]) -> Result<()> {
        for link in self.symlinked_layer_entries(id, layout_dirs) {
            remove_entry(&link)?;
        }
        self.driver
            .remove(id)
            .map_err(|e| Error::driver(id, "remove", e))
    }

    /// Asks the driver to release a mount of layer `id` it may count (its own unmount and
    /// bookkeeping), unless a symlink stands where the driver keeps the layer: then only a
    /// kernel mount at `mounted` (from the mount table) is detached, through its descriptor.
    fn release_mount(
        &self,
        id: &str,
        layout_dirs: &[String],
        mounted: Option<&Path>,
    ) -> Result<()> {
        if self.symlinked_layer_entries(id, layout_dirs).is_empty() {
            return self
                .driver
                .put(id)
                .map_err(|e| Error::driver(id, "unmount", e));
        }
        match mounted {
            Some(path) => self.detach_layer_mount(id, path),
            None => Ok(()),
        }
    }

    /// Detaches the mount at `mount_point` (as the kernel's mount table spells it) if it is a
    /// mount root below the driver's home whose path names layer `id`. The mount is opened
    /// from the home without following any symlink (`openat2` with `RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS`) and detached through that descriptor, so whatever the path leads
    /// to meanwhile, only that mount is affected: never another store's layer, never a mount
    /// reached through a symlink.
    fn detach_layer_mount(&self, id: &str, mount_point: &Path) -> Result<()> {
        use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, StatxAttributes, StatxFlags};
        let refuse = |why: &str| {
            Error::io(
                "unmount",
                mount_point,
                io::Error::other(format!("{why}: left mounted")),
            )
        };
        let home = fs::canonicalize(self.driver.home())
            .map_err(|e| Error::io("resolve", self.driver.home(), e))?;
        let below = mount_point
            .strip_prefix(&home)
            .map_err(|_| refuse("not below the driver's home"))?;
        if !below.components().any(|c| c.as_os_str() == id) {
            return Err(refuse("not a mount of this layer"));
        }
        let home_fd = rustix::fs::open(
            &home,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", &home, e.into()))?;
        let fd = rustix::fs::openat2(
            &home_fd,
            below,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => {
                refuse("reached through a symlink")
            }
            e => Error::io("open", mount_point, e.into()),
        })?;
        let st = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
            .map_err(|e| Error::io("stat", mount_point, e.into()))?;
        if !(st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
            && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
        {
            return Err(refuse("not a mount point"));
        }
        // The magic link resolves to exactly the mount the descriptor holds.
        let by_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        rustix::mount::unmount(by_fd.as_str(), rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| Error::io("unmount", mount_point, e.into()))
    }

    /// Moves unreadable records and layers with an unsafe ID to the set-aside file (those no
    /// layer names as its parent), and drops them from `state`. Answers whether `state`
    /// changed.
    fn set_aside_unusable(
        &self,
        state: &mut State,
        problems: &[Problem],
        actions: &mut Vec<Action>,
        fixed: &mut Fixed,
    ) -> Result<bool> {
        let parents: HashSet<String> = state
            .live()
            .filter_map(|l| l.parent().map(str::to_string))
            .collect();
        let mut moved: Vec<(SetAside, Repair)> = Vec::new();
        let mut refused = Vec::new();
        for problem in problems {
            let (id, index, record) = match problem {
                Problem::UnreadableRecord { index, id, detail } => {
                    let Some(unreadable) = state.unreadable.iter().find(|u| u.index == *index)
                    else {
                        continue;
                    };
                    let record = SetAside {
                        raw: unreadable.raw.clone(),
                        reason: format!("unreadable: {detail}"),
                    };
                    (id.clone(), Some(*index), record)
                }
                Problem::UnsafeId { id, detail } => {
                    let Some(&i) = state.by_id.get(id) else {
                        continue;
                    };
                    let record = SetAside::layer(&state.layers[i], format!("unsafe ID: {detail}"))?;
                    (Some(id.clone()), None, record)
                }
                _ => continue,
            };
            let repair = Repair::SetAside {
                id: id.clone(),
                index,
            };
            match &id {
                Some(parent) if parents.contains(parent) => refused.push(Action {
                    repair,
                    error: Some(format!(
                        "layers name {parent:?} as their parent; restore or delete them first"
                    )),
                }),
                _ => moved.push((record, repair)),
            }
        }
        if moved.is_empty() {
            actions.extend(refused);
            return Ok(false);
        }
        let (records, repairs): (Vec<SetAside>, Vec<Repair>) = moved.into_iter().unzip();
        records::set_aside(&self.layers_dir_rw()?, records)?;
        for repair in repairs {
            if let Repair::SetAside { id, index } = &repair {
                match index {
                    Some(index) => state.unreadable.retain(|u| u.index != *index),
                    None => {
                        if let Some(&i) = id.as_ref().and_then(|id| state.by_id.get(id)) {
                            state.remove(i);
                        }
                    }
                }
                fixed.set_aside.insert((id.clone(), *index));
            }
            actions.push(Action {
                repair,
                error: None,
            });
        }
        actions.extend(refused);
        Ok(true)
    }

    pub(super) fn check_and_repair(
        &self,
        state: &mut State,
        guard: &WriteGuard<'_>,
        options: &CheckOptions,
        beyond: &Beyond,
    ) -> Result<CheckReport> {
        *state = self.snapshot()?;
        let mut problems = self.find_problems(state, options)?;
        beyond.drop_known_parents(&mut problems);
        let mut actions = Vec::new();
        let mut fixed = Fixed::default();

        // Layers to delete: the broken ones, then everything above them.
        let broken: BTreeSet<String> = problems
            .iter()
            .filter(|p| p.breaks_layer())
            .filter_map(|p| p.layer().map(str::to_string))
            .collect();
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for layer in state.live() {
            if let Some(parent) = layer.parent() {
                children.entry(parent).or_default().push(layer.id.as_str());
            }
        }
        // Post-order from each broken layer: children before parents.
        let mut doomed: Vec<(String, Option<String>)> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for root in &broken {
            let Some(&root_index) = state.by_id.get(root) else {
                continue;
            };
            let root_id = state.layers[root_index].id.as_str();
            let mut stack = vec![(root_id, false)];
            while let Some((current, expanded)) = stack.pop() {
                if expanded {
                    // A layer whose ID breaks the rule is set aside, never deleted.
                    if validate_store_id(current).is_ok() {
                        let because = (!broken.contains(current)).then(|| root.clone());
                        doomed.push((current.to_string(), because));
                    }
                    continue;
                }
                if !seen.insert(current) {
                    continue;
                }
                stack.push((current, true));
                for child in children.get(current).into_iter().flatten() {
                    stack.push((child, false));
                }
            }
        }
        drop(children);
        // What the caller keeps (an image's or container's layer) holds up its parents too.
        let mut held: HashMap<String, String> = HashMap::new();
        for kept in &beyond.keep {
            let mut current = Some(kept.as_str());
            while let Some(id) = current {
                if held.insert(id.to_string(), kept.clone()).is_some() {
                    break;
                }
                current = state.by_id.get(id).and_then(|&i| state.layers[i].parent());
            }
        }
        let mut kept_back = Vec::new();
        doomed.retain(|(id, _)| match held.get(id) {
            Some(user) => {
                let why = if user == id {
                    "kept: an image or container uses it".to_string()
                } else {
                    format!("kept: layer {user}, which an image or container uses, stands on it")
                };
                kept_back.push(Action {
                    repair: Repair::DeleteLayer {
                        id: id.clone(),
                        descends_from: None,
                    },
                    error: Some(why),
                });
                false
            }
            None => true,
        });
        let doomed_ids: HashSet<String> = doomed.iter().map(|(id, _)| id.clone()).collect();

        // Records that are not usable layers: into the set-aside file (written before
        // layers.json, so a crash in between leaves a copy, never a loss), unless a layer
        // names them as its parent.
        let mut changed = self.set_aside_unusable(state, &problems, &mut actions, &mut fixed)?;

        // Names: the last record keeps a shared name (Go's load rule).
        for problem in &problems {
            if let Problem::DuplicateName { name, ids } = problem
                && let Some((_, earlier)) = ids.split_last()
            {
                for id in earlier {
                    if let Some(&index) = state.by_id.get(id) {
                        state.layers[index].names.retain(|n| n != name);
                        changed = true;
                    }
                    actions.push(Action {
                        repair: Repair::DropName {
                            name: name.clone(),
                            id: id.clone(),
                        },
                        error: None,
                    });
                }
                fixed.names.insert(name.clone());
            }
        }

        let layout_dirs = self.driver_layout_dirs(state);
        // Mounts the kernel disagrees with (doomed layers are unmounted below anyway).
        for problem in &problems {
            match problem {
                Problem::StaleMountCount { id, .. } if !doomed_ids.contains(id) => {
                    // The driver may still count the lost mount in this process (overlay
                    // does): let it forget, or a later mount would not remount.
                    let _ = self.release_mount(id, &layout_dirs, None);
                    if let Some(&index) = state.by_id.get(id) {
                        if let Some(path) = state.layers[index].mount_point.take() {
                            state.by_mount.remove(&path);
                        }
                        state.layers[index].mount_count = 0;
                        changed = true;
                    }
                    actions.push(Action {
                        repair: Repair::ResetMountCount { id: id.clone() },
                        error: None,
                    });
                    fixed.mounts.insert(id.clone());
                }
                Problem::UncountedMount { id, path } if !doomed_ids.contains(id) => {
                    let result = self.release_mount(id, &layout_dirs, Some(path));
                    if result.is_ok() {
                        fixed.mounts.insert(id.clone());
                    }
                    actions.push(Action {
                        repair: Repair::Unmount {
                            id: id.clone(),
                            path: path.clone(),
                        },
                        error: result.err().map(|e| layerstore_model::error_chain(&e)),
                    });
                }
                Problem::UntrustedMountRecord { id, path } => {
                    // Not applied when loading, so the next save leaves it out.
                    changed = true;
                    fixed.untrusted_mounts.insert((id.clone(), path.clone()));
                    actions.push(Action {
                        repair: Repair::DropMountRecord {
                            id: id.clone(),
                            path: path.clone(),
                        },
                        error: None,
                    });
                }
                _ => {}
            }
        }

        actions.extend(kept_back);
        // Broken layers and their descendants: unmount, flag, save; remove; save.
        for (id, _) in &doomed {
            let Some(&index) = state.by_id.get(id) else {
                continue;
            };
            // Release what is mounted for it. Best effort: the driver's remove reports
            // what is left.
            let uncounted = problems.iter().find_map(|p| match p {
                Problem::UncountedMount { id: m, path } if m == id => Some(path.clone()),
                _ => None,
            });
            let counted = state.layers[index]
                .mount_point
                .as_ref()
                .filter(|path| state.layers[index].mount_count > 0 && is_mount_point(path))
                .and_then(|path| fs::canonicalize(path).ok());
            if let Some(path) = uncounted.or(counted) {
                let _ = self.release_mount(id, &layout_dirs, Some(&path));
            } else if state.layers[index].mount_count > 0 {
                let _ = self.release_mount(id, &layout_dirs, None);
            }
            let layer = &mut state.layers[index];
            layer.mount_count = 0;
            if let Some(path) = layer.mount_point.take() {
                state.by_mount.remove(&path);
            }
            state.layers[index].set_incomplete(true);
            changed = true;
        }
        if changed {
            self.save(state, guard)?;
        }
        if !doomed.is_empty() {
            for (id, because) in &doomed {
                let Some(&index) = state.by_id.get(id) else {
                    continue;
                };
                let removed = self
                    .remove_driver_data(id, &layout_dirs)
                    .and_then(|()| self.remove_layer_files(id));
                if removed.is_ok() {
                    state.remove(index);
                    fixed.layers.insert(id.clone());
                }
                actions.push(Action {
                    repair: Repair::DeleteLayer {
                        id: id.clone(),
                        descends_from: because.clone(),
                    },
                    error: removed.err().map(|e| layerstore_model::error_chain(&e)),
                });
            }
            self.save(state, guard)?;
        }
        if !changed {
            // Nothing saved: let the next call load what is on disk the usual way.
            state.layers_seen = None;
        }

        // Orphans and temp files.
        for problem in &problems {
            let (repair, result) = match problem {
                Problem::OrphanLayerData { id } => (
                    Repair::RemoveLayerData { id: id.clone() },
                    self.remove_driver_data(id, &layout_dirs),
                ),
                Problem::OrphanTarSplit { path }
                | Problem::StaleTempFile { path }
                | Problem::UnexpectedFile { path, .. } => (
                    Repair::RemoveFile { path: path.clone() },
                    remove_entry(path),
                ),
                Problem::OrphanBigData { path } => (
                    Repair::RemoveDirectory { path: path.clone() },
                    remove_entry(path),
                ),
                _ => continue,
            };
            if result.is_ok() {
                fixed.other.insert(leftover_key(problem));
            }
            actions.push(Action {
                repair,
                error: result.err().map(|e| layerstore_model::error_chain(&e)),
            });
        }

        let remaining = problems
            .iter()
            .filter(|p| !fixed.covers(p))
            .cloned()
            .collect();
        Ok(CheckReport {
            problems,
            actions,
            remaining,
        })
    }
}

/// What repair fixed, to tell which problems remain.
#[derive(Default)]
struct Fixed {
    /// Layers deleted.
    layers: HashSet<String>,
    /// Records set aside: by ID, or by position for one without an ID.
    set_aside: HashSet<(Option<String>, Option<usize>)>,
    /// Layers whose mount count now agrees with the kernel.
    mounts: HashSet<String>,
    /// Mount records dropped.
    untrusted_mounts: HashSet<(String, PathBuf)>,
    /// Names no longer shared.
    names: HashSet<String>,
    /// Orphans and temp files removed: (kind, path or driver ID).
    other: HashSet<(&'static str, String)>,
}

impl Fixed {
    fn covers(&self, problem: &Problem) -> bool {
        match problem {
            Problem::DuplicateName { name, .. } => self.names.contains(name),
            Problem::UnreadableRecord { index, id, .. } => {
                self.set_aside.contains(&(id.clone(), Some(*index)))
            }
            Problem::UnsafeId { id, .. } => self.set_aside.contains(&(Some(id.clone()), None)),
            Problem::OrphanLayerData { .. }
            | Problem::OrphanTarSplit { .. }
            | Problem::OrphanBigData { .. }
            | Problem::StaleTempFile { .. }
            | Problem::UnexpectedFile { .. } => self.other.contains(&leftover_key(problem)),
            Problem::UntrustedMountRecord { id, path } => {
                self.untrusted_mounts.contains(&(id.clone(), path.clone()))
            }
            Problem::StaleMountCount { id, .. } | Problem::UncountedMount { id, .. } => {
                self.mounts.contains(id) || self.layers.contains(id)
            }
            other => other.layer().is_some_and(|id| self.layers.contains(id)),
        }
    }
}

/// What identifies a leftover problem among others.
fn leftover_key(problem: &Problem) -> (&'static str, String) {
    let subject = match problem.path() {
        Some(path) => path.to_string_lossy().into_owned(),
        None => problem.layer().unwrap_or_default().to_string(),
    };
    (problem.kind(), subject)
}

/// Removes the entry at `path` (a file, a symlink itself, or a directory tree), reaching it
/// through its directory opened without following a symlink.
fn remove_entry(path: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(());
    };
    match StoreDir::open(parent)? {
        Some(dir) => dir.remove_tree(name),
        None => Ok(()),
    }
}
