//! Simulation for users (issue 5): the real stack on tokio's paused clock.
//!
//! A user who wants to test their server without waiting builds a
//! current-thread tokio runtime with `start_paused(true)`, gives the stack the
//! [`TokioClock`] (a clock on tokio's time), and uses [`TokioRuntime`] for the
//! flush timer. Then a flush delay of seconds and a cache lifetime of minutes
//! pass in no real time, and nothing reads the system clock.

use std::sync::Arc;
use std::time::Duration;
use tokenstore::buffer::BufferConfig;
use tokenstore::cache::CacheConfig;
use tokenstore::runtime::{TokioClock, TokioRuntime};
use tokenstore::{Ack, BufferedTokenStore, CachingTokenStore};
use tokenstore_core::{Clock, MemoryTokenStore, StoredSession, Timestamp, TokenStore, UserInfo};

#[test]
fn flush_delay_and_cache_lifetime_pass_in_virtual_time() {
    let real = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused tokio runtime");
    let virtual_elapsed = runtime.block_on(async {
        let start = tokio::time::Instant::now();
        let clock = TokioClock::new(Timestamp::from_unix_secs(1_700_000_000));
        let delegate = Arc::new(MemoryTokenStore::new(clock.clone()));
        let buffered = BufferedTokenStore::with_clock(
            delegate.clone(),
            BufferConfig {
                max_delay: Duration::from_secs(5),
                max_batch_size: 1_000,
                ..BufferConfig::default()
            },
            Ack::Queued,
            TokioRuntime::current(),
            clock.clone(),
        );
        let store = CachingTokenStore::with_clock(
            buffered,
            CacheConfig {
                ttl_cap: Duration::from_secs(60),
                skew: Duration::from_secs(1),
                ..CacheConfig::default()
            },
            clock.clone(),
        );

        // A write waits in the buffer for `max_delay` of virtual time.
        let now = clock.now();
        let session = StoredSession::new(
            "sid-1",
            UserInfo::new("github", "42", "octocat"),
            "access-1",
            now + Duration::from_secs(3_600),
            now,
        );
        store
            .store_session(Arc::new(session))
            .await
            .expect("queued");
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        assert!(
            delegate.contents().sessions.is_empty(),
            "applied before max_delay"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            delegate.contents().sessions.len(),
            1,
            "not applied once max_delay passed"
        );

        // The cache: a miss fills it, then hits until ttl_cap - skew passes.
        let load = || async {
            store
                .load_session_by_token("access-1")
                .await
                .expect("load")
                .is_some()
        };
        assert!(load().await);
        assert!(load().await);
        let m = store.metrics().sessions;
        assert_eq!((m.misses, m.hits), (1, 1));
        tokio::time::sleep(Duration::from_secs(58)).await;
        assert!(load().await);
        let m = store.metrics().sessions;
        assert_eq!(
            (m.misses, m.hits),
            (1, 2),
            "still cached before ttl_cap - skew"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(load().await);
        let m = store.metrics().sessions;
        assert_eq!(
            (m.misses, m.hits),
            (2, 2),
            "expired after ttl_cap - skew: a miss"
        );

        // Ten more virtual minutes: the session's own expiry is still ahead.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(load().await);
        store.close().await.expect("close drains");
        start.elapsed()
    });
    let real = real.elapsed();
    assert!(
        virtual_elapsed >= Duration::from_secs(665),
        "virtual time advanced {virtual_elapsed:?}"
    );
    assert!(
        real < Duration::from_secs(2),
        "{virtual_elapsed:?} of virtual time took {real:?} of real time"
    );
    println!("{virtual_elapsed:?} of virtual time in {real:?} of real time");
}
