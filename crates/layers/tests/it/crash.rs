//! Crash safety: a child process killed (SIGKILL) at each named point of `put` and `delete`.
//! Reopening deletes the incomplete layer and keeps the others; the Go tool opens the store.

use crate::common;

use std::fs::File;
use std::os::unix::process::ExitStatusExt;

use common::{Scratch, fixture_tar, uncompressed};
use layerstore_layers::{DiffOptions, LayerOptions, LayerStore, StoreOptions, crash};
use layerstore_testsupport::helper;
use layerstore_testsupport::{Capability, require_or_skip};

/// The child's side, in the process [`run_child`] starts (the calling test, re-run).
fn crash_child(role: &str) {
    let graph = std::env::var("LAYERSTORE_TEST_GRAPH").expect("graph");
    let run = std::env::var("LAYERSTORE_TEST_RUN").expect("run");
    let store = LayerStore::open(StoreOptions::new(graph, run, "vfs")).expect("child open");
    match role {
        "put" => {
            store
                .put(
                    &LayerOptions::new()
                        .id("victim")
                        .name("victim-name")
                        .parent("keep"),
                    Some(&mut File::open(fixture_tar("child-whiteouts.tar")).expect("tar")),
                )
                .expect("child put");
        }
        "delete" => store.delete("victim").expect("child delete"),
        other => panic!("unknown role {other}"),
    }
}

fn run_child(scratch: &Scratch, role: &str, point: &str) -> std::process::ExitStatus {
    helper::command(role)
        .env(crash::CRASH_ENV, point)
        .env("LAYERSTORE_TEST_GRAPH", scratch.graph())
        .env("LAYERSTORE_TEST_RUN", scratch.run())
        .status()
        .expect("spawn child")
}

fn setup() -> Scratch {
    let scratch = Scratch::new();
    let store = scratch.open();
    store
        .put(
            &LayerOptions::new().id("keep").name("kept"),
            Some(&mut File::open(fixture_tar("basic.tar")).unwrap()),
        )
        .unwrap();
    scratch
}

fn assert_keep_intact(store: &LayerStore) {
    let keep = store.get("kept").unwrap();
    assert!(!keep.is_incomplete());
    let mut out = Vec::new();
    store
        .diff(None, "keep", &DiffOptions::default(), &mut out)
        .unwrap();
    assert!(
        out == uncompressed("basic.tar"),
        "the surviving layer's diff changed"
    );
}

fn assert_victim_gone(scratch: &Scratch, store: &LayerStore, point: &str) {
    assert!(!store.exists("victim").unwrap(), "{point}");
    assert!(!store.exists("victim-name").unwrap(), "{point}");
    assert!(
        !scratch.graph().join("vfs/dir/victim").exists(),
        "{point}: driver files left"
    );
    let layers_dir = scratch.graph().join("vfs-layers");
    assert!(
        !layers_dir.join("victim.tar-split.gz").exists(),
        "{point}: tar-split left"
    );
    assert!(
        !layers_dir.join(".victim.tar-split.gz.tmp").exists(),
        "{point}: temp tar-split left"
    );
    let strays: Vec<_> = std::fs::read_dir(&layers_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(strays.is_empty(), "{point}: {strays:?}");
}

fn go_lists(scratch: &Scratch) -> Vec<String> {
    let out = scratch.go_ok(&["layers", "--json"]);
    let layers: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
    layers
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect()
}

fn killed(status: std::process::ExitStatus, point: &str) {
    assert_eq!(
        status.signal(),
        Some(9),
        "{point}: the child was not killed: {status:?}"
    );
}

#[test]
fn put_killed_at_each_step() {
    if let Some(role) = helper::role() {
        return crash_child(&role);
    }
    require_or_skip!(Capability::Root, Capability::GoTool);
    let points = [
        crash::SAVE_AFTER_TOKEN,
        crash::PUT_AFTER_INCOMPLETE_RECORD,
        crash::PUT_AFTER_DRIVER_CREATE,
        crash::PUT_AFTER_APPLY,
        crash::PUT_AFTER_TAR_SPLIT,
        crash::PUT_DONE,
    ];
    for (n, point) in points.into_iter().enumerate() {
        let scratch = setup();
        killed(run_child(&scratch, "put", point), point);
        let go_first = n % 2 == 1;
        if go_first {
            // The Go tool opens the crashed store (and cleans it up itself).
            let ids = go_lists(&scratch);
            assert!(ids.contains(&"keep".to_string()), "{point}: {ids:?}");
        }
        let store = scratch.open();
        assert_keep_intact(&store);
        if point == crash::PUT_DONE {
            let mut out = Vec::new();
            store
                .diff(None, "victim", &DiffOptions::default(), &mut out)
                .unwrap();
            assert!(out == uncompressed("child-whiteouts.tar"), "{point}");
        } else {
            assert_victim_gone(&scratch, &store, point);
        }
        let expected = if point == crash::PUT_DONE { 2 } else { 1 };
        assert_eq!(store.layers().unwrap().len(), expected, "{point}");
        assert_eq!(go_lists(&scratch).len(), expected, "{point}: Go disagrees");
    }
}

#[test]
fn delete_killed_at_each_step() {
    if let Some(role) = helper::role() {
        return crash_child(&role);
    }
    require_or_skip!(Capability::Root, Capability::GoTool);
    for point in [
        crash::DELETE_AFTER_INCOMPLETE_RECORD,
        crash::DELETE_AFTER_DRIVER_REMOVE,
    ] {
        let scratch = setup();
        scratch
            .open()
            .put(
                &LayerOptions::new().id("victim"),
                Some(&mut File::open(fixture_tar("pax.tar")).unwrap()),
            )
            .unwrap();
        killed(run_child(&scratch, "delete", point), point);
        let store = scratch.open();
        assert_victim_gone(&scratch, &store, point);
        assert_keep_intact(&store);
        assert_eq!(go_lists(&scratch), ["keep"]);
    }
}

#[test]
fn a_reader_handle_cleans_up_what_a_crashed_writer_left() {
    if let Some(role) = helper::role() {
        return crash_child(&role);
    }
    require_or_skip!(Capability::Root);
    let scratch = setup();
    let reader = scratch.open();
    killed(
        run_child(&scratch, "put", crash::PUT_AFTER_APPLY),
        "put-after-apply",
    );
    // A diff (which keeps its shared lock while streaming) reads the records as they are.
    assert_keep_intact(&reader);
    // The long-lived handle notices the change, upgrades to the write lock and cleans up.
    assert_eq!(reader.layers().unwrap().len(), 1);
    assert_victim_gone(&scratch, &reader, crash::PUT_AFTER_APPLY);
}
