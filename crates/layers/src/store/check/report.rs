//! What [`LayerStore::check`](crate::LayerStore::check) reports: its options, the problems it
//! finds, the repairs it makes.

use std::fmt;
use std::path::{Path, PathBuf};

use layerstore_model::Digest;

/// What [`LayerStore::check`](crate::LayerStore::check) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Rebuild every layer's diff from its tar-split records and the layer's files, and compare
    /// its sha256 and size with the record (streamed, never held). Without it (Go's `-q`,
    /// "quick"), only the presence of the tar-split file is checked. Default: on.
    pub verify_contents: bool,
    /// Repair what is found: under the write lock, delete broken layers (their descendants
    /// first), orphaned driver data, tar-split files, big-data directories and stale temp
    /// files; fix names given to several layers and mount counts the kernel disagrees with.
    /// Default: off.
    pub repair: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            verify_contents: true,
            repair: false,
        }
    }
}

impl CheckOptions {
    /// The default checks, repairing what they find.
    pub fn repair() -> Self {
        CheckOptions {
            repair: true,
            ..CheckOptions::default()
        }
    }
}

/// One thing [`LayerStore::check`](crate::LayerStore::check) found wrong. Each names the layer
/// and/or path involved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The record is flagged `incomplete`: a creation or deletion that never finished.
    IncompleteLayer {
        /// The layer.
        id: String,
    },
    /// A record of `layers.json` that is not a usable layer (a field does not decode, e.g. an
    /// invalid digest, or its ID could not name a file). The store keeps it as it is; repair
    /// moves it to `<driver>-layers/layers.set-aside.json`.
    UnreadableRecord {
        /// Its position in `layers.json`.
        index: usize,
        /// Its `id`, if it has a string one.
        id: Option<String>,
        /// Why it cannot be used.
        detail: String,
    },
    /// A layer whose ID breaks the store's rule (written by a tool that accepts any string):
    /// listed, but its files are never touched. Repair moves the record to
    /// `<driver>-layers/layers.set-aside.json` (unless other layers name it as their parent)
    /// and leaves its files, which the next check reports as orphans.
    UnsafeId {
        /// The layer.
        id: String,
        /// What the rule says about it.
        detail: String,
    },
    /// The driver has no files for the layer.
    MissingLayerData {
        /// The layer.
        id: String,
    },
    /// The layer is its own ancestor: its parent chain (a hand-edited record) comes back to it.
    /// Repair deletes every layer of the cycle and what stands on them.
    ParentCycle {
        /// The layer.
        id: String,
        /// The cycle, starting at `id`, each layer followed by its parent.
        cycle: Vec<String>,
    },
    /// The layer's parent has no record.
    MissingParent {
        /// The layer.
        id: String,
        /// The parent it names.
        parent: String,
    },
    /// The layer records a diff digest but has no `<id>.tar-split.gz`, so it cannot give its
    /// diff back.
    MissingTarSplit {
        /// The layer.
        id: String,
        /// The missing file.
        path: PathBuf,
    },
    /// The tar-split file does not decode (truncated gzip, bad JSON line, ...).
    CorruptTarSplit {
        /// The layer.
        id: String,
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        detail: String,
    },
    /// A file the tar-split records name is missing from the layer, or its size or CRC-64
    /// differs from what was applied.
    ModifiedContent {
        /// The layer.
        id: String,
        /// Which file and how.
        detail: String,
    },
    /// The rebuilt diff does not have the recorded uncompressed digest.
    DigestMismatch {
        /// The layer.
        id: String,
        /// The record's `diff-digest`.
        expected: Digest,
        /// The digest of the rebuilt diff.
        actual: Digest,
    },
    /// The rebuilt diff does not have the recorded uncompressed size.
    SizeMismatch {
        /// The layer.
        id: String,
        /// The record's `diff-size`.
        expected: i64,
        /// The size of the rebuilt diff.
        actual: u64,
    },
    /// A big-data item the record lists has no file.
    MissingBigData {
        /// The layer.
        id: String,
        /// The item's key.
        key: String,
        /// Where its file should be.
        path: PathBuf,
    },
    /// Several records give themselves the same name (the last one keeps it, as Go decides).
    DuplicateName {
        /// The name.
        name: String,
        /// The layers that have it, in record order.
        ids: Vec<String>,
    },
    /// The driver holds a layer that has no record.
    OrphanLayerData {
        /// The driver's name for it.
        id: String,
    },
    /// `<id>.tar-split.gz` without a record.
    OrphanTarSplit {
        /// The file.
        path: PathBuf,
    },
    /// A big-data directory `<id>/` without a record.
    OrphanBigData {
        /// The directory.
        path: PathBuf,
    },
    /// A temp file left by an atomic write that never finished (no write is in progress
    /// while the check holds the lock).
    StaleTempFile {
        /// The file.
        path: PathBuf,
    },
    /// Something the store never makes where it keeps its files (a symlink, FIFO, socket or
    /// device in `<driver>-layers/` or a big-data directory). It is never followed or read;
    /// repair removes the entry itself.
    UnexpectedFile {
        /// The entry.
        path: PathBuf,
        /// What it is (`a symlink`, `a FIFO`, ...).
        found: &'static str,
    },
    /// `mountpoints.json` counts mounts of the layer, but its mount point is not in the mount
    /// table.
    StaleMountCount {
        /// The layer.
        id: String,
        /// The recorded mount point.
        path: PathBuf,
        /// The recorded count.
        count: u32,
    },
    /// A record of `mountpoints.json` the store does not apply: its path is not where the
    /// driver mounts that layer (`/`, a host directory, a path through a symlink out of the
    /// driver's home), or it does not decode (a count beyond `u32`). Repair drops it; nothing
    /// is unmounted for it.
    UntrustedMountRecord {
        /// The layer it names.
        id: String,
        /// The path it records.
        path: PathBuf,
    },
    /// The layer is mounted in the kernel but `mountpoints.json` counts no mount.
    UncountedMount {
        /// The layer.
        id: String,
        /// The mount point.
        path: PathBuf,
    },
}

