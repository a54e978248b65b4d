//! `LayerStore::check`: a small chain through each real driver (overlay, btrfs) gives its
//! tarballs back byte for byte and checks clean; mount counts are compared with the kernel's
//! mount table; a store broken in every way `check` knows is reported problem by problem,
//! repaired, checked clean again and still opened by the Go tool.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::{Scratch, ShutdownOnDrop, fixture_tar};
use layerstore_layers::{
    CheckOptions, CheckReport, DiffOptions, LayerOptions, LayerStore, MountOptions, Problem,
    Repair, StoreOptions,
};
use layerstore_testsupport::{BtrfsLoop, Capability, require_or_skip};

fn tarball(name: &str) -> Vec<u8> {
    fs::read(fixture_tar(name)).expect("fixture tarball")
}

fn diff_of(store: &LayerStore, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .diff(None, key, &DiffOptions::default(), &mut out)
        .expect("diff");
    out
}

fn check(store: &LayerStore) -> CheckReport {
    store.check(&CheckOptions::default()).expect("check")
}

fn assert_clean(report: &CheckReport) {
    assert!(
        report.problems.is_empty() && report.is_clean(),
        "expected a clean store, found: {:#?}",
        report.problems
    );
}

/// base (basic.tar) ← child (child-whiteouts.tar): put, diff byte for byte, mount, check,
/// unmount, delete. Returns the IDs.
fn exercise_chain(store: &LayerStore) -> (String, String) {
    let basic = tarball("basic.tar");
    let whiteouts = tarball("child-whiteouts.tar");
    let (base, _) = store
        .put(&LayerOptions::new().name("base"), Some(&mut &basic[..]))
        .expect("put base");
    let (child, _) = store
        .put(
            &LayerOptions::new().name("child").parent(&base.id),
            Some(&mut &whiteouts[..]),
        )
        .expect("put child");
    assert_eq!(diff_of(store, "base"), basic, "base diff, byte for byte");
    assert_eq!(
        diff_of(store, "child"),
        whiteouts,
        "child diff, byte for byte"
    );
    assert_clean(&check(store));

    let merged = store
        .mount("child", &MountOptions::default())
        .expect("mount child");
    assert!(merged.is_dir(), "{}", merged.display());
    assert!(
        fs::read_dir(&merged).expect("read mount").next().is_some(),
        "the mounted tree has the base's files"
    );
    assert_clean(&check(store));
    assert_eq!(store.unmount("child", false).expect("unmount"), 0);
    assert_clean(&check(store));
    (base.id, child.id)
}

#[test]
fn an_overlay_chain_round_trips_and_checks_clean() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    // `auto` picks overlay first, as Go does.
    let store = ShutdownOnDrop(
        LayerStore::open(StoreOptions::new(scratch.graph(), scratch.run(), "auto"))
            .expect("open overlay store"),
    );
    assert_eq!(store.driver_name(), "overlay");
    let (base, child) = exercise_chain(&store);
    store.delete(&child).expect("delete child");
    store.delete(&base).expect("delete base");
    assert!(store.layers().expect("layers").is_empty());
    assert_clean(&check(&store));
}

#[test]
fn overlay_mount_counts_are_compared_with_the_mount_table() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let store = ShutdownOnDrop(
        LayerStore::open(StoreOptions::new(scratch.graph(), scratch.run(), "overlay"))
            .expect("open overlay store"),
    );
    let basic = tarball("basic.tar");
    let (layer, _) = store
        .put(&LayerOptions::new(), Some(&mut &basic[..]))
        .expect("put");

    // Counted, but unmounted behind the store's back.
    let merged = store
        .mount(&layer.id, &MountOptions::default())
        .expect("mount");
    rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH).expect("umount");
    let report = check(&store);
    assert_eq!(
        report.problems,
        [Problem::StaleMountCount {
            id: layer.id.clone(),
            path: merged.clone(),
            count: 1
        }]
    );
    let repaired = store.check(&CheckOptions::repair()).expect("repair");
    assert!(repaired.is_clean(), "{repaired:#?}");
    assert_eq!(
        repaired
            .actions
            .iter()
            .map(|a| &a.repair)
            .collect::<Vec<_>>(),
        [&Repair::ResetMountCount {
            id: layer.id.clone()
        }]
    );
    assert_eq!(store.mounted(&layer.id).expect("mounted"), 0);
    assert_clean(&check(&store));
    // A mount after the reset really mounts again.
    let again = store
        .mount(&layer.id, &MountOptions::default())
        .expect("mount again");
    assert!(is_mounted(&again), "{} is not mounted", again.display());
    assert_clean(&check(&store));
    assert_eq!(store.unmount(&layer.id, false).expect("unmount"), 0);
    assert!(!is_mounted(&again));

    // Mounted, but not counted (the driver called directly).
    let path = store
        .driver()
        .get(&layer.id, &Default::default())
        .expect("driver mount");
    let report = check(&store);
    assert_eq!(
        report.problems,
        [Problem::UncountedMount {
            id: layer.id.clone(),
            path: path.clone()
        }]
    );
    let repaired = store.check(&CheckOptions::repair()).expect("repair");
    assert!(repaired.is_clean(), "{repaired:#?}");
    assert!(!is_mounted(&path), "{} is still mounted", path.display());
    assert_clean(&check(&store));
}

