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
    let ticket = miss(
        &mut cache,
        t0(),
        CacheKey::AuthCode(TokenHash::of("code-1")),
    );
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

/// The invalidation feed's follower (issue 12).
mod feed {
    use super::*;
    use crate::feed::{Invalidations, Watermark};

    const B: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn following() -> CacheMachine {
        CacheMachine::new(CacheConfig {
            feed_bound: Some(B),
            ..CacheConfig::default()
        })
    }

    fn answer(keys: Vec<CacheKey>, watermark: u64) -> Invalidations {
        Invalidations {
            keys,
            watermark: Watermark(watermark),
            gap: false,
        }
    }

    fn cached_at(cache: &mut CacheMachine, now: Timestamp, s: &Arc<StoredSession>) {
        let ticket = miss(cache, now, by_access(s.access_token.expose()));
        assert_eq!(
            cache.fill_session(now, ticket, Some(s.clone())),
            FillOutcome::Cached
        );
    }

    /// A successful poll started at `at`, answered at once with `keys`.
    fn poll(cache: &mut CacheMachine, at: Timestamp, keys: Vec<CacheKey>) {
        let ticket = cache.begin_poll(at).expect("no poll in flight");
        let since = ticket.since().map_or(0, |w| w.0);
        cache.handle_invalidations(at, ticket, answer(keys, since + 1));
    }

    #[test]
    fn nothing_is_served_before_the_first_poll_confirms_freshness() {
        let mut cache = following();
        let s = session("sid", "tok", None, t0() + HOUR);
        cached_session(&mut cache, &s);
        assert!(!is_hit(&mut cache, t0(), by_access("tok")));
        assert_eq!(cache.metrics().feed.unconfirmed, 1);
        poll(&mut cache, t0(), vec![]);
        cached_session(&mut cache, &s);
        assert!(is_hit(&mut cache, t0(), by_access("tok")));
    }

    #[test]
    fn hits_stop_exactly_when_the_last_successful_poll_is_b_old() {
        let mut cache = following();
        poll(&mut cache, t0(), vec![]);
        cached_session(&mut cache, &session("sid", "tok", None, t0() + HOUR));
        assert!(is_hit(&mut cache, t0() + B - MS, by_access("tok")));
        assert!(!is_hit(&mut cache, t0() + B, by_access("tok")));
        // A failed poll confirms nothing; a later successful one does.
        let failed = cache.begin_poll(t0() + B).unwrap();
        cache.handle_poll_failed(t0() + B, failed);
        assert!(!is_hit(&mut cache, t0() + B + MS, by_access("tok")));
        poll(&mut cache, t0() + B + MS, vec![]);
        assert!(is_hit(&mut cache, t0() + B + 2 * MS, by_access("tok")));
    }

    #[test]
    fn feed_lag_counts_from_the_start_of_the_last_confirming_poll() {
        assert_eq!(
            CacheMachine::new(CacheConfig::default()).feed_lag(t0()),
            None
        );
        let mut cache = following();
        assert_eq!(cache.feed_lag(t0()), None, "nothing confirmed yet");
        let ticket = cache.begin_poll(t0()).unwrap();
        cache.handle_invalidations(t0() + 10 * MS, ticket, answer(vec![], 1));
        assert_eq!(cache.feed_lag(t0() + 30 * MS), Some(30 * MS));
        let failed = cache.begin_poll(t0() + 40 * MS).unwrap();
        cache.handle_poll_failed(t0() + 50 * MS, failed);
        assert_eq!(
            cache.feed_lag(t0() + 60 * MS),
            Some(60 * MS),
            "a failure confirms nothing"
        );
        poll(&mut cache, t0() + 70 * MS, vec![]);
        assert_eq!(cache.feed_lag(t0() + 75 * MS), Some(5 * MS));
    }

    #[test]
    fn freshness_counts_from_the_start_of_the_poll_not_its_answer() {
        let mut cache = following();
        let ticket = cache.begin_poll(t0()).unwrap();
        cache.handle_invalidations(t0() + B / 2, ticket, answer(vec![], 1));
        cached_at(
            &mut cache,
            t0() + B / 2,
            &session("sid", "tok", None, t0() + HOUR),
        );
        assert!(is_hit(&mut cache, t0() + B - MS, by_access("tok")));
        assert!(!is_hit(&mut cache, t0() + B, by_access("tok")));
    }

