//! A sharded cache (the default: [`ShardPlan`] splits it into 16 machines,
//! each behind its own lock): a lookup and its fill go to the shard of the key
//! looked up, a session write to every shard, so a session cached in several
//! shards (one per key it was looked up by) is evicted from all of them.

use super::CacheFixture;
use crate::compare::assert_session_eq;
use crate::sample::full_session;
use crate::{Factory, Runtime, T0};
use std::collections::BTreeSet;
use tokenstore::cache::{CacheConfig, CacheKey, ShardPlan};
use tokenstore_core::{SessionKey, StoredSession, TokenHash, TokenStore};

fn plan() -> ShardPlan {
    ShardPlan::new(&super::config())
}

fn shard_of(key: SessionKey) -> usize {
    plan().of_key(&CacheKey::Session(key))
}

/// The shards of a session's access token, id and refresh token.
fn shards_of(access: &str, id: &str, refresh: &str) -> [usize; 3] {
    [
        shard_of(SessionKey::Access(TokenHash::of(access))),
        shard_of(SessionKey::Id(id.to_owned())),
        shard_of(SessionKey::Refresh(TokenHash::of(refresh))),
    ]
}

/// A session id whose shard is (`same`) or is not the shard of `access`.
fn id_in_shard_of(access: &str, same: bool) -> String {
    let target = shard_of(SessionKey::Access(TokenHash::of(access)));
    (0..10_000)
        .map(|i| format!("sess-{i}"))
        .find(|id| (shard_of(SessionKey::Id(id.clone())) == target) == same)
        .expect("16 shards: one id in 10,000 lands where asked")
}

/// The suite's configuration is the default's 16 shards, and they add up to
/// its capacities.
pub async fn default_config_is_sharded<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    assert_eq!(fx.store.shards(), 16);
    assert_eq!(plan().count(), 16);
    let total: usize = plan().configs().iter().map(|c| c.session_capacity).sum();
    assert_eq!(total, CacheConfig::default().session_capacity);
    let unsharded = CacheFixture::<F>::unsharded().await;
    assert_eq!(unsharded.store.shards(), 1);
}

/// Each of a session's keys is filled in its own shard: the first lookup by
/// a key whose shard has not seen the session asks the delegate; after that
/// every key is a hit.
pub async fn each_key_fills_its_own_shard<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let id = id_in_shard_of("at-1", false);
    let s = full_session(&id, "at-1", "rt-1", T0);
    fx.put(&s).await;
    let distinct: BTreeSet<usize> = shards_of("at-1", &id, "rt-1").into_iter().collect();

    assert_session_eq(&fx.by_token("at-1").await.expect("by token"), &s);
    assert_session_eq(&fx.by_id(&id).await.expect("by id"), &s);
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("by refresh"), &s);
    // One delegate read per shard the session's keys live in (the refresh
    // token may share a shard with one of the others).
    assert_eq!(fx.calls().session_loads(), distinct.len() as u64);
    for _ in 0..3 {
        fx.by_token("at-1").await.expect("hit");
        fx.by_id(&id).await.expect("hit");
        fx.by_refresh("rt-1").await.expect("hit");
    }
    assert_eq!(fx.calls().session_loads(), distinct.len() as u64);
    let m = fx.metrics();
    assert_eq!(m.sessions.hits, 9 + 3 - distinct.len() as u64);
    assert_eq!(m.session_entries, distinct.len());
}

/// Within one shard a fill still serves every key it holds.
pub async fn a_fill_serves_the_keys_in_its_shard<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let id = id_in_shard_of("at-1", true);
    let s = full_session(&id, "at-1", "rt-1", T0);
    fx.put(&s).await;
    assert_session_eq(&fx.by_token("at-1").await.expect("by token"), &s);
    assert_session_eq(&fx.by_id(&id).await.expect("by id"), &s);
    assert_eq!(fx.calls().session_loads(), 1, "the id is in the same shard");
}

/// Fills `s` into every shard its keys live in.
async fn cached_everywhere<F: Factory>(fx: &CacheFixture<F>, s: &StoredSession) {
    fx.put(s).await;
    let refresh = s.refresh_token.as_ref().expect("a refresh token").expose();
    for _ in 0..2 {
        fx.by_token(s.access_token.expose())
            .await
            .expect("by token");
        fx.by_id(&s.session_id).await.expect("by id");
        fx.by_refresh(refresh).await.expect("by refresh");
    }
}

/// A delete by any one key evicts the session from every shard that holds it,
/// whichever key it was filled by.
pub async fn writes_by_any_key_evict_every_shard<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let id = id_in_shard_of("at-1", false);
    let s = full_session(&id, "at-1", "rt-1", T0);
    cached_everywhere(&fx, &s).await;
    fx.store
        .delete_session_by_token("at-1")
        .await
        .expect("delete");
    assert!(
        fx.by_id(&id).await.is_none(),
        "by id, filled in its own shard"
    );
    assert!(fx.by_refresh("rt-1").await.is_none());
    assert!(fx.by_token("at-1").await.is_none());

    let id2 = id_in_shard_of("at-2", false);
    let s2 = full_session(&id2, "at-2", "rt-2", T0);
    cached_everywhere(&fx, &s2).await;
    fx.store.delete_session_by_id(&id2).await.expect("delete");
    assert!(
        fx.by_token("at-2").await.is_none(),
        "by token, in another shard"
    );
    assert!(fx.by_refresh("rt-2").await.is_none());
    assert_eq!(fx.metrics().session_entries, 0);
}

/// A rotation through the cache (same id, new tokens) leaves no shard serving
/// the old access or refresh token, and the new ones are served.
pub async fn rotation_leaves_no_shard_serving_old_tokens<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let id = id_in_shard_of("at-1", false);
    let old = full_session(&id, "at-1", "rt-1", T0);
    cached_everywhere(&fx, &old).await;
    let new = full_session(&id, "at-2", "rt-2", T0);
    fx.put(&new).await;
    assert!(fx.by_token("at-1").await.is_none());
    assert!(fx.by_refresh("rt-1").await.is_none());
    assert_session_eq(&fx.by_id(&id).await.expect("by id"), &new);
    assert_session_eq(&fx.by_token("at-2").await.expect("new token"), &new);
    assert_session_eq(&fx.by_refresh("rt-2").await.expect("new refresh"), &new);
}
