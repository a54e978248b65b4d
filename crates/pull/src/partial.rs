//! Partial pulls of zstd:chunked layers: only the files the store lacks are fetched, with
//! range requests.
//!
//! A layer blob is pulled this way when its manifest entry announces a TOC (the annotation
//! `io.github.containers.zstd-chunked.manifest-checksum`, or `io.containers.…` as skopeo 1.9
//! and podman 4.3 write it; the position annotation, when there is one, lets the TOC and the
//! footer come in one request). [`crate::pull_into_store`] stages each such layer with
//! `stage_partially`, which:
//!
//! 1. reads the TOC and the footer by range and checks the TOC against the manifest's
//!    checksum (the manifest's digest is checked, so the TOC is as trusted as the manifest);
//! 2. lets `layerstore-layers`' `ZstdChunkedDiffer` decide which contents the store already
//!    has (files of layers that were pulled this way, found through their stored TOCs, each
//!    verified by hashing) and which blob ranges it must read: tar headers and the missing
//!    contents;
//! 3. fetches those ranges, gaps under [`MERGE_GAP`] merged and pieces of at most
//!    [`CHUNK_MAX`], [`IN_FLIGHT`] requests at once and at most [`WINDOW`] pieces ahead of the
//!    extraction (memory stays bounded whatever the layer's size), while the differ rebuilds
//!    the layer's tar stream from them and the local files and extracts it into a staging
//!    directory.
//!
//! # What makes the layer the same as a full pull's
//!
//! The rebuilt stream is the blob's decompressed stream byte for byte (the TOC and footer are
//! skippable frames), so the tar-split records, the uncompressed digest and size, and `diff`'s
//! bytes are a full pull's. The blob's own digest cannot be checked without all its bytes;
//! instead each content is checked against the TOC's digest as it streams, and the measured
//! DiffID against the config's before anything is committed, as a full pull does: every byte
//! of the layer is verified before the layer exists. So the layer ID is the one podman 4.3
//! (which pulls zstd:chunked blobs whole, as Debian configures `enable_partial_images =
//! "false"`) computes from the DiffID, and the record's compressed digest and size are the
//! blob's: podman reuses the layer. The one difference from a full pull's record is the
//! big-data item `zstd-chunked-manifest` (the TOC), which containers/storage's own partial
//! pulls keep too, and from which a later pull finds this layer's files.
//!
//! # Failures
//!
//! Any failure of the partial path (a TOC that does not match its checksum, a content or
//! DiffID that does not match, a newer footer, a source that ignores ranges) removes its
//! staging directory and the caller pulls the blob whole instead, as containers/image does
//! when a partial pull fails; only an error of that full pull is reported (it names the blob
//! and the source). A source that answers a range request with the whole blob is noticed on
//! the first request and the full pull follows at once.
//!
//! # Limitations
//!
//! * The tar headers are frames between the files' contents and must be fetched (the layer
//!   is rebuilt byte for byte), so every local file splits the fetch. Ranges closer than
//!   [`MERGE_GAP`] are merged: a layer of large files fetches little more than its missing
//!   files, but a layer of many small files fetches much of them again (a 30.6 MB blob of
//!   6,705 source files with 8 changed: 16.9 MB in 224 requests). containers/storage sends
//!   many ranges per request (multipart answers); oci-client asks for one range at a time.
//! * Only layers pulled this way are looked in for local files (as containers/storage
//!   does): files of layers pulled whole are not indexed, nor the TOCs kept across pulls.
//! * Each local file is hashed when the plan picks it and again as it streams (the second
//!   hash is the one that counts).
//! * Why a partial pull fell back is not reported (containers/image logs it at debug
//!   level); its progress events are counted again by the full pull that follows.
//! * skopeo 1.9 keeps the config's DiffID for a zstd:chunked layer whose tarball had padding
//!   past its end-of-archive blocks (GNU tar's records), which its stream drops: both this
//!   path and the full pull refuse such a layer (podman 4.3 takes the measured DiffID).

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use layerstore::{DifferOptions, DifferOutput, Store};
use layerstore_archive::zstd_chunked::{
    BlobReader, FOOTER_BODY, MAX_TOC_SIZE, SKIPPABLE_HEADER, parse_footer,
};
use layerstore_layers::chunked::{LocalFiles, ZstdChunkedDiffer};
use layerstore_model::Digest;

