//! Additional layer stores (Go's `AdditionalLayerStoreDriver`): read-only trees of layers
//! that a lazy-pulling filesystem (stargz-store, …) serves, which a store adopts instead of
//! pulling.
//!
//! Layout of one store, as containers/storage reads it:
//!
//! ```text
//! <store>/[<base64(image reference)>/]<layer digest>/   one layer; the reference level only
//!                                                      when the store is given as `<path>:ref`
//!   diff/      the layer's files (read-only)
//!   info       the layer's record, JSON as in layers.json (one object)
//!   blob       the layer's compressed blob
//!   use        created when a store adopts the layer (the filesystem keeps it then)
//! ```

use std::path::{Path, PathBuf};

use data_encoding::BASE64;

use crate::{Error, Result};

/// One configured additional layer store (`additionallayerstore=<path>[:ref]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalLayerStore {
    /// The store's root.
    pub path: PathBuf,
    /// Whether layers sit under a directory named by the base64 of the image reference.
    pub with_reference: bool,
}

impl AdditionalLayerStore {
    /// Parses `<path>` or `<path>:ref`, as Go's option does.
    pub fn parse(spec: &str) -> Self {
        match spec.strip_suffix(":ref") {
            Some(path) => AdditionalLayerStore {
                path: PathBuf::from(path),
                with_reference: true,
            },
            None => AdditionalLayerStore {
                path: PathBuf::from(spec),
                with_reference: false,
            },
        }
    }

    /// The layer with blob digest `digest` (`sha256:…`) of image `image_ref`, when the store
    /// serves one (its `diff/`, `info` and `blob` all exist).
    pub fn lookup(&self, digest: &str, image_ref: &str) -> Option<AdditionalLayer> {
        // A digest names one directory level: nothing that could climb out of the store.
        let valid = digest.split_once(':').is_some_and(|(algorithm, hex)| {
            !algorithm.is_empty()
                && algorithm.bytes().all(|b| b.is_ascii_alphanumeric())
                && !hex.is_empty()
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !valid {
            return None;
        }
        let mut dir = self.path.clone();
        if self.with_reference {
            // Standard base64 may hold `/`, which would add a level; Go has the same.
            dir.push(BASE64.encode(image_ref.as_bytes()));
        }
        dir.push(digest);
        AdditionalLayer::at(&dir)
    }
}

/// A layer served by an additional layer store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalLayer {
    path: PathBuf,
}

impl AdditionalLayer {
    /// The layer at `dir`, if `diff/`, `info` and `blob` exist there.
    pub fn at(dir: &Path) -> Option<AdditionalLayer> {
        let complete = std::fs::metadata(dir.join("diff")).is_ok_and(|m| m.is_dir())
            && std::fs::metadata(dir.join("info")).is_ok_and(|m| m.is_file())
            && std::fs::metadata(dir.join("blob")).is_ok_and(|m| m.is_file());
        complete.then(|| AdditionalLayer {
            path: dir.to_path_buf(),
        })
    }

    /// The layer's directory in the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layer's files.
    pub fn diff_dir(&self) -> PathBuf {
        self.path.join("diff")
    }

    /// The layer's record (JSON).
    pub fn info_path(&self) -> PathBuf {
        self.path.join("info")
    }

    /// The layer's compressed blob.
    pub fn blob_path(&self) -> PathBuf {
        self.path.join("blob")
    }

    /// Tells the store's filesystem the layer is in use (creates `use`).
    pub fn mark_used(&self) -> Result<()> {
        let path = self.path.join("use");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map(drop)
            .map_err(|e| Error::io("create", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_and_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("{}:ref", dir.path().display());
        let store = AdditionalLayerStore::parse(&spec);
        assert!(store.with_reference);
        assert_eq!(store.path, dir.path());
        let digest = format!("sha256:{}", "ab".repeat(32));
        let layer_dir = dir
            .path()
            .join(BASE64.encode(b"example.com/app:1"))
            .join(&digest);
        std::fs::create_dir_all(layer_dir.join("diff")).unwrap();
        std::fs::write(layer_dir.join("info"), "{}").unwrap();
        assert_eq!(
            store.lookup(&digest, "example.com/app:1"),
            None,
            "no blob yet"
        );
        std::fs::write(layer_dir.join("blob"), "").unwrap();
        let layer = store.lookup(&digest, "example.com/app:1").unwrap();
        assert_eq!(layer.diff_dir(), layer_dir.join("diff"));
        assert_eq!(store.lookup(&digest, "other:1"), None);
        assert_eq!(store.lookup("../../etc", "example.com/app:1"), None);
        layer.mark_used().unwrap();
        assert!(layer_dir.join("use").is_file());
        assert!(!AdditionalLayerStore::parse("/x").with_reference);
    }
}
