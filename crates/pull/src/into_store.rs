//! Writing a pulled image into a [`layerstore::Store`], as podman 4.3 writes it (the
//! [`commit`](crate::commit) plan).
//!
//! [`pull_into_store`]: the image is resolved for the platform and planned; each layer whose
//! ID the store already has is reused, not fetched (a podman pull after ours, or ours after
//! podman's, reuses every layer). The missing layers are fetched up to
//! [`PullOptions::parallel`] at once: each blob streams from the source through digest and
//! size checks, decompression and extraction into a staging directory of the driver
//! ([`layerstore::Store::stage_layer`]: no lock held, no temporary copy of the blob), so a
//! layer may be extracted before its parent exists. The measured DiffID is checked against
//! the config before the layer is made. Staged layers are committed in order, base first
//! ([`layerstore::Store::put_staged_layer`]: each layer all or nothing). Then the image: made
//! with the config digest as ID, its big data set in podman's order, then its names (so the
//! names history is written as podman writes it). An image already there (same ID) gets the
//! names and big data added, as containers/image does.
//!
//! A failure anywhere removes what this pull made (staged trees, layers, a new image) and
//! returns the first error; the store lists nothing of the failed pull. A process killed
//! mid-pull leaves at most complete, unused layers (as podman does) and no image.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use layerstore::{
    Differ, DifferOptions, DifferOutput, HostMapping, Image, LayerOptions, NewImage, Store,
};

use crate::Platform;
use crate::commit::{ImagePlan, LayerDigests, LayerPlan, plan};
use crate::error::{Error, Result};
use crate::inflate::{TarStream, chunk_pipe, tar_stream};
use crate::manifest::sha256_digest;
use crate::partial::TocAnnotation;
use crate::source::{
    BlobStream, ImageSource, VerifyingReader, blob_read_error, open_blob, read_config, resolve,
};

/// What a pull reports as it goes (for progress bars). Called from several threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The image was resolved: its layers (base first) and which of them the store has.
    Planned {
        /// Each layer's blob digest and size, base first.
        layers: Vec<(String, u64)>,
        /// Whether the store already has each layer (then it is not fetched).
        present: Vec<bool>,
    },
    /// `bytes` more of layer `index`'s blob were read.
    Read {
        /// The layer's position, base first.
        index: usize,
        /// Bytes read since the last event.
        bytes: u64,
    },
    /// Layer `index` is in the store.
    Committed {
        /// The layer's position, base first.
        index: usize,
    },
}

/// How to pull.
pub struct PullOptions<'a> {
    /// The platform an index resolves to.
    pub platform: Platform,
    /// Layers fetched and extracted at once (at least one).
    pub parallel: usize,
    /// The image's names; `None`: what the source says podman names it.
    pub names: Option<Vec<String>>,
    /// Called as the pull goes.
    pub progress: Option<&'a (dyn Fn(PullEvent) + Sync)>,
}

impl Default for PullOptions<'_> {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            parallel: 4,
            names: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for PullOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("parallel", &self.parallel)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image as the store records it.
    pub image: Image,
    /// The IDs of the layers this pull made, base first.
    pub layers_made: Vec<String>,
    /// The IDs of the layers the store already had, base first.
    pub layers_reused: Vec<String>,
}

