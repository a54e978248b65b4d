//! Waiting for a child process with a bound: its output read as it comes (a large output
//! cannot block it), the child killed and the test failed when it runs too long.

use std::process::{Child, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Waits for `child` and collects its output; kills it and panics, naming `what`, when it has
/// not finished within `limit`.
pub fn wait_bounded(child: Child, what: &str, limit: Duration) -> Output {
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(limit) {
        Ok(output) => {
            let _ = waiter.join();
            output.unwrap_or_else(|e| panic!("{what}: {e}"))
        }
        Err(_) => {
            // Not reaped yet (the waiting thread still waits), so the PID is still the child's.
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            let _ = waiter.join();
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_large_output_is_read_while_waiting() {
        let child = Command::new("head")
            .args(["-c", "1000000", "/dev/zero"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let output = wait_bounded(child, "head", Duration::from_secs(60));
        assert!(output.status.success());
        assert_eq!(output.stdout.len(), 1_000_000);
    }

    #[test]
    #[should_panic(expected = "sleep did not finish within")]
    fn a_child_running_too_long_is_killed_and_fails_the_test() {
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        wait_bounded(child, "sleep", Duration::from_millis(200));
    }
}
