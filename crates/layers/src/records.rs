//! `layers.json` record by record: one record this build cannot use must not make the whole
//! store unopenable (Go opens such a store), and must not be lost either.
//!
//! * A record that does not decode (an invalid digest, timestamp, map, ...) or whose ID could
//!   not name a file is [`Unreadable`]: kept verbatim, written back on every save, reported by
//!   `check` (`unreadable-record`) and moved to the set-aside file by `check --repair`.
//! * A record that decodes but whose ID breaks the store's rule
//!   ([`layerstore_model::validate_store_id`]; Go accepts any string) is loaded and listed, but
//!   the store builds no path from its ID ([`Error::UnsafeId`]); deleting it (or `wipe`, or
//!   `check --repair`) moves the record to the set-aside file and leaves its files alone.
//!
//! The set-aside file, `<driver>-layers/layers.set-aside.json`, is a JSON array of
//! `{"reason", "set-aside", "record"}` objects, `record` being the record exactly as it was.
//! Restoring one is putting `record` back into `layers.json` by hand.

use std::io::Write;

use layerstore_model::{
    Layer, MountPointRecord, Timestamp, parse_layers_json, parse_mountpoints_json, validate_id,
    write_go_json,
};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::files::StoreDir;

/// The file of `<driver>-layers/` that keeps records taken out of `layers.json` (its `.json`
/// ending keeps it out of the ID space, see [`layerstore_model::RESERVED_ID_SUFFIXES`]).
pub(crate) const SET_ASIDE_JSON: &str = "layers.set-aside.json";

/// A record of `layers.json` this build cannot use, kept as it was.
#[derive(Debug, Clone)]
pub(crate) struct Unreadable {
    /// The record, byte for byte.
    pub(crate) raw: Box<RawValue>,
    /// Its `id`, when it has a string one.
    pub(crate) id: Option<String>,
    /// Its position in the file.
    pub(crate) index: usize,
    /// Why it cannot be used.
    pub(crate) reason: String,
}

/// What `layers.json` holds.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// The records that decode, in file order.
    pub(crate) layers: Vec<Layer>,
    /// The others.
    pub(crate) unreadable: Vec<Unreadable>,
}

/// Decodes `layers.json`. A document that is not a JSON array of objects is an error (and the
/// file is left alone); a record that is not a usable layer is [`Unreadable`].
pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<Records, layerstore_model::Error> {
    let whole = match parse_layers_json(bytes) {
        Ok(layers) => {
            return Ok(Records {
                layers,
                unreadable: Vec::new(),
            });
        }
        Err(err) => err,
    };
    // Slower path, only for a file with a bad record: one record at a time.
    let Ok(raws) = serde_json::from_slice::<Option<Vec<Box<RawValue>>>>(bytes) else {
        return Err(whole);
    };
    let mut records = Records::default();
    for (index, raw) in raws.into_iter().flatten().enumerate() {
        let decoded = serde_json::from_str::<Layer>(raw.get())
            .map_err(|e| e.to_string())
            .and_then(|layer| match validate_id(&layer.id) {
                Ok(()) => Ok(layer),
                Err(e) => Err(e.to_string()),
            });
        match decoded {
            Ok(layer) => records.layers.push(layer),
            Err(reason) => records.unreadable.push(Unreadable {
                id: id_of(&raw),
                raw,
                index,
                reason,
            }),
        }
    }
    Ok(records)
}

/// The string `id` of a record that does not decode as a layer (keys match as Go's decoder
/// matches them: exactly, else ignoring ASCII case).
fn id_of(raw: &RawValue) -> Option<String> {
    let serde_json::Value::Object(map) = serde_json::from_str(raw.get()).ok()? else {
        return None;
    };
    map.get("id")
        .or_else(|| {
            map.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("id"))
                .map(|(_, value)| value)
        })?
        .as_str()
        .map(str::to_string)
}

