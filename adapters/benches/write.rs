//! Write benchmark: `store_session` throughput with 1, 8 and 64 concurrent
//! writers on the bare `SqliteTokenStore`, on `BufferedTokenStore` with
//! `Ack::Queued` and with `Ack::Durable` (`max_delay` 0 and the default), and on
//! raw rusqlite writing the same rows in batches of the buffer's measured
//! average size, all measured side by side in one run and printed as ratios.
//!
//! Every configuration starts from a copy of one file holding 20,000 sessions,
//! in WAL mode with `synchronous = FULL`, and Fernet encryption on. Writers run
//! on a tokio multi-thread runtime with 2 workers for a fixed time, each writing
//! new login sessions (an access and a refresh token) as fast as its calls
//! return; a buffered run's clock stops when `flush()` returns, so its rows/s
//! counts committed rows only.
//!
//! The raw peer is one rusqlite connection on the same kind of file doing, per
//! row, what `SqliteTokenStore` does: SHA-256 of both tokens, Fernet sealing of
//! both, `user_info` as JSON, the replacement `DELETE` of any row sharing a key,
//! and the `INSERT`, with one `BEGIN IMMEDIATE` transaction per batch. It is
//! timed two ways. "limit" times the transactions alone, with every row
//! hashed, sealed and encoded beforehand: the physical limit of SQLite on this
//! disk at that batch size, which the targets compare against. "inline" times
//! one thread doing all of it, row after row, as `SqliteTokenStore`'s
//! connection thread does (it hashes, seals and encodes each row inside the
//! transaction). A last section measures leaner schemas on
//! the raw peer (without tokenstore's refresh-token index, and also without
//! mxcp's `UNIQUE` on `session_id`) to show what they would gain; the real
//! schema is unchanged.
//!
//! Each row is the median of three rounds that interleave the stacks; each
//! measured run is followed at once by the raw peer at that run's batch size,
//! and "vs raw" is the median of those paired ratios (the disk's sync time
//! drifts with the machine's other work, so pairs measured apart would not
//! compare).
//!
//! Run: `cargo bench -p tokenstore --bench write` (release mode). Set
//! `TOKENSTORE_BENCH_QUICK=1` for a short smoke run (one round, 0.4 s runs),
//! `TOKENSTORE_BENCH_WRITERS=1,8` to choose the writer counts, and
//! `TOKENSTORE_BENCH_SYNC=off` (or `normal`) to take the disk's sync out and see
//! the software's own costs.

mod common;

use common::{Stack, drive, drive_buffered, median, session, writer_counts};
use rusqlite::{Connection, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokenstore::sqlite::{SqliteTokenStore, Synchronous, generate_key};
use tokenstore::{Clock, Secret, StoredSession, SystemClock, Timestamp, TokenStore};
use tokenstore_core::codec::json::encode_user_info;

/// Sessions in the table before every measured run.
const PREFILL: u64 = 20_000;
const REFRESH_INDEX: &str = "tokenstore_sessions_refresh_token_hash";
const DELETE_SHARING: &str = "DELETE FROM sessions \
    WHERE access_token_hash = ?1 OR session_id = ?2 OR refresh_token_hash = ?3";
const INSERT: &str = "INSERT INTO sessions (access_token_hash, access_token_encrypted, \
    refresh_token_hash, refresh_token_encrypted, session_id, provider, user_info, \
    provider_access_token, provider_refresh_token, provider_expires_at, access_expires_at, \
    refresh_expires_at, created_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, NULL, ?8, ?9, ?10)";

/// What one measured run did.
struct Run {
    rows: u64,
    elapsed: Duration,
    commits: u64,
    /// Applied writes per applied batch (buffered stacks).
    avg_batch: Option<f64>,
    /// Per-call latencies (recorded with one writer only).
    latencies: Vec<Duration>,
}

impl Run {
    /// The average batch rounded to a whole number of rows (1 for bare).
    fn batch(&self) -> usize {
        self.avg_batch.map_or(1, |b| (b.round() as usize).max(1))
    }

    fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// The files of one benchmark run: a prefilled template and fresh copies of it.
struct Files {
    dir: tempfile::TempDir,
    template: PathBuf,
    key: String,
    copies: AtomicU64,
}

impl Files {
    /// A fresh copy of the template (20,000 sessions).
    fn fresh(&self) -> PathBuf {
        let n = self.copies.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("run-{n}.sqlite"));
        std::fs::copy(&self.template, &path).expect("copy the template");
        path
    }
}

/// `synchronous` for every file of the run: FULL unless
/// `TOKENSTORE_BENCH_SYNC` says `normal` or `off` (to see the software's own
/// overhead without the disk's sync time).
fn sync_mode() -> (Synchronous, &'static str) {
    match std::env::var("TOKENSTORE_BENCH_SYNC")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "off" => (Synchronous::Off, "OFF"),
        "normal" => (Synchronous::Normal, "NORMAL"),
        _ => (Synchronous::Full, "FULL"),
    }
}

