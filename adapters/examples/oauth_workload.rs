//! The main job: an OAuth authorization server's token traffic on an embedded
//! SQLite file (or on PostgreSQL), run on each store stack with the same seed,
//! with one table of what happened and a check of the final database.
//!
//! ```text
//! cargo run --release -p tokenstore --example oauth_workload
//! cargo run --release -p tokenstore --example oauth_workload -- --help
//! cargo run --release -p tokenstore --example oauth_workload -- --metrics --stacks cached-buffered
//! cargo run --release -p tokenstore --features postgres --example oauth_workload -- \
//!     --backend postgres [--pg-url postgresql://user@host/db] [--instances 3]
//! ```
//!
//! On PostgreSQL each stack runs in a schema of its own (`oauth_workload_<stack>`,
//! emptied first) of the database `--pg-url` names, or of a throwaway cluster
//! started for the run when no URL is given (`initdb` must be installed; see the
//! README).
//!
//! On PostgreSQL each stack also runs as `--instances` instances (2 by default):
//! one `PostgresTokenStore` each (its own pool and hint connections) on the
//! stack's schema, each under its own copy of the stack; the caches follow the
//! store's invalidation feed. A user's logins, refreshes and logouts go to their
//! home instance, most validations to the others, so every revocation must
//! cross instances: see `oauth_workload/cross.rs` for what is checked.
//!
//! Logical users log in (state, code, session), validate their access token on
//! API calls (a few hot users, a long tail), refresh (token rotation), log out,
//! and let some short sessions expire; unknown and revoked tokens are tried too,
//! and one client runs `cleanup_expired` periodically. Each user belongs to one
//! client task, so the expected answer of every call is known and checked.

#[path = "oauth_workload/cross.rs"]
mod cross;
#[path = "oauth_workload/plot.rs"]
mod plot;
#[path = "oauth_workload/progress.rs"]
mod progress;

use clap::{Parser, ValueEnum};
use cross::{Cross, CrossReport, Revoked, clients_everywhere, cross_columns, ms, print_cross};
use progress::{Bars, StackBar};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokenstore::buffer::{BufferConfig, BufferMetrics};
use tokenstore::cache::{CacheConfig, CacheMetrics};
use tokenstore::runtime::{Runtime, TokioRuntime};
use tokenstore::sqlite::{SqliteTokenStore, Synchronous};
use tokenstore::{
    Ack, AuthCodeRecord, BufferedTokenStore, CachingTokenStore, ClientRecord, Clock, Secret,
    StateRecord, StoreError, StoredSession, SystemClock, Timestamp, TokenStore, UserInfo,
};

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Runs a seeded OAuth token-store workload on SQLite (or PostgreSQL) and prints what each stack does",
    after_help = "With --backend postgres and 2 or more --instances the table adds: revocations checked \
(logouts and rotations whose old token was later read on another instance than the one that \
revoked it), p99 propagation (every logout is watched by one other instance, which reads the old \
token every millisecond: time from the logout's return to its first refusal) and stale serves \
(reads on another instance that started --feed-bound-ms or more after the revoke returned and \
still found the session; must be 0, else the run exits 1). They show - on SQLite and with one instance."
)]
struct Args {
    /// The backend under the stacks (postgres needs `--features postgres`).
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
    /// With `--backend postgres`: the database to run in (a URL or key=value
    /// pairs); default: a throwaway cluster started for the run.
    #[arg(long)]
    pg_url: Option<String>,
    /// Logical users.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    users: u64,
    /// Operations per stack, over all client tasks.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    ops: u64,
    /// Concurrent client tasks.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4_096))]
    concurrency: u64,
    /// Seed of the workload.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory for the database files (default: a temporary directory).
    #[arg(long)]
    db_dir: Option<PathBuf>,
    /// Stacks to run, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bare,cached,buffered,durable,cached-buffered"
    )]
    stacks: Vec<Stack>,
    /// Async runtime (smol needs `--features smol`).
    #[arg(long, value_enum, default_value_t = Rt::Tokio)]
    runtime: Rt,
    /// SQLite `synchronous` mode.
    #[arg(long, value_enum, default_value_t = SyncMode::Full)]
    synchronous: SyncMode,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// At the end, print the metrics the stacks published through the
    /// `metrics` facade, in Prometheus text (summed over the stacks run: use
    /// `--stacks` to see one)
    #[arg(long)]
    metrics: bool,
    /// With `--backend postgres`: instances per stack, each its own store
    /// (pool, hint connections) and stack on the stack's schema; caches follow
    /// the invalidation feed, users' writes go to their home instance and most
    /// validations to the others [default: 2 on postgres; SQLite runs 1 only]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_INSTANCES))]
    instances: Option<u64>,
    /// With 2 or more instances: the caches' feed bound `B` in milliseconds (a
    /// revoked session is never served from a cache later than `B` after the
    /// revoke returned); reads past it that still find a revoked session are
    /// stale serves
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    feed_bound_ms: u64,
    /// SQLite reader threads beside the writer (0 to 64, or `default`: one per
    /// core, 2 to 8), comma separated: with more than one value every stack
    /// runs once per value, side by side (e.g. `--sqlite-readers 1,default`)
    #[arg(long, value_delimiter = ',', default_value = "default", value_parser = parse_readers)]
    sqlite_readers: Vec<Readers>,
    /// Also write one SVG per operation to this directory (made if missing):
    /// every stack's latency percentiles side by side.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
}

/// A `--sqlite-readers` value: a count, or `None` for the store's default.
type Readers = Option<usize>;

fn parse_readers(value: &str) -> Result<Readers, String> {
    if value == "default" {
        return Ok(None);
    }
    match value.parse::<usize>() {
        Ok(n) if n <= 64 => Ok(Some(n)),
        _ => Err(format!(
            "`{value}` is not `default` or a count from 0 to 64"
        )),
    }
}

