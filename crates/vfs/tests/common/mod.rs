//! Helpers shared by the vfs integration tests: exact tree snapshots and GNU tar.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_driver::{tree, xattr};

/// Everything we promise to keep about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub rdev: u64,
    pub link_target: Option<PathBuf>,
    pub content: Option<Vec<u8>>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// For the 2nd+ path of an inode: the first path (sorted order) with the same inode.
    pub hardlink_of: Option<PathBuf>,
}

fn xattrs_of(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let parent = tree::open_dir(path.parent().unwrap()).unwrap();
    let name = CString::new(path.file_name().unwrap().as_bytes()).unwrap();
    let node = xattr::open_node_at(&parent, &name).unwrap();
    let target = xattr::XattrTarget::proc(node.as_fd());
    target
        .list()
        .unwrap()
        .into_iter()
        // SELinux labels depend on the policy, not on the copy.
        .filter(|n| n.as_bytes() != b"security.selinux")
        .map(|n| {
            let value = target.get(&n).unwrap().unwrap_or_default();
            (n.to_string_lossy().into_owned(), value)
        })
        .collect()
}

/// Every path under `root` (relative; the root itself is ``), never following symlinks.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
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
        let md = std::fs::symlink_metadata(&full).unwrap();
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
        out.insert(
            rel.clone(),
            Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: if ft.is_dir() { 0 } else { md.size() },
                mtime: (md.mtime(), md.mtime_nsec()),
                rdev: md.rdev(),
                link_target: ft.is_symlink().then(|| std::fs::read_link(&full).unwrap()),
                content: ft.is_file().then(|| std::fs::read(&full).unwrap()),
                xattrs: xattrs_of(&full),
                hardlink_of,
            },
        );
    }
    out
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    out.push(rel.to_path_buf());
    let dir = root.join(rel);
    if !std::fs::symlink_metadata(&dir).unwrap().is_dir() {
        return;
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let child = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            collect(root, &child, out);
        } else {
            out.push(child);
        }
    }
}

/// The snapshot with sub-second mtimes dropped: exported diffs carry whole seconds (as Go's).
pub fn whole_seconds(mut snapshot: BTreeMap<PathBuf, Node>) -> BTreeMap<PathBuf, Node> {
    for node in snapshot.values_mut() {
        node.mtime.1 = 0;
    }
    snapshot
}

/// Asserts two snapshots are equal, listing every difference. `ignore_root_times`: the top
/// directories' mtimes (set at layer creation, not by content) are not compared.
pub fn assert_same_tree(
    what: &str,
    expected: &BTreeMap<PathBuf, Node>,
    actual: &BTreeMap<PathBuf, Node>,
    ignore_root_times: bool,
) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => problems.push(format!("missing {path:?}")),
            Some(got) => {
                let mut got = got.clone();
                if ignore_root_times && path.as_os_str().is_empty() {
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

/// The fixture tarball `name` (in `go-1.43/tars`).
pub fn fixture_tar(name: &str) -> PathBuf {
    layerstore_testsupport::go_fixtures()
        .join("tars")
        .join(name)
}

/// Runs GNU tar with `args`, panicking with its stderr on failure.
pub fn gnu_tar(args: &[&std::ffi::OsStr]) {
    let out = Command::new("tar").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Extracts `tarball` into `dir` as root would, keeping owners, modes and xattrs.
pub fn gnu_extract(tarball: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    gnu_tar(&[
        "--xattrs".as_ref(),
        "--xattrs-include=*".as_ref(),
        "--numeric-owner".as_ref(),
        "--same-owner".as_ref(),
        "-xpf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        dir.as_os_str(),
    ]);
}

/// Applies a layer tarball onto `dir` by hand, the way the layer semantics say: whiteouts
/// (`.wh.X` deletes X, `.wh..wh..opq` empties the directory of lower content) first, then
/// GNU tar extracts every other entry.
pub fn apply_by_hand(tarball: &Path, dir: &Path) {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(tarball)
        .output()
        .unwrap();
    assert!(out.status.success());
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let path = Path::new(line);
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let parent = dir.join(path.parent().unwrap_or(Path::new("")));
        if name == ".wh..wh..opq" {
            for entry in std::fs::read_dir(&parent).unwrap() {
                let p = entry.unwrap().path();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    std::fs::remove_dir_all(&p).unwrap();
                } else {
                    std::fs::remove_file(&p).unwrap();
                }
            }
        } else if let Some(victim) = name.strip_prefix(".wh.") {
            let p = parent.join(victim);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
                Ok(_) => std::fs::remove_file(&p).unwrap(),
                Err(_) => {}
            }
        }
    }
    gnu_tar(&[
        "--xattrs".as_ref(),
        "--xattrs-include=*".as_ref(),
        "--numeric-owner".as_ref(),
        "--same-owner".as_ref(),
        "--exclude=.wh.*".as_ref(),
        "-xpf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        dir.as_os_str(),
    ]);
}

/// Unpacks the Go tool's vfs store into `into`; returns the graph root (`into/root-vfs`).
pub fn unpack_go_store(into: &Path) -> PathBuf {
    let tarball = layerstore_testsupport::go_fixtures().join("store-vfs.tar.gz");
    std::fs::create_dir_all(into).unwrap();
    gnu_tar(&[
        "--xattrs".as_ref(),
        "--xattrs-include=*".as_ref(),
        "--numeric-owner".as_ref(),
        "-xzpf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        into.as_os_str(),
    ]);
    into.join("root-vfs")
}

/// `layers-vfs.txt`: tarball name → layer ID, for the lines `<name> <id> ok`/`<id> parent …`.
pub fn go_layer_ids() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(layerstore_testsupport::go_fixtures().join("layers-vfs.txt"))
            .unwrap();
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let id = words.next()?;
            (id.len() == 64 || id.starts_with("fixture-id-"))
                .then(|| (name.to_string(), id.to_string()))
        })
        .collect()
}
