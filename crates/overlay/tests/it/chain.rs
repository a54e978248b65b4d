//! Our overlay driver on the real kernel: layout, mounts, whiteouts, native diff.

use crate::common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::{Scratch, apply_fixture, assert_same_tree, snapshot};
use layerstore_driver::{ChangeKind, CreateOpts, DiffArgs, Driver, MountOpts};
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

fn ro() -> MountOpts {
    MountOpts {
        options: vec!["ro".into()],
        ..Default::default()
    }
}

/// basic.tar, then child-whiteouts.tar, then an empty writeable layer, in any driver.
fn build_chain(driver: &dyn Driver) -> Vec<Vec<layerstore_tarsplit::Entry>> {
    let opts = CreateOpts::default();
    driver.create("base", None, &opts).unwrap();
    let base = apply_fixture(driver, "base", None, "basic.tar");
    driver.create("child", Some("base"), &opts).unwrap();
    let child = apply_fixture(driver, "child", Some("base"), "child-whiteouts.tar");
    driver
        .create_read_write("top", Some("child"), &opts)
        .unwrap();
    vec![base, child]
}

#[test]
fn three_layer_chain_shows_what_vfs_builds_and_writes_land_in_diff() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    build_chain(&*overlay);

    let vfs_root = Scratch::new();
    let vfs = VfsDriver::new(&vfs_root.config(&[])).unwrap();
    build_chain(&vfs);

    for id in ["base", "child", "top"] {
        let want = snapshot(&vfs.get(id, &MountOpts::default()).unwrap());
        let merged = overlay.get(id, &MountOpts::default()).unwrap();
        assert_eq!(merged, overlay.home().join(id).join("merged"));
        assert_same_tree(&format!("layer {id}"), &want, &snapshot(&merged));
        if id != "top" {
            overlay.put(id).unwrap();
            assert!(common::mountinfo_line(&merged).is_none());
            assert!(!merged.exists(), "put removes merged/");
        }
    }
    // The chain really has whiteouts on disk, in the kernel's format.
    let child_diff = overlay.home().join("child/diff");
    let wh = std::fs::symlink_metadata(child_diff.join("etc/passwd-hard")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let mut opaque = [0u8; 4];
    let n = rustix::fs::lgetxattr(
        child_diff.join("usr/bin"),
        "trusted.overlay.opaque",
        &mut opaque,
    )
    .unwrap();
    assert_eq!(&opaque[..n], b"y");

    // Writes through the writeable layer's mount land in its diff/, deletions as whiteouts.
    let merged = overlay.home().join("top/merged");
    let line = common::mountinfo_line(&merged).expect("top is mounted");
    assert!(
        line.contains("upperdir=") && line.contains("workdir="),
        "{line}"
    );
    std::fs::write(merged.join("new-file"), b"hello").unwrap();
    std::fs::remove_file(merged.join("etc/passwd")).unwrap();
    std::fs::remove_dir_all(merged.join("usr")).unwrap();
    let top_diff = overlay.home().join("top/diff");
    assert_eq!(std::fs::read(top_diff.join("new-file")).unwrap(), b"hello");
    for deleted in ["etc/passwd", "usr"] {
        let st = std::fs::symlink_metadata(top_diff.join(deleted)).unwrap();
        assert!(
            st.file_type().is_char_device() && st.rdev() == 0,
            "{deleted} is not a whiteout"
        );
    }
    // The lower layers are untouched.
    assert!(overlay.home().join("child/diff/etc/passwd").is_file());
    let changes = overlay
        .changes(&DiffArgs::new("top", Some("child")))
        .unwrap();
    assert_eq!(
        common::change_lines(&changes),
        [
            "Add \"/new-file\"",
            "Delete \"/etc/passwd\"",
            "Delete \"/usr\"",
            "Modify \"/etc\""
        ]
    );
    overlay.put("top").unwrap();
    assert!(common::mountinfo_line(&merged).is_none());
}

