//! Manifests and indexes as served: [`RawManifest`] keeps the exact bytes (their digest is the
//! image's digest, so they are never re-serialised) and reads them through oci-spec's types
//! ([`RawManifest::image`], [`RawManifest::index`]). Docker schema 2 manifests and manifest lists have the same shape
//! as OCI's and are read by the same types; schema 1 is refused.

use layerstore_model::Digest;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::platform::Platform;

/// `application/vnd.oci.image.manifest.v1+json`.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `application/vnd.oci.image.layer.v1.tar+zstd`.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// `application/vnd.oci.image.layer.v1.tar`.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// `application/vnd.docker.distribution.manifest.v2+json`.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// `application/vnd.docker.distribution.manifest.list.v2+json`.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.docker.container.image.v1+json`.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// `application/vnd.docker.image.rootfs.diff.tar.gzip` (also used, by containers/image's
/// docker-archive source, for the uncompressed layers it serves).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The media types this crate asks a registry for, single images first.
pub const ACCEPTED_MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
];

/// The largest manifest or config read into memory (containers/image's `iolimits`: 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// A blob as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes, as the manifest says.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// A manifest or index exactly as served, with its digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The SHA-256 of the bytes.
    pub digest: Digest,
    /// The media type: the document's `mediaType`, else what its shape says.
    pub media_type: String,
}

impl RawManifest {
    /// Wraps `bytes`, computing their digest and guessing their media type from their
    /// content (as `manifest.GuessMIMEType` does).
    pub fn new(location: &str, bytes: Vec<u8>) -> Result<RawManifest> {
        let digest = sha256_digest(&bytes);
        let media_type = guess_media_type(location, &digest, &bytes)?;
        Ok(RawManifest {
            bytes,
            digest,
            media_type,
        })
    }

    /// Whether this is an index or manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// Reads it as an image manifest: its config and layers.
    pub fn image(&self, location: &str) -> Result<(Blob, Vec<Blob>)> {
        let what = || format!("manifest {}", self.digest);
        let manifest: ImageManifest =
            serde_json::from_slice(&self.bytes).map_err(|e| Error::invalid(location, what(), e))?;
        if manifest.schema_version() != 2 {
            return Err(Error::invalid(location, what(), "schemaVersion is not 2"));
        }
        let config = blob_of(location, manifest.config())?;
        let layers = manifest
            .layers()
            .iter()
            .map(|d| blob_of(location, d))
            .collect::<Result<Vec<_>>>()?;
        Ok((config, layers))
    }

    /// Reads it as an index and picks the entry for `platform`.
    pub fn choose(&self, location: &str, platform: &Platform) -> Result<Blob> {
        let index = self.index(location)?;
        let entries: Vec<Option<Platform>> = index
            .manifests()
            .iter()
            .map(|d| {
                d.platform().as_ref().map(|p| Platform {
                    os: p.os().to_string(),
                    architecture: p.architecture().to_string(),
                    variant: p.variant().clone().unwrap_or_default(),
                })
            })
            .collect();
        let chosen = platform.choose(&entries).ok_or_else(|| Error::NotFound {
            location: location.to_owned(),
            what: format!("an image for {platform} in index {}", self.digest),
        })?;
        blob_of(location, &index.manifests()[chosen])
    }

    /// Reads it as an index.
    pub fn index(&self, location: &str) -> Result<ImageIndex> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| Error::invalid(location, format!("index {}", self.digest), e))
    }
}

/// What a descriptor says about the blob it points to (sha256 only, as the store keys by it).
pub fn blob_of(location: &str, descriptor: &Descriptor) -> Result<Blob> {
    let text = descriptor.digest().to_string();
    let digest: Digest = text
        .parse()
        .map_err(|e| Error::invalid(location, format!("descriptor {text}"), e))?;
    if digest.algorithm() != layerstore_model::DigestAlgorithm::Sha256 {
        return Err(Error::Unsupported {
            location: location.to_owned(),
            what: format!("digest algorithm of blob {digest}"),
        });
    }
    Ok(Blob {
        digest,
        size: descriptor.size(),
        media_type: descriptor.media_type().to_string(),
    })
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    digest_of(Sha256::digest(bytes).as_slice())
}

/// A sha256 digest from a finished hash.
pub(crate) fn digest_of(hash: &[u8]) -> Digest {
    Digest::from_hash(layerstore_model::DigestAlgorithm::Sha256, hash)
        .expect("a SHA-256 hash is 32 bytes")
}

/// The media type of a manifest from its content: its `mediaType` if it has one; else an
/// index if it has `manifests`, an OCI manifest if it has `config`. Schema 1 is refused.
fn guess_media_type(location: &str, digest: &Digest, bytes: &[u8]) -> Result<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(location, format!("manifest {digest}"), e))?;
    if probe.schema_version == Some(1) {
        return Err(Error::Unsupported {
            location: location.to_owned(),
            what: format!("manifest {digest}: Docker schema 1"),
        });
    }
    match probe.media_type {
        Some(t) if ACCEPTED_MANIFEST_TYPES.contains(&t.as_str()) => Ok(t),
        Some(t) => Err(Error::Unsupported {
            location: location.to_owned(),
            what: format!("manifest {digest}: media type {t}"),
        }),
        None if probe.manifests.is_some() => Ok(OCI_INDEX.to_owned()),
        None if probe.config.is_some() => Ok(OCI_MANIFEST.to_owned()),
        None => Err(Error::invalid(
            location,
            format!("manifest {digest}"),
            "neither a manifest nor an index",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOC: &str = "oci:/x";

    #[test]
    fn media_types_are_read_or_guessed() {
        let m = |s: &str| RawManifest::new(LOC, s.as_bytes().to_vec());
        assert_eq!(
            m(r#"{"schemaVersion":2,"config":{}}"#).unwrap().media_type,
            OCI_MANIFEST
        );
        assert_eq!(
            m(r#"{"schemaVersion":2,"manifests":[]}"#)
                .unwrap()
                .media_type,
            OCI_INDEX
        );
        let list = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}"}}"#);
        assert!(m(&list).unwrap().is_index());
        let err = m(r#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        let err = m(r#"{"schemaVersion":2,"mediaType":"text/plain"}"#).unwrap_err();
        assert!(err.to_string().contains("text/plain"), "{err}");
        assert!(
            m("not json")
                .unwrap_err()
                .to_string()
                .starts_with("oci:/x: invalid manifest sha256:")
        );
    }

    #[test]
    fn an_image_manifest_gives_its_config_and_layers() {
        let hex = "a".repeat(64);
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":7,"digest":"sha256:{hex}"}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","size":9,"digest":"sha256:{hex}"}}]}}"#
        );
        let raw = RawManifest::new(LOC, text.into_bytes()).unwrap();
        let (config, layers) = raw.image(LOC).unwrap();
        assert_eq!(config.size, 7);
        assert_eq!(config.media_type, DOCKER_CONFIG);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].digest.hex(), hex);
        let sha512 = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","size":7,"digest":"sha512:{}"}},"layers":[]}}"#,
            "b".repeat(128)
        );
        let err = RawManifest::new(LOC, sha512.into_bytes())
            .unwrap()
            .image(LOC)
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    }
}
