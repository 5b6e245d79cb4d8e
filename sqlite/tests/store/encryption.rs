//! Encryption at rest and the plaintext policy.

use crate::common::{Env, full_client, full_session, full_state, secrets_of};
use futures_lite::future::block_on;
use rusqlite::Connection;
use std::sync::Arc;
use tokenstore_core::{ClientRecord, StoreError, TokenHash, TokenStore};

const SECRET_COLUMNS: [(&str, &str); 5] = [
    ("sessions", "access_token_encrypted"),
    ("sessions", "refresh_token_encrypted"),
    ("sessions", "provider_access_token"),
    ("sessions", "provider_refresh_token"),
    ("oauth_clients", "client_secret"),
];

/// The single stored value of `table.column`.
fn raw_value(conn: &Connection, table: &str, column: &str) -> String {
    conn.query_row(&format!("SELECT {column} FROM {table}"), [], |r| r.get(0))
        .expect("one value")
}

/// Stores one full session and one full client.
fn fill(env: &Env, store: &impl TokenStore) {
    block_on(async {
        store.store_session(Arc::new(full_session(env, 1))).await?;
        store.store_client(full_client(env, "c1")).await?;
        store.store_state(full_state(env, "st")).await
    })
    .expect("filled");
}

#[test]
fn encrypted_columns_do_not_contain_the_tokens() {
    let env = Env::new();
    let store = env.open();
    fill(&env, &store);
    let raw = env.raw();
    for (table, column) in SECRET_COLUMNS {
        let stored = raw_value(&raw, table, column);
        assert!(
            stored.starts_with("gAAAAA"),
            "{table}.{column} is no Fernet token"
        );
        for secret in secrets_of(1, "c1") {
            assert!(!stored.contains(&secret), "{table}.{column} holds a token");
        }
    }
    let hash = raw_value(&raw, "sessions", "access_token_hash");
    assert_eq!(hash, TokenHash::of("access-1").to_hex());
    let found = block_on(store.load_session_by_token("access-1")).expect("load");
    assert_eq!(found.as_deref(), Some(&full_session(&env, 1)));
}

#[test]
fn the_code_verifier_stays_plain_text_as_in_mxcp() {
    let env = Env::new();
    fill(&env, &env.open());
    let stored = raw_value(&env.raw(), "states", "provider_code_verifier");
    assert_eq!(stored, "verifier-secret");
}

#[test]
fn plaintext_opt_in_stores_plain_text() {
    let env = Env::new();
    let store = block_on(env.bare().allow_plaintext_tokens(true).open()).expect("open");
    fill(&env, &store);
    let raw = env.raw();
    assert_eq!(
        raw_value(&raw, "sessions", "access_token_encrypted"),
        "access-1"
    );
    assert_eq!(
        raw_value(&raw, "oauth_clients", "client_secret"),
        "client-secret-c1"
    );
    let found = block_on(store.load_session_by_refresh_token("refresh-1")).expect("load");
    assert_eq!(found.as_deref(), Some(&full_session(&env, 1)));
}

#[test]
fn storing_secrets_without_key_or_opt_in_fails_and_changes_nothing() {
    let env = Env::new();
    let store = block_on(env.bare().open()).expect("open");
    let required = Err(StoreError::EncryptionKeyRequired);
    block_on(async {
        let session = Arc::new(full_session(&env, 1));
        assert_eq!(store.store_session(session.clone()).await, required);
        assert_eq!(store.store_client(full_client(&env, "c1")).await, required);
        let bulk = store.bulk().expect("bulk");
        assert_eq!(bulk.bulk_store_sessions(vec![session]).await, required);
        assert_eq!(store.contents().await, Ok(Default::default()));
        // Records without secrets need no key.
        let public = Arc::new(ClientRecord::new("public", env.now()));
        store.store_client(public.clone()).await?;
        store.store_state(full_state(&env, "st")).await?;
        assert_eq!(store.list_clients().await?, vec![public]);
        Ok::<_, StoreError>(())
    })
    .expect("records without secrets");
}

#[test]
fn reading_secrets_without_key_or_opt_in_is_key_required() {
    let env = Env::new();
    fill(&env, &env.open());
    let store = block_on(env.bare().open()).expect("open");
    let required = Some(StoreError::EncryptionKeyRequired);
    block_on(async {
        assert_eq!(
            store.load_session_by_token("access-1").await.err(),
            required
        );
        assert_eq!(store.load_session_by_id("session-1").await.err(), required);
        assert_eq!(store.load_client("c1").await.err(), required);
        assert_eq!(store.list_clients().await.err(), required);
        assert!(store.consume_state("st").await.expect("state").is_some());
    });
}

#[test]
fn a_wrong_key_gives_a_typed_error_never_a_record() {
    let env = Env::new();
    fill(&env, &env.open());
    let other = block_on(
        env.bare()
            .encryption_key(tokenstore_sqlite::generate_key())
            .open(),
    )
    .expect("open");
    let session_err = StoreError::Decrypt {
        table: "sessions",
        column: "access_token_encrypted",
    };
    let client_err = StoreError::Decrypt {
        table: "oauth_clients",
        column: "client_secret",
    };
    block_on(async {
        let by_token = other.load_session_by_token("access-1").await;
        assert_eq!(by_token.err(), Some(session_err.clone()));
        let by_refresh = other.load_session_by_refresh_token("refresh-1").await;
        assert_eq!(by_refresh.err(), Some(session_err.clone()));
        assert_eq!(
            other.load_client("c1").await.err(),
            Some(client_err.clone())
        );
        assert_eq!(other.list_clients().await.err(), Some(client_err));
        assert_eq!(other.contents().await.err(), Some(session_err));
    });
}

#[test]
fn plaintext_rows_do_not_pass_as_encrypted_ones() {
    let env = Env::new();
    let plain = block_on(env.bare().allow_plaintext_tokens(true).open()).expect("open");
    fill(&env, &plain);
    block_on(plain.close()).expect("close");
    let keyed = env.open();
    let err = block_on(keyed.load_session_by_token("access-1")).err();
    assert!(matches!(err, Some(StoreError::Decrypt { .. })), "{err:?}");
}

#[test]
fn an_invalid_key_is_invalid_config_and_is_not_echoed() {
    let env = Env::new();
    for bad in ["hunter2-not-a-key", "", "Zm9vYmFy"] {
        let err = block_on(env.bare().encryption_key(bad).open()).expect_err("refused");
        assert!(matches!(err, StoreError::InvalidConfig(_)), "{err:?}");
        if !bad.is_empty() {
            assert!(!format!("{err} {err:?}").contains(bad));
        }
    }
}

#[test]
fn debug_output_shows_no_secret() {
    let env = Env::new();
    let store = env.open();
    fill(&env, &store);
    let wrong = block_on(
        env.bare()
            .encryption_key(tokenstore_sqlite::generate_key())
            .open(),
    )
    .expect("open");
    let errors = [
        block_on(wrong.load_session_by_token("access-1")).err(),
        block_on(wrong.load_client("c1")).err(),
        block_on(env.bare().encryption_key("hunter2").open()).err(),
        Some(StoreError::EncryptionKeyRequired),
    ];
    let text = format!("{store:?} {:?} {errors:?}", env.builder());
    let mut needles = secrets_of(1, "c1");
    needles.extend([
        env.key.clone(),
        "hunter2".into(),
        "user-42".into(),
        "octocat".into(),
    ]);
    needles.push(TokenHash::of("access-1").to_hex());
    for needle in needles {
        assert!(!text.contains(&needle), "{needle} leaked: {text}");
    }
}
