//! [`Store`]: opening (Go's `GetStore`), the stores it composes and the sessions its calls
//! hold, in Go's lock order.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use layerstore_containers::{ContainerReader, ContainerStore};
use layerstore_images::{ImageReader, ImageStore};
use layerstore_layers::{LayerReader, LayerRecords, LayerStore};
use layerstore_lockfile::LockFile;
use layerstore_model::{IDMap, Image, Layer};

use crate::error::{Error, Result};
use crate::options::StoreOptions;

/// Both roots of `options`, made absolute; both must be given.
fn absolute_roots(options: &StoreOptions) -> Result<(PathBuf, PathBuf)> {
    if options.graph_root.as_os_str().is_empty() || options.run_root.as_os_str().is_empty() {
        return Err(Error::IncompleteOptions);
    }
    let graph_root = std::path::absolute(&options.graph_root)
        .map_err(|e| Error::io("resolve", &options.graph_root, e))?;
    let run_root = std::path::absolute(&options.run_root)
        .map_err(|e| Error::io("resolve", &options.run_root, e))?;
    Ok((graph_root, run_root))
}

/// What the images of the store at `graph_root` say about their layers (their configs'
/// `rootfs.diff_ids`, under the key c/image stores them: the config's digest, which is the
/// image's ID), for rebuilding parents the driver does not keep. Images whose config is
/// missing or says nothing usable give nothing; so does an `images.json` that does not load.
fn image_chains(graph_root: &Path, driver: &str) -> Vec<layerstore_layers::LayerChain> {
    let Ok(images) = ImageStore::open(graph_root.join(format!("{driver}-images"))) else {
        return Vec::new();
    };
    let Ok(reader) = images.read() else {
        return Vec::new();
    };
    reader
        .images()
        .filter_map(|image| {
            let config = reader
                .big_data(&image.id, &format!("sha256:{}", image.id))
                .ok()?;
            let config: serde_json::Value = serde_json::from_slice(&config).ok()?;
            let diff_ids = config["rootfs"]["diff_ids"]
                .as_array()?
                .iter()
                .map(|d| d.as_str()?.parse().ok())
                .collect::<Option<Vec<layerstore_model::Digest>>>()?;
            Some(layerstore_layers::LayerChain {
                top: image.top_layer.clone(),
                diff_ids,
            })
        })
        .collect()
}

/// The layer store's options for the Store's.
fn layer_options(
    options: &StoreOptions,
    graph_root: &Path,
    run_root: &Path,
) -> layerstore_layers::StoreOptions {
    let mut layer_options =
        layerstore_layers::StoreOptions::new(graph_root, run_root, options.driver.as_str());
    layer_options.driver_options = options.driver_options.clone();
    layer_options.registry = options.registry.clone();
    layer_options.max_layer_size = options.max_layer_size;
    layer_options
}

/// A read-only additional image store (Go's `ROImageStore` and `ROLayerStore` of one
/// directory): its images, and its layers, opened at first use.
#[derive(Debug)]
pub struct AdditionalStore {
    root: PathBuf,
    images: ImageStore,
    layers: OnceLock<LayerStore>,
}

impl AdditionalStore {
    /// The directory, laid out like a graph root (`<root>/<driver>-images`, ...).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its image store (read-only).
    pub fn images(&self) -> &ImageStore {
        &self.images
    }
}

/// The Store of containers/storage: the layer store, the image store and the container
/// store of one graph root and driver, and the additional (read-only) image stores, with
/// Go's cross-kind rules. See the [crate documentation](crate).
///
/// `Send + Sync`: open it once and share it between threads.
#[derive(Debug)]
pub struct Store {
    pub(crate) graph_root: PathBuf,
    pub(crate) run_root: PathBuf,
    pub(crate) driver_options: Vec<String>,
    pub(crate) storage_lock: LockFile,
    pub(crate) userns_lock: LockFile,
    pub(crate) layers: LayerStore,
    pub(crate) images: ImageStore,
    pub(crate) containers: ContainerStore,
    pub(crate) additional: Vec<AdditionalStore>,
    pub(crate) uid_map: Vec<IDMap>,
    pub(crate) gid_map: Vec<IDMap>,
    pub(crate) disable_volatile: bool,
}

