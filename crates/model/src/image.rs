//! [`Image`], the record of `images.json`, its digest list, and the whole file.

use std::collections::BTreeMap;
use std::io::Write;

use serde::de::{Deserialize, Deserializer, MapAccess};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::digest::{Digest, DigestAlgorithm, validate_go_digest};
use crate::error::{Error, ImageDigestError, Result};
use crate::record::{
    GoObject, GoRecord, RecordField, deserialize_record, encode_records, list, parse_records,
    scalar, serialize_extra, write_records,
};
use crate::timestamp::Timestamp;

/// File name of the image records, in `<graphroot>/<driver>-images/`.
pub const IMAGES_JSON: &str = "images.json";

/// Big-data keys starting with this are manifests (Go's
/// `ImageDigestManifestBigDataNamePrefix`): their digests make the image findable by digest.
pub const MANIFEST_KEY_PREFIX: &str = "manifest";

/// Whether the big-data item `key` is a manifest: it starts with `manifest`, case-sensitively
/// (`manifest-sha256:…` and `manifestfoo` are, `Manifest` is not).
pub fn is_manifest_key(key: &str) -> bool {
    key.starts_with(MANIFEST_KEY_PREFIX)
}

/// An image record: one element of `images.json`, plus the in-memory marker Go keeps on the
/// same struct.
///
/// Keys in the order Go writes them; all but `id` and `created` are left out when empty:
///
/// | key | field |
/// |---|---|
/// | `id` | [`Image::id`] (always) |
/// | `digest` | [`Image::digest`] |
/// | `names` | [`Image::names`] |
/// | `names-history` | [`Image::names_history`] |
/// | `layer` | [`Image::top_layer`] |
/// | `mapped-layers` | [`Image::mapped_top_layers`] |
/// | `metadata` | [`Image::metadata`] |
/// | `big-data-names` | [`Image::big_data_names`] |
/// | `big-data-sizes` | [`Image::big_data_sizes`] (keys sorted) |
/// | `big-data-digests` | [`Image::big_data_digests`] (keys sorted) |
/// | `created` | [`Image::created`] (always; `0001-01-01T00:00:00Z` if it was missing) |
/// | `flags` | [`Image::flags`] (keys sorted at every level) |
/// | anything else | [`Image::extra`], after the known keys, sorted |
///
/// Decoding follows Go as for [`crate::Layer`]. Digests are kept as the text Go stored: Go
/// checks only `digest` and the manifests' digests, when it computes the digest list
/// ([`Image::digests`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Image {
    /// `id`: the image's ID, random 64-hex or caller-given.
    pub id: String,
    /// `digest`: the digest the image is found by: given at creation, else the first manifest
    /// digest once there is one; then it stays (see [`Image::recompute_digest`]).
    pub digest: String,
    /// `names`: names unique among the images of the store.
    pub names: Vec<String>,
    /// `names-history`: every name ever assigned by renaming, newest first, no duplicates.
    pub names_history: Vec<String>,
    /// `layer`: the top layer's ID; empty for an image without layers.
    pub top_layer: String,
    /// `mapped-layers`: ID-mapped copies of the top layer (same contents and parent).
    pub mapped_top_layers: Vec<String>,
    /// `metadata`: free text set by the caller.
    pub metadata: String,
    /// `big-data-names`: keys of the image's big-data items, in insertion order.
    pub big_data_names: Vec<String>,
    /// `big-data-sizes`: size in bytes per key.
    pub big_data_sizes: BTreeMap<String, i64>,
    /// `big-data-digests`: digest per key (`sha256:<hex>` from Go's CLI), as written.
    pub big_data_digests: BTreeMap<String, String>,
    /// `created`: when the image was created; Go's zero time when the record lacks it.
    pub created: Timestamp,
    /// `flags`: arbitrary values (nothing in Go 1.43 sets them from its CLI).
    pub flags: BTreeMap<String, Value>,
    /// Whether the image belongs to a read-only (additional) store (never in `images.json`).
    pub read_only: bool,
    /// Fields of the record this crate does not know, kept so that a round trip does not lose
    /// them (Go 1.43 drops them when it saves).
    pub extra: BTreeMap<String, Value>,
}

impl Image {
    /// A record with the given ID, created now, and everything else empty.
    pub fn new(id: impl Into<String>) -> Image {
        Image {
            id: id.into(),
            created: Timestamp::now(),
            ..Image::default()
        }
    }

    /// The top layer's ID, `None` for an image without layers.
    pub fn top_layer(&self) -> Option<&str> {
        (!self.top_layer.is_empty()).then_some(self.top_layer.as_str())
    }

