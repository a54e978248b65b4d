//! Additional layer stores for overlay: a layer adopted from one has `diff` as a symlink to
//! the store's `diff/` (so every mount uses that tree as a lower), an `additionallayer` file
//! naming the store's layer directory, and the store told through `use` (Go's `CreateAs`).
//!
//! That symlink is the one symlink below the home the driver follows, and only for a layer
//! that has the `additionallayer` file: its target, canonicalised, must lie inside one of the
//! configured stores, and is then opened from the store's root one directory at a time without
//! following symlinks.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use layerstore_driver::{AdditionalLayer, Error, Result, tree};

use crate::{Layer, OverlayDriver};

/// Names the additional layer a layer was adopted from (Go's file name).
pub(crate) const ADDITIONAL_LAYER_FILE: &str = "additionallayer";

impl OverlayDriver {
    pub(crate) fn find_additional(&self, digest: &str, image_ref: &str) -> Option<AdditionalLayer> {
        self.options
            .additional_layer_stores
            .iter()
            .find_map(|store| store.lookup(digest, image_ref))
    }

    pub(crate) fn attach_additional(&self, id: &str, layer: &AdditionalLayer) -> Result<()> {
        let own = self.open_layer(id)?;
        let diff = own.dir.join("diff");
        // Only a freshly created, empty `diff/` is replaced (rmdir refuses anything else).
        rustix::fs::unlinkat(&own.fd, c"diff", rustix::fs::AtFlags::REMOVEDIR)
            .map_err(|e| Error::layer_io(id, "remove", &diff, e))?;
        rustix::fs::symlinkat(layer.diff_dir().as_path(), &own.fd, c"diff")
            .map_err(|e| Error::layer_io(id, "symlink", &diff, e))?;
        let marker = own.dir.join(ADDITIONAL_LAYER_FILE);
        let target = layer.path().to_str().ok_or_else(|| {
            Error::layer_io(
                id,
                "record",
                layer.path(),
                io::Error::new(io::ErrorKind::InvalidInput, "path is not UTF-8"),
            )
        })?;
        tree::write_file_at(&own.fd, c"additionallayer", target.as_bytes(), 0o644)
            .map_err(|e| Error::layer_io(id, "write", &marker, e))?;
        layer.mark_used()
    }

    /// The tree an adopted layer's `diff` symlink names, if the layer is an adopted one and
    /// the tree lies inside a configured additional layer store.
    pub(crate) fn open_additional_diff(&self, id: &str, layer: &Layer) -> Result<OwnedFd> {
        let diff = layer.dir.join("diff");
        let refuse = |why: String| {
            Error::layer_io(
                id,
                "open",
                &diff,
                io::Error::new(io::ErrorKind::InvalidData, why),
            )
        };
        let adopted = tree::read_small_file_at(&layer.fd, c"additionallayer", 4096).is_ok();
        if !adopted {
            return Err(refuse(
                "a symlink, and the layer was not adopted from an additional layer store".into(),
            ));
        }
        let target = rustix::fs::readlinkat(&layer.fd, c"diff", Vec::new())
            .map_err(|e| Error::layer_io(id, "read the link", &diff, e))?;
        let target = Path::new(std::ffi::OsStr::from_bytes(target.as_bytes()));
        let resolved =
            std::fs::canonicalize(target).map_err(|e| Error::layer_io(id, "resolve", target, e))?;
        for store in &self.options.additional_layer_stores {
            let Ok(root) = std::fs::canonicalize(&store.path) else {
                continue;
            };
            let Ok(rel) = resolved.strip_prefix(&root) else {
                continue;
            };
            return open_beneath(&root, rel).map_err(|e| Error::layer_io(id, "open", &resolved, e));
        }
        Err(refuse(format!(
            "links to {}, which is in no configured additional layer store",
            resolved.display()
        )))
    }
}

/// Opens `rel` (plain components) below the directory `root`, one directory at a time,
/// never following a symlink.
fn open_beneath(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let mut dir = tree::open_dir_following(root)?;
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let name = CString::new(name.as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        dir = tree::open_dir_at(dir.as_fd(), &name)?;
    }
    Ok(dir)
}
