//! Lock files: the per-path registry, the in-process lock and the kernel `fcntl` lock.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Access, Error, Holder, Result};
use crate::token::{LastWrite, TOKEN_LEN, Token};

/// One entry per lock file path in use in this process (Go keeps one `*LockFile` per path in a
/// global map for the same reason): POSIX record locks belong to the process, so every handle
/// on a path must share one in-process lock and one kernel lock.
static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// How long to wait before retrying an `F_SETLKW` the kernel refused with `EDEADLK` (Go
/// sleeps 10 ms and retries after any error).
const DEADLOCK_RETRY_DELAY: Duration = Duration::from_millis(10);

/// What this process holds on one lock file, across all its handles and threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Nobody in this process holds the lock.
    Unlocked,
    /// Held for reading by `holders` guards (the kernel lock is one `F_RDLCK`).
    Read {
        /// Number of live read guards in this process.
        holders: usize,
    },
    /// Held for writing by one guard (the kernel lock is an `F_WRLCK`).
    Write,
}

/// The kernel side of the lock, protected by [`Shared::state`].
enum KernelLock {
    /// No fd is open and no `fcntl` lock is held.
    Unlocked,
    /// A reader is blocked in `F_SETLKW` with the state mutex released; other readers wait for
    /// it on [`Shared::kernel_changed`] instead of stacking a second fd.
    Acquiring,
    /// `F_RDLCK` held through this fd, the only fd this process has open on the file.
    HeldShared(OwnedFd),
    /// `F_WRLCK` held through this fd, the only fd this process has open on the file.
    HeldExclusive(OwnedFd),
}

struct State {
    kernel: KernelLock,
    /// Live guards: readers, or 1 for the writer. The kernel lock is taken at 0→1 and the fd
    /// closed (releasing it) at 1→0.
    holders: usize,
}

/// Everything shared by the handles of one path in this process.
struct Shared {
    /// The registry key: absolute, with the parent directory (and the file, once it exists)
    /// canonicalised.
    path: PathBuf,
    access: Access,
    /// Excludes threads of this process from each other; the kernel lock cannot.
    in_process: RwLock<()>,
    state: Mutex<State>,
    kernel_changed: Condvar,
}

/// A lock file of containers/storage: a cross-process reader-writer lock that also records
/// who wrote last.
///
/// Handles are cheap to open and `Send + Sync`; every handle on the same path in this process
/// shares one in-process lock and one kernel lock, so two handles exclude each other like two
/// threads do. Each handle remembers the last-writer value it last saw, for
/// [`WriteGuard::modified`]/[`ReadGuard::modified`].
pub struct LockFile {
    shared: Arc<Shared>,
    /// What this handle last read or wrote; `None` before the first look (so the first
    /// `modified()` is true, as in Go).
    last_seen: Mutex<Option<LastWrite>>,
}

impl fmt::Debug for LockFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockFile")
            .field("path", &self.shared.path)
            .field("access", &self.shared.access)
            .finish_non_exhaustive()
    }
}

