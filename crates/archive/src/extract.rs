//! Creating one tar entry beneath the target directory.
//!
//! Every entry is created relative to an `O_PATH` fd of its parent directory, which is looked up
//! once through [`Root`] (rooted resolution) and then reused while consecutive entries share the
//! parent. The entry's own name is never followed: an existing entry of that name is removed first
//! (unless both are directories), files are created with `O_EXCL | O_NOFOLLOW`, and metadata is
//! applied through the new fd or with `AT_SYMLINK_NOFOLLOW`.
//!
//! Everything that names a path happens here, on the extracting thread, in archive order; only
//! the fd of a freshly created small regular file is handed to the [`FileWriter`] to be filled
//! and finished (unless the writer is backlogged: this thread then finishes it itself rather
//! than wait). A directory entry's own fd becomes the cached parent of the entries after it
//! (mostly its children), which saves one rooted lookup per directory.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use layerstore_tarsplit::PathSet;
use rustix::fs::{self as rfs, AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use crate::error::{Error, Result, show};
use crate::filewriter::FileWriter;
use crate::header::{Header, Kind, Time};
use crate::idmap;
use crate::options::{ApplyOptions, RootEntry};
use crate::rooted::{self, Root};

mod entries;

use crate::whiteout::{
    OVERLAY_OPAQUE_XATTR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
};

/// Splits a tar name into clean components the way Go's `filepath.Clean` would, treating an
/// absolute name as relative to the target. `None` when `..` climbs above the target.
pub(crate) fn clean(name: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for component in name.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// What the extractor learned, beyond the tree it wrote.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) uids: BTreeSet<u32>,
    pub(crate) gids: BTreeSet<u32>,
    pub(crate) size: u64,
    pub(crate) entries: u64,
    /// Overlay-style deletion markers made ([`ApplyReport::overlay_markers`]).
    pub(crate) overlay_markers: u64,
    pub(crate) warnings: Vec<String>,
}

/// Extracts entries one at a time beneath a root.
pub(crate) struct Extractor<'o> {
    root: Root,
    opts: &'o ApplyOptions,
    /// Clean paths (components joined by `/`) of every entry so far: duplicate detection and the
    /// "added by this layer" test of naive opaque whiteouts.
    seen: PathSet,
    /// Directories whose times are set at the end, after their contents.
    dirs: Vec<(Vec<u8>, Timestamps)>,
    /// The parent directory of the previous entry (key, fd, depth, group): consecutive
    /// entries mostly share it.
    cached_parent: Option<(Vec<u8>, OwnedFd, usize, u32)>,
    /// Set when an entry removed a directory: a cached fd might then name a detached directory.
    cache_dirty: bool,
    /// The directory the current entry created or merged (its key and fd): the next entries
    /// are mostly its children, so it becomes the cached parent.
    made_dir: Option<(Vec<u8>, OwnedFd, usize, u32)>,
    /// Depth below the root (the root is 0) of the directories met so far, by device and
    /// inode: the real depth, whatever symlinks a name went through (see [`Self::dir_depth`]).
    depths: HashMap<(u64, u64), usize>,
    /// Bytes the regular files so far declare (sparse files: their expanded size).
    declared_size: u64,
    buf: Vec<u8>,
    /// Finishes small regular files on a second thread (see [`crate::filewriter`]).
    writer: FileWriter,
    /// Whether small regular files go to `writer` (otherwise all are finished inline).
    use_writer: bool,
    /// Our effective uid and gid: the owner of every file we create, unless the parent
    /// directory decides the group (see [`Self::chown_needed`]).
    creator: (Uid, Gid),
    pub(crate) stats: Stats,
}

impl<'o> Extractor<'o> {
    pub(crate) fn new(root: Root, opts: &'o ApplyOptions) -> Self {
        Extractor {
            root,
            opts,
            seen: PathSet::default(),
            dirs: Vec::new(),
            cached_parent: None,
            cache_dirty: false,
            made_dir: None,
            depths: HashMap::new(),
            declared_size: 0,
            buf: vec![0; 256 * 1024],
            writer: FileWriter::new(opts.ignore_chown_errors),
            use_writer: true,
            creator: (rustix::process::geteuid(), rustix::process::getegid()),
            stats: Stats::default(),
        }
    }

