//! Tests of what `layerstore` adds to the Go tool and of its configuration: the progress bar
//! (shown on a pseudo-terminal, absent on a pipe), `storage.conf`, shell completions, JSON
//! errors, the image and container tables on a terminal, and the README's import-list-give-back job.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use layerstore_testsupport::scratch::Scratch;

use layerstore_testsupport::{Capability, require_or_skip};

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_layerstore"))
}

/// A scratch store and the flags that select it.
struct Store {
    dir: Scratch,
}

impl Store {
    fn new() -> Self {
        Store {
            dir: Scratch::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--graph".into(),
            self.path().join("root").display().to_string(),
            "--run".into(),
            self.path().join("run").display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
        ]
    }

    /// Runs `layerstore <store flags> args` with stdout and stderr piped.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .args(self.flags())
            .args(args)
            .stdin(Stdio::null())
            .env_remove("CONTAINERS_STORAGE_CONF")
            .output()
            .expect("runs layerstore")
    }

    /// Runs it on a pseudo-terminal (`script` from util-linux) and returns what the terminal
    /// showed.
    fn run_on_terminal(&self, args: &[&str]) -> String {
        let mut line = binary().display().to_string();
        for arg in self
            .flags()
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
        {
            line.push(' ');
            line.push_str(arg);
        }
        let output = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("runs script");
        assert!(output.status.success(), "{line}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture_tar(name: &str) -> String {
    layerstore_testsupport::go_fixtures()
        .join("tars")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn progress_bar_shows_on_a_terminal_and_not_on_a_pipe() {
    require_or_skip!(Capability::Root, Capability::Script);
    let store = Store::new();
    let basic = fixture_tar("basic.tar");

    // Piped: stdout and stderr carry exactly what the Go tool prints.
    let piped = store.run(&["import-layer", "--id", &"a".repeat(64), "-f", &basic]);
    assert!(piped.status.success(), "{piped:?}");
    assert_eq!(text(&piped.stdout), format!("{}\n", "a".repeat(64)));
    assert!(piped.stderr.is_empty(), "no bar on a pipe: {piped:?}");
    let piped = store.run(&["create-layer", "-n", "target"]);
    assert!(piped.status.success());
    let piped = store.run(&["applydiff", "-f", &basic, "target"]);
    assert!(
        piped.status.success() && piped.stderr.is_empty(),
        "{piped:?}"
    );

    // On a terminal: a bar with the byte count, the rate and an ETA.
    let size = std::fs::metadata(&basic).expect("basic.tar").len();
    let shown = store.run_on_terminal(&["import-layer", "-f", &basic]);
    assert!(shown.contains("import-layer"), "{shown:?}");
    assert!(
        shown.contains("KiB/s") || shown.contains(" B/s"),
        "rate: {shown:?}"
    );
    assert!(shown.contains("ETA"), "{shown:?}");
    assert!(
        shown.contains(&format!("{:.2} KiB", size as f64 / 1024.0)),
        "total size {size} shown: {shown:?}"
    );
    let shown = store.run_on_terminal(&["create-layer", "-n", "target2"]);
    assert!(!shown.contains("ETA"), "no bar without a stream: {shown:?}");
    let shown = store.run_on_terminal(&["applydiff", "-f", &basic, "target2"]);
    assert!(
        shown.contains("applydiff") && shown.contains("ETA"),
        "{shown:?}"
    );
    let out = store.path().join("out.tar");
    let shown = store.run_on_terminal(&[
        "diff",
        "-u",
        "-f",
        &out.display().to_string(),
        &"a".repeat(64),
    ]);
    assert!(shown.contains("diff") && shown.contains("ETA"), "{shown:?}");
    assert_eq!(
        std::fs::read(&out).expect("diff output"),
        std::fs::read(&basic).expect("basic.tar"),
        "the bar does not disturb the stream"
    );
}

#[test]
fn storage_conf_is_honoured() {
    require_or_skip!(Capability::Root);
    let dir = Scratch::new();
    let graph = dir.path().join("graph");
    let run = dir.path().join("run");
    let conf = dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n\n\
             [storage.options.vfs]\nignore_chown_errors = \"true\"\n",
            graph.display(),
            run.display()
        ),
    )
    .expect("write conf");
    let with_conf = |args: &[&str]| {
        Command::new(binary())
            .args(args)
            .env("CONTAINERS_STORAGE_CONF", &conf)
            .env_remove("STORAGE_DRIVER")
            .env_remove("STORAGE_OPTS")
            .stdin(Stdio::null())
            .output()
            .expect("runs")
    };
    let status = with_conf(&["status"]);
    assert!(status.status.success(), "{status:?}");
    assert_eq!(
        text(&status.stderr),
        format!(
            "Root: {}\nRun Root: {}\nDriver Name: vfs\nDriver Options: [vfs.ignore_chown_errors=true]\n",
            graph.display(),
            run.display()
        )
    );
    let created = with_conf(&["create-layer", "-n", "in-conf-store"]);
    assert!(created.status.success(), "{created:?}");
    let layers_json =
        std::fs::read_to_string(graph.join("vfs-layers/layers.json")).expect("layers.json");
    assert!(layers_json.contains("\"in-conf-store\""), "{layers_json}");
    assert!(run.join("vfs-layers").is_dir());

    // $STORAGE_OPTS replaces the file's options when no store flag is given ...
    let status = Command::new(binary())
        .arg("status")
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .env("STORAGE_OPTS", "vfs.ignore_chown_errors=false")
        .output()
        .expect("runs");
    assert!(text(&status.stderr).contains("Driver Options: [vfs.ignore_chown_errors=false]\n"));
    // ... and a store flag sets the environment and the file's options aside.
    let other = dir.path().join("other");
    let status = Command::new(binary())
        .args(["-g", &other.display().to_string(), "-s", "vfs", "status"])
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .env("STORAGE_OPTS", "vfs.ignore_chown_errors=false")
        .output()
        .expect("runs");
    let stderr = text(&status.stderr);
    assert!(
        stderr.starts_with(&format!(
            "Root: {}\nRun Root: {}\n",
            other.display(),
            run.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Driver Options: []\n"), "{stderr}");
}

#[test]
fn malformed_storage_conf_is_an_error_naming_the_line() {
    let dir = Scratch::new();
    let conf = dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        "[storage]\ndriver = \"vfs\"\n\nrunroot = /tmp/unquoted\n",
    )
    .expect("write");
    let output = Command::new(binary())
        .arg("layers")
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(&format!("error initializing: {}: line 4: ", conf.display())),
        "{stdout}"
    );
    assert!(!dir.path().join("graph").exists());
}

#[test]
fn completions_are_scripts_for_the_shell() {
    let output = Command::new(binary())
        .args(["completions", "bash"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let script = text(&output.stdout);
    assert!(script.contains("_layerstore()"), "a bash function");
    assert!(
        script.contains("complete -F _layerstore"),
        "registered for layerstore"
    );
    for word in [
        "create-layer",
        "import-layer",
        "applydiff",
        "--storage-driver",
        "--json",
        // The image and container commands and their flags.
        "create-image",
        "images-by-digest",
        "get-image-data-digest",
        "create-container",
        "get-container-run-dir",
        "container-parent-owners",
        "copy",
        "--volatile",
        "--format",
    ] {
        assert!(script.contains(word), "completes {word}");
    }
    // The script is valid bash.
    let dir = Scratch::new();
    let file = dir.path().join("layerstore.bash");
    std::fs::write(&file, &script).expect("write");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(check.status.success(), "bash -n: {check:?}");

    let zsh = Command::new(binary())
        .args(["completions", "zsh"])
        .output()
        .expect("runs");
    assert!(zsh.status.success() && text(&zsh.stdout).starts_with("#compdef layerstore"));
    let bad = Command::new(binary())
        .args(["completions", "tcsh"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(125), "{bad:?}");
}

#[test]
fn json_errors_and_refused_commands() {
    require_or_skip!(Capability::Root);
    let store = Store::new();
    let output = store.run(&["--json-errors", "get-names", "nonexist"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "{\"error\":\"layer not known\"}\n");
    let output = store.run(&["get-names", "nonexist"]);
    assert_eq!(
        text(&output.stderr),
        "layer not known\n",
        "Go's text by default"
    );

    // The image and container commands answer as the Go tool does (they were refused as
    // "not supported" while the tool drove only the layer store).
    let output = store.run(&["images"]);
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty() && output.stderr.is_empty());
    let output = store.run(&["image", "x"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty() && output.stderr.is_empty());
    let output = store.run(&["create-container", "x"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        text(&output.stderr),
        "locating image with ID \"x\": image not known\n"
    );
}

#[test]
fn images_and_containers_show_a_table_on_a_terminal_and_go_lines_otherwise() {
    require_or_skip!(Capability::Root, Capability::Script);
    let store = Store::new();
    let layer = store.run(&["create-layer", "--id", &"a".repeat(64)]);
    assert!(layer.status.success(), "{layer:?}");
    let image_id = "b".repeat(64);
    let image = store.run(&[
        "create-image",
        "--id",
        &image_id,
        "-n",
        "localhost/demo:1.0",
        &"a".repeat(64),
    ]);
    assert!(image.status.success(), "{image:?}");
    let container_id = "c".repeat(64);
    let container = store.run(&[
        "create-container",
        "--id",
        &container_id,
        "-n",
        "web",
        "localhost/demo:1.0",
    ]);
    assert!(container.status.success(), "{container:?}");

    // A pipe gets the Go tool's lines.
    let piped = store.run(&["images"]);
    assert_eq!(
        text(&piped.stdout),
        format!("{image_id}\n\tname: localhost/demo:1.0\n")
    );
    let piped = store.run(&["containers"]);
    assert_eq!(
        text(&piped.stdout),
        format!("{container_id}\n\tname: web\n")
    );

    // A terminal gets podman's columns, one row per image name and per container.
    let shown = store.run_on_terminal(&["images"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown:?}");
    let header: Vec<&str> = lines[0]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    let row: Vec<&str> = lines[1]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        row,
        [
            "localhost/demo",
            "1.0",
            "bbbbbbbbbbbb",
            "Less than a minute ago",
            "0 B"
        ],
        "{shown:?}"
    );
    let shown = store.run_on_terminal(&["containers"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown:?}");
    assert!(lines[0].starts_with("CONTAINER ID"), "{shown:?}");
    assert!(
        lines[1].starts_with("cccccccccccc   localhost/demo:1.0   Less than a minute ago   web"),
        "{shown:?}"
    );

    // `--format go` and `--json` give scripts on a terminal what they get on a pipe.
    let shown = store.run_on_terminal(&["images", "--format", "go"]);
    assert_eq!(
        shown.replace("\r\n", "\n"),
        format!("{image_id}\n\tname: localhost/demo:1.0\n")
    );
    let shown = store.run_on_terminal(&["containers", "--json"]);
    assert!(
        shown.starts_with(&format!("[{{\"id\":\"{container_id}\"")),
        "{shown:?}"
    );
    let bad = store.run(&["images", "--format", "yaml"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        text(&bad.stderr),
        "unknown output format \"yaml\": use table or go\n"
    );
}

#[test]
fn example_layer_imports_lists_and_comes_back_identical() {
    require_or_skip!(Capability::Root);
    let examples = layerstore_testsupport::workspace_root().join("examples");
    let sums = std::fs::read_to_string(examples.join("SHA256SUMS")).expect("SHA256SUMS");
    let want = sums
        .lines()
        .find(|l| l.ends_with(" examples/layer.tar"))
        .and_then(|l| l.split_whitespace().next())
        .expect("layer.tar's digest")
        .to_string();
    let store = Store::new();
    let gz = examples.join("layer.tar.gz").display().to_string();
    let imported = store.run(&["import-layer", "-j", "-f", &gz, "-n", "example"]);
    assert!(imported.status.success(), "{imported:?}");
    let record: serde_json::Value = serde_json::from_slice(&imported.stdout).expect("json");
    assert_eq!(record["diff-digest"], format!("sha256:{want}"));
    assert_eq!(record["compression"], 2, "gzip detected");
    let listed = store.run(&["layers"]);
    assert!(text(&listed.stdout).contains("\tname: example\n"));
    let given_back = store.run(&["diff", "-u", "example"]);
    assert!(given_back.status.success());
    use sha2::Digest as _;
    let got = format!("{:x}", sha2::Sha256::digest(&given_back.stdout));
    assert_eq!(got, want, "the uncompressed diff is the original layer.tar");
}

#[test]
fn example_layer_round_trip_works_for_an_ordinary_user() {
    require_or_skip!(Capability::Root, Capability::Setpriv);
    let home = Scratch::new();
    let nobody = 65534;
    std::os::unix::fs::chown(home.path(), Some(nobody), Some(nobody)).expect("chown home");
    let examples = layerstore_testsupport::workspace_root().join("examples");
    // The user may not reach the build's folders (a CI clone can be private to root): run a
    // copy of the binary and of the example from a folder everyone can read.
    use std::os::unix::fs::PermissionsExt;
    let public = Scratch::new();
    std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tool = public.path().join("layerstore");
    std::fs::copy(binary(), &tool).expect("copy binary");
    let gz_copy = public.path().join("layer.tar.gz");
    std::fs::copy(examples.join("layer.tar.gz"), &gz_copy).expect("copy example");
    let as_user = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&tool)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .output()
            .expect("runs setpriv")
    };
    let gz = gz_copy.display().to_string();
    let imported = as_user(&["import-layer", "-f", &gz]);
    assert!(imported.status.success(), "{imported:?}");
    let id = text(&imported.stdout).trim().to_string();
    let status = as_user(&["status"]);
    let status = text(&status.stderr);
    let graph = home.path().join(".local/share/containers/storage");
    assert!(
        status.starts_with(&format!("Root: {}\n", graph.display())),
        "{status}"
    );
    assert!(status.contains("Driver Name: vfs\n"), "{status}");
    let given_back = as_user(&["diff", "-u", &id]);
    assert!(given_back.status.success(), "{given_back:?}");
    assert_eq!(
        given_back.stdout,
        std::fs::read(examples.join("layer.tar")).expect("layer.tar"),
        "the user's store gives the layer back byte for byte"
    );
}

#[test]
fn junk_diffs_fail_with_the_words_the_bats_suite_expects() {
    require_or_skip!(Capability::Root);
    // apply-junk.bats: junk fails with "invalid tar header" or "unexpected EOF".
    let store = Store::new();
    assert!(
        store
            .run(&["create-layer", "-n", "target"])
            .status
            .success()
    );
    let dir = Scratch::new();
    let text_junk = dir.path().join("junk.txt");
    std::fs::write(&text_junk, "hello world, not a tar at all").expect("write");
    let gz = gzip(b"hello world, not a tar at all");
    let gz_junk = dir.path().join("junk.gz");
    std::fs::write(&gz_junk, &gz).expect("write");
    let block_junk = dir.path().join("junk.bin");
    std::fs::write(&block_junk, vec![0x5a; 3 * 512]).expect("write");
    for junk in [&text_junk, &gz_junk, &block_junk] {
        let output = store.run(&["applydiff", "-f", &junk.display().to_string(), "target"]);
        assert_eq!(output.status.code(), Some(1), "{junk:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("unexpected EOF") || stderr.contains("invalid tar header"),
            "{junk:?}: {stderr}"
        );
    }
    let listed = store.run(&["layers"]);
    assert_eq!(text(&listed.stdout).matches("\tname: target\n").count(), 1);
}

/// `data` through `gzip -c`.
fn gzip(data: &[u8]) -> Vec<u8> {
    let output = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(data)?;
            child.wait_with_output()
        })
        .expect("gzip");
    assert!(output.status.success());
    output.stdout
}

#[test]
fn max_layer_size_stops_a_decompression_bomb_and_keeps_nothing() {
    require_or_skip!(Capability::Root);
    // A 16 MiB file of zeros: about 16 KiB of gzip.
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::best(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_path("zeros").expect("path");
    header.set_size(16 << 20);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append(&header, std::io::repeat(0).take(16 << 20))
        .expect("append");
    let bomb = builder.into_inner().expect("tar").finish().expect("gzip");
    let store = Store::new();
    let file = store.path().join("bomb.tar.gz");
    std::fs::write(&file, &bomb).expect("write bomb");
    let import = |cap: Option<&str>| {
        let mut cmd = Command::new(binary());
        cmd.args(store.flags())
            .args(["import-layer", "-f", &file.display().to_string()])
            .stdin(Stdio::null())
            .env_remove("CONTAINERS_STORAGE_CONF");
        match cap {
            Some(cap) => cmd.env("LAYERSTORE_MAX_LAYER_SIZE", cap),
            None => cmd.env_remove("LAYERSTORE_MAX_LAYER_SIZE"),
        };
        cmd.output().expect("runs layerstore")
    };

    let refused = import(Some("1M"));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("1048576"),
        "the error names the cap: {stderr}"
    );
    assert_eq!(text(&store.run(&["layers"]).stdout), "", "nothing listed");
    let dirs = std::fs::read_dir(store.path().join("root/vfs/dir")).expect("vfs dir");
    assert_eq!(dirs.count(), 0, "no layer directory left behind");

    let bad = import(Some("lots"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stdout).contains("LAYERSTORE_MAX_LAYER_SIZE"),
        "{bad:?}"
    );

    // Without the cap (`0`), or under the default one (1 TiB), the same layer imports: the
    // cap is what stopped it.
    let accepted = import(Some("0"));
    assert!(accepted.status.success(), "{accepted:?}");
    let accepted = import(None);
    assert!(accepted.status.success(), "{accepted:?}");
    assert_eq!(text(&store.run(&["layers"]).stdout).lines().count(), 2);
}
