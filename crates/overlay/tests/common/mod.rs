//! Helpers shared by the overlay integration tests: stores that clean up every mount they
//! made (even when a test fails), exact tree snapshots, fixtures.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use layerstore_driver::{ApplyDiffOpts, Driver, DriverConfig, tree, xattr};
use layerstore_overlay::OverlayDriver;

/// Mount points at or below `root`, deepest first (from `/proc/self/mountinfo`).
pub fn mounts_below(root: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let code = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok());
            if let Some(c) = code {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The mountinfo line of the mount at `target`, if mounted.
pub fn mountinfo_line(target: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .find(|line| line.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(target))
        .map(str::to_string)
}

/// Detaches every mount below `root`, deepest first.
pub fn unmount_all_below(root: &Path) {
    for _ in 0..3 {
        let left = mounts_below(root);
        if left.is_empty() {
            return;
        }
        for target in left {
            let _ = rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// A temporary graph root + run root; on drop, every mount below it is detached and the
/// directory removed (so a failing test leaves nothing mounted behind).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        // Under /var/tmp, not a tmpfs /tmp: overlay upper dirs need trusted xattrs and the
        // backing filesystem matters for the status lines.
        let base = Path::new("/var/tmp");
        let dir = tempfile::Builder::new()
            .prefix("layerstore-overlay-")
            .tempdir_in(if base.is_dir() {
                base
            } else {
                Path::new("/tmp")
            })
            .unwrap();
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn graph_root(&self) -> PathBuf {
        self.path().join("graph")
    }

    pub fn run_root(&self) -> PathBuf {
        self.path().join("run")
    }

    pub fn config(&self, options: &[&str]) -> DriverConfig {
        let mut config = DriverConfig::new(self.graph_root(), self.run_root());
        config.options = options.iter().map(|s| s.to_string()).collect();
        config
    }

    /// Our overlay driver on this scratch root, cleaned up when the guard drops.
    pub fn overlay(&self, options: &[&str]) -> DriverGuard {
        DriverGuard(OverlayDriver::new(&self.config(options)).unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_all_below(self.dir.path());
    }
}

/// An overlay driver whose `cleanup` runs on drop.
pub struct DriverGuard(pub OverlayDriver);

impl std::ops::Deref for DriverGuard {
    type Target = OverlayDriver;
    fn deref(&self) -> &OverlayDriver {
        &self.0
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        let _ = self.0.cleanup();
    }
}

/// The fixture tarball `name` (in `go-1.43/tars`).
pub fn fixture_tar(name: &str) -> PathBuf {
    layerstore_testsupport::go_fixtures()
        .join("tars")
        .join(name)
}

/// Applies the fixture tarball `name` to layer `id` of `driver`, returning the tar-split
/// entries recorded.
pub fn apply_fixture(
    driver: &dyn Driver,
    id: &str,
    parent: Option<&str>,
    name: &str,
) -> Vec<layerstore_tarsplit::Entry> {
    let mut file = std::fs::File::open(fixture_tar(name)).unwrap();
    let mut entries: Vec<layerstore_tarsplit::Entry> = Vec::new();
    let mut opts = ApplyDiffOpts::new(&mut file);
    opts.tar_split = Some(&mut entries);
    driver.apply_diff(id, parent, opts).unwrap();
    entries
}

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
        // SELinux labels depend on the policy; overlay's own attributes are its bookkeeping.
        .filter(|n| {
            let n = n.as_bytes();
            n != b"security.selinux" && !n.starts_with(b"trusted.overlay.")
        })
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

/// Asserts two snapshots are equal, listing every difference; the top directories' own
/// metadata (set at layer creation, not by content) is not compared.
pub fn assert_same_tree(
    what: &str,
    expected: &BTreeMap<PathBuf, Node>,
    actual: &BTreeMap<PathBuf, Node>,
) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        if path.as_os_str().is_empty() {
            continue;
        }
        match actual.get(path) {
            None => problems.push(format!("missing {path:?}")),
            Some(got) if got != want => {
                problems.push(format!("{path:?}:\n  want {want:?}\n  got  {got:?}"))
            }
            Some(_) => {}
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

/// The changes of `changes-child-overlay.txt` as a sorted list of lines.
pub fn fixture_child_changes() -> Vec<String> {
    let text = std::fs::read_to_string(
        layerstore_testsupport::go_fixtures().join("changes-child-overlay.txt"),
    )
    .unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Changes as the Go tool prints them, sorted.
pub fn change_lines(changes: &[layerstore_driver::Change]) -> Vec<String> {
    let mut lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    lines.sort();
    lines
}
