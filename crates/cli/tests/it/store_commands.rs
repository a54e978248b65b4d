//! The image and container commands against the Go tool on twin stores: the same command
//! lines run on a fresh store of each tool, and stdout, stderr and exit codes must agree once
//! the IDs the stores draw (container layers) and the times are normalised. Then what this
//! tool does on purpose beyond or unlike the Go tool (store doc 7.2): asserted on its own.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use layerstore_testsupport::go::go_command;
use layerstore_testsupport::{Capability, require_or_skip};

const LAYER_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const LAYER_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const IMAGE_1: &str = "aaaa111111111111111111111111111111111111111111111111111111111111";
const IMAGE_2: &str = "bbbb111111111111111111111111111111111111111111111111111111111111";
const CONTAINER_1: &str = "cccc111111111111111111111111111111111111111111111111111111111111";
const CONTAINER_2: &str = "dddd111111111111111111111111111111111111111111111111111111111111";
/// The SHA-256 of `abc`, the item the script stores.
const ABC_DIGEST: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_layerstore"))
}

/// A fresh store under `dir` for one tool.
struct Twin {
    dir: PathBuf,
    go: bool,
    driver: &'static str,
}

impl Twin {
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runs the tool")
    }

    fn command(&self, args: &[&str]) -> Command {
        if self.go {
            go_command(&self.root(), &self.dir.join("run"), self.driver, args)
        } else {
            let mut command = Command::new(binary());
            // Go's name in usage lines, as the Go tool prints them.
            command
                .arg0("containers-storage")
                .arg("--graph")
                .arg(self.root())
                .arg("--run")
                .arg(self.dir.join("run"))
                .args(["--storage-driver", self.driver])
                .args(args)
                .env_remove("CONTAINERS_STORAGE_CONF")
                .stdin(Stdio::null());
            command
        }
    }
}

/// Replaces every 64-hex ID the script did not choose by `<ID n>` (numbered in order of
/// appearance, so the same ID reads the same on both sides), the store's directory by `DIR`
/// and JSON times by `<TIME>`.
fn normalise(text: &str, dir: &Path, seen: &mut HashMap<String, usize>) -> String {
    let text = text.replace(&dir.display().to_string(), "DIR");
    let chosen = [LAYER_A, LAYER_B, IMAGE_1, IMAGE_2, CONTAINER_1, CONTAINER_2];
    let mut out = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .count();
        let at_boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if run == 64 && at_boundary {
            let id = &text[i..i + 64];
            if chosen.contains(&id) || text[..i].ends_with("sha256:") {
                out.push_str(id);
            } else {
                let n = seen.len();
                let n = *seen.entry(id.to_owned()).or_insert(n);
                out.push_str(&format!("<ID {n}>"));
            }
            i += 64;
        } else if run > 0 {
            out.push_str(&text[i..i + run]);
            i += run;
        } else {
            let c = text[i..].chars().next().expect("a character");
            out.push(c);
            i += c.len_utf8();
        }
    }
    let mut result = String::new();
    let mut rest = out.as_str();
    while let Some(at) = rest.find("\"created\":\"") {
        let start = at + "\"created\":\"".len();
        result.push_str(&rest[..start]);
        let end = rest[start..].find('"').map_or(rest.len(), |e| start + e);
        result.push_str("<TIME>");
        rest = &rest[end..];
    }
    result.push_str(rest);
    result
}

/// One command line's outcome, normalised.
fn outcome(output: &Output, dir: &Path, seen: &mut HashMap<String, usize>) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        normalise(&String::from_utf8_lossy(&output.stdout), dir, seen),
        normalise(&String::from_utf8_lossy(&output.stderr), dir, seen),
    )
}

