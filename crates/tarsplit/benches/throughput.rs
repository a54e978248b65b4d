//! Throughput of tar-split over a ~200 MB in-memory tarball of mixed files (many small ones,
//! some large), generated here.
//!
//! * `disassemble/*`: a plain read of the same bytes through a 256 KiB buffer, the same read
//!   plus the CRC-64 of every byte (the floor of any tar-split: Go computes it too), the
//!   draining [`disassemble`] into a `Vec` of entries and into the gzip JSON-lines packer, and
//!   the pass-through [`TeeDisassembler`] read to the end.
//! * `assemble/*`: concatenating the same segments and files into a buffer (the floor), and
//!   [`assemble`] from decoded entries and from the `.tar-split.gz` bytes (CRC and size checks
//!   included).
//!
//! Run with `cargo bench -p layerstore-tarsplit`.

use std::hint::black_box;
use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use layerstore_tarsplit::{
    Entry, EntryKind, FileGetter, MemoryFileGetter, TeeDisassembler, assemble, disassemble,
    gzip_packer, read_tar_split_gz,
};

/// Deterministic filler that does not compress to nothing.
fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// ~200 MB: 6,000 files of 1-40 KiB, 40 of 2-6 MiB, plus directories.
fn tarball() -> (Vec<u8>, MemoryFileGetter) {
    let mut b = tar::Builder::new(Vec::new());
    let mut getter = MemoryFileGetter::new();
    let mut add = |b: &mut tar::Builder<Vec<u8>>, name: String, data: Vec<u8>| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, &name, &data[..]).unwrap();
        getter.insert(name.as_bytes(), data);
    };
    for d in 0..60 {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        b.append_data(&mut h, format!("dir{d}/"), &[][..]).unwrap();
        for f in 0..100u64 {
            let len = 1024 + ((d * 100 + f) * 7919 % 40_000) as usize;
            add(
                &mut b,
                format!("dir{d}/file{f}.txt"),
                fill(d * 1000 + f, len),
            );
        }
    }
    for big in 0..40u64 {
        let len = (2 << 20) + (big as usize * 100_003) % (4 << 20);
        add(&mut b, format!("big/blob{big}.bin"), fill(big + 7, len));
    }
    (b.into_inner().unwrap(), getter)
}

fn benches(c: &mut Criterion) {
    let (tar, getter) = tarball();
    let entries: Vec<Entry> = disassemble(&tar[..], Vec::new()).unwrap();
    let gz = disassemble(&tar[..], gzip_packer(Vec::new()))
        .unwrap()
        .finish()
        .unwrap();
    let mut check = Vec::new();
    assemble(read_tar_split_gz(&gz[..]), &getter, &mut check).unwrap();
    assert!(check == tar, "assembly does not give the tarball back");
    drop(check);
    eprintln!(
        "tarball: {} bytes, {} entries, tar-split.gz {} bytes",
        tar.len(),
        entries.len(),
        gz.len()
    );

    let mut group = c.benchmark_group("disassemble");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(tar.len() as u64));
    let mut buf = vec![0u8; 256 << 10];
    group.bench_function("plain_read", |bench| {
        bench.iter(|| {
            let mut r = &tar[..];
            let mut total = 0usize;
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += usize::from(black_box(buf[n - 1])) & 1;
            }
            total
        })
    });
    group.bench_function("plain_read_and_crc64", |bench| {
        bench.iter(|| {
            let mut r = &tar[..];
            let mut crc = 0u64;
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                crc ^= layerstore_tarsplit::crc64(&buf[..n]);
            }
            crc
        })
    });
    group.bench_function("to_entries", |bench| {
        bench.iter(|| disassemble(black_box(&tar[..]), Vec::new()).unwrap().len())
    });
    group.bench_function("to_gzip_json_lines", |bench| {
        bench.iter(|| {
            disassemble(black_box(&tar[..]), gzip_packer(Vec::new()))
                .unwrap()
                .finish()
                .unwrap()
                .len()
        })
    });
    group.bench_function("tee_read", |bench| {
        bench.iter(|| {
            let mut tee = TeeDisassembler::new(black_box(&tar[..]), Vec::new());
            let mut total = 0usize;
            loop {
                let n = tee.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        })
    });
    group.finish();

    let mut group = c.benchmark_group("assemble");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(tar.len() as u64));
    let mut out: Vec<u8> = Vec::with_capacity(tar.len());
    group.bench_function("concat_files", |bench| {
        bench.iter(|| {
            out.clear();
            for e in &entries {
                match e.kind {
                    EntryKind::Segment => out.extend_from_slice(e.payload.as_deref().unwrap()),
                    EntryKind::File if e.size > 0 => {
                        getter
                            .get(e.name_bytes())
                            .unwrap()
                            .read_to_end(&mut out)
                            .unwrap();
                    }
                    EntryKind::File => {}
                }
            }
            out.len()
        })
    });
    group.bench_function("from_entries", |bench| {
        bench.iter(|| {
            out.clear();
            assemble(entries.iter().cloned().map(Ok), &getter, &mut out).unwrap()
        })
    });
    group.bench_function("from_tar_split_gz", |bench| {
        bench.iter(|| {
            out.clear();
            assemble(read_tar_split_gz(&gz[..]), &getter, &mut out).unwrap()
        })
    });
    group.finish();
}

criterion_group!(throughput, benches);
criterion_main!(throughput);
