//! Plans of a script's run-state list chosen from the counters, so the device status table (and
//! the API's `deviceRunStates` with the same `$filter`/`$orderby`) answers as fast at 1,000,000
//! run states as at 100 (docs/query-plans.md, "The device status table"). The rows and their
//! order are always those of the generic plan in `reads`; only how they are found changes.
//!
//! - Counting: a filter that is only `detectionState`/`remediationState` equalities is counted
//!   from the state counters ([`state_equalities`], [`state_matches`]); one that matches nothing
//!   answers an empty page without reading rows.
//! - Searching: a rare device-name search reads only the run states of the devices it matches,
//!   found through the trigram indexes of migration 0012 ([`search_devices`]).
//! - Tuning: [`set_list_plan_min_rows`] (or `REMEDIATE_LIST_PLAN_MIN_ROWS`) sets from how many
//!   matching run states the scale plans are used; tests lower it, or turn them off to compare.

use std::sync::atomic::{AtomicU64, Ordering};

use remediate_domain::collections::CollectionId;
use remediate_domain::query::{After, CompareOp, Filter, ListQuery, SortKey, StringFunction};
use remediate_domain::Value;

use crate::counters;
use crate::db::{self, Conn, DbError, Row};
use crate::translate::{self, Arg, KeyExpr, Sql};

/// The default of [`min_rows`]: below it the generic plan is fast whatever it does.
const DEFAULT_MIN_ROWS: u64 = 10_000;
/// [`MIN_ROWS`] not read from the environment yet.
const UNSET: u64 = u64::MAX - 1;
/// [`MIN_ROWS`]: never use the scale plans.
const OFF: u64 = u64::MAX;

static MIN_ROWS: AtomicU64 = AtomicU64::new(UNSET);

/// From how many matching run states the scale plans are used (`None`: never; tests compare
/// both). Process-wide: the plans change the cost of a list, never its rows.
pub fn set_list_plan_min_rows(min_rows: Option<u64>) {
    MIN_ROWS.store(
        min_rows.map_or(OFF, |n| n.min(UNSET - 1)),
        Ordering::Relaxed,
    );
}

/// The threshold in force: [`set_list_plan_min_rows`], else `REMEDIATE_LIST_PLAN_MIN_ROWS`
/// (a number, or `off`), else [`DEFAULT_MIN_ROWS`]. `None` when the scale plans are off.
pub(crate) fn min_rows() -> Option<u64> {
    let mut n = MIN_ROWS.load(Ordering::Relaxed);
    if n == UNSET {
        n = match std::env::var("REMEDIATE_LIST_PLAN_MIN_ROWS") {
            Ok(v) if v.trim() == "off" => OFF,
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .map_or(DEFAULT_MIN_ROWS, |n| n.min(UNSET - 1)),
            Err(_) => DEFAULT_MIN_ROWS,
        };
        MIN_ROWS.store(n, Ordering::Relaxed);
    }
    (n != OFF).then_some(n)
}

/// A run-state filter that is only a conjunction of `detectionState eq …` and
/// `remediationState eq …` with non-null values: its `(is detection, value)` constraints (several
/// on one column all apply). `None` for any other filter.
pub(crate) fn state_equalities(filter: &Filter) -> Option<Vec<(bool, i64)>> {
    match filter {
        Filter::And(a, b) => {
            let mut out = state_equalities(a)?;
            out.extend(state_equalities(b)?);
            Some(out)
        }
        Filter::Compare {
            column,
            op: CompareOp::Eq,
            value: Value::Enum(v) | Value::Int(v),
        } if !column.via_device => match column.property().name {
            "detectionState" => Some(vec![(true, *v)]),
            "remediationState" => Some(vec![(false, *v)]),
            _ => None,
        },
        _ => None,
    }
}

/// The `detectionState eq …`/`remediationState eq …` conjuncts of a run-state filter that also
/// has other conjuncts (a device-name search): what the counters can bound. `None` when it has
/// none, or when the filter is only state equalities ([`state_equalities`] serves that).
pub(crate) fn state_conjuncts(filter: &Filter) -> Option<Vec<(bool, i64)>> {
    fn collect(filter: &Filter, out: &mut Vec<(bool, i64)>) {
        match filter {
            Filter::And(a, b) => {
                collect(a, out);
                collect(b, out);
            }
            other => out.extend(state_equalities(other).unwrap_or_default()),
        }
    }
    if state_equalities(filter).is_some() {
        return None;
    }
    let mut out = Vec::new();
    collect(filter, &mut out);
    (!out.is_empty()).then_some(out)
}

