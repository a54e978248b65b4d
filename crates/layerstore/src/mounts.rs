//! Mounting layers, containers and images, and shutting the store down.

use std::path::PathBuf;

use layerstore_layers::MountOptions;
use layerstore_model::{MOUNT_OPTS_FLAG, VOLATILE_FLAG};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::store::Store;

impl Store {
    /// Mounts what `key` names and returns the mount point (Go's `Mount`): a container's
    /// layer, with the container's ID mappings, its `MountOpts` flag as mount options and
    /// its `Volatile` flag (unless the store disables volatile mounts); otherwise a layer of
    /// the read-write store (`layer not known` if neither). The mount count in
    /// `mountpoints.json` goes up by one for every process to see. Holds `storage.lock` and
    /// `layers.lock` exclusively, as Go does.
    pub fn mount(&self, key: &str, mount_label: &str) -> Result<PathBuf> {
        self.mount_with_options(key, mount_label, &[])
    }

    /// [`Store::mount`] with mount options for the driver (`ro`, `nodev`, ...), put after a
    /// container's own `MountOpts` (Go's `Mount` takes none; the `layerstore` command's
    /// `mount -o` passes them).
    pub fn mount_with_options(
        &self,
        key: &str,
        mount_label: &str,
        mount_options: &[String],
    ) -> Result<PathBuf> {
        let mut options = MountOptions {
            mount_label: mount_label.to_owned(),
            ..MountOptions::default()
        };
        let mut layer = key.to_owned();
        if let Ok(container) = self.containers.get(key) {
            layer = container.layer_id;
            options.uid_map = container.uid_map;
            options.gid_map = container.gid_map;
            if let Some(Value::Array(opts)) = container.flags.get(MOUNT_OPTS_FLAG) {
                options.options = opts
                    .iter()
                    .filter_map(|o| o.as_str().map(str::to_owned))
                    .collect();
            }
            options.volatile = !self.disable_volatile
                && container.flags.get(VOLATILE_FLAG) == Some(&Value::Bool(true));
        }
        options.options.extend(mount_options.iter().cloned());
        self.mount_layer(&layer, &options)
    }

    /// Mounts the top layer of the image `key` names (in any image store) read-only (Go's
    /// `MountImage`): `mount_options` may not hold `rw` (` "rw" option not supported`) and
    /// get `ro` appended. As in Go, only a top layer of the read-write layer store can be
    /// mounted (`layer not known` otherwise).
    pub fn mount_image(
        &self,
        key: &str,
        mount_options: &[String],
        mount_label: &str,
    ) -> Result<PathBuf> {
        let image = self.image(key)?;
        if mount_options.iter().any(|o| o == "rw") {
            return Err(Error::ReadWriteImageMount { image: image.id });
        }
        let mut options = MountOptions {
            mount_label: mount_label.to_owned(),
            options: mount_options.to_vec(),
            ..MountOptions::default()
        };
        options.options.push("ro".to_owned());
        self.mount_layer(&image.top_layer, &options)
    }

    /// Mounts layer `key` of the read-write store under `storage.lock` and `layers.lock`.
    fn mount_layer(&self, key: &str, options: &MountOptions) -> Result<PathBuf> {
        let _storage = self.storage_lock.lock()?;
        let mut layers = self.layers.write_session()?;
        if !layers.records().exists(key) {
            return Err(Error::LayerUnknown {
                key: key.to_owned(),
            });
        }
        Ok(layers.mount(key, options)?)
    }

    /// Unmounts what `key` names: a container's layer, else a layer of the read-write
    /// store, by ID, name, prefix or mount point (Go's `Unmount`, which refuses mount
    /// points). `force` drops every mount at once. Returns whether it is still mounted.
    pub fn unmount(&self, key: &str, force: bool) -> Result<bool> {
        let layer = self.container_layer_or(key);
        let mut layers = self.layers.write_session()?;
        Ok(layers.unmount(&layer, force)? > 0)
    }

    /// Unmounts the top layer of the image `key` names (Go's `UnmountImage`).
    pub fn unmount_image(&self, key: &str, force: bool) -> Result<bool> {
        let image = self.image(key)?;
        self.unmount(&image.top_layer, force)
    }

    /// How many times what `key` names (a container's layer, else a layer of the read-write
    /// store) is mounted (Go's `Mounted`).
    pub fn mounted(&self, key: &str) -> Result<u32> {
        let layer = self.container_layer_or(key);
        let layers = self.layers.read_session()?;
        Ok(layers.records().mounted(&layer)?)
    }

    /// The layer of the container `key` names, else `key` itself (Go's `ContainerLayerID`
    /// fallback). The container store's shared lock is released before the layer store's is
    /// taken, as in Go.
    fn container_layer_or(&self, key: &str) -> String {
        match self.containers.get(key) {
            Ok(container) => container.layer_id,
            Err(_) => key.to_owned(),
        }
    }

    /// Shuts the store down (Go's `Shutdown`): under `storage.lock` and `layers.lock`, a
    /// mounted layer is `a layer is mounted: layer is in use by a container` unless `force`,
    /// which unmounts every layer however many times it was mounted (Go 1.43 loops forever
    /// there); then the driver releases its resources and `storage.lock` records a write.
    pub fn shutdown(&self, force: bool) -> Result<()> {
        let storage = self.storage_lock.lock()?;
        let mut layers = self.layers.write_session()?;
        layers.unmount_all(force).map_err(|e| match e {
            layerstore_layers::Error::LayerMounted(layer) => Error::LayerMounted { layer },
            other => other.into(),
        })?;
        self.layers.driver().cleanup().map_err(|e| {
            Error::Layers(layerstore_layers::Error::Driver {
                id: "-".to_owned(),
                op: "clean up",
                source: Box::new(e),
            })
        })?;
        storage.record_write()?;
        Ok(())
    }
}
