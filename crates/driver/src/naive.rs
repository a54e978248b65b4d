//! The shared "naive" diff family: for drivers with no native way to diff, mount the layer
//! (and its parent) with [`Driver::get_root`], compare or extract trees with the archive crate,
//! and release the mounts with [`Driver::put`]. The [`Driver`] trait's default methods call
//! these; a driver with a native diff (overlay) calls them for the cases it cannot handle.
//!
//! Everything works through the descriptor of each mounted root ([`LayerRoot`]): once a
//! driver has opened a layer's tree safely, no path into it is resolved again (a layer
//! directory swapped for a symlink meanwhile changes nothing).
//!
//! Each function takes the driver generically (`D: Driver + ?Sized`) so that the trait's
//! default bodies can pass `self`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tree::{self, FileId, mode};
use crate::{
    ApplyDiffOpts, ApplyReport, Change, ChangeKind, CreateOpts, DiffArgs, DiskUsage, Driver,
    EntrySink, IdMappings, LayerRoot, MountOpts,
};

/// A mounted layer, released (`put`) when dropped.
struct Mounted<'d, D: Driver + ?Sized> {
    driver: &'d D,
    id: &'d str,
    root: LayerRoot,
}

impl<'d, D: Driver + ?Sized> Mounted<'d, D> {
    fn new(driver: &'d D, id: &'d str, label: &str, read_only: bool) -> Result<Self> {
        let opts = MountOpts {
            mount_label: label.to_string(),
            options: if read_only {
                vec!["ro".to_string()]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let root = driver.get_root(id, &opts)?;
        Ok(Mounted { driver, id, root })
    }

    fn path(&self) -> &Path {
        &self.root.path
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.root.fd.as_fd()
    }

    fn tree(&self) -> layerstore_archive::OpenTree<'_> {
        (self.fd(), self.path())
    }

    /// The tree, its owners read through `mappings`.
    fn mapped<'a>(&'a self, mappings: &'a IdMappings) -> layerstore_archive::MappedTree<'a> {
        layerstore_archive::MappedTree {
            tree: self.tree(),
            mappings: layerstore_archive::TreeMappings {
                uids: &mappings.uids,
                gids: &mappings.gids,
            },
        }
    }
}

impl<D: Driver + ?Sized> Drop for Mounted<'_, D> {
    fn drop(&mut self) {
        // A failed unmount cannot be reported from drop; the store's mount bookkeeping
        // (and `cleanup`) still knows about the layer.
        let _ = self.driver.put(self.id);
    }
}

fn walk_error(id: &str, root: &Path, op: &'static str, e: tree::WalkError) -> Error {
    Error::layer_io(id, op, root.join(&e.path), e.source)
}

/// Apparent sizes and inode count of the tree at `root`, each inode counted once (Go's
/// `directory.Usage`); `shown` names the tree in errors.
pub fn usage_at(id: &str, root: BorrowedFd<'_>, shown: &Path) -> Result<DiskUsage> {
    let mut seen = HashSet::new();
    let mut usage = DiskUsage::default();
    tree::walk_at(root, &mut |e| {
        if seen.insert(FileId::of(e.stat)) {
            usage.size += e.stat.stx_size;
            usage.inode_count += 1;
        }
        Ok(())
    })
    .map_err(|e| walk_error(id, shown, "measure", e))?;
    Ok(usage)
}

/// Disk usage of the layer's mounted tree: apparent sizes and inodes, each inode counted once
/// (Go's `directory.Usage`).
pub fn disk_usage<D: Driver + ?Sized>(driver: &D, id: &str) -> Result<DiskUsage> {
    let mounted = Mounted::new(driver, id, "", true)?;
    usage_at(id, mounted.fd(), mounted.path())
}

/// The host owner that `chown_tree_at` gives a file owned by `(uid, gid)`, or which ID has no
/// mapping: `to_container` first (a `0:0` it cannot map stays `0:0`, as Go compensates for a
/// parent that should have been mapped and was not), then `to_host`.
fn shifted(
    to_container: &IdMappings,
    to_host: &IdMappings,
    (uid, gid): (u32, u32),
) -> std::result::Result<(u32, u32), (&'static str, u32)> {
    let (container_uid, container_gid) = match to_container.to_container(uid, gid) {
        (Some(u), Some(g)) => (u, g),
        _ if (uid, gid) == (0, 0) => (0, 0),
        (None, _) => return Err(("uid", uid)),
        (_, None) => return Err(("gid", gid)),
    };
    match to_host.to_host(container_uid, container_gid) {
        (Some(u), Some(g)) => Ok((u, g)),
        (None, _) => Err(("uid", container_uid)),
        (_, None) => Err(("gid", container_gid)),
    }
}

