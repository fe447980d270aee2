//! Device agents' enrollment in storage: enrollment secrets (their hash in a column the entity
//! does not show), enrolling a device with one (use counted atomically, groups joined, credential
//! hash stored — all in one transaction), and the reads of the unauthenticated agent endpoints:
//! which tenant a secret belongs to, and a device's credential hash.

use remediate_domain::directory;
use remediate_domain::model::{GROUP, MANAGED_DEVICE};
use remediate_domain::write::WriteOutcome;
use remediate_domain::{Instant, Record, Value};

use crate::codec::{insert_sql, insert_sql_with};
use crate::commands::Writer;
use crate::connect::Dialect;
use crate::counters;
use crate::db::{self, Conn, DbError};
use crate::error::ExecError;
use crate::reads::fetch_entity;
use crate::{EntityRef, StoreError};

fn refused(message: &str) -> ExecError {
    StoreError::InvalidReference(message.to_owned()).into()
}

impl Writer {
    /// `Write::CreateEnrollmentSecret`: the groups it names must exist.
    pub(crate) async fn create_secret(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        record: Record,
        secret_hash: String,
    ) -> Result<WriteOutcome, ExecError> {
        if let Value::StrList(groups) = record.get("groupIds") {
            for group in groups {
                let key = EntityRef::of(
                    &remediate_domain::collections::GROUPS,
                    std::slice::from_ref(group),
                )
                .ok_or_else(|| refused("The group cannot be resolved."))?;
                if fetch_entity(c, tenant, &key, false).await?.is_none() {
                    return Err(StoreError::InvalidReference(format!(
                        "The groupIds value '{group}' does not name a group of this tenant."
                    ))
                    .into());
                }
            }
        }
        let sql = insert_sql_with(
            tenant,
            &record,
            vec![("secretHash", db::text(&secret_hash))],
        );
        c.execute(&sql.text, &sql.args).await?;
        Ok(WriteOutcome::Created(record))
    }

    /// `Write::Enroll`: count the secret's use, then register the device (or update the device
    /// whose credential the agent proved) and join the secret's groups.
    pub(crate) async fn enroll(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        secret_hash: String,
        mut device: Record,
        credential_hash: String,
        existing: Option<(String, String)>,
    ) -> Result<WriteOutcome, ExecError> {
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        };
        let row = c
            .query_opt(
                &format!("SELECT \"id\", \"expirationDateTime\", \"usesRemaining\", \"groupIds\" FROM enrollment_secrets WHERE \"tenant\" = $1 AND \"secretHash\" = $2{lock}"),
                &[db::text(tenant), db::text(&secret_hash)],
            )
            .await?;
        let invalid =
            "The enrollment secret is not valid: it is unknown, revoked, expired or used up.";
        let Some(row) = row else {
            return Err(refused(invalid));
        };
        let secret_id = row.text(0)?.unwrap_or_default();
        let expires = row.int(1)?;
        let remaining = row.int(2)?;
        let groups: Vec<String> = row
            .text(3)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if expires.is_some_and(|t| t <= Instant::now().ticks()) || remaining.is_some_and(|n| n < 1)
        {
            return Err(refused(invalid));
        }
        c.execute(
            "UPDATE enrollment_secrets SET \"usesCount\" = \"usesCount\" + 1, \
             \"usesRemaining\" = CASE WHEN \"usesRemaining\" IS NULL THEN NULL ELSE \"usesRemaining\" - 1 END \
             WHERE \"tenant\" = $1 AND \"id\" = $2",
            &[db::text(tenant), db::text(&secret_id)],
        )
        .await?;
        // Enrolling again with a proven credential keeps the device (and its credential).
        if let Some((id, proof)) = existing {
            if self.credential_matches(c, tenant, &id, &proof).await? {
                let key = EntityRef::Device(id.clone());
                let Some(mut current) = self.fetch(c, tenant, &key, true).await? else {
                    return Err(refused("The enrolled device no longer exists."));
                };
                let mut changed = Vec::new();
                for (index, p) in MANAGED_DEVICE.properties.iter().enumerate() {
                    let keep = matches!(p.name, "id" | "enrolledDateTime");
                    if !keep && current.values[index] != device.values[index] {
                        current.values[index] = device.values[index].clone();
                        changed.push(index);
                    }
                }
                self.update_columns(c, tenant, &key, &current, &changed, None)
                    .await?;
                self.refresh_device(c, tenant, &current).await?;
                self.join_groups(c, tenant, &id, &groups).await?;
                return Ok(WriteOutcome::Created(current));
            }
        }
        self.check_references(c, tenant, &device).await?;
        device.device_id = None;
        let sql = insert_sql(tenant, &device);
        c.execute(&sql.text, &sql.args).await?;
        counters::bump(c, tenant, counters::DEVICES, self.shard, 1).await?;
        c.execute(
            "INSERT INTO device_credentials (\"tenant\", \"deviceId\", \"credentialHash\", \"createdDateTime\") VALUES ($1, $2, $3, $4)",
            &[
                db::text(tenant),
                db::text(device.id()),
                db::text(&credential_hash),
                db::int(Instant::now().ticks()),
            ],
        )
        .await?;
        self.refresh_device(c, tenant, &device).await?;
        self.join_groups(c, tenant, device.id(), &groups).await?;
        Ok(WriteOutcome::Created(device))
    }

    async fn credential_matches(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        device: &str,
        hash: &str,
    ) -> Result<bool, DbError> {
        Ok(credential_hash(c, tenant, device).await?.as_deref() == Some(hash))
    }

    /// By-hand membership of the secret's groups that still exist (and are not dynamic).
    async fn join_groups(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        device: &str,
        groups: &[String],
    ) -> Result<(), ExecError> {
        for group in groups {
            let key = EntityRef::of(
                &remediate_domain::collections::GROUPS,
                std::slice::from_ref(group),
            )
            .ok_or_else(|| refused("The group cannot be resolved."))?;
            match fetch_entity(c, tenant, &key, false).await? {
                Some(g) if std::ptr::eq(g.entity, &GROUP) && !directory::is_dynamic(&g) => {
                    c.execute(
                        "INSERT INTO group_members (\"tenant\", \"groupId\", \"memberId\", \"dynamic\") VALUES ($1, $2, $3, 0) \
                         ON CONFLICT (\"tenant\", \"groupId\", \"memberId\") DO UPDATE SET \"dynamic\" = 0",
                        &[db::text(tenant), db::text(group), db::text(device)],
                    )
                    .await?;
                }
                // A group deleted (or made dynamic) since the secret was made is skipped.
                _ => {}
            }
        }
        Ok(())
    }
}

