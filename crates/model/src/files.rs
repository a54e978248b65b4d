//! Whole documents: `layers.json` and `mountpoints.json`.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::json::write_go_json;
use crate::layer::Layer;
use crate::record::{encode_records, parse_records, write_records};

/// File name of the layer records, in `<graphroot>/<driver>-layers/`.
pub const LAYERS_JSON: &str = "layers.json";
/// File name of the mount records, in `<runroot>/<driver>-layers/`.
pub const MOUNTPOINTS_JSON: &str = "mountpoints.json";

/// One element of `mountpoints.json`: a mounted layer, where, and how many times. A missing
/// field reads as empty/0, as in Go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MountPointRecord {
    /// `id`: the layer's ID.
    pub id: String,
    /// `path`: the absolute mount point.
    pub path: String,
    /// `count`: how many mounts are outstanding (Go writes only records with count > 0).
    pub count: u32,
}

/// Decodes the contents of a `layers.json`.
///
/// Accepts what Go accepts: an empty file or `null` is an empty store; unknown fields are kept
/// in [`Layer::extra`]. Unlike Go 1.43, a document that does not decode is an error
/// ([`Error::Decode`], naming line and column) rather than a silently truncated store, and so
/// is a record whose ID could not name a file ([`Error::Record`], see [`validate_id`]).
///
/// [`validate_id`]: crate::validate_id
pub fn parse_layers_json(bytes: &[u8]) -> Result<Vec<Layer>> {
    parse_records(bytes, LAYERS_JSON, |layer: &Layer| &layer.id)
}

/// Writes `layers` as Go writes `layers.json`: compact, Go's escaping, no trailing newline.
pub fn write_layers_json<W: Write>(out: W, layers: &[Layer]) -> Result<()> {
    write_records(out, layers, LAYERS_JSON)
}

/// The bytes of a `layers.json` holding `layers` (see [`write_layers_json`]).
pub fn encode_layers_json(layers: &[Layer]) -> Result<Vec<u8>> {
    // Typical records are 300 to 600 bytes; one reservation avoids most regrowth.
    encode_records(layers, LAYERS_JSON, 512)
}

/// Decodes the contents of a `mountpoints.json`; an empty file or `null` means no mounts.
pub fn parse_mountpoints_json(bytes: &[u8]) -> Result<Vec<MountPointRecord>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(
        serde_json::from_slice::<Option<Vec<MountPointRecord>>>(bytes)
            .map_err(|e| Error::decode(MOUNTPOINTS_JSON, e))?
            .unwrap_or_default(),
    )
}

/// The bytes of a `mountpoints.json` holding `mounts`, as Go writes it (`[]` when empty).
pub fn encode_mountpoints_json(mounts: &[MountPointRecord]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + mounts.len() * 160);
    write_go_json(&mut out, mounts).map_err(|source| Error::Encode {
        document: MOUNTPOINTS_JSON,
        source,
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_documents() {
        for empty in [&b""[..], b"null", b"[]", b" [ ]\n"] {
            assert!(parse_layers_json(empty).unwrap().is_empty());
            assert!(parse_mountpoints_json(empty).unwrap().is_empty());
        }
        assert_eq!(encode_layers_json(&[]).unwrap(), b"[]");
        assert_eq!(encode_mountpoints_json(&[]).unwrap(), b"[]");
    }

    #[test]
    fn a_document_that_is_not_one_array_of_records_is_refused() {
        for bad in [
            &b"{}"[..],
            b"\"x\"",
            b"[] []",
            b"[{\"id\":\"abc\"}] x",
            b"7",
        ] {
            assert!(
                matches!(parse_layers_json(bad), Err(Error::Decode { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn every_record_is_kept_whatever_room_the_length_promised() {
        // Records longer and shorter than the shortest Go writes, in one document.
        let ids: Vec<String> = (0..300).map(|i| format!("{i:064x}")).collect();
        let mut text = String::from("[");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            if i % 3 == 0 {
                text.push_str(&format!("{{\"id\":\"{id}\",\"names\":[\"n{i}\"]}}"));
            } else {
                text.push_str(&format!("{{\"id\":\"{id}\"}}"));
            }
        }
        text.push(']');
        let layers = parse_layers_json(text.as_bytes()).unwrap();
        let got: Vec<&str> = layers.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn decode_errors_name_line_and_column() {
        let err = parse_layers_json(b"[{\"id\":\"abc\"").unwrap_err();
        match &err {
            Error::Decode {
                document,
                line,
                column,
                ..
            } => {
                assert_eq!((*document, *line, *column), (LAYERS_JSON, 1, 12));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(crate::error_chain(&err).contains("layers.json"), "{err}");
        assert!(
            crate::error_chain(&err).contains("line 1 column 12"),
            "{err}"
        );
        let err = parse_layers_json(b"[\n{\"id\":\"a\",\n\"created\":\"never\"}]").unwrap_err();
        assert!(crate::error_chain(&err).contains("\"never\""), "{err}");
        assert!(crate::error_chain(&err).contains("line 3"), "{err}");
        let err = parse_mountpoints_json(b"bogus").unwrap_err();
        assert!(
            crate::error_chain(&err).contains("mountpoints.json"),
            "{err}"
        );
        assert!(
            crate::error_chain(&err).contains("line 1 column 1"),
            "{err}"
        );
        assert!(parse_layers_json(b"[null]").is_err());
        assert!(parse_layers_json(b"{}").is_err());
    }

    #[test]
    fn records_with_unusable_ids_are_rejected() {
        let err = parse_layers_json(br#"[{"id":"ok"},{"id":"../../etc"}]"#).unwrap_err();
        let message = crate::error_chain(&err);
        assert!(message.contains("record 1 of layers.json"), "{message}");
        assert!(message.contains("\"../../etc\""), "{message}");
        assert!(parse_layers_json(br#"[{"names":["no-id"]}]"#).is_err());
    }

    #[test]
    fn missing_mountpoint_fields_read_as_empty() {
        let mounts = parse_mountpoints_json(br#"[{"id":"a","extra":true}]"#).unwrap();
        assert_eq!(
            mounts,
            [MountPointRecord {
                id: "a".into(),
                ..MountPointRecord::default()
            }]
        );
    }

    #[test]
    fn mountpoints_round_trip() {
        let mounts = vec![MountPointRecord {
            id: "a".repeat(64),
            path: "/run/x&y/<merged>".into(),
            count: 3,
        }];
        let bytes = encode_mountpoints_json(&mounts).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(
                r#"[{{"id":"{}","path":"/run/x\u0026y/\u003cmerged\u003e","count":3}}]"#,
                "a".repeat(64)
            )
        );
        assert_eq!(parse_mountpoints_json(&bytes).unwrap(), mounts);
    }
}