fn main() {
    let quick = std::env::var_os("TOKENSTORE_BENCH_QUICK").is_some();
    let budget = if quick {
        Duration::from_millis(400)
    } else {
        Duration::from_secs(3)
    };
    let rounds = if quick { 1 } else { 3 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let files = rt.block_on(prepare());
    println!(
        "store_session writes: {PREFILL} sessions before each run, WAL, synchronous={}, Fernet on, \
         tokio 2 workers, {} ms of writing per run",
        sync_mode().1,
        budget.as_millis()
    );
    // The machine is shared: say how busy it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }
    println!(
        "raw = rusqlite, same rows, one BEGIN IMMEDIATE per batch of the run's average batch \
         size (bare: 1), run right after it; limit = the transactions alone (rows hashed, sealed \
         and encoded beforehand); inline = one thread doing all of it"
    );
    println!(
        "{:>3} {:<14} | {:>8} {:>8} | {:>9} {:>8} {:>9} | {:>9} {:>8} {:>7}",
        "wr",
        "stack",
        "rows/s",
        "vs bare",
        "limit r/s",
        "vs limit",
        "inline r/s",
        "avg batch",
        "commits",
        "rows"
    );
    let raw_budget = budget.max(Duration::from_millis(800));
    let mut inline_cache: HashMap<usize, f64> = HashMap::new();
    let mut one_writer: HashMap<Stack, Vec<Duration>> = HashMap::new();
    let mut targets = Vec::new();
    let mut durable_64 = None;
    for writers in writer_counts() {
        // Rounds interleave the stacks, and each run is followed by the raw
        // peer at its batch size, so a slow spell of the disk hits both sides.
        let mut runs: HashMap<Stack, Vec<(Run, f64)>> = HashMap::new();
        for _ in 0..rounds {
            for stack in Stack::ALL {
                let run = rt.block_on(run_stack(&files, stack, writers, budget));
                let raw = raw_rows_per_sec(&files, Raw::limit(run.batch()), raw_budget);
                runs.entry(stack).or_default().push((run, raw));
            }
        }
        let mut bare_rate = None;
        for stack in Stack::ALL {
            let mut all = runs.remove(&stack).unwrap_or_default();
            if writers == 1 {
                one_writer.insert(
                    stack,
                    all.iter_mut()
                        .flat_map(|(r, _)| r.latencies.drain(..))
                        .collect(),
                );
            }
            let vs_raw = median(all.iter().map(|(r, raw)| r.rate() / raw).collect());
            all.sort_by(|a, b| a.0.rate().total_cmp(&b.0.rate()));
            let (run, raw) = all.swap_remove(all.len() / 2);
            let rate = run.rate();
            let bare = *bare_rate.get_or_insert(rate);
            let inline = *inline_cache.entry(run.batch()).or_insert_with(|| {
                let raw = Raw {
                    inline: true,
                    ..Raw::limit(run.batch())
                };
                raw_rows_per_sec(&files, raw, raw_budget)
            });
            println!(
                "{:>3} {:<14} | {:>8.0} {:>7.2}x | {:>9.0} {:>7.0}% {:>9.0} | {:>9} {:>8} {:>7}",
                writers,
                stack.label(),
                rate,
                rate / bare,
                raw,
                100.0 * vs_raw,
                inline,
                run.avg_batch.map_or("-".to_owned(), |b| format!("{b:.1}")),
                run.commits,
                run.rows
            );
            if writers == 64 && stack != Stack::Bare {
                targets.push((stack, vs_raw, rate / bare));
            }
            if writers == 64 && stack == Stack::DurableNow {
                durable_64 = Some(run.batch());
            }
        }
    }
    println!(
        "(rows/s: the median of {rounds} run(s); vs limit: the median of the {rounds} paired \
         ratios; limit r/s: the limit run paired with the median run)"
    );
    if !targets.is_empty() {
        println!(
            "\ntargets at 64 writers (issue 14): >= 95% of the raw limit at the same batch size, \
             >= 1.8x bare"
        );
    }
    for (stack, vs_raw, vs_bare) in targets {
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "  {:<14} {:>4.0}% of the limit ({}), {:>6.2}x bare ({})",
            stack.label(),
            100.0 * vs_raw,
            verdict(vs_raw >= 0.95),
            vs_bare,
            verdict(vs_bare >= 1.8)
        );
    }
    print_latencies(&mut one_writer);
    lean_schemas(&files, durable_64.unwrap_or(256), budget, rounds);
}

