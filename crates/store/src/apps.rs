//! Registered applications of the Entra-shaped token endpoint (`remediate app create`, `POST
//! /{tenant}/oauth2/v2.0/token`): one row per (tenant, client id) with its roles, scopes and the
//! SHA-256 hash of its client secret. Registering, revoking and listing run where maintenance
//! runs (`SqlStore::maintain`: the SQLite writer thread, a PostgreSQL transaction); the token
//! endpoint's lookup is a read.

use remediate_domain::Instant;

use crate::db::{self, Conn, DbError, Row};

/// A registered application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredApp {
    pub tenant: String,
    /// The application (client) id, a GUID.
    pub client_id: String,
    pub display_name: String,
    /// Application permissions: the token's `roles` claim.
    pub roles: Vec<String>,
    /// Delegated permission names: the token's `scp` claim (empty: none).
    pub scopes: Vec<String>,
    /// SHA-256 (hex) of the client secret (`remediate_domain::agents::hash_secret`).
    pub secret_hash: String,
    pub created: Instant,
    /// When it was revoked; a revoked app gets no more tokens.
    pub revoked: Option<Instant>,
}

const COLUMNS: &str = "\"tenant\", \"clientId\", \"displayName\", \"roles\", \"scopes\", \
     \"secretHash\", \"createdDateTime\", \"revokedDateTime\"";

fn list_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

fn from_row(row: &Row) -> Result<RegisteredApp, DbError> {
    let list = |i: usize| -> Result<Vec<String>, DbError> {
        let text = row.text(i)?.unwrap_or_default();
        serde_json::from_str(&text)
            .map_err(|e| DbError::other(format!("apps column {i} is not a JSON list: {e}")))
    };
    let time = |i: usize| -> Result<Option<Instant>, DbError> {
        match row.int(i)? {
            None => Ok(None),
            Some(ticks) => Instant::from_ticks(ticks)
                .map(Some)
                .ok_or_else(|| DbError::other(format!("apps column {i}: {ticks} is not a time"))),
        }
    };
    Ok(RegisteredApp {
        tenant: row.text(0)?.unwrap_or_default(),
        client_id: row.text(1)?.unwrap_or_default(),
        display_name: row.text(2)?.unwrap_or_default(),
        roles: list(3)?,
        scopes: list(4)?,
        secret_hash: row.text(5)?.unwrap_or_default(),
        created: time(6)?.unwrap_or(Instant::MIN),
        revoked: time(7)?,
    })
}

/// Register `app`; `false` when its (tenant, client id) is taken.
pub(crate) async fn insert(c: &mut dyn Conn, app: &RegisteredApp) -> Result<bool, DbError> {
    let changed = c
        .execute(
            &format!(
                "INSERT INTO apps ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (\"tenant\", \"clientId\") DO NOTHING"
            ),
            &[
                db::text(&app.tenant),
                db::text(&app.client_id),
                db::text(&app.display_name),
                db::text(&list_json(&app.roles)),
                db::text(&list_json(&app.scopes)),
                db::text(&app.secret_hash),
                db::int(app.created.ticks()),
                match app.revoked {
                    Some(t) => db::int(t.ticks()),
                    None => crate::translate::Arg::Int(None),
                },
            ],
        )
        .await?;
    Ok(changed == 1)
}

/// One app of a tenant (revoked or not); `None`: not registered there.
pub(crate) async fn get(
    c: &mut dyn Conn,
    tenant: &str,
    client_id: &str,
) -> Result<Option<RegisteredApp>, DbError> {
    let row = c
        .query_opt(
            &format!("SELECT {COLUMNS} FROM apps WHERE \"tenant\" = $1 AND \"clientId\" = $2"),
            &[db::text(tenant), db::text(client_id)],
        )
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every app of a tenant, oldest first.
pub(crate) async fn list(c: &mut dyn Conn, tenant: &str) -> Result<Vec<RegisteredApp>, DbError> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM apps WHERE \"tenant\" = $1 \
                 ORDER BY \"createdDateTime\", \"clientId\""
            ),
            &[db::text(tenant)],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

/// Revoke an app at `at` (an app revoked before keeps its first revocation time); the app as it
/// is now, `None` when it is not registered in the tenant.
pub(crate) async fn revoke(
    c: &mut dyn Conn,
    tenant: &str,
    client_id: &str,
    at: Instant,
) -> Result<Option<RegisteredApp>, DbError> {
    c.execute(
        "UPDATE apps SET \"revokedDateTime\" = $3 \
         WHERE \"tenant\" = $1 AND \"clientId\" = $2 AND \"revokedDateTime\" IS NULL",
        &[db::text(tenant), db::text(client_id), db::int(at.ticks())],
    )
    .await?;
    get(c, tenant, client_id).await
}
