//! [`CachingTokenStore`]: the read cache's async driver.
//!
//! Every decision (hit, miss, lifetime, invalidation, eviction, stale fill) is
//! made by [`CacheMachine`], and how the cache is split into shards (each a
//! machine behind a lock of its own) by [`ShardPlan`]; this file only takes
//! the locks the plan names, calls the delegate and reports what happened.

use crate::observe::{Layer, Observed, delegate_call};
use crate::runtime::Runtime;
use crate::sync::{Event, EventListener, Mutex};
use futures_lite::future::or;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokenstore_core::SessionKey;
use tokenstore_core::cache::{
    CacheConfig, CacheKey, CacheMachine, CacheMetrics, Cached, DEFAULT_FEED_BOUND, FillOutcome,
    FillTicket, HitView, Lapse, Lookup, PollTicket, PollTimer, Route, ShardPlan, Write, WriteKeys,
};
use tokenstore_core::feed::InvalidationFeed;
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BoxFuture, BulkSessionStore, CleanupCounts, ClientRecord,
    Clock, CoarseSystemClock, StateRecord, StoreError, StoredSession, Timestamp, TokenHash,
    TokenStore, WriteOp, validate_key,
};

/// A read cache in front of any [`TokenStore`].
///
/// Loads of sessions (by access token, id or refresh token), authorization codes
/// and clients are answered from memory when the [`CacheMachine`] holds a live
/// entry; misses ask the delegate once per key (concurrent misses wait for the
/// first: single flight) and fill the cache. Every write and one-time call goes
/// to the delegate and then evicts what it can affect.
///
/// Staleness: a write made behind the cache's back (another process, or the
/// delegate used directly) is seen after at most [`CacheConfig::ttl_cap`] (and
/// an absence after at most [`CacheConfig::negative_ttl`]); writes through the
/// cache are seen at once.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tokenstore::{CachingTokenStore, cache::CacheConfig};
/// use tokenstore::{Clock, ManualClock, MemoryTokenStore, StoredSession, Timestamp, TokenStore, UserInfo};
///
/// # futures_lite::future::block_on(async {
/// let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
/// let store = CachingTokenStore::with_clock(
///     MemoryTokenStore::new(clock.clone()),
///     CacheConfig::default(),
///     clock.clone(),
/// );
/// let session = StoredSession::new(
///     "sid", UserInfo::new("github", "42", "octocat"), "access-token",
///     clock.now() + Duration::from_secs(3600), clock.now(),
/// );
/// store.store_session(Arc::new(session)).await?;
/// store.load_session_by_token("access-token").await?; // miss: asks the delegate
/// store.load_session_by_token("access-token").await?; // hit
/// assert_eq!(store.metrics().sessions.hits, 1);
/// # Ok::<(), tokenstore::StoreError>(())
/// # }).unwrap();
/// ```
pub struct CachingTokenStore<S> {
    shared: Arc<Shared<S>>,
}

/// What the cache and its feed poller (when it follows a feed) share.
struct Shared<S> {
    inner: S,
    clock: Arc<dyn Clock>,
    plan: ShardPlan,
    /// One machine per shard of the plan, each on cache lines of its own.
    shards: Box<[Padded<Mutex<CacheMachine>>]>,
    /// Each shard's view, answering hits without its lock (read only, so on
    /// shared lines).
    views: Box<[HitView]>,
    /// The counters as last published to the facade; taken before any
    /// shard's lock when publishing, so publications never interleave.
    published: Mutex<Observed<(), CacheMetrics>>,
    /// Notified after every fill or abandon, for lookups told to wait.
    filled: Event,
    /// Set when the cache is dropped: the poller stops.
    dropped: AtomicBool,
    /// Wakes the poller (drop and close).
    wake: Event,
}

impl<S: TokenStore> CachingTokenStore<S> {
    /// Wraps `inner`, telling time with the [`CoarseSystemClock`]: a few
    /// nanoseconds a reading, with its few milliseconds of resolution added to the
    /// skew.
    pub fn new(inner: S, config: CacheConfig) -> Self {
        Self::with_clock(inner, config, CoarseSystemClock::new())
    }

