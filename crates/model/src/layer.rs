//! [`Layer`], the record of `layers.json`, and [`IDMap`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{Deserialize, Deserializer, MapAccess};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::{Deserialize as DeriveDeserialize, Serialize as DeriveSerialize};
use serde_json::Value;

use crate::compression::Compression;
use crate::digest::Digest;
use crate::record::{
    GoObject, GoRecord, RecordField, deserialize_record, list, scalar, serialize_extra,
};
use crate::timestamp::Timestamp;

/// One range of an ID mapping (Go's `idtools.IDMap`): container IDs
/// `container_id..container_id + size` are host IDs `host_id..host_id + size`.
///
/// Go declares the fields `int`; the kernel's maps and Go's own parser limit them to `u32`.
/// Add them as `u64` to avoid overflow. A missing field reads as 0, as in Go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, DeriveSerialize, DeriveDeserialize)]
#[serde(default)]
pub struct IDMap {
    /// First ID inside the container.
    pub container_id: u32,
    /// First ID on the host.
    pub host_id: u32,
    /// Number of IDs in the range.
    pub size: u32,
}

/// A layer record: one element of `layers.json`, plus the in-memory state Go keeps on the same
/// struct.
///
/// Serialized with Go's field order and omit-when-empty rules (see the
/// [crate documentation](crate#the-layer-record)); fields this crate does not know are kept
/// in [`Layer::extra`] and written back after the known ones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Layer {
    /// `id`: the layer's ID, random 64-hex or caller-given (see [`crate::validate_id`]).
    pub id: String,
    /// `names`: other names for the layer, unique across the store.
    pub names: Vec<String>,
    /// `parent`: the parent layer's ID; empty for a base layer.
    pub parent: String,
    /// `metadata`: free text set by the caller.
    pub metadata: String,
    /// `mountlabel`: SELinux label for mounting.
    pub mount_label: String,
    /// Where the layer is mounted (from `mountpoints.json`; never in `layers.json`).
    pub mount_point: Option<PathBuf>,
    /// How many times it is mounted (from `mountpoints.json`; never in `layers.json`).
    pub mount_count: u32,
    /// `created`: when the layer was created; Go's zero time when the record lacks it. Always
    /// written.
    pub created: Timestamp,
    /// `compressed-diff-digest`: digest of the diff as it was received.
    pub compressed_digest: Option<Digest>,
    /// `compressed-size`: size of the diff as it was received; 0 is not written.
    pub compressed_size: i64,
    /// `diff-digest`: digest of the uncompressed diff (the "DiffID"). Its presence says that
    /// [`Layer::uncompressed_size`] is known.
    pub uncompressed_digest: Option<Digest>,
    /// `toc-digest`: digest of a zstd:chunked table of contents (written by newer Go only).
    pub toc_digest: Option<Digest>,
    /// `diff-size`: size of the uncompressed diff, trailing tar padding included; 0 is not
    /// written.
    pub uncompressed_size: i64,
    /// `compression`: how the received diff was compressed.
    pub compression: Compression,
    /// `uidset`: the UIDs owning files in the diff, sorted ascending.
    pub uids: Vec<u32>,
    /// `gidset`: the GIDs owning files in the diff, sorted ascending.
    pub gids: Vec<u32>,
    /// `flags`: arbitrary values; upstream defines only `"incomplete": true`.
    pub flags: BTreeMap<String, Value>,
    /// `uidmap`: UID mapping of the layer's contents.
    pub uid_map: Vec<IDMap>,
    /// `gidmap`: GID mapping of the layer's contents.
    pub gid_map: Vec<IDMap>,
    /// Whether the layer belongs to a read-only store (never in `layers.json`).
    pub read_only: bool,
    /// `big-data-names`: keys of the layer's big-data items, in insertion order.
    pub big_data_names: Vec<String>,
    /// Fields of the record this crate does not know (from a newer writer), kept so that a
    /// round trip does not lose them. Written after the known fields, in key order; a key that
    /// names a known field is not written.
    pub extra: BTreeMap<String, Value>,
}

/// The flag Go sets while a layer is being created or deleted.
pub const INCOMPLETE_FLAG: &str = "incomplete";

