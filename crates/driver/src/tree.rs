//! The files the drivers keep beside layers, read and written through descriptors:
//! [`read_small_file_at`] and [`write_file_at`] (no symlink, no FIFO, a bounded size),
//! [`ensure_dir_at`], [`open_home`], [`link_beneath`], [`stat_beneath`].
//!
//! The walker, the remover and the descriptor helpers under them live in
//! `layerstore_archive::tree` (one home for every crate that walks a layer's tree) and are
//! re-exported here, so a driver names all of its tree vocabulary through this module.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, Statx};

pub use layerstore_archive::tree::*;

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

#[cfg(test)]
mod tests {
    use super::*;

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
