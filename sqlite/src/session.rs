//! The `sessions` table: sessions keyed by the SHA-256 of their access token.
//!
//! Access-token hash, session id and refresh-token hash are each unique:
//! [`store`] deletes every row sharing any of them before it inserts. Lookups
//! apply core's [`by_access`] / [`by_refresh`] rules to the raw column values and
//! delete the rows those rules call dead.

use crate::columns::{Cols, cutoff, expired_sql, opt_secs, secs};
use crate::error::{backend, corrupt};
use crate::feed;
use crate::worker::Ctx;
use rusqlite::{Row, params, params_from_iter};
use tokenstore_core::cache::CacheKey;
use tokenstore_core::codec::json::{decode_user_info, encode_user_info};
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::feed::log;
use tokenstore_core::{
    Secret, SessionKey, SessionVisibility, StoreError, StoredSession, Timestamp, TokenHash,
    by_access, by_refresh,
};

const TABLE: &str = "sessions";

macro_rules! columns {
    () => {
        "access_token_hash, access_token_encrypted, refresh_token_hash, \
         refresh_token_encrypted, session_id, provider, user_info, provider_access_token, \
         provider_refresh_token, provider_expires_at, access_expires_at, refresh_expires_at, \
         created_at"
    };
}

/// "No lookup can return this row again" (core's `StoredSession::is_dead`),
/// with `$cutoff` bound to [`cutoff`]`(now)`.
macro_rules! dead_sql {
    ($cutoff:literal) => {
        concat!(
            expired_sql!("access_expires_at", $cutoff),
            " AND (refresh_token_hash IS NULL OR ",
            expired_sql!("refresh_expires_at", $cutoff),
            ")"
        )
    };
}

/// What the invalidation log needs from every row a write deletes
/// ([`feed::deleted_sessions`]).
macro_rules! returning_keys {
    () => {
        " RETURNING access_token_hash, refresh_token_hash, session_id"
    };
}

/// The [`Delete`] of the statement `$sql`, with and without [`returning_keys!`].
macro_rules! delete {
    ($sql:literal) => {
        Delete {
            plain: $sql,
            returning: concat!($sql, returning_keys!()),
        }
    };
}

const INSERT: &str = concat!(
    "INSERT INTO sessions (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
);
const DELETE_SHARING: Delete = delete!(
    "DELETE FROM sessions \
     WHERE access_token_hash = ?1 OR session_id = ?2 OR refresh_token_hash = ?3"
);
const BY_ACCESS: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM sessions WHERE access_token_hash = ?1"
);
const BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM sessions WHERE session_id = ?1"
);
const BY_REFRESH: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM sessions WHERE refresh_token_hash = ?1"
);
const ALL: &str = concat!("SELECT ", columns!(), " FROM sessions");
const DELETE_BY_ACCESS: Delete = delete!("DELETE FROM sessions WHERE access_token_hash = ?1");
const DELETE_BY_ID: Delete = delete!("DELETE FROM sessions WHERE session_id = ?1");
const DELETE_IF_DEAD: &str = concat!(
    "DELETE FROM sessions WHERE access_token_hash = ?1 AND ",
    dead_sql!("?2")
);
const DELETE_DEAD: &str = concat!("DELETE FROM sessions WHERE ", dead_sql!("?1"));

/// Hashes per `DELETE ... IN (...)`: far under SQLite's variable limit (32766
/// in the bundled build, 999 in old ones).
const DELETE_CHUNK: usize = 500;

/// The statement that finds a session by `key`, and the value it binds (a hash
/// in hex, or the id).
fn select(key: &SessionKey) -> (&'static str, String) {
    match key {
        SessionKey::Access(hash) => (BY_ACCESS, hash.to_hex()),
        SessionKey::Id(id) => (BY_ID, id.clone()),
        SessionKey::Refresh(hash) => (BY_REFRESH, hash.to_hex()),
    }
}

/// The expiry rule a load by `key` applies to a row's raw columns (what
/// [`SessionKey::visibility`] applies to a decoded session).
fn visibility(key: &SessionKey, e: &Expiry, now: Timestamp) -> SessionVisibility {
    match key {
        SessionKey::Refresh(_) => by_refresh(e.access, e.refresh, now),
        SessionKey::Access(_) | SessionKey::Id(_) => {
            by_access(e.access, e.has_refresh, e.refresh, now)
        }
    }
}

/// The raw columns the expiry rules read.
struct Expiry {
    access: Option<Timestamp>,
    has_refresh: bool,
    refresh: Option<Timestamp>,
}

/// What a lookup found.
enum Found {
    Live(Box<StoredSession>),
    Hidden,
    /// Dead, with its access-token hash (hex) to delete it by.
    Dead(String),
}

/// A session's column values as stored (hashes in hex, secrets sealed): the
/// CPU work of a store, done off the writer thread when a batch is prepared
/// ([`crate::prepared`]).
pub(crate) struct Encoded {
    access_hash: String,
    access: String,
    refresh_hash: Option<String>,
    refresh: Option<String>,
    user_info: String,
    provider_access: Option<String>,
    provider_refresh: Option<String>,
}

