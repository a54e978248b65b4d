//! Go's rules for images (images.go of v1.43), checked on our store alone: creation, names and
//! their history, metadata and flags, big data and the digest list, deletion, read-only stores.

use layerstore_images::{Error, ImageStore, NamesOp, NewImage};
use layerstore_model::Timestamp;
use layerstore_recordstore::canonical_digest;
use serde_json::json;

use crate::{Scratch, sha256};

fn named(names: &[&str]) -> NewImage {
    NewImage {
        names: names.iter().map(|n| n.to_string()).collect(),
        ..NewImage::default()
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn create_draws_ids_dedupes_names_and_refuses_taken_ones_with_gos_texts() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let first = store.create(named(&["a", "b", "a"])).unwrap();
    assert_eq!(first.id.len(), 64);
    assert!(
        first
            .id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(!first.id[..12].bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(first.names, ["a", "b"]);
    assert!(
        first.names_history.is_empty(),
        "no history for names given at creation"
    );
    assert!(!first.created.is_go_zero());

    let err = store.create(named(&["c", "b"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "image name \"b\" is already associated with image {:?}: that name is already in use",
            first.id
        )
    );
    let with_id = |id: &str| NewImage {
        id: Some(id.into()),
        ..NewImage::default()
    };
    store.create(with_id("with space")).unwrap();
    let err = store.create(with_id("with space")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "an image with ID \"with space\" already exists: that ID is already in use"
    );
    assert!(matches!(
        store.create(with_id("a/b")).unwrap_err(),
        Error::Model(_)
    ));
    let err = store
        .create(NewImage {
            digest: Some("bogus".into()),
            ..NewImage::default()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "validating digests for new image: validating image digest \"bogus\": invalid checksum digest format"
    );
    let created: Timestamp = "2026-12-04T15:00:42.801083133Z".parse().unwrap();
    let dated = store
        .create(NewImage {
            created: Some(created),
            top_layer: "layer-id".into(),
            ..NewImage::default()
        })
        .unwrap();
    assert_eq!(
        (dated.created, dated.top_layer()),
        (created, Some("layer-id"))
    );
    // Nothing refused was stored.
    assert_eq!(store.images().unwrap().len(), 3);
}

#[test]
fn lookups_go_id_then_name_then_prefix_and_say_image_not_known() {
    let scratch = Scratch::new();
    let store = scratch.open();
    for (id, name) in [("abc123", "abd999"), ("abd999", "other")] {
        store
            .create(NewImage {
                id: Some(id.into()),
                names: vec![name.into()],
                ..NewImage::default()
            })
            .unwrap();
    }
    assert_eq!(store.lookup("abd999").unwrap(), "abd999", "ID before name");
    assert_eq!(store.lookup("abc").unwrap(), "abc123");
    let err = store.get("ab").unwrap_err();
    assert_eq!(
        err.to_string(),
        "locating image with ID \"ab\": image not known"
    );
    assert!(!store.exists("ab").unwrap());
    assert!(store.exists("other").unwrap());
}

#[test]
fn names_move_and_the_history_records_each_assignment_newest_first() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let one = store.create(named(&["other"])).unwrap().id;
    let two = store.create(named(&["img2"])).unwrap().id;
    // The Go tool's add-names sets old + new; the API's add puts the new ones first.
    let names = store
        .update_names(&one, &strings(&["other", "img3", "img1"]), NamesOp::Set)
        .unwrap();
    assert_eq!(names, ["other", "img3", "img1"]);
    store
        .update_names(&one, &strings(&["x"]), NamesOp::Add)
        .unwrap();
    let names = store
        .update_names(&one, &strings(&["y", "img2"]), NamesOp::Set)
        .unwrap();
    assert_eq!(names, ["y", "img2"]);
    let image = store.get(&one).unwrap();
    assert_eq!(
        image.names_history,
        ["img2", "y", "img1", "img3", "other", "x"]
    );
    // img2 moved here; the image that lost it keeps no name and gains no history.
    let loser = store.get(&two).unwrap();
    assert!(loser.names.is_empty() && loser.names_history.is_empty());
    assert_eq!(store.lookup("img2").unwrap(), one);
    let names = store
        .update_names(&one, &strings(&["y", "nope"]), NamesOp::Remove)
        .unwrap();
    assert_eq!(names, ["img2"]);
    store.update_names(&one, &[], NamesOp::Set).unwrap();
    let image = store.get(&one).unwrap();
    assert!(image.names.is_empty());
    assert_eq!(image.names_history[0], "img2", "clearing adds no history");
}

#[test]
fn metadata_flags_and_mapped_layers() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let id = store.create(named(&["i"])).unwrap().id;
    store.set_metadata("i", "meta <&>").unwrap();
    assert_eq!(store.metadata(&id).unwrap(), "meta <&>");
    store
        .set_flag("i", "nested", json!({"b": [1, 2], "a": null}))
        .unwrap();
    store.set_flag("i", "gone", json!(true)).unwrap();
    store.clear_flag("i", "gone").unwrap();
    store.add_mapped_layer("i", "m1").unwrap();
    store.add_mapped_layer("i", "M2").unwrap();
    store.remove_mapped_layer("i", "m2").unwrap();
    store.remove_mapped_layer("i", "m1").unwrap();
    let image = store.get("i").unwrap();
    assert_eq!(image.mapped_top_layers, ["M2"], "IDs compare exactly");
    let saved = std::fs::read_to_string(scratch.json()).unwrap();
    assert!(
        saved.contains(r#""metadata":"meta \u003c\u0026\u003e""#)
            && saved.contains(r#""mapped-layers":["M2"]"#)
            && saved.contains(r#""flags":{"nested":{"a":null,"b":[1,2]}}"#),
        "{saved}"
    );
}

#[test]
fn big_data_feeds_the_digest_list_and_the_first_manifest_digest_sticks() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let id = store.create(named(&["i"])).unwrap().id;
    store.set_big_data("i", "config.json", b"{}", None).unwrap();
    assert!(store.get("i").unwrap().digest.is_empty(), "not a manifest");
    let err = store
        .set_big_data("i", "manifest", b"m1", None)
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("no manifest digest callback provided: could not compute digest of item"),
        "{err}"
    );
    store
        .set_big_data("i", "manifest", b"m1", Some(&sha256))
        .unwrap();
    let first = canonical_digest(b"m1");
    assert_eq!(store.get("i").unwrap().digest, first.as_str());
    store
        .set_big_data("i", "manifest", b"m2", Some(&sha256))
        .unwrap();
    store
        .set_big_data("i", "manifest-sha256:x", b"m3", Some(&sha256))
        .unwrap();
    let image = store.get("i").unwrap();
    assert_eq!(image.digest, first.as_str(), "sticky");
    for data in [&b"m1"[..], b"m2", b"m3"] {
        let found = store.by_digest(canonical_digest(data).as_str()).unwrap();
        assert_eq!(found[0].id, id);
    }
    let err = store
        .by_digest(canonical_digest(b"{}").as_str())
        .unwrap_err();
    assert!(err.to_string().ends_with(": image not known"), "{err}");
    assert_eq!(
        image.big_data_names,
        ["config.json", "manifest", "manifest-sha256:x"]
    );
    assert_eq!(store.big_data("i", "manifest").unwrap(), b"m2");
    assert_eq!(store.big_data_size("i", "manifest").unwrap(), 2);
    assert_eq!(
        store.big_data_digest("i", "config.json").unwrap(),
        canonical_digest(b"{}").as_str()
    );
    // The file is named as Go names it.
    assert!(
        scratch
            .dir()
            .join(&id)
            .join("=bWFuaWZlc3Qtc2hhMjU2Ong=")
            .is_file()
    );
}

#[test]
fn big_data_errors_use_gos_words() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let id = store.create(named(&["i"])).unwrap().id;
    for (err, text) in [
        (
            store.set_big_data("i", "", b"", None).unwrap_err(),
            "can't set empty name for image big data item: not a valid name for a big data item",
        ),
        (
            store.big_data("i", "").unwrap_err(),
            "can't retrieve image big data value for empty name: not a valid name for a big data item",
        ),
        (
            store.big_data_size("i", "").unwrap_err(),
            "can't retrieve size of image big data with empty name: not a valid name for a big data item",
        ),
        (
            store.big_data_digest("i", "").unwrap_err(),
            "can't retrieve digest of image big data value with empty name: not a valid name for a big data item",
        ),
    ] {
        assert_eq!(err.to_string(), text);
    }
    let err = store.big_data("nosuchimage", "k").unwrap_err();
    assert!(err.to_string().contains("image not known"), "{err}");
    let err = store.big_data("i", "no-such-big-item").unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(
        store
            .big_data_size("i", "nope")
            .unwrap_err()
            .to_string()
            .ends_with("size is not known")
    );
    assert!(
        store
            .big_data_digest("i", "nope")
            .unwrap_err()
            .to_string()
            .ends_with("could not compute digest of item")
    );
    // An item file the record does not list: its size comes from the file, its digest from
    // nowhere (Go reads only the record for digests).
    std::fs::create_dir_all(scratch.dir().join(&id)).unwrap();
    std::fs::write(scratch.dir().join(&id).join("extra"), b"12345").unwrap();
    assert_eq!(store.big_data_size("i", "extra").unwrap(), 5);
    assert!(store.big_data_digest("i", "extra").is_err());
    assert!(matches!(
        store.set_big_data("i", "ab/", b"x", None).unwrap_err(),
        Error::Records(_)
    ));
}

#[test]
fn setting_the_same_data_again_writes_no_record() {
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(named(&["i"])).unwrap();
    store.set_big_data("i", "k", b"v", None).unwrap();
    store
        .update_names("i", &strings(&["i"]), NamesOp::Set)
        .unwrap();
    let lock = scratch.dir().join("images.lock");
    let token = std::fs::read(&lock).unwrap();
    let json = std::fs::read(scratch.json()).unwrap();
    store.set_big_data("i", "k", b"v", None).unwrap();
    store.set_metadata("i", "").unwrap();
    store
        .update_names("i", &strings(&["i"]), NamesOp::Set)
        .unwrap();
    assert_eq!(std::fs::read(&lock).unwrap(), token, "no save, no token");
    assert_eq!(std::fs::read(scratch.json()).unwrap(), json);
}

#[test]
fn delete_saves_the_record_first_then_removes_the_directory_and_wipe_takes_all() {
    let scratch = Scratch::new();
    let store = scratch.open();
    // Names that are no ID's prefix: a deleted "a" would find an ID starting with "a".
    let a = store.create(named(&["image-a"])).unwrap().id;
    let b = store.create(named(&["image-b"])).unwrap().id;
    store.set_big_data("image-a", "k", b"v", None).unwrap();
    store.set_big_data("image-b", "k", b"v", None).unwrap();
    let deleted = store.delete("image-a").unwrap();
    assert_eq!(deleted.id, a);
    assert!(!scratch.dir().join(&a).exists());
    assert!(
        !std::fs::read_to_string(scratch.json())
            .unwrap()
            .contains(&a)
    );
    assert!(matches!(
        store.delete("image-a").unwrap_err(),
        Error::ImageUnknown { .. }
    ));
    let wiped = store.wipe().unwrap();
    assert_eq!(wiped.iter().map(|i| &i.id).collect::<Vec<_>>(), [&b]);
    assert!(!scratch.dir().join(&b).exists());
    assert_eq!(std::fs::read_to_string(scratch.json()).unwrap(), "[]");
}

#[test]
fn a_read_only_store_refuses_every_write_in_gos_words() {
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(named(&["i"])).unwrap();
    drop(store);
    let read_only = ImageStore::open_read_only(scratch.dir()).unwrap();
    assert!(read_only.get("i").unwrap().read_only);
    let path = format!("{:?}", scratch.json());
    let refused = |result: layerstore_images::Result<()>, action: &str| {
        assert_eq!(
            result.unwrap_err().to_string(),
            format!(
                "not allowed to {action} at {path}: called a write method on a read-only store"
            )
        );
    };
    refused(
        read_only.create(named(&["j"])).map(drop),
        "create new images",
    );
    refused(read_only.set_metadata("i", "m"), "modify image metadata");
    refused(
        read_only
            .update_names("i", &strings(&["j"]), NamesOp::Set)
            .map(drop),
        "change image name assignments",
    );
    refused(
        read_only.set_flag("i", "f", json!(1)),
        "set flags on images",
    );
    refused(read_only.clear_flag("i", "f"), "clear flags on images");
    refused(
        read_only.set_big_data("i", "k", b"", None),
        "save data items associated with images",
    );
    refused(read_only.delete("i").map(drop), "delete images");
    refused(read_only.wipe().map(drop), "delete images");
    refused(
        read_only.add_mapped_layer("i", "l"),
        "modify the image store",
    );
}

#[test]
fn an_image_with_a_bad_digest_does_not_close_the_store() {
    // Go 1.43 refuses to open this store at all ("computing digests for image with ID ...").
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    std::fs::write(
        scratch.json(),
        br#"[{"id":"aaa","names":["ok"]},{"id":"ccc","digest":"sha256:zzz"}]"#,
    )
    .unwrap();
    let store = scratch.open();
    assert_eq!(store.lookup("ok").unwrap(), "aaa");
    let bad = store.bad_records().unwrap();
    assert_eq!(bad.len(), 1);
    assert_eq!(
        bad[0].problem,
        "computing digests for image with ID \"ccc\" ([]): validating image digest \"sha256:zzz\": invalid checksum digest length"
    );
    store.create(named(&["new"])).unwrap();
    assert!(
        std::fs::read_to_string(scratch.json())
            .unwrap()
            .contains(r#"{"id":"ccc","digest":"sha256:zzz"}"#)
    );
}
