//! Options of the store and of its calls.

use std::collections::BTreeMap;
use std::path::PathBuf;

use layerstore_driver::Registry;
use layerstore_model::{Compression, IDMap};
use serde_json::Value;

/// The default cap on a layer's expanded size, [`StoreOptions::max_layer_size`]: 1 TiB, some
/// twenty times the largest layers real images ship (model weights of tens of GB), and small
/// enough to stop a bomb that claims terabytes before it fills a disk of that size.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 1 << 40;

/// How to open a [`LayerStore`](crate::LayerStore).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The graph root (persistent): layer records, tar-split files, the driver's home.
    pub graph_root: PathBuf,
    /// The run root (volatile): `mountpoints.json`.
    pub run_root: PathBuf,
    /// The driver's name (`vfs`, ...), or `auto` / empty to pick one as Go does.
    pub driver: String,
    /// Driver options (`--storage-opt key=value`).
    pub driver_options: Vec<String>,
    /// Open the store read-only (an additional image store): every change is
    /// [`Error::ReadOnly`](crate::Error::ReadOnly), records report `read_only`, incomplete
    /// layers are kept, and mount counts live in this process only.
    pub read_only: bool,
    /// The drivers to choose from; `None` uses [`default_registry`](crate::default_registry).
    pub registry: Option<Registry>,
    /// Refuse a layer whose uncompressed tar stream is larger than this many bytes (a
    /// decompression bomb stops there, and nothing of it stays listed). Default:
    /// [`DEFAULT_MAX_LAYER_SIZE`] (1 TiB); `None`: no cap, as in Go.
    pub max_layer_size: Option<u64>,
}

impl StoreOptions {
    /// Options for a read-write store over `graph_root` and `run_root` with the driver `driver`.
    pub fn new(
        graph_root: impl Into<PathBuf>,
        run_root: impl Into<PathBuf>,
        driver: impl Into<String>,
    ) -> Self {
        StoreOptions {
            graph_root: graph_root.into(),
            run_root: run_root.into(),
            driver: driver.into(),
            driver_options: Vec::new(),
            read_only: false,
            registry: None,
            max_layer_size: Some(DEFAULT_MAX_LAYER_SIZE),
        }
    }

    /// The same options, refusing layers whose uncompressed stream exceeds `bytes` (`None`:
    /// no cap).
    pub fn with_max_layer_size(mut self, bytes: impl Into<Option<u64>>) -> Self {
        self.max_layer_size = bytes.into();
        self
    }

    /// The same options, read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Adds a driver option (`key=value`).
    pub fn driver_option(mut self, option: impl Into<String>) -> Self {
        self.driver_options.push(option.into());
        self
    }
}

/// What a new layer should be ([`LayerStore::create`](crate::LayerStore::create) and
/// [`put`](crate::LayerStore::put)); everything is optional.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// The ID; `None` picks a random 64-hex one.
    pub id: Option<String>,
    /// The parent: ID, name or unique ID prefix.
    pub parent: Option<String>,
    /// Names for the layer (duplicates are dropped).
    pub names: Vec<String>,
    /// SELinux mount label.
    pub mount_label: String,
    /// Per-layer driver options (`size=...`).
    pub storage_opt: BTreeMap<String, String>,
    /// UID mapping of the layer's contents.
    pub uid_map: Vec<IDMap>,
    /// GID mapping of the layer's contents.
    pub gid_map: Vec<IDMap>,
    /// The parent's record when it lives in another layer store (an additional image
    /// store's, read-only): it is used as given and [`LayerOptions::parent`] is ignored. The
    /// driver finds its files through its additional image stores.
    pub parent_layer: Option<layerstore_model::Layer>,
    /// A layer with the same parent whose contents (and tar-split) the new layer copies. Its
    /// files are re-owned from the template's ID mappings to the new layer's (Go's
    /// `UpdateLayerIDMap` after `CreateFromTemplate`).
    pub template: Option<String>,
    /// A read-write (container) layer rather than an image layer.
    pub writeable: bool,
    /// Flags recorded on the new layer.
    pub flags: BTreeMap<String, Value>,
}

impl LayerOptions {
    /// Default options: random ID, base layer, no names.
    pub fn new() -> Self {
        LayerOptions::default()
    }

    /// Sets the ID.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the parent.
    pub fn parent(mut self, parent: impl Into<String>) -> Self {
        self.parent = Some(parent.into());
        self
    }

    /// Adds a name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Makes it a read-write (container) layer.
    pub fn writeable(mut self, writeable: bool) -> Self {
        self.writeable = writeable;
        self
    }
}

/// Options of [`LayerStore::diff`](crate::LayerStore::diff).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// The compression of the produced stream; `None` uses the one the layer was applied
    /// with (as Go does). Only none, gzip and zstd can be produced.
    pub compression: Option<Compression>,
}

/// Options of [`LayerStore::mount`](crate::LayerStore::mount).
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// SELinux mount label; empty uses the layer's.
    pub mount_label: String,
    /// Mount options passed to the driver (`ro`, ...).
    pub options: Vec<String>,
    /// The UID mapping the mount is for (a container's); empty for the layer's own. A driver
    /// that cannot shift IDs at mount time refuses mappings other than the layer's.
    pub uid_map: Vec<IDMap>,
    /// The GID mapping the mount is for; see [`MountOptions::uid_map`].
    pub gid_map: Vec<IDMap>,
    /// Mount without syncing to disk (overlay's `volatile`), for volatile containers.
    pub volatile: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_caps_a_layers_expanded_size_by_default_and_none_lifts_it() {
        let options = StoreOptions::new("/g", "/r", "vfs");
        assert_eq!(options.max_layer_size, Some(1 << 40));
        assert_eq!(
            options.clone().with_max_layer_size(None).max_layer_size,
            None
        );
        assert_eq!(options.with_max_layer_size(4096).max_layer_size, Some(4096));
    }
}
