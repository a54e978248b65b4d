//! A layer's directory `<home>/<id>`: opened from the home's descriptor, its `diff/` and
//! lowers resolved without following a symlink out of the home, and its creation.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use layerstore_driver::tree;
use layerstore_driver::{CreateOpts, Driver, Error, Result};

use crate::{NAME, OverlayDriver, generate_link_id, id_cstring, layout, validate};

/// Mode of a base layer's `diff/` (Go's `defaultPerms`).
const BASE_LAYER_MODE: u32 = 0o555;

/// A layer's directory `<home>/<id>`, opened from the home's descriptor.
#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) fd: OwnedFd,
    pub(crate) dir: PathBuf,
}

/// One lower layer of a layer, resolved through the home: never through `l/` to anywhere but
/// a layer of the home (or an additional layer store's tree the layer links).
#[derive(Debug)]
pub(crate) struct Lower {
    /// The lower layer.
    pub(crate) id: String,
    /// Its `diff/`.
    pub(crate) diff: OwnedFd,
}

impl OverlayDriver {
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
    fn read_short_link(
        &self,
        link_dir: &OwnedFd,
        name: &std::ffi::CStr,
    ) -> rustix::io::Result<Vec<u8>> {
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

    /// The layer's lowers, nearest first: each `l/<link>` of its `lower` file must be a
    /// symlink `../<lower id>/diff`, and that lower's directory is then opened from the home
    /// (the symlink itself is never followed, so no lower can be outside the home). Missing
    /// `l/` links are recreated once (Go's `recreateSymlinks`).
    pub(crate) fn lowers(&self, id: &str, layer: &Layer) -> Result<Vec<Lower>> {
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
    pub(crate) fn lower_paths(&self, lowers: &[Lower]) -> Vec<PathBuf> {
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
    pub(crate) fn native(&self, id: &str, parent: Option<&str>) -> bool {
        self.native_diff && !self.using_metacopy && self.is_parent(id, parent)
    }

    /// [`native`](Self::native) for the diff family, which is naive also for a child whose
    /// mappings differ from its parent's (see the crate docs).
    pub(crate) fn native_diff_of(&self, args: &layerstore_driver::DiffArgs<'_>) -> bool {
        self.native(args.id, args.parent)
            && (args.parent.is_none() || args.id_mappings == args.parent_mappings)
    }

    pub(crate) fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<()> {
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

    pub(crate) fn chown_fd(&self, fd: BorrowedFd<'_>, (uid, gid): (u32, u32)) -> io::Result<()> {
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
}

/// Sets the access time of the open directory `dir` to now, leaving its modification time.
pub(crate) fn touch_access_time(dir: BorrowedFd<'_>) -> io::Result<()> {
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
