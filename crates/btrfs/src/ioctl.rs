//! The btrfs ioctls the driver needs, as small safe functions over directory descriptors.
//!
//! Struct layouts and request numbers follow `<linux/btrfs.h>` (checked against the kernel
//! headers of Linux 6.x; the layouts are ABI and have not changed since they were added). Every
//! function takes the *directory* the subvolume lives in plus the entry name, as the kernel
//! does, so no path is resolved twice.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;

use rustix::ioctl::{Ioctl, Opcode, Setter, Updater, opcode};

/// `BTRFS_IOCTL_MAGIC`.
const MAGIC: u8 = 0x94;

/// The inode number of every subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
pub const SUBVOLUME_ROOT_INO: u64 = 256;

/// `BTRFS_SUPER_MAGIC`, the `f_type` statfs reports for btrfs.
pub const BTRFS_SUPER_MAGIC: u32 = 0x9123_683e;

/// `BTRFS_SUBVOL_RDONLY`.
const SUBVOL_RDONLY: u64 = 1 << 1;

/// `BTRFS_PATH_NAME_MAX + 1`.
const VOL_NAME_LEN: usize = 4088;
/// `BTRFS_SUBVOL_NAME_MAX + 1`.
const SUBVOL_NAME_LEN: usize = 4040;
/// `BTRFS_INO_LOOKUP_PATH_MAX`.
const INO_LOOKUP_PATH_LEN: usize = 4080;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; VOL_NAME_LEN],
}

/// `struct btrfs_ioctl_vol_args_v2` (the `size`/`qgroup_inherit` union is left zero).
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; SUBVOL_NAME_LEN],
}

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; INO_LOOKUP_PATH_LEN],
}

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args` (with `struct btrfs_qgroup_limit` inlined).
#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct btrfs_ioctl_qgroup_create_args`.
#[repr(C)]
struct QgroupCreateArgs {
    create: u64,
    qgroupid: u64,
}

// The kernel's sizes: a mismatch would make the request numbers (which encode the size) wrong.
const _: () = assert!(size_of::<VolArgs>() == 4096);
const _: () = assert!(size_of::<VolArgsV2>() == 4096);
const _: () = assert!(size_of::<InoLookupArgs>() == 4096);
const _: () = assert!(size_of::<QgroupLimitArgs>() == 48);

const SUBVOL_CREATE: Opcode = opcode::write::<VolArgs>(MAGIC, 14);
const SNAP_DESTROY: Opcode = opcode::write::<VolArgs>(MAGIC, 15);
const INO_LOOKUP: Opcode = opcode::read_write::<InoLookupArgs>(MAGIC, 18);
const SNAP_CREATE_V2: Opcode = opcode::write::<VolArgsV2>(MAGIC, 23);
const QUOTA_CTL: Opcode = opcode::read_write::<QuotaCtlArgs>(MAGIC, 40);
const QGROUP_CREATE: Opcode = opcode::write::<QgroupCreateArgs>(MAGIC, 42);
// `_IOR` in the kernel header although the argument is an input.
const QGROUP_LIMIT: Opcode = opcode::read::<QgroupLimitArgs>(MAGIC, 43);
const QUOTA_RESCAN_WAIT: Opcode = opcode::none(MAGIC, 46);

/// Copies `name` into a zeroed, NUL-terminated fixed buffer; names that do not fit (or are
/// empty) are `InvalidInput`.
fn name_buffer<const N: usize>(name: &CStr) -> io::Result<[u8; N]> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || bytes.len() >= N {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "subvolume name of {} bytes (1 to {} allowed)",
                bytes.len(),
                N - 1
            ),
        ));
    }
    let mut buffer = [0u8; N];
    buffer[..bytes.len()].copy_from_slice(bytes);
    Ok(buffer)
}

/// Runs one ioctl on `fd`.
///
/// # Safety
///
/// `request`'s opcode must be one whose argument type is the one the request carries.
unsafe fn run(fd: impl AsFd, request: impl Ioctl) -> io::Result<()> {
    // SAFETY: forwarded from the caller: opcode and argument type match.
    unsafe { rustix::ioctl::ioctl(fd, request) }?;
    Ok(())
}

/// Creates an empty subvolume `name` in the directory `parent` (`BTRFS_IOC_SUBVOL_CREATE`).
pub fn create_subvolume(parent: impl AsFd, name: &CStr) -> io::Result<()> {
    let args = VolArgs {
        fd: 0,
        name: name_buffer(name)?,
    };
    // SAFETY: SUBVOL_CREATE takes a `struct btrfs_ioctl_vol_args`, which `VolArgs` mirrors.
    unsafe { run(parent, Setter::<SUBVOL_CREATE, VolArgs>::new(args)) }
}

