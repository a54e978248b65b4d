//! Strategies for random layer records, and an independent reference encoder of Go's JSON.

#![allow(dead_code)] // Each test binary uses part of this module.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use layerstore_model::{Compression, Digest, DigestAlgorithm, IDMap, Layer, Timestamp};
use proptest::prelude::*;
use serde_json::Value;

/// Characters that stress the encoder: Go's HTML escapes, JSON escapes, controls, the line
/// separators, multi-byte text, and anything else.
pub fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => prop::sample::select(vec![
            '<', '>', '&', '"', '\\', '/', '\u{8}', '\u{c}', '\n', '\r', '\t', '\0', '\u{1f}',
            '\u{7f}', '\u{2028}', '\u{2029}', 'é', '€', '😀', '\u{feff}', ' ',
        ]),
        1 => any::<char>(),
    ]
}

/// Strings of up to `max` tricky characters.
pub fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(tricky_char(), 0..=max).prop_map(|chars| chars.into_iter().collect())
}

/// Any valid digest.
pub fn digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        4 => Just(DigestAlgorithm::Sha256),
        1 => Just(DigestAlgorithm::Sha384),
        1 => Just(DigestAlgorithm::Sha512),
    ]
    .prop_flat_map(|algorithm| {
        proptest::collection::vec(any::<u8>(), algorithm.size()).prop_map(move |hash| {
            Digest::from_hash(algorithm, &hash).expect("hash of the algorithm's size")
        })
    })
}

/// Any timestamp Go can write: years 0..=9999, random nanoseconds (often with trailing
/// zeros), usually UTC, sometimes with an offset.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    let nanos = prop_oneof![
        Just(0u32),
        0u32..1_000_000_000,
        (0u32..1000).prop_map(|ms| ms * 1_000_000),
    ];
    let offset = prop_oneof![3 => Just(0i16), 1 => -1439i16..=1439];
    // Stay a day inside the range so any offset keeps the local year within 0..=9999.
    (
        -62_167_219_200i64 + 86_400..=253_402_300_799 - 86_400,
        nanos,
        offset,
    )
        .prop_map(|(seconds, nanos, offset)| {
            Timestamp::from_unix(seconds, nanos)
                .and_then(|t| t.with_offset_minutes(offset))
                .expect("in range")
        })
}

/// Largest integer a float64 holds exactly: Go reads flag numbers as float64.
pub const GO_EXACT_INT: i64 = 1 << 53;

/// JSON values as Go's `interface{}` holds them: numbers that survive float64, objects with
/// short keys (never `incomplete`, which Go's loader acts on).
pub fn go_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-GO_EXACT_INT..=GO_EXACT_INT).prop_map(Value::from),
        any::<f64>()
            // An integral float below 2^64 is written without a fraction and read back as an
            // integer (as in Go, where all are float64); keep the round trip comparable.
            .prop_filter("finite, not an integer", |f| {
                f.is_finite() && (f.fract() != 0.0 || f.abs() >= 1.9e19)
            })
            .prop_map(Value::from),
        tricky_string(6).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(tricky_string(4), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn flags() -> impl Strategy<Value = BTreeMap<String, Value>> {
    proptest::collection::btree_map(
        prop_oneof![tricky_string(8), "[a-z]{1,8}"],
        go_value(),
        0..3,
    )
}

fn id_maps() -> impl Strategy<Value = Vec<IDMap>> {
    proptest::collection::vec(
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(container_id, host_id, size)| {
            IDMap {
                container_id,
                host_id,
                size,
            }
        }),
        0..3,
    )
}

fn size() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), 0i64..1 << 40, any::<i64>()]
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        (0i64..=4).prop_map(Compression::from_go_int),
        any::<i64>().prop_map(Compression::from_go_int),
    ]
}

fn sorted_ids() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::btree_set(any::<u32>(), 0..4).prop_map(|set| set.into_iter().collect())
}

/// A layer record of the kind Go 1.43 can hold: no `toc-digest`, no unknown fields.
pub fn go_layer() -> impl Strategy<Value = Layer> {
    let identity = (
        "[0-9a-f]{64}|[a-z][a-z0-9-]{0,20}",
        proptest::collection::vec(tricky_string(10), 0..3),
        prop_oneof![Just(String::new()), "[0-9a-f]{64}"],
        tricky_string(20),
        tricky_string(12),
        timestamp(),
    );
    let diff = (
        proptest::option::of(digest()),
        size(),
        proptest::option::of(digest()),
        size(),
        compression(),
        sorted_ids(),
        sorted_ids(),
    );
    let rest = (
        flags(),
        id_maps(),
        id_maps(),
        proptest::collection::vec(tricky_string(8), 0..3),
    );
    (identity, diff, rest).prop_map(
        |(
            (id, names, parent, metadata, mount_label, created),
            (
                compressed_digest,
                compressed_size,
                uncompressed_digest,
                uncompressed_size,
                compression,
                uids,
                gids,
            ),
            (flags, uid_map, gid_map, big_data_names),
        )| Layer {
            id,
            names,
            parent,
            metadata,
            mount_label,
            created,
            compressed_digest,
            compressed_size,
            uncompressed_digest,
            uncompressed_size,
            compression,
            uids,
            gids,
            flags,
            uid_map,
            gid_map,
            big_data_names,
            ..Layer::default()
        },
    )
}

