//! zstd:chunked partial pulls from a real registry: images recompressed by skopeo
//! (`--dest-compress-format zstd:chunked`), pulled through a small proxy in this file that
//! counts the bytes the registry served (and can drop the requests' Range headers). A second
//! image sharing most files with one already pulled fetches only what is missing and gives
//! the layers a full pull gives (ours, and podman's); a damaged blob fails cleanly; a
//! damaged TOC or a registry that ignores ranges falls back to the full pull.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use layerstore::Store;
use layerstore_layers::chunked::TOC_BIG_DATA;
use layerstore_model::Layer;
use layerstore_pull::sample::{SampleCompression, SampleImage};
use layerstore_pull::{
    ImageReference, PullOptions, PullReport, TransportOptions, open_source, pull_into_store,
};
use layerstore_testsupport::registry::{Registry, RegistryAuth};
use layerstore_testsupport::{Capability, require_or_skip};
use sha2::{Digest as _, Sha256};

use crate::common::*;
use crate::registry::options;
use crate::store::{layer_fields, open_store, podman, sorted_layers};

/// Forwards to a registry, counting the bytes of its answers; drops `Range` headers when
/// `strip_ranges`.
struct CountingProxy {
    host: String,
    served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    fn start(upstream: &str, strip_ranges: bool) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let served = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, served2, stop2) = (upstream.to_owned(), served.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect(&upstream).unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || forward_requests(c2, s2, strip_ranges));
                let served = served2.clone();
                std::thread::spawn(move || forward_responses(server, client, &served));
            }
        });
        CountingProxy { host, served, stop }
    }

    /// Bytes served since the last call.
    fn take_served(&self) -> u64 {
        self.served.swap(0, Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn forward_requests(mut client: TcpStream, mut server: TcpStream, strip_ranges: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut bytes = buf[..n].to_vec();
        if strip_ranges {
            // Requests without bodies, one per read here: drop the header line.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let kept: Vec<&str> = text
                .split("\r\n")
                .filter(|line| !line.to_ascii_lowercase().starts_with("range:"))
                .collect();
            bytes = kept.join("\r\n").into_bytes();
        }
        if server.write_all(&bytes).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

fn forward_responses(mut server: TcpStream, mut client: TcpStream, served: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        served.fetch_add(n as u64, Ordering::SeqCst);
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

/// A base layer of `files` (name, content) with the Rust tar writer (no padding past the
/// end-of-archive blocks, so skopeo's zstd:chunked stream keeps the DiffID; see the crate
/// docs).
fn layer_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_mtime(1_704_067_200);
    dir.set_size(0);
    builder
        .append_data(&mut dir, "data/", std::io::empty())
        .unwrap();
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(1_704_067_200);
        header.set_size(content.len() as u64);
        builder
            .append_data(&mut header, name, content.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// Six 96 KiB files and a small one; `variant` 1 replaces the sixth and the small one.
fn files(variant: u64) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = (0..6u64)
        .map(|i| {
            let seed = if i == 5 { 100 + variant } else { i };
            (
                format!("data/big{i}.bin"),
                layerstore_testsupport::incompressible(seed, 96 << 10),
            )
        })
        .collect();
    files.push((
        "data/version".into(),
        format!("variant {variant}\n").into_bytes(),
    ));
    files
}

/// `skopeo copy --dest-compress-format zstd:chunked` of an OCI layout to `dest`.
fn copy_chunked(layout: &Path, dest: &str) {
    run(Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-compress-format",
            "zstd:chunked",
        ])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(dest));
}

/// A registry holding `a:v1` and `b:v1` as zstd:chunked: two images (the sample's two layers
/// on different bases) whose base layers share five of their six big files.
fn registry_with_chunked_images(dir: &Path) -> Registry {
    let registry = Registry::start(RegistryAuth::Anonymous).unwrap();
    for (name, variant) in [("a", 0), ("b", 1)] {
        let image = SampleImage::new(&layer_tar(&files(variant)), SampleCompression::Gzip).unwrap();
        let layout = dir.join(name);
        write_layout(&image, &layout, "v1");
        copy_chunked(&layout, &format!("docker://{}/{name}:v1", registry.host()));
    }
    registry
}

fn pull_from(store: &Store, reference: &str) -> layerstore_pull::Result<PullReport> {
    let source = open_source(
        &reference.parse::<ImageReference>().unwrap(),
        &TransportOptions {
            registry: options(None),
        },
    )?;
    pull_into_store(store, source.as_ref(), &PullOptions::default())
}

fn layer_by_id(store: &Store, id: &str) -> Layer {
    store
        .layers()
        .unwrap()
        .into_iter()
        .find(|l| l.id == id)
        .unwrap()
}

fn uncompressed_diff(store: &Store, id: &str) -> Vec<u8> {
    let mut diff = Vec::new();
    store
        .diff(
            None,
            id,
            &layerstore::DiffOptions {
                compression: Some(layerstore_model::Compression::None),
            },
            &mut diff,
        )
        .unwrap();
    diff
}

/// The size of each layer blob of `repo_tag`, from its manifest.
fn blob_sizes(registry: &Registry, repo_tag: &str) -> Vec<u64> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&registry.skopeo_inspect(repo_tag, true).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect()
}

/// A copy of `b:v1` as an OCI layout whose manifest has no annotations: the same blobs,
/// pulled whole.
fn unannotated_layout(registry: &Registry, dir: &Path) -> std::path::PathBuf {
    let layout = dir.join("b-plain");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/b:v1", registry.host()))
        .arg(format!("oci:{}:v1", layout.display())));
    strip_annotations(&layout);
    layout
}

