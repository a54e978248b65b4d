//! The options the driver takes (`overlay.mountopt`, `overlay.mount_program`, ...).

use std::path::PathBuf;

use layerstore_driver::AdditionalLayerStore;
use layerstore_driver::{DriverOptions, Result};

use crate::{ALIASES, NAME};

/// The options the driver was started with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayOptions {
    /// Default mount options (`overlay.mountopt`), split at commas.
    pub mount_options: Vec<String>,
    /// Do not bind-mount the home onto itself (`overlay.skip_mount_home`).
    pub skip_mount_home: bool,
    /// Ignore refused chowns when applying layers (`overlay.ignore_chown_errors`).
    pub ignore_chown_errors: bool,
    /// A FUSE program mounting overlays (`overlay.mount_program`).
    pub mount_program: Option<PathBuf>,
    /// Read-only stores of lazily pulled layers
    /// (`overlay.additionallayerstore=<path>[:ref],…`).
    pub additional_layer_stores: Vec<AdditionalLayerStore>,
}

impl OverlayOptions {
    /// Parses `--storage-opt` style options; unknown ones are errors naming them.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self> {
        let mut options = DriverOptions::parse(NAME, ALIASES, raw)?;
        let parsed = OverlayOptions {
            mount_options: options
                .take_string("mountopt")
                .map(|s| split_options(&s))
                .unwrap_or_default(),
            skip_mount_home: options.take_bool("skip_mount_home")?.unwrap_or(false),
            ignore_chown_errors: options.take_bool("ignore_chown_errors")?.unwrap_or(false),
            mount_program: options
                .take_string("mount_program")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            additional_layer_stores: options
                .take_list("additionallayerstore")
                .iter()
                .map(|spec| AdditionalLayerStore::parse(spec))
                .collect(),
        };
        // Accepted and ignored, as in Go.
        options.take_all("override_kernel_check");
        options.finish()?;
        Ok(parsed)
    }
}

fn split_options(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect()
}