    /// The digests the image is found by (Go's in-memory `Digests`): [`Image::digest`] first
    /// if set, then each distinct digest of a manifest item ([`is_manifest_key`]) in
    /// [`Image::big_data_names`] order (then any manifest keys missing from that list, by
    /// key; Go's order there is its map order, which no caller may rely on).
    ///
    /// Errors as Go's loader does ([`Error::ImageDigest`]) when one of them is not a valid
    /// digest: a store holding such a record does not open in Go 1.43. Digests of other items
    /// are not checked. sha384 and sha512 digests are valid, as in podman; the Go
    /// `containers-storage` tool alone refuses them ("unsupported digest algorithm"), because
    /// it is built without those hashes.
    pub fn digests(&self) -> Result<Vec<Digest>> {
        let mut digests: Vec<Digest> = Vec::with_capacity(1 + self.big_data_digests.len());
        if !self.digest.is_empty() {
            digests.push(self.validate(&self.digest, None)?);
        }
        let listed = self.big_data_names.iter();
        let unlisted = self
            .big_data_digests
            .keys()
            .filter(|key| !self.big_data_names.contains(key));
        for key in listed.chain(unlisted) {
            let Some(text) = self.big_data_digests.get(key) else {
                continue;
            };
            if !is_manifest_key(key) {
                continue;
            }
            let digest = self.validate(text, Some(key))?;
            if !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        Ok(digests)
    }

    /// Computes [`Image::digests`] as Go does after loading or changing big data, and when
    /// [`Image::digest`] is empty sets it to the first of them: from then on it stays, even
    /// when the manifest it came from changes (the record must then be saved).
    pub fn recompute_digest(&mut self) -> Result<Vec<Digest>> {
        let digests = self.digests()?;
        if self.digest.is_empty()
            && let Some(first) = digests.first()
        {
            self.digest = first.as_str().to_owned();
        }
        Ok(digests)
    }

    /// Records `name` in [`Image::names_history`] as Go does when a name is assigned: first,
    /// and only once.
    pub fn add_name_to_history(&mut self, name: &str) {
        self.names_history.retain(|old| old != name);
        self.names_history.insert(0, name.to_owned());
    }

    fn validate(&self, text: &str, key: Option<&str>) -> Result<Digest> {
        validate_go_digest(text, &DigestAlgorithm::ALL).map_err(|reason| {
            Error::ImageDigest(Box::new(ImageDigestError {
                id: self.id.clone(),
                names: self.names.clone(),
                digest: text.to_owned(),
                key: key.map(str::to_owned),
                reason,
            }))
        })
    }
}

/// The known fields of an image record, in Go's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Id,
    Digest,
    Names,
    NamesHistory,
    TopLayer,
    MappedTopLayers,
    Metadata,
    BigDataNames,
    BigDataSizes,
    BigDataDigests,
    Created,
    Flags,
}

impl RecordField for Field {
    const FIELDS: &'static [(&'static str, Field)] = &[
        ("id", Field::Id),
        ("digest", Field::Digest),
        ("names", Field::Names),
        ("names-history", Field::NamesHistory),
        ("layer", Field::TopLayer),
        ("mapped-layers", Field::MappedTopLayers),
        ("metadata", Field::Metadata),
        ("big-data-names", Field::BigDataNames),
        ("big-data-sizes", Field::BigDataSizes),
        ("big-data-digests", Field::BigDataDigests),
        ("created", Field::Created),
        ("flags", Field::Flags),
    ];
}

impl Serialize for Image {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        if !self.digest.is_empty() {
            map.serialize_entry("digest", &self.digest)?;
        }
        if !self.names.is_empty() {
            map.serialize_entry("names", &self.names)?;
        }
        if !self.names_history.is_empty() {
            map.serialize_entry("names-history", &self.names_history)?;
        }
        if !self.top_layer.is_empty() {
            map.serialize_entry("layer", &self.top_layer)?;
        }
        if !self.mapped_top_layers.is_empty() {
            map.serialize_entry("mapped-layers", &self.mapped_top_layers)?;
        }
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
        // Go's omitempty never omits a struct such as time.Time.
        map.serialize_entry("created", &self.created)?;
        if !self.flags.is_empty() {
            map.serialize_entry("flags", &GoObject(&self.flags))?;
        }
        serialize_extra::<Field, _>(&mut map, &self.extra)?;
        map.end()
    }
}

