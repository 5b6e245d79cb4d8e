//! The optional bulk capability: a bulk call leaves the store exactly as the
//! loop of single calls in the same order would.
//!
//! These bodies run only on stacks that advertise the capability
//! (`contract_suite!` without `without bulk`), and fail if it is missing;
//! stacks without it get [`not_advertised`] instead.

use super::{MIXED_AGE, MIXED_REMOVED, by_id, by_refresh, by_token, put, seed_mixed};
use crate::compare::{assert_contents_eq, assert_session_eq, session_ids};
use crate::sample::{DAY, HOUR, full_session, live_session, session};
use crate::{Factory, Fixture, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::{
    InvalidInput, Secret, StoreError, StoredSession, Timestamp, TokenHash, TokenStore,
};

const ADVERTISED: &str = "this stack advertises the bulk capability";

/// For stacks without the capability: `bulk()` says so, and the stack is still
/// a whole store (a write and a read go through).
pub async fn not_advertised<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    assert!(
        fx.store.bulk().is_none(),
        "the stack was declared without bulk"
    );
    put(&fx, &live_session("sess-nb", "at-nb", None, T0)).await;
    assert_eq!(
        by_token(&fx, "at-nb")
            .await
            .map(|s| s.session_id.clone())
            .as_deref(),
        Some("sess-nb")
    );
}

/// Sessions already stored before a batch, in both twin stores.
fn existing() -> Vec<StoredSession> {
    vec![
        full_session("sess-e1", "at-e1", "rt-e1", T0),
        full_session("sess-e2", "at-e2", "rt-e2", T0),
        live_session("sess-e3", "at-e3", None, T0),
        live_session("sess-e4", "at-e4", Some("rt-e4"), T0),
    ]
}

/// A batch whose later sessions replace earlier ones (in the batch and
/// already stored) through every shared key.
fn replacing_batch() -> Vec<StoredSession> {
    let mut issued_none = live_session("sess-b6", "at-b6", None, T0);
    issued_none.issued_at = None;
    vec![
        full_session("sess-b1", "at-b1", "rt-b1", T0),
        full_session("sess-b2", "at-b2", "rt-b2", T0),
        // Same id as b1: replaces it.
        full_session("sess-b1", "at-b3", "rt-b3", T0),
        // Same refresh token as b2: replaces it.
        live_session("sess-b4", "at-b4", Some("rt-b2"), T0),
        // Same access token as the b1 rotation: replaces it.
        live_session("sess-b5", "at-b3", None, T0),
        issued_none,
        // Shares its id with e1 and its refresh token with e2: replaces both.
        full_session("sess-e1", "at-b7", "rt-e2", T0),
        // Same access token as e3.
        live_session("sess-b8", "at-e3", Some("rt-b8"), T0),
        // Stored twice in a row: the second copy wins.
        session("sess-b9", "at-b9", None, T0 + HOUR, None, T0),
        session("sess-b9", "at-b9", None, T0 + 2 * HOUR, None, T0),
    ]
}

/// Two fresh fixtures holding the same `existing()` sessions.
async fn twins<F: Factory>() -> (Fixture<F>, Fixture<F>) {
    let (a, b) = (Fixture::<F>::new().await, Fixture::<F>::new().await);
    for s in existing() {
        put(&a, &s).await;
        put(&b, &s).await;
    }
    (a, b)
}

fn arcs(sessions: Vec<StoredSession>) -> Vec<Arc<StoredSession>> {
    sessions.into_iter().map(Arc::new).collect()
}

