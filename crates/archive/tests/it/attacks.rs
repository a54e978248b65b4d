//! Hand-made malicious archives. Each case asserts the exact outcome (a specific error, or a
//! result contained in the target) and that nothing outside the target changed. Every case runs
//! with both resolvers: `openat2(RESOLVE_IN_ROOT)` and the userspace component walk.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use layerstore_archive::{ApplyOptions, ApplyReport, DevicePolicy, Error, WhiteoutStyle};
use layerstore_testsupport::{Capability, require_or_skip};

type Outcome = Result<ApplyReport, Error>;

/// Applies `archive` in `<tmp>/target` beside a sibling `<tmp>/outside` (a secret file and a
/// setuid-less tool), after `prepare(target, outside)`; checks `check(outcome, target,
/// outside)`, then that `outside` and the tmp dir are exactly as before.
fn attack(
    archive: &[u8],
    opts: &ApplyOptions,
    prepare: impl Fn(&Path, &Path),
    check: impl Fn(&Outcome, &Path, &Path),
) {
    for force_walk in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("bin")).expect("mkdir");
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::write(outside.join("secret"), b"do not touch").expect("write");
        std::fs::write(outside.join("bin/tool"), b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(
            outside.join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        prepare(&target, &outside);
        let before = snapshot(tmp.path(), FULL);
        let before_outside: Vec<_> = before
            .iter()
            .filter(|(p, _)| !p.starts_with("target"))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        let opts = ApplyOptions {
            force_userspace_resolution: force_walk,
            ..opts.clone()
        };
        let outcome =
            layerstore_archive::apply(&target, archive, Vec::new(), &opts).map(|(r, _)| r);
        check(&outcome, &target, &outside);
        let after = snapshot(tmp.path(), FULL);
        let after_outside: Vec<_> = after
            .iter()
            .filter(|(p, _)| !p.starts_with("target"))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        assert_eq!(
            after_outside.len(),
            before_outside.len(),
            "walk={force_walk}: entries outside"
        );
        for ((pa, sa), (pb, sb)) in after_outside.iter().zip(&before_outside) {
            // The tmp dir's own mtime is allowed to be untouched only.
            assert_eq!(pa, pb, "walk={force_walk}");
            assert_eq!(sa, sb, "walk={force_walk}: {pa:?} changed");
        }
    }
}

fn default() -> ApplyOptions {
    ApplyOptions::default()
}

fn is_breakout(o: &Outcome, what: &str) -> bool {
    matches!(o, Err(Error::Breakout { what: w, .. }) if *w == what)
}

fn is_entry_error(o: &Outcome, errno: i32) -> bool {
    matches!(o, Err(Error::Entry { source, .. }) if source.raw_os_error() == Some(errno))
}

fn is_invalid(o: &Outcome) -> bool {
    matches!(o, Err(Error::InvalidName { .. }))
}

const ENOENT: i32 = 2;
const EPERM: i32 = 1;
const ELOOP: i32 = 40;
const ENAMETOOLONG: i32 = 36;

#[test]
fn symlink_escaping_then_file_through_it_fails() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .symlink(b"evil", b"../outside")
        .file(b"evil/pwned", b"x")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(is_entry_error(o, ENOENT), "{o:?}");
            assert!(t.join("evil").is_symlink());
        },
    );
}

#[test]
fn symlink_to_root_then_file_lands_inside() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .symlink(b"r", b"/")
        .file(b"r/x", b"inside")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            assert_eq!(std::fs::read(t.join("x")).expect("read"), b"inside");
        },
    );
}

#[test]
fn symlink_to_root_then_hardlink_through_it_stays_inside() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .dir(b"etc/")
        .file(b"etc/passwd", b"root:x:0:0")
        .symlink(b"r", b"/")
        .hardlink(b"h", b"r/etc/passwd")
        .hardlink(b"h2", b"r/etc/../../secret")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            // h links the target's own passwd; h2's target is `secret` at the root: missing.
            assert!(is_entry_error(o, ENOENT), "{o:?}");
            let ino = |p: &Path| std::fs::metadata(p).expect("stat").ino();
            assert_eq!(ino(&t.join("h")), ino(&t.join("etc/passwd")));
        },
    );
}

#[test]
fn dotdot_in_hardlink_target_is_refused() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .hardlink(b"h", b"../../outside/secret")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(is_breakout(o, "hardlink target"), "{o:?}");
            assert!(!t.join("h").exists());
        },
    );
}

