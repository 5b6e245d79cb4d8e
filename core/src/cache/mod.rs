//! The read-cache machine: pure, synchronous and deterministic.
//!
//! [`CacheMachine`] decides hits, misses, negative hits, entry lifetimes,
//! invalidations and evictions from explicit events and an explicit `now`. It
//! owns no clock, lock, thread or future; an adapter such as the `tokenstore`
//! crate's `CachingTokenStore` holds it behind a lock and does the delegate I/O
//! it asks for. Its [`HitView`] answers hits from any thread without that
//! lock, from the machine's own tables.

mod follow;
mod key;
mod metrics;
mod races;
mod shard;
mod table;
mod view;

pub use follow::{FeedMetrics, Lapse, PollTicket, PollTimer};
pub use key::{CacheKey, Kind, Write, WriteKeys};
pub use metrics::{CacheMetrics, KindMetrics};
pub use races::FillTicket;
pub use shard::{MAX_SHARDS, MIN_SHARD_CAPACITY, Route, ShardPlan};
pub use view::HitView;

use crate::feed::Invalidations;
use crate::{
    AuthCodeRecord, ClientRecord, SessionKey, StoreError, StoredSession, Timestamp, TokenHash,
};
use follow::Follower;
use races::Races;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use table::Table;

/// The staleness bound `B` a cache that follows a feed uses when its
/// [`CacheConfig::feed_bound`] is unset.
pub const DEFAULT_FEED_BOUND: Duration = Duration::from_secs(1);

/// Settings of the read cache.
///
/// The defaults suit a single-process server: entries live at most 30 s (also the
/// bound on staleness for writes made behind the cache's back, for example by
/// another process), lose 1 s of lifetime to clock skew, and misses are
/// remembered for 2 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The longest an entry lives, whatever the record's own expiry. Default 30 s.
    pub ttl_cap: Duration,
    /// Taken off every entry's lifetime, so no record is served near its expiry.
    /// Default 1 s.
    pub skew: Duration,
    /// How long an absence is remembered; zero disables negative caching.
    /// Default 2 s.
    pub negative_ttl: Duration,
    /// Sessions kept at most. Default 100,000.
    pub session_capacity: usize,
    /// Authorization codes kept at most. Default 10,000.
    pub auth_code_capacity: usize,
    /// Clients kept at most. Default 10,000.
    pub client_capacity: usize,
    /// Negative entries kept at most, all kinds together. Default 10,000.
    pub negative_capacity: usize,
    /// How far the clock that supplies `now` may lag behind the true time
    /// ([`Clock::resolution`](crate::Clock::resolution)); added to `skew`.
    /// `CachingTokenStore` sets it from its clock. Default zero.
    pub clock_resolution: Duration,
    /// The staleness bound `B` across instances, when the cache follows the
    /// store's [invalidation feed](crate::feed): a hit (positive or negative) is
    /// served only while the last successful poll of the feed started less than
    /// `B` ago, polls run at least every `B / 2` (and on a hint, but never two
    /// starts closer than `B / 200`, clamped to 1..=5 ms), and negative entries
    /// live at most `B`. Must be above zero and below `ttl_cap`. Default `None`: no feed
    /// (a single-process server needs none).
    pub feed_bound: Option<Duration>,
    /// The most shards the cache is split into, each a machine behind a lock
    /// of its own, so hits on different cores rarely meet; fewer when a
    /// capacity is small (see [`ShardPlan`]). 1 disables sharding. Default 16.
    pub shards: usize,
}