    /// Creates one entry; `content` yields its data (regular files). After an error the
    /// extraction is over (the error is the first one in archive order).
    pub(crate) fn entry(&mut self, hdr: &Header, content: &mut dyn EntryContent) -> Result<()> {
        self.entry_inline(hdr, content)
            .map_err(|e| self.writer.first_error(e))
    }

    /// `err` (of the stream, after the entries so far), or the error of an earlier entry still
    /// being finished on the file writer thread, which comes first.
    pub(crate) fn fail(&mut self, err: Error) -> Error {
        self.writer.first_error(err)
    }

    /// Finishes every file on this thread: for a layer whose decompression is the critical path
    /// (gzip, bzip2, xz) the file writer saves no time and costs ~3% CPU (measured for gzip).
    pub(crate) fn finish_files_inline(&mut self) {
        self.use_writer = false;
    }

    /// The extraction may wait for input next: hands the pending small files to the file
    /// writer (an error is the writer's, of an earlier entry).
    pub(crate) fn input_wait(&mut self) -> Result<()> {
        self.writer.flush()
    }

    fn entry_inline(&mut self, hdr: &Header, content: &mut dyn EntryContent) -> Result<()> {
        self.stats.entries += 1;
        let name = &hdr.name[..];
        if name.contains(&0) {
            return Err(invalid(name, "NUL byte in the name"));
        }
        let components = clean(name).ok_or_else(|| Error::Breakout {
            entry: show(name),
            what: "path",
            target: show(name),
        })?;
        // The cheap test first: the name alone is too deep (symlinks can only add depth).
        if components.len() > self.opts.max_depth {
            return Err(self.too_deep(name, components.len()));
        }
        let whiteout = components
            .last()
            .is_some_and(|base| base.starts_with(WHITEOUT_PREFIX));
        if !whiteout {
            self.record_ids(hdr)?;
        }
        let key = components.join(&b'/');
        // One hash lookup per entry: the set is the hottest data structure of a many-files layer.
        if !self.seen.insert(&key) {
            return Err(Error::DuplicatePath { entry: show(name) });
        }
        let Some((last, parent_components)) = components.split_last() else {
            return self.root_entry(hdr);
        };
        self.cache_dirty = false;
        // The parent's key is the key up to the last '/' (no allocation while it is cached).
        let parent_len = key.len() - last.len() - usize::from(!parent_components.is_empty());
        let (parent_key, parent, parent_depth, parent_gid) =
            self.parent(&key[..parent_len], parent_components, name)?;
        if parent_depth >= self.opts.max_depth {
            return Err(self.too_deep(name, parent_depth + 1));
        }
        let result = if whiteout {
            self.whiteout(hdr, parent.as_fd(), &parent_key, last)
        } else {
            let info = ParentInfo {
                depth: parent_depth,
                gid: parent_gid,
            };
            self.create(hdr, parent.as_fd(), info, last, key, content)
        };
        let made_dir = self.made_dir.take();
        if !self.cache_dirty {
            self.cached_parent =
                Some(made_dir.unwrap_or((parent_key, parent, parent_depth, parent_gid)));
        }
        result
    }

    /// Sets the deferred directory times and returns what was learned.
    pub(crate) fn finish(mut self) -> Result<Stats> {
        self.cached_parent = None;
        // Every file is complete before any directory time is set.
        self.writer.finish()?;
        // Setting a directory's times changes only that directory, so the order among them
        // is free: with many, two threads share them (three syscalls each; 6,900 directories
        // were the last 50 ms of a 43,000-file layer, on one core with the other idle).
        let root = &self.root;
        let dirs = &self.dirs;
        if dirs.len() < PARALLEL_DIR_TIMES {
            set_dir_times(root, dirs.iter())?;
        } else {
            std::thread::scope(|scope| {
                let other = scope.spawn(|| set_dir_times(root, dirs.iter().skip(1).step_by(2)));
                let mine = set_dir_times(root, dirs.iter().step_by(2));
                let other = other.join().map_err(|_| Error::WorkerPanicked)?;
                mine.and(other)
            })?;
        }
        Ok(self.stats)
    }

