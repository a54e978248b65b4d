//! The pure part of committing a pulled image into a store: every ID, record field and
//! big-data item podman 4.3 (containers/image 5.23's storage destination, containers/storage
//! 1.43) writes, computed from the resolved image, its config and what streaming each layer
//! measured. Writing them is the store's thin last step.
//!
//! What podman writes (`storage_dest.go`: `commitLayer`, `Commit`; checked against real
//! `podman pull`s in this crate's tests):
//!
//! * Layer IDs: the first layer's ID is the hex of its DiffID; each later one is the hex
//!   SHA-256 of `PARENTID + "+" + DIFFIDHEX` ([`layer_id`]). Its parent is the previous layer.
//!   A layer whose ID is already in the store is reused, not fetched.
//! * Layer records: `compressed-diff-digest` and `compressed-size` are the blob's (as the
//!   manifest lists it and as streamed); `diff-digest`, `diff-size` and `compression` are
//!   measured on the stream ([`LayerDigests`]).
//! * Image ID: the config digest's hex (schema 2 and OCI manifests).
//! * Image `digest`: the first manifest stored, so the index's digest when the image was
//!   chosen from an index, else the manifest's.
//! * Big data, in this order: `sha256:<config hex>` (the config), `manifest-<index digest>`
//!   (the index, when there is one), `manifest-<manifest digest>`, `manifest` (the manifest
//!   again), `signature-<manifest hex>` (empty: no signatures). Their sizes, and digests (the
//!   SHA-256 of each item).
//! * Metadata: `{"signatures-sizes":{"<manifest digest>":[]}}`.
//! * Names: what the source says podman names it ([`crate::ImageSource::image_names`]);
//!   `names-history` the same.
//! * `created`: the config's `created`, with its offset; the current time without one.

use std::collections::BTreeMap;
use std::io::Read;

use layerstore_model::{Compression, Digest, Image, Layer, Timestamp};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{Blob, digest_of, sha256_digest};
use crate::source::ResolvedImage;

/// The ID containers/image gives a layer with this DiffID on top of `parent`.
pub fn layer_id(parent: Option<&str>, diff_id: &Digest) -> String {
    match parent {
        None => diff_id.hex().to_owned(),
        Some(parent) => {
            let mut hasher = Sha256::new();
            hasher.update(parent.as_bytes());
            hasher.update(b"+");
            hasher.update(diff_id.hex().as_bytes());
            digest_of(hasher.finalize().as_slice()).hex().to_owned()
        }
    }
}

/// The IDs of a stack of layers with these DiffIDs, base first.
pub fn layer_ids(diff_ids: &[Digest]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let id = layer_id(ids.last().map(String::as_str), diff_id);
        ids.push(id);
    }
    ids
}

/// What streaming a layer blob measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// The compression detected from the blob's first bytes.
    pub compression: Compression,
    /// The SHA-256 of the decompressed tar stream (the DiffID).
    pub uncompressed_digest: Digest,
    /// Its size.
    pub uncompressed_size: u64,
}

/// Decompresses `blob` to its end and measures it (for a caller that does not extract it).
pub fn measure_layer<R: Read + Send>(blob: R) -> std::io::Result<LayerDigests> {
    let (compression, mut reader) =
        layerstore_archive::decompress(blob).map_err(std::io::Error::other)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(LayerDigests {
        compression,
        uncompressed_digest: digest_of(hasher.finalize().as_slice()),
        uncompressed_size: size,
    })
}

/// One layer to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// Its ID.
    pub id: String,
    /// The layer below it (`None` for the base).
    pub parent: Option<String>,
    /// The blob, as the manifest lists it.
    pub blob: Blob,
    /// The DiffID the config gives it; the stream must measure the same.
    pub diff_id: Digest,
}

impl LayerPlan {
    /// The layer record podman writes for this layer, from what streaming it measured; the
    /// store adds `created`, `uidset` and `gidset` from its apply. A measured DiffID other
    /// than the config's is an error naming the blob.
    pub fn record(&self, location: &str, measured: &LayerDigests) -> Result<Layer> {
        if measured.uncompressed_digest != self.diff_id {
            return Err(Error::DigestMismatch {
                location: location.to_owned(),
                expected: format!(
                    "{} (the DiffID of blob {} in the config)",
                    self.diff_id, self.blob.digest
                ),
                actual: measured.uncompressed_digest.to_string(),
            });
        }
        let mut layer = Layer::new(self.id.clone());
        layer.parent = self.parent.clone().unwrap_or_default();
        layer.compressed_digest = Some(self.blob.digest.clone());
        layer.compressed_size = i64::try_from(self.blob.size).unwrap_or(i64::MAX);
        layer.uncompressed_digest = Some(measured.uncompressed_digest.clone());
        layer.uncompressed_size = i64::try_from(measured.uncompressed_size).unwrap_or(i64::MAX);
        layer.compression = measured.compression;
        Ok(layer)
    }
}

/// One big-data item of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigDataItem {
    /// Its key.
    pub key: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Everything a pull writes into a store, but the layers' contents.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePlan {
    /// The layers, base first.
    pub layers: Vec<LayerPlan>,
    /// The image record, with big-data names, sizes and digests filled in.
    pub image: Image,
    /// The big-data items, in the order podman stores them.
    pub big_data: Vec<BigDataItem>,
}