/// Prints p50/p99 per call with one writer, and Durable's overhead over bare.
fn print_latencies(runs: &mut HashMap<Stack, Vec<Duration>>) {
    println!("\none writer, per-call latency of store_session (µs):");
    let mut bare = None;
    for stack in Stack::ALL {
        let Some(lat) = runs.get_mut(&stack) else {
            continue;
        };
        lat.sort();
        let (p50, p99) = (percentile(lat, 0.50), percentile(lat, 0.99));
        let base = *bare.get_or_insert((p50, p99));
        println!(
            "  {:<14} p50 {:>8.1}  p99 {:>8.1}  ({:+.0}% / {:+.0}% vs bare; {} calls)",
            stack.label(),
            p50,
            p99,
            100.0 * (p50 / base.0 - 1.0),
            100.0 * (p99 / base.1 - 1.0),
            lat.len()
        );
    }
    println!("  (target: durable adds at most 20% over bare)");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// The template file: `PREFILL` sessions stored through tokenstore's bulk path.
async fn prepare() -> Files {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("template.sqlite");
    let key = generate_key();
    let store = open(&template, &key).await;
    let now = SystemClock.now();
    let bulk = store.bulk().expect("sqlite has bulk");
    for start in (0..PREFILL).step_by(5_000) {
        let chunk = (start..(start + 5_000).min(PREFILL))
            .map(|n| session(n, now))
            .collect();
        bulk.bulk_store_sessions(chunk).await.expect("prefill");
    }
    store.close().await.expect("close the template");
    Files {
        dir,
        template,
        key,
        copies: AtomicU64::new(0),
    }
}

async fn open(path: &Path, key: &str) -> SqliteTokenStore {
    SqliteTokenStore::builder(path)
        .encryption_key(key)
        .synchronous(sync_mode().0)
        .open()
        .await
        .expect("open sqlite")
}

/// One measured run of `stack` with `writers` concurrent writers on a fresh file.
async fn run_stack(files: &Files, stack: Stack, writers: usize, budget: Duration) -> Run {
    let sqlite = Arc::new(open(&files.fresh(), &files.key).await);
    let commits_before = sqlite.stats().commits;
    let (rows, elapsed, latencies, avg_batch) = match stack {
        Stack::Bare => {
            let start = Instant::now();
            let (rows, lat) = drive(sqlite.clone(), PREFILL, writers, budget, start).await;
            (rows, start.elapsed(), lat, None)
        }
        Stack::Queued | Stack::DurableNow | Stack::DurableDefault => {
            let config = stack.buffer().expect("a buffered stack");
            let b = drive_buffered(sqlite.clone(), config, PREFILL, writers, budget).await;
            (b.rows, b.elapsed, b.latencies, Some(b.avg_batch))
        }
    };
    let commits = sqlite.stats().commits - commits_before;
    sqlite.close().await.expect("close sqlite");
    Run {
        rows,
        elapsed,
        commits,
        avg_batch,
        latencies,
    }
}

/// Schema variants for the raw peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lean {
    /// tokenstore's schema: mxcp's tables plus the refresh-token index.
    AsShipped,
    /// mxcp's schema alone (the refresh-token index dropped).
    NoRefreshIndex,
    /// Also without mxcp's `UNIQUE` on `session_id` (and so its index).
    NoSecondaryIndex,
}

