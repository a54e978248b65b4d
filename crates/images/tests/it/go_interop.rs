//! The Go tool (`containers-storage` 1.43) and our image store on one store, both ways: Go
//! lists, inspects, reads and deletes what we wrote; we read what Go wrote; a Go writer waits
//! for our write lock and we see its write; both say the same errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use layerstore_images::{ImageStore, NamesOp, NewImage};
use layerstore_model::{Image, to_go_json};
use layerstore_recordstore::canonical_digest;
use layerstore_testsupport::go::{GO_TIMEOUT, go_command, wait_with_timeout};
use layerstore_testsupport::locks::waits_for_lock;
use layerstore_testsupport::{Capability, require_or_skip};

use crate::sha256;

/// A scratch store shared with the Go tool: graph root, run root, vfs.
struct GoStore {
    temp: tempfile::TempDir,
}

impl GoStore {
    /// A store the Go tool has initialised (so every lock file exists).
    fn new() -> GoStore {
        let store = GoStore {
            temp: tempfile::tempdir().unwrap(),
        };
        store.ok(&["images"]);
        store
    }

    fn graph(&self) -> PathBuf {
        self.temp.path().join("graph")
    }

    fn images_dir(&self) -> PathBuf {
        self.graph().join("vfs-images")
    }

    fn command(&self, args: &[&str]) -> Command {
        go_command(&self.graph(), &self.temp.path().join("run"), "vfs", args)
    }

    fn output(&self, args: &[&str]) -> Output {
        wait_with_timeout(
            self.command(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// Runs the Go tool, requires success, returns its standard output.
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.output(args);
        assert!(out.status.success(), "containers-storage {args:?}: {out:?}");
        out.stdout
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok(args)).unwrap()
    }

    /// Runs the Go tool, requires failure, returns its standard error.
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

fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// What the Go tool prints for `images --json` on a store holding `images`.
fn as_go_prints(images: &[Image]) -> String {
    let mut json = String::from_utf8(to_go_json(images).unwrap()).unwrap();
    json.push('\n');
    json
}

#[test]
fn go_lists_reads_and_deletes_the_images_we_write() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let layer = go.create_layer();
    let store = ImageStore::open(go.images_dir()).unwrap();
    let ours = store
        .create(NewImage {
            names: vec!["ours:1".into(), "ours:2".into()],
            top_layer: layer.clone(),
            metadata: "meta <&> é".into(),
            digest: Some(canonical_digest(b"given").as_str().to_owned()),
            ..NewImage::default()
        })
        .unwrap();
    let items: [(&str, &[u8]); 6] = [
        ("manifest", b"{\"schemaVersion\":2}"),
        ("config.json", b"{}"),
        ("Manifest", b"not a manifest"),
        ("a/b", b"slash"),
        ("abC", b"quirk"),
        ("manifest-sha256:abcd", b"second manifest"),
    ];
    for (key, data) in items {
        store
            .set_big_data("ours:1", key, data, Some(&sha256))
            .unwrap();
    }
    store
        .update_names("ours:1", &["ours:3".into()], NamesOp::Add)
        .unwrap();
    store
        .create(NewImage {
            id: Some("custom-id".into()),
            names: vec!["custom".into()],
            ..NewImage::default()
        })
        .unwrap();
    let ours = store.get(&ours.id).unwrap();

    // Go loads what we wrote and prints it back byte for byte.
    let images = store.images().unwrap();
    assert_eq!(go.text(&["images", "--json"]), as_go_prints(&images));
    let shown = go.text(&["image", "ours:3"]);
    for line in [
        format!("ID: {}", ours.id),
        "Name: ours:3".into(),
        format!("Top Layer: {layer}"),
        format!("Digest: {}", canonical_digest(b"given").as_str()),
        format!("Digest: {}", canonical_digest(items[0].1).as_str()),
        "Data: a/b".into(),
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} in\n{shown}");
    }
    assert_eq!(
        go.text(&["list-image-data", &ours.id]),
        items
            .iter()
            .map(|(k, _)| format!("{k}\n"))
            .collect::<String>()
    );
    for (key, data) in items {
        assert_eq!(go.ok(&["get-image-data", &ours.id, key]), data, "{key}");
        assert_eq!(
            go.text(&["get-image-data-digest", &ours.id, key]),
            format!("{}\n", canonical_digest(data).as_str())
        );
        assert_eq!(
            go.text(&["get-image-data-size", &ours.id, key]),
            format!("{}\n", data.len())
        );
    }
    for digest in [canonical_digest(b"given"), canonical_digest(items[5].1)] {
        assert_eq!(
            go.text(&["images-by-digest", "--quiet", digest.as_str()]),
            format!("{}\n", ours.id)
        );
    }
    // The API's add puts the given names first.
    assert_eq!(
        go.text(&["get-names", &ours.id]),
        "ours:3\nours:1\nours:2\n"
    );

    // Go changes and deletes; we see it.
    go.ok(&["set-names", "-n", "renamed", "custom"]);
    assert_eq!(store.get("renamed").unwrap().names_history, ["renamed"]);
    go.ok(&["delete-image", "custom-id"]);
    go.ok(&["delete-image", "ours:2"]);
    assert!(store.images().unwrap().is_empty());
    assert!(!go.images_dir().join(&ours.id).exists());
    assert_eq!(
        std::fs::read_to_string(go.images_dir().join("images.json")).unwrap(),
        "[]"
    );
}

