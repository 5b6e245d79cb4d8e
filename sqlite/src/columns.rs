//! Typed, fail-closed reads of one row's columns, and the shared SQL for expiry.
//!
//! Every reader refuses a value of the wrong storage class, invalid UTF-8, a
//! non-finite time or malformed JSON with [`StoreError::Corrupt`] naming the
//! table and column, never the value.

use crate::crypto::Codec;
use crate::error::{backend, corrupt};
use crate::json;
use rusqlite::Row;
use rusqlite::types::ValueRef;
use tokenstore_core::{Secret, StoreError, Timestamp, TokenHash};

/// The SQL condition "`$col` holds a time before `now`", with `$cutoff` the
/// parameter bound to [`cutoff`]`(now)`.
///
/// It decides exactly as Rust does on the decoded value
/// (`Timestamp::from_unix_secs_f64(col) < now`, rounding to the microsecond)
/// for every `now` within about 140 years of the epoch, and only counts numbers:
/// a NULL or a corrupt value is never expired.
macro_rules! expired_sql {
    ($col:literal, $cutoff:literal) => {
        concat!(
            "(typeof(",
            $col,
            ") IN ('real', 'integer') AND (",
            $col,
            " * 1000000.0 < ",
            $cutoff,
            " OR (",
            $col,
            " * 1000000.0 = ",
            $cutoff,
            " AND ",
            $cutoff,
            " < 0)))"
        )
    };
}
pub(crate) use expired_sql;

/// The parameter of [`expired_sql!`] for `now`: microseconds minus one half.
///
/// `round(x) < n` exactly when `x < n - 0.5` (or `x = n - 0.5 < 0`, as `round`
/// goes away from zero); `n - 0.5` is exact while `|n| < 2^52` microseconds.
pub(crate) fn cutoff(now: Timestamp) -> f64 {
    now.as_unix_micros() as f64 - 0.5
}

/// A time as mxcp stores it: REAL Unix seconds.
pub(crate) fn secs(t: Timestamp) -> f64 {
    t.as_unix_secs_f64()
}

/// An optional time as mxcp stores it.
pub(crate) fn opt_secs(t: Option<Timestamp>) -> Option<f64> {
    t.map(secs)
}

/// One row of `table`, read column by column.
pub(crate) struct Cols<'r, 's> {
    row: &'r Row<'s>,
    table: &'static str,
}

impl<'r, 's> Cols<'r, 's> {
    /// Reads `row`, a row of `table`.
    pub(crate) fn new(row: &'r Row<'s>, table: &'static str) -> Self {
        Self { row, table }
    }

    fn corrupt(&self, column: &'static str) -> StoreError {
        corrupt(self.table, column)
    }

    fn value(&self, column: &'static str) -> Result<ValueRef<'r>, StoreError> {
        self.row.get_ref(column).map_err(backend)
    }

    /// A nullable TEXT column.
    pub(crate) fn opt_text(&self, column: &'static str) -> Result<Option<String>, StoreError> {
        match self.value(column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| self.corrupt(column)),
            _ => Err(self.corrupt(column)),
        }
    }

    /// A NOT NULL TEXT column.
    pub(crate) fn text(&self, column: &'static str) -> Result<String, StoreError> {
        self.opt_text(column)?.ok_or_else(|| self.corrupt(column))
    }

    /// A nullable REAL time column.
    pub(crate) fn opt_time(&self, column: &'static str) -> Result<Option<Timestamp>, StoreError> {
        let secs = match self.value(column)? {
            ValueRef::Null => return Ok(None),
            ValueRef::Real(f) => f,
            ValueRef::Integer(i) => i as f64,
            _ => return Err(self.corrupt(column)),
        };
        Timestamp::try_from_unix_secs_f64(secs)
            .map(Some)
            .ok_or_else(|| self.corrupt(column))
    }

    /// A NOT NULL REAL time column.
    pub(crate) fn time(&self, column: &'static str) -> Result<Timestamp, StoreError> {
        self.opt_time(column)?.ok_or_else(|| self.corrupt(column))
    }

    /// A JSON list of strings.
    pub(crate) fn list(&self, column: &'static str) -> Result<Vec<String>, StoreError> {
        json::decode_list(&self.text(column)?).ok_or_else(|| self.corrupt(column))
    }

    /// A nullable token hash (64 hex digits).
    pub(crate) fn opt_hash(&self, column: &'static str) -> Result<Option<TokenHash>, StoreError> {
        self.opt_text(column)?
            .map(|hex| TokenHash::from_hex(&hex).ok_or_else(|| self.corrupt(column)))
            .transpose()
    }

    /// A nullable secret column, opened with `codec`.
    pub(crate) fn opt_secret(
        &self,
        column: &'static str,
        codec: &Codec,
    ) -> Result<Option<Secret>, StoreError> {
        self.opt_text(column)?
            .map(|stored| codec.open(stored, self.table, column))
            .transpose()
    }

    /// A NOT NULL secret column, opened with `codec`.
    pub(crate) fn secret(&self, column: &'static str, codec: &Codec) -> Result<Secret, StoreError> {
        self.opt_secret(column, codec)?
            .ok_or_else(|| self.corrupt(column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// Whether SQLite's `expired_sql!` and Rust's decoded comparison agree.
    fn agree(conn: &Connection, stored: f64, now: Timestamp) -> bool {
        let sql = concat!("SELECT ", expired_sql!("?1", "?2"));
        let in_sql: bool = conn
            .query_row(sql, rusqlite::params![stored, cutoff(now)], |r| r.get(0))
            .expect("query");
        let in_rust = Timestamp::from_unix_secs_f64(stored) < now;
        in_sql == in_rust
    }

    #[test]
    fn sql_expiry_matches_rust_at_microsecond_edges() {
        let conn = Connection::open_in_memory().expect("open");
        let now = Timestamp::from_unix_micros(1_764_000_000_250_000);
        for delta in [
            -1.0e-6, -6.0e-7, -5.0e-7, -4.0e-7, 0.0, 4.0e-7, 5.0e-7, 1.0e-6,
        ] {
            let stored = now.as_unix_secs_f64() + delta;
            assert!(agree(&conn, stored, now), "delta {delta}");
        }
        for (stored, now) in [(-0.0000005, 0), (-0.0000015, -1), (0.0000005, 1), (0.0, 0)] {
            assert!(agree(&conn, stored, Timestamp::from_unix_micros(now)));
        }
    }

    #[test]
    fn sql_expiry_ignores_null_and_text() {
        let conn = Connection::open_in_memory().expect("open");
        let sql = concat!("SELECT ", expired_sql!("?1", "?2"));
        for value in [rusqlite::types::Value::Null, "abc".to_owned().into()] {
            let hit: bool = conn
                .query_row(sql, rusqlite::params![value, 1.0e18], |r| r.get(0))
                .expect("query");
            assert!(!hit);
        }
    }
}
