//! The `pull` section: `layerstore pull` against `podman pull` (from a registry on 127.0.0.1)
//! and against `skopeo copy` (from an OCI layout), each into a fresh store per run, and a
//! re-pull into the store that already holds every layer.
//!
//! The image has two gzip layers: rootfs.tar.gz as it is, and smallfiles.tar gzipped
//! (`gzip -6 -n`). The bench writes its OCI layout itself (blobs, config, manifest, index) and
//! keeps it in the fixtures directory as `pull-oci`, rebuilt when its diff IDs no longer match
//! the plain fixtures. A Debian `docker-registry` on a free port of 127.0.0.1, with its
//! config and storage on the run's tmpfs, gets the image by `skopeo copy` and is stopped when
//! the section ends.
//!
//! Every pull runs with `TMPDIR` on the tmpfs (containers/image stages big files there; its
//! default is /var/tmp, on the disk), and podman with its libpod `--tmpdir` inside the store,
//! so that a fresh store is a fresh podman. podman refuses a run root longer than 50
//! characters, so every tool's run root is on a small tmpfs of its own, `/run/lsbench-<pid>`
//! ([`ShortRunRoots`]). Between runs a store is unmounted (podman and skopeo leave the overlay
//! home bind-mounted) and removed, run root included.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::exec::{Sample, describe};
use super::fixtures::Fixture;
use super::report::{FsResults, Goal, Row, Tool, Versus};
use super::scratch;
use super::sections::{Broken, Context, record};
use super::store::{self, Store};
use super::sync;

/// The fixtures the image is made of: (the layer's source, its uncompressed tar).
const LAYER_SOURCES: [(&str, &str); 2] = [
    ("rootfs.tar.gz", "rootfs.tar"),
    ("smallfiles.tar", "smallfiles.tar"),
];
/// The fixtures `bench` has to make for this section.
pub(super) const FIXTURES: [&str; 2] = [LAYER_SOURCES[0].0, LAYER_SOURCES[1].0];
/// The layout's directory in the fixtures directory.
const LAYOUT_DIR: &str = "pull-oci";
/// The tag of the image in the layout.
const LAYOUT_TAG: &str = "latest";
/// Repository and tag in the registry, and the name the OCI pulls give the image.
const REPO_TAG: &str = "lsbench/pull:latest";
/// Goal of a pull: ours ÷ podman (skopeo).
const PULL_GOAL: f64 = 0.3;
/// Goal of a re-pull with every layer present, in seconds.
const REPULL_GOAL_SECS: f64 = 0.1;
/// Goal of our peak RSS during a pull.
const PULL_RSS_MIB: f64 = 128.0;
/// Where the short run roots go (podman: at most 50 characters).
const SHORT_RUN_PARENT: &str = "/run";
/// The prefix of their tmpfs's directory, followed by the bench's pid.
const SHORT_RUN_PREFIX: &str = "lsbench-";
/// How long the registry may take to listen.
const REGISTRY_START_LIMIT: Duration = Duration::from_secs(30);

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The image of the section, as its layout describes it.
#[derive(Debug, Clone, PartialEq)]
struct LayoutImage {
    /// The config digest's hex: the image ID every tool gives it.
    image_id: String,
    /// The layers' uncompressed digests (hex), base first.
    diff_hexes: Vec<String>,
    /// The layers' compressed digests (hex), base first.
    layer_hexes: Vec<String>,
    /// The layers' compressed sizes.
    layer_sizes: Vec<u64>,
}

/// The image architecture as Go (and so the OCI config) spells this machine's.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn descriptor(media_type: &str, hex: &str, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": size})
}

fn config_json(diff_hexes: &[String]) -> Vec<u8> {
    let diff_ids: Vec<String> = diff_hexes.iter().map(|h| format!("sha256:{h}")).collect();
    json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

fn manifest_json(config: (&str, u64), layers: &[(String, u64)]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(hex, size)| descriptor(OCI_LAYER_GZIP, hex, *size))
        .collect();
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config.0, config.1),
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

