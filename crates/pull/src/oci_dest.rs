//! Push destinations for OCI image layouts: [`OciLayoutDestination`] (a directory, shared with
//! what is already in it) and [`OciArchiveDestination`] (a tar file, written whole or not at
//! all). `index.json` gets one entry for the pushed image, replacing an entry with the same
//! `org.opencontainers.image.ref.name`, as containers/image's OCI destination does.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, Mode, OFlags};
use serde_json::{Value, json};

use crate::dest::{ImageDestination, copy_verified};
use crate::error::{Error, Result};
use crate::manifest::{Blob, RawManifest};
use crate::oci::REF_NAME_ANNOTATION;
use crate::source::BlobStream;

const LAYOUT_FILE: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// `index.json` with `descriptor` added, replacing the entry of the same ref name
/// (`addManifest`).
fn updated_index(location: &str, existing: Option<&[u8]>, descriptor: Value) -> Result<Vec<u8>> {
    let mut index: Value = match existing {
        Some(bytes) => {
            serde_json::from_slice(bytes).map_err(|e| Error::invalid(location, "index.json", e))?
        }
        None => json!({"schemaVersion": 2, "manifests": []}),
    };
    let manifests = index
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::invalid(location, "index.json", "it has no manifests list"))?;
    let name = descriptor["annotations"][REF_NAME_ANNOTATION].clone();
    match manifests
        .iter_mut()
        .find(|m| m["annotations"][REF_NAME_ANNOTATION] == name)
    {
        Some(slot) => *slot = descriptor,
        None => manifests.push(descriptor),
    }
    serde_json::to_vec(&index).map_err(|e| Error::invalid(location, "index.json", e))
}

fn descriptor(manifest: &RawManifest, reference: Option<&str>) -> Value {
    let mut d = json!({
        "mediaType": manifest.media_type,
        "digest": manifest.digest.to_string(),
        "size": manifest.bytes.len(),
    });
    if let Some(r) = reference {
        d["annotations"] = json!({ REF_NAME_ANNOTATION: r });
    }
    d
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An OCI layout directory, created if missing. Blobs are written beside their final name and
/// renamed into place, all through the directory's descriptors without following symlinks.
pub struct OciLayoutDestination {
    location: String,
    dir: PathBuf,
    root: OwnedFd,
    blobs: OwnedFd,
    reference: Option<String>,
    top: Mutex<Option<RawManifest>>,
}

impl OciLayoutDestination {
    /// Opens (creating it if needed) the layout at `dir`; the pushed image gets the ref name
    /// `reference`, if any.
    pub fn create(dir: &Path, reference: Option<&str>) -> Result<OciLayoutDestination> {
        let location = match reference {
            Some(r) => format!("oci:{}:{r}", dir.display()),
            None => format!("oci:{}", dir.display()),
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(&location, dir, e))?;
        let io = |path: &Path, e: rustix::io::Errno| Error::io(&location, path, e.into());
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root = rustix::fs::open(dir, dir_flags, Mode::empty()).map_err(|e| io(dir, e))?;
        let mut blobs = root.try_clone().map_err(|e| Error::io(&location, dir, e))?;
        for part in ["blobs", "sha256"] {
            match rustix::fs::mkdirat(&blobs, part, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io(&dir.join(part), e)),
            }
            blobs = rustix::fs::openat(&blobs, part, dir_flags | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| io(&dir.join(part), e))?;
        }
        Ok(OciLayoutDestination {
            location,
            dir: dir.to_owned(),
            root,
            blobs,
            reference: reference.map(str::to_owned),
            top: Mutex::new(None),
        })
    }

    /// Writes `name` in `dir_fd` whole: a new file beside it, renamed over it.
    fn write_file(
        &self,
        dir_fd: &OwnedFd,
        name: &str,
        write: impl FnOnce(&mut File) -> Result<()>,
    ) -> Result<()> {
        let temp = format!(".tmp-{name}-{}", unique_suffix());
        let path = self.dir.join(&temp);
        let fd = rustix::fs::openat(
            dir_fd,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| Error::io(&self.location, &path, e.into()))?;
        let mut file = File::from(fd);
        let written = write(&mut file).and_then(|()| {
            rustix::fs::renameat(dir_fd, temp.as_str(), dir_fd, name)
                .map_err(|e| Error::io(&self.location, self.dir.join(name), e.into()))
        });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(dir_fd, temp.as_str(), AtFlags::empty());
        }
        written
    }

    fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match rustix::fs::openat(
            &self.root,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let mut bytes = Vec::new();
                File::from(fd)
                    .take(crate::manifest::MAX_MANIFEST_SIZE + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::io(&self.location, self.dir.join(name), e))?;
                Ok(Some(bytes))
            }
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io(&self.location, self.dir.join(name), e.into())),
        }
    }
}

