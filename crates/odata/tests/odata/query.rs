//! Whole query strings: decoding, option names, duplicates, unsupported options, values.

use crate::common::{check_err, query_err, query_ok, sx};
use remediate_odata::{parse_query, ErrorKind, Limits, QueryOptions};

use ErrorKind::{Duplicate, InvalidValue, NotSupported, Syntax, TooLong};

fn filter_of(q: &QueryOptions) -> String {
    sx(q.filter.as_ref().expect("filter"))
}

#[test]
fn real_world_query_strings() {
    let q = query_ok("$filter=detectionState eq 'fail' and lastStateUpdateDateTime ge 2025-01-01T00:00:00Z&$top=999&$count=true&$orderby=lastStateUpdateDateTime desc,id");
    assert_eq!(
        filter_of(&q),
        "(and (eq detectionState 'fail') (ge lastStateUpdateDateTime dt:2025-01-01T00:00:00Z))"
    );
    assert_eq!(q.top, Some(999));
    assert_eq!(q.count, Some(true));
    let ob = q.orderby.as_ref().unwrap();
    assert_eq!(ob.len(), 2);
    assert_eq!(
        (ob[0].path.join("/"), ob[0].descending),
        ("lastStateUpdateDateTime".into(), true)
    );
    assert_eq!(
        (ob[1].path.join("/"), ob[1].descending),
        ("id".into(), false)
    );

    // As the Python Kiota SDK encodes it.
    let q = query_ok("%24filter=detectionState%20eq%20%27fail%27&%24top=5");
    assert_eq!(filter_of(&q), "(eq detectionState 'fail')");
    assert_eq!(q.top, Some(5));

    // PowerShell / browsers: `+` as space, %2B as plus.
    let q = query_ok("$filter=detectionState+eq+microsoft.graph.runState'fail'");
    assert_eq!(
        filter_of(&q),
        "(eq detectionState enum:microsoft.graph.runState'fail')"
    );
    let q = query_ok("$filter=t+ge+2025-01-01T00:00:00+02:00");
    assert_eq!(filter_of(&q), "(ge t dt:2025-01-01T00:00:00+02:00)");
    let q = query_ok("$filter=t%20ge%202025-01-01T00:00:00%2B02:00");
    assert_eq!(filter_of(&q), "(ge t dt:2025-01-01T00:00:00+02:00)");
    let q = query_ok("$filter=contains(preRemediationDetectionScriptOutput,'100%25_done')");
    assert_eq!(
        filter_of(&q),
        "(contains preRemediationDetectionScriptOutput '100%_done')"
    );

    let q = query_ok("$select=id,detectionState&$expand=managedDevice($select=deviceName,osVersion)&$skip=50&$skiptoken=abc%3D%3D");
    assert_eq!(q.select.as_ref().unwrap().len(), 2);
    assert_eq!(q.expand.as_ref().unwrap()[0].path, vec!["managedDevice"]);
    assert_eq!(q.skip, Some(50));
    assert_eq!(q.skiptoken.as_deref(), Some("abc=="));
}

#[test]
fn option_names_are_case_insensitive_and_dollar_is_optional() {
    for raw in [
        "$Filter=a eq 1&$TOP=3",
        "filter=a eq 1&top=3",
        "FILTER=a eq 1&$top=3",
        "?$filter=a eq 1&Top=3",
    ] {
        let q = query_ok(raw);
        assert_eq!(filter_of(&q), "(eq a 1)", "{raw}");
        assert_eq!(q.top, Some(3), "{raw}");
        assert!(q.custom.is_empty(), "{raw}");
    }
    let q = query_ok("select=id&expand=assignments&orderby=id&skip=1&count=TRUE&skiptoken=x");
    assert!(q.select.is_some() && q.expand.is_some() && q.orderby.is_some());
    assert_eq!(
        (q.skip, q.count, q.skiptoken.as_deref()),
        (Some(1), Some(true), Some("x"))
    );
}

#[test]
fn custom_parameters_and_empty_segments() {
    let q = query_ok("api-version=1&&$top=1&foo=b%20c+d&flag&");
    assert_eq!(
        q.custom,
        vec![
            ("api-version".to_string(), "1".to_string()),
            ("foo".to_string(), "b c d".to_string()),
            ("flag".to_string(), String::new()),
        ]
    );
    assert_eq!(q.top, Some(1));
    assert_eq!(query_ok(""), QueryOptions::default());
    assert_eq!(query_ok("&&"), QueryOptions::default());
    assert_eq!(query_ok("$count=false").count, Some(false));
    assert_eq!(query_ok("$skiptoken=").skiptoken.as_deref(), Some(""));
    assert_eq!(query_ok("$top=0").top, Some(0));
    assert_eq!(query_ok("$top=18446744073709551615").top, Some(u64::MAX));
}

