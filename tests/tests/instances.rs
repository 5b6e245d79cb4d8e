//! Caches that agree across instances (issue 12): two and three instances,
//! each with its own cache following the store's invalidation feed, on one
//! store. Revoke on one, and no other serves the old record once the bound `B`
//! has passed since the revoke returned.
//!
//! On the shared in-memory store here; `instances_sqlite` and
//! `instances_postgres` run the same check on one SQLite file and one
//! PostgreSQL database.

use std::sync::Arc;
use std::time::Duration;
use tokenstore::CachingTokenStore;
use tokenstore::runtime::{SmolRuntime, TokioRuntime};
use tokenstore::sqlite::SqliteTokenStore;
use tokenstore_core::{ManualClock, MemoryTokenStore, SystemClock, TokenStore};
use tokenstore_tests::T0;
use tokenstore_tests::TEST_KEY;
use tokenstore_tests::instances::{
    Propagation, Stallable, follow_each, instances, revoke_and_watch,
};
use tokenstore_tests::sample::session;

const B: Duration = Duration::from_millis(200);
const ROUNDS: usize = 20;
const DEADLINE: Duration = Duration::from_secs(10);

fn memory(hints: bool) -> Arc<MemoryTokenStore> {
    let store = MemoryTokenStore::new(SystemClock).with_invalidation_log(Duration::from_secs(600));
    if hints {
        Arc::new(store)
    } else {
        Arc::new(store.without_hints())
    }
}

fn check(seen: &Propagation, n: usize) {
    assert_eq!(seen.revocations, ROUNDS);
    assert_eq!(seen.checked, ROUNDS * (n - 1));
    assert_eq!(seen.stale_serves, 0, "{seen:?}");
    assert!(
        seen.max() <= B + Duration::from_millis(50),
        "max {:?}",
        seen.max()
    );
}

/// Runs the rounds on `caches` (`n` instances), checks them, closes them.
async fn watch_and_close<S: TokenStore>(caches: &[CachingTokenStore<S>], n: usize) -> Propagation {
    let seen = revoke_and_watch(caches, ROUNDS, B, DEADLINE).await.unwrap();
    check(&seen, n);
    for c in caches {
        c.close().await.unwrap();
    }
    seen
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

fn on_tokio(n: usize, hints: bool) -> Propagation {
    let rt = tokio_rt();
    rt.block_on(async {
        let store = memory(hints);
        let caches = instances(&store, n, B, &TokioRuntime::current()).unwrap();
        watch_and_close(&caches, n).await
    })
}

fn on_smol(n: usize, hints: bool) -> Propagation {
    smol::block_on(async {
        let store = memory(hints);
        let caches = instances(&store, n, B, &SmolRuntime).unwrap();
        watch_and_close(&caches, n).await
    })
}

#[test]
fn two_instances_on_tokio_with_hints() {
    let seen = on_tokio(2, true);
    // Hints wake the poller: propagation is far below the bound.
    assert!(seen.quantile(0.5) < B / 2, "p50 {:?}", seen.quantile(0.5));
}

#[test]
fn three_instances_on_tokio_polling_only() {
    on_tokio(3, false);
}

#[test]
fn two_instances_on_smol_polling_only() {
    on_smol(2, false);
}

#[test]
fn three_instances_on_smol_with_hints() {
    on_smol(3, true);
}

#[test]
fn following_a_store_without_a_feed_is_a_config_error() {
    let plain = Arc::new(MemoryTokenStore::new(SystemClock));
    let err = instances(&plain, 1, B, &SmolRuntime).expect_err("no feed");
    assert!(err.to_string().contains("no invalidation feed"), "{err}");
    let store = memory(true);
    let err = instances(&store, 1, Duration::from_secs(30), &SmolRuntime).expect_err("B too big");
    assert!(err.to_string().contains("below its ttl_cap"), "{err}");
}

/// `n` SQLite stores on one file, each its own connection thread, as `n`
/// processes sharing the file would have.
async fn sqlite_stores(dir: &std::path::Path, n: usize) -> Vec<SqliteTokenStore> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(
            SqliteTokenStore::builder(dir.join("shared.sqlite"))
                .encryption_key(TEST_KEY)
                .invalidation_log(true)
                .open()
                .await
                .expect("open the shared file"),
        );
    }
    stores
}

#[test]
fn two_sqlite_stores_on_one_file_on_tokio() {
    let rt = tokio_rt();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let caches = follow_each(
            sqlite_stores(dir.path(), 2).await,
            B,
            &TokioRuntime::current(),
        )
        .unwrap();
        watch_and_close(&caches, 2).await;
    });
}

#[test]
fn three_sqlite_stores_on_one_file_on_smol() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let caches = follow_each(sqlite_stores(dir.path(), 3).await, B, &SmolRuntime).unwrap();
        watch_and_close(&caches, 3).await;
    });
}

