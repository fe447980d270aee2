//! The dashboard's sign-in: one-time login links (`remediate login-link`) and browser sessions.
//! Only SHA-256 hashes of a link's token and of a session's id are stored. Redeeming a link marks
//! it used and opens its session in one transaction (where writes run), so a link opens at most
//! one session even when two browsers race for it. Timeouts are the API's to decide
//! (`remediate_api::dashboard`); storage keeps the times and deletes what is past them.

use remediate_domain::Instant;

use crate::db::{self, Conn, DbError, Row};

/// A login link: the tenant and permissions a session opened with it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLink {
    /// SHA-256 (hex) of the link's token.
    pub token_hash: String,
    pub tenant: String,
    /// Delegated permissions (`scp`).
    pub scopes: Vec<String>,
    /// Application permissions (`roles`).
    pub roles: Vec<String>,
    pub created: Instant,
    /// After this the link opens nothing.
    pub expires: Instant,
}

/// A dashboard session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 (hex) of the session id (the cookie's value).
    pub id_hash: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// When it was opened (the absolute timeout counts from here).
    pub created: Instant,
    /// When it was last used (the idle timeout counts from here).
    pub last_seen: Instant,
}

/// When a session is opened: now, and the cutoffs before which sessions are dead (deleted on the
/// way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionClock {
    pub now: Instant,
    /// Sessions last seen before this are idle past their timeout.
    pub idle_before: Instant,
    /// Sessions opened before this are past their absolute timeout.
    pub opened_before: Instant,
}

fn list_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

fn list(row: &Row, i: usize) -> Result<Vec<String>, DbError> {
    let text = row.text(i)?.unwrap_or_default();
    serde_json::from_str(&text)
        .map_err(|e| DbError::other(format!("sessions column {i} is not a JSON list: {e}")))
}

fn time(row: &Row, i: usize) -> Result<Instant, DbError> {
    let ticks = row.int(i)?.unwrap_or_default();
    Instant::from_ticks(ticks)
        .ok_or_else(|| DbError::other(format!("sessions column {i}: {ticks} is not a time")))
}

const SESSION_COLUMNS: &str =
    "\"idHash\", \"tenant\", \"scopes\", \"roles\", \"createdDateTime\", \"lastSeenDateTime\"";

fn session_from_row(row: &Row) -> Result<Session, DbError> {
    Ok(Session {
        id_hash: row.text(0)?.unwrap_or_default(),
        tenant: row.text(1)?.unwrap_or_default(),
        scopes: list(row, 2)?,
        roles: list(row, 3)?,
        created: time(row, 4)?,
        last_seen: time(row, 5)?,
    })
}

/// Store a new login link (and delete links expired for a day).
pub(crate) async fn insert_link(c: &mut dyn Conn, link: &LoginLink) -> Result<(), DbError> {
    let day_ago = link.created.ticks().saturating_sub(864_000_000_000);
    c.execute(
        "DELETE FROM login_links WHERE \"expiresDateTime\" < $1",
        &[db::int(day_ago)],
    )
    .await?;
    c.execute(
        "INSERT INTO login_links (\"tokenHash\", \"tenant\", \"scopes\", \"roles\", \
         \"createdDateTime\", \"expiresDateTime\", \"usedDateTime\") \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        &[
            db::text(&link.token_hash),
            db::text(&link.tenant),
            db::text(&list_json(&link.scopes)),
            db::text(&list_json(&link.roles)),
            db::int(link.created.ticks()),
            db::int(link.expires.ticks()),
        ],
    )
    .await?;
    Ok(())
}

/// Redeem the link whose token hashes to `token_hash`: when it exists, is unused and has not
/// expired, mark it used and open a session `session_hash` with its tenant and permissions.
/// `None` otherwise (nothing changes). Dead sessions are deleted on the way.
pub(crate) async fn open(
    c: &mut dyn Conn,
    token_hash: &str,
    session_hash: &str,
    clock: SessionClock,
) -> Result<Option<Session>, DbError> {
    c.execute(
        "DELETE FROM sessions WHERE \"lastSeenDateTime\" < $1 OR \"createdDateTime\" < $2",
        &[
            db::int(clock.idle_before.ticks()),
            db::int(clock.opened_before.ticks()),
        ],
    )
    .await?;
    let now = clock.now.ticks();
    let used = c
        .execute(
            "UPDATE login_links SET \"usedDateTime\" = $2 \
             WHERE \"tokenHash\" = $1 AND \"usedDateTime\" IS NULL AND \"expiresDateTime\" > $2",
            &[db::text(token_hash), db::int(now)],
        )
        .await?;
    if used != 1 {
        return Ok(None);
    }
    let Some(row) = c
        .query_opt(
            "SELECT \"tenant\", \"scopes\", \"roles\" FROM login_links WHERE \"tokenHash\" = $1",
            &[db::text(token_hash)],
        )
        .await?
    else {
        return Ok(None);
    };
    let session = Session {
        id_hash: session_hash.to_owned(),
        tenant: row.text(0)?.unwrap_or_default(),
        scopes: list(&row, 1)?,
        roles: list(&row, 2)?,
        created: clock.now,
        last_seen: clock.now,
    };
    c.execute(
        &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            db::text(&session.id_hash),
            db::text(&session.tenant),
            db::text(&list_json(&session.scopes)),
            db::text(&list_json(&session.roles)),
            db::int(now),
            db::int(now),
        ],
    )
    .await?;
    Ok(Some(session))
}

/// The session whose id hashes to `id_hash` (`None`: unknown or ended).
pub(crate) async fn get(c: &mut dyn Conn, id_hash: &str) -> Result<Option<Session>, DbError> {
    let row = c
        .query_opt(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE \"idHash\" = $1"),
            &[db::text(id_hash)],
        )
        .await?;
    row.as_ref().map(session_from_row).transpose()
}

/// Mark a session as used at `now` (never moves its time back).
pub(crate) async fn touch(c: &mut dyn Conn, id_hash: &str, now: Instant) -> Result<(), DbError> {
    c.execute(
        "UPDATE sessions SET \"lastSeenDateTime\" = $2 \
         WHERE \"idHash\" = $1 AND \"lastSeenDateTime\" < $2",
        &[db::text(id_hash), db::int(now.ticks())],
    )
    .await?;
    Ok(())
}

/// End a session (sign-out, or found expired); `true` when it existed.
pub(crate) async fn delete(c: &mut dyn Conn, id_hash: &str) -> Result<bool, DbError> {
    let deleted = c
        .execute(
            "DELETE FROM sessions WHERE \"idHash\" = $1",
            &[db::text(id_hash)],
        )
        .await?;
    Ok(deleted > 0)
}
