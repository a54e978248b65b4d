//! `layerstore pull` and `push` through the binary: the image ID printed (quiet on a pipe),
//! the layers listed, a damaged archive refused with nothing left, a push read by skopeo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use layerstore_testsupport::scratch::Scratch;

use layerstore_testsupport::{Capability, require_or_skip, workspace_root};

/// `layerstore --graph DIR/root --run DIR/run -s vfs ARGS`, piped.
fn layerstore(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layerstore"))
        .arg("--graph")
        .arg(dir.join("root"))
        .arg("--run")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .stdin(Stdio::null())
        .env_remove("CONTAINERS_STORAGE_CONF")
        .output()
        .expect("runs layerstore")
}

fn example() -> PathBuf {
    workspace_root().join("examples/image-oci.tar")
}

/// The config digest of `examples/image-oci.tar`: the image ID podman gives it.
fn example_image_id() -> String {
    let index: serde_json::Value = {
        let mut archive = tar::Archive::new(std::fs::File::open(example()).unwrap());
        let mut found = None;
        let mut blobs = std::collections::HashMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            if path.ends_with("index.json") {
                found = Some(bytes);
            } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                blobs.insert(hex.to_owned(), bytes);
            }
        }
        let index: serde_json::Value = serde_json::from_slice(&found.unwrap()).unwrap();
        let manifest = index["manifests"][0]["digest"].as_str().unwrap();
        serde_json::from_slice(&blobs[manifest.trim_start_matches("sha256:")]).unwrap()
    };
    index["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned()
}

#[test]
fn pull_prints_the_image_id_and_push_gives_it_back() {
    require_or_skip!(Capability::Root, Capability::Skopeo);
    let dir = Scratch::new();
    let source = format!("oci-archive:{}", example().display());
    let out = layerstore(dir.path(), &["pull", &source]);
    assert!(out.status.success(), "{out:?}");
    let id = example_image_id();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{id}\n"));
    assert!(out.stderr.is_empty(), "no progress on a pipe: {out:?}");
    let layers = layer_ids(&layerstore(dir.path(), &["layers"]));
    assert_eq!(layers.len(), 2, "{layers:?}");

    // Again: every layer is there already; the same ID.
    let again = layerstore(
        dir.path(),
        &["pull", "--quiet", &source, "localhost/again:v2"],
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), format!("{id}\n"));
    let layers_after = layer_ids(&layerstore(dir.path(), &["layers"]));
    assert_eq!(layers, layers_after);

    let pushed = dir.path().join("pushed");
    let dest = format!("oci:{}:back", pushed.display());
    let out = layerstore(dir.path(), &["push", &id, &dest]);
    assert!(out.status.success(), "{out:?}");
    let inspected = Command::new("skopeo")
        .args(["inspect", "--raw", &dest])
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(manifest["config"]["digest"], format!("sha256:{id}"));
}

#[test]
fn a_damaged_archive_is_refused_and_leaves_nothing() {
    require_or_skip!(Capability::Root);
    let dir = Scratch::new();
    let mut bytes = std::fs::read(example()).unwrap();
    bytes.truncate(bytes.len() * 2 / 3);
    let damaged = dir.path().join("damaged.tar");
    std::fs::write(&damaged, bytes).unwrap();
    let out = layerstore(
        dir.path(),
        &["pull", &format!("oci-archive:{}", damaged.display())],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("damaged.tar"),
        "the error names the archive: {err}"
    );
    let layers = layerstore(dir.path(), &["layers"]);
    assert!(layers.stdout.is_empty(), "{layers:?}");
    let out = layerstore(dir.path(), &["pull", "oci:/nonexistent/layout"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/layout"),
        "{out:?}"
    );
}

#[test]
fn a_relative_layout_is_named_as_podman_names_it() {
    require_or_skip!(Capability::Root, Capability::Podman);
    let dir = Scratch::new();
    let layout = dir.path().join("work/small");
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(workspace_root().join("examples/image"))
        .arg(&layout)
        .status()
        .unwrap();
    assert!(copied.success());
    let ours = Command::new(env!("CARGO_BIN_EXE_layerstore"))
        .arg("--graph")
        .arg(dir.path().join("ours/root"))
        .arg("--run")
        .arg(dir.path().join("ours/run"))
        .args([
            "--storage-driver",
            "vfs",
            "pull",
            "--quiet",
            "oci:small:demo",
        ])
        .current_dir(dir.path().join("work"))
        .output()
        .unwrap();
    assert!(ours.status.success(), "{ours:?}");
    let theirs = Command::new("podman")
        .arg("--root")
        .arg(dir.path().join("theirs/root"))
        .arg("--runroot")
        .arg(dir.path().join("theirs/run"))
        .args([
            "--storage-driver",
            "vfs",
            "pull",
            "--quiet",
            "oci:small:demo",
        ])
        .current_dir(dir.path().join("work"))
        .output()
        .unwrap();
    assert!(theirs.status.success(), "{theirs:?}");
    let names = |root: &str| {
        let images: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(root).join("root/vfs-images/images.json")).unwrap(),
        )
        .unwrap();
        images[0]["names"].clone()
    };
    assert_eq!(names("ours"), names("theirs"));
    assert_eq!(names("ours"), serde_json::json!(["localhost/small:latest"]));
}

