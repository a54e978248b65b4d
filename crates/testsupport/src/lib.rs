//! Helpers for layerstore's tests: where the Go-written fixtures are (in this repository), and the rule for tests that
//! need a capability this machine may lack (root, overlay, btrfs, loop devices, the Go tool).
//!
//! The rule (DEVELOPERS.md): such a test *skips with a printed reason* when the capability is
//! missing, except when `LAYERSTORE_REQUIRE_PRIVILEGED=1` is set (CI sets it), where a missing
//! capability fails the test instead.
//!
//! ```
//! use layerstore_testsupport::{require, Capability};
//! fn my_test() {
//!     if !require(Capability::Root, "my_test") {
//!         return; // skipped, reason printed
//!     }
//!     // ... privileged work ...
//! }
//! # my_test();
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod registry;
pub mod tree;

/// Something a test may need that not every machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Effective UID 0.
    Root,
    /// The Go `containers-storage` tool on `PATH` (Debian package `containers-storage`).
    GoTool,
    /// The kernel offers `overlay` (listed in /proc/filesystems) and we are root.
    Overlay,
    /// The kernel offers `btrfs`, `mkfs.btrfs` exists, we are root and can use loop devices.
    Btrfs,
    /// GNU tar on `PATH`.
    GnuTar,
    /// A local test registry can run: `docker-registry` (Debian package `docker-registry`),
    /// `skopeo` and `openssl` on `PATH` (see [`registry`]).
    Registry,
    /// `podman` on `PATH` and root (tests compare with what a real `podman pull` writes).
    Podman,
}

impl Capability {
    /// Why this capability is missing here, or `None` when it is present.
    pub fn missing_reason(self) -> Option<String> {
        let root = rustix::process::geteuid().is_root();
        match self {
            Capability::Root => (!root).then(|| "not running as root".to_string()),
            Capability::GoTool => go_tool()
                .is_none()
                .then(|| "the Go `containers-storage` tool is not installed".to_string()),
            Capability::GnuTar => (!on_path("tar")).then(|| "GNU tar is not installed".to_string()),
            Capability::Podman => {
                if !root {
                    Some("podman tests need root".to_string())
                } else if !on_path("podman") {
                    Some("podman is not installed".to_string())
                } else {
                    None
                }
            }
            Capability::Registry => ["docker-registry", "skopeo", "openssl"]
                .into_iter()
                .find(|tool| !on_path(tool))
                .map(|tool| format!("{tool} is not installed (the test registry needs it)")),
            Capability::Overlay => {
                if !root {
                    Some("overlay tests need root".to_string())
                } else if !kernel_has_filesystem("overlay") {
                    Some("the kernel does not offer overlay".to_string())
                } else {
                    None
                }
            }
            Capability::Btrfs => {
                if !root {
                    Some("btrfs tests need root".to_string())
                } else if !on_path("mkfs.btrfs") {
                    Some("mkfs.btrfs (btrfs-progs) is not installed".to_string())
                } else if !Path::new("/dev/loop-control").exists() {
                    Some("no loop devices (/dev/loop-control missing)".to_string())
                } else {
                    None
                }
            }
        }
    }
}

/// Whether `LAYERSTORE_REQUIRE_PRIVILEGED=1`: missing capabilities fail instead of skipping.
pub fn privileged_required() -> bool {
    std::env::var("LAYERSTORE_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Returns `true` when `cap` is present. Otherwise prints `SKIP <test>: <reason>` and returns
/// `false`, or panics when [`privileged_required`] says a skip is not allowed.
pub fn require(cap: Capability, test: &str) -> bool {
    match cap.missing_reason() {
        None => true,
        Some(reason) if privileged_required() => {
            panic!("{test}: LAYERSTORE_REQUIRE_PRIVILEGED=1 but {reason}")
        }
        Some(reason) => {
            eprintln!("SKIP {test}: {reason}");
            false
        }
    }
}

/// [`require`] for several capabilities at once.
pub fn require_all(caps: &[Capability], test: &str) -> bool {
    caps.iter().all(|&c| require(c, test))
}

/// Skips (returns from) the calling test unless every capability is present.
#[macro_export]
macro_rules! require_or_skip {
    ($($cap:expr),+ $(,)?) => {
        if !$crate::require_all(&[$($cap),+], module_path!()) {
            return;
        }
    };
}

/// `tests/fixtures/go-1.43` of this repository: data written by the Go tool 1.43, kept in the
/// repository (made again by `cargo xtask fixtures`).
pub fn go_fixtures() -> PathBuf {
    workspace_root()
        .join("tests")
        .join("fixtures")
        .join("go-1.43")
}

/// The path of the Go `containers-storage` binary, if installed.
pub fn go_tool() -> Option<PathBuf> {
    find_on_path("containers-storage")
}

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testsupport has a grandparent")
        .to_path_buf()
}

fn on_path(name: &str) -> bool {
    find_on_path(name).is_some()
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn kernel_has_filesystem(fs: &str) -> bool {
    if std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().last() == Some(fs)))
    {
        return true;
    }
    // The module may just not be loaded yet.
    Command::new("modprobe")
        .arg(fs)
        .status()
        .is_ok_and(|s| s.success())
        && std::fs::read_to_string("/proc/filesystems")
            .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().last() == Some(fs)))
}

/// A btrfs filesystem on a sparse loop file, mounted for the life of this value.
///
/// Made with `mkfs.btrfs` (test-time only) and the kernel's loop driver through `mount -o loop`.
#[derive(Debug)]
pub struct BtrfsLoop {
    dir: PathBuf,
    mountpoint: PathBuf,
}

impl BtrfsLoop {
    /// Makes a `size_mib` MiB btrfs image in a fresh temporary directory and mounts it.
    pub fn new(size_mib: u64) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "layerstore-btrfs-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir)?;
        let image = dir.join("image");
        let mountpoint = dir.join("mnt");
        std::fs::create_dir_all(&mountpoint)?;
        let f = std::fs::File::create(&image)?;
        f.set_len(size_mib * 1024 * 1024)?;
        drop(f);
        run(
            Command::new(find_on_path("mkfs.btrfs").unwrap_or("mkfs.btrfs".into()))
                .arg("-q")
                .arg(&image),
        )?;
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(&mountpoint))?;
        Ok(BtrfsLoop { dir, mountpoint })
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for BtrfsLoop {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn run(cmd: &mut Command) -> std::io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
