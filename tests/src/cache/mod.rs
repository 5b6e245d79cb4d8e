//! The read cache's own suite: what [`CachingTokenStore`] adds to the contract
//! (hits, lifetimes, invalidation, staleness, races, bounds, counters).
//!
//! Each body is `pub async fn name<F: Factory, R: Runtime>()`, where `F` makes
//! the *delegate*; the body builds a [`CacheFixture`]: the cache over a
//! [`CountingStore`] (so the body sees every call that reaches the delegate)
//! over a [`GatedStore`] (so a body can hold a delegate read half way) over
//! the shared backend (so a body can also write behind the cache's back).
//! [`cache_suite!`](crate::cache_suite) turns each into a `#[test]`; the few
//! bodies of [`machine`] drive [`CacheMachine`](tokenstore::cache::CacheMachine)
//! directly and need no runtime.
//!
//! Time moves only through the fixture's [`ManualClock`], shared by the cache
//! and its delegate.

pub mod capacity;
pub mod expiry;
pub mod invalidation;
pub mod machine;
pub mod metrics;
pub mod negatives;
pub mod races;
pub mod reads;
pub mod shards;
pub mod staleness;

use crate::probe::{Calls, CountingStore, Gate, GatedStore};
use crate::{Factory, T0};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokenstore::CachingTokenStore;
use tokenstore::cache::{CacheConfig, CacheMetrics};
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, Clock, Contents, ManualClock, StoredSession, Timestamp,
    TokenStore,
};

/// The suite's longest entry lifetime: ten minutes.
pub const TTL_CAP: Duration = Duration::from_secs(600);
/// The suite's skew: five seconds.
pub const SKEW: Duration = Duration::from_secs(5);
/// The suite's negative lifetime: twenty seconds.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(20);

/// The configuration every body starts from: [`TTL_CAP`], [`SKEW`],
/// [`NEGATIVE_TTL`] (all distinct, so a boundary tells which one applied) and
/// the default capacities.
pub fn config() -> CacheConfig {
    CacheConfig {
        ttl_cap: TTL_CAP,
        skew: SKEW,
        negative_ttl: NEGATIVE_TTL,
        ..CacheConfig::default()
    }
}

/// The stack under test: the cache over the counting and gated probes over a
/// backend the test shares.
pub type Stack<S> = CachingTokenStore<CountingStore<GatedStore<Arc<S>>>>;

/// A cache over a fresh delegate from `F`, both on one [`ManualClock`] at
/// [`T0`].
pub struct CacheFixture<F: Factory> {
    /// The clock of the cache and of the backend.
    pub clock: ManualClock,
    /// The cache, shared so spawned tasks can call it.
    pub store: Arc<Stack<F::Store>>,
    /// The backend, for writes behind the cache's back.
    pub backend: Arc<F::Store>,
    // Declared last, so dropped after the stores.
    guard: F::Guard,
}

impl<F: Factory> CacheFixture<F> {
    /// A fresh stack with [`config`].
    pub async fn new() -> Self {
        Self::with_config(config()).await
    }

    /// A fresh stack with [`config`] in one shard: a session filled by any of
    /// its keys then serves all three (with several shards, only the keys in
    /// the shard it was filled in; see [`shards`]).
    pub async fn unsharded() -> Self {
        Self::with_config(CacheConfig {
            shards: 1,
            ..config()
        })
        .await
    }

    /// A fresh stack with `config`.
    pub async fn with_config(config: CacheConfig) -> Self {
        let clock = ManualClock::new(T0);
        let (backend, guard) = F::make(clock.clone()).await;
        let backend = Arc::new(backend);
        let probes = CountingStore::new(GatedStore::new(backend.clone()));
        let store = CachingTokenStore::with_clock(probes, config, clock.clone());
        Self {
            clock,
            store: Arc::new(store),
            backend,
            guard,
        }
    }

    /// The calls that reached the delegate so far.
    pub fn calls(&self) -> Calls {
        self.store.inner().calls()
    }

    /// The gate of the delegate's `load_session_by_token`.
    pub fn gate(&self) -> &Gate {
        self.store.inner().inner().gate()
    }

    /// The cache's counters.
    pub fn metrics(&self) -> CacheMetrics {
        self.store.metrics()
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Sets the clock.
    pub fn set_time(&self, t: Timestamp) {
        self.clock.set(t);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Everything the backend holds.
    pub async fn contents(&self) -> Contents {
        F::contents(&self.backend, &self.guard).await
    }

    /// Stores a copy of `session` through the cache.
    pub async fn put(&self, session: &StoredSession) {
        self.store
            .store_session(Arc::new(session.clone()))
            .await
            .expect("store_session");
    }

    /// Loads by access token through the cache.
    pub async fn by_token(&self, token: &str) -> Option<Arc<StoredSession>> {
        self.store
            .load_session_by_token(token)
            .await
            .expect("load_session_by_token")
    }

    /// Loads by session id through the cache.
    pub async fn by_id(&self, id: &str) -> Option<Arc<StoredSession>> {
        self.store
            .load_session_by_id(id)
            .await
            .expect("load_session_by_id")
    }

    /// Loads by refresh token through the cache.
    pub async fn by_refresh(&self, token: &str) -> Option<Arc<StoredSession>> {
        self.store
            .load_session_by_refresh_token(token)
            .await
            .expect("load_session_by_refresh_token")
    }

    /// Loads a code through the cache.
    pub async fn code(&self, code: &str) -> Option<Arc<AuthCodeRecord>> {
        self.store
            .load_auth_code(code)
            .await
            .expect("load_auth_code")
    }

    /// Loads a client through the cache.
    pub async fn client(&self, id: &str) -> Option<Arc<ClientRecord>> {
        self.store.load_client(id).await.expect("load_client")
    }
}

impl<F: Factory> std::fmt::Debug for CacheFixture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheFixture")
            .field("clock", &self.clock)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Waits, yielding, until `done()` holds: for a point only concurrent tasks
/// can reach (for example, "99 readers are waiting"), observed through a
/// counter rather than guessed with a sleep. Panics after a minute, so a bug
/// fails the test instead of hanging it.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting until {what}");
        std::thread::yield_now();
        smol::future::yield_now().await;
    }
}

/// Runs `future`, adding one to `parked` the first time it returns `Pending`
/// (that is, once it is parked on something: a gate, a listener, a channel).
///
/// A reader of a key another reader is filling parks on the cache's listener
/// and on nothing before it, so "every reader has parked" tells the test that
/// they all wait, whatever the counters say.
pub async fn count_parked<F: Future>(future: F, parked: Arc<AtomicUsize>) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut noted = false;
    std::future::poll_fn(move |cx| {
        let poll = future.as_mut().poll(cx);
        if poll.is_pending() && !noted {
            noted = true;
            parked.fetch_add(1, Ordering::SeqCst);
        }
        poll
    })
    .await
}
