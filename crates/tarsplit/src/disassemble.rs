//! Disassembly: parse a tar stream once, record tar-split entries, hand out headers and content.

use std::io::{self, Read};

use crate::Crc64Digest;
use crate::entry::{Entry, EntrySink};
use crate::error::{Error, lossy};
use crate::tar::{BLOCK, Limits, Records, SparseMap, is_zero_block};

mod headers;
mod tee;

pub use tee::TeeDisassembler;

/// Offset of the type flag in a header block.
const TYPE_FLAG: usize = 156;

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

/// An input that can hand over whole buffers of the tar stream instead of having them copied
/// into the [`Disassembler`]'s own (an in-process pipe's chunks; see
/// [`Disassembler::with_chunk_input`]).
pub trait ChunkRead: Read {
    /// Puts the next bytes of the stream in `buf[..n]` and returns `n` (0 at the end),
    /// preferably by exchanging `buf` for a buffer the input holds already. The buffer given
    /// in becomes the input's.
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;
}

impl<T: ChunkRead + ?Sized> ChunkRead for &mut T {
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        (**self).read_chunk(buf)
    }
}

/// How the buffer is refilled from a [`ChunkRead`] input.
type ReadChunk<R> = fn(&mut R, &mut Vec<u8>) -> io::Result<usize>;

