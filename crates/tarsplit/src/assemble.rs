//! Assembly: rebuild the tar stream from entries and the files they name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;

use crate::Crc64Digest;
use crate::entry::{Entry, EntryKind, clean_path};
use crate::error::{Error, lossy};
use crate::rooted::RootDir;
use crate::tar::SparseMap;

/// Gives the content of the files that entries name.
pub trait FileGetter {
    /// Opens the content of the file `name` (an entry's raw name, e.g. `./etc/passwd`).
    fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>>;

    /// Opens the file like [`get`](Self::get) and also gives its size when the getter knows it
    /// without reading the content (e.g. from the `fstat` made while opening it).
    ///
    /// With a size, assembly checks it against the entry before reading anything
    /// ([`Error::Size`] names the actual size) and reads exactly the recorded bytes, without a
    /// last `read` to prove the end of the file; with `None` (the default) it reads until the
    /// end. Either way a file that is shorter or longer than its entry records is an error.
    fn get_with_size(&self, name: &[u8]) -> io::Result<(Box<dyn Read + '_>, Option<u64>)> {
        Ok((self.get(name)?, None))
    }

    /// Opens the file like [`get_with_size`](Self::get_with_size), as a reader that can also
    /// seek, when the getter can give one; `Ok(None)` (the default) when it cannot.
    ///
    /// Assembly asks for it only for sparse entries: it then seeks over the holes and reads
    /// only the data regions, so a file that declares terabytes of holes costs what its data
    /// costs. Without it the holes are read through.
    fn get_seekable(&self, name: &[u8]) -> io::Result<Option<SeekableFile<'_>>> {
        let _ = name;
        Ok(None)
    }
}

/// A file that can be read at chosen offsets.
pub trait ReadSeek: Read + Seek {}

impl<T: Read + Seek> ReadSeek for T {}

/// What [`FileGetter::get_seekable`] gives: the file and, when known, its size.
pub type SeekableFile<'a> = (Box<dyn ReadSeek + 'a>, Option<u64>);

impl<G: FileGetter + ?Sized> FileGetter for &G {
    fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>> {
        (**self).get(name)
    }

    fn get_with_size(&self, name: &[u8]) -> io::Result<(Box<dyn Read + '_>, Option<u64>)> {
        (**self).get_with_size(name)
    }

    fn get_seekable(&self, name: &[u8]) -> io::Result<Option<SeekableFile<'_>>> {
        (**self).get_seekable(name)
    }
}

impl<G: FileGetter + ?Sized> FileGetter for Box<G> {
    fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>> {
        (**self).get(name)
    }

    fn get_with_size(&self, name: &[u8]) -> io::Result<(Box<dyn Read + '_>, Option<u64>)> {
        (**self).get_with_size(name)
    }

    fn get_seekable(&self, name: &[u8]) -> io::Result<Option<SeekableFile<'_>>> {
        (**self).get_seekable(name)
    }
}

/// Reads files beneath a directory (a layer's content) as if that directory were `/`.
///
/// Names are cleaned lexically first (Go's `filepath.Clean`: `./a/../b` is `b`, a leading `/`
/// is relative to the root); a name that still climbs out (`../x`) is refused. Directories on
/// the way resolve like a chroot ([`RootDir`]): a symlinked directory inside the layer is
/// followed (the archive was extracted through it, so its files are there), while `..` and
/// absolute targets stay beneath the root, so nothing outside the layer is ever read. The
/// file itself must be a regular file and is never followed. Go's getter, by contrast, joins
/// the name to the host path and follows symlinks wherever they lead.
#[derive(Debug)]
pub struct DirFileGetter {
    root: RootDir,
    path: PathBuf,
    /// The directory of the last file opened: tar streams list a directory's files together,
    /// so this saves one path resolution per file.
    last_dir: Mutex<Option<(Vec<u8>, OwnedFd)>>,
}

impl DirFileGetter {
    /// Opens the directory `path` (the handle is kept: later renames of `path` do not matter).
    pub fn new(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let root = RootDir::open(path)
            .map_err(|e| Error::io(format!("opening directory {}", path.display()), e))?;
        Ok(DirFileGetter {
            root,
            path: path.to_path_buf(),
            last_dir: Mutex::new(None),
        })
    }

    /// A getter beneath `dir`, a directory the caller opened (any descriptor of it, `O_PATH`
    /// included); `path` only names it in messages.
    pub fn from_fd(dir: OwnedFd, path: impl AsRef<Path>) -> Self {
        DirFileGetter {
            root: RootDir::from_fd(dir),
            path: path.as_ref().to_path_buf(),
            last_dir: Mutex::new(None),
        }
    }

