//! The file keeps mxcp 0.12.3's schema.

use crate::common::Env;
use futures_lite::future::block_on;
use rusqlite::Connection;
use std::time::Duration;
use tokenstore_core::TokenStore;
use tokenstore_sqlite::Synchronous;

/// (name, declared type, NOT NULL, primary-key position), from mxcp 0.12.3's
/// `CREATE TABLE` statements in `mxcp/sdk/auth/storage.py`.
type Column = (&'static str, &'static str, bool, i64);

const STATES: &[Column] = &[
    ("state", "TEXT", false, 1),
    ("client_id", "TEXT", false, 0),
    ("redirect_uri", "TEXT", false, 0),
    ("code_challenge", "TEXT", false, 0),
    ("code_challenge_method", "TEXT", false, 0),
    ("provider_code_verifier", "TEXT", false, 0),
    ("client_state", "TEXT", false, 0),
    ("provider_scopes_requested", "TEXT", true, 0),
    ("expires_at", "REAL", true, 0),
    ("created_at", "REAL", true, 0),
];

const AUTH_CODES: &[Column] = &[
    ("code", "TEXT", false, 1),
    ("session_id", "TEXT", true, 0),
    ("client_id", "TEXT", false, 0),
    ("redirect_uri", "TEXT", false, 0),
    ("code_challenge", "TEXT", false, 0),
    ("code_challenge_method", "TEXT", false, 0),
    ("mxcp_scopes", "TEXT", true, 0),
    ("expires_at", "REAL", true, 0),
    ("created_at", "REAL", true, 0),
];

const SESSIONS: &[Column] = &[
    ("access_token_hash", "TEXT", false, 1),
    ("access_token_encrypted", "TEXT", true, 0),
    ("refresh_token_hash", "TEXT", false, 0),
    ("refresh_token_encrypted", "TEXT", false, 0),
    ("session_id", "TEXT", true, 0),
    ("provider", "TEXT", true, 0),
    ("user_info", "TEXT", true, 0),
    ("provider_access_token", "TEXT", false, 0),
    ("provider_refresh_token", "TEXT", false, 0),
    ("provider_expires_at", "REAL", false, 0),
    ("access_expires_at", "REAL", false, 0),
    ("refresh_expires_at", "REAL", false, 0),
    ("created_at", "REAL", true, 0),
];

const OAUTH_CLIENTS: &[Column] = &[
    ("client_id", "TEXT", false, 1),
    ("client_secret", "TEXT", false, 0),
    ("token_endpoint_auth_method", "TEXT", false, 0),
    ("redirect_uris", "TEXT", true, 0),
    ("grant_types", "TEXT", true, 0),
    ("response_types", "TEXT", true, 0),
    ("scope", "TEXT", false, 0),
    ("client_name", "TEXT", false, 0),
    ("created_at", "REAL", true, 0),
];

fn table_info(conn: &Connection, table: &str) -> Vec<(String, String, bool, i64)> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .expect("pragma");
    let rows = stmt.query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(5)?)));
    rows.expect("rows")
        .collect::<Result<_, _>>()
        .expect("columns")
}

/// The columns each index of `table` covers, with whether it is unique.
fn indexes(conn: &Connection, table: &str) -> Vec<(Vec<String>, bool)> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA index_list({table})"))
        .expect("pragma");
    let list = stmt.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, bool>(2)?)));
    let list: Vec<_> = list.expect("rows").collect::<Result<_, _>>().expect("list");
    list.into_iter()
        .map(|(name, unique)| (index_columns(conn, &name), unique))
        .collect()
}

fn index_columns(conn: &Connection, index: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA index_info('{index}')"))
        .expect("pragma");
    let rows = stmt.query_map([], |r| r.get(2));
    rows.expect("rows")
        .collect::<Result<_, _>>()
        .expect("columns")
}

fn owned(columns: &[Column]) -> Vec<(String, String, bool, i64)> {
    columns
        .iter()
        .map(|(n, t, nn, pk)| ((*n).to_owned(), (*t).to_owned(), *nn, *pk))
        .collect()
}

#[test]
fn every_table_has_mxcps_columns() {
    let env = Env::new();
    block_on(env.open().close()).expect("close");
    let raw = env.raw();
    for (table, expected) in [
        ("states", STATES),
        ("auth_codes", AUTH_CODES),
        ("sessions", SESSIONS),
        ("oauth_clients", OAUTH_CLIENTS),
    ] {
        assert_eq!(table_info(&raw, table), owned(expected), "{table}");
    }
}

#[test]
fn keys_are_unique_as_in_mxcp_and_refresh_hashes_are_indexed() {
    let env = Env::new();
    block_on(env.open().close()).expect("close");
    let raw = env.raw();
    let mut sessions = indexes(&raw, "sessions");
    sessions.sort();
    let expected = vec![
        (vec!["access_token_hash".to_owned()], true),
        (vec!["refresh_token_hash".to_owned()], false),
        (vec!["session_id".to_owned()], true),
    ];
    assert_eq!(sessions, expected);
    for (table, key) in [
        ("states", "state"),
        ("auth_codes", "code"),
        ("oauth_clients", "client_id"),
    ] {
        assert_eq!(
            indexes(&raw, table),
            vec![(vec![key.to_owned()], true)],
            "{table}"
        );
    }
}

#[test]
fn the_database_is_in_wal_mode() {
    let env = Env::new();
    let _store = env.open();
    let mode: String = env
        .raw()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[test]
fn every_synchronous_level_and_a_busy_timeout_open() {
    let env = Env::new();
    for level in [
        Synchronous::Off,
        Synchronous::Normal,
        Synchronous::Full,
        Synchronous::Extra,
    ] {
        let builder = env.builder().synchronous(level);
        let store = block_on(builder.busy_timeout(Duration::from_millis(250)).open());
        block_on(store.expect("open").close()).expect("close");
    }
}

#[test]
fn a_file_mxcp_created_opens_and_gains_the_index() {
    let env = Env::new();
    let schema_without_index = include_str!("mxcp_schema.sql");
    env.raw()
        .execute_batch(schema_without_index)
        .expect("mxcp schema");
    block_on(env.open().close()).expect("open and close");
    let sessions = indexes(&env.raw(), "sessions");
    assert!(sessions.contains(&(vec!["refresh_token_hash".to_owned()], false)));
}

#[test]
fn opening_creates_missing_directories() {
    let env = Env::new();
    let path = env.dir.path().join("a/b/tokens.sqlite");
    let store = block_on(tokenstore_sqlite::SqliteTokenStore::builder(&path).open());
    block_on(store.expect("open").close()).expect("close");
    assert!(path.exists());
}

#[test]
fn the_invalidation_log_leaves_mxcps_tables_as_they_are() {
    let (plain, logged) = (Env::new(), Env::new());
    block_on(plain.open().close()).expect("close");
    let store = block_on(logged.builder().invalidation_log(true).open()).expect("open");
    block_on(store.close()).expect("close");
    let (plain, logged) = (plain.raw(), logged.raw());
    for table in ["states", "auth_codes", "sessions", "oauth_clients"] {
        assert_eq!(
            table_info(&logged, table),
            table_info(&plain, table),
            "{table}"
        );
        let (mut want, mut got) = (indexes(&plain, table), indexes(&logged, table));
        want.sort();
        got.sort();
        assert_eq!(got, want, "{table}");
    }
}
