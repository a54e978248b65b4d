//! Image transports for pull and push, and the pull into and push from a
//! [`layerstore::Store`]: what `layerstore pull` and `push` do.
//!
//! * [`ImageReference`]: `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//!   `docker-archive:FILE[:NAME:TAG|:@N]`, `docker://HOST/REPO[:TAG|@DIGEST]` and bare
//!   registry names, normalised as podman 4.3 does (`docker.io/library/…`, `latest`).
//! * [`ImageSource`] ([`open_source`]): manifests and blobs of one image, from [`OciSource`]
//!   (a layout directory or archive), [`DockerArchiveSource`] or [`RegistrySource`]. On top of
//!   any source: [`resolve`] picks the manifest for a [`Platform`] from an index,
//!   [`open_blob`] streams a blob while checking its size and digest, [`fetch_blobs`] runs
//!   several at once, [`read_blob_range`] reads part of one (for partial pulls).
//! * [`ImageDestination`] ([`open_destination`]): [`OciLayoutDestination`],
//!   [`OciArchiveDestination`], [`RegistryDestination`]; [`push_image`] sends a manifest,
//!   config and layer streams a caller gives, [`copy_image`] copies from a source unchanged.
//! * [`commit`]: the layer IDs, layer and image records, big data, names and metadata podman
//!   writes for a pulled image, computed without touching a store; [`commit::plan`] then
//!   [`commit::LayerPlan::record`] for each layer as it is applied.
//! * [`pull_into_store`]: the image written into a Store as podman writes it (the plan
//!   above), several layers fetched and extracted at once into driver staging directories
//!   with no lock held and no temporary copy of a blob, committed base first, each all or
//!   nothing; a failure removes what the pull made. A layer already in the store (same ID)
//!   is reused, so podman's pull after ours, and ours after podman's, fetch nothing twice.
//!   A SIGKILL mid-pull can leave complete unused layers (as podman's can) and staging
//!   directories under `<driver>/staging`, but no image.
//! * [`partial`]: a layer blob whose manifest entry announces a zstd:chunked TOC is pulled
//!   partially: TOC and footer by one range request, files the store already has (in layers
//!   pulled this way) copied locally, only the missing ranges fetched, merged and several at
//!   once, through `layerstore-layers`' `ZstdChunkedDiffer`. The layer is a full pull's (ID,
//!   records, tar-split, `diff`), its DiffID checked before it is made; any failure of the
//!   partial path, or a registry that ignores ranges, falls back to the full pull.
//! * [`push_from_store`]: an image of a Store pushed with its stored manifest and config;
//!   layer blobs rebuilt from tar-split (compressed as pulled), the manifest rewritten only
//!   when a rebuilt blob's digest differs from the recorded one.
//! * [`sample`]: a small deterministic image for the demo and tests
//!   (`cargo run -p layerstore-pull --example make_sample_images -- examples` makes
//!   `examples/image` and `examples/image-oci.tar`).
//!
//! # Streaming
//!
//! Nothing here writes a temporary copy of a blob: local blobs are read in place (an archive
//! is indexed once, never extracted, and members are read with `pread`, so several stream at
//! once), registry blobs stream from the connection through a bounded channel. Every blob is
//! hashed and counted as it streams; a wrong digest, a short or a long blob is an error
//! ([`Error::DigestMismatch`], [`Error::SizeMismatch`]) naming the blob and the source, raised
//! by the read that reaches the end (or by [`VerifyingReader::verify_to_end`] for a consumer
//! that stops early, as a tar reader does).
//!
//! A gzip or zstd layer is decompressed on a thread of its own ahead of
//! `layerstore_archive::apply`, which then sees a plain tar stream: it hashes the DiffID on its
//! reader thread and writes small files on its file writer thread, so one layer's work spreads
//! over four threads instead of two (`inflate.rs` says why and what was measured). A registry
//! blob is asked for as the range `bytes=0-`, so oci-client does not hash it a second time.
//!
//! # Registries
//!
//! HTTP API v2 through oci-client (the ORAS project's client, the maintained successor of
//! `oci-distribution`: anonymous, basic and bearer-token auth, range requests, chunked uploads,
//! cross-repository mounts) and oci-spec's types, on a small tokio runtime that each
//! connection owns behind this crate's blocking API. TLS through rustls with the ring provider.
//! Transient failures are retried a bounded number of times; a blob cut off mid-stream resumes
//! with a range request from where it stopped.
//!
//! # Differences from podman
//!
//! * A bare name (`busybox`) is read as `docker.io/library/busybox:latest`; podman would
//!   consult `registries.conf` (search registries, short-name aliases).
//! * Credential helpers (`credHelpers`, `credsStore`) and identity tokens in auth files are
//!   not used. `tls_verify: false` means plain HTTP to that registry (podman tries HTTPS
//!   without verification first).
//! * A blob upload that fails mid-stream is not retried (the caller's stream cannot be
//!   replayed); requests without a body are.
//! * The config's DiffIDs are checked against what each layer measures
//!   ([`commit::LayerPlan::record`]); containers/image 5.23 does not check them.
//!
//! # Limitations
//!
//! * A manifest from a registry is read whole by oci-client before its size can be checked
//!   (configs and blobs are bounded by their descriptors' sizes).
//! * A compressed layer in a docker-archive is decompressed once to learn its size, as
//!   containers/image does, with no bound but the data.
//! * Signatures are neither fetched nor written: the plan records none, as podman does for an
//!   unsigned image.
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

