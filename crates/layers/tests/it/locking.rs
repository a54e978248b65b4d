//! The locking model: reads take layers.lock shared, changes exclusive (across processes);
//! records are reloaded only when the last-writer token or layers.json's mtime changed.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::Scratch;
use layerstore_layers::LayerOptions;
use layerstore_lockfile::LockFile;
use layerstore_testsupport::helper;
use layerstore_testsupport::{Capability, require_or_skip};

/// Child side of [`readers_share_and_writers_wait_across_processes`]: holds layers.lock for
/// reading until its stdin closes (the test, re-run as a helper, with the lock's path as role).
fn lock_holder_child(path: &str) {
    let lock = LockFile::open_rw(path).expect("open lock");
    let guard = lock.rlock().expect("rlock");
    println!("locked");
    std::io::stdout().flush().expect("flush");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(guard);
}

#[test]
fn readers_share_and_writers_wait_across_processes() {
    if let Some(role) = helper::role() {
        return lock_holder_child(&role);
    }
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(&LayerOptions::new().id("first")).unwrap();
    let lock_path = scratch.graph().join("vfs-layers/layers.lock");
    let mut child = helper::command(&lock_path.to_string_lossy())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().contains("locked")),
        "the child did not lock"
    );

    // Reading while another process reads: not blocked (Go 1.43 would block here).
    assert_eq!(store.layers().unwrap().len(), 1);
    assert!(store.exists("first").unwrap());

    // Writing waits for the other process's read lock.
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let store = &store;
        s.spawn(move || {
            store.create(&LayerOptions::new().id("second")).unwrap();
            done_tx.send(()).unwrap();
        });
        assert!(
            done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "a write went ahead while another process held the read lock"
        );
        drop(child.stdin.take()); // the child unlocks and exits
        done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the write completes after the unlock");
    });
    child.wait().unwrap();
    assert_eq!(store.layers().unwrap().len(), 2);
}

#[test]
fn records_are_reloaded_only_when_token_or_mtime_change() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(&LayerOptions::new().id("kept")).unwrap();
    let path = scratch.layers_json();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let good = std::fs::read(&path).unwrap();

    // Same token, same mtime: the records in memory are used, the file is not read.
    std::fs::write(&path, b"not json at all").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        store.layers().unwrap().len(),
        1,
        "reloaded although nothing said so"
    );

    // A hand edit (new mtime) is noticed.
    std::fs::write(
        &path,
        br#"[{"id":"edited","created":"2026-01-01T00:00:00Z"}]"#,
    )
    .unwrap();
    assert_eq!(store.get("edited").unwrap().id, "edited");

    // Another handle's write (new token) is noticed, even with the mtime put back.
    std::fs::write(&path, &good).unwrap();
    let other = scratch.open();
    other.create(&LayerOptions::new().id("by-other")).unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let ids: Vec<String> = store.layers().unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(ids, ["kept", "by-other"]);
}
