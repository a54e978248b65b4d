//! The layer tarballs the benchmarks import, built here: by `cargo xtask bench-fixtures`, and by
//! `cargo xtask bench` for those it needs and cannot find.
//!
//! | file | what | made by |
//! |---|---|---|
//! | rootfs.tar | Debian bookworm minbase, apt lists, .deb cache and logs removed | `debootstrap --variant=minbase`, GNU tar `--numeric-owner --xattrs --sort=name` (PAX) |
//! | rootfs.tar.gz, .zst | the same, compressed | `gzip -6 -n`, `zstd -3` |
//! | smallfiles.tar | ~50,000 entries: an npm `node_modules` tree (react-scripts 5.0.1, date-fns 2.30.0) | `npm install --ignore-scripts`, GNU tar; without npm (or network) 1,000 synthetic directories of 50 files |
//! | bigfile.tar, .gz | one 1 GiB file of incompressible bytes, the same on every build | a SplitMix64 stream; `gzip -6 -n` |
//! | compressible.tar | 16 files of 10 MiB of numbered text lines (160 MiB; gzip keeps ~4%) | xtask, GNU tar |
//! | incompressible.tar | 150 MiB of keystream bytes and 10 MiB of text | xtask, GNU tar |
//! | layer2.tar | a child of rootfs.tar: whiteouts, an opaque directory, changed, chmod-ed and new files, a hard link | built against the extracted rootfs, GNU tar |
//!
//! Each fixture that already exists is kept (delete it to build it again); each writes a
//! `<stem>.source` line saying how it was made, which the report quotes.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use synthetic::{
    Keystream, write_big_file, write_compressible, write_incompressible, write_small_files,
    write_tar,
};

use super::store::remove_tree;
use crate::tools::{compress, run, sha256_file};

/// One fixture: a tarball, maybe compressed.
mod synthetic;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixture {
    /// File name in the fixtures directory.
    pub name: &'static str,
}

/// Every fixture the import section knows, in report order.
pub const ALL: &[Fixture] = &[
    Fixture { name: "rootfs.tar" },
    Fixture {
        name: "rootfs.tar.gz",
    },
    Fixture {
        name: "rootfs.tar.zst",
    },
    Fixture {
        name: "smallfiles.tar",
    },
    Fixture {
        name: "bigfile.tar",
    },
    Fixture {
        name: "bigfile.tar.gz",
    },
    Fixture {
        name: "compressible.tar",
    },
    Fixture {
        name: "incompressible.tar",
    },
];

/// The fixtures whose diff is also timed gzip-compressed (`diff -c`).
pub const COMPRESSED_DIFF: &[&str] = &["compressible.tar", "incompressible.tar"];

/// The child layer of rootfs.tar (whiteouts, opaque dir), applied on the vfs child.
pub const CHILD_LAYER: &str = "layer2.tar";

/// The Debian release debootstrap installs.
const SUITE: &str = "bookworm";

/// The npm packages of smallfiles.tar (~42,000 + ~8,000 entries).
const NPM_PACKAGES: &[&str] = &["react-scripts@5.0.1", "date-fns@2.30.0"];

impl Fixture {
    /// The fixture called `name`, if it is one of [`ALL`].
    pub fn named(name: &str) -> Option<Fixture> {
        ALL.iter().copied().find(|f| f.name == name)
    }

    /// The uncompressed tarball with the same content (itself if not compressed).
    pub fn plain(self) -> &'static str {
        self.name
            .strip_suffix(".gz")
            .or_else(|| self.name.strip_suffix(".zst"))
            .unwrap_or(self.name)
    }

    /// The decompressor command line that writes the plain tar on stdout, if compressed.
    pub fn decompressor(self) -> Option<&'static [&'static str]> {
        if self.name.ends_with(".gz") {
            Some(&["gzip", "-dc"])
        } else if self.name.ends_with(".zst") {
            Some(&["zstd", "-dcq"])
        } else {
            None
        }
    }

    /// The compressor command line that writes this fixture from its plain tar on stdout.
    fn compressor(self) -> Option<&'static [&'static str]> {
        if self.name.ends_with(".gz") {
            Some(&["gzip", "-6", "-n", "-c"])
        } else if self.name.ends_with(".zst") {
            Some(&["zstd", "-3", "-q", "-c"])
        } else {
            None
        }
    }
}

