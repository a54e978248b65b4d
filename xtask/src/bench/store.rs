//! Stores for the benchmarks: where they live, how a tool is pointed at one, synthetic stores
//! written directly (a flat store of many empty layers, a deep overlay chain), and removing them
//! with whatever the tools left mounted.
//!
//! Writing a 10,000-layer store through the CLI would take one process per layer, each
//! rewriting the whole `layers.json` (quadratic: ~15 minutes with the Go tool). Instead the
//! records are written with `layerstore-model` (Go's exact JSON) and the driver directories
//! are laid out as Go 1.43 lays them out (`containers-storage-layers.md` §6.2, §6.3), so both
//! tools read the same valid store.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_model::{
    Container, Image, Layer, encode_containers_json, encode_images_json, encode_layers_json,
    generate_id,
};

/// A layer store: graph root, run root and storage driver.
#[derive(Debug, Clone)]
pub struct Store {
    /// `--graph`.
    pub graph: PathBuf,
    /// `--run`.
    pub run: PathBuf,
    /// `--storage-driver`: `vfs` or `overlay`.
    pub driver: String,
}

impl Store {
    /// The store under `base` (`base/graph`, `base/run`).
    pub fn at(base: &Path, driver: &str) -> Store {
        Store {
            graph: base.join("graph"),
            run: base.join("run"),
            driver: driver.to_owned(),
        }
    }

    /// `tool --graph G --run R --storage-driver D`, ready for the sub-command's arguments.
    pub fn command(&self, tool: &Path) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg("--graph")
            .arg(&self.graph)
            .arg("--run")
            .arg(&self.run)
            .arg("--storage-driver")
            .arg(&self.driver);
        cmd
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| format!("mkdir {}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A 26-character overlay short link ID (alphabet `A-Z2-7`, as Go's base32 of random bytes).
fn overlay_link_id() -> Result<String, String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 26];
    rustix::rand::getrandom(&mut bytes[..], rustix::rand::GetRandomFlags::empty())
        .map_err(|e| format!("getrandom: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect())
}

/// Writes a store holding `layers` (records in order; a record's parent must come before it)
/// with empty driver directories for each, and no files in any layer.
fn write_store(store: &Store, layers: &[Layer]) -> Result<(), String> {
    let layers_dir = store.graph.join(format!("{}-layers", store.driver));
    mkdir(&layers_dir, 0o700)?;
    mkdir(&store.run, 0o700)?;
    match store.driver.as_str() {
        "vfs" => {
            let home = store.graph.join("vfs/dir");
            mkdir(&home, 0o700)?;
            for layer in layers {
                mkdir(&home.join(&layer.id), 0o555)?;
            }
        }
        "overlay" => {
            let home = store.graph.join("overlay");
            mkdir(&home.join("l"), 0o700)?;
            // id -> the `lower` value its children get: "l/<its link>[:<its lower>]".
            let mut lower_of_child = std::collections::HashMap::new();
            for layer in layers {
                let dir = home.join(&layer.id);
                mkdir(&dir, 0o700)?;
                mkdir(&dir.join("diff"), 0o555)?;
                mkdir(&dir.join("work"), 0o700)?;
                let link = overlay_link_id()?;
                write(&dir.join("link"), link.as_bytes())?;
                let target = format!("../{}/diff", layer.id);
                let link_path = home.join("l").join(&link);
                symlink(&target, &link_path)
                    .map_err(|e| format!("symlink {}: {e}", link_path.display()))?;
                let mut own = format!("l/{link}");
                match layer.parent() {
                    None => mkdir(&dir.join("empty"), 0o700)?,
                    Some(parent) => {
                        let lower: &String = lower_of_child.get(parent).ok_or_else(|| {
                            format!("parent {parent} of {} not written first", layer.id)
                        })?;
                        write(&dir.join("lower"), lower.as_bytes())?;
                        own = format!("{own}:{lower}");
                    }
                }
                lower_of_child.insert(layer.id.clone(), own);
            }
        }
        other => return Err(format!("no synthetic layout for driver {other}")),
    }
    let json = encode_layers_json(layers).map_err(|e| format!("layers.json: {e}"))?;
    write(&layers_dir.join("layers.json"), &json)
}

fn new_layer(parent: Option<&str>) -> Result<Layer, String> {
    let mut layer = Layer::new(generate_id().map_err(|e| format!("layer ID: {e}"))?);
    if let Some(parent) = parent {
        layer.parent = parent.to_owned();
    }
    Ok(layer)
}

/// Writes a store of `count` empty base layers; returns their IDs.
pub fn write_flat_store(store: &Store, count: usize) -> Result<Vec<String>, String> {
    let layers = (0..count)
        .map(|_| new_layer(None))
        .collect::<Result<Vec<_>, _>>()?;
    write_store(store, &layers)?;
    Ok(layers.into_iter().map(|l| l.id).collect())
}

/// Writes a chain of `depth` empty layers, each the child of the one before; returns their
/// IDs, base first.
pub fn write_chain_store(store: &Store, depth: usize) -> Result<Vec<String>, String> {
    let mut layers: Vec<Layer> = Vec::with_capacity(depth);
    for _ in 0..depth {
        let parent = layers.last().map(|l| l.id.clone());
        layers.push(new_layer(parent.as_deref())?);
    }
    write_store(store, &layers)?;
    Ok(layers.into_iter().map(|l| l.id).collect())
}

/// The IDs of a store written by [`write_image_store`].
#[derive(Debug, Clone, Default)]
pub struct ImageStoreIds {
    /// The one-layer images, in order; image `i` has container `containers[i]`.
    pub images: Vec<String>,
    /// One container per one-layer image, each on its own layer above the image's.
    pub containers: Vec<String>,
    /// The images whose top layer is a chain of `chain_len` layers (each its own chain).
    pub chain_images: Vec<String>,
}

/// Writes a whole store (layers, images, containers) as Go 1.43 lays it out: `images`
/// one-layer images named `localhost/lsbench-<i>:latest`, one container per image, and
/// `chains` more images whose top layers are chains of `chain_len` empty layers (for
/// `delete-image`, which removes the layers no one else uses).
pub fn write_image_store(
    store: &Store,
    images: usize,
    chains: usize,
    chain_len: usize,
) -> Result<ImageStoreIds, String> {
    let mut layers: Vec<Layer> = Vec::with_capacity(2 * images + chains * chain_len);
    let mut image_records: Vec<Image> = Vec::with_capacity(images + chains);
    let mut container_records: Vec<Container> = Vec::with_capacity(images);
    let mut ids = ImageStoreIds::default();
    let new_id = || generate_id().map_err(|e| format!("ID: {e}"));
    for i in 0..images {
        let base = new_layer(None)?;
        let rw = new_layer(Some(&base.id))?;
        let mut image = Image::new(new_id()?);
        image.top_layer = base.id.clone();
        image.names = vec![format!("localhost/lsbench-{i}:latest")];
        let container = Container::new(new_id()?, image.id.clone(), rw.id.clone());
        ids.images.push(image.id.clone());
        ids.containers.push(container.id.clone());
        layers.extend([base, rw]);
        image_records.push(image);
        container_records.push(container);
    }
    for j in 0..chains {
        let mut parent: Option<String> = None;
        for _ in 0..chain_len {
            let layer = new_layer(parent.as_deref())?;
            parent = Some(layer.id.clone());
            layers.push(layer);
        }
        let mut image = Image::new(new_id()?);
        image.top_layer = parent.unwrap_or_default();
        image.names = vec![format!("localhost/lsbench-chain-{j}:latest")];
        ids.chain_images.push(image.id.clone());
        image_records.push(image);
    }
    write_store(store, &layers)?;
    let images_dir = store.graph.join(format!("{}-images", store.driver));
    mkdir(&images_dir, 0o700)?;
    let json = encode_images_json(&image_records).map_err(|e| format!("images.json: {e}"))?;
    write(&images_dir.join("images.json"), &json)?;
    let containers_dir = store.graph.join(format!("{}-containers", store.driver));
    mkdir(&containers_dir, 0o700)?;
    let json =
        encode_containers_json(&container_records).map_err(|e| format!("containers.json: {e}"))?;
    write(&containers_dir.join("containers.json"), &json)?;
    Ok(ids)
}

/// Mount points at or under `root`, deepest (most recently mounted) last.
fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_field(field)))
        .filter(|p| p.starts_with(root))
        .collect()
}

