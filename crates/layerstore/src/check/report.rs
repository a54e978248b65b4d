//! What a check finds and a repair does: the options, problems, repairs and the report.

use std::fmt;
use std::path::PathBuf;

use layerstore_layers::{Problem as LayerProblem, Repair as LayerRepair};

use crate::pending::{PendingLayer, PendingOp, Settled};
#[allow(unused_imports)] // rustdoc links
use crate::store::Store;

/// What [`Store::check`] and [`Store::repair`] do.
///
/// What is checked:
///
/// * **Layers** of the read-write store and of every additional store: the layer store's own
///   check ([`LayerStore::check`](layerstore_layers::LayerStore::check)).
/// * **Images** of the read-write store and of every additional store: the top layer and each
///   ID-mapped layer exist, and neither they nor any layer below them is broken; every
///   big-data item has its file, of the recorded size, with the recorded digest (manifests of
///   schema 1, whose digest leaves out their signatures, are only measured); the image's
///   digests decode.
/// * **Containers**: their layer exists and is not broken, their image (if any) exists and
///   is not damaged, their big-data items have files of the recorded size and digest. Their
///   directories are not checked: Go makes them at first use (`ContainerDirectory`, a first
///   big-data item), so a container without them is sound.
/// * **Record files**: an `images.json` or `containers.json` that does not load, or that
///   holds records that cannot be used, is a problem naming the file: the store is never
///   called healthy when podman could not list it.
/// * **Marks** of operations a crash interrupted ([`Store::pending_layers`]).
///
/// Repair follows later Go versions' `Store.Repair` (containers/storage 1.51+): damaged
/// containers are deleted only when asked ([`CheckOptions::remove_containers`]), damaged
/// images of the read-write store are deleted with the layers only they used (as
/// [`Store::delete_image`] does), then broken layers are deleted, but never one that a
/// remaining image or container uses (or stands on): such a layer is kept and reported.
/// Marked layers are settled (an unused one, left by a crashed create or delete, is
/// removed). An `images.json` or `containers.json` that does not load is set aside first:
/// its bytes kept as `<file>.damaged-<n>`, the file started empty, and the images or
/// containers lost with it named by the directories they left (their records cannot be
/// rebuilt from disk: names, top layers and mappings live only there); their layers stay.
/// Additional stores are read-only: checked, never repaired. The report's `remaining` comes
/// from checking again after the repairs, so a clean report means a store that checks
/// clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Rebuild every layer's diff and compare it with its record (see
    /// [`layerstore_layers::CheckOptions::verify_contents`]). Default: on.
    pub verify_contents: bool,
    /// [`Store::repair`] also deletes damaged containers (Go's
    /// `RepairOptions.RemoveContainers`). Without it a damaged container is kept and reported,
    /// and so are its image and layers. Default: off.
    pub remove_containers: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            verify_contents: true,
            remove_containers: false,
        }
    }
}

impl CheckOptions {
    pub(super) fn layer_options(&self, repair: bool) -> layerstore_layers::CheckOptions {
        layerstore_layers::CheckOptions {
            verify_contents: self.verify_contents,
            repair,
        }
    }
}

