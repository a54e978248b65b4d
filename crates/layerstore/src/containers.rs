//! Containers through the Store: creation (the read-write layer on the image's top layer or
//! an ID-mapped copy of it), deletion with the layer, lookups, big data, directories, sizes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use layerstore_containers::{ContainerWriter, NewContainer};
use layerstore_images::{ImageReader, ImageSession, ImageWriter};
use layerstore_layers::{LayerOptions, LayerRecords, LayerWriter};
use layerstore_model::{
    Container, IDMap, Image, Layer, MOUNT_LABEL_FLAG, PROCESS_LABEL_FLAG, generate_id_unused,
};
use layerstore_recordstore::Session;
use serde_json::Value;

use crate::crash;
use crate::error::{Error, Result};
use crate::layers::{can_use_shifting, delete_checked, find_layer};
use crate::options::{ContainerOptions, HostMapping};
use crate::pending::{self, PendingOp};
use crate::store::Store;

/// The mappings a container asks for, after Go drops those the host flags cancel.
struct Wanted<'o> {
    uid_map: &'o [IDMap],
    gid_map: &'o [IDMap],
    host: HostMapping,
}

/// Where the image of a new container was found.
enum Home<'a, 'w> {
    /// The read-write image store (ID-mapped copies can be recorded there).
    ReadWrite(&'w mut ImageWriter<'a>),
    /// An additional image store (read-only: no copy is made).
    Additional,
}

