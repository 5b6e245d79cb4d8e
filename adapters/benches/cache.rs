//! Read-cache benchmark: a cached `load_session_by_token` hit against the bare
//! SQLite lookup and against the caches a user would pick instead (SHA-256 of the
//! token plus a `get` on quick_cache and on moka), measured side by side in one
//! run, with 1,000 and 100,000 sessions, with the cache in its default shards
//! and in one shard (one lock), on a sweep of threads (1, 2, and 4 and
//! 8 where the machine has that many cores). Each row also gives lookups per
//! second per thread, and each size ends with the throughput of every thread
//! count relative to one thread (perfect scaling is the thread count).
//!
//! The "Arc" column is the least any cache that returns an `Arc` does per
//! hit: clone the record's `Arc` and drop it, with no hash and no lookup. Its
//! scaling is the ceiling for every contender here: two threads hitting the
//! same records write the same reference counts, so each count's cache line
//! moves between the cores.
//!
//! A hit takes no lock: each shard's [`HitView`](tokenstore::cache::HitView)
//! answers it from a lock-free index. What two threads still share is the
//! record's reference count, which every `Arc`-returning hit writes. So the
//! scaling line also gives ours with each thread on its own sessions (thread
//! `t` of `T` looks up only the sessions at `t` modulo `T`): the same hits,
//! with no record shared between cores.
//!
//! Run: `cargo bench -p tokenstore --bench cache` (release mode). Set
//! `TOKENSTORE_BENCH_QUICK=1` for a short smoke run,
//! `TOKENSTORE_BENCH_SESSIONS=1000` (a comma-separated list) for other sizes,
//! and `TOKENSTORE_BENCH_SHARDS=N` to split the cache into `N` shards instead
//! of the default 16 (every capacity is raised to at least 64 per shard, the
//! least [`ShardPlan`](tokenstore::cache::ShardPlan) allows).

mod common;

use common::{env_list, median};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokenstore::cache::CacheConfig;
use tokenstore::sqlite::SqliteTokenStore;
use tokenstore::{
    CachingTokenStore, Clock, Secret, StoredSession, SystemClock, TokenHash, TokenStore, UserInfo,
};

type Peer<C> = Arc<C>;

fn main() {
    let quick = std::env::var_os("TOKENSTORE_BENCH_QUICK").is_some();
    let sizes = env_list("TOKENSTORE_BENCH_SESSIONS").unwrap_or_else(|| {
        if quick {
            vec![1_000]
        } else {
            vec![1_000, 100_000]
        }
    });
    println!(
        "read cache: ns per lookup (wall time over all threads, median of {ROUNDS} rounds, the contenders taking turns in each); \
         ratios are ours / theirs; M/s/thr: million lookups per second per thread"
    );
    println!(
        "{:>8} {:>3} | {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>9} | {:>7} {:>7} {:>7} {:>7}",
        "sessions",
        "thr",
        "cached",
        "1 shard",
        "qc+hash",
        "moka+hash",
        "hash",
        "Arc",
        "sqlite",
        "vs qc",
        "vs moka",
        "sqlite/us",
        "ours",
        "1 shard",
        "qc",
        "moka"
    );
    for &n in &sizes {
        run_size(n, quick);
    }
}

