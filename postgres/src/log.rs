//! The write side of the invalidation feed: the SQL that appends a write's
//! cache keys to `invalidations` inside the write's own statement.
//!
//! Every logged write stays one statement (no extra round trip): the log row
//! insert rides along as a data-modifying CTE, and writes one row per statement
//! holding all the keys it logs (`kinds smallint[]`, `keys bytea[]`), so a
//! batch of 250 deletes adds one row, not 750. Keys the write knows up front
//! (what it stores, what it asks to delete) are computed in Rust by
//! [`tokenstore_core::feed::log`] and encoded by
//! [`encode_key`](tokenstore_core::feed::encode_key), then passed as two arrays
//! (`smallint[]` kinds, `bytea[]` bytes); a delete logs only the keys whose
//! row it actually removed (joined to its `RETURNING`). The keys of a session
//! row removed by another of its keys (the rotation's replaced rows, a delete by
//! token) come from the `DELETE ... RETURNING` of the row's three key columns,
//! expanded by [`of_sessions`] exactly as
//! [`session_columns`](tokenstore_core::feed::log::session_columns) does.

use tokenstore_core::cache::CacheKey;
use tokenstore_core::feed::{
    KIND_SESSION_ACCESS, KIND_SESSION_ID, KIND_SESSION_REFRESH, encode_key,
};
use tokio_postgres::types::ToSql;

/// The columns a `DELETE` on `sessions` returns for [`of_sessions`].
pub(crate) const SESSION_KEY_COLUMNS: &str = "access_token_hash, refresh_token_hash, session_id";

/// The `INSERT` of one log row holding every `(kind, key)` that `select`
/// yields (as two parallel arrays), or of none when it yields nothing: one
/// row (and one index entry) per statement, however many keys the write
/// touched.
pub(crate) fn insert(s: &str, select: &str) -> String {
    format!(
        "INSERT INTO {s}.invalidations (kinds, keys) \
         SELECT array_agg(r.kind), array_agg(r.key) FROM ({select}) AS r(kind, key) \
         HAVING count(*) > 0"
    )
}

/// `SELECT` of the keys passed as arrays in parameters `$k` (kinds) and `$b` (bytes).
pub(crate) fn given(k: usize, b: usize) -> String {
    format!("SELECT * FROM unnest(${k}::smallint[], ${b}::bytea[])")
}

/// `SELECT` of the `(kind, key)` rows of the session rows in `gone` (a CTE
/// returning [`SESSION_KEY_COLUMNS`]): the access hash, the refresh hash when
/// set, and the session id as UTF-8 bytes.
pub(crate) fn of_sessions(gone: &str) -> String {
    format!(
        "SELECT k.kind, k.key FROM {gone} AS g CROSS JOIN LATERAL (VALUES \
         ({KIND_SESSION_ACCESS}::smallint, g.access_token_hash), \
         ({KIND_SESSION_REFRESH}::smallint, g.refresh_token_hash), \
         ({KIND_SESSION_ID}::smallint, convert_to(g.session_id, 'UTF8'))) AS k(kind, key) \
         WHERE k.key IS NOT NULL"
    )
}

/// `statement`, with the keys in `$k`, `$b` logged in the same statement.
pub(crate) fn with_given(s: &str, k: usize, b: usize, statement: &str) -> String {
    format!("WITH log AS ({}) {statement}", insert(s, &given(k, b)))
}

/// `statement`, with the one key in `$k`, `$b` (scalars) logged in the same statement.
pub(crate) fn with_one(s: &str, k: usize, b: usize, statement: &str) -> String {
    format!(
        "WITH log AS ({}) {statement}",
        insert(s, &format!("SELECT ${k}::smallint, ${b}::bytea"))
    )
}

/// A single-row `delete` (without `RETURNING`) that logs the key in `$k`, `$b`
/// (scalars) when it removed a row.
pub(crate) fn delete_one(s: &str, delete: &str, k: usize, b: usize) -> String {
    format!(
        "WITH gone AS ({delete} RETURNING 1) {}",
        insert(s, &format!("SELECT ${k}::smallint, ${b}::bytea FROM gone"))
    )
}

/// A `delete ... = ANY($1::text[])` on `column` that logs, for each key in `$1`
/// whose row it removed, the key at the same index of `$2`, `$3`.
pub(crate) fn delete_many(s: &str, delete: &str, column: &str) -> String {
    format!(
        "WITH gone AS ({delete} RETURNING {column}) {}",
        insert(
            s,
            &format!(
                "SELECT t.k, t.b FROM unnest($1::text[], $2::smallint[], $3::bytea[]) \
                 AS t(c, k, b) JOIN gone ON gone.{column} = t.c"
            )
        )
    )
}

/// A `delete` (without `RETURNING`) on `sessions` that logs the keys of every
/// row it removed and, with `also`, the keys passed in `$k`, `$b` (arrays).
pub(crate) fn delete_sessions(s: &str, delete: &str, also: Option<(usize, usize)>) -> String {
    let also = also
        .map(|(k, b)| format!(" UNION ALL {}", given(k, b)))
        .unwrap_or_default();
    format!(
        "WITH gone AS ({delete} RETURNING {SESSION_KEY_COLUMNS}) {}",
        insert(s, &format!("{}{also}", of_sessions("gone")))
    )
}

/// As [`delete_sessions`] without `also`, answering one row: how many session
/// rows it removed.
pub(crate) fn delete_sessions_counted(s: &str, delete: &str) -> String {
    format!(
        "WITH gone AS ({delete} RETURNING {SESSION_KEY_COLUMNS}), log AS ({}) \
         SELECT count(*) FROM gone",
        insert(s, &of_sessions("gone"))
    )
}

/// Cache keys as the two arrays a logged statement takes.
#[derive(Default)]
pub(crate) struct Keys {
    kinds: Vec<i16>,
    bytes: Vec<Vec<u8>>,
}

impl Keys {
    /// `keys`, encoded.
    pub(crate) fn of(keys: impl IntoIterator<Item = CacheKey>) -> Self {
        let mut out = Self::default();
        out.extend(keys);
        out
    }

    /// Adds `keys`.
    pub(crate) fn extend(&mut self, keys: impl IntoIterator<Item = CacheKey>) {
        for key in keys {
            let (kind, bytes) = encode_key(&key);
            self.kinds.push(kind);
            self.bytes.push(bytes);
        }
    }

    /// Whether it holds no key.
    pub(crate) fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Appends the two arrays to `params` when `logs` (the statement is then
    /// the logged variant, which takes them).
    pub(crate) fn append<'a>(&'a self, logs: bool, params: &mut Vec<&'a (dyn ToSql + Sync)>) {
        if logs {
            params.push(&self.kinds);
            params.push(&self.bytes);
        }
    }
}

/// One key as the two scalars of [`delete_one`] and [`with_one`].
pub(crate) struct Key {
    kind: i16,
    bytes: Vec<u8>,
}

impl Key {
    /// `key`, encoded.
    pub(crate) fn of(key: &CacheKey) -> Self {
        let (kind, bytes) = encode_key(key);
        Self { kind, bytes }
    }

    /// Appends the two scalars to `params` when `logs`.
    pub(crate) fn append<'a>(&'a self, logs: bool, params: &mut Vec<&'a (dyn ToSql + Sync)>) {
        if logs {
            params.push(&self.kind);
            params.push(&self.bytes);
        }
    }
}

/// `logged` when the store logs, else `plain`.
pub(crate) fn pick(logs: bool, plain: String, logged: impl FnOnce(&str) -> String) -> String {
    if logs { logged(&plain) } else { plain }
}
