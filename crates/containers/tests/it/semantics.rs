//! Go's rules for containers (containers.go of v1.43 and the record part of the Store's
//! CreateContainer), checked on our store alone.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};

use layerstore_containers::{
    ContainerStore, Error, NamesOp, NewContainer, VOLATILE_CONTAINERS_JSON,
};
use layerstore_model::IDMap;
use layerstore_recordstore::canonical_digest;
use serde_json::{Value, json};

use crate::{Scratch, on_layer};

#[test]
fn create_records_flags_as_go_writes_them() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let plain = store.create(on_layer("l1", &["c1", "c2", "c1"])).unwrap();
    assert_eq!(plain.names, ["c1", "c2"]);
    assert_eq!(plain.image_id, "");
    assert_eq!(
        plain.flags,
        BTreeMap::from([
            ("MountLabel".to_owned(), json!("")),
            ("ProcessLabel".to_owned(), json!(""))
        ])
    );
    let special = store
        .create(NewContainer {
            id: Some("myid".into()),
            image_id: "img".into(),
            metadata: "meta".into(),
            mount_opts: Some(vec!["nodev".into(), "ro".into()]),
            volatile: true,
            uid_map: vec![IDMap {
                container_id: 0,
                host_id: 100_000,
                size: 65_536,
            }],
            flags: BTreeMap::from([
                ("MountLabel".to_owned(), json!("m")),
                ("ProcessLabel".to_owned(), json!("p")),
            ]),
            ..on_layer("l2", &[])
        })
        .unwrap();
    assert!(special.is_volatile());
    let saved = std::fs::read_to_string(scratch.json()).unwrap();
    let record = saved.split("},{").nth(1).unwrap();
    assert!(
        record
            .starts_with(r#""id":"myid","image":"img","layer":"l2","metadata":"meta","created":"#),
        "{record}"
    );
    assert!(
        record.ends_with(r#""uidmap":[{"container_id":0,"host_id":100000,"size":65536}],"flags":{"MountLabel":"m","MountOpts":["nodev","ro"],"ProcessLabel":"p","Volatile":true}}]"#),
        "{record}"
    );
    let half = NewContainer {
        flags: BTreeMap::from([("MountLabel".to_owned(), json!(""))]),
        ..on_layer("l3", &[])
    };
    assert_eq!(
        store.create(half).unwrap_err().to_string(),
        "ProcessLabel and Mountlabel must either not be specified or both specified"
    );
}

#[test]
fn create_refuses_taken_ids_names_and_overlapping_maps_and_stores_nothing() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let first = store.create(on_layer("l1", &["c1"])).unwrap();
    let err = store.create(on_layer("l2", &["c1"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the container name \"c1\" is already in use by {}. You have to remove that container to be able to reuse that name: that name is already in use",
            first.id
        )
    );
    let err = store
        .create(NewContainer {
            id: Some(first.id.clone()),
            ..on_layer("l2", &[])
        })
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateId { .. }), "{err}");
    assert!(err.to_string().ends_with("that ID is already in use"));
    let err = store
        .create(NewContainer {
            gid_map: vec![
                IDMap {
                    container_id: 0,
                    host_id: 1,
                    size: 10,
                },
                IDMap {
                    container_id: 20,
                    host_id: 5,
                    size: 1,
                },
            ],
            ..on_layer("l2", &[])
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the specified UID and/or GID mapping 20:5:1 conflicts with other mappings: invalid mappings specified"
    );
    assert_eq!(store.containers().unwrap().len(), 1);
}

#[test]
fn lookups_go_id_name_layer_then_prefix() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let a = store
        .create(NewContainer {
            id: Some("aaa111".into()),
            ..on_layer("bbb222", &["ccc333"])
        })
        .unwrap();
    let b = store
        .create(NewContainer {
            id: Some("ccc333".into()),
            ..on_layer("layer-b", &[])
        })
        .unwrap();
    assert_eq!(store.lookup("ccc333").unwrap(), b.id, "ID before name");
    assert_eq!(store.lookup("bbb222").unwrap(), a.id, "by layer");
    assert_eq!(store.lookup("aaa").unwrap(), a.id, "by prefix");
    assert_eq!(store.read().unwrap().by_layer("layer-b").unwrap().id, b.id);
    assert_eq!(
        store.get("zzz").unwrap_err().to_string(),
        "locating container with ID \"zzz\": container not known"
    );
}

