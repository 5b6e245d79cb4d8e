//! The `auth_codes` table: authorization codes, loaded then deleted.

use crate::cols::Cols;
use crate::conn::Db;
use crate::error::Fail;
use crate::log::{self, Key, Keys, pick};
use crate::sql::{excluded, params};
use crate::types::{Json, PgTime};
use tokenstore_core::codec::json::encode_list;
use tokenstore_core::feed::log::auth_code;
use tokenstore_core::{AuthCodeRecord, StoreError, Timestamp};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

const TABLE: &str = "auth_codes";
const COLUMNS: &str = "code, session_id, client_id, redirect_uri, code_challenge, \
     code_challenge_method, scopes, expires_at, created_at";

/// The statements on `auth_codes`.
pub(crate) struct Statements {
    upsert: String,
    select: String,
    delete_if_expired: String,
    pub(crate) delete: String,
    take: String,
    all: String,
    delete_expired: String,
    pub(crate) upsert_many: String,
    pub(crate) delete_many: String,
}

impl Statements {
    /// The statements for the quoted schema name `s`; with `logs`, every
    /// write that can invalidate a cached code logs its key (see [`log`]).
    pub(crate) fn new(s: &str, logs: bool) -> Self {
        let conflict = format!("ON CONFLICT (code) DO UPDATE SET {}", excluded(COLUMNS));
        Self {
            upsert: pick(
                logs,
                format!(
                    "INSERT INTO {s}.auth_codes ({COLUMNS}) VALUES ({}) {conflict}",
                    params(1, 9)
                ),
                |q| log::with_one(s, 10, 11, q),
            ),
            select: format!("SELECT {COLUMNS} FROM {s}.auth_codes WHERE code = $1"),
            delete_if_expired: format!(
                "DELETE FROM {s}.auth_codes WHERE code = $1 AND expires_at < $2"
            ),
            delete: pick(
                logs,
                format!("DELETE FROM {s}.auth_codes WHERE code = $1"),
                |q| log::delete_one(s, q, 2, 3),
            ),
            take: if logs {
                format!(
                    "WITH gone AS (DELETE FROM {s}.auth_codes WHERE code = $1 \
                     RETURNING expires_at >= $2 AS live), \
                     log AS ({}) SELECT live FROM gone",
                    log::insert(s, "SELECT $3::smallint, $4::bytea FROM gone")
                )
            } else {
                format!("DELETE FROM {s}.auth_codes WHERE code = $1 RETURNING expires_at >= $2")
            },
            all: format!("SELECT {COLUMNS} FROM {s}.auth_codes ORDER BY code"),
            delete_expired: format!("DELETE FROM {s}.auth_codes WHERE expires_at < $1"),
            upsert_many: pick(
                logs,
                format!(
                    "INSERT INTO {s}.auth_codes ({COLUMNS}) SELECT * FROM UNNEST($1::text[], \
                     $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::json[], \
                     $8::timestamptz[], $9::timestamptz[]) {conflict}"
                ),
                |q| log::with_given(s, 10, 11, q),
            ),
            delete_many: pick(
                logs,
                format!("DELETE FROM {s}.auth_codes WHERE code = ANY($1::text[])"),
                |q| log::delete_many(s, q, "code"),
            ),
        }
    }
}

/// The log key of `code` (its SHA-256, never the code).
pub(crate) fn key(code: &str) -> Key {
    Key::of(&auth_code(code))
}

/// The log keys of `codes`, in their order.
pub(crate) fn keys<'a>(codes: impl IntoIterator<Item = &'a str>) -> Keys {
    Keys::of(codes.into_iter().map(auth_code))
}

/// Stores a code, replacing one with the same code.
pub(crate) async fn upsert(db: &Db, r: &AuthCodeRecord) -> Result<(), Fail> {
    let scopes = encode_list(&r.scopes);
    let (scopes, expires, created) = (Json(&scopes), PgTime(r.expires_at), PgTime(r.created_at));
    let logged = key(&r.code);
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![
        &r.code,
        &r.session_id,
        &r.client_id,
        &r.redirect_uri,
        &r.code_challenge,
        &r.code_challenge_method,
        &scopes,
        &expires,
        &created,
    ];
    logged.append(db.logs(), &mut p);
    db.execute(&db.sql().codes.upsert, &p).await?;
    Ok(())
}

/// Loads a live code without consuming it; an expired one is deleted (only
/// while still expired, so a concurrent re-store survives).
pub(crate) async fn load(
    db: &Db,
    code: &str,
    now: Timestamp,
) -> Result<Option<AuthCodeRecord>, Fail> {
    let Some(row) = db.query_opt(&db.sql().codes.select, &[&code]).await? else {
        return Ok(None);
    };
    if Cols::new(&row, TABLE).time("expires_at")? >= now {
        return Ok(Some(from_row(&row)?));
    }
    db.execute(&db.sql().codes.delete_if_expired, &[&code, &PgTime(now)])
        .await?;
    Ok(None)
}

/// Deletes a code if present.
pub(crate) async fn delete(db: &Db, code: &str) -> Result<(), Fail> {
    let logged = key(code);
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![&code];
    logged.append(db.logs(), &mut p);
    db.execute(&db.sql().codes.delete, &p).await?;
    Ok(())
}

/// Deletes a code in one atomic `DELETE ... RETURNING`; `true` only when it
/// was live, so exactly one caller across every instance wins.
pub(crate) async fn try_delete(db: &Db, code: &str, now: Timestamp) -> Result<bool, Fail> {
    let (now, logged) = (PgTime(now), key(code));
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![&code, &now];
    logged.append(db.logs(), &mut p);
    let row = db.query_opt(&db.sql().codes.take, &p).await?;
    let Some(row) = row else { return Ok(false) };
    let live: Option<bool> = row
        .try_get(0)
        .map_err(|_| crate::error::corrupt(TABLE, "expires_at"))?;
    Ok(live == Some(true))
}

/// Every code, expired ones included, ordered by code.
pub(crate) async fn all(db: &Db) -> Result<Vec<AuthCodeRecord>, Fail> {
    let rows = db.query(&db.sql().codes.all, &[]).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Removes every expired code; returns how many.
pub(crate) async fn delete_expired(db: &Db, now: Timestamp) -> Result<u64, Fail> {
    db.execute(&db.sql().codes.delete_expired, &[&PgTime(now)])
        .await
}

fn from_row(row: &Row) -> Result<AuthCodeRecord, StoreError> {
    let c = Cols::new(row, TABLE);
    Ok(AuthCodeRecord {
        code: c.text("code")?,
        session_id: c.text("session_id")?,
        client_id: c.opt_text("client_id")?,
        redirect_uri: c.opt_text("redirect_uri")?,
        code_challenge: c.opt_text("code_challenge")?,
        code_challenge_method: c.opt_text("code_challenge_method")?,
        scopes: c.list("scopes")?,
        expires_at: c.time("expires_at")?,
        created_at: c.time("created_at")?,
    })
}
