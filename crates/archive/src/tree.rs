//! Walking and removing directory trees through descriptors, for trees that are untrusted
//! content (a layer's files): every lookup is `openat`/`statx` relative to an open directory
//! with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`, so a symlink inside the tree is never followed,
//! whatever it points at.
//!
//! Trees can be of any depth (a hostile layer may nest directories tens of thousands deep), so
//! every walk here is iterative (an explicit stack, never recursion) and holds only a bounded
//! window of descriptors along the current path ([`DirChain`]): a directory whose descriptor
//! was closed is reopened from its child through `..` when the walk climbs back to it, and must
//! be the same directory (device and inode) it was on the way down. [`walk_with`] (and
//! [`walk`], [`walk_at`]) is the one walker of this crate and of the graph drivers,
//! [`remove_all_at`] (and [`remove_all`]) the one remover.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Statx, StatxFlags};

mod remove;
mod walk;

pub use remove::{remove_all, remove_all_at};
pub use walk::{
    DirChain, FileId, OPEN_DIRS, Visitor, WalkEntry, WalkError, open_dir_checked, walk, walk_at,
    walk_with,
};

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

/// `statx` of an open descriptor (the file itself, whatever it is).
pub fn stat_fd(fd: impl AsFd) -> io::Result<Statx> {
    Ok(rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH,
        STATX_WANTED,
    )?)
}

/// The names in an open directory with the types `getdents` gives (`Unknown` where the
/// filesystem does not say), without `.` and `..`.
pub(crate) fn read_typed(dir: BorrowedFd<'_>) -> io::Result<Vec<(CString, FileType)>> {
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
