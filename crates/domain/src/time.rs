//! `Edm.DateTimeOffset` values at Graph's precision: 100 ns ticks since 0001-01-01T00:00:00Z.
//!
//! Any zone offset is accepted on input and converted to the same instant in UTC.
//! Output is always UTC with `Z`, with the fraction's trailing zeros trimmed (as Graph does).
//! More than 7 fraction digits is rejected unless the extra digits are zeros: the value could
//! not be stored exactly, and remediate never silently truncates.

use std::fmt;

/// Ticks (100 ns) per second.
const TICKS_PER_SECOND: i64 = 10_000_000;
const TICKS_PER_DAY: i64 = 86_400 * TICKS_PER_SECOND;
/// Days from 0001-01-01 to 1970-01-01.
const UNIX_EPOCH_DAYS: i64 = 719_162;

/// An instant in UTC with 100 ns precision, within 0001-01-01 ..= 9999-12-31T23:59:59.9999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(i64);

impl Instant {
    /// `0001-01-01T00:00:00Z`, Graph's value for a non-nullable date that was never set.
    pub const MIN: Instant = Instant(0);
    pub const MAX: Instant = Instant(
        days_from_civil(9999, 12, 31) * TICKS_PER_DAY + TICKS_PER_DAY - 1
            + UNIX_EPOCH_DAYS * TICKS_PER_DAY,
    );

    pub fn from_ticks(ticks: i64) -> Option<Instant> {
        (Self::MIN.0..=Self::MAX.0)
            .contains(&ticks)
            .then_some(Instant(ticks))
    }

    pub fn ticks(self) -> i64 {
        self.0
    }

    pub fn now() -> Instant {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let ticks = UNIX_EPOCH_DAYS * TICKS_PER_DAY
            + since.as_secs() as i64 * TICKS_PER_SECOND
            + i64::from(since.subsec_nanos() / 100);
        Instant(ticks.min(Self::MAX.0))
    }

    /// Whole seconds since the Unix epoch (negative before 1970).
    pub fn unix_seconds(self) -> i64 {
        (self.0 - UNIX_EPOCH_DAYS * TICKS_PER_DAY).div_euclid(TICKS_PER_SECOND)
    }

    /// The UTC calendar date, as `YYYY-MM-DD`.
    pub fn date_string(self) -> String {
        let days = self.0.div_euclid(TICKS_PER_DAY) - UNIX_EPOCH_DAYS;
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// ISO 8601 UTC without fraction, e.g. `2025-06-04T19:34:35Z` (used in error bodies).
    pub fn to_seconds_string(self) -> String {
        let s = self.to_string();
        match s.find('.') {
            Some(dot) => format!("{}Z", &s[..dot]),
            None => s,
        }
    }

    /// Parse ISO 8601 / RFC 3339 `YYYY-MM-DDTHH:MM:SS[.f{1,7}](Z|±HH:MM)`.
    pub fn parse(text: &str) -> Result<Instant, TimeError> {
        let b = text.as_bytes();
        let err = |why: &str| TimeError(format!("'{text}' is not a valid DateTimeOffset: {why}"));
        let expected = "expected ISO 8601 'YYYY-MM-DDTHH:MM:SS[.fffffff]' followed by 'Z' or an offset '±HH:MM'";
        if b.len() < 17 || b.len() > 64 {
            return Err(err(expected));
        }
        let year = digits(b, 0, 4).ok_or_else(|| err(expected))?;
        let month = digits(b, 5, 2).ok_or_else(|| err(expected))?;
        let day = digits(b, 8, 2).ok_or_else(|| err(expected))?;
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') || b[13] != b':' {
            return Err(err(expected));
        }
        let hour = digits(b, 11, 2).ok_or_else(|| err(expected))?;
        let minute = digits(b, 14, 2).ok_or_else(|| err(expected))?;
        // Seconds are optional in OData's DateTimeOffset (`THH:MM`), as is the fraction.
        let (second, mut pos) = if b.get(16) == Some(&b':') {
            (digits(b, 17, 2).ok_or_else(|| err(expected))?, 19)
        } else {
            (0, 16)
        };
        let mut fraction: i64 = 0;
        if pos == 19 && b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                let digit = i64::from(b[pos] - b'0');
                let index = pos - start;
                if index < 7 {
                    fraction += digit * 10_i64.pow(6 - index as u32);
                } else if digit != 0 {
                    return Err(err(
                        "more than 7 fraction digits (Graph's precision is 100 ns)",
                    ));
                }
                pos += 1;
            }
            if pos == start {
                return Err(err("expected digits after '.'"));
            }
        }
        let offset_minutes: i64 = match b.get(pos) {
            Some(b'Z') | Some(b'z') if pos + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
                let oh = digits(b, pos + 1, 2).ok_or_else(|| err(expected))?;
                let om = digits(b, pos + 4, 2).ok_or_else(|| err(expected))?;
                if oh > 23 || om > 59 {
                    return Err(err("offset out of range"));
                }
                let total = oh * 60 + om;
                if sign == b'-' {
                    -total
                } else {
                    total
                }
            }
            None => return Err(err("a zone offset ('Z' or '±HH:MM') is required")),
            _ => return Err(err(expected)),
        };
        if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(err("no such date"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err("no such time of day"));
        }
        let days = days_from_civil(year, month, day) + UNIX_EPOCH_DAYS;
        let ticks = days * TICKS_PER_DAY
            + (hour * 3600 + minute * 60 + second - offset_minutes * 60) * TICKS_PER_SECOND
            + fraction;
        Instant::from_ticks(ticks)
            .ok_or_else(|| err("outside 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.9999999Z"))
    }
}