/// Does a list with the state equalities `wanted` need their count from the counters? Not when
/// the page asks for no `$count` and one index serves both the filter and the order, so walking
/// it finds the page — or that nothing matches — at once: a single `detectionState` equality
/// ordered by id, detection state or last update (the indexes on (…, detectionState, id) and
/// (…, detectionState, lastStateUpdateDateTime, id)), or a single `remediationState` equality
/// ordered by id or remediation state (…, remediationState, id). That spares the common report
/// page ("failures, newest first") the counters' read — a second round trip on PostgreSQL.
pub(crate) fn needs_state_matches(query: &ListQuery, wanted: &[(bool, i64)]) -> bool {
    let [(detection, _)] = wanted else {
        return true;
    };
    let served = query.order.iter().all(|key| {
        !key.column.via_device
            && match key.column.property().name {
                "id" => true,
                "detectionState" | "lastStateUpdateDateTime" => *detection,
                "remediationState" => !*detection,
                _ => false,
            }
    });
    query.count || !served
}

/// What the state counters say of a filter of [`state_equalities`]: how many run states of the
/// script meet every constraint, and how to read them when the planner's own choice is the slow
/// one ([`IndexHint`]). Exact, constant time.
///
/// `exact`: the filter is only these equalities (else the matches are an upper bound: a search
/// is also applied).
pub(crate) async fn state_matches(
    c: &mut dyn Conn,
    tenant: &str,
    query: &ListQuery,
    wanted: &[(bool, i64)],
    exact: bool,
) -> Result<(i64, Option<IndexHint>), DbError> {
    let script = query.scope.parents.first().map_or("", String::as_str);
    let cells = counters::state_counts(c, tenant, script).await?;
    // The run states meeting the constraints on detection (true) or remediation (false), or on
    // both (None).
    let matching = |column: Option<bool>| -> i64 {
        cells
            .iter()
            .filter(|(det, rem, _)| {
                wanted.iter().all(|(is_det, v)| match column {
                    Some(c) if c != *is_det => true,
                    _ if *is_det => det == v,
                    _ => rem == v,
                })
            })
            .map(|(_, _, n)| n)
            .sum()
    };
    let matches = matching(None);
    if c.in_snapshot() {
        if let Some(list) = segments(query, wanted, &cells, matches, exact) {
            return Ok((matches, Some(IndexHint::Segments(list))));
        }
    }
    let hint = if index_hint_applies(query, wanted) {
        // PostgreSQL's planner knows the values' frequencies and picks the smaller side itself.
        (c.is_sqlite() && matching(Some(false)) < matching(Some(true)))
            .then_some(IndexHint::Index("device_run_states_remediation"))
    } else {
        cross_sort_hint(query, wanted, &cells, matches)
            .or_else(|| {
                small_filter_hint(query, wanted, matches, || {
                    matching(Some(false)) < matching(Some(true))
                })
            })
            .map(IndexHint::Filter)
    };
    Ok((matches, hint))
}

/// How a page of state equalities should be read when the planners' own choice is slow
/// ([`state_matches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexHint {
    /// SQLite: read the rows from this index (`INDEXED BY`).
    Index(&'static str),
    /// Read the matches through the filter's index (named, for SQLite's `INDEXED BY`) and sort
    /// them, not by walking the order's index: on PostgreSQL the first sort key — always a state
    /// or a time, an integer — is written `(… + 0)`, which no index serves (the same values, so
    /// the same order and keyset bounds), and its planner reads the filter's index with a top-N
    /// sort.
    Filter(&'static str),
    /// Read the page one value of the sort column at a time ([`segments`], [`segment_rows`]).
    Segments(Vec<Segment>),
}

/// The run states of a page sorted by the state column its filter does not constrain whose
/// sort value is `value`: read by id (the order within one sort value) from `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    value: i64,
    /// Matches of this value to pass over first (`$skip`).
    offset: u64,
    /// Only the rows after this id in the page's direction (the keyset position's value).
    after_id: Option<String>,
    /// The filter's state index or the sort column's (SQLite `INDEXED BY`).
    index: &'static str,
}

/// At most this many matches are read from the filter's own index and sorted when the order is
/// that of another index (about 200–250 ms on SQLite at 20,000–25,000: the rows are sorted
/// whole, outputs included).
const SMALL_FILTER: i64 = 25_000;

