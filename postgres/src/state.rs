//! The `states` table: one-time OAuth `state` records.

use crate::cols::Cols;
use crate::conn::Db;
use crate::error::Fail;
use crate::sql::{excluded, params};
use crate::types::{Json, PgTime};
use tokenstore_core::codec::json::encode_list;
use tokenstore_core::{Secret, StateRecord, Timestamp};
use tokio_postgres::Row;

const TABLE: &str = "states";
const COLUMNS: &str = "state, client_id, redirect_uri, code_challenge, code_challenge_method, \
     provider_code_verifier, client_state, provider_scopes_requested, expires_at, created_at";

/// The statements on `states`.
pub(crate) struct Statements {
    upsert: String,
    consume: String,
    all: String,
    delete_expired: String,
    pub(crate) upsert_many: String,
    pub(crate) delete_many: String,
}

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        let conflict = format!("ON CONFLICT (state) DO UPDATE SET {}", excluded(COLUMNS));
        Self {
            upsert: format!(
                "INSERT INTO {s}.states ({COLUMNS}) VALUES ({}) {conflict}",
                params(1, 10)
            ),
            consume: format!("DELETE FROM {s}.states WHERE state = $1 RETURNING {COLUMNS}"),
            all: format!("SELECT {COLUMNS} FROM {s}.states ORDER BY state"),
            delete_expired: format!("DELETE FROM {s}.states WHERE expires_at < $1"),
            upsert_many: format!(
                "INSERT INTO {s}.states ({COLUMNS}) SELECT * FROM UNNEST($1::text[], \
                 $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::json[], $9::timestamptz[], $10::timestamptz[]) {conflict}"
            ),
            delete_many: format!("DELETE FROM {s}.states WHERE state = ANY($1::text[])"),
        }
    }
}

/// Stores a state, replacing one with the same value.
pub(crate) async fn upsert(db: &Db, r: &StateRecord) -> Result<(), Fail> {
    let scopes = encode_list(&r.provider_scopes_requested);
    let verifier = r.provider_code_verifier.as_ref().map(Secret::expose);
    db.execute(
        &db.sql().states.upsert,
        &[
            &r.state,
            &r.client_id,
            &r.redirect_uri,
            &r.code_challenge,
            &r.code_challenge_method,
            &verifier,
            &r.client_state,
            &Json(&scopes),
            &PgTime(r.expires_at),
            &PgTime(r.created_at),
        ],
    )
    .await?;
    Ok(())
}

/// Removes a state (one `DELETE ... RETURNING`) and returns it when live.
/// Run it in a transaction, so a corrupt row is left in place.
pub(crate) async fn consume(
    db: &Db,
    state: &str,
    now: Timestamp,
) -> Result<Option<StateRecord>, Fail> {
    let Some(row) = db.query_opt(&db.sql().states.consume, &[&state]).await? else {
        return Ok(None);
    };
    if Cols::new(&row, TABLE).time("expires_at")? < now {
        return Ok(None);
    }
    Ok(Some(from_row(&row)?))
}

/// Every state, expired ones included, ordered by value.
pub(crate) async fn all(db: &Db) -> Result<Vec<StateRecord>, Fail> {
    let rows = db.query(&db.sql().states.all, &[]).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Removes every expired state; returns how many.
pub(crate) async fn delete_expired(db: &Db, now: Timestamp) -> Result<u64, Fail> {
    db.execute(&db.sql().states.delete_expired, &[&PgTime(now)])
        .await
}

fn from_row(row: &Row) -> Result<StateRecord, tokenstore_core::StoreError> {
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
