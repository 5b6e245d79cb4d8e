//! Caches that agree across instances on PostgreSQL (issue 12): separate
//! `PostgresTokenStore`s on one database, each under its own following
//! cache, as replicas of a server have. The bound holds with hints and
//! without, while the hint listeners are killed over and over, across a
//! database restart (reads fail while it is down; nothing is served from
//! cache), and for an instance that lagged past the log's pruning (the gap
//! path). Every count of stale serves must be 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokenstore::CachingTokenStore;
use tokenstore::runtime::{SmolRuntime, TokioRuntime};
use tokenstore_core::{Clock, SystemClock, TokenStore};
use tokenstore_pgtest::{Server, TestDatabase};
use tokenstore_postgres::PostgresTokenStore;
use tokenstore_tests::TEST_KEY;
use tokenstore_tests::instances::{
    Propagation, Stallable, feed_config, follow_each, revoke_and_watch,
};
use tokenstore_tests::sample::session;

const B: Duration = Duration::from_millis(200);
const ROUNDS: usize = 20;
const DEADLINE: Duration = Duration::from_secs(20);

async fn stores(db: &TestDatabase, n: usize, hints: bool) -> Vec<PostgresTokenStore> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(
            PostgresTokenStore::builder(&db.conninfo())
                .encryption_key(TEST_KEY)
                .invalidation_hints(hints)
                .open()
                .await
                .expect("open the shared database"),
        );
    }
    stores
}

