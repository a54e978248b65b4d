//! The list of changes between a layer's tree and its parent's, as containers/storage computes
//! it: by comparing metadata of two trees (naive drivers), or from an overlay upper dir.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use layerstore_model::go_quote;
use rustix::fs::{self as rfs, FileType, Statx};

use crate::error::{Error, Result};
use crate::idmap::{IdMap, to_container};
use crate::rooted::Root;
use crate::tree::{self, DirChain, Visitor, WalkEntry};
use crate::whiteout::{OVERLAY_OPAQUE_XATTR, is_overlay_whiteout};

/// What happened to a path. The discriminants are Go's `ChangeType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ChangeKind {
    /// Metadata or content changed.
    Modify = 0,
    /// New in the layer.
    Add = 1,
    /// Removed by the layer.
    Delete = 2,
}

/// One change: a `/`-rooted path and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Change {
    /// Absolute path inside the layer, e.g. `/etc/passwd`.
    pub path: PathBuf,
    /// What happened.
    pub kind: ChangeKind,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Modify => "Modify",
            ChangeKind::Add => "Add",
            ChangeKind::Delete => "Delete",
        })
    }
}

/// `Add "/path"`, as the Go tool prints a change (`%s %q`).
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.kind,
            go_quote(self.path.as_os_str().as_bytes())
        )
    }
}

/// The metadata compared between trees.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: i64,
    mtime: (i64, i64),
    capability: Option<Vec<u8>>,
    /// `user.*` xattrs, sorted by name (Go compares them as a map).
    user_xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn of(
        st: &Statx,
        capability: Option<Vec<u8>>,
        mut user_xattrs: Vec<(String, Vec<u8>)>,
    ) -> Self {
        user_xattrs.sort();
        Meta {
            mode: u32::from(st.stx_mode),
            uid: st.stx_uid,
            gid: st.stx_gid,
            rdev: rfs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
            size: st.stx_size as i64,
            mtime: mtime(st),
            capability,
            user_xattrs,
        }
    }

    fn is_dir(&self) -> bool {
        FileType::from_raw_mode(self.mode) == FileType::Directory
    }
}

/// A tree's entries in depth-first pre-order (names sorted), each with its absolute path
/// (`/a/b`); kept flat so that neither building nor dropping it recurses, however deep.
struct Tree {
    entries: Vec<(Vec<u8>, Meta)>,
}

/// The ID mappings of a tree whose files are owned by host IDs: a layer's `uidmap` and
/// `gidmap`. Empty lists are the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeMappings<'a> {
    /// UID ranges (container ID → host ID).
    pub uids: &'a [IdMap],
    /// GID ranges.
    pub gids: &'a [IdMap],
}

impl TreeMappings<'_> {
    /// The container's view of a host owner; `None` when either ID has no mapping.
    fn to_container(self, (uid, gid): (u32, u32)) -> Option<(u32, u32)> {
        Some((to_container(self.uids, uid)?, to_container(self.gids, gid)?))
    }
}

/// An open tree ([`OpenTree`]) and the ID mappings its owners are read through.
#[derive(Debug, Clone, Copy)]
pub struct MappedTree<'a> {
    /// The tree's root directory and the path that names it in errors.
    pub tree: OpenTree<'a>,
    /// The tree's ID mappings.
    pub mappings: TreeMappings<'a>,
}

impl Tree {
    fn read(top: &Path) -> Result<Tree> {
        let root = Root::open(top).map_err(|e| Error::path(top, "open", e))?;
        Tree::read_root(&root, top)
    }

    /// The open tree and its mappings.
    fn read_mapped(tree: MappedTree<'_>) -> Result<(Tree, TreeMappings<'_>)> {
        let (fd, top) = tree.tree;
        let entries = Tree::read_root(&root_of((fd, top))?, top)?;
        Ok((entries, tree.mappings))
    }

