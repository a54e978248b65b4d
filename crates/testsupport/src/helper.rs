//! A test binary re-run as a helper process: a test that needs another process (to hold a
//! lock, to be killed at a crash point) starts this binary again to run only itself, with a
//! role in the environment; the helper sees the role at the top of the test and plays it
//! instead of testing. So no test exists only to be a helper: none is `#[ignore]`d, and none
//! passes without asserting anything.
//!
//! ```
//! use layerstore_testsupport::helper;
//! fn a_lock_held_in_another_process_blocks_us() {
//!     if let Some(role) = helper::role() {
//!         // the helper: play `role` (take the lock, report, wait) and return
//!         return;
//!     }
//!     // the test: start the helper, then check what it does
//!     # return;
//!     let child = helper::command("hold-write").spawn().unwrap();
//! }
//! # a_lock_held_in_another_process_blocks_us();
//! ```

use std::process::Command;

/// The environment variable holding a helper's role.
pub const ROLE_ENV: &str = "LAYERSTORE_TEST_HELPER_ROLE";

/// In a test: the role this process plays when a test started it with [`command`]; `None`
/// in the test itself.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// This test binary, set to run only the running test (see [`crate::current_test`]) as a
/// helper playing `role`, its output not captured (`--nocapture`), on one thread. Call it
/// from the test's own thread; add the environment the role needs.
pub fn command(role: &str) -> Command {
    let test = crate::current_test().expect("helper::command is called on a test's thread");
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role);
    command
}
