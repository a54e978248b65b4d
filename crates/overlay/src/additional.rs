//! Additional layer stores for overlay: a layer adopted from one has `diff` as a symlink to
//! the store's `diff/` (so every mount uses that tree as a lower), an `additionallayer` file
//! naming the store's layer directory, and the store told through `use` (Go's `CreateAs`).

use std::io;

use layerstore_driver::{AdditionalLayer, Error, Result};

use crate::{OverlayDriver, write_file};

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
        let dir = self.existing_dir(id)?;
        let diff = dir.join("diff");
        // Only a freshly created, empty `diff/` is replaced (remove_dir refuses anything else).
        std::fs::remove_dir(&diff).map_err(|e| Error::layer_io(id, "remove", &diff, e))?;
        std::os::unix::fs::symlink(layer.diff_dir(), &diff)
            .map_err(|e| Error::layer_io(id, "symlink", &diff, e))?;
        let marker = dir.join(ADDITIONAL_LAYER_FILE);
        let target = layer.path().to_str().ok_or_else(|| {
            Error::layer_io(
                id,
                "record",
                layer.path(),
                io::Error::new(io::ErrorKind::InvalidInput, "path is not UTF-8"),
            )
        })?;
        write_file(&marker, target, 0o644).map_err(|e| Error::layer_io(id, "write", &marker, e))?;
        layer.mark_used()
    }
}
