//! The vfs graph driver: every layer is a full copy of its parent, layout-compatible with
//! containers/storage's `vfs` driver.
//!
//! # Layout
//!
//! ```text
//! <graphroot>/vfs/            0700  driver home
//!   dir/                      0700
//!     <id>/                   the complete tree of layer <id>; its own mode and owner are
//!                             0555 and the mapped root for a base layer, the parent's for a child
//! ```
//!
//! Creating a child copies the parent's tree exactly ([`copy::copy_tree`]: hardlinks,
//! extended attributes, owners, modes, nanosecond times, devices, sparse files), by reflink
//! where the filesystem offers it. "Mounting" returns the directory. Diffs are the naive ones
//! of [`layerstore_driver::naive`] (`.wh.` whiteouts on apply).
//!
//! # The layer's top directory (as Go 1.43 leaves it, measured)
//!
//! * `create`: 0555 and the mapped root for a base layer; a child copies its parent's (mode,
//!   owner, times).
//! * `apply_diff` (and `import-layer`) of a tarball with a `./` entry: the entry's mode and
//!   owner (mapped), its access time as recorded (the epoch when the header has none); the
//!   modification time is when the apply finished (Go's extraction makes and removes a
//!   temporary directory there last). Without `./`: mode, owner and access time stay, the
//!   modification time is the apply's too.
//! * `update_layer_id_map` (a child created with other ID mappings than its parent's): the top
//!   directory keeps its owner, as Go's walk skips `.`; everything below is shifted, each
//!   inode once.
//!
//! # Trust
//!
//! The graph root is followed as configured; `vfs`, `dir` and `dir/<id>` are opened with
//! `O_NOFOLLOW` (the first two once, when the driver starts) and every operation on a layer
//! works through the descriptor of `dir/<id>` (copy, apply, diff, changes, the tar-split file
//! getter, ID shifting, removal), so swapping `dir/<id>` for a symlink at any moment reads or
//! writes nothing outside the store. Trees of any depth are copied, walked and removed with
//! the drivers' iterative walker and a bounded number of descriptors
//! ([`layerstore_driver::tree`]). The IDs `dir` and `staging` are refused.
//!
//! Staged layers (a [`layerstore_driver::Differ`] filling `vfs/staging/<random>`, moved into
//! `dir/<id>` by one `renameat2(RENAME_EXCHANGE)`, the old tree removed afterwards): the driver
//! is not told the parent while staging, so the differ writes only the layer's own files with
//! deletions marked overlay-style (0:0 character devices, `trusted.overlay.opaque=y`), and
//! moving the staged tree in lays it over a copy of `dir/<id>` (the parent's tree, for a layer
//! just created): markers delete what they name and go, staged directories keep the entries
//! below that they do not override. The result equals `apply_diff` of the same tarball, except
//! that the top directory keeps the mode and owner `create` gave it and a directory the
//! tarball only implies gets the archive's defaults (as in an overlay upper dir). Paths not
//! directly in `vfs/staging` are refused. Markers need `CAP_MKNOD`.
//!
//! Options (`--storage-opt`, prefix `vfs.` or `.`): `ignore_chown_errors=<bool>`,
//! `imagestore=<dir>[,<dir>…]` (read-only additional stores, looked up as
//! `<dir>/vfs/dir/<id>`); `mountopt` is refused, as in Go. A mount label is accepted and
//! kept (reported by [`Driver::metadata`] as `MountLabel`); no SELinux labelling is done.
//!
//! # Example
//!
//! ```
//! use layerstore_driver::{CreateOpts, Driver, DriverConfig, MountOpts};
//! use layerstore_vfs::VfsDriver;
//!
//! let root = tempfile::tempdir()?;
//! let driver = VfsDriver::new(&DriverConfig::new(root.path().join("graph"), root.path().join("run")))?;
//! driver.create("base", None, &CreateOpts::default())?;
//! let dir = driver.get("base", &MountOpts::default())?;
//! std::fs::write(dir.join("hello"), "world")?;
//! driver.create("child", Some("base"), &CreateOpts::default())?;
//! let child = driver.get("child", &MountOpts::default())?;
//! assert_eq!(child, root.path().join("graph/vfs/dir/child"));
//! assert_eq!(std::fs::read_to_string(child.join("hello"))?, "world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limitations
//!
//! No quotas (`--storage-opt size=` is refused), no SELinux labels, no `Dedup`. A hard link
//! whose first copy is deeper than `PATH_MAX` is made by opening its directory one level at a
//! time (slower, but only for such links).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use layerstore_driver::{
    ApplyDiffOpts, ApplyReport, CreateOpts, Differ, DifferOptions, DifferOutput, DirFileGetter,
    Driver, DriverConfig, DriverOptions, Error, FileGetter, IdMappings, LayerRoot, MountOpts,
    Registration, Result, naive, tree, validate_driver_layer_id,
};

