//! Byte sizes as Go's `units.RAMInBytes` reads them (`10G`, `512m`, `1.5GiB`, `4096`).

/// Parses `text` like Go's `units.RAMInBytes`: a decimal number (with an optional fraction),
/// an optional space, an optional binary unit prefix `k m g t p` (any case, 1024-based), an
/// optional `i` and an optional `b`. The result is truncated to whole bytes. `None` for
/// anything else, or a size beyond `u64`.
pub fn parse_ram_in_bytes(text: &str) -> Option<u64> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, mut rest) = text.split_at(digits_end);
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(whole) || fraction.is_some_and(|f| !is_digits(f)) {
        return None;
    }
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let shift = match chars.peek().map(char::to_ascii_lowercase) {
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        _ => 0,
    };
    if shift != 0 {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        chars.next();
    }
    if chars.next().is_some() {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let bytes = value * (1u64 << shift) as f64;
    // `u64::MAX as f64` rounds up to 2^64, which must itself be refused.
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_units_examples() {
        for (text, want) in [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 << 10),
            ("32K", 32 << 10),
            ("32kb", 32 << 10),
            ("32Kib", 32 << 10),
            ("32Mb", 32 << 20),
            ("32Gb", 32 << 30),
            ("32Tb", 32 << 40),
            ("32PB", 32 << 50),
            ("32 mb", 32 << 20),
            ("1.5G", 3 << 29),
            ("0.5k", 512),
        ] {
            assert_eq!(parse_ram_in_bytes(text), Some(want), "{text}");
        }
        for text in [
            "",
            "-1",
            "G",
            "32x",
            "32  mb",
            "1.2.3",
            "32bb",
            ".5",
            "5.",
            "32iB ",
            "32E",
            "99999999999p",
        ] {
            assert_eq!(parse_ram_in_bytes(text), None, "{text:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whole numbers with any unit spelling give exactly `n << shift`.
        #[test]
        fn whole_numbers_scale_exactly(
            n in 0u64..(1 << 12),
            unit in proptest::sample::select(vec![("", 0), ("k", 10), ("M", 20), ("g", 30), ("T", 40)]),
            suffix in proptest::sample::select(vec!["", "b", "B", "ib", "iB", "i"]),
            space in proptest::bool::ANY,
        ) {
            let (prefix, shift) = unit;
            let suffix = if prefix.is_empty() { suffix.trim_start_matches(['i']) } else { suffix };
            let text = format!("{n}{}{prefix}{suffix}", if space { " " } else { "" });
            proptest::prop_assert_eq!(parse_ram_in_bytes(&text), Some(n << shift));
        }

        /// Never panics.
        #[test]
        fn total(text in "[0-9a-zA-Z. ]{0,12}") {
            let _ = parse_ram_in_bytes(&text);
        }
    }
}
