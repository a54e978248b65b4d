//! Disassembly: parse a tar stream once, record tar-split entries, hand out headers and content.

use std::io::{self, Read};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::Crc64Digest;
use crate::entry::{Entry, EntrySink};
use crate::error::{Error, lossy};
use crate::tar::{
    BLOCK, Format, GNU_EXT_ENTRIES, GNU_EXT_ISEXTENDED, GNU_ISEXTENDED, GNU_REALSIZE,
    GNU_SPARSE_ENTRIES, GNU_SPARSE_OFFSET, Limits, RawHeader, Records, SparseMap, SparseRegion,
    TarHeader, TarKind, TarTime, c_string, is_zero_block, parse_decimal, parse_gnu_sparse_entries,
    parse_header_block, parse_numeric, parse_pax_records, parse_pax_time, pax_get, percent_decode,
};

/// Size of the input buffer. Content reads of at least half of it bypass it.
const BUFFER_SIZE: usize = 256 << 10;

/// Most extension headers (`x`, `L`, `K`) allowed in front of one entry: each is capped by
/// [`Limits`], and this bounds their sum (Go keeps only the last of each kind too).
const MAX_EXTENSION_HEADERS: u32 = 16;

/// Most bytes of global PAX records kept in force: they are copied into every later header's
/// `pax` list, so a smaller cap than one record's keeps that copying cheap. Real archives
/// carry a few dozen bytes (`git archive`'s commit id).
const MAX_GLOBAL_RECORDS: u64 = 64 << 10;

/// Pass-through reads of at least this size take content straight from the input.
const DIRECT_READ_MIN: usize = 64 << 10;

/// Trailing bytes after the end-of-archive blocks are recorded in the chunks Go's tool makes
/// when c/storage applies an uncompressed tarball from a file: c/storage reads the first
/// 10,240 bytes on their own, then through a 32 KiB `bufio.Reader`, and tar-split reads the
/// rest in 1 MiB reads. So the first trailing chunk ends at the next 10240 + k·32768 offset,
/// the next ones are 1 MiB long, and an empty segment marks the end.
const GO_FIRST_READ: u64 = 10240;
const GO_BUFIO_SIZE: u64 = 32 << 10;
const GO_PADDING_CHUNK: u64 = 1 << 20;

