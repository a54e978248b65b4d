//! The staging area of the drivers that take staged layers (Go's `DriverWithDiffer`: overlay
//! and vfs): a differ fills a fresh `<home>/staging/<random>`, which the driver then moves
//! into a layer by one atomic exchange. The area's place, the check that a path handed back
//! lies directly in it, the fresh directories and the differ run are the same for every
//! driver, so they live here once.
//!
//! Everything goes through descriptors opened from the driver's home without following
//! symlinks; a path a caller hands back is only used for its last component, after checking
//! that its parent is the staging home.
//!
//! # Abandoned staging directories
//!
//! A process killed while it stages (a SIGKILLed pull) leaves `<random>` behind, and Go 1.43
//! never removes such directories. Here each `<random>` has a sibling `<random>.lock` that
//! its maker holds an `flock` on for as long as the directory lives in this process; the
//! kernel drops the lock when the process dies. [`StagingArea::sweep_abandoned`] (run when a
//! driver starts) removes every directory whose lock it can take, so a live staging
//! directory of another process, or of this one, is never touched, and directories without
//! a lock file (Go's own) are left alone.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::{Differ, DifferOptions, DifferOutput, Error, Result, tree};
use tree::name_path;

/// The staging home's name inside the driver's home (Go's `stagingDir`).
pub const STAGING_DIR: &str = "staging";

/// The suffix of the lock file beside each staging directory.
const LOCK_SUFFIX: &str = ".lock";

