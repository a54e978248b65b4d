//! A parent and a child layer: whiteouts in both styles (the overlay one checked through a real
//! overlay mount), `changes` against the Go tool's output, and `export` round trips.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;
use layerstore_archive::{
    ApplyOptions, ApplyReport, WhiteoutStyle, apply, changes, export, export_to, overlay_changes,
};
use layerstore_testsupport::{Capability, require_or_skip};

const NO_DIR_MTIMES: SnapOptions = SnapOptions {
    mtimes: true,
    dir_mtimes: false,
    root: true,
};

fn apply_file(target: &Path, tar: &str, style: WhiteoutStyle) -> ApplyReport {
    std::fs::create_dir_all(target).expect("mkdir");
    let opts = ApplyOptions {
        whiteouts: style,
        ..ApplyOptions::default()
    };
    let input = std::fs::File::open(fixtures().join("tars").join(tar)).expect("open");
    apply(target, input, Vec::new(), &opts)
        .unwrap_or_else(|e| panic!("{tar}: {e}"))
        .0
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

fn change_set(changes: &[layerstore_archive::Change]) -> BTreeSet<String> {
    changes.iter().map(ToString::to_string).collect()
}

fn fixture_set(file: &str) -> BTreeSet<String> {
    std::fs::read_to_string(fixtures().join(file))
        .expect("read")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// parent = basic; child = copy of parent + child-whiteouts applied naive-style.
struct Layers {
    _tmp: tempfile::TempDir,
    parent: std::path::PathBuf,
    child: std::path::PathBuf,
}

fn naive_layers() -> Layers {
    let tmp = tempfile::tempdir().expect("tempdir");
    let parent = tmp.path().join("parent");
    let child = tmp.path().join("child");
    let report = apply_file(&parent, "basic.tar", WhiteoutStyle::Naive);
    assert_eq!(report.overlay_markers, 0);
    copy_tree(&parent, &child);
    let report = apply_file(&child, "child-whiteouts.tar", WhiteoutStyle::Naive);
    assert_eq!(report.overlay_markers, 0, "naive deletions leave no marker");
    Layers {
        _tmp: tmp,
        parent,
        child,
    }
}

#[test]
fn naive_whiteouts_give_the_expected_tree() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let layers = naive_layers();
    // Expected: GNU tar extracts both layers over each other; then what the whiteouts mean is
    // done by hand, and the whiteout files themselves go.
    let expected = layers._tmp.path().join("expected");
    gnu_tar_extract(&fixtures().join("tars/basic.tar"), &expected);
    gnu_tar_extract(&fixtures().join("tars/child-whiteouts.tar"), &expected);
    for gone in [
        "etc/.wh.passwd-hard",
        "etc/passwd-hard",
        "usr/bin/.wh..wh..opq",
        "usr/bin/tool",
    ] {
        std::fs::remove_file(expected.join(gone)).expect("remove");
    }
    assert_same_tree(
        &snapshot(&layers.child, NO_DIR_MTIMES),
        &snapshot(&expected, NO_DIR_MTIMES),
        "naive child",
    );
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn overlay_whiteouts_merge_to_the_naive_tree() {
    require_or_skip!(Capability::Root, Capability::Overlay);
    let layers = naive_layers();
    let upper = layers._tmp.path().join("upper");
    let report = apply_file(&upper, "child-whiteouts.tar", WhiteoutStyle::Overlay);
    // One whiteout, one opaque directory.
    assert_eq!(report.overlay_markers, 2);
    // On disk, as containers/storage's overlay driver stores them.
    let snap = snapshot(&upper, FULL);
    let deleted = &snap[Path::new("etc/passwd-hard")];
    assert_eq!((deleted.kind, deleted.rdev, deleted.mode), ('c', 0, 0));
    assert_eq!(
        snap[Path::new("usr/bin")]
            .xattrs
            .get(&b"trusted.overlay.opaque"[..]),
        Some(&b"y".to_vec())
    );
    assert!(!snap.keys().any(|p| p.to_string_lossy().contains(".wh.")));

    let merged = layers._tmp.path().join("merged");
    std::fs::create_dir(&merged).expect("mkdir");
    let lowerdir = format!("lowerdir={}:{}", upper.display(), layers.parent.display());
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &lowerdir])
        .arg(&merged)
        .status()
        .expect("mount");
    assert!(status.success(), "mount overlay");
    let _mount = Mount(merged.clone());
    assert_same_tree(
        &snapshot(&merged, FULL),
        &snapshot(&layers.child, FULL),
        "overlay merged view",
    );
}

#[test]
fn naive_changes_equal_the_go_tools() {
    require_or_skip!(Capability::Root);
    let layers = naive_layers();
    let got = changes(&layers.child, Some(&layers.parent)).expect("changes");
    assert_eq!(change_set(&got), fixture_set("changes-child-vfs.txt"));
}

