//! The disk rows' filesystem: a fresh ext4, made by `mkfs.ext4` with its defaults (a journal
//! included), on a sparse loop file on the disk that holds `--work`.
//!
//! Why not the work directory's own filesystem: "ext4" in the report should mean the same on
//! every machine, and the ext4 a user gets (mkfs's defaults) has a journal. This VM's root ext4
//! was made without one, and there the inode allocator skips every inode freed less than 60 s
//! ago whose inode-table block is cached (fs/ext4/ialloc.c, `recently_deleted`; only ext4
//! without a journal checks). The bench deletes each run's layer right before the next run, so
//! on that filesystem each import scanned past the previous run's thousands of freed inodes
//! for every new one. Even after the settle (`settle.rs`) a perf profile of rootfs.tar.gz put
//! `find_inode_bit` at 37% of our extracting thread, and alternating runs measured the delete
//! cadence's cost on the Go tool and on ours alike: with a fresh layer in fresh block groups
//! each run and nothing deleted, ours took 304 ms against 386–403 ms, the Go tool 1.13 s
//! against 1.25 s. `--disk DIR` still measures a given directory's filesystem as it is.
//!
//! The inode tables and the journal are written by mkfs (`lazy_itable_init=0`,
//! `lazy_journal_init=0`), so no background initialisation runs during the timed commands.
//! The loop file is at most [`MAX_BYTES`] and half the free space of its filesystem; mounted
//! with `-o loop`, its loop device goes with the unmount (autoclear), and the scratch root's
//! cleanup unmounts it and removes the file.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::machine::describe_fs;
use crate::tools::run;

/// The largest loop file (sparse: only what the bench writes takes space).
const MAX_BYTES: u64 = 24 << 30;

/// The smallest loop file the disk rows fit in (the 1 GiB fixtures twice, the pull's image,
/// the stores of the store section, and room for ext4's own allocation choices).
const MIN_BYTES: u64 = 8 << 30;

/// A mounted ext4 made for the run.
pub(super) struct Ext4Loop {
    /// Where it is mounted.
    pub(super) mountpoint: PathBuf,
    /// What the report calls it.
    pub(super) description: String,
}

/// Makes `base/disk.img`, formats it with `mkfs.ext4`'s defaults and mounts it on `base/disk`.
pub(super) fn create(base: &Path) -> Result<Ext4Loop, String> {
    let free = rustix::fs::statvfs(base)
        .map(|st| st.f_bavail.saturating_mul(st.f_frsize))
        .map_err(|e| format!("statvfs {}: {e}", base.display()))?;
    let bytes = (free / 2).min(MAX_BYTES) & !((1 << 20) - 1);
    if bytes < MIN_BYTES {
        return Err(format!(
            "the disk rows need an ext4 of at least {} GiB on a loop file, and {} has {} MiB \
             free; free some space, or give --disk DIR to measure DIR's filesystem as it is",
            MIN_BYTES >> 30,
            base.display(),
            free >> 20
        ));
    }
    let image = base.join("disk.img");
    let mountpoint = base.join("disk");
    File::create(&image)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| format!("create the loop file {}: {e}", image.display()))?;
    fs::create_dir_all(&mountpoint).map_err(|e| format!("mkdir {}: {e}", mountpoint.display()))?;
    // mkfs.ext4 is in e2fsprogs, mount in util-linux: both in every Debian install.
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(&image))?;
    run(Command::new("mount")
        .args(["-t", "ext4", "-o", "loop"])
        .arg(&image)
        .arg(&mountpoint))?;
    let description = format!(
        "ext4 (mkfs.ext4's defaults, with a journal) on a {} GiB loop file on {}",
        bytes >> 30,
        describe_fs(base)
    );
    Ok(Ext4Loop {
        mountpoint,
        description,
    })
}
