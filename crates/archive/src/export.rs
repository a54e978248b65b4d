//! A tar stream of a change list over a tree (`Diff` for a layer without tar-split records).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

use crate::changes::{Change, ChangeKind, OpenTree, get_xattr_at, list_xattrs_at};
use crate::error::{Error, Result, show};
use crate::extract::clean;
use crate::idmap::{self, IdMap};
use crate::pipe::{PipeReader, pipe};
use crate::rooted::{self, Root};
use crate::whiteout::OVERLAY_OPAQUE_XATTR;

/// Xattrs carried in exported tar streams (what Go's `addTarFile` keeps).
fn exported_xattr(name: &[u8]) -> bool {
    name == b"security.capability" || name == b"security.ima" || name.starts_with(b"user.")
}

/// Writes the tar stream of `changes` over `tree` to `out` and returns `out`.
///
/// As Go's `ExportChanges` and overlay `Diff`: changes are sorted by path; anything but a
/// Delete is the entry found at that path in `tree` (a path that vanished is skipped, as Go
/// does); directories end in `/`; a directory with the overlay opaque xattr (an overlay upper
/// dir, whose [`overlay_changes`](crate::overlay_changes) list it as deleted) is exported as
/// itself followed by `dir/.wh..wh..opq` (its permission bits and owner, no time); the 2nd+
/// path of a multiply-linked regular file is a hardlink to the first; xattrs
/// `security.capability`, `security.ima` and `user.*` are kept as PAX `SCHILY.xattr.` records;
/// owners are mapped host → container through `uid_map` / `gid_map`.
///
/// A Delete becomes an empty regular file `dir/.wh.name` of mode 0. Where `tree` holds the
/// overlay whiteout (a 0:0 character device), its owner and mtime are used, as Go does; where
/// the name is simply gone (naive drivers: vfs, btrfs) Go stamps the current time, so two
/// diffs of one layer differ, and we use the mtime of the directory that held the name (it
/// changed when the name went and does not change later), owner 0:0: the same layer always
/// gives the same bytes.
///
/// Headers are laid out byte for byte as Go 1.19's `archive/tar` writes them for
/// containers/storage: the mode carries the file-type bits (`0040755`, Go's
/// `fillGo18FileTypeBits`), user and group names are the host's (`/etc/passwd`,
/// `/etc/group`) for the file's host IDs, mtimes are whole seconds, USTAR with the
/// prefix field for long names, a PAX header `dir/PaxHeaders.0/name` with sorted records
/// when USTAR cannot carry the entry (xattrs, longer names, non-ASCII names), checksums and
/// device fields as Go formats them, and two zero blocks at the end. So an overlay layer
/// changed through a mount gives the Go tool's diff byte for byte.
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
        out: GoTarWriter { out },
        first_paths: HashMap::new(),
        names: HostNames::default(),
    };
    for change in sorted {
        exporter.change(change)?;
    }
    exporter
        .out
        .finish()
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
    out: GoTarWriter<W>,
    /// (dev, ino) → first exported name, for hardlinks.
    first_paths: HashMap<(u64, u64), Vec<u8>>,
    names: HostNames,
}

/// The file-type bits Go's `archive.FileInfoHeader` adds to a header's mode
/// (`fillGo18FileTypeBits`): `0040755` for a directory, not `0000755`.
fn go_type_bits(file_type: FileType) -> u32 {
    match file_type {
        FileType::Directory => 0o040000,
        FileType::RegularFile => 0o100000,
        FileType::Symlink => 0o120000,
        FileType::BlockDevice => 0o060000,
        FileType::CharacterDevice => 0o020000,
        FileType::Fifo => 0o010000,
        FileType::Socket => 0o140000,
        _ => 0,
    }
}