/// Makes sure the fixtures in `wanted` (and their plain versions), and with `child_layer`
/// also [`CHILD_LAYER`], exist in `dir`; returns the reasons for those that could not be made.
pub fn ensure(dir: &Path, wanted: &[Fixture], child_layer: bool) -> Vec<(Fixture, String)> {
    let mut unavailable = Vec::new();
    if let Err(e) = fs::create_dir_all(dir) {
        let reason = format!("mkdir {}: {e}", dir.display());
        return wanted.iter().map(|f| (*f, reason.clone())).collect();
    }
    let stage = dir.join(".stage");
    for f in wanted {
        let made =
            make(dir, &stage, Fixture { name: f.plain() }).and_then(|()| make(dir, &stage, *f));
        if let Err(reason) = made {
            unavailable.push((*f, reason));
        }
    }
    if child_layer {
        let made = make(dir, &stage, Fixture { name: "rootfs.tar" })
            .and_then(|()| make_if_missing(dir, CHILD_LAYER, || layer2(dir, &stage)));
        if let Err(reason) = made {
            eprintln!("bench: {CHILD_LAYER} could not be made: {reason}");
        }
    }
    let _ = remove_tree(&stage);
    unavailable
}

/// `cargo xtask bench-fixtures [--dir DIR]`: builds every fixture and lists them.
pub fn make_all(args: &[String]) -> Result<(), String> {
    let dir = match args {
        [] => PathBuf::from(DEFAULT_DIR),
        [flag, dir] if flag == "--dir" => PathBuf::from(dir),
        _ => return Err("usage: cargo xtask bench-fixtures [--dir DIR]".into()),
    };
    if !rustix::process::geteuid().is_root() {
        return Err("bench-fixtures needs root (debootstrap, numeric owners)".into());
    }
    let unavailable = ensure(&dir, ALL, true);
    println!("| file | bytes | sha256 | source |\n|---|---:|---|---|");
    for name in ALL.iter().map(|f| f.name).chain([CHILD_LAYER]) {
        let path = dir.join(name);
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        println!(
            "| {name} | {} | `{}` | {} |",
            meta.len(),
            sha256_file(&path)?,
            source(&dir, name)
        );
    }
    if unavailable.is_empty() && dir.join(CHILD_LAYER).is_file() {
        Ok(())
    } else {
        let reasons: Vec<String> = unavailable
            .iter()
            .map(|(f, reason)| format!("{}: {reason}", f.name))
            .collect();
        Err(format!(
            "not every fixture could be made:\n{}",
            reasons.join("\n")
        ))
    }
}

/// Where `bench` and `bench-fixtures` keep the fixtures unless told otherwise.
pub const DEFAULT_DIR: &str = "/tmp/lsbench-fixtures";

/// Builds `fixture` into `dir` unless it is there; its plain version must already be.
fn make(dir: &Path, stage: &Path, fixture: Fixture) -> Result<(), String> {
    make_if_missing(dir, fixture.name, || {
        if let Some(compressor) = fixture.compressor() {
            let plain = dir.join(fixture.plain());
            compress(compressor, &plain, &dir.join(fixture.name))?;
            // The compressed fixture says where its content came from.
            return Ok(None);
        }
        match fixture.name {
            "rootfs.tar" => rootfs(dir, stage).map(Some),
            "smallfiles.tar" => small_files(dir, stage).map(Some),
            "bigfile.tar" => big_file(dir).map(Some),
            "compressible.tar" => write_tar(&dir.join(fixture.name), write_compressible).map(Some),
            "incompressible.tar" => {
                write_tar(&dir.join(fixture.name), write_incompressible).map(Some)
            }
            other => Err(format!("no recipe for {other}")),
        }
    })
}

