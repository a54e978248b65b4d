//! Hostile-archive suite: the `layerstore` CLI imports malicious layer tarballs (path escapes
//! through `..`, absolute names, symlinks, hardlinks and whiteouts; absurd sizes and counts;
//! malformed headers; compression bombs) on vfs and overlay. Each must be refused (non-zero
//! exit, no layer added, nothing left incomplete) or contained (imported, its diff given back
//! byte for byte), and in every case a sibling "host" directory, a canary outside the scratch
//! directory and the store's other layers are checked untouched.
//!
//! Tarballs are built here from raw 512-byte headers (checksums computed) where the `tar` crate
//! would refuse to write them. The configurable cap on the expanded size
//! (`ApplyOptions::max_uncompressed_size`) is exposed neither by the CLI nor by
//! `layerstore_layers::LayerStore`, so the 10 GiB bombs against that cap go through
//! `layerstore_archive::apply`; through the CLI, bombs are contained by a small filesystem.

use crate::suite;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use layerstore_testsupport::{Capability, require_or_skip};
use suite::{Scratch, Store};

/// How an entry is typed (`typeflag`).
mod kind {
    pub const FILE: u8 = b'0';
    pub const HARDLINK: u8 = b'1';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR: u8 = b'3';
    pub const BLOCK: u8 = b'4';
    pub const DIR: u8 = b'5';
    pub const PAX: u8 = b'x';
    pub const GNU_LONGNAME: u8 = b'L';
    pub const GNU_LONGLINK: u8 = b'K';
}

/// A raw ustar header block with a correct checksum. `size_field` overrides the octal size.
fn header(
    name: &[u8],
    typeflag: u8,
    size: u64,
    link: &[u8],
    mode: u32,
    size_field: Option<[u8; 12]>,
) -> [u8; 512] {
    let mut block = [0u8; 512];
    let put = |block: &mut [u8; 512], at: usize, len: usize, bytes: &[u8]| {
        let n = bytes.len().min(len);
        block[at..at + n].copy_from_slice(&bytes[..n]);
    };
    put(&mut block, 0, 100, name);
    put(&mut block, 100, 8, format!("{mode:07o}\0").as_bytes());
    put(&mut block, 108, 8, b"0000000\0");
    put(&mut block, 116, 8, b"0000000\0");
    match size_field {
        Some(field) => put(&mut block, 124, 12, &field),
        None => put(&mut block, 124, 12, format!("{size:011o}\0").as_bytes()),
    }
    put(&mut block, 136, 12, b"14741265400\0");
    block[156] = typeflag;
    put(&mut block, 157, 100, link);
    put(&mut block, 257, 6, b"ustar\0");
    put(&mut block, 263, 2, b"00");
    put(&mut block, 329, 8, b"0000000\0");
    put(&mut block, 337, 8, b"0000000\0");
    set_checksum(&mut block);
    block
}

fn set_checksum(block: &mut [u8; 512]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Builds a tarball entry by entry.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn raw(mut self, block: [u8; 512]) -> Self {
        self.0.extend_from_slice(&block);
        self
    }

    fn data(mut self, data: &[u8]) -> Self {
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn entry(self, name: &[u8], typeflag: u8, link: &[u8], mode: u32, data: &[u8]) -> Self {
        self.raw(header(name, typeflag, data.len() as u64, link, mode, None))
            .data(data)
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name.as_bytes(), kind::FILE, b"", 0o644, data)
    }

    fn dir(self, name: &str) -> Self {
        self.entry(name.as_bytes(), kind::DIR, b"", 0o755, b"")
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(
            name.as_bytes(),
            kind::SYMLINK,
            target.as_bytes(),
            0o777,
            b"",
        )
    }

    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(
            name.as_bytes(),
            kind::HARDLINK,
            target.as_bytes(),
            0o644,
            b"",
        )
    }

    fn pax(self, records: &[(&str, &str)]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = format!(" {key}={value}\n");
            // The length prefix counts itself.
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        self.entry(b"PaxHeaders/x", kind::PAX, b"", 0o644, &data)
    }

    fn end(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

/// What a case may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Must be refused.
    Refused,
    /// Either refused or imported, as long as nothing outside the layer changed.
    RefusedOrContained,
}

struct Case {
    name: &'static str,
    tar: Vec<u8>,
    expect: Expect,
}

/// Paths the cases aim at.
struct Targets {
    /// The sibling "host" directory (absolute, no trailing slash).
    host: String,
    /// `../` enough times to climb from any layer root to `/`, then the host path: a relative
    /// escape to the host directory.
    climb: String,
    /// A canary path outside the scratch directory that an absolute entry could create.
    outside: PathBuf,
}

