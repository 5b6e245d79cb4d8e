//! Two OS processes on one PostgreSQL database (issue 12): the parent
//! revokes, the child's cache (following the database's invalidation feed)
//! stops serving within the bound, also when the child was stopped with
//! `SIGSTOP` past the bound.

use tokenstore_tests::replica::{check_across_processes, open_postgres};

#[test]
fn a_child_process_stops_serving_revoked_sessions_within_the_bound() {
    let db = tokenstore_pgtest::shared().database();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let writer = open_postgres(&db.conninfo()).await.unwrap();
        let target = format!("postgres:{}", db.conninfo());
        check_across_processes(
            env!("CARGO_BIN_EXE_replica-child").as_ref(),
            &writer,
            &target,
        )
        .await;
    });
}
