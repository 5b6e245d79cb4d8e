//! Property tests of the cache machine following an invalidation feed
//! (`DESIGN.md` section 7), driven directly (no runtime).
//!
//! - `feed_bound_holds`: random sequences of writes committed on another
//!   instance (appended to a model log, each with the true time it committed),
//!   polls (begun at some time, answered later with every logged key committed
//!   before the poll began and possibly some after, or failed, or a gap),
//!   hints, lookups, delegate reads and fills (the delegate answers from the
//!   model store as it was when the read started, which may be after the
//!   ticket was issued), abandons, and time: small and large steps of true
//!   time, clock steps forward and back (large ones, which the machine must
//!   detect, and small ones under its tolerance), and clock readings that lag
//!   true time by up to `clock_resolution`. `B` is one of 100 ms, 400 ms, 1 s
//!   and 2 s. The invariant: a hit (positive or negative) answered at true time
//!   `T` never returns a record version (or an absence) that a write committed
//!   at or before `T - B` ended. Small undetected steps back of the clock add
//!   their sum to the bound (the machine cannot see them). Counters add up and
//!   single flight holds. Over the whole run, some hits happen (the property
//!   is not vacuous).
//! - `regular_polls_serve_hits`: with a poll every `B / 2` or sooner and no
//!   write, a lookup of a key whose fill landed (and did not expire) is a hit.
//! - `a_fill_before_the_first_poll_is_not_served_past_b`: a deterministic case
//!   (see its docs) that FAILS on the machine as of 855b77f: the first poll
//!   (`since = None`) returns no keys, yet confirms entries filled before it.
//!
//! Two modelling choices, both where the machine could not do better:
//! - The property starts with a first poll answered while the cache is empty
//!   (the failing test covers fills before it).
//! - The machine sees a clock reading right before and right after each large
//!   step back. A step back is detected only by a reading that goes back, so a
//!   step masked by the time elapsed since the previous reading is invisible
//!   (the poller reads at least every `B / 2` while it runs).
//!
//! Cases: 1,024 for `feed_bound_holds` and 256 for `regular_polls_serve_hits`
//! by default; `TOKENSTORE_PROPTEST_CASES=<n>` sets both.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::cache::{
    CacheConfig, CacheKey, CacheMachine, Cached, FillOutcome, FillTicket, Lookup, PollTicket,
    PollTimer,
};
use tokenstore_core::feed::{Invalidations, Watermark, log};
use tokenstore_core::{Secret, SessionKey, StoredSession, Timestamp, TokenHash, UserInfo};

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

use tokenstore_tests::props::config;

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// `T0` plus `ms` (which may be negative).
fn at(ms: i64) -> Timestamp {
    let d = millis(ms.unsigned_abs());
    if ms < 0 { T0 - d } else { T0 + d }
}

fn access_key(n: u8) -> CacheKey {
    CacheKey::Session(SessionKey::Access(TokenHash::of(&format!("at-{n}"))))
}

fn id_key(n: u8) -> CacheKey {
    CacheKey::Session(SessionKey::Id(format!("sess-{n}")))
}

fn refresh_key(n: u8) -> CacheKey {
    CacheKey::Session(SessionKey::Refresh(TokenHash::of(&format!("rt-{n}"))))
}

/// A session of the model: id `sess-<id>`, access token `at-<access>`,
/// refresh token `rt-<refresh>`, valid for ten hours; `version` tells versions
/// apart.
fn session(id: u8, access: u8, refresh: Option<u8>, version: usize) -> Arc<StoredSession> {
    let user = UserInfo::new("github", format!("user-{id}"), format!("v{version}"));
    let mut s = StoredSession::new(
        format!("sess-{id}"),
        user,
        format!("at-{access}"),
        T0 + Duration::from_secs(36_000),
        T0,
    );
    if let Some(r) = refresh {
        s.refresh_token = Some(Secret::new(format!("rt-{r}")));
    }
    Arc::new(s)
}

/// A key of the cache, by small indices.
#[derive(Clone, Copy, PartialEq, Eq)]
enum K {
    Access(u8),
    Id(u8),
    Refresh(u8),
}