fn cases(t: &Targets) -> Vec<Case> {
    use Expect::*;
    let host = t.host.as_str();
    let climb = t.climb.as_str();
    let outside = t.outside.display().to_string();
    let mut cases = vec![
        Case {
            name: "dotdot-file",
            tar: Tar::default()
                .file(&format!("{climb}/dotdot-file"), b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "dotdot-inside-a-path",
            tar: Tar::default()
                .dir("a/")
                .file(&format!("a/../{climb}/nested-dotdot"), b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "absolute-name",
            tar: Tar::default().file(&outside, b"x").end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "absolute-symlink-then-file",
            tar: Tar::default()
                .symlink("link", host)
                .file("link/through-absolute-symlink", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "relative-symlink-then-file",
            tar: Tar::default()
                .symlink("link", climb)
                .file("link/through-relative-symlink", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "symlink-then-overwrite-host-file",
            tar: Tar::default()
                .dir("d/")
                .symlink("d/l", climb)
                .file("d/l/sub/inner.txt", b"pwned")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            // CVE-2026-33056: a directory entry through a symlink of the same name chmods the
            // target.
            name: "symlink-then-directory-entry-chmod",
            tar: Tar::default()
                .symlink("link", host)
                .entry(b"link/", kind::DIR, b"", 0o777, b"")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "symlink-chain",
            tar: Tar::default()
                .symlink("a", "b")
                .symlink("b", host)
                .file("a/chained", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "symlink-to-proc-magic-link",
            tar: Tar::default()
                .symlink("cwd", "/proc/self/cwd")
                .file("cwd/magic-link", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "directory-replaced-by-symlink",
            tar: Tar::default()
                .dir("d/")
                .file("d/f", b"x")
                .symlink("d", host)
                .file("d/after-swap", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "hardlink-to-absolute-host-file",
            tar: Tar::default()
                .hardlink("hl", &format!("{host}/canary.txt"))
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "hardlink-to-relative-escape",
            tar: Tar::default()
                .hardlink("hl", &format!("{climb}/canary.txt"))
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "hardlink-then-write-through-it",
            tar: Tar::default()
                .hardlink("hl", &format!("{climb}/canary.txt"))
                .file("hl", b"pwned")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "hardlink-through-symlinked-parent",
            tar: Tar::default()
                .symlink("s", host)
                .hardlink("hl", "s/canary.txt")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "hardlink-to-outward-symlink-then-write",
            tar: Tar::default()
                .symlink("s", &format!("{host}/canary.txt"))
                .hardlink("h", "s")
                .file("h", b"pwned")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "whiteout-of-dotdot",
            tar: Tar::default().file(".wh...", b"").end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "whiteout-of-dotdot-in-subdir",
            tar: Tar::default().dir("sub/").file("sub/.wh...", b"").end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "whiteout-through-symlink",
            tar: Tar::default()
                .symlink("link", host)
                .file("link/.wh.canary.txt", b"")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "opaque-whiteout-through-symlink",
            tar: Tar::default()
                .symlink("link", host)
                .file("link/.wh..wh..opq", b"")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "whiteout-absolute",
            tar: Tar::default()
                .file(&format!("{host}/.wh.canary.txt"), b"")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "whiteout-relative-escape",
            tar: Tar::default()
                .file(&format!("{climb}/.wh.canary.txt"), b"")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "nul-inside-name",
            tar: Tar::default()
                .entry(
                    format!("ok\0{climb}/after-nul").as_bytes(),
                    kind::FILE,
                    b"",
                    0o644,
                    b"x",
                )
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "pax-path-escape",
            tar: Tar::default()
                .pax(&[("path", &format!("{climb}/pax-escape"))])
                .file("innocent", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "pax-linkpath-escape",
            tar: Tar::default()
                .pax(&[("linkpath", host)])
                .symlink("innocent-link", "innocent")
                .file("innocent-link/pax-linkpath", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "gnu-longname-escape",
            tar: Tar::default()
                .entry(
                    b"././@LongLink",
                    kind::GNU_LONGNAME,
                    b"",
                    0o644,
                    format!("{climb}/long-escape\0").as_bytes(),
                )
                .file("innocent", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "gnu-longlink-symlink-escape",
            tar: Tar::default()
                .entry(
                    b"././@LongLink",
                    kind::GNU_LONGLINK,
                    b"",
                    0o644,
                    format!("{host}\0").as_bytes(),
                )
                .symlink("ll", "innocent")
                .file("ll/through-longlink", b"x")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            // TARmageddon: PAX size disagrees with the ustar size, hiding a header.
            name: "pax-size-desync",
            tar: {
                let smuggled = Tar::default()
                    .file(&format!("{climb}/smuggled"), b"pwned")
                    .0;
                Tar::default()
                    .pax(&[("size", &smuggled.len().to_string())])
                    .raw(header(b"carrier", kind::FILE, 0, b"", 0o644, None))
                    .data(&smuggled)
                    .end()
            },
            expect: RefusedOrContained,
        },
        Case {
            name: "huge-pax-header",
            tar: Tar::default()
                .raw(header(
                    b"PaxHeaders/x",
                    kind::PAX,
                    (1 << 32) - 1,
                    b"",
                    0o644,
                    None,
                ))
                .data(b"20 path=aaaaaaaaaaa\n")
                .end(),
            expect: Refused,
        },
        Case {
            name: "huge-gnu-longname",
            tar: Tar::default()
                .raw(header(
                    b"././@LongLink",
                    kind::GNU_LONGNAME,
                    1 << 30,
                    b"",
                    0o644,
                    None,
                ))
                .data(b"aaaa")
                .end(),
            expect: Refused,
        },
        Case {
            name: "gnu-sparse-huge-map",
            tar: Tar::default()
                .pax(&[
                    ("GNU.sparse.major", "1"),
                    ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.name", "sparse"),
                    ("GNU.sparse.realsize", "1099511627776"),
                ])
                .raw(header(
                    b"GNUSparseFile.0/sparse",
                    kind::FILE,
                    512,
                    b"",
                    0o644,
                    None,
                ))
                .data(b"99999999999999\n0\n")
                .end(),
            expect: Refused,
        },
        Case {
            name: "absurd-size-base256",
            tar: {
                let mut field = [0xffu8; 12];
                field[0] = 0x80;
                field[1] = 0x7f;
                Tar::default()
                    .raw(header(b"big", kind::FILE, 0, b"", 0o644, Some(field)))
                    .data(b"short")
                    .end()
            },
            expect: Refused,
        },
        Case {
            name: "negative-size-base256",
            tar: Tar::default()
                .raw(header(b"neg", kind::FILE, 0, b"", 0o644, Some([0xff; 12])))
                .end(),
            expect: Refused,
        },
        Case {
            name: "size-larger-than-the-stream",
            tar: Tar::default()
                .raw(header(
                    b"truncated",
                    kind::FILE,
                    1 << 33,
                    b"",
                    0o644,
                    Some(*b"77777777777\0"),
                ))
                .data(b"only this")
                .0,
            expect: Refused,
        },
        Case {
            name: "non-octal-size",
            tar: Tar::default()
                .raw(header(
                    b"junk",
                    kind::FILE,
                    0,
                    b"",
                    0o644,
                    Some(*b"zzzzzzzzzzz\0"),
                ))
                .end(),
            expect: Refused,
        },
        Case {
            name: "bad-checksum",
            tar: {
                let mut block = header(b"evil", kind::FILE, 1, b"", 0o644, None);
                block[148] = b'7';
                Tar::default().raw(block).data(b"x").end()
            },
            expect: Refused,
        },
        Case {
            name: "device-nodes-and-setuid",
            tar: Tar::default()
                .entry(b"mem", kind::CHAR, b"", 0o600, b"")
                .entry(b"sda", kind::BLOCK, b"", 0o600, b"")
                .entry(b"suid-root", kind::FILE, b"", 0o4755, b"#!/bin/sh\n")
                .end(),
            expect: RefusedOrContained,
        },
        Case {
            name: "path-deeper-than-path-max",
            tar: {
                let deep = "d/".repeat(2100);
                Tar::default()
                    .pax(&[("path", &format!("{deep}leaf"))])
                    .file("placeholder", b"x")
                    .end()
            },
            expect: RefusedOrContained,
        },
    ];
    // An absurd count: many thousands of entries (contained: they all land in the layer).
    let mut many = Tar::default().dir("many/");
    for i in 0..5000 {
        many = many.file(&format!("many/{i}"), b"");
    }
    cases.push(Case {
        name: "thousands-of-entries",
        tar: many.end(),
        expect: RefusedOrContained,
    });
    cases
}

/// Everything observable about the files under `dir`: path → (type, mode, uid, gid, nlink,
/// size, content or link target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let detail = if meta.file_type().is_symlink() {
            format!("-> {:?}", fs::read_link(&path).ok())
        } else if meta.is_file() {
            format!("{:?}", fs::read(&path).ok())
        } else {
            String::new()
        };
        out.insert(
            path.clone(),
            format!(
                "mode {:o} uid {} gid {} nlink {} size {} {detail}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.nlink(),
                if meta.is_dir() { 0 } else { meta.size() }
            ),
        );
        if meta.is_dir() {
            for entry in fs::read_dir(&path).into_iter().flatten().flatten() {
                stack.push(entry.path());
            }
        }
    }
    out
}

fn make_host(host: &Path) {
    fs::create_dir_all(host.join("sub")).expect("host dir");
    fs::write(host.join("canary.txt"), b"canary").expect("canary");
    fs::write(host.join("sub").join("inner.txt"), b"inner").expect("inner");
    fs::set_permissions(host, fs::Permissions::from_mode(0o750)).expect("chmod host");
}

/// Imports every case into one store with `driver`; returns (refused, contained).
fn import_cases(driver: &str) -> (usize, usize) {
    let scratch = Scratch::new();
    let host = scratch.path().join("host");
    make_host(&host);
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        driver,
    );
    // A layer that must survive everything.
    let keep = scratch.path().join("keep.tar");
    suite::write_file(&keep, &Tar::default().file("kept", b"kept").end());
    store.run_ok(&[
        "import-layer",
        "-n",
        "kept",
        "-f",
        &keep.display().to_string(),
    ]);
    let outside = std::env::temp_dir().join(format!(
        "layerstore-hostile-canary-{}-{driver}",
        std::process::id()
    ));
    let targets = Targets {
        host: host.display().to_string(),
        climb: format!(
            "{}{}",
            "../".repeat(24),
            host.display().to_string().trim_start_matches('/')
        ),
        outside: outside.clone(),
    };
    let host_before = snapshot(&host);
    let scratch_listing = |p: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(p)
            .expect("scratch listing")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".tar"))
            .collect();
        names.sort();
        names
    };
    let scratch_before = scratch_listing(scratch.path());
    let cases = cases(&targets);
    assert!(cases.len() >= 30, "at least 30 malicious tarballs");
    let (mut refused, mut contained) = (0, 0);
    for case in &cases {
        let context = format!("{driver} {}", case.name);
        let path = scratch.path().join(format!("{}.tar", case.name));
        suite::write_file(&path, &case.tar);
        let before = store.records().expect("layers.json");
        let output = store.run(&["import-layer", "-f", &path.display().to_string()]);
        let after = store
            .records()
            .expect("layers.json parses after a hostile import");
        assert!(
            after.iter().all(|l| !l.incomplete),
            "{context}: incomplete layer left"
        );
        if output.status.success() {
            assert_eq!(
                case.expect,
                Expect::RefusedOrContained,
                "{context}: must be refused: {}",
                suite::describe(&output)
            );
            contained += 1;
            assert_eq!(after.len(), before.len() + 1, "{context}: one layer added");
            let new = after.last().expect("the new layer");
            let diff = store.run(&["diff", "-u", &new.id]);
            assert!(
                diff.status.success(),
                "{context}: {}",
                suite::describe(&diff)
            );
            assert_eq!(
                Some(suite::sha256_digest(&diff.stdout)),
                new.diff_digest,
                "{context}: the contained layer does not give back its diff"
            );
            assert_eq!(
                Some(suite::sha256_digest(&case.tar)),
                new.diff_digest,
                "{context}: recorded digest is not the input's"
            );
        } else {
            refused += 1;
            assert_eq!(
                before, after,
                "{context}: a refused import changed the records"
            );
            assert!(
                !output.stderr.is_empty(),
                "{context}: refused without a message"
            );
        }
        assert_eq!(
            snapshot(&host),
            host_before,
            "{context}: the host directory changed"
        );
        assert!(
            !outside.exists(),
            "{context}: created {}",
            outside.display()
        );
        assert_eq!(
            scratch_listing(scratch.path()),
            scratch_before,
            "{context}: something appeared beside the store"
        );
        eprintln!(
            "hostile {context}: {}",
            if output.status.success() {
                "contained".to_string()
            } else {
                format!(
                    "refused: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            }
        );
    }
    let layers = suite::verify(&store, &format!("{driver} after the hostile cases"));
    assert!(
        layers.iter().any(|l| l.names == ["kept"]),
        "the kept layer survived"
    );
    store.run_ok(&["shutdown"]);
    (refused, contained)
}

#[test]
fn hostile_archives_on_vfs_are_refused_or_contained() {
    require_or_skip!(Capability::Root);
    let started = Instant::now();
    let (refused, contained) = import_cases("vfs");
    eprintln!(
        "hostile suite vfs: {} archives, refused {refused}, contained {contained}, {:.1?}",
        refused + contained,
        started.elapsed()
    );
}

#[test]
fn hostile_archives_on_overlay_are_refused_or_contained() {
    require_or_skip!(Capability::Root, Capability::Overlay);
    let started = Instant::now();
    let (refused, contained) = import_cases("overlay");
    eprintln!(
        "hostile suite overlay: {} archives, refused {refused}, contained {contained}, {:.1?}",
        refused + contained,
        started.elapsed()
    );
}

/// Layers whose files sit under a symlinked directory: the benign `lib -> usr/lib` then
/// `lib/x` (what Go's tool imports and diffs), and a hostile `up -> ..`, `deep/up -> ../up/..`
/// then `deep/up/up/<host path>/via-up`. The import resolves those parents inside the layer
/// root and succeeds, so the layer must also give back its diff (ARCHITECTURE.md: "A layer
/// listed without the `incomplete` flag can always give back its diff"), or the import must
/// refuse it. At the time of writing both imports succeed and both diffs fail with ELOOP: the
/// tar-split file getter (`layerstore_tarsplit::DirFileGetter`) opens the stored name with
/// `RESOLVE_NO_SYMLINKS`, while the apply resolves it with `RESOLVE_IN_ROOT`.
#[test]
fn a_file_under_a_symlinked_directory_gives_back_its_diff() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let host = scratch.path().join("host");
    make_host(&host);
    let host_before = snapshot(&host);
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "vfs",
    );
    let benign = Tar::default()
        .dir("usr/")
        .dir("usr/lib/")
        .symlink("lib", "usr/lib")
        .file("lib/x", b"hi\n")
        .end();
    let hostile = Tar::default()
        .symlink("up", "..")
        .dir("deep/")
        .symlink("deep/up", "../up/..")
        .file(
            &format!(
                "deep/up/up/{}/via-up",
                host.display().to_string().trim_start_matches('/')
            ),
            b"x",
        )
        .end();
    for (label, tar) in [("benign", benign), ("hostile", hostile)] {
        let path = scratch.path().join(format!("{label}.tar"));
        suite::write_file(&path, &tar);
        let before = store.records().expect("layers.json");
        let output = store.run(&["import-layer", "-f", &path.display().to_string()]);
        assert_eq!(
            snapshot(&host),
            host_before,
            "{label}: the host directory changed"
        );
        if output.status.success() {
            suite::verify(&store, &format!("{label} layer with a symlinked parent"));
        } else {
            assert_eq!(store.records().expect("layers.json"), before);
        }
    }
}

/// A reader that yields `head`, then `middle` `repeat` times, then `tail`: a huge compressed
/// stream from a few small members, never held in memory or on disk.
struct Repeating {
    parts: Vec<(Vec<u8>, u64)>,
    part: usize,
    done: u64,
    offset: usize,
}

impl Repeating {
    fn new(head: Vec<u8>, middle: Vec<u8>, repeat: u64, tail: Vec<u8>) -> Self {
        Repeating {
            parts: vec![(head, 1), (middle, repeat), (tail, 1)],
            part: 0,
            done: 0,
            offset: 0,
        }
    }
}

impl Read for Repeating {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some((bytes, times)) = self.parts.get(self.part) {
            if self.done == *times || bytes.is_empty() {
                self.part += 1;
                self.done = 0;
                self.offset = 0;
                continue;
            }
            let n = (bytes.len() - self.offset).min(buf.len());
            buf[..n].copy_from_slice(&bytes[self.offset..self.offset + n]);
            self.offset += n;
            if self.offset == bytes.len() {
                self.offset = 0;
                self.done += 1;
            }
            return Ok(n);
        }
        Ok(0)
    }
}

const CHUNK: u64 = 64 << 20;

fn compress(compression: &str, data: &[u8]) -> Vec<u8> {
    match compression {
        "gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(data).expect("gzip");
            encoder.finish().expect("gzip")
        }
        _ => zstd::encode_all(data, 19).expect("zstd"),
    }
}

/// A bomb: a tar holding one file of `chunks` × 64 MiB zeros, compressed as concatenated
/// members (gzip) or frames (zstd), each of which decoders read on as one stream.
fn bomb(compression: &str, chunks: u64) -> Repeating {
    let head = header(b"zeros", kind::FILE, chunks * CHUNK, b"", 0o644, None);
    let zeros = vec![0u8; CHUNK as usize];
    Repeating::new(
        compress(compression, &head),
        compress(compression, &zeros),
        chunks,
        compress(compression, &[0u8; 1024]),
    )
}

#[test]
fn compression_bombs_stop_at_the_configured_cap() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let host = scratch.path().join("host");
    make_host(&host);
    let host_before = snapshot(&host);
    for compression in ["gzip", "zstd"] {
        let target = scratch.path().join(format!("layer-{compression}"));
        fs::create_dir(&target).expect("target");
        // 160 × 64 MiB = 10 GiB expanded.
        let input = bomb(compression, 160);
        let cap = 32 << 20;
        let options = layerstore_archive::ApplyOptions {
            max_uncompressed_size: Some(cap),
            ..Default::default()
        };
        let started = Instant::now();
        let result = layerstore_archive::apply(
            &target,
            input,
            Vec::<layerstore_tarsplit::Entry>::new(),
            &options,
        );
        let elapsed = started.elapsed();
        match result {
            Err(layerstore_archive::Error::TooLarge { limit }) => assert_eq!(limit, cap),
            Err(other) => panic!("{compression} bomb: wrong error {other}"),
            Ok(_) => panic!("{compression} bomb: a 10 GiB layer passed a {cap}-byte cap"),
        }
        let written: u64 = fs::metadata(target.join("zeros")).map_or(0, |m| m.len());
        assert!(
            written <= cap,
            "{compression} bomb: {written} bytes written past the cap"
        );
        eprintln!("{compression} 10 GiB bomb stopped at the {cap}-byte cap in {elapsed:.1?}");
    }
    assert_eq!(snapshot(&host), host_before, "the host directory changed");
}

