//! [`Store::check`] and [`Store::repair`]: the whole store checked (layers, images,
//! containers, the references between them, the marks of crashed operations), and repaired
//! without ever deleting a layer that an image or container still uses.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use layerstore_layers::{Beyond, LayerRecords, Problem as LayerProblem, Repair as LayerRepair};
use layerstore_model::{Container, Image, big_data_file_name, is_manifest_key};
use layerstore_recordstore::canonical_digest;

use crate::error::Result;
use crate::layers::find_layer;
use crate::pending::{PendingLayer, PendingOp, Settled};
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
    fn layer_options(&self, repair: bool) -> layerstore_layers::CheckOptions {
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
    fn damaged_image(&self) -> Option<&str> {
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
    fn damaged_container(&self) -> Option<&str> {
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

/// A repair and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// What was done.
    pub repair: Repair,
    /// `None` when it succeeded, else why it failed (or why it was not done).
    pub error: Option<String>,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            None => write!(f, "repaired: {}", self.repair),
            Some(e) => write!(f, "failed to {}: {e}", self.repair),
        }
    }
}

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

impl Store {
    /// Checks the whole store (see [`CheckOptions`]) and changes nothing.
    /// Errors are for what stops the check itself (a lock, an unreadable `layers.json`);
    /// what is wrong is in the report.
    pub fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        let problems = self.find_problems(options)?;
        Ok(CheckReport {
            remaining: problems.clone(),
            problems,
            actions: Vec::new(),
        })
    }

    /// Checks the whole store and repairs what it can, never deleting a layer that an image
    /// or container uses (see [`CheckOptions`]); then checks again.
    pub fn repair(&self, options: &CheckOptions) -> Result<CheckReport> {
        let problems = self.find_problems(options)?;
        let mut actions = Vec::new();

        // A record file that does not load: kept aside byte for byte, started empty, what it
        // held listed (the read-write store's only; an additional store is never written).
        for problem in &problems {
            let Problem::RecordFile { path, .. } = problem else {
                continue;
            };
            let result = if path == self.images.images_json() {
                self.images.set_aside_damaged().map_err(crate::Error::from)
            } else if path == self.containers.containers_json() {
                self.containers
                    .set_aside_damaged()
                    .map_err(crate::Error::from)
            } else {
                continue;
            };
            match result {
                Ok(files) => actions.extend(files.into_iter().map(|file| Action {
                    repair: Repair::SetAsideRecordFile {
                        path: file.path,
                        kept_as: file.kept_as,
                        lost: file.lost,
                    },
                    error: None,
                })),
                Err(e) => actions.push(Action {
                    repair: Repair::SetAsideRecordFile {
                        path: path.clone(),
                        kept_as: PathBuf::new(),
                        lost: Vec::new(),
                    },
                    error: Some(e.to_string()),
                }),
            }
        }

        if options.remove_containers {
            let damaged: Vec<&str> = unique(problems.iter().filter_map(Problem::damaged_container));
            for id in damaged {
                let result = self.delete_container(id);
                actions.push(Action {
                    repair: Repair::DeleteContainer { id: id.to_owned() },
                    error: result.err().map(|e| e.to_string()),
                });
            }
        }

        let damaged: Vec<&str> = unique(problems.iter().filter_map(Problem::damaged_image));
        for id in damaged {
            let (layers, error) = match self.delete_image(id, true) {
                Ok(layers) => (layers, None),
                Err(e) => (Vec::new(), Some(format!("kept: {e}"))),
            };
            actions.push(Action {
                repair: Repair::DeleteImage {
                    id: id.to_owned(),
                    layers,
                },
                error,
            });
        }

        // Broken layers go, except those a remaining image or container uses: decided under
        // the exclusive layer lock and the image and container locks (Go's order), so that
        // nothing can start using a layer between the decision and the deletion.
        {
            let mut layers = self.layers.write_session()?;
            let additional_layers = self.additional_layer_readers()?;
            let images = self.images.read();
            let additional_images = self.additional_image_readers();
            let containers = self.containers.read();
            // Without the records of what uses the layers, no layer is deleted: the damaged
            // record file stays a problem in the report.
            if let (Ok(images), Ok(additional_images), Ok(containers)) =
                (images, additional_images, containers)
            {
                {
                    let mut beyond = Beyond::default();
                    let keep = &mut beyond.keep;
                    for image in images
                        .images()
                        .chain(additional_images.iter().flat_map(|r| r.images()))
                    {
                        keep.insert(image.top_layer.clone());
                        keep.extend(image.mapped_top_layers.iter().cloned());
                    }
                    keep.extend(containers.containers().map(|c| c.layer_id.clone()));
                    keep.remove("");
                    for additional in &additional_layers {
                        let records = additional.records();
                        let ids = records.layers().map(|l| l.id.clone());
                        beyond.other_layers.extend(ids);
                    }
                    let report = layers.check(&options.layer_options(true), &beyond)?;
                    actions.extend(report.actions.into_iter().map(|a| Action {
                        repair: Repair::Layer(a.repair),
                        error: a.error,
                    }));
                }
            }
        }

        if problems
            .iter()
            .any(|p| matches!(p, Problem::PendingLayer(_)))
        {
            match self.settle_pending() {
                Ok(settled) => actions.extend(settled.into_iter().map(|s| Action {
                    repair: Repair::Settle(s),
                    error: None,
                })),
                Err(e) => actions.push(Action {
                    repair: Repair::Settle(Settled::Deleted(PendingLayer {
                        layer: "-".into(),
                        op: None,
                        in_use: false,
                    })),
                    error: Some(e.to_string()),
                }),
            }
        }

        let remaining = self.find_problems(options)?;
        Ok(CheckReport {
            problems,
            actions,
            remaining,
        })
    }

    fn find_problems(&self, options: &CheckOptions) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let layer_options = options.layer_options(false);
        let mut found: Vec<(Option<PathBuf>, LayerProblem)> = Vec::new();
        let report = self.layers.check(&layer_options)?;
        found.extend(report.problems.into_iter().map(|p| (None, p)));
        for (index, additional) in self.additional.iter().enumerate() {
            let report = self.additional_layer_store(index)?.check(&layer_options)?;
            let root = additional.root().to_path_buf();
            found.extend(report.problems.into_iter().map(|p| (Some(root.clone()), p)));
        }

        // The records, read under shared locks in Go's order. A record file that does not
        // load is a problem, not an error: the rest is still checked.
        let layers = self.layers.read_session()?;
        let additional_layers = self.additional_layer_readers()?;
        let mut stores: Vec<LayerRecords<'_>> = vec![layers.records()];
        stores.extend(additional_layers.iter().map(|r| r.records()));

        // Each layer store's own check knows only itself: a parent in another layer store is
        // no missing parent, and the driver (the read-write store's, shared) holding another
        // store's layer holds no orphan.
        let mut broken: HashSet<String> = HashSet::new();
        for (store, problem) in found {
            let elsewhere = match &problem {
                LayerProblem::MissingParent { parent, .. } => Some(parent),
                LayerProblem::OrphanLayerData { id } => Some(id),
                _ => None,
            };
            if elsewhere.is_some_and(|id| find_layer(&stores, id).is_some()) {
                continue;
            }
            if problem.breaks_layer()
                && let Some(id) = problem.layer()
            {
                broken.insert(id.to_owned());
            }
            problems.push(Problem::Layer { store, problem });
        }
        let images = self.images.read();
        let additional_images: Vec<_> = self.additional.iter().map(|a| a.images().read()).collect();
        let containers = self.containers.read();

        let mut known_images: HashSet<&str> = HashSet::new();
        let mut damaged_images: HashSet<String> = HashSet::new();
        let mut all_images: Vec<&Image> = Vec::new();
        let read_write =
            std::iter::once((self.images.images_json(), self.images.dir(), &images, false));
        let read_only = additional_images
            .iter()
            .zip(&self.additional)
            .map(|(r, a)| (a.images().images_json(), a.images().dir(), r, true));
        for (path, dir, reader, read_only) in read_write.chain(read_only) {
            let path = path.to_path_buf();
            let reader = match reader {
                Ok(reader) => reader,
                Err(e) => {
                    problems.push(Problem::RecordFile {
                        path,
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            for bad in reader.bad_records() {
                problems.push(Problem::BadRecord {
                    path: path.clone(),
                    detail: bad_record_text(bad),
                });
            }
            for image in reader.images() {
                // The first store's copy of an ID is the one used, as Go examines it.
                if !known_images.insert(&image.id) {
                    continue;
                }
                all_images.push(image);
                let start = problems.len();
                check_image_layers(image, &stores, &broken, read_only, &mut problems);
                self.check_image_data(image, reader, dir, read_only, &mut problems);
                if problems.len() > start {
                    damaged_images.insert(image.id.clone());
                }
            }
        }

        match &containers {
            Ok(reader) => {
                let path = self.containers.containers_json().to_path_buf();
                for bad in reader.bad_records() {
                    problems.push(Problem::BadRecord {
                        path: path.clone(),
                        detail: bad_record_text(bad),
                    });
                }
                for container in reader.containers() {
                    self.check_container(
                        container,
                        reader,
                        &stores,
                        &broken,
                        (&known_images, &damaged_images),
                        &mut problems,
                    );
                }
                let pending = crate::pending::find_pending(
                    layers.records(),
                    all_images.iter().copied(),
                    reader.containers().map(|c| c.layer_id.as_str()),
                );
                problems.extend(pending.into_iter().map(Problem::PendingLayer));
            }
            Err(e) => problems.push(Problem::RecordFile {
                path: self.containers.containers_json().to_path_buf(),
                detail: e.to_string(),
            }),
        }
        Ok(problems)
    }

    fn check_image_data(
        &self,
        image: &Image,
        reader: &layerstore_images::ImageReader<'_>,
        dir: &std::path::Path,
        read_only: bool,
        problems: &mut Vec<Problem>,
    ) {
        if let Err(e) = image.digests() {
            problems.push(Problem::ImageDigests {
                image: image.id.clone(),
                detail: e.to_string(),
                read_only,
            });
        }
        for key in &image.big_data_names {
            let data = match reader.big_data(&image.id, key) {
                Ok(data) => data,
                Err(_) => {
                    problems.push(Problem::ImageDataMissing {
                        image: image.id.clone(),
                        key: key.clone(),
                        path: dir.join(&image.id).join(big_data_file_name(key)),
                        read_only,
                    });
                    continue;
                }
            };
            if let Some(&expected) = image.big_data_sizes.get(key)
                && u64::try_from(expected).ok() != Some(data.len() as u64)
            {
                problems.push(Problem::ImageDataSize {
                    image: image.id.clone(),
                    key: key.clone(),
                    expected,
                    actual: data.len() as u64,
                    read_only,
                });
            }
            if let Some(expected) = image.big_data_digests.get(key) {
                let actual = canonical_digest(&data).as_str().to_owned();
                let unsigned_schema1 = is_manifest_key(key) && is_schema1(&data);
                if &actual != expected && !unsigned_schema1 {
                    problems.push(Problem::ImageDataDigest {
                        image: image.id.clone(),
                        key: key.clone(),
                        expected: expected.clone(),
                        actual,
                        read_only,
                    });
                }
            }
        }
    }

    fn check_container(
        &self,
        container: &Container,
        reader: &layerstore_containers::ContainerReader<'_>,
        stores: &[LayerRecords<'_>],
        broken: &HashSet<String>,
        (known_images, damaged_images): (&HashSet<&str>, &HashSet<String>),
        problems: &mut Vec<Problem>,
    ) {
        let id = &container.id;
        match layer_chain(stores, &container.layer_id) {
            Err(missing) => problems.push(Problem::ContainerLayerMissing {
                container: id.clone(),
                layer: missing,
            }),
            Ok(chain) => {
                if let Some(layer) = chain.iter().find(|l| broken.contains(*l)) {
                    problems.push(Problem::ContainerLayerBroken {
                        container: id.clone(),
                        layer: layer.clone(),
                    });
                }
            }
        }
        if !container.image_id.is_empty() {
            if !known_images.contains(container.image_id.as_str()) {
                problems.push(Problem::ContainerImageMissing {
                    container: id.clone(),
                    image: container.image_id.clone(),
                });
            } else if damaged_images.contains(&container.image_id) {
                problems.push(Problem::ContainerImageDamaged {
                    container: id.clone(),
                    image: container.image_id.clone(),
                });
            }
        }
        for key in &container.big_data_names {
            let detail = match reader.big_data(id, key) {
                Err(_) => Some("is missing".to_string()),
                Ok(data) => {
                    let size = container.big_data_sizes.get(key).copied();
                    let digest = container.big_data_digests.get(key);
                    let actual = canonical_digest(&data).as_str().to_owned();
                    if size.is_some_and(|s| u64::try_from(s).ok() != Some(data.len() as u64)) {
                        Some(format!(
                            "is {} bytes, recorded {}",
                            data.len(),
                            size.unwrap_or_default()
                        ))
                    } else if digest.is_some_and(|d| *d != actual) {
                        Some(format!(
                            "has digest {actual}, recorded {}",
                            digest.map(String::as_str).unwrap_or_default()
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some(detail) = detail {
                problems.push(Problem::ContainerData {
                    container: id.clone(),
                    key: key.clone(),
                    detail,
                });
            }
        }
    }
}

/// The image's top layer, its ID-mapped layers and what lies below them: missing or broken.
fn check_image_layers(
    image: &Image,
    stores: &[LayerRecords<'_>],
    broken: &HashSet<String>,
    read_only: bool,
    problems: &mut Vec<Problem>,
) {
    let tops = std::iter::once(&image.top_layer)
        .chain(&image.mapped_top_layers)
        .filter(|t| !t.is_empty());
    let mut reported: HashSet<String> = HashSet::new();
    for top in tops {
        match layer_chain(stores, top) {
            Err(layer) => {
                if reported.insert(layer.clone()) {
                    problems.push(Problem::ImageLayerMissing {
                        image: image.id.clone(),
                        layer,
                        read_only,
                    });
                }
            }
            Ok(chain) => {
                for layer in chain.into_iter().filter(|l| broken.contains(l)) {
                    if reported.insert(layer.clone()) {
                        problems.push(Problem::ImageLayerBroken {
                            image: image.id.clone(),
                            layer,
                            read_only,
                        });
                    }
                }
            }
        }
    }
}

/// The IDs from `top` down its parents, across the layer stores; `Err` names the first layer
/// no store knows. A parent cycle (a broken layer the layer check reports) ends the walk.
fn layer_chain(stores: &[LayerRecords<'_>], top: &str) -> std::result::Result<Vec<String>, String> {
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut current = top.to_owned();
    while !current.is_empty() && seen.insert(current.clone()) {
        let Some((_, layer)) = find_layer(stores, &current) else {
            return Err(current);
        };
        chain.push(layer.id.clone());
        current = layer.parent.clone();
    }
    Ok(chain)
}

/// Whether a manifest is of schema 1, whose digest leaves its signatures out (so it is not
/// the sha256 of the file).
fn is_schema1(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("schemaVersion").and_then(serde_json::Value::as_i64))
        == Some(1)
}

/// The distinct items of `items`, in first-seen order.
fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: HashSet<&str> = HashSet::new();
    items.filter(|i| seen.insert(i)).collect()
}

fn bad_record_text(bad: &layerstore_recordstore::BadRecord) -> String {
    match &bad.id {
        Some(id) => format!("record {} ({id:?}): {}", bad.index, bad.problem),
        None => format!("record {}: {}", bad.index, bad.problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema1_manifests_are_recognised() {
        assert!(is_schema1(br#"{"schemaVersion": 1, "signatures": []}"#));
        assert!(!is_schema1(br#"{"schemaVersion": 2}"#));
        assert!(!is_schema1(b"not json"));
    }

    #[test]
    fn unique_keeps_the_first_of_each() {
        assert_eq!(
            unique(["a", "b", "a", "c", "b"].into_iter()),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn problems_name_what_they_are_about_and_which_ones_damage_what() {
        let image = Problem::ImageLayerBroken {
            image: "i".into(),
            layer: "l".into(),
            read_only: false,
        };
        assert_eq!((image.image(), image.layer()), (Some("i"), Some("l")));
        assert_eq!(image.damaged_image(), Some("i"));
        assert_eq!(image.kind(), "image-layer-broken");
        assert_eq!(image.to_string(), "image i: layer l is broken");
        let read_only = Problem::ImageDataMissing {
            image: "i".into(),
            key: "k".into(),
            path: "/s/i/k".into(),
            read_only: true,
        };
        assert_eq!(
            read_only.damaged_image(),
            None,
            "a read-only image is never repaired"
        );
        assert!(read_only.to_string().starts_with("read-only image i:"));
        let container = Problem::ContainerImageMissing {
            container: "c".into(),
            image: "i".into(),
        };
        assert_eq!(container.damaged_container(), Some("c"));
        assert_eq!(container.damaged_image(), None);
        let file = Problem::RecordFile {
            path: "/g/vfs-images/images.json".into(),
            detail: "unexpected end".into(),
        };
        assert!(file.to_string().contains("/g/vfs-images/images.json"));
        assert_eq!(
            file.path(),
            Some(std::path::Path::new("/g/vfs-images/images.json"))
        );
    }
}
