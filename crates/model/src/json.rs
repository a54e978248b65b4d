//! JSON output identical to Go's `encoding/json` (and to the jsoniter configuration
//! containers/storage 1.43 uses, `ConfigCompatibleWithStandardLibrary`).
//!
//! serde_json already writes compact JSON with lowercase `\u00XX` escapes for control
//! characters. [`GoFormatter`] adds what Go does differently:
//!
//! * `<`, `>`, `&` are written `\u003c`, `\u003e`, `\u0026`; U+2028 and U+2029 as `\u2028`,
//!   `\u2029`;
//! * backspace and form feed are written `\u0008` and `\u000c` (Go before 1.22 and jsoniter; Go
//!   1.22+ writes `\b`, `\f` — both decode the same);
//! * floats are written as jsoniter writes them, `strconv.AppendFloat(f, 'f' or 'e', -1, 64)`:
//!   positional for 1e-6 <= |f| < 1e21 (`1` for 1.0, not `1.0`), else `1e+21` / `1e-07`
//!   (observed from the Go 1.43 tool; Go's own `encoding/json` shortens the latter to `1e-7`).
//!
//! Map keys come out sorted when the map is sorted; [`GoValue`] sorts the objects inside a
//! [`serde_json::Value`] even when serde_json's `preserve_order` feature is on.

use std::io;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

/// A serde_json [`Formatter`] writing compact JSON the way Go's `encoding/json` does. See the
/// module documentation for what it changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoFormatter;

/// Bytes that start an escape in [`GoFormatter::write_string_fragment`]: `<`, `>`, `&` and the
/// first byte of U+2028/U+2029 (`E2 80 A8`/`E2 80 A9`).
const NEEDS_LOOK: [bool; 256] = {
    let mut table = [false; 256];
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[b'&' as usize] = true;
    table[0xE2] = true;
    table
};

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut at = 0;
        while at < bytes.len() {
            if !NEEDS_LOOK[usize::from(bytes[at])] {
                at += 1;
                continue;
            }
            let (escape, width): (&[u8], usize) = match &bytes[at..] {
                [b'<', ..] => (b"\\u003c", 1),
                [b'>', ..] => (b"\\u003e", 1),
                [b'&', ..] => (b"\\u0026", 1),
                [0xE2, 0x80, 0xA8, ..] => (b"\\u2028", 3),
                [0xE2, 0x80, 0xA9, ..] => (b"\\u2029", 3),
                _ => {
                    at += 1;
                    continue;
                }
            };
            writer.write_all(&bytes[start..at])?;
            writer.write_all(escape)?;
            at += width;
            start = at;
        }
        writer.write_all(&bytes[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        match char_escape {
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            other => CompactFormatter.write_char_escape(writer, other),
        }
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        let magnitude = value.abs();
        if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
            write_go_exponent(writer, &format!("{value:e}"))
        } else {
            // Rust's `Display` for floats is the shortest round-tripping positional form,
            // as Go's 'f' format with precision -1.
            write!(writer, "{value}")
        }
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        let magnitude = value.abs();
        if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
            write_go_exponent(writer, &format!("{value:e}"))
        } else {
            write!(writer, "{value}")
        }
    }
}

