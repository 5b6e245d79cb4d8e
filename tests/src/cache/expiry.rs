//! Entry lifetimes: an entry is served until `min(record expiry, fill time +
//! ttl_cap) - skew` and not from that instant on; after that the delegate is
//! asked again, and an expired record is never served.

use super::{CacheFixture, SKEW, TTL_CAP, config};
use crate::compare::{assert_client_eq, assert_code_eq, assert_session_eq};
use crate::probe::CountingStore;
use crate::sample::{DAY, HOUR, MICRO, MINUTE, SECOND, code, full_client, session};
use crate::{Factory, Runtime, T0};
use std::sync::Arc;
use std::time::Duration;
use tokenstore::CachingTokenStore;
use tokenstore::cache::CacheConfig;
use tokenstore_core::{
    Clock, ManualClock, SessionVisibility, StateRecord, StoredSession, Timestamp, TokenStore,
};

/// By access token and by id: a hit one microsecond before `access expiry -
/// skew`, the delegate at that instant (it still answers with the live
/// session, which is not cached again), and nothing after the expiry.
pub async fn session_served_until_access_expiry_minus_skew<F: Factory, R: Runtime>() {
    // One shard: one fill serves every key of the session.
    let fx = CacheFixture::<F>::unsharded().await;
    let expiry = T0 + 2 * MINUTE;
    let s = session("sess-1", "at-1", None, expiry, None, T0);
    fx.put(&s).await;
    assert!(fx.by_token("at-1").await.is_some());
    let deadline = expiry - SKEW;

    fx.set_time(deadline - MICRO);
    let before = fx.calls();
    assert_session_eq(&fx.by_token("at-1").await.expect("hit"), &s);
    assert_session_eq(&fx.by_id("sess-1").await.expect("hit"), &s);
    assert_eq!(fx.calls(), before, "served from the cache");
    assert_eq!(fx.metrics().sessions.hits, 2);

    fx.set_time(deadline);
    assert_session_eq(&fx.by_token("at-1").await.expect("still live"), &s);
    assert_eq!(fx.calls().load_session_by_token, 2, "the delegate is asked");
    assert_eq!(fx.metrics().sessions.expirations, 1);
    assert_session_eq(&fx.by_id("sess-1").await.expect("still live"), &s);
    assert_eq!(fx.calls().load_session_by_id, 1, "not cached again");
    let m = fx.metrics();
    assert_eq!((m.sessions.fills, m.session_entries), (1, 0));

    fx.set_time(expiry + MICRO);
    assert!(fx.by_token("at-1").await.is_none());
    assert!(fx.by_id("sess-1").await.is_none());
    assert_eq!(fx.calls().load_session_by_token, 3);
}

/// By refresh token the refresh expiry counts: the entry is served by refresh
/// token after the access token expired, until `refresh expiry - skew`.
pub async fn session_served_until_refresh_expiry_minus_skew<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let (access_expiry, refresh_expiry) = (T0 + MINUTE, T0 + 3 * MINUTE);
    let s = session(
        "sess-1",
        "at-1",
        Some("rt-1"),
        access_expiry,
        Some(refresh_expiry),
        T0,
    );
    fx.put(&s).await;
    assert!(fx.by_refresh("rt-1").await.is_some());
    let deadline = refresh_expiry - SKEW;

    fx.set_time(deadline - MICRO);
    let before = fx.calls();
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("hit"), &s);
    assert_eq!(fx.calls(), before);

    fx.set_time(deadline);
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("still live"), &s);
    assert_eq!(fx.calls().load_session_by_refresh_token, 2);

    fx.set_time(refresh_expiry + MICRO);
    assert!(fx.by_refresh("rt-1").await.is_none());
    assert!(
        fx.contents().await.sessions.is_empty(),
        "both expired: deleted"
    );
}

/// An entry filled through the refresh token is not served by access token
/// or id once the access token expired; the refresh token still finds it.
pub async fn access_expired_not_served_by_token_or_id<F: Factory, R: Runtime>() {
    // One shard: one fill serves every key of the session.
    let fx = CacheFixture::<F>::unsharded().await;
    let access_expiry = T0 + MINUTE;
    let s = session(
        "sess-1",
        "at-1",
        Some("rt-1"),
        access_expiry,
        Some(T0 + DAY),
        T0,
    );
    fx.put(&s).await;
    assert!(fx.by_refresh("rt-1").await.is_some());
    fx.set_time(access_expiry - SKEW - MICRO);
    let before = fx.calls();
    assert!(fx.by_token("at-1").await.is_some(), "hit");
    assert_eq!(fx.calls(), before);

    fx.set_time(access_expiry + MICRO);
    assert!(fx.by_token("at-1").await.is_none());
    assert!(fx.by_id("sess-1").await.is_none());
    assert_session_eq(&fx.by_refresh("rt-1").await.expect("by refresh"), &s);
    assert_eq!(
        fx.contents().await.sessions.len(),
        1,
        "kept: refresh is live"
    );
}