    /// Wraps `inner`, telling time with `clock` (a test's or a simulation's
    /// clock, usually the delegate's).
    pub fn with_clock(inner: S, mut config: CacheConfig, clock: impl Clock + 'static) -> Self {
        config.clock_resolution = clock.resolution();
        let plan = ShardPlan::new(&config);
        let machines: Vec<CacheMachine> =
            plan.configs().into_iter().map(CacheMachine::new).collect();
        let views = machines.iter().map(CacheMachine::hit_view).collect();
        let shards = machines
            .into_iter()
            .map(|m| Padded(Mutex::new(m)))
            .collect();
        Self {
            shared: Arc::new(Shared {
                inner,
                clock: Arc::new(clock),
                plan,
                shards,
                views,
                published: Mutex::new(Observed::new(())),
                filled: Event::new(),
                dropped: AtomicBool::new(false),
                wake: Event::new(),
            }),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.shared.inner
    }

    /// The cache's counters and entry counts, over all its shards
    /// ([`CacheMetrics::combine`]).
    pub fn metrics(&self) -> CacheMetrics {
        self.shared.metrics()
    }

    /// How many shards the cache is split into ([`ShardPlan`]).
    pub fn shards(&self) -> usize {
        self.shared.shards.len()
    }

    /// Publishes the cache's counters and gauges through the [`metrics`]
    /// facade: what changed since this cache's previous publication (see
    /// [`observe`](crate::observe) for the names and the contract). The
    /// feed poller calls it after every poll and `close()` calls it; a cache
    /// without a feed publishes only here, so call it before each scrape.
    /// Costs one lock and some fifty facade calls, nothing when no recorder
    /// is installed beyond the calls themselves.
    pub fn publish_metrics(&self) {
        self.shared.publish_metrics();
    }

    /// Answers a read from the cache or, on a miss, from `fetch`, filling the
    /// cache with `fill`. `key` checks the caller's input and makes the key.
    ///
    /// The returned future does nothing until polled. A hit is answered in its
    /// first poll by plain functions that keep the key in their own frames;
    /// until then the future holds only the captured references (88 bytes for
    /// a session lookup over a memory store), and the miss path is boxed. The
    /// `async fn` this replaced held every argument and the key in a state of
    /// 264 bytes, which each call built and copied.
    fn read<T, Fut>(
        &self,
        key: impl Fn() -> Result<CacheKey, StoreError> + Send + Unpin,
        operation: &'static str,
        fetch: impl Fn() -> Fut + Send + Sync + Unpin + Copy,
        fill: FillFn<T>,
        unwrap: fn(Cached) -> Option<Arc<T>>,
    ) -> impl Future<Output = Result<Option<Arc<T>>, StoreError>> + Send
    where
        T: Send + Sync,
        Fut: Future<Output = Result<Option<Arc<T>>, StoreError>> + Send,
    {
        Read::Start(move || {
            let key = match key() {
                Ok(key) => key,
                Err(e) => return Ok(Err(e)),
            };
            match self.answer(key, unwrap) {
                Ok(answer) => Ok(answer),
                Err(pending) => Err(Box::pin(self.miss(pending, operation, fetch, fill, unwrap))),
            }
        })
    }

    /// The cache's answer to `key`, or what the miss path needs.
    fn answer<T>(
        &self,
        key: CacheKey,
        unwrap: fn(Cached) -> Option<Arc<T>>,
    ) -> Result<Result<Option<Arc<T>>, StoreError>, Pending> {
        let now = self.shared.clock.now();
        if let Some(hit) = self.shared.views[self.shared.plan.of_key(&key)].lookup(now, &key) {
            spare::give_back(key);
            return Ok(Ok(unwrap(hit)));
        }
        match self.decide(now, &key, unwrap) {
            Ok(answer) => {
                spare::give_back(key);
                Ok(answer)
            }
            Err(next) => Err(Pending { now, key, next }),
        }
    }

    /// A lookup the cache could not answer: fetch; or wait for another
    /// caller's fill and look up again, as often as that says to wait.
    async fn miss<T, Fut>(
        &self,
        pending: Pending,
        operation: &'static str,
        fetch: impl Fn() -> Fut + Send,
        fill: FillFn<T>,
        unwrap: fn(Cached) -> Option<Arc<T>>,
    ) -> Result<Option<Arc<T>>, StoreError>
    where
        T: Send + Sync,
        Fut: Future<Output = Result<Option<Arc<T>>, StoreError>> + Send,
    {
        let Pending {
            mut now,
            key,
            mut next,
        } = pending;
        loop {
            match next {
                Next::Fetch(ticket) => {
                    return self
                        .fetch_and_fill(now, ticket, operation, &fetch, fill)
                        .await;
                }
                Next::Wait(listener) => {
                    listener.await;
                    now = self.shared.clock.now();
                    match self.decide(now, &key, unwrap) {
                        Ok(answer) => return answer,
                        Err(then) => next = then,
                    }
                }
            }
        }
    }

    /// One lookup under the lock: the answer, or what to do next. On `Wait`, the
    /// listener is created under the lock: the fill waited for needs the lock to
    /// land, so its notification cannot be missed.
    fn decide<T>(
        &self,
        now: Timestamp,
        key: &CacheKey,
        unwrap: fn(Cached) -> Option<Arc<T>>,
    ) -> Result<Result<Option<Arc<T>>, StoreError>, Next> {
        let mut machine = self.shared.shard(key).lock();
        match machine.lookup(now, key) {
            Lookup::Hit(cached) => Ok(Ok(unwrap(cached))),
            Lookup::NegativeHit => Ok(Ok(None)),
            Lookup::Closed => Ok(Err(StoreError::Closed)),
            Lookup::Miss(ticket) => Err(Next::Fetch(ticket)),
            Lookup::Wait => Err(Next::Wait(self.shared.filled.listen())),
        }
    }

    /// Asks the delegate and gives the ticket back with its answer.
    async fn fetch_and_fill<T, Fut>(
        &self,
        now: Timestamp,
        ticket: FillTicket,
        operation: &'static str,
        fetch: &(impl Fn() -> Fut + Send),
        fill: FillFn<T>,
    ) -> Result<Option<Arc<T>>, StoreError>
    where
        Fut: Future<Output = Result<Option<Arc<T>>, StoreError>> + Send,
    {
        let mut guard = TicketGuard {
            store: self,
            ticket: Some(ticket),
        };
        let result = delegate_call(Layer::Cache, operation, fetch()).await;
        let ticket = guard.ticket.take().expect("ticket is taken once");
        {
            let mut machine = self.shared.shard(ticket.key()).lock();
            match &result {
                Ok(found) => drop(fill(&mut machine, now, ticket, found.clone())),
                Err(_) => machine.abandon(ticket),
            }
        }
        self.shared.filled.notify(usize::MAX);
        result
    }

    /// Runs a write on the delegate, then reports it to the machine, even when
    /// the caller drops the future half way.
    async fn write<T>(
        &self,
        write: Write<'_>,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let _report = WriteGuard {
            store: self,
            writes: std::slice::from_ref(&write),
        };
        delegate_call(Layer::Cache, operation, call).await
    }
}

