//! Assembly: rebuild the tar stream from entries and the files they name.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::Crc64Digest;
use crate::entry::{Entry, EntryKind};
use crate::error::{Error, lossy};
use crate::tar::SparseMap;

mod getter;
mod pipelined;

pub use getter::{DirFileGetter, FileGetter, MemoryFileGetter, ReadSeek, SeekableFile};
pub use pipelined::{PIPELINE_CHUNK_SIZE, assemble_pipelined};

/// The most a file's content is read in one `read`: small enough that the piece is still in
/// cache when its CRC-64 is computed (a core's L2 here is 1 MiB, the chunk it fills as big).
const READ_PIECE: usize = 128 << 10;

/// A file being copied: seekable (sparse entries, when the getter can) or read in order.
enum FileReader<'g> {
    Stream(Box<dyn Read + 'g>),
    Seekable(Box<dyn ReadSeek + 'g>),
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            FileReader::Stream(r) => r.read(buf),
            FileReader::Seekable(r) => r.read(buf),
        }
    }
}

struct FileCopy<'g> {
    name: Vec<u8>,
    reader: FileReader<'g>,
    expected_crc: u64,
    crc: Crc64Digest,
    /// Bytes of the current region (or of the whole file) still to copy.
    remaining: u64,
    /// Recorded size (packed size for sparse files).
    size: u64,
    /// Position in the file on disk.
    logical: u64,
    sparse: Option<(SparseMap, usize)>,
    /// The getter gave the file's size and it matched: the end needs no probing read.
    size_checked: bool,
}

enum State<'g> {
    Idle,
    Segment { data: Vec<u8>, pos: usize },
    File(Box<FileCopy<'g>>),
    Done,
}

/// The rebuilt tar stream, as a reader.
///
/// Segments are copied verbatim; each file entry with content is read from the getter, its
/// size and CRC-64 checked ([`Error::Size`], [`Error::Checksum`]); a sparse entry (written by
/// this crate) reads the data regions of the expanded file at their offsets. `Read` errors wrap
/// an [`Error`]; [`assemble`] returns it directly.
pub struct Assembler<'g, I, G: FileGetter + ?Sized> {
    entries: I,
    getter: &'g G,
    state: State<'g>,
    scratch: Vec<u8>,
    failed: bool,
    /// Where the entries' buffers go once used, when they are to be freed elsewhere
    /// ([`Assembler::take_spent`]); `None`: dropped here.
    spent: Option<Vec<Vec<u8>>>,
}

/// Drops `buf`, or keeps it in `spent` for whoever frees the spent buffers.
fn retire(spent: &mut Option<Vec<Vec<u8>>>, buf: Option<Vec<u8>>) {
    if let (Some(spent), Some(buf)) = (spent, buf)
        && buf.capacity() > 0
    {
        spent.push(buf);
    }
}

