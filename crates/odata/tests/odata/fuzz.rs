//! Property-style robustness: random bytes and token soups never panic, and
//! every error is positioned inside the input and reads as a sentence.

use remediate_odata::{
    parse_expand, parse_filter, parse_orderby, parse_query, parse_select, Expr, Limits, ParseError,
};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "(",
    ")",
    "((",
    "))",
    ",",
    "/",
    ":",
    ";",
    "*",
    "=",
    "&",
    "'",
    "''",
    "'a'",
    "'a;b)'",
    " ",
    "\t",
    "eq",
    " eq ",
    " and ",
    " or ",
    "not ",
    " in ",
    "ne",
    "gt",
    "le",
    "add",
    "has",
    "asc",
    "desc",
    "true",
    "false",
    "null",
    "a",
    "a/b",
    "managedDevice",
    "deviceName",
    "startswith(",
    "contains(",
    "tolower(",
    "any(",
    "x:",
    "geo.intersects(",
    "-",
    "-1",
    "1",
    "1.5",
    "1e",
    "2e10",
    "9999999999999999999999",
    "2025-01-31",
    "2025-01-31T10:00:00Z",
    "2025-01-31T10:00",
    " 02:00",
    "T",
    "+",
    "%",
    "%2",
    "%27",
    "%24",
    "%FF",
    "%C3%A9",
    "microsoft.graph.runState'",
    "microsoft.graph.x",
    "duration'",
    "6f1e2f3a-0c4d-4e5f-8a9b-0123456789ab",
    "6f1e2f3a-",
    "$expand=",
    "$filter=",
    "$select=",
    "$top=",
    "$count=",
    "$it",
    "$count",
    "@p",
    "filter=",
    "é",
    "✓",
    "\"",
    "[",
    "{",
    "\u{0}",
];

fn token_soup(rng: &mut XorShift) -> String {
    let n = rng.below(24);
    (0..n).map(|_| TOKENS[rng.below(TOKENS.len())]).collect()
}

fn random_text(rng: &mut XorShift) -> String {
    let n = rng.below(48);
    let bytes: Vec<u8> = (0..n)
        .map(|_| {
            // Bias towards ASCII punctuation and letters, with some high bytes.
            let b = rng.next() as u8;
            if b & 0x80 != 0 && rng.below(4) != 0 {
                b & 0x7f
            } else {
                b
            }
        })
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check_error(input: &str, e: &ParseError) {
    if let Some(p) = e.position {
        assert!(
            p <= input.len(),
            "{input:?}: position {p} beyond input: {e:?}"
        );
    }
    assert!(
        !e.message.is_empty() && !e.option.is_empty(),
        "{input:?}: {e:?}"
    );
    assert!(
        e.message.ends_with('.') || e.message.ends_with('?'),
        "{input:?}: {e:?}"
    );
}

fn check_spans(input: &str, e: &Expr) {
    let s = e.span();
    assert!(s.start <= s.end && s.end <= input.len(), "{input:?}: {e:?}");
    match e {
        Expr::Compare { left, right, .. } => {
            check_spans(input, left);
            check_spans(input, right);
        }
        Expr::And(a, b, _) | Expr::Or(a, b, _) => {
            check_spans(input, a);
            check_spans(input, b);
        }
        Expr::Not(a, _) => check_spans(input, a),
        Expr::In { expr, list, .. } => {
            check_spans(input, expr);
            list.iter().for_each(|x| check_spans(input, x));
        }
        Expr::Call { args, .. } => args.iter().for_each(|x| check_spans(input, x)),
        Expr::Literal(..) | Expr::Path(..) => {}
    }
}

fn run_all(input: &str, limits: &Limits) {
    match parse_filter(input, limits) {
        Ok(e) => check_spans(input, &e),
        Err(e) => check_error(input, &e),
    }
    for r in [
        parse_orderby(input, limits).err(),
        parse_select(input, limits).err(),
        parse_expand(input, limits).err(),
    ]
    .iter()
    .flatten()
    {
        check_error(input, r);
    }
    if let Err(e) = parse_query(input, limits) {
        assert!(!e.message.is_empty(), "{input:?}");
    }
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let tight = Limits {
        max_option_length: 64,
        max_depth: 3,
        max_in_items: 2,
        max_orderby_keys: 2,
    };
    for i in 0..10_000 {
        let input = if i % 2 == 0 {
            token_soup(&mut rng)
        } else {
            random_text(&mut rng)
        };
        run_all(&input, &Limits::default());
        run_all(&input, &tight);
    }
}
