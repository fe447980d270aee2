//! Tokenizer shared by `$filter`, `$orderby`, `$select` and `$expand`.
//!
//! The lexer works on a byte range of a larger string so that positions in
//! nested `$expand` options stay relative to the top-level option value.

use crate::ast::{Literal, Span};
use crate::error::{shorten, Ctx, ParseError};
use crate::literal;

/// Words that are operators or keywords wherever they appear.
pub(crate) const KEYWORDS: &[&str] = &[
    "eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not", "in", "has", "add", "sub", "mul",
    "div", "divby", "mod", "asc", "desc", "true", "false", "null",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// `[A-Za-z_][A-Za-z0-9_]*`
    Ident(String),
    /// Dotted name such as `microsoft.graph.device` or `geo.distance`.
    Qualified(String),
    /// `$it`, `$count`, … (text includes the `$`).
    Dollar(String),
    /// `@p` parameter alias (text includes the `@`).
    Alias(String),
    Lit(Literal),
    LParen,
    RParen,
    Comma,
    Slash,
    Colon,
    Star,
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Span,
}

pub(crate) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

pub(crate) fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) struct Lexer<'s, 'c> {
    pub src: &'s str,
    pos: usize,
    end: usize,
    peeked: Option<Token>,
    last: Option<Span>,
    pub ctx: &'c Ctx<'c>,
}

impl<'s, 'c> Lexer<'s, 'c> {
    pub fn new(src: &'s str, start: usize, end: usize, ctx: &'c Ctx<'c>) -> Self {
        let end = end.min(src.len());
        Lexer {
            src,
            pos: start.min(end),
            end,
            peeked: None,
            last: None,
            ctx,
        }
    }

    /// Byte at `i`, or `None` at/after the end of the range.
    pub fn at(&self, i: usize) -> Option<u8> {
        if i < self.end {
            self.src.as_bytes().get(i).copied()
        } else {
            None
        }
    }