#[test]
fn query_error_table() {
    let cases: &[(&str, ErrorKind, &str, Option<usize>, &str)] = &[
        (
            "$filter=a eq 1&filter=b eq 2",
            Duplicate,
            "$filter",
            None,
            "The query option '$filter' is specified more than once.",
        ),
        (
            "$top=1&$TOP=2",
            Duplicate,
            "$top",
            None,
            "'$top' is specified more than once",
        ),
        (
            "$search=foo",
            NotSupported,
            "$search",
            None,
            "The query option '$search' is not supported.",
        ),
        (
            "$Search=foo",
            NotSupported,
            "$Search",
            None,
            "The query option '$Search' is not supported.",
        ),
        (
            "search=foo",
            NotSupported,
            "search",
            None,
            "'search' is not supported",
        ),
        (
            "$apply=groupby((a))",
            NotSupported,
            "$apply",
            None,
            "'$apply'",
        ),
        (
            "$compute=a add 1 as b",
            NotSupported,
            "$compute",
            None,
            "'$compute'",
        ),
        ("$format=json", NotSupported, "$format", None, "'$format'"),
        (
            "$deltatoken=x",
            NotSupported,
            "$deltatoken",
            None,
            "'$deltatoken'",
        ),
        ("$levels=2", NotSupported, "$levels", None, "'$levels'"),
        ("$index=1", NotSupported, "$index", None, "'$index'"),
        (
            "$schemaversion=1",
            NotSupported,
            "$schemaversion",
            None,
            "'$schemaversion'",
        ),
        (
            "$foo=1",
            NotSupported,
            "$foo",
            None,
            "The query option '$foo' is not supported.",
        ),
        (
            "%24whatever=1",
            NotSupported,
            "$whatever",
            None,
            "'$whatever'",
        ),
        (
            "@p=1",
            NotSupported,
            "@p",
            None,
            "The parameter alias '@p' is not supported.",
        ),
        (
            "$top=-1",
            InvalidValue,
            "$top",
            Some(0),
            "The value '-1' is not valid for $top: expected a non-negative integer.",
        ),
        (
            "$top=abc",
            InvalidValue,
            "$top",
            Some(0),
            "'abc' is not valid for $top",
        ),
        (
            "$top=99999999999999999999999",
            InvalidValue,
            "$top",
            Some(0),
            "the number is too large",
        ),
        (
            "$top=1.5",
            InvalidValue,
            "$top",
            Some(0),
            "expected a non-negative integer",
        ),
        (
            "$top=%2B1",
            InvalidValue,
            "$top",
            Some(0),
            "expected a non-negative integer",
        ),
        (
            "$skip=-5",
            InvalidValue,
            "$skip",
            Some(0),
            "not valid for $skip",
        ),
        (
            "$count=maybe",
            InvalidValue,
            "$count",
            Some(0),
            "The value 'maybe' is not valid for $count: expected true or false.",
        ),
        (
            "$count=1",
            InvalidValue,
            "$count",
            Some(0),
            "expected true or false",
        ),
        (
            "$top=",
            InvalidValue,
            "$top",
            None,
            "The query option '$top' needs a value.",
        ),
        ("$top", InvalidValue, "$top", None, "needs a value"),
        ("$count=", InvalidValue, "$count", None, "needs a value"),
        (
            "$filter=",
            InvalidValue,
            "$filter",
            None,
            "The query option '$filter' needs a value.",
        ),
        ("$filter=++", InvalidValue, "$filter", None, "needs a value"),
        ("$orderby=", InvalidValue, "$orderby", None, "needs a value"),
        ("$select", InvalidValue, "$select", None, "needs a value"),
        ("$expand=", InvalidValue, "$expand", None, "needs a value"),
        (
            "$filter=a%ZZ",
            Syntax,
            "$filter",
            Some(1),
            "invalid percent-encoding '%ZZ'",
        ),
        (
            "$filter=a%2",
            Syntax,
            "$filter",
            Some(1),
            "invalid percent-encoding '%2'",
        ),
        (
            "$filter=a eq '%FF'",
            Syntax,
            "$filter",
            Some(6),
            "not valid UTF-8",
        ),
        (
            "$filter=detectionState%20eq",
            Syntax,
            "$filter",
            Some(17),
            "expected a value after 'eq', found end of input",
        ),
        (
            "$filter=tolower(deviceName) eq 'x'",
            NotSupported,
            "$filter",
            Some(0),
            "The function 'tolower' is not supported in $filter.",
        ),
        (
            "$filter=roleScopeTagIds/any(t:t eq '0')",
            NotSupported,
            "$filter",
            Some(16),
            "lambda operator 'any'",
        ),
        ("$orderby=a DESC", Syntax, "$orderby", Some(2), "lowercase"),
    ];
    for (raw, kind, option, pos, frag) in cases {
        let e = query_err(raw);
        check_err(raw, &e, *kind, *pos, frag);
        assert_eq!(e.option, *option, "{raw}");
    }
}

#[test]
fn too_long_values() {
    let long = format!("$filter={}", "a eq 1 and ".repeat(1000));
    let e = query_err(&long);
    check_err(
        "long",
        &e,
        TooLong,
        None,
        "The value of $filter is too long",
    );
    // The limit applies to the decoded value: 3000 encoded bytes decode to 1000.
    let small = Limits {
        max_option_length: 1000,
        ..Limits::default()
    };
    let raw = format!("$filter=a%20eq%20'{}'", "%41".repeat(990));
    assert!(parse_query(&raw, &small).is_ok());
    let raw = format!("$skiptoken={}", "x".repeat(1001));
    assert_eq!(parse_query(&raw, &small).unwrap_err().kind, TooLong);
}
