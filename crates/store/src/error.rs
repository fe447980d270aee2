//! The internal error of write commands and reads ([`ExecError`]), and the one mapping from
//! database failures to the [`StoreError`] callers see ([`store_error`]).
//!
//! A command or read ends in one of two ways besides success: the database failed (the
//! transaction is broken: PostgreSQL retries a deadlock, everything else becomes a
//! [`StoreError`] through [`store_error`]), or the request was rejected (a missing entity, a
//! taken key, a bad reference): the transaction is still usable and is rolled back — on SQLite
//! only the rejected write's savepoint, so the other writes of its group commit.

use crate::db::{DbError, DbErrorKind};
use crate::StoreError;

/// How executing a command or a read on a connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecError {
    /// The database failed; the transaction cannot continue.
    Db(DbError),
    /// The request was refused for a reason the caller sees as it is.
    Rejected(StoreError),
}

impl From<DbError> for ExecError {
    fn from(e: DbError) -> ExecError {
        ExecError::Db(e)
    }
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> ExecError {
        ExecError::Rejected(e)
    }
}

impl From<ExecError> for StoreError {
    fn from(e: ExecError) -> StoreError {
        match e {
            ExecError::Db(e) => store_error(e),
            ExecError::Rejected(e) => e,
        }
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        store_error(e)
    }
}

/// What a database failure means to a caller.
pub(crate) fn store_error(e: DbError) -> StoreError {
    match e.kind {
        DbErrorKind::Unique => {
            StoreError::Conflict("An entity with the same key already exists.".into())
        }
        DbErrorKind::Unavailable | DbErrorKind::Retry => StoreError::Unavailable(e.message),
        DbErrorKind::Timeout => StoreError::Timeout(
            "The query ran longer than the server's statement timeout; narrow it with $filter or $top.".into(),
        ),
        DbErrorKind::Full => StoreError::InsufficientStorage(e.message),
        DbErrorKind::Other => StoreError::Internal(e.message),
    }
}
