//! Corrupt rows fail closed: a typed error, never a wrong record, never a panic,
//! and the row stays for an operator to inspect.
//!
//! (A NaN cannot reach a REAL column: SQLite stores a bound NaN as NULL, which a
//! NOT NULL column refuses. Infinities and text can, and are tested here.)

use crate::common::{Env, full_client, full_code, full_session, full_state};
use futures_lite::future::block_on;
use std::sync::Arc;
use tokenstore_core::{StoreError, TokenStore};
use tokenstore_sqlite::SqliteTokenStore;

/// A store holding one full record of each kind (sessions 1 and 2, client c1).
fn filled() -> (Env, SqliteTokenStore) {
    let env = Env::new();
    let store = env.open();
    block_on(async {
        store.store_state(full_state(&env, "st")).await?;
        store.store_auth_code(full_code(&env, "code")).await?;
        store.store_session(Arc::new(full_session(&env, 1))).await?;
        store.store_session(Arc::new(full_session(&env, 2))).await?;
        store.store_client(full_client(&env, "c1")).await
    })
    .expect("filled");
    (env, store)
}

fn tamper(env: &Env, sql: &str) {
    let changed = env.raw().execute(sql, []).expect("tamper");
    assert!(changed > 0, "{sql} changed nothing");
}

fn corrupt(table: &'static str, column: &'static str) -> Option<StoreError> {
    Some(StoreError::Corrupt { table, column })
}

fn rows(env: &Env, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    env.raw().query_row(&sql, [], |r| r.get(0)).expect("count")
}

/// Every lookup of session 1 fails with `expected`, and so does `contents`.
fn session_1_fails(store: &SqliteTokenStore, expected: Option<StoreError>) {
    block_on(async {
        let by_token = store.load_session_by_token("access-1").await.err();
        assert_eq!(by_token, expected);
        assert_eq!(store.load_session_by_id("session-1").await.err(), expected);
        let by_refresh = store.load_session_by_refresh_token("refresh-1").await.err();
        assert_eq!(by_refresh, expected);
        assert_eq!(store.contents().await.err(), expected);
        assert!(store.load_session_by_token("access-2").await.is_ok());
    });
}

#[test]
fn bad_user_info_json_fails_closed() {
    for bad in [
        "not json",
        r#"{"provider":"p","user_id":"u","username":"n","extra":true}"#,
        r#"{"provider":"p","user_id":"u"}"#,
        r#"{"provider":"p","user_id":"u","username":"n","capabilities":"admin"}"#,
    ] {
        let (env, store) = filled();
        let bad = bad.replace('\'', "''");
        tamper(
            &env,
            &format!("UPDATE sessions SET user_info = '{bad}' WHERE session_id = 'session-1'"),
        );
        session_1_fails(&store, corrupt("sessions", "user_info"));
        assert_eq!(rows(&env, "sessions"), 2);
    }
}

#[test]
fn bad_ciphertext_fails_closed() {
    let (env, store) = filled();
    tamper(
        &env,
        "UPDATE sessions SET refresh_token_encrypted = 'gAAAAABnot-a-token' WHERE session_id = 'session-1'",
    );
    let expected = StoreError::Decrypt {
        table: "sessions",
        column: "refresh_token_encrypted",
    };
    session_1_fails(&store, Some(expected));
}

#[test]
fn a_token_under_another_tokens_hash_fails_closed() {
    let (env, store) = filled();
    tamper(
        &env,
        "UPDATE sessions SET access_token_encrypted = \
        (SELECT access_token_encrypted FROM sessions WHERE session_id = 'session-2') \
        WHERE session_id = 'session-1'",
    );
    session_1_fails(&store, corrupt("sessions", "access_token_hash"));
}

#[test]
fn bad_times_fail_closed() {
    for bad in ["'soon'", "9e999", "-9e999", "X'00'"] {
        let (env, store) = filled();
        tamper(
            &env,
            &format!(
                "UPDATE sessions SET access_expires_at = {bad} WHERE session_id = 'session-1'"
            ),
        );
        session_1_fails(&store, corrupt("sessions", "access_expires_at"));
        tamper(&env, &format!("UPDATE states SET expires_at = {bad}"));
        let consumed = block_on(store.consume_state("st")).err();
        assert_eq!(consumed, corrupt("states", "expires_at"), "{bad}");
        assert_eq!(
            rows(&env, "states"),
            1,
            "a failed consume must change nothing"
        );
    }
}

#[test]
fn bad_lists_fail_closed() {
    let (env, store) = filled();
    tamper(
        &env,
        "UPDATE states SET provider_scopes_requested = '{\"a\": 1}'",
    );
    tamper(&env, "UPDATE auth_codes SET mxcp_scopes = '[1, 2]'");
    block_on(async {
        let consumed = store.consume_state("st").await.err();
        assert_eq!(consumed, corrupt("states", "provider_scopes_requested"));
        let loaded = store.load_auth_code("code").await.err();
        assert_eq!(loaded, corrupt("auth_codes", "mxcp_scopes"));
    });
    assert_eq!(rows(&env, "states"), 1);
}

#[test]
fn wrong_storage_classes_fail_closed() {
    let (env, store) = filled();
    tamper(&env, "UPDATE auth_codes SET session_id = X'73657373696f6e'");
    tamper(
        &env,
        "UPDATE sessions SET provider = X'ff' WHERE session_id = 'session-1'",
    );
    block_on(async {
        let loaded = store.load_auth_code("code").await.err();
        assert_eq!(loaded, corrupt("auth_codes", "session_id"));
        let tried = store.try_delete_auth_code("code").await;
        assert!(tried.is_ok(), "try_delete reads only expires_at");
    });
    session_1_fails(&store, corrupt("sessions", "provider"));
}

#[test]
fn a_bad_client_row_fails_the_whole_list() {
    let (env, store) = filled();
    block_on(store.store_client(full_client(&env, "c2"))).expect("second client");
    tamper(
        &env,
        "UPDATE oauth_clients SET token_endpoint_auth_method = 'magic' WHERE client_id = 'c1'",
    );
    let method = corrupt("oauth_clients", "token_endpoint_auth_method");
    block_on(async {
        assert_eq!(store.load_client("c1").await.err(), method);
        assert_eq!(store.list_clients().await.err(), method);
        assert!(store.load_client("c2").await.expect("good row").is_some());
    });
    tamper(
        &env,
        "UPDATE oauth_clients SET redirect_uris = 'nope', token_endpoint_auth_method = NULL WHERE client_id = 'c1'",
    );
    let uris = corrupt("oauth_clients", "redirect_uris");
    assert_eq!(block_on(store.list_clients()).err(), uris);
}

#[test]
fn cleanup_leaves_rows_with_a_corrupt_expiry() {
    let (env, store) = filled();
    tamper(&env, "UPDATE states SET expires_at = 'yesterday'");
    env.clock
        .advance(std::time::Duration::from_secs(10 * 86_400));
    let counts = block_on(store.cleanup_expired()).expect("cleanup");
    assert_eq!(
        (counts.states, counts.auth_codes, counts.sessions),
        (0, 1, 2)
    );
    assert_eq!(rows(&env, "states"), 1);
}