impl fmt::Debug for K {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Access(n) => write!(f, "access:{n}"),
            Self::Id(n) => write!(f, "id:{n}"),
            Self::Refresh(n) => write!(f, "refresh:{n}"),
        }
    }
}

impl K {
    fn key(self) -> CacheKey {
        match self {
            Self::Access(n) => access_key(n),
            Self::Id(n) => id_key(n),
            Self::Refresh(n) => refresh_key(n),
        }
    }
}

/// A write committed on another instance (logged, never reported to this
/// cache with `handle_write`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum W {
    Store {
        id: u8,
        access: u8,
        refresh: Option<u8>,
    },
    DeleteByToken(u8),
    DeleteById(u8),
}

/// A step of the driver.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum F {
    Write(W),
    /// A lookup; `lag`: the reading lags true time by `clock_resolution`.
    Lookup {
        key: K,
        lag: bool,
    },
    /// The delegate read of the `ticket`-th outstanding ticket starts now
    /// (a fill of a ticket not read yet reads when it fills).
    Read {
        ticket: u8,
    },
    Fill {
        ticket: u8,
    },
    Abandon {
        ticket: u8,
    },
    BeginPoll,
    /// Answers the poll in flight with every key logged before it began and
    /// `extra` (modulo what there is) entries logged after.
    Answer {
        extra: u8,
    },
    Gap {
        extra: u8,
    },
    FailPoll,
    Hint,
    Timeout,
    /// True time advances (ms).
    Advance(u64),
    /// The clock steps back (ms, far above the machine's tolerance).
    StepBack(u64),
    StepForward(u64),
    /// The clock steps back by half the machine's tolerance (undetectable).
    Nudge,
}

fn k_strategy() -> impl Strategy<Value = K> {
    prop_oneof![
        (0..3u8).prop_map(K::Access),
        (0..3u8).prop_map(K::Id),
        (0..2u8).prop_map(K::Refresh),
    ]
}

fn f_strategy() -> impl Strategy<Value = F> {
    let write = prop_oneof![
        3 => (0..3u8, 0..3u8, prop::option::of(0..2u8))
            .prop_map(|(id, access, refresh)| W::Store { id, access, refresh }),
        1 => (0..3u8).prop_map(W::DeleteByToken),
        1 => (0..3u8).prop_map(W::DeleteById),
    ];
    let advance = prop_oneof![
        Just(1u64),
        Just(5),
        Just(20),
        Just(50),
        Just(100),
        Just(250),
        Just(500),
        Just(1_000),
        Just(2_500),
    ];
    prop_oneof![
        4 => write.prop_map(F::Write),
        10 => (k_strategy(), any::<bool>()).prop_map(|(key, lag)| F::Lookup { key, lag }),
        3 => any::<u8>().prop_map(|ticket| F::Read { ticket }),
        6 => any::<u8>().prop_map(|ticket| F::Fill { ticket }),
        1 => any::<u8>().prop_map(|ticket| F::Abandon { ticket }),
        4 => Just(F::BeginPoll),
        3 => any::<u8>().prop_map(|extra| F::Answer { extra }),
        2 => any::<u8>().prop_map(|extra| F::Gap { extra }),
        1 => Just(F::FailPoll),
        1 => Just(F::Hint),
        1 => Just(F::Timeout),
        6 => advance.prop_map(F::Advance),
        1 => prop_oneof![Just(1_000u64), Just(3_000)].prop_map(F::StepBack),
        1 => prop_oneof![Just(1_000u64), Just(5_000)].prop_map(F::StepForward),
        1 => Just(F::Nudge),
    ]
}

fn bound_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![Just(100u64), Just(400), Just(1_000), Just(2_000)]
}

fn cache_config(bound_ms: u64, capacity: usize, resolution_ms: u64) -> CacheConfig {
    CacheConfig {
        ttl_cap: Duration::from_secs(30),
        skew: Duration::from_secs(1),
        negative_ttl: Duration::from_secs(2),
        session_capacity: capacity,
        negative_capacity: capacity,
        clock_resolution: millis(resolution_ms),
        feed_bound: Some(millis(bound_ms)),
        ..CacheConfig::default()
    }
}

