//! Lookup cost of a [`TruncIndex`] holding 100,000 random 64-hex IDs, resolving 12-character
//! prefixes (the length of a short ID): `cargo bench -p layerstore-truncindex --bench lookup`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use layerstore_truncindex::TruncIndex;

const IDS: usize = 100_000;
const LOOKUPS_PER_ITERATION: usize = 1_000;

/// Deterministic pseudo-random 64-hex IDs (xorshift64*), so runs are comparable.
fn random_ids(count: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count)
        .map(|_| (0..4).map(|_| format!("{:016x}", next())).collect())
        .collect()
}

fn bench(c: &mut Criterion) {
    let ids = random_ids(IDS);
    let index = TruncIndex::new(&ids);
    assert_eq!(index.len(), IDS);
    let prefixes: Vec<&str> = ids
        .iter()
        .step_by(IDS / LOOKUPS_PER_ITERATION)
        .map(|id| &id[..12])
        .collect();
    let mut group = c.benchmark_group("truncindex_100k");
    group.throughput(Throughput::Elements(prefixes.len() as u64));
    group.bench_function("get_12_char_prefix", |b| {
        b.iter(|| {
            for prefix in &prefixes {
                black_box(index.get(black_box(prefix)).expect("unique prefix"));
            }
        })
    });
    group.throughput(Throughput::Elements(IDS as u64));
    group.bench_function("build_100k", |b| {
        b.iter(|| TruncIndex::new(black_box(&ids)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