    #[test]
    fn a_polled_key_evicts_the_whole_entry_and_refuses_its_fill_in_flight() {
        let mut cache = following();
        poll(&mut cache, t0(), vec![]);
        let s = session("sid", "tok", Some("ref"), t0() + HOUR);
        cached_session(&mut cache, &s);
        // Another instance deleted the session by id.
        poll(
            &mut cache,
            t0(),
            vec![CacheKey::Session(SessionKey::Id("sid".into()))],
        );
        assert!(!is_hit(&mut cache, t0(), by_access("tok")));
        assert_eq!(cache.metrics().session_entries, 0);

        // A fill that was in flight when the poll reported its key is refused.
        let ticket = miss(&mut cache, t0(), by_access("tok"));
        poll(&mut cache, t0(), vec![by_access("tok")]);
        assert_eq!(
            cache.fill_session(t0(), ticket, Some(s)),
            FillOutcome::Refused
        );
    }

    #[test]
    fn a_gap_drops_every_entry_and_refuses_every_fill_in_flight() {
        let mut cache = following();
        poll(&mut cache, t0(), vec![]);
        cached_session(&mut cache, &session("a", "tok-a", None, t0() + HOUR));
        let ticket = miss(&mut cache, t0(), by_access("tok-b"));
        let p = cache.begin_poll(t0()).unwrap();
        let found = Invalidations {
            keys: vec![],
            watermark: Watermark(7),
            gap: true,
        };
        cache.handle_invalidations(t0(), p, found);
        assert_eq!(cache.metrics().session_entries, 0);
        assert_eq!(cache.metrics().feed.gaps, 1);
        let b = session("b", "tok-b", None, t0() + HOUR);
        assert_eq!(
            cache.fill_session(t0(), ticket, Some(b)),
            FillOutcome::Refused
        );
        // The next poll asks from the watermark the gap answer gave.
        assert_eq!(cache.begin_poll(t0()).unwrap().since(), Some(Watermark(7)));
    }

    #[test]
    fn negative_entries_live_at_most_b() {
        let mut cache = CacheMachine::new(CacheConfig {
            feed_bound: Some(B),
            negative_ttl: 10 * B,
            ..CacheConfig::default()
        });
        poll(&mut cache, t0(), vec![]);
        let ticket = miss(&mut cache, t0(), by_access("nobody"));
        assert_eq!(
            cache.fill_session(t0(), ticket, None),
            FillOutcome::CachedNegative
        );
        // Kept fresh by polls, the negative entry still ends after B.
        poll(&mut cache, t0() + B / 2, vec![]);
        assert!(matches!(
            cache.lookup(t0() + B - MS, &by_access("nobody")),
            Lookup::NegativeHit
        ));
        assert!(matches!(
            cache.lookup(t0() + B, &by_access("nobody")),
            Lookup::Miss(_)
        ));
    }

    #[test]
    fn the_poll_schedule_is_half_the_bound_sooner_on_a_hint() {
        let mut cache = following();
        assert_eq!(cache.poll_timeout(t0()), PollTimer::Due);
        let p = cache.begin_poll(t0()).unwrap();
        assert!(cache.begin_poll(t0()).is_none(), "one poll at a time");
        assert_eq!(
            cache.poll_timeout(t0() + 10 * MS),
            PollTimer::InFlight(B - 10 * MS)
        );
        cache.handle_invalidations(t0() + 10 * MS, p, answer(vec![], 1));
        assert_eq!(
            cache.poll_timeout(t0() + 10 * MS),
            PollTimer::After(B / 2 - 10 * MS)
        );
        assert_eq!(cache.poll_timeout(t0() + B / 2), PollTimer::Due);
        cache.handle_hint(t0() + 20 * MS);
        assert_eq!(cache.poll_timeout(t0() + 20 * MS), PollTimer::Due);
        // A hint during a poll makes the next one due right after it, but no
        // sooner than B / 200 (here 5 ms) after the last one started.
        let p = cache.begin_poll(t0() + 20 * MS).unwrap();
        cache.handle_hint(t0() + 21 * MS);
        cache.handle_invalidations(t0() + 22 * MS, p, answer(vec![], 2));
        assert_eq!(cache.poll_timeout(t0() + 22 * MS), PollTimer::After(3 * MS));
        assert_eq!(cache.poll_timeout(t0() + 25 * MS), PollTimer::Due);
        // A failure retries after B / 8.
        let p = cache.begin_poll(t0() + 25 * MS).unwrap();
        cache.handle_poll_failed(t0() + 30 * MS, p);
        assert_eq!(cache.poll_timeout(t0() + 30 * MS), PollTimer::After(B / 8));
        assert_eq!(cache.metrics().feed.poll_failures, 1);
    }