impl Lean {
    fn label(self) -> &'static str {
        match self {
            Self::AsShipped => "as shipped (pk + session_id unique + refresh idx)",
            Self::NoRefreshIndex => "no refresh-token index (mxcp's own)",
            Self::NoSecondaryIndex => "also no session_id UNIQUE (pk only)",
        }
    }

    fn apply(self, conn: &Connection) {
        if self == Self::AsShipped {
            return;
        }
        conn.execute_batch(&format!("DROP INDEX {REFRESH_INDEX}"))
            .expect("drop index");
        if self == Self::NoSecondaryIndex {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE sessions_lean (
                    access_token_hash TEXT PRIMARY KEY,
                    access_token_encrypted TEXT NOT NULL,
                    refresh_token_hash TEXT,
                    refresh_token_encrypted TEXT,
                    session_id TEXT NOT NULL,
                    provider TEXT NOT NULL,
                    user_info TEXT NOT NULL,
                    provider_access_token TEXT,
                    provider_refresh_token TEXT,
                    provider_expires_at REAL,
                    access_expires_at REAL,
                    refresh_expires_at REAL,
                    created_at REAL NOT NULL);
                 INSERT INTO sessions_lean SELECT * FROM sessions;
                 DROP TABLE sessions;
                 ALTER TABLE sessions_lean RENAME TO sessions;
                 COMMIT;",
            )
            .expect("rebuild without UNIQUE");
        }
    }
}

/// One raw rusqlite run: schema, work per row, batch size, what is timed.
#[derive(Debug, Clone, Copy)]
struct Raw {
    lean: Lean,
    /// Delete rows sharing a key before each insert, as `store_session` must.
    replace: bool,
    /// Rows per transaction.
    batch: usize,
    /// Time the hashing, sealing and JSON too (one thread doing everything);
    /// otherwise only the transactions are timed.
    inline: bool,
}

impl Raw {
    /// The physical limit at `batch` rows per transaction: tokenstore's
    /// schema and work, the transactions alone timed.
    fn limit(batch: usize) -> Self {
        Self {
            lean: Lean::AsShipped,
            replace: true,
            batch,
            inline: false,
        }
    }
}

/// One session row, hashed, sealed and encoded, ready for the `INSERT`.
struct RawRow {
    access_hash: String,
    access_sealed: String,
    refresh_hash: Option<String>,
    refresh_sealed: Option<String>,
    session: Arc<StoredSession>,
    user: String,
}

fn raw_row(fernet: &fernet::Fernet, n: u64, now: Timestamp) -> RawRow {
    let s = session(n, now);
    let user = encode_user_info(&s.user_info).expect("user_info as JSON");
    let seal = |secret: &Secret| fernet.encrypt(secret.expose().as_bytes());
    RawRow {
        access_hash: s.access_hash().to_hex(),
        access_sealed: seal(&s.access_token),
        refresh_hash: s.refresh_hash().map(|h| h.to_hex()),
        refresh_sealed: s.refresh_token.as_ref().map(seal),
        user,
        session: s,
    }
}

