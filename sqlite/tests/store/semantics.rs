//! The contract's semantics on SQLite, record by record.

use crate::common::{Env, full_client, full_code, full_session, full_state};
use futures_lite::future::block_on;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::{
    ClientRecord, InvalidInput, Secret, StoreError, StoredSession, TokenHash, TokenStore,
};
use tokenstore_sqlite::SqliteTokenStore;

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

#[test]
fn every_record_round_trips_field_for_field() {
    let env = Env::new();
    let store = env.open();
    let mut session = full_session(&env, 1);
    session.issued_at = Some(env.later(5));
    block_on(async {
        store.store_state(full_state(&env, "st")).await?;
        store.store_auth_code(full_code(&env, "code")).await?;
        store.store_session(Arc::new(session.clone())).await?;
        store.store_client(full_client(&env, "c1")).await?;
        assert_eq!(
            store.consume_state("st").await?,
            Some(full_state(&env, "st"))
        );
        assert_eq!(
            store.load_auth_code("code").await?,
            Some(full_code(&env, "code"))
        );
        let expected = Some(Arc::new(session.normalized()));
        assert_eq!(store.load_session_by_token("access-1").await?, expected);
        assert_eq!(store.load_session_by_id("session-1").await?, expected);
        assert_eq!(
            store.load_session_by_refresh_token("refresh-1").await?,
            expected
        );
        assert_eq!(
            store.load_client("c1").await?,
            Some(full_client(&env, "c1"))
        );
        Ok::<_, StoreError>(())
    })
    .expect("round trip");
}

#[test]
fn data_survives_close_and_reopen() {
    let env = Env::new();
    let store = env.open();
    let before = block_on(async {
        store.store_state(full_state(&env, "st")).await?;
        store.store_auth_code(full_code(&env, "code")).await?;
        store.store_session(Arc::new(full_session(&env, 1))).await?;
        store.store_client(full_client(&env, "c1")).await?;
        let contents = store.contents().await?;
        store.close().await?;
        Ok::<_, StoreError>(contents)
    })
    .expect("stored");
    assert_eq!(before.sessions.len(), 1);
    let reopened = env.open();
    assert_eq!(block_on(reopened.contents()), Ok(before));
}

#[test]
fn states_are_one_time_and_expired_ones_are_removed() {
    let env = Env::new();
    let store = env.open();
    block_on(async {
        store.store_state(full_state(&env, "a")).await?;
        store.store_state(full_state(&env, "b")).await?;
        assert!(store.consume_state("a").await?.is_some());
        assert!(store.consume_state("a").await?.is_none());
        env.clock.advance(hours(1));
        assert!(store.consume_state("b").await?.is_none());
        assert!(store.contents().await?.states.is_empty());
        Ok::<_, StoreError>(())
    })
    .expect("states");
}

#[test]
fn auth_codes_load_without_consuming_and_delete_once() {
    let env = Env::new();
    let store = env.open();
    block_on(async {
        store.store_auth_code(full_code(&env, "c")).await?;
        assert!(store.load_auth_code("c").await?.is_some());
        assert!(store.load_auth_code("c").await?.is_some());
        assert!(store.try_delete_auth_code("c").await?);
        assert!(!store.try_delete_auth_code("c").await?);
        store.store_auth_code(full_code(&env, "late")).await?;
        store.store_auth_code(full_code(&env, "gone")).await?;
        env.clock.advance(hours(1));
        assert!(!store.try_delete_auth_code("late").await?, "expired");
        assert!(store.load_auth_code("gone").await?.is_none());
        assert!(store.contents().await?.auth_codes.is_empty());
        Ok::<_, StoreError>(())
    })
    .expect("codes");
}

#[test]
fn concurrent_try_delete_succeeds_exactly_once() {
    let env = Env::new();
    let store = Arc::new(env.open());
    block_on(store.store_auth_code(full_code(&env, "c"))).expect("stored");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || block_on(store.try_delete_auth_code("c")))
        })
        .collect();
    let wins = threads
        .into_iter()
        .map(|t| t.join().expect("thread").expect("try_delete"))
        .filter(|won| *won)
        .count();
    assert_eq!(wins, 1);
}

