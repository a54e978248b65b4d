//! The graph-driver seam: the [`Driver`] trait, its options, the registry and the shared naive
//! diff.
//!
//! A graph driver owns the filesystem side of layers (where a layer's tree lives, how a child
//! is made from its parent, how it is mounted); the layer store owns the records
//! (`layers.json`). This crate is the contract between the two, modelled on containers/storage
//! v1.43's `drivers.Driver` (`ProtoDriver` + `DiffDriver` + `LayerIDMapUpdater` +
//! `DiffGetterDriver`), folded into one object-safe trait:
//!
//! * **lifecycle**: [`Driver::create`] (read-only image layer), [`Driver::create_read_write`]
//!   (container layer), [`Driver::create_from_template`], [`Driver::remove`],
//!   [`Driver::exists`], [`Driver::list_layers`];
//! * **mounting**: [`Driver::get`] returns the path of the layer's merged tree,
//!   [`Driver::get_root`] also a descriptor of its root ([`LayerRoot`]), [`Driver::put`]
//!   releases it; [`MountOpts`] carries the label, `ro` and ID maps;
//! * **reporting**: [`Driver::status`], [`Driver::metadata`], [`Driver::read_write_disk_usage`],
//!   [`Driver::cleanup`] at shutdown;
//! * **the diff family**: [`Driver::apply_diff`], [`Driver::diff`], [`Driver::changes`],
//!   [`Driver::diff_size`]. They have default bodies from [`naive`], which mounts both
//!   layers and compares trees with the archive crate, so a driver without a native diff
//!   (vfs, btrfs) writes none of them;
//! * **ID shifting**: [`Driver::update_layer_id_map`] (chown the tree, naive default) and
//!   [`Driver::supports_shifting`] (can the driver shift at mount time instead);
//! * **tar-split reassembly**: [`Driver::diff_getter`], a file getter over the layer's own
//!   files.
//! * **staging** (Go's `DriverWithDiffer`): [`Driver::apply_diff_with_differ`] lets a
//!   [`Differ`] fill a fresh staging directory, [`Driver::apply_diff_from_staging_directory`]
//!   renames it into the layer, [`Driver::cleanup_staging_directory`] drops it;
//!   [`Driver::differ_target`] names the directory of a layer's own files (where a differ
//!   finds files to reuse). The default bodies refuse ([`Error::DifferNotSupported`]); see
//!   [`differ`].
//! * **additional layer stores** (Go's `AdditionalLayerStoreDriver`):
//!   [`Driver::lookup_additional_layer`] finds a layer a lazy-pulling filesystem serves,
//!   [`Driver::attach_additional_layer`] makes a new layer use its tree; see [`additional`].
//!
//! Options (`--storage-opt`) are parsed with [`DriverOptions`]; drivers are found by name or
//! picked automatically with a [`Registry`] that the top crate composes.
//!
//! Layer IDs are plain `&str`: every method validates them with [`validate_layer_id`] (and
//! [`validate_driver_layer_id`], which also refuses the driver's own names) before touching
//! the filesystem, so an ID can never name a path outside the driver's home nor one of the
//! driver's own directories.
//!
//! # What a driver trusts
//!
//! The configured paths (graph root, run root, additional stores) are followed as given.
//! Everything below the driver's home is input: a layer directory, the files a driver keeps
//! beside a layer's tree (overlay's `link` and `lower`) and the tree itself may have been
//! changed by whoever can write the store. Drivers open them from a descriptor of their home
//! with `O_NOFOLLOW` and pass descriptors on (see [`tree`] for the helpers, and the one
//! iterative walker and remover it re-exports from `layerstore_archive::tree`); the small files are read with a size bound and must be
//! regular files.
//!
//! # Example
//!
//! ```
//! use layerstore_driver::{DriverOptions, validate_layer_id};
//!
//! let mut options = DriverOptions::parse("vfs", &[], &["vfs.ignore_chown_errors=true"])?;
//! assert_eq!(options.take_bool("ignore_chown_errors")?, Some(true));
//! options.finish()?;
//! assert!(validate_layer_id("../etc").is_err());
//! # Ok::<(), layerstore_driver::Error>(())
//! ```
//!
//! # Limitations
//!
//! No deferred removal.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub mod additional;
pub mod differ;
mod error;
mod idmap;
pub mod mount;
pub mod naive;
mod options;
mod registry;
pub mod staging;
pub mod tree;
pub mod xattr;

