//! The real-crash test (issue 11): a child process writes sessions through
//! [`BufferedTokenStore`](tokenstore::BufferedTokenStore) from [`TASKS`]
//! tasks and prints each id once its call returned; the parent kills it with
//! SIGKILL at a random moment, reopens the store bare and checks every
//! printed id.
//!
//! - The child is the `crash-child` binary of this crate ([`child_main`]); its
//!   whole configuration comes in one environment variable, [`CHILD_VAR`],
//!   holding a [`ChildSpec`].
//! - The parent is [`run`]: one database for all kills, so every child starts
//!   on top of what the last crash left (recovery included).
//! - Ids are [`CrashId`]s (round, task, counter); [`CrashId::session`] rebuilds
//!   the exact record written, so the parent checks contents, not just
//!   presence.

mod child;
mod parent;
mod rng;
pub mod suite;

pub use child::child_main;
pub use parent::{
    Backend, CrashReport, KILLS_VAR, KillKind, RoundReport, SEED_VAR, kills_from_env, run,
    seed_from_env,
};
pub use rng::SplitMix64;

use crate::T0;
use crate::sample::full_session;
use std::time::Duration;
use tokenstore::buffer::BufferConfig;
use tokenstore::{Ack, StoredSession};

/// The environment variable that makes `crash-child` run, holding a
/// [`ChildSpec`] as JSON.
pub const CHILD_VAR: &str = "TOKENSTORE_CRASH_CHILD";

/// Concurrent writer tasks in the child.
pub const TASKS: u32 = 16;

/// One written session: the child's round (one per spawned child), the
/// writer task, and that task's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CrashId {
    /// Which child wrote it (0 for the first).
    pub round: u32,
    /// Which of its tasks.
    pub task: u32,
    /// The task's counter: its writes are 0, 1, 2, ... in order.
    pub n: u64,
}

impl CrashId {
    /// The session id the child stores.
    pub fn session_id(self) -> String {
        format!("crash-r{}-t{}-n{}", self.round, self.task, self.n)
    }

    /// Parses [`session_id`](Self::session_id)'s form back.
    pub fn parse_session_id(id: &str) -> Option<Self> {
        let rest = id.strip_prefix("crash-r")?;
        let (round, rest) = rest.split_once("-t")?;
        let (task, n) = rest.split_once("-n")?;
        Some(Self {
            round: round.parse().ok()?,
            task: task.parse().ok()?,
            n: n.parse().ok()?,
        })
    }

    /// The record the child stores under this id: every field set, tokens
    /// derived from the id, created at [`T0`] (both sides run a manual clock
    /// at `T0`, so nothing expires).
    pub fn session(self) -> StoredSession {
        let id = self.session_id();
        full_session(&id, &format!("at-{id}"), &format!("rt-{id}"), T0)
    }

    /// The line the child prints once the store call returned `Ok`.
    pub fn ack_line(self) -> String {
        format!("acked {} {} {}", self.round, self.task, self.n)
    }

    /// Parses [`ack_line`](Self::ack_line)'s form (without the newline).
    pub fn parse_ack_line(line: &str) -> Option<Self> {
        let mut words = line.strip_prefix("acked ")?.split(' ');
        let id = Self {
            round: words.next()?.parse().ok()?,
            task: words.next()?.parse().ok()?,
            n: words.next()?.parse().ok()?,
        };
        words.next().is_none().then_some(id)
    }
}

/// Which store the child opens.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// An SQLite file at this path.
    Sqlite(String),
    /// A PostgreSQL database, as a libpq key-value string (which may hold the
    /// password of `TOKENSTORE_PG_URL`: it goes to the child in its
    /// environment, never on its command line, and `Debug` omits it).
    Postgres(String),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// Everything the child needs, passed in [`CHILD_VAR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// The store.
    pub target: Target,
    /// When a write call returns.
    pub ack: Ack,
    /// The round, the first part of every id the child writes.
    pub round: u32,
    /// The buffer's settings (retries and backoff stay at their defaults).
    pub config: BufferConfig,
}

impl ChildSpec {
    /// The spec as the JSON text put in [`CHILD_VAR`].
    pub fn encode(&self) -> String {
        let (backend, target) = match &self.target {
            Target::Sqlite(path) => ("sqlite", path),
            Target::Postgres(conninfo) => ("postgres", conninfo),
        };
        let ack = match self.ack {
            Ack::Durable => "durable",
            Ack::Queued => "queued",
        };
        serde_json::json!({
            "backend": backend,
            "target": target,
            "ack": ack,
            "round": self.round,
            "max_batch_size": self.config.max_batch_size,
            "max_delay_us": self.config.max_delay.as_micros() as u64,
            "max_pending": self.config.max_pending,
        })
        .to_string()
    }

    /// Parses [`encode`](Self::encode)'s text; the error says which field is wrong.
    pub fn decode(text: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{CHILD_VAR} is not JSON: {e}"))?;
        let text = |k: &str| v[k].as_str().ok_or_else(|| format!("{CHILD_VAR}: no {k}"));
        let number = |k: &str| v[k].as_u64().ok_or_else(|| format!("{CHILD_VAR}: no {k}"));
        let target = match text("backend")? {
            "sqlite" => Target::Sqlite(text("target")?.to_owned()),
            "postgres" => Target::Postgres(text("target")?.to_owned()),
            other => return Err(format!("{CHILD_VAR}: unknown backend {other:?}")),
        };
        let ack = match text("ack")? {
            "durable" => Ack::Durable,
            "queued" => Ack::Queued,
            other => return Err(format!("{CHILD_VAR}: unknown ack {other:?}")),
        };
        let config = BufferConfig {
            max_batch_size: number("max_batch_size")? as usize,
            max_delay: Duration::from_micros(number("max_delay_us")?),
            max_pending: number("max_pending")? as usize,
            ..BufferConfig::default()
        };
        let round = u32::try_from(number("round")?).map_err(|_| "round too large".to_owned())?;
        Ok(Self {
            target,
            ack,
            round,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_lines_round_trip() {
        let id = CrashId {
            round: 3,
            task: 15,
            n: 1234,
        };
        assert_eq!(CrashId::parse_session_id(&id.session_id()), Some(id));
        assert_eq!(CrashId::parse_ack_line(&id.ack_line()), Some(id));
        assert_eq!(CrashId::parse_ack_line("acked 1 2"), None);
        assert_eq!(CrashId::parse_ack_line("acked 1 2 3 4"), None);
        assert_eq!(CrashId::parse_session_id("session-1"), None);
        assert_eq!(id.session().session_id, id.session_id());
    }

    #[test]
    fn a_spec_round_trips() {
        let spec = ChildSpec {
            target: Target::Postgres("host='/tmp/x y' dbname='d'".to_owned()),
            ack: Ack::Queued,
            round: 7,
            config: BufferConfig {
                max_batch_size: 32,
                max_delay: Duration::from_micros(1500),
                max_pending: 128,
                ..BufferConfig::default()
            },
        };
        assert!(!format!("{spec:?}").contains("/tmp/x y"), "{spec:?}");
        assert_eq!(ChildSpec::decode(&spec.encode()), Ok(spec));
        assert!(ChildSpec::decode("{}").is_err());
    }
}