/// Rewrites Rust's `1.5e-7` / `1e21` as Go's `strconv` writes them: `1.5e-07` / `1e+21` (a
/// signed exponent of at least two digits). jsoniter, which containers/storage 1.43 writes
/// with, keeps that form; Go's `encoding/json` would shorten `e-07` to `e-7`.
fn write_go_exponent<W: ?Sized + io::Write>(writer: &mut W, rust: &str) -> io::Result<()> {
    let (mantissa, exponent) = rust.split_once('e').unwrap_or((rust, "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    let pad = if digits.len() < 2 { "0" } else { "" };
    write!(writer, "{mantissa}e{sign}{pad}{digits}")
}

/// Serializes `value` as compact JSON with Go's escaping, into `out`.
pub fn write_go_json<W: io::Write, T: Serialize + ?Sized>(
    out: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(out, GoFormatter);
    value.serialize(&mut serializer)
}

/// Serializes `value` as compact JSON with Go's escaping.
///
/// ```
/// let json = layerstore_model::to_go_json(&serde_json::json!({"b": "<&>", "a": 1.0}))?;
/// assert_eq!(json, br#"{"a":1,"b":"\u003c\u0026\u003e"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    write_go_json(&mut out, value)?;
    Ok(out)
}

/// A [`Value`] serialized with every object's keys sorted, as Go writes a
/// `map[string]interface{}` — whether or not serde_json keeps insertion order.
#[derive(Debug, Clone, Copy)]
pub struct GoValue<'a>(pub &'a Value);

impl Serialize for GoValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                if object.keys().is_sorted() {
                    for (key, value) in object {
                        map.serialize_entry(key, &GoValue(value))?;
                    }
                } else {
                    let mut entries: Vec<_> = object.iter().collect();
                    entries.sort_unstable_by_key(|&(key, _)| key);
                    for (key, value) in entries {
                        map.serialize_entry(key, &GoValue(value))?;
                    }
                }
                map.end()
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&GoValue(item))?;
                }
                seq.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn go(value: &Value) -> String {
        String::from_utf8(to_go_json(&GoValue(value)).unwrap()).unwrap()
    }

    #[test]
    fn strings_are_escaped_like_go() {
        // Expected texts are what Go's json.Marshal writes for these strings.
        let table = [
            ("plain", r#""plain""#),
            (
                "<a href=\"x\">&amp;</a>",
                r#""\u003ca href=\"x\"\u003e\u0026amp;\u003c/a\u003e""#,
            ),
            (
                "line\u{2028}para\u{2029}end",
                r#""line\u2028para\u2029end""#,
            ),
            // DEL (0x7f) is not escaped.
            (
                "\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}",
                "\"\\u0008\\u000c\\n\\r\\t\\u0001\\u001f\u{7f}\"",
            ),
            ("back\\slash /", r#""back\\slash /""#),
            ("é€😀\u{2027}\u{202a}", "\"é€😀\u{2027}\u{202a}\""),
            ("<<>>&&", r#""\u003c\u003c\u003e\u003e\u0026\u0026""#),
        ];
        for (input, expected) in table {
            assert_eq!(go(&json!(input)), expected, "{input:?}");
        }
    }

    #[test]
    fn numbers_are_written_like_go() {
        // What the Go 1.43 tool (jsoniter) writes for float64(x); see tests/it/go_tool.rs.
        let table: &[(f64, &str)] = &[
            (1.0, "1"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1.5, "1.5"),
            (2.75, "2.75"),
            (123456789.0, "123456789"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-07"),
            (1.5e-7, "1.5e-07"),
            (1e-10, "1e-10"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (-1.2345e22, "-1.2345e+22"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for &(value, expected) in table {
            assert_eq!(go(&json!(value)), expected, "{value:e}");
        }
        assert_eq!(go(&json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(go(&json!(i64::MIN)), i64::MIN.to_string());
        let f32_json = String::from_utf8(to_go_json(&[0.5f32, 1e-7f32, 3e30f32]).unwrap());
        assert_eq!(f32_json.unwrap(), "[0.5,1e-07,3e+30]");
    }

    #[test]
    fn nested_objects_are_sorted() {
        let mut inner = serde_json::Map::new();
        inner.insert("z".into(), json!(1));
        inner.insert("a".into(), json!([{"y": true, "b": null}]));
        inner.insert("é".into(), json!("x"));
        inner.insert("B".into(), json!("x"));
        let value = json!({"outer": Value::Object(inner), "a<": "&"});
        assert_eq!(
            go(&value),
            r#"{"a\u003c":"\u0026","outer":{"B":"x","a":[{"b":null,"y":true}],"z":1,"é":"x"}}"#
        );
    }
}
