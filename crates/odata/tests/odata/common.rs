//! Helpers: parse shortcuts and a compact S-expression rendering of `Expr`.

use remediate_odata::{parse_filter, parse_query, CompareOp, Expr, Limits, Literal, ParseError};
use remediate_odata::{ErrorKind, QueryOptions};

pub fn lim() -> Limits {
    Limits::default()
}

pub fn filter_ok(text: &str) -> Expr {
    parse_filter(text, &lim()).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

pub fn query_ok(raw: &str) -> QueryOptions {
    parse_query(raw, &lim()).unwrap_or_else(|e| panic!("{raw:?} should parse: {e}"))
}

pub fn query_err(raw: &str) -> ParseError {
    match parse_query(raw, &lim()) {
        Ok(q) => panic!("{raw:?} should fail, got {q:?}"),
        Err(e) => e,
    }
}

/// Check an error against (kind, position, message fragment); the message must
/// be a sentence and `Display` must print it.
pub fn check_err(input: &str, e: &ParseError, kind: ErrorKind, pos: Option<usize>, frag: &str) {
    assert_eq!(e.kind, kind, "{input:?}: kind of {e:?}");
    assert_eq!(e.position, pos, "{input:?}: position of {e:?}");
    assert!(
        e.message.contains(frag),
        "{input:?}: message {:?} should contain {frag:?}",
        e.message
    );
    assert!(e.message.ends_with('.') || e.message.ends_with('?'), "{e}");
    assert_eq!(e.to_string(), e.message);
}

fn lit(l: &Literal) -> String {
    match l {
        Literal::Null => "null".into(),
        Literal::Bool(b) => b.to_string(),
        Literal::String(s) => format!("'{s}'"),
        Literal::Int(i) => i.to_string(),
        Literal::Decimal(d) => format!("dec:{d}"),
        Literal::Date(d) => format!("date:{d}"),
        Literal::DateTimeOffset(d) => format!("dt:{d}"),
        Literal::Enum { type_name, member } => format!("enum:{type_name}'{member}'"),
        Literal::Guid(g) => format!("guid:{g}"),
    }
}

fn op(o: CompareOp) -> &'static str {
    o.as_str()
}

/// Compact rendering, e.g. `(and (eq a 'x') (not b))`.
pub fn sx(e: &Expr) -> String {
    match e {
        Expr::Literal(l, _) => lit(l),
        Expr::Path(p, _) => p.join("/"),
        Expr::Compare {
            op: o, left, right, ..
        } => format!("({} {} {})", op(*o), sx(left), sx(right)),
        Expr::And(a, b, _) => format!("(and {} {})", sx(a), sx(b)),
        Expr::Or(a, b, _) => format!("(or {} {})", sx(a), sx(b)),
        Expr::Not(a, _) => format!("(not {})", sx(a)),
        Expr::In { expr, list, .. } => {
            let items: Vec<String> = list.iter().map(sx).collect();
            format!("(in {} [{}])", sx(expr), items.join(" "))
        }
        Expr::Call { func, args, .. } => {
            let items: Vec<String> = args.iter().map(sx).collect();
            format!("({} {})", func.name(), items.join(" "))
        }
    }
}
