//! Crash trials: a process doing create-image, create-container (plain and ID-mapped),
//! delete-image or delete-container is killed (SIGKILL) at each named crash point of the
//! operation (the Store's, the layer store's and the record stores' it passes), or not at
//! all. Then the Go tool, podman and the Store open the store: no image or container points
//! at a missing layer, the operation happened wholly or not at all (after the Store settles
//! what it marked), and the Go tool lists what the Store lists.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

use layerstore::{CheckOptions, ContainerOptions, IDMap, LayerOptions, Store, StoreOptions, crash};
use layerstore_testsupport::{Capability, helper, require_or_skip};

use crate::support::{Scratch, assert_whole, go_ids, podman_image, tarball};

const DIR_ENV: &str = "LAYERSTORE_IT_DIR";
const DRIVER_ENV: &str = "LAYERSTORE_IT_DRIVER";
const CRASH_ENV: &str = "LAYERSTORE_CRASH_AT";

const CREATE_IMAGE: &str = "create-image";
const CREATE_CONTAINER: &str = "create-container";
const CREATE_MAPPED_CONTAINER: &str = "create-mapped-container";
const DELETE_IMAGE: &str = "delete-image";
const DELETE_CONTAINER: &str = "delete-container";

fn mapping() -> Vec<IDMap> {
    vec![IDMap {
        container_id: 0,
        host_id: 100_000,
        size: 65_536,
    }]
}

/// The store every trial starts from (podman can read it): layers named `base` ← `top`
/// (image `localhost/img`, container `ctr`) and `x1` ← `x2` (image `localhost/img2`, whose
/// layers only it uses).
fn template(scratch: &Scratch) {
    let store = scratch.open();
    for (name, parent, file) in [
        ("base", None, "d/base"),
        ("top", Some("base"), "d/top"),
        ("x1", None, "d/x1"),
        ("x2", Some("x1"), "d/x2"),
    ] {
        let mut options = LayerOptions::new().name(name);
        options.parent = parent.map(str::to_owned);
        let tar = tarball(&[(file, name.as_bytes())]);
        store
            .put_layer(&options, Default::default(), Some(&mut &tar[..]))
            .unwrap();
    }
    podman_image(&store, "img", &["base", "top"]);
    podman_image(&store, "img2", &["x1", "x2"]);
    store
        .create_container(ContainerOptions {
            names: vec!["ctr".into()],
            image: IMG.into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    store.shutdown(false).unwrap();
}

const IMG: &str = "localhost/img:latest";
const IMG2: &str = "localhost/img2:latest";

/// The points each operation passes, in order (the Store's, then the stores' below).
fn points(role: &str) -> Vec<&'static str> {
    let layer_create = [
        "put-after-incomplete-record",
        "put-after-driver-create",
        "put-done",
        "save-after-token",
    ];
    let layer_delete = [
        "delete-after-incomplete-record",
        "delete-after-driver-remove",
        "save-after-token",
    ];
    let records = ["records-save-after-token", "atomic-write-before-rename"];
    let mut points: Vec<&str> = match role {
        CREATE_IMAGE => vec![crash::CREATE_IMAGE_BEFORE_RECORD],
        CREATE_CONTAINER => {
            let mut p = vec![
                crash::CREATE_CONTAINER_AFTER_LAYER,
                crash::CREATE_CONTAINER_AFTER_RECORD,
            ];
            p.extend(layer_create);
            p
        }
        CREATE_MAPPED_CONTAINER => {
            let mut p = vec![
                crash::CREATE_CONTAINER_AFTER_MAPPED_LAYER,
                crash::CREATE_CONTAINER_AFTER_MAPPED_REGISTERED,
                crash::CREATE_CONTAINER_AFTER_LAYER,
                crash::CREATE_CONTAINER_AFTER_RECORD,
            ];
            p.extend(layer_create);
            p
        }
        DELETE_IMAGE => {
            let mut p = vec![
                crash::DELETE_IMAGE_AFTER_MARK,
                crash::DELETE_IMAGE_AFTER_RECORD,
            ];
            p.extend(layer_delete);
            p
        }
        DELETE_CONTAINER => {
            let mut p = vec![
                crash::DELETE_CONTAINER_AFTER_MARK,
                crash::DELETE_CONTAINER_AFTER_RECORD,
            ];
            p.extend(layer_delete);
            p
        }
        other => panic!("unknown role {other}"),
    };
    points.extend(records);
    points
}

/// The other side of the trials: this test binary started again (`testsupport::helper`),
/// doing operation `role` on the store in `$LAYERSTORE_IT_DIR` (killed at
/// `$LAYERSTORE_CRASH_AT`, if it gets there).
fn play(role: &str) {
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect(DIR_ENV));
    let driver = std::env::var(DRIVER_ENV).expect(DRIVER_ENV);
    let store = Store::open(StoreOptions::new(
        dir.join("graph"),
        dir.join("run"),
        driver,
    ))
    .unwrap();
    match role {
        CREATE_IMAGE => {
            podman_image(&store, "new", &["base", "top"]);
        }
        CREATE_CONTAINER | CREATE_MAPPED_CONTAINER => {
            let (uid_map, gid_map) = if role == CREATE_MAPPED_CONTAINER {
                (mapping(), mapping())
            } else {
                Default::default()
            };
            store
                .create_container(ContainerOptions {
                    names: vec!["new-ctr".into()],
                    image: IMG.into(),
                    uid_map,
                    gid_map,
                    ..ContainerOptions::default()
                })
                .unwrap();
        }
        DELETE_IMAGE => {
            store.delete_image(IMG2, true).unwrap();
        }
        DELETE_CONTAINER => store.delete_container("ctr").unwrap(),
        other => panic!("unknown role {other}"),
    }
    store.shutdown(false).unwrap();
}

