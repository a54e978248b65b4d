//! Partial pulls of zstd:chunked layers (the format `podman push --compression-format
//! zstd:chunked` and `skopeo copy --dest-compress-format zstd:chunked` write).
//!
//! # The format (containers/storage `pkg/chunked`, manifest type 1)
//!
//! A zstd:chunked blob is an ordinary zstd stream of the layer's tarball, cut into independent
//! zstd frames so that each regular file's content occupies its own byte range, followed by
//! two skippable frames:
//!
//! ```text
//! [frames: tar headers][frames: file 1 content][frames: headers]…[frames: end of archive]
//! [skippable frame: the TOC, JSON compressed with zstd]
//! [skippable frame (magic 0x184D2A50, length 40): footer]
//!     u64 LE TOC offset │ u64 LE compressed TOC length │ u64 LE uncompressed TOC length │
//!     u64 LE manifest type (1) │ "GnUlInUx"
//! ```
//!
//! The TOC (`{"version":1,"entries":[…]}`) lists every tar entry; a `reg` entry with content
//! carries `digest` (sha256 of the whole content), `size`, and `offset`/`endOffset`: the
//! blob range whose frames decompress to exactly that content (`chunk` entries subdivide it
//! and are not needed here). Everything outside those ranges, up to the TOC, decompresses to
//! the tar headers, padding and end-of-archive blocks.
//!
//! # What [`ZstdChunkedDiffer`] does
//!
//! It reads the footer and the TOC through a [`BlobReader`] (a range reader: a local file in
//! tests, HTTP range requests in a registry client), then rebuilds the layer's uncompressed
//! tarball as a stream: header ranges are read from the blob and decompressed; each file's
//! content comes from a local file with the same digest ([`LocalFiles`], built from the
//! store's layers) when there is one, verified by hashing it first, else from the blob,
//! verified against the TOC's digest as it streams. That stream goes through the archive
//! crate's one-pass apply, so the layer is extracted, its tar-split records and its
//! uncompressed digest are exactly those of a plain pull of the same blob, and `diff` gives
//! the same bytes back. Files taken from other layers are copied (never hard-linked, so
//! layers stay independent). The TOC is kept as the layer's big-data item
//! [`TOC_BIG_DATA`] (`zstd-chunked-manifest`), as Go keeps it.
//!
//! # Limitations
//!
//! * Local files are found from the TOCs of layers pulled this way and by hashing the trees
//!   of the others ([`LocalFiles::from_store`]), each time: there is no persistent cache as
//!   Go keeps.
//! * Reused files are copied through the stream, not reflinked: cloning onto the extracted
//!   file afterwards would make the kernel drop its setuid/setgid bits and file
//!   capabilities and change its mtime; doing it right needs the extraction itself to clone.
//! * skopeo's zstd:chunked stream drops the tarball's trailing padding, so the layer's
//!   DiffID is the blob's (as with a plain pull of it), not the original tarball's.
//! * Only the footer of manifest type 1 with its 40-byte body (containers/storage ≤ 1.44,
//!   skopeo 1.9) is read; the later footer that also points at a tar-split in the blob is
//!   refused with a clear error.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use layerstore_archive::ApplyOptions;
use layerstore_driver::{Differ, DifferOptions, DifferOutput};
use layerstore_model::{Compression, Digest, DigestAlgorithm, Sha256Hasher};
use layerstore_tarsplit::JsonLinesPacker;

use crate::error::Result;
use crate::store::LayerStore;

/// The footer's magic, its last eight bytes.
pub const FOOTER_MAGIC: &[u8; 8] = b"GnUlInUx";
/// Size of the footer body (inside its skippable frame).
const FOOTER_BODY: u64 = 40;
/// Skippable frame header: magic + length.
const SKIPPABLE_HEADER: u64 = 8;
/// Skippable frame magic, little-endian on disk.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// The only manifest type written by the format (Go's `ManifestTypeCRFS`).
const MANIFEST_TYPE_CRFS: u64 = 1;
/// Refuse TOCs larger than this, uncompressed (a layer of a million files is ~300 MiB of
/// JSON; anything beyond is not a layer we want to hold in memory).
pub const MAX_TOC_SIZE: u64 = 512 << 20;

