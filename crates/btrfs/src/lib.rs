//! The btrfs graph driver: layers as subvolumes and snapshots, through the kernel's ioctls.
//!
//! On a btrfs graph root a layer is a subvolume and a child layer is a writable snapshot of
//! its parent's subvolume, so creating a child is instant and costs no space whatever the
//! parent's size. The layout is containers/storage's (`drivers/btrfs`), so the Go tool and we
//! share a store:
//!
//! ```text
//! <graphroot>/btrfs/          0700  driver home, bind-mounted onto itself and made private
//!   subvolumes/               0700
//!     <id>/                   subvolume: a base layer is a new empty subvolume (mode 0555,
//!                             owned by the mapped root), a child a snapshot of its parent
//!   quotas/<id>               0644  only with `--storage-opt size=`: the byte limit, decimal
//! ```
//!
//! Everything goes through ioctls on directory descriptors ([`ioctl`]): `SUBVOL_CREATE`,
//! `SNAP_CREATE_V2` (never read-only, as in Go), `SNAP_DESTROY`, `INO_LOOKUP` (the subvolume
//! ID, for its qgroup) and the quota ioctls; btrfs-progs is never run.
//!
//! * [`Driver::get`] returns the subvolume's path (no mount, as in Go) and accepts no mount
//!   option but `ro`; [`Driver::put`] does nothing.
//! * [`Driver::remove`] first deletes the subvolumes nested in the layer (a container may have
//!   made some). They are found by walking the layer's tree fd-relative with the drivers'
//!   iterative walker ([`layerstore_driver::tree::walk_with`]), never following symlinks nor
//!   entering other mounts, for directories with inode number 256 (every subvolume's root,
//!   `BTRFS_FIRST_FREE_OBJECTID`): Go's method, which unlike a tree search needs no
//!   privilege. Deletion is children first, since the kernel refuses to delete a subvolume
//!   that holds another. A layer directory that is not a subvolume is removed with the
//!   drivers' remover.
//! * The diff family is the naive one of [`layerstore_driver::naive`] (`.wh.` whiteouts applied
//!   into the snapshot); [`Driver::diff_getter`] reads files straight from the subvolume for
//!   tar-split reassembly.
//! * The layer's top directory (the subvolume's root) ends as Go 1.43 leaves it (measured):
//!   0555 and the mapped root for a base layer, the parent's for a snapshot; `apply_diff` of a
//!   tarball with `./` takes its mode and owner and its access time as recorded (the epoch
//!   when absent), the modification time being the apply's end; `update_layer_id_map` leaves
//!   it alone and shifts everything below, each inode once (the naive rule of
//!   [`layerstore_driver::naive`]).
//! * Trust: the home is bind-mounted through `/proc/self/fd` and kept open; `subvolumes` and
//!   `subvolumes/<id>` are opened with `O_NOFOLLOW` and passed on as descriptors (tar-split
//!   getter, naive diff family, ID shifting), so a subvolume swapped for a symlink reads or
//!   writes nothing outside the store; `quotas/<id>` is read as a regular file of at most 64
//!   bytes. The IDs `subvolumes` and `quotas` are refused.
//! * [`Driver::status`] prints `Build Version: layerstore ioctls` where Go prints the
//!   btrfs-progs version it was built with (`Btrfs v6.2`); Go's `Library Version` (the
//!   btrfs-progs library's) is omitted, as Go omits it when unknown: we link no such library.
//!
//! # Options and quotas
//!
//! Both quota options are **implemented** with btrfs quota groups:
//!
//! * `btrfs.min_space=<size>` (driver option): enables quotas on the filesystem at start and
//!   is the smallest `size` a layer may ask for; limits below it are not applied.
//! * `--storage-opt size=<size>` (per layer): enables quotas, limits the layer's qgroup
//!   (`0/<subvolume ID>`, referenced bytes) and records the limit in `quotas/<id>`, which
//!   [`Driver::get`] re-applies (as Go does). Any other per-layer key is refused.
//!
//! Sizes read as Go's `units.RAMInBytes` ([`parse_ram_in_bytes`]). `btrfs.mountopt` is refused
//! ("does not support mount options") and any other option is an error, as in Go.
//!
//! # Example
//!
//! ```
//! use layerstore_btrfs::BtrfsDriver;
//! use layerstore_driver::{CreateOpts, Driver, DriverConfig, MountOpts};
//! use layerstore_testsupport::{BtrfsLoop, Capability, require};
//!
//! if require(Capability::Btrfs, "layerstore-btrfs example") {
//!     let fs = BtrfsLoop::new(256)?; // a scratch btrfs on a loop file
//!     let graph = fs.path().join("graph");
//!     let driver = BtrfsDriver::new(&DriverConfig::new(&graph, fs.path().join("run")))?;
//!     driver.create("base", None, &CreateOpts::default())?;
//!     let base = driver.get("base", &MountOpts::default())?;
//!     std::fs::write(base.join("hello"), "world")?;
//!     driver.create("child", Some("base"), &CreateOpts::default())?; // a snapshot: instant
//!     let child = driver.get("child", &MountOpts::default())?;
//!     assert_eq!(child, graph.join("btrfs/subvolumes/child"));
//!     driver.remove("base")?; // the child lives on
//!     assert_eq!(std::fs::read_to_string(child.join("hello"))?, "world");
//!     driver.cleanup()?; // undo the home's bind mount before the filesystem goes
//! }
//!
//! // Elsewhere, opening the driver fails naming the filesystem found.
//! let tmp = tempfile::tempdir()?;
//! if let Err(e) = BtrfsDriver::new(&DriverConfig::new(tmp.path(), tmp.path())) {
//!     assert!(e.is_not_supported());
//!     assert!(e.to_string().contains("is not on a btrfs filesystem (found"), "{e}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limitations
//!
//! * As in Go, the home's bind mount outlives the driver value (and the process) until
//!   [`Driver::cleanup`] undoes it.
//! * Unlike Go, [`Driver::cleanup`] does not disable quotas filesystem-wide (Go's `Cleanup`
//!   does, which would also drop limits other users of the filesystem set); it only undoes the
//!   home's bind mount.
//! * The qgroup of a removed layer is destroyed best-effort before its subvolume is deleted,
//!   as in Go (errors, such as a kernel refusing to destroy a qgroup still in use, are
//!   ignored; kernels from 6.7 remove it themselves once the subvolume is cleaned).
//! * No SELinux labels (a mount label is accepted and ignored).
//! * Deleting subvolumes as a non-root user needs the `user_subvol_rm_allowed` mount option.
//! * Whether the home is a mount point already is read from `statx`'s mount-root attribute
//!   (Linux 5.8+); older kernels compare devices, which a subvolume as home would fool.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use layerstore_driver::tree::{self, Visitor, WalkEntry};
use layerstore_driver::{
    CreateOpts, DirFileGetter, Driver, DriverConfig, DriverOptions, Error, FileGetter, IdMappings,
    LayerRoot, MountOpts, Registration, Result, mount, validate_driver_layer_id,
};
use rustix::fs::{AtFlags, Mode, OFlags};