/// A filter of few matches ordered by a time (last sync, or last update without a detection
/// filter): SQLite walks the time's index and tests each row, which finds the page at once
/// unless the matches sit at the far end of that order — and they often do: pending run states
/// have never synced (2.4 s for `detectionState eq 'pending'` by last sync, newest first, at a
/// million run states). Reading at most [`SMALL_FILTER`] matches from the filter's index and
/// sorting them costs little whatever the order. (The state sorts are [`cross_sort_hint`]'s,
/// device sorts the device-driven plan's.)
fn small_filter_hint(
    query: &ListQuery,
    wanted: &[(bool, i64)],
    matches: i64,
    remediation_smaller: impl FnOnce() -> bool,
) -> Option<&'static str> {
    let detection = wanted.iter().any(|(is_det, _)| *is_det);
    let remediation = wanted.iter().any(|(is_det, _)| !*is_det);
    // The first key only: it is the one an index walk would serve (and the one
    // `IndexHint::Filter` rewrites, an integer).
    let time_order = query.order.first().is_some_and(|key| {
        !key.column.via_device
            && match key.column.property().name {
                "lastSyncDateTime" => true,
                "lastStateUpdateDateTime" => !detection,
                _ => false,
            }
    });
    if !time_order || matches > SMALL_FILTER {
        return None;
    }
    Some(if remediation && (!detection || remediation_smaller()) {
        "device_run_states_remediation"
    } else {
        "device_run_states_detection"
    })
}

/// A filter on one state column sorted by the other (`remediationState eq 'scriptError'`
/// ordered by detection state): SQLite walks the sort column's index and tests each row, and
/// when the matching rows sit at the far end of that order (every script error has detection
/// state `fail`, after 850,000 `success` rows) the walk reads most of the script: 2.2–2.4 s at a
/// million run states. The counters tell how far the first page is along the walk; when that is
/// well beyond reading every match from the filter's own index and sorting them, that index.
fn cross_sort_hint(
    query: &ListQuery,
    wanted: &[(bool, i64)],
    cells: &[(i64, i64, i64)],
    matches: i64,
) -> Option<&'static str> {
    let walk = cross_walk(query, wanted, cells)?;
    let by_detection = query.order.first().and_then(state_sort)?;
    (walk > 4.0 * matches as f64 + 1_000.0).then_some(state_indexes(by_detection).0)
}

/// For a filter on one state column sorted by the other (detection when `by_detection`): the
/// index on the filter's column and the one on the sort column, each (tenant, scriptId, state,
/// id).
fn state_indexes(by_detection: bool) -> (&'static str, &'static str) {
    const DETECTION: &str = "device_run_states_detection";
    const REMEDIATION: &str = "device_run_states_remediation";
    if by_detection {
        (REMEDIATION, DETECTION)
    } else {
        (DETECTION, REMEDIATION)
    }
}

/// How many rows walking the index of the first sort key — a state column the filter does not
/// constrain — reads before the page is full (the whole index if it never is), from the
/// counters. `None` for another first key.
fn cross_walk(query: &ListQuery, wanted: &[(bool, i64)], cells: &[(i64, i64, i64)]) -> Option<f64> {
    let key = query.order.first()?;
    let by_detection = state_sort(key)?;
    if wanted.iter().any(|(is_det, _)| *is_det == by_detection) {
        return None;
    }
    // Rows the walk reads before the page is full (the whole index if it never is).
    let mut needed = query.top as f64 + 1.0;
    let mut walk = 0.0;
    for (_, all, hits) in sort_values(wanted, cells, by_detection, key.descending) {
        if hits > 0 && hits as f64 >= needed {
            walk += needed * all as f64 / hits as f64;
            break;
        }
        walk += all as f64;
        needed -= hits as f64;
    }
    Some(walk)
}

/// The values of a state column (detection when `by_detection`) in the counters' cells, in sort
/// order, each with how many run states have it and how many of those meet `wanted`.
fn sort_values(
    wanted: &[(bool, i64)],
    cells: &[(i64, i64, i64)],
    by_detection: bool,
    descending: bool,
) -> Vec<(i64, i64, i64)> {
    let sort_value = |&(det, rem, _): &(i64, i64, i64)| if by_detection { det } else { rem };
    let mut values: Vec<i64> = cells.iter().map(sort_value).collect();
    values.sort_unstable();
    values.dedup();
    if descending {
        values.reverse();
    }
    values
        .into_iter()
        .map(|value| {
            let (all, hits) = cells.iter().filter(|cell| sort_value(cell) == value).fold(
                (0, 0),
                |(all, hits), &(det, rem, n)| {
                    let meets = wanted
                        .iter()
                        .all(|(is_det, v)| if *is_det { det == *v } else { rem == *v });
                    (all + n, hits + if meets { n } else { 0 })
                },
            );
            (value, all, hits)
        })
        .collect()
}

