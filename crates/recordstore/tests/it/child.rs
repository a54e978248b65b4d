//! The other side of the multi-process tests: this test binary started again as a helper
//! process (`testsupport::helper`: the same test, with a role), which opens the store in
//! `$RECORDSTORE_TEST_DIR` and plays the role instead of testing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_model::Image;
use layerstore_recordstore::RecordStore;

use layerstore_testsupport::helper;

use crate::{image, layout};

const DIR_ENV: &str = "RECORDSTORE_TEST_DIR";

/// Saves, one after the other, stores holding `r0`, then `r0 r1`, ... (each record a few KiB,
/// so a save takes long enough to be killed in the middle); prints [`SAVING`] after the first.
pub(crate) const SAVE_FOREVER: &str = "save-forever";
/// Adds record `child` in one save.
pub(crate) const SAVE_ONCE: &str = "save-once";
/// Writes big-data item `manifest` of record `a`.
pub(crate) const BIG_DATA_ONCE: &str = "big-data-once";
/// Adds record `from-child`, saves, prints [`LOCKED`], and keeps the write session until its
/// standard input closes.
pub(crate) const HOLD_WRITE: &str = "hold-write";
/// What [`HOLD_WRITE`] prints once it holds the lock (after the test harness's own words on
/// the same line).
pub(crate) const LOCKED: &str = "helper-holds-the-write-lock";
/// What [`SAVE_FOREVER`] prints once its first save is done.
pub(crate) const SAVING: &str = "helper-saved-once";

/// This test binary as a helper process running the calling test, playing `role` on the
/// store in `dir` (the test starts with [`play`] when [`helper::role`] says it is the helper).
pub(crate) fn command(role: &str, dir: &Path) -> Command {
    let mut command = helper::command(role);
    command
        .env(DIR_ENV, dir)
        .stdout(std::process::Stdio::null());
    command
}

/// The record `r<round>` of [`SAVE_FOREVER`].
pub(crate) fn round_record(round: usize) -> Image {
    let mut record = image(&format!("r{round}"), &[&format!("name{round}")]);
    record.metadata = format!("{round:>4096}");
    record
}

/// The helper's side: plays `role` on the store in `$RECORDSTORE_TEST_DIR`.
pub(crate) fn play(role: &str) {
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("RECORDSTORE_TEST_DIR"));
    let store: RecordStore<Image> = RecordStore::open(layout(&dir)).unwrap();
    match role {
        SAVE_FOREVER => {
            // Bounded, should nobody kill it.
            for round in 0..20_000 {
                let mut session = store.write().unwrap();
                session.insert(round_record(round)).unwrap();
                session.save().unwrap();
                if round == 0 {
                    println!("{SAVING}");
                    std::io::stdout().flush().unwrap();
                }
            }
        }
        SAVE_ONCE => {
            let mut session = store.write().unwrap();
            session.insert(image("child", &["child-name"])).unwrap();
            session.save().unwrap();
        }
        BIG_DATA_ONCE => {
            let session = store.write().unwrap();
            session
                .write_big_data("a", "manifest", b"new data")
                .unwrap();
        }
        HOLD_WRITE => {
            let mut session = store.write().unwrap();
            session.insert(image("from-child", &[])).unwrap();
            session.save().unwrap();
            println!("{LOCKED}");
            std::io::stdout().flush().unwrap();
            let mut rest = Vec::new();
            std::io::stdin().read_to_end(&mut rest).unwrap();
        }
        other => panic!("unknown role {other:?}"),
    }
}