#[test]
fn we_read_the_images_go_writes() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let layer = go.create_layer();
    let given = canonical_digest(b"go given");
    let created = go.text(&[
        "create-image",
        "--name",
        "go:1",
        "--name",
        "go:2",
        "-m",
        "go <meta>",
        "--digest",
        given.as_str(),
        &layer,
    ]);
    let id = created.lines().next().unwrap().to_owned();
    let files = tempfile::tempdir().unwrap();
    let items: [(&str, &[u8]); 3] = [
        ("manifest", b"go manifest"),
        ("Big Key", b"big data"),
        ("k", b""),
    ];
    for (key, data) in items {
        let file = write_file(files.path(), "item", data);
        go.ok(&["set-image-data", "-f", file.to_str().unwrap(), &id, key]);
    }
    go.ok(&["add-names", "-n", "go:3", &id]);
    go.ok(&["create-image", "-i", "custom", "--name", "other"]);

    let store = ImageStore::open(go.images_dir()).unwrap();
    let images = store.images().unwrap();
    assert_eq!(go.text(&["images", "--json"]), as_go_prints(&images));
    let reader = store.read().unwrap();
    let image = reader.get("go:3").unwrap();
    assert_eq!(image.id, id);
    assert_eq!(image.names, ["go:1", "go:2", "go:3"]);
    assert_eq!(image.names_history, ["go:3", "go:2", "go:1"]);
    assert_eq!(image.digest, given.as_str());
    assert_eq!(image.top_layer, layer);
    for (key, data) in items {
        assert_eq!(reader.big_data(&id, key).unwrap(), data, "{key}");
    }
    assert_eq!(
        reader
            .by_digest(canonical_digest(b"go manifest").as_str())
            .unwrap()[0]
            .id,
        id
    );
    assert_eq!(reader.get("cus").unwrap().id, "custom");
    drop(reader);

    // Our rename moves a name; Go sees it.
    store
        .update_names("custom", &["go:3".into()], NamesOp::Add)
        .unwrap();
    assert_eq!(go.text(&["get-names", "custom"]), "go:3\nother\n");
    assert_eq!(go.text(&["get-names", &id]), "go:1\ngo:2\n");
}

#[test]
fn a_go_writer_waits_for_our_write_lock_and_we_see_its_write() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let store = ImageStore::open(go.images_dir()).unwrap();
    let lock = go.images_dir().join("images.lock");
    let session = store.write().unwrap();
    let child = go
        .command(&["create-image", "--name", "later"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + GO_TIMEOUT;
    while !waits_for_lock(&lock, child.id()) {
        assert!(
            Instant::now() < deadline,
            "the Go tool never waited for images.lock"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the Go tool went on while we held images.lock"
    );
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
    let store = ImageStore::open(go.images_dir()).unwrap();
    let id = store
        .create(NewImage {
            id: Some("abc".into()),
            names: vec!["x".into()],
            ..NewImage::default()
        })
        .unwrap()
        .id;
    let ours = |result: layerstore_images::Result<Image>| result.unwrap_err().to_string();
    assert_eq!(
        go.fails(&["create-image", "--name", "x"]),
        ours(store.create(NewImage {
            names: vec!["x".into()],
            ..NewImage::default()
        }))
    );
    assert_eq!(
        go.fails(&["create-image", "-i", "abc"]),
        ours(store.create(NewImage {
            id: Some("abc".into()),
            ..NewImage::default()
        }))
    );
    assert_eq!(
        go.fails(&["create-image", "--digest", "bogus"]),
        ours(store.create(NewImage {
            digest: Some("bogus".into()),
            ..NewImage::default()
        }))
    );
    assert_eq!(
        go.fails(&["get-image-data", &id, "nokey"]),
        store.big_data(&id, "nokey").unwrap_err().to_string()
    );
    let empty = std::process::Stdio::null();
    let out = go
        .command(&["set-image-data", &id, ""])
        .stdin(empty)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stderr).unwrap().trim_end(),
        store
            .set_big_data(&id, "", b"", None)
            .unwrap_err()
            .to_string()
    );
}

#[test]
fn where_go_gives_up_or_forgets_we_keep_the_records() {
    require_or_skip!(Capability::GoTool);
    let go = GoStore::new();
    let store = ImageStore::open(go.images_dir()).unwrap();
    for name in ["a", "b"] {
        store
            .create(NewImage {
                names: vec![name.into()],
                ..NewImage::default()
            })
            .unwrap();
    }
    let json = go.images_dir().join("images.json");
    let whole = std::fs::read(&json).unwrap();

    // One image with a digest that does not validate: Go opens nothing at all.
    let mut with_bad = whole[..whole.len() - 1].to_vec();
    with_bad.extend_from_slice(br#",{"id":"ccc","digest":"sha256:zzz"}]"#);
    std::fs::write(&json, &with_bad).unwrap();
    let out = go.output(&["images"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("validating image digest \"sha256:zzz\""),
        "{out:?}"
    );
    assert_eq!(store.images().unwrap().len(), 2);
    assert_eq!(store.bad_records().unwrap()[0].id.as_deref(), Some("ccc"));

    // A truncated file: Go lists what it could decode and would save over it; we refuse to
    // touch it and say where.
    std::fs::write(&json, &whole[..whole.len() / 2]).unwrap();
    assert!(go.output(&["images"]).status.success());
    let err = store.images().unwrap_err().to_string();
    assert!(err.starts_with(&format!("loading {json:?}")), "{err}");
    assert!(store.create(NewImage::default()).is_err());
    assert_eq!(std::fs::read(&json).unwrap(), &whole[..whole.len() / 2]);
}
