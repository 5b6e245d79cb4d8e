//! The parent: spawns `crash-child` once per round, kills it with SIGKILL at
//! a point drawn from a seeded generator, reaps it, and checks the store.

mod check;
mod spawn;

use super::{ChildSpec, CrashId, SplitMix64, Target};
use check::Checker;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokenstore::Ack;
use tokenstore::buffer::BufferConfig;

/// The environment variable with the number of kills per run (default 20).
pub const KILLS_VAR: &str = "TOKENSTORE_CRASH_KILLS";
/// The environment variable with the seed of the kill points (decimal or
/// `0x` hex; default: drawn from the time).
pub const SEED_VAR: &str = "TOKENSTORE_CRASH_SEED";

/// Kills per run when [`KILLS_VAR`] is not set.
const DEFAULT_KILLS: usize = 20;
/// The most acknowledged lines a line-count kill waits for.
const MAX_KILL_LINES: u64 = 1_000;
/// The longest wait after the first acknowledgement for a delayed kill.
const MAX_KILL_DELAY_MS: u64 = 300;
/// The longest wait after the spawn for a startup kill (it may land while
/// the child opens the store and recovers from the last crash).
const MAX_STARTUP_DELAY_MS: u64 = 60;

/// Which backend a run crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on `tokenstore_pgtest::shared()`.
    Postgres,
}

/// How a round's kill was triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KillKind {
    /// Once the child printed a drawn number of ids.
    Lines,
    /// A drawn delay after the child printed its first id.
    AfterFirstAck,
    /// A drawn delay after the spawn, whatever the child was doing.
    Startup,
}

/// When to kill, drawn per round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPlan {
    Lines(usize),
    AfterFirstAck(Duration),
    Startup(Duration),
}

impl KillPlan {
    fn draw(rng: &mut SplitMix64) -> Self {
        match rng.range(0, 9) {
            0..=3 => Self::Lines(rng.range(1, MAX_KILL_LINES) as usize),
            4..=7 => Self::AfterFirstAck(Duration::from_millis(rng.range(0, MAX_KILL_DELAY_MS))),
            _ => Self::Startup(Duration::from_millis(rng.range(0, MAX_STARTUP_DELAY_MS))),
        }
    }

    fn kind(self) -> KillKind {
        match self {
            Self::Lines(_) => KillKind::Lines,
            Self::AfterFirstAck(_) => KillKind::AfterFirstAck,
            Self::Startup(_) => KillKind::Startup,
        }
    }
}

impl fmt::Display for KillPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lines(n) => write!(f, "after {n} ids"),
            Self::AfterFirstAck(d) => write!(f, "{d:?} after the first id"),
            Self::Startup(d) => write!(f, "{d:?} after the spawn"),
        }
    }
}

/// What one kill showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// How the kill was triggered.
    pub kind: KillKind,
    /// Ids the child printed (every one acknowledged by the store).
    pub printed: usize,
    /// Printed ids missing after the reopen.
    pub lost: usize,
    /// Sessions of this round found after the reopen (printed or not).
    pub stored: usize,
}

/// What a run showed.
#[derive(Debug, Clone)]
pub struct CrashReport {
    /// The backend crashed.
    pub backend: Backend,
    /// The child's acknowledgement mode.
    pub ack: Ack,
    /// The seed of the kill points.
    pub seed: u64,
    /// One entry per kill.
    pub rounds: Vec<RoundReport>,
    /// Sessions in the store at the end.
    pub rows: usize,
    /// How long the run took.
    pub elapsed: Duration,
}

impl CrashReport {
    /// Ids printed over all kills.
    pub fn printed(&self) -> usize {
        self.rounds.iter().map(|r| r.printed).sum()
    }

    /// Printed ids lost over all kills.
    pub fn lost(&self) -> usize {
        self.rounds.iter().map(|r| r.lost).sum()
    }

    /// The most printed ids one kill lost.
    pub fn max_lost(&self) -> usize {
        self.rounds.iter().map(|r| r.lost).max().unwrap_or(0)
    }

    /// Kills of one kind.
    pub fn kills(&self, kind: KillKind) -> usize {
        self.rounds.iter().filter(|r| r.kind == kind).count()
    }
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:?}: {} kills ({} by id count, {} after a delay, {} at startup), \
             {} printed ids checked, {} lost (at most {} in one kill), {} sessions stored, \
             {:.1?} (seed {:#x})",
            self.backend,
            self.ack,
            self.rounds.len(),
            self.kills(KillKind::Lines),
            self.kills(KillKind::AfterFirstAck),
            self.kills(KillKind::Startup),
            self.printed(),
            self.lost(),
            self.max_lost(),
            self.rows,
            self.elapsed,
            self.seed,
        )
    }
}