pub use additional::{AdditionalLayer, AdditionalLayerStore};
pub use differ::{Differ, DifferOptions, DifferOutput};
pub use error::{Error, Result};
pub use idmap::IdMappings;
pub use options::{DriverOption, DriverOptions};
pub use registry::{DriverConfig, InitFn, Registration, Registry};
pub use staging::StagingArea;

pub use layerstore_archive::{ApplyReport, Change, ChangeKind, IdMap};
pub use layerstore_tarsplit::{DirFileGetter, EntrySink, FileGetter};

/// Checks that `id` can name a layer directory: not empty, not `.` or `..`, no `/` or NUL.
///
/// Go accepts any caller-chosen ID (`fixture-id-vfs`) and uses `filepath.Base(id)`; we refuse
/// instead of silently renaming, which also keeps an ID from escaping the driver's home.
pub fn validate_layer_id(id: &str) -> Result<()> {
    layerstore_model::validate_id(id).map_err(|e| match e {
        layerstore_model::Error::InvalidId { id, reason } => Error::InvalidId { id, reason },
        _ => Error::InvalidId {
            id: id.to_string(),
            reason: "not a valid layer ID",
        },
    })
}

/// [`validate_layer_id`], and refuses the names the driver uses itself in the directory
/// holding its layers (overlay's `l` and `staging`, ...): such an ID would make the layer's
/// directory one of the driver's own, and removing the layer would remove it.
pub fn validate_driver_layer_id(id: &str, reserved: &[&str]) -> Result<()> {
    validate_layer_id(id)?;
    if reserved.contains(&id) {
        return Err(Error::InvalidId {
            id: id.to_string(),
            reason: "the driver uses this name itself",
        });
    }
    Ok(())
}

/// A layer's mounted tree: the path [`Driver::get`] gives and a descriptor of its root,
/// opened without following symlinks the driver does not own. Whoever holds one works
/// through the descriptor, so nothing is resolved by path a second time.
#[derive(Debug)]
pub struct LayerRoot {
    /// Where the tree is mounted (for messages and for callers that need a path).
    pub path: PathBuf,
    /// The tree's root directory.
    pub fd: OwnedFd,
}

/// Options of [`Driver::create`] and friends (Go's `CreateOpts`).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// SELinux mount label for the layer (empty: none).
    pub mount_label: String,
    /// Per-layer storage options (`size=10G`); drivers without quotas refuse any.
    pub storage_opt: BTreeMap<String, String>,
    /// ID mappings of the new layer; `None` uses the driver's defaults. A base layer's top
    /// directory is owned by the mapped root.
    pub id_mappings: Option<IdMappings>,
}

/// Options of [`Driver::get`] (Go's `MountOpts`).
#[derive(Debug, Clone, Default)]
pub struct MountOpts {
    /// SELinux mount label (empty: none).
    pub mount_label: String,
    /// Mount-time ID shifting, for drivers that [support it](Driver::supports_shifting).
    pub id_mappings: IdMappings,
    /// Mount options (`ro`, `nodev`, …). Drivers refuse what they cannot honour.
    pub options: Vec<String>,
    /// Mount without syncing to disk (overlay `volatile`), when supported.
    pub volatile: bool,
    /// Do not shift IDs at mount time even if the driver could.
    pub disable_shifting: bool,
}

/// Options of [`Driver::apply_diff`] (Go's `ApplyDiffOpts`).
pub struct ApplyDiffOpts<'a> {
    /// The layer stream as given: an uncompressed tar, or gzip/zstd/bzip2/xz of one (the
    /// archive crate detects the compression and reports both digests).
    pub diff: &'a mut (dyn Read + Send),
    /// Where the tar-split records of the stream go (the store's `<id>.tar-split.gz` packer);
    /// `None` to record nothing.
    pub tar_split: Option<&'a mut dyn EntrySink>,
    /// ID mappings to apply to the archive's owners (container → host).
    pub id_mappings: IdMappings,
    /// SELinux mount label used when mounting the layer to apply into it.
    pub mount_label: String,
    /// Do not fail when chown is refused (rootless without enough IDs).
    pub ignore_chown_errors: bool,
    /// Refuse a layer whose uncompressed stream is larger than this (decompression bombs);
    /// `None`: no cap, as in Go.
    pub max_uncompressed_size: Option<u64>,
    /// Run when the whole stream has been read, while its last entries are still extracted
    /// (see [`layerstore_archive::ApplyOptions::on_input_end`]).
    pub on_input_end: Option<layerstore_archive::InputEndHook>,
}