pub mod copy;
mod staging;

/// The driver's name and home directory name.
pub const NAME: &str = "vfs";

/// Names in the driver's home that are the driver's own: never layer IDs.
pub const RESERVED_NAMES: &[&str] = &["dir", "staging"];

/// Mode of a base layer's top directory (Go's `defaultPerms`).
const BASE_LAYER_MODE: u32 = 0o555;

/// How the top crate registers this driver in its [`layerstore_driver::Registry`].
pub fn registration() -> Registration {
    Registration {
        name: NAME,
        aliases: &[],
        init: |config| Ok(Box::new(VfsDriver::new(config)?)),
    }
}

/// The vfs driver (see the crate documentation).
#[derive(Debug)]
pub struct VfsDriver {
    home: PathBuf,
    /// `<home>`, opened once (the graph root followed as configured, `vfs` never).
    home_fd: OwnedFd,
    /// `<home>/dir`, likewise.
    dirs_fd: OwnedFd,
    additional_homes: Vec<PathBuf>,
    ignore_chown_errors: bool,
    default_mappings: IdMappings,
    mount_labels: Mutex<HashMap<String, String>>,
    /// Staging directories (names in `<home>/staging`) this driver staged and whose differ
    /// counted no deletion markers in them: their merge skips what has nothing below.
    unmarked_staging: Mutex<HashSet<CString>>,
}

fn validate(id: &str) -> Result<()> {
    validate_driver_layer_id(id, RESERVED_NAMES)
}

fn id_cstring(id: &str) -> Result<CString> {
    CString::new(id).map_err(|_| Error::InvalidId {
        id: id.to_string(),
        reason: "contains NUL",
    })
}

/// A layer's tree, opened.
struct OpenLayer {
    fd: OwnedFd,
    path: PathBuf,
}

impl VfsDriver {
    /// Starts the driver in `<graph_root>/vfs`, creating `vfs/dir` (0700) if needed.
    pub fn new(config: &DriverConfig) -> Result<Self> {
        let mut options = DriverOptions::parse(NAME, &[], &config.options)?;
        let additional_homes = options
            .take_list("imagestore")
            .into_iter()
            .map(PathBuf::from)
            .collect();
        options.forbid("mountopt", "does not support mount options")?;
        let ignore_chown_errors = options.take_bool("ignore_chown_errors")?.unwrap_or(false);
        options.finish()?;
        let home = config.home(NAME);
        let home_fd = tree::open_home(&config.graph_root, c"vfs", 0o700)
            .map_err(|e| Error::io("mkdir", &home, e))?;
        let dirs = home.join("dir");
        let dirs_fd = tree::ensure_dir_at(&home_fd, c"dir", 0o700)
            .map_err(|e| Error::io("mkdir", &dirs, e))?;
        let driver = VfsDriver {
            home,
            home_fd,
            dirs_fd,
            additional_homes,
            ignore_chown_errors,
            default_mappings: config.id_mappings.clone(),
            mount_labels: Mutex::new(HashMap::new()),
            unmarked_staging: Mutex::new(HashSet::new()),
        };
        // What killed processes left staging: best effort, a store we cannot write still opens.
        let _ = driver.staging().sweep_abandoned();
        Ok(driver)
    }

    /// Where layer `id`'s tree is: `<home>/dir/<id>`, or the first additional image store
    /// holding it (`<store>/vfs/dir/<id>`); the former when neither exists.
    pub fn layer_dir(&self, id: &str) -> Result<PathBuf> {
        validate(id)?;
        Ok(match self.open_layer(id) {
            Ok(layer) => layer.path,
            Err(_) => self.own_dir(id),
        })
    }

    fn own_dir(&self, id: &str) -> PathBuf {
        self.home.join("dir").join(id)
    }