/// A session `DELETE`, and the same with [`returning_keys!`] for a file that
/// logs invalidations.
#[derive(Clone, Copy)]
struct Delete {
    plain: &'static str,
    returning: &'static str,
}

/// Runs `delete`; when the file logs, also gathers the deleted rows' keys
/// (empty otherwise). Returns how many rows went.
fn delete_rows(
    ctx: Ctx<'_>,
    delete: Delete,
    params: impl rusqlite::Params,
) -> Result<(u64, Vec<CacheKey>), StoreError> {
    if feed::logging(ctx) {
        feed::deleted_sessions(ctx, delete.returning, params)
    } else {
        Ok((ctx.execute(delete.plain, params)?, Vec::new()))
    }
}

/// Runs `delete` and logs the keys of the rows it removed.
fn delete_logged(
    ctx: Ctx<'_>,
    delete: Delete,
    params: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    let (n, keys) = delete_rows(ctx, delete, params)?;
    feed::record(ctx, keys)?;
    Ok(n)
}

/// Stores a session, replacing every row sharing its access-token hash, id or
/// refresh-token hash; logs its keys and those of every row it replaced. Run it
/// in a transaction.
pub(crate) fn store(ctx: Ctx<'_>, s: &StoredSession) -> Result<(), StoreError> {
    store_encoded(ctx, s, &encode(ctx.codec, s)?)
}

/// [`store`] with the session already [encoded](encode).
pub(crate) fn store_encoded(
    ctx: Ctx<'_>,
    s: &StoredSession,
    e: &Encoded,
) -> Result<(), StoreError> {
    let sharing = params![e.access_hash, s.session_id, e.refresh_hash];
    let (_, replaced) = delete_rows(ctx, DELETE_SHARING, sharing)?;
    insert(ctx, e, s)?;
    if feed::logging(ctx) {
        feed::record(ctx, log::stored_session(s, []).into_iter().chain(replaced))?;
    }
    Ok(())
}

/// Hashes, seals and encodes `s`'s columns.
pub(crate) fn encode(codec: &SecretCodec, s: &StoredSession) -> Result<Encoded, StoreError> {
    Ok(Encoded {
        access_hash: s.access_hash().to_hex(),
        access: codec.seal(&s.access_token)?,
        refresh_hash: s.refresh_hash().map(|h| h.to_hex()),
        refresh: codec.seal_opt(s.refresh_token.as_ref())?,
        user_info: encode_user_info(&s.user_info)?,
        provider_access: codec.seal_opt(s.provider_access_token.as_ref())?,
        provider_refresh: codec.seal_opt(s.provider_refresh_token.as_ref())?,
    })
}

fn insert(ctx: Ctx<'_>, e: &Encoded, s: &StoredSession) -> Result<(), StoreError> {
    let mut stmt = ctx.conn.prepare_cached(INSERT).map_err(backend)?;
    stmt.execute(params![
        e.access_hash,
        e.access,
        e.refresh_hash,
        e.refresh,
        s.session_id,
        s.provider,
        e.user_info,
        e.provider_access,
        e.provider_refresh,
        opt_secs(s.provider_expires_at),
        opt_secs(s.access_expires_at),
        opt_secs(s.refresh_expires_at),
        secs(s.created_at),
    ])
    .map_err(backend)?;
    Ok(())
}

/// What a read of one session found.
pub(crate) enum Loaded {
    /// Live: the expiry rules let the lookup return it.
    Live(Box<StoredSession>),
    /// No row, or one this lookup may not return but another may.
    Absent,
    /// A row no lookup can return again: the store runs the lookup again on
    /// the writer ([`load`]), which deletes it if it is still there.
    Dead,
}

/// Loads the session `key` names when the expiry rules let it be returned,
/// and deletes it when they call it dead: on the writer, in one job, so what
/// it deletes is the row it read (a reader that found a dead row sends the
/// whole lookup here).
pub(crate) fn load(
    ctx: Ctx<'_>,
    key: &SessionKey,
    now: Timestamp,
) -> Result<Option<StoredSession>, StoreError> {
    match find(ctx, key, now)? {
        Some(Found::Live(session)) => Ok(Some(*session)),
        Some(Found::Dead(access_hash)) => {
            delete_if_dead(ctx, &access_hash, now)?;
            Ok(None)
        }
        Some(Found::Hidden) | None => Ok(None),
    }
}

/// Reads the session `key` names (any connection; writes nothing).
pub(crate) fn read(ctx: Ctx<'_>, key: &SessionKey, now: Timestamp) -> Result<Loaded, StoreError> {
    Ok(match find(ctx, key, now)? {
        Some(Found::Live(session)) => Loaded::Live(session),
        Some(Found::Dead(_)) => Loaded::Dead,
        Some(Found::Hidden) | None => Loaded::Absent,
    })
}

