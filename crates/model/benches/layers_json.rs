//! Parsing and encoding a synthetic `layers.json` of 40,000 records (about 20 MB, the size of
//! a large store): `cargo bench -p layerstore-model --bench layers_json`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use layerstore_model::{
    Compression, Digest, DigestAlgorithm, IDMap, Layer, Timestamp, encode_layers_json,
    parse_layers_json,
};

const LAYERS: usize = 40_000;

/// A deterministic 32-byte hash for record `i` (no need for real randomness here).
fn hash(i: usize, salt: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut state = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    for chunk in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    out
}

fn digest(i: usize, salt: u64) -> Digest {
    Digest::from_hash(DigestAlgorithm::Sha256, &hash(i, salt)).expect("32 bytes")
}

fn synthetic_layers() -> Vec<Layer> {
    (0..LAYERS)
        .map(|i| {
            let id = digest(i, 1).hex().to_owned();
            let parent = if i % 10 == 0 {
                String::new()
            } else {
                digest(i - 1, 1).hex().to_owned()
            };
            Layer {
                id,
                names: if i % 3 == 0 {
                    vec![format!("registry.example.com/app-{i}:latest")]
                } else {
                    Vec::new()
                },
                parent,
                metadata: if i % 7 == 0 {
                    format!("{{\"note\":\"layer <{i}>\"}}")
                } else {
                    String::new()
                },
                created: Timestamp::from_unix(
                    1_795_810_472 + i as i64,
                    (i as u32 * 7919) % 1_000_000_000,
                )
                .expect("in range"),
                compressed_digest: Some(digest(i, 2)),
                compressed_size: 1_000_000 + i as i64,
                uncompressed_digest: Some(digest(i, 3)),
                uncompressed_size: 3_000_000 + i as i64,
                compression: Compression::Gzip,
                uids: vec![0, 1000],
                gids: vec![0, 1000],
                uid_map: if i % 50 == 0 {
                    vec![IDMap {
                        container_id: 0,
                        host_id: 100_000,
                        size: 65_536,
                    }]
                } else {
                    Vec::new()
                },
                big_data_names: if i % 5 == 0 {
                    vec!["manifest".to_owned()]
                } else {
                    Vec::new()
                },
                ..Layer::default()
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let layers = synthetic_layers();
    let bytes = encode_layers_json(&layers).expect("encodes");
    eprintln!(
        "synthetic layers.json: {LAYERS} records, {} bytes",
        bytes.len()
    );
    let mut group = c.benchmark_group("layers_json_40k");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| parse_layers_json(black_box(&bytes)).expect("parses"))
    });
    group.bench_function("encode", |b| {
        b.iter(|| encode_layers_json(black_box(&layers)).expect("encodes"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
