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
//! No quotas (`--storage-opt size=` is refused), no SELinux labels, no `Dedup`; the copy holds
//! two descriptors per directory level (and per directory with files queued for its second
//! thread, at most a few), so extremely deep trees need a matching fd limit.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use layerstore_driver::{
    ApplyDiffOpts, ApplyReport, CreateOpts, Differ, DifferOptions, DifferOutput, DirFileGetter,
    Driver, DriverConfig, DriverOptions, Error, FileGetter, IdMappings, MountOpts, Registration,
    Result, naive, tree, validate_layer_id,
};

pub mod copy;
mod staging;

/// The driver's name and home directory name.
pub const NAME: &str = "vfs";

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
    additional_homes: Vec<PathBuf>,
    ignore_chown_errors: bool,
    default_mappings: IdMappings,
    mount_labels: Mutex<HashMap<String, String>>,
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
        let dirs = home.join("dir");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dirs)
            .map_err(|e| Error::io("mkdir", &dirs, e))?;
        Ok(VfsDriver {
            home,
            additional_homes,
            ignore_chown_errors,
            default_mappings: config.id_mappings.clone(),
            mount_labels: Mutex::new(HashMap::new()),
        })
    }

    /// Where layer `id`'s tree is: `<home>/dir/<id>`, or the first additional image store
    /// holding it (`<store>/vfs/dir/<id>`); the former when neither exists.
    pub fn layer_dir(&self, id: &str) -> Result<PathBuf> {
        validate_layer_id(id)?;
        let own = self.own_dir(id);
        if is_dir(&own) {
            return Ok(own);
        }
        Ok(self
            .additional_homes
            .iter()
            .map(|store| store.join(NAME).join("dir").join(id))
            .find(|candidate| is_dir(candidate))
            .unwrap_or(own))
    }

    fn own_dir(&self, id: &str) -> PathBuf {
        self.home.join("dir").join(id)
    }

    fn existing_dir(&self, id: &str) -> Result<PathBuf> {
        let dir = self.layer_dir(id)?;
        if is_dir(&dir) {
            Ok(dir)
        } else {
            Err(Error::LayerNotFound {
                id: id.to_string(),
                path: dir,
            })
        }
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
        validate_layer_id(id)?;
        if !opts.storage_opt.is_empty() {
            return Err(Error::StorageOptions {
                driver: NAME.to_string(),
                id: id.to_string(),
            });
        }
        let dir = self.own_dir(id);
        if std::fs::symlink_metadata(&dir).is_ok() {
            return Err(Error::LayerExists {
                id: id.to_string(),
                path: dir,
            });
        }
        let (mode, uid, gid, parent_dir) = match parent {
            Some(parent) => {
                let parent_dir = self.existing_dir(parent)?;
                let st = std::fs::metadata(&parent_dir)
                    .map_err(|e| Error::layer_io(parent, "stat", &parent_dir, e))?;
                use std::os::unix::fs::MetadataExt;
                (st.mode() & 0o7777, st.uid(), st.gid(), Some(parent_dir))
            }
            None => {
                let mappings = opts.id_mappings.as_ref().unwrap_or(&self.default_mappings);
                let (uid, gid) = mappings.root_owner(id, &dir)?;
                (BASE_LAYER_MODE, uid, gid, None)
            }
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::layer_io(id, "mkdir", &dir, e))?;
        let result = self.fill_layer(id, &dir, mode, uid, gid, parent_dir.as_deref());
        if result.is_err() {
            // Leave no half-made layer behind; the original error is what matters.
            let _ = remove_tree(&dir);
        }
        result?;
        self.keep_label(id, &opts.mount_label);
        Ok(())
    }

    fn fill_layer(
        &self,
        id: &str,
        dir: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
        parent_dir: Option<&Path>,
    ) -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let st = std::fs::symlink_metadata(dir).map_err(|e| Error::layer_io(id, "stat", dir, e))?;
        // Only when needed, so that an unprivileged user can make layers owned by itself.
        if (st.uid(), st.gid()) != (uid, gid) {
            match std::os::unix::fs::chown(dir, Some(uid), Some(gid)) {
                Err(e)
                    if self.ignore_chown_errors
                        && e.kind() == std::io::ErrorKind::PermissionDenied => {}
                other => other.map_err(|e| Error::layer_io(id, "chown", dir, e))?,
            }
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::layer_io(id, "chmod", dir, e))?;
        if let Some(parent_dir) = parent_dir {
            let options = copy::CopyOptions {
                ignore_chown_errors: self.ignore_chown_errors,
                ..Default::default()
            };
            copy::copy_tree(parent_dir, dir, options).map_err(|e| Error::LayerIo {
                id: id.to_string(),
                op: e.op,
                path: dir.join(&e.path),
                source: e.source,
            })?;
        }
        Ok(())
    }
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Removes a layer tree (symlinks inside are removed, never followed); read-only directories
/// are made writable first when that is what stops the removal (rootless).
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tree::walk(dir, &mut |entry| {
                if tree::file_type(entry.stat) == tree::mode::S_IFDIR {
                    rustix::fs::chmodat(
                        entry.dir,
                        entry.name,
                        rustix::fs::Mode::from_raw_mode(tree::permissions(entry.stat) | 0o700),
                        rustix::fs::AtFlags::empty(),
                    )?;
                }
                Ok(())
            })
            .map_err(|w| w.source)?;
            std::fs::remove_dir_all(dir)
        }
        Err(e) => Err(e),
    }
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

    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
    }

    /// A copy of the template (which has the same parent), as Go's vfs does.
    fn create_from_template(
        &self,
        id: &str,
        template: &str,
        _template_mappings: &IdMappings,
        parent: Option<&str>,
        _parent_mappings: &IdMappings,
        opts: &CreateOpts,
        _read_write: bool,
    ) -> Result<()> {
        if let Some(parent) = parent {
            validate_layer_id(parent)?;
        }
        self.create_layer(id, Some(template), opts)
    }

    fn remove(&self, id: &str) -> Result<()> {
        validate_layer_id(id)?;
        let dir = self.own_dir(id);
        remove_tree(&dir).map_err(|e| Error::layer_io(id, "remove", &dir, e))?;
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
        validate_layer_id(id)?;
        if opts.options.iter().any(|o| o != "ro") {
            return Err(Error::MountOptions {
                driver: NAME.to_string(),
                id: id.to_string(),
                options: opts.options.clone(),
            });
        }
        let dir = self.existing_dir(id)?;
        self.keep_label(id, &opts.mount_label);
        Ok(dir)
    }

    /// Nothing to release: vfs does not mount.
    fn put(&self, id: &str) -> Result<()> {
        validate_layer_id(id)
    }

    fn exists(&self, id: &str) -> bool {
        self.layer_dir(id).is_ok_and(|dir| is_dir(&dir))
    }

    fn list_layers(&self) -> Result<Vec<String>> {
        let dirs = self.home.join("dir");
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&dirs).map_err(|e| Error::io("read", &dirs, e))? {
            let entry = entry.map_err(|e| Error::io("read", &dirs, e))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if let (true, Some(id)) = (is_dir, entry.file_name().to_str()) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        validate_layer_id(id)?;
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

    /// Reads files straight from the layer's directory (Go: a path file getter rooted there).
    fn diff_getter(&self, id: &str) -> Result<Option<Box<dyn FileGetter + Send + '_>>> {
        let dir = self.existing_dir(id)?;
        let getter = DirFileGetter::new(&dir).map_err(|source| Error::TarSplit {
            id: id.to_string(),
            source,
        })?;
        Ok(Some(Box::new(getter)))
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
    /// deletions marked overlay-style (see [`VfsDriver::staging_home`] and the crate docs).
    fn apply_diff_with_differ(
        &self,
        options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        self.stage(options, differ)
    }

    /// Lays the staged tree over a copy of `dir/<id>` (deletions applied, markers dropped),
    /// gives it the layer's mode and owner, exchanges it with `dir/<id>`
    /// (`renameat2(RENAME_EXCHANGE)`) and removes the old tree.
    fn apply_diff_from_staging_directory(&self, id: &str, staging: &Path) -> Result<()> {
        self.unstage(id, staging)
    }

    /// Removes a staging directory; refuses any path not directly in `<home>/staging`.
    fn cleanup_staging_directory(&self, staging: &Path) -> Result<()> {
        self.remove_staging(staging)
    }

    /// The layer's whole tree, `dir/<id>` (or its additional image store's copy).
    fn differ_target(&self, id: &str) -> Result<PathBuf> {
        self.existing_dir(id)
    }

    /// Naive chown of the tree, then the top directory owned by the mapped root (as Go).
    fn update_layer_id_map(
        &self,
        id: &str,
        to_container: &IdMappings,
        to_host: &IdMappings,
        mount_label: &str,
    ) -> Result<()> {
        naive::update_layer_id_map(self, id, to_container, to_host, mount_label)?;
        let dir = self.existing_dir(id)?;
        let (uid, gid) = to_host.root_owner(id, &dir)?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| Error::layer_io(id, "chown", &dir, e))
    }
}
