//! [`Dir`]: a directory of the store, opened once, and every file operation in it made
//! relative to that descriptor without following symbolic links.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::crash;
use crate::error::{Error, Result};

/// Prefix of the temp files atomic writes make beside their target (`.tmp-<name><digits>`,
/// as Go's `AtomicWriteFile`).
pub const TEMP_PREFIX: &str = ".tmp-";

/// What identifies one version of a file: a replaced file has a new inode, an edited one a new
/// size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    fn of(st: &Stat) -> FileStamp {
        FileStamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as i64,
        }
    }
}

/// A directory of the store, held open: files in it are opened, created, replaced and removed
/// relative to its descriptor with `O_NOFOLLOW`, so a path checked once is not looked up again
/// and a symbolic link planted in the store is never followed.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory `path`, refusing a symbolic link as its last component (the
    /// components before it are the caller's configuration and are followed).
    pub fn open(path: impl Into<PathBuf>) -> Result<Dir> {
        let path = path.into();
        let fd = match rustix::fs::open(&path, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOTDIR) if path.is_symlink() => return Err(Error::Symlink { path }),
            Err(e) => return Err(Error::io("opening directory", &path, e.into())),
        };
        Ok(Dir { fd, path })
    }

    /// Creates `path` and its missing parents with mode 0700 (Go's `MkdirAll(dir, 0700)`),
    /// then opens it as [`Dir::open`] does.
    pub fn create(path: impl Into<PathBuf>) -> Result<Dir> {
        let path = path.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io("creating directory", &path, e))?;
        Dir::open(path)
    }

    /// The directory's path, for messages and for callers that hand paths to others.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The subdirectory `name`, or `None` if there is none. A symbolic link there is an error
    /// ([`Error::Symlink`]), not followed.
    pub fn subdir(&self, name: &str) -> Result<Option<Dir>> {
        let c_name = self.c_name(name)?;
        match rustix::fs::openat(&self.fd, &c_name, dir_flags(), Mode::empty()) {
            Ok(fd) => Ok(Some(Dir {
                fd,
                path: self.path.join(name),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.open_dir_error(&c_name, name, e)),
        }
    }

    /// The subdirectory `name`, created with mode 0700 if missing.
    pub fn create_subdir(&self, name: &str) -> Result<Dir> {
        let c_name = self.c_name(name)?;
        match rustix::fs::mkdirat(&self.fd, &c_name, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(self.error("creating directory", name, e)),
        }
        let fd = rustix::fs::openat(&self.fd, &c_name, dir_flags(), Mode::empty())
            .map_err(|e| self.open_dir_error(&c_name, name, e))?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// The stamp of the file `name` without opening it (`None` if it does not exist).
    pub fn stamp(&self, name: &str) -> Result<Option<FileStamp>> {
        let c_name = self.c_name(name)?;
        match rustix::fs::statat(&self.fd, &c_name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileStamp::of(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.error("inspecting", name, e)),
        }
    }

    /// Opens the regular file `name` for reading (`O_NOFOLLOW | O_NONBLOCK`, so neither a link
    /// nor a FIFO can redirect or stall the store), with its status; `None` if it does not
    /// exist.
    fn open_regular(&self, name: &str) -> Result<Option<(File, Stat)>> {
        let c_name = self.c_name(name)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, &c_name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.error("opening", name, e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.error("inspecting", name, e))?;
        let file_type = FileType::from_raw_mode(st.st_mode);
        if file_type != FileType::RegularFile {
            return Err(Error::NotRegularFile {
                path: self.path.join(name),
                found: type_name(file_type),
            });
        }
        Ok(Some((File::from(fd), st)))
    }

    /// The contents of the regular file `name` and the stamp of what was read; `None` if it
    /// does not exist. Anything else than a regular file is an error
    /// ([`Error::NotRegularFile`], [`Error::Symlink`]).
    pub fn read_file(&self, name: &str) -> Result<Option<(Vec<u8>, FileStamp)>> {
        let Some((mut file, st)) = self.open_regular(name)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(st.st_size).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading", self.path.join(name), e))?;
        Ok(Some((bytes, FileStamp::of(&st))))
    }

    /// The size of the regular file `name`, without reading it; `None` if it does not exist.
    pub fn file_len(&self, name: &str) -> Result<Option<u64>> {
        Ok(self
            .open_regular(name)?
            .map(|(_, st)| u64::try_from(st.st_size).unwrap_or(0)))
    }

    /// Replaces the file `name` with `data` atomically, mode 0600: a temp file
    /// `.tmp-<name><digits>` in this directory is created (`O_EXCL | O_NOFOLLOW`), written,
    /// `fdatasync`ed, renamed over `name`, and the directory is fsynced. Readers see the old
    /// contents or the new, never a mix; a crash leaves at most the temp file. Returns the
    /// stamp of the new file.
    ///
    /// Crash point [`crash::ATOMIC_WRITE_BEFORE_RENAME`] is between the sync and the rename.
    pub fn write_file(&self, name: &str, data: &[u8]) -> Result<FileStamp> {
        self.c_name(name)?;
        let (temp_name, fd) = self.create_temp(name)?;
        let written = (|| {
            let mut file = File::from(fd);
            file.write_all(data)?;
            file.sync_data()?;
            // Go chmods after writing; the umask cannot widen 0600, but an odd one could narrow it.
            rustix::fs::fchmod(&file, Mode::RUSR | Mode::WUSR)?;
            Ok::<_, io::Error>(rustix::fs::fstat(&file)?)
        })();
        let st = match written {
            Ok(st) => st,
            Err(e) => {
                self.unlink_quietly(&temp_name);
                return Err(Error::io("writing", self.path.join(&temp_name), e));
            }
        };
        crash::point(crash::ATOMIC_WRITE_BEFORE_RENAME);
        if let Err(e) = rustix::fs::renameat(&self.fd, temp_name.as_str(), &self.fd, name) {
            self.unlink_quietly(&temp_name);
            return Err(self.error("replacing", name, e));
        }
        self.sync()?;
        Ok(FileStamp::of(&st))
    }

    /// Creates a new temp file for `name`, trying other random suffixes on a clash.
    fn create_temp(&self, name: &str) -> Result<(String, OwnedFd)> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut last = Errno::EXIST;
        for _ in 0..100 {
            let temp_name = format!("{TEMP_PREFIX}{name}{}", random_u64(&self.path)?);
            match rustix::fs::openat(&self.fd, temp_name.as_str(), flags, Mode::RUSR | Mode::WUSR) {
                Ok(fd) => return Ok((temp_name, fd)),
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => return Err(self.error("creating", &temp_name, e)),
            }
        }
        Err(self.error("creating a temp file for", name, last))
    }

    /// fsyncs the directory, making renames and removals in it durable.
    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd)
            .map_err(|e| Error::io("syncing directory", &self.path, e.into()))
    }

    /// Removes the entry `name` and, if it is a directory, everything below it, without
    /// following symbolic links (a link is removed, never what it points at) and without
    /// recursion (an explicit stack of open directories). A missing `name` is not an error.
    /// A mount point below it is not entered: [`Error::CrossesMount`].
    pub fn remove_tree(&self, name: &str) -> Result<()> {
        let c_name = self.c_name(name)?;
        let top = match rustix::fs::statat(&self.fd, &c_name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.error("inspecting", name, e)),
        };
        if FileType::from_raw_mode(top.st_mode) != FileType::Directory {
            return match rustix::fs::unlinkat(&self.fd, &c_name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(self.error("removing", name, e)),
            };
        }
        let device = rustix::fs::fstat(&self.fd)
            .map_err(|e| Error::io("inspecting", &self.path, e.into()))?
            .st_dev;
        if top.st_dev != device {
            return Err(Error::CrossesMount {
                path: self.path.join(name),
            });
        }
        // Each frame: an open directory, its entries not yet removed, its name in its parent
        // (the frame below it, or `self` for the first).
        struct Frame {
            fd: OwnedFd,
            path: PathBuf,
            name: CString,
            pending: Vec<CString>,
        }
        let open_frame = |parent: BorrowedFd<'_>, parent_path: &Path, name: CString| {
            let path = parent_path.join(name_path(&name));
            let fd = rustix::fs::openat(parent, &name, dir_flags(), Mode::empty())
                .map_err(|e| Error::io("opening directory", &path, e.into()))?;
            let pending = entry_names(&fd).map_err(|e| Error::io("listing", &path, e))?;
            Ok::<_, Error>(Frame {
                fd,
                path,
                name,
                pending,
            })
        };
        let mut stack = vec![open_frame(self.fd.as_fd(), &self.path, c_name)?];
        while let Some(frame) = stack.last_mut() {
            if let Some(child) = frame.pending.pop() {
                let child_path = frame.path.join(name_path(&child));
                let st = match rustix::fs::statat(&frame.fd, &child, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(Error::io("inspecting", child_path, e.into())),
                };
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    if st.st_dev != device {
                        return Err(Error::CrossesMount { path: child_path });
                    }
                    let (parent, parent_path) = (frame.fd.as_fd(), frame.path.clone());
                    let next = open_frame(parent, &parent_path, child)?;
                    stack.push(next);
                } else {
                    match rustix::fs::unlinkat(&frame.fd, &child, AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => return Err(Error::io("removing", child_path, e.into())),
                    }
                }
            } else if let Some(done) = stack.pop() {
                let parent = stack.last().map_or(self.fd.as_fd(), |f| f.fd.as_fd());
                drop(done.fd);
                match rustix::fs::unlinkat(parent, &done.name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(Error::io("removing directory", done.path, e.into())),
                }
            }
        }
        Ok(())
    }

    /// The names of the directories directly in this directory (not following links), sorted;
    /// names that are not UTF-8 are left out.
    pub fn subdir_names(&self) -> Result<Vec<String>> {
        let names = entry_names(&self.fd).map_err(|e| Error::io("listing", &self.path, e))?;
        let mut dirs: Vec<String> = names
            .into_iter()
            .filter(|name| {
                rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
            })
            .filter_map(|name| name.into_string().ok())
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    /// Removes the temp files (`.tmp-*` regular files) that interrupted atomic writes left in
    /// this directory; returns how many. Call it only while no other writer can be writing
    /// here (under the store's write lock).
    pub fn remove_temp_files(&self) -> Result<usize> {
        let names = entry_names(&self.fd).map_err(|e| Error::io("listing", &self.path, e))?;
        let mut removed = 0;
        for name in names {
            if !name.to_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                continue;
            }
            let is_file = rustix::fs::statat(&self.fd, &name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
            if is_file {
                match rustix::fs::unlinkat(&self.fd, &name, AtFlags::empty()) {
                    Ok(()) => removed += 1,
                    Err(Errno::NOENT) => {}
                    Err(e) => {
                        return Err(Error::io(
                            "removing",
                            self.path.join(name_path(&name)),
                            e.into(),
                        ));
                    }
                }
            }
        }
        Ok(removed)
    }

    /// `name` as a C string, refusing anything that is not one path component.
    fn c_name(&self, name: &str) -> Result<CString> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(self.invalid_name(name));
        }
        CString::new(name).map_err(|_| self.invalid_name(name))
    }

    fn invalid_name(&self, name: &str) -> Error {
        Error::InvalidName {
            dir: self.path.clone(),
            name: name.to_owned(),
        }
    }

    fn error(&self, action: &'static str, name: &str, errno: Errno) -> Error {
        Error::io(action, self.path.join(name), errno.into())
    }

    /// The error of opening directory `name`: `O_DIRECTORY | O_NOFOLLOW` reports a symbolic
    /// link as "not a directory", which hides what happened.
    fn open_dir_error(&self, c_name: &CString, name: &str, errno: Errno) -> Error {
        let is_link = errno == Errno::NOTDIR
            && rustix::fs::statat(&self.fd, c_name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
        if is_link {
            Error::Symlink {
                path: self.path.join(name),
            }
        } else {
            self.error("opening directory", name, errno)
        }
    }

    fn unlink_quietly(&self, name: &str) {
        // The error that brought us here is the one to report.
        let _ = rustix::fs::unlinkat(&self.fd, name, AtFlags::empty());
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The names in the open directory `dir`, without `.` and `..`.
fn entry_names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    // `read_from` reads through a duplicate of the descriptor.
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn name_path(name: &CString) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()))
}

