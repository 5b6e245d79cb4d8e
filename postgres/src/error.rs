//! How tokio-postgres failures become [`StoreError`]s, and which are retried.
//!
//! Messages name the failure (an SQLSTATE, PostgreSQL's message for the
//! classes whose messages quote no values, the constraint), never the data: a
//! unique violation's DETAIL quotes the key, so it is never shown. Nothing
//! here ever sees the connection password.

use tokenstore_core::StoreError;
use tokio_postgres::error::{DbError, SqlState};

/// A failure inside a job: a database error (maybe retryable) or one of ours.
#[derive(Debug)]
pub(crate) enum Fail {
    /// From tokio-postgres.
    Pg(tokio_postgres::Error),
    /// Already a store error (bad input, decryption, corrupt row).
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Fail {
    /// The SQLSTATE of a conflict between concurrent transactions that a
    /// retry of the whole transaction resolves: serialization failure,
    /// deadlock, or a unique violation raced in by another writer.
    pub(crate) fn conflict(&self) -> Option<&'static str> {
        let Self::Pg(e) = self else { return None };
        match e.code()? {
            c if *c == SqlState::T_R_SERIALIZATION_FAILURE => Some("40001"),
            c if *c == SqlState::T_R_DEADLOCK_DETECTED => Some("40P01"),
            c if *c == SqlState::UNIQUE_VIOLATION => Some("23505"),
            _ => None,
        }
    }

    /// As a [`StoreError`].
    pub(crate) fn into_store(self) -> StoreError {
        match self {
            Self::Pg(e) => backend(&e),
            Self::Store(e) => e,
        }
    }
}

/// A tokio-postgres failure as [`StoreError::Backend`].
pub(crate) fn backend(e: &tokio_postgres::Error) -> StoreError {
    StoreError::Backend(describe(e))
}

/// A value-free description of a tokio-postgres error.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return describe_db(db);
    }
    if e.is_closed() {
        return "postgres: the connection is closed".to_owned();
    }
    if let Some(io) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>())
    {
        return format!("postgres: I/O error: {}", io.kind());
    }
    // tokio-postgres's own messages ("error deserializing column 3", "timeout
    // waiting for server", "unexpected message from server") quote no values.
    let text = e.to_string();
    format!("postgres: {}", text.lines().next().unwrap_or("error"))
}

fn describe_db(db: &DbError) -> String {
    let code = db.code().code();
    // Data exceptions (22) and integrity violations (23) may quote the value
    // in the message; name only the constraint and the column.
    if code.starts_with("22") || code.starts_with("23") {
        let mut out = format!("postgres error {code}");
        if let Some(c) = db.constraint() {
            out.push_str(&format!(" (constraint {c})"));
        }
        if let Some(c) = db.column() {
            out.push_str(&format!(" (column {c})"));
        }
        return out;
    }
    format!("postgres error {code}: {}", db.message())
}

/// A value that is malformed in `table.column`.
pub(crate) fn corrupt(table: &'static str, column: &'static str) -> StoreError {
    StoreError::Corrupt { table, column }
}

/// The error of an operation whose runtime thread has gone away.
pub(crate) fn thread_gone() -> StoreError {
    StoreError::Backend("the PostgreSQL runtime thread has stopped".to_owned())
}

/// The error after `attempts` conflicting attempts in a row.
pub(crate) fn gave_up(op: &str, attempts: u32, sqlstate: &str) -> StoreError {
    StoreError::Backend(format!(
        "{op}: concurrent writes conflicted {attempts} times in a row \
         (last SQLSTATE {sqlstate}); gave up, retry later"
    ))
}
