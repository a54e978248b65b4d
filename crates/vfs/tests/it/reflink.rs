//! The reflink path, for real on a btrfs filesystem made on a loop file.

use std::path::Path;
use std::process::Command;

use layerstore_driver::{CreateOpts, Driver, DriverConfig, MountOpts};
use layerstore_testsupport::{BtrfsLoop, Capability, require_or_skip};
use layerstore_vfs::VfsDriver;
use layerstore_vfs::copy::{CopyOptions, copy_tree};

/// Whether every extent of `file` is flagged shared (`filefrag -v`, FIEMAP_EXTENT_SHARED).
fn all_extents_shared(file: &Path) -> bool {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg("-s")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "filefrag: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Extent lines look like `   0:        0..    1023:       3328..      4351:   1024:             shared`.
    let extents: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .split(':')
                .next()
                .is_some_and(|n| n.trim().parse::<u32>().is_ok())
        })
        .collect();
    assert!(!extents.is_empty(), "no extents in:\n{text}");
    extents.iter().all(|l| l.contains("shared"))
}

#[test]
fn child_layer_shares_extents_with_its_parent_on_btrfs() {
    require_or_skip!(Capability::Root, Capability::Btrfs);
    let fs = BtrfsLoop::new(512).unwrap();
    let driver = VfsDriver::new(&DriverConfig::new(
        fs.path().join("graph"),
        fs.path().join("run"),
    ))
    .unwrap();
    driver.create("base", None, &CreateOpts::default()).unwrap();
    let base = driver.get("base", &MountOpts::default()).unwrap();
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(base.join("big"), &data).unwrap();
    assert!(
        !all_extents_shared(&base.join("big")),
        "fresh data is not shared yet"
    );

    driver
        .create("child", Some("base"), &CreateOpts::default())
        .unwrap();
    let child = driver.get("child", &MountOpts::default()).unwrap();
    assert!(
        all_extents_shared(&child.join("big")),
        "the child's copy is a reflink"
    );
    assert!(all_extents_shared(&base.join("big")));
    assert_eq!(std::fs::read(child.join("big")).unwrap(), data);

    // The same through the copy's own accounting, and the fallback when reflinks are off.
    let direct = fs.path().join("direct");
    std::fs::create_dir(&direct).unwrap();
    let stats = copy_tree(&base, &direct, CopyOptions::default()).unwrap();
    assert_eq!(
        (stats.reflinked, stats.copied, stats.bytes_copied),
        (1, 0, 0)
    );
    let plain = fs.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let stats = copy_tree(
        &base,
        &plain,
        CopyOptions {
            no_reflink: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((stats.reflinked, stats.copied), (0, 1));
    assert_eq!(std::fs::read(plain.join("big")).unwrap(), data);
}
