//! Typed, fail-closed reads of one row's columns, and the shared SQL for expiry.
//!
//! Every reader refuses a value of the wrong storage class, invalid UTF-8, a
//! non-finite time or malformed JSON with [`StoreError::Corrupt`] naming the
//! table and column, never the value.

use crate::error::{backend, corrupt};
use rusqlite::Row;
use rusqlite::types::ValueRef;
use tokenstore_core::codec::json;
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::{Secret, StoreError, Timestamp, TokenHash};

/// The SQL condition "`$col` holds a time before `now`", with `$cutoff` the
/// parameter bound to [`cutoff`]`(now)`.
///
/// It decides exactly as Rust does on the decoded value
/// (`Timestamp::from_unix_secs_f64(col) < now`) for every `now`, and only
/// counts numbers: a NULL or a corrupt value is never expired.
macro_rules! expired_sql {
    ($col:literal, $cutoff:literal) => {
        concat!(
            "(typeof(",
            $col,
            ") IN ('real', 'integer') AND ",
            $col,
            " < ",
            $cutoff,
            ")"
        )
    };
}
pub(crate) use expired_sql;

/// The parameter of [`expired_sql!`] for `now`: the least double that
/// decodes to `now` or later.
///
/// Decoding is monotone, so a stored double decodes to before `now` exactly
/// when it is below this one. The start, `(now - 0.5 µs)` in seconds, is
/// within a few ulps of the answer (three correctly rounded steps), so each
/// loop runs a few times at most.
pub(crate) fn cutoff(now: Timestamp) -> f64 {
    if now == Timestamp::MIN {
        // Every double, -inf included, decodes to MIN or later.
        return f64::NEG_INFINITY;
    }
    let decodes_late = |x: f64| Timestamp::from_unix_secs_f64(x) >= now;
    let mut x = (now.as_unix_micros() as f64 - 0.5) / 1e6;
    while !decodes_late(x) {
        x = x.next_up();
    }
    while decodes_late(x.next_down()) {
        x = x.next_down();
    }
    x
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
        codec: &SecretCodec,
    ) -> Result<Option<Secret>, StoreError> {
        self.opt_text(column)?
            .map(|stored| codec.open(stored, self.table, column))
            .transpose()
    }

    /// A NOT NULL secret column, opened with `codec`.
    pub(crate) fn secret(
        &self,
        column: &'static str,
        codec: &SecretCodec,
    ) -> Result<Secret, StoreError> {
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

    /// A few thousand times: the extremes, near the epoch, and spread over
    /// every magnitude (many in mxcp's range, now ± 50 years).
    fn sample_nows() -> Vec<Timestamp> {
        let mut nows = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, 7_813, 23_438, i64::MAX];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..4_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let micros = match i % 4 {
                // 1977 .. 2076 (mxcp's range around 2026)
                0 | 1 => 218_000_000_000_000 + (x % 3_156_000_000_000_000) as i64,
                2 => (x >> (x % 64)) as i64,
                _ => -((x >> (x % 64)) as i64),
            };
            nows.push(micros);
        }
        nows.into_iter().map(Timestamp::from_unix_micros).collect()
    }

    #[test]
    fn cutoff_is_the_least_double_decoding_to_now_or_later() {
        for now in sample_nows() {
            let c = cutoff(now);
            assert!(Timestamp::from_unix_secs_f64(c) >= now, "{now:?}");
            if now != Timestamp::MIN {
                assert!(
                    Timestamp::from_unix_secs_f64(c.next_down()) < now,
                    "{now:?}"
                );
            }
        }
    }

    #[test]
    fn sql_expiry_matches_rust_around_every_cutoff() {
        let conn = Connection::open_in_memory().expect("open");
        for now in sample_nows() {
            let (c, t) = (cutoff(now), now.as_unix_secs_f64());
            let near = [c.next_down().next_down(), c.next_down(), c, c.next_up()];
            for stored in near.into_iter().chain([t.next_down(), t, t.next_up()]) {
                assert!(agree(&conn, stored, now), "{stored:?} at {now:?}");
            }
        }
    }

    #[test]
    fn sql_expiry_matches_rust_on_integer_columns() {
        let conn = Connection::open_in_memory().expect("open");
        let sql = concat!("SELECT ", expired_sql!("?1", "?2"));
        for now in sample_nows() {
            let secs = now.as_unix_micros() / 1_000_000;
            for stored in [secs - 1, secs, secs + 1, i64::MIN, i64::MAX] {
                let in_sql: bool = conn
                    .query_row(sql, rusqlite::params![stored, cutoff(now)], |r| r.get(0))
                    .expect("query");
                let in_rust = Timestamp::from_unix_secs_f64(stored as f64) < now;
                assert_eq!(in_sql, in_rust, "{stored} at {now:?}");
            }
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
