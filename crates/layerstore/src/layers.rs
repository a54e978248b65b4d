//! Layers through the Store: creating them with Go's parent and mapping rules, deleting them
//! only when nothing uses them, and lookups across the read-write and additional layer
//! stores.

use std::fs::File;
use std::io::{Read, Write};

use layerstore_containers::ContainerReader;
use layerstore_containers::ContainerSession;
use layerstore_driver::IdMappings;
use layerstore_images::ImageSession;
use layerstore_layers::{
    Change, DiffOptions, Differ, DifferOptions, DifferOutput, LayerOptions, LayerReader,
    LayerRecords, LayerStore, LayerWriter,
};
use layerstore_model::{Container, Digest, IDMap, Image, Layer};
use layerstore_recordstore::Session;

use crate::error::{Error, Result};
use crate::options::HostMapping;
use crate::store::Store;

/// The layer `key` names in the first of `stores` that knows it (Go's search order: the
/// read-write store, then each additional one), with that store's index.
pub(crate) fn find_layer<'r>(stores: &[LayerRecords<'r>], key: &str) -> Option<(usize, &'r Layer)> {
    stores
        .iter()
        .enumerate()
        .find_map(|(index, records)| records.get(key).ok().map(|layer| (index, layer)))
}

/// Whether the driver can shift these mappings at mount time (Go's `canUseShifting`): it
/// supports shifting and each mapping is empty or one contiguous range.
pub(crate) fn can_use_shifting(store: &LayerStore, uid_map: &[IDMap], gid_map: &[IDMap]) -> bool {
    store.driver().supports_shifting() && is_contiguous(uid_map) && is_contiguous(gid_map)
}

/// Go's `idtools.IsContiguous`: each range starts where the previous one ends, on both sides.
fn is_contiguous(map: &[IDMap]) -> bool {
    map.windows(2).all(|pair| {
        let (a, b) = (&pair[0], &pair[1]);
        u64::from(b.container_id) == u64::from(a.container_id) + u64::from(a.size)
            && u64::from(b.host_id) == u64::from(a.host_id) + u64::from(a.size)
    })
}

/// Checks that layer `key` of the read-write store can be deleted: no layer is its child, no
/// image of the read-write store has it as top layer or ID-mapped copy, no container has it
/// as its layer. Returns its full ID. Go's messages; Go 1.43 compares the raw argument and so
/// lets a name or prefix through, and deletes a mapped copy (store doc 7.2.2).
pub(crate) fn deletable_layer<SI, SC>(
    layers: LayerRecords<'_>,
    images: &ImageSession<SI>,
    containers: &ContainerSession<'_, SC>,
    key: &str,
) -> Result<String>
where
    SI: Session<Image>,
    SC: Session<Container>,
{
    let id = match layers.get(key) {
        Ok(layer) => layer.id.clone(),
        Err(_) => {
            return Err(Error::NotALayer {
                key: key.to_owned(),
            });
        }
    };
    if let Some(child) = layers.layers().find(|l| l.parent == id) {
        return Err(Error::LayerHasChildren {
            layer: id,
            child: child.id.clone(),
        });
    }
    if let Some(image) = images
        .images()
        .find(|i| i.top_layer == id || i.mapped_top_layers.contains(&id))
    {
        return Err(Error::LayerUsedByImage {
            layer: id,
            image: image.id.clone(),
        });
    }
    if let Some(container) = containers.containers().find(|c| c.layer_id == id) {
        return Err(Error::LayerUsedByContainer {
            layer: id,
            container: container.id.clone(),
        });
    }
    Ok(id)
}

/// Deletes layer `id` of the read-write store, in Go's wrapping.
pub(crate) fn delete_checked(layers: &mut LayerWriter<'_>, id: &str) -> Result<()> {
    layers.delete(id).map_err(|e| Error::DeleteLayer {
        layer: id.to_owned(),
        source: Box::new(e.into()),
    })
}

impl Store {
    /// Creates a layer and applies `diff` to it if given (Go's `PutLayer`): the parent
    /// ([`LayerOptions::parent`]: ID, name or prefix) is looked up in the read-write store,
    /// then the additional ones, and may not be a container's layer (`would-be parent layer
    /// is a container`); a layer with no mapping asked for (and no `host` flag) gets its
    /// parent's mappings, a base layer the store's default ones. The layer goes into the
    /// read-write store. Returns it and the bytes of file content written.
    pub fn put_layer(
        &self,
        options: &LayerOptions,
        host: HostMapping,
        diff: Option<&mut (dyn Read + Send)>,
    ) -> Result<(Layer, u64)> {
        let mut layers = self.layers.write_session()?;
        let additional = self.additional_layer_readers()?;
        let containers = self.containers.read()?;
        let options =
            self.put_options(layers.records(), &additional, &containers, options, host)?;
        // `additional` stays read-locked: a parent there cannot go while the layer is made.
        Ok(layers.put(&options, diff)?)
    }

