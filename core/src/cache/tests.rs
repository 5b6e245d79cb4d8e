use super::*;
use crate::{Secret, SessionKey, TokenHash, UserInfo};

const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> Timestamp {
    Timestamp::from_unix_secs(1_000_000)
}

fn session(
    id: &str,
    access: &str,
    refresh: Option<&str>,
    expires: Timestamp,
) -> Arc<StoredSession> {
    let mut s = StoredSession::new(
        id,
        UserInfo::new("p", "user-7", "name-7"),
        access,
        expires,
        t0(),
    );
    s.refresh_token = refresh.map(Secret::new);
    Arc::new(s)
}

fn by_access(token: &str) -> CacheKey {
    CacheKey::Session(SessionKey::Access(TokenHash::of(token)))
}

fn miss(cache: &mut CacheMachine, now: Timestamp, key: CacheKey) -> FillTicket {
    match cache.lookup(now, &key) {
        Lookup::Miss(ticket) => ticket,
        other => panic!("expected a miss, got {other:?}"),
    }
}

fn is_hit(cache: &mut CacheMachine, now: Timestamp, key: CacheKey) -> bool {
    match cache.lookup(now, &key) {
        Lookup::Hit(_) => true,
        Lookup::Miss(ticket) => {
            cache.abandon(ticket);
            false
        }
        _ => false,
    }
}

fn cached_session(cache: &mut CacheMachine, s: &Arc<StoredSession>) {
    let key = CacheKey::Session(SessionKey::Access(s.access_hash()));
    let ticket = miss(cache, t0(), key);
    assert_eq!(
        cache.fill_session(t0(), ticket, Some(s.clone())),
        FillOutcome::Cached
    );
}

#[test]
fn miss_then_fill_then_hit_by_every_key() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let s = session("sid", "acc", Some("ref"), t0() + HOUR);
    cached_session(&mut cache, &s);
    for key in CacheKey::of_session(&s) {
        match cache.lookup(t0(), &key) {
            Lookup::Hit(Cached::Session(found)) => assert!(Arc::ptr_eq(&found, &s)),
            other => panic!("expected a hit, got {other:?}"),
        }
    }
    let m = cache.metrics().sessions;
    assert_eq!((m.lookups, m.misses, m.hits, m.fills), (4, 1, 3, 1));
    assert_eq!(cache.metrics().session_entries, 1);
}

#[test]
fn entry_lives_until_expiry_minus_skew() {
    let config = CacheConfig {
        ttl_cap: HOUR * 10,
        skew: Duration::from_secs(5),
        ..CacheConfig::default()
    };
    let mut cache = CacheMachine::new(config);
    let s = session("sid", "acc", None, t0() + Duration::from_secs(100));
    cached_session(&mut cache, &s);
    assert!(is_hit(
        &mut cache,
        t0() + Duration::from_secs(94),
        by_access("acc")
    ));
    assert!(!is_hit(
        &mut cache,
        t0() + Duration::from_secs(95),
        by_access("acc")
    ));
    assert_eq!(cache.metrics().sessions.expirations, 1);
    assert_eq!(cache.metrics().session_entries, 0);
}

#[test]
fn entry_lives_at_most_ttl_cap() {
    let config = CacheConfig {
        ttl_cap: Duration::from_secs(30),
        skew: Duration::ZERO,
        ..CacheConfig::default()
    };
    let mut cache = CacheMachine::new(config);
    cached_session(&mut cache, &session("sid", "acc", None, t0() + HOUR));
    assert!(is_hit(
        &mut cache,
        t0() + Duration::from_secs(29),
        by_access("acc")
    ));
    assert!(!is_hit(
        &mut cache,
        t0() + Duration::from_secs(30),
        by_access("acc")
    ));
}

#[test]
fn record_inside_its_skew_window_is_not_cached() {
    let mut cache = CacheMachine::new(CacheConfig::default()); // skew 1 s
    let s = session("sid", "acc", None, t0() + Duration::from_millis(500));
    let ticket = miss(&mut cache, t0(), by_access("acc"));
    assert_eq!(
        cache.fill_session(t0(), ticket, Some(s)),
        FillOutcome::NotCached
    );
    assert_eq!(cache.metrics().session_entries, 0);
}

#[test]
fn refresh_key_uses_refresh_expiry() {
    let config = CacheConfig {
        skew: Duration::ZERO,
        ..CacheConfig::default()
    };
    let mut cache = CacheMachine::new(config);
    let mut s = StoredSession::clone(&session("sid", "acc", Some("ref"), t0() + HOUR));
    s.refresh_expires_at = Some(t0() + Duration::from_secs(10));
    cached_session(&mut cache, &Arc::new(s));
    let by_refresh = CacheKey::Session(SessionKey::Refresh(TokenHash::of("ref")));
    assert!(is_hit(
        &mut cache,
        t0() + Duration::from_secs(9),
        by_refresh.clone()
    ));
    assert!(!is_hit(
        &mut cache,
        t0() + Duration::from_secs(10),
        by_refresh
    ));
}

