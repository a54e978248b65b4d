//! [`Container`], the record of `containers.json`, and the whole file.

use std::collections::BTreeMap;
use std::io::Write;

use serde::de::{Deserialize, Deserializer, MapAccess};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::error::Result;
use crate::layer::IDMap;
use crate::record::{
    GoObject, GoRecord, RecordField, deserialize_record, encode_records, list, parse_records,
    scalar, serialize_extra, write_records,
};
use crate::timestamp::Timestamp;

/// File name of the container records, in `<graphroot>/<driver>-containers/`.
pub const CONTAINERS_JSON: &str = "containers.json";

/// Flag with the SELinux label the container's layer is mounted with (`""` without SELinux;
/// Go's CLI always writes it).
pub const MOUNT_LABEL_FLAG: &str = "MountLabel";
/// Flag with the SELinux label of the container's processes (written with
/// [`MOUNT_LABEL_FLAG`]).
pub const PROCESS_LABEL_FLAG: &str = "ProcessLabel";
/// Flag `true` for a container created volatile (overlay mounts it `volatile`).
pub const VOLATILE_FLAG: &str = "Volatile";
/// Flag with the mount options (a list of strings) the container was created with.
pub const MOUNT_OPTS_FLAG: &str = "MountOpts";

/// A container record: one element of `containers.json`.
///
/// Keys in the order Go writes them; all but `id`, `image`, `layer` and `created` are left
/// out when empty:
///
/// | key | field |
/// |---|---|
/// | `id` | [`Container::id`] (always) |
/// | `names` | [`Container::names`] |
/// | `image` | [`Container::image_id`] (always, `""` for a container without an image) |
/// | `layer` | [`Container::layer_id`] (always) |
/// | `metadata` | [`Container::metadata`] |
/// | `big-data-names` | [`Container::big_data_names`] |
/// | `big-data-sizes` | [`Container::big_data_sizes`] (keys sorted) |
/// | `big-data-digests` | [`Container::big_data_digests`] (keys sorted) |
/// | `created` | [`Container::created`] (always) |
/// | `uidmap`, `gidmap` | [`Container::uid_map`], [`Container::gid_map`] |
/// | `flags` | [`Container::flags`] (keys sorted at every level) |
/// | anything else | [`Container::extra`], after the known keys, sorted |
///
/// Decoding follows Go as for [`crate::Layer`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Container {
    /// `id`: the container's ID, random 64-hex or caller-given.
    pub id: String,
    /// `names`: names unique among the containers of the store (no history is kept).
    pub names: Vec<String>,
    /// `image`: the ID of the image it was created from; empty for none.
    pub image_id: String,
    /// `layer`: the ID of its read-write layer.
    pub layer_id: String,
    /// `metadata`: free text set by the caller.
    pub metadata: String,
    /// `big-data-names`: keys of the container's big-data items, in insertion order.
    pub big_data_names: Vec<String>,
    /// `big-data-sizes`: size in bytes per key.
    pub big_data_sizes: BTreeMap<String, i64>,
    /// `big-data-digests`: digest per key (sha256 of the bytes), as written.
    pub big_data_digests: BTreeMap<String, String>,
    /// `created`: when the container was created; Go's zero time when the record lacks it.
    pub created: Timestamp,
    /// `uidmap`: the UID mapping the caller asked for (not necessarily its layer's).
    pub uid_map: Vec<IDMap>,
    /// `gidmap`: the GID mapping the caller asked for.
    pub gid_map: Vec<IDMap>,
    /// `flags`: arbitrary values; Go sets [`MOUNT_LABEL_FLAG`], [`PROCESS_LABEL_FLAG`],
    /// [`VOLATILE_FLAG`] and [`MOUNT_OPTS_FLAG`].
    pub flags: BTreeMap<String, Value>,
    /// Fields of the record this crate does not know, kept so that a round trip does not lose
    /// them (Go 1.43 drops them when it saves).
    pub extra: BTreeMap<String, Value>,
}