impl<'g, I, G> Assembler<'g, I, G>
where
    I: Iterator<Item = Result<Entry, Error>>,
    G: FileGetter + ?Sized,
{
    /// An assembler over `entries` (e.g. [`read_tar_split_gz`](crate::read_tar_split_gz)),
    /// reading files from `getter`.
    pub fn new<T: IntoIterator<IntoIter = I>>(entries: T, getter: &'g G) -> Self {
        Assembler {
            entries: entries.into_iter(),
            getter,
            state: State::Idle,
            scratch: Vec::new(),
            failed: false,
            spent: None,
        }
    }

    /// Keeps the entries' buffers once used instead of freeing them, for
    /// [`take_spent`](Self::take_spent).
    pub(crate) fn keep_spent(&mut self) {
        self.spent.get_or_insert_with(Vec::new);
    }

    /// The buffers of the entries used since the last call (with
    /// [`keep_spent`](Self::keep_spent)): the pipelined assembly frees them on the thread
    /// that decoded them, because glibc's `free` of another thread's allocation takes that
    /// thread's arena lock, which the decoder wants for every entry it allocates
    /// (smallfiles.tar: a tenth of both threads' time in that lock).
    pub(crate) fn take_spent(&mut self) -> Vec<Vec<u8>> {
        self.spent.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn start(&mut self, entry: Entry) -> Result<(), Error> {
        let position = entry.position;
        let invalid =
            |why: String| Error::record(0, format!("entry at position {position}: {why}"));
        match entry.kind {
            EntryKind::Segment => match entry.payload {
                Some(data) if !data.is_empty() => self.state = State::Segment { data, pos: 0 },
                empty => retire(&mut self.spent, empty),
            },
            EntryKind::File if entry.size == 0 => {
                retire(&mut self.spent, entry.name);
                retire(&mut self.spent, entry.payload);
            }
            EntryKind::File => {
                let name = entry.name.unwrap_or_default();
                let expected_crc = entry
                    .payload
                    .as_deref()
                    .and_then(|p| <[u8; 8]>::try_from(p).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| {
                        invalid(format!("file {:?} has no 8-byte checksum", lossy(&name)))
                    })?;
                retire(&mut self.spent, entry.payload);
                if let Some(map) = &entry.sparse {
                    map.validate().map_err(&invalid)?;
                    if map.packed_size() != entry.size {
                        return Err(invalid(format!(
                            "sparse regions of {:?} hold {} bytes, the entry {}",
                            lossy(&name),
                            map.packed_size(),
                            entry.size
                        )));
                    }
                }
                let file_error = |source| Error::File {
                    name: lossy(&name),
                    source,
                };
                let seekable = match &entry.sparse {
                    Some(_) => self.getter.get_seekable(&name).map_err(file_error)?,
                    None => None,
                };
                let (reader, known_size) = match seekable {
                    Some((reader, size)) => (FileReader::Seekable(reader), size),
                    None => {
                        let (reader, size) =
                            self.getter.get_with_size(&name).map_err(file_error)?;
                        (FileReader::Stream(reader), size)
                    }
                };
                let expected_len = entry.sparse.as_ref().map_or(entry.size, |m| m.real_size);
                if let Some(actual) = known_size
                    && actual != expected_len
                {
                    return Err(Error::Size {
                        name: lossy(&name),
                        expected: expected_len,
                        actual,
                    });
                }
                let sparse = entry.sparse.map(|m| (m, 0));
                self.state = State::File(Box::new(FileCopy {
                    remaining: if sparse.is_some() { 0 } else { entry.size },
                    name,
                    reader,
                    expected_crc,
                    crc: Crc64Digest::new(),
                    size: entry.size,
                    logical: 0,
                    sparse,
                    size_checked: known_size.is_some(),
                }));
            }
        }
        Ok(())
    }

    /// Reads from the file, retrying on `Interrupted`.
    fn read_file(fc: &mut FileCopy<'g>, buf: &mut [u8]) -> Result<usize, Error> {
        loop {
            match fc.reader.read(buf) {
                Ok(n) => {
                    fc.logical += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::File {
                        name: lossy(&fc.name),
                        source,
                    });
                }
            }
        }
    }

    /// Fills `buf` (non-empty, at most what is left of the region) with the file's next bytes
    /// and adds them to its CRC-64; stops early at a short read. A file that ends first is
    /// [`Error::Size`].
    ///
    /// Reads [`READ_PIECE`] at a time and checksums each piece right after reading it, while
    /// it is still in this core's cache. Over a whole 1 MiB chunk the CRC-64 read its bytes
    /// back from memory, and that made the file-reading thread the slower of the pipeline for
    /// a 1 GiB file (≈ 0.5 s against the writer's ≈ 0.45 s on a tmpfs; ≈ 0.24 s with pieces).
    fn read_file_checked(fc: &mut FileCopy<'g>, buf: &mut [u8]) -> Result<usize, Error> {
        let mut filled = 0;
        while filled < buf.len() {
            let want = (buf.len() - filled).min(READ_PIECE);
            let n = Self::read_file(fc, &mut buf[filled..filled + want])?;
            fc.crc.update(&buf[filled..filled + n]);
            filled += n;
            if n < want {
                break;
            }
        }
        if filled == 0 {
            let expected = match &fc.sparse {
                Some((map, _)) => map.real_size,
                None => fc.size,
            };
            return Err(Error::Size {
                name: lossy(&fc.name),
                expected,
                actual: fc.logical,
            });
        }
        Ok(filled)
    }

    /// Called when the current region (or file) is copied: moves to the next region, or
    /// checks the file's end and checksum. Returns `true` when the file is done.
    fn advance_file(fc: &mut FileCopy<'g>, scratch: &mut Vec<u8>) -> Result<bool, Error> {
        if scratch.is_empty() {
            scratch.resize(64 << 10, 0);
        }
        let expected_len = match &fc.sparse {
            Some((map, _)) => map.real_size,
            None => fc.size,
        };
        if let Some((map, next)) = &mut fc.sparse
            && let Some(region) = map.regions.get(*next).copied()
        {
            *next += 1;
            // Skip the hole before the region: a seek where the file allows it (holes are
            // never read then, however large), otherwise by reading it.
            if fc.logical < region.offset
                && let FileReader::Seekable(file) = &mut fc.reader
            {
                file.seek(SeekFrom::Start(region.offset))
                    .map_err(|source| Error::File {
                        name: lossy(&fc.name),
                        source,
                    })?;
                fc.logical = region.offset;
            }
            while fc.logical < region.offset {
                let want = (region.offset - fc.logical).min(scratch.len() as u64) as usize;
                if Self::read_file(fc, &mut scratch[..want])? == 0 {
                    return Err(Error::Size {
                        name: lossy(&fc.name),
                        expected: expected_len,
                        actual: fc.logical,
                    });
                }
            }
            fc.remaining = region.len;
            return Ok(false);
        }
        // The end: the file must end exactly here (sparse: at its real size). A size the
        // getter gave (and `start` compared) proves it without reading on; otherwise read to
        // the end, through a sparse file's last hole.
        if !fc.size_checked {
            let mut probe_limit = expected_len.saturating_sub(fc.logical);
            loop {
                let want = (probe_limit.min(scratch.len() as u64) as usize).max(1);
                let n = Self::read_file(fc, &mut scratch[..want])?;
                if n == 0 {
                    break;
                }
                if fc.logical > expected_len {
                    return Err(Error::Size {
                        name: lossy(&fc.name),
                        expected: expected_len,
                        actual: fc.logical,
                    });
                }
                probe_limit = probe_limit.saturating_sub(n as u64);
            }
            if fc.logical != expected_len {
                return Err(Error::Size {
                    name: lossy(&fc.name),
                    expected: expected_len,
                    actual: fc.logical,
                });
            }
        }
        let crc = std::mem::replace(&mut fc.crc, Crc64Digest::new()).finalize();
        if crc != fc.expected_crc {
            return Err(Error::Checksum {
                name: lossy(&fc.name),
            });
        }
        Ok(true)
    }

    /// Fills `buf` with the next bytes of the tar stream; `Ok(0)` at its end.
    pub fn read_stream(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.state {
                State::Done => return Ok(0),
                State::Idle => match self.entries.next() {
                    None => {
                        self.state = State::Done;
                        return Ok(0);
                    }
                    Some(entry) => self.start(entry?)?,
                },
                State::Segment { data, pos } => {
                    let n = buf.len().min(data.len() - *pos);
                    buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                    *pos += n;
                    if *pos == data.len()
                        && let State::Segment { data, .. } =
                            std::mem::replace(&mut self.state, State::Idle)
                    {
                        retire(&mut self.spent, Some(data));
                    }
                    return Ok(n);
                }
                State::File(fc) => {
                    if fc.remaining == 0 {
                        if Self::advance_file(fc, &mut self.scratch)?
                            && let State::File(fc) = std::mem::replace(&mut self.state, State::Idle)
                        {
                            retire(&mut self.spent, Some(fc.name));
                        }
                        continue;
                    }
                    let want = buf
                        .len()
                        .min(usize::try_from(fc.remaining).unwrap_or(usize::MAX));
                    let n = Self::read_file_checked(fc, &mut buf[..want])?;
                    fc.remaining -= n as u64;
                    return Ok(n);
                }
            }
        }
    }
}