#[test]
fn names_move_between_containers_without_history() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let one = store.create(on_layer("l1", &["a", "b"])).unwrap().id;
    let two = store.create(on_layer("l2", &["c"])).unwrap().id;
    let names = store
        .update_names(&two, &["b".into()], NamesOp::Add)
        .unwrap();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(store.get(&one).unwrap().names, ["a"]);
    store
        .update_names(&two, &["c".into()], NamesOp::Remove)
        .unwrap();
    assert_eq!(store.get(&two).unwrap().names, ["b"]);
    assert!(
        !std::fs::read_to_string(scratch.json())
            .unwrap()
            .contains("history")
    );
}

#[test]
fn big_data_digests_are_sha256_and_missing_ones_come_from_the_file_without_a_write() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let id = store.create(on_layer("l1", &["c"])).unwrap().id;
    store.set_big_data("c", "config.json", b"{}").unwrap();
    store.set_big_data("c", "Key", b"value").unwrap();
    assert_eq!(store.big_data_names("c").unwrap(), ["config.json", "Key"]);
    assert_eq!(store.big_data("c", "Key").unwrap(), b"value");
    assert!(scratch.dir().join(&id).join("=S2V5").is_file());
    assert_eq!(
        store.big_data_digest("c", "config.json").unwrap(),
        canonical_digest(b"{}").as_str()
    );
    // An item whose file exists but which the record does not describe (written by hand, or
    // by a writer killed between the file and the record): Go 1.43 tries to record it under
    // its read lock and fails with "container store is not locked". We compute, and write
    // nothing.
    std::fs::write(scratch.dir().join(&id).join("extra"), b"12345").unwrap();
    let lock = scratch.dir().join("containers.lock");
    let token = std::fs::read(&lock).unwrap();
    let json = std::fs::read(scratch.json()).unwrap();
    let reader = store.read().unwrap();
    assert_eq!(reader.big_data_size("c", "extra").unwrap(), 5);
    assert_eq!(
        reader.big_data_digest("c", "extra").unwrap(),
        canonical_digest(b"12345").as_str()
    );
    drop(reader);
    assert_eq!(std::fs::read(&lock).unwrap(), token);
    assert_eq!(std::fs::read(scratch.json()).unwrap(), json);
    for (err, text) in [
        (
            store.set_big_data("c", "", b"").unwrap_err(),
            "can't set empty name for container big data item: not a valid name for a big data item",
        ),
        (
            store.big_data("c", "").unwrap_err(),
            "can't retrieve container big data value for empty name: not a valid name for a big data item",
        ),
        (
            store.big_data_size("c", "").unwrap_err(),
            "can't retrieve size of container big data with empty name: not a valid name for a big data item",
        ),
        (
            store.big_data_digest("c", "").unwrap_err(),
            "can't retrieve digest of container big data value with empty name: not a valid name for a big data item",
        ),
    ] {
        assert_eq!(err.to_string(), text);
    }
    assert!(
        store
            .big_data("c", "nope")
            .unwrap_err()
            .to_string()
            .ends_with("file does not exist")
    );
    assert!(
        store
            .big_data_size("c", "nope")
            .unwrap_err()
            .to_string()
            .ends_with("size is not known")
    );
    assert!(
        store
            .big_data_digest("c", "nope")
            .unwrap_err()
            .to_string()
            .ends_with("could not compute digest of item")
    );
    // `userdata` would be the user data directory (Go mixes them up).
    assert!(store.set_big_data("c", "userdata", b"x").is_err());
}

