//! [`Timestamp`]: Go's `time.Time` as its JSON encoding writes and reads it.
//!
//! Hand-written rather than taken from a date crate because the contract is Go's exact
//! grammar, not RFC 3339 in general: Go writes `RFC3339Nano` with the fraction's trailing zeros
//! trimmed, `Z` for a zero offset, and refuses years outside 0..=9999; it reads an uppercase `T`
//! and `Z` only, a one- or two-digit hour, a fraction after `.` or `,` truncated to nanoseconds,
//! and offsets up to `±24:60` — but no leap second `:60`. Date crates differ on several of these.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::error::{Error, Result};

const SECONDS_PER_DAY: i64 = 86_400;
/// Unix seconds of 0000-01-01T00:00:00Z, the earliest instant Go's JSON encoder writes in UTC.
const MIN_UNIX_SECONDS: i64 = -62_167_219_200;
/// Unix seconds of 9999-12-31T23:59:59Z, the last second Go's JSON encoder writes in UTC.
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;
/// Longest text: `9999-12-31T23:59:59.999999999+25:00` (offsets up to 24:60 parse).
const MAX_TEXT_LEN: usize = 35;

/// A point in time with the UTC offset it was written with, as Go's `time.Time` round-trips
/// through JSON.
///
/// [`Display`](fmt::Display) and [`Serialize`] produce exactly Go's `MarshalJSON` text
/// (`2026-11-27T22:14:32.35772588Z`); [`FromStr`] and [`Deserialize`] accept what Go's
/// `UnmarshalJSON` accepts. The offset is kept so that `"…+02:00"` is written back unchanged.
///
/// Equality is structural like Go's `==`: the same instant with different offsets is not equal
/// (compare [`Timestamp::to_utc`] values for instant equality). The ordering sorts by instant
/// first, then by offset.
///
/// The [`Default`] is Go's zero `time.Time`, `0001-01-01T00:00:00Z`, which Go writes for a layer
/// record without `created`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    unix_seconds: i64,
    nanos: u32,
    offset_minutes: i16,
}

impl Default for Timestamp {
    fn default() -> Self {
        Timestamp::GO_ZERO
    }
}

impl Timestamp {
    /// Go's zero `time.Time`: `0001-01-01T00:00:00Z`.
    pub const GO_ZERO: Timestamp = Timestamp {
        unix_seconds: -62_135_596_800,
        nanos: 0,
        offset_minutes: 0,
    };

