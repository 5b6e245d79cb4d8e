//! loom model of `CachingTokenStore` following an invalidation feed: a poll
//! that reports a revocation racing a fill of the revoked record and a lookup.
#![cfg(tokenstore_loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokenstore::cache::{CacheConfig, CacheKey, PollTimer};
use tokenstore::feed::{InvalidationFeed, Invalidations, Watermark};
use tokenstore::runtime::{Runtime, Task};
use tokenstore::{
    AuthCodeRecord, BoxFuture, CachingTokenStore, CleanupCounts, ClientRecord, MemoryTokenStore,
    StateRecord, StoreError, StoredSession, TokenStore,
};
use tokenstore_loom::{block_on, clock, model, session};

/// The poller's runtime in this model: a poll's lapse timer (the task
/// `poll_feed` spawns once a poll confirmed freshness) is dropped, not run:
/// its sleep would never end under loom, and no clock steps here. Sleeps never
/// fire, as `LoomRuntime`'s.
#[derive(Debug)]
struct NoLapse;

impl Runtime for NoLapse {
    fn spawn(&self, task: Task) {
        drop(task);
    }

    fn sleep(&self, _duration: Duration) -> Task {
        Box::pin(std::future::pending())
    }
}

fn no_lapse() -> Arc<dyn Runtime> {
    Arc::new(NoLapse)
}

/// A store shared with another instance, reduced to what the race needs: the
/// session `"tok"` (username `"old"`) until the other instance revokes it.
///
/// A delegate read answers the old session if it started before the
/// revocation committed, and nothing after. The feed answers the revoked keys
/// (watermark 1) to a poll from watermark 0 that starts after the commit; the
/// first poll (`since = None`) gets watermark 0.
struct Shared {
    inner: MemoryTokenStore,
    old: Arc<StoredSession>,
    revoked: AtomicBool,
}

impl Shared {
    fn new() -> Self {
        Self {
            inner: MemoryTokenStore::new(clock()),
            old: session("sid", "tok", "old"),
            revoked: AtomicBool::new(false),
        }
    }

    /// The other instance's logout commits.
    fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
    }
}

impl InvalidationFeed for Shared {
    fn invalidations_since(
        &self,
        since: Option<Watermark>,
    ) -> BoxFuture<'_, Result<Invalidations, StoreError>> {
        let revoked = self.revoked.load(Ordering::SeqCst);
        let found = match since {
            Some(Watermark(0)) if revoked => Invalidations {
                keys: CacheKey::of_session(&self.old),
                watermark: Watermark(1),
                gap: false,
            },
            Some(w) => Invalidations {
                keys: Vec::new(),
                watermark: w,
                gap: false,
            },
            None => Invalidations {
                keys: Vec::new(),
                watermark: Watermark(u64::from(revoked)),
                gap: false,
            },
        };
        Box::pin(std::future::ready(Ok(found)))
    }
}

impl TokenStore for Shared {
    fn store_state(
        &self,
        record: Arc<StateRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.store_state(record)
    }
    fn consume_state(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<Arc<StateRecord>>, StoreError>> + Send {
        self.inner.consume_state(state)
    }
    fn store_auth_code(
        &self,
        record: Arc<AuthCodeRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.store_auth_code(record)
    }
    fn load_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<Arc<AuthCodeRecord>>, StoreError>> + Send {
        self.inner.load_auth_code(code)
    }
    fn delete_auth_code(&self, code: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete_auth_code(code)
    }
    fn try_delete_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.inner.try_delete_auth_code(code)
    }
    fn store_session(
        &self,
        record: Arc<StoredSession>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.store_session(record)
    }
    /// The old session, if the read started before the revocation committed.
    fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        let found = (access_token == "tok" && !self.revoked.load(Ordering::SeqCst))
            .then(|| self.old.clone());
        std::future::ready(Ok(found))
    }
    fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        self.inner.load_session_by_id(session_id)
    }
    fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        self.inner.load_session_by_refresh_token(refresh_token)
    }
    fn delete_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete_session_by_token(access_token)
    }
    fn delete_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete_session_by_id(session_id)
    }
    fn store_client(
        &self,
        record: Arc<ClientRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.store_client(record)
    }
    fn load_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<ClientRecord>>, StoreError>> + Send {
        self.inner.load_client(client_id)
    }
    fn list_clients(
        &self,
    ) -> impl Future<Output = Result<Vec<Arc<ClientRecord>>, StoreError>> + Send {
        self.inner.list_clients()
    }
    fn delete_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete_client(client_id)
    }
    fn cleanup_expired(&self) -> impl Future<Output = Result<CleanupCounts, StoreError>> + Send {
        self.inner.cleanup_expired()
    }
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.close()
    }
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        Some(self)
    }
}