impl LockFile {
    /// Opens a read-write lock file, creating it (mode 0644 before umask) and its missing
    /// parent directories (0700) as Go's `GetLockFile` does.
    ///
    /// Fails with [`Error::AccessMismatch`] if this process has the path open read-only.
    pub fn open_rw(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path.as_ref(), Access::ReadWrite)
    }

    /// Opens a read-only lock file (`O_RDONLY`): it can be locked for reading only.
    ///
    /// As in Go, the file is opened with `O_CREAT` too, so a missing lock file is created when
    /// the directory is writable; on a read-only filesystem the file must exist.
    /// Fails with [`Error::AccessMismatch`] if this process has the path open read-write.
    pub fn open_ro(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path.as_ref(), Access::ReadOnly)
    }

    fn open(path: &Path, access: Access) -> Result<Self> {
        let key = registry_key(path)?;
        let mut registry = REGISTRY.lock();
        let existing = registry.get(&key).and_then(Weak::upgrade);
        let shared = match existing {
            Some(shared) if shared.access != access => {
                return Err(Error::AccessMismatch {
                    path: key,
                    requested: access,
                    existing: shared.access,
                });
            }
            Some(shared) => shared,
            None => {
                // Create the file and report errors now rather than at the first lock. Closing
                // this fd cannot drop a lock of ours: no live handle of this path exists, and an
                // unused path has no fd open (fds live only while locked).
                drop(open_lock_fd(&key, access)?);
                let shared = Arc::new(Shared {
                    path: key.clone(),
                    access,
                    in_process: RwLock::new(()),
                    state: Mutex::new(State {
                        kernel: KernelLock::Unlocked,
                        holders: 0,
                    }),
                    kernel_changed: Condvar::new(),
                });
                registry.retain(|_, weak| weak.strong_count() > 0);
                registry.insert(key, Arc::downgrade(&shared));
                shared
            }
        };
        drop(registry);
        Ok(LockFile {
            shared,
            last_seen: Mutex::new(None),
        })
    }

    /// The lock file's path (absolute, directories canonicalised).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Whether the file was opened read-write ([`LockFile::open_rw`]) or read-only.
    pub fn access(&self) -> Access {
        self.shared.access
    }

    /// What this process (all handles and threads) currently holds on this file.
    pub fn state(&self) -> LockState {
        let state = self.shared.state.lock();
        match state.kernel {
            KernelLock::HeldShared(_) => LockState::Read {
                holders: state.holders,
            },
            KernelLock::HeldExclusive(_) => LockState::Write,
            KernelLock::Unlocked | KernelLock::Acquiring => LockState::Unlocked,
        }
    }

    /// Takes the lock for writing, waiting for other threads and processes (`F_SETLKW`
    /// `F_WRLCK`). Not re-entrant: locking again from the thread holding any guard of this
    /// path deadlocks, as in Go.
    pub fn lock(&self) -> Result<WriteGuard<'_>> {
        self.require_read_write()?;
        let in_process = self.shared.in_process.write();
        self.shared.acquire_exclusive(Blocking::Wait)?;
        Ok(WriteGuard {
            file: self,
            _in_process: in_process,
        })
    }

    /// Takes the lock for writing if that needs no waiting (`F_SETLK`); otherwise fails with
    /// [`Error::WouldBlock`] naming who holds it.
    pub fn try_lock(&self) -> Result<WriteGuard<'_>> {
        self.require_read_write()?;
        let in_process = self
            .shared
            .in_process
            .try_write()
            .ok_or_else(|| self.would_block(Holder::ThisProcess))?;
        self.shared.acquire_exclusive(Blocking::Fail)?;
        Ok(WriteGuard {
            file: self,
            _in_process: in_process,
        })
    }

    /// Takes the lock for reading, waiting for writers in this and other processes. The first
    /// reader of the process takes the kernel `F_RDLCK`; later ones share it.
    ///
    /// Like Go's `RLock`, a second `rlock` on a thread that already reads can deadlock if
    /// another thread is waiting to write in between (the in-process lock is fair).
    pub fn rlock(&self) -> Result<ReadGuard<'_>> {
        let in_process = self.shared.in_process.read();
        self.shared.acquire_shared(Blocking::Wait)?;
        Ok(ReadGuard {
            file: self,
            _in_process: in_process,
        })
    }

    /// Takes the lock for reading if that needs no waiting; otherwise fails with
    /// [`Error::WouldBlock`] naming who holds it.
    pub fn try_rlock(&self) -> Result<ReadGuard<'_>> {
        let in_process = self
            .shared
            .in_process
            .try_read()
            .ok_or_else(|| self.would_block(Holder::ThisProcess))?;
        self.shared.acquire_shared(Blocking::Fail)?;
        Ok(ReadGuard {
            file: self,
            _in_process: in_process,
        })
    }

    fn require_read_write(&self) -> Result<()> {
        match self.shared.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(Error::ReadOnly {
                path: self.shared.path.clone(),
            }),
        }
    }

    fn would_block(&self, holder: Holder) -> Error {
        Error::WouldBlock {
            path: self.shared.path.clone(),
            holder,
        }
    }

    /// Reads up to 64 bytes at offset 0 (Go's `GetLastWrite`).
    fn read_last_write(&self) -> Result<LastWrite> {
        let mut buf = [0u8; TOKEN_LEN];
        let len = self
            .shared
            .with_fd(|fd| retry_eintr(|| rustix::io::pread(fd, &mut buf[..], 0)))
            .map_err(|source| Error::ReadToken {
                path: self.shared.path.clone(),
                source,
            })?;
        Ok(LastWrite::from_read(buf, len))
    }

    fn record_write(&self) -> Result<LastWrite> {
        let write_error = |source| Error::WriteToken {
            path: self.shared.path.clone(),
            source,
        };
        let token = Token::generate().map_err(write_error)?;
        let bytes = token.to_bytes();
        let written = self
            .shared
            .with_fd(|fd| retry_eintr(|| rustix::io::pwrite(fd, &bytes, 0)))
            .map_err(write_error)?;
        if written != TOKEN_LEN {
            // Go reports a short write as ENOSPC.
            return Err(write_error(io::Error::from(Errno::NOSPC)));
        }
        let last_write = LastWrite::from_token(&token);
        *self.last_seen.lock() = Some(last_write);
        Ok(last_write)
    }

    fn modified(&self) -> Result<bool> {
        let current = self.read_last_write()?;
        let mut last_seen = self.last_seen.lock();
        // v1.43: a short read (e.g. a never-written file) always counts as modified.
        let modified = !current.is_complete() || *last_seen != Some(current);
        *last_seen = Some(current);
        Ok(modified)
    }

    fn modified_since(&self, previous: &LastWrite) -> Result<(LastWrite, bool)> {
        let current = self.read_last_write()?;
        Ok((current, current != *previous))
    }

    fn touched_since(&self, when: SystemTime) -> Result<bool> {
        let stat = self
            .shared
            .with_fd(|fd| rustix::fs::fstat(fd).map_err(io::Error::from))
            .map_err(|source| Error::Stat {
                path: self.shared.path.clone(),
                source,
            })?;
        // `st_mtime_nsec` is i64, u64 or u32 depending on the architecture and backend.
        #[allow(clippy::useless_conversion)]
        let nanos = Duration::from_nanos(u64::try_from(stat.st_mtime_nsec).unwrap_or(0));
        let seconds = Duration::from_secs(stat.st_mtime.unsigned_abs());
        let mtime = if stat.st_mtime >= 0 {
            UNIX_EPOCH.checked_add(seconds)
        } else {
            UNIX_EPOCH.checked_sub(seconds)
        }
        .and_then(|t| t.checked_add(nanos));
        // An mtime SystemTime cannot represent counts as touched, as Go answers when in doubt.
        Ok(mtime.is_none_or(|mtime| when < mtime))
    }
}