#[test]
fn compression_bombs_through_the_cli_are_contained_by_a_small_filesystem() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let host = scratch.path().join("host");
    make_host(&host);
    let host_before = snapshot(&host);
    let fs_dir = scratch.path().join("fs");
    suite::mount_tmpfs(&fs_dir, 16);
    let store = Store::new(fs_dir.join("graph"), scratch.path().join("run"), "vfs");
    let keep = scratch.path().join("keep.tar");
    suite::write_file(&keep, &Tar::default().file("kept", b"kept").end());
    store.run_ok(&[
        "import-layer",
        "-n",
        "kept",
        "-f",
        &keep.display().to_string(),
    ]);
    let before = store.records().expect("layers.json");
    for compression in ["gzip", "zstd"] {
        // 64 × 64 MiB = 4 GiB expanded, from a few MiB on disk.
        let path = scratch.path().join(format!("bomb.{compression}"));
        let mut file = fs::File::create(&path).expect("bomb file");
        std::io::copy(&mut bomb(compression, 64), &mut file).expect("write bomb");
        drop(file);
        let started = Instant::now();
        let output = store.run(&["import-layer", "-f", &path.display().to_string()]);
        assert!(!output.status.success(), "{compression} bomb imported");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.to_lowercase().contains("no space left on device"),
            "{compression} bomb: unclear error: {stderr}"
        );
        assert_eq!(store.records().expect("layers.json"), before);
        suite::verify(&store, &format!("after the {compression} bomb"));
        eprintln!(
            "{compression} 4 GiB bomb through the CLI refused in {:.1?}: {}",
            started.elapsed(),
            stderr.trim()
        );
    }
    assert_eq!(snapshot(&host), host_before, "the host directory changed");
}

