//! The same rules, checked on [`CacheMachine`] directly: no runtime, no
//! delegate, every step explicit. Each body is a plain `pub fn`, instantiated
//! once by [`cache_machine_suite!`](crate::cache_machine_suite).

use crate::T0;
use crate::sample::{HOUR, live_session};
use std::sync::Arc;
use tokenstore::cache::{
    CacheConfig, CacheKey, CacheMachine, FillOutcome, FillTicket, Lookup, Write,
};
use tokenstore_core::SessionKey;
use tokenstore_core::{StoredSession, TokenHash};

/// Unknown keys looked up in [`negative_flood_stays_bounded`].
pub const FLOOD: usize = 1_000_000;

fn by_access(token: &str) -> CacheKey {
    CacheKey::Session(SessionKey::Access(TokenHash::of(token)))
}

fn sess(id: &str, access: &str, refresh: &str) -> Arc<StoredSession> {
    Arc::new(live_session(id, access, Some(refresh), T0))
}

#[track_caller]
fn miss(machine: &mut CacheMachine, key: &CacheKey) -> FillTicket {
    match machine.lookup(T0, key) {
        Lookup::Miss(ticket) => ticket,
        other => panic!("expected a miss, got {other:?}"),
    }
}

/// Miss, then the session is deleted (by id) while the delegate answers,
/// then the old answer comes back: refused, and the next lookup misses.
pub fn stale_fill_after_delete_refused() {
    let mut machine = CacheMachine::new(CacheConfig::default());
    let key = by_access("at-1");
    let ticket = miss(&mut machine, &key);
    machine.handle_write(Write::DeleteSessionById("sess-1"));
    let old = sess("sess-1", "at-1", "rt-1");
    assert_eq!(
        machine.fill_session(T0, ticket, Some(old)),
        FillOutcome::Refused
    );
    let next = miss(&mut machine, &key);
    machine.abandon(next);
    let m = machine.metrics();
    assert_eq!((m.sessions.stale_fills_refused, m.session_entries), (1, 0));
    assert_eq!(machine.fills_in_flight(), 0);
}

/// Miss by the old access token, then a rotation (same id, new tokens) is
/// reported, then the old session comes back: refused (it shares the id).
pub fn stale_fill_after_rotation_refused() {
    let mut machine = CacheMachine::new(CacheConfig::default());
    let key = by_access("at-1");
    let ticket = miss(&mut machine, &key);
    let rotated = sess("sess-1", "at-2", "rt-2");
    machine.handle_write(Write::StoreSession(&rotated));
    let old = sess("sess-1", "at-1", "rt-1");
    assert_eq!(
        machine.fill_session(T0, ticket, Some(old)),
        FillOutcome::Refused
    );
    for key in [key, CacheKey::Session(SessionKey::Id("sess-1".into()))] {
        let next = miss(&mut machine, &key);
        machine.abandon(next);
    }
    assert_eq!(machine.metrics().sessions.stale_fills_refused, 1);
}

/// Miss for an unknown token, then a session with that token is stored, then
/// the delegate's "absent" comes back: refused, not cached negatively.
pub fn stale_negative_fill_refused() {
    let mut machine = CacheMachine::new(CacheConfig::default());
    let key = by_access("at-1");
    let ticket = miss(&mut machine, &key);
    machine.handle_write(Write::StoreSession(&sess("sess-1", "at-1", "rt-1")));
    assert_eq!(machine.fill_session(T0, ticket, None), FillOutcome::Refused);
    let next = miss(&mut machine, &key);
    machine.abandon(next);
    assert_eq!(machine.metrics().negative_entries, 0);
}

/// Writes to other keys, and writes reported before the miss, refuse
/// nothing: the fill lands and the next lookup is a hit.
pub fn unrelated_or_earlier_writes_do_not_refuse() {
    let mut machine = CacheMachine::new(CacheConfig::default());
    let key = by_access("at-1");
    machine.handle_write(Write::DeleteSessionById("sess-1"));
    let ticket = miss(&mut machine, &key);
    machine.handle_write(Write::DeleteSessionById("sess-2"));
    machine.handle_write(Write::DeleteSessionByHash(TokenHash::of("at-2")));
    machine.handle_write(Write::AuthCode("at-1"));
    let s = sess("sess-1", "at-1", "rt-1");
    assert_eq!(
        machine.fill_session(T0, ticket, Some(s)),
        FillOutcome::Cached
    );
    assert!(matches!(machine.lookup(T0, &key), Lookup::Hit(_)));
    assert_eq!(machine.metrics().sessions.stale_fills_refused, 0);
}

/// Concurrent misses on one key: one ticket, the others wait; after the fill
/// they hit.
pub fn second_miss_on_a_key_waits() {
    let mut machine = CacheMachine::new(CacheConfig::default());
    let key = by_access("at-1");
    let ticket = miss(&mut machine, &key);
    for _ in 0..99 {
        assert!(matches!(machine.lookup(T0, &key), Lookup::Wait));
    }
    let s = sess("sess-1", "at-1", "rt-1");
    assert_eq!(
        machine.fill_session(T0, ticket, Some(s)),
        FillOutcome::Cached
    );
    for _ in 0..99 {
        assert!(matches!(machine.lookup(T0, &key), Lookup::Hit(_)));
    }
    let m = machine.metrics().sessions;
    assert_eq!((m.lookups, m.misses, m.waits, m.hits), (199, 1, 99, 99));
}

/// A flood of [`FLOOD`] distinct unknown keys (ids, codes and clients):
/// negative entries stay at `negative_capacity`, every one past it is an
/// eviction, and nothing else grows.
pub fn negative_flood_stays_bounded() {
    let config = CacheConfig::default();
    let cap = config.negative_capacity;
    let mut machine = CacheMachine::new(config);
    let now = T0 + HOUR;
    for i in 0..FLOOD {
        let key = match i % 3 {
            0 => CacheKey::Session(SessionKey::Id(format!("unknown-{i}"))),
            1 => CacheKey::AuthCode(TokenHash::of(&format!("unknown-{i}"))),
            _ => CacheKey::Client(format!("unknown-{i}")),
        };
        let Lookup::Miss(ticket) = machine.lookup(now, &key) else {
            panic!("key {i} is new");
        };
        let outcome = match i % 3 {
            0 => machine.fill_session(now, ticket, None),
            1 => machine.fill_auth_code(now, ticket, None),
            _ => machine.fill_client(now, ticket, None),
        };
        assert_eq!(outcome, FillOutcome::CachedNegative);
        if i % 100_000 == 0 {
            assert!(machine.metrics().negative_entries <= cap);
        }
    }
    let m = machine.metrics();
    assert_eq!(m.negative_entries, cap);
    let evictions = m.sessions.evictions + m.auth_codes.evictions + m.clients.evictions;
    assert_eq!(evictions, (FLOOD - cap) as u64);
    assert_eq!(
        m.session_entries + m.auth_code_entries + m.client_entries,
        0
    );
    assert_eq!(machine.fills_in_flight(), 0);
}
