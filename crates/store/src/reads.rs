//! Reads: one entity by key ([`fetch_entity`], also the locked read of writes), one page of a
//! collection with its filter, keyset position, order and count ([`list_page`]), and the small
//! per-tenant reads the API needs. Each runs on whatever connection it is given (a read
//! connection, or the write transaction). Computed views are in `crate::views`.

use remediate_domain::collections::{CollectionId, Parent};
use remediate_domain::model::MANAGED_DEVICE;
use remediate_domain::query::{After, Filter, ListQuery, Page};
use remediate_domain::{Record, Value};

use crate::codec::{
    column_count, decode_record, entity_of, key_where, select_columns, tenant_condition,
};
use crate::counters;
use crate::db::{self, Conn, DbError};
use crate::error::ExecError;
use crate::plans;
use crate::translate::{self, Arg, Sql};
use crate::{EntityRef, StoreError};

/// Does the entity exist?
pub(crate) async fn exists(
    c: &mut dyn Conn,
    tenant: &str,
    key: &EntityRef,
) -> Result<bool, DbError> {
    let entity = entity_of(key);
    let mut sql = Sql::default();
    sql.push(&format!("SELECT 1 FROM \"{}\" t", entity.table));
    key_where(&mut sql, tenant, key);
    Ok(c.query_opt(&sql.text, &sql.args).await?.is_some())
}

/// One entity by key, `FOR UPDATE` when `for_update`.
pub(crate) async fn fetch_entity(
    c: &mut dyn Conn,
    tenant: &str,
    key: &EntityRef,
    for_update: bool,
) -> Result<Option<Record>, DbError> {
    let entity = entity_of(key);
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT {} FROM \"{}\" t",
        select_columns(entity, "t", false),
        entity.table
    ));
    key_where(&mut sql, tenant, key);
    if for_update {
        sql.push(" FOR UPDATE");
    }
    c.query_opt(&sql.text, &sql.args)
        .await?
        .map(|mut r| decode_record(entity, &mut r, 0))
        .transpose()
}

/// One page of a collection (and its count when asked for); rejected when the collection's
/// script does not exist (checked only when the page is empty: rows cannot outlive their script).
pub(crate) async fn list_page(
    c: &mut dyn Conn,
    tenant: &str,
    query: &ListQuery,
) -> Result<Page, ExecError> {
    let page = page_of(c, tenant, query).await?;
    if page.records.is_empty() {
        // A collection directly under a root item (a script's run states or assignments):
        // its parent must exist. Deeper ones are checked by the caller (the API reads their
        // parent item first).
        if let Parent::Item(parent) = query.scope.of.parent {
            if matches!(parent.parent, Parent::Root(_)) {
                if let Some(key) = EntityRef::of(parent, &query.scope.parents) {
                    if !exists(c, tenant, &key).await? {
                        return Err(StoreError::NotFound(format!(
                            "The {} '{}' does not exist.",
                            parent.item_name,
                            query.scope.parents.first().map_or("", String::as_str)
                        ))
                        .into());
                    }
                }
            }
        }
    }
    Ok(page)
}

/// Does the filter read a property of the bound device (so the query joins `managed_devices`)?
fn uses_device(filter: &Filter) -> bool {
    match filter {
        Filter::Compare { column, .. }
        | Filter::In { column, .. }
        | Filter::Function { column, .. } => column.via_device,
        Filter::And(a, b) | Filter::Or(a, b) => uses_device(a) || uses_device(b),
        Filter::Not(a) => uses_device(a),
        Filter::Const(_) => false,
    }
}

/// How a page reads the bound device of its run states (NULL columns for none).
const DEVICE_JOIN: &str =
    " LEFT JOIN managed_devices d ON d.\"tenant\" = t.\"tenant\" AND d.\"id\" = t.\"managedDeviceId\"";

