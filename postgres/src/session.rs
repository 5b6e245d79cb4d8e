//! The `sessions` table: sessions keyed by the SHA-256 of their access token.
//!
//! Access-token hash, session id and refresh-token hash are each unique:
//! [`store`] deletes every row sharing any of them before it inserts, in one
//! transaction. Concurrent stores that share a key are serialised by
//! transaction-level advisory locks on their keys, taken in ascending order
//! (so they cannot deadlock among themselves); a conflict that still happens
//! (a deadlock against a row lock, a unique violation) makes the worker retry
//! the whole transaction, a bounded number of times.
//!
//! Lookups apply core's [`by_access`] / [`by_refresh`] rules to the raw column
//! values and delete the rows those rules call dead.

use crate::cols::Cols;
use crate::conn::Db;
use crate::error::{Fail, corrupt};
use crate::log::{self, Keys, pick};
use crate::sql::params;
use crate::types::{Json, JsonOwned, PgTime, opt_time};
use std::sync::Arc;
use tokenstore_core::cache::CacheKey;
use tokenstore_core::codec::json::{decode_user_info, encode_user_info};
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::{
    Secret, SessionVisibility, StoreError, StoredSession, Timestamp, TokenHash, by_access,
    by_refresh,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

const TABLE: &str = "sessions";
const COLUMNS: &str = "access_token_hash, access_token_encrypted, refresh_token_hash, \
     refresh_token_encrypted, session_id, provider, user_info, provider_access_token, \
     provider_refresh_token, provider_expires_at, access_expires_at, refresh_expires_at, \
     created_at";

/// "No lookup can return this row again" (core's `StoredSession::is_dead`)
/// at the time bound to `$p`.
fn dead(p: &str) -> String {
    format!("access_expires_at < {p} AND (refresh_token_hash IS NULL OR refresh_expires_at < {p})")
}

/// The statements on `sessions`.
pub(crate) struct Statements {
    lock: String,
    delete_sharing: String,
    insert: String,
    by_access: String,
    by_id: String,
    by_refresh: String,
    all: String,
    delete_by_access: String,
    delete_by_id: String,
    delete_if_dead: String,
    delete_dead: String,
    delete_sharing_any: String,
    insert_many: String,
    delete_hashes: String,
}

impl Statements {
    /// The statements for the quoted schema name `s`; with `logs`, every
    /// store and delete (not the deletes of dead rows) logs the keys of the
    /// rows it removed and of the sessions it stored (see [`log`]).
    pub(crate) fn new(s: &str, logs: bool) -> Self {
        let select = |key: &str| format!("SELECT {COLUMNS} FROM {s}.sessions WHERE {key} = $1");
        let logged = |q: &str| log::delete_sessions(s, q, None);
        let logged_and_stored = |q: &str| log::delete_sessions(s, q, Some((4, 5)));
        Self {
            lock: "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS t(k)".to_owned(),
            delete_sharing: pick(
                logs,
                format!(
                    "DELETE FROM {s}.sessions WHERE access_token_hash = $1 OR session_id = $2 \
                     OR refresh_token_hash = $3"
                ),
                logged_and_stored,
            ),
            insert: format!(
                "INSERT INTO {s}.sessions ({COLUMNS}) VALUES ({})",
                params(1, 13)
            ),
            by_access: select("access_token_hash"),
            by_id: select("session_id"),
            by_refresh: select("refresh_token_hash"),
            all: format!("SELECT {COLUMNS} FROM {s}.sessions ORDER BY access_token_hash"),
            delete_by_access: pick(
                logs,
                format!("DELETE FROM {s}.sessions WHERE access_token_hash = $1"),
                logged,
            ),
            delete_by_id: pick(
                logs,
                format!("DELETE FROM {s}.sessions WHERE session_id = $1"),
                logged,
            ),
            delete_if_dead: format!(
                "DELETE FROM {s}.sessions WHERE access_token_hash = $1 AND {}",
                dead("$2")
            ),
            delete_dead: format!("DELETE FROM {s}.sessions WHERE {}", dead("$1")),
            delete_sharing_any: pick(
                logs,
                format!(
                    "DELETE FROM {s}.sessions WHERE access_token_hash = ANY($1::bytea[]) \
                     OR session_id = ANY($2::text[]) OR refresh_token_hash = ANY($3::bytea[])"
                ),
                logged_and_stored,
            ),
            insert_many: format!(
                "INSERT INTO {s}.sessions ({COLUMNS}) SELECT * FROM UNNEST($1::bytea[], \
                 $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::json[], \
                 $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], \
                 $12::timestamptz[], $13::timestamptz[])"
            ),
            delete_hashes: pick(
                logs,
                format!("DELETE FROM {s}.sessions WHERE access_token_hash = ANY($1::bytea[])"),
                |q| log::delete_sessions_counted(s, q),
            ),
        }
    }
}

/// How a session is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum By {
    /// By access-token hash.
    Access,
    /// By session id.
    Id,
    /// By refresh-token hash.
    Refresh,
}

