//! Two OS processes, one store (issue 12): the parent writes and revokes
//! through its own store; a child process, the `replica-child` binary of this
//! crate, validates tokens through a [`CachingTokenStore`] that follows the
//! store's invalidation feed. The parent checks that the child never serves a
//! revoked session once the bound has passed since the revoke returned, also
//! across a `SIGSTOP` longer than the bound.
//!
//! The child speaks lines on stdin/stdout: `v <token>` is answered
//! `live <hits>` or `gone <hits>` (its cache's session hits so far), `q`
//! closes and exits.

use crate::TEST_KEY;
use crate::crash::Target;
use crate::instances::feed_config;
use crate::sample::session;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore::CachingTokenStore;
use tokenstore::runtime::TokioRuntime;
use tokenstore_core::{Clock, SystemClock, TokenStore};
use tokenstore_postgres::PostgresTokenStore;
use tokenstore_sqlite::SqliteTokenStore;

/// The environment variable that makes `replica-child` run: `<bound ms>`
/// then a space and the target (`sqlite:<path>` or `postgres:<conninfo>`).
pub const REPLICA_VAR: &str = "TOKENSTORE_REPLICA_CHILD";

/// The child's `main`.
pub fn child_main() -> ExitCode {
    let outcome = std::env::var(REPLICA_VAR)
        .map_err(|_| format!("{REPLICA_VAR} is not set: this binary is run by the replica tests"))
        .and_then(|spec| {
            let (bound, target) = spec.split_once(' ').ok_or("bad spec")?;
            let bound = Duration::from_millis(bound.parse().map_err(|_| "bad bound")?);
            let target = match target.split_once(':') {
                Some(("sqlite", path)) => Target::Sqlite(path.to_owned()),
                Some(("postgres", conninfo)) => Target::Postgres(conninfo.to_owned()),
                _ => return Err("bad target".to_owned()),
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build a runtime: {e}"))?
                .block_on(serve(bound, target))
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("replica-child: {message}");
            ExitCode::from(2)
        }
    }
}

async fn serve(bound: Duration, target: Target) -> Result<(), String> {
    match target {
        Target::Sqlite(path) => serve_on(bound, open_sqlite(Path::new(&path)).await?).await,
        Target::Postgres(conninfo) => serve_on(bound, open_postgres(&conninfo).await?).await,
    }
}

/// The SQLite store both processes open: the shared file, with its log.
pub async fn open_sqlite(path: &Path) -> Result<SqliteTokenStore, String> {
    SqliteTokenStore::builder(path)
        .encryption_key(TEST_KEY)
        .invalidation_log(true)
        .open()
        .await
        .map_err(|e| format!("open SQLite: {e}"))
}

/// The PostgreSQL store both processes open.
pub async fn open_postgres(conninfo: &str) -> Result<PostgresTokenStore, String> {
    PostgresTokenStore::builder(conninfo)
        .encryption_key(TEST_KEY)
        .open()
        .await
        .map_err(|e| format!("open PostgreSQL: {e}"))
}

async fn serve_on<S: TokenStore + 'static>(bound: Duration, store: S) -> Result<(), String> {
    let cache = CachingTokenStore::following_with_clock(
        store,
        feed_config(bound),
        SystemClock,
        TokioRuntime::current(),
    )
    .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let answer = match line.split_once(' ') {
            Some(("v", token)) => match cache.load_session_by_token(token).await {
                Ok(found) => format!(
                    "{} {}",
                    if found.is_some() { "live" } else { "gone" },
                    cache.metrics().sessions.hits
                ),
                Err(e) => format!("error {e}"),
            },
            _ if line == "q" => break,
            _ => "error unknown request".to_owned(),
        };
        writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
    cache.close().await.map_err(|e| e.to_string())
}

/// The parent's handle on a running child.
pub struct Replica {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// One answer of the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The session was returned.
    pub live: bool,
    /// The child's cache's session hits so far.
    pub hits: u64,
}

