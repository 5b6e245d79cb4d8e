//! The cost of the invalidation log's rows on writes (benches/feed.rs, part 3):
//! `store_session` and `delete_session_by_token` at [`WRITERS`] concurrent
//! writers on a `PostgresTokenStore` with the log on (the builder's default:
//! log rows and hints) and off (`invalidation_log(false)`), bare and through
//! `BufferedTokenStore` (`Ack::Queued`, and `Ack::Durable` with the default
//! `BufferConfig`).
//!
//! Every run gets a fresh database copied from a template holding
//! [`PREFILL`] sessions (stored with the log off, so the log starts empty).
//! A store run writes new sessions; a delete run deletes the template's
//! sessions by access token, in a scattered order, until its time is up or
//! they are all gone. A buffered run's clock stops when `flush()` returns.
//! In each round the on and off runs of a pair follow each other, in
//! alternating order; rows/s is the median over rounds, the ratio the median
//! of the rounds' off/on ratios.

use crate::common::{Stack, drive, drive_buffered, median, session};
use crate::template::{Copies, RunDb, prefill};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::postgres::PostgresTokenStore;
use tokenstore::runtime::TokioRuntime;
use tokenstore::{Ack, BufferedTokenStore, Clock, SystemClock, TokenStore};
use tokenstore_pgtest::{Server, TestDatabase};
use tokio_postgres::{Config, NoTls};

/// Concurrent writers in every run.
pub(crate) const WRITERS: usize = 64;
/// Sessions in the template (and so before every run).
pub(crate) const PREFILL: u64 = 40_000;
/// The stacks measured.
const STACKS: [Stack; 3] = [Stack::Bare, Stack::Queued, Stack::DurableDefault];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Store,
    Delete,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Self::Store => "store_session",
            Self::Delete => "delete_session_by_token",
        }
    }
}

/// One pair's result: rows/s with the log on and off, and off/on.
pub(crate) struct Cost {
    op: Op,
    stack: Stack,
    on: f64,
    off: f64,
    ratio: f64,
}

impl Cost {
    /// What the log costs, as a share of the write rate without it.
    fn share(&self) -> f64 {
        1.0 - 1.0 / self.ratio
    }
}

/// Every pair's result.
pub(crate) struct Costs {
    rounds: usize,
    budget: Duration,
    pairs: Vec<Cost>,
}

/// The template and the admin connection that copies it.
struct Template {
    copies: Copies,
    _db: TestDatabase,
    key: String,
}

impl Template {
    async fn new(server: &Server, key: &str) -> Self {
        let db = server.database();
        let store = open(db.config(), key, false).await;
        prefill(&store, PREFILL).await;
        store.close().await.expect("close the template's store");
        drop(store);
        let base = server.admin_config();
        let (admin, connection) = base.connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        Self {
            copies: Copies::new(admin, base, db.name(), "cost"),
            _db: db,
            key: key.to_owned(),
        }
    }

    async fn fresh(&self) -> RunDb {
        self.copies.fresh().await
    }

    async fn finish(&self, db: RunDb) {
        self.copies.finish(db).await;
    }
}

async fn open(config: Config, key: &str, log: bool) -> PostgresTokenStore {
    PostgresTokenStore::builder_with_config(config)
        .encryption_key(key)
        .pool_size(tokenstore::postgres::DEFAULT_POOL_SIZE)
        .invalidation_log(log)
        .open()
        .await
        .expect("open the store")
}

/// Runs every pair `rounds` times, `budget` of writing per run.
pub(crate) async fn measure(server: &Server, key: &str, budget: Duration, rounds: usize) -> Costs {
    let template = Template::new(server, key).await;
    let mut pairs = Vec::new();
    for op in [Op::Store, Op::Delete] {
        for stack in STACKS {
            let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                let order = if round.is_multiple_of(2) {
                    [true, false]
                } else {
                    [false, true]
                };
                let mut rates = [0.0; 2];
                for log in order {
                    rates[usize::from(log)] = run(&template, op, stack, log, budget).await;
                }
                off.push(rates[0]);
                on.push(rates[1]);
                ratios.push(rates[0] / rates[1]);
            }
            let cost = Cost {
                op,
                stack,
                on: median(on),
                off: median(off),
                ratio: median(ratios),
            };
            pairs.push(cost);
        }
    }
    Costs {
        rounds,
        budget,
        pairs,
    }
}