/// Any layer record, including the newer `toc-digest` and unknown fields.
pub fn any_layer() -> impl Strategy<Value = Layer> {
    (
        go_layer(),
        proptest::option::of(digest()),
        // Unknown keys must not match a known one even ignoring case, as Go would take them
        // for that field.
        proptest::collection::btree_map("x-[a-z<&]{0,6}", go_value(), 0..3),
    )
        .prop_map(|(mut layer, toc_digest, extra)| {
            layer.toc_digest = toc_digest;
            layer.extra = extra;
            layer
        })
}

/// Go's escaping of a string, written out character by character from Go's rules
/// (`encoding/json` `appendString` with HTML escaping, as jsoniter does it).
pub fn reference_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                write!(out, "\\u{:04x}", u32::from(c)).unwrap()
            }
            c if u32::from(c) < 0x20 => write!(out, "\\u{:04x}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's float64 text: strconv 'f' or 'e' (shortest) by magnitude.
fn reference_float(out: &mut String, value: f64) {
    if value != 0.0 && (value.abs() < 1e-6 || value.abs() >= 1e21) {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap();
        let exponent: i32 = exponent.parse().unwrap();
        let sign = if exponent < 0 { '-' } else { '+' };
        write!(out, "{mantissa}e{sign}{:02}", exponent.abs()).unwrap();
    } else {
        write!(out, "{value}").unwrap();
    }
}

/// Go's encoding of an `interface{}` value: keys sorted.
pub fn reference_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => write!(out, "{b}").unwrap(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => write!(out, "{i}").unwrap(),
            (_, Some(u), _) => write!(out, "{u}").unwrap(),
            (_, _, Some(f)) => reference_float(out, f),
            _ => unreachable!("a number is one of the three"),
        },
        Value::String(s) => reference_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_string(out, key);
                out.push(':');
                reference_value(out, &map[key]);
            }
            out.push('}');
        }
    }
}

/// The record as Go writes it, built field by field from §1.1 of the format notes.
pub fn reference_layer(layer: &Layer) -> String {
    let mut out = String::from("{");
    let key = |out: &mut String, name: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        reference_string(out, name);
        out.push(':');
    };
    let strings = |out: &mut String, items: &[String]| {
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            reference_string(out, item);
        }
        out.push(']');
    };
    let numbers = |out: &mut String, items: &[u32]| {
        let text: Vec<String> = items.iter().map(u32::to_string).collect();
        write!(out, "[{}]", text.join(",")).unwrap();
    };
    let maps = |out: &mut String, items: &[IDMap]| {
        let text: Vec<String> = items
            .iter()
            .map(|m| {
                format!(
                    r#"{{"container_id":{},"host_id":{},"size":{}}}"#,
                    m.container_id, m.host_id, m.size
                )
            })
            .collect();
        write!(out, "[{}]", text.join(",")).unwrap();
    };
    key(&mut out, "id");
    reference_string(&mut out, &layer.id);
    if !layer.names.is_empty() {
        key(&mut out, "names");
        strings(&mut out, &layer.names);
    }
    for (name, value) in [
        ("parent", &layer.parent),
        ("metadata", &layer.metadata),
        ("mountlabel", &layer.mount_label),
    ] {
        if !value.is_empty() {
            key(&mut out, name);
            reference_string(&mut out, value);
        }
    }
    key(&mut out, "created");
    write!(out, "\"{}\"", layer.created).unwrap();
    if let Some(d) = &layer.compressed_digest {
        key(&mut out, "compressed-diff-digest");
        write!(out, "\"{d}\"").unwrap();
    }
    if layer.compressed_size != 0 {
        key(&mut out, "compressed-size");
        write!(out, "{}", layer.compressed_size).unwrap();
    }
    if let Some(d) = &layer.uncompressed_digest {
        key(&mut out, "diff-digest");
        write!(out, "\"{d}\"").unwrap();
    }
    if let Some(d) = &layer.toc_digest {
        key(&mut out, "toc-digest");
        write!(out, "\"{d}\"").unwrap();
    }
    if layer.uncompressed_size != 0 {
        key(&mut out, "diff-size");
        write!(out, "{}", layer.uncompressed_size).unwrap();
    }
    if layer.compression.go_int() != 0 {
        key(&mut out, "compression");
        write!(out, "{}", layer.compression.go_int()).unwrap();
    }
    if !layer.uids.is_empty() {
        key(&mut out, "uidset");
        numbers(&mut out, &layer.uids);
    }
    if !layer.gids.is_empty() {
        key(&mut out, "gidset");
        numbers(&mut out, &layer.gids);
    }
    if !layer.flags.is_empty() {
        key(&mut out, "flags");
        let object: serde_json::Map<String, Value> = layer
            .flags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        reference_value(&mut out, &Value::Object(object));
    }
    if !layer.uid_map.is_empty() {
        key(&mut out, "uidmap");
        maps(&mut out, &layer.uid_map);
    }
    if !layer.gid_map.is_empty() {
        key(&mut out, "gidmap");
        maps(&mut out, &layer.gid_map);
    }
    if !layer.big_data_names.is_empty() {
        key(&mut out, "big-data-names");
        strings(&mut out, &layer.big_data_names);
    }
    for (name, value) in &layer.extra {
        key(&mut out, name);
        reference_value(&mut out, value);
    }
    out.push('}');
    out
}
