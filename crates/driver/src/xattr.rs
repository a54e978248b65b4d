//! Extended attributes of files inside a layer, without following symlinks.
//!
//! An open regular file or directory uses `f{get,set,list}xattr` on its descriptor. Anything
//! else (symlinks, devices, FIFOs: nothing to `open` safely) is opened with
//! `O_PATH | O_NOFOLLOW` and addressed as `/proc/self/fd/<n>`: the path-based calls resolve
//! that magic link to exactly the opened inode, so a symlink's own attributes are read, never
//! its target's.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, XattrFlags};
use rustix::io::Errno;

/// Where to read or write attributes.
#[derive(Debug)]
pub enum XattrTarget<'a> {
    /// A descriptor opened for I/O (regular file or directory).
    Fd(BorrowedFd<'a>),
    /// An `O_PATH` descriptor, reached through `/proc/self/fd/<n>`.
    Proc(CString, BorrowedFd<'a>),
}

/// Opens `name` in `dir` with `O_PATH | O_NOFOLLOW`, for [`XattrTarget::proc`].
pub fn open_node_at(dir: impl AsFd, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// "Not there" answers: the attribute is absent, or the filesystem has no attributes at all.
fn absent(e: Errno) -> bool {
    e == Errno::NODATA || e == Errno::OPNOTSUPP
}

impl<'a> XattrTarget<'a> {
    /// A target for a descriptor opened for I/O.
    pub fn fd(fd: BorrowedFd<'a>) -> Self {
        XattrTarget::Fd(fd)
    }

    /// A target for an `O_PATH` descriptor (from [`open_node_at`]).
    pub fn proc(fd: BorrowedFd<'a>) -> Self {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        // A formatted number has no NUL.
        let path = CString::new(path).unwrap_or_default();
        XattrTarget::Proc(path, fd)
    }

    fn list_raw(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            XattrTarget::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            XattrTarget::Proc(path, _) => rustix::fs::listxattr(path.as_c_str(), buf),
        }
    }

    fn get_raw(&self, name: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            XattrTarget::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            XattrTarget::Proc(path, _) => rustix::fs::getxattr(path.as_c_str(), name, buf),
        }
    }

    /// The attribute names (empty when the filesystem has none).
    pub fn list(&self) -> io::Result<Vec<CString>> {
        let mut buf = vec![0u8; 1024];
        loop {
            match self.list_raw(&mut buf) {
                Ok(len) => {
                    return Ok(buf[..len]
                        .split(|&b| b == 0)
                        .filter(|n| !n.is_empty())
                        .filter_map(|n| CString::new(n).ok())
                        .collect());
                }
                Err(e) if absent(e) => return Ok(Vec::new()),
                Err(Errno::RANGE) if buf.len() < (1 << 24) => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The value of `name`, `None` when absent.
    pub fn get(&self, name: &CStr) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 256];
        loop {
            match self.get_raw(name, &mut buf) {
                Ok(len) => {
                    buf.truncate(len);
                    return Ok(Some(buf));
                }
                Err(e) if absent(e) => return Ok(None),
                Err(Errno::RANGE) if buf.len() < (1 << 24) => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sets `name` to `value`.
    pub fn set(&self, name: &CStr, value: &[u8]) -> io::Result<()> {
        match self {
            XattrTarget::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
            XattrTarget::Proc(path, _) => {
                rustix::fs::setxattr(path.as_c_str(), name, value, XattrFlags::empty())
            }
        }
        .map_err(io::Error::from)
    }
}

/// The value of attribute `key` of `name` in `dir` (not following symlinks).
pub fn get_at(dir: impl AsFd, name: &CStr, key: &CStr) -> io::Result<Option<Vec<u8>>> {
    let node = open_node_at(dir, name)?;
    XattrTarget::proc(node.as_fd()).get(key)
}

/// Sets attribute `key` of `name` in `dir` (not following symlinks).
pub fn set_at(dir: impl AsFd, name: &CStr, key: &CStr, value: &[u8]) -> io::Result<()> {
    let node = open_node_at(dir, name)?;
    XattrTarget::proc(node.as_fd()).set(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_xattrs_round_trip_by_fd_and_by_node() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let dir = crate::tree::open_dir(tmp.path()).unwrap();
        if let Err(e) = set_at(&dir, c"f", c"user.test", b"value") {
            // tmpfs before 6.6 has no user.* attributes: nothing to test there.
            assert_eq!(
                e.raw_os_error(),
                Some(Errno::OPNOTSUPP.raw_os_error()),
                "{e}"
            );
            return;
        }
        assert_eq!(
            get_at(&dir, c"f", c"user.test").unwrap().as_deref(),
            Some(&b"value"[..])
        );
        assert_eq!(get_at(&dir, c"f", c"user.absent").unwrap(), None);
        let fd = std::fs::File::open(&file).unwrap();
        let target = XattrTarget::fd(fd.as_fd());
        assert!(target.list().unwrap().contains(&c"user.test".to_owned()));
        let long = vec![7u8; 3000];
        target.set(c"user.long", &long).unwrap();
        assert_eq!(target.get(c"user.long").unwrap(), Some(long));
    }

    #[test]
    fn symlink_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("target"), "x").unwrap();
        std::os::unix::fs::symlink("target", tmp.path().join("link")).unwrap();
        let dir = crate::tree::open_dir(tmp.path()).unwrap();
        if set_at(&dir, c"target", c"user.t", b"1").is_err() {
            return; // no user xattrs on this filesystem
        }
        // The link itself has no attributes: reading through it must not see the target's.
        let node = open_node_at(&dir, c"link").unwrap();
        assert_eq!(
            XattrTarget::proc(node.as_fd()).get(c"user.t").unwrap(),
            None
        );
        // user.* attributes are not permitted on symlinks.
        assert!(set_at(&dir, c"link", c"user.t", b"1").is_err());
    }
}
