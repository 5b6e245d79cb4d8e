//! The `states` table: one-time OAuth `state` records.

use crate::columns::{Cols, cutoff, expired_sql, secs};
use crate::error::backend;
use crate::worker::Ctx;
use rusqlite::{Row, params};
use tokenstore_core::codec::json::encode_list;
use tokenstore_core::{Secret, StateRecord, StoreError, Timestamp};

const TABLE: &str = "states";

macro_rules! columns {
    () => {
        "state, client_id, redirect_uri, code_challenge, code_challenge_method, \
         provider_code_verifier, client_state, provider_scopes_requested, expires_at, created_at"
    };
}

const INSERT: &str = concat!(
    "INSERT OR REPLACE INTO states (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
);
const CONSUME: &str = concat!("DELETE FROM states WHERE state = ?1 RETURNING ", columns!());
const REMOVE: &str = "DELETE FROM states WHERE state = ?1";
const ALL: &str = concat!("SELECT ", columns!(), " FROM states ORDER BY state");
const DELETE_EXPIRED: &str = concat!(
    "DELETE FROM states WHERE ",
    expired_sql!("expires_at", "?1")
);

/// Stores a state, replacing one with the same value.
pub(crate) fn insert(ctx: Ctx<'_>, r: &StateRecord) -> Result<(), StoreError> {
    let mut stmt = ctx.conn.prepare_cached(INSERT).map_err(backend)?;
    stmt.execute(params![
        r.state,
        r.client_id,
        r.redirect_uri,
        r.code_challenge,
        r.code_challenge_method,
        r.provider_code_verifier.as_ref().map(Secret::expose),
        r.client_state,
        encode_list(&r.provider_scopes_requested),
        secs(r.expires_at),
        secs(r.created_at),
    ])
    .map_err(backend)?;
    Ok(())
}

/// Removes a state and returns it when live. Run it in a transaction, so a
/// corrupt row is left in place.
pub(crate) fn consume(
    ctx: Ctx<'_>,
    state: &str,
    now: Timestamp,
) -> Result<Option<StateRecord>, StoreError> {
    let mut stmt = ctx.conn.prepare_cached(CONSUME).map_err(backend)?;
    let mut rows = stmt.query([state]).map_err(backend)?;
    let Some(row) = rows.next().map_err(backend)? else {
        return Ok(None);
    };
    if Cols::new(row, TABLE).time("expires_at")? < now {
        return Ok(None);
    }
    from_row(row).map(Some)
}

/// Removes a state whatever its expiry or contents (a consume whose answer
/// nobody reads).
pub(crate) fn remove(ctx: Ctx<'_>, state: &str) -> Result<(), StoreError> {
    ctx.execute(REMOVE, [state])?;
    Ok(())
}

/// Every state, expired ones included, ordered by value.
pub(crate) fn all(ctx: Ctx<'_>) -> Result<Vec<StateRecord>, StoreError> {
    ctx.collect(ALL, from_row)
}

/// Removes every expired state; returns how many.
pub(crate) fn delete_expired(ctx: Ctx<'_>, now: Timestamp) -> Result<u64, StoreError> {
    ctx.execute(DELETE_EXPIRED, [cutoff(now)])
}

fn from_row(row: &Row<'_>) -> Result<StateRecord, StoreError> {
    let c = Cols::new(row, TABLE);
    Ok(StateRecord {
        state: c.text("state")?,
        client_id: c.opt_text("client_id")?,
        redirect_uri: c.opt_text("redirect_uri")?,
        code_challenge: c.opt_text("code_challenge")?,
        code_challenge_method: c.opt_text("code_challenge_method")?,
        provider_code_verifier: c.opt_text("provider_code_verifier")?.map(Secret::from),
        client_state: c.opt_text("client_state")?,
        provider_scopes_requested: c.list("provider_scopes_requested")?,
        expires_at: c.time("expires_at")?,
        created_at: c.time("created_at")?,
    })
}