pub mod ioctl;
mod size;

pub use size::parse_ram_in_bytes;

/// The driver's name and home directory name.
pub const NAME: &str = "btrfs";

/// Mode of a base layer's top directory (Go's `defaultPerms`, checked with the Go tool).
const BASE_LAYER_MODE: u32 = 0o555;

/// Names in the driver's home that are the driver's own: never layer IDs.
pub const RESERVED_NAMES: &[&str] = &["subvolumes", "quotas"];

/// What [`Driver::status`] reports as `Build Version`.
pub const BUILD_VERSION: &str = "layerstore ioctls";

/// How the top crate registers this driver in its [`layerstore_driver::Registry`].
pub fn registration() -> Registration {
    Registration {
        name: NAME,
        aliases: &[],
        init: |config| Ok(Box::new(BtrfsDriver::new(config)?)),
    }
}

/// The name Go's `graphdriver.FsNames` gives a `statfs` `f_type`, if any.
fn filesystem_name(magic: u32) -> Option<&'static str> {
    Some(match magic {
        0x6175_6673 => "aufs",
        ioctl::BTRFS_SUPER_MAGIC => "btrfs",
        0x28cd_3d45 => "cramfs",
        0xf15f => "ecryptfs",
        0xef53 => "extfs",
        0xf2f5_2010 => "f2fs",
        0x4750_4653 => "gpfs",
        0x72b6 => "jffs2",
        0x3153_464a => "jfs",
        0x6969 => "nfs",
        0x8584_58f6 => "ramfs",
        0x5265_4973 => "reiserfs",
        0x517b => "smb",
        0x7371_7368 => "squashfs",
        0x0102_1994 => "tmpfs",
        0xa501_fcf5 => "vxfs",
        0x5846_5342 => "xfs",
        0x2fc1_2fc1 => "zfs",
        0x794c_7630 => "overlayfs",
        0x6573_5546 => "fuse",
        _ => return None,
    })
}

