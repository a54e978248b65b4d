//! What the kernel and the backing filesystem offer, probed as Go probes it and cached in the
//! same `<runroot>/overlay/<feature>-true|false` files, so either tool reads the other's
//! answers.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use layerstore_archive::whiteout::OVERLAY_OPAQUE_XATTR as OPAQUE_XATTR;
use layerstore_driver::tree;

use crate::mount;

/// `trusted.overlay.metacopy`: set on an upper file whose data is still in a lower layer.
pub const METACOPY_XATTR: &str = "trusted.overlay.metacopy";
const REDIRECT_XATTR: &str = "trusted.overlay.redirect";

/// The name Go gives a statfs magic (`graphdriver.FsNames`), `<unknown>` otherwise.
pub fn backing_fs_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "extfs",
        0x9123683E => "btrfs",
        0x58465342 => "xfs",
        0x01021994 => "tmpfs",
        0x794C7630 => "overlayfs",
        0x2FC12FC1 => "zfs",
        0x61756673 => "aufs",
        0xF15F => "ecryptfs",
        0x6969 => "nfs",
        0x65735546 => "fuse",
        0x858458F6 => "ramfs",
        0x73717368 => "squashfs",
        0x5346544E => "ntfs",
        0x52654973 => "reiserfs",
        0x47504653 => "gpfs",
        0xCA451A4E => "bcachefs",
        0x2011BAB0 => "exfat",
        0x4D44 => "vfat",
        _ => "<unknown>",
    }
}

/// Filesystems overlay cannot use as upper layer without a FUSE mount program (Go refuses
/// them too).
pub fn needs_mount_program(magic: i64) -> bool {
    matches!(
        backing_fs_name(magic),
        "aufs" | "zfs" | "overlayfs" | "ecryptfs"
    )
}

/// The cache file of `feature` with answer `value`.
fn cache_name(feature: &str, value: bool) -> Option<std::ffi::CString> {
    std::ffi::CString::new(format!("{feature}-{value}")).ok()
}

/// A cached probe result: `Some((value, text))` if either file exists (a regular file of at
/// most 4 KiB, never read through a symlink).
pub fn cached(run_home: &Path, feature: &str) -> Option<(bool, String)> {
    let dir = tree::open_dir(run_home).ok()?;
    for value in [true, false] {
        let Some(name) = cache_name(feature, value) else {
            continue;
        };
        if let Ok(text) = tree::read_small_file_at(&dir, &name, 4096) {
            return Some((value, String::from_utf8_lossy(&text).into_owned()));
        }
    }
    None
}

/// Records a probe result; a failure's text is its reason (as Go).
pub fn record(run_home: &Path, feature: &str, value: bool, text: &str) {
    // Caching is an optimisation: a read-only run root only costs a probe next time.
    if let (Ok(dir), Some(name)) = (tree::open_dir(run_home), cache_name(feature, value)) {
        let _ = tree::write_file_at(&dir, &name, text.as_bytes(), 0o644);
    }
}

/// Runs `probe` unless its answer is cached, then caches it.
pub fn check(
    run_home: &Path,
    feature: &str,
    probe: impl FnOnce() -> io::Result<bool>,
) -> (bool, String) {
    if let Some(found) = cached(run_home, feature) {
        return found;
    }
    let (value, text) = match probe() {
        Ok(value) => (value, String::new()),
        Err(e) => (false, e.to_string()),
    };
    record(run_home, feature, value, &text);
    (value, text)
}

