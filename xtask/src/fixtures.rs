//! `cargo xtask fixtures`: makes `tests/fixtures/go-1.43` again, from GNU tar and the Go
//! `containers-storage` 1.43 tool (Debian package `containers-storage`), as its README lists.
//!
//! 1. The layer tarballs ([`tars`]); their bytes must equal `tars/SHA256SUMS` (`--repin`
//!    accepts new bytes and rewrites the sums, for a deliberate change of a recipe).
//! 2. A vfs and an overlay store of layers made from them, and a vfs store of images and
//!    containers, by the Go tool ([`go`]); the files copied out of the stores and the CLI's
//!    output.
//! 3. The hand-edited variants `layers-edited.json`, `images-edited.json`,
//!    `containers-edited.json`: the Go files plus records Go 1.43 cannot write.
//!
//! Everything is generated in a scratch directory, then copied over the folder (`--out DIR`
//! elsewhere), or with `--check` compared with it ([`compare`]): IDs, times and scratch
//! paths differ from one generation to the next, nothing else may. Needs root (device nodes,
//! owners, overlay mounts), GNU tar, gzip, zstd and `unshare`.

mod compare;
mod go;
mod tars;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::bench::store::remove_tree;
use crate::tools::sha256_file;
use crate::workspace_root;

const USAGE: &str = "\
usage: cargo xtask fixtures [--check] [--repin] [--out DIR] [--go PATH]
  makes tests/fixtures/go-1.43 again (needs root, GNU tar, gzip, zstd, unshare, the Go tool)
  --check    generate into a scratch directory and compare with the folder; write nothing
  --repin    accept tarball bytes that differ from tars/SHA256SUMS and rewrite the sums
  --out DIR  the fixture folder (default: tests/fixtures/go-1.43 of this workspace)
  --go PATH  the Go tool (default: /usr/bin/containers-storage)
";

struct Options {
    check: bool,
    repin: bool,
    out: PathBuf,
    go: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut opts = Options {
            check: false,
            repin: false,
            out: workspace_root().join("tests/fixtures/go-1.43"),
            go: PathBuf::from("/usr/bin/containers-storage"),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
            };
            match arg.as_str() {
                "--check" => opts.check = true,
                "--repin" => opts.repin = true,
                "--out" => opts.out = value()?,
                "--go" => opts.go = value()?,
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        Ok(opts)
    }
}

/// A scratch directory, unmounted and removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.0) {
            eprintln!("fixtures: {e}");
        }
    }
}

/// Runs the task.
pub fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let opts = Options::parse(args)?;
    if !rustix::process::geteuid().is_root() {
        return Err("fixtures needs root (device nodes, file owners, overlay mounts)".into());
    }
    if !opts.go.is_file() {
        return Err(format!(
            "the Go tool {} is missing (apt-get install containers-storage)",
            opts.go.display()
        ));
    }
    let scratch =
        Scratch(std::env::temp_dir().join(format!("layerstore-fixtures.{}", std::process::id())));
    remove_tree(&scratch.0)?;
    let fresh = scratch.0.join("go-1.43");
    eprintln!("fixtures: tarballs (GNU tar)");
    tars::build_all(&scratch.0.join("trees"), &fresh.join("tars"))?;
    pin(
        &fresh.join("tars"),
        &opts.out.join("tars/SHA256SUMS"),
        opts.repin,
    )?;
    for driver in ["vfs", "overlay"] {
        eprintln!("fixtures: {driver} store of layers (Go tool)");
        go::layer_store(&opts.go, &scratch.0, &fresh, driver)?;
    }
    eprintln!("fixtures: vfs store of images and containers (Go tool)");
    go::image_store(&opts.go, &scratch.0, &fresh)?;
    edited_files(&fresh)?;
    fs::write(fresh.join("VERSION"), go_version()?)
        .map_err(|e| format!("{}: {e}", fresh.join("VERSION").display()))?;

    if opts.check {
        let found = compare::differences(&fresh, &opts.out)?;
        if !found.is_empty() {
            return Err(format!(
                "the generation differs from {}:\n{}",
                opts.out.display(),
                found.join("\n")
            ));
        }
        eprintln!(
            "fixtures: {} matches a fresh generation (IDs, times and scratch paths aside)",
            opts.out.display()
        );
        return Ok(());
    }
    install(&fresh, &opts.out)?;
    eprintln!("fixtures: wrote {}", opts.out.display());
    Ok(())
}

/// Checks the tarballs against the committed `SHA256SUMS` (or, with `repin`, accepts them)
/// and writes the sums next to them.
fn pin(tars: &Path, committed: &Path, repin: bool) -> Result<(), String> {
    let mut sums = String::new();
    for name in tars::PINNED {
        sums.push_str(&format!("{}  {name}\n", sha256_file(&tars.join(name))?));
    }
    let pinned = fs::read_to_string(committed).unwrap_or_default();
    if !repin && pinned != sums {
        let differing: Vec<&str> = sums
            .lines()
            .filter(|line| !pinned.lines().any(|p| p == *line))
            .collect();
        return Err(format!(
            "the tarballs differ from {} (rerun with --repin if the recipe changed on \
             purpose):\n{}",
            committed.display(),
            differing.join("\n")
        ));
    }
    fs::write(tars.join("SHA256SUMS"), sums).map_err(|e| format!("SHA256SUMS: {e}"))
}

