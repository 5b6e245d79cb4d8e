//! The write buffer in `Durable` mode over PostgreSQL loses no acknowledged
//! write when the server crashes and restarts mid-load
//! (`pg_ctl restart -m immediate`, on a cluster of the test's own).
//!
//! 8 writers each make 40 durable `store_state` calls, bounded in count and
//! by a deadline, while the main task restarts the server once. A call that
//! returned `Ok` is acknowledged; afterwards every acknowledged state must be
//! in the database, and every failure must have been a transient error.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::runtime::TokioRuntime;
use tokenstore::{Ack, BufferedTokenStore};
use tokenstore_core::{ManualClock, StateRecord, TokenStore};
use tokenstore_pgtest::Server;
use tokenstore_tests::{PostgresFactory, T0};

const WRITERS: usize = 8;
const WRITES: usize = 40;
const DEADLINE: Duration = Duration::from_secs(90);
/// The longest one call may wait (the server is back within seconds).
const CALL_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_survive_a_crash_and_restart() {
    let server = Server::start().expect("a cluster of our own");
    let db = server.database();
    let clock = ManualClock::new(T0);
    let store = PostgresFactory::open(&db, clock).await;
    let config = BufferConfig {
        max_batch_size: 16,
        max_delay: Duration::from_millis(1),
        max_pending: 1_000,
        max_retries: 2,
        retry_backoff: Duration::from_millis(5),
    };
    // The buffer's delays and retry backoff run on the system clock (the
    // store's manual clock stays at T0, so no state expires).
    let buffer = Arc::new(BufferedTokenStore::new(
        store,
        config,
        Ack::Durable,
        TokioRuntime::current(),
    ));
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let buffer = Arc::clone(&buffer);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failed = 0;
                for i in 0..WRITES {
                    let key = format!("st-{w}-{i}");
                    let record = StateRecord::new(key.clone(), T0 + Duration::from_secs(3600), T0);
                    let call = buffer.store_state(Arc::new(record));
                    let outcome = tokio::time::timeout(CALL_LIMIT, call).await;
                    let outcome = outcome.unwrap_or_else(|_| {
                        panic!(
                            "writer {w}: call {i} took over {CALL_LIMIT:?} (pending {}, {:?})",
                            buffer.pending(),
                            buffer.metrics()
                        )
                    });
                    match outcome {
                        Ok(()) => acked.push(key),
                        Err(e) => {
                            assert!(e.is_transient(), "{e:?}");
                            failed += 1;
                        }
                    }
                    assert!(started.elapsed() < DEADLINE, "writer {w} ran out of time");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (acked, failed)
            })
        })
        .collect();
    // Let some writes land, then crash the server under the writers.
    tokio::time::sleep(Duration::from_millis(40)).await;
    let restart = tokio::task::spawn_blocking(move || {
        server
            .pg_ctl(&["-m", "immediate", "-w", "restart"])
            .expect("restart");
        server
    });
    let mut acked = BTreeSet::new();
    let mut failed = 0;
    for w in writers {
        let (keys, f) = w.await.expect("writer");
        acked.extend(keys);
        failed += f;
    }
    let server = restart.await.expect("restart task");
    // Drain whatever is still queued (bounded: the server is back).
    while let Err(e) = buffer.flush().await {
        assert!(e.is_transient(), "{e:?}");
        assert!(started.elapsed() < DEADLINE, "could not drain: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let contents = buffer.inner().contents().await.expect("contents");
    let stored: BTreeSet<String> = contents.states.iter().map(|s| s.state.clone()).collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    eprintln!(
        "{} acknowledged, {failed} not confirmed, {} stored",
        acked.len(),
        stored.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(!acked.is_empty());
    buffer.close().await.expect("close");
    drop(db);
    drop(server);
}
