//! Writes and reads of the collections without statements of their own (role scope tags,
//! assignment filters, groups) and of group membership: the generic create/update/delete of
//! [`Write::Create`]-style commands with each collection's checks (references that must exist,
//! entities still in use), `$ref` membership, dynamic membership kept current in the
//! transaction of every change that can alter it, and what targeting reads of a device.
//!
//! Dynamic membership (rows of `group_members` with `dynamic` = 1) is recomputed for a group
//! when it is created or changed, and for a device when it is registered or changed. On
//! PostgreSQL both take a per-tenant advisory lock first (held until commit), so a group change
//! and a device change of one tenant evaluate one after the other and neither misses the other's
//! row; SQLite's single writer serializes them anyway.

use std::collections::HashMap;

use remediate_domain::collections::{Collection, CollectionId, ASSIGNMENT_FILTERS};
use remediate_domain::directory::{self, DeviceTargeting};
use remediate_domain::model::{GROUP, MANAGED_DEVICE};
use remediate_domain::rule::{DeviceFacts, Dialect};
use remediate_domain::write::WriteOutcome;
use remediate_domain::{Instant, Record, Value};

use crate::codec::{decode_record, insert_sql, select_columns};
use crate::commands::{apply, Writer};
use crate::connect::Dialect as DbDialect;
use crate::db::{self, Conn, DbError};
use crate::error::ExecError;
use crate::reads::fetch_entity;
use crate::{EntityRef, StoreError};

fn invalid(message: String) -> ExecError {
    StoreError::Invalid(message).into()
}

fn missing(of: &Collection, id: &str) -> ExecError {
    StoreError::NotFound(format!("The {} '{id}' does not exist.", of.item_name)).into()
}

/// The strings of a string-collection value.
fn strings(value: &Value) -> &[String] {
    match value {
        Value::StrList(items) => items,
        _ => &[],
    }
}

impl Writer {
    /// `Write::Create`: the record (already checked by the domain rules) with its references.
    pub(crate) async fn create_item(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        of: &'static Collection,
        record: Record,
    ) -> Result<WriteOutcome, ExecError> {
        self.check_references(c, tenant, &record).await?;
        let sql = insert_sql(tenant, &record);
        c.execute(&sql.text, &sql.args).await?;
        if of.id == CollectionId::Groups {
            self.refresh_group(c, tenant, &record).await?;
        }
        Ok(WriteOutcome::Created(record))
    }

    /// `Write::Update`: merge the changes, check the whole record again, store what changed.
    pub(crate) async fn update_item(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        of: &'static Collection,
        keys: Vec<String>,
        changes: Vec<(usize, Value)>,
    ) -> Result<WriteOutcome, ExecError> {
        let id = keys.last().cloned().unwrap_or_default();
        let key = EntityRef::Item { of, keys };
        let Some(mut record) = self.fetch(c, tenant, &key, true).await? else {
            return Err(missing(of, &id));
        };
        let mut changed = apply(&mut record, changes);
        if let Some((index, _)) = of.entity.property("lastModifiedDateTime") {
            record.values[index] = Value::Time(Instant::now());
            changed.push(index);
        }
        directory::check(&record).map_err(|e| invalid(e.0))?;
        self.check_references(c, tenant, &record).await?;
        self.update_columns(c, tenant, &key, &record, &changed, None)
            .await?;
        if of.id == CollectionId::Groups {
            self.refresh_group(c, tenant, &record).await?;
        }
        Ok(WriteOutcome::Updated)
    }

    /// `Write::Delete`: refused while something still names the entity.
    pub(crate) async fn delete_item(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        of: &'static Collection,
        keys: Vec<String>,
    ) -> Result<WriteOutcome, ExecError> {
        let id = keys.last().cloned().unwrap_or_default();
        let key = EntityRef::Item { of, keys };
        if self.fetch(c, tenant, &key, true).await?.is_none() {
            return Err(missing(of, &id));
        }
        match of.id {
            CollectionId::RoleScopeTags => self.refuse_tag_in_use(c, tenant, &id).await?,
            CollectionId::AssignmentFilters => self.refuse_filter_in_use(c, tenant, &id).await?,
            CollectionId::Groups => {
                c.execute(
                    "DELETE FROM group_members WHERE \"tenant\" = $1 AND \"groupId\" = $2",
                    &[db::text(tenant), db::text(&id)],
                )
                .await?;
            }
            CollectionId::Scripts
            | CollectionId::RunStates
            | CollectionId::Assignments
            | CollectionId::History
            | CollectionId::Devices
            | CollectionId::DirectoryDevices
            | CollectionId::GroupMembers
            | CollectionId::DeviceMemberOf
            | CollectionId::EnrollmentSecrets
            | CollectionId::ExportJobs => {}
        }
        self.delete(c, tenant, &key, String::new()).await
    }

