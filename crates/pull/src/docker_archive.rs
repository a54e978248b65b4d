//! The `docker-archive:FILE[:NAME:TAG|:@INDEX]` source: what `docker save` and `podman save`
//! write (`manifest.json`, a config, uncompressed legacy layer tars), presented as
//! containers/image 5.23's docker-archive source presents it, so that a pull gives the same
//! image as podman's:
//!
//! * the manifest is generated: Docker schema 2, compact JSON in Go's field order, the config
//!   as `application/vnd.docker.container.image.v1+json`, each layer with its DiffID as digest,
//!   its uncompressed size and the media type `…rootfs.diff.tar.gzip` (sic: the layers are
//!   served uncompressed);
//! * a layer blob is the layer file decompressed (if it was compressed), so its digest is the
//!   DiffID from the config.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use layerstore_model::Digest;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::files::{ImageFiles, TarFiles};
use crate::manifest::{
    Blob, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, MAX_MANIFEST_SIZE, RawManifest,
    sha256_digest,
};
use crate::reference::{ArchiveSelector, DockerName, archive_image_name};
use crate::source::{BlobStream, ImageSource};

/// One entry of `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A docker-archive, one image of it chosen.
pub struct DockerArchiveSource {
    files: TarFiles,
    /// The tags podman names the image by (before normalisation).
    tags: Vec<String>,
    config: Vec<u8>,
    config_digest: Digest,
    /// DiffID → the archive member holding that layer.
    layer_paths: HashMap<Digest, String>,
    manifest: RawManifest,
}

