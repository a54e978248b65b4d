//! The crate's error type.

/// Everything that can go wrong in this crate. Each message names the value (ID, digest,
/// timestamp, file) involved; the store adds the path of the file it was reading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A layer ID that cannot be used as a file name component.
    #[error("invalid layer ID {id:?}: {reason}")]
    InvalidId {
        /// The rejected ID.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A digest string that is not `algorithm:hex` with a supported algorithm.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The rejected digest text.
        digest: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A timestamp Go's `time.Time` JSON decoding would not accept, or one outside the
    /// years 0 to 9999 that Go can write.
    #[error("invalid timestamp {input:?}: {reason}")]
    InvalidTimestamp {
        /// The rejected text (or a description of the rejected value).
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A compression name that is not one of Go's.
    #[error("unknown compression name {0:?} (expected none, bzip2, gzip, xz or zstd)")]
    UnknownCompression(String),
    /// A JSON document (`layers.json`, `mountpoints.json`) that does not decode. The source's
    /// message names the line and column.
    #[error("decoding {document}")]
    Decode {
        /// Which document was being decoded, e.g. `layers.json`.
        document: &'static str,
        /// 1-based line of the error (0 if unknown).
        line: usize,
        /// 1-based column of the error (0 if unknown).
        column: usize,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A record of `layers.json` that decodes but is unusable.
    #[error("record {index} of {document}")]
    Record {
        /// Which document the record is in, e.g. `layers.json`.
        document: &'static str,
        /// 0-based position of the record in the array.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: Box<Error>,
    },
    /// Encoding JSON failed (only possible when writing to a failing writer).
    #[error("encoding {document}")]
    Encode {
        /// Which document was being encoded.
        document: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A big-data key that cannot be stored under the file name Go gives it (see
    /// [`crate::check_big_data_key`]).
    #[error("{owner} big-data key {key:?} cannot be stored safely: {reason}")]
    InvalidBigDataKey {
        /// The kind of record the item belongs to.
        owner: crate::BigDataOwner,
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A digest an image is found by is not valid (Go 1.43 then refuses to open the store).
    #[error(transparent)]
    ImageDigest(Box<ImageDigestError>),
    /// The operating system's random number generator failed.
    #[error("reading random bytes for a new layer ID")]
    Random(#[source] rustix::io::Errno),
    /// `generate_id_unused` found every candidate taken.
    #[error("no unused layer ID found after {0} random candidates")]
    NoUnusedId(usize),
}

impl Error {
    /// Wraps a serde_json decoding error, keeping its position.
    pub(crate) fn decode(document: &'static str, source: serde_json::Error) -> Self {
        Error::Decode {
            document,
            line: source.line(),
            column: source.column(),
            source,
        }
    }
}

/// An image's `digest`, or the digest of one of its manifests, that go-digest refuses: Go's
/// loader fails with this message and opens nothing.
#[derive(Debug, thiserror::Error)]
#[error(
    "computing digests for image with ID {id:?} ({}): {}: {reason}",
    go_list(names),
    validating(digest, key.as_deref())
)]
pub struct ImageDigestError {
    /// The image's ID.
    pub id: String,
    /// The image's names.
    pub names: Vec<String>,
    /// The rejected digest text.
    pub digest: String,
    /// The manifest item it is the digest of; `None` for the image's `digest`.
    pub key: Option<String>,
    /// go-digest's reason, e.g. `invalid checksum digest length`.
    pub reason: &'static str,
}

/// A list as Go's `%v` prints a `[]string`: `[a b]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// What was being validated, in Go's words.
fn validating(digest: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("validating digest {digest:?} for big data item {key:?}"),
        None => format!("validating image digest {digest:?}"),
    }
}

/// Shorthand for `Result<T, layerstore_model::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_message_leaves_the_cause_to_source() {
        let decode = || serde_json::from_str::<u32>("x").unwrap_err();
        let err = Error::decode("layers.json", decode());
        assert_eq!(err.to_string(), "decoding layers.json");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(decode().to_string())
        );
        let record = Error::Record {
            document: "layers.json",
            index: 2,
            source: Box::new(err),
        };
        assert_eq!(record.to_string(), "record 2 of layers.json");
        assert_eq!(
            crate::error_chain(&record),
            format!(
                "record 2 of layers.json: decoding layers.json: {}",
                decode()
            )
        );
    }
}
