//! Rows ↔ records: the select list of an entity ([`select_columns`]), a result row back into a
//! [`Record`] ([`decode_record`]), the `INSERT` of a record ([`insert_sql`]) and the `WHERE`
//! clause that addresses one entity ([`key_where`]). Column names come from the static model;
//! values become bound parameters (`crate::translate`).

use remediate_domain::model::{
    EntityType, DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT, DEVICE_RUN_STATE,
    MANAGED_DEVICE,
};
use remediate_domain::Record;

use crate::db::{DbError, Row};
use crate::translate::{self, Arg, Sql};
use crate::EntityRef;

/// `"a", "b", …` for an entity's properties as stored, with `NULL` for properties a list leaves out.
pub(crate) fn select_columns(entity: &EntityType, alias: &str, list: bool) -> String {
    let mut columns: Vec<String> = entity
        .properties
        .iter()
        .map(|p| {
            if list && !p.in_list {
                "NULL".to_owned()
            } else {
                format!("{alias}.\"{}\"", p.name)
            }
        })
        .collect();
    for link in entity.links {
        columns.push(format!("{alias}.\"{}\"", link.column()));
    }
    columns.join(", ")
}

/// How many cells [`select_columns`] selects.
pub(crate) fn column_count(entity: &EntityType) -> usize {
    entity.properties.len() + entity.links.len()
}

/// The record in the cells of `row` from `offset` on, as [`select_columns`] selected them.
pub(crate) fn decode_record(
    entity: &'static EntityType,
    row: &mut Row,
    offset: usize,
) -> Result<Record, DbError> {
    let mut values = Vec::with_capacity(entity.properties.len());
    for (i, p) in entity.properties.iter().enumerate() {
        values.push(translate::decode(p, row, offset + i)?);
    }
    let mut record = Record {
        entity,
        values,
        parent: None,
        device_id: None,
        state_id: None,
    };
    let n = entity.properties.len();
    for (i, link) in entity.links.iter().enumerate() {
        record.set_link(*link, row.take_text(offset + n + i)?);
    }
    Ok(record)
}

/// `INSERT` of a whole record (its links, every property and every shadow column).
pub(crate) fn insert_sql(tenant: &str, record: &Record) -> Sql {
    insert_sql_with(tenant, record, Vec::new())
}

/// [`insert_sql`] with columns the entity does not show (an enrollment secret's hash).
pub(crate) fn insert_sql_with(tenant: &str, record: &Record, hidden: Vec<(&str, Arg)>) -> Sql {
    let entity = record.entity;
    let (columns, args) = row_columns(tenant, record, hidden);
    let mut sql = Sql::default();
    sql.push(&format!(
        "INSERT INTO \"{}\" ({}) VALUES (",
        entity.table,
        columns.join(", ")
    ));
    for (i, arg) in args.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.arg(arg);
    }
    sql.push(")");
    sql
}

/// The stored row of a record: its (quoted) column names and their values.
fn row_columns(tenant: &str, record: &Record, hidden: Vec<(&str, Arg)>) -> (Vec<String>, Vec<Arg>) {
    let entity = record.entity;
    let mut columns = vec!["\"tenant\"".to_owned()];
    let mut args = vec![Arg::Text(Some(tenant.to_owned()))];
    for (column, arg) in hidden {
        columns.push(format!("\"{column}\""));
        args.push(arg);
    }
    for link in entity.links {
        columns.push(format!("\"{}\"", link.column()));
        args.push(Arg::Text(record.link(*link).map(str::to_owned)));
    }
    for (p, v) in entity.properties.iter().zip(&record.values) {
        columns.extend(translate::column_names(p));
        args.extend(translate::value_args(p, v));
    }
    (columns, args)
}

/// The stored row of a record as a JSON object of column → value, for PostgreSQL's
/// `jsonb_populate_record` (the one-call report function, migration 0009).
pub(crate) fn row_json(tenant: &str, record: &Record) -> serde_json::Value {
    let (columns, args) = row_columns(tenant, record, Vec::new());
    columns_json(columns.into_iter().zip(args))
}

/// `(quoted column, value)` pairs as a JSON object; text in its stored form
/// ([`crate::db::text_in`]), bytes in PostgreSQL's hex input form.
pub(crate) fn columns_json(pairs: impl IntoIterator<Item = (String, Arg)>) -> serde_json::Value {
    use serde_json::Value as J;
    let mut object = serde_json::Map::new();
    for (column, arg) in pairs {
        let value = match arg {
            Arg::Int(Some(v)) => J::from(v),
            Arg::Text(Some(t)) => J::String(crate::db::text_in(&t).into_owned()),
            Arg::Bytes(Some(b)) => {
                let mut hex = String::with_capacity(2 + 2 * b.len());
                hex.push_str("\\x");
                for byte in b {
                    hex.push_str(&format!("{byte:02x}"));
                }
                J::String(hex)
            }
            Arg::Int(None) | Arg::Text(None) | Arg::Bytes(None) => J::Null,
        };
        object.insert(column.trim_matches('"').to_owned(), value);
    }
    J::Object(object)
}

/// The condition placing rows of `entity` in `tenant` (alias `t`): built-ins stored under the
/// empty tenant are every tenant's (`EntityType::shared_builtins`).
pub(crate) fn tenant_condition(sql: &mut Sql, entity: &EntityType, tenant: &str) {
    sql.push("t.\"tenant\" = ")
        .arg(Arg::Text(Some(tenant.to_owned())));
    if entity.shared_builtins {
        sql.push(" OR t.\"tenant\" = ''");
    }
}

/// `WHERE` clause addressing one entity (alias `t`).
pub(crate) fn key_where(sql: &mut Sql, tenant: &str, key: &EntityRef) {
    sql.push(" WHERE (");
    tenant_condition(sql, entity_of(key), tenant);
    sql.push(")");
    match key {
        EntityRef::Item { of, keys } => {
            let scope = remediate_domain::query::Scope::new(
                of,
                keys[..keys.len().saturating_sub(1)].to_vec(),
            );
            for (column, value) in scope.conditions() {
                sql.push(&format!(" AND t.\"{column}\" = "))
                    .arg(Arg::Text(Some(value.to_owned())));
            }
            sql.push(" AND t.\"id\" = ")
                .arg(Arg::Text(Some(keys.last().cloned().unwrap_or_default())));
        }
        EntityRef::Script(id) | EntityRef::Device(id) => {
            sql.push(" AND t.\"id\" = ")
                .arg(Arg::Text(Some(id.clone())));
        }
        EntityRef::RunState { script_id, id } | EntityRef::Assignment { script_id, id } => {
            sql.push(" AND t.\"scriptId\" = ")
                .arg(Arg::Text(Some(script_id.clone())));
            sql.push(" AND t.\"id\" = ")
                .arg(Arg::Text(Some(id.clone())));
        }
    }
}

/// The entity type a key addresses.
pub(crate) fn entity_of(key: &EntityRef) -> &'static EntityType {
    match key {
        EntityRef::Script(_) => &DEVICE_HEALTH_SCRIPT,
        EntityRef::RunState { .. } => &DEVICE_RUN_STATE,
        EntityRef::Device(_) => &MANAGED_DEVICE,
        EntityRef::Assignment { .. } => &DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
        EntityRef::Item { of, .. } => of.entity,
    }
}
