//! The `oauth_clients` table: registered OAuth clients.

use crate::columns::{Cols, secs};
use crate::error::{backend, corrupt};
use crate::feed;
use crate::worker::Ctx;
use rusqlite::{Row, params};
use tokenstore_core::codec::json::encode_list;
use tokenstore_core::feed::log;
use tokenstore_core::{ClientRecord, StoreError, TokenEndpointAuthMethod};

const TABLE: &str = "oauth_clients";

macro_rules! columns {
    () => {
        "client_id, client_secret, token_endpoint_auth_method, redirect_uris, grant_types, \
         response_types, scope, client_name, created_at"
    };
}

const INSERT: &str = concat!(
    "INSERT OR REPLACE INTO oauth_clients (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
);
const SELECT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM oauth_clients WHERE client_id = ?1"
);
const ALL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM oauth_clients ORDER BY client_id"
);
const DELETE: &str = "DELETE FROM oauth_clients WHERE client_id = ?1";

/// Stores a client, replacing one with the same id, and logs its id. Sealing
/// the secret comes first, so a missing key changes nothing.
pub(crate) fn insert(ctx: Ctx<'_>, r: &ClientRecord) -> Result<(), StoreError> {
    let secret = ctx.codec.seal_opt(r.client_secret.as_ref())?;
    let mut stmt = ctx.conn.prepare_cached(INSERT).map_err(backend)?;
    stmt.execute(params![
        r.client_id,
        secret,
        r.token_endpoint_auth_method
            .map(TokenEndpointAuthMethod::as_str),
        encode_list(&r.redirect_uris),
        encode_list(&r.grant_types),
        encode_list(&r.response_types),
        r.scope,
        r.client_name,
        secs(r.created_at),
    ])
    .map_err(backend)?;
    feed::record(ctx, [log::client(&r.client_id)])
}

/// Loads a client.
pub(crate) fn load(ctx: Ctx<'_>, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
    let mut stmt = ctx.conn.prepare_cached(SELECT).map_err(backend)?;
    let mut rows = stmt.query([client_id]).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(row) => from_row(ctx, row).map(Some),
        None => Ok(None),
    }
}

/// Every client, ordered by id; one corrupt row fails the whole call.
pub(crate) fn all(ctx: Ctx<'_>) -> Result<Vec<ClientRecord>, StoreError> {
    ctx.collect(ALL, |row| from_row(ctx, row))
}

/// Deletes a client if present; logs its id when a row went.
pub(crate) fn delete(ctx: Ctx<'_>, client_id: &str) -> Result<(), StoreError> {
    if ctx.execute(DELETE, [client_id])? > 0 {
        feed::record(ctx, [log::client(client_id)])?;
    }
    Ok(())
}

fn from_row(ctx: Ctx<'_>, row: &Row<'_>) -> Result<ClientRecord, StoreError> {
    let c = Cols::new(row, TABLE);
    Ok(ClientRecord {
        client_id: c.text("client_id")?,
        client_secret: c.opt_secret("client_secret", ctx.codec)?,
        token_endpoint_auth_method: auth_method(&c)?,
        redirect_uris: c.list("redirect_uris")?,
        grant_types: c.list("grant_types")?,
        response_types: c.list("response_types")?,
        scope: c.opt_text("scope")?,
        client_name: c.opt_text("client_name")?,
        created_at: c.time("created_at")?,
    })
}

fn auth_method(c: &Cols<'_, '_>) -> Result<Option<TokenEndpointAuthMethod>, StoreError> {
    const COLUMN: &str = "token_endpoint_auth_method";
    c.opt_text(COLUMN)?
        .map(|s| TokenEndpointAuthMethod::parse(&s).ok_or_else(|| corrupt(TABLE, COLUMN)))
        .transpose()
}