/// Whether a `try_*` or a blocking acquisition is wanted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Blocking {
    Wait,
    Fail,
}

impl Shared {
    fn error_lock(&self, source: io::Error) -> Error {
        Error::Lock {
            path: self.path.clone(),
            source,
        }
    }

    fn open_fd(&self) -> Result<OwnedFd> {
        open_lock_fd(&self.path, self.access)
    }

    /// Opens the fd and takes `F_WRLCK`. The caller holds the in-process write lock, so no
    /// other thread of ours touches the kernel lock meanwhile.
    fn acquire_exclusive(&self, blocking: Blocking) -> Result<()> {
        let fd = self.open_fd()?;
        match blocking {
            Blocking::Wait => {
                fcntl_wait(fd.as_fd(), FlockOperation::LockExclusive)
                    .map_err(|e| self.error_lock(e))?;
            }
            Blocking::Fail => {
                if !fcntl_try(fd.as_fd(), FlockOperation::NonBlockingLockExclusive)
                    .map_err(|e| self.error_lock(e))?
                {
                    return Err(Error::WouldBlock {
                        path: self.path.clone(),
                        holder: Holder::OtherProcess,
                    });
                }
            }
        }
        let mut state = self.state.lock();
        state.kernel = KernelLock::HeldExclusive(fd);
        state.holders = 1;
        Ok(())
    }