/// One `BEGIN IMMEDIATE` transaction writing `rows`.
fn raw_commit(conn: &mut Connection, rows: &[RawRow], replace: bool) {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .expect("begin");
    for r in rows {
        let s = &r.session;
        if replace {
            tx.prepare_cached(DELETE_SHARING)
                .expect("prepare")
                .execute(params![r.access_hash, s.session_id, r.refresh_hash])
                .expect("delete");
        }
        tx.prepare_cached(INSERT)
            .expect("prepare")
            .execute(params![
                r.access_hash,
                r.access_sealed,
                r.refresh_hash,
                r.refresh_sealed,
                s.session_id,
                s.provider,
                r.user,
                s.access_expires_at.map(|t| t.as_unix_secs_f64()),
                s.refresh_expires_at.map(|t| t.as_unix_secs_f64()),
                s.created_at.as_unix_secs_f64(),
            ])
            .expect("insert");
    }
    tx.commit().expect("commit");
}

/// Rows per second written by raw rusqlite on a fresh copy of the template,
/// as `raw` says, for about `budget` of timed work (at least one batch).
fn raw_rows_per_sec(files: &Files, raw: Raw, budget: Duration) -> f64 {
    let path = files.fresh();
    let mut conn = Connection::open(&path).expect("raw connection");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .expect("wal");
    assert!(mode.eq_ignore_ascii_case("wal"));
    conn.pragma_update(None, "synchronous", sync_mode().1)
        .expect("synchronous");
    raw.lean.apply(&conn);
    let fernet = fernet::Fernet::new(&files.key).expect("key");
    let now = SystemClock.now();
    let mut next = PREFILL;
    let (mut rows, mut timed) = (0u64, Duration::ZERO);
    while rows == 0 || timed < budget {
        let start = Instant::now();
        let batch: Vec<RawRow> = (next..next + raw.batch as u64)
            .map(|n| raw_row(&fernet, n, now))
            .collect();
        next += raw.batch as u64;
        let start = if raw.inline { start } else { Instant::now() };
        raw_commit(&mut conn, &batch, raw.replace);
        timed += start.elapsed();
        rows += raw.batch as u64;
    }
    drop(conn);
    let _ = std::fs::remove_file(&path);
    rows as f64 / timed.as_secs_f64()
}

/// What a leaner schema would gain, on the raw peer, at `batch` rows per
/// transaction: with the replacement delete tokenstore must run, and with
/// plain inserts (index upkeep alone).
fn lean_schemas(files: &Files, batch: usize, budget: Duration, rounds: usize) {
    let measure = |lean: Lean, replace: bool| {
        median(
            (0..rounds)
                .map(|_| {
                    let raw = Raw {
                        lean,
                        replace,
                        ..Raw::limit(batch)
                    };
                    raw_rows_per_sec(files, raw, budget)
                })
                .collect(),
        )
    };
    println!(
        "\nleaner schemas, raw rusqlite (transactions alone timed), {batch} rows per transaction \
         (the 64-writer durable batch), {PREFILL} rows before, median of {rounds}:"
    );
    println!(
        "  {:<50} | {:>14} {:>7} | {:>14} {:>7}",
        "sessions table", "replace rows/s", "gain", "insert rows/s", "gain"
    );
    let base_replace = measure(Lean::AsShipped, true);
    let base_insert = measure(Lean::AsShipped, false);
    for lean in [
        Lean::AsShipped,
        Lean::NoRefreshIndex,
        Lean::NoSecondaryIndex,
    ] {
        let (replace, insert) = if lean == Lean::AsShipped {
            (base_replace, base_insert)
        } else {
            (measure(lean, true), measure(lean, false))
        };
        println!(
            "  {:<50} | {:>14.0} {:>+6.0}% | {:>14.0} {:>+6.0}%",
            lean.label(),
            replace,
            100.0 * (replace / base_replace - 1.0),
            insert,
            100.0 * (insert / base_insert - 1.0)
        );
    }
    println!(
        "  (replace = DELETE of rows sharing a key, then INSERT, as store_session must; \
         insert = INSERT alone, what keeping the indexes costs)"
    );
}
