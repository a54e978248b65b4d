//! Every bad input gives a typed error naming what was wrong, and leaves layers.json as it was.

use crate::common;

use std::fs::File;

use common::{Scratch, fixture_tar};
use layerstore_layers::{Error, LayerOptions, LayerStore, MountOptions};
use layerstore_testsupport::{Capability, require_or_skip};

/// A store with layers `base` (named `first`) and `other`.
fn populated() -> (Scratch, LayerStore) {
    let scratch = Scratch::new();
    let store = scratch.open();
    store
        .put(
            &LayerOptions::new().id("base1234").name("first"),
            Some(&mut File::open(fixture_tar("basic.tar")).unwrap()),
        )
        .unwrap();
    store
        .create(&LayerOptions::new().id("base5678").name("other"))
        .unwrap();
    (scratch, store)
}

/// Asserts that `f` fails with an error matching `check` and that layers.json did not change.
fn unchanged<T: std::fmt::Debug>(
    scratch: &Scratch,
    what: &str,
    f: impl FnOnce() -> layerstore_layers::Result<T>,
    check: impl FnOnce(&Error) -> bool,
) {
    let before = scratch.layers_json_bytes();
    let err = f().expect_err(what);
    assert!(check(&err), "{what}: unexpected error {err:?}");
    assert!(!err.to_string().is_empty());
    assert_eq!(
        scratch.layers_json_bytes(),
        before,
        "{what}: layers.json changed"
    );
}

#[test]
fn unknown_and_ambiguous_layers() {
    require_or_skip!(Capability::Root);
    let (scratch, store) = populated();
    let unknown = |e: &Error| {
        matches!(e, Error::LayerUnknown(k) if k == "nope") && e.go_text() == Some("layer not known")
    };
    unchanged(&scratch, "get", || store.get("nope"), unknown);
    unchanged(&scratch, "delete", || store.delete("nope"), unknown);
    unchanged(
        &scratch,
        "mount",
        || store.mount("nope", &MountOptions::default()),
        unknown,
    );
    unchanged(
        &scratch,
        "unmount",
        || store.unmount("nope", false),
        unknown,
    );
    unchanged(
        &scratch,
        "set_metadata",
        || store.set_metadata("nope", "x"),
        unknown,
    );
    unchanged(
        &scratch,
        "set_names",
        || store.set_names("nope", &[]),
        unknown,
    );
    unchanged(
        &scratch,
        "apply_diff",
        || store.apply_diff("nope", &mut &b""[..]),
        unknown,
    );
    unchanged(
        &scratch,
        "diff",
        || store.diff(None, "nope", &Default::default(), &mut Vec::new()),
        unknown,
    );
    unchanged(
        &scratch,
        "parent",
        || store.create(&LayerOptions::new().parent("nope")),
        unknown,
    );
    let ambiguous = |e: &Error| matches!(e, Error::AmbiguousId(p) if p == "base");
    unchanged(&scratch, "ambiguous get", || store.get("base"), ambiguous);
    unchanged(
        &scratch,
        "ambiguous delete",
        || store.delete("base"),
        ambiguous,
    );
    assert!(store.get("base1").is_ok(), "a unique prefix resolves");
}

#[test]
fn duplicate_and_invalid_ids_and_names() {
    require_or_skip!(Capability::Root);
    let (scratch, store) = populated();
    unchanged(
        &scratch,
        "duplicate id",
        || store.create(&LayerOptions::new().id("base1234")),
        |e| {
            matches!(e, Error::DuplicateId(id) if id == "base1234")
                && e.go_text() == Some("that ID is already in use")
        },
    );
    unchanged(
        &scratch,
        "duplicate name",
        || store.create(&LayerOptions::new().id("new").name("other")),
        |e| {
            matches!(e, Error::DuplicateName(n) if n == "other")
                && e.go_text() == Some("that name is already in use")
        },
    );
    assert!(
        !scratch.graph().join("vfs/dir/new").exists(),
        "nothing made for a refused layer"
    );
    for bad in ["", "..", "a/b", "../../etc"] {
        unchanged(
            &scratch,
            "invalid id",
            || store.create(&LayerOptions::new().id(bad)),
            |e| matches!(e, Error::InvalidId { id, .. } if id == bad),
        );
    }
}