/// Every image and container command, in success and failure, on a store with two layers.
fn script(item: &str) -> Vec<Vec<String>> {
    let lines: Vec<Vec<&str>> = vec![
        vec!["images"],
        vec!["images", "--json"],
        vec!["containers"],
        vec!["containers", "--json"],
        vec!["create-layer", "-i", LAYER_A, "-n", "base"],
        vec!["create-layer", "-i", LAYER_B, "-n", "top", LAYER_A],
        vec![
            "create-image",
            "-i",
            IMAGE_1,
            "-n",
            "img1",
            "-n",
            "localhost/img:latest",
            "-m",
            "meta1",
            LAYER_B,
        ],
        vec!["create-image", "-i", IMAGE_2, "-n", "img2"],
        vec!["create-image", "-i", IMAGE_2, "-n", "img3"],
        vec!["create-image", "-n", "img1"],
        vec!["create-image", "nosuchlayer"],
        vec!["createimage", "a", "b"],
        vec!["images"],
        vec!["images", "-q"],
        vec!["image", "img1", "img2", "nosuch"],
        vec!["image", "--json", "img2"],
        vec!["set-image-data", "-f", item, "img1", "manifest"],
        vec!["set-image-data", "-f", item, "img1", "other"],
        vec!["set-image-data", "-f", item, "nosuch", "other"],
        vec!["list-image-data", "img1"],
        vec!["list-image-data", "--json", "img2"],
        vec!["list-image-data", "--json", "img1"],
        vec!["get-image-data", "img1", "manifest"],
        vec!["get-image-data", "img1", "nosuch"],
        vec!["get-image-data", "nosuch", "x"],
        vec!["get-image-data-size", "img1", "manifest"],
        vec!["get-image-data-digest", "img1", "manifest"],
        vec!["get-image-data-size", "img1", "nosuch"],
        vec!["images-by-digest", ABC_DIGEST],
        vec!["images-by-digest", "-q", ABC_DIGEST],
        vec!["images-by-digest", "--json", ABC_DIGEST],
        vec!["images-by-digest", "bad"],
        vec!["images"],
        vec![
            "create-container",
            "-i",
            CONTAINER_1,
            "-n",
            "ctr1",
            "-n",
            "ctr1b",
            "-m",
            "cmeta",
            "img1",
        ],
        vec!["create-container", "-i", CONTAINER_2, "-n", "ctr2", ""],
        vec!["create-container", "-n", "ctr1", "img1"],
        vec!["create-container", "nosuchimage"],
        vec![
            "create-container",
            "--hostuidmap",
            "--uidmap",
            "0:1:1",
            "img1",
        ],
        vec!["create-container", "--uidmap", "0:1:1,2:3:4", "img1"],
        vec!["containers"],
        vec!["container", "ctr1", "ctr2", "nosuch"],
        vec!["container", "--json", "ctr2"],
        vec!["set-container-data", "-f", item, "ctr1", "key1"],
        vec!["list-container-data", "ctr1"],
        vec!["list-container-data", "--json", "ctr2"],
        vec!["get-container-data", "ctr1", "key1"],
        vec!["get-container-data-size", "ctr1", "key1"],
        vec!["get-container-data-digest", "ctr1", "key1"],
        vec!["get-container-data", "ctr1", "nosuch"],
        vec!["get-container-data", "nosuch", "key1"],
        vec!["get-container-dir", "ctr1"],
        vec!["get-container-run-dir", "ctr1"],
        vec!["get-container-dir", "nosuch"],
        vec!["container-parent-owners", "ctr1"],
        vec!["container-parent-owners", "--json", "ctr1"],
        vec!["layers"],
        vec!["layers", "-t"],
        vec!["exists", "-i", "img1"],
        vec!["exists", "-c", "img1"],
        vec!["exists", "-l", "img1"],
        vec!["exists", "-c", "ctr1"],
        vec!["exists", "--json", "ctr1", "img1", "base", "nosuch"],
        vec!["metadata", "img1", "ctr1", "base", "nosuch"],
        vec!["metadata", "-q", "img1"],
        vec!["set-metadata", "-m", "newmeta", "img1"],
        vec!["set-metadata", "-m", "x", "nosuch"],
        vec!["metadata", "img1"],
        vec!["get-names", "img1"],
        vec!["get-names", "--json", "ctr2"],
        vec!["add-names", "-n", "img1c", "img1"],
        vec!["add-names", "--json", "-n", "img2x", "img2"],
        vec!["set-names", "--json", "ctr2"],
        vec!["set-names", "-n", "ctrX", "ctr2"],
        vec!["get-names", "ctr2"],
        vec!["get-names", "nosuch"],
        vec!["delete-layer", LAYER_B],
        vec!["delete-image", "img1"],
        vec!["delete-image", "--test", "img2"],
        vec!["delete-image", "--json", "nosuch"],
        vec!["mount", "ctr1"],
        vec!["mounted", "ctr1"],
        vec!["unmount", "ctr1"],
        vec!["delete-container", "ctr1"],
        vec!["delete-container", "--json", "ctr2"],
        vec!["delete-image", "--test", "--json", "img1"],
        vec!["delete-image", "img1"],
        vec!["layers"],
        vec!["delete", "img2"],
        vec!["delete", "--json", "nosuch"],
        vec!["images", "--json"],
        vec!["containers", "--json"],
        vec!["version", "--json"],
        vec!["wipe"],
        vec!["shutdown"],
    ];
    lines
        .into_iter()
        .map(|line| line.into_iter().map(str::to_owned).collect())
        .collect()
}

