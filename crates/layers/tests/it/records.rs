//! Records: create, list, get, names, metadata, flags, big data, delete, on vfs.

use crate::common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;

use common::Scratch;
use layerstore_layers::{Error, LayerOptions};
use layerstore_testsupport::{Capability, require_or_skip};

#[test]
fn a_fresh_store_has_gos_layout() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(&LayerOptions::new().name("base")).unwrap();
    let g = scratch.graph();
    let r = scratch.run();
    for (path, mode) in [
        (g.clone(), 0o40700),
        (g.join("storage.lock"), 0o100644),
        (g.join("userns.lock"), 0o100644),
        (g.join("mounts"), 0o40700),
        (g.join("tmp"), 0o40700),
        (g.join("vfs"), 0o40700),
        (g.join("vfs-layers"), 0o40700),
        (g.join("vfs-layers/layers.json"), 0o100600),
        (g.join("vfs-layers/layers.lock"), 0o100644),
        (g.join("vfs-images/images.lock"), 0o100644),
        (g.join("vfs-containers/containers.lock"), 0o100644),
        (r.join("vfs-layers/mountpoints.json"), 0o100600),
        (r.join("vfs-layers/mountpoints.lock"), 0o100644),
    ] {
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(meta.mode() & 0o170777, mode, "{}", path.display());
    }
    assert_eq!(
        std::fs::metadata(g.join("vfs-layers/layers.lock"))
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        std::fs::read(r.join("vfs-layers/mountpoints.json")).unwrap(),
        b"[]"
    );
    let json = scratch.layers_json_bytes();
    assert!(
        json.starts_with(b"[{\"id\":\""),
        "{}",
        String::from_utf8_lossy(&json)
    );
    assert!(
        json.ends_with(b"Z\"}]"),
        "no trailing newline: {}",
        String::from_utf8_lossy(&json)
    );
}

#[test]
fn create_get_lookup_and_prefixes() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    let base = store
        .create(&LayerOptions::new().id("aaaa1111").name("base").name("base"))
        .unwrap();
    assert_eq!(base.names, ["base"], "duplicate names dropped");
    let child = store
        .create(
            &LayerOptions::new()
                .id("aaaa2222")
                .parent("base")
                .name("child"),
        )
        .unwrap();
    assert_eq!(child.parent, "aaaa1111");
    let random = store.create(&LayerOptions::new().parent("aaaa2")).unwrap();
    assert_eq!(random.id.len(), 64);
    assert_eq!(random.parent, "aaaa2222");
    assert_eq!(store.get("child").unwrap().id, "aaaa2222");
    assert_eq!(store.lookup("aaaa1").unwrap(), "aaaa1111");
    assert!(store.exists("base").unwrap());
    assert!(!store.exists("nope").unwrap());
    assert!(matches!(store.get("aaaa"), Err(Error::AmbiguousId(p)) if p == "aaaa"));
    assert!(matches!(store.get("nope"), Err(Error::LayerUnknown(_))));
    let ids: Vec<String> = store.layers().unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(ids, ["aaaa1111", "aaaa2222", random.id.as_str()]);
    assert_eq!(store.size("base").unwrap(), None);
    assert!(!store.get("base").unwrap().is_incomplete());

    // A second handle (another "process" view) sees the same records.
    drop(store);
    let again = scratch.open();
    assert_eq!(again.layers().unwrap().len(), 3);
}

#[test]
fn names_move_between_layers_as_in_go() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store
        .create(&LayerOptions::new().id("one").name("a").name("b"))
        .unwrap();
    store.create(&LayerOptions::new().id("two")).unwrap();
    assert_eq!(
        store.add_names("two", &["a".into(), "c".into()]).unwrap(),
        ["a", "c"]
    );
    assert_eq!(store.get("one").unwrap().names, ["b"]);
    assert_eq!(store.get("a").unwrap().id, "two");
    assert_eq!(store.set_names("one", &["c".into()]).unwrap(), ["c"]);
    assert_eq!(store.get("two").unwrap().names, ["a"]);
    assert!(!store.exists("b").unwrap(), "a dropped name is released");
    assert_eq!(
        store
            .remove_names("two", &["a".into(), "zz".into()])
            .unwrap(),
        Vec::<String>::new()
    );
    assert!(!store.exists("a").unwrap());
    // Persisted.
    drop(store);
    let store = scratch.open();
    assert_eq!(store.get("c").unwrap().id, "one");
}