fn go_trailing_boundary(offset: u64) -> u64 {
    if offset <= GO_FIRST_READ {
        GO_FIRST_READ
    } else {
        GO_FIRST_READ + (offset - GO_FIRST_READ).div_ceil(GO_BUFIO_SIZE) * GO_BUFIO_SIZE
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between entries: the next call reads headers.
    Headers,
    /// Inside an entry's content.
    Content,
    /// The end-of-archive marker (or EOF) was read.
    End,
    /// Recording the bytes after the end of the archive.
    Trailing,
    /// Everything was read and recorded.
    Finished,
}

struct CurrentFile {
    name: Vec<u8>,
    size: u64,
    sparse: Option<SparseMap>,
}

/// A pull-style tar reader that records tar-split entries as it goes.
///
/// Call [`next_header`](Self::next_header) until it returns `Ok(None)`, reading each entry's
/// content with [`read_content`](Self::read_content) if wanted (unread content is skipped and
/// still checksummed), then [`finish`](Self::finish) to record what follows the archive.
///
/// Entries are recorded exactly as Go's tar-split does (see the crate docs for the two
/// deliberate differences: sparse files and header-only entries with a size).
pub struct Disassembler<R: Read, S: EntrySink> {
    input: R,
    sink: S,
    limits: Limits,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Stream offset of `buf[pos]`: every byte before it has been consumed.
    offset: u64,
    /// Pass-through mode ([`TeeDisassembler`]): bytes read from `input` but not yet handed
    /// out are `buf[tee_mark..end]`, preceded by `tee` (spilled there when the buffer had to
    /// be refilled before they were handed out) from `tee_pos` on.
    tee: Option<Vec<u8>>,
    tee_pos: usize,
    tee_mark: usize,
    /// Raw bytes of the segment being collected.
    raw: Vec<u8>,
    next_position: u64,
    state: State,
    /// Padding still to read (into `raw`) before the next header.
    pad: u64,
    /// Content bytes left in the current entry.
    remaining: u64,
    crc: Crc64Digest,
    current: Option<CurrentFile>,
    globals: Records,
    /// End of the trailing chunk being read (state `Trailing`).
    chunk_end: u64,
}

impl<R: Read, S: EntrySink> Disassembler<R, S> {
    /// A disassembler with the default [`Limits`].
    pub fn new(input: R, sink: S) -> Self {
        Self::with_limits(input, sink, Limits::default())
    }

    /// A disassembler with explicit limits.
    pub fn with_limits(input: R, sink: S, limits: Limits) -> Self {
        Disassembler {
            input,
            sink,
            limits,
            buf: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
            tee: None,
            tee_pos: 0,
            tee_mark: 0,
            raw: Vec::with_capacity(4 * BLOCK),
            next_position: 0,
            state: State::Headers,
            pad: 0,
            remaining: 0,
            crc: Crc64Digest::new(),
            current: None,
            globals: Vec::new(),
            chunk_end: 0,
        }
    }

    /// The sink entries are recorded to.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, mutably.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Bytes of the tar stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Content bytes left in the current entry.
    pub fn content_remaining(&self) -> u64 {
        if self.state == State::Content {
            self.remaining
        } else {
            0
        }
    }

    // ---- input ----

    /// Refills the (fully consumed) buffer with one read. Returns the bytes read; 0 at EOF.
    fn fill(&mut self) -> Result<usize, Error> {
        debug_assert_eq!(self.pos, self.end);
        self.spill_tee();
        let n = loop {
            match self.input.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("reading the tar stream at offset {}", self.offset),
                        e,
                    ));
                }
            }
        };
        self.pos = 0;
        self.end = n;
        self.tee_mark = 0;
        Ok(n)
    }

    /// Pass-through mode: saves the buffer's not-yet-handed-out bytes before it is reused.
    fn spill_tee(&mut self) {
        if let Some(tee) = &mut self.tee {
            tee.extend_from_slice(&self.buf[self.tee_mark..self.end]);
            self.tee_mark = self.end;
        }
    }

    /// Pass-through mode: whether bytes read from the input wait to be handed out.
    fn tee_pending(&self) -> bool {
        self.tee
            .as_ref()
            .is_some_and(|t| self.tee_pos < t.len() || self.tee_mark < self.end)
    }

    /// Pass-through mode: hands out waiting bytes, oldest first.
    fn tee_take(&mut self, out: &mut [u8]) -> usize {
        let Some(tee) = &mut self.tee else {
            return 0;
        };
        if self.tee_pos < tee.len() {
            let n = out.len().min(tee.len() - self.tee_pos);
            out[..n].copy_from_slice(&tee[self.tee_pos..self.tee_pos + n]);
            self.tee_pos += n;
            if self.tee_pos == tee.len() {
                tee.clear();
                self.tee_pos = 0;
            }
            return n;
        }
        let n = out.len().min(self.end - self.tee_mark);
        out[..n].copy_from_slice(&self.buf[self.tee_mark..self.tee_mark + n]);
        self.tee_mark += n;
        n
    }

    /// Moves up to `n` bytes from the input to `raw`; returns how many (fewer only at EOF).
    fn read_raw(&mut self, n: u64) -> Result<u64, Error> {
        let mut left = n;
        while left > 0 {
            if self.pos == self.end && self.fill()? == 0 {
                break;
            }
            let k = (self.end - self.pos).min(usize::try_from(left).unwrap_or(usize::MAX));
            self.raw
                .extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
            self.offset += k as u64;
            left -= k as u64;
        }
        Ok(n - left)
    }

    fn read_raw_exact(&mut self, n: u64, what: &str) -> Result<(), Error> {
        if self.read_raw(n)? != n {
            return Err(Error::Truncated {
                offset: self.offset,
                what: what.to_string(),
            });
        }
        Ok(())
    }

    /// Reads one block into `raw` and returns it; `None` at a clean EOF (no byte read).
    fn read_block(&mut self, what: &str) -> Result<Option<[u8; BLOCK]>, Error> {
        let start = self.raw.len();
        match self.read_raw(BLOCK as u64)? {
            0 => Ok(None),
            n if n == BLOCK as u64 => {
                let mut block = [0u8; BLOCK];
                block.copy_from_slice(&self.raw[start..]);
                Ok(Some(block))
            }
            _ => Err(Error::Truncated {
                offset: self.offset,
                what: what.to_string(),
            }),
        }
    }

    // ---- recording ----

    fn put(&mut self, mut entry: Entry) -> Result<(), Error> {
        entry.position = self.next_position;
        self.next_position += 1;
        self.sink.put(entry)
    }

    /// Records the collected raw bytes as a segment, if there are any.
    fn flush_segment(&mut self) -> Result<(), Error> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let payload = std::mem::replace(&mut self.raw, Vec::with_capacity(4 * BLOCK));
        self.put(Entry::segment(payload))
    }

    fn finish_content(&mut self) -> Result<(), Error> {
        self.state = State::Headers;
        if let Some(file) = self.current.take() {
            let crc = (file.size > 0)
                .then(|| std::mem::replace(&mut self.crc, Crc64Digest::new()).finalize());
            let mut entry = Entry::file(file.name, file.size, crc);
            entry.sparse = file.sparse;
            self.put(entry)?;
        }
        Ok(())
    }

    fn skip_content(&mut self) -> Result<(), Error> {
        while self.state == State::Content {
            self.skip_some()?;
        }
        Ok(())
    }

    /// Consumes (and checksums) up to one buffer of the current content.
    fn skip_some(&mut self) -> Result<(), Error> {
        if self.remaining > 0 {
            if self.pos == self.end && self.fill()? == 0 {
                return Err(self.truncated_content());
            }
            let k =
                (self.end - self.pos).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            self.crc.update(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
            self.offset += k as u64;
            self.remaining -= k as u64;
        }
        if self.remaining == 0 {
            self.finish_content()?;
        }
        Ok(())
    }

    fn truncated_content(&self) -> Error {
        let name = self
            .current
            .as_ref()
            .map(|f| lossy(&f.name))
            .unwrap_or_default();
        Error::Truncated {
            offset: self.offset,
            what: format!("the content of {name:?}"),
        }
    }

    /// Reads the current entry's content into `buf`; `Ok(0)` at its end (or between entries).
    /// The CRC-64 is computed as the bytes pass.
    pub fn read_content(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.state != State::Content || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = if self.pos < self.end {
            let n = want.min(self.end - self.pos);
            buf[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            n
        } else if want >= BUFFER_SIZE / 2 {
            // Large read: straight into the caller's buffer.
            let n = loop {
                match self.input.read(&mut buf[..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(Error::io(
                            format!("reading the tar stream at offset {}", self.offset),
                            e,
                        ));
                    }
                }
            };
            if self.tee.is_some() {
                self.spill_tee();
                if let Some(tee) = &mut self.tee {
                    tee.extend_from_slice(&buf[..n]);
                }
            }
            n
        } else {
            self.fill()?;
            let n = want.min(self.end);
            buf[..n].copy_from_slice(&self.buf[..n]);
            self.pos = n;
            n
        };
        if n == 0 {
            return Err(self.truncated_content());
        }
        self.crc.update(&buf[..n]);
        self.offset += n as u64;
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.finish_content()?;
        }
        Ok(n)
    }

    /// Pass-through fast path: with the buffer empty, reads content straight from the input
    /// into `out`. Nothing is captured for the tee: the caller hands `out` on as is.
    fn read_content_uncaptured(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        debug_assert!(self.state == State::Content && self.pos == self.end);
        let want = out
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.input.read(&mut out[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("reading the tar stream at offset {}", self.offset),
                        e,
                    ));
                }
            }
        };
        if n == 0 {
            return Err(self.truncated_content());
        }
        self.crc.update(&out[..n]);
        self.offset += n as u64;
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.finish_content()?;
        }
        Ok(n)
    }

    // ---- headers ----

    /// The next entry's header, after recording the raw bytes before it as a segment.
    /// Unread content of the previous entry is skipped (and checksummed) first.
    /// `Ok(None)` at the end of the archive (two zero blocks, or EOF at a header boundary,
    /// which Go accepts too); call [`finish`](Self::finish) then.
    pub fn next_header(&mut self) -> Result<Option<TarHeader>, Error> {
        match self.state {
            State::Content => self.skip_content()?,
            State::Headers => {}
            State::End | State::Trailing | State::Finished => return Ok(None),
        }
        let mut local_pax: Option<Records> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut extensions = 0u32;
        loop {
            if self.pad > 0 {
                let pad = std::mem::take(&mut self.pad);
                self.read_raw_exact(pad, "padding")?;
            }
            let offset = self.offset;
            let Some(block) = self.read_block("a header")? else {
                self.state = State::End;
                return Ok(None);
            };
            if is_zero_block(&block) {
                match self.read_block("the end-of-archive marker")? {
                    Some(second) if !is_zero_block(&second) => {
                        return Err(Error::header(
                            offset + BLOCK as u64,
                            "a zero block followed by a non-zero block",
                        ));
                    }
                    _ => {}
                }
                self.state = State::End;
                return Ok(None);
            }
            let raw = parse_header_block(&block, offset)?;
            let size = u64::try_from(raw.size)
                .map_err(|_| Error::header(offset, format!("negative size {}", raw.size)))?;
            match raw.type_flag {
                b'x' | b'g' | b'L' | b'K' => {
                    extensions += 1;
                    if extensions > MAX_EXTENSION_HEADERS {
                        return Err(Error::Limit {
                            offset,
                            what: "run of extension headers",
                            size: u64::from(extensions),
                            limit: u64::from(MAX_EXTENSION_HEADERS),
                        });
                    }
                    let (limit, what) = if matches!(raw.type_flag, b'x' | b'g') {
                        (self.limits.max_pax_size, "PAX extended header")
                    } else {
                        (self.limits.max_long_name, "GNU long name")
                    };
                    if size > limit {
                        return Err(Error::Limit {
                            offset,
                            what,
                            size,
                            limit,
                        });
                    }
                    let start = self.raw.len();
                    self.read_raw_exact(size, what)?;
                    self.pad = padding(size);
                    let data = &self.raw[start..];
                    match raw.type_flag {
                        b'x' => local_pax = Some(parse_pax_records(data, offset)?),
                        b'L' => long_name = Some(c_string(data).to_vec()),
                        b'K' => long_link = Some(c_string(data).to_vec()),
                        _ => {
                            let records = parse_pax_records(data, offset)?;
                            self.global_header(raw, records, offset)?;
                            local_pax = None;
                            long_name = None;
                            long_link = None;
                            extensions = 0;
                        }
                    }
                }
                _ => {
                    return self
                        .entry_header(raw, &block, offset, local_pax, long_name, long_link)
                        .map(Some);
                }
            }
        }
    }

    /// Go returns a global PAX header as an entry of its own: tar-split records it as a
    /// segment and a size-0 file entry. Its records apply to the `pax` list of later entries.
    fn global_header(
        &mut self,
        raw: RawHeader,
        records: Records,
        offset: u64,
    ) -> Result<(), Error> {
        let mut name = raw.name;
        if let Some(path) = pax_get(&records, b"path").filter(|p| !p.is_empty()) {
            name = path.to_vec();
        }
        self.flush_segment()?;
        self.put(Entry::file(name, 0, None))?;
        for (k, v) in records {
            self.globals.retain(|(gk, _)| *gk != k);
            self.globals.push((k, v));
        }
        let total: u64 = self
            .globals
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        let limit = self.limits.max_pax_size.min(MAX_GLOBAL_RECORDS);
        if total > limit {
            return Err(Error::Limit {
                offset,
                what: "accumulated global PAX records",
                size: total,
                limit,
            });
        }
        Ok(())
    }

    fn entry_header(
        &mut self,
        raw: RawHeader,
        block: &[u8; BLOCK],
        offset: u64,
        local_pax: Option<Records>,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<TarHeader, Error> {
        let bad = |why: String| Error::header(offset, why);
        let non_negative = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| Error::header(offset, format!("negative {what} {v}")))
        };
        let device = |v: i64, what: &str| {
            u32::try_from(v).map_err(|_| Error::header(offset, format!("{what} {v} out of range")))
        };
        let mut h = TarHeader {
            name: raw.name,
            link_name: raw.link_name,
            kind: TarKind::Regular,
            type_flag: raw.type_flag,
            mode: (raw.mode & 0o7777) as u32,
            uid: non_negative(raw.uid, "uid")?,
            gid: non_negative(raw.gid, "gid")?,
            uname: raw.uname,
            gname: raw.gname,
            mtime: TarTime {
                secs: raw.mtime,
                nanos: 0,
            },
            atime: raw.atime.map(|secs| TarTime { secs, nanos: 0 }),
            ctime: raw.ctime.map(|secs| TarTime { secs, nanos: 0 }),
            size: 0,
            dev_major: device(raw.dev_major, "device major")?,
            dev_minor: device(raw.dev_minor, "device minor")?,
            xattrs: Vec::new(),
            pax: self.globals.clone(),
            sparse: None,
        };
        let mut size = raw.size;
        let local = local_pax.unwrap_or_default();
        for (key, value) in &local {
            if value.is_empty() && !key.starts_with(b"SCHILY.xattr.") {
                continue; // Go keeps the USTAR value
            }
            let number = |what: &str| {
                parse_decimal(value)
                    .ok_or_else(|| bad(format!("invalid PAX {what} {:?}", lossy(value))))
            };
            let time = |what: &str| {
                parse_pax_time(value)
                    .ok_or_else(|| bad(format!("invalid PAX {what} {:?}", lossy(value))))
            };
            match key.as_slice() {
                b"path" => h.name = value.clone(),
                b"linkpath" => h.link_name = value.clone(),
                b"uname" => h.uname = value.clone(),
                b"gname" => h.gname = value.clone(),
                b"uid" => h.uid = non_negative(number("uid")?, "uid")?,
                b"gid" => h.gid = non_negative(number("gid")?, "gid")?,
                b"mtime" => h.mtime = time("mtime")?,
                b"atime" => h.atime = Some(time("atime")?),
                b"ctime" => h.ctime = Some(time("ctime")?),
                b"size" => size = number("size")?,
                k => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        set_xattr(&mut h.xattrs, name.to_vec(), value.clone());
                    } else if let Some(name) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
                        let name = percent_decode(name).ok_or_else(|| {
                            bad(format!("invalid LIBARCHIVE.xattr name {:?}", lossy(name)))
                        })?;
                        let value = BASE64
                            .decode(value)
                            .or_else(|_| {
                                base64::engine::general_purpose::STANDARD_NO_PAD.decode(value)
                            })
                            .map_err(|_| {
                                bad(format!(
                                    "invalid LIBARCHIVE.xattr value for {:?}",
                                    lossy(&name)
                                ))
                            })?;
                        set_xattr(&mut h.xattrs, name, value);
                    }
                }
            }
        }
        if let Some(name) = long_name.filter(|n| !n.is_empty()) {
            h.name = name;
        }
        if let Some(link) = long_link.filter(|n| !n.is_empty()) {
            h.link_name = link;
        }
        h.kind = TarKind::from_flag(raw.type_flag, &h.name);
        let size = u64::try_from(size).map_err(|_| bad(format!("negative size {size}")))?;
        // What the stream holds after this header; the size we skip is the size we record.
        let physical = if h.kind.is_header_only() { 0 } else { size };
        self.pad = padding(physical);
        let mut data = physical;

        let sparse = if raw.type_flag == b'S' {
            if raw.format != Format::Gnu {
                return Err(bad("GNU sparse header in a non-GNU header block".into()));
            }
            Some(self.old_gnu_sparse_map(block, offset)?)
        } else {
            self.pax_sparse_map(&local, &mut h, size, &mut data, offset)?
        };
        if let Some(map) = &sparse {
            if h.kind.is_header_only() {
                return Err(bad("sparse map on an entry that has no content".into()));
            }
            if map.regions.len() > self.limits.max_sparse_regions {
                return Err(Error::Limit {
                    offset,
                    what: "sparse map",
                    size: map.regions.len() as u64,
                    limit: self.limits.max_sparse_regions as u64,
                });
            }
            map.validate().map_err(bad)?;
            if map.packed_size() != data {
                return Err(bad(format!(
                    "sparse regions hold {} bytes but the entry has {data}",
                    map.packed_size()
                )));
            }
        }
        h.size = data;
        h.pax.extend(local);
        h.sparse = sparse.clone();

        self.flush_segment()?;
        self.current = Some(CurrentFile {
            name: h.name.clone(),
            size: data,
            sparse,
        });
        self.remaining = data;
        if data == 0 {
            self.finish_content()?;
        } else {
            self.state = State::Content;
        }
        Ok(h)
    }

    /// Reads an old GNU sparse map: entries in the header, then extension blocks (recorded raw).
    fn old_gnu_sparse_map(&mut self, block: &[u8; BLOCK], offset: u64) -> Result<SparseMap, Error> {
        let bad = |why: &str| Error::header(offset, format!("invalid GNU sparse header: {why}"));
        let real_size = parse_numeric(&block[GNU_REALSIZE])
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| bad("real size"))?;
        let mut pairs = Vec::new();
        parse_gnu_sparse_entries(block, GNU_SPARSE_OFFSET, GNU_SPARSE_ENTRIES, &mut pairs)
            .ok_or_else(|| bad("sparse entry"))?;
        let mut extended = block[GNU_ISEXTENDED] != 0;
        while extended {
            if pairs.len() > self.limits.max_sparse_regions {
                return Err(Error::Limit {
                    offset,
                    what: "sparse map",
                    size: pairs.len() as u64,
                    limit: self.limits.max_sparse_regions as u64,
                });
            }
            let Some(ext) = self.read_block("a GNU sparse extension block")? else {
                return Err(Error::Truncated {
                    offset: self.offset,
                    what: "a GNU sparse extension block".into(),
                });
            };
            parse_gnu_sparse_entries(&ext, 0, GNU_EXT_ENTRIES, &mut pairs)
                .ok_or_else(|| bad("sparse extension entry"))?;
            extended = ext[GNU_EXT_ISEXTENDED] != 0;
        }
        to_sparse_map(real_size, &pairs).ok_or_else(|| bad("negative sparse entry"))
    }

    /// Detects a PAX GNU sparse file (formats 0.0, 0.1, 1.0, as Go does) and reads its map.
    /// For 1.0 the map sits at the start of the content: it is read into the segment and
    /// `data` is reduced accordingly.
    fn pax_sparse_map(
        &mut self,
        records: &[(Vec<u8>, Vec<u8>)],
        h: &mut TarHeader,
        size: u64,
        data: &mut u64,
        offset: u64,
    ) -> Result<Option<SparseMap>, Error> {
        let bad =
            |why: &str| Error::header(offset, format!("invalid GNU sparse PAX header: {why}"));
        let get = |k: &[u8]| pax_get(records, k).unwrap_or_default();
        let (major, minor) = (get(b"GNU.sparse.major"), get(b"GNU.sparse.minor"));
        let has_00_records = records.iter().any(|(k, _)| k == b"GNU.sparse.offset");
        let is_1x0 = match (major, minor) {
            (b"0", b"0" | b"1") => false,
            (b"1", b"0") => true,
            (a, b) if !a.is_empty() || !b.is_empty() => return Ok(None),
            _ if !get(b"GNU.sparse.map").is_empty() || has_00_records => false,
            _ => return Ok(None),
        };
        if !get(b"GNU.sparse.name").is_empty() {
            h.name = get(b"GNU.sparse.name").to_vec();
        }
        let mut real = get(b"GNU.sparse.size");
        if real.is_empty() {
            real = get(b"GNU.sparse.realsize");
        }
        let real_size = if real.is_empty() {
            size
        } else {
            parse_decimal(real)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| bad("real size"))?
        };
        let max = self.limits.max_sparse_regions as u64;
        let limit = |n: u64| Error::Limit {
            offset,
            what: "sparse map",
            size: n,
            limit: max,
        };
        let mut pairs: Vec<(i64, i64)> = Vec::new();
        if is_1x0 {
            let map_start = self.raw.len();
            let mut newlines = 0u64;
            let mut needed = 1u64;
            let mut counted = false;
            let mut consumed = 0u64;
            while newlines < needed {
                if consumed + BLOCK as u64 > *data {
                    return Err(bad("sparse map runs past the entry's data"));
                }
                if consumed + BLOCK as u64 > self.limits.max_pax_size {
                    return Err(Error::Limit {
                        offset,
                        what: "GNU sparse 1.0 map",
                        size: consumed + BLOCK as u64,
                        limit: self.limits.max_pax_size,
                    });
                }
                self.read_raw_exact(BLOCK as u64, "a GNU sparse 1.0 map")?;
                consumed += BLOCK as u64;
                let block = &self.raw[self.raw.len() - BLOCK..];
                newlines += block.iter().filter(|&&b| b == b'\n').count() as u64;
                if !counted && newlines >= 1 {
                    counted = true;
                    let text = &self.raw[map_start..];
                    let first = &text[..text.iter().position(|&b| b == b'\n').unwrap_or(0)];
                    let n = parse_decimal(first)
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(|| bad("entry count"))?;
                    if n > max {
                        return Err(limit(n));
                    }
                    needed = 1 + 2 * n;
                }
            }
            *data -= consumed;
            let text = &self.raw[map_start..];
            let mut tokens = text.split(|&b| b == b'\n').skip(1);
            let count = (needed - 1) / 2;
            for _ in 0..count {
                let mut next = || {
                    tokens
                        .next()
                        .and_then(parse_decimal)
                        .ok_or_else(|| bad("map entry"))
                };
                let off = next()?;
                let len = next()?;
                pairs.push((off, len));
            }
        } else {
            let count = parse_decimal(get(b"GNU.sparse.numblocks"))
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| bad("numblocks"))?;
            if count > max {
                return Err(limit(count));
            }
            let values: Vec<&[u8]> = if has_00_records {
                records
                    .iter()
                    .filter(|(k, _)| k == b"GNU.sparse.offset" || k == b"GNU.sparse.numbytes")
                    .map(|(_, v)| v.as_slice())
                    .collect()
            } else {
                let map = get(b"GNU.sparse.map");
                if map.is_empty() {
                    Vec::new()
                } else {
                    map.split(|&b| b == b',').collect()
                }
            };
            if values.len() as u64 != 2 * count {
                return Err(bad("map length does not match numblocks"));
            }
            for pair in values.chunks_exact(2) {
                let off = parse_decimal(pair[0]).ok_or_else(|| bad("map offset"))?;
                let len = parse_decimal(pair[1]).ok_or_else(|| bad("map length"))?;
                pairs.push((off, len));
            }
        }
        to_sparse_map(real_size, &pairs)
            .map(Some)
            .ok_or_else(|| bad("negative map entry"))
    }

    // ---- the end ----

    /// One step of recording what follows the end of the archive; `true` when done.
    fn finish_step(&mut self) -> Result<bool, Error> {
        match self.state {
            State::End => {
                // Go: one segment with the raw bytes read so far (padding, end blocks).
                self.flush_segment()?;
                self.state = State::Trailing;
                self.chunk_end = go_trailing_boundary(self.offset);
                Ok(false)
            }
            State::Trailing => {
                if self.chunk_end <= self.offset {
                    self.chunk_end = self.offset + GO_PADDING_CHUNK;
                }
                let want = self.chunk_end - self.offset;
                let got = self.read_raw(want)?;
                let at_eof = got < want;
                self.flush_segment()?;
                if at_eof || (self.pos == self.end && self.fill()? == 0) {
                    // Go's last read returns 0 bytes and EOF: an empty segment.
                    self.put(Entry::segment(Vec::new()))?;
                    self.state = State::Finished;
                    return Ok(true);
                }
                Ok(false)
            }
            State::Finished => Ok(true),
            State::Headers | State::Content => Err(Error::State(
                "finish() called before next_header() returned None",
            )),
        }
    }

    /// After [`next_header`](Self::next_header) returned `None`: reads everything after the end
    /// of the archive to EOF, records it as Go does (the end blocks, then chunks, then an empty
    /// segment), and returns the input and the sink.
    pub fn finish(mut self) -> Result<(R, S), Error> {
        while !self.finish_step()? {}
        Ok((self.input, self.sink))
    }
}

