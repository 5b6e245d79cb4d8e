//! Throughput of `apply_batch` with `StoreSession` writes: rows per second for
//! batches of 1, 64 and 4,096 sessions into a `sessions` table already holding
//! 20,000 rows, `synchronous = FULL`, Fernet encryption on; once with the
//! schema as opened (refresh-token index present) and once with that index
//! dropped.
//!
//! Run: `cargo bench -p tokenstore-sqlite --bench batch` (a plain program, no
//! harness). Each figure is the median of three runs (one without the index,
//! where every row scans the table), each on a fresh file. A last line per
//! variant times plain `INSERT`s on a raw connection, without the replacement
//! delete, to isolate what keeping the index up to date costs.

use futures_lite::future::block_on;
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{Clock, Secret, StoredSession, SystemClock, TokenHash, TokenStore, UserInfo};
use tokenstore_sqlite::{SqliteTokenStore, Synchronous, generate_key};

const PREFILL: u32 = 20_000;
const SIZES: [usize; 3] = [1, 64, 4_096];
const RUNS: usize = 3;
const INDEX: &str = "tokenstore_sessions_refresh_token_hash";
const BUDGET: Duration = Duration::from_secs(3);
const RAW_INSERT: &str = "INSERT INTO sessions (access_token_hash, access_token_encrypted, \
    refresh_token_hash, refresh_token_encrypted, session_id, provider, user_info, \
    access_expires_at, refresh_expires_at, created_at) \
    VALUES (?1, ?2, ?3, ?2, ?4, 'github', '{}', 0, 0, 0)";
const DELETE_SHARING: &str = "DELETE FROM sessions \
    WHERE access_token_hash = ?1 OR session_id = ?2 OR refresh_token_hash = ?3";

/// A login: a new session with an access and a refresh token (two Fernet
/// tokens per row).
fn session(n: u32) -> WriteOp {
    let now = SystemClock.now();
    let user = UserInfo::new("github", format!("user-{n}"), format!("login-{n}"));
    let expires = now + Duration::from_secs(3600);
    let mut s = StoredSession::new(format!("sid-{n}"), user, format!("at-{n}"), expires, now);
    s.refresh_token = Some(Secret::new(format!("rt-{n}")));
    s.refresh_expires_at = Some(now + Duration::from_secs(86_400));
    WriteOp::StoreSession(Arc::new(s))
}

fn apply(store: &SqliteTokenStore, writes: Vec<WriteOp>) {
    let writer = store.batch_writer().expect("batches");
    block_on(writer.apply_batch(writes)).expect("apply_batch");
}

/// A fresh store at `path` with `PREFILL` sessions, the index dropped unless
/// `indexed`.
fn prepared(path: &Path, indexed: bool) -> SqliteTokenStore {
    let store = block_on(
        SqliteTokenStore::builder(path)
            .encryption_key(generate_key())
            .synchronous(Synchronous::Full)
            .open(),
    )
    .expect("open");
    for start in (0..PREFILL).step_by(5_000) {
        apply(&store, (start..start + 5_000).map(session).collect());
    }
    if !indexed {
        let raw = Connection::open(path).expect("raw connection");
        raw.execute_batch(&format!("DROP INDEX {INDEX}"))
            .expect("drop");
    }
    store
}

/// Rows per second of batches of `size` new sessions, over about 8,192 rows
/// (300 batches for size 1, whose cost is the commit's sync), or fewer when
/// they take more than `BUDGET`.
fn rows_per_sec(size: usize, indexed: bool) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = prepared(&dir.path().join("bench.sqlite"), indexed);
    let batches = if size == 1 { 300 } else { 8_192 / size };
    let (mut next, mut elapsed) = (PREFILL, Duration::ZERO);
    for _ in 0..batches {
        let writes: Vec<_> = (next..next + size as u32).map(session).collect();
        next += size as u32;
        let start = Instant::now();
        apply(&store, writes);
        elapsed += start.elapsed();
        if elapsed > BUDGET {
            break;
        }
    }
    block_on(store.close()).expect("close");
    f64::from(next - PREFILL) / elapsed.as_secs_f64()
}

/// Rows per second of 4,096 plain `INSERT`s (no replacement delete, dummy
/// ciphertext) in one transaction on a raw connection to a prefilled file:
/// what maintaining the index costs, apart from the delete that needs it.
fn raw_insert_rows_per_sec(indexed: bool) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raw.sqlite");
    block_on(prepared(&path, indexed).close()).expect("close");
    let mut raw = Connection::open(&path).expect("raw connection");
    raw.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    let hex = |s: String| TokenHash::of(&s).to_hex();
    let rows: Vec<_> = (0..4_096)
        .map(|i| {
            (
                hex(format!("x-at-{i}")),
                hex(format!("x-rt-{i}")),
                format!("x-{i}"),
            )
        })
        .collect();
    let sealed = format!("gAAAAA{}", "x".repeat(130));
    let start = Instant::now();
    let tx = raw.transaction().expect("begin");
    {
        let mut stmt = tx.prepare(RAW_INSERT).expect("prepare");
        for (access, refresh, id) in &rows {
            stmt.execute(params![access, sealed, refresh, id])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
    rows.len() as f64 / start.elapsed().as_secs_f64()
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// How SQLite plans the replacement delete every `StoreSession` runs.
fn plan(indexed: bool) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plan.sqlite");
    let store = prepared(&path, indexed);
    let raw = Connection::open(&path).expect("raw connection");
    let mut stmt = raw
        .prepare(&format!("EXPLAIN QUERY PLAN {DELETE_SHARING}"))
        .expect("explain");
    let details: Vec<String> = stmt
        .query_map(["a", "b", "c"], |row| row.get(3))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    block_on(store.close()).expect("close");
    details.join("; ")
}

fn main() {
    println!("apply_batch of StoreSession writes, {PREFILL} rows before, FULL sync, encrypted");
    for indexed in [true, false] {
        let label = if indexed {
            "with the refresh-token index"
        } else {
            "refresh-token index dropped"
        };
        // Without the index each batch is a table scan per row: one run is plenty.
        let runs = if indexed { RUNS } else { 1 };
        println!(
            "\n{label} (median of {runs}); replacement delete plan: {}",
            plan(indexed)
        );
        for size in SIZES {
            let rate = median((0..runs).map(|_| rows_per_sec(size, indexed)).collect());
            let per_batch = size as f64 / rate * 1e3;
            println!("  batch {size:>5}: {rate:>10.0} rows/s  ({per_batch:.3} ms per batch)");
        }
        let raw = median(
            (0..RUNS)
                .map(|_| raw_insert_rows_per_sec(indexed))
                .collect(),
        );
        println!("  raw INSERT only, 4096 in one transaction: {raw:>10.0} rows/s");
    }
}
