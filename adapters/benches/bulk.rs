//! Bulk-delete benchmark: removing every session of a table of 100,000 through
//! `BulkSessionStore::bulk_delete_sessions_by_hash` (one transaction) against
//! the loop of single `delete_session_by_token` calls (one transaction each),
//! against the same single calls through a `BufferedTokenStore` (`Ack::Queued`,
//! its batches go through one transaction each), and against raw rusqlite's
//! `DELETE ... WHERE access_token_hash IN (...)` in one transaction, measured
//! side by side in one run and printed as ratios.
//!
//! Every variant starts from a copy of one file (WAL, `synchronous = FULL`,
//! Fernet on). The single-call loop commits once per row, so it is timed on as
//! many rows as it deletes in its time budget, and its rate is rows/s over
//! those; the others delete the whole table.
//!
//! Run: `cargo bench -p tokenstore --bench bulk` (release mode). Set
//! `TOKENSTORE_BENCH_QUICK=1` for a short smoke run (10,000 sessions).

mod common;

use common::session;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::runtime::TokioRuntime;
use tokenstore::sqlite::{SqliteTokenStore, Synchronous, generate_key};
use tokenstore::{Ack, BufferedTokenStore, Clock, SystemClock, TokenStore};

/// Hashes per raw `DELETE ... IN (...)`, as the backend chunks them.
const CHUNK: usize = 500;