/// What the Go tool lists: layer, image and container IDs, after checking that none of its
/// images or containers points at a layer it does not list.
fn go_view(scratch: &Scratch) -> [Vec<String>; 3] {
    let layers: BTreeSet<String> = go_ids(scratch, "layers").into_iter().collect();
    for image in scratch
        .go_json(&["images"])
        .as_array()
        .into_iter()
        .flatten()
    {
        let tops = std::iter::once(&image["layer"])
            .chain(image["mapped-layers"].as_array().into_iter().flatten())
            .filter_map(|l| l.as_str());
        for top in tops {
            assert!(
                layers.contains(top),
                "Go: image {} on missing layer {top}",
                image["id"]
            );
        }
    }
    for container in scratch
        .go_json(&["containers"])
        .as_array()
        .into_iter()
        .flatten()
    {
        let layer = container["layer"].as_str().unwrap();
        assert!(
            layers.contains(layer),
            "Go: container {} on missing layer {layer}",
            container["id"]
        );
    }
    [
        layers.into_iter().collect(),
        go_ids(scratch, "images"),
        go_ids(scratch, "containers"),
    ]
}

/// One trial: a copy of `template`, `role` killed at `point` (or run to the end with
/// `None`), then the checks. Returns whether the process was killed.
fn trial(template: &Scratch, role: &str, point: Option<&str>) -> bool {
    let driver = template.driver;
    let scratch = Scratch::new(driver);
    // A copy (cp -a keeps owners, modes, links and xattrs) is much cheaper than making the
    // template again: no fsync.
    let status = Command::new("cp")
        .arg("-a")
        .arg(template.graph())
        .arg(template.run())
        .arg(scratch.path())
        .status()
        .unwrap();
    assert!(status.success(), "copy the template");
    let mut helper = helper::command(role);
    helper.env(DIR_ENV, scratch.path()).env(DRIVER_ENV, driver);
    match point {
        Some(point) => helper.env(CRASH_ENV, point),
        None => helper.env_remove(CRASH_ENV),
    };
    let out = crate::support::run(helper);
    let killed = out.status.signal() == Some(9);
    assert!(
        killed || out.status.success(),
        "{role} at {point:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let what = format!("{driver} {role} killed at {point:?}");

    // The Go tool first (its load deletes what a crash left incomplete), then podman.
    go_view(&scratch);
    scratch.tool_ok("podman", &["images"]);
    scratch.tool_ok("podman", &["ps", "-a", "--external"]);
    // Then the Store: it settles what it marked; the store is whole; the Go tool agrees.
    let store = scratch.open();
    assert_whole(&store);
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(
        report.is_clean(),
        "{what}: check finds {:?}",
        report.problems
    );
    let layers: BTreeSet<String> = store.layers().unwrap().into_iter().map(|l| l.id).collect();
    let images: BTreeSet<String> = store.images().unwrap().into_iter().map(|i| i.id).collect();
    let containers: BTreeSet<String> = store
        .containers()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let has = |key: &str| store.find(key).unwrap().is_some();
    // All or nothing.
    match role {
        CREATE_IMAGE => {
            assert_eq!(
                images.len(),
                2 + usize::from(has("localhost/new:latest")),
                "{what}"
            )
        }
        CREATE_CONTAINER | CREATE_MAPPED_CONTAINER => {
            let copies = store.image(IMG).unwrap().mapped_top_layers;
            assert_eq!(containers.len(), 1 + usize::from(has("new-ctr")), "{what}");
            assert_eq!(
                layers.len(),
                containers.len() + 4 + copies.len(),
                "{what}: {layers:?}"
            );
        }
        DELETE_IMAGE => {
            let gone = !has(IMG2);
            assert_eq!(gone, !has("x2"), "{what}: {layers:?}");
            assert_eq!(gone, !has("x1"), "{what}: {layers:?}");
        }
        DELETE_CONTAINER => {
            assert_eq!(layers.len(), 4 + containers.len(), "{what}: {layers:?}");
        }
        _ => unreachable!(),
    }
    assert!(["base", "top"].iter().all(|l| has(l)), "{what}");
    store.shutdown(false).unwrap();
    drop(store);
    let [go_layers, go_images, go_containers] = go_view(&scratch);
    assert_eq!(go_layers, layers.into_iter().collect::<Vec<_>>(), "{what}");
    assert_eq!(go_images, images.into_iter().collect::<Vec<_>>(), "{what}");
    assert_eq!(
        go_containers,
        containers.into_iter().collect::<Vec<_>>(),
        "{what}"
    );
    killed
}

fn trials(driver: &'static str, role: &str) {
    let template_store = Scratch::new(driver);
    template(&template_store);
    let mut killed = 0;
    let points = points(role);
    for point in &points {
        killed += usize::from(trial(&template_store, role, Some(point)));
    }
    assert!(
        !trial(&template_store, role, None),
        "runs to the end without a crash point"
    );
    println!(
        "{driver} {role}: {} crash points, {killed} reached",
        points.len()
    );
    assert!(killed >= points.len() - 2, "most points are on the way");
}

#[test]
fn crashes_in_create_image_leave_a_whole_store() {
    if let Some(role) = helper::role() {
        return play(&role);
    }
    require_or_skip!(Capability::Podman, Capability::GoTool, Capability::Overlay);
    trials("vfs", CREATE_IMAGE);
    trials("overlay", CREATE_IMAGE);
}

#[test]
fn crashes_in_create_container_leave_a_whole_store() {
    if let Some(role) = helper::role() {
        return play(&role);
    }
    require_or_skip!(Capability::Podman, Capability::GoTool, Capability::Overlay);
    trials("vfs", CREATE_CONTAINER);
    trials("vfs", CREATE_MAPPED_CONTAINER);
    trials("overlay", CREATE_MAPPED_CONTAINER);
}

#[test]
fn crashes_in_delete_image_leave_a_whole_store() {
    if let Some(role) = helper::role() {
        return play(&role);
    }
    require_or_skip!(Capability::Podman, Capability::GoTool, Capability::Overlay);
    trials("vfs", DELETE_IMAGE);
    trials("overlay", DELETE_IMAGE);
}

#[test]
fn crashes_in_delete_container_leave_a_whole_store() {
    if let Some(role) = helper::role() {
        return play(&role);
    }
    require_or_skip!(Capability::Podman, Capability::GoTool, Capability::Overlay);
    trials("vfs", DELETE_CONTAINER);
    trials("overlay", DELETE_CONTAINER);
}
