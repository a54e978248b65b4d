//! Layers that attack resources rather than paths, through the real `layerstore` binary: an xz
//! stream with a forged dictionary, a sparse file whose declared size is terabytes, a tree
//! nested deeper than any real image; and the layer-content behaviours the Go tool's own suite
//! checks on overlay (changes below an opaque directory, stable naive diffs).
//!
//! Time and memory are bounded generously (a memory rlimit on the child, "well under a minute"),
//! never timed tightly.

use crate::suite;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use layerstore_testsupport::{Capability, require_or_skip};
use suite::{Scratch, Store};

/// Reads a variable-length integer of the xz format at `at`; returns it and the bytes used.
fn xz_vli(bytes: &[u8], at: usize) -> (u64, usize) {
    let mut value = 0u64;
    for (i, &b) in bytes[at..at + 9].iter().enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("bad xz integer at {at}");
}

/// `xz -0` of `plain` (the `xz` tool, as CI installs it), then its LZMA2 dictionary forged to
/// 3 GiB in the first block header, CRC32 recomputed.
fn xz_with_forged_dictionary(plain: &Path) -> Vec<u8> {
    let output = Command::new("xz")
        .args(["-0", "-T1", "--check=none", "-c"])
        .arg(plain)
        .output()
        .expect("runs xz");
    assert!(output.status.success(), "xz failed");
    let mut xz = output.stdout;
    let start = 12; // after the stream header
    let header_len = (usize::from(xz[start]) + 1) * 4;
    let flags = xz[start + 1];
    let mut at = start + 2;
    for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
        if present {
            at += xz_vli(&xz, at).1; // compressed, then uncompressed size
        }
    }
    assert_eq!(&xz[at..at + 2], &[0x21, 0x01], "LZMA2 filter flags");
    xz[at + 2] = 39; // (2 | 1) << (39 / 2 + 11) = 3 GiB
    let mut crc = flate2::Crc::new();
    crc.update(&xz[start..start + header_len - 4]);
    xz[start + header_len - 4..start + header_len].copy_from_slice(&crc.sum().to_le_bytes());
    xz
}

/// `layerstore <store flags> args` with its address space capped at `bytes` (util-linux
/// `prlimit`): whatever the input asks for, the process cannot use more.
fn run_capped(store: &Store, bytes: u64, args: &[&str]) -> std::process::Output {
    Command::new("prlimit")
        .arg(format!("--as={bytes}"))
        .arg("--")
        .arg(suite::binary())
        .args(store.flags())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs prlimit")
}

#[test]
fn an_xz_dictionary_bomb_fails_clearly_within_a_gib() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "vfs",
    );
    // 64 MiB of zeros in a tar: a few kB of xz; its header claims a 3 GiB dictionary.
    let plain = scratch.path().join("zeros.tar");
    let mut tar = tar::Builder::new(fs::File::create(&plain).expect("create"));
    let mut header = tar::Header::new_ustar();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "zeros", std::io::repeat(0).take(64 << 20))
        .expect("tar");
    tar.into_inner().expect("tar");
    let blob = scratch.path().join("bomb.tar.xz");
    suite::write_file(&blob, &xz_with_forged_dictionary(&plain));
    let output = run_capped(
        &store,
        1 << 30,
        &["import-layer", "-f", &blob.display().to_string()],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the bomb imported");
    assert!(
        stderr.contains("more than 256 MiB of memory"),
        "unclear error: {stderr}"
    );
    assert!(store.listed().is_empty(), "a layer was left");
    suite::verify(&store, "after the xz bomb");
}

/// Creates a layer on `parent` with our tool, changes its tree through the mount with `edit`,
/// unmounts it; returns its ID.
fn layer_changed_through_mount(
    store: &Store,
    parent: Option<&str>,
    edit: impl Fn(&Path),
) -> String {
    let mut args = vec!["create-layer"];
    args.extend(parent);
    let id = store.run_ok(&args).trim().to_string();
    let mount = store.run_ok(&["mount", &id]).trim().to_string();
    edit(Path::new(&mount));
    store.run_ok(&["unmount", &id]);
    id
}

/// Lines of the output, sorted (the tools list changes in walk order, which may differ).
fn sorted_lines(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The names in a tar stream, in order.
fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .expect("tar")
        .map(|e| {
            let e = e.expect("entry");
            String::from_utf8_lossy(&e.path_bytes()).into_owned()
        })
        .collect()
}