    /// Lets `differ` fill a staging directory for a layer to be made later with
    /// [`Store::put_staged_layer`], with no lock held: several layers can be staged at once,
    /// before their parents exist. The owners are written through the store's default ID
    /// mappings (those a layer without a mapping of its own on a parent without one gets).
    /// A failed differ leaves nothing behind.
    pub fn stage_layer(
        &self,
        differ_options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        let mut differ_options = differ_options.clone();
        differ_options.id_mappings = IdMappings::new(self.uid_map.clone(), self.gid_map.clone());
        Ok(self
            .layers
            .apply_diff_with_differ(None, &differ_options, differ)?)
    }

    /// Creates a layer as [`Store::put_layer`] does (same parent and mapping rules) and moves
    /// the tree [`Store::stage_layer`] staged into it, recording `staged`'s digests, sizes,
    /// compression, owners and tar-split: all or nothing. A layer whose resolved ID mappings
    /// are not the store's default ones (those the tree was staged with) is refused. The
    /// staging directory is used up, or removed on failure.
    pub fn put_staged_layer(
        &self,
        options: &LayerOptions,
        host: HostMapping,
        staged: &DifferOutput,
    ) -> Result<Layer> {
        let resolved = (|| {
            let layers = self.layers.write_session()?;
            let additional = self.additional_layer_readers()?;
            let containers = self.containers.read()?;
            let options =
                self.put_options(layers.records(), &additional, &containers, options, host)?;
            if options.uid_map != self.uid_map || options.gid_map != self.gid_map {
                return Err(Error::StagedMappings {
                    layer: options.id.clone().unwrap_or_default(),
                });
            }
            Ok((layers, additional, options))
        })();
        match resolved {
            Ok((mut layers, _additional, options)) => Ok(layers.put_staged(&options, staged)?),
            Err(e) => {
                let _ = self.layers.cleanup_staging_directory(&staged.target);
                Err(e)
            }
        }
    }