#[test]
fn pax_linkpath_with_dotdot_is_refused() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .pax(&[("linkpath", b"a/../../outside/secret")])
        .hardlink(b"h", b"harmless")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| {
            assert!(is_breakout(o, "hardlink target"), "{o:?}");
        },
    );
}

#[test]
fn absolute_hardlink_target_resolves_inside() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new().hardlink(b"h", b"/outside/secret").finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| {
            assert!(is_entry_error(o, ENOENT), "{o:?}");
        },
    );
}

#[test]
fn whiteout_of_dotdot_is_refused() {
    require_or_skip!(Capability::Root);
    for name in [&b".wh..."[..], b"sub/.wh...", b".wh."] {
        let archive = RawTar::new().file(name, b"").finish();
        for style in [WhiteoutStyle::Naive, WhiteoutStyle::Overlay] {
            let opts = ApplyOptions {
                whiteouts: style,
                ..default()
            };
            attack(
                &archive,
                &opts,
                |_, _| {},
                |o, _, _| {
                    assert!(is_breakout(o, "whiteout"), "{o:?}");
                },
            );
        }
    }
}

#[test]
fn whiteout_through_a_symlink_out_does_nothing_outside() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new().file(b"p/.wh.secret", b"").finish();
    attack(
        &archive,
        &default(),
        |t, outside| symlink(outside, t.join("p")).expect("symlink"),
        |o, _, _| assert!(is_entry_error(o, ENOENT), "{o:?}"),
    );
}

#[test]
fn dir_replaced_by_symlink_mid_archive() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .dir(b"d/")
        .file(b"d/f", b"1")
        .pax(&[("path", b"d")])
        .symlink(b"d-as-link", b"/")
        .file(b"d/g", b"2")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            // `d` (dir) then `d` (symlink) is a duplicate path: refused like the Go tool does.
            assert!(matches!(o, Err(Error::DuplicatePath { .. })), "{o:?}");
            assert!(t.join("d/f").exists());
        },
    );
    // Without the duplicate: a dir from a previous layer replaced by a symlink, then written.
    let archive = RawTar::new()
        .symlink(b"d", b"/")
        .file(b"d/g", b"2")
        .finish();
    attack(
        &archive,
        &default(),
        |t, _| {
            std::fs::create_dir(t.join("d")).expect("mkdir");
            std::fs::write(t.join("d/old"), b"").expect("write");
        },
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            assert!(t.join("d").is_symlink());
            assert!(t.join("g").is_file(), "written through d -> / = the target");
            assert!(!t.join("old").exists());
        },
    );
}

#[test]
fn file_replaced_by_dir_is_a_duplicate() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .file(b"x", b"1")
        .dir(b"x/")
        .file(b"x/y", b"2")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(
                matches!(o, Err(Error::DuplicatePath { entry }) if entry == "x/"),
                "{o:?}"
            );
            assert!(t.join("x").is_file());
        },
    );
}

#[test]
fn existing_file_replaced_by_dir_and_dir_by_file() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .dir(b"x/")
        .file(b"x/y", b"2")
        .file(b"d", b"file now")
        .finish();
    attack(
        &archive,
        &default(),
        |t, _| {
            std::fs::write(t.join("x"), b"was a file").expect("write");
            std::fs::create_dir_all(t.join("d/deep")).expect("mkdir");
        },
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            assert!(t.join("x/y").is_file());
            assert_eq!(std::fs::read(t.join("d")).expect("read"), b"file now");
        },
    );
}

#[test]
fn deep_nesting_is_contained() {
    require_or_skip!(Capability::Root);
    let deep = "a/".repeat(500) + "leaf";
    let archive = RawTar::new()
        .pax(&[("path", deep.as_bytes())])
        .file(b"x", b"deep")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            assert_eq!(std::fs::read(t.join(&deep)).expect("read"), b"deep");
        },
    );
}

#[test]
fn name_of_10000_bytes_fails_cleanly() {
    require_or_skip!(Capability::Root);
    let long = "n".repeat(10_000);
    let archive = RawTar::new()
        .pax(&[("path", long.as_bytes())])
        .file(b"x", b"")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| {
            assert!(is_entry_error(o, ENAMETOOLONG), "{o:?}");
            assert!(o.as_ref().expect_err("error").to_string().contains("nnnn"));
        },
    );
    // 5,001 components: refused for its depth before its length matters; with the depth
    // limit out of the way, for its length.
    let long_path = "d/".repeat(5_000) + "f";
    let archive = RawTar::new()
        .gnu_long_name(long_path.as_bytes())
        .file(b"x", b"")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| {
            assert!(
                matches!(o, Err(Error::TooDeep { depth: 5001, .. })),
                "{o:?}"
            );
        },
    );
    let unlimited = ApplyOptions {
        max_depth: usize::MAX,
        ..default()
    };
    attack(
        &archive,
        &unlimited,
        |_, _| {},
        |o, _, _| {
            assert!(is_entry_error(o, ENAMETOOLONG), "{o:?}");
        },
    );
}

