//! [`LayerStore`]: the records, their locking and every operation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use layerstore_driver::{
    ApplyDiffOpts, Change, CreateOpts, DiffArgs, Driver, DriverConfig, IdMappings, MountOpts,
    Registry,
};
use layerstore_lockfile::{LastWrite, LockFile, WriteGuard};
use layerstore_model::{
    Compression, Digest, Layer, MountPointRecord, encode_mountpoints_json, generate_id_unused,
    validate_store_id,
};
use parking_lot::RwLock;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::crash;
use crate::error::{Error, Result};
use crate::files::{
    StoreDir, TEMP_PREFIX, big_data_file_name, mkdir_all, read_store_file, touch_file,
};
use crate::options::{DiffOptions, LayerOptions, MountOptions, StoreOptions};
use crate::records::{self, Records, SetAside};
use crate::state::{State, by_digest, reindex_digests, unindex_digest};

mod additional;
pub(crate) mod check;
mod staging;

/// How many times a reader retries after upgrading to the write lock to clean up (Go HEAD: 3).
const MAX_CLEANUP_ATTEMPTS: usize = 3;

/// The drivers this build knows, in automatic-selection priority order.
///
/// Go's priority order: overlay, then btrfs (whose constructor refuses a graph root that is not
/// on btrfs), then vfs, which works everywhere.
pub fn default_registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(layerstore_overlay::registration());
    registry.register(layerstore_btrfs::registration());
    registry.register(layerstore_vfs::registration());
    registry
}

/// A layer store: the records of `<graphroot>/<driver>-layers/layers.json`, the mount counts of
/// `<runroot>/<driver>-layers/mountpoints.json`, and the driver holding the layers' files.
///
/// `Send + Sync`: share one handle between threads. See the [crate documentation](crate) for
/// the locking model and the crash-safety promise.
///
/// Lock order, everywhere: `layers.lock` (file), then `state` (memory), then
/// `mountpoints.lock` (file). Nothing waits for an earlier lock while holding a later one.
#[derive(Debug)]
pub struct LayerStore {
    graph_root: PathBuf,
    run_root: PathBuf,
    layers_dir: PathBuf,
    layers_json: PathBuf,
    mounts_json: PathBuf,
    read_only: bool,
    /// [`StoreOptions::max_layer_size`].
    max_layer_size: Option<u64>,
    driver: Box<dyn Driver>,
    layers_lock: LockFile,
    mounts_lock: Option<LockFile>,
    state: RwLock<State>,
    /// Incomplete layers this handle failed to delete (ID → why), not tried again by it: one
    /// layer that cannot be cleaned up must not make the store unopenable.
    cleanup_failures: parking_lot::Mutex<BTreeMap<String, String>>,
}

/// What a refresh under a read lock found.
enum Refresh {
    Fresh,
    /// Incomplete layers or duplicate names: cleaning up needs the write lock.
    NeedWriteLock,
}

/// `layer`, if its ID passes the store's rule ([`validate_store_id`]); otherwise
/// [`Error::UnsafeId`]: no path may be built from it.
pub(crate) fn usable(layer: &Layer) -> Result<&Layer> {
    match validate_store_id(&layer.id) {
        Ok(()) => Ok(layer),
        Err(layerstore_model::Error::InvalidId { reason, .. }) => Err(Error::UnsafeId {
            id: layer.id.clone(),
            reason: reason.to_string(),
        }),
        Err(other) => Err(other.into()),
    }
}

/// The layer's mount count after one more mount; a count at its maximum (a hand-edited
/// `count:4294967295`) is an error, never a wrap to 0.
fn mount_count_plus_one(layer: &Layer) -> Result<u32> {
    layer
        .mount_count
        .checked_add(1)
        .ok_or_else(|| Error::MountCountOverflow(layer.id.clone()))
}

fn mappings_of(layer: &Layer) -> IdMappings {
    IdMappings::new(layer.uid_map.clone(), layer.gid_map.clone())
}

fn mtime_of(path: &Path) -> Result<Option<SystemTime>> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.modified().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Whether `path` is the root of a mount (statx `STATX_ATTR_MOUNT_ROOT`).
fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
    .is_ok_and(|st| {
        st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
            && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
    })
}

