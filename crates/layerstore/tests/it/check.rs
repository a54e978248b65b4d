//! `Store::check` and `Store::repair` on real damage, on vfs and overlay: a modified file in
//! an image's layer, a layer's files gone, missing and altered image big data, a layer a
//! crash left marked, a record file that does not load. Repair never deletes a layer an
//! image or container uses; afterwards the Store's check, the Go tool and podman accept the
//! store.

use std::path::PathBuf;

use layerstore::{
    CheckOptions, ContainerOptions, LayerProblem, PENDING_FLAG, PendingOp, Problem, Repair,
    Settled, Store,
};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::support::{Scratch, assert_whole, go_ids, layer, podman_image, sorted};

/// Where the driver keeps the files of layer `id` (what a container sees).
fn layer_files(scratch: &Scratch, id: &str) -> PathBuf {
    match scratch.driver {
        "vfs" => scratch.graph().join("vfs/dir").join(id),
        "overlay" => scratch.graph().join("overlay").join(id).join("diff"),
        other => panic!("no layout for {other}"),
    }
}

/// Layers `base` ← `top`; image `img` on both, image `solo` on `base` alone.
fn images_on_two_layers(store: &Store) -> (String, String) {
    let base = layer(store, None, &[("d/base", b"base")]);
    let top = layer(store, Some(&base), &[("d/top", b"top")]);
    let names = [(&base, "base"), (&top, "top")];
    for (id, name) in names {
        store.set_names(id, &[name.to_owned()]).unwrap();
    }
    podman_image(store, "img", &["base", "top"]);
    podman_image(store, "solo", &["base"]);
    (base, top)
}

/// Go and podman can list (and podman inspect) every image of the store.
fn tools_accept(scratch: &Scratch) -> Vec<String> {
    let images = go_ids(scratch, "images");
    go_ids(scratch, "layers");
    go_ids(scratch, "containers");
    scratch.tool_ok("podman", &["images"]);
    for id in &images {
        scratch.tool_ok("podman", &["image", "inspect", id]);
    }
    images
}

fn check(store: &Store) -> layerstore::CheckReport {
    store.check(&CheckOptions::default()).unwrap()
}