/// A bulk store ends in the same contents as the loop of single stores, with
/// every replacement inside the batch and against stored sessions applied.
pub async fn store_matches_single_calls<F: Factory, R: Runtime>() {
    let (bulk_fx, loop_fx) = twins::<F>().await;
    let bulk = bulk_fx.store.bulk().expect(ADVERTISED);
    bulk.bulk_store_sessions(arcs(replacing_batch()))
        .await
        .unwrap();
    for s in replacing_batch() {
        put(&loop_fx, &s).await;
    }
    let got = bulk_fx.contents().await;
    assert_contents_eq(&got, &loop_fx.contents().await);
    let expected = [
        "sess-b4", "sess-b5", "sess-b6", "sess-b8", "sess-b9", "sess-e1", "sess-e4",
    ];
    assert_eq!(session_ids(&got), expected);
    let b9 = by_id(&bulk_fx, "sess-b9").await.expect("b9");
    assert_eq!(b9.access_expires_at, Some(T0 + 2 * HOUR));
}

/// Sessions from a bulk store load by every key, normalized.
pub async fn stored_sessions_load_by_every_key<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let bulk = fx.store.bulk().expect(ADVERTISED);
    let mut batch: Vec<StoredSession> = (0..20)
        .map(|i| {
            full_session(
                &format!("sess-{i}"),
                &format!("at-{i}"),
                &format!("rt-{i}"),
                T0,
            )
        })
        .collect();
    batch[7].issued_at = None;
    bulk.bulk_store_sessions(arcs(batch.clone())).await.unwrap();
    for (i, s) in batch.iter().enumerate() {
        assert_session_eq(
            &by_token(&fx, &format!("at-{i}")).await.expect("by token"),
            s,
        );
        assert_session_eq(&by_id(&fx, &format!("sess-{i}")).await.expect("by id"), s);
        assert_session_eq(
            &by_refresh(&fx, &format!("rt-{i}"))
                .await
                .expect("by refresh"),
            s,
        );
    }
}

/// A bulk delete ends in the same contents as the loop of single deletes, and
/// counts only the sessions it deleted (not unknown, repeated or refresh hashes).
pub async fn delete_matches_single_calls<F: Factory, R: Runtime>() {
    let (bulk_fx, loop_fx) = twins::<F>().await;
    let bulk = bulk_fx.store.bulk().expect(ADVERTISED);
    let tokens = ["at-e1", "at-unknown", "rt-e2", "at-e3", "at-e1"];
    let hashes = tokens.iter().map(|t| TokenHash::of(t)).collect();
    let deleted = bulk.bulk_delete_sessions_by_hash(hashes).await.unwrap();
    for t in tokens {
        loop_fx.store.delete_session_by_token(t).await.unwrap();
    }
    assert_eq!(deleted, 2);
    let got = bulk_fx.contents().await;
    assert_contents_eq(&got, &loop_fx.contents().await);
    assert_eq!(session_ids(&got), ["sess-e2", "sess-e4"]);
    assert!(by_refresh(&bulk_fx, "rt-e1").await.is_none());
    assert!(by_id(&bulk_fx, "sess-e3").await.is_none());
}

/// A bulk delete of 100,000 hashes, nearly all unknown, deletes exactly the
/// listed sessions.
pub async fn delete_hundred_thousand_hashes<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let bulk = fx.store.bulk().expect(ADVERTISED);
    let stored: Vec<StoredSession> = (0..1000)
        .map(|i| {
            live_session(
                &format!("sess-{i}"),
                &format!("at-{i}"),
                Some(&format!("rt-{i}")),
                T0,
            )
        })
        .collect();
    bulk.bulk_store_sessions(arcs(stored)).await.unwrap();
    assert_eq!(fx.contents().await.sessions.len(), 1000);
    let mut hashes: Vec<TokenHash> = (0..99_500)
        .map(|i| TokenHash::of(&format!("unknown-{i}")))
        .collect();
    for (k, i) in (0..1000).step_by(2).enumerate() {
        hashes.insert(k * 199, TokenHash::of(&format!("at-{i}")));
    }
    assert_eq!(hashes.len(), 100_000);
    assert_eq!(
        bulk.bulk_delete_sessions_by_hash(hashes).await.unwrap(),
        500
    );
    assert_eq!(fx.contents().await.sessions.len(), 500);
    for i in [0, 1, 2, 997, 998, 999] {
        let found = by_token(&fx, &format!("at-{i}")).await.is_some();
        assert_eq!(found, i % 2 == 1, "at-{i}");
    }
}

