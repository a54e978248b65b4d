//! `overlay.mount_program=fuse-overlayfs`: the rootless way of mounting, checked as root.

mod common;

use std::path::{Path, PathBuf};

use common::{Scratch, apply_fixture, assert_same_tree, snapshot};
use layerstore_driver::{CreateOpts, Driver, MountOpts};
use layerstore_overlay::MountMethod;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

/// fuse-overlayfs and /dev/fuse, or why not. Missing either skips the test, unless
/// `LAYERSTORE_REQUIRE_PRIVILEGED=1` (CI installs Debian's fuse-overlayfs).
fn fuse_overlayfs() -> Option<PathBuf> {
    let program = ["/usr/bin/fuse-overlayfs", "/usr/local/bin/fuse-overlayfs"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let reason = match (&program, Path::new("/dev/fuse").exists()) {
        (None, _) => "fuse-overlayfs is not installed",
        (Some(_), false) => "/dev/fuse does not exist",
        (Some(_), true) => return program,
    };
    assert!(
        !layerstore_testsupport::privileged_required(),
        "LAYERSTORE_REQUIRE_PRIVILEGED=1 but {reason}"
    );
    eprintln!("SKIP fuse-overlayfs test: {reason}");
    None
}

#[test]
fn fuse_overlayfs_mounts_and_unmounts_a_chain() {
    require_or_skip!(Capability::Root);
    let Some(program) = fuse_overlayfs() else {
        return;
    };
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
