//! A real crash of the PostgreSQL backend (issue 11): a child process writes
//! sessions through `BufferedTokenStore` from 16 tasks and prints each id once
//! its call returned; it is killed with SIGKILL at a seeded random moment, and
//! the file is checked (`PRAGMA integrity_check`) and reopened bare. One file
//! serves every kill of a test, so each child starts on what the last crash
//! left. The harness is `tokenstore_tests::crash`.
//!
//! `TOKENSTORE_CRASH_KILLS=<n>` for more kills (default 20);
//! `TOKENSTORE_CRASH_SEED=<seed>` replays a run's kill points.

use std::time::Duration;
use tokenstore::Ack;
use tokenstore::buffer::BufferConfig;
use tokenstore_tests::crash::{self, Backend};

const CHILD: &str = env!("CARGO_BIN_EXE_crash-child");

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

#[test]
fn durable_writes_survive_sigkill() {
    let report = crash::run(
        CHILD.as_ref(),
        Backend::Postgres,
        Ack::Durable,
        &durable_config(),
        crash::kills_from_env(),
        crash::seed_from_env(),
    );
    eprintln!("{report}");
    assert_eq!(report.lost(), 0, "{report}");
    assert!(
        report.printed() > 0,
        "no child acknowledged a write: {report}"
    );
}

#[test]
fn queued_loss_is_bounded_by_max_pending() {
    let config = queued_config();
    let report = crash::run(
        CHILD.as_ref(),
        Backend::Postgres,
        Ack::Queued,
        &config,
        crash::kills_from_env(),
        crash::seed_from_env(),
    );
    eprintln!("{report}");
    assert!(report.max_lost() <= config.max_pending, "{report}");
    assert!(
        report.max_lost() > 0,
        "no kill caught a printed write still in the buffer: the measurement measured nothing: {report}"
    );
}
