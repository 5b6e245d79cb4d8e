//! PostgreSQL benchmark: `store_session` with 1, 8 and 64 concurrent writers
//! on the bare `PostgresTokenStore`, on `BufferedTokenStore` with
//! `Ack::Queued` and with `Ack::Durable` (`max_delay` 0 and the default), each
//! beside the limit, and `load_session_by_token` bare, cached and as a raw
//! prepared `SELECT`, all measured side by side in one run and printed as
//! ratios.
//!
//! The server is a throwaway cluster (`tokenstore-pgtest`: `fsync` on, a Unix
//! socket; `synchronous_commit` at its default, `on`), or the server
//! `TOKENSTORE_PG_URL` names. Every run gets a fresh database copied from a
//! template holding 20,000 sessions, stored with Fernet encryption on. Writers
//! run on a tokio multi-thread runtime with 2 workers for a fixed time, each
//! writing new login sessions as fast as its calls return; a buffered run's
//! clock stops when `flush()` returns, so its rows/s counts committed rows.
//!
//! The limit is raw `tokio-postgres` running the transactions the store runs,
//! with the rows hashed, sealed and encoded beforehand, on a fresh copy of the
//! template right after the run it is paired with:
//!
//! - for a buffered run, one connection committing batches of the run's
//!   average batch size one after another (the buffer has one batch in
//!   flight), each `BEGIN`, the advisory locks of its keys, one `DELETE` of
//!   every row sharing a key, one `INSERT ... SELECT FROM UNNEST(...)`,
//!   `COMMIT`, as `apply_batch` does;
//! - for a bare run, as many connections as the store's pool uses (the writer
//!   count, at most the pool size), each committing one row per transaction
//!   as `store_session` does (`BEGIN`, locks, `DELETE`, `INSERT`, `COMMIT`).
//!
//! "commit ceiling" is the cluster's single-row commit rate: autocommitted
//! one-row `INSERT`s into a one-column table, on one connection and on as many
//! as the pool holds: what the machine's disk allows one transaction at a time.
//!
//! Each row of the table is the median of three rounds that interleave the
//! stacks; "vs limit" is the median of the paired ratios.
//!
//! Run: `cargo bench -p tokenstore --features postgres --bench postgres`
//! (release mode; needs `initdb`, see the README, or `TOKENSTORE_PG_URL`).
//! `TOKENSTORE_BENCH_QUICK=1` makes a short smoke run (one round, 0.4 s
//! runs); `TOKENSTORE_BENCH_WRITERS=1,8` chooses the writer counts (empty:
//! the lookups only).

mod common;
#[path = "common/template.rs"]
mod template;

use bytes::{BufMut, BytesMut};
use common::{Stack, drive, drive_buffered, median, session, writer_counts};
use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use template::{Copies, RunDb, prefill};
use tokenstore::cache::CacheConfig;
use tokenstore::postgres::{DEFAULT_POOL_SIZE, PostgresTokenStore, generate_key};
use tokenstore::{CachingTokenStore, Clock, Secret, SystemClock, Timestamp, TokenHash, TokenStore};
use tokenstore_core::codec::json::encode_user_info;
use tokenstore_pgtest::{Server, TestDatabase};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls, Statement};

/// Sessions in the table before every measured run.
const PREFILL: u64 = 20_000;
/// The store's pool in every run: the default.
const POOL: usize = DEFAULT_POOL_SIZE;
const COLUMNS: &str = "access_token_hash, access_token_encrypted, refresh_token_hash, \
     refresh_token_encrypted, session_id, provider, user_info, provider_access_token, \
     provider_refresh_token, provider_expires_at, access_expires_at, refresh_expires_at, \
     created_at";

/// What one measured run did.
struct Run {
    rows: u64,
    elapsed: Duration,
    /// Applied writes per applied batch (buffered stacks).
    avg_batch: Option<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    /// The average batch rounded to a whole number of rows (1 for bare).
    fn batch(&self) -> usize {
        self.avg_batch.map_or(1, |b| (b.round() as usize).max(1))
    }
}

/// The server, the prefilled template database and the bench's admin
/// connection, which copies the template for every run.
struct Bench {
    copies: Copies,
    _template: TestDatabase,
    key: String,
    _server: Server,
}