fn set_xattr(xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>, name: Vec<u8>, value: Vec<u8>) {
    xattrs.retain(|(n, _)| *n != name);
    xattrs.push((name, value));
}

fn to_sparse_map(real_size: u64, pairs: &[(i64, i64)]) -> Option<SparseMap> {
    let regions = pairs
        .iter()
        .map(|&(o, l)| {
            Some(SparseRegion {
                offset: u64::try_from(o).ok()?,
                len: u64::try_from(l).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(SparseMap { real_size, regions })
}

/// Disassembles a whole stream (contents are checksummed and discarded) and returns the sink.
pub fn disassemble<R: Read, S: EntrySink>(input: R, sink: S) -> Result<S, Error> {
    let mut d = Disassembler::new(input, sink);
    while d.next_header()?.is_some() {}
    Ok(d.finish()?.1)
}

/// The pass-through form: reading from it yields the input's bytes unchanged, while the tar
/// stream is parsed and recorded. When it returns EOF, everything was recorded; take the sink
/// with [`into_parts`](Self::into_parts). Errors come back as [`io::Error`]s wrapping
/// [`Error`] (`err.into_inner()` and downcast to get it back).
pub struct TeeDisassembler<R: Read, S: EntrySink> {
    inner: Disassembler<R, S>,
    failed: bool,
}

impl<R: Read, S: EntrySink> TeeDisassembler<R, S> {
    /// A pass-through disassembler with default limits.
    pub fn new(input: R, sink: S) -> Self {
        Self::with_limits(input, sink, Limits::default())
    }

    /// A pass-through disassembler with explicit limits.
    pub fn with_limits(input: R, sink: S, limits: Limits) -> Self {
        let mut inner = Disassembler::with_limits(input, sink, limits);
        inner.tee = Some(Vec::new());
        TeeDisassembler {
            inner,
            failed: false,
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.inner.sink
    }

    /// Whether the whole stream was read and recorded.
    pub fn is_finished(&self) -> bool {
        self.inner.state == State::Finished
    }

    /// The input and the sink, once the whole stream was read (else [`Error::State`]).
    pub fn into_parts(self) -> Result<(R, S), Error> {
        if self.inner.state != State::Finished {
            return Err(Error::State(
                "TeeDisassembler::into_parts before the stream was read to EOF",
            ));
        }
        Ok((self.inner.input, self.inner.sink))
    }

    fn step(&mut self) -> Result<(), Error> {
        let d = &mut self.inner;
        match d.state {
            State::Content => d.skip_some(),
            State::Headers => d.next_header().map(drop),
            State::End | State::Trailing => d.finish_step().map(drop),
            State::Finished => Ok(()),
        }
    }
}

impl<R: Read, S: EntrySink> Read for TeeDisassembler<R, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.inner.tee_pending() {
                return Ok(self.inner.tee_take(out));
            }
            if self.failed {
                return Err(io::Error::other(
                    "tar-split disassembly failed earlier in this stream",
                ));
            }
            if self.inner.state == State::Finished {
                return Ok(0);
            }
            let d = &mut self.inner;
            if d.state == State::Content && d.pos == d.end && out.len() >= DIRECT_READ_MIN {
                // Large content reads go straight to the caller: no copy through the tee.
                return d.read_content_uncaptured(out).map_err(|e| {
                    self.failed = true;
                    e.into_io()
                });
            }
            if let Err(e) = self.step() {
                self.failed = true;
                return Err(e.into_io());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `data` in reads of at most `max` bytes.
    struct Dribble<'a>(&'a [u8], usize);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn pass_through_fast_path_keeps_every_byte() {
        let mut b = ::tar::Builder::new(Vec::new());
        for (i, len) in [3usize << 20, 70_000, 1, 0, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let mut h = ::tar::Header::new_gnu();
            h.set_size(len as u64);
            b.append_data(&mut h, format!("f{i}"), &data[..]).unwrap();
        }
        let archive = b.into_inner().unwrap();
        let expected: Vec<Entry> = disassemble(&archive[..], Vec::new()).unwrap();
        for (input_read, out_read) in [(100_000, 128 << 10), (1 << 20, 64 << 10), (7_777, 200_000)]
        {
            let mut tee = TeeDisassembler::new(Dribble(&archive, input_read), Vec::new());
            let mut passed = Vec::new();
            let mut buf = vec![0u8; out_read];
            loop {
                let n = tee.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                passed.extend_from_slice(&buf[..n]);
            }
            assert!(passed == archive, "{input_read}/{out_read}: bytes differ");
            let (_, entries) = tee.into_parts().unwrap();
            assert_eq!(entries, expected, "{input_read}/{out_read}");
        }
    }

    #[test]
    fn finish_before_the_end_is_misuse() {
        let mut b = ::tar::Builder::new(Vec::new());
        let mut h = ::tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        let archive = b.into_inner().unwrap();
        let mut d = Disassembler::new(&archive[..], Vec::new());
        d.next_header().unwrap().unwrap();
        assert!(matches!(d.finish(), Err(Error::State(_))));
    }

    #[test]
    fn go_boundaries() {
        assert_eq!(go_trailing_boundary(3584), 10240);
        assert_eq!(go_trailing_boundary(10240), 10240);
        assert_eq!(go_trailing_boundary(10241), 10240 + 32768);
        assert_eq!(go_trailing_boundary(107520), 108544);
    }
}