impl GoRecord for Image {
    type Field = Field;
    const EXPECTING: &'static str = "an image record (JSON object)";

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
            Field::Digest => scalar(map, &mut self.digest),
            Field::Names => list(map, &mut self.names),
            Field::NamesHistory => list(map, &mut self.names_history),
            Field::TopLayer => scalar(map, &mut self.top_layer),
            Field::MappedTopLayers => list(map, &mut self.mapped_top_layers),
            Field::Metadata => scalar(map, &mut self.metadata),
            Field::BigDataNames => list(map, &mut self.big_data_names),
            Field::BigDataSizes => list(map, &mut self.big_data_sizes),
            Field::BigDataDigests => list(map, &mut self.big_data_digests),
            Field::Created => scalar(map, &mut self.created),
            Field::Flags => list(map, &mut self.flags),
        }
    }
}

impl<'de> Deserialize<'de> for Image {
    /// Decodes a record as Go does (see [`crate::Layer`]'s decoding).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Image, D::Error> {
        deserialize_record(deserializer)
    }
}

/// Decodes the contents of an `images.json`: an empty file or `null` is an empty store;
/// unknown fields are kept. Unlike Go 1.43, a document that does not decode is an error
/// ([`Error::Decode`]) rather than a silently truncated store, and so is a record whose ID
/// could not name its big-data directory ([`Error::Record`]). Digests are not checked here
/// (see [`Image::digests`]).
pub fn parse_images_json(bytes: &[u8]) -> Result<Vec<Image>> {
    parse_records(bytes, IMAGES_JSON, |image: &Image| &image.id)
}

/// Writes `images` as Go writes `images.json`: compact, Go's escaping, no trailing newline,
/// `[]` when there are none (Go writes back the `null` it read; both read as empty).
pub fn write_images_json<W: Write>(out: W, images: &[Image]) -> Result<()> {
    write_records(out, images, IMAGES_JSON)
}

