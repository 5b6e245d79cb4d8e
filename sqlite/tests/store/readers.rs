//! The reader threads: reads run beside the writer, see every returned write,
//! and hand the deletion of an expired row back to the writer.

use crate::common::{Env, full_client, full_code, full_session};
use futures_lite::future::{block_on, poll_once};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore_core::{StoreError, StoredSession, TokenStore, UserInfo};
use tokenstore_sqlite::SqliteTokenStore;

fn count(env: &Env, table: &str) -> i64 {
    env.raw()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

/// Two readers, and a writer that waits up to 20 s for another connection's
/// lock (which the tests below hold on purpose).
fn patient(env: &Env) -> SqliteTokenStore {
    block_on(
        env.builder()
            .readers(2)
            .busy_timeout(Duration::from_secs(20))
            .open(),
    )
    .expect("open")
}

#[test]
fn reads_are_answered_while_the_writer_waits_for_a_lock() {
    let env = Env::new();
    let store = patient(&env);
    block_on(async {
        store.store_client(full_client(&env, "c1")).await?;
        store.store_session(Arc::new(full_session(&env, 1))).await
    })
    .expect("seed");

    // Another connection holds the write lock: the store's writer blocks in
    // its busy handler until the lock is released (or 20 s pass).
    let raw = env.raw();
    raw.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let mut write = Box::pin(store.store_client(full_client(&env, "c2")));
    assert!(block_on(poll_once(&mut write)).is_none());

    let started = Instant::now();
    block_on(async {
        for _ in 0..20 {
            assert!(store.load_client("c1").await?.is_some());
            assert!(store.load_session_by_token("access-1").await?.is_some());
            assert!(store.load_session_by_id("session-1").await?.is_some());
            assert!(store.load_client("c2").await?.is_none());
            assert_eq!(store.list_clients().await?.len(), 1);
        }
        Ok::<_, StoreError>(())
    })
    .expect("reads beside a blocked writer");
    // Had the reads queued behind the write, they would have waited for its
    // busy timeout to fail it.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        block_on(poll_once(&mut write)).is_none(),
        "the write is still waiting for the lock"
    );

    raw.execute_batch("ROLLBACK").expect("unlock");
    block_on(write).expect("the write, once the lock is free");
    let seen = block_on(store.load_client("c2")).expect("load");
    assert!(seen.is_some(), "a read after the write returned sees it");
    block_on(store.close()).expect("close");
}

#[test]
fn every_read_sees_the_writes_returned_before_it() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 60;
    let env = Env::new();
    let store = Arc::new(block_on(env.builder().readers(4).open()).expect("open"));
    let now = env.now();
    let expires = env.later(3600);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                block_on(async {
                    for r in 0..ROUNDS {
                        let id = format!("s-{t}-{r}");
                        let user = UserInfo::new("github", format!("{t}"), "u");
                        let mut first =
                            StoredSession::new(&id, user.clone(), format!("a-{id}"), expires, now);
                        first.refresh_token = Some(format!("r-{id}").into());
                        first.refresh_expires_at = Some(expires);
                        store.store_session(Arc::new(first)).await?;
                        let found = store.load_session_by_token(&format!("a-{id}")).await?;
                        assert_eq!(found.map(|s| s.session_id.clone()), Some(id.clone()));
                        // Rotation: the old tokens stop working at once.
                        let rotated =
                            StoredSession::new(&id, user, format!("b-{id}"), expires, now);
                        store.store_session(Arc::new(rotated)).await?;
                        assert!(
                            store
                                .load_session_by_token(&format!("a-{id}"))
                                .await?
                                .is_none()
                        );
                        assert!(
                            store
                                .load_session_by_refresh_token(&format!("r-{id}"))
                                .await?
                                .is_none()
                        );
                        let found = store.load_session_by_token(&format!("b-{id}")).await?;
                        assert_eq!(found.map(|s| s.session_id.clone()), Some(id.clone()));
                        store.delete_session_by_id(&id).await?;
                        assert!(store.load_session_by_id(&id).await?.is_none());
                    }
                    Ok::<_, StoreError>(())
                })
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no panic").expect("calls");
    }
    assert_eq!(count(&env, "sessions"), 0);
    block_on(store.close()).expect("close");
}