/// The most instances `--instances` takes (each holds a pool and two hint
/// connections).
const MAX_INSTANCES: u64 = 16;

impl Args {
    /// Instances per stack: `--instances`, else 2 on PostgreSQL and 1 on SQLite.
    fn instances(&self) -> usize {
        let default = match self.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        };
        self.instances.unwrap_or(default) as usize
    }

    fn feed_bound(&self) -> Duration {
        Duration::from_millis(self.feed_bound_ms)
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// SqliteTokenStore on a file.
    Sqlite,
    /// PostgresTokenStore.
    Postgres,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    /// The backend alone.
    Bare,
    /// CachingTokenStore over the backend.
    Cached,
    /// BufferedTokenStore (Ack::Queued) over the backend.
    Buffered,
    /// BufferedTokenStore (Ack::Durable: group commit) over the backend.
    Durable,
    /// CachingTokenStore over BufferedTokenStore (Queued) over the backend.
    CachedBuffered,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Rt {
    Tokio,
    Smol,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum SyncMode {
    Off,
    Normal,
    Full,
}

const OPS: [&str; 6] = [
    "validate",
    "bad_token",
    "refresh",
    "login",
    "logout",
    "client",
];

fn main() {
    let args = Args::parse();
    if matches!(args.runtime, Rt::Smol) && !cfg!(feature = "smol") {
        eprintln!("error: --runtime smol needs the smol feature: add `--features smol`");
        std::process::exit(2);
    }
    if args.backend == Backend::Sqlite && args.instances() > 1 {
        eprintln!(
            "error: --instances {} needs --backend postgres (on SQLite each stack runs as one \
             instance)",
            args.instances()
        );
        std::process::exit(2);
    }
    if let Some(dir) = &args.plot
        && let Err(e) = plot::create_dir(dir)
    {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let prometheus = args.metrics.then(install_prometheus);
    let tmp = tempfile::tempdir().expect("temporary directory");
    let target = match args.backend {
        Backend::Sqlite => {
            let dir = args
                .db_dir
                .clone()
                .unwrap_or_else(|| tmp.path().to_path_buf());
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("error: cannot create {}: {e}", dir.display());
                std::process::exit(2);
            }
            println!(
                "oauth_workload: {} users, {} ops, {} tasks, seed {}, {:?}, SQLite \
                 synchronous={:?}, db in {}",
                args.users,
                args.ops,
                args.concurrency,
                args.seed,
                args.runtime,
                args.synchronous,
                dir.display()
            );
            Target::Sqlite(dir)
        }
        Backend::Postgres => {
            let (target, where_) = postgres_target(&args);
            let n = args.instances();
            let instances = if n > 1 {
                format!(
                    ", {n} instances per stack (feed bound {} ms)",
                    args.feed_bound_ms
                )
            } else {
                ", one instance per stack".to_owned()
            };
            println!(
                "oauth_workload: {} users, {} ops, {} tasks, seed {}, {:?}, PostgreSQL ({}), \
                 one schema per stack{instances}",
                args.users, args.ops, args.concurrency, args.seed, args.runtime, where_
            );
            target
        }
    };
    if args.backend != Backend::Sqlite && args.sqlite_readers != [None] {
        eprintln!("error: --sqlite-readers applies to --backend sqlite only");
        std::process::exit(2);
    }
    // One bar per run: each stack once per `--sqlite-readers` value.
    let runs: Vec<(usize, Readers, Stack)> = args
        .sqlite_readers
        .iter()
        .enumerate()
        .flat_map(|(group, &readers)| args.stacks.iter().map(move |&s| (group, readers, s)))
        .collect();
    let names: Vec<String> = runs
        .iter()
        .map(|&(_, readers, stack)| run_label(&args, stack, readers))
        .collect();
    let bars = Bars::new(&names, args.ops / args.concurrency * args.concurrency);
    let mut reports = Vec::new();
    for (i, &(group, readers, stack)) in runs.iter().enumerate() {
        match run_stack(&args, stack, readers, &target, bars.stack(i)) {
            Ok(mut r) => {
                bars.stack(i).done();
                r.group = group;
                reports.push(r);
            }
            Err(e) => {
                bars.stack(i).failed();
                eprintln!("error: stack {stack:?} failed: {e}");
                std::process::exit(1);
            }
        }
    }
    bars.finish();
    print_table(&reports);
    if let Some(handle) = prometheus {
        println!("\n# The stacks' metrics (Prometheus text, summed over the stacks run)");
        print!("{}", handle.render());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&to_json(&args, &reports)).expect("json");
        std::fs::write(path, json).unwrap_or_else(|e| {
            eprintln!("error: cannot write {}: {e}", path.display());
            std::process::exit(2);
        });
        println!("figures written to {}", path.display());
    }
    if let Some(dir) = &args.plot {
        write_plots(&args, dir, &reports);
    }
    let mut failed = false;
    if reports.iter().any(|r| r.violations > 0) {
        eprintln!("FAILED: some stack broke the contract (see violations)");
        failed = true;
    }
    for (stack, cross) in reports
        .iter()
        .filter_map(|r| Some((r.stack, r.cross.as_ref()?)))
    {
        if cross.stats.stale > 0 {
            eprintln!(
                "FAILED: {}: {} stale serves: another instance still served a revoked session \
                 {} ms or more after the revoke returned",
                name(stack),
                cross.stats.stale,
                args.feed_bound_ms
            );
            failed = true;
        }
        if cross.stats.broken > 0 {
            eprintln!(
                "FAILED: {}: {} propagation watches failed or never saw the revocation",
                name(stack),
                cross.stats.broken
            );
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// Installs a Prometheus recorder as the facade's global recorder (no HTTP
/// listener: the text is rendered at the end) and describes every metric.
fn install_prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        eprintln!("error: a metrics recorder is already installed");
        std::process::exit(2);
    }
    tokenstore::observe::describe_metrics();
    handle
}

/// What one stack did.
struct Report {
    stack: Stack,
    /// The stack's name, with its SQLite readers when several values run.
    label: String,
    /// Which `--sqlite-readers` value it ran with (its index).
    group: usize,
    /// The SQLite store's reader threads (not counted on PostgreSQL).
    readers: Option<usize>,
    ops: u64,
    elapsed: Duration,
    /// Per operation, every call's latency in nanoseconds.
    latencies: BTreeMap<&'static str, Vec<u64>>,
    hit_ratio: Option<f64>,
    avg_batch: Option<f64>,
    /// SQLite's commits (not counted on PostgreSQL).
    commits: Option<u64>,
    violations: u64,
    verified_live: u64,
    verified_revoked: u64,
    /// With several instances: the cross-instance check.
    cross: Option<CrossReport>,
}

/// Where the stacks run.
enum Target {
    /// SQLite files in this directory, one per stack.
    Sqlite(PathBuf),
    /// A PostgreSQL database, one schema per stack.
    #[cfg(feature = "postgres")]
    Postgres(Box<PgTarget>),
}

/// The database of `--pg-url`, or of a throwaway cluster started for the run.
#[cfg(feature = "postgres")]
struct PgTarget {
    config: tokenstore::postgres::Config,
    url: Option<String>,
    // Dropped after the runs: the database, then the cluster.
    _db: Option<tokenstore_pgtest::TestDatabase>,
    _server: Option<tokenstore_pgtest::Server>,
}

#[cfg(feature = "postgres")]
impl PgTarget {
    /// A store on `schema` of the target database.
    async fn open(
        &self,
        schema: &str,
    ) -> Result<tokenstore::postgres::PostgresTokenStore, StoreError> {
        let builder = match &self.url {
            Some(url) => tokenstore::postgres::PostgresTokenStore::builder(url),
            None => {
                tokenstore::postgres::PostgresTokenStore::builder_with_config(self.config.clone())
            }
        };
        builder.schema(schema).encryption_key(KEY).open().await
    }
}

#[cfg(feature = "postgres")]
fn postgres_target(args: &Args) -> (Target, &'static str) {
    if let Some(url) = &args.pg_url {
        let config = url.parse().unwrap_or_else(|_| {
            // The URL may hold a password: never print it.
            eprintln!(
                "error: --pg-url could not be parsed (expected postgresql://... or key=value pairs)"
            );
            std::process::exit(2);
        });
        let target = Target::Postgres(Box::new(PgTarget {
            config,
            url: Some(url.clone()),
            _db: None,
            _server: None,
        }));
        return (target, "the database of --pg-url");
    }
    eprintln!("starting a throwaway PostgreSQL cluster ...");
    let server = tokenstore_pgtest::Server::from_env_or_start().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let db = server.try_database().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let target = Target::Postgres(Box::new(PgTarget {
        config: db.config(),
        url: None,
        _db: Some(db),
        _server: Some(server),
    }));
    (target, "a throwaway cluster started for the run")
}

#[cfg(not(feature = "postgres"))]
fn postgres_target(_: &Args) -> (Target, &'static str) {
    eprintln!("error: --backend postgres needs the postgres feature: add `--features postgres`");
    std::process::exit(2);
}

fn run_stack(
    args: &Args,
    stack: Stack,
    readers: Readers,
    target: &Target,
    bar: &StackBar,
) -> Result<Report, StoreError> {
    bar.phase("setting up");
    let job = async move {
        match target {
            Target::Sqlite(dir) => on_sqlite(args, stack, readers, dir, bar).await,
            #[cfg(feature = "postgres")]
            Target::Postgres(pg) => on_postgres(args, stack, pg, bar).await,
        }
    };
    match args.runtime {
        Rt::Tokio => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(job),
        Rt::Smol => smol::block_on(job),
    }
}

/// The stack over a fresh SQLite file; the check reopens the file.
async fn on_sqlite(
    args: &Args,
    stack: Stack,
    readers: Readers,
    dir: &Path,
    bar: &StackBar,
) -> Result<Report, StoreError> {
    let readers_tag = readers.map_or_else(|| "default".to_owned(), |n| n.to_string());
    let path = dir.join(format!("oauth_{}_r{readers_tag}.sqlite", name(stack)));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let sqlite = Arc::new(open(&path, args.synchronous, readers).await?);
    let threads = sqlite.readers();
    let (outcome, hit_ratio, avg_batch) = run_on(args, stack, vec![sqlite.clone()], bar).await?;
    let commits = sqlite.stats().commits;
    sqlite.close().await?;
    let check = SqliteTokenStore::builder(&path)
        .encryption_key(KEY)
        .open()
        .await?;
    let checked = verify(&check, &outcome.expected).await?;
    check.close().await?;
    let mut report = report(
        stack,
        outcome,
        (hit_ratio, avg_batch),
        Some(commits),
        checked,
    );
    report.readers = Some(threads);
    if args.sqlite_readers.len() > 1 {
        report.label = format!("{} r={threads}", name(stack));
    }
    Ok(report)
}

/// The stack over an emptied schema of its own, as `--instances` instances
/// (one store each on that schema); the check opens a new store (a new pool)
/// on that schema.
#[cfg(feature = "postgres")]
async fn on_postgres(
    args: &Args,
    stack: Stack,
    pg: &PgTarget,
    bar: &StackBar,
) -> Result<Report, StoreError> {
    let schema = format!("oauth_workload_{}", name(stack).replace('-', "_"));
    let mut stores = Vec::new();
    for _ in 0..args.instances() {
        stores.push(Arc::new(pg.open(&schema).await?));
    }
    clear(&stores[0]).await?;
    let (outcome, hit_ratio, avg_batch) = run_on(args, stack, stores.clone(), bar).await?;
    for store in &stores {
        store.close().await?;
    }
    let check = pg.open(&schema).await?;
    let checked = verify(&check, &outcome.expected).await?;
    check.close().await?;
    Ok(report(
        stack,
        outcome,
        (hit_ratio, avg_batch),
        None,
        checked,
    ))
}

/// Empties the schema of an earlier run through the contract's own calls.
#[cfg(feature = "postgres")]
async fn clear(store: &tokenstore::postgres::PostgresTokenStore) -> Result<(), StoreError> {
    let old = store.contents().await?;
    for s in &old.states {
        store.consume_state(&s.state).await?;
    }
    for c in &old.auth_codes {
        store.delete_auth_code(&c.code).await?;
    }
    for s in &old.sessions {
        store.delete_session_by_id(&s.session_id).await?;
    }
    for c in &old.clients {
        store.delete_client(&c.client_id).await?;
    }
    let left = store.contents().await?;
    if left.states.len() + left.auth_codes.len() + left.sessions.len() + left.clients.len() > 0 {
        return Err(StoreError::Backend(
            "the schema of an earlier run could not be emptied".into(),
        ));
    }
    Ok(())
}

fn report(
    stack: Stack,
    outcome: Outcome,
    (hit_ratio, avg_batch): (Option<f64>, Option<f64>),
    commits: Option<u64>,
    (live, revoked, bad): (u64, u64, u64),
) -> Report {
    Report {
        stack,
        label: name(stack),
        group: 0,
        readers: None,
        ops: outcome.ops,
        elapsed: outcome.elapsed,
        latencies: outcome.latencies,
        hit_ratio,
        avg_batch,
        commits,
        violations: outcome.violations + bad,
        verified_live: live,
        verified_revoked: revoked,
        cross: outcome.cross,
    }
}

type Figures = (Outcome, Option<f64>, Option<f64>);

/// Builds `stack` over each of `backends` (one instance each), drives the
/// workload across them, checks through every instance when there are several,
/// and closes the stacks (a buffer drains) so the database holds everything
/// afterwards.
async fn run_on<B: TokenStore + 'static>(
    args: &Args,
    stack: Stack,
    backends: Vec<Arc<B>>,
    bar: &StackBar,
) -> Result<Figures, StoreError> {
    let queued = matches!(stack, Stack::Buffered | Stack::CachedBuffered);
    let cross = Arc::new(Cross::new(
        backends.len(),
        args.feed_bound(),
        queued,
        runtime(args.runtime),
    ));
    let buffer = |backend: &Arc<B>, ack| {
        BufferedTokenStore::new(
            backend.clone(),
            BufferConfig::default(),
            ack,
            runtime(args.runtime),
        )
    };
    Ok(match stack {
        Stack::Bare => {
            let mut outcome = drive(args, &backends, &cross, bar).await?;
            check_instances(&backends, &cross, &mut outcome).await?;
            (outcome, None, None)
        }
        Stack::Cached => {
            let stores = cached(args, &cross, backends.clone())?;
            let mut outcome = drive(args, &stores, &cross, bar).await?;
            check_instances(&stores, &cross, &mut outcome).await?;
            // A cache publishes to the metrics facade when told (and on
            // close, which this stack does not call).
            for store in &stores {
                store.publish_metrics();
            }
            (outcome, hits(stores.iter().map(|s| s.metrics())), None)
        }
        Stack::Buffered | Stack::Durable => {
            let ack = if stack == Stack::Durable {
                Ack::Durable
            } else {
                Ack::Queued
            };
            let stores: Vec<_> = backends.iter().map(|b| Arc::new(buffer(b, ack))).collect();
            let mut outcome = drive(args, &stores, &cross, bar).await?;
            if cross.on() {
                for store in &stores {
                    store.flush().await?;
                }
            }
            check_instances(&stores, &cross, &mut outcome).await?;
            for store in &stores {
                store.close().await?;
            }
            (outcome, None, batch(stores.iter().map(|s| s.metrics())))
        }
        Stack::CachedBuffered => {
            let buffers = backends.iter().map(|b| buffer(b, Ack::Queued)).collect();
            let stores = cached(args, &cross, buffers)?;
            let mut outcome = drive(args, &stores, &cross, bar).await?;
            if cross.on() {
                for store in &stores {
                    store.inner().flush().await?;
                }
            }
            check_instances(&stores, &cross, &mut outcome).await?;
            for store in &stores {
                store.close().await?;
            }
            (
                outcome,
                hits(stores.iter().map(|s| s.metrics())),
                batch(stores.iter().map(|s| s.inner().metrics())),
            )
        }
    })
}

/// One cache over each of `inners`: with several instances each follows the
/// store's invalidation feed (bound `B`); alone, it is the plain cache.
fn cached<T: TokenStore + 'static>(
    args: &Args,
    cross: &Cross,
    inners: Vec<T>,
) -> Result<Vec<Arc<CachingTokenStore<T>>>, StoreError> {
    inners
        .into_iter()
        .map(|inner| {
            let cache = if cross.on() {
                let config = CacheConfig {
                    feed_bound: Some(cross.bound),
                    ..CacheConfig::default()
                };
                CachingTokenStore::following(inner, config, runtime(args.runtime))?
            } else {
                CachingTokenStore::new(inner, CacheConfig::default())
            };
            Ok(Arc::new(cache))
        })
        .collect()
}