/// Removes the layers' annotations from the manifest of `layout`: no TOC is announced.
fn strip_annotations(layout: &Path) {
    edit_manifest(layout, |manifest| {
        for layer in manifest["layers"].as_array_mut().unwrap() {
            layer.as_object_mut().unwrap().remove("annotations");
        }
    });
}

fn blob_path(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = format!("sha256:{:x}", Sha256::digest(bytes));
    std::fs::write(blob_path(layout, &digest), bytes).unwrap();
    digest
}

/// Rewrites the one manifest of `layout` with `edit`, and its index entry.
fn edit_manifest(layout: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(layout, &old)).unwrap()).unwrap();
    edit(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = put_blob(layout, &bytes);
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Damages the base layer's blob of the one image in `layout` with `damage` (given the
/// blob, the TOC's offset and length, and the TOC's JSON) and points the manifest at it,
/// keeping the annotations.
fn damage_base_blob(
    layout: &Path,
    damage: impl FnOnce(&mut Vec<u8>, u64, u64, &serde_json::Value),
) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(layout, manifest_digest)).unwrap())
            .unwrap();
    let layer = &manifest["layers"][0];
    let mut blob = std::fs::read(blob_path(layout, layer["digest"].as_str().unwrap())).unwrap();
    let position: Vec<u64> = layer["annotations"]["io.containers.zstd-chunked.manifest-position"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|n| n.parse().unwrap())
        .collect();
    let (offset, length) = (position[0], position[1]);
    let toc = zstd::decode_all(&blob[offset as usize..(offset + length) as usize]).unwrap();
    let toc: serde_json::Value = serde_json::from_slice(&toc).unwrap();
    damage(&mut blob, offset, length, &toc);
    let digest = put_blob(layout, &blob);
    edit_manifest(layout, |manifest| {
        manifest["layers"][0]["digest"] = digest.into();
    });
}

