//! The crate's error type.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a [`LayerStore`](crate::LayerStore) call can fail with. Each message names the
/// layer, name, key or file involved; [`Error::go_text`] gives the exact string Go's
/// containers/storage uses for the same condition, where it has one (for CLI compatibility).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No layer has this ID, name or ID prefix (Go: `layer not known`).
    #[error("layer {0:?}: layer not known")]
    LayerUnknown(String),
    /// The ID prefix matches more than one layer (Go reports `layer not known`).
    #[error("layer {0:?}: layer not known (the prefix matches several layers)")]
    AmbiguousId(String),
    /// A new layer's ID is already a layer's ID or name (Go: `that ID is already in use`).
    #[error("layer ID {0:?}: that ID is already in use")]
    DuplicateId(String),
    /// A new layer's name is already taken (Go: `that name is already in use`).
    #[error("layer name {0:?}: that name is already in use")]
    DuplicateName(String),
    /// A caller-given ID that cannot name files (empty, `.`, `..`, `/` or NUL inside).
    #[error("invalid layer ID {id:?}: {reason}")]
    InvalidId {
        /// The rejected ID.
        id: String,
        /// Why.
        reason: String,
    },
    /// The layer's record (written by another tool: Go accepts any string as an ID) has an ID
    /// the store's rule refuses ([`layerstore_model::validate_store_id`]), so no path is built
    /// from it: its files are neither read nor changed.
    #[error(
        "layer {id:?}: {reason}, so its files are not touched (`check --repair` sets its record aside)"
    )]
    UnsafeId {
        /// The layer's ID.
        id: String,
        /// What the rule says about it.
        reason: String,
    },
    /// The layer is the parent of another (Go: `used by layer <child>: layer has children`).
    #[error("layer {id}: used by layer {child}: layer has children")]
    HasChildren {
        /// The layer that was to be deleted.
        id: String,
        /// One of its children.
        child: String,
    },
    /// A change was asked of a read-only store (Go: `called a write method on a read-only
    /// store`).
    #[error("layer store {}: called a write method on a read-only store", .0.display())]
    ReadOnly(PathBuf),
    /// `layers.json` does not decode. The file is left as it was.
    #[error("loading {path:?}")]
    CorruptLayers {
        /// The file.
        path: PathBuf,
        /// The decoder's error (names line and column, or the bad record).
        #[source]
        source: layerstore_model::Error,
    },
    /// `mountpoints.json` does not decode.
    #[error("loading {path:?}")]
    CorruptMounts {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: layerstore_model::Error,
    },
    /// A read-only store's `layers.json` gives one name to several layers (Go's wording).
    #[error("{}: read-only layer store assigns the same name to multiple layers (name {name:?})", path.display())]
    DuplicateNamesReadOnly {
        /// The file.
        path: PathBuf,
        /// The name given twice.
        name: String,
    },
    /// An empty big-data key (Go: `not a valid name for a big data item`).
    #[error("layer {0}: not a valid name for a big data item")]
    InvalidBigDataName(String),
    /// No big-data item with this key (Go's message).
    #[error("locating item named {key:?} for layer with ID {id:?}: file does not exist")]
    BigDataUnknown {
        /// The layer.
        id: String,
        /// The key.
        key: String,
    },
    /// A diff was asked in a compression that cannot be produced (Go: `unsupported
    /// compression format tar.bz2`).
    #[error("unsupported compression format {0}")]
    UnsupportedCompression(&'static str),
    /// `shutdown` without `force` found a mounted layer (Go: `a layer is mounted: layer is in
    /// use by a container`).
    #[error("layer {0}: a layer is mounted: layer is in use by a container")]
    LayerMounted(String),
    /// The layer's mount count is at its maximum (a hand-edited `mountpoints.json`); one more
    /// mount would wrap it.
    #[error("layer {0}: its mount count cannot go higher")]
    MountCountOverflow(String),
    /// A mount asked for ID mappings that are not the layer's own, and the driver cannot
    /// shift IDs at mount time (Go's message).
    #[error("cannot mount layer {0}: shifting not enabled")]
    ShiftingNotEnabled(String),
    /// The layer was never mounted (Go: `layer is not mounted`).
    #[error("layer {0}: layer is not mounted")]
    NotMounted(String),
    /// The graph driver failed. The layer is named once, even when the driver's own message
    /// starts by naming it.
    #[error("{}", driver_text(id, op, source))]
    Driver {
        /// The layer (or `-` for store-wide calls).
        id: String,
        /// What was being done (`create`, `apply diff`, `mount`, ...).
        op: &'static str,
        /// The driver's error.
        #[source]
        source: Box<layerstore_driver::Error>,
    },
    /// Reading or writing tar-split records failed.
    #[error("layer {id}: tar-split {}", path.display())]
    TarSplit {
        /// The layer.
        id: String,
        /// The tar-split file.
        path: PathBuf,
        /// The codec's error.
        #[source]
        source: Box<layerstore_tarsplit::Error>,
    },
    /// A lock file could not be opened or locked.
    #[error(transparent)]
    Lock(#[from] layerstore_lockfile::Error),
    /// Encoding a record or a generated ID failed.
    #[error(transparent)]
    Model(#[from] layerstore_model::Error),
    /// A file or directory of the store is not of the kind the store keeps there (a FIFO as
    /// `<id>.tar-split.gz`, a symlink as a big-data directory, ...). It is neither followed
    /// nor read.
    #[error("{}: {found} where the store keeps {expected}", path.display())]
    UnexpectedFileType {
        /// The file.
        path: PathBuf,
        /// What the store keeps there (`a regular file`, `a directory`).
        expected: &'static str,
        /// What is there instead (`a FIFO`, `a symlink`, ...).
        found: &'static str,
    },
    /// A file operation of the store failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// `layer <id>: <op>: <driver's message>`, without the driver's own `layer <id>: ` prefix;
/// `<op>: <message>` for store-wide calls (`id` is `-`).
fn driver_text(id: &str, op: &str, source: &layerstore_driver::Error) -> String {
    let message = source.to_string();
    if id == "-" {
        return format!("{op}: {message}");
    }
    let own_prefix = format!("layer {id}: ");
    let rest = message.strip_prefix(&own_prefix).unwrap_or(&message);
    format!("layer {id}: {op}: {rest}")
}

impl Error {
    /// The exact text Go's containers/storage 1.43 uses for this condition, if it has one
    /// (`layer not known`, `that ID is already in use`, ...): what the Go CLI prints.
    pub fn go_text(&self) -> Option<&'static str> {
        Some(match self {
            Error::LayerUnknown(_) | Error::AmbiguousId(_) => "layer not known",
            Error::DuplicateId(_) => "that ID is already in use",
            Error::DuplicateName(_) => "that name is already in use",
            Error::HasChildren { .. } => "layer has children",
            Error::ReadOnly(_) => "called a write method on a read-only store",
            Error::DuplicateNamesReadOnly { .. } => {
                "read-only layer store assigns the same name to multiple layers"
            }
            Error::InvalidBigDataName(_) => "not a valid name for a big data item",
            Error::NotMounted(_) => "layer is not mounted",
            Error::LayerMounted(_) => "a layer is mounted: layer is in use by a container",
            _ => return None,
        })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn driver(id: &str, op: &'static str, source: layerstore_driver::Error) -> Self {
        Error::Driver {
            id: id.to_string(),
            op,
            source: Box::new(source),
        }
    }

    pub(crate) fn tar_split(
        id: &str,
        path: impl Into<PathBuf>,
        source: layerstore_tarsplit::Error,
    ) -> Self {
        Error::TarSplit {
            id: id.to_string(),
            path: path.into(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_message_leaves_the_cause_to_source() {
        let io = || std::io::Error::from_raw_os_error(13);
        let err = Error::Io {
            op: "open",
            path: "/s/x".into(),
            source: io(),
        };
        assert_eq!(err.to_string(), "open /s/x");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(io().to_string())
        );
    }

    #[test]
    fn driver_errors_name_the_layer_once() {
        let source = layerstore_driver::Error::LayerNotFound {
            id: "abc".into(),
            path: "/g/vfs/dir/abc".into(),
        };
        let err = Error::driver("abc", "apply diff", source);
        assert_eq!(
            err.to_string(),
            "layer abc: apply diff: not found (/g/vfs/dir/abc)"
        );
        let source = layerstore_driver::Error::UnknownDriver {
            name: "zfs".into(),
            known: vec!["vfs".into()],
        };
        let text = Error::driver("-", "start the driver", source).to_string();
        assert!(
            text.starts_with("start the driver: unknown graph driver"),
            "{text}"
        );
    }
}
