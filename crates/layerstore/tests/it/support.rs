//! What the tests share: scratch stores (unmounted and removed when dropped), the Go tool,
//! podman, buildah and skopeo on them, tarballs, and the check that a store is whole.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use layerstore::{LayerOptions, Store, StoreOptions};
use layerstore_layers::{CheckOptions, Problem};
use layerstore_testsupport::go;

/// Generous bound for one external command (they take well under a few seconds).
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A scratch store: `<tmp>/graph` and `<tmp>/run` for `driver`. Dropping it detaches every
/// mount beneath it (a driver's private bind, what a killed process or podman left) and
/// removes it ([`layerstore_testsupport::scratch::Scratch`]).
pub struct Scratch {
    dir: layerstore_testsupport::scratch::Scratch,
    pub driver: &'static str,
}

impl Scratch {
    pub fn new(driver: &'static str) -> Scratch {
        Scratch {
            dir: layerstore_testsupport::scratch::Scratch::with_prefix("lsstore-"),
            driver,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn graph(&self) -> PathBuf {
        self.path().join("graph")
    }

    pub fn run(&self) -> PathBuf {
        self.path().join("run")
    }

    pub fn options(&self) -> StoreOptions {
        StoreOptions::new(self.graph(), self.run(), self.driver)
    }

    pub fn open(&self) -> Store {
        Store::open(self.options()).expect("open the store")
    }

    /// Runs the Go tool on this store ([`layerstore_testsupport::go`], bounded in time).
    pub fn go(&self, args: &[&str]) -> Output {
        go::run_go(&self.graph(), &self.run(), self.driver, args)
    }

    /// Runs the Go tool, requires success, returns its standard output.
    pub fn go_ok(&self, args: &[&str]) -> String {
        go::run_go_text(&self.graph(), &self.run(), self.driver, args)
    }

    /// Runs the Go tool, requires failure, returns its standard error (trimmed).
    pub fn go_err(&self, args: &[&str]) -> String {
        go::run_go_err(&self.graph(), &self.run(), self.driver, args)
    }

    /// The Go tool's JSON output of `args` (command first).
    pub fn go_json(&self, args: &[&str]) -> serde_json::Value {
        go::go_json(&self.graph(), &self.run(), self.driver, args)
    }

    /// `podman`, `buildah` (or another tool taking `--root`/`--runroot`/`--storage-driver`)
    /// on this store, with its own state kept inside the scratch directory and a
    /// `storage.conf` naming this store (not the machine's).
    pub fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let conf = self.path().join("storage.conf");
        std::fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"{}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                self.driver,
                self.graph().display(),
                self.run().display()
            ),
        )
        .unwrap();
        let mut command = Command::new(tool);
        command
            .arg("--root")
            .arg(self.graph())
            .arg("--runroot")
            .arg(self.run())
            .arg("--storage-driver")
            .arg(self.driver);
        if tool == "podman" {
            command
                .args(["--events-backend", "none", "--cgroup-manager", "cgroupfs"])
                .arg("--tmpdir")
                .arg(self.path().join("podman-tmp"));
        }
        command
            .args(args)
            // No storage.conf or registries of the machine: only what the arguments say.
            .env("CONTAINERS_STORAGE_CONF", &conf)
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("TMPDIR", self.path());
        run(command)
    }

    /// [`Scratch::tool`], requiring success; returns standard output.
    pub fn tool_ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.tool(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `skopeo`'s name for an image of this store.
    pub fn skopeo_ref(&self, image: &str) -> String {
        format!(
            "containers-storage:[{}@{}+{}]{}",
            self.driver,
            self.graph().display(),
            self.run().display(),
            image
        )
    }
}

/// Runs `command` with piped output, bounded by [`TOOL_TIMEOUT`].
pub fn run(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    layerstore_testsupport::process::wait_bounded(child, &format!("{command:?}"), TOOL_TIMEOUT)
}

/// A tarball of `files` (path, contents), mode 0644, owned by 0:0.
pub fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    let owned: Vec<(&str, &[u8], u32)> = files.iter().map(|&(p, c)| (p, c, 0)).collect();
    tarball_owned(&owned)
}

