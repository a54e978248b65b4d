//! tar-split records: [`Entry`], their JSON-lines encoding ([`JsonLinesPacker`]) and decoding
//! ([`Unpacker`]), byte-compatible with `github.com/vbatts/tar-split/tar/storage`.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Read, Write};

use data_encoding::BASE64;
use serde::Deserialize;

use crate::error::{Error, lossy};
use crate::pathset::PathSet;
use crate::tar::{SparseMap, SparseRegion};

/// Longest tar-split line [`Unpacker`] accepts. Go's writer never produces a segment larger
/// than a header run (PAX data and long names are capped at 1 MiB each) or a 1 MiB trailing
/// chunk, so 16 MiB of base64 leaves a wide margin while bounding memory.
pub const MAX_LINE_LEN: usize = 16 << 20;

/// The two kinds of tar-split entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A file of the archive: its name, size and content checksum (JSON `"type":1`).
    File,
    /// Raw archive bytes that are not file content (JSON `"type":2`).
    Segment,
}

impl EntryKind {
    /// The JSON `type` number.
    pub fn code(self) -> u8 {
        match self {
            EntryKind::File => 1,
            EntryKind::Segment => 2,
        }
    }
}

/// One tar-split record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File or segment.
    pub kind: EntryKind,
    /// Raw name bytes of a file entry (JSON `name` when UTF-8, else `name_raw`).
    pub name: Option<Vec<u8>>,
    /// Content size of a file entry (JSON `size`, omitted when 0). For a sparse file written by
    /// this crate: the packed data size (the sum of [`SparseMap::regions`] lengths).
    pub size: u64,
    /// Segment: the raw bytes. File with content: the 8-byte big-endian CRC-64/GO-ISO of it.
    /// `None` is JSON `null` (a file of size 0); `Some(vec![])` is `""`.
    pub payload: Option<Vec<u8>>,
    /// 0-based sequence number.
    pub position: u64,
    /// Extension (JSON key `sparse`, ignored by Go): the map of a sparse file, so assembly can
    /// compact the expanded file on disk back into the archive's packed data.
    pub sparse: Option<SparseMap>,
}

impl Entry {
    /// A segment entry holding raw archive bytes.
    pub fn segment(payload: Vec<u8>) -> Self {
        Entry {
            kind: EntryKind::Segment,
            name: None,
            size: 0,
            payload: Some(payload),
            position: 0,
            sparse: None,
        }
    }

    /// A file entry; `crc` is `None` for an empty file.
    pub fn file(name: Vec<u8>, size: u64, crc: Option<u64>) -> Self {
        Entry {
            kind: EntryKind::File,
            name: Some(name),
            size,
            payload: crc.map(|c| c.to_be_bytes().to_vec()),
            position: 0,
            sparse: None,
        }
    }

    /// The name as bytes (empty when absent).
    pub fn name_bytes(&self) -> &[u8] {
        self.name.as_deref().unwrap_or_default()
    }

    /// The name for messages (lossy UTF-8).
    pub fn name_lossy(&self) -> String {
        lossy(self.name_bytes())
    }
}

/// Where a disassembler puts the entries it records.
pub trait EntrySink {
    /// Records one entry. `entry.position` is already set by the producer.
    fn put(&mut self, entry: Entry) -> Result<(), Error>;
}

impl EntrySink for Vec<Entry> {
    fn put(&mut self, entry: Entry) -> Result<(), Error> {
        self.push(entry);
        Ok(())
    }
}

impl<S: EntrySink + ?Sized> EntrySink for &mut S {
    fn put(&mut self, entry: Entry) -> Result<(), Error> {
        (**self).put(entry)
    }
}

/// Go's `filepath.Clean` on raw bytes: the key tar-split uses to detect duplicate paths.
pub fn clean_path(name: &[u8]) -> Vec<u8> {
    clean_path_borrowed(name).into_owned()
}

/// [`clean_path`], borrowing `name` where it is clean already (most archive names are).
pub(crate) fn clean_path_borrowed(name: &[u8]) -> Cow<'_, [u8]> {
    let body = name.strip_prefix(b"/").unwrap_or(name);
    let clean = !body.is_empty()
        && body
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..");
    if clean {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(clean_path_by_components(name))
    }
}