    /// The directory given to [`new`](Self::new) or [`from_fd`](Self::from_fd).
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub(crate) fn force_component_walk(self) -> Self {
        self.root.force_walk();
        self
    }
}

impl FileGetter for DirFileGetter {
    fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>> {
        self.get_with_size(name).map(|(reader, _)| reader)
    }

    /// The size is the one `fstat` gave when the file was opened (the call that checks it is
    /// a regular file), so the assembler needs no extra `read` per file to find its end.
    fn get_with_size(&self, name: &[u8]) -> io::Result<(Box<dyn Read + '_>, Option<u64>)> {
        let (file, size) = self.open_file(name)?;
        Ok((Box::new(file), Some(size)))
    }

    fn get_seekable(&self, name: &[u8]) -> io::Result<Option<SeekableFile<'_>>> {
        let (file, size) = self.open_file(name)?;
        Ok(Some((Box::new(file), Some(size))))
    }
}

impl DirFileGetter {
    /// Opens the regular file `name` beneath the directory, as [`FileGetter::get`] resolves it,
    /// and gives its size; callers that need more than a reader (an overlay getter asking the
    /// open file for its metacopy xattr) use the [`File`] itself.
    pub fn open_file(&self, name: &[u8]) -> io::Result<(File, u64)> {
        let cleaned = clean_path(name);
        let rel = cleaned.strip_prefix(b"/").unwrap_or(&cleaned);
        if rel.is_empty() || rel == b"." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the name is the layer's root directory",
            ));
        }
        if rel == b".." || rel.starts_with(b"../") {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the name climbs out of the layer directory",
            ));
        }
        let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&rel[..slash], &rel[slash + 1..]),
            None => (&rel[..0], rel),
        };
        let mut last_dir = self.last_dir.lock().unwrap_or_else(|e| e.into_inner());
        if last_dir
            .as_ref()
            .is_none_or(|(cached, _)| cached[..] != *parent)
        {
            let components: Vec<&[u8]> = if parent.is_empty() {
                Vec::new()
            } else {
                parent.split(|&b| b == b'/').collect()
            };
            let dir = self.root.open_dir(&components)?;
            *last_dir = Some((parent.to_vec(), dir));
        }
        let (_, dir) = last_dir.as_ref().expect("just filled");
        let (fd, size) = RootDir::open_file_with_size_in(dir.as_fd(), name)?;
        Ok((File::from(fd), size))
    }
}

/// Files held in memory, looked up by cleaned name: for tests and small tools.
#[derive(Debug, Default, Clone)]
pub struct MemoryFileGetter {
    files: HashMap<Vec<u8>, Vec<u8>>,
}

impl MemoryFileGetter {
    /// An empty getter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file.
    pub fn insert(&mut self, name: &[u8], content: Vec<u8>) {
        self.files.insert(clean_path(name), content);
    }
}

impl FileGetter for MemoryFileGetter {
    fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>> {
        self.get_with_size(name).map(|(reader, _)| reader)
    }