impl Bench {
    async fn new(rt: &tokio::runtime::Handle) -> Self {
        let server = Server::from_env_or_start().unwrap_or_else(|e| panic!("{e}"));
        let template = server.database();
        let key = generate_key();
        let store = open(template.config(), &key).await;
        prefill(&store, PREFILL).await;
        store.close().await.expect("close the template's store");
        let base = server.admin_config();
        let admin = connect(rt, &base).await;
        Self {
            copies: Copies::new(admin, base, template.name(), "run"),
            _template: template,
            key,
            _server: server,
        }
    }

    /// A fresh copy of the template (20,000 sessions).
    async fn fresh(&self) -> RunDb {
        self.copies.fresh().await
    }

    async fn finish(&self, db: RunDb) {
        self.copies.finish(db).await;
    }
}

async fn show(admin: &Client, name: &str) -> String {
    let row = admin.query_one(&format!("SHOW {name}"), &[]).await;
    row.map(|r| r.get::<_, String>(0)).expect("SHOW")
}

async fn connect(rt: &tokio::runtime::Handle, config: &Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    rt.spawn(connection);
    client
}

async fn open(config: Config, key: &str) -> PostgresTokenStore {
    PostgresTokenStore::builder_with_config(config)
        .encryption_key(key)
        .pool_size(POOL)
        .open()
        .await
        .expect("open the store")
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
    let bench = rt.block_on(Bench::new(rt.handle()));
    let (sync, fsync) = rt.block_on(async {
        (
            show(&bench.copies.admin, "synchronous_commit").await,
            show(&bench.copies.admin, "fsync").await,
        )
    });
    println!(
        "store_session writes on PostgreSQL: {PREFILL} sessions before each run, Fernet on, \
         synchronous_commit={sync}, fsync={fsync}, pool {POOL}, tokio 2 workers, {} ms of \
         writing per run",
        budget.as_millis()
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }
    let ceiling = rt.block_on(commit_ceiling(&bench, rt.handle(), budget));
    println!(
        "commit ceiling (one-row autocommit INSERTs): {:.0}/s on 1 connection, {:.0}/s on {POOL}",
        ceiling.0, ceiling.1
    );
    println!(
        "limit = raw tokio-postgres, the store's transactions at the run's average batch size \
         (bare: 1 row, on min(writers, pool) connections; buffered: 1 connection), rows \
         hashed, sealed and encoded beforehand, run right after it"
    );
    println!(
        "{:>3} {:<14} | {:>8} {:>8} | {:>9} {:>8} | {:>9} {:>7}",
        "wr", "stack", "rows/s", "vs bare", "limit r/s", "vs limit", "avg batch", "rows"
    );
    let mut targets = Vec::new();
    for writers in writer_counts() {
        let mut runs: HashMap<Stack, Vec<(Run, f64)>> = HashMap::new();
        for _ in 0..rounds {
            for stack in Stack::ALL {
                let run = rt.block_on(run_stack(&bench, stack, writers, budget));
                let conns = if stack == Stack::Bare {
                    writers.min(POOL)
                } else {
                    1
                };
                let raw = rt.block_on(raw_limit(
                    &bench,
                    rt.handle(),
                    run.batch(),
                    conns,
                    run.rows,
                    budget,
                ));
                runs.entry(stack).or_default().push((run, raw));
            }
        }
        let mut bare_rate = None;
        for stack in Stack::ALL {
            let mut all = runs.remove(&stack).unwrap_or_default();
            let vs_limit = median(all.iter().map(|(r, raw)| r.rate() / raw).collect());
            all.sort_by(|a, b| a.0.rate().total_cmp(&b.0.rate()));
            let (run, raw) = all.swap_remove(all.len() / 2);
            let rate = run.rate();
            let bare = *bare_rate.get_or_insert(rate);
            println!(
                "{:>3} {:<14} | {:>8.0} {:>7.2}x | {:>9.0} {:>7.0}% | {:>9} {:>7}",
                writers,
                stack.label(),
                rate,
                rate / bare,
                raw,
                100.0 * vs_limit,
                run.avg_batch.map_or("-".to_owned(), |b| format!("{b:.1}")),
                run.rows
            );
            if writers == 64 && stack != Stack::Bare {
                targets.push((stack, vs_limit, rate / bare));
            }
        }
    }
    println!(
        "(rows/s: the median of {rounds} run(s); vs limit: the median of the {rounds} paired \
         ratios; limit r/s: the limit run paired with the median run)"
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if !targets.is_empty() {
        println!(
            "\ntargets at 64 writers: durable >= 5x bare and >= 85% of the limit; queued >= 85% \
             of the limit"
        );
    }
    for (stack, vs_limit, vs_bare) in targets {
        let bare_target = if stack == Stack::Queued {
            String::new()
        } else {
            format!(" ({})", verdict(vs_bare >= 5.0))
        };
        println!(
            "  {:<14} {:>4.0}% of the limit ({}), {:>6.2}x bare{bare_target}",
            stack.label(),
            100.0 * vs_limit,
            verdict(vs_limit >= 0.85),
            vs_bare,
        );
    }
    let loads = rt.block_on(loads(
        &bench,
        rt.handle(),
        if quick { 2_000 } else { 20_000 },
    ));
    println!(
        "\nload_session_by_token, one caller, {} lookups of existing sessions (µs per call):",
        loads.calls
    );
    println!("  bare   {:>8.1}", loads.bare);
    println!("  cached {:>8.1}  (warm: every lookup a hit)", loads.cached);
    println!(
        "  raw    {:>8.1}  (prepared SELECT on one connection)",
        loads.raw
    );
    println!(
        "  bare / raw = {:.2}x (target <= 1.5x: {})",
        loads.bare / loads.raw,
        verdict(loads.bare / loads.raw <= 1.5)
    );
}

/// One measured run of `stack` with `writers` concurrent writers on a fresh
/// copy of the template.
async fn run_stack(bench: &Bench, stack: Stack, writers: usize, budget: Duration) -> Run {
    let db = bench.fresh().await;
    let store = Arc::new(open(db.config.clone(), &bench.key).await);
    let run = if stack == Stack::Bare {
        let start = Instant::now();
        let (rows, _) = drive(store.clone(), PREFILL, writers, budget, start).await;
        Run {
            rows,
            elapsed: start.elapsed(),
            avg_batch: None,
        }
    } else {
        let config = stack.buffer().expect("a buffered stack");
        let b = drive_buffered(store.clone(), config, PREFILL, writers, budget).await;
        Run {
            rows: b.rows,
            elapsed: b.elapsed,
            avg_batch: Some(b.avg_batch),
        }
    };
    store.close().await.expect("close the store");
    drop(store);
    bench.finish(db).await;
    run
}

/// A time as `timestamptz` on the wire: microseconds since 2000-01-01 UTC.
#[derive(Debug, Clone, Copy)]
struct Ts(Timestamp);

impl ToSql for Ts {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_i64(self.0.as_unix_micros() - 946_684_800_000_000);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

/// JSON text as a `json` value.
#[derive(Debug, Clone)]
struct JsonText(String);

impl ToSql for JsonText {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}

/// The first 8 bytes of a hash, the store's advisory-lock key for it.
fn lock_key(h: TokenHash) -> i64 {
    let b = h.as_bytes();
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Sessions hashed, sealed and encoded, one array per column, with their
/// sorted advisory-lock keys: what the store sends for them.
#[derive(Default)]
struct Encoded {
    locks: Vec<i64>,
    access_hash: Vec<Vec<u8>>,
    access: Vec<String>,
    refresh_hash: Vec<Option<Vec<u8>>>,
    refresh: Vec<Option<String>>,
    session_id: Vec<String>,
    provider: Vec<String>,
    user_info: Vec<JsonText>,
    none_text: Vec<Option<String>>,
    none_time: Vec<Option<Ts>>,
    access_expires_at: Vec<Option<Ts>>,
    refresh_expires_at: Vec<Option<Ts>>,
    created_at: Vec<Ts>,
}

fn encode(fernet: &fernet::Fernet, numbers: std::ops::Range<u64>, now: Timestamp) -> Encoded {
    let mut e = Encoded::default();
    let seal = |secret: &Secret| fernet.encrypt(secret.expose().as_bytes());
    for n in numbers {
        let s = session(n, now);
        let (access, refresh) = (s.access_hash(), s.refresh_hash());
        e.locks.push(lock_key(access));
        e.locks.extend(refresh.map(lock_key));
        e.locks.push(lock_key(TokenHash::of(&format!(
            "session_id:{}",
            s.session_id
        ))));
        e.access_hash.push(access.as_bytes().to_vec());
        e.access.push(seal(&s.access_token));
        e.refresh_hash.push(refresh.map(|h| h.as_bytes().to_vec()));
        e.refresh.push(s.refresh_token.as_ref().map(seal));
        e.session_id.push(s.session_id.clone());
        e.provider.push(s.provider.clone());
        e.user_info.push(JsonText(
            encode_user_info(&s.user_info).expect("user_info as JSON"),
        ));
        e.none_text.push(None);
        e.none_time.push(None);
        e.access_expires_at.push(s.access_expires_at.map(Ts));
        e.refresh_expires_at.push(s.refresh_expires_at.map(Ts));
        e.created_at.push(Ts(s.created_at));
    }
    e.locks.sort_unstable();
    e.locks.dedup();
    e
}

/// The statements the store runs to store sessions, prepared on one connection.
struct RawStatements {
    lock: Statement,
    delete_one: Statement,
    insert_one: Statement,
    delete_many: Statement,
    insert_many: Statement,
}

impl RawStatements {
    async fn prepare(c: &Client) -> Self {
        let s = "tokenstore";
        let prepare = |sql: String| async move { c.prepare(&sql).await.expect("prepare") };
        Self {
            lock: prepare("SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS t(k)".into())
                .await,
            delete_one: prepare(format!(
                "DELETE FROM {s}.sessions WHERE access_token_hash = $1 OR session_id = $2 \
                 OR refresh_token_hash = $3"
            ))
            .await,
            insert_one: prepare(format!(
                "INSERT INTO {s}.sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13)"
            ))
            .await,
            delete_many: prepare(format!(
                "DELETE FROM {s}.sessions WHERE access_token_hash = ANY($1::bytea[]) \
                 OR session_id = ANY($2::text[]) OR refresh_token_hash = ANY($3::bytea[])"
            ))
            .await,
            insert_many: prepare(format!(
                "INSERT INTO {s}.sessions ({COLUMNS}) SELECT * FROM UNNEST($1::bytea[], \
                 $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::json[], \
                 $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], \
                 $12::timestamptz[], $13::timestamptz[])"
            ))
            .await,
        }
    }

    /// One transaction storing `e`: the single-row statements for one row
    /// (as `store_session`), the set-based ones for more (as `apply_batch`).
    async fn commit(&self, c: &Client, e: &Encoded) {
        c.batch_execute("BEGIN").await.expect("begin");
        c.query(&self.lock, &[&e.locks]).await.expect("locks");
        if e.access.len() == 1 {
            c.execute(
                &self.delete_one,
                &[&e.access_hash[0], &e.session_id[0], &e.refresh_hash[0]],
            )
            .await
            .expect("delete");
            c.execute(
                &self.insert_one,
                &[
                    &e.access_hash[0],
                    &e.access[0],
                    &e.refresh_hash[0],
                    &e.refresh[0],
                    &e.session_id[0],
                    &e.provider[0],
                    &e.user_info[0],
                    &e.none_text[0],
                    &e.none_text[0],
                    &e.none_time[0],
                    &e.access_expires_at[0],
                    &e.refresh_expires_at[0],
                    &e.created_at[0],
                ],
            )
            .await
            .expect("insert");
        } else {
            let refresh: Vec<&Vec<u8>> = e.refresh_hash.iter().flatten().collect();
            c.execute(
                &self.delete_many,
                &[&e.access_hash, &e.session_id, &refresh],
            )
            .await
            .expect("delete");
            c.execute(
                &self.insert_many,
                &[
                    &e.access_hash,
                    &e.access,
                    &e.refresh_hash,
                    &e.refresh,
                    &e.session_id,
                    &e.provider,
                    &e.user_info,
                    &e.none_text,
                    &e.none_text,
                    &e.none_time,
                    &e.access_expires_at,
                    &e.refresh_expires_at,
                    &e.created_at,
                ],
            )
            .await
            .expect("insert");
        }
        c.batch_execute("COMMIT").await.expect("commit");
    }
}

/// Rows per second of raw tokio-postgres running the store's transactions,
/// `batch` rows each, on `conns` connections, on a fresh copy of the
/// template: the batches (enough for about twice the paired run's `rows`) are
/// encoded first, then timed until `budget` has passed or they are used up.
async fn raw_limit(
    bench: &Bench,
    rt: &tokio::runtime::Handle,
    batch: usize,
    conns: usize,
    rows: u64,
    budget: Duration,
) -> f64 {
    let db = bench.fresh().await;
    let fernet = fernet::Fernet::new(&bench.key).expect("key");
    let now = SystemClock.now();
    let wanted = (rows * 2).clamp(2_000, 400_000);
    let batches: Vec<Encoded> = (0..wanted.div_ceil(batch as u64))
        .map(|i| {
            let first = PREFILL + i * batch as u64;
            encode(&fernet, first..first + batch as u64, now)
        })
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..conns {
        let c = connect(rt, &db.config).await;
        let statements = RawStatements::prepare(&c).await;
        clients.push((c, statements));
    }
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(c, statements)| {
            let (batches, next) = (batches.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while start.elapsed() < budget {
                    let Some(e) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    statements.commit(&c, e).await;
                    done += e.access.len() as u64;
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        done += t.await.expect("raw writer");
    }
    let elapsed = start.elapsed();
    bench.finish(db).await;
    done as f64 / elapsed.as_secs_f64()
}

/// One-row autocommit `INSERT`s per second on 1 and on `POOL` connections.
async fn commit_ceiling(
    bench: &Bench,
    rt: &tokio::runtime::Handle,
    budget: Duration,
) -> (f64, f64) {
    let db = bench.fresh().await;
    let setup = connect(rt, &db.config).await;
    setup
        .batch_execute("CREATE TABLE commit_ceiling (id bigint PRIMARY KEY)")
        .await
        .expect("create table");
    let next = Arc::new(AtomicU64::new(0));
    let mut rates = [0.0; 2];
    for (i, conns) in [1, POOL].into_iter().enumerate() {
        let mut clients = Vec::new();
        for _ in 0..conns {
            let c = connect(rt, &db.config).await;
            let insert = c
                .prepare("INSERT INTO commit_ceiling VALUES ($1)")
                .await
                .expect("prepare");
            clients.push((c, insert));
        }
        let start = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|(c, insert)| {
                let next = next.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while start.elapsed() < budget {
                        let id = next.fetch_add(1, Ordering::Relaxed) as i64;
                        c.execute(&insert, &[&id]).await.expect("insert");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            n += t.await.expect("committer");
        }
        rates[i] = n as f64 / start.elapsed().as_secs_f64();
    }
    drop(setup);
    bench.finish(db).await;
    (rates[0], rates[1])
}

/// Per-call times of `load_session_by_token`, in µs.
struct Loads {
    calls: usize,
    bare: f64,
    cached: f64,
    raw: f64,
}

async fn loads(bench: &Bench, rt: &tokio::runtime::Handle, calls: usize) -> Loads {
    let db = bench.fresh().await;
    let now = SystemClock.now();
    // Existing sessions, spread over the table, in a scattered order.
    let tokens: Vec<String> = (0..calls as u64)
        .map(|i| {
            let n = (i * 7_919) % PREFILL;
            session(n, now).access_token.expose().to_owned()
        })
        .collect();
    let per_call = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let store = Arc::new(open(db.config.clone(), &bench.key).await);
    // One pass to warm the connections and the server's buffers.
    for t in tokens.iter().take(500) {
        store.load_session_by_token(t).await.expect("load");
    }
    let start = Instant::now();
    for t in &tokens {
        let found = store.load_session_by_token(t).await.expect("load");
        assert!(found.is_some(), "a prefilled session");
    }
    let bare = per_call(start);
    let cached = CachingTokenStore::new(store.clone(), CacheConfig::default());
    for t in &tokens {
        cached.load_session_by_token(t).await.expect("load");
    }
    let start = Instant::now();
    for t in &tokens {
        let found = cached.load_session_by_token(t).await.expect("load");
        assert!(found.is_some(), "a cached session");
    }
    let cached_us = per_call(start);
    let hits = cached.metrics().sessions.hits;
    assert!(hits >= calls as u64, "the second pass hit the cache");
    drop(cached);
    store.close().await.expect("close");
    drop(store);
    let c = connect(rt, &db.config).await;
    let select = c
        .prepare(&format!(
            "SELECT {COLUMNS} FROM tokenstore.sessions WHERE access_token_hash = $1"
        ))
        .await
        .expect("prepare");
    let start = Instant::now();
    for t in &tokens {
        let hash = TokenHash::of(t);
        let row = c
            .query_opt(&select, &[&hash.as_bytes().as_slice()])
            .await
            .expect("select");
        assert!(row.is_some(), "a prefilled row");
    }
    let raw = per_call(start);
    drop(c);
    bench.finish(db).await;
    Loads {
        calls,
        bare,
        cached: cached_us,
        raw,
    }
}
