//! Invalidation-feed benchmark (issue 12, item 5; `scale-out.md` section 6.3):
//! two instances on one throwaway PostgreSQL, each its own
//! `PostgresTokenStore` under its own `CachingTokenStore::following` with the
//! default bound `B` = 1 s, measured side by side in one run.
//!
//! 1. **Revocation propagation.** Per round, A stores `K` login sessions, B
//!    waits for a poll that started after they committed and then holds every
//!    one cached (a validation answered on its first poll, before anything was
//!    awaited: a hit). A then revokes them one after another, alternating
//!    logouts (`delete_session_by_token`) and rotations (`store_session` with
//!    new tokens under the same id), while B validates every token whose
//!    revoke has started in a tight loop until it is refused (on a thread of
//!    its own, pausing 100 µs after each pass: a spinning loop takes a core
//!    from the database on a 2-core machine and measured its own starvation;
//!    `TOKENSTORE_BENCH_WATCH_PAUSE_US=0` spins). `t0` = when A's
//!    call returned, `t1` = when B's first refusing validation returned, both
//!    from one `Instant` clock. A *stale serve* is a validation that started
//!    at or after `t0 + B` and still returned the revoked session. Cases:
//!    idle with hints, idle with hints off (polling only), and under a steady
//!    background load on both instances (logins, rotations and validations
//!    of live sessions) with hints.
//! 2. **Polls per second** per instance: idle followers at `B` = 250 ms, 1 s
//!    and 5 s, and both instances under the load of case (c). Also the round
//!    trip of one poll (`invalidations_since` on an idle store), the "one
//!    poll" of the hints-off target.
//! 3. **The cost of the log row**: `store_session` and
//!    `delete_session_by_token` at 64 concurrent writers with the log on (the
//!    builder's default: log rows and hints) and off (`invalidation_log(false)`),
//!    bare, `Ack::Queued` and `Ack::Durable` (default `BufferConfig`), each on
//!    a fresh copy of a template holding 40,000 sessions, on and off run back
//!    to back in alternating order, three rounds.
//!
//! Run: `cargo bench -p tokenstore --features postgres --bench feed`
//! (release mode; needs `initdb`, see the README, or `TOKENSTORE_PG_URL`).
//! `TOKENSTORE_BENCH_QUICK=1` makes a short smoke run.

mod common;

#[path = "common/feed_cost.rs"]
mod feed_cost;
#[path = "common/template.rs"]
mod template;

use common::session;
use futures_lite::future::{block_on, poll_once};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenstore::cache::{CacheConfig, DEFAULT_FEED_BOUND};
use tokenstore::postgres::{DEFAULT_POOL_SIZE, PostgresTokenStore, generate_key};
use tokenstore::runtime::TokioRuntime;
use tokenstore::{
    CachingTokenStore, Clock, Secret, StoredSession, SystemClock, TokenStore, feed::Watermark,
};
use tokenstore_pgtest::{Server, TestDatabase};
use tokio_postgres::Config;

/// The bound every measured instance runs with: the default, 1 s.
const BOUND: Duration = DEFAULT_FEED_BOUND;
/// Every store's pool: the default.
const POOL: usize = DEFAULT_POOL_SIZE;
/// The background load of case (c), per instance: one write (a login or a
/// rotation, in turn) every tick, and this many validations every tick.
const LOAD_TICK: Duration = Duration::from_millis(5);
const LOAD_VALIDATIONS_PER_TICK: usize = 10;
/// Live sessions the background load validates and rotates.
const LOAD_LIVE: u64 = 1_000;
/// Session numbers: each round's, the load's, the marker's.
const ROUND_BASE: u64 = 1_000_000;
const LOAD_BASE: u64 = 50_000_000;
const MARKER: u64 = 99_000_000;
/// How long B's watcher pauses after each pass over its pending tokens: a
/// tight loop that still leaves the database a core on a 2-core machine.
const WATCH_PAUSE: Duration = Duration::from_micros(100);