fn type_name(file_type: FileType) -> &'static str {
    match file_type {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// A random number for a temp file name.
fn random_u64(dir: &Path) -> Result<u64> {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(Error::io("drawing a temp file name in", dir, e.into())),
        }
    }
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn scratch() -> (tempfile::TempDir, Dir) {
        let temp = tempfile::tempdir().unwrap();
        let dir = Dir::create(temp.path().join("kind")).unwrap();
        (temp, dir)
    }

    #[test]
    fn atomic_writes_replace_with_mode_0600_and_leave_no_temp() {
        let (_temp, dir) = scratch();
        dir.write_file("images.json", b"old").unwrap();
        let stamp = dir.write_file("images.json", b"new!").unwrap();
        assert_eq!(
            dir.read_file("images.json").unwrap(),
            Some((b"new!".to_vec(), stamp))
        );
        let meta = std::fs::metadata(dir.path().join("images.json")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(dir.stamp("images.json").unwrap(), Some(stamp));
        assert_eq!(dir.stamp("missing").unwrap(), None);
    }

    #[test]
    fn names_must_be_single_components() {
        let (_temp, dir) = scratch();
        for name in ["", ".", "..", "a/b", "/abs", "nul\0"] {
            let err = dir.write_file(name, b"x").unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{name:?}: {err}");
        }
    }

    #[test]
    fn links_and_special_files_are_refused() {
        let (temp, dir) = scratch();
        std::fs::write(temp.path().join("outside"), b"secret").unwrap();
        symlink(temp.path().join("outside"), dir.path().join("link")).unwrap();
        assert!(matches!(
            dir.read_file("link").unwrap_err(),
            Error::Symlink { .. }
        ));
        std::fs::create_dir(temp.path().join("elsewhere")).unwrap();
        symlink(temp.path().join("elsewhere"), dir.path().join("dirlink")).unwrap();
        assert!(matches!(
            dir.subdir("dirlink").unwrap_err(),
            Error::Symlink { .. }
        ));
        assert!(matches!(
            dir.create_subdir("dirlink").unwrap_err(),
            Error::Symlink { .. }
        ));
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = dir.read_file("sub").unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotRegularFile {
                    found: "directory",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(dir.read_file("absent").unwrap(), None);
        assert!(dir.subdir("absent").unwrap().is_none());
    }

    #[test]
    fn remove_tree_removes_links_not_their_targets() {
        let (temp, dir) = scratch();
        let outside = temp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::write(tree.join("a/b/c/f"), b"f").unwrap();
        std::fs::write(tree.join("top"), b"t").unwrap();
        symlink(&outside, tree.join("a/to-outside")).unwrap();
        symlink(outside.join("keep"), tree.join("a/b/file-link")).unwrap();
        dir.remove_tree("tree").unwrap();
        assert!(!tree.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"k");
        // Missing: fine. A plain file: removed.
        dir.remove_tree("tree").unwrap();
        std::fs::write(dir.path().join("plain"), b"p").unwrap();
        dir.remove_tree("plain").unwrap();
        assert!(!dir.path().join("plain").exists());
    }

    #[test]
    fn temp_files_are_swept() {
        let (_temp, dir) = scratch();
        std::fs::write(dir.path().join(".tmp-images.json123"), b"half").unwrap();
        std::fs::create_dir(dir.path().join(".tmp-dir")).unwrap();
        std::fs::write(dir.path().join("images.json"), b"[]").unwrap();
        assert_eq!(dir.remove_temp_files().unwrap(), 1);
        assert!(dir.path().join(".tmp-dir").exists());
        assert!(dir.path().join("images.json").exists());
    }
}