    /// Joins the readers of this process, taking `F_RDLCK` if it is the first. The caller holds
    /// the in-process read lock.
    fn acquire_shared(&self, blocking: Blocking) -> Result<()> {
        let mut state = self.state.lock();
        loop {
            match state.kernel {
                KernelLock::HeldShared(_) => {
                    state.holders += 1;
                    return Ok(());
                }
                KernelLock::Unlocked => break,
                // Another reader of ours is waiting for the kernel lock: another process
                // holds it for writing.
                KernelLock::Acquiring if blocking == Blocking::Fail => {
                    return Err(Error::WouldBlock {
                        path: self.path.clone(),
                        holder: Holder::OtherProcess,
                    });
                }
                // HeldExclusive cannot coexist with our in-process read lock; waiting is the
                // safe answer should it ever be seen.
                KernelLock::Acquiring | KernelLock::HeldExclusive(_) => {
                    self.kernel_changed.wait(&mut state);
                }
            }
        }
        // First reader: open the fd and take F_RDLCK.
        let acquired = match blocking {
            Blocking::Fail => self.open_fd().and_then(|fd| {
                // F_SETLK does not block, so the state mutex may stay held.
                match fcntl_try(fd.as_fd(), FlockOperation::NonBlockingLockShared) {
                    Ok(true) => Ok(fd),
                    Ok(false) => Err(Error::WouldBlock {
                        path: self.path.clone(),
                        holder: Holder::OtherProcess,
                    }),
                    Err(e) => Err(self.error_lock(e)),
                }
            }),
            Blocking::Wait => {
                state.kernel = KernelLock::Acquiring;
                // Wait for the kernel without the state mutex, so `try_rlock` and `state()`
                // on other threads stay non-blocking.
                MutexGuard::unlocked(&mut state, || {
                    let fd = self.open_fd()?;
                    fcntl_wait(fd.as_fd(), FlockOperation::LockShared)
                        .map_err(|e| self.error_lock(e))?;
                    Ok(fd)
                })
            }
        };
        let result = match acquired {
            Ok(fd) => {
                state.kernel = KernelLock::HeldShared(fd);
                state.holders = 1;
                Ok(())
            }
            Err(e) => {
                state.kernel = KernelLock::Unlocked;
                Err(e)
            }
        };
        self.kernel_changed.notify_all();
        result
    }

    /// Drops one holder; the last one closes the fd, which releases the kernel lock (Go does
    /// the same: `Unlock` closes the fd at 1→0).
    fn release(&self) {
        let mut state = self.state.lock();
        state.holders = state.holders.saturating_sub(1);
        if state.holders == 0 {
            // Dropping the OwnedFd closes it.
            state.kernel = KernelLock::Unlocked;
            self.kernel_changed.notify_all();
        }
    }

