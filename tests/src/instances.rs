//! Several instances, one store: separate [`CachingTokenStore`]s that follow
//! the store's invalidation feed, each playing a replica of a server
//! (issue 12). [`revoke_and_watch`] checks the bound across them.
//!
//! Time is the system clock here (the bound is about real time): every cache
//! is built with [`SystemClock`] and the test reads the same clock, so "a read
//! that started `B` after the revoke returned" is exact.

use crate::sample::{client, code, session};
use event_listener::Event;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokenstore::CachingTokenStore;
use tokenstore::cache::CacheConfig;
use tokenstore::runtime::Runtime;
use tokenstore_core::feed::{HintBoard, InvalidationFeed, Invalidations, Watermark};
use tokenstore_core::{
    BoxFuture, Clock, Secret, StoreError, StoredSession, SystemClock, Timestamp, TokenStore,
};

/// What [`revoke_and_watch`] saw.
#[derive(Debug, Default, Clone)]
pub struct Propagation {
    /// Revocations made, each watched on every other instance.
    pub revocations: usize,
    /// (revocation, watching instance) pairs checked.
    pub checked: usize,
    /// Reads that started at least `B` after a revoke returned and still
    /// returned the old record. Must be 0.
    pub stale_serves: usize,
    /// Time from a revoke's return to the first refusal, per pair.
    pub latencies: Vec<Duration>,
}

impl Propagation {
    /// The `q`-quantile of the latencies (`q` in `0..=1`).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[i]
    }

    /// The longest latency.
    pub fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

/// The cache config the instance tests use: bound `bound`, defaults otherwise.
pub fn feed_config(bound: Duration) -> CacheConfig {
    CacheConfig {
        feed_bound: Some(bound),
        ..CacheConfig::default()
    }
}

/// `n` caches over clones of `store`, each following its feed on `runtime`.
pub fn instances<S: TokenStore + Clone + 'static>(
    store: &S,
    n: usize,
    bound: Duration,
    runtime: &(impl Runtime + Clone),
) -> Result<Vec<CachingTokenStore<S>>, StoreError> {
    follow_each((0..n).map(|_| store.clone()).collect(), bound, runtime)
}

/// One cache over each of `stores` (one store object per instance, as
/// replicas have), each following its feed on `runtime`.
pub fn follow_each<S: TokenStore + 'static>(
    stores: Vec<S>,
    bound: Duration,
    runtime: &(impl Runtime + Clone),
) -> Result<Vec<CachingTokenStore<S>>, StoreError> {
    stores
        .into_iter()
        .map(|store| {
            CachingTokenStore::following_with_clock(
                store,
                feed_config(bound),
                SystemClock,
                runtime.clone(),
            )
        })
        .collect()
}

/// The revocations [`revoke_and_watch`] makes, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoke {
    /// `delete_session_by_token`: a logout.
    Logout,
    /// `store_session` with new tokens under the same id: a refresh.
    Rotation,
    /// `delete_session_by_id`.
    DeleteById,
    /// `try_delete_auth_code`: a code exchanged.
    TakeCode,
    /// `delete_client`.
    DeleteClient,
}

const REVOKES: [Revoke; 5] = [
    Revoke::Logout,
    Revoke::Rotation,
    Revoke::DeleteById,
    Revoke::TakeCode,
    Revoke::DeleteClient,
];

fn now() -> Timestamp {
    SystemClock.now()
}

/// Whether `reader` still returns the record revoked in `round`.
async fn still_served<S: TokenStore>(
    reader: &CachingTokenStore<S>,
    revoke: Revoke,
    round: usize,
) -> Result<bool, StoreError> {
    Ok(match revoke {
        Revoke::Logout | Revoke::Rotation | Revoke::DeleteById => reader
            .load_session_by_token(&format!("access-{round}"))
            .await?
            .is_some(),
        Revoke::TakeCode => reader
            .load_auth_code(&format!("code-{round}"))
            .await?
            .is_some(),
        Revoke::DeleteClient => reader
            .load_client(&format!("client-{round}"))
            .await?
            .is_some(),
    })
}