    /// `POST …/members/$ref`.
    pub(crate) async fn add_reference(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        of: &'static Collection,
        parent: String,
        item: String,
    ) -> Result<WriteOutcome, ExecError> {
        let via = self.static_group(c, tenant, of, &parent).await?;
        let target = EntityRef::of(via.items, std::slice::from_ref(&item))
            .ok_or_else(|| invalid("The reference cannot be resolved.".into()))?;
        if fetch_entity(c, tenant, &target, false).await?.is_none() {
            return Err(StoreError::InvalidReference(format!(
                "The {} '{item}' named by '@odata.id' does not exist.",
                via.items.item_name
            ))
            .into());
        }
        let sql = format!(
            "INSERT INTO \"{}\" (\"tenant\", \"{}\", \"{}\", \"dynamic\") VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
            via.table, via.parent_column, via.item_column
        );
        let added = c
            .execute(
                &sql,
                &[db::text(tenant), db::text(&parent), db::text(&item)],
            )
            .await?;
        if added == 0 {
            return Err(invalid(
                "One or more added object references already exist for the following modified properties: 'members'.".into(),
            ));
        }
        Ok(WriteOutcome::Updated)
    }

    /// `DELETE …/members/{id}/$ref`.
    pub(crate) async fn remove_reference(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        of: &'static Collection,
        parent: String,
        item: String,
    ) -> Result<WriteOutcome, ExecError> {
        let via = self.static_group(c, tenant, of, &parent).await?;
        let sql = format!(
            "DELETE FROM \"{}\" WHERE \"tenant\" = $1 AND \"{}\" = $2 AND \"{}\" = $3",
            via.table, via.parent_column, via.item_column
        );
        let removed = c
            .execute(
                &sql,
                &[db::text(tenant), db::text(&parent), db::text(&item)],
            )
            .await?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!(
                "The {} '{item}' is not a member of the group '{parent}'.",
                via.items.item_name
            ))
            .into());
        }
        Ok(WriteOutcome::Updated)
    }

    /// The parent group of a `$ref` change, which must exist and not be dynamic.
    async fn static_group(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        of: &'static Collection,
        group_id: &str,
    ) -> Result<&'static remediate_domain::collections::Via, ExecError> {
        let (Some(via), remediate_domain::collections::Parent::Item(parent)) =
            (&of.via, &of.parent)
        else {
            return Err(invalid(format!("'{}' holds no references.", of.segment)));
        };
        let key = EntityRef::of(parent, &[group_id.to_owned()])
            .ok_or_else(|| invalid("The reference cannot be resolved.".into()))?;
        let Some(group) = self.fetch(c, tenant, &key, true).await? else {
            return Err(missing(parent, group_id));
        };
        if directory::is_dynamic(&group) {
            return Err(invalid(format!(
                "The members of the group '{group_id}' are computed from its membershipRule (groupTypes include 'DynamicMembership'); they cannot be added or removed by hand."
            )));
        }
        Ok(via)
    }

    /// Every role scope tag a record names must exist (the tenant's own or the built-in
    /// `Default`); an assignment's filter must exist.
    pub(crate) async fn check_references(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        record: &Record,
    ) -> Result<(), ExecError> {
        for property in ["roleScopeTagIds", "roleScopeTags"] {
            if record.entity.property(property).is_none() {
                continue;
            }
            for tag in strings(record.get(property)) {
                let found = c
                    .query_opt(
                        "SELECT 1 FROM role_scope_tags WHERE (\"tenant\" = $1 OR \"tenant\" = '') AND \"id\" = $2",
                        &[db::text(tenant), db::text(tag)],
                    )
                    .await?;
                if found.is_none() {
                    return Err(StoreError::InvalidReference(format!(
                        "The {property} value '{tag}' does not name a roleScopeTag of this tenant."
                    ))
                    .into());
                }
            }
        }
        Ok(())
    }

    /// The filter an assignment target names must exist.
    pub(crate) async fn check_target_filter(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        target: &Value,
    ) -> Result<(), ExecError> {
        let Value::Json(text) = target else {
            return Ok(());
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
            return Ok(());
        };
        if let Some((id, _)) = directory::target_filter(&json) {
            let key = EntityRef::of(&ASSIGNMENT_FILTERS, std::slice::from_ref(&id))
                .ok_or_else(|| invalid("The filter cannot be resolved.".into()))?;
            if fetch_entity(c, tenant, &key, false).await?.is_none() {
                return Err(StoreError::InvalidReference(format!(
                    "The deviceAndAppManagementAssignmentFilterId '{id}' does not name an assignment filter of this tenant."
                ))
                .into());
            }
        }
        Ok(())
    }

    async fn refuse_tag_in_use(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        tag: &str,
    ) -> Result<(), ExecError> {
        // Candidates by LIKE (ids are server-assigned GUIDs: no wildcards), then exact in Rust.
        let pattern = format!("%\"{}\"%", tag.replace(['%', '_'], ""));
        for (table, column, what) in [
            (
                "device_health_scripts",
                "roleScopeTagIds",
                "deviceHealthScript",
            ),
            (
                "assignment_filters",
                "roleScopeTags",
                "deviceAndAppManagementAssignmentFilter",
            ),
            ("managed_devices", "roleScopeTagIds", "managedDevice"),
        ] {
            let rows = c
                .query(
                    &format!("SELECT \"id\", \"{column}\" FROM {table} WHERE \"tenant\" = $1 AND \"{column}\" LIKE $2"),
                    &[db::text(tenant), db::text(&pattern)],
                )
                .await?;
            for row in rows {
                let ids: Vec<String> = row
                    .text(1)?
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                if ids.iter().any(|i| i == tag) {
                    let user = row.text(0)?.unwrap_or_default();
                    return Err(invalid(format!(
                        "The roleScopeTag '{tag}' is in use by the {what} '{user}'; remove it from there first."
                    )));
                }
            }
        }
        Ok(())
    }

    async fn refuse_filter_in_use(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        filter: &str,
    ) -> Result<(), ExecError> {
        let pattern = format!("%{}%", filter.replace(['%', '_'], ""));
        let rows = c
            .query(
                "SELECT \"scriptId\", \"id\", \"target\" FROM device_health_script_assignments WHERE \"tenant\" = $1 AND \"target\" LIKE $2",
                &[db::text(tenant), db::text(&pattern)],
            )
            .await?;
        for row in rows {
            let target: serde_json::Value = row
                .text(2)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            if directory::target_filter(&target).is_some_and(|(id, _)| id == filter) {
                let script = row.text(0)?.unwrap_or_default();
                let assignment = row.text(1)?.unwrap_or_default();
                return Err(invalid(format!(
                    "The assignment filter '{filter}' is in use by the assignment '{assignment}' of the deviceHealthScript '{script}'; remove it from there first."
                )));
            }
        }
        Ok(())
    }

    /// Serialize membership evaluation of one tenant (PostgreSQL; see the module docs).
    async fn lock_directory(&self, c: &mut dyn Conn, tenant: &str) -> Result<(), DbError> {
        if self.dialect == DbDialect::Postgres {
            // The function returns void, which no row codec reads: run it for its effect.
            c.execute(
                "SELECT pg_advisory_xact_lock(727275, hashtext($1))",
                &[db::text(tenant)],
            )
            .await?;
        }
        Ok(())
    }

    /// Recompute a group's members after it was created or changed: a dynamic group's members
    /// are exactly the devices its rule matches (by-hand members are replaced); a group that is
    /// not dynamic keeps only its by-hand members.
    pub(crate) async fn refresh_group(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        group: &Record,
    ) -> Result<(), ExecError> {
        self.lock_directory(c, tenant).await?;
        let dynamic = directory::is_dynamic(group);
        let clear = if dynamic {
            "DELETE FROM group_members WHERE \"tenant\" = $1 AND \"groupId\" = $2"
        } else {
            "DELETE FROM group_members WHERE \"tenant\" = $1 AND \"groupId\" = $2 AND \"dynamic\" = 1"
        };
        c.execute(clear, &[db::text(tenant), db::text(group.id())])
            .await?;
        if !dynamic {
            return Ok(());
        }
        let devices = c
            .query(
                &format!(
                    "SELECT {} FROM managed_devices t WHERE t.\"tenant\" = $1",
                    select_columns(&MANAGED_DEVICE, "t", false)
                ),
                &[db::text(tenant)],
            )
            .await?;
        for mut row in devices {
            let device = decode_record(&MANAGED_DEVICE, &mut row, 0)?;
            let facts = DeviceFacts::of_managed_device(&device, device.id());
            if directory::dynamic_member(group, &facts) {
                self.add_dynamic(c, tenant, group.id(), device.id()).await?;
            }
        }
        Ok(())
    }

    /// Recompute a device's dynamic memberships after it was registered or changed.
    pub(crate) async fn refresh_device(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        device: &Record,
    ) -> Result<(), ExecError> {
        self.lock_directory(c, tenant).await?;
        c.execute(
            "DELETE FROM group_members WHERE \"tenant\" = $1 AND \"memberId\" = $2 AND \"dynamic\" = 1",
            &[db::text(tenant), db::text(device.id())],
        )
        .await?;
        let facts = DeviceFacts::of_managed_device(device, device.id());
        for group in dynamic_groups(c, tenant).await? {
            if directory::dynamic_member(&group, &facts) {
                self.add_dynamic(c, tenant, group.id(), device.id()).await?;
            }
        }
        Ok(())
    }

    async fn add_dynamic(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        group: &str,
        member: &str,
    ) -> Result<(), DbError> {
        c.execute(
            "INSERT INTO group_members (\"tenant\", \"groupId\", \"memberId\", \"dynamic\") VALUES ($1, $2, $3, 1) \
             ON CONFLICT (\"tenant\", \"groupId\", \"memberId\") DO UPDATE SET \"dynamic\" = 1",
            &[db::text(tenant), db::text(group), db::text(member)],
        )
        .await?;
        Ok(())
    }
}

