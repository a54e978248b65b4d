//! The shared "naive" diff family: for drivers with no native way to diff, mount the layer
//! (and its parent) with [`Driver::get`], compare or extract trees with the archive crate,
//! and release the mounts with [`Driver::put`]. The [`Driver`] trait's default methods call
//! these; a driver with a native diff (overlay) calls them for the cases it cannot handle.
//!
//! Each function takes the driver generically (`D: Driver + ?Sized`) so that the trait's
//! default bodies can pass `self`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tree::{self, mode};
use crate::{
    ApplyDiffOpts, ApplyReport, Change, ChangeKind, CreateOpts, DiffArgs, DiskUsage, Driver,
    EntrySink, IdMappings, MountOpts,
};

/// A mounted layer, released (`put`) when dropped.
struct Mounted<'d, D: Driver + ?Sized> {
    driver: &'d D,
    id: &'d str,
    path: PathBuf,
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
        let path = driver.get(id, &opts)?;
        Ok(Mounted { driver, id, path })
    }

    fn path(&self) -> &Path {
        &self.path
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

/// Disk usage of the layer's mounted tree: apparent sizes and inodes, each inode counted once
/// (Go's `directory.Usage`).
pub fn disk_usage<D: Driver + ?Sized>(driver: &D, id: &str) -> Result<DiskUsage> {
    let mounted = Mounted::new(driver, id, "", true)?;
    let mut seen = HashSet::new();
    let mut usage = DiskUsage::default();
    tree::walk(mounted.path(), &mut |e| {
        let key = (e.stat.stx_dev_major, e.stat.stx_dev_minor, e.stat.stx_ino);
        if seen.insert(key) {
            usage.size += e.stat.stx_size;
            usage.inode_count += 1;
        }
        Ok(())
    })
    .map_err(|e| walk_error(id, mounted.path(), "measure", e))?;
    Ok(usage)
}

/// Re-owns every file of `root` (Go's `ChownPathByMaps`): the owner is mapped to the
/// container's view with `to_container`, then to the host with `to_host` (empty mappings are
/// the identity). `chown` clears set-user/group-ID bits and `security.capability`; both are
/// put back. `id` is only used in messages.
pub fn chown_tree(
    id: &str,
    root: &Path,
    to_container: &IdMappings,
    to_host: &IdMappings,
) -> Result<()> {
    let mut unmapped = None;
    tree::walk(root, &mut |e| {
        let (uid, gid) = (e.stat.stx_uid, e.stat.stx_gid);
        let (cu, cg) = to_container.to_container(uid, gid);
        let (Some(cu), Some(cg)) = (cu, cg) else {
            unmapped = Some((e.path.to_path_buf(), cu.is_none(), uid, gid));
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidData));
        };
        let (hu, hg) = to_host.to_host(cu, cg);
        let (Some(hu), Some(hg)) = (hu, hg) else {
            unmapped = Some((e.path.to_path_buf(), hu.is_none(), cu, cg));
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidData));
        };
        if (hu, hg) == (uid, gid) {
            return Ok(());
        }
        let kind = tree::file_type(e.stat);
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
        Some((path, is_uid, u, g)) => Error::Unmapped {
            id: id.to_string(),
            path: root.join(path),
            kind: if is_uid { "uid" } else { "gid" },
            value: if is_uid { u } else { g },
        },
        None => walk_error(id, root, "chown", e),
    })
}

