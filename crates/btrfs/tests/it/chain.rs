//! A three-layer chain on a real btrfs: each layer's tree equals what the vfs driver makes of
//! the same tarballs, each layer is one subvolume and each child a snapshot of its parent, and
//! the tar-split records of every apply give back the tarball byte for byte.

use crate::common;

use std::path::Path;

use layerstore_btrfs::BtrfsDriver;
use layerstore_driver::{CreateOpts, DiffArgs, Driver, DriverConfig, MountOpts, Registry};
use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

#[test]
fn three_layer_chain_matches_vfs_and_is_a_chain_of_snapshots() {
    require_or_skip!(Capability::Btrfs, Capability::GnuTar);
    let scratch = common::Scratch::new(512);
    let driver = &scratch.driver;
    let work = tempfile::tempdir().unwrap();
    let vfs = VfsDriver::new(&DriverConfig::new(
        work.path().join("vfs-graph"),
        work.path().join("vfs-run"),
    ))
    .unwrap();
    let tarballs = [
        ("base", common::fixture_bytes("basic.tar")),
        ("child", common::fixture_bytes("child-whiteouts.tar")),
        ("grandchild", common::third_layer_tarball(work.path())),
    ];

    let mut parent = None;
    for (id, tarball) in &tarballs {
        for d in [driver as &dyn Driver, &vfs] {
            d.create(id, parent, &CreateOpts::default()).unwrap();
        }
        let records = common::apply(driver, id, parent, tarball);
        common::apply(&vfs, id, parent, tarball);
        let ours = driver.get(id, &MountOpts::default()).unwrap();
        assert_eq!(ours, scratch.graph_root.join("btrfs/subvolumes").join(id));
        assert!(layerstore_btrfs::is_subvolume(&ours).unwrap(), "{id}");
        tree::assert_same_tree(
            &format!("layer {id}: btrfs vs vfs"),
            &common::snapshot(&vfs.get(id, &MountOpts::default()).unwrap()),
            &common::snapshot(&ours),
            tree::Root::IgnoreTimes,
        );
        // tar-split records + files read from the subvolume = the tarball.
        assert!(
            common::assemble(driver, id, &records) == *tarball,
            "layer {id}: reassembled tarball differs"
        );
        driver.put(id).unwrap();
        parent = Some(id);
    }

    // The whiteouts did their work (so the comparisons above are not vacuous).
    let child = driver.get("child", &MountOpts::default()).unwrap();
    assert!(!child.join("etc/passwd-hard").exists());
    assert!(child.join("usr/bin/newtool").exists());
    assert!(!child.join("usr/bin/tool").exists());
    let grandchild = driver.get("grandchild", &MountOpts::default()).unwrap();
    assert!(!grandchild.join("empty").exists());
    assert!(!grandchild.join("etc/passwd").exists());
    assert!(grandchild.join("etc/only-in-third").exists());
    // The parents are untouched by their children's applies.
    let base = driver.get("base", &MountOpts::default()).unwrap();
    assert!(base.join("etc/passwd-hard").exists() && base.join("usr/bin/tool").exists());

    // Changes computed on both drivers agree.
    for (id, parent) in [("child", "base"), ("grandchild", "child")] {
        let args = DiffArgs::new(id, Some(parent));
        assert_eq!(
            driver.changes(&args).unwrap(),
            vfs.changes(&args).unwrap(),
            "{id}"
        );
    }

    // A layer from a template is a snapshot of the template.
    let identity = layerstore_driver::IdMappings::default();
    driver
        .create_from_template(
            "from-template",
            "grandchild",
            &identity,
            Some("child"),
            &identity,
            &CreateOpts::default(),
            false,
        )
        .unwrap();
    tree::assert_same_tree(
        "layer made from the grandchild as template",
        &common::snapshot(&driver.get("grandchild", &MountOpts::default()).unwrap()),
        &common::snapshot(&driver.get("from-template", &MountOpts::default()).unwrap()),
        tree::Root::Compare,
    );
    let lines = common::list_subvolumes(scratch.fs.path());
    assert_eq!(
        common::subvolume_of(&lines, "from-template")
            .parent_uuid
            .as_ref(),
        Some(&common::subvolume_of(&lines, "grandchild").uuid)
    );
    driver.remove("from-template").unwrap();

    // One subvolume per layer, each child a snapshot of its parent.
    let lines = common::list_subvolumes(scratch.fs.path());
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let [base, child, grandchild] =
        ["base", "child", "grandchild"].map(|id| common::subvolume_of(&lines, id));
    assert_eq!(base.parent_uuid, None);
    assert_eq!(child.parent_uuid.as_ref(), Some(&base.uuid));
    assert_eq!(grandchild.parent_uuid.as_ref(), Some(&child.uuid));

    // The layout: modes of the home, the subvolumes dir and a base layer.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&scratch.graph_root.join("btrfs")), 0o700);
    assert_eq!(mode(&scratch.graph_root.join("btrfs/subvolumes")), 0o700);
    driver
        .create("empty-base", None, &CreateOpts::default())
        .unwrap();
    assert_eq!(
        mode(&scratch.graph_root.join("btrfs/subvolumes/empty-base")),
        0o555
    );
    assert_eq!(
        driver.list_layers().unwrap(),
        ["base", "child", "empty-base", "grandchild"]
    );
}