/// Runs `build` unless `dir/name` exists; writes the `.source` line it returns.
fn make_if_missing(
    dir: &Path,
    name: &str,
    build: impl FnOnce() -> Result<Option<String>, String>,
) -> Result<(), String> {
    if dir.join(name).is_file() {
        return Ok(());
    }
    eprintln!("bench: building fixture {name} in {}", dir.display());
    if let Some(source) = build()? {
        let stem = name.split('.').next().unwrap_or(name);
        fs::write(dir.join(format!("{stem}.source")), format!("{source}\n"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Where a fixture came from (its `<stem>.source` line).
pub fn source(dir: &Path, fixture: &str) -> String {
    let stem = fixture.split('.').next().unwrap_or(fixture);
    fs::read_to_string(dir.join(format!("{stem}.source")))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown (no .source file)".to_owned())
}

fn on_path(program: &str) -> bool {
    crate::tools::find_on_path(program).is_some()
}

/// Runs a command with its output in `log` (kept in the fixtures directory when it fails).
fn run_logged(cmd: &mut Command, log: &Path) -> Result<(), String> {
    let file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    run(cmd.stdout(file).stderr(err)).map_err(|e| format!("{e}; see {}", log.display()))
}

/// GNU tar of the top-level entries of `tree` (names without `./`, as image layers have
/// them), sorted, numeric owners, into `out` through a temp file.
fn tar_tree(tree: &Path, out: &Path, extra: &[&str]) -> Result<(), String> {
    let mut top: Vec<_> = fs::read_dir(tree)
        .map_err(|e| format!("{}: {e}", tree.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    top.sort();
    let tmp = out.with_extension("tar.tmp");
    run(Command::new("tar")
        .args(["--numeric-owner", "--sort=name"])
        .args(extra)
        .arg("-C")
        .arg(tree)
        .arg("-cf")
        .arg(&tmp)
        .arg("--")
        .args(&top))?;
    fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))
}

/// rootfs.tar: Debian minbase by debootstrap, trimmed as the official image is.
fn rootfs(dir: &Path, stage: &Path) -> Result<String, String> {
    if !on_path("debootstrap") {
        return Err("debootstrap is not installed (apt-get install debootstrap)".into());
    }
    let root = stage.join("rootfs");
    remove_tree(&root)?;
    fs::create_dir_all(&root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
    let mirror = debian_mirror();
    let built = run_logged(
        Command::new("debootstrap")
            .args(["--variant=minbase", SUITE])
            .arg(&root)
            .arg(&mirror),
        &dir.join("debootstrap.log"),
    );
    // debootstrap mounts proc and sys inside the tree; a failed run can leave them.
    super::store::unmount_under(&root, false);
    built?;
    for (directory, keep) in [
        ("var/lib/apt/lists", (|_: &str| false) as fn(&str) -> bool),
        ("var/cache/apt", |name: &str| !name.ends_with(".bin")),
        ("var/cache/apt/archives", |name: &str| {
            !name.ends_with(".deb")
        }),
        ("var/log", |name: &str| !name.ends_with(".log")),
        ("var/log/apt", |_: &str| false),
    ] {
        remove_entries(&root.join(directory), keep)?;
    }
    fs::create_dir_all(root.join("var/lib/apt/lists/partial"))
        .map_err(|e| format!("mkdir {}: {e}", root.display()))?;
    tar_tree(&root, &dir.join("rootfs.tar"), &["--xattrs"])?;
    remove_tree(&root)?;
    Ok(format!(
        "debootstrap --variant=minbase {SUITE} {mirror} (apt lists, .deb cache and logs removed)"
    ))
}

/// Removes the entries of `dir` (files and trees) that `keep` does not keep; a missing
/// directory has none.
fn remove_entries(dir: &Path, keep: fn(&str) -> bool) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep(&name) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| format!("rm {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The Debian mirror apt uses for [`SUITE`] here (not a security mirror), else deb.debian.org.
fn debian_mirror() -> String {
    let mut sources = Vec::new();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        sources.extend(
            paths
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "sources")),
        );
    }
    for path in &sources {
        let text = fs::read_to_string(path).unwrap_or_default();
        if let Some(uri) = deb822_mirror(&text) {
            return uri;
        }
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    one_line_mirror(&list).unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}

/// The first `URIs:` of a deb822 stanza whose `Suites:` has [`SUITE`], not a security one.
fn deb822_mirror(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
            continue;
        };
        let uri = uris.split_whitespace().next()?;
        if !uri.contains("security") && suites.split_whitespace().any(|s| s == SUITE) {
            return Some(uri.to_owned());
        }
    }
    None
}

/// The URI of the first `deb [options] URI SUITE …` line of a sources.list, not security.
fn one_line_mirror(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix("deb ")?;
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(options) => options.split_once(']')?.1,
            None => rest,
        };
        let mut words = rest.split_whitespace();
        let (uri, suite) = (words.next()?, words.next()?);
        (suite == SUITE && !uri.contains("security")).then(|| uri.to_owned())
    })
}

