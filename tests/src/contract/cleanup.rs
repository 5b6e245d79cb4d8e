//! `cleanup_expired`: removes exactly what can never be returned again.

use super::{MIXED_AGE, MIXED_REMOVED, by_id, by_refresh, by_token, seed_mixed};
use crate::compare::{assert_contents_eq, code_keys, session_ids, state_keys};
use crate::sample::{HOUR, MINUTE, code, full_session, session, state};
use crate::{Factory, Fixture, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::{CleanupCounts, TokenStore};

/// With nothing expired, cleanup removes nothing and reports zeros.
pub async fn nothing_expired_removes_nothing<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let counts = fx.store.cleanup_expired().await.unwrap();
    assert_eq!(counts, CleanupCounts::default());
    assert_contents_eq(&fx.contents().await, &before);
}

/// Cleanup counts what it removed, per kind.
pub async fn counts_per_kind<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    fx.advance(MIXED_AGE);
    let counts = fx.store.cleanup_expired().await.unwrap();
    assert_eq!(counts, MIXED_REMOVED);
}

/// After cleanup, exactly the records that could still be returned remain,
/// and each still loads the way it did before.
pub async fn what_remains_is_loadable<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    fx.advance(MIXED_AGE);
    fx.store.cleanup_expired().await.unwrap();
    let after = fx.contents().await;
    assert_eq!(state_keys(&after), ["st-live"]);
    assert_eq!(code_keys(&after), ["code-live-1", "code-live-2"]);
    let expected = [
        "sess-forever",
        "sess-hidden",
        "sess-live",
        "sess-refresh-expired",
    ];
    assert_eq!(session_ids(&after), expected);
    assert_eq!(after.clients.len(), 1);
    assert!(fx.store.consume_state("st-live").await.unwrap().is_some());
    assert!(
        fx.store
            .load_auth_code("code-live-2")
            .await
            .unwrap()
            .is_some()
    );
    assert!(by_token(&fx, "at-live").await.is_some());
    assert!(by_id(&fx, "sess-refresh-expired").await.is_some());
    assert!(by_refresh(&fx, "rt-forever").await.is_some());
    assert!(fx.store.load_client("client-1").await.unwrap().is_some());
}

/// A session whose access token expired but whose refresh token is live
/// survives cleanup and still loads by refresh token.
pub async fn keeps_session_with_live_refresh<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", fx.now());
    put_all(&fx, &[&s]).await;
    fx.advance(2 * HOUR);
    let counts = fx.store.cleanup_expired().await.unwrap();
    assert_eq!(counts.sessions, 0);
    let got = by_refresh(&fx, "rt-1").await.expect("refresh still live");
    crate::compare::assert_session_eq(&got, &s);
}

/// Records expiring exactly now are live, so cleanup leaves them.
pub async fn boundary_keeps_records_expiring_now<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let deadline = T0 + MINUTE;
    let st = state("st-edge", deadline, T0);
    fx.store.store_state(Arc::new(st)).await.unwrap();
    let c = code("code-edge", "sess-edge", deadline, T0);
    fx.store.store_auth_code(Arc::new(c)).await.unwrap();
    let no_refresh = session("sess-edge", "at-edge", None, deadline, None, T0);
    let both = session(
        "sess-both",
        "at-both",
        Some("rt-both"),
        T0,
        Some(deadline),
        T0,
    );
    put_all(&fx, &[&no_refresh, &both]).await;
    fx.set_time(deadline);
    assert_eq!(
        fx.store.cleanup_expired().await.unwrap(),
        CleanupCounts::default()
    );
    let after = fx.contents().await;
    assert_eq!(
        (
            after.states.len(),
            after.auth_codes.len(),
            after.sessions.len()
        ),
        (1, 1, 2)
    );
    fx.set_time(deadline + crate::sample::MICRO);
    let counts = fx.store.cleanup_expired().await.unwrap();
    assert_eq!(
        counts,
        CleanupCounts {
            states: 1,
            auth_codes: 1,
            sessions: 2
        }
    );
}

/// A second cleanup at the same time removes nothing more.
pub async fn second_run_removes_nothing<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    fx.advance(MIXED_AGE);
    assert_eq!(fx.store.cleanup_expired().await.unwrap(), MIXED_REMOVED);
    let after_first = fx.contents().await;
    assert_eq!(
        fx.store.cleanup_expired().await.unwrap(),
        CleanupCounts::default()
    );
    assert_contents_eq(&fx.contents().await, &after_first);
}

/// Much later, everything with an expiry is gone; only clients and the
/// session whose refresh token never expires remain.
pub async fn far_future_removes_all_expiring<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    fx.advance(1000 * HOUR);
    let counts = fx.store.cleanup_expired().await.unwrap();
    assert_eq!(
        counts,
        CleanupCounts {
            states: 3,
            auth_codes: 3,
            sessions: 5
        }
    );
    let after = fx.contents().await;
    assert_eq!(session_ids(&after), ["sess-forever"]);
    assert!(after.states.is_empty() && after.auth_codes.is_empty());
    assert_eq!(after.clients.len(), 1);
}

async fn put_all<F: Factory>(fx: &Fixture<F>, sessions: &[&tokenstore_core::StoredSession]) {
    for s in sessions {
        super::put(fx, s).await;
    }
}