    fn record_ids(&mut self, hdr: &Header) -> Result<()> {
        let uid = u32::try_from(hdr.uid).map_err(|_| unmapped(&hdr.name, "uid", hdr.uid))?;
        let gid = u32::try_from(hdr.gid).map_err(|_| unmapped(&hdr.name, "gid", hdr.gid))?;
        self.stats.uids.insert(uid);
        self.stats.gids.insert(gid);
        Ok(())
    }

    /// The parent directory of an entry (its key as a `Vec`, reused from the cache), created
    /// (0755, owned by the mapped root) if missing,
    /// its depth and its group. A directory this creates deeper than an entry may be is an
    /// error.
    fn parent(
        &mut self,
        key: &[u8],
        components: &[&[u8]],
        entry: &[u8],
    ) -> Result<(Vec<u8>, OwnedFd, usize, u32)> {
        if let Some((cached_key, fd, depth, gid)) = self.cached_parent.take()
            && cached_key == key
        {
            return Ok((cached_key, fd, depth, gid));
        }
        let owner = self.implicit_owner(entry)?;
        let ignore = self.opts.ignore_chown_errors;
        let max_depth = self.opts.max_depth;
        let mut too_deep = None;
        let mut depths = std::mem::take(&mut self.depths);
        let root = &self.root;
        let made = root.ensure_dir(components, &mut |fd| {
            let (depth, _) = dir_depth(&mut depths, root, max_depth, fd)?;
            if depth >= max_depth {
                too_deep = Some(depth + 1);
                return Err(io::Error::other("too deep"));
            }
            match owner {
                None => Ok(()),
                Some((uid, gid)) => {
                    match rfs::chownat(fd, c"", Some(uid), Some(gid), AtFlags::EMPTY_PATH) {
                        Err(Errno::PERM | Errno::INVAL) if ignore => Ok(()),
                        other => other.map_err(Into::into),
                    }
                }
            }
        });
        let result = made.and_then(|fd| {
            // After the callback's chown: the group the directory has now.
            let (depth, gid) = dir_depth(&mut depths, root, max_depth, fd.as_fd())?;
            Ok((key.to_vec(), fd, depth, gid))
        });
        self.depths = depths;
        if let Some(depth) = too_deep {
            return Err(self.too_deep(entry, depth));
        }
        result.map_err(|e| Error::entry(entry, "resolve parent directory", e))
    }

    fn too_deep(&self, entry: &[u8], depth: usize) -> Error {
        Error::TooDeep {
            entry: show(entry),
            depth,
            limit: self.opts.max_depth,
        }
    }

    /// Owner of directories created implicitly: the container's root mapped to the host, when
    /// there is a mapping (otherwise whoever we are).
    fn implicit_owner(&self, entry: &[u8]) -> Result<Option<(Uid, Gid)>> {
        if self.opts.uid_map.is_empty() && self.opts.gid_map.is_empty() {
            return Ok(None);
        }
        let uid = idmap::to_host(&self.opts.uid_map, 0).ok_or_else(|| unmapped(entry, "uid", 0))?;
        let gid = idmap::to_host(&self.opts.gid_map, 0).ok_or_else(|| unmapped(entry, "gid", 0))?;
        Ok(Some((Uid::from_raw(uid), Gid::from_raw(gid))))
    }

    fn host_owner(&self, hdr: &Header) -> Result<(Uid, Gid)> {
        let map = |maps: &[idmap::IdMap], id: u64, kind| {
            u32::try_from(id)
                .ok()
                .and_then(|id| idmap::to_host(maps, id))
                .ok_or_else(|| unmapped(&hdr.name, kind, id))
        };
        Ok((
            Uid::from_raw(map(&self.opts.uid_map, hdr.uid, "uid")?),
            Gid::from_raw(map(&self.opts.gid_map, hdr.gid, "gid")?),
        ))
    }