#[test]
fn overlay_changes_below_a_recreated_opaque_directory_are_adds_as_the_go_tool_lists_them() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    let scratch = Scratch::new();
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "overlay",
    );
    let base = layer_changed_through_mount(&store, None, |m| {
        fs::create_dir_all(m.join("d/sub/deeper")).expect("mkdir");
        fs::write(m.join("d/file"), b"base file").expect("write");
        fs::write(m.join("d/sub/deeper/leaf"), b"base leaf").expect("write");
        fs::create_dir(m.join("kept")).expect("mkdir");
    });
    let middle = layer_changed_through_mount(&store, Some(&base), |m| {
        fs::remove_dir_all(m.join("d")).expect("rm -r d");
    });
    // Made again through the merged mount: overlayfs marks the new `d` opaque.
    let top = layer_changed_through_mount(&store, Some(&middle), |m| {
        fs::create_dir_all(m.join("d/sub/deeper")).expect("mkdir");
        fs::write(m.join("d/file"), b"new file!").expect("write");
        fs::write(m.join("d/sub/deeper/leaf"), b"new leaf").expect("write");
        fs::create_dir(m.join("kept/new")).expect("mkdir");
    });
    let ours = sorted_lines(&store.run_ok(&["changes", &top]));
    let go = store.go(&["changes", &top]);
    assert!(go.status.success(), "Go: {}", suite::describe(&go));
    let go = sorted_lines(&String::from_utf8_lossy(&go.stdout));
    let expected = [
        "Add \"/d\"",
        "Add \"/d/file\"",
        "Add \"/d/sub\"",
        "Add \"/d/sub/deeper\"",
        "Add \"/d/sub/deeper/leaf\"",
        "Add \"/kept/new\"",
        "Modify \"/kept\"",
    ];
    assert_eq!(go, expected, "the Go tool's answer");
    assert_eq!(ours, expected, "ours");
    // The same layer, deleted and made again within one layer: everything below is an Add
    // too (the directory itself is a Delete, exported as the directory and its opaque marker).
    let again = layer_changed_through_mount(&store, Some(&top), |m| {
        fs::remove_dir_all(m.join("d")).expect("rm -r d");
        fs::create_dir_all(m.join("d/sub")).expect("mkdir");
        fs::write(m.join("d/file"), b"third").expect("write");
    });
    let ours = sorted_lines(&store.run_ok(&["changes", &again]));
    assert_eq!(
        ours,
        ["Add \"/d/file\"", "Add \"/d/sub\"", "Delete \"/d\""],
        "below an opaque directory, names the lowers have are Adds"
    );
    // diff and diffsize walk the same tree: every changed name is in the diff, and the size
    // counts the files below the opaque directory.
    for (id, files) in [(&top, &b"new file!new leaf"[..]), (&again, b"third")] {
        let path = scratch.path().join("diff.tar");
        store.run_ok(&["diff", "-u", "-f", &path.display().to_string(), id]);
        let names = tar_names(&fs::read(&path).expect("diff"));
        for line in store.run_ok(&["changes", id]).lines() {
            let name = line.split('"').nth(1).expect("quoted path");
            let name = &name[1..];
            assert!(
                names.iter().any(|n| n.trim_end_matches('/') == name),
                "{name} of `changes` missing from the diff {names:?}"
            );
        }
        let size: u64 = store
            .run_ok(&["diffsize", id])
            .trim()
            .parse()
            .expect("size");
        assert_eq!(size, files.len() as u64, "diffsize of {id}");
    }
}

/// 15 TiB: what a 5 KB tarball can declare as one sparse file.
const SPARSE_REAL_SIZE: u64 = 15 << 40;

/// A PAX 1.0 sparse file `sparse` of [`SPARSE_REAL_SIZE`] bytes holding three 1 KiB data
/// regions (at the start, in the middle, at the end); the rest is holes.
fn sparse_bomb() -> Vec<u8> {
    let regions = [
        (0u64, b'a'),
        (SPARSE_REAL_SIZE / 2, b'b'),
        (SPARSE_REAL_SIZE - 1024, b'c'),
    ];
    let mut map = format!("{}\n", regions.len());
    for (offset, _) in regions {
        map.push_str(&format!("{offset}\n1024\n"));
    }
    let mut data = map.into_bytes();
    data.resize(512, 0);
    for (_, byte) in regions {
        data.extend(std::iter::repeat_n(byte, 1024));
    }
    let mut builder = tar::Builder::new(Vec::new());
    let real_size = SPARSE_REAL_SIZE.to_string();
    builder
        .append_pax_extensions([
            ("GNU.sparse.major", &b"1"[..]),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"sparse"),
            ("GNU.sparse.realsize", real_size.as_bytes()),
        ])
        .expect("pax");
    let mut header = tar::Header::new_ustar();
    header.set_path("GNUSparseFile.0/sparse").expect("name");
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    builder.append(&header, &data[..]).expect("append");
    builder.into_inner().expect("tar")
}

