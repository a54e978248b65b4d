//! Hostile and damaged files: links, FIFOs and directories where the store's files belong, a
//! truncated record file, records that cannot be used. None is followed, waited on or lost.

use std::os::unix::fs::symlink;

use layerstore_recordstore::{Error, Session};

use crate::{Scratch, ids, image};

#[test]
fn a_fifo_as_the_record_file_is_an_error_not_a_hang() {
    let scratch = Scratch::new();
    let store = scratch.open();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        scratch.json(),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let err = store.read().unwrap_err();
    assert!(
        matches!(&err, Error::NotRegularFile { found: "FIFO", path } if *path == scratch.json()),
        "{err}"
    );
    assert!(store.write().is_err());
}

#[test]
fn a_symlink_as_the_record_file_is_not_followed() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let elsewhere = scratch.temp.path().join("elsewhere.json");
    std::fs::write(&elsewhere, br#"[{"id":"planted"}]"#).unwrap();
    symlink(&elsewhere, scratch.json()).unwrap();
    let err = store.read().unwrap_err();
    assert!(matches!(err, Error::Symlink { .. }), "{err}");
    assert!(store.write().is_err());
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        br#"[{"id":"planted"}]"#,
        "the link's target is untouched"
    );
}

#[test]
fn a_directory_as_the_record_file_is_an_error() {
    let scratch = Scratch::new();
    let store = scratch.open();
    std::fs::create_dir(scratch.json()).unwrap();
    let err = store.read().unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotRegularFile {
                found: "directory",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_truncated_record_file_is_an_error_and_never_overwritten() {
    let scratch = Scratch::new();
    let store = scratch.open();
    {
        let mut session = store.write().unwrap();
        for id in ["a", "b", "c"] {
            session.insert(image(id, &[id])).unwrap();
        }
        session.save().unwrap();
    }
    let whole = std::fs::read(scratch.json()).unwrap();
    let cut = &whole[..whole.len() / 2];
    std::fs::write(scratch.json(), cut).unwrap();
    for err in [
        store.read().map(drop).unwrap_err(),
        store.write().map(drop).unwrap_err(),
    ] {
        assert!(matches!(&err, Error::Decode { .. }), "{err}");
        let text = layerstore_model::error_chain(&err);
        assert!(
            text.starts_with(&format!("loading {:?}: ", scratch.json())),
            "{text}"
        );
        assert!(text.contains("line 1 column"), "{text}");
    }
    assert_eq!(std::fs::read(scratch.json()).unwrap(), cut);
    // Put back, the store is whole again.
    std::fs::write(scratch.json(), &whole).unwrap();
    assert_eq!(ids(&store), ["a", "b", "c"]);
}

#[test]
fn records_that_cannot_be_used_do_not_stop_the_others_and_survive_saves() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    let bad_digest = r#"{"id":"ccc","digest":"sha256:zzz","names":["bad-name"]}"#;
    let bad_time = r#"{"id":"ddd","created":"yesterday"}"#;
    std::fs::write(
        scratch.json(),
        format!(r#"[{{"id":"aaa","names":["a"]}},{bad_digest},{bad_time},{{"id":"../../etc"}}]"#),
    )
    .unwrap();
    let store = scratch.open();
    {
        let session = store.read().unwrap();
        assert_eq!(session.len(), 1);
        let bad: Vec<_> = session.bad().collect();
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[0].id.as_deref(), Some("ccc"));
        assert!(
            bad[0]
                .problem
                .contains("validating image digest \"sha256:zzz\": invalid checksum digest length"),
            "{}",
            bad[0].problem
        );
        assert_eq!((bad[1].index, bad[2].index), (2, 3));
        assert!(session.get("ccc").is_none() && session.get("bad-name").is_none());
    }
    {
        let mut session = store.write().unwrap();
        session.insert(image("eee", &["bad-name"])).unwrap();
        session.save().unwrap();
    }
    let saved = std::fs::read_to_string(scratch.json()).unwrap();
    assert!(
        saved.contains(bad_digest) && saved.contains(bad_time),
        "{saved}"
    );
    assert!(saved.contains(r#"{"id":"../../etc"}"#), "{saved}");
    assert_eq!(ids(&store), ["aaa", "eee"]);
}

#[test]
fn a_symlinked_item_directory_is_neither_followed_nor_removed_through() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let target = scratch.temp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("manifest"), b"host file").unwrap();
    {
        let mut session = store.write().unwrap();
        session.insert(image("img", &[])).unwrap();
        session.save().unwrap();
    }
    symlink(&target, scratch.dir().join("img")).unwrap();
    let session = store.write().unwrap();
    let err = session
        .write_big_data("img", "manifest", b"evil")
        .unwrap_err();
    assert!(matches!(err, Error::Symlink { .. }), "{err}");
    let err = session.read_big_data("img", "manifest").unwrap_err();
    assert!(matches!(err, Error::Symlink { .. }), "{err}");
    session.remove_item_dir("img").unwrap();
    assert!(
        !scratch.dir().join("img").exists(),
        "the link itself is gone"
    );
    assert_eq!(
        std::fs::read(target.join("manifest")).unwrap(),
        b"host file"
    );
}

#[test]
fn a_symlinked_big_data_file_is_not_read_and_is_replaced_not_written_through() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let host = scratch.temp.path().join("host-file");
    std::fs::write(&host, b"host").unwrap();
    let session = {
        let mut session = store.write().unwrap();
        session.insert(image("img", &[])).unwrap();
        session.save().unwrap();
        session
    };
    std::fs::create_dir(scratch.dir().join("img")).unwrap();
    symlink(&host, scratch.dir().join("img/manifest")).unwrap();
    let err = session.read_big_data("img", "manifest").unwrap_err();
    assert!(matches!(err, Error::Symlink { .. }), "{err}");
    session.write_big_data("img", "manifest", b"ours").unwrap();
    assert_eq!(std::fs::read(&host).unwrap(), b"host");
    assert_eq!(
        session.read_big_data("img", "manifest").unwrap().unwrap(),
        b"ours"
    );
}