#[test]
fn directories_are_made_0700_on_demand_without_following_links() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let id = store.create(on_layer("l1", &["c"])).unwrap().id;
    let graph = store.directory("c").unwrap();
    let run = store.run_directory(&id).unwrap();
    assert_eq!(graph, scratch.dir().join(&id).join("userdata"));
    assert_eq!(run, scratch.run_dir().join(&id).join("userdata"));
    for dir in [
        &graph,
        &run,
        &scratch.dir().join(&id),
        &scratch.run_dir().join(&id),
    ] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{dir:?}");
    }
    // A planted link is refused, not followed.
    let other = store.create(on_layer("l2", &["d"])).unwrap().id;
    let outside = scratch.temp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    symlink(&outside, scratch.run_dir().join(&other)).unwrap();
    assert!(store.run_directory("d").is_err());
    assert!(!outside.join("userdata").exists());
}

#[test]
fn delete_removes_the_record_then_both_directories_and_wipe_takes_all() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let id = store.create(on_layer("l1", &["c"])).unwrap().id;
    let graph = store.directory("c").unwrap();
    let run = store.run_directory("c").unwrap();
    std::fs::create_dir_all(graph.join("deep/er")).unwrap();
    std::fs::write(graph.join("deep/er/file"), b"x").unwrap();
    std::fs::write(run.join("pidfile"), b"1").unwrap();
    store.set_big_data("c", "k", b"v").unwrap();
    let outside = scratch.temp.path().join("keep");
    std::fs::write(&outside, b"keep").unwrap();
    symlink(&outside, run.join("link")).unwrap();
    assert_eq!(store.delete("l1").unwrap().id, id, "found by its layer");
    assert!(!scratch.dir().join(&id).exists());
    assert!(!scratch.run_dir().join(&id).exists());
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    let a = store.create(on_layer("la", &[])).unwrap().id;
    store.run_directory(&a).unwrap();
    let b = store.create(on_layer("lb", &[])).unwrap().id;
    assert_eq!(store.wipe().unwrap().len(), 2);
    assert!(!scratch.run_dir().join(&a).exists() && !scratch.dir().join(&b).exists());
    assert_eq!(std::fs::read_to_string(scratch.json()).unwrap(), "[]");
}

#[test]
fn volatile_containers_of_newer_go_stay_in_their_file() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    std::fs::write(
        scratch.json(),
        br#"[{"id":"stable","names":["shared"],"image":"","layer":"ls","created":"2026-12-04T16:09:50.088070463Z"}]"#,
    )
    .unwrap();
    let volatile_path = scratch.dir().join(VOLATILE_CONTAINERS_JSON);
    std::fs::write(
        &volatile_path,
        br#"[{"id":"vol","names":["shared","v"],"image":"","layer":"lv","created":"2026-12-04T16:09:50.088070463Z","flags":{"Volatile":true}}]"#,
    )
    .unwrap();
    let store = ContainerStore::open(scratch.dir(), scratch.run_dir()).unwrap();
    // The later record (the volatile file is read second) keeps the name, as newer Go does.
    assert_eq!(store.lookup("shared").unwrap(), "vol");
    assert_eq!(store.lookup("lv").unwrap(), "vol");
    assert_eq!(
        std::fs::read_to_string(scratch.json()).unwrap(),
        r#"[{"id":"stable","image":"","layer":"ls","created":"2026-12-04T16:09:50.088070463Z"}]"#,
        "the repair saved the file that lost the name"
    );
    store.set_metadata("vol", "m").unwrap();
    store.create(on_layer("ln", &["new"])).unwrap();
    let volatile: Value = serde_json::from_slice(&std::fs::read(&volatile_path).unwrap()).unwrap();
    assert_eq!(volatile.as_array().unwrap().len(), 1);
    assert_eq!(volatile[0]["metadata"], "m");
    let stable = std::fs::read_to_string(scratch.json()).unwrap();
    assert!(
        stable.contains("\"new\"") && !stable.contains("\"vol\""),
        "{stable}"
    );
    store.delete("vol").unwrap();
    assert_eq!(std::fs::read_to_string(&volatile_path).unwrap(), "[]");
}
