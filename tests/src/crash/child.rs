//! The child: opens the store named by its [`ChildSpec`], wraps it in a
//! [`BufferedTokenStore`], and writes from [`TASKS`] tasks until it is killed,
//! printing `acked <round> <task> <n>` once each call returned `Ok`.

use super::{CHILD_VAR, ChildSpec, CrashId, TASKS, Target};
use crate::{T0, TEST_KEY};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore::runtime::TokioRuntime;
use tokenstore::{BufferedTokenStore, TokenStore};
use tokenstore_core::ManualClock;
use tokenstore_postgres::PostgresTokenStore;
use tokenstore_sqlite::SqliteTokenStore;

/// How long a child writes before it stops by itself: far past any kill the
/// parent plans, so that a child whose parent died does not run on.
const LIFETIME: Duration = Duration::from_secs(60);

/// The line printed once the store is open and the writers start.
pub(super) const READY: &str = "ready";

/// The `crash-child` binary's `main`: runs the spec in [`CHILD_VAR`]; exits
/// with 2 and a message on standard error when anything fails.
pub fn child_main() -> ExitCode {
    let outcome = std::env::var(CHILD_VAR)
        .map_err(|_| format!("{CHILD_VAR} is not set: this binary is run by the crash tests"))
        .and_then(|text| ChildSpec::decode(&text))
        .and_then(|spec| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build a runtime: {e}"))?;
            runtime.block_on(run(spec))
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("crash-child: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(spec: ChildSpec) -> Result<(), String> {
    let clock = ManualClock::new(T0);
    match &spec.target {
        Target::Sqlite(path) => {
            let store = SqliteTokenStore::builder(path)
                .encryption_key(TEST_KEY)
                .clock(clock)
                .open()
                .await
                .map_err(|e| format!("open SQLite: {e}"))?;
            write_until_killed(store, &spec).await
        }
        Target::Postgres(conninfo) => {
            let store = PostgresTokenStore::builder(conninfo)
                .encryption_key(TEST_KEY)
                .clock(clock)
                .open()
                .await
                .map_err(|e| format!("open PostgreSQL: {e}"))?;
            write_until_killed(store, &spec).await
        }
    }
}

/// Runs the writers over `store` until they are killed (or their lifetime
/// ends, which the parent reports as a failure).
async fn write_until_killed<S: TokenStore + 'static>(
    store: S,
    spec: &ChildSpec,
) -> Result<(), String> {
    let buffer = Arc::new(BufferedTokenStore::new(
        store,
        spec.config.clone(),
        spec.ack,
        TokioRuntime::current(),
    ));
    print_line(READY)?;
    let deadline = Instant::now() + LIFETIME;
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let buffer = Arc::clone(&buffer);
            tokio::spawn(writer(buffer, spec.round, task, deadline))
        })
        .collect();
    for writer in writers {
        writer.await.map_err(|e| format!("writer task: {e}"))??;
    }
    Ok(())
}

/// One task's writes, in order; each id is printed only after its call
/// returned `Ok`.
async fn writer<S: TokenStore + 'static>(
    buffer: Arc<BufferedTokenStore<S>>,
    round: u32,
    task: u32,
    deadline: Instant,
) -> Result<(), String> {
    let mut n = 0;
    while Instant::now() < deadline {
        let id = CrashId { round, task, n };
        buffer
            .store_session(Arc::new(id.session()))
            .await
            .map_err(|e| format!("store {}: {e}", id.session_id()))?;
        print_line(&id.ack_line())?;
        n += 1;
    }
    Ok(())
}

/// Writes one line to standard output and flushes it. The line and its
/// newline go in one `write_all` of a few bytes (at most `PIPE_BUF`), so the
/// pipe takes it whole: a kill never leaves half a line.
fn print_line(line: &str) -> Result<(), String> {
    let line = format!("{line}\n");
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}
