//! File helpers: atomic replacement, directory creation with Go's modes, big-data file names.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

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

/// fsyncs a directory, making a rename or unlink inside it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Replaces `path` atomically with what `fill` writes: a temp file `.tmp-<name>*` in the same
/// directory, written, fsynced, chmod'ed to `mode`, renamed over `path`, directory fsynced.
/// Readers see the old or the new content, never a mix; a crash leaves at most a stray temp.
pub(crate) fn write_atomic(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{name}"))
        .tempfile_in(dir)
        .map_err(|e| Error::io("create temporary file for", path, e))?;
    {
        let mut out = io::BufWriter::with_capacity(256 << 10, temp.as_file_mut());
        fill(&mut out)?;
        out.flush().map_err(|e| Error::io("write", path, e))?;
    }
    let file = temp.as_file();
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", temp.path(), e))?;
    file.sync_all()
        .map_err(|e| Error::io("fsync", temp.path(), e))?;
    temp.persist(path)
        .map_err(|e| Error::io("rename over", path, e.error))?;
    sync_dir(dir)
}

/// Like [`write_atomic`], copying from a reader; returns the bytes written.
pub(crate) fn write_atomic_from(path: &Path, mode: u32, input: &mut dyn Read) -> Result<u64> {
    let mut written = 0;
    write_atomic(path, mode, |out| {
        written = io::copy(input, out).map_err(|e| Error::io("write", path, e))?;
        Ok(())
    })?;
    Ok(written)
}

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Removes a directory tree, treating "already gone" as success.
pub(crate) fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Go's file names of big-data items have one home, the model crate.
pub use layerstore_model::big_data_file_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layers.json");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, 0o600, |out| {
            out.write_all(b"new")
                .map_err(|e| Error::io("write", "x", e))
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // No temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A failing fill leaves the old content and no temp file.
        let err = write_atomic(&path, 0o600, |_| {
            Err(Error::io("write", "x", io::Error::other("boom")))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
