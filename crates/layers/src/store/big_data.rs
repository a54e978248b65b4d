//! Big data: items stored beside a layer in `<driver>-layers/<id>/`.

use std::fs::File;
use std::io::{self, Read};

use layerstore_model::{Digest, Sha256Hasher};

use crate::error::{Error, Result};
use crate::files::big_data_file_name;

use super::{LayerStore, LayerWriter, usable};

impl LayerStore {
    /// Stores a big-data item of the layer from `data`, replacing any item with that key
    /// atomically, in `<driver>-layers/<id>/<name>` named as Go names it.
    pub fn set_big_data(&self, key: &str, item: &str, data: &mut dyn Read) -> Result<()> {
        self.write_session()?.set_big_data(key, item, data)
    }

    /// A big-data item of the layer, as a reader (a file replaced later stays readable).
    pub fn big_data(&self, key: &str, item: &str) -> Result<File> {
        let id = self.read(|s| {
            s.resolve(key)
                .and_then(|i| usable(&s.layers[i]))
                .map(|l| l.id.clone())
        })?;
        if item.is_empty() {
            return Err(Error::InvalidBigDataName(id));
        }
        let file = match self.open_layers_dir()? {
            Some(layers) => match layers.subdir(&id, false)? {
                Some(dir) => dir.open_regular(&big_data_file_name(item))?,
                None => None,
            },
            None => None,
        };
        file.ok_or_else(|| Error::BigDataUnknown {
            id,
            key: item.to_string(),
        })
    }

    /// The keys of the layer's big-data items, in the order they were first set.
    pub fn big_data_names(&self, key: &str) -> Result<Vec<String>> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].big_data_names.clone()))
    }

    /// The size in bytes of a big-data item.
    pub fn big_data_size(&self, key: &str, item: &str) -> Result<u64> {
        let file = self.big_data(key, item)?;
        file.metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat big data", item, e))
    }

    /// The sha256 digest of a big-data item.
    pub fn big_data_digest(&self, key: &str, item: &str) -> Result<Digest> {
        let mut file = self.big_data(key, item)?;
        Sha256Hasher::digest_reader(&mut file).map_err(|e| Error::io("read big data", item, e))
    }
}

impl LayerWriter<'_> {
    /// Stores a big-data item of the layer (see [`LayerStore::set_big_data`]).
    pub fn set_big_data(&mut self, key: &str, item: &str, data: &mut dyn Read) -> Result<()> {
        let store = self.store;
        self.run(|state, guard| {
            let index = state.resolve(key)?;
            let id = usable(&state.layers[index])?.id.clone();
            if item.is_empty() {
                return Err(Error::InvalidBigDataName(id));
            }
            layerstore_model::check_big_data_key(layerstore_model::BigDataOwner::Layer, item)?;
            // Created and opened without following a symlink: nothing is written through one.
            let dir = store.layers_dir_rw()?.subdir(&id, true)?.ok_or_else(|| {
                Error::io(
                    "open directory",
                    store.big_data_dir(&id),
                    io::ErrorKind::NotFound.into(),
                )
            })?;
            dir.write_atomic_from(&big_data_file_name(item), 0o600, data)?;
            if !state.layers[index].big_data_names.iter().any(|n| n == item) {
                state.layers[index].big_data_names.push(item.to_string());
                store.save(state, guard)?;
            }
            Ok(())
        })
    }
}
