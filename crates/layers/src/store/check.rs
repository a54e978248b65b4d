//! [`LayerStore::check`]: finds what is broken or left over in a store and, when asked, repairs
//! it. See [`CheckOptions`] for what is checked and how it differs from Go's `Store.Check`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use layerstore_lockfile::WriteGuard;
use layerstore_model::{Digest, DigestAlgorithm, Layer, validate_store_id};
use rustix::fs::FileType;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::LayerStore;
use super::{is_temp_name, tar_split_name, usable};
use crate::error::{Error, Result};
use crate::files::{StoreDir, big_data_file_name};
use crate::records::{self, SetAside};
use crate::state::State;

/// Drivers whose [`get`](layerstore_driver::Driver::get) makes a kernel mount, so that a mount
/// count can be compared with the mount table. vfs and btrfs hand out a directory.
const MOUNTING_DRIVERS: &[&str] = &["overlay"];

/// What [`LayerStore::check`] does.
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

/// One thing [`LayerStore::check`] found wrong. Each names the layer and/or path involved.
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

/// One repair [`LayerStore::check`] made (or tried).
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

/// A repair and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// What was done.
    pub repair: Repair,
    /// `None` when it succeeded, else why it failed.
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

/// What [`LayerStore::check`] found and did.
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

/// One entry of `/proc/self/mountinfo` we care about: the mount point.
fn mount_points() -> Result<HashSet<PathBuf>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read(path).map_err(|e| Error::io("read", path, e))?;
    Ok(parse_mountinfo(&text))
}

/// The mount points (5th field, octal escapes decoded) of a mountinfo table.
fn parse_mountinfo(text: &[u8]) -> HashSet<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    text.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsString::from_vec(unescape_octal(field))))
        .collect()
}

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash) in mountinfo fields.
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// A hasher for any digest algorithm a record may name, fed as a `Write`.
enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    fn finish(self) -> Result<Digest> {
        Ok(match self {
            Hasher::Sha256(h) => Digest::from_hash(DigestAlgorithm::Sha256, &h.finalize())?,
            Hasher::Sha384(h) => Digest::from_hash(DigestAlgorithm::Sha384, &h.finalize())?,
            Hasher::Sha512(h) => Digest::from_hash(DigestAlgorithm::Sha512, &h.finalize())?,
        })
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Hasher::Sha256(h) => h.update(buf),
            Hasher::Sha384(h) => h.update(buf),
            Hasher::Sha512(h) => h.update(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether a tar-split failure is about the layer's files rather than the tar-split file.
fn is_content_error(err: &layerstore_tarsplit::Error) -> bool {
    use layerstore_tarsplit::Error as E;
    matches!(err, E::Checksum { .. } | E::Size { .. } | E::File { .. })
}

/// The first path component of `path` below `home`, if `path` is strictly below it.
fn component_below<'p>(home: &Path, path: &'p Path) -> Option<&'p str> {
    path.strip_prefix(home)
        .ok()?
        .components()
        .next()?
        .as_os_str()
        .to_str()
}