    /// Whether a file we just created in a directory of group `parent_gid` needs a chown to
    /// become `owner`. Not when `owner` is us and the parent's group is our group too: the
    /// new file's group is then ours whether the parent is setgid (or mounted `grpid`) or
    /// not, and a fresh file has no setuid/setgid bits or xattrs for a chown to clear.
    fn chown_needed(&self, owner: (Uid, Gid), parent_gid: u32) -> bool {
        owner != self.creator || parent_gid != self.creator.1.as_raw()
    }

    fn chown_result(&self, entry: &[u8], result: rustix::io::Result<()>) -> Result<()> {
        match result {
            Err(Errno::PERM | Errno::INVAL) if self.opts.ignore_chown_errors => Ok(()),
            other => other.map_err(|e| Error::entry(entry, "chown", e)),
        }
    }

    fn root_entry(&mut self, hdr: &Header) -> Result<()> {
        if hdr.kind != Kind::Directory {
            return Err(invalid(
                &hdr.name,
                "the archive's root can only be a directory",
            ));
        }
        if self.opts.root_entry == RootEntry::Ignore {
            return Ok(());
        }
        // The root's group may change: a cached root fd's group would be stale.
        self.cached_parent = None;
        let fd = rooted::open_subdir(self.root.fd(), b".")
            .map_err(|e| Error::entry(&hdr.name, "open the target directory", e))?;
        self.dir_metadata(hdr, &fd, Vec::new())?;
        if self.opts.root_entry == RootEntry::KeepModificationTime
            && let Some((_, times)) = self.dirs.last_mut()
        {
            times.last_access = timespec(hdr.atime.unwrap_or(Time { secs: 0, nanos: 0 }));
            times.last_modification = Timespec {
                tv_sec: 0,
                tv_nsec: rfs::UTIME_OMIT,
            };
        }
        Ok(())
    }

    fn dir_metadata(&mut self, hdr: &Header, fd: &OwnedFd, key: Vec<u8>) -> Result<()> {
        let (uid, gid) = self.host_owner(hdr)?;
        self.chown_result(&hdr.name, rfs::fchown(fd, Some(uid), Some(gid)))?;
        self.set_xattrs(hdr, XattrTarget::Fd(fd.as_fd()))?;
        rfs::fchmod(fd, mode(hdr)).map_err(|e| Error::entry(&hdr.name, "chmod", e))?;
        self.dirs.push((key, timestamps(hdr)));
        Ok(())
    }

    fn warn(&mut self, entry: &[u8], what: &str) {
        self.stats
            .warnings
            .push(format!("entry {:?}: {what}", show(entry)));
    }
}

/// Below this many directories their times are set on one thread.
const PARALLEL_DIR_TIMES: usize = 512;

