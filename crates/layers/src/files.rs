//! File helpers: the store's directories opened without following symlinks ([`StoreDir`]),
//! atomic replacement, directory creation with Go's modes, big-data file names.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Creates `dir` and its missing parents with mode 0700 (Go's `os.MkdirAll(dir, 0700)`).
pub(crate) fn mkdir_all(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// Creates an empty file with mode 0644 if it does not exist (the store's other lock files).
pub(crate) fn touch_file(path: &Path) -> Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create", path, e)),
    }
}

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The store's regular file at `path`, opened through its directory (opened without following
/// a symlink) as [`StoreDir::open_regular`] does; `None` if either is missing.
pub(crate) fn open_store_file(path: &Path) -> Result<Option<File>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    match StoreDir::open(parent_of(path))? {
        Some(dir) => dir.open_regular(name),
        None => Ok(None),
    }
}

/// The content of the store's regular file at `path` (see [`open_store_file`]).
pub(crate) fn read_store_file(path: &Path) -> Result<Option<Vec<u8>>> {
    open_store_file(path)?
        .map(|file| read_all(file, path))
        .transpose()
}

fn read_all(mut file: File, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(bytes)
}

/// The kind of file at a store path that is not what the store keeps there.
pub(crate) fn kind_name(file_type: FileType) -> &'static str {
    match file_type {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

/// A directory of the store (`<driver>-layers/`, a big-data directory, the run root's
/// `<driver>-layers/`), opened without following a symlink in its last component. Every file
/// inside it is reached through the descriptor, by name, and never through a symlink: a path
/// checked once is not looked up again.
#[derive(Debug)]
pub(crate) struct StoreDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Prefix of the temp files of [`StoreDir::write_atomic`] (and of Go's `AtomicWriteFile`).
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

impl StoreDir {
    /// Opens the directory at `path`; `None` if it does not exist. A symlink or anything else
    /// but a directory there is [`Error::UnexpectedFileType`].
    pub(crate) fn open(path: &Path) -> Result<Option<StoreDir>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(StoreDir {
                fd,
                path: path.to_path_buf(),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(Self::wrong_type_at(path, "a directory")),
            Err(e) => Err(Error::io("open directory", path, e.into())),
        }
    }

    /// Like [`open`](Self::open), creating the directory (0700) first if it is missing.
    pub(crate) fn create(path: &Path) -> Result<StoreDir> {
        match Self::open(path)? {
            Some(dir) => Ok(dir),
            None => {
                mkdir_all(path)?;
                Self::open(path)?.ok_or_else(|| {
                    Error::io("open directory", path, io::ErrorKind::NotFound.into())
                })
            }
        }
    }

    fn wrong_type_at(path: &Path, expected: &'static str) -> Error {
        let found = fs::symlink_metadata(path)
            .map(|m| kind_name(FileType::from_raw_mode(m.mode())))
            .unwrap_or("something else");
        Error::UnexpectedFileType {
            path: path.to_path_buf(),
            expected,
            found,
        }
    }

    fn wrong_type(&self, name: &str, expected: &'static str) -> Error {
        let found = self
            .file_type(name)
            .ok()
            .flatten()
            .map_or("something else", kind_name);
        Error::UnexpectedFileType {
            path: self.join(name),
            expected,
            found,
        }
    }

    /// The path of `name` inside the directory (for messages).
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The type of `name` (not following a symlink), `None` if it does not exist.
    pub(crate) fn file_type(&self, name: &str) -> Result<Option<FileType>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io("stat", self.join(name), e.into())),
        }
    }

    /// The directory `name` inside this one; `None` if missing and not `create`d (0700).
    /// A symlink there is [`Error::UnexpectedFileType`]: never followed, never written through.
    pub(crate) fn subdir(&self, name: &str, create: bool) -> Result<Option<StoreDir>> {
        if create {
            match rustix::fs::mkdirat(&self.fd, name, Mode::RWXU) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::io("create directory", self.join(name), e.into())),
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(StoreDir {
                fd,
                path: self.join(name),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(self.wrong_type(name, "a directory")),
            Err(e) => Err(Error::io("open directory", self.join(name), e.into())),
        }
    }

    /// Opens the regular file `name` for reading; `None` if it does not exist. The open
    /// neither follows a symlink nor waits (`O_NONBLOCK`: a FIFO put in a file's place would
    /// block a reader holding the store's lock forever); anything but a regular file is
    /// [`Error::UnexpectedFileType`].
    pub(crate) fn open_regular(&self, name: &str) -> Result<Option<File>> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(self.wrong_type(name, "a regular file")),
            Err(e) => return Err(Error::io("open", self.join(name), e.into())),
        };
        let st =
            rustix::fs::fstat(&fd).map_err(|e| Error::io("stat", self.join(name), e.into()))?;
        let file_type = FileType::from_raw_mode(st.st_mode);
        if file_type != FileType::RegularFile {
            return Err(Error::UnexpectedFileType {
                path: self.join(name),
                expected: "a regular file",
                found: kind_name(file_type),
            });
        }
        // Reads of a regular file never block; clear the flag so no reader sees EAGAIN.
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())
            .map_err(|e| Error::io("open", self.join(name), e.into()))?;
        Ok(Some(File::from(fd)))
    }

    /// The whole content of the regular file `name` (see [`open_regular`](Self::open_regular)).
    pub(crate) fn read_regular(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.open_regular(name)?
            .map(|file| read_all(file, &self.join(name)))
            .transpose()
    }

    /// Creates `name` for writing with `mode`, failing if anything (a symlink included) is
    /// already there.
    pub(crate) fn create_new(&self, name: &str, mode: u32) -> Result<File> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))
            .map(File::from)
            .map_err(|e| Error::io("create", self.join(name), e.into()))
    }

    /// Renames `from` to `to`, both in this directory (replacing `to`).
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| Error::io("rename", self.join(from), e.into()))
    }

    /// Removes the file (or symlink, never its target) `name`; already gone is success.
    pub(crate) fn remove_file(&self, name: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io("remove", self.join(name), e.into())),
        }
    }

    /// Removes `name` and, if it is a directory, everything below it, with an explicit stack
    /// (no recursion) and without following any symlink; already gone is success.
    pub(crate) fn remove_tree(&self, name: &str) -> Result<()> {
        match self.file_type(name)? {
            None => return Ok(()),
            Some(FileType::Directory) => {}
            Some(_) => return self.remove_file(name),
        }
        // (directory, its name in its parent); the parent is the entry below it, or `self`.
        let mut stack: Vec<(StoreDir, String)> = Vec::new();
        if let Some(top) = self.subdir(name, false)? {
            stack.push((top, name.to_string()));
        }
        while let Some((dir, _)) = stack.last() {
            let mut descend = None;
            for (entry, file_type) in dir.entries()? {
                if file_type == FileType::Directory {
                    descend = Some(entry);
                    break;
                }
                dir.remove_file(&entry)?;
            }
            match descend {
                Some(entry) => match dir.subdir(&entry, false)? {
                    Some(child) => stack.push((child, entry)),
                    // Gone meanwhile, or replaced by a file: look again.
                    None => continue,
                },
                None => {
                    let (done, done_name) = stack.pop().expect("the loop saw an entry");
                    drop(done);
                    let parent = stack.last().map_or(self, |(parent, _)| parent);
                    match rustix::fs::unlinkat(&parent.fd, done_name.as_str(), AtFlags::REMOVEDIR) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => {
                            return Err(Error::io("remove", parent.join(&done_name), e.into()));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The names in the directory with their types (not following symlinks), sorted; names
    /// that are not UTF-8 are skipped (no file of the store has one).
    pub(crate) fn entries(&self) -> Result<Vec<(String, FileType)>> {
        let dup = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("read directory", &self.path, e.into()))?;
        let dir = rustix::fs::Dir::read_from(dup)
            .map_err(|e| Error::io("read directory", &self.path, e.into()))?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| Error::io("read directory", &self.path, e.into()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let file_type = match entry.file_type() {
                FileType::Unknown => match self.file_type(name)? {
                    Some(t) => t,
                    None => continue,
                },
                t => t,
            };
            out.push((name.to_string(), file_type));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// fsyncs the directory (makes a rename or unlink inside it durable).
    pub(crate) fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| Error::io("fsync directory", &self.path, e.into()))
    }

    /// Replaces `name` atomically with what `fill` writes: a new temp file `.tmp-<name><random>`
    /// beside it, written, chmod'ed to `mode`, fsynced, renamed over `name`, the directory
    /// fsynced. Readers see the old or the new content, never a mix; a crash leaves at most a
    /// stray temp file. Nothing is written through a symlink.
    pub(crate) fn write_atomic(
        &self,
        name: &str,
        mode: u32,
        fill: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let random = layerstore_model::generate_id()?;
        let temp = format!("{TEMP_PREFIX}{name}{}", &random[..12]);
        let file = self.create_new(&temp, 0o600)?;
        let written = (|| {
            let mut out = io::BufWriter::with_capacity(256 << 10, &file);
            fill(&mut out)?;
            out.flush()
                .map_err(|e| Error::io("write", self.join(name), e))?;
            drop(out);
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("chmod", self.join(&temp), e))?;
            file.sync_all()
                .map_err(|e| Error::io("fsync", self.join(&temp), e))?;
            // Renames made in this directory before (a layer's tar-split) are durable before
            // this one. On ext4 the fsync above committed them already, so this costs nothing.
            self.sync()?;
            self.rename(&temp, name)
        })();
        if let Err(e) = written {
            let _ = self.remove_file(&temp);
            return Err(e);
        }
        self.sync()
    }

    /// Like [`write_atomic`](Self::write_atomic), copying from a reader; returns the bytes
    /// written.
    pub(crate) fn write_atomic_from(
        &self,
        name: &str,
        mode: u32,
        input: &mut dyn Read,
    ) -> Result<u64> {
        let mut written = 0;
        self.write_atomic(name, mode, |out| {
            written = io::copy(input, out).map_err(|e| Error::io("write", self.join(name), e))?;
            Ok(())
        })?;
        Ok(written)
    }
}

/// Go's file names of big-data items have one home, the model crate.
pub use layerstore_model::big_data_file_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn store_dir(dir: &Path) -> StoreDir {
        StoreDir::open(dir).unwrap().expect("exists")
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layers.json");
        fs::write(&path, "old").unwrap();
        let store = store_dir(dir.path());
        store
            .write_atomic("layers.json", 0o600, |out| {
                out.write_all(b"new")
                    .map_err(|e| Error::io("write", "x", e))
            })
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // No temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A failing fill leaves the old content and no temp file.
        let err = store.write_atomic("layers.json", 0o600, |_| {
            Err(Error::io("write", "x", io::Error::other("boom")))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_fifo_or_a_symlink_is_refused_at_once_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s").unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            Mode::RUSR | Mode::WUSR,
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dirlink")).unwrap();
        let store = store_dir(dir.path());
        // No writer ever opens the FIFO: a blocking open would never return.
        for (name, expected, found) in [
            ("fifo", "a regular file", "a FIFO"),
            ("link", "a regular file", "a symlink"),
        ] {
            match store.open_regular(name) {
                Err(Error::UnexpectedFileType {
                    path,
                    expected: e,
                    found: f,
                }) => {
                    assert_eq!((e, f), (expected, found));
                    assert_eq!(path, dir.path().join(name));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(store.open_regular("missing").unwrap().is_none());
        for create in [false, true] {
            let err = store.subdir("dirlink", create).unwrap_err();
            assert!(
                err.to_string()
                    .contains("a symlink where the store keeps a directory"),
                "{err}"
            );
        }
        assert!(matches!(
            StoreDir::open(&dir.path().join("dirlink")),
            Err(Error::UnexpectedFileType {
                found: "a symlink",
                ..
            })
        ));
        // Removing never follows: the links go, their targets stay.
        store.remove_tree("dirlink").unwrap();
        store.remove_file("link").unwrap();
        assert_eq!(fs::read(outside.path().join("secret")).unwrap(), b"s");
    }

    #[test]
    fn remove_tree_walks_deep_trees_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), "k").unwrap();
        let mut deep = dir.path().join("top");
        for level in 0..300 {
            deep = deep.join(format!("d{level}"));
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("file"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), deep.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("top/up")).unwrap();
        let store = store_dir(dir.path());
        store.remove_tree("top").unwrap();
        assert!(!dir.path().join("top").exists());
        assert_eq!(fs::read(outside.path().join("keep")).unwrap(), b"k");
        store.remove_tree("top").unwrap();
    }
}
