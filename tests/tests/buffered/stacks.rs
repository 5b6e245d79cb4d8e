//! Capabilities through stacks of wrappers over SQLite: whichever order the
//! cache and the buffer are stacked in, a flush of mixed writes is one SQLite
//! transaction, and bulk and batch calls through the cache leave no stale
//! read.

use crate::common::{buffer, issue_all, quiet_config};
use std::sync::Arc;
use tempfile::TempDir;
use tokenstore::cache::CacheConfig;
use tokenstore::{Ack, CachingTokenStore, TokenStore};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{
    Clock, Secret, StoreError, StoredSession, SystemClock, Timestamp, TokenHash,
};
use tokenstore_sqlite::SqliteTokenStore;
use tokenstore_tests::sample::{self, HOUR};
use tokenstore_tests::{Runtime, TEST_KEY};

async fn open() -> (TempDir, Arc<SqliteTokenStore>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteTokenStore::builder(dir.path().join("tokens.sqlite"))
        .encryption_key(TEST_KEY)
        .open()
        .await
        .expect("open the SQLite store");
    (dir, Arc::new(store))
}

fn cache<S: TokenStore>(inner: S) -> CachingTokenStore<S> {
    CachingTokenStore::with_clock(inner, CacheConfig::default(), SystemClock)
}

/// Writes of every kind: stores, a rotation, and deletes.
fn mixed(now: Timestamp) -> Vec<WriteOp> {
    let session = |id: &str, at: &str, rt: &str| {
        WriteOp::StoreSession(Arc::new(sample::full_session(id, at, rt, now)))
    };
    vec![
        WriteOp::StoreState(Arc::new(sample::full_state("st-1", now))),
        WriteOp::StoreAuthCode(Arc::new(sample::full_code("ac-1", "sid-1", now))),
        WriteOp::StoreAuthCode(Arc::new(sample::full_code("ac-2", "sid-1", now))),
        session("sid-1", "at-1", "rt-1"),
        session("sid-2", "at-2", "rt-2"),
        // Rotates sid-1's tokens.
        session("sid-1", "at-1b", "rt-1b"),
        WriteOp::StoreClient(Arc::new(sample::full_client("client-1", now))),
        WriteOp::StoreClient(Arc::new(sample::full_client("client-2", now))),
        WriteOp::DeleteAuthCode("ac-2".into()),
        WriteOp::DeleteSessionByToken(Secret::new("at-2")),
        WriteOp::DeleteClient("client-2".into()),
    ]
}

/// What the store holds after `mixed` (checked on the delegate).
async fn check_mixed(sqlite: &SqliteTokenStore) {
    let session = sqlite.load_session_by_id("sid-1").await.expect("load");
    assert_eq!(
        session.map(|s| s.access_hash()),
        Some(TokenHash::of("at-1b"))
    );
    assert!(
        sqlite
            .load_session_by_token("at-1")
            .await
            .expect("load")
            .is_none()
    );
    assert!(
        sqlite
            .load_session_by_token("at-2")
            .await
            .expect("load")
            .is_none()
    );
    assert!(sqlite.load_auth_code("ac-1").await.expect("load").is_some());
    assert!(sqlite.load_auth_code("ac-2").await.expect("load").is_none());
    let clients = sqlite.list_clients().await.expect("list");
    let ids: Vec<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(ids, ["client-1"]);
}

/// Issues the mixed writes through `stack`, checks that nothing committed
/// before `flush` and that `flush` took exactly one commit, then checks what
/// the store holds.
async fn one_commit<S: TokenStore, F: std::future::Future<Output = Result<(), StoreError>>>(
    sqlite: &SqliteTokenStore,
    stack: &S,
    flush: impl FnOnce() -> F,
) {
    assert!(stack.batch_writer().is_some(), "the stack lost the batch");
    assert!(stack.bulk().is_some(), "the stack lost bulk");
    let before = sqlite.stats().commits;
    issue_all(stack, &mixed(SystemClock.now())).await;
    assert_eq!(
        sqlite.stats().commits,
        before,
        "a write committed before the flush"
    );
    flush().await.expect("flush");
    assert_eq!(
        sqlite.stats().commits - before,
        1,
        "the flush took one commit"
    );
    check_mixed(sqlite).await;
    stack.close().await.expect("close");
}

/// `BufferedTokenStore<CachingTokenStore<SqliteTokenStore>>`: the cache
/// forwards the atomic batch, so the buffer's flush is one commit.
pub(crate) async fn buffer_over_cache_flushes_in_one_commit<R: Runtime>() {
    let (_dir, sqlite) = open().await;
    let stack = buffer(
        cache(sqlite.clone()),
        quiet_config(),
        Ack::Queued,
        SystemClock,
    );
    one_commit(&sqlite, &stack, || stack.flush()).await;
}