impl DockerArchiveSource {
    /// Opens `file` and chooses the image as `ChooseManifestItem` does: by tag, by index, or
    /// the only one.
    pub fn open(file: &Path, selector: Option<&ArchiveSelector>) -> Result<DockerArchiveSource> {
        let mut location = format!("docker-archive:{}", file.display());
        match selector {
            Some(ArchiveSelector::Name(n)) => location = format!("{location}:{n}"),
            Some(ArchiveSelector::Index(i)) => location = format!("{location}:@{i}"),
            None => {}
        }
        let files = TarFiles::open(location.clone(), file)?;
        let items: Vec<ManifestItem> =
            serde_json::from_slice(&files.read_small("manifest.json", MAX_MANIFEST_SIZE)?)
                .map_err(|e| Error::invalid(&location, "manifest.json", e))?;
        let (item, tags) = choose(&location, &items, selector)?;
        let config = files.read_small(&item.config, MAX_MANIFEST_SIZE)?;
        let config_digest = sha256_digest(&config);
        #[derive(Deserialize)]
        struct Config {
            rootfs: Option<RootFs>,
        }
        #[derive(Deserialize)]
        struct RootFs {
            #[serde(default)]
            diff_ids: Vec<String>,
        }
        let what = || format!("config {}", item.config);
        let parsed: Config =
            serde_json::from_slice(&config).map_err(|e| Error::invalid(&location, what(), e))?;
        let diff_ids = parsed
            .rootfs
            .ok_or_else(|| Error::invalid(&location, what(), "rootfs is not set"))?
            .diff_ids;
        if diff_ids.len() != item.layers.len() {
            return Err(Error::invalid(
                &location,
                what(),
                format!(
                    "{} layers in manifest.json, {} in the config",
                    item.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layer_paths = HashMap::new();
        let mut layers = Vec::new();
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        for (diff_id, path) in diff_ids.iter().zip(&item.layers) {
            let diff_id: Digest = diff_id
                .parse()
                .map_err(|e| Error::invalid(&location, what(), e))?;
            let size = match sizes.get(&diff_id) {
                Some(size) => *size,
                None => {
                    let size = uncompressed_size(&files, path)?;
                    sizes.insert(diff_id.clone(), size);
                    layer_paths.insert(diff_id.clone(), path.clone());
                    size
                }
            };
            layers.push((diff_id, size));
        }
        let manifest = RawManifest::new(
            &location,
            generated_manifest(&config_digest, config.len(), &layers).into_bytes(),
        )?;
        Ok(DockerArchiveSource {
            files,
            tags,
            config,
            config_digest,
            layer_paths,
            manifest,
        })
    }
}

/// The image `selector` names among `items`, and the tags podman records for it.
fn choose<'a>(
    location: &str,
    items: &'a [ManifestItem],
    selector: Option<&ArchiveSelector>,
) -> Result<(&'a ManifestItem, Vec<String>)> {
    match selector {
        Some(ArchiveSelector::Name(wanted)) => {
            for item in items {
                for tag in item.repo_tags.iter().flatten() {
                    let parsed = DockerName::parse(tag)
                        .map_err(|e| Error::invalid(location, "manifest.json", e))?;
                    if parsed.normalized().name() == *wanted {
                        return Ok((item, vec![tag.clone()]));
                    }
                }
            }
            Err(Error::NotFound {
                location: location.to_owned(),
                what: format!("tag {wanted:?} in manifest.json"),
            })
        }
        Some(ArchiveSelector::Index(i)) => items
            .get(*i)
            .map(|item| (item, item.repo_tags.clone().unwrap_or_default()))
            .ok_or_else(|| Error::NotFound {
                location: location.to_owned(),
                what: format!("image @{i} (manifest.json has {})", items.len()),
            }),
        None if items.len() == 1 => Ok((&items[0], items[0].repo_tags.clone().unwrap_or_default())),
        None => Err(Error::invalid(
            location,
            "manifest.json",
            format!(
                "expected 1 image, found {}; name one with :NAME:TAG or :@INDEX",
                items.len()
            ),
        )),
    }
}

/// The size of a layer member once decompressed: the member's size when it is not
/// compressed, else counted by decompressing it (as containers/image does).
fn uncompressed_size(files: &TarFiles, path: &str) -> Result<u64> {
    let (stream, size) = files.open_from(path, 0)?;
    let (compression, mut reader) = layerstore_archive::decompress(stream)
        .map_err(|e| Error::invalid(files.location(), format!("layer {path}"), e))?;
    if compression == layerstore_archive::Compression::None {
        return Ok(size);
    }
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| Error::io(files.location(), path, e))
}

/// The schema 2 manifest containers/image generates, byte for byte (Go's `json.Marshal` of
/// its `Schema2` struct: compact, fields in declaration order).
fn generated_manifest(config: &Digest, config_size: usize, layers: &[(Digest, u64)]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(digest, size)| {
            format!(r#"{{"mediaType":"{DOCKER_LAYER_GZIP}","size":{size},"digest":"{digest}"}}"#)
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":{config_size},"digest":"{config}"}},"layers":[{}]}}"#,
        layers.join(",")
    )
}

impl ImageSource for DockerArchiveSource {
    fn location(&self) -> String {
        self.files.location().to_owned()
    }

    fn top_manifest(&self) -> Result<RawManifest> {
        Ok(self.manifest.clone())
    }

    fn manifest(&self, digest: &Digest) -> Result<RawManifest> {
        if *digest == self.manifest.digest {
            return Ok(self.manifest.clone());
        }
        Err(Error::NotFound {
            location: self.location(),
            what: format!("manifest {digest}"),
        })
    }

    fn blob_from(&self, blob: &Blob, offset: u64) -> Result<BlobStream> {
        if blob.digest == self.config_digest {
            let start = (offset as usize).min(self.config.len());
            return Ok(Box::new(std::io::Cursor::new(
                self.config[start..].to_vec(),
            )));
        }
        let path = self
            .layer_paths
            .get(&blob.digest)
            .ok_or_else(|| Error::NotFound {
                location: self.location(),
                what: format!("blob {}", blob.digest),
            })?;
        let (stream, _) = self.files.open_from(path, 0)?;
        let (_, mut reader) = layerstore_archive::decompress(stream)
            .map_err(|e| Error::invalid(&self.location(), format!("layer {path}"), e))?;
        if offset > 0 {
            std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())
                .map_err(|e| Error::io(&self.location(), path.as_str(), e))?;
        }
        Ok(reader)
    }

    fn image_names(&self, _top: &RawManifest) -> Result<Vec<String>> {
        self.tags.iter().map(|t| archive_image_name(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_manifest_is_what_containers_image_writes() {
        // The manifest podman 4.3 stored for `podman pull docker-archive:` of a two-layer
        // image saved by `podman save` (its digest is the image's digest).
        let config: Digest =
            "sha256:624ca13928cd04be153df31f41b4c8380cb2d22ae61352250b5902f8a71898e6"
                .parse()
                .unwrap();
        let l1: Digest = "sha256:a663e07bbe8108ff34f5efc30caf6ca4a24695a51e2c15c2620ccc1eb78f7edb"
            .parse()
            .unwrap();
        let l2: Digest = "sha256:d8a2377818d915712f03bd5d082c51946d4c385bfc0c7f2ade6b64f98881f75e"
            .parse()
            .unwrap();
        let text = generated_manifest(&config, 376, &[(l1, 10240), (l2, 10240)]);
        assert_eq!(
            sha256_digest(text.as_bytes()).to_string(),
            "sha256:cc192c2a2a5f37bb31b6dee4c887b6ddb6ad818d675b4cf09f936de65b0a8ea6"
        );
        assert_eq!(text.len(), 587);
    }

    #[test]
    fn choosing_an_image_follows_choose_manifest_item() {
        let item = |tags: &[&str]| ManifestItem {
            config: "c.json".into(),
            repo_tags: Some(tags.iter().map(|t| t.to_string()).collect()),
            layers: vec![],
        };
        let items = vec![item(&["busybox:latest", "quay.io/a/b:1"]), item(&[])];
        let loc = "docker-archive:/a.tar";
        let by_name = ArchiveSelector::Name("docker.io/library/busybox:latest".into());
        assert_eq!(
            choose(loc, &items, Some(&by_name)).unwrap().1,
            ["busybox:latest"]
        );
        assert_eq!(
            choose(loc, &items, Some(&ArchiveSelector::Index(0)))
                .unwrap()
                .1
                .len(),
            2
        );
        assert!(choose(loc, &items, Some(&ArchiveSelector::Index(2))).is_err());
        let err = choose(loc, &items, None).unwrap_err();
        assert!(
            err.to_string().contains("expected 1 image, found 2"),
            "{err}"
        );
        let missing = ArchiveSelector::Name("docker.io/library/x:latest".into());
        assert!(matches!(
            choose(loc, &items, Some(&missing)),
            Err(Error::NotFound { .. })
        ));
    }
}
