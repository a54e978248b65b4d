//! Property tests: any layer record survives a JSON round trip unchanged, and our encoding
//! equals an independent, character-by-character reference encoder of Go's rules.

mod common;

use layerstore_model::{Layer, Timestamp, encode_layers_json, parse_layers_json, to_go_json};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn layers_round_trip_unchanged(layers in proptest::collection::vec(common::any_layer(), 0..4)) {
        let bytes = encode_layers_json(&layers).unwrap();
        let back = parse_layers_json(&bytes).unwrap();
        prop_assert_eq!(&back, &layers);
        // A second encoding is byte-identical: the encoding is a fixed point.
        prop_assert_eq!(encode_layers_json(&back).unwrap(), bytes);
    }

    #[test]
    fn encoding_matches_the_reference(layer in common::any_layer()) {
        let ours = String::from_utf8(to_go_json(&layer).unwrap()).unwrap();
        prop_assert_eq!(ours, common::reference_layer(&layer));
    }

    #[test]
    fn plain_serde_json_reads_and_writes_the_same_records(layer in common::any_layer()) {
        // serde_json's own escaping differs from Go's, but the data must be the same.
        let plain = serde_json::to_string(&layer).unwrap();
        let back: Layer = serde_json::from_str(&plain).unwrap();
        prop_assert_eq!(back, layer);
    }

    #[test]
    fn in_memory_fields_are_never_written(
        layer in common::any_layer(),
        mount in "/[a-z/]{0,20}",
        count in 1u32..10,
    ) {
        let mounted = Layer {
            mount_point: Some(mount.into()),
            mount_count: count,
            read_only: true,
            ..layer.clone()
        };
        prop_assert_eq!(to_go_json(&mounted).unwrap(), to_go_json(&layer).unwrap());
    }

    #[test]
    fn timestamps_round_trip_through_text(t in common::timestamp()) {
        let text = t.to_string();
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        // RFC3339Nano: no trailing zero in a fraction, no empty fraction.
        if let Some((_, fraction)) = text.split_once('.') {
            let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
            prop_assert!(!digits.is_empty() && !digits.ends_with('0'), "{}", text);
        }
    }
}