/// Whether something is mounted exactly at `path`.
pub fn is_mount_point(path: &Path) -> bool {
    !path.as_os_str().is_empty() && mounts_under(path).iter().any(|m| m == path)
}

/// `/proc/self/mountinfo` writes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts (lazily) everything mounted at or under `root`, newest first, except `root`
/// itself when `keep_root`; returns how many mounts were undone.
pub fn unmount_under(root: &Path, keep_root: bool) -> usize {
    let mut undone = 0;
    // A stacked mount hides the one below it: repeat until nothing is left under root.
    for _ in 0..8 {
        let mounts: Vec<PathBuf> = mounts_under(root)
            .into_iter()
            .filter(|m| !(keep_root && m == root))
            .collect();
        if mounts.is_empty() {
            break;
        }
        for m in mounts.iter().rev() {
            if rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH).is_ok() {
                undone += 1;
            }
        }
    }
    undone
}

/// Removes a store (or any tree under the bench root), unmounting what is mounted inside first.
pub fn remove_tree(path: &Path) -> Result<(), String> {
    unmount_under(path, false);
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("rm -rf {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layerstore_model::parse_layers_json;

    #[test]
    fn flat_vfs_store_has_records_and_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::at(dir.path(), "vfs");
        let ids = write_flat_store(&store, 50).expect("written");
        assert_eq!(ids.len(), 50);
        let json = fs::read(store.graph.join("vfs-layers/layers.json")).expect("layers.json");
        let layers = parse_layers_json(&json).expect("valid records");
        assert_eq!(layers.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), ids);
        assert!(layers.iter().all(|l| l.parent.is_empty()));
        for id in &ids {
            assert!(store.graph.join("vfs/dir").join(id).is_dir(), "{id}");
        }
    }

    #[test]
    fn overlay_chain_links_each_layer_to_its_lowers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::at(dir.path(), "overlay");
        let ids = write_chain_store(&store, 4).expect("written");
        let home = store.graph.join("overlay");
        let link = |id: &str| fs::read_to_string(home.join(id).join("link")).expect("link");
        for id in &ids {
            let l = link(id);
            assert_eq!(l.len(), 26);
            assert!(
                l.bytes()
                    .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
            );
            let target = fs::read_link(home.join("l").join(&l)).expect("short link");
            assert_eq!(target, PathBuf::from(format!("../{id}/diff")));
        }
        assert!(home.join(&ids[0]).join("empty").is_dir());
        assert!(!home.join(&ids[0]).join("lower").exists());
        let lower = fs::read_to_string(home.join(&ids[3]).join("lower")).expect("lower");
        let want = format!(
            "l/{}:l/{}:l/{}",
            link(&ids[2]),
            link(&ids[1]),
            link(&ids[0])
        );
        assert_eq!(lower, want);
        let layers = parse_layers_json(
            &fs::read(store.graph.join("overlay-layers/layers.json")).expect("layers.json"),
        )
        .expect("valid records");
        assert_eq!(layers[3].parent, ids[2]);
    }

    #[test]
    fn mountinfo_octal_escapes_are_decoded() {
        assert_eq!(unescape_mount_field(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mount_field(r"/plain\09"), r"/plain\09");
    }

    #[test]
    fn go_tool_reads_a_synthetic_store() {
        layerstore_testsupport::require_or_skip!(
            layerstore_testsupport::Capability::Root,
            layerstore_testsupport::Capability::GoTool
        );
        let go = layerstore_testsupport::go_tool().expect("checked above");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::at(dir.path(), "vfs");
        let ids = write_flat_store(&store, 20).expect("written");
        let out = store
            .command(&go)
            .arg("layers")
            .output()
            .expect("go tool runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        listed.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(listed, want);
        // The Go tool can add a layer to it and delete it again.
        let out = store
            .command(&go)
            .args(["create-layer", "--id", "lsbench-extra"])
            .output()
            .expect("go tool runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = store
            .command(&go)
            .args(["delete-layer", "lsbench-extra"])
            .output()
            .expect("go tool runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn go_tool_reads_a_synthetic_image_store_and_deletes_a_chain_image() {
        layerstore_testsupport::require_or_skip!(
            layerstore_testsupport::Capability::Root,
            layerstore_testsupport::Capability::GoTool
        );
        let go = layerstore_testsupport::go_tool().expect("checked above");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::at(dir.path(), "vfs");
        let ids = write_image_store(&store, 5, 2, 4).expect("written");
        assert_eq!((ids.images.len(), ids.containers.len()), (5, 5));
        assert_eq!(ids.chain_images.len(), 2);
        let run = |args: &[&str]| {
            let out = store
                .command(&go)
                .args(args)
                .output()
                .expect("go tool runs");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let images = run(&["images"]);
        for id in ids.images.iter().chain(&ids.chain_images) {
            assert!(images.contains(id.as_str()), "{id} missing: {images}");
        }
        assert!(images.contains("localhost/lsbench-4:latest"), "{images}");
        let containers = run(&["containers"]);
        for id in &ids.containers {
            assert!(
                containers.contains(id.as_str()),
                "{id} missing: {containers}"
            );
        }
        // `layers` names each layer's users on indented lines below it.
        let count_layers = || {
            run(&["layers"])
                .lines()
                .filter(|l| !l.starts_with('\t'))
                .count()
        };
        // 5 images + 5 container layers + 2 chains of 4.
        assert_eq!(count_layers(), 18);
        run(&["delete-image", &ids.chain_images[0]]);
        assert_eq!(count_layers(), 14, "its 4 layers went with it");
        run(&["create-container", "--id", "lsbench-c", &ids.images[0]]);
        let mounted = run(&["mount", "lsbench-c"]);
        assert!(Path::new(mounted.trim()).is_dir(), "{mounted}");
    }

    #[test]
    fn go_tool_mounts_a_synthetic_overlay_chain() {
        layerstore_testsupport::require_or_skip!(
            layerstore_testsupport::Capability::Root,
            layerstore_testsupport::Capability::GoTool,
            layerstore_testsupport::Capability::Overlay
        );
        let go = layerstore_testsupport::go_tool().expect("checked above");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::at(dir.path(), "overlay");
        let ids = write_chain_store(&store, 3).expect("written");
        let top = ids.last().expect("3 layers");
        let out = store
            .command(&go)
            .args(["mount", top])
            .output()
            .expect("go tool runs");
        let ok = out.status.success();
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mounted = ok
            && mounts_under(dir.path())
                .iter()
                .any(|m| m == Path::new(&path));
        let _ = store.command(&go).args(["unmount", top]).output();
        unmount_under(dir.path(), false);
        assert!(ok, "{}", String::from_utf8_lossy(&out.stderr));
        assert!(mounted, "{path} is not a mount point");
    }
}
