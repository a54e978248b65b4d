//! The Go tool reads the `.tar-split.gz` files we write: a layer applied by Go
//! containers-storage, its tar-split file replaced by ours, is `diff`ed by Go byte for byte;
//! for a sparse file, Go stops with its checksum error instead of giving a different tarball.

use std::path::Path;
use std::process::{Command, Output};

use layerstore_tarsplit::{JsonLinesPacker, disassemble, gzip_packer};
use layerstore_testsupport::go::run_go;
use layerstore_testsupport::{Capability, go_fixtures, require_or_skip};

fn go(store: &Path, args: &[&str]) -> Output {
    run_go(&store.join("graph"), &store.join("run"), "vfs", args)
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn go_diffs_layers_from_our_tar_split_files() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let store = tempfile::tempdir().unwrap();
    for name in [
        "basic",
        "pax",
        "gnu-long",
        "devices",
        "nonutf8",
        "trailing-zeros",
        "sparse-pax",
    ] {
        let tar_path = go_fixtures().join("tars").join(format!("{name}.tar"));
        let tarball = std::fs::read(&tar_path).unwrap();
        let created = go(store.path(), &["create-layer"]);
        check(&created, "create-layer");
        let id = String::from_utf8(created.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_string();
        check(
            &go(
                store.path(),
                &["applydiff", "-f", tar_path.to_str().unwrap(), &id],
            ),
            "applydiff",
        );
        let ours = disassemble(&tarball[..], gzip_packer(Vec::new()))
            .unwrap()
            .finish()
            .unwrap();
        let split = store
            .path()
            .join("graph/vfs-layers")
            .join(format!("{id}.tar-split.gz"));
        assert!(split.exists(), "{name}: Go wrote no tar-split file");
        std::fs::write(&split, ours).unwrap();

        let diff = go(store.path(), &["diff", "-u", &id]);
        if name == "sparse-pax" {
            assert!(
                !diff.status.success(),
                "{name}: Go should refuse our sparse record"
            );
            let stderr = String::from_utf8_lossy(&diff.stderr);
            assert!(stderr.contains("checksum"), "{name}: {stderr}");
            continue;
        }
        check(&diff, name);
        assert!(
            diff.stdout == tarball,
            "{name}: Go's diff from our record differs"
        );
    }
}

/// Applies `tar_path` with Go and returns the JSON lines of the tar-split file Go wrote.
fn go_records(store: &Path, tar_path: &Path) -> Vec<u8> {
    let created = go(store, &["create-layer"]);
    check(&created, "create-layer");
    let id = String::from_utf8(created.stdout).unwrap();
    let id = id.lines().next().unwrap().trim();
    check(
        &go(store, &["applydiff", "-f", tar_path.to_str().unwrap(), id]),
        "applydiff",
    );
    let gz = std::fs::read(store.join(format!("graph/vfs-layers/{id}.tar-split.gz"))).unwrap();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    text
}

/// A tarball GNU tar writes with a global PAX header and names that exercise Go's JSON string
/// escaping (HTML characters, control characters, U+2028): Go's records and ours are equal.
#[test]
fn global_headers_and_json_escaping_match_go() {
    require_or_skip!(Capability::Root, Capability::GoTool, Capability::GnuTar);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let names = [
        "a<b>&c",
        "quote\"back\\slash",
        "ctl\u{1}\u{8}\u{c}\u{7f}\ttab",
        "line\u{2028}sep\u{2029}",
        "caf\u{e9}",
    ];
    for (i, name) in names.iter().enumerate() {
        std::fs::write(src.join(name), format!("content {i}\n")).unwrap();
    }
    let tar_path = work.path().join("g.tar");
    let status = Command::new("tar")
        .args(["--format=pax", "--pax-option=comment=hello-global", "-cf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&src)
        .args(names)
        .status()
        .unwrap();
    assert!(status.success());
    let tarball = std::fs::read(&tar_path).unwrap();
    assert_eq!(tarball[156], b'g', "GNU tar wrote no global header first");

    let go_lines = go_records(&work.path().join("store"), &tar_path);
    let ours = disassemble(&tarball[..], JsonLinesPacker::new(Vec::new()))
        .unwrap()
        .into_inner()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&go_lines)
    );
    assert!(ours == go_lines);
}

/// A tree with hard links, long symlink targets, long names, a fifo, a device and an xattr,
/// tarred by GNU tar in GNU and POSIX formats, with 70,000 bytes appended after the archive:
/// Go's records and ours are equal line for line (trailing chunks included).
#[test]
fn gnu_tar_dialects_and_trailing_bytes_match_go() {
    require_or_skip!(Capability::Root, Capability::GoTool, Capability::GnuTar);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let deep = src.join("d".repeat(60)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(90)), b"deep file\n").unwrap();
    std::fs::write(src.join("big"), vec![b'z'; 300_000]).unwrap();
    std::fs::hard_link(src.join("big"), src.join("big-link")).unwrap();
    std::os::unix::fs::symlink("t".repeat(150), src.join("long-symlink")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let xattr_ok = Command::new("setfattr")
        .args(["-n", "user.note", "-v", "hello"])
        .arg(src.join("big"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(xattr_ok, "setfattr failed");

    for (label, format) in [("gnu", "--format=gnu"), ("posix", "--format=posix")] {
        let tar_path = work.path().join(format!("{label}.tar"));
        let status = Command::new("tar")
            .args([format, "--xattrs", "--numeric-owner", "-cf"])
            .arg(&tar_path)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        let mut tarball = std::fs::read(&tar_path).unwrap();
        tarball.extend((0..70_000u32).map(|i| if i < 30_000 { 0 } else { (i % 251) as u8 }));
        std::fs::write(&tar_path, &tarball).unwrap();

        let go_lines = go_records(&work.path().join(format!("store-{label}")), &tar_path);
        let ours = disassemble(&tarball[..], JsonLinesPacker::new(Vec::new()))
            .unwrap()
            .into_inner()
            .unwrap();
        let (ours, go_lines) = (
            String::from_utf8(ours).unwrap(),
            String::from_utf8(go_lines).unwrap(),
        );
        assert_eq!(ours.lines().count(), go_lines.lines().count(), "{label}");
        for (i, (o, g)) in ours.lines().zip(go_lines.lines()).enumerate() {
            assert_eq!(o, g, "{label}: line {}", i + 1);
        }
    }
}
