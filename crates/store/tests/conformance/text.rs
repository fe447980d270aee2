//! The filter → SQL translation of strings, identical on both databases: case-insensitive
//! comparison and `startswith`/`endswith`/`contains` on properties with a folded shadow column
//! (Unicode lower case, so `Ä` matches `ä`), exact ones on `id` (which has none; SQLite's `LIKE`
//! alone would ignore ASCII case), `LIKE` metacharacters taken literally, byte order of ids,
//! and NUL and the store's escape character (U+FDD0) round-tripping through every read.

use remediate_domain::model::{DEVICE_RUN_STATE, MANAGED_DEVICE};
use remediate_domain::query::{Column, CompareOp, Filter, Scope, StringFunction};
use remediate_domain::Record;
use remediate_store::{EntityRef, SqlStore, Store};

use crate::both;
use crate::values::*;

fn function(function: StringFunction, column: Column, needle: &str) -> Filter {
    Filter::Function {
        function,
        column,
        text: needle.to_owned(),
    }
}

use StringFunction::{Contains, EndsWith, StartsWith};

/// Check each filter against the expected names (the fixture maps names to ids).
async fn check(
    s: &SqlStore,
    scope: Scope,
    fixture: &[(String, Option<String>)],
    cases: Vec<(Filter, Vec<Option<&str>>)>,
) {
    for (filter, names) in cases {
        let mut expected: Vec<String> = fixture
            .iter()
            .filter(|(_, name)| names.contains(&name.as_deref()))
            .map(|(id, _)| id.clone())
            .collect();
        expected.sort();
        assert_eq!(
            names.len(),
            expected.len(),
            "the fixture lacks a name of {names:?}"
        );
        let served = ids(s, A, &filtered(scope.clone(), filter.clone())).await;
        assert_eq!(served, expected, "{}", describe(&filter));
        let n = count(s, A, scope.clone(), Some(filter.clone())).await;
        assert_eq!(n as usize, expected.len(), "count of {}", describe(&filter));
    }
}