impl<S: TokenStore + 'static> CachingTokenStore<S> {
    /// Wraps `inner` and follows its [invalidation feed](InvalidationFeed), so
    /// this cache agrees with the caches of every other instance on the same
    /// store: after a write that removed or replaced a record returned on any
    /// instance, this cache stops serving the old record within
    /// `config.feed_bound` (`B`, 1 s when unset) plus one poll round trip,
    /// whatever hints are lost. While freshness cannot be confirmed (polls
    /// failing), every read goes to the store.
    ///
    /// The poller runs on `runtime`; it stops when the cache is closed or
    /// dropped. Fails with [`StoreError::InvalidConfig`] when `inner` has no
    /// feed or `B` is not below `ttl_cap`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tokenstore::{CachingTokenStore, cache::CacheConfig, runtime::TokioRuntime};
    /// use tokenstore::{MemoryTokenStore, StoredSession, SystemClock, Clock, TokenStore, UserInfo};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokenstore::StoreError> {
    /// // Two instances' caches over one store that keeps an invalidation log.
    /// let store = Arc::new(MemoryTokenStore::new(SystemClock).with_invalidation_log(Duration::from_secs(600)));
    /// let a = CachingTokenStore::following(store.clone(), CacheConfig::default(), TokioRuntime::current())?;
    /// let b = CachingTokenStore::following(store.clone(), CacheConfig::default(), TokioRuntime::current())?;
    ///
    /// let now = SystemClock.now();
    /// let session = StoredSession::new("sid", UserInfo::new("p", "u", "n"), "tok", now + Duration::from_secs(60), now);
    /// a.store_session(Arc::new(session)).await?;
    /// while b.metrics().feed.polls == 0 { tokio::task::yield_now().await; }
    /// assert!(b.load_session_by_token("tok").await?.is_some()); // fills b's cache
    ///
    /// a.delete_session_by_token("tok").await?; // logout on instance a
    /// tokio::time::sleep(Duration::from_secs(1)).await; // at most B later...
    /// assert!(b.load_session_by_token("tok").await?.is_none()); // ...b refuses it
    /// # Ok(())
    /// # }
    /// ```
    pub fn following(
        inner: S,
        config: CacheConfig,
        runtime: impl Runtime,
    ) -> Result<Self, StoreError> {
        Self::following_with_clock(inner, config, CoarseSystemClock::new(), runtime)
    }

    /// The poll of the feed that is due now, if one is: starts it, asks the
    /// delegate's feed (giving up when the machine says so), reports the answer
    /// and, when it confirmed freshness, arms its lapse timer on `runtime`. What
    /// the poller runs on its schedule; a test or a simulation can call it
    /// directly. Returns what the machine says about the next poll.
    pub async fn poll_feed(&self, runtime: &Arc<dyn Runtime>) -> PollTimer {
        self.shared.poll_feed(runtime).await
    }

    /// [`following`](Self::following), telling time with `clock`.
    pub fn following_with_clock(
        inner: S,
        mut config: CacheConfig,
        clock: impl Clock + 'static,
        runtime: impl Runtime,
    ) -> Result<Self, StoreError> {
        if inner.invalidation_feed().is_none() {
            return Err(StoreError::InvalidConfig(
                "the store has no invalidation feed to follow".into(),
            ));
        }
        config.feed_bound.get_or_insert(DEFAULT_FEED_BOUND);
        config.validate()?;
        let store = Self::with_clock(inner, config, clock);
        let shared = store.shared.clone();
        let runtime: Arc<dyn Runtime> = Arc::new(runtime);
        runtime
            .clone()
            .spawn(Box::pin(async move { shared.run_poller(&runtime).await }));
        Ok(store)
    }
}