/// The big-data item holding the layer's TOC (JSON), as Go names it.
pub const TOC_BIG_DATA: &str = "zstd-chunked-manifest";

/// Random access to a blob: its size and reads at offsets.
pub trait BlobReader: Send + Sync {
    /// The blob's size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; a read past the end is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// A blob in a local file.
#[derive(Debug)]
pub struct FileBlob {
    file: File,
    size: u64,
}

impl FileBlob {
    /// Opens `path`.
    pub fn open(path: &Path) -> io::Result<FileBlob> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(FileBlob { file, size })
    }
}

impl BlobReader for FileBlob {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// Regular files already on this host, by the sha256 of their content.
#[derive(Debug, Default, Clone)]
pub struct LocalFiles {
    by_digest: HashMap<Digest, PathBuf>,
}

impl LocalFiles {
    /// An empty index (every file comes from the blob).
    pub fn new() -> Self {
        LocalFiles::default()
    }

    /// Hashes every regular file beneath `dir` (symlinks are not followed).
    pub fn add_tree(&mut self, dir: &Path) -> io::Result<()> {
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(entry.path());
                } else if kind.is_file() {
                    let path = entry.path();
                    let digest = Sha256Hasher::digest_reader(&mut File::open(&path)?)?;
                    self.by_digest.entry(digest).or_insert(path);
                }
            }
        }
        Ok(())
    }

    /// Indexes the regular files a zstd:chunked TOC (`toc`, JSON) lists, as found beneath
    /// `dir` (the layer's own files), without reading them: a file is hashed only when a
    /// pull wants it. Names that would leave `dir` are skipped. Returns how many were added.
    pub fn add_toc(&mut self, dir: &Path, toc: &[u8]) -> usize {
        let Ok(toc) = serde_json::from_slice::<serde_json::Value>(toc) else {
            return 0;
        };
        let mut added = 0;
        for entry in toc["entries"].as_array().into_iter().flatten() {
            let (Some("reg"), Some(name), Some(digest)) = (
                entry["type"].as_str(),
                entry["name"].as_str(),
                entry["digest"].as_str().and_then(sha256_digest),
            ) else {
                continue;
            };
            let mut path = dir.to_path_buf();
            let mut inside = true;
            for component in name.split('/') {
                match component {
                    "" | "." => {}
                    ".." => inside = false,
                    other => path.push(other),
                }
            }
            if inside && path != dir {
                self.by_digest.entry(digest).or_insert(path);
                added += 1;
            }
        }
        added
    }

    /// Indexes the own files of every complete layer of `store` (through
    /// [`LayerStore::differ_target`]; layers of drivers without one are skipped): from the
    /// layer's TOC ([`TOC_BIG_DATA`]) when it was pulled as zstd:chunked, else by hashing
    /// its tree.
    pub fn from_store(store: &LayerStore) -> Result<LocalFiles> {
        let mut files = LocalFiles::new();
        for layer in store.layers()? {
            if layer.is_incomplete() {
                continue;
            }
            let Ok(dir) = store.differ_target(&layer.id) else {
                continue;
            };
            if layer.big_data_names.iter().any(|n| n == TOC_BIG_DATA) {
                let mut toc = Vec::new();
                store
                    .big_data(&layer.id, TOC_BIG_DATA)?
                    .read_to_end(&mut toc)
                    .map_err(|e| crate::Error::io("read the TOC of", &dir, e))?;
                files.add_toc(&dir, &toc);
                continue;
            }
            files
                .add_tree(&dir)
                .map_err(|e| crate::Error::io("index files of", &dir, e))?;
        }
        Ok(files)
    }

    /// Number of distinct digests known.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    fn get(&self, digest: &Digest) -> Option<&Path> {
        self.by_digest.get(digest).map(PathBuf::as_path)
    }
}

