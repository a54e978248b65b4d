//! What the caller chooses about an apply, and what it learns from one.

use std::collections::BTreeSet;

use crate::compression::Compression;
use crate::idmap::IdMap;
use layerstore_model::Digest;
use layerstore_tarsplit::Limits;

/// How whiteouts (`.wh.NAME`, `.wh..wh..opq`) land on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutStyle {
    /// The target tree already holds the parent's files (vfs, btrfs): delete what a whiteout names,
    /// empty an opaque directory of everything this layer did not add.
    #[default]
    Naive,
    /// The target is an overlay upper dir, as containers/storage's overlay driver stores it: a
    /// deleted name becomes a 0:0 character device, an opaque directory gets the
    /// `trusted.overlay.opaque=y` xattr. Archive xattrs in the `trusted.overlay.` namespace are
    /// dropped (with a warning) so a layer cannot forge overlay metadata.
    Overlay,
}

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// Create them; fail (naming the entry) if the process may not (`EPERM`).
    Create,
    /// Create them where permitted, otherwise skip with a warning (rootless use).
    #[default]
    CreateOrSkip,
    /// Never create them; skip each with a warning.
    Skip,
    /// Refuse the layer if it holds any device node.
    Fail,
}

/// What the archive's root entry (`./`) does to the target directory itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RootEntry {
    /// The target takes the entry's owner, mode, xattrs and times.
    #[default]
    Apply,
    /// The target takes the entry's owner, mode and xattrs and its access time as recorded
    /// (the epoch when the header has none), but keeps its modification time: what
    /// containers/storage's naive drivers (vfs, btrfs) do before they touch the root again.
    KeepModificationTime,
    /// The entry is ignored: the target keeps what it had (Go's `Unpack`, which the overlay
    /// driver uses for `diff/`).
    Ignore,
}

/// The default of [`ApplyOptions::max_depth`]: 1,024 directories. Real images stay below 100
/// (deep `node_modules` and Java package trees reach 30–60), and a plain tar name cannot go past
/// about 2,000 (`PATH_MAX`); deeper trees are only made on purpose, through symlinks, to
/// exhaust the stacks and descriptors of whoever walks them later.
pub const DEFAULT_MAX_DEPTH: usize = 1024;

/// Options of [`apply`](crate::apply()).
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How whiteouts land.
    pub whiteouts: WhiteoutStyle,
    /// Container → host UID mapping for owners; empty = identity.
    pub uid_map: Vec<IdMap>,
    /// Container → host GID mapping for owners; empty = identity.
    pub gid_map: Vec<IdMap>,
    /// Ignore `EPERM`/`EINVAL` from chown (rootless without enough IDs), as Go's option does.
    pub ignore_chown_errors: bool,
    /// What to do with device nodes.
    pub devices: DevicePolicy,
    /// Caps of the tar parser (PAX record, long name and sparse map sizes).
    pub limits: Limits,
    /// Refuse a layer whose uncompressed stream is larger than this, or whose regular files
    /// declare more than this in all, a sparse file counting its expanded size (decompression
    /// and sparse-file bombs).
    pub max_uncompressed_size: Option<u64>,
    /// What the root entry (`./`) does to the target.
    pub root_entry: RootEntry,

    /// Refuse an entry more than this many directories below the target
    /// ([`Error::TooDeep`](crate::Error::TooDeep)), counted on the tree as it is: a name that
    /// goes through a symlink counts the depth of the symlink's target. Default
    /// [`DEFAULT_MAX_DEPTH`].
    pub max_depth: usize,
    /// Resolve paths with the userspace component walk even where `openat2` exists (the path
    /// taken on kernels before 5.6; for tests and for sandboxes that filter `openat2`).
    pub force_userspace_resolution: bool,
    /// Called once, on the reading thread, when the whole input has been read and
    /// decompressed; the extraction of what the pipe holds still runs. Not called when the
    /// input fails.
    pub on_input_end: Option<InputEndHook>,
}

/// What [`ApplyOptions::on_input_end`] runs. The layer store starts the filesystem's journal
/// commit there (an `fdatasync` of its tar-split file), so the commit of the extraction's
/// metadata overlaps the extraction's last files instead of following them.
#[derive(Clone)]
pub struct InputEndHook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for InputEndHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputEndHook")
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: WhiteoutStyle::default(),
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            ignore_chown_errors: false,
            devices: DevicePolicy::default(),
            limits: Limits::default(),
            max_uncompressed_size: None,
            root_entry: RootEntry::default(),
            max_depth: DEFAULT_MAX_DEPTH,
            force_userspace_resolution: false,
            on_input_end: None,
        }
    }
}

/// What one [`apply`](crate::apply()) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The compression found by magic bytes.
    pub compression: Compression,
    /// SHA-256 of the input exactly as read (every byte up to its end).
    pub compressed_digest: Digest,
    /// Bytes of input read.
    pub compressed_size: u64,
    /// SHA-256 of the decompressed tar stream (including anything after the end marker).
    pub uncompressed_digest: Digest,
    /// Bytes of the decompressed tar stream.
    pub uncompressed_size: u64,
    /// UIDs in the headers (container side, before mapping), whiteout entries excluded.
    pub uids: BTreeSet<u32>,
    /// GIDs in the headers, likewise.
    pub gids: BTreeSet<u32>,
    /// Bytes of regular-file content written.
    pub size: u64,
    /// Number of tar entries processed (whiteouts included).
    pub entries: u64,
    /// Deletion markers made in the overlay style: whiteout character devices (0:0, also
    /// those the tarball holds as such) and opaque directories. Zero: the tree holds none,
    /// so a driver laying it over another (vfs staging) need not look for them.
    pub overlay_markers: u64,
    /// Things skipped or ignored, each naming the entry (devices not created, unsupported
    /// xattrs, ...).
    pub warnings: Vec<String>,
}
