//! Exact tree copy, the heart of vfs: a child layer starts as a copy of its parent.
//!
//! Same result as Go's `copy.DirCopy(src, dst, Content, copyXattrs=true)`, done fd-relative
//! so that nothing in the (untrusted) source tree is ever followed:
//!
//! * names visited in bytewise order; directories get their metadata after their contents
//!   (so their times are not disturbed by the copy, and read-only directories can be filled);
//! * regular files: `FICLONE` (reflink, shares extents on btrfs/xfs) while the filesystem
//!   accepts it, otherwise `copy_file_range` (falling back to `pread`/`pwrite`) over the data
//!   regions found with `SEEK_DATA`/`SEEK_HOLE`, so holes stay holes;
//! * hardlinks stay hardlinks: the second path of an inode (any non-directory) is `linkat`ed
//!   to the first copy;
//! * symlinks, devices, FIFOs and sockets recreated with `symlinkat`/`mknodat`;
//! * owner (`fchownat(AT_SYMLINK_NOFOLLOW)`), then extended attributes (after chown, which
//!   drops `security.capability`), then mode (after chown, which clears set-ID bits), then
//!   access and modification times (nanoseconds; symlinks' own times too).
//!
//! Extended attributes: all of them are copied. Outside `user.*`, an attribute the
//! destination refuses with `EPERM` or `ENOTSUP` (`trusted.*` when not root,
//! `security.selinux` without SELinux) is skipped, as Go copies only a fixed subset.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use layerstore_driver::tree::{self, mode};
use layerstore_driver::xattr::{self, XattrTarget};
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, SeekFrom, Statx, Timespec, Timestamps, Uid,
};
use rustix::io::Errno;

/// How [`copy_tree`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// Keep going when `chown` is refused (`EPERM`, `EINVAL`: rootless with too few IDs).
    pub ignore_chown_errors: bool,
    /// Do not try `FICLONE` (measurements, tests).
    pub no_reflink: bool,
}

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files cloned with `FICLONE`.
    pub reflinked: u64,
    /// Regular files whose data was copied (`copy_file_range` or read/write).
    pub copied: u64,
    /// Data bytes copied (not counting reflinked files or holes).
    pub bytes_copied: u64,
    /// Paths made as hardlinks to an earlier copy.
    pub hardlinks: u64,
    /// Directories.
    pub directories: u64,
    /// Symlinks, devices, FIFOs and sockets.
    pub specials: u64,
}

/// A [`copy_tree`] failure: the destination path involved and what failed.
#[derive(Debug)]
pub struct CopyError {
    /// The path (relative to the roots) being copied.
    pub path: PathBuf,
    /// The operation (`open`, `clone`, `chown`, …).
    pub op: &'static str,
    /// The system's error.
    pub source: io::Error,
}

type Step<T> = Result<T, (&'static str, io::Error)>;

fn step<E: Into<io::Error>>(op: &'static str) -> impl FnOnce(E) -> (&'static str, io::Error) {
    move |e| (op, e.into())
}

/// Copies the contents and metadata of directory `src` into the existing, empty directory
/// `dst` (see the module documentation).
pub fn copy_tree(src: &Path, dst: &Path, options: CopyOptions) -> Result<CopyStats, CopyError> {
    let at_root = |(op, source): (&'static str, io::Error)| CopyError {
        path: PathBuf::new(),
        op,
        source,
    };
    let src_fd = tree::open_dir(src).map_err(step("open")).map_err(at_root)?;
    let dst_fd = tree::open_dir(dst).map_err(step("open")).map_err(at_root)?;
    let root_stat = tree::stat_at(&src_fd, c".")
        .map_err(step("stat"))
        .map_err(at_root)?;
    let mut copier = Copier {
        options,
        reflink: !options.no_reflink,
        copy_range: true,
        links: HashMap::new(),
        stats: CopyStats::default(),
        dst_root: dst_fd.try_clone().map_err(step("dup")).map_err(at_root)?,
        buffer: Vec::new(),
    };
    let mut path = PathBuf::new();
    copier.copy_dir(&src_fd, &dst_fd, &mut path)?;
    copier
        .finish_fd(&src_fd, &dst_fd, &root_stat)
        .map_err(at_root)?;
    copier.stats.directories += 1;
    Ok(copier.stats)
}

struct Copier {
    options: CopyOptions,
    reflink: bool,
    copy_range: bool,
    /// (device major, minor, inode) of a multiply-linked source → its copy, relative to the
    /// destination root.
    links: HashMap<(u32, u32, u64), CString>,
    stats: CopyStats,
    dst_root: OwnedFd,
    buffer: Vec<u8>,
}

fn timestamps(st: &Statx) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.stx_atime.tv_sec,
            tv_nsec: st.stx_atime.tv_nsec.into(),
        },
        last_modification: Timespec {
            tv_sec: st.stx_mtime.tv_sec,
            tv_nsec: st.stx_mtime.tv_nsec.into(),
        },
    }
}