use crate::commit::{LayerDigests, LayerPlan};
use crate::error::{Error, Result};
use crate::into_store::PullEvent;
use crate::manifest::{Blob, RawManifest};
use crate::source::{ImageSource, read_blob_range};

/// The TOC checksum annotations: containers/storage ≥ 1.45's name, then the older one.
pub const TOC_CHECKSUM_ANNOTATIONS: [&str; 2] = [
    "io.github.containers.zstd-chunked.manifest-checksum",
    "io.containers.zstd-chunked.manifest-checksum",
];
/// The TOC position annotations (`offset:length:uncompressed length:manifest type`).
pub const TOC_POSITION_ANNOTATIONS: [&str; 2] = [
    "io.github.containers.zstd-chunked.manifest-position",
    "io.containers.zstd-chunked.manifest-position",
];
/// Ranges closer than this are fetched as one (a request costs more than these bytes).
pub const MERGE_GAP: u64 = 16 << 10;
/// The largest piece fetched by one request.
pub const CHUNK_MAX: u64 = 2 << 20;
/// Range requests in flight at once, per layer.
pub const IN_FLIGHT: usize = 4;
/// Pieces fetched ahead of the one the extraction reads.
pub const WINDOW: usize = 6;

/// What a layer's manifest entry says about its TOC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocAnnotation {
    /// The digest of the compressed TOC.
    pub checksum: Digest,
    /// Where the compressed TOC starts in the blob, when announced.
    pub offset: Option<u64>,
}

/// The TOC annotation of each layer of `manifest`, in order (`None` for a layer without one,
/// or when the manifest cannot be read this way: those layers are pulled whole).
pub fn toc_annotations(manifest: &RawManifest) -> Vec<Option<TocAnnotation>> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&manifest.bytes) else {
        return Vec::new();
    };
    let Some(layers) = value["layers"].as_array() else {
        return Vec::new();
    };
    layers
        .iter()
        .map(|layer| {
            let annotations = &layer["annotations"];
            let first = |names: [&str; 2]| names.iter().find_map(|n| annotations[n].as_str());
            let checksum = first(TOC_CHECKSUM_ANNOTATIONS)?.parse::<Digest>().ok()?;
            let offset = first(TOC_POSITION_ANNOTATIONS)
                .and_then(|p| p.split(':').next())
                .and_then(|o| o.parse::<u64>().ok());
            Some(TocAnnotation { checksum, offset })
        })
        .collect()
}

/// `ranges` (in order) with gaps under `gap` merged, then cut into pieces of at most `max`.
pub fn fetch_pieces(ranges: &[Range<u64>], gap: u64, max: u64) -> Vec<Range<u64>> {
    let mut merged: Vec<Range<u64>> = Vec::new();
    for range in ranges.iter().filter(|r| r.start < r.end) {
        match merged.last_mut() {
            Some(last) if range.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(range.end);
            }
            _ => merged.push(range.clone()),
        }
    }
    let mut pieces = Vec::with_capacity(merged.len());
    for range in merged {
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start.saturating_add(max.max(1)));
            pieces.push(start..end);
            start = end;
        }
    }
    pieces
}

