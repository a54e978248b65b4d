//! Differential test: one command script runs against Go's `containers-storage` 1.43 and
//! against `layerstore`, each on its own fresh vfs store; stdout, stderr and exit code of every
//! command line must agree once IDs, paths and timestamps are normalised.
//!
//! It lives in the cli crate (not the workspace's `tests/` package) because only the cli
//! package's own tests get the binary's path (`CARGO_BIN_EXE_layerstore`).
//!
//! Both binaries are started with `argv[0] = "containers-storage"`, so usage lines and the
//! `See 'containers-storage CMD --help'.` hints come out the same. Left out on purpose, because
//! layerstore differs deliberately: `mount NAME` (Go fails: it hands the name to the driver),
//! `delete-layer NAME` of a layer with children (Go skips its safety checks), flags after
//! positional arguments (Go takes them as names), `shutdown -f` (Go loops forever), and
//! `version` text. The image and container commands have their own scripts (store_commands
//! and store_differential), run by this module's runner and normaliser.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use layerstore_testsupport::scratch::Scratch;

use layerstore_testsupport::{Capability, go_fixtures, go_tool, require_or_skip};

const ID_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const ID_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const ID_IMPORTED: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const ID_WH: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const ID_MAPPED: &str = "5555555555555555555555555555555555555555555555555555555555555555";

/// One command line of the script.
pub(crate) struct Step {
    /// Arguments after the store flags; `{TARS}` is the fixtures' tarball folder and
    /// `{TMP}` a scratch folder of the run.
    args: Vec<String>,
    /// A file to give as standard input (else empty input).
    stdin: Option<String>,
    /// Compare stdout as bytes (a tar stream) rather than as normalised text.
    binary: bool,
    /// Compare stdout's lines, or the elements of its JSON array, in sorted order: Go prints
    /// changes and `exists` results in map order.
    unordered: bool,
    /// The whole command line after the program name (`{ROOT}` and `{RUN}` are the store's
    /// roots); otherwise the store flags come first.
    raw: bool,
    /// The top-level usage follows the message: compare the message only (our command list
    /// adds `check` and `completions`).
    usage_follows: bool,
}

pub(crate) fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        binary: false,
        unordered: false,
        raw: false,
        usage_follows: false,
    }
}

fn usage_follows(mut s: Step) -> Step {
    s.usage_follows = true;
    s
}

