//! Integration tests of layerstore-containers: the files Go wrote (golden), the Go tool on the
//! same store (both ways, and its locks), Go's rules for containers, and properties that hold
//! whatever is done. One test binary, one module per concern.

mod go_interop;
mod golden;
mod properties;
mod semantics;

use std::path::PathBuf;

use layerstore_containers::{ContainerStore, NewContainer};

/// A scratch graph root and run root with the container store in `vfs-containers` of each.
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
        self.temp.path().join("graph/vfs-containers")
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.temp.path().join("run/vfs-containers")
    }

    pub(crate) fn json(&self) -> PathBuf {
        self.dir().join("containers.json")
    }

    pub(crate) fn open(&self) -> ContainerStore {
        ContainerStore::open(self.dir(), self.run_dir()).unwrap()
    }
}

/// A new container on layer `layer` with `names`.
pub(crate) fn on_layer(layer: &str, names: &[&str]) -> NewContainer {
    NewContainer {
        names: names.iter().map(|n| n.to_string()).collect(),
        layer_id: layer.to_owned(),
        ..NewContainer::default()
    }
}
