//! After a kill: the file's integrity (SQLite), then the store reopened bare:
//! this round's sessions through the store's API after each kill, the whole
//! store once at the end.

use super::{Backend, KillKind, Place, RoundReport, by_task};
use crate::crash::{CrashId, TASKS, Target};
use crate::{T0, TEST_KEY};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use tokenstore::{StoredSession, TokenStore};
use tokenstore_core::{Contents, ManualClock};
use tokenstore_postgres::PostgresTokenStore;
use tokenstore_sqlite::SqliteTokenStore;

/// Sessions found after a kill: round, then task, then the counters stored.
type Found = BTreeMap<u32, BTreeMap<u32, BTreeSet<u64>>>;

/// Checks the store of one run after each of its kills.
pub(super) struct Checker {
    place: Place,
    runtime: tokio::runtime::Runtime,
    /// Sessions of each earlier round, which later rounds must leave alone.
    rows_by_round: BTreeMap<u32, usize>,
}

impl Checker {
    pub(super) fn new(backend: Backend) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the checks");
        Self {
            place: Place::new(backend),
            runtime,
            rows_by_round: BTreeMap::new(),
        }
    }

    /// Where the children write.
    pub(super) fn target(&self) -> Target {
        self.place.target()
    }

    /// Sessions stored after the last check.
    pub(super) fn rows(&self) -> usize {
        self.rows_by_round.values().sum()
    }

    /// Checks the store after round `round`'s child, which printed `printed`,
    /// was killed: this round's sessions, loaded one by one through the
    /// store's API (the whole store is compared in [`finish`](Self::finish)).
    pub(super) fn check(
        &mut self,
        round: u32,
        kind: KillKind,
        printed: &[CrashId],
    ) -> Result<RoundReport, String> {
        if let Place::Sqlite { path, .. } = &self.place {
            integrity_check(path)?;
        }
        printed_in_order(printed)?;
        let stored = self.runtime.block_on(stored_of_round(&self.place, round))?;
        let lost = printed
            .iter()
            .filter(|id| id.n >= stored.get(&id.task).copied().unwrap_or(0))
            .count();
        let total = stored.values().sum::<u64>() as usize;
        self.rows_by_round.insert(round, total);
        Ok(RoundReport {
            kind,
            printed: printed.len(),
            lost,
            stored: total,
        })
    }

    /// After the last kill: the whole store holds exactly the records the
    /// children wrote, each task's of each round a prefix of its counter, and
    /// every round still the sessions it had after its own kill.
    pub(super) fn finish(&self) -> Result<(), String> {
        let found = self.runtime.block_on(read_all(&self.place))?;
        for (round, tasks) in &found {
            prefixes(tasks).map_err(|e| format!("round {round}: {e}"))?;
        }
        let counts: BTreeMap<u32, usize> = found
            .iter()
            .map(|(&r, tasks)| (r, tasks.values().map(BTreeSet::len).sum()))
            .filter(|&(_, n)| n > 0)
            .collect();
        let expected: BTreeMap<u32, usize> = self
            .rows_by_round
            .iter()
            .map(|(&r, &n)| (r, n))
            .filter(|&(_, n)| n > 0)
            .collect();
        if counts != expected {
            return Err(format!(
                "sessions per round at the end {counts:?}, after each round's kill {expected:?}"
            ));
        }
        Ok(())
    }
}

/// `PRAGMA integrity_check` on the file, through a connection of its own
/// (which also recovers the write-ahead log the killed child left).
fn integrity_check(path: &Path) -> Result<(), String> {
    let fail = |e: rusqlite::Error| format!("integrity_check on {}: {e}", path.display());
    let db = rusqlite::Connection::open(path).map_err(fail)?;
    let mut stmt = db.prepare("PRAGMA integrity_check").map_err(fail)?;
    let rows: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .map_err(fail)?
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    match rows.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(format!("PRAGMA integrity_check says {rows:?}")),
    }
}

