//! fd-relative helpers for walking a layer's tree, which is untrusted content: every lookup is
//! `openat`/`statx` relative to an open directory with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`,
//! so a symlink inside the layer is never followed, whatever it points at.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Statx, StatxFlags};

/// The `statx` fields the helpers ask for.
pub const STATX_WANTED: StatxFlags = StatxFlags::BASIC_STATS;

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

/// The names in an open directory, without `.` and `..`, sorted bytewise (Go's `Walk` order).
pub fn read_names(dir: impl AsFd) -> io::Result<Vec<CString>> {
    // Reading through a duplicate keeps `dir`'s own offset untouched.
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
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

/// One entry met by [`walk`].
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
}

/// A [`walk`] failure and the path (relative to the root) where it happened.
#[derive(Debug)]
pub struct WalkError {
    /// Where, relative to the root.
    pub path: PathBuf,
    /// What.
    pub source: io::Error,
}

/// Visits `root` and everything below it, pre-order, names in bytewise order, never
/// following symlinks. `visit` may change an entry's metadata but not add or remove entries.
pub fn walk(
    root: &Path,
    visit: &mut dyn FnMut(&WalkEntry<'_>) -> io::Result<()>,
) -> Result<(), WalkError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalkError { path, source }
    };
    let fd = open_dir(root).map_err(at(Path::new("")))?;
    let stat = stat_at(&fd, c".").map_err(at(Path::new("")))?;
    visit(&WalkEntry {
        dir: fd.as_fd(),
        name: c".",
        path: Path::new(""),
        stat: &stat,
    })
    .map_err(at(Path::new("")))?;
    walk_dir(&fd, &mut PathBuf::new(), visit)
}

fn walk_dir(
    dir: &OwnedFd,
    path: &mut PathBuf,
    visit: &mut dyn FnMut(&WalkEntry<'_>) -> io::Result<()>,
) -> Result<(), WalkError> {
    let names = read_names(dir).map_err(|source| WalkError {
        path: path.clone(),
        source,
    })?;
    for name in names {
        path.push(name_path(&name));
        let result = stat_at(dir, &name).and_then(|stat| {
            visit(&WalkEntry {
                dir: dir.as_fd(),
                name: &name,
                path,
                stat: &stat,
            })?;
            Ok(stat)
        });
        let stat = result.map_err(|source| WalkError {
            path: path.clone(),
            source,
        })?;
        if file_type(&stat) == mode::S_IFDIR {
            let sub = open_dir_at(dir, &name).map_err(|source| WalkError {
                path: path.clone(),
                source,
            })?;
            walk_dir(&sub, path, visit)?;
        }
        path.pop();
    }
    Ok(())
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
}