fn is_mounted(path: &Path) -> bool {
    let table = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    table
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

#[test]
fn a_btrfs_chain_round_trips_and_checks_clean() {
    require_or_skip!(Capability::Btrfs);
    let fs = BtrfsLoop::new(256).expect("scratch btrfs");
    let store = ShutdownOnDrop(
        LayerStore::open(StoreOptions::new(
            fs.path().join("graph"),
            fs.path().join("run"),
            "btrfs",
        ))
        .expect("open btrfs store"),
    );
    assert_eq!(store.driver_name(), "btrfs");
    let (base, child) = exercise_chain(&store);
    store.delete(&child).expect("delete child");
    store.delete(&base).expect("delete base");
    assert_clean(&check(&store));
    drop(store);
}

/// The kinds of the problems about `id`.
fn kinds_of(report: &CheckReport, id: &str) -> BTreeSet<&'static str> {
    report
        .problems
        .iter()
        .filter(|p| p.layer() == Some(id))
        .map(Problem::kind)
        .collect()
}

#[test]
fn a_broken_store_is_reported_repaired_and_still_opens_with_go() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let store = scratch.open();
    let basic = tarball("basic.tar");
    let whiteouts = tarball("child-whiteouts.tar");
    let put = |name: &str, parent: Option<&str>, tar: &[u8]| {
        let mut options = LayerOptions::new().name(name);
        options.parent = parent.map(str::to_string);
        store.put(&options, Some(&mut &tar[..])).expect("put").0.id
    };
    let good = put("good", None, &basic);
    let good_child = put("good-child", Some(&good), &whiteouts);
    let no_tar_split = put("no-tar-split", None, &basic);
    let above_it = put("above-it", Some(&no_tar_split), &whiteouts);
    let truncated = put("truncated", None, &basic);
    let no_files = put("no-files", None, &basic);
    let flipped = put("flipped", None, &basic);
    let layers_dir = store.layers_dir().to_path_buf();
    let vfs_dir = scratch.graph().join("vfs/dir");

    // Break it.
    fs::remove_file(store.tar_split_path(&no_tar_split)).expect("delete a tar-split");
    let path = store.tar_split_path(&truncated);
    let bytes = fs::read(&path).expect("read tar-split");
    fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate a tar-split");
    fs::remove_dir_all(vfs_dir.join(&no_files)).expect("delete a driver dir");
    let victim = vfs_dir.join(&flipped).join("etc/passwd");
    let mut content = fs::read(&victim).expect("a layer file");
    content[0] ^= 0x20;
    fs::write(&victim, &content).expect("flip a byte");
    fs::create_dir(vfs_dir.join("orphan-layer")).expect("orphan driver dir");
    fs::create_dir(layers_dir.join("orphan-data")).expect("orphan big-data dir");
    fs::write(layers_dir.join("orphan.tar-split.gz"), b"").expect("orphan tar-split");
    fs::write(layers_dir.join(".tmp-layers.json4242"), b"[").expect("stale temp");

    let report = check(&store);
    assert_eq!(
        kinds_of(&report, &no_tar_split),
        ["missing-tar-split"].into()
    );
    assert_eq!(kinds_of(&report, &truncated), ["corrupt-tar-split"].into());
    assert_eq!(kinds_of(&report, &no_files), ["missing-layer-data"].into());
    assert_eq!(kinds_of(&report, &flipped), ["modified-content"].into());
    assert_eq!(
        kinds_of(&report, "orphan-layer"),
        ["orphan-layer-data"].into()
    );
    for id in [&good, &good_child, &above_it] {
        assert!(kinds_of(&report, id).is_empty(), "{id}: {report:#?}");
    }
    let paths: BTreeSet<(&str, &Path)> = report
        .problems
        .iter()
        .filter_map(|p| p.path().map(|path| (p.kind(), path)))
        .filter(|(kind, _)| kind.starts_with("orphan") || kind.starts_with("stale"))
        .collect();
    assert_eq!(
        paths,
        [
            ("orphan-big-data", layers_dir.join("orphan-data").as_path()),
            (
                "orphan-tar-split",
                layers_dir.join("orphan.tar-split.gz").as_path()
            ),
            (
                "stale-temp-file",
                layers_dir.join(".tmp-layers.json4242").as_path()
            ),
        ]
        .into()
    );
    assert_eq!(report.problems.len(), 8, "{report:#?}");
    assert_eq!(report.remaining, report.problems);
    assert!(report.actions.is_empty(), "a check alone changes nothing");
    assert!(layers_dir.join("orphan.tar-split.gz").exists());

    let repaired = store.check(&CheckOptions::repair()).expect("repair");
    assert!(repaired.is_clean(), "{repaired:#?}");
    assert!(repaired.actions.iter().all(|a| a.error.is_none()));
    let deleted: Vec<&str> = repaired
        .actions
        .iter()
        .filter_map(|a| match &a.repair {
            Repair::DeleteLayer { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted.len(), 5, "{deleted:?}");
    let position = |id: &str| deleted.iter().position(|d| *d == id).expect("deleted");
    assert!(
        position(&above_it) < position(&no_tar_split),
        "children are deleted first"
    );
    assert!(repaired.actions.iter().any(|a| a.repair
        == Repair::DeleteLayer {
            id: above_it.clone(),
            descends_from: Some(no_tar_split.clone())
        }));

    assert_clean(&check(&store));
    let left: Vec<String> = store
        .layers()
        .expect("layers")
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(left, [good.clone(), good_child.clone()]);
    assert_eq!(diff_of(&store, &good_child), whiteouts);
    assert!(!vfs_dir.join("orphan-layer").exists());
    assert!(!layers_dir.join(".tmp-layers.json4242").exists());

    // The Go tool opens the repaired store and sees the same layers.
    let out = String::from_utf8(scratch.go_ok(&["layers"])).expect("utf-8");
    let go_ids: Vec<&str> = out.lines().filter(|l| !l.starts_with('\t')).collect();
    assert_eq!(go_ids, [good.as_str(), good_child.as_str()]);
}

#[test]
fn a_check_sees_what_a_load_would_clean_up() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let basic = tarball("basic.tar");
    let first = store
        .put(&LayerOptions::new().name("shared"), Some(&mut &basic[..]))
        .expect("put")
        .0;
    let second = store.create(&LayerOptions::new()).expect("create");
    let doomed = store.create(&LayerOptions::new()).expect("create");
    // Another writer left a name on two layers and an unfinished layer.
    let mut records: Vec<serde_json::Value> =
        serde_json::from_slice(&scratch.layers_json_bytes()).expect("layers.json");
    records[1]["names"] = serde_json::json!(["shared"]);
    records[2]["flags"] = serde_json::json!({"incomplete": true});
    fs::write(
        scratch.layers_json(),
        serde_json::to_vec(&records).expect("encode"),
    )
    .expect("write layers.json");

    let report = check(&store);
    assert_eq!(
        report.problems,
        [
            Problem::IncompleteLayer {
                id: doomed.id.clone()
            },
            Problem::DuplicateName {
                name: "shared".into(),
                ids: vec![first.id.clone(), second.id.clone()],
            },
        ]
    );
    let repaired = store.check(&CheckOptions::repair()).expect("repair");
    assert!(repaired.is_clean(), "{repaired:#?}");
    assert_clean(&check(&store));
    assert_eq!(store.lookup("shared").expect("name"), second.id);
    assert!(store.get(&first.id).expect("first").names.is_empty());
    assert!(!store.exists(&doomed.id).expect("exists"));
    // Quick mode checks the same records without rebuilding diffs.
    let quick = CheckOptions {
        verify_contents: false,
        ..CheckOptions::default()
    };
    assert_clean(&store.check(&quick).expect("quick check"));
}

