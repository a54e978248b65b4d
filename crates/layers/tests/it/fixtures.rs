//! The store the Go tool wrote for the fixtures (`store-vfs.tar.gz`) opens with ours; saving
//! it again writes the same bytes; `layers-edited.json` (newer fields, an incomplete layer)
//! round-trips.

use std::process::Command;

use layerstore_layers::{DiffOptions, LayerStore, StoreOptions};
use layerstore_testsupport::{Capability, go_fixtures, require_or_skip};
use sha2::Digest as _;

fn unpack_go_store(dir: &std::path::Path) -> std::path::PathBuf {
    let status = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xzpf"])
        .arg(go_fixtures().join("store-vfs.tar.gz"))
        .arg("-C")
        .arg(dir)
        .status()
        .expect("run tar");
    assert!(status.success());
    dir.join("root-vfs")
}

#[test]
fn the_go_fixture_store_opens_and_saves_byte_for_byte() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let dir = tempfile::tempdir().unwrap();
    let graph = unpack_go_store(dir.path());
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("vfs-layers")).unwrap();
    // Go's record, its path moved to where the store now is (a record that does not name
    // where the driver keeps the layer is not trusted).
    let mounts = std::fs::read_to_string(go_fixtures().join("mountpoints-vfs.json")).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&mounts).unwrap();
    let recorded = records[0]["path"].as_str().unwrap();
    let at = recorded.find("/root-vfs/").unwrap() + "/root-vfs".len();
    let moved = format!("{}{}", graph.display(), &recorded[at..]);
    std::fs::write(
        run.join("vfs-layers/mountpoints.json"),
        mounts.replace(recorded, &moved),
    )
    .unwrap();
    let layers_json = graph.join("vfs-layers/layers.json");
    let original = std::fs::read(&layers_json).unwrap();
    assert_eq!(
        original,
        std::fs::read(go_fixtures().join("layers-vfs.json")).unwrap()
    );

    let store = LayerStore::open(StoreOptions::new(&graph, &run, "vfs")).unwrap();
    let expected: Vec<serde_json::Value> = serde_json::from_slice(&original).unwrap();
    let layers = store.layers().unwrap();
    assert_eq!(layers.len(), expected.len());
    for (mine, theirs) in layers.iter().zip(&expected) {
        assert_eq!(mine.id, theirs["id"].as_str().unwrap());
    }
    assert_eq!(
        store.mounted("child").unwrap(),
        1,
        "mountpoints.json applied"
    );
    let mapped = store.get("mapped").unwrap();
    assert_eq!(mapped.uid_map[0].host_id, 100000);

    // The child layer's diff has the digest the Go tool's diff had.
    let mut out = Vec::new();
    store
        .diff(None, "child", &DiffOptions::default(), &mut out)
        .unwrap();
    let want = std::fs::read_to_string(go_fixtures().join("child-diff-sha256-vfs.txt")).unwrap();
    assert_eq!(
        format!("{:x}", sha2::Sha256::digest(&out)),
        want.split_whitespace().next().unwrap()
    );

    // Rewriting unchanged records gives Go's bytes back.
    let metadata = store.metadata("basic").unwrap();
    store.set_metadata("basic", &metadata).unwrap();
    assert!(
        std::fs::read(&layers_json).unwrap() == original,
        "a save changed Go's layers.json"
    );
}

#[test]
fn newer_fields_survive_and_incomplete_layers_go() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let dir = tempfile::tempdir().unwrap();
    let graph = unpack_go_store(dir.path());
    let layers_json = graph.join("vfs-layers/layers.json");
    std::fs::copy(go_fixtures().join("layers-edited.json"), &layers_json).unwrap();
    let store = LayerStore::open(StoreOptions::new(&graph, dir.path().join("run"), "vfs")).unwrap();
    assert!(
        !store.exists("was-being-pulled").unwrap(),
        "the incomplete layer is deleted"
    );
    let newer = store.get("from-newer-go").unwrap();
    assert!(newer.toc_digest.is_some());
    assert_eq!(newer.flags["custom"]["s"], "x<y&z");
    // What was saved keeps every field of the newer record.
    let saved: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&layers_json).unwrap()).unwrap();
    let edited: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(go_fixtures().join("layers-edited.json")).unwrap())
            .unwrap();
    let find = |v: &[serde_json::Value], id: &str| v.iter().find(|l| l["id"] == id).cloned();
    let id = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    assert_eq!(find(&saved, id), find(&edited, id));
    assert_eq!(saved.len(), edited.len() - 1);
}
