//! Image transports for pull and push: everything of `layerstore pull` and `push` that does
//! not write into a store.
//!
//! * [`ImageReference`]: `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//!   `docker-archive:FILE[:NAME:TAG|:@N]`, `docker://HOST/REPO[:TAG|@DIGEST]` and bare
//!   registry names, normalised as podman does.
//! * [`ImageSource`]: manifests and blobs of one image, from [`OciSource`] (layout directory
//!   or archive), [`DockerArchiveSource`] or a registry; [`resolve`] picks the manifest for a
//!   [`Platform`], [`open_blob`] streams a blob while checking its size and digest,
//!   [`fetch_blobs`] runs several at once, [`read_blob_range`] reads part of one.
//! * [`commit`]: the IDs, records and big data podman writes for a pulled image, computed
//!   without touching a store.
//!
//! Nothing here writes a temporary copy of a blob: local blobs are read in place (an archive
//! is indexed, never extracted), registry blobs stream from the connection.
//!
//! ```no_run
//! use layerstore_pull::{ImageReference, Platform, open_source, resolve, open_blob};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reference: ImageReference = "oci:examples/image:demo".parse()?;
//! let source = open_source(&reference, &Default::default())?;
//! let image = resolve(source.as_ref(), &Platform::host())?;
//! for layer in &image.layers {
//!     let mut blob = open_blob(source.as_ref(), layer)?;
//!     std::io::copy(&mut blob, &mut std::io::sink())?; // fails unless the digest matches
//! }
//! # Ok(()) }
//! ```

pub mod commit;
pub mod dest;
mod docker_archive;
mod error;
mod files;
pub mod manifest;
mod oci;
mod oci_dest;
mod platform;
mod reference;
pub mod sample;
mod source;

pub use dest::{CopySelection, ImageDestination, PushImage, PushReport, copy_image, push_image};
pub use docker_archive::DockerArchiveSource;
pub use error::{Error, RegistryErrorKind, Result};
pub use manifest::{Blob, RawManifest};
pub use oci::{CONTAINERD_NAME_ANNOTATION, OciSource, REF_NAME_ANNOTATION};
pub use oci_dest::{OciArchiveDestination, OciLayoutDestination};
pub use platform::Platform;
pub use reference::{ArchiveSelector, ImageReference, RegistryReference};
pub use source::{
    BlobStream, ImageSource, ResolvedImage, VerifyingReader, fetch_blobs, open_blob, read_blob,
    read_blob_range, read_config, resolve,
};

/// How to reach a source or destination (registry options; local transports need none).
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {}

/// Opens the source `reference` names.
pub fn open_source(
    reference: &ImageReference,
    _options: &TransportOptions,
) -> Result<Box<dyn ImageSource>> {
    Ok(match reference {
        ImageReference::Oci { dir, reference } => {
            Box::new(OciSource::open_dir(dir, reference.as_deref())?)
        }
        ImageReference::OciArchive { file, reference } => {
            Box::new(OciSource::open_archive(file, reference.as_deref())?)
        }
        ImageReference::DockerArchive { file, selector } => {
            Box::new(DockerArchiveSource::open(file, selector.as_ref())?)
        }
        ImageReference::Registry(r) => {
            return Err(Error::Unsupported {
                location: format!("docker://{r}"),
                what: "transport (registries come next)".into(),
            });
        }
    })
}