/// Is the page one whose plan may take several statements that must agree: [`segment_shape`]
/// (the counters and the rows they point to) and the device-driven plan's sorts (the run
/// states without the key and those with it, read apart: a run state bound to another device
/// between them could show twice or not at all). `Store::list` reads it in one snapshot.
pub(crate) fn reads_in_snapshot(query: &ListQuery) -> bool {
    segment_shape(query) || device_sort_shape(query)
}

/// The shape [`device_sort`] may serve: a script's run states sorted by the device's name or
/// user alone, without `$skip`.
fn device_sort_shape(query: &ListQuery) -> bool {
    query.scope.of.id == CollectionId::RunStates
        && min_rows().is_some()
        && query.skip == 0
        && matches!(query.order.as_slice(), [key] if key.column.via_device
            && matches!(key.column.property().name, "deviceName" | "userPrincipalName"))
}

/// Is the page a script's run states with a filter on one state column (and maybe a search),
/// sorted by the other state column alone? Such a page is read in one snapshot with the
/// counters (`Store::list`), so [`segments`] can read it one sort value at a time.
pub(crate) fn segment_shape(query: &ListQuery) -> bool {
    if query.scope.of.id != CollectionId::RunStates || min_rows().is_none() {
        return false;
    }
    let (Some(filter), [key]) = (&query.filter, query.order.as_slice()) else {
        return false;
    };
    let Some(sort_detection) = state_sort(key) else {
        return false;
    };
    let wanted = state_equalities(filter).or_else(|| state_conjuncts(filter));
    wanted.is_some_and(|w| w.iter().all(|(is_det, _)| *is_det != sort_detection))
}

/// Is the sort key a state column of the run state: `Some(true)` detection, `Some(false)`
/// remediation.
fn state_sort(key: &SortKey) -> Option<bool> {
    if key.column.via_device {
        return None;
    }
    match key.column.property().name {
        "detectionState" => Some(true),
        "remediationState" => Some(false),
        _ => None,
    }
}

/// A page of [`segment_shape`] read one value of its sort column at a time, in the order's
/// direction, each value's rows by id through an index: `remediationState eq 'success'` sorted
/// by detection state is every success's `detectionState = fail` row by id — 26 index entries
/// instead of sorting 170,000 rows (340–480 ms at a million run states). The counters, read in
/// the same snapshot as the rows, say which values hold matches (the others are passed over
/// without a query) and how many (a `$skip` passes over whole values); each value is read from
/// the filter's index or the sort column's, whichever reaches its rows sooner. `None` when the
/// estimated walk is no shorter than the other plans' (or the page is one they must serve: a
/// `$skip` beside a search, whose matches the counters only bound).
fn segments(
    query: &ListQuery,
    wanted: &[(bool, i64)],
    cells: &[(i64, i64, i64)],
    matches: i64,
    exact: bool,
) -> Option<Vec<Segment>> {
    if !segment_shape(query) {
        return None;
    }
    let key = &query.order[0];
    let by_detection = state_sort(key)?;
    let skip = if query.after.is_some() { 0 } else { query.skip };
    if skip > 0 && !exact {
        return None;
    }
    let after = match &query.after {
        None => None,
        Some(a) => match a.values.as_slice() {
            [Value::Int(v)] => Some((*v, a.id.clone())),
            _ => return None,
        },
    };
    let (filter_index, sort_index) = state_indexes(by_detection);
    let matches = matches.max(1) as f64;
    let mut needed = query.top as f64 + 1.0;
    let mut remaining_skip = skip;
    let mut walk = 0.0;
    let mut list = Vec::new();
    for (value, all, hits) in sort_values(wanted, cells, by_detection, key.descending) {
        // Values before the keyset position's hold no row of this page.
        let after_id = match &after {
            Some((at, _))
                if (key.descending && value > *at) || (!key.descending && value < *at) =>
            {
                continue
            }
            Some((at, id)) if value == *at => Some(id.clone()),
            _ => None,
        };
        if hits <= 0 {
            continue;
        }
        if after_id.is_none() && remaining_skip >= hits as u64 {
            remaining_skip -= hits as u64;
            continue;
        }
        // Rows each index walks to pass the skipped matches and find the page's (every later
        // value is listed too: the page stops reading once full, and the keyset position's
        // value holds fewer rows of the page than its count).
        let take = needed.max(1.0) + remaining_skip as f64;
        let share = (take / hits as f64).min(1.0);
        let (through_filter, through_sort) = (share * matches, share * all as f64);
        if needed > 0.0 {
            walk += through_filter.min(through_sort);
        }
        if after_id.is_none() {
            needed -= hits as f64 - remaining_skip as f64;
        }
        list.push(Segment {
            value,
            offset: remaining_skip,
            after_id,
            index: if through_sort < through_filter {
                sort_index
            } else {
                filter_index
            },
        });
        remaining_skip = 0;
    }
    let generic = cross_walk(query, wanted, cells).unwrap_or(f64::INFINITY);
    // A threshold of 0 (tests) always uses it.
    (min_rows() == Some(0) || walk < generic.min(matches)).then_some(list)
}

