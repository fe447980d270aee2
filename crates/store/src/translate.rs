//! Translation of model-bound values, filters and orderings into parameterized SQL that means the
//! same on SQLite and PostgreSQL. Client values become bound parameters (`$n`, understood by both
//! databases); identifiers come only from the static model.
//!
//! Filters use two-valued logic as OData does: every comparison is written so that it is TRUE or
//! FALSE, never SQL NULL, which keeps `not (...)` exact for rows with null properties.

use remediate_domain::model::{Kind, Property};
use remediate_domain::query::{After, Column, CompareOp, Filter, SortKey, StringFunction};
use remediate_domain::{Instant, Value};

use crate::db::{DbError, Row};

/// A bound parameter with its SQL type (PostgreSQL needs typed NULLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// SQL text with its parameters.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Append a placeholder for `arg`.
    pub fn arg(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        let n = self.args.len();
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }
}

/// Does this property have a lower-cased shadow column (`<name>_lc`)?
pub fn has_shadow(p: &Property) -> bool {
    matches!(p.kind, Kind::String) && p.filterable && p.name != "id"
}

/// The lower case used for case-insensitive comparison, identical for stored values and literals.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// The storage form of a value: one parameter, plus the shadow parameter for shadowed strings.
pub fn value_args(p: &Property, v: &Value) -> Vec<Arg> {
    let main = match (p.kind, v) {
        (Kind::String, Value::Str(s)) => Arg::Text(Some(s.clone())),
        (Kind::String | Kind::StringCollection | Kind::Complex(_), Value::Null) => Arg::Text(None),
        (Kind::StringCollection, Value::StrList(items)) => Arg::Text(Some(
            serde_json::to_string(items).unwrap_or_else(|_| "[]".into()),
        )),
        (Kind::Complex(_), Value::Json(text)) => Arg::Text(Some(text.clone())),
        (Kind::Binary, Value::Bin(b)) => Arg::Bytes(Some(b.clone())),
        (Kind::Binary, _) => Arg::Bytes(None),
        (_, Value::Bool(b)) => Arg::Int(Some(i64::from(*b))),
        (_, Value::Int(i) | Value::Enum(i)) => Arg::Int(Some(*i)),
        (_, Value::Time(t)) => Arg::Int(Some(t.ticks())),
        (Kind::String, _) => Arg::Text(None),
        _ => Arg::Int(None),
    };
    if has_shadow(p) {
        let shadow = match v {
            Value::Str(s) => Arg::Text(Some(fold(s))),
            _ => Arg::Text(None),
        };
        vec![main, shadow]
    } else {
        vec![main]
    }
}

/// Column names written for a property (main and shadow).
pub fn column_names(p: &Property) -> Vec<String> {
    if has_shadow(p) {
        vec![format!("\"{}\"", p.name), format!("\"{}_lc\"", p.name)]
    } else {
        vec![format!("\"{}\"", p.name)]
    }
}

/// Decode a stored column into a domain value (moving text and bytes out of the row).
pub fn decode(p: &Property, row: &mut Row, index: usize) -> Result<Value, DbError> {
    let value = match p.kind {
        Kind::String => row.take_text(index)?.map_or(Value::Null, Value::Str),
        Kind::Binary => row.take_blob(index)?.map_or(Value::Null, Value::Bin),
        Kind::Boolean => row.int(index)?.map_or(Value::Null, |i| Value::Bool(i != 0)),
        Kind::Int32 | Kind::Int64 => row.int(index)?.map_or(Value::Null, Value::Int),
        Kind::Enum(_) => row.int(index)?.map_or(Value::Null, Value::Enum),
        Kind::DateTimeOffset => match row.int(index)? {
            None => Value::Null,
            Some(t) => Value::Time(
                Instant::from_ticks(t)
                    .ok_or_else(|| DbError::other(format!("{}: bad time {t}", p.name)))?,
            ),
        },
        Kind::StringCollection => match row.take_text(index)? {
            None => Value::Null,
            Some(text) => Value::StrList(
                serde_json::from_str(&text)
                    .map_err(|e| DbError::other(format!("{}: {e}", p.name)))?,
            ),
        },
        Kind::Complex(_) => row.take_text(index)?.map_or(Value::Null, Value::Json),
    };
    Ok(value)
}

/// Is this property stored as text (as opposed to an integer)?
fn is_text(p: &Property) -> bool {
    matches!(
        p.kind,
        Kind::String | Kind::StringCollection | Kind::Complex(_)
    )
}

/// The SQL expressions a sort on `column` uses: for case-insensitive strings the folded value,
/// then the exact value (so ties between case variants are still ordered).
pub fn sort_exprs(column: &Column) -> Vec<(String, bool)> {
    let alias = if column.via_device { "d" } else { "t" };
    let p = column.property();
    if has_shadow(p) {
        vec![
            (format!("{alias}.\"{}_lc\"", p.name), true),
            (format!("{alias}.\"{}\"", p.name), true),
        ]
    } else {
        vec![(format!("{alias}.\"{}\"", p.name), is_text(p))]
    }
}