impl Layer {
    /// A record with the given ID, created now, and everything else empty.
    pub fn new(id: impl Into<String>) -> Layer {
        Layer {
            id: id.into(),
            created: Timestamp::now(),
            ..Layer::default()
        }
    }

    /// The parent's ID, `None` for a base layer.
    pub fn parent(&self) -> Option<&str> {
        (!self.parent.is_empty()).then_some(self.parent.as_str())
    }

    /// Whether the record carries `"incomplete": true`, the mark of a create or delete that
    /// did not finish. Like Go, any other value of the flag does not count.
    pub fn is_incomplete(&self) -> bool {
        self.flags.get(INCOMPLETE_FLAG) == Some(&Value::Bool(true))
    }

    /// Sets or clears the `incomplete` flag.
    pub fn set_incomplete(&mut self, incomplete: bool) {
        if incomplete {
            self.flags
                .insert(INCOMPLETE_FLAG.to_owned(), Value::Bool(true));
        } else {
            self.flags.remove(INCOMPLETE_FLAG);
        }
    }

    /// The uncompressed size if known: Go's `Size()` answers -1 unless `diff-digest` is set.
    pub fn known_uncompressed_size(&self) -> Option<i64> {
        self.uncompressed_digest
            .as_ref()
            .map(|_| self.uncompressed_size)
    }
}

/// The known fields of a record, in Go's order, with their JSON keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Id,
    Names,
    Parent,
    Metadata,
    MountLabel,
    Created,
    CompressedDigest,
    CompressedSize,
    UncompressedDigest,
    TocDigest,
    UncompressedSize,
    Compression,
    Uids,
    Gids,
    Flags,
    UidMap,
    GidMap,
    BigDataNames,
}

const FIELDS: &[(&str, Field)] = &[
    ("id", Field::Id),
    ("names", Field::Names),
    ("parent", Field::Parent),
    ("metadata", Field::Metadata),
    ("mountlabel", Field::MountLabel),
    ("created", Field::Created),
    ("compressed-diff-digest", Field::CompressedDigest),
    ("compressed-size", Field::CompressedSize),
    ("diff-digest", Field::UncompressedDigest),
    ("toc-digest", Field::TocDigest),
    ("diff-size", Field::UncompressedSize),
    ("compression", Field::Compression),
    ("uidset", Field::Uids),
    ("gidset", Field::Gids),
    ("flags", Field::Flags),
    ("uidmap", Field::UidMap),
    ("gidmap", Field::GidMap),
    ("big-data-names", Field::BigDataNames),
];

impl RecordField for Field {
    const FIELDS: &'static [(&'static str, Field)] = FIELDS;

    fn exact(key: &str) -> Option<Field> {
        // A match compiles to a length switch plus one comparison: this runs for every key
        // of a 40,000-record file.
        Some(match key {
            "id" => Field::Id,
            "names" => Field::Names,
            "parent" => Field::Parent,
            "metadata" => Field::Metadata,
            "mountlabel" => Field::MountLabel,
            "created" => Field::Created,
            "compressed-diff-digest" => Field::CompressedDigest,
            "compressed-size" => Field::CompressedSize,
            "diff-digest" => Field::UncompressedDigest,
            "toc-digest" => Field::TocDigest,
            "diff-size" => Field::UncompressedSize,
            "compression" => Field::Compression,
            "uidset" => Field::Uids,
            "gidset" => Field::Gids,
            "flags" => Field::Flags,
            "uidmap" => Field::UidMap,
            "gidmap" => Field::GidMap,
            "big-data-names" => Field::BigDataNames,
            _ => return None,
        })
    }
}