/// The key a lookup goes by.
pub(crate) enum Key {
    /// A token hash.
    Hash(TokenHash),
    /// A session id.
    Id(String),
}

/// A session's column values as stored (secrets sealed, `user_info` as JSON).
pub(crate) struct Encoded {
    access_hash: Vec<u8>,
    access: String,
    refresh_hash: Option<Vec<u8>>,
    refresh: Option<String>,
    user_info: String,
    provider_access: Option<String>,
    provider_refresh: Option<String>,
}

fn hash_bytes(h: TokenHash) -> Vec<u8> {
    h.as_bytes().to_vec()
}

/// Seals and encodes a session; fails before anything is sent.
pub(crate) fn encode(codec: &SecretCodec, s: &StoredSession) -> Result<Encoded, StoreError> {
    Ok(Encoded {
        access_hash: hash_bytes(s.access_hash()),
        access: codec.seal(&s.access_token)?,
        refresh_hash: s.refresh_hash().map(hash_bytes),
        refresh: codec.seal_opt(s.refresh_token.as_ref())?,
        user_info: encode_user_info(&s.user_info)?,
        provider_access: codec.seal_opt(s.provider_access_token.as_ref())?,
        provider_refresh: codec.seal_opt(s.provider_refresh_token.as_ref())?,
    })
}