fn run_size(n: usize, quick: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sessions = make_sessions(n);
    let tokens: Arc<Vec<String>> = Arc::new(
        sessions
            .iter()
            .map(|s| s.access_token.expose().to_owned())
            .collect(),
    );
    let records = Arc::new(sessions.clone());
    let sqlite = Arc::new(block_on(open_sqlite(dir.path())));
    block_on(
        sqlite
            .bulk()
            .expect("sqlite has bulk")
            .bulk_store_sessions(sessions.clone()),
    )
    .expect("bulk store");
    let config = CacheConfig {
        ttl_cap: Duration::from_secs(3600),
        // Twice the sessions, as the peers below: the shards split the
        // capacity evenly but the keys only about evenly, and every key must
        // stay resident.
        session_capacity: 2 * n,
        ..CacheConfig::default()
    };
    let config = match std::env::var("TOKENSTORE_BENCH_SHARDS") {
        Ok(shards) => {
            let shards: usize = shards.parse().expect("TOKENSTORE_BENCH_SHARDS: a number");
            let least = shards * tokenstore::cache::MIN_SHARD_CAPACITY;
            CacheConfig {
                shards,
                session_capacity: config.session_capacity.max(least),
                auth_code_capacity: config.auth_code_capacity.max(least),
                client_capacity: config.client_capacity.max(least),
                negative_capacity: config.negative_capacity.max(least),
                ..config
            }
        }
        Err(_) => config,
    };
    // The same cache in one shard (one lock), to show what sharding buys.
    let one_shard = Arc::new(CachingTokenStore::new(
        sqlite.clone(),
        CacheConfig {
            shards: 1,
            ..config.clone()
        },
    ));
    let cached = Arc::new(CachingTokenStore::new(sqlite.clone(), config));
    for t in tokens.iter() {
        for cache in [&cached, &one_shard] {
            block_on(cache.load_session_by_token(t))
                .expect("warm")
                .expect("present");
        }
    }
    let qc: Peer<quick_cache::sync::Cache<TokenHash, Arc<StoredSession>>> =
        Arc::new(quick_cache::sync::Cache::new(2 * n));
    let moka: Peer<moka::sync::Cache<TokenHash, Arc<StoredSession>>> =
        Arc::new(moka::sync::Cache::new(2 * n as u64));
    for s in &sessions {
        qc.insert(s.access_hash(), s.clone());
        moka.insert(s.access_hash(), s.clone());
    }
    // The peers get twice the capacity so that every key stays resident (their
    // admission policies may otherwise refuse some): we compare `get` costs.
    moka.run_pending_tasks();
    let ops = if quick { 20_000 } else { 300_000 };
    let sqlite_ops = if quick { 2_000 } else { 10_000 };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sweep: Vec<usize> = [1usize, 2, 4, 8]
        .into_iter()
        .filter(|&t| t <= cores.max(2))
        .collect();
    // Throughput (lookups per second over all threads) per thread count.
    let mut scaling: Vec<(usize, f64, f64, f64, f64, f64, f64)> = Vec::new();
    let hit = |c: Arc<CachingTokenStore<Arc<SqliteTokenStore>>>| {
        move |t: &String| {
            assert!(matches!(
                now_or_never(c.load_session_by_token(t)),
                Some(Ok(Some(_)))
            ))
        }
    };
    for &threads in &sweep {
        // Every round runs each contender once, in turn, so that a burst of
        // noise from elsewhere on the machine (these are shared machines)
        // lands on all of them instead of on whichever ran its rounds then.
        let mut rounds: [Vec<f64>; 8] = Default::default();
        for round in 0..ROUNDS {
            let mut i = 0;
            let mut record = |ns: f64| {
                rounds[i].push(ns);
                i += 1;
            };
            record(measure(threads, ops, round, &tokens, hit(cached.clone())));
            record(measure_split(
                threads,
                ops,
                round,
                &tokens,
                hit(cached.clone()),
                true,
            ));
            record(measure(
                threads,
                ops,
                round,
                &tokens,
                hit(one_shard.clone()),
            ));
            record(measure(threads, ops, round, &tokens, {
                let c = qc.clone();
                move |t: &String| assert!(c.get(&TokenHash::of(t)).is_some())
            }));
            record(measure(threads, ops, round, &tokens, {
                let c = moka.clone();
                move |t: &String| assert!(c.get(&TokenHash::of(t)).is_some())
            }));
            record(measure(threads, ops, round, &tokens, |t: &String| {
                black_box(TokenHash::of(t));
            }));
            record(measure(
                threads,
                ops,
                round,
                &records,
                |s: &Arc<StoredSession>| {
                    drop(black_box(Arc::clone(s)));
                },
            ));
            record(measure(threads, sqlite_ops, round, &tokens, {
                let s = sqlite.clone();
                move |t: &String| {
                    assert!(
                        block_on(s.load_session_by_token(t))
                            .expect("load")
                            .is_some()
                    )
                }
            }));
        }
        let [
            ours,
            own_ns,
            one_ns,
            quick_ns,
            moka_ns,
            hash_ns,
            arc_ns,
            sqlite_ns,
        ] = rounds.map(median);
        // `measure` gives wall time per operation of one thread; each of the
        // `threads` threads did that many in the same time.
        let per_thread = |ns: f64| 1e3 / ns;
        let (vs_qc, vs_moka, vs_sqlite) = (ours / quick_ns, ours / moka_ns, sqlite_ns / ours);
        let rates = [ours, one_ns, quick_ns, moka_ns].map(per_thread);
        println!(
            "{n:>8} {threads:>3} | {ours:>9.0} {one_ns:>9.0} {quick_ns:>9.0} {moka_ns:>9.0} {hash_ns:>9.0} {arc_ns:>9.1} {sqlite_ns:>9.0} | \
             {vs_qc:>7.2}x {vs_moka:>7.2}x {vs_sqlite:>8.1}x | {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            rates[0], rates[1], rates[2], rates[3]
        );
        let total = |ns: f64| threads as f64 * 1e9 / ns;
        scaling.push((
            threads,
            total(ours),
            total(own_ns),
            total(one_ns),
            total(quick_ns),
            total(moka_ns),
            total(arc_ns),
        ));
    }
    let (_, base_ours, base_own, base_one, base_qc, base_moka, base_arc) = scaling[0];
    for &(threads, ours, own, one, qc, moka, arc) in &scaling[1..] {
        println!(
            "{:>8} {:>3} | throughput vs 1 thread: ours {:.2}x, ours with each thread on its own sessions {:.2}x, \
             ours in 1 shard {:.2}x, quick_cache {:.2}x, moka {:.2}x, Arc clone alone {:.2}x",
            n,
            threads,
            ours / base_ours,
            own / base_own,
            one / base_one,
            qc / base_qc,
            moka / base_moka,
            arc / base_arc
        );
    }
    let m = cached.metrics().sessions;
    println!(
        "{:>8}     | cache counters: {} hits, {} misses, {} evictions; {} shards",
        n,
        m.hits,
        m.misses,
        m.evictions,
        cached.shards()
    );
}

