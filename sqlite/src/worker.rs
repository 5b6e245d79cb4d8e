//! The connection thread: it owns the rusqlite `Connection` and runs jobs sent
//! through a channel, one at a time, answering each through a oneshot.
//!
//! SQLite calls block, so none runs on the caller's executor. The oneshot from
//! `futures-channel` is a plain `Future` that needs no runtime, so a store works
//! under tokio, smol or a bare `block_on` alike.
//!
//! A job is a closure over [`Db`], so one job may run any number of operations,
//! inside one transaction ([`Db::write`]) or not ([`Db::ctx`]).
//!
//! When the file has an invalidation log (see [`crate::feed`]), every job that
//! may invalidate a cached key runs in a transaction ([`Db::logged`]), so its
//! log rows commit with it, and the writer prunes the log at most once a
//! [`PRUNE_EVERY`].

use crate::error::{backend, thread_gone};
use crate::feed;
use crate::jobs::{self, Inbox, Job};
use crate::schema::{self, Counters, Settings};
use futures_channel::oneshot;
use rusqlite::{Connection, TransactionBehavior};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::{Clock, StoreError, Timestamp};

/// How often, at most, the writer prunes the invalidation log on its own
/// (`cleanup_expired` prunes every time).
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What an operation runs against: the connection (or a transaction on it,
/// which derefs to it), the codec of the secret columns, and whether its
/// writes log invalidations.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) codec: &'a SecretCodec,
    pub(crate) logging: Logging,
}

/// Whether the writes of a job log invalidations ([`feed::record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logging {
    /// The file has no invalidation log: writes log nothing.
    Off,
    /// In a transaction on a file with a log: rows are stamped `at` (Unix
    /// seconds) and pruning drops rows stamped before `prune_before`.
    On { at: i64, prune_before: i64 },
    /// The file has a log but the job runs in autocommit mode: a write that
    /// tries to log here fails instead of logging outside its transaction.
    Autocommit,
}

/// The connection thread's view of the invalidation log.
struct Feed {
    clock: Arc<dyn Clock>,
    retention: Duration,
    /// When the writer prunes next.
    next_prune: Timestamp,
}

impl Feed {
    /// The logging of a transaction that starts now.
    fn logging(&self) -> Logging {
        let now = self.clock.now();
        Logging::On {
            at: unix_secs(now),
            prune_before: unix_secs(now.saturating_sub(self.retention)),
        }
    }
}

/// Whole Unix seconds, rounded down.
fn unix_secs(t: Timestamp) -> i64 {
    t.as_unix_micros().div_euclid(1_000_000)
}

impl Ctx<'_> {
    /// Every row `sql` (without parameters) returns, decoded by `decode`.
    pub(crate) fn collect<T>(
        self,
        sql: &str,
        decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(backend)?;
        let mut rows = stmt.query([]).map_err(backend)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(backend)? {
            out.push(decode(row)?);
        }
        Ok(out)
    }

    /// Runs `sql` once; how many rows it changed.
    pub(crate) fn execute(
        self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(backend)?;
        let n = stmt.execute(params).map_err(backend)?;
        Ok(n as u64)
    }
}

/// The connection thread's state, lent to each job.
pub(crate) struct Db {
    conn: Connection,
    codec: SecretCodec,
    feed: Option<Feed>,
}