/// Stages `layer` from its zstd:chunked blob, fetching only what the store lacks (see the
/// [module docs](self)). The staging directory is removed on failure.
pub(crate) fn stage_partially(
    store: &Store,
    source: &dyn ImageSource,
    layer: &LayerPlan,
    toc: &TocAnnotation,
    index: usize,
    progress: Option<&(dyn Fn(PullEvent) + Sync)>,
) -> Result<DifferOutput> {
    let location = source.location();
    let what = || {
        format!(
            "layer {} (blob {}), partial zstd:chunked pull",
            layer.id, layer.blob.digest
        )
    };
    let fetcher = Arc::new(Fetcher::new(layer.blob.clone()));
    fetcher.fetch_tail(source, toc.offset, MAX_TOC_SIZE)?;
    if !source.serves_ranges() {
        return Err(Error::Unsupported {
            location,
            what: format!(
                "range requests (blob {} was sent whole): {}",
                layer.blob.digest,
                what()
            ),
        });
    }
    let local = LocalFiles::from_store_tocs(store.layer_store())
        .map_err(|e| Error::store(&location, what(), e.into()))?;
    let mut differ = ZstdChunkedDiffer::new(
        Box::new(SharedBlob(Arc::clone(&fetcher))),
        layer.blob.digest.clone(),
        local,
    )
    .with_toc_digest(toc.checksum.clone());
    let ranges = differ
        .blob_ranges()
        .map_err(|e| Error::invalid(&location, what(), layerstore_model::error_chain(&e)))?;
    fetcher.plan(fetch_pieces(&ranges, MERGE_GAP, CHUNK_MAX));
    let staged = std::thread::scope(|scope| {
        for _ in 0..IN_FLIGHT {
            scope.spawn(|| fetcher.work(source, index, progress));
        }
        let staged = store.stage_layer(&DifferOptions::default(), &mut differ);
        fetcher.stop();
        staged
    });
    // A fetch's own error says best what failed (the registry, the blob).
    if let Some(failure) = fetcher.take_failure() {
        if let Ok(output) = &staged {
            let _ = store
                .layer_store()
                .cleanup_staging_directory(&output.target);
        }
        return Err(failure);
    }
    let output = staged.map_err(|e| Error::store(&location, what(), e))?;
    let measured = LayerDigests {
        compression: output.compression,
        uncompressed_digest: output.uncompressed_digest.clone().unwrap_or_else(|| {
            // The differ always measures it; an absent one can only fail the check below.
            layer.blob.digest.clone()
        }),
        uncompressed_size: output.uncompressed_size,
    };
    if let Err(e) = layer.record(&location, &measured) {
        let _ = store
            .layer_store()
            .cleanup_staging_directory(&output.target);
        return Err(e);
    }
    Ok(output)
}

/// The blob's bytes as fetched for one partial pull: the tail (TOC and footer) kept whole,
/// the planned pieces streamed through a bounded window.
struct Fetcher {
    blob: Blob,
    /// Ranges read whole and kept (the tail, and anything outside the pieces).
    kept: Mutex<Vec<(u64, Vec<u8>)>>,
    pieces: Mutex<Arc<Vec<Range<u64>>>>,
    next: AtomicUsize,
    state: Mutex<WindowState>,
    changed: Condvar,
    /// The first fetch that failed.
    failure: Mutex<Option<Error>>,
}

#[derive(Default)]
struct WindowState {
    /// Fetched pieces not yet read, by index.
    ready: BTreeMap<usize, Vec<u8>>,
    /// The piece being read, with its bytes.
    current: Option<(usize, Vec<u8>)>,
    /// The lowest piece still wanted.
    wanted: usize,
    /// The extraction ended (or a fetch failed): workers stop.
    stopped: bool,
}

impl Fetcher {
    fn new(blob: Blob) -> Fetcher {
        Fetcher {
            blob,
            kept: Mutex::new(Vec::new()),
            pieces: Mutex::new(Arc::new(Vec::new())),
            next: AtomicUsize::new(0),
            state: Mutex::new(WindowState::default()),
            changed: Condvar::new(),
            failure: Mutex::new(None),
        }
    }

