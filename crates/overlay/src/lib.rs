//! The overlay graph driver on the real kernel, layout-compatible with containers/storage's
//! `overlay` driver (v1.43), so that our store and the Go tools (podman, CRI-O,
//! `containers-storage`) can share one graph root.
//!
//! # Layout
//!
//! ```text
//! <graphroot>/overlay/             0700  driver home (bind-mounted onto itself, private)
//!   .has-mount-program             0600  "true" / "false"
//!   l/                             0755  short links: l/<LINKID> -> ../<id>/diff
//!   <id>/                          0700
//!     diff/                        the layer's own files (overlay upper dir); 0555 for a base
//!                                  layer, the parent's diff mode for a child
//!     link                         0644  the 26-character LINKID (base32), no newline
//!     lower                        0644  children only: "l/<parent>:l/<grandparent>:…"
//!     work/  merged/               0700  overlay workdir and mount point
//!     empty/                       0700  base layers only: the lower dir of their mounts
//!   staging/<random>/              0700  staged layers (zstd:chunked pulls), see below
//! <runroot>/overlay/<feature>-true|false   probe results shared with Go (`overlay`,
//!                                  `native-diff(<mountopt>)`, `metacopy(<mountopt>)`)
//! ```
//!
//! Layers are applied straight into `diff/` with overlay whiteouts (0/0 character devices,
//! `trusted.overlay.opaque=y`). A writeable mount uses the lowers plus `diff/` as upper and
//! `work/`; a read-only one (`ro` option) stacks `diff/` on the lowers. The mount data is
//! Go's: absolute paths when they fit a page, else paths relative to the home mounted from a
//! thread with its own working directory; beyond Go, when even that does not fit (hundreds of
//! layers), the new mount API (`fsopen`/`fsconfig` with one `lowerdir+` per layer, Linux
//! 6.8+) is used, and chains deeper than the kernel's 500-layer limit (`OVL_MAX_STACK`) mount
//! their deepest layers as a read-only overlay (`<id>/lower-stack`) used as one lower dir (at
//! most 999 layers). Options naming mount flags (`nodev`, `nosuid`, `ro`, …) become flags, as
//! Go's `mount.ParseOptions` does. Mounts are counted: the first [`Driver::get`] mounts, the
//! last [`Driver::put`] unmounts (`MNT_DETACH`) and removes `merged/`; a layer mounted by
//! another process counts as mounted once, as Go's refcounter does. [`Driver::cleanup`]
//! unmounts what this driver mounted and undoes the home's bind mount.
//!
//! The diff family is native (Go's path when the native-diff probe passed and the parent given
//! is the layer's real parent): `changes`, `diff` and `diff_size` read `diff/` and the lowers'
//! `diff/` without mounting; otherwise the naive versions of [`layerstore_driver::naive`] run.
//! The tar-split file getter ([`OverlayFileGetter`]) reads `diff/`, falling back to the lowers
//! for metacopy-only files.
//!
//! Staging (Go's `DriverWithDiffer`): [`Driver::apply_diff_with_differ`] lets a differ fill a
//! fresh `staging/<random>` directory (removed again when the differ fails);
//! [`Driver::apply_diff_from_staging_directory`] exchanges it with the layer's `diff/` in one
//! `renameat2(RENAME_EXCHANGE)` and removes the old tree. Only directories directly inside
//! `staging/` are accepted. Staging directories of a crashed process stay until removed with
//! [`Driver::cleanup_staging_directory`] (Go ≥ 1.50 sweeps unlocked ones at start; we do not).
//!
//! Additional layer stores (`additionallayerstore=<path>[:ref]`, Go's layout, see
//! [`layerstore_driver::additional`]): [`Driver::attach_additional_layer`] turns a new empty
//! layer's `diff` into a symlink to the store's `diff/` (plus an `additionallayer` file naming
//! it), so mounts stack the store's tree as a lower; removing the layer removes the symlink
//! only. A writeable mount of such a layer itself would write into the store's tree: mount it
//! read-only (`ro`) or stack a child on it.
//!
//! Options (`overlay.`, `overlay2.` or `.` prefix): `mountopt=<opts>` (default mount options,
//! `metacopy=on` honoured only where the kernel does metacopy), `skip_mount_home=<bool>`,
//! `ignore_chown_errors=<bool>`, `mount_program=<path>` (e.g. `/usr/bin/fuse-overlayfs`),
//! `override_kernel_check` (ignored, as Go). A mount label becomes `context="<label>"`.
//!
//! # Example
//!
//! ```
//! use layerstore_driver::{CreateOpts, Driver, DriverConfig, MountOpts};
//! use layerstore_overlay::OverlayDriver;
//!
//! # if !rustix::process::geteuid().is_root() { return Ok(()); } // needs root and overlay
//! let root = tempfile::tempdir()?;
//! let config = DriverConfig::new(root.path().join("graph"), root.path().join("run"));
//! let driver = OverlayDriver::new(&config)?;
//! driver.create("base", None, &CreateOpts::default())?;
//! driver.create("child", Some("base"), &CreateOpts::default())?;
//! let merged = driver.get("child", &MountOpts::default())?;
//! std::fs::write(merged.join("hello"), "world")?;
//! driver.put("child")?;
//! // The write landed in the child's upper dir.
//! let upper = root.path().join("graph/overlay/child/diff/hello");
//! assert_eq!(std::fs::read_to_string(upper)?, "world");
//! driver.cleanup()?; // undoes the home's private bind mount
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limitations
//!
//! No quotas (`size`/`inodes`), additional image stores, idmapped lowers
//! (`supports_shifting` is false: the store chowns instead), or composefs. Rootless use
//! needs the mount program: kernel overlay without root would need
//! `userxattr` and `user.overlay.*` whiteouts, which the archive crate does not write. With a mount program the whiteouts on disk stay in the kernel's
//! format (the archive crate has no AUFS-on-disk style), which fuse-overlayfs reads too; that
//! needs a user allowed to `mknod`. The native export (the archive crate's) writes file
//! whiteouts with mode 0 and the current time (Go: the device's metadata), and an opaque
//! directory's `.wh..wh..opq` marker even when no lower has the directory (Go checks); the
//! entries and their order are otherwise Go's.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use layerstore_driver::{
    AdditionalLayer, AdditionalLayerStore, Differ, DifferOptions, DifferOutput,
};
use layerstore_driver::{
    ApplyDiffOpts, ApplyReport, Change, CreateOpts, DiffArgs, DiskUsage, Driver, DriverConfig,
    DriverOptions, EntrySink, Error, FileGetter, MountOpts, Registration, Result, naive,
    validate_layer_id,
};

