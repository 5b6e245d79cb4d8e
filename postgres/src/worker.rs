//! The runtime thread: the store's own current-thread tokio runtime, its
//! connection pool, and the jobs callers send it.
//!
//! Callers on any runtime (tokio, smol, a bare `block_on`) send a job through
//! an unbounded `futures-channel` queue and await a `futures-channel`
//! oneshot: plain futures that need no runtime. The thread spawns each job as
//! a task on its runtime, so up to `pool_size` jobs talk to PostgreSQL at
//! once, each on a connection of its own, and the rest wait for one.
//!
//! The pool is ours (a semaphore and a stack of idle connections, about 60
//! lines) rather than deadpool's or bb8's: it lives on the runtime this
//! thread owns, so it needs no runtime feature of theirs, and it drops a
//! connection that failed instead of handing it out again; a new one is dialled
//! on the next checkout.

use crate::conn::{Conn, Db, Shared};
use crate::error::{Fail, describe, gave_up, thread_gone};
use crate::hints::{self, Dialer, Notifier};
use crate::tls::{self, Tls, TlsFailure, TlsMode};
use crate::{feed, schema};
use async_lock::{Semaphore, SemaphoreGuard};
use futures_channel::{mpsc, oneshot};
use futures_lite::StreamExt as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokenstore_core::StoreError;
use tokenstore_core::feed::HintBoard;
use tokio::task::JoinSet;
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};

/// How many times a transaction that conflicted with a concurrent one
/// (serialization failure, deadlock, unique violation) is run in all.
pub(crate) const MAX_ATTEMPTS: u32 = 10;

/// Whether a job runs its statements in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Each statement on its own (autocommit).
    Auto,
    /// `BEGIN`, the statements, `COMMIT` (rolled back on any failure).
    Tx,
    /// As `Tx`, `REPEATABLE READ, READ ONLY`: every read sees one snapshot.
    Snapshot,
}

/// What the runtime thread needs to open the store.
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) tls: Tls,
    pub(crate) pool_size: usize,
    pub(crate) shared: Shared,
    pub(crate) schema: String,
    /// The invalidation feed's background tasks; `None` when the log is off.
    pub(crate) feed: Option<FeedTasks>,
}

/// What the runtime thread runs for the invalidation feed besides the jobs.
pub(crate) struct FeedTasks {
    /// Log rows older than this are pruned, about every [`feed::prune_interval`].
    pub(crate) retention: Duration,
    /// The hint tasks, when hints are on.
    pub(crate) hints: Option<HintTasks>,
}

/// The listener's and the notifier's shared state.
pub(crate) struct HintTasks {
    pub(crate) board: Arc<HintBoard>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) woken: mpsc::UnboundedReceiver<()>,
    pub(crate) channel: String,
}

type Job = Box<dyn FnOnce(Arc<Inner>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

enum Msg {
    Run(Job),
    Close(oneshot::Sender<()>),
}

/// The caller's end of the runtime thread.
pub(crate) struct Worker {
    jobs: Mutex<Option<mpsc::UnboundedSender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    /// Starts the thread, which connects and creates or migrates the schema;
    /// waits until it is ready.
    pub(crate) async fn start(settings: Settings) -> Result<Self, StoreError> {
        let (jobs, inbox) = mpsc::unbounded();
        let (ready, opened) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tokenstore-postgres".to_owned())
            .spawn(move || serve(settings, ready, inbox))
            .map_err(|e| StoreError::Backend(format!("cannot start a thread: {}", e.kind())))?;
        if let Err(e) = opened.await.map_err(|_| thread_gone())? {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `f` on the runtime thread with a pooled connection, in `mode`,
    /// retrying it (bounded) when it conflicted with a concurrent transaction.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        mode: Mode,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Db) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Fail>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |inner: Arc<Inner>| {
            Box::pin(async move {
                let out = inner.attempt(op, mode, &f).await;
                // The caller may have given up waiting; the work is done either way.
                let _ = reply.send(out);
            })
        });
        self.send(Msg::Run(job))?;
        answer.await.map_err(|_| thread_gone())?
    }

    /// Sends under the lock, so no job can follow the close message.
    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = jobs.as_ref().ok_or(StoreError::Closed)?;
        sender.unbounded_send(msg).map_err(|_| thread_gone())
    }

    /// Whether [`Worker::close`] has begun.
    pub(crate) fn is_closed(&self) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Finishes the jobs already sent, closes every connection and ends the
    /// thread. Idempotent; every later call to [`Worker::run`] fails with `Closed`.
    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let taken = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(jobs) = taken else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        if jobs.unbounded_send(Msg::Close(reply)).is_ok() {
            let _ = answer.await;
        }
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // It has answered its last message; a panicked thread has nothing to say.
            let _ = handle.join();
        }
        Ok(())
    }
}

/// The runtime thread's state, shared by its tasks.
pub(crate) struct Inner {
    pool: Pool,
    shared: Arc<Shared>,
}