fn rel_cstring(path: &Path) -> Step<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ("link", io::Error::from(io::ErrorKind::InvalidInput)))
}

impl Copier {
    fn copy_dir(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        path: &mut PathBuf,
    ) -> Result<(), CopyError> {
        let names = tree::read_names(src).map_err(|source| CopyError {
            path: path.clone(),
            op: "readdir",
            source,
        })?;
        for name in names {
            path.push(tree::name_path(&name));
            let result = self.copy_entry(src, dst, &name, path);
            match result {
                Ok(()) => {}
                Err(Entry::Here(op, source)) => {
                    return Err(CopyError {
                        path: path.clone(),
                        op,
                        source,
                    });
                }
                Err(Entry::Below(e)) => return Err(e),
            }
            path.pop();
        }
        Ok(())
    }

    fn copy_entry(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        name: &CStr,
        path: &mut PathBuf,
    ) -> Result<(), Entry> {
        let st = tree::stat_at(src, name).map_err(step("stat"))?;
        let kind = tree::file_type(&st);
        let link_key = (st.stx_dev_major, st.stx_dev_minor, st.stx_ino);
        if kind != mode::S_IFDIR
            && st.stx_nlink > 1
            && let Some(first) = self.links.get(&link_key)
        {
            rustix::fs::linkat(
                &self.dst_root,
                first.as_c_str(),
                dst,
                name,
                AtFlags::empty(),
            )
            .map_err(step("link"))?;
            self.stats.hardlinks += 1;
            return Ok(());
        }
        match kind {
            mode::S_IFDIR => {
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                    .map_err(step("mkdir"))?;
                let sub_src = tree::open_dir_at(src, name).map_err(step("open"))?;
                let sub_dst = tree::open_dir_at(dst, name).map_err(step("open"))?;
                self.copy_dir(&sub_src, &sub_dst, path)
                    .map_err(Entry::Below)?;
                self.finish_fd(&sub_src, &sub_dst, &st)?;
                self.stats.directories += 1;
            }
            mode::S_IFREG => self.copy_file(src, dst, name, &st)?,
            mode::S_IFLNK => {
                let target =
                    rustix::fs::readlinkat(src, name, Vec::new()).map_err(step("readlink"))?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name).map_err(step("symlink"))?;
                self.finish_special(src, dst, name, &st, false)?;
            }
            mode::S_IFCHR | mode::S_IFBLK | mode::S_IFIFO | mode::S_IFSOCK => {
                let file_type = FileType::from_raw_mode(u32::from(st.stx_mode));
                let dev = rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor);
                rustix::fs::mknodat(dst, name, file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(step("mknod"))?;
                self.finish_special(src, dst, name, &st, true)?;
            }
            _ => {
                return Err(Entry::Here(
                    "copy",
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("unknown file type {:o}", st.stx_mode),
                    ),
                ));
            }
        }
        if kind != mode::S_IFDIR && st.stx_nlink > 1 {
            self.links.insert(link_key, rel_cstring(path)?);
        }
        Ok(())
    }

    fn copy_file(&mut self, src: &OwnedFd, dst: &OwnedFd, name: &CStr, st: &Statx) -> Step<()> {
        // O_NONBLOCK: should the entry have been swapped for a FIFO since the stat, the open
        // must not hang; the fstat below then refuses it.
        let src_file: File = rustix::fs::openat(
            src,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(step("open"))?
        .into();
        let opened = rustix::fs::statx(&src_file, c"", AtFlags::EMPTY_PATH, tree::STATX_WANTED)
            .map_err(step("stat"))?;
        if tree::file_type(&opened) != mode::S_IFREG || opened.stx_ino != st.stx_ino {
            return Err(("open", io::Error::other("file changed while being copied")));
        }
        let dst_file: File = rustix::fs::openat(
            dst,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(step("create"))?
        .into();
        self.copy_data(&src_file, &dst_file, opened.stx_size)?;
        self.finish_fd(&src_file, &dst_file, st)
    }

    fn copy_data(&mut self, src: &File, dst: &File, size: u64) -> Step<()> {
        if size == 0 {
            return Ok(());
        }
        if self.reflink {
            match rustix::fs::ioctl_ficlone(dst, src) {
                Ok(()) => {
                    self.stats.reflinked += 1;
                    return Ok(());
                }
                // Not offered here (EOPNOTSUPP, EXDEV, EINVAL, ENOTTY, …): stop asking.
                Err(_) => self.reflink = false,
            }
        }
        self.stats.copied += 1;
        let mut pos = 0;
        while pos < size {
            let data = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
                Ok(data) => data,
                Err(Errno::NXIO) => break, // only a hole is left
                Err(Errno::INVAL | Errno::OPNOTSUPP) => {
                    // No SEEK_DATA support: the rest is one data region.
                    self.copy_region(src, dst, pos, size - pos)?;
                    break;
                }
                Err(e) => return Err(("seek", e.into())),
            };
            let hole = rustix::fs::seek(src, SeekFrom::Hole(data)).map_err(step("seek"))?;
            let end = hole.min(size);
            if end > data {
                self.copy_region(src, dst, data, end - data)?;
            }
            pos = end.max(data + 1);
        }
        // Sets the length, so that a trailing hole is a hole in the copy too.
        rustix::fs::ftruncate(dst, size).map_err(step("truncate"))
    }

    fn copy_region(&mut self, src: &File, dst: &File, offset: u64, len: u64) -> Step<()> {
        let (mut in_off, mut out_off, mut left) = (offset, offset, len);
        while left > 0 && self.copy_range {
            let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            match rustix::fs::copy_file_range(
                src,
                Some(&mut in_off),
                dst,
                Some(&mut out_off),
                chunk,
            ) {
                Ok(0) => return Ok(()), // the source got shorter: copy what there is
                Ok(n) => {
                    left -= n as u64;
                    self.stats.bytes_copied += n as u64;
                }
                Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) => {
                    self.copy_range = false;
                }
                Err(e) => return Err(("copy", e.into())),
            }
        }
        if self.buffer.is_empty() {
            self.buffer = vec![0; 1 << 17];
        }
        while left > 0 {
            let want = usize::try_from(left.min(self.buffer.len() as u64)).unwrap_or(0);
            let n = src
                .read_at(&mut self.buffer[..want], in_off)
                .map_err(step("read"))?;
            if n == 0 {
                return Ok(());
            }
            dst.write_all_at(&self.buffer[..n], out_off)
                .map_err(step("write"))?;
            in_off += n as u64;
            out_off += n as u64;
            left -= n as u64;
            self.stats.bytes_copied += n as u64;
        }
        Ok(())
    }

    fn chown_result(&self, result: Result<(), Errno>) -> Step<()> {
        match result {
            Err(Errno::PERM | Errno::INVAL) if self.options.ignore_chown_errors => Ok(()),
            other => other.map_err(step("chown")),
        }
    }

    /// Owner, attributes, mode and times of a regular file or directory, by descriptor.
    fn finish_fd(&mut self, src: &impl AsFd, dst: &impl AsFd, st: &Statx) -> Step<()> {
        let result = rustix::fs::fchown(
            dst,
            Some(Uid::from_raw(st.stx_uid)),
            Some(Gid::from_raw(st.stx_gid)),
        );
        self.chown_result(result)?;
        copy_xattrs(&XattrTarget::fd(src.as_fd()), &XattrTarget::fd(dst.as_fd()))?;
        rustix::fs::fchmod(dst, Mode::from_raw_mode(tree::permissions(st)))
            .map_err(step("chmod"))?;
        rustix::fs::futimens(dst, &timestamps(st)).map_err(step("utimes"))
    }

    /// The same for a symlink or special file, by name (never following it).
    fn finish_special(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        name: &CStr,
        st: &Statx,
        chmod: bool,
    ) -> Step<()> {
        self.stats.specials += 1;
        let result = rustix::fs::chownat(
            dst,
            name,
            Some(Uid::from_raw(st.stx_uid)),
            Some(Gid::from_raw(st.stx_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        self.chown_result(result)?;
        let src_node = xattr::open_node_at(src, name).map_err(step("open"))?;
        let dst_node = xattr::open_node_at(dst, name).map_err(step("open"))?;
        copy_xattrs(
            &XattrTarget::proc(src_node.as_fd()),
            &XattrTarget::proc(dst_node.as_fd()),
        )?;
        if chmod {
            // A device node or FIFO we just made: following the final component is harmless.
            rustix::fs::chmodat(
                dst,
                name,
                Mode::from_raw_mode(tree::permissions(st)),
                AtFlags::empty(),
            )
            .map_err(step("chmod"))?;
        }
        rustix::fs::utimensat(dst, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(step("utimes"))
    }
}

/// Copies every extended attribute (see the module documentation for what may be skipped).
fn copy_xattrs(src: &XattrTarget<'_>, dst: &XattrTarget<'_>) -> Step<()> {
    for name in src.list().map_err(step("listxattr"))? {
        let Some(value) = src.get(&name).map_err(step("getxattr"))? else {
            continue; // removed meanwhile
        };
        if let Err(e) = dst.set(&name, &value) {
            let refused = matches!(
                Errno::from_io_error(&e),
                Some(Errno::PERM | Errno::OPNOTSUPP)
            );
            let skippable = refused && !name.to_bytes().starts_with(b"user.");
            if !skippable {
                return Err((
                    "setxattr",
                    io::Error::new(e.kind(), format!("{}: {e}", name.to_string_lossy())),
                ));
            }
        }
    }
    Ok(())
}

/// An entry's failure: at the entry itself, or already located below it.
enum Entry {
    Here(&'static str, io::Error),
    Below(CopyError),
}

impl From<(&'static str, io::Error)> for Entry {
    fn from((op, e): (&'static str, io::Error)) -> Self {
        Entry::Here(op, e)
    }
}
