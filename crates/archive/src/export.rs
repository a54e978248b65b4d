//! A tar stream of a change list over a tree (`Diff` for a layer without tar-split records).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

use crate::changes::{Change, ChangeKind, OpenTree, get_xattr_at};
use crate::error::{Error, Result, show};
use crate::extract::clean;
use crate::idmap::{self, IdMap};
use crate::pipe::{PipeReader, pipe};
use crate::rooted::{self, Root};

const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Xattrs carried in exported tar streams (what Go's `addTarFile` keeps).
fn exported_xattr(name: &[u8]) -> bool {
    name == b"security.capability" || name == b"security.ima" || name.starts_with(b"user.")
}

/// Writes the tar stream of `changes` over `tree` to `out` and returns `out`.
///
/// As Go's `ExportChanges`: changes are sorted by path; a Delete becomes an empty regular file
/// `dir/.wh.name`; anything else is the entry found at that path in `tree` (a path that vanished
/// is skipped, as Go does); directories end in `/`; a directory with the overlay opaque xattr
/// (an overlay upper dir, whose [`overlay_changes`](crate::overlay_changes) list it as deleted)
/// is exported as itself followed by `dir/.wh..wh..opq`; the 2nd+ path of a multiply-linked regular
/// file is a hardlink to the first; xattrs `security.capability`, `security.ima` and `user.*` are
/// kept as PAX `SCHILY.xattr.` records; owners are mapped host → container through `uid_map` /
/// `gid_map`; mtimes are whole seconds; the stream ends with 1024 zero bytes.
pub fn export_to<W: Write>(
    tree: &Path,
    changes: &[Change],
    uid_map: &[IdMap],
    gid_map: &[IdMap],
    out: W,
) -> Result<W> {
    let root = Root::open(tree).map_err(|e| Error::path(tree, "open", e))?;
    export_root(root, tree, changes, uid_map, gid_map, out)
}

/// [`export_to`] of a tree already open (`tree.1` only names it in errors).
pub fn export_to_at<W: Write>(
    tree: OpenTree<'_>,
    changes: &[Change],
    uid_map: &[IdMap],
    gid_map: &[IdMap],
    out: W,
) -> Result<W> {
    let root = Root::from_fd(duplicate(tree)?);
    export_root(root, tree.1, changes, uid_map, gid_map, out)
}

fn duplicate((fd, path): OpenTree<'_>) -> Result<OwnedFd> {
    fd.try_clone_to_owned()
        .map_err(|e| Error::path(path, "duplicate the descriptor of", e))
}

fn export_root<W: Write>(
    root: Root,
    tree: &Path,
    changes: &[Change],
    uid_map: &[IdMap],
    gid_map: &[IdMap],
    out: W,
) -> Result<W> {
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    let mut exporter = Exporter {
        root,
        tree,
        uid_map,
        gid_map,
        builder: tar::Builder::new(out),
        first_paths: HashMap::new(),
    };
    for change in sorted {
        exporter.change(change)?;
    }
    exporter
        .builder
        .into_inner()
        .map_err(|e| Error::path(tree, "write the tar stream", e))
}

/// [`export_to`] on a background thread, as a reader of the tar stream (memory stays bounded:
/// the writer waits while the reader is behind). An error surfaces as the reader's `io::Error`.
pub fn export(
    tree: &Path,
    changes: Vec<Change>,
    uid_map: Vec<IdMap>,
    gid_map: Vec<IdMap>,
) -> Result<ExportReader> {
    // Fail early (and with our error type) when the tree cannot be opened at all.
    let root = Root::open(tree).map_err(|e| Error::path(tree, "open", e))?;
    export_root_in_thread(root, tree.to_path_buf(), changes, uid_map, gid_map)
}

fn export_root_in_thread(
    root: Root,
    tree: PathBuf,
    changes: Vec<Change>,
    uid_map: Vec<IdMap>,
    gid_map: Vec<IdMap>,
) -> Result<ExportReader> {
    let (writer, reader) = pipe(4);
    let thread = std::thread::Builder::new()
        .name("layer-export".into())
        .spawn(move || {
            let mut writer = writer;
            match export_root(root, &tree, &changes, &uid_map, &gid_map, &mut writer) {
                Ok(_) => drop(writer),
                Err(e) => writer.fail(io::Error::other(e)),
            }
        })
        .map_err(|e| Error::path(PathBuf::new(), "spawn the export thread", e))?;
    Ok(ExportReader {
        reader,
        thread: Some(thread),
    })
}

/// [`export`] of a tree already open (`tree.1` only names it in errors).
pub fn export_at(
    tree: OpenTree<'_>,
    changes: Vec<Change>,
    uid_map: Vec<IdMap>,
    gid_map: Vec<IdMap>,
) -> Result<ExportReader> {
    let root = Root::from_fd(duplicate(tree)?);
    export_root_in_thread(root, tree.1.to_path_buf(), changes, uid_map, gid_map)
}

/// The tar stream made by [`export`].
#[derive(Debug)]
pub struct ExportReader {
    reader: PipeReader,
    thread: Option<JoinHandle<()>>,
}

impl Read for ExportReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        if n == 0
            && !buf.is_empty()
            && let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            return Err(io::Error::other("the export thread panicked"));
        }
        Ok(n)
    }
}

