//! Strategies for random layer, image and container records, and an independent reference
//! encoder of Go's JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use layerstore_model::{
    Compression, Container, Digest, DigestAlgorithm, IDMap, Image, Layer, Timestamp,
    is_manifest_key,
};
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
    (go_layer(), proptest::option::of(digest()), extra()).prop_map(
        |(mut layer, toc_digest, extra)| {
            layer.toc_digest = toc_digest;
            layer.extra = extra;
            layer
        },
    )
}

/// A sha256 digest: the only algorithm the Go tool is built with (podman has sha512 too).
fn sha256_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 32).prop_map(|hash| {
        Digest::from_hash(DigestAlgorithm::Sha256, &hash)
            .expect("32 bytes")
            .as_str()
            .to_owned()
    })
}

/// Big-data items: keys (some manifests, some with characters Go's file names encode), sizes
/// and digest texts (valid sha256 for manifests, as the Go tool requires; anything for the
/// rest).
fn big_data()
-> impl Strategy<Value = (Vec<String>, BTreeMap<String, i64>, BTreeMap<String, String>)> {
    let key = prop_oneof![
        "manifest[a-z0-9:-]{0,8}",
        "[a-z.]{1,8}",
        tricky_string(8).prop_filter("not a manifest", |k| !is_manifest_key(k)),
    ];
    let digest_text = prop_oneof![
        digest().prop_map(|d| d.as_str().to_owned()),
        tricky_string(10),
    ];
    proptest::collection::btree_map(key, (size(), sha256_text(), digest_text), 0..4).prop_map(
        |items| {
            let names: Vec<String> = items.keys().rev().cloned().collect();
            let sizes = items
                .iter()
                .map(|(k, (size, _, _))| (k.clone(), *size))
                .collect();
            let digests = items
                .into_iter()
                .map(|(k, (_, valid, any))| {
                    let text = if is_manifest_key(&k) { valid } else { any };
                    (k, text)
                })
                .collect();
            (names, sizes, digests)
        },
    )
}

/// An image record of the kind Go 1.43 can hold and load: valid digests where Go checks
/// them, no unknown fields.
pub fn go_image() -> impl Strategy<Value = Image> {
    let identity = (
        "[0-9a-f]{64}|[a-z][a-z0-9-]{0,20}",
        prop_oneof![Just(String::new()), sha256_text()],
        proptest::collection::vec(tricky_string(10), 0..3),
        proptest::collection::vec(tricky_string(10), 0..3),
        prop_oneof![Just(String::new()), "[0-9a-f]{64}"],
        proptest::collection::vec("[0-9a-f]{64}", 0..3),
    );
    (
        identity,
        tricky_string(20),
        big_data(),
        timestamp(),
        flags(),
    )
        .prop_map(
            |(
                (id, digest, names, names_history, top_layer, mapped_top_layers),
                metadata,
                (big_data_names, big_data_sizes, big_data_digests),
                created,
                flags,
            )| Image {
                id,
                digest,
                names,
                names_history,
                top_layer,
                mapped_top_layers,
                metadata,
                big_data_names,
                big_data_sizes,
                big_data_digests,
                created,
                flags,
                ..Image::default()
            },
        )
}

/// Unknown keys: they must not match a known one even ignoring case, as Go would take them
/// for that field.
fn extra() -> impl Strategy<Value = BTreeMap<String, Value>> {
    proptest::collection::btree_map("x-[a-z<&]{0,6}", go_value(), 0..3)
}

/// Any image record, unknown fields included.
pub fn any_image() -> impl Strategy<Value = Image> {
    (go_image(), extra()).prop_map(|(mut image, extra)| {
        image.extra = extra;
        image
    })
}

/// A container record of the kind Go 1.43 can hold: no unknown fields.
pub fn go_container() -> impl Strategy<Value = Container> {
    let identity = (
        "[0-9a-f]{64}|[a-z][a-z0-9-]{0,20}",
        proptest::collection::vec(tricky_string(10), 0..3),
        prop_oneof![Just(String::new()), "[0-9a-f]{64}"],
        "[0-9a-f]{64}",
        tricky_string(20),
    );
    (
        identity,
        big_data(),
        timestamp(),
        id_maps(),
        id_maps(),
        flags(),
    )
        .prop_map(
            |(
                (id, names, image_id, layer_id, metadata),
                (big_data_names, big_data_sizes, big_data_digests),
                created,
                uid_map,
                gid_map,
                flags,
            )| Container {
                id,
                names,
                image_id,
                layer_id,
                metadata,
                big_data_names,
                big_data_sizes,
                big_data_digests,
                created,
                uid_map,
                gid_map,
                flags,
                ..Container::default()
            },
        )
}