impl<W: Write> Exporter<'_, W> {
    fn write_err(&self, e: io::Error) -> Error {
        Error::path(self.tree, "write the tar stream", e)
    }

    /// Owner of `st` as the container sees it, and the host's names for it (Go's
    /// `tar.FileInfoHeader` looks the names up on the host, before the IDs are mapped).
    fn owner(&mut self, path: &[u8], st: &rfs::Stat) -> Result<(u64, u64, String, String)> {
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
        let (uname, gname) = self.names.of(st.st_uid, st.st_gid);
        Ok((uid.into(), gid.into(), uname, gname))
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
        let parent_dir = match self.root.open_dir(parent) {
            Ok(dir) => Some(dir),
            Err(e) if is_gone(&e) => None,
            Err(e) => return Err(Error::entry(path, "open the parent directory", e)),
        };
        let found = match &parent_dir {
            Some(dir) => rooted::lstat_at(dir.as_fd(), last)
                .map_err(|e| Error::entry(path, "lstat", e))?
                .map(|st| (dir, st)),
            None => None,
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
            let mut header = GoHeader::new(name, b'0', 0);
            match &found {
                // Overlay: the whiteout is a 0:0 device; as Go's converter, its owner and
                // times, mode 0.
                Some((_, st)) => {
                    let (uid, gid, uname, gname) = self.owner(path, st)?;
                    (header.uid, header.gid, header.uname, header.gname) = (uid, gid, uname, gname);
                    header.mtime = st.st_mtime;
                }
                // Naive: nothing is left to take a time from. Go stamps the current time,
                // which makes every diff different; the containing directory's mtime is
                // what changed when the name went, and stays put.
                None => {
                    header.mtime = match &parent_dir {
                        Some(dir) => rfs::fstat(dir).map_or(0, |st| st.st_mtime),
                        None => 0,
                    };
                }
            }
            return self
                .out
                .entry(&header, &mut io::empty())
                .map_err(|e| self.write_err(e));
        }
        // A path that vanished since the change list was made is skipped, as Go does.
        let Some((dir, st)) = found else {
            return Ok(());
        };
        let file_type = FileType::from_raw_mode(st.st_mode);
        let (uid, gid, uname, gname) = self.owner(path, &st)?;
        let mut header = GoHeader::new(rel, b'0', (st.st_mode & 0o7777) | go_type_bits(file_type));
        (header.uid, header.gid, header.uname, header.gname) = (uid, gid, uname, gname);
        header.mtime = st.st_mtime;
        header.xattrs = list_xattrs_at(dir.as_fd(), last, exported_xattr)
            .map_err(|e| Error::entry(path, "read xattrs", e))?;
        match file_type {
            FileType::Directory => {
                header.typeflag = b'5';
                let mut marker = header.name.clone();
                header.name.push(b'/');
                self.out
                    .entry(&header, &mut io::empty())
                    .map_err(|e| self.write_err(e))?;
                if opaque {
                    // As Go's overlay export: perm bits and owner of the dir, no mtime.
                    marker.extend_from_slice(b"/.wh..wh..opq");
                    let mut wo = GoHeader::new(marker, b'0', st.st_mode & 0o777);
                    (wo.uid, wo.gid) = (header.uid, header.gid);
                    (wo.uname, wo.gname) = (header.uname.clone(), header.gname.clone());
                    self.out
                        .entry(&wo, &mut io::empty())
                        .map_err(|e| self.write_err(e))?;
                }
                return Ok(());
            }
            FileType::Symlink => {
                header.typeflag = b'2';
                header.link = rfs::readlinkat(dir.as_fd(), *last, Vec::new())
                    .map_err(|e| Error::entry(path, "readlink", e))?
                    .into_bytes();
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                header.typeflag = match file_type {
                    FileType::CharacterDevice => b'3',
                    FileType::BlockDevice => b'4',
                    _ => b'6',
                };
                if file_type != FileType::Fifo {
                    header.devmajor = rfs::major(st.st_rdev);
                    header.devminor = rfs::minor(st.st_rdev);
                }
            }
            FileType::RegularFile => {
                let inode = (st.st_dev, st.st_ino);
                if st.st_nlink > 1
                    && let Some(first) = self.first_paths.get(&inode)
                {
                    header.typeflag = b'1';
                    header.link = first.clone();
                } else {
                    if st.st_nlink > 1 {
                        self.first_paths.insert(inode, header.name.clone());
                    }
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
                    header.size = u64::try_from(st.st_size).unwrap_or(0);
                    let mut content = Exact {
                        inner: std::fs::File::from(fd),
                        left: header.size,
                    };
                    return self
                        .out
                        .entry(&header, &mut content)
                        .map_err(|e| self.write_err(e));
                }
            }
            // Sockets and unknown types cannot be carried by tar (Go skips sockets too).
            _ => return Ok(()),
        }
        self.out
            .entry(&header, &mut io::empty())
            .map_err(|e| self.write_err(e))
    }
}

