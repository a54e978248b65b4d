//! Walking a tree: [`DirChain`] (a bounded window of descriptors along the current path,
//! parents reopened through `..` and checked) and the one walker of the drivers, [`walk_with`].

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::Statx;

use super::{file_type, mode, name_path, open_dir, open_dir_at, read_names, stat_at, stat_fd};

/// How many directories of the current path a walk keeps open, the root's included. The
/// others are closed on the way down and reopened through `..` on the way back up, their
/// identity checked, so a tree of any depth costs a bounded number of descriptors.
pub const OPEN_DIRS: usize = 16;

/// The identity of a file: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    dev: (u32, u32),
    ino: u64,
}

impl FileId {
    /// The identity `st` describes.
    pub fn of(st: &Statx) -> Self {
        FileId {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
        }
    }
}

fn moved() -> io::Error {
    io::Error::other("the directory was moved or replaced while being walked")
}

/// Opens the directory `name` in `dir` (never through a symlink) and checks it is the one
/// `expected` described (an entry swapped between the two calls is refused).
pub fn open_dir_checked(dir: impl AsFd, name: &CStr, expected: &Statx) -> io::Result<OwnedFd> {
    let fd = open_dir_at(dir, name)?;
    if FileId::of(&stat_fd(&fd)?) != FileId::of(expected) {
        return Err(moved());
    }
    Ok(fd)
}

#[derive(Debug)]
struct Link {
    /// The directory, while it is in the window (shared with whoever asked for it).
    fd: Option<Arc<OwnedFd>>,
    /// Its identity, taken when it leaves the window (checked when it is reopened).
    id: Option<FileId>,
}

/// The directories from a root down to the current one, of which only the last
/// [`OPEN_DIRS`] (and the root) are held open: walking down pushes, walking back up pops and
/// reopens a closed parent through the child's `..` (`O_NOFOLLOW`), refusing it unless it is
/// the same directory (device and inode) that was left. Every iterative walk of the drivers
/// keeps its descriptors in one. A directory leaving the window costs one `statx`; a shallow
/// walk none.
#[derive(Debug)]
pub struct DirChain {
    links: Vec<Link>,
    /// Index of the first open link after the root (`links.len()` when none is).
    first_open: usize,
    window: usize,
}

impl DirChain {
    /// A chain at `root` (an open directory).
    pub fn new(root: OwnedFd) -> Self {
        Self::with_window(root, OPEN_DIRS)
    }

    /// The same, holding at most `window` (at least 2) descriptors open.
    pub fn with_window(root: OwnedFd, window: usize) -> Self {
        DirChain {
            links: vec![Link {
                fd: Some(Arc::new(root)),
                id: None,
            }],
            first_open: 1,
            window: window.max(2),
        }
    }

    /// How many directories below the root the current one is.
    pub fn depth(&self) -> usize {
        self.links.len() - 1
    }

    fn current_link(&self) -> &Arc<OwnedFd> {
        match self.links.last().and_then(|link| link.fd.as_ref()) {
            Some(fd) => fd,
            // The last link is open by construction (push opens it, pop reopens it).
            None => unreachable!("the current directory of a DirChain is open"),
        }
    }

    /// The current directory (always open).
    pub fn current(&self) -> BorrowedFd<'_> {
        self.current_link().as_fd()
    }

    /// The current directory's descriptor, shared: it stays open for the holder even after
    /// the chain lets it go.
    pub fn current_shared(&self) -> Arc<OwnedFd> {
        Arc::clone(self.current_link())
    }

    /// Descriptors the chain holds open now (for tests and assertions).
    pub fn open_count(&self) -> usize {
        self.links.iter().filter(|link| link.fd.is_some()).count()
    }

    /// Makes `dir`, a subdirectory of the current one opened by the caller, the current one,
    /// closing the oldest open descriptor beyond the window (after noting its identity).
    pub fn push(&mut self, dir: OwnedFd) -> io::Result<()> {
        self.links.push(Link {
            fd: Some(Arc::new(dir)),
            id: None,
        });
        if 1 + self.links.len() - self.first_open > self.window {
            let link = &mut self.links[self.first_open];
            if let Some(fd) = link.fd.take() {
                link.id = Some(FileId::of(&stat_fd(&*fd)?));
            }
            self.first_open += 1;
        }
        Ok(())
    }

    /// Leaves the current directory and returns its descriptor; its parent becomes current,
    /// reopened through `..` if it was closed. Popping the root is `InvalidInput`.
    pub fn pop(&mut self) -> io::Result<Arc<OwnedFd>> {
        if self.links.len() < 2 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let child = self.links.pop().and_then(|link| link.fd);
        let Some(child) = child else {
            unreachable!("the current directory of a DirChain is open")
        };
        let parent = self.links.len() - 1;
        if self.links[parent].fd.is_none() {
            let fd = open_dir_at(&*child, c"..")?;
            if Some(FileId::of(&stat_fd(&fd)?)) != self.links[parent].id {
                return Err(moved());
            }
            self.links[parent].fd = Some(Arc::new(fd));
            self.first_open = parent;
        }
        self.first_open = self.first_open.min(self.links.len());
        Ok(child)
    }
}