#[test]
fn metadata_flags_and_big_data() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(&LayerOptions::new().id("layer")).unwrap();
    store.set_metadata("layer", "some <metadata>").unwrap();
    assert_eq!(store.metadata("layer").unwrap(), "some <metadata>");
    store
        .set_flag("layer", "custom", serde_json::json!({"x": 1}))
        .unwrap();
    assert_eq!(
        store.get("layer").unwrap().flags["custom"],
        serde_json::json!({"x": 1})
    );
    store.clear_flag("layer", "custom").unwrap();
    assert!(store.get("layer").unwrap().flags.is_empty());

    store
        .set_big_data("layer", "key1", &mut &b"first"[..])
        .unwrap();
    store
        .set_big_data("layer", "key/2", &mut &b"second item"[..])
        .unwrap();
    store
        .set_big_data("layer", "key1", &mut &b"replaced"[..])
        .unwrap();
    assert_eq!(store.big_data_names("layer").unwrap(), ["key1", "key/2"]);
    let dir = scratch.graph().join("vfs-layers/layer");
    assert_eq!(std::fs::read(dir.join("key1")).unwrap(), b"replaced");
    assert_eq!(
        std::fs::read(dir.join("=a2V5LzI=")).unwrap(),
        b"second item"
    );
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    let mut text = String::new();
    store
        .big_data("layer", "key/2")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "second item");
    assert_eq!(store.big_data_size("layer", "key/2").unwrap(), 11);
    assert_eq!(
        store.big_data_digest("layer", "key1").unwrap().as_str(),
        format!("sha256:{}", sha256_hex(b"replaced"))
    );
    let missing = store.big_data("layer", "nope").unwrap_err();
    assert_eq!(
        missing.to_string(),
        "locating item named \"nope\" for layer with ID \"layer\": file does not exist"
    );
    assert!(matches!(
        store.set_big_data("layer", "", &mut &b""[..]),
        Err(Error::InvalidBigDataName(_))
    ));

    store.delete("layer").unwrap();
    assert!(!dir.exists(), "big data removed with the layer");
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn delete_refuses_parents_even_by_name_and_batches_children_first() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store
        .create(&LayerOptions::new().id("p").name("parent"))
        .unwrap();
    store
        .create(&LayerOptions::new().id("c").parent("p"))
        .unwrap();
    store
        .create(&LayerOptions::new().id("g").parent("c"))
        .unwrap();
    let before = scratch.layers_json_bytes();
    let err = store.delete("parent").unwrap_err();
    assert!(
        matches!(&err, Error::HasChildren { id, child } if id == "p" && child == "c"),
        "{err}"
    );
    assert_eq!(err.go_text(), Some("layer has children"));
    assert_eq!(scratch.layers_json_bytes(), before);
    // A batch holding the whole chain works, in any order.
    store.delete_many(&["p", "g", "c"]).unwrap();
    assert!(store.layers().unwrap().is_empty());
    assert!(!scratch.graph().join("vfs/dir/p").exists());
    assert_eq!(scratch.layers_json_bytes(), b"[]");
}

#[test]
fn wipe_deletes_everything() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    let mut parent = None;
    for i in 0..5 {
        let mut opts = LayerOptions::new().id(format!("layer{i}"));
        opts.parent = parent.take();
        store.create(&opts).unwrap();
        parent = Some(format!("layer{i}"));
    }
    store.mount("layer4", &Default::default()).unwrap();
    store.wipe().unwrap();
    assert!(store.layers().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(scratch.graph().join("vfs/dir"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read(scratch.run().join("vfs-layers/mountpoints.json")).unwrap(),
        b"[]"
    );
}

#[test]
fn threads_share_one_handle() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in 0..10 {
                    store
                        .create(&LayerOptions::new().id(format!("t{t}-{i}")))
                        .unwrap();
                    assert!(store.layers().unwrap().len() > i);
                }
            });
        }
    });
    assert_eq!(store.layers().unwrap().len(), 40);
    assert_eq!(scratch.open().layers().unwrap().len(), 40);
}