/// `text` as a SHA-256 digest, the only kind a zstd:chunked TOC carries for content.
fn sha256_digest(text: &str) -> Option<Digest> {
    text.parse::<Digest>()
        .ok()
        .filter(|d| d.algorithm() == DigestAlgorithm::Sha256)
}

fn differ_error(message: String) -> layerstore_driver::Error {
    layerstore_driver::Error::Differ {
        message,
        source: None,
    }
}

fn differ_io(message: String, e: io::Error) -> layerstore_driver::Error {
    layerstore_driver::Error::Differ {
        message,
        source: Some(Box::new(e)),
    }
}

/// The parsed footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Footer {
    toc_offset: u64,
    toc_compressed: u64,
    toc_uncompressed: u64,
}

fn parse_footer(blob: &dyn BlobReader) -> layerstore_driver::Result<Footer> {
    let size = blob.size();
    let tail = SKIPPABLE_HEADER + FOOTER_BODY;
    if size < tail {
        return Err(differ_error(format!(
            "zstd:chunked blob of {size} bytes is too short for a footer"
        )));
    }
    let mut raw = [0u8; 48];
    blob.read_exact_at(&mut raw, size - tail)
        .map_err(|e| differ_io("reading the zstd:chunked footer".into(), e))?;
    let word = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
    let magic = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let length = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    if magic != SKIPPABLE_MAGIC || u64::from(length) != FOOTER_BODY || &raw[40..48] != FOOTER_MAGIC
    {
        return Err(differ_error(
            "not a zstd:chunked blob (no 40-byte footer ending in \"GnUlInUx\"; a newer \
             footer or a plain zstd blob)"
                .into(),
        ));
    }
    let footer = Footer {
        toc_offset: word(8),
        toc_compressed: word(16),
        toc_uncompressed: word(24),
    };
    let manifest_type = word(32);
    if manifest_type != MANIFEST_TYPE_CRFS {
        return Err(differ_error(format!(
            "zstd:chunked footer: unknown manifest type {manifest_type}"
        )));
    }
    let toc_end = footer.toc_offset.checked_add(footer.toc_compressed);
    if footer.toc_offset < SKIPPABLE_HEADER || toc_end.is_none_or(|end| end > size - tail) {
        return Err(differ_error(format!(
            "zstd:chunked footer: TOC at {}+{} lies outside the blob of {size} bytes",
            footer.toc_offset, footer.toc_compressed
        )));
    }
    if footer.toc_uncompressed > MAX_TOC_SIZE {
        return Err(differ_error(format!(
            "zstd:chunked footer: TOC of {} bytes is larger than the limit {MAX_TOC_SIZE}",
            footer.toc_uncompressed
        )));
    }
    Ok(footer)
}

/// A regular file's content range in the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContentRange {
    name: String,
    start: u64,
    end: u64,
    size: u64,
    digest: Digest,
}

