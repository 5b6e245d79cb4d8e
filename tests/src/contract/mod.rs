//! The contract's test bodies, one module per family.
//!
//! Each body is `pub async fn name<F: Factory, R: Runtime>()`: it builds its
//! own [`Fixture`], moves time only through the fixture's
//! [`ManualClock`](tokenstore_core::ManualClock), and panics on the first
//! broken rule. [`contract_suite!`](crate::contract_suite) turns each into a
//! `#[test]`.

pub mod auth_codes;
pub mod bad_input;
pub mod bulk;
pub mod cleanup;
pub mod clients;
pub mod concurrency;
pub mod model;
pub mod secrets;
pub mod sessions;
pub mod states;

use crate::{Factory, Fixture};
use std::sync::Arc;
use tokenstore_core::{StoredSession, TokenStore};

/// Stores a copy of `session`, panicking on error.
pub(crate) async fn put<F: Factory>(fx: &Fixture<F>, session: &StoredSession) {
    fx.store
        .store_session(Arc::new(session.clone()))
        .await
        .expect("store_session");
}

/// Loads by access token, panicking on error.
pub(crate) async fn by_token<F: Factory>(
    fx: &Fixture<F>,
    token: &str,
) -> Option<Arc<StoredSession>> {
    fx.store
        .load_session_by_token(token)
        .await
        .expect("load_session_by_token")
}

/// Loads by session id, panicking on error.
pub(crate) async fn by_id<F: Factory>(fx: &Fixture<F>, id: &str) -> Option<Arc<StoredSession>> {
    fx.store
        .load_session_by_id(id)
        .await
        .expect("load_session_by_id")
}

/// Loads by refresh token, panicking on error.
pub(crate) async fn by_refresh<F: Factory>(
    fx: &Fixture<F>,
    token: &str,
) -> Option<Arc<StoredSession>> {
    fx.store
        .load_session_by_refresh_token(token)
        .await
        .expect("load_session_by_refresh_token")
}

/// How long after [`T0`](crate::T0) [`seed_mixed`]'s records are in the mix of
/// states its docs describe.
pub(crate) const MIXED_AGE: std::time::Duration = std::time::Duration::from_secs(100 * 60);

/// What `cleanup_expired` removes from [`seed_mixed`]'s records at `T0 + MIXED_AGE`.
pub(crate) const MIXED_REMOVED: tokenstore_core::CleanupCounts = tokenstore_core::CleanupCounts {
    states: 2,
    auth_codes: 1,
    sessions: 2,
};

/// Stores, at `T0`, records that at `T0 + MIXED_AGE` (100 minutes) are:
///
/// - states: `st-exp-1`, `st-exp-2` expired; `st-live` live;
/// - codes: `code-exp` expired; `code-live-1`, `code-live-2` live;
/// - sessions (access token `at-<suffix>`, refresh token `rt-<suffix>` for id
///   `sess-<suffix>`): `sess-dead-norefresh` (access expired, no refresh) and
///   `sess-dead-both` (both expired) dead; `sess-hidden` (access expired,
///   refresh live) and `sess-forever` (access expired, refresh without expiry)
///   reachable by refresh token only; `sess-live` live; `sess-refresh-expired`
///   (refresh expired, access live) reachable by access token and id only;
/// - one client, `client-1`.
pub(crate) async fn seed_mixed<F: Factory>(fx: &Fixture<F>) {
    use crate::T0;
    use crate::sample::{DAY, HOUR, MINUTE, code, full_client, session, state};
    for (key, ttl) in [
        ("st-exp-1", 10 * MINUTE),
        ("st-exp-2", 30 * MINUTE),
        ("st-live", 2 * HOUR),
    ] {
        fx.store
            .store_state(Arc::new(state(key, T0 + ttl, T0)))
            .await
            .unwrap();
    }
    for (key, ttl) in [
        ("code-exp", 5 * MINUTE),
        ("code-live-1", 2 * HOUR),
        ("code-live-2", 2 * HOUR),
    ] {
        let record = code(key, "sess-live", T0 + ttl, T0);
        fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    }
    let sessions = [
        ("dead-norefresh", HOUR, None),
        ("dead-both", HOUR, Some(Some(90 * MINUTE))),
        ("hidden", HOUR, Some(Some(DAY))),
        ("forever", HOUR, Some(None)),
        ("live", 2 * HOUR, Some(Some(DAY))),
        ("refresh-expired", 3 * HOUR, Some(Some(30 * MINUTE))),
    ];
    for (suffix, access_ttl, refresh) in sessions {
        let refresh_token = format!("rt-{suffix}");
        let s = session(
            &format!("sess-{suffix}"),
            &format!("at-{suffix}"),
            refresh.map(|_| refresh_token.as_str()),
            T0 + access_ttl,
            refresh.flatten().map(|ttl| T0 + ttl),
            T0,
        );
        put(fx, &s).await;
    }
    fx.store
        .store_client(Arc::new(full_client("client-1", T0)))
        .await
        .unwrap();
}