/// smallfiles.tar: an npm `node_modules` tree; a synthetic one without npm or network.
fn small_files(dir: &Path, stage: &Path) -> Result<String, String> {
    let app = stage.join("app");
    remove_tree(&app)?;
    fs::create_dir_all(&app).map_err(|e| format!("mkdir {}: {e}", app.display()))?;
    let npm = if on_path("npm") {
        fs::write(
            app.join("package.json"),
            r#"{"name":"lsbench-app","version":"1.0.0","private":true}"#,
        )
        .map_err(|e| format!("{}: {e}", app.display()))?;
        run_logged(
            Command::new("npm")
                .arg("install")
                .arg("--cache")
                .arg(stage.join("npm-cache"))
                .args([
                    "--ignore-scripts",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ])
                .args(NPM_PACKAGES)
                .current_dir(&app),
            &dir.join("npm.log"),
        )
    } else {
        Err("npm is not installed".into())
    };
    let source = match npm {
        Ok(()) => {
            tar_tree(&app, &dir.join("smallfiles.tar"), &["--format=gnu"])?;
            let version = Command::new("npm")
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            format!(
                "npm {version} install --ignore-scripts {}",
                NPM_PACKAGES.join(" ")
            )
        }
        Err(reason) => {
            eprintln!("bench: {reason}; smallfiles.tar is synthetic");
            write_tar(&dir.join("smallfiles.tar"), write_small_files)?
        }
    };
    remove_tree(&app)?;
    remove_tree(&stage.join("npm-cache"))?;
    Ok(source)
}

/// bigfile.tar: one 1 GiB file of [`Keystream`] bytes.
fn big_file(dir: &Path) -> Result<String, String> {
    write_tar(&dir.join("bigfile.tar"), write_big_file)
}

