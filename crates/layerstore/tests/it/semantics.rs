//! Go's semantics, side by side: the same operations on twin stores, one through the Store,
//! one through the Go tool (`containers-storage` 1.43); the same outcomes and the same error
//! texts (the Go tool prints them as `<arg>: <error>`, `<error> while mounting <arg>`, ...).

use layerstore::{ContainerOptions, IDMap, LayerOptions, NewImage, Store};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::support::{Scratch, assert_whole, go_ids, sorted};

/// Two stores that should stay alike: `ours` through the Store, `go` through the Go tool.
struct Twin {
    go: Scratch,
    ours: Scratch,
    store: Option<Store>,
}

impl Twin {
    fn new(driver: &'static str) -> Twin {
        let ours = Scratch::new(driver);
        let store = Some(ours.open());
        Twin {
            go: Scratch::new(driver),
            ours,
            store,
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    /// Runs `go_args` with the Go tool and `ours` on the Store: both succeed, or both fail
    /// with Go's standard error equal to `shown(our error)`.
    fn same<T: std::fmt::Debug>(
        &self,
        go_args: &[&str],
        ours: impl FnOnce(&Store) -> layerstore::Result<T>,
        shown: impl FnOnce(&str) -> String,
    ) -> Option<T> {
        let go = self.go.go(go_args);
        let go_err = String::from_utf8_lossy(&go.stderr).trim().to_owned();
        match ours(self.store()) {
            Ok(value) => {
                assert!(
                    go.status.success(),
                    "{go_args:?}: ours succeeded ({value:?}), Go failed: {go_err}"
                );
                Some(value)
            }
            Err(e) => {
                assert!(
                    !go.status.success(),
                    "{go_args:?}: Go succeeded, ours failed: {e}"
                );
                assert_eq!(go_err, shown(&e.to_string()), "{go_args:?}");
                None
            }
        }
    }

    /// [`Twin::same`] for commands whose errors the Go tool prints bare.
    fn same_bare<T: std::fmt::Debug>(
        &self,
        go_args: &[&str],
        ours: impl FnOnce(&Store) -> layerstore::Result<T>,
    ) -> Option<T> {
        self.same(go_args, ours, str::to_owned)
    }

    /// [`Twin::same`] for commands that print `<arg>: <error>`.
    fn same_prefixed<T: std::fmt::Debug>(
        &self,
        go_args: &[&str],
        arg: &str,
        ours: impl FnOnce(&Store) -> layerstore::Result<T>,
    ) -> Option<T> {
        self.same(go_args, ours, |e| format!("{arg}: {e}"))
    }

    /// The layers, images and containers both stores list, by ID, sorted; the layers of
    /// containers (random in Go's twin) left out.
    fn assert_alike(&self) {
        let store = self.store();
        let container_layers: Vec<String> = store
            .containers()
            .unwrap()
            .into_iter()
            .map(|c| c.layer_id)
            .collect();
        let go_container_layers: Vec<String> = self
            .go
            .go_json(&["containers"])
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["layer"].as_str().unwrap().to_owned())
            .collect();
        let ours = sorted(
            store
                .layers()
                .unwrap()
                .into_iter()
                .filter(|l| !container_layers.contains(&l.id)),
            |l| &l.id,
        );
        let go: Vec<String> = go_ids(&self.go, "layers")
            .into_iter()
            .filter(|l| !go_container_layers.contains(l))
            .collect();
        assert_eq!(ours, go, "layers");
        assert_eq!(
            sorted(store.images().unwrap(), |i| &i.id),
            go_ids(&self.go, "images")
        );
        assert_eq!(
            sorted(store.containers().unwrap(), |c| &c.id),
            go_ids(&self.go, "containers")
        );
        assert_whole(store);
    }
}

fn layer_options(id: &str, parent: Option<&str>) -> LayerOptions {
    let mut options = LayerOptions::new().id(id);
    options.parent = parent.map(str::to_owned);
    options
}

fn image(id: &str, names: &[&str], layer: &str) -> NewImage {
    NewImage {
        id: Some(id.into()),
        names: names.iter().map(|n| n.to_string()).collect(),
        top_layer: layer.into(),
        ..NewImage::default()
    }
}

fn container(id: &str, names: &[&str], image: &str) -> ContainerOptions {
    ContainerOptions {
        id: Some(id.into()),
        names: names.iter().map(|n| n.to_string()).collect(),
        image: image.into(),
        ..ContainerOptions::default()
    }
}

/// Creation and deletion of every kind, with every refusal Go has on the way.
fn create_and_delete(driver: &'static str) {
    let twin = Twin::new(driver);
    twin.same_bare(&["create-layer", "--id", "base"], |s| {
        s.create_layer(&layer_options("base", None), Default::default())
    });
    twin.same_bare(&["create-layer", "--id", "top", "base"], |s| {
        s.create_layer(&layer_options("top", Some("base")), Default::default())
    });
    twin.same_bare(
        &["create-image", "--id", "img", "-n", "name1", "top"],
        |s| s.create_image(image("img", &["name1"], "top")),
    );
    // Refusals of create-image: a taken ID, a taken name, an unknown layer, a bad digest.
    twin.same_bare(&["create-image", "--id", "img", "-n", "x"], |s| {
        s.create_image(image("img", &["x"], ""))
    });
    twin.same_bare(
        &["create-image", "--id", "img3", "-n", "name1", "top"],
        |s| s.create_image(image("img3", &["name1"], "top")),
    );
    twin.same_bare(&["create-image", "--id", "img4", "nosuch"], |s| {
        s.create_image(image("img4", &[], "nosuch"))
    });
    twin.same_bare(
        &["create-image", "--id", "img5", "--digest", "bogus"],
        |s| {
            s.create_image(NewImage {
                digest: Some("bogus".into()),
                ..image("img5", &[], "")
            })
        },
    );
    twin.same_bare(
        &["create-container", "--id", "ctr", "-n", "c1", "img"],
        |s| s.create_container(container("ctr", &["c1"], "img")),
    );
    // Refusals of create-container: a taken name, an unknown image, overlapping mappings.
    twin.same_bare(
        &["create-container", "--id", "ctr2", "-n", "c1", "img"],
        |s| s.create_container(container("ctr2", &["c1"], "img")),
    );
    twin.same_bare(&["create-container", "--id", "ctr3", "nosuch"], |s| {
        s.create_container(container("ctr3", &[], "nosuch"))
    });
    twin.same_bare(
        &[
            "create-container",
            "--id",
            "ctr4",
            "--uidmap",
            "0:100000:1000:500:100100:10",
            "",
        ],
        |s| {
            s.create_container(ContainerOptions {
                uid_map: vec![
                    IDMap {
                        container_id: 0,
                        host_id: 100_000,
                        size: 1000,
                    },
                    IDMap {
                        container_id: 500,
                        host_id: 100_100,
                        size: 10,
                    },
                ],
                ..container("ctr4", &[], "")
            })
        },
    );
    twin.assert_alike();

    // Deleting what is in use: every way, by ID, name and prefix alike.
    twin.same_prefixed(&["delete-layer", "base"], "base", |s| {
        s.delete_layer("base")
    });
    twin.same_prefixed(&["delete-layer", "nosuch"], "nosuch", |s| {
        s.delete_layer("nosuch")
    });
    twin.same_prefixed(&["delete-image", "img"], "img", |s| {
        s.delete_image("img", true)
    });
    twin.same_prefixed(&["delete-image", "nosuch"], "nosuch", |s| {
        s.delete_image("nosuch", true)
    });
    twin.same_prefixed(&["delete-container", "nosuch"], "nosuch", |s| {
        s.delete_container("nosuch")
    });
    twin.same_prefixed(&["delete", "nosuch"], "nosuch", |s| s.delete("nosuch"));
    twin.assert_alike();

    // A container's layer is the top layer's child (its ID differs between the twins).
    let ours_err = twin.store().delete_layer("top").unwrap_err().to_string();
    let go_err = twin.go.go_err(&["delete-layer", "top"]);
    let ctr_layer = twin.store().container("ctr").unwrap().layer_id;
    assert_eq!(
        ours_err,
        format!("used by layer {ctr_layer}: layer has children")
    );
    assert!(go_err.starts_with("top: used by layer ") && go_err.ends_with(": layer has children"));

    twin.same_prefixed(&["delete-container", "c1"], "c1", |s| {
        s.delete_container("c1")
    });
    twin.same_prefixed(&["delete-layer", "top"], "top", |s| s.delete_layer("top"));
    twin.same_bare(&["delete-image", "--test", "img"], |s| {
        s.delete_image("img", false)
    });
    twin.same_prefixed(&["delete-image", "img"], "img", |s| {
        s.delete_image("img", true)
    });
    twin.assert_alike();
    assert_eq!(twin.store().layers().unwrap(), []);
    assert_eq!(go_ids(&twin.go, "layers"), Vec::<String>::new());
}

#[test]
fn creation_and_deletion_match_go_on_vfs() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    create_and_delete("vfs");
}

