//! Mounts: counts in `mountpoints.json`, mounting, unmounting, parent owners, shutdown.

use std::collections::BTreeSet;
use std::fs::{self};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use layerstore_driver::MountOpts;
use layerstore_driver::mount::is_mount_point;
use layerstore_lockfile::LockFile;
use layerstore_model::Layer;

use crate::error::{Error, Result};
use crate::options::MountOptions;
use crate::state::State;

use super::{LayerRecords, LayerStore, LayerWriter, mappings_of, usable};

/// The layer's mount count after one more mount; a count at its maximum (a hand-edited
/// `count:4294967295`) is an error, never a wrap to 0.
fn mount_count_plus_one(layer: &Layer) -> Result<u32> {
    layer
        .mount_count
        .checked_add(1)
        .ok_or_else(|| Error::MountCountOverflow(layer.id.clone()))
}

impl LayerStore {
    /// Mounts the layer (by ID, name or unique prefix) and returns its mount point. The count
    /// in `mountpoints.json` goes up by one, for every process to see.
    ///
    /// In a read-only store the layer is mounted `ro` and the count is kept in this process.
    pub fn mount(&self, key: &str, options: &MountOptions) -> Result<PathBuf> {
        if self.read_only {
            let guard = self.layers_lock.rlock()?;
            self.read_under(&guard, |_| Ok(()))?;
            let mut state = self.state.write();
            let mut options = options.clone();
            if !options.options.iter().any(|o| o == "ro") {
                options.options.push("ro".to_string());
            }
            return self.mount_locked(&mut state, key, &options);
        }
        self.write_session()?.mount(key, options)
    }

    fn mount_locked(
        &self,
        state: &mut State,
        key: &str,
        options: &MountOptions,
    ) -> Result<PathBuf> {
        let index = state.resolve(key)?;
        let layer = usable(&state.layers[index])?;
        if layer.mount_count > 0
            && let Some(path) = &layer.mount_point
            && is_mount_point(path)
        {
            let path = path.clone();
            state.layers[index].mount_count = mount_count_plus_one(layer)?;
            return Ok(path);
        }
        let id = layer.id.clone();
        if layer.mount_count > 0 {
            // Counted but no longer mounted (unmounted behind our back): the driver may still
            // count it in this process (overlay does) and would not mount again. Releasing
            // what is not mounted is harmless for every driver.
            let _ = self.driver.put(&id);
        }
        let asked = !options.uid_map.is_empty() || !options.gid_map.is_empty();
        if asked
            && !self.driver.supports_shifting()
            && (options.uid_map != layer.uid_map || options.gid_map != layer.gid_map)
        {
            return Err(Error::ShiftingNotEnabled(id));
        }
        let mount_opts = MountOpts {
            mount_label: if options.mount_label.is_empty() {
                layer.mount_label.clone()
            } else {
                options.mount_label.clone()
            },
            id_mappings: mappings_of(layer),
            options: options.options.clone(),
            volatile: options.volatile,
            ..MountOpts::default()
        };
        let path = self
            .driver
            .get(&id, &mount_opts)
            .map_err(|e| Error::driver(&id, "mount", e))?;
        let count = mount_count_plus_one(&state.layers[index])?;
        if let Some(old) = state.layers[index].mount_point.take() {
            state.by_mount.remove(&old);
        }
        let layer = &mut state.layers[index];
        layer.mount_point = Some(path.clone());
        layer.mount_count = count;
        state.by_mount.insert(path.clone(), index);
        Ok(path)
    }

    /// Unmounts the layer (by ID, name, unique prefix or mount point). Returns how many mounts
    /// remain: the driver releases the mount only when the last one goes. `force` drops every
    /// mount at once.
    pub fn unmount(&self, key: &str, force: bool) -> Result<u32> {
        if self.read_only {
            let guard = self.layers_lock.rlock()?;
            self.read_under(&guard, |_| Ok(()))?;
            let mut state = self.state.write();
            return self.unmount_locked(&mut state, key, force).map(|(n, _)| n);
        }
        self.write_session()?.unmount(key, force)
    }

    /// Reads `mountpoints.json` again under its lock: it is small, and about to be rewritten.
    fn reread_mounts(&self, state: &mut State) -> Result<()> {
        if let Some(lock) = &self.mounts_lock {
            let guard = lock.rlock()?;
            let current = guard.get_last_write()?;
            state.mounts_bytes = self.read_mounts_file(state)?;
            state.mounts_seen = Some(current);
        }
        Ok(())
    }

    pub(super) fn unmount_locked(
        &self,
        state: &mut State,
        key: &str,
        force: bool,
    ) -> Result<(u32, bool)> {
        let cleaned = Path::new(key).components().collect::<PathBuf>();
        let index = match state.by_mount.get(&cleaned) {
            Some(&i) => i,
            None => state.resolve(key)?,
        };
        usable(&state.layers[index])?;
        let layer = &mut state.layers[index];
        if force && layer.mount_count > 1 {
            layer.mount_count = 1;
        }
        if layer.mount_count > 1 {
            layer.mount_count -= 1;
            return Ok((layer.mount_count, true));
        }
        let id = layer.id.clone();
        self.driver
            .put(&id)
            .map_err(|e| Error::driver(&id, "unmount", e))?;
        let layer = &mut state.layers[index];
        let was_mounted = layer.mount_count > 0;
        layer.mount_count = 0;
        if let Some(path) = layer.mount_point.take() {
            state.by_mount.remove(&path);
        }
        Ok((0, was_mounted))
    }