impl Inner {
    /// Runs `f` with a pooled connection in `mode`, retrying (bounded) when
    /// it conflicted with a concurrent transaction.
    pub(crate) async fn attempt<T, F, Fut>(
        &self,
        op: &'static str,
        mode: Mode,
        f: &F,
    ) -> Result<T, StoreError>
    where
        F: Fn(Db) -> Fut,
        Fut: Future<Output = Result<T, Fail>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let lease = self.pool.get().await.map_err(Fail::into_store)?;
            let db = Db {
                conn: lease.conn(),
                shared: Arc::clone(&self.shared),
            };
            let out = match mode {
                Mode::Auto => f(db).await,
                Mode::Tx => in_transaction(db, "BEGIN", f).await,
                Mode::Snapshot => {
                    in_transaction(db, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", f).await
                }
            };
            drop(lease);
            match out {
                Ok(v) => return Ok(v),
                Err(e) => match e.conflict() {
                    Some(state) if attempts >= MAX_ATTEMPTS => {
                        return Err(gave_up(op, attempts, state));
                    }
                    Some(_) => backoff(attempts).await,
                    None => return Err(e.into_store()),
                },
            }
        }
    }
}

/// `begin`, `f`, `COMMIT`; `ROLLBACK` when anything fails.
async fn in_transaction<T, F, Fut>(db: Db, begin: &str, f: &F) -> Result<T, Fail>
where
    F: Fn(Db) -> Fut,
    Fut: Future<Output = Result<T, Fail>>,
{
    let conn = Arc::clone(&db.conn);
    conn.batch(begin).await?;
    let out = match f(db).await {
        Ok(v) => conn.batch("COMMIT").await.map(|()| v),
        Err(e) => Err(e),
    };
    if out.is_err() && !conn.is_closed() {
        // A failed COMMIT has already ended the transaction; ROLLBACK is then a no-op.
        let _ = conn.batch("ROLLBACK").await;
    }
    out
}

/// Waits a little longer after each conflict (0.5 ms, 1 ms, ... up to 64 ms),
/// shifted by a per-thread counter so colliding writers drift apart.
async fn backoff(attempts: u32) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SPREAD: AtomicU64 = AtomicU64::new(0);
    let base = 500u64 << attempts.min(7);
    let spread = SPREAD.fetch_add(137, Ordering::Relaxed) % base;
    tokio::time::sleep(Duration::from_micros(base + spread)).await;
}

/// The connections: at most `size` checked out at once.
struct Pool {
    config: Config,
    tls: Tls,
    idle: Mutex<Vec<Arc<Conn>>>,
    permits: Semaphore,
    drivers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A checked-out connection; back to the pool when dropped, unless it failed.
struct Lease<'a> {
    conn: Option<Arc<Conn>>,
    pool: &'a Pool,
    _permit: SemaphoreGuard<'a>,
}

impl Lease<'_> {
    fn conn(&self) -> Arc<Conn> {
        Arc::clone(
            self.conn
                .as_ref()
                .expect("a lease holds its connection until dropped"),
        )
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take().filter(|c| !c.is_closed()) {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}

impl Pool {
    fn new(config: Config, tls: Tls, size: usize) -> Self {
        Self {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size),
            drivers: Mutex::new(Vec::new()),
        }
    }

    async fn get(&self) -> Result<Lease<'_>, Fail> {
        let permit = self.permits.acquire().await;
        let idle = loop {
            let next = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match next {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let conn = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Lease {
            conn: Some(conn),
            pool: self,
            _permit: permit,
        })
    }

    /// Dials a new connection and spawns its driver.
    async fn connect(&self) -> Result<Arc<Conn>, Fail> {
        let (client, connection) = dial(&self.config, &self.tls).await.map_err(Fail::Store)?;
        let driver = tokio::spawn(async move {
            // A failed connection shows as a closed client; its error reaches
            // the statement that was running.
            let _ = connection.await;
        });
        self.drivers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(driver);
        Ok(Arc::new(Conn::new(client)))
    }

    /// Closes every idle connection and waits for their drivers to finish.
    /// Runs after the last job finished (no lease is out, and none follows).
    async fn close(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let drivers =
            std::mem::take(&mut *self.drivers.lock().unwrap_or_else(PoisonError::into_inner));
        for driver in drivers {
            let _ = driver.await;
        }
    }
}

/// A connection's socket half, which must be polled for its client to work.
pub(crate) type Link = tokio_postgres::Connection<
    Socket,
    <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream,
>;

/// Dials one connection with `config` (its client and the half to drive).
pub(crate) async fn dial(config: &Config, tls: &Tls) -> Result<(Client, Link), StoreError> {
    // tokio-postgres's connect_timeout bounds dialling the socket, not the
    // startup handshake after it; bound both, so a server that accepted
    // the connection but never answers (one going down) cannot hang a job.
    let limit = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(crate::DEFAULT_CONNECT_TIMEOUT);
    tokio::time::timeout(limit, config.connect(tls.connector.clone()))
        .await
        .map_err(|_| connect_timed_out(config, limit))?
        .map_err(|e| connect_error(config, tls.mode, &e))
}