/// Round `round` (revocation kind `round % 5`): the record is written through
/// instance `round % n`, every other instance reads it until its cache serves
/// it (a hit, so the revocation is checked against a cached entry), the writer
/// revokes it, and every other instance reads it again and again until it is
/// refused. Each read that started `bound` or more after the revoke returned
/// and still found the record is a stale serve. Every wait is bounded by
/// `deadline` per round; running past it is an error.
pub async fn revoke_and_watch<S: TokenStore>(
    instances: &[CachingTokenStore<S>],
    rounds: usize,
    bound: Duration,
    deadline: Duration,
) -> Result<Propagation, String> {
    let mut seen = Propagation::default();
    let n = instances.len();
    for round in 0..rounds {
        let revoke = REVOKES[round % REVOKES.len()];
        let writer = &instances[round % n];
        let readers: Vec<_> = (0..n).filter(|i| *i != round % n).collect();
        let expires = now() + Duration::from_secs(3600);
        let err = |e: StoreError| format!("round {round}: {e}");
        match revoke {
            Revoke::TakeCode => writer
                .store_auth_code(Arc::new(code(
                    &format!("code-{round}"),
                    "sid",
                    expires,
                    now(),
                )))
                .await
                .map_err(err)?,
            Revoke::DeleteClient => writer
                .store_client(Arc::new(client(&format!("client-{round}"), now())))
                .await
                .map_err(err)?,
            _ => writer
                .store_session(Arc::new(round_session(round, expires)))
                .await
                .map_err(err)?,
        }
        // Every reader serves it from its cache before the revocation.
        for &i in &readers {
            let started = std::time::Instant::now();
            loop {
                let before = hits(&instances[i], revoke);
                if !still_served(&instances[i], revoke, round)
                    .await
                    .map_err(err)?
                {
                    return Err(format!(
                        "round {round}: instance {i} does not see the record"
                    ));
                }
                if hits(&instances[i], revoke) > before {
                    break;
                }
                if started.elapsed() > deadline {
                    return Err(format!(
                        "round {round}: instance {i} never served from cache"
                    ));
                }
                futures_lite::future::yield_now().await;
            }
        }
        match revoke {
            Revoke::Logout => {
                writer
                    .delete_session_by_token(&format!("access-{round}"))
                    .await
            }
            Revoke::Rotation => {
                let mut next = round_session(round, expires);
                next.access_token = Secret::new(format!("access-{round}-next"));
                next.refresh_token = Some(Secret::new(format!("refresh-{round}-next")));
                writer.store_session(Arc::new(next)).await
            }
            Revoke::DeleteById => writer.delete_session_by_id(&format!("sid-{round}")).await,
            Revoke::TakeCode => writer
                .try_delete_auth_code(&format!("code-{round}"))
                .await
                .map(|_| ()),
            Revoke::DeleteClient => writer.delete_client(&format!("client-{round}")).await,
        }
        .map_err(err)?;
        let revoked_at = now();
        seen.revocations += 1;
        for &i in &readers {
            loop {
                let started = now();
                let served = still_served(&instances[i], revoke, round)
                    .await
                    .map_err(err)?;
                let waited = started.saturating_duration_since(revoked_at);
                if !served {
                    seen.latencies
                        .push(now().saturating_duration_since(revoked_at));
                    seen.checked += 1;
                    break;
                }
                if waited >= bound {
                    seen.stale_serves += 1;
                }
                if waited > deadline {
                    return Err(format!(
                        "round {round}: instance {i} still serves a {revoke:?} after {waited:?}"
                    ));
                }
                futures_lite::future::yield_now().await;
            }
        }
    }
    Ok(seen)
}

fn round_session(round: usize, expires: Timestamp) -> StoredSession {
    session(
        &format!("sid-{round}"),
        &format!("access-{round}"),
        Some(&format!("refresh-{round}")),
        expires,
        Some(expires),
        now(),
    )
}

