//! The invalidation log: the [`InvalidationFeed`] capability on SQLite.
//!
//! Two tables of ours in the same file, next to mxcp's (which they leave
//! untouched):
//!
//! - `tokenstore_invalidations`: one row per cache key a write removed or
//!   replaced, `(id, kind, key, at)`, with `(kind, key)` from core's
//!   [`encode_key`] and `at` the write's Unix second. `id` is `AUTOINCREMENT`,
//!   so an id is never handed out twice, even after the rows before it were
//!   pruned. SQLite runs one writer at a time, so ids commit in order and the
//!   last id assigned (`sqlite_sequence`) is a sound watermark.
//! - `tokenstore_invalidations_meta`: one row, `pruned_through`, the highest
//!   id ever pruned.
//!
//! Writes log through [`record`] in their own transaction; a poll
//! ([`poll`]) reads the rows, the last id and `pruned_through` in one
//! snapshot. [`prune`] drops old rows as a prefix of the log.

use crate::SqliteTokenStore;
use crate::error::{backend, corrupt};
use crate::worker::{Ctx, Logging};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::HashSet;
use tokenstore_core::cache::CacheKey;
use tokenstore_core::feed::{InvalidationFeed, Invalidations, Watermark, decode_key, encode_key};
use tokenstore_core::{BoxFuture, SessionKey, StoreError, TokenHash};

/// The log's two tables; created by `invalidation_log(true)` or kept when found.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokenstore_invalidations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    key BLOB NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokenstore_invalidations_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through INTEGER NOT NULL
);
INSERT OR IGNORE INTO tokenstore_invalidations_meta (id, pruned_through) VALUES (1, 0);
";

const EXISTS: &str =
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tokenstore_invalidations'";
const INSERT: &str = "INSERT INTO tokenstore_invalidations (kind, key, at) VALUES (?1, ?2, ?3)";
const LAST_ID: &str = "SELECT seq FROM sqlite_sequence WHERE name = 'tokenstore_invalidations'";
const PRUNED_THROUGH: &str =
    "SELECT pruned_through FROM tokenstore_invalidations_meta WHERE id = 1";
const AFTER: &str = "SELECT kind, key FROM tokenstore_invalidations WHERE id > ?1 ORDER BY id";
const FIRST_YOUNG: &str =
    "SELECT id FROM tokenstore_invalidations WHERE at >= ?1 ORDER BY id LIMIT 1";
const LAST_BEFORE: &str =
    "SELECT id FROM tokenstore_invalidations WHERE id < ?1 ORDER BY id DESC LIMIT 1";
const DELETE_THROUGH: &str = "DELETE FROM tokenstore_invalidations WHERE id <= ?1";
const SET_PRUNED: &str = "UPDATE tokenstore_invalidations_meta \
    SET pruned_through = max(pruned_through, ?1) WHERE id = 1";

/// Sets the log up at open: `enable` creates its tables; a file that already
/// has them logs whatever `enable` says. Returns whether this store logs.
pub(crate) fn open(conn: &Connection, enable: bool) -> rusqlite::Result<bool> {
    let found = conn.query_row(EXISTS, [], |_| Ok(())).optional()?.is_some();
    if enable || found {
        conn.execute_batch(SCHEMA)?;
    }
    Ok(enable || found)
}

/// Whether writes in `ctx` log (so a write can skip gathering keys otherwise).
pub(crate) fn logging(ctx: Ctx<'_>) -> bool {
    !matches!(ctx.logging, Logging::Off)
}

/// Logs `keys` in `ctx`'s transaction, each once; does nothing when the file
/// has no log.
pub(crate) fn record(
    ctx: Ctx<'_>,
    keys: impl IntoIterator<Item = CacheKey>,
) -> Result<(), StoreError> {
    let at = match ctx.logging {
        Logging::Off => return Ok(()),
        Logging::On { at, .. } => at,
        Logging::Autocommit => {
            // A logged write must share its transaction with its log rows.
            return Err(StoreError::Backend(
                "tokenstore-sqlite: a logged write ran outside a transaction".to_owned(),
            ));
        }
    };
    let mut stmt = ctx.conn.prepare_cached(INSERT).map_err(backend)?;
    let mut seen = HashSet::new();
    for key in keys {
        let (kind, bytes) = encode_key(&key);
        if !seen.insert((kind, bytes.clone())) {
            continue;
        }
        stmt.execute(params![kind, bytes, at]).map_err(backend)?;
    }
    Ok(())
}

/// The keys of the session rows a `DELETE ... RETURNING access_token_hash,
/// refresh_token_hash, session_id` removed, and how many rows it removed.
///
/// A column this crate could not have looked the row up by (a hash that is not
/// 64 hex digits, a non-text id) gives no key: no cache entry was filled under it.
pub(crate) fn deleted_sessions(
    ctx: Ctx<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<(u64, Vec<CacheKey>), StoreError> {
    let mut stmt = ctx.conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = stmt.query(params).map_err(backend)?;
    let (mut n, mut keys) = (0, Vec::new());
    while let Some(row) = rows.next().map_err(backend)? {
        n += 1;
        keys.extend(session_row_keys(row));
    }
    Ok((n, keys))
}

fn session_row_keys(row: &Row<'_>) -> Vec<CacheKey> {
    let text = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes).ok(),
        _ => None,
    };
    let hash = |i: usize| text(i).and_then(TokenHash::from_hex);
    let (access, refresh, id) = (hash(0), hash(1), text(2));
    match (access, id) {
        (Some(access), Some(id)) => {
            tokenstore_core::feed::log::session_columns(access, refresh, id)
        }
        _ => {
            let access = access.map(SessionKey::Access);
            let id = id.map(|id| SessionKey::Id(id.to_owned()));
            let refresh = refresh.map(SessionKey::Refresh);
            [access, id, refresh]
                .into_iter()
                .flatten()
                .map(CacheKey::Session)
                .collect()
        }
    }
}

