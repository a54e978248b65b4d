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

use layerstore_model::{Layer, encode_layers_json, generate_id};

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
