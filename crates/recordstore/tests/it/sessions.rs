//! Sessions: what a session sees, when records are read again, what is saved and when.

use std::os::unix::fs::MetadataExt;

use layerstore_model::Image;
use layerstore_recordstore::{Error, RecordStore};

use crate::{Scratch, ids, image, layout};

#[test]
fn a_second_handle_sees_a_save_through_the_token() {
    let scratch = Scratch::new();
    let (a, b) = (scratch.open(), scratch.open());
    assert!(b.records().unwrap().is_empty());
    {
        let mut session = a.write().unwrap();
        session.insert(image("one", &["n1"])).unwrap();
        assert!(session.save().unwrap());
    }
    assert_eq!(ids(&b), ["one"]);
    let token = std::fs::read(scratch.lock()).unwrap();
    assert_eq!(token.len(), 64, "a save writes the 64-byte token");
}

#[test]
fn a_save_that_changes_nothing_writes_nothing() {
    let scratch = Scratch::new();
    let store = scratch.open();
    {
        let mut session = store.write().unwrap();
        session.insert(image("one", &["n1"])).unwrap();
        session.save().unwrap();
    }
    let token = std::fs::read(scratch.lock()).unwrap();
    let inode = std::fs::metadata(scratch.json()).unwrap().ino();
    {
        let mut session = store.write().unwrap();
        session.update("one", |i| i.metadata.clear()).unwrap();
        session.assign_names("one", &["n1".into()]).unwrap();
        assert!(!session.has_changes());
        assert!(!session.save().unwrap());
    }
    assert_eq!(std::fs::read(scratch.lock()).unwrap(), token);
    assert_eq!(std::fs::metadata(scratch.json()).unwrap().ino(), inode);
}

#[test]
fn changes_not_saved_are_forgotten() {
    let scratch = Scratch::new();
    let store = scratch.open();
    {
        let mut session = store.write().unwrap();
        session.insert(image("kept", &[])).unwrap();
        session.save().unwrap();
        session.insert(image("dropped", &[])).unwrap();
    }
    assert_eq!(ids(&store), ["kept"]);
}

#[test]
fn hand_edits_are_noticed_without_a_token_change() {
    let scratch = Scratch::new();
    let store = scratch.open();
    {
        let mut session = store.write().unwrap();
        session.insert(image("one", &[])).unwrap();
        session.save().unwrap();
    }
    assert_eq!(ids(&store), ["one"]);
    // Same size, replaced in place: the inode stays, size and mtime tell.
    std::fs::write(
        scratch.json(),
        br#"[{"id":"one","created":"0001-01-01T00:00:00Z"},{"id":"two"}]"#,
    )
    .unwrap();
    assert_eq!(ids(&store), ["one", "two"]);
    // Replaced by another file (a new inode), as an editor saves.
    let other = scratch.dir().join("edited");
    std::fs::write(&other, br#"[{"id":"three"}]"#).unwrap();
    std::fs::rename(&other, scratch.json()).unwrap();
    assert_eq!(ids(&store), ["three"]);
}

#[test]
fn a_reader_repairs_names_held_twice_under_the_write_lock() {
    let scratch = Scratch::new();
    let store = scratch.open();
    std::fs::write(
        scratch.json(),
        br#"[{"id":"aaa","names":["n","m"]},{"id":"bbb","names":["n"]}]"#,
    )
    .unwrap();
    let session = store.read().unwrap();
    assert_eq!(session.by_id("aaa").unwrap().names, ["m"]);
    assert_eq!(session.by_name("n").unwrap().id, "bbb");
    drop(session);
    // Saved as Go saves it: the earlier record lost the name, `created` written.
    let saved = std::fs::read_to_string(scratch.json()).unwrap();
    assert_eq!(
        saved,
        r#"[{"id":"aaa","names":["m"],"created":"0001-01-01T00:00:00Z"},{"id":"bbb","names":["n"],"created":"0001-01-01T00:00:00Z"}]"#
    );
}

#[test]
fn names_move_and_inserts_refuse_taken_ones() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let mut session = store.write().unwrap();
    session.insert(image("a", &["x", "y", "x"])).unwrap();
    assert_eq!(session.by_id("a").unwrap().names, ["x", "y"]);
    let err = session.insert(image("b", &["y"])).unwrap_err();
    assert!(
        matches!(&err, Error::NameInUse { name, holder, .. } if name == "y" && holder == "a"),
        "{err}"
    );
    let err = session.insert(image("a", &[])).unwrap_err();
    assert!(matches!(err, Error::DuplicateId { .. }), "{err}");
    let err = session.insert(image("../a", &[])).unwrap_err();
    assert!(err.to_string().contains("'/'"), "{err}");
    session.insert(image("b", &[])).unwrap();
    session
        .assign_names("b", &["y".into(), "z".into()])
        .unwrap();
    assert_eq!(session.by_id("a").unwrap().names, ["x"]);
    assert_eq!(session.by_name("y").unwrap().id, "b");
    let err = session.assign_names("nope", &[]).unwrap_err();
    assert!(matches!(err, Error::Unknown { .. }), "{err}");
    session.save().unwrap();
}