/// The cap: a session that expires in an hour is served until `fill time +
/// ttl_cap - skew`, then asked of the delegate and cached again.
pub async fn ttl_cap_bounds_session_lifetime<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = session("sess-1", "at-1", None, T0 + HOUR, None, T0);
    fx.put(&s).await;
    let filled_at = T0 + 7 * SECOND;
    fx.set_time(filled_at);
    assert!(fx.by_token("at-1").await.is_some());
    let deadline = filled_at + TTL_CAP - SKEW;

    fx.set_time(deadline - MICRO);
    assert!(fx.by_token("at-1").await.is_some());
    assert_eq!(fx.calls().load_session_by_token, 1);

    fx.set_time(deadline);
    assert_session_eq(&fx.by_token("at-1").await.expect("live"), &s);
    assert_eq!(fx.calls().load_session_by_token, 2);
    let m = fx.metrics().sessions;
    assert_eq!((m.expirations, m.fills), (1, 2), "refilled");
    assert!(fx.by_token("at-1").await.is_some());
    assert_eq!(fx.calls().load_session_by_token, 2, "the refill is served");
}

/// Clients never expire, so only the cap bounds their entries.
pub async fn ttl_cap_bounds_client_lifetime<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let record = full_client("client-1", T0);
    fx.store
        .store_client(Arc::new(record.clone()))
        .await
        .unwrap();
    assert!(fx.client("client-1").await.is_some());
    fx.set_time(T0 + TTL_CAP - SKEW - MICRO);
    assert_client_eq(&fx.client("client-1").await.expect("hit"), &record);
    assert_eq!(fx.calls().load_client, 1);
    fx.set_time(T0 + TTL_CAP - SKEW);
    assert_client_eq(&fx.client("client-1").await.expect("refill"), &record);
    assert_eq!(fx.calls().load_client, 2);
    assert_eq!(fx.metrics().clients.expirations, 1);
}

/// Codes: a hit before `expiry - skew`, the delegate from then on, nothing
/// after the expiry.
pub async fn auth_code_served_until_expiry_minus_skew<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let expiry = T0 + MINUTE;
    let record = code("code-1", "sess-1", expiry, T0);
    fx.store
        .store_auth_code(Arc::new(record.clone()))
        .await
        .unwrap();
    assert!(fx.code("code-1").await.is_some());

    fx.set_time(expiry - SKEW - MICRO);
    assert_code_eq(&fx.code("code-1").await.expect("hit"), &record);
    assert_eq!(fx.calls().load_auth_code, 1);

    fx.set_time(expiry - SKEW);
    assert_code_eq(&fx.code("code-1").await.expect("live"), &record);
    assert_eq!(fx.calls().load_auth_code, 2);
    assert_eq!(fx.metrics().auth_codes.expirations, 1);

    fx.set_time(expiry + MICRO);
    assert!(fx.code("code-1").await.is_none());
    assert!(fx.contents().await.auth_codes.is_empty(), "removed on read");
}

/// A record already inside its skew window is not cached: every read asks
/// the delegate.
pub async fn record_inside_skew_window_not_cached<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let expiry = T0 + SKEW - MICRO;
    fx.put(&session("sess-1", "at-1", None, expiry, None, T0))
        .await;
    let record = code("code-1", "sess-1", expiry, T0);
    fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    for round in 1..=3 {
        assert!(fx.by_token("at-1").await.is_some());
        assert!(fx.code("code-1").await.is_some());
        let calls = fx.calls();
        assert_eq!(
            (calls.load_session_by_token, calls.load_auth_code),
            (round, round)
        );
    }
    let m = fx.metrics();
    assert_eq!((m.sessions.fills, m.auth_codes.fills), (0, 0));
    assert_eq!((m.session_entries, m.auth_code_entries), (0, 0));
}

/// One session of the sweep: `(id, access token, refresh token, access ttl
/// in seconds, refresh ttl in seconds)`.
type SweepSession = (
    &'static str,
    &'static str,
    Option<&'static str>,
    u64,
    Option<u64>,
);

/// A clock that reads like the fixture's but says it may lag by `resolution`
/// (as the coarse system clock does).
#[derive(Debug, Clone)]
struct LaggingClock {
    clock: ManualClock,
    resolution: Duration,
}

impl Clock for LaggingClock {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn resolution(&self) -> Duration {
        self.resolution
    }
}