/// "cannot connect to PostgreSQL at host:port[, ...]: why" (never the
/// password). A refused certificate, or no TLS where the mode requires it, is
/// [`StoreError::InvalidConfig`]: a retry fails the same way.
pub(crate) fn connect_error(
    config: &Config,
    mode: TlsMode,
    e: &tokio_postgres::Error,
) -> StoreError {
    let at = targets(config);
    match tls::failure(e) {
        Some(TlsFailure::Verification(why)) => StoreError::InvalidConfig(format!(
            "TLS verification failed for PostgreSQL at {at} (sslmode={mode}): {why}"
        )),
        Some(TlsFailure::NotOffered) => StoreError::InvalidConfig(format!(
            "PostgreSQL at {at} does not offer TLS, which sslmode={mode} requires"
        )),
        Some(TlsFailure::Handshake(why)) => StoreError::Backend(format!(
            "cannot connect to PostgreSQL at {at}: TLS handshake failed: {why}"
        )),
        None => StoreError::Backend(format!(
            "cannot connect to PostgreSQL at {at}: {}",
            describe(e)
        )),
    }
}

/// "no answer from PostgreSQL at host:port within ...".
fn connect_timed_out(config: &Config, limit: Duration) -> StoreError {
    StoreError::Backend(format!(
        "cannot connect to PostgreSQL at {}: no answer within {limit:?}",
        targets(config)
    ))
}

/// The hosts and ports `config` dials, as `host:port` (a socket directory for
/// a Unix host).
pub(crate) fn targets(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return "localhost:5432 (no host given)".to_owned();
    }
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port} (Unix socket)", dir.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts the feed's tasks on the runtime (the caller is on it).
fn spawn_feed(inner: &Arc<Inner>, feed: Option<FeedTasks>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(feed) = feed else {
        return Vec::new();
    };
    let mut tasks = vec![tokio::spawn(feed::prune_every(
        Arc::clone(inner),
        feed.retention,
    ))];
    if let Some(h) = feed.hints {
        let (config, tls) = (&inner.pool.config, &inner.pool.tls);
        let listener = Dialer::new(config, tls, "listener");
        let notifier = Dialer::new(config, tls, "notifier");
        tasks.push(tokio::spawn(hints::listen(
            h.board,
            listener,
            h.channel.clone(),
        )));
        tasks.push(tokio::spawn(hints::notify(
            h.notifier, h.woken, notifier, h.channel,
        )));
    }
    tasks
}

/// Stops the feed's tasks and waits until they are gone (their connections
/// closed with them).
async fn stop(background: Vec<tokio::task::JoinHandle<()>>) {
    for task in &background {
        task.abort();
    }
    for task in background {
        let _ = task.await;
    }
}

/// The runtime thread's body.
fn serve(
    mut settings: Settings,
    ready: oneshot::Sender<Result<(), StoreError>>,
    inbox: mpsc::UnboundedReceiver<Msg>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let message = format!("cannot build the PostgreSQL runtime: {}", e.kind());
            let _ = ready.send(Err(StoreError::Backend(message)));
            return;
        }
    };
    rt.block_on(async move {
        let feed = settings.feed.take();
        let inner = match open(settings).await {
            Ok(inner) => Arc::new(inner),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let background = spawn_feed(&inner, feed);
        run_jobs(inner, inbox, background).await;
    });
}

/// Connects once (so a wrong address or password fails `open`), creates or
/// migrates the schema on that connection, and pools it.
async fn open(settings: Settings) -> Result<Inner, StoreError> {
    let pool = Pool::new(settings.config, settings.tls, settings.pool_size);
    let lease = pool.get().await.map_err(Fail::into_store)?;
    schema::migrate(&lease.conn(), &settings.schema)
        .await
        .map_err(Fail::into_store)?;
    drop(lease);
    Ok(Inner {
        pool,
        shared: Arc::new(settings.shared),
    })
}

async fn run_jobs(
    inner: Arc<Inner>,
    mut inbox: mpsc::UnboundedReceiver<Msg>,
    background: Vec<tokio::task::JoinHandle<()>>,
) {
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        match inbox.next().await {
            Some(Msg::Run(job)) => {
                tasks.spawn(job(Arc::clone(&inner)));
            }
            Some(Msg::Close(reply)) => {
                while tasks.join_next().await.is_some() {}
                stop(background).await;
                inner.pool.close().await;
                let _ = reply.send(());
                return;
            }
            None => {
                // Every sender is gone (the store was dropped unclosed).
                while tasks.join_next().await.is_some() {}
                stop(background).await;
                inner.pool.close().await;
                return;
            }
        }
    }
}
