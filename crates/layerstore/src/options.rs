//! Options of the Store and of its calls.

use std::collections::BTreeMap;
use std::path::PathBuf;

use layerstore_layers::{DEFAULT_MAX_LAYER_SIZE, Registry};
use layerstore_model::IDMap;
use serde_json::Value;

/// How to open a [`Store`](crate::Store) (Go's `StoreOptions`, minus what `storage.conf`
/// resolution decides: the caller passes resolved values).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The graph root (persistent): records, layers, big data. Made absolute.
    pub graph_root: PathBuf,
    /// The run root (volatile): mount counts, container run directories. Made absolute.
    pub run_root: PathBuf,
    /// The driver's name (`vfs`, `overlay`, `overlay2`, `btrfs`), or empty / `auto` to pick
    /// one as Go does.
    pub driver: String,
    /// Driver options (`--storage-opt key=value`), including the additional image stores
    /// (`vfs.imagestore=<dir>`, overlay `imagestore=` / `additionalimagestore=`).
    pub driver_options: Vec<String>,
    /// The UID mapping new layers without a parent and containers without an image get when
    /// none is asked for (storage.conf `remap-uids`); empty for none.
    pub uid_map: Vec<IDMap>,
    /// The GID mapping, as [`StoreOptions::uid_map`].
    pub gid_map: Vec<IDMap>,
    /// Never mount volatile containers volatile (storage.conf `disable-volatile`).
    pub disable_volatile: bool,
    /// The drivers to choose from; `None` is `layerstore_layers::default_registry`.
    pub registry: Option<Registry>,
    /// The cap on a layer's expanded size (see `layerstore_layers::StoreOptions`).
    pub max_layer_size: Option<u64>,
}

impl StoreOptions {
    /// Options for a store over `graph_root` and `run_root` with the driver `driver`.
    pub fn new(
        graph_root: impl Into<PathBuf>,
        run_root: impl Into<PathBuf>,
        driver: impl Into<String>,
    ) -> StoreOptions {
        StoreOptions {
            graph_root: graph_root.into(),
            run_root: run_root.into(),
            driver: driver.into(),
            driver_options: Vec::new(),
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            disable_volatile: false,
            registry: None,
            max_layer_size: Some(DEFAULT_MAX_LAYER_SIZE),
        }
    }

    /// The same options with one more driver option (`key=value`).
    pub fn driver_option(mut self, option: impl Into<String>) -> StoreOptions {
        self.driver_options.push(option.into());
        self
    }
}

/// Go's `HostUIDMapping` / `HostGIDMapping`: keep the host's IDs. A mapping given with it is
/// dropped, and none is inherited (from a parent layer, an image's top layer or the store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostMapping {
    /// Host UIDs.
    pub uid: bool,
    /// Host GIDs.
    pub gid: bool,
}

/// What a new container is made of ([`Store::create_container`](crate::Store::create_container),
/// Go's `CreateContainer` arguments and `ContainerOptions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerOptions {
    /// The container's ID; `None` draws a random unused one.
    pub id: Option<String>,
    /// Its names, held by no other container.
    pub names: Vec<String>,
    /// The image it is made from (ID, name or ID prefix, in the read-write store or an
    /// additional one); empty for none.
    pub image: String,
    /// The ID of its new read-write layer; `None` draws a random one.
    pub layer_id: Option<String>,
    /// Free text.
    pub metadata: String,
    /// The UID mapping asked for (recorded in the container; its layer gets it unless the
    /// driver shifts at mount time).
    pub uid_map: Vec<IDMap>,
    /// The GID mapping asked for.
    pub gid_map: Vec<IDMap>,
    /// Keep host IDs (drops the mappings above).
    pub host_mapping: HostMapping,
    /// A volatile container (the `Volatile` flag; mounted without syncs where the driver can).
    pub volatile: bool,
    /// Flags. `MountLabel` and `ProcessLabel` both or neither (neither records both empty).
    pub flags: BTreeMap<String, Value>,
    /// Mount options recorded as the `MountOpts` flag and used for every mount.
    pub mount_opts: Option<Vec<String>>,
    /// Driver options for the container's layer (`size=...`).
    pub storage_opt: BTreeMap<String, String>,
}