/// The cache adds its clock's resolution to the skew: with a clock that may
/// lag by 2 s, an entry is served until `expiry - skew - 2 s`, whatever the
/// configuration said.
pub async fn clock_resolution_widens_skew<F: Factory, R: Runtime>() {
    let clock = ManualClock::new(T0);
    let (backend, _guard) = F::make(clock.clone()).await;
    let resolution = 2 * SECOND;
    let lagging = LaggingClock {
        clock: clock.clone(),
        resolution,
    };
    let config = CacheConfig {
        clock_resolution: Duration::ZERO,
        ..config()
    };
    let store = CachingTokenStore::with_clock(CountingStore::new(backend), config, lagging);
    let expiry = T0 + MINUTE;
    let s = session("sess-1", "at-1", None, expiry, None, T0);
    store.store_session(Arc::new(s)).await.unwrap();
    assert!(store.load_session_by_token("at-1").await.unwrap().is_some());
    let deadline = expiry - SKEW - resolution;
    clock.set(deadline - MICRO);
    assert!(store.load_session_by_token("at-1").await.unwrap().is_some());
    assert_eq!(store.inner().calls().load_session_by_token, 1, "a hit");
    clock.set(deadline);
    assert!(store.load_session_by_token("at-1").await.unwrap().is_some());
    assert_eq!(store.inner().calls().load_session_by_token, 2, "expired");
    drop(store);
}

/// States are never cached: an expired state is never returned through the
/// cache, a live one exactly once, and each call reaches the delegate.
pub async fn expired_state_never_served<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let expiry = T0 + MINUTE;
    for key in ["state-late", "state-on-time"] {
        let record = StateRecord::new(key, expiry, T0);
        fx.store.store_state(Arc::new(record)).await.unwrap();
    }
    fx.set_time(expiry);
    let on_time = fx.store.consume_state("state-on-time").await.unwrap();
    assert_eq!(on_time.expect("live at its expiry").expires_at, expiry);
    fx.set_time(expiry + MICRO);
    assert!(
        fx.store
            .consume_state("state-late")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        fx.store
            .consume_state("state-on-time")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(fx.calls().consume_state, 3);
    assert!(fx.contents().await.states.is_empty());
}

/// Sessions with every mix of expiries, for [`never_serves_expired_records`].
const SWEEP: [SweepSession; 5] = [
    ("sess-a", "at-a", None, 30, None),
    ("sess-b", "at-b", Some("rt-b"), 40, Some(90)),
    ("sess-c", "at-c", Some("rt-c"), 100, Some(60)),
    ("sess-d", "at-d", Some("rt-d"), 70, None),
    ("sess-e", "at-e", Some("rt-e"), 200, Some(200)),
];

/// A one-second sweep over four minutes: at every step, every key of every
/// session and code is loaded through the cache, and the answer is exactly
/// what the contract says at that instant (in particular, nothing expired is
/// ever served), while most answers come from the cache.
pub async fn never_serves_expired_records<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let secs = |n: u64| Duration::from_secs(n);
    let sessions: Vec<StoredSession> = SWEEP
        .iter()
        .map(|&(id, at, rt, access, refresh)| {
            session(
                id,
                at,
                rt,
                T0 + secs(access),
                refresh.map(|r| T0 + secs(r)),
                T0,
            )
        })
        .collect();
    for s in &sessions {
        fx.put(s).await;
    }
    let codes: Vec<_> = [20, 45, 150]
        .iter()
        .map(|&ttl| code(&format!("code-{ttl}"), "sess-a", T0 + secs(ttl), T0))
        .collect();
    for c in &codes {
        fx.store.store_auth_code(Arc::new(c.clone())).await.unwrap();
    }
    for step in 0..=240 {
        fx.set_time(T0 + secs(step));
        let now = fx.now();
        for s in &sessions {
            check_session::<F>(&fx, s, now).await;
        }
        for c in &codes {
            let live = c.expires_at >= now;
            assert_eq!(fx.code(&c.code).await.is_some(), live, "step {step}");
        }
    }
    let m = fx.metrics();
    assert!(m.sessions.hits > m.sessions.misses, "{m:?}");
    assert!(m.auth_codes.hits > m.auth_codes.misses, "{m:?}");
}

/// Loads `s` by every key and checks each answer against mxcp's rules at `now`.
async fn check_session<F: Factory>(fx: &CacheFixture<F>, s: &StoredSession, now: Timestamp) {
    let by_access = s.visibility_by_access(now) == SessionVisibility::Live;
    let token = s.access_token.expose();
    assert_eq!(fx.by_token(token).await.is_some(), by_access);
    assert_eq!(fx.by_id(&s.session_id).await.is_some(), by_access);
    if let Some(refresh) = &s.refresh_token {
        let by_refresh = s.visibility_by_refresh(now) == SessionVisibility::Live;
        let found = fx.by_refresh(refresh.expose()).await;
        assert_eq!(found.is_some(), by_refresh, "by refresh at {now:?}");
    }
}