    /// Fetches the blob's tail, the TOC and the footer: from the TOC's announced offset (with
    /// its skippable frame header) in one request, else the footer first, then from the
    /// offset it gives. A tail longer than `max_toc` plus the frame header and footer (no TOC
    /// is larger than [`MAX_TOC_SIZE`]) is refused rather than held in memory.
    fn fetch_tail(
        &self,
        source: &dyn ImageSource,
        toc_offset: Option<u64>,
        max_toc: u64,
    ) -> Result<()> {
        let size = self.blob.size;
        let footer_start = size.saturating_sub(SKIPPABLE_HEADER + FOOTER_BODY);
        let longest = max_toc + SKIPPABLE_HEADER + FOOTER_BODY;
        // An announced offset that would make the tail longer than any TOC is not believed:
        // the footer says where the TOC is.
        let announced = toc_offset
            .map(|offset| offset.saturating_sub(SKIPPABLE_HEADER).min(footer_start))
            .filter(|start| size - start <= longest);
        let start = match announced {
            Some(start) => start,
            None => {
                let footer =
                    read_blob_range(source, &self.blob, footer_start, size - footer_start)?;
                self.kept
                    .lock()
                    .expect("not poisoned")
                    .push((footer_start, footer));
                // A footer that is not one fails here; the differ says the same again.
                parse_footer(self)
                    .map(|f| f.toc_offset.saturating_sub(SKIPPABLE_HEADER))
                    .unwrap_or(footer_start)
            }
        };
        if size - start > longest {
            return Err(Error::TooLarge {
                location: source.location(),
                what: format!("zstd:chunked TOC of blob {}", self.blob.digest),
                limit: max_toc,
            });
        }
        if start < footer_start || announced.is_some() {
            let bytes = read_blob_range(source, &self.blob, start, size - start)?;
            self.kept.lock().expect("not poisoned").push((start, bytes));
        }
        Ok(())
    }

    fn plan(&self, pieces: Vec<Range<u64>>) {
        *self.pieces.lock().expect("not poisoned") = Arc::new(pieces);
    }

    fn pieces(&self) -> Arc<Vec<Range<u64>>> {
        Arc::clone(&self.pieces.lock().expect("not poisoned"))
    }

    /// A worker: fetches pieces in order, never more than [`WINDOW`] ahead of the reader.
    fn work(
        &self,
        source: &dyn ImageSource,
        index: usize,
        progress: Option<&(dyn Fn(PullEvent) + Sync)>,
    ) {
        let pieces = self.pieces();
        loop {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            let Some(piece) = pieces.get(i) else {
                return;
            };
            {
                let mut state = self.state.lock().expect("not poisoned");
                while !state.stopped && i >= state.wanted + WINDOW {
                    state = self.changed.wait(state).expect("not poisoned");
                }
                if state.stopped {
                    return;
                }
            }
            let fetched = read_blob_range(source, &self.blob, piece.start, piece.end - piece.start);
            let mut state = self.state.lock().expect("not poisoned");
            match fetched {
                Ok(bytes) => {
                    if let Some(progress) = progress {
                        progress(PullEvent::Read {
                            index,
                            bytes: bytes.len() as u64,
                        });
                    }
                    state.ready.insert(i, bytes);
                }
                Err(e) => {
                    self.failure.lock().expect("not poisoned").get_or_insert(e);
                    state.stopped = true;
                }
            }
            self.changed.notify_all();
        }
    }

    /// Ends the workers (the extraction is over, or failed).
    fn stop(&self) {
        self.state.lock().expect("not poisoned").stopped = true;
        self.changed.notify_all();
    }

    fn take_failure(&self) -> Option<Error> {
        self.failure.lock().expect("not poisoned").take()
    }

    /// Copies `buf.len()` bytes at `offset` from the kept ranges, if one holds them all.
    fn read_kept(&self, buf: &mut [u8], offset: u64) -> bool {
        let kept = self.kept.lock().expect("not poisoned");
        for (start, bytes) in kept.iter() {
            let end = start + bytes.len() as u64;
            if *start <= offset && offset + buf.len() as u64 <= end {
                let from = (offset - start) as usize;
                buf.copy_from_slice(&bytes[from..from + buf.len()]);
                return true;
            }
        }
        false
    }

