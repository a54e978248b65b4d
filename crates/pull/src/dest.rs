//! [`ImageDestination`]: where `push` writes an image (an OCI layout, an OCI archive, a
//! registry), and [`push_image`] / [`copy_image`], the same for all of them: blobs first (each
//! skipped when the destination has it), then the manifests, the top one last.

use std::io::Read;

use crate::error::{Error, Result};
use crate::manifest::{Blob, RawManifest};
use crate::platform::Platform;
use crate::source::{
    BlobStream, ImageSource, VerifyingReader, blob_read_error, open_blob, resolve,
};

/// A place images are pushed to. Calls may come from several threads at once.
pub trait ImageDestination: Send + Sync {
    /// The destination in transport form, for messages.
    fn location(&self) -> String;

    /// Whether the destination already holds this blob (then it is not sent again).
    fn has_blob(&self, blob: &Blob) -> Result<bool>;

    /// Stores a blob read from `stream`; the destination checks size and digest while it
    /// writes and keeps nothing of a blob that fails.
    fn put_blob(&self, blob: &Blob, stream: BlobStream) -> Result<()>;

    /// Stores a manifest or index exactly as given. The `top` one is what the destination's
    /// reference names (tagged); the others (an index's entries) are stored by digest.
    fn put_manifest(&self, manifest: &RawManifest, top: bool) -> Result<()>;

    /// Makes what was stored visible (an archive is finished and renamed into place).
    fn commit(&self) -> Result<()>;
}

/// An image to push, as a caller gives it: its manifest, config, and the layers' streams.
pub struct PushImage<'a> {
    /// The manifest, exactly as it will be stored.
    pub manifest: RawManifest,
    /// The config blob's bytes.
    pub config: Vec<u8>,
    /// Opens a layer blob of the manifest.
    pub open_layer: &'a (dyn Fn(&Blob) -> Result<BlobStream> + Sync),
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Blobs sent.
    pub blobs_sent: usize,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
}

/// Pushes `image` to `dest`, up to `parallel` blobs at once, and commits it.
pub fn push_image(
    dest: &dyn ImageDestination,
    image: &PushImage<'_>,
    parallel: usize,
) -> Result<PushReport> {
    let location = dest.location();
    let (config, layers) = image.manifest.image(&location)?;
    let config_bytes = image.config.clone();
    let mut report = put_blobs(dest, &[config], parallel, &|_| {
        Ok(Box::new(std::io::Cursor::new(config_bytes.clone())))
    })?;
    let layer_report = put_blobs(dest, &layers, parallel, image.open_layer)?;
    report.blobs_sent += layer_report.blobs_sent;
    report.blobs_skipped += layer_report.blobs_skipped;
    dest.put_manifest(&image.manifest, true)?;
    dest.commit()?;
    Ok(report)
}

/// Which images of a source to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySelection {
    /// The image for this platform (an index is resolved, not copied).
    One(Platform),
    /// Every image of an index, and the index itself.
    All,
}

/// Copies the image `source` names to `dest` (what `skopeo copy` does, without conversion:
/// the manifest bytes and blob digests stay the same).
pub fn copy_image(
    source: &dyn ImageSource,
    dest: &dyn ImageDestination,
    selection: &CopySelection,
    parallel: usize,
) -> Result<PushReport> {
    let open = |blob: &Blob| -> Result<BlobStream> { Ok(Box::new(open_blob(source, blob)?)) };
    match selection {
        CopySelection::One(platform) => {
            let image = resolve(source, platform)?;
            let config = crate::source::read_config(source, &image)?;
            push_image(
                dest,
                &PushImage {
                    manifest: image.manifest,
                    config,
                    open_layer: &open,
                },
                parallel,
            )
        }
        CopySelection::All => {
            let top = source.top_manifest()?;
            let mut report = PushReport::default();
            let mut manifests = Vec::new();
            if top.is_index() {
                for entry in top.index(&source.location())?.manifests() {
                    let blob = crate::manifest::blob_of(&source.location(), entry)?;
                    manifests.push(source.manifest(&blob.digest)?);
                }
            } else {
                manifests.push(top.clone());
            }
            for manifest in &manifests {
                let (config, layers) = manifest.image(&source.location())?;
                let mut blobs = vec![config];
                blobs.extend(layers);
                let r = put_blobs(dest, &blobs, parallel, &open)?;
                report.blobs_sent += r.blobs_sent;
                report.blobs_skipped += r.blobs_skipped;
                if top.is_index() {
                    dest.put_manifest(manifest, false)?;
                }
            }
            dest.put_manifest(&top, true)?;
            dest.commit()?;
            Ok(report)
        }
    }
}

/// Puts each blob not already in `dest`, up to `parallel` at once.
fn put_blobs(
    dest: &dyn ImageDestination,
    blobs: &[Blob],
    parallel: usize,
    open: &(dyn Fn(&Blob) -> Result<BlobStream> + Sync),
) -> Result<PushReport> {
    let mut unique: Vec<&Blob> = Vec::new();
    for blob in blobs {
        if !unique.iter().any(|b| b.digest == blob.digest) {
            unique.push(blob);
        }
    }
    let sent = crate::source::in_parallel(unique.len(), parallel, |i| {
        let blob = unique[i];
        if dest.has_blob(blob)? {
            return Ok(false);
        }
        dest.put_blob(blob, open(blob)?)?;
        Ok(true)
    })?;
    let blobs_sent = sent.iter().filter(|s| **s).count();
    Ok(PushReport {
        blobs_sent,
        blobs_skipped: sent.len() - blobs_sent,
    })
}

/// Copies `stream` into `out` through a [`VerifyingReader`] for `blob`, so a destination
/// writes exactly the blob or fails naming it.
pub(crate) fn copy_verified(
    location: &str,
    blob: &Blob,
    stream: BlobStream,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let mut reader = VerifyingReader::new(stream, blob.clone(), location.to_owned());
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| blob_read_error(location, blob, e))?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(location, format!("blob {}", blob.digest), e))?;
    }
}