/// One thing [`Store::check`] found wrong. Each names the record and/or file involved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A problem of a layer store: the read-write one (`store` is `None`) or an additional
    /// one (its root).
    Layer {
        /// The additional store's root, `None` for the read-write store.
        store: Option<PathBuf>,
        /// What the layer store found.
        problem: LayerProblem,
    },
    /// `images.json` or `containers.json` does not load: nothing in it can be listed.
    RecordFile {
        /// The file.
        path: PathBuf,
        /// Why it does not load.
        detail: String,
    },
    /// A record of `images.json` or `containers.json` that cannot be used (kept in the file
    /// as it is, found by nothing).
    BadRecord {
        /// The file.
        path: PathBuf,
        /// What the record store says about it.
        detail: String,
    },
    /// A layer the image needs (its top layer, an ID-mapped copy, or one below) is in no
    /// layer store.
    ImageLayerMissing {
        /// The image.
        image: String,
        /// The missing layer.
        layer: String,
        /// The image belongs to an additional (read-only) store.
        read_only: bool,
    },
    /// A layer the image needs is broken (see the layer's own problems).
    ImageLayerBroken {
        /// The image.
        image: String,
        /// The broken layer.
        layer: String,
        /// The image belongs to an additional (read-only) store.
        read_only: bool,
    },
    /// A big-data item the record lists has no file (or its file cannot be read).
    ImageDataMissing {
        /// The image.
        image: String,
        /// The item's key.
        key: String,
        /// Where its file should be.
        path: PathBuf,
        /// The image belongs to an additional (read-only) store.
        read_only: bool,
    },
    /// A big-data item's file is not of the recorded size.
    ImageDataSize {
        /// The image.
        image: String,
        /// The item's key.
        key: String,
        /// The recorded size.
        expected: i64,
        /// The file's size.
        actual: u64,
        /// The image belongs to an additional (read-only) store.
        read_only: bool,
    },
    /// A big-data item's file does not have the recorded digest.
    ImageDataDigest {
        /// The image.
        image: String,
        /// The item's key.
        key: String,
        /// The recorded digest.
        expected: String,
        /// The file's sha256 digest.
        actual: String,
        /// The image belongs to an additional (read-only) store.
        read_only: bool,
    },
    /// The image's digests (its `digest`, its manifests' recorded digests) do not decode.
    ImageDigests {
        /// The image.
        image: String,
        /// Why.
        detail: String,
        /// The image belongs to an additional (read-only) store.
        read_only: bool,
    },
    /// The container's layer is in no layer store.
    ContainerLayerMissing {
        /// The container.
        container: String,
        /// Its layer.
        layer: String,
    },
    /// The container's layer, or one below it, is broken.
    ContainerLayerBroken {
        /// The container.
        container: String,
        /// The broken layer.
        layer: String,
    },
    /// The container's image is in no image store.
    ContainerImageMissing {
        /// The container.
        container: String,
        /// Its image.
        image: String,
    },
    /// The container's image is damaged (see the image's problems).
    ContainerImageDamaged {
        /// The container.
        container: String,
        /// Its image.
        image: String,
    },
    /// A container big-data item is missing, or its file is not of the recorded size or
    /// digest.
    ContainerData {
        /// The container.
        container: String,
        /// The item's key.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A layer marked by an operation a crash interrupted. Repair settles it: removed when
    /// nothing uses it, unmarked otherwise.
    PendingLayer(PendingLayer),
}