impl<S> Drop for CachingTokenStore<S> {
    fn drop(&mut self) {
        self.shared.dropped.store(true, Ordering::Release);
        self.shared.wake.notify(usize::MAX);
        let retired = self.shared.published.lock().retire();
        retired.emit();
    }
}

impl<S> Shared<S> {
    /// The shard of `key`.
    fn shard(&self, key: &CacheKey) -> &Mutex<CacheMachine> {
        &self.shards[self.plan.of_key(key)].0
    }

    /// Runs `f` on every shard in turn, each under its own lock.
    fn each_shard(&self, mut f: impl FnMut(&mut CacheMachine)) {
        for shard in &self.shards {
            f(&mut shard.0.lock());
        }
    }

    fn metrics(&self) -> CacheMetrics {
        CacheMetrics::combine(self.shards.iter().map(|s| s.0.lock().metrics()))
    }

    /// Publishes what changed since the last publication. The shards are read
    /// under the publication lock, so two publications add disjoint changes;
    /// the facade is called after every lock is released.
    fn publish_metrics(&self) {
        let now = self.clock.now();
        let delta = self.published.lock().cache_delta(|| {
            let mut lag = None;
            let metrics = CacheMetrics::combine(self.shards.iter().map(|s| {
                let shard = s.0.lock();
                // The stalest shard's confirmation is the cache's.
                lag = lag.max(shard.feed_lag(now));
                shard.metrics()
            }));
            (metrics, lag)
        });
        delta.emit();
    }
}