fn username(s: Option<Arc<StoredSession>>) -> Option<String> {
    s.map(|s| s.user_info.username.clone())
}

/// B = 1 s. The clock moves once, by B / 2, before the threads start.
fn config() -> CacheConfig {
    CacheConfig {
        feed_bound: Some(Duration::from_secs(1)),
        // Two shards: every poll, hint and lapse goes to both, a session
        // write too; the session's keys live in one or the other.
        shards: 2,
        ..CacheConfig::default()
    }
}

/// One thread commits the revocation and then polls the feed (`poll_feed`),
/// which reports the revoked keys. The main thread loads the session (a miss
/// whose delegate read answers the old session if it started before the
/// commit, then a fill), and `readers - 1` more threads load it too (waiting
/// on the first one's fill: single flight). A load that started after
/// `poll_feed` returned never answers the old session; neither does a load
/// after every thread finished. loom reports any interleaving that deadlocks.
fn poll_racing_fill(readers: usize) {
    let name = format!("poll racing a fill, {readers} reader(s)");
    model(&name, move || {
        let store = Arc::new(Shared::new());
        let clock = clock();
        let cache = Arc::new(CachingTokenStore::with_clock(
            Arc::clone(&store),
            config(),
            clock.clone(),
        ));
        // The first poll confirms freshness (the cache is empty). B / 2 later
        // the next poll is due, and hits may still be served.
        let first = block_on(cache.poll_feed(&no_lapse()));
        assert!(matches!(first, PollTimer::After(_)), "{first:?}");
        clock.advance(Duration::from_millis(500));
        let polled = Arc::new(AtomicBool::new(false));

        let poller = {
            let (cache, store, polled) = (cache.clone(), store.clone(), polled.clone());
            thread::spawn(move || {
                store.revoke();
                let timer = block_on(cache.poll_feed(&no_lapse()));
                polled.store(true, Ordering::SeqCst);
                timer
            })
        };
        let read = |cache: &CachingTokenStore<Arc<Shared>>, polled: &AtomicBool| {
            let after_poll = polled.load(Ordering::SeqCst);
            let got = username(block_on(cache.load_session_by_token("tok")).unwrap());
            if after_poll {
                assert_eq!(got, None, "served the revoked session after the poll");
            }
            got
        };
        let others: Vec<_> = (1..readers)
            .map(|_| {
                let (cache, polled) = (cache.clone(), polled.clone());
                thread::spawn(move || read(&cache, &polled))
            })
            .collect();
        read(&cache, &polled);
        for other in others {
            other.join().unwrap();
        }
        let timer = poller.join().unwrap();
        assert!(matches!(timer, PollTimer::After(_)), "{timer:?}");
        assert_eq!(cache.metrics().feed.polls, 2, "the hinted poll ran");
        let last = username(block_on(cache.load_session_by_token("tok")).unwrap());
        assert_eq!(last, None, "a stale fill survived the poll");
    });
}

#[test]
fn poll_racing_fill_serves_no_revoked_session() {
    poll_racing_fill(1);
}

#[test]
fn poll_racing_fill_and_waiting_reader_serves_no_revoked_session() {
    poll_racing_fill(2);
}
