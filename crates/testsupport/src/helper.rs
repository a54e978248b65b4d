//! A test binary re-run as a helper process: a test that needs another process (to hold a
//! lock, to be killed at a crash point) starts this binary again to run only itself, with a
//! role in the environment; the helper sees the role at the top of the test and plays it
//! instead of testing. So no test exists only to be a helper: none is left out of the normal run, and none
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

/// The role of a test [`in_own_process`] runs again.
const OWN_PROCESS: &str = "own-process";

/// For a test that changes what belongs to the whole process (the umask, the working
/// directory, a resource limit) while the other tests of its binary run beside it: in the
/// binary's process, runs the test again in a process of its own (this binary, only this
/// test), fails when it fails there, and answers `false` (the test then returns); in that
/// process, answers `true` (the test goes on and may change the process as it likes).
pub fn in_own_process() -> bool {
    if role().as_deref() == Some(OWN_PROCESS) {
        return true;
    }
    let test = crate::current_test().unwrap_or_default();
    let output = command(OWN_PROCESS)
        .output()
        .expect("run the test in a process of its own");
    assert!(
        output.status.success(),
        "{test} failed in its own process ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_in_its_own_process_runs_there_and_only_there() {
        if !in_own_process() {
            return;
        }
        assert_eq!(role().as_deref(), Some(OWN_PROCESS));
        // What would disturb the tests beside it: this process is the test's alone.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        let others = std::fs::read_dir("/proc/self/task").unwrap().count();
        assert!(others <= 2, "{others} threads: the test is not alone");
    }
}