    /// The tree below `root`, named `top` in errors.
    fn read_root(root: &Root, top: &Path) -> Result<Tree> {
        let mut entries = Vec::new();
        walk_tree(root, top, &mut |entry| {
            // AUFS metadata at the top of a layer is not content (Go skips `/.wh..wh.*`).
            if is_aufs_metadata(entry) {
                return Ok(false);
            }
            let path = absolute(entry.path);
            // One listing finds both kinds compared (most files have no xattr at all).
            let mut user_xattrs = list_xattrs_at(entry.dir, entry.name.to_bytes(), |key| {
                key.starts_with(b"user.") || key == b"security.capability"
            })
            .map_err(|e| Error::path(shown(top, &path), "read the xattrs of", e))?;
            let capability = user_xattrs
                .iter()
                .position(|(key, _)| key == "security.capability")
                .map(|at| user_xattrs.swap_remove(at).1);
            entries.push((path, Meta::of(entry.stat, capability, user_xattrs)));
            Ok(true)
        })?;
        Ok(Tree { entries })
    }
}

/// Walks the tree below `root` (named `top` in errors) with `visit`: every entry but the root,
/// pre-order, names sorted bytewise, never following a symlink, iteratively with a bounded
/// number of descriptors ([`tree::walk_with`]). `visit` says whether to enter a directory; its
/// error is returned as it is, a failure of the walk names the path where it happened.
fn walk_tree(
    root: &Root,
    top: &Path,
    visit: &mut dyn FnMut(&WalkEntry<'_>) -> Result<bool>,
) -> Result<()> {
    /// Keeps the visitor's own error, which the walker's `io::Error` cannot carry.
    struct BelowRoot<'v> {
        visit: &'v mut dyn FnMut(&WalkEntry<'_>) -> Result<bool>,
        failed: Option<Error>,
    }
    impl Visitor for BelowRoot<'_> {
        fn enter(&mut self, entry: &WalkEntry<'_>) -> io::Result<bool> {
            if entry.depth == 0 {
                return Ok(true);
            }
            (self.visit)(entry).map_err(|e| {
                self.failed = Some(e);
                io::Error::other("stopped by the visitor")
            })
        }
    }
    // Readable (the root's own descriptor may be `O_PATH`): the walker lists it.
    let fd = tree::open_dir_at(root.fd(), c".").map_err(|e| Error::path(top, "open", e))?;
    let mut below = BelowRoot {
        visit,
        failed: None,
    };
    let walked = tree::walk_with(fd, &mut below);
    match (below.failed, walked) {
        (Some(error), _) => Err(error),
        (None, Err(e)) => Err(Error::path(top.join(&e.path), "walk", e.source)),
        (None, Ok(())) => Ok(()),
    }
}

/// AUFS metadata at the top of a layer (`/.wh..wh.*`), which is not content.
fn is_aufs_metadata(entry: &WalkEntry<'_>) -> bool {
    entry.depth == 1 && entry.name.to_bytes().starts_with(b".wh..wh.")
}