/// Runs `command` and waits at most `limit` for it; kills it and fails past that.
fn output_within(
    mut command: Command,
    limit: std::time::Duration,
    what: &str,
) -> std::process::Output {
    let started = std::time::Instant::now();
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain stdout on a thread so a large output cannot stall the child.
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = Vec::new();
            child
                .stderr
                .take()
                .expect("piped")
                .read_to_end(&mut stderr)
                .expect("stderr");
            let stdout = reader.join().expect("reader").expect("stdout");
            return std::process::Output {
                status,
                stdout,
                stderr,
            };
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_15_tib_sparse_file_diffs_and_checks_by_its_data_and_counts_against_the_cap() {
    require_or_skip!(Capability::Root, Capability::Overlay);
    let scratch = Scratch::new();
    let tarball = sparse_bomb();
    assert!(tarball.len() < 10_240, "{} bytes", tarball.len());
    let path = scratch.path().join("sparse.tar");
    suite::write_file(&path, &tarball);
    for driver in ["vfs", "overlay"] {
        let store = Store::new(
            scratch.path().join(format!("graph-{driver}")),
            scratch.path().join(format!("run-{driver}")),
            driver,
        );
        // The cap counts the declared 15 TiB, not the 5 KB stream.
        let mut capped = store.command(&["import-layer", "-f", &path.display().to_string()]);
        capped.env("LAYERSTORE_MAX_LAYER_SIZE", "1G");
        let output = capped.output().expect("runs");
        assert!(
            !output.status.success(),
            "{driver}: imported under a 1 GiB cap"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("exceeds the limit"), "{driver}: {stderr}");
        assert!(store.listed().is_empty(), "{driver}: a layer was left");
        // The default cap (1 TiB) refuses it too.
        let output = store
            .command(&["import-layer", "-f", &path.display().to_string()])
            .output()
            .expect("runs");
        assert!(
            !output.status.success(),
            "{driver}: imported under the default cap"
        );
        assert!(store.listed().is_empty(), "{driver}: a layer was left");
        // Without a cap (`0`) it imports; diff reads only the data regions (reading the holes
        // would take hours) and gives the tarball back byte for byte; check rebuilds it the
        // same way.
        let mut uncapped = store.command(&["import-layer", "-f", &path.display().to_string()]);
        uncapped.env("LAYERSTORE_MAX_LAYER_SIZE", "0");
        let output = uncapped.output().expect("runs");
        assert!(
            output.status.success(),
            "{driver}: {}",
            suite::describe(&output)
        );
        let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let bound = std::time::Duration::from_secs(60);
        let diff = output_within(store.command(&["diff", "-u", &id]), bound, "diff");
        assert!(
            diff.status.success(),
            "{driver}: {}",
            suite::describe(&diff)
        );
        assert!(
            diff.stdout == tarball,
            "{driver}: the diff differs from the tarball"
        );
        let check = output_within(store.command(&["check"]), bound, "check");
        assert!(
            check.status.success(),
            "{driver}: {}",
            suite::describe(&check)
        );
    }
}

/// Changes a layer's tree in ways a naive or overlay diff must carry: files, a directory, a
/// symlink, a hard link, an owner with a host name, a long name (USTAR prefix) and a longer
/// one (PAX), a `user.` xattr, a deleted file and a directory deleted and made again.
fn child_changes(m: &Path) {
    fs::remove_file(m.join("gone")).expect("rm gone");
    fs::remove_dir_all(m.join("redo")).expect("rm redo");
    fs::create_dir(m.join("redo")).expect("mkdir redo");
    fs::write(m.join("redo/new"), b"new").expect("write");
    fs::create_dir_all(m.join("dir/sub")).expect("mkdir");
    fs::write(m.join("dir/file"), b"content\n").expect("write");
    std::os::unix::fs::symlink("file", m.join("dir/link")).expect("symlink");
    fs::hard_link(m.join("dir/file"), m.join("dir/hard")).expect("link");
    fs::write(m.join("dir/owned"), b"x").expect("write");
    std::os::unix::fs::chown(m.join("dir/owned"), Some(1), Some(1)).expect("chown");
    let long = m.join(format!("dir/{}/{}", "l".repeat(90), "f".repeat(60)));
    fs::create_dir_all(long.parent().expect("parent")).expect("mkdir");
    fs::write(&long, b"long").expect("write");
    let longer = m.join(format!("dir/{}", "p".repeat(200)));
    fs::write(&longer, b"longer").expect("write");
    let status = Command::new("setfattr")
        .args(["-n", "user.note", "-v", "kept"])
        .arg(m.join("dir/file"))
        .status()
        .expect("runs setfattr");
    assert!(status.success(), "setfattr");
}

fn base_changes(m: &Path) {
    fs::write(m.join("gone"), b"bye").expect("write");
    fs::create_dir(m.join("redo")).expect("mkdir");
    fs::write(m.join("redo/old"), b"old").expect("write");
}

/// The 512-byte blocks of a tar stream, with the mtime and checksum fields of `.wh.` headers
/// blanked.
fn blocks_without_whiteout_times(tar: &[u8]) -> Vec<Vec<u8>> {
    let mut blocks: Vec<Vec<u8>> = tar.chunks(512).map(<[u8]>::to_vec).collect();
    for entry in tar::Archive::new(tar).entries().expect("tar") {
        let entry = entry.expect("entry");
        let header = (entry.raw_header_position() / 512) as usize;
        let name = entry.path_bytes().into_owned();
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(&name);
        if base.starts_with(b".wh.") {
            blocks[header][136..156].fill(b'#');
        }
    }
    blocks
}

#[test]
fn a_naive_diff_is_stable_and_an_overlay_diff_is_the_go_tools_byte_for_byte() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    let scratch = Scratch::new();
    for driver in ["overlay", "vfs"] {
        let store = Store::new(
            scratch.path().join(format!("graph-{driver}")),
            scratch.path().join(format!("run-{driver}")),
            driver,
        );
        let base = layer_changed_through_mount(&store, None, base_changes);
        let child = layer_changed_through_mount(&store, Some(&base), child_changes);
        let first = store
            .command(&["diff", "-u", &child])
            .output()
            .expect("diff");
        assert!(
            first.status.success(),
            "{driver}: {}",
            suite::describe(&first)
        );
        // Whiteouts were stamped with the current time: a second later the bytes differed.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = store
            .command(&["diff", "-u", &child])
            .output()
            .expect("diff");
        assert!(
            first.stdout == second.stdout,
            "{driver}: two diffs of one layer differ"
        );
        let names = tar_names(&first.stdout);
        assert!(
            names.contains(&".wh.gone".to_string()),
            "{driver}: {names:?}"
        );
        if driver == "vfs" {
            // Go stamps a naive whiteout with the current time; everything else is the same
            // bytes: headers (whiteouts' times and checksums aside) and contents.
            let go = store.go(&["diff", "-u", &child]);
            assert!(go.status.success(), "Go: {}", suite::describe(&go));
            assert_eq!(
                blocks_without_whiteout_times(&go.stdout),
                blocks_without_whiteout_times(&first.stdout),
                "vfs diff differs from the Go tool's beyond whiteout times"
            );
        }
        if driver == "overlay" {
            let go = store.go(&["diff", "-u", &child]);
            assert!(go.status.success(), "Go: {}", suite::describe(&go));
            if go.stdout != first.stdout {
                let at = go
                    .stdout
                    .iter()
                    .zip(&first.stdout)
                    .position(|(a, b)| a != b)
                    .unwrap_or(go.stdout.len().min(first.stdout.len()));
                panic!(
                    "overlay diff differs from the Go tool's at byte {at} (block {}): Go {:?}, ours {:?}",
                    at / 512,
                    tar_names(&go.stdout),
                    names
                );
            }
        }
    }
}