/// Decodes `mountpoints.json` record by record: the records that decode, and those that do
/// not (a count beyond `u32`, a path that is not a string, ...) kept as records with the
/// fields that could be read, for `check` to report (they are never applied). A document that
/// is not a JSON array is an error.
pub(crate) fn parse_mounts(
    bytes: &[u8],
) -> std::result::Result<(Vec<MountPointRecord>, Vec<MountPointRecord>), layerstore_model::Error> {
    let whole = match parse_mountpoints_json(bytes) {
        Ok(records) => return Ok((records, Vec::new())),
        Err(err) => err,
    };
    let Ok(values) = serde_json::from_slice::<Option<Vec<serde_json::Value>>>(bytes) else {
        return Err(whole);
    };
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for value in values.into_iter().flatten() {
        match serde_json::from_value::<MountPointRecord>(value.clone()) {
            Ok(record) => good.push(record),
            Err(_) => bad.push(MountPointRecord {
                id: value["id"].as_str().unwrap_or_default().to_string(),
                path: value["path"].as_str().unwrap_or_default().to_string(),
                count: 0,
            }),
        }
    }
    Ok((good, bad))
}

/// Writes `layers.json`: the layers as Go writes them, then the unreadable records verbatim.
pub(crate) fn write(
    out: &mut dyn Write,
    layers: &[Layer],
    unreadable: &[Unreadable],
) -> Result<()> {
    if unreadable.is_empty() {
        return layerstore_model::write_layers_json(out, layers).map_err(Error::from);
    }
    let encode = |source| {
        Error::Model(layerstore_model::Error::Encode {
            document: layerstore_model::LAYERS_JSON,
            source,
        })
    };
    let io = |e| Error::io("write", layerstore_model::LAYERS_JSON, e);
    out.write_all(b"[").map_err(io)?;
    for (n, layer) in layers.iter().enumerate() {
        if n > 0 {
            out.write_all(b",").map_err(io)?;
        }
        write_go_json(&mut *out, layer).map_err(encode)?;
    }
    for (n, record) in unreadable.iter().enumerate() {
        if n > 0 || !layers.is_empty() {
            out.write_all(b",").map_err(io)?;
        }
        out.write_all(record.raw.get().as_bytes()).map_err(io)?;
    }
    out.write_all(b"]").map_err(io)
}

/// A record to move out of `layers.json`, and why.
pub(crate) struct SetAside {
    /// The record as it was in `layers.json`.
    pub(crate) raw: Box<RawValue>,
    /// Why it was taken out.
    pub(crate) reason: String,
}

impl SetAside {
    /// A loaded layer's record, as the store would write it.
    pub(crate) fn layer(layer: &Layer, reason: String) -> Result<SetAside> {
        let mut bytes = Vec::new();
        write_go_json(&mut bytes, layer).map_err(|source| {
            Error::Model(layerstore_model::Error::Encode {
                document: SET_ASIDE_JSON,
                source,
            })
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::io(
                "encode a record for",
                SET_ASIDE_JSON,
                std::io::Error::other(e),
            )
        })?;
        let raw = RawValue::from_string(text).map_err(|source| {
            Error::Model(layerstore_model::Error::Encode {
                document: SET_ASIDE_JSON,
                source,
            })
        })?;
        Ok(SetAside { raw, reason })
    }
}

