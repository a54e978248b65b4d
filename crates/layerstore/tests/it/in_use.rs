//! The in-use rules: no way of deleting a layer that an image (top layer or ID-mapped copy),
//! a container or another layer uses gets through, by full ID, unique prefix or name, and
//! nothing is lost; whatever sequence of operations runs, no image or container is left
//! pointing at a missing layer.

use layerstore::{ContainerOptions, HostMapping, IDMap, LayerOptions, NewImage, Store};
use layerstore_testsupport::{Capability, require_or_skip};
use proptest::prelude::*;

use crate::support::{Scratch, assert_whole, layer};

fn map() -> Vec<IDMap> {
    vec![IDMap {
        container_id: 0,
        host_id: 100_000,
        size: 65_536,
    }]
}

/// Every spelling of layer `id` that names it and nothing else: full ID, a unique prefix,
/// its names.
fn spellings(store: &Store, id: &str) -> Vec<String> {
    let mut keys = vec![id.to_owned(), id[..12].to_owned()];
    keys.extend(store.layer(id).unwrap().names);
    keys
}

/// `delete_layer` refuses `id` by every spelling, and so does `delete` where it means the
/// layer (a container's layer ID means the container there: Go deletes the container).
fn assert_refused_every_way(store: &Store, id: &str, why: &str) {
    let before: Vec<String> = store.layers().unwrap().into_iter().map(|l| l.id).collect();
    let is_containers = store.container(id).is_ok();
    for key in spellings(store, id) {
        let err = store.delete_layer(&key).unwrap_err();
        assert!(err.to_string().contains(why), "delete_layer({key}): {err}");
        if !is_containers {
            let err = store.delete(&key).unwrap_err();
            assert!(err.to_string().contains(why), "delete({key}): {err}");
        }
    }
    let after: Vec<String> = store.layers().unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(before, after, "nothing lost");
    assert_whole(store);
}

#[test]
fn a_layer_in_use_cannot_be_deleted_by_id_prefix_or_name() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    let base = layer(&store, None, &[("a", b"a")]);
    let top = layer(&store, Some(&base), &[("b", b"b")]);
    store.set_names(&top, &["top-name".into()]).unwrap();
    store.set_names(&base, &["base-name".into()]).unwrap();
    let image = store
        .create_image(NewImage {
            names: vec!["img".into()],
            top_layer: top.clone(),
            ..NewImage::default()
        })
        .unwrap();
    let mapped = store
        .create_container(ContainerOptions {
            image: "img".into(),
            uid_map: map(),
            gid_map: map(),
            ..ContainerOptions::default()
        })
        .unwrap();
    let plain = store
        .create_container(ContainerOptions {
            image: "img".into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    let copy = store.image("img").unwrap().mapped_top_layers[0].clone();
    assert_ne!(copy, top);
    store.set_names(&copy, &["copy-name".into()]).unwrap();
    store
        .set_names(&plain.layer_id, &["ctr-layer-name".into()])
        .unwrap();

    assert_refused_every_way(&store, &base, "layer has children");
    assert_refused_every_way(&store, &top, "layer has children");
    assert_refused_every_way(&store, &copy, "layer has children");
    assert_refused_every_way(&store, &plain.layer_id, "layer is in use by a container");
    // `delete <a container's layer>` deletes the container (Go's order), layer and all.
    store.delete(&plain.layer_id).unwrap();
    assert!(store.container(&plain.id).is_err() && store.layer(&plain.layer_id).is_err());
    assert_whole(&store);
    // Without its containers the top layer and the copy are still the image's.
    store.delete_container(&mapped.id).unwrap();
    assert_refused_every_way(
        &store,
        &top,
        &format!("used by image {}: layer is in use by an image", image.id),
    );
    assert_refused_every_way(
        &store,
        &copy,
        &format!("used by image {}: layer is in use by an image", image.id),
    );
    // delete-image takes them all, copies first.
    assert_eq!(store.delete_image("img", true).unwrap(), [copy, top, base]);
    assert_eq!(store.layers().unwrap(), []);
}

/// Go 1.43 compares the raw argument: `delete-layer <prefix>` deletes an image's top layer
/// and leaves the image pointing at nothing (store doc 7.2.2). The Store resolves first.
#[test]
fn deleting_by_prefix_is_refused_where_go_1_43_deletes_an_image_top_layer() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    let top = layer(&store, None, &[("a", b"a")]);
    store
        .create_image(NewImage {
            top_layer: top.clone(),
            ..NewImage::default()
        })
        .unwrap();
    let err = store.delete_layer(&top[..10]).unwrap_err().to_string();
    assert!(err.ends_with("layer is in use by an image"), "{err}");
    assert_whole(&store);
    drop(store);
    // The Go tool's bug, which this guards against: it deletes the layer.
    scratch.go_ok(&["delete-layer", &top[..10]]);
    let store = scratch.open();
    assert!(
        store.layer(&top).is_err(),
        "Go deleted the image's top layer"
    );
}