mod additional;
mod diff;
mod features;
mod layout;
mod mount;
mod staging;

pub use diff::OverlayFileGetter;
pub use layout::{LINK_ID_LEN, generate_link_id, recreate_symlinks};
pub use mount::{MountMethod, parse_options};

/// The driver's name and home directory name.
pub const NAME: &str = "overlay";
/// Other names Go accepts for it.
pub const ALIASES: &[&str] = &["overlay2"];

/// Mode of a base layer's `diff/` (Go's `defaultPerms`).
const BASE_LAYER_MODE: u32 = 0o555;
/// Name of the read-only overlay of a deep chain's deepest layers, inside the layer dir.
const LOWER_STACK: &str = "lower-stack";

/// How the top crate registers this driver in its [`layerstore_driver::Registry`].
pub fn registration() -> Registration {
    Registration {
        name: NAME,
        aliases: ALIASES,
        init: |config| Ok(Box::new(OverlayDriver::new(config)?)),
    }
}

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

/// What is known about one mounted layer.
#[derive(Debug, Clone, Copy)]
struct MountState {
    count: u32,
    method: Option<MountMethod>,
}

/// The overlay driver (see the crate documentation).
#[derive(Debug)]
pub struct OverlayDriver {
    home: PathBuf,
    run_home: PathBuf,
    options: OverlayOptions,
    default_mappings: layerstore_driver::IdMappings,
    backing_fs: &'static str,
    supports_d_type: bool,
    native_diff: bool,
    using_metacopy: bool,
    new_mount_api: bool,
    mounts: Mutex<HashMap<String, MountState>>,
}

fn not_supported(root: &Path, reason: impl Into<String>) -> Error {
    Error::NotSupported {
        driver: NAME.to_string(),
        root: root.to_path_buf(),
        reason: reason.into(),
    }
}

fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

