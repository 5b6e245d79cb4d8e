//! The staleness bound for writes made behind the cache's back (here, on the
//! shared backend directly; in production, by another process): visible
//! through the cache after `ttl_cap - skew` at the latest for a cached record,
//! after `negative_ttl` for a cached absence, and not necessarily before.

use super::{CacheFixture, NEGATIVE_TTL, SKEW, TTL_CAP};
use crate::compare::{assert_client_eq, assert_code_eq, assert_session_eq};
use crate::sample::{DAY, MICRO, code, full_client, full_session};
use crate::{Factory, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::TokenStore;

/// A cached session deleted on the backend: still served until `ttl_cap -
/// skew` after the fill, gone from then on.
pub async fn backend_delete_seen_within_ttl_cap<F: Factory, R: Runtime>() {
    // One shard: one fill serves every key of the session.
    let fx = CacheFixture::<F>::unsharded().await;
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&s).await;
    assert!(fx.by_token("at-1").await.is_some());
    fx.backend.delete_session_by_id("sess-1").await.unwrap();
    assert!(
        fx.backend
            .load_session_by_token("at-1")
            .await
            .unwrap()
            .is_none()
    );

    fx.set_time(T0 + TTL_CAP - SKEW - MICRO);
    let stale = fx.by_token("at-1").await.expect("not necessarily seen yet");
    assert_session_eq(&stale, &s);
    assert!(fx.by_refresh("rt-1").await.is_some());
    assert_eq!(fx.calls().session_loads(), 1);

    fx.set_time(T0 + TTL_CAP - SKEW);
    assert!(
        fx.by_token("at-1").await.is_none(),
        "seen by ttl_cap - skew"
    );
    assert!(fx.by_id("sess-1").await.is_none());
    assert!(fx.by_refresh("rt-1").await.is_none());
    fx.set_time(T0 + TTL_CAP);
    assert!(fx.by_token("at-1").await.is_none(), "and at ttl_cap");
}

/// A cached session rotated on the backend: the old record until the bound,
/// then the new one by id and nothing by the old token.
pub async fn backend_rotation_seen_within_ttl_cap<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let old = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&old).await;
    assert!(fx.by_id("sess-1").await.is_some());
    let new = full_session("sess-1", "at-2", "rt-2", T0);
    fx.backend
        .store_session(Arc::new(new.clone()))
        .await
        .unwrap();

    fx.set_time(T0 + TTL_CAP - SKEW - MICRO);
    assert_session_eq(&fx.by_id("sess-1").await.expect("old"), &old);
    fx.set_time(T0 + TTL_CAP - SKEW);
    assert_session_eq(&fx.by_id("sess-1").await.expect("new"), &new);
    assert!(fx.by_token("at-1").await.is_none());
}

/// A cached absence, then the session stored on the backend: still absent
/// until `negative_ttl` after the miss, present from then on.
pub async fn backend_store_seen_after_negative_ttl<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    assert!(fx.by_token("at-1").await.is_none());
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    fx.backend.store_session(Arc::new(s.clone())).await.unwrap();

    fx.set_time(T0 + NEGATIVE_TTL - MICRO);
    assert!(
        fx.by_token("at-1").await.is_none(),
        "not necessarily seen yet"
    );
    assert_eq!(fx.calls().load_session_by_token, 1);
    fx.set_time(T0 + NEGATIVE_TTL);
    assert_session_eq(&fx.by_token("at-1").await.expect("seen"), &s);
    assert_eq!(fx.calls().load_session_by_token, 2);
}

/// Codes and clients obey the same bound: a code deleted and a client
/// replaced on the backend are seen at `ttl_cap - skew`.
pub async fn backend_code_and_client_writes_seen_within_ttl_cap<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let c = code("code-1", "sess-1", T0 + DAY, T0);
    fx.store.store_auth_code(Arc::new(c.clone())).await.unwrap();
    let old = full_client("client-1", T0);
    fx.store.store_client(Arc::new(old.clone())).await.unwrap();
    assert!(fx.code("code-1").await.is_some());
    assert!(fx.client("client-1").await.is_some());
    fx.backend.delete_auth_code("code-1").await.unwrap();
    let mut new = old.clone();
    new.client_name = Some("renamed behind the cache".to_owned());
    fx.backend
        .store_client(Arc::new(new.clone()))
        .await
        .unwrap();

    fx.set_time(T0 + TTL_CAP - SKEW - MICRO);
    assert_code_eq(&fx.code("code-1").await.expect("stale code"), &c);
    assert_client_eq(&fx.client("client-1").await.expect("stale"), &old);
    fx.set_time(T0 + TTL_CAP - SKEW);
    assert!(fx.code("code-1").await.is_none());
    assert_client_eq(&fx.client("client-1").await.expect("new"), &new);
}