#[test]
fn layout_is_gos() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    build_chain(&*overlay);
    let home = overlay.home();
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        std::fs::read_to_string(home.join(".has-mount-program")).unwrap(),
        "false"
    );
    overlay
        .create("fresh", None, &CreateOpts::default())
        .unwrap();
    assert_eq!(
        mode(&home.join("fresh/diff")),
        0o555,
        "a base layer's diff/"
    );
    overlay.remove("fresh").unwrap();
    let mut links = Vec::new();
    for (id, parent) in [
        ("base", None),
        ("child", Some("base")),
        ("top", Some("child")),
    ] {
        let dir = home.join(id);
        assert_eq!(mode(&dir), 0o700, "{id}");
        if let Some(parent) = parent {
            let parent_mode = mode(&home.join(parent).join("diff"));
            assert_eq!(
                mode(&dir.join("diff")),
                parent_mode,
                "{id}: parent's diff mode"
            );
        }
        assert_eq!(mode(&dir.join("work")), 0o700);
        assert_eq!(mode(&dir.join("link")), 0o644);
        let link = std::fs::read_to_string(dir.join("link")).unwrap();
        assert_eq!(link.len(), 26);
        assert!(
            link.bytes()
                .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
        );
        assert_eq!(
            std::fs::read_link(home.join("l").join(&link)).unwrap(),
            Path::new("..").join(id).join("diff")
        );
        assert_eq!(dir.join("empty").is_dir(), id == "base", "{id}: empty/");
        links.push(link);
    }
    assert!(!home.join("base/lower").exists());
    assert_eq!(
        std::fs::read_to_string(home.join("child/lower")).unwrap(),
        format!("l/{}", links[0])
    );
    assert_eq!(
        std::fs::read_to_string(home.join("top/lower")).unwrap(),
        format!("l/{}:l/{}", links[1], links[0])
    );
    assert_eq!(mode(&home.join("top/lower")), 0o644);
    assert_eq!(overlay.list_layers().unwrap(), ["base", "child", "top"]);

    // Go's probe files in the run root, and its status lines.
    let run = scratch.run_root().join("overlay");
    for probe in ["overlay-true", "native-diff()-true", "metacopy()-false"] {
        assert!(run.join(probe).is_file(), "{probe}");
    }
    let status = overlay.status();
    let keys: Vec<&str> = status.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "Backing Filesystem",
            "Supports d_type",
            "Native Overlay Diff",
            "Using metacopy"
        ]
    );
    assert_eq!(status[1].1, "true");
    assert_eq!(status[2].1, "true");
    let magic = rustix::fs::statfs(home).unwrap().f_type;
    if magic == 0xEF53 {
        assert_eq!(status[0].1, "extfs");
    }

    let md = overlay.metadata("top").unwrap();
    assert_eq!(md["UpperDir"], home.join("top/diff").to_string_lossy());
    assert_eq!(
        md["LowerDir"],
        format!(
            "{}:{}",
            home.join("child/diff").display(),
            home.join("base/diff").display()
        )
    );

    // Remove deletes the layer and its short link.
    overlay.remove("top").unwrap();
    assert!(!home.join("top").exists());
    assert!(std::fs::symlink_metadata(home.join("l").join(&links[2])).is_err());
    assert!(!overlay.exists("top"));
    overlay.remove("top").unwrap();
}

#[test]
fn home_is_a_private_bind_mount_until_cleanup() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    let home = overlay.home().to_path_buf();
    let line = common::mountinfo_line(&home).expect("home is bind-mounted");
    assert!(!line.contains("shared:"), "home must be private: {line}");
    overlay
        .create("base", None, &CreateOpts::default())
        .unwrap();
    let merged = overlay.get("base", &MountOpts::default()).unwrap();
    assert!(common::mountinfo_line(&merged).is_some());
    overlay.cleanup().unwrap();
    assert!(
        common::mountinfo_line(&merged).is_none(),
        "cleanup unmounts layers"
    );
    assert!(
        common::mountinfo_line(&home).is_none(),
        "cleanup undoes the bind mount"
    );

    let skipping = scratch.overlay(&["overlay.skip_mount_home=true"]);
    assert!(common::mountinfo_line(skipping.home()).is_none());
}

#[test]
fn mounts_are_counted_and_read_only_mounts_have_no_upper() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    build_chain(&*overlay);
    std::fs::write(overlay.home().join("child/diff/only-in-child"), b"c").unwrap();
    let merged = overlay.get("child", &ro()).unwrap();
    let line = common::mountinfo_line(&merged).unwrap();
    assert!(!line.contains("upperdir="), "{line}");
    // The layer's own `diff` is the top lower dir (named by its descriptor, as every lower).
    assert!(line.contains("lowerdir=/proc/self/fd/"), "{line}");
    assert_eq!(std::fs::read(merged.join("only-in-child")).unwrap(), b"c");
    let err = std::fs::write(merged.join("x"), b"").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
    assert_eq!(overlay.get("child", &ro()).unwrap(), merged);
    overlay.put("child").unwrap();
    assert!(common::mountinfo_line(&merged).is_some(), "still one user");
    overlay.put("child").unwrap();
    assert!(common::mountinfo_line(&merged).is_none());
    // Putting what is not mounted is fine (Go: EINVAL ignored).
    overlay.put("child").unwrap();

    // Mount options: nodev becomes a flag, the label a context= option (refused by a kernel
    // without SELinux, which is what Go does too, so only the flag is checked here).
    let nodev = MountOpts {
        options: vec!["nodev".into()],
        ..Default::default()
    };
    let merged = overlay.get("base", &nodev).unwrap();
    let line = common::mountinfo_line(&merged).unwrap();
    assert!(line.contains("nodev"), "{line}");
    overlay.put("base").unwrap();
    assert!(overlay.get("missing", &MountOpts::default()).is_err());
}