impl Problem {
    /// A stable kebab-case name of the kind of problem (`missing-tar-split`, ...), for
    /// scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::IncompleteLayer { .. } => "incomplete-layer",
            Problem::UnreadableRecord { .. } => "unreadable-record",
            Problem::UnsafeId { .. } => "unsafe-id",
            Problem::MissingLayerData { .. } => "missing-layer-data",
            Problem::ParentCycle { .. } => "parent-cycle",
            Problem::MissingParent { .. } => "missing-parent",
            Problem::MissingTarSplit { .. } => "missing-tar-split",
            Problem::CorruptTarSplit { .. } => "corrupt-tar-split",
            Problem::ModifiedContent { .. } => "modified-content",
            Problem::DigestMismatch { .. } => "digest-mismatch",
            Problem::SizeMismatch { .. } => "size-mismatch",
            Problem::MissingBigData { .. } => "missing-big-data",
            Problem::DuplicateName { .. } => "duplicate-name",
            Problem::OrphanLayerData { .. } => "orphan-layer-data",
            Problem::OrphanTarSplit { .. } => "orphan-tar-split",
            Problem::OrphanBigData { .. } => "orphan-big-data",
            Problem::StaleTempFile { .. } => "stale-temp-file",
            Problem::UnexpectedFile { .. } => "unexpected-file",
            Problem::StaleMountCount { .. } => "stale-mount-count",
            Problem::UntrustedMountRecord { .. } => "untrusted-mount-record",
            Problem::UncountedMount { .. } => "uncounted-mount",
        }
    }

    /// The layer the problem is about, if it is about one.
    pub fn layer(&self) -> Option<&str> {
        match self {
            Problem::UnreadableRecord { id, .. } => id.as_deref(),
            Problem::IncompleteLayer { id }
            | Problem::UnsafeId { id, .. }
            | Problem::MissingLayerData { id }
            | Problem::ParentCycle { id, .. }
            | Problem::MissingParent { id, .. }
            | Problem::MissingTarSplit { id, .. }
            | Problem::CorruptTarSplit { id, .. }
            | Problem::ModifiedContent { id, .. }
            | Problem::DigestMismatch { id, .. }
            | Problem::SizeMismatch { id, .. }
            | Problem::MissingBigData { id, .. }
            | Problem::OrphanLayerData { id }
            | Problem::StaleMountCount { id, .. }
            | Problem::UntrustedMountRecord { id, .. }
            | Problem::UncountedMount { id, .. } => Some(id),
            Problem::DuplicateName { .. }
            | Problem::OrphanTarSplit { .. }
            | Problem::OrphanBigData { .. }
            | Problem::StaleTempFile { .. }
            | Problem::UnexpectedFile { .. } => None,
        }
    }

    /// The file or directory the problem is about, if it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Problem::MissingTarSplit { path, .. }
            | Problem::CorruptTarSplit { path, .. }
            | Problem::MissingBigData { path, .. }
            | Problem::OrphanTarSplit { path }
            | Problem::OrphanBigData { path }
            | Problem::StaleTempFile { path }
            | Problem::UnexpectedFile { path, .. }
            | Problem::StaleMountCount { path, .. }
            | Problem::UntrustedMountRecord { path, .. }
            | Problem::UncountedMount { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Whether the layer named by [`layer`](Self::layer) cannot be trusted to give its diff
    /// back (or to exist at all): repair deletes it, and its descendants.
    pub fn breaks_layer(&self) -> bool {
        matches!(
            self,
            Problem::IncompleteLayer { .. }
                | Problem::MissingLayerData { .. }
                | Problem::ParentCycle { .. }
                | Problem::MissingParent { .. }
                | Problem::MissingTarSplit { .. }
                | Problem::CorruptTarSplit { .. }
                | Problem::ModifiedContent { .. }
                | Problem::DigestMismatch { .. }
                | Problem::SizeMismatch { .. }
                | Problem::MissingBigData { .. }
        )
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::IncompleteLayer { id } => {
                write!(
                    f,
                    "layer {id}: flagged incomplete (an unfinished create or delete)"
                )
            }
            Problem::UnreadableRecord { index, id, detail } => match id {
                Some(id) => write!(f, "record {index} (layer {id:?}) of layers.json: {detail}"),
                None => write!(f, "record {index} of layers.json: {detail}"),
            },
            Problem::UnsafeId { id, detail } => write!(
                f,
                "layer {id:?}: {detail}; its files are not checked or touched"
            ),
            Problem::MissingLayerData { id } => write!(f, "layer {id}: the driver has no files"),
            Problem::ParentCycle { id, cycle } => write!(
                f,
                "layer {id}: is its own ancestor (parents: {} -> {id})",
                cycle.join(" -> ")
            ),
            Problem::MissingParent { id, parent } => {
                write!(f, "layer {id}: parent {parent} has no record")
            }
            Problem::MissingTarSplit { id, path } => {
                write!(f, "layer {id}: tar-split {} is missing", path.display())
            }
            Problem::CorruptTarSplit { id, path, detail } => {
                write!(
                    f,
                    "layer {id}: tar-split {} is corrupt: {detail}",
                    path.display()
                )
            }
            Problem::ModifiedContent { id, detail } => {
                write!(f, "layer {id}: content modified: {detail}")
            }
            Problem::DigestMismatch {
                id,
                expected,
                actual,
            } => write!(
                f,
                "layer {id}: diff digest is {actual}, recorded {expected}"
            ),
            Problem::SizeMismatch {
                id,
                expected,
                actual,
            } => write!(
                f,
                "layer {id}: diff size is {actual} bytes, recorded {expected}"
            ),
            Problem::MissingBigData { id, key, path } => write!(
                f,
                "layer {id}: big-data item {key:?} is missing ({})",
                path.display()
            ),
            Problem::DuplicateName { name, ids } => {
                write!(f, "name {name:?} is given to layers {}", ids.join(", "))
            }
            Problem::OrphanLayerData { id } => {
                write!(f, "layer {id}: driver data without a record")
            }
            Problem::OrphanTarSplit { path } => {
                write!(f, "{}: tar-split without a record", path.display())
            }
            Problem::OrphanBigData { path } => {
                write!(f, "{}: big-data directory without a record", path.display())
            }
            Problem::StaleTempFile { path } => {
                write!(f, "{}: temp file of an unfinished write", path.display())
            }
            Problem::UnexpectedFile { path, found } => {
                write!(
                    f,
                    "{}: {found} where the store keeps its own files",
                    path.display()
                )
            }
            Problem::StaleMountCount { id, path, count } => write!(
                f,
                "layer {id}: counted as mounted {count} time(s) at {}, which is not mounted",
                path.display()
            ),
            Problem::UntrustedMountRecord { id, path } => write!(
                f,
                "layer {id}: mountpoints.json records a mount at {}, which is not where the driver mounts it",
                path.display()
            ),
            Problem::UncountedMount { id, path } => write!(
                f,
                "layer {id}: mounted at {} but counted as not mounted",
                path.display()
            ),
        }
    }
}