/// The bytes of an `images.json` holding `images` (see [`write_images_json`]).
pub fn encode_images_json(images: &[Image]) -> Result<Vec<u8>> {
    encode_records(images, IMAGES_JSON, 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::to_go_json;

    fn encode(image: &Image) -> String {
        String::from_utf8(to_go_json(image).unwrap()).unwrap()
    }

    fn sha(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn minimal_and_full_records_match_go() {
        // Shapes Go 1.43 wrote (store doc §1.2).
        let created: Timestamp = "2026-12-04T15:00:42.801083133Z".parse().unwrap();
        let minimal = Image {
            id: "d6f8".into(),
            names: vec!["img1".into(), "img2".into()],
            top_layer: "4abd".into(),
            created,
            read_only: true,
            ..Image::default()
        };
        assert_eq!(
            encode(&minimal),
            r#"{"id":"d6f8","names":["img1","img2"],"layer":"4abd","created":"2026-12-04T15:00:42.801083133Z"}"#
        );
        let mut full = minimal.clone();
        full.digest = sha('b');
        full.names_history = vec!["y".into()];
        full.mapped_top_layers = vec!["m1".into(), "m2".into()];
        full.metadata = "a<b".into();
        full.big_data_names = vec!["z".into(), "Manifest".into()];
        full.big_data_sizes = BTreeMap::from([("z".into(), 1), ("Manifest".into(), 14)]);
        full.big_data_digests =
            BTreeMap::from([("z".into(), sha('c')), ("Manifest".into(), sha('d'))]);
        full.flags = BTreeMap::from([("k".into(), serde_json::json!({"b": 1, "a": 2.5}))]);
        full.extra = BTreeMap::from([("zz".into(), Value::Bool(true)), ("ID".into(), Value::Null)]);
        assert_eq!(
            encode(&full),
            format!(
                r#"{{"id":"d6f8","digest":"{}","names":["img1","img2"],"names-history":["y"],"layer":"4abd","mapped-layers":["m1","m2"],"metadata":"a\u003cb","big-data-names":["z","Manifest"],"big-data-sizes":{{"Manifest":14,"z":1}},"big-data-digests":{{"Manifest":"{}","z":"{}"}},"created":"2026-12-04T15:00:42.801083133Z","flags":{{"k":{{"a":2.5,"b":1}}}},"ID":null,"zz":true}}"#,
                sha('b'),
                sha('d'),
                sha('c')
            )
        );
        // An `extra` key differing from a known one only in case is written; decoding takes
        // it for that field, as Go's decoder does (so only a hand-made record has one).
        let back: Image = serde_json::from_str(&encode(&full)).unwrap();
        assert_eq!(back.extra.get("zz"), Some(&Value::Bool(true)));
        assert_eq!(back.id, full.id, "null leaves the id alone");
        assert!(!back.extra.contains_key("ID"));
        assert!(!back.read_only);
    }

    #[test]
    fn missing_created_is_go_zero_time_and_nulls_empty_lists() {
        let image: Image = serde_json::from_str(
            r#"{"ID":"x","names":null,"big-data-sizes":null,"digest":null,"Layer":"t"}"#,
        )
        .unwrap();
        assert_eq!(image.id, "x");
        assert_eq!(image.top_layer(), Some("t"));
        assert_eq!(
            encode(&image),
            r#"{"id":"x","layer":"t","created":"0001-01-01T00:00:00Z"}"#
        );
        assert_eq!(Image::default().top_layer(), None);
    }

    #[test]
    fn bad_values_are_errors_naming_the_value() {
        for (json, needle) in [
            (r#"{"id":"a","created":"yesterday"}"#, "\"yesterday\""),
            (r#"{"id":"a","big-data-sizes":{"k":"12"}}"#, "\"12\""),
            (r#"{"id":"a","names":"n"}"#, "\"n\""),
            (r#"["a"]"#, "image record"),
        ] {
            let err = serde_json::from_str::<Image>(json)
                .expect_err(json)
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn manifest_keys_are_those_with_the_prefix() {
        for key in [
            "manifest",
            "manifest-sha256:abcd",
            "manifest-",
            "manifestfoo",
        ] {
            assert!(is_manifest_key(key), "{key}");
        }
        for key in ["Manifest", "config.json", "a-manifest", ""] {
            assert!(!is_manifest_key(key), "{key}");
        }
    }

    #[test]
    fn digest_list_puts_digest_first_then_manifests_deduplicated() {
        let mut image = Image::new("img");
        image.big_data_names = vec![
            "config.json".into(),
            "manifest-b".into(),
            "Manifest".into(),
            "manifest".into(),
            "manifest-c".into(),
        ];
        image.big_data_digests = BTreeMap::from([
            ("config.json".into(), "not checked".into()),
            ("manifest-b".into(), sha('b')),
            ("Manifest".into(), "also not checked".into()),
            ("manifest".into(), sha('a')),
            ("manifest-c".into(), sha('b')),
            // In the digests but not in the names: after the listed ones.
            ("manifest-z".into(), sha('e')),
        ]);
        let texts = |digests: Vec<Digest>| -> Vec<String> {
            digests.iter().map(|d| d.as_str().to_owned()).collect()
        };
        assert_eq!(
            texts(image.digests().unwrap()),
            [sha('b'), sha('a'), sha('e')]
        );
        // An empty `digest` takes the first; then it stays when the manifests change.
        assert_eq!(texts(image.recompute_digest().unwrap()).len(), 3);
        assert_eq!(image.digest, sha('b'));
        image.big_data_digests.insert("manifest-b".into(), sha('f'));
        assert_eq!(
            texts(image.recompute_digest().unwrap()),
            [sha('b'), sha('f'), sha('a'), sha('e')]
        );
        assert_eq!(image.digest, sha('b'));
        // No manifests, no digest: nothing to find the image by.
        let mut plain = Image::new("plain");
        assert!(plain.recompute_digest().unwrap().is_empty());
        assert_eq!(plain.digest, "");
    }

    #[test]
    fn invalid_digests_fail_as_go_loading_fails() {
        let mut image = Image::new("ccc");
        image.digest = "sha256:zzz".into();
        assert_eq!(
            image.digests().unwrap_err().to_string(),
            r#"computing digests for image with ID "ccc" ([]): validating image digest "sha256:zzz": invalid checksum digest length"#
        );
        image.digest = String::new();
        image.names = vec!["a".into(), "b".into()];
        image
            .big_data_digests
            .insert("manifest".into(), "bogus".into());
        assert_eq!(
            image.digests().unwrap_err().to_string(),
            r#"computing digests for image with ID "ccc" ([a b]): validating digest "bogus" for big data item "manifest": invalid checksum digest format"#
        );
    }

    #[test]
    fn names_history_is_newest_first_without_duplicates() {
        let mut image = Image::new("i");
        for name in ["img3", "img1", "x", "img1"] {
            image.add_name_to_history(name);
        }
        assert_eq!(image.names_history, ["img1", "x", "img3"]);
    }

    #[test]
    fn whole_files() {
        assert_eq!(encode_images_json(&[]).unwrap(), b"[]");
        for empty in [&b""[..], b"null", b"[]"] {
            assert!(parse_images_json(empty).unwrap().is_empty());
        }
        let err = parse_images_json(br#"[{"id":"../x"}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("record 0 of images.json"), "{err}");
        let err = parse_images_json(b"[{\"id\":").unwrap_err().to_string();
        assert!(err.contains("images.json"), "{err}");
        let images = vec![Image::new("a"), Image::new("b")];
        let bytes = encode_images_json(&images).unwrap();
        assert!(bytes.starts_with(b"[{\"id\":\"a\"") && bytes.ends_with(b"}]"));
        assert_eq!(parse_images_json(&bytes).unwrap(), images);
    }
}