impl LayerStore {
    /// Checks the whole store and, with [`CheckOptions::repair`], repairs it.
    ///
    /// For every layer record: not flagged incomplete; the driver has its files; its parent
    /// has a record; its big-data items have files; when it records a diff digest, its
    /// `<id>.tar-split.gz` exists and (with [`CheckOptions::verify_contents`]) rebuilds,
    /// through the driver's file getter, into a stream with the recorded uncompressed digest
    /// and size (hashed and counted as it streams; nothing is kept). Then: names are unique;
    /// the driver holds no layer without a record (`list_layers`); `<driver>-layers/` holds no
    /// tar-split file or big-data directory without a record and no temp file of an
    /// unfinished atomic write (nor do the big-data directories and the run root's
    /// `<driver>-layers/`); and, for drivers that mount (overlay), every counted mount is in
    /// `/proc/self/mountinfo` and every layer mounted there is counted.
    ///
    /// The check reads `layers.json` and `mountpoints.json` itself, under the shared lock, and
    /// changes nothing, so it reports what a normal load would silently clean up (incomplete
    /// layers, duplicate names). Repair holds the exclusive lock from the first read to the
    /// last write: it unmounts and flags every layer to delete (broken ones and their
    /// descendants) `incomplete` and saves once, deletes them children first, saves once more
    /// (a crash in between leaves flagged layers, which the next read-write open deletes),
    /// then removes orphans and temp files. Each step is reported as an [`Action`]; a failed
    /// one leaves its problem in [`CheckReport::remaining`].
    ///
    /// Errors are for what stops the check itself (a lock, an unreadable `layers.json`); what
    /// is wrong with layers is in the report. A read-only store can be checked, not repaired
    /// ([`Error::ReadOnly`]).
    pub fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        if options.repair {
            if self.read_only {
                return Err(Error::ReadOnly(self.layers_dir.clone()));
            }
            let guard = self.layers_lock.lock()?;
            let mut state = self.state.write();
            let result = self.check_and_repair(&mut state, &guard, options);
            if result.is_err() {
                state.layers_seen = None;
            }
            result
        } else {
            let _guard = self.layers_lock.rlock()?;
            let snapshot = self.snapshot()?;
            let problems = self.find_problems(&snapshot, options)?;
            Ok(CheckReport {
                remaining: problems.clone(),
                problems,
                actions: Vec::new(),
            })
        }
    }

    /// The records and mount counts as the files hold them now, with no load-time cleanup.
    fn snapshot(&self) -> Result<State> {
        let records = self.read_layers_json()?;
        let mut state = State {
            layers: records.layers,
            unreadable: records.unreadable,
            ..State::default()
        };
        state.rebuild();
        if self.mounts_lock.is_some() {
            let (records, bad) = self.read_mountpoints_json()?;
            state.apply_mounts(records, |id, path| self.trusted_mount_point(id, path));
            state.untrusted_mounts.extend(bad);
        } else {
            // A read-only store counts mounts in this process only.
            let current = self.state.read();
            for layer in &mut state.layers {
                if let Some(known) = current.by_id.get(&layer.id).map(|&i| &current.layers[i]) {
                    layer.mount_point = known.mount_point.clone();
                    layer.mount_count = known.mount_count;
                }
            }
        }
        Ok(state)
    }

    fn find_problems(&self, state: &State, options: &CheckOptions) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        for record in &state.unreadable {
            problems.push(Problem::UnreadableRecord {
                index: record.index,
                id: record.id.clone(),
                detail: record.reason.clone(),
            });
        }
        // Every record's ID, usable or not: their files are not orphans, their children have
        // a parent.
        let ids: HashSet<&str> = state
            .live()
            .map(|l| l.id.as_str())
            .chain(state.unreadable.iter().filter_map(|u| u.id.as_deref()))
            .collect();
        for layer in state.live() {
            match usable(layer) {
                Ok(layer) => self.check_layer(layer, &ids, options, &mut problems)?,
                Err(Error::UnsafeId { id, reason }) => {
                    problems.push(Problem::UnsafeId { id, detail: reason });
                }
                Err(other) => return Err(other),
            }
        }

        problems.extend(parent_cycles(state));

        let mut holders: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for layer in state.live() {
            for name in &layer.names {
                let ids = holders.entry(name.as_str()).or_default();
                if !ids.contains(&layer.id) {
                    ids.push(layer.id.clone());
                }
            }
        }
        for (name, ids) in holders {
            if ids.len() > 1 {
                problems.push(Problem::DuplicateName {
                    name: name.to_string(),
                    ids,
                });
            }
        }

        let driver_layers = self
            .driver
            .list_layers()
            .map_err(|e| Error::driver("-", "list the driver's layers", e))?;
        for id in driver_layers {
            if !ids.contains(id.as_str()) {
                problems.push(Problem::OrphanLayerData { id });
            }
        }
        self.find_stray_files(&ids, &mut problems)?;
        self.find_mount_problems(state, &mut problems)?;
        Ok(problems)
    }

    fn check_layer(
        &self,
        layer: &Layer,
        ids: &HashSet<&str>,
        options: &CheckOptions,
        problems: &mut Vec<Problem>,
    ) -> Result<()> {
        let id = layer.id.as_str();
        if layer.is_incomplete() {
            // Its files are half made or half removed: nothing more to learn.
            problems.push(Problem::IncompleteLayer { id: id.to_string() });
            return Ok(());
        }
        if let Some(parent) = layer.parent()
            && !ids.contains(parent)
        {
            problems.push(Problem::MissingParent {
                id: id.to_string(),
                parent: parent.to_string(),
            });
        }
        if !layer.big_data_names.is_empty() {
            // A big-data directory that is not one (a symlink, ...) holds none of the items.
            let dir = match self.open_layers_dir()? {
                Some(layers) => layers.subdir(id, false).ok().flatten(),
                None => None,
            };
            for key in &layer.big_data_names {
                let name = big_data_file_name(key);
                let present = match &dir {
                    Some(dir) => dir.file_type(&name)? == Some(FileType::RegularFile),
                    None => false,
                };
                if !present {
                    problems.push(Problem::MissingBigData {
                        id: id.to_string(),
                        key: key.clone(),
                        path: self.big_data_dir(id).join(name),
                    });
                }
            }
        }
        if !self.driver.exists(id) {
            problems.push(Problem::MissingLayerData { id: id.to_string() });
            return Ok(());
        }
        let Some(expected) = &layer.uncompressed_digest else {
            // Never given a diff (an empty or container layer): nothing to rebuild.
            return Ok(());
        };
        let path = self.tar_split_path(id);
        let file = match self.open_in_layers_dir(&tar_split_name(id)) {
            Ok(Some(file)) => file,
            Ok(None) => {
                problems.push(Problem::MissingTarSplit {
                    id: id.to_string(),
                    path,
                });
                return Ok(());
            }
            // A FIFO or a symlink in its place: reported without being opened or followed.
            Err(err @ Error::UnexpectedFileType { .. }) => {
                problems.push(Problem::CorruptTarSplit {
                    id: id.to_string(),
                    path,
                    detail: err.to_string(),
                });
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        if !options.verify_contents {
            return Ok(());
        }
        let mut sink = super::Counting {
            inner: Hasher::new(expected.algorithm()),
            count: 0,
        };
        match self.assemble(layer, file, &path, &mut sink) {
            Ok(()) => {
                let actual = sink.inner.finish()?;
                if &actual != expected {
                    problems.push(Problem::DigestMismatch {
                        id: id.to_string(),
                        expected: expected.clone(),
                        actual,
                    });
                }
                if let Some(size) = layer.known_uncompressed_size()
                    && u64::try_from(size).ok() != Some(sink.count)
                {
                    problems.push(Problem::SizeMismatch {
                        id: id.to_string(),
                        expected: size,
                        actual: sink.count,
                    });
                }
            }
            Err(Error::TarSplit { source, .. }) if is_content_error(&source) => {
                problems.push(Problem::ModifiedContent {
                    id: id.to_string(),
                    detail: source.to_string(),
                });
            }
            Err(Error::TarSplit { source, .. }) => problems.push(Problem::CorruptTarSplit {
                id: id.to_string(),
                path,
                detail: source.to_string(),
            }),
            Err(other) => problems.push(Problem::ModifiedContent {
                id: id.to_string(),
                detail: other.to_string(),
            }),
        }
        Ok(())
    }

    /// Orphaned tar-split files and big-data directories, temp files of atomic writes, and
    /// entries of a kind the store never makes (symlinks, FIFOs, ...), none of them followed.
    fn find_stray_files(&self, ids: &HashSet<&str>, problems: &mut Vec<Problem>) -> Result<()> {
        let mut found = Vec::new();
        if let Some(layers) = self.open_layers_dir()? {
            for (name, file_type) in layers.entries()? {
                let path = layers.join(&name);
                match file_type {
                    FileType::RegularFile => {
                        if is_temp_name(&name) {
                            found.push(Problem::StaleTempFile { path });
                        } else if let Some(id) = name.strip_suffix(".tar-split.gz")
                            && !name.starts_with('.')
                            && !ids.contains(id)
                        {
                            found.push(Problem::OrphanTarSplit { path });
                        }
                    }
                    FileType::Directory if !ids.contains(name.as_str()) => {
                        // `tmp/` is newer Go's staging area, not a layer's.
                        if name != "tmp" && layerstore_model::validate_id(&name).is_ok() {
                            found.push(Problem::OrphanBigData { path });
                        }
                    }
                    FileType::Directory => {
                        let Some(dir) = layers.subdir(&name, false)? else {
                            continue;
                        };
                        for (inner, inner_type) in dir.entries()? {
                            let inner_path = dir.join(&inner);
                            match inner_type {
                                FileType::RegularFile if is_temp_name(&inner) => {
                                    found.push(Problem::StaleTempFile { path: inner_path });
                                }
                                FileType::RegularFile | FileType::Directory => {}
                                other => found.push(Problem::UnexpectedFile {
                                    path: inner_path,
                                    found: crate::files::kind_name(other),
                                }),
                            }
                        }
                    }
                    other => found.push(Problem::UnexpectedFile {
                        path,
                        found: crate::files::kind_name(other),
                    }),
                }
            }
        }
        if self.mounts_lock.is_some()
            && let Some(mounts) = StoreDir::open(crate::files::parent_of(&self.mounts_json))?
        {
            for (name, file_type) in mounts.entries()? {
                if file_type == FileType::RegularFile && name.starts_with(crate::files::TEMP_PREFIX)
                {
                    found.push(Problem::StaleTempFile {
                        path: mounts.join(&name),
                    });
                }
            }
        }
        problems.extend(found);
        Ok(())
    }

    fn find_mount_problems(&self, state: &State, problems: &mut Vec<Problem>) -> Result<()> {
        for record in &state.untrusted_mounts {
            problems.push(Problem::UntrustedMountRecord {
                id: record.id.clone(),
                path: PathBuf::from(&record.path),
            });
        }
        if !MOUNTING_DRIVERS.contains(&self.driver.name()) {
            return Ok(());
        }
        let table = mount_points()?;
        // The table shows resolved paths; the records may hold a path through a symlink.
        let home = self.driver.home();
        let homes = [
            home.to_path_buf(),
            fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf()),
        ];
        // A layer whose ID breaks the rule is neither mounted nor unmounted by this store.
        for layer in state.live().filter(|l| usable(l).is_ok()) {
            if layer.mount_count > 0
                && let Some(path) = &layer.mount_point
                && !table.contains(path)
                && !super::is_mount_point(path)
            {
                problems.push(Problem::StaleMountCount {
                    id: layer.id.clone(),
                    path: path.clone(),
                    count: layer.mount_count,
                });
            }
        }
        let mut uncounted: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in &table {
            let Some(first) = homes.iter().find_map(|h| component_below(h, path)) else {
                continue;
            };
            if let Some(&index) = state.by_id.get(first) {
                let layer = &state.layers[index];
                if layer.mount_count == 0 && usable(layer).is_ok() {
                    let shortest = uncounted
                        .entry(layer.id.clone())
                        .or_insert_with(|| path.clone());
                    if path.as_os_str().len() < shortest.as_os_str().len() {
                        *shortest = path.clone();
                    }
                }
            }
        }
        for (id, path) in uncounted {
            problems.push(Problem::UncountedMount { id, path });
        }
        Ok(())
    }

    /// The driver's own directories in its home (`dir/`, `l/`, `staging/`, `subvolumes/`,
    /// ...): its directories that are not named after a record.
    fn driver_layout_dirs(&self, state: &State) -> Vec<String> {
        let Ok(Some(home)) = StoreDir::open(self.driver.home()) else {
            return Vec::new();
        };
        home.entries()
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, file_type)| {
                *file_type == FileType::Directory && !state.by_id.contains_key(name)
            })
            .map(|(name, _)| name)
            .collect()
    }

    /// The symlinks named `id` in the driver's home or one of its own directories
    /// (`layout_dirs`): where a driver asked to unmount or remove layer `id` would follow a
    /// symlink to what it points to (another store's layer).
    fn symlinked_layer_entries(&self, id: &str, layout_dirs: &[String]) -> Vec<PathBuf> {
        let Ok(Some(home)) = StoreDir::open(self.driver.home()) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        if home.file_type(id).ok().flatten() == Some(FileType::Symlink) {
            found.push(home.join(id));
        }
        for dir in layout_dirs {
            if let Ok(Some(dir)) = home.subdir(dir, false)
                && dir.file_type(id).ok().flatten() == Some(FileType::Symlink)
            {
                found.push(dir.join(id));
            }
        }
        found
    }

    /// Removes layer `id`'s driver data: the symlinks standing where the driver keeps it
    /// first (the links themselves), so that the driver follows none of them.
    fn remove_driver_data(&self, id: &str, layout_dirs: &[String]) -> Result<()> {
        for link in self.symlinked_layer_entries(id, layout_dirs) {
            remove_entry(&link)?;
        }
        self.driver
            .remove(id)
            .map_err(|e| Error::driver(id, "remove", e))
    }

    /// Asks the driver to release a mount of layer `id` it may count (its own unmount and
    /// bookkeeping), unless a symlink stands where the driver keeps the layer: then only a
    /// kernel mount at `mounted` (from the mount table) is detached, through its descriptor.
    fn release_mount(
        &self,
        id: &str,
        layout_dirs: &[String],
        mounted: Option<&Path>,
    ) -> Result<()> {
        if self.symlinked_layer_entries(id, layout_dirs).is_empty() {
            return self
                .driver
                .put(id)
                .map_err(|e| Error::driver(id, "unmount", e));
        }
        match mounted {
            Some(path) => self.detach_layer_mount(id, path),
            None => Ok(()),
        }
    }

    /// Detaches the mount at `mount_point` (as the kernel's mount table spells it) if it is a
    /// mount root below the driver's home whose path names layer `id`. The mount is opened
    /// from the home without following any symlink (`openat2` with `RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS`) and detached through that descriptor, so whatever the path leads
    /// to meanwhile, only that mount is affected: never another store's layer, never a mount
    /// reached through a symlink.
    fn detach_layer_mount(&self, id: &str, mount_point: &Path) -> Result<()> {
        use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, StatxAttributes, StatxFlags};
        let refuse = |why: &str| {
            Error::io(
                "unmount",
                mount_point,
                io::Error::other(format!("{why}: left mounted")),
            )
        };
        let home = fs::canonicalize(self.driver.home())
            .map_err(|e| Error::io("resolve", self.driver.home(), e))?;
        let below = mount_point
            .strip_prefix(&home)
            .map_err(|_| refuse("not below the driver's home"))?;
        if !below.components().any(|c| c.as_os_str() == id) {
            return Err(refuse("not a mount of this layer"));
        }
        let home_fd = rustix::fs::open(
            &home,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", &home, e.into()))?;
        let fd = rustix::fs::openat2(
            &home_fd,
            below,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => {
                refuse("reached through a symlink")
            }
            e => Error::io("open", mount_point, e.into()),
        })?;
        let st = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
            .map_err(|e| Error::io("stat", mount_point, e.into()))?;
        if !(st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
            && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
        {
            return Err(refuse("not a mount point"));
        }
        // The magic link resolves to exactly the mount the descriptor holds.
        let by_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        rustix::mount::unmount(by_fd.as_str(), rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| Error::io("unmount", mount_point, e.into()))
    }

    /// Moves unreadable records and layers with an unsafe ID to the set-aside file (those no
    /// layer names as its parent), and drops them from `state`. Answers whether `state`
    /// changed.
    fn set_aside_unusable(
        &self,
        state: &mut State,
        problems: &[Problem],
        actions: &mut Vec<Action>,
        fixed: &mut Fixed,
    ) -> Result<bool> {
        let parents: HashSet<String> = state
            .live()
            .filter_map(|l| l.parent().map(str::to_string))
            .collect();
        let mut moved: Vec<(SetAside, Repair)> = Vec::new();
        let mut refused = Vec::new();
        for problem in problems {
            let (id, index, record) = match problem {
                Problem::UnreadableRecord { index, id, detail } => {
                    let Some(unreadable) = state.unreadable.iter().find(|u| u.index == *index)
                    else {
                        continue;
                    };
                    let record = SetAside {
                        raw: unreadable.raw.clone(),
                        reason: format!("unreadable: {detail}"),
                    };
                    (id.clone(), Some(*index), record)
                }
                Problem::UnsafeId { id, detail } => {
                    let Some(&i) = state.by_id.get(id) else {
                        continue;
                    };
                    let record = SetAside::layer(&state.layers[i], format!("unsafe ID: {detail}"))?;
                    (Some(id.clone()), None, record)
                }
                _ => continue,
            };
            let repair = Repair::SetAside {
                id: id.clone(),
                index,
            };
            match &id {
                Some(parent) if parents.contains(parent) => refused.push(Action {
                    repair,
                    error: Some(format!(
                        "layers name {parent:?} as their parent; restore or delete them first"
                    )),
                }),
                _ => moved.push((record, repair)),
            }
        }
        if moved.is_empty() {
            actions.extend(refused);
            return Ok(false);
        }
        let (records, repairs): (Vec<SetAside>, Vec<Repair>) = moved.into_iter().unzip();
        records::set_aside(&self.layers_dir_rw()?, records)?;
        for repair in repairs {
            if let Repair::SetAside { id, index } = &repair {
                match index {
                    Some(index) => state.unreadable.retain(|u| u.index != *index),
                    None => {
                        if let Some(&i) = id.as_ref().and_then(|id| state.by_id.get(id)) {
                            state.remove(i);
                        }
                    }
                }
                fixed.set_aside.insert((id.clone(), *index));
            }
            actions.push(Action {
                repair,
                error: None,
            });
        }
        actions.extend(refused);
        Ok(true)
    }

    fn check_and_repair(
        &self,
        state: &mut State,
        guard: &WriteGuard<'_>,
        options: &CheckOptions,
    ) -> Result<CheckReport> {
        *state = self.snapshot()?;
        let problems = self.find_problems(state, options)?;
        let mut actions = Vec::new();
        let mut fixed = Fixed::default();

        // Layers to delete: the broken ones, then everything above them.
        let broken: BTreeSet<String> = problems
            .iter()
            .filter(|p| p.breaks_layer())
            .filter_map(|p| p.layer().map(str::to_string))
            .collect();
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for layer in state.live() {
            if let Some(parent) = layer.parent() {
                children.entry(parent).or_default().push(layer.id.as_str());
            }
        }
        // Post-order from each broken layer: children before parents.
        let mut doomed: Vec<(String, Option<String>)> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for root in &broken {
            let Some(&root_index) = state.by_id.get(root) else {
                continue;
            };
            let root_id = state.layers[root_index].id.as_str();
            let mut stack = vec![(root_id, false)];
            while let Some((current, expanded)) = stack.pop() {
                if expanded {
                    // A layer whose ID breaks the rule is set aside, never deleted.
                    if validate_store_id(current).is_ok() {
                        let because = (!broken.contains(current)).then(|| root.clone());
                        doomed.push((current.to_string(), because));
                    }
                    continue;
                }
                if !seen.insert(current) {
                    continue;
                }
                stack.push((current, true));
                for child in children.get(current).into_iter().flatten() {
                    stack.push((child, false));
                }
            }
        }
        drop(children);
        let doomed_ids: HashSet<String> = doomed.iter().map(|(id, _)| id.clone()).collect();

        // Records that are not usable layers: into the set-aside file (written before
        // layers.json, so a crash in between leaves a copy, never a loss), unless a layer
        // names them as its parent.
        let mut changed = self.set_aside_unusable(state, &problems, &mut actions, &mut fixed)?;

        // Names: the last record keeps a shared name (Go's load rule).
        for problem in &problems {
            if let Problem::DuplicateName { name, ids } = problem
                && let Some((_, earlier)) = ids.split_last()
            {
                for id in earlier {
                    if let Some(&index) = state.by_id.get(id) {
                        state.layers[index].names.retain(|n| n != name);
                        changed = true;
                    }
                    actions.push(Action {
                        repair: Repair::DropName {
                            name: name.clone(),
                            id: id.clone(),
                        },
                        error: None,
                    });
                }
                fixed.names.insert(name.clone());
            }
        }

        let layout_dirs = self.driver_layout_dirs(state);
        // Mounts the kernel disagrees with (doomed layers are unmounted below anyway).
        for problem in &problems {
            match problem {
                Problem::StaleMountCount { id, .. } if !doomed_ids.contains(id) => {
                    // The driver may still count the lost mount in this process (overlay
                    // does): let it forget, or a later mount would not remount.
                    let _ = self.release_mount(id, &layout_dirs, None);
                    if let Some(&index) = state.by_id.get(id) {
                        if let Some(path) = state.layers[index].mount_point.take() {
                            state.by_mount.remove(&path);
                        }
                        state.layers[index].mount_count = 0;
                        changed = true;
                    }
                    actions.push(Action {
                        repair: Repair::ResetMountCount { id: id.clone() },
                        error: None,
                    });
                    fixed.mounts.insert(id.clone());
                }
                Problem::UncountedMount { id, path } if !doomed_ids.contains(id) => {
                    let result = self.release_mount(id, &layout_dirs, Some(path));
                    if result.is_ok() {
                        fixed.mounts.insert(id.clone());
                    }
                    actions.push(Action {
                        repair: Repair::Unmount {
                            id: id.clone(),
                            path: path.clone(),
                        },
                        error: result.err().map(|e| e.to_string()),
                    });
                }
                Problem::UntrustedMountRecord { id, path } => {
                    // Not applied when loading, so the next save leaves it out.
                    changed = true;
                    fixed.untrusted_mounts.insert((id.clone(), path.clone()));
                    actions.push(Action {
                        repair: Repair::DropMountRecord {
                            id: id.clone(),
                            path: path.clone(),
                        },
                        error: None,
                    });
                }
                _ => {}
            }
        }

        // Broken layers and their descendants: unmount, flag, save; remove; save.
        for (id, _) in &doomed {
            let Some(&index) = state.by_id.get(id) else {
                continue;
            };
            // Release what is mounted for it. Best effort: the driver's remove reports
            // what is left.
            let uncounted = problems.iter().find_map(|p| match p {
                Problem::UncountedMount { id: m, path } if m == id => Some(path.clone()),
                _ => None,
            });
            let counted = state.layers[index]
                .mount_point
                .as_ref()
                .filter(|path| state.layers[index].mount_count > 0 && super::is_mount_point(path))
                .and_then(|path| fs::canonicalize(path).ok());
            if let Some(path) = uncounted.or(counted) {
                let _ = self.release_mount(id, &layout_dirs, Some(&path));
            } else if state.layers[index].mount_count > 0 {
                let _ = self.release_mount(id, &layout_dirs, None);
            }
            let layer = &mut state.layers[index];
            layer.mount_count = 0;
            if let Some(path) = layer.mount_point.take() {
                state.by_mount.remove(&path);
            }
            state.layers[index].set_incomplete(true);
            changed = true;
        }
        if changed {
            self.save(state, guard)?;
        }
        if !doomed.is_empty() {
            for (id, because) in &doomed {
                let Some(&index) = state.by_id.get(id) else {
                    continue;
                };
                let removed = self
                    .remove_driver_data(id, &layout_dirs)
                    .and_then(|()| self.remove_layer_files(id));
                if removed.is_ok() {
                    state.remove(index);
                    fixed.layers.insert(id.clone());
                }
                actions.push(Action {
                    repair: Repair::DeleteLayer {
                        id: id.clone(),
                        descends_from: because.clone(),
                    },
                    error: removed.err().map(|e| e.to_string()),
                });
            }
            self.save(state, guard)?;
        }
        if !changed {
            // Nothing saved: let the next call load what is on disk the usual way.
            state.layers_seen = None;
        }

        // Orphans and temp files.
        for problem in &problems {
            let (repair, result) = match problem {
                Problem::OrphanLayerData { id } => (
                    Repair::RemoveLayerData { id: id.clone() },
                    self.remove_driver_data(id, &layout_dirs),
                ),
                Problem::OrphanTarSplit { path }
                | Problem::StaleTempFile { path }
                | Problem::UnexpectedFile { path, .. } => (
                    Repair::RemoveFile { path: path.clone() },
                    remove_entry(path),
                ),
                Problem::OrphanBigData { path } => (
                    Repair::RemoveDirectory { path: path.clone() },
                    remove_entry(path),
                ),
                _ => continue,
            };
            if result.is_ok() {
                fixed.other.insert(leftover_key(problem));
            }
            actions.push(Action {
                repair,
                error: result.err().map(|e| e.to_string()),
            });
        }

        let remaining = problems
            .iter()
            .filter(|p| !fixed.covers(p))
            .cloned()
            .collect();
        Ok(CheckReport {
            problems,
            actions,
            remaining,
        })
    }
}

