//! `cargo xtask demo`: the README's main job, end to end through the real `layerstore` binary.
//!
//! Builds the CLI (release), imports `examples/layer.tar.gz` into the default store (the one
//! containers-storage would use: storage.conf, else `/var/lib/containers/storage` as root and
//! `$XDG_DATA_HOME/containers/storage` otherwise), lists the store, gives the layer back
//! uncompressed and checks that its SHA-256 is the tarball's (`examples/SHA256SUMS`), then
//! deletes the layer again (`--keep` keeps it) and shuts the store down.
//!
//! Arguments after `--` are passed to every `layerstore` call as global options, e.g.
//! `cargo xtask demo -- --graph /tmp/g --run /tmp/r --storage-driver vfs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::tools::sha256_file;

/// Runs the demo; the error says which step failed and what the tool printed.
pub fn run(args: &[String]) -> Result<(), String> {
    let keep = args.iter().any(|a| a == "--keep");
    let globals: Vec<String> = match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => Vec::new(),
    };
    let root = crate::workspace_root();
    let layer = root.join("examples").join("layer.tar.gz");
    let expected = expected_digest(
        &root.join("examples").join("SHA256SUMS"),
        "examples/layer.tar",
    )?;

    let bin = build_cli()?;
    let tool = Tool { bin, globals };

    println!("==> importing {}", layer.display());
    let out = tool.run(&["import-layer", "-f", &layer.to_string_lossy()])?;
    let id = out
        .lines()
        .next()
        .filter(|l| !l.is_empty())
        .ok_or("import-layer printed no layer ID")?
        .to_string();
    println!("    layer {id}");

    println!("==> layers");
    print!("{}", indent(&tool.run(&["layers"])?));

    let given_back =
        std::env::temp_dir().join(format!("layerstore-demo-{}.tar", std::process::id()));
    println!("==> giving the layer back (diff -u)");
    let result = tool
        .run(&["diff", "-u", "-f", &given_back.to_string_lossy(), &id])
        .and_then(|_| sha256_file(&given_back));
    let _ = std::fs::remove_file(&given_back);
    let actual = result?;

    let cleanup = if keep {
        Ok(String::new())
    } else {
        println!("==> deleting the layer again (--keep keeps it)");
        tool.run(&["delete-layer", &id])
    };
    let _ = tool.run(&["shutdown"]);
    cleanup?;

    if actual != expected {
        return Err(format!(
            "the layer given back has sha256 {actual}, the tarball has {expected}"
        ));
    }
    println!("==> layer {id} given back byte for byte: sha256:{actual}");
    Ok(())
}

struct Tool {
    bin: PathBuf,
    globals: Vec<String>,
}

impl Tool {
    /// Runs `layerstore <globals> <args>`; stdout on success, an error with stderr otherwise.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(&self.globals)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`layerstore {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `cargo build --release -p layerstore-cli`, returning the binary's path as cargo reports it
/// (so `CARGO_TARGET_DIR` is honoured).
fn build_cli() -> Result<PathBuf, String> {
    println!("==> cargo build --release -p layerstore-cli");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "layerstore-cli",
            "--bin",
            "layerstore",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(crate::workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err("building layerstore-cli failed".into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .find(|p| p.file_name().is_some_and(|n| n == "layerstore"))
        .ok_or_else(|| "cargo reported no `layerstore` executable".to_string())
}

/// The hex digest listed for `name` in a `sha256sum`-style file.
fn expected_digest(sums: &Path, name: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(sums).map_err(|e| format!("{}: {e}", sums.display()))?;
    text.lines()
        .filter_map(|l| l.split_once("  "))
        .find(|(_, file)| *file == name)
        .map(|(hex, _)| hex.to_string())
        .ok_or_else(|| format!("{} lists no {name}", sums.display()))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
