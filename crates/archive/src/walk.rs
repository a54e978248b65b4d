//! Walking directory trees without recursion and with a bounded number of descriptors.
//!
//! A layer may nest directories far deeper than any real image (a hostile one: thousands of
//! levels, more through symlinks). Every walk of this crate keeps its own stack, so the
//! thread's stack never grows with the depth, and holds descriptors only for the deepest
//! [`FdStack`] window of the current path: a directory whose descriptor was dropped is reopened
//! from its child through `..` when the walk climbs back to it, and must be the same directory
//! (device and inode) it was on the way down. Climbing thus costs one `openat` per level.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::rooted;

/// Directory descriptors held along one walk's current path, at most [`FdStack::WINDOW`] deep.
pub(crate) const WINDOW: usize = 64;

/// The descriptors of the directories on a path, top first; only the deepest `window` are
/// held, the others are reopened through `..` when the path climbs back to them.
#[derive(Debug)]
pub(crate) struct FdStack {
    levels: Vec<(Option<OwnedFd>, (u64, u64))>,
    window: usize,
}

fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rfs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

impl FdStack {
    /// A stack whose first level is `top`; `window` (at least 2) levels keep their descriptor.
    pub(crate) fn new(top: OwnedFd, window: usize) -> io::Result<Self> {
        let id = identity(top.as_fd())?;
        Ok(FdStack {
            levels: vec![(Some(top), id)],
            window: window.max(2),
        })
    }

    /// The deepest directory, always held.
    pub(crate) fn last(&self) -> BorrowedFd<'_> {
        match self.levels.last() {
            Some((Some(fd), _)) => fd.as_fd(),
            _ => unreachable!("the deepest level is never dropped and the top never popped"),
        }
    }

    /// Opens the directory `name` of the deepest one (never following a symlink: `ENOTDIR` or
    /// `ELOOP` for anything but a directory) and makes it the deepest.
    pub(crate) fn enter(&mut self, name: &[u8]) -> io::Result<()> {
        let fd = open_dir_nofollow(self.last(), name)?;
        self.push(fd)
    }

    /// Makes `fd`, a directory inside the deepest one, the deepest.
    pub(crate) fn push(&mut self, fd: OwnedFd) -> io::Result<()> {
        let id = identity(fd.as_fd())?;
        self.levels.push((Some(fd), id));
        if self.levels.len() > self.window {
            let drop_at = self.levels.len() - self.window;
            // The top level stays: it is the walk's root and cannot be reached through `..`.
            if drop_at > 0 {
                self.levels[drop_at].0 = None;
            }
        }
        Ok(())
    }

    /// Climbs one level (the top is never popped); reopens the new deepest directory through
    /// `..` if its descriptor was dropped.
    pub(crate) fn leave(&mut self) -> io::Result<()> {
        if self.levels.len() < 2 {
            return Ok(());
        }
        let (child, _) = self.levels.pop().expect("two levels");
        let (parent, id) = self.levels.last_mut().expect("one level");
        if parent.is_none() {
            let child = child.expect("the deepest level is held");
            let reopened = open_dir_nofollow(child.as_fd(), b"..")?;
            if identity(reopened.as_fd())? != *id {
                return Err(io::Error::other(
                    "a directory moved while its tree was being walked",
                ));
            }
            *parent = Some(reopened);
        }
        Ok(())
    }
}

/// `openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)`: any directory fd this crate's walks hold.
pub(crate) fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Into::into)
}

/// One entry met by [`walk_sorted`].
pub(crate) struct Entry<'a> {
    /// The names from the walk's top to this entry (its own name last).
    pub(crate) components: &'a [Vec<u8>],
    /// The directory holding the entry.
    pub(crate) dir: BorrowedFd<'a>,
    /// The entry's own name.
    pub(crate) name: &'a [u8],
    /// `lstat` of the entry.
    pub(crate) stat: &'a rfs::Stat,
}

/// Whether [`walk_sorted`] goes into a directory it just visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Descend {
    /// Visit its entries next.
    Yes,
    /// Skip them.
    No,
}

