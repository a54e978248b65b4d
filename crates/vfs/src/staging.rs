//! Staged layers (Go's `DriverWithDiffer`, which Go's vfs lacks): a differ fills
//! `<home>/staging/<random>`, which then becomes the layer's tree `dir/<id>` by one atomic
//! exchange.
//!
//! A vfs layer holds its parent's whole tree, but the driver is not told the parent when it
//! stages (the layer may not exist yet). So the differ writes only the layer's own files, with
//! deletions marked overlay-style (a 0:0 character device for a deleted name,
//! `trusted.overlay.opaque=y` on an opaque directory); moving the staged tree into layer `id`
//! then lays it over a copy of `dir/<id>` (which, for a layer just created, is its parent's
//! tree): the markers delete what they name and are dropped, a staged directory takes the place
//! of the one below and keeps the entries it does not override, anything else replaces what
//! was there. The result is what [`Driver::apply_diff`](layerstore_driver::Driver::apply_diff)
//! gives for the same tarball, except that a directory the tarball only implies (no entry of
//! its own) gets the archive's default mode and owner instead of the parent's, as an overlay
//! upper dir would show it, and the layer's top directory keeps the mode and owner `create`
//! gave it (as overlay's `diff/` does) where `apply_diff` takes the tarball's `./` entry.
//! Making the markers needs `CAP_MKNOD` (root).

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use layerstore_driver::{Differ, DifferOptions, DifferOutput, Error, Result};
use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::{VfsDriver, copy, is_dir, remove_tree};

/// The staging home's name inside the driver's home.
const STAGING_DIR: &str = "staging";

/// The xattr overlay-style whiteouts mark an opaque directory with.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

impl VfsDriver {
    /// `<home>/staging`, where staging directories are made.
    pub fn staging_home(&self) -> PathBuf {
        self.home.join(STAGING_DIR)
    }