/// Fails unless `home` (or, while it does not exist, its nearest existing ancestor) is on
/// btrfs, naming the filesystem found.
fn check_btrfs(home: &Path, graph_root: &Path) -> Result<()> {
    let existing = home
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let st = rustix::fs::statfs(existing).map_err(|e| Error::io("statfs", existing, e))?;
    // `f_type`'s C type differs between architectures; the magic numbers are 32 bits.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u32;
    if magic == ioctl::BTRFS_SUPER_MAGIC {
        return Ok(());
    }
    let found = filesystem_name(magic).unwrap_or("an unknown filesystem");
    Err(Error::NotSupported {
        driver: NAME.to_string(),
        root: graph_root.to_path_buf(),
        reason: format!(
            "{} is not on a btrfs filesystem (found {found}, f_type {magic:#x})",
            existing.display()
        ),
    })
}

fn id_cstring(id: &str) -> Result<CString> {
    CString::new(id).map_err(|_| Error::InvalidId {
        id: id.to_string(),
        reason: "contains NUL",
    })
}

fn validate(id: &str) -> Result<()> {
    validate_driver_layer_id(id, RESERVED_NAMES)
}

/// Deletes, children first, every subvolume nested below a layer (not the layer itself):
/// directories with inode number 256 on the layer's own mount. Walks iteratively with the
/// drivers' one walker, never following symlinks nor entering other mounts.
struct NestedSubvolumes {
    mount: u64,
}

impl Visitor for NestedSubvolumes {
    fn enter(&mut self, entry: &WalkEntry<'_>) -> io::Result<bool> {
        Ok(tree::file_type(entry.stat) == tree::mode::S_IFDIR
            && (entry.depth == 0 || entry.stat.stx_mnt_id == self.mount))
    }

    fn leave(&mut self, entry: &WalkEntry<'_>, _own: BorrowedFd<'_>) -> io::Result<()> {
        if entry.depth > 0 && entry.stat.stx_ino == ioctl::SUBVOLUME_ROOT_INO {
            ioctl::destroy_subvolume(entry.dir, entry.name)?;
        }
        Ok(())
    }
}