fn index_json(manifest: (&str, u64), tag: &str) -> Vec<u8> {
    let mut manifest = descriptor(OCI_MANIFEST, manifest.0, manifest.1);
    manifest["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    json!({"schemaVersion": 2, "manifests": [manifest]})
        .to_string()
        .into_bytes()
}

fn blob_path(layout: &Path, hex: &str) -> PathBuf {
    layout.join("blobs/sha256").join(hex)
}

fn put_blob(layout: &Path, bytes: &[u8]) -> Result<(String, u64), String> {
    let hex = layerstore_model::Sha256Hasher::digest(bytes)
        .hex()
        .to_string();
    let path = blob_path(layout, &hex);
    fs::write(&path, bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok((hex, bytes.len() as u64))
}

/// Moves the file `blob` into the layout under its digest.
fn put_blob_file(layout: &Path, blob: &Path) -> Result<(String, u64), String> {
    let hex = crate::tools::sha256_file(blob)?;
    let size = fs::metadata(blob)
        .map_err(|e| format!("{}: {e}", blob.display()))?
        .len();
    let path = blob_path(layout, &hex);
    fs::rename(blob, &path).map_err(|e| format!("rename {}: {e}", blob.display()))?;
    Ok((hex, size))
}

/// Writes an OCI layout at `layout` (which must not exist) of one image whose layers are the
/// gzip files `layers` (moved in), each with its uncompressed digest's hex, tagged `tag`.
fn write_layout(
    layout: &Path,
    layers: &[(PathBuf, String)],
    tag: &str,
) -> Result<LayoutImage, String> {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|e| format!("mkdir {}: {e}", blobs.display()))?;
    let mut descriptors = Vec::new();
    for (blob, _) in layers {
        descriptors.push(put_blob_file(layout, blob)?);
    }
    let diff_hexes: Vec<String> = layers.iter().map(|(_, hex)| hex.clone()).collect();
    let (config_hex, config_size) = put_blob(layout, &config_json(&diff_hexes))?;
    let manifest = manifest_json((&config_hex, config_size), &descriptors);
    let (manifest_hex, manifest_size) = put_blob(layout, &manifest)?;
    for (name, bytes) in [
        (
            "index.json",
            index_json((&manifest_hex, manifest_size), tag),
        ),
        (
            "oci-layout",
            json!({"imageLayoutVersion": "1.0.0"})
                .to_string()
                .into_bytes(),
        ),
    ] {
        let path = layout.join(name);
        fs::write(&path, bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    read_layout(layout)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The hex of a descriptor's `sha256:` digest.
fn digest_hex(descriptor: &Value, what: &str) -> Result<String, String> {
    descriptor["digest"]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .map(str::to_owned)
        .ok_or_else(|| format!("{what} has no sha256 digest"))
}

/// The image of the layout at `layout`: its index's first manifest.
fn read_layout(layout: &Path) -> Result<LayoutImage, String> {
    let index = read_json(&layout.join("index.json"))?;
    let manifest_hex = digest_hex(&index["manifests"][0], "the index's first manifest")?;
    let manifest = read_json(&blob_path(layout, &manifest_hex))?;
    let image_id = digest_hex(&manifest["config"], "the manifest's config")?;
    let config = read_json(&blob_path(layout, &image_id))?;
    let diff_hexes = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|d| d.as_str()?.strip_prefix("sha256:").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let layer_hexes = layers
        .iter()
        .map(|l| digest_hex(l, "a layer of the manifest"))
        .collect::<Result<_, _>>()?;
    let layer_sizes = layers.iter().filter_map(|l| l["size"].as_u64()).collect();
    Ok(LayoutImage {
        image_id,
        diff_hexes,
        layer_hexes,
        layer_sizes,
    })
}

/// The section's layout in the fixtures directory, written unless one with the same diff IDs
/// is there; returns its directory and image.
fn ensure_layout(ctx: &mut Context<'_>) -> Result<(PathBuf, LayoutImage), String> {
    let layout = ctx.opts.fixtures_dir.join(LAYOUT_DIR);
    let mut want = Vec::new();
    for (_, plain) in LAYER_SOURCES {
        want.push(ctx.plain_sha(plain)?);
    }
    if let Ok(image) = read_layout(&layout)
        && image.diff_hexes == want
    {
        return Ok((layout, image));
    }
    eprintln!(
        "bench: writing the pull image's OCI layout {}",
        layout.display()
    );
    let stage = ctx.opts.fixtures_dir.join(format!(".{LAYOUT_DIR}.stage"));
    store::remove_tree(&stage)?;
    fs::create_dir_all(&stage).map_err(|e| format!("mkdir {}: {e}", stage.display()))?;
    let mut layers = Vec::new();
    for (i, ((source, plain), diff_hex)) in LAYER_SOURCES.iter().zip(want).enumerate() {
        let blob = stage.join(format!("layer-{i}.gz"));
        if source == plain {
            crate::tools::compress(&["gzip", "-6", "-n", "-c"], &ctx.fixture(plain), &blob)?;
        } else {
            fs::copy(ctx.fixture(source), &blob)
                .map_err(|e| format!("copy {source} to {}: {e}", blob.display()))?;
        }
        layers.push((blob, diff_hex));
    }
    let built = stage.join("layout");
    write_layout(&built, &layers, LAYOUT_TAG)?;
    store::remove_tree(&layout)?;
    fs::rename(&built, &layout).map_err(|e| format!("rename {}: {e}", built.display()))?;
    store::remove_tree(&stage)?;
    let image = read_layout(&layout)?;
    Ok((layout, image))
}

/// A Debian `docker-registry` (distribution) on 127.0.0.1, plain HTTP, no auth, with its
/// config and storage under `dir`; killed and removed on drop.
struct LocalRegistry {
    dir: PathBuf,
    host: String,
    child: Child,
}

/// The registry's configuration: storage under `storage`, listening on `host`, quiet.
fn registry_config(storage: &Path, host: &str) -> String {
    format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
        storage.display()
    )
}

impl LocalRegistry {
    /// Starts the registry on a free port; a port taken before the registry bound it is
    /// retried with another (a failed attempt's `dir` goes with its drop and is made anew).
    fn start(dir: &Path) -> Result<LocalRegistry, String> {
        layerstore_testsupport::registry::on_free_port(|port| {
            LocalRegistry::start_on(dir, port).map_err(std::io::Error::other)
        })
        .map_err(|e| e.to_string())
    }

    fn start_on(dir: &Path, port: u16) -> Result<LocalRegistry, String> {
        let storage = dir.join("storage");
        fs::create_dir_all(&storage).map_err(|e| format!("mkdir {}: {e}", storage.display()))?;
        let host = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        fs::write(&config, registry_config(&storage, &host))
            .map_err(|e| format!("write {}: {e}", config.display()))?;
        let log_path = dir.join("registry.log");
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log_too = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too)
            .spawn()
            .map_err(|e| {
                format!("cannot run docker-registry (apt-get install docker-registry): {e}")
            })?;
        let mut registry = LocalRegistry {
            dir: dir.to_path_buf(),
            host,
            child,
        };
        registry.wait_listening()?;
        Ok(registry)
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + REGISTRY_START_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
                return Err(format!("docker-registry exited ({status}): {}", log.trim()));
            }
            if TcpStream::connect(&self.host).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "docker-registry did not listen on {} within {REGISTRY_START_LIMIT:?}",
                    self.host
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `docker://HOST/REPO:TAG` of this registry.
    fn reference(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.host)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        // Our own child: killed by its handle, then reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(e) = store::remove_tree(&self.dir) {
            eprintln!("bench: {e}");
        }
    }
}