impl std::fmt::Debug for ApplyDiffOpts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyDiffOpts")
            .field("tar_split", &self.tar_split.is_some())
            .field("id_mappings", &self.id_mappings)
            .field("mount_label", &self.mount_label)
            .field("ignore_chown_errors", &self.ignore_chown_errors)
            .field("max_uncompressed_size", &self.max_uncompressed_size)
            .field("on_input_end", &self.on_input_end)
            .finish_non_exhaustive()
    }
}

impl<'a> ApplyDiffOpts<'a> {
    /// Options that apply `diff` with no mappings, no label and no tar-split recording.
    pub fn new(diff: &'a mut (dyn Read + Send)) -> Self {
        ApplyDiffOpts {
            diff,
            tar_split: None,
            id_mappings: IdMappings::default(),
            mount_label: String::new(),
            ignore_chown_errors: false,
            max_uncompressed_size: None,
            on_input_end: None,
        }
    }
}

/// The two layers a diff-family call compares: the layer and (optionally) its parent, each
/// with its ID mappings (Go passes `id, idMappings, parent, parentMappings, mountLabel`).
#[derive(Debug, Clone, Copy)]
pub struct DiffArgs<'a> {
    /// The layer.
    pub id: &'a str,
    /// The layer's ID mappings (owners in the produced stream are mapped back to the
    /// container's view).
    pub id_mappings: &'a IdMappings,
    /// The parent to compare with; `None`: everything in the layer is an addition.
    pub parent: Option<&'a str>,
    /// The parent's ID mappings.
    pub parent_mappings: &'a IdMappings,
    /// SELinux mount label used when mounting.
    pub mount_label: &'a str,
}

impl<'a> DiffArgs<'a> {
    /// Arguments for `id` against `parent`, identity mappings, no label.
    pub fn new(id: &'a str, parent: Option<&'a str>) -> Self {
        const IDENTITY: &IdMappings = &IdMappings {
            uids: Vec::new(),
            gids: Vec::new(),
        };
        DiffArgs {
            id,
            id_mappings: IDENTITY,
            parent,
            parent_mappings: IDENTITY,
            mount_label: "",
        }
    }
}

/// Disk usage of a layer's own files (Go's `directory.DiskUsage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes used (sum of apparent sizes, each inode counted once).
    pub size: u64,
    /// Number of distinct inodes.
    pub inode_count: u64,
}

