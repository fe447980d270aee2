//! Lexing of unquoted literals: numbers, dates, date-times and GUIDs.

use crate::ast::Literal;
use crate::error::{shorten, ParseError};
use crate::lexer::{is_ident_char, is_space, Lexer};

/// A character that must not directly follow a literal.
fn bad_follower(b: u8) -> bool {
    is_ident_char(b) || matches!(b, b'.' | b'-' | b':' | b'\'')
}

/// `n` (at most 4) decimal digits at `i` as a number.
fn digits(lx: &Lexer, i: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for k in 0..n {
        let b = lx.at(i + k)?;
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

/// End of a run of decimal digits starting at `i`.
fn run_digits(lx: &Lexer, mut i: usize) -> usize {
    while lx.at(i).is_some_and(|b| b.is_ascii_digit()) {
        i += 1;
    }
    i
}

/// Does an 8-4-4-4-12 hexadecimal GUID start at `start`?
pub(crate) fn is_guid_at(lx: &Lexer, start: usize) -> bool {
    for i in 0..36 {
        let Some(b) = lx.at(start + i) else {
            return false;
        };
        let ok = if matches!(i, 8 | 13 | 18 | 23) {
            b == b'-'
        } else {
            b.is_ascii_hexdigit()
        };
        if !ok {
            return false;
        }
    }
    !lx.at(start + 36).is_some_and(bad_follower)
}

/// Syntax error naming the malformed literal that starts at `start`.
pub(crate) fn malformed(lx: &Lexer, start: usize) -> ParseError {
    let mut i = start;
    while let Some(b) = lx.at(i) {
        if is_space(b) || matches!(b, b'(' | b')' | b',') {
            break;
        }
        i += 1;
    }
    while i < lx.src.len() && !lx.src.is_char_boundary(i) {
        i += 1;
    }
    lx.ctx.syntax(
        start,
        format_args!("malformed literal '{}'", shorten(lx.text(start, i))),
    )
}

/// Lex a number (`-5`, `42`, `1.5`, `2e10`), date or date-time starting at `start`.
pub(crate) fn number_or_date(lx: &Lexer, start: usize) -> Result<(Literal, usize), ParseError> {
    let mut i = start;
    if lx.at(i) == Some(b'-') {
        i += 1;
    }
    let digits_start = i;
    i = run_digits(lx, i);
    if digits_start == start && i - digits_start == 4 && lx.at(i) == Some(b'-') {
        return date_or_datetime(lx, start);
    }
    let mut decimal = false;
    if lx.at(i) == Some(b'.') {
        let e = run_digits(lx, i + 1);
        if e == i + 1 {
            return Err(malformed(lx, start));
        }
        i = e;
        decimal = true;
    }
    if matches!(lx.at(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(lx.at(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let e = run_digits(lx, j);
        if e == j {
            return Err(malformed(lx, start));
        }
        i = e;
        decimal = true;
    }
    if lx.at(i).is_some_and(bad_follower) {
        return Err(malformed(lx, start));
    }
    let text = lx.text(start, i);
    if decimal {
        return Ok((Literal::Decimal(text.to_string()), i));
    }
    match text.parse::<i64>() {
        Ok(v) => Ok((Literal::Int(v), i)),
        Err(_) => Err(lx.ctx.invalid(
            start,
            format!(
                "The integer '{}' in {} at position {start} is out of range for a 64-bit integer.",
                shorten(text),
                lx.ctx.label
            ),
        )),
    }
}

/// `YYYY-MM-DD` optionally followed by `THH:MM[:SS[.fff]]` and a mandatory zone.
fn date_or_datetime(lx: &Lexer, start: usize) -> Result<(Literal, usize), ParseError> {
    let (Some(_year), Some(month), Some(day)) = (
        digits(lx, start, 4),
        digits(lx, start + 5, 2),
        digits(lx, start + 8, 2),
    ) else {
        return Err(malformed(lx, start));
    };
    if lx.at(start + 7) != Some(b'-') {
        return Err(malformed(lx, start));
    }
    let date_ok = (1..=12).contains(&month) && (1..=31).contains(&day);
    let mut i = start + 10;
    if !matches!(lx.at(i), Some(b'T' | b't')) {
        if lx.at(i).is_some_and(bad_follower) {
            return Err(malformed(lx, start));
        }
        let text = lx.text(start, i);
        if !date_ok {
            return Err(invalid_date(lx, start, text, "date"));
        }
        return Ok((Literal::Date(text.to_string()), i));
    }
    i += 1;
    let (Some(hour), Some(minute)) = (digits(lx, i, 2), digits(lx, i + 3, 2)) else {
        return Err(malformed(lx, start));
    };
    if lx.at(i + 2) != Some(b':') {
        return Err(malformed(lx, start));
    }
    i += 5;
    let mut second = 0;
    if lx.at(i) == Some(b':') {
        second = digits(lx, i + 1, 2).ok_or_else(|| malformed(lx, start))?;
        i += 3;
        if lx.at(i) == Some(b'.') {
            let e = run_digits(lx, i + 1);
            if e == i + 1 {
                return Err(malformed(lx, start));
            }
            i = e;
        }
    }
    let mut text = lx.text(start, i).to_string();
    let offset = |at: usize| -> Option<(u32, u32)> {
        let h = digits(lx, at, 2)?;
        let m = digits(lx, at + 3, 2)?;
        (lx.at(at + 2) == Some(b':')).then_some((h, m))
    };
    let (off_h, off_m) = match lx.at(i) {
        Some(b'Z' | b'z') => {
            text.push_str(lx.text(i, i + 1));
            i += 1;
            (0, 0)
        }
        Some(b'+' | b'-') => {
            let hm = offset(i + 1).ok_or_else(|| malformed(lx, start))?;
            text.push_str(lx.text(i, i + 6));
            i += 6;
            hm
        }
        // `+` in a URL decodes to a space: `…T10:00:00 02:00` means `+02:00`.
        Some(b' ') if offset(i + 1).is_some() && !lx.at(i + 6).is_some_and(bad_follower) => {
            let hm = offset(i + 1).unwrap_or((0, 0));
            text.push('+');
            text.push_str(lx.text(i + 1, i + 6));
            i += 6;
            hm
        }
        _ => {
            if lx.at(i).is_some_and(bad_follower) {
                return Err(malformed(lx, start));
            }
            return Err(lx.ctx.syntax(
                start,
                format_args!(
                    "the date-time literal '{}' needs a time zone: 'Z' or an offset such as +02:00",
                    shorten(&text)
                ),
            ));
        }
    };
    if lx.at(i).is_some_and(bad_follower) {
        return Err(malformed(lx, start));
    }
    let time_ok = hour <= 23 && minute <= 59 && second <= 59 && off_h <= 23 && off_m <= 59;
    if !(date_ok && time_ok) {
        return Err(invalid_date(lx, start, &text, "date-time"));
    }
    Ok((Literal::DateTimeOffset(text), i))
}

fn invalid_date(lx: &Lexer, start: usize, text: &str, what: &str) -> ParseError {
    lx.ctx.invalid(
        start,
        format!(
            "'{}' in {} at position {start} is not a valid {what}.",
            shorten(text),
            lx.ctx.label
        ),
    )
}
