//! Integration tests of layerstore-recordstore: sessions and reloading, hostile files, crash
//! safety of saves, and processes sharing a store. One test binary, one module per concern.

mod child;
mod crash;
mod hostile;
mod processes;
mod sessions;

use std::path::{Path, PathBuf};

use layerstore_model::Image;
use layerstore_recordstore::{Layout, RecordStore};

/// A scratch directory with an image record store in `<tmp>/vfs-images`.
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

    pub(crate) fn lock(&self) -> PathBuf {
        self.dir().join("images.lock")
    }

    pub(crate) fn open(&self) -> RecordStore<Image> {
        RecordStore::open(layout(&self.dir())).unwrap()
    }
}

pub(crate) fn layout(dir: &Path) -> Layout {
    Layout::new(dir, "images.lock", "images.json")
}

/// An image record with `names`.
pub(crate) fn image(id: &str, names: &[&str]) -> Image {
    let mut image = Image::new(id);
    image.names = names.iter().map(|n| n.to_string()).collect();
    image
}

/// The IDs of the usable records, in order.
pub(crate) fn ids(store: &RecordStore<Image>) -> Vec<String> {
    store.records().unwrap().into_iter().map(|i| i.id).collect()
}