impl CacheConfig {
    /// Checks the settings: `feed_bound`, when set, is above zero and below
    /// `ttl_cap`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenstore_core::cache::CacheConfig;
    ///
    /// let mut config = CacheConfig::default();
    /// config.feed_bound = Some(Duration::from_secs(1));
    /// assert!(config.validate().is_ok());
    /// config.feed_bound = Some(config.ttl_cap);
    /// assert!(config.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), StoreError> {
        match self.feed_bound {
            Some(b) if b.is_zero() => Err(StoreError::InvalidConfig(
                "the cache's feed_bound must be above zero".into(),
            )),
            Some(b) if b >= self.ttl_cap => Err(StoreError::InvalidConfig(format!(
                "the cache's feed_bound ({b:?}) must be below its ttl_cap ({:?})",
                self.ttl_cap
            ))),
            _ => Ok(()),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_cap: Duration::from_secs(30),
            skew: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(2),
            session_capacity: 100_000,
            auth_code_capacity: 10_000,
            client_capacity: 10_000,
            negative_capacity: 10_000,
            clock_resolution: Duration::ZERO,
            feed_bound: None,
            shards: 16,
        }
    }
}

/// A cached record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// A session.
    Session(Arc<StoredSession>),
    /// An authorization code.
    AuthCode(Arc<AuthCodeRecord>),
    /// A client.
    Client(Arc<ClientRecord>),
}

/// The answer to a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// Serve this record; the delegate is not asked.
    Hit(Cached),
    /// Serve "absent"; the delegate is not asked.
    NegativeHit,
    /// Ask the delegate, then give its answer (or failure) back with the ticket.
    Miss(FillTicket),
    /// Another caller is filling this key: wait until a fill or abandon is
    /// reported, then look up again.
    Wait,
    /// The cache was closed: answer [`StoreError::Closed`].
    Closed,
}

/// What happened to a fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// The record is cached.
    Cached,
    /// The absence is cached.
    CachedNegative,
    /// Nothing cached: the record is already inside its expiry window, or caching
    /// of this kind is disabled.
    NotCached,
    /// Refused: a key of the record was invalidated after the ticket was issued.
    Refused,
}

#[derive(Clone)]
struct SessionEntry {
    record: Arc<StoredSession>,
    /// Serve by access token or id before this.
    access_deadline: Timestamp,
    /// Serve by refresh token before this.
    refresh_deadline: Timestamp,
}

struct Entry<T> {
    record: Arc<T>,
    deadline: Timestamp,
}

// Not derived: a derive would ask `T: Clone`, and only the `Arc` is cloned.
impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Self {
            record: self.record.clone(),
            deadline: self.deadline,
        }
    }
}

