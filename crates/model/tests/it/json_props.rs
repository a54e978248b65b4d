//! Property tests: any layer, image or container record survives a JSON round trip
//! unchanged, and our encoding equals an independent, character-by-character reference
//! encoder of Go's rules; big-data file names and image digest lists keep their invariants.

use crate::common;

use std::collections::BTreeMap;

use layerstore_model::{
    BigDataOwner, Container, Image, Layer, Timestamp, big_data_file_name, check_big_data_key,
    encode_containers_json, encode_images_json, encode_layers_json, is_manifest_key,
    parse_containers_json, parse_images_json, parse_layers_json, to_go_json,
};
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

    #[test]
    fn images_round_trip_unchanged(images in proptest::collection::vec(common::any_image(), 0..4)) {
        let bytes = encode_images_json(&images).unwrap();
        let back = parse_images_json(&bytes).unwrap();
        prop_assert_eq!(&back, &images);
        prop_assert_eq!(encode_images_json(&back).unwrap(), bytes);
    }

    #[test]
    fn image_encoding_matches_the_reference(image in common::any_image()) {
        let ours = String::from_utf8(to_go_json(&image).unwrap()).unwrap();
        prop_assert_eq!(ours, common::reference_image(&image));
        let read_only = Image { read_only: true, ..image.clone() };
        prop_assert_eq!(to_go_json(&read_only).unwrap(), to_go_json(&image).unwrap());
    }

    #[test]
    fn containers_round_trip_unchanged(
        containers in proptest::collection::vec(common::any_container(), 0..4),
    ) {
        let bytes = encode_containers_json(&containers).unwrap();
        let back = parse_containers_json(&bytes).unwrap();
        prop_assert_eq!(&back, &containers);
        prop_assert_eq!(encode_containers_json(&back).unwrap(), bytes);
    }

    #[test]
    fn container_encoding_matches_the_reference(container in common::any_container()) {
        let ours = String::from_utf8(to_go_json(&container).unwrap()).unwrap();
        prop_assert_eq!(ours, common::reference_container(&container));
        let plain = serde_json::to_string(&container).unwrap();
        prop_assert_eq!(serde_json::from_str::<Container>(&plain).unwrap(), container);
    }

    #[test]
    fn safe_keys_get_distinct_single_component_file_names(
        a in common::tricky_string(6),
        b in common::tricky_string(6),
        owner in prop::sample::select(vec![
            BigDataOwner::Layer, BigDataOwner::Image, BigDataOwner::Container,
        ]),
    ) {
        for key in [&a, &b] {
            let name = big_data_file_name(key);
            match name.strip_prefix('=') {
                // Encoded: base64 of the key, which held something to encode before its end.
                Some(encoded) if name != *key => {
                    let decoded = data_encoding::BASE64.decode(encoded.as_bytes()).unwrap();
                    prop_assert_eq!(decoded, key.as_bytes());
                }
                _ => prop_assert_eq!(&name, key),
            }
            if check_big_data_key(owner, key).is_ok() {
                prop_assert!(!name.is_empty() && name != "." && name != "..");
                prop_assert!(!name.contains('/') && !name.contains('\0'), "{:?}", name);
                if owner == BigDataOwner::Container {
                    prop_assert_ne!(name.as_str(), "userdata");
                }
            }
        }
        if a != b && check_big_data_key(owner, &a).is_ok() && check_big_data_key(owner, &b).is_ok() {
            prop_assert_ne!(big_data_file_name(&a), big_data_file_name(&b));
        }
    }

    #[test]
    fn digest_list_invariants(image in common::go_image()) {
        let digests = image.digests().unwrap();
        let texts: Vec<&str> = digests.iter().map(|d| d.as_str()).collect();
        // `digest` first, no duplicates, exactly the manifests' digests besides it.
        if !image.digest.is_empty() {
            prop_assert_eq!(texts[0], image.digest.as_str());
        }
        let mut seen = texts.clone();
        seen.sort_unstable();
        seen.dedup();
        prop_assert_eq!(seen.len(), texts.len());
        for (key, text) in &image.big_data_digests {
            if is_manifest_key(key) {
                prop_assert!(texts.contains(&text.as_str()), "{}: {}", key, text);
            }
        }
        let expected = usize::from(!image.digest.is_empty())
            + image
                .big_data_digests
                .iter()
                .filter(|(key, text)| is_manifest_key(key) && **text != image.digest)
                .map(|(_, text)| text)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
        prop_assert_eq!(texts.len(), expected);
        // Sticky: once set, `digest` stays whatever the manifests become.
        let mut settled = image.clone();
        settled.recompute_digest().unwrap();
        prop_assert_eq!(settled.digest.is_empty(), digests.is_empty());
        let before = settled.digest.clone();
        settled.big_data_digests = BTreeMap::new();
        settled.recompute_digest().unwrap();
        prop_assert_eq!(settled.digest, before);
    }
}