fn check(seen: &Propagation, n: usize) {
    assert_eq!(seen.revocations, ROUNDS);
    assert_eq!(seen.checked, ROUNDS * (n - 1));
    assert_eq!(seen.stale_serves, 0, "{seen:?}");
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn two_instances_with_hints_on_tokio() {
    let db = tokenstore_pgtest::shared().database();
    tokio_rt().block_on(async {
        let caches = follow_each(stores(&db, 2, true).await, B, &TokioRuntime::current()).unwrap();
        let seen = revoke_and_watch(&caches, ROUNDS, B, DEADLINE)
            .await
            .unwrap();
        eprintln!(
            "p50 {:?} p99 {:?} max {:?}",
            seen.quantile(0.5),
            seen.quantile(0.99),
            seen.max()
        );
        check(&seen, 2);
        assert!(
            seen.quantile(0.5) < B / 2,
            "hints: p50 {:?}",
            seen.quantile(0.5)
        );
        for c in &caches {
            c.close().await.unwrap();
        }
    });
}

#[test]
fn three_instances_polling_only_on_smol() {
    let db = tokenstore_pgtest::shared().database();
    smol::block_on(async {
        let caches = follow_each(stores(&db, 3, false).await, B, &SmolRuntime).unwrap();
        let seen = revoke_and_watch(&caches, ROUNDS, B, DEADLINE)
            .await
            .unwrap();
        check(&seen, 3);
        assert!(
            seen.max() <= B + Duration::from_millis(100),
            "max {:?}",
            seen.max()
        );
        for c in &caches {
            c.close().await.unwrap();
        }
    });
}

/// Terminates every hint listener of `db` each 20 ms until `stop`.
async fn kill_listeners(
    config: tokio_postgres::Config,
    stop: Arc<AtomicBool>,
    kills: Arc<AtomicUsize>,
) {
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.expect("admin");
    tokio::spawn(conn);
    while !stop.load(Ordering::Relaxed) {
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name LIKE '% listener'",
                &[],
            )
            .await
            .expect("terminate");
        kills.fetch_add(rows.len(), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn killed_hint_connections_cost_latency_never_a_stale_serve() {
    let db = tokenstore_pgtest::shared().database();
    tokio_rt().block_on(async {
        let caches = follow_each(stores(&db, 2, true).await, B, &TokioRuntime::current()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicUsize::new(0));
        let killer = tokio::spawn(kill_listeners(db.config(), stop.clone(), kills.clone()));
        let seen = revoke_and_watch(&caches, ROUNDS, B, DEADLINE)
            .await
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        killer.await.unwrap();
        eprintln!(
            "{} listeners killed; max {:?}",
            kills.load(Ordering::Relaxed),
            seen.max()
        );
        assert!(kills.load(Ordering::Relaxed) > 0, "no listener was killed");
        check(&seen, 2);
        for c in &caches {
            c.close().await.unwrap();
        }
    });
}

#[test]
fn across_a_database_restart_reads_fail_and_are_never_served_from_cache() {
    let server = Server::start().expect("a cluster of our own");
    let db = server.database();
    tokio_rt().block_on(async {
        let caches = follow_each(stores(&db, 2, true).await, B, &TokioRuntime::current()).unwrap();
        let now = SystemClock.now();
        let expires = now + Duration::from_secs(3600);
        caches[0]
            .store_session(Arc::new(session("sid", "tok", None, expires, None, now)))
            .await
            .unwrap();
        let started = Instant::now();
        while caches[1].metrics().sessions.hits == 0 {
            assert!(started.elapsed() < DEADLINE, "never served from cache");
            caches[1].load_session_by_token("tok").await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server
            .pg_ctl(&["-m", "immediate", "-w", "stop"])
            .expect("stop");
        let down = Instant::now();
        tokio::time::sleep(B + Duration::from_millis(50)).await;
        // The database is down and the last successful poll is older than B:
        // the cached session must not be served; the read fails.
        let answer = caches[1].load_session_by_token("tok").await;
        assert!(
            answer.is_err(),
            "served while the store is down: {answer:?}"
        );
        assert!(down.elapsed() >= B);
        server.pg_ctl(&["-w", "start"]).expect("start");
        let started = Instant::now();
        loop {
            match caches[1].load_session_by_token("tok").await {
                Ok(found) => {
                    assert!(found.is_some());
                    break;
                }
                Err(_) if started.elapsed() < DEADLINE => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("the store never came back: {e}"),
            }
        }
        let seen = revoke_and_watch(&caches, 10, B, DEADLINE).await.unwrap();
        assert_eq!(seen.stale_serves, 0, "{seen:?}");
        assert_eq!(seen.checked, 10);
        for c in &caches {
            c.close().await.unwrap();
        }
    });
}

#[test]
fn an_instance_lagging_past_pruning_takes_the_gap_path() {
    let db = tokenstore_pgtest::shared().database();
    tokio_rt().block_on(async {
        let mut opened = stores(&db, 2, true).await;
        let lagging = Arc::new(Stallable::new(opened.pop().unwrap()));
        let writer = Arc::new(opened.pop().unwrap());
        let runtime = TokioRuntime::current();
        let a = CachingTokenStore::following_with_clock(
            writer.clone(),
            feed_config(B),
            SystemClock,
            runtime.clone(),
        )
        .unwrap();
        let b = CachingTokenStore::following_with_clock(
            lagging.clone(),
            feed_config(B),
            SystemClock,
            runtime,
        )
        .unwrap();
        let now = SystemClock.now();
        let expires = now + Duration::from_secs(3600);
        a.store_session(Arc::new(session("sid", "tok", None, expires, None, now)))
            .await
            .unwrap();
        let started = Instant::now();
        while b.metrics().sessions.hits == 0 {
            assert!(started.elapsed() < DEADLINE, "never served from cache");
            b.load_session_by_token("tok").await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lagging.stall(true);
        a.delete_session_by_token("tok").await.unwrap();
        let revoked = Instant::now();
        // Prune everything: b can no longer learn of the revocation.
        let pruned = writer.prune_invalidations(Duration::ZERO).await.unwrap();
        assert!(pruned > 0);
        tokio::time::sleep(B).await;
        lagging.stall(false);
        assert!(revoked.elapsed() >= B);
        assert!(b.load_session_by_token("tok").await.unwrap().is_none());
        while b.metrics().feed.gaps == 0 {
            assert!(started.elapsed() < DEADLINE, "no gap reported");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(b.load_session_by_token("tok").await.unwrap().is_none());
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