impl<S: TokenStore + 'static> Shared<S> {
    /// Polls on the machine's schedule until the cache is closed or dropped.
    async fn run_poller(self: &Arc<Self>, runtime: &Arc<dyn Runtime>) {
        let mut seen = self
            .inner
            .invalidation_feed()
            .and_then(|f| f.hints())
            .map(|h| h.generation());
        loop {
            let wait = match self.poll_feed(runtime).await {
                PollTimer::Off => return,
                PollTimer::Due => continue,
                PollTimer::After(wait) | PollTimer::InFlight(wait) => wait,
            };
            let woken = self.wake.listen();
            if self.dropped.load(Ordering::Acquire) {
                return;
            }
            let hints = self.inner.invalidation_feed().and_then(|f| f.hints());
            let hinted = async {
                match (hints, seen) {
                    (Some(h), Some(s)) => Wake::Hint(h.wait_past(s).await),
                    _ => std::future::pending().await,
                }
            };
            let timer = async {
                runtime.sleep(wait).await;
                Wake::Timer
            };
            let stop = async {
                woken.await;
                Wake::Stop
            };
            match or(hinted, or(timer, stop)).await {
                Wake::Hint(generation) => {
                    seen = Some(generation);
                    let now = self.clock.now();
                    self.each_shard(|m| m.handle_hint(now));
                }
                Wake::Timer => {}
                Wake::Stop if self.dropped.load(Ordering::Acquire) => return,
                Wake::Stop => {}
            }
        }
    }

    /// The most urgent of the shards' poll timers: every shard follows the
    /// feed, and one poll serves them all.
    fn poll_timeout(&self, now: Timestamp) -> PollTimer {
        let mut timer = PollTimer::Off;
        self.each_shard(|m| timer = timer.sooner(m.poll_timeout(now)));
        timer
    }

    async fn poll_feed(self: &Arc<Self>, runtime: &Arc<dyn Runtime>) -> PollTimer {
        let now = self.clock.now();
        if self.poll_timeout(now) != PollTimer::Due {
            return self.poll_timeout(now);
        }
        // Every shard starts the poll (at the same `now`), so they stay in
        // step: one feed call per distinct watermark, normally one.
        let mut tickets: Vec<(usize, PollTicket)> = Vec::with_capacity(self.shards.len());
        for (i, shard) in self.shards.iter().enumerate() {
            if let Some(ticket) = shard.0.lock().begin_poll(now) {
                tickets.push((i, ticket));
            }
        }
        let Some(give_up) = tickets.first().map(|(_, t)| t.give_up_after()) else {
            return self.poll_timeout(now);
        };
        // Armed now, so it ends `B` after the poll started whatever the wall
        // clock does meanwhile.
        let lapse_timer = runtime.sleep(give_up);
        let mut confirmed: Vec<(usize, Lapse)> = Vec::new();
        while !tickets.is_empty() {
            let since = tickets[0].1.since();
            let (asked, rest): (Vec<_>, Vec<_>) =
                tickets.into_iter().partition(|(_, t)| t.since() == since);
            tickets = rest;
            let answer = match self.inner.invalidation_feed() {
                Some(feed) => {
                    let asked = async { Some(feed.invalidations_since(since).await) };
                    let timeout = async {
                        runtime.sleep(give_up).await;
                        None
                    };
                    or(asked, timeout).await
                }
                None => None,
            };
            let now = self.clock.now();
            match answer {
                Some(Ok(found)) => {
                    tracing::trace!(keys = found.keys.len(), gap = found.gap, "feed polled");
                    for (i, ticket) in asked {
                        let lapse = ticket.lapse();
                        let mut machine = self.shards[i].0.lock();
                        if machine.handle_invalidations(now, ticket, found.clone()) {
                            confirmed.push((i, lapse));
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "feed poll failed");
                    for (i, ticket) in asked {
                        self.shards[i].0.lock().handle_poll_failed(now, ticket);
                    }
                }
                None => {
                    tracing::debug!("feed poll given up");
                    for (i, ticket) in asked {
                        self.shards[i].0.lock().handle_poll_failed(now, ticket);
                    }
                }
            }
        }
        if !confirmed.is_empty() {
            let shared = Arc::downgrade(self);
            runtime.spawn(Box::pin(async move {
                lapse_timer.await;
                if let Some(shared) = shared.upgrade() {
                    let now = shared.clock.now();
                    for (i, lapse) in confirmed {
                        shared.shards[i].0.lock().handle_lapse(now, lapse);
                    }
                }
            }));
        }
        let now = self.clock.now();
        let timer = self.poll_timeout(now);
        self.publish_metrics();
        timer
    }
}