fn kinds(problems: &[Problem]) -> Vec<&'static str> {
    let mut kinds: Vec<_> = problems.iter().map(Problem::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

fn modified_layer_removes_its_image_and_keeps_the_layers_others_use(driver: &'static str) {
    let scratch = Scratch::new(driver);
    let store = scratch.open();
    let (base, top) = images_on_two_layers(&store);
    let img = store.image("localhost/img:latest").unwrap().id;
    let solo = store.image("localhost/solo:latest").unwrap().id;
    assert!(check(&store).is_clean(), "{:?}", check(&store));

    std::fs::write(layer_files(&scratch, &top).join("d/top"), b"TOP!").unwrap();
    let report = check(&store);
    assert!(!report.is_clean());
    assert!(
        report.problems.iter().any(|p| matches!(p,
            Problem::Layer { store: None, problem: LayerProblem::ModifiedContent { id, .. } } if *id == top)),
        "{report:#?}"
    );
    assert!(report.problems.contains(&Problem::ImageLayerBroken {
        image: img.clone(),
        layer: top.clone(),
        read_only: false,
    }));
    assert!(
        !report
            .problems
            .iter()
            .any(|p| p.image() == Some(solo.as_str())),
        "solo does not use the broken layer: {report:#?}"
    );

    let report = store.repair(&CheckOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert!(
        report.actions.iter().all(|a| a.error.is_none()),
        "{report:#?}"
    );
    assert!(
        report.actions.iter().any(|a| a.repair
            == Repair::DeleteImage {
                id: img.clone(),
                layers: vec![top.clone()],
            }),
        "{report:#?}"
    );
    assert_eq!(sorted(store.images().unwrap(), |i| &i.id), [solo.as_str()]);
    assert_eq!(sorted(store.layers().unwrap(), |l| &l.id), [base.as_str()]);
    assert_whole(&store);
    store.shutdown(false).unwrap();
    drop(store);
    assert_eq!(tools_accept(&scratch), [solo]);
}

#[test]
fn a_modified_layer_takes_its_image_with_it_and_nothing_an_image_still_uses() {
    require_or_skip!(Capability::Podman, Capability::GoTool, Capability::Overlay);
    modified_layer_removes_its_image_and_keeps_the_layers_others_use("vfs");
    modified_layer_removes_its_image_and_keeps_the_layers_others_use("overlay");
}

fn container_keeps_its_broken_layers_unless_told(driver: &'static str) {
    let scratch = Scratch::new(driver);
    let store = scratch.open();
    let (base, top) = images_on_two_layers(&store);
    let img = store.image("localhost/img:latest").unwrap().id;
    let ctr = store
        .create_container(ContainerOptions {
            names: vec!["ctr".into()],
            image: img.clone(),
            ..ContainerOptions::default()
        })
        .unwrap();
    std::fs::remove_file(layer_files(&scratch, &base).join("d/base")).unwrap();

    let report = check(&store);
    assert_eq!(
        kinds(&report.problems),
        [
            "container-image-damaged",
            "container-layer-broken",
            "image-layer-broken",
            "modified-content"
        ],
        "{report:#?}"
    );
    assert!(report.problems.contains(&Problem::ContainerLayerBroken {
        container: ctr.id.clone(),
        layer: base.clone(),
    }));

    // Kept and reported: the container, its image, every layer below it; solo goes.
    let report = store.repair(&CheckOptions::default()).unwrap();
    assert!(!report.is_clean(), "{report:#?}");
    let refused: Vec<_> = report
        .actions
        .iter()
        .filter(|a| a.error.is_some())
        .map(|a| a.repair.clone())
        .collect();
    assert!(
        refused.contains(&Repair::DeleteImage {
            id: img.clone(),
            layers: Vec::new()
        }),
        "{report:#?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| matches!(r, Repair::Layer(layerstore::LayerRepair::DeleteLayer { id, .. }) if *id == base)),
        "{report:#?}"
    );
    for id in [&base, &top, &ctr.layer_id] {
        store.layer(id).unwrap();
    }
    store.image(&img).unwrap();
    store.container("ctr").unwrap();
    assert!(store.find("localhost/solo:latest").unwrap().is_none());
    assert!(report.remaining.contains(&Problem::ContainerLayerBroken {
        container: ctr.id.clone(),
        layer: base.clone(),
    }));
    store.shutdown(false).unwrap();
    tools_accept(&scratch);

    // Asked to, repair removes the container, then the image and the layers.
    let options = CheckOptions {
        remove_containers: true,
        ..CheckOptions::default()
    };
    let report = store.repair(&options).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert!(report.actions.contains(&layerstore::Action {
        repair: Repair::DeleteContainer { id: ctr.id.clone() },
        error: None,
    }));
    assert!(store.layers().unwrap().is_empty());
    assert!(store.images().unwrap().is_empty());
    store.shutdown(false).unwrap();
    drop(store);
    assert_eq!(tools_accept(&scratch), Vec::<String>::new());
}

#[test]
fn a_container_keeps_its_broken_layers_unless_containers_may_go() {
    require_or_skip!(Capability::Podman, Capability::GoTool, Capability::Overlay);
    container_keeps_its_broken_layers_unless_told("vfs");
    container_keeps_its_broken_layers_unless_told("overlay");
}

fn missing_layer_files_and_big_data(driver: &'static str) {
    let scratch = Scratch::new(driver);
    let store = scratch.open();
    let (base, top) = images_on_two_layers(&store);
    let img = store.image("localhost/img:latest").unwrap();
    let solo = store.image("localhost/solo:latest").unwrap();
    let other = layer(&store, None, &[("o", b"other")]);
    store.set_names(&other, &["other".to_owned()]).unwrap();
    let third = podman_image(&store, "third", &["other"]);

    // solo: its manifest gone; img: its config altered (same size, another digest);
    // third: its layer's files gone.
    let dir = store.image_store().dir().to_path_buf();
    std::fs::remove_file(dir.join(&solo.id).join(big_data_name("manifest"))).unwrap();
    let config_key = img
        .big_data_names
        .iter()
        .find(|k| k.starts_with("sha256:"))
        .unwrap()
        .clone();
    let config_file = dir.join(&img.id).join(big_data_name(&config_key));
    let mut config = std::fs::read(&config_file).unwrap();
    config.make_ascii_uppercase();
    std::fs::write(&config_file, &config).unwrap();
    let files = layer_files(&scratch, &other);
    std::fs::remove_dir_all(&files).unwrap();
    if driver == "overlay" {
        std::fs::remove_dir_all(files.parent().unwrap()).unwrap();
    }

    let report = check(&store);
    let expected_kinds = [
        "image-data-digest",
        "image-data-missing",
        "image-layer-broken",
        "missing-layer-data",
    ];
    assert_eq!(kinds(&report.problems), expected_kinds, "{report:#?}");
    assert!(report.problems.iter().any(|p| matches!(p,
        Problem::ImageDataMissing { image, key, path, .. }
            if *image == solo.id && key == "manifest" && path.ends_with(big_data_name("manifest")))));
    assert!(report.problems.iter().any(|p| matches!(p,
        Problem::ImageDataDigest { image, key, .. } if *image == img.id && *key == config_key)));
    assert!(report.problems.iter().any(|p| matches!(p,
        Problem::ImageLayerBroken { image, layer, .. } if *image == third.id && *layer == other)));

    let report = store.repair(&CheckOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert!(store.images().unwrap().is_empty());
    // Each image took the layers only it used; base went with the last of img and solo.
    for id in [&base, &top, &other] {
        assert!(store.find(id).unwrap().is_none(), "{id} stays");
    }
    store.shutdown(false).unwrap();
    drop(store);
    assert_eq!(tools_accept(&scratch), Vec::<String>::new());
}

/// Go's file name of a big-data key.
fn big_data_name(key: &str) -> String {
    layerstore_model::big_data_file_name(key)
}

#[test]
fn missing_layer_files_and_missing_or_altered_big_data_damage_images() {
    require_or_skip!(Capability::Podman, Capability::GoTool, Capability::Overlay);
    missing_layer_files_and_big_data("vfs");
    missing_layer_files_and_big_data("overlay");
}

#[test]
fn a_layer_a_crash_left_marked_and_unused_is_found_and_removed() {
    require_or_skip!(Capability::Podman, Capability::GoTool);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    let (base, top) = images_on_two_layers(&store);
    let stray = layer(&store, None, &[("s", b"stray")]);
    let op = PendingOp::CreateContainer("0123".repeat(16));
    {
        let mut layers = store.layer_store().write_session().unwrap();
        layers
            .set_flags(
                &[stray.as_str(), top.as_str()],
                PENDING_FLAG,
                Some(&op.to_value()),
            )
            .unwrap();
    }
    let report = check(&store);
    assert_eq!(kinds(&report.problems), ["pending-layer"], "{report:#?}");
    assert_eq!(report.problems.len(), 2);
    assert!(report.problems.iter().any(|p| matches!(p,
        Problem::PendingLayer(pending) if pending.layer == stray && !pending.in_use)));
    assert!(report.problems.iter().any(|p| matches!(p,
        Problem::PendingLayer(pending) if pending.layer == top && pending.in_use)));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.to_string().contains("used by nothing"))
    );

    let report = store.repair(&CheckOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert!(report.actions.iter().any(|a| matches!(&a.repair,
        Repair::Settle(Settled::Deleted(p)) if p.layer == stray)));
    assert!(store.find(&stray).unwrap().is_none());
    assert!(!store.layer(&top).unwrap().flags.contains_key(PENDING_FLAG));
    store.layer(&base).unwrap();
    store.shutdown(false).unwrap();
    drop(store);
    assert_eq!(tools_accept(&scratch).len(), 2);
}

#[test]
fn a_record_file_that_does_not_load_is_never_called_healthy_and_repair_keeps_it_aside() {
    require_or_skip!(Capability::Podman, Capability::GoTool);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    let (base, top) = images_on_two_layers(&store);
    let mut images = sorted(store.images().unwrap(), |i| &i.id);
    let ctr = store
        .create_container(ContainerOptions {
            image: "localhost/img:latest".into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    store
        .set_container_big_data(&ctr.id, "state", b"{}")
        .unwrap();
    store.shutdown(false).unwrap();
    drop(store);
    let images_json = scratch.graph().join("vfs-images/images.json");
    let containers_json = scratch.graph().join("vfs-containers/containers.json");
    let text = std::fs::read(&images_json).unwrap();
    let truncated = &text[..text.len() / 2];
    std::fs::write(&images_json, truncated).unwrap();
    std::fs::write(&containers_json, b"\x00garbage").unwrap();
    // podman cannot list it ...
    assert!(!scratch.tool("podman", &["images"]).status.success());

    // ... and check says so, naming each file.
    let store = scratch.open();
    let report = check(&store);
    assert!(!report.is_clean());
    for path in [&images_json, &containers_json] {
        assert!(
            report.problems.iter().any(|p| matches!(p,
                Problem::RecordFile { path: p, .. } if p == path)),
            "{report:#?}"
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.to_string().contains(&path.display().to_string()))
        );
    }

    // Repair keeps both files aside byte for byte, starts them empty, names what was lost,
    // and deletes no layer.
    let report = store.repair(&CheckOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    let aside = |path: &PathBuf| PathBuf::from(format!("{}.damaged-1", path.display()));
    assert_eq!(std::fs::read(aside(&images_json)).unwrap(), truncated);
    assert_eq!(
        std::fs::read(aside(&containers_json)).unwrap(),
        b"\x00garbage"
    );
    images.sort();
    assert!(
        report.actions.contains(&layerstore::Action {
            repair: Repair::SetAsideRecordFile {
                path: images_json.clone(),
                kept_as: aside(&images_json),
                lost: images,
            },
            error: None,
        }),
        "{report:#?}"
    );
    assert!(
        report.actions.contains(&layerstore::Action {
            repair: Repair::SetAsideRecordFile {
                path: containers_json.clone(),
                kept_as: aside(&containers_json),
                lost: vec![ctr.id.clone()],
            },
            error: None,
        }),
        "{report:#?}"
    );
    for id in [&base, &top, &ctr.layer_id] {
        store.layer(id).unwrap();
    }
    store.shutdown(false).unwrap();
    drop(store);
    assert!(tools_accept(&scratch).is_empty());
}

fn damaged_layers_json_is_rebuilt(driver: &'static str, damage: fn(&[u8]) -> Vec<u8>) {
    let scratch = Scratch::new(driver);
    let store = scratch.open();
    let (base, top) = images_on_two_layers(&store);
    let ctr = store
        .create_container(ContainerOptions {
            image: "localhost/img:latest".into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    let before = store.layers().unwrap();
    store.shutdown(false).unwrap();
    drop(store);
    let layers_json = scratch.graph().join(format!("{driver}-layers/layers.json"));
    let damaged = damage(&std::fs::read(&layers_json).unwrap());
    std::fs::write(&layers_json, &damaged).unwrap();

    // The store does not open, and says which file is wrong; nothing is changed by that.
    let err = Store::open(scratch.options()).unwrap_err().to_string();
    assert!(err.contains(&layers_json.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&layers_json).unwrap(), damaged);

    let rebuilt = Store::rebuild_damaged_layers(&scratch.options())
        .unwrap()
        .expect("rebuilt");
    assert_eq!(rebuilt.path, layers_json);
    assert_eq!(
        std::fs::read(&rebuilt.kept_as).unwrap(),
        damaged,
        "kept aside"
    );
    assert_eq!(
        sorted(rebuilt.layers.iter(), |l| &l.id),
        sorted(before.iter(), |l| &l.id)
    );
    // The image's layers come back with their diff (from their tar-split files); the
    // container's layer never had one.
    for layer in &rebuilt.layers {
        assert_eq!(layer.diff_recovered, layer.id != ctr.layer_id, "{layer:?}");
    }
    // Asked again, nothing to do.
    assert_eq!(
        Store::rebuild_damaged_layers(&scratch.options()).unwrap(),
        None
    );

    let store = scratch.open();
    for old in &before {
        let new = store.layer(&old.id).unwrap();
        assert_eq!(
            new.uncompressed_digest, old.uncompressed_digest,
            "{}",
            old.id
        );
        if old.uncompressed_digest.is_some() {
            assert_eq!(new.uncompressed_size, old.uncompressed_size, "{}", old.id);
        }
        // overlay records parents in its `lower` files; on vfs the images' configs give
        // them (the container's layer is in no image's chain).
        let parent = if driver == "overlay" || old.id != ctr.layer_id {
            old.parent.as_str()
        } else {
            ""
        };
        assert_eq!(new.parent, parent, "{}", old.id);
    }
    let report = check(&store);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(store.images().unwrap().len(), 2);
    store.layer(&base).unwrap();
    store.layer(&top).unwrap();
    store.shutdown(false).unwrap();
    drop(store);
    assert_eq!(tools_accept(&scratch).len(), 2);
    scratch.tool_ok("podman", &["create", "localhost/img:latest"]);
    // Both layers of img are found again (by its parent chain): skopeo copies it out.
    let oci = format!("oci:{}:latest", scratch.path().join("layout").display());
    let mut copy = std::process::Command::new("skopeo");
    copy.args(["copy", &scratch.skopeo_ref("localhost/img:latest"), &oci]);
    let out = crate::support::run(copy);
    assert!(
        out.status.success(),
        "{driver}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_truncated_or_garbage_layers_json_is_rebuilt_from_disk_and_kept_aside() {
    require_or_skip!(
        Capability::Podman,
        Capability::GoTool,
        Capability::Overlay,
        Capability::Skopeo
    );
    let truncate: fn(&[u8]) -> Vec<u8> = |bytes| bytes[..bytes.len() / 2].to_vec();
    let garbage: fn(&[u8]) -> Vec<u8> = |_| b"\x7fELF not json at all".to_vec();
    damaged_layers_json_is_rebuilt("vfs", truncate);
    damaged_layers_json_is_rebuilt("overlay", truncate);
    damaged_layers_json_is_rebuilt("vfs", garbage);
}

#[test]
fn an_additional_store_is_checked_with_the_store_and_never_repaired() {
    require_or_skip!(Capability::Root);
    // The read-only store: layers base <- top, image `roimg` on top.
    let ro = Scratch::new("vfs");
    let ro_store = ro.open();
    let ro_base = layer(&ro_store, None, &[("d/base", b"base")]);
    let ro_top = layer(&ro_store, Some(&ro_base), &[("d/top", b"top")]);
    let ro_image = ro_store
        .create_image(layerstore::NewImage {
            names: vec!["roimg".into()],
            top_layer: ro_top.clone(),
            ..layerstore::NewImage::default()
        })
        .unwrap();
    ro_store.shutdown(false).unwrap();
    drop(ro_store);

    let scratch = Scratch::new("vfs");
    let option = format!("vfs.imagestore={}", ro.graph().display());
    let store = Store::open(scratch.options().driver_option(&option)).unwrap();
    // A layer of ours on the read-only top layer: its parent is there, not missing.
    let child = layer(&store, Some(&ro_top), &[("d/child", b"child")]);
    let report = check(&store);
    assert!(report.is_clean(), "{report:#?}");

    // Damage in the read-only store is reported, with the store it is in ...
    std::fs::write(
        ro.graph().join("vfs/dir").join(&ro_top).join("d/top"),
        b"TOP!",
    )
    .unwrap();
    let before = crate::additional::contents(&ro.graph());
    let report = check(&store);
    assert!(
        report.problems.iter().any(|p| matches!(p,
            Problem::Layer { store: Some(root), problem: LayerProblem::ModifiedContent { id, .. } }
                if *root == ro.graph() && *id == ro_top)),
        "{report:#?}"
    );
    assert!(report.problems.contains(&Problem::ImageLayerBroken {
        image: ro_image.id.clone(),
        layer: ro_top.clone(),
        read_only: true,
    }));
    // ... and repair changes nothing there, nor deletes our layer on it.
    let report = store.repair(&CheckOptions::default()).unwrap();
    assert!(!report.is_clean());
    assert!(report.actions.is_empty(), "{report:#?}");
    assert_eq!(crate::additional::contents(&ro.graph()), before);
    store.layer(&child).unwrap();
    store.image("roimg").unwrap();
}