/// Rounds per contender; each row shows the median.
const ROUNDS: usize = 7;

/// Wall time per operation (ns) of one round: `ops` operations per thread on
/// `threads` threads at once, keys visited in a scrambled order.
fn measure<T, F>(threads: usize, ops: usize, round: usize, items: &Arc<Vec<T>>, op: F) -> f64
where
    T: Send + Sync + 'static,
    F: Fn(&T) + Clone + Send + 'static,
{
    measure_split(threads, ops, round, items, op, false)
}

/// [`measure`], where with `own` each thread visits only its own share of
/// the items (those at its index modulo `threads`), so no two threads ever
/// touch the same record.
fn measure_split<T, F>(
    threads: usize,
    ops: usize,
    round: usize,
    items: &Arc<Vec<T>>,
    op: F,
    own: bool,
) -> f64
where
    T: Send + Sync + 'static,
    F: Fn(&T) + Clone + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, items) = (op.clone(), items.clone());
            std::thread::spawn(move || {
                let n = items.len();
                let mut i = (round * 7919 + t * 104_729) % n;
                for _ in 0..ops {
                    let at = if own {
                        (i / threads * threads + t) % n
                    } else {
                        i
                    };
                    op(&items[at]);
                    i = (i + 7_919) % n;
                }
            })
        })
        .collect();
    handles
        .into_iter()
        .for_each(|h| h.join().expect("bench thread"));
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn make_sessions(n: usize) -> Vec<Arc<StoredSession>> {
    let now = SystemClock.now();
    (0..n)
        .map(|i| {
            let mut user = UserInfo::new("github", format!("user-{i}"), format!("name-{i}"));
            user.email = Some(format!("user{i}@example.com"));
            user.provider_scopes_granted = vec!["openid".into(), "email".into()];
            let mut s = StoredSession::new(
                format!("session-{i:08}"),
                user,
                format!(
                    "access-{i:08}-{:016x}",
                    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ),
                now + Duration::from_secs(7200),
                now,
            );
            s.refresh_token = Some(Secret::new(format!("refresh-{i:08}")));
            Arc::new(s)
        })
        .collect()
}

async fn open_sqlite(dir: &std::path::Path) -> SqliteTokenStore {
    SqliteTokenStore::builder(dir.join("bench.sqlite"))
        .encryption_key(tokenstore::sqlite::generate_key())
        .open()
        .await
        .expect("open sqlite")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

/// Polls once: a cache hit completes without waiting.
fn now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}