/// The dynamic groups of a tenant.
async fn dynamic_groups(c: &mut dyn Conn, tenant: &str) -> Result<Vec<Record>, DbError> {
    let rows = c
        .query(
            &format!(
                "SELECT {} FROM groups t WHERE t.\"tenant\" = $1 AND t.\"groupTypes\" LIKE '%DynamicMembership%'",
                select_columns(&GROUP, "t", false)
            ),
            &[db::text(tenant)],
        )
        .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for mut row in rows {
        let group = decode_record(&GROUP, &mut row, 0)?;
        if directory::is_dynamic(&group) {
            groups.push(group);
        }
    }
    Ok(groups)
}

/// What targeting reads of a device: its memberships, its properties and the tenant's filters.
/// A device that does not exist (yet) has no memberships and no properties.
pub(crate) async fn device_targeting(
    c: &mut dyn Conn,
    tenant: &str,
    device_id: &str,
) -> Result<DeviceTargeting, ExecError> {
    match device_targeting_of(c, tenant, device_id).await? {
        Some(targeting) => Ok(targeting),
        None => Ok(DeviceTargeting {
            filters: tenant_filters(c, tenant).await?,
            ..DeviceTargeting::default()
        }),
    }
}

/// [`device_targeting`] of a device that exists; `None` when it does not.
pub(crate) async fn device_targeting_of(
    c: &mut dyn Conn,
    tenant: &str,
    device_id: &str,
) -> Result<Option<DeviceTargeting>, ExecError> {
    let mut targeting = DeviceTargeting::default();
    let key = EntityRef::Device(device_id.to_owned());
    let Some(device) = fetch_entity(c, tenant, &key, false).await? else {
        return Ok(None);
    };
    targeting.facts = DeviceFacts::of_managed_device(&device, device_id);
    targeting.has_user = matches!(device.get("userPrincipalName"), Value::Str(s) if !s.is_empty());
    let rows = c
        .query(
            "SELECT \"groupId\" FROM group_members WHERE \"tenant\" = $1 AND \"memberId\" = $2",
            &[db::text(tenant), db::text(device_id)],
        )
        .await?;
    for row in rows {
        if let Some(group) = row.text(0)? {
            targeting.groups.push(group);
        }
    }
    targeting.filters = tenant_filters(c, tenant).await?;
    Ok(Some(targeting))
}