/// The advisory-lock keys of a set of session keys: the first 8 bytes of each
/// hash (of the session id for an id), sorted and deduplicated, so every
/// transaction takes its locks in one global order.
pub(crate) fn lock_keys<'a>(
    hashes: impl IntoIterator<Item = TokenHash>,
    ids: impl IntoIterator<Item = &'a str>,
) -> Vec<i64> {
    let key = |h: TokenHash| {
        let b = h.as_bytes();
        i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    };
    let mut keys: Vec<i64> = hashes
        .into_iter()
        .chain(
            ids.into_iter()
                .map(|id| TokenHash::of(&format!("session_id:{id}"))),
        )
        .map(key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Takes the advisory locks `keys` (already in ascending order) until the
/// transaction ends.
pub(crate) async fn lock(db: &Db, keys: &[i64]) -> Result<(), Fail> {
    db.query(&db.sql().sessions.lock, &[&keys]).await?;
    Ok(())
}

/// Stores a session, replacing every row sharing its access-token hash, id or
/// refresh-token hash. Run it in a transaction.
pub(crate) async fn store(db: &Db, s: &StoredSession) -> Result<(), Fail> {
    let e = encode(db.codec(), s)?;
    let keys = lock_keys(
        [Some(s.access_hash()), s.refresh_hash()]
            .into_iter()
            .flatten(),
        [s.session_id.as_str()],
    );
    lock(db, &keys).await?;
    let sql = &db.sql().sessions;
    let stored = Keys::of(CacheKey::of_session(s));
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![&e.access_hash, &s.session_id, &e.refresh_hash];
    stored.append(db.logs(), &mut p);
    db.execute(&sql.delete_sharing, &p).await?;
    db.execute(
        &sql.insert,
        &[
            &e.access_hash,
            &e.access,
            &e.refresh_hash,
            &e.refresh,
            &s.session_id,
            &s.provider,
            &Json(&e.user_info),
            &e.provider_access,
            &e.provider_refresh,
            &opt_time(s.provider_expires_at),
            &opt_time(s.access_expires_at),
            &opt_time(s.refresh_expires_at),
            &PgTime(s.created_at),
        ],
    )
    .await?;
    Ok(())
}

/// Loads the session `key` names when the expiry rules let it be returned;
/// deletes it when they call it dead (only while still dead, so a concurrent
/// re-store survives).
pub(crate) async fn load(
    db: &Db,
    by: By,
    key: &Key,
    now: Timestamp,
) -> Result<Option<StoredSession>, Fail> {
    let sql = &db.sql().sessions;
    let row = match (by, key) {
        (By::Refresh, Key::Hash(h)) => {
            db.query_opt(&sql.by_refresh, &[&h.as_bytes().as_slice()])
                .await?
        }
        (_, Key::Hash(h)) => {
            db.query_opt(&sql.by_access, &[&h.as_bytes().as_slice()])
                .await?
        }
        (_, Key::Id(id)) => db.query_opt(&sql.by_id, &[id]).await?,
    };
    let Some(row) = row else { return Ok(None) };
    let c = Cols::new(&row, TABLE);
    let access = c.opt_time("access_expires_at")?;
    let refresh = c.opt_time("refresh_expires_at")?;
    let has_refresh = c.opt_hash("refresh_token_hash")?.is_some();
    let visibility = match by {
        By::Access | By::Id => by_access(access, has_refresh, refresh, now),
        By::Refresh => by_refresh(access, refresh, now),
    };
    match visibility {
        SessionVisibility::Live => Ok(Some(from_row(db.codec(), &row)?)),
        SessionVisibility::Hidden => Ok(None),
        SessionVisibility::Dead => {
            let hash: &[u8] = row
                .try_get("access_token_hash")
                .map_err(|_| corrupt(TABLE, "access_token_hash"))?;
            db.execute(&sql.delete_if_dead, &[&hash, &PgTime(now)])
                .await?;
            Ok(None)
        }
    }
}

/// Deletes the session with this access-token hash, if any.
pub(crate) async fn delete_by_access(db: &Db, hash: TokenHash) -> Result<(), Fail> {
    let sql = &db.sql().sessions.delete_by_access;
    db.execute(sql, &[&hash.as_bytes().as_slice()]).await?;
    Ok(())
}

/// Deletes the session with this id, if any.
pub(crate) async fn delete_by_id(db: &Db, session_id: &str) -> Result<(), Fail> {
    db.execute(&db.sql().sessions.delete_by_id, &[&session_id])
        .await?;
    Ok(())
}

/// Removes every session no lookup can return again; returns how many.
pub(crate) async fn delete_dead(db: &Db, now: Timestamp) -> Result<u64, Fail> {
    db.execute(&db.sql().sessions.delete_dead, &[&PgTime(now)])
        .await
}

/// Deletes every session whose access-token hash is listed, in one
/// `DELETE ... = ANY(...)`; returns how many rows went.
pub(crate) async fn delete_hashes(db: &Db, hashes: &[TokenHash]) -> Result<u64, Fail> {
    let bytes: Vec<&[u8]> = hashes.iter().map(|h| h.as_bytes().as_slice()).collect();
    let sql = &db.sql().sessions.delete_hashes;
    if !db.logs() {
        return db.execute(sql, &[&bytes]).await;
    }
    let row = db.query_opt(sql, &[&bytes]).await?;
    let count: i64 = row.map(|r| r.try_get(0)).transpose()?.unwrap_or_default();
    Ok(u64::try_from(count).unwrap_or_default())
}

/// The keys a run of session writes touches, for [`replace_many`].
#[derive(Default)]
pub(crate) struct Touched {
    /// Access-token hashes: of every stored session and every delete by token.
    pub(crate) access: Vec<TokenHash>,
    /// Session ids: of every stored session and every delete by id.
    pub(crate) ids: Vec<String>,
    /// Refresh-token hashes of every stored session.
    pub(crate) refresh: Vec<TokenHash>,
}

/// Applies a run of session writes set-based: locks every key, deletes every
/// row sharing a key with any write (what the one-by-one loop does to the rows
/// that were there before), then inserts `survivors` (the stored sessions no
/// later write replaced or deleted; they share no key) in one
/// `INSERT ... SELECT FROM UNNEST(...)`. Run it in a transaction.
pub(crate) async fn replace_many(
    db: &Db,
    touched: &Touched,
    survivors: &[Arc<StoredSession>],
) -> Result<(), Fail> {
    // Sealing and encoding a large batch is CPU work; done on a blocking
    // thread it overlaps the locks and the DELETE, which the server runs.
    let encoding = (survivors.len() >= ENCODE_APART).then(|| {
        let shared = Arc::clone(&db.shared);
        let survivors = survivors.to_vec();
        tokio::task::spawn_blocking(move || Columns::encode(&shared.codec, &survivors))
    });
    let hashes = touched.access.iter().chain(&touched.refresh).copied();
    let keys = lock_keys(hashes, touched.ids.iter().map(String::as_str));
    lock(db, &keys).await?;
    let bytes = |hs: &[TokenHash]| -> Vec<Vec<u8>> { hs.iter().map(|h| hash_bytes(*h)).collect() };
    let sql = &db.sql().sessions;
    let (access, refresh) = (bytes(&touched.access), bytes(&touched.refresh));
    let stored = Keys::of(survivors.iter().flat_map(|s| CacheKey::of_session(s)));
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![&access, &touched.ids, &refresh];
    stored.append(db.logs(), &mut p);
    db.execute(&sql.delete_sharing_any, &p).await?;
    if survivors.is_empty() {
        return Ok(());
    }
    let cols = match encoding {
        Some(job) => job.await.map_err(|_| {
            Fail::Store(StoreError::Backend(
                "the thread encoding a batch of sessions failed".to_owned(),
            ))
        })??,
        None => Columns::encode(db.codec(), survivors)?,
    };
    db.execute(
        &sql.insert_many,
        &[
            &cols.access_hash,
            &cols.access,
            &cols.refresh_hash,
            &cols.refresh,
            &cols.session_id,
            &cols.provider,
            &cols.user_info,
            &cols.provider_access,
            &cols.provider_refresh,
            &cols.provider_expires_at,
            &cols.access_expires_at,
            &cols.refresh_expires_at,
            &cols.created_at,
        ],
    )
    .await?;
    Ok(())
}

/// From how many sessions [`replace_many`] encodes on a blocking thread
/// (below it, handing the work over costs more than it saves).
const ENCODE_APART: usize = 16;

/// Sessions as one array per column, for `UNNEST`.
#[derive(Default)]
struct Columns {
    access_hash: Vec<Vec<u8>>,
    access: Vec<String>,
    refresh_hash: Vec<Option<Vec<u8>>>,
    refresh: Vec<Option<String>>,
    session_id: Vec<String>,
    provider: Vec<String>,
    user_info: Vec<JsonOwned>,
    provider_access: Vec<Option<String>>,
    provider_refresh: Vec<Option<String>>,
    provider_expires_at: Vec<Option<PgTime>>,
    access_expires_at: Vec<Option<PgTime>>,
    refresh_expires_at: Vec<Option<PgTime>>,
    created_at: Vec<PgTime>,
}

impl Columns {
    fn encode(codec: &SecretCodec, sessions: &[Arc<StoredSession>]) -> Result<Self, StoreError> {
        let mut c = Self::default();
        for s in sessions {
            let e = encode(codec, s)?;
            c.access_hash.push(e.access_hash);
            c.access.push(e.access);
            c.refresh_hash.push(e.refresh_hash);
            c.refresh.push(e.refresh);
            c.session_id.push(s.session_id.clone());
            c.provider.push(s.provider.clone());
            c.user_info.push(JsonOwned(e.user_info));
            c.provider_access.push(e.provider_access);
            c.provider_refresh.push(e.provider_refresh);
            c.provider_expires_at.push(opt_time(s.provider_expires_at));
            c.access_expires_at.push(opt_time(s.access_expires_at));
            c.refresh_expires_at.push(opt_time(s.refresh_expires_at));
            c.created_at.push(PgTime(s.created_at));
        }
        Ok(c)
    }
}

/// Every session, dead ones included, ordered by access-token hash.
pub(crate) async fn all(db: &Db) -> Result<Vec<StoredSession>, Fail> {
    let rows = db.query(&db.sql().sessions.all, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| from_row(db.codec(), r))
        .collect::<Result<_, _>>()?)
}

fn from_row(codec: &SecretCodec, row: &Row) -> Result<StoredSession, StoreError> {
    let c = Cols::new(row, TABLE);
    let access_token = c.secret("access_token_encrypted", codec)?;
    check_hash(&c, "access_token_hash", Some(&access_token))?;
    let refresh_token = c.opt_secret("refresh_token_encrypted", codec)?;
    check_hash(&c, "refresh_token_hash", refresh_token.as_ref())?;
    let created_at = c.time("created_at")?;
    Ok(StoredSession {
        session_id: c.text("session_id")?,
        provider: c.text("provider")?,
        user_info: decode_user_info(&c.json("user_info")?)
            .ok_or_else(|| corrupt(TABLE, "user_info"))?,
        access_token,
        refresh_token,
        provider_access_token: c.opt_secret("provider_access_token", codec)?,
        provider_refresh_token: c.opt_secret("provider_refresh_token", codec)?,
        provider_expires_at: c.opt_time("provider_expires_at")?,
        access_expires_at: c.opt_time("access_expires_at")?,
        refresh_expires_at: c.opt_time("refresh_expires_at")?,
        created_at,
        issued_at: Some(created_at),
    })
}

/// Refuses a row whose stored hash is not the hash of its (decrypted) token:
/// never hand out a token under another token's key.
fn check_hash(
    c: &Cols<'_>,
    column: &'static str,
    token: Option<&Secret>,
) -> Result<(), StoreError> {
    let expected = token.map(|t| TokenHash::of(t.expose()));
    if c.opt_hash(column)? == expected {
        Ok(())
    } else {
        Err(corrupt(TABLE, column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_sorted_and_unique() {
        let a = TokenHash::of("a");
        let keys = lock_keys([a, TokenHash::of("b"), a], ["s1", "s1", "s2"]);
        assert_eq!(keys.len(), 4);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }
}
