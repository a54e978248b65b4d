//! Making a vfs child layer: our `copy_tree` against GNU `cp -a` (the ratio is what matters),
//! on the filesystem holding the temporary directory (reflinks where it offers them, as both
//! tools use them).

use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use layerstore_vfs::copy::{CopyOptions, copy_tree};

/// 1000 small files in 20 directories, a hardlink, a symlink and one 32 MiB file.
fn make_tree(root: &Path) {
    for i in 0..1000 {
        let dir = root.join(format!("d{}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}")), vec![(i % 251) as u8; 4096]).unwrap();
    }
    std::fs::hard_link(root.join("d0/f0"), root.join("hard")).unwrap();
    std::os::unix::fs::symlink("d0/f0", root.join("link")).unwrap();
    std::fs::write(root.join("big"), vec![9u8; 32 << 20]).unwrap();
}

fn bench_copy(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let mut group = c.benchmark_group("create child layer (1000 files + 32 MiB)");
    group.sample_size(10);
    let mut n = 0u32;
    group.bench_function("layerstore-vfs copy_tree", |b| {
        b.iter(|| {
            n += 1;
            let dst = tmp.path().join(format!("ours{n}"));
            std::fs::create_dir(&dst).unwrap();
            copy_tree(&src, &dst, CopyOptions::default()).unwrap();
            std::fs::remove_dir_all(&dst).unwrap();
        })
    });
    group.bench_function("GNU cp -a", |b| {
        b.iter(|| {
            n += 1;
            let dst = tmp.path().join(format!("cp{n}"));
            let status = Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(&dst)
                .status()
                .unwrap();
            assert!(status.success());
            std::fs::remove_dir_all(&dst).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_copy);
criterion_main!(benches);
