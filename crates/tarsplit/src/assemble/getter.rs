//! The files an assembly reads: the [`FileGetter`] trait, a layer directory read beneath its
//! root ([`DirFileGetter`]), and files held in memory ([`MemoryFileGetter`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::entry::{clean_path, clean_path_borrowed};
use crate::error::Error;
use crate::rooted::RootDir;

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
        let cleaned = clean_path_borrowed(name);
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

#[cfg(test)]
mod tests {
    use rustix::fs::{FileType, Mode};

    use super::*;

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
}
