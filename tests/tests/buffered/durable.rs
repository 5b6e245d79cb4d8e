//! `Ack::Durable` over SQLite: a returned write is committed (another
//! connection sees it), and concurrent writers share commits.

use crate::common::{buffer, issue};
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;
use tokenstore::buffer::BufferConfig;
use tokenstore::{Ack, TokenStore};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{Clock, Secret, SystemClock};
use tokenstore_sqlite::SqliteTokenStore;
use tokenstore_tests::compare::{assert_client_eq, assert_code_eq, assert_session_eq};
use tokenstore_tests::sample::{self, MINUTE};
use tokenstore_tests::{Runtime, TEST_KEY};

async fn open(path: &Path) -> SqliteTokenStore {
    SqliteTokenStore::builder(path)
        .encryption_key(TEST_KEY)
        .open()
        .await
        .expect("open the SQLite store")
}

fn temp() -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("tokens.sqlite");
    (dir, path)
}

/// Every durable write, once it returns, is visible from a second connection
/// opened independently on the same file (stores and deletes of every kind).
pub(crate) async fn visible_from_second_connection<R: Runtime>() {
    let (_dir, path) = temp();
    let first = open(&path).await;
    let second = open(&path).await;
    let store = buffer(first, BufferConfig::default(), Ack::Durable, SystemClock);
    let now = SystemClock.now();

    for i in 0..6 {
        let session = Arc::new(sample::full_session(
            &format!("d-sid-{i}"),
            &format!("d-access-{i}"),
            &format!("d-refresh-{i}"),
            now,
        ));
        issue(&store, WriteOp::StoreSession(session.clone()))
            .await
            .expect("durable store_session");
        let seen = second
            .load_session_by_token(&format!("d-access-{i}"))
            .await
            .expect("read")
            .expect("a durable session is committed");
        assert_session_eq(&seen, &session);

        let code = Arc::new(sample::full_code(&format!("d-code-{i}"), "d-sid-0", now));
        issue(&store, WriteOp::StoreAuthCode(code.clone()))
            .await
            .expect("durable store_auth_code");
        let seen = second
            .load_auth_code(&code.code)
            .await
            .expect("read")
            .expect("a durable code is committed");
        assert_code_eq(&seen, &code);

        let client = Arc::new(sample::full_client(&format!("d-client-{i}"), now));
        issue(&store, WriteOp::StoreClient(client.clone()))
            .await
            .expect("durable store_client");
        let seen = second
            .load_client(&client.client_id)
            .await
            .expect("read")
            .expect("a durable client is committed");
        assert_client_eq(&seen, &client);

        let state = Arc::new(sample::state(&format!("d-state-{i}"), now + MINUTE, now));
        issue(&store, WriteOp::StoreState(state.clone()))
            .await
            .expect("durable store_state");
        let states = second.contents().await.expect("contents").states;
        assert!(states.iter().any(|s| s.state == state.state));

        if i > 0 {
            let j = i - 1;
            issue(
                &store,
                WriteOp::DeleteSessionByToken(Secret::new(format!("d-access-{j}"))),
            )
            .await
            .expect("durable delete_session_by_token");
            let gone = second
                .load_session_by_token(&format!("d-access-{j}"))
                .await
                .expect("read");
            assert!(gone.is_none(), "a durable delete is committed");
            issue(&store, WriteOp::DeleteAuthCode(format!("d-code-{j}")))
                .await
                .expect("durable delete_auth_code");
            assert!(
                second
                    .load_auth_code(&format!("d-code-{j}"))
                    .await
                    .expect("read")
                    .is_none()
            );
            issue(&store, WriteOp::DeleteClient(format!("d-client-{j}")))
                .await
                .expect("durable delete_client");
            assert!(
                second
                    .load_client(&format!("d-client-{j}"))
                    .await
                    .expect("read")
                    .is_none()
            );
        }
    }
    // Every write was acknowledged only once applied.
    assert_eq!(store.pending(), 0);
    store.close().await.expect("close");
    second.close().await.expect("close");
}

/// 64 concurrent durable writers (distinct sessions) all complete, every
/// session is committed, and they shared far fewer than 64 commits.
pub(crate) async fn group_commit<R: Runtime>() {
    const WRITERS: usize = 64;
    let (_dir, path) = temp();
    let store = Arc::new(buffer(
        open(&path).await,
        BufferConfig::default(),
        Ack::Durable,
        SystemClock,
    ));
    let now = SystemClock.now();
    let before = store.inner().stats().commits;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = store.clone();
            R::spawn(async move {
                let session = sample::live_session(
                    &format!("g-sid-{i}"),
                    &format!("g-access-{i}"),
                    Some(&format!("g-refresh-{i}")),
                    now,
                );
                store.store_session(Arc::new(session)).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        task.await
            .unwrap_or_else(|e| panic!("durable writer {i} failed: {e}"));
    }
    let commits = store.inner().stats().commits - before;
    let batches = store.metrics().applied_batches;
    println!(
        "group_commit: {WRITERS} durable writers, {commits} SQLite commits, {batches} batches"
    );
    assert!(commits >= 1);
    assert!(
        commits < WRITERS as u64,
        "{commits} commits for {WRITERS} writers"
    );

    let second = open(&path).await;
    let held = second.contents().await.expect("contents");
    assert_eq!(held.sessions.len(), WRITERS);
    for i in 0..WRITERS {
        assert!(
            second
                .load_session_by_token(&format!("g-access-{i}"))
                .await
                .expect("read")
                .is_some()
        );
    }
    store.close().await.expect("close");
    second.close().await.expect("close");
}
