//! The lexer of rules: characters → [`Token`]s with their character positions (quoted strings
//! unescaped, words, numbers, brackets), shared by both dialects.

use std::borrow::Cow;

use super::{error, RuleSyntaxError};

#[derive(Debug, Clone)]
pub(super) enum Tok<'a> {
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
    /// A quoted string, unescaped.
    Str(String),
    /// `device.displayName`, `-eq`, `and`, `true`, `$null`, `_`, …
    Word(&'a str),
    /// An unquoted number or version (`10.0.22631.3235`).
    Num(&'a str),
    End,
}

#[derive(Debug, Clone)]
pub(super) struct Token<'a> {
    pub(super) tok: Tok<'a>,
    /// 0-based character offset.
    pub(super) pos: usize,
}

impl Token<'_> {
    pub(super) fn describe(&self) -> String {
        match &self.tok {
            Tok::Open => "'('".to_owned(),
            Tok::Close => "')'".to_owned(),
            Tok::OpenList => "'['".to_owned(),
            Tok::CloseList => "']'".to_owned(),
            Tok::Comma => "','".to_owned(),
            Tok::Str(s) => format!("the string \"{}\"", shorten(s)),
            Tok::Word(w) | Tok::Num(w) => format!("'{}'", shorten(w)),
            Tok::End => "the end of the rule".to_owned(),
        }
    }
}

/// At most 64 characters of user text in a message.
pub(super) fn shorten(s: &str) -> Cow<'_, str> {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
    }
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'
}

pub(super) fn lex(text: &str) -> Result<Vec<Token<'_>>, RuleSyntaxError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&(_, c)) = chars.get(i) {
        let pos = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).map(|&(_, n)| n);
        let tok = match c {
            '(' => Tok::Open,
            ')' => Tok::Close,
            '[' => Tok::OpenList,
            ']' => Tok::CloseList,
            ',' => Tok::Comma,
            '"' | '\'' => {
                let (value, end) = lex_string(&chars, i, c)?;
                tokens.push(Token {
                    tok: Tok::Str(value),
                    pos,
                });
                i = end;
                continue;
            }
            c if is_word_start(c) || (c == '-' && next.is_some_and(is_word_start)) => {
                let mut end = i + 1;
                while chars.get(end).is_some_and(|&(_, c)| is_word_char(c)) {
                    end += 1;
                }
                tokens.push(Token {
                    tok: Tok::Word(&text[byte_at(i)..byte_at(end)]),
                    pos,
                });
                i = end;
                continue;
            }
            c if c.is_ascii_digit() => {
                let mut end = i + 1;
                while chars
                    .get(end)
                    .is_some_and(|&(_, c)| c.is_ascii_alphanumeric() || c == '.')
                {
                    end += 1;
                }
                tokens.push(Token {
                    tok: Tok::Num(&text[byte_at(i)..byte_at(end)]),
                    pos,
                });
                i = end;
                continue;
            }
            _ => {
                return Err(error(
                    pos,
                    format!(
                        "Unexpected character '{}' at position {pos}.",
                        c.escape_debug()
                    ),
                ))
            }
        };
        tokens.push(Token { tok, pos });
        i += 1;
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: chars.len(),
    });
    Ok(tokens)
}

/// A string quoted with `quote` starting at character `start`: a doubled quote or a backtick
/// before the quote (or before a backtick) stands for that character. Returns the value and the
/// index after the closing quote.
fn lex_string(
    chars: &[(usize, char)],
    start: usize,
    quote: char,
) -> Result<(String, usize), RuleSyntaxError> {
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        let Some(&(_, c)) = chars.get(i) else {
            return Err(error(
                start,
                format!("The string that starts at position {start} has no closing quote."),
            ));
        };
        let next = chars.get(i + 1).map(|&(_, n)| n);
        if c == '`' && (next == Some(quote) || next == Some('`')) {
            value.extend(next);
            i += 2;
        } else if c == quote && next == Some(quote) {
            value.push(quote);
            i += 2;
        } else if c == quote {
            return Ok((value, i + 1));
        } else {
            value.push(c);
            i += 1;
        }
    }
}