impl OverlayDriver {
    /// Starts the driver in `<graph_root>/overlay`: parses the options, checks the backing
    /// filesystem, runs (or reads the cached results of) Go's feature probes, and bind-mounts
    /// the home onto itself as a private mount unless `skip_mount_home`.
    ///
    /// Fails with [`Error::NotSupported`] when overlay cannot work here (no kernel overlay, a
    /// backing filesystem overlay cannot stack on, no `d_type`), so automatic selection moves
    /// on to the next driver.
    pub fn new(config: &DriverConfig) -> Result<Self> {
        let options = OverlayOptions::parse(&config.options)?;
        // Mount data names the layers by absolute path: a relative root is made absolute
        // (lexically, keeping symlinks as given, as Go keeps the configured path).
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let home = absolute(config.home(NAME));
        let run_home = absolute(config.run_root.join(NAME));
        for dir in [&home, &run_home] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io("mkdir", dir, e))?;
        }
        let magic = features::fs_magic(&home).map_err(|e| Error::io("statfs", &home, e))?;
        // First, so that not even the probes' mounts propagate to other namespaces.
        let bound = if options.skip_mount_home {
            false
        } else {
            make_private(&home).map_err(|e| {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    // Rootless without a user namespace: let automatic selection move on.
                    not_supported(
                        &config.graph_root,
                        format!("cannot make {} a private mount: {e}", home.display()),
                    )
                } else {
                    Error::io("make private mount of", &home, e)
                }
            })?
        };
        let bind_mount = home.clone();
        Self::start(config, options, home, run_home, magic).inspect_err(|_| {
            // A driver that does not start leaves no bind mount of its own behind.
            if bound {
                let _ = mount::unmount(&bind_mount);
            }
        })
    }

    fn start(
        config: &DriverConfig,
        mut options: OverlayOptions,
        home: PathBuf,
        run_home: PathBuf,
        magic: i64,
    ) -> Result<Self> {
        let backing_fs = features::backing_fs_name(magic);
        let has_program = options.mount_program.is_some();
        if let Some(program) = &options.mount_program
            && !program.is_file()
        {
            return Err(not_supported(
                &config.graph_root,
                format!("mount program {} does not exist", program.display()),
            ));
        }
        let mount_opts = options.mount_options.join(",");
        let (supports_d_type, native_diff, using_metacopy) = if has_program {
            (true, true, false)
        } else {
            if features::needs_mount_program(magic) {
                return Err(not_supported(
                    &config.graph_root,
                    format!(
                        "'overlay' is not supported over {backing_fs}, a mount_program is required"
                    ),
                ));
            }
            let (overlay, why) =
                features::check(&run_home, "overlay", || features::probe_overlay(&home));
            if !overlay {
                return Err(not_supported(
                    &config.graph_root,
                    format!("kernel overlay does not work here: {why}"),
                ));
            }
            let d_type = features::supports_d_type(&home).unwrap_or(false);
            if !d_type {
                return Err(not_supported(
                    &config.graph_root,
                    format!("the backing {backing_fs} filesystem lacks d_type support"),
                ));
            }
            let (metacopy, _) =
                features::check(&run_home, &format!("metacopy({mount_opts})"), || {
                    features::probe_metacopy(&home, &mount_opts)
                });
            let (native, _) =
                features::check(&run_home, &format!("native-diff({mount_opts})"), || {
                    features::probe_native_diff(&home, &mount_opts)
                });
            (d_type, native, metacopy)
        };
        if !using_metacopy {
            // Go strips metacopy=on when the kernel cannot follow it.
            options.mount_options.retain(|o| o != "metacopy=on");
        }
        let flag_file = home.join(".has-mount-program");
        write_file(
            &flag_file,
            if has_program { "true" } else { "false" },
            0o600,
        )
        .map_err(|e| Error::io("write", &flag_file, e))?;
        let link_dir = home.join(layout::LINK_DIR);
        mkdir(&link_dir, 0o755).map_err(|e| Error::io("mkdir", &link_dir, e))?;
        let new_mount_api = !has_program && mount::new_api_supported(&link_dir);
        Ok(OverlayDriver {
            home,
            run_home,
            options,
            default_mappings: config.id_mappings.clone(),
            backing_fs,
            supports_d_type,
            native_diff,
            using_metacopy,
            new_mount_api,
            mounts: Mutex::new(HashMap::new()),
        })
    }

    /// The options in effect (after `metacopy=on` was dropped where unsupported).
    pub fn options(&self) -> &OverlayOptions {
        &self.options
    }

    /// Where the probe results are cached (`<runroot>/overlay`).
    pub fn run_home(&self) -> &Path {
        &self.run_home
    }

    /// Whether the native diff is used (Go's `native-diff` probe passed and metacopy is off).
    pub fn uses_native_diff(&self) -> bool {
        self.native_diff && !self.using_metacopy
    }

    /// Whether mounts get `metacopy=on`.
    pub fn uses_metacopy(&self) -> bool {
        self.using_metacopy
    }

    /// Whether the kernel takes `lowerdir+` through `fsconfig` (used for chains whose mount
    /// options do not fit a page).
    pub fn has_new_mount_api(&self) -> bool {
        self.new_mount_api
    }

    /// How the layer's current mount was made by this driver, if it is mounted by it.
    pub fn mount_method(&self, id: &str) -> Option<MountMethod> {
        self.lock_mounts().get(id).and_then(|m| m.method)
    }

    /// `<home>/<id>`.
    pub fn layer_dir(&self, id: &str) -> Result<PathBuf> {
        validate_layer_id(id)?;
        Ok(self.home.join(id))
    }

    fn existing_dir(&self, id: &str) -> Result<PathBuf> {
        let dir = self.layer_dir(id)?;
        if is_dir(&dir) {
            Ok(dir)
        } else {
            Err(Error::LayerNotFound {
                id: id.to_string(),
                path: dir,
            })
        }
    }

    fn lock_mounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, MountState>> {
        self.mounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The layer's lowers as `(absolute l/ link path, relative l/ entry, lower layer's diff
    /// dir)`, nearest first. Missing `l/` links are recreated once (Go's `recreateSymlinks`).
    fn lowers(&self, id: &str, dir: &Path) -> Result<Vec<(PathBuf, String, PathBuf)>> {
        let entries = layout::read_lower(id, dir)?;
        let mut recreated = false;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let link = self.home.join(&entry);
            let target = match std::fs::read_link(&link) {
                Ok(target) => target,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !recreated => {
                    recreated = true;
                    layout::recreate_symlinks(&self.home)?;
                    std::fs::read_link(&link)
                        .map_err(|e| Error::layer_io(id, "read the lower link", &link, e))?
                }
                Err(e) => return Err(Error::layer_io(id, "read the lower link", &link, e)),
            };
            let diff = self.home.join(layout::LINK_DIR).join(&target);
            let diff = normalize(&diff);
            // `metadata` follows the `diff` symlink of a layer adopted from an additional
            // layer store (its tree lives there).
            if !diff.starts_with(&self.home) || !std::fs::metadata(&diff).is_ok_and(|m| m.is_dir())
            {
                return Err(Error::layer_io(
                    id,
                    "stat the lower layer",
                    &link,
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("can't stat lower layer {}", diff.display()),
                    ),
                ));
            }
            out.push((link, entry, diff));
        }
        Ok(out)
    }

    /// The `diff/` dirs of the layer's lowers, nearest first.
    fn lower_diffs(&self, id: &str, dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(self
            .lowers(id, dir)?
            .into_iter()
            .map(|(_, _, diff)| diff)
            .collect())
    }

    /// Go's `isParent`: `parent` is the layer's real first lower (or both are absent).
    fn is_parent(&self, id: &str, parent: Option<&str>) -> bool {
        let Ok(dir) = self.existing_dir(id) else {
            return false;
        };
        let Ok(lowers) = self.lower_diffs(id, &dir) else {
            return false;
        };
        match (parent, lowers.first()) {
            (None, None) => true,
            (Some(parent), Some(first)) => {
                validate_layer_id(parent).is_ok() && *first == self.home.join(parent).join("diff")
            }
            _ => false,
        }
    }

    /// Go's `!useNaiveDiff() && isParent(id, parent)`: with metacopy an upper file may hold
    /// only metadata, so the upper dir alone is not the layer's diff.
    fn native(&self, id: &str, parent: Option<&str>) -> bool {
        self.native_diff && !self.using_metacopy && self.is_parent(id, parent)
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        validate_layer_id(id)?;
        if let Some(parent) = parent {
            validate_layer_id(parent)?;
        }
        if !opts.storage_opt.is_empty() {
            return Err(Error::StorageOptions {
                driver: NAME.to_string(),
                id: id.to_string(),
            });
        }
        let dir = self.home.join(id);
        if std::fs::symlink_metadata(&dir).is_ok() {
            // Go warns and starts over ("directory already exists; removing it first").
            self.remove(id)?;
        }
        let (mode, uid, gid, lower) = match parent {
            Some(parent) => {
                let parent_dir = self.existing_dir(parent)?;
                let parent_diff = parent_dir.join("diff");
                let st = std::fs::metadata(&parent_diff)
                    .map_err(|e| Error::layer_io(parent, "stat", &parent_diff, e))?;
                let lower = layout::child_lower(parent, &parent_dir)?;
                (st.mode() & 0o7777, st.uid(), st.gid(), Some(lower))
            }
            None => {
                let mappings = opts.id_mappings.as_ref().unwrap_or(&self.default_mappings);
                let (uid, gid) = mappings.root_owner(id, &dir)?;
                (BASE_LAYER_MODE, uid, gid, None)
            }
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::layer_io(id, "mkdir", &dir, e))?;
        let result = self.fill_layer(id, &dir, mode, (uid, gid), lower.as_deref());
        if result.is_err() {
            // Leave nothing half-made; the first error is the one to report.
            let _ = self.remove(id);
        }
        result
    }

    fn fill_layer(
        &self,
        id: &str,
        dir: &Path,
        mode: u32,
        owner: (u32, u32),
        lower: Option<&[String]>,
    ) -> Result<()> {
        let make = |name: &str, mode: u32| -> Result<()> {
            let path = dir.join(name);
            mkdir(&path, 0o700).map_err(|e| Error::layer_io(id, "mkdir", &path, e))?;
            chown(&path, owner, self.options.ignore_chown_errors)
                .map_err(|e| Error::layer_io(id, "chown", &path, e))?;
            // Explicitly, so the umask does not matter.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::layer_io(id, "chmod", &path, e))
        };
        chown(dir, owner, self.options.ignore_chown_errors)
            .map_err(|e| Error::layer_io(id, "chown", dir, e))?;
        make("diff", mode)?;
        let link_dir = self.home.join(layout::LINK_DIR);
        mkdir(&link_dir, 0o755).map_err(|e| Error::io("mkdir", &link_dir, e))?;
        let link = loop {
            let link = generate_link_id().map_err(|e| Error::layer_io(id, "getrandom", dir, e))?;
            let path = link_dir.join(&link);
            match std::os::unix::fs::symlink(layout::link_target(id), &path) {
                Ok(()) => break link,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::layer_io(id, "symlink", &path, e)),
            }
        };
        let link_file = dir.join("link");
        write_file(&link_file, &link, 0o644)
            .map_err(|e| Error::layer_io(id, "write", &link_file, e))?;
        make("work", 0o700)?;
        make("merged", 0o700)?;
        match lower {
            None => make("empty", 0o700)?,
            Some(lower) => {
                let lower_file = dir.join("lower");
                write_file(&lower_file, &lower.join(":"), 0o644)
                    .map_err(|e| Error::layer_io(id, "write", &lower_file, e))?;
            }
        }
        Ok(())
    }

    /// Mounts layer `id` (refcount already known to be 0).
    fn mount_layer(&self, id: &str, dir: &Path, opts: &MountOpts) -> Result<MountMethod> {
        let mut options: Vec<String> = if opts.options.is_empty() {
            self.options.mount_options.clone()
        } else {
            let mut list = opts.options.clone();
            // The kernel only follows metacopy xattrs when the mount asks for them.
            if self.using_metacopy
                && self
                    .options
                    .mount_options
                    .iter()
                    .any(|o| o == "metacopy=on")
                && !list.iter().any(|o| o.starts_with("metacopy="))
            {
                list.push("metacopy=on".to_string());
            }
            list
        };
        if !self.using_metacopy {
            options.retain(|o| o != "metacopy=on");
        }
        options.retain(|o| !o.is_empty());
        let read_write = !options.iter().any(|o| o == "ro");
        if opts.volatile && read_write && !options.iter().any(|o| o == "volatile") {
            // No syncs to the upper dir (Linux 5.10+); the kernel marks the workdir, and the
            // marker is removed again before every mount (below), as Go does.
            options.push("volatile".to_string());
        }
        let lowers = self.lowers(id, dir)?;
        let mut lowers_abs: Vec<PathBuf> = Vec::new();
        let mut lowers_rel: Vec<String> = Vec::new();
        if !read_write {
            let diff = dir.join("diff");
            lowers_rel.push(diff.to_string_lossy().into_owned());
            lowers_abs.push(diff);
        }
        for (link, entry, _) in &lowers {
            lowers_abs.push(link.clone());
            lowers_rel.push(entry.clone());
        }
        if lowers.is_empty() {
            let empty = dir.join("empty");
            mkdir(&empty, 0o700).map_err(|e| Error::layer_io(id, "mkdir", &empty, e))?;
            lowers_abs.push(empty);
            lowers_rel.push(format!("{id}/empty"));
        }
        let merged = dir.join("merged");
        mkdir(&merged, 0o700).map_err(|e| Error::layer_io(id, "mkdir", &merged, e))?;
        // A stale marker from a volatile mount would make the kernel refuse the workdir.
        let _ = std::fs::remove_dir_all(dir.join("work/work/incompat/volatile"));

        if let Some(program) = &self.options.mount_program {
            let spec = self.spec(id, read_write, lowers_abs, lowers_rel, options, opts);
            return mount::mount_program(program, &spec)
                .map_err(|e| mount_error(id, &merged, &spec, e));
        }
        if lowers_abs.len() > mount::KERNEL_MAX_LAYERS {
            self.mount_stack(id, dir, &mut lowers_abs, &mut lowers_rel)?;
        }
        let spec = self.spec(id, read_write, lowers_abs, lowers_rel, options, opts);
        let result = mount::mount_kernel(&spec, self.new_mount_api)
            .map_err(|e| mount_error(id, &merged, &spec, e));
        if result.is_err() {
            let _ = self.unmount_stack(dir);
        }
        result
    }

    fn spec(
        &self,
        id: &str,
        read_write: bool,
        lowers_abs: Vec<PathBuf>,
        lowers_rel: Vec<String>,
        options: Vec<String>,
        opts: &MountOpts,
    ) -> mount::MountSpec {
        mount::MountSpec {
            home: self.home.clone(),
            id: id.to_string(),
            read_write,
            lowers_abs,
            lowers_rel,
            options,
            mount_label: opts.mount_label.clone(),
            target: self.home.join(id).join("merged"),
            target_rel: format!("{id}/merged"),
        }
    }

    /// Mounts the deepest lowers (beyond what one overlay takes) read-only at
    /// `<id>/lower-stack` and replaces them in the lists by that one directory.
    fn mount_stack(
        &self,
        id: &str,
        dir: &Path,
        lowers_abs: &mut Vec<PathBuf>,
        lowers_rel: &mut Vec<String>,
    ) -> Result<()> {
        let keep = mount::KERNEL_MAX_LAYERS - 1;
        let deep_abs = lowers_abs.split_off(keep);
        let deep_rel = lowers_rel.split_off(keep);
        let stack = dir.join(LOWER_STACK);
        if deep_abs.len() > mount::KERNEL_MAX_LAYERS {
            return Err(Error::layer_io(
                id,
                "mount",
                &stack,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "max depth exceeded: {} layers (at most {} can be mounted)",
                        keep + deep_abs.len() + 1,
                        2 * mount::KERNEL_MAX_LAYERS - 1
                    ),
                ),
            ));
        }
        mkdir(&stack, 0o700).map_err(|e| Error::layer_io(id, "mkdir", &stack, e))?;
        let _ = self.unmount_stack(dir);
        mkdir(&stack, 0o700).map_err(|e| Error::layer_io(id, "mkdir", &stack, e))?;
        let spec = mount::MountSpec {
            home: self.home.clone(),
            id: id.to_string(),
            read_write: false,
            lowers_abs: deep_abs,
            lowers_rel: deep_rel,
            options: vec!["ro".to_string()],
            mount_label: String::new(),
            target: stack.clone(),
            target_rel: format!("{id}/{LOWER_STACK}"),
        };
        mount::mount_kernel(&spec, self.new_mount_api)
            .map_err(|e| mount_error(id, &stack, &spec, e))?;
        lowers_abs.push(stack);
        lowers_rel.push(format!("{id}/{LOWER_STACK}"));
        Ok(())
    }

    fn unmount_stack(&self, dir: &Path) -> io::Result<()> {
        let stack = dir.join(LOWER_STACK);
        if mount::is_mount_point(&stack) {
            mount::unmount(&stack)?;
        }
        match std::fs::remove_dir(&stack) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Unmounts the layer's merged dir (and stack), then removes the mount point, as Go's
    /// `Put` does once the count reaches 0.
    fn unmount_layer(&self, id: &str, dir: &Path) -> Result<()> {
        let merged = dir.join("merged");
        let result = if self.options.mount_program.is_some() && mount::is_mount_point(&merged) {
            mount::unmount_fuse(&merged)
        } else {
            mount::unmount(&merged)
        };
        result.map_err(|e| Error::layer_io(id, "unmount", &merged, e))?;
        self.unmount_stack(dir)
            .map_err(|e| Error::layer_io(id, "unmount", dir.join(LOWER_STACK), e))?;
        // Go ignores a failing rmdir too (the mount point may be busy elsewhere).
        let _ = std::fs::remove_dir(&merged);
        Ok(())
    }

    /// The current mount count of `id`: ours, or 1 when someone else mounted it (Go's
    /// refcounter checks the mount table the first time it sees a path).
    fn current_count(&self, mounts: &HashMap<String, MountState>, id: &str, dir: &Path) -> u32 {
        match mounts.get(id) {
            Some(state) => state.count,
            None => u32::from(mount::is_mount_point(&dir.join("merged"))),
        }
    }
}