/// The tenant an enrollment secret (by its hash) belongs to.
pub(crate) async fn secret_tenant(
    c: &mut dyn Conn,
    secret_hash: &str,
) -> Result<Option<String>, DbError> {
    let row = c
        .query_opt(
            "SELECT \"tenant\" FROM enrollment_secrets WHERE \"secretHash\" = $1",
            &[db::text(secret_hash)],
        )
        .await?;
    match row {
        Some(row) => row.text(0),
        None => Ok(None),
    }
}

/// The credential hash of an enrolled device (`None`: never enrolled, or deleted: revoked).
pub(crate) async fn credential_hash(
    c: &mut dyn Conn,
    tenant: &str,
    device: &str,
) -> Result<Option<String>, DbError> {
    let row = c
        .query_opt(
            "SELECT \"credentialHash\" FROM device_credentials WHERE \"tenant\" = $1 AND \"deviceId\" = $2",
            &[db::text(tenant), db::text(device)],
        )
        .await?;
    match row {
        Some(row) => row.text(0),
        None => Ok(None),
    }
}

/// What an agent's check-in reads (`Store::check_in_view`), on one connection, in two
/// statements: the device's targeting and pending on-demand runs
/// (`directory::device_in_one`), and every assignment of the tenant joined with its script.
/// `None` when the device does not exist.
pub(crate) async fn check_in_view(
    c: &mut dyn Conn,
    postgres: bool,
    tenant: &str,
    device_id: &str,
) -> Result<Option<remediate_domain::agents::CheckInView>, ExecError> {
    use remediate_domain::model::{DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT};
    let (targeting, pending) =
        match crate::directory::device_in_one(c, postgres, tenant, device_id).await? {
            Some(seen) => (seen.targeting, Some(seen.pending)),
            None => match crate::directory::device_targeting_of(c, tenant, device_id).await? {
                Some(targeting) => (targeting, None),
                None => return Ok(None),
            },
        };
    let (assignment, script) = (&DEVICE_HEALTH_SCRIPT_ASSIGNMENT, &DEVICE_HEALTH_SCRIPT);
    let sql = format!(
        "SELECT {}, {} FROM \"{}\" a JOIN \"{}\" s ON s.\"tenant\" = a.\"tenant\" AND s.\"id\" = a.\"scriptId\" \
         WHERE a.\"tenant\" = $1 ORDER BY a.\"scriptId\", a.\"id\"",
        crate::codec::select_columns(assignment, "a", true),
        crate::codec::select_columns(script, "s", true),
        assignment.table,
        script.table,
    );
    let rows = c.query(&sql, &[db::text(tenant)]).await?;
    let offset = crate::codec::column_count(assignment);
    let mut assignments = Vec::with_capacity(rows.len());
    for mut row in rows {
        let a = crate::codec::decode_record(assignment, &mut row, 0)?;
        let s = crate::codec::decode_record(script, &mut row, offset)?;
        assignments.push((a, s));
    }
    let pending_on_demand = match pending {
        Some(pending) => pending,
        None => {
            let rows = c
                .query(
                    "SELECT \"scriptId\" FROM on_demand_requests WHERE \"tenant\" = $1 AND \"managedDeviceId\" = $2 \
                     ORDER BY \"requestedDateTime\", \"scriptId\"",
                    &[db::text(tenant), db::text(device_id)],
                )
                .await?;
            let mut pending = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some(script) = row.text(0)? {
                    pending.push(script);
                }
            }
            pending
        }
    };
    Ok(Some(remediate_domain::agents::CheckInView {
        targeting,
        assignments,
        pending_on_demand,
    }))
}
