//! Calls whose argument may name a layer, an image or a container: found in Go's order
//! (store doc §4.10).

use layerstore_images::NamesOp;
use layerstore_model::{Container, Image, Layer};

use crate::containers::delete_container_locked;
use crate::error::{Error, Result};
use crate::layers::{deletable_layer, delete_checked};
use crate::store::Store;

/// What kind of item an argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A layer (of the read-write store or an additional one).
    Layer,
    /// An image (of the read-write store or an additional one).
    Image,
    /// A container.
    Container,
}

/// The item an argument names, found by [`Store::find`].
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A layer.
    Layer(Layer),
    /// An image.
    Image(Image),
    /// A container.
    Container(Container),
}

impl Item {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Item::Layer(_) => Kind::Layer,
            Item::Image(_) => Kind::Image,
            Item::Container(_) => Kind::Container,
        }
    }

    /// Its full ID.
    pub fn id(&self) -> &str {
        match self {
            Item::Layer(l) => &l.id,
            Item::Image(i) => &i.id,
            Item::Container(c) => &c.id,
        }
    }

    /// Its names.
    pub fn names(&self) -> &[String] {
        match self {
            Item::Layer(l) => &l.names,
            Item::Image(i) => &i.names,
            Item::Container(c) => &c.names,
        }
    }

    /// Its metadata.
    pub fn metadata(&self) -> &str {
        match self {
            Item::Layer(l) => &l.metadata,
            Item::Image(i) => &i.metadata,
            Item::Container(c) => &c.metadata,
        }
    }
}

impl Store {
    /// The item `key` names (ID, name or unique ID prefix; a container also by its layer's
    /// ID), searched in Go's order: read-write layers, additional layers, read-write images,
    /// additional images, containers. The first store with any match wins, so a unique
    /// prefix of a layer ID beats an image's exact name, as in Go. Each store is
    /// read-locked only if the earlier ones did not match, and all stay locked until the
    /// answer is known.
    pub fn find(&self, key: &str) -> Result<Option<Item>> {
        let layers = self.layers.read_session()?;
        if let Ok(layer) = layers.records().get(key) {
            return Ok(Some(Item::Layer(layer.clone())));
        }
        let additional_layers = self.additional_layer_readers()?;
        if let Some(layer) = additional_layers
            .iter()
            .find_map(|r| r.records().get(key).ok())
        {
            return Ok(Some(Item::Layer(layer.clone())));
        }
        let images = self.images.read()?;
        if let Ok(image) = images.get(key) {
            return Ok(Some(Item::Image(image.clone())));
        }
        let additional_images = self.additional_image_readers()?;
        if let Some(image) = additional_images.iter().find_map(|r| r.get(key).ok()) {
            return Ok(Some(Item::Image(image.clone())));
        }
        let containers = self.containers.read()?;
        Ok(containers
            .get(key)
            .ok()
            .map(|container| Item::Container(container.clone())))
    }