impl Problem {
    /// A stable kebab-case name of the kind of problem, for scripts (a layer store's problem
    /// keeps its own kind: `missing-tar-split`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Layer { problem, .. } => problem.kind(),
            Problem::RecordFile { .. } => "damaged-record-file",
            Problem::BadRecord { .. } => "bad-record",
            Problem::ImageLayerMissing { .. } => "image-layer-missing",
            Problem::ImageLayerBroken { .. } => "image-layer-broken",
            Problem::ImageDataMissing { .. } => "image-data-missing",
            Problem::ImageDataSize { .. } => "image-data-size",
            Problem::ImageDataDigest { .. } => "image-data-digest",
            Problem::ImageDigests { .. } => "image-digests",
            Problem::ContainerLayerMissing { .. } => "container-layer-missing",
            Problem::ContainerLayerBroken { .. } => "container-layer-broken",
            Problem::ContainerImageMissing { .. } => "container-image-missing",
            Problem::ContainerImageDamaged { .. } => "container-image-damaged",
            Problem::ContainerData { .. } => "container-data",
            Problem::PendingLayer(_) => "pending-layer",
        }
    }

    /// The layer the problem is about, if it is about one.
    pub fn layer(&self) -> Option<&str> {
        match self {
            Problem::Layer { problem, .. } => problem.layer(),
            Problem::ImageLayerMissing { layer, .. }
            | Problem::ImageLayerBroken { layer, .. }
            | Problem::ContainerLayerMissing { layer, .. }
            | Problem::ContainerLayerBroken { layer, .. } => Some(layer),
            Problem::PendingLayer(pending) => Some(&pending.layer),
            _ => None,
        }
    }

    /// The image the problem is about, if it is about one.
    pub fn image(&self) -> Option<&str> {
        match self {
            Problem::ImageLayerMissing { image, .. }
            | Problem::ImageLayerBroken { image, .. }
            | Problem::ImageDataMissing { image, .. }
            | Problem::ImageDataSize { image, .. }
            | Problem::ImageDataDigest { image, .. }
            | Problem::ImageDigests { image, .. }
            | Problem::ContainerImageMissing { image, .. }
            | Problem::ContainerImageDamaged { image, .. } => Some(image),
            _ => None,
        }
    }

    /// The container the problem is about, if it is about one.
    pub fn container(&self) -> Option<&str> {
        match self {
            Problem::ContainerLayerMissing { container, .. }
            | Problem::ContainerLayerBroken { container, .. }
            | Problem::ContainerImageMissing { container, .. }
            | Problem::ContainerImageDamaged { container, .. }
            | Problem::ContainerData { container, .. } => Some(container),
            _ => None,
        }
    }

    /// The file or directory the problem is about, if it is about one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Problem::Layer { problem, .. } => problem.path(),
            Problem::RecordFile { path, .. }
            | Problem::BadRecord { path, .. }
            | Problem::ImageDataMissing { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The read-write image this problem makes damaged: repair deletes it.
    pub(super) fn damaged_image(&self) -> Option<&str> {
        match self {
            Problem::ImageLayerMissing {
                image,
                read_only: false,
                ..
            }
            | Problem::ImageLayerBroken {
                image,
                read_only: false,
                ..
            }
            | Problem::ImageDataMissing {
                image,
                read_only: false,
                ..
            }
            | Problem::ImageDataSize {
                image,
                read_only: false,
                ..
            }
            | Problem::ImageDataDigest {
                image,
                read_only: false,
                ..
            } => Some(image),
            _ => None,
        }
    }

    /// The container this problem makes damaged (deleted by repair only when asked).
    pub(super) fn damaged_container(&self) -> Option<&str> {
        self.container()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ro = |read_only: &bool| {
            if *read_only {
                "read-only image"
            } else {
                "image"
            }
        };
        match self {
            Problem::Layer {
                store: None,
                problem,
            } => write!(f, "{problem}"),
            Problem::Layer {
                store: Some(root),
                problem,
            } => write!(f, "{problem} (read-only store {})", root.display()),
            Problem::RecordFile { path, detail } => {
                write!(f, "{} cannot be read: {detail}", path.display())
            }
            Problem::BadRecord { path, detail } => {
                write!(f, "{}: unusable record: {detail}", path.display())
            }
            Problem::ImageLayerMissing {
                image,
                layer,
                read_only,
            } => write!(f, "{} {image}: layer {layer} is not known", ro(read_only)),
            Problem::ImageLayerBroken {
                image,
                layer,
                read_only,
            } => write!(f, "{} {image}: layer {layer} is broken", ro(read_only)),
            Problem::ImageDataMissing {
                image,
                key,
                path,
                read_only,
            } => write!(
                f,
                "{} {image}: data item {key:?} is missing ({})",
                ro(read_only),
                path.display()
            ),
            Problem::ImageDataSize {
                image,
                key,
                expected,
                actual,
                read_only,
            } => write!(
                f,
                "{} {image}: data item {key:?} is {actual} bytes, recorded {expected}",
                ro(read_only)
            ),
            Problem::ImageDataDigest {
                image,
                key,
                expected,
                actual,
                read_only,
            } => write!(
                f,
                "{} {image}: data item {key:?} has digest {actual}, recorded {expected}",
                ro(read_only)
            ),
            Problem::ImageDigests {
                image,
                detail,
                read_only,
            } => write!(f, "{} {image}: {detail}", ro(read_only)),
            Problem::ContainerLayerMissing { container, layer } => {
                write!(f, "container {container}: layer {layer} is not known")
            }
            Problem::ContainerLayerBroken { container, layer } => {
                write!(f, "container {container}: layer {layer} is broken")
            }
            Problem::ContainerImageMissing { container, image } => {
                write!(f, "container {container}: image {image} is not known")
            }
            Problem::ContainerImageDamaged { container, image } => {
                write!(f, "container {container}: image {image} is damaged")
            }
            Problem::ContainerData {
                container,
                key,
                detail,
            } => write!(f, "container {container}: data item {key:?} {detail}"),
            Problem::PendingLayer(pending) => {
                let op = match &pending.op {
                    Some(op) => op_text(op),
                    None => "an unknown operation".to_string(),
                };
                let state = if pending.in_use {
                    "in use, its mark left over"
                } else {
                    "used by nothing"
                };
                write!(
                    f,
                    "layer {}: marked by {op} that did not finish ({state})",
                    pending.layer
                )
            }
        }
    }
}