#[test]
fn unsafe_big_data_keys_are_refused() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let mut session = store.write().unwrap();
    session.insert(image("img", &[])).unwrap();
    for key in ["", ".", "..", "ab/", ".tmp-"] {
        let err = session.write_big_data("img", key, b"x").unwrap_err();
        assert!(matches!(err, Error::Model(_)), "{key:?}: {err}");
        assert!(session.read_big_data("img", key).is_err(), "{key:?}");
    }
    assert!(session.read_big_data("img", "absent").unwrap().is_none());
    assert!(session.big_data_len("img", "absent").unwrap().is_none());
}

#[test]
fn a_damaged_record_file_is_set_aside_byte_for_byte_and_what_it_held_is_named() {
    let scratch = Scratch::new();
    let store = scratch.open();
    {
        let mut session = store.write().unwrap();
        for id in ["a", "b", "c"] {
            session.insert(image(id, &[id])).unwrap();
        }
        session.write_big_data("a", "k", b"1").unwrap();
        session.write_big_data("c", "k", b"3").unwrap();
        session.save().unwrap();
    }
    // A file that loads is left alone, even asked.
    assert_eq!(store.set_aside_damaged().unwrap(), []);
    assert_eq!(ids(&store), ["a", "b", "c"]);

    let whole = std::fs::read(scratch.json()).unwrap();
    let cut = whole[..whole.len() / 2].to_vec();
    std::fs::write(scratch.json(), &cut).unwrap();
    assert!(store.read().is_err());
    let set_aside = store.set_aside_damaged().unwrap();
    assert_eq!(set_aside.len(), 1);
    let file = &set_aside[0];
    assert_eq!(file.path, scratch.json());
    assert_eq!(file.kept_as, scratch.dir().join("images.json.damaged-1"));
    assert_eq!(std::fs::read(&file.kept_as).unwrap(), cut);
    // Only records with big data left a directory to be named by.
    assert_eq!(file.lost, ["a", "c"]);
    assert!(!file.reason.is_empty());
    // The store reads (empty) and writes again; a second damage is kept beside the first.
    assert_eq!(ids(&store), Vec::<String>::new());
    std::fs::write(scratch.json(), b"garbage").unwrap();
    let again = store.set_aside_damaged().unwrap();
    assert_eq!(
        again[0].kept_as,
        scratch.dir().join("images.json.damaged-2")
    );
    assert_eq!(
        std::fs::read(scratch.dir().join("images.json.damaged-1")).unwrap(),
        cut
    );
}