#[test]
fn tar_bomb_of_100000_empty_files_within_budget() {
    require_or_skip!(Capability::Root);
    let mut tar = RawTar::new();
    for d in 0..100 {
        tar.dir(format!("d{d}/").as_bytes());
        for f in 0..1000 {
            tar.file(format!("d{d}/f{f}").as_bytes(), b"");
        }
    }
    let archive = tar.finish();
    // On tmpfs: the budget is about our work, not about a loaded disk's journal.
    let tmp = tempfile::tempdir_in("/dev/shm").expect("tempdir");
    let start = Instant::now();
    let (report, _) = apply_bytes(tmp.path(), &archive, &default()).expect("apply");
    let took = start.elapsed();
    assert_eq!(report.entries, 100_100);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("d99"))
            .expect("readdir")
            .count(),
        1000
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn absolute_names_land_inside() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .file(b"/outside/secret", b"overwritten?")
        .file(b"/abs", b"1")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            assert_eq!(
                std::fs::read(t.join("outside/secret")).expect("read"),
                b"overwritten?"
            );
            assert!(t.join("abs").is_file());
        },
    );
}

#[test]
fn dotdot_names_are_refused_or_cleaned() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new().file(b"../outside/secret", b"pwned").finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| assert!(is_breakout(o, "path"), "{o:?}"),
    );
    let archive = RawTar::new().file(b"a/../../x", b"pwned").finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| assert!(is_breakout(o, "path"), "{o:?}"),
    );
    let archive = RawTar::new().file(b"a/../b", b"fine").finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            assert!(t.join("b").is_file());
        },
    );
}

#[test]
fn pax_path_overriding_with_dotdot_is_refused() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .pax(&[("path", b"../outside/secret")])
        .file(b"innocent", b"pwned")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(is_breakout(o, "path"), "{o:?}");
            assert!(!t.join("innocent").exists());
        },
    );
}

#[test]
fn gnu_long_name_with_dotdot_is_refused() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .gnu_long_name(b"../../outside/secret")
        .file(b"innocent", b"pwned")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| assert!(is_breakout(o, "path"), "{o:?}"),
    );
}

#[test]
fn nul_in_names_is_refused() {
    // A USTAR name ends at its first NUL; only PAX can carry one, and the parser refuses it
    // (as Go does). The extractor's own NUL check is unit-tested with hand-made headers.
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .pax(&[("path", b"a\0/../../x")])
        .file(b"x", b"")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(matches!(o, Err(Error::Tar(_))), "{o:?}");
            assert!(!t.join("x").exists());
        },
    );
    let archive = RawTar::new()
        .pax(&[("linkpath", b"/tmp\0x")])
        .symlink(b"s", b"t")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(matches!(o, Err(Error::Tar(_))), "{o:?}");
            assert!(!t.join("s").exists());
        },
    );
}

#[test]
fn preexisting_symlink_pointing_out_is_not_followed() {
    require_or_skip!(Capability::Root);
    let plant = |t: &Path, outside: &Path| {
        symlink(outside, t.join("pre")).expect("symlink");
        symlink(outside.join("secret"), t.join("sec")).expect("symlink");
    };
    // Through it as a directory: resolved inside the target, where it does not exist.
    let archive = RawTar::new().file(b"pre/pwned", b"x").finish();
    attack(&archive, &default(), plant, |o, _, _| {
        assert!(is_entry_error(o, ENOENT), "{o:?}")
    });
    // As the entry's own name: replaced, never written through.
    let archive = RawTar::new().file(b"sec", b"replaced").finish();
    attack(&archive, &default(), plant, |o, t, _| {
        assert!(o.is_ok(), "{o:?}");
        assert!(!t.join("sec").is_symlink());
        assert_eq!(std::fs::read(t.join("sec")).expect("read"), b"replaced");
    });
}