/// A graph driver. Object safe: the store holds a `Box<dyn Driver>` (which is `Debug`).
///
/// Layer IDs are validated by the implementations ([`validate_layer_id`]). Methods take `&self`;
/// drivers synchronise internally where they keep state (the store serialises calls on one
/// layer through its own lock).
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// The driver's name, also its home directory's name (`vfs`).
    fn name(&self) -> &'static str;

    /// The driver's home directory (`<graphroot>/<name>`).
    fn home(&self) -> &Path;

    /// Creates a read-only (image) layer `id`, empty or a copy of `parent`'s tree.
    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()>;

    /// Creates a read-write (container) layer `id` on `parent`. The default is [`Driver::create`]:
    /// the drivers here keep no difference between the two on disk.
    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create(id, parent, opts)
    }

    /// Whether [`Driver::create`] on a parent gives the new layer a whole copy (or snapshot) of
    /// the parent's tree, as vfs and btrfs do; then [`Driver::create_from_template`] is a
    /// create on the template itself, as Go's vfs and btrfs make it.
    fn create_copies_parent(&self) -> bool {
        false
    }

    /// Creates layer `id` on `parent` with the same contents as `template` (which has the
    /// same parent), as Go's `CreateFromTemplate`: the copy's files are owned as the
    /// template's (`template_mappings`); the store then re-owns them for the new layer's
    /// mappings with [`Driver::update_layer_id_map`]. The default is a create on the template
    /// where [`Driver::create_copies_parent`], else an empty layer on `parent` into which the
    /// template's naive diff is applied.
    #[allow(clippy::too_many_arguments)]
    fn create_from_template(
        &self,
        id: &str,
        template: &str,
        template_mappings: &IdMappings,
        parent: Option<&str>,
        parent_mappings: &IdMappings,
        opts: &CreateOpts,
        read_write: bool,
    ) -> Result<()> {
        if self.create_copies_parent() {
            if let Some(parent) = parent {
                validate_layer_id(parent)?;
            }
            return self.create(id, Some(template), opts);
        }
        naive::create_from_template(
            self,
            id,
            template,
            template_mappings,
            parent,
            parent_mappings,
            opts,
            read_write,
        )
    }

    /// Deletes layer `id`'s files. Removing a layer that does not exist succeeds.
    fn remove(&self, id: &str) -> Result<()>;

    /// Mounts layer `id` (as needed) and returns the path of its merged tree.
    fn get(&self, id: &str, opts: &MountOpts) -> Result<PathBuf>;

    /// Releases a mount made by [`get`](Self::get).
    fn put(&self, id: &str) -> Result<()>;

    /// Mounts layer `id` as [`get`](Self::get) does and opens the root of its tree; release
    /// it with [`put`](Self::put). The naive diff family works through this descriptor.
    /// Default: `get`, then the returned path opened with `O_NOFOLLOW | O_DIRECTORY`; drivers
    /// override it to open the tree from their own home, never through a path again.
    fn get_root(&self, id: &str, opts: &MountOpts) -> Result<LayerRoot> {
        let path = self.get(id, opts)?;
        match tree::open_dir(&path) {
            Ok(fd) => Ok(LayerRoot { path, fd }),
            Err(e) => {
                let _ = self.put(id);
                Err(Error::layer_io(id, "open", &path, e))
            }
        }
    }

    /// Whether layer `id` has its files in this driver.
    fn exists(&self, id: &str) -> bool;

    /// The IDs of every layer in the driver's own home (not additional image stores).
    fn list_layers(&self) -> Result<Vec<String>>;

    /// `(key, value)` lines for `containers-storage status` (vfs: none).
    fn status(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Driver-specific facts about a layer (overlay: `UpperDir`, `MergedDir`, …).
    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        validate_layer_id(id)?;
        Ok(BTreeMap::new())
    }

    /// Disk usage of the writable part of layer `id`. The default mounts the layer and
    /// walks its tree.
    fn read_write_disk_usage(&self, id: &str) -> Result<DiskUsage> {
        naive::disk_usage(self, id)
    }

    /// Releases driver-wide resources at store shutdown (unmounts, private bind mounts).
    fn cleanup(&self) -> Result<()> {
        Ok(())
    }

    /// Read-only additional image stores this driver looks layers up in.
    fn additional_image_stores(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Applies a layer stream into layer `id` (whose parent is `parent`) and returns what the
    /// archive crate measured (digests, sizes, compression, uid/gid sets). Default: mount,
    /// extract with naive whiteouts (`.wh.X` deletes `X`), unmount.
    fn apply_diff(
        &self,
        id: &str,
        parent: Option<&str>,
        opts: ApplyDiffOpts<'_>,
    ) -> Result<ApplyReport> {
        naive::apply_diff(self, id, parent, opts)
    }

    /// Writes the layer's diff against its parent to `out` as an uncompressed tar stream
    /// (deletions as `.wh.` entries) and returns the bytes written. Default: naive. A caller
    /// that wants a reader runs this on a thread writing into a pipe.
    fn diff(&self, args: &DiffArgs<'_>, out: &mut dyn Write) -> Result<u64> {
        naive::diff(self, args, out)
    }

    /// The paths the layer adds, modifies or deletes relative to its parent. Default: naive
    /// (compare both mounted trees).
    fn changes(&self, args: &DiffArgs<'_>) -> Result<Vec<Change>> {
        naive::changes(self, args)
    }

    /// The size in bytes of what the layer adds or modifies (Go's `DiffSize`). Default: naive.
    fn diff_size(&self, args: &DiffArgs<'_>) -> Result<u64> {
        naive::diff_size(self, args)
    }

    /// Re-owns layer `id`'s files: each owner is mapped to the container's view with
    /// `to_container`, then to the host with `to_host` (Go's `UpdateLayerIDMap`). Default:
    /// mount and chown the tree.
    fn update_layer_id_map(
        &self,
        id: &str,
        to_container: &IdMappings,
        to_host: &IdMappings,
        mount_label: &str,
    ) -> Result<()> {
        naive::update_layer_id_map(self, id, to_container, to_host, mount_label)
    }

    /// Whether the driver can shift IDs at mount time, so the store need not chown layers.
    fn supports_shifting(&self) -> bool {
        false
    }

    /// A file getter over the layer's own files, for tar-split reassembly, or `None` when the
    /// driver has none (the store then mounts the layer and reads the merged tree).
    fn diff_getter(&self, id: &str) -> Result<Option<Box<dyn FileGetter + Send + '_>>> {
        validate_layer_id(id)?;
        Ok(None)
    }

    /// Makes a fresh staging directory and lets `differ` fill it (Go's `ApplyDiffWithDiffer`
    /// with no layer). The returned output's `target` is the staging directory; on error it
    /// is already removed. Default: [`Error::DifferNotSupported`].
    fn apply_diff_with_differ(
        &self,
        options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        let _ = (options, differ);
        Err(Error::DifferNotSupported {
            driver: self.name().to_string(),
        })
    }

    /// Moves the staging directory `staging` (made by
    /// [`apply_diff_with_differ`](Self::apply_diff_with_differ)) into layer `id` in one rename,
    /// replacing the layer's own files. Refuses a path that is not one of this driver's
    /// staging directories. Default: [`Error::DifferNotSupported`].
    fn apply_diff_from_staging_directory(&self, id: &str, staging: &Path) -> Result<()> {
        let _ = (id, staging);
        Err(Error::DifferNotSupported {
            driver: self.name().to_string(),
        })
    }

    /// [`apply_diff_from_staging_directory`](Self::apply_diff_from_staging_directory) for a
    /// layer that [`create`](Self::create) has just made and that the caller flags incomplete
    /// (so a crash deletes it) and deletes if this fails: the layer's present files may be
    /// used up on the way, and a failure may leave them part-moved. vfs moves the parent's
    /// copy that `create` made into the staged tree instead of copying it a second time.
    /// Default: `apply_diff_from_staging_directory`.
    fn apply_diff_from_staging_directory_into_new(&self, id: &str, staging: &Path) -> Result<()> {
        self.apply_diff_from_staging_directory(id, staging)
    }

    /// Removes a staging directory (with everything in it). Removing one that is gone
    /// succeeds. Default: [`Error::DifferNotSupported`].
    fn cleanup_staging_directory(&self, staging: &Path) -> Result<()> {
        let _ = staging;
        Err(Error::DifferNotSupported {
            driver: self.name().to_string(),
        })
    }

    /// The layer with blob digest `digest` of image `image_ref` in one of the driver's
    /// additional layer stores. Default: none.
    fn lookup_additional_layer(&self, digest: &str, image_ref: &str) -> Option<AdditionalLayer> {
        let _ = (digest, image_ref);
        None
    }

    /// Makes the freshly created, empty layer `id` use `layer`'s tree as its own files (Go's
    /// `AdditionalLayer.CreateAs`, after `Create`) and tells the store it is in use. Default:
    /// [`Error::AdditionalLayersNotSupported`].
    fn attach_additional_layer(&self, id: &str, layer: &AdditionalLayer) -> Result<()> {
        validate_layer_id(id)?;
        let _ = layer;
        Err(Error::AdditionalLayersNotSupported {
            driver: self.name().to_string(),
        })
    }

    /// The directory holding layer `id`'s own files as a differ would have written them
    /// (overlay: `<id>/diff`), where a differ may find files to reuse (Go's `DifferTarget`).
    /// Default: [`Error::DifferNotSupported`].
    fn differ_target(&self, id: &str) -> Result<PathBuf> {
        validate_layer_id(id)?;
        Err(Error::DifferNotSupported {
            driver: self.name().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids() {
        for good in ["9a82d99106", "fixture-id-vfs", "a.b_c", ".hidden", "..."] {
            validate_layer_id(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "/abs", "nul\0"] {
            let err = validate_layer_id(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidId { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn reserved_names_are_refused_as_layer_ids() {
        validate_driver_layer_id("layer", &["l", "staging"]).unwrap();
        let err = validate_driver_layer_id("l", &["l", "staging"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid layer ID \"l\": the driver uses this name itself"
        );
        assert!(validate_driver_layer_id("a/b", &[]).is_err());
    }

    #[test]
    fn driver_is_object_safe_and_thread_safe() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn Driver>();
    }
}
