//! Layers adopted from additional layer stores (Go's `LookupAdditionalLayer` and
//! `PutAdditionalLayer`).

use std::io::{self, Read};

use layerstore_driver::AdditionalLayer;
use layerstore_model::{Digest, Layer, parse_layers_json};

use super::LayerStore;
use crate::error::{Error, Result};
use crate::options::LayerOptions;
use crate::state::{State, reindex_digests, unindex_digest};

/// The largest `info` file read (a layer record is a few KiB).
const MAX_INFO_SIZE: u64 = 1 << 20;

impl LayerStore {
    /// The layer with blob digest `digest` of image `image_ref` in one of the driver's
    /// additional layer stores, if any serves it.
    pub fn lookup_additional_layer(
        &self,
        digest: &Digest,
        image_ref: &str,
    ) -> Option<AdditionalLayer> {
        self.driver
            .lookup_additional_layer(digest.as_str(), image_ref)
    }

    /// Adopts `layer` from an additional layer store as a new layer (Go's
    /// `PutAdditionalLayer`): the record's digests, sizes, compression and owners come from
    /// the store's `info` file; ID, names, parent and mappings from `options`. The driver
    /// makes the layer use the store's `diff/` as its tree (a lower of every mount) and the
    /// store is told through `use`. The record is flagged read-only for this handle, as Go
    /// does (the flag is not saved); nothing is copied and there are no tar-split records,
    /// so `diff` exports the tree.
    pub fn put_additional_layer(
        &self,
        options: &LayerOptions,
        layer: &AdditionalLayer,
    ) -> Result<Layer> {
        let info_path = layer.info_path();
        let mut info = Vec::new();
        // Not followed if a symlink, not waited on if a FIFO: the store is someone else's.
        crate::files::open_store_file(&info_path)?
            .ok_or_else(|| Error::io("read", &info_path, io::ErrorKind::NotFound.into()))?
            .take(MAX_INFO_SIZE + 1)
            .read_to_end(&mut info)
            .map_err(|e| Error::io("read", &info_path, e))?;
        if info.len() as u64 > MAX_INFO_SIZE {
            return Err(Error::io(
                "read",
                &info_path,
                io::Error::new(io::ErrorKind::InvalidData, "larger than 1 MiB"),
            ));
        }
        let mut wrapped = Vec::with_capacity(info.len() + 2);
        wrapped.push(b'[');
        wrapped.extend_from_slice(&info);
        wrapped.push(b']');
        let parsed = parse_layers_json(&wrapped)
            .map_err(|source| Error::CorruptLayers {
                path: info_path.clone(),
                source,
            })?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::io(
                    "read",
                    &info_path,
                    io::Error::new(io::ErrorKind::InvalidData, "no layer record"),
                )
            })?;
        self.write(|state, guard| {
            let (created, _) = self.put_locked(state, guard, options, None)?;
            let id = created.id;
            let index = state.resolve(&id)?;
            state.layers[index].set_incomplete(true);
            self.save(state, guard)?;
            if let Err(e) = self
                .driver
                .attach_additional_layer(&id, layer)
                .map_err(|e| Error::driver(&id, "adopt additional layer", e))
            {
                let _ = self.delete_locked(state, guard, std::slice::from_ref(&id));
                return Err(e);
            }
            record_from_info(state, index, &parsed);
            state.layers[index].set_incomplete(false);
            reindex_digests(state, index);
            self.save(state, guard)?;
            Ok(state.layers[index].clone())
        })
    }
}

fn record_from_info(state: &mut State, index: usize, info: &Layer) {
    let State {
        layers,
        by_compressed,
        by_uncompressed,
        ..
    } = state;
    let record = &mut layers[index];
    let id = record.id.clone();
    unindex_digest(by_compressed, &record.compressed_digest, &id);
    unindex_digest(by_uncompressed, &record.uncompressed_digest, &id);
    record.compressed_digest = info.compressed_digest.clone();
    record.compressed_size = info.compressed_size;
    record.uncompressed_digest = info.uncompressed_digest.clone();
    record.uncompressed_size = info.uncompressed_size;
    record.compression = info.compression;
    record.uids = info.uids.clone();
    record.gids = info.gids.clone();
    record.read_only = true;
}