/// layer2.tar: a child of rootfs.tar, as an image builder records `RUN rm …; echo >> …`:
/// whiteouts of `etc/motd` and of the first 20 directories of `usr/share/doc`; an opaque
/// `usr/share/man` with one new file; `etc/passwd`, `group`, `shadow`, `hostname` and
/// `usr/lib/os-release` changed; `etc/issue` chmod 0600; `etc/issue.net` turned into a
/// symlink; new `opt/app/` (a copy of `usr/bin/ls` and a hard link to it, 200 small files
/// owned by 1000:1000, 8 MiB of incompressible bytes).
fn layer2(dir: &Path, stage: &Path) -> Result<Option<String>, String> {
    let parent = stage.join("parent");
    let layer = stage.join("layer2");
    remove_tree(&parent)?;
    remove_tree(&layer)?;
    for d in [&parent, &layer] {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    run(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-xf"])
        .arg(dir.join("rootfs.tar"))
        .arg("-C")
        .arg(&parent))?;
    let child = ChildLayer {
        parent: &parent,
        layer: &layer,
    };
    if parent.join("etc/motd").exists() {
        child.whiteout("etc/motd")?;
    }
    let mut docs: Vec<String> = fs::read_dir(parent.join("usr/share/doc"))
        .map_err(|e| format!("{}: {e}", parent.join("usr/share/doc").display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    docs.sort();
    for doc in docs.iter().take(20) {
        child.whiteout(&format!("usr/share/doc/{doc}"))?;
    }
    let opaque = if parent.join("usr/share/man").is_dir() {
        "usr/share/man"
    } else {
        "usr/share/info"
    };
    child.parents(&format!("{opaque}/x"))?;
    child.write(&format!("{opaque}/.wh..wh..opq"), b"")?;
    child.write(
        &format!("{opaque}/README.layer2"),
        b"man pages removed in layer2\n",
    )?;
    for (file, line) in [
        ("etc/passwd", "app:x:1000:1000:app:/opt/app:/bin/sh\n"),
        ("etc/group", "app:x:1000:\n"),
        ("etc/shadow", "app:!:19000:0:99999:7:::\n"),
        ("usr/lib/os-release", "VARIANT_ID=lsbench\n"),
    ] {
        child.copy(file)?;
        append(&layer.join(file), line)?;
    }
    child.copy("etc/hostname")?;
    child.write("etc/hostname", b"lsbench-layer2\n")?;
    child.copy("etc/issue")?;
    chmod(&layer.join("etc/issue"), 0o600)?;
    child.parents("etc/issue.net")?;
    symlink("issue", layer.join("etc/issue.net"))
        .map_err(|e| format!("ln -s {}: {e}", layer.display()))?;
    let app = layer.join("opt/app");
    for d in ["opt/app/bin", "opt/app/conf"] {
        fs::create_dir_all(layer.join(d)).map_err(|e| format!("mkdir {}: {e}", layer.display()))?;
    }
    cp_a(&parent.join("usr/bin/ls"), &app.join("bin/ls"))?;
    fs::hard_link(app.join("bin/ls"), app.join("bin/dir-hardlink"))
        .map_err(|e| format!("ln {}: {e}", app.display()))?;
    let conf = app.join("conf");
    chown(&conf, Some(1000), Some(1000)).map_err(|e| format!("chown {}: {e}", conf.display()))?;
    for i in 1..=200 {
        let path = conf.join(format!("setting-{i:03}.conf"));
        fs::write(&path, format!("key{i:03} = value {i:03}\n"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        chown(&path, Some(1000), Some(1000))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    let mut data = Vec::with_capacity(8 << 20);
    Keystream::new("layer2", 8 << 20)
        .read_to_end(&mut data)
        .map_err(|e| format!("keystream: {e}"))?;
    fs::write(app.join("data.bin"), data).map_err(|e| format!("{}: {e}", app.display()))?;
    tar_tree(&layer, &dir.join(CHILD_LAYER), &["--xattrs"])?;
    remove_tree(&parent)?;
    remove_tree(&layer)?;
    Ok(Some(
        "a child of rootfs.tar with whiteouts, an opaque dir, changed and new files (xtask)".into(),
    ))
}

/// The tree of a child layer being built against its extracted parent.
struct ChildLayer<'a> {
    parent: &'a Path,
    layer: &'a Path,
}

impl ChildLayer<'_> {
    /// Creates the directories above `relative` in the layer, with the parent's owner and
    /// mode where the parent has them.
    fn parents(&self, relative: &str) -> Result<(), String> {
        let mut sofar = PathBuf::new();
        let dirs: Vec<_> = Path::new(relative)
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for part in dirs {
            sofar.push(part);
            let target = self.layer.join(&sofar);
            if target.is_dir() {
                continue;
            }
            fs::create_dir(&target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
            let original = self.parent.join(&sofar);
            if let Ok(meta) = fs::metadata(&original) {
                use std::os::unix::fs::MetadataExt;
                chown(&target, Some(meta.uid()), Some(meta.gid()))
                    .map_err(|e| format!("chown {}: {e}", target.display()))?;
                chmod(&target, meta.mode() & 0o7777)?;
            }
        }
        Ok(())
    }

    /// `.wh.<name>` beside where `relative` was.
    fn whiteout(&self, relative: &str) -> Result<(), String> {
        let path = Path::new(relative);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let whiteout = path.with_file_name(format!(".wh.{name}"));
        self.write(&whiteout.to_string_lossy(), b"")
    }

    /// A file of the layer with `bytes` (its parents made first).
    fn write(&self, relative: &str, bytes: &[u8]) -> Result<(), String> {
        self.parents(relative)?;
        let path = self.layer.join(relative);
        fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The parent's file, copied with owner, mode and times.
    fn copy(&self, relative: &str) -> Result<(), String> {
        self.parents(relative)?;
        cp_a(&self.parent.join(relative), &self.layer.join(relative))
    }
}

fn cp_a(from: &Path, to: &Path) -> Result<(), String> {
    run(Command::new("cp").arg("-a").arg(from).arg(to))
}

fn append(path: &Path, line: &str) -> Result<(), String> {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(line.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_fixtures_map_to_their_plain_tar_and_tools() {
        let gz = Fixture::named("rootfs.tar.gz").expect("known");
        assert_eq!(gz.plain(), "rootfs.tar");
        assert_eq!(gz.decompressor(), Some(&["gzip", "-dc"][..]));
        assert_eq!(gz.compressor(), Some(&["gzip", "-6", "-n", "-c"][..]));
        let zst = Fixture::named("rootfs.tar.zst").expect("known");
        assert_eq!(zst.decompressor(), Some(&["zstd", "-dcq"][..]));
        assert_eq!(zst.compressor(), Some(&["zstd", "-3", "-q", "-c"][..]));
        let plain = Fixture::named("bigfile.tar").expect("known");
        assert_eq!(plain.plain(), "bigfile.tar");
        assert_eq!(plain.decompressor(), None);
        assert_eq!(Fixture::named("nope.tar"), None);
    }

    #[test]
    fn mirrors_from_apt_sources() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                      Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n";
        assert_eq!(
            deb822_mirror(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            deb822_mirror("Types: deb\nURIs: http://x\nSuites: trixie\n"),
            None
        );
        let list = "# comment\ndeb http://security.debian.org bookworm-security main\n\
                    deb [arch=amd64] http://ftp.example/debian bookworm main\n";
        assert_eq!(
            one_line_mirror(list).as_deref(),
            Some("http://ftp.example/debian")
        );
    }

    #[test]
    fn child_layer_parents_copy_owner_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parent = dir.path().join("p");
        let layer = dir.path().join("l");
        fs::create_dir_all(parent.join("usr/share/doc/pkg")).expect("mkdir");
        fs::create_dir(&layer).expect("mkdir");
        chmod(&parent.join("usr/share"), 0o750).expect("chmod");
        let child = ChildLayer {
            parent: &parent,
            layer: &layer,
        };
        child.whiteout("usr/share/doc/pkg").expect("whiteout");
        assert!(layer.join("usr/share/doc/.wh.pkg").is_file());
        use std::os::unix::fs::MetadataExt;
        let mode = fs::metadata(layer.join("usr/share")).expect("stat").mode();
        assert_eq!(mode & 0o7777, 0o750);
    }
}
