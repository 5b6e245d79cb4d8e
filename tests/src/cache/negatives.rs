//! Negative entries: an absence is remembered for `negative_ttl`, and any
//! write through the cache that can make the key present forgets it at once.

use super::{CacheFixture, NEGATIVE_TTL};
use crate::compare::{assert_client_eq, assert_code_eq, assert_session_eq};
use crate::probe::Calls;
use crate::sample::{MICRO, full_client, full_code, full_session};
use crate::{Factory, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::TokenStore;

/// Loads an unknown key of every kind through the cache (all absent).
async fn load_every_unknown<F: Factory>(fx: &CacheFixture<F>) {
    assert!(fx.by_token("at-1").await.is_none());
    assert!(fx.by_id("sess-1").await.is_none());
    assert!(fx.by_refresh("rt-1").await.is_none());
    assert!(fx.code("code-1").await.is_none());
    assert!(fx.client("client-1").await.is_none());
}

/// The delegate's read calls, one per kind of key.
fn reads(c: &Calls) -> [u64; 5] {
    [
        c.load_session_by_token,
        c.load_session_by_id,
        c.load_session_by_refresh_token,
        c.load_auth_code,
        c.load_client,
    ]
}

/// A miss for an unknown key (of every kind) is cached: the second lookup
/// answers "absent" without the delegate.
pub async fn unknown_keys_are_cached<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    load_every_unknown(&fx).await;
    assert_eq!(reads(&fx.calls()), [1; 5]);
    load_every_unknown(&fx).await;
    assert_eq!(reads(&fx.calls()), [1; 5], "negative hits");
    let m = fx.metrics();
    assert_eq!(m.negative_entries, 5);
    assert_eq!(
        (m.sessions.negative_fills, m.sessions.negative_hits),
        (3, 3)
    );
    assert_eq!(
        (m.auth_codes.negative_fills, m.auth_codes.negative_hits),
        (1, 1)
    );
    assert_eq!((m.clients.negative_fills, m.clients.negative_hits), (1, 1));
}

/// A negative entry is served until `negative_ttl` after the miss and not
/// from then on.
pub async fn negative_entry_expires_after_negative_ttl<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    load_every_unknown(&fx).await;
    fx.set_time(T0 + NEGATIVE_TTL - MICRO);
    load_every_unknown(&fx).await;
    assert_eq!(reads(&fx.calls()), [1; 5], "still remembered");
    fx.set_time(T0 + NEGATIVE_TTL);
    load_every_unknown(&fx).await;
    assert_eq!(reads(&fx.calls()), [2; 5], "the delegate is asked again");
    let m = fx.metrics();
    let expired = m.sessions.expirations + m.auth_codes.expirations + m.clients.expirations;
    assert_eq!(expired, 5);
    assert_eq!(m.negative_entries, 5, "the new misses are cached again");
}

/// Storing a session through the cache clears the negative entries of its
/// access token, id and refresh token.
pub async fn store_session_clears_negatives<F: Factory, R: Runtime>() {
    // One shard: one fill serves every key of the session.
    let fx = CacheFixture::<F>::unsharded().await;
    load_every_unknown(&fx).await;
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&s).await;
    assert_session_eq(&fx.by_token("at-1").await.expect("by token"), &s);
    assert_eq!(fx.metrics().negative_entries, 2, "code and client remain");
    // The fill by access token serves the other keys.
    assert_session_eq(&fx.by_id("sess-1").await.expect("by id"), &s);
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("by refresh"), &s);
    assert_eq!(fx.calls().session_loads(), 4);
}

/// Storing a code or a client through the cache clears its negative entry.
pub async fn store_code_and_client_clear_negatives<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    load_every_unknown(&fx).await;
    let c = full_code("code-1", "sess-1", T0);
    fx.store.store_auth_code(Arc::new(c.clone())).await.unwrap();
    let client = full_client("client-1", T0);
    fx.store
        .store_client(Arc::new(client.clone()))
        .await
        .unwrap();
    assert_code_eq(&fx.code("code-1").await.expect("stored code"), &c);
    assert_client_eq(
        &fx.client("client-1").await.expect("stored client"),
        &client,
    );
    let calls = fx.calls();
    assert_eq!((calls.load_auth_code, calls.load_client), (2, 2));
    assert_eq!(fx.metrics().negative_entries, 3, "the session keys remain");
}

/// A rotation to new tokens clears the negative entries of the new tokens
/// (looked up, say, by a client that raced ahead of the refresh).
pub async fn rotation_clears_negatives_of_new_tokens<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.put(&full_session("sess-1", "at-1", "rt-1", T0)).await;
    assert!(fx.by_token("at-2").await.is_none());
    assert!(fx.by_refresh("rt-2").await.is_none());
    let rotated = full_session("sess-1", "at-2", "rt-2", T0);
    fx.put(&rotated).await;
    assert_session_eq(&fx.by_token("at-2").await.expect("new access"), &rotated);
    assert_session_eq(&fx.by_refresh("rt-2").await.expect("new refresh"), &rotated);
}
