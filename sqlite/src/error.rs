//! How rusqlite failures become [`StoreError`]s.
//!
//! Messages name the failure (SQLite's own message, which never quotes bound
//! values), never the data.

use rusqlite::Error;
use tokenstore_core::StoreError;

/// A rusqlite failure as [`StoreError::Backend`].
pub(crate) fn backend(err: Error) -> StoreError {
    StoreError::Backend(describe(&err))
}

/// A value-free description of a rusqlite error.
fn describe(err: &Error) -> String {
    match err {
        Error::SqliteFailure(code, Some(message)) => format!("sqlite: {message} ({code})"),
        Error::SqliteFailure(code, None) => format!("sqlite: {code}"),
        Error::InvalidColumnName(name) => format!("rusqlite: no column named {name}"),
        Error::InvalidColumnIndex(index) => format!("rusqlite: no column {index}"),
        Error::InvalidPath(_) => "rusqlite: the database path is not valid".to_owned(),
        Error::QueryReturnedNoRows => "rusqlite: the query returned no rows".to_owned(),
        _ => "rusqlite: unexpected error".to_owned(),
    }
}

/// The error of an operation whose connection thread has gone away.
pub(crate) fn thread_gone() -> StoreError {
    StoreError::Backend("the SQLite connection thread has stopped".to_owned())
}

/// A value that is malformed in `table.column`.
pub(crate) fn corrupt(table: &'static str, column: &'static str) -> StoreError {
    StoreError::Corrupt { table, column }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    #[test]
    fn messages_carry_no_values() {
        let err = Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_CONSTRAINT),
            Some("UNIQUE constraint failed: sessions.session_id".to_owned()),
        );
        let StoreError::Backend(message) = backend(err) else {
            panic!("not a backend error");
        };
        assert!(message.contains("sessions.session_id"), "{message}");
        let other = backend(Error::ToSqlConversionFailure("secret-value".into()));
        assert!(!format!("{other:?}").contains("secret-value"));
    }
}