/// Answers a poll from `since`; run it in one read transaction (one snapshot).
pub(crate) fn poll(ctx: Ctx<'_>, since: Option<Watermark>) -> Result<Invalidations, StoreError> {
    let last = last_id(ctx)?;
    let watermark = Watermark(last);
    let Some(Watermark(since)) = since else {
        return Ok(Invalidations {
            keys: Vec::new(),
            watermark,
            gap: false,
        });
    };
    let pruned = pruned_through(ctx)?;
    let (keys, unreadable) = if since < last {
        rows_after(ctx, since)?
    } else {
        (Vec::new(), false)
    };
    Ok(Invalidations {
        keys,
        watermark,
        gap: since < pruned || since > last || unreadable,
    })
}

/// The last id ever assigned (0 before the first row).
fn last_id(ctx: Ctx<'_>) -> Result<u64, StoreError> {
    let seq: Option<i64> = ctx
        .conn
        .prepare_cached(LAST_ID)
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(backend)?;
    u64::try_from(seq.unwrap_or(0)).map_err(|_| corrupt("sqlite_sequence", "seq"))
}

fn pruned_through(ctx: Ctx<'_>) -> Result<u64, StoreError> {
    const TABLE: &str = "tokenstore_invalidations_meta";
    let pruned: Option<i64> = ctx
        .conn
        .prepare_cached(PRUNED_THROUGH)
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(backend)?;
    let pruned = pruned.ok_or_else(|| corrupt(TABLE, "pruned_through"))?;
    u64::try_from(pruned).map_err(|_| corrupt(TABLE, "pruned_through"))
}

/// The keys of every row after `since` (which is below the last id, so fits
/// an i64), and whether any row could not be read.
fn rows_after(ctx: Ctx<'_>, since: u64) -> Result<(Vec<CacheKey>, bool), StoreError> {
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let mut stmt = ctx.conn.prepare_cached(AFTER).map_err(backend)?;
    let mut rows = stmt.query([since]).map_err(backend)?;
    let (mut keys, mut unreadable) = (Vec::new(), false);
    while let Some(row) = rows.next().map_err(backend)? {
        match decode_row(row) {
            Some(key) => keys.push(key),
            None => unreadable = true,
        }
    }
    Ok((keys, unreadable))
}

fn decode_row(row: &Row<'_>) -> Option<CacheKey> {
    let kind = match row.get_ref(0).ok()? {
        ValueRef::Integer(kind) => i16::try_from(kind).ok()?,
        _ => return None,
    };
    match row.get_ref(1).ok()? {
        ValueRef::Blob(bytes) => decode_key(kind, bytes),
        _ => None,
    }
}

/// Deletes the log's oldest rows: the prefix before the first row stamped at or
/// after `ctx`'s prune cutoff, raising `pruned_through` to the last id deleted,
/// in `ctx`'s transaction. Returns how many rows went.
///
/// Pruning a prefix keeps the rule simple: every id after `pruned_through` is
/// still in the log. A row stamped late (another process's clock ahead of
/// ours) holds back the rows after it until it ages out too.
pub(crate) fn prune(ctx: Ctx<'_>) -> Result<u64, StoreError> {
    let Logging::On { prune_before, .. } = ctx.logging else {
        return Ok(0);
    };
    let first_young = optional_id(ctx, FIRST_YOUNG, prune_before)?;
    let Some(through) = optional_id(ctx, LAST_BEFORE, first_young.unwrap_or(i64::MAX))? else {
        return Ok(0);
    };
    let deleted = ctx.execute(DELETE_THROUGH, [through])?;
    ctx.execute(SET_PRUNED, [through])?;
    Ok(deleted)
}

fn optional_id(ctx: Ctx<'_>, sql: &str, param: i64) -> Result<Option<i64>, StoreError> {
    let mut stmt = ctx.conn.prepare_cached(sql).map_err(backend)?;
    stmt.query_row([param], |r| r.get(0))
        .optional()
        .map_err(backend)
}

impl InvalidationFeed for SqliteTokenStore {
    /// Reads, in one read transaction on a reader thread, every log row
    /// after `since`, the last id ever assigned (the new watermark) and
    /// `pruned_through`.
    ///
    /// `gap` is set when `since` is below `pruned_through` (rows after it were
    /// pruned), above the last id (the watermark is not from this file), or a
    /// row cannot be decoded. Fails with [`StoreError::Closed`] after `close`.
    fn invalidations_since(
        &self,
        since: Option<Watermark>,
    ) -> BoxFuture<'_, Result<Invalidations, StoreError>> {
        Box::pin(self.read_snapshot("invalidations_since", move |ctx| poll(ctx, since)))
    }
}
