//! Applying a generated layer (5,000 small files in 50 directories + 4 files of 8 MiB) to tmpfs
//! (`/dev/shm`), uncompressed, gzip and zstd; GNU tar `-xf` of the same bytes in the same group
//! for the ratio. Also the raw inflate / zstd throughput of the backends in use.
//!
//! `cargo bench -p layerstore-archive --bench apply`

use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use layerstore_archive::{ApplyOptions, apply};

/// Deterministic, moderately compressible bytes (text-like with a varying counter).
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("line {x:016x} of some file content\n").as_bytes());
    }
    out.truncate(len);
    out
}

fn layer() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let header = |kind, path: &str, size: usize, mode| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_path(path).expect("path");
        h.set_size(size as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        h
    };
    for d in 0..50 {
        let h = header(tar::EntryType::Directory, &format!("dir{d}/"), 0, 0o755);
        builder.append(&h, &[][..]).expect("append");
        for f in 0..100 {
            let data = content(d * 1000 + f, 1024 + (f as usize * 71) % 7168);
            let h = header(
                tar::EntryType::Regular,
                &format!("dir{d}/file{f}"),
                data.len(),
                0o644,
            );
            builder.append(&h, &data[..]).expect("append");
        }
    }
    for big in 0..4 {
        let data = content(big, 8 << 20);
        let h = header(
            tar::EntryType::Regular,
            &format!("big{big}"),
            data.len(),
            0o644,
        );
        builder.append(&h, &data[..]).expect("append");
    }
    builder.into_inner().expect("finish")
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new("/dev/shm").join(format!("layerstore-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Times `run(dir)` on a fresh empty directory per iteration (removal not timed).
fn timed(iters: u64, name: &str, run: &dyn Fn(&Path)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = scratch(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let start = Instant::now();
        run(&dir);
        total += start.elapsed();
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
    total
}

fn bench_apply(c: &mut Criterion) {
    let plain = layer();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&plain).expect("gzip");
    let gzip = gz.finish().expect("gzip");
    let zstd = zstd::encode_all(&plain[..], 3).expect("zstd");

    let mut group = c.benchmark_group("apply");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(plain.len() as u64));
    for (label, bytes, tar_flag) in [
        ("tar", &plain, None),
        ("tar.gz", &gzip, Some("-z")),
        ("tar.zst", &zstd, Some("--zstd")),
    ] {
        group.bench_function(format!("layerstore/{label}"), |b| {
            b.iter_custom(|iters| {
                timed(iters, "ours", &|dir| {
                    let (report, _) = apply(dir, &bytes[..], Vec::new(), &ApplyOptions::default())
                        .expect("apply");
                    black_box(report);
                })
            });
        });
        let file = scratch(&format!("input.{label}"));
        std::fs::write(&file, bytes).expect("write input");
        group.bench_function(format!("gnu-tar/{label}"), |b| {
            b.iter_custom(|iters| {
                timed(iters, "gnu", &|dir| {
                    let mut cmd = Command::new("tar");
                    cmd.arg("-xf").arg(&file).arg("-C").arg(dir);
                    if let Some(flag) = tar_flag {
                        cmd.arg(flag);
                    }
                    assert!(cmd.status().expect("tar").success());
                })
            });
        });
        let _ = std::fs::remove_file(&file);
    }
    group.finish();

    let mut group = c.benchmark_group("decompress");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(plain.len() as u64));
    for (label, bytes) in [("gzip (flate2 zlib-rs)", &gzip), ("zstd (libzstd)", &zstd)] {
        group.bench_function(label, |b| {
            b.iter(|| {
                let (_, mut reader) = layerstore_archive::decompress(&bytes[..]).expect("decoder");
                let mut sink = [0u8; 256 * 1024];
                let mut n = 0;
                loop {
                    let got = reader.read(&mut sink).expect("read");
                    if got == 0 {
                        break;
                    }
                    n += got;
                }
                black_box(n)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
