//! A real crash of the SQLite backend (issue 11): a child process writes
//! sessions through `BufferedTokenStore` from 16 tasks and prints each id once
//! its call returned; it is killed with SIGKILL at a seeded random moment, and
//! the file is checked (`PRAGMA integrity_check`) and reopened bare. One file
//! serves every kill of a test, so each child starts on what the last crash
//! left. The harness and the checks are `tokenstore_tests::crash` (`suite`).
//!
//! `TOKENSTORE_CRASH_KILLS=<n>` for more kills (default 20);
//! `TOKENSTORE_CRASH_SEED=<seed>` replays a run's kill points.

use tokenstore_tests::crash::{Backend, suite};

const CHILD: &str = env!("CARGO_BIN_EXE_crash-child");

#[test]
fn durable_writes_survive_sigkill() {
    suite::durable_writes_survive_sigkill(CHILD.as_ref(), Backend::Sqlite);
}

#[test]
fn queued_loss_is_bounded_by_max_pending() {
    suite::queued_loss_is_bounded_by_max_pending(CHILD.as_ref(), Backend::Sqlite);
}
