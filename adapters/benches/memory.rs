//! Memory benchmark: bytes per cached session with 100,000 sessions in the read
//! cache's machine (`CacheMachine`, what `CachingTokenStore` holds behind its
//! lock), against the records' own size.
//!
//! Bytes are counted by a counting global allocator (the `cap` crate wrapping
//! `System`: every live heap byte the program asked for, without the
//! allocator's own rounding), cross-checked with the resident set size from
//! `/proc/self/statm`.
//!
//! A record's own size is defined as `size_of::<StoredSession>()` plus the
//! length of every string it owns (ids, tokens, user fields, each scope) plus
//! the inline size of its lists' elements: what a tightly packed copy would
//! need, with no allocator or capacity slack and no `Arc` header. Its measured
//! allocation (what building the `Arc<StoredSession>` really took) is printed
//! beside it.
//!
//! Run: `cargo bench -p tokenstore --bench memory` (release mode). Set
//! `TOKENSTORE_BENCH_QUICK=1` for 20,000 sessions.

mod common;

use cap::Cap;
use common::session;
use std::alloc::System;
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;
use tokenstore::cache::{CacheConfig, CacheKey, CacheMachine, FillOutcome, Lookup};
use tokenstore::{Clock, Secret, SessionKey, StoredSession, SystemClock, Timestamp};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn main() {
    let quick = std::env::var_os("TOKENSTORE_BENCH_QUICK").is_some();
    let n: usize = if quick { 20_000 } else { 100_000 };
    let now = SystemClock.now();

    let mut records = Vec::with_capacity(n);
    let (heap0, rss0) = (ALLOCATOR.allocated(), rss());
    for i in 0..n {
        records.push(session(i as u64, now));
    }
    let record_alloc = ALLOCATOR.allocated() - heap0;
    let own: usize = records.iter().map(|s| own_size(s)).sum();

    let config = CacheConfig {
        ttl_cap: Duration::from_secs(3_600),
        session_capacity: n,
        ..CacheConfig::default()
    };
    let before_cache = ALLOCATOR.allocated();
    let mut cache = CacheMachine::new(config);
    for s in &records {
        let Lookup::Miss(ticket) =
            cache.lookup(now, &CacheKey::Session(SessionKey::Access(s.access_hash())))
        else {
            panic!("a first lookup misses");
        };
        assert_eq!(
            cache.fill_session(now, ticket, Some(s.clone())),
            FillOutcome::Cached
        );
    }
    let structure = ALLOCATOR.allocated() - before_cache;
    // The cache is now the records' only owner.
    let vec_bytes = records.capacity() * size_of::<Arc<StoredSession>>();
    drop(records);
    let total = ALLOCATOR.allocated() - heap0 + vec_bytes;
    let rss_total = rss().saturating_sub(rss0);
    let m = cache.metrics().sessions;
    assert_eq!(m.fills, n as u64, "every session was cached");
    assert_eq!(m.evictions, 0);
    // Every session is still there: one hit per key kind.
    for i in [0, n / 2, n - 1] {
        let s = session(i as u64, now);
        for key in CacheKey::of_session(&s) {
            assert!(matches!(cache.lookup(now, &key), Lookup::Hit(_)));
        }
    }

    let per = |bytes: usize| bytes as f64 / n as f64;
    println!(
        "read cache memory: {n} sessions, each reachable by 3 keys (access hash, id, refresh hash)"
    );
    println!(
        "  record own size (struct {} B + owned strings + list items) {:>8.0} B/session",
        size_of::<StoredSession>(),
        per(own)
    );
    println!(
        "  record as allocated (Arc header, heap blocks)              {:>8.0} B/session",
        per(record_alloc)
    );
    println!(
        "  cache structure (index, side map of 2 keys, order list)    {:>8.0} B/session",
        per(structure)
    );
    println!(
        "  total per cached session (records + structure)             {:>8.0} B/session",
        per(total)
    );
    println!(
        "  total / record own size                                    {:>8.2}x  (target <= 2x)",
        total as f64 / own as f64
    );
    match rss_total {
        0 => println!("  resident set growth: not available"),
        bytes => println!(
            "  resident set growth over the same span (cross-check)       {:>8.0} B/session",
            per(bytes)
        ),
    }
    println!(
        "  key sizes: CacheKey {} B (x1 in the index, x2 in the side map, x3 in the order \
         list's Vec), \
         Arc {} B, Timestamp {} B",
        size_of::<CacheKey>(),
        size_of::<Arc<StoredSession>>(),
        size_of::<Timestamp>()
    );
}

/// `size_of::<StoredSession>()` plus every owned string's length and every
/// list element's inline size.
fn own_size(s: &StoredSession) -> usize {
    let opt = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    let secret = |v: &Option<Secret>| v.as_ref().map_or(0, Secret::len);
    let list = |v: &[String]| {
        v.iter()
            .map(|x| size_of::<String>() + x.len())
            .sum::<usize>()
    };
    let u = &s.user_info;
    let raw = u
        .raw_profile
        .as_ref()
        .map_or(0, |m| serde_json::to_string(m).map_or(0, |t| t.len()));
    size_of::<StoredSession>()
        + s.session_id.len()
        + s.provider.len()
        + s.access_token.len()
        + secret(&s.refresh_token)
        + secret(&s.provider_access_token)
        + secret(&s.provider_refresh_token)
        + u.provider.len()
        + u.user_id.len()
        + u.username.len()
        + opt(&u.email)
        + opt(&u.name)
        + opt(&u.avatar_url)
        + raw
        + list(&u.provider_scopes_granted)
        + list(&u.capabilities)
}

/// Resident set size in bytes, from `/proc/self/statm` (0 where unavailable).
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}