    /// Opens layer `id`'s tree: `dir/<id>` from the home's descriptor, else
    /// `<store>/vfs/dir/<id>` of the first additional image store holding it; never through a
    /// symlink below the home or the store.
    fn open_layer(&self, id: &str) -> Result<OpenLayer> {
        validate(id)?;
        let name = id_cstring(id)?;
        let own = self.own_dir(id);
        match tree::open_dir_at(&self.dirs_fd, &name) {
            Ok(fd) => return Ok(OpenLayer { fd, path: own }),
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::layer_io(id, "open", &own, e));
            }
            Err(_) => {}
        }
        for store in &self.additional_homes {
            let opened = open_store_layer(store, &name);
            if let Ok(fd) = opened {
                let path = store.join(NAME).join("dir").join(id);
                return Ok(OpenLayer { fd, path });
            }
        }
        Err(Error::LayerNotFound {
            id: id.to_string(),
            path: own,
        })
    }

    fn keep_label(&self, id: &str, label: &str) {
        if !label.is_empty() {
            let mut labels = self
                .mount_labels
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            labels.insert(id.to_string(), label.to_string());
        }
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        validate(id)?;
        if !opts.storage_opt.is_empty() {
            return Err(Error::StorageOptions {
                driver: NAME.to_string(),
                id: id.to_string(),
            });
        }
        let dir = self.own_dir(id);
        let name = id_cstring(id)?;
        if tree::stat_at(&self.dirs_fd, &name).is_ok() {
            return Err(Error::LayerExists {
                id: id.to_string(),
                path: dir,
            });
        }
        let (mode, uid, gid, parent_layer) = match parent {
            Some(parent) => {
                let layer = self.open_layer(parent)?;
                let st = tree::stat_fd(&layer.fd)
                    .map_err(|e| Error::layer_io(parent, "stat", &layer.path, e))?;
                (tree::permissions(&st), st.stx_uid, st.stx_gid, Some(layer))
            }
            None => {
                let mappings = opts.id_mappings.as_ref().unwrap_or(&self.default_mappings);
                let (uid, gid) = mappings.root_owner(id, &dir)?;
                (BASE_LAYER_MODE, uid, gid, None)
            }
        };
        rustix::fs::mkdirat(&self.dirs_fd, &name, rustix::fs::Mode::from_raw_mode(0o700))
            .map_err(|e| Error::layer_io(id, "mkdir", &dir, e))?;
        let result = tree::open_dir_at(&self.dirs_fd, &name)
            .map_err(|e| Error::layer_io(id, "open", &dir, e))
            .and_then(|fd| {
                self.fill_layer(
                    id,
                    &dir,
                    fd.as_fd(),
                    mode,
                    (uid, gid),
                    parent_layer.as_ref(),
                )
            });
        if result.is_err() {
            // Leave no half-made layer behind; the original error is what matters.
            let _ = tree::remove_all_at(self.dirs_fd.as_fd(), &name);
        }
        result?;
        self.keep_label(id, &opts.mount_label);
        Ok(())
    }

    fn fill_layer(
        &self,
        id: &str,
        dir: &Path,
        fd: BorrowedFd<'_>,
        mode: u32,
        (uid, gid): (u32, u32),
        parent: Option<&OpenLayer>,
    ) -> Result<()> {
        let st = tree::stat_fd(fd).map_err(|e| Error::layer_io(id, "stat", dir, e))?;
        // Only when needed, so that an unprivileged user can make layers owned by itself.
        if (st.stx_uid, st.stx_gid) != (uid, gid) {
            let result = rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            );
            match result {
                Err(rustix::io::Errno::PERM) if self.ignore_chown_errors => {}
                other => other.map_err(|e| Error::layer_io(id, "chown", dir, e))?,
            }
        }
        rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| Error::layer_io(id, "chmod", dir, e))?;
        if let Some(parent) = parent {
            let options = copy::CopyOptions {
                ignore_chown_errors: self.ignore_chown_errors,
                ..Default::default()
            };
            copy::copy_tree_at(parent.fd.as_fd(), fd, options).map_err(|e| Error::LayerIo {
                id: id.to_string(),
                op: e.op,
                path: dir.join(&e.path),
                source: e.source,
            })?;
        }
        Ok(())
    }
}

/// Opens `<store>/vfs/dir/<name>` of an additional image store: the store as configured, the
/// rest never through a symlink.
fn open_store_layer(store: &Path, name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    let store = tree::open_dir_following(store)?;
    let home = tree::open_dir_at(&store, c"vfs")?;
    let dirs = tree::open_dir_at(&home, c"dir")?;
    tree::open_dir_at(&dirs, name)
}

/// Removes a tree (symlinks inside are removed, never followed) with the one remover of the
/// drivers ([`tree::remove_all_at`]), naming the path that failed.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr, shown: &Path) -> io::Result<()> {
    tree::remove_all_at(dir, name).map_err(|e| {
        let path = shown.parent().unwrap_or(shown).join(&e.path);
        io::Error::new(e.source.kind(), format!("{}: {}", path.display(), e.source))
    })
}

