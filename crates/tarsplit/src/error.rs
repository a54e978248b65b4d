//! The crate's one error type.

use std::io;

/// Everything that can go wrong while disassembling, encoding, decoding or assembling.
///
/// Messages name the tar offset, the tar-split line or the file involved. Names that are not
/// UTF-8 are shown lossily (`\u{fffd}` for bad bytes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error of the tar stream, the tar-split file or the output.
    #[error("{context}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A tar-split line is not valid JSON (or not an entry object).
    #[error("tar-split line {line}: invalid JSON")]
    Json {
        /// 1-based line number.
        line: u64,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A base64 field of a tar-split line does not decode.
    #[error("tar-split line {line}: invalid base64 in `{field}`")]
    Base64 {
        /// 1-based line number.
        line: u64,
        /// The JSON key.
        field: &'static str,
        /// The decoder's error.
        #[source]
        source: data_encoding::DecodeError,
    },
    /// A tar-split entry is well-formed JSON but breaks the format's rules
    /// (unknown type, position out of sequence, over-long line, bad checksum length...).
    #[error("tar-split line {line}: {reason}")]
    Record {
        /// 1-based line number (0 when the entry did not come from a file).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Two file entries name the same path (after cleaning), which tar-split does not support.
    #[error(
        "duplicate path {name:?} in tar-split entries (duplicates of file paths not supported)"
    )]
    DuplicatePath {
        /// The cleaned path.
        name: String,
    },
    /// A file's content does not have the CRC-64 its entry records.
    #[error("file integrity checksum failed for {name:?}")]
    Checksum {
        /// The entry's name.
        name: String,
    },
    /// A file's content does not have the size its entry records.
    #[error("file {name:?}: {actual} bytes found where the entry records {expected}")]
    Size {
        /// The entry's name.
        name: String,
        /// Size recorded in the entry (for sparse files: the logical size).
        expected: u64,
        /// Size found (a lower bound when the file is longer than expected).
        actual: u64,
    },
    /// The file getter could not give a file's content.
    #[error("file {name:?}")]
    File {
        /// The entry's name.
        name: String,
        /// The getter's error.
        #[source]
        source: io::Error,
    },
    /// A tar header is malformed (bad checksum, bad number, inconsistent extension...).
    #[error("invalid tar header at offset {offset}: {reason}")]
    Header {
        /// Offset of the header block in the tar stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The tar stream ends in the middle of a header, of content or of padding.
    #[error("tar stream truncated at offset {offset} while reading {what}")]
    Truncated {
        /// Offset at which the stream ended.
        offset: u64,
        /// What was being read.
        what: String,
    },
    /// An extension record exceeds its [`Limits`](crate::Limits).
    #[error("{what} at offset {offset} is {size} bytes (or entries), over the limit of {limit}")]
    Limit {
        /// Offset of the header that declared it.
        offset: u64,
        /// Which kind of record.
        what: &'static str,
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An API was called out of order (e.g. `finish` before the end of the archive).
    #[error("misuse: {0}")]
    State(&'static str),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn header(offset: u64, reason: impl Into<String>) -> Self {
        Error::Header {
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn record(line: u64, reason: impl Into<String>) -> Self {
        Error::Record {
            line,
            reason: reason.into(),
        }
    }

    /// Wraps this error into an [`io::Error`], keeping it as the source so callers can
    /// downcast back. The kind is the underlying I/O error's, `UnexpectedEof` for a truncated
    /// stream, `InvalidData` otherwise.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            Error::Io { source, .. } | Error::File { source, .. } => source.kind(),
            Error::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

/// Shows raw name bytes in messages.
pub(crate) fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
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
        let err = Error::Io {
            context: "reading the tar stream".into(),
            source: io(),
        };
        assert_eq!(err.to_string(), "reading the tar stream");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(io().to_string())
        );
    }
}