#[test]
fn creation_and_deletion_match_go_on_overlay() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    create_and_delete("overlay");
}

/// Lookups, names, metadata and deletion across kinds, in Go's order.
#[test]
fn kinds_are_searched_in_gos_order() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let twin = Twin::new("vfs");
    twin.same_bare(&["create-layer", "--id", "l1", "-n", "foo"], |s| {
        s.create_layer(
            &LayerOptions {
                names: vec!["foo".into()],
                ..layer_options("l1", None)
            },
            Default::default(),
        )
    });
    twin.same_bare(&["create-image", "--id", "i1", "-n", "foo", "l1"], |s| {
        s.create_image(image("i1", &["foo"], "l1"))
    });
    twin.same_bare(
        &["create-container", "--id", "c1", "-n", "foo", "i1"],
        |s| s.create_container(container("c1", &["foo"], "i1")),
    );
    // Reads and renames act on the layer first.
    let names = twin.store().names("foo").unwrap();
    assert_eq!(names, ["foo"]);
    assert_eq!(twin.store().lookup("foo").unwrap(), "l1");
    twin.same_bare(&["set-metadata", "-m", "meta", "foo"], |s| {
        s.set_metadata("foo", "meta")
    });
    assert_eq!(twin.store().metadata("l1").unwrap(), "meta");
    assert_eq!(twin.go.go_ok(&["metadata", "-q", "l1"]).trim(), "meta");
    twin.same_bare(&["set-names", "-n", "bar", "foo"], |s| {
        s.set_names("foo", &["bar".into()])
    });
    assert_eq!(twin.store().layer("l1").unwrap().names, ["bar"]);
    assert!(twin.store().exists("bar").unwrap());
    // Names move between images; the image keeps a history.
    twin.same_bare(&["create-image", "--id", "i2", "l1"], |s| {
        s.create_image(image("i2", &[], "l1"))
    });
    twin.same_bare(&["add-names", "-n", "foo", "-n", "x", "i2"], |s| {
        let mut names = s.image("i2")?.names;
        names.extend(["foo".to_owned(), "x".to_owned()]);
        s.set_names("i2", &names)
    });
    let ours = twin.store().image("i2").unwrap();
    let go = &twin
        .go
        .go_json(&["images"])
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "i2")
        .unwrap()
        .clone();
    assert_eq!(serde_json::to_value(&ours.names).unwrap(), go["names"]);
    assert_eq!(
        serde_json::to_value(&ours.names_history).unwrap(),
        go["names-history"]
    );
    assert!(
        twin.store().image("i1").unwrap().names.is_empty(),
        "foo moved to i2"
    );
    // delete: a container first, then an image, then a layer.
    twin.same_prefixed(&["delete", "foo"], "foo", |s| s.delete("foo"));
    assert!(twin.store().container("c1").is_err());
    twin.same_prefixed(&["delete", "foo"], "foo", |s| s.delete("foo"));
    assert!(twin.store().image("i2").is_err(), "the image holding foo");
    assert!(
        twin.store().layer("l1").is_ok(),
        "an image's delete removes its record only"
    );
    twin.assert_alike();
    twin.same_prefixed(&["delete", "i1"], "i1", |s| s.delete("i1"));
    twin.same_prefixed(&["delete", "bar"], "bar", |s| s.delete("bar"));
    twin.same_prefixed(&["delete", "bar"], "bar", |s| s.delete("bar"));
    twin.assert_alike();
    assert_eq!(twin.store().layers().unwrap(), []);
    twin.same_bare(&["get-names", "nosuch"], |s| s.names("nosuch"));
    twin.same_bare(&["set-metadata", "-m", "x", "nosuch"], |s| {
        s.set_metadata("nosuch", "x")
    });
    assert_eq!(
        twin.store().metadata("nosuch").unwrap_err().to_string(),
        "identifier is not a layer, image, or container"
    );
    assert!(!twin.store().exists("nosuch").unwrap());
    assert!(!twin.store().exists("bar").unwrap());
}

