//! Error type and the parsing context that builds user-facing messages.

use std::fmt;

use crate::Limits;

/// The category of a [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed text: something else was expected at `position`.
    Syntax,
    /// Valid OData that this server does not implement.
    NotSupported,
    /// A query option given more than once.
    Duplicate,
    /// An option value (or an `in` list) exceeds [`Limits`].
    TooLong,
    /// Nesting (parentheses, `not`, function calls, `$expand`) exceeds [`Limits::max_depth`].
    TooDeep,
    /// Well-formed but unacceptable value (`$top=-1`, integer overflow, wrong argument count, …).
    InvalidValue,
}

/// A positioned, user-facing parse error.
///
/// `message` is a complete sentence and is exactly what `Display` prints.
/// `position` is a byte offset into the decoded value of `option`; for options
/// nested inside `$expand`, `option` is `"$expand"` and the offset is into its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub option: String,
    pub kind: ErrorKind,
    pub message: String,
    pub position: Option<usize>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    pub(crate) fn new(
        option: &str,
        kind: ErrorKind,
        message: String,
        position: Option<usize>,
    ) -> Self {
        ParseError {
            option: option.to_string(),
            kind,
            message,
            position,
        }
    }

    pub(crate) fn option_not_supported(name: &str) -> Self {
        let msg = format!("The query option '{}' is not supported.", shorten(name));
        ParseError::new(name, ErrorKind::NotSupported, msg, None)
    }

    pub(crate) fn duplicate(option: &str) -> Self {
        let msg = format!("The query option '{option}' is specified more than once.");
        ParseError::new(option, ErrorKind::Duplicate, msg, None)
    }

    pub(crate) fn needs_value(option: &str, position: Option<usize>) -> Self {
        let msg = format!("The query option '{option}' needs a value.");
        ParseError::new(option, ErrorKind::InvalidValue, msg, position)
    }

    pub(crate) fn too_long(option: &str, len: usize, max: usize) -> Self {
        let msg =
            format!("The value of {option} is too long ({len} bytes; the maximum is {max} bytes).");
        ParseError::new(option, ErrorKind::TooLong, msg, None)
    }
}

/// Shorten user text for inclusion in a message (at most 40 characters, control characters escaped).
pub(crate) fn shorten(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == 40 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a parser is working: the top-level option (for `ParseError::option`
/// and positions), a label for messages, and the limits.
#[derive(Debug, Clone)]
pub(crate) struct Ctx<'a> {
    pub option: String,
    pub label: String,
    /// Chain of `$expand` item paths we are nested in (empty at top level).
    pub chain: String,
    pub limits: &'a Limits,
}

impl<'a> Ctx<'a> {
    pub fn top(option: &str, limits: &'a Limits) -> Self {
        Ctx {
            option: option.to_string(),
            label: option.to_string(),
            chain: String::new(),
            limits,
        }
    }

    /// Context for the nested option `sub` of the `$expand` item `item`.
    pub fn nested(&self, sub: &str, item: &str) -> Ctx<'a> {
        let chain = if self.chain.is_empty() {
            item.to_string()
        } else {
            format!("{}/{}", self.chain, item)
        };
        Ctx {
            option: self.option.clone(),
            label: format!("{sub} (inside $expand of '{}')", shorten(&chain)),
            chain,
            limits: self.limits,
        }
    }

    pub fn err(&self, kind: ErrorKind, pos: usize, message: String) -> ParseError {
        ParseError::new(&self.option, kind, message, Some(pos))
    }

    /// "Syntax error in $filter at position 18: {detail}."
    pub fn syntax(&self, pos: usize, detail: impl fmt::Display) -> ParseError {
        let msg = format!(
            "Syntax error in {} at position {pos}: {detail}.",
            self.label
        );
        self.err(ErrorKind::Syntax, pos, msg)
    }

    /// "The {what} is not supported in $filter."
    pub fn not_supported(&self, pos: usize, what: impl fmt::Display) -> ParseError {
        let msg = format!("The {what} is not supported in {}.", self.label);
        self.err(ErrorKind::NotSupported, pos, msg)
    }

    pub fn invalid(&self, pos: usize, message: String) -> ParseError {
        self.err(ErrorKind::InvalidValue, pos, message)
    }

    pub fn too_deep(&self, pos: usize) -> ParseError {
        let msg = format!(
            "The {} expression is nested too deeply at position {pos} (the maximum nesting depth is {}).",
            self.label, self.limits.max_depth
        );
        self.err(ErrorKind::TooDeep, pos, msg)
    }

    /// The value must not be blank.
    pub fn require_value(&self, src: &str, start: usize, end: usize) -> Result<(), ParseError> {
        let blank = src.get(start..end).is_none_or(|v| v.trim().is_empty());
        if blank && self.chain.is_empty() {
            return Err(ParseError::needs_value(&self.option, None));
        }
        if blank {
            let msg = format!("The query option {} needs a value.", self.label);
            return Err(ParseError::new(
                &self.option,
                ErrorKind::InvalidValue,
                msg,
                Some(start),
            ));
        }
        Ok(())
    }
}
