//! The `oauth_clients` table: registered OAuth clients.

use crate::cols::Cols;
use crate::conn::Db;
use crate::error::{Fail, corrupt};
use crate::log::{self, Key, Keys, pick};
use crate::sql::{excluded, params};
use crate::types::{Json, PgTime};
use tokenstore_core::codec::json::encode_list;
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::feed::log::client;
use tokenstore_core::{ClientRecord, StoreError, TokenEndpointAuthMethod};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

const TABLE: &str = "oauth_clients";
const COLUMNS: &str = "client_id, client_secret, token_endpoint_auth_method, redirect_uris, \
     grant_types, response_types, scope, client_name, created_at";

/// The statements on `oauth_clients`.
pub(crate) struct Statements {
    upsert: String,
    select: String,
    all: String,
    pub(crate) delete: String,
    pub(crate) upsert_many: String,
    pub(crate) delete_many: String,
}

impl Statements {
    /// The statements for the quoted schema name `s`; with `logs`, every
    /// write that can invalidate a cached client logs its id (see [`log`]).
    pub(crate) fn new(s: &str, logs: bool) -> Self {
        let conflict = format!(
            "ON CONFLICT (client_id) DO UPDATE SET {}",
            excluded(COLUMNS)
        );
        Self {
            upsert: pick(
                logs,
                format!(
                    "INSERT INTO {s}.oauth_clients ({COLUMNS}) VALUES ({}) {conflict}",
                    params(1, 9)
                ),
                |q| log::with_one(s, 10, 11, q),
            ),
            select: format!("SELECT {COLUMNS} FROM {s}.oauth_clients WHERE client_id = $1"),
            all: format!("SELECT {COLUMNS} FROM {s}.oauth_clients ORDER BY client_id"),
            delete: pick(
                logs,
                format!("DELETE FROM {s}.oauth_clients WHERE client_id = $1"),
                |q| log::delete_one(s, q, 2, 3),
            ),
            upsert_many: pick(
                logs,
                format!(
                    "INSERT INTO {s}.oauth_clients ({COLUMNS}) SELECT * FROM UNNEST($1::text[], \
                     $2::text[], $3::text[], $4::json[], $5::json[], $6::json[], $7::text[], \
                     $8::text[], $9::timestamptz[]) {conflict}"
                ),
                |q| log::with_given(s, 10, 11, q),
            ),
            delete_many: pick(
                logs,
                format!("DELETE FROM {s}.oauth_clients WHERE client_id = ANY($1::text[])"),
                |q| log::delete_many(s, q, "client_id"),
            ),
        }
    }
}

/// The log keys of `ids`, in their order.
pub(crate) fn keys<'a>(ids: impl IntoIterator<Item = &'a str>) -> Keys {
    Keys::of(ids.into_iter().map(client))
}

/// A client's column values as stored (the secret sealed, lists as JSON).
pub(crate) struct Encoded {
    pub(crate) secret: Option<String>,
    pub(crate) method: Option<&'static str>,
    pub(crate) redirect_uris: String,
    pub(crate) grant_types: String,
    pub(crate) response_types: String,
}

/// Encodes a client; sealing the secret comes first, so a missing key changes nothing.
pub(crate) fn encode(codec: &SecretCodec, r: &ClientRecord) -> Result<Encoded, StoreError> {
    Ok(Encoded {
        secret: codec.seal_opt(r.client_secret.as_ref())?,
        method: r
            .token_endpoint_auth_method
            .map(TokenEndpointAuthMethod::as_str),
        redirect_uris: encode_list(&r.redirect_uris),
        grant_types: encode_list(&r.grant_types),
        response_types: encode_list(&r.response_types),
    })
}

/// Stores a client, replacing one with the same id.
pub(crate) async fn upsert(db: &Db, r: &ClientRecord) -> Result<(), Fail> {
    let e = encode(db.codec(), r)?;
    let (uris, grants, responses) = (
        Json(&e.redirect_uris),
        Json(&e.grant_types),
        Json(&e.response_types),
    );
    let (created, logged) = (PgTime(r.created_at), Key::of(&client(&r.client_id)));
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![
        &r.client_id,
        &e.secret,
        &e.method,
        &uris,
        &grants,
        &responses,
        &r.scope,
        &r.client_name,
        &created,
    ];
    logged.append(db.logs(), &mut p);
    db.execute(&db.sql().clients.upsert, &p).await?;
    Ok(())
}

/// Loads a client.
pub(crate) async fn load(db: &Db, client_id: &str) -> Result<Option<ClientRecord>, Fail> {
    let row = db
        .query_opt(&db.sql().clients.select, &[&client_id])
        .await?;
    Ok(row.map(|r| from_row(db.codec(), &r)).transpose()?)
}

/// Every client, ordered by id; one corrupt row fails the whole call.
pub(crate) async fn all(db: &Db) -> Result<Vec<ClientRecord>, Fail> {
    let rows = db.query(&db.sql().clients.all, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| from_row(db.codec(), r))
        .collect::<Result<_, _>>()?)
}

/// Deletes a client if present.
pub(crate) async fn delete(db: &Db, client_id: &str) -> Result<(), Fail> {
    let logged = Key::of(&client(client_id));
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![&client_id];
    logged.append(db.logs(), &mut p);
    db.execute(&db.sql().clients.delete, &p).await?;
    Ok(())
}

fn from_row(codec: &SecretCodec, row: &Row) -> Result<ClientRecord, StoreError> {
    let c = Cols::new(row, TABLE);
    Ok(ClientRecord {
        client_id: c.text("client_id")?,
        client_secret: c.opt_secret("client_secret", codec)?,
        token_endpoint_auth_method: auth_method(&c)?,
        redirect_uris: c.list("redirect_uris")?,
        grant_types: c.list("grant_types")?,
        response_types: c.list("response_types")?,
        scope: c.opt_text("scope")?,
        client_name: c.opt_text("client_name")?,
        created_at: c.time("created_at")?,
    })
}

fn auth_method(c: &Cols<'_>) -> Result<Option<TokenEndpointAuthMethod>, StoreError> {
    const COLUMN: &str = "token_endpoint_auth_method";
    c.opt_text(COLUMN)?
        .map(|s| TokenEndpointAuthMethod::parse(&s).ok_or_else(|| corrupt(TABLE, COLUMN)))
        .transpose()
}