    /// How many times the layer is mounted (by any process using this run root).
    pub fn mounted(&self, key: &str) -> Result<u32> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].mount_count))
    }

    /// The host UIDs and GIDs owning the directories above the layer's mount point that the
    /// layer's ID mappings do not map (see [`LayerRecords::parent_owners`]).
    pub fn parent_owners(&self, key: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        self.read_session()?.records().parent_owners(key)
    }

    /// Shuts the store down as Go's `Shutdown` does: refuses while a layer is mounted unless
    /// `force` (then every layer is unmounted, however many times it was mounted), releases
    /// the driver's resources and records a write in `<graphroot>/storage.lock`.
    ///
    /// Unlike Go 1.43, `force` terminates (Go loops forever on a stale mount count).
    pub fn shutdown(&self, force: bool) -> Result<()> {
        if !self.read_only {
            self.write_session()?.unmount_all(force)?;
        }
        self.driver
            .cleanup()
            .map_err(|e| Error::driver("-", "clean up", e))?;
        if !self.read_only {
            let lock = LockFile::open_rw(self.graph_root.join("storage.lock"))?;
            lock.lock()?.record_write()?;
        }
        Ok(())
    }
}

impl LayerWriter<'_> {
    /// Mounts the layer (see [`LayerStore::mount`]) and returns its mount point.
    ///
    /// With ID mappings in `options` (a container's), a driver that cannot shift IDs at mount
    /// time mounts the layer only when they are the layer's own, as Go does
    /// ([`Error::ShiftingNotEnabled`]).
    pub fn mount(&mut self, key: &str, options: &MountOptions) -> Result<PathBuf> {
        let store = self.store;
        self.run(|state, _guard| {
            store.reread_mounts(state)?;
            let path = store.mount_locked(state, key, options)?;
            store.save_mounts(state)?;
            Ok(path)
        })
    }

    /// Unmounts the layer (see [`LayerStore::unmount`]); returns how many mounts remain.
    pub fn unmount(&mut self, key: &str, force: bool) -> Result<u32> {
        let store = self.store;
        self.run(|state, _guard| {
            store.reread_mounts(state)?;
            let (remaining, changed) = store.unmount_locked(state, key, force)?;
            if changed {
                store.save_mounts(state)?;
            }
            Ok(remaining)
        })
    }

    /// Unmounts every mounted layer, however many times it was mounted, when `force`;
    /// without it, a mounted layer is [`Error::LayerMounted`] (the first half of Go's
    /// `Shutdown`).
    pub fn unmount_all(&mut self, force: bool) -> Result<()> {
        let store = self.store;
        self.run(|state, _guard| {
            // A layer whose ID breaks the rule was never mounted by this store.
            let mounted: Vec<String> = state
                .live()
                .filter(|l| l.mount_count > 0 && usable(l).is_ok())
                .map(|l| l.id.clone())
                .collect();
            if let Some(first) = mounted.first()
                && !force
            {
                return Err(Error::LayerMounted(first.clone()));
            }
            for id in &mounted {
                store.unmount_locked(state, id, true)?;
            }
            if !mounted.is_empty() {
                store.save_mounts(state)?;
            }
            Ok(())
        })
    }
}

impl LayerRecords<'_> {
    /// The host UIDs and GIDs owning the directories above the layer's mount point that the
    /// layer's ID mappings do not map (Go's `ParentOwners`): what a user namespace with those
    /// mappings could not reach. As in Go, a layer without mappings has none (mounted or
    /// not); otherwise the layer must be mounted ([`Error::NotMounted`]).
    pub fn parent_owners(&self, key: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let layer = self.get(key)?;
        if layer.uid_map.is_empty() && layer.gid_map.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mount_point = match &layer.mount_point {
            Some(path) if layer.mount_count > 0 => path.clone(),
            _ => return Err(Error::NotMounted(layer.id.clone())),
        };
        let mappings = mappings_of(layer);
        let mut uids = BTreeSet::new();
        let mut gids = BTreeSet::new();
        let mut dir = mount_point.parent();
        while let Some(d) = dir {
            if d == Path::new("/") || d.as_os_str().is_empty() {
                break;
            }
            let st = fs::metadata(d).map_err(|e| Error::io("read directory ownership", d, e))?;
            let (uid, gid) = mappings.to_container(st.uid(), st.gid());
            if uid.is_none() {
                uids.insert(st.uid());
            }
            if gid.is_none() {
                gids.insert(st.gid());
            }
            dir = d.parent();
        }
        Ok((uids.into_iter().collect(), gids.into_iter().collect()))
    }
}