/// A key expression of an ordering: SQL, whether it is text, and direction.
#[derive(Debug, Clone)]
pub struct KeyExpr {
    pub sql: String,
    pub text: bool,
    pub descending: bool,
    /// Can the expression be NULL? Only then does the order need a NULLS clause, which keeps
    /// plain btree indexes usable on PostgreSQL for non-null keys.
    pub nullable: bool,
}

/// Every key expression of an ordering, ending with the `id` tie-breaker, which takes the
/// direction of the last `$orderby` key (ascending without one): `time DESC, id DESC` is a
/// backward walk of a `(…, time, id)` index on both databases (docs/query-plans.md, R2).
pub fn key_exprs(order: &[SortKey]) -> Vec<KeyExpr> {
    let mut keys = Vec::new();
    for key in order {
        let nullable = key.column.via_device || key.column.property().nullable;
        for (sql, text) in sort_exprs(&key.column) {
            keys.push(KeyExpr {
                sql,
                text,
                descending: key.descending,
                nullable,
            });
        }
    }
    keys.push(KeyExpr {
        sql: "t.\"id\"".into(),
        text: true,
        descending: order.last().is_some_and(|k| k.descending),
        nullable: false,
    });
    keys
}

pub fn order_by(sql: &mut Sql, keys: &[KeyExpr]) {
    sql.push(" ORDER BY ");
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push(&key.sql);
        sql.push(match (key.descending, key.nullable) {
            (true, true) => " DESC NULLS LAST",
            (false, true) => " ASC NULLS FIRST",
            (true, false) => " DESC",
            (false, false) => " ASC",
        });
    }
}

fn key_arg(key: &KeyExpr, value: &Value) -> Arg {
    match value {
        Value::Str(s) => Arg::Text(Some(s.clone())),
        Value::Int(i) => Arg::Int(Some(*i)),
        _ if key.text => Arg::Text(None),
        _ => Arg::Int(None),
    }
}

/// `AND (rows strictly after the keyset position)`. For a first key that is never NULL, a
/// redundant bound on it goes in front so both databases seek to the position instead of
/// filtering from the start (docs/query-plans.md, R3).
pub fn after_condition(sql: &mut Sql, keys: &[KeyExpr], after: &After) {
    let mut values: Vec<Value> = after.values.clone();
    values.push(Value::Str(after.id.clone()));
    if let (Some(first), Some(value)) = (keys.first(), values.first()) {
        if keys.len() >= 2 && !first.nullable && *value != Value::Null {
            sql.push(" AND ")
                .push(&first.sql)
                .push(if first.descending { " <= " } else { " >= " })
                .arg(key_arg(first, value));
        }
    }
    sql.push(" AND (");
    let mut first_term = true;
    for i in 0..keys.len().min(values.len()) {
        let key = &keys[i];
        let value = &values[i];
        // In descending order NULLs come last: nothing but other NULLs (tied) follows a NULL.
        if key.descending && *value == Value::Null {
            continue;
        }
        if !first_term {
            sql.push(" OR ");
        }
        first_term = false;
        sql.push("(");
        for j in 0..i {
            let (k, v) = (&keys[j], &values[j]);
            if *v == Value::Null {
                sql.push(&k.sql).push(" IS NULL AND ");
            } else {
                sql.push(&k.sql)
                    .push(" = ")
                    .arg(key_arg(k, v))
                    .push(" AND ");
            }
        }
        match (key.descending, value) {
            (false, Value::Null) => {
                sql.push(&key.sql).push(" IS NOT NULL");
            }
            (false, v) => {
                sql.push(&key.sql).push(" > ").arg(key_arg(key, v));
            }
            (true, v) if !key.nullable => {
                sql.push(&key.sql).push(" < ").arg(key_arg(key, v));
            }
            (true, v) => {
                sql.push("(")
                    .push(&key.sql)
                    .push(" < ")
                    .arg(key_arg(key, v))
                    .push(" OR ")
                    .push(&key.sql)
                    .push(" IS NULL)");
            }
        }
        sql.push(")");
    }
    if first_term {
        sql.push("1 = 0");
    }
    sql.push(")");
}