/// The session hit ratio over every instance's cache.
fn hits(metrics: impl Iterator<Item = CacheMetrics>) -> Option<f64> {
    let (hits, lookups) = metrics.fold((0, 0), |(h, l), m| {
        (h + m.sessions.hits, l + m.sessions.lookups)
    });
    Some(hits as f64 / lookups.max(1) as f64)
}

/// The average flush batch over every instance's buffer.
fn batch(metrics: impl Iterator<Item = BufferMetrics>) -> Option<f64> {
    let (writes, batches) = metrics.fold((0, 0), |(w, b), m| {
        (w + m.applied_writes, b + m.applied_batches)
    });
    Some(writes as f64 / batches.max(1) as f64)
}

/// With several instances: once every revocation is past the bound, the
/// end-of-run check through each instance's stack (its cache, its buffer).
async fn check_instances<S: TokenStore>(
    stores: &[Arc<S>],
    cross: &Cross,
    outcome: &mut Outcome,
) -> Result<(), StoreError> {
    let Some(report) = outcome.cross.as_mut() else {
        return Ok(());
    };
    cross.past_bound().await;
    for store in stores {
        let (live, revoked, bad) = verify(&**store, &outcome.expected).await?;
        outcome.violations += bad;
        report.per_instance.push((live, revoked));
    }
    Ok(())
}