/// Plans the commit of `image` (whose config bytes are `config`) under `names`.
pub fn plan(
    location: &str,
    image: &ResolvedImage,
    config: &[u8],
    names: Vec<String>,
) -> Result<ImagePlan> {
    #[derive(serde::Deserialize)]
    struct Config {
        created: Option<String>,
        rootfs: Option<RootFs>,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    let what = || format!("config {}", image.config.digest);
    if sha256_digest(config) != image.config.digest {
        return Err(Error::DigestMismatch {
            location: location.to_owned(),
            expected: image.config.digest.to_string(),
            actual: sha256_digest(config).to_string(),
        });
    }
    let parsed: Config =
        serde_json::from_slice(config).map_err(|e| Error::invalid(location, what(), e))?;
    let diff_ids = parsed
        .rootfs
        .ok_or_else(|| Error::invalid(location, what(), "rootfs is not set"))?
        .diff_ids
        .iter()
        .map(|d| {
            d.parse::<Digest>()
                .map_err(|e| Error::invalid(location, what(), e))
        })
        .collect::<Result<Vec<_>>>()?;
    if diff_ids.len() != image.layers.len() {
        return Err(Error::invalid(
            location,
            what(),
            format!(
                "{} DiffIDs for {} layers in manifest {}",
                diff_ids.len(),
                image.layers.len(),
                image.manifest.digest
            ),
        ));
    }
    let ids = layer_ids(&diff_ids);
    let layers: Vec<LayerPlan> = image
        .layers
        .iter()
        .zip(&diff_ids)
        .enumerate()
        .map(|(i, (blob, diff_id))| LayerPlan {
            id: ids[i].clone(),
            parent: i.checked_sub(1).map(|p| ids[p].clone()),
            blob: blob.clone(),
            diff_id: diff_id.clone(),
        })
        .collect();

    let manifest = &image.manifest;
    let mut big_data = vec![BigDataItem {
        key: image.config.digest.to_string(),
        bytes: config.to_vec(),
    }];
    if let Some(index) = &image.index {
        big_data.push(BigDataItem {
            key: format!("manifest-{}", index.digest),
            bytes: index.bytes.clone(),
        });
    }
    big_data.push(BigDataItem {
        key: format!("manifest-{}", manifest.digest),
        bytes: manifest.bytes.clone(),
    });
    big_data.push(BigDataItem {
        key: "manifest".into(),
        bytes: manifest.bytes.clone(),
    });
    big_data.push(BigDataItem {
        key: format!("signature-{}", manifest.digest.hex()),
        bytes: Vec::new(),
    });

    let mut record = Image::new(image.config.digest.hex());
    record.digest = image.top().digest.to_string();
    record.top_layer = ids.last().cloned().unwrap_or_default();
    let mut sizes = BTreeMap::new();
    sizes.insert(manifest.digest.to_string(), Vec::<u64>::new());
    record.metadata = serde_json::json!({ "signatures-sizes": sizes }).to_string();
    for item in &big_data {
        record.big_data_names.push(item.key.clone());
        record
            .big_data_sizes
            .insert(item.key.clone(), item.bytes.len() as i64);
        record
            .big_data_digests
            .insert(item.key.clone(), sha256_digest(&item.bytes).to_string());
    }
    for name in &names {
        if !record.names.contains(name) {
            record.names.push(name.clone());
        }
    }
    for name in record.names.clone() {
        record.add_name_to_history(&name);
    }
    if let Some(created) = parsed.created.as_deref().filter(|c| !c.is_empty()) {
        record.created = created
            .parse::<Timestamp>()
            .map_err(|e| Error::invalid(location, what(), e))?;
    }
    Ok(ImagePlan {
        layers,
        image: record,
        big_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_chain_as_containers_image_computes_them() {
        // From a podman 4.3 pull (see pulled-image-layout): the second layer's ID.
        let first: Digest =
            "sha256:a663e07bbe8108ff34f5efc30caf6ca4a24695a51e2c15c2620ccc1eb78f7edb"
                .parse()
                .unwrap();
        let second: Digest =
            "sha256:d8a2377818d915712f03bd5d082c51946d4c385bfc0c7f2ade6b64f98881f75e"
                .parse()
                .unwrap();
        assert_eq!(
            layer_ids(&[first.clone(), second]),
            [
                "a663e07bbe8108ff34f5efc30caf6ca4a24695a51e2c15c2620ccc1eb78f7edb",
                "88b78bc4ca80250c9dd286d37a8de78a1934c608724980b8d2842e663c0a99c9"
            ]
        );
        assert_eq!(layer_id(None, &first), first.hex());
    }

    proptest::proptest! {
        /// Each ID depends on the whole stack below it: the same DiffID on another stack gets
        /// another ID, and a prefix of a stack keeps its IDs.
        #[test]
        fn ids_depend_on_the_stack_below(hashes in proptest::collection::vec(proptest::array::uniform32(0u8..), 1..6)) {
            let diff_ids: Vec<Digest> = hashes.iter().map(|h| digest_of(h)).collect();
            let ids = layer_ids(&diff_ids);
            for n in 1..=diff_ids.len() {
                proptest::prop_assert_eq!(&layer_ids(&diff_ids[..n])[..], &ids[..n]);
            }
            for (i, id) in ids.iter().enumerate() {
                let parent = i.checked_sub(1).map(|p| ids[p].as_str());
                proptest::prop_assert_eq!(id, &layer_id(parent, &diff_ids[i]));
                proptest::prop_assert_eq!(id.len(), 64);
            }
        }
    }
}