impl Store {
    /// Opens the store of `options`, creating what Go's `GetStore` creates: both roots
    /// (0700), `storage.lock`, `userns.lock`, `mounts/`, `tmp/`, the driver's home,
    /// `<driver>-layers/`, `<driver>-images/images.lock`, `<driver>-containers/
    /// containers.lock`, and in the run root `<driver>-layers/`, `<driver>-containers/` and
    /// `<driver>-locks/`; starts the driver; opens the additional image stores the driver
    /// options name (their `images.lock` is created if missing, as Go does; nothing else
    /// there is written). Roots are made absolute.
    ///
    /// The layer records are loaded now (incomplete layers a crash left are deleted, as Go
    /// does); image and container records at their first use. Layers a crashed operation of
    /// this crate left marked (see [`Store::pending_layers`]) are settled now.
    pub fn open(options: StoreOptions) -> Result<Store> {
        let (graph_root, run_root) = absolute_roots(&options)?;
        let layers = LayerStore::open(layer_options(&options, &graph_root, &run_root)).map_err(
            |e| match e {
                layerstore_layers::Error::Driver { id, source, .. } if id == "-" => {
                    Error::DriverStart(source)
                }
                other => other.into(),
            },
        )?;
        let name = layers.driver_name();
        if !options.driver.is_empty() && options.driver != name {
            // Go makes `<graphroot>/<driver as given>` too (`overlay2`: an empty directory).
            std::fs::create_dir_all(graph_root.join(&options.driver))
                .map_err(|e| Error::io("create directory", graph_root.join(&options.driver), e))?;
        }
        let images = ImageStore::open(graph_root.join(format!("{name}-images")))?;
        let containers = ContainerStore::open(
            graph_root.join(format!("{name}-containers")),
            run_root.join(format!("{name}-containers")),
        )?;
        let additional = layers
            .driver()
            .additional_image_stores()
            .into_iter()
            .map(|root| {
                let images = ImageStore::open_read_only(root.join(format!("{name}-images")))?;
                Ok(AdditionalStore {
                    root,
                    images,
                    layers: OnceLock::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let store = Store {
            storage_lock: LockFile::open_rw(graph_root.join("storage.lock"))?,
            userns_lock: LockFile::open_rw(graph_root.join("userns.lock"))?,
            graph_root,
            run_root,
            driver_options: options.driver_options,
            layers,
            images,
            containers,
            additional,
            uid_map: options.uid_map,
            gid_map: options.gid_map,
            disable_volatile: options.disable_volatile,
        };
        store.settle_pending_at_open()?;
        Ok(store)
    }

    /// Rebuilds a `layers.json` that does not load (so that [`Store::open`] fails naming it)
    /// from the driver's directories and tar-split files, keeping the damaged file aside:
    /// see [`LayerStore::rebuild_damaged`]. `None`, and nothing changed, when it loads. For
    /// `check --repair`, before opening the store.
    pub fn rebuild_damaged_layers(
        options: &StoreOptions,
    ) -> Result<Option<layerstore_layers::Rebuilt>> {
        let (graph_root, run_root) = absolute_roots(options)?;
        Ok(LayerStore::rebuild_damaged(
            layer_options(options, &graph_root, &run_root),
            image_chains,
        )?)
    }

    /// The graph root (absolute).
    pub fn graph_root(&self) -> &Path {
        &self.graph_root
    }

    /// The run root (absolute).
    pub fn run_root(&self) -> &Path {
        &self.run_root
    }

    /// The driver's canonical name (`vfs`, `overlay`, `btrfs`), which prefixes the store's
    /// directories.
    pub fn driver_name(&self) -> &'static str {
        self.layers.driver_name()
    }

    /// The driver options the store was opened with.
    pub fn driver_options(&self) -> &[String] {
        &self.driver_options
    }

    /// The driver's status lines (Go's `Status`; vfs: none).
    pub fn status(&self) -> Vec<(String, String)> {
        self.layers.status()
    }

    /// Go's `Version`: an empty list.
    pub fn version(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The read-write layer store, for what only it does (import, diff, staging,
    /// `check`). Its calls lock only `layers.lock`: the Store's cross-kind checks (a layer
    /// in use by an image or a container) are the Store's own calls.
    pub fn layer_store(&self) -> &LayerStore {
        &self.layers
    }

    /// The read-write image store.
    pub fn image_store(&self) -> &ImageStore {
        &self.images
    }

    /// The container store.
    pub fn container_store(&self) -> &ContainerStore {
        &self.containers
    }

    /// The additional (read-only) image stores, in the order the driver options name them.
    pub fn additional_stores(&self) -> &[AdditionalStore] {
        &self.additional
    }

    /// The read-only layer store of additional image store `index`, opened at first use
    /// (sharing the driver, as Go does).
    pub fn additional_layer_store(&self, index: usize) -> Result<&LayerStore> {
        let additional = &self.additional[index];
        if let Some(layers) = additional.layers.get() {
            return Ok(layers);
        }
        let opened = self.layers.open_additional(&additional.root)?;
        // Another thread may have opened it meanwhile; either handle is as good.
        let _ = additional.layers.set(opened);
        Ok(additional
            .layers
            .get()
            .unwrap_or_else(|| unreachable!("just set")))
    }

    /// Read sessions of every additional layer store, in order (taken right after the
    /// read-write layer store's lock, as the lock order says).
    pub(crate) fn additional_layer_readers(&self) -> Result<Vec<LayerReader<'_>>> {
        (0..self.additional.len())
            .map(|index| Ok(self.additional_layer_store(index)?.read_session()?))
            .collect()
    }

    /// Read sessions of every additional image store, in order.
    pub(crate) fn additional_image_readers(&self) -> Result<Vec<ImageReader<'_>>> {
        self.additional
            .iter()
            .map(|additional| Ok(additional.images.read()?))
            .collect()
    }

    /// Read sessions of every store, in Go's lock order: the whole store as of one instant
    /// (see [`StoreReader`]).
    pub fn read(&self) -> Result<StoreReader<'_>> {
        let layers = self.layers.read_session()?;
        let additional_layers = self.additional_layer_readers()?;
        let images = self.images.read()?;
        let additional_images = self.additional_image_readers()?;
        let containers = self.containers.read()?;
        Ok(StoreReader {
            store: self,
            layers,
            additional_layers,
            images,
            additional_images,
            containers,
        })
    }
}

/// Every store of a [`Store`] under its shared lock ([`Store::read`]): layers, additional
/// layers, images, additional images, containers, in Go's lock order, until dropped. Lookups
/// search the read-write store first, then the additional ones in order, as Go does. Not
/// re-entrant: while it lives, this thread must not call other methods of the same Store.
pub struct StoreReader<'a> {
    store: &'a Store,
    layers: LayerReader<'a>,
    additional_layers: Vec<LayerReader<'a>>,
    images: ImageReader<'a>,
    additional_images: Vec<ImageReader<'a>>,
    containers: ContainerReader<'a>,
}

impl std::fmt::Debug for StoreReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("graph_root", &self.store.graph_root)
            .finish_non_exhaustive()
    }
}