fn mount_error(id: &str, target: &Path, spec: &mount::MountSpec, e: io::Error) -> Error {
    let mut data = spec.data(false);
    if data.len() > 512 {
        let mut cut = 512;
        while !data.is_char_boundary(cut) {
            cut -= 1;
        }
        data.truncate(cut);
        data.push('…');
    }
    Error::layer_io(
        id,
        "mount",
        target,
        io::Error::new(e.kind(), format!("{e} (mount_data={data:?})")),
    )
}

/// `path` with `.` and `..` components resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn write_file(path: &Path, content: &str, mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.write_all(content.as_bytes())
}

fn chown(path: &Path, (uid, gid): (u32, u32), ignore_errors: bool) -> io::Result<()> {
    let st = std::fs::symlink_metadata(path)?;
    if (st.uid(), st.gid()) == (uid, gid) {
        return Ok(());
    }
    match std::os::unix::fs::chown(path, Some(uid), Some(gid)) {
        Err(e) if ignore_errors && e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// Go's `mount.MakePrivate`: bind-mount `path` onto itself unless it is a mount point
/// already, then make it private. Returns whether the bind mount was made here.
fn make_private(path: &Path) -> io::Result<bool> {
    let bind = !mount::is_mount_point(path);
    if bind {
        rustix::mount::mount_bind(path, path)?;
    }
    rustix::mount::mount_change(path, rustix::mount::MountPropagationFlags::PRIVATE)?;
    Ok(bind)
}

/// Drops tar-split records when the caller wants none.
struct DiscardEntries;

impl EntrySink for DiscardEntries {
    fn put(
        &mut self,
        _entry: layerstore_tarsplit::Entry,
    ) -> std::result::Result<(), layerstore_tarsplit::Error> {
        Ok(())
    }
}

impl Driver for OverlayDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
    }

    /// Unmounts the layer if mounted, removes its `l/` link, then its directory. A layer that
    /// does not exist is removed successfully.
    fn remove(&self, id: &str) -> Result<()> {
        let dir = self.layer_dir(id)?;
        if std::fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        if mount::is_mount_point(&dir.join("merged")) {
            self.unmount_layer(id, &dir)?;
        }
        self.lock_mounts().remove(id);
        if let Ok(link) = layout::read_link_id(id, &dir) {
            let path = self.home.join(layout::LINK_DIR).join(link);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&path).map_err(|e| Error::layer_io(id, "remove", &path, e))?;
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::layer_io(id, "remove", &dir, e))
            }
            _ => Ok(()),
        }
    }

    /// Mounts the layer (once; later calls count) and returns `<home>/<id>/merged`.
    fn get(&self, id: &str, opts: &MountOpts) -> Result<PathBuf> {
        let dir = self.existing_dir(id)?;
        let merged = dir.join("merged");
        let mut mounts = self.lock_mounts();
        let count = self.current_count(&mounts, id, &dir);
        if count > 0 {
            let state = mounts.entry(id.to_string()).or_insert(MountState {
                count,
                method: None,
            });
            state.count = count + 1;
            return Ok(merged);
        }
        let method = match self.mount_layer(id, &dir, opts) {
            Ok(method) => method,
            Err(e) => {
                // As Go's deferred cleanup: no mount point is left behind.
                let _ = std::fs::remove_dir(&merged);
                return Err(e);
            }
        };
        mounts.insert(
            id.to_string(),
            MountState {
                count: 1,
                method: Some(method),
            },
        );
        Ok(merged)
    }

    /// Counts down; at 0 unmounts (`MNT_DETACH`, `fusermount -u` for FUSE) and removes
    /// `merged/`. A layer that is not mounted, or mounted by another process, is not an
    /// error (the latter is unmounted, as Go does).
    fn put(&self, id: &str) -> Result<()> {
        let dir = self.existing_dir(id)?;
        let mut mounts = self.lock_mounts();
        let count = self.current_count(&mounts, id, &dir).saturating_sub(1);
        if count > 0 {
            if let Some(state) = mounts.get_mut(id) {
                state.count = count;
            }
            return Ok(());
        }
        mounts.remove(id);
        self.unmount_layer(id, &dir)
    }

    fn exists(&self, id: &str) -> bool {
        self.layer_dir(id).is_ok_and(|dir| is_dir(&dir))
    }

    fn list_layers(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries =
            std::fs::read_dir(&self.home).map_err(|e| Error::io("read", &self.home, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read", &self.home, e))?;
            let Ok(id) = entry.file_name().into_string() else {
                continue;
            };
            if id == layout::LINK_DIR || id == "staging" || validate_layer_id(&id).is_err() {
                continue;
            }
            if std::fs::metadata(entry.path().join("diff")).is_ok_and(|m| m.is_dir()) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Go 1.43's four lines.
    fn status(&self) -> Vec<(String, String)> {
        vec![
            ("Backing Filesystem".into(), self.backing_fs.into()),
            ("Supports d_type".into(), self.supports_d_type.to_string()),
            (
                "Native Overlay Diff".into(),
                self.uses_native_diff().to_string(),
            ),
            ("Using metacopy".into(), self.using_metacopy.to_string()),
        ]
    }

    /// `WorkDir`, `MergedDir`, `UpperDir` and (for children) `LowerDir`, the lowers' `diff`
    /// dirs joined by `:`.
    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let dir = self.existing_dir(id)?;
        let show = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut out = BTreeMap::new();
        out.insert("WorkDir".into(), show(dir.join("work")));
        out.insert("MergedDir".into(), show(dir.join("merged")));
        out.insert("UpperDir".into(), show(dir.join("diff")));
        let lowers = self.lower_diffs(id, &dir)?;
        if !lowers.is_empty() {
            let joined: Vec<String> = lowers.into_iter().map(show).collect();
            out.insert("LowerDir".into(), joined.join(":"));
        }
        Ok(out)
    }

    /// Usage of the layer's own files (`diff/`), without mounting.
    fn read_write_disk_usage(&self, id: &str) -> Result<DiskUsage> {
        let dir = self.existing_dir(id)?;
        diff::usage(id, &dir.join("diff"))
    }

    /// Unmounts every layer this driver mounted, then the home's private bind mount (unless
    /// `skip_mount_home`).
    fn cleanup(&self) -> Result<()> {
        let ids: Vec<String> = self.lock_mounts().drain().map(|(id, _)| id).collect();
        let mut first_error = None;
        for id in ids {
            let dir = self.home.join(&id);
            if let Err(e) = self.unmount_layer(&id, &dir) {
                first_error.get_or_insert(e);
            }
        }
        if !self.options.skip_mount_home && mount::is_mount_point(&self.home) {
            mount::unmount(&self.home)
                .map_err(|e| Error::io("unmount", &self.home, e))
                .unwrap_or_else(|e| {
                    first_error.get_or_insert(e);
                });
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Native (when `parent` is the layer's real parent): untar straight into `diff/` with
    /// overlay whiteouts. Otherwise naive, through a mount.
    fn apply_diff(
        &self,
        id: &str,
        parent: Option<&str>,
        mut opts: ApplyDiffOpts<'_>,
    ) -> Result<ApplyReport> {
        opts.ignore_chown_errors |= self.options.ignore_chown_errors;
        if !self.native(id, parent) {
            return naive::apply_diff(self, id, parent, opts);
        }
        let diff = self.existing_dir(id)?.join("diff");
        let options = layerstore_archive::ApplyOptions {
            whiteouts: layerstore_archive::WhiteoutStyle::Overlay,
            uid_map: opts.id_mappings.uids,
            gid_map: opts.id_mappings.gids,
            ignore_chown_errors: opts.ignore_chown_errors,
            max_uncompressed_size: opts.max_uncompressed_size,
            ..Default::default()
        };
        let result = match opts.tar_split {
            Some(sink) => {
                layerstore_archive::apply(&diff, opts.diff, sink, &options).map(|(r, _)| r)
            }
            None => layerstore_archive::apply(&diff, opts.diff, DiscardEntries, &options)
                .map(|(r, _)| r),
        };
        result.map_err(|e| Error::archive(id, e))
    }

    /// Native: the upper dir exported with whiteouts converted (see the crate docs).
    fn diff(&self, args: &DiffArgs<'_>, out: &mut dyn io::Write) -> Result<u64> {
        if !self.native(args.id, args.parent) {
            return naive::diff(self, args, out);
        }
        let dir = self.existing_dir(args.id)?;
        diff::export(args.id, &dir.join("diff"), args.id_mappings, out)
    }

    /// Native: Go's `OverlayChanges` over `diff/` and the lowers.
    fn changes(&self, args: &DiffArgs<'_>) -> Result<Vec<Change>> {
        if !self.native(args.id, args.parent) {
            return naive::changes(self, args);
        }
        let dir = self.existing_dir(args.id)?;
        let lowers = self.lower_diffs(args.id, &dir)?;
        let lower_refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
        layerstore_archive::overlay_changes(&dir.join("diff"), &lower_refs)
            .map_err(|e| Error::archive(args.id, e))
    }

    /// Native: sizes of the upper dir's non-directory inodes.
    fn diff_size(&self, args: &DiffArgs<'_>) -> Result<u64> {
        if !self.native(args.id, args.parent) {
            return naive::diff_size(self, args);
        }
        let dir = self.existing_dir(args.id)?;
        diff::size(args.id, &dir.join("diff"))
    }

    /// Reads from `diff/`, then the lowers' (for metacopy-only files).
    /// Stages into a fresh `<home>/staging/<random>` with overlay whiteouts.
    fn apply_diff_with_differ(
        &self,
        options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        self.stage(options, differ)
    }

    /// Exchanges the staging directory with `<id>/diff` (`renameat2(RENAME_EXCHANGE)`), giving
    /// it `diff/`'s mode and owner, then removes the old tree.
    fn apply_diff_from_staging_directory(&self, id: &str, staging: &Path) -> Result<()> {
        self.unstage(id, staging)
    }

    fn cleanup_staging_directory(&self, staging: &Path) -> Result<()> {
        self.remove_staging(staging)
    }

    fn lookup_additional_layer(&self, digest: &str, image_ref: &str) -> Option<AdditionalLayer> {
        self.find_additional(digest, image_ref)
    }

    /// Replaces the new layer's empty `diff/` with a symlink to the store's `diff/`, records
    /// the store's directory in `<id>/additionallayer` and creates its `use` file.
    fn attach_additional_layer(&self, id: &str, layer: &AdditionalLayer) -> Result<()> {
        self.attach_additional(id, layer)
    }

    /// `<home>/<id>/diff`.
    fn differ_target(&self, id: &str) -> Result<PathBuf> {
        self.differ_dir(id)
    }

    fn diff_getter(&self, id: &str) -> Result<Option<Box<dyn FileGetter + Send + '_>>> {
        let dir = self.existing_dir(id)?;
        let lowers = self.lower_diffs(id, &dir)?;
        Ok(Some(Box::new(OverlayFileGetter::new(
            id,
            &dir.join("diff"),
            &lowers,
        )?)))
    }
}