/// Keeps a shard on cache lines of its own, so two cores locking two shards
/// never write to one line (128 bytes: the prefetcher pairs 64-byte lines).
#[repr(align(128))]
struct Padded<T>(T);

/// What woke the poller.
enum Wake {
    Hint(u64),
    Timer,
    Stop,
}

/// What a read does after a lookup that could not answer.
enum Next {
    Fetch(FillTicket),
    Wait(EventListener),
}

/// The future of a cached read ([`CachingTokenStore::read`]): `Start` holds
/// the first step (look up, or build the boxed miss path), `Miss` that path.
enum Read<F, M> {
    Start(F),
    Miss(Pin<Box<M>>),
    Done,
}

impl<F, M> Future for Read<F, M>
where
    F: Fn() -> Result<M::Output, Pin<Box<M>>> + Unpin,
    M: Future,
{
    type Output = M::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // The first step is called where it lies (it is `Fn`): moving it out
        // first would copy every capture on every hit.
        if let Self::Start(step) = this {
            match step() {
                Ok(answer) => {
                    *this = Self::Done;
                    return Poll::Ready(answer);
                }
                Err(miss) => *this = Self::Miss(miss),
            }
        }
        let Self::Miss(miss) = this else {
            panic!("a cached read polled after it completed");
        };
        let poll = miss.as_mut().poll(cx);
        if poll.is_ready() {
            *this = Self::Done;
        }
        poll
    }
}

/// A lookup that missed: when, for which key, and what to do next.
struct Pending {
    now: Timestamp,
    key: CacheKey,
    next: Next,
}

/// How the machine takes a delegate's answer for one kind of record.
type FillFn<T> = fn(&mut CacheMachine, Timestamp, FillTicket, Option<Arc<T>>) -> FillOutcome;

/// Gives the ticket back if the read is dropped before the delegate answered.
struct TicketGuard<'a, S: TokenStore> {
    store: &'a CachingTokenStore<S>,
    ticket: Option<FillTicket>,
}

impl<S: TokenStore> Drop for TicketGuard<'_, S> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.store.shared.shard(ticket.key()).lock().abandon(ticket);
            self.store.shared.filled.notify(usize::MAX);
        }
    }
}

/// Reports writes to the machine when dropped (after completion or cancellation).
struct WriteGuard<'a, 'w, S: TokenStore> {
    store: &'a CachingTokenStore<S>,
    writes: &'a [Write<'w>],
}

impl<S: TokenStore> Drop for WriteGuard<'_, '_, S> {
    fn drop(&mut self) {
        let shared = &self.store.shared;
        for write in self.writes {
            match shared.plan.of_write(write) {
                Route::One(i) => shared.shards[i].0.lock().handle_write(*write),
                Route::All => {
                    let keys = WriteKeys::of(write);
                    shared.each_shard(|m| m.handle_write_keys(&keys));
                }
            }
        }
    }
}

/// A spare `String` per thread for the lookup keys that hold one (a session
/// id, a client id): a lookup answered from the cache gives it back, so a hit
/// allocates nothing once the thread has looked up an id that long.
mod spare {
    use std::cell::Cell;
    use tokenstore_core::SessionKey;
    use tokenstore_core::cache::CacheKey;

    thread_local! {
        static SPARE: Cell<String> = const { Cell::new(String::new()) };
    }

    /// `make` of a copy of `id`, in the thread's spare `String` when it has one.
    pub(super) fn key_of(id: &str, make: fn(String) -> CacheKey) -> CacheKey {
        let mut text = SPARE.take();
        text.clear();
        text.push_str(id);
        make(text)
    }

