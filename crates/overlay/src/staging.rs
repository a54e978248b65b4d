//! Staged layers (Go's `DriverWithDiffer` for overlay): staging directories live in
//! `<home>/staging/<random>` and become a layer's `diff/` by an atomic exchange.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use layerstore_driver::{Error, Result, StagingArea, tree};
use rustix::fs::{RenameFlags, renameat_with};

use crate::OverlayDriver;

impl OverlayDriver {
    /// The driver's staging area, `<home>/staging`: the driver's `apply_diff_with_differ`
    /// and `cleanup_staging_directory` are its `stage` and `remove`.
    pub fn staging(&self) -> StagingArea<'_> {
        StagingArea::new(&self.home, self.home_fd.as_fd())
    }

    pub(crate) fn unstage(&self, id: &str, staging: &Path) -> Result<()> {
        let area = self.staging();
        let name = area.name_of(staging)?;
        let layer = self.open_layer(id)?;
        let diff_path = layer.dir.join("diff");
        let diff = self.open_own_diff(id, &layer)?;
        let home = area.open()?;
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
        area.remove(staging)
    }

    pub(crate) fn differ_dir(&self, id: &str) -> Result<PathBuf> {
        let layer = self.open_layer(id)?;
        self.open_diff(id, &layer)?;
        Ok(layer.dir.join("diff"))
    }
}
