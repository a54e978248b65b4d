//! Driver options, registration, metacopy, and the naive fallbacks.

use crate::common;

use common::{Scratch, apply_fixture, assert_same_tree, snapshot};
use layerstore_driver::{CreateOpts, DiffArgs, Driver, DriverConfig, MountOpts, Registry};
use layerstore_overlay::{OverlayOptions, registration};
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

#[test]
fn options_are_parsed_as_go_names_them() {
    let parsed = OverlayOptions::parse(&[
        "overlay.mountopt=nodev,metacopy=on",
        "overlay2.ignore_chown_errors=true",
        ".skip_mount_home=1",
        "overlay.mount_program=/usr/bin/fuse-overlayfs",
        "overlay.override_kernel_check=true",
    ])
    .unwrap();
    assert_eq!(parsed.mount_options, ["nodev", "metacopy=on"]);
    assert!(parsed.ignore_chown_errors && parsed.skip_mount_home);
    assert_eq!(
        parsed.mount_program.as_deref(),
        Some(std::path::Path::new("/usr/bin/fuse-overlayfs"))
    );
    let err = OverlayOptions::parse(&["overlay.frobnicate=1"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "overlay driver does not support overlay.frobnicate options"
    );
    assert!(OverlayOptions::parse(&["vfs.mountopt=nodev"]).is_err());
    assert!(OverlayOptions::parse(&["overlay.skip_mount_home=maybe"]).is_err());
}

#[test]
fn registered_under_overlay_and_overlay2() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let mut registry = Registry::new();
    registry.register(registration());
    assert!(registry.lookup("overlay2").is_some());
    let driver = registry.open("overlay2", &scratch.config(&[])).unwrap();
    assert_eq!(driver.name(), "overlay");
    assert_eq!(driver.home(), scratch.graph_root().join("overlay"));
    driver.cleanup().unwrap();
    // A prior overlay/ home makes automatic selection pick it.
    let auto = registry
        .open(
            "",
            &DriverConfig::new(scratch.graph_root(), scratch.run_root()),
        )
        .unwrap();
    assert_eq!(auto.name(), "overlay");
    auto.cleanup().unwrap();
}

#[test]
fn default_mount_options_and_storage_options() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&["overlay.mountopt=nodev"]);
    // The feature cache is per mount option set, as Go names it.
    assert!(
        scratch
            .run_root()
            .join("overlay/native-diff(nodev)-true")
            .is_file()
    );
    let mut opts = CreateOpts::default();
    opts.storage_opt.insert("size".into(), "10G".into());
    assert!(overlay.create("quota", None, &opts).is_err());
    assert!(!overlay.exists("quota"));
    overlay
        .create("base", None, &CreateOpts::default())
        .unwrap();
    let merged = overlay.get("base", &MountOpts::default()).unwrap();
    let line = common::mountinfo_line(&merged).unwrap();
    assert!(line.contains("nodev"), "{line}");
    overlay.put("base").unwrap();
    // Volatile mounts (no syncs) can be remounted: the kernel's marker is cleared first.
    for _ in 0..2 {
        let volatile = MountOpts {
            volatile: true,
            ..Default::default()
        };
        let merged = overlay.get("base", &volatile).unwrap();
        let line = common::mountinfo_line(&merged).unwrap();
        assert!(line.contains("volatile"), "{line}");
        overlay.put("base").unwrap();
    }
    let merged = overlay.get("base", &MountOpts::default()).unwrap();
    // Removing a mounted layer unmounts it first.
    overlay.remove("base").unwrap();
    assert!(common::mountinfo_line(&merged).is_none());
    assert!(!overlay.home().join("base").exists());
}

#[test]
fn metacopy_where_the_kernel_offers_it() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&["overlay.mountopt=metacopy=on"]);
    let run = scratch.run_root().join("overlay");
    if !overlay.uses_metacopy() {
        // Not offered: the option is dropped, as Go does, and recorded as such.
        eprintln!("metacopy is not offered by this kernel; checking that it is dropped");
        assert!(run.join("metacopy(metacopy=on)-false").is_file());
        assert!(overlay.options().mount_options.is_empty());
        return;
    }
    assert!(run.join("metacopy(metacopy=on)-true").is_file());
    let status = overlay.status();
    assert!(status.contains(&("Using metacopy".into(), "true".into())));
    assert!(status.contains(&("Native Overlay Diff".into(), "false".into())));
    overlay
        .create("base", None, &CreateOpts::default())
        .unwrap();
    let entries = apply_fixture(&*overlay, "base", None, "basic.tar");
    overlay
        .create_read_write("top", Some("base"), &CreateOpts::default())
        .unwrap();
    let merged = overlay.get("top", &MountOpts::default()).unwrap();
    assert!(
        common::mountinfo_line(&merged)
            .unwrap()
            .contains("metacopy=on")
    );
    // A chmod copies up metadata only: the upper file has no data of its own.
    let tool = merged.join("usr/bin/tool");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    overlay.put("top").unwrap();
    let upper = overlay.home().join("top/diff/usr/bin/tool");
    let mut value = [0u8; 64];
    assert!(rustix::fs::lgetxattr(&upper, "trusted.overlay.metacopy", &mut value).is_ok());
    // The file getter finds the data in the lower layer.
    let getter = overlay.diff_getter("top").unwrap().unwrap();
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut getter.get(b"./usr/bin/tool").unwrap(), &mut data).unwrap();
    assert_eq!(data.len(), 100_000);
    // The base itself still gives back its tarball.
    let getter = overlay.diff_getter("base").unwrap().unwrap();
    let mut rebuilt = Vec::new();
    layerstore_tarsplit::assemble(entries.into_iter().map(Ok), &*getter, &mut rebuilt).unwrap();
    assert_eq!(
        rebuilt,
        std::fs::read(common::fixture_tar("basic.tar")).unwrap()
    );
}

