//! `$filter` errors: kind, position and what the message says.

use crate::common::{check_err, lim};
use remediate_odata::{parse_filter, ErrorKind, Limits};

use ErrorKind::{InvalidValue, NotSupported, Syntax, TooDeep, TooLong};

fn err(text: &str, limits: &Limits) -> remediate_odata::ParseError {
    match parse_filter(text, limits) {
        Ok(e) => panic!("{text:?} should fail, got {e:?}"),
        Err(e) => e,
    }
}

#[test]
fn filter_error_table() {
    let cases: &[(&str, ErrorKind, usize, &str)] = &[
        (
            "detectionState eq",
            Syntax,
            17,
            "expected a value after 'eq', found end of input",
        ),
        (
            "detectionState eq 'fail",
            Syntax,
            18,
            "unterminated string literal",
        ),
        (
            "displayName eq 'O''Brien",
            Syntax,
            15,
            "unterminated string literal",
        ),
        ("and", Syntax, 0, "expected a value, found 'and'"),
        (
            "a eq 'x' and",
            Syntax,
            12,
            "expected a value after 'and', found end of input",
        ),
        (
            "not",
            Syntax,
            3,
            "expected a value after 'not', found end of input",
        ),
        (
            "a eq 1 b eq 2",
            Syntax,
            7,
            "expected 'and', 'or' or end of input, found 'b'",
        ),
        (
            "a 'x'",
            Syntax,
            2,
            "expected an operator such as 'eq', 'and', 'or' or end of input, found the string 'x'",
        ),
        (
            "(a eq 1",
            Syntax,
            7,
            "')' to close the '(' at position 0, found end of input",
        ),
        ("a eq 1)", Syntax, 6, "found ')'"),
        ("a eq b eq c", Syntax, 7, "found 'eq'"),
        (
            "a/ eq 1",
            Syntax,
            3,
            "expected a property name after '/', found 'eq'",
        ),
        ("x EQ 1", Syntax, 2, "lowercase"),
        ("x == 1", Syntax, 2, "unexpected character '='"),
        ("x eq \"a\"", Syntax, 5, "single quotes"),
        ("a eq [1]", Syntax, 5, "JSON array"),
        ("a eq 'x';", Syntax, 8, "unexpected character ';'"),
        ("a eq ü", Syntax, 5, "unexpected character 'ü'"),
        ("x eq runState'fail'", Syntax, 5, "qualified type name"),
        ("a eq 2025-01-01T10:00:00", Syntax, 5, "needs a time zone"),
        (
            "a eq 2025-01-01T10:00:00 2:00",
            Syntax,
            5,
            "needs a time zone",
        ),
        ("a eq 2025-1-1", Syntax, 5, "malformed literal '2025-1-1'"),
        ("a eq 1.5M", Syntax, 5, "malformed literal '1.5M'"),
        ("a eq 12abc", Syntax, 5, "malformed literal"),
        ("a eq 1.", Syntax, 5, "malformed literal"),
        ("a eq 1e", Syntax, 5, "malformed literal"),
        (
            "a eq 6f1e2f3a-0c4d-4e5f-8a9b",
            Syntax,
            5,
            "malformed literal",
        ),
        ("a eq abcdef12-0c4d", Syntax, 5, "malformed literal"),
        (
            "startswith(a 'b')",
            Syntax,
            13,
            "expected an operator such as 'eq', 'and', 'or', ',' or ')'",
        ),
        ("x in ()", Syntax, 6, "the 'in' list is empty"),
        (
            "x in ('a' eq 'b')",
            Syntax,
            10,
            "expected ')' or ',', found 'eq'",
        ),
        (
            "x in (a)",
            Syntax,
            6,
            "expected a literal value in the 'in' list, found 'a'",
        ),
        (
            "x in 'a'",
            Syntax,
            5,
            "expected '(' after 'in', found the string 'a'",
        ),
        ("x in ('a'", Syntax, 9, "found end of input"),
        ("a eq 99999999999999999999", InvalidValue, 5, "out of range"),
        ("a eq 2025-13-01", InvalidValue, 5, "not a valid date"),
        (
            "a eq 2025-01-01T25:00:00Z",
            InvalidValue,
            5,
            "not a valid date-time",
        ),
        (
            "startswith(a)",
            InvalidValue,
            0,
            "takes exactly 2 arguments, but 1 was given",
        ),
        ("startswith(a,'b','c')", InvalidValue, 0, "but 3 were given"),
        ("contains()", InvalidValue, 0, "but 0 were given"),
        (
            "tolower(deviceName) eq 'x'",
            NotSupported,
            0,
            "The function 'tolower' is not supported in $filter.",
        ),
        ("x eq toupper('a')", NotSupported, 5, "function 'toupper'"),
        (
            "roleScopeTagIds/any(t:t eq '0')",
            NotSupported,
            16,
            "The lambda operator 'any' is not supported in $filter.",
        ),
        (
            "roleScopeTagIds/all(t: t eq '0')",
            NotSupported,
            16,
            "lambda operator 'all'",
        ),
        (
            "deviceName eq 'x' and roleScopeTagIds/any(t: t eq '0')",
            NotSupported,
            38,
            "'any'",
        ),
        ("any(t:t eq '0')", NotSupported, 0, "lambda operator 'any'"),
        (
            "foo(a,'b')",
            NotSupported,
            0,
            "The function 'foo' is not supported in $filter (unknown function).",
        ),
        (
            "StartsWith(a,'b')",
            NotSupported,
            0,
            "did you mean 'startswith'?",
        ),
        (
            "geo.distance(a, b) lt 5",
            NotSupported,
            0,
            "function 'geo.distance'",
        ),
        (
            "a eq 1 add 2",
            NotSupported,
            7,
            "The operator 'add' is not supported in $filter.",
        ),
        ("a eq @p", NotSupported, 5, "parameter alias '@p'"),
        ("@p", NotSupported, 0, "parameter alias '@p'"),
        ("$it/x eq 1", NotSupported, 0, "'$it'"),
        (
            "assignments/$count eq 0",
            NotSupported,
            12,
            "path segment '$count'",
        ),
        (
            "a/microsoft.graph.x eq 1",
            NotSupported,
            2,
            "type cast segment",
        ),
        ("microsoft.graph.x/a eq 1", NotSupported, 0, "type cast"),
        ("x eq duration'P1D'", NotSupported, 5, "duration literal"),
        ("x eq -y", NotSupported, 5, "negation operator '-'"),
        (
            "a/b(1) eq 2",
            NotSupported,
            2,
            "function call 'b' on a path",
        ),
    ];
    for (input, kind, pos, frag) in cases {
        let e = err(input, &lim());
        check_err(input, &e, *kind, Some(*pos), frag);
        assert_eq!(e.option, "$filter");
    }
}