impl<'a> StoreReader<'a> {
    /// The store read.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// The layer records of every layer store: the read-write store's first.
    pub fn layer_stores(&self) -> Vec<LayerRecords<'_>> {
        std::iter::once(&self.layers)
            .chain(&self.additional_layers)
            .map(LayerReader::records)
            .collect()
    }

    /// The image sessions of every image store: the read-write store's first.
    pub fn image_stores(&self) -> impl Iterator<Item = &ImageReader<'a>> {
        std::iter::once(&self.images).chain(&self.additional_images)
    }

    /// The container session.
    pub fn containers(&self) -> &ContainerReader<'a> {
        &self.containers
    }

    /// Every layer: the read-write store's, then each additional store's (Go's `Layers`).
    pub fn layers(&self) -> Vec<&Layer> {
        let mut all = Vec::new();
        for records in self.layer_stores() {
            all.extend(records.layers());
        }
        all
    }

    /// Every image: the read-write store's, then each additional store's (Go's `Images`).
    pub fn images(&self) -> Vec<&Image> {
        self.image_stores().flat_map(|r| r.images()).collect()
    }

    /// The layer `key` names: the read-write store's, else the first additional store's.
    pub fn layer(&self, key: &str) -> Option<&Layer> {
        crate::layers::find_layer(&self.layer_stores(), key).map(|(_, layer)| layer)
    }

    /// The image `key` names: the read-write store's, else the first additional store's.
    pub fn image(&self, key: &str) -> Option<&Image> {
        self.image_stores().find_map(|r| r.get(key).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_needs_both_roots() {
        for (graph, run) in [("", "/run/x"), ("/var/x", ""), ("", "")] {
            let err = Store::open(StoreOptions::new(graph, run, "vfs")).unwrap_err();
            assert_eq!(
                err.to_string(),
                "no storage runroot or graphroot specified: missing necessary StoreOptions"
            );
        }
    }

    #[test]
    fn the_store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
        assert_send_sync::<Error>();
    }
}