#[test]
fn apply_against_another_parent_goes_through_a_mount() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    let opts = CreateOpts::default();
    overlay.create("base", None, &opts).unwrap();
    apply_fixture(&*overlay, "base", None, "basic.tar");
    overlay.create("child", Some("base"), &opts).unwrap();
    // `None` is not the child's parent: Go's naive ApplyDiff (extract into the mount, the
    // kernel makes the whiteouts).
    apply_fixture(&*overlay, "child", None, "child-whiteouts.tar");
    assert!(common::mounts_below(&overlay.home().join("child")).is_empty());

    let vfs_root = Scratch::new();
    let vfs = VfsDriver::new(&vfs_root.config(&[])).unwrap();
    vfs.create("base", None, &opts).unwrap();
    apply_fixture(&vfs, "base", None, "basic.tar");
    vfs.create("child", Some("base"), &opts).unwrap();
    apply_fixture(&vfs, "child", Some("base"), "child-whiteouts.tar");
    let want = snapshot(&vfs.get("child", &MountOpts::default()).unwrap());
    let merged = overlay.get("child", &MountOpts::default()).unwrap();
    assert_same_tree("child applied naively", &want, &snapshot(&merged));
    overlay.put("child").unwrap();
    // Naive changes against the real parent name the same paths as the native ones.
    let naive = overlay.changes(&DiffArgs::new("child", None)).unwrap();
    assert!(!naive.is_empty());
    let usage = overlay.read_write_disk_usage("child").unwrap();
    assert!(usage.inode_count > 0);
}

#[test]
fn refuses_an_overlay_backing_filesystem_and_leaves_no_mount() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    // An overlay mount to hold the graph root: overlay cannot use it as an upper layer.
    for dir in ["lower", "upper", "work", "mnt"] {
        std::fs::create_dir(scratch.path().join(dir)).unwrap();
    }
    let p = |d: &str| scratch.path().join(d).display().to_string();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        p("lower"),
        p("upper"),
        p("work")
    );
    let data = std::ffi::CString::new(data).unwrap();
    let mnt = scratch.path().join("mnt");
    rustix::mount::mount(
        "overlay",
        &mnt,
        "overlay",
        rustix::mount::MountFlags::empty(),
        data.as_c_str(),
    )
    .unwrap();
    let config = DriverConfig::new(mnt.join("graph"), scratch.run_root());
    let err = layerstore_overlay::OverlayDriver::new(&config).unwrap_err();
    assert!(err.is_not_supported(), "{err}");
    assert!(err.to_string().contains("overlayfs"), "{err}");
    let left = common::mounts_below(&mnt);
    assert!(
        left.len() == 1 && left[0] == mnt,
        "the failed start left a bind mount: {left:?}"
    );
}

#[test]
fn a_mount_label_is_passed_as_the_context_option() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    overlay
        .create("base", None, &CreateOpts::default())
        .unwrap();
    let label = "system_u:object_r:container_file_t:s0:c1,c2";
    let opts = MountOpts {
        mount_label: label.into(),
        ..Default::default()
    };
    let merged = overlay.home().join("base/merged");
    match overlay.get("base", &opts) {
        // An SELinux kernel takes the label.
        Ok(path) => {
            assert_eq!(path, merged);
            let line = common::mountinfo_line(&merged).unwrap();
            assert!(line.contains("context="), "{line}");
            overlay.put("base").unwrap();
        }
        // Without SELinux the kernel refuses `context=` (so does Go's mount): the error shows
        // the option as passed, and nothing is left mounted.
        Err(e) => {
            let message = layerstore_model::error_chain(&e);
            assert!(message.contains("layer base"), "{message}");
            assert!(
                message.contains(&format!("context=\\\"{label}\\\"")),
                "{message}"
            );
            assert!(common::mountinfo_line(&merged).is_none());
            assert!(!merged.exists(), "a failed mount leaves no mount point");
        }
    }
}
