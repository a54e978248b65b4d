//! Shared parts of the reliability suites (crash, concurrency, fault, hostile archives): a
//! scratch store driven through the `layerstore` binary and the Go tool, the integrity check
//! run after every trial, a seeded RNG, tarball builders and a guard that leaves no mounts.

// Each suite file uses a different part of this module.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The `layerstore` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_layerstore"))
}

/// The Go `containers-storage` tool (callers gate on `Capability::GoTool`).
pub fn go_tool() -> PathBuf {
    layerstore_testsupport::go_tool().unwrap_or_else(|| "containers-storage".into())
}

/// Lower-case hex SHA-256 of `bytes`, as `sha256:<hex>`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::from("sha256:");
    for b in hash {
        text.push_str(&format!("{b:02x}"));
    }
    text
}

/// Exit status, stdout and stderr of `output`, for failure messages (each stream cut to its
/// first 600 bytes: a failed `diff` has written part of a tarball).
pub fn describe(output: &Output) -> String {
    let head = |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        output.status.code(),
        head(&output.stdout),
        head(&output.stderr)
    )
}

/// xorshift64*: a tiny seeded generator, so that a failing trial reruns from its printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1) ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `true` with probability 1/2.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// A seed from the environment variable `var` (decimal or `0x` hex), else `default`.
pub fn seed_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        })
        .unwrap_or(default)
}

/// A count from the environment variable `var`, else `default`.
pub fn count_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A store (graph root, run root, driver) driven through the binaries.
#[derive(Debug, Clone)]
pub struct Store {
    /// The graph root.
    pub graph: PathBuf,
    /// The run root.
    pub run: PathBuf,
    /// The driver's name.
    pub driver: String,
}

impl Store {
    /// The store at `graph` / `run` with `driver`.
    pub fn new(graph: impl Into<PathBuf>, run: impl Into<PathBuf>, driver: &str) -> Self {
        Store {
            graph: graph.into(),
            run: run.into(),
            driver: driver.to_string(),
        }
    }

    /// A store at `<scratch>/graph` and `<scratch>/run` with `driver`.
    pub fn in_scratch(scratch: &Scratch, driver: &str) -> Self {
        Store::new(
            scratch.path().join("graph"),
            scratch.path().join("run"),
            driver,
        )
    }

