//! Exact tree copy, the heart of vfs: a child layer starts as a copy of its parent. The walk is
//! `walker.rs`'s (the calling thread), the copying of each entry `files.rs`'s (the calling thread
//! and one worker).
//!
//! Same result as Go's `copy.DirCopy(src, dst, Content, copyXattrs=true)`, done fd-relative
//! so that nothing in the (untrusted) source tree is ever followed:
//!
//! * names visited in bytewise order; directories get their metadata after their contents
//!   (so their times are not disturbed by the copy, and read-only directories can be filled);
//! * regular files: `FICLONE` (reflink, shares extents on btrfs/xfs) while the filesystem
//!   accepts it, otherwise `copy_file_range` (falling back to `pread`/`pwrite`); a file with
//!   fewer allocated bytes than its length is copied by the data regions found with
//!   `SEEK_DATA`/`SEEK_HOLE`, so holes stay holes;
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
//!
//! # Two threads, few calls per file, any depth
//!
//! Copying a tree is kernel work that scales across cores even on one tmpfs, so the calling
//! thread walks the source (reads directories, makes directories, symlinks, devices and
//! hardlinks) and hands regular files, in batches of one directory's files, to a worker
//! thread through a short queue; when the queue is full the walker copies the batch itself.
//! The walk is iterative: both trees' directories along the current path sit in
//! [`DirChain`]s, which keep the last 16 open and reopen a parent through `..` (checking its
//! device and inode) on the way back up, so the depth costs neither stack nor descriptors. A
//! batch shares its directory's descriptors with the chains (reference-counted, no `dup`), so
//! they stay open for it whatever the walker closes meanwhile; the walker finishes a directory
//! (owner, attributes, mode, times) on its way back up, or, while batches of its files are
//! still queued, as soon as they are done (at most a few wait, each with its two
//! descriptors); the root last. The first copy of a multiply-linked inode is created while
//! holding the table of copies, so a link made on the other thread always finds its target.
//! The first error stops both threads and is the one reported.
//!
//! A regular file costs `openat` (source), `statx` (its type from `getdents`, checked on the
//! open descriptor), `openat(O_CREAT|O_EXCL)`, `copy_file_range`, `flistxattr`, `futimens`
//! and two `close`s. Left out when they would change nothing: `SEEK_DATA`/`SEEK_HOLE` and the
//! final `ftruncate` for a file whose allocation covers its length; `fchmod` when the file
//! can be created with its final mode (no set-ID or sticky bit, nothing the umask — read from
//! `/proc/self/status` — would remove, owner-writable); `fchown` when the file is created
//! with its owner already (ours, and no set-group-ID directory passing its group on; the same
//! for directories, symlinks and special files).
//!
//! The measurements of these choices (system calls, threads, against `cp -a`) are in
//! `docs/BENCHMARKS.md`, section "layerstore-vfs: copying a layer".

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use layerstore_driver::tree::{self, DirChain, FileId};
use rustix::fs::{Mode, Statx, Timespec, Timestamps};

mod files;
mod walker;

use files::Copier;
use walker::Walker;

/// How [`copy_tree`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// Keep going when `chown` is refused (`EPERM`, `EINVAL`: rootless with too few IDs).
    pub ignore_chown_errors: bool,
    /// Do not try `FICLONE` (measurements, tests).
    pub no_reflink: bool,
    /// Copy everything on the calling thread, without the file-copying worker (measurements,
    /// tests).
    pub single_thread: bool,
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