/// One repair [`LayerStore::check`](crate::LayerStore::check) made (or tried).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Repair {
    /// Moved a record from `layers.json` to `<driver>-layers/layers.set-aside.json`, its files
    /// left as they are.
    SetAside {
        /// The record's ID, if it has one.
        id: Option<String>,
        /// Its position in `layers.json`, for a record that does not decode.
        index: Option<usize>,
    },
    /// Deleted a layer: files, tar-split, big data, record.
    DeleteLayer {
        /// The layer.
        id: String,
        /// Set when the layer itself was fine but descends from this broken layer.
        descends_from: Option<String>,
    },
    /// Removed driver data that had no record.
    RemoveLayerData {
        /// The driver's name for it.
        id: String,
    },
    /// Removed an orphaned or temp file.
    RemoveFile {
        /// The file.
        path: PathBuf,
    },
    /// Removed an orphaned big-data directory.
    RemoveDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// Took a name from a layer that shared it with a later one.
    DropName {
        /// The name.
        name: String,
        /// The layer that lost it.
        id: String,
    },
    /// Dropped a record of `mountpoints.json` the store does not apply.
    DropMountRecord {
        /// The layer it names.
        id: String,
        /// The path it recorded.
        path: PathBuf,
    },
    /// Set the mount count of a layer that is not mounted to 0.
    ResetMountCount {
        /// The layer.
        id: String,
    },
    /// Unmounted a mount nothing counted.
    Unmount {
        /// The layer.
        id: String,
        /// The mount point.
        path: PathBuf,
    },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::DeleteLayer {
                id,
                descends_from: None,
            } => write!(f, "delete layer {id}"),
            Repair::DeleteLayer {
                id,
                descends_from: Some(broken),
            } => write!(f, "delete layer {id} (descends from broken layer {broken})"),
            Repair::SetAside { id: Some(id), .. } => {
                write!(f, "set the record of layer {id:?} aside")
            }
            Repair::SetAside { id: None, index } => write!(
                f,
                "set record {} of layers.json aside",
                index.unwrap_or_default()
            ),
            Repair::RemoveLayerData { id } => write!(f, "remove driver data of layer {id}"),
            Repair::RemoveFile { path } => write!(f, "remove {}", path.display()),
            Repair::RemoveDirectory { path } => write!(f, "remove directory {}", path.display()),
            Repair::DropName { name, id } => write!(f, "drop name {name:?} from layer {id}"),
            Repair::ResetMountCount { id } => write!(f, "reset the mount count of layer {id}"),
            Repair::DropMountRecord { id, path } => write!(
                f,
                "drop the mount record of layer {id} at {}",
                path.display()
            ),
            Repair::Unmount { id, path } => {
                write!(f, "unmount layer {id} from {}", path.display())
            }
        }
    }
}