    /// The global flags selecting this store.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--graph".into(),
            self.graph.display().to_string(),
            "--run".into(),
            self.run.display().to_string(),
            "--storage-driver".into(),
            self.driver.clone(),
        ]
    }

    /// `layerstore <flags> args`, stdin closed, ready to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(self.flags())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("CONTAINERS_STORAGE_CONF")
            .env_remove(layerstore_layers::crash::CRASH_ENV);
        command
    }

    /// Runs `layerstore <flags> args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runs layerstore")
    }

    /// Runs `layerstore <flags> args`, killing it and panicking if it has not finished within
    /// `limit` (a generous bound: it catches a call that would block forever, such as a read of
    /// a FIFO under the store's lock, not a slow one).
    pub fn run_bounded(&self, args: &[&str], limit: std::time::Duration) -> Output {
        run_bounded(self.command(args), &format!("layerstore {args:?}"), limit)
    }

    /// Runs it and returns stdout; panics (naming `args`) unless it succeeded.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "layerstore {args:?} on {}: {}",
            self.graph.display(),
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs the Go tool (bounded in time, [`layerstore_testsupport::go::run_go`]).
    pub fn go(&self, args: &[&str]) -> Output {
        layerstore_testsupport::go::run_go(&self.graph, &self.run, &self.driver, args)
    }

    /// Runs the Go tool and returns its stdout; panics (naming `args`) unless it succeeded.
    pub fn go_ok(&self, args: &[&str]) -> String {
        layerstore_testsupport::go::run_go_text(&self.graph, &self.run, &self.driver, args)
    }

    /// The ID the Go tool prints first (then a line per name); requires success.
    pub fn go_id(&self, args: &[&str]) -> String {
        layerstore_testsupport::go::go_id(&self.graph, &self.run, &self.driver, args)
    }

    /// `<graph>/<driver>-layers`.
    pub fn layers_dir(&self) -> PathBuf {
        self.graph.join(format!("{}-layers", self.driver))
    }

    /// `<graph>/<driver>-layers/layers.json`.
    pub fn layers_json(&self) -> PathBuf {
        self.layers_dir().join("layers.json")
    }

    /// `<run>/<driver>-layers/mountpoints.json`.
    pub fn mountpoints_json(&self) -> PathBuf {
        self.run
            .join(format!("{}-layers", self.driver))
            .join("mountpoints.json")
    }

    /// `<graph>/<driver>-layers/<id>.tar-split.gz`.
    pub fn tar_split(&self, id: &str) -> PathBuf {
        self.layers_dir().join(format!("{id}.tar-split.gz"))
    }

    /// The records of layers.json as read from disk (missing file: none).
    pub fn records(&self) -> Result<Vec<Layer>, String> {
        let path = self.layers_json();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        let values: Vec<Value> =
            serde_json::from_slice(&bytes).map_err(|e| format!("parse {}: {e}", path.display()))?;
        Ok(values.iter().map(Layer::from_json).collect())
    }

    /// The layers our tool lists (`layers --json`, which opens the store read-write and so
    /// cleans up what a crash left).
    pub fn listed(&self) -> Vec<Layer> {
        let text = self.run_ok(&["layers", "--json"]);
        let values: Vec<Value> = serde_json::from_str(&text).expect("layers --json is JSON");
        values.iter().map(Layer::from_json).collect()
    }

    /// The mount counts of mountpoints.json (id → count).
    pub fn mount_counts(&self) -> BTreeMap<String, i64> {
        let Ok(bytes) = fs::read(self.mountpoints_json()) else {
            return BTreeMap::new();
        };
        let values: Vec<Value> =
            serde_json::from_slice(&bytes).expect("mountpoints.json is a JSON array");
        values
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap_or_default().to_string(),
                    v["count"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Runs `command` (stdout and stderr piped), killing it and panicking, naming `what`, if it
/// has not finished within `limit`.
pub fn run_bounded(mut command: Command, what: &str, limit: std::time::Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    layerstore_testsupport::process::wait_bounded(child, what, limit)
}

/// The parts of a layer record the suites compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The ID.
    pub id: String,
    /// Its names.
    pub names: Vec<String>,
    /// The parent's ID, empty for a base layer.
    pub parent: String,
    /// `diff-digest`, if recorded.
    pub diff_digest: Option<String>,
    /// Whether `flags.incomplete` is `true`.
    pub incomplete: bool,
}

impl Layer {
    fn from_json(value: &Value) -> Layer {
        Layer {
            id: value["id"].as_str().unwrap_or_default().to_string(),
            names: value["names"]
                .as_array()
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            parent: value["parent"].as_str().unwrap_or_default().to_string(),
            diff_digest: value["diff-digest"].as_str().map(str::to_string),
            incomplete: value["flags"]["incomplete"] == Value::Bool(true),
        }
    }
}

/// Whether the binary has the `check` command yet (another change adds it).
pub fn check_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new(binary())
            .args(["check", "--help"])
            .stdin(Stdio::null())
            .output()
            // Like the Go tool's, `--help` exits 125; what it prints tells.
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout).starts_with("Usage: layerstore check")
            })
    })
}

/// `layerstore check --json`: `Ok(())` when clean, else the problems it printed.
/// `None` when the command does not exist in this build.
pub fn check(store: &Store) -> Option<Result<(), String>> {
    if !check_available() {
        return None;
    }
    let output = store.run(&["check", "--json"]);
    let report: Option<Value> = serde_json::from_slice(&output.stdout).ok();
    let problems = report
        .as_ref()
        .and_then(|r| r["problems"].as_array())
        .map_or(0, Vec::len);
    if output.status.success() && problems == 0 {
        Some(Ok(()))
    } else {
        Some(Err(describe(&output)))
    }
}

