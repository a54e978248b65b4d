//! [`go_quote`]: Go's `strconv.Quote`, the `%q` of the Go tool's output (`changes`, error
//! lines), so that every place that quotes a name quotes it the same way.

use std::fmt::Write as _;

/// Go's `%q` (`strconv.Quote`) of a byte string: printable UTF-8 is kept, `"` and `\` are
/// escaped, control characters become `\n`/`\t`/`\x01`/`\u0085`-style escapes, the invisible
/// separators U+2028, U+2029 and the byte-order mark U+FEFF (not printable for Go) become
/// `\u2028`-style escapes, and bytes that are not UTF-8 become `\xNN`.
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
                c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
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

#[cfg(test)]
mod tests {
    use super::go_quote;

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
        ] {
            assert_eq!(go_quote(input), quoted, "input {input:?}");
        }
    }
}