#[test]
fn an_expired_row_a_reader_finds_is_deleted_by_the_writer() {
    let env = Env::new();
    let store = block_on(env.builder().readers(2).open()).expect("open");
    let mut session = full_session(&env, 1);
    session.refresh_token = None;
    session.refresh_expires_at = None;
    session.access_expires_at = Some(env.later(60));
    block_on(async {
        store.store_session(Arc::new(session)).await?;
        store.store_auth_code(full_code(&env, "code-1")).await
    })
    .expect("seed");
    assert_eq!((count(&env, "sessions"), count(&env, "auth_codes")), (1, 1));

    env.clock.advance(Duration::from_secs(3 * 3600));
    block_on(async {
        assert!(store.load_session_by_token("access-1").await?.is_none());
        assert!(store.load_auth_code("code-1").await?.is_none());
        Ok::<_, StoreError>(())
    })
    .expect("loads");
    // Deleted before the loads returned.
    assert_eq!((count(&env, "sessions"), count(&env, "auth_codes")), (0, 0));
    block_on(store.close()).expect("close");
}

#[test]
fn more_than_64_readers_is_refused_and_creates_nothing() {
    let env = Env::new();
    let err = block_on(env.builder().readers(65).open()).expect_err("refused");
    assert!(
        matches!(&err, StoreError::InvalidConfig(m) if m.contains("64")),
        "{err:?}"
    );
    assert!(!env.path().exists());
    let store = block_on(env.builder().readers(64).open()).expect("64 is fine");
    assert_eq!(store.readers(), 64);
    block_on(store.close()).expect("close");
}

#[test]
fn the_default_is_sized_for_the_machine_and_debug_shows_it() {
    let env = Env::new();
    let store = env.open();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(store.readers(), cores.clamp(2, 8));
    assert!(format!("{store:?}").contains(&format!("readers: {}", store.readers())));
    block_on(store.close()).expect("close");
}

#[test]
fn an_in_memory_database_runs_every_read_on_the_writer() {
    let store = block_on(
        SqliteTokenStore::builder(":memory:")
            .allow_plaintext_tokens(true)
            .readers(4)
            .open(),
    )
    .expect("open");
    assert_eq!(store.readers(), 0);
    let env = Env::new();
    block_on(async {
        store.store_client(full_client(&env, "c1")).await?;
        assert!(store.load_client("c1").await?.is_some());
        store.close().await
    })
    .expect("calls");
}

#[test]
fn after_close_reads_fail_closed() {
    let env = Env::new();
    let store = block_on(env.builder().readers(3).open()).expect("open");
    block_on(store.store_client(full_client(&env, "c1"))).expect("store");
    block_on(store.close()).expect("close");
    block_on(store.close()).expect("close twice");
    for result in [
        block_on(store.load_client("c1")).map(|_| ()),
        block_on(store.list_clients()).map(|_| ()),
        block_on(store.load_session_by_token("access-1")).map(|_| ()),
        block_on(store.contents()).map(|_| ()),
    ] {
        assert!(matches!(result, Err(StoreError::Closed)), "{result:?}");
    }
}

/// A reader finds a dead row; before the writer deletes it, another store
/// replaces it with a row that is dead too (same access token, no refresh
/// token). The lookup runs again on the writer, which finds nothing by that
/// refresh token and deletes nothing: the new row stays until cleanup, as on
/// the reference model (a delete by the old row's access hash would take it).
#[test]
fn a_dead_row_replaced_before_the_writer_deletes_it_survives() {
    let env = Env::new();
    let store = patient(&env);
    let user = UserInfo::new("github", "42", "octocat");
    let mut old = StoredSession::new("s", user.clone(), "access", env.later(30), env.now());
    old.refresh_token = Some("refresh".into());
    old.refresh_expires_at = Some(env.later(5));
    let new = StoredSession::new("s", user, "access", env.later(20), env.now());
    block_on(store.store_session(Arc::new(old))).expect("store");
    env.clock.advance(Duration::from_secs(3600));

    // The writer blocks on another connection's lock with the new row queued.
    let raw = env.raw();
    raw.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let mut write = Box::pin(store.store_session(Arc::new(new)));
    assert!(block_on(poll_once(&mut write)).is_none());
    // The lookup's reader finds the old row dead; its writer job queues
    // behind the new row.
    let mut lookup = Box::pin(store.load_session_by_refresh_token("refresh"));
    block_on(async {
        for _ in 0..50 {
            assert!(
                poll_once(&mut lookup).await.is_none(),
                "waits for the writer"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    raw.execute_batch("ROLLBACK").expect("unlock");
    block_on(write).expect("the new row");
    assert!(block_on(lookup).expect("lookup").is_none());
    let contents = block_on(store.contents()).expect("contents");
    assert_eq!(
        contents.sessions.len(),
        1,
        "the new (dead) row is still there"
    );
    let cleaned = block_on(store.cleanup_expired()).expect("cleanup");
    assert_eq!(cleaned.sessions, 1);
    block_on(store.close()).expect("close");
}
