//! Two OS processes on one SQLite file (issue 12): the parent revokes, the
//! child's cache (following the file's invalidation log) stops serving within
//! the bound, also when the child was stopped with `SIGSTOP` past the bound.

use std::time::Duration;
use tokenstore_tests::replica::{Replica, open_sqlite, revoke_across};

const B: Duration = Duration::from_millis(200);

#[test]
fn a_child_process_stops_serving_revoked_sessions_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let writer = open_sqlite(&path).await.unwrap();
        let mut replica = Replica::start(
            env!("CARGO_BIN_EXE_replica-child").as_ref(),
            B,
            &format!("sqlite:{}", path.display()),
        )
        .unwrap();
        let seen = revoke_across(&writer, &mut replica, 12, B, Duration::from_secs(10))
            .await
            .unwrap();
        eprintln!(
            "{} revocations ({} while stopped), stale serves {}, max {:?}",
            seen.revocations,
            seen.during_pause,
            seen.stale_serves,
            seen.latencies.iter().max()
        );
        assert_eq!(seen.revocations, 12);
        assert_eq!(seen.during_pause, 4);
        assert_eq!(seen.stale_serves, 0);
        replica.stop().unwrap();
    });
}
