//! Reads of collections: ordering (NULLs, case-insensitive strings, ties), keyset paging (every
//! row once, in order, whatever the page size), `$skip`, counts (from counters and from rows),
//! `$expand=managedDevice`, and OData's two-valued filter logic on non-string properties and
//! through the bound device.

use std::collections::{BTreeMap, HashSet};

use remediate_domain::model::{Kind, DEVICE_RUN_STATE, MANAGED_DEVICE};
use remediate_domain::query::{Column, CompareOp, Filter, ListQuery, Scope, SortKey};
use remediate_domain::{Record, Value};
use remediate_store::{SqlStore, Store};

use crate::both;
use crate::values::*;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Text(String),
}

/// The sort values of one `$orderby` key: strings compare by their lower case, then exactly.
fn sort_parts(record: Option<&Record>, column: &Column) -> Vec<Option<Key>> {
    let p = column.property();
    let folded = p.kind == Kind::String && p.name != "id";
    let value = record.map_or(Value::Null, |r| r.values[column.index].clone());
    match value {
        Value::Null if folded => vec![None, None],
        Value::Null => vec![None],
        Value::Str(s) if folded => vec![Some(Key::Text(s.to_lowercase())), Some(Key::Text(s))],
        Value::Str(s) => vec![Some(Key::Text(s))],
        Value::Int(i) | Value::Enum(i) => vec![Some(Key::Int(i))],
        Value::Time(t) => vec![Some(Key::Int(t.ticks()))],
        Value::Bool(b) => vec![Some(Key::Int(i64::from(b)))],
        other => panic!("no order on {other:?}"),
    }
}

/// The order the store promises, computed here: each key ascending with NULLs first or
/// descending with NULLs last, then `id` in the direction of the last key.
fn reference_order(items: &[(Record, Option<Record>)], order: &[SortKey]) -> Vec<String> {
    let key_of = |(record, device): &(Record, Option<Record>)| {
        let mut parts = Vec::new();
        for key in order {
            let source = if key.column.via_device {
                device.as_ref()
            } else {
                Some(record)
            };
            for part in sort_parts(source, &key.column) {
                parts.push((part, key.descending));
            }
        }
        let last = order.last().is_some_and(|k| k.descending);
        parts.push((Some(Key::Text(record.id().to_owned())), last));
        parts
    };
    let mut keyed: Vec<_> = items
        .iter()
        .map(|item| (key_of(item), item.0.id()))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        for ((x, descending), (y, _)) in a.iter().zip(b) {
            let ordering = if *descending { y.cmp(x) } else { x.cmp(y) };
            if ordering.is_ne() {
                return ordering;
            }
        }
        std::cmp::Ordering::Equal
    });
    keyed.into_iter().map(|(_, id)| id.to_owned()).collect()
}

/// Walk every page of `query` as a client following `@odata.nextLink` does; the ids in the
/// order served, after checking each page's shape.
async fn walk(s: &SqlStore, query: &ListQuery) -> Vec<(Record, Option<Record>)> {
    let mut query = query.clone();
    let mut out = Vec::new();
    let mut pages = 0;
    let mut count = None;
    loop {
        let page = s.list(A, &query).await.unwrap();
        pages += 1;
        assert!(pages < 1000, "paging does not end");
        assert!(page.records.len() <= query.top);
        if query.count {
            assert!(page.count.is_some());
            if let Some(first) = count {
                assert_eq!(page.count, Some(first), "the count changed between pages");
            }
            count = page.count;
        }
        let devices = if query.expand_device {
            assert_eq!(page.devices.len(), page.records.len());
            page.devices.into_iter().collect()
        } else {
            assert!(page.devices.is_empty());
            vec![None; page.records.len()]
        };
        let full = page.records.len() == query.top;
        out.extend(page.records.into_iter().zip(devices));
        match page.next {
            Some(after) => {
                assert!(full, "only the last page may be short");
                query.after = Some(after);
                query.skip = 0;
            }
            None => break,
        }
    }
    if let Some(n) = count {
        assert_eq!(n as usize, out.len());
    }
    out
}

fn ids_of(items: &[(Record, Option<Record>)]) -> Vec<String> {
    items.iter().map(|(r, _)| r.id().to_owned()).collect()
}

fn assert_once_in_order(served: &[String], expected: &[String], what: &str) {
    let distinct: HashSet<&String> = served.iter().collect();
    assert_eq!(distinct.len(), served.len(), "{what}: a row served twice");
    assert_eq!(served, expected, "{what}");
}

