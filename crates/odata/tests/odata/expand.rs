//! `$expand` with nested options.

use crate::common::{check_err, lim, sx};
use remediate_odata::{parse_expand, parse_query, ErrorKind, ExpandItem, Limits, Span};

use ErrorKind::{Duplicate, InvalidValue, NotSupported, Syntax, TooDeep};

fn expand_ok(text: &str) -> Vec<ExpandItem> {
    parse_expand(text, &lim()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn paths(items: &[ExpandItem]) -> Vec<String> {
    items.iter().map(|i| i.path.join("/")).collect()
}

fn selects(item: &ExpandItem) -> Vec<String> {
    item.options
        .select
        .as_ref()
        .map(|s| s.iter().map(|i| i.path.join("/")).collect())
        .unwrap_or_default()
}

#[test]
fn expand_examples_from_graph_docs() {
    let items = expand_ok("managedDevice($select=deviceName,userPrincipalName,osVersion)");
    assert_eq!(paths(&items), ["managedDevice"]);
    assert_eq!(
        selects(&items[0]),
        ["deviceName", "userPrincipalName", "osVersion"]
    );
    assert!(items[0].options.custom.is_empty());

    let items = expand_ok("managedDevice($select=id)");
    assert_eq!(selects(&items[0]), ["id"]);

    let items = expand_ok("assignments,runSummary");
    assert_eq!(paths(&items), ["assignments", "runSummary"]);
    assert_eq!(items[1].options, Default::default());

    let items = expand_ok("managedDevice($select=id),assignments");
    assert_eq!(items[0].span, Span::new(0, 25));
    assert_eq!(items[1].span, Span::new(26, 37));
}

#[test]
fn nested_options() {
    let items = expand_ok("managedDevice($select=deviceName;$filter=deviceName eq 'a;b)')");
    assert_eq!(selects(&items[0]), ["deviceName"]);
    let f = items[0].options.filter.as_ref().unwrap();
    assert_eq!(sx(f), "(eq deviceName 'a;b)')");

    let items = expand_ok("managedDevice(select=deviceName; FILTER=(a eq 1) ;$Top=2)");
    assert_eq!(sx(items[0].options.filter.as_ref().unwrap()), "(eq a 1)");
    assert_eq!(items[0].options.top, Some(2));

    let items =
        expand_ok("managedDevice($filter=displayName eq 'O''Brien;)' and startswith(a,'('))");
    assert_eq!(
        sx(items[0].options.filter.as_ref().unwrap()),
        "(and (eq displayName 'O'Brien;)') (startswith a '('))"
    );

    let items = expand_ok("managedDevice($top=5;$skip=2;$count=true;$orderby=deviceName desc;)");
    let o = &items[0].options;
    assert_eq!((o.top, o.skip, o.count), (Some(5), Some(2), Some(true)));
    assert!(o.orderby.as_ref().unwrap()[0].descending);

    let items = expand_ok(" a ( $select=b ) , c ");
    assert_eq!(paths(&items), ["a", "c"]);
    assert_eq!(selects(&items[0]), ["b"]);

    let items = expand_ok("managedDevice($expand=x($select=y),z)");
    let inner = items[0].options.expand.as_ref().unwrap();
    assert_eq!(paths(inner), ["x", "z"]);
    assert_eq!(selects(&inner[0]), ["y"]);

    // Spans of nested expressions are offsets into the whole $expand value.
    let items = expand_ok("managedDevice($filter=a eq 1)");
    assert_eq!(
        items[0].options.filter.as_ref().unwrap().span(),
        Span::new(22, 28)
    );

    let q = parse_query(
        "$expand=managedDevice(%24select%3DdeviceName%3B%24filter%3DdeviceName%20eq%20%27a%3Bb)%27)",
        &lim(),
    )
    .unwrap();
    let items = q.expand.unwrap();
    assert_eq!(
        sx(items[0].options.filter.as_ref().unwrap()),
        "(eq deviceName 'a;b)')"
    );
}

#[test]
fn expand_error_table() {
    let deep = format!("{}b{}", "a($expand=".repeat(40), ")".repeat(40));
    let cases: &[(&str, ErrorKind, usize, &str)] = &[
        ("*", NotSupported, 0, "The wildcard '*' is not supported in $expand."),
        ("managedDevice($levels=2)", NotSupported, 14, "The query option '$levels' is not supported inside $expand (in the options of 'managedDevice')."),
        ("managedDevice($search=x)", NotSupported, 14, "'$search' is not supported inside $expand"),
        ("managedDevice($skiptoken=x)", NotSupported, 14, "'$skiptoken'"),
        ("managedDevice(foo=1)", NotSupported, 14, "'foo'"),
        ("assignments/$ref", NotSupported, 12, "path segment '$ref'"),
        ("managedDevice($filter=tolower(x) eq 'a')", NotSupported, 22, "The function 'tolower' is not supported in $filter (inside $expand of 'managedDevice')."),
        ("managedDevice($select=a;$select=b)", Duplicate, 24, "'$select' is specified more than once inside $expand"),
        ("managedDevice($select=a;select=b)", Duplicate, 24, "more than once"),
        ("managedDevice($select=a", Syntax, 23, "expected ')' to close the '(' at position 13, found end of input"),
        ("managedDevice($filter=a eq 'x)", Syntax, 27, "unterminated string literal"),
        ("managedDevice()", Syntax, 13, "expected query options"),
        ("managedDevice($filter=a eq)", Syntax, 26, "Syntax error in $filter (inside $expand of 'managedDevice') at position 26: expected a value after 'eq', found end of input."),
        ("a($expand=b($filter=c eq))", Syntax, 24, "inside $expand of 'a/b'"),
        ("managedDevice($select)", Syntax, 14, "expected '=' after the option name '$select'"),
        ("managedDevice(=a)", Syntax, 14, "expected a query option name"),
        ("managedDevice($select=a)x", Syntax, 24, "expected ',' or end of input, found 'x'"),
        ("a b", Syntax, 2, "expected ',' or end of input, found 'b'"),
        ("a,", Syntax, 2, "expected a navigation property name, found end of input"),
        ("managedDevice($top=-1)", InvalidValue, 19, "not valid for $top (inside $expand of 'managedDevice')"),
        ("managedDevice($filter=)", InvalidValue, 22, "needs a value"),
        (&deep, TooDeep, 321, "nested too deeply"),
    ];
    for (input, kind, pos, frag) in cases {
        let e = parse_expand(input, &lim()).unwrap_err();
        check_err(input, &e, *kind, Some(*pos), frag);
        assert_eq!(e.option, "$expand", "{input}");
    }
}

#[test]
fn expand_nesting_counts_towards_filter_depth() {
    let ok = format!("a($filter={}x{})", "(".repeat(31), ")".repeat(31));
    assert!(parse_expand(&ok, &lim()).is_ok());
    let deep = format!("a($filter={}x{})", "(".repeat(32), ")".repeat(32));
    let e = parse_expand(&deep, &lim()).unwrap_err();
    assert_eq!(e.kind, TooDeep);
    let big = Limits {
        max_option_length: usize::MAX,
        ..Limits::default()
    };
    let huge = format!("a($filter={}", "(".repeat(200_000));
    let e = parse_expand(&huge, &big).unwrap_err();
    assert_eq!(e.kind, Syntax, "{e}"); // unbalanced: no closing ')' for the options
    let huge = format!("a($filter={}x{})", "(".repeat(100_000), ")".repeat(100_000));
    assert_eq!(parse_expand(&huge, &big).unwrap_err().kind, TooDeep);
}