/// [`clean_path`] for names that need cleaning.
fn clean_path_by_components(name: &[u8]) -> Vec<u8> {
    let rooted = name.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(comp);
                }
            }
            _ => parts.push(comp),
        }
    }
    let mut out = Vec::with_capacity(name.len() + 1);
    if rooted {
        out.push(b'/');
    }
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Appends `s` as a JSON string exactly as Go 1.19's `encoding/json` does (HTML escaping on,
/// `\b` and `\f` as `\u0008`/`\u000c`, U+2028/U+2029 escaped). `s` must be valid UTF-8.
fn push_go_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f | b'<' | b'>' | b'&' => None,
            // U+2028 and U+2029 are E2 80 A8 / E2 80 A9.
            0xe2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
            {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Base64 with SIMD: most of a record's bytes are a header's 512 (rootfs.tar's records:
/// 16.5 MB of JSON), and data-encoding's scalar encoder was 5% of the extracting thread.
fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64_simd::STANDARD.encoded_length(data.len()), 0);
    let encoded =
        base64_simd::STANDARD.encode(data, base64_simd::Out::from_slice(&mut out[start..]));
    debug_assert_eq!(encoded.len(), out.len() - start);
    out.push(b'"');
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends the JSON line (with its `\n`) for `entry` at `position`, byte for byte as Go's
/// `json.Encoder` writes `storage.Entry`, plus the `sparse` extension when present.
pub fn encode_entry(out: &mut Vec<u8>, entry: &Entry, position: u64) {
    out.extend_from_slice(b"{\"type\":");
    push_u64(out, u64::from(entry.kind.code()));
    if let Some(name) = entry.name.as_deref().filter(|n| !n.is_empty()) {
        match std::str::from_utf8(name) {
            Ok(s) => {
                out.extend_from_slice(b",\"name\":");
                push_go_json_string(out, s);
            }
            Err(_) => {
                out.extend_from_slice(b",\"name_raw\":");
                push_base64(out, name);
            }
        }
    }
    if entry.size != 0 {
        out.extend_from_slice(b",\"size\":");
        push_u64(out, entry.size);
    }
    out.extend_from_slice(b",\"payload\":");
    match &entry.payload {
        None => out.extend_from_slice(b"null"),
        Some(p) => push_base64(out, p),
    }
    out.extend_from_slice(b",\"position\":");
    push_u64(out, position);
    if let Some(sparse) = &entry.sparse {
        out.extend_from_slice(b",\"sparse\":{\"real_size\":");
        push_u64(out, sparse.real_size);
        out.extend_from_slice(b",\"regions\":[");
        for (i, r) in sparse.regions.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            push_u64(out, r.offset);
            out.push(b',');
            push_u64(out, r.len);
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"}\n");
}

/// Writes entries as JSON lines, one per entry, like Go's `storage.NewJSONPacker`.
///
/// Positions are assigned by the packer (0, 1, 2, ...), and a file entry whose cleaned name
/// was already seen is refused with [`Error::DuplicatePath`], as Go does.
pub struct JsonLinesPacker<W: Write> {
    out: W,
    line: Vec<u8>,
    position: u64,
    seen: PathSet,
}

impl<W: Write> JsonLinesPacker<W> {
    /// A packer writing to `out`.
    pub fn new(out: W) -> Self {
        JsonLinesPacker {
            out,
            line: Vec::with_capacity(1024),
            position: 0,
            seen: PathSet::default(),
        }
    }

    /// Number of entries written so far.
    pub fn len(&self) -> u64 {
        self.position
    }

    /// Whether no entry was written yet.
    pub fn is_empty(&self) -> bool {
        self.position == 0
    }

    /// The writer as it is (not flushed).
    pub(crate) fn into_out(self) -> W {
        self.out
    }

    /// Returns the writer (after flushing it).
    pub fn into_inner(mut self) -> Result<W, Error> {
        self.out
            .flush()
            .map_err(|e| Error::io("flushing tar-split output", e))?;
        Ok(self.out)
    }
}

impl<W: Write> JsonLinesPacker<TarSplitGzip<W>> {
    /// Ends the gzip stream and returns the underlying writer.
    pub fn finish(self) -> Result<W, Error> {
        self.out
            .finish()
            .map_err(|e| Error::io("finishing the tar-split gzip stream", e))
    }
}

impl<W: Write> EntrySink for JsonLinesPacker<W> {
    fn put(&mut self, entry: Entry) -> Result<(), Error> {
        if entry.kind == EntryKind::File {
            let key = clean_path_borrowed(entry.name_bytes());
            if !self.seen.insert(&key) {
                return Err(Error::DuplicatePath { name: lossy(&key) });
            }
        }
        self.line.clear();
        encode_entry(&mut self.line, &entry, self.position);
        self.out
            .write_all(&self.line)
            .map_err(|e| Error::io("writing tar-split entry", e))?;
        self.position += 1;
        Ok(())
    }
}

/// A packer that gzips its JSON lines ([`TarSplitGzip`]), the form of
/// `<layer-id>.tar-split.gz`. End it with [`JsonLinesPacker::finish`].
pub fn gzip_packer<W: Write>(w: W) -> JsonLinesPacker<TarSplitGzip<W>> {
    JsonLinesPacker::new(tar_split_gzip(w))
}

/// Writes JSON lines packed elsewhere (a differ's `tar_split` output) to `w` gzipped as
/// [`gzip_packer`] writes them, and returns `w`: the one encoder of `<layer-id>.tar-split.gz`.
pub fn write_gzipped_records<W: Write>(w: W, records: &[u8]) -> Result<W, Error> {
    let mut gz = tar_split_gzip(w);
    gz.write_all(records)
        .map_err(|e| Error::io("writing tar-split records", e))?;
    gz.finish()
        .map_err(|e| Error::io("finishing the tar-split gzip stream", e))
}

/// The gzip stream of a `.tar-split.gz` file (any gzip reads back, Go's included).
pub(crate) fn tar_split_gzip<W: Write>(w: W) -> TarSplitGzip<W> {
    TarSplitGzip::new(w)
}

/// The gzip writer of `<layer-id>.tar-split.gz`: ISA-L's level 1 where this build has it
/// ([`layerstore_igzip::GzEncoder`]), else zlib-rs at level "fast" (Go's `gzip.BestSpeed`).
/// On rootfs.tar's 16.5 MB of records ISA-L wrote 818 KB in a fraction of zlib-rs's 18 ms
/// for 1,033 KB; an import spends that CPU beside its busiest threads. End it with
/// [`TarSplitGzip::finish`].
#[derive(Debug)]
pub enum TarSplitGzip<W: Write> {
    /// ISA-L level 1.
    Isal(layerstore_igzip::GzEncoder<W>),
    /// zlib-rs (flate2), level "fast" (boxed: its state is large, and rarely used).
    Zlib(Box<flate2::write::GzEncoder<W>>),
}

impl<W: Write> TarSplitGzip<W> {
    /// A writer gzipping into `w`.
    pub fn new(w: W) -> Self {
        match layerstore_igzip::GzEncoder::new(w) {
            Ok(isal) => TarSplitGzip::Isal(isal),
            Err((_, w)) => TarSplitGzip::Zlib(Box::new(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::fast(),
            ))),
        }
    }

    /// Ends the gzip stream and returns the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            TarSplitGzip::Isal(gz) => gz.finish(),
            TarSplitGzip::Zlib(gz) => gz.finish(),
        }
    }
}