type Instance = CachingTokenStore<PostgresTokenStore>;

/// How much of each part runs (`TOKENSTORE_BENCH_QUICK` shrinks it).
struct Plan {
    quick: bool,
    /// (rounds, tokens per round) with hints, idle and loaded.
    hinted: (usize, usize),
    /// (rounds, tokens per round) polling only: a round lasts about `B`.
    polling: (usize, usize),
    idle_window: Duration,
    rtt_polls: usize,
    cost_budget: Duration,
    cost_rounds: usize,
    /// B's watcher's pause between passes (0: spin, yielding the thread).
    pause: Duration,
}

impl Plan {
    fn from_env() -> Self {
        let pause = std::env::var("TOKENSTORE_BENCH_WATCH_PAUSE_US").map_or(WATCH_PAUSE, |us| {
            Duration::from_micros(us.parse().expect("TOKENSTORE_BENCH_WATCH_PAUSE_US: µs"))
        });
        if std::env::var_os("TOKENSTORE_BENCH_QUICK").is_some() {
            Self {
                quick: true,
                hinted: (3, 100),
                polling: (2, 100),
                idle_window: Duration::from_secs(2),
                rtt_polls: 50,
                cost_budget: Duration::from_millis(400),
                cost_rounds: 1,
                pause,
            }
        } else {
            Self {
                quick: false,
                hinted: (100, 100),
                polling: (20, 500),
                idle_window: Duration::from_secs(10),
                rtt_polls: 1_000,
                cost_budget: Duration::from_secs(2),
                cost_rounds: 3,
                pause,
            }
        }
    }
}

fn main() {
    let plan = Plan::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = Server::from_env_or_start().unwrap_or_else(|e| panic!("{e}"));
    let key = generate_key();
    let started = Instant::now();
    println!(
        "invalidation feed on PostgreSQL: 2 instances, each its own PostgresTokenStore (pool \
         {POOL}) under CachingTokenStore::following (B = {} ms, CoarseSystemClock), tokio 2 \
         workers, one Instant clock for t0 and t1; B's watcher on a thread of its own, pausing \
         {} µs between passes",
        BOUND.as_millis(),
        plan.pause.as_micros()
    );
    print_load("load average at start");
    let rtt = rt.block_on(poll_round_trip(&server, &key, plan.rtt_polls));
    println!(
        "one poll (invalidations_since on an idle store, {} calls): p50 {}, p99 {}, max {}",
        rtt.len(),
        ms(quantile(&rtt, 0.50)),
        ms(quantile(&rtt, 0.99)),
        ms(max(&rtt)),
    );
    let cases = [Case::Hints, Case::PollOnly, Case::Loaded];
    let runs: Vec<_> = cases
        .iter()
        .map(|&case| {
            let run = rt.block_on(propagation(&server, &key, case, &plan));
            run.print_line(case);
            run
        })
        .collect();
    let idle = rt.block_on(idle_polls(&server, &key, plan.idle_window));
    let cost = rt.block_on(feed_cost::measure(
        &server,
        &key,
        plan.cost_budget,
        plan.cost_rounds,
    ));
    report(&plan, &rtt, &cases, &runs, &idle, &cost);
    print_load("load average at end");
    println!("whole run: {:.0} s", started.elapsed().as_secs_f64());
}

fn print_load(label: &str) {
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("{label}: {}", load.trim());
    }
}

// ---------------------------------------------------------------------------
// Instances

/// A store on `config` with the log and hints as given.
async fn open_store(config: Config, key: &str, log: bool, hints: bool) -> PostgresTokenStore {
    PostgresTokenStore::builder_with_config(config)
        .encryption_key(key)
        .pool_size(POOL)
        .invalidation_log(log)
        .invalidation_hints(hints)
        .open()
        .await
        .expect("open the store")
}