/// `d/d/.../d` (`depth` components).
fn nested(depth: usize) -> String {
    vec!["d"; depth].join("/")
}

/// The deep-tree attack: `d^2000/f`, then `l1 -> d^2000` and `l1/d^2000/f`, and so on, each
/// name at most 2,002 components long, chained through symlinks to a tree 10,000 deep.
fn symlink_chained_tree() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut through = String::new();
    for chain in 1..=5 {
        let dirs = if through.is_empty() {
            nested(2_000)
        } else {
            format!("{through}/{}", nested(2_000))
        };
        let file = format!("{dirs}/f");
        builder
            .append_pax_extensions([("path", file.as_bytes())])
            .expect("pax");
        let mut header = tar::Header::new_ustar();
        header.set_path("placeholder").expect("name");
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, &b"x"[..]).expect("file");
        builder
            .append_pax_extensions([("linkpath", dirs.as_bytes())])
            .expect("pax");
        let link = format!("l{chain}");
        let mut header = tar::Header::new_ustar();
        header.set_path(&link).expect("name");
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_link_name("placeholder").expect("link");
        header.set_mode(0o777);
        header.set_size(0);
        header.set_cksum();
        builder.append(&header, std::io::empty()).expect("symlink");
        through = link;
    }
    builder.into_inner().expect("tar")
}

#[test]
fn a_tree_chained_ten_thousand_deep_is_refused_at_import_naming_the_entry() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let tarball = symlink_chained_tree();
    let path = scratch.path().join("deep.tar");
    suite::write_file(&path, &tarball);
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "vfs",
    );
    let output = store.run(&["import-layer", "-f", &path.display().to_string()]);
    assert!(!output.status.success(), "a 10,000-deep tree imported");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("directories deep") && stderr.contains("over the limit of 1024"),
        "unclear error: {stderr}"
    );
    assert!(store.listed().is_empty(), "a layer was left");
    suite::verify(&store, "after the deep tree");
}