    fn get_with_size(&self, name: &[u8]) -> io::Result<(Box<dyn Read + '_>, Option<u64>)> {
        match self.files.get(&clean_path(name)) {
            Some(content) => Ok((Box::new(content.as_slice()), Some(content.len() as u64))),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn get_seekable(&self, name: &[u8]) -> io::Result<Option<SeekableFile<'_>>> {
        match self.files.get(&clean_path(name)) {
            Some(content) => Ok(Some((
                Box::new(io::Cursor::new(content.as_slice())),
                Some(content.len() as u64),
            ))),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }
}

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
        }
    }

    fn start(&mut self, entry: Entry) -> Result<(), Error> {
        let position = entry.position;
        let invalid =
            |why: String| Error::record(0, format!("entry at position {position}: {why}"));
        match entry.kind {
            EntryKind::Segment => {
                if let Some(data) = entry.payload.filter(|d| !d.is_empty()) {
                    self.state = State::Segment { data, pos: 0 };
                }
            }
            EntryKind::File if entry.size == 0 => {}
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
                    if *pos == data.len() {
                        self.state = State::Idle;
                    }
                    return Ok(n);
                }
                State::File(fc) => {
                    if fc.remaining == 0 {
                        if Self::advance_file(fc, &mut self.scratch)? {
                            self.state = State::Idle;
                        }
                        continue;
                    }
                    let want = buf
                        .len()
                        .min(usize::try_from(fc.remaining).unwrap_or(usize::MAX));
                    let n = Self::read_file(fc, &mut buf[..want])?;
                    if n == 0 {
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
                    fc.crc.update(&buf[..n]);
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

/// Bytes per chunk that [`assemble_pipelined`] hands from its file-reading thread to the
/// writing one.
pub const PIPELINE_CHUNK_SIZE: usize = 1 << 20;

/// Batches of decoded entries that may wait for the file-reading thread.
const PIPELINE_QUEUED_BATCHES: usize = 4;

/// A batch of decoded entries ends at this many entries ...
const PIPELINE_BATCH_ENTRIES: usize = 256;

/// ... or once its payloads and names hold this many bytes (segments hold up to 1 MiB).
const PIPELINE_BATCH_BYTES: usize = 256 << 10;

/// Filled chunks that may wait for the writer; with the one being filled and the one being
/// written, at most this + 2 chunks exist (6 MiB).
const PIPELINE_QUEUED_CHUNKS: usize = 4;

/// [`assemble`] on three threads, so that decoding the entries, reading the files and writing
/// the stream overlap. Returns the bytes written.
///
/// A scoped thread pulls `entries` (decoding the tar-split file, when that is what they come
/// from) and passes them on in batches; a second one opens, reads and checks the files into
/// [`PIPELINE_CHUNK_SIZE`] chunks; the calling thread writes the chunks to `out`. Only
/// `entries` and `getter` move to other threads (hence `Send`; pass `&getter` for a `Sync`
/// getter such as [`DirFileGetter`]); `out` stays on the calling thread and need not be `Send`.
///
/// The output is [`assemble`]'s, byte for byte, and so are the errors (naming the entry, the
/// file or the output offset). The first error wins: a bad entry or file stops the pipeline
/// once the chunks before it are written; a failed write stops the other threads before they
/// read another file or decode another batch. On error `out` holds a prefix of the stream. A
/// panic of either thread is resumed on the calling thread. Memory stays bounded: at most six
/// chunks (recycled, not allocated per write) and four batches (256 entries or 256 KiB each)
/// are in flight.
///
/// Worth it with at least two CPUs free (measurements in the crate docs). When the process may
/// use only one ([`std::thread::available_parallelism`]: affinity, cgroup quota), this is
/// [`assemble`] on the calling thread.
pub fn assemble_pipelined<I, G, W>(entries: I, getter: G, mut out: W) -> Result<u64, Error>
where
    I: IntoIterator<Item = Result<Entry, Error>>,
    I::IntoIter: Send,
    G: FileGetter + Send,
    W: Write,
{
    // On one CPU the threads only take turns, and the hand-offs cost 8-10% (measured).
    if thread::available_parallelism().map_or(1, usize::from) < 2 {
        return assemble(entries, &getter, out);
    }
    let entries = entries.into_iter();
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let record = |error: Error| {
        first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(error);
    };
    let stop = AtomicBool::new(false);
    let total = thread::scope(|scope| {
        // Created here, not outside the scope, so that a panic of the writer drops its ends
        // while unwinding and the other threads cannot block on them forever.
        let (filled_tx, filled_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPELINE_QUEUED_CHUNKS);
        let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
        let (batch_tx, batch_rx) =
            mpsc::sync_channel::<Vec<Result<Entry, Error>>>(PIPELINE_QUEUED_BATCHES);
        let (record, stop) = (&record, &stop);
        // Decoding the entries (for a tar-split file: gunzip, JSON, base64) costs as much CPU
        // as writing the stream, so it gets a thread of its own.
        let decoder = scope.spawn(move || {
            let mut entries = entries;
            loop {
                let mut batch = Vec::with_capacity(PIPELINE_BATCH_ENTRIES);
                let mut bytes = 0;
                let mut last = false;
                while batch.len() < PIPELINE_BATCH_ENTRIES && bytes < PIPELINE_BATCH_BYTES {
                    match entries.next() {
                        Some(Ok(entry)) => {
                            bytes += entry.payload.as_ref().map_or(0, Vec::len)
                                + entry.name.as_ref().map_or(0, Vec::len);
                            batch.push(Ok(entry));
                        }
                        // The assembler stops at the first error: no need to read on.
                        Some(Err(error)) => {
                            batch.push(Err(error));
                            last = true;
                            break;
                        }
                        None => {
                            last = true;
                            break;
                        }
                    }
                }
                if stop.load(Ordering::Relaxed)
                    || (!batch.is_empty() && batch_tx.send(batch).is_err())
                    || last
                {
                    return;
                }
            }
        });
        let reader = scope.spawn(move || {
            let mut assembler = Assembler::new(batch_rx.into_iter().flatten(), &getter);
            let mut allocated = 0;
            loop {
                let mut chunk = match spare_rx.try_recv() {
                    Ok(chunk) => chunk,
                    Err(_) if allocated < PIPELINE_QUEUED_CHUNKS + 2 => {
                        allocated += 1;
                        vec![0u8; PIPELINE_CHUNK_SIZE]
                    }
                    Err(_) => match spare_rx.recv() {
                        Ok(chunk) => chunk,
                        // The writer gave up (its error is recorded).
                        Err(_) => return,
                    },
                };
                let mut len = 0;
                while len < chunk.len() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match assembler.read_stream(&mut chunk[len..]) {
                        Ok(0) => break,
                        Ok(n) => len += n,
                        Err(error) => {
                            record(error);
                            return;
                        }
                    }
                }
                let end = len < chunk.len();
                if len > 0 && filled_tx.send((chunk, len)).is_err() {
                    return;
                }
                if end {
                    return;
                }
            }
        });
        let mut total = 0u64;
        // Ends when the reader is done (or failed) and every chunk it sent is written.
        while let Ok((chunk, len)) = filled_rx.recv() {
            if let Err(e) = out.write_all(&chunk[..len]) {
                stop.store(true, Ordering::Relaxed);
                record(Error::io(
                    format!("writing the tar stream at offset {total}"),
                    e,
                ));
                break;
            }
            total += len as u64;
            // The reader may be gone already; then the chunk is just freed.
            let _ = spare_tx.send(chunk);
        }
        drop(filled_rx);
        drop(spare_tx);
        // The decoder's panic first: the reader took its end for the end of the entries.
        let decoded = decoder.join();
        let read = reader.join();
        if let Err(panic) = decoded.and(read) {
            std::panic::resume_unwind(panic);
        }
        total
    });
    if let Some(error) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    out.flush()
        .map_err(|e| Error::io("flushing the tar stream", e))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{FileType, Mode};

    fn read_all(getter: &DirFileGetter, name: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        getter.get(name)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn layer() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), b"content").unwrap();
        std::fs::write(root.join("top"), b"top").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("a/etc-link")).unwrap();
        std::os::unix::fs::symlink("b", root.join("a/b-link")).unwrap();
        std::os::unix::fs::symlink("file", root.join("a/b/file-link")).unwrap();
        dir
    }

    fn check_getter(getter: &DirFileGetter) {
        assert_eq!(read_all(getter, b"./a/b/file").unwrap(), b"content");
        assert_eq!(read_all(getter, b"a/./b/../b/file").unwrap(), b"content");
        assert_eq!(read_all(getter, b"/top").unwrap(), b"top");
        // Symlinked directories resolve as in a chroot: inside the layer, never out of it.
        assert_eq!(
            read_all(getter, b"a/etc-link/passwd").unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "/etc of the layer, not of the host"
        );
        assert_eq!(read_all(getter, b"a/b-link/file").unwrap(), b"content");
        // The file itself is never followed.
        assert!(read_all(getter, b"a/b/file-link").is_err());
        // Climbing out, the root itself, directories and missing files are refused.
        let err = read_all(getter, b"../../etc/passwd").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(read_all(getter, b"./").is_err());
        assert!(read_all(getter, b"a/b").is_err());
        assert_eq!(
            read_all(getter, b"nope").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn dir_getter_stays_beneath_its_root() {
        let dir = layer();
        check_getter(&DirFileGetter::new(dir.path()).unwrap());
    }

    #[test]
    fn dir_getter_component_walk_fallback() {
        let dir = layer();
        check_getter(
            &DirFileGetter::new(dir.path())
                .unwrap()
                .force_component_walk(),
        );
    }

    #[test]
    fn dir_getter_refuses_fifos_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("pipe"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let getter = DirFileGetter::new(dir.path()).unwrap();
        assert!(read_all(&getter, b"pipe").is_err());
    }

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

    /// Entries for `count` files of `size` bytes each (with 512-byte header segments), their
    /// getter and the stream they assemble to.
    fn many_files(count: usize, size: usize) -> (Vec<Entry>, MemoryFileGetter, Vec<u8>) {
        let mut entries = Vec::new();
        let mut getter = MemoryFileGetter::new();
        let mut stream = Vec::new();
        for i in 0..count {
            let header = vec![(i % 251) as u8; 512];
            let content: Vec<u8> = (0..size).map(|j| ((i * 7 + j) % 253) as u8).collect();
            let name = format!("dir/file{i}").into_bytes();
            stream.extend_from_slice(&header);
            stream.extend_from_slice(&content);
            entries.push(Entry::segment(header));
            entries.push(Entry::file(
                name.clone(),
                size as u64,
                Some(crate::crc64(&content)),
            ));
            getter.insert(&name, content);
        }
        for (position, entry) in entries.iter_mut().enumerate() {
            entry.position = position as u64;
        }
        (entries, getter, stream)
    }

    #[test]
    fn pipelined_output_is_the_same_stream() {
        // 6.4 MiB: more chunks than are ever in flight, so chunks are recycled.
        let (entries, getter, stream) = many_files(100, (64 << 10) + 3);
        let mut out = Vec::new();
        let n = assemble_pipelined(entries.into_iter().map(Ok), &getter, &mut out).unwrap();
        assert_eq!(n, stream.len() as u64);
        assert!(out == stream, "pipelined stream differs");
        // Empty input: empty output.
        let mut out = Vec::new();
        assert_eq!(assemble_pipelined([], &getter, &mut out).unwrap(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn pipelined_read_errors_name_the_file_after_writing_what_came_before() {
        let (mut entries, getter, stream) = many_files(40, 100 << 10);
        // File 30 is missing from the getter.
        entries[61].name = Some(b"dir/missing".to_vec());
        let mut out = Vec::new();
        let err = assemble_pipelined(entries.into_iter().map(Ok), &getter, &mut out).unwrap_err();
        assert!(
            matches!(err, Error::File { ref name, .. } if name == "dir/missing"),
            "{err}"
        );
        assert!(stream.starts_with(&out), "the output is not a prefix");
    }

    /// Fails every write after `limit` bytes.
    struct FailingWriter {
        written: usize,
        limit: usize,
    }

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written >= self.limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = buf.len().min(self.limit - self.written);
            self.written += n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Counts the files opened.
    struct Counting<'a>(&'a MemoryFileGetter, std::sync::atomic::AtomicUsize);

    impl FileGetter for Counting<'_> {
        fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.get(name)
        }
    }

    #[test]
    fn pipelined_write_errors_stop_the_reader() {
        // 2,000 files of 64 KiB: 125 MiB if the reader went on.
        let (entries, getter, _) = many_files(2000, 64 << 10);
        let counting = Counting(&getter, Default::default());
        let out = FailingWriter {
            written: 0,
            limit: 3 << 20,
        };
        let err = assemble_pipelined(entries.into_iter().map(Ok), &counting, out).unwrap_err();
        assert!(
            matches!(err, Error::Io { ref context, ref source } if context == "writing the tar stream at offset 3145728" && source.kind() == io::ErrorKind::StorageFull),
            "{err}"
        );
        // The chunks in flight hold 6 MiB: about 100 files, far from 2,000.
        let opened = counting.1.load(Ordering::Relaxed);
        assert!(opened < 200, "{opened} files opened after the write failed");
    }

    #[test]
    fn pipelined_decoding_errors_are_returned() {
        let (mut entries, getter, _) = many_files(3, 10);
        entries[3].payload = Some(vec![1, 2, 3]);
        let err =
            assemble_pipelined(entries.iter().cloned().map(Ok), &getter, io::sink()).unwrap_err();
        assert!(err.to_string().contains("position 3"), "{err}");
        let items = entries
            .into_iter()
            .map(Ok)
            .take(2)
            .chain([Err(Error::record(9, "broken line"))]);
        let err = assemble_pipelined(items, &getter, io::sink()).unwrap_err();
        assert!(matches!(err, Error::Record { line: 9, .. }), "{err}");
    }

    struct Panicking;

    impl FileGetter for Panicking {
        fn get(&self, _: &[u8]) -> io::Result<Box<dyn Read + '_>> {
            panic!("getter panicked");
        }
    }

    #[test]
    fn pipelined_panics_reach_the_caller() {
        let entry = Entry::file(b"f".to_vec(), 1, Some(0));
        let result =
            std::panic::catch_unwind(|| assemble_pipelined([Ok(entry)], Panicking, io::sink()));
        let panic = result.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"getter panicked"));
        // A panic while decoding is not taken for the end of the entries.
        let (entries, getter, _) = many_files(3, 10);
        let result = std::panic::catch_unwind(|| {
            let items = entries
                .into_iter()
                .map(Ok)
                .chain(std::iter::from_fn(|| panic!("decoder panicked")));
            assemble_pipelined(items, &getter, io::sink())
        });
        let panic = result.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"decoder panicked"));
    }
}