/// Reads, checks and parses the TOC; returns its JSON and the content ranges in blob order.
fn read_toc(
    blob: &dyn BlobReader,
    footer: &Footer,
    expected: Option<&Digest>,
) -> layerstore_driver::Result<(Vec<u8>, Vec<ContentRange>)> {
    let len = usize::try_from(footer.toc_compressed)
        .map_err(|_| differ_error("zstd:chunked TOC too large".into()))?;
    let mut compressed = vec![0u8; len];
    blob.read_exact_at(&mut compressed, footer.toc_offset)
        .map_err(|e| differ_io("reading the zstd:chunked TOC".into(), e))?;
    if let Some(expected) = expected {
        let got = Sha256Hasher::digest(&compressed);
        if &got != expected {
            return Err(differ_error(format!(
                "zstd:chunked TOC: checksum {got} does not match the manifest's {expected}"
            )));
        }
    }
    let capacity = usize::try_from(footer.toc_uncompressed).unwrap_or(usize::MAX);
    let json = zstd::bulk::decompress(&compressed, capacity)
        .map_err(|e| differ_io("zstd:chunked TOC: not a valid zstd frame".into(), e))?;
    if json.len() as u64 != footer.toc_uncompressed {
        return Err(differ_error(format!(
            "zstd:chunked TOC: {} bytes uncompressed, the footer says {}",
            json.len(),
            footer.toc_uncompressed
        )));
    }
    let toc: serde_json::Value =
        serde_json::from_slice(&json).map_err(|e| layerstore_driver::Error::Differ {
            message: "zstd:chunked TOC: not valid JSON".into(),
            source: Some(Box::new(e)),
        })?;
    let entries = toc
        .get("entries")
        .and_then(|e| e.as_array())
        .ok_or_else(|| differ_error("zstd:chunked TOC: no \"entries\" array".into()))?;
    let data_end = footer.toc_offset - SKIPPABLE_HEADER;
    let mut ranges: Vec<ContentRange> = Vec::new();
    for entry in entries {
        if entry.get("type").and_then(|t| t.as_str()) != Some("reg") {
            continue;
        }
        let name = entry
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();
        let number = |key: &str| entry.get(key).map_or(Some(0), |v| v.as_u64());
        let (Some(size), Some(start), Some(end)) =
            (number("size"), number("offset"), number("endOffset"))
        else {
            return Err(differ_error(format!(
                "zstd:chunked TOC entry {name:?}: size or offsets are not unsigned integers"
            )));
        };
        if size == 0 {
            continue;
        }
        let digest = entry
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(sha256_digest)
            .ok_or_else(|| {
                differ_error(format!(
                    "zstd:chunked TOC entry {name:?}: no sha256 digest for its content"
                ))
            })?;
        let previous_end = ranges.last().map_or(0, |r| r.end);
        if start >= end || start < previous_end || end > data_end {
            return Err(differ_error(format!(
                "zstd:chunked TOC entry {name:?}: content range {start}..{end} is out of \
                 order or outside the blob's data (0..{data_end})"
            )));
        }
        ranges.push(ContentRange {
            name,
            start,
            end,
            size,
            digest,
        });
    }
    Ok((json, ranges))
}

/// `Read` over a byte range of a blob, counting what it reads.
struct RangeRead<'a> {
    blob: &'a dyn BlobReader,
    counter: &'a AtomicU64,
    pos: u64,
    end: u64,
}

impl Read for RangeRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.blob.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One piece of the rebuilt tar stream.
enum Piece<'a> {
    /// Blob range of header frames: decompressed as is.
    Headers(u64, u64),
    /// A file's content, from the blob or a local copy.
    Content(&'a ContentRange, Option<PathBuf>),
}

/// The uncompressed tarball, rebuilt piece by piece.
struct Rebuilt<'a> {
    blob: &'a dyn BlobReader,
    counter: &'a AtomicU64,
    pieces: std::vec::IntoIter<Piece<'a>>,
    current: Option<Box<dyn Read + Send + 'a>>,
    /// The content being streamed: its range, hasher and bytes so far.
    checking: Option<(&'a ContentRange, Sha256Hasher, u64)>,
}

