//! Reading the files of a local image: a directory ([`DirFiles`], opened beneath the directory's
//! descriptor, never through a symlink) or a tar archive ([`TarFiles`], indexed once, members
//! read in place by position so several can stream at once and nothing is extracted).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{Error, Result};
use crate::source::BlobStream;

/// The files of a local image, by their `/`-separated path inside it.
pub(crate) trait ImageFiles: Send + Sync {
    /// The transport form of the image, for messages.
    fn location(&self) -> &str;
    /// The file at `path` from byte `offset` on, and its total size.
    fn open_from(&self, path: &str, offset: u64) -> Result<(BlobStream, u64)>;

    /// A whole small file (`index.json`, a manifest) of at most `limit` bytes.
    fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let (stream, size) = self.open_from(path, 0)?;
        if size > limit {
            return Err(Error::TooLarge {
                location: self.location().to_owned(),
                what: path.to_owned(),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        stream
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(self.location(), path, e))?;
        Ok(bytes)
    }
}

/// The files beneath a directory, each opened with `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)` from the directory's descriptor: a symlink anywhere on the path is
/// refused, so what is read is inside the directory opened at the start.
pub(crate) struct DirFiles {
    location: String,
    dir: PathBuf,
    fd: OwnedFd,
}

impl DirFiles {
    pub(crate) fn open(location: String, dir: &Path) -> Result<DirFiles> {
        let fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(&location, dir, e.into()))?;
        Ok(DirFiles {
            location,
            dir: dir.to_owned(),
            fd,
        })
    }

    fn open_file(&self, path: &str) -> Result<File> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let fd = rustix::fs::openat2(&self.fd, path, flags, Mode::empty(), resolve)
            .map_err(|e| Error::io(&self.location, self.dir.join(path), e.into()))?;
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| Error::io(&self.location, self.dir.join(path), e))?;
        if !meta.is_file() {
            return Err(Error::io(
                &self.location,
                self.dir.join(path),
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        Ok(file)
    }
}

impl ImageFiles for DirFiles {
    fn location(&self) -> &str {
        &self.location
    }

    fn open_from(&self, path: &str, offset: u64) -> Result<(BlobStream, u64)> {
        let file = self.open_file(path)?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(&self.location, self.dir.join(path), e))?
            .len();
        Ok((
            Box::new(PositionalReader {
                file: Arc::new(file),
                position: offset.min(size),
                end: size,
            }),
            size,
        ))
    }
}

/// A tar archive's regular files, by normalised member name. Symlinks among the members
/// (docker-archive's legacy `ID/layer.tar -> ../DIGEST.tar`) are followed inside the archive,
/// a few hops at most.
pub(crate) struct TarFiles {
    location: String,
    path: PathBuf,
    file: Arc<File>,
    members: HashMap<String, Member>,
}

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Symlink(String),
}

/// More members than any image archive has; the index stays bounded on hostile input.
const MAX_MEMBERS: usize = 1 << 20;
/// Symlink hops followed inside an archive.
const MAX_HOPS: usize = 8;

impl TarFiles {
    pub(crate) fn open(location: String, path: &Path) -> Result<TarFiles> {
        let file = File::open(path).map_err(|e| Error::io(&location, path, e))?;
        let mut archive = tar::Archive::new(&file);
        let mut members = HashMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| Error::io(&location, path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&location, path, e))?;
            if members.len() >= MAX_MEMBERS {
                return Err(Error::invalid(&location, "archive", "too many members"));
            }
            let name = entry.path().map_err(|e| Error::io(&location, path, e))?;
            let Some(name) = normalize(&name.to_string_lossy()) else {
                continue;
            };
            let kind = entry.header().entry_type();
            let member = if kind.is_file() || kind == tar::EntryType::Continuous {
                Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::io(&location, path, e))?
                    .unwrap_or_default();
                let parent = name.rsplit_once('/').map_or("", |(p, _)| p);
                match normalize(&format!("{parent}/{}", target.to_string_lossy())) {
                    Some(t) if !target.is_absolute() => Member::Symlink(t),
                    _ => continue,
                }
            } else {
                continue;
            };
            members.insert(name, member);
        }
        Ok(TarFiles {
            location,
            path: path.to_owned(),
            file: Arc::new(file),
            members,
        })
    }

    fn find(&self, path: &str) -> Result<(u64, u64)> {
        let mut name = normalize(path).unwrap_or_default();
        for _ in 0..=MAX_HOPS {
            match self.members.get(&name) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Symlink(target)) => name = target.clone(),
                None => break,
            }
        }
        Err(Error::NotFound {
            location: self.location.clone(),
            what: format!("{path} in archive {}", self.path.display()),
        })
    }
}

impl ImageFiles for TarFiles {
    fn location(&self) -> &str {
        &self.location
    }

    fn open_from(&self, path: &str, offset: u64) -> Result<(BlobStream, u64)> {
        let (start, size) = self.find(path)?;
        Ok((
            Box::new(PositionalReader {
                file: Arc::clone(&self.file),
                position: start + offset.min(size),
                end: start + size,
            }),
            size,
        ))
    }
}

/// `a/./b//c` as `a/b/c`, without a leading `/` or `./`; `None` for the root or a path that
/// climbs out with `..`.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Reads `position..end` of a shared file with `pread`, so several readers share one
/// descriptor without seeking it.
struct PositionalReader {
    file: Arc<File>,
    position: u64,
    end: u64,
}

impl Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.position);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_never_climb_out() {
        assert_eq!(
            normalize("./blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalize("/a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("id/../x.tar").as_deref(), Some("x.tar"));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("./"), None);
    }

    #[test]
    fn tar_members_are_read_in_place_and_symlinks_followed_inside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "./x.tar", &b"hello"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder
            .append_link(&mut link, "id/layer.tar", "../x.tar")
            .unwrap();
        let mut out = tar::Header::new_gnu();
        out.set_entry_type(tar::EntryType::Symlink);
        out.set_size(0);
        builder
            .append_link(&mut out, "escape", "../../etc/passwd")
            .unwrap();
        builder
            .append_link(&mut out, "absolute", "/etc/passwd")
            .unwrap();
        builder.into_inner().unwrap();

        let files = TarFiles::open("docker-archive:a.tar".into(), &path).unwrap();
        let mut text = String::new();
        files
            .open_from("id/layer.tar", 1)
            .unwrap()
            .0
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ello");
        assert_eq!(files.read_small("x.tar", 10).unwrap(), b"hello");
        assert!(files.read_small("x.tar", 3).is_err());
        assert!(files.find("escape").is_err());
        assert!(files.find("absolute").is_err());
        let err = files.open_from("missing", 0).err().unwrap();
        assert!(err.to_string().contains("missing in archive"), "{err}");
    }

    #[test]
    fn directory_files_are_never_read_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join("blobs/f"), b"inside").unwrap();
        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        let layout = dir.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        std::os::unix::fs::symlink(dir.path().join("blobs"), layout.join("blobs")).unwrap();
        std::os::unix::fs::symlink("../outside", layout.join("index.json")).unwrap();
        let files = DirFiles::open("oci:layout".into(), &layout).unwrap();
        assert!(files.read_small("blobs/f", 100).is_err());
        assert!(files.read_small("index.json", 100).is_err());
        assert!(files.read_small("../outside", 100).is_err());
        let plain = DirFiles::open("oci:dir".into(), dir.path()).unwrap();
        assert_eq!(plain.read_small("blobs/f", 100).unwrap(), b"inside");
    }
}