/// A tarball of `files` (path, contents, owner used as UID and GID), mode 0644.
pub fn tarball_owned(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents, owner) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_uid(u64::from(*owner));
        header.set_gid(u64::from(*owner));
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Creates a layer on `parent` holding `files` through the Store.
pub fn layer(store: &Store, parent: Option<&str>, files: &[(&str, &[u8])]) -> String {
    let mut options = LayerOptions::new();
    options.parent = parent.map(str::to_owned);
    let tar = tarball(files);
    let (layer, _) = store
        .put_layer(&options, Default::default(), Some(&mut &tar[..]))
        .expect("put a layer");
    layer.id
}

/// Requires that the store is whole, whoever wrote it: every image's top and mapped layers
/// and every container's layer exist in some layer store, no layer is marked pending, and
/// the layer store's own check finds nothing (every diff rebuilds to its digest).
pub fn assert_whole(store: &Store) {
    let layers: HashSet<String> = store.layers().unwrap().into_iter().map(|l| l.id).collect();
    for image in store.images().unwrap() {
        for layer in std::iter::once(&image.top_layer)
            .chain(&image.mapped_top_layers)
            .filter(|l| !l.is_empty())
        {
            assert!(
                layers.contains(layer),
                "image {} points at missing layer {layer}",
                image.id
            );
        }
    }
    for container in store.containers().unwrap() {
        assert!(
            layers.contains(&container.layer_id),
            "container {} points at missing layer {}",
            container.id,
            container.layer_id
        );
    }
    assert_eq!(store.pending_layers().unwrap(), []);
    // The layer store's check knows only its own layers: a parent in an additional store
    // is "missing" to it.
    let report = store.layer_store().check(&CheckOptions::default()).unwrap();
    let problems: Vec<_> = report
        .problems
        .iter()
        .filter(|p| !matches!(p, Problem::MissingParent { parent, .. } if layers.contains(parent)))
        .collect();
    assert!(problems.is_empty(), "check: {report:?}");
}

/// The IDs of `items` (JSON records), in order.
pub fn ids(items: &serde_json::Value) -> Vec<String> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The sorted IDs of what the Go tool lists with `what` (`layers`, `images`, `containers`).
pub fn go_ids(scratch: &Scratch, what: &str) -> Vec<String> {
    let mut ids = ids(&scratch.go_json(&[what]));
    ids.sort();
    ids
}

/// The sorted IDs of `items`.
pub fn sorted<T>(items: impl IntoIterator<Item = T>, id: impl Fn(&T) -> &str) -> Vec<String> {
    let mut ids: Vec<String> = items.into_iter().map(|i| id(&i).to_owned()).collect();
    ids.sort();
    ids
}

/// Creates an image podman can use on the layers `layers` (bottom first, each made from a
/// tarball so its diff digest is recorded), as c/image writes one: the ID is the config's
/// digest, big data holds the config (under its digest) and the OCI manifest (under
/// `manifest` and `manifest-<digest>`).
pub fn podman_image(store: &Store, name: &str, layers: &[&str]) -> layerstore::Image {
    let records: Vec<layerstore::Layer> = layers.iter().map(|l| store.layer(l).unwrap()).collect();
    let diff_ids: Vec<String> = records
        .iter()
        .map(|l| {
            l.uncompressed_digest
                .clone()
                .expect("a diff digest")
                .as_str()
                .to_owned()
        })
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"], "Labels": {"name": name}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_digest = layerstore_recordstore::canonical_digest(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.as_str(),
            "size": config.len(),
        },
        "layers": records.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": l.compressed_digest.as_ref().unwrap().as_str(),
            "size": l.compressed_size,
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let manifest_digest = layerstore_recordstore::canonical_digest(manifest.as_bytes());
    let image = store
        .create_image(layerstore::NewImage {
            id: Some(config_digest.hex().to_owned()),
            names: vec![format!("localhost/{name}:latest")],
            top_layer: records.last().unwrap().id.clone(),
            ..layerstore::NewImage::default()
        })
        .unwrap();
    let digester = |d: &[u8]| Ok(layerstore_recordstore::canonical_digest(d));
    for (key, data) in [
        (config_digest.as_str().to_owned(), config.as_bytes()),
        (format!("manifest-{manifest_digest}"), manifest.as_bytes()),
        ("manifest".to_owned(), manifest.as_bytes()),
    ] {
        store
            .set_image_big_data(&image.id, &key, data, Some(&digester))
            .unwrap();
    }
    store.image(&image.id).unwrap()
}
