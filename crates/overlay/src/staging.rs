//! Staged layers (Go's `DriverWithDiffer` for overlay): staging directories live in
//! `<home>/staging/<random>` and become a layer's `diff/` by an atomic exchange.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use layerstore_driver::{Differ, DifferOptions, DifferOutput, Error, Result};
use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::{OverlayDriver, chown, generate_link_id, mkdir};

/// The staging home's name inside the driver's home (Go's `stagingDir`).
pub(crate) const STAGING_DIR: &str = "staging";

impl OverlayDriver {
    /// `<home>/staging`, where staging directories are made.
    pub fn staging_home(&self) -> PathBuf {
        self.home.join(STAGING_DIR)
    }

    /// Refuses any path that is not directly inside the staging home (so a caller cannot make
    /// the driver rename or delete something else).
    fn check_staging(&self, staging: &Path) -> Result<()> {
        let home = self.staging_home();
        let inside = staging.parent() == Some(home.as_path())
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

    pub(crate) fn stage(
        &self,
        options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        let home = self.staging_home();
        mkdir(&home, 0o700).map_err(|e| Error::io("mkdir", &home, e))?;
        let dir = loop {
            let name = generate_link_id().map_err(|e| Error::io("getrandom", &home, e))?;
            let dir = home.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("mkdir", &dir, e)),
            }
        };
        let mut options = options.clone();
        options.whiteouts = layerstore_archive::WhiteoutStyle::Overlay;
        options.ignore_chown_errors |= self.options.ignore_chown_errors;
        match differ.apply_diff(&dir, &options) {
            Ok(mut output) => {
                output.target = dir;
                Ok(output)
            }
            Err(e) => {
                // Nothing half-filled stays behind; the differ's error is the one to report.
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    pub(crate) fn unstage(&self, id: &str, staging: &Path) -> Result<()> {
        self.check_staging(staging)?;
        let diff = self.differ_dir(id)?;
        if !std::fs::symlink_metadata(staging).is_ok_and(|m| m.is_dir()) {
            return Err(Error::NotStaging {
                path: staging.to_path_buf(),
            });
        }
        // A mounted overlay keeps using the old upper dir: refuse rather than swap under it.
        if let Some(merged) = diff.parent().map(|d| d.join("merged"))
            && crate::mount::is_mount_point(&merged)
        {
            return Err(Error::layer_io(
                id,
                "replace the files of the mounted layer",
                &merged,
                io::Error::from(io::ErrorKind::ResourceBusy),
            ));
        }
        // The staged tree takes the place, mode and owner create gave `diff/`.
        let st = std::fs::metadata(&diff).map_err(|e| Error::layer_io(id, "stat", &diff, e))?;
        chown(
            staging,
            (st.uid(), st.gid()),
            self.options.ignore_chown_errors,
        )
        .map_err(|e| Error::layer_io(id, "chown", staging, e))?;
        std::fs::set_permissions(staging, std::fs::Permissions::from_mode(st.mode() & 0o7777))
            .map_err(|e| Error::layer_io(id, "chmod", staging, e))?;
        // One exchange: the layer has the old `diff/` or the new one, never neither. The old
        // one, now at the staging path, goes afterwards.
        renameat_with(CWD, staging, CWD, &diff, RenameFlags::EXCHANGE)
            .map_err(|e| Error::layer_io(id, "exchange", &diff, io::Error::from(e)))?;
        if let Some(dir) = diff.parent() {
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::layer_io(id, "fsync", dir, e))?;
        }
        self.remove_staging(staging)
    }

    pub(crate) fn remove_staging(&self, staging: &Path) -> Result<()> {
        self.check_staging(staging)?;
        match std::fs::remove_dir_all(staging) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", staging, e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn differ_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.existing_dir(id)?.join("diff"))
    }
}