async fn page_of(c: &mut dyn Conn, tenant: &str, query: &ListQuery) -> Result<Page, DbError> {
    let entity = query.scope.entity();
    // The device is read for the filter or the order, or only for `$expand` (then it is joined
    // to the page's rows alone: `deferred_join`).
    let device_in_where = query.order.iter().any(|k| k.column.via_device)
        || query.filter.as_ref().is_some_and(uses_device);
    let join_device = query.expand_device || device_in_where;
    let mut keys = translate::key_exprs(&query.order);
    // A filter of detection/remediation state equalities only: its matches from the counters,
    // and on SQLite the index to read them from when its planner's choice is the slow one. A
    // filter with other conjuncts too (a device-name search): how many run states its state
    // conjuncts alone match, at least as many as the filter (`bound`).
    let (state_matches, index, bound) = match (query.scope.of.id, &query.filter) {
        _ if plans::min_rows().is_none() => (None, None, None),
        (CollectionId::RunStates, Some(filter)) => match plans::state_equalities(filter) {
            Some(wanted) if plans::needs_state_matches(query, &wanted) => {
                let (matches, index) =
                    plans::state_matches(c, tenant, query, &wanted, true).await?;
                (Some(matches), index, Some(matches))
            }
            Some(_) => (None, None, None),
            None => match plans::state_conjuncts(filter) {
                Some(wanted) => {
                    let (bound, index) =
                        plans::state_matches(c, tenant, query, &wanted, false).await?;
                    (None, index, Some(bound))
                }
                None => (None, None, None),
            },
        },
        _ => (None, None, None),
    };
    if bound == Some(0) {
        // Nothing matches: no need to walk an index of the script (or search the devices) to
        // find that out.
        return Ok(Page::empty(query.count.then_some(0)));
    }
    let mut from = Sql::default();
    from.push(&format!(" FROM \"{}\" t", entity.table));
    // Where an index hint goes (`index`, decided after the search below).
    let table_end = from.text.len();
    if join_device {
        from.push(DEVICE_JOIN);
    }
    if let Some(via) = &query.scope.of.via {
        // A collection of references: the items related to the parent by the link table.
        from.push(&format!(
            " JOIN \"{}\" v ON v.\"tenant\" = t.\"tenant\" AND v.\"{}\" = t.\"id\" AND v.\"{}\" = ",
            via.table, via.item_column, via.parent_column
        ))
        .arg(db::text(
            query.scope.parents.last().map_or("", String::as_str),
        ));
    }
    from.push(" WHERE (");
    tenant_condition(&mut from, entity, tenant);
    from.push(")");
    if query.scope.of.via.is_none() {
        for (column, key) in query.scope.conditions() {
            from.push(&format!(" AND t.\"{column}\" = "))
                .arg(db::text(key));
        }
    }
    if let Some(filter) = &query.filter {
        from.push(" AND ");
        translate::filter(&mut from, filter);
    }
    // A rare device-name search: only the run states of the few devices it matches
    // (plans::search_devices; the condition changes no row).
    let searched = plans::search_devices(c, tenant, query).await?;
    if let Some(ids) = &searched {
        if ids.is_empty() {
            return Ok(Page::empty(query.count.then_some(0)));
        }
        plans::push_devices(&mut from, ids);
    } else {
        // (A rare search reads its few devices' run states through the device index instead.)
        match &index {
            Some(plans::IndexHint::Index(name) | plans::IndexHint::Filter(name))
                if c.is_sqlite() =>
            {
                from.text
                    .insert_str(table_end, &format!(" INDEXED BY \"{name}\""));
            }
            Some(plans::IndexHint::Filter(_)) => {
                if let Some(first) = keys.first_mut() {
                    first.sql = format!("({} + 0)", first.sql);
                }
            }
            _ => {}
        }
    }
    let parent = || query.scope.parents.first().map_or("", String::as_str);
    let count = if !query.count {
        None
    } else {
        // Unfiltered counts of run states and devices, and counts of state equalities, come
        // from the counters (constant time).
        let n = match (query.scope.of.id, &query.filter) {
            _ if state_matches.is_some() => state_matches.unwrap_or(0),
            (CollectionId::RunStates, None) => counters::run_states(c, tenant, parent()).await?,
            (CollectionId::Devices, None) => counters::total(c, tenant, counters::DEVICES).await?,
            (
                CollectionId::Scripts
                | CollectionId::Assignments
                | CollectionId::History
                | CollectionId::RunStates
                | CollectionId::Devices
                | CollectionId::RoleScopeTags
                | CollectionId::AssignmentFilters
                | CollectionId::Groups
                | CollectionId::DirectoryDevices
                | CollectionId::GroupMembers
                | CollectionId::DeviceMemberOf
                | CollectionId::EnrollmentSecrets
                | CollectionId::ExportJobs,
                _,
            ) => {
                let text = format!("SELECT COUNT(*){}", from.text);
                c.query_one(&text, &from.args).await?.count(0)?
            }
        };
        Some(n.max(0) as u64)
    };
    if query.top == 0 && query.count {
        return Ok(Page::empty(count));
    }
    let mut select = String::from("SELECT ");
    select.push_str(&select_columns(entity, "t", true));
    if query.expand_device {
        select.push_str(", ");
        select.push_str(&select_columns(&MANAGED_DEVICE, "d", false));
    }
    for key in &keys {
        select.push_str(", ");
        select.push_str(&key.sql);
    }
    let sort = match searched {
        Some(_) => None,
        None => plans::device_sort(c, tenant, query, bound).await?,
    };
    let segments = match (&index, &searched) {
        (Some(plans::IndexHint::Segments(list)), None) => Some(list),
        _ => None,
    };
    let mut rows = match (sort, segments) {
        (Some(sort), _) => plans::device_rows(c, tenant, query, &select, &keys, sort).await?,
        (None, Some(list)) => {
            plans::segment_rows(c, query, &select, &from, table_end, &keys, list).await?
        }
        (None, None) => {
            let mut sql = Sql::default();
            let deferred_join = query.expand_device && !device_in_where;
            if deferred_join {
                // Find the page's rows without the device, then read them with it: a plan that
                // sorts its matches does not look up every match's device first (160 → 34 ms
                // for 20,000 pending run states by last sync on SQLite; docs/query-plans.md).
                sql.push(&select);
                sql.push(&format!(" FROM \"{}\" t{DEVICE_JOIN} WHERE ", entity.table));
                sql.push(if c.is_sqlite() {
                    "t.rowid IN (SELECT t.rowid"
                } else {
                    "t.ctid = ANY(ARRAY(SELECT t.ctid"
                });
                sql.text.push_str(&from.text.replacen(DEVICE_JOIN, "", 1));
            } else {
                sql.push(&select);
                sql.text.push_str(&from.text);
            }
            // Re-number the FROM clause's placeholders after the (parameterless) select list.
            sql.args = from.args;
            if let Some(after) = &query.after {
                translate::after_condition(&mut sql, &keys, after);
            }
            translate::order_by(&mut sql, &keys);
            sql.push(" LIMIT ")
                .arg(Arg::Int(Some(query.top as i64 + 1)));
            if query.after.is_none() && query.skip > 0 {
                sql.push(" OFFSET ").arg(Arg::Int(Some(
                    i64::try_from(query.skip).unwrap_or(i64::MAX),
                )));
            }
            if deferred_join {
                sql.push(if c.is_sqlite() { ")" } else { "))" });
                translate::order_by(&mut sql, &keys);
            }
            c.query(&sql.text, &sql.args).await?
        }
    };
    let has_more = rows.len() > query.top;
    let base = column_count(entity);
    let device_width = if query.expand_device {
        column_count(&MANAGED_DEVICE)
    } else {
        0
    };
    // The keyset position after the page's last row, read before the rows are taken apart.
    let mut next = None;
    if has_more {
        if let Some(row) = rows.get(query.top.saturating_sub(1)) {
            let offset = base + device_width;
            let mut values = Vec::new();
            for (i, key) in keys.iter().enumerate().take(keys.len() - 1) {
                values.push(if key.text {
                    row.text(offset + i)?.map_or(Value::Null, Value::Str)
                } else {
                    row.int(offset + i)?.map_or(Value::Null, Value::Int)
                });
            }
            let id = row
                .text(offset + keys.len() - 1)?
                .ok_or_else(|| DbError::other("a row without id"))?;
            next = Some(After { values, id });
        }
    }
    rows.truncate(query.top);
    let mut page = Page {
        records: Vec::with_capacity(rows.len()),
        devices: Vec::new(),
        next,
        count,
    };
    for mut row in rows {
        page.records.push(decode_record(entity, &mut row, 0)?);
        if query.expand_device {
            page.devices.push(match row.text(base)? {
                Some(_) => Some(decode_record(&MANAGED_DEVICE, &mut row, base)?),
                None => None,
            });
        }
    }
    Ok(page)
}

/// The tenant's global-scripts state (0 until it was set).
pub(crate) async fn global_scripts_state(c: &mut dyn Conn, tenant: &str) -> Result<i64, DbError> {
    let row = c
        .query_opt(
            "SELECT \"globalScriptsState\" FROM tenant_settings WHERE \"tenant\" = $1",
            &[db::text(tenant)],
        )
        .await?;
    Ok(match row {
        Some(row) => row.count(0)?,
        None => 0,
    })
}

/// Every assignment of the tenant as (script id, target JSON).
pub(crate) async fn assignment_targets(
    c: &mut dyn Conn,
    tenant: &str,
) -> Result<Vec<(String, String)>, DbError> {
    let rows = c
        .query(
            "SELECT \"scriptId\", \"target\" FROM device_health_script_assignments WHERE \"tenant\" = $1",
            &[db::text(tenant)],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let (Some(script), Some(target)) = (row.text(0)?, row.text(1)?) {
            out.push((script, target));
        }
    }
    Ok(out)
}