    #[test]
    fn a_clock_step_back_drops_freshness_and_the_poll_across_it_confirms_nothing() {
        let mut cache = following();
        poll(&mut cache, t0() + 10 * B, vec![]);
        cached_at(
            &mut cache,
            t0() + 10 * B,
            &session("sid", "tok", None, t0() + HOUR),
        );
        assert!(is_hit(&mut cache, t0() + 10 * B, by_access("tok")));
        let p = cache.begin_poll(t0() + 10 * B).unwrap();
        // The clock steps back 5 s: elapsed time can no longer be told.
        assert!(!is_hit(&mut cache, t0() + 5 * B, by_access("tok")));
        assert_eq!(cache.metrics().feed.clock_steps_back, 1);
        cache.handle_invalidations(t0() + 5 * B, p, answer(vec![], 2));
        assert!(!is_hit(&mut cache, t0() + 5 * B, by_access("tok")));
        assert_eq!(cache.poll_timeout(t0() + 5 * B), PollTimer::Due);
        poll(&mut cache, t0() + 5 * B, vec![]);
        assert!(is_hit(&mut cache, t0() + 5 * B, by_access("tok")));
        // Readings a few milliseconds out of order (threads) are not a step.
        assert!(is_hit(&mut cache, t0() + 5 * B - 5 * MS, by_access("tok")));
        assert_eq!(cache.metrics().feed.clock_steps_back, 1);
    }

    #[test]
    fn a_lapse_ends_the_confirmation_of_its_own_poll_only() {
        let mut cache = following();
        let first = cache.begin_poll(t0()).unwrap();
        let first_lapse = first.lapse();
        assert!(cache.handle_invalidations(t0(), first, answer(vec![], 1)));
        cached_at(&mut cache, t0(), &session("sid", "tok", None, t0() + HOUR));
        // The wall clock stepped back a little (undetectable), but the
        // runtime's timer says B passed since the poll started: no more hits.
        cache.handle_lapse(t0(), first_lapse);
        assert!(!is_hit(&mut cache, t0(), by_access("tok")));
        assert_eq!(cache.metrics().feed.lapses, 1);
        assert_eq!(cache.poll_timeout(t0()), PollTimer::Due);
        // A newer poll's confirmation survives the lapse of an older one.
        let second = cache.begin_poll(t0()).unwrap();
        let second_lapse = second.lapse();
        assert!(cache.handle_invalidations(t0(), second, answer(vec![], 2)));
        let third = cache.begin_poll(t0() + MS).unwrap();
        assert!(cache.handle_invalidations(t0() + MS, third, answer(vec![], 3)));
        cache.handle_lapse(t0() + MS, second_lapse);
        assert!(is_hit(&mut cache, t0() + MS, by_access("tok")));
        assert_eq!(cache.metrics().feed.lapses, 1);
    }

    /// Found by the multi-instance simulation: the first answer names no keys,
    /// so what was filled before it (or is being filled) may have missed a
    /// write that committed before its snapshot.
    #[test]
    fn the_first_answer_drops_what_was_filled_before_it() {
        let mut cache = following();
        cached_session(&mut cache, &session("a", "tok-a", None, t0() + HOUR));
        let ticket = miss(&mut cache, t0(), by_access("tok-b"));
        poll(&mut cache, t0(), vec![]);
        assert_eq!(cache.metrics().session_entries, 0);
        let b = session("b", "tok-b", None, t0() + HOUR);
        assert_eq!(
            cache.fill_session(t0(), ticket, Some(b)),
            FillOutcome::Refused
        );
        assert_eq!(cache.metrics().feed.gaps, 0);
        // Later answers evict only what they name.
        cached_session(&mut cache, &session("a", "tok-a", None, t0() + HOUR));
        poll(&mut cache, t0(), vec![]);
        assert!(is_hit(&mut cache, t0(), by_access("tok-a")));
    }

    #[test]
    fn without_a_feed_nothing_changes() {
        let mut cache = CacheMachine::new(CacheConfig::default());
        assert_eq!(cache.poll_timeout(t0()), PollTimer::Off);
        assert!(cache.begin_poll(t0()).is_none());
        cached_session(&mut cache, &session("sid", "tok", None, t0() + HOUR));
        assert!(is_hit(&mut cache, t0(), by_access("tok")));
        cache.handle_close();
        let mut closed = following();
        closed.handle_close();
        assert_eq!(closed.poll_timeout(t0()), PollTimer::Off);
    }
}

fn viewed(view: &HitView, now: Timestamp, key: &CacheKey) -> Option<Arc<StoredSession>> {
    match view.lookup(now, key) {
        Some(Cached::Session(s)) => Some(s),
        Some(other) => panic!("a session key found {other:?}"),
        None => None,
    }
}

