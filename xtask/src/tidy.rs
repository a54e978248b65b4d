//! Repository invariants, checked by `cargo xtask tidy` and by `cargo test` (the test below):
//! the crates' dependency arrows point one way (down the layering), and every library crate
//! has a top doc.

use std::path::PathBuf;

use crate::workspace_root;

/// The layering, lowest first. A crate may depend only on crates listed before it.
const LAYERS: &[&str] = &[
    "layerstore-model",
    "layerstore-truncindex",
    "layerstore-lockfile",
    "layerstore-tarsplit",
    "layerstore-archive",
    "layerstore-driver",
    "layerstore-vfs",
    "layerstore-overlay",
    "layerstore-btrfs",
    "layerstore",
    "layerstore-cli",
];

/// Runs every check; the error lists every violation found.
pub fn check() -> Result<(), String> {
    let mut problems = Vec::new();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    for pkg in &packages {
        let name = pkg["name"].as_str().unwrap_or_default();
        let Some(rank) = LAYERS.iter().position(|l| *l == name) else {
            continue;
        };
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if let Some(dep_rank) = LAYERS.iter().position(|l| *l == dep_name)
                && dep_rank >= rank
            {
                problems.push(format!(
                    "{name} depends on {dep_name}, which is not below it in the layering"
                ));
            }
        }
        // Every library has a top doc (`//!` at the start of lib.rs).
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap_or_default());
        let lib = manifest.with_file_name("src").join("lib.rs");
        if lib.exists() {
            let text = std::fs::read_to_string(&lib).unwrap_or_default();
            if !text.trim_start().starts_with("//!") {
                problems.push(format!("{} has no top doc (`//!`)", lib.display()));
            }
        }
    }
    check_readme(&mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// README.md opens with exactly the two set-up commands (the main job, the tests), and
/// `.ci/run` runs the README's test command.
fn check_readme(problems: &mut Vec<String>) {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap_or_default();
    let first_block: Vec<&str> = readme
        .split("```")
        .nth(1)
        .map(|block| {
            block
                .lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if first_block != ["cargo xtask demo", "cargo xtask ci"] {
        problems.push(format!(
            "README.md must open with the two set-up commands `cargo xtask demo` and \
             `cargo xtask ci`; its first code block holds {first_block:?}"
        ));
    }
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap_or_default();
    if !ci.lines().any(|l| l.trim() == "cargo xtask ci") {
        problems.push(".ci/run does not run the README's test command `cargo xtask ci`".into());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repository_is_tidy() {
        if let Err(e) = super::check() {
            panic!("{e}");
        }
    }
}
