//! The cache machine against a model of what it may answer.
//!
//! Sequences of lookups, fills, abandons, writes and clock steps over a small key
//! space (so keys collide). Checked after every step:
//! - a hit is never past the record's expiry minus the skew, nor past the cap;
//! - a hit returns the record of the last fill of that key that landed, and no
//!   write named any of the record's keys since that fill's ticket was issued;
//! - a fill whose key or record keys were written since its ticket never lands,
//!   and a fill is refused only if something was written since its ticket;
//! - the counters add up and entry counts respect the capacities.
//!
//! Shared by the fuzz target `cache` and the stable replay test
//! `tests/tests/fuzz_corpus.rs` (both include this file with `#[path]`).

use arbitrary::Arbitrary;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::SessionKey;
use tokenstore_core::cache::{
    CacheConfig, CacheKey, CacheMachine, Cached, FillOutcome, FillTicket, Lookup, Write,
};
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
    tickets: Vec<(FillTicket, u64)>,
}

/// One fuzz input: the operations, at most 256 of which are run.
#[derive(Arbitrary, Debug)]
pub(crate) struct Input {
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
        ..CacheConfig::default()
    };
    let mut cache = CacheMachine::new(config.clone());
    let mut now = start;
    let mut m = Model {
        step: 0,
        written: HashMap::new(),
        last_write: 0,
        landed: HashMap::new(),
        tickets: Vec::new(),
    };
    for op in ops.into_iter().take(256) {
        m.step += 1;
        match op {
            Op::Lookup { key: pick } => {
                let k = key(pick);
                match cache.lookup(now, &k) {
                    Lookup::Hit(Cached::Session(s)) => check_hit(&m, &k, &s, now, &config),
                    Lookup::Hit(other) => panic!("a session key answered {other:?}"),
                    Lookup::Miss(t) => m.tickets.push((t, m.step)),
                    Lookup::NegativeHit | Lookup::Wait => {}
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
                if let (FillOutcome::Cached, Some(r)) = (outcome, record) {
                    for x in keys {
                        m.landed.insert(x, (r.clone(), issued, now));
                    }
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
            Op::Advance { millis } => now = now + Duration::from_millis(u64::from(millis)),
        }
        let metrics = cache.metrics();
        let s = metrics.sessions;
        assert_eq!(s.lookups, s.hits + s.misses + s.negative_hits + s.waits);
        assert!(metrics.session_entries <= config.session_capacity);
        assert!(metrics.negative_entries <= config.negative_capacity);
        assert_eq!(cache.fills_in_flight(), m.tickets.len());
    }
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