    /// Text of a byte range (empty if the range is not valid).
    pub fn text(&self, start: usize, end: usize) -> &'s str {
        self.src.get(start..end).unwrap_or("")
    }

    pub fn end(&self) -> usize {
        self.end
    }

    pub fn peek(&mut self) -> Result<&Token, ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex()?);
        }
        let end = self.end;
        Ok(self.peeked.get_or_insert_with(|| Token {
            tok: Tok::Eof,
            span: Span::new(end, end),
        }))
    }

    pub fn peek_is(&mut self, tok: &Tok) -> Result<bool, ParseError> {
        Ok(&self.peek()?.tok == tok)
    }

    pub fn next_token(&mut self) -> Result<Token, ParseError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lex()?,
        };
        self.last = Some(t.span);
        Ok(t)
    }

    /// Span of the most recently consumed token.
    pub fn last(&self) -> Option<Span> {
        self.last
    }

    /// Continue lexing at byte `pos` (used after `$expand` consumed a parenthesised part by hand).
    pub fn resume_at(&mut self, pos: usize) {
        self.peeked = None;
        self.pos = pos.min(self.end);
    }

    /// A description of a token for "found …" messages.
    pub fn describe(&self, t: &Token) -> String {
        let text = self.text(t.span.start, t.span.end);
        match &t.tok {
            Tok::Eof => "end of input".to_string(),
            Tok::Lit(Literal::String(_)) => format!("the string {}", shorten(text)),
            _ => format!("'{}'", shorten(text)),
        }
    }

    /// "expected {what}, found …", turning aliases and `$` names into NotSupported errors.
    pub fn expected(&self, t: &Token, what: &str) -> ParseError {
        match &t.tok {
            Tok::Alias(name) => self.ctx.not_supported(
                t.span.start,
                format_args!("parameter alias '{}'", shorten(name)),
            ),
            Tok::Dollar(name) => self
                .ctx
                .not_supported(t.span.start, format_args!("expression '{}'", shorten(name))),
            _ => {
                let mut detail = format!("expected {what}, found {}", self.describe(t));
                if let Tok::Ident(w) = &t.tok {
                    let lower = w.to_ascii_lowercase();
                    if *w != lower && KEYWORDS.contains(&lower.as_str()) {
                        detail.push_str(
                            " (operators and keywords such as 'eq', 'and', 'desc' are lowercase)",
                        );
                    }
                }
                self.ctx.syntax(t.span.start, detail)
            }
        }
    }

    fn tok(&mut self, tok: Tok, start: usize, end: usize) -> Token {
        self.pos = end;
        Token {
            tok,
            span: Span::new(start, end),
        }
    }

    /// End of the identifier starting at `from` (== `from` if there is none).
    pub fn ident_end(&self, from: usize) -> usize {
        if !self.at(from).is_some_and(is_ident_start) {
            return from;
        }
        let mut i = from + 1;
        while self.at(i).is_some_and(is_ident_char) {
            i += 1;
        }
        i
    }

    fn lex(&mut self) -> Result<Token, ParseError> {
        while self.at(self.pos).is_some_and(is_space) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(c) = self.at(start) else {
            return Ok(self.tok(Tok::Eof, start, start));
        };
        let single = match c {
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b',' => Some(Tok::Comma),
            b'/' => Some(Tok::Slash),
            b':' => Some(Tok::Colon),
            b'*' => Some(Tok::Star),
            _ => None,
        };
        if let Some(tok) = single {
            return Ok(self.tok(tok, start, start + 1));
        }
        match c {
            b'\'' => {
                let (s, end) = self.string_body(start)?;
                Ok(self.tok(Tok::Lit(Literal::String(s)), start, end))
            }
            b'$' | b'@' => {
                let end = self.ident_end(start + 1);
                if end == start + 1 {
                    return Err(self.unexpected(start));
                }
                let name = self.text(start, end).to_string();
                let tok = if c == b'$' {
                    Tok::Dollar(name)
                } else {
                    Tok::Alias(name)
                };
                Ok(self.tok(tok, start, end))
            }
            b'-' if !self.at(start + 1).is_some_and(|b| b.is_ascii_digit()) => {
                Err(self.ctx.not_supported(start, "negation operator '-'"))
            }
            _ if c.is_ascii_hexdigit() && literal::is_guid_at(self, start) => {
                let text = self.text(start, start + 36).to_string();
                Ok(self.tok(Tok::Lit(Literal::Guid(text)), start, start + 36))
            }
            b'-' | b'0'..=b'9' => {
                let (lit, end) = literal::number_or_date(self, start)?;
                Ok(self.tok(Tok::Lit(lit), start, end))
            }
            _ if is_ident_start(c) => self.word(start),
            _ => Err(self.unexpected(start)),
        }
    }

    /// Identifier, qualified name, or type-prefixed literal (`microsoft.graph.runState'fail'`).
    fn word(&mut self, start: usize) -> Result<Token, ParseError> {
        let mut end = self.ident_end(start);
        let mut qualified = false;
        while self.at(end) == Some(b'.') && self.at(end + 1).is_some_and(is_ident_start) {
            end = self.ident_end(end + 1);
            qualified = true;
        }
        let text = self.text(start, end).to_string();
        if !qualified && KEYWORDS.contains(&text.as_str()) {
            return Ok(self.tok(Tok::Ident(text), start, end));
        }
        match self.at(end) {
            Some(b'\'') if qualified => {
                let (member, lit_end) = self.string_body(end)?;
                let lit = Literal::Enum {
                    type_name: text,
                    member,
                };
                Ok(self.tok(Tok::Lit(lit), start, lit_end))
            }
            Some(b'\'') => {
                let lower = text.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "duration" | "binary" | "geography" | "geometry"
                ) {
                    return Err(self
                        .ctx
                        .not_supported(start, format_args!("{lower} literal")));
                }
                Err(self.ctx.syntax(
                    start,
                    format_args!(
                        "'{}' directly followed by a quote is not a valid literal; write enum values as 'member' or with a qualified type name such as microsoft.graph.runState'fail'",
                        shorten(&text)
                    ),
                ))
            }
            Some(b'-') | Some(b'.') => Err(literal::malformed(self, start)),
            _ => {
                let tok = if qualified {
                    Tok::Qualified(text)
                } else {
                    Tok::Ident(text)
                };
                Ok(self.tok(tok, start, end))
            }
        }
    }

    /// Parse a quoted string starting at the quote at `start`; returns the
    /// unescaped text and the position after the closing quote.
    pub fn string_body(&self, start: usize) -> Result<(String, usize), ParseError> {
        let mut out = String::new();
        let mut seg = start + 1;
        let mut i = start + 1;
        loop {
            match self.at(i) {
                None => {
                    return Err(self.ctx.syntax(
                        start,
                        "unterminated string literal; expected a closing quote (')",
                    ))
                }
                Some(b'\'') => {
                    out.push_str(self.text(seg, i));
                    if self.at(i + 1) == Some(b'\'') {
                        out.push('\'');
                        i += 2;
                        seg = i;
                    } else {
                        return Ok((out, i + 1));
                    }
                }
                Some(_) => i += 1,
            }
        }
    }

    fn unexpected(&self, pos: usize) -> ParseError {
        let c = self
            .src
            .get(pos..)
            .and_then(|s| s.chars().next())
            .unwrap_or('?');
        let shown = shorten(c.encode_utf8(&mut [0u8; 4]));
        let hint = match c {
            '"' => "; string literals are enclosed in single quotes",
            '=' | '<' | '>' | '!' | '&' | '|' => {
                "; use the operators eq, ne, gt, ge, lt, le, and, or, not"
            }
            '[' | '{' => "; JSON array and object literals are not supported",
            _ => "",
        };
        self.ctx
            .syntax(pos, format_args!("unexpected character '{shown}'{hint}"))
    }
}