/// The number of kills: [`KILLS_VAR`], or 20.
///
/// # Panics
///
/// When the variable is set but not a positive number.
pub fn kills_from_env() -> usize {
    match std::env::var(KILLS_VAR) {
        Err(_) => DEFAULT_KILLS,
        Ok(text) => match text.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("{KILLS_VAR}={text:?}: expected a positive number of kills"),
        },
    }
}

/// The seed of the kill points: [`SEED_VAR`], or one drawn from the time.
///
/// # Panics
///
/// When the variable is set but not a number.
pub fn seed_from_env() -> u64 {
    let Ok(text) = std::env::var(SEED_VAR) else {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        return now.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id());
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{SEED_VAR}={text:?}: expected a number"))
}

/// Crashes `backend` `kills` times, with the child writing through a buffer
/// with `ack` and `config`, and checks the store after every kill.
///
/// One store serves the whole run: every child starts on what the last crash
/// left. After each kill: for SQLite `PRAGMA integrity_check` must say `ok`;
/// then, in the store reopened bare, each task's sessions of this round must
/// load by access token, each equal to its [`CrashId::session`], as a prefix
/// `0..m` of the task's counter (batches are applied in order and whole), and
/// a printed id past `m` is lost: with [`Ack::Durable`] none may be, with
/// [`Ack::Queued`] at most `config.max_pending`. After the last kill the
/// whole store must hold exactly the records the children wrote, and every
/// round still the sessions it had after its own kill.
///
/// # Panics
///
/// On any failed check, naming the round, the kill and the seed.
pub fn run(
    child: &Path,
    backend: Backend,
    ack: Ack,
    config: &BufferConfig,
    kills: usize,
    seed: u64,
) -> CrashReport {
    let started = Instant::now();
    let _note = SeedNote(seed);
    let mut checker = Checker::new(backend);
    let mut rng = SplitMix64::new(seed);
    let allowed = match ack {
        Ack::Durable => 0,
        Ack::Queued => config.max_pending,
    };
    let mut rounds = Vec::new();
    for round in 0..kills as u32 {
        let plan = KillPlan::draw(&mut rng);
        let spec = ChildSpec {
            target: checker.target(),
            ack,
            round,
            config: config.clone(),
        };
        let context = |e: String| format!("{backend:?} {ack:?}, round {round}, kill {plan}: {e}");
        let printed =
            spawn::crash_once(child, &spec, plan).unwrap_or_else(|e| panic!("{}", context(e)));
        let report = checker
            .check(round, plan.kind(), &printed)
            .unwrap_or_else(|e| panic!("{}", context(e)));
        eprintln!(
            "{backend:?} {ack:?} round {round}: killed {plan}: {} printed, {} lost, {} stored",
            report.printed, report.lost, report.stored
        );
        if report.lost > allowed {
            let lost = format!(
                "{} of {} printed ids lost; at most {allowed} may be",
                report.lost, report.printed
            );
            panic!("{}", context(lost));
        }
        rounds.push(report);
    }
    checker
        .finish()
        .unwrap_or_else(|e| panic!("{backend:?} {ack:?}, after the last kill: {e}"));
    CrashReport {
        backend,
        ack,
        seed,
        rounds,
        rows: checker.rows(),
        elapsed: started.elapsed(),
    }
}

/// Prints how to replay the kill points when the run panics.
struct SeedNote(u64);

impl Drop for SeedNote {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "crash test failed: replay its kill points with {SEED_VAR}={:#x}",
                self.0
            );
        }
    }
}

/// Where a run's store lives; dropped (file or database removed) at the end.
enum Place {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    /// Boxed: a database's two connection configs are large.
    Postgres(Box<tokenstore_pgtest::TestDatabase>),
}

impl Place {
    fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("crash.sqlite");
                Self::Sqlite { _dir: dir, path }
            }
            Backend::Postgres => Self::Postgres(Box::new(tokenstore_pgtest::shared().database())),
        }
    }

    fn target(&self) -> Target {
        match self {
            Self::Sqlite { path, .. } => Target::Sqlite(path.display().to_string()),
            Self::Postgres(db) => Target::Postgres(db.conninfo()),
        }
    }
}

impl fmt::Debug for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path, .. } => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(db) => f.debug_tuple("Postgres").field(&db.name()).finish(),
        }
    }
}

/// Ids by task, in printing order.
fn by_task(ids: &[CrashId]) -> std::collections::BTreeMap<u32, Vec<u64>> {
    let mut tasks = std::collections::BTreeMap::<u32, Vec<u64>>::new();
    for id in ids {
        tasks.entry(id.task).or_default().push(id.n);
    }
    tasks
}
