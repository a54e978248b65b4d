//! A store of 40,000 layers: one parse to open, cheap lookups, batched deletes.

use crate::common;

use std::time::Instant;

use common::Scratch;
use layerstore_layers::LayerOptions;
use layerstore_testsupport::{Capability, require_or_skip};

const LAYERS: usize = 40_000;

/// A 64-hex ID that looks random (so short prefixes are unique, as with real IDs).
fn id_of(i: usize) -> String {
    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    for _ in 0..4 {
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        out.push_str(&format!("{x:016x}"));
    }
    out
}

fn synthetic_layers_json() -> Vec<u8> {
    let mut out = String::from("[");
    for i in 0..LAYERS {
        if i > 0 {
            out.push(',');
        }
        let id = id_of(i);
        let parent = if i % 10 == 0 {
            String::new()
        } else {
            format!(",\"parent\":\"{}\"", id_of(i - 1))
        };
        out.push_str(&format!(
            "{{\"id\":\"{id}\",\"names\":[\"name-{i}\"]{parent},\"created\":\"2026-11-27T20:31:46.960194405Z\",\
             \"compressed-diff-digest\":\"sha256:{id}\",\"compressed-size\":494,\"diff-digest\":\"sha256:{id}\",\
             \"diff-size\":20480,\"compression\":2,\"uidset\":[0,1000],\"gidset\":[0,2000]}}"
        ));
    }
    out.push(']');
    out.into_bytes()
}

#[test]
fn forty_thousand_layers() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    drop(scratch.open());
    let json = synthetic_layers_json();
    std::fs::write(scratch.layers_json(), &json).unwrap();

    let started = Instant::now();
    let store = scratch.open();
    let open = started.elapsed();
    assert_eq!(store.layers().unwrap().len(), LAYERS);

    let started = Instant::now();
    for i in (0..LAYERS).step_by(97) {
        assert_eq!(store.lookup(&format!("name-{i}")).unwrap(), id_of(i));
        assert_eq!(store.lookup(&id_of(i)[..16]).unwrap(), id_of(i));
    }
    let lookups = started.elapsed() / (2 * LAYERS.div_ceil(97)) as u32;

    let started = Instant::now();
    store.set_metadata("name-5", "x").unwrap();
    let one_save = started.elapsed();

    // The last 1,000 layers (whole chains: every 10th is a base) in one batch.
    let doomed: Vec<String> = (LAYERS - 1000..LAYERS)
        .map(|i| format!("name-{i}"))
        .collect();
    let keys: Vec<&str> = doomed.iter().map(String::as_str).collect();
    let started = Instant::now();
    store.delete_many(&keys).unwrap();
    let batch = started.elapsed();
    assert_eq!(store.layers().unwrap().len(), LAYERS - 1000);
    assert_eq!(scratch.open().layers().unwrap().len(), LAYERS - 1000);

    println!(
        "{LAYERS} layers, layers.json {} bytes: open {open:?}, lookup {lookups:?}, \
         one save {one_save:?}, delete_many(1000) {batch:?}",
        json.len()
    );
    // A batch costs a couple of saves, not 2 per layer (which would be ~2000 saves).
    assert!(
        batch < one_save * 200,
        "batch {batch:?} vs one save {one_save:?}"
    );
}

#[test]
fn creating_many_layers_one_by_one_stays_linear_in_saves() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    for i in 0..200 {
        store
            .create(&LayerOptions::new().id(format!("layer-{i}")))
            .unwrap();
    }
    assert_eq!(store.layers().unwrap().len(), 200);
    let keys: Vec<String> = (0..200).map(|i| format!("layer-{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    store.delete_many(&keys).unwrap();
    assert!(store.layers().unwrap().is_empty());
}