both!(strings_compare_case_insensitively, |s| {
    let names = [
        Some("alpha"),
        Some("Alpha"),
        Some("ALPHA"),
        Some("Ärger"),
        Some("ärger-2"),
        Some("50% off"),
        Some("a_b"),
        Some("ab"),
        Some("a\\b"),
        Some("nul\0here"),
        Some(""),
        None,
    ];
    let mut fixture = Vec::new();
    for name in names {
        let id = new_device(&s, A, name).await;
        fixture.push((id, name.map(str::to_owned)));
    }
    let name = col(&MANAGED_DEVICE, "deviceName");
    let alphas = vec![Some("alpha"), Some("Alpha"), Some("ALPHA")];
    use CompareOp::*;
    let everything_but = |skip: &[Option<&'static str>]| -> Vec<Option<&'static str>> {
        names
            .iter()
            .filter(|n| !skip.contains(n))
            .copied()
            .collect()
    };
    let cases = vec![
        (cmp(name, Eq, text("ALPHA")), alphas.clone()),
        (cmp(name, Eq, text("ärger")), vec![Some("Ärger")]),
        (cmp(name, Eq, text("NUL\0HERE")), vec![Some("nul\0here")]),
        (cmp(name, Ne, text("alpha")), everything_but(&alphas)),
        (
            cmp(name, Gt, text("b")),
            vec![Some("Ärger"), Some("ärger-2"), Some("nul\0here")],
        ),
        (
            Filter::In {
                column: name,
                values: vec![text("ALPHA"), text("AB")],
            },
            vec![Some("alpha"), Some("Alpha"), Some("ALPHA"), Some("ab")],
        ),
        (function(StartsWith, name, "AL"), alphas.clone()),
        (
            function(StartsWith, name, "ÄR"),
            vec![Some("Ärger"), Some("ärger-2")],
        ),
        (function(Contains, name, "LP"), alphas.clone()),
        (
            function(EndsWith, name, "B"),
            vec![Some("a_b"), Some("ab"), Some("a\\b")],
        ),
        // LIKE's metacharacters are literal.
        (function(Contains, name, "%"), vec![Some("50% off")]),
        (function(Contains, name, "_"), vec![Some("a_b")]),
        (function(StartsWith, name, "a_"), vec![Some("a_b")]),
        (function(Contains, name, "\\"), vec![Some("a\\b")]),
        (function(Contains, name, "\0"), vec![Some("nul\0here")]),
        // Every non-null value starts with the empty string; null does not.
        (function(StartsWith, name, ""), everything_but(&[None])),
        // Two-valued: the null row does not start with "a", so the negation holds for it.
        (
            not(function(StartsWith, name, "a")),
            vec![
                Some("Ärger"),
                Some("ärger-2"),
                Some("50% off"),
                Some("nul\0here"),
                Some(""),
                None,
            ],
        ),
    ];
    check(&s, Scope::devices(), &fixture, cases).await;
});

both!(string_functions_on_id_are_exact, |s| {
    let names = ["dev-abc", "DEV-ABC", "Dev-Abc-2", "dev%x", "dev_y", "xdev"];
    let mut fixture = Vec::new();
    for id in names {
        register_device(&s, A, id, "d").await;
        fixture.push((id.to_owned(), Some(id.to_owned())));
    }
    // Ids sort by their bytes on both databases (PostgreSQL uses the "C" collation).
    let served: Vec<String> = rows(&s, A, &list(Scope::devices()))
        .await
        .iter()
        .map(|r| r.id().to_owned())
        .collect();
    assert_eq!(
        served,
        ["DEV-ABC", "Dev-Abc-2", "dev%x", "dev-abc", "dev_y", "xdev"]
    );
    let id = col(&MANAGED_DEVICE, "id");
    use CompareOp::*;
    let cases = vec![
        (
            function(StartsWith, id, "dev"),
            vec![Some("dev-abc"), Some("dev%x"), Some("dev_y")],
        ),
        (function(StartsWith, id, "DEV"), vec![Some("DEV-ABC")]),
        (function(EndsWith, id, "abc"), vec![Some("dev-abc")]),
        (function(EndsWith, id, "ABC"), vec![Some("DEV-ABC")]),
        (function(Contains, id, "V-A"), vec![Some("DEV-ABC")]),
        (function(Contains, id, "v-A"), vec![Some("Dev-Abc-2")]),
        (
            function(Contains, id, "dev"),
            vec![Some("dev-abc"), Some("dev%x"), Some("dev_y"), Some("xdev")],
        ),
        (function(Contains, id, "%"), vec![Some("dev%x")]),
        (function(StartsWith, id, "dev_"), vec![Some("dev_y")]),
        (function(StartsWith, id, "dev%"), vec![Some("dev%x")]),
        (
            function(Contains, id, ""),
            names.iter().map(|n| Some(*n)).collect(),
        ),
        (cmp(id, Eq, text("DEV-ABC")), vec![Some("DEV-ABC")]),
        (cmp(id, Eq, text("dev-ABC")), vec![]),
        (
            Filter::In {
                column: id,
                values: vec![text("dev-abc"), text("Dev-Abc-2")],
            },
            vec![Some("dev-abc"), Some("Dev-Abc-2")],
        ),
        (
            cmp(id, Gt, text("dev")),
            vec![Some("dev-abc"), Some("dev%x"), Some("dev_y"), Some("xdev")],
        ),
    ];
    check(&s, Scope::devices(), &fixture, cases).await;
});

both!(nul_and_the_escape_character_round_trip, |s| {
    let script = new_script(&s, A, "s").await;
    let outputs = [
        "line1\0line2\u{FDD0}tail",
        "line1line2",
        // The escape character followed by '0' must not read back as NUL …
        "x\u{FDD0}0y",
        // … nor NUL as the escape character.
        "x\0y",
        "\0",
        "\u{FDD0}",
    ];
    let output = "preRemediationDetectionScriptOutput";
    let mut fixture = Vec::new();
    for (i, text_value) in outputs.iter().enumerate() {
        let device = new_device(&s, A, Some(&format!("d{i}"))).await;
        let fields = vec![field(&DEVICE_RUN_STATE, output, text(text_value))];
        let state = report(&s, A, &script, Some(&device), fields).await;
        fixture.push((state, device));
    }
    // Every read gives back exactly what was written.
    let listed = run_states(&s, A, &script).await;
    for ((state, device), written) in fixture.iter().zip(outputs) {
        let expected = text(written);
        let key = EntityRef::RunState {
            script_id: script.clone(),
            id: state.id().to_owned(),
        };
        let got: Record = s.get(A, &key).await.unwrap().unwrap();
        assert_eq!(got.get(output), &expected, "get of {written:?}");
        let in_list = listed.iter().find(|r| r.id() == state.id()).unwrap();
        assert_eq!(in_list.get(output), &expected, "list of {written:?}");
        let history = Scope::history(script.clone(), state.id().to_owned());
        let records = rows(&s, A, &list(history)).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].get(output), &expected, "history of {written:?}");
        let views = s.device_script_states(A, device).await.unwrap().unwrap();
        assert_eq!(
            views[0].get(output),
            &expected,
            "device view of {written:?}"
        );
    }
    // Filters see the original text.
    let fixture: Vec<(String, Option<String>)> = fixture
        .iter()
        .zip(outputs)
        .map(|((state, _), written)| (state.id().to_owned(), Some(written.to_owned())))
        .collect();
    let column = col(&DEVICE_RUN_STATE, output);
    let o = |i: usize| Some(outputs[i]);
    let cases = vec![
        (cmp(column, CompareOp::Eq, text(outputs[2])), vec![o(2)]),
        (cmp(column, CompareOp::Eq, text(outputs[3])), vec![o(3)]),
        (cmp(column, CompareOp::Eq, text("\0")), vec![o(4)]),
        (cmp(column, CompareOp::Eq, text("\u{FDD0}")), vec![o(5)]),
        (function(StartsWith, column, "LINE1\0"), vec![o(0)]),
        (function(StartsWith, column, "line1"), vec![o(0), o(1)]),
        (function(StartsWith, column, "x\0"), vec![o(3)]),
        (function(StartsWith, column, "x\u{FDD0}"), vec![o(2)]),
        (function(StartsWith, column, "\0"), vec![o(4)]),
        (function(Contains, column, "\0LINE2"), vec![o(0)]),
        (
            function(Contains, column, "\u{FDD0}"),
            vec![o(0), o(2), o(5)],
        ),
        (function(EndsWith, column, "\u{FDD0}TAIL"), vec![o(0)]),
        (function(EndsWith, column, "x\0y"), vec![o(3)]),
        // Searches never match across the stored form of a NUL or of U+FDD0: "x\0y" does not
        // contain "0y" (only "x\u{FDD0}0y" does), and "x\u{FDD0}0y" does not end with "\0y".
        (function(Contains, column, "0y"), vec![o(2)]),
        (function(EndsWith, column, "\0y"), vec![o(3)]),
        (function(Contains, column, "e2\u{FDD0}t"), vec![o(0)]),
        (function(Contains, column, "\0\0"), vec![]),
    ];
    let scope = Scope::run_states(script);
    check(&s, scope, &fixture, cases).await;
});