/// One entry met by a walk ([`walk`], [`walk_with`]).
#[derive(Debug)]
pub struct WalkEntry<'a> {
    /// The directory holding the entry (for the root: the root itself).
    pub dir: BorrowedFd<'a>,
    /// The entry's name in `dir` (for the root: `.`).
    pub name: &'a CStr,
    /// The entry's path relative to the root (the root: empty).
    pub path: &'a Path,
    /// `statx` of the entry, symlinks not followed.
    pub stat: &'a Statx,
    /// How many directories below the root the entry is (the root: 0, its entries: 1).
    pub depth: usize,
}

/// A walk failure and the path (relative to the root) where it happened.
#[derive(Debug)]
pub struct WalkError {
    /// Where, relative to the root.
    pub path: PathBuf,
    /// What.
    pub source: io::Error,
}

/// What a walk ([`walk_with`]) does at each entry.
pub trait Visitor {
    /// Called for the root, then for every entry below it, pre-order, names in bytewise
    /// order. For a directory, the answer says whether to walk into it (ignored otherwise).
    fn enter(&mut self, entry: &WalkEntry<'_>) -> io::Result<bool>;

    /// Called when the contents of a directory that was walked into are done: `entry.dir` is
    /// its parent again (for the root, the root) and `own` the directory itself.
    fn leave(&mut self, entry: &WalkEntry<'_>, own: BorrowedFd<'_>) -> io::Result<()> {
        let _ = (entry, own);
        Ok(())
    }
}

/// A directory being walked: its remaining names.
struct Frame {
    name: CString,
    stat: Statx,
    names: std::vec::IntoIter<CString>,
}

/// Walks the tree of the open directory `root` with `visitor`: iteratively (an explicit
/// stack, whatever the depth), never following symlinks, with a bounded number of open
/// descriptors ([`DirChain`]). An entry that vanishes before it is visited is skipped; a
/// directory replaced between its `statx` and its opening is an error.
pub fn walk_with(root: OwnedFd, visitor: &mut dyn Visitor) -> Result<(), WalkError> {
    walk_windowed(root, visitor, OPEN_DIRS)
}

fn walk_windowed(root: OwnedFd, visitor: &mut dyn Visitor, window: usize) -> Result<(), WalkError> {
    let mut path = PathBuf::new();
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalkError { path, source }
    };
    let root_stat = stat_fd(&root).map_err(fail(&path))?;
    let mut chain = DirChain::with_window(root, window);
    let root_entry = WalkEntry {
        dir: chain.current(),
        name: c".",
        path: &path,
        stat: &root_stat,
        depth: 0,
    };
    let descend = visitor.enter(&root_entry).map_err(fail(&path))?;
    if !descend || file_type(&root_stat) != mode::S_IFDIR {
        return Ok(());
    }
    let names = read_names(chain.current()).map_err(fail(&path))?;
    let mut frames = vec![Frame {
        name: c".".to_owned(),
        stat: root_stat,
        names: names.into_iter(),
    }];
    while let Some(frame) = frames.last_mut() {
        let Some(name) = frame.names.next() else {
            let Some(done) = frames.pop() else { break };
            if frames.is_empty() {
                let root = chain.current();
                let entry = WalkEntry {
                    dir: root,
                    name: c".",
                    path: &path,
                    stat: &done.stat,
                    depth: 0,
                };
                visitor.leave(&entry, root).map_err(fail(&path))?;
                break;
            }
            let own = chain.pop().map_err(fail(&path))?;
            let entry = WalkEntry {
                dir: chain.current(),
                name: &done.name,
                path: &path,
                stat: &done.stat,
                depth: frames.len(),
            };
            visitor.leave(&entry, own.as_fd()).map_err(fail(&path))?;
            path.pop();
            continue;
        };
        path.push(name_path(&name));
        let depth = frames.len();
        let dir = chain.current();
        let stat = match stat_at(dir, &name) {
            Ok(stat) => stat,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                path.pop();
                continue;
            }
            Err(e) => return Err(fail(&path)(e)),
        };
        let entry = WalkEntry {
            dir,
            name: &name,
            path: &path,
            stat: &stat,
            depth,
        };
        let descend = visitor.enter(&entry).map_err(fail(&path))?;
        if !descend || file_type(&stat) != mode::S_IFDIR {
            path.pop();
            continue;
        }
        let sub = open_dir_checked(dir, &name, &stat).map_err(fail(&path))?;
        let names = read_names(&sub).map_err(fail(&path))?;
        chain.push(sub).map_err(fail(&path))?;
        frames.push(Frame {
            name,
            stat,
            names: names.into_iter(),
        });
    }
    Ok(())
}