impl Container {
    /// A record for a container of `image_id` (empty for none) on its layer `layer_id`,
    /// created now, and everything else empty.
    pub fn new(
        id: impl Into<String>,
        image_id: impl Into<String>,
        layer_id: impl Into<String>,
    ) -> Container {
        Container {
            id: id.into(),
            image_id: image_id.into(),
            layer_id: layer_id.into(),
            created: Timestamp::now(),
            ..Container::default()
        }
    }

    /// The image's ID, `None` for a container created without an image.
    pub fn image_id(&self) -> Option<&str> {
        (!self.image_id.is_empty()).then_some(self.image_id.as_str())
    }

    /// Whether the container was created volatile: its `Volatile` flag is `true` (as for Go,
    /// any other value does not count).
    pub fn is_volatile(&self) -> bool {
        self.flags.get(VOLATILE_FLAG) == Some(&Value::Bool(true))
    }
}

/// The known fields of a container record, in Go's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Id,
    Names,
    Image,
    Layer,
    Metadata,
    BigDataNames,
    BigDataSizes,
    BigDataDigests,
    Created,
    UidMap,
    GidMap,
    Flags,
}

impl RecordField for Field {
    const FIELDS: &'static [(&'static str, Field)] = &[
        ("id", Field::Id),
        ("names", Field::Names),
        ("image", Field::Image),
        ("layer", Field::Layer),
        ("metadata", Field::Metadata),
        ("big-data-names", Field::BigDataNames),
        ("big-data-sizes", Field::BigDataSizes),
        ("big-data-digests", Field::BigDataDigests),
        ("created", Field::Created),
        ("uidmap", Field::UidMap),
        ("gidmap", Field::GidMap),
        ("flags", Field::Flags),
    ];
}

impl Serialize for Container {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        if !self.names.is_empty() {
            map.serialize_entry("names", &self.names)?;
        }
        // Neither has omitempty in Go.
        map.serialize_entry("image", &self.image_id)?;
        map.serialize_entry("layer", &self.layer_id)?;
        if !self.metadata.is_empty() {
            map.serialize_entry("metadata", &self.metadata)?;
        }
        if !self.big_data_names.is_empty() {
            map.serialize_entry("big-data-names", &self.big_data_names)?;
        }
        if !self.big_data_sizes.is_empty() {
            map.serialize_entry("big-data-sizes", &self.big_data_sizes)?;
        }
        if !self.big_data_digests.is_empty() {
            map.serialize_entry("big-data-digests", &self.big_data_digests)?;
        }
        map.serialize_entry("created", &self.created)?;
        if !self.uid_map.is_empty() {
            map.serialize_entry("uidmap", &self.uid_map)?;
        }
        if !self.gid_map.is_empty() {
            map.serialize_entry("gidmap", &self.gid_map)?;
        }
        if !self.flags.is_empty() {
            map.serialize_entry("flags", &GoObject(&self.flags))?;
        }
        serialize_extra::<Field, _>(&mut map, &self.extra)?;
        map.end()
    }
}

impl GoRecord for Container {
    type Field = Field;
    const EXPECTING: &'static str = "a container record (JSON object)";

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
            Field::Image => scalar(map, &mut self.image_id),
            Field::Layer => scalar(map, &mut self.layer_id),
            Field::Metadata => scalar(map, &mut self.metadata),
            Field::BigDataNames => list(map, &mut self.big_data_names),
            Field::BigDataSizes => list(map, &mut self.big_data_sizes),
            Field::BigDataDigests => list(map, &mut self.big_data_digests),
            Field::Created => scalar(map, &mut self.created),
            Field::UidMap => list(map, &mut self.uid_map),
            Field::GidMap => list(map, &mut self.gid_map),
            Field::Flags => list(map, &mut self.flags),
        }
    }
}

impl<'de> Deserialize<'de> for Container {
    /// Decodes a record as Go does (see [`crate::Layer`]'s decoding).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Container, D::Error> {
        deserialize_record(deserializer)
    }
}

/// Decodes the contents of a `containers.json`, with the rules of
/// [`parse_images_json`](crate::parse_images_json).
pub fn parse_containers_json(bytes: &[u8]) -> Result<Vec<Container>> {
    parse_records(bytes, CONTAINERS_JSON, |container: &Container| {
        &container.id
    })
}

