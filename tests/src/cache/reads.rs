//! Read-through: a miss asks the delegate once and fills the cache; the next
//! read of the same key is a hit that reaches no delegate at all.

use super::CacheFixture;
use crate::compare::{assert_client_eq, assert_code_eq, assert_session_eq};
use crate::sample::{full_client, full_code, full_session, full_state};
use crate::{Cached, Factory, Fixture, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::{StoreError, TokenStore};

/// A stored session with every field, stored through the cache.
async fn stored<F: Factory>(fx: &CacheFixture<F>) -> tokenstore_core::StoredSession {
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&s).await;
    s
}

/// By access token: the first load misses and asks the delegate once, the
/// second is a hit and asks nothing.
pub async fn session_by_token_miss_then_hit<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = stored(&fx).await;
    let before = fx.calls();
    assert_eq!(before.load_session_by_token, 0);
    assert_session_eq(&fx.by_token("at-1").await.expect("first load"), &s);
    assert_eq!(fx.calls().load_session_by_token, 1);
    let m = fx.metrics().sessions;
    assert_eq!((m.lookups, m.misses, m.hits, m.fills), (1, 1, 0, 1));
    let after_miss = fx.calls();
    assert_session_eq(&fx.by_token("at-1").await.expect("second load"), &s);
    assert_eq!(fx.calls(), after_miss, "a hit reaches no delegate method");
    let m = fx.metrics().sessions;
    assert_eq!((m.lookups, m.misses, m.hits, m.fills), (2, 1, 1, 1));
    assert_eq!(fx.metrics().session_entries, 1);
}

/// By session id: miss once, then hit.
pub async fn session_by_id_miss_then_hit<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = stored(&fx).await;
    assert_session_eq(&fx.by_id("sess-1").await.expect("first load"), &s);
    assert_eq!(fx.calls().load_session_by_id, 1);
    let after_miss = fx.calls();
    assert_session_eq(&fx.by_id("sess-1").await.expect("second load"), &s);
    assert_eq!(fx.calls(), after_miss);
    let m = fx.metrics().sessions;
    assert_eq!((m.lookups, m.misses, m.hits, m.fills), (2, 1, 1, 1));
}

/// By refresh token: miss once, then hit.
pub async fn session_by_refresh_miss_then_hit<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = stored(&fx).await;
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("first load"), &s);
    assert_eq!(fx.calls().load_session_by_refresh_token, 1);
    let after_miss = fx.calls();
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("second load"), &s);
    assert_eq!(fx.calls(), after_miss);
    let m = fx.metrics().sessions;
    assert_eq!((m.lookups, m.misses, m.hits, m.fills), (2, 1, 1, 1));
}

/// One fill (by access token) serves the session by id and by refresh token
/// too: one entry, three keys.
pub async fn one_fill_serves_every_key<F: Factory, R: Runtime>() {
    // One shard: one fill serves every key of the session.
    let fx = CacheFixture::<F>::unsharded().await;
    let s = stored(&fx).await;
    assert!(fx.by_token("at-1").await.is_some());
    let after_miss = fx.calls();
    assert_session_eq(&fx.by_id("sess-1").await.expect("by id"), &s);
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("by refresh"), &s);
    assert_eq!(fx.calls(), after_miss);
    assert_eq!(after_miss.session_loads(), 1);
    let m = fx.metrics().sessions;
    assert_eq!((m.lookups, m.misses, m.hits, m.fills), (3, 1, 2, 1));
    assert_eq!(fx.metrics().session_entries, 1);
}

/// `load_auth_code`: miss once, then hit; the code stays in the delegate
/// (loading does not consume it).
pub async fn auth_code_miss_then_hit<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let record = full_code("code-1", "sess-1", T0);
    fx.store
        .store_auth_code(Arc::new(record.clone()))
        .await
        .unwrap();
    assert_code_eq(&fx.code("code-1").await.expect("first load"), &record);
    assert_eq!(fx.calls().load_auth_code, 1);
    let after_miss = fx.calls();
    assert_code_eq(&fx.code("code-1").await.expect("second load"), &record);
    assert_eq!(fx.calls(), after_miss);
    let m = fx.metrics().auth_codes;
    assert_eq!((m.lookups, m.misses, m.hits, m.fills), (2, 1, 1, 1));
    assert_eq!(fx.metrics().auth_code_entries, 1);
    assert_eq!(fx.contents().await.auth_codes.len(), 1);
}

/// `load_client`: miss once, then hit.
pub async fn client_miss_then_hit<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let record = full_client("client-1", T0);
    fx.store
        .store_client(Arc::new(record.clone()))
        .await
        .unwrap();
    assert_client_eq(&fx.client("client-1").await.expect("first load"), &record);
    assert_eq!(fx.calls().load_client, 1);
    let after_miss = fx.calls();
    assert_client_eq(&fx.client("client-1").await.expect("second load"), &record);
    assert_eq!(fx.calls(), after_miss);
    let m = fx.metrics().clients;
    assert_eq!((m.lookups, m.misses, m.hits, m.fills), (2, 1, 1, 1));
    assert_eq!(fx.metrics().client_entries, 1);
}

/// What the cache does not cache reaches the delegate every time: listing
/// clients, cleanup, storing states.
pub async fn uncached_calls_pass_through<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.store
        .store_client(Arc::new(full_client("client-1", T0)))
        .await
        .unwrap();
    assert!(fx.client("client-1").await.is_some());
    for round in 1..=3 {
        let listed = fx.store.list_clients().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(fx.store.cleanup_expired().await.unwrap().sessions, 0);
        let state = full_state(&format!("state-{round}"), T0);
        fx.store.store_state(Arc::new(state)).await.unwrap();
        let calls = fx.calls();
        assert_eq!(
            (calls.list_clients, calls.cleanup_expired, calls.store_state),
            (round, round, round)
        );
    }
    assert_eq!(fx.contents().await.states.len(), 3);
}

/// The configuration the contract suite runs the cache with does cache:
/// a second load through [`Cached`] is a hit.
pub async fn contract_config_caches<F: Factory, R: Runtime>() {
    let fx = Fixture::<Cached<F>>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    fx.store.store_session(Arc::new(s.clone())).await.unwrap();
    for _ in 0..3 {
        let found = fx.store.load_session_by_token("at-1").await.unwrap();
        assert_session_eq(&found.expect("live"), &s);
    }
    assert!(fx.store.load_client("nobody").await.unwrap().is_none());
    assert!(fx.store.load_client("nobody").await.unwrap().is_none());
    let m = fx.store.metrics();
    assert_eq!((m.sessions.misses, m.sessions.hits), (1, 2));
    assert_eq!((m.clients.misses, m.clients.negative_hits), (1, 1));
}

/// A failed delegate call is not cached, positively or negatively, and does
/// not leave its key claimed: every read asks the delegate again and gets the
/// error.
pub async fn delegate_errors_are_not_cached<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.put(&full_session("sess-1", "at-1", "rt-1", T0)).await;
    fx.backend.close().await.unwrap();
    for round in 1..=3 {
        let err = fx.store.load_session_by_token("at-1").await.unwrap_err();
        assert_eq!(err, StoreError::Closed);
        assert!(fx.store.load_client("client-1").await.is_err());
        let calls = fx.calls();
        assert_eq!(
            (calls.load_session_by_token, calls.load_client),
            (round, round)
        );
    }
    let m = fx.metrics();
    assert_eq!((m.sessions.misses, m.sessions.waits), (3, 0));
    assert_eq!(m.sessions.fills + m.sessions.negative_fills, 0);
    assert_eq!((m.session_entries, m.negative_entries), (0, 0));
}
