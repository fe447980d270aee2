//! `$expand` with nested options: `managedDevice($select=deviceName;$filter=…)`.

use crate::ast::{ExpandItem, QueryOptions};
use crate::error::{shorten, Ctx, ErrorKind, ParseError};
use crate::lexer::{Lexer, Tok};
use crate::paths::{bad_path_start, path_rest};
use crate::query::{apply_option, classify, Opt};

/// Parse an `$expand` value occupying `src[start..end]`, already `depth` levels deep.
pub(crate) fn parse_expand_range(
    src: &str,
    start: usize,
    end: usize,
    ctx: &Ctx,
    depth: usize,
) -> Result<Vec<ExpandItem>, ParseError> {
    ctx.require_value(src, start, end)?;
    let mut lx = Lexer::new(src, start, end, ctx);
    let mut items = Vec::new();
    loop {
        let t = lx.next_token()?;
        let (path, mut span) = match t.tok {
            Tok::Ident(ref name) => path_rest(&mut lx, name.clone(), t.span, true)?,
            Tok::Star => return Err(ctx.not_supported(t.span.start, "wildcard '*'")),
            _ => return Err(bad_path_start(&lx, &t, "a navigation property name")),
        };
        let mut options = QueryOptions::default();
        if lx.peek_is(&Tok::LParen)? {
            let open = lx.next_token()?;
            if depth >= ctx.limits.max_depth {
                return Err(ctx.too_deep(open.span.start));
            }
            let (segments, close) =
                split_options(src, open.span.end, lx.end(), ctx, open.span.start)?;
            let item = path.join("/");
            options = item_options(src, &segments, ctx, &item, depth + 1, open.span.start)?;
            span.end = close + 1;
            lx.resume_at(close + 1);
        }
        items.push(ExpandItem {
            path,
            span,
            options,
        });
        let t = lx.next_token()?;
        match t.tok {
            Tok::Comma => {}
            Tok::Eof => return Ok(items),
            _ => return Err(lx.expected(&t, "',' or end of input")),
        }
    }
}

/// Find the `)` matching the `(` before `from`, splitting the text in between
/// on top-level `;`. Quoted strings (with `''` escapes) and nested parentheses
/// are skipped. Returns the segment ranges and the position of the `)`.
fn split_options(
    src: &str,
    from: usize,
    end: usize,
    ctx: &Ctx,
    open_pos: usize,
) -> Result<(Vec<(usize, usize)>, usize), ParseError> {
    let bytes = src.as_bytes();
    let mut segments = Vec::new();
    let mut seg_start = from;
    let mut depth = 0usize;
    let mut quote: Option<usize> = None;
    let mut i = from;
    while i < end {
        let Some(&c) = bytes.get(i) else { break };
        if quote.is_some() {
            // `''` closes and immediately reopens, which handles the escape.
            if c == b'\'' {
                quote = None;
            }
        } else {
            match c {
                b'\'' => quote = Some(i),
                b'(' => depth += 1,
                b')' if depth == 0 => {
                    segments.push((seg_start, i));
                    return Ok((segments, i));
                }
                b')' => depth -= 1,
                b';' if depth == 0 => {
                    segments.push((seg_start, i));
                    seg_start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    if let Some(q) = quote {
        return Err(ctx.syntax(
            q,
            "unterminated string literal; expected a closing quote (')",
        ));
    }
    Err(ctx.syntax(
        end,
        format_args!("expected ')' to close the '(' at position {open_pos}, found end of input"),
    ))
}

/// Parse `name=value` segments of one expand item.
fn item_options(
    src: &str,
    segments: &[(usize, usize)],
    ctx: &Ctx,
    item: &str,
    depth: usize,
    open_pos: usize,
) -> Result<QueryOptions, ParseError> {
    let mut q = QueryOptions::default();
    let mut seen: Vec<Opt> = Vec::new();
    let chain = ctx.nested("$expand", item).chain;
    for &(s, e) in segments {
        let seg = src.get(s..e).unwrap_or("");
        if seg.trim().is_empty() {
            continue;
        }
        let name_start = s + (seg.len() - seg.trim_start().len());
        let Some(eq) = seg.find('=') else {
            return Err(ctx.syntax(
                name_start,
                format_args!(
                    "expected '=' after the option name '{}'",
                    shorten(seg.trim())
                ),
            ));
        };
        let name = seg.get(..eq).unwrap_or("").trim();
        if name.is_empty() {
            return Err(ctx.syntax(name_start, "expected a query option name before '='"));
        }
        let opt = match classify(name) {
            Some(o @ (Opt::Filter | Opt::OrderBy | Opt::Select | Opt::Expand))
            | Some(o @ (Opt::Top | Opt::Skip | Opt::Count)) => o,
            _ => {
                let msg = format!(
                    "The query option '{}' is not supported inside $expand (in the options of '{}').",
                    shorten(name),
                    shorten(&chain)
                );
                return Err(ctx.err(ErrorKind::NotSupported, name_start, msg));
            }
        };
        if seen.contains(&opt) {
            let msg = format!(
                "The query option '{}' is specified more than once inside $expand (in the options of '{}').",
                opt.canonical(),
                shorten(&chain)
            );
            return Err(ctx.err(ErrorKind::Duplicate, name_start, msg));
        }
        seen.push(opt);
        let nctx = ctx.nested(opt.canonical(), item);
        apply_option(&mut q, opt, src, s + eq + 1, e, &nctx, depth)?;
    }
    if seen.is_empty() {
        return Err(ctx.syntax(
            open_pos,
            "expected query options such as $select=… inside the parentheses",
        ));
    }
    Ok(q)
}
