//! Against the real Go `containers-storage` tool (v1.43): its layer store and ours exclude each
//! other on `<graph>/vfs-layers/layers.lock` and see each other's last-writer tokens.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{KernelMode, posix_locks_on};
use layerstore_lockfile::{Error, Holder, LockFile};
use layerstore_testsupport::{Capability, go_tool, require_or_skip};

/// Generous bound for a Go command that is no longer blocked (it normally takes ~20 ms).
const GO_TIMEOUT: Duration = Duration::from_secs(60);

/// A scratch store for the Go tool: graph root, run root, vfs driver.
struct GoStore {
    _dir: tempfile::TempDir,
    graph: PathBuf,
    run: PathBuf,
}

impl GoStore {
    /// Makes the store and runs the Go tool once, so every store-level file exists and a later
    /// command waits on layers.lock rather than on initialisation.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = GoStore {
            graph: dir.path().join("graph"),
            run: dir.path().join("run"),
            _dir: dir,
        };
        let out = store.output(&["layers"]);
        assert!(out.status.success(), "go layers: {out:?}");
        assert!(store.layers_lock().exists());
        store
    }

    fn layers_lock(&self) -> PathBuf {
        self.graph.join("vfs-layers/layers.lock")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(go_tool().expect("Go tool checked by require_or_skip"));
        cmd.arg("--graph")
            .arg(&self.graph)
            .arg("--run")
            .arg(&self.run)
            .args(["--storage-driver", "vfs"])
            .args(args);
        cmd
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn spawn(&self, args: &[&str], stdin: Stdio) -> Child {
        self.command(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Waits for `child` to exit, killing it and failing after [`GO_TIMEOUT`].
fn wait_with_timeout(mut child: Child) -> Output {
    let deadline = Instant::now() + GO_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the Go tool did not finish within {GO_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Polls `/proc/locks` until `pid` holds (or waits for, if `blocked`) a write lock on `path`.
fn wait_for_kernel_lock(path: &Path, pid: u32, blocked: bool) {
    let deadline = Instant::now() + GO_TIMEOUT;
    while !posix_locks_on(path)
        .iter()
        .any(|l| l.pid == pid && l.blocked == blocked && l.mode == KernelMode::Write)
    {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never {} a write lock on {path:?}: {:?}",
            if blocked { "waited for" } else { "held" },
            posix_locks_on(path)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn our_write_lock_blocks_the_go_tool() {
    require_or_skip!(Capability::GoTool);
    let store = GoStore::new();
    let lock = LockFile::open_rw(store.layers_lock()).unwrap();
    let guard = lock.lock().unwrap();
    let started = Instant::now();
    let go = store.spawn(&["create-layer"], Stdio::null());
    let go_pid = go.id();
    // The kernel shows Go waiting for F_WRLCK on layers.lock itself.
    wait_for_kernel_lock(&store.layers_lock(), go_pid, true);
    let mut go = go;
    thread::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed()));
    assert!(
        go.try_wait().unwrap().is_none(),
        "the Go tool finished while we held layers.lock"
    );

    let before_release = guard.get_last_write().unwrap();
    drop(guard);
    let out = wait_with_timeout(go);
    assert!(out.status.success(), "go create-layer: {out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "a layer ID: {id:?}");

    let reader = lock.rlock().unwrap();
    let (now, changed) = reader.modified_since(&before_release).unwrap();
    assert!(changed, "Go touched layers.lock after creating the layer");
    assert_eq!(now.token().map(|t| t.pid), Some(go_pid));
}

#[test]
fn a_layer_made_by_go_is_seen_as_modified() {
    require_or_skip!(Capability::GoTool);
    let store = GoStore::new();
    let lock = LockFile::open_rw(store.layers_lock()).unwrap();
    {
        let reader = lock.rlock().unwrap();
        assert!(reader.get_last_write().unwrap().as_bytes().is_empty());
        assert!(
            reader.modified().unwrap(),
            "a never-written file always counts as modified"
        );
    }
    // A first layer, so layers.lock holds a token we can have seen.
    let out = store.output(&["create-layer"]);
    assert!(out.status.success(), "go create-layer: {out:?}");
    {
        let reader = lock.rlock().unwrap();
        assert!(reader.modified().unwrap(), "Go's first write");
        assert!(!reader.modified().unwrap(), "nothing changed since");
    }

    let go = store.spawn(&["create-layer"], Stdio::null());
    let go_pid = go.id();
    let out = wait_with_timeout(go);
    assert!(out.status.success(), "go create-layer: {out:?}");

    let reader = lock.rlock().unwrap();
    let current = reader.get_last_write().unwrap();
    assert!(reader.modified().unwrap(), "Go's write is a change");
    assert!(!reader.modified().unwrap());
    let token = current.token().expect("Go writes 64-byte tokens");
    assert_eq!(token.pid, go_pid, "the token names the Go process");
    let file = std::fs::read(store.layers_lock()).unwrap();
    assert_eq!(file, current.as_bytes());
}

#[test]
fn the_go_tool_holding_layers_lock_blocks_us() {
    require_or_skip!(Capability::GoTool);
    let store = GoStore::new();
    let out = store.output(&["create-layer"]);
    assert!(out.status.success(), "go create-layer: {out:?}");
    let layer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let lock = LockFile::open_rw(store.layers_lock()).unwrap();
    let before = lock.lock().unwrap().get_last_write().unwrap();

    // applydiff holds the layer store's write lock while it reads the diff from stdin.
    let mut go = store.spawn(&["applydiff", &layer], Stdio::piped());
    let go_pid = go.id();
    wait_for_kernel_lock(&store.layers_lock(), go_pid, false);
    for result in [lock.try_lock().map(drop), lock.try_rlock().map(drop)] {
        assert!(
            matches!(
                result,
                Err(Error::WouldBlock {
                    holder: Holder::OtherProcess,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    // An empty tar archive (two zero blocks) lets it finish.
    let mut stdin = go.stdin.take().unwrap();
    stdin.write_all(&[0u8; 1024]).unwrap();
    drop(stdin);
    let out = wait_with_timeout(go);
    assert!(out.status.success(), "go applydiff: {out:?}");

    let guard = lock.try_lock().expect("free once Go has exited");
    let (now, changed) = guard.modified_since(&before).unwrap();
    assert!(changed);
    assert_eq!(now.token().map(|t| t.pid), Some(go_pid));
}