#[test]
fn exact_messages() {
    let e = err("detectionState eq", &lim());
    assert_eq!(
        e.to_string(),
        "Syntax error in $filter at position 17: expected a value after 'eq', found end of input."
    );
    let e = err("tolower(deviceName) eq 'x'", &lim());
    assert_eq!(
        e.to_string(),
        "The function 'tolower' is not supported in $filter."
    );
    let as_error: &dyn std::error::Error = &e;
    assert!(as_error.source().is_none());
}

#[test]
fn every_known_unsupported_function_and_operator_is_named() {
    let functions = [
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
        "date",
        "time",
        "now",
        "round",
        "floor",
        "ceiling",
        "cast",
        "isof",
    ];
    for f in functions {
        let input = format!("{f}(x) eq 1");
        let e = err(&input, &lim());
        let want = format!("The function '{f}' is not supported in $filter.");
        check_err(&input, &e, NotSupported, Some(0), &want);
    }
    for op in ["add", "sub", "mul", "div", "divby", "mod", "has"] {
        let input = format!("a {op} 1 eq 2");
        let e = err(&input, &lim());
        let want = format!("The operator '{op}' is not supported in $filter.");
        check_err(&input, &e, NotSupported, Some(2), &want);
    }
    // The same words are ordinary property names when not called.
    assert!(parse_filter("date eq 2025-01-01 and length gt 1", &lim()).is_ok());
}

#[test]
fn blank_filter_needs_a_value() {
    for input in ["", "   ", "\t"] {
        let e = err(input, &lim());
        assert_eq!(e.kind, InvalidValue, "{input:?}");
        assert_eq!(e.message, "The query option '$filter' needs a value.");
    }
}

/// Run on a 1 MiB stack (half of a tokio worker's) to prove that depth is
/// checked before recursing; depth 32 needs under 400 KiB even unoptimised.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("parser thread panicked")
}

#[test]
fn deep_nesting_is_too_deep_not_a_stack_overflow() {
    let big = Limits {
        max_option_length: usize::MAX,
        ..Limits::default()
    };
    let e = on_small_stack(move || err(&"(".repeat(200_000), &big));
    check_err(
        "(((",
        &e,
        TooDeep,
        Some(32),
        "nested too deeply at position 32 (the maximum nesting depth is 32)",
    );

    let e = on_small_stack(move || err(&format!("{}a", "not ".repeat(100_000)), &big));
    check_err("not not", &e, TooDeep, Some(128), "nested too deeply");

    let e = on_small_stack(move || err(&"startswith(".repeat(40), &big));
    check_err(
        "startswith(startswith(",
        &e,
        TooDeep,
        Some(32 * 11 + 10),
        "nested too deeply",
    );

    let input = format!("{}a{}", "(".repeat(33), ")".repeat(33));
    check_err(
        &input,
        &err(&input, &lim()),
        TooDeep,
        Some(32),
        "nested too deeply",
    );

    let two = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(parse_filter("((a))", &two).is_ok());
    check_err(
        "(((a)))",
        &err("(((a)))", &two),
        TooDeep,
        Some(2),
        "maximum nesting depth is 2",
    );
}

#[test]
fn oversized_input_is_too_long_before_parsing() {
    let e = err(&"(".repeat(200_000), &lim());
    check_err(
        "((",
        &e,
        TooLong,
        None,
        "too long (200000 bytes; the maximum is 8192 bytes)",
    );
    // Exactly at the limit is fine (syntax permitting).
    let at_limit = format!("a eq '{}'", "x".repeat(8192 - 7));
    assert_eq!(at_limit.len(), 8192);
    assert!(parse_filter(&at_limit, &lim()).is_ok());

    let items: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let list = format!("x in ({})", items.join(","));
    let pos = list.rfind(',').unwrap() + 1;
    check_err(
        "in list",
        &err(&list, &lim()),
        TooLong,
        Some(pos),
        "has more than 1000 items",
    );
}