impl ImageDestination for OciLayoutDestination {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn has_blob(&self, blob: &Blob) -> Result<bool> {
        match rustix::fs::statat(&self.blobs, blob.digest.hex(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(rustix::fs::FileType::from_raw_mode(st.st_mode).is_file()
                && st.st_size as u64 == blob.size),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(
                &self.location,
                format!("blob {}", blob.digest),
                e.into(),
            )),
        }
    }

    fn put_blob(&self, blob: &Blob, stream: BlobStream) -> Result<()> {
        self.write_file(&self.blobs, blob.digest.hex(), |file| {
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
            copy_verified(&self.location, blob, stream, &mut out)?;
            out.flush()
                .map_err(|e| Error::io(&self.location, format!("blob {}", blob.digest), e))
        })
    }

    fn put_manifest(&self, manifest: &RawManifest, top: bool) -> Result<()> {
        let blob = Blob {
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as u64,
            media_type: manifest.media_type.clone(),
        };
        if !self.has_blob(&blob)? {
            self.put_blob(
                &blob,
                Box::new(std::io::Cursor::new(manifest.bytes.clone())),
            )?;
        }
        if top {
            *self.top.lock().expect("not poisoned") = Some(manifest.clone());
        }
        Ok(())
    }

    fn commit(&self) -> Result<()> {
        let top = self
            .top
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| Error::invalid(&self.location, "push", "no manifest was stored"))?;
        if self.read_file("oci-layout")?.is_none() {
            self.write_file(&self.root, "oci-layout", |f| {
                f.write_all(LAYOUT_FILE.as_bytes())
                    .map_err(|e| Error::io(&self.location, self.dir.join("oci-layout"), e))
            })?;
        }
        let existing = self.read_file("index.json")?;
        let index = updated_index(
            &self.location,
            existing.as_deref(),
            descriptor(&top, self.reference.as_deref()),
        )?;
        self.write_file(&self.root, "index.json", |f| {
            f.write_all(&index)
                .map_err(|e| Error::io(&self.location, self.dir.join("index.json"), e))
        })
    }
}

/// An OCI archive: a tar file holding a layout, written to a new file beside the target and
/// renamed over it by [`ImageDestination::commit`]; dropped before that, it leaves nothing.
pub struct OciArchiveDestination {
    location: String,
    target: PathBuf,
    temp: PathBuf,
    reference: Option<String>,
    state: Mutex<ArchiveState>,
}

struct ArchiveState {
    builder: Option<tar::Builder<std::io::BufWriter<File>>>,
    written: HashSet<String>,
    top: Option<RawManifest>,
    failed: bool,
}

impl OciArchiveDestination {
    /// Starts an archive that will be `file`; the pushed image gets the ref name `reference`.
    pub fn create(file: &Path, reference: Option<&str>) -> Result<OciArchiveDestination> {
        let location = match reference {
            Some(r) => format!("oci-archive:{}:{r}", file.display()),
            None => format!("oci-archive:{}", file.display()),
        };
        let name = file
            .file_name()
            .ok_or_else(|| Error::invalid(&location, "path", "it names no file"))?;
        let temp = file.with_file_name(format!(
            ".tmp-{}-{}",
            name.to_string_lossy(),
            unique_suffix()
        ));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::io(&location, &temp, e))?;
        let mut builder = tar::Builder::new(std::io::BufWriter::with_capacity(256 * 1024, out));
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            header.set_mtime(0);
            builder
                .append_data(&mut header, dir, std::io::empty())
                .map_err(|e| Error::io(&location, &temp, e))?;
        }
        Ok(OciArchiveDestination {
            location,
            target: file.to_owned(),
            temp,
            reference: reference.map(str::to_owned),
            state: Mutex::new(ArchiveState {
                builder: Some(builder),
                written: HashSet::new(),
                top: None,
                failed: false,
            }),
        })
    }

    fn append(
        &self,
        state: &mut ArchiveState,
        name: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        let builder = state.builder.as_mut().ok_or_else(|| {
            Error::invalid(&self.location, "push", "the archive is already finished")
        })?;
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_mtime(0);
        let result = builder.append_data(&mut header, name, data);
        if result.is_err() {
            // A member cut short cannot be taken back: the archive is abandoned.
            state.failed = true;
        }
        result.map_err(|e| match Error::from_io(&e) {
            Some(_) => *e
                .into_inner()
                .expect("checked")
                .downcast::<Error>()
                .expect("checked"),
            None => Error::io(&self.location, &self.temp, e),
        })
    }
}

