//! Additional (read-only) image stores (`vfs.imagestore=<dir>`): their images and layers are
//! found after the read-write store's, marked read-only, used as parents and top layers,
//! copied up on rename (with their big data, as newer Go does), never written (but for the
//! lock files Go creates too), and the Go tool agrees.

use std::collections::BTreeMap;
use std::path::Path;

use layerstore::{ContainerOptions, IDMap, NewImage, Store};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::support::{Scratch, assert_whole, layer};

/// Every file below `root` with its contents (directories as empty), for "nothing changed".
pub fn contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if entry.file_type().unwrap().is_dir() {
                files.insert(name, Vec::new());
                stack.push(path);
            } else if !name.ends_with(".lock") {
                files.insert(name, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

/// A read-only store made by the Store: layers `ro-base` ← `ro-top`, image `ro-image`
/// (name `roimg`, big data `config`).
fn read_only_store(scratch: &Scratch) -> String {
    let store = scratch.open();
    let base = layer(&store, None, &[("d/base", b"base")]);
    let top = layer(&store, Some(&base), &[("d/top", b"top")]);
    let image = store
        .create_image(NewImage {
            names: vec!["roimg".into()],
            top_layer: top,
            ..NewImage::default()
        })
        .unwrap();
    store
        .set_image_big_data(&image.id, "config", b"{}", None)
        .unwrap();
    store.shutdown(false).unwrap();
    image.id
}

fn read_used_and_copied_up_but_never_written(driver: &'static str) {
    let ro = Scratch::new(driver);
    let ro_image = read_only_store(&ro);
    let before = contents(&ro.graph());
    let scratch = Scratch::new(driver);
    let option = format!("{driver}.imagestore={}", ro.graph().display());
    let store = Store::open(scratch.options().driver_option(&option)).unwrap();
    assert_eq!(store.additional_stores().len(), 1);

    // Found after the read-write store's, and marked.
    let image = store.image("roimg").unwrap();
    assert_eq!(image.id, ro_image);
    assert!(image.read_only);
    let top = store.layer(&image.top_layer).unwrap();
    assert!(top.read_only);
    assert_eq!(store.image_big_data("roimg", "config").unwrap(), b"{}");
    // A layer, an image and containers of ours on top of it.
    let child = layer(&store, Some(&top.id), &[("d/child", b"child")]);
    assert_eq!(store.layer(&child).unwrap().parent, top.id);
    let rw_image = store
        .create_image(NewImage {
            names: vec!["on-ro".into()],
            top_layer: top.id[..12].to_owned(),
            ..NewImage::default()
        })
        .unwrap();
    assert_eq!(rw_image.top_layer, top.id);
    let plain = store
        .create_container(ContainerOptions {
            image: "roimg".into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    let mapping = vec![IDMap {
        container_id: 0,
        host_id: 100_000,
        size: 65_536,
    }];
    let mapped = store
        .create_container(ContainerOptions {
            image: "roimg".into(),
            uid_map: mapping.clone(),
            gid_map: mapping.clone(),
            ..ContainerOptions::default()
        })
        .unwrap();
    // No copy of a read-only image's top layer: the container's layer carries the mappings.
    let mapped_layer = store.layer(&mapped.layer_id).unwrap();
    assert_eq!(mapped_layer.parent, top.id);
    assert_eq!(mapped_layer.uid_map, mapping);
    assert_eq!(store.layer(&plain.layer_id).unwrap().parent, top.id);
    // Compared with their parent in the additional store, as in Go (not with nothing): the
    // bats suite's idmaps-create-mapped-container wants size 0 for such a container.
    assert_eq!(store.container_size(&plain.id).unwrap(), 0);
    assert!(store.changes(None, &plain.layer_id).unwrap().is_empty());
    assert_eq!(store.diff_size(None, &child).unwrap(), 5, "d/child only");
    let mount = store.mount(&mapped.id, "").unwrap();
    assert_eq!(std::fs::read(mount.join("d/top")).unwrap(), b"top");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(mount.join("d/base")).unwrap().uid(),
        100_000
    );
    store.unmount(&mapped.id, false).unwrap();
    assert_eq!(
        store.images().unwrap().len(),
        2,
        "ours, then the additional store's"
    );
    assert_eq!(store.layers().unwrap().len(), 5);
    assert!(store.image_size("roimg").unwrap() > 0);
    // Go's refusals on read-only items.
    assert_eq!(
        store.delete_image("roimg", true).unwrap_err().to_string(),
        "identifier is not an image"
    );
    assert_eq!(
        store.delete_layer(&top.id).unwrap_err().to_string(),
        "identifier is not a layer"
    );
    assert!(store.set_image_big_data("roimg", "x", b"x", None).is_err());

    // Renaming copies the image up, with its names, history and big data (newer Go).
    let names = store.add_names("roimg", &["copyname".into()]).unwrap();
    assert_eq!(names, ["copyname", "roimg"]);
    let copy = store.image_store().get("copyname").unwrap();
    assert!(!copy.read_only);
    assert_eq!(copy.id, ro_image);
    assert_eq!(copy.big_data_names, ["config"]);
    assert_eq!(
        store.image_store().big_data("copyname", "config").unwrap(),
        b"{}"
    );
    assert_eq!(
        store.images().unwrap().len(),
        3,
        "the copy is listed beside the original"
    );
    assert_whole(&store);
    drop(store);

    // The Go tool sees the same store (it needs the same option).
    let go = |args: &[&str]| {
        let mut all = vec!["--storage-opt", option.as_str()];
        all.extend(args);
        scratch.go_ok(&all)
    };
    let listed = go(&["images"]);
    assert!(
        listed.contains(&rw_image.id) && listed.matches(&ro_image).count() == 2,
        "{listed}"
    );
    let shown = go(&["image", &rw_image.id]);
    assert!(shown.contains(&format!("Top Layer: {}", top.id)), "{shown}");

    // Deleting the copy stops at the read-only layer (Go 1.43 deletes the record and then
    // fails with `layer not known`).
    let store = Store::open(scratch.options().driver_option(&option)).unwrap();
    store.delete_container(&plain.id).unwrap();
    store.delete_container(&mapped.id).unwrap();
    assert_eq!(
        store.delete_image("copyname", true).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.delete_image("on-ro", true).unwrap(),
        Vec::<String>::new()
    );
    store.delete_layer(&child).unwrap();
    assert_whole(&store);
    assert_eq!(store.images().unwrap().len(), 1);
    store.shutdown(false).unwrap();
    drop(store);
    assert_eq!(
        contents(&ro.graph()),
        before,
        "the additional store is as it was"
    );
}

#[test]
fn an_additional_store_is_read_used_and_copied_up_but_never_written_on_vfs() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    read_used_and_copied_up_but_never_written("vfs");
}

#[test]
fn an_additional_store_is_read_used_and_copied_up_but_never_written_on_overlay() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    read_used_and_copied_up_but_never_written("overlay");
}

/// Overlay checks its image stores as Go does, in Go's words.
#[test]
fn overlay_refuses_relative_and_missing_image_stores_in_gos_words() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    let scratch = Scratch::new("overlay");
    let missing = scratch.path().join("missing");
    for option in [
        "overlay.imagestore=relro".to_owned(),
        format!("overlay.additionalimagestore={}", missing.display()),
    ] {
        let ours = Store::open(scratch.options().driver_option(&option)).unwrap_err();
        let go = scratch.go(&["--storage-opt", &option, "images"]);
        let go_text = String::from_utf8_lossy(&go.stdout);
        assert_eq!(
            go_text.trim(),
            format!("error initializing: {ours}"),
            "{option}"
        );
    }
}

