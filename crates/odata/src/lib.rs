//! OData system query options: raw URL query string in, syntax tree or positioned error out.
//!
//! This crate knows nothing about entities, SQL or HTTP; binding names to a model happens elsewhere.
//!
//! # Query string
//!
//! ```text
//! query    = [ param *( "&" param ) ]            ; empty params ("a&&b", trailing "&") are skipped
//! param    = name [ "=" value ]                  ; split on the first "=", then %XX and "+" are decoded
//! name     = [ "$" ] option                      ; ASCII case-insensitive: $filter, $Filter, filter
//! option   = "filter" / "orderby" / "select" / "expand" / "top" / "skip" / "count" / "skiptoken"
//! ```
//!
//! A known option given twice (with or without `$`) is a Duplicate error.
//! `$search`, `$apply`, `$compute`, `$format`, `$deltatoken`, `$levels`, `$index`, `$schemaversion` and any other `$name` are NotSupported.
//! Parameter aliases (`@p=…`) are NotSupported.
//! Other names without `$` are kept verbatim in `QueryOptions::custom`.
//! An empty value for `$filter`, `$orderby`, `$select`, `$expand`, `$top`, `$skip` or `$count` is InvalidValue.
//! A decoded value longer than `Limits::max_option_length` is TooLong.
//!
//! # Values
//!
//! ```text
//! top / skip = 1*DIGIT                           ; fits in u64
//! count      = "true" / "false"                  ; case-insensitive
//! skiptoken  = *CHAR                             ; opaque, passed through
//! select     = selitem *( "," selitem )          ; selitem = path / "*"
//! orderby    = orditem *( "," orditem )          ; orditem = path [ ws ( "asc" / "desc" ) ]
//! expand     = expitem *( "," expitem )
//! expitem    = path [ "(" nested *( ";" nested ) ")" ]
//! nested     = [ "$" ] ( "select" / "filter" / "orderby" / "top" / "skip" / "count" / "expand" ) "=" value
//! path       = ident *( "/" ident )              ; ident = [A-Za-z_][A-Za-z0-9_]*
//! ```
//!
//! Whitespace around commas is allowed. An `$orderby` path may appear once (a repeat is
//! InvalidValue); more than `Limits::max_orderby_keys` items is TooLong.
//! `$expand=*`, `$levels`, `$ref`/`$count` segments and type casts are NotSupported.
//! Nested option values may contain parentheses and quoted strings with `;` or `)`.
//!
//! # $filter
//!
//! ```text
//! expr     = andExpr *( "or" andExpr )
//! andExpr  = cmpExpr *( "and" cmpExpr )
//! cmpExpr  = unary [ cmpOp unary / "in" "(" literal *( "," literal ) ")" ]
//! cmpOp    = "eq" / "ne" / "gt" / "ge" / "lt" / "le"
//! unary    = "not" unary / primary
//! primary  = "(" expr ")" / literal / call / path
//! call     = ( "startswith" / "endswith" / "contains" ) "(" expr "," expr ")"
//! literal  = "null" / "true" / "false" / number / string / date / datetime / guid / enum
//! number   = [ "-" ] 1*DIGIT [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
//! string   = "'" *( "''" / non-quote ) "'"
//! date     = YYYY "-" MM "-" DD
//! datetime = date "T" HH ":" MM [ ":" SS [ "." 1*DIGIT ] ] ( "Z" / ( "+" / "-" / " " ) HH ":" MM )
//! guid     = 8HEX "-" 4HEX "-" 4HEX "-" 4HEX "-" 12HEX
//! enum     = qualifiedName string                ; microsoft.graph.runState'fail'
//! ```
//!
//! Precedence is `not` > comparison and `in` > `and` > `or`, and parentheses group.
//! Keywords are lowercase and case-sensitive; whitespace is spaces, tabs or line breaks.
//! A space in place of the `+` of a date-time offset is accepted, because `+` decodes to a space in URLs.
//! A bare path or literal is a valid filter, and `Path eq Path` is valid; the binder decides.
//! Comparisons do not chain: `a eq b eq c` is a Syntax error.
//! Chains of `and` (or `or`) longer than three operands become balanced trees in source order, so tree depth stays logarithmic.
//! Integers outside the i64 range, impossible dates and wrong argument counts are InvalidValue.
//! Other OData functions, arithmetic operators, `has`, lambdas, `$it`/`$root`, aliases and type casts are NotSupported.
//! Nesting of parentheses, `not`, function calls and `$expand` options is limited by `Limits::max_depth` (TooDeep).
//! An `in` list longer than `Limits::max_in_items` is TooLong.
//!
//! # Positions
//!
//! Positions and spans are byte offsets into the decoded value of the top-level option.
//! For options nested in `$expand` they are offsets into the `$expand` value, and `ParseError::option` is `"$expand"`.

mod ast;
mod error;
mod expand;
mod filter;
mod lexer;
mod literal;
mod paths;
mod query;

pub use ast::{
    CompareOp, ExpandItem, Expr, Function, Literal, OrderItem, QueryOptions, SelectItem, Span,
};
pub use error::{ErrorKind, ParseError};

use error::Ctx;

/// Resource limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Maximum length in bytes of one decoded option value (default 8192).
    pub max_option_length: usize,
    /// Maximum nesting of parentheses, `not`, function calls and `$expand` options (default 32).
    pub max_depth: usize,
    /// Maximum number of items in an `in (…)` list (default 1000).
    pub max_in_items: usize,
    /// Maximum number of keys in one `$orderby`, top-level or nested (default 8).
    pub max_orderby_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_option_length: 8192,
            max_depth: 32,
            max_in_items: 1000,
            max_orderby_keys: 8,
        }
    }
}

/// Parse a raw (still percent-encoded) URL query string, without the leading '?'.
pub fn parse_query(raw: &str, limits: &Limits) -> Result<QueryOptions, ParseError> {
    query::parse_query_impl(raw, limits)
}

fn check_len(option: &str, text: &str, limits: &Limits) -> Result<(), ParseError> {
    if text.len() > limits.max_option_length {
        return Err(ParseError::too_long(
            option,
            text.len(),
            limits.max_option_length,
        ));
    }
    Ok(())
}

/// Parse one `$filter` value (already decoded).
pub fn parse_filter(text: &str, limits: &Limits) -> Result<Expr, ParseError> {
    check_len("$filter", text, limits)?;
    let ctx = Ctx::top("$filter", limits);
    filter::parse_filter_range(text, 0, text.len(), &ctx, 0)
}

/// Parse one `$orderby` value (already decoded).
pub fn parse_orderby(text: &str, limits: &Limits) -> Result<Vec<OrderItem>, ParseError> {
    check_len("$orderby", text, limits)?;
    let ctx = Ctx::top("$orderby", limits);
    paths::parse_orderby_range(text, 0, text.len(), &ctx)
}

/// Parse one `$select` value (already decoded).
pub fn parse_select(text: &str, limits: &Limits) -> Result<Vec<SelectItem>, ParseError> {
    check_len("$select", text, limits)?;
    let ctx = Ctx::top("$select", limits);
    paths::parse_select_range(text, 0, text.len(), &ctx)
}

/// Parse one `$expand` value (already decoded), including nested options.
pub fn parse_expand(text: &str, limits: &Limits) -> Result<Vec<ExpandItem>, ParseError> {
    check_len("$expand", text, limits)?;
    let ctx = Ctx::top("$expand", limits);
    expand::parse_expand_range(text, 0, text.len(), &ctx, 0)
}