impl<'a> Rebuilt<'a> {
    fn blob_range(&self, start: u64, end: u64) -> io::Result<Box<dyn Read + Send + 'a>> {
        let range = RangeRead {
            blob: self.blob,
            counter: self.counter,
            pos: start,
            end,
        };
        Ok(Box::new(zstd::stream::read::Decoder::new(range)?))
    }

    fn next_piece(&mut self) -> io::Result<bool> {
        let Some(piece) = self.pieces.next() else {
            return Ok(false);
        };
        match piece {
            Piece::Headers(start, end) => {
                self.current = Some(self.blob_range(start, end)?);
            }
            Piece::Content(range, local) => {
                self.current = Some(match local {
                    Some(path) => Box::new(File::open(&path)?.take(range.size)),
                    None => self.blob_range(range.start, range.end)?,
                });
                self.checking = Some((range, Sha256Hasher::new(), 0));
            }
        }
        Ok(true)
    }

    fn finish_piece(&mut self) -> io::Result<()> {
        self.current = None;
        if let Some((range, hasher, count)) = self.checking.take() {
            let got = hasher.finish();
            if count != range.size || got != range.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "zstd:chunked entry {:?}: content is {count} bytes with digest {got}, \
                         the TOC says {} bytes with {}",
                        range.name, range.size, range.digest
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Read for Rebuilt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() && !self.next_piece()? {
                return Ok(0);
            }
            let Some(current) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = current.read(buf)?;
            if n == 0 {
                self.finish_piece()?;
                continue;
            }
            if let Some((range, hasher, count)) = self.checking.as_mut() {
                *count += n as u64;
                if *count > range.size {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "zstd:chunked entry {:?}: content longer than its {} bytes",
                            range.name, range.size
                        ),
                    ));
                }
                hasher.update(&buf[..n]);
            }
            return Ok(n);
        }
    }
}

/// A [`Differ`] that pulls a zstd:chunked blob partially (see the [module docs](self)).
pub struct ZstdChunkedDiffer {
    blob: Box<dyn BlobReader>,
    blob_digest: Digest,
    toc_digest: Option<Digest>,
    local: LocalFiles,
    read: AtomicU64,
    reused: u64,
}

impl std::fmt::Debug for ZstdChunkedDiffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdChunkedDiffer")
            .field("blob_digest", &self.blob_digest)
            .field("toc_digest", &self.toc_digest)
            .field("local_files", &self.local.len())
            .finish_non_exhaustive()
    }
}

impl ZstdChunkedDiffer {
    /// A differ for the blob `blob` whose digest (from the image manifest) is `blob_digest`,
    /// taking files from `local` where it can.
    pub fn new(blob: Box<dyn BlobReader>, blob_digest: Digest, local: LocalFiles) -> Self {
        ZstdChunkedDiffer {
            blob,
            blob_digest,
            toc_digest: None,
            local,
            read: AtomicU64::new(0),
            reused: 0,
        }
    }

    /// Checks the compressed TOC against `digest` (the manifest annotation
    /// `io.containers.zstd-chunked.manifest-checksum`).
    pub fn with_toc_digest(mut self, digest: Digest) -> Self {
        self.toc_digest = Some(digest);
        self
    }

    /// Bytes read from the blob so far (footer and TOC included).
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// The blob's size.
    pub fn blob_size(&self) -> u64 {
        self.blob.size()
    }

    /// Bytes of file content taken from local files in the last apply.
    pub fn bytes_reused(&self) -> u64 {
        self.reused
    }

    /// A local file with `range`'s content, verified by hashing it.
    fn local_copy(&self, range: &ContentRange) -> Option<PathBuf> {
        let path = self.local.get(&range.digest)?;
        let mut file = File::open(path).ok()?;
        if file.metadata().ok()?.len() != range.size {
            return None;
        }
        // The index may be stale (a layer changed since): use it only if it still matches.
        (Sha256Hasher::digest_reader(&mut file).ok()? == range.digest).then(|| path.to_path_buf())
    }
}