#[test]
fn overlay_changes_equal_the_go_tools() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().expect("tempdir");
    let parent = tmp.path().join("parent");
    let upper = tmp.path().join("upper");
    apply_file(&parent, "basic.tar", WhiteoutStyle::Naive);
    apply_file(&upper, "child-whiteouts.tar", WhiteoutStyle::Overlay);
    let got = overlay_changes(&upper, &[&parent]).expect("changes");
    assert_eq!(change_set(&got), fixture_set("changes-child-overlay.txt"));
}

#[test]
fn export_of_the_changes_rebuilds_the_child() {
    require_or_skip!(Capability::Root);
    let layers = naive_layers();
    let list = changes(&layers.child, Some(&layers.parent)).expect("changes");
    let mut stream = Vec::new();
    std::io::copy(
        &mut export(&layers.child, list.clone(), Vec::new(), Vec::new()).expect("export"),
        &mut stream,
    )
    .expect("read export");
    // The synchronous form writes the same entries.
    let direct = export_to(&layers.child, &list, &[], &[], Vec::new()).expect("export_to");
    assert_eq!(stream.len(), direct.len());
    assert!(stream.ends_with(&[0u8; 1024]));

    let rebuilt = layers._tmp.path().join("rebuilt");
    copy_tree(&layers.parent, &rebuilt);
    apply(&rebuilt, &stream[..], Vec::new(), &ApplyOptions::default()).expect("apply export");
    let opts = SnapOptions {
        root: false,
        ..FULL
    };
    assert_same_tree(
        &snapshot(&rebuilt, opts),
        &snapshot(&layers.child, opts),
        "rebuilt child",
    );
    // Nothing more changed than the list says.
    assert_eq!(
        change_set(&changes(&rebuilt, Some(&layers.parent)).expect("changes")),
        change_set(&list)
    );
}

#[test]
fn export_of_a_whole_layer_round_trips_with_id_maps() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().expect("tempdir");
    let host = tmp.path().join("host");
    let maps = vec![layerstore_archive::IdMap {
        container_id: 0,
        host_id: 100_000,
        size: 65536,
    }];
    let mapped = ApplyOptions {
        uid_map: maps.clone(),
        gid_map: maps.clone(),
        ..ApplyOptions::default()
    };
    let basic = std::fs::read(fixtures().join("tars/basic.tar")).expect("read");
    let (report, _) = apply_bytes(&host, &basic, &mapped).expect("apply mapped");
    assert_eq!(
        report.uids,
        BTreeSet::from([0, 1000]),
        "sets are container-side"
    );
    let snap = snapshot(&host, FULL);
    assert_eq!(snap[Path::new("etc/empty-file")].uid, 101_000);
    assert_eq!(
        snap[Path::new("usr/bin/tool")].mode,
        0o4755,
        "setuid survives chown"
    );
    // Everything as Adds, mapped back to container IDs.
    let all = changes(&host, None).expect("changes");
    let stream = export_to(&host, &all, &maps, &maps, Vec::new()).expect("export");
    let plain = tmp.path().join("plain");
    apply_bytes(&plain, &stream, &ApplyOptions::default()).expect("apply");
    let reference = tmp.path().join("reference");
    apply_bytes(&reference, &basic, &ApplyOptions::default()).expect("apply");
    let opts = SnapOptions {
        root: false,
        ..FULL
    };
    assert_same_tree(
        &snapshot(&plain, opts),
        &snapshot(&reference, opts),
        "unmapped export",
    );
    // An owner outside the map cannot be exported.
    std::os::unix::fs::chown(host.join("etc/passwd"), Some(5), None).expect("chown");
    let err = export_to(&host, &all, &maps, &maps, Vec::new()).expect_err("unmapped uid");
    assert!(err.to_string().contains("uid 5"), "{err}");
}

#[test]
fn export_of_an_overlay_upper_dir_rebuilds_the_child() {
    require_or_skip!(Capability::Root);
    let layers = naive_layers();
    let upper = layers._tmp.path().join("upper");
    apply_file(&upper, "child-whiteouts.tar", WhiteoutStyle::Overlay);
    let list = overlay_changes(&upper, &[&layers.parent]).expect("changes");
    let stream = export_to(&upper, &list, &[], &[], Vec::new()).expect("export");
    // The opaque dir comes back as the directory followed by its marker, the whiteout as `.wh.`.
    let names: Vec<String> = tar::Archive::new(&stream[..])
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    for want in [
        "usr/bin/",
        "usr/bin/.wh..wh..opq",
        "etc/.wh.passwd-hard",
        "usr/bin/newtool",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let rebuilt = layers._tmp.path().join("rebuilt");
    copy_tree(&layers.parent, &rebuilt);
    apply(&rebuilt, &stream[..], Vec::new(), &ApplyOptions::default()).expect("apply export");
    let opts = SnapOptions {
        root: false,
        ..FULL
    };
    assert_same_tree(
        &snapshot(&rebuilt, opts),
        &snapshot(&layers.child, opts),
        "rebuilt child",
    );
}
