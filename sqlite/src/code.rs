//! The `auth_codes` table: authorization codes, loaded then deleted.

use crate::columns::{Cols, cutoff, expired_sql, secs};
use crate::error::backend;
use crate::feed;
use crate::worker::Ctx;
use rusqlite::{OptionalExtension, Row, params};
use tokenstore_core::codec::json::encode_list;
use tokenstore_core::feed::log;
use tokenstore_core::{AuthCodeRecord, StoreError, Timestamp};

const TABLE: &str = "auth_codes";

macro_rules! columns {
    () => {
        "code, session_id, client_id, redirect_uri, code_challenge, code_challenge_method, \
         mxcp_scopes, expires_at, created_at"
    };
}

const INSERT: &str = concat!(
    "INSERT OR REPLACE INTO auth_codes (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
);
const SELECT: &str = concat!("SELECT ", columns!(), " FROM auth_codes WHERE code = ?1");
const ALL: &str = concat!("SELECT ", columns!(), " FROM auth_codes ORDER BY code");
const DELETE: &str = "DELETE FROM auth_codes WHERE code = ?1";
const TAKE: &str = "DELETE FROM auth_codes WHERE code = ?1 RETURNING expires_at";
const DELETE_IF_EXPIRED: &str = concat!(
    "DELETE FROM auth_codes WHERE code = ?1 AND ",
    expired_sql!("expires_at", "?2")
);
const DELETE_EXPIRED: &str = concat!(
    "DELETE FROM auth_codes WHERE ",
    expired_sql!("expires_at", "?1")
);

/// Stores a code, replacing one with the same value; logs the code's hash.
pub(crate) fn insert(ctx: Ctx<'_>, r: &AuthCodeRecord) -> Result<(), StoreError> {
    let mut stmt = ctx.conn.prepare_cached(INSERT).map_err(backend)?;
    stmt.execute(params![
        r.code,
        r.session_id,
        r.client_id,
        r.redirect_uri,
        r.code_challenge,
        r.code_challenge_method,
        encode_list(&r.scopes),
        secs(r.expires_at),
        secs(r.created_at),
    ])
    .map_err(backend)?;
    feed::record(ctx, [log::auth_code(&r.code)])
}

/// What a read of one code found.
pub(crate) enum Loaded {
    Live(AuthCodeRecord),
    Absent,
    /// Present but expired: the store runs the lookup again on the writer
    /// ([`load`]), which deletes it if it is still expired.
    Expired,
}

/// Reads a code without consuming it (any connection; writes nothing).
pub(crate) fn read(ctx: Ctx<'_>, code: &str, now: Timestamp) -> Result<Loaded, StoreError> {
    let mut stmt = ctx.conn.prepare_cached(SELECT).map_err(backend)?;
    let mut rows = stmt.query([code]).map_err(backend)?;
    let Some(row) = rows.next().map_err(backend)? else {
        return Ok(Loaded::Absent);
    };
    if Cols::new(row, TABLE).time("expires_at")? >= now {
        return from_row(row).map(Loaded::Live);
    }
    Ok(Loaded::Expired)
}

/// Loads a live code without consuming it and deletes an expired one: on the
/// writer, in one job, so what it deletes is the row it read (a reader that
/// found an expired code sends the whole lookup here).
pub(crate) fn load(
    ctx: Ctx<'_>,
    code: &str,
    now: Timestamp,
) -> Result<Option<AuthCodeRecord>, StoreError> {
    match read(ctx, code, now)? {
        Loaded::Live(found) => Ok(Some(found)),
        Loaded::Absent => Ok(None),
        Loaded::Expired => {
            // Deletes only while still expired, so a concurrent re-store
            // survives (no cache can hold it: nothing is logged).
            ctx.execute(DELETE_IF_EXPIRED, params![code, cutoff(now)])?;
            Ok(None)
        }
    }
}

/// Deletes a code if present; logs its hash when a row went.
pub(crate) fn delete(ctx: Ctx<'_>, code: &str) -> Result<(), StoreError> {
    if ctx.execute(DELETE, [code])? > 0 {
        feed::record(ctx, [log::auth_code(code)])?;
    }
    Ok(())
}

/// Deletes a code; `true` only when it was live. Logs its hash when a row
/// went, live or not. Run it in a transaction, so a corrupt row is left in place.
pub(crate) fn try_delete(ctx: Ctx<'_>, code: &str, now: Timestamp) -> Result<bool, StoreError> {
    let mut stmt = ctx.conn.prepare_cached(TAKE).map_err(backend)?;
    let taken = stmt
        .query_row([code], |row| Ok(Cols::new(row, TABLE).time("expires_at")))
        .optional()
        .map_err(backend)?
        .transpose()?;
    if taken.is_some() {
        feed::record(ctx, [log::auth_code(code)])?;
    }
    Ok(taken.is_some_and(|expires_at| expires_at >= now))
}

/// Every code, expired ones included, ordered by code.
pub(crate) fn all(ctx: Ctx<'_>) -> Result<Vec<AuthCodeRecord>, StoreError> {
    ctx.collect(ALL, from_row)
}

/// Removes every expired code; returns how many.
pub(crate) fn delete_expired(ctx: Ctx<'_>, now: Timestamp) -> Result<u64, StoreError> {
    ctx.execute(DELETE_EXPIRED, [cutoff(now)])
}

fn from_row(row: &Row<'_>) -> Result<AuthCodeRecord, StoreError> {
    let c = Cols::new(row, TABLE);
    Ok(AuthCodeRecord {
        code: c.text("code")?,
        session_id: c.text("session_id")?,
        client_id: c.opt_text("client_id")?,
        redirect_uri: c.opt_text("redirect_uri")?,
        code_challenge: c.opt_text("code_challenge")?,
        code_challenge_method: c.opt_text("code_challenge_method")?,
        scopes: c.list("mxcp_scopes")?,
        expires_at: c.time("expires_at")?,
        created_at: c.time("created_at")?,
    })
}
