//! The Go tool (`containers-storage` 1.43) and our container store on one store, both ways:
//! Go lists, inspects, reads and deletes what we wrote; we read what Go wrote; a Go writer
//! waits for our write lock and we see its write; both say the same errors.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use layerstore_containers::{ContainerStore, NamesOp, NewContainer};
use layerstore_model::{Container, IDMap, to_go_json};
use layerstore_recordstore::canonical_digest;
use layerstore_testsupport::go::{GO_TIMEOUT, go_command, wait_with_timeout};
use layerstore_testsupport::locks::waits_for_lock;
use layerstore_testsupport::{Capability, require_or_skip};

/// A scratch store shared with the Go tool: graph root, run root, vfs.
struct GoStore {
    temp: tempfile::TempDir,
}

impl GoStore {
    fn new() -> GoStore {
        let store = GoStore {
            temp: tempfile::tempdir().unwrap(),
        };
        store.ok(&["containers"]);
        store
    }

    fn graph(&self) -> PathBuf {
        self.temp.path().join("graph")
    }

    fn run(&self) -> PathBuf {
        self.temp.path().join("run")
    }

    fn open(&self) -> ContainerStore {
        ContainerStore::open(
            self.graph().join("vfs-containers"),
            self.run().join("vfs-containers"),
        )
        .unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        go_command(&self.graph(), &self.run(), "vfs", args)
    }

    fn output(&self, args: &[&str]) -> Output {
        wait_with_timeout(self.command(args).spawn().unwrap())
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.output(args);
        assert!(out.status.success(), "containers-storage {args:?}: {out:?}");
        out.stdout
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok(args)).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            !out.status.success(),
            "containers-storage {args:?}: {out:?}"
        );
        String::from_utf8(out.stderr).unwrap().trim_end().to_owned()
    }

    fn create_layer(&self) -> String {
        self.text(&["create-layer"]).trim().to_owned()
    }
}

fn as_go_prints(containers: &[Container]) -> String {
    let mut json = String::from_utf8(to_go_json(containers).unwrap()).unwrap();
    json.push('\n');
    json
}

#[test]
fn go_lists_reads_and_deletes_the_containers_we_write() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let store = go.open();
    let (l1, l2) = (go.create_layer(), go.create_layer());
    let ours = store
        .create(NewContainer {
            names: vec!["web".into(), "www".into()],
            layer_id: l1.clone(),
            metadata: "meta <&>".into(),
            uid_map: vec![IDMap {
                container_id: 0,
                host_id: 100_000,
                size: 65_536,
            }],
            volatile: true,
            ..NewContainer::default()
        })
        .unwrap();
    store
        .create(NewContainer {
            id: Some("custom-ctr".into()),
            layer_id: l2.clone(),
            mount_opts: Some(vec!["nodev".into()]),
            ..NewContainer::default()
        })
        .unwrap();
    let items: [(&str, &[u8]); 3] = [
        ("config.json", b"{\"a\":1}"),
        ("Key", b"value"),
        ("abC", b"quirk"),
    ];
    for (key, data) in items {
        store.set_big_data("web", key, data).unwrap();
    }
    store
        .update_names("custom-ctr", &["www".into()], NamesOp::Add)
        .unwrap();

    assert_eq!(
        go.text(&["containers", "--json"]),
        as_go_prints(&store.containers().unwrap())
    );
    let shown = go.text(&["container", "web"]);
    for line in [
        format!("ID: {}", ours.id),
        "Name: web".into(),
        format!("Layer: {l1}"),
        "Data: Key".into(),
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} in\n{shown}");
    }
    assert_eq!(
        go.text(&["list-container-data", "web"]),
        "config.json\nKey\nabC\n"
    );
    for (key, data) in items {
        assert_eq!(go.ok(&["get-container-data", "web", key]), data);
        assert_eq!(
            go.text(&["get-container-data-digest", "web", key]),
            format!("{}\n", canonical_digest(data).as_str())
        );
        assert_eq!(
            go.text(&["get-container-data-size", "web", key]),
            format!("{}\n", data.len())
        );
    }
    // The same directories, whoever makes them; found by the layer's ID as well.
    assert_eq!(
        go.text(&["get-container-dir", &l1]).trim_end(),
        store.directory("web").unwrap().to_str().unwrap()
    );
    assert_eq!(
        go.text(&["get-container-run-dir", "web"]).trim_end(),
        store.run_directory(&ours.id).unwrap().to_str().unwrap()
    );
    assert_eq!(go.text(&["get-names", "custom-ctr"]), "www\n");

    // Go deletes one (its layer too) and renames; we see both.
    go.ok(&["delete-container", "custom-ctr"]);
    go.ok(&["set-names", "-n", "renamed", "web"]);
    let left = store.containers().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].names, ["renamed"]);
    assert!(!go.graph().join("vfs-containers/custom-ctr").exists());
    go.ok(&["delete-container", "renamed"]);
    assert!(store.containers().unwrap().is_empty());
    assert!(!go.graph().join("vfs-containers").join(&ours.id).exists());
}