/// A scratch directory below the home, removed (after unmounting) on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(home: &Path, prefix: &str) -> io::Result<Scratch> {
        for attempt in 0u32..100 {
            let dir = home.join(format!("{prefix}-{}-{attempt}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Scratch(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("no free scratch directory name"))
    }

    fn mkdirs(&self, names: &[&str]) -> io::Result<()> {
        for name in names {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(self.0.join(name))?;
        }
        Ok(())
    }

    fn mount(&self, lowers: &[&str], with_upper: bool, options: &str) -> io::Result<Mounted> {
        let join = |names: &[&str]| {
            names
                .iter()
                .map(|n| self.0.join(n).to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(":")
        };
        let mut data = format!("lowerdir={}", join(lowers));
        if with_upper {
            data.push_str(&format!(
                ",upperdir={},workdir={}",
                self.0.join("upper").display(),
                self.0.join("work").display()
            ));
        }
        let (flags, extra) = mount::parse_options(options);
        if !extra.is_empty() {
            data.push(',');
            data.push_str(&extra);
        }
        let data = std::ffi::CString::new(data)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount options"))?;
        let target = self.0.join("merged");
        rustix::mount::mount("overlay", &target, "overlay", flags, data.as_c_str())?;
        Ok(Mounted(target))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let flags = rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW;
        let _ = rustix::mount::unmount(&self.0, flags);
    }
}

fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Go's `supportsOverlay`: an overlay with an upper dir can be mounted below the home.
pub fn probe_overlay(home: &Path) -> io::Result<bool> {
    let scratch = Scratch::new(home, "compat")?;
    scratch.mkdirs(&["lower1", "lower2", "upper", "work", "merged"])?;
    let mounted = scratch.mount(&["lower2", "lower1"], true, "")?;
    drop(mounted);
    Ok(true)
}

/// Go's `doesSupportNativeDiff`: copying up an opaque directory does not copy its opaque flag
/// (a bug of kernels before 4.8), and renaming
/// a lower directory does not leave a redirect (which a diff of the upper dir would miss).
pub fn probe_native_diff(home: &Path, mount_options: &str) -> io::Result<bool> {
    let scratch = Scratch::new(home, "opaque-bug-check")?;
    scratch.mkdirs(&["l1/d", "l1/d1", "l2/d", "upper", "work", "merged"])?;
    rustix::fs::lsetxattr(
        scratch.0.join("l2/d"),
        OPAQUE_XATTR,
        b"y",
        rustix::fs::XattrFlags::empty(),
    )?;
    let _mounted = scratch.mount(&["l2", "l1"], true, mount_options)?;
    std::fs::write(scratch.0.join("merged/d/f"), b"")?;
    // Copying up the opaque lower directory must not make the upper copy opaque.
    if get_xattr(&scratch.0.join("upper/d"), OPAQUE_XATTR)?.as_deref() == Some(b"y") {
        return Err(io::Error::other(
            "opaque flag erroneously copied up, consider update to kernel 4.8 or later to fix",
        ));
    }
    match std::fs::rename(scratch.0.join("merged/d1"), scratch.0.join("merged/d2")) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            return Ok(true); // no redirect_dir: renames are copies
        }
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if get_xattr(&scratch.0.join("upper/d2"), REDIRECT_XATTR)?.as_deref() == Some(b"d1") {
        return Err(io::Error::other(
            "kernel has CONFIG_OVERLAY_FS_REDIRECT_DIR enabled",
        ));
    }
    Ok(true)
}

/// Go's `doesMetacopy`: with the given options, a chmod through the mount copies up only
/// metadata (the upper file gets the metacopy xattr).
pub fn probe_metacopy(home: &Path, mount_options: &str) -> io::Result<bool> {
    let scratch = Scratch::new(home, "metacopy-check")?;
    scratch.mkdirs(&["l1", "upper", "work", "merged"])?;
    std::fs::write(scratch.0.join("l1/f"), b"")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        scratch.0.join("l1/f"),
        std::fs::Permissions::from_mode(0o700),
    )?;
    let _mounted = scratch.mount(&["l1"], true, mount_options)?;
    std::fs::set_permissions(
        scratch.0.join("merged/f"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    match get_xattr(&scratch.0.join("upper/f"), METACOPY_XATTR) {
        Ok(found) => Ok(found.is_some()),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Go's `SupportsDType`: directory entries of the home carry their type.
pub fn supports_d_type(home: &Path) -> io::Result<bool> {
    let scratch = Scratch::new(home, "d_type-check")?;
    scratch.mkdirs(&["sub"])?;
    let dir = rustix::fs::open(
        &scratch.0,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut reader = rustix::fs::Dir::read_from(&dir)?;
    while let Some(entry) = reader.read() {
        let entry = entry?;
        if entry.file_name() == c"sub" {
            return Ok(entry.file_type() != rustix::fs::FileType::Unknown);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_magics() {
        assert_eq!(backing_fs_name(0xEF53), "extfs");
        assert_eq!(backing_fs_name(0x9123683E), "btrfs");
        assert_eq!(backing_fs_name(1), "<unknown>");
        assert!(needs_mount_program(0x794C7630));
        assert!(!needs_mount_program(0xEF53));
    }

    #[test]
    fn cache_files_are_go_named_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let mut runs = 0;
        let first = check(tmp.path(), "native-diff()", || {
            runs += 1;
            Ok(true)
        });
        assert_eq!(first, (true, String::new()));
        assert!(tmp.path().join("native-diff()-true").is_file());
        let again = check(tmp.path(), "native-diff()", || {
            runs += 1;
            Ok(false)
        });
        assert!(again.0);
        assert_eq!(runs, 1);
        let failed = check(tmp.path(), "metacopy()", || Err(io::Error::other("no way")));
        assert_eq!(failed, (false, "no way".to_string()));
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("metacopy()-false")).unwrap(),
            "no way"
        );
    }
}