impl Store {
    /// Creates a container (Go's `CreateContainer`): its read-write layer first, in the
    /// read-write layer store, then its record.
    ///
    /// * Image: looked up in the read-write image store, then each additional one
    ///   (`locating image with ID "<key>": image not known`). Without an image, or with an
    ///   image without layers, the layer has no parent and gets the store's default mappings
    ///   when none are asked for (Go 1.43 forgets them for a layerless image).
    /// * Parent: the image's top layer or one of its ID-mapped copies whose mappings are the
    ///   ones asked for (`mapped-layers`); when none is, and the image is in the read-write
    ///   store with its top layer in the read-write layer store, an ID-mapped copy of the top
    ///   layer is made and recorded in the image (as Go does). Otherwise the container's layer
    ///   sits on the top layer and carries the mappings itself.
    /// * Mappings: with none asked for (and no host flag), the layer inherits the parent's;
    ///   the record keeps what was asked. Drivers that shift at mount time get unmapped layers.
    /// * Holds `userns.lock` when mappings are asked for, then layers, images and
    ///   containers locked in Go's order until the end.
    ///
    /// Unlike Go, the record's checks (ID, names, overlapping mappings, labels) come before
    /// any layer is made, and the new layers are marked until the record is saved, so a crash
    /// leaves none that nothing uses unmarked (see the crate documentation).
    pub fn create_container(&self, options: ContainerOptions) -> Result<Container> {
        let mut options = options;
        if options.host_mapping.uid {
            options.uid_map.clear();
        }
        if options.host_mapping.gid {
            options.gid_map.clear();
        }
        let _userns = if options.uid_map.is_empty() && options.gid_map.is_empty() {
            None
        } else {
            Some(self.userns_lock.lock()?)
        };
        let with_image = !options.image.is_empty();
        let mut layers = self.layers.write_session()?;
        let additional_layers = self.additional_layer_readers()?;
        let mut images = with_image.then(|| self.images.write()).transpose()?;
        let additional_images = if with_image {
            self.additional_image_readers()?
        } else {
            Vec::new()
        };
        let mut containers = self.containers.write()?;

        let found = match images.as_mut() {
            Some(images) => Some(find_image(images, &additional_images, &options.image)?),
            None => None,
        };
        let id = match &options.id {
            Some(id) => id.clone(),
            None => generate_id_unused(|c| containers.records().contains_id(c))?,
        };
        let mut flags = options.flags.clone();
        let mut record = NewContainer {
            id: Some(id.clone()),
            names: options.names.clone(),
            image_id: found
                .as_ref()
                .map(|(image, _)| image.id.clone())
                .unwrap_or_default(),
            layer_id: String::new(),
            metadata: options.metadata.clone(),
            uid_map: options.uid_map.clone(),
            gid_map: options.gid_map.clone(),
            flags: flags.clone(),
            mount_opts: options.mount_opts.clone(),
            volatile: options.volatile,
        };
        containers.check_new(&record)?;
        if !flags.contains_key(MOUNT_LABEL_FLAG) {
            flags.insert(MOUNT_LABEL_FLAG.to_owned(), Value::from(""));
            flags.insert(PROCESS_LABEL_FLAG.to_owned(), Value::from(""));
        }
        let mount_label = flags
            .get(MOUNT_LABEL_FLAG)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        record.flags = flags;

        let wanted = Wanted {
            uid_map: &options.uid_map,
            gid_map: &options.gid_map,
            host: options.host_mapping,
        };
        let mut layer_options = LayerOptions {
            id: options.layer_id.clone(),
            mount_label,
            storage_opt: options.storage_opt.clone(),
            writeable: true,
            ..LayerOptions::default()
        };
        let (inherited_uids, inherited_gids) = match &found {
            Some((image, in_read_write)) if !image.top_layer.is_empty() => {
                let home = match (in_read_write, images.as_mut()) {
                    (true, Some(images)) => Home::ReadWrite(images),
                    _ => Home::Additional,
                };
                let (in_additional, parent) = self.top_layer_for_mapping(
                    &mut layers,
                    &additional_layers,
                    image,
                    home,
                    &wanted,
                )?;
                let inherited = (parent.uid_map.clone(), parent.gid_map.clone());
                if in_additional {
                    layer_options.parent_layer = Some(parent);
                } else {
                    layer_options.parent = Some(parent.id);
                }
                inherited
            }
            // No top layer to inherit from: the store's defaults, as without an image (Go 1.43
            // gives a layerless image's containers no mapping: store doc 7.2.16).
            _ => (self.uid_map.clone(), self.gid_map.clone()),
        };
        layer_options.uid_map = if !wanted.host.uid && wanted.uid_map.is_empty() {
            inherited_uids
        } else {
            wanted.uid_map.to_vec()
        };
        layer_options.gid_map = if !wanted.host.gid && wanted.gid_map.is_empty() {
            inherited_gids
        } else {
            wanted.gid_map.to_vec()
        };
        if can_use_shifting(&self.layers, &layer_options.uid_map, &layer_options.gid_map) {
            layer_options.uid_map.clear();
            layer_options.gid_map.clear();
        }
        layer_options.flags.insert(
            pending::PENDING_FLAG.to_owned(),
            PendingOp::CreateContainer(id.clone()).to_value(),
        );
        // The additional stores stay read-locked until the end: a parent there cannot go.
        let layer = layers.create(&layer_options)?;
        crash::point(crash::CREATE_CONTAINER_AFTER_LAYER);
        record.layer_id = layer.id.clone();
        let container = match containers.create(record) {
            Ok(container) => container.clone(),
            Err(e) => {
                // Go's rollback; the checks above make it rare (a failed save).
                let _ = layers.delete(&layer.id);
                return Err(e.into());
            }
        };
        crash::point(crash::CREATE_CONTAINER_AFTER_RECORD);
        pending::unmark(&mut layers, &[&layer.id])?;
        Ok(container)
    }

