//! Staged layers (Go's `DriverWithDiffer`, which Go's vfs lacks): a differ fills
//! `<home>/staging/<random>`, which then becomes the layer's tree `dir/<id>` by one atomic
//! exchange.
//!
//! A vfs layer holds its parent's whole tree, but the driver is not told the parent when it
//! stages (the layer may not exist yet). So the differ writes only the layer's own files, with
//! deletions marked overlay-style (a 0:0 character device for a deleted name,
//! `trusted.overlay.opaque=y` on an opaque directory); moving the staged tree into layer `id`
//! then lays it over a copy of `dir/<id>`: the markers delete what they name and are dropped,
//! a staged directory takes the place of the one below and keeps the entries it does not
//! override, anything else replaces what was there. For a layer just created (a pull's), whose
//! `dir/<id>` is the copy of its parent that `create` made and which is deleted if the move
//! fails, `dir/<id>` itself is the tree below: its entries move, with no second copy (a pull
//! of a rootfs and a child layer to ext4: the copy and the removal of what is left of it were
//! about a fifth of the pull). The result is what [`Driver::apply_diff`](layerstore_driver::Driver::apply_diff)
//! gives for the same tarball, except that a directory the tarball only implies (no entry of
//! its own) gets the archive's default mode and owner instead of the parent's, as an overlay
//! upper dir would show it, and the layer's top directory keeps the mode and owner `create`
//! gave it (as overlay's `diff/` does) where `apply_diff` takes the tarball's `./` entry.
//! Making the markers needs `CAP_MKNOD` (root).
//!
//! Everything here works through descriptors opened from the driver's home without following
//! symlinks, and the merge walks the staged tree iteratively ([`tree::walk_with`]).

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use layerstore_archive::whiteout::{OVERLAY_OPAQUE_XATTR, is_overlay_whiteout};
use layerstore_driver::tree::{self, DirChain, Visitor, WalkEntry};
use layerstore_driver::{Error, Result, StagingArea};
use rustix::fs::{AtFlags, RenameFlags, Statx, Timespec, Timestamps, renameat_with};

use crate::{VfsDriver, copy, id_cstring, validate};

