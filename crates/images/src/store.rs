//! [`ImageStore`] and its sessions.

use std::path::{Path, PathBuf};

use layerstore_model::{
    Digest, Error as ModelError, IMAGES_JSON, Image, Timestamp, generate_id_unused,
    is_manifest_key, validate_id,
};
use layerstore_recordstore::{
    BadRecord, Layout, NamesOp, ReadSession, RecordStore, Records, Session, WriteSession,
    canonical_digest,
};
use serde_json::Value;

use crate::error::{Error, Result};

/// The lock file of an image store, in its directory.
pub const IMAGES_LOCK: &str = "images.lock";

/// Digests a manifest big-data item (c/image strips schema-1 signatures first); see
/// [`ImageWriter::set_big_data`]. [`canonical_digest`] digests the bytes as they are, as Go's
/// `containers-storage` tool does.
pub type ManifestDigester<'a> = &'a dyn Fn(&[u8]) -> std::result::Result<Digest, String>;

/// What a new image is made of (Go's `Create` arguments).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewImage {
    /// Its ID; `None` draws a random one (64 hex characters, the first 12 not all digits,
    /// unused in this store).
    pub id: Option<String>,
    /// Its names, held by no other image (duplicates are dropped).
    pub names: Vec<String>,
    /// Its top layer's full ID; empty for an image without layers.
    pub top_layer: String,
    /// Free text.
    pub metadata: String,
    /// When it was created; `None` is now.
    pub created: Option<Timestamp>,
    /// The digest it is found by (`--digest`), validated; `None` for none.
    pub digest: Option<String>,
}

/// The image store of one driver: `<graphroot>/<driver>-images/images.json` under
/// `images.lock`, and each image's big-data items in `<graphroot>/<driver>-images/<id>/`.
/// See the [crate documentation](crate).
#[derive(Debug)]
pub struct ImageStore {
    records: RecordStore<Image>,
}

/// An image store session: [`ImageReader`] (shared lock) or [`ImageWriter`] (exclusive
/// lock). Both answer the lookups; the writer also changes images.
#[derive(Debug)]
pub struct ImageSession<S> {
    session: S,
}

/// The image store under the shared lock ([`ImageStore::read`]).
pub type ImageReader<'a> = ImageSession<ReadSession<'a, Image>>;
/// The image store under the exclusive lock ([`ImageStore::write`]).
pub type ImageWriter<'a> = ImageSession<WriteSession<'a, Image>>;