/// The part of a top-level error's output before the usage text.
fn before_usage(text: &str) -> &str {
    let end = [text.find("Usage:"), text.find("\n\n")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// A whole command line, store flags included (see [`Step::raw`]).
pub(crate) fn raw(args: &[&str]) -> Step {
    Step {
        raw: true,
        ..step(args)
    }
}

pub(crate) fn with_stdin(mut s: Step, path: &str) -> Step {
    s.stdin = Some(path.to_string());
    s
}

pub(crate) fn unordered(mut s: Step) -> Step {
    s.unordered = true;
    s
}

pub(crate) fn binary(mut s: Step) -> Step {
    s.binary = true;
    s
}

/// The script: every layer command, in success and failure.
fn script() -> Vec<Step> {
    vec![
        // Listing an empty store.
        step(&["layers"]),
        step(&["layers", "--json"]),
        step(&["layers", "-t"]),
        // create-layer: names, caller IDs, parents, failures.
        step(&["create-layer", "--id", ID_A, "-n", "base", "-n", "base2"]),
        step(&["create-layer", "-n", "plain"]),
        step(&["create-layer", "--id", ID_B, "-n", "child", "base"]),
        step(&["create-layer", "-n", "base"]),
        step(&["create-layer", "--id", ID_A]),
        step(&["create-layer", "nonexist"]),
        step(&["create-layer", "a", "b"]),
        step(&["createlayer", "-j", "-n", "jsonlayer", "-l", "label1"]),
        step(&["layers"]),
        step(&["layers", "-t"]),
        step(&["layers", "--json"]),
        // layer.
        step(&["layer", "base"]),
        step(&["layer", "-j", "base", "child"]),
        step(&["layer", "base", "nonexist"]),
        step(&["layer", "-j", "nonexist"]),
        step(&["layer"]),
        // import-layer, applydiff.
        step(&[
            "import-layer",
            "--id",
            ID_IMPORTED,
            "-f",
            "{TARS}/basic.tar",
            "-n",
            "imported",
        ]),
        with_stdin(
            step(&["import-layer", "-n", "imported-gz"]),
            "{TARS}/basic.tar.gz",
        ),
        step(&["import-layer", "-f", "/nonexistent/file"]),
        step(&["import-layer", "-f", "{TARS}/basic.tar", "-n", "imported"]),
        step(&[
            "importlayer",
            "-j",
            "--id",
            ID_WH,
            "-f",
            "{TARS}/child-whiteouts.tar",
            "-n",
            "wh",
            "imported",
        ]),
        step(&["applydiff", "-f", "{TARS}/basic.tar", "plain"]),
        step(&["applydiff", "-f", "{TARS}/basic.tar", "nonexist"]),
        step(&["apply-diff", "-f", "/nonexistent", "plain"]),
        step(&["applydiff"]),
        // diffsize, changes, diff.
        step(&["diffsize", "imported"]),
        step(&["diff-size", "wh"]),
        step(&["diffsize", "nonexist"]),
        unordered(step(&["changes", "wh"])),
        unordered(step(&["changes", "-j", "wh"])),
        step(&["changes", "nonexist"]),
        step(&["changes"]),
        binary(step(&["diff", "imported"])),
        binary(step(&["diff", "-u", "wh"])),
        step(&["diff", "-f", "{TMP}/out.tar", "imported"]),
        step(&["diff", "-b", "imported"]),
        step(&["diff", "-x", "imported"]),
        step(&["diff", "nonexist"]),
        // exists.
        unordered(step(&["exists", "base", "nonexist"])),
        step(&["exists", "-q", "base"]),
        step(&["exists", "-j", "base", "nonexist"]),
        step(&["exists", "-l", "base"]),
        step(&["exists", "-i", "base"]),
        step(&["exists"]),
        // Names.
        step(&["get-names", "base"]),
        step(&["get-names", "-j", "base"]),
        step(&["get-names", "nonexist"]),
        step(&["add-names", "-n", "extra", "base"]),
        step(&["add-names", "-j", "-n", "extra2", "base"]),
        step(&["add-names", "-n", "base", "child"]),
        step(&["getnames", "child"]),
        step(&["set-names", "-j", "-n", "only1", "-n", "only2", "plain"]),
        step(&["set-names", "-n", "y", "nonexist"]),
        step(&["add-names"]),
        // Metadata.
        step(&["set-metadata", "-m", "hello world", "child"]),
        step(&["set-metadata", "child"]),
        step(&["set-metadata", "-m", "x", "nonexist"]),
        step(&["set-metadata", "-f", "/nonexistent", "child"]),
        step(&["metadata", "child"]),
        step(&["metadata", "-q", "child"]),
        step(&["metadata", "-j", "child", "nonexist"]),
        step(&["setmetadata", "-m", "multi\nline\n", "child"]),
        step(&["metadata", "child"]),
        // Big data.
        step(&["list-layer-data", "child"]),
        step(&["list-layer-data", "-j", "child"]),
        step(&["set-layer-data", "-f", "{TARS}/basic.tar", "child", "key1"]),
        with_stdin(
            step(&["set-layer-data", "child", "Key/2"]),
            "{TARS}/child-whiteouts.tar",
        ),
        step(&["list-layer-data", "child"]),
        step(&["list-layer-data", "-j", "child"]),
        binary(step(&["get-layer-data", "child", "Key/2"])),
        step(&["get-layer-data", "child", "missing"]),
        step(&["get-layer-data", "nonexist", "key1"]),
        step(&["set-layer-data", "child", ""]),
        step(&["get-layer-data", "child"]),
        // ID mappings and parent owners.
        step(&[
            "create-layer",
            "-r",
            "--id",
            ID_MAPPED,
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:200000:65536",
            "-n",
            "mapped",
            "base",
        ]),
        step(&["layer", "mapped"]),
        step(&["layer-parent-owners", "mapped"]),
        step(&["mount", ID_MAPPED]),
        step(&["layer-parent-owners", "-j", "mapped"]),
        step(&["unmount", ID_MAPPED]),
        step(&["delete-layer", "mapped"]),
        step(&["layer-parent-owners", "child"]),
        step(&["layer-parent-owners", "-j", "child", "nonexist"]),
        // Mounts (by ID: the Go tool cannot mount by name).
        step(&["mount", ID_IMPORTED]),
        step(&["mounted", ID_IMPORTED]),
        step(&["mount", "-j", ID_IMPORTED]),
        step(&["mounted", "-j", ID_IMPORTED]),
        step(&["layers", "-t"]),
        step(&["unmount", ID_IMPORTED]),
        step(&["umount", "-j", ID_IMPORTED]),
        step(&["mounted", ID_IMPORTED]),
        step(&["unmount", "nonexist"]),
        step(&["unmount", "-j", "nonexist"]),
        step(&["mounted", "nonexist"]),
        step(&["mount", "nonexist"]),
        step(&["mount", "-j", "nonexist"]),
        step(&["mount", "-r", ID_IMPORTED]),
        step(&["mount", "-j", "--ro", ID_IMPORTED]),
        step(&["mount", ID_IMPORTED]),
        step(&["shutdown"]),
        step(&["shutdown", "-j"]),
        step(&["unmount", "--force", ID_IMPORTED]),
        step(&["shutdown", "-j"]),
        // Deletion.
        step(&["delete-layer", ID_A]),
        step(&["delete-layer", "-j", ID_A]),
        step(&["delete-layer", "nonexist"]),
        step(&["delete-layer", "-j", "nonexist"]),
        step(&["deletelayer", "-j", ID_B]),
        step(&["delete-layer"]),
        step(&["delete", "nonexist"]),
        step(&["delete", "-j", "jsonlayer"]),
        step(&["exists", "jsonlayer"]),
        step(&["layers"]),
        // Store-wide commands.
        step(&["status"]),
        step(&["status", "-j"]),
        step(&["version", "-j"]),
        // Command-line errors.
        step(&["layers", "--zz"]),
        step(&["layers", "-z"]),
        step(&["layers", "--json=maybe"]),
        step(&["bogus"]),
        step(&["layers", "--help"]),
        step(&["mount", ID_IMPORTED]),
        step(&["wipe", "-j"]),
        step(&["mounted", ID_IMPORTED]),
        step(&["layers", "--json"]),
        step(&["wipe"]),
    ]
}

/// What one command line did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    stdout: Vec<u8>,
    stderr: String,
    pub(crate) code: Option<i32>,
}

/// Runs the script with `binary` on a fresh store under `dir` with `driver`.
fn run_script(binary: &Path, dir: &Path, driver: &str, steps: &[Step]) -> Vec<Outcome> {
    let tars = go_fixtures().join("tars");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("scratch dir");
    let expand = |s: &str| {
        s.replace("{TARS}", &tars.display().to_string())
            .replace("{TMP}", &tmp.display().to_string())
            .replace("{ROOT}", &dir.join("root").display().to_string())
            .replace("{RUN}", &dir.join("run").display().to_string())
    };
    steps
        .iter()
        .map(|step| {
            let mut command = Command::new(binary);
            command.arg0("containers-storage");
            if !step.raw {
                command
                    .arg("--graph")
                    .arg(dir.join("root"))
                    .arg("--run")
                    .arg(dir.join("run"))
                    .arg("--storage-driver")
                    .arg(driver);
            }
            command
                .args(step.args.iter().map(|a| expand(a)))
                .env_remove("STORAGE_DRIVER")
                .env_remove("STORAGE_OPTS")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match &step.stdin {
                Some(path) => {
                    let file = std::fs::File::open(expand(path)).expect("stdin file");
                    command.stdin(file);
                }
                None => {
                    command.stdin(Stdio::null());
                }
            }
            let output = command.output().expect("runs");
            Outcome {
                stdout: output.stdout,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                code: output.status.code(),
            }
        })
        .collect()
}

/// Replaces the run's folder, random 64-hex IDs (numbered by first appearance; the script's own
/// IDs stay) and creation timestamps with placeholders.
struct Normaliser {
    dir: String,
    ids: HashMap<String, usize>,
    /// The IDs the script itself chose: kept as they are, so that one extra random ID in one
    /// run does not renumber every later mention of them.
    chosen: HashSet<String>,
}

/// The 64-hex runs of a word.
fn hex_ids(word: &str) -> impl Iterator<Item = &str> {
    word.split(|c: char| !(c.is_ascii_digit() || ('a'..='f').contains(&c)))
        .filter(|run| run.len() == 64)
}

impl Normaliser {
    fn new(dir: &Path, steps: &[Step]) -> Self {
        let chosen = steps
            .iter()
            .flat_map(|step| step.args.iter())
            .flat_map(|arg| hex_ids(arg))
            .map(str::to_string)
            .collect();
        Normaliser {
            dir: dir.display().to_string(),
            ids: HashMap::new(),
            chosen,
        }
    }

    fn text(&mut self, text: &str) -> String {
        let text = text.replace(&self.dir, "<DIR>");
        let mut out = String::with_capacity(text.len());
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let is_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
            let run = bytes[i..].iter().take_while(|b| is_hex(b)).count();
            if run == 64 && !self.chosen.contains(&text[i..i + 64]) {
                let next = self.ids.len();
                let n = *self.ids.entry(text[i..i + 64].to_string()).or_insert(next);
                out.push_str(&format!("<ID{n}>"));
                i += 64;
            } else if run > 0 {
                out.push_str(&text[i..i + run]);
                i += run;
            } else {
                let c = text[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
        normalise_created(&out)
    }
}

/// Sorts the lines of `text`, or the elements of the JSON array it is.
fn sorted(text: &str) -> String {
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(text) {
        let mut items: Vec<String> = items.iter().map(|v| v.to_string()).collect();
        items.sort();
        return format!("[{}]", items.join(","));
    }
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines.join("\n")
}

/// `"created":"<anything>"` → `"created":"<TIME>"`, and the same for debug lines'
/// `time="<anything>"`.
fn normalise_created(text: &str) -> String {
    let mut text = text.to_string();
    for key in ["\"created\":\"", "time=\""] {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(pos) = rest.find(key) {
            out.push_str(&rest[..pos + key.len()]);
            rest = &rest[pos + key.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            out.push_str("<TIME>");
            rest = &rest[end..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

pub(crate) fn describe(step: &Step) -> String {
    step.args.join(" ")
}

/// The described mismatches, the reference binary's outcomes, and the two scratch directories
/// (kept until the caller drops them).
pub(crate) type Differences = (Vec<String>, Vec<Outcome>, Scratch, Scratch);

/// Runs `steps` with both tools on fresh vfs stores and describes every command line whose
/// normalised stdout, stderr or exit code differ. Also answers the two scratch directories.
fn differences(steps: &[Step]) -> Differences {
    let go = go_tool().expect("the Go tool is installed");
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_layerstore"));
    differences_between(&go, &ours, "vfs", steps)
}

/// Runs `steps` with the binaries `first` (the reference, "go") and `second` ("ours") on fresh
/// stores with `driver`, and describes every command line whose normalised stdout, stderr or
/// exit code differ. Also answers the first binary's outcomes and the two scratch directories.
pub(crate) fn differences_between(
    first: &Path,
    second: &Path,
    driver: &str,
    steps: &[Step],
) -> Differences {
    let go_dir = Scratch::new();
    let our_dir = Scratch::new();
    let go_out = run_script(first, go_dir.path(), driver, steps);
    let our_out = run_script(second, our_dir.path(), driver, steps);

    let mut go_norm = Normaliser::new(go_dir.path(), steps);
    let mut our_norm = Normaliser::new(our_dir.path(), steps);
    let mut mismatches = Vec::new();
    for ((step, go), ours) in steps.iter().zip(&go_out).zip(&our_out) {
        let stdout_equal = if step.binary {
            go.stdout == ours.stdout
        } else {
            let go_text = go_norm.text(&String::from_utf8_lossy(&go.stdout));
            let our_text = our_norm.text(&String::from_utf8_lossy(&ours.stdout));
            if step.unordered {
                sorted(&go_text) == sorted(&our_text)
            } else {
                go_text == our_text
            }
        };
        let go_err = go_norm.text(&go.stderr);
        let our_err = our_norm.text(&ours.stderr);
        let (stdout_equal, go_err, our_err) = if step.usage_follows {
            let go_text = go_norm.text(&String::from_utf8_lossy(&go.stdout));
            let our_text = our_norm.text(&String::from_utf8_lossy(&ours.stdout));
            (
                before_usage(&go_text) == before_usage(&our_text),
                before_usage(&go_err).to_string(),
                before_usage(&our_err).to_string(),
            )
        } else {
            (stdout_equal, go_err, our_err)
        };
        if !stdout_equal || go_err != our_err || go.code != ours.code {
            mismatches.push(format!(
                "$ {}\n  go:   rc={:?} stdout={:?} stderr={:?}\n  ours: rc={:?} stdout={:?} stderr={:?}",
                describe(step),
                go.code,
                go_norm.text(&String::from_utf8_lossy(&go.stdout)),
                go_err,
                ours.code,
                our_norm.text(&String::from_utf8_lossy(&ours.stdout)),
                our_err,
            ));
        }
    }
    (mismatches, go_out, go_dir, our_dir)
}

pub(crate) fn assert_agree(mismatches: &[String], lines: usize) {
    assert!(
        mismatches.is_empty(),
        "{} of {lines} command lines differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn go_tool_and_layerstore_agree() {
    require_or_skip!(Capability::GoTool, Capability::Root);
    let steps = script();
    assert!(
        steps.len() >= 40,
        "the script covers at least 40 command lines"
    );
    let (mismatches, go_out, go_dir, our_dir) = differences(&steps);
    let failing = go_out.iter().filter(|o| o.code != Some(0)).count();
    eprintln!(
        "{} command lines ({failing} failing ones), {} mismatches",
        steps.len(),
        mismatches.len()
    );
    assert!(failing >= 20, "the script exercises failures too");
    assert_agree(&mismatches, steps.len());
    // The two `diff -f` files are the same bytes (the original tarball).
    let go_file = std::fs::read(go_dir.path().join("tmp/out.tar")).expect("go diff file");
    let our_file = std::fs::read(our_dir.path().join("tmp/out.tar")).expect("our diff file");
    assert_eq!(go_file, our_file);
    assert_eq!(
        our_file,
        std::fs::read(go_fixtures().join("tars/basic.tar")).expect("basic.tar")
    );
}

const ID_FIRST: &str = "6666666666666666666666666666666666666666666666666666666666666666";
const ID_LAST: &str = "7777777777777777777777777777777777777777777777777777777777777777";

/// Each form of the Go tool's flag parser (store doc §5.2): repeats (the last value wins,
/// lists append, before and after the command), booleans with `=value`, quotes in `=`
/// forms, groups of one-letter flags, and the errors mflag gives for bad groups.
fn flag_forms() -> Vec<Step> {
    let store = ["--graph", "{ROOT}", "--run", "{RUN}", "-s", "vfs"];
    let with_store = |args: &[&str]| {
        let mut all: Vec<&str> = store.to_vec();
        all.extend_from_slice(args);
        raw(&all)
    };
    vec![
        // Global flags repeated before the command: the upstream suite's helper form.
        raw(&[
            "--debug",
            "--graph",
            "{ROOT}",
            "--run",
            "{RUN}",
            "--storage-driver",
            "vfs",
            "--debug=false",
            "layers",
        ]),
        raw(&[
            "--graph", "{ROOT}/x", "--graph", "{ROOT}", "-R", "{RUN}", "-s", "vfs", "status",
        ]),
        raw(&[
            "-g", "{ROOT}", "-R", "{RUN}/x", "-s", "vfs", "status", "-R", "{RUN}",
        ]),
        raw(&[
            "-g", "{ROOT}", "-R", "{RUN}", "-s", "btrfs", "-s", "vfs", "status",
        ]),
        // --storage-opt appends, across the command word too.
        with_store(&[
            "--storage-opt",
            "vfs.ignore_chown_errors=true",
            "--storage-opt=.ignore_chown_errors=true",
            "status",
        ]),
        with_store(&[
            "--storage-opt",
            "vfs.ignore_chown_errors=true",
            "status",
            "--storage-opt",
            ".ignore_chown_errors=false",
        ]),
        with_store(&["status", "--storage-opt", "vfs.ignore_chown_errors=true"]),
        // --debug in every spelling, before and after the command.
        with_store(&["-D", "layers"]),
        with_store(&["--debug=true", "layers", "--debug=false"]),
        with_store(&["--debug=0", "layers", "--debug"]),
        usage_follows(with_store(&["-Dj", "-D", "layers"])),
        with_store(&["-D", "layers", "-Dj"]),
        raw(&["-gD", "{ROOT}", "-R", "{RUN}", "-s", "vfs", "layers"]),
        // Command flags: the last single value wins, lists append.
        with_store(&[
            "create-layer",
            "--id",
            ID_FIRST,
            "--id",
            ID_LAST,
            "-n",
            "a",
            "-n",
            "b",
        ]),
        with_store(&["set-metadata", "-m", "one", "-m", "two", ID_LAST]),
        with_store(&["metadata", "-q", ID_LAST]),
        with_store(&[
            "create-layer",
            "-j",
            "--uidmap",
            "0:1:1",
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:200000:65536",
            "-l",
            "first",
            "--label=second",
            "-n",
            "mapped",
        ]),
        with_store(&["layer", "-j", "mapped"]),
        // Booleans: repeats, `=value` in Go's spellings, and `--json false` (a positional).
        with_store(&["layers", "--json", "--json=false"]),
        with_store(&["layers", "-j", "-j"]),
        with_store(&["layers", "--json=FALSE"]),
        with_store(&["layers", "-j=0", "--json=t"]),
        with_store(&["layers", "--json", "false"]),
        with_store(&["layers", "--tree", "--tree=f", "-jt"]),
        with_store(&["layers", "--json="]),
        with_store(&["layers", "-"]),
        // Quotes: one level stripped in `=` forms only.
        with_store(&[
            "create-layer",
            "-j",
            "--name=\"q\"",
            "-n",
            "\"r\"",
            "-n='s'",
            "-n=\"t",
            "--name=''",
        ]),
        with_store(&["layers"]),
        // Groups of one-letter flags take values from the next arguments.
        with_store(&["create-layer", "-nj", "x"]),
        with_store(&["create-layer", "-nn", "y1", "y2"]),
        with_store(&["create-layer", "-jn", "z", "-n", "z2"]),
        with_store(&["create-layer", "-jn"]),
        with_store(&["create-layer", "-jq"]),
        with_store(&["create-layer", "-name", "x"]),
        with_store(&["layers", "-json"]),
        usage_follows(raw(&[
            "-graph", "{ROOT}", "-R", "{RUN}", "-s", "vfs", "layers",
        ])),
        // `--` ends the flags.
        with_store(&["create-layer", "--", "-n"]),
        with_store(&["layers"]),
        with_store(&["wipe"]),
    ]
}

#[test]
fn go_tool_and_layerstore_parse_flags_alike() {
    require_or_skip!(Capability::GoTool, Capability::Root);
    let steps = flag_forms();
    let (mismatches, _, _go_dir, _our_dir) = differences(&steps);
    eprintln!(
        "{} flag forms, {} mismatches",
        steps.len(),
        mismatches.len()
    );
    assert_agree(&mismatches, steps.len());
}

const ID_EMPTY: &str = "8888888888888888888888888888888888888888888888888888888888888888";

/// Commands that succeed with an empty answer: a layer with no names, metadata, big data,
/// changes, mounts or parent owners, an empty big-data item, an empty store.
fn empty_answers() -> Vec<Step> {
    vec![
        step(&["layers"]),
        step(&["layers", "-j"]),
        step(&["layers", "-t"]),
        step(&["create-layer", "--id", ID_EMPTY]),
        step(&["metadata", ID_EMPTY]),
        step(&["metadata", "-q", ID_EMPTY]),
        step(&["metadata", "-j", ID_EMPTY]),
        step(&["metadata", ID_EMPTY, "nonexist"]),
        step(&["metadata", "-j", ID_EMPTY, "nonexist"]),
        step(&["set-metadata", "-m", "", ID_EMPTY]),
        with_stdin(
            step(&["set-metadata", "-f", "/dev/null", ID_EMPTY]),
            "/dev/null",
        ),
        step(&["metadata", "-j", ID_EMPTY]),
        step(&["set-metadata", "-m", "two\n\n", ID_EMPTY]),
        step(&["metadata", ID_EMPTY]),
        step(&["metadata", "-j", ID_EMPTY]),
        step(&["get-names", ID_EMPTY]),
        step(&["get-names", "-j", ID_EMPTY]),
        step(&["set-names", ID_EMPTY]),
        step(&["set-names", "-j", ID_EMPTY]),
        step(&["add-names", "-j", ID_EMPTY]),
        step(&["list-layer-data", ID_EMPTY]),
        step(&["list-layer-data", "-j", ID_EMPTY]),
        step(&["set-layer-data", "-f", "/dev/null", ID_EMPTY, "empty"]),
        step(&["get-layer-data", ID_EMPTY, "empty"]),
        step(&[
            "get-layer-data",
            "-f",
            "{TMP}/empty-item",
            ID_EMPTY,
            "empty",
        ]),
        step(&["list-layer-data", "-j", ID_EMPTY]),
        step(&["changes", ID_EMPTY]),
        step(&["changes", "-j", ID_EMPTY]),
        step(&["diffsize", ID_EMPTY]),
        binary(step(&["diff", "-u", ID_EMPTY])),
        step(&["mounted", ID_EMPTY]),
        step(&["mounted", "-j", ID_EMPTY]),
        step(&["layer-parent-owners", ID_EMPTY]),
        step(&["layer-parent-owners", "-j", ID_EMPTY]),
        step(&["layer", ID_EMPTY]),
        step(&["layer", "-j", ID_EMPTY]),
        step(&["exists", "-q", ID_EMPTY]),
        step(&["version"]),
        step(&["delete-layer", ID_EMPTY]),
        step(&["layers", "-j"]),
        step(&["wipe"]),
        step(&["wipe", "-j"]),
        step(&["shutdown"]),
    ]
}

#[test]
fn go_tool_and_layerstore_agree_on_empty_answers() {
    require_or_skip!(Capability::GoTool, Capability::Root);
    let steps = empty_answers();
    let (mismatches, go_out, _go_dir, _our_dir) = differences(&steps);
    let succeeding = go_out.iter().filter(|o| o.code == Some(0)).count();
    eprintln!(
        "{} command lines ({succeeding} succeed for Go), {} mismatches",
        steps.len(),
        mismatches.len()
    );
    assert_agree(&mismatches, steps.len());
}
