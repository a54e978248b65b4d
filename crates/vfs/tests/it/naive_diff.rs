//! The shared naive diff family (layerstore_driver::naive) on vfs layers.

use crate::common;

use std::collections::BTreeSet;

use layerstore_driver::{
    ApplyDiffOpts, ChangeKind, CreateOpts, DiffArgs, Driver, DriverConfig, MountOpts,
};
use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

fn go_store() -> (tempfile::TempDir, VfsDriver) {
    let tmp = tempfile::tempdir().unwrap();
    let graph_root = common::unpack_go_store(tmp.path());
    let driver = VfsDriver::new(&DriverConfig::new(&graph_root, tmp.path().join("run"))).unwrap();
    (tmp, driver)
}

#[test]
fn changes_of_the_go_child_equal_the_go_tools_list() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let (_tmp, driver) = go_store();
    let ids = common::go_layer_ids();
    let changes = driver
        .changes(&DiffArgs::new(&ids["child"], Some(&ids["basic"])))
        .unwrap();
    let ours: BTreeSet<String> = changes
        .iter()
        .map(|c| {
            let kind = match c.kind {
                ChangeKind::Modify => "Modify",
                ChangeKind::Add => "Add",
                ChangeKind::Delete => "Delete",
            };
            format!("{kind} {:?}", c.path.display().to_string())
        })
        .collect();
    let go: BTreeSet<String> = std::fs::read_to_string(
        layerstore_testsupport::go_fixtures().join("changes-child-vfs.txt"),
    )
    .unwrap()
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(ours, go);

    // Without a parent everything is an addition.
    let all = driver.changes(&DiffArgs::new(&ids["basic"], None)).unwrap();
    assert!(all.iter().all(|c| c.kind == ChangeKind::Add));
    assert_eq!(all.len(), 10, "{all:?}");
}

#[test]
fn diff_size_of_the_go_child_counts_added_and_modified_files() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let (_tmp, driver) = go_store();
    let ids = common::go_layer_ids();
    // /etc/passwd (32 bytes, modified) + /usr/bin/newtool (4 bytes, added).
    let size = driver
        .diff_size(&DiffArgs::new(&ids["child"], Some(&ids["basic"])))
        .unwrap();
    assert_eq!(size, 36);
}

#[test]
fn exported_child_applied_onto_a_copy_of_the_parent_gives_the_child() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let (tmp, driver) = go_store();
    let ids = common::go_layer_ids();
    let mut stream = Vec::new();
    let written = driver
        .diff(
            &DiffArgs::new(&ids["child"], Some(&ids["basic"])),
            &mut stream,
        )
        .unwrap();
    assert_eq!(written, stream.len() as u64);
    let tarball = tmp.path().join("child-diff.tar");
    std::fs::write(&tarball, &stream).unwrap();

    // Independent check: GNU tar plus whiteouts by hand onto a vfs copy of the parent.
    driver
        .create("copy-of-basic", Some(&ids["basic"]), &CreateOpts::default())
        .unwrap();
    let copy = driver.get("copy-of-basic", &MountOpts::default()).unwrap();
    common::apply_by_hand(&tarball, &copy);
    let child = driver.get(&ids["child"], &MountOpts::default()).unwrap();
    tree::assert_same_tree(
        "exported child applied by hand",
        &common::snapshot(&child),
        &common::snapshot(&copy),
        tree::Root::IgnoreTimes,
    );

    // And with our own naive apply_diff.
    driver
        .create(
            "copy-of-basic-2",
            Some(&ids["basic"]),
            &CreateOpts::default(),
        )
        .unwrap();
    let mut input = &stream[..];
    let report = driver
        .apply_diff(
            "copy-of-basic-2",
            Some(&ids["basic"]),
            ApplyDiffOpts::new(&mut input),
        )
        .unwrap();
    assert_eq!(report.uncompressed_size, stream.len() as u64);
    let copy = driver
        .get("copy-of-basic-2", &MountOpts::default())
        .unwrap();
    tree::assert_same_tree(
        "exported child applied by apply_diff",
        &common::snapshot(&child),
        &common::snapshot(&copy),
        tree::Root::IgnoreTimes,
    );
}