/// Snapshots the subvolume whose root directory is open as `source` into `name` in the
/// directory `parent` (`BTRFS_IOC_SNAP_CREATE_V2`); writable unless `read_only`.
pub fn snapshot(
    source: impl AsFd,
    parent: impl AsFd,
    name: &CStr,
    read_only: bool,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let args = VolArgsV2 {
        fd: i64::from(source.as_fd().as_raw_fd()),
        transid: 0,
        flags: if read_only { SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: name_buffer(name)?,
    };
    // SAFETY: SNAP_CREATE_V2 takes a `struct btrfs_ioctl_vol_args_v2`, which `VolArgsV2`
    // mirrors; `fd` is an open descriptor borrowed for the duration of the call.
    unsafe { run(parent, Setter::<SNAP_CREATE_V2, VolArgsV2>::new(args)) }
}

/// Deletes the subvolume `name` in the directory `parent` (`BTRFS_IOC_SNAP_DESTROY`). The
/// subvolume must hold no nested subvolume (`ENOTEMPTY`); its files go with it.
pub fn destroy_subvolume(parent: impl AsFd, name: &CStr) -> io::Result<()> {
    let args = VolArgs {
        fd: 0,
        name: name_buffer(name)?,
    };
    // SAFETY: SNAP_DESTROY takes a `struct btrfs_ioctl_vol_args`, which `VolArgs` mirrors.
    unsafe { run(parent, Setter::<SNAP_DESTROY, VolArgs>::new(args)) }
}

/// The ID of the subvolume (tree) holding the open file `fd` (`BTRFS_IOC_INO_LOOKUP` with
/// `treeid` 0); the qgroup of a subvolume is `0/<id>`.
pub fn subvolume_id(fd: impl AsFd) -> io::Result<u64> {
    let mut args = InoLookupArgs {
        treeid: 0,
        objectid: SUBVOLUME_ROOT_INO,
        name: [0; INO_LOOKUP_PATH_LEN],
    };
    // SAFETY: INO_LOOKUP takes a `struct btrfs_ioctl_ino_lookup_args`, mirrored by
    // `InoLookupArgs`, which the kernel reads and fills in.
    unsafe { run(fd, Updater::<INO_LOOKUP, InoLookupArgs>::new(&mut args)) }?;
    Ok(args.treeid)
}

/// Enables quota groups on the filesystem of `fd` (`BTRFS_IOC_QUOTA_CTL`, enable). Enabling
/// them again is harmless.
pub fn enable_quota(fd: impl AsFd) -> io::Result<()> {
    let mut args = QuotaCtlArgs { cmd: 1, status: 0 };
    // SAFETY: QUOTA_CTL takes a `struct btrfs_ioctl_quota_ctl_args`, mirrored by
    // `QuotaCtlArgs`.
    unsafe { run(fd, Updater::<QUOTA_CTL, QuotaCtlArgs>::new(&mut args)) }
}

/// Limits the referenced bytes of the subvolume holding `fd` to `max_referenced`
/// (`BTRFS_IOC_QGROUP_LIMIT`, qgroup 0 = the subvolume of `fd`).
pub fn limit_qgroup(fd: impl AsFd, max_referenced: u64) -> io::Result<()> {
    let args = QgroupLimitArgs {
        qgroupid: 0,
        flags: 1, // BTRFS_QGROUP_LIMIT_MAX_RFER
        max_rfer: max_referenced,
        max_excl: 0,
        rsv_rfer: 0,
        rsv_excl: 0,
    };
    // SAFETY: QGROUP_LIMIT takes a `struct btrfs_ioctl_qgroup_limit_args`, mirrored by
    // `QgroupLimitArgs`.
    unsafe { run(fd, Setter::<QGROUP_LIMIT, QgroupLimitArgs>::new(args)) }
}

/// Destroys qgroup `0/<subvolume_id>` on the filesystem of `fd` (`BTRFS_IOC_QGROUP_CREATE`
/// with `create` 0).
pub fn destroy_qgroup(fd: impl AsFd, subvolume_id: u64) -> io::Result<()> {
    let args = QgroupCreateArgs {
        create: 0,
        qgroupid: subvolume_id,
    };
    // SAFETY: QGROUP_CREATE takes a `struct btrfs_ioctl_qgroup_create_args`, mirrored by
    // `QgroupCreateArgs`.
    unsafe { run(fd, Setter::<QGROUP_CREATE, QgroupCreateArgs>::new(args)) }
}

/// Waits for a running quota rescan to finish (`BTRFS_IOC_QUOTA_RESCAN_WAIT`); with quotas
/// disabled (`ENOTCONN`/`EINVAL`) there is nothing to wait for.
pub fn wait_quota_rescan(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: QUOTA_RESCAN_WAIT takes no argument.
    match unsafe { run(fd, rustix::ioctl::NoArg::<QUOTA_RESCAN_WAIT>::new()) } {
        Err(e)
            if matches!(
                rustix::io::Errno::from_io_error(&e),
                Some(rustix::io::Errno::NOTCONN | rustix::io::Errno::INVAL)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers `<linux/btrfs.h>` gives on x86-64 and aarch64 (the common `_IOC`
    /// encoding).
    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn request_numbers_match_the_kernel_header() {
        assert_eq!(SUBVOL_CREATE, 0x5000_940e);
        assert_eq!(SNAP_DESTROY, 0x5000_940f);
        assert_eq!(INO_LOOKUP, 0xd000_9412);
        assert_eq!(SNAP_CREATE_V2, 0x5000_9417);
        assert_eq!(QUOTA_CTL, 0xc010_9428);
        assert_eq!(QGROUP_CREATE, 0x4010_942a);
        assert_eq!(QGROUP_LIMIT, 0x8030_942b);
        assert_eq!(QUOTA_RESCAN_WAIT, 0x0000_942e);
    }

    #[test]
    fn names_must_fit_and_not_be_empty() {
        assert!(name_buffer::<8>(c"").is_err());
        assert!(name_buffer::<8>(c"1234567").is_ok());
        assert!(name_buffer::<8>(c"12345678").is_err());
        let buffer = name_buffer::<8>(c"abc").unwrap();
        assert_eq!(&buffer, b"abc\0\0\0\0\0");
    }
}