/// The rows of a page of [`segments`]: for each value in turn, the generic plan's statement
/// (`select` and `from`, whose table name ends at `table_end`) with the value's equality, read
/// by id from the segment's index, until the page and one more row are found.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn segment_rows(
    c: &mut dyn Conn,
    query: &ListQuery,
    select: &str,
    from: &Sql,
    table_end: usize,
    keys: &[KeyExpr],
    list: &[Segment],
) -> Result<Vec<Row>, DbError> {
    let want = query.top + 1;
    let (sort_key, id_key) = (&keys[0], &keys[keys.len() - 1]);
    let mut rows = Vec::new();
    for segment in list {
        if rows.len() >= want {
            break;
        }
        let mut sql = Sql::default();
        sql.push(select);
        let mut text = from.text.clone();
        if c.is_sqlite() {
            text.insert_str(table_end, &format!(" INDEXED BY \"{}\"", segment.index));
        }
        sql.text.push_str(&text);
        sql.args = from.args.clone();
        sql.push(&format!(" AND {} = ", sort_key.sql))
            .arg(Arg::Int(Some(segment.value)));
        if let Some(id) = &segment.after_id {
            sql.push(&format!(
                " AND {} {} ",
                id_key.sql,
                if id_key.descending { "<" } else { ">" }
            ))
            .arg(db::text(id));
        }
        // Within one value the order is the id tie-breaker's.
        translate::order_by(&mut sql, std::slice::from_ref(id_key));
        sql.push(" LIMIT ")
            .arg(Arg::Int(Some((want - rows.len()) as i64)));
        if segment.offset > 0 {
            sql.push(" OFFSET ").arg(Arg::Int(Some(
                i64::try_from(segment.offset).unwrap_or(i64::MAX),
            )));
        }
        rows.extend(c.query(&sql.text, &sql.args).await?);
    }
    Ok(rows)
}

/// Read a filter on both state columns from the remediation index, when fewer run states have
/// its remediation value than its detection value? Only where SQLite reads every match and
/// sorts them: under the query planner stability guarantee (`db::SqliteConn::open`) it does not
/// know how many run states the bound values match and reads such a filter from the detection
/// index — 100,000 failures to find 10,000 script errors, sorted by device name: 330 ms at a
/// million run states, against 60–90 ms from the remediation index. Not when an index serves the
/// order (id, detection or remediation state, last update or last sync): walking it stops at the
/// page, where reading every match from another index would not (2.4 s for the 730,000 skipped
/// run states sorted by last sync).
fn index_hint_applies(query: &ListQuery, wanted: &[(bool, i64)]) -> bool {
    let both = wanted.iter().any(|(d, _)| *d) && wanted.iter().any(|(d, _)| !*d);
    let served = query.order.iter().all(|key| {
        !key.column.via_device
            && matches!(
                key.column.property().name,
                "id" | "detectionState"
                    | "lastStateUpdateDateTime"
                    | "remediationState"
                    | "lastSyncDateTime"
            )
    });
    both && !served
}

/// The managed-device property a run-state list is sorted by when the device-driven plan
/// serves it (`deviceName` or `userPrincipalName`, each with an index on managed_devices).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceSort {
    property: &'static str,
}

