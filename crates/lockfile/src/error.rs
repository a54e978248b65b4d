//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

/// Whether a lock file was opened for reading and writing or only for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Opened `O_RDWR`: may be locked exclusively and written ([`crate::LockFile::open_rw`]).
    ReadWrite,
    /// Opened `O_RDONLY`: shared locks only ([`crate::LockFile::open_ro`]).
    ReadOnly,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::ReadWrite => "read-write",
            Access::ReadOnly => "read-only",
        })
    }
}

/// Who holds the lock that made a `try_*` call fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// Another thread of this process (or this thread, through another guard).
    ThisProcess,
    /// Another process holds a conflicting `fcntl` lock on the file.
    OtherProcess,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Holder::ThisProcess => "this process",
            Holder::OtherProcess => "another process",
        })
    }
}

/// Everything that can go wrong with a lock file. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path cannot name a lock file (no file name, or the current directory is unknown).
    #[error("invalid lock file path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Creating the missing parent directories failed.
    #[error("creating the directory of lock file {path:?}")]
    CreateDir {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Opening (or creating) the lock file failed.
    #[error("opening lock file {path:?}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Something other than a regular file is at the lock file's path (a symlink, a FIFO, a
    /// directory, ...). It is not followed, and a FIFO is not waited on.
    #[error("lock file {path:?} is not a regular file ({found})")]
    NotRegular {
        /// The lock file.
        path: PathBuf,
        /// What is there (`a symlink`, `a FIFO`, ...).
        found: &'static str,
    },
    /// The path is already open in this process with the other access mode (Go: `lock "<p>" is
    /// not a read-only lock` and vice versa).
    #[error(
        "lock file {path:?} is already open {existing} in this process, cannot open it {requested}"
    )]
    AccessMismatch {
        /// The lock file.
        path: PathBuf,
        /// The access asked for.
        requested: Access,
        /// The access it is open with.
        existing: Access,
    },
    /// An exclusive lock (or a write) was asked of a read-only lock file.
    #[error("lock file {path:?} is read-only: it can only be locked for reading")]
    ReadOnly {
        /// The lock file.
        path: PathBuf,
    },
    /// A non-blocking `try_lock`/`try_rlock` found the lock held in a conflicting mode.
    #[error("lock file {path:?} is held by {holder}; locking it would block")]
    WouldBlock {
        /// The lock file.
        path: PathBuf,
        /// Who holds it.
        holder: Holder,
    },
    /// The `fcntl` lock or unlock call failed.
    #[error("fcntl lock of {path:?} failed")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Reading the last-writer token failed.
    #[error("reading the last-writer token of {path:?}")]
    ReadToken {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Generating or writing the last-writer token failed (a short write is `ENOSPC`, as in Go).
    #[error("writing the last-writer token of {path:?}")]
    WriteToken {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `fstat` of the lock file failed.
    #[error("stat of lock file {path:?}")]
    Stat {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether this is [`Error::WouldBlock`], the "try again later" outcome of `try_lock` and
    /// `try_rlock`.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::WouldBlock { .. })
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(13)
    }

    #[test]
    fn the_message_leaves_the_cause_to_source() {
        let err = Error::Open {
            path: "/s/l".into(),
            source: io(),
        };
        assert_eq!(err.to_string(), "opening lock file \"/s/l\"");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(io().to_string())
        );
    }
}
