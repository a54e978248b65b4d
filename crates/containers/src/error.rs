//! The crate's error type: Go 1.43's messages (`types/errors.go` and the container store's
//! wrappings), each naming the container, name, item or mapping involved.

/// Everything that can go wrong in the container store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No container has this ID, name, layer ID or unique ID prefix.
    #[error("locating container with ID {key:?}: container not known")]
    ContainerUnknown {
        /// What was looked up.
        key: String,
    },
    /// A new container's ID is taken.
    #[error("a container with ID {id:?} already exists: that ID is already in use")]
    DuplicateId {
        /// The ID.
        id: String,
    },
    /// A new container's name is held by another container.
    #[error(
        "the container name {name:?} is already in use by {holder}. You have to remove that container to be able to reuse that name: that name is already in use"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The container holding it.
        holder: String,
    },
    /// ID mappings whose ranges overlap (on the container side or the host side).
    #[error(
        "the specified UID and/or GID {}: invalid mappings specified",
        overlaps(conflicts)
    )]
    OverlappingMappings {
        /// Each offending mapping as `container:host:size`, in the order given.
        conflicts: Vec<String>,
    },
    /// Only one of the two SELinux label flags was given.
    #[error("ProcessLabel and Mountlabel must either not be specified or both specified")]
    HalfLabels,
    /// An empty big-data key.
    #[error("{action}: not a valid name for a big data item")]
    EmptyKey {
        /// What was asked, in Go's words.
        action: &'static str,
    },
    /// The container has no file for this big-data item.
    #[error("locating item named {key:?} for container with ID {id:?}: file does not exist")]
    BigDataMissing {
        /// The container.
        id: String,
        /// The item's key.
        key: String,
    },
    /// Neither the record nor a file gives the item's size.
    #[error("size of item {key:?} of container with ID {id:?}: size is not known")]
    SizeUnknown {
        /// The container.
        id: String,
        /// The item's key.
        key: String,
    },
    /// Neither the record nor a file gives the item's digest.
    #[error("digest of item {key:?} of container with ID {id:?}: could not compute digest of item")]
    DigestOfItemUnknown {
        /// The container.
        id: String,
        /// The item's key.
        key: String,
    },
    /// A caller-given ID that cannot name a directory, or a big-data key that cannot name a
    /// file safely.
    #[error(transparent)]
    Model(#[from] layerstore_model::Error),
    /// The record files, their lock, an item file or a container directory failed.
    #[error(transparent)]
    Records(#[from] layerstore_recordstore::Error),
}

/// Go's wording for one overlapping mapping or several.
fn overlaps(conflicts: &[String]) -> String {
    match conflicts {
        [one] => format!("mapping {one} conflicts with other mappings"),
        many => format!("mappings {} conflict with other mappings", many.join(", ")),
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