/// Big data, sizes and lookups by digest.
#[test]
fn big_data_sizes_and_digests_match_go() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let twin = Twin::new("vfs");
    twin.same_bare(&["create-image", "--id", "big"], |s| {
        s.create_image(image("big", &[], ""))
    });
    let zeros = twin.go.path().join("zeros");
    std::fs::write(&zeros, [0u8; 256]).unwrap();
    for key in ["a", "manifest"] {
        twin.same_bare(
            &["set-image-data", "-f", zeros.to_str().unwrap(), "big", key],
            |s| {
                s.set_image_big_data(
                    "big",
                    key,
                    &[0u8; 256],
                    Some(&|d: &[u8]| Ok(layerstore_recordstore::canonical_digest(d))),
                )
            },
        );
    }
    assert_eq!(twin.store().image_size("big").unwrap(), 512);
    assert!(twin.go.go_ok(&["image", "big"]).contains("Size: 512"));
    twin.same_bare(&["get-image-data-size", "big", "nosuch"], |s| {
        s.image_big_data_size("big", "nosuch")
    });
    twin.same_bare(&["get-image-data-digest", "big", "nosuch"], |s| {
        s.image_big_data_digest("big", "nosuch")
    });
    twin.same_bare(&["get-image-data", "big", "nosuch"], |s| {
        s.image_big_data("big", "nosuch")
    });
    twin.same_bare(&["list-image-data", "nosuch"], |s| {
        s.list_image_big_data("nosuch")
    });
    let digest = twin.store().image("big").unwrap().digest;
    let go_digest = twin.go.go_json(&["image", "big"])[0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(digest, go_digest, "the first manifest's digest");
    assert_eq!(twin.store().images_by_digest(&digest).unwrap()[0].id, "big");
    assert_eq!(
        twin.store()
            .images_by_digest(
                "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            )
            .unwrap(),
        []
    );
    // Container big data and directories.
    twin.same_bare(&["create-container", "--id", "cb", ""], |s| {
        s.create_container(container("cb", &[], ""))
    });
    twin.same_bare(
        &[
            "set-container-data",
            "-f",
            zeros.to_str().unwrap(),
            "cb",
            "k",
        ],
        |s| s.set_container_big_data("cb", "k", &[0u8; 256]),
    );
    assert_eq!(
        twin.store().container_big_data_size("cb", "k").unwrap(),
        256
    );
    twin.same_bare(&["get-container-data-size", "cb", "nosuch"], |s| {
        s.container_big_data_size("cb", "nosuch")
    });
    let dir = twin.store().container_directory("cb").unwrap();
    assert_eq!(dir, twin.ours.graph().join("vfs-containers/cb/userdata"));
    let run_dir = twin.store().container_run_directory("cb").unwrap();
    assert_eq!(run_dir, twin.ours.run().join("vfs-containers/cb/userdata"));
    assert_eq!(twin.store().container_size("cb").unwrap(), 256);
    assert!(
        twin.go.go_ok(&["container", "cb"]).contains("Size: 256"),
        "Go's size"
    );
}

/// Mounting images and containers, counts, unmounting by mount point, shutdown and wipe.
#[test]
fn mounts_shutdown_and_wipe_match_go() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let twin = Twin::new("vfs");
    let tar = crate::support::tarball(&[("etc/x", b"x")]);
    let tar_path = twin.go.path().join("x.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    twin.same_bare(
        &[
            "import-layer",
            "--id",
            "l",
            "-f",
            tar_path.to_str().unwrap(),
        ],
        |s| {
            s.put_layer(
                &layer_options("l", None),
                Default::default(),
                Some(&mut &tar[..]),
            )
        },
    );
    twin.same_bare(&["create-image", "--id", "img", "l"], |s| {
        s.create_image(image("img", &[], "l"))
    });
    twin.same_bare(&["create-container", "--id", "c", "img"], |s| {
        s.create_container(container("c", &[], "img"))
    });
    let store = twin.store();
    // An image mounts read-only; `rw` is refused in Go's words.
    let image_mount = store.mount_image("img", &[], "").unwrap();
    assert_eq!(std::fs::read(image_mount.join("etc/x")).unwrap(), b"x");
    assert_eq!(
        store
            .mount_image("img", &["rw".into()], "")
            .unwrap_err()
            .to_string(),
        " \"rw\" option not supported"
    );
    assert!(!store.unmount_image("img", false).unwrap());
    // A container mounts by ID, name or layer ID; counts add up; a mount point unmounts.
    let ctr_layer = store.container("c").unwrap().layer_id;
    let first = store.mount("c", "").unwrap();
    assert_eq!(store.mount(&ctr_layer, "").unwrap(), first);
    assert_eq!(store.mounted("c").unwrap(), 2);
    assert!(
        store.unmount(first.to_str().unwrap(), false).unwrap(),
        "one mount left"
    );
    twin.same(&["mount", "c"], |s| s.mount("c", ""), |e| e.to_owned());
    twin.same(
        &["shutdown"],
        |s| s.shutdown(false),
        |e| format!("shutdown: {e}"),
    );
    twin.same(
        &["unmount", "--force", "c"],
        |s| s.unmount("c", true),
        |e| e.to_owned(),
    );
    twin.same(
        &["mount", "nosuch"],
        |s| s.mount("nosuch", ""),
        |e| format!("{e} while mounting nosuch"),
    );
    twin.same(
        &["unmount", "nosuch"],
        |s| s.unmount("nosuch", false),
        |e| format!("{e} while unmounting nosuch"),
    );
    twin.same(
        &["mounted", "nosuch"],
        |s| s.mounted("nosuch"),
        |e| format!("{e} checking if nosuch is mounted"),
    );
    twin.same_bare(&["shutdown"], |s| s.shutdown(false));
    // Wipe takes everything of the read-write stores, run directories included (Go leaves
    // the container's run directory).
    let run_dir = store.container_run_directory("c").unwrap();
    twin.same_bare(&["wipe"], |s| s.wipe());
    assert!(!run_dir.parent().unwrap().exists());
    twin.assert_alike();
    assert_eq!(store.layers().unwrap(), []);
}