    /// Runs `f` with the fd that holds the kernel lock. Only called through a guard, so the
    /// fd exists; the error is a safety net, not an expected outcome.
    fn with_fd<T>(&self, f: impl FnOnce(BorrowedFd<'_>) -> io::Result<T>) -> io::Result<T> {
        let state = self.state.lock();
        match &state.kernel {
            KernelLock::HeldShared(fd) | KernelLock::HeldExclusive(fd) => f(fd.as_fd()),
            KernelLock::Unlocked | KernelLock::Acquiring => {
                Err(io::Error::other("the lock is not held by this process"))
            }
        }
    }
}

/// An exclusive (write) lock on a [`LockFile`], released when dropped.
///
/// Writing the last-writer token ([`WriteGuard::record_write`], [`WriteGuard::touch`]) is only
/// possible through this guard, so "requires the write lock" is checked by the compiler.
pub struct WriteGuard<'a> {
    file: &'a LockFile,
    _in_process: RwLockWriteGuard<'a, ()>,
}

/// A shared (read) lock on a [`LockFile`], released when dropped.
pub struct ReadGuard<'a> {
    file: &'a LockFile,
    _in_process: RwLockReadGuard<'a, ()>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        // Release the kernel lock before the in-process lock (dropped after this body), so
        // the next thread of ours finds the state idle.
        self.file.shared.release();
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.file.shared.release();
    }
}

impl fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGuard")
            .field("path", &self.file.shared.path)
            .finish()
    }
}

impl fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard")
            .field("path", &self.file.shared.path)
            .finish()
    }
}

/// Methods available under either kind of lock.
macro_rules! held_lock_methods {
    () => {
        /// The lock file this guard holds.
        pub fn lock_file(&self) -> &'a LockFile {
            self.file
        }

        /// Releases the lock (the same as dropping the guard).
        pub fn unlock(self) {
            drop(self)
        }

        /// Reads the current last-writer value (up to 64 bytes at offset 0; Go's
        /// `GetLastWrite`). An empty lock file gives an empty value.
        pub fn get_last_write(&self) -> Result<LastWrite> {
            self.file.read_last_write()
        }

        /// Whether the file's last-writer value differs from `previous`, returning the current
        /// value to remember for next time (Go's `ModifiedSince`). Does not change what
        /// [`modified`](Self::modified) compares with.
        pub fn modified_since(&self, previous: &LastWrite) -> Result<(LastWrite, bool)> {
            self.file.modified_since(previous)
        }

        /// Whether someone else wrote since this handle last looked, then remembers the current
        /// value (Go v1.43 `Modified`). True on a handle's first call, and always true while the
        /// file holds fewer than 64 bytes. This handle's own writes are not "modified".
        pub fn modified(&self) -> Result<bool> {
            self.file.modified()
        }

        /// Whether the lock file's mtime is later than `when` (Go's `TouchedSince`).
        pub fn touched_since(&self, when: SystemTime) -> Result<bool> {
            self.file.touched_since(when)
        }
    };
}

impl<'a> WriteGuard<'a> {
    held_lock_methods!();

    /// Generates a new last-writer token and writes it at offset 0 (Go's `RecordWrite`),
    /// returning it. The handle remembers it, so its own write is not seen by
    /// [`modified`](Self::modified). Call it *before* changing the data the lock guards, so a
    /// crash half-way is still seen as a change by others (the v1.47 order).
    pub fn record_write(&self) -> Result<LastWrite> {
        self.file.record_write()
    }

    /// [`record_write`](Self::record_write) without the value (Go v1.43 `Touch`).
    pub fn touch(&self) -> Result<()> {
        self.file.record_write().map(drop)
    }
}

impl<'a> ReadGuard<'a> {
    held_lock_methods!();
}