/// Pulls the image `source` names into `store`, as podman 4.3 writes it: layers the store
/// has (same ID) are reused; the missing ones are fetched [`PullOptions::parallel`] at once,
/// each blob streaming through its digest check into a staging directory
/// ([`Store::stage_layer`]), its DiffID checked, then committed base first
/// ([`Store::put_staged_layer`]); then the image (ID = config digest, big data in podman's
/// order, names, metadata). A failure removes everything this pull made and returns the
/// first error.
pub fn pull_into_store(
    store: &Store,
    source: &dyn ImageSource,
    options: &PullOptions<'_>,
) -> Result<PullReport> {
    let location = source.location();
    let image = resolve(source, &options.platform)?;
    let config = read_config(source, &image)?;
    let names = match &options.names {
        Some(names) => names.clone(),
        None => source.image_names(image.top())?,
    };
    let planned = plan(&location, &image, &config, names)?;
    // A layer's ID covers the whole stack below it: once one is missing, so is every later one.
    let first_missing = planned
        .layers
        .iter()
        .position(|layer| store.layer(&layer.id).is_err())
        .unwrap_or(planned.layers.len());
    if let Some(progress) = options.progress {
        progress(PullEvent::Planned {
            layers: planned
                .layers
                .iter()
                .map(|l| (l.blob.digest.to_string(), l.blob.size))
                .collect(),
            present: (0..planned.layers.len())
                .map(|i| i < first_missing)
                .collect(),
        });
    }
    let tocs = crate::partial::toc_annotations(&image.manifest);
    let made = pull_layers(
        store,
        source,
        &planned.layers[first_missing..],
        tocs.get(first_missing..).unwrap_or_default(),
        first_missing,
        options,
    )
    .map_err(|(e, made)| {
        remove_layers(store, &made);
        e
    })?;
    let committed = commit_image(store, &location, &planned).inspect_err(|_| {
        remove_layers(store, &made);
    })?;
    Ok(PullReport {
        image: committed,
        layers_reused: planned.layers[..first_missing]
            .iter()
            .map(|l| l.id.clone())
            .collect(),
        layers_made: made,
    })
}

/// Removes layers this pull made, top first (best effort: the pull's error is what counts).
fn remove_layers(store: &Store, made: &[String]) {
    for id in made.iter().rev() {
        let _ = store.delete_layer(id);
    }
}