const NAMES: [Option<&str>; 12] = [
    Some("alpha"),
    Some("Alpha"),
    Some("ALPHA"),
    Some("beta"),
    None,
    Some(""),
    Some("gamma"),
    Some("Beta"),
    Some("Ärger"),
    Some("zeta"),
    Some("a_b"),
    Some("50% off"),
];

/// 36 devices: every name three times, enrolment days with ties (and never-set ones), four
/// compliance states.
async fn device_fixture(s: &SqlStore) -> Vec<(Record, Option<Record>)> {
    for i in 0..36 {
        let mut fields = vec![
            field(
                &MANAGED_DEVICE,
                "deviceName",
                NAMES[i % NAMES.len()].map_or(Value::Null, text),
            ),
            field(
                &MANAGED_DEVICE,
                "complianceState",
                Value::Enum([0, 1, 2, 254][i % 4]),
            ),
        ];
        if i % 7 != 0 {
            let day = [1, 2, 3, 2, 1][i % 5];
            fields.push(field(
                &MANAGED_DEVICE,
                "enrolledDateTime",
                Value::Time(time(&format!("2024-01-0{day}T00:00:00Z"))),
            ));
        }
        new_device_with(s, A, fields).await;
    }
    rows(s, A, &list(Scope::devices()))
        .await
        .into_iter()
        .map(|r| (r, None))
        .collect()
}

both!(keyset_paging_serves_every_row_once_in_order, |s| {
    let devices = device_fixture(&s).await;
    assert_eq!(devices.len(), 36);
    let name = col(&MANAGED_DEVICE, "deviceName");
    let enrolled = col(&MANAGED_DEVICE, "enrolledDateTime");
    let compliance = col(&MANAGED_DEVICE, "complianceState");
    let orders = [
        vec![],
        vec![asc(name)],
        vec![desc(name)],
        vec![desc(enrolled)],
        vec![asc(compliance), desc(name)],
        vec![desc(name), asc(enrolled)],
    ];
    for order in &orders {
        let expected = reference_order(&devices, order);
        for top in [1, 5, 35, 36, 100] {
            let query = ListQuery {
                order: order.clone(),
                top,
                ..list(Scope::devices())
            };
            let served = ids_of(&walk(&s, &query).await);
            assert_once_in_order(
                &served,
                &expected,
                &format!("{} top {top}", describe_order(order)),
            );
        }
    }
    // Case variants sort together, ties broken by the exact value: ALPHA, Alpha, alpha.
    let by_name = reference_order(&devices, &[asc(name)]);
    let first_names: Vec<Value> = by_name
        .iter()
        .map(|id| {
            devices
                .iter()
                .find(|(r, _)| r.id() == id)
                .unwrap()
                .0
                .get("deviceName")
                .clone()
        })
        .collect();
    assert_eq!(first_names[..3], [Value::Null, Value::Null, Value::Null]);
    assert_eq!(first_names[3..6], [text(""), text(""), text("")]);
    assert_eq!(first_names[6], text("50% off"));
    assert_eq!(first_names[9], text("a_b"));
    assert_eq!(first_names[12], text("ALPHA"));
    assert_eq!(first_names[15], text("Alpha"));
    assert_eq!(first_names[18], text("alpha"));
    assert_eq!(first_names[33], text("Ärger"));

    // $skip, then the keyset from the first page on.
    let query = ListQuery {
        order: vec![asc(name)],
        top: 5,
        skip: 10,
        ..list(Scope::devices())
    };
    let page = s.list(A, &query).await.unwrap();
    let first: Vec<String> = page.records.iter().map(|r| r.id().to_owned()).collect();
    assert_eq!(first, by_name[10..15]);
    let rest = ListQuery {
        after: page.next,
        skip: 0,
        ..query
    };
    assert_eq!(ids_of(&walk(&s, &rest).await), by_name[15..]);

    // A filtered walk with its count on every page.
    let not_noncompliant = cmp(compliance, CompareOp::Ne, Value::Enum(2));
    let matching: Vec<(Record, Option<Record>)> = devices
        .iter()
        .filter(|(r, _)| r.get("complianceState") != &Value::Enum(2))
        .cloned()
        .collect();
    let query = ListQuery {
        filter: Some(not_noncompliant),
        order: vec![desc(name)],
        top: 4,
        count: true,
        ..list(Scope::devices())
    };
    let served = ids_of(&walk(&s, &query).await);
    assert_once_in_order(
        &served,
        &reference_order(&matching, &[desc(name)]),
        "filtered",
    );
    assert_eq!(served.len(), 27);
});

