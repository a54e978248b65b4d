//! Crash safety of saves: a process killed (SIGKILL) at any moment of a save, or at the named
//! crash points, leaves record files that are whole (the old version or the new) and big-data
//! files that are whole, and a reader notices a save that was started.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use layerstore_model::Image;
use layerstore_recordstore::{RecordStore, Session, crash as points};

use layerstore_testsupport::helper;

use crate::child::{self, BIG_DATA_ONCE, SAVE_FOREVER, SAVE_ONCE, SAVING};
use crate::{Scratch, ids, image, layout};

/// A small deterministic generator (xorshift64*), seeded and printed so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn sigkill_during_saves_never_leaves_a_half_written_file() {
    if let Some(role) = helper::role() {
        return child::play(&role);
    }
    let seed = std::env::var("RECORDSTORE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {seed} (rerun with RECORDSTORE_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    for trial in 0..12 {
        let scratch = Scratch::new();
        let mut helper = child::command(SAVE_FOREVER, &scratch.dir())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(helper.stdout.take().unwrap());
        for line in stdout.lines() {
            if line.unwrap().ends_with(SAVING) {
                break;
            }
        }
        // Spread the kills over the next ~half second of saving, over saves of files from a
        // few KiB to a few hundred.
        std::thread::sleep(Duration::from_millis(rng.next() % 500));
        helper.kill().unwrap();
        let status = helper.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "trial {trial}: {status:?}");
        let store = scratch.open();
        let records: Vec<Image> = store.records().unwrap_or_else(|e| {
            panic!("trial {trial}: the file does not load after the kill: {e}")
        });
        assert_eq!(store.bad_records().unwrap(), []);
        // Whole saves only: r0 .. r(n-1), exactly as saved.
        for (round, record) in records.iter().enumerate() {
            let expected = child::round_record(round);
            assert_eq!(
                (&record.id, &record.names, &record.metadata),
                (&expected.id, &expected.names, &expected.metadata),
                "trial {trial}"
            );
        }
        println!("trial {trial}: killed with {} records saved", records.len());
        assert!(
            !records.is_empty(),
            "trial {trial}: the first save was done"
        );
        // The open swept what the killed save left behind.
        let temps: Vec<_> = std::fs::read_dir(scratch.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(temps.is_empty(), "trial {trial}: {temps:?}");
    }
}

/// A store holding record `a`, and a second handle that has read it.
fn store_with_a(scratch: &Scratch) -> RecordStore<Image> {
    let store = scratch.open();
    let mut session = store.write().unwrap();
    session.insert(image("a", &["a-name"])).unwrap();
    session.save().unwrap();
    session
        .write_big_data("a", "manifest", b"old data")
        .unwrap();
    drop(session);
    let reader = scratch.open();
    assert_eq!(ids(&reader), ["a"]);
    reader
}

#[test]
fn a_save_killed_after_the_token_leaves_the_old_file_and_reads_as_a_change() {
    if let Some(role) = helper::role() {
        return child::play(&role);
    }
    let scratch = Scratch::new();
    let reader = store_with_a(&scratch);
    let before = std::fs::read(scratch.json()).unwrap();
    let token = std::fs::read(scratch.lock()).unwrap();
    let status = child::command(SAVE_ONCE, &scratch.dir())
        .env(points::CRASH_ENV, points::SAVE_AFTER_TOKEN)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_eq!(std::fs::read(scratch.json()).unwrap(), before);
    assert_ne!(std::fs::read(scratch.lock()).unwrap(), token);
    assert_eq!(ids(&reader), ["a"]);
}

#[test]
fn a_save_killed_before_the_rename_leaves_the_old_file_and_a_temp_the_next_open_removes() {
    if let Some(role) = helper::role() {
        return child::play(&role);
    }
    let scratch = Scratch::new();
    let _reader = store_with_a(&scratch);
    let before = std::fs::read(scratch.json()).unwrap();
    let status = child::command(SAVE_ONCE, &scratch.dir())
        .env(points::CRASH_ENV, points::ATOMIC_WRITE_BEFORE_RENAME)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_eq!(std::fs::read(scratch.json()).unwrap(), before);
    let temp_count = || {
        std::fs::read_dir(scratch.dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tmp-images.json")
            })
            .count()
    };
    assert_eq!(temp_count(), 1, "the killed save's complete temp file");
    let store = scratch.open();
    assert_eq!(temp_count(), 0);
    assert_eq!(ids(&store), ["a"]);
}

#[test]
fn a_big_data_write_killed_before_the_rename_keeps_the_old_item() {
    if let Some(role) = helper::role() {
        return child::play(&role);
    }
    let scratch = Scratch::new();
    let _reader = store_with_a(&scratch);
    let status = child::command(BIG_DATA_ONCE, &scratch.dir())
        .env(points::CRASH_ENV, points::ATOMIC_WRITE_BEFORE_RENAME)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let store: RecordStore<Image> = RecordStore::open(layout(&scratch.dir())).unwrap();
    let session = store.read().unwrap();
    assert_eq!(
        session.read_big_data("a", "manifest").unwrap().unwrap(),
        b"old data"
    );
}