/// One instance: a store of its own under a cache that follows its feed
/// with bound `bound`, once its first poll answered.
async fn follower(config: Config, key: &str, hints: bool, bound: Duration) -> Instance {
    let store = open_store(config, key, true, hints).await;
    let config = CacheConfig {
        feed_bound: Some(bound),
        ..CacheConfig::default()
    };
    let cache = CachingTokenStore::following(store, config, TokioRuntime::current())
        .expect("follow the feed");
    wait_polls(&cache, 2, bound * 3).await;
    cache
}

/// Waits until `cache` started `polls` polls (so `polls - 1` answered).
async fn wait_polls(cache: &Instance, polls: u64, within: Duration) {
    let deadline = Instant::now() + within + Duration::from_secs(5);
    while cache.metrics().feed.polls < polls {
        assert!(Instant::now() < deadline, "the feed stopped polling");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The two instances of a propagation case, on a database of their own.
struct Pair {
    a: Instance,
    b: Instance,
    hints: bool,
    _db: TestDatabase,
}

impl Pair {
    async fn open(server: &Server, key: &str, hints: bool) -> Self {
        let db = server.database();
        let a = follower(db.config(), key, hints, BOUND).await;
        let b = follower(db.config(), key, hints, BOUND).await;
        Self {
            a,
            b,
            hints,
            _db: db,
        }
    }

    fn instance(&self, which: usize) -> &Instance {
        if which == 0 { &self.a } else { &self.b }
    }

    async fn close(&self) {
        self.a.close().await.expect("close A");
        self.b.close().await.expect("close B");
    }
}

/// `s` with new tokens (suffix `-g{generation}`) under the same session id:
/// a refresh-token rotation.
fn rotated(s: &StoredSession, generation: u64) -> Arc<StoredSession> {
    let mut next = s.clone();
    let base = |t: &str| t.split("-g").next().unwrap_or(t).to_owned();
    next.access_token = Secret::new(format!("{}-g{generation}", base(s.access_token.expose())));
    next.refresh_token = s
        .refresh_token
        .as_ref()
        .map(|r| Secret::new(format!("{}-g{generation}", base(r.expose()))));
    Arc::new(next)
}

/// Whether `cache` answers `token` from its cache: the lookup completed on
/// its first poll, before anything was awaited (`CachingTokenStore` answers
/// a hit that way and only a hit), and found the session. A miss is awaited
/// (it fills the cache) and counts as not held.
async fn held(cache: &Instance, token: &str) -> bool {
    let mut load = pin!(cache.load_session_by_token(token));
    match poll_once(load.as_mut()).await {
        Some(found) => found.expect("validate").is_some(),
        None => {
            let found = load.await.expect("validate");
            assert!(found.is_some(), "a live session is found");
            false
        }
    }
}

// ---------------------------------------------------------------------------
// Propagation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Hints,
    PollOnly,
    Loaded,
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Self::Hints => "(a) idle, hints",
            Self::PollOnly => "(b) idle, hints off",
            Self::Loaded => "(c) loaded, hints",
        }
    }

    fn hints(self) -> bool {
        self != Self::PollOnly
    }
}

/// What one propagation case measured.
#[derive(Default)]
struct Propagation {
    latencies: Vec<Duration>,
    logouts: usize,
    rotations: usize,
    /// Validations that started at or after `t0 + B` and still returned the
    /// revoked session. Must be 0.
    stale: u64,
    /// Tokens B refused before A's revoking call had returned.
    early: usize,
    /// Tokens B still served when the round's deadline passed.
    unrefused: usize,
    /// Rounds in which B did not hold every token cached before the revokes.
    not_held: usize,
    /// Validations B made while watching (the tight loop).
    watch_validations: u64,
    elapsed: Duration,
    /// Polls per second of A and of B over the case.
    polls_per_sec: (f64, f64),
    load: Option<LoadReport>,
}

