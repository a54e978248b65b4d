//! Mounts and unmounts through descriptors, for drivers that mount (overlay) or bind-mount
//! their home (overlay, btrfs): a directory is opened once without following symlinks, then
//! addressed as `/proc/self/fd/<n>` (which the kernel resolves to exactly that directory) or,
//! for an unmount, as `/proc/self/fd/<parent>/<name>` with `UMOUNT_NOFOLLOW`, so a symlink
//! swapped in on the way can never redirect a mount or an unmount elsewhere.

use std::ffi::CStr;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Statx, StatxAttributes, StatxFlags};
use rustix::mount::{MountPropagationFlags, UnmountFlags};

use crate::tree::{self, FileId};

/// `/proc/self/fd/<n>`: the kernel resolves it to the file `fd` is open on.
pub fn proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Whether the entry `name` of `dir` (not followed) is the root of a mount: the kernel's
/// mount-root attribute (Linux 5.8+), else a device that differs from `dir`'s.
pub fn is_mount_root_at(dir: BorrowedFd<'_>, name: &CStr) -> bool {
    rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
    .is_ok_and(|st| mount_root(&st, || tree::stat_fd(dir).ok()))
}

/// Whether `path` (not followed) is the root of a mount, as [`is_mount_root_at`] decides it;
/// for a path the store has just read from its own records, where no descriptor is at hand.
pub fn is_mount_point(path: &Path) -> bool {
    let parent = path.parent().unwrap_or(path);
    rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
    .is_ok_and(|st| {
        mount_root(&st, || {
            rustix::fs::statx(
                rustix::fs::CWD,
                parent,
                AtFlags::empty(),
                StatxFlags::BASIC_STATS,
            )
            .ok()
        })
    })
}

/// The mount points of a `/proc/<pid>/mountinfo` table (its fifth field, with the kernel's
/// `\ooo` escapes of space, tab, newline and backslash decoded).
pub fn mountinfo_mount_points(table: &[u8]) -> impl Iterator<Item = PathBuf> + '_ {
    table
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(OsString::from_vec(unescape_mountinfo_field(field))))
}

/// Decodes the kernel's `\ooo` octal escapes in a mountinfo field; anything else is kept.
pub fn unescape_mountinfo_field(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
            && let Ok(byte) = u8::try_from(
                digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0')),
            )
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// [`is_mount_root_at`] of an open directory (its parent is its `..`).
pub fn is_mount_root(fd: BorrowedFd<'_>) -> bool {
    tree::stat_fd(fd).is_ok_and(|st| mount_root(&st, || tree::stat_at(fd, c"..").ok()))
}

fn mount_root(st: &Statx, parent: impl FnOnce() -> Option<Statx>) -> bool {
    if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
        return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    }
    parent().is_some_and(|parent| {
        (st.stx_dev_major, st.stx_dev_minor) != (parent.stx_dev_major, parent.stx_dev_minor)
    })
}

/// Go's `mount.MakePrivate` for the directory `name` of `parent` (a driver's home): bind-mounts
/// it onto itself unless it is a mount root already, then makes that mount private. Returns
/// whether the bind mount was made here and the directory opened again (now the mount's
/// root). Never follows a symlink at `name`.
pub fn make_private_at(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<(bool, OwnedFd)> {
    let dir = tree::open_dir_at(parent, name)?;
    let bind = !is_mount_root(dir.as_fd());
    if bind {
        let path = proc_path(dir.as_fd());
        rustix::mount::mount_bind(&path, &path)?;
    }
    // The descriptor from before the bind mount names the directory below it: look it up
    // again to reach the mount, and check it is the same directory.
    let mounted = tree::open_dir_at(parent, name)?;
    if FileId::of(&tree::stat_fd(&mounted)?) != FileId::of(&tree::stat_fd(&dir)?) {
        if bind {
            let _ = unmount_at(parent, name);
        }
        return Err(io::Error::other(
            "the directory was replaced while being bind-mounted",
        ));
    }
    rustix::mount::mount_change(proc_path(mounted.as_fd()), MountPropagationFlags::PRIVATE)?;
    Ok((bind, mounted))
}

/// Unmounts (`MNT_DETACH`) the mount at the entry `name` of `dir`, never following a symlink
/// there (`UMOUNT_NOFOLLOW`, and `dir` is a descriptor). "Not mounted" (`EINVAL`) and "gone"
/// (`ENOENT`) are not errors, as in Go's `Put`.
pub fn unmount_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let mut path = proc_path(dir);
    path.push(tree::name_path(name));
    match rustix::mount::unmount(&path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
        Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let points: Vec<PathBuf> = mountinfo_mount_points(
            b"36 35 98:0 /mnt1 /mnt\\040with\\040space rw - ext3 /dev/root rw\n\
              37 35 98:0 / /plain rw - ext4 /dev/sda rw\n",
        )
        .collect();
        assert_eq!(
            points,
            [PathBuf::from("/mnt with space"), PathBuf::from("/plain")]
        );
        assert_eq!(unescape_mountinfo_field(b"a\\134b\\011"), b"a\\b\t");
        // Not an escape (or out of a byte's range): kept as is.
        assert_eq!(unescape_mountinfo_field(b"x\\9yz\\"), b"x\\9yz\\");
        assert_eq!(unescape_mountinfo_field(b"\\777"), b"\\777");
    }

    #[test]
    fn mount_points_are_told_from_directories() {
        assert!(is_mount_point(Path::new("/")));
        assert!(is_mount_point(Path::new("/proc")));
        assert!(!is_mount_point(Path::new("/proc/self/fd")));
        assert!(!is_mount_point(Path::new("/nonexistent-mount-point")));
    }

    #[test]
    fn proc_paths_name_the_open_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let fd = tree::open_dir(tmp.path()).unwrap();
        let resolved = std::fs::canonicalize(proc_path(fd.as_fd())).unwrap();
        assert_eq!(resolved, std::fs::canonicalize(tmp.path()).unwrap());
        assert!(!is_mount_root(fd.as_fd()));
        let root = tree::open_dir(std::path::Path::new("/proc")).unwrap();
        assert!(is_mount_root(root.as_fd()));
    }
}
