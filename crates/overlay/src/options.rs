//! The options the driver takes (`overlay.mountopt`, `overlay.mount_program`, ...).

use std::io;
use std::path::{Path, PathBuf};

use layerstore_driver::AdditionalLayerStore;
use layerstore_driver::{DriverOptions, Error, Result};

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
    /// Additional (read-only) image stores, graph roots of other stores whose layers serve
    /// as lowers (`imagestore=<dir>,…` or `additionalimagestore=`): absolute paths of
    /// existing directories, as Go checks them.
    pub image_stores: Vec<PathBuf>,
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
            image_stores: options
                .take_list("imagestore")
                .into_iter()
                .chain(options.take_list("additionalimagestore"))
                .map(|store| image_store(&store))
                .collect::<Result<_>>()?,
        };
        // Accepted and ignored, as in Go.
        options.take_all("override_kernel_check");
        options.finish()?;
        Ok(parsed)
    }
}

/// An `imagestore=` entry checked as Go checks it: cleaned, absolute, an existing directory;
/// Go's texts otherwise.
fn image_store(store: &str) -> Result<PathBuf> {
    let path: PathBuf = Path::new(store).components().collect();
    let refuse = |reason: String| Error::ImageStore {
        driver: NAME.to_string(),
        path: path.clone(),
        reason,
    };
    if !path.is_absolute() {
        return Err(refuse(format!(
            "image path {:?} is not absolute.  Can not be relative",
            path.display().to_string()
        )));
    }
    match std::fs::metadata(&path) {
        Ok(st) if st.is_dir() => Ok(path),
        Ok(_) => Err(refuse(format!(
            "image path {:?} must be a directory",
            path.display().to_string()
        ))),
        Err(e) => Err(refuse(format!(
            "can't stat imageStore dir {}: stat {}: {}",
            path.display(),
            path.display(),
            go_errno_text(&e)
        ))),
    }
}

/// How Go's `os.Stat` words the common errors (`no such file or directory`).
fn go_errno_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::NotADirectory => "not a directory".into(),
        _ => e.to_string(),
    }
}

fn split_options(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect()
}
