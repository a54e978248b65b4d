//! Path resolution beneath a root directory, as if that directory were `/`.
//!
//! Every lookup of a directory goes through [`Root::open_dir`], which is
//! `layerstore_tarsplit::rooted::RootDir` (so files are read back for assembly exactly where
//! they were extracted): `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` where the kernel
//! has it, otherwise a component-by-component walk with `O_NOFOLLOW` that reads symlinks
//! itself and resolves them against the root. Either way `..` stops at the root and absolute
//! symlinks restart at the root, so no lookup leaves it. The final component of an entry is
//! then handled with `*at` calls relative to the returned directory fd and
//! `AT_SYMLINK_NOFOLLOW` / `O_NOFOLLOW`, so it is never followed either.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

/// A directory used as the root of every lookup made through it: tarsplit's resolver, the
/// one the file getter reads back through (it also creates directories for extraction).
pub(crate) use layerstore_tarsplit::rooted::RootDir as Root;

/// Whether `name` exists in `dir` (without following a symlink), and its type.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens the directory `name` in `dir` for reading its entries, never following a symlink.
pub(crate) fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Into::into)
}

/// The names in the directory `dir` (an fd of any kind), without `.` and `..`.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let readable = open_subdir(dir, b".")?;
    let mut names = Vec::new();
    for entry in rfs::Dir::new(readable)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` from `dir` and, if it is a directory, everything below it (never following a
/// symlink). A missing `name` is not an error. Iterative, whatever the depth.
/// Never enters a mount point inside the tree ([`crate::tree::remove_all_at`]); the error is
/// the OS error, the caller names the entry.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    crate::tree::remove_all_at(dir, &name).map_err(|e| e.source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn same_inode(a: &OwnedFd, b: &OwnedFd) -> bool {
        let (a, b) = (rfs::fstat(a).expect("fstat"), rfs::fstat(b).expect("fstat"));
        (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    }

    fn check_both(root: &Root, walk: &Root, path: &[&[u8]], expect: &Path) {
        let want = rfs::open(expect, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).expect("open");
        let got = root.open_dir(path).expect("openat2");
        let got_walk = walk.open_dir(path).expect("walk");
        assert!(same_inode(&got, &want), "openat2 {path:?}");
        assert!(same_inode(&got_walk, &want), "walk {path:?}");
    }

    #[test]
    fn symlinks_resolve_inside_the_root_both_ways() {
        let outer = tempfile::tempdir().expect("tempdir");
        let top = outer.path().join("root");
        std::fs::create_dir_all(top.join("a/b")).expect("mkdir");
        std::fs::create_dir_all(outer.path().join("a/b")).expect("mkdir");
        symlink("/a", top.join("abs")).expect("symlink");
        symlink("../../../../a/b", top.join("a/up")).expect("symlink");
        symlink("loop2", top.join("loop1")).expect("symlink");
        symlink("loop1", top.join("loop2")).expect("symlink");
        std::fs::write(top.join("file"), b"").expect("write");
        let root = Root::open(&top).expect("root");
        let walk = Root::open(&top).expect("root");
        walk.force_walk();
        check_both(&root, &walk, &[b"abs"], &top.join("a"));
        check_both(&root, &walk, &[b"abs", b"b"], &top.join("a/b"));
        check_both(&root, &walk, &[b"a", b"up"], &top.join("a/b"));
        check_both(&root, &walk, &[], &top);
        for r in [&root, &walk] {
            let e = r.open_dir(&[b"loop1"]).expect_err("loop");
            assert_eq!(
                e.raw_os_error(),
                Some(rustix::io::Errno::LOOP.raw_os_error())
            );
            let e = r.open_dir(&[b"file"]).expect_err("not a dir");
            assert_eq!(
                e.raw_os_error(),
                Some(rustix::io::Errno::NOTDIR.raw_os_error())
            );
            let e = r.open_dir(&[b"missing"]).expect_err("missing");
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
        }
    }

    #[test]
    fn ensure_dir_creates_inside_through_an_absolute_symlink() {
        let outer = tempfile::tempdir().expect("tempdir");
        let top = outer.path().join("root");
        std::fs::create_dir(&top).expect("mkdir");
        symlink("/x", top.join("s")).expect("symlink");
        for (i, root) in [Root::open(&top), Root::open(&top)].into_iter().enumerate() {
            let root = root.expect("root");
            if i == 1 {
                root.force_walk();
                std::fs::remove_dir_all(top.join("x")).expect("cleanup");
            }
            let mut made = 0;
            root.ensure_dir(&[b"s", b"y", b"z"], &mut |_| {
                made += 1;
                Ok(())
            })
            .expect_err("the dangling symlink's target is not created by mkdirat");
            root.ensure_dir(&[b"x", b"y"], &mut |_| {
                made += 1;
                Ok(())
            })
            .expect("create");
            assert_eq!(made, 2);
            root.ensure_dir(&[b"s", b"y", b"z"], &mut |_| Ok(()))
                .expect("now resolvable");
            assert!(top.join("x/y/z").is_dir());
            assert!(!outer.path().join("x").exists());
        }
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let outer = tempfile::tempdir().expect("tempdir");
        let keep = outer.path().join("keep");
        std::fs::create_dir_all(&keep).expect("mkdir");
        std::fs::write(keep.join("precious"), b"x").expect("write");
        let top = outer.path().join("root");
        std::fs::create_dir_all(top.join("d/e")).expect("mkdir");
        symlink(&keep, top.join("d/link")).expect("symlink");
        let root = Root::open(&top).expect("root");
        remove_all(root.fd(), b"d").expect("remove");
        remove_all(root.fd(), b"d").expect("missing is fine");
        assert!(!top.join("d").exists());
        assert!(keep.join("precious").exists());
    }
}