/// Re-owns every file below `root` (Go's `ChownPathByMaps`; `shown` names the tree in
/// errors, `id` the layer): the owner is mapped to the container's view with `to_container`,
/// then to the host with `to_host` (empty mappings are the identity). The top directory is
/// left alone, as Go's walk skips `.`.
///
/// Each inode is shifted once, however many hard links it has: a later link of an inode
/// already shifted is left as it is, and where it is no longer that inode (an overlay
/// copy-up of the first link split them) it is linked to the first one again, as Go does.
/// `chown` clears set-user/group-ID bits and `security.capability`; both are put back.
pub fn chown_tree_at(
    id: &str,
    root: BorrowedFd<'_>,
    shown: &Path,
    to_container: &IdMappings,
    to_host: &IdMappings,
) -> Result<()> {
    let mut unmapped = None;
    // Multiply-linked inodes: the first path met and the owner it was given.
    let mut shifted_inodes: HashMap<FileId, (PathBuf, (u32, u32))> = HashMap::new();
    tree::walk_at(root, &mut |e| {
        if e.depth == 0 {
            return Ok(());
        }
        let owner = (e.stat.stx_uid, e.stat.stx_gid);
        let kind = tree::file_type(e.stat);
        let linked = kind != mode::S_IFDIR && e.stat.stx_nlink > 1;
        if linked && let Some((first, target)) = shifted_inodes.get(&FileId::of(e.stat)) {
            if owner == *target {
                return Ok(()); // the same inode, shifted already
            }
            rustix::fs::unlinkat(e.dir, e.name, rustix::fs::AtFlags::empty())?;
            return tree::link_beneath(root, first, e.dir, e.name);
        }
        let (hu, hg) = match shifted(to_container, to_host, owner) {
            Ok(pair) => pair,
            Err((kind, value)) => {
                unmapped = Some((e.path.to_path_buf(), kind, value));
                return Err(std::io::Error::from(std::io::ErrorKind::InvalidData));
            }
        };
        if linked {
            shifted_inodes.insert(FileId::of(e.stat), (e.path.to_path_buf(), (hu, hg)));
        }
        if (hu, hg) == owner {
            return Ok(());
        }
        let capability = if kind == mode::S_IFREG {
            crate::xattr::get_at(e.dir, e.name, c"security.capability")?
        } else {
            None
        };
        rustix::fs::chownat(
            e.dir,
            e.name,
            Some(rustix::fs::Uid::from_raw(hu)),
            Some(rustix::fs::Gid::from_raw(hg)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if kind != mode::S_IFLNK && tree::permissions(e.stat) & mode::S_ISUID_ISGID != 0 {
            // Not a symlink, so following the final component is harmless here.
            rustix::fs::chmodat(
                e.dir,
                e.name,
                rustix::fs::Mode::from_raw_mode(tree::permissions(e.stat)),
                rustix::fs::AtFlags::empty(),
            )?;
        }
        if let Some(value) = capability {
            crate::xattr::set_at(e.dir, e.name, c"security.capability", &value)?;
        }
        Ok(())
    })
    .map_err(|e| match unmapped.take() {
        Some((path, kind, value)) => Error::Unmapped {
            id: id.to_string(),
            path: shown.join(path),
            kind,
            value,
        },
        None => walk_error(id, shown, "chown", e),
    })
}

/// [`chown_tree_at`] of the directory at `root` (opened without following a final symlink).
pub fn chown_tree(
    id: &str,
    root: &Path,
    to_container: &IdMappings,
    to_host: &IdMappings,
) -> Result<()> {
    let fd = tree::open_dir(root).map_err(|e| Error::layer_io(id, "open", root, e))?;
    chown_tree_at(id, fd.as_fd(), root, to_container, to_host)
}

/// Mounts the layer and [re-owns its tree](chown_tree_at) (Go's naive `UpdateLayerIDMap`).
pub fn update_layer_id_map<D: Driver + ?Sized>(
    driver: &D,
    id: &str,
    to_container: &IdMappings,
    to_host: &IdMappings,
    mount_label: &str,
) -> Result<()> {
    let mounted = Mounted::new(driver, id, mount_label, false)?;
    chown_tree_at(id, mounted.fd(), mounted.path(), to_container, to_host)
}

/// Drops tar-split records when the caller wants none.
struct DiscardEntries;

impl EntrySink for DiscardEntries {
    fn put(
        &mut self,
        _entry: layerstore_tarsplit::Entry,
    ) -> Result<(), layerstore_tarsplit::Error> {
        Ok(())
    }
}

/// Extracts `opts.diff` beneath the open directory `root` with the archive crate, owners
/// mapped container → host with `opts.id_mappings`, recording tar-split entries into
/// `opts.tar_split` (if any). `whiteouts` and `root_entry` are the driver's choice.
pub fn apply_at(
    id: &str,
    root: BorrowedFd<'_>,
    whiteouts: layerstore_archive::WhiteoutStyle,
    root_entry: layerstore_archive::RootEntry,
    opts: ApplyDiffOpts<'_>,
) -> Result<ApplyReport> {
    let options = layerstore_archive::ApplyOptions {
        whiteouts,
        root_entry,
        uid_map: opts.id_mappings.uids,
        gid_map: opts.id_mappings.gids,
        ignore_chown_errors: opts.ignore_chown_errors,
        max_uncompressed_size: opts.max_uncompressed_size,
        on_input_end: opts.on_input_end,
        ..Default::default()
    };
    let target = root
        .try_clone_to_owned()
        .map_err(|e| Error::layer_io(id, "duplicate the descriptor of", PathBuf::from(id), e))?;
    let result = match opts.tar_split {
        Some(sink) => layerstore_archive::apply_at(target, opts.diff, sink, &options)
            .map(|(report, _)| report),
        None => layerstore_archive::apply_at(target, opts.diff, DiscardEntries, &options)
            .map(|(report, _)| report),
    };
    result.map_err(|e| Error::archive(id, e))
}

/// Naive `ApplyDiff`: mounts the layer read-write and extracts the stream into it with the
/// archive crate's [naive whiteouts](layerstore_archive::WhiteoutStyle::Naive), owners mapped
/// container → host with `opts.id_mappings`. Device nodes are created where permitted and
/// skipped (with a report warning) otherwise. `parent` is not needed: the layer's tree
/// already holds the parent's files (that is what makes whiteouts "naive").
///
/// The layer's top directory ends as Go's naive drivers leave it: owner, mode and xattrs of
/// the archive's `./` entry, if it has one, and its access time (the epoch when the header
/// records none); the modification time is when the apply finished (Go's extraction makes
/// and removes a temporary directory there last).
pub fn apply_diff<D: Driver + ?Sized>(
    driver: &D,
    id: &str,
    _parent: Option<&str>,
    opts: ApplyDiffOpts<'_>,
) -> Result<ApplyReport> {
    let mounted = Mounted::new(driver, id, &opts.mount_label, false)?;
    let report = apply_at(
        id,
        mounted.fd(),
        layerstore_archive::WhiteoutStyle::Naive,
        layerstore_archive::RootEntry::KeepModificationTime,
        opts,
    )?;
    touch_modification_time(mounted.fd())
        .map_err(|e| Error::layer_io(id, "set the times of", mounted.path(), e))?;
    Ok(report)
}

/// Sets the modification time of the open directory `dir` to now, leaving its access time.
pub fn touch_modification_time(dir: BorrowedFd<'_>) -> std::io::Result<()> {
    use rustix::fs::{Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
    };
    Ok(rustix::fs::futimens(dir, &times)?)
}

/// The layer (mounted read-write, as Go does) and its parent (mounted `ro`), if any.
fn mount_pair<'d, D: Driver + ?Sized>(
    driver: &'d D,
    args: &DiffArgs<'d>,
) -> Result<(Mounted<'d, D>, Option<Mounted<'d, D>>)> {
    let layer = Mounted::new(driver, args.id, args.mount_label, false)?;
    let parent = args
        .parent
        .map(|parent| Mounted::new(driver, parent, args.mount_label, true))
        .transpose()?;
    Ok((layer, parent))
}

/// The changes between the two mounted trees, each tree's owners read through its own
/// mappings (`args.id_mappings`, `args.parent_mappings`).
fn changes_of<D: Driver + ?Sized>(
    args: &DiffArgs<'_>,
    layer: &Mounted<'_, D>,
    parent: Option<&Mounted<'_, D>>,
) -> Result<Vec<Change>> {
    layerstore_archive::changes_at(
        layer.mapped(args.id_mappings),
        parent.map(|parent| parent.mapped(args.parent_mappings)),
    )
    .map_err(|e| Error::archive(args.id, e))
}

/// Naive `Changes`: both trees compared by the archive crate (Go's `ChangesDirs`: mode, owner,
/// device, size, mtime and `security.capability`; directories only for their own metadata).
/// Owners are compared as each layer's container sees them (the layer's mappings, the
/// parent's), so files only re-owned for the layer's own mappings are not changes.
pub fn changes<D: Driver + ?Sized>(driver: &D, args: &DiffArgs<'_>) -> Result<Vec<Change>> {
    let (layer, parent) = mount_pair(driver, args)?;
    changes_of(args, &layer, parent.as_ref())
}

/// Counts what passes through.
pub struct Counting<'w> {
    inner: &'w mut dyn Write,
    count: u64,
}

