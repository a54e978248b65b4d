//! Images through the Store: creation on a layer of any layer store, lookups across the
//! read-write and additional image stores, big data, sizes, and delete-image's walk.

use std::collections::{HashMap, HashSet};

use layerstore_images::{Error as ImageError, ImageReader, ManifestDigester, NewImage};
use layerstore_layers::LayerRecords;
use layerstore_model::Image;

use crate::crash;
use crate::error::{Error, Result};
use crate::layers::find_layer;
use crate::pending::{self, PendingOp};
use crate::store::Store;

impl Store {
    /// Creates an image (Go's `CreateImage`). `new.top_layer` may be an ID, name or unique
    /// prefix of a layer in the read-write layer store or, failing that, an additional one
    /// (`layer not known` otherwise); the record gets its full ID. The layer store's shared
    /// lock is held until the record is saved, so the layer cannot go meanwhile. The other
    /// rules are the image store's (`layerstore_images::ImageWriter::create`).
    pub fn create_image(&self, new: NewImage) -> Result<Image> {
        let mut new = new;
        let layers = self.layers.read_session()?;
        let additional = self.additional_layer_readers()?;
        if !new.top_layer.is_empty() {
            let stores: Vec<LayerRecords<'_>> = std::iter::once(layers.records())
                .chain(additional.iter().map(|r| r.records()))
                .collect();
            let (_, layer) =
                find_layer(&stores, &new.top_layer).ok_or_else(|| Error::LayerUnknown {
                    key: new.top_layer.clone(),
                })?;
            new.top_layer = layer.id.clone();
        }
        crash::point(crash::CREATE_IMAGE_BEFORE_RECORD);
        let mut images = self.images.write()?;
        Ok(images.create(new)?.clone())
    }

