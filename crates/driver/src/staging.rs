//! The staging area of the drivers that take staged layers (Go's `DriverWithDiffer`: overlay
//! and vfs): a differ fills a fresh `<home>/staging/<random>`, which the driver then moves
//! into a layer by one atomic exchange. The area's place, the check that a path handed back
//! lies directly in it, the fresh directories and the differ run are the same for every
//! driver, so they live here once.
//!
//! Everything goes through descriptors opened from the driver's home without following
//! symlinks; a path a caller hands back is only used for its last component, after checking
//! that its parent is the staging home.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::{Differ, DifferOptions, DifferOutput, Error, Result, tree};

/// The staging home's name inside the driver's home (Go's `stagingDir`).
pub const STAGING_DIR: &str = "staging";

/// A driver's staging area: `<home>/staging`, reached from the driver's home descriptor.
#[derive(Debug, Clone, Copy)]
pub struct StagingArea<'a> {
    home: &'a Path,
    home_fd: BorrowedFd<'a>,
}

impl<'a> StagingArea<'a> {
    /// The staging area of the driver whose home is `home`, open as `home_fd`.
    pub fn new(home: &'a Path, home_fd: BorrowedFd<'a>) -> Self {
        StagingArea { home, home_fd }
    }

    /// `<home>/staging`, where staging directories are made.
    pub fn path(&self) -> PathBuf {
        self.home.join(STAGING_DIR)
    }

    /// `<home>/staging`, opened (made, 0700, if missing) from the home, never through a
    /// symlink.
    pub fn open(&self) -> Result<OwnedFd> {
        tree::ensure_dir_at(self.home_fd, c"staging", 0o700)
            .map_err(|e| Error::io("mkdir", self.path(), e))
    }

    /// The name of `staging` in the staging home; refuses any path that is not directly
    /// inside it ([`Error::NotStaging`]), so that a caller cannot make the driver move or
    /// delete anything else.
    pub fn name_of(&self, staging: &Path) -> Result<CString> {
        let not_staging = || Error::NotStaging {
            path: staging.to_path_buf(),
        };
        let name = staging
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n != "." && *n != "..");
        match name {
            Some(name) if staging.parent() == Some(self.path().as_path()) => {
                CString::new(name).map_err(|_| not_staging())
            }
            _ => Err(not_staging()),
        }
    }

    /// A fresh, empty `<home>/staging/<random>` (0700) in the opened area `area`: its path
    /// and name.
    pub fn make_dir(&self, area: BorrowedFd<'_>) -> Result<(PathBuf, CString)> {
        let area_path = self.path();
        loop {
            let mut random = [0u8; 16];
            rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
                .map_err(|e| Error::io("getrandom", &area_path, io::Error::from(e)))?;
            let name = layerstore_model::hex(&random);
            let dir = area_path.join(&name);
            let name = CString::new(name).map_err(|_| Error::NotStaging { path: dir.clone() })?;
            match rustix::fs::mkdirat(area, &name, rustix::fs::Mode::from_raw_mode(0o700)) {
                Ok(()) => return Ok((dir, name)),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(Error::io("mkdir", &dir, e)),
            }
        }
    }

    /// Runs `differ` into a fresh staging directory, deletions kept overlay-style (they must
    /// survive in an empty directory until the driver lays the tree into a layer). The output
    /// names the directory as its `target`; on failure nothing half-filled stays behind.
    pub fn stage(
        &self,
        options: &DifferOptions,
        differ: &mut dyn Differ,
        ignore_chown_errors: bool,
    ) -> Result<DifferOutput> {
        let area = self.open()?;
        let (dir, name) = self.make_dir(area.as_fd())?;
        let mut options = options.clone();
        options.whiteouts = layerstore_archive::WhiteoutStyle::Overlay;
        options.ignore_chown_errors |= ignore_chown_errors;
        // The differ writes through the staging directory's descriptor (its path could be
        // swapped for a symlink meanwhile); the caller is told its real path.
        let result = tree::open_dir_at(&area, &name)
            .map_err(|e| Error::io("open", &dir, e))
            .and_then(|fd| differ.apply_diff(&crate::mount::proc_path(fd.as_fd()), &options));
        match result {
            Ok(mut output) => {
                output.target = dir;
                Ok(output)
            }
            Err(e) => {
                // The differ's error is the one to report.
                let _ = tree::remove_all_at(area.as_fd(), &name);
                Err(e)
            }
        }
    }

    /// Removes the staging directory `staging` and everything below it; one that is already
    /// gone (or an area never made) is removed successfully.
    pub fn remove(&self, staging: &Path) -> Result<()> {
        let name = self.name_of(staging)?;
        let area = match tree::open_dir_at(self.home_fd, c"staging") {
            Ok(area) => area,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("open", self.path(), e)),
        };
        self.remove_at(area.as_fd(), &name, staging)
    }

    /// Removes the entry `name` of the opened area `area` (`staging` is its path, for errors).
    pub fn remove_at(&self, area: BorrowedFd<'_>, name: &CStr, staging: &Path) -> Result<()> {
        tree::remove_all_at(area, name).map_err(|e| {
            // The walk names the failing entry relative to the area.
            let shown = staging.parent().unwrap_or(staging).join(&e.path);
            Error::io("remove", shown, e.source)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_directly_in_the_area_are_staging_directories() {
        let home = tempfile::tempdir().expect("tempdir");
        let home_fd = tree::open_dir(home.path()).expect("open home");
        let area = StagingArea::new(home.path(), home_fd.as_fd());
        let staging = area.path();
        assert_eq!(
            area.name_of(&staging.join("abc"))
                .expect("inside")
                .as_bytes(),
            b"abc"
        );
        for outside in [
            staging.clone(),
            staging.join(".."),
            staging.join("abc/def"),
            home.path().join("dir/abc"),
            staging.join("../staging/abc"),
        ] {
            assert!(
                matches!(area.name_of(&outside), Err(Error::NotStaging { .. })),
                "{}",
                outside.display()
            );
        }
    }

    #[test]
    fn fresh_directories_are_private_and_removable() {
        let home = tempfile::tempdir().expect("tempdir");
        let home_fd = tree::open_dir(home.path()).expect("open home");
        let area = StagingArea::new(home.path(), home_fd.as_fd());
        let opened = area.open().expect("open area");
        let (first, _) = area.make_dir(opened.as_fd()).expect("make");
        let (second, _) = area.make_dir(opened.as_fd()).expect("make");
        assert_ne!(first, second);
        assert_eq!(first.parent(), Some(area.path().as_path()));
        let mode = std::fs::metadata(&first).expect("stat").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
            0o700
        );
        std::fs::create_dir_all(first.join("a/b")).expect("fill");
        area.remove(&first).expect("remove");
        assert!(!first.exists());
        assert!(second.exists());
        area.remove(&first).expect("removing it again succeeds");
    }
}