impl Differ for ZstdChunkedDiffer {
    fn apply_diff(
        &mut self,
        dest: &Path,
        options: &DifferOptions,
    ) -> layerstore_driver::Result<DifferOutput> {
        let blob: &dyn BlobReader = &*self.blob;
        let footer = parse_footer(blob)?;
        self.read.fetch_add(
            SKIPPABLE_HEADER + FOOTER_BODY + footer.toc_compressed,
            Ordering::Relaxed,
        );
        let (toc, ranges) = read_toc(blob, &footer, self.toc_digest.as_ref())?;
        let data_end = footer.toc_offset - SKIPPABLE_HEADER;
        let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut pos = 0;
        let mut reused = 0;
        for range in &ranges {
            if range.start > pos {
                pieces.push(Piece::Headers(pos, range.start));
            }
            let local = self.local_copy(range);
            if local.is_some() {
                reused += range.size;
            }
            pieces.push(Piece::Content(range, local));
            pos = range.end;
        }
        if data_end > pos {
            pieces.push(Piece::Headers(pos, data_end));
        }
        let stream = Rebuilt {
            blob,
            counter: &self.read,
            pieces: pieces.into_iter(),
            current: None,
            checking: None,
        };
        let apply_options = ApplyOptions {
            whiteouts: options.whiteouts,
            uid_map: options.id_mappings.uids.clone(),
            gid_map: options.id_mappings.gids.clone(),
            ignore_chown_errors: options.ignore_chown_errors,
            ..Default::default()
        };
        let (report, packer) = layerstore_archive::apply(
            dest,
            stream,
            JsonLinesPacker::new(Vec::new()),
            &apply_options,
        )
        .map_err(|e| layerstore_driver::Error::Differ {
            message: format!("zstd:chunked blob {}", self.blob_digest),
            source: Some(Box::new(e)),
        })?;
        let records = packer
            .into_inner()
            .map_err(|e| layerstore_driver::Error::Differ {
                message: "zstd:chunked: tar-split records".into(),
                source: Some(Box::new(e)),
            })?;
        self.reused = reused;
        let mut output = DifferOutput::from_report(report, Some(records));
        output.compression = Compression::Zstd;
        output.compressed_digest = Some(self.blob_digest.clone());
        output.compressed_size = self.blob.size();
        output.big_data.insert(TOC_BIG_DATA.to_string(), toc);
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes(Vec<u8>);

    impl BlobReader for Bytes {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let src = self
                .0
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    fn blob_with_toc(toc: &[u8], data: &[u8]) -> Vec<u8> {
        let compressed = zstd::bulk::compress(toc, 3).unwrap();
        let mut blob = data.to_vec();
        blob.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        blob.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        let toc_offset = blob.len() as u64;
        blob.extend_from_slice(&compressed);
        blob.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        blob.extend_from_slice(&40u32.to_le_bytes());
        for word in [toc_offset, compressed.len() as u64, toc.len() as u64, 1] {
            blob.extend_from_slice(&word.to_le_bytes());
        }
        blob.extend_from_slice(FOOTER_MAGIC);
        blob
    }

    #[test]
    fn footer_and_toc_parse_and_ranges_are_checked() {
        let data = zstd::bulk::compress(&[0u8; 1024], 3).unwrap();
        let digest = format!("sha256:{}", "0".repeat(64));
        let toc = format!(
            r#"{{"version":1,"entries":[{{"type":"reg","name":"a","size":5,"digest":"{digest}","offset":1,"endOffset":4}}]}}"#
        );
        let blob = Bytes(blob_with_toc(toc.as_bytes(), &data));
        let footer = parse_footer(&blob).unwrap();
        assert_eq!(footer.toc_uncompressed, toc.len() as u64);
        let (json, ranges) = read_toc(&blob, &footer, None).unwrap();
        assert_eq!(json, toc.as_bytes());
        assert_eq!(ranges.len(), 1);
        assert_eq!((ranges[0].start, ranges[0].end, ranges[0].size), (1, 4, 5));

        let outside = toc.replace(r#""endOffset":4"#, r#""endOffset":99999"#);
        let blob = Bytes(blob_with_toc(outside.as_bytes(), &data));
        let err = read_toc(&blob, &parse_footer(&blob).unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("\"a\""), "{err}");

        let wrong = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        let blob = Bytes(blob_with_toc(toc.as_bytes(), &data));
        let err = read_toc(&blob, &parse_footer(&blob).unwrap(), Some(&wrong)).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn toc_names_index_beneath_the_layer_only() {
        let digest = |c: char| -> Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let toc = format!(
            r#"{{"version":1,"entries":[
            {{"type":"reg","name":"./etc/passwd","digest":"{a}","size":3}},
            {{"type":"reg","name":"../../etc/shadow","digest":"{b}","size":3}},
            {{"type":"dir","name":"./etc/","digest":"{c}"}},
            {{"type":"reg","name":"usr/bin/tool","digest":"{d}","size":3}},
            {{"type":"reg","name":"short","digest":"sha256:ee","size":3}}]}}"#,
            a = digest('a'),
            b = digest('b'),
            c = digest('c'),
            d = digest('d'),
        );
        let mut files = LocalFiles::new();
        assert_eq!(files.add_toc(Path::new("/layer"), toc.as_bytes()), 2);
        assert_eq!(
            files.get(&digest('a')),
            Some(Path::new("/layer/etc/passwd"))
        );
        assert_eq!(files.get(&digest('b')), None);
        assert_eq!(
            files.get(&digest('d')),
            Some(Path::new("/layer/usr/bin/tool"))
        );
        assert_eq!(files.add_toc(Path::new("/layer"), b"not json"), 0);
    }

    #[test]
    fn toc_content_digests_must_be_valid_sha256_digests() {
        // 71 characters starting with `sha256:` once passed for a digest; the model's
        // `Digest` refuses what is not lowercase hex, and a digest of another algorithm.
        let data = zstd::bulk::compress(&[0u8; 1024], 3).unwrap();
        for bad in [
            format!("sha256:{}", "Z".repeat(64)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "0".repeat(128)),
        ] {
            let toc = format!(
                r#"{{"version":1,"entries":[{{"type":"reg","name":"a","size":5,"digest":"{bad}","offset":1,"endOffset":4}}]}}"#
            );
            let blob = Bytes(blob_with_toc(toc.as_bytes(), &data));
            let err = read_toc(&blob, &parse_footer(&blob).unwrap(), None).unwrap_err();
            assert!(err.to_string().contains("no sha256 digest"), "{bad}: {err}");
        }
    }

    #[test]
    fn short_or_foreign_blobs_are_refused() {
        for blob in [
            vec![0u8; 10],
            vec![0u8; 100],
            zstd::bulk::compress(b"x", 3).unwrap(),
        ] {
            let err = parse_footer(&Bytes(blob)).unwrap_err();
            assert!(err.to_string().contains("zstd:chunked"), "{err}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Whatever offsets a (well-compressed) TOC claims, reading it never panics, and
        /// the ranges it accepts are in order, non-empty and inside the blob's data.
        #[test]
        fn accepted_ranges_are_ordered_and_inside_the_data(
            data_len in 0usize..512,
            entries in proptest::collection::vec((0u64..600, 0u64..600, 0u64..50), 0..8),
        ) {
            let digest = format!("sha256:{}", "0".repeat(64));
            let entries: Vec<serde_json::Value> = entries
                .iter()
                .map(|(start, end, size)| serde_json::json!({
                    "type": "reg", "name": "f", "size": size, "digest": digest,
                    "offset": start, "endOffset": end,
                }))
                .collect();
            let toc = serde_json::json!({"version": 1, "entries": entries}).to_string();
            let reader = Bytes(blob_with_toc(toc.as_bytes(), &vec![0u8; data_len]));
            let footer = parse_footer(&reader).unwrap();
            if let Ok((_, ranges)) = read_toc(&reader, &footer, None) {
                let mut previous = 0;
                for range in ranges {
                    proptest::prop_assert!(range.start >= previous);
                    proptest::prop_assert!(range.start < range.end);
                    proptest::prop_assert!(range.end <= data_len as u64);
                    previous = range.end;
                }
            }
        }

        /// Arbitrary bytes are refused or parsed, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let reader = Bytes(bytes);
            if let Ok(footer) = parse_footer(&reader) {
                let _ = read_toc(&reader, &footer, None);
            }
        }
    }
}
