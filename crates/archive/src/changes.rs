//! The list of changes between a layer's tree and its parent's, as containers/storage computes
//! it: by comparing metadata of two trees (naive drivers), or from an overlay upper dir.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType};

use crate::error::{Error, Result};
use crate::rooted::{self, Root};

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

/// Quotes bytes as Go's `strconv.Quote` does: printable UTF-8 kept, invalid bytes as `\xNN`.
pub(crate) fn go_quote(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    if (c as u32) < 0x10000 {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    } else {
                        let _ = write!(out, "\\U{:08x}", c as u32);
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
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
}

impl Meta {
    fn of(st: &rfs::Stat) -> Self {
        Meta {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        }
    }

    fn is_dir(&self) -> bool {
        FileType::from_raw_mode(self.mode) == FileType::Directory
    }
}

/// A tree of a layer's files, built by walking it with fds (never following symlinks).
#[derive(Debug)]
struct Node {
    meta: Meta,
    capability: Option<Vec<u8>>,
    children: BTreeMap<Vec<u8>, Node>,
}

fn read_tree(top: &Path) -> Result<Node> {
    let root = Root::open(top).map_err(|e| Error::path(top, "open", e))?;
    read_tree_at(root, top)
}

fn read_tree_at(root: Root, top: &Path) -> Result<Node> {
    let fd = rooted::open_subdir(root.fd(), b".").map_err(|e| Error::path(top, "open", e))?;
    let st = rfs::fstat(&fd).map_err(|e| Error::path(top, "stat", e))?;
    let mut node = Node {
        meta: Meta::of(&st),
        capability: None,
        children: BTreeMap::new(),
    };
    fill_children(&mut node, fd.as_fd(), top.to_path_buf(), true)?;
    Ok(node)
}

fn fill_children(node: &mut Node, dir: BorrowedFd<'_>, path: PathBuf, top: bool) -> Result<()> {
    let names = rooted::list_dir(dir).map_err(|e| Error::path(&path, "readdir", e))?;
    for name in names {
        // AUFS metadata at the top of a layer is not content (Go skips `/.wh..wh.*`).
        if top && name.starts_with(b".wh..wh.") {
            continue;
        }
        let child_path = path.join(std::ffi::OsStr::from_bytes(&name));
        let Some(st) =
            rooted::lstat_at(dir, &name).map_err(|e| Error::path(&child_path, "lstat", e))?
        else {
            continue;
        };
        let meta = Meta::of(&st);
        let capability = get_xattr_at(dir, &name, "security.capability")
            .map_err(|e| Error::path(&child_path, "getxattr", e))?;
        let mut child = Node {
            meta,
            capability,
            children: BTreeMap::new(),
        };
        if child.meta.is_dir() {
            let sub =
                rooted::open_subdir(dir, &name).map_err(|e| Error::path(&child_path, "open", e))?;
            fill_children(&mut child, sub.as_fd(), child_path, false)?;
        }
        node.children.insert(name, child);
    }
    Ok(())
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

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn change(path: &[u8], kind: ChangeKind) -> Change {
    Change {
        path: PathBuf::from(std::ffi::OsString::from_vec(path.to_vec())),
        kind,
    }
}

/// Go's `FileInfo.addChanges`: `path` is the node's absolute path (`""` for the root).
fn add_changes(new: &Node, old: Option<&Node>, path: &[u8], added: bool, out: &mut Vec<Change>) {
    let size_at_entry = out.len();
    let mut added = added;
    if old.is_none() && !path.is_empty() {
        out.push(change(path, ChangeKind::Add));
        added = true;
    }
    // Deletions are only looked for below a directory that is still a directory.
    let mut old_children: BTreeMap<&[u8], &Node> = BTreeMap::new();
    if let Some(old) = old
        && new.meta.is_dir()
    {
        old_children = old.children.iter().map(|(k, v)| (&k[..], v)).collect();
    }
    for (name, new_child) in &new.children {
        let child_path = join(path, name);
        let old_child = old_children.remove(&name[..]);
        let mut child_added = false;
        if let Some(old_child) = old_child
            && (stat_different(&old_child.meta, &new_child.meta)
                || old_child.capability != new_child.capability)
        {
            out.push(change(&child_path, ChangeKind::Modify));
            child_added = true;
        }
        add_changes(new_child, old_child, &child_path, child_added, out);
    }
    for name in old_children.keys() {
        out.push(change(&join(path, name), ChangeKind::Delete));
    }
    // A directory with changes inside is itself listed (permissions must be restorable).
    if out.len() > size_at_entry && new.meta.is_dir() && !added && !path.is_empty() {
        out.insert(size_at_entry, change(path, ChangeKind::Modify));
    }
}

/// Go's `statDifferent`: size and mtime are ignored for directories.
fn stat_different(old: &Meta, new: &Meta) -> bool {
    old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || old.rdev != new.rdev
        || (!old.is_dir() && (old.mtime != new.mtime || old.size != new.size))
}

/// The changes that turn `parent`'s tree into `layer`'s (everything is an Add without a parent),
/// computed as containers/storage's naive drivers do (`ChangesDirs`): mode, owner, device number,
/// size, mtime (not for directories) and `security.capability` are compared.
pub fn changes(layer: &Path, parent: Option<&Path>) -> Result<Vec<Change>> {
    let new = read_tree(layer)?;
    let old = parent.map(read_tree).transpose()?;
    changes_of(new, old)
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
/// path again).
pub fn changes_at(layer: OpenTree<'_>, parent: Option<OpenTree<'_>>) -> Result<Vec<Change>> {
    let new = read_tree_at(root_of(layer)?, layer.1)?;
    let old = parent
        .map(|parent| read_tree_at(root_of(parent)?, parent.1))
        .transpose()?;
    changes_of(new, old)
}

fn changes_of(new: Node, old: Option<Node>) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    match &old {
        Some(old) => add_changes(&new, Some(old), b"", false, &mut out),
        None => {
            for (name, child) in &new.children {
                add_changes(child, None, &join(b"", name), false, &mut out);
            }
        }
    }
    Ok(out)
}

/// A lower layer looked up during [`overlay_changes`].
struct Lower {
    root: Root,
}

impl Lower {
    /// The lower's entry at `components`, unless it is missing or whited out there.
    fn lookup(&self, components: &[&[u8]]) -> Option<rfs::Stat> {
        let (last, parent) = components.split_last()?;
        let dir: OwnedFd = self.root.open_dir(parent).ok()?;
        rooted::lstat_at(dir.as_fd(), last).ok().flatten()
    }
}

/// 0:0 character device: an overlay whiteout.
fn is_whiteout(st: &rfs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// The changes recorded in an overlay upper dir (`upper`) over its lower layers (`lowers`,
/// nearest first), as the overlay driver's native `Changes` computes them: a 0:0 character device
/// is a Delete; an opaque directory that exists below is a Delete of the directory (its new
/// children follow as Adds); anything else is an Add, or a Modify when a lower has the path
/// (directories equal in size, mode and mtime to the lower's are not listed).
pub fn overlay_changes(upper: &Path, lowers: &[&Path]) -> Result<Vec<Change>> {
    let lowers = lowers
        .iter()
        .map(|p| {
            Ok(Lower {
                root: Root::open(p).map_err(|e| Error::path(*p, "open", e))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let root = Root::open(upper).map_err(|e| Error::path(upper, "open", e))?;
    overlay_changes_of(root, upper, lowers)
}

/// [`overlay_changes`] of directories already open.
pub fn overlay_changes_at(upper: OpenTree<'_>, lowers: &[OpenTree<'_>]) -> Result<Vec<Change>> {
    let lowers = lowers
        .iter()
        .map(|&lower| {
            Ok(Lower {
                root: root_of(lower)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    overlay_changes_of(root_of(upper)?, upper.1, lowers)
}

fn overlay_changes_of(root: Root, upper: &Path, lowers: Vec<Lower>) -> Result<Vec<Change>> {
    let top = rooted::open_subdir(root.fd(), b".").map_err(|e| Error::path(upper, "open", e))?;
    let mut walk = OverlayWalk {
        lowers,
        changes: Vec::new(),
        changed_dirs: HashSet::new(),
    };
    walk.dir(top.as_fd(), &mut Vec::new(), upper)?;
    Ok(walk.changes)
}

struct OverlayWalk {
    lowers: Vec<Lower>,
    changes: Vec<Change>,
    changed_dirs: HashSet<Vec<u8>>,
}

impl OverlayWalk {
    fn find_in_lowers(&self, components: &[&[u8]]) -> Option<rfs::Stat> {
        for lower in &self.lowers {
            if let Some(st) = lower.lookup(components) {
                // A whiteout hides the path from every layer below it.
                return (!is_whiteout(&st)).then_some(st);
            }
        }
        None
    }

    fn dir(
        &mut self,
        dir: BorrowedFd<'_>,
        components: &mut Vec<Vec<u8>>,
        upper: &Path,
    ) -> Result<()> {
        let mut names = rooted::list_dir(dir).map_err(|e| Error::path(upper, "readdir", e))?;
        names.sort();
        for name in names {
            components.push(name);
            let result = self.entry(dir, components, upper);
            components.pop();
            result?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        components: &mut Vec<Vec<u8>>,
        upper: &Path,
    ) -> Result<()> {
        let Some(name) = components.last().cloned() else {
            return Ok(());
        };
        let path: Vec<u8> = components
            .iter()
            .flat_map(|c| [&b"/"[..], c].concat())
            .collect();
        let shown = || upper.join(std::ffi::OsStr::from_bytes(&path[1..]));
        if components.len() == 1 && name.starts_with(b".wh..wh.") {
            return Ok(());
        }
        let Some(st) =
            rooted::lstat_at(dir, &name).map_err(|e| Error::path(shown(), "lstat", e))?
        else {
            return Ok(());
        };
        let comps: Vec<&[u8]> = components.iter().map(|c| &c[..]).collect();
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        let mut deleted = is_whiteout(&st);
        if is_dir && !deleted {
            let opaque = get_xattr_at(dir, &name, "trusted.overlay.opaque")
                .map_err(|e| Error::path(shown(), "getxattr", e))?;
            deleted = opaque.as_deref() == Some(b"y") && self.find_in_lowers(&comps).is_some();
        }
        let mut record = true;
        let kind = if deleted {
            ChangeKind::Delete
        } else {
            match self.find_in_lowers(&comps) {
                None => ChangeKind::Add,
                Some(lower) => {
                    let lower_dir = FileType::from_raw_mode(lower.st_mode) == FileType::Directory;
                    if is_dir
                        && lower_dir
                        && lower.st_size == st.st_size
                        && lower.st_mode == st.st_mode
                        && (lower.st_mtime, lower.st_mtime_nsec) == (st.st_mtime, st.st_mtime_nsec)
                    {
                        record = false;
                    }
                    ChangeKind::Modify
                }
            }
        };
        if record {
            if is_dir {
                self.changed_dirs.insert(path.clone());
            }
            if kind != ChangeKind::Modify {
                let parent = &path[..path.iter().rposition(|&b| b == b'/').unwrap_or(0)];
                if !parent.is_empty() && self.changed_dirs.insert(parent.to_vec()) {
                    self.changes.push(change(parent, ChangeKind::Modify));
                }
            }
            self.changes.push(change(&path, kind));
        }
        if is_dir {
            let sub =
                rooted::open_subdir(dir, &name).map_err(|e| Error::path(shown(), "open", e))?;
            self.dir(sub.as_fd(), components, upper)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote(b"/etc/passwd"), "\"/etc/passwd\"");
        assert_eq!(go_quote(b"/a\"b\\c\n"), "\"/a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote(b"/bad\xff\xfename"), "\"/bad\\xff\\xfename\"");
        assert_eq!(go_quote("/ünï-文件".as_bytes()), "\"/ünï-文件\"");
        assert_eq!(go_quote(b"\x01"), "\"\\x01\"");
        let c = Change {
            path: "/usr/bin".into(),
            kind: ChangeKind::Delete,
        };
        assert_eq!(c.to_string(), "Delete \"/usr/bin\"");
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
}
