//! Containers with ID mappings: the ID-mapped copies of an image's top layer (recorded in its
//! mapped layers, reused by the next container with the same mappings), who owns the files a
//! container sees, and Go's rules for what the layers inherit; compared with the Go tool.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use layerstore::{ContainerOptions, IDMap, LayerOptions, Store};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::support::{Scratch, assert_whole, tarball_owned};

const MAP: &str = "0:100000:65536";

fn map(host: u32) -> Vec<IDMap> {
    vec![IDMap {
        container_id: 0,
        host_id: host,
        size: 65_536,
    }]
}

/// Owner (uid, gid) of each file, as the host sees them in a mount.
fn owners(mount: &Path, files: &[&str]) -> Vec<(u32, u32)> {
    files
        .iter()
        .map(|f| {
            let st = std::fs::symlink_metadata(mount.join(f)).unwrap();
            (st.uid(), st.gid())
        })
        .collect()
}

fn import(store: &Store, id: &str, parent: Option<&str>, files: &[(&str, &[u8], u32)], host: u32) {
    let mut options = LayerOptions::new().id(id);
    options.parent = parent.map(str::to_owned);
    if host != 0 {
        options.uid_map = map(host);
        options.gid_map = map(host);
    }
    let tar = tarball_owned(files);
    store
        .put_layer(&options, Default::default(), Some(&mut &tar[..]))
        .unwrap();
}

fn go_import(
    scratch: &Scratch,
    id: &str,
    parent: Option<&str>,
    files: &[(&str, &[u8], u32)],
    host: u32,
) {
    let tar = scratch.path().join(format!("{id}.tar"));
    std::fs::write(&tar, tarball_owned(files)).unwrap();
    let mut args = vec!["import-layer", "--id", id, "-f", tar.to_str().unwrap()];
    let mapping = format!("0:{host}:65536");
    if host != 0 {
        args.extend(["--uidmap", &mapping, "--gidmap", &mapping]);
    }
    args.extend(parent);
    scratch.go_ok(&args);
}

// Below a directory: Go 1.43's re-owning walk leaves the entries at a layer's top level as
// they were (`create-layer --uidmap 0:300000:65536 base` keeps `/a` at 0:0 but makes
// `/d/e` 300000:300000), so only files below one compare with it.
const BASE: &[(&str, &[u8], u32)] = &[("d/a", b"a", 0), ("d/b", b"b", 1000)];
const TOP: &[(&str, &[u8], u32)] = &[("d/c", b"c", 0)];
const FILES: [&str; 3] = ["d/a", "d/b", "d/c"];

fn mapped_container(id: &str, image: &str, uid: Option<u32>, gid: Option<u32>) -> ContainerOptions {
    ContainerOptions {
        id: Some(id.into()),
        image: image.into(),
        uid_map: uid.map(map).unwrap_or_default(),
        gid_map: gid.map(map).unwrap_or_default(),
        ..ContainerOptions::default()
    }
}