/// The read-cache machine.
///
/// # Driving it
///
/// 1. For a read (`load_session_by_*`, `load_auth_code`, `load_client`), ask
///    the machine's [`HitView`] ([`hit_view`](Self::hit_view), taken once)
///    with `now` and the key, without the lock; a `Some` is the answer.
///    Otherwise call [`lookup`](Self::lookup) with `now` and the key.
///    - [`Lookup::Hit`] / [`Lookup::NegativeHit`]: answer from it.
///    - [`Lookup::Miss`]: release the lock, ask the delegate, take the lock again
///      and hand the answer to the matching `fill_*` method with the ticket (or the
///      ticket to [`abandon`](Self::abandon) if the delegate failed). Answer the
///      caller with the delegate's answer whatever the [`FillOutcome`].
///    - [`Lookup::Wait`]: wait until any fill or abandon is reported, then go to 1.
///    - [`Lookup::Closed`]: fail the read with `StoreError::Closed`.
/// 2. For every write and one-time call (`store_*`, `delete_*`, `consume_state`,
///    `try_delete_auth_code`, bulk calls), pass it to the delegate, then report it
///    with [`handle_write`](Self::handle_write), success or not. One-time calls are
///    never answered from the cache.
/// 3. After closing the delegate, call [`handle_close`](Self::handle_close).
/// 4. [`metrics`](Self::metrics) at any time.
///
/// # Following an invalidation feed
///
/// With [`CacheConfig::feed_bound`] set to `B`, the cache also learns what
/// other instances' writes removed or replaced, from the store's
/// [`InvalidationFeed`](crate::feed::InvalidationFeed), and serves a hit only
/// while the last successful poll started less than `B` ago (every lookup is
/// a miss before the first poll, and whenever polls fail). One poller drives
/// it:
///
/// 5. Ask [`poll_timeout`](Self::poll_timeout) with `now`:
///    - [`PollTimer::Due`]: call [`begin_poll`](Self::begin_poll); arm a timer
///      of `B` on the runtime (a timer that does not follow the wall clock);
///      ask the feed from [`PollTicket::since`] (giving up after
///      [`PollTicket::give_up_after`]); hand the
///      answer to [`handle_invalidations`](Self::handle_invalidations) or the
///      failure to [`handle_poll_failed`](Self::handle_poll_failed). When
///      `handle_invalidations` answers `true`, call
///      [`handle_lapse`](Self::handle_lapse) with [`PollTicket::lapse`] once
///      the timer fires.
///    - [`PollTimer::After`]: sleep that long or until the feed raises a hint,
///      then report the hint with [`handle_hint`](Self::handle_hint); go to 5.
///    - [`PollTimer::Off`]: stop (no feed, or closed).
///
/// ```
/// use std::time::Duration;
/// use tokenstore_core::cache::{CacheConfig, CacheKey, CacheMachine, Lookup, PollTimer};
/// use tokenstore_core::feed::{Invalidations, Watermark};
/// use tokenstore_core::{SessionKey, Timestamp, TokenHash};
///
/// let b = Duration::from_secs(1);
/// let t0 = Timestamp::from_unix_secs(1_000);
/// let mut cache = CacheMachine::new(CacheConfig { feed_bound: Some(b), ..CacheConfig::default() });
/// assert_eq!(cache.poll_timeout(t0), PollTimer::Due);
///
/// let poll = cache.begin_poll(t0).expect("none in flight");
/// assert_eq!(poll.since(), None); // the first poll asks for the watermark only
/// let answer = Invalidations { keys: vec![], watermark: Watermark(41), gap: false };
/// assert!(cache.handle_invalidations(t0, poll, answer));
/// assert_eq!(cache.poll_timeout(t0), PollTimer::After(b / 2));
///
/// // Another instance logged out a session: the next poll evicts its keys.
/// let poll = cache.begin_poll(t0 + b / 2).unwrap();
/// assert_eq!(poll.since(), Some(Watermark(41)));
/// let key = CacheKey::Session(SessionKey::Access(TokenHash::of("tok")));
/// let answer = Invalidations { keys: vec![key.clone()], watermark: Watermark(42), gap: false };
/// cache.handle_invalidations(t0 + b / 2, poll, answer);
///
/// // No poll for B: nothing is served from the cache, every read goes to the store.
/// assert!(matches!(cache.lookup(t0 + b / 2 + b, &key), Lookup::Miss(_)));
/// ```
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tokenstore_core::cache::{CacheConfig, CacheKey, CacheMachine, FillOutcome, Lookup, Write};
/// use tokenstore_core::{SessionKey, StoredSession, Timestamp, TokenHash, UserInfo};
///
/// let now = Timestamp::from_unix_secs(1_000);
/// let mut cache = CacheMachine::new(CacheConfig::default());
/// let session = Arc::new(StoredSession::new(
///     "sid", UserInfo::new("p", "u", "n"), "tok", now + Duration::from_secs(3600), now,
/// ));
/// let key = CacheKey::Session(SessionKey::Access(TokenHash::of("tok")));
///
/// let Lookup::Miss(ticket) = cache.lookup(now, &key) else { panic!() };
/// // ... the delegate answers with `session` ...
/// assert_eq!(cache.fill_session(now, ticket, Some(session.clone())), FillOutcome::Cached);
/// assert!(matches!(cache.lookup(now, &key), Lookup::Hit(_)));
///
/// cache.handle_write(Write::DeleteSessionByHash(TokenHash::of("tok")));
/// assert!(matches!(cache.lookup(now, &key), Lookup::Miss(_)));
/// ```
// `repr(C)`, counters first: a hit writes its kind's counters, so they sit
// right after the lock of the shard that holds this machine, on the line the
// lock's atomics write anyway; what a hit only reads lies on other lines, so
// another core's hit in the same shard does not take those lines away.
#[repr(C)]
pub struct CacheMachine {
    metrics: CacheMetrics,
    config: CacheConfig,
    sessions: Table<CacheKey, SessionEntry>,
    auth_codes: Table<CacheKey, Entry<AuthCodeRecord>>,
    clients: Table<CacheKey, Entry<ClientRecord>>,
    negatives: Table<CacheKey, Timestamp>,
    races: Races,
    closed: bool,
    /// Present when the cache follows an invalidation feed.
    follower: Option<Follower>,
    /// Answers hits from the tables without the lock.
    view: HitView,
}