/// Pushes `layout` to the registry as `repo_tag`, blobs unchanged.
fn push_as_is(registry: &Registry, layout: &Path, repo_tag: &str) {
    run(Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/{repo_tag}", registry.host())));
}

#[test]
fn a_second_image_fetches_only_the_files_the_store_lacks_and_gives_a_full_pulls_layers() {
    require_or_skip!(
        Capability::Root,
        Capability::Registry,
        Capability::Skopeo,
        Capability::Podman
    );
    let dir = scratch();
    let registry = registry_with_chunked_images(dir.path());
    let proxy = CountingProxy::start(registry.host(), false);
    let ours_dir = scratch();
    let ours = open_store(ours_dir.path(), "vfs");

    pull_from(&ours, &format!("docker://{}/a:v1", proxy.host)).unwrap();
    let first = proxy.take_served();
    let report = pull_from(&ours, &format!("docker://{}/b:v1", proxy.host)).unwrap();
    let second = proxy.take_served();
    assert_eq!(report.layers_made.len(), 2, "b shares no layer ID with a");
    // skopeo announces no TOC for b's second layer (the registry had its blob, from a): only
    // the base is pulled partially.
    assert!(
        layer_by_id(&ours, &report.layers_made[0])
            .big_data_names
            .iter()
            .any(|n| n == TOC_BIG_DATA),
        "the base layer was pulled partially"
    );

    // The same image into an empty store: every file comes from the registry.
    let cold_dir = scratch();
    let cold = open_store(cold_dir.path(), "vfs");
    pull_from(&cold, &format!("docker://{}/b:v1", proxy.host)).unwrap();
    let cold_bytes = proxy.take_served();
    let blobs: u64 = blob_sizes(&registry, "b:v1").iter().sum();
    eprintln!(
        "zstd:chunked registry pull of b (blobs {blobs} bytes): {second} bytes served after a \
         (which took {first}), {cold_bytes} into an empty store"
    );
    // One 96 KiB file of six is new: what is served is that file, headers, TOCs, manifests.
    assert!(cold_bytes >= blobs, "{cold_bytes} < {blobs}");
    assert!(
        second < 96 * 1024 + blobs / 4,
        "{second} bytes served, blobs are {blobs}"
    );

    // The same blobs pulled whole (no TOC announced) give the same layers.
    let layout = unannotated_layout(&registry, dir.path());
    let full_dir = scratch();
    let full = open_store(full_dir.path(), "vfs");
    pull_from(&full, &format!("oci:{}:v1", layout.display())).unwrap();
    let full_layers = sorted_layers(&full);
    assert!(full_layers.iter().all(|l| l.big_data_names.is_empty()));
    let partial_layers: Vec<Layer> = full_layers
        .iter()
        .map(|l| layer_by_id(&ours, &l.id))
        .collect();
    assert_eq!(
        partial_layers.iter().map(layer_fields).collect::<Vec<_>>(),
        full_layers.iter().map(layer_fields).collect::<Vec<_>>()
    );
    for layer in &full_layers {
        assert!(
            uncompressed_diff(&ours, &layer.id) == uncompressed_diff(&full, &layer.id),
            "diff of layer {}",
            layer.id
        );
    }
    assert!(ours.check(&Default::default()).unwrap().is_clean());

    // podman pulls b whole (Debian's podman has partial pulls off): the same records; and it
    // uses the image we pulled.
    let theirs_dir = scratch();
    run(podman(theirs_dir.path(), "vfs").args([
        "pull",
        "--quiet",
        "--tls-verify=false",
        &format!("{}/b:v1", registry.host()),
    ]));
    let theirs = open_store(theirs_dir.path(), "vfs");
    assert_eq!(
        partial_layers.iter().map(layer_fields).collect::<Vec<_>>(),
        sorted_layers(&theirs)
            .iter()
            .map(layer_fields)
            .collect::<Vec<_>>()
    );
    let id = report.image.id.clone();
    let container = run(podman(ours_dir.path(), "vfs").args(["create", &id, "/bin/true"]));
    let container = container.trim();
    let mount = run(podman(ours_dir.path(), "vfs").args(["mount", container]));
    let mounted = Path::new(mount.trim());
    for (name, content) in files(1) {
        assert!(
            std::fs::read(mounted.join(&name)).unwrap() == content,
            "{name} as podman mounts it"
        );
    }
    run(podman(ours_dir.path(), "vfs").args(["umount", container]));
    run(podman(ours_dir.path(), "vfs").args(["rm", container]));
}

#[test]
fn a_damaged_file_fails_cleanly_and_a_damaged_toc_falls_back_to_a_full_pull() {
    require_or_skip!(Capability::Root, Capability::Registry, Capability::Skopeo);
    let dir = scratch();
    let registry = Registry::start(RegistryAuth::Anonymous).unwrap();
    let image = SampleImage::new(&layer_tar(&files(0)), SampleCompression::Gzip).unwrap();
    let plain = dir.path().join("plain");
    write_layout(&image, &plain, "v1");

    // A byte of a file's content changed: its TOC digest no longer matches (the partial pull
    // fails), nor does the DiffID (the full pull fails too).
    let file_damaged = dir.path().join("file-damaged");
    copy_chunked(&plain, &format!("oci:{}:v1", file_damaged.display()));
    damage_base_blob(&file_damaged, |blob, _, _, toc| {
        let entry = toc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str().unwrap().ends_with("big3.bin"))
            .unwrap();
        let (start, end) = (
            entry["offset"].as_u64().unwrap(),
            entry["endOffset"].as_u64().unwrap(),
        );
        blob[((start + end) / 2) as usize] ^= 0x55;
    });
    push_as_is(&registry, &file_damaged, "damaged:file");
    let store_dir = scratch();
    let store = open_store(store_dir.path(), "vfs");
    let location = format!("docker://{}/damaged:file", registry.host());
    let err = pull_from(&store, &location).unwrap_err();
    let text = layerstore_model::error_chain(&err);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file_damaged.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob_path(
            &file_damaged,
            index["manifests"][0]["digest"].as_str().unwrap(),
        ))
        .unwrap(),
    )
    .unwrap();
    let damaged_blob = manifest["layers"][0]["digest"].as_str().unwrap();
    assert!(
        text.contains(&location) && text.contains(damaged_blob),
        "{text}"
    );
    assert!(store.layers().unwrap().is_empty(), "no layer left");
    assert!(store.images().unwrap().is_empty(), "no image left");
    assert!(store.check(&Default::default()).unwrap().is_clean());
    let staging = store_dir.path().join("root/vfs/staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "no staging directory left"
    );

    // A byte of the TOC changed: it fails its checksum, and the blob (still the manifest's,
    // with the same stream) is pulled whole.
    let toc_damaged = dir.path().join("toc-damaged");
    copy_chunked(&plain, &format!("oci:{}:v1", toc_damaged.display()));
    damage_base_blob(&toc_damaged, |blob, offset, length, _| {
        blob[(offset + length / 2) as usize] ^= 0x55;
    });
    push_as_is(&registry, &toc_damaged, "damaged:toc");
    let report = pull_from(&store, &format!("docker://{}/damaged:toc", registry.host())).unwrap();
    let base = layer_by_id(&store, &report.layers_made[0]);
    assert!(base.big_data_names.is_empty(), "pulled whole");
    let mut expected = files(0);
    expected.sort();
    let diff = uncompressed_diff(&store, &base.id);
    let mut archive = tar::Archive::new(&diff[..]);
    let mut got: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            got.push((entry.path().unwrap().display().to_string(), content));
        }
    }
    got.sort();
    assert!(got == expected, "the layer's files");
    assert!(store.check(&Default::default()).unwrap().is_clean());
}