    /// Copies from the streamed pieces; reads must go forward (the differ's do).
    fn read_pieces(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let pieces = self.pieces();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let i = pieces.partition_point(|p| p.end <= pos);
            if pieces.get(i).is_none_or(|p| p.start > pos) {
                if done == 0 {
                    return Ok(false);
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "bytes at {pos} of blob {} were not fetched",
                        self.blob.digest
                    ),
                ));
            }
            let mut state = self.state.lock().expect("not poisoned");
            if state.current.as_ref().is_none_or(|(c, _)| *c != i) {
                if i < state.wanted {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("blob {}: read at {pos} goes back", self.blob.digest),
                    ));
                }
                state.wanted = i;
                state.ready = state.ready.split_off(&i);
                self.changed.notify_all();
                let bytes = loop {
                    if let Some(bytes) = state.ready.remove(&i) {
                        break bytes;
                    }
                    if state.stopped {
                        return Err(io::Error::other(format!(
                            "fetching bytes at {pos} of blob {} failed",
                            self.blob.digest
                        )));
                    }
                    state = self.changed.wait(state).expect("not poisoned");
                };
                state.current = Some((i, bytes));
            }
            let (_, bytes) = state.current.as_ref().expect("set above");
            let piece = &pieces[i];
            let from = (pos - piece.start) as usize;
            let n = (buf.len() - done).min(bytes.len() - from);
            buf[done..done + n].copy_from_slice(&bytes[from..from + n]);
            done += n;
        }
        Ok(true)
    }
}

impl BlobReader for Fetcher {
    fn size(&self) -> u64 {
        self.blob.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.read_kept(buf, offset) || self.read_pieces(buf, offset)? {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "bytes {offset}+{} of blob {} were not fetched",
                buf.len(),
                self.blob.digest
            ),
        ))
    }
}

/// The differ's view of a [`Fetcher`] (which the fetching threads share).
struct SharedBlob(Arc<Fetcher>);

