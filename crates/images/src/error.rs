//! The crate's error type: Go 1.43's messages (`types/errors.go` and the image store's
//! wrappings), each naming the image, name, digest, item or file involved.

use std::path::PathBuf;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No image has this ID, name or unique ID prefix.
    #[error("locating image with ID {key:?}: image not known")]
    ImageUnknown {
        /// What was looked up.
        key: String,
    },
    /// No image is found by this digest.
    #[error("locating image with digest {digest:?}: image not known")]
    DigestUnknown {
        /// The digest looked up.
        digest: String,
    },
    /// A new image's ID is taken.
    #[error("an image with ID {id:?} already exists: that ID is already in use")]
    DuplicateId {
        /// The ID.
        id: String,
    },
    /// A new image's name is held by another image (creation never takes names).
    #[error(
        "image name {name:?} is already associated with image {holder:?}: that name is already in use"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The image holding it.
        holder: String,
    },
    /// A new image's digest does not validate.
    #[error("validating digests for new image: validating image digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The digest given.
        digest: String,
        /// go-digest's reason, e.g. `invalid checksum digest format`.
        reason: &'static str,
    },
    /// A write asked of a read-only (additional) image store.
    #[error("not allowed to {action} at {path:?}: called a write method on a read-only store")]
    ReadOnly {
        /// What was asked, in Go's words (`create new images`, `delete images`, ...).
        action: &'static str,
        /// The store's `images.json`.
        path: PathBuf,
    },
    /// An empty big-data key.
    #[error("{action}: not a valid name for a big data item")]
    EmptyKey {
        /// What was asked, in Go's words (`can't set empty name for image big data item`).
        action: &'static str,
    },
    /// The image has no file for this big-data item.
    #[error(
        "locating item named {key:?} for image with ID {id:?} (consider removing the image to resolve the issue): file does not exist"
    )]
    BigDataMissing {
        /// The image.
        id: String,
        /// The item's key.
        key: String,
    },
    /// Neither the record nor a file gives the item's size.
    #[error("size of item {key:?} of image with ID {id:?}: size is not known")]
    SizeUnknown {
        /// The image.
        id: String,
        /// The item's key.
        key: String,
    },
    /// The record has no digest for the item.
    #[error("digest of item {key:?} of image with ID {id:?}: could not compute digest of item")]
    DigestOfItemUnknown {
        /// The image.
        id: String,
        /// The item's key.
        key: String,
    },
    /// A manifest item was set without a way to digest manifests.
    #[error(
        "digesting manifest {key:?} of image with ID {id:?}: no manifest digest callback provided: could not compute digest of item"
    )]
    NoManifestDigester {
        /// The image.
        id: String,
        /// The item's key.
        key: String,
    },
    /// The caller's manifest digester failed.
    #[error("digesting manifest {key:?} of image with ID {id:?}: {reason}")]
    ManifestDigest {
        /// The image.
        id: String,
        /// The item's key.
        key: String,
        /// The digester's error.
        reason: String,
    },
    /// A caller-given ID that cannot name a directory, or a big-data key that cannot name a
    /// file safely.
    #[error(transparent)]
    Model(#[from] layerstore_model::Error),
    /// The record file, its lock or an item file failed.
    #[error(transparent)]
    Records(#[from] layerstore_recordstore::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