/// Sets the times of `dirs` (keys beneath `root`). A directory a later entry of the layer
/// removed (whiteout, opaque directory) is skipped.
fn set_dir_times<'d>(
    root: &Root,
    dirs: impl Iterator<Item = &'d (Vec<u8>, Timestamps)>,
) -> Result<()> {
    for (key, times) in dirs {
        let components: Vec<&[u8]> = if key.is_empty() {
            Vec::new()
        } else {
            key.split(|&b| b == b'/').collect()
        };
        let result = match components.split_last() {
            None => rooted::open_subdir(root.fd(), b".")
                .and_then(|fd| rfs::futimens(&fd, times).map_err(Into::into)),
            Some((last, parent)) => root.open_dir(parent).and_then(|fd| {
                rfs::utimensat(&fd, *last, times, AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
            }),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other.map_err(|e| Error::entry(key, "set directory times", e))?,
        }
    }
    Ok(())
}

/// The depth below `root` of the directory `dir` (the root is 0) and its group (read now, not
/// remembered): the depth known from `depths`, else
/// found by climbing through `..` to a known directory, and then remembered for every
/// directory on the way. Past `max_depth` levels the climb stops and `max_depth + 1` is
/// returned (a directory outside the root would otherwise be climbed to `/` forever).
fn dir_depth(
    depths: &mut HashMap<(u64, u64), usize>,
    root: &Root,
    max_depth: usize,
    dir: BorrowedFd<'_>,
) -> io::Result<(usize, u32)> {
    let identity = |fd: BorrowedFd<'_>| rfs::fstat(fd).map(|st| (st.st_dev, st.st_ino));
    if depths.is_empty() {
        depths.insert(identity(root.fd())?, 0);
    }
    let mut climbed = Vec::new();
    let stat = rfs::fstat(dir)?;
    let gid = stat.st_gid;
    let mut id = (stat.st_dev, stat.st_ino);
    let mut current: Option<OwnedFd> = None;
    let known = loop {
        if let Some(&depth) = depths.get(&id) {
            break depth;
        }
        if climbed.len() > max_depth {
            return Ok((max_depth + 1, gid));
        }
        climbed.push(id);
        // `O_PATH`: climbing needs no read permission on the directories above.
        let up = rfs::openat(
            current.as_ref().map_or(dir, |c| c.as_fd()),
            c"..",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        id = identity(up.as_fd())?;
        current = Some(up);
    };
    let depth = known + climbed.len();
    for (i, id) in climbed.into_iter().enumerate() {
        depths.insert(id, depth - i);
    }
    Ok((depth, gid))
}

/// What an entry's creation needs to know of its parent directory besides its fd.
#[derive(Clone, Copy)]
struct ParentInfo {
    /// Below the root (the root is 0).
    depth: usize,
    /// Its group, which decides whether a new file needs a chown.
    gid: u32,
}

#[derive(Clone, Copy)]
enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

fn invalid(entry: &[u8], reason: &'static str) -> Error {
    Error::InvalidName {
        entry: show(entry),
        reason,
    }
}

fn unmapped(entry: &[u8], kind: &'static str, id: u64) -> Error {
    Error::UnmappedId {
        entry: show(entry),
        kind,
        id,
    }
}

fn mode(hdr: &Header) -> Mode {
    Mode::from_raw_mode(hdr.mode & 0o7777)
}

fn timespec(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.min(999_999_999).into(),
    }
}

fn timestamps(hdr: &Header) -> Timestamps {
    Timestamps {
        last_access: timespec(hdr.atime.unwrap_or(hdr.mtime)),
        last_modification: timespec(hdr.mtime),
    }
}

/// An entry's content as the extractor reads it: a reader that can also hand its bytes to
/// a file without copying them into a buffer first.
pub(crate) trait EntryContent: Read {
    /// Writes the next `limit` bytes (everything left with `None`) to `to` and returns the
    /// count; `buf` is room for a content that has to be copied.
    fn write_to(
        &mut self,
        to: &mut std::fs::File,
        buf: &mut [u8],
        limit: Option<u64>,
    ) -> io::Result<u64> {
        copy(self, to, buf, limit)
    }
}

impl EntryContent for io::Empty {}

/// Copies `limit` bytes (or everything) from `from` to `to`; returns the count.
fn copy<R: Read + ?Sized>(
    from: &mut R,
    to: &mut std::fs::File,
    buf: &mut [u8],
    limit: Option<u64>,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let want = match limit {
            Some(limit) if total >= limit => break,
            Some(limit) => buf
                .len()
                .min(usize::try_from(limit - total).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = match from.read(&mut buf[..want]) {
            Ok(0) if limit.is_some() => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idmap::IdMap;

    #[test]
    fn clean_follows_go_and_refuses_escapes() {
        let c = |s: &[u8]| clean(s).map(|v| v.join(&b'/'));
        assert_eq!(c(b"./a//b/./c/"), Some(b"a/b/c".to_vec()));
        assert_eq!(c(b"/etc/passwd"), Some(b"etc/passwd".to_vec()));
        assert_eq!(c(b"a/../b"), Some(b"b".to_vec()));
        assert_eq!(c(b"./"), Some(Vec::new()));
        assert_eq!(c(b".."), None);
        assert_eq!(c(b"a/../../b"), None);
        assert_eq!(c(b"/../x"), None);
    }

    fn extract_one(hdr: &Header, opts: &ApplyOptions) -> Result<Stats> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ex = Extractor::new(Root::open(dir.path()).expect("root"), opts);
        ex.entry(hdr, &mut io::empty())?;
        ex.finish()
    }

    #[test]
    fn nul_bytes_are_refused() {
        let opts = ApplyOptions::default();
        let err = extract_one(&Header::new(b"a\0b", Kind::Regular, 0o644), &opts).expect_err("NUL");
        assert!(matches!(err, Error::InvalidName { .. }), "{err}");
        let mut link = Header::new(b"s", Kind::Symlink, 0o777);
        link.link_name = b"/x\0y".to_vec();
        let err = extract_one(&link, &opts).expect_err("NUL");
        assert!(matches!(err, Error::InvalidName { .. }), "{err}");
        let mut hard = Header::new(b"h", Kind::Hardlink, 0o644);
        hard.link_name = b"x\0".to_vec();
        assert!(matches!(
            extract_one(&hard, &opts),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn ids_beyond_u32_or_the_map_are_refused() {
        let mut hdr = Header::new(b"f", Kind::Regular, 0o644);
        hdr.uid = u64::from(u32::MAX) + 1;
        let err = extract_one(&hdr, &ApplyOptions::default()).expect_err("uid");
        assert!(
            matches!(err, Error::UnmappedId { kind: "uid", .. }),
            "{err}"
        );
        let mapped = ApplyOptions {
            gid_map: vec![IdMap {
                container_id: 0,
                host_id: 1000,
                size: 10,
            }],
            ..ApplyOptions::default()
        };
        let mut hdr = Header::new(b"f", Kind::Regular, 0o644);
        hdr.gid = 10;
        let err = extract_one(&hdr, &mapped).expect_err("gid");
        assert!(err.to_string().contains("gid 10 has no mapping"), "{err}");
    }

    #[test]
    fn ids_are_collected_except_for_whiteouts() {
        let opts = ApplyOptions::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ex = Extractor::new(Root::open(dir.path()).expect("root"), &opts);
        let mut wh = Header::new(b"d/.wh.gone", Kind::Regular, 0);
        wh.uid = 7;
        let mut file = Header::new(b"d/f", Kind::Regular, 0o644);
        file.uid = 1;
        file.gid = 2;
        ex.entry(&wh, &mut io::empty()).expect("whiteout");
        ex.entry(&file, &mut io::empty()).expect("file");
        let stats = ex.finish().expect("finish");
        assert_eq!(stats.uids, BTreeSet::from([1]));
        assert_eq!(stats.gids, BTreeSet::from([2]));
        assert_eq!(stats.entries, 2);
    }
    #[test]
    fn the_root_entry_is_applied_kept_without_its_mtime_or_ignored_as_asked() {
        use std::os::unix::fs::MetadataExt;
        let mut root = Header::new(b"./", Kind::Directory, 0o711);
        root.mtime = Time {
            secs: 1_000_000_000,
            nanos: 0,
        };
        let run = |root_entry| {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o750),
            )
            .expect("chmod");
            std::fs::File::open(dir.path())
                .and_then(|f| {
                    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(77))
                })
                .expect("set mtime");
            let opts = ApplyOptions {
                root_entry,
                ..ApplyOptions::default()
            };
            let mut ex = Extractor::new(Root::open(dir.path()).expect("root"), &opts);
            ex.entry(&root, &mut io::empty()).expect("root entry");
            ex.finish().expect("finish");
            let meta = std::fs::metadata(dir.path()).expect("stat");
            (meta.mode() & 0o7777, meta.atime(), meta.mtime())
        };
        assert_eq!(run(RootEntry::Apply), (0o711, 1_000_000_000, 1_000_000_000));
        // No access time in the header: the epoch, as Go's `Chtimes` of a zero time.
        assert_eq!(run(RootEntry::KeepModificationTime), (0o711, 0, 77));
        assert_eq!(run(RootEntry::Ignore).0, 0o750);
        assert_eq!(run(RootEntry::Ignore).2, 77);
    }
}