#![forbid(unsafe_code)]

pub mod auth;
pub mod commit;
pub mod dest;
mod docker_archive;
mod error;
mod files;
mod from_store;
mod inflate;
mod into_store;
pub mod manifest;
mod oci;
mod oci_dest;
pub mod partial;
mod platform;
mod reference;
mod registry;
pub mod sample;
mod source;

pub use dest::{CopySelection, ImageDestination, PushImage, PushReport, copy_image, push_image};
pub use docker_archive::DockerArchiveSource;
pub use error::{Error, RegistryErrorKind, Result};
pub use from_store::push_from_store;
pub use into_store::{PullEvent, PullOptions, PullReport, pull_into_store};
pub use manifest::{Blob, RawManifest};
pub use oci::{CONTAINERD_NAME_ANNOTATION, OciSource, REF_NAME_ANNOTATION};
pub use oci_dest::{OciArchiveDestination, OciLayoutDestination};
pub use platform::Platform;
pub use reference::{ArchiveSelector, ImageReference, RegistryReference};
pub use source::{
    BlobStream, ImageSource, ResolvedImage, VerifyingReader, fetch_blobs, open_blob, read_blob,
    read_blob_range, read_config, resolve,
};

pub use registry::{RegistryDestination, RegistryOptions, RegistrySource};

/// How to reach a source or destination (registry options; local transports need none).
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// Options for `docker://` references.
    pub registry: RegistryOptions,
}

/// Opens the source `reference` names.
pub fn open_source(
    reference: &ImageReference,
    options: &TransportOptions,
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
        ImageReference::Registry(r) => Box::new(RegistrySource::open(r, &options.registry)?),
    })
}

/// Opens the push destination `reference` names (`oci:`, `oci-archive:` or `docker://`).
pub fn open_destination(
    reference: &ImageReference,
    options: &TransportOptions,
) -> Result<Box<dyn ImageDestination>> {
    Ok(match reference {
        ImageReference::Oci { dir, reference } => {
            Box::new(OciLayoutDestination::create(dir, reference.as_deref())?)
        }
        ImageReference::OciArchive { file, reference } => {
            Box::new(OciArchiveDestination::create(file, reference.as_deref())?)
        }
        ImageReference::Registry(r) => Box::new(RegistryDestination::open(r, &options.registry)?),
        ImageReference::DockerArchive { .. } => {
            return Err(Error::Unsupported {
                location: reference.to_string(),
                what: "push destination (docker-archive)".into(),
            });
        }
    })
}