/// Go's layout and ownership for mapped containers, side by side with the Go tool (vfs).
#[test]
fn mapped_copies_and_owners_match_go_on_vfs() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let ours = Scratch::new("vfs");
    let go = Scratch::new("vfs");
    let store = ours.open();
    // An image on an unmapped top layer, and one on a top layer mapped to 200000.
    import(&store, "base", None, BASE, 0);
    import(&store, "top", Some("base"), TOP, 0);
    import(&store, "top2", Some("base"), TOP, 200_000);
    go_import(&go, "base", None, BASE, 0);
    go_import(&go, "top", Some("base"), TOP, 0);
    go_import(&go, "top2", Some("base"), TOP, 200_000);
    for (image, top) in [("img", "top"), ("img2", "top2")] {
        store
            .create_image(layerstore::NewImage {
                id: Some(image.into()),
                top_layer: top.into(),
                ..Default::default()
            })
            .unwrap();
        go.go_ok(&["create-image", "--id", image, top]);
    }
    // m1, m2: mapped alike (the second reuses the first's copy); u1: UIDs only; n1: no
    // mapping on the mapped image (a copy without mappings); h1: no mapping, plain image.
    let ours_containers = [
        mapped_container("m1", "img", Some(100_000), Some(100_000)),
        mapped_container("m2", "img", Some(100_000), Some(100_000)),
        mapped_container("u1", "img", Some(100_000), None),
        mapped_container("n1", "img2", None, None),
        mapped_container("h1", "img", None, None),
    ];
    let go_args: [&[&str]; 5] = [
        &["--uidmap", MAP, "--gidmap", MAP, "img"],
        &["--uidmap", MAP, "--gidmap", MAP, "img"],
        &["--uidmap", MAP, "img"],
        &["img2"],
        &["img"],
    ];
    for (options, args) in ours_containers.into_iter().zip(go_args) {
        let id = options.id.clone().unwrap();
        store.create_container(options).unwrap();
        let mut full = vec!["create-container", "--id", id.as_str()];
        full.extend(args);
        go.go_ok(&full);
    }
    assert_whole(&store);

    // The records: mapped layers of each image, each container layer's parent and maps.
    let go_images = go.go_json(&["images"]);
    let go_layers = go.go_json(&["layers"]);
    let go_layer = |id: &str| {
        go_layers
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id)
            .cloned()
            .unwrap()
    };
    for image in ["img", "img2"] {
        let ours_mapped = store.image(image).unwrap().mapped_top_layers;
        let go_mapped = go_images
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == image)
            .map(|i| i["mapped-layers"].as_array().map_or(0, Vec::len))
            .unwrap();
        assert_eq!(ours_mapped.len(), go_mapped, "{image}: mapped layers");
        for copy in &ours_mapped {
            assert_eq!(
                store.layer(copy).unwrap().parent,
                "base",
                "a copy is the top's sibling"
            );
        }
    }
    for ctr in ["m1", "m2", "u1", "n1", "h1"] {
        let ours_layer = store
            .layer(&store.container(ctr).unwrap().layer_id)
            .unwrap();
        let go_ctr = go.go_json(&["container", ctr]);
        let go_ctr_layer = go_layer(go_ctr[0]["layer"].as_str().unwrap());
        let go_parent = go_layer(go_ctr_layer["parent"].as_str().unwrap());
        let ours_parent = store.layer(&ours_layer.parent).unwrap();
        // Parents are named alike (`top`), or both are unnamed copies.
        let name = |id: &str| {
            if ["top", "top2", "base"].contains(&id) {
                id.to_owned()
            } else {
                "copy".to_owned()
            }
        };
        assert_eq!(
            name(&ours_parent.id),
            name(go_parent["id"].as_str().unwrap()),
            "{ctr}: parent"
        );
        for (key, ours_map, parent_map) in [
            ("uidmap", &ours_layer.uid_map, &ours_parent.uid_map),
            ("gidmap", &ours_layer.gid_map, &ours_parent.gid_map),
        ] {
            let as_json = |m: &Vec<IDMap>| {
                if m.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::to_value(m).unwrap()
                }
            };
            assert_eq!(as_json(ours_map), go_ctr_layer[key], "{ctr}: layer {key}");
            assert_eq!(as_json(parent_map), go_parent[key], "{ctr}: parent {key}");
        }
        // What the container sees, as the host sees it.
        let ours_mount = store.mount(ctr, "").unwrap();
        let go_mount = go.go_ok(&["mount", ctr]);
        assert_eq!(
            owners(&ours_mount, &FILES),
            owners(Path::new(go_mount.trim()), &FILES),
            "{ctr}: owners"
        );
        store.unmount(ctr, false).unwrap();
        go.go_ok(&["unmount", ctr]);
    }
    assert_eq!(
        owners(&store.mount("m1", "").unwrap(), &FILES),
        [(100_000, 100_000), (101_000, 101_000), (100_000, 100_000)]
    );
    store.unmount("m1", false).unwrap();
    // Sizes count the copies too, as Go's do.
    for image in ["img", "img2"] {
        let size = store.image_size(image).unwrap();
        assert!(
            go.go_ok(&["image", image])
                .contains(&format!("Size: {size}\n")),
            "{image}: {size}"
        );
    }
    // Deleting the containers and images leaves no layer behind (bats idmaps-create-mapped-image).
    for ctr in ["m1", "m2", "u1", "n1", "h1"] {
        store.delete_container(ctr).unwrap();
    }
    store.delete_image("img", true).unwrap();
    store.delete_image("img2", true).unwrap();
    assert_eq!(store.layers().unwrap(), []);
    assert_whole(&store);
}

/// On overlay the copies are chowned (our overlay driver does not shift at mount time): the
/// container sees its files owned by the mapped IDs, once (a naive template copy must not
/// shift twice).
#[test]
fn mapped_containers_see_their_files_shifted_once_on_overlay() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new("overlay");
    let store = scratch.open();
    import(&store, "base", None, BASE, 0);
    import(&store, "top", Some("base"), TOP, 0);
    import(&store, "top2", Some("base"), TOP, 200_000);
    for (image, top) in [("img", "top"), ("img2", "top2")] {
        store
            .create_image(layerstore::NewImage {
                id: Some(image.into()),
                top_layer: top.into(),
                ..Default::default()
            })
            .unwrap();
    }
    store
        .create_container(mapped_container("m1", "img", Some(100_000), Some(100_000)))
        .unwrap();
    store
        .create_container(mapped_container("n1", "img2", None, None))
        .unwrap();
    let mount = store.mount("m1", "").unwrap();
    assert_eq!(
        owners(&mount, &FILES),
        [(100_000, 100_000), (101_000, 101_000), (100_000, 100_000)]
    );
    let mount = store.mount("n1", "").unwrap();
    assert_eq!(owners(&mount, &FILES), [(0, 0), (1000, 1000), (0, 0)]);
    store.shutdown(true).unwrap();
    assert_whole(&store);
}