    /// Keeps the `String` of a key that is done with as the thread's spare.
    pub(super) fn give_back(key: CacheKey) {
        if let CacheKey::Client(text) | CacheKey::Session(SessionKey::Id(text)) = key {
            SPARE.set(text);
        }
    }
}

fn session(c: Cached) -> Option<Arc<StoredSession>> {
    match c {
        Cached::Session(s) => Some(s),
        _ => None,
    }
}

fn auth_code(c: Cached) -> Option<Arc<AuthCodeRecord>> {
    match c {
        Cached::AuthCode(a) => Some(a),
        _ => None,
    }
}

fn client(c: Cached) -> Option<Arc<ClientRecord>> {
    match c {
        Cached::Client(a) => Some(a),
        _ => None,
    }
}

impl<S: TokenStore> TokenStore for CachingTokenStore<S> {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        self.write(
            Write::State,
            "store_state",
            self.shared.inner.store_state(record),
        )
        .await
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        self.write(
            Write::State,
            "consume_state",
            self.shared.inner.consume_state(state),
        )
        .await
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        let code = record.code.clone();
        self.write(
            Write::AuthCode(&code),
            "store_auth_code",
            self.shared.inner.store_auth_code(record),
        )
        .await
    }

    fn load_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<Arc<AuthCodeRecord>>, StoreError>> + Send {
        let key = move || {
            validate_key("code", code)?;
            Ok(CacheKey::AuthCode(TokenHash::of(code)))
        };
        let fetch = move || self.shared.inner.load_auth_code(code);
        self.read(
            key,
            "load_auth_code",
            fetch,
            CacheMachine::fill_auth_code,
            auth_code,
        )
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        self.write(
            Write::AuthCode(code),
            "delete_auth_code",
            self.shared.inner.delete_auth_code(code),
        )
        .await
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        self.write(
            Write::AuthCode(code),
            "try_delete_auth_code",
            self.shared.inner.try_delete_auth_code(code),
        )
        .await
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        let keys = Arc::clone(&record);
        self.write(
            Write::StoreSession(&keys),
            "store_session",
            self.shared.inner.store_session(record),
        )
        .await
    }

    fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        let key = move || {
            validate_key("access_token", access_token)?;
            Ok(CacheKey::Session(SessionKey::Access(TokenHash::of(
                access_token,
            ))))
        };
        let fetch = move || self.shared.inner.load_session_by_token(access_token);
        self.read(
            key,
            "load_session_by_token",
            fetch,
            CacheMachine::fill_session,
            session,
        )
    }

    fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        let key = move || {
            validate_key("session_id", session_id)?;
            Ok(spare::key_of(session_id, |id| {
                CacheKey::Session(SessionKey::Id(id))
            }))
        };
        let fetch = move || self.shared.inner.load_session_by_id(session_id);
        self.read(
            key,
            "load_session_by_id",
            fetch,
            CacheMachine::fill_session,
            session,
        )
    }

    fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        let key = move || {
            validate_key("refresh_token", refresh_token)?;
            Ok(CacheKey::Session(SessionKey::Refresh(TokenHash::of(
                refresh_token,
            ))))
        };
        let fetch = move || {
            self.shared
                .inner
                .load_session_by_refresh_token(refresh_token)
        };
        self.read(
            key,
            "load_session_by_refresh_token",
            fetch,
            CacheMachine::fill_session,
            session,
        )
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        let write = Write::DeleteSessionByHash(TokenHash::of(access_token));
        self.write(
            write,
            "delete_session_by_token",
            self.shared.inner.delete_session_by_token(access_token),
        )
        .await
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        let write = Write::DeleteSessionById(session_id);
        self.write(
            write,
            "delete_session_by_id",
            self.shared.inner.delete_session_by_id(session_id),
        )
        .await
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        let id = record.client_id.clone();
        self.write(
            Write::Client(&id),
            "store_client",
            self.shared.inner.store_client(record),
        )
        .await
    }

    fn load_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<ClientRecord>>, StoreError>> + Send {
        let key = move || {
            validate_key("client_id", client_id)?;
            Ok(spare::key_of(client_id, CacheKey::Client))
        };
        let fetch = move || self.shared.inner.load_client(client_id);
        self.read(key, "load_client", fetch, CacheMachine::fill_client, client)
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        delegate_call(
            Layer::Cache,
            "list_clients",
            self.shared.inner.list_clients(),
        )
        .await
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.write(
            Write::Client(client_id),
            "delete_client",
            self.shared.inner.delete_client(client_id),
        )
        .await
    }

    /// Passes through: the cache never serves a record past its expiry, so what
    /// cleanup removes is never cached.
    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        let cleanup = self.shared.inner.cleanup_expired();
        delegate_call(Layer::Cache, "cleanup_expired", cleanup).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let result = self.shared.inner.close().await;
        self.shared.each_shard(CacheMachine::handle_close);
        self.shared.publish_metrics();
        self.shared.filled.notify(usize::MAX);
        self.shared.wake.notify(usize::MAX);
        result
    }

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.shared
            .inner
            .bulk()
            .map(|_| self as &dyn BulkSessionStore)
    }

    /// The delegate's atomic batch, evicting what every write of a batch can
    /// affect, as its single call would.
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        self.shared
            .inner
            .batch_writer()
            .map(|_| self as &dyn BatchWriteStore)
    }

    /// The delegate's feed, untouched: it reports what the store committed.
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        self.shared.inner.invalidation_feed()
    }
}