/// Any container record, unknown fields included.
pub fn any_container() -> impl Strategy<Value = Container> {
    (go_container(), extra()).prop_map(|(mut container, extra)| {
        container.extra = extra;
        container
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

/// A record written out key by key, with Go's escaping: the reference the encoders are
/// compared with.
pub struct Reference(String);

impl Reference {
    pub fn new() -> Reference {
        Reference(String::from("{"))
    }

    fn key(&mut self, name: &str) -> &mut String {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        reference_string(&mut self.0, name);
        self.0.push(':');
        &mut self.0
    }

    /// A string field, always written.
    pub fn string(&mut self, name: &str, value: &str) {
        reference_string(self.key(name), value);
    }

    /// A string field with Go's `omitempty`.
    pub fn string_omitempty(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.string(name, value);
        }
    }

    /// Any other value written with `Display` (numbers, timestamps in quotes).
    pub fn raw_omitempty(&mut self, name: &str, value: Option<String>) {
        if let Some(text) = value {
            self.key(name).push_str(&text);
        }
    }

    pub fn strings(&mut self, name: &str, items: &[String]) {
        if items.is_empty() {
            return;
        }
        let out = self.key(name);
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            reference_string(out, item);
        }
        out.push(']');
    }

    pub fn numbers(&mut self, name: &str, items: &[u32]) {
        if !items.is_empty() {
            let text: Vec<String> = items.iter().map(u32::to_string).collect();
            write!(self.key(name), "[{}]", text.join(",")).unwrap();
        }
    }

    pub fn id_maps(&mut self, name: &str, items: &[IDMap]) {
        if items.is_empty() {
            return;
        }
        let text: Vec<String> = items
            .iter()
            .map(|m| {
                format!(
                    r#"{{"container_id":{},"host_id":{},"size":{}}}"#,
                    m.container_id, m.host_id, m.size
                )
            })
            .collect();
        write!(self.key(name), "[{}]", text.join(",")).unwrap();
    }

    /// A map field with `omitempty`: keys sorted, values as Go writes them.
    pub fn object<V: Into<Value> + Clone>(&mut self, name: &str, map: &BTreeMap<String, V>) {
        if !map.is_empty() {
            let object: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            reference_value(self.key(name), &Value::Object(object));
        }
    }

    pub fn created(&mut self, created: &Timestamp) {
        write!(self.key("created"), "\"{created}\"").unwrap();
    }

    /// The unknown keys, after the known ones.
    pub fn extra(&mut self, extra: &BTreeMap<String, Value>) {
        for (name, value) in extra {
            reference_value(self.key(name), value);
        }
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// The record as Go writes it, built field by field from §1.1 of the format notes.
pub fn reference_layer(layer: &Layer) -> String {
    let mut out = Reference::new();
    out.string("id", &layer.id);
    out.strings("names", &layer.names);
    out.string_omitempty("parent", &layer.parent);
    out.string_omitempty("metadata", &layer.metadata);
    out.string_omitempty("mountlabel", &layer.mount_label);
    out.created(&layer.created);
    let quoted = |d: &Option<Digest>| d.as_ref().map(|d| format!("\"{d}\""));
    let nonzero = |n: i64| (n != 0).then(|| n.to_string());
    out.raw_omitempty("compressed-diff-digest", quoted(&layer.compressed_digest));
    out.raw_omitempty("compressed-size", nonzero(layer.compressed_size));
    out.raw_omitempty("diff-digest", quoted(&layer.uncompressed_digest));
    out.raw_omitempty("toc-digest", quoted(&layer.toc_digest));
    out.raw_omitempty("diff-size", nonzero(layer.uncompressed_size));
    out.raw_omitempty("compression", nonzero(layer.compression.go_int()));
    out.numbers("uidset", &layer.uids);
    out.numbers("gidset", &layer.gids);
    out.object("flags", &layer.flags);
    out.id_maps("uidmap", &layer.uid_map);
    out.id_maps("gidmap", &layer.gid_map);
    out.strings("big-data-names", &layer.big_data_names);
    out.extra(&layer.extra);
    out.finish()
}

/// The image record as Go writes it (store doc §1.2).
pub fn reference_image(image: &Image) -> String {
    let mut out = Reference::new();
    out.string("id", &image.id);
    out.string_omitempty("digest", &image.digest);
    out.strings("names", &image.names);
    out.strings("names-history", &image.names_history);
    out.string_omitempty("layer", &image.top_layer);
    out.strings("mapped-layers", &image.mapped_top_layers);
    out.string_omitempty("metadata", &image.metadata);
    out.strings("big-data-names", &image.big_data_names);
    out.object("big-data-sizes", &image.big_data_sizes);
    out.object("big-data-digests", &image.big_data_digests);
    out.created(&image.created);
    out.object("flags", &image.flags);
    out.extra(&image.extra);
    out.finish()
}

/// The container record as Go writes it (store doc §1.3).
pub fn reference_container(container: &Container) -> String {
    let mut out = Reference::new();
    out.string("id", &container.id);
    out.strings("names", &container.names);
    out.string("image", &container.image_id);
    out.string("layer", &container.layer_id);
    out.string_omitempty("metadata", &container.metadata);
    out.strings("big-data-names", &container.big_data_names);
    out.object("big-data-sizes", &container.big_data_sizes);
    out.object("big-data-digests", &container.big_data_digests);
    out.created(&container.created);
    out.id_maps("uidmap", &container.uid_map);
    out.id_maps("gidmap", &container.gid_map);
    out.object("flags", &container.flags);
    out.extra(&container.extra);
    out.finish()
}