impl ImageStore {
    /// Opens the read-write image store in `dir` (`<graphroot>/<driver>-images`), creating
    /// the directory and `images.lock` if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<ImageStore> {
        Ok(ImageStore {
            records: RecordStore::open(layout(dir.into()))?,
        })
    }

    /// Opens a read-only (additional) image store in `dir`: only read-locked, never written;
    /// `images.lock` is created if missing, as Go does. Its images are marked
    /// [`Image::read_only`].
    pub fn open_read_only(dir: impl Into<PathBuf>) -> Result<ImageStore> {
        Ok(ImageStore {
            records: RecordStore::open_read_only(layout(dir.into()))?,
        })
    }

    /// Whether the store is read-only.
    pub fn is_read_only(&self) -> bool {
        self.records.is_read_only()
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        self.records.dir_path()
    }

    /// The store's `images.json`.
    pub fn images_json(&self) -> &Path {
        self.records.record_path()
    }

    /// A read session: the shared lock until it is dropped, on fresh records.
    pub fn read(&self) -> Result<ImageReader<'_>> {
        Ok(ImageSession {
            session: self.records.read()?,
        })
    }

    /// A write session: the exclusive lock until it is dropped. Each change it makes is
    /// saved before the call returns.
    pub fn write(&self) -> Result<ImageWriter<'_>> {
        self.writable("modify the image store")?;
        Ok(ImageSession {
            session: self.records.write()?,
        })
    }

    /// A write session, or Go's refusal of `action` on a read-only store.
    fn write_for(&self, action: &'static str) -> Result<ImageWriter<'_>> {
        self.writable(action)?;
        self.write()
    }

    fn writable(&self, action: &'static str) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly {
                action,
                path: self.images_json().to_path_buf(),
            });
        }
        Ok(())
    }

    /// Every image, in creation order.
    pub fn images(&self) -> Result<Vec<Image>> {
        Ok(self.read()?.images().cloned().collect())
    }

    /// The image with this ID, name or unique ID prefix.
    pub fn get(&self, key: &str) -> Result<Image> {
        self.read()?.get(key).cloned()
    }

    /// Whether an image has this ID, name or unique ID prefix.
    pub fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.read()?.exists(key))
    }

    /// The full ID of the image with this ID, name or unique ID prefix.
    pub fn lookup(&self, key: &str) -> Result<String> {
        Ok(self.read()?.get(key)?.id.clone())
    }

    /// The images found by `digest` (their `digest` or a manifest's), in creation order.
    pub fn by_digest(&self, digest: &str) -> Result<Vec<Image>> {
        Ok(self
            .read()?
            .by_digest(digest)?
            .into_iter()
            .cloned()
            .collect())
    }

    /// Sets `images.json` aside when it does not load as a whole (truncated, garbage): its bytes
    /// kept as `images.json.damaged-<n>`, the file replaced by an empty array, the images lost
    /// listed by their directories (see
    /// [`RecordStore::set_aside_damaged`](layerstore_recordstore::RecordStore::set_aside_damaged)).
    /// Nothing when it loads.
    pub fn set_aside_damaged(&self) -> Result<Vec<layerstore_recordstore::SetAsideFile>> {
        Ok(self.records.set_aside_damaged()?)
    }

    /// The records of `images.json` that cannot be used, for `check`.
    pub fn bad_records(&self) -> Result<Vec<BadRecord>> {
        Ok(self.read()?.bad_records().cloned().collect())
    }

    /// Creates an image (see [`ImageWriter::create`]).
    pub fn create(&self, new: NewImage) -> Result<Image> {
        self.write_for("create new images")?.create(new).cloned()
    }

    /// An image's metadata.
    pub fn metadata(&self, key: &str) -> Result<String> {
        Ok(self.read()?.metadata(key)?.to_owned())
    }

    /// Replaces an image's metadata.
    pub fn set_metadata(&self, key: &str, metadata: &str) -> Result<()> {
        self.write_for("modify image metadata")?
            .set_metadata(key, metadata)
    }

    /// Changes an image's names (see [`ImageWriter::update_names`]); returns the new names.
    pub fn update_names(&self, key: &str, names: &[String], op: NamesOp) -> Result<Vec<String>> {
        self.write_for("change image name assignments")?
            .update_names(key, names, op)
    }

    /// Sets flag `flag` of an image to `value`.
    pub fn set_flag(&self, key: &str, flag: &str, value: Value) -> Result<()> {
        self.write_for("set flags on images")?
            .set_flag(key, flag, value)
    }

    /// Removes flag `flag` of an image.
    pub fn clear_flag(&self, key: &str, flag: &str) -> Result<()> {
        self.write_for("clear flags on images")?
            .clear_flag(key, flag)
    }

    /// Stores big-data item `item` of an image (see [`ImageWriter::set_big_data`]).
    pub fn set_big_data(
        &self,
        key: &str,
        item: &str,
        data: &[u8],
        digest_manifest: Option<ManifestDigester<'_>>,
    ) -> Result<()> {
        empty_key(item, "can't set empty name for image big data item")?;
        self.write_for("save data items associated with images")?
            .set_big_data(key, item, data, digest_manifest)
    }

    /// The bytes of big-data item `item` of an image.
    pub fn big_data(&self, key: &str, item: &str) -> Result<Vec<u8>> {
        self.read()?.big_data(key, item)
    }

    /// The size of big-data item `item` of an image.
    pub fn big_data_size(&self, key: &str, item: &str) -> Result<i64> {
        self.read()?.big_data_size(key, item)
    }

    /// The recorded digest of big-data item `item` of an image.
    pub fn big_data_digest(&self, key: &str, item: &str) -> Result<String> {
        self.read()?.big_data_digest(key, item)
    }

    /// The keys of an image's big-data items, in the order they were first set.
    pub fn big_data_names(&self, key: &str) -> Result<Vec<String>> {
        Ok(self.read()?.big_data_names(key)?.to_vec())
    }

    /// Records `layer` as an ID-mapped copy of an image's top layer.
    pub fn add_mapped_layer(&self, key: &str, layer: &str) -> Result<()> {
        self.write()?.add_mapped_layer(key, layer)
    }

    /// Forgets `layer` as an ID-mapped copy of an image's top layer.
    pub fn remove_mapped_layer(&self, key: &str, layer: &str) -> Result<()> {
        self.write()?.remove_mapped_layer(key, layer)
    }

    /// Deletes an image: its record (saved first), then its big-data directory.
    pub fn delete(&self, key: &str) -> Result<Image> {
        self.write_for("delete images")?.delete(key)
    }

    /// Deletes every image; returns them.
    pub fn wipe(&self) -> Result<Vec<Image>> {
        self.write_for("delete images")?.wipe()
    }
}

