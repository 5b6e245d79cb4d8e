//! The cache machine against a model of what it may answer.
//!
//! Sequences of lookups, fills, abandons, writes and clock steps over a small key
//! space (so keys collide). Checked after every step:
//! - a hit is never past the record's expiry minus the skew, nor past the cap;
//! - a hit returns the record of the last fill of that key that landed, and no
//!   write named any of the record's keys since that fill's ticket was issued;
//! - a fill whose key or record keys were written since its ticket never lands,
//!   and a fill is refused only if something was written since its ticket;
//! - the counters add up and entry counts respect the capacities;
//! - a negative hit is the last negative fill of its key, no write, polled key
//!   or gap came since its ticket, and it is younger than `negative_ttl` (and
//!   than `B` when the cache follows a feed).
//!
//! Feed events (`Input::feed` picks the bound `B`, or no feed): writes on
//! another instance append keys to a log with their true time; `begin_poll`,
//! answers (every key logged before the poll began and some after, or a gap),
//! failures, hints, `poll_timeout` and clock steps back (the machine reads the
//! clock on both sides of each). A polled key counts as a write when the
//! answer arrives, and a gap as a write of every key. The bound: a hit at true
//! time `T` never returns a record (or an absence) that a logged write
//! committed at or before `T - B` ended, taking a delegate read to happen when
//! its ticket is issued. A first poll answers while the cache is empty (fills
//! before it are a known gap, see `tests/tests/feed_props.rs`).
//!
//! Shared by the fuzz target `cache` and the stable replay test
//! `tests/tests/fuzz_corpus.rs` (both include this file with `#[path]`).

use arbitrary::Arbitrary;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::SessionKey;
use tokenstore_core::cache::{
    CacheConfig, CacheKey, CacheMachine, Cached, FillOutcome, FillTicket, Lookup, PollTicket,
    PollTimer, Write,
};
use tokenstore_core::feed::{Invalidations, Watermark};
use tokenstore_core::{Secret, StoredSession, Timestamp, UserInfo};

#[derive(Arbitrary, Debug)]
pub(crate) enum Op {
    Lookup {
        key: KeyPick,
    },
    /// Fill the `ticket`-th outstanding ticket with session `session` (or none).
    Fill {
        ticket: u8,
        session: Option<u8>,
    },
    Abandon {
        ticket: u8,
    },
    StoreSession {
        session: u8,
    },
    DeleteByToken {
        token: u8,
    },
    DeleteById {
        id: u8,
    },
    Advance {
        millis: u16,
    },
    /// Another instance writes session `session` (its keys are logged).
    RemoteStore {
        session: u8,
    },
    /// Another instance deletes by key (that key is logged).
    RemoteDelete {
        key: KeyPick,
    },
    BeginPoll,
    /// Answers the poll in flight with every key logged before it began and
    /// `extra` (modulo what there is) entries logged after; a gap if `gap`.
    Answer {
        extra: u8,
        gap: bool,
    },
    PollFailed,
    Hint,
    PollTimeout,
    /// The clock steps back by 1 s plus `millis`.
    StepBack {
        millis: u16,
    },
}

/// The staleness bound of the feed, or no feed.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum FeedPick {
    Off,
    Quarter,
    One,
    Four,
}

