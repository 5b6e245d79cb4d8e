//! The miss path: a cold `load_session_by_token` (a token the cache has never
//! seen) through each stack over one SQLite file, against the same load on
//! bare SQLite, measured side by side in one run.
//!
//! Stacks: bare SQLite; the cache over it; the buffer over it; the cache over
//! the buffer over it (the stack the main job calls cached-buffered). Each
//! round loads every session once, in a scrambled order, one call at a time
//! from one task on a tokio runtime (a miss's latency, not a throughput); the
//! caches are new each round, so every load misses. Also the same through
//! several concurrent tasks. Ratios are stack / bare (the target: the
//! cache over the buffer within 1.2x of bare).
//!
//! Run: `cargo bench -p tokenstore --bench miss` (release mode). Set
//! `TOKENSTORE_BENCH_QUICK=1` for a short smoke run.

mod common;

use common::{median, session};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::cache::CacheConfig;
use tokenstore::runtime::TokioRuntime;
use tokenstore::sqlite::SqliteTokenStore;
use tokenstore::{Ack, BufferedTokenStore, CachingTokenStore, Clock, SystemClock, TokenStore};

const KEY: &str = "b2F1dGgtd29ya2xvYWQta2V5LWZvci10b2tlbnN0b3I=";

fn main() {
    let quick = std::env::var_os("TOKENSTORE_BENCH_QUICK").is_some();
    let n: u64 = if quick { 500 } else { 5_000 };
    let rounds = if quick { 2 } else { 7 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(n, rounds));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    Bare,
    Cached,
    Buffered,
    CachedBuffered,
}

const STACKS: [Stack; 4] = [
    Stack::Bare,
    Stack::Cached,
    Stack::Buffered,
    Stack::CachedBuffered,
];

fn name(stack: Stack) -> &'static str {
    match stack {
        Stack::Bare => "bare sqlite",
        Stack::Cached => "cached",
        Stack::Buffered => "buffered",
        Stack::CachedBuffered => "cached over buffered",
    }
}

async fn run(n: u64, rounds: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Arc::new(
        SqliteTokenStore::builder(dir.path().join("miss.sqlite"))
            .encryption_key(KEY)
            .open()
            .await
            .expect("open"),
    );
    let now = SystemClock.now();
    let sessions: Vec<_> = (0..n).map(|i| session(i, now)).collect();
    sqlite
        .bulk()
        .expect("bulk")
        .bulk_store_sessions(sessions.clone())
        .await
        .expect("seed");
    let tokens: Arc<Vec<String>> = Arc::new(
        sessions
            .iter()
            .map(|s| s.access_token.expose().to_owned())
            .collect(),
    );
    println!(
        "miss path: cold load_session_by_token over SQLite ({n} sessions, {} readers), \
         median of {rounds} rounds (the stacks taking turns in each), us per call",
        sqlite.readers()
    );
    for tasks in [1usize, 8] {
        // Each round runs every stack once, in turn, so that a slow spell of
        // this shared machine (a round here can take twice as long as the
        // next) lands on all of them; each ratio is the median of the
        // rounds' own stack / bare ratios.
        let mut per_round: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); STACKS.len()];
        for round in 0..rounds {
            for (i, stack) in STACKS.into_iter().enumerate() {
                per_round[i].push(measure(&sqlite, stack, &tokens, round, tasks).await);
            }
        }
        let bare = per_round[0].clone();
        for (stack, times) in STACKS.into_iter().zip(&per_round) {
            let ratios: Vec<f64> = times.iter().zip(&bare).map(|(t, b)| t / b).collect();
            println!(
                "  {tasks} task(s)  {:<22} {:>8.1} us  {:>5.2}x bare  (rounds: {:.2}x to {:.2}x)",
                name(stack),
                median(times.clone()),
                median(ratios.clone()),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
            );
        }
    }
    sqlite.close().await.expect("close");
}

/// Loads every token once through a fresh `stack`, `tasks` at a time; wall
/// time per load (per task), in microseconds.
async fn measure(
    sqlite: &Arc<SqliteTokenStore>,
    stack: Stack,
    tokens: &Arc<Vec<String>>,
    round: usize,
    tasks: usize,
) -> f64 {
    let config = CacheConfig {
        ttl_cap: Duration::from_secs(3_600),
        ..CacheConfig::default()
    };
    let buffered = || {
        BufferedTokenStore::new(
            sqlite.clone(),
            BufferConfig::default(),
            Ack::Queued,
            TokioRuntime::current(),
        )
    };
    let store: Arc<dyn Load> = match stack {
        Stack::Bare => Arc::new(sqlite.clone()),
        Stack::Cached => Arc::new(CachingTokenStore::new(sqlite.clone(), config)),
        Stack::Buffered => Arc::new(buffered()),
        Stack::CachedBuffered => Arc::new(CachingTokenStore::new(buffered(), config)),
    };
    let n = tokens.len();
    let per_task = n / tasks;
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (store, tokens) = (store.clone(), tokens.clone());
            tokio::spawn(async move {
                // Position j of the round's permutation (7,919 is prime, so
                // coprime with n): the tasks' slices never share a token.
                for j in t * per_task..(t + 1) * per_task {
                    let i = (round + j) * 7_919 % n;
                    assert!(store.load(&tokens[i]).await, "every session loads");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    let elapsed = start.elapsed();
    elapsed.as_secs_f64() * 1e6 / per_task as f64
}

/// One cold load, boxed so every stack runs behind one type (the same box for
/// each, bare included).
trait Load: Send + Sync {
    fn load<'a>(
        &'a self,
        token: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

impl<S: TokenStore + Send + Sync> Load for S {
    fn load<'a>(
        &'a self,
        token: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move { matches!(self.load_session_by_token(token).await, Ok(Some(_))) })
    }
}
