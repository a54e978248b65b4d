//! The one error type of the driver seam, shared by every driver crate.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a graph driver. Messages name the layer, path or option involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A layer ID that cannot name a directory entry (empty, `.`/`..`, `/` or NUL inside).
    #[error("invalid layer ID {id:?}: {reason}")]
    InvalidId {
        /// The ID as given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The layer has no directory in this driver.
    #[error("layer {id}: not found ({})", path.display())]
    LayerNotFound {
        /// The layer.
        id: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `create` for an ID that already has a directory.
    #[error("layer {id}: already exists ({})", path.display())]
    LayerExists {
        /// The layer.
        id: String,
        /// Its existing directory.
        path: PathBuf,
    },
    /// An I/O operation on a layer's files failed.
    #[error("layer {id}: {op} {}", path.display())]
    LayerIo {
        /// The layer.
        id: String,
        /// What was being done (`copy`, `chown`, `mkdir`, …).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// An I/O operation outside any single layer (driver home, graph root) failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A driver option the driver does not know (Go's wording).
    #[error("{driver} driver does not support {key} options")]
    UnsupportedOption {
        /// The driver.
        driver: String,
        /// The option's key, prefix included.
        key: String,
    },
    /// A driver option that is known but refused (`vfs.mountopt`).
    #[error("{driver} driver {message} (option {option:?})")]
    RejectedOption {
        /// The driver.
        driver: String,
        /// The option as given.
        option: String,
        /// Why it is refused.
        message: &'static str,
    },
    /// An additional image store named by the options (`imagestore=`) is unusable.
    #[error("{driver}: {reason}")]
    ImageStore {
        /// The driver.
        driver: String,
        /// The directory as configured.
        path: PathBuf,
        /// What is wrong with it, in Go's words (`image path "x" is not absolute.  Can not be
        /// relative`, `can't stat imageStore dir /x: stat /x: no such file or directory`).
        reason: String,
    },
    /// A driver option that is not `key=value`, or whose value does not parse.
    #[error("{driver} driver option {option:?}: {reason}")]
    MalformedOption {
        /// The driver.
        driver: String,
        /// The option as given.
        option: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Mount options this driver cannot honour.
    #[error("layer {id}: {driver} driver does not support mount options {options:?}")]
    MountOptions {
        /// The driver.
        driver: String,
        /// The layer being mounted.
        id: String,
        /// The options given.
        options: Vec<String>,
    },
    /// The driver has no staging (`DriverWithDiffer`).
    #[error("{driver} driver does not support staged layers (apply with a differ)")]
    DifferNotSupported {
        /// The driver.
        driver: String,
    },
    /// The driver cannot use additional layer stores.
    #[error("{driver} driver does not support additional layer stores")]
    AdditionalLayersNotSupported {
        /// The driver.
        driver: String,
    },
    /// A path given as a staging directory that this driver did not make.
    #[error("{} is not a staging directory of this driver", path.display())]
    NotStaging {
        /// The path as given.
        path: PathBuf,
    },
    /// A differ failed; the message names the blob entry or file involved.
    #[error("differ: {message}")]
    Differ {
        /// What went wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Per-layer storage options (`--storage-opt size=…`) this driver cannot honour.
    #[error("layer {id}: --storage-opt is not supported for {driver}")]
    StorageOptions {
        /// The driver.
        driver: String,
        /// The layer being created.
        id: String,
    },
    /// The driver cannot work on this graph root (wrong filesystem, missing kernel feature).
    /// Automatic selection skips drivers failing with this.
    #[error("{driver} driver is not supported on {}: {reason}", root.display())]
    NotSupported {
        /// The driver.
        driver: String,
        /// The graph root.
        root: PathBuf,
        /// Why.
        reason: String,
    },
    /// No registered driver has this name.
    #[error("unknown graph driver {name:?} (known: {})", known.join(", "))]
    UnknownDriver {
        /// The name asked for.
        name: String,
        /// The registered names.
        known: Vec<String>,
    },
    /// Automatic selection found state of several drivers in the graph root.
    #[error(
        "{} contains several valid graphdrivers: {}; Please cleanup or explicitly choose storage driver",
        root.display(), drivers.join(", ")
    )]
    SeveralPriorDrivers {
        /// The graph root.
        root: PathBuf,
        /// The drivers whose home directories exist there.
        drivers: Vec<String>,
    },
    /// Automatic selection found no driver that works on the graph root.
    #[error("no supported graph driver for {}: {}", root.display(), reasons.join("; "))]
    NoDriver {
        /// The graph root.
        root: PathBuf,
        /// Why each candidate was refused.
        reasons: Vec<String>,
    },
    /// The archive crate failed while applying, comparing or exporting a layer.
    #[error("layer {id}")]
    Archive {
        /// The layer.
        id: String,
        /// What the archive crate reported (names the entry or path).
        #[source]
        source: layerstore_archive::Error,
    },
    /// The tar-split crate failed (opening a layer's files for reassembly).
    #[error("layer {id}")]
    TarSplit {
        /// The layer.
        id: String,
        /// What the tar-split crate reported.
        #[source]
        source: layerstore_tarsplit::Error,
    },
    /// A uid or gid of a layer's file has no mapping in the given ID maps.
    #[error("layer {id}: {}: {kind} {value} is not mapped", path.display())]
    Unmapped {
        /// The layer.
        id: String,
        /// The file.
        path: PathBuf,
        /// `uid` or `gid`.
        kind: &'static str,
        /// The ID without a mapping.
        value: u32,
    },
}

impl Error {
    /// An [`Error::LayerIo`] from anything convertible to [`std::io::Error`] (rustix's errno too).
    pub fn layer_io(
        id: &str,
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<std::io::Error>,
    ) -> Self {
        Error::LayerIo {
            id: id.to_string(),
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Io`] from anything convertible to [`std::io::Error`].
    pub fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<std::io::Error>,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Archive`] for layer `id`.
    pub fn archive(id: &str, source: layerstore_archive::Error) -> Self {
        Error::Archive {
            id: id.to_string(),
            source,
        }
    }

    /// Whether automatic driver selection should try the next driver after this error.
    pub fn is_not_supported(&self) -> bool {
        matches!(self, Error::NotSupported { .. })
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
            op: "mkdir",
            path: "/s/x".into(),
            source: io(),
        };
        assert_eq!(err.to_string(), "mkdir /s/x");
        assert_eq!(
            err.source().map(ToString::to_string),
            Some(io().to_string())
        );
    }
}