    /// Go's `imageTopLayerForMapping`: the image's top layer or ID-mapped copy that fits the
    /// mappings asked for, else (when the image and its top layer are in read-write stores)
    /// a new ID-mapped copy recorded in the image, else the first candidate found. Returns
    /// whether the layer is in an additional store, and the layer.
    fn top_layer_for_mapping(
        &self,
        layers: &mut LayerWriter<'_>,
        additional: &[layerstore_layers::LayerReader<'_>],
        image: &Image,
        home: Home<'_, '_>,
        wanted: &Wanted<'_>,
    ) -> Result<(bool, Layer)> {
        let shifting = can_use_shifting(&self.layers, wanted.uid_map, wanted.gid_map);
        let fits = |layer: &Layer| {
            if shifting && layer.uid_map.is_empty() && layer.gid_map.is_empty() {
                return true;
            }
            if (wanted.host.uid && !layer.uid_map.is_empty())
                || (wanted.host.gid && !layer.gid_map.is_empty())
            {
                return false;
            }
            layer.uid_map == wanted.uid_map && layer.gid_map == wanted.gid_map
        };
        let stores: Vec<LayerRecords<'_>> = std::iter::once(layers.records())
            .chain(additional.iter().map(|r| r.records()))
            .collect();
        let candidates: Vec<&str> = std::iter::once(image.top_layer.as_str())
            .chain(image.mapped_top_layers.iter().map(String::as_str))
            .collect();
        // (store index, layer, its parent)
        let mut first: Option<(usize, &Layer, Option<&Layer>)> = None;
        for (index, records) in stores.iter().enumerate() {
            for candidate in &candidates {
                let Ok(layer) = records.get(candidate) else {
                    continue;
                };
                let parent = match layer.parent() {
                    Some(parent) => match find_layer(&stores, parent) {
                        Some((_, parent)) => Some(parent),
                        // Its parent should be in some store; without it, not a candidate.
                        None => continue,
                    },
                    None => None,
                };
                if fits(layer) {
                    return Ok((index > 0, layer.clone()));
                }
                if first.is_none() {
                    first = Some((index, layer, parent));
                }
            }
        }
        let Some((index, template, parent)) = first else {
            return Err(Error::LayerUnknown {
                key: image.top_layer.clone(),
            });
        };
        let Home::ReadWrite(images) = home else {
            return Ok((index > 0, template.clone()));
        };
        if index > 0 {
            // The top layer is another store's: no copy can be recorded for it here.
            return Ok((true, template.clone()));
        }
        let mut copy_options = LayerOptions {
            mount_label: template.mount_label.clone(),
            template: Some(template.id.clone()),
            ..LayerOptions::default()
        };
        if let Some(parent) = parent {
            if stores[0].by_id(&parent.id).is_some() {
                copy_options.parent = Some(parent.id.clone());
            } else {
                copy_options.parent_layer = Some(parent.clone());
            }
        }
        if !shifting {
            copy_options.uid_map = wanted.uid_map.to_vec();
            copy_options.gid_map = wanted.gid_map.to_vec();
        }
        copy_options.flags.insert(
            pending::PENDING_FLAG.to_owned(),
            PendingOp::MappedCopy(image.id.clone()).to_value(),
        );
        let template_id = template.id.clone();
        drop(stores);
        let copy = layers
            .create(&copy_options)
            .map_err(|e| Error::MappedCopy {
                layer: template_id,
                source: Box::new(e.into()),
            })?;
        crash::point(crash::CREATE_CONTAINER_AFTER_MAPPED_LAYER);
        if let Err(e) = images.add_mapped_layer(&image.id, &copy.id) {
            let _ = layers.delete(&copy.id);
            return Err(Error::RegisterMappedLayer {
                image: image.id.clone(),
                source: Box::new(e.into()),
            });
        }
        crash::point(crash::CREATE_CONTAINER_AFTER_MAPPED_REGISTERED);
        pending::unmark(layers, &[&copy.id])?;
        let copy = layers.records().by_id(&copy.id).cloned().unwrap_or(copy);
        Ok((false, copy))
    }

    /// Deletes a container (Go's `DeleteContainer`): its layer (unmounted first), its record,
    /// and its directories in both roots. `identifier is not a container` when there is none.
    /// A container whose layer is gone is deleted all the same; a layer an image uses stays.
    /// Crash-safe: the layer is marked before the record goes and removed after (see the
    /// crate documentation).
    pub fn delete_container(&self, key: &str) -> Result<()> {
        let mut layers = self.layers.write_session()?;
        let images = self.images.write()?;
        let mut containers = self.containers.write()?;
        let container = containers
            .get(key)
            .map_err(|_| Error::NotAContainer {
                key: key.to_owned(),
            })?
            .clone();
        delete_container_locked(&mut layers, &images, &mut containers, &container)
    }

    /// Every container, in creation order.
    pub fn containers(&self) -> Result<Vec<Container>> {
        Ok(self.containers.containers()?)
    }

    /// The container with this ID, name, layer ID or unique ID prefix.
    pub fn container(&self, key: &str) -> Result<Container> {
        Ok(self.containers.get(key)?)
    }

    /// The container whose layer is the one `key` names (in any layer store); `container
    /// not known` when no container has it.
    pub fn container_by_layer(&self, key: &str) -> Result<Container> {
        let id = self.layer(key)?.id;
        self.containers
            .read()?
            .by_layer(&id)
            .cloned()
            .ok_or_else(|| Error::ContainerUnknown {
                key: key.to_owned(),
            })
    }

    /// The keys of a container's big-data items, in the order they were first set.
    pub fn list_container_big_data(&self, key: &str) -> Result<Vec<String>> {
        Ok(self.containers.get(key)?.big_data_names)
    }

    /// The bytes of a container's big-data item.
    pub fn container_big_data(&self, key: &str, item: &str) -> Result<Vec<u8>> {
        Ok(self.containers.big_data(key, item)?)
    }

    /// The size of a container's big-data item: as recorded, else its file's; Go's bare
    /// `size is not known` when neither knows.
    pub fn container_big_data_size(&self, key: &str, item: &str) -> Result<i64> {
        match self.containers.big_data_size(key, item) {
            Err(layerstore_containers::Error::SizeUnknown { .. }) => Err(Error::SizeUnknown {
                key: key.to_owned(),
                item: item.to_owned(),
            }),
            other => Ok(other?),
        }
    }

    /// The digest of a container's big-data item: as recorded, else its file's; Go's bare
    /// `could not compute digest of item` when there is neither.
    pub fn container_big_data_digest(&self, key: &str, item: &str) -> Result<String> {
        match self.containers.big_data_digest(key, item) {
            Err(layerstore_containers::Error::DigestOfItemUnknown { .. }) => {
                Err(Error::DigestUnknown {
                    key: key.to_owned(),
                    item: item.to_owned(),
                })
            }
            other => Ok(other?),
        }
    }

    /// Stores a big-data item of a container.
    pub fn set_container_big_data(&self, key: &str, item: &str, data: &[u8]) -> Result<()> {
        Ok(self.containers.set_big_data(key, item, data)?)
    }

    /// `<graphroot>/<driver>-containers/<id>/userdata`, created (0700) if missing.
    pub fn container_directory(&self, key: &str) -> Result<PathBuf> {
        Ok(self.containers.directory(key)?)
    }

    /// `<runroot>/<driver>-containers/<id>/userdata`, created (0700) if missing.
    pub fn container_run_directory(&self, key: &str) -> Result<PathBuf> {
        Ok(self.containers.run_directory(key)?)
    }

    /// The size of a container (Go's `ContainerSize`): what its layer adds to its parent,
    /// plus its big-data items, plus the files in its two `userdata` directories (created if
    /// missing, as Go does; directories themselves count nothing, each inode counts once).
    pub fn container_size(&self, key: &str) -> Result<i64> {
        let layers = self.layers.read_session()?;
        let additional = self.additional_layer_readers()?;
        let containers = self.containers.read()?;
        let container = containers.get(key)?;
        let directories = [
            containers.directory(&container.id)?,
            containers.run_directory(&container.id)?,
        ];
        let stores: Vec<LayerRecords<'_>> = std::iter::once(layers.records())
            .chain(additional.iter().map(|r| r.records()))
            .collect();
        let (index, layer) =
            find_layer(&stores, &container.layer_id).ok_or_else(|| Error::MissingLayer {
                owner: container.id.clone(),
                layer: container.layer_id.clone(),
            })?;
        let mut size = i64::try_from(stores[index].diff_size(None, &layer.id)?).unwrap_or(i64::MAX);
        for item in &container.big_data_names {
            size = size.saturating_add(containers.big_data_size(&container.id, item)?);
        }
        for dir in &directories {
            size = size.saturating_add(files_size(dir)?);
        }
        Ok(size)
    }

    /// The host IDs owning the directories above the container's layer's mount point that
    /// its mappings do not map (Go's `ContainerParentOwners`).
    pub fn container_parent_owners(&self, key: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let layers = self.layers.read_session()?;
        let containers = self.containers.read()?;
        let container = containers.get(key)?;
        Ok(layers.records().parent_owners(&container.layer_id)?)
    }
}

/// The image `key` names in the read-write image store, else the first additional one that
/// has it, and whether it is the read-write store's.
fn find_image(
    images: &ImageWriter<'_>,
    additional: &[ImageReader<'_>],
    key: &str,
) -> Result<(Image, bool)> {
    if let Ok(image) = images.get(key) {
        return Ok((image.clone(), true));
    }
    additional
        .iter()
        .find_map(|r| r.get(key).ok())
        .map(|image| (image.clone(), false))
        .ok_or_else(|| Error::ImageUnknown {
            key: key.to_owned(),
        })
}

/// Deletes `container` with the locks held: its layer is marked first (so a crash after the
/// record goes leaves a layer a later open settles), then the record and directories go,
/// then the layer. A layer another layer stands on is refused before anything changes; a
/// layer an image uses (made into one with `create-image <its layer>`) stays, as that
/// image's (Go deletes it and leaves the image pointing at nothing).
pub(crate) fn delete_container_locked<SI: Session<Image>>(
    layers: &mut LayerWriter<'_>,
    images: &ImageSession<SI>,
    containers: &mut ContainerWriter<'_>,
    container: &Container,
) -> Result<()> {
    let layer = container.layer_id.as_str();
    let used_by_image = images
        .images()
        .any(|i| i.top_layer == layer || i.mapped_top_layers.iter().any(|m| m == layer));
    let delete_layer = layers.records().by_id(layer).is_some() && !used_by_image;
    if delete_layer {
        if let Some(child) = layers.records().layers().find(|l| l.parent == layer) {
            return Err(Error::LayerHasChildren {
                layer: layer.to_owned(),
                child: child.id.clone(),
            });
        }
        pending::mark(
            layers,
            &[layer],
            &PendingOp::DeleteContainer(container.id.clone()),
        )?;
        crash::point(crash::DELETE_CONTAINER_AFTER_MARK);
    }
    containers.delete(&container.id)?;
    crash::point(crash::DELETE_CONTAINER_AFTER_RECORD);
    if delete_layer {
        delete_checked(layers, layer)?;
    }
    Ok(())
}

/// The apparent size of the files below `dir`, each inode once, directories not counted
/// (Go's `directory.Size`; the driver crate's `usage_at` counts directories too).
fn files_size(dir: &Path) -> Result<i64> {
    let mut seen = HashSet::new();
    let mut size: u64 = 0;
    layerstore_driver::tree::walk(dir, &mut |entry| {
        let is_dir = layerstore_driver::tree::file_type(entry.stat)
            == layerstore_driver::tree::mode::S_IFDIR;
        let id = (
            entry.stat.stx_dev_major,
            entry.stat.stx_dev_minor,
            entry.stat.stx_ino,
        );
        if seen.insert(id) && !is_dir {
            size = size.saturating_add(entry.stat.stx_size);
        }
        Ok(())
    })
    .map_err(|e| Error::io("measure", dir.join(&e.path), e.source))?;
    Ok(i64::try_from(size).unwrap_or(i64::MAX))
}
