//! Interoperability with the Go `containers-storage` tool (v1.43), both ways, on vfs.

use crate::common;

use std::collections::BTreeMap;
use std::fs::File;

use common::{BASE_TARS, Scratch, fixture_tar, uncompressed};
use layerstore_layers::{Compression, DiffOptions, LayerOptions, MountOptions};
use layerstore_testsupport::helper;
use layerstore_testsupport::{Capability, require_or_skip};

fn go_layers(scratch: &Scratch) -> Vec<serde_json::Value> {
    serde_json::from_slice(&scratch.go_ok(&["layers", "--json"])).expect("layers --json")
}

/// (a) A store the Go tool filled opens with ours: same layers, same digests, every diff byte
/// for byte, names, metadata, big data and the mount count.
#[test]
fn a_store_filled_by_go_opens_with_ours() {
    require_or_skip!(Capability::GoTool, Capability::Root);
    let scratch = Scratch::new();
    let mut ids = BTreeMap::new();
    for name in BASE_TARS {
        let out = String::from_utf8(scratch.go_ok(&["create-layer", "-n", name])).unwrap();
        let id = out.lines().next().unwrap().to_string();
        scratch.go_ok(&["applydiff", "-f", fixture_tar(name).to_str().unwrap(), &id]);
        ids.insert(name.to_string(), id);
    }
    let basic = ids["basic.tar"].clone();
    let out = String::from_utf8(scratch.go_ok(&["create-layer", "-n", "child", &basic])).unwrap();
    let child = out.lines().next().unwrap().to_string();
    scratch.go_ok(&[
        "applydiff",
        "-f",
        fixture_tar("child-whiteouts.tar").to_str().unwrap(),
        &child,
    ]);
    scratch.go_ok(&["set-metadata", "-m", "meta <data>", &basic]);
    let data = scratch.dir.path().join("data");
    std::fs::write(&data, b"big data bytes").unwrap();
    scratch.go_ok(&[
        "set-layer-data",
        "-f",
        data.to_str().unwrap(),
        &basic,
        "key/2",
    ]);
    let mountpoint = String::from_utf8(scratch.go_ok(&["mount", &child])).unwrap();

    let store = scratch.open();
    let go = go_layers(&scratch);
    let ours = store.layers().unwrap();
    assert_eq!(ours.len(), go.len());
    for (mine, theirs) in ours.iter().zip(&go) {
        assert_eq!(mine.id, theirs["id"].as_str().unwrap());
        assert_eq!(
            mine.uncompressed_digest.as_ref().map(|d| d.as_str()),
            theirs["diff-digest"].as_str()
        );
        assert_eq!(
            mine.compressed_digest.as_ref().map(|d| d.as_str()),
            theirs["compressed-diff-digest"].as_str()
        );
        assert_eq!(
            mine.uncompressed_size,
            theirs["diff-size"].as_i64().unwrap_or(0)
        );
    }
    for (name, id) in &ids {
        assert_eq!(store.lookup(name).unwrap(), *id);
        let mut out = Vec::new();
        store
            .diff(
                None,
                id,
                &DiffOptions {
                    compression: Some(Compression::None),
                },
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "sparse-pax.tar" {
            // Go's records of a PAX sparse file cannot give the tarball back (see the fixture
            // README); ours must give back what Go's own diff gives.
            let go_out = scratch.dir.path().join("go-diff");
            scratch.go_ok(&["diff", "-u", "-f", go_out.to_str().unwrap(), id]);
            assert!(
                out == std::fs::read(&go_out).unwrap(),
                "{name}: differs from Go's diff"
            );
        } else {
            assert!(
                out == uncompressed(name),
                "{name}: our diff of Go's layer differs"
            );
        }
    }
    let mut out = Vec::new();
    store
        .diff(None, "child", &DiffOptions::default(), &mut out)
        .unwrap();
    assert!(out == uncompressed("child-whiteouts.tar"));
    assert_eq!(store.metadata("basic.tar").unwrap(), "meta <data>");
    assert_eq!(store.big_data_names(&basic).unwrap(), ["key/2"]);
    assert_eq!(store.big_data_size(&basic, "key/2").unwrap(), 14);
    assert_eq!(store.mounted(&child).unwrap(), 1);
    assert_eq!(
        store
            .get(&child)
            .unwrap()
            .mount_point
            .unwrap()
            .to_str()
            .unwrap(),
        mountpoint.trim()
    );
    // Our unmount is seen by Go.
    assert_eq!(store.unmount(&child, false).unwrap(), 0);
    let out = scratch.go(&["mounted", &child]);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// (b) A store we filled opens with the Go tool: layers, layer, diff, metadata,
/// get-layer-data and mounted agree.
#[test]
fn b_a_store_filled_by_us_opens_with_go() {
    require_or_skip!(Capability::GoTool, Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    let mut ids = BTreeMap::new();
    for name in BASE_TARS {
        let (layer, _) = store
            .put(
                &LayerOptions::new().name(*name),
                Some(&mut File::open(fixture_tar(name)).unwrap()),
            )
            .unwrap();
        ids.insert(name.to_string(), layer.id);
    }
    let (child, _) = store
        .put(
            &LayerOptions::new()
                .id("child-id")
                .parent("basic.tar")
                .name("child"),
            Some(&mut File::open(fixture_tar("child-whiteouts.tar")).unwrap()),
        )
        .unwrap();
    store.set_metadata("child", "child metadata").unwrap();
    store
        .set_big_data("child", "Key-1", &mut &b"payload"[..])
        .unwrap();
    let mountpoint = store.mount("child", &MountOptions::default()).unwrap();
    drop(store);

    let go = go_layers(&scratch);
    let reopened = scratch.open();
    let ours = reopened.layers().unwrap();
    assert_eq!(go.len(), ours.len());
    for (mine, theirs) in ours.iter().zip(&go) {
        assert_eq!(theirs["id"].as_str().unwrap(), mine.id);
        assert_eq!(
            theirs["diff-digest"].as_str(),
            mine.uncompressed_digest.as_ref().map(|d| d.as_str())
        );
        assert_eq!(
            theirs["compression"].as_i64().unwrap_or(0),
            mine.compression.go_int()
        );
    }
    let layer_text = String::from_utf8(scratch.go_ok(&["layer", "child"])).unwrap();
    assert!(
        layer_text.contains(&format!("ID: {}", child.id)),
        "{layer_text}"
    );
    assert!(
        layer_text.contains(&format!("Parent: {}", ids["basic.tar"])),
        "{layer_text}"
    );
    for (name, id) in ids.iter().filter(|(n, _)| n.as_str() != "sparse-pax.tar") {
        let out = scratch.dir.path().join("diff.out");
        scratch.go_ok(&["diff", "-u", "-f", out.to_str().unwrap(), id]);
        assert!(
            std::fs::read(&out).unwrap() == uncompressed(name),
            "{name}: Go's diff of our layer differs"
        );
    }
    let out = scratch.dir.path().join("child.out");
    scratch.go_ok(&["diff", "-u", "-f", out.to_str().unwrap(), "child-id"]);
    assert!(std::fs::read(&out).unwrap() == uncompressed("child-whiteouts.tar"));
    assert_eq!(
        scratch.go_ok(&["metadata", "-q", "child-id"]),
        b"child metadata\n"
    );
    assert_eq!(
        scratch.go_ok(&["get-layer-data", "child-id", "Key-1"]),
        b"payload"
    );
    assert_eq!(scratch.go_ok(&["list-layer-data", "child-id"]), b"Key-1\n");
    assert_eq!(
        scratch.go_ok(&["mounted", "child-id"]),
        b"child-id mounted\n"
    );
    let _ = mountpoint;
    // layer-parent-owners of a mapped, mounted layer agrees with ours.
    let mut mapped = LayerOptions::new().id("mapped-id").parent("child-id");
    mapped.uid_map = vec![layerstore_layers::IDMap {
        container_id: 0,
        host_id: 100000,
        size: 65536,
    }];
    mapped.gid_map = vec![layerstore_layers::IDMap {
        container_id: 0,
        host_id: 200000,
        size: 65536,
    }];
    reopened.create(&mapped).unwrap();
    assert!(matches!(
        reopened.parent_owners("mapped-id"),
        Err(layerstore_layers::Error::NotMounted(_))
    ));
    reopened
        .mount("mapped-id", &MountOptions::default())
        .unwrap();
    let (uids, gids) = reopened.parent_owners("mapped-id").unwrap();
    let go: serde_json::Value =
        serde_json::from_slice(&scratch.go_ok(&["layer-parent-owners", "-j", "mapped-id"]))
            .unwrap();
    assert_eq!(go["UIDs"], serde_json::json!(uids));
    assert_eq!(go["GIDs"], serde_json::json!(gids));
    assert!(
        !uids.is_empty(),
        "the graph root's parents are owned by unmapped root"
    );
    assert_eq!(reopened.unmount("mapped-id", false).unwrap(), 0);
    reopened.delete("mapped-id").unwrap();
    // Go unmounts, we see it.
    scratch.go_ok(&["unmount", "child-id"]);
    assert_eq!(reopened.mounted("child-id").unwrap(), 0);
    // Go deletes one of ours, we see it gone.
    scratch.go_ok(&["delete-layer", "child-id"]);
    assert!(!reopened.exists("child-id").unwrap());
}

const PER_WORKER: usize = 6;

/// Child side of [`c_go_and_us_at_once_lose_nothing`]: one of our processes putting layers.
/// The test, re-run as a helper with the worker's name as role.
fn interop_worker_child(name: &str) {
    let graph = std::env::var("LAYERSTORE_TEST_GRAPH").expect("graph");
    let run = std::env::var("LAYERSTORE_TEST_RUN").expect("run");
    let store = layerstore_layers::LayerStore::open(layerstore_layers::StoreOptions::new(
        graph, run, "vfs",
    ))
    .expect("open");
    for i in 0..PER_WORKER {
        store
            .put(
                &LayerOptions::new().id(format!("{name}-{i}")),
                Some(&mut File::open(fixture_tar("pax.tar")).expect("tar")),
            )
            .expect("child put");
        assert!(store.exists(&format!("{name}-{i}")).expect("exists"));
    }
}

/// (c) Go processes, processes of ours and threads of ours creating layers in one store at
/// once never lose a layer.
#[test]
fn c_go_and_us_at_once_lose_nothing() {
    if let Some(role) = helper::role() {
        return interop_worker_child(&role);
    }
    require_or_skip!(Capability::GoTool, Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    const GO_WORKERS: usize = 2;
    const OUR_PROCESSES: usize = 2;
    const OUR_THREADS: usize = 2;
    let children: Vec<_> = (0..OUR_PROCESSES)
        .map(|p| {
            helper::command(&format!("proc{p}"))
                .env("LAYERSTORE_TEST_GRAPH", scratch.graph())
                .env("LAYERSTORE_TEST_RUN", scratch.run())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for w in 0..GO_WORKERS {
            let scratch = &scratch;
            s.spawn(move || {
                for i in 0..PER_WORKER {
                    scratch.go_ok(&["create-layer", "--id", &format!("go-{w}-{i}")]);
                }
            });
        }
        for t in 0..OUR_THREADS {
            let store = &store;
            s.spawn(move || {
                for i in 0..PER_WORKER {
                    store
                        .put(
                            &LayerOptions::new().id(format!("rs-{t}-{i}")),
                            Some(&mut File::open(fixture_tar("basic.tar")).unwrap()),
                        )
                        .unwrap();
                    assert!(store.layers().unwrap().len() > i);
                }
            });
        }
    });
    for mut child in children {
        assert!(
            child.wait().unwrap().success(),
            "one of our worker processes failed"
        );
    }
    let expected = (GO_WORKERS + OUR_PROCESSES + OUR_THREADS) * PER_WORKER;
    assert_eq!(store.layers().unwrap().len(), expected);
    assert_eq!(go_layers(&scratch).len(), expected);
    assert_eq!(scratch.open().layers().unwrap().len(), expected);
    // Every layer of ours still gives its diff back.
    let mut out = Vec::new();
    store
        .diff(
            None,
            "proc1-5",
            &DiffOptions {
                compression: Some(Compression::None),
            },
            &mut out,
        )
        .unwrap();
    assert!(out == uncompressed("pax.tar"));
}

/// Big-data items under the file names Go 1.43 gives them, quirk included (a key whose only
/// character outside `[.0-9a-z]` is its last is stored verbatim): what Go stored we read, what
/// we store Go reads; keys that name would make clash are refused.
#[test]
fn big_data_file_names_are_go_s_both_ways() {
    require_or_skip!(Capability::GoTool, Capability::Root);
    let scratch = Scratch::new();
    let out = String::from_utf8(scratch.go_ok(&["create-layer", "-n", "holder"])).unwrap();
    let id = out.lines().next().unwrap().to_string();
    let keys = ["abC", "é", "manifest-", "Key", "plain"];
    for key in keys {
        let data = scratch.dir.path().join("data");
        std::fs::write(&data, format!("go wrote {key}")).unwrap();
        scratch.go_ok(&["set-layer-data", "-f", data.to_str().unwrap(), &id, key]);
    }
    let store = scratch.open();
    for key in keys {
        let mut text = String::new();
        use std::io::Read;
        store
            .big_data(&id, key)
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, format!("go wrote {key}"));
    }
    store.set_big_data(&id, "xyZ", &mut &b"ours"[..]).unwrap();
    assert!(
        scratch
            .graph()
            .join("vfs-layers")
            .join(&id)
            .join("xyZ")
            .is_file()
    );
    for unsafe_key in [".", "..", "ab/"] {
        let err = store
            .set_big_data(&id, unsafe_key, &mut &b"x"[..])
            .expect_err(unsafe_key);
        assert!(
            err.to_string().contains(&format!("{unsafe_key:?}")),
            "{unsafe_key}: {err}"
        );
    }
    drop(store);
    assert_eq!(scratch.go_ok(&["get-layer-data", &id, "xyZ"]), b"ours");
}