struct Exporter<'a, W: Write> {
    root: Root,
    tree: &'a Path,
    uid_map: &'a [IdMap],
    gid_map: &'a [IdMap],
    builder: tar::Builder<W>,
    /// (dev, ino) → first exported name, for hardlinks.
    first_paths: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Exporter<'_, W> {
    fn write_err(&self, e: io::Error) -> Error {
        Error::path(self.tree, "write the tar stream", e)
    }

    fn change(&mut self, change: &Change) -> Result<()> {
        let path = change.path.as_os_str().as_bytes();
        let components = clean(path).ok_or_else(|| Error::Breakout {
            entry: show(path),
            what: "change path",
            target: show(path),
        })?;
        let Some((last, parent)) = components.split_last() else {
            return Ok(()); // the root itself is never exported
        };
        let rel = components.join(&b'/');
        let found = match self.root.open_dir(parent) {
            Ok(dir) => rooted::lstat_at(dir.as_fd(), last)
                .map_err(|e| Error::entry(path, "lstat", e))?
                .map(|st| (dir, st)),
            Err(e) if is_gone(&e) => None,
            Err(e) => return Err(Error::entry(path, "open the parent directory", e)),
        };
        // An overlay upper dir lists an opaque directory as deleted; it is exported as itself
        // followed by its `.wh..wh..opq` marker.
        let opaque = match &found {
            Some((dir, st)) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                get_xattr_at(dir.as_fd(), last, OVERLAY_OPAQUE_XATTR)
                    .map_err(|e| Error::entry(path, "read xattrs", e))?
                    .as_deref()
                    == Some(b"y")
            }
            _ => false,
        };
        if change.kind == ChangeKind::Delete && !opaque {
            let mut name = parent.join(&b'/');
            if !name.is_empty() {
                name.push(b'/');
            }
            name.extend_from_slice(b".wh.");
            name.extend_from_slice(last);
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0);
            header.set_size(0);
            header.set_mtime(now());
            return self.append(header, &name, b"", &[], &mut io::empty());
        }
        // A path that vanished since the change list was made is skipped, as Go does.
        let Some((dir, st)) = found else {
            return Ok(());
        };
        let file_type = FileType::from_raw_mode(st.st_mode);
        let mut header = tar::Header::new_ustar();
        header.set_mode(st.st_mode & 0o7777);
        let uid =
            idmap::to_container(self.uid_map, st.st_uid).ok_or_else(|| Error::UnmappedId {
                entry: show(path),
                kind: "uid",
                id: st.st_uid.into(),
            })?;
        let gid =
            idmap::to_container(self.gid_map, st.st_gid).ok_or_else(|| Error::UnmappedId {
                entry: show(path),
                kind: "gid",
                id: st.st_gid.into(),
            })?;
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        header.set_size(0);
        let xattrs = list_exported_xattrs(dir.as_fd(), last)
            .map_err(|e| Error::entry(path, "read xattrs", e))?;
        let mut name = rel;
        let mut link = Vec::new();
        match file_type {
            FileType::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                let mut marker = name.clone();
                name.push(b'/');
                self.append(header.clone(), &name, b"", &xattrs, &mut io::empty())?;
                if opaque {
                    // As Go's overlay export: perm bits and owner of the dir, zero mtime.
                    marker.extend_from_slice(b"/.wh..wh..opq");
                    let mut header = header;
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(st.st_mode & 0o777);
                    header.set_mtime(0);
                    self.append(header, &marker, b"", &[], &mut io::empty())?;
                }
                return Ok(());
            }
            FileType::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                link = rfs::readlinkat(dir.as_fd(), *last, Vec::new())
                    .map_err(|e| Error::entry(path, "readlink", e))?
                    .into_bytes();
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                header.set_entry_type(match file_type {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if file_type != FileType::Fifo {
                    header
                        .set_device_major(rfs::major(st.st_rdev))
                        .and_then(|()| header.set_device_minor(rfs::minor(st.st_rdev)))
                        .map_err(|e| Error::entry(path, "device number", e))?;
                }
            }
            FileType::RegularFile => {
                let inode = (st.st_dev, st.st_ino);
                if st.st_nlink > 1
                    && let Some(first) = self.first_paths.get(&inode)
                {
                    header.set_entry_type(tar::EntryType::Link);
                    link = first.clone();
                } else {
                    if st.st_nlink > 1 {
                        self.first_paths.insert(inode, name.clone());
                    }
                    header.set_entry_type(tar::EntryType::Regular);
                    let fd = rfs::openat(
                        dir.as_fd(),
                        *last,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| Error::entry(path, "open", e))?;
                    let opened = rfs::fstat(&fd).map_err(|e| Error::entry(path, "fstat", e))?;
                    if (opened.st_dev, opened.st_ino) != inode {
                        return Err(Error::entry(
                            path,
                            "open",
                            io::Error::other("replaced while exporting"),
                        ));
                    }
                    let size = u64::try_from(st.st_size).unwrap_or(0);
                    header.set_size(size);
                    let mut content = Exact {
                        inner: std::fs::File::from(fd),
                        left: size,
                    };
                    return self.append(header, &name, &link, &xattrs, &mut content);
                }
            }
            // Sockets and unknown types cannot be carried by tar (Go skips sockets too).
            _ => return Ok(()),
        }
        self.append(header, &name, &link, &xattrs, &mut io::empty())
    }

    /// Appends one entry, with a PAX header first when the name or link does not fit USTAR or
    /// there are xattrs.
    fn append(
        &mut self,
        mut header: tar::Header,
        name: &[u8],
        link: &[u8],
        xattrs: &[(String, Vec<u8>)],
        content: &mut dyn Read,
    ) -> Result<()> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if !fits_ustar(name) {
            pax.push(("path".into(), name.to_vec()));
        }
        if !fits_ustar(link) {
            pax.push(("linkpath".into(), link.to_vec()));
        }
        for (key, value) in xattrs {
            pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
        }
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), &v[..])))
                .map_err(|e| self.write_err(e))?;
        }
        let old = header.as_old_mut();
        copy_truncated(&mut old.name, name);
        copy_truncated(&mut old.linkname, link);
        header.set_cksum();
        self.builder
            .append(&header, content)
            .map_err(|e| self.write_err(e))
    }
}

fn fits_ustar(s: &[u8]) -> bool {
    s.len() <= 100 && s.is_ascii()
}

fn copy_truncated(field: &mut [u8; 100], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

fn list_exported_xattrs(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    let mut list = vec![0u8; 1024];
    let n = loop {
        match rfs::llistxattr(&path[..], &mut list[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if list.len() < (1 << 20) => {
                list.resize(list.len() * 4, 0)
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for key in list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        if !exported_xattr(key) {
            continue;
        }
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        if let Some(value) = get_xattr_at(dir, name, key)? {
            out.push((key.to_string(), value));
        }
    }
    Ok(out)
}

/// Yields exactly `left` bytes of `inner`, failing if it ends early (a file shrunk while
/// exporting) so the tar stream never gets out of step with its header.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while exporting",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
