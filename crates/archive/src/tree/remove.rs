//! Removing a tree: [`remove_all_at`], the one remover of the drivers (iterative, never
//! following a symlink, never entering a mount).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Statx, StatxFlags};

use super::{
    DirChain, WalkError, cstring, file_type, mode, name_path, open_dir_checked, open_dir_following,
    permissions, read_typed, stat_at,
};

fn ignore_missing(result: rustix::io::Result<()>) -> io::Result<()> {
    match result {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        other => Ok(other?),
    }
}

/// What [`remove_all_at`] checks before it enters a directory.
struct Remover {
    /// The mount the tree is on (`None`: the kernel does not say).
    mount: Option<u64>,
    /// Whether permission bits bind us (not root): then directories are made writable first.
    bound_by_modes: bool,
}

impl Remover {
    fn new(root: &Statx) -> Self {
        Remover {
            mount: mount_id(root),
            bound_by_modes: !rustix::process::geteuid().is_root(),
        }
    }

    /// Refuses a directory on another mount (a mount point inside the tree) and makes the
    /// directory searchable and writable where its modes would stop us.
    fn prepare_dir(&self, dir: BorrowedFd<'_>, name: &CStr, st: &Statx) -> io::Result<()> {
        if let (Some(root), Some(here)) = (self.mount, mount_id(st))
            && root != here
        {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "a mount point: not entered, not removed",
            ));
        }
        let permissions = permissions(st);
        if self.bound_by_modes && permissions & 0o700 != 0o700 {
            rustix::fs::chmodat(
                dir,
                name,
                Mode::from_raw_mode(permissions | 0o700),
                AtFlags::empty(),
            )?;
        }
        Ok(())
    }
}

fn mount_id(st: &Statx) -> Option<u64> {
    (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id)
}

/// A directory being emptied by [`remove_all_at`].
struct Emptying {
    name: CString,
    entries: std::vec::IntoIter<(CString, FileType)>,
}

/// Removes the entry `name` of `dir` and, for a directory, everything below it: iteratively,
/// with a bounded number of descriptors ([`DirChain`]), never following a symlink, never
/// entering another mount (a mount point inside is an error naming it, and nothing below it is
/// touched). Entries `getdents` says are not directories are unlinked without a `statx`.
/// Directories whose modes would stop an unprivileged caller are made writable first. An
/// entry already gone is not an error.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), WalkError> {
    let mut path = name_path(name).to_path_buf();
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalkError { path, source }
    };
    let st = match stat_at(dir, name) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(&path)(e)),
    };
    if file_type(&st) != mode::S_IFDIR {
        return ignore_missing(rustix::fs::unlinkat(dir, name, AtFlags::empty()))
            .map_err(fail(&path));
    }
    let remover = Remover::new(&st);
    remover.prepare_dir(dir, name, &st).map_err(fail(&path))?;
    let top = match open_dir_checked(dir, name, &st) {
        Ok(top) => top,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(&path)(e)),
    };
    let entries = read_typed(top.as_fd()).map_err(fail(&path))?;
    let mut chain = DirChain::new(top);
    let mut stack = vec![Emptying {
        name: name.to_owned(),
        entries: entries.into_iter(),
    }];
    while let Some(current) = stack.last_mut() {
        let Some((entry, kind)) = current.entries.next() else {
            let Some(done) = stack.pop() else { break };
            if stack.is_empty() {
                break;
            }
            chain.pop().map_err(fail(&path))?;
            ignore_missing(rustix::fs::unlinkat(
                chain.current(),
                &done.name,
                AtFlags::REMOVEDIR,
            ))
            .map_err(fail(&path))?;
            path.pop();
            continue;
        };
        let here = chain.current();
        if kind != FileType::Directory && kind != FileType::Unknown {
            match rustix::fs::unlinkat(here, &entry, AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => continue,
                // Replaced by a directory since it was listed: handled below.
                Err(rustix::io::Errno::ISDIR) => {}
                Err(e) => return Err(fail(&path.join(name_path(&entry)))(e.into())),
            }
        }
        path.push(name_path(&entry));
        let st = match stat_at(here, &entry) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                path.pop();
                continue;
            }
            Err(e) => return Err(fail(&path)(e)),
        };
        if file_type(&st) != mode::S_IFDIR {
            ignore_missing(rustix::fs::unlinkat(here, &entry, AtFlags::empty()))
                .map_err(fail(&path))?;
            path.pop();
            continue;
        }
        remover
            .prepare_dir(here, &entry, &st)
            .map_err(fail(&path))?;
        let sub = open_dir_checked(here, &entry, &st).map_err(fail(&path))?;
        let entries = read_typed(sub.as_fd()).map_err(fail(&path))?;
        chain.push(sub).map_err(fail(&path))?;
        stack.push(Emptying {
            name: entry,
            entries: entries.into_iter(),
        });
    }
    drop(chain);
    path = name_path(name).to_path_buf();
    ignore_missing(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)).map_err(fail(&path))
}

/// [`remove_all_at`] by path: the parent directory is opened as given (the caller's path),
/// the last component is never followed. The error's path is relative to `path`'s parent.
pub fn remove_all(path: &Path) -> Result<(), WalkError> {
    let fail = |source| WalkError {
        path: path.to_path_buf(),
        source,
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(fail(io::Error::from(io::ErrorKind::InvalidInput)));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let parent_fd = open_dir_following(parent).map_err(fail)?;
    let name = cstring(name).map_err(fail)?;
    remove_all_at(parent_fd.as_fd(), &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_all_removes_symlinks_not_their_targets_and_tolerates_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "k").unwrap();
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("sub/link")).unwrap();
        std::fs::write(tree.join("file"), "f").unwrap();
        remove_all(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        remove_all(&tree).unwrap();
        // A symlink given as the tree is removed itself.
        std::os::unix::fs::symlink(&outside, &tree).unwrap();
        remove_all(&tree).unwrap();
        assert!(outside.join("keep").exists());
        assert!(std::fs::symlink_metadata(&tree).is_err());
    }
}
