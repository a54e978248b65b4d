//! `cargo xtask demo`: the README's main job, end to end through the real `layerstore` binary.
//!
//! Builds the CLI (release) and pulls `examples/image-oci.tar` (a two-layer OCI archive) into
//! the default store (the one containers-storage would use: storage.conf, else
//! `/var/lib/containers/storage` as root and `$XDG_DATA_HOME/containers/storage` otherwise),
//! lists its images and layers, makes a container of the image, mounts it and shows
//! `etc/motd` (and that the second layer's whiteout hid `usr/bin/hi`), then deletes the
//! container and the image again (`--keep` keeps them) and shuts the store down. Every step
//! is a `layerstore` command.
//!
//! Arguments after `--` are passed to every `layerstore` call as global options, e.g.
//! `cargo xtask demo -- --graph /tmp/g --run /tmp/r --storage-driver vfs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs the demo; the error says which step failed and what the tool printed.
pub fn run(args: &[String]) -> Result<(), String> {
    let keep = args.iter().any(|a| a == "--keep");
    let globals: Vec<String> = match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => Vec::new(),
    };
    let root = crate::workspace_root();
    let archive = root.join("examples").join("image-oci.tar");

    let bin = build_cli()?;
    let tool = Tool { bin, globals };

    println!("==> layerstore pull oci-archive:{}", archive.display());
    let out = tool.run(&[
        "pull",
        "--quiet",
        &format!("oci-archive:{}", archive.display()),
    ])?;
    let image = first_line(&out, "pull printed no image ID")?;
    println!("    image {image}");

    println!("==> images");
    print!("{}", indent(&tool.run(&["images"])?));
    println!("==> layers");
    print!("{}", indent(&tool.run(&["layers"])?));

    println!("==> a container of the image, mounted");
    let out = tool.run(&["create-container", &image])?;
    let container = first_line(&out, "create-container printed no container ID")?;
    let shown = tool
        .run(&["mount", &container])
        .and_then(|out| first_line(&out, "mount printed no mount point"))
        .and_then(|mount| {
            let motd = Path::new(&mount).join("etc/motd");
            let text =
                std::fs::read_to_string(&motd).map_err(|e| format!("{}: {e}", motd.display()))?;
            println!("    {} says:", motd.display());
            print!("{}", indent(&text));
            let hidden = Path::new(&mount).join("usr/bin/hi");
            if hidden.symlink_metadata().is_ok() {
                return Err(format!(
                    "{} is there: the whiteout did not apply",
                    hidden.display()
                ));
            }
            println!("    usr/bin/hi is gone (the second layer's whiteout)");
            Ok(())
        });
    let _ = tool.run(&["unmount", &container]);

    let cleanup = if keep {
        Ok(String::new())
    } else {
        println!("==> deleting the container and the image again (--keep keeps them)");
        tool.run(&["delete-container", &container])
            .and_then(|_| tool.run(&["delete-image", &image]))
    };
    let _ = tool.run(&["shutdown"]);
    shown?;
    cleanup?;
    println!("==> pulled, mounted and read image {image}");
    Ok(())
}

/// The first line of a command's output, or `missing` as the error.
fn first_line(out: &str, missing: &str) -> Result<String, String> {
    out.lines()
        .next()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or_else(|| missing.to_string())
}

struct Tool {
    bin: PathBuf,
    globals: Vec<String>,
}

impl Tool {
    /// Runs `layerstore <globals> <args>`; stdout on success, an error with stderr otherwise.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        run_program(&self.bin, &self.globals, args)
    }
}

/// Runs `<bin> <globals> <args>`; stdout on success, an error with stderr otherwise.
fn run_program(bin: &Path, globals: &[String], args: &[&str]) -> Result<String, String> {
    {
        let out = Command::new(bin)
            .args(globals)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} {}` failed ({}): {}{}",
                bin.display(),
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

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
