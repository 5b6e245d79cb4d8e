//! Lock-free hits racing revocations on real threads.
//!
//! The cache answers hits from each shard's `HitView` without the shard's
//! lock. Loom explores the adapters' interleavings, but not the lock-free
//! index's own (scc's atomics are outside loom's model). So here reader
//! threads validate tokens as fast as they can, while a writer revokes them
//! (a logout, or a rotation that stores the session under a new token). A
//! reader that saw a revocation return before its lookup began must not get
//! the session. Every loop is bounded in count and in time.

use futures_lite::future::block_on;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokenstore::cache::CacheConfig;
use tokenstore::{
    CachingTokenStore, Clock, MemoryTokenStore, StoredSession, SystemClock, TokenStore, UserInfo,
};

const SESSIONS: usize = 512;
const READERS: usize = 3;
const MAX_LOOKUPS: u64 = 400_000;
const DEADLINE: Duration = Duration::from_secs(20);

fn session(i: usize, token: &str) -> Arc<StoredSession> {
    let now = SystemClock.now();
    Arc::new(StoredSession::new(
        format!("session-{i}"),
        UserInfo::new("github", format!("user-{i}"), "name"),
        token,
        now + Duration::from_secs(3600),
        now,
    ))
}

#[test]
fn no_hit_after_a_revocation_returned() {
    let cache = Arc::new(CachingTokenStore::new(
        MemoryTokenStore::new(SystemClock),
        CacheConfig {
            ttl_cap: Duration::from_secs(3600),
            ..CacheConfig::default()
        },
    ));
    let tokens: Arc<Vec<String>> = Arc::new((0..SESSIONS).map(|i| format!("token-{i}")).collect());
    for (i, t) in tokens.iter().enumerate() {
        block_on(cache.store_session(session(i, t))).expect("store");
        // Filled by its access token: every later hit by it is the view's.
        assert!(
            block_on(cache.load_session_by_token(t))
                .expect("load")
                .is_some()
        );
    }
    let revoked: Arc<Vec<AtomicBool>> =
        Arc::new((0..SESSIONS).map(|_| AtomicBool::new(false)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let stale = Arc::new(AtomicU64::new(0));
    let lookups = Arc::new(AtomicU64::new(0));
    let start = Instant::now();

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (cache, tokens, revoked) = (cache.clone(), tokens.clone(), revoked.clone());
            let (done, stale, lookups) = (done.clone(), stale.clone(), lookups.clone());
            std::thread::spawn(move || {
                let mut i = r * 97;
                let mut n = 0u64;
                while !done.load(Ordering::Acquire) && n < MAX_LOOKUPS && start.elapsed() < DEADLINE
                {
                    i = (i + 131) % SESSIONS;
                    let was_revoked = revoked[i].load(Ordering::Acquire);
                    let found = block_on(cache.load_session_by_token(&tokens[i])).expect("load");
                    if was_revoked && found.is_some() {
                        stale.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                    if n.is_multiple_of(1_024) {
                        lookups.fetch_add(1_024, Ordering::Relaxed);
                    }
                }
                lookups.fetch_add(n % 1_024, Ordering::Relaxed);
            })
        })
        .collect();

    // Revoke every session in a scrambled order: even ones by logout, odd
    // ones by rotation (the same session id stored under a new token, which
    // removes the row under the old one).
    for k in 0..SESSIONS {
        let i = (k * 211) % SESSIONS;
        if i.is_multiple_of(2) {
            block_on(cache.delete_session_by_token(&tokens[i])).expect("logout");
        } else {
            block_on(cache.store_session(session(i, &format!("rotated-{i}")))).expect("rotate");
        }
        revoked[i].store(true, Ordering::Release);
        // Give the readers time to hit the sessions still live.
        if k.is_multiple_of(16) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Let the readers look the revoked tokens up for a while too, however
    // slow the machine is today.
    let after = lookups.load(Ordering::Relaxed);
    while lookups.load(Ordering::Relaxed) < after + 20_000 && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(5));
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().expect("reader");
    }

    let stale = stale.load(Ordering::Relaxed);
    let lookups = lookups.load(Ordering::Relaxed);
    let m = cache.metrics().sessions;
    println!(
        "hits_race: {lookups} lookups, {} hits, {} misses, {stale} stale",
        m.hits, m.misses
    );
    assert_eq!(stale, 0, "a revoked session was served");
    assert!(
        lookups > 10_000,
        "the readers barely ran: {lookups} lookups"
    );
    assert!(m.hits > 1_000, "too few hits to have raced: {}", m.hits);
    // Every token is revoked now, and none is served.
    for t in tokens.iter() {
        assert!(
            block_on(cache.load_session_by_token(t))
                .expect("load")
                .is_none()
        );
    }
}
