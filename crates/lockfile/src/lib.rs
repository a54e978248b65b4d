//! Cross-process read-write lock files with last-writer detection, compatible with
//! containers/storage (`pkg/lockfile`), so a Go `containers-storage` process and ours exclude
//! each other on one store and see each other's writes.
//!
//! # The model
//!
//! * **Kernel lock**: `fcntl` POSIX record locks on the whole file (`F_SETLKW`/`F_SETLK`,
//!   `SEEK_SET`, start 0, length 0), `F_WRLCK` for [`LockFile::lock`] and `F_RDLCK` for
//!   [`LockFile::rlock`], exactly what Go uses; `flock(2)` locks would not exclude Go at all.
//!   `EINTR` is retried; `EDEADLK` (the kernel's cross-process deadlock guess) is retried after
//!   10 ms, as Go retries.
//! * **In-process lock**: POSIX record locks belong to the *process*, so two threads would
//!   both "get" them. Every path therefore has one in-process `parking_lot::RwLock` shared by
//!   all handles of that path (a global registry keyed by the canonical path, as Go keeps one
//!   `*LockFile` per path) and a holder count: the first holder opens the fd and takes the
//!   kernel lock, later readers share it, the last one closes the fd.
//! * **The fd-close pitfall**: closing *any* fd of a file drops *all* the process's POSIX
//!   locks on it. Hence the single registry entry per path, and the choice to copy Go's fd
//!   lifetime: the fd is opened at the 0→1 transition and closed at 1→0 (closing is the
//!   release). An unlocked lock file has no fd open, so handles can be opened and dropped at
//!   any time without ever closing an fd that carries a lock, and a lock directory removed
//!   meanwhile is recreated at the next lock, as Go does. Keeping an fd per path for the process
//!   lifetime would hold an fd for every path ever used and make the last handle's drop race
//!   with a new open of the same path. The cost is one `open`/`close` pair per lock cycle
//!   (about 3 µs for lock + unlock here).
//! * **Guards**: [`WriteGuard`] and [`ReadGuard`] unlock on drop and are `Send`. Writing the
//!   token is a method of [`WriteGuard`] and reading it a method of both guards, so "requires
//!   the lock held" is checked by the compiler instead of Go's panics. [`LockFile`] is
//!   `Send + Sync`.
//!
//! # The last-writer token
//!
//! The file's content is 64 bytes written with `pwrite` at offset 0 by every writer
//! ([`WriteGuard::record_write`]): bytes 0..8 `UnixNano` (LE), 8..16 a per-process counter (LE),
//! 16..20 the pid (LE `u32`), 20..64 random bytes (see [`Token`]). A new file is empty until the
//! first write. Readers compare it with what they saw before:
//! [`modified`](ReadGuard::modified) (Go v1.43 `Modified`: per handle, first call true, short
//! read true) or [`modified_since`](ReadGuard::modified_since) with a [`LastWrite`] the caller
//! keeps (Go HEAD `ModifiedSince`), which lets a store record the write *before* changing the
//! data it guards and skip reloads when nothing changed.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), layerstore_lockfile::Error> {
//! use layerstore_lockfile::LockFile;
//!
//! let dir = tempfile::tempdir().expect("temp dir");
//! let lock = LockFile::open_rw(dir.path().join("vfs-layers/layers.lock"))?;
//!
//! let seen = {
//!     let guard = lock.lock()?;
//!     guard.record_write()? // before writing layers.json
//!     // ... write layers.json ...
//! }; // unlocked here
//!
//! let reader = lock.rlock()?;
//! let (_now, changed) = reader.modified_since(&seen)?;
//! assert!(!changed, "nobody wrote since our own write");
//! assert!(lock.try_lock().is_err_and(|e| e.is_would_block()));
//! # Ok(())
//! # }
//! ```
//!
//! # Limitations
//!
//! * Not re-entrant: taking a lock again on a thread that holds a guard of the same path can
//!   deadlock (always for `lock`, for `rlock` when a writer waits in between), as in Go.
//! * One lock per *path* (parent directories and the file itself canonicalised): the same
//!   inode reached through a hard link or a bind mount gets its own entry, and closing that
//!   entry's fd would drop the other's kernel lock. Any code in the process that opens and closes the lock
//!   file directly (e.g. `std::fs::read`) has the same effect: do not.
//! * POSIX locks are advisory and per process: they do not exclude a process that ignores
//!   them, and are not inherited by children (the fds are `O_CLOEXEC`).
//! * Linux (and other Unix) only.

#![forbid(unsafe_code)]

mod error;
mod lock;
mod token;

pub use error::{Access, Error, Holder, Result};
pub use lock::{LockFile, LockState, ReadGuard, WriteGuard};
pub use token::{LastWrite, TOKEN_LEN, TOKEN_RANDOM_LEN, Token};
