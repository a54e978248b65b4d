//! Processes sharing a store: a writer in another process excludes ours, and its saves are
//! seen by our next session.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use layerstore_lockfile::{Error as LockError, Holder, LockFile};

use layerstore_testsupport::helper;

use crate::child::{self, HOLD_WRITE, LOCKED};
use crate::{Scratch, ids};

#[test]
fn a_writer_in_another_process_excludes_ours_and_we_see_its_save() {
    if let Some(role) = helper::role() {
        return child::play(&role);
    }
    let scratch = Scratch::new();
    let store = scratch.open();
    assert!(ids(&store).is_empty());
    let mut helper = child::command(HOLD_WRITE, &scratch.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().ends_with(LOCKED) {
            break;
        }
    }
    let lock = LockFile::open_rw(scratch.lock()).unwrap();
    for attempt in [lock.try_lock().map(drop), lock.try_rlock().map(drop)] {
        assert!(
            matches!(
                attempt,
                Err(LockError::WouldBlock {
                    holder: Holder::OtherProcess,
                    ..
                })
            ),
            "{attempt:?}"
        );
    }
    drop(helper.stdin.take());
    // Read what the helper still prints, so it never writes to a closed pipe.
    lines.for_each(drop);
    assert!(helper.wait().unwrap().success());
    assert_eq!(ids(&store), ["from-child"]);
}