impl Serialize for Layer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        if !self.names.is_empty() {
            map.serialize_entry("names", &self.names)?;
        }
        if !self.parent.is_empty() {
            map.serialize_entry("parent", &self.parent)?;
        }
        if !self.metadata.is_empty() {
            map.serialize_entry("metadata", &self.metadata)?;
        }
        if !self.mount_label.is_empty() {
            map.serialize_entry("mountlabel", &self.mount_label)?;
        }
        // Go's omitempty never omits a struct such as time.Time.
        map.serialize_entry("created", &self.created)?;
        if let Some(digest) = &self.compressed_digest {
            map.serialize_entry("compressed-diff-digest", digest)?;
        }
        if self.compressed_size != 0 {
            map.serialize_entry("compressed-size", &self.compressed_size)?;
        }
        if let Some(digest) = &self.uncompressed_digest {
            map.serialize_entry("diff-digest", digest)?;
        }
        if let Some(digest) = &self.toc_digest {
            map.serialize_entry("toc-digest", digest)?;
        }
        if self.uncompressed_size != 0 {
            map.serialize_entry("diff-size", &self.uncompressed_size)?;
        }
        if self.compression != Compression::None {
            map.serialize_entry("compression", &self.compression)?;
        }
        if !self.uids.is_empty() {
            map.serialize_entry("uidset", &self.uids)?;
        }
        if !self.gids.is_empty() {
            map.serialize_entry("gidset", &self.gids)?;
        }
        if !self.flags.is_empty() {
            map.serialize_entry("flags", &GoObject(&self.flags))?;
        }
        if !self.uid_map.is_empty() {
            map.serialize_entry("uidmap", &self.uid_map)?;
        }
        if !self.gid_map.is_empty() {
            map.serialize_entry("gidmap", &self.gid_map)?;
        }
        if !self.big_data_names.is_empty() {
            map.serialize_entry("big-data-names", &self.big_data_names)?;
        }
        serialize_extra::<Field, _>(&mut map, &self.extra)?;
        map.end()
    }
}

impl GoRecord for Layer {
    type Field = Field;
    const EXPECTING: &'static str = "a layer record (JSON object)";

    fn extra_mut(&mut self) -> &mut BTreeMap<String, Value> {
        &mut self.extra
    }

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: Field,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match field {
            Field::Id => scalar(map, &mut self.id),
            Field::Names => list(map, &mut self.names),
            Field::Parent => scalar(map, &mut self.parent),
            Field::Metadata => scalar(map, &mut self.metadata),
            Field::MountLabel => scalar(map, &mut self.mount_label),
            Field::Created => scalar(map, &mut self.created),
            Field::CompressedDigest => scalar(map, &mut self.compressed_digest),
            Field::CompressedSize => scalar(map, &mut self.compressed_size),
            Field::UncompressedDigest => scalar(map, &mut self.uncompressed_digest),
            Field::TocDigest => scalar(map, &mut self.toc_digest),
            Field::UncompressedSize => scalar(map, &mut self.uncompressed_size),
            Field::Compression => scalar(map, &mut self.compression),
            Field::Uids => list(map, &mut self.uids),
            Field::Gids => list(map, &mut self.gids),
            Field::Flags => list(map, &mut self.flags),
            Field::UidMap => list(map, &mut self.uid_map),
            Field::GidMap => list(map, &mut self.gid_map),
            Field::BigDataNames => list(map, &mut self.big_data_names),
        }
    }
}