/// Use the device-driven plan? Only for a script's run states sorted by the device's name or
/// user alone, without `$skip`, when the matching run states `m` (the count of a filter of
/// state equalities, or of the state conjuncts of a filter with a search too — more than match
/// it —, else every run state of the script) are many against the tenant's devices:
/// a page then probes about `25 × devices / m` devices, against sorting all `m` rows
/// (`m² ≥ 26 × devices`). Other filters (a device-name search) are applied to the walk: a
/// search that many devices match fills a page quickly; one that few match reads the whole
/// index, as the generic plan reads the whole script. A threshold of 0 (tests) always uses it.
pub(crate) async fn device_sort(
    c: &mut dyn Conn,
    tenant: &str,
    query: &ListQuery,
    state_matches: Option<i64>,
) -> Result<Option<DeviceSort>, DbError> {
    let Some(min) = min_rows() else {
        return Ok(None);
    };
    if !device_sort_shape(query) {
        return Ok(None);
    }
    let sort = DeviceSort {
        property: query.order[0].column.property().name,
    };
    if min == 0 {
        return Ok(Some(sort));
    }
    let script = query.scope.parents.first().map_or("", String::as_str);
    let m = match state_matches {
        Some(m) => m,
        None => counters::run_states(c, tenant, script).await?,
    }
    .max(0) as u64;
    if m < min {
        return Ok(None);
    }
    let devices = counters::total(c, tenant, counters::DEVICES).await?.max(0) as u64;
    Ok((m.saturating_mul(m) >= devices.saturating_mul(26)).then_some(sort))
}

/// The first `top + 1` rows of the query in its order, found from the devices: the rows whose
/// sort key is NULL (run states without a device, of a deleted device, of a device without the
/// property), ordered by id, come first ascending and last descending, exactly where the generic
/// plan's `NULLS FIRST`/`NULLS LAST` put them; the others are found by walking managed_devices
/// in the key's order (its index) and probing each device's run state through an index on
/// managedDeviceId. Rows have the generic plan's select list (`select`).
pub(crate) async fn device_rows(
    c: &mut dyn Conn,
    tenant: &str,
    query: &ListQuery,
    select: &str,
    keys: &[KeyExpr],
    sort: DeviceSort,
) -> Result<Vec<Row>, DbError> {
    let want = query.top + 1;
    let descending = query.order[0].descending;
    // Where the keyset position lies: None (start), in the NULL group (its id), or among keys.
    let after_null = query
        .after
        .as_ref()
        .filter(|a| a.values.first().is_none_or(|v| *v == Value::Null));
    let after_keyed = query.after.as_ref().filter(|_| after_null.is_none());
    let mut rows = Vec::new();
    if descending {
        if after_null.is_none() {
            rows = keyed_rows(c, tenant, query, select, keys, sort, after_keyed, want).await?;
        }
        if rows.len() < want {
            let more = want - rows.len();
            let after_id = after_null.map(|a| a.id.as_str());
            rows.extend(null_rows(c, tenant, query, select, sort, after_id, more).await?);
        }
    } else {
        if after_keyed.is_none() {
            let after_id = after_null.map(|a| a.id.as_str());
            rows = null_rows(c, tenant, query, select, sort, after_id, want).await?;
        }
        if rows.len() < want {
            let more = want - rows.len();
            rows.extend(keyed_rows(c, tenant, query, select, keys, sort, after_keyed, more).await?);
        }
    }
    Ok(rows)
}

/// ` AND <filter>` of the query, if any.
fn push_filter(sql: &mut Sql, query: &ListQuery) {
    if let Some(filter) = &query.filter {
        sql.push(" AND ");
        translate::filter(sql, filter);
    }
}

/// The script's run states whose device has the sort property, in the key order after `after`.
#[allow(clippy::too_many_arguments)]
async fn keyed_rows(
    c: &mut dyn Conn,
    tenant: &str,
    query: &ListQuery,
    select: &str,
    keys: &[KeyExpr],
    sort: DeviceSort,
    after: Option<&After>,
    limit: usize,
) -> Result<Vec<Row>, DbError> {
    let script = query.scope.parents.first().map_or("", String::as_str);
    let mut sql = Sql::default();
    // CROSS JOIN: SQLite keeps the devices outside (walked through their index in key order);
    // PostgreSQL plans it as an inner join (a nested loop over the index; docs/query-plans.md).
    sql.push(select)
        .push(" FROM managed_devices d CROSS JOIN device_run_states t WHERE d.\"tenant\" = ");
    sql.arg(db::text(tenant));
    sql.push(&format!(
        " AND d.\"{}_lc\" IS NOT NULL AND t.\"tenant\" = ",
        sort.property
    ));
    sql.arg(db::text(tenant));
    sql.push(" AND t.\"scriptId\" = ").arg(db::text(script));
    sql.push(" AND t.\"managedDeviceId\" = d.\"id\"");
    push_filter(&mut sql, query);
    if let Some(after) = after {
        // Every key is non-null here: the keyset condition needs no NULL cases, and seeks.
        let non_null: Vec<KeyExpr> = keys
            .iter()
            .map(|k| KeyExpr {
                nullable: false,
                ..k.clone()
            })
            .collect();
        translate::after_condition(&mut sql, &non_null, after);
    }
    // The generic plan's ORDER BY (NULLS clauses included: they match PostgreSQL's index).
    translate::order_by(&mut sql, keys);
    sql.push(" LIMIT ").arg(Arg::Int(Some(limit as i64)));
    c.query(&sql.text, &sql.args).await
}