#[test]
fn home_is_a_private_bind_mount_until_cleanup() {
    require_or_skip!(Capability::Btrfs);
    let scratch = common::Scratch::new(256);
    let home = scratch.graph_root.join("btrfs");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some(home.to_str().unwrap()))
        .expect("the home is a mount point");
    assert!(!line.contains("shared:"), "not private: {line}");
    // Opening a second driver on the same home does not stack another mount.
    let second = BtrfsDriver::new(&scratch.config()).unwrap();
    let count = |info: &str| {
        info.lines()
            .filter(|l| l.split_whitespace().nth(4) == Some(home.to_str().unwrap()))
            .count()
    };
    assert_eq!(
        count(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()),
        1
    );
    second.cleanup().unwrap();
    assert!(!common::is_mounted(&home));
    scratch.driver.cleanup().unwrap(); // nothing left to undo: still fine
}

#[test]
fn status_options_and_registration() {
    require_or_skip!(Capability::Btrfs);
    let scratch = common::Scratch::new(256);
    assert_eq!(
        scratch.driver.status(),
        [("Build Version".to_string(), "layerstore ioctls".to_string())]
    );
    let mut registry = Registry::new();
    registry.register(layerstore_btrfs::registration());
    registry.register(layerstore_vfs::registration());
    // The existing btrfs home pins automatic selection.
    let picked = registry.open("", &scratch.config()).unwrap();
    assert_eq!(picked.name(), "btrfs");
    picked.cleanup().unwrap();

    let mut config = scratch.config();
    config.options = vec!["btrfs.mountopt=nodev".into()];
    let err = BtrfsDriver::new(&config).unwrap_err();
    assert!(
        err.to_string().contains("does not support mount options"),
        "{err}"
    );

    // Mount options other than `ro` are refused; `ro` is accepted.
    let driver = &scratch.driver;
    driver.create("l", None, &CreateOpts::default()).unwrap();
    let ro = MountOpts {
        options: vec!["ro".into()],
        ..Default::default()
    };
    assert!(driver.get("l", &ro).is_ok());
    let nodev = MountOpts {
        options: vec!["nodev".into()],
        ..Default::default()
    };
    let err = driver.get("l", &nodev).unwrap_err();
    assert!(
        err.to_string().contains("does not support mount options"),
        "{err}"
    );
    // Errors name the layer.
    let err = driver.get("missing", &MountOpts::default()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let err = driver
        .create("orphan", Some("missing"), &CreateOpts::default())
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let err = driver
        .create("l", None, &CreateOpts::default())
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(driver.create("../x", None, &CreateOpts::default()).is_err());
}