impl VfsDriver {
    /// The driver's staging area, `<home>/staging`: the driver's `apply_diff_with_differ`
    /// and `cleanup_staging_directory` are its `stage` and `remove`.
    pub fn staging(&self) -> StagingArea<'_> {
        StagingArea::new(&self.home, self.home_fd.as_fd())
    }

    pub(crate) fn unstage(&self, id: &str, staging: &Path, below: Below) -> Result<()> {
        let area = self.staging();
        let staged_name = area.name_of(staging)?;
        validate(id)?;
        let id_name = id_cstring(id)?;
        let target_path = self.own_dir(id);
        let target = match tree::open_dir_at(&self.dirs_fd, &id_name) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::LayerNotFound {
                    id: id.to_string(),
                    path: target_path,
                });
            }
            Err(e) => return Err(Error::layer_io(id, "open", &target_path, e)),
        };
        let home = area.open()?;
        let staged = tree::open_dir_at(&home, &staged_name).map_err(|_| Error::NotStaging {
            path: staging.to_path_buf(),
        })?;
        let markers = if self
            .unmarked_staging
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&staged_name)
        {
            Markers::None
        } else {
            Markers::Anywhere
        };
        match below {
            Below::Copy => {
                let (below_path, below_name) = area.make_dir(home.as_fd())?;
                let merged = tree::open_dir_at(&home, &below_name)
                    .map_err(|e| Error::io("open", &below_path, e))
                    .and_then(|below| {
                        self.copy_below(id, target.as_fd(), &below, &below_path)?;
                        self.lay_over(id, staged.as_fd(), staging, target.as_fd(), &below, markers)
                    });
                // What is left of the copy is not needed whatever happened.
                let _ = area.remove_at(home.as_fd(), &below_name, &below_path);
                merged?;
            }
            Below::UseUp => {
                self.lay_over(
                    id,
                    staged.as_fd(),
                    staging,
                    target.as_fd(),
                    &target,
                    markers,
                )?;
            }
        }
        // One exchange: the layer has its old tree or the new one, never neither. The old one
        // (or what is left of it), now at the staging path, goes afterwards.
        renameat_with(
            &home,
            &staged_name,
            &self.dirs_fd,
            &id_name,
            RenameFlags::EXCHANGE,
        )
        .map_err(|e| Error::layer_io(id, "exchange", &target_path, io::Error::from(e)))?;
        let dirs = self.home.join("dir");
        rustix::fs::fsync(&self.dirs_fd).map_err(|e| Error::layer_io(id, "fsync", &dirs, e))?;
        area.remove_at(home.as_fd(), &staged_name, staging)
    }

    /// Copies the layer's tree `target` into `below`.
    fn copy_below(
        &self,
        id: &str,
        target: BorrowedFd<'_>,
        below: &OwnedFd,
        below_path: &Path,
    ) -> Result<()> {
        let options = copy::CopyOptions {
            ignore_chown_errors: self.ignore_chown_errors,
            ..Default::default()
        };
        copy::copy_tree_at(target, below.as_fd(), options)
            .map(drop)
            .map_err(|e| Error::LayerIo {
                id: id.to_string(),
                op: e.op,
                path: below_path.join(&e.path),
                source: e.source,
            })
    }

    /// Lays the staged tree `staged` over `below` (the result in `staged`: what it does not
    /// replace moves out of `below`) and gives `staged` the mode and owner of `target`.
    fn lay_over(
        &self,
        id: &str,
        staged: BorrowedFd<'_>,
        staged_path: &Path,
        target: BorrowedFd<'_>,
        below: &OwnedFd,
        markers: Markers,
    ) -> Result<()> {
        merge(staged, below.as_fd(), markers)
            .map_err(|e| Error::layer_io(id, "merge", staged_path.join(e.path), e.source))?;
        let st = tree::stat_fd(target).map_err(|e| Error::layer_io(id, "stat", staged_path, e))?;
        let chown = rustix::fs::fchown(
            staged,
            Some(rustix::fs::Uid::from_raw(st.stx_uid)),
            Some(rustix::fs::Gid::from_raw(st.stx_gid)),
        );
        if let Err(e) = chown
            && !(self.ignore_chown_errors && e == rustix::io::Errno::PERM)
        {
            return Err(Error::layer_io(id, "chown", staged_path, e));
        }
        rustix::fs::fchmod(
            staged,
            rustix::fs::Mode::from_raw_mode(tree::permissions(&st)),
        )
        .map_err(|e| Error::layer_io(id, "chmod", staged_path, e))
    }
}

/// Where deletion markers may be in a staged tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Markers {
    /// Anywhere: the merge looks at every entry.
    Anywhere,
    /// Nowhere (the differ counted none): the merge walks only the directories that have one
    /// below (for a pull's layer of new directories: only its top).
    None,
}

/// Where the tree below the staged one comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Below {
    /// A copy of the layer's tree, so the layer stays whole until the exchange.
    Copy,
    /// The layer's tree itself, used up by the merge: only for a layer just created, which
    /// is deleted if this fails.
    UseUp,
}

fn is_whiteout(st: &Statx) -> bool {
    is_overlay_whiteout(u32::from(st.stx_mode), st.stx_rdev_major, st.stx_rdev_minor)
}

/// One directory of the staged tree being merged.
struct Level {
    /// Whether the copy below has this directory (and it is not opaque): its entries the
    /// staged one does not name move in when it is done.
    has_lower: bool,
    /// The staged directory's times, as the differ set them.
    times: Statx,
    /// Every name the staged directory had (markers included).
    named: HashSet<CString>,
}

/// Makes each staged directory what the layer must hold there: markers in it delete the names
/// they mark and go, and unless it is opaque, the entries of the same directory in the copy
/// below (`lower`) that it does not name move into it. Never follows symlinks; keeps the
/// times the differ set.
struct Merge {
    lower: DirChain,
    levels: Vec<Level>,
    markers: Markers,
}