impl BlobReader for SharedBlob {
    fn size(&self) -> u64 {
        self.0.size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_read_under_either_name_and_only_with_a_checksum() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": digest, "size": 1,
                       "mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [
                {"digest": "x", "annotations": {
                    "io.containers.zstd-chunked.manifest-checksum": digest,
                    "io.containers.zstd-chunked.manifest-position": "720:460:2603:1"}},
                {"digest": "y"},
                {"digest": "z", "annotations": {
                    "io.github.containers.zstd-chunked.manifest-checksum": digest}},
                {"digest": "w", "annotations": {
                    "io.containers.zstd-chunked.manifest-position": "1:2:3:1"}},
            ],
        });
        let raw = RawManifest::new("oci:/x", serde_json::to_vec(&manifest).unwrap()).unwrap();
        let checksum: Digest = digest.parse().unwrap();
        assert_eq!(
            toc_annotations(&raw),
            vec![
                Some(TocAnnotation {
                    checksum: checksum.clone(),
                    offset: Some(720)
                }),
                None,
                Some(TocAnnotation {
                    checksum,
                    offset: None
                }),
                None,
            ]
        );
    }

    /// One blob, served from memory.
    struct OneBlob(Vec<u8>);

    impl ImageSource for OneBlob {
        fn location(&self) -> String {
            "memory:".into()
        }
        fn top_manifest(&self) -> Result<RawManifest> {
            unreachable!("not asked")
        }
        fn manifest(&self, _: &Digest) -> Result<RawManifest> {
            unreachable!("not asked")
        }
        fn blob_from(&self, _: &Blob, offset: u64) -> Result<crate::BlobStream> {
            Ok(Box::new(io::Cursor::new(
                self.0[offset as usize..].to_vec(),
            )))
        }
        fn image_names(&self, _: &RawManifest) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
    }

    /// A blob of `size` zero bytes but for a footer pointing at a TOC at `toc_offset` of
    /// `toc_len` bytes.
    fn chunked_blob(size: usize, toc_offset: u64, toc_len: u64) -> (OneBlob, Blob) {
        let mut bytes = vec![0u8; size];
        let mut footer = Vec::new();
        footer.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        footer.extend_from_slice(&40u32.to_le_bytes());
        for word in [toc_offset, toc_len, toc_len, 1] {
            footer.extend_from_slice(&word.to_le_bytes());
        }
        footer.extend_from_slice(b"GnUlInUx");
        bytes[size - 48..].copy_from_slice(&footer);
        let blob = Blob {
            digest: crate::manifest::sha256_digest(&bytes),
            size: size as u64,
            media_type: String::new(),
        };
        (OneBlob(bytes), blob)
    }

    fn kept_bytes(fetcher: &Fetcher) -> Vec<(u64, usize)> {
        let kept = fetcher.kept.lock().unwrap();
        kept.iter().map(|(start, b)| (*start, b.len())).collect()
    }

    #[test]
    fn the_tail_is_the_toc_and_footer_and_never_more_than_a_toc() {
        let (source, blob) = chunked_blob(4096, 3948, 100);
        // Announced: one request from the TOC's frame header to the end.
        let fetcher = Fetcher::new(blob.clone());
        fetcher.fetch_tail(&source, Some(3948), 1024).unwrap();
        assert_eq!(kept_bytes(&fetcher), [(3940, 156)]);
        // Not announced, or announced where no TOC can be (the blob's start, with TOCs of
        // 1 KiB at most): the footer, then from the offset it gives.
        for announced in [None, Some(0)] {
            let fetcher = Fetcher::new(blob.clone());
            fetcher.fetch_tail(&source, announced, 1024).unwrap();
            assert_eq!(kept_bytes(&fetcher), [(4048, 48), (3940, 156)]);
        }
        // A footer whose TOC would be larger than any: refused, nothing more fetched.
        let (source, blob) = chunked_blob(4096, 8, 4000);
        let fetcher = Fetcher::new(blob);
        let err = fetcher.fetch_tail(&source, Some(8), 1024).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert_eq!(kept_bytes(&fetcher), [(4048, 48)]);
    }

    #[test]
    fn close_ranges_merge_and_long_ones_are_cut() {
        assert_eq!(
            fetch_pieces(&[0..10, 12..20, 100..130, 130..130], 5, 16),
            vec![0..16, 16..20, 100..116, 116..130]
        );
        assert!(fetch_pieces(&[], 5, 16).is_empty());
    }

    proptest::proptest! {
        /// The pieces cover every byte asked for, in order, without overlap, none longer
        /// than the limit, and add at most `gap` bytes between two ranges.
        #[test]
        fn pieces_cover_what_is_asked(
            lengths in proptest::collection::vec((0u64..40, 0u64..40), 0..30),
            gap in 0u64..20,
            max in 1u64..50,
        ) {
            let mut ranges = Vec::new();
            let mut pos = 0;
            for (skip, len) in lengths {
                ranges.push(pos + skip..pos + skip + len);
                pos += skip + len;
            }
            let pieces = fetch_pieces(&ranges, gap, max);
            for piece in &pieces {
                proptest::prop_assert!(piece.start < piece.end && piece.end - piece.start <= max);
            }
            for pair in pieces.windows(2) {
                proptest::prop_assert!(pair[0].end <= pair[1].start);
            }
            for range in &ranges {
                for byte in range.clone() {
                    proptest::prop_assert!(pieces.iter().any(|p| p.contains(&byte)));
                }
            }
            let asked: u64 = ranges.iter().map(|r| r.end - r.start).sum();
            let fetched: u64 = pieces.iter().map(|p| p.end - p.start).sum();
            proptest::prop_assert!(fetched <= asked + gap * ranges.len() as u64);
        }
    }
}