/// `bulk_cleanup_expired` matches `cleanup_expired` on a twin store: same
/// counts, same contents.
pub async fn cleanup_matches_single_cleanup<F: Factory, R: Runtime>() {
    let (bulk_fx, loop_fx) = (Fixture::<F>::new().await, Fixture::<F>::new().await);
    let bulk = bulk_fx.store.bulk().expect(ADVERTISED);
    seed_mixed(&bulk_fx).await;
    seed_mixed(&loop_fx).await;
    bulk_fx.advance(MIXED_AGE);
    loop_fx.advance(MIXED_AGE);
    assert_eq!(bulk.bulk_cleanup_expired().await.unwrap(), MIXED_REMOVED);
    assert_eq!(
        loop_fx.store.cleanup_expired().await.unwrap(),
        MIXED_REMOVED
    );
    assert_contents_eq(&bulk_fx.contents().await, &loop_fx.contents().await);
    bulk_fx.advance(DAY * 2);
    loop_fx.advance(DAY * 2);
    let counts = bulk.bulk_cleanup_expired().await.unwrap();
    assert_eq!(counts, loop_fx.store.cleanup_expired().await.unwrap());
    assert_eq!(
        (counts.states, counts.auth_codes, counts.sessions),
        (1, 2, 3)
    );
    assert_contents_eq(&bulk_fx.contents().await, &loop_fx.contents().await);
}

/// A batch with one invalid session is refused whole: nothing changes, not
/// even the valid sessions before it.
pub async fn store_with_invalid_session_rejected_whole<F: Factory, R: Runtime>() {
    let (fx, _) = twins::<F>().await;
    let bulk = fx.store.bulk().expect(ADVERTISED);
    let before = fx.contents().await;
    let mut empty_refresh = live_session("sess-bad", "at-bad", None, T0);
    empty_refresh.refresh_token = Some(Secret::new(""));
    let mut no_expiry = live_session("sess-e2", "at-bad2", None, T0);
    no_expiry.access_expires_at = None;
    let mut nul_provider = live_session("sess-e2", "at-bad3", None, T0);
    nul_provider.provider = "git\0hub".into();
    let mut ancient = live_session("sess-e2", "at-bad4", None, T0);
    ancient.created_at = Timestamp::MIN;
    let cases = [
        (
            empty_refresh,
            InvalidInput::EmptyKey {
                field: "refresh_token",
            },
        ),
        (no_expiry, InvalidInput::MissingAccessExpiry),
        (nul_provider, InvalidInput::NulByte { field: "provider" }),
        (
            ancient,
            InvalidInput::TimeTooEarly {
                field: "created_at",
            },
        ),
    ];
    for (bad, why) in cases {
        let batch = vec![
            live_session("sess-new", "at-new", Some("rt-new"), T0),
            live_session("sess-e1", "at-e1-rotated", None, T0),
            bad,
            live_session("sess-after", "at-after", None, T0),
        ];
        let r = bulk.bulk_store_sessions(arcs(batch)).await;
        assert_eq!(r, Err(StoreError::InvalidInput(why)));
        assert_contents_eq(&fx.contents().await, &before);
    }
    assert!(by_token(&fx, "at-new").await.is_none());
    assert!(by_token(&fx, "at-e1").await.is_some());
}

/// Empty batches succeed and change nothing.
pub async fn empty_batches_change_nothing<F: Factory, R: Runtime>() {
    let (fx, _) = twins::<F>().await;
    let bulk = fx.store.bulk().expect(ADVERTISED);
    let before = fx.contents().await;
    bulk.bulk_store_sessions(Vec::new()).await.unwrap();
    assert_eq!(
        bulk.bulk_delete_sessions_by_hash(Vec::new()).await.unwrap(),
        0
    );
    assert_contents_eq(&fx.contents().await, &before);
}