/// One version of a session in the model store.
struct Version {
    record: Arc<StoredSession>,
    /// True time (ms after `T0`) of the write that removed or replaced it.
    ended: Option<u64>,
}

/// What a delegate read saw for its key.
#[derive(Clone, Copy)]
struct Read {
    /// The version found, if any.
    found: Option<usize>,
    /// The index in the key's history of the next change after the read (the
    /// end of the absence it saw, once there is one).
    next_change: usize,
}

struct Outstanding {
    ticket: FillTicket,
    read: Option<Read>,
}

struct InFlight {
    ticket: PollTicket,
    /// The log's length when the poll began.
    began_at: usize,
}

/// The other instance's store, its log, and this cache's driver state.
struct World {
    bound: u64,
    resolution: u64,
    /// True time, ms after `T0`; never goes back.
    real: u64,
    /// What the clock reads minus true time (ms).
    offset: i64,
    /// Sum of the undetectable steps back so far (ms).
    allowance: u64,
    versions: Vec<Version>,
    /// Versions in the store now.
    current: Vec<usize>,
    /// One entry per write: the keys it logged.
    log: Vec<Vec<CacheKey>>,
    /// Per key, the true times at which the store's answer for it changed.
    history: HashMap<CacheKey, Vec<u64>>,
    tickets: Vec<Outstanding>,
    /// Per key, what the last negative fill that landed had read.
    negative: HashMap<CacheKey, Read>,
    poll: Option<InFlight>,
    hits: u64,
}

impl World {
    fn new(bound: u64, resolution: u64) -> Self {
        Self {
            bound,
            resolution,
            real: 0,
            offset: 0,
            allowance: 0,
            versions: Vec::new(),
            current: Vec::new(),
            log: Vec::new(),
            history: HashMap::new(),
            tickets: Vec::new(),
            negative: HashMap::new(),
            poll: None,
            hits: 0,
        }
    }

    /// What the clock reads now (`lag`: `clock_resolution` behind).
    fn now(&self, lag: bool) -> Timestamp {
        let lag = if lag { self.resolution } else { 0 };
        at(self.real as i64 + self.offset - lag as i64)
    }

    /// The machine's tolerance for readings out of order (ms, rounded down).
    fn slack(&self) -> u64 {
        (self.bound / 8).min(100)
    }

    fn keys_of(&self, v: usize) -> Vec<CacheKey> {
        CacheKey::of_session(&self.versions[v].record)
    }

    fn lookup_store(&self, key: &CacheKey) -> Read {
        Read {
            found: self
                .current
                .iter()
                .copied()
                .find(|&v| self.keys_of(v).contains(key)),
            next_change: self.history.get(key).map_or(0, Vec::len),
        }
    }

    fn changed(&mut self, keys: &[CacheKey]) {
        for k in keys {
            self.history.entry(k.clone()).or_default().push(self.real);
        }
    }

    /// Removes version `v` from the store; returns its keys.
    fn end(&mut self, v: usize) -> Vec<CacheKey> {
        self.current.retain(|&c| c != v);
        self.versions[v].ended = Some(self.real);
        let keys = self.keys_of(v);
        self.changed(&keys);
        keys
    }

    fn commit(&mut self, w: W) {
        let logged = match w {
            W::Store {
                id,
                access,
                refresh,
            } => {
                let record = session(id, access, refresh, self.versions.len());
                let new_keys = CacheKey::of_session(&record);
                let replaced: Vec<usize> = self
                    .current
                    .iter()
                    .copied()
                    .filter(|&v| self.keys_of(v).iter().any(|k| new_keys.contains(k)))
                    .collect();
                let olds: Vec<StoredSession> = replaced
                    .iter()
                    .map(|&v| (*self.versions[v].record).clone())
                    .collect();
                for v in replaced {
                    self.end(v);
                }
                let logged = log::stored_session(&record, &olds);
                self.versions.push(Version {
                    record,
                    ended: None,
                });
                self.current.push(self.versions.len() - 1);
                self.changed(&new_keys);
                logged
            }
            W::DeleteByToken(n) => self.delete(&access_key(n)),
            W::DeleteById(n) => self.delete(&id_key(n)),
        };
        self.log.push(logged);
    }

