//! Fuzzes layers.json loading: any bytes must give records or an error naming the position,
//! never a panic; records that load must encode to bytes that load to the same records and
//! encode to the very same bytes again (what we write is stable).
#![no_main]

use layerstore_model::{encode_layers_json, parse_layers_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(layers) = parse_layers_json(data) else {
        return;
    };
    let encoded = encode_layers_json(&layers).expect("loaded records encode");
    let again = parse_layers_json(&encoded).expect("what we write loads");
    let encoded_again = encode_layers_json(&again).expect("encodes");
    assert!(encoded == encoded_again, "encoding is not stable");
});