/// The wall clock can stand still or step back without the cache noticing;
/// the runtime's timer cannot. With the cache's clock stuck and the feed
/// stalled, the poll's lapse timer alone ends freshness `B` after the last
/// successful poll started: reads then go to the store.
#[test]
fn a_stuck_wall_clock_cannot_stretch_freshness_past_the_lapse() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let stuck = ManualClock::new(T0);
        let store = Arc::new(Stallable::new(Arc::new(
            MemoryTokenStore::new(stuck.clone()).with_invalidation_log(Duration::from_secs(600)),
        )));
        let cache = CachingTokenStore::following_with_clock(
            store.clone(),
            tokenstore_tests::instances::feed_config(B),
            stuck.clone(),
            TokioRuntime::current(),
        )
        .unwrap();
        let s = session("sid", "tok", None, T0 + Duration::from_secs(3600), None, T0);
        cache.store_session(Arc::new(s)).await.unwrap();
        tokio::time::sleep(B / 4).await; // the first poll answered
        cache.load_session_by_token("tok").await.unwrap();
        cache.load_session_by_token("tok").await.unwrap();
        assert_eq!(
            cache.metrics().sessions.hits,
            1,
            "served from cache while polls succeed"
        );

        store.stall(true);
        tokio::time::sleep(2 * B).await; // polls hang; the wall clock says no time passed
        let misses = cache.metrics().sessions.misses;
        cache.load_session_by_token("tok").await.unwrap();
        let m = cache.metrics();
        assert_eq!(
            m.sessions.hits, 1,
            "no hit once B passed on the runtime's timer"
        );
        assert_eq!(m.sessions.misses, misses + 1);
        assert!(m.feed.lapses >= 1, "{:?}", m.feed);
    });
}

/// An instance whose poller lags past the log's retention takes the gap path:
/// it drops its whole cache, serves nothing revoked meanwhile, and fills again.
#[test]
fn a_lagging_instance_takes_the_gap_path() {
    let rt = tokio_rt();
    rt.block_on(async {
        let retention = Duration::from_millis(100);
        let store = Arc::new(MemoryTokenStore::new(SystemClock).with_invalidation_log(retention));
        let lagging = Arc::new(Stallable::new(store.clone()));
        let runtime = TokioRuntime::current();
        let a = CachingTokenStore::following_with_clock(
            store.clone(),
            tokenstore_tests::instances::feed_config(B),
            SystemClock,
            runtime.clone(),
        )
        .unwrap();
        let b = CachingTokenStore::following_with_clock(
            lagging.clone(),
            tokenstore_tests::instances::feed_config(B),
            SystemClock,
            runtime,
        )
        .unwrap();
        let now = || tokenstore_core::Clock::now(&SystemClock);
        let expires = now() + Duration::from_secs(3600);
        a.store_session(Arc::new(session("sid", "tok", None, expires, None, now())))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + DEADLINE;
        while b.metrics().sessions.hits == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "b never served from cache"
            );
            b.load_session_by_token("tok").await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lagging.stall(true);
        a.delete_session_by_token("tok").await.unwrap();
        let revoked = std::time::Instant::now();
        tokio::time::sleep(2 * retention).await;
        // A later write prunes the revocation's entry: b can no longer learn it.
        a.store_session(Arc::new(session(
            "sid2",
            "tok2",
            None,
            expires,
            None,
            now(),
        )))
        .await
        .unwrap();
        lagging.stall(false);
        assert!(revoked.elapsed() >= B);
        assert!(b.load_session_by_token("tok").await.unwrap().is_none());
        while b.metrics().feed.gaps == 0 {
            assert!(std::time::Instant::now() < deadline, "no gap reported");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(b.metrics().session_entries, 0, "the gap dropped the cache");
        assert!(b.load_session_by_token("tok").await.unwrap().is_none());
    });
}

/// The stack a replica runs, cache over a Durable write buffer, keeps the
/// bound: the buffer forwards its store's feed, and a durable revoke returns
/// only once its batch (and so its log row) committed.
#[test]
fn caches_over_durable_buffers_keep_the_bound() {
    use tokenstore::buffer::BufferConfig;
    use tokenstore::{Ack, BufferedTokenStore};
    let rt = tokio_rt();
    rt.block_on(async {
        let store = memory(true);
        let runtime = TokioRuntime::current();
        let buffers: Vec<_> = (0..2)
            .map(|_| {
                BufferedTokenStore::new(
                    store.clone(),
                    BufferConfig::default(),
                    Ack::Durable,
                    runtime.clone(),
                )
            })
            .collect();
        let caches = follow_each(buffers, B, &runtime).unwrap();
        watch_and_close(&caches, 2).await;
    });
}