impl<'w> Counting<'w> {
    /// Counts what is written to `inner`.
    pub fn new(inner: &'w mut dyn Write) -> Self {
        Counting { inner, count: 0 }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Naive `Diff`: the [changes](changes()) exported as a tar stream by the archive crate
/// (deletions as `.wh.` entries; without a parent, every file of the layer), owners mapped
/// back to the container's view with the layer's mappings (so a file a container's root owns
/// is `0:0` in the stream, whatever host IDs the layer uses). Returns the bytes written.
///
/// Unlike Go, no sleep to the next whole second follows: layers are not modified after a
/// diff is taken here, so the mtime-granularity guard has nothing to protect.
pub fn diff<D: Driver + ?Sized>(
    driver: &D,
    args: &DiffArgs<'_>,
    out: &mut dyn Write,
) -> Result<u64> {
    let (layer, parent) = mount_pair(driver, args)?;
    let changes = changes_of(args, &layer, parent.as_ref())?;
    let mut counting = Counting::new(out);
    layerstore_archive::export_to_at(
        layer.tree(),
        &changes,
        &args.id_mappings.uids,
        &args.id_mappings.gids,
        &mut counting,
    )
    .map_err(|e| Error::archive(args.id, e))?;
    Ok(counting.count())
}

/// Naive `DiffSize`: the sum of the sizes of the non-directory paths the layer adds or
/// modifies ([`changes()`], owners compared through each layer's mappings), each inode counted
/// once (Go's `ChangesSize`).
pub fn diff_size<D: Driver + ?Sized>(driver: &D, args: &DiffArgs<'_>) -> Result<u64> {
    let (layer, parent) = mount_pair(driver, args)?;
    let changes = changes_of(args, &layer, parent.as_ref())?;
    drop(parent);
    let root =
        layer.root.fd.try_clone().map_err(|e| {
            Error::layer_io(args.id, "duplicate the descriptor of", layer.path(), e)
        })?;
    let mut seen = HashSet::new();
    let mut size = 0;
    for change in changes.iter().filter(|c| c.kind != ChangeKind::Delete) {
        let Some(stat) = tree::stat_beneath(&root, &change.path).map_err(|e| {
            Error::layer_io(
                args.id,
                "stat",
                layer.path().join(relative(&change.path)),
                e,
            )
        })?
        else {
            continue; // vanished meanwhile, as Go skips it
        };
        if tree::file_type(&stat) == mode::S_IFDIR {
            continue;
        }
        if seen.insert(FileId::of(&stat)) {
            size += stat.stx_size;
        }
    }
    Ok(size)
}

fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// Naive `CreateFromTemplate`: creates the layer on `parent`, then applies the template's
/// naive diff against `parent` into it.
#[allow(clippy::too_many_arguments)]
pub fn create_from_template<D: Driver + ?Sized>(
    driver: &D,
    id: &str,
    template: &str,
    template_mappings: &IdMappings,
    parent: Option<&str>,
    parent_mappings: &IdMappings,
    opts: &CreateOpts,
    read_write: bool,
) -> Result<()> {
    if read_write {
        driver.create_read_write(id, parent, opts)?;
    } else {
        driver.create(id, parent, opts)?;
    }
    let result = (|| {
        let args = DiffArgs {
            id: template,
            id_mappings: template_mappings,
            parent,
            parent_mappings,
            mount_label: &opts.mount_label,
        };
        let (layer, parent_mount) = mount_pair(driver, &args)?;
        // The copy must look on the host exactly as the template does (the store then re-owns
        // it as a whole), so owners are compared as they are on disk, not as each layer's
        // container sees them: a file the template only re-owned is part of the copy too.
        let on_disk = IdMappings::default();
        let changes = layerstore_archive::changes_at(
            layer.mapped(&on_disk),
            parent_mount.as_ref().map(|parent| parent.mapped(&on_disk)),
        )
        .map_err(|e| Error::archive(template, e))?;
        let mut stream = layerstore_archive::export_at(
            layer.tree(),
            changes,
            template_mappings.uids.clone(),
            template_mappings.gids.clone(),
        )
        .map_err(|e| Error::archive(template, e))?;
        // Owned as in the template, as Go's naive copy leaves it: the store then re-owns the
        // copy from the template's mappings to the new layer's (`update_layer_id_map`).
        let mut apply = ApplyDiffOpts::new(&mut stream);
        apply.id_mappings = template_mappings.clone();
        apply.mount_label = opts.mount_label.clone();
        driver.apply_diff(id, parent, apply).map(drop)
    })();
    if result.is_err() {
        // Do not leave a half-made layer; the first error is the one to report.
        let _ = driver.remove(id);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdMap;

    /// The smallest driver: a layer is a directory of `home` that the test fills itself.
    #[derive(Debug)]
    struct DirDriver {
        home: PathBuf,
    }

    impl Driver for DirDriver {
        fn name(&self) -> &'static str {
            "dirs"
        }
        fn home(&self) -> &Path {
            &self.home
        }
        fn create(&self, id: &str, _parent: Option<&str>, _opts: &CreateOpts) -> Result<()> {
            let dir = self.home.join(id);
            std::fs::create_dir(&dir).map_err(|e| Error::layer_io(id, "create", &dir, e))
        }
        fn remove(&self, id: &str) -> Result<()> {
            let dir = self.home.join(id);
            std::fs::remove_dir_all(&dir).map_err(|e| Error::layer_io(id, "remove", &dir, e))
        }
        fn get(&self, id: &str, _opts: &MountOpts) -> Result<PathBuf> {
            Ok(self.home.join(id))
        }
        fn put(&self, _id: &str) -> Result<()> {
            Ok(())
        }
        fn exists(&self, id: &str) -> bool {
            self.home.join(id).is_dir()
        }
        fn list_layers(&self) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
    }

    fn mappings(uid_base: u32, gid_base: u32) -> IdMappings {
        let map = |host_id| IdMap {
            container_id: 0,
            host_id,
            size: 6,
        };
        IdMappings::new(vec![map(uid_base)], vec![map(gid_base)])
    }

    /// Upstream's idmaps-create-diff-layer at the driver's level: a parent owned through one
    /// mapping, a child holding the same files re-owned for another and one file given to the
    /// container's root. Changes, diff and diff size see that file only; the diff carries the
    /// container's owner.
    #[test]
    fn a_child_with_other_mappings_diffs_only_what_really_changed() {
        use layerstore_testsupport::{Capability, require_or_skip};
        require_or_skip!(Capability::Root);
        let home = tempfile::tempdir().unwrap();
        let driver = DirDriver {
            home: home.path().to_path_buf(),
        };
        let (parent_maps, child_maps) = (mappings(100_000, 200_000), mappings(300_000, 400_000));
        for (id, maps) in [("parent", &parent_maps), ("child", &child_maps)] {
            driver.create(id, None, &CreateOpts::default()).unwrap();
            let (root_uid, root_gid) = maps.root_pair().unwrap();
            for i in 1..=5 {
                let file = home.path().join(id).join(format!("file{i}"));
                std::fs::write(&file, vec![b'x'; 10 * i as usize]).unwrap();
                let times = std::fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH);
                std::fs::File::options()
                    .write(true)
                    .open(&file)
                    .and_then(|f| f.set_times(times))
                    .unwrap();
                std::os::unix::fs::lchown(&file, Some(root_uid + i), Some(root_gid + i)).unwrap();
            }
        }
        // The one real change: file3 given to the child's container root.
        std::os::unix::fs::lchown(
            home.path().join("child/file3"),
            Some(300_000),
            Some(400_000),
        )
        .unwrap();
        let args = DiffArgs {
            id: "child",
            id_mappings: &child_maps,
            parent: Some("parent"),
            parent_mappings: &parent_maps,
            mount_label: "",
        };
        let listed: Vec<String> = changes(&driver, &args)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(listed, ["Modify \"/file3\""]);
        assert_eq!(diff_size(&driver, &args).unwrap(), 30);
        let mut tar = Vec::new();
        diff(&driver, &args, &mut tar).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let entries: Vec<(String, u64, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                (
                    entry.path().unwrap().display().to_string(),
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    header.size().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, [("file3".to_string(), 0, 0, 30)]);
    }
}