/// Fetches, stages and commits `layers` (in order; the first one's parent is in the store;
/// the first one is layer `base_index` of the image). On failure, the error and the IDs of
/// the layers already made.
fn pull_layers(
    store: &Store,
    source: &dyn ImageSource,
    layers: &[LayerPlan],
    tocs: &[Option<TocAnnotation>],
    base_index: usize,
    options: &PullOptions<'_>,
) -> std::result::Result<Vec<String>, (Error, Vec<String>)> {
    let location = source.location();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut made: Vec<String> = Vec::new();
    let mut first_error: Option<Error> = None;
    let (sender, receiver) = mpsc::channel::<(usize, Result<DifferOutput>)>();
    // Trees staged but not yet committed (a failure removes them).
    let leftovers: Mutex<Vec<DifferOutput>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..options.parallel.clamp(1, layers.len().max(1)) {
            let sender = sender.clone();
            let (next, stop, location) = (&next, &stop, &location);
            scope.spawn(move || {
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(layer) = layers.get(i) else {
                        return;
                    };
                    let toc = tocs.get(i).and_then(Option::as_ref);
                    let staged =
                        stage(store, source, location, layer, toc, base_index + i, options);
                    if sender.send((i, staged)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        // Commit in order as staged layers arrive; keep the ones that came early.
        let mut waiting: BTreeMap<usize, DifferOutput> = BTreeMap::new();
        let mut committed = 0usize;
        for (i, staged) in receiver.iter() {
            if first_error.is_some() {
                if let Ok(output) = staged {
                    leftovers.lock().expect("not poisoned").push(output);
                }
                continue;
            }
            match staged {
                Ok(output) => {
                    waiting.insert(i, output);
                }
                Err(e) => {
                    first_error = Some(e);
                    stop.store(true, Ordering::SeqCst);
                    continue;
                }
            }
            while let Some(output) = waiting.remove(&committed) {
                let layer = &layers[committed];
                let layer_options = LayerOptions {
                    id: Some(layer.id.clone()),
                    parent: layer.parent.clone(),
                    ..LayerOptions::default()
                };
                match store.put_staged_layer(&layer_options, HostMapping::default(), &output) {
                    Ok(_) => {
                        made.push(layer.id.clone());
                        if let Some(progress) = options.progress {
                            progress(PullEvent::Committed {
                                index: base_index + committed,
                            });
                        }
                        committed += 1;
                    }
                    Err(e) => {
                        first_error = Some(Error::store(
                            &location,
                            format!("layer {} (blob {})", layer.id, layer.blob.digest),
                            e,
                        ));
                        stop.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
        }
        leftovers
            .lock()
            .expect("not poisoned")
            .extend(waiting.into_values());
    });
    for output in leftovers.into_inner().expect("not poisoned") {
        let _ = store
            .layer_store()
            .cleanup_staging_directory(&output.target);
    }
    match first_error {
        Some(e) => Err((e, made)),
        None => Ok(made),
    }
}

/// Streams layer `layer`'s blob into a staging directory, checking its digest, size and
/// DiffID.
fn stage(
    store: &Store,
    source: &dyn ImageSource,
    location: &str,
    layer: &LayerPlan,
    toc: Option<&TocAnnotation>,
    index: usize,
    options: &PullOptions<'_>,
) -> Result<DifferOutput> {
    // A blob that announces a zstd:chunked TOC: fetch only what the store lacks; if that
    // fails for any reason, pull it whole (as containers/image does).
    if let Some(toc) = toc
        && let Ok(output) =
            crate::partial::stage_partially(store, source, layer, toc, index, options.progress)
    {
        return Ok(output);
    }
    let reader = open_blob(source, &layer.blob)?;
    let mut differ = BlobDiffer {
        reader: Some(reader),
        layer,
        location,
        index,
        progress: options.progress,
        failure: None,
    };
    let staged = store.stage_layer(&DifferOptions::default(), &mut differ);
    match (staged, differ.failure.take()) {
        (Ok(output), _) => Ok(output),
        // The differ's own error (digest, size, DiffID, source) says best what went wrong.
        (Err(_), Some(failure)) => Err(failure),
        (Err(e), None) => Err(Error::store(
            location,
            format!("layer {} (blob {})", layer.id, layer.blob.digest),
            e,
        )),
    }
}

/// Fills a staging directory from one layer blob, as the driver's apply would.
struct BlobDiffer<'a> {
    reader: Option<VerifyingReader<BlobStream>>,
    layer: &'a LayerPlan,
    location: &'a str,
    index: usize,
    progress: Option<&'a (dyn Fn(PullEvent) + Sync)>,
    /// The pull's own error behind a failed apply, kept whole for the caller.
    failure: Option<Error>,
}

impl Differ for BlobDiffer<'_> {
    fn apply_diff(
        &mut self,
        dest: &Path,
        options: &DifferOptions,
    ) -> layerstore_driver::Result<DifferOutput> {
        let outcome = self.apply(dest, options);
        outcome.map_err(|e| {
            let message = layerstore_model::error_chain(&e);
            self.failure = Some(e);
            layerstore_driver::Error::Differ {
                message,
                source: None,
            }
        })
    }
}

impl BlobDiffer<'_> {
    fn apply(&mut self, dest: &Path, options: &DifferOptions) -> Result<DifferOutput> {
        let mut reader = self.reader.take().ok_or_else(|| {
            Error::invalid(
                self.location,
                format!("blob {}", self.layer.blob.digest),
                "applied twice",
            )
        })?;
        let apply_options = layerstore_archive::ApplyOptions {
            whiteouts: options.whiteouts,
            uid_map: options.id_mappings.uids.clone(),
            gid_map: options.id_mappings.gids.clone(),
            ignore_chown_errors: options.ignore_chown_errors,
            max_uncompressed_size: Some(layerstore::DEFAULT_MAX_LAYER_SIZE),
            ..Default::default()
        };
        let what = || format!("layer {} (blob {})", self.layer.id, self.layer.blob.digest);
        let counted = ProgressReader {
            inner: &mut reader,
            index: self.index,
            progress: self.progress,
        };
        // Records are gzipped as they are made, as `<id>.tar-split.gz` stores them (the store
        // writes them as they are): the raw JSON of a layer of 57,000 entries is 60 MB, which
        // held whole until the commit was most of a pull's RSS.
        let packer = layerstore_tarsplit::gzip_packer(Vec::new());
        let applied = match tar_stream(counted) {
            Err(e) => Err(Failure::Read(e)),
            Ok(TarStream::Blob(head, rest)) => {
                layerstore_archive::apply(dest, head.chain(rest), packer, &apply_options)
                    .map_err(Failure::Apply)
            }
            Ok(TarStream::Inflated(inflater, compression)) => {
                let (writer, tar) = chunk_pipe();
                let (applied, inflated) = std::thread::scope(|scope| {
                    let inflating = scope.spawn(move || inflater.run(writer).1);
                    let applied = layerstore_archive::apply(dest, tar, packer, &apply_options);
                    (applied, inflating.join())
                });
                match (inflated, applied) {
                    (Err(_), _) => Err(Failure::Read(io::Error::other(
                        "the decompressing thread panicked",
                    ))),
                    // The extraction stopped first: its error says what was wrong.
                    (Ok(Err(e)), Err(applied)) if e.kind() == io::ErrorKind::BrokenPipe => {
                        Err(Failure::Apply(applied))
                    }
                    (Ok(Err(e)), _) => Err(Failure::Read(e)),
                    (Ok(Ok(())), Err(applied)) => Err(Failure::Apply(applied)),
                    // The archive saw a tar stream; the blob's own digest and size were
                    // checked by the reader.
                    (Ok(Ok(())), Ok((mut report, packer))) => {
                        report.compression = compression;
                        report.compressed_digest = self.layer.blob.digest.clone();
                        report.compressed_size = self.layer.blob.size;
                        Ok((report, packer))
                    }
                }
            }
        };
        let (report, packer) = match applied {
            Ok(applied) => applied,
            Err(failure) => {
                // A damaged blob usually fails the decompressor first; its digest says what
                // was really wrong.
                return Err(match reader.verify_to_end() {
                    Err(mismatch @ (Error::DigestMismatch { .. } | Error::SizeMismatch { .. })) => {
                        mismatch
                    }
                    _ => match failure {
                        Failure::Apply(e) => Error::invalid(self.location, what(), e),
                        Failure::Read(e) => match Error::from_io(&e) {
                            Some(_) => blob_read_error(self.location, &self.layer.blob, e),
                            None => Error::invalid(self.location, what(), e),
                        },
                    },
                });
            }
        };
        reader.verify_to_end()?;
        let records = packer
            .into_inner()
            .map_err(|e| Error::invalid(self.location, what(), e))?
            .finish()
            .map_err(|e| Error::invalid(self.location, what(), e))?;
        let measured = LayerDigests {
            compression: report.compression,
            uncompressed_digest: report.uncompressed_digest.clone(),
            uncompressed_size: report.uncompressed_size,
        };
        // The same checks as the record podman would write: the DiffID must be the config's.
        self.layer.record(self.location, &measured)?;
        Ok(DifferOutput::from_report(report, Some(records)))
    }
}

/// Why applying a blob failed, before its digest is checked.
enum Failure {
    /// Reading or decompressing the blob.
    Read(io::Error),
    /// Parsing or extracting the tar stream.
    Apply(layerstore_archive::Error),
}

/// Counts bytes read for progress events.
struct ProgressReader<'a, R> {
    inner: R,
    index: usize,
    progress: Option<&'a (dyn Fn(PullEvent) + Sync)>,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(progress) = self.progress
            && n > 0
        {
            progress(PullEvent::Read {
                index: self.index,
                bytes: n as u64,
            });
        }
        Ok(n)
    }
}