    /// The options [`Store::put_layer`] creates a layer with: the parent resolved in the
    /// read-write store or an additional one (not a container's layer), the ID mappings
    /// inherited (from the parent, else the store's defaults) unless asked for, and dropped
    /// when the driver shifts them at mount time.
    fn put_options(
        &self,
        records: LayerRecords<'_>,
        additional: &[LayerReader<'_>],
        containers: &ContainerReader<'_>,
        options: &LayerOptions,
        host: HostMapping,
    ) -> Result<LayerOptions> {
        let mut options = options.clone();
        if host.uid {
            options.uid_map.clear();
        }
        if host.gid {
            options.gid_map.clear();
        }
        let (inherited_uids, inherited_gids) =
            match options.parent.clone().filter(|p| !p.is_empty()) {
                Some(key) => {
                    let stores: Vec<LayerRecords<'_>> = std::iter::once(records)
                        .chain(additional.iter().map(|r| r.records()))
                        .collect();
                    let (index, parent) =
                        find_layer(&stores, &key).ok_or_else(|| Error::LayerUnknown { key })?;
                    if let Some(container) = containers.by_layer(&parent.id) {
                        return Err(Error::ParentIsContainer {
                            parent: parent.id.clone(),
                            container: container.id.clone(),
                        });
                    }
                    let inherited = (parent.uid_map.clone(), parent.gid_map.clone());
                    if index == 0 {
                        options.parent = Some(parent.id.clone());
                    } else {
                        options.parent_layer = Some(parent.clone());
                    }
                    inherited
                }
                None => (self.uid_map.clone(), self.gid_map.clone()),
            };
        if !host.uid && options.uid_map.is_empty() {
            options.uid_map = inherited_uids;
        }
        if !host.gid && options.gid_map.is_empty() {
            options.gid_map = inherited_gids;
        }
        if can_use_shifting(&self.layers, &options.uid_map, &options.gid_map) {
            options.uid_map.clear();
            options.gid_map.clear();
        }
        Ok(options)
    }

    /// Creates an empty layer ([`Store::put_layer`] without a diff).
    pub fn create_layer(&self, options: &LayerOptions, host: HostMapping) -> Result<Layer> {
        self.put_layer(options, host, None).map(|(layer, _)| layer)
    }

    /// Deletes a layer of the read-write store (Go's `DeleteLayer`), by ID, name or unique
    /// prefix alike (resolved first), unless another layer, an image (its top layer or an
    /// ID-mapped copy of it) or a container uses it. Go's messages: `identifier is not a
    /// layer`, `used by layer <id>: layer has children`, `layer <id> used by image <id>:
    /// layer is in use by an image`, `layer <id> used by container <id>: layer is in use by
    /// a container`.
    pub fn delete_layer(&self, key: &str) -> Result<()> {
        let mut layers = self.layers.write_session()?;
        let images = self.images.write()?;
        let containers = self.containers.write()?;
        let id = deletable_layer(layers.records(), &images, &containers, key)?;
        delete_checked(&mut layers, &id)
    }

    /// Every layer: the read-write store's, then each additional store's (Go's `Layers`).
    pub fn layers(&self) -> Result<Vec<Layer>> {
        let layers = self.layers.read_session()?;
        let additional = self.additional_layer_readers()?;
        Ok(std::iter::once(&layers)
            .chain(&additional)
            .flat_map(|r| r.records().layers().cloned().collect::<Vec<_>>())
            .collect())
    }

    /// The layer with this ID, name or unique prefix, in the read-write store, else the first
    /// additional store that has it (`read_only` set for those).
    pub fn layer(&self, key: &str) -> Result<Layer> {
        self.with_layer(key, |_, layer| Ok(layer.clone()))
    }

    /// Runs `f` on the store's records and the layer `key` names, found as [`Store::layer`]
    /// finds it, under that store's shared lock.
    fn with_layer<T>(
        &self,
        key: &str,
        f: impl FnOnce(LayerRecords<'_>, &Layer) -> Result<T>,
    ) -> Result<T> {
        let layers = self.layers.read_session()?;
        let additional = self.additional_layer_readers()?;
        let stores: Vec<LayerRecords<'_>> = std::iter::once(layers.records())
            .chain(additional.iter().map(|r| r.records()))
            .collect();
        let (index, layer) = find_layer(&stores, key).ok_or_else(|| Error::LayerUnknown {
            key: key.to_owned(),
        })?;
        f(stores[index], layer)
    }

    /// The uncompressed size of the layer's diff (`None` when not recorded), from whichever
    /// store has it.
    pub fn layer_size(&self, key: &str) -> Result<Option<i64>> {
        self.with_layer(key, |_, layer| Ok(layer.known_uncompressed_size()))
    }

    /// The layers whose diff, as received, had this digest: the read-write store's, then
    /// each additional store's.
    pub fn layers_by_compressed_digest(&self, digest: &Digest) -> Result<Vec<Layer>> {
        self.layers_by(|records| records.by_compressed_digest(digest))
    }

    /// The layers whose uncompressed diff had this digest, in every store.
    pub fn layers_by_uncompressed_digest(&self, digest: &Digest) -> Result<Vec<Layer>> {
        self.layers_by(|records| records.by_uncompressed_digest(digest))
    }

    fn layers_by(&self, f: impl Fn(LayerRecords<'_>) -> Vec<Layer>) -> Result<Vec<Layer>> {
        let layers = self.layers.read_session()?;
        let additional = self.additional_layer_readers()?;
        Ok(std::iter::once(&layers)
            .chain(&additional)
            .flat_map(|r| f(r.records()))
            .collect())
    }

    /// The paths layer `to` adds, modifies or deletes relative to `from` (default: its
    /// parent), in whichever store has `to`.
    pub fn changes(&self, from: Option<&str>, to: &str) -> Result<Vec<Change>> {
        self.with_layer(to, |records, layer| Ok(records.changes(from, &layer.id)?))
    }

    /// The size of what layer `to` adds or modifies relative to `from`, in whichever store
    /// has `to`.
    pub fn diff_size(&self, from: Option<&str>, to: &str) -> Result<u64> {
        self.with_layer(to, |records, layer| Ok(records.diff_size(from, &layer.id)?))
    }

    /// Writes the diff of layer `to` (see `LayerStore::diff`), from whichever store has it.
    pub fn diff(
        &self,
        from: Option<&str>,
        to: &str,
        options: &DiffOptions,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let store = self.layer_home(to)?;
        Ok(store.diff(from, to, options, out)?)
    }

    /// Applies a diff to an existing layer of the read-write store.
    pub fn apply_diff(&self, key: &str, diff: &mut (dyn Read + Send)) -> Result<u64> {
        Ok(self.layers.apply_diff(key, diff)?)
    }

    /// The host IDs owning the directories above the layer's mount point that its mappings
    /// do not map (Go's `LayerParentOwners`; read-write store only).
    pub fn layer_parent_owners(&self, key: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let layers = self.layers.read_session()?;
        Ok(layers.records().parent_owners(key)?)
    }

    /// The keys of the layer's big-data items, from whichever store has it.
    pub fn list_layer_big_data(&self, key: &str) -> Result<Vec<String>> {
        self.with_layer(key, |_, layer| Ok(layer.big_data_names.clone()))
    }

    /// A big-data item of the layer, from whichever store has it.
    pub fn layer_big_data(&self, key: &str, item: &str) -> Result<File> {
        Ok(self.layer_home(key)?.big_data(key, item)?)
    }

    /// Stores a big-data item of a layer of the read-write store.
    pub fn set_layer_big_data(&self, key: &str, item: &str, data: &mut dyn Read) -> Result<()> {
        Ok(self.layers.set_big_data(key, item, data)?)
    }

    /// The layer store that has layer `key`: the read-write one, else the first additional
    /// one (for calls a store makes under its own lock).
    fn layer_home(&self, key: &str) -> Result<&LayerStore> {
        if self.layers.exists(key)? {
            return Ok(&self.layers);
        }
        for index in 0..self.additional.len() {
            let store = self.additional_layer_store(index)?;
            if store.exists(key)? {
                return Ok(store);
            }
        }
        Err(Error::LayerUnknown {
            key: key.to_owned(),
        })
    }
}