impl FeedPick {
    fn bound(self) -> Option<Duration> {
        match self {
            Self::Off => None,
            Self::Quarter => Some(Duration::from_millis(250)),
            Self::One => Some(Duration::from_secs(1)),
            Self::Four => Some(Duration::from_secs(4)),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum KeyPick {
    Access(u8),
    Id(u8),
    Refresh(u8),
}

const KEYS: u8 = 4;

/// Session `n`: ids, tokens and expiry all derived from `n`, so different
/// sessions can share an id or a refresh token.
fn session(n: u8, start: Timestamp) -> Arc<StoredSession> {
    let mut s = StoredSession::new(
        format!("id-{}", n % KEYS),
        UserInfo::new("p", "u", "n"),
        format!("at-{}", n % (KEYS + 1)),
        start + Duration::from_secs(u64::from(n % 7) * 3),
        start,
    );
    if !n.is_multiple_of(3) {
        s.refresh_token = Some(Secret::new(format!("rt-{}", n % KEYS)));
        s.refresh_expires_at = Some(start + Duration::from_secs(u64::from(n % 5) * 4));
    }
    Arc::new(s)
}

fn key(pick: KeyPick) -> CacheKey {
    use tokenstore_core::TokenHash;
    match pick {
        KeyPick::Access(n) => CacheKey::Session(SessionKey::Access(TokenHash::of(&format!(
            "at-{}",
            n % (KEYS + 1)
        )))),
        KeyPick::Id(n) => CacheKey::Session(SessionKey::Id(format!("id-{}", n % KEYS))),
        KeyPick::Refresh(n) => CacheKey::Session(SessionKey::Refresh(TokenHash::of(&format!(
            "rt-{}",
            n % KEYS
        )))),
    }
}

struct Model {
    step: u64,
    /// Step of the last write naming each key.
    written: HashMap<CacheKey, u64>,
    last_write: u64,
    /// Record of the last landed fill per key, with its ticket's step and the
    /// time it landed.
    landed: HashMap<CacheKey, (Arc<StoredSession>, u64, Timestamp)>,
    /// The last negative fill that landed per key: (time, ticket step).
    negative: HashMap<CacheKey, (Timestamp, u64)>,
    tickets: Vec<(FillTicket, u64)>,
    /// The step of the last gap answer.
    gap: u64,
    /// The other instances' writes: (true time, step, keys).
    log: Vec<(Duration, u64, Vec<CacheKey>)>,
    /// The poll in flight and the log's length when it began.
    poll: Option<(PollTicket, usize)>,
    /// True time since the start, and what the clock reads minus it (ms).
    real: Duration,
    offset: i64,
    start: Timestamp,
}

impl Model {
    fn now(&self) -> Timestamp {
        let t = self.start + self.real;
        let back = Duration::from_millis(self.offset.unsigned_abs());
        if self.offset < 0 { t - back } else { t + back }
    }

    /// The true time of the first logged write after step `issued` naming
    /// any of `keys`: when what a read at that step saw ended.
    fn ended(&self, keys: &[CacheKey], issued: u64) -> Option<Duration> {
        self.log
            .iter()
            .find(|(_, step, logged)| *step > issued && logged.iter().any(|k| keys.contains(k)))
            .map(|(t, ..)| *t)
    }

    /// A hit now must not be older than the bound.
    fn check_bound(&self, keys: &[CacheKey], issued: u64, bound: Option<Duration>) {
        if let (Some(b), Some(e)) = (bound, self.ended(keys, issued)) {
            assert!(
                e + b > self.real,
                "served at {:?} what a write at {e:?} ended (B = {b:?})",
                self.real
            );
        }
    }
}

/// One fuzz input: the feed's bound and the operations, at most 256 of which
/// are run.
#[derive(Arbitrary, Debug)]
pub(crate) struct Input {
    feed: FeedPick,
    ops: Vec<Op>,
}

/// Runs `input` and panics on the first violation.
pub(crate) fn check(input: Input) {
    let ops = input.ops;
    let start = Timestamp::from_unix_secs(1_000_000);
    let config = CacheConfig {
        ttl_cap: Duration::from_secs(10),
        skew: Duration::from_millis(500),
        negative_ttl: Duration::from_secs(1),
        session_capacity: 3,
        negative_capacity: 2,
        feed_bound: input.feed.bound(),
        ..CacheConfig::default()
    };
    let mut cache = CacheMachine::new(config.clone());
    let mut m = Model {
        step: 0,
        written: HashMap::new(),
        last_write: 0,
        landed: HashMap::new(),
        negative: HashMap::new(),
        tickets: Vec::new(),
        gap: 0,
        log: Vec::new(),
        poll: None,
        real: Duration::ZERO,
        offset: 0,
        start,
    };
    // The first poll answers while the cache is empty.
    if let Some(first) = cache.begin_poll(m.now()) {
        let found = Invalidations {
            keys: Vec::new(),
            watermark: Watermark(0),
            gap: false,
        };
        cache.handle_invalidations(m.now(), first, found);
    }
    for op in ops.into_iter().take(256) {
        m.step += 1;
        let now = m.now();
        match op {
            Op::Lookup { key: pick } => {
                let k = key(pick);
                match cache.lookup(now, &k) {
                    Lookup::Hit(Cached::Session(s)) => check_hit(&m, &k, &s, now, &config),
                    Lookup::Hit(other) => panic!("a session key answered {other:?}"),
                    Lookup::Miss(t) => m.tickets.push((t, m.step)),
                    Lookup::NegativeHit => check_negative(&m, &k, now, &config),
                    Lookup::Wait => {}
                    Lookup::Closed => panic!("never closed"),
                }
            }
            Op::Fill {
                ticket,
                session: pick,
            } => {
                if m.tickets.is_empty() {
                    continue;
                }
                let (t, issued) = m.tickets.remove(usize::from(ticket) % m.tickets.len());
                let k = t.key().clone();
                let record = pick.map(|n| session(n, start));
                let keys: Vec<CacheKey> = record
                    .as_deref()
                    .map(CacheKey::of_session)
                    .unwrap_or_default();
                let stale = std::iter::once(&k)
                    .chain(&keys)
                    .any(|x| m.written.get(x).is_some_and(|&w| w > issued));
                let outcome = cache.fill_session(now, t, record.clone());
                if stale {
                    assert_eq!(outcome, FillOutcome::Refused, "a stale fill landed");
                }
                if outcome == FillOutcome::Refused {
                    assert!(
                        m.last_write > issued,
                        "refused with no write since the ticket"
                    );
                }
                if m.gap > issued {
                    assert_eq!(outcome, FillOutcome::Refused, "a fill across a gap landed");
                }
                match (outcome, record) {
                    (FillOutcome::Cached, Some(r)) => {
                        for x in keys {
                            m.landed.insert(x, (r.clone(), issued, now));
                        }
                    }
                    (FillOutcome::CachedNegative, None) => {
                        m.negative.insert(k, (now, issued));
                    }
                    _ => {}
                }
            }
            Op::Abandon { ticket } => {
                if !m.tickets.is_empty() {
                    let (t, _) = m.tickets.remove(usize::from(ticket) % m.tickets.len());
                    cache.abandon(t);
                }
            }
            Op::StoreSession { session: n } => {
                let s = session(n, start);
                write(&mut m, CacheKey::of_session(&s));
                cache.handle_write(Write::StoreSession(&s));
            }
            Op::DeleteByToken { token } => {
                let k = key(KeyPick::Access(token));
                let CacheKey::Session(SessionKey::Access(h)) = k else {
                    unreachable!()
                };
                write(&mut m, vec![k]);
                cache.handle_write(Write::DeleteSessionByHash(h));
            }
            Op::DeleteById { id } => {
                let k = key(KeyPick::Id(id));
                write(&mut m, vec![k]);
                cache.handle_write(Write::DeleteSessionById(&format!("id-{}", id % KEYS)));
            }
            Op::Advance { millis } => m.real += Duration::from_millis(u64::from(millis)),
            Op::RemoteStore { session: n } => {
                let keys = CacheKey::of_session(&session(n, start));
                m.log.push((m.real, m.step, keys));
            }
            Op::RemoteDelete { key: pick } => m.log.push((m.real, m.step, vec![key(pick)])),
            Op::BeginPoll => {
                let began = cache.begin_poll(now);
                let expected = config.feed_bound.is_some() && m.poll.is_none();
                assert_eq!(began.is_some(), expected, "begin_poll");
                if let Some(ticket) = began {
                    m.poll = Some((ticket, m.log.len()));
                }
            }
            Op::Answer { extra, gap } => answer(&mut cache, &mut m, extra, gap),
            Op::PollFailed => {
                if let Some((ticket, _)) = m.poll.take() {
                    cache.handle_poll_failed(now, ticket);
                }
            }
            Op::Hint => {
                cache.handle_hint(now);
                if let Some(b) = config.feed_bound {
                    // At once, or after the least gap between two poll starts.
                    let gap = (b / 200).clamp(Duration::from_millis(1), Duration::from_millis(5));
                    let timer = cache.poll_timeout(now);
                    assert!(
                        matches!(timer, PollTimer::Due | PollTimer::InFlight(_))
                            || matches!(timer, PollTimer::After(d) if d <= gap),
                        "after a hint: {timer:?}"
                    );
                }
            }
            Op::PollTimeout => {
                let timer = cache.poll_timeout(now);
                match config.feed_bound {
                    None => assert_eq!(timer, PollTimer::Off),
                    Some(_) => assert_eq!(
                        matches!(timer, PollTimer::InFlight(_)),
                        m.poll.is_some(),
                        "{timer:?}"
                    ),
                }
            }
            Op::StepBack { millis } => {
                cache.poll_timeout(now);
                m.offset -= 1_000 + i64::from(millis);
                cache.poll_timeout(m.now());
            }
        }
        let metrics = cache.metrics();
        let s = metrics.sessions;
        assert_eq!(s.lookups, s.hits + s.misses + s.negative_hits + s.waits);
        assert!(metrics.session_entries <= config.session_capacity);
        assert!(metrics.negative_entries <= config.negative_capacity);
        assert_eq!(cache.fills_in_flight(), m.tickets.len());
    }
}

/// Gives the poll in flight its answer: the keys logged from its watermark
/// up to some point after it began (or a gap).
fn answer(cache: &mut CacheMachine, m: &mut Model, extra: u8, gap: bool) {
    let Some((ticket, began_at)) = m.poll.take() else {
        return;
    };
    let upto = began_at + usize::from(extra) % (m.log.len() - began_at + 1);
    let since = ticket.since().map_or(upto, |w| w.0 as usize).min(upto);
    let keys: Vec<CacheKey> = if gap {
        Vec::new()
    } else {
        m.log[since..upto]
            .iter()
            .flat_map(|(_, _, k)| k.clone())
            .collect()
    };
    if gap {
        m.gap = m.step;
        m.last_write = m.step;
    } else if !keys.is_empty() {
        write(m, keys.clone());
    }
    let found = Invalidations {
        keys,
        watermark: Watermark(upto as u64),
        gap,
    };
    cache.handle_invalidations(m.now(), ticket, found);
}

/// A write marks the keys it names.
fn write(m: &mut Model, keys: Vec<CacheKey>) {
    m.last_write = m.step;
    for k in keys {
        m.written.insert(k, m.step);
    }
}

fn check_hit(
    m: &Model,
    k: &CacheKey,
    s: &Arc<StoredSession>,
    now: Timestamp,
    config: &CacheConfig,
) {
    let (expected, issued, filled_at) = m.landed.get(k).expect("a hit needs a landed fill");
    assert!(Arc::ptr_eq(expected, s), "hit is not the last landed fill");
    assert!(*issued > m.gap, "hit on a fill from before a gap");
    m.check_bound(&CacheKey::of_session(s), *issued, config.feed_bound);
    for x in CacheKey::of_session(s) {
        assert!(
            m.written.get(&x).is_none_or(|&w| w < *issued),
            "hit after a write to one of its keys"
        );
    }
    let expiry = match k {
        CacheKey::Session(SessionKey::Refresh(_)) => s.refresh_expires_at,
        _ => s.access_expires_at,
    };
    if let Some(e) = expiry {
        assert!(now < e - config.skew, "hit inside the skew window");
    }
    assert!(
        now < *filled_at + config.ttl_cap - config.skew,
        "hit past the cap"
    );
}

fn check_negative(m: &Model, k: &CacheKey, now: Timestamp, config: &CacheConfig) {
    let (filled_at, issued) = *m
        .negative
        .get(k)
        .expect("a negative hit needs a negative fill");
    assert!(
        m.written.get(k).is_none_or(|&w| w < issued),
        "absent after a write to the key"
    );
    assert!(issued > m.gap, "absent from before a gap");
    let ttl = config
        .feed_bound
        .map_or(config.negative_ttl, |b| b.min(config.negative_ttl));
    assert!(now < filled_at + ttl, "absent past its lifetime");
    m.check_bound(std::slice::from_ref(k), issued, config.feed_bound);
}