    /// The current time in UTC, as Go's `time.Now().UTC()` when a layer is created.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
            // The clock cannot be outside years 0..=9999 in practice; fall back to the epoch
            // rather than panic if it is.
            .unwrap_or(Timestamp {
                unix_seconds: 0,
                nanos: 0,
                offset_minutes: 0,
            })
    }

    /// The UTC timestamp `unix_seconds` + `nanos` after the Unix epoch.
    ///
    /// Errors if `nanos` is not below 10⁹ or the year would be outside 0..=9999 (Go refuses to
    /// encode those).
    pub fn from_unix(unix_seconds: i64, nanos: u32) -> Result<Timestamp> {
        if nanos >= 1_000_000_000 {
            return Err(Error::InvalidTimestamp {
                input: format!("{unix_seconds}s + {nanos}ns"),
                reason: "nanoseconds must be below 1000000000",
            });
        }
        if !(MIN_UNIX_SECONDS..=MAX_UNIX_SECONDS).contains(&unix_seconds) {
            return Err(Error::InvalidTimestamp {
                input: format!("{unix_seconds}s after the Unix epoch"),
                reason: "year outside of range [0,9999]",
            });
        }
        Ok(Timestamp {
            unix_seconds,
            nanos,
            offset_minutes: 0,
        })
    }

    /// The UTC timestamp of a [`SystemTime`].
    pub fn from_system_time(time: SystemTime) -> Result<Timestamp> {
        let (seconds, nanos) = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => (i64::try_from(after.as_secs()).ok(), after.subsec_nanos()),
            Err(before) => {
                let before = before.duration();
                let whole = i64::try_from(before.as_secs()).ok().map(|s| -s);
                match before.subsec_nanos() {
                    0 => (whole, 0),
                    n => (whole.map(|s| s - 1), 1_000_000_000 - n),
                }
            }
        };
        let seconds = seconds.ok_or_else(|| Error::InvalidTimestamp {
            input: format!("{time:?}"),
            reason: "year outside of range [0,9999]",
        })?;
        Timestamp::from_unix(seconds, nanos)
    }

    /// The same instant, written with a UTC offset of `offset_minutes` east of UTC (as Go's
    /// `t.In(time.FixedZone("", offset_minutes*60))`).
    ///
    /// Errors if the offset is beyond ±24:59 (the most that Go's parser reads back from
    /// `±hh:mm`) or the local year would leave 0..=9999.
    pub fn with_offset_minutes(self, offset_minutes: i16) -> Result<Timestamp> {
        let shifted = Timestamp {
            offset_minutes,
            ..self
        };
        if offset_minutes.unsigned_abs() > 24 * 60 + 59 {
            return Err(Error::InvalidTimestamp {
                input: format!("{self} with offset {offset_minutes} minutes"),
                reason: "time zone offset out of range",
            });
        }
        let local = self.unix_seconds + i64::from(offset_minutes) * 60;
        if !(MIN_UNIX_SECONDS..=MAX_UNIX_SECONDS).contains(&local) {
            return Err(Error::InvalidTimestamp {
                input: format!("{self} with offset {offset_minutes} minutes"),
                reason: "year outside of range [0,9999]",
            });
        }
        Ok(shifted)
    }

    /// The instant as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        let subsec = Duration::from_nanos(u64::from(self.nanos));
        if self.unix_seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.unix_seconds.unsigned_abs()) + subsec
        } else {
            UNIX_EPOCH - Duration::from_secs(self.unix_seconds.unsigned_abs()) + subsec
        }
    }

    /// Whole seconds since the Unix epoch (of the instant, independent of the offset).
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// Nanoseconds past [`Timestamp::unix_seconds`], below 10⁹.
    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// The UTC offset the timestamp is written with, in minutes east of UTC.
    pub fn offset_minutes(self) -> i16 {
        self.offset_minutes
    }

    /// The same instant, written in UTC (`…Z`), as Go's `t.UTC()`.
    pub fn to_utc(self) -> Timestamp {
        Timestamp {
            offset_minutes: 0,
            ..self
        }
    }

    /// Whether this is Go's zero time (`t.IsZero()`), whatever the offset.
    pub fn is_go_zero(self) -> bool {
        self.unix_seconds == Timestamp::GO_ZERO.unix_seconds && self.nanos == 0
    }

    /// Writes Go's text into `buf` and returns its length.
    fn format_into(self, buf: &mut [u8; MAX_TEXT_LEN]) -> usize {
        let local = self.unix_seconds + i64::from(self.offset_minutes) * 60;
        let days = local.div_euclid(SECONDS_PER_DAY);
        let second_of_day = local.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let mut out = Writer { buf, len: 0 };
        // Constructors keep the local year within 0..=9999, so four digits suffice.
        out.digits(year, 4);
        out.byte(b'-');
        out.digits(i64::from(month), 2);
        out.byte(b'-');
        out.digits(i64::from(day), 2);
        out.byte(b'T');
        out.digits(second_of_day / 3600, 2);
        out.byte(b':');
        out.digits(second_of_day / 60 % 60, 2);
        out.byte(b':');
        out.digits(second_of_day % 60, 2);
        if self.nanos != 0 {
            out.byte(b'.');
            let mut fraction = self.nanos;
            let mut width = 9;
            while fraction.is_multiple_of(10) {
                fraction /= 10;
                width -= 1;
            }
            out.digits(i64::from(fraction), width);
        }
        if self.offset_minutes == 0 {
            out.byte(b'Z');
        } else {
            out.byte(if self.offset_minutes < 0 { b'-' } else { b'+' });
            let minutes = i64::from(self.offset_minutes.unsigned_abs());
            out.digits(minutes / 60, 2);
            out.byte(b':');
            out.digits(minutes % 60, 2);
        }
        out.len
    }

    /// Parses Go's `time.Time` JSON text (without the quotes).
    fn parse(text: &str) -> Result<Timestamp> {
        let invalid = |reason| Error::InvalidTimestamp {
            input: text.to_owned(),
            reason,
        };
        let mut cursor = Cursor {
            bytes: text.as_bytes(),
        };
        let year = cursor.fixed_digits(4).ok_or_else(|| invalid("bad year"))?;
        cursor
            .expect(b'-')
            .ok_or_else(|| invalid("expected '-' after the year"))?;
        let month = cursor.fixed_digits(2).ok_or_else(|| invalid("bad month"))?;
        cursor
            .expect(b'-')
            .ok_or_else(|| invalid("expected '-' after the month"))?;
        let day = cursor.fixed_digits(2).ok_or_else(|| invalid("bad day"))?;
        cursor
            .expect(b'T')
            .ok_or_else(|| invalid("expected 'T' after the date"))?;
        // Go's fallback parser (`time.Parse(time.RFC3339, …)`) takes a one-digit hour.
        let hour = cursor
            .fixed_digits(2)
            .or_else(|| cursor.fixed_digits(1))
            .ok_or_else(|| invalid("bad hour"))?;
        cursor
            .expect(b':')
            .ok_or_else(|| invalid("expected ':' after the hour"))?;
        let minute = cursor
            .fixed_digits(2)
            .ok_or_else(|| invalid("bad minute"))?;
        cursor
            .expect(b':')
            .ok_or_else(|| invalid("expected ':' after the minute"))?;
        let second = cursor
            .fixed_digits(2)
            .ok_or_else(|| invalid("bad second"))?;
        if !(1..=12).contains(&month) {
            return Err(invalid("month out of range"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(invalid("day out of range"));
        }
        if hour > 23 {
            return Err(invalid("hour out of range"));
        }
        if minute > 59 {
            return Err(invalid("minute out of range"));
        }
        if second > 59 {
            return Err(invalid("second out of range"));
        }
        let mut nanos: i64 = 0;
        if matches!(cursor.peek(0), Some(b'.' | b',')) && cursor.peek(1).is_some_and(is_digit) {
            cursor.bytes = &cursor.bytes[1..];
            let digits = cursor
                .bytes
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            // Go keeps nine digits and drops the rest without rounding.
            for (position, &digit) in cursor.bytes[..digits].iter().take(9).enumerate() {
                nanos += i64::from(digit - b'0') * 10_i64.pow(8 - position as u32);
            }
            cursor.bytes = &cursor.bytes[digits..];
        }
        let offset_minutes: i64 = match cursor.bytes {
            [b'Z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
                if [h1, h2, m1, m2].into_iter().all(is_digit) =>
            {
                let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
                let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
                // Go's parser allows 24 hours and 60 minutes ("some people do write" them).
                if hours > 24 || minutes > 60 {
                    return Err(invalid("time zone offset out of range"));
                }
                let offset = hours * 60 + minutes;
                if *sign == b'-' { -offset } else { offset }
            }
            [] => return Err(invalid("missing time zone ('Z' or ±hh:mm)")),
            _ => return Err(invalid("bad time zone or extra text")),
        };
        let local = days_from_civil(year, month, day) * SECONDS_PER_DAY
            + hour * 3600
            + minute * 60
            + second;
        Ok(Timestamp {
            unix_seconds: local - offset_minutes * 60,
            nanos: nanos as u32,
            offset_minutes: offset_minutes as i16,
        })
    }
}

/// Appends fixed-width decimal fields to the formatting buffer.
struct Writer<'a> {
    buf: &'a mut [u8; MAX_TEXT_LEN],
    len: usize,
}

impl Writer<'_> {
    fn byte(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn digits(&mut self, mut value: i64, width: usize) {
        for slot in self.buf[self.len..self.len + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += width;
    }
}

/// Reads fixed-width decimal fields from the front of the text.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl Cursor<'_> {
    fn peek(&self, at: usize) -> Option<&u8> {
        self.bytes.get(at)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        let (&first, rest) = self.bytes.split_first()?;
        (first == byte).then(|| self.bytes = rest)
    }

    fn fixed_digits(&mut self, width: usize) -> Option<i64> {
        let field = self.bytes.get(..width)?;
        if !field.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.bytes = &self.bytes[width..];
        Some(
            field
                .iter()
                .fold(0, |value, digit| value * 10 + i64::from(digit - b'0')),
        )
    }
}

fn is_digit(byte: &u8) -> bool {
    byte.is_ascii_digit()
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    /// Go's `RFC3339Nano` text, as `time.Time.MarshalJSON` writes it (without quotes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; MAX_TEXT_LEN];
        let len = self.format_into(&mut buf);
        // The buffer holds only ASCII digits and punctuation.
        f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    /// Parses what Go's `time.Time.UnmarshalJSON` accepts (without the quotes).
    fn from_str(text: &str) -> Result<Timestamp> {
        Timestamp::parse(text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0; MAX_TEXT_LEN];
        let len = self.format_into(&mut buf);
        let text = std::str::from_utf8(&buf[..len]).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                Timestamp::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TimestampVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        text.parse::<Timestamp>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    #[test]
    fn go_written_examples_round_trip() {
        for text in [
            "2026-11-27T22:14:32.35772588Z",
            "2026-11-27T20:31:46.960194405Z",
            "2026-11-27T22:14:32.6652594Z",
            "0001-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.000000001Z",
            "9999-12-31T23:59:59.999999999Z",
            "0000-01-01T00:00:00Z",
            "2026-11-27T22:14:32.5+02:00",
            "2026-11-27T22:14:32-07:30",
            "1969-12-31T23:59:59.1Z",
        ] {
            assert_eq!(round_trip(text), text);
        }
    }

    #[test]
    fn go_normalisations() {
        // Go trims trailing zeros of the fraction and drops a zero fraction.
        assert_eq!(
            round_trip("2026-11-27T22:14:32.357725880Z"),
            "2026-11-27T22:14:32.35772588Z"
        );
        assert_eq!(
            round_trip("2026-11-27T22:14:32.000Z"),
            "2026-11-27T22:14:32Z"
        );
        // A zero offset is written as Z.
        assert_eq!(
            round_trip("2026-11-27T22:14:32+00:00"),
            "2026-11-27T22:14:32Z"
        );
        assert_eq!(
            round_trip("2026-11-27T22:14:32-00:00"),
            "2026-11-27T22:14:32Z"
        );
        // More than nine fraction digits are truncated, not rounded.
        assert_eq!(
            round_trip("2026-11-27T22:14:32.1234567899Z"),
            "2026-11-27T22:14:32.123456789Z"
        );
        // Go's fallback parser takes a one-digit hour and a comma before the fraction.
        assert_eq!(
            round_trip("2026-11-27T2:14:32,5Z"),
            "2026-11-27T02:14:32.5Z"
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "",
            "2026-11-27",
            "2026-11-27t22:14:32Z",
            "2026-11-27T22:14:32z",
            "2026-11-27 22:14:32Z",
            "2026-11-27T22:14:32",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T22:60:00Z",
            "2026-11-27T22:14:60Z",
            "2026-11-27T22:14:32.Z",
            "2026-11-27T22:14:32+0200",
            "2026-11-27T22:14:32+25:00",
            "2026-11-27T22:14:32Zjunk",
            "+2026-11-27T22:14:32Z",
            "10000-01-01T00:00:00Z",
            "2026-1-27T22:14:32Z",
            "2026-11-27T123:14:32Z",
        ] {
            let err = text.parse::<Timestamp>().expect_err(text);
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn instants_and_offsets() {
        let utc: Timestamp = "2026-11-27T20:14:32Z".parse().unwrap();
        let plus_two: Timestamp = "2026-11-27T22:14:32+02:00".parse().unwrap();
        assert_ne!(utc, plus_two);
        assert_eq!(utc, plus_two.to_utc());
        assert_eq!(plus_two.offset_minutes(), 120);
        assert_eq!(utc.unix_seconds(), 1_795_810_472);
        assert!(Timestamp::default().is_go_zero());
        assert_eq!(Timestamp::default().to_string(), "0001-01-01T00:00:00Z");
        // The local year stays in range even where the UTC year is not.
        let early: Timestamp = "0000-01-01T00:30:00+01:00".parse().unwrap();
        assert_eq!(early.to_string(), "0000-01-01T00:30:00+01:00");
    }

    #[test]
    fn changing_the_offset_keeps_the_instant() {
        let utc: Timestamp = "2026-11-27T20:14:32.25Z".parse().unwrap();
        let east = utc.with_offset_minutes(330).unwrap();
        assert_eq!(east.to_string(), "2026-11-28T01:44:32.25+05:30");
        assert_eq!(east.to_utc(), utc);
        let west = utc.with_offset_minutes(-1499).unwrap();
        assert_eq!(west.to_string(), "2026-11-26T19:15:32.25-24:59");
        assert_eq!(west.to_string().parse::<Timestamp>().unwrap(), west);
        assert!(utc.with_offset_minutes(1500).is_err());
        let last = Timestamp::from_unix(MAX_UNIX_SECONDS, 0).unwrap();
        assert!(last.with_offset_minutes(1).is_err());
        assert!(last.with_offset_minutes(-1).is_ok());
    }

    #[test]
    fn unix_and_system_time() {
        let t = Timestamp::from_unix(1_795_810_472, 357_725_880).unwrap();
        assert_eq!(t.to_string(), "2026-11-27T20:14:32.35772588Z");
        assert_eq!(Timestamp::from_system_time(t.to_system_time()).unwrap(), t);
        let before_epoch = UNIX_EPOCH - Duration::new(1, 250_000_000);
        let t = Timestamp::from_system_time(before_epoch).unwrap();
        assert_eq!(t.to_string(), "1969-12-31T23:59:58.75Z");
        assert_eq!(t.to_system_time(), before_epoch);
        assert!(Timestamp::from_unix(0, 1_000_000_000).is_err());
        assert!(Timestamp::from_unix(MAX_UNIX_SECONDS + 1, 0).is_err());
        assert!(Timestamp::from_unix(MIN_UNIX_SECONDS - 1, 0).is_err());
        assert_eq!(
            Timestamp::from_unix(MAX_UNIX_SECONDS, 0)
                .unwrap()
                .to_string(),
            "9999-12-31T23:59:59Z"
        );
        let now = Timestamp::now();
        assert_eq!(now.offset_minutes(), 0);
        assert!(now.unix_seconds() > 1_700_000_000);
    }

    /// Checks the calendar arithmetic against a plain day-by-day walk over all 10,000 years.
    #[test]
    fn calendar_matches_a_day_by_day_walk() {
        let mut days = days_from_civil(0, 1, 1);
        assert_eq!(days * SECONDS_PER_DAY, MIN_UNIX_SECONDS);
        for year in 0..=9999 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), days);
                    assert_eq!(civil_from_days(days), (year, month as u32, day as u32));
                    days += 1;
                }
            }
        }
    }
}
