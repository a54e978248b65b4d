//! Copying one entry: regular files (reflink, `copy_file_range`, data regions around holes),
//! hard links, special files, and their owners, modes, times and extended attributes.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::PoisonError;
use std::sync::mpsc::Receiver;

use layerstore_driver::tree::{self, FileId, mode};
use layerstore_driver::xattr::{self, XattrTarget};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, RawDir, SeekFrom, Statx, Uid};
use rustix::io::Errno;

use super::{CopyError, CopyStats, DIRENT_BUFFER, Dir, FileJob, Shared, Step, step, timestamps};

/// One thread's copying state.
pub(super) struct Copier<'a> {
    pub(super) shared: &'a Shared,
    reflink: bool,
    copy_range: bool,
    pub(super) stats: CopyStats,
    buffer: Vec<u8>,
    dirents: Vec<MaybeUninit<u8>>,
}

impl<'a> Copier<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        Copier {
            shared,
            reflink: !shared.options.no_reflink,
            copy_range: true,
            stats: CopyStats::default(),
            buffer: Vec::new(),
            dirents: Vec::new(),
        }
    }

    /// The worker: copies queued files until the walker is done.
    pub(super) fn run_jobs(&mut self, jobs: Receiver<FileJob>) {
        for job in jobs {
            let dir = Dir {
                src: job.fds.src.as_fd(),
                dst: job.fds.dst.as_fd(),
                path: &job.path,
            };
            self.copy_files(dir, &job.names);
        }
    }

    pub(super) fn copy_files(&mut self, dir: Dir<'_>, names: &[CString]) {
        for name in names {
            if self.shared.failed() {
                return;
            }
            if let Err((op, source)) = self.copy_file(dir, name) {
                self.shared.fail(CopyError {
                    path: dir.path.join(tree::name_path(name)),
                    op,
                    source,
                });
                return;
            }
        }
    }

    /// The names in `dir` with their `getdents` types, sorted bytewise (Go's `Walk` order).
    pub(super) fn read_entries(
        &mut self,
        dir: BorrowedFd<'_>,
    ) -> io::Result<Vec<(CString, FileType)>> {
        if self.dirents.is_empty() {
            self.dirents = vec![MaybeUninit::uninit(); DIRENT_BUFFER];
        }
        // Reads from the descriptor's offset: `dir` was opened for this walk and nothing else
        // depends on its offset.
        let mut reader = RawDir::new(dir, &mut self.dirents);
        let mut entries = Vec::new();
        while let Some(entry) = reader.next() {
            let entry = entry?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                entries.push((name.to_owned(), entry.file_type()));
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    /// A symlink, device, FIFO or socket.
    pub(super) fn copy_special(&mut self, dir: Dir<'_>, name: &CStr, st: &Statx) -> Step<()> {
        match tree::file_type(st) {
            mode::S_IFLNK => {
                let target =
                    rustix::fs::readlinkat(dir.src, name, Vec::new()).map_err(step("readlink"))?;
                let create = || {
                    rustix::fs::symlinkat(target.as_c_str(), dir.dst, name).map_err(step("symlink"))
                };
                if self.create_or_link(dir, name, st, create)?.is_some() {
                    self.finish_special(dir, name, st, false)?;
                }
                Ok(())
            }
            mode::S_IFCHR | mode::S_IFBLK | mode::S_IFIFO | mode::S_IFSOCK => {
                let file_type = FileType::from_raw_mode(u32::from(st.stx_mode));
                let dev = rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor);
                let create = || {
                    rustix::fs::mknodat(dir.dst, name, file_type, Mode::from_raw_mode(0o600), dev)
                        .map_err(step("mknod"))
                };
                if self.create_or_link(dir, name, st, create)?.is_some() {
                    self.finish_special(dir, name, st, true)?;
                }
                Ok(())
            }
            _ => Err((
                "copy",
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("unknown file type {:o}", st.stx_mode),
                ),
            )),
        }
    }

    /// Makes a non-directory with `create`, or links it to the copy of its inode made before
    /// (`None`).
    fn create_or_link<T>(
        &mut self,
        dir: Dir<'_>,
        name: &CStr,
        st: &Statx,
        create: impl FnOnce() -> Step<T>,
    ) -> Step<Option<T>> {
        if st.stx_nlink <= 1 {
            return create().map(Some);
        }
        let shared = self.shared;
        let key = FileId::of(st);
        let mut links = shared.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = links.get(&key) {
            tree::link_beneath(shared.dst_root.as_fd(), first, dir.dst, name)
                .map_err(step("link"))?;
            self.stats.hardlinks += 1;
            return Ok(None);
        }
        let created = create()?;
        links.insert(key, dir.path.join(tree::name_path(name)));
        Ok(Some(created))
    }

    /// The mode to create a regular file with, and whether `fchmod` must still set the final
    /// one: the final mode right away when the umask leaves it whole, it has no set-ID or
    /// sticky bit (`chown` would clear those) and the owner may write (needed to set `user.*`
    /// attributes without `CAP_DAC_OVERRIDE`).
    fn create_mode(&self, st: &Statx) -> (Mode, bool) {
        let permissions = tree::permissions(st);
        let final_at_create = self
            .shared
            .umask
            .is_some_and(|umask| permissions & umask == 0)
            && permissions & 0o7000 == 0
            && permissions & 0o200 != 0;
        if final_at_create {
            (Mode::from_raw_mode(permissions), false)
        } else {
            (Mode::from_raw_mode(0o600), true)
        }
    }

    fn copy_file(&mut self, dir: Dir<'_>, name: &CStr) -> Step<()> {
        // O_NONBLOCK: should the entry have been swapped for a FIFO since `getdents`, the open
        // must not hang; the check below then refuses it. Its `statx` is the only one.
        let src_file: File = rustix::fs::openat(
            dir.src,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(step("open"))?
        .into();
        let st = rustix::fs::statx(&src_file, c"", AtFlags::EMPTY_PATH, tree::STATX_WANTED)
            .map_err(step("stat"))?;
        if tree::file_type(&st) != mode::S_IFREG {
            return Err(("open", io::Error::other("file changed while being copied")));
        }
        let (create_mode, chmod) = self.create_mode(&st);
        let create = || {
            rustix::fs::openat(
                dir.dst,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                create_mode,
            )
            .map(File::from)
            .map_err(step("create"))
        };
        let Some(dst_file) = self.create_or_link(dir, name, &st, create)? else {
            return Ok(());
        };
        self.copy_data(&src_file, &dst_file, &st)?;
        let chown = !self.shared.owner_at_create(&st);
        self.finish_fd(&src_file, &dst_file, &st, chown, chmod)
    }

    fn copy_data(&mut self, src: &File, dst: &File, st: &Statx) -> Step<()> {
        let size = st.stx_size;
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
        // As many bytes allocated as the length: no holes to look for, and a whole copy
        // leaves the right length.
        if st.stx_blocks.saturating_mul(512) >= size {
            let end = self.copy_region(src, dst, 0, size)?;
            if end != size {
                // The source got shorter meanwhile: its length as it was stat'ed.
                rustix::fs::ftruncate(dst, size).map_err(step("truncate"))?;
            }
            return Ok(());
        }
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

    /// Copies `len` bytes at `offset`; returns the offset reached (short only when the source
    /// ends early).
    fn copy_region(&mut self, src: &File, dst: &File, offset: u64, len: u64) -> Step<u64> {
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
                Ok(0) => return Ok(out_off), // the source got shorter: copy what there is
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
        if self.buffer.is_empty() && left > 0 {
            self.buffer = vec![0; 1 << 17];
        }
        while left > 0 {
            let want = usize::try_from(left.min(self.buffer.len() as u64)).unwrap_or(0);
            let n = src
                .read_at(&mut self.buffer[..want], in_off)
                .map_err(step("read"))?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&self.buffer[..n], out_off)
                .map_err(step("write"))?;
            in_off += n as u64;
            out_off += n as u64;
            left -= n as u64;
            self.stats.bytes_copied += n as u64;
        }
        Ok(out_off)
    }

    fn chown_result(&self, result: Result<(), Errno>) -> Step<()> {
        match result {
            Err(Errno::PERM | Errno::INVAL) if self.shared.options.ignore_chown_errors => Ok(()),
            other => other.map_err(step("chown")),
        }
    }

    /// Owner (unless `chown` is false: created with it), attributes, mode (unless `chmod` is
    /// false: likewise) and times of a regular file or directory, by descriptor.
    pub(super) fn finish_fd(
        &mut self,
        src: &impl AsFd,
        dst: &impl AsFd,
        st: &Statx,
        chown: bool,
        chmod: bool,
    ) -> Step<()> {
        if chown {
            let result = rustix::fs::fchown(
                dst,
                Some(Uid::from_raw(st.stx_uid)),
                Some(Gid::from_raw(st.stx_gid)),
            );
            self.chown_result(result)?;
        }
        copy_xattrs(&XattrTarget::fd(src.as_fd()), &XattrTarget::fd(dst.as_fd()))?;
        if chmod {
            rustix::fs::fchmod(dst, Mode::from_raw_mode(tree::permissions(st)))
                .map_err(step("chmod"))?;
        }
        rustix::fs::futimens(dst, &timestamps(st)).map_err(step("utimes"))
    }

    /// The same for a symlink or special file, by name (never following it).
    fn finish_special(&mut self, dir: Dir<'_>, name: &CStr, st: &Statx, chmod: bool) -> Step<()> {
        self.stats.specials += 1;
        let (src, dst) = (dir.src, dir.dst);
        if !self.shared.owner_at_create(st) {
            let result = rustix::fs::chownat(
                dst,
                name,
                Some(Uid::from_raw(st.stx_uid)),
                Some(Gid::from_raw(st.stx_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            self.chown_result(result)?;
        }
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