impl<I, G> Read for Assembler<'_, I, G>
where
    I: Iterator<Item = Result<Entry, Error>>,
    G: FileGetter + ?Sized,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("tar-split assembly failed earlier"));
        }
        self.read_stream(buf).map_err(|e| {
            self.failed = true;
            e.into_io()
        })
    }
}

/// Rebuilds the tar stream into `out`; returns the number of bytes written.
pub fn assemble<I, G, W>(entries: I, getter: &G, mut out: W) -> Result<u64, Error>
where
    I: IntoIterator<Item = Result<Entry, Error>>,
    G: FileGetter + ?Sized,
    W: Write,
{
    let mut assembler = Assembler::new(entries, getter);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = assembler.read_stream(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(format!("writing the tar stream at offset {total}"), e))?;
        total += n as u64;
    }
    out.flush()
        .map_err(|e| Error::io("flushing the tar stream", e))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn bad_entries_are_errors() {
        let getter = MemoryFileGetter::new();
        let mut no_crc = Entry::file(b"f".to_vec(), 3, None);
        no_crc.position = 4;
        let err = assemble([Ok(no_crc)], &getter, io::sink()).unwrap_err();
        assert!(err.to_string().contains("position 4"), "{err}");
        let missing = Entry::file(b"f".to_vec(), 3, Some(0));
        let err = assemble([Ok(missing)], &getter, io::sink()).unwrap_err();
        assert!(
            matches!(err, Error::File { ref name, .. } if name == "f"),
            "{err}"
        );
    }

    #[test]
    fn used_buffers_are_kept_for_the_caller_when_asked() {
        let mut getter = MemoryFileGetter::new();
        getter.insert(b"f", b"abc".to_vec());
        let entries = [
            Entry::segment(b"head".to_vec()),
            Entry::file(b"empty".to_vec(), 0, None),
            Entry::file(b"f".to_vec(), 3, Some(crate::crc64(b"abc"))),
            Entry::segment(b"tail".to_vec()),
        ];
        let mut assembler = Assembler::new(entries.map(Ok), &getter);
        assembler.keep_spent();
        let mut out = Vec::new();
        assembler.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"headabctail");
        let mut spent = assembler.take_spent();
        spent.sort();
        let crc = crate::crc64(b"abc").to_be_bytes().to_vec();
        let mut expected = vec![
            b"head".to_vec(),
            b"empty".to_vec(),
            crc,
            b"f".to_vec(),
            b"tail".to_vec(),
        ];
        expected.sort();
        assert_eq!(spent, expected);
        assert!(assembler.take_spent().is_empty(), "taken once");
        // Without keep_spent nothing is kept.
        let mut plain = Assembler::new([Ok(Entry::segment(b"x".to_vec()))], &getter);
        plain.read_to_end(&mut Vec::new()).unwrap();
        assert!(plain.take_spent().is_empty());
    }

    #[test]
    fn sparse_entries_compact_the_expanded_file() {
        let mut expanded = vec![0u8; 100];
        expanded[10..14].copy_from_slice(b"abcd");
        expanded[90..92].copy_from_slice(b"yz");
        let mut getter = MemoryFileGetter::new();
        getter.insert(b"s", expanded.clone());
        let mut entry = Entry::file(b"s".to_vec(), 6, Some(crate::crc64(b"abcdyz")));
        entry.sparse = Some(SparseMap {
            real_size: 100,
            regions: vec![
                crate::SparseRegion { offset: 10, len: 4 },
                crate::SparseRegion { offset: 90, len: 2 },
                crate::SparseRegion {
                    offset: 100,
                    len: 0,
                },
            ],
        });
        let mut out = Vec::new();
        assemble([Ok(entry.clone())], &getter, &mut out).unwrap();
        assert_eq!(out, b"abcdyz");
        // A shorter expanded file is a size error naming the file.
        getter.insert(b"s", expanded[..95].to_vec());
        let err = assemble([Ok(entry)], &getter, io::sink()).unwrap_err();
        assert!(
            matches!(err, Error::Size { ref name, expected: 100, actual: 95 } if name == "s"),
            "{err}"
        );
    }

    /// A sparse file of `size` bytes: `data` at `at`, zeros elsewhere; counts what is read.
    struct Holes {
        size: u64,
        at: u64,
        data: Vec<u8>,
        pos: u64,
        read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl Read for Holes {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min((self.size - self.pos) as usize);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                let offset = self.pos + i as u64;
                *b = match offset.checked_sub(self.at) {
                    Some(k) if (k as usize) < self.data.len() => self.data[k as usize],
                    _ => 0,
                };
            }
            self.pos += n as u64;
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    impl Seek for Holes {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            let SeekFrom::Start(to) = to else {
                return Err(io::ErrorKind::Unsupported.into());
            };
            self.pos = to;
            Ok(to)
        }
    }

    struct HolesGetter(std::sync::Arc<std::sync::atomic::AtomicU64>);

    impl HolesGetter {
        fn file(&self) -> Holes {
            Holes {
                size: 1 << 40,
                at: 1 << 39,
                data: b"payload".to_vec(),
                pos: 0,
                read: self.0.clone(),
            }
        }
    }

    impl FileGetter for HolesGetter {
        fn get(&self, _: &[u8]) -> io::Result<Box<dyn Read + '_>> {
            Ok(Box::new(self.file()))
        }

        fn get_with_size(&self, _: &[u8]) -> io::Result<(Box<dyn Read + '_>, Option<u64>)> {
            Ok((Box::new(self.file()), Some(1 << 40)))
        }

        fn get_seekable(&self, _: &[u8]) -> io::Result<Option<SeekableFile<'_>>> {
            Ok(Some((Box::new(self.file()), Some(1 << 40))))
        }
    }

    #[test]
    fn sparse_entries_seek_over_holes_when_the_getter_can() {
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let getter = HolesGetter(read.clone());
        let mut entry = Entry::file(b"s".to_vec(), 7, Some(crate::crc64(b"payload")));
        entry.sparse = Some(SparseMap {
            real_size: 1 << 40,
            regions: vec![crate::SparseRegion {
                offset: 1 << 39,
                len: 7,
            }],
        });
        for pipelined in [false, true] {
            read.store(0, Ordering::Relaxed);
            let mut out = Vec::new();
            if pipelined {
                assemble_pipelined([Ok(entry.clone())], &getter, &mut out).unwrap();
            } else {
                assemble([Ok(entry.clone())], &getter, &mut out).unwrap();
            }
            assert_eq!(out, b"payload");
            // A TiB of holes, 7 bytes read.
            assert_eq!(read.load(Ordering::Relaxed), 7, "pipelined: {pipelined}");
        }
    }

    /// Serves one file's content and records the size of every `read` asked of it.
    struct ReadSizes {
        content: Vec<u8>,
        asked: std::sync::Mutex<Vec<usize>>,
    }

    struct RecordingReader<'a> {
        rest: &'a [u8],
        asked: &'a std::sync::Mutex<Vec<usize>>,
    }

    impl Read for RecordingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.asked.lock().unwrap().push(buf.len());
            self.rest.read(buf)
        }
    }

    impl FileGetter for ReadSizes {
        fn get(&self, _: &[u8]) -> io::Result<Box<dyn Read + '_>> {
            Ok(Box::new(RecordingReader {
                rest: &self.content,
                asked: &self.asked,
            }))
        }

        fn get_with_size(&self, name: &[u8]) -> io::Result<(Box<dyn Read + '_>, Option<u64>)> {
            Ok((self.get(name)?, Some(self.content.len() as u64)))
        }
    }

    #[test]
    fn big_files_are_read_and_checksummed_in_cache_sized_pieces() {
        // 2 MiB + 3 bytes: whole pieces, then a short tail.
        let content: Vec<u8> = (0..(2 << 20) + 3).map(|i| (i * 31 % 251) as u8).collect();
        let entry = Entry::file(
            b"big".to_vec(),
            content.len() as u64,
            Some(crate::crc64(&content)),
        );
        for pipelined in [false, true] {
            let getter = ReadSizes {
                content: content.clone(),
                asked: Default::default(),
            };
            let mut out = Vec::new();
            let n = if pipelined {
                assemble_pipelined([Ok(entry.clone())], &getter, &mut out)
            } else {
                assemble([Ok(entry.clone())], &getter, &mut out)
            }
            .unwrap();
            assert_eq!(n, content.len() as u64);
            assert!(out == content, "pipelined: {pipelined}: the stream differs");
            let asked = getter.asked.into_inner().unwrap();
            assert!(
                asked.iter().all(|&len| len <= READ_PIECE),
                "pipelined: {pipelined}: reads of {asked:?}"
            );
            // Each piece read once: no read beyond the known size.
            assert_eq!(asked.len(), content.len().div_ceil(READ_PIECE));
        }
        // A byte changed in the last piece still fails the checksum.
        let mut changed = content.clone();
        *changed.last_mut().unwrap() ^= 1;
        for pipelined in [false, true] {
            let getter = ReadSizes {
                content: changed.clone(),
                asked: Default::default(),
            };
            let err = if pipelined {
                assemble_pipelined([Ok(entry.clone())], &getter, io::sink())
            } else {
                assemble([Ok(entry.clone())], &getter, io::sink())
            }
            .unwrap_err();
            assert!(
                matches!(err, Error::Checksum { ref name } if name == "big"),
                "{err}"
            );
        }
    }

    /// Hides the size a getter knows, so assembly takes the reading path to find a file's end.
    struct SizeUnknown<G>(G);

    impl<G: FileGetter> FileGetter for SizeUnknown<G> {
        fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>> {
            self.0.get(name)
        }
    }

    #[test]
    fn wrong_sizes_fail_with_and_without_a_known_size() {
        let entry = Entry::file(b"f".to_vec(), 5, Some(crate::crc64(b"hello")));
        for content in [&b"hell"[..], b"hello!"] {
            let mut getter = MemoryFileGetter::new();
            getter.insert(b"f", content.to_vec());
            let expected_actual = content.len() as u64;
            // Known size: the exact size, before any byte is read.
            let err = assemble([Ok(entry.clone())], &getter, io::sink()).unwrap_err();
            assert!(
                matches!(err, Error::Size { ref name, expected: 5, actual } if name == "f" && actual == expected_actual),
                "{err}"
            );
            // Read to the end: the size found (for a longer file, one byte past the record).
            let err = assemble([Ok(entry.clone())], &SizeUnknown(&getter), io::sink()).unwrap_err();
            assert!(
                matches!(err, Error::Size { ref name, expected: 5, actual } if name == "f" && actual == expected_actual),
                "{err}"
            );
        }
        let mut getter = MemoryFileGetter::new();
        getter.insert(b"f", b"hello".to_vec());
        for sized in [true, false] {
            let mut out = Vec::new();
            let result = if sized {
                assemble([Ok(entry.clone())], &getter, &mut out)
            } else {
                assemble([Ok(entry.clone())], &SizeUnknown(&getter), &mut out)
            };
            assert_eq!(result.unwrap(), 5);
            assert_eq!(out, b"hello");
        }
    }
}
