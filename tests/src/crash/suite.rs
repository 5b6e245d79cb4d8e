//! The two crash tests both backends run (`tests/tests/crash_sqlite.rs`,
//! `tests/tests/crash_postgres.rs`): the configurations and the checks.

use super::{Backend, kills_from_env, run, seed_from_env};
use std::path::Path;
use std::time::Duration;
use tokenstore::Ack;
use tokenstore::buffer::BufferConfig;

/// Durable: group commit of up to 16 writes (one per task).
fn durable_config() -> BufferConfig {
    BufferConfig {
        max_batch_size: 64,
        max_delay: Duration::from_millis(1),
        max_pending: 1_024,
        ..BufferConfig::default()
    }
}

/// Queued: 16 writers fill 128 slots far faster than batches of 32 commit,
/// so the buffer is saturated when the kill comes.
fn queued_config() -> BufferConfig {
    BufferConfig {
        max_batch_size: 32,
        max_delay: Duration::from_millis(2),
        max_pending: 128,
        ..BufferConfig::default()
    }
}

/// `Ack::Durable` over `backend`, killed at random: no printed id is lost.
///
/// # Panics
///
/// When an acknowledged write is lost, or no child acknowledged any.
pub fn durable_writes_survive_sigkill(child: &Path, backend: Backend) {
    let report = run(
        child,
        backend,
        Ack::Durable,
        &durable_config(),
        kills_from_env(),
        seed_from_env(),
    );
    eprintln!("{report}");
    assert_eq!(report.lost(), 0, "{report}");
    assert!(
        report.printed() > 0,
        "no child acknowledged a write: {report}"
    );
}

/// `Ack::Queued` over `backend`, killed at random: no kill loses more than
/// `max_pending` printed ids, and some kill loses some.
///
/// # Panics
///
/// When a kill lost more than `max_pending`, or none lost any.
pub fn queued_loss_is_bounded_by_max_pending(child: &Path, backend: Backend) {
    let config = queued_config();
    let report = run(
        child,
        backend,
        Ack::Queued,
        &config,
        kills_from_env(),
        seed_from_env(),
    );
    eprintln!("{report}");
    assert!(report.max_lost() <= config.max_pending, "{report}");
    assert!(
        report.max_lost() > 0,
        "no kill caught a printed write still in the buffer: the measurement measured nothing: {report}"
    );
}