/// Deleting one image or container never takes a layer another one uses.
#[test]
fn shared_layers_stay_while_anyone_uses_them() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    let a = layer(&store, None, &[("a", b"a")]);
    let b = layer(&store, Some(&a), &[("b", b"b")]);
    let c = layer(&store, Some(&b), &[("c", b"c")]);
    let d = layer(&store, Some(&c), &[("d", b"d")]);
    let image = |name: &str, top: &str| {
        store
            .create_image(NewImage {
                names: vec![name.into()],
                top_layer: top.into(),
                ..NewImage::default()
            })
            .unwrap()
    };
    image("ib", &b);
    image("id", &d);
    let ctr = store
        .create_container(ContainerOptions {
            image: "id".into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    let err = store.delete_image("id", false).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("image used by {}: image is in use by a container", ctr.id)
    );
    store.delete_container(&ctr.id).unwrap();
    assert_eq!(
        store.layer(&d).unwrap().id,
        d,
        "the container's image keeps its layers"
    );
    // Go's example (store doc 4.4): the walk stops at B, another image's top layer.
    assert_eq!(
        store.delete_image("id", false).unwrap(),
        [d.clone(), c.clone()]
    );
    assert_eq!(store.delete_image("id", true).unwrap(), [d, c]);
    assert_eq!(
        store
            .layers()
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect::<Vec<_>>(),
        [a.clone(), b.clone()]
    );
    // A hand-made layer on the image's layer keeps it.
    let child = layer(&store, Some(&b), &[("x", b"x")]);
    assert_eq!(
        store.delete_image("ib", true).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.layer(&b).unwrap().id, b);
    store.delete_layer(&child).unwrap();
    store.delete_layer(&b).unwrap();
    store.delete_layer(&a).unwrap();
    assert_whole(&store);
}

/// An image made on a container's layer keeps that layer when the container goes (Go 1.43
/// deletes it and leaves the image pointing at nothing). Found by
/// `no_sequence_leaves_a_reference_to_a_missing_layer`.
#[test]
fn a_containers_layer_an_image_uses_stays_when_the_container_goes() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    let base = layer(&store, None, &[("a", b"a")]);
    store
        .create_image(NewImage {
            names: vec!["i".into()],
            top_layer: base,
            ..NewImage::default()
        })
        .unwrap();
    let ctr = store
        .create_container(ContainerOptions {
            image: "i".into(),
            ..ContainerOptions::default()
        })
        .unwrap();
    let committed = store
        .create_image(NewImage {
            top_layer: ctr.layer_id.clone(),
            ..NewImage::default()
        })
        .unwrap();
    store.delete_container(&ctr.id).unwrap();
    assert_eq!(store.layer(&ctr.layer_id).unwrap().id, ctr.layer_id);
    assert_whole(&store);
    assert_eq!(
        store.delete_image(&committed.id, true).unwrap(),
        [ctr.layer_id]
    );
    assert_whole(&store);
}

