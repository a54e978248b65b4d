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
//! `work/`; a read-only one (`ro` option) stacks `diff/` on the lowers. Unlike Go, the mount
//! data names no path of the store: the driver opens every directory itself (the layer from
//! the home's descriptor, each lower from the home by the ID its `l/` link names, never
//! following a symlink) and names them `/proc/self/fd/<n>`, the mount point too, so neither a
//! layer ID nor a link name nor a symlink swapped in can change what is mounted where.
//! When that data does not fit a page (some 200 layers), the new mount API (`fsopen`/`fsconfig`
//! with one `lowerdir+` per layer, Linux 6.8+, then `move_mount` onto the mount point's
//! descriptor) is used, and chains deeper than the kernel's 500-layer limit (`OVL_MAX_STACK`)
//! mount their deepest layers as a read-only overlay (`<id>/lower-stack`) used as one lower
//! dir (at most 999 layers). Options naming mount flags (`nodev`, `nosuid`, `ro`, …) become
//! flags, as Go's `mount.ParseOptions` does; a mount label with a quote, a backslash or a
//! control character is refused. Mounts are counted: the first [`Driver::get`] mounts, the
//! last [`Driver::put`] unmounts (`MNT_DETACH | UMOUNT_NOFOLLOW`, through the layer's
//! descriptor) and removes `merged/`; a layer mounted by another process counts as mounted
//! once, as Go's refcounter does. [`Driver::cleanup`] unmounts what this driver mounted and
//! undoes the home's bind mount.
//!
//! The layer's `diff/` (its top directory in every mount), as Go 1.43 leaves it (measured):
//! made 0555 and owned by the mapped root for a base layer, with the parent's mode and owner
//! for a child; a tarball's `./` entry changes nothing (Go's `Unpack` skips it): the
//! modification time is the kernel's (entries created in it), the access time the apply's end
//! (Go reads the tree to size it). Applied naively (a parent other than the layer's own) the
//! rule of the naive drivers holds instead (see [`layerstore_driver::naive::apply_diff`]).
//! `update_layer_id_map` shifts every file below through a mount, each inode once (hard links
//! split by copy-up are linked again), then gives `diff/` the mapped root as owner, as Go's
//! rotation of the upper dir does.
//!
//! Everything in the home is input: `link` and `lower` are read as regular files of bounded
//! size, never through a symlink, and hold only link names of the driver's form (26 base32
//! characters); `l/<link>` must be exactly `../<id>/diff`; a layer directory, its `diff`,
//! `work` and `merged` that are symlinks are refused. The one exception is the `diff` symlink
//! of a layer adopted from an additional layer store (it has an `additionallayer` file), which
//! must resolve inside a configured store. IDs `l`, `staging` and `.has-mount-program` are
//! refused.
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
//! No quotas (`size`/`inodes`), idmapped lowers (`supports_shifting` is false: the store
//! chowns instead), or composefs. Additional image stores (`imagestore=<dir>,…`,
//! `additionalimagestore=`, checked as Go checks them) serve their layers as lowers and
//! parents: a layer or `l/` link the home lacks is looked up in `<dir>/overlay`; their
//! layers are mounted where they are, as in Go. Rootless use
//! needs the mount program: kernel overlay without root would need
//! `userxattr` and `user.overlay.*` whiteouts, which the archive crate does not write. With a mount program the whiteouts on disk stay in the kernel's
//! format (the archive crate has no AUFS-on-disk style), which fuse-overlayfs reads too; that
//! needs a user allowed to `mknod`. The native export (the archive crate's) writes file
//! whiteouts with mode 0 and the current time (Go: the device's metadata), and an opaque
//! directory's `.wh..wh..opq` marker even when no lower has the directory (Go checks); the
//! entries and their order are otherwise Go's.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use layerstore_driver::tree;
use layerstore_driver::{
    AdditionalLayer, AdditionalLayerStore, Differ, DifferOptions, DifferOutput,
};
use layerstore_driver::{
    ApplyDiffOpts, ApplyReport, Change, CreateOpts, DiffArgs, DiskUsage, Driver, DriverConfig,
    DriverOptions, Error, FileGetter, LayerRoot, MountOpts, Registration, Result, naive,
    validate_driver_layer_id,
};

mod additional;
mod diff;
mod features;
mod layout;
mod mount;
mod staging;

pub use diff::OverlayFileGetter;
pub use layout::{LINK_ID_LEN, generate_link_id, recreate_symlinks, recreate_symlinks_at};
pub use mount::{MountMethod, parse_options};

/// The driver's name and home directory name.
pub const NAME: &str = "overlay";
/// Other names Go accepts for it.
pub const ALIASES: &[&str] = &["overlay2"];

/// Names in the driver's home that are the driver's own: never layer IDs (a layer `l` would
/// be the short links' directory, and removing it would remove every link).
pub const RESERVED_NAMES: &[&str] = &["l", "staging", ".has-mount-program"];

/// Mode of a base layer's `diff/` (Go's `defaultPerms`).
const BASE_LAYER_MODE: u32 = 0o555;
/// Name of the read-only overlay of a deep chain's deepest layers, inside the layer dir.
const LOWER_STACK: &CStr = c"lower-stack";

