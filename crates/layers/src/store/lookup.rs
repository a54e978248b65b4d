//! Lookups of records: by ID, name, prefix or digest.

use layerstore_model::{Digest, Layer};

use crate::error::{Error, Result};
use crate::state::by_digest;

use super::LayerStore;

impl LayerStore {
    /// Every layer, in creation order.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        self.read(|s| Ok(s.live().cloned().collect()))
    }

    /// The layer with this ID, name or unique ID prefix.
    pub fn get(&self, key: &str) -> Result<Layer> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].clone()))
    }

    /// Whether a layer has this ID, name or unique ID prefix.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.read(|s| match s.resolve(key) {
            Ok(_) => Ok(true),
            Err(Error::LayerUnknown(_) | Error::AmbiguousId(_)) => Ok(false),
            Err(e) => Err(e),
        })
    }

    /// The full ID of the layer with this ID, name or unique ID prefix.
    pub fn lookup(&self, key: &str) -> Result<String> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].id.clone()))
    }

    /// The layers whose diff, as received, had this digest (in creation order).
    pub fn layers_by_compressed_digest(&self, digest: &Digest) -> Result<Vec<Layer>> {
        self.read(|s| Ok(by_digest(s, &s.by_compressed, digest)))
    }

    /// The layers whose uncompressed diff had this digest (in creation order).
    pub fn layers_by_uncompressed_digest(&self, digest: &Digest) -> Result<Vec<Layer>> {
        self.read(|s| Ok(by_digest(s, &s.by_uncompressed, digest)))
    }

    /// The uncompressed size of the layer's diff, `None` when unknown (Go returns -1).
    pub fn size(&self, key: &str) -> Result<Option<i64>> {
        self.read(|s| {
            s.resolve(key)
                .map(|i| s.layers[i].known_uncompressed_size())
        })
    }

    /// The driver's status lines (vfs: none).
    pub fn status(&self) -> Vec<(String, String)> {
        self.driver.status()
    }
}
