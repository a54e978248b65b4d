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
//!   made some). They are found by walking the layer's tree fd-relative, never following
//!   symlinks nor entering other mounts, for directories with inode number 256 (every
//!   subvolume's root, `BTRFS_FIRST_FREE_OBJECTID`): Go's method, which unlike a tree search
//!   needs no privilege. Deletion is depth-first, since the kernel refuses to delete a
//!   subvolume that holds another. A layer directory that is not a subvolume is removed
//!   recursively.
//! * The diff family is the naive one of [`layerstore_driver::naive`] (`.wh.` whiteouts applied
//!   into the snapshot); [`Driver::diff_getter`] reads files straight from the subvolume for
//!   tar-split reassembly.
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

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use layerstore_driver::{
    CreateOpts, DirFileGetter, Driver, DriverConfig, DriverOptions, Error, FileGetter, IdMappings,
    MountOpts, Registration, Result, tree, validate_layer_id,
};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};

pub mod ioctl;
mod size;

pub use size::parse_ram_in_bytes;

/// The driver's name and home directory name.
pub const NAME: &str = "btrfs";

/// Mode of a base layer's top directory (Go's `defaultPerms`, checked with the Go tool).
const BASE_LAYER_MODE: u32 = 0o555;

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

/// The btrfs driver (see the crate documentation).
#[derive(Debug)]
pub struct BtrfsDriver {
    home: PathBuf,
    subvolumes: PathBuf,
    quotas: PathBuf,
    /// `btrfs.min_space`, in bytes.
    min_space: Option<u64>,
    default_mappings: IdMappings,
    /// Whether this driver enabled quotas (then removal waits for the rescan).
    quota_enabled: AtomicBool,
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

/// Whether `path` is the root of a mount: `statx`'s mount-root attribute, or before Linux 5.8
/// a line of `/proc/self/mountinfo` (device numbers cannot tell: every btrfs subvolume has
/// its own).
fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::StatxAttributes;
    if let Ok(st) = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) && st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
    {
        return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    }
    let (Ok(path), Ok(info)) = (
        std::fs::canonicalize(path),
        std::fs::read("/proc/self/mountinfo"),
    ) else {
        return false;
    };
    use std::os::unix::ffi::OsStrExt;
    let wanted = path.as_os_str().as_bytes();
    info.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .any(|mount_point| unescape_mountinfo(mount_point) == wanted)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash, ...).
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// Go's `mount.MakePrivate`: bind-mount `path` onto itself unless it is a mount point already,
/// then make it private.
fn make_private(path: &Path) -> io::Result<()> {
    if !is_mount_point(path) {
        rustix::mount::mount_bind(path, path)?;
    }
    rustix::mount::mount_change(path, rustix::mount::MountPropagationFlags::PRIVATE)?;
    Ok(())
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn id_cstring(id: &str) -> Result<CString> {
    CString::new(id).map_err(|_| Error::InvalidId {
        id: id.to_string(),
        reason: "contains NUL",
    })
}

fn mkdir_0700(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io("mkdir", path, e))
}

/// Deletes, depth-first, every subvolume nested below the directory `dir` (not `dir`
/// itself). Only entries on the mount `mount_id` are visited; symlinks are never followed.
/// `path` (relative to the layer) is kept for error messages.
fn destroy_nested(
    dir: &OwnedFd,
    mount_id: u64,
    path: &mut PathBuf,
) -> std::result::Result<(), (PathBuf, io::Error)> {
    let names = tree::read_names(dir).map_err(|e| (path.clone(), e))?;
    for name in names {
        path.push(tree::name_path(&name));
        let st = rustix::fs::statx(
            dir,
            &name,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MNT_ID,
        )
        .map_err(|e| (path.clone(), e.into()))?;
        let is_directory = u32::from(st.stx_mode) & tree::mode::S_IFMT == tree::mode::S_IFDIR;
        if is_directory && st.stx_mnt_id == mount_id {
            let sub = tree::open_dir_at(dir, &name).map_err(|e| (path.clone(), e))?;
            destroy_nested(&sub, mount_id, path)?;
            drop(sub);
            if st.stx_ino == ioctl::SUBVOLUME_ROOT_INO {
                ioctl::destroy_subvolume(dir, &name).map_err(|e| (path.clone(), e))?;
            }
        }
        path.pop();
    }
    Ok(())
}

