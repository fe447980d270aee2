//! `$select` and `$orderby`.

use crate::common::{check_err, lim};
use remediate_odata::{parse_orderby, parse_select, ErrorKind, OrderItem, Span};

use ErrorKind::{NotSupported, Syntax};

fn select_paths(text: &str) -> Vec<String> {
    parse_select(text, &lim())
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .into_iter()
        .map(|s| s.path.join("/"))
        .collect()
}

fn orderby(text: &str) -> Vec<(String, bool)> {
    parse_orderby(text, &lim())
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .into_iter()
        .map(|o| (o.path.join("/"), o.descending))
        .collect()
}

#[test]
fn select_items() {
    let cases: &[(&str, &[&str])] = &[
        (
            "deviceName,userPrincipalName,osVersion",
            &["deviceName", "userPrincipalName", "osVersion"],
        ),
        ("id", &["id"]),
        ("*", &["*"]),
        (" a , b/c ,d ", &["a", "b/c", "d"]),
        ("managedDevice/deviceName", &["managedDevice/deviceName"]),
    ];
    for (input, want) in cases {
        assert_eq!(select_paths(input), *want, "{input:?}");
    }
    let items = parse_select("a, b/c", &lim()).unwrap();
    assert_eq!(items[1].span, Span::new(3, 6));
}

#[test]
fn select_errors() {
    let cases: &[(&str, ErrorKind, usize, &str)] = &[
        (
            "a,,b",
            Syntax,
            2,
            "expected a property name or '*', found ','",
        ),
        (
            ",a",
            Syntax,
            0,
            "expected a property name or '*', found ','",
        ),
        ("a,", Syntax, 2, "found end of input"),
        ("a b", Syntax, 2, "expected ',' or end of input, found 'b'"),
        ("a/", Syntax, 2, "expected a property name after '/'"),
        ("'a'", Syntax, 0, "found the string 'a'"),
        (
            "microsoft.graph.device/a",
            NotSupported,
            0,
            "type cast 'microsoft.graph.device'",
        ),
        ("a/$ref", NotSupported, 2, "path segment '$ref'"),
    ];
    for (input, kind, pos, frag) in cases {
        let e = parse_select(input, &lim()).unwrap_err();
        check_err(input, &e, *kind, Some(*pos), frag);
        assert_eq!(e.option, "$select");
    }
}

#[test]
fn orderby_items() {
    let cases: &[(&str, &[(&str, bool)])] = &[
        (
            "lastStateUpdateDateTime desc,id",
            &[("lastStateUpdateDateTime", true), ("id", false)],
        ),
        (
            "managedDevice/deviceName",
            &[("managedDevice/deviceName", false)],
        ),
        (
            "managedDevice/deviceName asc",
            &[("managedDevice/deviceName", false)],
        ),
        (
            " a desc , b asc ,c ",
            &[("a", true), ("b", false), ("c", false)],
        ),
        ("a\tdesc", &[("a", true)]),
    ];
    for (input, want) in cases {
        let want: Vec<(String, bool)> = want.iter().map(|(p, d)| (p.to_string(), *d)).collect();
        assert_eq!(orderby(input), want, "{input:?}");
    }
    assert_eq!(
        parse_orderby("a desc", &lim()).unwrap(),
        vec![OrderItem {
            path: vec!["a".into()],
            descending: true,
            span: Span::new(0, 6)
        }]
    );
}

#[test]
fn orderby_errors() {
    let cases: &[(&str, ErrorKind, usize, &str)] = &[
        ("a,,b", Syntax, 2, "expected a property name, found ','"),
        ("a,", Syntax, 2, "found end of input"),
        (
            "a desc desc",
            Syntax,
            7,
            "expected ',' or end of input, found 'desc'",
        ),
        (
            "a b",
            Syntax,
            2,
            "expected 'asc', 'desc', ',' or end of input, found 'b'",
        ),
        ("a DESC", Syntax, 2, "lowercase"),
        ("tolower(a)", NotSupported, 0, "function 'tolower'"),
        ("a/any(x:x)", NotSupported, 2, "lambda operator 'any'"),
        ("$count desc", NotSupported, 0, "'$count'"),
        ("@p", NotSupported, 0, "parameter alias"),
    ];
    for (input, kind, pos, frag) in cases {
        let e = parse_orderby(input, &lim()).unwrap_err();
        check_err(input, &e, *kind, Some(*pos), frag);
        assert_eq!(e.option, "$orderby");
    }
}