impl<'de> Deserialize<'de> for Layer {
    /// Decodes a record as Go does: keys matched exactly, else case-insensitively; a later
    /// duplicate key wins; `null` leaves a scalar field as it was and empties a list or map.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Layer, D::Error> {
        deserialize_record(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::to_go_json;

    fn encode(layer: &Layer) -> String {
        String::from_utf8(to_go_json(layer).unwrap()).unwrap()
    }

    #[test]
    fn minimal_record_matches_go() {
        let created = "2026-11-27T20:31:46.971486642Z".parse().unwrap();
        let layer = Layer {
            id: "1".repeat(64),
            parent: "f".repeat(64),
            created,
            mount_point: Some("/mnt/x".into()),
            mount_count: 2,
            read_only: true,
            ..Layer::default()
        };
        let expected = format!(
            r#"{{"id":"{}","parent":"{}","created":"2026-11-27T20:31:46.971486642Z"}}"#,
            "1".repeat(64),
            "f".repeat(64)
        );
        assert_eq!(encode(&layer), expected);
        // In-memory fields are not written, so they come back empty.
        let back: Layer = serde_json::from_str(&expected).unwrap();
        assert_eq!(back.mount_point, None);
        assert_eq!(back.mount_count, 0);
        assert!(!back.read_only);
        assert_eq!(back.parent(), Some("f".repeat(64).as_str()));
    }

    #[test]
    fn missing_created_is_written_as_go_zero_time() {
        let layer: Layer = serde_json::from_str(r#"{"id":"a"}"#).unwrap();
        assert_eq!(
            encode(&layer),
            r#"{"id":"a","created":"0001-01-01T00:00:00Z"}"#
        );
        assert_eq!(layer.parent(), None);
        assert_eq!(layer.known_uncompressed_size(), None);
    }

    #[test]
    fn go_decoding_rules() {
        // Case-insensitive keys, later duplicates win, null keeps scalars and empties lists.
        let layer: Layer = serde_json::from_str(
            r#"{"ID":"first","id":"second","Names":["n"],"parent":"p","parent":null,
                "names":null,"uidset":[1],"UIDSET":[2,3],"compression":2,"Compression":null,
                "diff-digest":null,"flags":null,"NewField":{"b":1,"a":[null]}}"#,
        )
        .unwrap();
        assert_eq!(layer.id, "second");
        assert!(layer.names.is_empty());
        assert_eq!(layer.parent, "p");
        assert_eq!(layer.uids, [2, 3]);
        assert_eq!(layer.compression, Compression::Gzip);
        assert_eq!(layer.uncompressed_digest, None);
        assert_eq!(
            layer.extra["NewField"],
            serde_json::json!({"a":[null],"b":1})
        );
        assert_eq!(
            encode(&layer),
            r#"{"id":"second","parent":"p","created":"0001-01-01T00:00:00Z","compression":2,"uidset":[2,3],"NewField":{"a":[null],"b":1}}"#
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_value() {
        for (json, needle) in [
            (r#"{"id":"a","diff-digest":"md5:00"}"#, "\"md5:00\""),
            (r#"{"id":"a","created":"yesterday"}"#, "\"yesterday\""),
            (r#"{"id":"a","uidset":[-1]}"#, "-1"),
            (r#"{"id":"a","compressed-size":"12"}"#, "\"12\""),
            (r#"{"id":"a","uidmap":[{"host_id":"0"}]}"#, "\"0\""),
            (r#"["a"]"#, "layer record"),
        ] {
            let err = serde_json::from_str::<Layer>(json)
                .expect_err(json)
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn extra_keys_naming_known_fields_are_not_written_twice() {
        let mut layer = Layer::new("a");
        layer.extra.insert("id".into(), Value::from("shadow"));
        layer.extra.insert("zz-new".into(), Value::from(1));
        let json = encode(&layer);
        assert_eq!(json.matches("\"id\"").count(), 1, "{json}");
        assert!(json.ends_with(r#","zz-new":1}"#), "{json}");
    }

    #[test]
    fn missing_id_map_fields_read_as_zero() {
        let layer: Layer = serde_json::from_str(r#"{"id":"a","uidmap":[{"host_id":5}]}"#).unwrap();
        let expected = IDMap {
            container_id: 0,
            host_id: 5,
            size: 0,
        };
        assert_eq!(layer.uid_map, [expected]);
    }

    #[test]
    fn field_table_and_exact_match_agree() {
        for &(name, field) in FIELDS {
            assert_eq!(Field::exact(name), Some(field), "{name}");
            assert_eq!(Field::lookup(&name.to_uppercase()), Some(field), "{name}");
        }
        assert_eq!(Field::exact("ID"), None);
        assert_eq!(Field::lookup("toc_digest"), None);
    }

    #[test]
    fn incomplete_flag() {
        let mut layer = Layer::new("a");
        assert!(!layer.is_incomplete());
        layer.set_incomplete(true);
        assert!(layer.is_incomplete());
        assert!(encode(&layer).contains(r#""flags":{"incomplete":true}"#));
        layer
            .flags
            .insert(INCOMPLETE_FLAG.into(), Value::from("true"));
        assert!(!layer.is_incomplete(), "only boolean true counts");
        layer.set_incomplete(false);
        assert!(layer.flags.is_empty());
        assert!(!encode(&layer).contains("flags"));
    }
}