#[test]
fn progress_bars_show_on_a_terminal_only() {
    require_or_skip!(Capability::Root, Capability::Script);
    let dir = Scratch::new();
    let line = format!(
        "{} --graph {} --run {} --storage-driver vfs pull oci-archive:{}",
        env!("CARGO_BIN_EXE_layerstore"),
        dir.path().join("root").display(),
        dir.path().join("run").display(),
        example().display()
    );
    let shown = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let terminal = String::from_utf8_lossy(&shown.stdout);
    assert!(terminal.contains("total"), "a total bar: {terminal:?}");
    assert!(terminal.contains(&example_image_id()), "{terminal:?}");
    // Pulled again: each layer is shown as already there.
    let again = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("exists"),
        "{again:?}"
    );
    // --quiet shows none, even on a terminal: only the image ID.
    let quiet = Command::new("script")
        .args([
            "-qec",
            &line.replace(" pull ", " pull --quiet "),
            "/dev/null",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&quiet.stdout).trim(),
        example_image_id(),
        "{quiet:?}"
    );
}

#[test]
fn a_pull_killed_at_each_step_leaves_no_image_and_a_pull_again_completes() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    for point in [
        "put-after-incomplete-record",
        "staging-after-incomplete-record",
        "staging-after-move",
        "put-done",
    ] {
        let dir = Scratch::new();
        let source = format!("oci-archive:{}", example().display());
        let killed = Command::new(env!("CARGO_BIN_EXE_layerstore"))
            .arg("--graph")
            .arg(dir.path().join("root"))
            .arg("--run")
            .arg(dir.path().join("run"))
            .args(["--storage-driver", "vfs", "pull", "--quiet", &source])
            .env("LAYERSTORE_CRASH_AT", point)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&killed.status),
            Some(9),
            "{point}: {killed:?}"
        );
        let images = layerstore_testsupport::go::run_go_ok(
            &dir.path().join("root"),
            &dir.path().join("run"),
            "vfs",
            &["images"],
        );
        assert!(images.is_empty(), "{point}: an image is listed: {images:?}");
        let check = layerstore(dir.path(), &["check"]);
        assert!(check.status.success(), "{point}: {check:?}");
        // The killed pull's staging directories are swept when the next process starts the
        // driver; none is left.
        let staging = dir.path().join("root/vfs/staging");
        let left: Vec<_> = std::fs::read_dir(&staging)
            .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{point}: staging keeps {left:?}");
        let again = layerstore(dir.path(), &["pull", "--quiet", &source]);
        assert_eq!(
            String::from_utf8_lossy(&again.stdout),
            format!("{}\n", example_image_id()),
            "{point}: {again:?}"
        );
        let layers = layer_ids(&layerstore(dir.path(), &["layers"]));
        assert_eq!(layers.len(), 2, "{point}: {layers:?}");
    }
}

/// The layer IDs `layers` lists (its indented `image:`/`container:`/name lines left out).
fn layer_ids(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| !line.starts_with('\t'))
        .map(str::to_owned)
        .collect()
}