/// One measured run on a fresh copy of the template: rows/s.
async fn run(template: &Template, op: Op, stack: Stack, log: bool, budget: Duration) -> f64 {
    let db = template.fresh().await;
    let store = Arc::new(open(db.config.clone(), &template.key, log).await);
    let (rows, elapsed) = match (op, stack.buffer()) {
        (Op::Store, None) => {
            let start = Instant::now();
            let (rows, _) = drive(store.clone(), PREFILL, WRITERS, budget, start).await;
            (rows, start.elapsed())
        }
        (Op::Store, Some(config)) => {
            let b = drive_buffered(store.clone(), config, PREFILL, WRITERS, budget).await;
            (b.rows, b.elapsed)
        }
        (Op::Delete, None) => {
            let start = Instant::now();
            let rows = deletes(store.clone(), budget, start).await;
            (rows, start.elapsed())
        }
        (Op::Delete, Some(config)) => deletes_buffered(store.clone(), config, budget).await,
    };
    store.close().await.expect("close the store");
    drop(store);
    template.finish(db).await;
    rows as f64 / elapsed.as_secs_f64()
}

/// [`WRITERS`] tasks deleting the template's sessions by access token, in a
/// scattered order, until `budget` has passed since `start` or none is left;
/// returns the rows deleted.
async fn deletes<S: TokenStore + 'static>(store: Arc<S>, budget: Duration, start: Instant) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let now = SystemClock.now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                let mut rows = 0u64;
                while start.elapsed() < budget {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= PREFILL {
                        break;
                    }
                    // 7919 is prime to PREFILL: every session once.
                    let s = session((i * 7_919) % PREFILL, now);
                    store
                        .delete_session_by_token(s.access_token.expose())
                        .await
                        .expect("delete_session_by_token");
                    rows += 1;
                }
                rows
            })
        })
        .collect();
    let mut rows = 0;
    for t in tasks {
        rows += t.await.expect("deleter task");
    }
    rows
}

/// [`deletes`] through a `BufferedTokenStore`; the clock stops when
/// `flush()` returns.
async fn deletes_buffered<S: TokenStore + 'static>(
    store: Arc<S>,
    (config, ack): (BufferConfig, Ack),
    budget: Duration,
) -> (u64, Duration) {
    let buffered = Arc::new(BufferedTokenStore::new(
        store,
        config,
        ack,
        TokioRuntime::current(),
    ));
    let start = Instant::now();
    let rows = deletes(buffered.clone(), budget, start).await;
    buffered.flush().await.expect("flush");
    let elapsed = start.elapsed();
    assert_eq!(
        buffered.metrics().applied_writes,
        rows,
        "every accepted delete was applied"
    );
    buffered.close().await.expect("close the buffer");
    (rows, elapsed)
}

impl Costs {
    pub(crate) fn print(&self) {
        println!(
            "\nthe log row's cost: {WRITERS} writers, {PREFILL} sessions before each run, {} ms \
             per run, median of {} round(s); on = log rows and hints (the default), off = \
             invalidation_log(false):",
            self.budget.as_millis(),
            self.rounds
        );
        println!(
            "  {:<24} {:<14} | {:>9} {:>9} | {:>6} {:>6}",
            "call", "stack", "on r/s", "off r/s", "off/on", "cost"
        );
        for c in &self.pairs {
            println!(
                "  {:<24} {:<14} | {:>9.0} {:>9.0} | {:>6.3} {:>5.1}%",
                c.op.label(),
                c.stack.label(),
                c.on,
                c.off,
                c.ratio,
                100.0 * c.share()
            );
        }
    }

    pub(crate) fn print_targets(&self) {
        for c in self.pairs.iter().filter(|c| c.stack != Stack::Bare) {
            println!(
                "  log row, {} {}: costs {:.1}% of the rate without it <= 10%: {}",
                c.op.label(),
                c.stack.label(),
                100.0 * c.share(),
                if c.share() <= 0.10 { "met" } else { "NOT met" }
            );
        }
    }

    pub(crate) fn print_markdown(&self) {
        println!("| call, {WRITERS} writers | stack | log on rows/s | log off rows/s | cost |");
        println!("|---|---|---:|---:|---:|");
        for c in &self.pairs {
            println!(
                "| `{}` | {} | {:.0} | {:.0} | {:.1}% |",
                c.op.label(),
                c.stack.label(),
                c.on,
                c.off,
                100.0 * c.share()
            );
        }
    }
}