/// Writes `content` to the entry `name` of `dir` through a temporary file and a rename (Go's
/// `AtomicWriteFile`), never through a symlink.
fn atomic_write_at(dir: BorrowedFd<'_>, name: &str, content: &[u8], mode: u32) -> io::Result<()> {
    let mut random = [0u8; 8];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
    let suffix = layerstore_model::hex(&random);
    let tmp = CString::new(format!(".tmp-{name}-{suffix}"))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let result = (|| {
        let file = rustix::fs::openat(
            dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        let mut file = std::fs::File::from(file);
        std::io::Write::write_all(&mut file, content)?;
        file.sync_all()?;
        let target =
            CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        rustix::fs::renameat(dir, &tmp, dir, &target)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
    }
    result
}

/// The quota a layer's file records, if it holds a plain number: an unreadable or malformed
/// file is ignored, as in Go.
fn read_quota(quotas: BorrowedFd<'_>, name: &CStr) -> Option<u64> {
    let content = tree::read_small_file_at(quotas, name, 64).ok()?;
    std::str::from_utf8(&content).ok()?.trim().parse().ok()
}

/// The btrfs driver (see the crate documentation).
#[derive(Debug)]
pub struct BtrfsDriver {
    graph_root: PathBuf,
    home: PathBuf,
    /// `<home>` after its bind mount, opened from the graph root without following `btrfs`.
    home_fd: OwnedFd,
    subvolumes: PathBuf,
    /// `<home>/subvolumes`, likewise.
    subvolumes_fd: OwnedFd,
    quotas: PathBuf,
    /// `btrfs.min_space`, in bytes.
    min_space: Option<u64>,
    default_mappings: IdMappings,
    /// Whether this driver enabled quotas (then removal waits for the rescan).
    quota_enabled: AtomicBool,
}

impl BtrfsDriver {
    /// Starts the driver in `<graph_root>/btrfs`: checks the filesystem is btrfs, creates
    /// `btrfs/subvolumes` (0700), bind-mounts the home onto itself as a private mount and, with
    /// `btrfs.min_space`, enables quotas.
    pub fn new(config: &DriverConfig) -> Result<Self> {
        let mut options = DriverOptions::parse(NAME, &[], &config.options)?;
        let min_space = options
            .take_all("min_space")
            .pop()
            .map(|option| {
                parse_ram_in_bytes(&option.value).ok_or(Error::MalformedOption {
                    driver: NAME.to_string(),
                    option: option.raw,
                    reason: "expected a size such as 10G",
                })
            })
            .transpose()?;
        options.forbid("mountopt", "does not support mount options")?;
        options.finish()?;

        let home = config.home(NAME);
        check_btrfs(&home, &config.graph_root)?;
        let subvolumes = home.join("subvolumes");
        let unmounted_home = tree::open_home(&config.graph_root, c"btrfs", 0o700)
            .map_err(|e| Error::io("mkdir", &home, e))?;
        let unmounted_subvolumes = tree::ensure_dir_at(&unmounted_home, c"subvolumes", 0o700)
            .map_err(|e| Error::io("mkdir", &subvolumes, e))?;
        if let Some((uid, gid)) = config.id_mappings.root_pair()
            && (uid, gid) != (0, 0)
        {
            for (dir, fd) in [
                (&home, &unmounted_home),
                (&subvolumes, &unmounted_subvolumes),
            ] {
                rustix::fs::fchown(
                    fd,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(|e| Error::io("chown", dir, e))?;
            }
        }
        let graph_root = tree::open_dir_following(&config.graph_root)
            .map_err(|e| Error::io("open", &config.graph_root, e))?;
        let (_, home_fd) = mount::make_private_at(graph_root.as_fd(), c"btrfs")
            .map_err(|e| Error::io("make a private bind mount of", &home, e))?;
        let subvolumes_fd = tree::open_dir_at(&home_fd, c"subvolumes")
            .map_err(|e| Error::io("open", &subvolumes, e))?;
        let driver = BtrfsDriver {
            graph_root: config.graph_root.clone(),
            quotas: home.join("quotas"),
            home,
            home_fd,
            subvolumes,
            subvolumes_fd,
            min_space,
            default_mappings: config.id_mappings.clone(),
            quota_enabled: AtomicBool::new(false),
        };
        if min_space.is_some() {
            driver.enable_quota()?;
        }
        Ok(driver)
    }

    /// Where layer `id`'s subvolume is: `<home>/subvolumes/<id>`.
    pub fn layer_dir(&self, id: &str) -> Result<PathBuf> {
        validate(id)?;
        Ok(self.subvolumes.join(id))
    }

    /// The path of the file holding layer `id`'s quota (`<home>/quotas/<id>`), if it has one.
    pub fn quota_file(&self, id: &str) -> Result<PathBuf> {
        validate(id)?;
        Ok(self.quotas.join(id))
    }

    /// Undoes the home's private bind mount (what [`Driver::cleanup`] does).
    pub fn cleanup_home(&self) -> Result<()> {
        let root = tree::open_dir_following(&self.graph_root)
            .map_err(|e| Error::io("open", &self.graph_root, e))?;
        if mount::is_mount_root_at(root.as_fd(), c"btrfs") {
            mount::unmount_at(root.as_fd(), c"btrfs")
                .map_err(|e| Error::io("unmount", &self.home, e))?;
        }
        Ok(())
    }

    /// Opens layer `id`'s subvolume from the driver's home, never through a symlink.
    fn open_layer(&self, id: &str) -> Result<(OwnedFd, PathBuf)> {
        let dir = self.layer_dir(id)?;
        match tree::open_dir_at(&self.subvolumes_fd, &id_cstring(id)?) {
            Ok(fd) => Ok((fd, dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::LayerNotFound {
                id: id.to_string(),
                path: dir,
            }),
            Err(e) => Err(Error::layer_io(id, "open", &dir, e)),
        }
    }

    /// `<home>/quotas`, opened if it exists (`make`: made if missing).
    fn quotas_fd(&self, make: bool) -> Result<Option<OwnedFd>> {
        let opened = if make {
            tree::ensure_dir_at(&self.home_fd, c"quotas", 0o700)
        } else {
            tree::open_dir_at(&self.home_fd, c"quotas")
        };
        match opened {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if !make && e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open", &self.quotas, e)),
        }
    }

    fn enable_quota(&self) -> Result<()> {
        ioctl::enable_quota(&self.home_fd)
            .map_err(|e| Error::io("enable quotas on", &self.home, e))?;
        self.quota_enabled.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn limit(&self, id: &str, dir: &Path, fd: BorrowedFd<'_>, bytes: u64) -> Result<()> {
        self.enable_quota()?;
        ioctl::limit_qgroup(fd, bytes).map_err(|e| Error::layer_io(id, "limit qgroup of", dir, e))
    }

    /// The `size` of per-layer storage options, checked against `btrfs.min_space`.
    fn requested_size(&self, id: &str, opts: &CreateOpts) -> Result<Option<u64>> {
        let mut size = None;
        for (key, value) in &opts.storage_opt {
            if !key.eq_ignore_ascii_case("size") {
                return Err(Error::UnsupportedOption {
                    driver: NAME.to_string(),
                    key: key.clone(),
                });
            }
            let malformed = |reason| Error::MalformedOption {
                driver: NAME.to_string(),
                option: format!("{key}={value} (layer {id})"),
                reason,
            };
            let bytes =
                parse_ram_in_bytes(value).ok_or(malformed("expected a size such as 10G"))?;
            if bytes == 0 {
                return Err(malformed("invalid storage size: 0"));
            }
            if self.min_space.is_some_and(|min| bytes < min) {
                return Err(malformed(
                    "storage size cannot be less than btrfs.min_space",
                ));
            }
            size = Some(bytes);
        }
        Ok(size)
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        validate(id)?;
        let size = self.requested_size(id, opts)?;
        let dir = self.subvolumes.join(id);
        let name = id_cstring(id)?;
        if tree::stat_at(&self.subvolumes_fd, &name).is_ok() {
            return Err(Error::LayerExists {
                id: id.to_string(),
                path: dir,
            });
        }
        match parent {
            None => {
                ioctl::create_subvolume(&self.subvolumes_fd, &name)
                    .map_err(|e| Error::layer_io(id, "create subvolume", &dir, e))?;
                let mappings = opts.id_mappings.as_ref().unwrap_or(&self.default_mappings);
                let result = (|| {
                    let (uid, gid) = mappings.root_owner(id, &dir)?;
                    let fd = tree::open_dir_at(&self.subvolumes_fd, &name)
                        .map_err(|e| Error::layer_io(id, "open", &dir, e))?;
                    if (uid, gid) != (0, 0) {
                        rustix::fs::fchown(
                            &fd,
                            Some(rustix::fs::Uid::from_raw(uid)),
                            Some(rustix::fs::Gid::from_raw(gid)),
                        )
                        .map_err(|e| Error::layer_io(id, "chown", &dir, e))?;
                    }
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(BASE_LAYER_MODE))
                        .map_err(|e| Error::layer_io(id, "chmod", &dir, e))
                })();
                if let Err(e) = result {
                    let _ = ioctl::destroy_subvolume(&self.subvolumes_fd, &name);
                    return Err(e);
                }
            }
            Some(parent) => {
                let (source, _) = self.open_layer(parent)?;
                ioctl::snapshot(&source, &self.subvolumes_fd, &name, false)
                    .map_err(|e| Error::layer_io(id, "snapshot parent into", &dir, e))?;
            }
        }
        if let Some(bytes) = size {
            let result = self.open_layer(id).and_then(|(fd, _)| {
                self.limit(id, &dir, fd.as_fd(), bytes)?;
                let quotas = self.quotas_fd(true)?;
                let file = self.quotas.join(id);
                match quotas {
                    Some(quotas) => {
                        atomic_write_at(quotas.as_fd(), id, bytes.to_string().as_bytes(), 0o644)
                            .map_err(|e| Error::layer_io(id, "write quota", &file, e))
                    }
                    None => Ok(()),
                }
            });
            if let Err(e) = result {
                let _ = self.remove(id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes the subvolumes nested in `id`'s subvolume, then the subvolume; a layer
    /// directory that is not a subvolume is removed as a tree, a non-directory unlinked.
    fn destroy_layer(&self, id: &str) -> Result<()> {
        let dir = self.subvolumes.join(id);
        let name = id_cstring(id)?;
        let st = match tree::stat_at(&self.subvolumes_fd, &name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::layer_io(id, "stat", &dir, e)),
        };
        let removed = |result: std::result::Result<(), tree::WalkError>| {
            result.map_err(|e| Error::layer_io(id, "remove", dir.join(&e.path), e.source))
        };
        if tree::file_type(&st) != tree::mode::S_IFDIR || st.stx_ino != ioctl::SUBVOLUME_ROOT_INO {
            // Not a subvolume (made by hand, or a half-made layer): plain files.
            return removed(tree::remove_all_at(self.subvolumes_fd.as_fd(), &name));
        }
        let layer = tree::open_dir_checked(&self.subvolumes_fd, &name, &st)
            .map_err(|e| Error::layer_io(id, "open", &dir, e))?;
        let mut nested = NestedSubvolumes {
            mount: st.stx_mnt_id,
        };
        let walked = layer
            .try_clone()
            .map_err(|e| tree::WalkError {
                path: PathBuf::new(),
                source: e,
            })
            .and_then(|fd| tree::walk_with(fd, &mut nested));
        walked.map_err(|e| {
            Error::layer_io(id, "delete nested subvolume", dir.join(&e.path), e.source)
        })?;
        // Best effort, as in Go (see the crate documentation).
        if let Ok(subvolume_id) = ioctl::subvolume_id(&layer) {
            let _ = ioctl::destroy_qgroup(&self.subvolumes_fd, subvolume_id);
        }
        drop(layer);
        ioctl::destroy_subvolume(&self.subvolumes_fd, &name)
            .map_err(|e| Error::layer_io(id, "delete subvolume", &dir, e))
    }
}

impl Driver for BtrfsDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
    }

    /// A layer holds a whole copy of its parent's tree: a template's copy is a create on it.
    fn create_copies_parent(&self) -> bool {
        true
    }

    /// Deletes the quota file, the nested subvolumes, then the layer's subvolume, and waits for
    /// a quota rescan when quotas are in use. A missing layer is not an error.
    fn remove(&self, id: &str) -> Result<()> {
        if RESERVED_NAMES.contains(&id) {
            // No layer of that ID can have files here (create refuses it): nothing to remove,
            // and the driver's own directory of that name is left alone.
            return Ok(());
        }
        validate(id)?;
        let name = id_cstring(id)?;
        let quota = self.quotas.join(id);
        let had_quota = match self.quotas_fd(false)? {
            Some(quotas) => match rustix::fs::unlinkat(&quotas, &name, AtFlags::empty()) {
                Ok(()) => true,
                Err(rustix::io::Errno::NOENT) => false,
                Err(e) => return Err(Error::layer_io(id, "remove", &quota, e)),
            },
            None => false,
        };
        self.destroy_layer(id)?;
        if had_quota || self.quota_enabled.load(Ordering::Relaxed) {
            ioctl::wait_quota_rescan(&self.home_fd)
                .map_err(|e| Error::io("wait for the quota rescan of", &self.home, e))?;
        }
        Ok(())
    }

    /// The subvolume's path, after re-applying the layer's quota. Accepts no mount options but
    /// `ro` (Go: "btrfs driver does not support mount options").
    fn get(&self, id: &str, opts: &MountOpts) -> Result<PathBuf> {
        self.get_root(id, opts).map(|root| root.path)
    }

    /// [`get`](Driver::get), with the subvolume opened from the driver's home.
    fn get_root(&self, id: &str, opts: &MountOpts) -> Result<LayerRoot> {
        validate(id)?;
        if opts.options.iter().any(|o| o != "ro") {
            return Err(Error::MountOptions {
                driver: NAME.to_string(),
                id: id.to_string(),
                options: opts.options.clone(),
            });
        }
        let (fd, dir) = self.open_layer(id)?;
        let quota = self
            .quotas_fd(false)?
            .and_then(|quotas| read_quota(quotas.as_fd(), &id_cstring(id).ok()?));
        if let Some(bytes) = quota
            && bytes >= self.min_space.unwrap_or(0)
        {
            self.limit(id, &dir, fd.as_fd(), bytes)?;
        }
        Ok(LayerRoot { path: dir, fd })
    }

    /// Nothing to release: btrfs does not mount.
    fn put(&self, id: &str) -> Result<()> {
        validate(id)
    }

    fn exists(&self, id: &str) -> bool {
        self.open_layer(id).is_ok()
    }

    /// The directories in `subvolumes/` whose names are valid layer IDs.
    fn list_layers(&self) -> Result<Vec<String>> {
        let names = tree::read_names(&self.subvolumes_fd)
            .map_err(|e| Error::io("read", &self.subvolumes, e))?;
        let mut ids = Vec::new();
        for name in names {
            let is_dir = tree::stat_at(&self.subvolumes_fd, &name)
                .is_ok_and(|st| tree::file_type(&st) == tree::mode::S_IFDIR);
            if let (true, Ok(id)) = (is_dir, name.into_string())
                && validate(&id).is_ok()
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// `Build Version: layerstore ioctls` (see the crate documentation).
    fn status(&self) -> Vec<(String, String)> {
        vec![("Build Version".to_string(), BUILD_VERSION.to_string())]
    }

    /// Undoes the home's private bind mount.
    fn cleanup(&self) -> Result<()> {
        self.cleanup_home()
    }

    /// Reads files straight from the layer's subvolume, opened once from the driver's home.
    fn diff_getter(&self, id: &str) -> Result<Option<Box<dyn FileGetter + Send + '_>>> {
        let (fd, dir) = self.open_layer(id)?;
        Ok(Some(Box::new(DirFileGetter::from_fd(fd, dir))))
    }
}

/// Whether the directory at `path` is the root of a btrfs subvolume (inode 256 on btrfs).
pub fn is_subvolume(path: &Path) -> io::Result<bool> {
    let fd = tree::open_dir(path)?;
    let st = rustix::fs::fstat(&fd)?;
    let fs = rustix::fs::fstatfs(&fd)?;
    #[allow(clippy::unnecessary_cast)]
    let magic = fs.f_type as u32;
    Ok(magic == ioctl::BTRFS_SUPER_MAGIC && st.st_ino == ioctl::SUBVOLUME_ROOT_INO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_names_follow_go() {
        assert_eq!(filesystem_name(0xef53), Some("extfs"));
        assert_eq!(filesystem_name(0x0102_1994), Some("tmpfs"));
        assert_eq!(filesystem_name(0x9123_683e), Some("btrfs"));
        assert_eq!(filesystem_name(0x1234), None);
    }

    #[test]
    fn a_graph_root_not_on_btrfs_is_refused_naming_the_filesystem() {
        let tmp = tempfile::tempdir().unwrap();
        let magic = rustix::fs::statfs(tmp.path()).unwrap().f_type as u32;
        if !layerstore_testsupport::satisfied(
            magic != ioctl::BTRFS_SUPER_MAGIC,
            "the temporary directory is on btrfs",
        ) {
            return;
        }
        let graph = tmp.path().join("graph");
        let err = BtrfsDriver::new(&DriverConfig::new(&graph, tmp.path().join("run"))).unwrap_err();
        assert!(err.is_not_supported(), "{err}");
        let message = err.to_string();
        let found = filesystem_name(magic).unwrap_or("an unknown filesystem");
        assert!(
            message.contains(&format!("is not on a btrfs filesystem (found {found}")),
            "{message}"
        );
        // Nothing was created on the wrong filesystem.
        assert!(!graph.exists());
    }

    #[test]
    fn options_are_checked_before_anything_else() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = DriverConfig::new(tmp.path().join("g"), tmp.path().join("r"));
        config.options = vec!["btrfs.mountopt=nodev".into()];
        let err = BtrfsDriver::new(&config).unwrap_err();
        assert!(
            err.to_string().contains("does not support mount options"),
            "{err}"
        );
        config.options = vec!["btrfs.frobnicate=1".into()];
        let err = BtrfsDriver::new(&config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "btrfs driver does not support btrfs.frobnicate options"
        );
        config.options = vec!["btrfs.min_space=lots".into()];
        let err = BtrfsDriver::new(&config).unwrap_err();
        assert!(err.to_string().contains("btrfs.min_space=lots"), "{err}");
    }
}
