//! `overlay.mount_program=fuse-overlayfs`: the rootless way of mounting, checked as root.

use crate::common;

use common::{Scratch, apply_fixture, assert_same_tree, snapshot};
use layerstore_driver::{CreateOpts, Driver, MountOpts};
use layerstore_overlay::MountMethod;
use layerstore_testsupport::{Capability, fuse_overlayfs, require_or_skip};
use layerstore_vfs::VfsDriver;

#[test]
fn fuse_overlayfs_mounts_and_unmounts_a_chain() {
    require_or_skip!(Capability::Root, Capability::FuseOverlayfs);
    let program = fuse_overlayfs().expect("checked by FuseOverlayfs");
    let scratch = Scratch::new();
    let option = format!("overlay.mount_program={}", program.display());
    let overlay = scratch.overlay(&[&option]);
    assert_eq!(
        std::fs::read_to_string(overlay.home().join(".has-mount-program")).unwrap(),
        "true"
    );
    let opts = CreateOpts::default();
    overlay.create("base", None, &opts).unwrap();
    apply_fixture(&*overlay, "base", None, "basic.tar");
    overlay.create("child", Some("base"), &opts).unwrap();
    apply_fixture(&*overlay, "child", Some("base"), "child-whiteouts.tar");
    overlay
        .create_read_write("top", Some("child"), &opts)
        .unwrap();

    let vfs_root = Scratch::new();
    let vfs = VfsDriver::new(&vfs_root.config(&[])).unwrap();
    vfs.create("base", None, &opts).unwrap();
    apply_fixture(&vfs, "base", None, "basic.tar");
    vfs.create("child", Some("base"), &opts).unwrap();
    apply_fixture(&vfs, "child", Some("base"), "child-whiteouts.tar");
    let want = snapshot(&vfs.get("child", &MountOpts::default()).unwrap());

    let merged = overlay.get("top", &MountOpts::default()).unwrap();
    assert_eq!(overlay.mount_method("top"), Some(MountMethod::Program));
    let line = common::mountinfo_line(&merged).expect("mounted");
    assert!(line.contains("fuse"), "{line}");
    // The contents, owners and modes match; fuse-overlayfs reports its own inode numbers,
    // so hardlink identity is not compared.
    let mut got = snapshot(&merged);
    let mut want = want;
    for node in got.values_mut().chain(want.values_mut()) {
        node.hardlink_of = None;
    }
    assert_same_tree("fuse-overlayfs view", &want, &got);
    std::fs::write(merged.join("written"), b"x").unwrap();
    overlay.put("top").unwrap();
    assert!(common::mountinfo_line(&merged).is_none(), "unmounted");
    assert!(!merged.exists());
    assert_eq!(
        std::fs::read(overlay.home().join("top/diff/written")).unwrap(),
        b"x"
    );
}