/// Unpacks a store the Go tool wrote (`store-<driver>.tar.gz` → `<dir>/root-<driver>`).
fn unpack_go_store(dir: &Path, driver: &str) -> std::path::PathBuf {
    let status = std::process::Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xzpf"])
        .arg(layerstore_testsupport::go_fixtures().join(format!("store-{driver}.tar.gz")))
        .arg("-C")
        .arg(dir)
        .status()
        .expect("run tar");
    assert!(status.success(), "unpack store-{driver}.tar.gz");
    dir.join(format!("root-{driver}"))
}

#[test]
fn stores_the_go_tool_wrote_check_clean() {
    require_or_skip!(Capability::Root, Capability::GnuTar, Capability::Overlay);
    for driver in ["vfs", "overlay"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let graph = unpack_go_store(dir.path(), driver);
        let run = dir.path().join("run");
        let store = ShutdownOnDrop(
            LayerStore::open(StoreOptions::new(&graph, &run, driver)).expect("open Go's store"),
        );
        assert!(store.layers().expect("layers").len() > 10);
        // Go applies a PAX sparse file but cannot give it back (its tar-split records the
        // sparse map, its diff writes the file dense): the one layer check must flag.
        let sparse = store.lookup("sparse-pax").expect("sparse-pax");
        let report = check(&store);
        let kinds: Vec<(&str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.layer().unwrap_or_default(), p.kind()))
            .collect();
        assert_eq!(
            kinds,
            [
                (sparse.as_str(), "digest-mismatch"),
                (sparse.as_str(), "size-mismatch")
            ],
            "{driver}: {report:#?}"
        );
    }
}

