//! loom models of `CachingTokenStore`: a cache fill racing an invalidation.
#![cfg(tokenstore_loom)]

use loom::thread;
use std::sync::Arc;
use tokenstore::cache::CacheConfig;
use tokenstore::{CachingTokenStore, MemoryTokenStore, StoredSession, TokenStore};
use tokenstore_loom::{block_on, clock, model, session};

/// What the racing writer does to the session reached by `"tok"`.
#[derive(Debug, Clone, Copy)]
enum Invalidation {
    /// Deletes it.
    Delete,
    /// Replaces it (same id and token, a new username).
    Replace,
    /// Stores it where there was none (the reader may cache the absence).
    Create,
}

fn username(s: Option<Arc<StoredSession>>) -> Option<String> {
    s.map(|s| s.user_info.username.clone())
}

/// (b) One thread loads the session by token through the cache (a miss: it
/// asks the delegate and fills the cache) while another writes it through the
/// cache. `readers` threads load (1 or 2: two also exercise single flight, the
/// second waiting for the first's fill). Afterwards no stale entry survives: a
/// load through the cache answers what the delegate holds.
fn fill_racing_invalidation(invalidation: Invalidation, readers: usize) {
    let name = format!("fill racing {invalidation:?}, {readers} reader(s)");
    model(&name, move || {
        let clock = clock();
        let delegate = Arc::new(MemoryTokenStore::new(clock.clone()));
        if !matches!(invalidation, Invalidation::Create) {
            block_on(delegate.store_session(session("sid", "tok", "old"))).unwrap();
        }
        // Two shards: the write is reported to both, the fill lands in the
        // shard of the access token's hash.
        let config = CacheConfig {
            shards: 2,
            ..CacheConfig::default()
        };
        let cache = Arc::new(CachingTokenStore::with_clock(
            Arc::clone(&delegate),
            config,
            clock,
        ));
        assert_eq!(cache.shards(), 2);

        let others: Vec<_> = (1..readers)
            .map(|_| {
                let cache = Arc::clone(&cache);
                thread::spawn(move || block_on(cache.load_session_by_token("tok")).map(username))
            })
            .collect();
        let writer = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                block_on(async {
                    match invalidation {
                        Invalidation::Delete => cache.delete_session_by_token("tok").await,
                        Invalidation::Replace | Invalidation::Create => {
                            cache.store_session(session("sid", "tok", "new")).await
                        }
                    }
                })
            })
        };
        // The main thread is the first reader.
        let seen = block_on(cache.load_session_by_token("tok")).map(username);
        writer.join().unwrap().unwrap();
        let mut seen = vec![seen.unwrap()];
        seen.extend(others.into_iter().map(|r| r.join().unwrap().unwrap()));

        // Each racing read answered the value before or after the write.
        let truth = username(block_on(delegate.load_session_by_token("tok")).unwrap());
        for answer in &seen {
            let allowed = match invalidation {
                Invalidation::Delete => [Some("old"), None],
                Invalidation::Replace => [Some("old"), Some("new")],
                Invalidation::Create => [None, Some("new")],
            };
            assert!(
                allowed.contains(&answer.as_deref()),
                "a racing read answered {answer:?}"
            );
        }
        let cached = username(block_on(cache.load_session_by_token("tok")).unwrap());
        assert_eq!(
            cached, truth,
            "a stale entry survived the {invalidation:?}: the cache answers {cached:?}, the delegate {truth:?}"
        );
    });
}

#[test]
fn fill_racing_delete_leaves_no_stale_entry() {
    fill_racing_invalidation(Invalidation::Delete, 1);
}

#[test]
fn fill_racing_replace_leaves_no_stale_entry() {
    fill_racing_invalidation(Invalidation::Replace, 1);
}

#[test]
fn negative_fill_racing_create_leaves_no_stale_absence() {
    fill_racing_invalidation(Invalidation::Create, 1);
}

#[test]
fn single_flight_fill_racing_replace_leaves_no_stale_entry() {
    fill_racing_invalidation(Invalidation::Replace, 2);
}