#[test]
fn the_view_serves_the_machines_hits_by_the_first_key_and_counts_them() {
    let mut cache = CacheMachine::new(CacheConfig {
        ttl_cap: HOUR * 10,
        skew: Duration::from_secs(5),
        clock_resolution: Duration::ZERO,
        ..CacheConfig::default()
    });
    let view = cache.hit_view();
    let s = session("sid", "acc", Some("ref"), t0() + HOUR);
    assert!(viewed(&view, t0(), &by_access("acc")).is_none());
    cached_session(&mut cache, &s);
    let found = viewed(&view, t0(), &by_access("acc")).expect("a hit");
    assert!(Arc::ptr_eq(&found, &s));
    // Filled by its access token: found by id or refresh token, it is the
    // machine's to answer.
    for key in &CacheKey::of_session(&s)[1..] {
        assert!(view.lookup(t0(), key).is_none());
        assert!(is_hit(&mut cache, t0(), key.clone()));
    }
    let m = cache.metrics().sessions;
    // One miss, one hit by the view, two by the machine.
    assert_eq!((m.lookups, m.misses, m.hits), (4, 1, 3));

    // The deadline is the machine's: expiry minus skew.
    let last = t0() + HOUR - Duration::from_secs(5);
    assert!(viewed(&view, last - Duration::from_micros(1), &by_access("acc")).is_some());
    assert!(viewed(&view, last, &by_access("acc")).is_none());
    // The machine removes the expired entry; the view then finds nothing.
    assert!(!is_hit(&mut cache, last, by_access("acc")));
    assert_eq!(cache.metrics().sessions.expirations, 1);
    assert!(viewed(&view, t0(), &by_access("acc")).is_none());
}

#[test]
fn the_view_sees_every_write_eviction_and_close() {
    let mut cache = CacheMachine::new(CacheConfig::default());
    let view = cache.hit_view();
    let s = session("sid", "acc", Some("ref"), t0() + HOUR);
    cached_session(&mut cache, &s);
    cache.handle_write(Write::DeleteSessionById("sid"));
    assert!(viewed(&view, t0(), &by_access("acc")).is_none());

    let code = Arc::new(AuthCodeRecord::new("code-1", "sid", t0() + HOUR, t0()));
    let key = CacheKey::AuthCode(TokenHash::of("code-1"));
    let ticket = miss(&mut cache, t0(), key.clone());
    cache.fill_auth_code(t0(), ticket, Some(code.clone()));
    assert!(matches!(view.lookup(t0(), &key), Some(Cached::AuthCode(c)) if Arc::ptr_eq(&c, &code)));
    cache.handle_write(Write::AuthCode("code-1"));
    assert!(view.lookup(t0(), &key).is_none());

    let client = Arc::new(ClientRecord::new("client-1", t0()));
    let key = CacheKey::Client("client-1".into());
    let ticket = miss(&mut cache, t0(), key.clone());
    cache.fill_client(t0(), ticket, Some(client));
    assert!(matches!(view.lookup(t0(), &key), Some(Cached::Client(_))));
    assert_eq!(cache.metrics().clients.hits, 1);

    cache.handle_close();
    assert!(view.lookup(t0(), &key).is_none());
    assert!(matches!(cache.lookup(t0(), &key), Lookup::Closed));
}

#[test]
fn a_view_hit_spares_the_entry_from_eviction() {
    let mut cache = CacheMachine::new(CacheConfig {
        session_capacity: 2,
        shards: 1,
        ..CacheConfig::default()
    });
    let view = cache.hit_view();
    let (a, b, c) = (
        session("a", "acc-a", None, t0() + HOUR),
        session("b", "acc-b", None, t0() + HOUR),
        session("c", "acc-c", None, t0() + HOUR),
    );
    cached_session(&mut cache, &a);
    cached_session(&mut cache, &b);
    assert!(viewed(&view, t0(), &by_access("acc-a")).is_some());
    cached_session(&mut cache, &c); // the hand spares a, evicts b
    assert!(viewed(&view, t0(), &by_access("acc-a")).is_some());
    assert!(viewed(&view, t0(), &by_access("acc-b")).is_none());
    assert!(viewed(&view, t0(), &by_access("acc-c")).is_some());
    assert_eq!(cache.metrics().sessions.evictions, 1);
}

#[test]
fn a_following_cache_has_no_view_hits() {
    let b = Duration::from_secs(1);
    let mut cache = CacheMachine::new(CacheConfig {
        feed_bound: Some(b),
        ..CacheConfig::default()
    });
    let view = cache.hit_view();
    let poll = cache.begin_poll(t0()).expect("due");
    let answer = crate::feed::Invalidations {
        keys: vec![],
        watermark: crate::feed::Watermark(1),
        gap: false,
    };
    cache.handle_invalidations(t0(), poll, answer);
    let s = session("sid", "acc", None, t0() + HOUR);
    cached_session(&mut cache, &s);
    // Confirmed: the machine serves it, the view leaves it to the machine,
    // which alone knows whether freshness still holds.
    assert!(is_hit(&mut cache, t0(), by_access("acc")));
    assert!(viewed(&view, t0(), &by_access("acc")).is_none());
}