/// The integrity every suite demands after every step: the store opens read-write; layers.json
/// parses; no layer is flagged incomplete; every listed layer gives back a diff, and one whose
/// `diff-digest` is recorded gives back exactly those bytes; `check` (when present) is clean.
/// Returns the listed layers.
pub fn verify(store: &Store, context: &str) -> Vec<Layer> {
    let listed = store.listed();
    let records = store
        .records()
        .unwrap_or_else(|e| panic!("{context}: layers.json: {e}"));
    let listed_ids: Vec<&str> = listed.iter().map(|l| l.id.as_str()).collect();
    let record_ids: Vec<&str> = records.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(listed_ids, record_ids, "{context}: listed vs layers.json");
    for record in &records {
        assert!(
            !record.incomplete,
            "{context}: layer {} is still flagged incomplete",
            record.id
        );
        let output = store.run(&["diff", "-u", &record.id]);
        assert!(
            output.status.success(),
            "{context}: diff of layer {}: {}",
            record.id,
            describe(&output)
        );
        if let Some(expected) = &record.diff_digest {
            assert_eq!(
                &sha256_digest(&output.stdout),
                expected,
                "{context}: diff of layer {} does not reproduce its diff-digest",
                record.id
            );
        }
    }
    if let Some(Err(problems)) = check(store) {
        panic!("{context}: check is not clean: {problems}");
    }
    listed
}

/// The Go tool opens the store read-write and lists the same IDs as `expected`.
pub fn go_agrees(store: &Store, expected: &[Layer], context: &str) {
    let output = store.go(&["layers", "--json"]);
    assert!(
        output.status.success(),
        "{context}: the Go tool cannot open the store: {}",
        describe(&output)
    );
    let values: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{context}: Go's layers --json: {e}: {}", describe(&output)));
    let mut go_ids: Vec<String> = values
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut ours: Vec<String> = expected.iter().map(|l| l.id.clone()).collect();
    go_ids.sort();
    ours.sort();
    assert_eq!(go_ids, ours, "{context}: Go tool and layerstore disagree");
}

/// Scratch directories that detach every mount beneath them when dropped, and the mount
/// listing the checks use: one home, in testsupport.
pub use layerstore_testsupport::scratch::{Scratch, mounts_under, unmount_under};

/// Mounts a tmpfs of `size_mib` MiB on `dir` (created). Unmounted by the owning [`Scratch`].
pub fn mount_tmpfs(dir: &Path, size_mib: u64) {
    fs::create_dir_all(dir).expect("create tmpfs mount point");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
        .arg("tmpfs")
        .arg(dir)
        .status()
        .expect("runs mount");
    assert!(status.success(), "mount tmpfs on {}", dir.display());
}

/// Remounts the mount at `dir` read-only (`ro`) or read-write; `Err` with mount's message.
pub fn remount(dir: &Path, read_only: bool) -> Result<(), String> {
    let output = Command::new("mount")
        .args([
            "-o",
            if read_only {
                "remount,ro"
            } else {
                "remount,rw"
            },
        ])
        .arg(dir)
        .output()
        .expect("runs mount");
    if output.status.success() {
        Ok(())
    } else {
        Err(describe(&output))
    }
}

/// A tarball (GNU tar's default record padding not added) of `files`: `(path, contents)`,
/// directories first as the paths need them.
pub fn tarball(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    for (path, contents) in files {
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            parent.push_str(part);
            parent.push('/');
            if !dirs.contains(&parent) {
                dirs.push(parent.clone());
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_mtime(1_700_000_000);
                header.set_cksum();
                builder
                    .append_data(&mut header, &parent, &[][..])
                    .expect("append dir");
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, path, &contents[..])
            .expect("append file");
    }
    builder.into_inner().expect("finish tar")
}

/// A tarball of `count` files of random sizes up to `max_size` under a few directories.
pub fn random_tarball(rng: &mut Rng, prefix: &str, count: usize, max_size: usize) -> Vec<u8> {
    let files: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            let size = rng.below(max_size as u64 + 1) as usize;
            let fill = rng.next_u64();
            let contents: Vec<u8> = (0..size)
                .map(|j| (fill.rotate_left(j as u32 % 64) as u8) ^ j as u8)
                .collect();
            (format!("{prefix}/d{}/f{i}", i % 4), contents)
        })
        .collect();
    tarball(&files)
}

/// Writes `bytes` to `path`.
pub fn write_file(path: &Path, bytes: &[u8]) {
    let mut file = fs::File::create(path).expect("create file");
    file.write_all(bytes).expect("write file");
}