/// [`validate_driver_layer_id`] with this driver's reserved names.
pub(crate) fn validate(id: &str) -> Result<()> {
    validate_driver_layer_id(id, RESERVED_NAMES)
}

fn id_cstring(id: &str) -> Result<CString> {
    CString::new(id).map_err(|_| Error::InvalidId {
        id: id.to_string(),
        reason: "contains NUL",
    })
}

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

/// What is known about one mounted layer.
#[derive(Debug, Clone, Copy)]
struct MountState {
    count: u32,
    method: Option<MountMethod>,
}

/// The overlay driver (see the crate documentation).
#[derive(Debug)]
pub struct OverlayDriver {
    graph_root: PathBuf,
    home: PathBuf,
    /// The home, opened once without following `overlay` (after its bind mount, the mount).
    home_fd: OwnedFd,
    run_home: PathBuf,
    options: OverlayOptions,
    default_mappings: layerstore_driver::IdMappings,
    backing_fs: &'static str,
    supports_d_type: bool,
    native_diff: bool,
    using_metacopy: bool,
    new_mount_api: bool,
    mounts: Mutex<HashMap<String, MountState>>,
    /// `<image store>/overlay` of each additional image store, opened when the driver
    /// started (`None`: it has none), searched after the home for layers and `l/` links.
    image_store_homes: Vec<(PathBuf, Option<OwnedFd>)>,
}

fn not_supported(root: &Path, reason: impl Into<String>) -> Error {
    Error::NotSupported {
        driver: NAME.to_string(),
        root: root.to_path_buf(),
        reason: reason.into(),
    }
}

/// A layer's directory `<home>/<id>`, opened from the home's descriptor.
#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) fd: OwnedFd,
    pub(crate) dir: PathBuf,
}