fn hits<S: TokenStore>(cache: &CachingTokenStore<S>, revoke: Revoke) -> u64 {
    let m = cache.metrics();
    match revoke {
        Revoke::TakeCode => m.auth_codes.hits,
        Revoke::DeleteClient => m.clients.hits,
        _ => m.sessions.hits,
    }
}

/// A store whose feed can be stalled: its polls then hang until it is
/// released (an instance whose poller lags, or whose feed connection hangs).
pub struct Stallable<S> {
    inner: S,
    stalled: AtomicBool,
    released: Event,
}

impl<S> Stallable<S> {
    /// `inner`, not stalled.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            stalled: AtomicBool::new(false),
            released: Event::new(),
        }
    }

    /// Stalls (`true`) or releases the feed.
    pub fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
        if !on {
            self.released.notify(usize::MAX);
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// The body of an `impl TokenStore` that passes every call but `close` (and
/// the capabilities) to the store in field `$field`: for test wrappers that
/// change only the feed.
#[macro_export]
macro_rules! forward_calls_to {
    ($field:ident) => {
        $crate::forward_calls_to!(@calls $field;
            store_state(record: ::std::sync::Arc<::tokenstore_core::StateRecord>) -> ();
            consume_state(state: &str) -> Option<::std::sync::Arc<::tokenstore_core::StateRecord>>;
            store_auth_code(record: ::std::sync::Arc<::tokenstore_core::AuthCodeRecord>) -> ();
            load_auth_code(code: &str) -> Option<::std::sync::Arc<::tokenstore_core::AuthCodeRecord>>;
            delete_auth_code(code: &str) -> ();
            try_delete_auth_code(code: &str) -> bool;
            store_session(record: ::std::sync::Arc<::tokenstore_core::StoredSession>) -> ();
            load_session_by_token(access_token: &str) -> Option<::std::sync::Arc<::tokenstore_core::StoredSession>>;
            load_session_by_id(session_id: &str) -> Option<::std::sync::Arc<::tokenstore_core::StoredSession>>;
            load_session_by_refresh_token(refresh_token: &str) -> Option<::std::sync::Arc<::tokenstore_core::StoredSession>>;
            delete_session_by_token(access_token: &str) -> ();
            delete_session_by_id(session_id: &str) -> ();
            store_client(record: ::std::sync::Arc<::tokenstore_core::ClientRecord>) -> ();
            load_client(client_id: &str) -> Option<::std::sync::Arc<::tokenstore_core::ClientRecord>>;
            list_clients() -> Vec<::std::sync::Arc<::tokenstore_core::ClientRecord>>;
            delete_client(client_id: &str) -> ();
            cleanup_expired() -> ::tokenstore_core::CleanupCounts;
        );
    };
    (@calls $field:ident; $($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(async fn $name(&self, $($arg: $ty),*) -> Result<$out, ::tokenstore_core::StoreError> {
            ::tokenstore_core::TokenStore::$name(&self.$field, $($arg),*).await
        })*
    };
}

impl<S: TokenStore> TokenStore for Stallable<S> {
    crate::forward_calls_to!(inner);

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }

    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        Some(self)
    }
}

impl<S: TokenStore> InvalidationFeed for Stallable<S> {
    fn invalidations_since(
        &self,
        since: Option<Watermark>,
    ) -> BoxFuture<'_, Result<Invalidations, StoreError>> {
        Box::pin(async move {
            loop {
                let released = self.released.listen();
                if !self.stalled.load(Ordering::SeqCst) {
                    break;
                }
                released.await;
            }
            let feed = self
                .inner
                .invalidation_feed()
                .ok_or_else(|| StoreError::Backend("the wrapped store has no feed".into()))?;
            feed.invalidations_since(since).await
        })
    }

    fn hints(&self) -> Option<&HintBoard> {
        self.inner.invalidation_feed().and_then(|f| f.hints())
    }
}