/// What decides which scripts a device token may see, in one statement: every assignment target
/// of the tenant (script id, target JSON) and the device's [`DeviceTargeting`]. A device token's
/// every request reads this, so on PostgreSQL it is one round trip instead of four. Falls back to
/// the statement-by-statement reads when the device does not exist (a token of an unregistered
/// device) or an aggregate cannot be read back.
pub(crate) async fn device_visibility(
    c: &mut dyn Conn,
    postgres: bool,
    tenant: &str,
    device_id: &str,
) -> Result<(Vec<(String, String)>, DeviceTargeting), ExecError> {
    if let Some(seen) = device_in_one(c, postgres, tenant, device_id).await? {
        return Ok((seen.targets, seen.targeting));
    }
    let targets = crate::reads::assignment_targets(c, tenant).await?;
    Ok((targets, device_targeting(c, tenant, device_id).await?))
}

/// A device as targeting and its agent see it, read in one statement.
pub(crate) struct DeviceInOne {
    /// Every assignment target of the tenant: (script id, target JSON).
    pub targets: Vec<(String, String)>,
    pub targeting: DeviceTargeting,
    /// Scripts with an on-demand run requested for the device, oldest request first.
    pub pending: Vec<String>,
}

/// The device's row with the tenant's assignment targets, the device's groups, the tenant's
/// filters and the device's pending on-demand runs aggregated as JSON in scalar subqueries
/// (`json_agg` on PostgreSQL, `json_group_array` on SQLite). `None` when the device does not
/// exist, or when an aggregate cannot be read back (stored text holding NUL: the caller then
/// reads statement by statement).
pub(crate) async fn device_in_one(
    c: &mut dyn Conn,
    postgres: bool,
    tenant: &str,
    device_id: &str,
) -> Result<Option<DeviceInOne>, ExecError> {
    let (pair, list) = if postgres {
        ("json_build_array", "json_agg")
    } else {
        ("json_array", "json_group_array")
    };
    let cast = if postgres { "::TEXT" } else { "" };
    let sql = format!(
        "SELECT {columns}, \
           (SELECT {list}({pair}(a.\"scriptId\", a.\"target\")){cast} FROM device_health_script_assignments a WHERE a.\"tenant\" = $1), \
           (SELECT {list}(g.\"groupId\"){cast} FROM group_members g WHERE g.\"tenant\" = $1 AND g.\"memberId\" = $2), \
           (SELECT {list}({pair}(f.\"id\", f.\"rule\")){cast} FROM assignment_filters f WHERE f.\"tenant\" = $1), \
           (SELECT {list}(o.\"scriptId\"){cast} FROM (SELECT \"scriptId\" FROM on_demand_requests \
              WHERE \"tenant\" = $1 AND \"managedDeviceId\" = $2 ORDER BY \"requestedDateTime\", \"scriptId\") o) \
         FROM managed_devices t WHERE t.\"tenant\" = $1 AND t.\"id\" = $2",
        columns = select_columns(&MANAGED_DEVICE, "t", false),
    );
    let Some(mut row) = c
        .query_opt(&sql, &[db::text(tenant), db::text(device_id)])
        .await?
    else {
        return Ok(None);
    };
    let at = crate::codec::column_count(&MANAGED_DEVICE);
    let json = |row: &crate::db::Row, i: usize| -> Option<serde_json::Value> {
        match row.text(at + i).ok()? {
            Some(text) => serde_json::from_str(&text).ok(),
            None => Some(serde_json::Value::Array(Vec::new())),
        }
    };
    let (Some(targets), Some(groups), Some(filters), Some(pending)) =
        (json(&row, 0), json(&row, 1), json(&row, 2), json(&row, 3))
    else {
        return Ok(None);
    };
    let device = decode_record(&MANAGED_DEVICE, &mut row, 0)?;
    let pairs = |v: serde_json::Value| -> Vec<(String, String)> {
        serde_json::from_value::<Vec<(Option<String>, Option<String>)>>(v)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(a, b)| Some((a?, b?)))
            .collect()
    };
    let texts = |v: serde_json::Value| -> Vec<String> {
        serde_json::from_value::<Vec<Option<String>>>(v)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect()
    };
    let mut targeting = DeviceTargeting {
        facts: DeviceFacts::of_managed_device(&device, device_id),
        has_user: matches!(device.get("userPrincipalName"), Value::Str(s) if !s.is_empty()),
        groups: texts(groups),
        ..DeviceTargeting::default()
    };
    for (id, text) in pairs(filters) {
        if let Ok(rule) = remediate_domain::rule::parse(&text, Dialect::Filter) {
            targeting.filters.insert(id, rule);
        }
    }
    Ok(Some(DeviceInOne {
        targets: pairs(targets),
        targeting,
        pending: texts(pending),
    }))
}

/// The rules of the tenant's assignment filters, by id (unparseable ones left out).
async fn tenant_filters(
    c: &mut dyn Conn,
    tenant: &str,
) -> Result<HashMap<String, remediate_domain::rule::Rule>, ExecError> {
    let rows = c
        .query(
            "SELECT \"id\", \"rule\" FROM assignment_filters WHERE \"tenant\" = $1",
            &[db::text(tenant)],
        )
        .await?;
    let mut filters = HashMap::new();
    for row in rows {
        if let (Some(id), Some(text)) = (row.text(0)?, row.text(1)?) {
            if let Ok(rule) = remediate_domain::rule::parse(&text, Dialect::Filter) {
                filters.insert(id, rule);
            }
        }
    }
    Ok(filters)
}