// ---------------------------------------------------------------------------------------------
// The store's own files, replaced by whoever can write them (a shared or additional store, a
// compromised tool): FIFOs, symlinks, hand-edited records. Each must give a clear error or a
// `check` report at a bounded cost, touch nothing outside the store, and leave it openable.

/// How long a call may take before it counts as hung (they take well under a second).
const HANG_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

const VICTIM: &str = "aaaa000000000000000000000000000000000000000000000000000000000001";
const BYSTANDER: &str = "bbbb000000000000000000000000000000000000000000000000000000000002";

/// A vfs store with two imported layers, `victim` and `bystander`.
fn store_with_two_layers(scratch: &Scratch) -> Store {
    let store = Store::in_scratch(scratch, "vfs");
    for (id, name) in [(VICTIM, "victim"), (BYSTANDER, "bystander")] {
        let tar = suite::tarball(&[(format!("{name}/file"), format!("{name}\n").into_bytes())]);
        let path = scratch.path().join(format!("{name}.tar"));
        suite::write_file(&path, &tar);
        store.run_ok(&[
            "import-layer",
            "--id",
            id,
            "-n",
            name,
            "-f",
            &path.display().to_string(),
        ]);
    }
    store
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .expect("mkfifo");
}

/// `set-layer-data bystander item` from the file `data`; answers the item's file.
fn set_item(store: &Store, data: &Path) -> PathBuf {
    store.run_ok(&[
        "set-layer-data",
        "-f",
        &data.display().to_string(),
        "bystander",
        "item",
    ]);
    store.layers_dir().join(BYSTANDER).join("item")
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `check --json` (bounded): its problems as `(kind, layer or path)`.
fn check_problems(store: &Store, repair: bool) -> Vec<(String, String)> {
    let args: &[&str] = if repair {
        &["check", "--repair", "--json"]
    } else {
        &["check", "--json"]
    };
    let output = store.run_bounded(args, HANG_LIMIT);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("check --json: {e}: {}", suite::describe(&output)));
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            let subject = p["layer"]
                .as_str()
                .or(p["path"].as_str())
                .unwrap_or_default();
            (
                p["kind"].as_str().unwrap_or_default().to_string(),
                subject.to_string(),
            )
        })
        .collect()
}

