//! Our vfs driver on a graph root written by the Go tool (containers-storage 1.43).

use crate::common;

use layerstore_driver::{Driver, DriverConfig, MountOpts};
use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

#[test]
fn opens_the_go_vfs_store_and_finds_every_layer() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let tmp = tempfile::tempdir().unwrap();
    let graph_root = common::unpack_go_store(tmp.path());
    let driver = VfsDriver::new(&DriverConfig::new(&graph_root, tmp.path().join("run"))).unwrap();

    let json = std::fs::read(graph_root.join("vfs-layers/layers.json")).unwrap();
    let records = layerstore_model::parse_layers_json(&json).unwrap();
    assert_eq!(records.len(), 13);
    let mut listed = driver.list_layers().unwrap();
    listed.sort();
    let mut ids: Vec<String> = records.iter().map(|l| l.id.clone()).collect();
    ids.sort();
    assert_eq!(listed, ids);
    for id in &ids {
        assert!(driver.exists(id), "{id}");
        // The mount path is the one the Go tool uses (mount-vfs.txt: `…/vfs/dir/<id>`).
        let path = driver.get(id, &MountOpts::default()).unwrap();
        assert_eq!(path, graph_root.join("vfs/dir").join(id));
        let ro = MountOpts {
            options: vec!["ro".into()],
            ..Default::default()
        };
        assert_eq!(driver.get(id, &ro).unwrap(), path);
        driver.put(id).unwrap();
    }
    assert!(!driver.exists("no-such-layer"));
    let mount_txt =
        std::fs::read_to_string(layerstore_testsupport::go_fixtures().join("mount-vfs.txt"))
            .unwrap();
    let child = &common::go_layer_ids()["child"];
    assert!(mount_txt.trim_end().ends_with(&format!("/vfs/dir/{child}")));
}

#[test]
fn go_child_layer_is_basic_then_child_whiteouts_applied_by_hand() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let tmp = tempfile::tempdir().unwrap();
    let graph_root = common::unpack_go_store(tmp.path());
    let driver = VfsDriver::new(&DriverConfig::new(&graph_root, tmp.path().join("run"))).unwrap();
    let ids = common::go_layer_ids();

    let by_hand = tmp.path().join("by-hand");
    common::gnu_extract(&common::fixture_tar("basic.tar"), &by_hand);
    let basic = common::snapshot(&by_hand);
    common::apply_by_hand(&common::fixture_tar("child-whiteouts.tar"), &by_hand);
    let child = common::snapshot(&by_hand);
    assert_ne!(
        basic, child,
        "the whiteouts changed nothing: the comparison would be vacuous"
    );

    let go_basic = driver.get(&ids["basic"], &MountOpts::default()).unwrap();
    tree::assert_same_tree(
        "Go basic layer",
        &basic,
        &common::snapshot(&go_basic),
        tree::Root::IgnoreTimes,
    );
    let go_child = driver.get(&ids["child"], &MountOpts::default()).unwrap();
    tree::assert_same_tree(
        "Go child layer",
        &child,
        &common::snapshot(&go_child),
        tree::Root::IgnoreTimes,
    );
}
