//! Repository invariants, checked by `cargo xtask tidy` and by `cargo test` (the test below):
//! the crates' dependency arrows point one way (down the layering), every library crate has a
//! top doc, and no file names a place outside the repository on one particular machine (the
//! sibling folder `shared`, the work tree of the machine the project grew on, the home
//! directory of whoever runs tidy): a clone elsewhere must stand alone. The crate table of
//! `docs/ARCHITECTURE.md` lists exactly the workspace's packages, and the Rust sources follow
//! the rules of [`source`]: `// SAFETY:` on each `unsafe`, `#![forbid(unsafe_code)]` where
//! there is none, the file-size budget.

mod source;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace_root;

/// The layering, lowest first. A crate may depend only on crates listed before it.
const LAYERS: &[&str] = &[
    "layerstore-crashpoint",
    "layerstore-hugealloc",
    "layerstore-model",
    "layerstore-truncindex",
    "layerstore-lockfile",
    "layerstore-recordstore",
    "layerstore-images",
    "layerstore-containers",
    "layerstore-igzip",
    "layerstore-tarsplit",
    "layerstore-archive",
    "layerstore-driver",
    "layerstore-vfs",
    "layerstore-overlay",
    "layerstore-btrfs",
    "layerstore-layers",
    "layerstore",
    "layerstore-pull",
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
    let root = workspace_root();
    let members: Vec<source::Package> = packages
        .iter()
        .filter_map(|pkg| {
            let manifest = Path::new(pkg["manifest_path"].as_str()?);
            Some(source::Package {
                name: pkg["name"].as_str()?.to_owned(),
                dir: manifest.parent()?.strip_prefix(&root).ok()?.to_path_buf(),
            })
        })
        .collect();
    let architecture =
        std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap_or_default();
    problems.extend(crate_table_problems(&architecture, &members));
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
    match repository_files(&root) {
        Ok(files) => {
            problems.extend(source::check(&root, &files, &members));
            let forbidden = machine_paths(std::env::var_os("HOME").as_deref().map(Path::new));
            problems.extend(
                files
                    .iter()
                    .flat_map(|f| machine_path_uses(&root, f, &forbidden)),
            );
        }
        Err(e) => problems.push(e),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Where the crate table of ARCHITECTURE.md (`| crate | folder | concern |`) and the
/// workspace's packages disagree: a package missing from it, a row for no package, a row
/// whose folder is not the package's.
fn crate_table_problems(architecture: &str, members: &[source::Package]) -> Vec<String> {
    let rows: Vec<(String, String)> = architecture
        .lines()
        .skip_while(|l| !l.starts_with("| crate | folder |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let mut cells = l.split('|').skip(1).map(str::trim);
            Some((cells.next()?.to_owned(), cells.next()?.to_owned()))
        })
        .collect();
    if rows.is_empty() {
        return vec![
            "docs/ARCHITECTURE.md has no crate table (`| crate | folder | concern |`)".into(),
        ];
    }
    let mut problems = Vec::new();
    for member in members {
        let folder = member.dir.to_string_lossy();
        match rows.iter().find(|(name, _)| *name == member.name) {
            None => problems.push(format!(
                "docs/ARCHITECTURE.md: the crate table lacks the package {} ({folder})",
                member.name
            )),
            Some((_, row_folder)) if *row_folder != folder => problems.push(format!(
                "docs/ARCHITECTURE.md: the crate table puts {} in {row_folder}, it is in {folder}",
                member.name
            )),
            Some(_) => {}
        }
    }
    for (name, _) in &rows {
        if !members.iter().any(|m| m.name == *name) {
            problems.push(format!(
                "docs/ARCHITECTURE.md: the crate table lists {name}, which is no workspace package"
            ));
        }
    }
    problems
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

/// The texts no file may hold: the sibling folder of the repository, the work tree of the
/// machine this project grew on, and the home directory of whoever runs tidy (a path pasted
/// from a terminal). Built from pieces so that this file does not name them itself.
fn machine_paths(home: Option<&Path>) -> Vec<String> {
    let mut forbidden = vec![[".", ".", "/shared"].concat(), ["/", "work", "/"].concat()];
    if let Some(home) = home.and_then(Path::to_str) {
        let home = home.trim_end_matches('/');
        // A home of "/" or a one-letter placeholder would match everything or examples.
        if home.matches('/').count() >= 1 && home.len() > 3 {
            forbidden.push(format!("{home}/"));
        }
    }
    forbidden
}

/// The files of the repository: what git tracks plus untracked files it does not ignore;
/// without git (a source tarball), every file outside `target/` and hidden directories.
fn repository_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    if let Ok(out) = listed
        && out.status.success()
    {
        return Ok(out
            .stdout
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
            .filter(|path| root.join(path).is_file())
            .collect());
    }
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = root.join(&relative);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let path = relative.join(&name);
            let hidden = name.to_string_lossy().starts_with('.');
            match entry.file_type() {
                Ok(t) if t.is_dir() && !hidden && name != "target" => stack.push(path),
                Ok(t) if t.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    Ok(files)
}

/// Where the text file `relative` names one of `forbidden`, one problem per line; binary
/// files (not UTF-8, or holding NUL) are not read as text.
fn machine_path_uses(root: &Path, relative: &Path, forbidden: &[String]) -> Vec<String> {
    let Ok(bytes) = std::fs::read(root.join(relative)) else {
        return Vec::new();
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Vec::new();
    };
    if text.contains('\0') {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for path in forbidden.iter().filter(|p| names(line, p)) {
            found.push(format!(
                "{}:{}: names `{path}`, a path outside the repository on one machine",
                relative.display(),
                number + 1
            ));
        }
    }
    found
}

/// Whether `line` names `path` itself: an absolute path must not continue another one
/// (`/tmp/study/root/x` does not name the home `/root`).
fn names(line: &str, path: &str) -> bool {
    line.match_indices(path).any(|(at, _)| {
        !path.starts_with('/')
            || !line[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || "._-/~".contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_is_tidy() {
        if let Err(e) = check() {
            panic!("{e}");
        }
    }

    #[test]
    fn the_crate_table_must_list_the_workspace_packages() {
        let members = |names: &[(&str, &str)]| -> Vec<source::Package> {
            names
                .iter()
                .map(|(name, dir)| source::Package {
                    name: name.to_string(),
                    dir: PathBuf::from(dir),
                })
                .collect()
        };
        let table = "# A\n\n| crate | folder | concern |\n|---|---|---|\n\
                     | a | crates/a | first |\n| b | crates/b | second |\n\nAfter.\n| x | y |\n";
        assert!(
            crate_table_problems(table, &members(&[("a", "crates/a"), ("b", "crates/b")]))
                .is_empty()
        );
        let problems =
            crate_table_problems(table, &members(&[("a", "crates/z"), ("c", "crates/c")]));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("puts a in crates/a"), "{problems:?}");
        assert!(problems[1].contains("lacks the package c"), "{problems:?}");
        assert!(problems[2].contains("lists b"), "{problems:?}");
        assert_eq!(crate_table_problems("no table", &[]).len(), 1);
    }

    #[test]
    fn machine_paths_are_found_in_text_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let sibling = [".", ".", "/shared/docs"].concat();
        std::fs::write(root.join("a.md"), format!("fine\nsee {sibling}\n")).unwrap();
        std::fs::write(root.join("b.sh"), "cd /home/alice/src\nls /x/home/alice/\n").unwrap();
        std::fs::write(
            root.join("c.bin"),
            [b"\0", sibling.as_bytes(), b"\xff"].concat(),
        )
        .unwrap();
        std::fs::write(
            root.join("d.rs"),
            "let p = \"/tmp/x\"; // /home/u is an example\n",
        )
        .unwrap();
        let forbidden = machine_paths(Some(Path::new("/home/alice")));
        assert!(forbidden.contains(&"/home/alice/".to_owned()));
        let found = |name: &str| machine_path_uses(root, Path::new(name), &forbidden);
        assert_eq!(found("a.md").len(), 1);
        assert!(
            found("a.md")[0].starts_with("a.md:2: names"),
            "{:?}",
            found("a.md")
        );
        assert_eq!(found("b.sh").len(), 1);
        assert!(found("c.bin").is_empty());
        assert!(found("d.rs").is_empty());
        // Without git (a source tarball) the walk finds the same files.
        let mut files = repository_files(root).unwrap();
        files.sort();
        assert_eq!(files.len(), 4);
        // Homes too short to be a real one are not searched for.
        assert_eq!(machine_paths(Some(Path::new("/"))).len(), 2);
        assert_eq!(machine_paths(None).len(), 2);
    }
}