#[test]
fn lost_short_links_are_recreated_on_mount() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    build_chain(&*overlay);
    let link = std::fs::read_to_string(overlay.home().join("base/link")).unwrap();
    std::fs::remove_file(overlay.home().join("l").join(&link)).unwrap();
    let merged = overlay.get("top", &MountOpts::default()).unwrap();
    assert!(
        merged.join("etc/empty-file").is_file(),
        "base's files are visible"
    );
    assert!(std::fs::symlink_metadata(overlay.home().join("l").join(&link)).is_ok());
    overlay.put("top").unwrap();
}

#[test]
fn native_changes_diff_and_tar_split_round_trip() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    assert!(overlay.uses_native_diff());
    let entries = build_chain(&*overlay);

    // Changes of the child equal the Go tool's, as a set.
    let changes = overlay
        .changes(&DiffArgs::new("child", Some("base")))
        .unwrap();
    assert_eq!(
        common::change_lines(&changes),
        common::fixture_child_changes()
    );
    assert!(changes.iter().any(|c| c.kind == ChangeKind::Delete));

    // tar-split recorded at apply + our file getter give back each tarball byte for byte.
    for (id, name, entries) in [
        ("base", "basic.tar", &entries[0]),
        ("child", "child-whiteouts.tar", &entries[1]),
    ] {
        let getter = overlay.diff_getter(id).unwrap().unwrap();
        let mut rebuilt = Vec::new();
        layerstore_tarsplit::assemble(entries.iter().cloned().map(Ok), &*getter, &mut rebuilt)
            .unwrap();
        assert_eq!(
            rebuilt,
            std::fs::read(common::fixture_tar(name)).unwrap(),
            "{id}"
        );
    }

    // The native export of the child, applied on a vfs copy of basic, gives the child's tree.
    let mut exported = Vec::new();
    let written = overlay
        .diff(&DiffArgs::new("child", Some("base")), &mut exported)
        .unwrap();
    assert_eq!(written, exported.len() as u64);
    let names = tar_names(&exported);
    assert!(
        names.contains(&"etc/.wh.passwd-hard".to_string()),
        "{names:?}"
    );
    let opq = names
        .iter()
        .position(|n| n == "usr/bin/.wh..wh..opq")
        .unwrap();
    assert_eq!(
        names[opq - 1],
        "usr/bin/",
        "the opaque marker follows its dir"
    );
    let vfs_root = Scratch::new();
    let vfs = VfsDriver::new(&vfs_root.config(&[])).unwrap();
    vfs.create("base", None, &CreateOpts::default()).unwrap();
    apply_fixture(&vfs, "base", None, "basic.tar");
    vfs.create("child", Some("base"), &CreateOpts::default())
        .unwrap();
    let mut reader = &exported[..];
    vfs.apply_diff(
        "child",
        Some("base"),
        layerstore_driver::ApplyDiffOpts::new(&mut reader),
    )
    .unwrap();
    let merged = overlay.get("child", &ro()).unwrap();
    let mut want = snapshot(&merged);
    let mut got = snapshot(&vfs.get("child", &MountOpts::default()).unwrap());
    // Exported streams carry whole seconds.
    for node in want.values_mut().chain(got.values_mut()) {
        node.mtime.1 = 0;
    }
    assert_same_tree("child re-applied from the native diff", &want, &got);
    overlay.put("child").unwrap();

    // Native diff size: the non-directory inodes of diff/.
    let size = overlay
        .diff_size(&DiffArgs::new("child", Some("base")))
        .unwrap();
    let passwd = std::fs::metadata(overlay.home().join("child/diff/etc/passwd")).unwrap();
    let newtool = std::fs::metadata(overlay.home().join("child/diff/usr/bin/newtool")).unwrap();
    assert_eq!(size, passwd.len() + newtool.len());
    // Against a layer that is not the parent, the naive diff (through mounts) is used.
    let naive = overlay.changes(&DiffArgs::new("top", None)).unwrap();
    assert!(naive.iter().all(|c| c.kind == ChangeKind::Add));
    assert!(common::mounts_below(&overlay.home().join("top")).is_empty());
}

fn tar_names(stream: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(stream);
    archive
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}