/// A `Write` that counts bytes passing through.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl LayerStore {
    /// Opens (creating as needed, when read-write) the layer store of `options`.
    ///
    /// A read-write open creates what Go's `GetStore` creates (graph root and run root 0700,
    /// `storage.lock`, `userns.lock`, `mounts/`, `tmp/`, the driver's home, `<driver>-layers/`
    /// with `layers.lock`, the images/containers lock files, and the run root's
    /// `<driver>-layers/mountpoints.lock`), loads the records and deletes incomplete layers.
    pub fn open(options: StoreOptions) -> Result<LayerStore> {
        let graph_root = std::path::absolute(&options.graph_root)
            .map_err(|e| Error::io("resolve", &options.graph_root, e))?;
        let run_root = std::path::absolute(&options.run_root)
            .map_err(|e| Error::io("resolve", &options.run_root, e))?;
        if !options.read_only {
            mkdir_all(&graph_root)?;
            mkdir_all(&run_root)?;
            touch_file(&graph_root.join("storage.lock"))?;
            touch_file(&graph_root.join("userns.lock"))?;
            mkdir_all(&graph_root.join("mounts"))?;
            mkdir_all(&graph_root.join("tmp"))?;
        }
        let registry = options.registry.clone().unwrap_or_else(default_registry);
        let config = DriverConfig {
            graph_root: graph_root.clone(),
            run_root: run_root.clone(),
            options: options.driver_options.clone(),
            id_mappings: IdMappings::default(),
        };
        let driver = registry
            .open(&options.driver, &config)
            .map_err(|e| Error::driver("-", "start the driver", e))?;
        let name = driver.name();
        let layers_dir = graph_root.join(format!("{name}-layers"));
        let mounts_dir = run_root.join(format!("{name}-layers"));
        let (layers_lock, mounts_lock) = if options.read_only {
            (LockFile::open_ro(layers_dir.join("layers.lock"))?, None)
        } else {
            mkdir_all(&layers_dir)?;
            mkdir_all(&mounts_dir)?;
            for (dir, lock) in [
                (format!("{name}-images"), "images.lock"),
                (format!("{name}-containers"), "containers.lock"),
            ] {
                mkdir_all(&graph_root.join(&dir))?;
                touch_file(&graph_root.join(dir).join(lock))?;
            }
            mkdir_all(&run_root.join(format!("{name}-containers")))?;
            mkdir_all(&run_root.join(format!("{name}-locks")))?;
            (
                LockFile::open_rw(layers_dir.join("layers.lock"))?,
                Some(LockFile::open_rw(mounts_dir.join("mountpoints.lock"))?),
            )
        };
        let store = LayerStore {
            graph_root,
            run_root,
            layers_json: layers_dir.join(layerstore_model::LAYERS_JSON),
            mounts_json: mounts_dir.join(layerstore_model::MOUNTPOINTS_JSON),
            layers_dir,
            read_only: options.read_only,
            max_layer_size: options.max_layer_size,
            driver,
            layers_lock,
            mounts_lock,
            state: RwLock::new(State::default()),
            cleanup_failures: parking_lot::Mutex::new(BTreeMap::new()),
        };
        store.read(|_| Ok(()))?;
        if !store.read_only {
            store.sweep_stale_temps()?;
        }
        Ok(store)
    }

    /// Removes temp files a crashed writer left in `<driver>-layers/` (`.<id>.tar-split.gz.tmp`,
    /// `.tmp-*`): under the write lock no write is in progress, so every one is stale. Done at
    /// open only, and only when the lock is free right away, to keep opens cheap.
    fn sweep_stale_temps(&self) -> Result<()> {
        let Ok(_layers) = self.layers_lock.try_lock() else {
            return Ok(());
        };
        sweep_temps_in(&self.layers_dir)?;
        // mountpoints.json is replaced under its own lock (taken inside layers.lock).
        if let Some(mounts_lock) = &self.mounts_lock
            && let Ok(_mounts) = mounts_lock.try_lock()
            && let Some(mounts_dir) = self.mounts_json.parent()
        {
            sweep_temps_in(mounts_dir)?;
        }
        Ok(())
    }

    /// The graph root (absolute).
    pub fn graph_root(&self) -> &Path {
        &self.graph_root
    }

    /// The run root (absolute).
    pub fn run_root(&self) -> &Path {
        &self.run_root
    }

    /// The driver's name (`vfs`), which also names `<graphroot>/<driver>-layers`.
    pub fn driver_name(&self) -> &'static str {
        self.driver.name()
    }

    /// The driver, for driver-specific calls.
    pub fn driver(&self) -> &dyn Driver {
        &*self.driver
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// `<graphroot>/<driver>-layers`, where `layers.json` and the tar-split files are.
    pub fn layers_dir(&self) -> &Path {
        &self.layers_dir
    }

    /// `<graphroot>/<driver>-layers/<id>.tar-split.gz`.
    pub fn tar_split_path(&self, id: &str) -> PathBuf {
        self.layers_dir.join(tar_split_name(id))
    }

    fn big_data_dir(&self, id: &str) -> PathBuf {
        self.layers_dir.join(id)
    }

    /// `<driver>-layers/`, opened without following a symlink; `None` if it does not exist
    /// (a read-only store that never had layers).
    fn open_layers_dir(&self) -> Result<Option<StoreDir>> {
        StoreDir::open(&self.layers_dir)
    }

    /// `<driver>-layers/` for writing, created if missing (as Go's save does).
    fn layers_dir_rw(&self) -> Result<StoreDir> {
        StoreDir::create(&self.layers_dir)
    }

    /// The run root's `<driver>-layers/` for writing `mountpoints.json`.
    fn mounts_dir_rw(&self) -> Result<StoreDir> {
        StoreDir::create(crate::files::parent_of(&self.mounts_json))
    }

    /// The regular file `name` of `<driver>-layers/` (see [`StoreDir::open_regular`]).
    fn open_in_layers_dir(&self, name: &str) -> Result<Option<File>> {
        match self.open_layers_dir()? {
            Some(dir) => dir.open_regular(name),
            None => Ok(None),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Locking and loading

    /// Runs `f` on fresh records under the shared lock (reloading first if another process,
    /// or a hand edit, changed them).
    fn read<T>(&self, f: impl FnOnce(&State) -> Result<T>) -> Result<T> {
        for _ in 0..MAX_CLEANUP_ATTEMPTS {
            let guard = self.layers_lock.rlock()?;
            let current = guard.get_last_write()?;
            let stale = self.is_stale(&self.state.read(), &current)?;
            if stale {
                let mut state = self.state.write();
                if let Refresh::NeedWriteLock = self.refresh(&mut state, current, None, false)? {
                    drop(state);
                    drop(guard);
                    // Upgrade: take the write lock, let refresh clean up, then read again.
                    let write = self.layers_lock.lock()?;
                    let current = write.get_last_write()?;
                    let mut state = self.state.write();
                    self.refresh(&mut state, current, Some(&write), false)?;
                    continue;
                }
            }
            let state = self.state.read();
            return f(&state);
        }
        Err(Error::io(
            "clean up incomplete layers in",
            &self.layers_json,
            io::Error::other("the records kept changing"),
        ))
    }

    /// Runs `f` under the exclusive lock on fresh records. When `f` fails, the in-memory
    /// records are marked stale so the next call reloads what is on disk.
    fn write<T>(&self, f: impl FnOnce(&mut State, &WriteGuard<'_>) -> Result<T>) -> Result<T> {
        if self.read_only {
            return Err(Error::ReadOnly(self.layers_dir.clone()));
        }
        let guard = self.layers_lock.lock()?;
        let current = guard.get_last_write()?;
        let mut state = self.state.write();
        if self.is_stale(&state, &current)? {
            self.refresh(&mut state, current, Some(&guard), false)?;
        }
        let result = f(&mut state, &guard);
        if result.is_err() {
            state.layers_seen = None;
        }
        result
    }

    fn is_stale(&self, state: &State, current: &LastWrite) -> Result<bool> {
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
    fn refresh(
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
            self.cleanup_failures.lock().insert(id, err.to_string());
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
        self.read_mounts_file(state)?;
        state.mounts_seen = Some(current);
        Ok(())
    }

    fn read_mounts_file(&self, state: &mut State) -> Result<()> {
        let (records, bad) = self.read_mountpoints_json()?;
        state.apply_mounts(records, |id, path| self.trusted_mount_point(id, path));
        state.untrusted_mounts.extend(bad);
        Ok(())
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
        let Some(bytes) = read_store_file(&self.mounts_json)? else {
            return Ok(Default::default());
        };
        records::parse_mounts(&bytes).map_err(|source| Error::CorruptMounts {
            path: self.mounts_json.clone(),
            source,
        })
    }

    /// Saves `layers.json` (token first, then the file, atomically) and `mountpoints.json`.
    fn save(&self, state: &mut State, guard: &WriteGuard<'_>) -> Result<()> {
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

    /// Saves `mountpoints.json` under its own lock (token first).
    fn save_mounts(&self, state: &mut State) -> Result<()> {
        let Some(lock) = &self.mounts_lock else {
            return Ok(());
        };
        let guard = lock.lock()?;
        state.mounts_seen = Some(guard.record_write()?);
        let bytes = encode_mountpoints_json(&state.mount_records())?;
        self.mounts_dir_rw()?
            .write_atomic(layerstore_model::MOUNTPOINTS_JSON, 0o600, |out| {
                out.write_all(&bytes)
                    .map_err(|e| Error::io("write", &self.mounts_json, e))
            })
    }

    // ---------------------------------------------------------------------------------------
    // Records

    /// Every layer, in creation order.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        self.read(|s| Ok(s.live().cloned().collect()))
    }

    /// The layer with this ID, name or unique ID prefix.
    pub fn get(&self, key: &str) -> Result<Layer> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].clone()))
    }

    /// Whether a layer has this ID, name or unique ID prefix.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.read(|s| match s.resolve(key) {
            Ok(_) => Ok(true),
            Err(Error::LayerUnknown(_) | Error::AmbiguousId(_)) => Ok(false),
            Err(e) => Err(e),
        })
    }

    /// The full ID of the layer with this ID, name or unique ID prefix.
    pub fn lookup(&self, key: &str) -> Result<String> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].id.clone()))
    }

    /// The layers whose diff, as received, had this digest (in creation order).
    pub fn layers_by_compressed_digest(&self, digest: &Digest) -> Result<Vec<Layer>> {
        self.read(|s| Ok(by_digest(s, &s.by_compressed, digest)))
    }

    /// The layers whose uncompressed diff had this digest (in creation order).
    pub fn layers_by_uncompressed_digest(&self, digest: &Digest) -> Result<Vec<Layer>> {
        self.read(|s| Ok(by_digest(s, &s.by_uncompressed, digest)))
    }

    /// The uncompressed size of the layer's diff, `None` when unknown (Go returns -1).
    pub fn size(&self, key: &str) -> Result<Option<i64>> {
        self.read(|s| {
            s.resolve(key)
                .map(|i| s.layers[i].known_uncompressed_size())
        })
    }

    /// The driver's status lines (vfs: none).
    pub fn status(&self) -> Vec<(String, String)> {
        self.driver.status()
    }

    // ---------------------------------------------------------------------------------------
    // Create

    /// Creates an empty layer (Go's `CreateWithFlags` with no flags).
    pub fn create(&self, options: &LayerOptions) -> Result<Layer> {
        self.put(options, None).map(|(layer, _)| layer)
    }

    /// Creates an empty layer carrying `flags` besides those of `options`.
    pub fn create_with_flags(
        &self,
        options: &LayerOptions,
        flags: &std::collections::BTreeMap<String, Value>,
    ) -> Result<Layer> {
        let mut options = options.clone();
        options
            .flags
            .extend(flags.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.create(&options)
    }

    /// Creates a layer and, if `diff` is given, applies it (Go's `Put`). Returns the record and
    /// the bytes of file content written.
    ///
    /// The record is saved flagged `incomplete` before anything else is done; any failure
    /// deletes the layer again (and a crash leaves it for the next read-write open to delete).
    pub fn put(
        &self,
        options: &LayerOptions,
        diff: Option<&mut (dyn Read + Send)>,
    ) -> Result<(Layer, u64)> {
        self.write(|state, guard| self.put_locked(state, guard, options, diff))
    }

    fn put_locked(
        &self,
        state: &mut State,
        guard: &WriteGuard<'_>,
        options: &LayerOptions,
        diff: Option<&mut (dyn Read + Send)>,
    ) -> Result<(Layer, u64)> {
        let id = match &options.id {
            Some(id) => {
                validate_store_id(id).map_err(|e| match e {
                    layerstore_model::Error::InvalidId { id, reason } => Error::InvalidId {
                        id,
                        reason: reason.to_string(),
                    },
                    other => Error::Model(other),
                })?;
                if state.id_taken(id) {
                    return Err(Error::DuplicateId(id.clone()));
                }
                id.clone()
            }
            None => generate_id_unused(|c| state.id_taken(c) || state.by_name.contains_key(c))?,
        };
        let mut names: Vec<String> = Vec::with_capacity(options.names.len());
        for name in &options.names {
            if state.by_name.contains_key(name) {
                return Err(Error::DuplicateName(name.clone()));
            }
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let parent = match &options.parent {
            Some(p) if !p.is_empty() => Some(usable(&state.layers[state.resolve(p)?])?.clone()),
            _ => None,
        };
        let template = match &options.template {
            Some(t) if !t.is_empty() => Some(usable(&state.layers[state.resolve(t)?])?.clone()),
            _ => None,
        };
        let mut layer = Layer::new(id.clone());
        layer.names = names;
        layer.parent = parent.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        layer.mount_label = options.mount_label.clone();
        layer.uid_map = options.uid_map.clone();
        layer.gid_map = options.gid_map.clone();
        layer.flags = options.flags.clone();
        if let Some(t) = &template {
            layer.metadata = t.metadata.clone();
            layer.compressed_digest = t.compressed_digest.clone();
            layer.compressed_size = t.compressed_size;
            layer.uncompressed_digest = t.uncompressed_digest.clone();
            layer.uncompressed_size = t.uncompressed_size;
            layer.compression = t.compression;
            layer.uids = t.uids.clone();
            layer.gids = t.gids.clone();
        }
        layer.set_incomplete(true);
        let index = state.push(layer);
        self.save(state, guard)?;
        crash::point(crash::PUT_AFTER_INCOMPLETE_RECORD);

        let outcome = self.fill_new_layer(
            state,
            index,
            parent.as_ref(),
            template.as_ref(),
            options,
            diff,
        );
        match outcome {
            Ok(size) => {
                state.layers[index].set_incomplete(false);
                // Template digests join the indexes now that the layer is complete.
                reindex_digests(state, index);
                self.save(state, guard)?;
                crash::point(crash::PUT_DONE);
                Ok((state.layers[index].clone(), size))
            }
            Err(e) => {
                // Go's deferred cleanup: delete what was made; the original error is the one
                // that matters. A failure here leaves the layer flagged for the next open.
                let _ = self.delete_locked(state, guard, std::slice::from_ref(&id));
                Err(e)
            }
        }
    }

    fn fill_new_layer(
        &self,
        state: &mut State,
        index: usize,
        parent: Option<&Layer>,
        template: Option<&Layer>,
        options: &LayerOptions,
        diff: Option<&mut (dyn Read + Send)>,
    ) -> Result<u64> {
        let layer = state.layers[index].clone();
        let id = layer.id.as_str();
        let mappings = mappings_of(&layer);
        let create_opts = CreateOpts {
            mount_label: layer.mount_label.clone(),
            storage_opt: options.storage_opt.clone(),
            id_mappings: (!mappings.is_identity()).then(|| mappings.clone()),
        };
        let parent_id = parent.map(|p| p.id.as_str());
        let parent_mappings = parent.map(mappings_of).unwrap_or_default();
        match template {
            Some(t) => self
                .driver
                .create_from_template(
                    id,
                    &t.id,
                    &mappings_of(t),
                    parent_id,
                    &parent_mappings,
                    &create_opts,
                    options.writeable,
                )
                .map_err(|e| Error::driver(id, "create from template", e))?,
            None if options.writeable => self
                .driver
                .create_read_write(id, parent_id, &create_opts)
                .map_err(|e| Error::driver(id, "create", e))?,
            None => self
                .driver
                .create(id, parent_id, &create_opts)
                .map_err(|e| Error::driver(id, "create", e))?,
        }
        crash::point(crash::PUT_AFTER_DRIVER_CREATE);
        if parent.is_some() && parent_mappings != mappings && !self.driver.supports_shifting() {
            self.driver
                .update_layer_id_map(id, &parent_mappings, &mappings, &layer.mount_label)
                .map_err(|e| Error::driver(id, "update ID mappings", e))?;
        }
        if let Some(t) = template {
            let dir = self.layers_dir_rw()?;
            if let Some(mut file) = dir.open_regular(&tar_split_name(&t.id))? {
                dir.write_atomic_from(&tar_split_name(id), 0o600, &mut file)?;
            }
        }
        match diff {
            Some(diff) => self.apply_diff_locked(state, index, diff),
            None => Ok(0),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Apply and give back

    /// Applies a layer diff (a tar stream, optionally bzip2/gzip/xz/zstd compressed) to an
    /// existing layer, recording digests, sizes, compression, uid/gid sets and the tar-split
    /// file. Returns the bytes of file content written.
    ///
    /// As in Go, the layer is not flagged `incomplete` meanwhile (it existed before the call):
    /// after a failure or a crash its files may hold part of the diff, and its records stay as
    /// they were (the new tar-split replaces the old one only after the diff applied). Use
    /// [`put`](Self::put) to create and fill a layer all-or-nothing.
    pub fn apply_diff(&self, key: &str, diff: &mut (dyn Read + Send)) -> Result<u64> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            usable(&state.layers[index])?;
            let size = self.apply_diff_locked(state, index, diff)?;
            self.save(state, guard)?;
            Ok(size)
        })
    }

    fn apply_diff_locked(
        &self,
        state: &mut State,
        index: usize,
        diff: &mut (dyn Read + Send),
    ) -> Result<u64> {
        let layer = state.layers[index].clone();
        let id = layer.id.as_str();
        let dir = self.layers_dir_rw()?;
        let temp_name = tar_split_temp_name(id);
        let temp = dir.join(&temp_name);
        // A temp file a crash left is stale (we hold the write lock).
        dir.remove_file(&temp_name)?;
        let file = dir.create_new(&temp_name, 0o600)?;
        let mut packer = layerstore_tarsplit::gzip_packer(BufWriter::with_capacity(1 << 20, file));
        let applied = self.driver.apply_diff(
            id,
            layer.parent(),
            ApplyDiffOpts {
                diff,
                tar_split: Some(&mut packer),
                id_mappings: mappings_of(&layer),
                mount_label: layer.mount_label.clone(),
                ignore_chown_errors: false,
                max_uncompressed_size: self.max_layer_size,
            },
        );
        let report = match applied {
            Ok(report) => report,
            Err(e) => {
                drop(packer);
                let _ = dir.remove_file(&temp_name);
                return Err(Error::driver(id, "apply diff", e));
            }
        };
        crash::point(crash::PUT_AFTER_APPLY);
        let finished = packer
            .finish()
            .map_err(|e| Error::tar_split(id, &temp, e))
            .and_then(|w| {
                w.into_inner()
                    .map_err(|e| Error::io("write", &temp, e.into_error()))
            })
            .and_then(|f| f.sync_all().map_err(|e| Error::io("fsync", &temp, e)))
            .and_then(|()| dir.rename(&temp_name, &tar_split_name(id)))
            .and_then(|()| dir.sync());
        if let Err(e) = finished {
            let _ = dir.remove_file(&temp_name);
            return Err(e);
        }
        crash::point(crash::PUT_AFTER_TAR_SPLIT);
        let compressed = report.compressed_digest.clone();
        let uncompressed = report.uncompressed_digest.clone();
        {
            let State {
                layers,
                by_compressed,
                by_uncompressed,
                ..
            } = state;
            let record = &mut layers[index];
            unindex_digest(by_compressed, &record.compressed_digest, id);
            unindex_digest(by_uncompressed, &record.uncompressed_digest, id);
            record.compressed_digest = Some(compressed);
            record.compressed_size = i64::try_from(report.compressed_size).unwrap_or(i64::MAX);
            record.uncompressed_digest = Some(uncompressed);
            record.uncompressed_size = i64::try_from(report.uncompressed_size).unwrap_or(i64::MAX);
            record.compression = report.compression;
            record.uids = report.uids.iter().copied().collect();
            record.gids = report.gids.iter().copied().collect();
        }
        reindex_digests(state, index);
        Ok(report.size)
    }

    /// Writes the diff of layer `to` against `from` (default: its parent) to `out` and returns
    /// the bytes written.
    ///
    /// Against the parent, and when the layer has a tar-split file, the stream is the original
    /// tarball byte for byte, rebuilt from the tar-split records and the layer's files;
    /// otherwise the driver exports the differences. The output is compressed as
    /// `options.compression` says, else as the layer's diff was when applied (as Go does);
    /// bzip2 and xz cannot be produced ([`Error::UnsupportedCompression`]). An unknown `from`
    /// falls back to the parent, as in Go. Streams with bounded memory.
    pub fn diff(
        &self,
        from: Option<&str>,
        to: &str,
        options: &DiffOptions,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let guard = self.layers_lock.rlock()?;
        let (layer, from_layer) = self.read_under(&guard, |s| {
            let layer = usable(&s.layers[s.resolve(to)?])?.clone();
            let from_layer = match from {
                Some(f) if !f.is_empty() => s.resolve(f).ok().map(|i| s.layers[i].clone()),
                _ => None,
            }
            .or_else(|| {
                layer
                    .parent()
                    .and_then(|p| s.by_id.get(p))
                    .map(|&i| s.layers[i].clone())
            });
            if let Some(from) = &from_layer {
                usable(from)?;
            }
            Ok((layer, from_layer))
        })?;
        let compression = options.compression.unwrap_or(layer.compression);
        let mut counting = Counting {
            inner: out,
            count: 0,
        };
        match compression {
            Compression::None | Compression::Gzip | Compression::Zstd => {
                // The archive crate's encoders (parallel gzip at the Go tool's level, zstd).
                let mut encoder =
                    layerstore_archive::encoder(&mut counting, compression).map_err(|e| {
                        Error::io("compress the diff of", &layer.id, std::io::Error::other(e))
                    })?;
                self.diff_uncompressed(&layer, from_layer.as_ref(), &mut encoder)?;
                encoder
                    .finish()
                    .map_err(|e| Error::io("compress the diff of", &layer.id, e))?;
            }
            Compression::Bzip2 => return Err(Error::UnsupportedCompression("tar.bz2")),
            Compression::Xz => return Err(Error::UnsupportedCompression("tar.xz")),
            Compression::Unknown(_) => {
                return Err(Error::UnsupportedCompression("(unknown)"));
            }
        }
        counting
            .flush()
            .map_err(|e| Error::io("write the diff of", &layer.id, e))?;
        drop(guard);
        Ok(counting.count)
    }

    fn diff_uncompressed(
        &self,
        layer: &Layer,
        from: Option<&Layer>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let id = layer.id.as_str();
        let against_parent = from.map(|f| f.id.as_str()) == layer.parent();
        if against_parent && let Some(file) = self.open_in_layers_dir(&tar_split_name(id))? {
            return self.assemble(layer, file, &self.tar_split_path(id), out);
        }
        let mappings = mappings_of(layer);
        let from_mappings = from.map(mappings_of).unwrap_or_default();
        let args = DiffArgs {
            id,
            id_mappings: &mappings,
            parent: from.map(|f| f.id.as_str()),
            parent_mappings: &from_mappings,
            mount_label: &layer.mount_label,
        };
        self.driver
            .diff(&args, out)
            .map(drop)
            .map_err(|e| Error::driver(id, "diff", e))
    }

    fn assemble(&self, layer: &Layer, file: File, path: &Path, out: &mut dyn Write) -> Result<()> {
        let id = layer.id.as_str();
        let entries = layerstore_tarsplit::read_tar_split_gz(file);
        match self
            .driver
            .diff_getter(id)
            .map_err(|e| Error::driver(id, "open the layer's files", e))?
        {
            // Decoding the entries, reading the files and writing the stream overlap (three
            // threads, see `assemble_pipelined`); `out` stays on this thread.
            Some(getter) => layerstore_tarsplit::assemble_pipelined(entries, getter, out)
                .map(drop)
                .map_err(|e| Error::tar_split(id, path, e)),
            None => {
                let mount_opts = MountOpts {
                    mount_label: layer.mount_label.clone(),
                    options: vec!["ro".to_string()],
                    ..MountOpts::default()
                };
                let dir = self
                    .driver
                    .get(id, &mount_opts)
                    .map_err(|e| Error::driver(id, "mount", e))?;
                let result = layerstore_tarsplit::DirFileGetter::new(&dir)
                    .and_then(|getter| {
                        layerstore_tarsplit::assemble_pipelined(entries, &getter, out)
                    })
                    .map(drop)
                    .map_err(|e| Error::tar_split(id, path, e));
                let put = self
                    .driver
                    .put(id)
                    .map_err(|e| Error::driver(id, "unmount", e));
                result.and(put)
            }
        }
    }

    /// Runs `f` on fresh records while the caller holds a read guard for longer (diff).
    fn read_under<T>(
        &self,
        guard: &layerstore_lockfile::ReadGuard<'_>,
        f: impl FnOnce(&State) -> Result<T>,
    ) -> Result<T> {
        let current = guard.get_last_write()?;
        if self.is_stale(&self.state.read(), &current)? {
            // The caller keeps its shared lock, so it cannot upgrade: read the records as they
            // are; the next call cleans up what another process left.
            let mut state = self.state.write();
            self.refresh(&mut state, current, None, true)?;
        }
        let state = self.state.read();
        f(&state)
    }

    /// The paths layer `to` adds, modifies or deletes relative to `from` (default: its parent).
    pub fn changes(&self, from: Option<&str>, to: &str) -> Result<Vec<Change>> {
        self.with_pair(from, to, |layer, from| {
            let mappings = mappings_of(layer);
            let from_mappings = from.map(mappings_of).unwrap_or_default();
            let args = DiffArgs {
                id: &layer.id,
                id_mappings: &mappings,
                parent: from.map(|f| f.id.as_str()),
                parent_mappings: &from_mappings,
                mount_label: &layer.mount_label,
            };
            self.driver
                .changes(&args)
                .map_err(|e| Error::driver(&layer.id, "changes", e))
        })
    }

    /// The size of what layer `to` adds or modifies relative to `from` (default: its parent).
    pub fn diff_size(&self, from: Option<&str>, to: &str) -> Result<u64> {
        self.with_pair(from, to, |layer, from| {
            let mappings = mappings_of(layer);
            let from_mappings = from.map(mappings_of).unwrap_or_default();
            let args = DiffArgs {
                id: &layer.id,
                id_mappings: &mappings,
                parent: from.map(|f| f.id.as_str()),
                parent_mappings: &from_mappings,
                mount_label: &layer.mount_label,
            };
            self.driver
                .diff_size(&args)
                .map_err(|e| Error::driver(&layer.id, "diff size", e))
        })
    }

    fn with_pair<T>(
        &self,
        from: Option<&str>,
        to: &str,
        f: impl FnOnce(&Layer, Option<&Layer>) -> Result<T>,
    ) -> Result<T> {
        let guard = self.layers_lock.rlock()?;
        let (layer, from_layer) = self.read_under(&guard, |s| {
            let layer = usable(&s.layers[s.resolve(to)?])?.clone();
            let from_layer = match from {
                Some(f) if !f.is_empty() => Some(s.layers[s.resolve(f)?].clone()),
                _ => layer
                    .parent()
                    .and_then(|p| s.by_id.get(p))
                    .map(|&i| s.layers[i].clone()),
            };
            if let Some(from) = &from_layer {
                usable(from)?;
            }
            Ok((layer, from_layer))
        })?;
        let result = f(&layer, from_layer.as_ref());
        drop(guard);
        result
    }

    // ---------------------------------------------------------------------------------------
    // Names, metadata, flags

    /// Replaces the layer's names. A name another layer has is taken from it (as Go does).
    pub fn set_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            state.set_names(index, names);
            self.save(state, guard)?;
            Ok(state.layers[index].names.clone())
        })
    }

    /// Adds names to the layer, taking them from other layers as needed.
    pub fn add_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            let mut all = state.layers[index].names.clone();
            all.extend(names.iter().cloned());
            state.set_names(index, &all);
            self.save(state, guard)?;
            Ok(state.layers[index].names.clone())
        })
    }

    /// Removes names from the layer (names it does not have are ignored).
    pub fn remove_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            let kept: Vec<String> = state.layers[index]
                .names
                .iter()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect();
            state.set_names(index, &kept);
            self.save(state, guard)?;
            Ok(state.layers[index].names.clone())
        })
    }

    /// The layer's free-text metadata.
    pub fn metadata(&self, key: &str) -> Result<String> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].metadata.clone()))
    }

    /// Replaces the layer's metadata.
    pub fn set_metadata(&self, key: &str, metadata: &str) -> Result<()> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            state.layers[index].metadata = metadata.to_string();
            self.save(state, guard)
        })
    }

    /// Sets a flag on the layer.
    pub fn set_flag(&self, key: &str, flag: &str, value: Value) -> Result<()> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            state.layers[index].flags.insert(flag.to_string(), value);
            self.save(state, guard)
        })
    }

    /// Removes a flag from the layer.
    pub fn clear_flag(&self, key: &str, flag: &str) -> Result<()> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            state.layers[index].flags.remove(flag);
            self.save(state, guard)
        })
    }

    // ---------------------------------------------------------------------------------------
    // Big data

    /// Stores a big-data item of the layer from `data`, replacing any item with that key
    /// atomically, in `<driver>-layers/<id>/<name>` named as Go names it.
    pub fn set_big_data(&self, key: &str, item: &str, data: &mut dyn Read) -> Result<()> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            let id = usable(&state.layers[index])?.id.clone();
            if item.is_empty() {
                return Err(Error::InvalidBigDataName(id));
            }
            layerstore_model::check_big_data_key(layerstore_model::BigDataOwner::Layer, item)?;
            // Created and opened without following a symlink: nothing is written through one.
            let dir = self.layers_dir_rw()?.subdir(&id, true)?.ok_or_else(|| {
                Error::io(
                    "open directory",
                    self.big_data_dir(&id),
                    io::ErrorKind::NotFound.into(),
                )
            })?;
            dir.write_atomic_from(&big_data_file_name(item), 0o600, data)?;
            if !state.layers[index].big_data_names.iter().any(|n| n == item) {
                state.layers[index].big_data_names.push(item.to_string());
                self.save(state, guard)?;
            }
            Ok(())
        })
    }

    /// A big-data item of the layer, as a reader (a file replaced later stays readable).
    pub fn big_data(&self, key: &str, item: &str) -> Result<File> {
        let id = self.read(|s| {
            s.resolve(key)
                .and_then(|i| usable(&s.layers[i]))
                .map(|l| l.id.clone())
        })?;
        if item.is_empty() {
            return Err(Error::InvalidBigDataName(id));
        }
        let file = match self.open_layers_dir()? {
            Some(layers) => match layers.subdir(&id, false)? {
                Some(dir) => dir.open_regular(&big_data_file_name(item))?,
                None => None,
            },
            None => None,
        };
        file.ok_or_else(|| Error::BigDataUnknown {
            id,
            key: item.to_string(),
        })
    }

    /// The keys of the layer's big-data items, in the order they were first set.
    pub fn big_data_names(&self, key: &str) -> Result<Vec<String>> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].big_data_names.clone()))
    }

    /// The size in bytes of a big-data item.
    pub fn big_data_size(&self, key: &str, item: &str) -> Result<u64> {
        let file = self.big_data(key, item)?;
        file.metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat big data", item, e))
    }

    /// The sha256 digest of a big-data item.
    pub fn big_data_digest(&self, key: &str, item: &str) -> Result<Digest> {
        let mut file = self.big_data(key, item)?;
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher).map_err(|e| Error::io("read big data", item, e))?;
        Ok(Digest::from_hash(
            layerstore_model::DigestAlgorithm::Sha256,
            &hasher.finalize(),
        )?)
    }

    // ---------------------------------------------------------------------------------------
    // Mounts

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
        self.write(|state, _guard| {
            let lock = self
                .mounts_lock
                .as_ref()
                .ok_or_else(|| Error::ReadOnly(self.layers_dir.clone()))?;
            {
                // Always re-read: the file is small, and it is about to be rewritten.
                let mguard = lock.rlock()?;
                let current = mguard.get_last_write()?;
                self.read_mounts_file(state)?;
                state.mounts_seen = Some(current);
            }
            let path = self.mount_locked(state, key, options)?;
            self.save_mounts(state)?;
            Ok(path)
        })
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
        let mount_opts = MountOpts {
            mount_label: if options.mount_label.is_empty() {
                layer.mount_label.clone()
            } else {
                options.mount_label.clone()
            },
            id_mappings: mappings_of(layer),
            options: options.options.clone(),
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
        self.write(|state, _guard| {
            if let Some(lock) = &self.mounts_lock {
                let mguard = lock.rlock()?;
                let current = mguard.get_last_write()?;
                self.read_mounts_file(state)?;
                state.mounts_seen = Some(current);
            }
            let (remaining, changed) = self.unmount_locked(state, key, force)?;
            if changed {
                self.save_mounts(state)?;
            }
            Ok(remaining)
        })
    }

    fn unmount_locked(&self, state: &mut State, key: &str, force: bool) -> Result<(u32, bool)> {
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
            _ => return Err(Error::NotMounted(layer.id)),
        };
        let mappings = mappings_of(&layer);
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

    /// Shuts the store down as Go's `Shutdown` does: refuses while a layer is mounted unless
    /// `force` (then every layer is unmounted, however many times it was mounted), releases
    /// the driver's resources and records a write in `<graphroot>/storage.lock`.
    ///
    /// Unlike Go 1.43, `force` terminates (Go loops forever on a stale mount count).
    pub fn shutdown(&self, force: bool) -> Result<()> {
        if !self.read_only {
            self.write(|state, _guard| {
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
                    self.unmount_locked(state, id, true)?;
                }
                if !mounted.is_empty() {
                    self.save_mounts(state)?;
                }
                Ok(())
            })?;
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

    // ---------------------------------------------------------------------------------------
    // Delete

    /// Deletes the layer (by ID, name or unique prefix): unmounts it, removes its files,
    /// tar-split and big data, and its record. A layer that is another's parent is refused.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.delete_many(&[key])
    }

    /// Deletes several layers, saving `layers.json` twice in all (not twice per layer).
    /// Each must have no children outside the batch.
    pub fn delete_many(&self, keys: &[&str]) -> Result<()> {
        self.write(|state, guard| {
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
            self.delete_locked(state, guard, &ordered)
        })
    }

    /// Deletes every layer, newest first (Go's `Wipe`), in one batch. Records that are not
    /// usable layers (see [`check`](Self::check)) are moved to the set-aside file, their files
    /// left alone.
    pub fn wipe(&self) -> Result<()> {
        self.write(|state, guard| {
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
            self.delete_locked(state, guard, &ids)?;
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
                records::set_aside(&self.layers_dir_rw()?, records)?;
                state.unreadable.clear();
                self.save(state, guard)?;
            }
            Ok(())
        })
    }

    /// Removes the layer's files in `<driver>-layers/`: its tar-split (and temp) file and its
    /// big-data directory, never following a symlink.
    fn remove_layer_files(&self, id: &str) -> Result<()> {
        let Some(dir) = self.open_layers_dir()? else {
            return Ok(());
        };
        dir.remove_file(&tar_split_name(id))?;
        dir.remove_file(&tar_split_temp_name(id))?;
        dir.remove_tree(id)
    }

    /// Go's delete sequence for a batch: unmount, flag `incomplete` and save once, remove
    /// driver files, tar-split and big data, drop the records, save once.
    fn delete_locked(
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
                set_aside.push((index, SetAside::layer(&record, format!("deleted: {e}"))?));
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

/// `<id>.tar-split.gz`: the layer's tar-split records, in `<driver>-layers/`.
pub(crate) fn tar_split_name(id: &str) -> String {
    format!("{id}.tar-split.gz")
}

/// `.<id>.tar-split.gz.tmp`: the tar-split records being written.
pub(crate) fn tar_split_temp_name(id: &str) -> String {
    format!(".{id}.tar-split.gz.tmp")
}

/// Temp files of interrupted writes: `.tmp-<name>*` (atomic replacements, ours and Go's) and
/// `.<id>.tar-split.gz.tmp`.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) || (name.starts_with('.') && name.ends_with(".tar-split.gz.tmp"))
}

/// Removes the temp files an interrupted atomic write leaves in `dir` (`.tmp-*`,
/// `.<id>.tar-split.gz.tmp`); the caller holds the lock that guards those writes.
fn sweep_temps_in(dir: &Path) -> Result<()> {
    let Some(dir) = StoreDir::open(dir)? else {
        return Ok(());
    };
    for (name, file_type) in dir.entries()? {
        if is_temp_name(&name) && file_type == rustix::fs::FileType::RegularFile {
            dir.remove_file(&name)?;
        }
    }
    Ok(())
}