/// One lower layer of a layer, resolved through the home: never through `l/` to anywhere but
/// a layer of the home (or an additional layer store's tree the layer links).
#[derive(Debug)]
struct Lower {
    /// The lower layer.
    id: String,
    /// Its `diff/`.
    diff: OwnedFd,
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
        // Messages and metadata name the layers by absolute path: a relative root is made
        // absolute (lexically, keeping symlinks as given, as Go keeps the configured path).
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let graph_root = absolute(config.graph_root.clone());
        let home = graph_root.join(NAME);
        let run_home = absolute(config.run_root.join(NAME));
        let unmounted = tree::open_home(&graph_root, c"overlay", 0o700)
            .map_err(|e| Error::io("mkdir", &home, e))?;
        tree::open_home(&absolute(config.run_root.clone()), c"overlay", 0o700)
            .map_err(|e| Error::io("mkdir", &run_home, e))?;
        let magic = rustix::fs::fstatfs(&unmounted)
            // `f_type`'s C type differs between architectures.
            .map(
                #[allow(clippy::unnecessary_cast)]
                |st| st.f_type as i64,
            )
            .map_err(|e| Error::io("statfs", &home, e))?;
        drop(unmounted);
        let root_fd =
            tree::open_dir_following(&graph_root).map_err(|e| Error::io("open", &graph_root, e))?;
        // First, so that not even the probes' mounts propagate to other namespaces.
        let (bound_home, home_fd) = if options.skip_mount_home {
            let fd =
                tree::open_dir_at(&root_fd, c"overlay").map_err(|e| Error::io("open", &home, e))?;
            (false, fd)
        } else {
            layerstore_driver::mount::make_private_at(root_fd.as_fd(), c"overlay").map_err(|e| {
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
        let started = Self::start(
            config,
            options,
            Homes {
                graph_root,
                home,
                home_fd,
                run_home,
            },
            magic,
        );
        started.inspect_err(|_| {
            // A driver that does not start leaves no bind mount of its own behind.
            if bound_home {
                let _ = layerstore_driver::mount::unmount_at(root_fd.as_fd(), c"overlay");
            }
        })
    }

    fn start(
        config: &DriverConfig,
        mut options: OverlayOptions,
        homes: Homes,
        magic: i64,
    ) -> Result<Self> {
        let Homes {
            graph_root,
            home,
            home_fd,
            run_home,
        } = homes;
        // The probes work in scratch directories below the home, named through its descriptor.
        let probe_home = layerstore_driver::mount::proc_path(home_fd.as_fd());
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
            let (overlay, why) = features::check(&run_home, "overlay", || {
                features::probe_overlay(&probe_home)
            });
            if !overlay {
                return Err(not_supported(
                    &config.graph_root,
                    format!("kernel overlay does not work here: {why}"),
                ));
            }
            let d_type = features::supports_d_type(&probe_home).unwrap_or(false);
            if !d_type {
                return Err(not_supported(
                    &config.graph_root,
                    format!("the backing {backing_fs} filesystem lacks d_type support"),
                ));
            }
            let (metacopy, _) =
                features::check(&run_home, &format!("metacopy({mount_opts})"), || {
                    features::probe_metacopy(&probe_home, &mount_opts)
                });
            let (native, _) =
                features::check(&run_home, &format!("native-diff({mount_opts})"), || {
                    features::probe_native_diff(&probe_home, &mount_opts)
                });
            (d_type, native, metacopy)
        };
        if !using_metacopy {
            // Go strips metacopy=on when the kernel cannot follow it.
            options.mount_options.retain(|o| o != "metacopy=on");
        }
        let flag_file = home.join(".has-mount-program");
        tree::write_file_at(
            &home_fd,
            c".has-mount-program",
            if has_program { b"true" } else { b"false" },
            0o600,
        )
        .map_err(|e| Error::io("write", &flag_file, e))?;
        let link_dir = home.join(layout::LINK_DIR);
        tree::ensure_dir_at(&home_fd, c"l", 0o755).map_err(|e| Error::io("mkdir", &link_dir, e))?;
        let new_mount_api = !has_program && mount::new_api_supported(&probe_home);
        let image_store_homes = options
            .image_stores
            .iter()
            .map(|store| {
                let home = store.join(NAME);
                let fd = tree::open_dir(&home).ok();
                (home, fd)
            })
            .collect();
        Ok(OverlayDriver {
            graph_root,
            home,
            home_fd,
            run_home,
            options,
            default_mappings: config.id_mappings.clone(),
            backing_fs,
            supports_d_type,
            native_diff,
            using_metacopy,
            new_mount_api,
            mounts: Mutex::new(HashMap::new()),
            image_store_homes,
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
    /// data does not fit a page).
    pub fn has_new_mount_api(&self) -> bool {
        self.new_mount_api
    }

    /// How the layer's current mount was made by this driver, if it is mounted by it.
    pub fn mount_method(&self, id: &str) -> Option<MountMethod> {
        self.lock_mounts().get(id).and_then(|m| m.method)
    }

    /// `<home>/<id>`.
    pub fn layer_dir(&self, id: &str) -> Result<PathBuf> {
        validate(id)?;
        Ok(self.home.join(id))
    }

    /// Opens `<home>/<id>` from the home's descriptor, never through a symlink; a layer the
    /// home lacks is looked up in each additional image store's `overlay/` the same way
    /// (read-only layers: lowers and parents of this store's layers, as in Go).
    pub(crate) fn open_layer(&self, id: &str) -> Result<Layer> {
        let dir = self.layer_dir(id)?;
        let name = id_cstring(id)?;
        match tree::open_dir_at(&self.home_fd, &name) {
            Ok(fd) => Ok(Layer { fd, dir }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                for (home, fd) in &self.image_store_homes {
                    let Some(fd) = fd else { continue };
                    if let Ok(layer) = tree::open_dir_at(fd, &name) {
                        return Ok(Layer {
                            fd: layer,
                            dir: home.join(id),
                        });
                    }
                }
                Err(Error::LayerNotFound {
                    id: id.to_string(),
                    path: dir,
                })
            }
            Err(e) => Err(Error::layer_io(id, "open", &dir, e)),
        }
    }

    /// The target of short link `name` (`l/<name>`): the home's, else the first additional
    /// image store's that has it (a read-only lower's link lives in its own store).
    fn read_short_link(&self, link_dir: &OwnedFd, name: &CStr) -> rustix::io::Result<Vec<u8>> {
        match rustix::fs::readlinkat(link_dir, name, Vec::new()) {
            Err(rustix::io::Errno::NOENT) => {
                for (_, fd) in &self.image_store_homes {
                    let Some(fd) = fd else { continue };
                    let Ok(dir) = tree::open_dir_at(fd, c"l") else {
                        continue;
                    };
                    if let Ok(target) = rustix::fs::readlinkat(&dir, name, Vec::new()) {
                        return Ok(target.into_bytes());
                    }
                }
                Err(rustix::io::Errno::NOENT)
            }
            other => other.map(|t| t.into_bytes()),
        }
    }

    /// Opens the layer's `diff/`: a directory of the layer's own, or, only for a layer adopted
    /// from an additional layer store, the store's tree its `diff` symlink names, which must
    /// resolve inside one of the configured stores.
    pub(crate) fn open_diff(&self, id: &str, layer: &Layer) -> Result<OwnedFd> {
        let path = layer.dir.join("diff");
        match tree::open_dir_at(&layer.fd, c"diff") {
            Ok(fd) => Ok(fd),
            // O_NOFOLLOW | O_DIRECTORY on a symlink: ELOOP or ENOTDIR.
            Err(_)
                if tree::stat_at(&layer.fd, c"diff")
                    .is_ok_and(|st| tree::file_type(&st) == tree::mode::S_IFLNK) =>
            {
                self.open_additional_diff(id, layer)
            }
            Err(e) => Err(Error::layer_io(id, "open", &path, e)),
        }
    }

    /// The descriptor of a writeable `diff/`: never an additional layer store's tree.
    pub(crate) fn open_own_diff(&self, id: &str, layer: &Layer) -> Result<OwnedFd> {
        tree::open_dir_at(&layer.fd, c"diff")
            .map_err(|e| Error::layer_io(id, "open", layer.dir.join("diff"), e))
    }

    fn lock_mounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, MountState>> {
        self.mounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The layer's lowers, nearest first: each `l/<link>` of its `lower` file must be a
    /// symlink `../<lower id>/diff`, and that lower's directory is then opened from the home
    /// (the symlink itself is never followed, so no lower can be outside the home). Missing
    /// `l/` links are recreated once (Go's `recreateSymlinks`).
    fn lowers(&self, id: &str, layer: &Layer) -> Result<Vec<Lower>> {
        let entries = layout::read_lower(id, layer.fd.as_fd(), &layer.dir)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let link_dir = tree::open_dir_at(&self.home_fd, c"l")
            .map_err(|e| Error::io("open", self.home.join(layout::LINK_DIR), e))?;
        let mut recreated = false;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let link = self.home.join(&entry);
            let name = entry.strip_prefix("l/").unwrap_or(&entry);
            let name = CString::new(name).map_err(|_| {
                Error::layer_io(
                    id,
                    "read",
                    &link,
                    io::Error::from(io::ErrorKind::InvalidData),
                )
            })?;
            let target = match self.read_short_link(&link_dir, &name) {
                Ok(target) => target,
                Err(rustix::io::Errno::NOENT) if !recreated => {
                    recreated = true;
                    layout::recreate_symlinks_at(self.home_fd.as_fd(), &self.home)?;
                    self.read_short_link(&link_dir, &name)
                        .map_err(|e| Error::layer_io(id, "read the lower link", &link, e))?
                }
                Err(e) => return Err(Error::layer_io(id, "read the lower link", &link, e)),
            };
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(&target));
            let lower = layout::link_target_id(&target)
                .and_then(|lower| {
                    let layer = self.open_layer(&lower).ok()?;
                    let diff = self.open_diff(&lower, &layer).ok()?;
                    Some(Lower { id: lower, diff })
                })
                .ok_or_else(|| {
                    Error::layer_io(
                        id,
                        "stat the lower layer",
                        &link,
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!(
                                "can't stat lower layer {}: not a layer of {}",
                                target.display(),
                                self.home.display()
                            ),
                        ),
                    )
                })?;
            out.push(lower);
        }
        Ok(out)
    }

    /// The `diff/` paths of the layer's lowers, nearest first (for messages and metadata).
    fn lower_paths(&self, lowers: &[Lower]) -> Vec<PathBuf> {
        lowers
            .iter()
            .map(|lower| self.home.join(&lower.id).join("diff"))
            .collect()
    }

    /// Go's `isParent`: `parent` is the layer's real first lower (or both are absent).
    fn is_parent(&self, id: &str, parent: Option<&str>) -> bool {
        let Ok(layer) = self.open_layer(id) else {
            return false;
        };
        let Ok(lowers) = self.lowers(id, &layer) else {
            return false;
        };
        match (parent, lowers.first()) {
            (None, None) => true,
            (Some(parent), Some(first)) => first.id == parent,
            _ => false,
        }
    }

    /// Go's `!useNaiveDiff() && isParent(id, parent)`: with metacopy an upper file may hold
    /// only metadata, so the upper dir alone is not the layer's diff.
    fn native(&self, id: &str, parent: Option<&str>) -> bool {
        self.native_diff && !self.using_metacopy && self.is_parent(id, parent)
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        validate(id)?;
        if let Some(parent) = parent {
            validate(parent)?;
        }
        if !opts.storage_opt.is_empty() {
            return Err(Error::StorageOptions {
                driver: NAME.to_string(),
                id: id.to_string(),
            });
        }
        let dir = self.home.join(id);
        let name = id_cstring(id)?;
        if tree::stat_at(&self.home_fd, &name).is_ok() {
            // Go warns and starts over ("directory already exists; removing it first").
            self.remove(id)?;
        }
        let (mode, uid, gid, lower) = match parent {
            Some(parent) => {
                let parent_layer = self.open_layer(parent)?;
                let parent_diff = self.open_diff(parent, &parent_layer)?;
                let st = tree::stat_fd(&parent_diff).map_err(|e| {
                    Error::layer_io(parent, "stat", parent_layer.dir.join("diff"), e)
                })?;
                let lower =
                    layout::child_lower(parent, parent_layer.fd.as_fd(), &parent_layer.dir)?;
                (tree::permissions(&st), st.stx_uid, st.stx_gid, Some(lower))
            }
            None => {
                let mappings = opts.id_mappings.as_ref().unwrap_or(&self.default_mappings);
                let (uid, gid) = mappings.root_owner(id, &dir)?;
                (BASE_LAYER_MODE, uid, gid, None)
            }
        };
        rustix::fs::mkdirat(&self.home_fd, &name, rustix::fs::Mode::from_raw_mode(0o700))
            .map_err(|e| Error::layer_io(id, "mkdir", &dir, e))?;
        let result = tree::open_dir_at(&self.home_fd, &name)
            .map_err(|e| Error::layer_io(id, "open", &dir, e))
            .and_then(|fd| {
                let layer = Layer { fd, dir };
                self.fill_layer(id, &layer, mode, (uid, gid), lower.as_deref())
            });
        if result.is_err() {
            // Leave nothing half-made; the first error is the one to report.
            let _ = self.remove(id);
        }
        result
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, (uid, gid): (u32, u32)) -> io::Result<()> {
        let st = tree::stat_fd(fd)?;
        if (st.stx_uid, st.stx_gid) == (uid, gid) {
            return Ok(());
        }
        match rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        ) {
            Err(rustix::io::Errno::PERM) if self.options.ignore_chown_errors => Ok(()),
            other => Ok(other?),
        }
    }

    fn fill_layer(
        &self,
        id: &str,
        layer: &Layer,
        mode: u32,
        owner: (u32, u32),
        lower: Option<&[String]>,
    ) -> Result<()> {
        let make = |name: &CStr, mode: u32| -> Result<()> {
            let path = layer.dir.join(tree::name_path(name));
            let fd = tree::ensure_dir_at(&layer.fd, name, 0o700)
                .map_err(|e| Error::layer_io(id, "mkdir", &path, e))?;
            self.chown_fd(fd.as_fd(), owner)
                .map_err(|e| Error::layer_io(id, "chown", &path, e))?;
            // Explicitly, so the umask does not matter.
            rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(mode))
                .map_err(|e| Error::layer_io(id, "chmod", &path, e))
        };
        self.chown_fd(layer.fd.as_fd(), owner)
            .map_err(|e| Error::layer_io(id, "chown", &layer.dir, e))?;
        make(c"diff", mode)?;
        let link_path = self.home.join(layout::LINK_DIR);
        let link_dir = tree::ensure_dir_at(&self.home_fd, c"l", 0o755)
            .map_err(|e| Error::io("mkdir", &link_path, e))?;
        let link = loop {
            let link =
                generate_link_id().map_err(|e| Error::layer_io(id, "getrandom", &layer.dir, e))?;
            let name = CString::new(link.as_str()).map_err(|_| {
                Error::layer_io(
                    id,
                    "symlink",
                    &link_path,
                    io::Error::from(io::ErrorKind::InvalidData),
                )
            })?;
            match rustix::fs::symlinkat(layout::link_target(id).as_path(), &link_dir, &name) {
                Ok(()) => break link,
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(Error::layer_io(id, "symlink", link_path.join(&link), e)),
            }
        };
        tree::write_file_at(&layer.fd, c"link", link.as_bytes(), 0o644)
            .map_err(|e| Error::layer_io(id, "write", layer.dir.join("link"), e))?;
        make(c"work", 0o700)?;
        make(c"merged", 0o700)?;
        match lower {
            None => make(c"empty", 0o700)?,
            Some(lower) => {
                tree::write_file_at(&layer.fd, c"lower", lower.join(":").as_bytes(), 0o644)
                    .map_err(|e| Error::layer_io(id, "write", layer.dir.join("lower"), e))?;
            }
        }
        Ok(())
    }