#[test]
fn a_fifo_in_place_of_a_store_file_fails_fast_and_check_reports_it() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = store_with_two_layers(&scratch);
    let tar_split = store.tar_split(VICTIM);
    mkfifo(&tar_split);

    // diff fails at once, naming the file, instead of waiting for a writer under the lock.
    let output = store.run_bounded(&["diff", "-u", "victim"], HANG_LIMIT);
    assert!(!output.status.success(), "{}", suite::describe(&output));
    let text = stderr_of(&output);
    assert!(
        text.contains(&tar_split.display().to_string()) && text.contains("a FIFO"),
        "{text}"
    );
    // The lock is free: another process can write.
    store.run_ok(&["create-layer", "-n", "after-the-fifo"]);
    // check reports the layer, without opening the FIFO.
    let problems = check_problems(&store, false);
    assert!(
        problems.contains(&("corrupt-tar-split".into(), VICTIM.into())),
        "{problems:?}"
    );

    // A big-data item, then the record files and the lock file, each replaced by a FIFO.
    let data = scratch.path().join("data");
    suite::write_file(&data, b"item");
    let item = set_item(&store, &data);
    mkfifo(&item);
    let output = store.run_bounded(&["get-layer-data", "bystander", "item"], HANG_LIMIT);
    assert!(!output.status.success(), "{}", suite::describe(&output));
    assert!(
        stderr_of(&output).contains("a FIFO"),
        "{}",
        suite::describe(&output)
    );
    fs::remove_file(&item).expect("remove the FIFO");
    set_item(&store, &data);

    for file in [
        store.layers_json(),
        store.mountpoints_json(),
        store.layers_dir().join("layers.lock"),
    ] {
        let saved = scratch.path().join("saved");
        let had = fs::rename(&file, &saved).is_ok();
        mkfifo(&file);
        let output = store.run_bounded(&["layers"], HANG_LIMIT);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr_of(&output)
        );
        assert!(!output.status.success(), "{}: {all}", file.display());
        assert!(
            all.contains(&file.display().to_string()) && all.contains("FIFO"),
            "{}: {all}",
            file.display()
        );
        fs::remove_file(&file).expect("remove the FIFO");
        if had {
            fs::rename(&saved, &file).expect("restore");
        }
    }

    // Repair deletes the layer that cannot give its diff back (and only it).
    let repaired = check_problems(&store, true);
    assert!(repaired.contains(&("corrupt-tar-split".into(), VICTIM.into())));
    let listed = suite::verify(&store, "after repairing the FIFO");
    let names: Vec<&str> = listed
        .iter()
        .flat_map(|l| l.names.iter().map(String::as_str))
        .collect();
    assert_eq!(names, ["bystander", "after-the-fifo"]);
}

#[test]
fn a_symlinked_big_data_directory_is_never_written_or_read_through() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = store_with_two_layers(&scratch);
    let outside = scratch.path().join("outside");
    fs::create_dir_all(&outside).expect("outside");
    suite::write_file(&outside.join("secret"), b"root-only\n");
    fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let before = snapshot(&outside);
    let big_data_dir = store.layers_dir().join(VICTIM);
    std::os::unix::fs::symlink(&outside, &big_data_dir).expect("symlink");

    let data = scratch.path().join("data");
    suite::write_file(&data, b"attacker chose where this lands\n");
    let output = store.run_bounded(
        &[
            "set-layer-data",
            "-f",
            &data.display().to_string(),
            "victim",
            "secret",
        ],
        HANG_LIMIT,
    );
    assert!(!output.status.success(), "{}", suite::describe(&output));
    assert!(
        stderr_of(&output).contains("a symlink where the store keeps a directory"),
        "{}",
        suite::describe(&output)
    );
    let output = store.run_bounded(&["get-layer-data", "victim", "secret"], HANG_LIMIT);
    assert!(!output.status.success(), "{}", suite::describe(&output));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("root-only"));
    assert_eq!(snapshot(&outside), before, "the symlink's target changed");

    // check names the symlink; delete removes the link, never the target.
    let problems = check_problems(&store, false);
    assert!(
        problems.contains(&("unexpected-file".into(), big_data_dir.display().to_string())),
        "{problems:?}"
    );
    store.run_ok(&["delete-layer", "victim"]);
    assert!(
        fs::symlink_metadata(&big_data_dir).is_err(),
        "the symlink is left"
    );
    assert_eq!(snapshot(&outside), before, "delete followed the symlink");

    // A big-data item that is a symlink is replaced, not written through, and never read.
    let item = set_item(&store, &data);
    fs::remove_file(&item).expect("remove item");
    std::os::unix::fs::symlink(outside.join("secret"), &item).expect("symlink item");
    let output = store.run_bounded(&["get-layer-data", "bystander", "item"], HANG_LIMIT);
    assert!(!output.status.success(), "{}", suite::describe(&output));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("root-only"));
    set_item(&store, &data);
    assert_eq!(
        snapshot(&outside),
        before,
        "set-layer-data wrote through a symlinked item"
    );
    assert_eq!(
        fs::read(&item).expect("item is a file again"),
        b"attacker chose where this lands\n"
    );
    suite::verify(&store, "after the symlinked big data");
}

/// Rewrites layers.json with `edit` applied to its records (as JSON text, one per record).
fn edit_records(store: &Store, edit: impl FnOnce(&mut Vec<String>)) {
    let bytes = fs::read(store.layers_json()).expect("layers.json");
    let values: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("records");
    let mut records: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    edit(&mut records);
    fs::write(store.layers_json(), format!("[{}]", records.join(","))).expect("write layers.json");
}