impl Replica {
    /// Starts `binary` on `target` with bound `bound` and waits until its
    /// cache follows the feed.
    pub fn start(binary: &Path, bound: Duration, target: &str) -> Result<Self, String> {
        let mut child = Command::new(binary)
            .env(REPLICA_VAR, format!("{} {target}", bound.as_millis()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the replica: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut replica = Self {
            child,
            stdin,
            stdout,
        };
        let ready = replica.line()?;
        if ready != "ready" {
            return Err(format!("the replica said {ready:?}"));
        }
        Ok(replica)
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the replica closed its output".into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// Asks the child to validate `token`.
    pub fn validate(&mut self, token: &str) -> Result<Answer, String> {
        writeln!(self.stdin, "v {token}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| e.to_string())?;
        let line = self.line()?;
        let (state, hits) = line
            .split_once(' ')
            .ok_or_else(|| format!("answer {line:?}"))?;
        let hits = hits.parse().map_err(|_| format!("answer {line:?}"))?;
        match state {
            "live" => Ok(Answer { live: true, hits }),
            "gone" => Ok(Answer { live: false, hits }),
            _ => Err(format!("the replica answered {line:?}")),
        }
    }

    /// Sends `SIGSTOP` (`stop`) or `SIGCONT` to the child.
    pub fn signal(&self, stop: bool) -> Result<(), String> {
        let status = Command::new("kill")
            .arg(if stop { "-STOP" } else { "-CONT" })
            .arg(self.child.id().to_string())
            .status()
            .map_err(|e| e.to_string())?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("kill said {status}"))
    }

    /// Asks the child to close and waits for it.
    pub fn stop(mut self) -> Result<(), String> {
        writeln!(self.stdin, "q").map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("the replica exited with {status}"))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.signal(false);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What [`revoke_across`] saw.
#[derive(Debug, Default)]
pub struct CrossProcess {
    /// Revocations checked.
    pub revocations: usize,
    /// Of those, made while the child was stopped for longer than the bound.
    pub during_pause: usize,
    /// Answers `live` to a request sent `bound` or more after the revoke
    /// returned. Must be 0.
    pub stale_serves: usize,
    /// Revoke return to the child's first `gone`.
    pub latencies: Vec<Duration>,
}

/// `rounds` revocations (logouts, every third one made while the child is
/// stopped with `SIGSTOP` for twice the bound): the parent stores a session
/// through `writer`, the child validates it until its cache serves it, the
/// parent revokes it and asks again until the child says `gone`.
pub async fn revoke_across<S: TokenStore>(
    writer: &S,
    replica: &mut Replica,
    rounds: usize,
    bound: Duration,
    deadline: Duration,
) -> Result<CrossProcess, String> {
    let mut seen = CrossProcess::default();
    for round in 0..rounds {
        let token = format!("cross-{round}");
        let now = SystemClock.now();
        let s = session(
            &format!("sid-cross-{round}"),
            &token,
            None,
            now + Duration::from_secs(3600),
            None,
            now,
        );
        writer
            .store_session(Arc::new(s))
            .await
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut last = replica.validate(&token)?;
        loop {
            let next = replica.validate(&token)?;
            if next.live && last.live && next.hits > last.hits {
                break;
            }
            if started.elapsed() > deadline {
                return Err(format!(
                    "round {round}: the replica never served {token} from cache"
                ));
            }
            last = next;
        }
        let pause = round % 3 == 2;
        if pause {
            replica.signal(true)?;
        }
        writer
            .delete_session_by_token(&token)
            .await
            .map_err(|e| e.to_string())?;
        let revoked = Instant::now();
        if pause {
            std::thread::sleep(2 * bound);
            replica.signal(false)?;
            seen.during_pause += 1;
        }
        loop {
            let sent = revoked.elapsed();
            let answer = replica.validate(&token)?;
            if !answer.live {
                seen.latencies.push(revoked.elapsed());
                break;
            }
            if sent >= bound {
                seen.stale_serves += 1;
            }
            if sent > deadline {
                return Err(format!(
                    "round {round}: {token} still served after {sent:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        seen.revocations += 1;
    }
    Ok(seen)
}

/// The bound of the cross-process tests.
pub const CROSS_BOUND: Duration = Duration::from_millis(200);

/// The whole cross-process test, for either backend: starts `binary` (the
/// `replica-child` built with the test) on `target`, runs 12 rounds of
/// [`revoke_across`] with `writer`, prints what it saw and checks it: every
/// round checked, 4 made while the child was stopped, 0 stale serves.
///
/// # Panics
///
/// On any failed check.
pub async fn check_across_processes<S: TokenStore>(binary: &Path, writer: &S, target: &str) {
    let mut replica = Replica::start(binary, CROSS_BOUND, target).expect("start the replica");
    let seen = revoke_across(
        writer,
        &mut replica,
        12,
        CROSS_BOUND,
        Duration::from_secs(10),
    )
    .await
    .expect("the rounds");
    let mut sorted = seen.latencies.clone();
    sorted.sort();
    eprintln!(
        "{} revocations ({} while stopped), stale serves {}, p50 {:?}, max {:?}",
        seen.revocations,
        seen.during_pause,
        seen.stale_serves,
        sorted.get(sorted.len() / 2),
        sorted.last()
    );
    assert_eq!(seen.revocations, 12);
    assert_eq!(seen.during_pause, 4);
    assert_eq!(seen.stale_serves, 0);
    replica.stop().expect("the replica stops cleanly");
}