impl<W: Write> Write for TarSplitGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            TarSplitGzip::Isal(gz) => gz.write(data),
            TarSplitGzip::Zlib(gz) => gz.write(data),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            TarSplitGzip::Isal(gz) => gz.write_all(data),
            TarSplitGzip::Zlib(gz) => gz.write_all(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            TarSplitGzip::Isal(gz) => gz.flush(),
            TarSplitGzip::Zlib(gz) => gz.flush(),
        }
    }
}

#[derive(Deserialize)]
struct RawSparse {
    real_size: u64,
    regions: Vec<(u64, u64)>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name_raw: Option<Cow<'a, str>>,
    #[serde(default)]
    size: i64,
    #[serde(default, borrow)]
    payload: Option<Cow<'a, str>>,
    #[serde(default)]
    position: i64,
    #[serde(default)]
    sparse: Option<RawSparse>,
}

/// Reads tar-split JSON lines back into entries, validating as it goes: known types, positions
/// 0, 1, 2... in order, valid base64, no duplicate file paths, bounded line length.
pub struct Unpacker<R: BufRead> {
    input: R,
    line: Vec<u8>,
    line_no: u64,
    next_position: u64,
    seen: PathSet,
    done: bool,
}

impl<R: BufRead> Unpacker<R> {
    /// An unpacker over JSON lines (already decompressed).
    pub fn new(input: R) -> Self {
        Unpacker {
            input,
            line: Vec::new(),
            line_no: 0,
            next_position: 0,
            seen: PathSet::default(),
            done: false,
        }
    }