/// What repair fixed, to tell which problems remain.
#[derive(Default)]
struct Fixed {
    /// Layers deleted.
    layers: HashSet<String>,
    /// Records set aside: by ID, or by position for one without an ID.
    set_aside: HashSet<(Option<String>, Option<usize>)>,
    /// Layers whose mount count now agrees with the kernel.
    mounts: HashSet<String>,
    /// Mount records dropped.
    untrusted_mounts: HashSet<(String, PathBuf)>,
    /// Names no longer shared.
    names: HashSet<String>,
    /// Orphans and temp files removed: (kind, path or driver ID).
    other: HashSet<(&'static str, String)>,
}

impl Fixed {
    fn covers(&self, problem: &Problem) -> bool {
        match problem {
            Problem::DuplicateName { name, .. } => self.names.contains(name),
            Problem::UnreadableRecord { index, id, .. } => {
                self.set_aside.contains(&(id.clone(), Some(*index)))
            }
            Problem::UnsafeId { id, .. } => self.set_aside.contains(&(Some(id.clone()), None)),
            Problem::OrphanLayerData { .. }
            | Problem::OrphanTarSplit { .. }
            | Problem::OrphanBigData { .. }
            | Problem::StaleTempFile { .. }
            | Problem::UnexpectedFile { .. } => self.other.contains(&leftover_key(problem)),
            Problem::UntrustedMountRecord { id, path } => {
                self.untrusted_mounts.contains(&(id.clone(), path.clone()))
            }
            Problem::StaleMountCount { id, .. } | Problem::UncountedMount { id, .. } => {
                self.mounts.contains(id) || self.layers.contains(id)
            }
            other => other.layer().is_some_and(|id| self.layers.contains(id)),
        }
    }
}

/// What identifies a leftover problem among others.
fn leftover_key(problem: &Problem) -> (&'static str, String) {
    let subject = match problem.path() {
        Some(path) => path.to_string_lossy().into_owned(),
        None => problem.layer().unwrap_or_default().to_string(),
    };
    (problem.kind(), subject)
}

/// Every layer that is its own ancestor, in record order. Each layer has at most one parent,
/// so following parents from each layer not seen yet finds every cycle in linear time.
fn parent_cycles(state: &State) -> Vec<Problem> {
    let mut finished: HashSet<&str> = HashSet::new();
    let mut in_cycle: HashMap<&str, Vec<String>> = HashMap::new();
    for start in state.live() {
        let mut path: Vec<&str> = Vec::new();
        let mut on_path: HashMap<&str, usize> = HashMap::new();
        let mut current = Some(start.id.as_str());
        while let Some(id) = current {
            if finished.contains(id) {
                break;
            }
            if let Some(&at) = on_path.get(id) {
                let cycle: Vec<&str> = path[at..].to_vec();
                for (n, member) in cycle.iter().enumerate() {
                    let rotated: Vec<String> = cycle[n..]
                        .iter()
                        .chain(&cycle[..n])
                        .map(|s| s.to_string())
                        .collect();
                    in_cycle.insert(member, rotated);
                }
                break;
            }
            on_path.insert(id, path.len());
            path.push(id);
            current = state.by_id.get(id).and_then(|&i| state.layers[i].parent());
        }
        finished.extend(path);
    }
    state
        .live()
        .filter_map(|layer| {
            let cycle = in_cycle.get(layer.id.as_str())?;
            Some(Problem::ParentCycle {
                id: layer.id.clone(),
                cycle: cycle.clone(),
            })
        })
        .collect()
}

/// Removes the entry at `path` (a file, a symlink itself, or a directory tree), reaching it
/// through its directory opened without following a symlink.
fn remove_entry(path: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(());
    };
    match StoreDir::open(parent)? {
        Some(dir) => dir.remove_tree(name),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let table = parse_mountinfo(
            b"36 35 98:0 /mnt1 /mnt\\040with\\040space rw - ext3 /dev/root rw\n\
              37 35 98:0 / /plain rw - ext4 /dev/sda rw\n",
        );
        assert!(table.contains(Path::new("/mnt with space")));
        assert!(table.contains(Path::new("/plain")));
        assert_eq!(table.len(), 2);
        assert_eq!(unescape_octal(b"a\\134b\\011"), b"a\\b\t");
        // Not an escape: kept as is.
        assert_eq!(unescape_octal(b"x\\9yz\\"), b"x\\9yz\\");
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp_name(".tmp-layers.json123"));
        assert!(is_temp_name(".abc.tar-split.gz.tmp"));
        assert!(!is_temp_name("abc.tar-split.gz"));
        assert!(!is_temp_name("layers.json"));
    }

    #[test]
    fn components_below_home() {
        let home = Path::new("/g/overlay");
        assert_eq!(
            component_below(home, Path::new("/g/overlay/abc/merged")),
            Some("abc")
        );
        assert_eq!(component_below(home, Path::new("/g/overlay")), None);
        assert_eq!(component_below(home, Path::new("/g/other/abc")), None);
    }

    #[test]
    fn parent_cycles_are_found_and_the_layers_above_them_are_not_in_them() {
        let mut state = State::default();
        for (id, parent) in [
            ("a", "a"),
            ("b", "c"),
            ("c", "b"),
            ("d", "b"),
            ("e", ""),
            ("f", "g"),
            ("g", "h"),
            ("h", "f"),
            ("i", "missing"),
        ] {
            let mut layer = Layer::new(id);
            layer.parent = parent.to_string();
            state.push(layer);
        }
        let found: Vec<(String, Vec<String>)> = parent_cycles(&state)
            .into_iter()
            .map(|p| match p {
                Problem::ParentCycle { id, cycle } => (id, cycle),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected = [
            ("a", vec!["a"]),
            ("b", vec!["b", "c"]),
            ("c", vec!["c", "b"]),
            ("f", vec!["f", "g", "h"]),
            ("g", vec!["g", "h", "f"]),
            ("h", vec!["h", "f", "g"]),
        ];
        assert_eq!(found.len(), expected.len(), "{found:?}");
        for ((id, cycle), (want_id, want_cycle)) in found.iter().zip(expected) {
            assert_eq!(
                (
                    id.as_str(),
                    cycle.iter().map(String::as_str).collect::<Vec<_>>()
                ),
                (want_id, want_cycle)
            );
        }
    }

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
