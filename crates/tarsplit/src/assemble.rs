//! Assembly: rebuild the tar stream from entries and the files they name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::Crc64Digest;
use crate::entry::{Entry, EntryKind, clean_path};
use crate::error::{Error, lossy};
use crate::rooted::RootDir;
use crate::tar::SparseMap;

/// Gives the content of the files that entries name.
pub trait FileGetter {
    /// Opens the content of the file `name` (an entry's raw name, e.g. `./etc/passwd`).
    fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>>;
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

    /// The directory given to [`new`](Self::new).
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
        Ok(Box::new(File::from(RootDir::open_file_in(
            dir.as_fd(),
            name,
        )?)))
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
        match self.files.get(&clean_path(name)) {
            Some(content) => Ok(Box::new(content.as_slice())),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }
}

struct FileCopy<'g> {
    name: Vec<u8>,
    reader: Box<dyn Read + 'g>,
    expected_crc: u64,
    crc: Crc64Digest,
    /// Bytes of the current region (or of the whole file) still to copy.
    remaining: u64,
    /// Recorded size (packed size for sparse files).
    size: u64,
    /// Position in the file on disk.
    logical: u64,
    sparse: Option<(SparseMap, usize)>,
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
                let reader = self.getter.get(&name).map_err(|source| Error::File {
                    name: lossy(&name),
                    source,
                })?;
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
            // Skip the hole before the region.
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
        // The end: the file must end exactly here (sparse: at its real size).
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
}
