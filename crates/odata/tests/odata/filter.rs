//! `$filter` expressions that must parse, rendered as S-expressions.

use crate::common::{filter_ok, sx};
use remediate_odata::{parse_filter, CompareOp, Expr, Function, Limits, Literal, Span};

#[test]
fn filters_from_graph_docs_and_intune_scripts() {
    let cases: &[(&str, &str)] = &[
        (
            "detectionState eq 'fail' and lastStateUpdateDateTime ge 2025-01-01T00:00:00Z",
            "(and (eq detectionState 'fail') (ge lastStateUpdateDateTime dt:2025-01-01T00:00:00Z))",
        ),
        (
            "managedDevice/id eq '6f1e2f3a-0c4d-4e5f-8a9b-0123456789ab'",
            "(eq managedDevice/id '6f1e2f3a-0c4d-4e5f-8a9b-0123456789ab')",
        ),
        (
            "managedDevice/deviceName eq 'CPC-alice-1'",
            "(eq managedDevice/deviceName 'CPC-alice-1')",
        ),
        (
            "detectionState eq microsoft.graph.runState'fail'",
            "(eq detectionState enum:microsoft.graph.runState'fail')",
        ),
        (
            "startswith(deviceName,'CPC-')",
            "(startswith deviceName 'CPC-')",
        ),
        (
            "contains(preRemediationDetectionScriptOutput,'100%_done')",
            "(contains preRemediationDetectionScriptOutput '100%_done')",
        ),
        (
            "endswith(deviceName, '-01') eq true",
            "(eq (endswith deviceName '-01') true)",
        ),
        (
            "remediationState in ('success','skipped')",
            "(in remediationState ['success' 'skipped'])",
        ),
        (
            "not (detectionState eq 'success')",
            "(not (eq detectionState 'success'))",
        ),
        (
            "expectedStateUpdateDateTime eq null",
            "(eq expectedStateUpdateDateTime null)",
        ),
        ("displayName eq 'O''Brien'", "(eq displayName 'O'Brien')"),
        ("displayName eq ''''", "(eq displayName ''')"),
        ("displayName eq ''", "(eq displayName '')"),
        ("displayName eq 'a;b) eq ('", "(eq displayName 'a;b) eq (')"),
        (
            "displayName eq 'héllo wörld ✓'",
            "(eq displayName 'héllo wörld ✓')",
        ),
        ("isEncrypted", "isEncrypted"),
        ("true", "true"),
        ("isEncrypted eq false", "(eq isEncrypted false)"),
        (
            "createdDateTime eq lastModifiedDateTime",
            "(eq createdDateTime lastModifiedDateTime)",
        ),
        ("a ne 1", "(ne a 1)"),
        ("a gt 1", "(gt a 1)"),
        ("a ge 1", "(ge a 1)"),
        ("a lt 1", "(lt a 1)"),
        ("a le 1", "(le a 1)"),
        ("_x1 eq 1", "(eq _x1 1)"),
        ("a\teq\t1", "(eq a 1)"),
        ("  a   eq   1  ", "(eq a 1)"),
        ("((a eq 1))", "(eq a 1)"),
        ("(a)", "a"),
        ("not(a)", "(not a)"),
        ("not not a", "(not (not a))"),
    ];
    for (input, want) in cases {
        assert_eq!(sx(&filter_ok(input)), *want, "{input:?}");
    }
}

#[test]
fn precedence_not_then_comparison_then_and_then_or() {
    let cases: &[(&str, &str)] = &[
        (
            "a eq 1 or b eq 2 and c eq 3",
            "(or (eq a 1) (and (eq b 2) (eq c 3)))",
        ),
        (
            "(a eq 1 or b eq 2) and c eq 3",
            "(and (or (eq a 1) (eq b 2)) (eq c 3))",
        ),
        (
            "a eq 1 and b eq 2 and c eq 3",
            "(and (and (eq a 1) (eq b 2)) (eq c 3))",
        ),
        ("a or b or c", "(or (or a b) c)"),
        ("not a eq true", "(eq (not a) true)"),
        ("not a and b", "(and (not a) b)"),
        (
            "a eq 'x' or not (b eq 'y')",
            "(or (eq a 'x') (not (eq b 'y')))",
        ),
        (
            "x in ('a') and y in (1, 2 ,3)",
            "(and (in x ['a']) (in y [1 2 3]))",
        ),
        ("not x in ('a')", "(in (not x) ['a'])"),
        ("startswith(a, 'x') or b", "(or (startswith a 'x') b)"),
        ("contains(a/b, c)", "(contains a/b c)"),
    ];
    for (input, want) in cases {
        assert_eq!(sx(&filter_ok(input)), *want, "{input:?}");
    }
}