both!(run_states_order_and_page_by_their_device, |s| {
    let script = new_script(&s, A, "s").await;
    let names = [Some("m"), Some("M"), None, Some("a"), Some("z"), Some("a")];
    for i in 0..12 {
        let device = new_device(&s, A, names[i % names.len()]).await;
        report(
            &s,
            A,
            &script,
            Some(&device),
            states(i as i64 % 3, rem::UNKNOWN),
        )
        .await;
    }
    for i in 0..8 {
        report(&s, A, &script, None, states(i % 3, rem::UNKNOWN)).await;
    }
    let devices: BTreeMap<String, Record> = rows(&s, A, &list(Scope::devices()))
        .await
        .into_iter()
        .map(|r| (r.id().to_owned(), r))
        .collect();
    let scope = Scope::run_states(script.clone());
    let items: Vec<(Record, Option<Record>)> = rows(&s, A, &list(scope.clone()))
        .await
        .into_iter()
        .map(|r| {
            let device = r.device_id.as_ref().map(|d| devices[d].clone());
            (r, device)
        })
        .collect();
    assert_eq!(items.len(), 20);
    let device_name = device_col("deviceName");
    let detection = col(&DEVICE_RUN_STATE, "detectionState");
    for order in [
        vec![asc(device_name)],
        vec![desc(device_name)],
        vec![desc(device_name), asc(detection)],
        vec![asc(detection), asc(device_name)],
    ] {
        let expected = reference_order(&items, &order);
        for (top, expand) in [(1, false), (3, true), (7, false), (20, true)] {
            let query = ListQuery {
                order: order.clone(),
                top,
                expand_device: expand,
                ..list(scope.clone())
            };
            let served = walk(&s, &query).await;
            assert_once_in_order(
                &ids_of(&served),
                &expected,
                &format!("{} top {top}", describe_order(&order)),
            );
            if expand {
                // Each run state comes with its bound device (none when unbound).
                for (state, device) in &served {
                    let bound = state.device_id.as_ref().map(|d| &devices[d]);
                    assert_eq!(device.as_ref(), bound, "{}", state.id());
                }
            }
        }
    }
    // The unfiltered count comes from the counters, the filtered one from the rows.
    assert_eq!(count(&s, A, scope.clone(), None).await, 20);
    assert_eq!(
        count(&s, A, scope.clone(), Some(Filter::Const(true))).await,
        20
    );
    // Filters through the device: case-insensitive, and two-valued for unbound run states.
    let bound_to = |names: &[Option<&str>]| -> Vec<String> {
        let mut ids: Vec<String> = items
            .iter()
            .filter(|(_, d)| {
                let name = d.as_ref().and_then(|d| d.get("deviceName").as_str());
                names.contains(&name)
            })
            .map(|(r, _)| r.id().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let is_m = cmp(device_name, CompareOp::Eq, text("M"));
    assert_eq!(
        ids(&s, A, &filtered(scope.clone(), is_m.clone())).await,
        bound_to(&[Some("m"), Some("M")])
    );
    assert_eq!(
        ids(&s, A, &filtered(scope.clone(), not(is_m))).await,
        bound_to(&[None, Some("a"), Some("z")])
    );
    let no_name = cmp(device_name, CompareOp::Eq, Value::Null);
    assert_eq!(
        ids(&s, A, &filtered(scope.clone(), no_name)).await,
        bound_to(&[None])
    );
    assert_eq!(bound_to(&[None]).len(), 10, "8 unbound, 2 with a null name");
});

both!(filters_use_two_valued_logic, |s| {
    let device = |compliance: i64, day: Option<&str>, encrypted: bool, os: Option<&str>| {
        let mut fields = vec![
            field(&MANAGED_DEVICE, "complianceState", Value::Enum(compliance)),
            field(&MANAGED_DEVICE, "isEncrypted", Value::Bool(encrypted)),
            field(&MANAGED_DEVICE, "osVersion", os.map_or(Value::Null, text)),
        ];
        if let Some(day) = day {
            fields.push(field(
                &MANAGED_DEVICE,
                "enrolledDateTime",
                Value::Time(time(day)),
            ));
        }
        fields
    };
    let d0 = new_device_with(
        &s,
        A,
        device(1, Some("2024-01-01T00:00:00Z"), true, Some("10.0")),
    )
    .await;
    let d1 = new_device_with(&s, A, device(2, Some("2024-02-01T00:00:00Z"), false, None)).await;
    let d2 = new_device_with(
        &s,
        A,
        device(0, Some("2024-03-01T00:00:00Z"), true, Some("11.0")),
    )
    .await;
    let d3 = new_device_with(&s, A, device(254, None, false, Some(""))).await;
    let compliance = col(&MANAGED_DEVICE, "complianceState");
    let enrolled = col(&MANAGED_DEVICE, "enrolledDateTime");
    let encrypted = col(&MANAGED_DEVICE, "isEncrypted");
    let os = col(&MANAGED_DEVICE, "osVersion");
    let feb = Value::Time(time("2024-02-01T00:00:00Z"));
    use CompareOp::*;
    let cases: Vec<(Filter, Vec<&String>)> = vec![
        (cmp(compliance, Eq, Value::Enum(2)), vec![&d1]),
        (cmp(compliance, Ne, Value::Enum(2)), vec![&d0, &d2, &d3]),
        (cmp(compliance, Gt, Value::Enum(1)), vec![&d1, &d3]),
        (
            Filter::In {
                column: compliance,
                values: vec![Value::Enum(1), Value::Enum(254)],
            },
            vec![&d0, &d3],
        ),
        (
            Filter::In {
                column: compliance,
                values: vec![],
            },
            vec![],
        ),
        (cmp(enrolled, Ge, feb.clone()), vec![&d1, &d2]),
        (cmp(enrolled, Lt, feb), vec![&d0, &d3]),
        (cmp(encrypted, Eq, Value::Bool(true)), vec![&d0, &d2]),
        (not(cmp(encrypted, Eq, Value::Bool(true))), vec![&d1, &d3]),
        (cmp(os, Eq, Value::Null), vec![&d1]),
        (cmp(os, Ne, Value::Null), vec![&d0, &d2, &d3]),
        // A null is not equal to a value: `ne` and `not eq` include it.
        (cmp(os, Ne, text("10.0")), vec![&d1, &d2, &d3]),
        (not(cmp(os, Eq, text("10.0"))), vec![&d1, &d2, &d3]),
        // An ordering comparison with a null row is false, so its negation is true.
        (cmp(os, Gt, text("10")), vec![&d0, &d2]),
        (not(cmp(os, Gt, text("10"))), vec![&d1, &d3]),
        (
            Filter::In {
                column: os,
                values: vec![text("10.0"), Value::Null],
            },
            vec![&d0, &d1],
        ),
        (
            not(Filter::In {
                column: os,
                values: vec![text("10.0")],
            }),
            vec![&d1, &d2, &d3],
        ),
        (
            and(
                cmp(compliance, Ne, Value::Enum(2)),
                cmp(encrypted, Eq, Value::Bool(true)),
            ),
            vec![&d0, &d2],
        ),
        (
            or(
                cmp(compliance, Eq, Value::Enum(2)),
                cmp(os, Eq, text("11.0")),
            ),
            vec![&d1, &d2],
        ),
        (Filter::Const(false), vec![]),
        (Filter::Const(true), vec![&d0, &d1, &d2, &d3]),
    ];
    for (filter, expected) in cases {
        let mut expected: Vec<String> = expected.into_iter().cloned().collect();
        expected.sort();
        let served = ids(&s, A, &filtered(Scope::devices(), filter.clone())).await;
        assert_eq!(served, expected, "{}", describe(&filter));
        let n = count(&s, A, Scope::devices(), Some(filter.clone())).await;
        assert_eq!(n as usize, expected.len(), "count of {}", describe(&filter));
    }
});

both!(counts_come_with_pages_and_alone, |s| {
    for i in 0..7 {
        new_device(&s, A, Some(&format!("d{i}"))).await;
    }
    // $count with a page: the count covers every row, the page only `top`.
    let query = ListQuery {
        top: 3,
        count: true,
        ..list(Scope::devices())
    };
    let page = s.list(A, &query).await.unwrap();
    assert_eq!(page.records.len(), 3);
    assert_eq!(page.count, Some(7));
    assert!(page.next.is_some());
    // Without $count there is none.
    let page = s.list(A, &list(Scope::devices())).await.unwrap();
    assert_eq!(page.count, None);
    assert_eq!(page.records.len(), 7);
    // /$count alone.
    assert_eq!(count(&s, A, Scope::devices(), None).await, 7);
    let name = col(&MANAGED_DEVICE, "deviceName");
    let low = cmp(name, CompareOp::Lt, text("D3"));
    assert_eq!(count(&s, A, Scope::devices(), Some(low)).await, 3);
    assert_eq!(count(&s, B, Scope::devices(), None).await, 0);
    let script = new_script(&s, A, "s").await;
    let scope = Scope::run_states(script);
    assert_eq!(count(&s, A, scope, None).await, 0);
});