fn differs_from_go(driver: &'static str) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let item = scratch.path().join("item");
    std::fs::write(&item, "abc").expect("item");
    let item = item.display().to_string();
    let go = Twin {
        dir: scratch.path().join("go"),
        go: true,
        driver,
    };
    let ours = Twin {
        // As long as "go": the usage's flag defaults are padded to the paths' length.
        dir: scratch.path().join("rs"),
        go: false,
        driver,
    };
    let (mut go_seen, mut our_seen) = (HashMap::new(), HashMap::new());
    let mut differences = Vec::new();
    for line in script(&item) {
        let args: Vec<&str> = line.iter().map(String::as_str).collect();
        let want = outcome(&go.run(&args), &go.dir, &mut go_seen);
        let got = outcome(&ours.run(&args), &ours.dir, &mut our_seen);
        if want != got {
            differences.push(format!("{args:?}\n--- Go\n{want}\n--- layerstore\n{got}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} command lines differ:\n{}",
        differences.len(),
        script(&item).len(),
        differences.join("\n\n")
    );
}

#[test]
fn image_and_container_commands_match_the_go_tool_on_vfs() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    differs_from_go("vfs");
}

#[test]
fn image_and_container_commands_match_the_go_tool_on_overlay() {
    require_or_skip!(Capability::Root, Capability::GoTool, Capability::Overlay);
    differs_from_go("overlay");
}

fn ours(dir: &Path, args: &[&str]) -> Output {
    Twin {
        dir: dir.to_path_buf(),
        go: false,
        driver: "vfs",
    }
    .run(args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Go 1.43 deletes a layer named by a name or prefix without checking who uses it (store
/// doc 4.3); here the name is resolved first and the layer is refused like its full ID.
#[test]
fn delete_layer_by_name_refuses_an_images_layer() {
    require_or_skip!(Capability::Root);
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    assert!(
        ours(dir, &["create-layer", "-i", LAYER_A, "-n", "base"])
            .status
            .success()
    );
    assert!(
        ours(dir, &["create-image", "-i", IMAGE_1, "base"])
            .status
            .success()
    );
    for key in ["base", &LAYER_A[..12], LAYER_A] {
        let out = ours(dir, &["delete-layer", key]);
        assert_eq!(out.status.code(), Some(1), "{key}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "{key}: layer {LAYER_A} used by image {IMAGE_1}: layer is in use by an image\n"
            )
        );
    }
    let out = ours(dir, &["delete", "base"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(ours(dir, &["exists", "-l", LAYER_A]).status.success());
    let out = ours(dir, &["delete-image", IMAGE_1]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stderr), format!("{IMAGE_1}: {LAYER_A}\n"));
    assert_eq!(ours(dir, &["exists", LAYER_A]).status.code(), Some(1));
}

/// `mount -r` mounts an image read-only: its top layer, through the image's name.
#[test]
fn mount_read_only_mounts_an_images_top_layer() {
    require_or_skip!(Capability::Root, Capability::Overlay);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Twin {
        dir: dir.path().to_path_buf(),
        go: false,
        driver: "overlay",
    };
    assert!(store.run(&["create-layer", "-i", LAYER_A]).status.success());
    assert!(
        store
            .run(&["create-image", "-n", "img", LAYER_A])
            .status
            .success()
    );
    let out = store.run(&["mount", "-r", "img"]);
    assert!(out.status.success(), "{out:?}");
    let mount_point = text(&out.stdout).trim_end().to_owned();
    let write = std::fs::write(Path::new(&mount_point).join("new"), "x")
        .expect_err("a read-only mount refuses writes");
    assert_eq!(
        write.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
    let out = store.run(&["mounted", LAYER_A]);
    assert_eq!(text(&out.stdout), format!("{LAYER_A} mounted\n"));
    let out = store.run(&["unmount", "img"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "",
        "unmounted as an image: Go prints nothing"
    );
    assert!(store.run(&["shutdown"]).status.success());
}

/// `mount -o ro` (the Go tool ignores `-o`): overlay mounts read-only; vfs, which hands out
/// its directory, refuses rather than give a writable tree, and leaves nothing mounted.
#[test]
fn mount_with_option_ro_is_read_only_or_refused() {
    require_or_skip!(Capability::Root, Capability::Overlay);
    for driver in ["overlay", "vfs"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Twin {
            dir: dir.path().to_path_buf(),
            go: false,
            driver,
        };
        assert!(store.run(&["create-layer", "-i", LAYER_A]).status.success());
        let out = store.run(&["mount", "-o", "ro", LAYER_A]);
        if driver == "overlay" {
            assert!(out.status.success(), "{out:?}");
            let mount_point = text(&out.stdout).trim_end().to_owned();
            let write = std::fs::write(Path::new(&mount_point).join("new"), "x")
                .expect_err("a read-only mount refuses writes");
            assert_eq!(
                write.raw_os_error(),
                Some(rustix::io::Errno::ROFS.raw_os_error())
            );
            assert!(store.run(&["unmount", LAYER_A]).status.success());
        } else {
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(
                text(&out.stderr).ends_with(&format!(
                    ": the vfs driver cannot mount a layer read-only while mounting {LAYER_A}\n"
                )),
                "{out:?}"
            );
        }
        let out = store.run(&["mounted", LAYER_A]);
        assert_eq!(text(&out.stdout), "", "{driver}: nothing left mounted");
        assert!(store.run(&["shutdown"]).status.success());
    }
}

/// Go's test hook `_TEST_FORCE_SUPPORT_SHIFTING=yes-please` makes overlay claim ID shifting:
/// a container with ID maps gets no chowned copy of its image's top layer, its files are
/// mounted as they are on disk (Go shows them through an ID-mapped mount), and deleting the container and image leaves no layer
/// (upstream's `idmaps-create-mapped-container-shifting`). Ours and the Go tool alike.
#[test]
fn forced_shifting_on_overlay_makes_no_mapped_copy() {
    require_or_skip!(Capability::Root, Capability::Overlay, Capability::GoTool);
    for go in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Twin {
            dir: dir.path().to_path_buf(),
            go,
            driver: "overlay",
        };
        let forced = |args: &[&str]| {
            store
                .command(args)
                .env("_TEST_FORCE_SUPPORT_SHIFTING", "yes-please")
                .output()
                .expect("runs the tool")
        };
        assert!(store.run(&["create-layer", "-i", LAYER_A]).status.success());
        let out = store.run(&["mount", LAYER_A]);
        let mount_point = PathBuf::from(text(&out.stdout).trim_end());
        std::fs::write(mount_point.join("file"), "data").expect("write");
        assert!(store.run(&["unmount", LAYER_A]).status.success());
        assert!(
            store
                .run(&["create-image", "-n", "img", LAYER_A])
                .status
                .success()
        );
        let out = forced(&[
            "create-container",
            "--uidmap",
            "0:1000:1000",
            "--gidmap",
            "0:1000:1000",
            "img",
        ]);
        assert!(out.status.success(), "go={go}: {out:?}");
        let container = text(&out.stdout).trim_end().to_owned();
        let out = forced(&["mount", &container]);
        assert!(out.status.success(), "go={go}: {out:?}");
        let file = PathBuf::from(text(&out.stdout).trim_end()).join("file");
        let meta = std::fs::metadata(&file).expect("stat");
        use std::os::unix::fs::MetadataExt;
        // Go 1.43 makes ID-mapped mounts where the kernel has them, so its host view shows
        // the mapped owners; ours mounts as on disk, as upstream's test expects.
        let expected = if go { (1000, 1000) } else { (0, 0) };
        assert_eq!((meta.uid(), meta.gid()), expected, "go={go}: not chowned");
        assert!(forced(&["unmount", &container]).status.success());
        let out = store.run(&["layers"]);
        let layers = text(&out.stdout);
        assert_eq!(
            layers.lines().filter(|l| !l.starts_with('\t')).count(),
            2,
            "go={go}: the image's layer and the container's, no copy: {layers}"
        );
        assert!(forced(&["delete-container", &container]).status.success());
        assert!(forced(&["delete-image", "img"]).status.success());
        let out = store.run(&["layers"]);
        assert_eq!(text(&out.stdout), "", "go={go}: no layer left");
        store.run(&["shutdown"]);
    }
}