    /// Whether `key` names a layer, an image or a container (Go's `Exists`).
    pub fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.find(key)?.is_some())
    }

    /// The full ID of what `key` names (Go's `Lookup`); `layer not known` if nothing.
    pub fn lookup(&self, key: &str) -> Result<String> {
        self.found(key, || Error::LayerUnknown {
            key: key.to_owned(),
        })
        .map(|item| item.id().to_owned())
    }

    /// The names of what `key` names (Go's `Names`); `layer not known` if nothing.
    pub fn names(&self, key: &str) -> Result<Vec<String>> {
        self.found(key, || Error::LayerUnknown {
            key: key.to_owned(),
        })
        .map(|item| item.names().to_vec())
    }

    /// The metadata of what `key` names (Go's `Metadata`); `identifier is not a layer,
    /// image, or container` if nothing.
    pub fn metadata(&self, key: &str) -> Result<String> {
        self.found(key, || Error::NotAnId {
            key: key.to_owned(),
        })
        .map(|item| item.metadata().to_owned())
    }

    fn found(&self, key: &str, missing: impl FnOnce() -> Error) -> Result<Item> {
        self.find(key)?.ok_or_else(missing)
    }

    /// Replaces the metadata of what `key` names in the read-write stores: a layer, else an
    /// image, else a container (Go's `SetMetadata`; additional stores cannot be changed).
    pub fn set_metadata(&self, key: &str, metadata: &str) -> Result<()> {
        let mut layers = self.layers.write_session()?;
        let mut images = self.images.write()?;
        let mut containers = self.containers.write()?;
        if layers.records().exists(key) {
            return Ok(layers.set_metadata(key, metadata)?);
        }
        if images.exists(key) {
            return Ok(images.set_metadata(key, metadata)?);
        }
        if containers.exists(key) {
            return Ok(containers.set_metadata(key, metadata)?);
        }
        Err(Error::NotAnId {
            key: key.to_owned(),
        })
    }

    /// Replaces the names of what `key` names (Go's `SetNames`); returns them.
    pub fn set_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.update_names(key, names, NamesOp::Set)
    }

    /// Adds names to what `key` names, the given ones first (Go's `AddNames`); returns them.
    pub fn add_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.update_names(key, names, NamesOp::Add)
    }

    /// Removes names from what `key` names (Go's `RemoveNames`); returns what is left.
    pub fn remove_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.update_names(key, names, NamesOp::Remove)
    }

    /// Changes the names of what `key` names with `op` (duplicates dropped): a layer of the
    /// read-write store, else an image of it, else an image of an additional store (copied
    /// into the read-write store first), else a container; `layer not known` if nothing. A
    /// name held by another item of the same kind moves here.
    ///
    /// The copy follows newer Go: it keeps the image's ID, names, names history, flags and
    /// every big-data item, then `op` applies to it (Go 1.43 dropped the first name of the
    /// list and all big data, store doc 7.2.5).
    pub fn update_names(&self, key: &str, names: &[String], op: NamesOp) -> Result<Vec<String>> {
        let names = NamesOp::Set.apply(&[], names);
        let mut layers = self.layers.write_session()?;
        if let Ok(layer) = layers.records().get(key) {
            let new = op.apply(&layer.names, &names);
            let id = layer.id.clone();
            return Ok(layers.set_names(&id, &new)?);
        }
        let mut images = self.images.write()?;
        if images.exists(key) {
            return Ok(images.update_names(key, &names, op)?);
        }
        let additional = self.additional_image_readers()?;
        if let Some((reader, image)) = additional
            .iter()
            .find_map(|r| r.get(key).ok().map(|image| (r, image)))
        {
            let items = image
                .big_data_names
                .iter()
                .map(|item| Ok((item.clone(), reader.big_data(&image.id, item)?)))
                .collect::<Result<Vec<_>>>()?;
            let id = images.copy_in(image, &items)?.id.clone();
            return Ok(images.update_names(&id, &names, op)?);
        }
        let mut containers = self.containers.write()?;
        if containers.exists(key) {
            return Ok(containers.update_names(key, &names, op)?);
        }
        Err(Error::LayerUnknown {
            key: key.to_owned(),
        })
    }

    /// Deletes what `key` names (Go's `Delete`), trying a container first, then an image of
    /// the read-write store, then a layer of it; `layer not known` if nothing.
    ///
    /// * A container goes as [`Store::delete_container`] deletes it (its layer, record and
    ///   both directories; Go leaves the run-root directory, and refuses a container whose
    ///   layer is gone).
    /// * An image: only its record (Go's rule: no container check, no layers removed).
    /// * A layer: only if nothing uses it, as [`Store::delete_layer`] (Go checks nothing).
    pub fn delete(&self, key: &str) -> Result<()> {
        let mut layers = self.layers.write_session()?;
        let mut images = self.images.write()?;
        let mut containers = self.containers.write()?;
        if let Ok(container) = containers.get(key) {
            let container = container.clone();
            return delete_container_locked(&mut layers, &images, &mut containers, &container);
        }
        if images.exists(key) {
            images.delete(key)?;
            return Ok(());
        }
        if layers.records().exists(key) {
            let id = deletable_layer(layers.records(), &images, &containers, key)?;
            return delete_checked(&mut layers, &id);
        }
        Err(Error::LayerUnknown {
            key: key.to_owned(),
        })
    }

    /// Deletes every container (records and both directories), then every image, then every
    /// layer of the read-write stores (Go's `Wipe`; additional stores stay as they are).
    pub fn wipe(&self) -> Result<()> {
        let mut layers = self.layers.write_session()?;
        let mut images = self.images.write()?;
        let mut containers = self.containers.write()?;
        containers.wipe()?;
        images.wipe()?;
        layers.wipe()?;
        Ok(())
    }
}
