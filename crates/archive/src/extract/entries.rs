//! Creating each kind of entry beneath its parent's descriptor: directories, regular files,
//! hard links, symlinks and devices (an existing entry of the name replaced first), their
//! metadata and xattrs, and whiteouts in the style the driver asks for.

use std::io::{Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{
    EntryContent, Extractor, OVERLAY_OPAQUE_XATTR, ParentInfo, WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE, WHITEOUT_PREFIX, XattrTarget, clean, invalid, mode, timestamps,
};
use crate::error::{Error, Result, show};
use crate::filewriter::{FileMeta, SMALL_FILE};
use crate::header::{Header, Kind};
use crate::options::{DevicePolicy, WhiteoutStyle};
use crate::rooted;

impl<'o> Extractor<'o> {
    pub(super) fn create(
        &mut self,
        hdr: &Header,
        parent: BorrowedFd<'_>,
        parent_info: ParentInfo,
        last: &[u8],
        key: Vec<u8>,
        content: &mut dyn EntryContent,
    ) -> Result<()> {
        let entry = &hdr.name[..];
        match hdr.kind {
            Kind::Regular => self.regular(hdr, parent, parent_info.gid, last, content),
            Kind::Directory => {
                match rfs::mkdirat(parent, last, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let existing = rooted::lstat_at(parent, last)
                            .map_err(|e| Error::entry(entry, "lstat", e))?;
                        // An existing directory merges; anything else is replaced.
                        if !existing.is_some_and(|s| {
                            FileType::from_raw_mode(s.st_mode) == FileType::Directory
                        }) {
                            self.replacing(entry, parent, last, || {
                                rfs::mkdirat(parent, last, Mode::from_raw_mode(0o700))
                            })?
                            .map_err(|e| Error::entry(entry, "mkdirat", e))?;
                        }
                    }
                    Err(e) => return Err(Error::entry(entry, "mkdirat", e)),
                }
                let fd = rooted::open_subdir(parent, last)
                    .map_err(|e| Error::entry(entry, "open", e))?;
                self.dir_metadata(hdr, &fd, key.clone())?;
                let id = rfs::fstat(&fd).map_err(|e| Error::entry(entry, "fstat", e))?;
                let depth = parent_info.depth + 1;
                self.depths.insert((id.st_dev, id.st_ino), depth);
                self.made_dir = Some((key, fd, depth, id.st_gid));
                Ok(())
            }
            Kind::Symlink => {
                if hdr.link_name.contains(&0) {
                    return Err(invalid(entry, "NUL byte in the symlink target"));
                }
                self.replacing(entry, parent, last, || {
                    rfs::symlinkat(&hdr.link_name[..], parent, last)
                })?
                .map_err(|e| Error::entry(entry, "symlinkat", e))?;
                self.node_metadata(hdr, parent, last, false)
            }
            Kind::Hardlink => self.hardlink(hdr, parent, last),
            Kind::Char | Kind::Block => {
                let policy = self.opts.devices;
                if policy == DevicePolicy::Fail {
                    return Err(Error::DeviceNotAllowed {
                        entry: show(entry),
                        reason: "device nodes are refused (DevicePolicy::Fail)".into(),
                    });
                }
                if policy == DevicePolicy::Skip {
                    self.warn(entry, "device node skipped (DevicePolicy::Skip)");
                    return Ok(());
                }
                let file_type = if hdr.kind == Kind::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let dev = rfs::makedev(hdr.dev_major, hdr.dev_minor);
                if hdr.kind == Kind::Char && dev == 0 {
                    // An overlay whiteout as it stands (counted even if not made: an upper
                    // bound is all the count promises).
                    self.stats.overlay_markers += 1;
                }
                let made = self.replacing(entry, parent, last, || {
                    rfs::mknodat(parent, last, file_type, Mode::from_raw_mode(0o600), dev)
                })?;
                match made {
                    Ok(()) => self.node_metadata(hdr, parent, last, true),
                    Err(Errno::PERM) if policy == DevicePolicy::CreateOrSkip => {
                        self.warn(entry, "device node skipped: not permitted to create it");
                        Ok(())
                    }
                    Err(e) => Err(Error::DeviceNotAllowed {
                        entry: show(entry),
                        reason: format!("mknodat: {e}"),
                    }),
                }
            }
            Kind::Fifo => {
                self.replacing(entry, parent, last, || {
                    rfs::mknodat(parent, last, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                })?
                .map_err(|e| Error::entry(entry, "mknodat", e))?;
                self.node_metadata(hdr, parent, last, true)
            }
            Kind::Other(type_flag) => Err(Error::UnsupportedEntryType {
                entry: show(entry),
                type_flag,
            }),
        }
    }

    fn regular(
        &mut self,
        hdr: &Header,
        parent: BorrowedFd<'_>,
        parent_gid: u32,
        last: &[u8],
        content: &mut dyn EntryContent,
    ) -> Result<()> {
        let entry = &hdr.name[..];
        // The expanded-size cap counts what files declare, so a sparse file's holes count
        // as the terabytes they would read back as.
        let declared = hdr
            .sparse
            .as_ref()
            .map_or(hdr.size, |(real_size, _)| *real_size);
        self.declared_size = self.declared_size.saturating_add(declared);
        if let Some(limit) = self.opts.max_uncompressed_size
            && self.declared_size > limit
        {
            return Err(Error::TooLarge { limit });
        }
        let fd = self
            .replacing(entry, parent, last, || {
                rfs::openat(
                    parent,
                    last,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
            })?
            .map_err(|e| Error::entry(entry, "openat", e))?;
        let mut file = std::fs::File::from(fd);
        if self.use_writer
            && !self.writer.backlogged()
            && hdr.sparse.is_none()
            && hdr.xattrs.is_empty()
            && hdr.size <= SMALL_FILE
        {
            let owner = self
                .host_owner(hdr)
                .map(|owner| self.chown_needed(owner, parent_gid).then_some(owner));
            let meta = || {
                Ok(FileMeta {
                    owner: owner?,
                    mode: mode(hdr),
                    times: timestamps(hdr),
                })
            };
            self.stats.size += self.writer.submit(file, entry, hdr.size, content, meta)?;
            return Ok(());
        }
        let written = match &hdr.sparse {
            None => content.write_to(&mut file, &mut self.buf, None),
            Some((real_size, regions)) => {
                let mut total = 0;
                for &(offset, len) in regions {
                    if offset.checked_add(len).is_none_or(|end| end > *real_size) {
                        return Err(invalid(entry, "sparse region beyond the file's size"));
                    }
                    file.seek(SeekFrom::Start(offset))
                        .map_err(|e| Error::entry(entry, "seek", e))?;
                    total += content
                        .write_to(&mut file, &mut self.buf, Some(len))
                        .map_err(|e| Error::entry(entry, "write sparse data", e))?;
                }
                file.set_len(*real_size)
                    .map_err(|e| Error::entry(entry, "truncate", e))?;
                Ok(total)
            }
        }
        .map_err(|e| Error::entry(entry, "write", e))?;
        self.stats.size += written;
        let (uid, gid) = self.host_owner(hdr)?;
        if self.chown_needed((uid, gid), parent_gid) {
            self.chown_result(entry, rfs::fchown(&file, Some(uid), Some(gid)))?;
        }
        self.set_xattrs(hdr, XattrTarget::Fd(file.as_fd()))?;
        rfs::fchmod(&file, mode(hdr)).map_err(|e| Error::entry(entry, "chmod", e))?;
        rfs::futimens(&file, &timestamps(hdr)).map_err(|e| Error::entry(entry, "set times", e))
    }

    fn hardlink(&mut self, hdr: &Header, parent: BorrowedFd<'_>, last: &[u8]) -> Result<()> {
        let entry = &hdr.name[..];
        if hdr.link_name.contains(&0) {
            return Err(invalid(entry, "NUL byte in the hardlink target"));
        }
        let breakout = || Error::Breakout {
            entry: show(entry),
            what: "hardlink target",
            target: show(&hdr.link_name),
        };
        let target = clean(&hdr.link_name).ok_or_else(breakout)?;
        let Some((target_last, target_parent)) = target.split_last() else {
            return Err(invalid(entry, "hardlink to the archive's root"));
        };
        let target_dir = self
            .root
            .open_dir(target_parent)
            .map_err(|e| Error::entry(entry, "resolve the hardlink target's directory", e))?;
        // Flags 0: a symlink target is linked itself, never followed.
        self.replacing(entry, parent, last, || {
            rfs::linkat(&target_dir, *target_last, parent, last, AtFlags::empty())
        })?
        .map_err(|e| Error::entry(entry, "linkat", e))
    }

    /// Runs `make`, which creates `last` in `parent` exclusively. When the name is taken
    /// (`EEXIST`), removes what is there (never following it) and runs `make` once more. Fresh
    /// targets pay no extra syscall. The outer error is a failed removal; the inner result is
    /// `make`'s.
    fn replacing<T>(
        &mut self,
        entry: &[u8],
        parent: BorrowedFd<'_>,
        last: &[u8],
        make: impl Fn() -> rustix::io::Result<T>,
    ) -> Result<rustix::io::Result<T>> {
        match make() {
            Err(Errno::EXIST) => {
                let existing =
                    rooted::lstat_at(parent, last).map_err(|e| Error::entry(entry, "lstat", e))?;
                rooted::remove_all(parent, last)
                    .map_err(|e| Error::entry(entry, "remove the existing entry", e))?;
                // A removed directory may be what a cached parent fd points to.
                self.cache_dirty |= existing
                    .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
                Ok(make())
            }
            other => Ok(other),
        }
    }

    /// Owner, xattrs, mode (not for symlinks) and times of a node made by name.
    fn node_metadata(
        &mut self,
        hdr: &Header,
        parent: BorrowedFd<'_>,
        last: &[u8],
        chmod: bool,
    ) -> Result<()> {
        let entry = &hdr.name[..];
        let (uid, gid) = self.host_owner(hdr)?;
        let chown = rfs::chownat(
            parent,
            last,
            Some(uid),
            Some(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        self.chown_result(entry, chown)?;
        self.set_xattrs(hdr, XattrTarget::At(parent, last))?;
        if chmod {
            // We just made this node with mknodat (no symlink can be there).
            rfs::chmodat(parent, last, mode(hdr), AtFlags::empty())
                .map_err(|e| Error::entry(entry, "chmod", e))?;
        }
        rfs::utimensat(parent, last, &timestamps(hdr), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::entry(entry, "set times", e))
    }

    pub(super) fn set_xattrs(&mut self, hdr: &Header, target: XattrTarget<'_>) -> Result<()> {
        let entry = &hdr.name[..];
        for (name, value) in &hdr.xattrs {
            if name.contains(&0) {
                return Err(invalid(entry, "NUL byte in an xattr name"));
            }
            if self.opts.whiteouts == WhiteoutStyle::Overlay
                && name.starts_with(b"trusted.overlay.")
            {
                self.warn(
                    entry,
                    &format!("xattr {} dropped: overlay metadata", show(name)),
                );
                continue;
            }
            let result = match target {
                XattrTarget::Fd(fd) => {
                    rfs::fsetxattr(fd, &name[..], value, rfs::XattrFlags::empty())
                }
                XattrTarget::At(parent, last) => {
                    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
                    path.extend_from_slice(last);
                    rfs::lsetxattr(&path[..], &name[..], value, rfs::XattrFlags::empty())
                }
            };
            match result {
                Ok(()) => {}
                Err(Errno::NOTSUP) => {
                    self.warn(entry, &format!("xattr {} not supported here", show(name)));
                }
                Err(e) => return Err(Error::entry(entry, "setxattr", e)),
            }
        }
        Ok(())
    }

    pub(super) fn whiteout(
        &mut self,
        hdr: &Header,
        parent: BorrowedFd<'_>,
        parent_key: &[u8],
        base: &[u8],
    ) -> Result<()> {
        let entry = &hdr.name[..];
        if base == WHITEOUT_OPAQUE {
            return self.opaque(entry, parent, parent_key);
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            // Other AUFS metadata (`.wh..wh.plnk`, ...): Go skips it too.
            return Ok(());
        }
        let target = &base[WHITEOUT_PREFIX.len()..];
        if matches!(target, b"" | b"." | b"..") {
            return Err(Error::Breakout {
                entry: show(entry),
                what: "whiteout",
                target: show(target),
            });
        }
        rooted::remove_all(parent, target)
            .map_err(|e| Error::entry(entry, "remove the whited-out entry", e))?;
        self.cache_dirty = true;
        if self.opts.whiteouts == WhiteoutStyle::Overlay {
            self.stats.overlay_markers += 1;
            rfs::mknodat(parent, target, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(|e| Error::entry(entry, "mknodat (overlay whiteout)", e))?;
            let (uid, gid) = self.host_owner(hdr)?;
            let chown = rfs::chownat(
                parent,
                target,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            self.chown_result(entry, chown)?;
        }
        Ok(())
    }

    fn opaque(&mut self, entry: &[u8], dir: BorrowedFd<'_>, dir_key: &[u8]) -> Result<()> {
        match self.opts.whiteouts {
            WhiteoutStyle::Overlay => {
                self.stats.overlay_markers += 1;
                let fd =
                    rooted::open_subdir(dir, b".").map_err(|e| Error::entry(entry, "open", e))?;
                rfs::fsetxattr(&fd, OVERLAY_OPAQUE_XATTR, b"y", rfs::XattrFlags::empty())
                    .map_err(|e| Error::entry(entry, "set the overlay opaque xattr", e))
            }
            WhiteoutStyle::Naive => {
                let children =
                    rooted::list_dir(dir).map_err(|e| Error::entry(entry, "readdir", e))?;
                for child in children {
                    let mut key = dir_key.to_vec();
                    if !key.is_empty() {
                        key.push(b'/');
                    }
                    key.extend_from_slice(&child);
                    if !self.seen.contains(&key) {
                        rooted::remove_all(dir, &child)
                            .map_err(|e| Error::entry(entry, "empty the opaque directory", e))?;
                        self.cache_dirty = true;
                    }
                }
                Ok(())
            }
        }
    }
}
