//! Two OS processes on one SQLite file (issue 12): the parent revokes, the
//! child's cache (following the file's invalidation log) stops serving within
//! the bound, also when the child was stopped with `SIGSTOP` past the bound.

use tokenstore_tests::replica::{check_across_processes, open_sqlite};

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
        let target = format!("sqlite:{}", path.display());
        check_across_processes(
            env!("CARGO_BIN_EXE_replica-child").as_ref(),
            &writer,
            &target,
        )
        .await;
    });
}