/// A repair and how it went. Generic over the kind of repair, so that the whole Store's
/// check (crates/layerstore), whose repairs also touch images and containers, reports its
/// actions with this same type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action<R = Repair> {
    /// What was done.
    pub repair: R,
    /// `None` when it succeeded, else why it failed (or why it was not done).
    pub error: Option<String>,
}

impl<R: fmt::Display> fmt::Display for Action<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            None => write!(f, "repaired: {}", self.repair),
            Some(e) => write!(f, "failed to {}: {e}", self.repair),
        }
    }
}

/// What [`LayerStore::check`](crate::LayerStore::check) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Every problem found, in a stable order: per layer in record order, then names, then
    /// orphans and temp files (by path), then mounts.
    pub problems: Vec<Problem>,
    /// The repairs made or tried, in order (empty without [`CheckOptions::repair`]).
    pub actions: Vec<Action>,
    /// The problems still there: all of them without repair, those whose repair failed with.
    pub remaining: Vec<Problem>,
}

impl CheckReport {
    /// Whether the store is sound now: nothing found, or everything found repaired.
    pub fn is_clean(&self) -> bool {
        self.remaining.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_names_what_it_is_about() {
        let problems = [
            Problem::IncompleteLayer { id: "a".into() },
            Problem::OrphanTarSplit {
                path: "/x/b.tar-split.gz".into(),
            },
            Problem::DuplicateName {
                name: "n".into(),
                ids: vec!["a".into(), "b".into()],
            },
        ];
        assert_eq!(problems[0].layer(), Some("a"));
        assert!(problems[0].breaks_layer());
        assert!(problems[1].to_string().contains("/x/b.tar-split.gz"));
        assert!(!problems[1].breaks_layer());
        assert!(problems[2].to_string().contains("a, b"));
        assert_eq!(problems[2].kind(), "duplicate-name");
    }
}
