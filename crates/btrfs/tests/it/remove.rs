//! Removal: nested subvolumes (made inside a layer, as a container may) go first; a parent can
//! go while its child lives on (snapshots are independent); odd leftovers are handled.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use layerstore_btrfs::ioctl;
use layerstore_driver::{CreateOpts, Driver, MountOpts};
use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};

fn open_dir(path: &std::path::Path) -> std::fs::File {
    std::fs::File::open(path).unwrap()
}

#[test]
fn removing_a_layer_with_nested_subvolumes() {
    require_or_skip!(Capability::Btrfs);
    let scratch = common::Scratch::new(256);
    let driver = &scratch.driver;
    driver
        .create("layer", None, &CreateOpts::default())
        .unwrap();
    let dir = driver.get("layer", &MountOpts::default()).unwrap();
    std::fs::create_dir_all(dir.join("var/lib/deep")).unwrap();
    std::fs::write(dir.join("var/file"), "x").unwrap();
    // layer/var/lib/deep/nested (subvolume) holding nested/inner (subvolume) with a file,
    // nested/inner/innermost (subvolume), and a read-only snapshot of `nested` beside it.
    ioctl::create_subvolume(open_dir(&dir.join("var/lib/deep")), c"nested").unwrap();
    let nested = dir.join("var/lib/deep/nested");
    ioctl::create_subvolume(open_dir(&nested), c"inner").unwrap();
    std::fs::write(nested.join("inner/data"), "payload").unwrap();
    ioctl::create_subvolume(open_dir(&nested.join("inner")), c"innermost").unwrap();
    ioctl::snapshot(
        open_dir(&nested),
        open_dir(&dir.join("var")),
        c"ro-snap",
        true,
    )
    .unwrap();
    // A read-only directory on the way must not stop the walk.
    std::fs::set_permissions(dir.join("var/lib"), std::fs::Permissions::from_mode(0o500)).unwrap();
    // A symlink out of the layer must not be followed.
    let outside = scratch.fs.path().join("outside");
    ioctl::create_subvolume(open_dir(scratch.fs.path()), c"outside").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("escape")).unwrap();

    assert!(layerstore_btrfs::is_subvolume(&nested).unwrap());
    assert!(!layerstore_btrfs::is_subvolume(&dir.join("var")).unwrap());
    assert_eq!(common::list_subvolumes(scratch.fs.path()).len(), 6);

    driver.remove("layer").unwrap();
    assert!(!driver.exists("layer"));
    assert!(!dir.exists());
    let left = common::list_subvolumes(scratch.fs.path());
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0].path, "outside");
    assert!(outside.is_dir());

    // Removing again (or a layer that never was) succeeds.
    driver.remove("layer").unwrap();
    driver.remove("never-was").unwrap();
}

#[test]
fn removing_the_parent_of_a_live_child() {
    require_or_skip!(Capability::Btrfs);
    let scratch = common::Scratch::new(256);
    let driver = &scratch.driver;
    driver
        .create("parent", None, &CreateOpts::default())
        .unwrap();
    let parent = driver.get("parent", &MountOpts::default()).unwrap();
    std::fs::write(parent.join("shared"), "from the parent").unwrap();
    driver
        .create_read_write("child", Some("parent"), &CreateOpts::default())
        .unwrap();
    let child = driver.get("child", &MountOpts::default()).unwrap();
    std::fs::write(child.join("own"), "child's own").unwrap();
    let before = common::snapshot(&child);

    driver.remove("parent").unwrap();
    assert!(!driver.exists("parent"));
    assert_eq!(driver.list_layers().unwrap(), ["child"]);
    tree::assert_same_tree(
        "child after its parent went",
        &before,
        &common::snapshot(&child),
        tree::Root::Compare,
    );
    // The child still works as a parent itself.
    driver
        .create("grandchild", Some("child"), &CreateOpts::default())
        .unwrap();
    let grandchild = driver.get("grandchild", &MountOpts::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(grandchild.join("shared")).unwrap(),
        "from the parent"
    );
    // The snapshot still names its (now gone) origin, as btrfs keeps parent UUIDs.
    let lines = common::list_subvolumes(scratch.fs.path());
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(common::subvolume_of(&lines, "child").parent_uuid.is_some());
}

#[test]
fn removing_a_layer_directory_that_is_not_a_subvolume() {
    require_or_skip!(Capability::Btrfs);
    let scratch = common::Scratch::new(256);
    let driver = &scratch.driver;
    // Left by hand (or by a crash between mkdir and anything else): a plain directory tree.
    let dir = scratch.graph_root.join("btrfs/subvolumes/plain");
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("a/b/f"), "x").unwrap();
    assert!(driver.exists("plain"));
    driver.remove("plain").unwrap();
    assert!(!dir.exists());
}