/// `containers-storage\t<Debian version>`, as `dpkg-query -W` prints it.
fn go_version() -> Result<String, String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "containers-storage"])
        .output()
        .map_err(|e| format!("cannot run dpkg-query: {e}"))?;
    if !out.status.success() {
        return Err("dpkg-query -W containers-storage failed: is the package installed?".into());
    }
    String::from_utf8(out.stdout).map_err(|e| format!("dpkg-query: {e}"))
}

/// Copies every generated file over `out`.
fn install(fresh: &Path, out: &Path) -> Result<(), String> {
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let from_dir = fresh.join(&relative);
        let to_dir = out.join(&relative);
        fs::create_dir_all(&to_dir).map_err(|e| format!("mkdir {}: {e}", to_dir.display()))?;
        for entry in fs::read_dir(&from_dir).map_err(|e| format!("{}: {e}", from_dir.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", from_dir.display()))?;
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(relative.join(entry.file_name()));
            } else {
                let to = to_dir.join(entry.file_name());
                fs::copy(entry.path(), &to).map_err(|e| format!("cp {}: {e}", to.display()))?;
            }
        }
    }
    Ok(())
}

/// The hand-edited files: each Go file with records Go 1.43 does not write appended, written
/// as Go would write them (keys in Go's order, map keys sorted, `<` `&` escaped) except for
/// `layers-edited.json`, whose `x<y&z` stays raw to test that decoding accepts it.
fn edited_files(dir: &Path) -> Result<(), String> {
    let read = |name: &str| -> Result<Vec<u8>, String> {
        fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"))
    };
    let layers = read("layers-vfs.json")?;
    let records = parse(&layers, "layers-vfs.json")?;
    let named = |name: &str| -> Result<&Value, String> {
        records
            .iter()
            .find(|r| {
                r["names"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|v| v == name))
            })
            .ok_or_else(|| format!("layers-vfs.json has no layer named {name}"))
    };
    let (basic, pax) = (named("basic")?, named("pax")?);
    let pulled = format!(
        r#"{{"id":"{}","names":["was-being-pulled"],"created":{},"compressed-diff-digest":{},"compressed-size":{},"diff-digest":{},"diff-size":{},"uidset":{},"gidset":{},"flags":{{"incomplete":true}}}}"#,
        "f".repeat(64),
        basic["created"],
        basic["compressed-diff-digest"],
        basic["compressed-size"],
        basic["diff-digest"],
        basic["diff-size"],
        basic["uidset"],
        basic["gidset"],
    );
    let newer = format!(
        r#"{{"id":"{}","names":["from-newer-go"],"created":{},"compressed-diff-digest":{},"compressed-size":{},"diff-digest":{},"toc-digest":"sha256:{}","diff-size":{},"uidset":{},"gidset":{},"flags":{{"custom":{{"list":[1,2],"s":"x<y&z"}}}}}}"#,
        "e".repeat(64),
        pax["created"],
        pax["compressed-diff-digest"],
        pax["compressed-size"],
        pax["diff-digest"],
        "a".repeat(64),
        pax["diff-size"],
        pax["uidset"],
        pax["gidset"],
    );
    append(
        dir,
        "layers-vfs.json",
        "layers-edited.json",
        &[pulled, newer],
    )?;

    let images = read("images-vfs.json")?;
    let created = parse(&images, "images-vfs.json")?
        .first()
        .map(|image| image["created"].clone())
        .ok_or("images-vfs.json is empty")?;
    let flagged = format!(
        r#"{{"id":"{}","names":["edited-flags"],"created":{created},"flags":{{"another":true,"custom":{{"list":[1,2.5,null],"s":"x\u003cy\u0026z"}}}},"zz-newer-field":{{"a":"\u003e","b":[1]}}}}"#,
        "d".repeat(64),
    );
    append(dir, "images-vfs.json", "images-edited.json", &[flagged])?;

    let containers = read("containers-vfs.json")?;
    let first = parse(&containers, "containers-vfs.json")?
        .first()
        .cloned()
        .ok_or("containers-vfs.json is empty")?;
    let mount_opts = format!(
        r#"{{"id":"{}","image":"","layer":{},"created":{},"flags":{{"MountLabel":"","MountOpts":["nodev","ro"],"ProcessLabel":""}},"zz-newer-field":1}}"#,
        "c".repeat(64),
        first["layer"],
        first["created"],
    );
    append(
        dir,
        "containers-vfs.json",
        "containers-edited.json",
        &[mount_opts],
    )
}

fn parse(bytes: &[u8], name: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Array(records)) => Ok(records),
        Ok(_) => Err(format!("{name} is not a JSON array")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// Writes `to`: the array of `from` with `records` appended.
fn append(dir: &Path, from: &str, to: &str, records: &[String]) -> Result<(), String> {
    let text = fs::read_to_string(dir.join(from)).map_err(|e| format!("{from}: {e}"))?;
    let body = text
        .strip_suffix(']')
        .ok_or_else(|| format!("{from} does not end with ]"))?;
    let separator = if body == "[" { "" } else { "," };
    let edited = format!("{body}{separator}{}]", records.join(","));
    fs::write(dir.join(to), edited).map_err(|e| format!("{to}: {e}"))
}
