//! The bulk capability: one transaction, same outcome as the loop of single calls.

use crate::common::{Env, full_session};
use futures_lite::future::block_on;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::{
    MemoryTokenStore, Secret, StoreError, StoredSession, TokenHash, TokenStore, UserInfo,
};

/// A lean session `n` (access token only, so encryption stays cheap).
fn lean(env: &Env, n: u32) -> Arc<StoredSession> {
    let user = UserInfo::new("p", format!("u{n}"), format!("n{n}"));
    let session = StoredSession::new(
        format!("s{n}"),
        user,
        format!("a{n}"),
        env.later(60),
        env.now(),
    );
    Arc::new(session)
}

/// Sessions whose ids and refresh tokens collide, so the replacement rule
/// matters: session `n` shares its id with `n - 7` and its refresh token with
/// `n - 5`.
fn colliding(env: &Env, count: u32) -> Vec<Arc<StoredSession>> {
    (0..count)
        .map(|n| {
            let mut s = full_session(env, n);
            s.session_id = format!("session-{}", n % 7);
            s.refresh_token = Some(Secret::new(format!("refresh-{}", n % 5)));
            s.access_expires_at = Some(env.later(u64::from(n % 3) * 1800));
            Arc::new(s)
        })
        .collect()
}

#[test]
fn a_bulk_store_of_10000_sessions_is_one_commit() {
    let env = Env::new();
    let store = env.open();
    let sessions: Vec<_> = (0..10_000).map(|n| lean(&env, n)).collect();
    let before = store.stats().commits;
    let bulk = store.bulk().expect("bulk");
    block_on(bulk.bulk_store_sessions(sessions)).expect("bulk store");
    assert_eq!(store.stats().commits - before, 1);
    let contents = block_on(store.contents()).expect("contents");
    assert_eq!(contents.sessions.len(), 10_000);
}

#[test]
fn a_bulk_delete_of_100000_hashes_passes_the_variable_limit() {
    let env = Env::new();
    let store = env.open();
    let bulk = store.bulk().expect("bulk");
    let sessions: Vec<_> = (0..1_000).map(|n| lean(&env, n)).collect();
    let mut hashes: Vec<_> = sessions.iter().map(|s| s.access_hash()).collect();
    block_on(bulk.bulk_store_sessions(sessions)).expect("bulk store");
    hashes.extend((0..99_000u32).map(|i| {
        let mut bytes = [0xee; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        TokenHash::from_bytes(bytes)
    }));
    hashes.extend_from_within(..10); // duplicates count once
    hashes.rotate_left(50_000);
    let before = store.stats().commits;
    let deleted = block_on(bulk.bulk_delete_sessions_by_hash(hashes)).expect("bulk delete");
    assert_eq!(deleted, 1_000);
    assert_eq!(store.stats().commits - before, 1);
    assert!(
        block_on(store.contents())
            .expect("contents")
            .sessions
            .is_empty()
    );
}

#[test]
fn bulk_calls_equal_the_loop_of_single_calls() {
    let (bulk_env, loop_env) = (Env::new(), Env::new());
    let (bulked, looped) = (bulk_env.open(), loop_env.open());
    let model = MemoryTokenStore::new(loop_env.clock.clone());
    let sessions = colliding(&loop_env, 40);
    let doomed: Vec<_> = [3u32, 17, 39, 1000]
        .iter()
        .map(|n| TokenHash::of(&format!("access-{n}")))
        .collect();
    block_on(async {
        let bulk = bulked.bulk().expect("bulk");
        bulk.bulk_store_sessions(sessions.clone()).await?;
        for s in &sessions {
            looped.store_session(s.clone()).await?;
            model.store_session(s.clone()).await?;
        }
        let deleted = bulk.bulk_delete_sessions_by_hash(doomed.clone()).await?;
        let mut one_by_one = 0;
        for h in &doomed {
            let gone = model
                .bulk()
                .expect("bulk")
                .bulk_delete_sessions_by_hash(vec![*h])
                .await?;
            looped
                .bulk()
                .expect("bulk")
                .bulk_delete_sessions_by_hash(vec![*h])
                .await?;
            one_by_one += gone;
        }
        assert_eq!(deleted, one_by_one);
        let (b, l) = (bulked.contents().await?, looped.contents().await?);
        assert_eq!(b, l);
        assert_eq!(l, model.contents());
        for env in [&bulk_env, &loop_env] {
            env.clock.advance(Duration::from_secs(5400));
        }
        let counts = bulk.bulk_cleanup_expired().await?;
        assert_eq!(counts, looped.cleanup_expired().await?);
        assert_eq!(counts, model.cleanup_expired().await?);
        assert_eq!(bulked.contents().await?, model.contents());
        Ok::<_, StoreError>(())
    })
    .expect("bulk equals loop");
}

#[test]
fn a_failing_bulk_store_changes_nothing() {
    let env = Env::new();
    let store = block_on(env.bare().open()).expect("open without key");
    let bulk = store.bulk().expect("bulk");
    let before = store.stats();
    let result = block_on(bulk.bulk_store_sessions(vec![lean(&env, 1), lean(&env, 2)]));
    assert_eq!(result, Err(StoreError::EncryptionKeyRequired));
    assert_eq!(store.stats().commits, before.commits);
    assert!(store.stats().rollbacks > before.rollbacks);
}