    fn delete(&mut self, key: &CacheKey) -> Vec<CacheKey> {
        match self.lookup_store(key).found {
            Some(v) => {
                let deleted = (*self.versions[v].record).clone();
                self.end(v);
                log::deleted_session(&deleted)
            }
            None => Vec::new(),
        }
    }

    /// A hit served at the current true time must not be older than the bound.
    fn check_fresh(&self, ended: Option<u64>, what: &str) -> Result<(), TestCaseError> {
        if let Some(e) = ended {
            prop_assert!(
                e + self.bound + self.allowance > self.real,
                "{} ended at {}ms, served at {}ms (B = {}ms, allowance {}ms)",
                what,
                e,
                self.real,
                self.bound,
                self.allowance
            );
        }
        Ok(())
    }

    fn lookup(&mut self, cache: &mut CacheMachine, k: K, lag: bool) -> Result<(), TestCaseError> {
        let key = k.key();
        let out = self.tickets.iter().any(|t| *t.ticket.key() == key);
        match cache.lookup(self.now(lag), &key) {
            Lookup::Hit(Cached::Session(s)) => {
                self.hits += 1;
                let v = self
                    .versions
                    .iter()
                    .position(|v| Arc::ptr_eq(&v.record, &s))
                    .ok_or_else(|| TestCaseError::fail(format!("{k:?}: hit on no version")))?;
                prop_assert!(self.keys_of(v).contains(&key), "{:?}: wrong record", k);
                self.check_fresh(self.versions[v].ended, &format!("{k:?}: version {v}"))?;
            }
            Lookup::Hit(other) => return Err(TestCaseError::fail(format!("{k:?}: {other:?}"))),
            Lookup::NegativeHit => {
                self.hits += 1;
                let read = self.negative.get(&key).ok_or_else(|| {
                    TestCaseError::fail(format!("{k:?}: a negative hit with no negative fill"))
                })?;
                let ended = self
                    .history
                    .get(&key)
                    .and_then(|h| h.get(read.next_change))
                    .copied();
                self.check_fresh(ended, &format!("{k:?}: an absence"))?;
            }
            Lookup::Miss(ticket) => {
                prop_assert!(!out, "{:?}: a second ticket for one key", k);
                self.tickets.push(Outstanding { ticket, read: None });
            }
            Lookup::Wait => prop_assert!(out, "{:?}: told to wait with no fill out", k),
            Lookup::Closed => return Err(TestCaseError::fail("closed")),
        }
        Ok(())
    }

    fn fill(&mut self, cache: &mut CacheMachine, i: u8) {
        if self.tickets.is_empty() {
            return;
        }
        let t = self.tickets.remove(usize::from(i) % self.tickets.len());
        let key = t.ticket.key().clone();
        let read = t.read.unwrap_or_else(|| self.lookup_store(&key));
        let record = read.found.map(|v| self.versions[v].record.clone());
        if cache.fill_session(self.now(false), t.ticket, record) == FillOutcome::CachedNegative {
            self.negative.insert(key, read);
        }
    }

    fn answer(&mut self, cache: &mut CacheMachine, extra: u8, gap: bool) {
        let Some(p) = self.poll.take() else { return };
        let after = self.log.len() - p.began_at;
        let upto = p.began_at + usize::from(extra) % (after + 1);
        let since = p.ticket.since().map_or(upto, |w| w.0 as usize);
        let keys = if gap {
            Vec::new()
        } else {
            self.log[since.min(upto)..upto].concat()
        };
        let found = Invalidations {
            keys,
            watermark: Watermark(upto as u64),
            gap,
        };
        cache.handle_invalidations(self.now(false), p.ticket, found);
    }

