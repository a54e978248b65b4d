//! Helpers shared by the btrfs integration tests: a scratch btrfs with the driver on it,
//! exact tree snapshots (as the vfs tests take them), and btrfs-progs inspection.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_btrfs::BtrfsDriver;
use layerstore_driver::{ApplyDiffOpts, Driver, DriverConfig, tree, xattr};
use layerstore_tarsplit::Entry;
use layerstore_testsupport::BtrfsLoop;

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

/// A scratch btrfs with a graph root on it and our driver opened there. Dropping it undoes the
/// driver's bind mount (and any the Go tool left) before the filesystem goes.
pub struct Scratch {
    pub driver: BtrfsDriver,
    pub graph_root: PathBuf,
    pub run_root: PathBuf,
    // Dropped last: the filesystem itself.
    pub fs: BtrfsLoop,
}

impl Scratch {
    /// A `size_mib` MiB btrfs with `<mnt>/graph` as graph root and `<mnt>/run` as run root.
    pub fn new(size_mib: u64) -> Scratch {
        Scratch::with_options(size_mib, &[])
    }

    /// Like [`Scratch::new`], with driver options.
    pub fn with_options(size_mib: u64, options: &[&str]) -> Scratch {
        let fs = BtrfsLoop::new(size_mib).expect("make a scratch btrfs");
        let graph_root = fs.path().join("graph");
        let run_root = fs.path().join("run");
        let mut config = DriverConfig::new(&graph_root, &run_root);
        config.options = options.iter().map(|s| s.to_string()).collect();
        let driver = BtrfsDriver::new(&config).expect("open the btrfs driver");
        Scratch {
            driver,
            graph_root,
            run_root,
            fs,
        }
    }

    pub fn config(&self) -> DriverConfig {
        DriverConfig::new(&self.graph_root, &self.run_root)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The home may be bind-mounted more than once (the Go tool's mount over ours).
        for _ in 0..4 {
            let home = self.graph_root.join("btrfs");
            if rustix::mount::unmount(&home, rustix::mount::UnmountFlags::DETACH).is_err() {
                break;
            }
        }
        let _ = self.driver.cleanup();
    }
}

/// Whether `path` is a mount point according to /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let wanted = path.to_str().unwrap();
    info.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(wanted))
}

/// Applies `tarball` into layer `id` and returns the tar-split records.
pub fn apply(driver: &dyn Driver, id: &str, parent: Option<&str>, tarball: &[u8]) -> Vec<Entry> {
    let mut input = tarball;
    let mut records = Vec::new();
    let mut opts = ApplyDiffOpts::new(&mut input);
    opts.tar_split = Some(&mut records);
    let report = driver.apply_diff(id, parent, opts).unwrap();
    assert_eq!(report.uncompressed_size, tarball.len() as u64, "{id}");
    records
}

/// The tarball assembled from `records` and the layer's files through its diff getter.
pub fn assemble(driver: &dyn Driver, id: &str, records: &[Entry]) -> Vec<u8> {
    let getter = driver
        .diff_getter(id)
        .unwrap()
        .expect("btrfs has a diff getter");
    let mut out = Vec::new();
    layerstore_tarsplit::assemble(records.iter().cloned().map(Ok), &*getter, &mut out).unwrap();
    out
}

/// Runs `cmd`, panicking with its stderr on failure; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One line of `btrfs subvolume list -q -u`.
#[derive(Debug, Clone)]
pub struct SubvolumeLine {
    pub id: u64,
    pub parent_uuid: Option<String>,
    pub uuid: String,
    pub path: String,
}

/// `btrfs subvolume list -q -u <mountpoint>` (btrfs-progs, inspection only).
pub fn list_subvolumes(mountpoint: &Path) -> Vec<SubvolumeLine> {
    let out = run(Command::new("btrfs")
        .args(["subvolume", "list", "-q", "-u"])
        .arg(mountpoint));
    out.lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                let at = words.iter().position(|w| *w == key).unwrap();
                words[at + 1].to_string()
            };
            let parent_uuid = after("parent_uuid");
            SubvolumeLine {
                id: after("ID").parse().unwrap(),
                parent_uuid: (parent_uuid != "-").then_some(parent_uuid),
                uuid: after("uuid"),
                path: after("path"),
            }
        })
        .collect()
}

/// The subvolume line whose path ends with `btrfs/subvolumes/<id>`.
pub fn subvolume_of<'a>(lines: &'a [SubvolumeLine], id: &str) -> &'a SubvolumeLine {
    let suffix = format!("btrfs/subvolumes/{id}");
    lines
        .iter()
        .find(|l| l.path.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no subvolume for layer {id} in {lines:#?}"))
}

/// GNU tar of the contents of `dir` (POSIX format, numeric owners, xattrs).
pub fn tar_of(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--format=posix",
            "--numeric-owner",
            "-cf",
            "-",
            "-C",
        ])
        .arg(dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A third layer for the chain on basic.tar + child-whiteouts.tar: deletes a file and a whole
/// directory of basic's, makes `etc` opaque again with new content, adds a file and a symlink.
pub fn third_layer_tarball(work: &Path) -> Vec<u8> {
    let stage = work.join("stage-third");
    let write = |rel: &str, content: &str| {
        let path = stage.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    };
    write("etc/.wh..wh..opq", "");
    write("etc/only-in-third", "third\n");
    write(".wh.empty", "");
    write("added/by/third", "grandchild content\n");
    std::os::unix::fs::symlink("../etc/only-in-third", stage.join("added/link")).unwrap();
    tar_of(&stage)
}

/// Reads a fixture tarball.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_tar(name)).unwrap()
}