impl Merge {
    /// Reads and drops the opaque marker of the staged directory `dir`.
    fn take_opaque(dir: BorrowedFd<'_>) -> io::Result<bool> {
        let mut value = [0u8; 8];
        let opaque = rustix::fs::fgetxattr(dir, OVERLAY_OPAQUE_XATTR, &mut value[..])
            .is_ok_and(|n| value[..n] == *b"y");
        if opaque {
            rustix::fs::fremovexattr(dir, OVERLAY_OPAQUE_XATTR)?;
        }
        Ok(opaque)
    }
}

impl Visitor for Merge {
    fn enter(&mut self, entry: &WalkEntry<'_>) -> io::Result<bool> {
        if let Some(level) = self.levels.last_mut() {
            level.named.insert(entry.name.to_owned());
        }
        let markers = self.markers == Markers::Anywhere;
        if tree::file_type(entry.stat) != tree::mode::S_IFDIR {
            if markers && entry.depth > 0 && is_whiteout(entry.stat) {
                rustix::fs::unlinkat(entry.dir, entry.name, AtFlags::empty())?;
            }
            return Ok(false);
        }
        let parent_has_lower = self.levels.last().is_none_or(|level| level.has_lower);
        if !markers && !parent_has_lower {
            // Nothing below to move in, no marker to drop: the directory stays as it is.
            return Ok(false);
        }
        let own = if entry.depth == 0 {
            entry.dir.try_clone_to_owned()?
        } else {
            tree::open_dir_checked(entry.dir, entry.name, entry.stat)?
        };
        let opaque = markers && Self::take_opaque(own.as_fd())?;
        let mut has_lower = parent_has_lower && !opaque;
        if has_lower && entry.depth > 0 {
            let below = match tree::stat_at(self.lower.current(), entry.name) {
                Ok(st) if tree::file_type(&st) == tree::mode::S_IFDIR => Some(
                    tree::open_dir_checked(self.lower.current(), entry.name, &st)?,
                ),
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            match below {
                Some(below) => self.lower.push(below)?,
                None => has_lower = false,
            }
        }
        if !markers && !has_lower {
            return Ok(false);
        }
        self.levels.push(Level {
            has_lower,
            times: *entry.stat,
            named: HashSet::new(),
        });
        Ok(true)
    }

    fn leave(&mut self, entry: &WalkEntry<'_>, own: BorrowedFd<'_>) -> io::Result<()> {
        let Some(level) = self.levels.pop() else {
            return Ok(());
        };
        if level.has_lower {
            let lower = self.lower.current();
            for name in tree::read_names(lower)? {
                if !level.named.contains(&name) {
                    rustix::fs::renameat(lower, &name, own, &name)?;
                }
            }
            if entry.depth > 0 {
                self.lower.pop()?;
            }
        }
        let timestamp = |t: rustix::fs::StatxTimestamp| Timespec {
            tv_sec: t.tv_sec,
            tv_nsec: t.tv_nsec.into(),
        };
        let times = Timestamps {
            last_access: timestamp(level.times.stx_atime),
            last_modification: timestamp(level.times.stx_mtime),
        };
        Ok(rustix::fs::futimens(own, &times)?)
    }
}

/// [`Merge`] of the staged tree `upper` over `lower`, iteratively.
fn merge(
    upper: BorrowedFd<'_>,
    lower: BorrowedFd<'_>,
    markers: Markers,
) -> std::result::Result<(), tree::WalkError> {
    let fail = |source| tree::WalkError {
        path: PathBuf::new(),
        source,
    };
    let lower = DirChain::new(lower.try_clone_to_owned().map_err(fail)?);
    let mut visitor = Merge {
        lower,
        levels: Vec::new(),
        markers,
    };
    tree::walk_with(upper.try_clone_to_owned().map_err(fail)?, &mut visitor)
}
