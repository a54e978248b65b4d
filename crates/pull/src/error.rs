//! [`Error`]: the one error type of this crate. Every message names the source or destination
//! (`oci:/path`, `docker://host/repo:tag`, …) and, where one is involved, the blob.

use std::path::PathBuf;

/// What went wrong while reading or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference that does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// A platform (`os/arch[/variant]`) that does not parse.
    #[error("invalid platform {platform:?}: expected os/arch[/variant]")]
    InvalidPlatform {
        /// The text given.
        platform: String,
    },
    /// A file or directory of a local source or destination could not be used.
    #[error("{location}: {path}")]
    Io {
        /// The source or destination (`oci:/dir`, `oci-archive:/file.tar`, …).
        location: String,
        /// The file involved.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest, index, config, `index.json` or `manifest.json` that is not what it claims to be.
    #[error("{location}: invalid {what}: {reason}")]
    Invalid {
        /// The source or destination.
        location: String,
        /// What was read (`manifest sha256:…`, `index.json`, …).
        what: String,
        /// Why it was refused.
        reason: String,
    },
    /// The image (a tag, an index entry, a platform) is not in the source.
    #[error("{location}: {what} not found")]
    NotFound {
        /// The source.
        location: String,
        /// What was looked for.
        what: String,
    },
    /// A blob whose bytes do not have the digest it was asked for by.
    #[error("{location}: blob {expected}: digest mismatch, the bytes read have digest {actual}")]
    DigestMismatch {
        /// The source or destination.
        location: String,
        /// The digest the blob was asked for by.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },
    /// A blob shorter or longer than its descriptor says.
    #[error("{location}: blob {digest}: size mismatch, expected {expected} bytes, read {actual}{}", if *truncated { " (truncated)" } else { "" })]
    SizeMismatch {
        /// The source or destination.
        location: String,
        /// The blob.
        digest: String,
        /// The size from the descriptor.
        expected: u64,
        /// What was read (so far, when `truncated`).
        actual: u64,
        /// The stream ended before the expected size.
        truncated: bool,
    },
    /// A blob, manifest or config larger than this crate reads into memory.
    #[error("{location}: {what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The source.
        location: String,
        /// What was read.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// Something this crate does not handle (a schema 1 manifest, a non-sha256 blob, …).
    #[error("{location}: unsupported {what}")]
    Unsupported {
        /// The source or destination.
        location: String,
        /// What is not supported.
        what: String,
    },
    /// A registry refused or failed a request (after the bounded retries, for transient errors).
    #[error("{location}: {operation}: {message}")]
    Registry {
        /// The registry reference (`docker://host/repo:tag`).
        location: String,
        /// What was being done (`fetching blob sha256:…`, `logging in`, …).
        operation: String,
        /// The registry's or the network's answer.
        message: String,
        /// The kind of failure, for callers that react to it.
        kind: RegistryErrorKind,
    },
    /// A credentials file (`auth.json`, `~/.docker/config.json`) that cannot be used.
    #[error("credentials file {path}: {reason}")]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The store refused or failed a step of a pull or push.
    #[error("{location}: {what}")]
    Store {
        /// The source or destination.
        location: String,
        /// What was being written or read (`layer <id> (blob sha256:…)`, `image <id>`).
        what: String,
        /// The store's error.
        #[source]
        source: Box<layerstore::Error>,
    },
}

/// The kinds of registry failure a caller may want to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// 404: the repository, tag or blob is not there.
    NotFound,
    /// 401/403: the registry refused the credentials (or asked for some).
    Unauthorized,
    /// The connection failed, was dropped or timed out, and retrying did not help.
    Network,
    /// Anything else the registry answered.
    Other,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error on `path` of `location`.
    pub(crate) fn io(location: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            location: location.to_owned(),
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Store`].
    pub(crate) fn store(
        location: &str,
        what: impl Into<String>,
        source: layerstore::Error,
    ) -> Error {
        Error::Store {
            location: location.to_owned(),
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// An [`Error::Invalid`].
    pub(crate) fn invalid(location: &str, what: impl Into<String>, reason: impl ToString) -> Error {
        Error::Invalid {
            location: location.to_owned(),
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// This error as an `io::Error` (for `Read` implementations), recoverable with
    /// [`Error::from_io`].
    pub(crate) fn into_io(self) -> std::io::Error {
        let kind = match &self {
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => {
                std::io::ErrorKind::InvalidData
            }
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }

    /// The kind of a registry failure, `None` for other errors.
    pub fn registry_kind(&self) -> Option<RegistryErrorKind> {
        match self {
            Error::Registry { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The crate error carried inside an `io::Error` returned by a blob reader, if it is one.
    pub fn from_io(err: &std::io::Error) -> Option<&Error> {
        err.get_ref().and_then(|e| e.downcast_ref::<Error>())
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
        let err = Error::Io {
            location: "oci:/d".into(),
            path: "/d/index.json".into(),
            source: io(),
        };
        assert_eq!(err.to_string(), "oci:/d: /d/index.json");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(io().to_string())
        );
    }
}
