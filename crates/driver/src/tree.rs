//! fd-relative helpers for walking a layer's tree, which is untrusted content: every lookup is
//! `openat`/`statx` relative to an open directory with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`,
//! so a symlink inside the layer is never followed, whatever it points at.
//!
//! Trees can be of any depth (a layer may nest directories tens of thousands deep), so every
//! walk here is iterative and holds only a bounded window of descriptors along the current
//! path ([`DirChain`]): [`walk_with`] (and [`walk`], [`walk_at`]) is the one walker of the
//! drivers, [`remove_all_at`] (and [`remove_all`]) the one remover. The files the drivers keep
//! beside layers are read and written with [`read_small_file_at`] and [`write_file_at`]: no
//! symlink, no FIFO, a bounded size.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Statx, StatxFlags};

/// The `statx` fields the helpers ask for.
pub const STATX_WANTED: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::MNT_ID);

/// `S_IFMT` and the file type bits of `statx`'s `stx_mode`.
pub mod mode {
    /// Mask of the file type bits.
    pub const S_IFMT: u32 = 0o170000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140000;
    /// Set-user-ID and set-group-ID bits (cleared by `chown`).
    pub const S_ISUID_ISGID: u32 = 0o6000;
}

/// The file type bits of a `statx` result.
pub fn file_type(st: &Statx) -> u32 {
    u32::from(st.stx_mode) & mode::S_IFMT
}

/// The permission bits (with setuid/setgid/sticky) of a `statx` result.
pub fn permissions(st: &Statx) -> u32 {
    u32::from(st.stx_mode) & 0o7777
}

/// `statx(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn stat_at(dir: impl AsFd, name: &CStr) -> io::Result<Statx> {
    Ok(rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        STATX_WANTED,
    )?)
}

/// Opens the directory `name` in `dir` without following a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a directory by path (the trusted part: a layer's root), refusing a final symlink.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    open_dir_at(rustix::fs::CWD, &cstring(path.as_os_str())?)
}

/// Opens a configured directory (a graph root, an additional store): symlinks on the way are
/// followed, as the configuration names it.
pub fn open_dir_following(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in an open directory, without `.` and `..`, sorted bytewise (Go's `Walk` order).
pub fn read_names(dir: impl AsFd) -> io::Result<Vec<CString>> {
    let mut names: Vec<CString> = read_typed(dir.as_fd())?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.sort();
    Ok(names)
}

/// A path as a C string; a NUL inside is an `InvalidInput` error.
pub fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A C string name as a path component.
pub fn name_path(name: &CStr) -> &Path {
    Path::new(OsStr::from_bytes(name.to_bytes()))
}

/// `statx` of `path` (absolute inside the tree, e.g. `/etc/passwd`, or relative) beneath the
/// open directory `root`: every directory on the way is opened with `O_NOFOLLOW`, so nothing
/// can lead outside `root`. `None` when some component does not exist; `..` is refused.
pub fn stat_beneath(root: &OwnedFd, path: &Path) -> io::Result<Option<Statx>> {
    use std::path::Component;
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => names.push(cstring(name)?),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
        }
    }
    let Some((last, dirs)) = names.split_last() else {
        return stat_at(root, c".").map(Some);
    };
    let mut dir = root.try_clone()?;
    for name in dirs {
        dir = match open_dir_at(&dir, name) {
            Ok(next) => next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
    }
    match stat_at(&dir, last) {
        Ok(st) => Ok(Some(st)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `statx` of an open descriptor (the file itself, whatever it is).
pub fn stat_fd(fd: impl AsFd) -> io::Result<Statx> {
    Ok(rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH,
        STATX_WANTED,
    )?)
}

/// Reads the regular file `name` in `dir`: a file of the store's own, which is input all the
/// same. Never through a symlink (`O_NOFOLLOW`), never waiting on a FIFO (`O_NONBLOCK`),
/// refusing anything but a regular file and anything longer than `max` bytes
/// (`InvalidData`, naming what was found).
pub fn read_small_file_at(dir: impl AsFd, name: &CStr, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = regular_file(&fd)?;
    if st.stx_size > max {
        return Err(too_long(max));
    }
    let mut content = Vec::new();
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut content)?;
    if content.len() as u64 > max {
        return Err(too_long(max));
    }
    Ok(content)
}

/// `statx` of an open file, refused (`InvalidData`) unless it is a regular file.
fn regular_file(fd: &OwnedFd) -> io::Result<Statx> {
    let st = stat_fd(fd)?;
    if file_type(&st) != mode::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a regular file (mode {:o})", st.stx_mode),
        ));
    }
    Ok(st)
}

fn too_long(max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("longer than {max} bytes"),
    )
}

/// Writes `content` to the regular file `name` in `dir` (created with `mode` if missing,
/// truncated otherwise), never through a symlink and never into anything but a regular file.
pub fn write_file_at(dir: impl AsFd, name: &CStr, content: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    regular_file(&fd)?;
    rustix::fs::ftruncate(&fd, 0)?;
    std::fs::File::from(fd).write_all(content)
}