fn op_text(op: &PendingOp) -> String {
    match op {
        PendingOp::CreateContainer(id) => format!("the creation of container {id}"),
        PendingOp::MappedCopy(id) => format!("an ID-mapped copy for image {id}"),
        PendingOp::DeleteImage(id) => format!("the deletion of image {id}"),
        PendingOp::DeleteContainer(id) => format!("the deletion of container {id}"),
    }
}

/// One repair [`Store::repair`] made (or tried).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Repair {
    /// A repair of the read-write layer store.
    Layer(LayerRepair),
    /// Deleted a damaged container (only with [`CheckOptions::remove_containers`]).
    DeleteContainer {
        /// The container.
        id: String,
    },
    /// Deleted a damaged image and the layers only it used.
    DeleteImage {
        /// The image.
        id: String,
        /// The layers deleted with it.
        layers: Vec<String>,
    },
    /// Settled a layer marked by a crashed operation.
    Settle(Settled),
    /// Set a record file that does not load aside (its bytes kept beside it) and replaced it
    /// with an empty one, so the store lists again.
    SetAsideRecordFile {
        /// The record file (`images.json`, `containers.json`).
        path: PathBuf,
        /// Where its bytes are kept.
        kept_as: PathBuf,
        /// The images or containers lost with it, by the directories they left.
        lost: Vec<String>,
    },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::Layer(repair) => write!(f, "{repair}"),
            Repair::DeleteContainer { id } => write!(f, "delete container {id}"),
            Repair::DeleteImage { id, layers } if layers.is_empty() => {
                write!(f, "delete image {id}")
            }
            Repair::DeleteImage { id, layers } => {
                write!(f, "delete image {id} and its layers {}", layers.join(", "))
            }
            Repair::Settle(Settled::Deleted(p)) => {
                write!(
                    f,
                    "delete layer {} (left by a crash, used by nothing)",
                    p.layer
                )
            }
            Repair::SetAsideRecordFile {
                path,
                kept_as,
                lost,
            } => {
                write!(
                    f,
                    "set {} aside as {} and start it empty",
                    path.display(),
                    kept_as.display()
                )?;
                if !lost.is_empty() {
                    write!(f, "; lost with it: {}", lost.join(", "))?;
                }
                Ok(())
            }
            Repair::Settle(Settled::Kept(p)) => {
                write!(f, "unmark layer {} (in use)", p.layer)
            }
        }
    }
}

/// A repair of the whole store and how it went (the layer store's action type, over this
/// crate's [`Repair`]).
pub type Action = layerstore_layers::Action<Repair>;

/// What [`Store::check`] found and [`Store::repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Every problem found: layers (read-write store, then additional ones), record files,
    /// images, containers, marked layers.
    pub problems: Vec<Problem>,
    /// The repairs made or tried, in order (empty for [`Store::check`]).
    pub actions: Vec<Action>,
    /// What a check finds now: all of `problems` for [`Store::check`], what a check after
    /// the repairs found for [`Store::repair`].
    pub remaining: Vec<Problem>,
}

impl CheckReport {
    /// Whether the store is sound now.
    pub fn is_clean(&self) -> bool {
        self.remaining.is_empty()
    }
}
