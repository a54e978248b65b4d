//! Integration tests of layerstore-images: the files Go wrote (golden), the Go tool on the
//! same store (both ways, and its locks), Go's rules for images, and properties that hold
//! whatever is done. One test binary, one module per concern.

mod go_interop;
mod golden;
mod properties;
mod semantics;

use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_images::ImageStore;
use layerstore_testsupport::go_fixtures;

/// A scratch graph root with the image store in `<graph>/vfs-images`.
pub(crate) struct Scratch {
    pub(crate) temp: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            temp: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.temp.path().join("vfs-images")
    }

    pub(crate) fn json(&self) -> PathBuf {
        self.dir().join("images.json")
    }

    pub(crate) fn open(&self) -> ImageStore {
        ImageStore::open(self.dir()).unwrap()
    }
}

/// The sha256 a manifest digester gives, as the Go tool's own.
pub(crate) fn sha256(data: &[u8]) -> Result<layerstore_model::Digest, String> {
    Ok(layerstore_recordstore::canonical_digest(data))
}

/// Unpacks the record directories of the Go-written image store fixture
/// (`store-images-vfs.tar.gz`) into `into`; returns its graph root. Only `vfs-images` and
/// `vfs-containers` are taken (the layers hold device nodes only root can make).
pub(crate) fn unpack_go_image_store(into: &Path) -> PathBuf {
    let status = Command::new("tar")
        .args(["--numeric-owner", "-xzpf"])
        .arg(go_fixtures().join("store-images-vfs.tar.gz"))
        .arg("-C")
        .arg(into)
        .args([
            "root-images-vfs/vfs-images",
            "root-images-vfs/vfs-containers",
        ])
        .status()
        .expect("run tar");
    assert!(status.success(), "tar: {status:?}");
    into.join("root-images-vfs")
}