#[test]
fn literals() {
    let cases: &[(&str, &str)] = &[
        ("x eq -5", "(eq x -5)"),
        ("x eq 42", "(eq x 42)"),
        ("x eq 0", "(eq x 0)"),
        ("x eq 9223372036854775807", "(eq x 9223372036854775807)"),
        ("x eq -9223372036854775808", "(eq x -9223372036854775808)"),
        ("x gt 1.5", "(gt x dec:1.5)"),
        ("x gt 1.0", "(gt x dec:1.0)"),
        ("x lt 2e10", "(lt x dec:2e10)"),
        ("x lt 1.5E-3", "(lt x dec:1.5E-3)"),
        ("x lt -2.5e+7", "(lt x dec:-2.5e+7)"),
        ("d eq 2025-01-31", "(eq d date:2025-01-31)"),
        (
            "t ge 2025-01-31T10:00:00Z",
            "(ge t dt:2025-01-31T10:00:00Z)",
        ),
        (
            "t ge 2025-01-31T10:00:00.1234567Z",
            "(ge t dt:2025-01-31T10:00:00.1234567Z)",
        ),
        (
            "t ge 2025-01-31T10:00:00+02:00",
            "(ge t dt:2025-01-31T10:00:00+02:00)",
        ),
        (
            "t ge 2025-01-31T10:00:00-05:30",
            "(ge t dt:2025-01-31T10:00:00-05:30)",
        ),
        ("t ge 2025-01-31T10:00Z", "(ge t dt:2025-01-31T10:00Z)"),
        // `+` decoded to a space in the URL
        (
            "t ge 2025-01-31T10:00:00 02:00",
            "(ge t dt:2025-01-31T10:00:00+02:00)",
        ),
        (
            "t ge 2025-01-31T10:00:00.5 02:00 and x",
            "(and (ge t dt:2025-01-31T10:00:00.5+02:00) x)",
        ),
        (
            "id eq 6f1e2f3a-0c4d-4e5f-8a9b-0123456789ab",
            "(eq id guid:6f1e2f3a-0c4d-4e5f-8a9b-0123456789ab)",
        ),
        (
            "id eq 12345678-ABCD-4EF0-8123-123456789ABC",
            "(eq id guid:12345678-ABCD-4EF0-8123-123456789ABC)",
        ),
        (
            "id in (6f1e2f3a-0c4d-4e5f-8a9b-0123456789ab, null)",
            "(in id [guid:6f1e2f3a-0c4d-4e5f-8a9b-0123456789ab null])",
        ),
        (
            "s in (microsoft.graph.runState'fail', 'success', true, 1.5, 2025-01-01)",
            "(in s [enum:microsoft.graph.runState'fail' 'success' true dec:1.5 date:2025-01-01])",
        ),
        (
            "s eq microsoft.graph.x'a,b'",
            "(eq s enum:microsoft.graph.x'a,b')",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(sx(&filter_ok(input)), *want, "{input:?}");
    }
}

#[test]
fn spans_are_byte_offsets() {
    let e = filter_ok("detectionState eq 'fail'");
    let Expr::Compare {
        op,
        left,
        right,
        span,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(*op, CompareOp::Eq);
    assert_eq!(*span, Span { start: 0, end: 24 });
    assert_eq!(left.span(), Span::new(0, 14));
    assert_eq!(right.span(), Span::new(18, 24));
    assert_eq!(
        **right,
        Expr::Literal(Literal::String("fail".into()), Span::new(18, 24))
    );

    let e = filter_ok("x and startswith(managedDevice/deviceName,'é')");
    let Expr::And(_, call, span) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*span, Span::new(0, 47));
    let Expr::Call { func, args, span } = &**call else {
        panic!("{call:?}")
    };
    assert_eq!(*func, Function::StartsWith);
    assert_eq!(*span, Span::new(6, 47));
    assert_eq!(
        args[0],
        Expr::Path(
            vec!["managedDevice".into(), "deviceName".into()],
            Span::new(17, 41)
        )
    );

    let e = filter_ok("not (a in ('x'))");
    assert_eq!(e.span(), Span::new(0, 15));
    let Expr::Not(inner, _) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(inner.span(), Span::new(5, 15));
}

#[test]
fn depth_limit_allows_exactly_max_depth() {
    let lim = Limits::default();
    let ok = format!("{}a{}", "(".repeat(32), ")".repeat(32));
    assert!(parse_filter(&ok, &lim).is_ok());
    let nots = format!("{}a", "not ".repeat(32));
    assert!(parse_filter(&nots, &lim).is_ok());
    let items: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let list = format!("x in ({})", items.join(","));
    let Expr::In { list, .. } = parse_filter(&list, &lim).unwrap() else {
        panic!()
    };
    assert_eq!(list.len(), 1000);
}

fn tree_depth(e: &Expr) -> usize {
    1 + match e {
        Expr::Literal(..) | Expr::Path(..) => 0,
        Expr::Compare { left, right, .. } => tree_depth(left).max(tree_depth(right)),
        Expr::And(a, b, _) | Expr::Or(a, b, _) => tree_depth(a).max(tree_depth(b)),
        Expr::Not(a, _) => tree_depth(a),
        Expr::In { expr, .. } => tree_depth(expr) + 1,
        Expr::Call { args, .. } => args.iter().map(tree_depth).max().unwrap_or(0),
    }
}

#[test]
fn long_and_or_chains_are_balanced_and_keep_order() {
    let cases: &[(&str, &str)] = &[
        ("a and b and c and d", "(and (and a b) (and c d))"),
        ("a or b or c or d or e", "(or (or (or a b) c) (or d e))"),
        (
            "a and b or c and d and e",
            "(or (and a b) (and (and c d) e))",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(sx(&filter_ok(input)), *want, "{input:?}");
    }
    let chain = vec!["x eq 1"; 800].join(" or ");
    assert!(chain.len() <= 8192);
    let e = filter_ok(&chain);
    assert_eq!(e.span(), Span::new(0, chain.len()));
    assert!(tree_depth(&e) <= 12, "depth {}", tree_depth(&e));
}