/// The records of the set-aside file (`record` of each entry).
fn set_aside_records(store: &Store) -> Vec<serde_json::Value> {
    let path = store.layers_dir().join("layers.set-aside.json");
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(&fs::read(path).expect("set-aside file")).expect("JSON array");
    entries.iter().map(|e| e["record"].clone()).collect()
}

#[test]
fn reserved_and_malformed_ids_are_refused_and_foreign_ones_never_name_a_path() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let store = store_with_two_layers(&scratch);
    let layers_json = fs::read(store.layers_json()).expect("layers.json");

    // Names the store uses, and IDs that are not plain names, are refused up front.
    for id in [
        "layers.json",
        "layers.lock",
        "mountpoints.json",
        "volatile-layers.json",
        "x.tar-split.gz",
        "tmp",
        "../escape",
        ".hidden",
        "x,upperdir=up,workdir=wk",
        "with space",
    ] {
        let output = store.run(&["create-layer", "--id", id]);
        assert!(
            !output.status.success(),
            "--id {id:?}: {}",
            suite::describe(&output)
        );
        assert!(
            stderr_of(&output).contains("invalid layer ID"),
            "--id {id:?}: {}",
            suite::describe(&output)
        );
        let output = store.run(&["delete-layer", id]);
        assert!(!output.status.success(), "delete-layer {id:?}");
    }
    assert_eq!(
        fs::read(store.layers_json()).expect("layers.json"),
        layers_json
    );

    // Records a tool that accepts any ID could write: each with files where a path built from
    // its ID would lead (a big-data item, a driver directory, a tar-split file).
    let foreign = [
        "layers.json",
        "x,upperdir=UP,workdir=WK",
        "with space",
        ".hidden",
    ];
    for id in foreign {
        let driver_dir = store.graph.join("vfs").join("dir").join(id);
        fs::create_dir_all(&driver_dir).expect("driver dir");
        suite::write_file(&driver_dir.join("keep"), b"foreign data\n");
    }
    suite::write_file(&store.tar_split("with space"), b"not gzip");
    edit_records(&store, |records| {
        for id in foreign {
            records.push(
                serde_json::json!({
                    "id": id,
                    "created": "2026-01-01T00:00:00Z",
                    "big-data-names": ["k"],
                    "diff-digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                })
                .to_string(),
            );
        }
    });
    let before = snapshot(&store.graph);

    // Listed and readable, but nothing that would build a path from the ID runs.
    let listed: Vec<String> = store.listed().into_iter().map(|l| l.id).collect();
    for id in foreign {
        assert!(
            listed.contains(&id.to_string()),
            "{id:?} is not listed: {listed:?}"
        );
    }
    let data = scratch.path().join("data");
    suite::write_file(&data, b"data");
    let file = data.display().to_string();
    for id in foreign {
        for args in [
            vec!["diff", "-u", id],
            vec!["changes", id],
            vec!["diffsize", id],
            vec!["mount", id],
            vec!["get-layer-data", id, "k"],
            vec!["set-layer-data", "-f", &file, id, "k"],
            vec!["applydiff", "-f", &file, id],
            vec!["create-layer", id],
        ] {
            let output = store.run_bounded(&args, HANG_LIMIT);
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                stderr_of(&output)
            );
            assert!(
                !output.status.success(),
                "{args:?}: {}",
                suite::describe(&output)
            );
            assert!(all.contains("its files are not touched"), "{args:?}: {all}");
        }
    }
    store.run_ok(&["layer", "with space"]);
    store.run_ok(&["set-names", "-n", "renamed", "with space"]);
    assert_eq!(snapshot(&store.graph).len(), before.len());

    // check reports each one; delete and wipe set the records aside and touch no file.
    let problems = check_problems(&store, false);
    for id in foreign {
        assert!(
            problems.contains(&("unsafe-id".into(), id.into())),
            "{id:?}: {problems:?}"
        );
    }
    store.run_ok(&["delete-layer", "renamed"]);
    store.run_ok(&["wipe"]);
    assert!(store.listed().is_empty());
    let kept: Vec<String> = set_aside_records(&store)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    for id in foreign {
        assert!(
            kept.contains(&id.to_string()),
            "{id:?} not set aside: {kept:?}"
        );
        let driver_dir = store.graph.join("vfs").join("dir").join(id);
        assert_eq!(
            fs::read(driver_dir.join("keep")).expect("left alone"),
            b"foreign data\n"
        );
    }
    assert!(store.layers_json().is_file());
    // What is left is reported as orphans and repaired away; the Go tool agrees.
    check_problems(&store, true);
    assert!(check_problems(&store, false).is_empty());
    suite::go_agrees(&store, &[], "after the foreign records were set aside");
}

#[test]
fn one_record_with_an_invalid_digest_does_not_brick_the_store() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let store = store_with_two_layers(&scratch);
    let child = store.run_ok(&["create-layer", "-n", "child", "victim"]);
    let child = child.lines().next().expect("ID").to_string();
    let mut bad = String::new();
    edit_records(&store, |records| {
        let mut value: serde_json::Value = serde_json::from_str(&records[1]).expect("record");
        assert_eq!(value["id"], BYSTANDER);
        value["diff-digest"] = serde_json::Value::from("sha256:not-a-digest");
        bad = value.to_string();
        records[1] = bad.clone();
    });
    // The Go tool opens such a store (it keeps a digest as a string).
    assert!(store.go(&["layers"]).status.success(), "Go cannot open it");

    // Ours opens it, lists what is valid, and keeps the bad record byte for byte.
    let listed: Vec<String> = store.listed().into_iter().map(|l| l.id).collect();
    assert_eq!(listed, [VICTIM.to_string(), child.clone()]);
    store.run_ok(&["diff", "-u", "victim"]);
    store.run_ok(&["create-layer", "-n", "new"]);
    let text = fs::read_to_string(store.layers_json()).expect("layers.json");
    assert!(text.contains(&bad), "the bad record changed: {text}");
    let output = store.run(&["create-layer", "--id", BYSTANDER]);
    assert!(
        stderr_of(&output).contains("already in use"),
        "{}",
        suite::describe(&output)
    );
    let problems = check_problems(&store, false);
    assert_eq!(
        problems,
        [("unreadable-record".to_string(), BYSTANDER.to_string())]
    );

    // Repair sets it aside (its files stay until the next check finds them orphaned).
    check_problems(&store, true);
    let kept = set_aside_records(&store);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].to_string(), bad);
    assert!(
        !fs::read_to_string(store.layers_json())
            .expect("layers.json")
            .contains(BYSTANDER)
    );
    let orphans = check_problems(&store, true);
    assert!(
        orphans.contains(&("orphan-layer-data".into(), BYSTANDER.into())),
        "{orphans:?}"
    );
    let listed = suite::verify(&store, "after setting the bad record aside");
    suite::go_agrees(&store, &listed, "after setting the bad record aside");
}

