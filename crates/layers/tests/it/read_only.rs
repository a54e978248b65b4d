//! A read-only store (an additional graph root): open, list, get, diff and mount work; every
//! change is `ReadOnly`; layers report read-only.

use crate::common;

use std::fs::File;

use common::{Scratch, fixture_tar, uncompressed};
use layerstore_layers::{DiffOptions, Error, LayerOptions, LayerStore, MountOptions};
use layerstore_testsupport::{Capability, require_or_skip};

#[test]
fn read_only_store_reads_and_refuses_changes() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    {
        let store = scratch.open();
        store
            .put(
                &LayerOptions::new().id("ro-layer").name("ro"),
                Some(&mut File::open(fixture_tar("basic.tar")).unwrap()),
            )
            .unwrap();
        // An incomplete record must survive a read-only open.
        store.create(&LayerOptions::new().id("half")).unwrap();
        store
            .set_flag("half", "incomplete", serde_json::Value::Bool(true))
            .unwrap();
    }
    let before = scratch.layers_json_bytes();
    let ro_run = scratch.dir.path().join("other-run");
    let store = LayerStore::open(
        layerstore_layers::StoreOptions::new(scratch.graph(), &ro_run, "vfs").read_only(),
    )
    .unwrap();
    assert!(store.is_read_only());
    let layers = store.layers().unwrap();
    assert_eq!(layers.len(), 2);
    assert!(layers.iter().all(|l| l.read_only));
    assert!(
        store.get("half").unwrap().is_incomplete(),
        "read-only stores keep incomplete layers"
    );
    let mut out = Vec::new();
    store
        .diff(None, "ro", &DiffOptions::default(), &mut out)
        .unwrap();
    assert!(out == uncompressed("basic.tar"));
    let path = store.mount("ro", &MountOptions::default()).unwrap();
    assert!(path.join("etc").exists() || std::fs::read_dir(&path).unwrap().count() > 0);
    assert_eq!(store.mounted("ro").unwrap(), 1);
    assert_eq!(store.unmount("ro", false).unwrap(), 0);

    let read_only = |r: Result<(), Error>| {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::ReadOnly(_)), "{e:?}");
        assert_eq!(
            e.go_text(),
            Some("called a write method on a read-only store")
        );
    };
    read_only(store.create(&LayerOptions::new()).map(drop));
    read_only(store.delete("ro"));
    read_only(store.set_metadata("ro", "x"));
    read_only(store.set_names("ro", &["x".into()]).map(drop));
    read_only(store.set_big_data("ro", "k", &mut &b""[..]));
    read_only(store.apply_diff("ro", &mut &b""[..]).map(drop));
    read_only(store.set_flag("ro", "f", serde_json::Value::Null));
    read_only(store.wipe());
    assert_eq!(scratch.layers_json_bytes(), before);

    // Duplicate names cannot be fixed in a read-only store: an error, as in Go.
    std::fs::write(
        scratch.layers_json(),
        br#"[{"id":"a1","names":["n"]},{"id":"b2","names":["n"]}]"#,
    )
    .unwrap();
    let err = store.layers().unwrap_err();
    assert!(
        matches!(err, Error::DuplicateNamesReadOnly { ref name, .. } if name == "n"),
        "{err:?}"
    );
}
