//! Layers made and filled by us (create + naive apply_diff), compared with GNU tar extracting
//! the same tarballs; and our apply compared with what the Go tool made of the fixtures.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_driver::{ApplyDiffOpts, CreateOpts, DiffArgs, Driver, DriverConfig, MountOpts};
use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GNU tar (POSIX format: nanosecond times, xattrs, sparse files) of the contents of `dir`.
fn tar_of(dir: &Path, tarball: &Path) {
    run(Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--sparse",
            "--format=posix",
            "--numeric-owner",
            "-cf",
        ])
        .arg(tarball)
        .arg("-C")
        .arg(dir)
        .arg("."));
}

fn setfattr(path: &Path, name: &str, value: &str) {
    run(Command::new("setfattr")
        .args(["-h", "-n", name, "-v", value])
        .arg(path));
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Three layer tarballs: a base with everything the copy must keep, a child with every kind of
/// whiteout and modification, and a grandchild.
fn make_tarballs(work: &Path) -> [PathBuf; 3] {
    let a = work.join("stage-a");
    write(&a.join("etc/conf"), "setting=1\n");
    setfattr(&a.join("etc/conf"), "user.note", "kept by the copy");
    setfattr(&a.join("etc"), "user.dir", "d");
    write(&a.join("etc/hard1"), "one inode, two names\n");
    std::fs::hard_link(a.join("etc/hard1"), a.join("etc/hard2")).unwrap();
    write(&a.join("bin/tool"), "#!/bin/true\n");
    std::fs::set_permissions(a.join("bin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let sparse = std::fs::File::create({
        std::fs::create_dir_all(a.join("data")).unwrap();
        a.join("data/sparse")
    })
    .unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"head", 0).unwrap();
    sparse.write_all_at(b"middle", 32 << 20).unwrap();
    sparse.set_len(64 << 20).unwrap();
    write(&a.join("home/user/file"), "private\n");
    std::os::unix::fs::chown(a.join("home/user/file"), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(
        a.join("home/user/file"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("etc/conf", a.join("link")).unwrap();
    std::fs::create_dir_all(a.join("dev")).unwrap();
    run(Command::new("mkfifo").arg(a.join("dev/fifo")));
    run(Command::new("mknod")
        .arg(a.join("dev/null"))
        .args(["c", "1", "3"]));
    write(&a.join("opaque-me/old1"), "1");
    write(&a.join("opaque-me/old2"), "2");
    write(&a.join("gone/file"), "bye");
    run(Command::new("touch")
        .args(["-h", "-d", "@1700000000.123456789"])
        .arg(a.join("etc/conf")));

    let b = work.join("stage-b");
    write(&b.join("etc/conf"), "setting=2\n");
    write(&b.join(".wh.gone"), "");
    write(&b.join("opaque-me/.wh..wh..opq"), "");
    write(&b.join("opaque-me/new"), "fresh");
    write(&b.join("newfile"), "added in b\n");

    let c = work.join("stage-c");
    write(&c.join(".wh.link"), "");
    write(&c.join("data2"), "added in c\n");
    write(&c.join("etc/.wh.conf"), "");

    let tarballs = [work.join("a.tar"), work.join("b.tar"), work.join("c.tar")];
    for (stage, tarball) in [a, b, c].iter().zip(&tarballs) {
        tar_of(stage, tarball);
    }
    tarballs
}

fn apply(driver: &VfsDriver, id: &str, parent: Option<&str>, tarball: &Path) {
    let bytes = std::fs::read(tarball).unwrap();
    let mut input = &bytes[..];
    let mut records = Vec::new();
    let mut opts = ApplyDiffOpts::new(&mut input);
    opts.tar_split = Some(&mut records);
    let report = driver.apply_diff(id, parent, opts).unwrap();
    assert_eq!(report.uncompressed_size, bytes.len() as u64, "{id}");
    assert!(
        !records.is_empty(),
        "{id}: tar-split records were passed through"
    );
}

fn assert_sparse(path: &Path) {
    let st = std::fs::metadata(path).unwrap();
    assert_eq!(st.len(), 64 << 20);
    assert!(
        st.blocks() * 512 < 1 << 20,
        "{path:?} is not sparse: {} blocks",
        st.blocks()
    );
}

#[test]
fn chain_of_three_layers_matches_gnu_tar() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = make_tarballs(tmp.path());
    let driver = VfsDriver::new(&DriverConfig::new(
        tmp.path().join("graph"),
        tmp.path().join("run"),
    ))
    .unwrap();

    let by_hand = tmp.path().join("by-hand");
    let mut parent = None;
    for (id, tarball) in [("a", &a), ("b", &b), ("c", &c)] {
        driver.create(id, parent, &CreateOpts::default()).unwrap();
        apply(&driver, id, parent, tarball);
        if parent.is_none() {
            common::gnu_extract(tarball, &by_hand);
        } else {
            common::apply_by_hand(tarball, &by_hand);
        }
        let ours = driver.get(id, &MountOpts::default()).unwrap();
        tree::assert_same_tree(
            &format!("layer {id}"),
            &common::snapshot(&by_hand),
            &common::snapshot(&ours),
            tree::Root::IgnoreTimes,
        );
        parent = Some(id);
    }

    // What the copies had to keep, checked one by one in the child and grandchild.
    for id in ["b", "c"] {
        let dir = driver.get(id, &MountOpts::default()).unwrap();
        let (h1, h2) = (
            std::fs::metadata(dir.join("etc/hard1")).unwrap(),
            std::fs::metadata(dir.join("etc/hard2")).unwrap(),
        );
        assert_eq!((h1.ino(), h1.nlink()), (h2.ino(), 2), "{id}: hardlink kept");
        assert_sparse(&dir.join("data/sparse"));
        let snap = common::snapshot(&dir);
        assert_eq!(
            snap[Path::new("etc")].xattrs["user.dir"],
            b"d",
            "{id}: dir xattr kept"
        );
        assert_eq!(
            std::fs::metadata(dir.join("bin/tool")).unwrap().mode() & 0o7777,
            0o4755
        );
    }
    let b_dir = driver.get("b", &MountOpts::default()).unwrap();
    let snap = common::snapshot(&b_dir);
    assert_eq!(
        snap[Path::new("etc/conf")].content.as_deref(),
        Some(&b"setting=2\n"[..])
    );
    assert!(!snap.contains_key(Path::new("gone")));
    assert!(!snap.contains_key(Path::new("opaque-me/old1")));
    assert!(snap.contains_key(Path::new("opaque-me/new")));
    // The parent is untouched by its child's apply.
    let a_snap = common::snapshot(&driver.get("a", &MountOpts::default()).unwrap());
    assert_eq!(
        a_snap[Path::new("etc/conf")].xattrs["user.note"],
        b"kept by the copy"
    );
    assert!(a_snap.contains_key(Path::new("gone/file")));

    // Export c against b, apply it onto a fresh copy of b: the result is c.
    let mut stream = Vec::new();
    driver
        .diff(&DiffArgs::new("c", Some("b")), &mut stream)
        .unwrap();
    driver
        .create("c-again", Some("b"), &CreateOpts::default())
        .unwrap();
    let mut input = &stream[..];
    driver
        .apply_diff("c-again", Some("b"), ApplyDiffOpts::new(&mut input))
        .unwrap();
    // Exported streams carry whole-second mtimes (as Go's), so compare at that precision.
    tree::assert_same_tree(
        "c rebuilt from its diff",
        &common::whole_seconds(common::snapshot(
            &driver.get("c", &MountOpts::default()).unwrap(),
        )),
        &common::whole_seconds(common::snapshot(
            &driver.get("c-again", &MountOpts::default()).unwrap(),
        )),
        tree::Root::IgnoreTimes,
    );
}

#[test]
fn our_apply_of_the_fixtures_equals_the_go_tools_layers() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let tmp = tempfile::tempdir().unwrap();
    let go_root = common::unpack_go_store(&tmp.path().join("go"));
    let go = VfsDriver::new(&DriverConfig::new(&go_root, tmp.path().join("go-run"))).unwrap();
    let ours = VfsDriver::new(&DriverConfig::new(
        tmp.path().join("graph"),
        tmp.path().join("run"),
    ))
    .unwrap();
    let ids = common::go_layer_ids();
    ours.create("basic", None, &CreateOpts::default()).unwrap();
    apply(&ours, "basic", None, &common::fixture_tar("basic.tar"));
    ours.create("child", Some("basic"), &CreateOpts::default())
        .unwrap();
    apply(
        &ours,
        "child",
        Some("basic"),
        &common::fixture_tar("child-whiteouts.tar"),
    );
    for name in ["basic", "child"] {
        tree::assert_same_tree(
            &format!("{name}: Go's layer vs ours"),
            &common::snapshot(&go.get(&ids[name], &MountOpts::default()).unwrap()),
            &common::snapshot(&ours.get(name, &MountOpts::default()).unwrap()),
            tree::Root::IgnoreTimes,
        );
    }
}
