//! A tree 5,000 directories deep, made with `mkdirat` (no path of it fits PATH_MAX), with a
//! hard-linked pair at the bottom: vfs copies it (a child layer), walks it (ID shifting, disk
//! usage) and removes it, with a soft limit of 1,024 open files and a test thread's stack
//! (issue 16 item 1). The test lowers its process's open-file limit, so it runs in a process of
//! its own (`testsupport::helper::in_own_process`).

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use layerstore_driver::{CreateOpts, Driver, DriverConfig, IdMap, IdMappings, MountOpts, tree};
use layerstore_testsupport::helper;
use layerstore_vfs::VfsDriver;
use rustix::fs::{AtFlags, Mode, OFlags};

const DEPTH: usize = 5_000;

/// Opens `d` below `dir`, `depth` times (one descriptor at a time).
fn bottom(dir: OwnedFd, depth: usize) -> OwnedFd {
    (0..depth).fold(dir, |dir, _| tree::open_dir_at(&dir, c"d").expect("open d"))
}

#[test]
fn a_tree_5000_deep_is_copied_walked_and_removed_with_1024_open_files() {
    if !helper::in_own_process() {
        return;
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(1024),
            maximum: limit.maximum,
        },
    )
    .unwrap();
    // tmpfs where there is one: deep directories are slow to make and remove on a disk.
    let tmp = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let driver = VfsDriver::new(&DriverConfig::new(
        tmp.path().join("graph"),
        tmp.path().join("run"),
    ))
    .unwrap();
    driver.create("base", None, &CreateOpts::default()).unwrap();
    let root = driver.get("base", &MountOpts::default()).unwrap();
    let mut dir = tree::open_dir(&root).unwrap();
    for _ in 0..DEPTH {
        rustix::fs::mkdirat(&dir, c"d", Mode::from_raw_mode(0o755)).unwrap();
        dir = tree::open_dir_at(&dir, c"d").unwrap();
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC;
    drop(rustix::fs::openat(&dir, c"a", flags, Mode::from_raw_mode(0o644)).unwrap());
    rustix::fs::linkat(&dir, c"a", &dir, c"b", AtFlags::empty()).unwrap();
    drop(dir);

    // A copy (the child), then its owners shifted (a walk of the whole tree).
    driver
        .create("child", Some("base"), &CreateOpts::default())
        .unwrap();
    let map = |host_id| IdMap {
        container_id: 0,
        host_id,
        size: 65536,
    };
    let to_host = IdMappings::new(vec![map(100_000)], vec![map(100_000)]);
    driver
        .update_layer_id_map("child", &IdMappings::default(), &to_host, "")
        .unwrap();
    let child = driver.get("child", &MountOpts::default()).unwrap();
    let deepest = bottom(tree::open_dir(&child).unwrap(), DEPTH);
    let (a, b) = (
        tree::stat_at(&deepest, c"a").unwrap(),
        tree::stat_at(&deepest, c"b").unwrap(),
    );
    assert_eq!(a.stx_ino, b.stx_ino, "the hard link is kept at the bottom");
    assert_eq!((a.stx_uid, a.stx_nlink), (100_000, 2));
    drop(deepest);
    let usage = driver.read_write_disk_usage("child").unwrap();
    assert_eq!(
        usage.inode_count,
        DEPTH as u64 + 2,
        "directories and one file"
    );
    assert_eq!(std::fs::metadata(child.join("d")).unwrap().uid(), 100_000);

    driver.remove("child").unwrap();
    driver.remove("base").unwrap();
    assert!(driver.list_layers().unwrap().is_empty());
}
