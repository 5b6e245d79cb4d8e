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
use tokenstore::runtime::{SmolRuntime, TokioRuntime};
use tokenstore::sqlite::SqliteTokenStore;
use tokenstore_core::{MemoryTokenStore, SystemClock, TokenStore};
use tokenstore_tests::TEST_KEY;
use tokenstore_tests::instances::{Propagation, follow_each, instances, revoke_and_watch};

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

fn on_tokio(n: usize, hints: bool) -> Propagation {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = memory(hints);
        let caches = instances(&store, n, B, &TokioRuntime::current()).unwrap();
        let seen = revoke_and_watch(&caches, ROUNDS, B, DEADLINE)
            .await
            .unwrap();
        for c in &caches {
            c.close().await.unwrap();
        }
        seen
    })
}

fn on_smol(n: usize, hints: bool) -> Propagation {
    smol::block_on(async {
        let store = memory(hints);
        let caches = instances(&store, n, B, &SmolRuntime).unwrap();
        let seen = revoke_and_watch(&caches, ROUNDS, B, DEADLINE)
            .await
            .unwrap();
        for c in &caches {
            c.close().await.unwrap();
        }
        seen
    })
}

#[test]
fn two_instances_on_tokio_with_hints() {
    let seen = on_tokio(2, true);
    check(&seen, 2);
    // Hints wake the poller: propagation is far below the bound.
    assert!(seen.quantile(0.5) < B / 2, "p50 {:?}", seen.quantile(0.5));
}

#[test]
fn three_instances_on_tokio_polling_only() {
    check(&on_tokio(3, false), 3);
}

#[test]
fn two_instances_on_smol_polling_only() {
    check(&on_smol(2, false), 2);
}

#[test]
fn three_instances_on_smol_with_hints() {
    check(&on_smol(3, true), 3);
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let caches = follow_each(
            sqlite_stores(dir.path(), 2).await,
            B,
            &TokioRuntime::current(),
        )
        .unwrap();
        let seen = revoke_and_watch(&caches, ROUNDS, B, DEADLINE)
            .await
            .unwrap();
        check(&seen, 2);
        for c in &caches {
            c.close().await.unwrap();
        }
    });
}

#[test]
fn three_sqlite_stores_on_one_file_on_smol() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let caches = follow_each(sqlite_stores(dir.path(), 3).await, B, &SmolRuntime).unwrap();
        let seen = revoke_and_watch(&caches, ROUNDS, B, DEADLINE)
            .await
            .unwrap();
        check(&seen, 3);
        for c in &caches {
            c.close().await.unwrap();
        }
    });
}
