//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong with a record store. Every message names the file, record ID
/// or name involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on a file or directory of the store failed.
    #[error("{action} {path:?}")]
    Io {
        /// What was being done, e.g. `reading`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A path of the store is a symbolic link where a file or directory of the store belongs;
    /// it is never followed.
    #[error("{path:?} is a symbolic link; the store does not follow links in its own files")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A file of the store is something else than a regular file (a FIFO, a device, a
    /// directory); it is not read.
    #[error("{path:?} is a {found}, not a regular file; refusing to read it")]
    NotRegularFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        found: &'static str,
    },
    /// A record file is not a JSON array (truncated, garbage). It is never overwritten.
    #[error("loading {path:?}")]
    Decode {
        /// The record file.
        path: PathBuf,
        /// The decoder's error, naming line and column.
        #[source]
        source: serde_json::Error,
    },
    /// Encoding a record failed (only possible for values JSON cannot hold).
    #[error("encoding {kind} {id:?} for {path:?}")]
    Encode {
        /// What the record is (`image`, `container`).
        kind: &'static str,
        /// The record's ID.
        id: String,
        /// The file it was to be written to.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A lock file could not be opened, locked, read or written.
    #[error(transparent)]
    Lock(#[from] layerstore_lockfile::Error),
    /// A write was asked of a read-only store (an additional image store).
    #[error(
        "not allowed to modify the {kind} store at {path:?}: called a write method on a read-only store"
    )]
    ReadOnly {
        /// What the records are.
        kind: &'static str,
        /// The record file.
        path: PathBuf,
    },
    /// A read-only store holds one name in two records; it cannot be repaired (Go refuses to
    /// open such a store the same way).
    #[error(
        "read-only {kind} store assigns the same name to multiple {kind}s: {name:?} in {path:?}"
    )]
    DuplicateNamesReadOnly {
        /// What the records are.
        kind: &'static str,
        /// The name held twice.
        name: String,
        /// The record file.
        path: PathBuf,
    },
    /// A new record's ID is already used by another record of the store.
    #[error("{kind} ID {id:?} is already used in {path:?}: that ID is already in use")]
    DuplicateId {
        /// What the records are.
        kind: &'static str,
        /// The ID.
        id: String,
        /// The record file.
        path: PathBuf,
    },
    /// A new record's name is held by another record of the store.
    #[error(
        "{kind} name {name:?} is already held by {kind} {holder:?}: that name is already in use"
    )]
    NameInUse {
        /// What the records are.
        kind: &'static str,
        /// The name.
        name: String,
        /// The ID of the record holding it.
        holder: String,
    },
    /// No record has this ID.
    #[error("no {kind} with ID {id:?} in {path:?}")]
    Unknown {
        /// What the records are.
        kind: &'static str,
        /// The ID looked for.
        id: String,
        /// The record file.
        path: PathBuf,
    },
    /// A record cannot be stored as it is (an image digest that does not validate).
    #[error("{kind} {id:?} is not usable: {reason}")]
    InvalidRecord {
        /// What the record is.
        kind: &'static str,
        /// Its ID.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An ID that cannot name a directory, or a big-data key that cannot name a file safely.
    #[error(transparent)]
    Model(#[from] layerstore_model::Error),
    /// A name given to [`Dir`](crate::Dir) is not a single path component.
    #[error("{name:?} is not a file name in {dir:?}")]
    InvalidName {
        /// The directory.
        dir: PathBuf,
        /// The refused name.
        name: String,
    },
    /// A directory being removed holds a mount point (another filesystem); what is mounted
    /// there is left alone.
    #[error("{path:?} is on another filesystem (a mount point); not removing anything below it")]
    CrossesMount {
        /// The mount point.
        path: PathBuf,
    },
    /// Other processes kept changing the records while this one tried to repair them.
    #[error("the records of {path:?} kept changing while they were being repaired")]
    Unstable {
        /// The record file.
        path: PathBuf,
    },
}

impl Error {
    /// An [`Error::Io`], or [`Error::Symlink`] when the system refused to follow a link
    /// (`ELOOP` from `O_NOFOLLOW`).
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            Error::Symlink { path }
        } else {
            Error::Io {
                action,
                path,
                source,
            }
        }
    }

    /// Whether this is the system's "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
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
        let err = Error::Io {
            action: "reading",
            path: "/s/x.json".into(),
            source: io(),
        };
        assert_eq!(err.to_string(), "reading \"/s/x.json\"");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(io().to_string())
        );
    }
}