/// The soft and hard open-file limits of process `pid` (from `/proc/<pid>/limits`).
fn open_file_limits(pid: u32) -> Option<(String, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

/// Starts `tool` under `prlimit --nofile=256:4096`, waiting on its standard input, and
/// answers the open-file limits it runs with (polled until they are the hard limit, or for
/// 20 s).
fn limits_under_prlimit(mut command: std::process::Command) -> (String, String) {
    command.stdin(std::process::Stdio::piped());
    let mut child = command.spawn().expect("spawns under prlimit");
    let pid = child.id();
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = open_file_limits(pid).unwrap_or_default();
    while Instant::now() < deadline && seen.0 != "4096" {
        std::thread::sleep(std::time::Duration::from_millis(20));
        seen = open_file_limits(pid).unwrap_or(seen);
    }
    drop(child.stdin.take());
    let _ = child.wait();
    seen
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_as_go_does() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let store = Store::in_scratch(&scratch, "vfs");
    let under_prlimit = |program: PathBuf| {
        let mut command = std::process::Command::new("prlimit");
        command
            .arg("--nofile=256:4096")
            .arg(program)
            .args(store.flags())
            .arg("import-layer")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    };
    let go = limits_under_prlimit(under_prlimit(suite::go_tool()));
    let ours = limits_under_prlimit(under_prlimit(suite::binary()));
    assert_eq!(go, ("4096".to_string(), "4096".to_string()), "the Go tool");
    assert_eq!(
        ours, go,
        "layerstore keeps a lower soft limit than the Go tool"
    );
}

#[test]
fn an_incomplete_layer_that_cannot_be_deleted_does_not_make_the_store_unopenable() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = store_with_two_layers(&scratch);
    // The victim's files cannot be removed while a mount sits inside them.
    let busy = store
        .graph
        .join("vfs")
        .join("dir")
        .join(VICTIM)
        .join("victim");
    suite::mount_tmpfs(&busy, 1);
    edit_records(&store, |records| {
        let mut value: serde_json::Value = serde_json::from_str(&records[0]).expect("record");
        assert_eq!(value["id"], VICTIM);
        value["flags"] = serde_json::json!({ "incomplete": true });
        records[0] = value.to_string();
    });

    // Every call still works; the failed cleanup is reported, and retried by the next one.
    let output = store.run_bounded(&["layers", "--json"], HANG_LIMIT);
    assert!(output.status.success(), "{}", suite::describe(&output));
    let warning = stderr_of(&output);
    assert!(
        warning.contains(VICTIM) && warning.contains("could not be deleted"),
        "{warning}"
    );
    store.run_ok(&["create-layer", "-n", "fresh"]);
    store.run_ok(&["diff", "-u", "bystander"]);
    let problems = check_problems(&store, false);
    assert!(
        problems.contains(&("incomplete-layer".into(), VICTIM.into())),
        "{problems:?}"
    );
    let repaired = check_problems(&store, true);
    assert!(repaired.contains(&("incomplete-layer".into(), VICTIM.into())));

    // Once the mount is gone, the next open deletes it.
    suite::unmount_under(&busy);
    let listed = suite::verify(&store, "after the busy mount went away");
    let names: Vec<&str> = listed
        .iter()
        .flat_map(|l| l.names.iter().map(String::as_str))
        .collect();
    assert_eq!(names, ["bystander", "fresh"]);
}

/// `layerstore <flags> args` with at most 2 GiB of address space (a runaway walk fails fast
/// instead of eating the machine) and [`HANG_LIMIT`].
fn run_in_a_box(store: &Store, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new("prlimit");
    command
        .arg("--as=2147483648")
        .arg(suite::binary())
        .args(store.flags())
        .args(args)
        .stdin(std::process::Stdio::null());
    suite::run_bounded(command, &format!("layerstore {args:?}"), HANG_LIMIT)
}

#[test]
fn parent_cycles_end_no_walk_and_delete_says_the_layer_has_children_like_go() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let store = store_with_two_layers(&scratch);
    let create = |args: &[&str]| {
        store
            .run_ok(args)
            .lines()
            .next()
            .expect("an ID")
            .to_string()
    };
    let x = create(&["create-layer", "-n", "x"]);
    let y = create(&["create-layer", "-n", "y"]);
    let z = create(&["create-layer", "-n", "z", "x"]);
    // victim is its own parent; x and y are each other's.
    edit_records(&store, |records| {
        for record in records.iter_mut() {
            let mut value: serde_json::Value = serde_json::from_str(record).expect("record");
            let parent = match value["id"].as_str() {
                Some(VICTIM) => VICTIM.to_string(),
                Some(id) if id == x => y.clone(),
                Some(id) if id == y => x.clone(),
                _ => continue,
            };
            value["parent"] = serde_json::Value::from(parent);
            *record = value.to_string();
        }
    });
    let go_copy = Store::new(
        scratch.path().join("go-graph"),
        scratch.path().join("go-run"),
        "vfs",
    );
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&store.graph)
        .arg(&go_copy.graph)
        .status()
        .expect("cp");
    assert!(copied.success());

    for key in [VICTIM, y.as_str()] {
        let ours = run_in_a_box(&store, &["delete-layer", key]);
        let go = go_copy.go(&["delete-layer", key]);
        assert_eq!(
            (ours.status.code(), stderr_of(&ours)),
            (go.status.code(), stderr_of(&go)),
            "delete-layer {key}: ours {} / Go {}",
            suite::describe(&ours),
            suite::describe(&go)
        );
        assert!(stderr_of(&ours).contains("layer has children"));
    }
    // A batch holding the whole cycle has children too, and nothing is deleted.
    let output = run_in_a_box(&store, &["delete-layer", "x", "y"]);
    assert!(!output.status.success());
    assert!(stderr_of(&output).contains("layer has children"));
    assert_eq!(store.records().expect("layers.json").len(), 5);
    // Every other walk ends.
    for args in [
        &["layers", "-t"][..],
        &["layers", "--json"],
        &["diff", "-u", "z"],
    ] {
        let output = run_in_a_box(&store, args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            suite::describe(&output)
        );
    }
    let problems = check_problems(&store, false);
    let cycles: Vec<&str> = problems
        .iter()
        .filter(|(kind, _)| kind == "parent-cycle")
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(cycles, [VICTIM, x.as_str(), y.as_str()]);

    // Repair deletes the cycles and what stands on them (z), and nothing else.
    check_problems(&store, true);
    let listed = suite::verify(&store, "after repairing the cycles");
    assert_eq!(
        listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        [BYSTANDER]
    );
    assert!(!z.is_empty());
    // wipe ends on a cycle too.
    edit_records(&store, |records| {
        let mut value: serde_json::Value = serde_json::from_str(&records[0]).expect("record");
        value["parent"] = serde_json::Value::from(BYSTANDER);
        records[0] = value.to_string();
    });
    let output = run_in_a_box(&store, &["wipe"]);
    assert!(output.status.success(), "{}", suite::describe(&output));
    suite::go_agrees(&store, &[], "after wiping a cycle");
}

