//! Counters of the cache machine. They hold numbers only: no key, token, hash or
//! identifier.

use super::{FeedMetrics, Kind};

/// Counters for one kind of record.
///
/// `lookups == hits + negative_hits + misses + waits` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindMetrics {
    /// Calls to `lookup`.
    pub lookups: u64,
    /// Lookups answered with a cached record.
    pub hits: u64,
    /// Lookups answered "absent" from a negative entry.
    pub negative_hits: u64,
    /// Lookups that handed out a fill ticket (the caller asks the delegate).
    pub misses: u64,
    /// Lookups told to wait for another caller's fill of the same key.
    pub waits: u64,
    /// Records cached by a fill.
    pub fills: u64,
    /// Absences cached by a fill.
    pub negative_fills: u64,
    /// Fills refused because the key was invalidated after the ticket was issued.
    pub stale_fills_refused: u64,
    /// Writes that passed through.
    pub invalidations: u64,
    /// Entries evicted to respect a capacity.
    pub evictions: u64,
    /// Entries found past their deadline and dropped.
    pub expirations: u64,
}

/// A snapshot of every counter and the current entry counts.
///
/// Laid out in this order, sessions first (`repr(C)`): a cache shard's lock
/// and its session counters then share one cache line, which a session hit
/// writes anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct CacheMetrics {
    /// Sessions.
    pub sessions: KindMetrics,
    /// States (only `invalidations` moves: states are never cached).
    pub states: KindMetrics,
    /// Authorization codes.
    pub auth_codes: KindMetrics,
    /// Clients.
    pub clients: KindMetrics,
    /// Cached sessions now (each reachable by up to three keys).
    pub session_entries: usize,
    /// Cached codes now.
    pub auth_code_entries: usize,
    /// Cached clients now.
    pub client_entries: usize,
    /// Negative entries now, all kinds together.
    pub negative_entries: usize,
    /// The invalidation feed's follower (all zero without a feed).
    pub feed: FeedMetrics,
}

impl KindMetrics {
    fn add(&mut self, other: &Self) {
        self.lookups += other.lookups;
        self.hits += other.hits;
        self.negative_hits += other.negative_hits;
        self.misses += other.misses;
        self.waits += other.waits;
        self.fills += other.fills;
        self.negative_fills += other.negative_fills;
        self.stale_fills_refused += other.stale_fills_refused;
        self.invalidations += other.invalidations;
        self.evictions += other.evictions;
        self.expirations += other.expirations;
    }
}

impl CacheMetrics {
    /// The metrics of a sharded cache from its shards' ([`ShardPlan`](super::ShardPlan)),
    /// in shard order: counters and entry counts add up, except what every
    /// shard counts for the one poller (polls, failures, gaps, keys received,
    /// hints, lapses), taken from the first shard, and backward clock steps
    /// (each shard detects them on its own lookups), the most any shard saw.
    /// A session write reaches every shard, so each counts it in
    /// `sessions.invalidations`: that counter is the first shard's too.
    pub fn combine(shards: impl IntoIterator<Item = Self>) -> Self {
        let mut shards = shards.into_iter();
        let Some(mut total) = shards.next() else {
            return Self::default();
        };
        let first_session_invalidations = total.sessions.invalidations;
        for m in shards {
            for kind in [Kind::State, Kind::AuthCode, Kind::Session, Kind::Client] {
                total.kind_mut(kind).add(m.kind(kind));
            }
            total.session_entries += m.session_entries;
            total.auth_code_entries += m.auth_code_entries;
            total.client_entries += m.client_entries;
            total.negative_entries += m.negative_entries;
            total.feed.unconfirmed += m.feed.unconfirmed;
            total.feed.clock_steps_back = total.feed.clock_steps_back.max(m.feed.clock_steps_back);
        }
        total.sessions.invalidations = first_session_invalidations;
        total
    }

    pub(crate) fn kind_mut(&mut self, kind: Kind) -> &mut KindMetrics {
        match kind {
            Kind::State => &mut self.states,
            Kind::AuthCode => &mut self.auth_codes,
            Kind::Session => &mut self.sessions,
            Kind::Client => &mut self.clients,
        }
    }

    /// The counters of one kind.
    pub fn kind(&self, kind: Kind) -> &KindMetrics {
        match kind {
            Kind::State => &self.states,
            Kind::AuthCode => &self.auth_codes,
            Kind::Session => &self.sessions,
            Kind::Client => &self.clients,
        }
    }
}
