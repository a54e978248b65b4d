//! Exact snapshots of a directory tree, for tests that compare what a driver or an extraction
//! made with what GNU tar (or another driver) makes of the same tarballs.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Everything a layer promises to keep about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `dir`, `file`, `symlink`, `char`, `block`, `fifo` or `socket`.
    pub kind: &'static str,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size (0 for directories, whose size is the filesystem's business).
    pub size: u64,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Device number of device nodes.
    pub rdev: u64,
    /// Target of a symlink.
    pub link_target: Option<PathBuf>,
    /// Content of a regular file.
    pub content: Option<Vec<u8>>,
    /// Extended attributes, `security.selinux` left out (it depends on the policy).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// For the 2nd+ path of an inode: the first path (sorted order) with the same inode.
    pub hardlink_of: Option<PathBuf>,
}

/// A snapshot: every path under a root, relative to it (the root itself is ``).
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Every path under `root`, never following symlinks.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut paths = Vec::new();
    collect(root, Path::new(""), &mut paths);
    paths.sort();
    let mut first_of_inode: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut out = BTreeMap::new();
    for rel in paths {
        let full = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let md = std::fs::symlink_metadata(&full)
            .unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let hardlink_of = if !ft.is_dir() && md.nlink() > 1 {
            match first_of_inode.get(&(md.dev(), md.ino())) {
                Some(first) => Some(first.clone()),
                None => {
                    first_of_inode.insert((md.dev(), md.ino()), rel.clone());
                    None
                }
            }
        } else {
            None
        };
        let node = Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if ft.is_dir() { 0 } else { md.size() },
            mtime: (md.mtime(), md.mtime_nsec()),
            rdev: md.rdev(),
            link_target: ft
                .is_symlink()
                .then(|| std::fs::read_link(&full).expect("readlink")),
            content: ft
                .is_file()
                .then(|| std::fs::read(&full).expect("read file")),
            xattrs: xattrs_of(&full),
            hardlink_of,
        };
        out.insert(rel, node);
    }
    out
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    out.push(rel.to_path_buf());
    let dir = root.join(rel);
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return;
    }
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.expect("read_dir entry");
        let child = rel.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            collect(root, &child, out);
        } else {
            out.push(child);
        }
    }
}

fn xattrs_of(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 64 * 1024];
    let len = match rustix::fs::llistxattr(path, &mut names) {
        Ok(len) => len,
        // Filesystems without xattrs (or symlinks on some) have none to compare.
        Err(rustix::io::Errno::NOTSUP) => return BTreeMap::new(),
        Err(e) => panic!("llistxattr {}: {e}", path.display()),
    };
    names[..len]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty() && *n != b"security.selinux")
        .map(|name| {
            let name = std::ffi::OsStr::from_bytes(name);
            let mut value = vec![0u8; 64 * 1024];
            let n = rustix::fs::lgetxattr(path, name, &mut value)
                .unwrap_or_else(|e| panic!("lgetxattr {}: {e}", path.display()));
            value.truncate(n);
            (name.to_string_lossy().into_owned(), value)
        })
        .collect()
}

/// The snapshot with xattrs whose name starts with `prefix` left out (e.g. overlay's own
/// `trusted.overlay.` bookkeeping).
pub fn without_xattrs(mut snapshot: Snapshot, prefix: &str) -> Snapshot {
    for node in snapshot.values_mut() {
        node.xattrs.retain(|name, _| !name.starts_with(prefix));
    }
    snapshot
}

/// The snapshot with sub-second mtimes dropped: exported diffs carry whole seconds (as Go's).
pub fn whole_seconds(mut snapshot: Snapshot) -> Snapshot {
    for node in snapshot.values_mut() {
        node.mtime.1 = 0;
    }
    snapshot
}

/// How [`assert_same_tree`] treats the top directory, whose metadata comes from layer creation
/// rather than from content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// Compare it like any other entry.
    Compare,
    /// Compare everything but its mtime.
    IgnoreTimes,
    /// Do not compare it at all.
    Skip,
}

/// Asserts two snapshots are equal, listing every difference.
pub fn assert_same_tree(what: &str, expected: &Snapshot, actual: &Snapshot, root: Root) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        let is_root = path.as_os_str().is_empty();
        if is_root && root == Root::Skip {
            continue;
        }
        match actual.get(path) {
            None => problems.push(format!("missing {path:?}")),
            Some(got) => {
                let mut got = got.clone();
                if is_root && root == Root::IgnoreTimes {
                    got.mtime = want.mtime;
                }
                if &got != want {
                    problems.push(format!("{path:?}:\n  want {want:?}\n  got  {got:?}"));
                }
            }
        }
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            problems.push(format!("unexpected {path:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: trees differ:\n{}",
        problems.join("\n")
    );
}

/// The Go fixture tarball `name` (in `go-1.43/tars`).
pub fn fixture_tar(name: &str) -> PathBuf {
    crate::go_fixtures().join("tars").join(name)
}

/// Extracts `tarball` into `dir` with GNU tar as root would: numeric owners, modes, xattrs.
pub fn gnu_extract(tarball: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create extraction dir");
    let out = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--same-owner",
            "-xpf",
        ])
        .arg(tarball)
        .arg("-C")
        .arg(dir)
        .output()
        .expect("run GNU tar");
    assert!(
        out.status.success(),
        "tar -xpf {}: {}",
        tarball.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
