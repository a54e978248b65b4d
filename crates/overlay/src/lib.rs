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
//! They run too for a child whose ID mappings differ from its parent's: making it re-owned
//! every file through the mount, so its `diff/` holds a copy-up of each, and only comparing
//! owners as each layer's container sees them tells real changes from re-owned files. (Go
//! 1.43 shifts with ID-mapped mounts on kernels that have them and then records no mappings;
//! where it cannot, its native diff lists every copied-up file.)
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
//! # Differences from Go 1.43, on purpose
//!
//! A container with ID mappings on an image (`create-container --uidmap/--gidmap`) gets a
//! mapped copy of the image's top layer, its files chowned to the mappings (`layers` lists
//! it, `image` shows it as a second `Top Layer:`), as Go makes on kernels without ID-mapped
//! mounts. Go 1.43 on a kernel with them makes no copy and shifts owners at mount time. Kept
//! so that a store behaves the same on every kernel and its files hold the owners its
//! containers see; the differential suite (`store_differential`) lists the lines this
//! changes as deliberate. Go's test hook `_TEST_FORCE_SUPPORT_SHIFTING` is honoured: with
//! it, no copy is made.
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

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use layerstore_driver::tree;
use layerstore_driver::{AdditionalLayer, Differ, DifferOptions, DifferOutput};
use layerstore_driver::{
    ApplyDiffOpts, ApplyReport, Change, CreateOpts, DiffArgs, DiskUsage, Driver, Error, FileGetter,
    LayerRoot, MountOpts, Registration, Result, naive, validate_driver_layer_id,
};

mod additional;
mod diff;
mod features;
mod layer;
mod layout;
mod mount;
mod mounting;
mod options;
mod staging;
mod start;

pub use diff::OverlayFileGetter;
pub use layout::{LINK_ID_LEN, generate_link_id, recreate_symlinks, recreate_symlinks_at};
pub use mount::{MountMethod, parse_options};
pub use options::OverlayOptions;

pub(crate) use layer::Layer;
use layer::touch_access_time;
use mounting::MountState;

/// The driver's name and home directory name.
pub const NAME: &str = "overlay";
/// Other names Go accepts for it.
pub const ALIASES: &[&str] = &["overlay2"];

/// Names in the driver's home that are the driver's own: never layer IDs (a layer `l` would
/// be the short links' directory, and removing it would remove every link).
pub const RESERVED_NAMES: &[&str] = &["l", "staging", ".has-mount-program"];

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

impl OverlayDriver {
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
}

/// Go's test hook: set to `yes-please`, the driver claims it can shift IDs at mount time.
const FORCE_SHIFTING_ENV: &str = "_TEST_FORCE_SUPPORT_SHIFTING";

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

    /// False: this driver does not make ID-mapped mounts, so the store makes chowned copies
    /// instead. As in Go, `_TEST_FORCE_SUPPORT_SHIFTING=yes-please` in the environment claims
    /// support (a test hook: no copy is made and nothing is chowned; the layers are mounted
    /// as they are on disk).
    fn supports_shifting(&self) -> bool {
        std::env::var_os(FORCE_SHIFTING_ENV).is_some_and(|v| v == "yes-please")
    }

    fn additional_image_stores(&self) -> Vec<PathBuf> {
        self.options.image_stores.clone()
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
        if !self.native_diff_of(args) {
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
        if !self.native_diff_of(args) {
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
        if !self.native_diff_of(args) {
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
        self.staging()
            .stage(options, differ, self.options.ignore_chown_errors)
    }

    /// Exchanges the staging directory with `<id>/diff` (`renameat2(RENAME_EXCHANGE)`), giving
    /// it `diff/`'s mode and owner, then removes the old tree.
    fn apply_diff_from_staging_directory(&self, id: &str, staging: &Path) -> Result<()> {
        self.unstage(id, staging)
    }

    fn cleanup_staging_directory(&self, staging: &Path) -> Result<()> {
        self.staging().remove(staging)
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
