//! The image and container commands against the Go tool: a short script through
//! `cli_differential`'s runner and normaliser (the long one is `store_differential`'s). Then
//! what this tool does on purpose beyond or unlike the Go tool (store doc 7.2), asserted on
//! its own.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use layerstore_testsupport::scratch::Scratch;

use layerstore_testsupport::go::go_command;
use layerstore_testsupport::{Capability, go_fixtures, go_tool, require_or_skip};

use crate::cli_differential::{Step, assert_agree, differences_between, step};
use crate::suite::sha256_digest;

const LAYER_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const LAYER_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const IMAGE_1: &str = "aaaa111111111111111111111111111111111111111111111111111111111111";
const IMAGE_2: &str = "bbbb111111111111111111111111111111111111111111111111111111111111";
const CONTAINER_1: &str = "cccc111111111111111111111111111111111111111111111111111111111111";
const CONTAINER_2: &str = "dddd111111111111111111111111111111111111111111111111111111111111";

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

/// The item the script stores: a small text file of the fixtures.
const ITEM: &str = "{TARS}/SHA256SUMS";

/// Every image and container command, in success and failure, on a store with two layers.
fn script() -> Vec<Step> {
    let item = std::fs::read(go_fixtures().join("tars/SHA256SUMS")).expect("the item");
    let item_digest = sha256_digest(&item);
    vec![
        step(&["images"]),
        step(&["images", "--json"]),
        step(&["containers"]),
        step(&["containers", "--json"]),
        step(&["create-layer", "-i", LAYER_A, "-n", "base"]),
        step(&["create-layer", "-i", LAYER_B, "-n", "top", LAYER_A]),
        step(&[
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
        ]),
        step(&["create-image", "-i", IMAGE_2, "-n", "img2"]),
        step(&["create-image", "-i", IMAGE_2, "-n", "img3"]),
        step(&["create-image", "-n", "img1"]),
        step(&["create-image", "nosuchlayer"]),
        step(&["createimage", "a", "b"]),
        step(&["images"]),
        step(&["images", "-q"]),
        step(&["image", "img1", "img2", "nosuch"]),
        step(&["image", "--json", "img2"]),
        step(&["set-image-data", "-f", ITEM, "img1", "manifest"]),
        step(&["set-image-data", "-f", ITEM, "img1", "other"]),
        step(&["set-image-data", "-f", ITEM, "nosuch", "other"]),
        step(&["list-image-data", "img1"]),
        step(&["list-image-data", "--json", "img2"]),
        step(&["list-image-data", "--json", "img1"]),
        step(&["get-image-data", "img1", "manifest"]),
        step(&["get-image-data", "img1", "nosuch"]),
        step(&["get-image-data", "nosuch", "x"]),
        step(&["get-image-data-size", "img1", "manifest"]),
        step(&["get-image-data-digest", "img1", "manifest"]),
        step(&["get-image-data-size", "img1", "nosuch"]),
        step(&["images-by-digest", &item_digest]),
        step(&["images-by-digest", "-q", &item_digest]),
        step(&["images-by-digest", "--json", &item_digest]),
        step(&["images-by-digest", "bad"]),
        step(&["images"]),
        step(&[
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
        ]),
        step(&["create-container", "-i", CONTAINER_2, "-n", "ctr2", ""]),
        step(&["create-container", "-n", "ctr1", "img1"]),
        step(&["create-container", "nosuchimage"]),
        step(&[
            "create-container",
            "--hostuidmap",
            "--uidmap",
            "0:1:1",
            "img1",
        ]),
        step(&["create-container", "--uidmap", "0:1:1,2:3:4", "img1"]),
        step(&["containers"]),
        step(&["container", "ctr1", "ctr2", "nosuch"]),
        step(&["container", "--json", "ctr2"]),
        step(&["set-container-data", "-f", ITEM, "ctr1", "key1"]),
        step(&["list-container-data", "ctr1"]),
        step(&["list-container-data", "--json", "ctr2"]),
        step(&["get-container-data", "ctr1", "key1"]),
        step(&["get-container-data-size", "ctr1", "key1"]),
        step(&["get-container-data-digest", "ctr1", "key1"]),
        step(&["get-container-data", "ctr1", "nosuch"]),
        step(&["get-container-data", "nosuch", "key1"]),
        step(&["get-container-dir", "ctr1"]),
        step(&["get-container-run-dir", "ctr1"]),
        step(&["get-container-dir", "nosuch"]),
        step(&["container-parent-owners", "ctr1"]),
        step(&["container-parent-owners", "--json", "ctr1"]),
        step(&["layers"]),
        step(&["layers", "-t"]),
        step(&["exists", "-i", "img1"]),
        step(&["exists", "-c", "img1"]),
        step(&["exists", "-l", "img1"]),
        step(&["exists", "-c", "ctr1"]),
        step(&["exists", "--json", "ctr1", "img1", "base", "nosuch"]),
        step(&["metadata", "img1", "ctr1", "base", "nosuch"]),
        step(&["metadata", "-q", "img1"]),
        step(&["set-metadata", "-m", "newmeta", "img1"]),
        step(&["set-metadata", "-m", "x", "nosuch"]),
        step(&["metadata", "img1"]),
        step(&["get-names", "img1"]),
        step(&["get-names", "--json", "ctr2"]),
        step(&["add-names", "-n", "img1c", "img1"]),
        step(&["add-names", "--json", "-n", "img2x", "img2"]),
        step(&["set-names", "--json", "ctr2"]),
        step(&["set-names", "-n", "ctrX", "ctr2"]),
        step(&["get-names", "ctr2"]),
        step(&["get-names", "nosuch"]),
        step(&["delete-layer", LAYER_B]),
        step(&["delete-image", "img1"]),
        step(&["delete-image", "--test", "img2"]),
        step(&["delete-image", "--json", "nosuch"]),
        step(&["mount", "ctr1"]),
        step(&["mounted", "ctr1"]),
        step(&["unmount", "ctr1"]),
        step(&["delete-container", "ctr1"]),
        step(&["delete-container", "--json", "ctr2"]),
        step(&["delete-image", "--test", "--json", "img1"]),
        step(&["delete-image", "img1"]),
        step(&["layers"]),
        step(&["delete", "img2"]),
        step(&["delete", "--json", "nosuch"]),
        step(&["images", "--json"]),
        step(&["containers", "--json"]),
        step(&["version", "--json"]),
        step(&["wipe"]),
        step(&["shutdown"]),
    ]
}

/// The script against the Go tool on `driver`, through the shared differential runner.
fn agrees_with_go(driver: &str) {
    let go = go_tool().expect("the Go tool");
    let steps = script();
    let (mismatches, _, first_dir, second_dir) =
        differences_between(&go, &binary(), driver, &steps);
    // Dropping the scratch directories detaches what the tools left mounted in them.
    drop((first_dir, second_dir));
    assert_agree(&mismatches, steps.len());
}

#[test]
fn image_and_container_commands_match_the_go_tool_on_vfs() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    agrees_with_go("vfs");
}

#[test]
fn image_and_container_commands_match_the_go_tool_on_overlay() {
    require_or_skip!(Capability::Root, Capability::GoTool, Capability::Overlay);
    agrees_with_go("overlay");
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
    let dir = Scratch::new();
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
    let dir = Scratch::new();
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
        let dir = Scratch::new();
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
        let dir = Scratch::new();
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