/// Go's option spellings and refusals (store doc 2.8): `vfs.imagestore` and `.imagestore`
/// accumulate; `additionalimagestore` is not a vfs option.
#[test]
fn imagestore_options_are_gos() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let one = Scratch::new("vfs");
    let two = Scratch::new("vfs");
    read_only_store(&one);
    read_only_store(&two);
    let scratch = Scratch::new("vfs");
    let options = scratch
        .options()
        .driver_option(format!("vfs.imagestore={}", one.graph().display()))
        .driver_option(format!(".imagestore={}", two.graph().display()));
    let store = Store::open(options).unwrap();
    let roots: Vec<&Path> = store.additional_stores().iter().map(|a| a.root()).collect();
    assert_eq!(roots, [one.graph().as_path(), two.graph().as_path()]);
    assert_eq!(store.images().unwrap().len(), 2);
    // Both have an image named `roimg`: the first store's wins.
    assert_eq!(
        store.image("roimg").unwrap().id,
        store.additional_stores()[0]
            .images()
            .get("roimg")
            .unwrap()
            .id
    );
    drop(store);
    let bad = format!("vfs.additionalimagestore={}", one.graph().display());
    let ours = Store::open(scratch.options().driver_option(&bad)).unwrap_err();
    let go = scratch.go(&["--storage-opt", &bad, "images"]);
    let go_text = String::from_utf8_lossy(&go.stdout);
    assert!(
        go_text.contains(&format!("error initializing: {ours}")),
        "Go: {go_text}, ours: {ours}"
    );
}