    /// Read sessions of the read-write image store, then each additional one: every image
    /// as of one instant, without copying the records (each store stays read-locked until
    /// its session is dropped). [`Store::images`] is the owned copy.
    pub fn image_readers(&self) -> Result<Vec<ImageReader<'_>>> {
        let mut readers = vec![self.images.read()?];
        readers.extend(self.additional_image_readers()?);
        Ok(readers)
    }

    /// Every image: the read-write store's, then each additional store's (Go's `Images`;
    /// an image copied up by a rename is listed twice, as in Go).
    pub fn images(&self) -> Result<Vec<Image>> {
        Ok(self
            .image_readers()?
            .iter()
            .flat_map(|r| r.images().cloned().collect::<Vec<_>>())
            .collect())
    }

    /// The image with this ID, name or unique prefix, in the read-write store, else the first
    /// additional store that has it (marked `read_only`).
    pub fn image(&self, key: &str) -> Result<Image> {
        self.image_readers()?
            .iter()
            .find_map(|r| r.get(key).ok().cloned())
            .ok_or_else(|| Error::ImageUnknown {
                key: key.to_owned(),
            })
    }

    /// The images found by `digest` (their `digest` or a manifest's), in every store;
    /// none is an empty list.
    pub fn images_by_digest(&self, digest: &str) -> Result<Vec<Image>> {
        let mut found = Vec::new();
        for reader in self.image_readers()? {
            match reader.by_digest(digest) {
                Ok(images) => found.extend(images.into_iter().cloned()),
                Err(ImageError::DigestUnknown { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(found)
    }

    /// The images, in every store, whose top layer or ID-mapped copy is the layer `key`
    /// names (in any layer store).
    pub fn images_by_top_layer(&self, key: &str) -> Result<Vec<Image>> {
        let id = self.layer(key)?.id;
        Ok(self
            .image_readers()?
            .iter()
            .flat_map(|r| {
                r.images()
                    .filter(|i| i.top_layer == id || i.mapped_top_layers.contains(&id))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// The keys of an image's big-data items, from the first store that has the image.
    pub fn list_image_big_data(&self, key: &str) -> Result<Vec<String>> {
        self.image_readers()?
            .iter()
            .find_map(|r| r.big_data_names(key).ok().map(<[String]>::to_vec))
            .ok_or_else(|| Error::ImageUnknown {
                key: key.to_owned(),
            })
    }

    /// The bytes of an image's big-data item: from the first store whose image has the
    /// item's file. Go's texts when none has it: `locating item named "<item>" for image with
    /// ID "<key>" (consider removing the image to resolve the issue): file does not exist`
    /// when some store has the image, else `locating image with ID "<key>": image not known`.
    pub fn image_big_data(&self, key: &str, item: &str) -> Result<Vec<u8>> {
        let mut image_found = false;
        for reader in self.image_readers()? {
            match reader.big_data(key, item) {
                Ok(data) => return Ok(data),
                Err(ImageError::ImageUnknown { .. }) => {}
                Err(ImageError::BigDataMissing { .. }) => image_found = true,
                Err(e) => return Err(e.into()),
            }
        }
        if image_found {
            return Err(ImageError::BigDataMissing {
                id: key.to_owned(),
                key: item.to_owned(),
            }
            .into());
        }
        Err(Error::ImageUnknown {
            key: key.to_owned(),
        })
    }

    /// The size of an image's big-data item, from the first store that knows it; Go's bare
    /// `size is not known` otherwise (also for an unknown image, as in Go).
    pub fn image_big_data_size(&self, key: &str, item: &str) -> Result<i64> {
        self.image_readers()?
            .iter()
            .find_map(|r| r.big_data_size(key, item).ok())
            .ok_or_else(|| Error::SizeUnknown {
                key: key.to_owned(),
                item: item.to_owned(),
            })
    }

    /// The recorded digest of an image's big-data item, from the first store that records a
    /// valid one; Go's bare `could not compute digest of item` otherwise.
    pub fn image_big_data_digest(&self, key: &str, item: &str) -> Result<String> {
        self.image_readers()?
            .iter()
            .find_map(|r| {
                r.big_data_digest(key, item)
                    .ok()
                    .filter(|d| d.parse::<layerstore_model::Digest>().is_ok())
            })
            .ok_or_else(|| Error::DigestUnknown {
                key: key.to_owned(),
                item: item.to_owned(),
            })
    }

    /// Stores a big-data item of an image of the read-write store (see
    /// `layerstore_images::ImageWriter::set_big_data`; images of additional stores cannot be
    /// changed, as in Go).
    pub fn set_image_big_data(
        &self,
        key: &str,
        item: &str,
        data: &[u8],
        digest_manifest: Option<ManifestDigester<'_>>,
    ) -> Result<()> {
        Ok(self.images.set_big_data(key, item, data, digest_manifest)?)
    }

    /// The size of an image (Go's `ImageSize`): each layer of its top layer, its ID-mapped
    /// copies and all their ancestors counted once, across every layer store (the recorded
    /// diff size when a diff digest is recorded, else the driver's measure), plus its big-data
    /// items. A missing layer is `locating layer with ID "<id>": layer not known`.
    pub fn image_size(&self, key: &str) -> Result<i64> {
        let layers = self.layers.read_session()?;
        let additional = self.additional_layer_readers()?;
        let stores: Vec<LayerRecords<'_>> = std::iter::once(layers.records())
            .chain(additional.iter().map(|r| r.records()))
            .collect();
        let readers = self.image_readers()?;
        let (reader, image) = readers
            .iter()
            .find_map(|r| r.get(key).ok().map(|image| (r, image)))
            .ok_or_else(|| Error::ImageUnknown {
                key: key.to_owned(),
            })?;
        let mut queue: Vec<&str> = std::iter::once(image.top_layer.as_str())
            .chain(image.mapped_top_layers.iter().map(String::as_str))
            .filter(|id| !id.is_empty())
            .collect();
        let mut visited: HashSet<&str> = HashSet::new();
        let mut size: i64 = 0;
        while let Some(id) = queue.pop() {
            if !visited.insert(id) {
                continue;
            }
            let (index, layer) = find_layer(&stores, id).ok_or_else(|| Error::MissingLayer {
                owner: image.id.clone(),
                layer: id.to_owned(),
            })?;
            let n = match layer.uncompressed_digest {
                Some(_) => layer.uncompressed_size,
                None => {
                    i64::try_from(stores[index].diff_size(None, &layer.id)?).unwrap_or(i64::MAX)
                }
            };
            size = size.saturating_add(n);
            if !layer.parent.is_empty() {
                queue.push(&layer.parent);
            }
        }
        for item in &image.big_data_names {
            size = size.saturating_add(reader.big_data_size(&image.id, item)?);
        }
        Ok(size)
    }

    /// Deletes an image of the read-write store and the layers only it used (Go's
    /// `DeleteImage`), or with `commit = false` only says which layers that would remove.
    /// Returns those layers in removal order: its ID-mapped copies, then its top layer and
    /// down its parents while a layer is no container's, no other image's top or mapped
    /// layer, and has no child that stays. Go's refusals: `identifier is not an image`,
    /// `image used by <container>: image is in use by a container`.
    ///
    /// Beyond Go: layers of additional stores are never listed (the walk stops there; Go
    /// lists them and fails after deleting the record), a mapped copy that another image was
    /// made on (its top or mapped layer) or that is a container's layer stays (Go removes it
    /// and leaves that image pointing at a missing layer), the deletion is refused before
    /// anything changes when a mapped copy has a child of its own (`used by layer <id>: layer
    /// has children`), and it is crash-safe: the layers are marked first, then the record is
    /// removed, then the layers (see the crate documentation).
    pub fn delete_image(&self, key: &str, commit: bool) -> Result<Vec<String>> {
        let mut layers = self.layers.write_session()?;
        let mut images = self.images.write()?;
        let containers = self.containers.write()?;
        let image = images
            .get(key)
            .map_err(|_| Error::NotAnImage {
                key: key.to_owned(),
            })?
            .clone();
        if let Some(container) = containers
            .containers()
            .filter(|c| c.image_id == image.id)
            .last()
        {
            return Err(Error::ImageUsedByContainer {
                image: image.id.clone(),
                container: container.id.clone(),
            });
        }
        let records = layers.records();
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for layer in records.layers() {
            children.entry(&layer.parent).or_default().push(&layer.id);
        }
        let protected: HashSet<&str> = images
            .images()
            .filter(|i| i.id != image.id)
            .flat_map(|i| std::iter::once(&i.top_layer).chain(&i.mapped_top_layers))
            .map(String::as_str)
            .collect();
        // Beyond Go (which removes every mapped copy): a copy that another image has since
        // been made on, or that a container's layer is, stays.
        let mut doomed: Vec<String> = image
            .mapped_top_layers
            .iter()
            .filter(|id| {
                records.by_id(id).is_some()
                    && !protected.contains(id.as_str())
                    && containers.by_layer(id).is_none()
            })
            .cloned()
            .collect();
        let mut current = image.top_layer.clone();
        while !current.is_empty() {
            let Some(layer) = records.by_id(&current) else {
                // Not a layer of the read-write store (an additional store's): it stays, and
                // so do its parents.
                break;
            };
            if containers.exists(&current) || protected.contains(current.as_str()) {
                break;
            }
            let mut to_check = vec![current.as_str()];
            if current == image.top_layer {
                to_check.extend(
                    image
                        .mapped_top_layers
                        .iter()
                        .map(String::as_str)
                        .filter(|id| doomed.iter().any(|d| d == id)),
                );
            }
            let has_other_children = to_check.iter().any(|id| {
                children
                    .get(id)
                    .into_iter()
                    .flatten()
                    .any(|child| !doomed.iter().any(|d| d == child))
            });
            if has_other_children {
                break;
            }
            doomed.push(current.clone());
            current = layer.parent.clone();
        }
        // A mapped copy with a child of its own (a layer made on it by hand) cannot go.
        for id in &doomed {
            if let Some(child) = children
                .get(id.as_str())
                .into_iter()
                .flatten()
                .find(|child| !doomed.iter().any(|d| d == *child))
            {
                return Err(Error::LayerHasChildren {
                    layer: id.clone(),
                    child: (*child).to_owned(),
                });
            }
        }
        if !commit {
            return Ok(doomed);
        }
        let ids: Vec<&str> = doomed.iter().map(String::as_str).collect();
        pending::mark(&mut layers, &ids, &PendingOp::DeleteImage(image.id.clone()))?;
        crash::point(crash::DELETE_IMAGE_AFTER_MARK);
        images.delete(&image.id)?;
        crash::point(crash::DELETE_IMAGE_AFTER_RECORD);
        layers.delete_many(&ids).map_err(|e| Error::DeleteLayer {
            layer: doomed.join(", "),
            source: Box::new(e.into()),
        })?;
        Ok(doomed)
    }
}