#[test]
fn a_registry_that_ignores_ranges_gets_a_full_pull() {
    require_or_skip!(Capability::Root, Capability::Registry, Capability::Skopeo);
    let dir = scratch();
    let registry = registry_with_chunked_images(dir.path());
    let proxy = CountingProxy::start(registry.host(), true);
    let store_dir = scratch();
    let store = open_store(store_dir.path(), "vfs");
    let report = pull_from(&store, &format!("docker://{}/b:v1", proxy.host)).unwrap();
    let served = proxy.take_served();
    let blobs: u64 = blob_sizes(&registry, "b:v1").iter().sum();
    eprintln!(
        "zstd:chunked pull from a registry that ignores ranges: {served} bytes, blobs {blobs}"
    );
    for id in &report.layers_made {
        assert!(
            layer_by_id(&store, id).big_data_names.is_empty(),
            "{id} pulled whole"
        );
    }
    // The whole blob once for the first range request, then the full pull.
    assert!(served < 3 * blobs + (64 << 10), "{served}");
    let base = &report.layers_made[0];
    assert_eq!(
        layer_by_id(&store, base).uncompressed_digest,
        Some(
            format!(
                "sha256:{:x}",
                Sha256::digest(uncompressed_diff(&store, base))
            )
            .parse()
            .unwrap()
        )
    );
    assert!(store.check(&Default::default()).unwrap().is_clean());
}

#[test]
fn layouts_are_pulled_partially_too_with_a_full_pulls_layers_on_vfs_and_overlay() {
    require_or_skip!(Capability::Root, Capability::Skopeo, Capability::Overlay);
    for driver in ["vfs", "overlay"] {
        layouts_pulled_partially(driver);
    }
}

fn layouts_pulled_partially(driver: &str) {
    let dir = scratch();
    let store_dir = scratch();
    let store = open_store(store_dir.path(), driver);
    for (name, variant) in [("a", 0), ("b", 1)] {
        let image = SampleImage::new(&layer_tar(&files(variant)), SampleCompression::Gzip).unwrap();
        let plain = dir.path().join(name);
        write_layout(&image, &plain, "v1");
        let chunked = dir.path().join(format!("{name}-chunked"));
        copy_chunked(&plain, &format!("oci:{}:v1", chunked.display()));
        let report = pull_from(&store, &format!("oci:{}:v1", chunked.display())).unwrap();
        for id in &report.layers_made {
            assert_eq!(layer_by_id(&store, id).big_data_names, [TOC_BIG_DATA]);
        }
        // The same blobs with no TOC announced, pulled whole into another store.
        let whole = dir.path().join(format!("{name}-whole"));
        run(Command::new("cp").arg("-a").arg(&chunked).arg(&whole));
        strip_annotations(&whole);
        let full_dir = scratch();
        let full = open_store(full_dir.path(), driver);
        pull_from(&full, &format!("oci:{}:v1", whole.display())).unwrap();
        let full_layers = sorted_layers(&full);
        assert_eq!(
            full_layers
                .iter()
                .map(|l| layer_fields(&layer_by_id(&store, &l.id)))
                .collect::<Vec<_>>(),
            full_layers.iter().map(layer_fields).collect::<Vec<_>>(),
            "{driver}: {name}"
        );
        for layer in &full_layers {
            assert!(
                uncompressed_diff(&store, &layer.id) == uncompressed_diff(&full, &layer.id),
                "{driver}: {name}: diff of layer {}",
                layer.id
            );
        }
        full.shutdown(true).unwrap();
    }
    assert!(store.check(&Default::default()).unwrap().is_clean());
    store.shutdown(true).unwrap();
}