/// The script's run states whose sort key is NULL, by id (in the query's direction) after
/// `after_id`: unbound ones, those of deleted devices (`deleted_devices`), and those of devices
/// without the property, each found through an index and merged.
#[allow(clippy::too_many_arguments)]
async fn null_rows(
    c: &mut dyn Conn,
    tenant: &str,
    query: &ListQuery,
    select: &str,
    sort: DeviceSort,
    after_id: Option<&str>,
    limit: usize,
) -> Result<Vec<Row>, DbError> {
    let script = query.scope.parents.first().map_or("", String::as_str);
    let descending = query.order[0].descending;
    let tail = |sql: &mut Sql| {
        push_filter(sql, query);
        if let Some(id) = after_id {
            sql.push(if descending {
                " AND t.\"id\" < "
            } else {
                " AND t.\"id\" > "
            })
            .arg(db::text(id));
        }
        sql.push(if descending {
            " ORDER BY t.\"id\" DESC LIMIT "
        } else {
            " ORDER BY t.\"id\" ASC LIMIT "
        })
        .arg(Arg::Int(Some(limit as i64)));
    };
    let join_device =
        " LEFT JOIN managed_devices d ON d.\"tenant\" = t.\"tenant\" AND d.\"id\" = t.\"managedDeviceId\"";
    // Without a device.
    let mut unbound = Sql::default();
    unbound
        .push(select)
        .push(" FROM device_run_states t")
        .push(join_device)
        .push(" WHERE t.\"tenant\" = ")
        .arg(db::text(tenant));
    unbound
        .push(" AND t.\"scriptId\" = ")
        .arg(db::text(script))
        .push(" AND t.\"managedDeviceId\" IS NULL");
    tail(&mut unbound);
    // Of a deleted device.
    let mut deleted = Sql::default();
    deleted
        .push(select)
        .push(" FROM deleted_devices g CROSS JOIN device_run_states t")
        .push(join_device)
        .push(" WHERE g.\"tenant\" = ")
        .arg(db::text(tenant));
    deleted.push(" AND t.\"tenant\" = ").arg(db::text(tenant));
    deleted
        .push(" AND t.\"scriptId\" = ")
        .arg(db::text(script))
        .push(" AND t.\"managedDeviceId\" = g.\"id\" AND d.\"id\" IS NULL");
    tail(&mut deleted);
    // Of a device without the property.
    let mut unnamed = Sql::default();
    unnamed
        .push(select)
        .push(" FROM managed_devices d CROSS JOIN device_run_states t WHERE d.\"tenant\" = ")
        .arg(db::text(tenant));
    unnamed.push(&format!(
        " AND d.\"{}_lc\" IS NULL AND t.\"tenant\" = ",
        sort.property
    ));
    unnamed.arg(db::text(tenant));
    unnamed
        .push(" AND t.\"scriptId\" = ")
        .arg(db::text(script))
        .push(" AND t.\"managedDeviceId\" = d.\"id\"");
    tail(&mut unnamed);
    let mut rows = Vec::new();
    for sql in [unbound, deleted, unnamed] {
        rows.extend(c.query(&sql.text, &sql.args).await?);
    }
    // The id is the last selected column; ids compare bytewise on both databases.
    let mut keyed: Vec<(String, Row)> = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.text(row.0.len().saturating_sub(1))?.unwrap_or_default();
        keyed.push((id, row));
    }
    keyed.sort_by(|a, b| {
        if descending {
            b.0.cmp(&a.0)
        } else {
            a.0.cmp(&b.0)
        }
    });
    keyed.truncate(limit);
    Ok(keyed.into_iter().map(|(_, row)| row).collect())
}

/// At most this many devices restrict a device-name search to their run states
/// ([`search_devices`]); a search that more devices match is common, and the other plans find a
/// page of it quickly.
pub(crate) const SEARCH_CAP: usize = 2_000;

/// The shortest search text the trigram indexes serve.
const TRIGRAM: usize = 3;