/// A small tmpfs at `/run/lsbench-<pid>` for the stores' run roots (podman wants a run root
/// of at most 50 characters; the scratch tmpfs is deeper than that); unmounted and removed on
/// drop. One that an interrupted run left (its pid gone) is removed first.
struct ShortRunRoots {
    dir: PathBuf,
}

impl ShortRunRoots {
    fn mount() -> Result<ShortRunRoots, String> {
        let parent = Path::new(SHORT_RUN_PARENT);
        scratch::remove_stale(parent, SHORT_RUN_PREFIX);
        let dir = parent.join(format!("{SHORT_RUN_PREFIX}{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let roots = ShortRunRoots { dir };
        scratch::mount_tmpfs(&roots.dir, c"size=256m,mode=0755")?;
        Ok(roots)
    }

    /// The run root of the store called `name`.
    fn run_root(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for ShortRunRoots {
    fn drop(&mut self) {
        if let Err(e) = store::remove_tree(&self.dir) {
            eprintln!("bench: {e}");
        }
    }
}

/// `skopeo copy` of the layout into the registry (plain HTTP).
fn push_command(layout_ref: &str, registry_ref: &str) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(layout_ref)
        .arg(registry_ref);
    cmd
}

/// podman's libpod state (`--tmpdir`) for the store `base/graph`: `base/libpod-tmp`, so it
/// goes with the store.
fn libpod_tmp(store: &Store) -> PathBuf {
    store
        .graph
        .parent()
        .unwrap_or(&store.graph)
        .join("libpod-tmp")
}

/// `layerstore ... pull --quiet [--tls-verify=false] SOURCE [NAME]`.
fn ours_pull(ours: &Path, store: &Store, source: &str, name: Option<&str>, tmp: &Path) -> Command {
    let mut cmd = store.command(ours);
    cmd.args(["pull", "--quiet"]);
    if source.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
    }
    cmd.arg(source).args(name).env("TMPDIR", tmp);
    cmd
}

/// `podman --root G --runroot R --storage-driver D --tmpdir T pull --quiet
/// --tls-verify=false SOURCE`.
fn podman_pull(store: &Store, source: &str, tmp: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(&store.graph)
        .arg("--runroot")
        .arg(&store.run)
        .arg("--storage-driver")
        .arg(&store.driver)
        .arg("--tmpdir")
        .arg(libpod_tmp(store))
        .args(["pull", "--quiet", "--tls-verify=false"])
        .arg(source)
        .env("TMPDIR", tmp);
    cmd
}

/// `skopeo copy --quiet SOURCE containers-storage:[D@G+R]NAME`.
fn skopeo_copy(store: &Store, source: &str, name: &str, tmp: &Path) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet"])
        .arg(source)
        .arg(format!(
            "containers-storage:[{}@{}+{}]{name}",
            store.driver,
            store.graph.display(),
            store.run.display()
        ))
        .env("TMPDIR", tmp);
    cmd
}

/// The baseline key of the physical reference: GNU tar extracting both layer blobs.
const UNTAR_KEY: &str = "tar-xzf/pull-image";

/// `sh -c 'tar -xzf L1 -C T && tar -xzf L2 -C T'`: the image's layers extracted in order into
/// one tree, the physical reference of a pull (no network, no digests, no records).
fn untar_command(blobs: &[PathBuf], tree: &Path) -> Command {
    let mut script = String::from("set -e");
    for i in 0..blobs.len() {
        script.push_str(&format!("; tar -xzf \"${}\" -C \"$0\"", i + 1));
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg(tree).args(blobs);
    cmd
}

/// Times [`untar_command`] on this filesystem, `--runs` times, into a fresh tree each run.
fn untar_baseline(
    ctx: &Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
    layout: &Path,
    image: &LayoutImage,
) -> Result<(), String> {
    let tree = fs_root.join("pull-baseline-tree");
    let blobs: Vec<PathBuf> = image
        .layer_hexes
        .iter()
        .map(|hex| blob_path(layout, hex))
        .collect();
    for _ in 0..ctx.opts.runs {
        store::remove_tree(&tree)?;
        fs::create_dir_all(&tree).map_err(|e| format!("mkdir {}: {e}", tree.display()))?;
        let sample = ctx
            .timed_creating(&mut untar_command(&blobs, &tree), &[])?
            .sample;
        results
            .baselines
            .entry(UNTAR_KEY.to_owned())
            .or_default()
            .push(sample);
    }
    store::remove_tree(&tree)
}

/// Where a timed pull takes the image from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The registry: ours against `podman pull`.
    Registry,
    /// The OCI layout: ours against `skopeo copy`.
    Layout,
}

/// What `tool` runs to pull from `source` into `store`, and how the report names it.
fn pull_command(
    source: Source,
    tool: Tool,
    ours: &Path,
    store: &Store,
    sources: &Sources,
) -> (&'static str, Command) {
    match (source, tool) {
        (Source::Registry, Tool::Ours) => (
            "layerstore pull docker://",
            ours_pull(ours, store, &sources.registry, None, &sources.tmp),
        ),
        (Source::Registry, Tool::Go) => (
            "podman pull",
            podman_pull(store, &sources.registry, &sources.tmp),
        ),
        (Source::Layout, Tool::Ours) => (
            "layerstore pull oci:",
            ours_pull(ours, store, &sources.layout, Some(REPO_TAG), &sources.tmp),
        ),
        (Source::Layout, Tool::Go) => (
            "skopeo copy oci: containers-storage:",
            skopeo_copy(store, &sources.layout, REPO_TAG, &sources.tmp),
        ),
    }
}

/// Whether the store holds the image (its directory in `<driver>-images`, which every tool
/// creates when it commits the image record).
fn holds_image(store: &Store, image_id: &str) -> bool {
    store
        .graph
        .join(format!("{}-images", store.driver))
        .join(image_id)
        .is_dir()
}

/// A fresh store at `base` with its run root at `run`: whatever a run left in either
/// unmounted and removed.
fn fresh_store(base: &Path, run: &Path, driver: &str) -> Result<Store, String> {
    store::remove_tree(base)?;
    store::remove_tree(run)?;
    Ok(Store {
        graph: base.join("graph"),
        run: run.to_path_buf(),
        driver: driver.to_owned(),
    })
}

/// Runs one pull, timed, and checks the image arrived. `creating`: a pull that writes its
/// layers' files, after the filesystem is settled for that ([`Context::timed_creating`],
/// reading back the OCI layout too); else (a re-pull) after a sync.
fn timed_pull(
    ctx: &Context<'_>,
    cmd: &mut Command,
    store: &Store,
    image_id: &str,
    creating: Option<&Path>,
) -> Result<Sample, String> {
    let done = match creating {
        Some(layout_dir) => ctx.timed_creating(cmd, &[layout_dir])?,
        None => {
            sync();
            ctx.runner.timed(cmd)?
        }
    };
    if holds_image(store, image_id) {
        Ok(done.sample)
    } else {
        Err(format!(
            "`{}` succeeded but {} holds no image {image_id}",
            describe(cmd),
            store.graph.display()
        ))
    }
}

/// The row's input, short enough for the chart's label column: the image's size compressed
/// (its gzip layers) and not (their tars).
fn describe_input(image: &LayoutImage, plain_bytes: u64) -> String {
    let compressed: u64 = image.layer_sizes.iter().sum();
    format!(
        "{:.0} MB gzip, {:.0} MB tar",
        compressed as f64 / 1e6,
        plain_bytes as f64 / 1e6
    )
}

/// Where the section's images come from.
struct Sources {
    registry: String,
    layout: String,
    /// The OCI layout's directory (on the fixtures' filesystem).
    layout_dir: PathBuf,
    tmp: PathBuf,
}

/// Runs the section: the image, the registry, then the rows of every driver.
pub(super) fn section_pull(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
) -> Result<(), String> {
    for name in FIXTURES {
        if let Some((_, reason)) = ctx
            .unavailable
            .iter()
            .find(|(f, _)| Fixture::named(name) == Some(*f))
        {
            results
                .notes
                .push(format!("pull section skipped: {name}: {reason}"));
            return Ok(());
        }
    }
    let (layout, image) = ensure_layout(ctx)?;
    let mut plain_bytes = 0;
    for (_, plain) in LAYER_SOURCES {
        let path = ctx.fixture(plain);
        plain_bytes += fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
    }
    let input = describe_input(&image, plain_bytes);
    let registry = LocalRegistry::start(&ctx.scratch.join("registry"))?;
    let layout_ref = format!("oci:{}:{LAYOUT_TAG}", layout.display());
    let registry_ref = registry.reference(REPO_TAG);
    ctx.runner
        .run(&mut push_command(&layout_ref, &registry_ref))?;
    let sources = Sources {
        registry: registry_ref,
        layout: layout_ref,
        layout_dir: layout.clone(),
        tmp: ctx.scratch.join("pull-tmp"),
    };
    fs::create_dir_all(&sources.tmp)
        .map_err(|e| format!("mkdir {}: {e}", sources.tmp.display()))?;
    untar_baseline(ctx, fs_root, results, &layout, &image)?;
    let run_roots = ShortRunRoots::mount()?;
    let drivers = ctx.opts.drivers.clone();
    for driver in &drivers {
        pull_rows(
            ctx, fs_root, &run_roots, results, driver, &image, &input, &sources,
        )?;
    }
    drop(run_roots);
    drop(registry);
    store::remove_tree(&sources.tmp)
}

#[allow(clippy::too_many_arguments)]
fn pull_rows(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    run_roots: &ShortRunRoots,
    results: &mut FsResults,
    driver: &str,
    image: &LayoutImage,
    input: &str,
    sources: &Sources,
) -> Result<(), String> {
    let row = |op: &str, versus: Versus, goals: Vec<Goal>| {
        let mut r = Row::new("pull", op, driver, input);
        r.versus = versus;
        r.goals = goals;
        r
    };
    let reference = Some((
        "tar -xzf of both layers".to_owned(),
        vec![UNTAR_KEY.to_owned()],
    ));
    let mut from_registry = row(
        "pull docker://",
        Versus::Podman,
        vec![Goal::VsGo(PULL_GOAL), Goal::PeakRssMib(PULL_RSS_MIB)],
    );
    from_registry.reference = reference.clone();
    let mut again = row(
        "re-pull, layers present",
        Versus::Podman,
        vec![Goal::MaxSecs(REPULL_GOAL_SECS)],
    );
    let mut from_layout = row(
        "pull oci:",
        Versus::Skopeo,
        vec![Goal::VsGo(PULL_GOAL), Goal::PeakRssMib(PULL_RSS_MIB)],
    );
    from_layout.reference = reference;
    let bases = [
        fs_root.join(format!("stores/pull-ours-{driver}")),
        fs_root.join(format!("stores/pull-other-{driver}")),
    ];
    let runs = [
        run_roots.run_root(&format!("ours-{driver}")),
        run_roots.run_root(&format!("other-{driver}")),
    ];
    let ours = ctx.tool(Tool::Ours).to_path_buf();
    let id = image.image_id.as_str();
    let mut broken = [Broken::default(), Broken::default()];
    for run in 0..ctx.opts.runs {
        for (source, broken) in [Source::Registry, Source::Layout]
            .into_iter()
            .zip(&mut broken)
        {
            for tool in Tool::order(run) {
                if broken.is(tool) {
                    continue;
                }
                let s = fresh_store(&bases[tool.index()], &runs[tool.index()], driver)?;
                let (what, mut cmd) = pull_command(source, tool, &ours, &s, sources);
                eprintln!("bench: {what} {driver} run {}", run + 1);
                match timed_pull(ctx, &mut cmd, &s, id, Some(&sources.layout_dir)) {
                    Ok(sample) => match source {
                        Source::Registry => record(&mut from_registry, tool, sample),
                        Source::Layout => record(&mut from_layout, tool, sample),
                    },
                    Err(e) => {
                        broken.mark(tool, results, &format!("{what} ({driver})"), &e);
                        continue;
                    }
                }
                if source == Source::Registry {
                    // Again, into the store that now holds every layer.
                    match timed_pull(ctx, &mut cmd, &s, id, None) {
                        Ok(sample) => record(&mut again, tool, sample),
                        Err(e) => broken.mark(tool, results, &format!("re-{what} ({driver})"), &e),
                    }
                }
            }
        }
    }
    for dir in bases.iter().chain(&runs) {
        store::remove_tree(dir)?;
    }
    results.rows.extend([from_registry, again, from_layout]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::at(Path::new("/s/pull-ours-overlay"), "overlay")
    }

    #[test]
    fn command_lines_point_every_tool_at_its_store_and_the_tmpfs() {
        let tmp = Path::new("/t/pull-tmp");
        let ours = ours_pull(
            Path::new("/bin/layerstore"),
            &store(),
            "docker://127.0.0.1:5000/lsbench/pull:latest",
            None,
            tmp,
        );
        assert_eq!(
            describe(&ours),
            "/bin/layerstore --graph /s/pull-ours-overlay/graph --run /s/pull-ours-overlay/run \
             --storage-driver overlay pull --quiet --tls-verify=false \
             docker://127.0.0.1:5000/lsbench/pull:latest"
        );
        let from_layout = ours_pull(
            Path::new("/bin/layerstore"),
            &store(),
            "oci:/f/pull-oci:latest",
            Some(REPO_TAG),
            tmp,
        );
        assert!(
            describe(&from_layout)
                .ends_with("pull --quiet oci:/f/pull-oci:latest lsbench/pull:latest"),
            "{}",
            describe(&from_layout)
        );
        let podman = podman_pull(&store(), "docker://127.0.0.1:5000/lsbench/pull:latest", tmp);
        assert_eq!(
            describe(&podman),
            "podman --root /s/pull-ours-overlay/graph --runroot /s/pull-ours-overlay/run \
             --storage-driver overlay --tmpdir /s/pull-ours-overlay/libpod-tmp pull --quiet \
             --tls-verify=false docker://127.0.0.1:5000/lsbench/pull:latest"
        );
        let skopeo = skopeo_copy(&store(), "oci:/f/pull-oci:latest", REPO_TAG, tmp);
        assert_eq!(
            describe(&skopeo),
            "skopeo copy --quiet oci:/f/pull-oci:latest \
             containers-storage:[overlay@/s/pull-ours-overlay/graph+/s/pull-ours-overlay/run]lsbench/pull:latest"
        );
        for cmd in [&ours, &from_layout, &podman, &skopeo] {
            let env: Vec<_> = cmd.get_envs().collect();
            assert_eq!(
                env,
                [(std::ffi::OsStr::new("TMPDIR"), Some(tmp.as_os_str()))],
                "{}",
                describe(cmd)
            );
        }
        assert_eq!(
            describe(&push_command("oci:/f/l:latest", "docker://h:1/r:t")),
            "skopeo copy --quiet --dest-tls-verify=false oci:/f/l:latest docker://h:1/r:t"
        );
    }

    #[test]
    fn the_reference_extracts_every_layer_in_order_into_one_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut blobs = Vec::new();
        for (i, (name, content)) in [("a", "base"), ("a", "upper")].iter().enumerate() {
            let src = dir.path().join(format!("src{i}"));
            fs::create_dir_all(&src).expect("mkdir");
            fs::write(src.join(name), content).expect("write");
            let blob = dir.path().join(format!("layer{i}.tar.gz"));
            crate::tools::run(
                Command::new("tar")
                    .arg("-czf")
                    .arg(&blob)
                    .arg("-C")
                    .arg(&src)
                    .arg("."),
            )
            .expect("tar");
            blobs.push(blob);
        }
        let tree = dir.path().join("tree with space");
        fs::create_dir_all(&tree).expect("mkdir");
        let mut cmd = untar_command(&blobs, &tree);
        crate::tools::run(&mut cmd).expect("untar");
        // The upper layer was extracted last.
        assert_eq!(fs::read_to_string(tree.join("a")).expect("a"), "upper");
    }