impl ImageDestination for OciArchiveDestination {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn has_blob(&self, blob: &Blob) -> Result<bool> {
        Ok(self
            .state
            .lock()
            .expect("not poisoned")
            .written
            .contains(blob.digest.hex()))
    }

    fn put_blob(&self, blob: &Blob, stream: BlobStream) -> Result<()> {
        let mut state = self.state.lock().expect("not poisoned");
        if state.written.contains(blob.digest.hex()) {
            return Ok(());
        }
        let mut reader =
            crate::source::VerifyingReader::new(stream, blob.clone(), self.location.clone());
        let name = format!("blobs/sha256/{}", blob.digest.hex());
        self.append(&mut state, &name, blob.size, &mut reader)?;
        reader.verify_to_end()?;
        state.written.insert(blob.digest.hex().to_owned());
        Ok(())
    }

    fn put_manifest(&self, manifest: &RawManifest, top: bool) -> Result<()> {
        let blob = Blob {
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as u64,
            media_type: manifest.media_type.clone(),
        };
        self.put_blob(
            &blob,
            Box::new(std::io::Cursor::new(manifest.bytes.clone())),
        )?;
        if top {
            self.state.lock().expect("not poisoned").top = Some(manifest.clone());
        }
        Ok(())
    }

    fn commit(&self) -> Result<()> {
        let mut state = self.state.lock().expect("not poisoned");
        if state.failed {
            return Err(Error::invalid(
                &self.location,
                "push",
                "a blob failed; the archive is incomplete",
            ));
        }
        let top = state
            .top
            .clone()
            .ok_or_else(|| Error::invalid(&self.location, "push", "no manifest was stored"))?;
        let index = updated_index(
            &self.location,
            None,
            descriptor(&top, self.reference.as_deref()),
        )?;
        self.append(
            &mut state,
            "oci-layout",
            LAYOUT_FILE.len() as u64,
            &mut LAYOUT_FILE.as_bytes(),
        )?;
        self.append(
            &mut state,
            "index.json",
            index.len() as u64,
            &mut index.as_slice(),
        )?;
        let builder = state.builder.take().expect("appended above");
        let io = |e| Error::io(&self.location, &self.temp, e);
        let file = builder
            .into_inner()
            .map_err(io)?
            .into_inner()
            .map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| Error::io(&self.location, &self.target, e))
    }
}

impl Drop for OciArchiveDestination {
    fn drop(&mut self) {
        if self
            .state
            .get_mut()
            .map(|s| s.builder.is_some())
            .unwrap_or(true)
        {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_with_the_same_ref_name_are_replaced() {
        let m = |text: &str| RawManifest::new("x", text.as_bytes().to_vec()).unwrap();
        let a = m(r#"{"schemaVersion":2,"config":{}}"#);
        let b = m(r#"{"schemaVersion":2,"config":{},"layers":[]}"#);
        let first = updated_index("x", None, descriptor(&a, Some("v1"))).unwrap();
        let second = updated_index("x", Some(&first), descriptor(&b, Some("v2"))).unwrap();
        let third = updated_index("x", Some(&second), descriptor(&b, Some("v1"))).unwrap();
        let index: Value = serde_json::from_slice(&third).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[0]["digest"], b.digest.to_string());
        assert_eq!(manifests[0]["annotations"][REF_NAME_ANNOTATION], "v1");
        assert!(updated_index("x", Some(b"{}"), descriptor(&a, None)).is_err());
    }
}