/// Opens the directory `name` in `dir`, made with `mode` first if missing; never through a
/// symlink (a symlink there is an error).
pub fn ensure_dir_at(dir: impl AsFd, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    open_dir_at(&dir, name)
}

/// A driver's home `<graph_root>/<name>`: the graph root (configured, so followed as given)
/// is made (with `mode`) if missing and opened, then `name` is made and opened without
/// following a symlink.
pub fn open_home(graph_root: &Path, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(graph_root)?;
    ensure_dir_at(open_dir_following(graph_root)?, name, mode)
}

/// Links `rel` (a path beneath `root`, never through a symlink) as `name` in `dir`. A path
/// too long for one call (a deep tree) is resolved one directory at a time.
pub fn link_beneath(
    root: BorrowedFd<'_>,
    rel: &Path,
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> io::Result<()> {
    let rel_c = cstring(rel.as_os_str())?;
    match rustix::fs::linkat(root, &rel_c, dir, name, AtFlags::empty()) {
        Err(rustix::io::Errno::NAMETOOLONG) => {}
        other => return Ok(other?),
    }
    let components: Vec<CString> = rel
        .components()
        .map(|c| cstring(c.as_os_str()))
        .collect::<io::Result<_>>()?;
    let Some((last, parents)) = components.split_last() else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let mut parent = root.try_clone_to_owned()?;
    for component in parents {
        parent = open_dir_at(&parent, component)?;
    }
    Ok(rustix::fs::linkat(
        &parent,
        last,
        dir,
        name,
        AtFlags::empty(),
    )?)
}

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

/// The names in an open directory with the types `getdents` gives (`Unknown` where the
/// filesystem does not say), without `.` and `..`.
fn read_typed(dir: BorrowedFd<'_>) -> io::Result<Vec<(CString, FileType)>> {
    // Reading through a duplicate keeps `dir`'s own offset untouched.
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            entries.push((name.to_owned(), entry.file_type()));
        }
    }
    Ok(entries)
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
    fn stat_beneath_stays_beneath() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(root_path.join("a/b")).unwrap();
        std::fs::write(root_path.join("a/b/f"), "12345").unwrap();
        std::fs::create_dir(tmp.path().join("outside")).unwrap();
        std::fs::write(tmp.path().join("outside/f"), "x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), root_path.join("link")).unwrap();
        let root = open_dir(&root_path).unwrap();
        let st = stat_beneath(&root, Path::new("/a/b/f")).unwrap().unwrap();
        assert_eq!(st.stx_size, 5);
        assert!(
            stat_beneath(&root, Path::new("a/missing/f"))
                .unwrap()
                .is_none()
        );
        // The symlink itself can be stat'ed, but never traversed.
        let link = stat_beneath(&root, Path::new("/link")).unwrap().unwrap();
        assert_eq!(file_type(&link), mode::S_IFLNK);
        assert!(stat_beneath(&root, Path::new("/link/f")).is_err());
        assert!(stat_beneath(&root, Path::new("a/../../outside/f")).is_err());
        assert_eq!(
            file_type(&stat_beneath(&root, Path::new("/")).unwrap().unwrap()),
            mode::S_IFDIR
        );
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

    #[test]
    fn a_deep_tree_is_walked_and_removed_without_recursion() {
        // tmpfs where there is one: deep directories are slow to make and remove on ext4.
        let tmp = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        // Deeper than a 2 MiB test thread's stack would take recursively at this depth, and
        // deeper than PATH_MAX.
        std::fs::create_dir(tmp.path().join("t")).unwrap();
        nest(&tmp.path().join("t"), 3000);
        let mut count = 0;
        walk(&tmp.path().join("t"), &mut |_| {
            count += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 3002);
        remove_all(&tmp.path().join("t")).unwrap();
        assert!(!tmp.path().join("t").exists());
    }

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

    #[test]
    fn small_files_are_regular_bounded_and_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_dir(tmp.path()).unwrap();
        write_file_at(&dir, c"f", b"hello", 0o644).unwrap();
        assert_eq!(read_small_file_at(&dir, c"f", 5).unwrap(), b"hello");
        write_file_at(&dir, c"f", b"hi", 0o644).unwrap();
        assert_eq!(read_small_file_at(&dir, c"f", 5).unwrap(), b"hi");
        std::fs::write(tmp.path().join("big"), vec![b'x'; 100]).unwrap();
        let err = read_small_file_at(&dir, c"big", 10).unwrap_err();
        assert!(err.to_string().contains("longer than 10 bytes"), "{err}");
        std::fs::write(tmp.path().join("target"), "secret").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("target"), tmp.path().join("link")).unwrap();
        assert!(read_small_file_at(&dir, c"link", 100).is_err());
        assert!(write_file_at(&dir, c"link", b"x", 0o644).is_err());
        assert_eq!(std::fs::read(tmp.path().join("target")).unwrap(), b"secret");
        rustix::fs::mkfifoat(&dir, c"fifo", Mode::from_raw_mode(0o600)).unwrap();
        let err = read_small_file_at(&dir, c"fifo", 100).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        assert!(read_small_file_at(&dir, c"d", 100).is_err());
    }
}
