//! The crate's error type.
//!
//! What the Store itself refuses is said in Go 1.43's exact words (`store.go`,
//! `types/errors.go`), which the `layerstore` command prints and scripts match; where Go's
//! words name no ID, the variant still carries what was looked up ([`Error::key`]). Errors of
//! the layer, image and container stores pass through with their own messages, which name
//! the layer, image, container or file.

use std::path::PathBuf;

/// Everything a [`Store`](crate::Store) call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Both roots are empty (Go's `GetStore`).
    #[error("no storage runroot or graphroot specified: missing necessary StoreOptions")]
    IncompleteOptions,
    /// No layer (in any layer store the call searches) has this ID, name or ID prefix.
    #[error("layer not known")]
    LayerUnknown {
        /// What was looked up.
        key: String,
    },
    /// A staged layer whose ID mappings (inherited from its parent or asked for) are not the
    /// store's default ones, which [`Store::stage_layer`](crate::Store::stage_layer) staged
    /// its owners with.
    #[error("layer {layer}: staged with the store's default ID mappings, but it needs others")]
    StagedMappings {
        /// The layer's ID (empty when a random one was to be drawn).
        layer: String,
    },
    /// No image (in any image store the call searches) has this ID, name or ID prefix.
    #[error("locating image with ID {key:?}: image not known")]
    ImageUnknown {
        /// What was looked up.
        key: String,
    },
    /// No container has this ID, name, layer ID or ID prefix.
    #[error("container not known")]
    ContainerUnknown {
        /// What was looked up.
        key: String,
    },
    /// A layer an image or container refers to (its top, mapped or container layer, or an
    /// ancestor) is in no layer store (sizes).
    #[error("locating layer with ID {layer:?}: layer not known")]
    MissingLayer {
        /// The image or container.
        owner: String,
        /// The missing layer.
        layer: String,
    },
    /// A layer operation's argument is not a layer of the read-write store.
    #[error("identifier is not a layer")]
    NotALayer {
        /// What was looked up.
        key: String,
    },
    /// An image operation's argument is not an image of the read-write store.
    #[error("identifier is not an image")]
    NotAnImage {
        /// What was looked up.
        key: String,
    },
    /// A container operation's argument is not a container.
    #[error("identifier is not a container")]
    NotAContainer {
        /// What was looked up.
        key: String,
    },
    /// The argument is no layer, image or container (metadata).
    #[error("identifier is not a layer, image, or container")]
    NotAnId {
        /// What was looked up.
        key: String,
    },
    /// The layer is another layer's parent.
    #[error("used by layer {child}: layer has children")]
    LayerHasChildren {
        /// The layer that was to be deleted.
        layer: String,
        /// One of its children.
        child: String,
    },
    /// The layer is an image's top layer or one of its ID-mapped copies.
    #[error("layer {layer} used by image {image}: layer is in use by an image")]
    LayerUsedByImage {
        /// The layer.
        layer: String,
        /// The image.
        image: String,
    },
    /// The layer is a container's read-write layer.
    #[error("layer {layer} used by container {container}: layer is in use by a container")]
    LayerUsedByContainer {
        /// The layer.
        layer: String,
        /// The container.
        container: String,
    },
    /// A container was made from the image (Go names the last one in `containers.json`).
    #[error("image used by {container}: image is in use by a container")]
    ImageUsedByContainer {
        /// The image.
        image: String,
        /// The container.
        container: String,
    },
    /// A new layer's parent is a container's layer.
    #[error("would-be parent layer is a container")]
    ParentIsContainer {
        /// The would-be parent.
        parent: String,
        /// The container whose layer it is.
        container: String,
    },
    /// Shutting down while a layer is mounted, without `force`.
    #[error("a layer is mounted: layer is in use by a container")]
    LayerMounted {
        /// A mounted layer.
        layer: String,
    },
    /// An image is mounted read-only; `rw` cannot be asked (Go's text, leading space
    /// included).
    #[error(" \"rw\" option not supported")]
    ReadWriteImageMount {
        /// The image.
        image: String,
    },
    /// Neither the record nor a file gives the size of a big-data item.
    #[error("size is not known")]
    SizeUnknown {
        /// The image or container looked up.
        key: String,
        /// The item's key.
        item: String,
    },
    /// No record gives a valid digest of a big-data item.
    #[error("could not compute digest of item")]
    DigestUnknown {
        /// The image or container looked up.
        key: String,
        /// The item's key.
        item: String,
    },
    /// Making the ID-mapped copy of an image's top layer failed.
    #[error("creating an ID-mapped copy of layer {layer:?}")]
    MappedCopy {
        /// The layer copied.
        layer: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// Recording an ID-mapped copy in its image failed (the copy is deleted again).
    #[error("registering ID-mapped layer with image {image:?}")]
    RegisterMappedLayer {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// Deleting a layer that passed every check failed.
    #[error("delete layer {layer}")]
    DeleteLayer {
        /// The layer.
        layer: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// An additional image store's directory is unusable (overlay refuses relative paths
    /// and missing directories).
    #[error("additional image store {path:?}: {reason}")]
    AdditionalStore {
        /// The directory as configured.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The driver could not start (an unknown driver, an option it refuses, a filesystem it
    /// cannot work on): its own message, as Go prints it.
    #[error(transparent)]
    DriverStart(Box<layerstore_driver::Error>),
    /// The layer store (layers, the driver, tar-split) failed.
    #[error(transparent)]
    Layers(layerstore_layers::Error),
    /// The image store failed.
    #[error(transparent)]
    Images(#[from] layerstore_images::Error),
    /// The container store failed.
    #[error(transparent)]
    Containers(layerstore_containers::Error),
    /// A record file or its lock failed.
    #[error(transparent)]
    Records(#[from] layerstore_recordstore::Error),
    /// `storage.lock` or `userns.lock` failed.
    #[error(transparent)]
    Lock(#[from] layerstore_lockfile::Error),
    /// A caller-given ID or key that cannot name a file.
    #[error(transparent)]
    Model(#[from] layerstore_model::Error),
    /// A file operation of the Store itself (container directories) failed.
    #[error("{action} {path:?}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// What was looked up, for the errors whose Go text does not name it (`layer not
    /// known`, `identifier is not a layer`, ...).
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::LayerUnknown { key }
            | Error::ImageUnknown { key }
            | Error::ContainerUnknown { key }
            | Error::NotALayer { key }
            | Error::NotAnImage { key }
            | Error::NotAContainer { key }
            | Error::NotAnId { key } => Some(key),
            _ => None,
        }
    }

    /// Whether this is "not found" for a layer, image or container (or the argument is
    /// none of the kinds asked for).
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            Error::LayerUnknown { .. }
                | Error::ImageUnknown { .. }
                | Error::ContainerUnknown { .. }
                | Error::NotALayer { .. }
                | Error::NotAnImage { .. }
                | Error::NotAContainer { .. }
                | Error::NotAnId { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// A layer that is not found is Go's bare `layer not known` at the Store level.
impl From<layerstore_layers::Error> for Error {
    fn from(e: layerstore_layers::Error) -> Error {
        match e {
            layerstore_layers::Error::LayerUnknown(key)
            | layerstore_layers::Error::AmbiguousId(key) => Error::LayerUnknown { key },
            other => Error::Layers(other),
        }
    }
}

/// A container that is not found is Go's bare `container not known` at the Store level.
impl From<layerstore_containers::Error> for Error {
    fn from(e: layerstore_containers::Error) -> Error {
        match e {
            layerstore_containers::Error::ContainerUnknown { key } => {
                Error::ContainerUnknown { key }
            }
            other => Error::Containers(other),
        }
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
            path: "/s/x".into(),
            source: io(),
        };
        assert_eq!(err.to_string(), "reading \"/s/x\"");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(io().to_string())
        );
    }
}
