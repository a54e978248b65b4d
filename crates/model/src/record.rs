//! What the records of `layers.json`, `images.json` and `containers.json` share: Go's rules
//! for decoding a JSON object into a struct (keys matched exactly, else ignoring ASCII case;
//! unknown keys kept; `null` leaves a scalar alone), writing maps as Go does, and whole
//! documents (a compact array, `[]` when empty; empty or `null` reads as no records).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::{
    self, Deserialize, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor,
};
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::id::validate_id;
use crate::json::{GoValue, write_go_json};

/// The known fields of one kind of record.
pub(crate) trait RecordField: Copy + Sized + 'static {
    /// Every field with its JSON key, in the order Go writes them.
    const FIELDS: &'static [(&'static str, Self)];

    /// The field whose key is exactly `key`.
    fn exact(key: &str) -> Option<Self> {
        Self::FIELDS
            .iter()
            .find_map(|&(name, field)| (name == key).then_some(field))
    }

    /// Go matches keys exactly first, then case-insensitively.
    fn lookup(key: &str) -> Option<Self> {
        Self::exact(key).or_else(|| {
            Self::FIELDS
                .iter()
                .find_map(|&(name, field)| name.eq_ignore_ascii_case(key).then_some(field))
        })
    }
}

/// A key of a record: a known field, or another key kept verbatim.
enum Key<F> {
    Known(F),
    Unknown(String),
}

impl<'de, F: RecordField> Deserialize<'de> for Key<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<F>, D::Error> {
        struct KeyVisitor<F>(PhantomData<F>);
        impl<F: RecordField> Visitor<'_> for KeyVisitor<F> {
            type Value = Key<F>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<F>, E> {
                Ok(F::lookup(key).map_or_else(|| Key::Unknown(key.to_owned()), Key::Known))
            }
            fn visit_string<E: de::Error>(self, key: String) -> Result<Key<F>, E> {
                Ok(F::lookup(&key).map_or(Key::Unknown(key), Key::Known))
            }
        }
        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}

/// A record decoded by Go's rules: its known fields one by one, any other key kept.
pub(crate) trait GoRecord: Default {
    /// Its known fields.
    type Field: RecordField;
    /// What a decoding error says was expected, e.g. `a layer record (JSON object)`.
    const EXPECTING: &'static str;
    /// Where keys it does not know go.
    fn extra_mut(&mut self) -> &mut BTreeMap<String, Value>;
    /// Reads the value of `field` from `map` (with [`scalar`] or [`list`]).
    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: Self::Field,
        map: &mut A,
    ) -> Result<(), A::Error>;
}

/// Decodes a record from a JSON object as Go does: keys matched exactly, else
/// case-insensitively; a later duplicate key wins; unknown keys kept.
pub(crate) fn deserialize_record<'de, R: GoRecord, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<R, D::Error> {
    deserializer.deserialize_map(RecordVisitor::<R>(PhantomData))
}

struct RecordVisitor<R>(PhantomData<R>);

impl<'de, R: GoRecord> Visitor<'de> for RecordVisitor<R> {
    type Value = R;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(R::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<R, A::Error> {
        let mut record = R::default();
        while let Some(key) = map.next_key::<Key<R::Field>>()? {
            match key {
                Key::Known(field) => record.decode_field(field, &mut map)?,
                Key::Unknown(key) => {
                    let value: Value = map.next_value()?;
                    record.extra_mut().insert(key, value);
                }
            }
        }
        Ok(record)
    }
}

/// Reads a string, number or struct field: `null` leaves it as it was (as Go does).
pub(crate) fn scalar<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut T,
) -> Result<(), A::Error> {
    if let Some(value) = map.next_value::<Option<T>>()? {
        *slot = value;
    }
    Ok(())
}

/// Reads a list or map field: `null` empties it (Go sets it to nil).
pub(crate) fn list<'de, A: MapAccess<'de>, T: Deserialize<'de> + Default>(
    map: &mut A,
    slot: &mut T,
) -> Result<(), A::Error> {
    *slot = map.next_value::<Option<T>>()?.unwrap_or_default();
    Ok(())
}

/// A `map[string]interface{}` (flags) written as Go writes it: keys sorted at every level.
pub(crate) struct GoObject<'a>(pub(crate) &'a BTreeMap<String, Value>);

impl Serialize for GoObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, &GoValue(value))?;
        }
        map.end()
    }
}

/// Writes the keys a record did not know, after its known ones; a key that names a known
/// field is not written twice.
pub(crate) fn serialize_extra<F: RecordField, M: SerializeMap>(
    map: &mut M,
    extra: &BTreeMap<String, Value>,
) -> Result<(), M::Error> {
    for (key, value) in extra {
        if F::exact(key).is_none() {
            map.serialize_entry(key, &GoValue(value))?;
        }
    }
    Ok(())
}

/// The shortest record Go writes is about this long (`{"id":"<64 hex>","created":"<time>"}`
/// and a comma), so a document's length over it is at least its record count.
const SHORTEST_RECORD: usize = 110;

/// The most records [`record_capacity`] reserves room for up front, whatever the document's
/// length (a huge file grows the list as it decodes instead).
const MOST_RESERVED: usize = 1 << 20;

/// Room for the records of a document of `len` bytes, so that decoding does not copy the list
/// as it grows (a tenth of loading 20,000 layers did that). Untouched room costs no memory.
fn record_capacity(len: usize) -> usize {
    (len / SHORTEST_RECORD).min(MOST_RESERVED)
}

/// A JSON array of records (or `null`: none) decoded into a list with room for `capacity`.
struct RecordList<T> {
    capacity: usize,
    records: PhantomData<T>,
}

impl<T> RecordList<T> {
    fn new(capacity: usize) -> Self {
        RecordList {
            capacity,
            records: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> de::DeserializeSeed<'de> for RecordList<T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for RecordList<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut records = Vec::with_capacity(self.capacity);
        while let Some(record) = seq.next_element()? {
            records.push(record);
        }
        Ok(records)
    }
}

/// Decodes a whole document: an empty file or `null` holds no records; records whose ID
/// could not name a file are refused ([`Error::Record`], see [`validate_id`]).
pub(crate) fn parse_records<T: DeserializeOwned>(
    bytes: &[u8],
    document: &'static str,
    id: fn(&T) -> &str,
) -> Result<Vec<T>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut decoder = serde_json::Deserializer::from_slice(bytes);
    let records: Vec<T> = RecordList::new(record_capacity(bytes.len()))
        .deserialize(&mut decoder)
        .and_then(|records| decoder.end().map(|()| records))
        .map_err(|e| Error::decode(document, e))?;
    for (index, record) in records.iter().enumerate() {
        validate_id(id(record)).map_err(|e| Error::Record {
            document,
            index,
            source: Box::new(e),
        })?;
    }
    Ok(records)
}

/// Writes a whole document as Go does: compact, Go's escaping, no trailing newline.
pub(crate) fn write_records<W: Write, T: Serialize>(
    out: W,
    records: &[T],
    document: &'static str,
) -> Result<()> {
    write_go_json(out, records).map_err(|source| Error::Encode { document, source })
}

/// The bytes of a whole document, with room for `typical` bytes per record.
pub(crate) fn encode_records<T: Serialize>(
    records: &[T],
    document: &'static str,
    typical: usize,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + records.len() * typical);
    write_records(&mut out, records, document)?;
    Ok(out)
}