/// Appends `records` to the set-aside file of `dir` (atomically, keeping what it held). A
/// set-aside file that does not decode is an error: it is never overwritten.
pub(crate) fn set_aside(dir: &StoreDir, records: Vec<SetAside>) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut entries: Vec<Box<RawValue>> = match dir.read_regular(SET_ASIDE_JSON)? {
        Some(bytes) if !bytes.is_empty() => {
            serde_json::from_slice(&bytes).map_err(|source| Error::CorruptLayers {
                path: dir.join(SET_ASIDE_JSON),
                source: layerstore_model::Error::Decode {
                    document: SET_ASIDE_JSON,
                    line: source.line(),
                    column: source.column(),
                    source,
                },
            })?
        }
        _ => Vec::new(),
    };
    let now = Timestamp::now().to_string();
    for record in records {
        let entry = serde_json::json!({
            "reason": record.reason,
            "set-aside": now,
            "record": record.raw,
        });
        entries.push(serde_json::value::to_raw_value(&entry).map_err(|source| {
            Error::Model(layerstore_model::Error::Encode {
                document: SET_ASIDE_JSON,
                source,
            })
        })?);
    }
    dir.write_atomic(SET_ASIDE_JSON, 0o600, |out| {
        serde_json::to_writer(out, &entries).map_err(|source| {
            Error::Model(layerstore_model::Error::Encode {
                document: SET_ASIDE_JSON,
                source,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"aaaa","created":"2026-11-27T22:14:32.35772588Z"}"#;
    const BAD_DIGEST: &str = r#"{"id":"bbbb","created":"2026-11-27T22:14:32Z","diff-digest":"sha256:zz","future":[1,2.50]}"#;
    const BAD_ID: &str = r#"{"ID":"../x"}"#;

    #[test]
    fn a_bad_record_is_kept_verbatim_and_the_others_load() {
        let file = format!("[{GOOD},{BAD_DIGEST}, {BAD_ID} ,{GOOD}]");
        let records = parse(file.as_bytes()).expect("the document is an array");
        let ids: Vec<&str> = records.layers.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["aaaa", "aaaa"]);
        assert_eq!(records.unreadable.len(), 2);
        let bad = &records.unreadable[0];
        assert_eq!((bad.index, bad.id.as_deref()), (1, Some("bbbb")));
        assert!(bad.reason.contains("sha256:zz"), "{}", bad.reason);
        assert_eq!(bad.raw.get(), BAD_DIGEST);
        assert_eq!(records.unreadable[1].id.as_deref(), Some("../x"));

        // Written back: good records as Go writes them, the bad ones byte for byte.
        let mut out = Vec::new();
        write(&mut out, &records.layers[..1], &records.unreadable).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("[{GOOD},{BAD_DIGEST},{BAD_ID}]")
        );
        let mut out = Vec::new();
        write(&mut out, &[], &records.unreadable[..1]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("[{BAD_DIGEST}]"));
    }

    #[test]
    fn a_document_that_is_not_an_array_of_records_stays_an_error() {
        for bad in [&b"[{\"id\":"[..], b"{}", b"[1,"] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // A record that is not an object is unreadable, not an error of the document.
        let records = parse(format!("[{GOOD},7]").as_bytes()).unwrap();
        assert_eq!((records.layers.len(), records.unreadable.len()), (1, 1));
        assert_eq!(records.unreadable[0].id, None);
    }

    #[test]
    fn a_mount_record_that_does_not_decode_is_kept_apart() {
        let (good, bad) = parse_mounts(
            br#"[{"id":"a","path":"/m/a","count":1},{"id":"b","path":"/m/b","count":4294967296},{"id":"c","path":7}]"#,
        )
        .unwrap();
        assert_eq!(good.len(), 1);
        assert_eq!(
            bad.iter()
                .map(|r| (r.id.as_str(), r.path.as_str()))
                .collect::<Vec<_>>(),
            [("b", "/m/b"), ("c", "")]
        );
        assert!(parse_mounts(b"{}").is_err());
        assert!(parse_mounts(b"").unwrap().0.is_empty());
    }

    #[test]
    fn set_aside_appends_and_keeps_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreDir::open(dir.path()).unwrap().unwrap();
        let raw = |text: &str| RawValue::from_string(text.to_string()).unwrap();
        set_aside(
            &store,
            vec![SetAside {
                raw: raw(BAD_DIGEST),
                reason: "first".into(),
            }],
        )
        .unwrap();
        set_aside(
            &store,
            vec![SetAside::layer(&Layer::new("x y"), "second".into()).unwrap()],
        )
        .unwrap();
        let kept: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(dir.path().join(SET_ASIDE_JSON)).unwrap())
                .unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0]["reason"], "first");
        assert_eq!(kept[0]["record"]["diff-digest"], "sha256:zz");
        assert_eq!(kept[1]["record"]["id"], "x y");
        // A set-aside file that does not decode is never overwritten.
        std::fs::write(dir.path().join(SET_ASIDE_JSON), "[{").unwrap();
        let err = set_aside(
            &store,
            vec![SetAside {
                raw: raw(GOOD),
                reason: "third".into(),
            }],
        )
        .unwrap_err();
        assert!(err.to_string().contains(SET_ASIDE_JSON), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(SET_ASIDE_JSON)).unwrap(),
            b"[{"
        );
    }
}