fn runtime(rt: Rt) -> Arc<dyn Runtime> {
    match rt {
        Rt::Tokio => Arc::new(TokioRuntime::current()),
        #[cfg(feature = "smol")]
        Rt::Smol => Arc::new(tokenstore::runtime::SmolRuntime),
        #[cfg(not(feature = "smol"))]
        Rt::Smol => unreachable!("checked in main"),
    }
}

async fn open(
    path: &Path,
    mode: SyncMode,
    readers: Readers,
) -> Result<SqliteTokenStore, StoreError> {
    let synchronous = match mode {
        SyncMode::Off => Synchronous::Off,
        SyncMode::Normal => Synchronous::Normal,
        SyncMode::Full => Synchronous::Full,
    };
    let builder = SqliteTokenStore::builder(path)
        .encryption_key(KEY)
        .synchronous(synchronous);
    match readers {
        Some(n) => builder.readers(n),
        None => builder,
    }
    .open()
    .await
}

/// A fixed Fernet key: the workload's database can be inspected afterwards.
const KEY: &str = "b2F1dGgtd29ya2xvYWQta2V5LWZvci10b2tlbnN0b3I=";

/// What the run leaves behind, to check against the database.
#[derive(Default)]
struct Expected {
    live: Vec<(String, String, Timestamp)>, // access token, session id, access expiry
    revoked: Vec<String>,
}

