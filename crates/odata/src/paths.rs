//! Member paths, `$orderby` and `$select`.

use crate::ast::{OrderItem, SelectItem, Span};
use crate::error::{shorten, Ctx, ErrorKind, ParseError};
use crate::filter::call_not_supported;
use crate::lexer::{Lexer, Tok, Token, KEYWORDS};

/// Parse the `/segment` parts of a path whose first identifier was already consumed.
///
/// A segment directly followed by `(` is rejected (lambda `any`/`all` or a bound
/// function), unless `allow_paren_after` is set (used by `$expand` for its options).
pub(crate) fn path_rest(
    lx: &mut Lexer,
    first: String,
    first_span: Span,
    allow_paren_after: bool,
) -> Result<(Vec<String>, Span), ParseError> {
    let mut segments = vec![first];
    let mut span = first_span;
    while lx.peek_is(&Tok::Slash)? {
        lx.next_token()?;
        let t = lx.next_token()?;
        match t.tok {
            Tok::Ident(ref name) if KEYWORDS.contains(&name.as_str()) => {
                return Err(lx.expected(&t, "a property name after '/'"));
            }
            Tok::Ident(name) => {
                if lx.peek_is(&Tok::LParen)? && (!allow_paren_after || is_lambda(&name)) {
                    return Err(if is_lambda(&name) {
                        call_not_supported(lx.ctx, t.span.start, &name)
                    } else {
                        lx.ctx.not_supported(
                            t.span.start,
                            format_args!("function call '{}' on a path", shorten(&name)),
                        )
                    });
                }
                span.end = t.span.end;
                segments.push(name);
            }
            Tok::Qualified(name) => {
                return Err(lx.ctx.not_supported(
                    t.span.start,
                    format_args!("type cast segment '{}'", shorten(&name)),
                ))
            }
            Tok::Dollar(name) => {
                return Err(lx.ctx.not_supported(
                    t.span.start,
                    format_args!("path segment '{}'", shorten(&name)),
                ))
            }
            _ => return Err(lx.expected(&t, "a property name after '/'")),
        }
    }
    Ok((segments, span))
}

fn is_lambda(name: &str) -> bool {
    name == "any" || name == "all"
}

/// Errors shared by `$orderby`, `$select` and `$expand` for a token that should start a path.
pub(crate) fn bad_path_start(lx: &Lexer, t: &Token, what: &str) -> ParseError {
    match &t.tok {
        Tok::Qualified(name) => lx
            .ctx
            .not_supported(t.span.start, format_args!("type cast '{}'", shorten(name))),
        Tok::Dollar(name) => lx
            .ctx
            .not_supported(t.span.start, format_args!("path '{}'", shorten(name))),
        _ => lx.expected(t, what),
    }
}

/// `$orderby`: comma-separated `path [asc|desc]`.
pub(crate) fn parse_orderby_range(
    src: &str,
    start: usize,
    end: usize,
    ctx: &Ctx,
) -> Result<Vec<OrderItem>, ParseError> {
    ctx.require_value(src, start, end)?;
    let mut lx = Lexer::new(src, start, end, ctx);
    let mut items = Vec::new();
    loop {
        let t = lx.next_token()?;
        let (path, mut span) = match t.tok {
            Tok::Ident(ref name) => {
                if lx.peek_is(&Tok::LParen)? {
                    return Err(call_not_supported(ctx, t.span.start, name));
                }
                path_rest(&mut lx, name.clone(), t.span, false)?
            }
            _ => return Err(bad_path_start(&lx, &t, "a property name")),
        };
        let mut descending = false;
        let mut has_direction = false;
        if let Tok::Ident(w) = &lx.peek()?.tok {
            if w == "asc" || w == "desc" {
                descending = w == "desc";
                has_direction = true;
                let d = lx.next_token()?;
                span.end = d.span.end;
            }
        }
        if items.iter().any(|i: &OrderItem| i.path == path) {
            return Err(ctx.invalid(
                span.start,
                format!(
                    "The property '{}' appears more than once in {}; each sort key may be given once.",
                    shorten(&path.join("/")),
                    ctx.label
                ),
            ));
        }
        if items.len() >= ctx.limits.max_orderby_keys {
            return Err(ctx.err(
                ErrorKind::TooLong,
                span.start,
                format!(
                    "{} has more than {} sort keys (the maximum).",
                    ctx.label, ctx.limits.max_orderby_keys
                ),
            ));
        }
        items.push(OrderItem {
            path,
            descending,
            span,
        });
        let t = lx.next_token()?;
        match t.tok {
            Tok::Comma => {}
            Tok::Eof => return Ok(items),
            _ if has_direction => return Err(lx.expected(&t, "',' or end of input")),
            _ => return Err(lx.expected(&t, "'asc', 'desc', ',' or end of input")),
        }
    }
}

/// `$select`: comma-separated paths or `*`.
pub(crate) fn parse_select_range(
    src: &str,
    start: usize,
    end: usize,
    ctx: &Ctx,
) -> Result<Vec<SelectItem>, ParseError> {
    ctx.require_value(src, start, end)?;
    let mut lx = Lexer::new(src, start, end, ctx);
    let mut items = Vec::new();
    loop {
        let t = lx.next_token()?;
        let (path, span) = match t.tok {
            Tok::Star => (vec!["*".to_string()], t.span),
            Tok::Ident(ref name) => path_rest(&mut lx, name.clone(), t.span, false)?,
            _ => return Err(bad_path_start(&lx, &t, "a property name or '*'")),
        };
        items.push(SelectItem { path, span });
        let t = lx.next_token()?;
        match t.tok {
            Tok::Comma => {}
            Tok::Eof => return Ok(items),
            _ => return Err(lx.expected(&t, "',' or end of input")),
        }
    }
}
