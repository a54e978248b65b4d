//! Against the real Go `containers-storage` tool (v1.43): its layer store and ours exclude each
//! other on `<graph>/vfs-layers/layers.lock` and see each other's last-writer tokens.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use layerstore_lockfile::{Error, Holder, LockFile};
use layerstore_testsupport::go::{go_command, run_go, wait_with_timeout};
use layerstore_testsupport::locks::wait_for_kernel_lock;
use layerstore_testsupport::{Capability, require_or_skip};

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

    fn output(&self, args: &[&str]) -> Output {
        run_go(&self.graph, &self.run, "vfs", args)
    }

    fn spawn(&self, args: &[&str], stdin: Stdio) -> Child {
        go_command(&self.graph, &self.run, "vfs", args)
            .stdin(stdin)
            .spawn()
            .unwrap()
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