fn main() {
    let quick = std::env::var_os("TOKENSTORE_BENCH_QUICK").is_some();
    let n: u64 = if quick { 10_000 } else { 100_000 };
    let budget = if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(4)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let key = generate_key();
    let now = SystemClock.now();
    let template = dir.path().join("template.sqlite");
    rt.block_on(async {
        let store = open(&template, &key).await;
        let bulk = store.bulk().expect("sqlite has bulk");
        for start in (0..n).step_by(10_000) {
            let chunk = (start..(start + 10_000).min(n))
                .map(|i| session(i, now))
                .collect();
            bulk.bulk_store_sessions(chunk).await.expect("prefill");
        }
        store.close().await.expect("close the template");
    });
    let tokens: Vec<String> = (0..n)
        .map(|i| session(i, now).access_token.expose().to_owned())
        .collect();
    let fresh = |name: &str| -> PathBuf {
        let path = dir.path().join(format!("{name}.sqlite"));
        std::fs::copy(&template, &path).expect("copy the template");
        path
    };

    // One bulk call.
    let path = fresh("bulk");
    let (bulk_rows, bulk_time, bulk_commits) = rt.block_on(async {
        let store = open(&path, &key).await;
        let hashes = tokens
            .iter()
            .map(|t| tokenstore::TokenHash::of(t))
            .collect();
        let before = store.stats().commits;
        let start = Instant::now();
        let deleted = store
            .bulk()
            .expect("bulk")
            .bulk_delete_sessions_by_hash(hashes)
            .await
            .expect("bulk delete");
        let elapsed = start.elapsed();
        let commits = store.stats().commits - before;
        store.close().await.expect("close");
        (deleted, elapsed, commits)
    });
    assert_eq!(bulk_rows, n, "the bulk call deleted every session");
    assert_eq!(count(&path), 0);

    // The loop of single calls, for `budget`.
    let path = fresh("loop");
    let (loop_rows, loop_time) = rt.block_on(async {
        let store = open(&path, &key).await;
        let start = Instant::now();
        let mut rows = 0u64;
        for t in &tokens {
            if start.elapsed() >= budget {
                break;
            }
            store.delete_session_by_token(t).await.expect("delete");
            rows += 1;
        }
        let elapsed = start.elapsed();
        store.close().await.expect("close");
        (rows, elapsed)
    });
    assert_eq!(count(&path), n - loop_rows);

    // The same single calls through the write buffer, until flushed.
    let path = fresh("buffered");
    let (buf_time, buf_commits, avg_batch) = rt.block_on(async {
        let sqlite = Arc::new(open(&path, &key).await);
        let before = sqlite.stats().commits;
        let store = BufferedTokenStore::new(
            sqlite.clone(),
            BufferConfig::default(),
            Ack::Queued,
            TokioRuntime::current(),
        );
        let start = Instant::now();
        for t in &tokens {
            store.delete_session_by_token(t).await.expect("delete");
        }
        store.flush().await.expect("flush");
        let elapsed = start.elapsed();
        let m = store.metrics();
        store.close().await.expect("close the buffer");
        let commits = sqlite.stats().commits - before;
        sqlite.close().await.expect("close");
        (
            elapsed,
            commits,
            m.applied_writes as f64 / m.applied_batches.max(1) as f64,
        )
    });
    assert_eq!(count(&path), 0);

    // Raw rusqlite: hash, then DELETE ... IN (...) in chunks, one transaction.
    let path = fresh("raw");
    let raw_time = {
        let mut conn = raw_connection(&path);
        let start = Instant::now();
        let hashes: Vec<String> = tokens
            .iter()
            .map(|t| tokenstore::TokenHash::of(t).to_hex())
            .collect();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        let mut deleted = 0;
        for chunk in hashes.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("DELETE FROM sessions WHERE access_token_hash IN ({marks})");
            deleted += tx
                .prepare_cached(&sql)
                .expect("prepare")
                .execute(params_from_iter(chunk))
                .expect("delete");
        }
        tx.commit().expect("commit");
        assert_eq!(deleted as u64, n);
        start.elapsed()
    };
    assert_eq!(count(&path), 0);

    // The machine is shared: say how busy it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "load average (1, 5, 15 min) after the runs: {}",
            load.trim()
        );
    }
    let rate = |rows: u64, t: Duration| rows as f64 / t.as_secs_f64();
    let single = rate(loop_rows, loop_time);
    let raw = rate(n, raw_time);
    println!(
        "delete {n} sessions (WAL, synchronous=FULL, Fernet on); ratios are rows/s over the \
         single-call loop's and over raw rusqlite's"
    );
    println!(
        "  {:<34} | {:>9} {:>10} {:>9} {:>8} | {:>9} {:>7}",
        "path", "rows", "time", "rows/s", "commits", "vs loop", "vs raw"
    );
    let line = |label: &str, rows: u64, t: Duration, commits: String| {
        let r = rate(rows, t);
        println!(
            "  {:<34} | {:>9} {:>8.0}ms {:>9.0} {:>8} | {:>8.1}x {:>6.0}%",
            label,
            rows,
            t.as_secs_f64() * 1e3,
            r,
            commits,
            r / single,
            100.0 * r / raw
        );
    };
    line(
        "single-call loop (timed part)",
        loop_rows,
        loop_time,
        loop_rows.to_string(),
    );
    line(
        "bulk_delete_sessions_by_hash",
        n,
        bulk_time,
        bulk_commits.to_string(),
    );
    line(
        &format!("buffered single calls (avg {avg_batch:.0})"),
        n,
        buf_time,
        buf_commits.to_string(),
    );
    line("raw rusqlite DELETE IN, one tx", n, raw_time, "1".into());
    println!(
        "  (the loop at its rate would take {:.0} s for all {n})",
        n as f64 / single
    );
}

async fn open(path: &Path, key: &str) -> SqliteTokenStore {
    SqliteTokenStore::builder(path)
        .encryption_key(key)
        .synchronous(Synchronous::Full)
        .open()
        .await
        .expect("open sqlite")
}

fn raw_connection(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("raw connection");
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .expect("wal");
    assert!(mode.eq_ignore_ascii_case("wal"));
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous");
    conn
}

fn count(path: &Path) -> u64 {
    let conn = Connection::open(path).expect("raw connection");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))
        .expect("count");
    u64::try_from(rows).expect("a count")
}