/// How many sessions each task of `round` has in the store reopened bare:
/// its counters load by access token from 0 up, each with the exact record
/// written, to the first that does not (and the one after that must not load
/// either: a task's writes are applied in order).
async fn stored_of_round(place: &Place, round: u32) -> Result<BTreeMap<u32, u64>, String> {
    let store = Bare::open(place).await?;
    let mut stored = BTreeMap::new();
    for task in 0..TASKS {
        let mut n = 0;
        while load_by_token(&store, CrashId { round, task, n }).await? {
            n += 1;
        }
        let after = CrashId {
            round,
            task,
            n: n + 1,
        };
        if load_by_token(&store, after).await? {
            return Err(format!(
                "{} is stored, but not the one before it",
                after.session_id()
            ));
        }
        stored.insert(task, n);
    }
    store.close().await?;
    Ok(stored)
}

/// Every session in the store reopened bare, checked against its id.
async fn read_all(place: &Place) -> Result<Found, String> {
    let store = Bare::open(place).await?;
    let contents = store.contents().await?;
    store.close().await?;
    group(&contents)
}

/// The sessions by id, each checked against the record its id names.
fn group(contents: &Contents) -> Result<Found, String> {
    let mut found = Found::new();
    for row in &contents.sessions {
        let id = CrashId::parse_session_id(&row.session_id)
            .ok_or_else(|| format!("a session no child wrote: {:?}", row.session_id))?;
        if **row != id.session() {
            return Err(format!("{} differs from what was written", id.session_id()));
        }
        found
            .entry(id.round)
            .or_default()
            .entry(id.task)
            .or_default()
            .insert(id.n);
    }
    let others = contents.states.len() + contents.auth_codes.len() + contents.clients.len();
    if others > 0 {
        return Err(format!("{others} records that are not sessions"));
    }
    Ok(found)
}

/// Whether `id` loads by its access token; an error if it loads with other
/// contents than were written.
async fn load_by_token(store: &Bare, id: CrashId) -> Result<bool, String> {
    let expected = id.session();
    match store.load_by_token(expected.access_token.expose()).await? {
        Some(s) if *s == expected => Ok(true),
        Some(_) => Err(format!("{} loads with other contents", id.session_id())),
        None => Ok(false),
    }
}

/// Each task's counters must be `0..m` (a task writes in order, and the
/// buffer applies batches in order and whole).
fn prefixes(tasks: &BTreeMap<u32, BTreeSet<u64>>) -> Result<(), String> {
    for (task, ns) in tasks {
        let m = ns.len() as u64;
        if ns.last().is_some_and(|&last| last + 1 != m) {
            return Err(format!(
                "task {task}: {m} sessions stored, not its first {m} (last {:?})",
                ns.last()
            ));
        }
    }
    Ok(())
}

/// Each task printed its counters `0, 1, 2, ...` once each, in order.
fn printed_in_order(printed: &[CrashId]) -> Result<(), String> {
    for (task, ns) in by_task(printed) {
        if !ns.iter().copied().eq(0..ns.len() as u64) {
            return Err(format!("task {task} printed its ids out of order"));
        }
    }
    Ok(())
}

/// The store opened without a buffer, with the children's key and clock.
enum Bare {
    Sqlite(SqliteTokenStore),
    Postgres(PostgresTokenStore),
}

impl Bare {
    async fn open(place: &Place) -> Result<Self, String> {
        let clock = ManualClock::new(T0);
        let fail = |e: tokenstore::StoreError| format!("reopen: {e}");
        Ok(match place {
            Place::Sqlite { path, .. } => Self::Sqlite(
                SqliteTokenStore::builder(path)
                    .encryption_key(TEST_KEY)
                    .clock(clock)
                    .open()
                    .await
                    .map_err(fail)?,
            ),
            Place::Postgres(db) => Self::Postgres(
                PostgresTokenStore::builder_with_config(db.config())
                    .encryption_key(TEST_KEY)
                    .clock(clock)
                    .open()
                    .await
                    .map_err(fail)?,
            ),
        })
    }

    async fn contents(&self) -> Result<Contents, String> {
        match self {
            Self::Sqlite(s) => s.contents().await,
            Self::Postgres(s) => s.contents().await,
        }
        .map_err(|e| format!("read the contents: {e}"))
    }

    async fn load_by_token(&self, token: &str) -> Result<Option<Arc<StoredSession>>, String> {
        match self {
            Self::Sqlite(s) => s.load_session_by_token(token).await,
            Self::Postgres(s) => s.load_session_by_token(token).await,
        }
        .map_err(|e| format!("load by token: {e}"))
    }

    async fn close(self) -> Result<(), String> {
        match &self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
        .map_err(|e| format!("close: {e}"))
    }
}