/// Append a filter as a two-valued SQL condition.
pub fn filter(sql: &mut Sql, f: &Filter) {
    match f {
        Filter::Const(true) => {
            sql.push("1 = 1");
        }
        Filter::Const(false) => {
            sql.push("1 = 0");
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            sql.push("(");
            filter(sql, a);
            sql.push(if matches!(f, Filter::And(..)) {
                " AND "
            } else {
                " OR "
            });
            filter(sql, b);
            sql.push(")");
        }
        Filter::Not(inner) => {
            sql.push("(NOT ");
            filter(sql, inner);
            sql.push(")");
        }
        Filter::Compare { column, op, value } => compare(sql, column, *op, value),
        Filter::In { column, values } => {
            let (expr, p) = operand(column);
            let non_null: Vec<&Value> = values.iter().filter(|v| **v != Value::Null).collect();
            let has_null = non_null.len() != values.len();
            sql.push("(");
            if non_null.is_empty() {
                sql.push("1 = 0");
            } else {
                sql.push("(")
                    .push(&expr)
                    .push(" IS NOT NULL AND ")
                    .push(&expr)
                    .push(" IN (");
                for (i, v) in non_null.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.arg(literal_arg(p, v));
                }
                sql.push("))");
            }
            if has_null {
                sql.push(" OR ").push(&expr).push(" IS NULL");
            }
            sql.push(")");
        }
        Filter::Function {
            function,
            column,
            text,
        } => {
            let (expr, p) = operand(column);
            let escaped = escape_like(&if has_shadow(p) {
                fold(text)
            } else {
                text.clone()
            });
            let pattern = match function {
                StringFunction::StartsWith => format!("{escaped}%"),
                StringFunction::EndsWith => format!("%{escaped}"),
                StringFunction::Contains => format!("%{escaped}%"),
            };
            sql.push("(")
                .push(&expr)
                .push(" IS NOT NULL AND ")
                .push(&expr)
                .push(" LIKE ");
            sql.arg(Arg::Text(Some(pattern))).push(" ESCAPE '\\'");
            if !has_shadow(p) && !text.is_empty() {
                // Without a folded shadow (`id`) the comparison is exact, but SQLite's LIKE
                // ignores ASCII case: the same test again with functions that compare exactly
                // on both databases (substr and length count characters on both).
                let arg = || Arg::Text(Some(text.clone()));
                match function {
                    StringFunction::StartsWith => {
                        sql.push(" AND substr(").push(&expr).push(", 1, length(");
                        sql.arg(arg()).push(")) = ").arg(arg());
                    }
                    StringFunction::EndsWith => {
                        // LIKE already made sure the value is at least as long as the text.
                        sql.push(" AND substr(")
                            .push(&expr)
                            .push(", length(")
                            .push(&expr);
                        sql.push(") - length(")
                            .arg(arg())
                            .push(") + 1) = ")
                            .arg(arg());
                    }
                    StringFunction::Contains => {
                        sql.push(" AND replace(").push(&expr).push(", ");
                        sql.arg(arg()).push(", '') <> ").push(&expr);
                    }
                }
            }
            sql.push(")");
        }
    }
}

/// The expression a comparison reads: the folded shadow column for strings.
fn operand(column: &Column) -> (String, &'static Property) {
    let alias = if column.via_device { "d" } else { "t" };
    let p = column.property();
    if has_shadow(p) {
        (format!("{alias}.\"{}_lc\"", p.name), p)
    } else {
        (format!("{alias}.\"{}\"", p.name), p)
    }
}

fn literal_arg(p: &Property, v: &Value) -> Arg {
    match v {
        Value::Str(s) if has_shadow(p) => Arg::Text(Some(fold(s))),
        Value::Str(s) => Arg::Text(Some(s.clone())),
        Value::Bool(b) => Arg::Int(Some(i64::from(*b))),
        Value::Int(i) | Value::Enum(i) => Arg::Int(Some(*i)),
        Value::Time(t) => Arg::Int(Some(t.ticks())),
        _ if is_text(p) => Arg::Text(None),
        _ => Arg::Int(None),
    }
}

fn compare(sql: &mut Sql, column: &Column, op: CompareOp, value: &Value) {
    let (expr, p) = operand(column);
    if *value == Value::Null {
        match op {
            CompareOp::Eq => sql.push("(").push(&expr).push(" IS NULL)"),
            CompareOp::Ne => sql.push("(").push(&expr).push(" IS NOT NULL)"),
            _ => sql.push("(1 = 0)"),
        };
        return;
    }
    let op_text = match op {
        CompareOp::Eq => " = ",
        CompareOp::Ne => " <> ",
        CompareOp::Gt => " > ",
        CompareOp::Ge => " >= ",
        CompareOp::Lt => " < ",
        CompareOp::Le => " <= ",
    };
    if !column.via_device && !p.nullable {
        // A column that is never NULL is already two-valued; without the guard the planner can
        // use an index on it.
        sql.push("(").push(&expr).push(op_text);
    } else if op == CompareOp::Ne {
        sql.push("(")
            .push(&expr)
            .push(" IS NULL OR ")
            .push(&expr)
            .push(op_text);
    } else {
        sql.push("(")
            .push(&expr)
            .push(" IS NOT NULL AND ")
            .push(&expr)
            .push(op_text);
    }
    sql.arg(literal_arg(p, value)).push(")");
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
