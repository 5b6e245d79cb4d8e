//! Writes through the cache leave no stale read: a cached record, then a write
//! through the cache, then a read answers the new value (or none). One-time
//! operations are always decided by the delegate.

use super::CacheFixture;
use crate::compare::{assert_client_eq, assert_code_eq, assert_session_eq};
use crate::sample::{HOUR, full_client, full_code, full_session, full_state, live_session};
use crate::{Factory, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::{StoredSession, TokenHash, TokenStore};

/// Stores `s` and caches it (filled by access token, served by every key).
async fn cached<F: Factory>(fx: &CacheFixture<F>, s: &StoredSession) {
    fx.put(s).await;
    assert!(fx.by_token(s.access_token.expose()).await.is_some());
    assert!(fx.by_id(&s.session_id).await.is_some());
    if let Some(refresh) = &s.refresh_token {
        assert!(fx.by_refresh(refresh.expose()).await.is_some());
    }
}

/// Loads `s` by every key, expecting it absent by each.
async fn assert_gone<F: Factory>(fx: &CacheFixture<F>, s: &StoredSession) {
    let what = "a stale read after a write through the cache";
    assert!(
        fx.by_token(s.access_token.expose()).await.is_none(),
        "{what}"
    );
    assert!(fx.by_id(&s.session_id).await.is_none(), "{what}");
    if let Some(refresh) = &s.refresh_token {
        assert!(fx.by_refresh(refresh.expose()).await.is_none(), "{what}");
    }
}

/// Storing a session with the same keys and new fields: every key answers the
/// new record.
pub async fn store_replaces_cached_session<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let old = full_session("sess-1", "at-1", "rt-1", T0);
    cached(&fx, &old).await;
    let mut new = old.clone();
    new.user_info.username = "renamed".to_owned();
    new.access_expires_at = Some(T0 + 2 * HOUR);
    fx.put(&new).await;
    assert_session_eq(&fx.by_token("at-1").await.expect("by token"), &new);
    assert_session_eq(&fx.by_id("sess-1").await.expect("by id"), &new);
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("by refresh"), &new);
    assert_eq!(fx.metrics().sessions.invalidations, 2);
}

/// Token rotation through the cache: the old access and refresh tokens no
/// longer load; the id and the new tokens answer the new session.
pub async fn rotation_hides_old_tokens<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let old = full_session("sess-1", "at-1", "rt-1", T0);
    cached(&fx, &old).await;
    let new = full_session("sess-1", "at-2", "rt-2", T0);
    fx.put(&new).await;
    assert!(fx.by_token("at-1").await.is_none(), "old access token");
    assert!(fx.by_refresh("rt-1").await.is_none(), "old refresh token");
    assert_session_eq(&fx.by_id("sess-1").await.expect("by id"), &new);
    assert_session_eq(&fx.by_token("at-2").await.expect("new access"), &new);
    assert_session_eq(&fx.by_refresh("rt-2").await.expect("new refresh"), &new);
}

/// A new session sharing only the refresh token of a cached one replaces it:
/// the old one's access token and id no longer load.
pub async fn shared_refresh_token_evicts_other_session<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let old = full_session("sess-1", "at-1", "rt-1", T0);
    cached(&fx, &old).await;
    let new = live_session("sess-2", "at-2", Some("rt-1"), T0);
    fx.put(&new).await;
    assert!(fx.by_token("at-1").await.is_none());
    assert!(fx.by_id("sess-1").await.is_none());
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("shared"), &new);
}

/// `delete_session_by_token` through the cache: gone by every key.
pub async fn delete_by_token_leaves_no_stale_read<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    cached(&fx, &s).await;
    fx.store.delete_session_by_token("at-1").await.unwrap();
    assert_gone(&fx, &s).await;
    assert_eq!(fx.calls().delete_session_by_token, 1);
}

/// `delete_session_by_id` through the cache: gone by every key.
pub async fn delete_by_id_leaves_no_stale_read<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    cached(&fx, &s).await;
    fx.store.delete_session_by_id("sess-1").await.unwrap();
    assert_gone(&fx, &s).await;
    assert_eq!(fx.calls().delete_session_by_id, 1);
}

