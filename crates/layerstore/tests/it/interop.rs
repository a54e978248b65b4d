//! One store, two implementations: what the Store makes, the Go tool lists, inspects, mounts
//! and deletes; what the Go tool makes, the Store reads and deletes.

use layerstore::{ContainerOptions, NewImage};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::support::{Scratch, assert_whole, go_ids, layer, sorted};

fn ours_then_go(driver: &'static str) {
    let scratch = Scratch::new(driver);
    let store = scratch.open();
    let base = layer(&store, None, &[("etc/hostname", b"ours\n")]);
    let top = layer(&store, Some(&base), &[("usr/bin/tool", b"#!/bin/sh\n")]);
    let image = store
        .create_image(NewImage {
            names: vec!["localhost/ours:latest".into()],
            top_layer: top[..12].to_owned(),
            ..NewImage::default()
        })
        .unwrap();
    assert_eq!(image.top_layer, top, "the prefix was resolved");
    store
        .set_image_big_data(
            &image.id,
            "manifest",
            b"{\"schemaVersion\":2}",
            Some(&|d: &[u8]| Ok(layerstore_recordstore::canonical_digest(d))),
        )
        .unwrap();
    let container = store
        .create_container(ContainerOptions {
            names: vec!["web".into()],
            image: "localhost/ours:latest".into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    assert_eq!(container.image_id, image.id);
    let container_layer = store.layer(&container.layer_id).unwrap();
    assert_eq!(container_layer.parent, top);
    assert!(
        container_layer.flags.is_empty(),
        "{:?}",
        container_layer.flags
    );
    assert_whole(&store);
    drop(store);

    // The Go tool sees all of it.
    assert_eq!(go_ids(&scratch, "images"), [image.id.as_str()]);
    assert_eq!(go_ids(&scratch, "containers"), [container.id.as_str()]);
    assert_eq!(
        go_ids(&scratch, "layers"),
        sorted([&base, &top, &container.layer_id], |s| s.as_str())
    );
    let shown = scratch.go_ok(&["image", "localhost/ours:latest"]);
    assert!(shown.contains(&format!("Top Layer: {top}")), "{shown}");
    let mount = scratch.go_ok(&["mount", "web"]);
    let mount = mount.trim();
    assert_eq!(
        std::fs::read(std::path::Path::new(mount).join("etc/hostname")).unwrap(),
        b"ours\n"
    );
    scratch.go_ok(&["unmount", "web"]);
    // Its in-use rules hold for our records too.
    let err = scratch.go_err(&["delete-image", &image.id]);
    assert!(err.ends_with("image is in use by a container"), "{err}");
    scratch.go_ok(&["delete-container", "web"]);
    scratch.go_ok(&["delete-image", &image.id]);
    assert_eq!(go_ids(&scratch, "layers"), Vec::<String>::new());
}

#[test]
fn what_we_make_the_go_tool_lists_mounts_and_deletes_on_vfs() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    ours_then_go("vfs");
}

#[test]
fn what_we_make_the_go_tool_lists_mounts_and_deletes_on_overlay() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    ours_then_go("overlay");
}

fn go_then_ours(driver: &'static str) {
    let scratch = Scratch::new(driver);
    let tar = crate::support::tarball(&[("etc/os-release", b"ID=go\n")]);
    let tar_path = scratch.path().join("base.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    let base = scratch
        .go_ok(&["import-layer", "-f", tar_path.to_str().unwrap()])
        .trim()
        .to_owned();
    let image = scratch
        .go_ok(&["create-image", "-n", "go-image", &base])
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let item = scratch.path().join("item");
    std::fs::write(&item, b"config bytes").unwrap();
    scratch.go_ok(&[
        "set-image-data",
        "-f",
        item.to_str().unwrap(),
        &image,
        "config",
    ]);
    let container = scratch
        .go_ok(&["create-container", "-n", "go-ctr", "go-image"])
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let go_layer = scratch.go_json(&["container", &container])[0]["layer"]
        .as_str()
        .unwrap()
        .to_owned();

    let store = scratch.open();
    let found = store.image("go-image").unwrap();
    assert_eq!(
        (found.id.as_str(), found.top_layer.as_str()),
        (image.as_str(), base.as_str())
    );
    assert_eq!(
        store.image_big_data("go-image", "config").unwrap(),
        b"config bytes"
    );
    let ctr = store.container("go-ctr").unwrap();
    assert_eq!(
        (ctr.id.as_str(), ctr.layer_id.as_str()),
        (container.as_str(), go_layer.as_str())
    );
    // A container is found by its layer too, and mounts with the image's files.
    let mount = store.mount(&go_layer, "").unwrap();
    assert_eq!(
        std::fs::read(mount.join("etc/os-release")).unwrap(),
        b"ID=go\n"
    );
    assert!(!store.unmount("go-ctr", false).unwrap());
    assert_eq!(store.image_size("go-image").unwrap(), tar.len() as i64 + 12);
    assert_whole(&store);
    // Go's in-use rules, through us.
    let err = store
        .delete_image("go-image", true)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("image used by {container}: image is in use by a container")
    );
    store.delete_container("go-ctr").unwrap();
    assert_eq!(
        store.delete_image("go-image", true).unwrap(),
        [base.as_str()]
    );
    assert_whole(&store);
    drop(store);
    for what in ["layers", "images", "containers"] {
        assert_eq!(go_ids(&scratch, what), Vec::<String>::new(), "{what}");
    }
    assert!(
        !scratch
            .run()
            .join(format!("{driver}-containers"))
            .join(&container)
            .exists()
    );
}