#[test]
fn a_failing_apply_leaves_the_store_as_it_was() {
    require_or_skip!(Capability::Root);
    let (scratch, store) = populated();
    let junk = vec![0x42u8; 5000];
    unchanged(
        &scratch,
        "junk put",
        || {
            store.put(
                &LayerOptions::new().id("junk").name("j"),
                Some(&mut &junk[..]),
            )
        },
        |e| matches!(e, Error::Driver { id, op: "apply diff", .. } if id == "junk"),
    );
    assert!(!store.exists("junk").unwrap());
    assert!(!store.exists("j").unwrap(), "the name is free again");
    assert!(!scratch.graph().join("vfs/dir/junk").exists());
    assert!(
        !scratch
            .graph()
            .join("vfs-layers/junk.tar-split.gz")
            .exists()
    );
    assert!(
        !scratch
            .graph()
            .join("vfs-layers/.junk.tar-split.gz.tmp")
            .exists()
    );
    // Truncated gzip.
    let gz = std::fs::read(fixture_tar("basic.tar.gz")).unwrap();
    unchanged(
        &scratch,
        "truncated gzip",
        || {
            store.put(
                &LayerOptions::new().id("cut"),
                Some(&mut &gz[..gz.len() / 2]),
            )
        },
        |e| matches!(e, Error::Driver { .. }),
    );
    // A driver refusing options.
    let mut opts = LayerOptions::new().id("sized");
    opts.storage_opt.insert("size".into(), "10G".into());
    unchanged(
        &scratch,
        "storage opt",
        || store.create(&opts),
        |e| matches!(e, Error::Driver { op: "create", .. }),
    );
    assert_eq!(store.layers().unwrap().len(), 2);
}

#[test]
fn a_corrupt_or_truncated_layers_json_is_an_error_and_kept() {
    require_or_skip!(Capability::Root);
    let (scratch, store) = populated();
    let good = scratch.layers_json_bytes();
    let truncated = &good[..good.len() / 2];
    for bad in [
        truncated,
        b"garbage".as_slice(),
        b"[{\"id\":\"abc\"".as_slice(),
    ] {
        std::fs::write(scratch.layers_json(), bad).unwrap();
        // A fresh open fails, naming the file and the position.
        let err = layerstore_layers::LayerStore::open(scratch.options()).unwrap_err();
        let text = layerstore_model::error_chain(&err);
        assert!(matches!(err, Error::CorruptLayers { .. }), "{err:?}");
        assert!(
            text.contains("layers.json") && text.contains("line 1 column"),
            "{text}"
        );
        // A handle already open notices the change (mtime) and fails too, writing nothing.
        assert!(matches!(store.layers(), Err(Error::CorruptLayers { .. })));
        assert!(matches!(
            store.create(&LayerOptions::new()),
            Err(Error::CorruptLayers { .. })
        ));
        assert_eq!(
            scratch.layers_json_bytes(),
            bad,
            "the corrupt file was left as it was"
        );
    }
    std::fs::write(scratch.layers_json(), &good).unwrap();
    assert_eq!(
        store.layers().unwrap().len(),
        2,
        "repairing the file repairs the store"
    );
}

#[test]
fn a_corrupt_mountpoints_json_is_an_error() {
    require_or_skip!(Capability::Root);
    let (scratch, store) = populated();
    let path = scratch.run().join("vfs-layers/mountpoints.json");
    std::fs::write(&path, b"bogus").unwrap();
    let err = layerstore_layers::LayerStore::open(scratch.options()).unwrap_err();
    assert!(
        matches!(&err, Error::CorruptMounts { path: p, .. } if *p == path),
        "{err:?}"
    );
    unchanged(
        &scratch,
        "mount",
        || store.mount("first", &MountOptions::default()),
        |e| matches!(e, Error::CorruptMounts { .. }),
    );
}

#[test]
fn hand_edits_are_noticed_incomplete_layers_deleted_and_name_conflicts_resolved() {
    require_or_skip!(Capability::Root);
    let (scratch, store) = populated();
    // bats cleanup-layer: flag every layer incomplete by hand.
    let json = String::from_utf8(scratch.layers_json_bytes()).unwrap();
    let edited = json.replace("{\"id\":", "{\"flags\":{\"incomplete\":true},\"id\":");
    std::fs::write(scratch.layers_json(), edited).unwrap();
    assert!(
        store.layers().unwrap().is_empty(),
        "incomplete layers are deleted on load"
    );
    assert!(!scratch.graph().join("vfs/dir/base1234").exists());

    // Two records with one name: the later wins, and the file is rewritten.
    std::fs::write(
        scratch.layers_json(),
        br#"[{"id":"a1","names":["n"],"created":"2026-01-01T00:00:00Z"},{"id":"b2","names":["n","m"],"created":"2026-01-01T00:00:00Z"}]"#,
    )
    .unwrap();
    assert_eq!(store.get("n").unwrap().id, "b2");
    assert!(store.get("a1").unwrap().names.is_empty());
    assert_eq!(
        scratch.layers_json_bytes(),
        br#"[{"id":"a1","created":"2026-01-01T00:00:00Z"},{"id":"b2","names":["n","m"],"created":"2026-01-01T00:00:00Z"}]"#
    );
}