impl CacheMachine {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        let sessions = Table::new(config.session_capacity);
        let auth_codes = Table::new(config.auth_code_capacity);
        let clients = Table::new(config.client_capacity);
        let view = HitView::new(
            sessions.index().clone(),
            auth_codes.index().clone(),
            clients.index().clone(),
            config.feed_bound.is_none(),
        );
        Self {
            sessions,
            auth_codes,
            clients,
            negatives: Table::new(config.negative_capacity),
            races: Races::default(),
            metrics: CacheMetrics::default(),
            closed: false,
            follower: config.feed_bound.map(Follower::new),
            view,
            config,
        }
    }

    /// A view of this machine's entries that answers hits without its lock
    /// ([`HitView`]): ask it first, and this machine when it answers `None`.
    pub fn hit_view(&self) -> HitView {
        self.view.clone()
    }

    /// Reports that the store closed: every entry is dropped and every later
    /// lookup answers [`Lookup::Closed`].
    pub fn handle_close(&mut self) {
        self.closed = true;
        self.view.close();
        self.drop_entries();
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Decides a read of `key` at `now`.
    pub fn lookup(&mut self, now: Timestamp, key: &CacheKey) -> Lookup {
        if self.closed {
            return Lookup::Closed;
        }
        let kind = key.kind();
        self.metrics.kind_mut(kind).lookups += 1;
        if self.serving(now) {
            if let Some(hit) = self.positive(now, key) {
                self.metrics.kind_mut(kind).hits += 1;
                return Lookup::Hit(hit);
            }
            if self.negative(now, key) {
                self.metrics.kind_mut(kind).negative_hits += 1;
                return Lookup::NegativeHit;
            }
        } else if self.positive(now, key).is_some() || self.negative(now, key) {
            self.follower_mut().metrics.unconfirmed += 1;
        }
        match self.races.issue(key) {
            Some(ticket) => {
                self.metrics.kind_mut(kind).misses += 1;
                Lookup::Miss(ticket)
            }
            None => {
                self.metrics.kind_mut(kind).waits += 1;
                Lookup::Wait
            }
        }
    }

    /// Gives back a session ticket with the delegate's answer.
    pub fn fill_session(
        &mut self,
        now: Timestamp,
        ticket: FillTicket,
        found: Option<Arc<StoredSession>>,
    ) -> FillOutcome {
        let Some(record) = found else {
            return self.fill_negative(now, ticket);
        };
        let keys = CacheKey::of_session(&record);
        if !self.races.redeem(&ticket, &keys) {
            return self.refused(&ticket);
        }
        let entry = SessionEntry {
            access_deadline: self.deadline(now, record.access_expires_at),
            refresh_deadline: self.deadline(now, record.refresh_expires_at),
            record,
        };
        if entry.deadline_for(&ticket.key) <= now || self.config.session_capacity == 0 {
            return FillOutcome::NotCached;
        }
        self.clear_negatives(&keys);
        let evicted = self.sessions.insert(keys, entry);
        self.filled(Kind::Session, evicted.is_some())
    }

    /// Gives back an authorization-code ticket with the delegate's answer.
    pub fn fill_auth_code(
        &mut self,
        now: Timestamp,
        ticket: FillTicket,
        found: Option<Arc<AuthCodeRecord>>,
    ) -> FillOutcome {
        let Some(record) = found else {
            return self.fill_negative(now, ticket);
        };
        let keys = vec![CacheKey::AuthCode(TokenHash::of(&record.code))];
        if !self.races.redeem(&ticket, &keys) {
            return self.refused(&ticket);
        }
        let deadline = self.deadline(now, Some(record.expires_at));
        if deadline <= now || self.config.auth_code_capacity == 0 {
            return FillOutcome::NotCached;
        }
        self.clear_negatives(&keys);
        let evicted = self.auth_codes.insert(keys, Entry { record, deadline });
        self.filled(Kind::AuthCode, evicted.is_some())
    }

    /// Gives back a client ticket with the delegate's answer.
    pub fn fill_client(
        &mut self,
        now: Timestamp,
        ticket: FillTicket,
        found: Option<Arc<ClientRecord>>,
    ) -> FillOutcome {
        let Some(record) = found else {
            return self.fill_negative(now, ticket);
        };
        let keys = vec![CacheKey::Client(record.client_id.clone())];
        if !self.races.redeem(&ticket, &keys) {
            return self.refused(&ticket);
        }
        let deadline = self.deadline(now, None);
        if deadline <= now || self.config.client_capacity == 0 {
            return FillOutcome::NotCached;
        }
        self.clear_negatives(&keys);
        let evicted = self.clients.insert(keys, Entry { record, deadline });
        self.filled(Kind::Client, evicted.is_some())
    }

    /// Gives back a ticket whose delegate call failed or was given up.
    pub fn abandon(&mut self, ticket: FillTicket) {
        self.races.redeem(&ticket, &[]);
    }

    /// Reports a write or one-time call that passed through to the delegate:
    /// evicts every entry reachable by any key the write can affect (with all of
    /// that entry's keys) and the negative entries of those keys, and refuses the
    /// fills of those keys that are in flight.
    pub fn handle_write(&mut self, write: Write<'_>) {
        self.handle_write_keys(&WriteKeys::of(&write));
    }

    /// [`handle_write`](Self::handle_write) with the write's keys computed
    /// once ([`WriteKeys::of`]), for a write reported to several shards.
    pub fn handle_write_keys(&mut self, keys: &WriteKeys) {
        self.metrics.kind_mut(keys.kind()).invalidations += 1;
        for key in keys.keys() {
            self.invalidate(key);
        }
    }

    /// Starts a poll of the invalidation feed, when the cache follows one and
    /// no poll is in flight: ask the feed from
    /// [`PollTicket::since`](PollTicket::since), then give the ticket back with
    /// the answer to [`handle_invalidations`](Self::handle_invalidations) or to
    /// [`handle_poll_failed`](Self::handle_poll_failed).
    pub fn begin_poll(&mut self, now: Timestamp) -> Option<PollTicket> {
        if self.closed {
            return None;
        }
        self.follower.as_mut()?.begin(now)
    }

    /// Gives a poll back with the feed's answer: every key in it is evicted
    /// (with every entry it reaches and its negative entry) and fills of those
    /// keys in flight are refused, the stale-fill guard extended to other
    /// instances' writes. A gap, and the first answer (which names no keys),
    /// drop every entry and refuse every fill in flight. Unless the clock stepped back meanwhile, freshness is then
    /// confirmed from the poll's start.
    ///
    /// Returns `true` when this poll's confirmation is now the current one: the
    /// adapter then arranges [`handle_lapse`](Self::handle_lapse) with
    /// [`PollTicket::lapse`] for `B` after the poll started.
    pub fn handle_invalidations(
        &mut self,
        now: Timestamp,
        poll: PollTicket,
        found: Invalidations,
    ) -> bool {
        let Some(follower) = self.follower.as_mut() else {
            return false;
        };
        follower.metrics.keys_received += found.keys.len() as u64;
        // The first answer names no keys: writes that committed between its
        // snapshot and anything read before it are unknown, exactly as after
        // a gap. Both start the cache afresh.
        let first = poll.since.is_none();
        if found.gap || first {
            follower.metrics.gaps += u64::from(found.gap);
            follower.restart(found.watermark);
            self.drop_entries();
            self.races.refuse_outstanding();
        } else {
            for key in &found.keys {
                self.invalidate(key);
            }
        }
        self.follower
            .as_mut()
            .is_some_and(|f| f.succeeded(now, &poll, found.watermark))
    }

    /// `B` has passed, on a timer that does not follow the wall clock, since
    /// the poll of `lapse` started: if that poll's confirmation is still the
    /// current one, freshness ends (so a wall clock stepping back cannot extend
    /// it) and a poll is due.
    pub fn handle_lapse(&mut self, now: Timestamp, lapse: Lapse) {
        if let Some(follower) = self.follower.as_mut() {
            follower.lapse(now, lapse);
        }
    }

    /// Gives a poll back that failed or was given up: freshness is not
    /// confirmed, and the next poll is due soon.
    pub fn handle_poll_failed(&mut self, now: Timestamp, poll: PollTicket) {
        if let Some(follower) = self.follower.as_mut() {
            follower.failed(now, &poll);
        }
    }

    /// Reports a wake-up hint from the feed: a poll is due at once (or right
    /// after the one in flight).
    pub fn handle_hint(&mut self, now: Timestamp) {
        if let Some(follower) = self.follower.as_mut() {
            follower.hint(now);
        }
    }

    /// When the adapter should poll next; see [`PollTimer`].
    pub fn poll_timeout(&mut self, now: Timestamp) -> PollTimer {
        if self.closed {
            return PollTimer::Off;
        }
        match self.follower.as_mut() {
            Some(follower) => {
                follower.observe(now);
                follower.timer(now)
            }
            None => PollTimer::Off,
        }
    }

    /// How far behind the invalidation feed this cache may be at `now`: the
    /// time since the start of the last poll that confirmed freshness. `None`
    /// without a feed, and while freshness is not confirmed (no poll succeeded
    /// yet, polls failing, or the clock stepped back).
    pub fn feed_lag(&self, now: Timestamp) -> Option<Duration> {
        self.follower.as_ref().and_then(|f| f.lag(now))
    }

    /// Fill tickets handed out and not yet given back.
    pub fn fills_in_flight(&self) -> usize {
        self.races.outstanding()
    }

    /// Counters and entry counts.
    pub fn metrics(&self) -> CacheMetrics {
        let mut metrics = self.metrics;
        for kind in [Kind::Session, Kind::AuthCode, Kind::Client] {
            self.view.add_hits(kind, metrics.kind_mut(kind));
        }
        CacheMetrics {
            session_entries: self.sessions.len(),
            auth_code_entries: self.auth_codes.len(),
            client_entries: self.clients.len(),
            negative_entries: self.negatives.len(),
            feed: self
                .follower
                .as_ref()
                .map(|f| f.metrics)
                .unwrap_or_default(),
            ..metrics
        }
    }

    /// Whether a hit may be served at `now`: always without a feed; with one,
    /// only while freshness is confirmed.
    fn serving(&mut self, now: Timestamp) -> bool {
        let resolution = self.config.clock_resolution;
        match self.follower.as_mut() {
            None => true,
            Some(f) => {
                f.observe(now);
                f.confirmed(now, resolution)
            }
        }
    }

    /// The follower; only called where `serving` said there is one.
    fn follower_mut(&mut self) -> &mut Follower {
        self.follower
            .as_mut()
            .expect("only a following cache can be unconfirmed")
    }

    /// Drops every entry, positive and negative (the view sees them gone).
    fn drop_entries(&mut self) {
        self.sessions.clear();
        self.auth_codes.clear();
        self.clients.clear();
        self.negatives.clear();
    }

    /// `min(expiry, now + ttl_cap) - skew - clock_resolution`.
    fn deadline(&self, now: Timestamp, expiry: Option<Timestamp>) -> Timestamp {
        let capped = now + self.config.ttl_cap;
        expiry.map_or(capped, |e| e.min(capped)) - self.config.skew - self.config.clock_resolution
    }

    fn positive(&mut self, now: Timestamp, key: &CacheKey) -> Option<Cached> {
        let (hit, deadline) = match key.kind() {
            Kind::Session => {
                let e = self.sessions.get(key)?;
                let deadline = e.deadline_for(key);
                (Cached::Session(e.record), deadline)
            }
            Kind::AuthCode => {
                let e = self.auth_codes.get(key)?;
                (Cached::AuthCode(e.record), e.deadline)
            }
            Kind::Client => {
                let e = self.clients.get(key)?;
                (Cached::Client(e.record), e.deadline)
            }
            Kind::State => return None,
        };
        if serves(now, deadline) {
            return Some(hit);
        }
        self.table_remove(key);
        self.metrics.kind_mut(key.kind()).expirations += 1;
        None
    }

    fn negative(&mut self, now: Timestamp, key: &CacheKey) -> bool {
        let Some(deadline) = self.negatives.get(key) else {
            return false;
        };
        if serves(now, deadline) {
            return true;
        }
        self.negatives.remove(key);
        self.metrics.kind_mut(key.kind()).expirations += 1;
        false
    }

    fn fill_negative(&mut self, now: Timestamp, ticket: FillTicket) -> FillOutcome {
        if !self.races.redeem(&ticket, &[]) {
            return self.refused(&ticket);
        }
        let ttl = match &self.follower {
            Some(f) => self.config.negative_ttl.min(f.negative_cap()),
            None => self.config.negative_ttl,
        };
        if ttl.is_zero() || self.config.negative_capacity == 0 {
            return FillOutcome::NotCached;
        }
        let kind = ticket.key.kind();
        let deadline = now + ttl;
        if let Some(evicted) = self.negatives.insert(vec![ticket.key], deadline) {
            self.metrics.kind_mut(evicted[0].kind()).evictions += 1;
        }
        self.metrics.kind_mut(kind).negative_fills += 1;
        FillOutcome::CachedNegative
    }

    fn refused(&mut self, ticket: &FillTicket) -> FillOutcome {
        self.metrics.kind_mut(ticket.key.kind()).stale_fills_refused += 1;
        FillOutcome::Refused
    }

    fn filled(&mut self, kind: Kind, evicted: bool) -> FillOutcome {
        let m = self.metrics.kind_mut(kind);
        m.fills += 1;
        m.evictions += u64::from(evicted);
        FillOutcome::Cached
    }

    fn clear_negatives(&mut self, keys: &[CacheKey]) {
        for key in keys {
            self.negatives.remove(key);
        }
    }

    fn table_remove(&mut self, key: &CacheKey) -> Option<Vec<CacheKey>> {
        match key.kind() {
            Kind::Session => self.sessions.remove(key).map(|(keys, _)| keys),
            Kind::AuthCode => self.auth_codes.remove(key).map(|(keys, _)| keys),
            Kind::Client => self.clients.remove(key).map(|(keys, _)| keys),
            Kind::State => None,
        }
    }

    /// Evicts `key`, the entry behind it with all its keys, and their negatives.
    fn invalidate(&mut self, key: &CacheKey) {
        let keys = self.table_remove(key).unwrap_or_else(|| vec![key.clone()]);
        for k in keys.iter().chain(std::iter::once(key)) {
            self.negatives.remove(k);
            self.races.invalidate(k);
        }
    }
}

/// Whether an entry whose deadline is `deadline` may be served at `now`: the
/// one rule the machine and its [`HitView`] both apply.
fn serves(now: Timestamp, deadline: Timestamp) -> bool {
    now < deadline
}

impl<T> Entry<T> {
    /// The deadline, whatever the key (a code or a client has one key).
    fn deadline_of(&self, _key: &CacheKey) -> Timestamp {
        self.deadline
    }
}

impl SessionEntry {
    fn deadline_for(&self, key: &CacheKey) -> Timestamp {
        match key {
            CacheKey::Session(SessionKey::Refresh(_)) => self.refresh_deadline,
            _ => self.access_deadline,
        }
    }
}

impl fmt::Debug for CacheMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheMachine")
            .field("config", &self.config)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