#[test]
fn negative_entries_expire_and_are_cleared_by_a_store() {
    let mut cache = CacheMachine::new(CacheConfig::default()); // negative_ttl 2 s
    let ticket = miss(&mut cache, t0(), by_access("acc"));
    assert_eq!(
        cache.fill_session(t0(), ticket, None),
        FillOutcome::CachedNegative
    );
    assert!(matches!(
        cache.lookup(t0() + Duration::from_secs(1), &by_access("acc")),
        Lookup::NegativeHit
    ));
    assert!(!is_hit(
        &mut cache,
        t0() + Duration::from_secs(2),
        by_access("acc")
    ));
    assert_eq!(cache.metrics().sessions.expirations, 1);

    let ticket = miss(&mut cache, t0(), by_access("acc"));
    cache.fill_session(t0(), ticket, None);
    let s = session("sid", "acc", None, t0() + HOUR);
    cache.handle_write(Write::StoreSession(&s));
    assert!(matches!(
        cache.lookup(t0(), &by_access("acc")),
        Lookup::Miss(_)
    ));
}

#[test]
fn stale_fill_is_refused() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let old = session("sid", "acc", None, t0() + HOUR);
    let ticket = miss(&mut cache, t0(), by_access("acc"));
    // A delete lands while the delegate read is in flight.
    cache.handle_write(Write::DeleteSessionByHash(TokenHash::of("acc")));
    assert_eq!(
        cache.fill_session(t0(), ticket, Some(old)),
        FillOutcome::Refused
    );
    assert!(!is_hit(&mut cache, t0(), by_access("acc")));
    assert_eq!(cache.metrics().sessions.stale_fills_refused, 1);
}

#[test]
fn stale_fill_through_another_key_is_refused() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let old = session("sid", "acc", None, t0() + HOUR);
    let ticket = miss(
        &mut cache,
        t0(),
        CacheKey::Session(SessionKey::Id("sid".into())),
    );
    cache.handle_write(Write::DeleteSessionByHash(TokenHash::of("acc")));
    assert_eq!(
        cache.fill_session(t0(), ticket, Some(old)),
        FillOutcome::Refused
    );
}

#[test]
fn negative_stale_fill_is_refused() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let ticket = miss(&mut cache, t0(), by_access("acc"));
    let s = session("sid", "acc", None, t0() + HOUR);
    cache.handle_write(Write::StoreSession(&s));
    assert_eq!(cache.fill_session(t0(), ticket, None), FillOutcome::Refused);
    assert_eq!(cache.metrics().negative_entries, 0);
}

#[test]
fn fill_after_invalidation_lands() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let s = session("sid", "acc", None, t0() + HOUR);
    cache.handle_write(Write::StoreSession(&s));
    let ticket = miss(&mut cache, t0(), by_access("acc"));
    assert_eq!(
        cache.fill_session(t0(), ticket, Some(s)),
        FillOutcome::Cached
    );
}

#[test]
fn rotation_evicts_every_key_of_the_old_session() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let old = session("sid", "acc-1", Some("ref-1"), t0() + HOUR);
    cached_session(&mut cache, &old);
    let new = session("sid", "acc-2", Some("ref-2"), t0() + HOUR);
    cache.handle_write(Write::StoreSession(&new));
    for key in CacheKey::of_session(&old) {
        assert!(!is_hit(&mut cache, t0(), key));
    }
    assert_eq!(cache.metrics().session_entries, 0);
}

#[test]
fn single_flight_makes_later_lookups_wait() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let ticket = miss(&mut cache, t0(), by_access("acc"));
    for _ in 0..5 {
        assert!(matches!(
            cache.lookup(t0(), &by_access("acc")),
            Lookup::Wait
        ));
    }
    assert_eq!(cache.fills_in_flight(), 1);
    cache.abandon(ticket);
    assert_eq!(cache.fills_in_flight(), 0);
    assert!(matches!(
        cache.lookup(t0(), &by_access("acc")),
        Lookup::Miss(_)
    ));
    assert_eq!(cache.metrics().sessions.waits, 5);
}

#[test]
fn capacity_bounds_entries() {
    let config = CacheConfig {
        session_capacity: 100,
        ..CacheConfig::default()
    };
    let mut cache = CacheMachine::new(config);
    for i in 0..1_000 {
        cached_session(
            &mut cache,
            &session(
                &format!("s{i}"),
                &format!("a{i}"),
                Some(&format!("r{i}")),
                t0() + HOUR,
            ),
        );
    }
    let m = cache.metrics();
    assert_eq!(m.session_entries, 100);
    assert_eq!(m.sessions.evictions, 900);
}