/// The registry key of `path`: absolute, parent canonicalised (created 0700 if missing), and
/// the file name kept as given (a symlinked lock file is refused by the open, not followed).
fn registry_key(path: &Path) -> Result<PathBuf> {
    let invalid = |reason| Error::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| invalid("it does not end in a file name"))?;
    let absolute =
        std::path::absolute(path).map_err(|_| invalid("the current directory is unknown"))?;
    let parent = absolute
        .parent()
        .ok_or_else(|| invalid("it has no parent directory"))?;
    let canonical_parent = match std::fs::canonicalize(parent) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_parent_dirs(path, parent)?;
            std::fs::canonicalize(parent).map_err(|source| Error::Open {
                path: path.to_path_buf(),
                source,
            })?
        }
        Err(source) => {
            return Err(Error::Open {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // The file itself is not resolved: a symlink there is refused when opened, never
    // followed (a token written through it would land in whatever it points to).
    Ok(canonical_parent.join(file_name))
}

fn create_parent_dirs(path: &Path, parent: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|source| Error::CreateDir {
            path: path.to_path_buf(),
            source,
        })
}

/// Opens the lock file as Go's `openLock`: `O_CREAT|O_CLOEXEC`, `O_RDWR` or `O_RDONLY`, mode
/// 0644; on `ENOENT` the parent directories are created (0700) and the open retried once.
///
/// Unlike Go, the open follows no symlink in the last component and does not wait
/// (`O_NOFOLLOW|O_NONBLOCK`: a FIFO put in the lock file's place would block the read-only open
/// forever), and anything but a regular file is [`Error::NotRegular`].
fn open_lock_fd(path: &Path, access: Access) -> Result<OwnedFd> {
    let flags = OFlags::CREATE
        | OFlags::CLOEXEC
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK
        | OFlags::NOCTTY
        | match access {
            Access::ReadWrite => OFlags::RDWR,
            Access::ReadOnly => OFlags::RDONLY,
        };
    let mode = Mode::RUSR | Mode::WUSR | Mode::RGRP | Mode::ROTH;
    let open = || retry_eintr(|| rustix::fs::open(path, flags, mode));
    let open_error = |source: io::Error| match source.raw_os_error() {
        Some(code) if code == Errno::LOOP.raw_os_error() => Error::NotRegular {
            path: path.to_path_buf(),
            found: "a symlink",
        },
        _ => Error::Open {
            path: path.to_path_buf(),
            source,
        },
    };
    let fd = match open() {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                create_parent_dirs(path, parent)?;
            }
            open().map_err(open_error)?
        }
        Err(e) => return Err(open_error(e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::Stat {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let found = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => {
            // Reads and locks of a regular file never block anyway; clear the flag so the
            // blocking `F_SETLKW` semantics stay as they were.
            rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| Error::Open {
                path: path.to_path_buf(),
                source: e.into(),
            })?;
            return Ok(fd);
        }
        rustix::fs::FileType::Fifo => "a FIFO",
        rustix::fs::FileType::Directory => "a directory",
        rustix::fs::FileType::Socket => "a socket",
        rustix::fs::FileType::CharacterDevice => "a character device",
        rustix::fs::FileType::BlockDevice => "a block device",
        _ => "a file of unknown type",
    };
    Err(Error::NotRegular {
        path: path.to_path_buf(),
        found,
    })
}

/// Retries a syscall interrupted by a signal.
fn retry_eintr<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => {}
            other => return other.map_err(io::Error::from),
        }
    }
}

/// `F_SETLKW` on the whole file, retrying on `EINTR` and, after a short sleep, on the
/// `EDEADLK` the kernel reports when two processes wait on each other's locks.
fn fcntl_wait(fd: BorrowedFd<'_>, operation: FlockOperation) -> io::Result<()> {
    loop {
        match rustix::fs::fcntl_lock(fd, operation) {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(Errno::DEADLK) => std::thread::sleep(DEADLOCK_RETRY_DELAY),
            Err(e) => return Err(e.into()),
        }
    }
}

/// `F_SETLK` on the whole file: `Ok(false)` when another process holds a conflicting lock.
fn fcntl_try(fd: BorrowedFd<'_>, operation: FlockOperation) -> io::Result<bool> {
    loop {
        match rustix::fs::fcntl_lock(fd, operation) {
            Ok(()) => return Ok(true),
            // POSIX allows either errno for a conflicting lock.
            Err(Errno::AGAIN | Errno::ACCESS) => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