    /// Refuses any path that is not directly inside the staging home, so that a caller cannot
    /// make the driver move or delete anything else.
    fn check_staging(&self, staging: &Path) -> Result<()> {
        let inside = staging.parent() == Some(self.staging_home().as_path())
            && staging
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n != "." && n != "..");
        if inside {
            Ok(())
        } else {
            Err(Error::NotStaging {
                path: staging.to_path_buf(),
            })
        }
    }

    /// A fresh, empty `<home>/staging/<random>` (0700).
    fn make_staging_dir(&self) -> Result<PathBuf> {
        let home = self.staging_home();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&home)
            .map_err(|e| Error::io("mkdir", &home, e))?;
        loop {
            let mut random = [0u8; 16];
            rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
                .map_err(|e| Error::io("getrandom", &home, io::Error::from(e)))?;
            let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let dir = home.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("mkdir", &dir, e)),
            }
        }
    }

    pub(crate) fn stage(
        &self,
        options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        let dir = self.make_staging_dir()?;
        let mut options = options.clone();
        // Deletions must survive in an empty directory until the tree is laid over its parent.
        options.whiteouts = layerstore_archive::WhiteoutStyle::Overlay;
        options.ignore_chown_errors |= self.ignore_chown_errors;
        match differ.apply_diff(&dir, &options) {
            Ok(mut output) => {
                output.target = dir;
                Ok(output)
            }
            Err(e) => {
                // Nothing half-filled stays behind; the differ's error is the one to report.
                let _ = remove_tree(&dir);
                Err(e)
            }
        }
    }

    pub(crate) fn unstage(&self, id: &str, staging: &Path) -> Result<()> {
        self.check_staging(staging)?;
        layerstore_driver::validate_layer_id(id)?;
        let target = self.own_dir(id);
        if !is_dir(&target) {
            return Err(Error::LayerNotFound {
                id: id.to_string(),
                path: target,
            });
        }
        if !is_dir(staging) {
            return Err(Error::NotStaging {
                path: staging.to_path_buf(),
            });
        }
        let below = self.make_staging_dir()?;
        let merged = self.lay_over(id, staging, &target, &below);
        // What is left of the copy is not needed whatever happened.
        let _ = remove_tree(&below);
        merged?;
        // One exchange: the layer has its old tree or the new one, never neither. The old one,
        // now at the staging path, goes afterwards.
        renameat_with(CWD, staging, CWD, &target, RenameFlags::EXCHANGE)
            .map_err(|e| Error::layer_io(id, "exchange", &target, io::Error::from(e)))?;
        let dirs = self.home.join("dir");
        std::fs::File::open(&dirs)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::layer_io(id, "fsync", &dirs, e))?;
        self.remove_staging(staging)
    }

    /// Copies the layer's tree `target` into `below`, lays the staged tree `staging` over it
    /// (the result in `staging`) and gives `staging` the mode and owner of `target`.
    fn lay_over(&self, id: &str, staging: &Path, target: &Path, below: &Path) -> Result<()> {
        let options = copy::CopyOptions {
            ignore_chown_errors: self.ignore_chown_errors,
            ..Default::default()
        };
        copy::copy_tree(target, below, options).map_err(|e| Error::LayerIo {
            id: id.to_string(),
            op: e.op,
            path: below.join(&e.path),
            source: e.source,
        })?;
        merge(staging, Some(below)).map_err(|(path, e)| Error::layer_io(id, "merge", &path, e))?;
        let st = std::fs::metadata(target).map_err(|e| Error::layer_io(id, "stat", target, e))?;
        if let Err(e) = std::os::unix::fs::chown(staging, Some(st.uid()), Some(st.gid()))
            && !(self.ignore_chown_errors && e.kind() == io::ErrorKind::PermissionDenied)
        {
            return Err(Error::layer_io(id, "chown", staging, e));
        }
        std::fs::set_permissions(staging, std::fs::Permissions::from_mode(st.mode() & 0o7777))
            .map_err(|e| Error::layer_io(id, "chmod", staging, e))
    }

    pub(crate) fn remove_staging(&self, staging: &Path) -> Result<()> {
        self.check_staging(staging)?;
        remove_tree(staging).map_err(|e| Error::io("remove", staging, e))
    }
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Makes `upper` (a staged directory) what the layer must hold there: whiteouts in it delete
/// the names they mark and go, and unless it is opaque, entries of `lower` (the same directory
/// in a copy of the tree below) that it does not name move into it. Never follows symlinks.
fn merge(upper: &Path, lower: Option<&Path>) -> std::result::Result<(), (PathBuf, io::Error)> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |e: io::Error| (path, e)
    };
    let mut value = [0u8; 8];
    let opaque = rustix::fs::lgetxattr(upper, OPAQUE_XATTR, &mut value[..])
        .is_ok_and(|n| value[..n] == *b"y");
    if opaque {
        rustix::fs::lremovexattr(upper, OPAQUE_XATTR)
            .map_err(|e| (upper.to_path_buf(), e.into()))?;
    }
    // Deleting markers and moving entries in must not change the times the differ set.
    let times = rustix::fs::statx(
        CWD,
        upper,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        rustix::fs::StatxFlags::ATIME | rustix::fs::StatxFlags::MTIME,
    )
    .map_err(|e| (upper.to_path_buf(), io::Error::from(e)))?;
    let lower = lower.filter(|_| !opaque);
    let mut named = std::collections::HashSet::new();
    for entry in std::fs::read_dir(upper).map_err(at(upper))? {
        let entry = entry.map_err(at(upper))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(at(&path))?;
        named.insert(entry.file_name());
        if is_whiteout(&meta) {
            std::fs::remove_file(&path).map_err(at(&path))?;
        } else if meta.is_dir() {
            let below = lower
                .map(|l| l.join(entry.file_name()))
                .filter(|b| is_dir(b));
            merge(&path, below.as_deref())?;
        }
    }
    if let Some(lower) = lower {
        for entry in std::fs::read_dir(lower).map_err(at(lower))? {
            let entry = entry.map_err(at(lower))?;
            if !named.contains(&entry.file_name()) {
                let to = upper.join(entry.file_name());
                std::fs::rename(entry.path(), &to).map_err(at(&to))?;
            }
        }
    }
    let timestamp = |t: rustix::fs::StatxTimestamp| rustix::fs::Timespec {
        tv_sec: t.tv_sec,
        tv_nsec: t.tv_nsec.into(),
    };
    rustix::fs::utimensat(
        CWD,
        upper,
        &rustix::fs::Timestamps {
            last_access: timestamp(times.stx_atime),
            last_modification: timestamp(times.stx_mtime),
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| (upper.to_path_buf(), io::Error::from(e)))
}