/// The locks this process holds on its live staging directories, by directory path (the
/// descriptor holds the `flock`; dropping it releases the directory to a sweep).
fn held_locks() -> MutexGuard<'static, HashMap<PathBuf, OwnedFd>> {
    static HELD: LazyLock<Mutex<HashMap<PathBuf, OwnedFd>>> = LazyLock::new(Default::default);
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
            let lock_name = CString::new(format!("{name}{LOCK_SUFFIX}"))
                .map_err(|_| Error::NotStaging { path: dir.clone() })?;
            let name = CString::new(name).map_err(|_| Error::NotStaging { path: dir.clone() })?;
            let lock_path = area_path.join(name_path(&lock_name));
            // The lock first: a directory is never without its held lock, so a sweep
            // cannot take a directory being made.
            let lock = match rustix::fs::openat(
                area,
                &lock_name,
                OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(lock) => lock,
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(Error::io("create", &lock_path, e)),
            };
            rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| Error::io("lock", &lock_path, e))?;
            // A sweep may have taken the fresh file between its creation and the lock: hold
            // it only if it is still the one the name points at.
            if !same_file(area, &lock_name, &lock) {
                continue;
            }
            match rustix::fs::mkdirat(area, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    held_locks().insert(dir.clone(), lock);
                    return Ok((dir, name));
                }
                Err(e) => {
                    let _ = rustix::fs::unlinkat(area, &lock_name, rustix::fs::AtFlags::empty());
                    if e == rustix::io::Errno::EXIST {
                        continue;
                    }
                    return Err(Error::io("mkdir", &dir, e));
                }
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
                let _ = self.remove_at(area.as_fd(), &name, &dir);
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
        // Whatever happens, this process lets the directory go: what a failed removal leaves
        // is abandoned, for a later sweep.
        let lock = held_locks().remove(&self.path().join(name_path(name)));
        tree::remove_all_at(area, name).map_err(|e| {
            // The walk names the failing entry relative to the area.
            let shown = staging.parent().unwrap_or(staging).join(&e.path);
            Error::io("remove", shown, e.source)
        })?;
        if lock.is_some() {
            let lock_name = lock_name_of(name);
            match rustix::fs::unlinkat(area, &lock_name, rustix::fs::AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    return Err(Error::io(
                        "remove",
                        self.path().join(name_path(&lock_name)),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Removes the staging directories no live process holds (see the module doc) and their
    /// lock files; answers the directories removed. An area never made has none. A
    /// directory without a lock file is not ours to judge (Go makes those) and stays.
    pub fn sweep_abandoned(&self) -> Result<Vec<PathBuf>> {
        let area = match tree::open_dir_at(self.home_fd, c"staging") {
            Ok(area) => area,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("open", self.path(), e)),
        };
        let names = tree::read_names(&area).map_err(|e| Error::io("read", self.path(), e))?;
        let mut removed = Vec::new();
        for lock_name in names {
            let Some(dir_name) = lock_name
                .to_bytes()
                .strip_suffix(LOCK_SUFFIX.as_bytes())
                .filter(|stem| !stem.is_empty())
                .and_then(|stem| CString::new(stem).ok())
            else {
                continue;
            };
            let lock_path = self.path().join(name_path(&lock_name));
            let lock = match rustix::fs::openat(
                &area,
                &lock_name,
                OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                Mode::empty(),
            ) {
                Ok(lock) => lock,
                // Gone meanwhile (its owner finished), or not a regular file we may lock.
                Err(_) => continue,
            };
            match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => continue,
                Err(e) => return Err(Error::io("lock", &lock_path, e)),
            }
            // Its owner removed and unlinked it between our open and our lock: nothing left.
            if !same_file(&area, &lock_name, &lock) {
                continue;
            }
            let dir = self.path().join(name_path(&dir_name));
            tree::remove_all_at(area.as_fd(), &dir_name)
                .map_err(|e| Error::io("remove", self.path().join(&e.path), e.source))?;
            match rustix::fs::unlinkat(&area, &lock_name, rustix::fs::AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(Error::io("remove", &lock_path, e)),
            }
            removed.push(dir);
        }
        Ok(removed)
    }
}

/// `<name>.lock`.
fn lock_name_of(name: &CStr) -> CString {
    let mut bytes = name.to_bytes().to_vec();
    bytes.extend_from_slice(LOCK_SUFFIX.as_bytes());
    CString::new(bytes).expect("a C string's bytes and the suffix hold no NUL")
}

/// Whether `name` in `dir` is (without following a symlink) the file open as `fd`.
fn same_file(dir: impl AsFd, name: &CStr, fd: &OwnedFd) -> bool {
    match (tree::stat_at(dir, name), tree::stat_fd(fd)) {
        (Ok(by_name), Ok(open)) => {
            (
                by_name.stx_ino,
                by_name.stx_dev_major,
                by_name.stx_dev_minor,
            ) == (open.stx_ino, open.stx_dev_major, open.stx_dev_minor)
        }
        _ => false,
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
    fn a_sweep_takes_only_directories_whose_lock_no_one_holds() {
        let home = tempfile::tempdir().expect("tempdir");
        let home_fd = tree::open_dir(home.path()).expect("open home");
        let area = StagingArea::new(home.path(), home_fd.as_fd());
        assert_eq!(
            area.sweep_abandoned().expect("no area yet"),
            Vec::<PathBuf>::new()
        );
        let opened = area.open().expect("open area");
        let (live, _) = area.make_dir(opened.as_fd()).expect("make");
        std::fs::write(live.join("file"), b"x").expect("fill");
        // What a killed process leaves: a directory and its lock file, the lock not held.
        let abandoned = area.path().join("0123abcd");
        std::fs::create_dir_all(abandoned.join("a/b")).expect("abandoned tree");
        std::fs::write(area.path().join("0123abcd.lock"), b"").expect("abandoned lock");
        // Go's staging directories carry no lock file: not ours to judge.
        let foreign = area.path().join("go-staging");
        std::fs::create_dir(&foreign).expect("foreign");

        assert_eq!(
            area.sweep_abandoned().expect("sweep"),
            vec![abandoned.clone()]
        );
        assert!(!abandoned.exists());
        assert!(!area.path().join("0123abcd.lock").exists());
        assert!(
            live.join("file").exists(),
            "a held directory is never swept"
        );
        assert!(foreign.exists());

        area.remove(&live).expect("remove");
        let mut left = tree::read_names(&opened).expect("list");
        left.sort();
        assert_eq!(left, vec![CString::new("go-staging").unwrap()]);
    }

    #[test]
    fn a_directory_let_go_after_a_failed_removal_is_swept_later() {
        let home = tempfile::tempdir().expect("tempdir");
        let home_fd = tree::open_dir(home.path()).expect("open home");
        let area = StagingArea::new(home.path(), home_fd.as_fd());
        let opened = area.open().expect("open area");
        let (dir, name) = area.make_dir(opened.as_fd()).expect("make");
        // Forget it as a crash would (the lock dropped, both entries left).
        drop(held_locks().remove(&dir));
        assert!(area.path().join(name_path(&lock_name_of(&name))).exists());
        assert_eq!(area.sweep_abandoned().expect("sweep"), vec![dir.clone()]);
        assert!(!dir.exists());
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
