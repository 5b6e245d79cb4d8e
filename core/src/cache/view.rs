//! Hits without the shard's lock ([`HitView`]).

use super::table::{Index, Indexed};
use super::{CacheKey, Cached, Entry, Kind, KindMetrics, SessionEntry, serves};
use crate::{AuthCodeRecord, ClientRecord, Timestamp};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How many sets of hit counters a view has; threads take one each, in turn.
const STRIPES: usize = 16;

/// A read-only view of one [`CacheMachine`](super::CacheMachine)'s entries that
/// answers hits from any thread without the machine's lock, and without
/// writing any memory another thread's hit writes.
///
/// It sees the machine's own tables (their primary indexes, which the machine
/// alone writes, under its lock), so it answers exactly what
/// [`CacheMachine::lookup`](super::CacheMachine::lookup) would answer with a
/// [`Lookup::Hit`](super::Lookup::Hit), for every key it knows: the same
/// record, under the same deadline, and it marks the entry visited for
/// eviction as the machine does. When it answers `None`, take the lock and
/// ask the machine, which decides everything else: misses, waits, negative
/// hits, expiry (it removes the entry and counts it), closing, and a session
/// found by a key other than the one it was filled under (the view knows
/// each entry by that first key only). A write the machine has been told of
/// is seen by every lookup that starts after.
///
/// A cache that follows an [invalidation feed](super::CacheConfig::feed_bound)
/// decides at every lookup whether freshness is still confirmed; its view
/// answers `None` to everything, so each of its hits takes the lock.
///
/// Its hits are counted in the machine's [`metrics`](super::CacheMachine::metrics)
/// (as lookups and hits of their kind), on counters striped by thread.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tokenstore_core::cache::{CacheConfig, CacheKey, CacheMachine, Lookup, Write};
/// use tokenstore_core::{SessionKey, StoredSession, Timestamp, TokenHash, UserInfo};
///
/// let now = Timestamp::from_unix_secs(1_000);
/// let mut cache = CacheMachine::new(CacheConfig::default());
/// let view = cache.hit_view();
/// let session = Arc::new(StoredSession::new(
///     "sid", UserInfo::new("p", "u", "n"), "tok", now + Duration::from_secs(3600), now,
/// ));
/// let key = CacheKey::Session(SessionKey::Access(TokenHash::of("tok")));
/// assert!(view.lookup(now, &key).is_none()); // not cached: ask the machine
///
/// let Lookup::Miss(ticket) = cache.lookup(now, &key) else { panic!() };
/// cache.fill_session(now, ticket, Some(session));
/// assert!(view.lookup(now, &key).is_some()); // from any thread, no lock
/// assert_eq!(cache.metrics().sessions.hits, 1);
///
/// cache.handle_write(Write::DeleteSessionByHash(TokenHash::of("tok")));
/// assert!(view.lookup(now, &key).is_none());
/// ```
#[derive(Clone)]
pub struct HitView {
    sessions: Arc<Index<CacheKey, SessionEntry>>,
    auth_codes: Arc<Index<CacheKey, Entry<AuthCodeRecord>>>,
    clients: Arc<Index<CacheKey, Entry<ClientRecord>>>,
    state: Arc<ViewState>,
}

impl HitView {
    pub(super) fn new(
        sessions: Arc<Index<CacheKey, SessionEntry>>,
        auth_codes: Arc<Index<CacheKey, Entry<AuthCodeRecord>>>,
        clients: Arc<Index<CacheKey, Entry<ClientRecord>>>,
        open: bool,
    ) -> Self {
        Self {
            sessions,
            auth_codes,
            clients,
            state: Arc::new(ViewState {
                open: AtomicBool::new(open),
                stripes: Default::default(),
            }),
        }
    }

    /// The cached record for `key` at `now`, when the machine would answer
    /// this lookup with a hit; `None` when the machine must decide.
    pub fn lookup(&self, now: Timestamp, key: &CacheKey) -> Option<Cached> {
        if !self.state.open.load(Ordering::Acquire) {
            return None;
        }
        let kind = key.kind();
        let hit = match kind {
            Kind::Session => serve(&self.sessions, now, key, SessionEntry::deadline_for, |e| {
                Cached::Session(e.record.clone())
            }),
            Kind::AuthCode => serve(&self.auth_codes, now, key, Entry::deadline_of, |e| {
                Cached::AuthCode(e.record.clone())
            }),
            Kind::Client => serve(&self.clients, now, key, Entry::deadline_of, |e| {
                Cached::Client(e.record.clone())
            }),
            Kind::State => None,
        }?;
        self.state.count(kind);
        Some(hit)
    }

    /// Stops answering: every later lookup is the machine's.
    pub(super) fn close(&self) {
        self.state.open.store(false, Ordering::Release);
    }

    /// Adds the hits answered here to `metrics`, of `kind`.
    pub(super) fn add_hits(&self, kind: Kind, metrics: &mut KindMetrics) {
        let Some(slot) = slot(kind) else {
            return;
        };
        let hits: u64 = self
            .state
            .stripes
            .iter()
            .map(|s| s.hits[slot].load(Ordering::Relaxed))
            .sum();
        metrics.lookups += hits;
        metrics.hits += hits;
    }
}

impl fmt::Debug for HitView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HitView")
            .field("open", &self.state.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The hit the machine would serve from `index` for `key`: before the
/// entry's deadline only.
fn serve<V>(
    index: &Index<CacheKey, V>,
    now: Timestamp,
    key: &CacheKey,
    deadline: fn(&V, &CacheKey) -> Timestamp,
    hit: fn(&V) -> Cached,
) -> Option<Cached> {
    index
        .peek_with(key, |_, found: &Indexed<V>| {
            serves(now, deadline(&found.value, key)).then(|| {
                found.visit();
                hit(&found.value)
            })
        })
        .flatten()
}

/// What a view and its machine share besides the indexes.
struct ViewState {
    /// False once the machine closed, and always for a cache following a feed.
    open: AtomicBool,
    stripes: [Stripe; STRIPES],
}

impl ViewState {
    fn count(&self, kind: Kind) {
        if let Some(slot) = slot(kind) {
            self.stripes[stripe()].hits[slot].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One thread's hit counters, on cache lines of their own.
#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    hits: [AtomicU64; 3],
}

fn slot(kind: Kind) -> Option<usize> {
    match kind {
        Kind::AuthCode => Some(0),
        Kind::Session => Some(1),
        Kind::Client => Some(2),
        Kind::State => None,
    }
}

/// This thread's stripe: threads are dealt stripes in turn as they first hit.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|s| *s)
}