#[test]
fn what_the_go_tool_makes_we_read_mount_and_delete_on_vfs() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    go_then_ours("vfs");
}

#[test]
fn what_the_go_tool_makes_we_read_mount_and_delete_on_overlay() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    go_then_ours("overlay");
}

/// buildah commits an image; we read it, run a container of ours on it and delete things;
/// podman and skopeo still use the store, before and after.
fn buildah_podman_skopeo(driver: &'static str) {
    let scratch = Scratch::new(driver);
    let working = scratch.tool_ok("buildah", &["from", "scratch"]);
    let working = working.trim();
    let hello = scratch.path().join("hello.txt");
    std::fs::write(&hello, b"hello from buildah\n").unwrap();
    scratch.tool_ok(
        "buildah",
        &["add", working, hello.to_str().unwrap(), "/hello.txt"],
    );
    scratch.tool_ok("buildah", &["commit", working, "localhost/built:latest"]);
    scratch.tool_ok("buildah", &["rm", working]);

    let store = scratch.open();
    let image = store.image("localhost/built:latest").unwrap();
    assert!(image.digest.starts_with("sha256:"), "{image:?}");
    let manifest = store.image_big_data(&image.id, "manifest").unwrap();
    assert!(
        String::from_utf8_lossy(&manifest).contains("application/vnd.oci.image"),
        "{}",
        String::from_utf8_lossy(&manifest)
    );
    assert_eq!(
        store.images_by_digest(&image.digest).unwrap()[0].id,
        image.id
    );
    store
        .create_container(ContainerOptions {
            names: vec!["ours".into()],
            image: "localhost/built:latest".into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    let mount = store.mount("ours", "").unwrap();
    assert_eq!(
        std::fs::read(mount.join("hello.txt")).unwrap(),
        b"hello from buildah\n"
    );
    std::fs::write(mount.join("written-by-us"), b"x").unwrap();
    store.unmount("ours", false).unwrap();
    // Deleting the image's layer any way is refused while the image and our container use it.
    assert!(store.delete_layer(&image.top_layer).is_err());
    assert!(store.delete(&image.top_layer).is_err());
    assert_whole(&store);
    drop(store);

    let listed = scratch.tool_ok("podman", &["images", "--format", "{{.ID}} {{.Repository}}"]);
    assert!(
        listed.contains(&image.id[..12]) && listed.contains("localhost/built"),
        "{listed}"
    );
    let theirs = scratch.tool_ok(
        "podman",
        &[
            "create",
            "--name",
            "theirs",
            "localhost/built:latest",
            "/hello.txt",
        ],
    );
    let theirs = theirs.trim();
    let mounted = scratch.tool_ok("podman", &["mount", theirs]);
    assert_eq!(
        std::fs::read(std::path::Path::new(mounted.trim()).join("hello.txt")).unwrap(),
        b"hello from buildah\n"
    );
    scratch.tool_ok("podman", &["umount", theirs]);
    let oci = scratch.path().join("oci");
    let out = crate::support::run({
        let mut c = std::process::Command::new("skopeo");
        c.args(["copy", &scratch.skopeo_ref("localhost/built:latest")])
            .arg(format!("oci:{}", oci.display()));
        c
    });
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(oci.join("index.json").exists());

    // Our store sees podman's container; we delete ours and podman still works.
    let store = scratch.open();
    assert_eq!(store.container(theirs).unwrap().image_id, image.id);
    store.delete_container("ours").unwrap();
    assert_whole(&store);
    drop(store);
    let ps = scratch.tool_ok("podman", &["ps", "-a", "--format", "{{.ID}}"]);
    assert!(theirs.starts_with(ps.trim()), "{ps}");
    scratch.tool_ok("podman", &["rm", theirs]);
    scratch.tool_ok("podman", &["rmi", "localhost/built:latest"]);
    let store = scratch.open();
    assert_eq!(store.layers().unwrap(), []);
    assert_eq!(store.images().unwrap(), []);
}

#[test]
fn an_image_buildah_commits_is_ours_to_use_and_podman_and_skopeo_still_work_on_vfs() {
    require_or_skip!(Capability::Podman);
    buildah_podman_skopeo("vfs");
}

#[test]
fn an_image_buildah_commits_is_ours_to_use_and_podman_and_skopeo_still_work_on_overlay() {
    require_or_skip!(Capability::Podman, Capability::Overlay);
    buildah_podman_skopeo("overlay");
}