#[test]
fn mount_counts_left_by_a_reboot_are_reset() {
    require_or_skip!(Capability::Root, Capability::GnuTar, Capability::Overlay);
    let dir = tempfile::tempdir().expect("temp dir");
    let graph = unpack_go_store(dir.path(), "overlay");
    let run = dir.path().join("run");
    // The run root as Go left it while `child` was mounted, the mount itself long gone.
    fs::create_dir_all(run.join("overlay-layers")).expect("run root");
    fs::copy(
        layerstore_testsupport::go_fixtures().join("mountpoints-overlay.json"),
        run.join("overlay-layers/mountpoints.json"),
    )
    .expect("copy mountpoints.json");
    let store = ShutdownOnDrop(
        LayerStore::open(StoreOptions::new(&graph, &run, "overlay")).expect("open Go's store"),
    );
    let child = store.lookup("child").expect("child");
    // Rebuilding diffs is not the point here (and Go's sparse-pax layer would not pass).
    let quick = CheckOptions {
        verify_contents: false,
        ..CheckOptions::default()
    };
    let report = store.check(&quick).expect("check");
    assert_eq!(report.problems.len(), 1, "{report:#?}");
    // The record names where the store was when Go wrote it (the fixture was unpacked
    // elsewhere): not this layer's mount point, so it was never applied, and repair drops it
    // without unmounting anything.
    assert!(
        matches!(&report.problems[0], Problem::UntrustedMountRecord { id, .. } if *id == child),
        "{report:#?}"
    );
    let repair = CheckOptions {
        repair: true,
        ..quick
    };
    assert!(store.check(&repair).expect("repair").is_clean());
    assert_eq!(store.mounted("child").expect("mounted"), 0);
    assert_clean(&store.check(&quick).expect("check"));
    // Mounting works again, and the mount is where the layer now is.
    let merged = store
        .mount("child", &MountOptions::default())
        .expect("mount");
    assert!(merged.starts_with(&graph), "{}", merged.display());
    assert!(is_mounted(&merged));
    assert_clean(&store.check(&quick).expect("check"));
}

#[test]
fn an_overlay_store_reached_through_a_symlink_checks_clean_while_mounted() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    fs::create_dir_all(scratch.dir.path().join("real")).expect("real dir");
    let link = scratch.dir.path().join("link");
    std::os::unix::fs::symlink("real", &link).expect("symlink");
    let store = ShutdownOnDrop(
        LayerStore::open(StoreOptions::new(
            link.join("graph"),
            link.join("run"),
            "overlay",
        ))
        .expect("open overlay store"),
    );
    let basic = tarball("basic.tar");
    let (layer, _) = store
        .put(&LayerOptions::new(), Some(&mut &basic[..]))
        .expect("put");
    let merged = store
        .mount(&layer.id, &MountOptions::default())
        .expect("mount");
    assert!(merged.starts_with(&link), "{}", merged.display());
    // The mount table shows `real/...`; the record says `link/...`: still one mount.
    assert_clean(&check(&store));
    assert_eq!(store.unmount(&layer.id, false).expect("unmount"), 0);
    assert_clean(&check(&store));
}