/// Creates the image of `planned` (or completes the one with its ID): big data in podman's
/// order, then names and metadata. A new image is removed again if a later step fails.
fn commit_image(store: &Store, location: &str, planned: &ImagePlan) -> Result<Image> {
    let record = &planned.image;
    let wrap = |e: layerstore::Error| Error::store(location, format!("image {}", record.id), e);
    let created_now = !store.image(&record.id).is_ok_and(|image| !image.read_only);
    if created_now {
        store
            .create_image(NewImage {
                id: Some(record.id.clone()),
                names: Vec::new(),
                top_layer: record.top_layer.clone(),
                metadata: record.metadata.clone(),
                created: Some(record.created),
                digest: Some(record.digest.clone()).filter(|d| !d.is_empty()),
            })
            .map_err(wrap)?;
    }
    let finish = || -> Result<Image> {
        let digester = |bytes: &[u8]| -> std::result::Result<layerstore::Digest, String> {
            Ok(sha256_digest(bytes))
        };
        for item in &planned.big_data {
            store
                .set_image_big_data(&record.id, &item.key, &item.bytes, Some(&digester))
                .map_err(wrap)?;
        }
        if !record.names.is_empty() {
            store.add_names(&record.id, &record.names).map_err(wrap)?;
        }
        if !created_now {
            store
                .set_metadata(&record.id, &record.metadata)
                .map_err(wrap)?;
        }
        store.image(&record.id).map_err(wrap)
    };
    finish().inspect_err(|_| {
        if created_now {
            // The record only: the caller removes the layers this pull made.
            let _ = store.delete(&record.id);
        }
    })
}