fn read_chunk<R: ChunkRead>(input: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    input.read_chunk(buf)
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
    /// `buf[pos..end]` is read and not consumed yet; with a [`ChunkRead`] input the buffer is
    /// the input's last chunk (its length is the chunk's).
    buf: Vec<u8>,
    /// Set for a [`ChunkRead`] input: refills take its chunks whole.
    read_chunk: Option<ReadChunk<R>>,
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
            buf: vec![0u8; BUFFER_SIZE],
            read_chunk: None,
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

    /// A disassembler that takes its input's chunks whole instead of copying them into a
    /// buffer of its own (one copy of every byte less on the parsing thread).
    pub fn with_chunk_input(input: R, sink: S, limits: Limits) -> Self
    where
        R: ChunkRead,
    {
        let mut disassembler = Self::with_limits(input, sink, limits);
        disassembler.read_chunk = Some(read_chunk::<R>);
        disassembler
    }

    /// Whether the next [`next_header`](Self::next_header) can return without reading the
    /// input: the padding and a whole header are buffered. An extension or sparse header, the
    /// end-of-archive marker and unread content count as not (they may need more input).
    pub fn header_buffered(&self) -> bool {
        if self.state != State::Headers {
            return false;
        }
        let Ok(pad) = usize::try_from(self.pad) else {
            return false;
        };
        if self.end - self.pos < pad + BLOCK {
            return false;
        }
        let start = self.pos + pad;
        let Ok(block) = <&[u8; BLOCK]>::try_from(&self.buf[start..start + BLOCK]) else {
            return false;
        };
        !is_zero_block(block) && !matches!(block[TYPE_FLAG], b'x' | b'g' | b'L' | b'K' | b'S')
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
            let read = match self.read_chunk {
                Some(read_chunk) => read_chunk(&mut self.input, &mut self.buf),
                None => self.input.read(&mut self.buf),
            };
            match read {
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
        if self.remaining == 0 {
            return self.finish_content();
        }
        let n = self.fill_content()?.len();
        self.consume_content(n)
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

    /// The current entry's next content bytes, borrowed from the buffer (refilled first when
    /// it is empty): at most what is buffered and what the entry has left; empty at the
    /// content's end (or between entries). Pass the count used to
    /// [`consume_content`](Self::consume_content); this saves the copy of
    /// [`read_content`](Self::read_content).
    pub fn fill_content(&mut self) -> Result<&[u8], Error> {
        if self.state != State::Content {
            return Ok(&[]);
        }
        if self.pos == self.end && self.fill()? == 0 {
            return Err(self.truncated_content());
        }
        let n = (self.end - self.pos).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        Ok(&self.buf[self.pos..self.pos + n])
    }

    /// Consumes `n` bytes of what [`fill_content`](Self::fill_content) returned (CRC-64
    /// included); the entry is recorded when its content ends.
    pub fn consume_content(&mut self, n: usize) -> Result<(), Error> {
        if self.state != State::Content || n == 0 {
            return Ok(());
        }
        let n = n
            .min(self.end - self.pos)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        self.crc.update(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.offset += n as u64;
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.finish_content()?;
        }
        Ok(())
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

/// Disassembles a whole stream (contents are checksummed and discarded) and returns the sink.
pub fn disassemble<R: Read, S: EntrySink>(input: R, sink: S) -> Result<S, Error> {
    let mut d = Disassembler::new(input, sink);
    while d.next_header()?.is_some() {}
    Ok(d.finish()?.1)
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

    /// The content of entry `i` of [`archive`]: `len` bytes of a pattern seeded by `i`.
    fn content(i: usize, len: usize, step: usize) -> Vec<u8> {
        (0..len).map(|j| (j * step + i) as u8).collect()
    }

    /// A GNU tarball of files `f0`, `f1`, ... of the given sizes (see [`content`]).
    fn archive(sizes: &[usize], step: usize) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for (i, &len) in sizes.iter().enumerate() {
            let mut h = ::tar::Header::new_gnu();
            h.set_size(len as u64);
            b.append_data(&mut h, format!("f{i}"), &content(i, len, step)[..])
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn pass_through_fast_path_keeps_every_byte() {
        let archive = archive(&[3 << 20, 70_000, 1, 0, 1 << 20], 31);
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
    fn borrowed_content_is_the_content_and_records_the_same_entries() {
        let sizes = [700_000, 3, 0, 300_000];
        let archive = archive(&sizes, 7);
        let expected: Vec<Entry> = disassemble(&archive[..], Vec::new()).unwrap();
        // Small input reads: content spans many refills of the buffer.
        let mut d = Disassembler::new(Dribble(&archive, 50_000), Vec::new());
        let mut i = 0;
        while let Some(h) = d.next_header().unwrap() {
            let mut got = Vec::new();
            loop {
                let piece = d.fill_content().unwrap();
                if piece.is_empty() {
                    break;
                }
                // Consume part of what was lent: the rest is lent again.
                let n = piece.len().div_ceil(2);
                got.extend_from_slice(&piece[..n]);
                d.consume_content(n).unwrap();
            }
            assert!(got == content(i, sizes[i], 7), "content of {:?}", h.name);
            i += 1;
        }
        assert_eq!(i, sizes.len());
        assert_eq!(d.finish().unwrap().1, expected);
    }

    #[test]
    fn borrowed_content_of_a_truncated_stream_is_an_error() {
        let archive = archive(&[2000], 1);
        let mut d = Disassembler::new(&archive[..1000], Vec::new());
        d.next_header().unwrap().unwrap();
        let piece = d.fill_content().unwrap().len();
        assert_eq!(piece, 1000 - BLOCK);
        d.consume_content(piece).unwrap();
        assert!(matches!(d.fill_content(), Err(Error::Truncated { .. })));
    }

    /// Hands the stream over in owned chunks of `size` bytes and keeps the buffers it gets
    /// back.
    struct Chunks {
        data: Vec<u8>,
        at: usize,
        size: usize,
        handed: Vec<*const u8>,
        returned: Vec<Vec<u8>>,
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl ChunkRead for Chunks {
        fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
            let n = self.size.min(self.data.len() - self.at);
            let chunk = self.data[self.at..self.at + n].to_vec();
            self.at += n;
            self.handed.push(chunk.as_ptr());
            self.returned.push(std::mem::replace(buf, chunk));
            Ok(n)
        }
    }

    #[test]
    fn chunk_input_is_taken_whole_and_records_the_same_entries() {
        let archive = archive(&[5000, 0, 70_000, 12], 13);
        let expected: Vec<Entry> = disassemble(&archive[..], Vec::new()).unwrap();
        let input = Chunks {
            data: archive.clone(),
            at: 0,
            size: 3000,
            handed: Vec::new(),
            returned: Vec::new(),
        };
        let mut d = Disassembler::with_chunk_input(input, Vec::new(), Limits::default());
        let mut contents = Vec::new();
        while d.next_header().unwrap().is_some() {
            let mut content = Vec::new();
            let mut buf = [0u8; 1000];
            loop {
                let n = d.read_content(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                content.extend_from_slice(&buf[..n]);
            }
            contents.push(content.len());
        }
        assert_eq!(contents, [5000, 0, 70_000, 12]);
        let (input, entries) = d.finish().unwrap();
        assert_eq!(entries, expected);
        // Every chunk but the first was handed back in exchange for the next: the
        // disassembler parsed the chunks themselves, never a copy of them.
        assert!(input.handed.len() > 20);
        for (handed, returned) in input.handed.iter().zip(&input.returned[1..]) {
            assert_eq!(*handed, returned.as_ptr());
        }
    }

    #[test]
    fn a_header_is_buffered_only_when_whole_and_plain() {
        let mut b = ::tar::Builder::new(Vec::new());
        let mut h = ::tar::Header::new_gnu();
        h.set_size(10);
        b.append_data(&mut h, "a", &[1u8; 10][..]).unwrap();
        let mut h = ::tar::Header::new_gnu();
        h.set_size(0);
        b.append_data(&mut h, "b", &[][..]).unwrap();
        // A long name: a GNU 'L' header first.
        let mut h = ::tar::Header::new_gnu();
        h.set_size(0);
        b.append_data(&mut h, "c/".repeat(80) + "c", &[][..])
            .unwrap();
        let archive = b.into_inner().unwrap();
        let mut d = Disassembler::new(&archive[..], Vec::new());
        assert!(!d.header_buffered(), "nothing read yet");
        d.next_header().unwrap().unwrap();
        assert!(!d.header_buffered(), "content unread");
        let mut buf = [0u8; 10];
        assert_eq!(d.read_content(&mut buf).unwrap(), 10);
        assert!(
            d.header_buffered(),
            "padding and b's header are in the buffer"
        );
        d.next_header().unwrap().unwrap();
        assert!(!d.header_buffered(), "the next header is an extension");
        d.next_header().unwrap().unwrap();
        assert!(!d.header_buffered(), "the end-of-archive marker");
        assert!(d.next_header().unwrap().is_none());
        // Only part of a header buffered.
        let mut short = Disassembler::new(Dribble(&archive, BLOCK + 700), Vec::new());
        short.next_header().unwrap().unwrap();
        assert_eq!(short.read_content(&mut buf).unwrap(), 10);
        assert!(!short.header_buffered(), "b's header is cut");
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