/// A volatile container is flagged as Go flags it and mounted `volatile` on overlay.
#[test]
fn volatile_containers_are_flagged_and_mounted_volatile_on_overlay() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    let twin = Twin::new("overlay");
    twin.same_bare(&["create-container", "--id", "v", "--volatile", ""], |s| {
        s.create_container(ContainerOptions {
            volatile: true,
            ..container("v", &[], "")
        })
    });
    let ours = serde_json::to_value(twin.store().container("v").unwrap().flags).unwrap();
    assert_eq!(ours, twin.go.go_json(&["container", "v"])[0]["flags"]);
    let mount = twin.store().mount("v", "").unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mount.to_str().unwrap()))
        .expect("the container is mounted");
    assert!(line.contains("volatile"), "{line}");
    // A container's mount options (the `MountOpts` flag, API only in Go) go to every mount.
    let opts = twin
        .store()
        .create_container(ContainerOptions {
            mount_opts: Some(vec!["nodev".into()]),
            ..container("o", &[], "")
        })
        .unwrap();
    assert_eq!(opts.flags["MountOpts"], serde_json::json!(["nodev"]));
    let mount = twin.store().mount("o", "").unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mount.to_str().unwrap()))
        .expect("the container is mounted");
    assert!(
        line.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "nodev"),
        "{line}"
    );
    twin.store().shutdown(true).unwrap();
}