    #[test]
    fn run_roots_are_short_enough_for_podman() {
        // The largest pid Linux hands out (2^22) and the longest store name.
        let roots = ShortRunRoots {
            dir: Path::new(SHORT_RUN_PARENT).join(format!("{SHORT_RUN_PREFIX}4194304")),
        };
        let longest = roots.run_root("other-overlay");
        // Not mounted here: nothing to unmount or remove.
        std::mem::forget(roots);
        assert!(longest.as_os_str().len() <= 50, "{}", longest.display());
    }

    #[test]
    fn registry_config_keeps_storage_and_address_where_asked() {
        let yml = registry_config(Path::new("/t/registry/storage"), "127.0.0.1:4321");
        assert!(
            yml.contains("rootdirectory: /t/registry/storage\n"),
            "{yml}"
        );
        assert!(yml.contains("addr: 127.0.0.1:4321\n"), "{yml}");
        assert!(yml.contains("accesslog:\n    disabled: true"), "{yml}");
    }

    #[test]
    fn a_written_layout_reads_back_as_the_same_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut layers = Vec::new();
        for (i, content) in [&b"base layer"[..], &b"second layer"[..]]
            .iter()
            .enumerate()
        {
            let blob = dir.path().join(format!("in-{i}.gz"));
            fs::write(&blob, content).expect("write");
            let diff = layerstore_model::Sha256Hasher::digest(format!("plain {i}").as_bytes())
                .hex()
                .to_string();
            layers.push((blob, diff));
        }
        let layout = dir.path().join("layout");
        let image = write_layout(&layout, &layers, "v1").expect("layout");
        assert_eq!(
            image.diff_hexes,
            layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()
        );
        assert_eq!(image.layer_sizes, vec![10, 12]);
        assert_eq!(
            image.layer_hexes[1],
            layerstore_model::Sha256Hasher::digest(b"second layer").hex()
        );
        // The image ID is the config blob's digest, and the blobs sit under their digests.
        let config = fs::read(blob_path(&layout, &image.image_id)).expect("config blob");
        assert_eq!(
            layerstore_model::Sha256Hasher::digest(&config).hex(),
            image.image_id
        );
        let config: Value = serde_json::from_slice(&config).expect("json");
        assert_eq!(config["architecture"], go_arch());
        assert_eq!(config["rootfs"]["type"], "layers");
        let base_hex = layerstore_model::Sha256Hasher::digest(b"base layer")
            .hex()
            .to_string();
        assert_eq!(
            fs::read(blob_path(&layout, &base_hex)).expect("layer blob"),
            b"base layer"
        );
        let index = read_json(&layout.join("index.json")).expect("index");
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
        assert_eq!(
            read_json(&layout.join("oci-layout")).expect("oci-layout")["imageLayoutVersion"],
            "1.0.0"
        );
        let manifest_hex = digest_hex(&index["manifests"][0], "index").expect("digest");
        let manifest = read_json(&blob_path(&layout, &manifest_hex)).expect("manifest");
        assert_eq!(manifest["layers"][1]["mediaType"], OCI_LAYER_GZIP);
        assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(describe_input(&image, 400_000_000), "0 MB gzip, 400 MB tar");
    }

    #[test]
    fn a_store_holds_an_image_once_its_image_directory_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::at(dir.path(), "vfs");
        assert!(!holds_image(&s, "abc"));
        fs::create_dir_all(s.graph.join("vfs-images/abc")).expect("mkdir");
        assert!(holds_image(&s, "abc"));
        assert!(!holds_image(&Store::at(dir.path(), "overlay"), "abc"));
    }
}