struct Outcome {
    ops: u64,
    elapsed: Duration,
    latencies: BTreeMap<&'static str, Vec<u64>>,
    violations: u64,
    expected: Expected,
    /// With several instances.
    cross: Option<CrossReport>,
}

/// OAuth clients the workload registers (`client-0` ..).
const CLIENTS: u64 = 10;

/// Drives the workload over `instances` (one stack each; one instance runs
/// today's single-stack job).
async fn drive<S: TokenStore + 'static>(
    args: &Args,
    instances: &[Arc<S>],
    cross: &Arc<Cross>,
    bar: &StackBar,
) -> Result<Outcome, StoreError> {
    for c in 0..CLIENTS {
        let mut client = ClientRecord::new(format!("client-{c}"), SystemClock.now());
        client.client_secret = Some(Secret::new(format!("client-secret-{c}")));
        client.redirect_uris = vec![format!("https://app{c}.example.com/callback")];
        instances[0].store_client(Arc::new(client)).await?;
    }
    if cross.on() {
        clients_everywhere(instances, cross).await?;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let per_task = args.ops / args.concurrency;
    let mut clients: Vec<Client<S>> = (0..args.concurrency)
        .map(|task| {
            // A task's users are spread over every instance.
            let users = (0..args.users)
                .filter(|u| u % args.concurrency == task)
                .map(|u| (u, (u / args.concurrency) as usize % instances.len()))
                .collect();
            Client::new(
                instances.to_vec(),
                cross.clone(),
                args.seed ^ (task * 0x9e37),
                users,
                task == 0,
            )
        })
        .collect();
    // Log 80% of the users in before the clock starts.
    for r in futures_join_all(clients.iter_mut().map(|c| c.setup()).collect()).await {
        r?;
    }
    let start = Instant::now();
    let ticker = bar.start(done.clone());
    let runs = clients
        .iter_mut()
        .map(|c| c.run(per_task, &done, &violations))
        .collect();
    for r in futures_join_all(runs).await {
        r?;
    }
    let elapsed = start.elapsed();
    ticker.finish(elapsed);
    bar.phase("checking");
    let stats = cross.settle().await;
    let mut latencies: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let mut expected = Expected::default();
    for client in clients {
        for (op, mut l) in client.latencies {
            latencies.entry(op).or_default().append(&mut l);
        }
        client.users.into_iter().for_each(|u| {
            if let Some(s) = u.session {
                expected.live.push((s.access, s.id, s.access_expires));
            }
        });
        expected
            .revoked
            .extend(client.revoked.into_iter().map(|r| r.token));
    }
    Ok(Outcome {
        ops: per_task * args.concurrency,
        elapsed,
        latencies,
        violations: violations.load(Ordering::SeqCst),
        expected,
        cross: cross.on().then(|| CrossReport {
            instances: cross.n,
            stats,
            per_instance: Vec::new(),
        }),
    })
}

/// Runs every future concurrently on the current task and collects the outputs.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut slots: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = slots.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in slots.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

struct UserSession {
    id: String,
    access: String,
    refresh: Option<String>,
    access_expires: Timestamp,
    /// When the write that stored it returned.
    written_at: Timestamp,
}

struct User {
    index: u64,
    /// The instance that takes this user's logins, refreshes and logouts.
    home: usize,
    session: Option<UserSession>,
    generation: u64,
}

/// One client task: owns its users, so it knows every expected answer.
struct Client<S> {
    /// One stack per instance (one in today's single-instance job).
    instances: Vec<Arc<S>>,
    cross: Arc<Cross>,
    rng: SplitMix64,
    users: Vec<User>,
    revoked: Vec<Revoked>,
    /// Per operation, every call's latency in nanoseconds.
    latencies: BTreeMap<&'static str, Vec<u64>>,
    cleans: bool,
    /// Time spent in the current operation that is not the operation's own (a
    /// logout's read on its watching instance).
    excluded: Duration,
}

/// Tolerance around an expiry, where either answer is right.
const EXPIRY_SLACK: Duration = Duration::from_secs(3);

impl<S: TokenStore + 'static> Client<S> {
    /// A client task over `instances` for `users`, each `(index, home instance)`.
    fn new(
        instances: Vec<Arc<S>>,
        cross: Arc<Cross>,
        seed: u64,
        users: Vec<(u64, usize)>,
        cleans: bool,
    ) -> Self {
        let users = users
            .into_iter()
            .map(|(index, home)| User {
                index,
                home,
                session: None,
                generation: 0,
            })
            .collect();
        Self {
            instances,
            cross,
            rng: SplitMix64(seed),
            users,
            revoked: Vec::new(),
            latencies: BTreeMap::new(),
            cleans,
            excluded: Duration::ZERO,
        }
    }

    async fn setup(&mut self) -> Result<(), StoreError> {
        for u in 0..self.users.len() {
            if self.rng.unit() < 0.8 {
                self.login(u).await?;
            }
        }
        Ok(())
    }

    async fn run(
        &mut self,
        ops: u64,
        done: &AtomicUsize,
        violations: &AtomicU64,
    ) -> Result<(), StoreError> {
        if self.users.is_empty() {
            done.fetch_add(ops as usize, Ordering::Relaxed);
            return Ok(());
        }
        for i in 0..ops {
            let op = self.pick();
            self.excluded = Duration::ZERO;
            let started = Instant::now();
            let ok = self.step(op).await?;
            let took = started.elapsed().saturating_sub(self.excluded);
            let nanos = took.as_nanos().min(u64::MAX as u128) as u64;
            self.latencies.entry(OPS[op]).or_default().push(nanos);
            if !ok {
                violations.fetch_add(1, Ordering::Relaxed);
            }
            if self.cleans && i % 2_000 == 1_999 {
                self.instances[0].cleanup_expired().await?;
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn pick(&mut self) -> usize {
        match self.rng.unit() {
            x if x < 0.80 => 0,
            x if x < 0.85 => 1,
            x if x < 0.90 => 2,
            x if x < 0.94 => 3,
            x if x < 0.97 => 4,
            _ => 5,
        }
    }

    /// Runs one operation; `false` when the store answered wrongly.
    async fn step(&mut self, op: usize) -> Result<bool, StoreError> {
        match op {
            0 => self.validate().await,
            1 => self.bad_token().await,
            2 => self.refresh().await,
            3 => {
                let u = self.skewed_user();
                if self.users[u].session.is_some() {
                    return self.validate().await;
                }
                self.login(u).await
            }
            4 => self.logout().await,
            _ => {
                let c = self.rng.below(CLIENTS);
                let store = &self.instances[c as usize % self.instances.len()];
                Ok(store.load_client(&format!("client-{c}")).await?.is_some())
            }
        }
    }

    /// A few hot users, a long tail.
    fn skewed_user(&mut self) -> usize {
        let u = self.rng.unit();
        ((u * u * u) * self.users.len() as f64) as usize % self.users.len()
    }

    /// Where a validation of a user at home on `home` goes: home one time in
    /// five, else another instance (always home with one instance).
    fn reader(&mut self, home: usize) -> usize {
        if !self.cross.on() || self.rng.unit() < 0.2 {
            return home;
        }
        self.other(home)
    }

    /// An instance other than `home`, at random.
    fn other(&mut self, home: usize) -> usize {
        let n = self.instances.len();
        (home + 1 + self.rng.below(n as u64 - 1) as usize) % n
    }

    async fn validate(&mut self) -> Result<bool, StoreError> {
        let u = self.skewed_user();
        if self.users[u].session.is_none() {
            return Ok(true);
        }
        let home = self.users[u].home;
        let at = self.reader(home);
        let s = self.users[u].session.as_ref().expect("checked above");
        let started = SystemClock.now();
        let found = self.instances[at].load_session_by_token(&s.access).await?;
        Ok(self.judge(at != home, started, s, found))
    }

    /// Whether `found` is a right answer to a read of the current session `s`
    /// that started at `started`, on another instance than its home (`remote`)
    /// or on its home.
    fn judge(
        &self,
        remote: bool,
        started: Timestamp,
        s: &UserSession,
        found: Option<Arc<StoredSession>>,
    ) -> bool {
        let now = SystemClock.now();
        match found {
            Some(found) => found.session_id == s.id && now <= s.access_expires + EXPIRY_SLACK,
            None => {
                now + EXPIRY_SLACK >= s.access_expires
                    || (remote && self.cross.may_miss(started, s.written_at))
            }
        }
    }

    async fn bad_token(&mut self) -> Result<bool, StoreError> {
        if self.revoked.is_empty() || self.rng.unit() < 0.5 {
            let token = format!("unknown-{:016x}", self.rng.next());
            let n = self.instances.len() as u64;
            let at = if self.cross.on() {
                self.rng.below(n) as usize
            } else {
                0
            };
            return Ok(self.instances[at]
                .load_session_by_token(&token)
                .await?
                .is_none());
        }
        let i = self.rng.below(self.revoked.len() as u64) as usize;
        let home = self.revoked[i].home;
        let at = self.reader(home);
        let started = SystemClock.now();
        let served = self.instances[at]
            .load_session_by_token(&self.revoked[i].token)
            .await?
            .is_some();
        if at == home {
            return Ok(!served);
        }
        // Another instance may serve it for up to `B`; past it, a stale serve.
        self.cross
            .remote_read(&mut self.revoked[i], started, served);
        Ok(true)
    }

    async fn refresh(&mut self) -> Result<bool, StoreError> {
        let u = self.skewed_user();
        let Some(refresh) = self.users[u]
            .session
            .as_ref()
            .and_then(|s| s.refresh.clone())
        else {
            return self.validate().await;
        };
        let home = self.users[u].home;
        let old = self.users[u].session.take().expect("checked above");
        let store = self.instances[home].clone();
        let Some(found) = store.load_session_by_refresh_token(&refresh).await? else {
            return Ok(false);
        };
        let ok = found.session_id == old.id;
        let session = self.new_session(u, Some(old.id.clone()));
        store.store_session(Arc::new(session)).await?;
        let now = self.written(u);
        self.revoked.push(Revoked::new(old.access, home, now));
        Ok(ok)
    }

    async fn logout(&mut self) -> Result<bool, StoreError> {
        let u = self.skewed_user();
        let Some(s) = self.users[u].session.take() else {
            return Ok(true);
        };
        let home = self.users[u].home;
        let mut ok = true;
        // With several instances another one watches the token: it reads it
        // first (so its cache holds what the logout revokes), then until refused.
        let watcher = self.cross.on().then(|| self.other(home));
        if let Some(w) = watcher {
            let clock = Instant::now();
            let started = SystemClock.now();
            let found = self.instances[w].load_session_by_token(&s.access).await?;
            ok = self.judge(true, started, &s, found);
            self.excluded += clock.elapsed();
        }
        self.instances[home]
            .delete_session_by_token(&s.access)
            .await?;
        let mut revoked = Revoked::new(s.access, home, SystemClock.now());
        if let Some(w) = watcher {
            self.cross.watch(self.instances[w].clone(), &mut revoked);
        }
        self.revoked.push(revoked);
        Ok(ok)
    }

    /// The whole authorization-code flow for user `u`, on the user's home.
    async fn login(&mut self, u: usize) -> Result<bool, StoreError> {
        let store = self.instances[self.users[u].home].clone();
        let now = SystemClock.now();
        let tag = self.rng.next();
        let state = format!("state-{tag:016x}");
        let mut st = StateRecord::new(&state, now + Duration::from_secs(600), now);
        st.client_id = Some("client-0".into());
        store.store_state(Arc::new(st)).await?;
        let mut ok = store.consume_state(&state).await?.is_some();
        let session = self.new_session(u, None);
        let code = format!("code-{tag:016x}");
        let rec = AuthCodeRecord::new(
            &code,
            &session.session_id,
            now + Duration::from_secs(60),
            now,
        );
        store.store_auth_code(Arc::new(rec)).await?;
        ok &= store.load_auth_code(&code).await?.is_some();
        ok &= store.try_delete_auth_code(&code).await?;
        store.store_session(Arc::new(session)).await?;
        self.written(u);
        Ok(ok)
    }

    /// Marks user `u`'s session as written now (its store returned); returns now.
    fn written(&mut self, u: usize) -> Timestamp {
        let now = SystemClock.now();
        if let Some(s) = self.users[u].session.as_mut() {
            s.written_at = now;
        }
        now
    }

    /// A new session for user `u` (a new id unless rotating), remembered as theirs.
    /// One in twenty is short-lived (10 to 30 s, no refresh token) and expires
    /// during the run.
    fn new_session(&mut self, u: usize, id: Option<String>) -> StoredSession {
        let now = SystemClock.now();
        let user = &mut self.users[u];
        user.generation += 1;
        let tag = format!("{:06}-{:04}", user.index, user.generation);
        let short = id.is_none() && self.rng.unit() < 0.05;
        let life = if short {
            Duration::from_secs(10 + self.rng.below(20))
        } else {
            Duration::from_secs(3600)
        };
        let id = id.unwrap_or_else(|| format!("session-{tag}"));
        let access = format!("at-{tag}-{:016x}", self.rng.next());
        let refresh = format!("rt-{tag}-{:016x}", self.rng.next());
        let mut info = UserInfo::new(
            "github",
            format!("user-{}", user.index),
            format!("login{}", user.index),
        );
        info.email = Some(format!("user{}@example.com", user.index));
        let mut s = StoredSession::new(&id, info, access.as_str(), now + life, now);
        let refresh = (!short).then_some(refresh);
        if let Some(refresh) = &refresh {
            s.refresh_token = Some(Secret::new(refresh.clone()));
            s.refresh_expires_at = Some(now + Duration::from_secs(86_400));
        }
        let user = &mut self.users[u];
        user.session = Some(UserSession {
            id,
            access,
            refresh,
            access_expires: now + life,
            written_at: now,
        });
        s
    }
}

/// Checks the database through a freshly opened store: every live session
/// loads, every revoked token is refused. Returns (live found, revoked
/// refused, violations).
async fn verify<S: TokenStore>(
    store: &S,
    expected: &Expected,
) -> Result<(u64, u64, u64), StoreError> {
    let (mut live, mut revoked, mut bad) = (0, 0, 0);
    let now = SystemClock.now();
    for (access, id, expires) in &expected.live {
        match store.load_session_by_token(access).await? {
            Some(s) if &s.session_id == id => live += 1,
            None if now + EXPIRY_SLACK >= *expires => live += 1,
            _ => bad += 1,
        }
    }
    for token in &expected.revoked {
        match store.load_session_by_token(token).await? {
            None => revoked += 1,
            Some(_) => bad += 1,
        }
    }
    Ok((live, revoked, bad))
}

/// A run's name on its bar: the stack's, with its `--sqlite-readers` value
/// when several run.
fn run_label(args: &Args, stack: Stack, readers: Readers) -> String {
    if args.sqlite_readers.len() > 1 {
        let tag = readers.map_or_else(|| "default".to_owned(), |n| n.to_string());
        format!("{} r={tag}", name(stack))
    } else {
        name(stack)
    }
}

fn name(stack: Stack) -> String {
    stack
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

/// The sample of rank `round((n - 1) * p)`, nanoseconds to whole µs.
fn percentile_us(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] / 1_000
}

fn print_table(reports: &[Report]) {
    // Speedups are against the bare stack of the same `--sqlite-readers` value.
    let bare = |group: usize| {
        reports
            .iter()
            .find(|r| r.stack == Stack::Bare && r.group == group)
            .map(|r| r.ops as f64 / r.elapsed.as_secs_f64())
    };
    println!();
    print!("{:<19} {:>9} {:>7}", "stack", "ops/s", "speedup");
    for op in OPS {
        print!(" {:>15}", format!("{op} p50/p99"));
    }
    println!(
        " {:>6} {:>6} {:>8} {:>10} {:>19} {:>15} {:>12}",
        "hit%",
        "batch",
        "commits",
        "violations",
        "revocations checked",
        "p99 propagation",
        "stale serves"
    );
    for r in reports {
        let rate = r.ops as f64 / r.elapsed.as_secs_f64();
        let speedup = bare(r.group).map_or("-".to_string(), |b| format!("{:.2}x", rate / b));
        print!("{:<19} {:>9.0} {:>7}", r.label, rate, speedup);
        for op in OPS {
            let mut l = r.latencies.get(op).cloned().unwrap_or_default();
            l.sort_unstable();
            print!(
                " {:>15}",
                format!("{}/{} us", percentile_us(&l, 0.5), percentile_us(&l, 0.99))
            );
        }
        let hit = r
            .hit_ratio
            .map_or("-".to_string(), |h| format!("{:.1}", h * 100.0));
        let batch = r.avg_batch.map_or("-".to_string(), |b| format!("{b:.1}"));
        let commits = r.commits.map_or("-".to_string(), |c| c.to_string());
        let (checked, p99, stale) = cross_columns(r.cross.as_ref());
        println!(
            " {:>6} {:>6} {:>8} {:>10} {:>19} {:>15} {:>12}",
            hit, batch, commits, r.violations, checked, p99, stale
        );
    }
    for r in reports {
        println!(
            "{}: checked the database afterwards: {} live sessions load, {} revoked tokens refused, {} violations",
            r.label, r.verified_live, r.verified_revoked, r.violations
        );
        if let Some(cross) = &r.cross {
            print_cross(r.stack, cross);
        }
    }
}

fn to_json(args: &Args, reports: &[Report]) -> serde_json::Value {
    let stacks: Vec<_> = reports
        .iter()
        .map(|r| {
            let lat: serde_json::Map<_, _> = r
                .latencies
                .iter()
                .map(|(op, l)| {
                    let mut l = l.clone();
                    l.sort_unstable();
                    (op.to_string(), serde_json::json!({"count": l.len(), "p50_us": percentile_us(&l, 0.5), "p99_us": percentile_us(&l, 0.99)}))
                })
                .collect();
            serde_json::json!({
                "stack": name(r.stack),
                "sqlite_readers": r.readers,
                "ops": r.ops,
                "seconds": r.elapsed.as_secs_f64(),
                "ops_per_second": r.ops as f64 / r.elapsed.as_secs_f64(),
                "latency": lat,
                "cache_hit_ratio": r.hit_ratio,
                "average_flush_batch": r.avg_batch,
                "backend": format!("{:?}", args.backend).to_lowercase(),
                "sqlite_commits": r.commits,
                "violations": r.violations,
                "instances": r.cross.as_ref().map_or(1, |c| c.instances),
                "revocations_checked": r.cross.as_ref().map(|c| c.stats.checked),
                "propagation_p99_ms": r.cross.as_ref().and_then(|c| c.stats.propagation_quantile(0.99)).map(ms),
                "stale_serves": r.cross.as_ref().map(|c| c.stats.stale),
            })
        })
        .collect();
    serde_json::json!({
        "users": args.users, "ops": args.ops, "concurrency": args.concurrency, "seed": args.seed,
        "runtime": format!("{:?}", args.runtime).to_lowercase(), "stacks": stacks,
        "feed_bound_ms": (args.instances() > 1).then_some(args.feed_bound_ms),
    })
}

/// `--plot DIR`: one SVG per operation, every stack side by side; prints the
/// paths written, or exits 2 with the reason.
fn write_plots(args: &Args, dir: &Path, reports: &[Report]) {
    let names: Vec<String> = reports.iter().map(|r| r.label.clone()).collect();
    let ops: Vec<_> = OPS
        .iter()
        .map(|&op| {
            let series = reports
                .iter()
                .zip(&names)
                .map(|(r, stack)| plot::Series {
                    stack,
                    nanos: r.latencies.get(op).map_or(&[][..], Vec::as_slice),
                })
                .collect();
            (op, series)
        })
        .collect();
    let backend = args
        .backend
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned());
    let about = [
        format!("oauth_workload on {backend}"),
        format!("{} users, seed {}", plot::thousands(args.users), args.seed),
        format!("{} ops per stack", plot::thousands(args.ops)),
        format!("{} concurrent tasks", args.concurrency),
    ];
    match plot::write_all(dir, &about, &ops) {
        Ok(paths) => {
            println!("plots written:");
            for path in paths {
                println!("  {}", path.display());
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// A small deterministic generator (SplitMix64), so a seed replays the same run.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