#[test]
fn opaque_whiteout_on_a_symlinked_dir() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new().file(b"od/.wh..wh..opq", b"").finish();
    for style in [WhiteoutStyle::Naive, WhiteoutStyle::Overlay] {
        let opts = ApplyOptions {
            whiteouts: style,
            ..default()
        };
        attack(
            &archive,
            &opts,
            |t, outside| symlink(outside, t.join("od")).expect("symlink"),
            |o, _, _| assert!(is_entry_error(o, ENOENT), "{o:?}"),
        );
        // A symlink to a directory inside: that directory is what becomes opaque.
        attack(
            &archive,
            &opts,
            |t, _| {
                std::fs::create_dir(t.join("real")).expect("mkdir");
                std::fs::write(t.join("real/old"), b"").expect("write");
                symlink("/real", t.join("od")).expect("symlink");
            },
            |o, t, _| {
                assert!(o.is_ok(), "{o:?}");
                assert!(t.join("od").is_symlink());
                assert_eq!(t.join("real/old").exists(), style == WhiteoutStyle::Overlay);
            },
        );
    }
}

#[test]
fn hardlink_to_a_symlink_pointing_out_links_the_symlink() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .symlink(b"s", b"../outside/secret")
        .hardlink(b"h", b"s")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            let (s, h) = (
                std::fs::symlink_metadata(t.join("s")).expect("lstat"),
                std::fs::symlink_metadata(t.join("h")).expect("lstat"),
            );
            assert!(h.file_type().is_symlink());
            assert_eq!(s.ino(), h.ino());
        },
    );
}

#[test]
fn hardlink_to_a_directory_fails() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new().dir(b"d/").hardlink(b"h", b"d").finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| assert!(is_entry_error(o, EPERM), "{o:?}"),
    );
}

#[test]
fn device_nodes_follow_the_policy() {
    require_or_skip!(Capability::Root);
    let mut h = header(b"null", b'3', 0, b"", 0o666);
    set_device(&mut h, 1, 3);
    let archive = RawTar::new().raw(h, b"").finish();
    let policy = |devices| ApplyOptions {
        devices,
        ..default()
    };
    attack(
        &archive,
        &policy(DevicePolicy::Fail),
        |_, _| {},
        |o, t, _| {
            assert!(matches!(o, Err(Error::DeviceNotAllowed { .. })), "{o:?}");
            assert!(!t.join("null").exists());
        },
    );
    attack(
        &archive,
        &policy(DevicePolicy::Skip),
        |_, _| {},
        |o, t, _| {
            let report = o.as_ref().expect("skip is not an error");
            assert_eq!(report.warnings.len(), 1);
            assert!(!t.join("null").exists());
        },
    );
    attack(
        &archive,
        &policy(DevicePolicy::Create),
        |_, _| {},
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            let md = std::fs::symlink_metadata(t.join("null")).expect("lstat");
            assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
            assert_eq!(md.mode() & 0o7777, 0o666);
        },
    );
}

#[test]
fn setuid_dir_through_symlink_does_not_chmod_outside() {
    // tar-rs CVE-2026-33056: a symlink, then a directory entry of the same name.
    require_or_skip!(Capability::Root);
    let mut dir = header(b"link/", b'5', 0, b"", 0o4777);
    set_owner(&mut dir, 0, 0);
    let archive = RawTar::new().raw(dir, b"").finish();
    attack(
        &archive,
        &default(),
        |t, outside| symlink(outside.join("bin"), t.join("link")).expect("symlink"),
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            let md = std::fs::symlink_metadata(t.join("link")).expect("lstat");
            assert!(md.is_dir());
            assert_eq!(md.mode() & 0o7777, 0o4777);
        },
    );
    // And a setuid file named through a symlinked parent lands inside.
    let mut file = header(b"s/tool", b'0', 2, b"", 0o4755);
    set_owner(&mut file, 0, 0);
    let archive = RawTar::new()
        .symlink(b"s", b"/bin")
        .raw(file, b"hi")
        .finish();
    attack(
        &archive,
        &default(),
        |t, _| std::fs::create_dir(t.join("bin")).expect("mkdir"),
        |o, t, _| {
            assert!(o.is_ok(), "{o:?}");
            let md = std::fs::metadata(t.join("bin/tool")).expect("stat");
            assert_eq!(md.mode() & 0o7777, 0o4755);
        },
    );
}

#[test]
fn symlink_loops_fail() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .symlink(b"a", b"b")
        .symlink(b"b", b"a")
        .file(b"a/x", b"")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| assert!(is_entry_error(o, ELOOP), "{o:?}"),
    );
}

#[test]
fn duplicate_paths_are_refused() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new().file(b"f", b"1").file(b"./f", b"2").finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(
                matches!(o, Err(Error::DuplicatePath { entry }) if entry == "./f"),
                "{o:?}"
            );
            assert_eq!(std::fs::read(t.join("f")).expect("read"), b"1");
        },
    );
}