    fn step(&mut self, cache: &mut CacheMachine, f: F) -> Result<(), TestCaseError> {
        match f {
            F::Write(w) => self.commit(w),
            F::Lookup { key, lag } => self.lookup(cache, key, lag)?,
            F::Read { ticket } => {
                if !self.tickets.is_empty() {
                    let i = usize::from(ticket) % self.tickets.len();
                    if self.tickets[i].read.is_none() {
                        let read = self.lookup_store(self.tickets[i].ticket.key());
                        self.tickets[i].read = Some(read);
                    }
                }
            }
            F::Fill { ticket } => self.fill(cache, ticket),
            F::Abandon { ticket } => {
                if !self.tickets.is_empty() {
                    let t = self
                        .tickets
                        .remove(usize::from(ticket) % self.tickets.len());
                    cache.abandon(t.ticket);
                }
            }
            F::BeginPoll => {
                let began = cache.begin_poll(self.now(false));
                prop_assert_eq!(began.is_some(), self.poll.is_none(), "one poll at a time");
                if let Some(ticket) = began {
                    let began_at = self.log.len();
                    self.poll = Some(InFlight { ticket, began_at });
                }
            }
            F::Answer { extra } => self.answer(cache, extra, false),
            F::Gap { extra } => self.answer(cache, extra, true),
            F::FailPoll => {
                if let Some(p) = self.poll.take() {
                    cache.handle_poll_failed(self.now(false), p.ticket);
                }
            }
            F::Hint => {
                cache.handle_hint(self.now(false));
                let timer = cache.poll_timeout(self.now(false));
                // At once, or after the least gap between two poll starts.
                let gap = (Duration::from_millis(self.bound) / 200)
                    .clamp(Duration::from_millis(1), Duration::from_millis(5));
                prop_assert!(
                    matches!(timer, PollTimer::Due | PollTimer::InFlight(_))
                        || matches!(timer, PollTimer::After(d) if d <= gap),
                    "after a hint: {:?}",
                    timer
                );
            }
            F::Timeout => {
                let timer = cache.poll_timeout(self.now(false));
                let in_flight = matches!(timer, PollTimer::InFlight(_));
                prop_assert_eq!(in_flight, self.poll.is_some(), "{:?}", timer);
            }
            F::Advance(ms) => self.real += ms,
            F::StepBack(ms) => {
                // The machine reads the clock on both sides of the step.
                cache.poll_timeout(self.now(false));
                self.offset -= ms as i64;
                cache.poll_timeout(self.now(false));
            }
            F::StepForward(ms) => self.offset += ms as i64,
            F::Nudge => {
                let d = self.slack() / 2;
                self.offset -= d as i64;
                self.allowance += d;
            }
        }
        let m = cache.metrics().sessions;
        prop_assert_eq!(m.lookups, m.hits + m.negative_hits + m.misses + m.waits);
        prop_assert_eq!(cache.fills_in_flight(), self.tickets.len());
        Ok(())
    }
}

/// Runs one case; returns how many hits (positive or negative) were served.
fn bound_case(
    bound: u64,
    capacity: usize,
    resolution: u64,
    steps: &[F],
) -> Result<u64, TestCaseError> {
    let mut cache = CacheMachine::new(cache_config(bound, capacity, resolution));
    let mut w = World::new(bound, resolution);
    // The first poll answers while the cache is empty (see the docs above).
    let first = cache.begin_poll(w.now(false)).expect("the first poll");
    w.poll = Some(InFlight {
        ticket: first,
        began_at: 0,
    });
    w.answer(&mut cache, 0, false);
    for &f in steps {
        w.step(&mut cache, f)?;
    }
    Ok(w.hits)
}