/// `/a/b` from the relative path `a/b`.
fn absolute(relative: &Path) -> Vec<u8> {
    let mut path = Vec::with_capacity(relative.as_os_str().len() + 1);
    path.push(b'/');
    path.extend_from_slice(relative.as_os_str().as_bytes());
    path
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
fn stat_if_present(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<Option<Statx>> {
    match tree::stat_at(dir, name) {
        Ok(st) => Ok(Some(st)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The modification time of `st`: seconds and nanoseconds.
fn mtime(st: &Statx) -> (i64, i64) {
    (st.stx_mtime.tv_sec, i64::from(st.stx_mtime.tv_nsec))
}

/// The host path of an absolute path inside the tree at `top`, for messages.
fn shown(top: &Path, path: &[u8]) -> PathBuf {
    top.join(std::ffi::OsStr::from_bytes(
        path.strip_prefix(b"/").unwrap_or(path),
    ))
}

/// The parent of an absolute path (`""` for a name at the top).
fn parent_of(path: &[u8]) -> &[u8] {
    &path[..path.iter().rposition(|&b| b == b'/').unwrap_or(0)]
}

/// The owners of an entry of each tree as they are compared (Go's `statDifferent`): both as
/// their container sees them when the new one is mapped, the old one only if it is mapped too;
/// otherwise both host owners as they are.
fn compared_owners(
    (old, old_maps): (&Meta, TreeMappings<'_>),
    (new, new_maps): (&Meta, TreeMappings<'_>),
) -> ((u32, u32), (u32, u32)) {
    let (old_host, new_host) = ((old.uid, old.gid), (new.uid, new.gid));
    match new_maps.to_container(new_host) {
        Some(new_owner) => (
            old_maps.to_container(old_host).unwrap_or(old_host),
            new_owner,
        ),
        None => (old_host, new_host),
    }
}

/// Go's `statDifferent`: owners compared as [`compared_owners`] says, mtimes as
/// [`same_fs_time`] does; size and mtime are ignored for directories.
fn stat_different(old: (&Meta, TreeMappings<'_>), new: (&Meta, TreeMappings<'_>)) -> bool {
    let (old_owner, new_owner) = compared_owners(old, new);
    let (old, new) = (old.0, new.0);
    old.mode != new.mode
        || old_owner != new_owner
        || old.rdev != new.rdev
        || (!old.is_dir() && (!same_fs_time(old.mtime, new.mtime) || old.size != new.size))
}

/// The changes that turn `parent`'s tree into `layer`'s (everything is an Add without a parent),
/// computed as containers/storage's naive drivers do (`ChangesDirs`): mode, owner, device number,
/// size, mtime (not for directories; equal within the same second when either side has no
/// nanoseconds, as tar keeps none), `security.capability` and `user.*` xattrs are compared. A directory with
/// changes inside is listed as a Modify before them; deletions follow the additions and
/// modifications of their directory. Both trees are walked iteratively: any depth is fine.
/// Owners are compared as they are on disk; [`changes_at`] compares them through each tree's
/// ID mappings.
pub fn changes(layer: &Path, parent: Option<&Path>) -> Result<Vec<Change>> {
    let new = Tree::read(layer)?;
    let old = parent.map(Tree::read).transpose()?;
    changes_of(
        (new, TreeMappings::default()),
        old.map(|old| (old, TreeMappings::default())),
    )
}

/// A root directory given as an open descriptor, and the path that names it in errors.
pub type OpenTree<'a> = (BorrowedFd<'a>, &'a Path);

fn root_of((fd, path): OpenTree<'_>) -> Result<Root> {
    let fd = fd
        .try_clone_to_owned()
        .map_err(|e| Error::path(path, "duplicate the descriptor of", e))?;
    Ok(Root::from_fd(fd))
}

/// [`changes`] of trees already open (the caller opened them safely; nothing is resolved by
/// path again), each owned through its own ID mappings, as Go's `ChangesDirs` takes a layer's
/// and its parent's: an owner is compared as its container sees it, so a layer whose files
/// were only re-owned for other mappings (a child created with mappings other than its
/// parent's) shows no change. When the layer's owner of a path has no mapping, both host
/// owners are compared as they are; when only the parent's has none, its host owner is.
pub fn changes_at(layer: MappedTree<'_>, parent: Option<MappedTree<'_>>) -> Result<Vec<Change>> {
    let new = Tree::read_mapped(layer)?;
    let old = parent.map(Tree::read_mapped).transpose()?;
    changes_of(new, old)
}

fn changes_of(
    (new, new_maps): (Tree, TreeMappings<'_>),
    old: Option<(Tree, TreeMappings<'_>)>,
) -> Result<Vec<Change>> {
    let old_maps = old.as_ref().map(|(_, maps)| *maps).unwrap_or_default();
    let new_paths: HashSet<&[u8]> = new.entries.iter().map(|(p, _)| &p[..]).collect();
    let mut old_meta: HashMap<&[u8], &Meta> = HashMap::new();
    let mut old_children: HashMap<&[u8], Vec<&[u8]>> = HashMap::new();
    for (path, meta) in old.iter().flat_map(|(t, _)| t.entries.iter()) {
        old_meta.insert(path, meta);
        old_children.entry(parent_of(path)).or_default().push(path);
    }
    // The directories whose entries are being listed (Go's `addChanges` frames), the layer's
    // root first.
    struct Open<'p> {
        path: &'p [u8],
        size_at_entry: usize,
        added: bool,
    }
    let close = |open: Open<'_>, out: &mut Vec<Change>| {
        for &gone in old_children.get(open.path).into_iter().flatten() {
            if !new_paths.contains(gone) {
                out.push(change(gone, ChangeKind::Delete));
            }
        }
        // A directory with changes inside is itself listed (permissions must be restorable).
        if out.len() > open.size_at_entry && !open.added && !open.path.is_empty() {
            out.insert(open.size_at_entry, change(open.path, ChangeKind::Modify));
        }
    };
    let mut out = Vec::new();
    let mut open = vec![Open {
        path: b"",
        size_at_entry: 0,
        added: false,
    }];
    for (path, meta) in &new.entries {
        let parent = parent_of(path);
        while open.last().is_some_and(|o| o.path != parent) {
            close(open.pop().expect("checked"), &mut out);
        }
        let size_at_entry = out.len();
        let added = match old_meta.get(&path[..]) {
            None => {
                out.push(change(path, ChangeKind::Add));
                true
            }
            Some(old)
                if stat_different((old, old_maps), (meta, new_maps))
                    || old.capability != meta.capability
                    || old.user_xattrs != meta.user_xattrs =>
            {
                out.push(change(path, ChangeKind::Modify));
                true
            }
            Some(_) => false,
        };
        if meta.is_dir() {
            open.push(Open {
                path,
                size_at_entry,
                added,
            });
        }
    }
    while let Some(o) = open.pop() {
        close(o, &mut out);
    }
    Ok(out)
}

/// 0:0 character device: an overlay whiteout.
fn is_whiteout(st: &Statx) -> bool {
    is_overlay_whiteout(u32::from(st.stx_mode), st.stx_rdev_major, st.stx_rdev_minor)
}

/// Go's `sameFsTime`: equal, or the same second with either side lacking nanoseconds (tar).
fn same_fs_time(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 == b.0 && (a.1 == b.1 || a.1 == 0 || b.1 == 0)
}

/// The changes recorded in an overlay upper dir (`upper`) over its lower layers (`lowers`,
/// nearest first), as the overlay driver's native `Changes` computes them: a 0:0 character
/// device is a Delete; an opaque directory that a lower shows is a Delete of the directory
/// (exported as the directory and its opaque marker); anything else is an Add, or a Modify
/// when a lower shows the path (directories equal in size, mode and mtime to the lower's are
/// not listed). Directories above an Add or Delete are listed as Modify first.
///
/// What a lower "shows" follows overlayfs: below an opaque directory of the upper nothing of
/// the lowers is visible, so everything there is an Add (also a name a lower has, as when a
/// directory deleted in one layer is made again in a child through the merged mount); a
/// lower's whiteout, non-directory or opaque directory hides the lowers beneath it.
/// Iterative, with descriptors bounded whatever the depth.
pub fn overlay_changes(upper: &Path, lowers: &[&Path]) -> Result<Vec<Change>> {
    let lower_roots = lowers
        .iter()
        .map(|p| Root::open(p).map_err(|e| Error::path(*p, "open", e)))
        .collect::<Result<Vec<_>>>()?;
    let root = Root::open(upper).map_err(|e| Error::path(upper, "open", e))?;
    overlay_changes_of(&root, upper, &lower_roots, lowers)
}

/// [`overlay_changes`] of directories already open (nothing is resolved by path again).
pub fn overlay_changes_at(upper: OpenTree<'_>, lowers: &[OpenTree<'_>]) -> Result<Vec<Change>> {
    let lower_roots = lowers
        .iter()
        .map(|&lower| root_of(lower))
        .collect::<Result<Vec<_>>>()?;
    let lower_paths: Vec<&Path> = lowers.iter().map(|l| l.1).collect();
    overlay_changes_of(&root_of(upper)?, upper.1, &lower_roots, &lower_paths)
}

fn overlay_changes_of(
    root: &Root,
    upper: &Path,
    lower_roots: &[Root],
    lowers: &[&Path],
) -> Result<Vec<Change>> {
    // The upper's walk and every lower's cursor share a budget of descriptors.
    let window = (tree::OPEN_DIRS * 16 / (lowers.len() + 1)).max(4);
    let mut cursors = lower_roots
        .iter()
        .zip(lowers)
        .map(|(lower, p)| {
            let top =
                tree::open_dir_at(lower.fd(), c".").map_err(|e| Error::path(*p, "open", e))?;
            Ok(DirChain::with_window(top, window))
        })
        .collect::<Result<Vec<_>>>()?;
    // For each directory on the current path (the upper's root first): the lowers, nearest
    // first, whose directory at that path is visible through the ones above, and whether the
    // directory is listed already (Go's `changedDirs`; only the current path's can matter).
    struct Level {
        visible: Vec<usize>,
        listed: bool,
    }
    let mut levels = vec![Level {
        visible: (0..lowers.len()).collect(),
        listed: true,
    }];
    // Levels below this one are all listed: each Add or Delete climbs only to it.
    let mut listed_below = 1;
    let mut changes = Vec::new();
    walk_tree(root, upper, &mut |entry| {
        let path = absolute(entry.path);
        let here = || shown(upper, &path);
        // Climb the lowers back to the entry's directory.
        while levels.len() > entry.depth {
            for &i in &levels.pop().expect("checked").visible {
                cursors[i]
                    .pop()
                    .map_err(|e| Error::path(lowers[i], "open ..", e))?;
            }
        }
        if is_aufs_metadata(entry) {
            return Ok(false);
        }
        let st = entry.stat;
        let is_dir = tree::file_type(st) == tree::mode::S_IFDIR;
        // The nearest lower showing this name (a whiteout there hides it from all below).
        listed_below = listed_below.min(levels.len());
        let mut in_lower = None;
        for &i in &levels.last().expect("the root level stays").visible {
            let lower = stat_if_present(cursors[i].current(), entry.name)
                .map_err(|e| Error::path(shown(lowers[i], &path), "lstat", e))?;
            if let Some(lower) = lower {
                in_lower = (!is_whiteout(&lower)).then_some((i, lower));
                break;
            }
        }
        let opaque = is_dir
            && get_xattr_at(entry.dir, entry.name.to_bytes(), OVERLAY_OPAQUE_XATTR)
                .map_err(|e| Error::path(here(), "getxattr", e))?
                .as_deref()
                == Some(b"y");
        let kind = if is_whiteout(st) || (opaque && in_lower.is_some()) {
            Some(ChangeKind::Delete)
        } else {
            match &in_lower {
                None => Some(ChangeKind::Add),
                Some((_, lower))
                    if is_dir
                        && tree::file_type(lower) == tree::mode::S_IFDIR
                        && lower.stx_size == st.stx_size
                        && lower.stx_mode == st.stx_mode
                        && same_fs_time(mtime(lower), mtime(st)) =>
                {
                    None
                }
                Some(_) => Some(ChangeKind::Modify),
            }
        };
        if let Some(kind) = kind
            && kind != ChangeKind::Modify
        {
            // Every directory above an Add or Delete is listed, outermost first.
            let ends: Vec<usize> = path
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'/')
                .map(|(at, _)| at)
                .collect();
            for depth in listed_below..levels.len() {
                if !levels[depth].listed {
                    levels[depth].listed = true;
                    changes.push(change(&path[..ends[depth]], ChangeKind::Modify));
                }
            }
            listed_below = levels.len();
        }
        if let Some(kind) = kind {
            changes.push(change(&path, kind));
        }
        if is_dir {
            // The lowers whose directory of this name shows through the upper's.
            let mut below = Vec::new();
            if !opaque {
                for &i in &levels.last().expect("the root level stays").visible {
                    let at = shown(lowers[i], &path);
                    let lower = stat_if_present(cursors[i].current(), entry.name)
                        .map_err(|e| Error::path(&at, "lstat", e))?;
                    let Some(lower) = lower else { continue };
                    if tree::file_type(&lower) != tree::mode::S_IFDIR {
                        break; // a whiteout or a file hides the lowers beneath
                    }
                    let lower_opaque = get_xattr_at(
                        cursors[i].current(),
                        entry.name.to_bytes(),
                        OVERLAY_OPAQUE_XATTR,
                    )
                    .map_err(|e| Error::path(&at, "getxattr", e))?
                    .as_deref()
                        == Some(b"y");
                    let sub = tree::open_dir_checked(cursors[i].current(), entry.name, &lower)
                        .map_err(|e| Error::path(&at, "open", e))?;
                    cursors[i]
                        .push(sub)
                        .map_err(|e| Error::path(&at, "open", e))?;
                    below.push(i);
                    if lower_opaque {
                        break;
                    }
                }
            }
            levels.push(Level {
                visible: below,
                listed: kind.is_some(),
            });
        }
        Ok(true)
    })?;
    Ok(changes)
}

/// The xattrs of `name` in `dir` whose names `keep` accepts, with their values, in the order
/// the filesystem lists them, without following a symlink; none when the filesystem has no
/// xattrs.
pub(crate) fn list_xattrs_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    keep: impl Fn(&[u8]) -> bool,
) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    let mut list = vec![0u8; 1024];
    let n = loop {
        match rfs::llistxattr(&path[..], &mut list[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if list.len() < (1 << 20) => {
                list.resize(list.len() * 4, 0)
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for key in list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        if !keep(key) {
            continue;
        }
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        if let Some(value) = get_xattr_path(&path, key)? {
            out.push((key.to_string(), value));
        }
    }
    Ok(out)
}

/// Reads one xattr of `name` in `dir` without following a symlink; `None` when absent or when the
/// filesystem has no xattrs.
pub(crate) fn get_xattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    xattr: &str,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    get_xattr_path(&path, xattr)
}

fn get_xattr_path(path: &[u8], xattr: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; 256];
    loop {
        match rfs::lgetxattr(path, xattr, &mut value[..]) {
            Ok(n) => {
                value.truncate(n);
                return Ok(Some(value));
            }
            Err(rustix::io::Errno::RANGE) if value.len() < (1 << 20) => {
                value.resize(value.len() * 4, 0)
            }
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn change(path: &[u8], kind: ChangeKind) -> Change {
    Change {
        path: PathBuf::from(std::ffi::OsString::from_vec(path.to_vec())),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_lines_quote_names_as_go_does() {
        let line = |path: &[u8]| change(path, ChangeKind::Delete).to_string();
        assert_eq!(line(b"/usr/bin"), "Delete \"/usr/bin\"");
        assert_eq!(line(b"/bad\xff\xfename"), "Delete \"/bad\\xff\\xfename\"");
        // Go's strconv.Quote escapes U+2028, U+2029 and U+FEFF; this copy once kept them.
        assert_eq!(
            line("/a\u{2028}b\u{2029}c\u{feff}".as_bytes()),
            "Delete \"/a\\u2028b\\u2029c\\ufeff\""
        );
    }

    #[test]
    fn naive_changes_of_a_small_tree() {
        let t = tempfile::tempdir().expect("tempdir");
        let (old, new) = (t.path().join("old"), t.path().join("new"));
        for d in [&old, &new] {
            std::fs::create_dir_all(d.join("keep/sub")).expect("mkdir");
            std::fs::create_dir_all(d.join("gone")).expect("mkdir");
        }
        std::fs::write(old.join("keep/sub/f"), b"1").expect("write");
        std::fs::write(new.join("keep/sub/f"), b"22").expect("write");
        std::fs::write(old.join("gone/x"), b"1").expect("write");
        std::fs::remove_dir_all(new.join("gone")).expect("rm");
        std::fs::write(new.join("added"), b"").expect("write");
        let mut got: Vec<String> = changes(&new, Some(&old))
            .expect("changes")
            .iter()
            .map(ToString::to_string)
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "Add \"/added\"",
                "Delete \"/gone\"",
                "Modify \"/keep\"",
                "Modify \"/keep/sub\"",
                "Modify \"/keep/sub/f\"",
            ]
        );
        let all = changes(&new, None).expect("changes");
        assert!(all.iter().all(|c| c.kind == ChangeKind::Add));
        assert_eq!(all.len(), 4);
    }

    const fn map(container_id: u32, host_id: u32, size: u32) -> IdMap {
        IdMap {
            container_id,
            host_id,
            size,
        }
    }

    fn meta(uid: u32, gid: u32) -> Meta {
        Meta {
            mode: 0o100644,
            uid,
            gid,
            rdev: 0,
            size: 1,
            mtime: (0, 0),
            capability: None,
            user_xattrs: Vec::new(),
        }
    }

    #[test]
    fn owners_are_compared_as_each_container_sees_them() {
        let parent_uids = [map(0, 100_000, 10)];
        let parent_gids = [map(0, 200_000, 10)];
        let layer_uids = [map(0, 300_000, 10)];
        let layer_gids = [map(0, 400_000, 10)];
        let parent = TreeMappings {
            uids: &parent_uids,
            gids: &parent_gids,
        };
        let layer = TreeMappings {
            uids: &layer_uids,
            gids: &layer_gids,
        };
        // Re-owned for the layer's mappings only: container 3:3 on both sides.
        let same = (
            (&meta(100_003, 200_003), parent),
            (&meta(300_003, 400_003), layer),
        );
        assert_eq!(compared_owners(same.0, same.1), ((3, 3), (3, 3)));
        assert!(!stat_different(same.0, same.1));
        // Really re-owned: container 3:3 became 0:0.
        let chowned = (
            (&meta(100_003, 200_003), parent),
            (&meta(300_000, 400_000), layer),
        );
        assert!(stat_different(chowned.0, chowned.1));
        // The parent's owner is unmapped: its host IDs are compared with the layer's
        // container IDs, as Go does.
        let old_unmapped = ((&meta(3, 3), parent), (&meta(300_003, 400_003), layer));
        assert_eq!(
            compared_owners(old_unmapped.0, old_unmapped.1),
            ((3, 3), (3, 3))
        );
        // The layer's owner is unmapped (only its gid here): both host owners as they are.
        let new_unmapped = (
            (&meta(100_003, 200_003), parent),
            (&meta(300_003, 3), layer),
        );
        assert_eq!(
            compared_owners(new_unmapped.0, new_unmapped.1),
            ((100_003, 200_003), (300_003, 3))
        );
        assert!(stat_different(new_unmapped.0, new_unmapped.1));
        // Identity mappings compare host owners.
        let identity = TreeMappings::default();
        assert!(!stat_different(
            (&meta(7, 8), identity),
            (&meta(7, 8), identity)
        ));
        assert!(stat_different(
            (&meta(7, 8), identity),
            (&meta(7, 9), identity)
        ));
    }

    /// A parent tree owned through one mapping, a child tree with the same files re-owned for
    /// another and one file really given to the container's root: only that file changes
    /// (upstream's idmaps-create-diff-layer, at the level of two trees).
    #[test]
    fn trees_with_other_mappings_show_only_real_owner_changes() {
        use layerstore_testsupport::{Capability, require_or_skip};
        require_or_skip!(Capability::Root);
        let t = tempfile::tempdir().expect("tempdir");
        let (old, new) = (t.path().join("old"), t.path().join("new"));
        let parent_uids = [map(0, 100_000, 6)];
        let parent_gids = [map(0, 200_000, 6)];
        let layer_uids = [map(0, 300_000, 6)];
        let layer_gids = [map(0, 400_000, 6)];
        for (dir, uid, gid) in [(&old, 100_000, 200_000), (&new, 300_000, 400_000)] {
            std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
            std::os::unix::fs::lchown(dir.join("sub"), Some(uid + 4), Some(gid + 4))
                .expect("chown");
            for i in 1..=3 {
                let file = if i == 3 {
                    dir.join("sub/file3")
                } else {
                    dir.join(format!("file{i}"))
                };
                std::fs::write(&file, b"same").expect("write");
                let mtime = std::fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH);
                std::fs::File::options()
                    .write(true)
                    .open(&file)
                    .and_then(|f| f.set_times(mtime))
                    .expect("set times");
                std::os::unix::fs::lchown(&file, Some(uid + i), Some(gid + i)).expect("chown");
            }
        }
        // The one real change: file2 given to the container's root in the child.
        std::os::unix::fs::lchown(new.join("file2"), Some(300_000), Some(400_000)).expect("chown");
        let open = |dir: &Path| Root::open(dir).expect("open");
        let (old_root, new_root) = (open(&old), open(&new));
        fn tree<'a>(
            root: &'a Root,
            dir: &'a Path,
            uids: &'a [IdMap],
            gids: &'a [IdMap],
        ) -> MappedTree<'a> {
            MappedTree {
                tree: (root.fd(), dir),
                mappings: TreeMappings { uids, gids },
            }
        }
        let got: Vec<String> = changes_at(
            tree(&new_root, &new, &layer_uids, &layer_gids),
            Some(tree(&old_root, &old, &parent_uids, &parent_gids)),
        )
        .expect("changes")
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(got, ["Modify \"/file2\""]);
        // Read as host owners, every re-owned entry differs.
        let mut host: Vec<String> = changes(&new, Some(&old))
            .expect("changes")
            .iter()
            .map(ToString::to_string)
            .collect();
        host.sort();
        assert_eq!(
            host,
            [
                "Modify \"/file1\"",
                "Modify \"/file2\"",
                "Modify \"/sub\"",
                "Modify \"/sub/file3\"",
            ]
        );
    }

    fn listed(new: &Path, old: &Path) -> Vec<String> {
        changes(new, Some(old))
            .expect("changes")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Go's `sameFsTimeSpec`: a file whose mtime lost its nanoseconds (it went through a tar
    /// stream) within the same second is not a change; any other difference is.
    #[test]
    fn mtimes_without_nanoseconds_match_within_their_second() {
        let t = tempfile::tempdir().expect("tempdir");
        let (old, new) = (t.path().join("old"), t.path().join("new"));
        let set = |dir: &Path, name: &str, (secs, nanos): (u64, u32)| {
            let file = std::fs::File::create(dir.join(name)).expect("create");
            let at = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
            file.set_modified(at).expect("set the mtime");
        };
        for (name, old_time, new_time, changed) in [
            ("tar-then-touched", (1000, 0), (1000, 500_000_000), false),
            ("touched-then-tar", (1000, 500_000_000), (1000, 0), false),
            ("same", (1000, 7), (1000, 7), false),
            ("other-nanoseconds", (1000, 1), (1000, 2), true),
            ("other-second", (1000, 0), (1001, 0), true),
        ] {
            let _ = std::fs::remove_dir_all(&old);
            let _ = std::fs::remove_dir_all(&new);
            std::fs::create_dir(&old).expect("mkdir");
            std::fs::create_dir(&new).expect("mkdir");
            set(&old, name, old_time);
            set(&new, name, new_time);
            let want: Vec<String> = if changed {
                vec![format!("Modify \"/{name}\"")]
            } else {
                Vec::new()
            };
            assert_eq!(listed(&new, &old), want, "{name}");
        }
    }

    /// Go compares `user.*` xattrs (and only those, besides `security.capability`).
    #[test]
    fn user_xattrs_are_compared() {
        let t = tempfile::tempdir().expect("tempdir");
        let (old, new) = (t.path().join("old"), t.path().join("new"));
        for dir in [&old, &new] {
            std::fs::create_dir(dir).expect("mkdir");
            for name in ["plain", "tagged", "retagged", "same"] {
                let file = std::fs::File::create(dir.join(name)).expect("create");
                file.set_modified(std::time::UNIX_EPOCH)
                    .expect("set the mtime");
            }
        }
        let tag = |path: PathBuf, value: &[u8]| {
            rfs::setxattr(&path, "user.tag", value, rfs::XattrFlags::empty())
        };
        match tag(new.join("tagged"), b"1") {
            Err(rustix::io::Errno::NOTSUP) => {
                eprintln!(
                    "SKIP user_xattrs_are_compared: no user xattrs on {}",
                    t.path().display()
                );
                return;
            }
            other => other.expect("setxattr"),
        }
        for (dir, value) in [(&old, b"1"), (&new, b"2")] {
            tag(dir.join("retagged"), value).expect("setxattr");
        }
        for dir in [&old, &new] {
            tag(dir.join("same"), b"1").expect("setxattr");
        }
        assert_eq!(
            listed(&new, &old),
            ["Modify \"/retagged\"", "Modify \"/tagged\""]
        );
    }
}
