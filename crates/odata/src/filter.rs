//! `$filter` expression parser (recursive descent, depth-checked before every recursion).

use crate::ast::{CompareOp, Expr, Function, Literal, Span};
use crate::error::{shorten, Ctx, ErrorKind, ParseError};
use crate::lexer::{Lexer, Tok, Token};
use crate::paths::path_rest;

/// Canonical OData functions this server recognises but does not implement.
const UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "tolower",
    "toupper",
    "trim",
    "length",
    "indexof",
    "substring",
    "concat",
    "matchesPattern",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "fractionalseconds",
    "totalseconds",
    "totaloffsetminutes",
    "date",
    "time",
    "now",
    "maxdatetime",
    "mindatetime",
    "round",
    "floor",
    "ceiling",
    "cast",
    "isof",
    "hassubset",
    "hassubsequence",
    "case",
];

/// Binary operators this server does not implement.
const UNSUPPORTED_OPERATORS: &[&str] = &["add", "sub", "mul", "div", "divby", "mod", "has"];

/// Keywords that can never start a value.
const NOT_A_VALUE: &[&str] = &[
    "eq", "ne", "gt", "ge", "lt", "le", "and", "or", "in", "has", "add", "sub", "mul", "div",
    "divby", "mod",
];

/// The error for a call to anything but the supported functions (also used by `$orderby`).
pub(crate) fn call_not_supported(ctx: &Ctx, pos: usize, name: &str) -> ParseError {
    if name == "any" || name == "all" {
        return ctx.not_supported(pos, format_args!("lambda operator '{name}'"));
    }
    if UNSUPPORTED_FUNCTIONS.contains(&name)
        || name.starts_with("geo.")
        || Function::from_name(name).is_some()
    {
        return ctx.not_supported(pos, format_args!("function '{name}'"));
    }
    let lower = name.to_ascii_lowercase();
    let known = ["startswith", "endswith", "contains"]
        .iter()
        .chain(UNSUPPORTED_FUNCTIONS)
        .find(|f| f.to_ascii_lowercase() == lower);
    let hint = match known {
        Some(f) => format!(" Function names are case-sensitive: did you mean '{f}'?"),
        None => String::new(),
    };
    let msg = format!(
        "The function '{}' is not supported in {} (unknown function).{hint}",
        shorten(name),
        ctx.label
    );
    ctx.err(ErrorKind::NotSupported, pos, msg)
}

#[inline(never)]
fn arg_count_error(ctx: &Ctx, name: &str, pos: usize, n: usize) -> ParseError {
    let msg = format!(
        "The function '{name}' in {} at position {pos} takes exactly 2 arguments, but {n} {} given.",
        ctx.label,
        if n == 1 { "was" } else { "were" }
    );
    ctx.invalid(pos, msg)
}

/// Parse a `$filter` expression occupying `src[start..end]`, already `depth` levels deep.
pub(crate) fn parse_filter_range(
    src: &str,
    start: usize,
    end: usize,
    ctx: &Ctx,
    depth: usize,
) -> Result<Expr, ParseError> {
    ctx.require_value(src, start, end)?;
    let mut p = Parser {
        lx: Lexer::new(src, start, end, ctx),
        depth,
        bare: false,
    };
    let e = p.or_expr()?;
    let t = p.lx.next_token()?;
    if t.tok != Tok::Eof {
        return Err(p.after_expr(&t, &["end of input"]));
    }
    Ok(e)
}

struct Parser<'s, 'c> {
    lx: Lexer<'s, 'c>,
    depth: usize,
    /// The last comparison-level expression had no operator (`$filter=isEncrypted`).
    bare: bool,
}

impl Parser<'_, '_> {
    fn bump(&mut self) -> Result<Token, ParseError> {
        self.lx.next_token()
    }

    fn peek_word(&mut self, word: &str) -> Result<bool, ParseError> {
        Ok(matches!(&self.lx.peek()?.tok, Tok::Ident(w) if w == word))
    }