    /// The mount options of a mount of `id` with `opts`.
    fn mount_options(&self, opts: &MountOpts) -> Vec<String> {
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
        options
    }

    /// Mounts layer `id` (refcount already known to be 0).
    fn mount_layer(&self, id: &str, layer: &Layer, opts: &MountOpts) -> Result<MountMethod> {
        let options = self.mount_options(opts);
        let read_write = !options.iter().any(|o| o == "ro");
        let lowers = self.lowers(id, layer)?;
        let mut lower_fds: Vec<OwnedFd> = Vec::new();
        if !read_write {
            lower_fds.push(self.open_diff(id, layer)?);
        }
        let no_lowers = lowers.is_empty();
        lower_fds.extend(lowers.into_iter().map(|lower| lower.diff));
        if no_lowers {
            let empty = tree::ensure_dir_at(&layer.fd, c"empty", 0o700)
                .map_err(|e| Error::layer_io(id, "mkdir", layer.dir.join("empty"), e))?;
            lower_fds.push(empty);
        }
        let merged_path = layer.dir.join("merged");
        let merged = tree::ensure_dir_at(&layer.fd, c"merged", 0o700)
            .map_err(|e| Error::layer_io(id, "mkdir", &merged_path, e))?;
        let upper = if read_write {
            let work_path = layer.dir.join("work");
            let work = tree::ensure_dir_at(&layer.fd, c"work", 0o700)
                .map_err(|e| Error::layer_io(id, "mkdir", &work_path, e))?;
            // A stale marker from a volatile mount would make the kernel refuse the workdir.
            if let Ok(incompat) = tree::open_dir_at(&work, c"work")
                .and_then(|inner| tree::open_dir_at(&inner, c"incompat"))
            {
                let _ = tree::remove_all_at(incompat.as_fd(), c"volatile");
            }
            Some((self.open_diff(id, layer)?, work))
        } else {
            None
        };
        let mut spec = mount::MountSpec {
            lowers: lower_fds,
            upper,
            options,
            mount_label: opts.mount_label.clone(),
            target: merged,
        };
        if let Some(program) = &self.options.mount_program {
            return mount::mount_program(program, &spec)
                .map_err(|e| mount_error(id, &merged_path, &spec, e));
        }
        if spec.lowers.len() > mount::KERNEL_MAX_LAYERS {
            self.mount_stack(id, layer, &mut spec.lowers)?;
        }
        let result = mount::mount_kernel(&spec, self.new_mount_api)
            .map_err(|e| mount_error(id, &merged_path, &spec, e));
        if result.is_err() {
            let _ = self.unmount_stack(layer);
        }
        result
    }