/// What failed during [`walk_sorted`].
#[derive(Debug)]
pub(crate) enum Failure<E> {
    /// A call of the walk itself: what it was, and the OS error.
    Io(&'static str, io::Error),
    /// The visitor's own error.
    Visit(E),
}

/// Where a walk failed: the names leading to the entry (or directory) involved, and why.
#[derive(Debug)]
pub(crate) struct WalkError<E> {
    /// Components of the entry or directory, from the top.
    pub(crate) components: Vec<Vec<u8>>,
    /// What failed.
    pub(crate) failure: Failure<E>,
}

/// Visits every entry beneath `top` in depth-first pre-order, names sorted bytewise within a
/// directory (so the order is that of the component lists), never following a symlink.
/// `visit` says whether to descend into a directory. Iterative, with [`WINDOW`] descriptors at
/// most; an entry that vanished between listing and `lstat` is skipped.
pub(crate) fn walk_sorted<E>(
    top: BorrowedFd<'_>,
    visit: &mut dyn FnMut(&Entry<'_>) -> Result<Descend, E>,
) -> Result<(), WalkError<E>> {
    let fail = |components: &[Vec<u8>], op: &'static str, error: io::Error| WalkError {
        components: components.to_vec(),
        failure: Failure::Io(op, error),
    };
    let top = open_dir_nofollow(top, b".").map_err(|e| fail(&[], "open", e))?;
    let mut fds = FdStack::new(top, WINDOW).map_err(|e| fail(&[], "stat", e))?;
    let mut components: Vec<Vec<u8>> = Vec::new();
    let mut pending: Vec<std::vec::IntoIter<Vec<u8>>> =
        vec![sorted_names(fds.last()).map_err(|e| fail(&[], "readdir", e))?];
    while let Some(names) = pending.last_mut() {
        let Some(name) = names.next() else {
            pending.pop();
            if !pending.is_empty() {
                fds.leave().map_err(|e| fail(&components, "open ..", e))?;
                components.pop();
            }
            continue;
        };
        let dir = fds.last();
        components.push(name);
        let name = components.last().expect("just pushed");
        let stat = match rooted::lstat_at(dir, name) {
            Ok(Some(stat)) => stat,
            Ok(None) => {
                components.pop();
                continue;
            }
            Err(e) => return Err(fail(&components, "lstat", e)),
        };
        let entry = Entry {
            components: &components,
            dir,
            name,
            stat: &stat,
        };
        let descend = visit(&entry).map_err(|error| WalkError {
            components: components.clone(),
            failure: Failure::Visit(error),
        })?;
        if descend == Descend::Yes && FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let name = components.last().expect("pushed").clone();
            fds.enter(&name).map_err(|e| fail(&components, "open", e))?;
            pending.push(sorted_names(fds.last()).map_err(|e| fail(&components, "readdir", e))?);
        } else {
            components.pop();
        }
    }
    Ok(())
}

fn sorted_names(dir: BorrowedFd<'_>) -> io::Result<std::vec::IntoIter<Vec<u8>>> {
    let mut names = rooted::list_dir(dir)?;
    names.sort();
    Ok(names.into_iter())
}