/// `CachingTokenStore<BufferedTokenStore<SqliteTokenStore>>`: the buffer under
/// the cache flushes in one commit, and the stack advertises the delegate's
/// capabilities.
pub(crate) async fn cache_over_buffer_flushes_in_one_commit<R: Runtime>() {
    let (_dir, sqlite) = open().await;
    let stack = cache(buffer(
        sqlite.clone(),
        quiet_config(),
        Ack::Queued,
        SystemClock,
    ));
    one_commit(&sqlite, &stack, || stack.inner().flush()).await;
}

/// Bulk and batch calls made through the cache evict every key they can
/// affect: every read afterwards answers what the delegate holds, for keys
/// cached positive and negative before the call.
pub(crate) async fn bulk_and_batch_through_the_cache_leave_no_stale_read<R: Runtime>() {
    let (_dir, sqlite) = open().await;
    let stack = cache(sqlite.clone());
    let now = SystemClock.now();
    issue_all(&stack, &mixed(now)).await;
    // Cache what the reads below will ask again: positives and negatives.
    let warm = || async {
        let by_token = stack.load_session_by_token("at-1b").await.expect("load");
        let by_id = stack.load_session_by_id("sid-1").await.expect("load");
        let by_refresh = stack
            .load_session_by_refresh_token("rt-1b")
            .await
            .expect("load");
        let fresh = stack.load_session_by_token("at-new").await.expect("load");
        let code = stack.load_auth_code("ac-1").await.expect("load");
        let client = stack.load_client("client-1").await.expect("load");
        (by_token, by_id, by_refresh, fresh, code, client)
    };
    let before = warm().await;
    assert!(before.0.is_some() && before.1.is_some() && before.2.is_some());
    assert!(before.3.is_none(), "at-new is cached as absent");
    assert!(stack.metrics().sessions.fills > 0);

    // A bulk store rotates sid-1 and creates the session of at-new.
    let bulk = stack.bulk().expect("bulk through the cache");
    let rotated = sample::full_session("sid-1", "at-1c", "rt-1c", now);
    let created = sample::full_session("sid-3", "at-new", "rt-3", now);
    let sessions: Vec<Arc<StoredSession>> = vec![Arc::new(rotated), Arc::new(created)];
    bulk.bulk_store_sessions(sessions)
        .await
        .expect("bulk store");
    let after = warm().await;
    assert!(after.0.is_none(), "the rotated-away token still validates");
    assert_eq!(
        after.1.map(|s| s.access_hash()),
        Some(TokenHash::of("at-1c"))
    );
    assert!(
        after.2.is_none(),
        "the rotated-away refresh token still loads"
    );
    assert_eq!(
        after.3.map(|s| s.session_id.clone()).as_deref(),
        Some("sid-3")
    );

    // A bulk delete by hash of a session now cached by all three keys.
    assert!(
        stack
            .load_session_by_id("sid-3")
            .await
            .expect("load")
            .is_some()
    );
    assert!(
        stack
            .load_session_by_refresh_token("rt-3")
            .await
            .expect("load")
            .is_some()
    );
    let deleted = bulk
        .bulk_delete_sessions_by_hash(vec![TokenHash::of("at-new")])
        .await
        .expect("bulk delete");
    assert_eq!(deleted, 1);
    assert!(
        stack
            .load_session_by_token("at-new")
            .await
            .expect("load")
            .is_none()
    );
    assert!(
        stack
            .load_session_by_id("sid-3")
            .await
            .expect("load")
            .is_none()
    );
    assert!(
        stack
            .load_session_by_refresh_token("rt-3")
            .await
            .expect("load")
            .is_none()
    );

    // An atomic batch: the cached code and client go, sid-1 goes by id, and a
    // client cached as absent appears.
    assert!(stack.load_client("client-9").await.expect("load").is_none());
    assert!(
        stack
            .load_session_by_token("at-1c")
            .await
            .expect("load")
            .is_some()
    );
    let batch = stack.batch_writer().expect("batch through the cache");
    batch
        .apply_batch(vec![
            WriteOp::DeleteAuthCode("ac-1".into()),
            WriteOp::DeleteClient("client-1".into()),
            WriteOp::StoreClient(Arc::new(sample::full_client("client-9", now + HOUR))),
            WriteOp::DeleteSessionById("sid-1".into()),
        ])
        .await
        .expect("batch");
    assert!(stack.load_auth_code("ac-1").await.expect("load").is_none());
    assert!(stack.load_client("client-1").await.expect("load").is_none());
    assert!(stack.load_client("client-9").await.expect("load").is_some());
    assert!(
        stack
            .load_session_by_token("at-1c")
            .await
            .expect("load")
            .is_none()
    );
    assert!(
        stack
            .load_session_by_refresh_token("rt-1c")
            .await
            .expect("load")
            .is_none()
    );
    // And every answer is the delegate's.
    for token in ["at-1", "at-1b", "at-1c", "at-new"] {
        let cached = stack.load_session_by_token(token).await.expect("load");
        let direct = sqlite.load_session_by_token(token).await.expect("load");
        assert_eq!(cached.is_some(), direct.is_some(), "{token}");
    }
    stack.close().await.expect("close");
}