impl Db {
    /// Runs statements in autocommit mode (each statement its own transaction).
    /// Writes that log must use [`Db::logged`] or [`Db::write`] instead.
    pub(crate) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            conn: &self.conn,
            codec: &self.codec,
            logging: match self.feed {
                Some(_) => Logging::Autocommit,
                None => Logging::Off,
            },
        }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed when `f`
    /// succeeds, rolled back when it fails, so a failed job changes nothing.
    /// Then prunes the invalidation log, when it is time to.
    pub(crate) fn write<T>(
        &mut self,
        f: impl FnOnce(Ctx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = self.transaction(TransactionBehavior::Immediate, f)?;
        self.maybe_prune();
        Ok(out)
    }

    /// Runs a write that may log invalidations: in one transaction
    /// ([`Db::write`]) when the file has a log, so the rows commit with it, and
    /// in autocommit mode, as before, when it has none.
    pub(crate) fn logged<T>(
        &mut self,
        f: impl FnOnce(Ctx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.feed.is_some() {
            self.write(f)
        } else {
            f(self.ctx())
        }
    }

    /// Prunes the log in its own transaction at most once a [`PRUNE_EVERY`]. A
    /// failed prune is only traced: the write before it has committed, and the
    /// next prune retries.
    fn maybe_prune(&mut self) {
        let Some(state) = &mut self.feed else {
            return;
        };
        let now = state.clock.now();
        if now < state.next_prune {
            return;
        }
        state.next_prune = now.saturating_add(PRUNE_EVERY);
        let pruned = self.transaction(TransactionBehavior::Immediate, feed::prune);
        match pruned {
            Ok(rows) => tracing::debug!(rows, "pruned the invalidation log"),
            Err(err) => tracing::warn!(%err, "cannot prune the invalidation log"),
        }
    }

    /// Runs `f` in one deferred transaction: every read sees one snapshot.
    pub(crate) fn snapshot<T>(
        &mut self,
        f: impl FnOnce(Ctx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(TransactionBehavior::Deferred, f)
    }

    fn transaction<T>(
        &mut self,
        behavior: TransactionBehavior,
        f: impl FnOnce(Ctx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(behavior)
            .map_err(backend)?;
        let logging = self.feed.as_ref().map_or(Logging::Off, Feed::logging);
        let out = f(Ctx {
            conn: &tx,
            codec: &self.codec,
            logging,
        })?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    fn close(self) -> Result<(), StoreError> {
        self.conn.close().map_err(|(_, err)| backend(err))
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Msg {
    Run(Job<Db>),
    Close(Reply<()>),
}

/// The caller's end of the connection thread.
pub(crate) struct Worker {
    jobs: Inbox<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    /// Starts the thread, which opens the database; waits until it is ready.
    /// Also answers whether the store logs invalidations.
    pub(crate) async fn start(
        settings: Settings,
        codec: SecretCodec,
        counters: Arc<Counters>,
    ) -> Result<(Self, bool), StoreError> {
        let (jobs, inbox) = mpsc::channel();
        let (ready, opened) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tokenstore-sqlite".to_owned())
            .spawn(move || serve(&settings, codec, &counters, ready, &inbox))
            .map_err(|e| StoreError::Backend(format!("cannot start a thread: {}", e.kind())))?;
        let logging = opened.await.map_err(|_| thread_gone())??;
        let worker = Self {
            jobs: Inbox::new(jobs),
            thread: Mutex::new(Some(thread)),
        };
        Ok((worker, logging))
    }

    /// Runs `f` on the connection thread and returns its result.
    ///
    /// `op` names the operation in the job's debug-level tracing span.
    pub(crate) async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answer) = jobs::job(tracing::debug_span!("tokenstore_sqlite", op), f);
        self.jobs.send(Msg::Run(job))?;
        jobs::answer(answer).await
    }

    /// Whether [`Worker::close`] has begun.
    pub(crate) fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Runs the jobs already sent, closes the connection and ends the thread.
    /// Idempotent; every later call to [`Worker::run`] fails with `Closed`.
    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let Some(jobs) = self.jobs.close() else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        let closed = match jobs.send(Msg::Close(reply)) {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(thread_gone())),
            Err(_) => Ok(()), // the thread had already stopped
        };
        self.join();
        closed
    }

    /// Waits for the thread, which has answered its last message.
    fn join(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // A panicked thread has nothing more to report.
            let _ = handle.join();
        }
    }
}

/// The connection thread's body.
fn serve(
    settings: &Settings,
    codec: SecretCodec,
    counters: &Arc<Counters>,
    ready: Reply<bool>,
    inbox: &mpsc::Receiver<Msg>,
) {
    let (conn, logging) = match schema::open(settings, counters) {
        Ok(opened) => opened,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let feed = logging.then(|| Feed {
        clock: Arc::clone(&settings.clock),
        retention: settings.retention,
        next_prune: Timestamp::MIN,
    });
    let mut db = Db { conn, codec, feed };
    let _ = ready.send(Ok(logging));
    while let Ok(msg) = inbox.recv() {
        match msg {
            Msg::Run(job) => job(&mut db),
            Msg::Close(reply) => {
                let _ = reply.send(db.close());
                return;
            }
        }
    }
    // Every sender is gone (the store was dropped unclosed): the connection
    // closes as `db` drops.
}