/// Writes `content` to `path` through a temporary file and a rename (Go's `AtomicWriteFile`).
fn atomic_write(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
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
        mkdir_0700(&subvolumes)?;
        if let Some((uid, gid)) = config.id_mappings.root_pair()
            && (uid, gid) != (0, 0)
        {
            for dir in [&home, &subvolumes] {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .map_err(|e| Error::io("chown", dir, e))?;
            }
        }
        make_private(&home).map_err(|e| Error::io("make a private bind mount of", &home, e))?;
        let driver = BtrfsDriver {
            quotas: home.join("quotas"),
            home,
            subvolumes,
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
        validate_layer_id(id)?;
        Ok(self.subvolumes.join(id))
    }

    /// The path of the file holding layer `id`'s quota (`<home>/quotas/<id>`), if it has one.
    pub fn quota_file(&self, id: &str) -> Result<PathBuf> {
        validate_layer_id(id)?;
        Ok(self.quotas.join(id))
    }

    /// Undoes the home's private bind mount (what [`Driver::cleanup`] does).
    pub fn cleanup_home(&self) -> Result<()> {
        if is_mount_point(&self.home) {
            match rustix::mount::unmount(&self.home, rustix::mount::UnmountFlags::DETACH) {
                Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(Error::io("unmount", &self.home, e)),
            }
        }
        Ok(())
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

    fn enable_quota(&self) -> Result<()> {
        let home = open_dir(&self.home).map_err(|e| Error::io("open", &self.home, e))?;
        ioctl::enable_quota(&home).map_err(|e| Error::io("enable quotas on", &self.home, e))?;
        self.quota_enabled.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn limit(&self, id: &str, dir: &Path, bytes: u64) -> Result<()> {
        self.enable_quota()?;
        let fd = open_dir(dir).map_err(|e| Error::layer_io(id, "open", dir, e))?;
        ioctl::limit_qgroup(&fd, bytes).map_err(|e| Error::layer_io(id, "limit qgroup of", dir, e))
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
        validate_layer_id(id)?;
        let size = self.requested_size(id, opts)?;
        let dir = self.subvolumes.join(id);
        if std::fs::symlink_metadata(&dir).is_ok() {
            return Err(Error::LayerExists {
                id: id.to_string(),
                path: dir,
            });
        }
        let name = id_cstring(id)?;
        let subvolumes =
            open_dir(&self.subvolumes).map_err(|e| Error::io("open", &self.subvolumes, e))?;
        match parent {
            None => {
                ioctl::create_subvolume(&subvolumes, &name)
                    .map_err(|e| Error::layer_io(id, "create subvolume", &dir, e))?;
                let mappings = opts.id_mappings.as_ref().unwrap_or(&self.default_mappings);
                let result = (|| {
                    let (uid, gid) = mappings.root_owner(id, &dir)?;
                    if (uid, gid) != (0, 0) {
                        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                            .map_err(|e| Error::layer_io(id, "chown", &dir, e))?;
                    }
                    rustix::fs::chmod(&dir, Mode::from_raw_mode(BASE_LAYER_MODE))
                        .map_err(|e| Error::layer_io(id, "chmod", &dir, e))
                })();
                if let Err(e) = result {
                    let _ = ioctl::destroy_subvolume(&subvolumes, &name);
                    return Err(e);
                }
            }
            Some(parent) => {
                let parent_dir = self.existing_dir(parent)?;
                let source = open_dir(&parent_dir)
                    .map_err(|e| Error::layer_io(parent, "open", &parent_dir, e))?;
                ioctl::snapshot(&source, &subvolumes, &name, false)
                    .map_err(|e| Error::layer_io(id, "snapshot parent into", &dir, e))?;
            }
        }
        if let Some(bytes) = size {
            let result = self.limit(id, &dir, bytes).and_then(|()| {
                mkdir_0700(&self.quotas)?;
                let file = self.quotas.join(id);
                atomic_write(&file, bytes.to_string().as_bytes(), 0o644)
                    .map_err(|e| Error::layer_io(id, "write quota", &file, e))
            });
            if let Err(e) = result {
                let _ = self.remove(id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes the subvolumes nested in `id`'s subvolume, then the subvolume.
    fn destroy_layer(&self, id: &str, dir: &Path) -> Result<()> {
        let name = id_cstring(id)?;
        let subvolumes =
            open_dir(&self.subvolumes).map_err(|e| Error::io("open", &self.subvolumes, e))?;
        let layer = tree::open_dir_at(&subvolumes, &name)
            .map_err(|e| Error::layer_io(id, "open", dir, e))?;
        let st = rustix::fs::statx(
            &layer,
            c"",
            AtFlags::EMPTY_PATH,
            StatxFlags::INO | StatxFlags::MNT_ID,
        )
        .map_err(|e| Error::layer_io(id, "stat", dir, e))?;
        destroy_nested(&layer, st.stx_mnt_id, &mut PathBuf::new()).map_err(|(path, e)| {
            Error::layer_io(id, "delete nested subvolume", dir.join(path), e)
        })?;
        if st.stx_ino != ioctl::SUBVOLUME_ROOT_INO {
            // Not a subvolume (made by hand, or a half-made layer): plain files.
            drop(layer);
            return std::fs::remove_dir_all(dir).map_err(|e| Error::layer_io(id, "remove", dir, e));
        }
        // Best effort, as in Go (see the crate documentation).
        if let Ok(subvolume_id) = ioctl::subvolume_id(&layer) {
            let _ = ioctl::destroy_qgroup(&subvolumes, subvolume_id);
        }
        drop(layer);
        ioctl::destroy_subvolume(&subvolumes, &name)
            .map_err(|e| Error::layer_io(id, "delete subvolume", dir, e))
    }

    fn destroy_layer_checked(&self, id: &str) -> Result<()> {
        let dir = self.subvolumes.join(id);
        match std::fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::layer_io(id, "stat", &dir, e)),
            Ok(m) if !m.is_dir() => {
                std::fs::remove_file(&dir).map_err(|e| Error::layer_io(id, "remove", &dir, e))?
            }
            Ok(_) => self.destroy_layer(id, &dir)?,
        }
        Ok(())
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

    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
    }

    /// A snapshot of the template (which has the same parent), as Go's btrfs does.
    fn create_from_template(
        &self,
        id: &str,
        template: &str,
        _template_mappings: &IdMappings,
        parent: Option<&str>,
        _parent_mappings: &IdMappings,
        opts: &CreateOpts,
        _read_write: bool,
    ) -> Result<()> {
        if let Some(parent) = parent {
            validate_layer_id(parent)?;
        }
        self.create_layer(id, Some(template), opts)
    }

    /// Deletes the quota file, the nested subvolumes, then the layer's subvolume, and waits for
    /// a quota rescan when quotas are in use. A missing layer is not an error.
    fn remove(&self, id: &str) -> Result<()> {
        validate_layer_id(id)?;
        let quota = self.quotas.join(id);
        let had_quota = match std::fs::remove_file(&quota) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::layer_io(id, "remove", &quota, e)),
        };
        self.destroy_layer_checked(id)?;
        if had_quota || self.quota_enabled.load(Ordering::Relaxed) {
            let home = open_dir(&self.home).map_err(|e| Error::io("open", &self.home, e))?;
            ioctl::wait_quota_rescan(&home)
                .map_err(|e| Error::io("wait for the quota rescan of", &self.home, e))?;
        }
        Ok(())
    }

    /// The subvolume's path, after re-applying the layer's quota. Accepts no mount options but
    /// `ro` (Go: "btrfs driver does not support mount options").
    fn get(&self, id: &str, opts: &MountOpts) -> Result<PathBuf> {
        validate_layer_id(id)?;
        if opts.options.iter().any(|o| o != "ro") {
            return Err(Error::MountOptions {
                driver: NAME.to_string(),
                id: id.to_string(),
                options: opts.options.clone(),
            });
        }
        let dir = self.existing_dir(id)?;
        let quota = self.quotas.join(id);
        // As Go: an unreadable or malformed quota file is ignored.
        if let Some(bytes) = std::fs::read_to_string(&quota)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            && bytes >= self.min_space.unwrap_or(0)
        {
            self.limit(id, &dir, bytes)?;
        }
        Ok(dir)
    }

    /// Nothing to release: btrfs does not mount.
    fn put(&self, id: &str) -> Result<()> {
        validate_layer_id(id)
    }

    fn exists(&self, id: &str) -> bool {
        self.layer_dir(id).is_ok_and(|dir| is_dir(&dir))
    }

    fn list_layers(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = std::fs::read_dir(&self.subvolumes)
            .map_err(|e| Error::io("read", &self.subvolumes, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read", &self.subvolumes, e))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if let (true, Some(id)) = (is_dir, entry.file_name().to_str()) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
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

    /// Reads files straight from the layer's subvolume.
    fn diff_getter(&self, id: &str) -> Result<Option<Box<dyn FileGetter + Send + '_>>> {
        let dir = self.existing_dir(id)?;
        let getter = DirFileGetter::new(&dir).map_err(|source| Error::TarSplit {
            id: id.to_string(),
            source,
        })?;
        Ok(Some(Box::new(getter)))
    }
}

/// Whether the directory at `path` is the root of a btrfs subvolume (inode 256 on btrfs).
pub fn is_subvolume(path: &Path) -> io::Result<bool> {
    let fd = open_dir(path)?;
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
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(br"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape_mountinfo(br"/plain\09"), br"/plain\09");
        assert_eq!(unescape_mountinfo(br"\"), br"\");
    }

    #[test]
    fn mount_points() {
        assert!(is_mount_point(Path::new("/proc")));
        let tmp = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(tmp.path()));
    }

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
        if magic == ioctl::BTRFS_SUPER_MAGIC {
            eprintln!("SKIP: the temporary directory is on btrfs");
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
