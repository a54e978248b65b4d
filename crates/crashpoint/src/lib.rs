//! Named crash points, for testing crash safety: places where a test can have the process die
//! as if the machine had lost it there (`SIGKILL`: no destructors, no flushed buffers).
//!
//! A crash point does something only in a build with the feature `enabled`, which only test
//! builds turn on (the crates with crash points forward it as their `crash-points` feature
//! and enable it for their own tests; the cli enables it for the binary its suites drive).
//! Then [`point`] kills the process when the environment variable [`CRASH_ENV`]
//! (`LAYERSTORE_CRASH_AT`) names the point; the variable is read once, and a point costs one
//! load of a cached value. In every other build [`point`] is an empty function: a program
//! embedding the store neither reads the variable nor can be killed through it.
//!
//! The names of the points belong to the crates that have them (`layerstore_layers::crash`,
//! `layerstore_recordstore::crash`).
//!
//! ```
//! // Nothing happens: the feature is off in a normal build, and nothing names this point.
//! layerstore_crashpoint::point("example-after-save");
//! ```

#![forbid(unsafe_code)]

/// The environment variable naming the crash point to die at.
pub const CRASH_ENV: &str = "LAYERSTORE_CRASH_AT";

/// Whether this build has crash points (the feature `enabled`).
pub const ENABLED: bool = cfg!(feature = "enabled");

/// Kills the process with `SIGKILL` if this build has crash points and [`CRASH_ENV`] names
/// `name`; otherwise returns at once.
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "enabled")]
    enabled::point(name);
    #[cfg(not(feature = "enabled"))]
    let _ = name;
}

#[cfg(feature = "enabled")]
mod enabled {
    use std::sync::OnceLock;

    pub(super) fn point(name: &str) {
        static SELECTED: OnceLock<Option<String>> = OnceLock::new();
        let selected = SELECTED.get_or_init(|| std::env::var(super::CRASH_ENV).ok());
        if selected.as_deref() == Some(name) {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            // SIGKILL cannot be caught; should delivery be delayed, do not run on.
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use layerstore_testsupport::helper;

    use super::*;

    /// What the helper prints when it got past the point alive.
    const SURVIVED: &str = "crashpoint-helper-survived";

    #[test]
    fn a_named_point_kills_the_process_only_in_a_build_with_crash_points() {
        if let Some(role) = helper::role() {
            point("crashpoint-test-other");
            point(&role);
            println!("{SURVIVED}");
            return;
        }
        let output = helper::command("crashpoint-test-point")
            .env(CRASH_ENV, "crashpoint-test-point")
            .output()
            .expect("run the helper");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if ENABLED {
            assert_eq!(output.status.signal(), Some(9), "{output:?}");
            assert!(!stdout.contains(SURVIVED));
        } else {
            assert!(output.status.success(), "{output:?}");
            assert!(stdout.contains(SURVIVED), "{stdout}");
        }
    }
}