#[test]
fn drivers_by_name_or_auto() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let mut options = scratch.options();
    options.driver = "auto".into();
    let mut only_vfs = layerstore_layers::Registry::new();
    only_vfs.register(layerstore_vfs::registration());
    options.registry = Some(only_vfs);
    let store = layerstore_layers::LayerStore::open(options.clone()).unwrap();
    assert_eq!(store.driver_name(), "vfs", "the only registered driver");
    assert!(store.layers_dir().ends_with("vfs-layers"));
    drop(store);
    assert!(
        layerstore_layers::default_registry()
            .names()
            .any(|n| n == "vfs")
    );
    options.registry = None;
    options.driver = "nosuchdriver".into();
    let err = layerstore_layers::LayerStore::open(options.clone()).unwrap_err();
    assert!(matches!(err, Error::Driver { .. }), "{err:?}");
    assert!(err.to_string().contains("nosuchdriver"), "{err}");
    options.driver = "vfs".into();
    options.driver_options = vec!["vfs.mountopt=nodev".into()];
    assert!(matches!(
        layerstore_layers::LayerStore::open(options),
        Err(Error::Driver { .. })
    ));
}

#[test]
fn shutdown_refuses_mounted_layers_unless_forced() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(&LayerOptions::new().id("m")).unwrap();
    store.shutdown(false).unwrap();
    assert_eq!(
        std::fs::metadata(scratch.graph().join("storage.lock"))
            .unwrap()
            .len(),
        64
    );
    store.mount("m", &Default::default()).unwrap();
    store.mount("m", &Default::default()).unwrap();
    let err = store.shutdown(false).unwrap_err();
    assert!(
        matches!(&err, Error::LayerMounted(id) if id == "m"),
        "{err:?}"
    );
    assert_eq!(
        err.go_text(),
        Some("a layer is mounted: layer is in use by a container")
    );
    assert_eq!(store.mounted("m").unwrap(), 2);
    store.shutdown(true).unwrap();
    assert_eq!(store.mounted("m").unwrap(), 0);
    assert_eq!(
        std::fs::read(scratch.run().join("vfs-layers/mountpoints.json")).unwrap(),
        b"[]"
    );
}

/// Go's order: a layer without ID mappings has no unmapped parent owners, mounted or not; one
/// with mappings must be mounted first.
#[test]
fn parent_owners_checks_mappings_before_the_mount() {
    // A mapped layer's top directory is chowned to the mapped root.
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    let plain = store.create(&LayerOptions::new()).expect("create");
    assert_eq!(
        store.parent_owners(&plain.id).expect("no mappings"),
        (Vec::new(), Vec::new())
    );
    let mut options = LayerOptions::new();
    options.uid_map = vec![layerstore_layers::IDMap {
        container_id: 0,
        host_id: 100_000,
        size: 65_536,
    }];
    let mapped = store.create(&options).expect("create mapped");
    assert!(matches!(
        store.parent_owners(&mapped.id),
        Err(Error::NotMounted(id)) if id == mapped.id
    ));
}

#[test]
fn opening_sweeps_temp_files_of_interrupted_writes_in_both_roots() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(&LayerOptions::new().id("kept")).unwrap();
    drop(store);
    // What a writer killed between creating and renaming its temp files leaves.
    let layers_dir = scratch.graph().join("vfs-layers");
    let mounts_dir = scratch.run().join("vfs-layers");
    let stale = [
        layers_dir.join(".tmp-layers.json1234"),
        layers_dir.join(".gone.tar-split.gz.tmp"),
        mounts_dir.join(".tmp-mountpoints.json5678"),
    ];
    for path in &stale {
        std::fs::write(path, b"[").unwrap();
    }
    let store = scratch.open();
    for path in &stale {
        assert!(!path.exists(), "{} is swept at open", path.display());
    }
    assert!(store.exists("kept").unwrap());
    assert!(scratch.layers_json().exists());
}
