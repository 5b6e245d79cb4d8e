//! The reader threads: read-only connections beside the writer's, so reads
//! never queue behind another request's commit.
//!
//! In WAL mode a reader never blocks the writer and the writer never blocks a
//! reader; each read statement (or [`Reader::snapshot`]) starts a new read
//! transaction, which sees every transaction committed before it began, so a
//! read made after a write returned sees that write.
//!
//! The readers share one queue: whichever is idle takes the next job, so one
//! slow read does not hold up the reads queued after it while another reader
//! is free. A reader never writes (its connection is opened read-only); a read
//! that finds a row the rules call dead hands its deletion back to the store,
//! which sends it to the writer.

use crate::error::{backend, thread_gone};
use crate::jobs::{self, Inbox, Job};
use crate::worker::{Ctx, Logging};
use futures_channel::oneshot;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokenstore_core::StoreError;
use tokenstore_core::codec::secrets::SecretCodec;

/// The most reader threads a store runs.
pub(crate) const MAX_READERS: usize = 64;

/// Readers when none is configured: one per core the process may use, at
/// least 2 and at most 8.
pub(crate) fn default_readers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Whether `path` names an in-memory database, which a second connection
/// cannot share (each would open a database of its own).
pub(crate) fn is_in_memory(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.is_empty()
        || text == ":memory:"
        || (text.starts_with("file:") && text.contains("mode=memory"))
}

/// A reader's connection and codec, lent to each job.
pub(crate) struct Reader {
    conn: Connection,
    codec: SecretCodec,
}

impl Reader {
    /// Runs statements in autocommit mode: each is its own read transaction.
    pub(crate) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            conn: &self.conn,
            codec: &self.codec,
            logging: Logging::Off,
        }
    }

    /// Runs `f` in one read transaction: every read sees one snapshot.
    pub(crate) fn snapshot<T>(
        &mut self,
        f: impl FnOnce(Ctx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(backend)?;
        let out = f(Ctx {
            conn: &tx,
            codec: &self.codec,
            logging: Logging::Off,
        })?;
        // Nothing to commit: ending the read transaction releases its snapshot.
        tx.commit().map_err(backend)?;
        Ok(out)
    }
}

enum Msg {
    Run(Job<Reader>),
    /// Ends the reader that takes it, after closing its connection.
    Close(oneshot::Sender<Result<(), StoreError>>),
}

/// The caller's end of the reader threads.
pub(crate) struct Readers {
    jobs: Inbox<Msg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    count: usize,
}

impl Readers {
    /// Starts `count` readers on the database at `path` (which the writer has
    /// opened and set up) and waits until each has opened its connection.
    pub(crate) async fn start(
        path: &Path,
        count: usize,
        busy_timeout: Duration,
        codec: &SecretCodec,
    ) -> Result<Self, StoreError> {
        let (jobs, inbox) = mpsc::channel();
        let inbox = Arc::new(Mutex::new(inbox));
        let readers = Self {
            jobs: Inbox::new(jobs),
            threads: Mutex::new(Vec::with_capacity(count)),
            count,
        };
        for index in 0..count {
            let (ready, opened) = oneshot::channel();
            let (path, codec, inbox) = (path.to_path_buf(), codec.clone(), Arc::clone(&inbox));
            let spawned = std::thread::Builder::new()
                .name(format!("tokenstore-sqlite-reader-{index}"))
                .spawn(move || serve(&path, busy_timeout, codec, ready, &inbox));
            let thread = match spawned {
                Ok(thread) => thread,
                Err(e) => {
                    readers.close().await?;
                    return Err(StoreError::Backend(format!(
                        "cannot start a thread: {}",
                        e.kind()
                    )));
                }
            };
            if let Err(err) = opened.await.unwrap_or_else(|_| Err(thread_gone())) {
                // That thread has returned; close the ones that opened.
                let _ = thread.join();
                readers.close().await?;
                return Err(err);
            }
            readers.lock_threads().push(thread);
        }
        Ok(readers)
    }

    /// How many reader threads run.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Runs `f` on the first idle reader and returns its result.
    ///
    /// `op` names the operation in the job's debug-level tracing span.
    pub(crate) async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Reader) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answer) = jobs::job(tracing::debug_span!("tokenstore_sqlite_read", op), f);
        self.jobs.send(Msg::Run(job))?;
        jobs::answer(answer).await
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the jobs already sent, closes every reader's connection and ends
    /// the threads. Idempotent; every later [`Readers::run`] fails with
    /// `Closed`. The first failure to close a connection is returned.
    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let Some(jobs) = self.jobs.close() else {
            return Ok(());
        };
        // The queue is first in, first out: every job sent before these
        // messages is taken (and run) before any reader takes one of them.
        let started = self.lock_threads().len();
        let mut answers = Vec::with_capacity(started);
        for _ in 0..started {
            let (reply, answer) = oneshot::channel();
            if jobs.send(Msg::Close(reply)).is_ok() {
                answers.push(answer);
            }
        }
        drop(jobs);
        let mut closed = Ok(());
        for answer in answers {
            let result = answer.await.unwrap_or_else(|_| Err(thread_gone()));
            if closed.is_ok() {
                closed = result;
            }
        }
        let threads = std::mem::take(&mut *self.lock_threads());
        for thread in threads {
            // Each has answered its close message (or panicked, with nothing
            // more to report).
            let _ = thread.join();
        }
        closed
    }
}

/// Opens a read-only connection on the writer's database.
fn open(path: &PathBuf, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
    conn.busy_timeout(busy_timeout).map_err(backend)?;
    Ok(conn)
}

/// A reader thread's body: takes jobs from the shared queue until it takes a
/// close message or every sender is gone.
fn serve(
    path: &PathBuf,
    busy_timeout: Duration,
    codec: SecretCodec,
    ready: oneshot::Sender<Result<(), StoreError>>,
    inbox: &Mutex<mpsc::Receiver<Msg>>,
) {
    let mut reader = match open(path, busy_timeout) {
        Ok(conn) => Reader { conn, codec },
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        // The lock is held only while waiting for the next message: an idle
        // reader waits on the lock, the one holding it waits on the queue.
        let msg = inbox.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match msg {
            Ok(Msg::Run(job)) => job(&mut reader),
            Ok(Msg::Close(reply)) => {
                let closed = reader.conn.close().map_err(|(_, err)| backend(err));
                let _ = reply.send(closed);
                return;
            }
            // The store was dropped unclosed: the connection closes as
            // `reader` drops.
            Err(mpsc::RecvError) => return,
        }
    }
}