#[test]
fn feed_bound_holds() {
    let mut runner = TestRunner::new(config(1024));
    let hits = Cell::new(0u64);
    let strategy = (
        bound_strategy(),
        prop_oneof![Just(2usize), Just(16)],
        prop_oneof![Just(0u64), Just(10)],
        vec(f_strategy(), 0..150),
    );
    let result = runner.run(&strategy, |(bound, capacity, resolution, steps)| {
        hits.set(hits.get() + bound_case(bound, capacity, resolution, &steps)?);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("feed_bound_holds: {} hits served in all", hits.get());
    assert!(
        hits.get() > 0,
        "no hit in any case: the property is vacuous"
    );
}

/// One step of the regular scenario: advance `advance` ms, then look up `key`.
fn regular_case(bound: u64, steps: &[(K, u64)]) -> Result<u64, TestCaseError> {
    let mut cache = CacheMachine::new(cache_config(bound, 16, 10));
    let mut w = World::new(bound, 10);
    for w_ in [
        W::Store {
            id: 0,
            access: 0,
            refresh: Some(0),
        },
        W::Store {
            id: 1,
            access: 1,
            refresh: None,
        },
    ] {
        w.commit(w_);
    }
    let mut last_poll: Option<u64> = None;
    let mut filled: HashMap<CacheKey, u64> = HashMap::new();
    for &(k, advance) in steps {
        w.real += advance;
        if last_poll.is_none_or(|p| w.real >= p + bound / 2) {
            w.step(&mut cache, F::BeginPoll)?;
            w.step(&mut cache, F::Answer { extra: 0 })?;
            last_poll = Some(w.real);
        }
        let key = k.key();
        let before = w.hits;
        w.lookup(&mut cache, k, true)?;
        // Entries live about ttl_cap - skew, negative ones at most B.
        let fresh = filled.get(&key).is_some_and(|&f| {
            let life = if w.lookup_store(&key).found.is_some() {
                28_000
            } else {
                bound - w.resolution
            };
            w.real < f + life
        });
        if fresh {
            prop_assert_eq!(w.hits, before + 1, "{:?}: no hit with regular polls", k);
        }
        if w.tickets.is_empty() {
            continue;
        }
        w.fill(&mut cache, 0);
        filled.insert(key, w.real);
    }
    Ok(w.hits)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn regular_polls_serve_hits(
        bound in bound_strategy(),
        steps in vec((k_strategy(), 0..40u64), 1..60),
    ) {
        let bound_quarter = bound / 4;
        let steps: Vec<(K, u64)> =
            steps.into_iter().map(|(k, a)| (k, a * bound_quarter / 40)).collect();
        let hits = regular_case(bound, &steps)?;
        let repeated = steps
            .iter()
            .enumerate()
            .any(|(i, (k, _))| steps[..i].iter().any(|(j, _)| j == k));
        if repeated {
            prop_assert!(hits > 0, "a key was looked up twice and never hit");
        }
    }
}

/// A fill whose delegate read happened before the first poll must not be
/// served past `B` after a write that ended its record.
///
/// Timeline (`B` = 1 s): at 0 ms a lookup misses, the delegate returns `v` and
/// the fill lands (nothing is served yet: freshness is unconfirmed). At 100 ms
/// another instance deletes `v` (logged). At 200 ms the first poll starts; as
/// the feed's contract says for `since = None`, its answer holds no keys, only
/// the current watermark (past the delete). Freshness is then confirmed from
/// 200 ms, and at 1,150 ms the cache serves `v`, deleted 1,050 ms earlier (and
/// would until `ttl_cap`).
///
/// FAILS on 855b77f: the machine keeps entries filled, and fills in flight
/// issued, before its first successful poll, though that poll cannot name
/// what was invalidated before it.
#[test]
fn a_fill_before_the_first_poll_is_not_served_past_b() {
    let mut cache = CacheMachine::new(cache_config(1_000, 16, 0));
    let v = session(0, 0, None, 0);
    let Lookup::Miss(ticket) = cache.lookup(at(0), &access_key(0)) else {
        panic!("an empty cache misses");
    };
    assert_eq!(
        cache.fill_session(at(0), ticket, Some(v)),
        FillOutcome::Cached
    );
    // 100 ms: deleted on another instance (log entry 1). 200 ms: first poll.
    let first = cache.begin_poll(at(200)).expect("the first poll");
    assert_eq!(first.since(), None);
    let answer = Invalidations {
        keys: Vec::new(),
        watermark: Watermark(1),
        gap: false,
    };
    cache.handle_invalidations(at(210), first, answer);
    let served = cache.lookup(at(1_150), &access_key(0));
    assert!(
        !matches!(served, Lookup::Hit(_)),
        "served a session deleted 1,050 ms earlier (B = 1 s): {served:?}"
    );
}
