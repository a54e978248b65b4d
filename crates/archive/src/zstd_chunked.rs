//! The zstd:chunked blob format (containers/storage `pkg/chunked`, manifest type 1): its
//! footer, its table of contents (TOC) and the content ranges the TOC gives, read through a
//! [`BlobReader`] (a local file, or range requests to a registry). The partial pull built on
//! it, which takes files the host already has, is `layerstore-layers`' `ZstdChunkedDiffer`.
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
//! blob range whose frames decompress to exactly that content. Only the 40-byte footer of
//! manifest type 1 (containers/storage ≤ 1.44, skopeo 1.9) is read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use layerstore_model::{Digest, DigestAlgorithm, Sha256Hasher};

use crate::error::{Error, Result};

/// The footer's magic, its last eight bytes.
pub const FOOTER_MAGIC: &[u8; 8] = b"GnUlInUx";
/// Size of the footer body (inside its skippable frame).
pub const FOOTER_BODY: u64 = 40;
/// Skippable frame header: magic + length.
pub const SKIPPABLE_HEADER: u64 = 8;
/// Skippable frame magic, little-endian on disk.
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// The only manifest type written by the format (Go's `ManifestTypeCRFS`).
pub const MANIFEST_TYPE_CRFS: u64 = 1;
/// Refuse TOCs larger than this, uncompressed (a layer of a million files is ~300 MiB of
/// JSON; anything beyond is not a layer we want to hold in memory).
pub const MAX_TOC_SIZE: u64 = 512 << 20;

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

/// `text` as a SHA-256 digest, the only kind a zstd:chunked TOC carries for content.
pub fn sha256_digest(text: &str) -> Option<Digest> {
    text.parse::<Digest>()
        .ok()
        .filter(|d| d.algorithm() == DigestAlgorithm::Sha256)
}

/// The regular files a TOC (JSON) lists with a valid content digest: `(name, digest)`; `None`
/// when `toc` is not a TOC at all.
pub fn toc_regular_files(toc: &[u8]) -> Option<Vec<(String, Digest)>> {
    let toc = serde_json::from_slice::<serde_json::Value>(toc).ok()?;
    Some(
        toc["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["type"].as_str() == Some("reg"))
            .filter_map(|entry| {
                let name = entry["name"].as_str()?;
                let digest = entry["digest"].as_str().and_then(sha256_digest)?;
                Some((name.to_owned(), digest))
            })
            .collect(),
    )
}

fn invalid(message: String) -> Error {
    Error::ZstdChunked {
        message,
        source: None,
    }
}

fn invalid_io(message: String, source: io::Error) -> Error {
    Error::ZstdChunked {
        message,
        source: Some(source),
    }
}

/// The parsed footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Where the compressed TOC starts in the blob.
    pub toc_offset: u64,
    /// The compressed TOC's length.
    pub toc_compressed: u64,
    /// The TOC's length once decompressed.
    pub toc_uncompressed: u64,
}

impl Footer {
    /// Where the blob's data (the tar stream's frames) ends: at the TOC's skippable frame.
    pub fn data_end(&self) -> u64 {
        self.toc_offset - SKIPPABLE_HEADER
    }

    /// The bytes a reader fetches for the footer and the TOC.
    pub fn metadata_len(&self) -> u64 {
        SKIPPABLE_HEADER + FOOTER_BODY + self.toc_compressed
    }
}

/// Reads and checks the footer of `blob`.
pub fn parse_footer(blob: &dyn BlobReader) -> Result<Footer> {
    let size = blob.size();
    let tail = SKIPPABLE_HEADER + FOOTER_BODY;
    if size < tail {
        return Err(invalid(format!(
            "zstd:chunked blob of {size} bytes is too short for a footer"
        )));
    }
    let mut raw = [0u8; 48];
    blob.read_exact_at(&mut raw, size - tail)
        .map_err(|e| invalid_io("reading the zstd:chunked footer".into(), e))?;
    let word = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
    let magic = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let length = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    if magic != SKIPPABLE_MAGIC || u64::from(length) != FOOTER_BODY || &raw[40..48] != FOOTER_MAGIC
    {
        return Err(invalid(
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
        return Err(invalid(format!(
            "zstd:chunked footer: unknown manifest type {manifest_type}"
        )));
    }
    let toc_end = footer.toc_offset.checked_add(footer.toc_compressed);
    if footer.toc_offset < SKIPPABLE_HEADER || toc_end.is_none_or(|end| end > size - tail) {
        return Err(invalid(format!(
            "zstd:chunked footer: TOC at {}+{} lies outside the blob of {size} bytes",
            footer.toc_offset, footer.toc_compressed
        )));
    }
    if footer.toc_uncompressed > MAX_TOC_SIZE {
        return Err(invalid(format!(
            "zstd:chunked footer: TOC of {} bytes is larger than the limit {MAX_TOC_SIZE}",
            footer.toc_uncompressed
        )));
    }
    Ok(footer)
}

/// A regular file's content range in the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRange {
    /// The file's name in the tarball.
    pub name: String,
    /// Where its frames start in the blob.
    pub start: u64,
    /// Where they end (exclusive).
    pub end: u64,
    /// The content's size, uncompressed.
    pub size: u64,
    /// The SHA-256 of the content.
    pub digest: Digest,
}

/// Reads, checks (against `expected`, the digest of the compressed TOC, when given) and
/// parses the TOC; returns its JSON and the regular files' content ranges in blob order.
pub fn read_toc(
    blob: &dyn BlobReader,
    footer: &Footer,
    expected: Option<&Digest>,
) -> Result<(Vec<u8>, Vec<ContentRange>)> {
    let len = usize::try_from(footer.toc_compressed)
        .map_err(|_| invalid("zstd:chunked TOC too large".into()))?;
    let mut compressed = vec![0u8; len];
    blob.read_exact_at(&mut compressed, footer.toc_offset)
        .map_err(|e| invalid_io("reading the zstd:chunked TOC".into(), e))?;
    if let Some(expected) = expected {
        let got = Sha256Hasher::digest(&compressed);
        if &got != expected {
            return Err(invalid(format!(
                "zstd:chunked TOC: checksum {got} does not match the manifest's {expected}"
            )));
        }
    }
    let capacity = usize::try_from(footer.toc_uncompressed).unwrap_or(usize::MAX);
    let json = zstd::bulk::decompress(&compressed, capacity)
        .map_err(|e| invalid_io("zstd:chunked TOC: not a valid zstd frame".into(), e))?;
    if json.len() as u64 != footer.toc_uncompressed {
        return Err(invalid(format!(
            "zstd:chunked TOC: {} bytes uncompressed, the footer says {}",
            json.len(),
            footer.toc_uncompressed
        )));
    }
    let toc: serde_json::Value = serde_json::from_slice(&json).map_err(|e| {
        invalid_io(
            "zstd:chunked TOC: not valid JSON".into(),
            io::Error::other(e),
        )
    })?;
    let entries = toc
        .get("entries")
        .and_then(|e| e.as_array())
        .ok_or_else(|| invalid("zstd:chunked TOC: no \"entries\" array".into()))?;
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
            return Err(invalid(format!(
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
                invalid(format!(
                    "zstd:chunked TOC entry {name:?}: no sha256 digest for its content"
                ))
            })?;
        let previous_end = ranges.last().map_or(0, |r| r.end);
        if start >= end || start < previous_end || end > data_end {
            return Err(invalid(format!(
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