impl Propagation {
    fn print_line(&self, case: Case) {
        let l = &self.latencies;
        println!(
            "{:<20} {:>6} revocations ({} logouts, {} rotations) in {:>4.0} s: p50 {:>9} p99 \
             {:>9} p99.9 {:>9} max {:>9}; stale serves {}, refused before the revoke returned \
             {}, never refused {}, rounds not held {}",
            case.label(),
            l.len(),
            self.logouts,
            self.rotations,
            self.elapsed.as_secs_f64(),
            ms(quantile(l, 0.50)),
            ms(quantile(l, 0.99)),
            ms(quantile(l, 0.999)),
            ms(max(l)),
            self.stale,
            self.early,
            self.unrefused,
            self.not_held,
        );
    }
}

async fn propagation(server: &Server, key: &str, case: Case, plan: &Plan) -> Propagation {
    let pair = Arc::new(Pair::open(server, key, case.hints()).await);
    let load = match case {
        Case::Loaded => Some(Load::start(&pair).await),
        _ => None,
    };
    let (rounds, per_round) = match case {
        Case::PollOnly => plan.polling,
        _ => plan.hinted,
    };
    let marker = session(MARKER, SystemClock.now());
    let mut out = Propagation::default();
    let polls = (pair.a.metrics().feed.polls, pair.b.metrics().feed.polls);
    let start = Instant::now();
    for round in 0..rounds {
        let first = ROUND_BASE + (round * per_round) as u64;
        one_round(&pair, first, per_round, &marker, plan.pause, &mut out).await;
    }
    out.elapsed = start.elapsed();
    let secs = out.elapsed.as_secs_f64();
    out.polls_per_sec = (
        (pair.a.metrics().feed.polls - polls.0) as f64 / secs,
        (pair.b.metrics().feed.polls - polls.1) as f64 / secs,
    );
    if let Some(load) = load {
        out.load = Some(load.stop().await);
    }
    pair.close().await;
    out
}

/// What A's revoker and B's watcher share in one round.
struct Round {
    /// The revoked access tokens, as B validates them.
    tokens: Vec<String>,
    /// Set before A's revoking call starts.
    started: Vec<AtomicBool>,
    /// When A's call returned, in ns since `base` (0: not yet).
    returned: Vec<AtomicU64>,
    base: Instant,
}

impl Round {
    fn now(&self) -> u64 {
        (self.base.elapsed().as_nanos() as u64).max(1)
    }
}

/// What B's watcher saw in one round.
struct Watched {
    /// When B's first refusal returned, per token (0: never).
    refused_at: Vec<u64>,
    stale: u64,
    validations: u64,
}

async fn one_round(
    pair: &Arc<Pair>,
    first: u64,
    k: usize,
    marker: &Arc<StoredSession>,
    pause: Duration,
    out: &mut Propagation,
) {
    let now = SystemClock.now();
    let sessions: Vec<_> = (first..first + k as u64).map(|n| session(n, now)).collect();
    let bulk = pair.a.bulk().expect("postgres has bulk");
    bulk.bulk_store_sessions(sessions.clone())
        .await
        .expect("store the round's sessions on A");
    settle(pair, marker).await;
    let tokens: Vec<String> = sessions
        .iter()
        .map(|s| s.access_token.expose().to_owned())
        .collect();
    if !hold_all(&pair.b, &tokens).await {
        out.not_held += 1;
    }
    if !pair.hints {
        // `settle` returned just as a poll started: without a random phase
        // every round's first revokes would wait most of a poll period.
        let period = (BOUND / 2).as_micros() as usize;
        let phase = Rng(first).below(period) as u64;
        tokio::time::sleep(Duration::from_micros(phase)).await;
    }
    let round = Arc::new(Round {
        started: tokens.iter().map(|_| AtomicBool::new(false)).collect(),
        returned: tokens.iter().map(|_| AtomicU64::new(0)).collect(),
        tokens,
        base: Instant::now(),
    });
    let deadline = Duration::from_secs(5) + BOUND * 3 + Duration::from_millis(20) * k as u32;
    let watcher = {
        let (pair, round) = (pair.clone(), round.clone());
        std::thread::spawn(move || watch(&pair, &round, deadline, pause))
    };
    let (logouts, rotations) = revoke_all(pair, &round, &sessions).await;
    let seen = watcher.join().expect("B's watcher");
    out.logouts += logouts;
    out.rotations += rotations;
    out.stale += seen.stale;
    out.watch_validations += seen.validations;
    for (i, &refused) in seen.refused_at.iter().enumerate() {
        let returned = round.returned[i].load(Ordering::Acquire);
        if refused == 0 {
            out.unrefused += 1;
            continue;
        }
        if refused < returned {
            out.early += 1;
        }
        out.latencies
            .push(Duration::from_nanos(refused.saturating_sub(returned)));
    }
}