    /// Reads one line into `self.line` (without its newline). `false` at end of input.
    fn read_line(&mut self) -> Result<bool, Error> {
        self.line.clear();
        loop {
            let available = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("reading tar-split entries", e)),
            };
            if available.is_empty() {
                return Ok(!self.line.is_empty());
            }
            let (take, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let content = if found { take - 1 } else { take };
            if self.line.len() + content > MAX_LINE_LEN {
                return Err(Error::record(
                    self.line_no + 1,
                    format!("line longer than {MAX_LINE_LEN} bytes"),
                ));
            }
            self.line.extend_from_slice(&available[..content]);
            self.input.consume(take);
            if found {
                return Ok(true);
            }
        }
    }

    fn decode(&mut self) -> Result<Entry, Error> {
        let line = self.line_no;
        let raw: RawEntry<'_> =
            serde_json::from_slice(&self.line).map_err(|source| Error::Json { line, source })?;
        let kind = match raw.kind {
            1 => EntryKind::File,
            2 => EntryKind::Segment,
            other => return Err(Error::record(line, format!("unknown entry type {other}"))),
        };
        let position = u64::try_from(raw.position)
            .map_err(|_| Error::record(line, format!("negative position {}", raw.position)))?;
        if position != self.next_position {
            return Err(Error::record(
                line,
                format!(
                    "position {position} out of order (expected {})",
                    self.next_position
                ),
            ));
        }
        let size = u64::try_from(raw.size)
            .map_err(|_| Error::record(line, format!("negative size {}", raw.size)))?;
        let decode = |field: &'static str, s: &str| {
            BASE64.decode(s.as_bytes()).map_err(|source| Error::Base64 {
                line,
                field,
                source,
            })
        };
        let name_raw = match raw.name_raw.as_deref() {
            Some(s) if !s.is_empty() => Some(decode("name_raw", s)?),
            _ => None,
        };
        // Go's GetName: name_raw wins when non-empty.
        let name = name_raw.or_else(|| {
            raw.name
                .filter(|n| !n.is_empty())
                .map(|n| n.into_owned().into_bytes())
        });
        let payload = match raw.payload.as_deref() {
            None => None,
            Some(s) => Some(decode("payload", s)?),
        };
        let sparse = raw.sparse.map(|s| SparseMap {
            real_size: s.real_size,
            regions: s
                .regions
                .into_iter()
                .map(|(offset, len)| SparseRegion { offset, len })
                .collect(),
        });
        if kind == EntryKind::File {
            let key = clean_path_borrowed(name.as_deref().unwrap_or_default());
            if !self.seen.insert(&key) {
                return Err(Error::DuplicatePath { name: lossy(&key) });
            }
            if size > 0 && payload.as_ref().is_some_and(|p| p.len() != 8) {
                return Err(Error::record(
                    line,
                    "file checksum payload is not 8 bytes".to_string(),
                ));
            }
        }
        Ok(Entry {
            kind,
            name,
            size,
            payload,
            position,
            sparse,
        })
    }
}

impl<R: BufRead> Iterator for Unpacker<R> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.read_line() {
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Ok(true) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            self.line_no += 1;
            // Go's decoder skips whitespace between values, so blank lines are harmless.
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let result = self.decode();
            match &result {
                Ok(_) => self.next_position += 1,
                Err(_) => self.done = true,
            }
            return Some(result);
        }
    }
}

/// Reads a `<layer-id>.tar-split.gz` stream: every gzip member in turn, as Go's
/// `gzip.Reader` does ([`TarSplitGunzip`]).
pub fn read_tar_split_gz<R: Read>(r: R) -> Unpacker<BufReader<TarSplitGunzip<R>>> {
    Unpacker::new(BufReader::with_capacity(256 << 10, TarSplitGunzip::new(r)))
}

/// The gzip reader of `<layer-id>.tar-split.gz`: ISA-L's inflate where this build has it,
/// zlib-rs otherwise. Both read every member until the input ends, as Go's `gzip.Reader`
/// (multistream by default) does, and refuse bytes after a member that do not start another.
pub enum TarSplitGunzip<R: Read> {
    /// ISA-L.
    Isal(layerstore_igzip::MultiGzDecoder<BufReader<R>>),
    /// zlib-rs (flate2), boxed: its state is large, and rarely used.
    Zlib(Box<flate2::read::MultiGzDecoder<R>>),
    /// ISA-L could not allocate its state: the error, given on the first read.
    Failed(Option<io::Error>),
}