fn layout(dir: PathBuf) -> Layout {
    Layout::new(dir, IMAGES_LOCK, IMAGES_JSON)
}

/// Go refuses an empty big-data key before anything else, in words that say what was asked.
fn empty_key(item: &str, action: &'static str) -> Result<()> {
    if item.is_empty() {
        return Err(Error::EmptyKey { action });
    }
    Ok(())
}

impl<S: Session<Image>> ImageSession<S> {
    /// Every usable image, in creation order.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.session.iter()
    }

    /// The records with their indexes, for lookups this type does not name.
    pub fn records(&self) -> &Records<Image> {
        &self.session
    }

    /// The records of `images.json` that cannot be used, for `check`.
    pub fn bad_records(&self) -> impl Iterator<Item = &BadRecord> {
        self.session.bad()
    }

    /// The image with this ID, else this name, else whose ID alone starts with `key`.
    pub fn get(&self, key: &str) -> Result<&Image> {
        self.session.get(key).ok_or_else(|| Error::ImageUnknown {
            key: key.to_owned(),
        })
    }

    /// Whether an image has this ID, name or unique ID prefix.
    pub fn exists(&self, key: &str) -> bool {
        self.session.get(key).is_some()
    }

    /// The images found by `digest` (their `digest` or a manifest's), in creation order;
    /// none is [`Error::DigestUnknown`], as in Go's image store.
    pub fn by_digest(&self, digest: &str) -> Result<Vec<&Image>> {
        let images: Vec<&Image> = self.session.by_key(digest).collect();
        if images.is_empty() {
            return Err(Error::DigestUnknown {
                digest: digest.to_owned(),
            });
        }
        Ok(images)
    }

    /// An image's metadata.
    pub fn metadata(&self, key: &str) -> Result<&str> {
        Ok(&self.get(key)?.metadata)
    }

    /// The bytes of big-data item `item`, read from its file (not looked up in the record,
    /// as in Go).
    pub fn big_data(&self, key: &str, item: &str) -> Result<Vec<u8>> {
        empty_key(item, "can't retrieve image big data value for empty name")?;
        let id = &self.get(key)?.id;
        self.session
            .read_big_data(id, item)?
            .ok_or_else(|| Error::BigDataMissing {
                id: id.clone(),
                key: item.to_owned(),
            })
    }

    /// The size of big-data item `item`: as recorded, else the size of its file.
    pub fn big_data_size(&self, key: &str, item: &str) -> Result<i64> {
        empty_key(
            item,
            "can't retrieve size of image big data with empty name",
        )?;
        let id = &self.get(key)?.id;
        self.session
            .big_data_size(id, item)?
            .ok_or_else(|| Error::SizeUnknown {
                id: id.clone(),
                key: item.to_owned(),
            })
    }

    /// The recorded digest of big-data item `item` (only the record is consulted, as in Go).
    pub fn big_data_digest(&self, key: &str, item: &str) -> Result<String> {
        empty_key(
            item,
            "can't retrieve digest of image big data value with empty name",
        )?;
        let image = self.get(key)?;
        image
            .big_data_digests
            .get(item)
            .cloned()
            .ok_or_else(|| Error::DigestOfItemUnknown {
                id: image.id.clone(),
                key: item.to_owned(),
            })
    }

    /// The keys of an image's big-data items, in the order they were first set.
    pub fn big_data_names(&self, key: &str) -> Result<&[String]> {
        Ok(&self.get(key)?.big_data_names)
    }
}

