//! A child of a 1 GiB layer is a snapshot: made in near-constant time and with no extra space
//! (measured with statvfs and btrfs's own exclusive-bytes accounting).

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use layerstore_driver::{CreateOpts, Driver, MountOpts};
use layerstore_testsupport::{Capability, require_or_skip};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn available_bytes(path: &std::path::Path) -> u64 {
    rustix::fs::sync();
    let st = rustix::fs::statvfs(path).unwrap();
    st.f_bavail * st.f_frsize
}

/// `btrfs filesystem du -s --raw <path>`: (total, exclusive) bytes.
fn du(path: &std::path::Path) -> (u64, u64) {
    let out = common::run(
        Command::new("btrfs")
            .args(["filesystem", "du", "-s", "--raw"])
            .arg(path),
    );
    let line = out.lines().nth(1).expect("a summary line");
    let words: Vec<u64> = line
        .split_whitespace()
        .take(2)
        .map(|w| w.parse().unwrap())
        .collect();
    (words[0], words[1])
}

#[test]
fn child_of_a_one_gib_layer_is_instant_and_free() {
    require_or_skip!(Capability::Btrfs);
    let scratch = common::Scratch::new(3072);
    let driver = &scratch.driver;
    driver.create("big", None, &CreateOpts::default()).unwrap();
    let big = driver.get("big", &MountOpts::default()).unwrap();
    // 1 GiB of allocated extents (fallocate: real space, no time spent writing zeros) plus
    // 16 MiB of written data in many files.
    for i in 0..8 {
        let file = std::fs::File::create(big.join(format!("blob{i}"))).unwrap();
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, GIB / 8).unwrap();
    }
    std::fs::create_dir(big.join("small")).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    for i in 0..256 {
        std::fs::write(big.join(format!("small/{i}")), &chunk).unwrap();
    }
    rustix::fs::sync(); // delayed allocation: count the small files too
    let (big_total, _) = du(&big);
    assert!(big_total >= GIB, "the layer holds {big_total} bytes");

    // Reference: a child of an empty layer.
    driver
        .create("empty", None, &CreateOpts::default())
        .unwrap();
    let started = Instant::now();
    driver
        .create("empty-child", Some("empty"), &CreateOpts::default())
        .unwrap();
    let empty_time = started.elapsed();

    let before = available_bytes(scratch.fs.path());
    let started = Instant::now();
    driver
        .create("child", Some("big"), &CreateOpts::default())
        .unwrap();
    let child_time = started.elapsed();
    let after = available_bytes(scratch.fs.path());
    let child = driver.get("child", &MountOpts::default()).unwrap();

    let used = before.saturating_sub(after);
    let (child_total, child_exclusive) = du(&child);
    eprintln!(
        "child of a {big_total}-byte layer: {child_time:?} (child of an empty layer: \
         {empty_time:?}); free space {before} -> {after} ({used} bytes used); \
         child total {child_total}, exclusive {child_exclusive}"
    );
    assert_eq!(
        child_total, big_total,
        "the child sees every byte of its parent"
    );
    assert!(
        child_exclusive < MIB,
        "the child has {child_exclusive} exclusive bytes"
    );
    assert!(used < 16 * MIB, "creating the child used {used} bytes");
    // Near-constant: no copying of a GiB (which takes seconds); generous for a loaded CI.
    assert!(
        child_time < Duration::from_secs(2),
        "snapshotting took {child_time:?}"
    );
    assert_eq!(
        std::fs::metadata(child.join("blob0")).unwrap().size(),
        GIB / 8
    );
}