/// Removes `name` from `dir` and, if it is a directory, everything below it, never following
/// a symlink; a missing `name` is not an error. Iterative, with [`WINDOW`] descriptors at most.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let Some(stat) = rooted::lstat_at(dir, name)? else {
        return Ok(());
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return match rfs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let mut fds = FdStack::new(open_dir_nofollow(dir, b".")?, WINDOW)?;
    fds.enter(name)?;
    // Each directory entered: its name (to remove it once empty) and the entries still to
    // remove, listed once.
    let mut entered: Vec<(Vec<u8>, std::vec::IntoIter<Vec<u8>>)> =
        vec![(name.to_vec(), rooted::list_dir(fds.last())?.into_iter())];
    while let Some((_, children)) = entered.last_mut() {
        if let Some(child) = children.next() {
            let is_dir = rooted::lstat_at(fds.last(), &child)?
                .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
            if is_dir {
                fds.enter(&child)?;
                let grandchildren = rooted::list_dir(fds.last())?.into_iter();
                entered.push((child, grandchildren));
            } else {
                match rfs::unlinkat(fds.last(), &child[..], AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            continue;
        }
        // Empty now: climb and remove it.
        let (done, _) = entered.pop().expect("checked");
        fds.leave()?;
        match rfs::unlinkat(fds.last(), &done[..], AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `depth` nested directories `d/d/...` beneath `top`, made with descriptors (the path
    /// would be far longer than PATH_MAX), a file in the deepest.
    fn nest(top: &std::path::Path, depth: usize) {
        let mut fd = rfs::open(top, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("top");
        for _ in 0..depth {
            rfs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).expect("mkdir");
            fd = open_dir_nofollow(fd.as_fd(), b"d").expect("open");
        }
        let file = rfs::openat(
            &fd,
            "f",
            OFlags::CREATE | OFlags::WRONLY,
            Mode::from_raw_mode(0o644),
        )
        .expect("file");
        drop(file);
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").expect("fds").count()
    }

    #[test]
    fn a_walk_of_a_very_deep_tree_is_bounded_in_stack_and_descriptors() {
        let t = tempfile::tempdir().expect("tempdir");
        nest(t.path(), 5_000);
        let top =
            rfs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("top");
        let before = open_fds();
        let mut most_fds = 0;
        let (mut dirs, mut files, mut deepest) = (0, 0, 0);
        // A 64 KiB stack: recursion over 5,000 levels would overflow it.
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn_scoped(s, || {
                    walk_sorted::<()>(top.as_fd(), &mut |e| {
                        if FileType::from_raw_mode(e.stat.st_mode) == FileType::Directory {
                            dirs += 1;
                        } else {
                            files += 1;
                        }
                        deepest = deepest.max(e.components.len());
                        if e.components.len() % 500 == 0 {
                            most_fds = most_fds.max(open_fds());
                        }
                        Ok(Descend::Yes)
                    })
                    .expect("walk");
                })
                .expect("spawn")
                .join()
                .expect("no overflow");
        });
        assert_eq!((dirs, files, deepest), (5_000, 1, 5_001));
        assert!(
            most_fds <= before + WINDOW + 4,
            "{most_fds} descriptors open, {before} before"
        );
        // Removal is iterative too, and leaves nothing.
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn_scoped(s, || remove_all(top.as_fd(), b"d").expect("remove"))
                .expect("spawn")
                .join()
                .expect("no overflow");
        });
        assert_eq!(std::fs::read_dir(t.path()).expect("list").count(), 0);
    }

    #[test]
    fn remove_all_empties_wide_trees_without_following_symlinks() {
        let t = tempfile::tempdir().expect("tempdir");
        let keep = t.path().join("keep");
        std::fs::create_dir(&keep).expect("mkdir");
        std::fs::write(keep.join("precious"), b"x").expect("write");
        let wide = t.path().join("wide");
        for i in 0..200 {
            let sub = wide.join(format!("sub{i}/inner"));
            std::fs::create_dir_all(&sub).expect("mkdir");
            std::fs::write(sub.join("f"), b"f").expect("write");
            std::os::unix::fs::symlink(&keep, wide.join(format!("sub{i}/out"))).expect("ln");
        }
        let top =
            rfs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("top");
        remove_all(top.as_fd(), b"wide").expect("remove");
        remove_all(top.as_fd(), b"wide").expect("a missing name is fine");
        assert!(!wide.exists());
        assert!(keep.join("precious").exists());
    }

    #[test]
    fn a_directory_moved_away_during_a_walk_is_an_error_not_a_wrong_tree() {
        let t = tempfile::tempdir().expect("tempdir");
        nest(t.path(), WINDOW + 10);
        std::fs::create_dir(t.path().join("elsewhere")).expect("mkdir");
        let top =
            rfs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("top");
        let mut fds =
            FdStack::new(open_dir_nofollow(top.as_fd(), b".").expect("."), WINDOW).expect("stack");
        for _ in 0..WINDOW + 5 {
            fds.enter(b"d").expect("enter");
        }
        // Move a dropped level's subtree: climbing through `..` now reaches another directory.
        std::fs::rename(t.path().join("d/d/d"), t.path().join("elsewhere/d")).expect("mv");
        let mut result = Ok(());
        for _ in 0..WINDOW + 5 {
            result = fds.leave();
            if result.is_err() {
                break;
            }
        }
        let err = result.expect_err("the move is noticed");
        assert!(err.to_string().contains("moved"), "{err}");
    }
}