    /// Mounts the deepest lowers (beyond what one overlay takes) read-only at
    /// `<id>/lower-stack` and replaces them in the list by that one directory.
    fn mount_stack(&self, id: &str, layer: &Layer, lowers: &mut Vec<OwnedFd>) -> Result<()> {
        let keep = mount::KERNEL_MAX_LAYERS - 1;
        let deep = lowers.split_off(keep);
        let stack_path = layer.dir.join(tree::name_path(LOWER_STACK));
        if deep.len() > mount::KERNEL_MAX_LAYERS {
            return Err(Error::layer_io(
                id,
                "mount",
                &stack_path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "max depth exceeded: {} layers (at most {} can be mounted)",
                        keep + deep.len() + 1,
                        2 * mount::KERNEL_MAX_LAYERS - 1
                    ),
                ),
            ));
        }
        let _ = self.unmount_stack(layer);
        let stack = tree::ensure_dir_at(&layer.fd, LOWER_STACK, 0o700)
            .map_err(|e| Error::layer_io(id, "mkdir", &stack_path, e))?;
        let spec = mount::MountSpec {
            lowers: deep,
            upper: None,
            options: vec!["ro".to_string()],
            mount_label: String::new(),
            target: stack,
        };
        mount::mount_kernel(&spec, self.new_mount_api)
            .map_err(|e| mount_error(id, &stack_path, &spec, e))?;
        // The stack's root, reached through the new mount.
        let mounted = tree::open_dir_at(&layer.fd, LOWER_STACK)
            .map_err(|e| Error::layer_io(id, "open", &stack_path, e))?;
        lowers.push(mounted);
        Ok(())
    }

    fn unmount_stack(&self, layer: &Layer) -> io::Result<()> {
        if layerstore_driver::mount::is_mount_root_at(layer.fd.as_fd(), LOWER_STACK) {
            layerstore_driver::mount::unmount_at(layer.fd.as_fd(), LOWER_STACK)?;
        }
        match rustix::fs::unlinkat(&layer.fd, LOWER_STACK, rustix::fs::AtFlags::REMOVEDIR) {
            Err(e) if e != rustix::io::Errno::NOENT => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Unmounts the layer's merged dir (and stack), then removes the mount point, as Go's
    /// `Put` does once the count reaches 0. Everything is addressed through the layer's
    /// descriptor with `UMOUNT_NOFOLLOW`: a `merged` swapped for a symlink unmounts nothing.
    fn unmount_layer(&self, id: &str, layer: &Layer) -> Result<()> {
        let merged_path = layer.dir.join("merged");
        let fuse = self.options.mount_program.is_some()
            && layerstore_driver::mount::is_mount_root_at(layer.fd.as_fd(), c"merged");
        let result = if fuse {
            mount::unmount_fuse_at(layer.fd.as_fd(), c"merged")
        } else {
            layerstore_driver::mount::unmount_at(layer.fd.as_fd(), c"merged")
        };
        result.map_err(|e| Error::layer_io(id, "unmount", &merged_path, e))?;
        self.unmount_stack(layer).map_err(|e| {
            Error::layer_io(
                id,
                "unmount",
                layer.dir.join(tree::name_path(LOWER_STACK)),
                e,
            )
        })?;
        // Go ignores a failing rmdir too (the mount point may be busy elsewhere).
        let _ = rustix::fs::unlinkat(&layer.fd, c"merged", rustix::fs::AtFlags::REMOVEDIR);
        Ok(())
    }

    /// The current mount count of `id`: ours, or 1 when someone else mounted it (Go's
    /// refcounter checks the mount table the first time it sees a path).
    fn current_count(&self, mounts: &HashMap<String, MountState>, id: &str, layer: &Layer) -> u32 {
        match mounts.get(id) {
            Some(state) => state.count,
            None => u32::from(layerstore_driver::mount::is_mount_root_at(
                layer.fd.as_fd(),
                c"merged",
            )),
        }
    }
}

/// The directories [`OverlayDriver::new`] hands to `start`.
struct Homes {
    graph_root: PathBuf,
    home: PathBuf,
    home_fd: OwnedFd,
    run_home: PathBuf,
}

fn mount_error(id: &str, target: &Path, spec: &mount::MountSpec, e: io::Error) -> Error {
    let mut data = spec.data("/proc/self/fd");
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

    /// Unmounts the layer if mounted, removes its `l/` link (only if it is the layer's own:
    /// `../<id>/diff`), then its directory (never following a symlink, never entering a mount
    /// left inside). A layer that does not exist is removed successfully.
    fn remove(&self, id: &str) -> Result<()> {
        if RESERVED_NAMES.contains(&id) {
            // No layer of that ID can have files here (create refuses it): nothing to remove,
            // and the driver's own directory of that name is left alone.
            return Ok(());
        }
        validate(id)?;
        let name = id_cstring(id)?;
        let dir = self.home.join(id);
        match tree::stat_at(&self.home_fd, &name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::layer_io(id, "stat", &dir, e)),
            Ok(st) if tree::file_type(&st) != tree::mode::S_IFDIR => {
                // Not a layer directory (a symlink put in its place): the entry goes, not
                // what it points at.
                return tree::remove_all_at(self.home_fd.as_fd(), &name)
                    .map_err(|e| Error::layer_io(id, "remove", &dir, e.source));
            }
            Ok(_) => {}
        }
        let layer = self.open_layer(id)?;
        if layerstore_driver::mount::is_mount_root_at(layer.fd.as_fd(), c"merged") {
            self.unmount_layer(id, &layer)?;
        }
        self.lock_mounts().remove(id);
        if let Ok(link) = layout::read_link_id(id, layer.fd.as_fd(), &layer.dir)
            && let Ok(link_dir) = tree::open_dir_at(&self.home_fd, c"l")
            && let Ok(link_name) = CString::new(link.as_str())
        {
            let ours = rustix::fs::readlinkat(&link_dir, &link_name, Vec::new()).is_ok_and(|t| {
                t.as_bytes() == layout::link_target(id).as_os_str().as_encoded_bytes()
            });
            if ours {
                let path = self.home.join(layout::LINK_DIR).join(&link);
                rustix::fs::unlinkat(&link_dir, &link_name, rustix::fs::AtFlags::empty())
                    .map_err(|e| Error::layer_io(id, "remove", &path, e))?;
            }
        }
        drop(layer);
        tree::remove_all_at(self.home_fd.as_fd(), &name)
            .map_err(|e| Error::layer_io(id, "remove", self.home.join(&e.path), e.source))
    }

    /// Mounts the layer (once; later calls count) and returns `<home>/<id>/merged`.
    fn get(&self, id: &str, opts: &MountOpts) -> Result<PathBuf> {
        let layer = self.open_layer(id)?;
        let merged = layer.dir.join("merged");
        let mut mounts = self.lock_mounts();
        let count = self.current_count(&mounts, id, &layer);
        if count > 0 {
            let state = mounts.entry(id.to_string()).or_insert(MountState {
                count,
                method: None,
            });
            state.count = count + 1;
            return Ok(merged);
        }
        let method = match self.mount_layer(id, &layer, opts) {
            Ok(method) => method,
            Err(e) => {
                // As Go's deferred cleanup: no mount point is left behind.
                let _ = rustix::fs::unlinkat(&layer.fd, c"merged", rustix::fs::AtFlags::REMOVEDIR);
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

    /// [`get`](Driver::get), and the merged tree opened through the layer's descriptor.
    fn get_root(&self, id: &str, opts: &MountOpts) -> Result<LayerRoot> {
        let path = self.get(id, opts)?;
        let opened = self.open_layer(id).and_then(|layer| {
            tree::open_dir_at(&layer.fd, c"merged")
                .map_err(|e| Error::layer_io(id, "open", &path, e))
        });
        match opened {
            Ok(fd) => Ok(LayerRoot { path, fd }),
            Err(e) => {
                let _ = self.put(id);
                Err(e)
            }
        }
    }

    /// Counts down; at 0 unmounts (`MNT_DETACH`, `fusermount -u` for FUSE) and removes
    /// `merged/`. A layer that is not mounted, or mounted by another process, is not an
    /// error (the latter is unmounted, as Go does).
    fn put(&self, id: &str) -> Result<()> {
        let layer = self.open_layer(id)?;
        let mut mounts = self.lock_mounts();
        let count = self.current_count(&mounts, id, &layer).saturating_sub(1);
        if count > 0 {
            if let Some(state) = mounts.get_mut(id) {
                state.count = count;
            }
            return Ok(());
        }
        mounts.remove(id);
        self.unmount_layer(id, &layer)
    }

    fn exists(&self, id: &str) -> bool {
        self.open_layer(id).is_ok()
    }

    /// The directories of the home whose names are layer IDs (not the driver's own) and
    /// that have a `diff` (a directory, or an adopted layer's symlink).
    fn list_layers(&self) -> Result<Vec<String>> {
        let names =
            tree::read_names(&self.home_fd).map_err(|e| Error::io("read", &self.home, e))?;
        let mut ids = Vec::new();
        for name in names {
            let Ok(id) = name.into_string() else {
                continue;
            };
            if validate(&id).is_err() {
                continue;
            }
            let has_diff = self.open_layer(&id).is_ok_and(|layer| {
                tree::stat_at(&layer.fd, c"diff").is_ok_and(|st| {
                    let kind = tree::file_type(&st);
                    kind == tree::mode::S_IFDIR || kind == tree::mode::S_IFLNK
                })
            });
            if has_diff {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Go 1.43's four lines.
    fn additional_image_stores(&self) -> Vec<PathBuf> {
        self.options.image_stores.clone()
    }

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
        let layer = self.open_layer(id)?;
        let show = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut out = BTreeMap::new();
        out.insert("WorkDir".into(), show(layer.dir.join("work")));
        out.insert("MergedDir".into(), show(layer.dir.join("merged")));
        out.insert("UpperDir".into(), show(layer.dir.join("diff")));
        let lowers = self.lower_paths(&self.lowers(id, &layer)?);
        if !lowers.is_empty() {
            let joined: Vec<String> = lowers.into_iter().map(show).collect();
            out.insert("LowerDir".into(), joined.join(":"));
        }
        Ok(out)
    }

    /// Usage of the layer's own files (`diff/`), without mounting.
    fn read_write_disk_usage(&self, id: &str) -> Result<DiskUsage> {
        let layer = self.open_layer(id)?;
        let diff = self.open_diff(id, &layer)?;
        naive::usage_at(id, diff.as_fd(), &layer.dir.join("diff"))
    }

    /// Unmounts every layer this driver mounted, then the home's private bind mount (unless
    /// `skip_mount_home`).
    fn cleanup(&self) -> Result<()> {
        let ids: Vec<String> = self.lock_mounts().drain().map(|(id, _)| id).collect();
        let mut first_error = None;
        for id in ids {
            if let Err(e) = self
                .open_layer(&id)
                .and_then(|layer| self.unmount_layer(&id, &layer))
            {
                first_error.get_or_insert(e);
            }
        }
        if !self.options.skip_mount_home {
            let unmounted = tree::open_dir_following(&self.graph_root).and_then(|root| {
                if layerstore_driver::mount::is_mount_root_at(root.as_fd(), c"overlay") {
                    layerstore_driver::mount::unmount_at(root.as_fd(), c"overlay")
                } else {
                    Ok(())
                }
            });
            if let Err(e) = unmounted {
                first_error.get_or_insert(Error::io("unmount", &self.home, e));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Shifts every file below the merged tree (naive, each inode once, split hard links
    /// joined again), then gives `diff/` the mapped root as owner, as Go 1.43 recreates it.
    fn update_layer_id_map(
        &self,
        id: &str,
        to_container: &layerstore_driver::IdMappings,
        to_host: &layerstore_driver::IdMappings,
        mount_label: &str,
    ) -> Result<()> {
        naive::update_layer_id_map(self, id, to_container, to_host, mount_label)?;
        let layer = self.open_layer(id)?;
        let diff = self.open_own_diff(id, &layer)?;
        let diff_path = layer.dir.join("diff");
        let owner = to_host.root_owner(id, &diff_path)?;
        self.chown_fd(diff.as_fd(), owner)
            .map_err(|e| Error::layer_io(id, "chown", &diff_path, e))
    }

    /// Native (when `parent` is the layer's real parent): untar straight into `diff/` with
    /// overlay whiteouts, the archive's `./` entry ignored (Go's `Unpack` leaves `diff/` as
    /// made), and `diff/`'s access time then set to now (Go reads the tree to size it).
    /// Otherwise naive, through a mount.
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
        let layer = self.open_layer(id)?;
        let diff = self.open_own_diff(id, &layer)?;
        let report = naive::apply_at(
            id,
            diff.as_fd(),
            layerstore_archive::WhiteoutStyle::Overlay,
            layerstore_archive::RootEntry::Ignore,
            opts,
        )?;
        touch_access_time(diff.as_fd())
            .map_err(|e| Error::layer_io(id, "set the times of", layer.dir.join("diff"), e))?;
        Ok(report)
    }

    /// Native: the upper dir exported with whiteouts converted (see the crate docs).
    fn diff(&self, args: &DiffArgs<'_>, out: &mut dyn io::Write) -> Result<u64> {
        if !self.native(args.id, args.parent) {
            return naive::diff(self, args, out);
        }
        let layer = self.open_layer(args.id)?;
        let upper = self.open_diff(args.id, &layer)?;
        diff::export(
            args.id,
            upper.as_fd(),
            &layer.dir.join("diff"),
            args.id_mappings,
            out,
        )
    }

    /// Native: Go's `OverlayChanges` over `diff/` and the lowers.
    fn changes(&self, args: &DiffArgs<'_>) -> Result<Vec<Change>> {
        if !self.native(args.id, args.parent) {
            return naive::changes(self, args);
        }
        let layer = self.open_layer(args.id)?;
        let upper = self.open_diff(args.id, &layer)?;
        let lowers = self.lowers(args.id, &layer)?;
        let paths = self.lower_paths(&lowers);
        let lower_trees: Vec<layerstore_archive::OpenTree<'_>> = lowers
            .iter()
            .zip(&paths)
            .map(|(lower, path)| (lower.diff.as_fd(), path.as_path()))
            .collect();
        let upper_path = layer.dir.join("diff");
        layerstore_archive::overlay_changes_at((upper.as_fd(), &upper_path), &lower_trees)
            .map_err(|e| Error::archive(args.id, e))
    }

    /// Native: sizes of the upper dir's non-directory inodes.
    fn diff_size(&self, args: &DiffArgs<'_>) -> Result<u64> {
        if !self.native(args.id, args.parent) {
            return naive::diff_size(self, args);
        }
        let layer = self.open_layer(args.id)?;
        let upper = self.open_diff(args.id, &layer)?;
        diff::size(args.id, upper.as_fd(), &layer.dir.join("diff"))
    }

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

    /// Reads from `diff/`, then the lowers' (for metacopy-only files), every tree opened
    /// through the home.
    fn diff_getter(&self, id: &str) -> Result<Option<Box<dyn FileGetter + Send + '_>>> {
        let layer = self.open_layer(id)?;
        let upper = self.open_diff(id, &layer)?;
        let lowers = self.lowers(id, &layer)?;
        let paths = self.lower_paths(&lowers);
        let mut trees = vec![(upper, layer.dir.join("diff"))];
        trees.extend(lowers.into_iter().map(|lower| lower.diff).zip(paths));
        Ok(Some(Box::new(OverlayFileGetter::from_fds(trees))))
    }
}

/// Sets the access time of the open directory `dir` to now, leaving its modification time.
fn touch_access_time(dir: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::fs::{Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
        last_modification: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
    };
    Ok(rustix::fs::futimens(dir, &times)?)
}