/// The first `contains(managedDevice/deviceName, …)` among the top-level conjuncts of a filter.
fn name_search(filter: &Filter) -> Option<&Filter> {
    match filter {
        Filter::And(a, b) => name_search(a).or_else(|| name_search(b)),
        Filter::Function {
            function: StringFunction::Contains,
            column,
            text,
        } if column.via_device && column.property().name == "deviceName" && !text.is_empty() => {
            Some(filter)
        }
        _ => None,
    }
}

/// The search plan: when the filter of a script's run-state list requires a device-name search
/// (a top-level `contains(managedDevice/deviceName, …)`), the ids of every device of the tenant
/// whose name contains the text, found through the trigram index (SQLite's FTS5 table
/// `managed_devices_name_trigram`, checked again with the generic translation's exact `LIKE`;
/// PostgreSQL's GIN trigram index serves that `LIKE` itself), if at most [`SEARCH_CAP`]. The
/// caller then adds `t."managedDeviceId" IN (ids)` to the query: every row the filter accepts has
/// a bound, existing device whose name matches, so the condition changes no row or order, and
/// the run states are found through the (tenant, scriptId, managedDeviceId) index. `None`: no
/// such search, too few run states for the scale plans, or a common search.
pub(crate) async fn search_devices(
    c: &mut dyn Conn,
    tenant: &str,
    query: &ListQuery,
) -> Result<Option<Vec<String>>, DbError> {
    let Some(min) = min_rows() else {
        return Ok(None);
    };
    if query.scope.of.id != CollectionId::RunStates {
        return Ok(None);
    }
    let Some(search) = query.filter.as_ref().and_then(name_search) else {
        return Ok(None);
    };
    if min > 0 {
        let script = query.scope.parents.first().map_or("", String::as_str);
        if (counters::run_states(c, tenant, script).await?.max(0) as u64) < min {
            return Ok(None);
        }
    }
    let Filter::Function { text, .. } = search else {
        return Ok(None);
    };
    let folded = translate::fold(text);
    let mut sql = Sql::default();
    if folded.chars().count() < TRIGRAM {
        // The trigram indexes serve no shorter text (PostgreSQL's GIN index would hand back
        // most of the table to recheck): the text is looked for in every device name of the
        // tenant, read from the (tenant, deviceName_lc, deviceName, id) index alone, up to the
        // cap — a million names in about 120 ms on either database. A substring test of the
        // folded name is what the generic `LIKE '%…%'` on it means, and no trigram index takes
        // it.
        let position = if c.is_sqlite() { "instr" } else { "strpos" };
        sql.push("SELECT d.\"id\" FROM managed_devices d WHERE d.\"tenant\" = ")
            .arg(db::text(tenant));
        sql.push(&format!(
            " AND d.\"deviceName_lc\" IS NOT NULL AND {position}(d.\"deviceName_lc\", "
        ))
        .arg(Arg::Text(Some(folded)))
        .push(") > 0");
    } else {
        if c.is_sqlite() {
            // A phrase of the folded text: the rows whose name contains it (the tokenizer folds
            // case again, so these are a superset of the exact matches; wildcards are literal
            // here). Joined from the full-text table (CROSS JOIN keeps it outside) so the LIMIT
            // stops the walk.
            let phrase = format!("\"{}\"", folded.replace('"', "\"\""));
            sql.push(
                "SELECT d.\"id\" FROM managed_devices_name_trigram f CROSS JOIN managed_devices d \
                 WHERE f.managed_devices_name_trigram MATCH ",
            )
            .arg(Arg::Text(Some(phrase)));
            sql.push(" AND d.rowid = f.rowid AND d.\"tenant\" = ")
                .arg(db::text(tenant));
        } else {
            // The GIN trigram index serves the LIKE below.
            sql.push("SELECT d.\"id\" FROM managed_devices d WHERE d.\"tenant\" = ")
                .arg(db::text(tenant));
        }
        // The generic translation of the search (exact: `%`, `_` and `\` escaped).
        sql.push(" AND ");
        translate::filter(&mut sql, search);
    }
    sql.push(" LIMIT ")
        .arg(Arg::Int(Some(SEARCH_CAP as i64 + 1)));
    let rows = c.query(&sql.text, &sql.args).await?;
    if rows.len() > SEARCH_CAP {
        return Ok(None);
    }
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(id) = row.text(0)? {
            ids.push(id);
        }
    }
    Ok(Some(ids))
}

/// ` AND t."managedDeviceId" IN (ids)` ([`search_devices`]); never called with no ids.
pub(crate) fn push_devices(sql: &mut Sql, ids: &[String]) {
    sql.push(" AND t.\"managedDeviceId\" IN (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.arg(db::text(id));
    }
    sql.push(")");
}