impl<R: Read> std::fmt::Debug for TarSplitGunzip<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TarSplitGunzip::Isal(_) => "TarSplitGunzip::Isal",
            TarSplitGunzip::Zlib(_) => "TarSplitGunzip::Zlib",
            TarSplitGunzip::Failed(_) => "TarSplitGunzip::Failed",
        })
    }
}

impl<R: Read> TarSplitGunzip<R> {
    /// A reader of the gzip stream `r`.
    pub fn new(r: R) -> Self {
        if !layerstore_igzip::AVAILABLE {
            return TarSplitGunzip::Zlib(Box::new(flate2::read::MultiGzDecoder::new(r)));
        }
        match layerstore_igzip::MultiGzDecoder::new(BufReader::with_capacity(128 << 10, r)) {
            Ok(isal) => TarSplitGunzip::Isal(isal),
            Err(e) => TarSplitGunzip::Failed(Some(e.into())),
        }
    }
}

impl<R: Read> Read for TarSplitGunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            TarSplitGunzip::Isal(gz) => gz.read(buf),
            TarSplitGunzip::Zlib(gz) => gz.read(buf),
            TarSplitGunzip::Failed(e) => Err(e
                .take()
                .unwrap_or_else(|| io::Error::other("the tar-split gzip reader failed"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gzip_member_of_a_tar_split_gz_is_read_as_go_does() {
        let mut first = JsonLinesPacker::new(Vec::new());
        first.put(Entry::segment(b"first".to_vec())).expect("put");
        let mut second = JsonLinesPacker::new(Vec::new());
        second.position = 1;
        second.put(Entry::segment(b"second".to_vec())).expect("put");
        let mut gz = write_gzipped_records(Vec::new(), &first.into_inner().expect("plain"))
            .expect("member 1");
        gz = write_gzipped_records(gz, &second.into_inner().expect("plain")).expect("member 2");
        let payloads: Vec<Vec<u8>> = read_tar_split_gz(&gz[..])
            .map(|e| e.expect("entry").payload.expect("payload"))
            .collect();
        assert_eq!(payloads, [b"first".to_vec(), b"second".to_vec()]);
        // Bytes after a member that do not start another are an error, not ignored.
        gz.extend_from_slice(b"junk");
        assert!(read_tar_split_gz(&gz[..]).any(|e| e.is_err()));
    }

    #[test]
    fn records_written_gzipped_read_back_as_the_packer_wrote_them() {
        let mut packer = JsonLinesPacker::new(Vec::new());
        packer
            .put(Entry::segment(b"0123456789".to_vec()))
            .expect("put");
        let plain = packer.into_inner().expect("plain");
        let mut gzipped_packer = gzip_packer(Vec::new());
        gzipped_packer
            .put(Entry::segment(b"0123456789".to_vec()))
            .expect("put");
        let packed = gzipped_packer.finish().expect("gzip");
        let written = write_gzipped_records(Vec::new(), &plain).expect("write");
        assert_eq!(written, packed, "the same bytes as the gzip packer");
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&written[..]), &mut back)
            .expect("gunzip");
        assert_eq!(back, plain);
    }

    fn line(e: &Entry, pos: u64) -> String {
        let mut v = Vec::new();
        encode_entry(&mut v, e, pos);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn encodes_like_go() {
        let f = Entry::file(b"dir/file".to_vec(), 6, Some(0x614c3eeee2d81000));
        assert_eq!(
            line(&f, 3),
            "{\"type\":1,\"name\":\"dir/file\",\"size\":6,\"payload\":\"YUw+7uLYEAA=\",\"position\":3}\n"
        );
        let d = Entry::file(b"dir/".to_vec(), 0, None);
        assert_eq!(
            line(&d, 1),
            "{\"type\":1,\"name\":\"dir/\",\"payload\":null,\"position\":1}\n"
        );
        assert_eq!(
            line(&Entry::segment(Vec::new()), 25),
            "{\"type\":2,\"payload\":\"\",\"position\":25}\n"
        );
        let raw = Entry::file(b"./bad\xff\xfename".to_vec(), 4, Some(0));
        assert!(line(&raw, 3).contains("\"name_raw\":\"Li9iYWT//m5hbWU=\""));
    }

    #[test]
    fn escapes_strings_like_go_1_19() {
        let e = Entry::file(
            "a<b>&\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}é\u{2028}\u{2029}".into(),
            0,
            None,
        );
        assert_eq!(
            line(&e, 0),
            "{\"type\":1,\"name\":\"a\\u003cb\\u003e\\u0026\\\"\\\\\\n\\r\\t\\u0008\\u000c\\u0001\u{7f}é\\u2028\\u2029\",\"payload\":null,\"position\":0}\n"
        );
    }

    #[test]
    fn round_trips_through_unpacker() {
        let mut packer = JsonLinesPacker::new(Vec::new());
        let mut f = Entry::file(b"x<y\xff".to_vec(), 9, Some(42));
        f.sparse = Some(SparseMap {
            real_size: 100,
            regions: vec![SparseRegion { offset: 10, len: 9 }],
        });
        let entries = vec![Entry::segment(b"hdr".to_vec()), f, Entry::segment(vec![])];
        for e in entries.clone() {
            packer.put(e).unwrap();
        }
        let bytes = packer.into_inner().unwrap();
        let back: Vec<Entry> = Unpacker::new(&bytes[..]).collect::<Result<_, _>>().unwrap();
        let expected: Vec<Entry> = entries
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.position = i as u64;
                e
            })
            .collect();
        assert_eq!(back, expected);
    }

    proptest::proptest! {
        /// The shortcut for clean names gives what cleaning by components gives.
        #[test]
        fn clean_path_shortcut_agrees(name in "[a./]{0,12}") {
            proptest::prop_assert_eq!(
                clean_path(name.as_bytes()),
                clean_path_by_components(name.as_bytes())
            );
        }
    }

    #[test]
    fn clean_path_matches_go() {
        for (input, want) in [
            ("", "."),
            ("./", "."),
            ("./a/b/", "a/b"),
            ("a//b/./c/..", "a/b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/../..", ".."),
            ("a/b", "a/b"),
            ("/a", "/a"),
            ("a/.b/c..", "a/.b/c.."),
        ] {
            assert_eq!(clean_path(input.as_bytes()), want.as_bytes(), "{input}");
        }
    }

    #[test]
    fn packer_refuses_duplicates() {
        let mut packer = JsonLinesPacker::new(Vec::new());
        packer.put(Entry::file(b"./a/".to_vec(), 0, None)).unwrap();
        let err = packer.put(Entry::file(b"a".to_vec(), 0, None)).unwrap_err();
        assert!(
            matches!(err, Error::DuplicatePath { ref name } if name == "a"),
            "{err}"
        );
    }

    fn unpack_err(text: &str) -> Error {
        Unpacker::new(text.as_bytes())
            .find_map(Result::err)
            .expect("an error")
    }

    #[test]
    fn unpacker_rejects_bad_input() {
        assert!(matches!(
            unpack_err("{\"type\":2,"),
            Error::Json { line: 1, .. }
        ));
        assert!(matches!(
            unpack_err("{\"type\":2,\"payload\":\"@@\",\"position\":0}\n"),
            Error::Base64 {
                field: "payload",
                ..
            }
        ));
        let e = unpack_err(
            "{\"type\":2,\"payload\":\"\",\"position\":0}\n{\"type\":2,\"payload\":\"\",\"position\":2}\n",
        );
        assert!(e.to_string().contains("position 2 out of order"), "{e}");
        let e = unpack_err("{\"type\":3,\"payload\":null,\"position\":0}\n");
        assert!(e.to_string().contains("unknown entry type 3"), "{e}");
        let e = unpack_err(
            "{\"type\":1,\"name\":\"a\",\"size\":3,\"payload\":\"AAA=\",\"position\":0}\n",
        );
        assert!(e.to_string().contains("not 8 bytes"), "{e}");
        let e = unpack_err(
            "{\"type\":1,\"name\":\"a\",\"payload\":null,\"position\":0}\n{\"type\":1,\"name\":\"./a\",\"payload\":null,\"position\":1}\n",
        );
        assert!(matches!(e, Error::DuplicatePath { .. }), "{e}");
    }

    #[test]
    fn unpacker_caps_line_length() {
        let mut text = String::from("{\"type\":2,\"payload\":\"");
        text.push_str(&"A".repeat(MAX_LINE_LEN + 8));
        let e = unpack_err(&text);
        assert!(e.to_string().contains("line longer than"), "{e}");
    }
}