/// Returns once B completed a poll that started after this call: B has
/// then seen (and evicted for) every write that returned before it. With
/// hints, a logged marker write on A wakes B's poller each time.
async fn settle(pair: &Pair, marker: &Arc<StoredSession>) {
    let target = pair.b.metrics().feed.polls + 2;
    let deadline = Instant::now() + BOUND * 3 + Duration::from_secs(5);
    while pair.b.metrics().feed.polls < target {
        assert!(Instant::now() < deadline, "B's feed stopped polling");
        if pair.hints {
            pair.a
                .store_session(marker.clone())
                .await
                .expect("the marker write");
        }
        let seen = pair.b.metrics().feed.polls;
        let wait = if pair.hints { 20 } else { 600 };
        let until = Instant::now() + Duration::from_millis(wait);
        while pair.b.metrics().feed.polls == seen && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Validates every token on `cache` until one pass answers each from the
/// cache (bounded); `false` if that never happened.
async fn hold_all(cache: &Instance, tokens: &[String]) -> bool {
    let deadline = Instant::now() + BOUND * 3 + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut all = true;
        for t in tokens {
            all &= held(cache, t).await;
        }
        if all {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// A's side: revokes the round's sessions one after another, logouts and
/// rotations in turn, noting when each call returned.
async fn revoke_all(pair: &Pair, round: &Round, sessions: &[Arc<StoredSession>]) -> (usize, usize) {
    let (mut logouts, mut rotations) = (0, 0);
    for (i, s) in sessions.iter().enumerate() {
        round.started[i].store(true, Ordering::Release);
        if i.is_multiple_of(2) {
            pair.a
                .delete_session_by_token(s.access_token.expose())
                .await
                .expect("logout on A");
            logouts += 1;
        } else {
            pair.a
                .store_session(rotated(s, 1))
                .await
                .expect("rotation on A");
            rotations += 1;
        }
        round.returned[i].store(round.now(), Ordering::Release);
    }
    (logouts, rotations)
}

/// B's side: validates every token whose revoke has started, again and again,
/// until each is refused or `deadline` (from the round's start) passes. Runs
/// on a thread of its own (B's calls need no runtime: the store answers from
/// its own thread), pausing `pause` after each pass over the pending tokens.
fn watch(pair: &Pair, round: &Round, deadline: Duration, pause: Duration) -> Watched {
    let n = round.tokens.len();
    let bound = BOUND.as_nanos() as u64;
    let mut seen = Watched {
        refused_at: vec![0; n],
        stale: 0,
        validations: 0,
    };
    let (mut pending, mut next) = (Vec::with_capacity(n), 0);
    while round.base.elapsed() < deadline {
        while next < n && round.started[next].load(Ordering::Acquire) {
            pending.push(next);
            next += 1;
        }
        if pending.is_empty() && next == n {
            break;
        }
        let mut i = 0;
        while i < pending.len() {
            let token = pending[i];
            let started = round.now();
            let served = block_on(pair.b.load_session_by_token(&round.tokens[token]))
                .expect("validate on B")
                .is_some();
            seen.validations += 1;
            if !served {
                seen.refused_at[token] = round.now();
                pending.swap_remove(i);
                continue;
            }
            let returned = round.returned[token].load(Ordering::Acquire);
            if returned != 0 && started >= returned + bound {
                seen.stale += 1;
            }
            i += 1;
        }
        if pause.is_zero() {
            std::thread::yield_now();
        } else {
            std::thread::sleep(pause);
        }
    }
    seen
}

// ---------------------------------------------------------------------------
// Background load (case c)

/// A steady mix on both instances: per instance, a writer (a new login or a
/// rotation of a live session, in turn, every `LOAD_TICK`) and a validator
/// (`LOAD_VALIDATIONS_PER_TICK` validations of live sessions' current access
/// tokens every tick), over `LOAD_LIVE` shared live sessions.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counts: Arc<LoadCounts>,
    start: Instant,
    polls: (u64, u64),
    pair: Arc<Pair>,
}

#[derive(Default)]
struct LoadCounts {
    logins: AtomicU64,
    rotations: AtomicU64,
    validations: AtomicU64,
    /// Validations that found no session (a rotation raced them).
    refused: AtomicU64,
}

/// The load's rates over its whole run.
#[derive(Debug, Clone, Copy)]
struct LoadReport {
    writes_per_sec: f64,
    logins_per_sec: f64,
    rotations_per_sec: f64,
    validations_per_sec: f64,
    refused: u64,
    /// Polls per second of A and B while the load ran.
    polls_per_sec: (f64, f64),
}

impl LoadReport {
    fn ops_per_sec(&self) -> f64 {
        self.writes_per_sec + self.validations_per_sec
    }
}

/// The live sessions: slot `i` holds its current session.
type Live = Arc<Vec<Mutex<Arc<StoredSession>>>>;

impl Load {
    async fn start(pair: &Arc<Pair>) -> Self {
        let now = SystemClock.now();
        let sessions: Vec<_> = (LOAD_BASE..LOAD_BASE + LOAD_LIVE)
            .map(|n| session(n, now))
            .collect();
        let bulk = pair.a.bulk().expect("postgres has bulk");
        bulk.bulk_store_sessions(sessions.clone())
            .await
            .expect("the load's live sessions");
        let live: Live = Arc::new(sessions.into_iter().map(Mutex::new).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(LoadCounts::default());
        let next = Arc::new(AtomicU64::new(LOAD_BASE + LOAD_LIVE));
        let mut tasks = Vec::new();
        for which in 0..2 {
            let w = LoadTask {
                pair: pair.clone(),
                which,
                live: live.clone(),
                stop: stop.clone(),
                counts: counts.clone(),
            };
            let v = w.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move { w.write(next).await }));
            tasks.push(tokio::spawn(async move { v.validate().await }));
        }
        Self {
            stop,
            tasks,
            counts,
            start: Instant::now(),
            polls: (pair.a.metrics().feed.polls, pair.b.metrics().feed.polls),
            pair: pair.clone(),
        }
    }

    async fn stop(self) -> LoadReport {
        let secs = self.start.elapsed().as_secs_f64();
        let polls = (
            self.pair.a.metrics().feed.polls - self.polls.0,
            self.pair.b.metrics().feed.polls - self.polls.1,
        );
        self.stop.store(true, Ordering::Release);
        for t in self.tasks {
            t.await.expect("a load task");
        }
        let c = &self.counts;
        let rate = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 / secs;
        LoadReport {
            writes_per_sec: rate(&c.logins) + rate(&c.rotations),
            logins_per_sec: rate(&c.logins),
            rotations_per_sec: rate(&c.rotations),
            validations_per_sec: rate(&c.validations),
            refused: c.refused.load(Ordering::Relaxed),
            polls_per_sec: (polls.0 as f64 / secs, polls.1 as f64 / secs),
        }
    }
}

/// One load task's handles.
#[derive(Clone)]
struct LoadTask {
    pair: Arc<Pair>,
    which: usize,
    live: Live,
    stop: Arc<AtomicBool>,
    counts: Arc<LoadCounts>,
}

/// The longest a load task runs, whatever happens to `stop`.
const LOAD_MAX: Duration = Duration::from_secs(600);

impl LoadTask {
    fn running(&self, start: Instant) -> bool {
        !self.stop.load(Ordering::Acquire) && start.elapsed() < LOAD_MAX
    }

    fn ticker() -> tokio::time::Interval {
        let mut tick = tokio::time::interval(LOAD_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    async fn write(self, next: Arc<AtomicU64>) {
        let (start, mut tick) = (Instant::now(), Self::ticker());
        let mut rng = Rng(0x5eed + self.which as u64);
        let instance = self.pair.instance(self.which);
        let mut n = 0u64;
        while self.running(start) {
            tick.tick().await;
            n += 1;
            let slot = &self.live[rng.below(self.live.len())];
            let current = slot.lock().expect("slot").clone();
            let fresh = if n.is_multiple_of(2) {
                self.counts.logins.fetch_add(1, Ordering::Relaxed);
                session(next.fetch_add(1, Ordering::Relaxed), SystemClock.now())
            } else {
                self.counts.rotations.fetch_add(1, Ordering::Relaxed);
                rotated(&current, n)
            };
            instance
                .store_session(fresh.clone())
                .await
                .expect("a load write");
            *slot.lock().expect("slot") = fresh;
        }
    }

    async fn validate(self) {
        let (start, mut tick) = (Instant::now(), Self::ticker());
        let mut rng = Rng(0xfeed + self.which as u64);
        let instance = self.pair.instance(self.which);
        while self.running(start) {
            tick.tick().await;
            for _ in 0..LOAD_VALIDATIONS_PER_TICK {
                let slot = &self.live[rng.below(self.live.len())];
                let token = slot.lock().expect("slot").access_token.expose().to_owned();
                let found = instance
                    .load_session_by_token(&token)
                    .await
                    .expect("a load validation");
                self.counts.validations.fetch_add(1, Ordering::Relaxed);
                if found.is_none() {
                    self.counts.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// splitmix64: the load's choice of slots.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// Polls

/// Round trips of `invalidations_since` on an idle store with the log on.
async fn poll_round_trip(server: &Server, key: &str, calls: usize) -> Vec<Duration> {
    let db = server.database();
    let store = open_store(db.config(), key, true, false).await;
    let feed = store.invalidation_feed().expect("the log is on");
    let first = feed.invalidations_since(None).await.expect("a poll");
    let mut since: Watermark = first.watermark;
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        since = feed
            .invalidations_since(Some(since))
            .await
            .expect("a poll")
            .watermark;
        times.push(t.elapsed());
    }
    store.close().await.expect("close");
    times
}

/// Polls per second of idle followers (hints on, nothing written) at each
/// bound: the poll counter is read every millisecond for `window` once each
/// had its first poll answered, and the rate is the polls between the first
/// and the last increase seen over the time between them (a 5 s bound polls
/// only a few times in the window).
/// A poll counter's value and when it was seen, at an increase.
type Increase = Option<(u64, Instant)>;

async fn idle_polls(server: &Server, key: &str, window: Duration) -> Vec<(Duration, f64)> {
    let db = server.database();
    let bounds = [
        Duration::from_millis(250),
        Duration::from_secs(1),
        Duration::from_secs(5),
    ];
    let mut followers = Vec::new();
    for b in bounds {
        followers.push((b, follower(db.config(), key, true, b).await));
    }
    // Per follower: the last count, and (count, when) at its first and last increase.
    let mut seen: Vec<(u64, Increase, Increase)> = followers
        .iter()
        .map(|(_, f)| (f.metrics().feed.polls, None, None))
        .collect();
    let start = Instant::now();
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(1)).await;
        for ((_, f), (last, first, latest)) in followers.iter().zip(seen.iter_mut()) {
            let polls = f.metrics().feed.polls;
            if polls != *last {
                *last = polls;
                let at = (polls, Instant::now());
                first.get_or_insert(at);
                *latest = Some(at);
            }
        }
    }
    let mut rates = Vec::new();
    for ((b, f), (_, first, latest)) in followers.iter().zip(seen) {
        let rate = match (first, latest) {
            (Some((p0, t0)), Some((p1, t1))) if p1 > p0 => {
                (p1 - p0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => f64::NAN,
        };
        rates.push((*b, rate));
        f.close().await.expect("close");
    }
    rates
}

// ---------------------------------------------------------------------------
// Report

fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn max(values: &[Duration]) -> Duration {
    values.iter().copied().max().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn report(
    plan: &Plan,
    rtt: &[Duration],
    cases: &[Case],
    runs: &[Propagation],
    idle: &[(Duration, f64)],
    cost: &feed_cost::Costs,
) {
    let one_poll = max(rtt);
    println!("\npolls per second per instance:");
    for (b, rate) in idle {
        println!(
            "  idle follower, B = {:>5} ms: {rate:>6.2}/s (the schedule: 2/B = {:.2}/s)",
            b.as_millis(),
            2.0 / b.as_secs_f64()
        );
    }
    let loaded = runs.iter().zip(cases).find(|(_, c)| **c == Case::Loaded);
    if let Some(load) = loaded.and_then(|(run, _)| run.load) {
        println!(
            "  under the load of (c), B = 1000 ms: A {:.1}/s, B {:.1}/s",
            load.polls_per_sec.0, load.polls_per_sec.1
        );
        println!(
            "  load of (c): {:.0} ops/s = {:.0} writes/s ({:.0} logins + {:.0} rotations) + \
             {:.0} validations/s over both instances; {} validations raced a rotation",
            load.ops_per_sec(),
            load.writes_per_sec,
            load.logins_per_sec,
            load.rotations_per_sec,
            load.validations_per_sec,
            load.refused,
        );
    }
    for (run, case) in runs.iter().zip(cases) {
        println!(
            "  during {}: A {:.1}/s, B {:.1}/s ({} validations by B's watcher)",
            case.label(),
            run.polls_per_sec.0,
            run.polls_per_sec.1,
            run.watch_validations
        );
    }
    cost.print();
    println!("\ntargets:");
    for (run, case) in runs.iter().zip(cases) {
        let p99 = quantile(&run.latencies, 0.99);
        if case.hints() {
            println!(
                "  {}: p99 {} <= 20 ms: {}",
                case.label(),
                ms(p99),
                verdict(p99 <= Duration::from_millis(20))
            );
        } else {
            let m = max(&run.latencies);
            println!(
                "  {}: max {} <= B + one poll = {} (one poll: the longest of the idle round \
                 trips above): {}",
                case.label(),
                ms(m),
                ms(BOUND + one_poll),
                verdict(m <= BOUND + one_poll)
            );
        }
        println!(
            "  {}: stale serves {} == 0: {}",
            case.label(),
            run.stale,
            verdict(run.stale == 0)
        );
    }
    cost.print_targets();
    markdown(plan, cases, runs, cost);
}

fn markdown(plan: &Plan, cases: &[Case], runs: &[Propagation], cost: &feed_cost::Costs) {
    println!("\nfor the README (B = 1 s, two instances on one PostgreSQL):\n");
    println!("| case | revocations | p50 | p99 | p99.9 | max | stale serves |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (run, case) in runs.iter().zip(cases) {
        let l = &run.latencies;
        let label = match (case, run.load) {
            (Case::Loaded, Some(load)) => format!(
                "under load ({:.0} ops/s), hints",
                load.ops_per_sec().round()
            ),
            (Case::Hints, _) => "idle, hints".to_owned(),
            (Case::PollOnly, _) => "idle, hints off (polling)".to_owned(),
            (Case::Loaded, None) => "under load, hints".to_owned(),
        };
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            l.len(),
            ms(quantile(l, 0.50)),
            ms(quantile(l, 0.99)),
            ms(quantile(l, 0.999)),
            ms(max(l)),
            run.stale
        );
    }
    println!();
    cost.print_markdown();
    let quick = if plan.quick {
        " (this was a TOKENSTORE_BENCH_QUICK run)"
    } else {
        ""
    };
    println!(
        "\nMeasured with `cargo bench -p tokenstore --features postgres --bench feed`{quick}."
    );
}
