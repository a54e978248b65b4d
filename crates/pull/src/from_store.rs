//! Pushing an image of a [`layerstore::Store`]: its manifest and config as stored (big data
//! `manifest` and `sha256:<config>`), each layer blob rebuilt from the layer's tar-split and
//! files ([`layerstore::Store::diff`], compressed as the layer was pulled), so the
//! uncompressed digests (the config's DiffIDs) stay the same.
//!
//! The recorded blob digest is reused only when the rebuilt bytes really have it: each blob
//! is rebuilt once to measure it; if any differs (another gzip encoder than the one that made
//! the original, say), the manifest is rewritten with the rebuilt blobs' digests and sizes
//! and pushed under its new digest. Blobs stream to the destination through a pipe, never
//! held whole.

use std::io::{self, Write};

use layerstore::{DiffOptions, Store};
use sha2::{Digest as _, Sha256};

use crate::dest::{ImageDestination, PushImage, push_image};
use crate::error::{Error, Result};
use crate::manifest::{Blob, RawManifest, digest_of};
use crate::source::{BlobStream, in_parallel};

/// Pushes image `key` of `store` to `dest`, up to `parallel` blobs at once; the digest of the
/// manifest pushed.
pub fn push_from_store(
    store: &Store,
    key: &str,
    dest: &dyn ImageDestination,
    parallel: usize,
) -> Result<layerstore::Digest> {
    let location = dest.location();
    let at = location.as_str();
    let wrap = |what: String| move |e: layerstore::Error| Error::store(at, what, e);
    let image = store.image(key).map_err(wrap(format!("image {key}")))?;
    let what = format!("image {}", image.id);
    let stored = store
        .image_big_data(&image.id, "manifest")
        .map_err(wrap(what.clone()))?;
    let manifest = RawManifest::new(&location, stored)?;
    let (config_blob, blobs) = manifest.image(&location)?;
    let config = store
        .image_big_data(&image.id, config_blob.digest.as_ref())
        .map_err(wrap(what.clone()))?;
    let mut layers = Vec::new();
    let mut next = image.top_layer.clone();
    while !next.is_empty() {
        let layer = store.layer(&next).map_err(wrap(format!("layer {next}")))?;
        next = layer.parent.clone();
        layers.push(layer);
    }
    layers.reverse();
    if layers.len() != blobs.len() {
        return Err(Error::invalid(
            &location,
            what,
            format!(
                "{} layers in the store, {} in manifest {}",
                layers.len(),
                blobs.len(),
                manifest.digest
            ),
        ));
    }
    let diff_of = |index: usize, out: &mut dyn Write| -> Result<u64> {
        let layer = &layers[index];
        store
            .diff(
                None,
                &layer.id,
                &DiffOptions {
                    compression: Some(layer.compression),
                },
                out,
            )
            .map_err(wrap(format!("layer {}", layer.id)))
    };
    let rebuilt: Vec<Blob> = in_parallel(blobs.len(), parallel, |i| {
        let mut hasher = HashingWriter(Sha256::new());
        let size = diff_of(i, &mut hasher)?;
        Ok(Blob {
            digest: digest_of(hasher.0.finalize().as_slice()),
            size,
            media_type: blobs[i].media_type.clone(),
        })
    })?;
    let manifest = if rebuilt == blobs {
        manifest
    } else {
        let mut document: serde_json::Value = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| Error::invalid(&location, format!("manifest {}", manifest.digest), e))?;
        if let Some(entries) = document["layers"].as_array_mut() {
            for (entry, blob) in entries.iter_mut().zip(&rebuilt) {
                entry["digest"] = blob.digest.to_string().into();
                entry["size"] = blob.size.into();
            }
        }
        let bytes = serde_json::to_vec(&document)
            .map_err(|e| Error::invalid(&location, "rewritten manifest", e))?;
        RawManifest::new(&location, bytes)?
    };
    let digest = manifest.digest.clone();
    std::thread::scope(|scope| {
        let open_layer = |blob: &Blob| -> Result<BlobStream> {
            let index = rebuilt
                .iter()
                .position(|b| b.digest == blob.digest)
                .ok_or_else(|| {
                    Error::invalid(&location, format!("blob {}", blob.digest), "not a layer")
                })?;
            let (reader, mut writer) = io::pipe()
                .map_err(|e| Error::io(&location, format!("pipe for blob {}", blob.digest), e))?;
            // Written from a thread of its own; a failure shows to the reader as a short
            // blob, which the destination refuses.
            let diff_of = &diff_of;
            scope.spawn(move || diff_of(index, &mut writer));
            Ok(Box::new(reader))
        };
        push_image(
            dest,
            &PushImage {
                manifest,
                config,
                open_layer: &open_layer,
            },
            parallel,
        )
    })?;
    Ok(digest)
}

/// A writer that only hashes.
struct HashingWriter(Sha256);

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