impl CopyStats {
    fn add(&mut self, other: &CopyStats) {
        self.reflinked += other.reflinked;
        self.copied += other.copied;
        self.bytes_copied += other.bytes_copied;
        self.hardlinks += other.hardlinks;
        self.directories += other.directories;
        self.specials += other.specials;
    }
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

/// Batches of regular files waiting for the worker; when the queue is full the walker copies
/// the batch itself, so neither thread idles. Small, as every queued batch keeps its
/// directory (two descriptors) open.
const QUEUE_LEN: usize = 4;

/// Regular files of one directory handed over at once: one wake-up of the worker per batch,
/// not per file.
const BATCH_LEN: usize = 16;

/// Buffer for `getdents64` (one call reads a typical directory whole).
const DIRENT_BUFFER: usize = 32 << 10;

/// Copies the contents and metadata of directory `src` into the existing, empty directory
/// `dst` (see the module documentation). Neither path's last component may be a symlink.
pub fn copy_tree(src: &Path, dst: &Path, options: CopyOptions) -> Result<CopyStats, CopyError> {
    let at_root = |source| CopyError {
        path: PathBuf::new(),
        op: "open",
        source,
    };
    let src_fd = tree::open_dir(src).map_err(at_root)?;
    let dst_fd = tree::open_dir(dst).map_err(at_root)?;
    copy_tree_at(src_fd.as_fd(), dst_fd.as_fd(), options)
}

/// [`copy_tree`] between two open directories (their descriptors are duplicated, not
/// consumed): nothing is resolved by path.
pub fn copy_tree_at(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    options: CopyOptions,
) -> Result<CopyStats, CopyError> {
    let at_root = |(op, source): (&'static str, io::Error)| CopyError {
        path: PathBuf::new(),
        op,
        source,
    };
    let duplicate = |fd: BorrowedFd<'_>| fd.try_clone_to_owned().map_err(step("dup"));
    let root_stat = tree::stat_fd(src).map_err(step("stat")).map_err(at_root)?;
    let dst_mode = rustix::fs::fstat(dst)
        .map_err(step("stat"))
        .map_err(at_root)?
        .st_mode;
    let shared = Shared {
        options,
        dst_root: duplicate(dst).map_err(at_root)?,
        umask: process_umask(),
        creator: (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
        setgid: dst_mode & Mode::SGID.bits() != 0,
        links: Mutex::new(HashMap::new()),
        failure: Mutex::new(None),
        failed: AtomicBool::new(false),
    };
    let src_chain = DirChain::new(duplicate(src).map_err(at_root)?);
    let dst_chain = DirChain::new(duplicate(dst).map_err(at_root)?);
    let stats = std::thread::scope(|scope| {
        let mut walker = Walker {
            copier: Copier::new(&shared),
            src: src_chain,
            dst: dst_chain,
            path: PathBuf::new(),
            deferred: Vec::new(),
        };
        let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUE_LEN);
        let worker = if options.single_thread {
            None
        } else {
            // Without a worker (spawn refused), the walker copies every file itself.
            std::thread::Builder::new()
                .name("vfs-copy".into())
                .spawn_scoped(scope, || {
                    let mut worker = Copier::new(&shared);
                    worker.run_jobs(jobs);
                    worker.stats
                })
                .ok()
        };
        walker.walk(root_stat, worker.as_ref().map(|_| &queue));
        drop(queue);
        let mut stats = CopyStats::default();
        if let Some(worker) = worker {
            match worker.join() {
                Ok(worker_stats) => stats.add(&worker_stats),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        // Every file is in place: the directories still waiting for theirs, then the root.
        walker.finish_deferred(true);
        walker.finish_root(&root_stat);
        stats.add(&walker.copier.stats);
        stats
    });
    match shared.failure.into_inner() {
        Ok(None) => Ok(stats),
        Ok(Some(e)) => Err(e),
        Err(poisoned) => match poisoned.into_inner() {
            Some(e) => Err(e),
            None => Ok(stats),
        },
    }
}

/// The process's umask, from `/proc/self/status` (reading it with `umask(2)` would change
/// it); `None` when unknown.
fn process_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// What the copying threads share.
struct Shared {
    options: CopyOptions,
    dst_root: OwnedFd,
    umask: Option<u32>,
    /// Our effective user and group: the owner of what we create (unless the directory is
    /// set-group-ID).
    creator: (u32, u32),
    /// Whether the copies are set-group-ID while being filled (inherited from the destination
    /// root), so that what is created in them takes their group.
    setgid: bool,
    /// Source inode of a multiply-linked file → its copy, relative to the destination root.
    /// Held while the first copy is created, so that a link made on another thread always
    /// finds it in place.
    links: Mutex<HashMap<FileId, PathBuf>>,
    /// The first error; the copy stops at it.
    failure: Mutex<Option<CopyError>>,
    failed: AtomicBool,
}

impl Shared {
    fn fail(&self, error: CopyError) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            *failure = Some(error);
        }
        self.failed.store(true, Ordering::Relaxed);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Whether something created in a copy already has the owner `st` asks for.
    fn owner_at_create(&self, st: &Statx) -> bool {
        !self.setgid && (st.stx_uid, st.stx_gid) == self.creator
    }
}

/// A directory's source and destination, as the file-level steps use them.
#[derive(Clone, Copy)]
struct Dir<'d> {
    src: BorrowedFd<'d>,
    dst: BorrowedFd<'d>,
    /// Relative to the roots.
    path: &'d Path,
}

/// A directory's descriptors, shared with the walker's [`DirChain`]s: kept open by the batches
/// of its files queued for the worker, whatever the walker has closed meanwhile.
struct DirFds {
    src: Arc<OwnedFd>,
    dst: Arc<OwnedFd>,
}

/// Regular files of one directory, for the worker.
struct FileJob {
    fds: DirFds,
    /// Held while the job is pending: the directory is finished only once none is left.
    _pending: Arc<()>,
    path: PathBuf,
    names: Vec<CString>,
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