/// Bulk stores and deletes through the cache invalidate like single calls
/// (when the delegate has the bulk capability; otherwise nothing to check).
pub async fn bulk_writes_leave_no_stale_read<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let Some(bulk) = fx.store.bulk() else {
        return;
    };
    let (a, b) = (
        full_session("sess-a", "at-a", "rt-a", T0),
        full_session("sess-b", "at-b", "rt-b", T0),
    );
    cached(&fx, &a).await;
    cached(&fx, &b).await;
    let rotated = full_session("sess-a", "at-a2", "rt-a2", T0);
    bulk.bulk_store_sessions(vec![Arc::new(rotated.clone())])
        .await
        .unwrap();
    let deleted = bulk
        .bulk_delete_sessions_by_hash(vec![TokenHash::of("at-b")])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(fx.by_token("at-a").await.is_none());
    assert_session_eq(&fx.by_id("sess-a").await.expect("rotated"), &rotated);
    assert_gone(&fx, &b).await;
    let calls = fx.calls();
    assert_eq!(
        (
            calls.bulk_store_sessions,
            calls.bulk_delete_sessions_by_hash
        ),
        (1, 1)
    );
}

/// `store_auth_code` over a cached code: the new record is read.
pub async fn store_code_replaces_cached<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.store
        .store_auth_code(Arc::new(full_code("code-1", "sess-1", T0)))
        .await
        .unwrap();
    assert!(fx.code("code-1").await.is_some());
    let new = full_code("code-1", "sess-2", T0);
    fx.store
        .store_auth_code(Arc::new(new.clone()))
        .await
        .unwrap();
    assert_code_eq(&fx.code("code-1").await.expect("new code"), &new);
}

/// `delete_auth_code` over a cached code: none.
pub async fn delete_code_leaves_no_stale_read<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.store
        .store_auth_code(Arc::new(full_code("code-1", "sess-1", T0)))
        .await
        .unwrap();
    assert!(fx.code("code-1").await.is_some());
    fx.store.delete_auth_code("code-1").await.unwrap();
    assert!(fx.code("code-1").await.is_none());
    assert_eq!(fx.calls().load_auth_code, 2);
}

/// `try_delete_auth_code` on a cached code reaches the delegate every time
/// (`true` once, then `false`), and the code no longer loads.
pub async fn try_delete_code_reaches_delegate<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.store
        .store_auth_code(Arc::new(full_code("code-1", "sess-1", T0)))
        .await
        .unwrap();
    assert!(fx.code("code-1").await.is_some());
    assert!(fx.code("code-1").await.is_some(), "cached");
    assert!(fx.store.try_delete_auth_code("code-1").await.unwrap());
    assert_eq!(fx.calls().try_delete_auth_code, 1);
    assert!(!fx.store.try_delete_auth_code("code-1").await.unwrap());
    assert_eq!(fx.calls().try_delete_auth_code, 2);
    assert!(fx.code("code-1").await.is_none());
    assert_eq!(fx.calls().load_auth_code, 2);
}

/// `consume_state` reaches the delegate on every call, whatever was read
/// before: the record once, then none.
pub async fn consume_state_reaches_delegate<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.store
        .store_state(Arc::new(full_state("state-1", T0)))
        .await
        .unwrap();
    let first = fx.store.consume_state("state-1").await.unwrap();
    assert_eq!(first.expect("live").state, "state-1");
    for n in 2..=4 {
        assert!(fx.store.consume_state("state-1").await.unwrap().is_none());
        assert_eq!(fx.calls().consume_state, n);
    }
    let m = fx.metrics().states;
    assert_eq!((m.lookups, m.invalidations), (0, 5), "never looked up");
}

/// `store_client` over a cached client: the new record; `delete_client`: none.
pub async fn client_writes_leave_no_stale_read<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.store
        .store_client(Arc::new(full_client("client-1", T0)))
        .await
        .unwrap();
    assert!(fx.client("client-1").await.is_some());
    let mut new = full_client("client-1", T0);
    new.client_name = Some("renamed".to_owned());
    new.redirect_uris
        .push("https://new.example.com/cb".to_owned());
    fx.store.store_client(Arc::new(new.clone())).await.unwrap();
    assert_client_eq(&fx.client("client-1").await.expect("new client"), &new);
    fx.store.delete_client("client-1").await.unwrap();
    assert!(fx.client("client-1").await.is_none());
    assert_eq!(fx.calls().load_client, 3);
}