/// One step of a random sequence.
#[derive(Debug, Clone)]
enum Op {
    Layer { parent: usize },
    Image { layer: usize },
    Container { image: usize, mapped: bool },
    DeleteLayer { layer: usize, by_prefix: bool },
    DeleteImage { image: usize },
    DeleteContainer { container: usize },
    Delete { layer: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..8).prop_map(|parent| Op::Layer { parent }),
        2 => (0usize..8).prop_map(|layer| Op::Image { layer }),
        2 => (0usize..8, any::<bool>()).prop_map(|(image, mapped)| Op::Container { image, mapped }),
        2 => (0usize..8, any::<bool>()).prop_map(|(layer, by_prefix)| Op::DeleteLayer { layer, by_prefix }),
        1 => (0usize..8).prop_map(|image| Op::DeleteImage { image }),
        1 => (0usize..8).prop_map(|container| Op::DeleteContainer { container }),
        1 => (0usize..8).prop_map(|layer| Op::Delete { layer }),
    ]
}

/// Picks the `n`-th of `ids` (wrapping), if any.
fn pick(ids: &[String], n: usize) -> Option<String> {
    (!ids.is_empty()).then(|| ids[n % ids.len()].clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever is created and deleted (deletions may be refused), every image's and every
    /// container's layers exist, nothing stays marked, and the layer store checks clean.
    #[test]
    fn no_sequence_leaves_a_reference_to_a_missing_layer(ops in proptest::collection::vec(op(), 1..24)) {
        if !layerstore_testsupport::require(Capability::Root, "no_sequence_leaves_a_reference_to_a_missing_layer") {
            return Ok(());
        }
        let scratch = Scratch::new("vfs");
        let store = scratch.open();
        for op in ops {
            let layers: Vec<String> = store.layers().unwrap().into_iter().map(|l| l.id).collect();
            let images: Vec<String> = store.images().unwrap().into_iter().map(|i| i.id).collect();
            let containers: Vec<String> = store.containers().unwrap().into_iter().map(|c| c.id).collect();
            match op {
                Op::Layer { parent } => {
                    let mut options = LayerOptions::new();
                    options.parent = pick(&layers, parent).filter(|_| parent % 3 != 0);
                    let _ = store.create_layer(&options, HostMapping::default());
                }
                Op::Image { layer } => {
                    if let Some(top) = pick(&layers, layer) {
                        store.create_image(NewImage { top_layer: top, ..NewImage::default() }).unwrap();
                    }
                }
                Op::Container { image, mapped } => {
                    if let Some(image) = pick(&images, image) {
                        let (uid_map, gid_map) = if mapped { (map(), map()) } else { Default::default() };
                        store.create_container(ContainerOptions { image, uid_map, gid_map, ..ContainerOptions::default() }).unwrap();
                    }
                }
                Op::DeleteLayer { layer, by_prefix } => {
                    if let Some(id) = pick(&layers, layer) {
                        let key = if by_prefix { id[..12].to_owned() } else { id };
                        let _ = store.delete_layer(&key);
                    }
                }
                Op::DeleteImage { image } => {
                    if let Some(id) = pick(&images, image) {
                        let _ = store.delete_image(&id, true);
                    }
                }
                Op::DeleteContainer { container } => {
                    if let Some(id) = pick(&containers, container) {
                        store.delete_container(&id).unwrap();
                    }
                }
                Op::Delete { layer } => {
                    if let Some(id) = pick(&layers, layer) {
                        let _ = store.delete(&id);
                    }
                }
            }
            assert_whole(&store);
        }
    }
}

/// A container record that cannot be saved (its directory made immutable) leaves no layer
/// behind: the new layer is rolled back, as Go does.
#[test]
fn a_container_record_that_cannot_be_saved_leaves_no_layer() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    let base = layer(&store, None, &[("a", b"a")]);
    store
        .create_image(NewImage {
            names: vec!["i".into()],
            top_layer: base.clone(),
            ..NewImage::default()
        })
        .unwrap();
    store.containers().unwrap(); // loaded before the directory is frozen
    let dir = scratch.graph().join("vfs-containers");
    let chattr = |flag: &str| {
        let status = std::process::Command::new("chattr")
            .arg(flag)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "chattr {flag}");
    };
    chattr("+i");
    let result = store.create_container(ContainerOptions {
        image: "i".into(),
        ..ContainerOptions::default()
    });
    chattr("-i");
    let err = result.unwrap_err();
    assert!(err.to_string().contains("vfs-containers"), "{err}");
    assert_eq!(
        store
            .layers()
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect::<Vec<_>>(),
        [base]
    );
    assert_eq!(store.containers().unwrap(), []);
    assert_whole(&store);
}
