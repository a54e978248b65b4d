//! Running the Go `containers-storage` tool on a store: one command line, one bound on how
//! long it may take. Callers gate on [`crate::Capability::GoTool`].

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Generous bound for one Go command (it normally takes tens of milliseconds): one still
/// running after it is killed, and the test fails.
pub const GO_TIMEOUT: Duration = Duration::from_secs(60);

/// `containers-storage --graph <graph> --run <run> --storage-driver <driver> <args>`, with
/// no `CONTAINERS_STORAGE_CONF` (the machine's configuration cannot interfere), standard
/// input empty and the output captured.
pub fn go_command(graph: &Path, run: &Path, driver: &str, args: &[&str]) -> Command {
    let mut command = Command::new(crate::go_tool().expect("the Go tool (gate on GoTool)"));
    command
        .arg("--graph")
        .arg(graph)
        .arg("--run")
        .arg(run)
        .args(["--storage-driver", driver])
        .args(args)
        .env_remove("CONTAINERS_STORAGE_CONF")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs [`go_command`] to its end ([`wait_with_timeout`]).
pub fn run_go(graph: &Path, run: &Path, driver: &str, args: &[&str]) -> Output {
    wait_with_timeout(
        go_command(graph, run, driver, args)
            .spawn()
            .expect("start containers-storage"),
    )
}

/// Runs [`go_command`] and requires success; its standard output.
pub fn run_go_ok(graph: &Path, run: &Path, driver: &str, args: &[&str]) -> Vec<u8> {
    let out = run_go(graph, run, driver, args);
    assert!(
        out.status.success(),
        "containers-storage {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Waits for `child` to exit and collects its output ([`crate::process::wait_bounded`]):
/// kills it and fails the test when it runs longer than [`GO_TIMEOUT`].
pub fn wait_with_timeout(child: Child) -> Output {
    crate::process::wait_bounded(child, "the Go tool", GO_TIMEOUT)
}
