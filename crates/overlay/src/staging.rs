//! Staged layers (Go's `DriverWithDiffer` for overlay): staging directories live in
//! `<home>/staging/<random>` and become a layer's `diff/` by an atomic exchange.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use layerstore_driver::{Differ, DifferOptions, DifferOutput, Error, Result, tree};
use rustix::fs::{RenameFlags, renameat_with};

use crate::{OverlayDriver, generate_link_id};

/// The staging home's name inside the driver's home (Go's `stagingDir`).
pub(crate) const STAGING_DIR: &str = "staging";

impl OverlayDriver {
    /// `<home>/staging`, where staging directories are made.
    pub fn staging_home(&self) -> PathBuf {
        self.home.join(STAGING_DIR)
    }

    /// `<home>/staging`, opened (made if missing) from the home, never through a symlink.
    fn staging_home_fd(&self) -> Result<OwnedFd> {
        tree::ensure_dir_at(&self.home_fd, c"staging", 0o700)
            .map_err(|e| Error::io("mkdir", self.staging_home(), e))
    }

    /// The name of `staging` in the staging home; refuses any path that is not directly
    /// inside it (so a caller cannot make the driver rename or delete something else).
    fn staging_name(&self, staging: &Path) -> Result<CString> {
        let home = self.staging_home();
        let name = staging
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n != "." && *n != "..");
        match name {
            Some(name) if staging.parent() == Some(home.as_path()) => {
                CString::new(name).map_err(|_| Error::NotStaging {
                    path: staging.to_path_buf(),
                })
            }
            _ => Err(Error::NotStaging {
                path: staging.to_path_buf(),
            }),
        }
    }

    pub(crate) fn stage(
        &self,
        options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        let home_path = self.staging_home();
        let home = self.staging_home_fd()?;
        let (dir, name) = loop {
            let name = generate_link_id().map_err(|e| Error::io("getrandom", &home_path, e))?;
            let dir = home_path.join(&name);
            let name = CString::new(name).map_err(|_| Error::NotStaging { path: dir.clone() })?;
            match rustix::fs::mkdirat(&home, &name, rustix::fs::Mode::from_raw_mode(0o700)) {
                Ok(()) => break (dir, name),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(Error::io("mkdir", &dir, e)),
            }
        };
        let mut options = options.clone();
        options.whiteouts = layerstore_archive::WhiteoutStyle::Overlay;
        options.ignore_chown_errors |= self.options.ignore_chown_errors;
        // The differ writes through the staging directory's descriptor (its path could be
        // swapped for a symlink meanwhile); the caller is told its real path.
        let result = tree::open_dir_at(&home, &name)
            .map_err(|e| Error::io("open", &dir, e))
            .and_then(|fd| {
                differ.apply_diff(&layerstore_driver::mount::proc_path(fd.as_fd()), &options)
            });
        match result {
            Ok(mut output) => {
                output.target = dir;
                Ok(output)
            }
            Err(e) => {
                // Nothing half-filled stays behind; the differ's error is the one to report.
                let _ = tree::remove_all_at(home.as_fd(), &name);
                Err(e)
            }
        }
    }

    pub(crate) fn unstage(&self, id: &str, staging: &Path) -> Result<()> {
        let name = self.staging_name(staging)?;
        let layer = self.open_layer(id)?;
        let diff_path = layer.dir.join("diff");
        let diff = self.open_own_diff(id, &layer)?;
        let home = self.staging_home_fd()?;
        let staged = tree::open_dir_at(&home, &name).map_err(|_| Error::NotStaging {
            path: staging.to_path_buf(),
        })?;
        // A mounted overlay keeps using the old upper dir: refuse rather than swap under it.
        if layerstore_driver::mount::is_mount_root_at(layer.fd.as_fd(), c"merged") {
            return Err(Error::layer_io(
                id,
                "replace the files of the mounted layer",
                layer.dir.join("merged"),
                io::Error::from(io::ErrorKind::ResourceBusy),
            ));
        }
        // The staged tree takes the place, mode and owner create gave `diff/`.
        let st = tree::stat_fd(&diff).map_err(|e| Error::layer_io(id, "stat", &diff_path, e))?;
        let chown = rustix::fs::fchown(
            &staged,
            Some(rustix::fs::Uid::from_raw(st.stx_uid)),
            Some(rustix::fs::Gid::from_raw(st.stx_gid)),
        );
        match chown {
            Err(rustix::io::Errno::PERM) if self.options.ignore_chown_errors => {}
            other => other.map_err(|e| Error::layer_io(id, "chown", staging, e))?,
        }
        rustix::fs::fchmod(
            &staged,
            rustix::fs::Mode::from_raw_mode(tree::permissions(&st)),
        )
        .map_err(|e| Error::layer_io(id, "chmod", staging, e))?;
        drop(diff);
        // One exchange: the layer has the old `diff/` or the new one, never neither. The old
        // one, now at the staging path, goes afterwards.
        renameat_with(&home, &name, &layer.fd, c"diff", RenameFlags::EXCHANGE)
            .map_err(|e| Error::layer_io(id, "exchange", &diff_path, io::Error::from(e)))?;
        rustix::fs::fsync(&layer.fd).map_err(|e| Error::layer_io(id, "fsync", &layer.dir, e))?;
        self.remove_staging(staging)
    }

    pub(crate) fn remove_staging(&self, staging: &Path) -> Result<()> {
        let name = self.staging_name(staging)?;
        let home = match tree::open_dir_at(&self.home_fd, c"staging") {
            Ok(home) => home,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("open", self.staging_home(), e)),
        };
        tree::remove_all_at(home.as_fd(), &name)
            .map_err(|e| Error::io("remove", staging.join(&e.path), e.source))
    }

    pub(crate) fn differ_dir(&self, id: &str) -> Result<PathBuf> {
        let layer = self.open_layer(id)?;
        self.open_diff(id, &layer)?;
        Ok(layer.dir.join("diff"))
    }
}
