//! Helpers shared by the btrfs integration tests: a scratch btrfs with the driver on it,
//! exact tree snapshots (as the vfs tests take them), and btrfs-progs inspection.

use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_btrfs::BtrfsDriver;
use layerstore_driver::{ApplyDiffOpts, Driver, DriverConfig};
use layerstore_tarsplit::Entry;
use layerstore_testsupport::BtrfsLoop;

#[allow(unused_imports)] // each test file uses its own subset
pub use layerstore_testsupport::tree::{Node, fixture_tar, snapshot, whole_seconds};

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