#[test]
fn we_read_the_containers_go_writes() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let layer = go.create_layer();
    let image = go.text(&["create-image", "--name", "img", &layer]);
    let image = image.lines().next().unwrap().to_owned();
    let created = go.text(&[
        "create-container",
        "--name",
        "go-ctr",
        "-m",
        "go <meta>",
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:200000:65536",
        "img",
    ]);
    let id = created.lines().next().unwrap().to_owned();
    go.ok(&["create-container", "--volatile", "-i", "vol", ""]);
    let files = tempfile::tempdir().unwrap();
    let data = files.path().join("data");
    std::fs::write(&data, b"go data").unwrap();
    go.ok(&[
        "set-container-data",
        "-f",
        data.to_str().unwrap(),
        "go-ctr",
        "Some Key",
    ]);
    let go_dir = go.text(&["get-container-dir", "go-ctr"]);

    let store = go.open();
    assert_eq!(
        go.text(&["containers", "--json"]),
        as_go_prints(&store.containers().unwrap())
    );
    let reader = store.read().unwrap();
    let container = reader.get("go-ctr").unwrap();
    assert_eq!(container.id, id);
    assert_eq!(container.image_id, image);
    assert_eq!(container.metadata, "go <meta>");
    assert_eq!(container.gid_map[0].host_id, 200_000);
    assert_eq!(reader.get(&container.layer_id).unwrap().id, id);
    assert!(reader.get("vol").unwrap().is_volatile());
    assert_eq!(reader.big_data("go-ctr", "Some Key").unwrap(), b"go data");
    assert_eq!(
        reader.directory(&id).unwrap().to_str(),
        Some(go_dir.trim_end())
    );
    drop(reader);
    // Our changes, seen by Go.
    store.set_metadata("vol", "ours").unwrap();
    store
        .update_names("vol", &["go-ctr".into()], NamesOp::Set)
        .unwrap();
    assert_eq!(go.text(&["metadata", "-q", "vol"]), "ours\n");
    assert_eq!(go.text(&["get-names", "vol"]), "go-ctr\n");
    assert_eq!(go.text(&["get-names", &id]), "");
}

#[test]
fn a_go_writer_waits_for_our_write_lock_and_we_see_its_write() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let store = go.open();
    let lock = go.graph().join("vfs-containers/containers.lock");
    let session = store.write().unwrap();
    let mut child = go
        .command(&["create-container", "--name", "later", ""])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + GO_TIMEOUT;
    while !waits_for_lock(&lock, child.id()) {
        assert!(
            Instant::now() < deadline,
            "the Go tool never waited for containers.lock"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(child.try_wait().unwrap().is_none());
    assert!(!session.exists("later"));
    drop(session);
    let out = wait_with_timeout(child);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap();
    assert_eq!(store.lookup("later").unwrap(), id.lines().next().unwrap());
}

#[test]
fn both_say_the_same_errors() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let store = go.open();
    let taken = store
        .create(NewContainer {
            names: vec!["c1".into()],
            layer_id: go.create_layer(),
            ..NewContainer::default()
        })
        .unwrap();
    let ours = |new: NewContainer| store.create(new).unwrap_err().to_string();
    assert_eq!(
        go.fails(&["create-container", "--name", "c1", ""]),
        ours(NewContainer {
            names: vec!["c1".into()],
            ..NewContainer::default()
        })
    );
    let maps = |triples: &[(u32, u32, u32)]| -> Vec<IDMap> {
        triples
            .iter()
            .map(|&(container_id, host_id, size)| IDMap {
                container_id,
                host_id,
                size,
            })
            .collect()
    };
    assert_eq!(
        go.fails(&[
            "create-container",
            "--uidmap",
            "0:100000:1000:500:100100:10",
            ""
        ]),
        ours(NewContainer {
            uid_map: maps(&[(0, 100_000, 1000), (500, 100_100, 10)]),
            ..NewContainer::default()
        })
    );
    assert_eq!(
        go.fails(&[
            "create-container",
            "--gidmap",
            "0:100000:1000:2000:100000:10:3000:100500:10",
            ""
        ]),
        ours(NewContainer {
            gid_map: maps(&[(0, 100_000, 1000), (2000, 100_000, 10), (3000, 100_500, 10)]),
            ..NewContainer::default()
        })
    );
    assert_eq!(
        go.fails(&["set-container-data", "c1", ""]),
        store.set_big_data("c1", "", b"").unwrap_err().to_string()
    );
    // Go's refusals left no record behind (its layers it rolled back itself).
    assert_eq!(
        store
            .containers()
            .unwrap()
            .iter()
            .map(|c| &c.id)
            .collect::<Vec<_>>(),
        [&taken.id]
    );
}

#[test]
fn a_size_go_cannot_give_under_its_read_lock_we_compute() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let store = go.open();
    let id = store
        .create(NewContainer {
            names: vec!["c".into()],
            layer_id: go.create_layer(),
            ..NewContainer::default()
        })
        .unwrap()
        .id;
    // An item file the record does not describe (a writer killed between the two).
    let dir = go.graph().join("vfs-containers").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("extra"), b"12345").unwrap();
    let err = go.fails(&["get-container-data-size", "c", "extra"]);
    assert!(err.contains("container store is not locked"), "{err}");
    assert_eq!(store.big_data_size("c", "extra").unwrap(), 5);
    assert_eq!(
        store.big_data_digest("c", "extra").unwrap(),
        canonical_digest(b"12345").as_str()
    );
}