/// Writes `records` as mountpoints.json.
fn write_mounts(store: &Store, records: &serde_json::Value) {
    fs::write(store.mountpoints_json(), records.to_string()).expect("write mountpoints.json");
}

#[test]
fn mountpoints_json_is_not_trusted_for_paths_or_counts() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = store_with_two_layers(&scratch);
    let own_path = store.graph.join("vfs").join("dir").join(VICTIM);
    let outside = scratch.path().join("outside");
    fs::create_dir_all(&outside).expect("outside");
    std::os::unix::fs::symlink(
        &outside,
        store
            .graph
            .join("vfs")
            .join("dir")
            .join(BYSTANDER)
            .join("escape"),
    )
    .expect("symlink");
    let through_symlink = store
        .graph
        .join("vfs/dir")
        .join(BYSTANDER)
        .join("escape")
        .join(VICTIM);
    fs::create_dir_all(&through_symlink).expect("a directory named after the layer outside");

    // A path that is not where the driver keeps the layer is never handed out or counted.
    for path in [
        "/".to_string(),
        "/etc".to_string(),
        format!("{}/../{VICTIM}", own_path.display()),
        through_symlink.display().to_string(),
        store
            .graph
            .join("vfs/dir")
            .join(BYSTANDER)
            .display()
            .to_string(),
    ] {
        write_mounts(
            &store,
            &serde_json::json!([{ "id": VICTIM, "path": path, "count": 3 }]),
        );
        let problems = check_problems(&store, false);
        assert!(
            problems.contains(&("untrusted-mount-record".into(), VICTIM.into())),
            "{path}: {problems:?}"
        );
        let output = store.run_bounded(&["mount", "victim"], HANG_LIMIT);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            own_path.display().to_string(),
            "{path}: {}",
            suite::describe(&output)
        );
        assert_eq!(store.mount_counts().get(VICTIM), Some(&1), "{path}");
        store.run_ok(&["unmount", "victim"]);
    }

    // A count at its maximum is not wrapped to 0: the mount is refused and the count kept.
    write_mounts(
        &store,
        &serde_json::json!([{ "id": VICTIM, "path": own_path, "count": u32::MAX }]),
    );
    let output = store.run_bounded(&["mount", "victim"], HANG_LIMIT);
    assert!(!output.status.success(), "{}", suite::describe(&output));
    assert!(
        stderr_of(&output).contains("mount count cannot go higher"),
        "{}",
        suite::describe(&output)
    );
    assert_eq!(store.mount_counts().get(VICTIM), Some(&i64::from(u32::MAX)));
    // A count beyond u32 does not make the store unopenable; check reports it.
    write_mounts(
        &store,
        &serde_json::json!([{ "id": VICTIM, "path": own_path, "count": 4_294_967_296u64 }]),
    );
    store.run_ok(&["layers"]);
    let problems = check_problems(&store, false);
    assert!(
        problems.contains(&("untrusted-mount-record".into(), VICTIM.into())),
        "{problems:?}"
    );
    // Repair drops such records and unmounts nothing.
    check_problems(&store, true);
    assert!(store.mount_counts().is_empty());
    fs::remove_file(store.graph.join("vfs/dir").join(BYSTANDER).join("escape")).expect("rm");
    suite::verify(&store, "after the untrusted mount records");
}

/// The mount points at exactly `path` (from /proc/self/mountinfo).
fn is_mounted(path: &Path) -> bool {
    suite::mounts_under(path).iter().any(|m| m == path)
}

#[test]
fn check_repair_never_unmounts_another_stores_layer_or_acts_through_a_symlink() {
    require_or_skip!(Capability::Root, Capability::Overlay);
    let scratch = Scratch::new();
    let tar = suite::tarball(&[("shared/file".to_string(), b"same in both stores\n".to_vec())]);
    let tar_path = scratch.path().join("layer.tar");
    suite::write_file(&tar_path, &tar);
    let file = tar_path.display().to_string();
    let ours = Store::new(
        scratch.path().join("a"),
        scratch.path().join("a-run"),
        "overlay",
    );
    let theirs = Store::new(
        scratch.path().join("b"),
        scratch.path().join("b-run"),
        "overlay",
    );
    // Their layer, mounted by them; ours, with the same content, plus one we mount ourselves.
    let their_id = theirs
        .run_ok(&["import-layer", "-f", &file])
        .trim()
        .to_string();
    let their_mount = PathBuf::from(theirs.run_ok(&["mount", &their_id]).trim());
    assert!(is_mounted(&their_mount));
    let our_id = ours
        .run_ok(&["import-layer", "-f", &file])
        .trim()
        .to_string();
    let other_id = ours
        .run_ok(&["import-layer", "-f", &file])
        .trim()
        .to_string();
    let other_mount = PathBuf::from(ours.run_ok(&["mount", &other_id]).trim());

    // Our layer directory becomes a symlink to theirs, and our records claim a mount of it
    // that is not there (a stale count), while the count of the layer we did mount is lost.
    let our_dir = ours.graph.join("overlay").join(&our_id);
    fs::remove_dir_all(&our_dir).expect("remove our layer directory");
    std::os::unix::fs::symlink(theirs.graph.join("overlay").join(&their_id), &our_dir)
        .expect("symlink");
    write_mounts(
        &ours,
        &serde_json::json!([{ "id": our_id, "path": our_dir.join("merged"), "count": 1 }]),
    );

    let output = ours.run_bounded(&["check", "--repair", "--json"], HANG_LIMIT);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        is_mounted(&their_mount),
        "check --repair unmounted the other store's layer: {report}"
    );
    assert_eq!(
        theirs.run_ok(&["diff", "-u", &their_id]).into_bytes(),
        tar,
        "the other store's layer changed"
    );
    // Our own uncounted mount is detached (through its descriptor), nothing else.
    assert!(
        !is_mounted(&other_mount),
        "our uncounted mount is still there: {report}"
    );
    assert!(report.contains("uncounted-mount"), "{report}");

    // Our layer had no files of its own: repair deleted it, removing the symlink itself.
    assert!(
        fs::symlink_metadata(&our_dir).is_err(),
        "the symlink is left: {report}"
    );
    let listed = suite::verify(&ours, "our store after the symlinked layer directory");
    assert_eq!(
        listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        [other_id.as_str()]
    );
    theirs.run_ok(&["unmount", &their_id]);
    suite::verify(&theirs, "their store");
}