    /// Check the depth limit before recursing.
    fn enter(&mut self, pos: usize) -> Result<(), ParseError> {
        if self.depth >= self.lx.ctx.limits.max_depth {
            return Err(self.lx.ctx.too_deep(pos));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Error for a token found where an expression could have ended.
    #[inline(never)]
    fn after_expr(&self, t: &Token, closers: &[&str]) -> ParseError {
        if let Tok::Ident(w) = &t.tok {
            if UNSUPPORTED_OPERATORS.contains(&w.as_str()) {
                return self
                    .lx
                    .ctx
                    .not_supported(t.span.start, format_args!("operator '{w}'"));
            }
        }
        let mut items: Vec<&str> = Vec::new();
        if self.bare {
            items.push("an operator such as 'eq'");
        }
        items.extend(["'and'", "'or'"]);
        items.extend(closers);
        let what = match items.split_last() {
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.lx.expected(t, &what)
    }

    /// `or` of `and` chains, in one frame. Each chain becomes a balanced tree
    /// (see [`balanced`]) so tree depth grows logarithmically with its length.
    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = Vec::new();
        loop {
            let mut factors = vec![self.cmp_expr()?];
            while self.peek_word("and")? {
                self.bump()?;
                factors.push(self.cmp_expr()?);
            }
            terms.extend(balanced(factors, Expr::And));
            if !self.peek_word("or")? {
                break;
            }
            self.bump()?;
        }
        balanced(terms, Expr::Or)
            .ok_or_else(|| self.lx.ctx.syntax(self.lx.end(), "expected a value"))
    }

    fn cmp_expr(&mut self) -> Result<Expr, ParseError> {
        let left = self.unary()?;
        self.bare = true;
        let word = match &self.lx.peek()?.tok {
            Tok::Ident(w) => w.clone(),
            _ => return Ok(left),
        };
        if let Some(op) = CompareOp::from_keyword(&word) {
            self.bump()?;
            let right = self.unary()?;
            self.bare = false;
            let span = left.span().to(right.span());
            return Ok(Expr::Compare {
                op,
                left: Box::new(left),
                right: Box::new(right),
                span,
            });
        }
        if word == "in" {
            self.bump()?;
            let e = self.in_list(left)?;
            self.bare = false;
            return Ok(e);
        }
        Ok(left)
    }

    /// `not` prefixes are collected in a loop (no recursion), each counting as one level.
    fn unary(&mut self) -> Result<Expr, ParseError> {
        let mut nots = Vec::new();
        while self.peek_word("not")? {
            let t = self.bump()?;
            self.enter(t.span.start)?;
            nots.push(t.span.start);
        }
        let mut e = self.primary()?;
        while let Some(start) = nots.pop() {
            let span = Span::new(start, e.span().end);
            e = Expr::Not(Box::new(e), span);
            self.leave();
        }
        Ok(e)
    }

    /// Kept small: only grouping and calls recurse; everything else is in `atom`.
    fn primary(&mut self) -> Result<Expr, ParseError> {
        let prev = self.lx.last();
        let t = self.bump()?;
        let callable = matches!(&t.tok, Tok::Ident(w) if keyword_literal(w).is_none()
            && !NOT_A_VALUE.contains(&w.as_str()));
        if callable && self.lx.peek_is(&Tok::LParen)? {
            if let Tok::Ident(name) = t.tok {
                return self.call(name, t.span);
            }
        }
        if t.tok == Tok::LParen {
            return self.group(t.span.start);
        }
        self.atom(t, prev)
    }

    fn group(&mut self, open: usize) -> Result<Expr, ParseError> {
        self.enter(open)?;
        let e = self.or_expr()?;
        let close = self.bump()?;
        if close.tok != Tok::RParen {
            return Err(self.unclosed(&close, open));
        }
        self.leave();
        Ok(e)
    }

    #[inline(never)]
    fn unclosed(&self, close: &Token, open: usize) -> ParseError {
        let closer = format!("')' to close the '(' at position {open}");
        self.after_expr(close, &[&closer])
    }

    /// A value that is not a group or a call: literal or path (or an error).
    #[inline(never)]
    fn atom(&mut self, t: Token, prev: Option<Span>) -> Result<Expr, ParseError> {
        let what = match prev {
            Some(s) => format!("a value after '{}'", shorten(self.lx.text(s.start, s.end))),
            None => "a value".to_string(),
        };
        match t.tok {
            Tok::Lit(lit) => Ok(Expr::Literal(lit, t.span)),
            Tok::Ident(ref w) => {
                if let Some(lit) = keyword_literal(w) {
                    return Ok(Expr::Literal(lit, t.span));
                }
                if NOT_A_VALUE.contains(&w.as_str()) {
                    return Err(self.lx.expected(&t, &what));
                }
                let (path, span) = path_rest(&mut self.lx, w.clone(), t.span, false)?;
                Ok(Expr::Path(path, span))
            }
            Tok::Qualified(ref name) => {
                if self.lx.peek_is(&Tok::LParen)? {
                    return Err(call_not_supported(self.lx.ctx, t.span.start, name));
                }
                Err(self
                    .lx
                    .ctx
                    .not_supported(t.span.start, format_args!("type cast '{}'", shorten(name))))
            }
            _ => Err(self.lx.expected(&t, &what)),
        }
    }

    fn call(&mut self, name: String, name_span: Span) -> Result<Expr, ParseError> {
        let ctx = self.lx.ctx;
        let Some(func) = Function::from_name(&name) else {
            return Err(call_not_supported(ctx, name_span.start, &name));
        };
        let open = self.bump()?;
        self.enter(open.span.start)?;
        let mut args = Vec::new();
        let close = if self.lx.peek_is(&Tok::RParen)? {
            self.bump()?
        } else {
            loop {
                args.push(self.or_expr()?);
                let t = self.bump()?;
                match t.tok {
                    Tok::Comma => {}
                    Tok::RParen => break t,
                    _ => return Err(self.after_expr(&t, &["','", "')'"])),
                }
            }
        };
        self.leave();
        if args.len() != 2 {
            return Err(arg_count_error(ctx, &name, name_span.start, args.len()));
        }
        Ok(Expr::Call {
            func,
            args,
            span: name_span.to(close.span),
        })
    }

    fn in_list(&mut self, left: Expr) -> Result<Expr, ParseError> {
        let ctx = self.lx.ctx;
        let open = self.bump()?;
        if open.tok != Tok::LParen {
            return Err(self.lx.expected(&open, "'(' after 'in'"));
        }
        let mut list = Vec::new();
        let close = loop {
            let t = self.bump()?;
            let item = match t.tok {
                Tok::Lit(ref lit) => Expr::Literal(lit.clone(), t.span),
                Tok::Ident(ref w) if keyword_literal(w).is_some() => {
                    Expr::Literal(keyword_literal(w).unwrap_or(Literal::Null), t.span)
                }
                Tok::RParen if list.is_empty() => {
                    return Err(ctx.syntax(
                        t.span.start,
                        "the 'in' list is empty; expected at least one value",
                    ))
                }
                _ => return Err(self.lx.expected(&t, "a literal value in the 'in' list")),
            };
            if list.len() >= ctx.limits.max_in_items {
                let msg = format!(
                    "The 'in' list at position {} in {} has more than {} items.",
                    open.span.start, ctx.label, ctx.limits.max_in_items
                );
                return Err(ctx.err(ErrorKind::TooLong, t.span.start, msg));
            }
            list.push(item);
            let t = self.bump()?;
            match t.tok {
                Tok::Comma => {}
                Tok::RParen => break t,
                _ => return Err(self.lx.expected(&t, "')' or ','")),
            }
        };
        let span = left.span().to(close.span);
        Ok(Expr::In {
            expr: Box::new(left),
            list,
            span,
        })
    }
}

/// Combine `items` (in source order) with `make` into a balanced tree.
///
/// Up to three items this is the usual left-associative shape
/// (`(a and b) and c`); longer chains split in the middle, which keeps the
/// left-to-right order and the meaning (both operators are associative) while
/// bounding the depth of the tree for consumers that recurse over it.
fn balanced(mut items: Vec<Expr>, make: fn(Box<Expr>, Box<Expr>, Span) -> Expr) -> Option<Expr> {
    let n = items.len();
    if n <= 1 {
        return items.pop();
    }
    let right = items.split_off(n.div_ceil(2));
    let left = balanced(items, make)?;
    let right = balanced(right, make)?;
    let span = left.span().to(right.span());
    Some(make(Box::new(left), Box::new(right), span))
}

fn keyword_literal(word: &str) -> Option<Literal> {
    match word {
        "true" => Some(Literal::Bool(true)),
        "false" => Some(Literal::Bool(false)),
        "null" => Some(Literal::Null),
        _ => None,
    }
}