/// An instant in ISO 8601 form, formatted on the stack (`yyyy-mm-ddThh:mm:ss[.fffffff]Z`).
#[derive(Clone, Copy)]
pub struct IsoText {
    bytes: [u8; 28],
    len: usize,
}

impl IsoText {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Instant {
    /// The wire form: UTC with `Z`, fractional seconds to 100 ns with trailing zeros dropped.
    pub fn iso(&self) -> IsoText {
        fn put(buf: &mut [u8], value: i64) {
            let mut v = value;
            for slot in buf.iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        let days = self.0.div_euclid(TICKS_PER_DAY) - UNIX_EPOCH_DAYS;
        let in_day = self.0.rem_euclid(TICKS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let secs = in_day / TICKS_PER_SECOND;
        let frac = in_day % TICKS_PER_SECOND;
        let mut b = *b"0000-00-00T00:00:00.0000000Z";
        put(&mut b[0..4], y);
        put(&mut b[5..7], m);
        put(&mut b[8..10], d);
        put(&mut b[11..13], secs / 3600);
        put(&mut b[14..16], secs / 60 % 60);
        put(&mut b[17..19], secs % 60);
        let len = if frac == 0 {
            b[19] = b'Z';
            20
        } else {
            put(&mut b[20..27], frac);
            let mut end = 27;
            while b[end - 1] == b'0' {
                end -= 1;
            }
            b[end] = b'Z';
            end + 1
        };
        IsoText { bytes: b, len }
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.iso().as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(pub String);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn digits(b: &[u8], start: usize, len: usize) -> Option<i64> {
    let slice = b.get(start..start + len)?;
    slice.iter().try_fold(0_i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(s: &str) -> String {
        Instant::parse(s)
            .map(|i| i.to_string())
            .unwrap_or_else(|e| e.0)
    }

    #[test]
    fn graph_values_round_trip_exactly() {
        assert_eq!(round("0001-01-01T00:00:00Z"), "0001-01-01T00:00:00Z");
        assert_eq!(
            round("2025-04-04T00:37:33.6892117Z"),
            "2025-04-04T00:37:33.6892117Z"
        );
        assert_eq!(round("2024-04-13T20:23:18Z"), "2024-04-13T20:23:18Z");
        assert_eq!(
            round("9999-12-31T23:59:59.9999999Z"),
            "9999-12-31T23:59:59.9999999Z"
        );
        assert_eq!(round("2024-02-29T12:00:00.5Z"), "2024-02-29T12:00:00.5Z");
    }

    #[test]
    fn offsets_become_the_same_instant_in_utc() {
        assert_eq!(
            round("2025-03-01T10:00:00.1234567+02:00"),
            "2025-03-01T08:00:00.1234567Z"
        );
        assert_eq!(round("2016-12-31T23:30:00-08:00"), "2017-01-01T07:30:00Z");
        assert_eq!(round("2025-03-01t10:00:00z"), "2025-03-01T10:00:00Z");
        assert_eq!(
            round("2025-03-01T12:00+02:00"),
            "2025-03-01T10:00:00Z",
            "seconds are optional"
        );
    }

    #[test]
    fn extra_zero_digits_are_fine_but_lost_precision_is_rejected() {
        assert_eq!(
            round("2025-03-01T10:00:00.123456700Z"),
            "2025-03-01T10:00:00.1234567Z"
        );
        assert!(Instant::parse("2025-03-01T10:00:00.123456789Z").is_err());
    }

    #[test]
    fn invalid_values_are_rejected() {
        for bad in [
            "String (timestamp)",
            "2025-03-01",
            "2025-03-01T10:00:00",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00:60Z",
            "0000-12-31T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+2:00",
            "2025-01-01 00:00:00Z",
            "２０２５-01-01T00:00:00Z",
        ] {
            assert!(Instant::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn ordering_follows_the_instant() {
        let a = Instant::parse("2025-01-01T00:00:00+01:00").unwrap();
        let b = Instant::parse("2024-12-31T23:30:00Z").unwrap();
        assert!(a < b);
        assert_eq!(
            Instant::parse("1970-01-01T00:00:01Z")
                .unwrap()
                .unix_seconds(),
            1
        );
        assert_eq!(
            Instant::parse("2025-07-04T23:59:59Z")
                .unwrap()
                .date_string(),
            "2025-07-04"
        );
    }
}