/// Mounts the layer and [re-owns its tree](chown_tree) (Go's naive `UpdateLayerIDMap`).
pub fn update_layer_id_map<D: Driver + ?Sized>(
    driver: &D,
    id: &str,
    to_container: &IdMappings,
    to_host: &IdMappings,
    mount_label: &str,
) -> Result<()> {
    let mounted = Mounted::new(driver, id, mount_label, false)?;
    chown_tree(id, mounted.path(), to_container, to_host)
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

/// Naive `ApplyDiff`: mounts the layer read-write and extracts the stream into it with the
/// archive crate's [naive whiteouts](layerstore_archive::WhiteoutStyle::Naive), owners mapped
/// container → host with `opts.id_mappings`. Device nodes are created where permitted and
/// skipped (with a report warning) otherwise. `parent` is not needed: the layer's tree
/// already holds the parent's files (that is what makes whiteouts "naive").
pub fn apply_diff<D: Driver + ?Sized>(
    driver: &D,
    id: &str,
    _parent: Option<&str>,
    opts: ApplyDiffOpts<'_>,
) -> Result<ApplyReport> {
    let mounted = Mounted::new(driver, id, &opts.mount_label, false)?;
    let options = layerstore_archive::ApplyOptions {
        whiteouts: layerstore_archive::WhiteoutStyle::Naive,
        uid_map: opts.id_mappings.uids,
        gid_map: opts.id_mappings.gids,
        ignore_chown_errors: opts.ignore_chown_errors,
        max_uncompressed_size: opts.max_uncompressed_size,
        ..Default::default()
    };
    let result = match opts.tar_split {
        Some(sink) => layerstore_archive::apply(mounted.path(), opts.diff, sink, &options)
            .map(|(report, _)| report),
        None => layerstore_archive::apply(mounted.path(), opts.diff, DiscardEntries, &options)
            .map(|(report, _)| report),
    };
    result.map_err(|e| Error::archive(id, e))
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

/// Naive `Changes`: both trees compared by the archive crate (Go's `ChangesDirs`: mode, owner,
/// device, size, mtime and `security.capability`; directories only for their own metadata).
pub fn changes<D: Driver + ?Sized>(driver: &D, args: &DiffArgs<'_>) -> Result<Vec<Change>> {
    let (layer, parent) = mount_pair(driver, args)?;
    layerstore_archive::changes(layer.path(), parent.as_ref().map(|p| p.path()))
        .map_err(|e| Error::archive(args.id, e))
}

/// Counts what passes through.
struct Counting<'w> {
    inner: &'w mut dyn Write,
    count: u64,
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
/// back to the container's view with the layer's mappings. Returns the bytes written.
///
/// Unlike Go, no sleep to the next whole second follows: layers are not modified after a
/// diff is taken here, so the mtime-granularity guard has nothing to protect.
pub fn diff<D: Driver + ?Sized>(
    driver: &D,
    args: &DiffArgs<'_>,
    out: &mut dyn Write,
) -> Result<u64> {
    let (layer, parent) = mount_pair(driver, args)?;
    let changes = layerstore_archive::changes(layer.path(), parent.as_ref().map(|p| p.path()))
        .map_err(|e| Error::archive(args.id, e))?;
    let mut counting = Counting {
        inner: out,
        count: 0,
    };
    layerstore_archive::export_to(
        layer.path(),
        &changes,
        &args.id_mappings.uids,
        &args.id_mappings.gids,
        &mut counting,
    )
    .map_err(|e| Error::archive(args.id, e))?;
    Ok(counting.count)
}

/// Naive `DiffSize`: the sum of the sizes of the non-directory paths the layer adds or
/// modifies, each inode counted once (Go's `ChangesSize`).
pub fn diff_size<D: Driver + ?Sized>(driver: &D, args: &DiffArgs<'_>) -> Result<u64> {
    let changes = changes(driver, args)?;
    let layer = Mounted::new(driver, args.id, args.mount_label, true)?;
    let root = tree::open_dir(layer.path())
        .map_err(|e| Error::layer_io(args.id, "open", layer.path(), e))?;
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
        if seen.insert((stat.stx_dev_major, stat.stx_dev_minor, stat.stx_ino)) {
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
        let changes =
            layerstore_archive::changes(layer.path(), parent_mount.as_ref().map(|p| p.path()))
                .map_err(|e| Error::archive(template, e))?;
        let mut stream = layerstore_archive::export(
            layer.path(),
            changes,
            template_mappings.uids.clone(),
            template_mappings.gids.clone(),
        )
        .map_err(|e| Error::archive(template, e))?;
        let mut apply = ApplyDiffOpts::new(&mut stream);
        apply.id_mappings = opts.id_mappings.clone().unwrap_or_default();
        apply.mount_label = opts.mount_label.clone();
        driver.apply_diff(id, parent, apply).map(drop)
    })();
    if result.is_err() {
        // Do not leave a half-made layer; the first error is the one to report.
        let _ = driver.remove(id);
    }
    result
}
