//! Helpers shared by the overlay integration tests: stores that clean up every mount they
//! made (even when a test fails), exact tree snapshots, fixtures.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use layerstore_driver::{ApplyDiffOpts, Driver, DriverConfig};
use layerstore_overlay::OverlayDriver;

/// Mount points at or below `root`, deepest first.
pub use layerstore_testsupport::scratch::mounts_under as mounts_below;

/// The mountinfo line of the mount at `target`, if mounted.
pub fn mountinfo_line(target: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .find(|line| {
            line.split(' ')
                .nth(4)
                .map(|field| {
                    PathBuf::from(std::ffi::OsStr::from_bytes(
                        &layerstore_driver::mount::unescape_mountinfo_field(field.as_bytes()),
                    ))
                })
                .as_deref()
                == Some(target)
        })
        .map(str::to_string)
}

/// A temporary graph root + run root; on drop, every mount below it is detached and the
/// directory removed (so a failing test leaves nothing mounted behind).
pub struct Scratch {
    dir: layerstore_testsupport::scratch::Scratch,
}

impl Scratch {
    pub fn new() -> Scratch {
        // Under /var/tmp, not a tmpfs /tmp: overlay upper dirs need trusted xattrs and the
        // backing filesystem matters for the status lines.
        let base = Path::new("/var/tmp");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        Scratch {
            dir: layerstore_testsupport::scratch::Scratch::with_prefix_in(
                &base,
                "layerstore-overlay-",
            ),
        }
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