/// One entry as Go's `archive/tar` writer lays it out.
#[derive(Debug, Clone)]
struct GoHeader {
    name: Vec<u8>,
    link: Vec<u8>,
    typeflag: u8,
    /// Permission bits and, as Go writes them, the file-type bits.
    mode: u32,
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
    size: u64,
    /// Whole seconds; 0 is written for times before 1970 or past the octal field.
    mtime: i64,
    devmajor: u32,
    devminor: u32,
    /// Carried as PAX `SCHILY.xattr.` records.
    xattrs: Vec<(String, Vec<u8>)>,
}

impl GoHeader {
    fn new(name: Vec<u8>, typeflag: u8, mode: u32) -> Self {
        GoHeader {
            name,
            link: Vec::new(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            uname: String::new(),
            gname: String::new(),
            size: 0,
            mtime: 0,
            devmajor: 0,
            devminor: 0,
            xattrs: Vec::new(),
        }
    }
}

/// Go's `splitUSTARPath`: a name of more than 100 bytes split at a `/` into a prefix of at
/// most 155 bytes and a name of at most 100.
fn split_ustar_path(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut length = name.len();
    if length <= 100 || !name.is_ascii() {
        return None;
    } else if length > 156 {
        length = 156;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&b| b == b'/')?;
    let suffix = name.len() - i - 1;
    if i == 0 || suffix > 100 || suffix == 0 || i > 155 {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// Whether `value` fits Go's octal field of `width` bytes (`width - 1` digits and a NUL).
fn fits_octal(width: usize, value: i64) -> bool {
    let digits = (width - 1) as u32;
    value >= 0 && (digits >= 21 || value < 8i64.pow(digits))
}

/// Go's `formatOctal`: zero-padded digits and a NUL; a value that does not fit is written as 0.
fn put_octal(field: &mut [u8], value: i64) {
    let value = if fits_octal(field.len(), value) {
        value
    } else {
        0
    };
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[digits.len()] = 0;
}

/// Go's `formatString` (PAX main headers keep only the ASCII bytes that fit).
fn put_string(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    if value.len() > field.len() && field[field.len() - 1] == b'/' {
        // As Go: no trailing slash left in a truncated name.
        let kept = value[..field.len() - 1]
            .iter()
            .rposition(|&b| b != b'/')
            .map_or(0, |i| i + 1);
        field[kept] = 0;
    }
}

/// One PAX record, `"<len> <key>=<value>\n"`.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Writes tar entries byte for byte as Go's `archive/tar` `Writer` does for headers whose
/// format is left to it (the containers/storage exports): USTAR when the entry fits (long
/// names split into prefix and name), otherwise a PAX extended header `dir/PaxHeaders.0/base`
/// with sorted records; checksums as 6 digits, NUL, space; device fields of every entry
/// written as octal zeros; two zero blocks at the end.
struct GoTarWriter<W: Write> {
    out: W,
}

impl<W: Write> GoTarWriter<W> {
    fn block(&mut self, mut block: [u8; 512], pax: bool) -> io::Result<()> {
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        let _ = pax; // PAX and USTAR headers carry the same magic in Go
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        put_octal(&mut block[148..155], i64::from(sum));
        block[155] = b' ';
        self.out.write_all(&block)
    }

    fn padding(&mut self, len: u64) -> io::Result<()> {
        let pad = (512 - len % 512) % 512;
        self.out.write_all(&[0u8; 512][..pad as usize])
    }

    fn entry(&mut self, h: &GoHeader, content: &mut dyn Read) -> io::Result<()> {
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        let mut ustar = h.xattrs.is_empty();
        let split = split_ustar_path(&h.name);
        if h.name.len() > 100 || !h.name.is_ascii() {
            records.push(("path".into(), h.name.clone()));
            ustar &= split.is_some();
        }
        if h.link.len() > 100 || !h.link.is_ascii() {
            records.push(("linkpath".into(), h.link.clone()));
            ustar = false;
        }
        for (key, value, width) in [("uname", &h.uname, 32), ("gname", &h.gname, 32)] {
            if value.len() > width || !value.is_ascii() {
                records.push((key.into(), value.as_bytes().to_vec()));
                ustar = false;
            }
        }
        for (key, value, width) in [("uid", h.uid, 8), ("gid", h.gid, 8), ("size", h.size, 12)] {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            if !fits_octal(width, value) {
                records.push((key.into(), value.to_string().into_bytes()));
                ustar = false;
            }
        }
        for (key, value) in &h.xattrs {
            records.push((format!("SCHILY.xattr.{key}"), value.clone()));
        }
        let mut block = [0u8; 512];
        let (name, prefix): (&[u8], &[u8]) = match split {
            Some((prefix, name)) if ustar => (name, prefix),
            _ => (&h.name, b""),
        };
        if !ustar {
            records.sort();
            let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            // Go names the extended header `dir/PaxHeaders.0/base`, cleaned.
            // (Go's `path.Split`: a directory's `d/` gives `d/PaxHeaders.0`.)
            let (dir, base) = match h.name.iter().rposition(|&b| b == b'/') {
                Some(i) => (&h.name[..=i], &h.name[i + 1..]),
                None => (&b""[..], &h.name[..]),
            };
            let mut pax_name = dir.to_vec();
            pax_name.extend_from_slice(b"PaxHeaders.0");
            if !base.is_empty() {
                pax_name.push(b'/');
                pax_name.extend_from_slice(base);
            }
            pax_name.retain(u8::is_ascii);
            pax_name.truncate(100);
            while pax_name.last() == Some(&b'/') {
                pax_name.pop();
            }
            let mut pax = [0u8; 512];
            put_string(&mut pax[..100], &pax_name);
            put_octal(&mut pax[100..108], 0);
            put_octal(&mut pax[108..116], 0);
            put_octal(&mut pax[116..124], 0);
            put_octal(&mut pax[124..136], data.len() as i64);
            put_octal(&mut pax[136..148], 0);
            pax[156] = b'x';
            self.block(pax, true)?;
            self.out.write_all(&data)?;
            self.padding(data.len() as u64)?;
        }
        let ascii = |s: &[u8]| -> Vec<u8> { s.iter().copied().filter(u8::is_ascii).collect() };
        let (name, link) = if ustar {
            (name.to_vec(), h.link.clone())
        } else {
            (ascii(name), ascii(&h.link))
        };
        put_string(&mut block[..100], &name);
        put_octal(&mut block[100..108], i64::from(h.mode));
        put_octal(&mut block[108..116], i64::try_from(h.uid).unwrap_or(-1));
        put_octal(&mut block[116..124], i64::try_from(h.gid).unwrap_or(-1));
        put_octal(&mut block[124..136], i64::try_from(h.size).unwrap_or(-1));
        put_octal(&mut block[136..148], h.mtime);
        block[156] = h.typeflag;
        put_string(&mut block[157..257], &link);
        put_string(&mut block[265..297], &ascii(h.uname.as_bytes()));
        put_string(&mut block[297..329], &ascii(h.gname.as_bytes()));
        put_octal(&mut block[329..337], i64::from(h.devmajor));
        put_octal(&mut block[337..345], i64::from(h.devminor));
        put_string(&mut block[345..500], prefix);
        self.block(block, !ustar)?;
        if h.size > 0 {
            let copied = io::copy(&mut content.take(h.size), &mut self.out)?;
            if copied != h.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while exporting",
                ));
            }
            self.padding(h.size)?;
        }
        Ok(())
    }

    /// Two zero blocks end the archive, as Go's `Writer.Close` writes them.
    fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        Ok(self.out)
    }
}

/// User and group names of host IDs from the host's `/etc/passwd` and `/etc/group`, as Go's
/// `archive/tar` looks them up (an ID without a name gets none); read once per export.
#[derive(Debug, Default)]
struct HostNames {
    users: Option<HashMap<u32, String>>,
    groups: Option<HashMap<u32, String>>,
}

impl HostNames {
    fn read(path: &str) -> HashMap<u32, String> {
        let mut names = HashMap::new();
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            let mut fields = line.split(':');
            if let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next())
                && let Ok(id) = id.parse::<u32>()
            {
                // The first line naming an ID wins, as getpwuid's does.
                names.entry(id).or_insert_with(|| name.to_string());
            }
        }
        names
    }

    fn of(&mut self, uid: u32, gid: u32) -> (String, String) {
        let users = self.users.get_or_insert_with(|| Self::read("/etc/passwd"));
        let uname = users.get(&uid).cloned().unwrap_or_default();
        let groups = self.groups.get_or_insert_with(|| Self::read("/etc/group"));
        let gname = groups.get(&gid).cloned().unwrap_or_default();
        (uname, gname)
    }
}

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
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