/// Writes `containers` as Go writes `containers.json`: compact, Go's escaping, no trailing
/// newline, `[]` when there are none.
pub fn write_containers_json<W: Write>(out: W, containers: &[Container]) -> Result<()> {
    write_records(out, containers, CONTAINERS_JSON)
}

/// The bytes of a `containers.json` holding `containers` (see [`write_containers_json`]).
pub fn encode_containers_json(containers: &[Container]) -> Result<Vec<u8>> {
    encode_records(containers, CONTAINERS_JSON, 512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::to_go_json;

    fn encode(container: &Container) -> String {
        String::from_utf8(to_go_json(container).unwrap()).unwrap()
    }

    #[test]
    fn records_match_go() {
        // Shapes Go 1.43 wrote (store doc §1.3).
        let created: Timestamp = "2026-12-04T15:00:42.823317927Z".parse().unwrap();
        let labels = BTreeMap::from([
            (MOUNT_LABEL_FLAG.to_owned(), Value::from("")),
            (PROCESS_LABEL_FLAG.to_owned(), Value::from("")),
        ]);
        let plain = Container {
            id: "3673".into(),
            names: vec!["ctr1".into(), "ctr2".into()],
            image_id: "d6f8".into(),
            layer_id: "2a25".into(),
            created,
            flags: labels.clone(),
            ..Container::default()
        };
        assert_eq!(
            encode(&plain),
            r#"{"id":"3673","names":["ctr1","ctr2"],"image":"d6f8","layer":"2a25","created":"2026-12-04T15:00:42.823317927Z","flags":{"MountLabel":"","ProcessLabel":""}}"#
        );
        let mut volatile = Container {
            id: "myid".into(),
            layer_id: "028d".into(),
            metadata: "meta".into(),
            created,
            uid_map: vec![IDMap {
                container_id: 0,
                host_id: 100_000,
                size: 65_536,
            }],
            flags: labels,
            ..Container::default()
        };
        volatile
            .flags
            .insert(VOLATILE_FLAG.into(), Value::Bool(true));
        assert!(volatile.is_volatile());
        assert_eq!(volatile.image_id(), None);
        assert_eq!(
            encode(&volatile),
            r#"{"id":"myid","image":"","layer":"028d","metadata":"meta","created":"2026-12-04T15:00:42.823317927Z","uidmap":[{"container_id":0,"host_id":100000,"size":65536}],"flags":{"MountLabel":"","ProcessLabel":"","Volatile":true}}"#
        );
        volatile
            .flags
            .insert(VOLATILE_FLAG.into(), Value::from("true"));
        assert!(!volatile.is_volatile(), "only boolean true counts");
    }

    #[test]
    fn image_and_layer_are_written_even_when_missing() {
        let container: Container = serde_json::from_str(r#"{"id":"c","zz":[1]}"#).unwrap();
        assert_eq!(
            encode(&container),
            r#"{"id":"c","image":"","layer":"","created":"0001-01-01T00:00:00Z","zz":[1]}"#
        );
        let made = Container::new("c", "i", "l");
        assert_eq!((made.image_id(), made.layer_id.as_str()), (Some("i"), "l"));
    }

    #[test]
    fn bad_values_are_errors_naming_the_value() {
        for (json, needle) in [
            (r#"{"id":"a","uidmap":[{"host_id":-1}]}"#, "-1"),
            (r#"{"id":"a","big-data-sizes":{"k":1.5}}"#, "1.5"),
            (r#"{"id":"a","image":7}"#, "7"),
            (r#"[]"#, "container record"),
        ] {
            let err = serde_json::from_str::<Container>(json)
                .expect_err(json)
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn whole_files() {
        assert_eq!(encode_containers_json(&[]).unwrap(), b"[]");
        for empty in [&b""[..], b"null", b" []"] {
            assert!(parse_containers_json(empty).unwrap().is_empty());
        }
        let err = parse_containers_json(br#"[{"id":""}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("record 0 of containers.json"), "{err}");
        let containers = vec![
            Container::new("a", "", "l1"),
            Container::new("b", "i", "l2"),
        ];
        let bytes = encode_containers_json(&containers).unwrap();
        assert_eq!(parse_containers_json(&bytes).unwrap(), containers);
    }
}
