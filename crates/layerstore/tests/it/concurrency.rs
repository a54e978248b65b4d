//! Writers at once on one store: threads sharing one Store, the Go tool, and skopeo copying
//! images into the store (`containers-storage:` as destination) and out of it. Afterwards
//! every operation that reported success is there (or gone, for deletes), both tools list
//! the same layers, images and containers, and podman and the Store read every image.

use std::collections::BTreeSet;
use std::process::Command;
use std::thread;

use layerstore::{ContainerOptions, LayerOptions, NewImage};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::support::{Scratch, assert_whole, go_ids, podman_image, run, tarball};

/// Rounds each worker does (bounded work, no timing).
const ROUNDS: usize = 12;

/// What a worker made and kept: layer, image and container IDs.
#[derive(Default)]
struct Kept {
    layers: Vec<String>,
    images: Vec<String>,
    containers: Vec<String>,
}

fn ours(store: &layerstore::Store, worker: usize) -> Kept {
    let mut kept = Kept::default();
    for round in 0..ROUNDS {
        let tar = tarball(&[(&format!("w{worker}/r{round}"), b"data")]);
        let (layer, _) = store
            .put_layer(
                &LayerOptions::new().name(format!("ours-{worker}-{round}")),
                Default::default(),
                Some(&mut &tar[..]),
            )
            .unwrap();
        let image = store
            .create_image(NewImage {
                names: vec![format!("ours-image-{worker}-{round}")],
                top_layer: layer.id.clone(),
                ..NewImage::default()
            })
            .unwrap();
        let container = store
            .create_container(ContainerOptions {
                image: image.id.clone(),
                ..ContainerOptions::default()
            })
            .unwrap();
        if round % 3 == 2 {
            // Deleted again: the container, then the image with its layer.
            store.delete_container(&container.id).unwrap();
            assert_eq!(store.delete_image(&image.id, true).unwrap(), [layer.id]);
        } else {
            store.mount(&container.id, "").unwrap();
            store.unmount(&container.id, false).unwrap();
            kept.layers.extend([layer.id, container.layer_id]);
            kept.images.push(image.id);
            kept.containers.push(container.id);
        }
    }
    kept
}

fn go(scratch: &Scratch) -> Kept {
    let mut kept = Kept::default();
    for round in 0..ROUNDS {
        let tar = scratch.path().join(format!("go-{round}.tar"));
        std::fs::write(&tar, tarball(&[(&format!("go/r{round}"), b"go")])).unwrap();
        let layer = scratch.go_ok(&["import-layer", "-f", tar.to_str().unwrap()]);
        let layer = layer.trim().to_owned();
        let image = scratch.go_ok(&["create-image", &layer]);
        let image = image.lines().next().unwrap().to_owned();
        let container = scratch.go_ok(&["create-container", &image]);
        let container = container.lines().next().unwrap().to_owned();
        if round % 3 == 2 {
            scratch.go_ok(&["delete-container", &container]);
            scratch.go_ok(&["delete-image", &image]);
        } else {
            let json = scratch.go_json(&["container", &container]);
            kept.layers
                .extend([layer, json[0]["layer"].as_str().unwrap().to_owned()]);
            kept.images.push(image);
            kept.containers.push(container);
        }
    }
    kept
}

/// skopeo: copies the OCI layout at `oci` into the store under new names, and the store's
/// `source` image out to new layouts.
fn skopeo(scratch: &Scratch, oci: &str, source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for round in 0..ROUNDS / 3 {
        let name = format!("localhost/copied-{round}:latest");
        let mut copy_in = Command::new("skopeo");
        copy_in.args(["copy", oci, &scratch.skopeo_ref(&name)]);
        let out = run(copy_in);
        assert!(
            out.status.success(),
            "skopeo in: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out_dir = scratch.path().join(format!("out-{round}"));
        let mut copy_out = Command::new("skopeo");
        copy_out
            .args(["copy", &scratch.skopeo_ref(source)])
            .arg(format!("oci:{}", out_dir.display()));
        let out = run(copy_out);
        assert!(
            out.status.success(),
            "skopeo out: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        names.push(name);
    }
    names
}

#[test]
fn our_writers_the_go_tool_and_skopeo_share_one_store() {
    require_or_skip!(Capability::Podman, Capability::GoTool);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    // An image to copy out, and, from another store, an OCI layout to copy in.
    let tar = tarball(&[("etc/source", b"source")]);
    let (base, _) = store
        .put_layer(
            &LayerOptions::new(),
            Default::default(),
            Some(&mut &tar[..]),
        )
        .unwrap();
    podman_image(&store, "source", &[&base.id]);
    let other = Scratch::new("vfs");
    {
        let other_store = other.open();
        let tar = tarball(&[("etc/other", b"other")]);
        let (layer, _) = other_store
            .put_layer(
                &LayerOptions::new(),
                Default::default(),
                Some(&mut &tar[..]),
            )
            .unwrap();
        podman_image(&other_store, "other", &[&layer.id]);
    }
    let oci = format!("oci:{}:latest", scratch.path().join("layout").display());
    let mut export = Command::new("skopeo");
    export.args(["copy", &other.skopeo_ref("localhost/other:latest"), &oci]);
    let out = run(export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (mine, gos, copied) = thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|w| {
                s.spawn({
                    let store = &store;
                    move || ours(store, w)
                })
            })
            .collect();
        let go_worker = s.spawn(|| go(&scratch));
        let skopeo_worker = s.spawn(|| skopeo(&scratch, &oci, "localhost/source:latest"));
        let mine: Vec<Kept> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        (
            mine,
            go_worker.join().unwrap(),
            skopeo_worker.join().unwrap(),
        )
    });

    // Everything kept is there; the Go tool lists exactly what the Store lists.
    let layers: BTreeSet<String> = store.layers().unwrap().into_iter().map(|l| l.id).collect();
    let images: BTreeSet<String> = store.images().unwrap().into_iter().map(|i| i.id).collect();
    let containers: BTreeSet<String> = store
        .containers()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    for kept in mine.iter().chain([&gos]) {
        assert!(kept.layers.iter().all(|l| layers.contains(l)));
        assert!(kept.images.iter().all(|i| images.contains(i)));
        assert!(kept.containers.iter().all(|c| containers.contains(c)));
    }
    let expected_containers = mine
        .iter()
        .chain([&gos])
        .map(|k| k.containers.len())
        .sum::<usize>();
    assert_eq!(
        containers.len(),
        expected_containers,
        "nothing deleted was left"
    );
    for name in &copied {
        let image = store.image(name).unwrap();
        assert!(store.image_big_data(&image.id, "manifest").is_ok());
    }
    assert_whole(&store);
    drop(store);
    assert_eq!(
        go_ids(&scratch, "layers"),
        layers.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(
        go_ids(&scratch, "images"),
        images.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(
        go_ids(&scratch, "containers"),
        containers.into_iter().collect::<Vec<_>>()
    );
    // podman reads the images skopeo copied in and the one it copied out (the images the
    // workers made have no manifest: podman would call them corrupted).
    let mut inspect = vec![
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "localhost/source:latest",
    ];
    inspect.extend(copied.iter().map(String::as_str));
    let inspected = scratch.tool_ok("podman", &inspect);
    assert_eq!(inspected.lines().count(), 1 + copied.len(), "{inspected}");
    println!(
        "{} of ours, {} of Go's, {} copied in: kept {} containers",
        3 * ROUNDS,
        ROUNDS,
        copied.len(),
        expected_containers
    );
}