/// Images by top layer, containers by layer, parent owners; the store's default mappings.
#[test]
fn lookups_by_layer_parent_owners_and_default_mappings() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let twin = Twin::new("vfs");
    let map = "0:100000:65536";
    twin.same_bare(&["create-layer", "--id", "l"], |s| {
        s.create_layer(&layer_options("l", None), Default::default())
    });
    twin.same_bare(&["create-image", "--id", "i", "l"], |s| {
        s.create_image(image("i", &[], "l"))
    });
    twin.same_bare(&["create-container", "--id", "plain", "i"], |s| {
        s.create_container(container("plain", &[], "i"))
    });
    twin.same_bare(
        &[
            "create-container",
            "--id",
            "mapped",
            "--uidmap",
            map,
            "--gidmap",
            map,
            "i",
        ],
        |s| {
            let ids = vec![IDMap {
                container_id: 0,
                host_id: 100_000,
                size: 65_536,
            }];
            s.create_container(ContainerOptions {
                uid_map: ids.clone(),
                gid_map: ids,
                ..container("mapped", &[], "i")
            })
        },
    );
    let store = twin.store();
    // Both the top layer and its ID-mapped copy find the image.
    let copy = store.image("i").unwrap().mapped_top_layers[0].clone();
    for layer in ["l", copy.as_str()] {
        let found: Vec<String> = store
            .images_by_top_layer(layer)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(found, ["i"], "{layer}");
    }
    let plain_layer = store.container("plain").unwrap().layer_id;
    assert_eq!(
        store.container_by_layer(&plain_layer[..12]).unwrap().id,
        "plain"
    );
    assert_eq!(
        store.container_by_layer("l").unwrap_err().to_string(),
        "container not known"
    );
    // Parent owners: none for a container without mappings; the unmapped owners of the
    // mount point's parents for a mapped one, mounted (Go's JSON: `null` for none).
    for ctr in ["plain", "mapped"] {
        store.mount(ctr, "").unwrap();
        twin.go.go_ok(&["mount", ctr]);
        let (uids, gids) = store.container_parent_owners(ctr).unwrap();
        let go = twin.go.go_json(&["container-parent-owners", ctr]);
        let as_json = |ids: Vec<u32>| {
            if ids.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::to_value(ids).unwrap()
            }
        };
        assert_eq!(
            (as_json(uids), as_json(gids)),
            (go["UIDs"].clone(), go["GIDs"].clone()),
            "{ctr}"
        );
    }
    store.shutdown(true).unwrap();
    // (Go 1.43's `shutdown --force` loops forever: unmount one by one.)
    for ctr in ["plain", "mapped"] {
        twin.go.go_ok(&["unmount", ctr]);
    }

    // The store's default mappings go to containers without an image or on a layerless one.
    let defaults = vec![IDMap {
        container_id: 0,
        host_id: 200_000,
        size: 65_536,
    }];
    let scratch = Scratch::new("vfs");
    let mut options = scratch.options();
    options.uid_map = defaults.clone();
    options.gid_map = defaults.clone();
    let store = layerstore::Store::open(options).unwrap();
    store.create_image(image("empty", &[], "")).unwrap();
    for (ctr, image) in [("none", ""), ("layerless", "empty")] {
        let c = store.create_container(container(ctr, &[], image)).unwrap();
        assert!(c.uid_map.is_empty(), "the record keeps what was asked");
        let layer = store.layer(&c.layer_id).unwrap();
        assert_eq!(
            (layer.uid_map, layer.gid_map),
            (defaults.clone(), defaults.clone()),
            "{ctr}"
        );
    }
}
