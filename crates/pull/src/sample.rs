//! [`SampleImage`]: a small image built in memory from a base layer tarball, for the demo and
//! the tests: two layers (the base, and a small second layer with a file and a whiteout), a
//! config and a manifest; or an index of two such images for `linux/amd64` and
//! `linux/arm64/v8`. Deterministic: the same base gives the same digests (for a given flate2 and
//! zstd). It is an [`ImageSource`], so [`crate::copy_image`] writes it anywhere.

use std::collections::HashMap;
use std::io::Write;

use layerstore_model::Digest;
use serde_json::json;

use crate::error::{Error, Result};
use crate::manifest::{
    Blob, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST, RawManifest,
    sha256_digest,
};
use crate::platform::Platform;
use crate::source::{BlobStream, ImageSource};

/// How the sample's layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleCompression {
    /// gzip, level 9, no name or time in the header.
    Gzip,
    /// zstd, level 3.
    Zstd,
}

/// An image held in memory.
#[derive(Debug, Clone)]
pub struct SampleImage {
    top: RawManifest,
    manifests: HashMap<Digest, RawManifest>,
    blobs: HashMap<Digest, Vec<u8>>,
}

/// 2024-01-01T00:00:00Z, the time of every entry and of the config.
const SAMPLE_TIME: u64 = 1_704_067_200;

/// The second layer: `etc/motd` and a whiteout of `usr/bin/hi` (GNU tar format).
pub fn second_layer_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(SAMPLE_TIME);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, path, data)
            .expect("writing to memory");
    };
    add("etc/", tar::EntryType::Directory, 0o755, b"");
    add(
        "etc/motd",
        tar::EntryType::Regular,
        0o644,
        b"Pulled by layerstore.\n",
    );
    add("usr/", tar::EntryType::Directory, 0o755, b"");
    add("usr/bin/", tar::EntryType::Directory, 0o755, b"");
    add("usr/bin/.wh.hi", tar::EntryType::Regular, 0o644, b"");
    builder.into_inner().expect("writing to memory")
}

fn compress(tar: &[u8], compression: SampleCompression) -> Vec<u8> {
    match compression {
        SampleCompression::Gzip => {
            let mut encoder = flate2::GzBuilder::new()
                .operating_system(255)
                .write(Vec::new(), flate2::Compression::best());
            encoder.write_all(tar).expect("writing to memory");
            encoder.finish().expect("writing to memory")
        }
        SampleCompression::Zstd => zstd::encode_all(tar, 3).expect("compressing in memory"),
    }
}

impl SampleImage {
    /// One image for `linux/amd64`: `base_layer` (a tarball) and [`second_layer_tar`].
    pub fn new(base_layer: &[u8], compression: SampleCompression) -> Result<SampleImage> {
        let mut image = SampleImage {
            // Replaced below, once the image's manifest exists.
            top: RawManifest {
                bytes: Vec::new(),
                digest: sha256_digest(b""),
                media_type: String::new(),
            },
            manifests: HashMap::new(),
            blobs: HashMap::new(),
        };
        image.top = image.add_image(base_layer, compression, &"linux/amd64".parse()?)?;
        Ok(image)
    }

    /// An OCI index of two images, for `linux/amd64` and `linux/arm64/v8` (gzip layers).
    pub fn multi_arch(base_layer: &[u8]) -> Result<SampleImage> {
        let mut image = SampleImage::new(base_layer, SampleCompression::Gzip)?;
        let amd64 = image.top.clone();
        let arm64 = image.add_image(
            base_layer,
            SampleCompression::Gzip,
            &"linux/arm64/v8".parse()?,
        )?;
        let entry = |m: &RawManifest, p: &Platform| {
            let mut platform = json!({"architecture": p.architecture, "os": p.os});
            if !p.variant.is_empty() {
                platform["variant"] = json!(p.variant);
            }
            json!({"mediaType": OCI_MANIFEST, "digest": m.digest.to_string(), "size": m.bytes.len(), "platform": platform})
        };
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entry(&amd64, &"linux/amd64".parse()?), entry(&arm64, &"linux/arm64/v8".parse()?)],
        });
        image.top = RawManifest::new("sample", serde_json::to_vec(&index).expect("JSON"))?;
        Ok(image)
    }

    fn add_blob(&mut self, bytes: Vec<u8>, media_type: &str) -> Blob {
        let blob = Blob {
            digest: sha256_digest(&bytes),
            size: bytes.len() as u64,
            media_type: media_type.to_owned(),
        };
        self.blobs.insert(blob.digest.clone(), bytes);
        blob
    }

    fn add_image(
        &mut self,
        base: &[u8],
        compression: SampleCompression,
        platform: &Platform,
    ) -> Result<RawManifest> {
        let layer_type = match compression {
            SampleCompression::Gzip => OCI_LAYER_GZIP,
            SampleCompression::Zstd => OCI_LAYER_ZSTD,
        };
        let tars = [base.to_vec(), second_layer_tar()];
        let diff_ids: Vec<String> = tars.iter().map(|t| sha256_digest(t).to_string()).collect();
        let layers: Vec<Blob> = tars
            .iter()
            .map(|t| self.add_blob(compress(t, compression), layer_type))
            .collect();
        let mut config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/usr/bin/hello"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": "layerstore sample: base layer"},
                {"created": "2024-01-01T00:00:00Z", "created_by": "layerstore sample: motd, whiteout"},
            ],
        });
        if !platform.variant.is_empty() {
            config["variant"] = json!(platform.variant);
        }
        let config = self.add_blob(serde_json::to_vec(&config).expect("JSON"), OCI_CONFIG);
        let descriptor = |b: &Blob| json!({"mediaType": b.media_type, "digest": b.digest.to_string(), "size": b.size});
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(&config),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        });
        let manifest = RawManifest::new("sample", serde_json::to_vec(&manifest).expect("JSON"))?;
        self.manifests
            .insert(manifest.digest.clone(), manifest.clone());
        Ok(manifest)
    }
}

impl ImageSource for SampleImage {
    fn location(&self) -> String {
        "sample".into()
    }

    fn top_manifest(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }

    fn manifest(&self, digest: &Digest) -> Result<RawManifest> {
        self.manifests
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                location: "sample".into(),
                what: format!("manifest {digest}"),
            })
    }

    fn blob_from(&self, blob: &Blob, offset: u64) -> Result<BlobStream> {
        let bytes = self
            .blobs
            .get(&blob.digest)
            .ok_or_else(|| Error::NotFound {
                location: "sample".into(),
                what: format!("blob {}", blob.digest),
            })?;
        let start = (offset as usize).min(bytes.len());
        Ok(Box::new(std::io::Cursor::new(bytes[start..].to_vec())))
    }

    fn image_names(&self, _top: &RawManifest) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