/// A session `n` with its own id and access token but the given refresh token.
fn with_refresh(env: &Env, n: u32, refresh: &str) -> Arc<StoredSession> {
    let mut s = full_session(env, n);
    s.refresh_token = Some(Secret::new(refresh));
    Arc::new(s)
}

#[test]
fn storing_a_session_replaces_every_session_sharing_a_key() {
    let env = Env::new();
    let store = env.open();
    block_on(async {
        store.store_session(with_refresh(&env, 1, "shared")).await?;
        // Rotation: a new access token, a new id, the same refresh token.
        store.store_session(with_refresh(&env, 2, "shared")).await?;
        assert!(store.load_session_by_token("access-1").await?.is_none());
        let by_refresh = store.load_session_by_refresh_token("shared").await?;
        assert_eq!(
            by_refresh.map(|s| s.session_id.clone()).as_deref(),
            Some("session-2")
        );
        // Same id, new tokens.
        let mut same_id = full_session(&env, 3);
        same_id.session_id = "session-2".into();
        store.store_session(Arc::new(same_id)).await?;
        assert!(
            store
                .load_session_by_refresh_token("shared")
                .await?
                .is_none()
        );
        let sessions = store.contents().await?.sessions;
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].access_token.expose(), "access-3");
        Ok::<_, StoreError>(())
    })
    .expect("rotation");
}

#[test]
fn session_expiry_follows_mxcp() {
    let env = Env::new();
    let store = env.open();
    block_on(async {
        store.store_session(Arc::new(full_session(&env, 1))).await?;
        let mut no_refresh = full_session(&env, 2);
        no_refresh.refresh_token = None;
        store.store_session(Arc::new(no_refresh)).await?;
        env.clock.advance(hours(2)); // access expired, refresh live
        assert!(store.load_session_by_token("access-1").await?.is_none());
        assert!(store.load_session_by_id("session-1").await?.is_none());
        assert!(
            store
                .load_session_by_refresh_token("refresh-1")
                .await?
                .is_some()
        );
        assert!(store.load_session_by_token("access-2").await?.is_none());
        assert_eq!(
            store.contents().await?.sessions.len(),
            1,
            "session 2 is dead"
        );
        env.clock.advance(hours(48)); // both expired
        assert!(
            store
                .load_session_by_refresh_token("refresh-1")
                .await?
                .is_none()
        );
        assert!(store.contents().await?.sessions.is_empty());
        Ok::<_, StoreError>(())
    })
    .expect("expiry");
}

#[test]
fn cleanup_removes_exactly_what_cannot_be_returned_again() {
    let env = Env::new();
    let store = env.open();
    let mut forever = full_session(&env, 1);
    forever.refresh_expires_at = None; // mxcp's cleanup would delete it; the contract keeps it
    let mut lapsed = full_session(&env, 2);
    lapsed.refresh_token = None; // dead once the access token expires
    block_on(async {
        store.store_session(Arc::new(forever)).await?;
        store.store_session(Arc::new(lapsed)).await?;
        store.store_session(Arc::new(full_session(&env, 3))).await?;
        store.store_state(full_state(&env, "st")).await?;
        env.clock.advance(hours(2));
        let counts = store.cleanup_expired().await?;
        assert_eq!(
            (counts.states, counts.auth_codes, counts.sessions),
            (1, 0, 1)
        );
        assert!(
            store
                .load_session_by_refresh_token("refresh-1")
                .await?
                .is_some()
        );
        assert!(
            store
                .load_session_by_refresh_token("refresh-3")
                .await?
                .is_some()
        );
        Ok::<_, StoreError>(())
    })
    .expect("cleanup");
}

