//! Helpers for layerstore's tests: where the Go-written fixtures are (in this repository), and the rule for tests that
//! need a capability this machine may lack (root, overlay, btrfs, loop devices, the Go tool).
//!
//! The rule (DEVELOPERS.md): such a test *skips with a printed reason* when the capability is
//! missing, except when `LAYERSTORE_REQUIRE_PRIVILEGED=1` is set (CI sets it), where a missing
//! capability fails the test instead.
//!
//! ```
//! use layerstore_testsupport::{Capability, require_or_skip};
//! fn my_test() {
//!     require_or_skip!(Capability::Root); // skipped here, reason printed, unless required
//!     // ... privileged work ...
//! }
//! # my_test();
//! ```
//!
//! Every skip goes through one check ([`available`], and [`satisfied`] for a condition only the
//! test can find out), which names the running test: `SKIP <module>::<test>: <reason>`.
//!
//! Besides: the Go tool on a store ([`go`]), the kernel's view of POSIX locks ([`locks`]), a
//! test binary re-run as a helper process ([`helper`]), waiting for a child with a bound
//! ([`process`]), scratch directories that leave no mounts behind ([`scratch`]), and tree
//! snapshots ([`tree`]).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod go;
pub mod helper;
pub mod locks;
pub mod process;
pub mod registry;
pub mod scratch;
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
    /// `skopeo` runs (it writes zstd:chunked images).
    Skopeo,
    /// `script` (util-linux) runs: a pseudo-terminal for a command.
    Script,
    /// `setpriv` (util-linux) runs: a command as another user.
    Setpriv,
    /// `fuse-overlayfs` is installed and `/dev/fuse` exists.
    FuseOverlayfs,
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
            Capability::Skopeo => (!runs("skopeo"))
                .then(|| "skopeo is not installed (apt-get install skopeo)".to_string()),
            Capability::Script => {
                (!runs("script")).then(|| "`script` (util-linux) is not installed".to_string())
            }
            Capability::Setpriv => {
                (!runs("setpriv")).then(|| "`setpriv` (util-linux) is not installed".to_string())
            }
            Capability::FuseOverlayfs => {
                if fuse_overlayfs().is_none() {
                    Some("fuse-overlayfs is not installed".to_string())
                } else if !Path::new("/dev/fuse").exists() {
                    Some("/dev/fuse does not exist".to_string())
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

/// The name of the running test as the test harness knows it (`module::test`): the name it
/// gives the test's thread. `None` on a thread that is not a test's.
pub fn current_test() -> Option<String> {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_string)
}

/// The one capability check: `true` when every capability in `caps` is present. Otherwise
/// prints `SKIP <test>: <reason>` (the running test, see [`current_test`]) and returns
/// `false`, or panics when [`privileged_required`] says a skip is not allowed.
pub fn available(caps: &[Capability]) -> bool {
    caps.iter()
        .all(|&cap| satisfied_or_skip(cap.missing_reason(), None))
}

/// [`available`] for a condition only the test can find out (a kernel feature the driver
/// probes, a part of a test that needs more than the rest): `true` when `condition` holds,
/// else the same skip, or failure under `LAYERSTORE_REQUIRE_PRIVILEGED=1`, naming `missing`.
pub fn satisfied(condition: bool, missing: &str) -> bool {
    satisfied_or_skip((!condition).then(|| missing.to_string()), None)
}

/// [`available`] for one capability; `what` names the part of the test it gates, when the
/// running test cannot be told from its thread.
pub fn require(cap: Capability, what: &str) -> bool {
    satisfied_or_skip(cap.missing_reason(), Some(what))
}

/// [`require`] for several capabilities at once.
pub fn require_all(caps: &[Capability], what: &str) -> bool {
    caps.iter()
        .all(|&cap| satisfied_or_skip(cap.missing_reason(), Some(what)))
}

fn satisfied_or_skip(missing: Option<String>, what: Option<&str>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    let test = current_test()
        .or_else(|| what.map(str::to_string))
        .unwrap_or_else(|| "(not a test thread)".to_string());
    if privileged_required() {
        panic!("{test}: LAYERSTORE_REQUIRE_PRIVILEGED=1 but {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

/// Skips (returns from) the calling test unless every capability is present ([`available`]).
#[macro_export]
macro_rules! require_or_skip {
    ($($cap:expr),+ $(,)?) => {
        if !$crate::available(&[$($cap),+]) {
            return;
        }
    };
}

/// `len` pseudo-random bytes (xorshift64) that no compressor shrinks, the same for the same
/// `seed` and different between seeds: layer contents that span many pipe chunks and
/// compressed blocks.
pub fn incompressible(seed: u64, len: usize) -> Vec<u8> {
    // Odd, so that no seed (0 included) leaves xorshift stuck at zero.
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
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

/// Whether `program --version` runs and succeeds.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The `fuse-overlayfs` program, if installed.
pub fn fuse_overlayfs() -> Option<PathBuf> {
    ["/usr/bin/fuse-overlayfs", "/usr/local/bin/fuse-overlayfs"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_bytes_are_reproducible_per_seed_and_do_not_compress() {
        assert_eq!(incompressible(3, 4096), incompressible(3, 4096));
        assert_ne!(incompressible(3, 4096), incompressible(4, 4096));
        assert!(incompressible(0, 4096).iter().any(|&b| b != 0));
        let data = incompressible(1, 1 << 16);
        let mut distinct = [false; 256];
        for &b in &data {
            distinct[usize::from(b)] = true;
        }
        assert!(
            distinct.iter().all(|&seen| seen),
            "every byte value appears"
        );
    }

    #[test]
    fn the_running_test_is_named_after_its_thread() {
        assert_eq!(
            current_test().as_deref(),
            Some("tests::the_running_test_is_named_after_its_thread")
        );
        let other = std::thread::spawn(current_test).join().unwrap();
        assert_eq!(other, None, "an unnamed thread is not a test's");
    }

    #[test]
    fn a_condition_that_holds_is_no_skip() {
        assert!(satisfied(true, "never printed"));
        assert!(available(&[]));
    }
}