#[test]
fn root_entry_must_be_a_directory() {
    require_or_skip!(Capability::Root);
    for archive in [
        RawTar::new().file(b"./", b"").finish(),
        RawTar::new().symlink(b"a/..", b"/outside").finish(),
    ] {
        attack(
            &archive,
            &default(),
            |_, _| {},
            |o, _, _| assert!(is_invalid(o), "{o:?}"),
        );
    }
}

#[test]
fn oversized_pax_header_hits_the_parser_limit() {
    require_or_skip!(Capability::Root);
    let big = vec![b'x'; 2 << 20];
    let archive = RawTar::new()
        .pax(&[("comment", &big)])
        .file(b"f", b"")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, t, _| {
            assert!(matches!(o, Err(Error::Tar(_))), "{o:?}");
            assert!(!t.join("f").exists());
        },
    );
}

#[test]
fn long_name_and_sparse_map_caps_apply() {
    require_or_skip!(Capability::Root);
    let opts = ApplyOptions {
        limits: layerstore_archive::Limits {
            max_long_name: 1024,
            ..layerstore_archive::Limits::default()
        },
        ..default()
    };
    let archive = RawTar::new()
        .gnu_long_name(&[b'n'; 2000])
        .file(b"x", b"")
        .finish();
    attack(
        &archive,
        &opts,
        |_, _| {},
        |o, t, _| {
            assert!(matches!(o, Err(Error::Tar(_))), "{o:?}");
            assert!(std::fs::read_dir(t).expect("readdir").next().is_none());
        },
    );
    // A PAX sparse map with more regions than allowed.
    let opts = ApplyOptions {
        limits: layerstore_archive::Limits {
            max_sparse_regions: 4,
            ..layerstore_archive::Limits::default()
        },
        ..default()
    };
    let map: Vec<String> = (0..10).map(|i| format!("{},1", i * 2)).collect();
    let archive = RawTar::new()
        .pax(&[
            ("GNU.sparse.major", b"0"),
            ("GNU.sparse.minor", b"1"),
            ("GNU.sparse.name", b"holey"),
            ("GNU.sparse.realsize", b"20"),
            ("GNU.sparse.map", map.join(",").as_bytes()),
        ])
        .file(b"GNUSparseFile.0/holey", &[1u8; 10])
        .finish();
    attack(
        &archive,
        &opts,
        |_, _| {},
        |o, t, _| {
            assert!(matches!(o, Err(Error::Tar(_))), "{o:?}");
            assert!(!t.join("holey").exists());
        },
    );
}

#[test]
fn decompression_bomb_hits_the_size_limit() {
    require_or_skip!(Capability::Root);
    let mut tar = RawTar::new();
    tar.file(b"zeros", &vec![0u8; 8 << 20]);
    let bomb = zstd::encode_all(&tar.finish()[..], 3).expect("zstd");
    assert!(bomb.len() < 64 * 1024);
    let opts = ApplyOptions {
        max_uncompressed_size: Some(1 << 20),
        ..default()
    };
    attack(
        &bomb,
        &opts,
        |_, _| {},
        |o, _, _| {
            assert!(
                matches!(o, Err(Error::TooLarge { limit: 1_048_576 })),
                "{o:?}"
            );
        },
    );
}

#[test]
fn unknown_entry_types_are_refused() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .raw(header(b"vol", b'V', 0, b"", 0o644), b"")
        .finish();
    attack(
        &archive,
        &default(),
        |_, _| {},
        |o, _, _| {
            assert!(
                matches!(
                    o,
                    Err(Error::UnsupportedEntryType {
                        type_flag: b'V',
                        ..
                    })
                ),
                "{o:?}"
            );
        },
    );
}

#[test]
fn overlay_style_drops_forged_overlay_xattrs() {
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.redirect", b"/outside"),
            ("SCHILY.xattr.user.ok", b"1"),
        ])
        .dir(b"d/")
        .finish();
    let opts = ApplyOptions {
        whiteouts: WhiteoutStyle::Overlay,
        ..default()
    };
    attack(
        &archive,
        &opts,
        |_, _| {},
        |o, t, _| {
            let report = o.as_ref().expect("apply");
            assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
            let snap = snapshot(t, FULL);
            let xattrs = &snap[Path::new("d")].xattrs;
            assert_eq!(xattrs.keys().collect::<Vec<_>>(), [&b"user.ok".to_vec()]);
        },
    );
}
