//! [`go_quote`]: Go's `strconv.Quote`, the `%q` of the Go tool's output (`changes`, error
//! lines), so that every place that quotes a name quotes it the same way.
//!
//! What Go escapes depends on its Unicode tables: `go_unprintable.rs` holds the code points
//! Go's `strconv.IsPrint` rejects, generated from the Go that built the Go tool (see
//! `tools/go_unprintable.go`), so a name quotes exactly as the Go tool quotes it.

mod go_unprintable;

use std::fmt::Write as _;

/// Go's `%q` (`strconv.Quote`) of a byte string: printable UTF-8 is kept, `"` and `\` are
/// escaped, control characters become `\n`/`\t`/`\x01`-style escapes, every other code point
/// Go does not print (format characters, spaces other than U+0020, private use, unassigned in
/// Go's Unicode) becomes a `\u00a0` or `\U000e0001` escape, and bytes that are not UTF-8
/// become `\xNN`.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if !go_prints(c) => {
                    if (c as u32) < 0x10000 {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    } else {
                        let _ = write!(out, "\\U{:08x}", c as u32);
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`.
fn go_prints(c: char) -> bool {
    let c = c as u32;
    // The table is sorted and its ranges do not overlap: find the last range starting at or
    // before `c`.
    let after = go_unprintable::GO_UNPRINTABLE.partition_point(|&(start, _)| start <= c);
    after == 0 || go_unprintable::GO_UNPRINTABLE[after - 1].1 < c
}

#[cfg(test)]
mod tests {
    use super::{go_prints, go_quote, go_unprintable::GO_UNPRINTABLE};

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        for pair in GO_UNPRINTABLE.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:?}");
        }
        assert!(go_prints(' ') && go_prints('a') && go_prints('\u{fffd}'));
        assert!(!go_prints('\u{a0}') && !go_prints('\u{10ffff}') && !go_prints('\0'));
    }

    #[test]
    fn quotes_as_go_strconv_quote() {
        // Expected values are what Go 1.19's strconv.Quote returns for the same bytes.
        for (input, quoted) in [
            (&b"plain/name"[..], r#""plain/name""#),
            (b"a\"b\\c", r#""a\"b\\c""#),
            (b"\x07\x08\x0c\n\r\t\x0b", r#""\a\b\f\n\r\t\v""#),
            (b"\x01\x7f", r#""\x01\x7f""#),
            ("\u{85}".as_bytes(), r#""\u0085""#),
            (
                "\u{2028}\u{2029}\u{feff}".as_bytes(),
                r#""\u2028\u2029\ufeff""#,
            ),
            ("caf\u{e9} \u{1f600}".as_bytes(), "\"caf\u{e9} \u{1f600}\""),
            (b"\xff\xfe", r#""\xff\xfe""#),
            // Spaces other than U+0020, format, private use and unassigned code points.
            ("\u{a0}".as_bytes(), r#""\u00a0""#),
            ("\u{ad}".as_bytes(), r#""\u00ad""#),
            ("\u{3000}".as_bytes(), r#""\u3000""#),
            ("a\u{200b}b".as_bytes(), r#""a\u200bb""#),
            ("\u{e000}".as_bytes(), r#""\ue000""#),
            ("\u{378}".as_bytes(), r#""\u0378""#),
            ("\u{e0001}".as_bytes(), r#""\U000e0001""#),
            ("\u{10ffff}".as_bytes(), r#""\U0010ffff""#),
            ("\u{fffd}".as_bytes(), "\"\u{fffd}\""),
        ] {
            assert_eq!(go_quote(input), quoted, "input {input:?}");
        }
    }
}
