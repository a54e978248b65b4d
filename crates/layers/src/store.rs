//! [`LayerStore`]: the records, their locking and every operation.
//!
//! This module holds the handle, opening and the helpers its parts share; the operations live
//! in one submodule per concern: `load` (locking, reloading, saving), `lookup`, `create`,
//! `diff` (apply and give back), `names`, `big_data`, `mounts`, `delete`, and `staging`,
//! `additional`, `check`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerstore_driver::{Driver, DriverConfig, IdMappings, Registry};
use layerstore_lockfile::LockFile;
use layerstore_model::{Layer, validate_store_id};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::files::{StoreDir, TEMP_PREFIX, mkdir_all, touch_file};
use crate::options::StoreOptions;
use crate::state::State;

mod additional;
mod big_data;
pub(crate) mod check;
mod create;
mod delete;
mod diff;
mod load;
mod lookup;
mod mounts;
mod names;
mod session;
mod staging;

pub use session::{LayerReader, LayerRecords, LayerWriter};

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
    /// Shared with the read-only layer stores of additional image stores
    /// ([`LayerStore::open_additional`]), as Go's store shares one driver.
    driver: Arc<dyn Driver>,
    layers_lock: LockFile,
    mounts_lock: Option<LockFile>,
    state: RwLock<State>,
    /// Incomplete layers this handle failed to delete (ID → why), not tried again by it: one
    /// layer that cannot be cleaned up must not make the store unopenable.
    cleanup_failures: parking_lot::Mutex<BTreeMap<String, String>>,
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

fn mappings_of(layer: &Layer) -> IdMappings {
    IdMappings::new(layer.uid_map.clone(), layer.gid_map.clone())
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
        Self::open_with(options, true)
    }

    /// [`LayerStore::open`]; without `load`, nothing is read (for rebuilding `layers.json`).
    fn open_with(options: StoreOptions, load: bool) -> Result<LayerStore> {
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
        let driver: Arc<dyn Driver> = registry
            .open(&options.driver, &config)
            .map_err(|e| Error::driver("-", "start the driver", e))?
            .into();
        let name = driver.name();
        let mounts_dir = run_root.join(format!("{name}-layers"));
        if !options.read_only {
            mkdir_all(&graph_root.join(format!("{name}-layers")))?;
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
        }
        Self::with_driver(
            graph_root,
            run_root,
            driver,
            options.read_only,
            options.max_layer_size,
            load,
        )
    }

    /// Opens the read-only layer store of an additional image store at `root`
    /// (`<root>/<driver>-layers/layers.json`, Go's `newROLayerStore`), sharing this store's
    /// driver, which finds the layers' files through its additional image stores (vfs:
    /// `imagestore=`). Only `<root>/<driver>-layers/layers.lock` is created if missing (as
    /// Go's read-only lock files are); nothing else under `root` is written, incomplete
    /// layers are kept, and mount counts live in this process.
    pub fn open_additional(&self, root: impl AsRef<Path>) -> Result<LayerStore> {
        let root = std::path::absolute(root.as_ref())
            .map_err(|e| Error::io("resolve", root.as_ref(), e))?;
        Self::with_driver(
            root,
            self.run_root.clone(),
            Arc::clone(&self.driver),
            true,
            self.max_layer_size,
            true,
        )
    }

    /// The store over `graph_root` with `driver` started: lock files opened and, with `load`,
    /// records loaded, incomplete layers deleted and stale temp files swept (read-write only).
    fn with_driver(
        graph_root: PathBuf,
        run_root: PathBuf,
        driver: Arc<dyn Driver>,
        read_only: bool,
        max_layer_size: Option<u64>,
        load: bool,
    ) -> Result<LayerStore> {
        let name = driver.name();
        let layers_dir = graph_root.join(format!("{name}-layers"));
        let mounts_dir = run_root.join(format!("{name}-layers"));
        let (layers_lock, mounts_lock) = if read_only {
            (LockFile::open_ro(layers_dir.join("layers.lock"))?, None)
        } else {
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
            read_only,
            max_layer_size,
            driver,
            layers_lock,
            mounts_lock,
            state: RwLock::new(State::default()),
            cleanup_failures: parking_lot::Mutex::new(BTreeMap::new()),
        };
        if load {
            store.read(|_| Ok(()))?;
            if !store.read_only {
                store.sweep_stale_temps()?;
            }
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
