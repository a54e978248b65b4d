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

/// [`run_go_ok`]'s standard output as text (lossily decoded).
pub fn run_go_text(graph: &Path, run: &Path, driver: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&run_go_ok(graph, run, driver, args)).into_owned()
}

/// Runs [`go_command`] and requires failure; its standard error, trimmed.
pub fn run_go_err(graph: &Path, run: &Path, driver: &str, args: &[&str]) -> String {
    let out = run_go(graph, run, driver, args);
    assert!(
        !out.status.success(),
        "containers-storage {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// The Go tool's JSON answer to `args` (command first; `--json` goes right after it, as the
/// Go tool takes no flags after its first argument); requires success.
pub fn go_json(graph: &Path, run: &Path, driver: &str, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.insert(args.len().min(1), "--json");
    let text = run_go_text(graph, run, driver, &args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("containers-storage {args:?}: {e}: {text}"))
}

/// The first word the Go tool prints on success (the ID `create-layer`, `create-image` and
/// the like print first, before a line per name).
pub fn go_id(graph: &Path, run: &Path, driver: &str, args: &[&str]) -> String {
    let text = run_go_text(graph, run, driver, args);
    text.split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("containers-storage {args:?} printed no ID"))
        .to_owned()
}

/// Waits for `child` to exit and collects its output ([`crate::process::wait_bounded`]):
/// kills it and fails the test when it runs longer than [`GO_TIMEOUT`].
pub fn wait_with_timeout(child: Child) -> Output {
    crate::process::wait_bounded(child, "the Go tool", GO_TIMEOUT)
}
