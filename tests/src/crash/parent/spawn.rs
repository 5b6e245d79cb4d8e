//! One round's child: spawn, watch its output, kill it at the planned point,
//! reap it, and collect every id it printed.

use super::KillPlan;
use crate::crash::child::READY;
use crate::crash::{CHILD_VAR, ChildSpec, CrashId};
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a child may take to print its first id (it opens the store and
/// recovers from the last crash first).
const FIRST_ACK_LIMIT: Duration = Duration::from_secs(20);
/// How long one round may watch its child before it must have killed it.
const ROUND_LIMIT: Duration = Duration::from_secs(30);
/// How long the output may take to end once the child is dead.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// One line of the child's standard output, or its end.
enum Event {
    /// A whole line, without its newline.
    Line(String),
    /// End of output; a last line without a newline (torn, which the child's
    /// single-write lines rule out) is not counted as printed.
    End,
}

/// The child process; killed and reaped when dropped, so that no early return
/// or panic leaves it running.
struct Guard(Option<Child>);

impl Guard {
    /// Kills the child with SIGKILL and waits for it.
    fn kill(&mut self) -> Result<ExitStatus, String> {
        let mut child = self.0.take().ok_or("the child was already reaped")?;
        // An error here means it already exited; `wait` tells how.
        let _ = child.kill();
        child
            .wait()
            .map_err(|e| format!("cannot reap the child: {e}"))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the watcher has seen so far.
#[derive(Default)]
struct Seen {
    ready: bool,
    first_ack: Option<Instant>,
    ids: Vec<CrashId>,
}

impl Seen {
    fn take(&mut self, line: &str, round: u32) -> Result<(), String> {
        if line == READY {
            self.ready = true;
            return Ok(());
        }
        let id = CrashId::parse_ack_line(line)
            .filter(|id| id.round == round)
            .ok_or_else(|| format!("unexpected line from the child: {line:?}"))?;
        self.first_ack.get_or_insert_with(Instant::now);
        self.ids.push(id);
        Ok(())
    }

    /// When the plan says to kill, if it can say yet.
    fn kill_at(&self, plan: KillPlan, spawned: Instant) -> Option<Instant> {
        match plan {
            // Any instant already past: kill now.
            KillPlan::Lines(n) => (self.ids.len() >= n).then_some(spawned),
            KillPlan::AfterFirstAck(d) => self.first_ack.map(|t| t + d),
            KillPlan::Startup(d) => Some(spawned + d),
        }
    }
}

/// Runs one child to its kill; returns every id it printed (those read after
/// the kill too: they were written before it).
pub(super) fn crash_once(
    exe: &Path,
    spec: &ChildSpec,
    plan: KillPlan,
) -> Result<Vec<CrashId>, String> {
    let mut child = Command::new(exe)
        .env(CHILD_VAR, spec.encode())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let spawned = Instant::now();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut guard = Guard(Some(child));
    let (stdout, stderr) = stdout.zip(stderr).ok_or("no pipes to the child")?;
    let lines = read_lines(stdout);
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let mut seen = Seen::default();
    let watched = watch(&lines, &mut seen, plan, spawned, spec.round);
    let status = guard.kill()?;
    let drained = drain(&lines, &mut seen, spec.round);
    let stderr = join_stderr(errors);
    watched
        .and(drained)
        .and_then(|()| killed_by_sigkill(status))
        .map_err(|e| format!("{e} (child status {status}; its stderr: {stderr:?})"))?;
    Ok(seen.ids)
}

/// Reads the child's standard output on a thread of its own, line by line.
fn read_lines(stdout: ChildStdout) -> Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(_) if line.ends_with('\n') => {
                    line.pop();
                    if tx.send(Event::Line(line)).is_err() {
                        return;
                    }
                }
                // End of output, a torn last line, or a read error.
                _ => {
                    let _ = tx.send(Event::End);
                    return;
                }
            }
        }
    });
    rx
}

/// Follows the output until the plan says to kill; fails when the child
/// ends by itself or prints nothing in time.
fn watch(
    lines: &Receiver<Event>,
    seen: &mut Seen,
    plan: KillPlan,
    spawned: Instant,
    round: u32,
) -> Result<(), String> {
    loop {
        let now = Instant::now();
        let kill_at = seen.kill_at(plan, spawned);
        if kill_at.is_some_and(|at| at <= now) {
            return Ok(());
        }
        if seen.first_ack.is_none() && now > spawned + FIRST_ACK_LIMIT {
            return Err(format!(
                "the child printed no id within {FIRST_ACK_LIMIT:?} (ready: {})",
                seen.ready
            ));
        }
        if now > spawned + ROUND_LIMIT {
            return Err(format!(
                "the kill point was not reached within {ROUND_LIMIT:?} ({} ids seen)",
                seen.ids.len()
            ));
        }
        let wake = kill_at.unwrap_or(now + Duration::from_millis(100));
        match lines.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(Event::Line(line)) => seen.take(&line, round)?,
            Ok(Event::End) | Err(RecvTimeoutError::Disconnected) => {
                return Err(format!(
                    "the child ended by itself after {} ids, before its kill",
                    seen.ids.len()
                ));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Takes the lines still in the pipe after the kill, up to the end of output.
fn drain(lines: &Receiver<Event>, seen: &mut Seen, round: u32) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(Event::Line(line)) => seen.take(&line, round)?,
            Ok(Event::End) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "the output did not end within {DRAIN_LIMIT:?} of the kill"
                ));
            }
        }
    }
}

fn join_stderr(errors: JoinHandle<String>) -> String {
    errors
        .join()
        .unwrap_or_else(|_| "(the stderr reader panicked)".to_owned())
}

/// The workspace is Unix-only (PostgreSQL over Unix sockets, `chown` in
/// the test cluster), so the signal is read directly.
fn killed_by_sigkill(status: ExitStatus) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt as _;
    const SIGKILL: i32 = 9;
    match status.signal() {
        Some(SIGKILL) => Ok(()),
        _ => Err("the child was not killed by SIGKILL: it had already exited".to_owned()),
    }
}