impl<S: TokenStore> BatchWriteStore for CachingTokenStore<S> {
    fn apply_batch(&self, writes: Vec<WriteOp>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(batch) = self.shared.inner.batch_writer() else {
                return Err(StoreError::Backend(
                    "the delegate lost its batch capability".into(),
                ));
            };
            let ops = writes.clone();
            let passing: Vec<Write<'_>> = ops.iter().map(Write::from).collect();
            let _report = WriteGuard {
                store: self,
                writes: &passing,
            };
            delegate_call(Layer::Cache, "apply_batch", batch.apply_batch(writes)).await
        })
    }

    /// Passes through: preparing changes nothing stored or cached.
    fn prepare(&self, writes: &[WriteOp]) {
        if let Some(batch) = self.shared.inner.batch_writer() {
            batch.prepare(writes);
        }
    }
}

impl<S: TokenStore> BulkSessionStore for CachingTokenStore<S> {
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(bulk) = self.shared.inner.bulk() else {
                return Err(StoreError::Backend(
                    "the delegate lost its bulk capability".into(),
                ));
            };
            let records = sessions.clone();
            let writes: Vec<Write<'_>> = records.iter().map(|s| Write::StoreSession(s)).collect();
            let _report = WriteGuard {
                store: self,
                writes: &writes,
            };
            let call = bulk.bulk_store_sessions(sessions);
            delegate_call(Layer::Cache, "bulk_store_sessions", call).await
        })
    }

    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let Some(bulk) = self.shared.inner.bulk() else {
                return Err(StoreError::Backend(
                    "the delegate lost its bulk capability".into(),
                ));
            };
            let writes: Vec<Write<'_>> = hashes
                .iter()
                .map(|h| Write::DeleteSessionByHash(*h))
                .collect();
            let _report = WriteGuard {
                store: self,
                writes: &writes,
            };
            let call = bulk.bulk_delete_sessions_by_hash(hashes);
            delegate_call(Layer::Cache, "bulk_delete_sessions_by_hash", call).await
        })
    }

    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
        Box::pin(async move {
            match self.shared.inner.bulk() {
                Some(bulk) => {
                    let call = bulk.bulk_cleanup_expired();
                    delegate_call(Layer::Cache, "bulk_cleanup_expired", call).await
                }
                None => {
                    let call = self.shared.inner.cleanup_expired();
                    delegate_call(Layer::Cache, "cleanup_expired", call).await
                }
            }
        })
    }
}

impl<S: fmt::Debug> fmt::Debug for CachingTokenStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingTokenStore")
            .field("inner", &self.shared.inner)
            .field("shards", &self.shared.shards.len())
            .field("metrics", &self.shared.metrics())
            .finish_non_exhaustive()
    }
}
