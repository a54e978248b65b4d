//! Sparse files in every dialect GNU tar writes (old GNU `S` with extension blocks, PAX 0.0,
//! 0.1 and 1.0): recorded, extracted by GNU tar, and assembled back byte for byte.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use layerstore_tarsplit::{
    DirFileGetter, Disassembler, assemble, disassemble, gzip_packer, read_tar_split_gz,
};
use layerstore_testsupport::{Capability, require_or_skip};

/// A 10 MiB file with 40 small data regions (more than an old GNU header holds).
fn make_sparse_file(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    for i in 0..40u64 {
        f.write_all_at(
            format!("region {i} ").repeat(9).as_bytes(),
            i * 256 * 1024 + 100,
        )
        .unwrap();
    }
    f.set_len(10 << 20).unwrap();
}

fn gnu_tar(dir: &Path, args: &[&str]) {
    let status = Command::new("tar")
        .current_dir(dir)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "tar {args:?}");
}

#[test]
fn gnu_tar_sparse_dialects_round_trip() {
    require_or_skip!(Capability::GnuTar);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_sparse_file(&src.join("holey"));
    std::fs::write(src.join("plain"), b"plain file\n").unwrap();

    let dialects: &[(&str, &[&str])] = &[
        ("gnu", &["--format=gnu"]),
        ("pax-0.0", &["--format=posix", "--sparse-version=0.0"]),
        ("pax-0.1", &["--format=posix", "--sparse-version=0.1"]),
        ("pax-1.0", &["--format=posix", "--sparse-version=1.0"]),
    ];
    for (label, flags) in dialects {
        let tar_path = work.path().join(format!("{label}.tar"));
        let mut args = vec!["--sparse", "-cf", tar_path.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["-C", src.to_str().unwrap(), "holey", "plain"]);
        gnu_tar(work.path(), &args);
        let tarball = std::fs::read(&tar_path).unwrap();

        let mut d = Disassembler::new(&tarball[..], Vec::new());
        let holey = d.next_header().unwrap().unwrap();
        assert_eq!(holey.name, b"holey", "{label}");
        let map = holey
            .sparse
            .clone()
            .unwrap_or_else(|| panic!("{label}: not sparse"));
        assert_eq!(map.real_size, 10 << 20, "{label}");
        assert!(
            map.regions.len() >= 40,
            "{label}: {} regions",
            map.regions.len()
        );
        assert_eq!(holey.size, map.packed_size(), "{label}");

        let records = disassemble(&tarball[..], gzip_packer(Vec::new()))
            .unwrap()
            .finish()
            .unwrap();
        let out_dir = work.path().join(format!("x-{label}"));
        std::fs::create_dir(&out_dir).unwrap();
        gnu_tar(
            work.path(),
            &[
                "-xf",
                tar_path.to_str().unwrap(),
                "-C",
                out_dir.to_str().unwrap(),
            ],
        );
        let getter = DirFileGetter::new(&out_dir).unwrap();
        let mut rebuilt = Vec::new();
        assemble(read_tar_split_gz(&records[..]), &getter, &mut rebuilt)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(rebuilt == tarball, "{label}: rebuilt stream differs");
    }
}
