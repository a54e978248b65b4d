//! The other side of the multi-process tests: this test binary started again as a helper
//! process, which opens the store in `$RECORDSTORE_TEST_DIR` and plays a role.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_model::Image;
use layerstore_recordstore::RecordStore;

use crate::{image, layout};

const ROLE_ENV: &str = "RECORDSTORE_TEST_ROLE";
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

/// This test binary as a helper process playing `role` on the store in `dir`.
pub(crate) fn command(role: &str, dir: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--ignored",
            "--exact",
            "child::helper_process",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(ROLE_ENV, role)
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

#[test]
#[ignore = "a helper process the multi-process tests start"]
fn helper_process() {
    let role = std::env::var(ROLE_ENV).expect("started by a test with RECORDSTORE_TEST_ROLE");
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("RECORDSTORE_TEST_DIR"));
    let store: RecordStore<Image> = RecordStore::open(layout(&dir)).unwrap();
    match role.as_str() {
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
