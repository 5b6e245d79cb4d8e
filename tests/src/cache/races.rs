//! Races through the adapter, with real concurrent tasks: the stale-fill race
//! (a read that fetched before a write must not leave its old answer in the
//! cache), single flight (concurrent misses on one key make one delegate
//! call), and a cancelled read giving its key back.
//!
//! The delegate's `load_session_by_token` is held at the fixture's gate, so
//! every interleaving here is forced, not hoped for.

use super::{CacheFixture, count_parked, wait_until};
use crate::compare::assert_session_eq;
use crate::sample::full_session;
use crate::{Factory, Runtime, T0};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenstore_core::{StoredSession, TokenStore};

/// How many readers miss on one key at once in the single-flight tests.
pub const READERS: u64 = 100;

/// A read fetched the session, then (while it is held) the session is rotated
/// through the cache: the read may answer the old session (it was
/// concurrent), but the cache refuses to keep it.
pub async fn stale_fill_after_rotation_refused<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let old = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&old).await;
    fx.gate().arm();
    let store = fx.store.clone();
    let read = R::spawn(async move { store.load_session_by_token("at-1").await.unwrap() });
    fx.gate().entered().await;
    let new = full_session("sess-1", "at-2", "rt-2", T0);
    fx.put(&new).await;
    fx.gate().open();
    let raced = read.await.expect("the read fetched before the rotation");
    assert_session_eq(&raced, &old);
    let m = fx.metrics();
    assert_eq!(m.sessions.stale_fills_refused, 1);
    assert_eq!((m.sessions.fills, m.session_entries), (0, 0));

    assert!(fx.by_token("at-1").await.is_none(), "the old token is gone");
    assert_eq!(fx.calls().load_session_by_token, 2, "asked again");
    assert!(fx.by_refresh("rt-1").await.is_none());
    assert_session_eq(&fx.by_id("sess-1").await.expect("by id"), &new);
    assert_session_eq(&fx.by_token("at-2").await.expect("new token"), &new);
}

/// The same race with a delete by id: the next read answers none.
pub async fn stale_fill_after_delete_refused<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let old = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&old).await;
    fx.gate().arm();
    let store = fx.store.clone();
    let read = R::spawn(async move { store.load_session_by_token("at-1").await.unwrap() });
    fx.gate().entered().await;
    fx.store.delete_session_by_id("sess-1").await.unwrap();
    fx.gate().open();
    assert!(read.await.is_some(), "the read fetched before the delete");
    assert_eq!(fx.metrics().sessions.stale_fills_refused, 1);
    assert!(fx.by_token("at-1").await.is_none());
    assert!(fx.by_id("sess-1").await.is_none());
    assert!(fx.by_refresh("rt-1").await.is_none());
    assert_eq!(fx.calls().session_loads(), 4);
}

/// A read that found nothing, then (while it is held) the session is stored
/// through the cache: the absence is not cached, the next read finds it.
pub async fn stale_negative_fill_after_store_refused<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    fx.gate().arm();
    let store = fx.store.clone();
    let read = R::spawn(async move { store.load_session_by_token("at-1").await.unwrap() });
    fx.gate().entered().await;
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&s).await;
    fx.gate().open();
    assert!(read.await.is_none(), "the read fetched before the store");
    let m = fx.metrics();
    assert_eq!((m.sessions.stale_fills_refused, m.negative_entries), (1, 0));
    assert_session_eq(&fx.by_token("at-1").await.expect("stored"), &s);
}

/// Spawns [`READERS`] loads of `token`, holds the first one's delegate call
/// at the gate until every other reader is parked waiting for it (each task
/// has returned `Pending` once), then releases it; returns the answers.
async fn hundred_concurrent_loads<F: Factory, R: Runtime>(
    fx: &CacheFixture<F>,
    token: &'static str,
) -> Vec<Option<Arc<StoredSession>>> {
    fx.gate().arm();
    let parked = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..READERS)
        .map(|_| {
            let store = fx.store.clone();
            let read = async move { store.load_session_by_token(token).await.unwrap() };
            R::spawn(count_parked(read, parked.clone()))
        })
        .collect();
    fx.gate().entered().await;
    wait_until("every reader is parked", || {
        parked.load(Ordering::SeqCst) == READERS as usize
    })
    .await;
    assert_eq!(fx.calls().load_session_by_token, 1, "one delegate call");
    assert_eq!(
        fx.metrics().sessions.waits,
        READERS - 1,
        "one wait per parked reader"
    );
    fx.gate().open();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await);
    }
    answers
}

/// Every lookup that did not wait answered one read:
/// `lookups - waits == hits + misses + negative_hits == reads`.
#[track_caller]
fn assert_answered_reads(m: &tokenstore::cache::KindMetrics, reads: u64) {
    assert_eq!(m.lookups, m.hits + m.misses + m.negative_hits + m.waits);
    assert_eq!(m.lookups - m.waits, reads);
}

/// 100 concurrent misses on one key: one delegate call, the 99 other readers
/// wait and then hit, and every reader gets the session.
pub async fn single_flight_hundred_misses<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&s).await;
    let answers = hundred_concurrent_loads::<F, R>(&fx, "at-1").await;
    assert_eq!(answers.len(), READERS as usize);
    for found in &answers {
        assert_session_eq(found.as_ref().expect("every reader gets it"), &s);
    }
    assert_eq!(fx.calls().load_session_by_token, 1);
    let m = fx.metrics().sessions;
    assert_eq!((m.misses, m.hits, m.fills), (1, READERS - 1, 1));
    assert_eq!(m.waits, READERS - 1, "one wait per reader: {m:?}");
    assert_answered_reads(&m, READERS);
    assert_eq!(fx.gate().unannounced(), 0, "no other call reached the gate");
}

/// 100 concurrent misses on an unknown key: one delegate call, and every
/// reader gets none from the cached absence.
pub async fn single_flight_hundred_misses_of_unknown<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let answers = hundred_concurrent_loads::<F, R>(&fx, "at-unknown").await;
    assert!(answers.iter().all(Option::is_none));
    assert_eq!(fx.calls().load_session_by_token, 1);
    let m = fx.metrics().sessions;
    assert_eq!(
        (m.misses, m.negative_hits, m.negative_fills),
        (1, READERS - 1, 1)
    );
    assert_eq!(m.waits, READERS - 1, "one wait per reader: {m:?}");
    assert_answered_reads(&m, READERS);
}

/// A read dropped while its delegate call is held gives its key back: the
/// next read of the key asks the delegate instead of waiting forever.
pub async fn cancelled_read_releases_its_key<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", T0);
    fx.put(&s).await;
    fx.gate().arm();
    let held = async {
        let _ = fx.store.load_session_by_token("at-1").await;
        unreachable!("the gate holds this read until it is dropped");
    };
    // Runs the read until it reaches the gate, then drops it.
    smol::future::or(held, fx.gate().entered()).await;
    fx.gate().open();
    let store = fx.store.clone();
    let again = R::spawn(async move { store.load_session_by_token("at-1").await.unwrap() });
    wait_until("the next read reaches the delegate", || {
        fx.calls().load_session_by_token == 2
    })
    .await;
    assert_session_eq(&again.await.expect("live"), &s);
    let m = fx.metrics().sessions;
    assert_eq!((m.misses, m.waits, m.fills), (2, 0, 1));
}
