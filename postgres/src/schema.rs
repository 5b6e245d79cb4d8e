//! The schema and its migrations.
//!
//! Every table lives in the store's schema (`tokenstore` by default), created
//! when missing. `schema_version` holds one row, the version the tables are
//! at. [`migrate`] runs in one transaction under a transaction-level advisory
//! lock keyed by the schema's name, so concurrent `open()`s of several
//! instances create or migrate it once: it creates the tables at version 1,
//! applies each later migration in order, and refuses a database whose
//! version is newer than this code with [`StoreError::InvalidConfig`].
//!
//! Types (see the crate docs for the reasoning):
//!
//! - token hashes: `bytea`, the 32 SHA-256 bytes (a `CHECK` enforces the length);
//! - times: `timestamptz`, exact to the microsecond;
//! - lists and `user_info`: `json`, the text exactly as written;
//! - keys (state, code, session id, client id): `text COLLATE "C"`, so equality
//!   and order are byte-wise, as in the in-memory reference model;
//! - secrets: `text`, a Fernet token (or plain text with the explicit opt-in).

use crate::conn::Conn;
use crate::error::Fail;
use tokenstore_core::StoreError;

/// The version this code writes and reads.
pub(crate) const VERSION: i32 = 2;

/// The first of the two keys of the schema's advisory lock ("tkst").
const LOCK_CLASS: i32 = 0x746b_7374;

/// The tables at version 1; `{s}` is the quoted schema name.
const V1: &str = r#"
CREATE TABLE {s}.states (
    state text COLLATE "C" PRIMARY KEY,
    client_id text,
    redirect_uri text,
    code_challenge text,
    code_challenge_method text,
    provider_code_verifier text,
    client_state text,
    provider_scopes_requested json NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX states_expires_at ON {s}.states (expires_at);
CREATE TABLE {s}.auth_codes (
    code text COLLATE "C" PRIMARY KEY,
    session_id text NOT NULL,
    client_id text,
    redirect_uri text,
    code_challenge text,
    code_challenge_method text,
    scopes json NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX auth_codes_expires_at ON {s}.auth_codes (expires_at);
CREATE TABLE {s}.sessions (
    access_token_hash bytea PRIMARY KEY CHECK (octet_length(access_token_hash) = 32),
    access_token_encrypted text NOT NULL,
    refresh_token_hash bytea UNIQUE CHECK (octet_length(refresh_token_hash) = 32),
    refresh_token_encrypted text,
    session_id text COLLATE "C" NOT NULL UNIQUE,
    provider text NOT NULL,
    user_info json NOT NULL,
    provider_access_token text,
    provider_refresh_token text,
    provider_expires_at timestamptz,
    access_expires_at timestamptz,
    refresh_expires_at timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX sessions_access_expires_at ON {s}.sessions (access_expires_at);
CREATE TABLE {s}.oauth_clients (
    client_id text COLLATE "C" PRIMARY KEY,
    client_secret text,
    token_endpoint_auth_method text,
    redirect_uris json NOT NULL,
    grant_types json NOT NULL,
    response_types json NOT NULL,
    scope text,
    client_name text,
    created_at timestamptz NOT NULL
);
"#;

/// Version 2: the invalidation log (`DESIGN.md` section 7), one row per cache
/// key a write removed or replaced, stamped with the writing transaction's id,
/// and the prune mark (the highest id pruning ever deleted; 0, below every
/// normal transaction id, until the first prune). Needs PostgreSQL 13 or
/// later (`xid8`). `at` has a BRIN index: nearly free to keep up on an
/// append-mostly table, and enough for pruning by age once a minute.
const V2: &str = r#"
CREATE TABLE {s}.invalidations (
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    kinds smallint[] NOT NULL,
    keys bytea[] NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invalidations_xid ON {s}.invalidations (xid);
CREATE INDEX invalidations_at ON {s}.invalidations USING brin (at);
CREATE TABLE {s}.invalidations_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_through xid8 NOT NULL
);
INSERT INTO {s}.invalidations_meta (pruned_through) VALUES ('0');
"#;

/// The migrations after version 1, in order: `MIGRATIONS[i]` takes the schema
/// from version `i + 1` to `i + 2`.
const MIGRATIONS: &[&str] = &[V2];

/// `"name"`: a schema name as an SQL identifier. The builder only lets
/// through names of letters, digits and `_`, so no quote can occur.
pub(crate) fn quote(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// Whether `name` is a schema name the builder accepts: 1 to 63 ASCII letters,
/// digits or `_`, not starting with a digit, and not `pg_...` (reserved).
pub(crate) fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !name.to_ascii_lowercase().starts_with("pg_")
}

/// Creates or migrates the schema `schema` (unquoted) in one transaction.
pub(crate) async fn migrate(conn: &Conn, schema: &str) -> Result<(), Fail> {
    conn.batch("BEGIN").await?;
    let out = migrate_in_transaction(conn, schema).await;
    match out {
        Ok(()) => conn.batch("COMMIT").await,
        Err(e) => {
            let _ = conn.batch("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn migrate_in_transaction(conn: &Conn, schema: &str) -> Result<(), Fail> {
    let s = quote(schema);
    let lock = format!(
        "SELECT pg_advisory_xact_lock({LOCK_CLASS}, hashtext('{schema}'));
         CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_version (
             singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
             version integer NOT NULL
         );"
    );
    conn.batch(&lock).await?;
    let found = conn
        .version(&format!("SELECT version FROM {s}.schema_version"))
        .await?;
    let from = match found {
        None => {
            conn.batch(&V1.replace("{s}", &s)).await?;
            1
        }
        Some(v) if v > VERSION => {
            return Err(Fail::Store(StoreError::InvalidConfig(format!(
                "the PostgreSQL schema {schema} is at version {v}, newer than this \
                 tokenstore-postgres understands ({VERSION}); upgrade tokenstore-postgres"
            ))));
        }
        Some(v) if v < 1 => {
            return Err(Fail::Store(StoreError::InvalidConfig(format!(
                "the PostgreSQL schema {schema} has an invalid version {v}"
            ))));
        }
        Some(v) => v,
    };
    for step in &MIGRATIONS[(from - 1) as usize..] {
        conn.batch(&step.replace("{s}", &s)).await?;
    }
    let record = format!(
        "INSERT INTO {s}.schema_version (version) VALUES ({VERSION})
         ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version"
    );
    conn.batch(&record).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["tokenstore", "ts_2", "_x", "Tokens", &"a".repeat(63)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "2x",
            "a-b",
            "a\"b",
            "a b",
            "pg_temp",
            "PG_x",
            &"a".repeat(64),
            "é",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn migrations_follow_version_one() {
        assert_eq!(MIGRATIONS.len() as i32, VERSION - 1);
    }
}