impl ImageWriter<'_> {
    /// Creates an image, as Go's `Create`: the ID given (it must name a directory and be
    /// unused) or a random unused one; names deduplicated and refused if another image holds
    /// one (creation never takes names, and writes no names history); the digest validated;
    /// created now unless given. Saved before returning.
    pub fn create(&mut self, new: NewImage) -> Result<&Image> {
        let id = match new.id {
            Some(id) => {
                validate_id(&id)?;
                if self.session.contains_id(&id) {
                    return Err(Error::DuplicateId { id });
                }
                id
            }
            None => generate_id_unused(|candidate| self.session.contains_id(candidate))?,
        };
        let names = self.free_names(&new.names)?;
        let image = Image {
            id: id.clone(),
            digest: new.digest.unwrap_or_default(),
            names,
            top_layer: new.top_layer,
            metadata: new.metadata,
            created: new
                .created
                .filter(|t| !t.is_go_zero())
                .unwrap_or_else(Timestamp::now),
            ..Image::default()
        };
        if let Err(ModelError::ImageDigest(bad)) = image.digests() {
            return Err(Error::InvalidDigest {
                digest: bad.digest,
                reason: bad.reason,
            });
        }
        self.session.insert(image)?;
        self.session.save()?;
        self.get(&id)
    }

    /// Adds a copy of `image`, an image of another (read-only) store, under the same ID, as
    /// newer Go copies an image into the read-write store before renaming it: its names
    /// (deduplicated; refused if another image here holds one), names history, top layer,
    /// metadata, creation time, digest and flags, and the big-data `items` (key and bytes,
    /// digests as `image` records them). Mapped layers are not copied: they are layers of the
    /// other store. The items' files are written before the record is saved, so a crash
    /// leaves at worst a directory without a record.
    pub fn copy_in(&mut self, image: &Image, items: &[(String, Vec<u8>)]) -> Result<&Image> {
        validate_id(&image.id)?;
        if self.session.contains_id(&image.id) {
            return Err(Error::DuplicateId {
                id: image.id.clone(),
            });
        }
        let copy = Image {
            id: image.id.clone(),
            digest: image.digest.clone(),
            names: self.free_names(&image.names)?,
            names_history: image.names_history.clone(),
            top_layer: image.top_layer.clone(),
            metadata: image.metadata.clone(),
            created: image.created,
            flags: image.flags.clone(),
            extra: image.extra.clone(),
            ..Image::default()
        };
        self.session.insert(copy)?;
        for (key, data) in items {
            let digest = image
                .big_data_digests
                .get(key)
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| canonical_digest(data));
            self.session.set_big_data(&image.id, key, data, &digest)?;
        }
        self.session.save()?;
        self.get(&image.id)
    }

    /// `names` without duplicates, or Go's refusal when another image holds one of them
    /// (creating an image never takes names).
    fn free_names(&self, names: &[String]) -> Result<Vec<String>> {
        let names = NamesOp::Set.apply(&[], names);
        if let Some((name, holder)) = names
            .iter()
            .find_map(|name| Some((name, self.session.by_name(name)?)))
        {
            return Err(Error::NameInUse {
                name: name.clone(),
                holder: holder.id.clone(),
            });
        }
        Ok(names)
    }

    /// Changes an image's names with `op` and records each name assigned in its names history
    /// (newest first, once each); a name another image holds moves here (that image's history
    /// is not changed), as Go's `updateNames`. Returns the new names.
    pub fn update_names(
        &mut self,
        key: &str,
        names: &[String],
        op: NamesOp,
    ) -> Result<Vec<String>> {
        let image = self.get(key)?;
        let id = image.id.clone();
        let new = op.apply(&image.names, names);
        self.session.assign_names(&id, &new)?;
        self.session.update(&id, |image| {
            for name in &new {
                image.add_name_to_history(name);
            }
        })?;
        self.session.save()?;
        Ok(new)
    }

    /// Replaces an image's metadata.
    pub fn set_metadata(&mut self, key: &str, metadata: &str) -> Result<()> {
        self.change(key, |image| metadata.clone_into(&mut image.metadata))
    }

    /// Sets flag `flag` of an image to `value`.
    pub fn set_flag(&mut self, key: &str, flag: &str, value: Value) -> Result<()> {
        self.change(key, |image| {
            image.flags.insert(flag.to_owned(), value);
        })
    }

    /// Removes flag `flag` of an image.
    pub fn clear_flag(&mut self, key: &str, flag: &str) -> Result<()> {
        self.change(key, |image| {
            image.flags.remove(flag);
        })
    }

    /// Records `layer` as an ID-mapped copy of the image's top layer (appended, as Go does).
    pub fn add_mapped_layer(&mut self, key: &str, layer: &str) -> Result<()> {
        self.change(key, |image| image.mapped_top_layers.push(layer.to_owned()))
    }

    /// Forgets `layer` as an ID-mapped copy of the image's top layer. IDs compare exactly
    /// (Go folds case, which only matters for odd caller-given IDs).
    pub fn remove_mapped_layer(&mut self, key: &str, layer: &str) -> Result<()> {
        self.change(key, |image| image.mapped_top_layers.retain(|l| l != layer))
    }

    /// Stores big-data item `item` of an image, as Go's `SetBigData`: its file is written
    /// first (atomically), then the record gets its size, its digest (a manifest's from
    /// `digest_manifest`, any other item's [`canonical_digest`]) and its key; the image's
    /// digest list follows its manifests, and an image without `digest` takes the first
    /// manifest's, which then stays. The record is saved only if it changed.
    pub fn set_big_data(
        &mut self,
        key: &str,
        item: &str,
        data: &[u8],
        digest_manifest: Option<ManifestDigester<'_>>,
    ) -> Result<()> {
        empty_key(item, "can't set empty name for image big data item")?;
        let id = self.get(key)?.id.clone();
        let digest = if is_manifest_key(item) {
            let digester = digest_manifest.ok_or_else(|| Error::NoManifestDigester {
                id: id.clone(),
                key: item.to_owned(),
            })?;
            digester(data).map_err(|reason| Error::ManifestDigest {
                id: id.clone(),
                key: item.to_owned(),
                reason,
            })?
        } else {
            canonical_digest(data)
        };
        self.session.set_big_data(&id, item, data, &digest)?;
        self.session.save()?;
        Ok(())
    }

    /// Deletes an image: its record is removed and saved first, then its big-data directory
    /// (so a crash never leaves a listed image without its items). Returns the image.
    pub fn delete(&mut self, key: &str) -> Result<Image> {
        let id = self.get(key)?.id.clone();
        let image = self.session.remove(&id)?;
        self.session.save()?;
        self.session.remove_item_dir(&id)?;
        Ok(image)
    }

    /// Deletes every image (records first, in one save, then their directories); returns
    /// them. Records that cannot be used stay for `check`.
    pub fn wipe(&mut self) -> Result<Vec<Image>> {
        let ids: Vec<String> = self.images().map(|image| image.id.clone()).collect();
        let mut removed = Vec::with_capacity(ids.len());
        for id in &ids {
            removed.push(self.session.remove(id)?);
        }
        self.session.save()?;
        for id in &ids {
            self.session.remove_item_dir(id)?;
        }
        Ok(removed)
    }

    /// Rewrites `images.json` whether or not anything changed (after a repair).
    pub fn save_all(&mut self) -> Result<()> {
        Ok(self.session.save_all()?)
    }

    /// Applies `change` to the image found by `key` and saves if it changed anything.
    fn change(&mut self, key: &str, change: impl FnOnce(&mut Image)) -> Result<()> {
        let id = self.get(key)?.id.clone();
        self.session.update(&id, change)?;
        self.session.save()?;
        Ok(())
    }
}
