//! A cache hit allocates nothing: a session by its access token, id or refresh
//! token, an authorization code, a client and an absence (negative hit) are
//! answered without one allocation, counted by a global allocator, once the
//! thread has looked an id up before (the id and client keys reuse the
//! thread's spare `String`).
//!
//! Its own binary without the test harness (`harness = false`), so no other
//! test's thread allocates while the hits are counted.

use cap::Cap;
use futures_lite::future::block_on;
use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokenstore::cache::CacheConfig;
use tokenstore::{
    AuthCodeRecord, CachingTokenStore, ClientRecord, Clock, MemoryTokenStore, StoredSession,
    SystemClock, TokenStore, UserInfo,
};

/// Counts every byte allocated (`total_allocated`, which deallocation does not
/// lower).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Polls once with a no-op waker: a hit completes without waiting.
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a hit must complete at once"),
    }
}

const ROUNDS: usize = 2_000;

fn main() {
    let clock = SystemClock;
    let t0 = clock.now();
    let cache = CachingTokenStore::new(MemoryTokenStore::new(clock), CacheConfig::default());

    let mut session = StoredSession::new(
        "session-1",
        UserInfo::new("github", "42", "octocat"),
        "access-token-1",
        t0 + Duration::from_secs(3600),
        t0,
    );
    session.refresh_token = Some("refresh-token-1".into());
    session.refresh_expires_at = Some(t0 + Duration::from_secs(7200));
    block_on(cache.store_session(Arc::new(session))).expect("store session");
    let code = AuthCodeRecord::new("code-1", "session-1", t0 + Duration::from_secs(600), t0);
    block_on(cache.store_auth_code(Arc::new(code))).expect("store code");
    block_on(cache.store_client(Arc::new(ClientRecord::new("client-1", t0)))).expect("client");

    // Misses fill the cache (and allocate); the second round is all hits and
    // leaves the thread a spare `String` for the id and client keys. Then
    // every hit is counted.
    type Lookup = fn(&CachingTokenStore<MemoryTokenStore>) -> bool;
    let lookups: [(&str, Lookup); 6] = [
        ("session by access token", |c| {
            found(c.load_session_by_token("access-token-1"))
        }),
        ("session by id", |c| {
            found(c.load_session_by_id("session-1"))
        }),
        ("session by refresh token", |c| {
            found(c.load_session_by_refresh_token("refresh-token-1"))
        }),
        ("authorization code", |c| found(c.load_auth_code("code-1"))),
        ("client", |c| found(c.load_client("client-1"))),
        ("absent session (negative hit)", |c| {
            !found(c.load_session_by_token("no-such-token"))
        }),
    ];
    for _ in 0..2 {
        for (what, lookup) in &lookups {
            assert!(lookup(&cache), "{what}: warming up");
        }
    }
    let before = cache.metrics();

    for (what, lookup) in &lookups {
        let allocated = ALLOCATOR.total_allocated();
        for _ in 0..ROUNDS {
            assert!(lookup(&cache), "{what}");
        }
        let bytes = ALLOCATOR.total_allocated() - allocated;
        println!("hit_alloc: {what}: {bytes} bytes allocated over {ROUNDS} hits");
        assert_eq!(bytes, 0, "{what}: a hit allocated");
    }

    let after = cache.metrics();
    let hits = (after.sessions.hits - before.sessions.hits)
        + (after.auth_codes.hits - before.auth_codes.hits)
        + (after.clients.hits - before.clients.hits);
    let negative = after.sessions.negative_hits - before.sessions.negative_hits;
    assert_eq!(hits, 5 * ROUNDS as u64, "every lookup was a hit: {after:?}");
    assert_eq!(
        negative, ROUNDS as u64,
        "every absence was a negative hit: {after:?}"
    );
    assert_eq!(after.sessions.misses, before.sessions.misses);
    println!("hit_alloc: {} kinds of hit allocate nothing", lookups.len());
}

/// Whether the lookup (a hit, completing at once) found a record.
fn found<T>(lookup: impl Future<Output = Result<Option<T>, tokenstore::StoreError>>) -> bool {
    now(lookup).expect("load").is_some()
}