/// Calls `visit` for every entry.
struct EveryEntry<'v>(&'v mut dyn FnMut(&WalkEntry<'_>) -> io::Result<()>);

impl Visitor for EveryEntry<'_> {
    fn enter(&mut self, entry: &WalkEntry<'_>) -> io::Result<bool> {
        (self.0)(entry).map(|()| true)
    }
}

/// Visits `root` and everything below it, pre-order, names in bytewise order, never
/// following symlinks (a root that is a symlink is refused), iteratively and with a bounded
/// number of descriptors ([`walk_with`]). `visit` may change an entry's metadata but not add
/// or remove entries.
pub fn walk(
    root: &Path,
    visit: &mut dyn FnMut(&WalkEntry<'_>) -> io::Result<()>,
) -> Result<(), WalkError> {
    let fd = open_dir(root).map_err(|source| WalkError {
        path: PathBuf::new(),
        source,
    })?;
    walk_with(fd, &mut EveryEntry(visit))
}

/// [`walk`] of the open directory `root` (its descriptor is duplicated, not consumed).
pub fn walk_at(
    root: BorrowedFd<'_>,
    visit: &mut dyn FnMut(&WalkEntry<'_>) -> io::Result<()>,
) -> Result<(), WalkError> {
    let fd = root.try_clone_to_owned().map_err(|source| WalkError {
        path: PathBuf::new(),
        source,
    })?;
    walk_with(fd, &mut EveryEntry(visit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};

    use crate::tree::remove_all;

    #[test]
    fn walk_is_sorted_preorder_and_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("a"), "x").unwrap();
        std::fs::write(root.join("b/c/d"), "y").unwrap();
        // A symlink to a directory outside: must be reported, not entered.
        std::fs::create_dir(tmp.path().join("outside")).unwrap();
        std::fs::write(tmp.path().join("outside/secret"), "s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("link")).unwrap();
        let mut seen = Vec::new();
        walk(&root, &mut |e| {
            seen.push((e.path.to_path_buf(), file_type(e.stat)));
            Ok(())
        })
        .unwrap();
        let expected = [
            ("", mode::S_IFDIR),
            ("a", mode::S_IFREG),
            ("b", mode::S_IFDIR),
            ("b/c", mode::S_IFDIR),
            ("b/c/d", mode::S_IFREG),
            ("link", mode::S_IFLNK),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(p, t)| (PathBuf::from(p), *t))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn walk_error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        let err = walk(tmp.path(), &mut |e| {
            if e.path == Path::new("d") {
                Err(io::Error::other("boom"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.path, Path::new("d"));
        // A root that is a symlink is refused.
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(tmp.path().join("d"), &link).unwrap();
        assert!(walk(&link, &mut |_| Ok(())).is_err());
    }

    /// `depth` nested directories `d` under `root`, made with `mkdirat` (no path gets long).
    fn nest(root: &Path, depth: usize) {
        let mut dir = open_dir(root).unwrap();
        for _ in 0..depth {
            rustix::fs::mkdirat(&dir, c"d", Mode::from_raw_mode(0o755)).unwrap();
            dir = open_dir_at(&dir, c"d").unwrap();
        }
        rustix::fs::openat(
            &dir,
            c"leaf",
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
    }

    #[test]
    fn a_chain_holds_a_window_and_reopens_parents_through_dotdot() {
        let tmp = tempfile::tempdir().unwrap();
        nest(tmp.path(), 100);
        let mut chain = DirChain::with_window(open_dir(tmp.path()).unwrap(), 4);
        let mut ids = vec![FileId::of(&stat_fd(chain.current()).unwrap())];
        for _ in 0..100 {
            let sub = open_dir_at(chain.current(), c"d").unwrap();
            ids.push(FileId::of(&stat_fd(&sub).unwrap()));
            chain.push(sub).unwrap();
            assert!(chain.open_count() <= 4, "{}", chain.open_count());
        }
        assert_eq!(chain.depth(), 100);
        while chain.depth() > 0 {
            chain.pop().unwrap();
            let here = FileId::of(&stat_fd(chain.current()).unwrap());
            assert_eq!(here, ids[chain.depth()]);
            assert!(chain.open_count() <= 4);
        }
        assert_eq!(chain.pop().unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    /// Records the order of enter and leave calls.
    struct Trace(Vec<String>);

    impl Visitor for Trace {
        fn enter(&mut self, entry: &WalkEntry<'_>) -> io::Result<bool> {
            self.0.push(format!("+{}", entry.path.display()));
            Ok(entry.name != c"skip")
        }

        fn leave(&mut self, entry: &WalkEntry<'_>, own: BorrowedFd<'_>) -> io::Result<()> {
            // `own` is the directory itself, `dir` its parent.
            assert_eq!(
                FileId::of(&stat_fd(own)?),
                FileId::of(entry.stat),
                "{}",
                entry.path.display()
            );
            if entry.depth > 0 {
                assert_eq!(
                    FileId::of(&stat_at(entry.dir, entry.name)?),
                    FileId::of(entry.stat)
                );
            }
            self.0.push(format!("-{}", entry.path.display()));
            Ok(())
        }
    }

    #[test]
    fn walk_with_enters_and_leaves_in_order_with_a_small_window() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b/c/d")).unwrap();
        std::fs::create_dir_all(tmp.path().join("skip/x")).unwrap();
        std::fs::write(tmp.path().join("a/b/f"), "").unwrap();
        let mut trace = Trace(Vec::new());
        walk_windowed(open_dir(tmp.path()).unwrap(), &mut trace, 2).unwrap();
        let expected = [
            "+", "+a", "+a/b", "+a/b/c", "+a/b/c/d", "-a/b/c/d", "-a/b/c", "+a/b/f", "-a/b", "-a",
            "+skip", "-",
        ];
        assert_eq!(trace.0, expected);
    }

    #[test]
    fn a_directory_moved_away_during_a_walk_is_an_error_not_a_wrong_parent() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b/c/d/e/f")).unwrap();
        struct MoveAway(PathBuf, bool);
        impl Visitor for MoveAway {
            fn enter(&mut self, entry: &WalkEntry<'_>) -> io::Result<bool> {
                if entry.path == Path::new("a/b/c/d/e/f") && !self.1 {
                    self.1 = true;
                    // `e` now lives at the top: its `..` is no longer `d`.
                    std::fs::rename(self.0.join("a/b/c/d/e"), self.0.join("e2"))?;
                }
                Ok(true)
            }
        }
        let mut visitor = MoveAway(tmp.path().to_path_buf(), false);
        let err = walk_windowed(open_dir(tmp.path()).unwrap(), &mut visitor, 2).unwrap_err();
        assert!(
            err.source.to_string().contains("moved or replaced"),
            "{err:?}"
        );
        assert_eq!(err.path, Path::new("a/b/c/d/e"));
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// Runs `f` on a thread with a 64 KiB stack: recursion over thousands of levels would
    /// overflow it.
    fn on_small_stack(f: impl FnOnce() + Send) {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn_scoped(s, f)
                .unwrap()
                .join()
                .expect("no stack overflow");
        });
    }

    #[test]
    fn a_deep_tree_is_walked_and_removed_without_recursion_in_bounded_descriptors() {
        // tmpfs where there is one: deep directories are slow to make and remove on ext4.
        let tmp = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        // Far deeper than PATH_MAX, and than a small stack would take recursively.
        std::fs::create_dir(tmp.path().join("t")).unwrap();
        nest(&tmp.path().join("t"), 5000);
        let before = open_fds();
        let (mut count, mut deepest, mut most_fds) = (0, 0, 0);
        on_small_stack(|| {
            walk(&tmp.path().join("t"), &mut |e| {
                count += 1;
                deepest = deepest.max(e.depth);
                if e.depth % 500 == 0 {
                    most_fds = most_fds.max(open_fds());
                }
                Ok(())
            })
            .unwrap();
        });
        // The root, 5,000 directories and the leaf file.
        assert_eq!((count, deepest), (5002, 5001));
        assert!(
            most_fds <= before + OPEN_DIRS + 4,
            "{most_fds} descriptors open, {before} before"
        );
        on_small_stack(|| remove_all(&tmp.path().join("t")).unwrap());
        assert!(!tmp.path().join("t").exists());
    }
}
