//! Helpers shared by the overlay integration tests: stores that clean up every mount they
//! made (even when a test fails), exact tree snapshots, fixtures.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use layerstore_driver::{ApplyDiffOpts, Driver, DriverConfig};
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

pub use layerstore_testsupport::tree::fixture_tar;

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

pub use layerstore_testsupport::tree::Node;

/// Every path under `root`, without overlay's own `trusted.overlay.*` bookkeeping xattrs.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    use layerstore_testsupport::tree;
    tree::without_xattrs(tree::snapshot(root), "trusted.overlay.")
}

/// Asserts two snapshots are equal, listing every difference; the top directories' own
/// metadata (set at layer creation, not by content) is not compared.
pub fn assert_same_tree(
    what: &str,
    expected: &BTreeMap<PathBuf, Node>,
    actual: &BTreeMap<PathBuf, Node>,
) {
    use layerstore_testsupport::tree::{Root, assert_same_tree};
    assert_same_tree(what, expected, actual, Root::Skip);
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