impl Driver for VfsDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
    }

    /// A layer holds a whole copy of its parent's tree: a template's copy is a create on it.
    fn create_copies_parent(&self) -> bool {
        true
    }

    /// Removes `dir/<id>` and everything below it (iteratively, whatever its depth, with a
    /// bounded number of descriptors; a symlink there is removed, never followed).
    fn remove(&self, id: &str) -> Result<()> {
        if RESERVED_NAMES.contains(&id) {
            // No layer of that ID can have files here (create refuses it): nothing to remove,
            // and the driver's own directory of that name is left alone.
            return Ok(());
        }
        validate(id)?;
        let dir = self.own_dir(id);
        remove_tree_at(self.dirs_fd.as_fd(), &id_cstring(id)?, &dir)
            .map_err(|e| Error::layer_io(id, "remove", &dir, e))?;
        let mut labels = self
            .mount_labels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        labels.remove(id);
        Ok(())
    }

    /// The layer's directory. Accepts no mount options but `ro` (Go: "vfs driver does not
    /// support mount options").
    fn get(&self, id: &str, opts: &MountOpts) -> Result<PathBuf> {
        self.get_root(id, opts).map(|root| root.path)
    }

    /// The layer's directory, opened from the driver's home (or its image store).
    fn get_root(&self, id: &str, opts: &MountOpts) -> Result<LayerRoot> {
        validate(id)?;
        if opts.options.iter().any(|o| o != "ro") {
            return Err(Error::MountOptions {
                driver: NAME.to_string(),
                id: id.to_string(),
                options: opts.options.clone(),
            });
        }
        let layer = self.open_layer(id)?;
        self.keep_label(id, &opts.mount_label);
        Ok(LayerRoot {
            path: layer.path,
            fd: layer.fd,
        })
    }

    /// Nothing to release: vfs does not mount.
    fn put(&self, id: &str) -> Result<()> {
        validate(id)
    }

    fn exists(&self, id: &str) -> bool {
        self.open_layer(id).is_ok()
    }

    /// The directories in `dir/` whose names are valid layer IDs.
    fn list_layers(&self) -> Result<Vec<String>> {
        let dirs = self.home.join("dir");
        let names = tree::read_names(&self.dirs_fd).map_err(|e| Error::io("read", &dirs, e))?;
        let mut ids = Vec::new();
        for name in names {
            let is_dir = tree::stat_at(&self.dirs_fd, &name)
                .is_ok_and(|st| tree::file_type(&st) == tree::mode::S_IFDIR);
            if let (true, Ok(id)) = (is_dir, name.into_string())
                && validate(&id).is_ok()
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        validate(id)?;
        let labels = self
            .mount_labels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(labels
            .get(id)
            .map(|label| ("MountLabel".to_string(), label.clone()))
            .into_iter()
            .collect())
    }

    /// Reads files straight from the layer's directory, opened once from the driver's home
    /// (Go: a path file getter rooted there).
    fn diff_getter(&self, id: &str) -> Result<Option<Box<dyn FileGetter + Send + '_>>> {
        let layer = self.open_layer(id)?;
        Ok(Some(Box::new(DirFileGetter::from_fd(layer.fd, layer.path))))
    }

    fn additional_image_stores(&self) -> Vec<PathBuf> {
        self.additional_homes.clone()
    }

    fn apply_diff(
        &self,
        id: &str,
        parent: Option<&str>,
        mut opts: ApplyDiffOpts<'_>,
    ) -> Result<ApplyReport> {
        opts.ignore_chown_errors |= self.ignore_chown_errors;
        naive::apply_diff(self, id, parent, opts)
    }

    /// Lets `differ` fill a fresh `<home>/staging/<random>` with the layer's own files,
    /// deletions marked overlay-style (see [`VfsDriver::staging`] and the crate docs).
    fn apply_diff_with_differ(
        &self,
        options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        let output = self
            .staging()
            .stage(options, differ, self.ignore_chown_errors)?;
        if output.overlay_markers == Some(0) {
            let name = self.staging().name_of(&output.target)?;
            self.unmarked_staging
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name);
        }
        Ok(output)
    }

    /// Lays the staged tree over a copy of `dir/<id>` (deletions applied, markers dropped),
    /// gives it the layer's mode and owner, exchanges it with `dir/<id>`
    /// (`renameat2(RENAME_EXCHANGE)`) and removes the old tree.
    fn apply_diff_from_staging_directory(&self, id: &str, staging: &Path) -> Result<()> {
        self.unstage(id, staging, staging::Below::Copy)
    }

    /// As `apply_diff_from_staging_directory`, but the layer's tree (the parent's copy that
    /// `create` made) is itself the tree below: what the staged tree does not replace moves
    /// into it, with no second copy.
    fn apply_diff_from_staging_directory_into_new(&self, id: &str, staging: &Path) -> Result<()> {
        self.unstage(id, staging, staging::Below::UseUp)
    }

    /// Removes a staging directory; refuses any path not directly in `<home>/staging`.
    fn cleanup_staging_directory(&self, staging: &Path) -> Result<()> {
        if let Ok(name) = self.staging().name_of(staging) {
            self.unmarked_staging
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&name);
        }
        self.staging().remove(staging)
    }

    /// The layer's whole tree, `dir/<id>` (or its additional image store's copy).
    fn differ_target(&self, id: &str) -> Result<PathBuf> {
        self.open_layer(id).map(|layer| layer.path)
    }
}