#[test]
fn flood_of_unknown_tokens_keeps_negatives_bounded() {
    let config = CacheConfig {
        negative_capacity: 1_000,
        ..CacheConfig::default()
    };
    let mut cache = CacheMachine::new(config);
    for i in 0..200_000u32 {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_le_bytes());
        let key = CacheKey::Session(SessionKey::Access(TokenHash::from_bytes(bytes)));
        let ticket = miss(&mut cache, t0(), key);
        cache.fill_session(t0(), ticket, None);
    }
    let m = cache.metrics();
    assert_eq!(m.negative_entries, 1_000);
    assert_eq!(m.sessions.negative_fills, 200_000);
    assert_eq!(m.sessions.evictions, 199_000);
}

#[test]
fn auth_codes_and_clients_cache_and_invalidate() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let code = Arc::new(AuthCodeRecord::new(
        "code-1",
        "sid",
        t0() + Duration::from_secs(60),
        t0(),
    ));
    let ticket = miss(&mut cache, t0(), CacheKey::AuthCode(TokenHash::of("code-1")));
    assert_eq!(
        cache.fill_auth_code(t0(), ticket, Some(code)),
        FillOutcome::Cached
    );
    assert!(is_hit(
        &mut cache,
        t0(),
        CacheKey::AuthCode(TokenHash::of("code-1"))
    ));
    cache.handle_write(Write::AuthCode("code-1"));
    assert!(!is_hit(
        &mut cache,
        t0(),
        CacheKey::AuthCode(TokenHash::of("code-1"))
    ));

    let client = Arc::new(ClientRecord::new("client-1", t0()));
    let ticket = miss(&mut cache, t0(), CacheKey::Client("client-1".into()));
    assert_eq!(
        cache.fill_client(t0(), ticket, Some(client)),
        FillOutcome::Cached
    );
    assert!(is_hit(
        &mut cache,
        t0(),
        CacheKey::Client("client-1".into())
    ));
    cache.handle_write(Write::Client("client-1"));
    assert!(!is_hit(
        &mut cache,
        t0(),
        CacheKey::Client("client-1".into())
    ));
}

#[test]
fn metrics_add_up() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let s = session("sid", "acc", None, t0() + HOUR);
    cached_session(&mut cache, &s);
    is_hit(&mut cache, t0(), by_access("acc"));
    let ticket = miss(&mut cache, t0(), by_access("nope"));
    let _ = cache.lookup(t0(), &by_access("nope"));
    cache.fill_session(t0(), ticket, None);
    let _ = cache.lookup(t0(), &by_access("nope"));
    let m = cache.metrics().sessions;
    assert_eq!(m.lookups, m.hits + m.misses + m.negative_hits + m.waits);
    assert_eq!((m.hits, m.misses, m.negative_hits, m.waits), (1, 2, 1, 1));
}

#[test]
fn debug_shows_no_secret_or_identifier() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let s = session("sid-secret", "acc-secret", Some("ref-secret"), t0() + HOUR);
    cached_session(&mut cache, &s);
    let ticket = miss(
        &mut cache,
        t0(),
        CacheKey::Session(SessionKey::Id("id-secret".into())),
    );
    let text = format!(
        "{cache:?} {:?} {ticket:?} {:?}",
        cache.metrics(),
        CacheKey::of_session(&s)
    );
    for needle in [
        "secret",
        "user-7",
        "name-7",
        &TokenHash::of("acc-secret").to_hex(),
    ] {
        assert!(!text.contains(needle), "{needle} leaked: {text}");
    }
    cache.abandon(ticket);
}

#[test]
fn close_drops_entries_and_refuses_lookups() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    cached_session(&mut cache, &session("sid", "acc", None, t0() + HOUR));
    cache.handle_close();
    assert!(matches!(
        cache.lookup(t0(), &by_access("acc")),
        Lookup::Closed
    ));
    assert_eq!(cache.metrics().session_entries, 0);
}

#[test]
fn zero_capacity_disables_caching_of_a_kind() {
    let config = CacheConfig {
        session_capacity: 0,
        client_capacity: 0,
        ..CacheConfig::default()
    };
    let mut cache = CacheMachine::new(config);
    let ticket = miss(&mut cache, t0(), by_access("acc"));
    let s = session("sid", "acc", None, t0() + HOUR);
    assert_eq!(
        cache.fill_session(t0(), ticket, Some(s)),
        FillOutcome::NotCached
    );
    let ticket = miss(&mut cache, t0(), CacheKey::Client("c".into()));
    let c = Arc::new(ClientRecord::new("c", t0()));
    assert_eq!(
        cache.fill_client(t0(), ticket, Some(c)),
        FillOutcome::NotCached
    );
    let m = cache.metrics();
    assert_eq!(
        (m.sessions.fills, m.clients.fills, m.session_entries),
        (0, 0, 0)
    );
}