#[test]
fn read_only_stores_read_create_their_lock_and_refuse_repairs_and_writes() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    std::fs::write(scratch.json(), br#"[{"id":"a","names":["n"]}]"#).unwrap();
    let store: RecordStore<Image> = RecordStore::open_read_only(layout(&scratch.dir())).unwrap();
    assert!(
        scratch.lock().exists(),
        "the lock file is created, as Go does"
    );
    let records = store.records().unwrap();
    assert!(records[0].read_only);
    let err = store.write().unwrap_err();
    assert!(
        err.to_string()
            .ends_with("called a write method on a read-only store"),
        "{err}"
    );
    std::fs::write(
        scratch.json(),
        br#"[{"id":"a","names":["n"]},{"id":"b","names":["n"]}]"#,
    )
    .unwrap();
    let err = store.read().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("read-only image store assigns the same name to multiple images"),
        "{err}"
    );
}

#[test]
fn extra_record_files_keep_their_records() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    std::fs::write(scratch.json(), br#"[{"id":"a"}]"#).unwrap();
    let extra = scratch.dir().join("volatile-images.json");
    std::fs::write(&extra, br#"[{"id":"v","names":["vn"]},{"id":"a"}]"#).unwrap();
    let mut layout = layout(&scratch.dir());
    layout.extra_record_files = vec!["volatile-images.json".into()];
    let store: RecordStore<Image> = RecordStore::open(layout).unwrap();
    let mut session = store.write().unwrap();
    assert_eq!(
        session.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["a", "v"]
    );
    assert_eq!(session.bad().count(), 1, "a second `a` in the extra file");
    session.insert(image("new", &[])).unwrap();
    session.assign_names("v", &["vn2".into()]).unwrap();
    session.save().unwrap();
    drop(session);
    let main = std::fs::read_to_string(scratch.json()).unwrap();
    assert!(main.contains("\"new\"") && !main.contains("vn2"), "{main}");
    let volatile = std::fs::read_to_string(&extra).unwrap();
    assert!(
        volatile.starts_with(r#"[{"id":"v","names":["vn2"]"#)
            && volatile.ends_with(r#",{"id":"a"}]"#),
        "{volatile}"
    );
}

#[test]
fn removed_records_lose_their_item_directory_after_the_save() {
    let scratch = Scratch::new();
    let store = scratch.open();
    let mut session = store.write().unwrap();
    session.insert(image("a", &[])).unwrap();
    session.write_big_data("a", "manifest", b"m").unwrap();
    session.write_big_data("a", "Config", b"c").unwrap();
    assert!(scratch.dir().join("a/=Q29uZmln").is_file());
    session.save().unwrap();
    let removed: Image = session.remove("a").unwrap();
    assert_eq!(removed.id, "a");
    session.save().unwrap();
    session.remove_item_dir("a").unwrap();
    assert!(!scratch.dir().join("a").exists());
    let err = session.write_big_data("a", "k", b"").unwrap_err();
    assert!(matches!(err, Error::Unknown { .. }), "{err}");
}
