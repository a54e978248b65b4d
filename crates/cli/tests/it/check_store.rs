//! `layerstore check [--repair [--force]]` on a store the Go tool shares: images and
//! containers the Go tool made are checked with the layers, and repair never leaves an image
//! or container pointing at a layer it deleted (the store podman could no longer list).

use std::process::Output;

use layerstore_testsupport::{Capability, require_or_skip};
use serde_json::Value;

use crate::suite::{Scratch, Store, describe, tarball};

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(output)))
}

fn kinds(report: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Every image and container the Go tool lists stands on a layer it lists.
fn go_sees_a_whole_store(store: &Store) -> (usize, usize) {
    let layers: Vec<String> = serde_json::from_str::<Value>(&store.go_ok(&["layers", "--json"]))
        .unwrap()
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    let images: Value = serde_json::from_str(&store.go_ok(&["images", "--json"])).unwrap();
    let containers: Value = serde_json::from_str(&store.go_ok(&["containers", "--json"])).unwrap();
    let images = images.as_array().cloned().unwrap_or_default();
    let containers = containers.as_array().cloned().unwrap_or_default();
    for image in &images {
        let top = image["layer"].as_str().unwrap();
        assert!(layers.iter().any(|l| l == top), "image on missing {top}");
    }
    for container in &containers {
        let layer = container["layer"].as_str().unwrap();
        assert!(
            layers.iter().any(|l| l == layer),
            "container on missing {layer}"
        );
    }
    (images.len(), containers.len())
}

#[test]
fn check_repair_takes_the_image_with_its_damaged_layer_and_keeps_a_containers() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let store = Store::in_scratch(&scratch, "vfs");
    let tar = |name: &str| {
        let path = scratch.path().join(format!("{name}.tar"));
        std::fs::write(
            &path,
            tarball(&[(format!("d/{name}"), name.as_bytes().to_vec())]),
        )
        .unwrap();
        path.display().to_string()
    };
    // import-layer prints the ID, then a line per name.
    let import = |args: &[&str]| {
        let out = store.run_ok(&[&["import-layer"], args].concat());
        out.split_whitespace().next().unwrap().to_owned()
    };
    let base = &import(&["-n", "base", "-f", &tar("base")]);
    let top = &import(&["-n", "top", "-f", &tar("top"), base]);
    let other = &import(&["-n", "other", "-f", &tar("other")]);
    let img = store.go_id(&["create-image", "-n", "img", top]);
    let kept = store.go_id(&["create-image", "-n", "kept", other]);
    store.go_ok(&["create-container", "-n", "ctr", &kept]);
    assert_eq!(store.run_ok(&["check"]), "");

    // Damage both images' layers: a modified file below img, a removed one in kept.
    std::fs::write(store.graph.join("vfs/dir").join(top).join("d/top"), b"TOP!").unwrap();
    std::fs::remove_file(store.graph.join("vfs/dir").join(other).join("d/other")).unwrap();
    let output = store.run(&["check", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = json_of(&output);
    assert_eq!(
        kinds(&report),
        [
            "container-image-damaged",
            "container-layer-broken",
            "image-layer-broken",
            "modified-content"
        ],
        "{report:#}"
    );
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["image"] == img.as_str())
    );

    // Repair: img goes with the layers only it used; kept, its container and its layer stay
    // (reported).
    let output = store.run(&["check", "--repair", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let (images, containers) = go_sees_a_whole_store(&store);
    assert_eq!((images, containers), (1, 1));
    assert!(!store.go(&["exists", "-i", &img]).status.success());
    assert!(!store.go(&["exists", "-l", top]).status.success());
    assert!(!store.go(&["exists", "-l", base]).status.success());
    assert!(store.go(&["exists", "-l", other]).status.success());
    let text = String::from_utf8_lossy(&store.run(&["check", "--repair"]).stdout).into_owned();
    assert!(
        text.contains(&format!("failed to delete image {kept}: kept:")),
        "{text}"
    );
    assert!(text.contains("remains: container-layer-broken"), "{text}");

    // --force lets the container go too; then the store is clean.
    let output = store.run(&["check", "--repair", "--force"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(go_sees_a_whole_store(&store), (0, 0));
    assert_eq!(store.run_ok(&["check"]), "");
    assert!(!store.go(&["exists", "-l", other]).status.success());
}

#[test]
fn check_names_a_damaged_layers_json_and_repair_rebuilds_it_keeping_it_aside() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let store = Store::in_scratch(&scratch, "vfs");
    let path = scratch.path().join("layer.tar");
    std::fs::write(&path, tarball(&[("f".into(), b"data".to_vec())])).unwrap();
    let out = store.run_ok(&["import-layer", "-f", &path.display().to_string()]);
    let id = out.split_whitespace().next().unwrap().to_owned();
    let before: Value = serde_json::from_str(&store.go_ok(&["layers", "--json"])).unwrap();
    let layers_json = store.layers_json();
    let text = std::fs::read(&layers_json).unwrap();
    std::fs::write(&layers_json, &text[..text.len() / 2]).unwrap();

    let output = store.run(&["check"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains(&layers_json.display().to_string()),
        "{shown}"
    );

    let output = store.run(&["check", "--repair", "--json"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(json_of(&output)["problems"], Value::Array(Vec::new()));
    let notice = String::from_utf8_lossy(&output.stderr);
    assert!(
        notice.contains("rebuilt") && notice.contains("1 layer(s)"),
        "{notice}"
    );
    let kept = std::fs::read(format!("{}.damaged-1", layers_json.display())).unwrap();
    assert_eq!(kept, &text[..text.len() / 2]);
    let after: Value = serde_json::from_str(&store.go_ok(&["layers", "--json"])).unwrap();
    assert_eq!(after[0]["id"], id.as_str());
    assert_eq!(after[0]["diff-digest"], before[0]["diff-digest"]);
    assert_eq!(store.run_ok(&["check"]), "");
}
