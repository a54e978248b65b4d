//! Sources for an OCI image layout: a directory (`oci:DIR[:REF]`) or a tar archive of one
//! (`oci-archive:FILE[:REF]`). Blobs are read in place (the archive is indexed, not
//! extracted); the manifest is chosen from `index.json` as containers/image 5.23 chooses it.

use std::path::{Path, PathBuf};

use layerstore_model::Digest;
use oci_spec::image::{Descriptor, ImageIndex};

use crate::error::{Error, Result};
use crate::files::{DirFiles, ImageFiles, TarFiles};
use crate::manifest::{Blob, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST, RawManifest, blob_of};
use crate::reference::{archive_image_name, oci_layout_image_name};
use crate::source::{BlobStream, ImageSource};

/// `org.opencontainers.image.ref.name`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// `io.containerd.image.name` (buildkit and containerd name archived images with it).
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// An OCI image layout, in a directory or an archive.
pub struct OciSource {
    files: Box<dyn ImageFiles>,
    reference: Option<String>,
    /// The directory as given, which podman names the image after (not resolved: a relative
    /// `oci:layout` is `localhost/layout`), or `None` for an archive.
    name_dir: Option<PathBuf>,
}

impl OciSource {
    /// The layout in directory `dir`; `reference` picks a manifest by its ref-name annotation
    /// (without one, `index.json` must list exactly one).
    pub fn open_dir(dir: &Path, reference: Option<&str>) -> Result<OciSource> {
        let location = location("oci", dir, reference);
        let resolved = std::fs::canonicalize(dir).map_err(|e| Error::io(&location, dir, e))?;
        let files = DirFiles::open(location, &resolved)?;
        OciSource::new(Box::new(files), reference, Some(dir.to_path_buf()))
    }

    /// The layout inside tar file `file`.
    pub fn open_archive(file: &Path, reference: Option<&str>) -> Result<OciSource> {
        let files = TarFiles::open(location("oci-archive", file, reference), file)?;
        OciSource::new(Box::new(files), reference, None)
    }

    fn new(
        files: Box<dyn ImageFiles>,
        reference: Option<&str>,
        name_dir: Option<PathBuf>,
    ) -> Result<OciSource> {
        let source = OciSource {
            files,
            reference: reference.map(str::to_owned),
            name_dir,
        };
        let layout = source.files.read_small("oci-layout", 1 << 16)?;
        let version = serde_json::from_slice::<serde_json::Value>(&layout)
            .ok()
            .and_then(|v| v["imageLayoutVersion"].as_str().map(str::to_owned));
        if version.as_deref() != Some("1.0.0") {
            return Err(Error::invalid(
                source.files.location(),
                "oci-layout",
                "imageLayoutVersion is not \"1.0.0\"",
            ));
        }
        Ok(source)
    }

    /// `index.json`.
    pub fn index(&self) -> Result<ImageIndex> {
        let bytes = self.files.read_small("index.json", MAX_MANIFEST_SIZE)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(self.files.location(), "index.json", e))
    }

    /// The `index.json` entry the reference names (`getManifestDescriptor`).
    pub fn descriptor(&self) -> Result<Descriptor> {
        let index = self.index()?;
        let location = self.files.location();
        match &self.reference {
            None if index.manifests().len() == 1 => Ok(index.manifests()[0].clone()),
            None => Err(Error::invalid(
                location,
                "index.json",
                format!(
                    "it lists {} images; name one with :REF",
                    index.manifests().len()
                ),
            )),
            Some(name) => index
                .manifests()
                .iter()
                .find(|d| {
                    let media_type = d.media_type().to_string();
                    (media_type == OCI_MANIFEST || media_type == OCI_INDEX)
                        && d.annotations()
                            .as_ref()
                            .and_then(|a| a.get(REF_NAME_ANNOTATION))
                            == Some(name)
                })
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    location: location.to_owned(),
                    what: format!("reference {name:?} in index.json"),
                }),
        }
    }

    fn blob_path(digest: &Digest) -> String {
        format!("blobs/{}/{}", digest.algorithm(), digest.hex())
    }

    fn read_manifest(&self, blob: &Blob) -> Result<RawManifest> {
        let location = self.files.location();
        if blob.size > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge {
                location: location.to_owned(),
                what: format!("manifest {}", blob.digest),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let bytes = self
            .files
            .read_small(&OciSource::blob_path(&blob.digest), MAX_MANIFEST_SIZE)?;
        let raw = RawManifest::new(location, bytes)?;
        if raw.digest != blob.digest {
            return Err(Error::DigestMismatch {
                location: location.to_owned(),
                expected: blob.digest.to_string(),
                actual: raw.digest.to_string(),
            });
        }
        Ok(raw)
    }
}

fn location(transport: &str, path: &Path, reference: Option<&str>) -> String {
    match reference {
        Some(r) => format!("{transport}:{}:{r}", path.display()),
        None => format!("{transport}:{}", path.display()),
    }
}

impl ImageSource for OciSource {
    fn location(&self) -> String {
        self.files.location().to_owned()
    }

    fn top_manifest(&self) -> Result<RawManifest> {
        let descriptor = self.descriptor()?;
        self.read_manifest(&blob_of(self.files.location(), &descriptor)?)
    }

    fn manifest(&self, digest: &Digest) -> Result<RawManifest> {
        let path = OciSource::blob_path(digest);
        let bytes = self.files.read_small(&path, MAX_MANIFEST_SIZE)?;
        let raw = RawManifest::new(self.files.location(), bytes)?;
        if &raw.digest != digest {
            return Err(Error::DigestMismatch {
                location: self.location(),
                expected: digest.to_string(),
                actual: raw.digest.to_string(),
            });
        }
        Ok(raw)
    }

    fn blob_from(&self, blob: &Blob, offset: u64) -> Result<BlobStream> {
        Ok(self
            .files
            .open_from(&OciSource::blob_path(&blob.digest), offset)?
            .0)
    }

    fn image_names(&self, _top: &RawManifest) -> Result<Vec<String>> {
        match &self.name_dir {
            Some(dir) => Ok(vec![oci_layout_image_name(dir)?]),
            None => {
                let descriptor = self.descriptor()?;
                let annotations = descriptor.annotations().clone().unwrap_or_default();
                let name = annotations
                    .get(CONTAINERD_NAME_ANNOTATION)
                    .filter(|n| !n.is_empty())
                    .or_else(|| annotations.get(REF_NAME_ANNOTATION));
                match name {
                    Some(name) if !name.is_empty() => Ok(vec![archive_image_name(name)?]),
                    _ => Ok(Vec::new()),
                }
            }
        }
    }
}