fn find(ctx: Ctx<'_>, key: &SessionKey, now: Timestamp) -> Result<Option<Found>, StoreError> {
    let (sql, value) = select(key);
    let mut stmt = ctx.conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = stmt.query([value]).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(row) => classify(ctx, row, key, now).map(Some),
        None => Ok(None),
    }
}

fn classify(
    ctx: Ctx<'_>,
    row: &Row<'_>,
    key: &SessionKey,
    now: Timestamp,
) -> Result<Found, StoreError> {
    let c = Cols::new(row, TABLE);
    let expiry = Expiry {
        access: c.opt_time("access_expires_at")?,
        has_refresh: c.opt_text("refresh_token_hash")?.is_some(),
        refresh: c.opt_time("refresh_expires_at")?,
    };
    Ok(match visibility(key, &expiry, now) {
        SessionVisibility::Live => Found::Live(Box::new(from_row(ctx, row)?)),
        SessionVisibility::Hidden => Found::Hidden,
        SessionVisibility::Dead => Found::Dead(c.text("access_token_hash")?),
    })
}

/// Deletes the row only while it is still dead, so a concurrent re-store
/// survives.
pub(crate) fn delete_if_dead(
    ctx: Ctx<'_>,
    access_hash: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    ctx.execute(DELETE_IF_DEAD, params![access_hash, cutoff(now)])?;
    Ok(())
}

/// Deletes the session with this access-token hash (hex), if any, and logs
/// its keys.
pub(crate) fn delete_by_access(ctx: Ctx<'_>, access_hash: &str) -> Result<(), StoreError> {
    delete_logged(ctx, DELETE_BY_ACCESS, [access_hash])?;
    Ok(())
}

/// Deletes the session with this id, if any, and logs its keys.
pub(crate) fn delete_by_id(ctx: Ctx<'_>, session_id: &str) -> Result<(), StoreError> {
    delete_logged(ctx, DELETE_BY_ID, [session_id])?;
    Ok(())
}

/// Deletes every session whose access-token hash is listed, in chunks of
/// `DELETE ... IN (...)`, and logs their keys; returns how many rows went.
pub(crate) fn delete_hashes(ctx: Ctx<'_>, hashes: &[TokenHash]) -> Result<u64, StoreError> {
    let logging = feed::logging(ctx);
    let full = delete_in_sql(DELETE_CHUNK, logging);
    let mut deleted = 0;
    for chunk in hashes.chunks(DELETE_CHUNK) {
        let sql = if chunk.len() == DELETE_CHUNK {
            full.clone()
        } else {
            delete_in_sql(chunk.len(), logging)
        };
        let hex = params_from_iter(chunk.iter().map(TokenHash::to_hex));
        deleted += if logging {
            let (n, keys) = feed::deleted_sessions(ctx, &sql, hex)?;
            feed::record(ctx, keys)?;
            n
        } else {
            ctx.execute(&sql, hex)?
        };
    }
    Ok(deleted)
}

fn delete_in_sql(n: usize, returning: bool) -> String {
    let marks = vec!["?"; n].join(", ");
    let returning = if returning { returning_keys!() } else { "" };
    format!("DELETE FROM sessions WHERE access_token_hash IN ({marks}){returning}")
}

/// Removes every session no lookup can return again; returns how many.
pub(crate) fn delete_dead(ctx: Ctx<'_>, now: Timestamp) -> Result<u64, StoreError> {
    ctx.execute(DELETE_DEAD, [cutoff(now)])
}

/// Every session, dead ones included, ordered by access-token hash.
pub(crate) fn all(ctx: Ctx<'_>) -> Result<Vec<StoredSession>, StoreError> {
    let mut out = ctx.collect(ALL, |row| from_row(ctx, row))?;
    out.sort_by_key(StoredSession::access_hash);
    Ok(out)
}

fn from_row(ctx: Ctx<'_>, row: &Row<'_>) -> Result<StoredSession, StoreError> {
    let c = Cols::new(row, TABLE);
    let access_token = c.secret("access_token_encrypted", ctx.codec)?;
    check_hash(&c, "access_token_hash", Some(&access_token))?;
    let refresh_token = c.opt_secret("refresh_token_encrypted", ctx.codec)?;
    check_hash(&c, "refresh_token_hash", refresh_token.as_ref())?;
    let created_at = c.time("created_at")?;
    Ok(StoredSession {
        session_id: c.text("session_id")?,
        provider: c.text("provider")?,
        user_info: decode_user_info(&c.text("user_info")?)
            .ok_or_else(|| corrupt(TABLE, "user_info"))?,
        access_token,
        refresh_token,
        provider_access_token: c.opt_secret("provider_access_token", ctx.codec)?,
        provider_refresh_token: c.opt_secret("provider_refresh_token", ctx.codec)?,
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
    c: &Cols<'_, '_>,
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