#[test]
fn deletes_and_client_listing() {
    let env = Env::new();
    let store = env.open();
    block_on(async {
        for id in ["zeta", "alpha", "mid"] {
            store
                .store_client(Arc::new(ClientRecord::new(id, env.now())))
                .await?;
        }
        let ids: Vec<_> = store
            .list_clients()
            .await?
            .iter()
            .map(|c| c.client_id.clone())
            .collect();
        assert_eq!(ids, ["alpha", "mid", "zeta"]);
        store.delete_client("mid").await?;
        assert!(store.load_client("mid").await?.is_none());
        store.store_session(Arc::new(full_session(&env, 1))).await?;
        store.store_session(Arc::new(full_session(&env, 2))).await?;
        store.delete_session_by_token("access-1").await?;
        store.delete_session_by_id("session-2").await?;
        store.store_auth_code(full_code(&env, "c")).await?;
        store.delete_auth_code("c").await?;
        let contents = store.contents().await?;
        assert!(contents.sessions.is_empty() && contents.auth_codes.is_empty());
        Ok::<_, StoreError>(())
    })
    .expect("deletes");
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let env = Env::new();
    let store = env.open();
    let mut no_expiry = full_session(&env, 1);
    no_expiry.access_expires_at = None;
    let long = "x".repeat(tokenstore_core::MAX_KEY_BYTES + 1);
    block_on(async {
        let err = store.store_session(Arc::new(no_expiry.clone())).await;
        assert_eq!(err, Err(InvalidInput::MissingAccessExpiry.into()));
        let bulk = store.bulk().expect("bulk");
        let batch = vec![Arc::new(full_session(&env, 2)), Arc::new(no_expiry)];
        assert!(bulk.bulk_store_sessions(batch).await.is_err());
        assert!(matches!(
            store.load_session_by_token("").await,
            Err(StoreError::InvalidInput(_))
        ));
        assert!(matches!(
            store.consume_state(&long).await,
            Err(StoreError::InvalidInput(_))
        ));
        assert_eq!(store.contents().await?, Default::default());
        Ok::<_, StoreError>(())
    })
    .expect("bad input");
}

/// Every operation, with its outcome reduced to `Result<(), StoreError>`.
fn every_operation(env: &Env, store: &SqliteTokenStore) -> Vec<Result<(), StoreError>> {
    let bulk = store.bulk().expect("bulk");
    block_on(async {
        vec![
            store.store_state(full_state(env, "s")).await,
            store.consume_state("s").await.map(drop),
            store.store_auth_code(full_code(env, "c")).await,
            store.load_auth_code("c").await.map(drop),
            store.delete_auth_code("c").await,
            store.try_delete_auth_code("c").await.map(drop),
            store.store_session(Arc::new(full_session(env, 1))).await,
            store.load_session_by_token("access-1").await.map(drop),
            store.load_session_by_id("session-1").await.map(drop),
            store
                .load_session_by_refresh_token("refresh-1")
                .await
                .map(drop),
            store.delete_session_by_token("access-1").await,
            store.delete_session_by_id("session-1").await,
            store.store_client(full_client(env, "c1")).await,
            store.load_client("c1").await.map(drop),
            store.list_clients().await.map(drop),
            store.delete_client("c1").await,
            store.cleanup_expired().await.map(drop),
            store.contents().await.map(drop),
            bulk.bulk_store_sessions(vec![]).await,
            bulk.bulk_delete_sessions_by_hash(vec![TokenHash::of("x")])
                .await
                .map(drop),
            bulk.bulk_cleanup_expired().await.map(drop),
        ]
    })
}

#[test]
fn after_close_every_operation_is_closed() {
    let env = Env::new();
    let store = env.open();
    assert!(every_operation(&env, &store).iter().all(Result::is_ok));
    block_on(store.close()).expect("close");
    block_on(store.close()).expect("close is idempotent");
    for (i, result) in every_operation(&env, &store).into_iter().enumerate() {
        assert_eq!(result, Err(StoreError::Closed), "operation {i}");
    }
    assert!(format!("{store:?}").contains("closed: true"));
}
