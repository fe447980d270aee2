//! Splitting and percent-decoding the raw query string, and option dispatch.

use crate::ast::QueryOptions;
use crate::error::{shorten, Ctx, ErrorKind, ParseError};
use crate::expand::parse_expand_range;
use crate::filter::parse_filter_range;
use crate::paths::{parse_orderby_range, parse_select_range};
use crate::Limits;

/// A known query option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opt {
    Filter,
    OrderBy,
    Select,
    Expand,
    Top,
    Skip,
    Count,
    SkipToken,
    /// A standard OData option this server does not implement.
    Unsupported,
}

impl Opt {
    pub fn canonical(self) -> &'static str {
        match self {
            Opt::Filter => "$filter",
            Opt::OrderBy => "$orderby",
            Opt::Select => "$select",
            Opt::Expand => "$expand",
            Opt::Top => "$top",
            Opt::Skip => "$skip",
            Opt::Count => "$count",
            Opt::SkipToken => "$skiptoken",
            Opt::Unsupported => "(unsupported)",
        }
    }
}

/// Classify an option name given with or without `$`, ASCII case-insensitively.
pub(crate) fn classify(name: &str) -> Option<Opt> {
    let bare = name.strip_prefix('$').unwrap_or(name);
    Some(match bare.to_ascii_lowercase().as_str() {
        "filter" => Opt::Filter,
        "orderby" => Opt::OrderBy,
        "select" => Opt::Select,
        "expand" => Opt::Expand,
        "top" => Opt::Top,
        "skip" => Opt::Skip,
        "count" => Opt::Count,
        "skiptoken" => Opt::SkipToken,
        "search" | "apply" | "compute" | "format" | "deltatoken" | "levels" | "index"
        | "schemaversion" => Opt::Unsupported,
        _ => return None,
    })
}

/// Decode `%XX` escapes and `+`; errors carry the byte offset in `raw`.
fn percent_decode(raw: &str) -> Result<String, (usize, String)> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|&x| char::from(x).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    (Some(h), Some(l)) => {
                        // h and l are < 16, so the value fits in a byte.
                        out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                        i += 3;
                    }
                    _ => {
                        let shown = raw.get(i..(i + 3).min(raw.len())).unwrap_or("%");
                        return Err((i, format!("invalid percent-encoding '{}'", shorten(shown))));
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| {
        (
            e.utf8_error().valid_up_to(),
            "the decoded text is not valid UTF-8".to_string(),
        )
    })
}

fn decode_for(option: &str, raw: &str, limits: &Limits) -> Result<String, ParseError> {
    percent_decode(raw).map_err(|(pos, detail)| Ctx::top(option, limits).syntax(pos, detail))
}

/// Parse a raw (still percent-encoded) URL query string, without the leading '?'.
pub(crate) fn parse_query_impl(raw: &str, limits: &Limits) -> Result<QueryOptions, ParseError> {
    let raw = raw.strip_prefix('?').unwrap_or(raw);
    let mut q = QueryOptions::default();
    let mut seen: Vec<Opt> = Vec::new();
    for segment in raw.split('&') {
        if segment.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
        let name = decode_for(raw_name, raw_name, limits)?;
        let opt = match classify(&name) {
            Some(Opt::Unsupported) => return Err(ParseError::option_not_supported(&name)),
            Some(opt) => opt,
            None if name.starts_with('$') => return Err(ParseError::option_not_supported(&name)),
            None if name.starts_with('@') => {
                let msg = format!("The parameter alias '{}' is not supported.", shorten(&name));
                return Err(ParseError::new(&name, ErrorKind::NotSupported, msg, None));
            }
            None => {
                let value = decode_for(&name, raw_value, limits)?;
                q.custom.push((name, value));
                continue;
            }
        };
        let canonical = opt.canonical();
        if seen.contains(&opt) {
            return Err(ParseError::duplicate(canonical));
        }
        seen.push(opt);
        let value = decode_for(canonical, raw_value, limits)?;
        if value.len() > limits.max_option_length {
            return Err(ParseError::too_long(
                canonical,
                value.len(),
                limits.max_option_length,
            ));
        }
        let ctx = Ctx::top(canonical, limits);
        apply_option(&mut q, opt, &value, 0, value.len(), &ctx, 0)?;
    }
    Ok(q)
}

/// Parse the value `src[start..end]` of option `opt` into `q`.
pub(crate) fn apply_option(
    q: &mut QueryOptions,
    opt: Opt,
    src: &str,
    start: usize,
    end: usize,
    ctx: &Ctx,
    depth: usize,
) -> Result<(), ParseError> {
    match opt {
        Opt::Filter => q.filter = Some(parse_filter_range(src, start, end, ctx, depth)?),
        Opt::OrderBy => q.orderby = Some(parse_orderby_range(src, start, end, ctx)?),
        Opt::Select => q.select = Some(parse_select_range(src, start, end, ctx)?),
        Opt::Expand => q.expand = Some(parse_expand_range(src, start, end, ctx, depth)?),
        Opt::Top => q.top = Some(parse_uint(src, start, end, ctx)?),
        Opt::Skip => q.skip = Some(parse_uint(src, start, end, ctx)?),
        Opt::Count => q.count = Some(parse_bool(src, start, end, ctx)?),
        Opt::SkipToken => q.skiptoken = Some(src.get(start..end).unwrap_or("").to_string()),
        Opt::Unsupported => {
            return Err(ctx.not_supported(start, "query option"));
        }
    }
    Ok(())
}

/// The trimmed value and its start position.
fn trimmed(src: &str, start: usize, end: usize) -> (&str, usize) {
    let raw = src.get(start..end).unwrap_or("");
    let lead = raw.len() - raw.trim_start().len();
    (raw.trim(), start + lead)
}

fn parse_uint(src: &str, start: usize, end: usize, ctx: &Ctx) -> Result<u64, ParseError> {
    ctx.require_value(src, start, end)?;
    let (v, pos) = trimmed(src, start, end);
    let problem = if !v.bytes().all(|b| b.is_ascii_digit()) {
        "expected a non-negative integer"
    } else {
        match v.parse::<u64>() {
            Ok(n) => return Ok(n),
            Err(_) => "the number is too large",
        }
    };
    let msg = format!(
        "The value '{}' is not valid for {}: {problem}.",
        shorten(v),
        ctx.label
    );
    Err(ctx.invalid(pos, msg))
}

fn parse_bool(src: &str, start: usize, end: usize, ctx: &Ctx) -> Result<bool, ParseError> {
    ctx.require_value(src, start, end)?;
    let (v, pos) = trimmed(src, start, end);
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        let msg = format!(
            "The value '{}' is not valid for {}: expected true or false.",
            shorten(v),
            ctx.label
        );
        Err(ctx.invalid(pos, msg))
    }
}
