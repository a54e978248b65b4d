//! The crate's one error type.

use std::io;
use std::path::PathBuf;

use crate::compression::Compression;

/// Everything that can go wrong while applying, comparing or exporting a layer.
///
/// Entry-related variants carry the entry's name as found in the archive (lossily decoded when it
/// is not UTF-8), so that a message points at the culprit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The layer uses a compression this build cannot decompress.
    #[error("unsupported compression format {}", .0.extension().unwrap_or("unknown"))]
    UnsupportedCompression(Compression),
    /// Reading or decompressing the input failed.
    #[error("reading the layer input")]
    Input(#[source] io::Error),
    /// The tar stream is malformed (or exceeds a parser limit), or the tar-split sink failed;
    /// raised by the tar-split parser.
    #[error(transparent)]
    Tar(#[from] layerstore_tarsplit::Error),
    /// The uncompressed stream, or the sizes its files declare (a sparse file's expanded size),
    /// add up to more than `ApplyOptions::max_uncompressed_size`.
    #[error("the uncompressed layer exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// An entry would lie deeper than `ApplyOptions::max_depth` directories below the target,
    /// counted on the tree as it is (through any symlinks its name went through).
    #[error(
        "entry {entry:?}: {depth} directories deep (at least), over the limit of {limit} \
         (ApplyOptions::max_depth)"
    )]
    TooDeep {
        /// The entry's name.
        entry: String,
        /// Its depth below the target (the limit plus one when the climb stopped there).
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// An entry's name (or link target, or whiteout) would land outside the target directory.
    #[error("entry {entry:?}: {what} {target:?} is outside of the target directory")]
    Breakout {
        /// The entry's name.
        entry: String,
        /// What escaped: "path", "hardlink target", "whiteout".
        what: &'static str,
        /// The offending path.
        target: String,
    },
    /// An entry's name is unusable (empty, NUL byte, `.`/`..` as a whiteout name, ...).
    #[error("entry {entry:?}: invalid name: {reason}")]
    InvalidName {
        /// The entry's name.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The same path occurs twice in one archive (tar-split could not give both back).
    #[error("entry {entry:?}: duplicate path in the archive")]
    DuplicatePath {
        /// The entry's name.
        entry: String,
    },
    /// An entry type this crate does not extract.
    #[error("entry {entry:?}: unhandled tar header type {type_flag}")]
    UnsupportedEntryType {
        /// The entry's name.
        entry: String,
        /// The tar type flag byte.
        type_flag: u8,
    },
    /// A device node entry met `DevicePolicy::Fail`, or could not be created under
    /// `DevicePolicy::Create`.
    #[error("entry {entry:?}: device node not allowed: {reason}")]
    DeviceNotAllowed {
        /// The entry's name.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A UID or GID has no mapping (container → host, or host → container on export).
    #[error("entry {entry:?}: {kind} {id} has no mapping")]
    UnmappedId {
        /// The entry's name.
        entry: String,
        /// "uid" or "gid".
        kind: &'static str,
        /// The ID that could not be mapped.
        id: u64,
    },
    /// A filesystem operation on an entry failed.
    #[error("entry {entry:?}: {op}")]
    Entry {
        /// The entry's name.
        entry: String,
        /// The operation that failed, e.g. "mkdirat".
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation on a path outside of any archive entry failed (opening the target,
    /// walking a tree for `changes`/`export`).
    #[error("{}: {op}", path.display())]
    Path {
        /// The path involved.
        path: PathBuf,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A worker thread of the apply pipeline panicked.
    #[error("an apply pipeline thread panicked")]
    WorkerPanicked,
    /// A zstd:chunked blob's footer or table of contents is malformed, out of bounds or does
    /// not match its checksum; the message says which.
    #[error("{message}")]
    ZstdChunked {
        /// What is wrong, naming the entry or offsets involved.
        message: String,
        /// The read or decode that failed, if one did.
        #[source]
        source: Option<io::Error>,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Lossy, printable form of a raw entry name, for error messages.
pub(crate) fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Error {
    pub(crate) fn entry(entry: &[u8], op: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Entry {
            entry: show(entry),
            op,
            source: source.into(),
        }
    }

    pub(crate) fn path(
        path: impl Into<PathBuf>,
        op: &'static str,
        source: impl Into<io::Error>,
    ) -> Self {
        Error::Path {
            path: path.into(),
            op,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(13)
    }

    #[test]
    fn the_message_leaves_the_cause_to_source() {
        let err = Error::Path {
            path: "/s/x".into(),
            op: "open",
            source: io(),
        };
        assert_eq!(err.to_string(), "/s/x: open");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(io().to_string())
        );
    }
}
