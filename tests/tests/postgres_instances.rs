//! Two `PostgresTokenStore`s on one database, as two replicas of a server
//! would use it: one-time operations stay one-time across both, and
//! concurrent rotating session stores never deadlock, never surface a raw
//! conflict, and leave no two sessions sharing a key.
//!
//! Each test runs on tokio and on smol (`*_tokio` / `*_smol`), with 64
//! concurrent callers alternating between the stores. Every test is bounded:
//! a fixed number of rounds, and a deadline on the whole body.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::{Clock, ManualClock, TokenHash, TokenStore};
use tokenstore_pgtest::TestDatabase;
use tokenstore_postgres::PostgresTokenStore;
use tokenstore_tests::sample::{full_code, full_session, full_state};
use tokenstore_tests::{Runtime, Smol, T0, Tokio};

/// Concurrent callers per race.
const CALLERS: usize = 64;
/// Races per one-time test, each on a fresh record.
const ROUNDS: usize = 4;
/// The most any test body may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// Two stores on one fresh database, sharing a clock; pools of 8 each, so the
/// 64 callers really contend.
struct Pair {
    stores: [Arc<PostgresTokenStore>; 2],
    clock: ManualClock,
    _db: TestDatabase,
}

impl Pair {
    async fn new() -> Self {
        let db = tokenstore_pgtest::shared().database();
        let clock = ManualClock::new(T0);
        let open = || async {
            let store = PostgresTokenStore::builder_with_config(db.config())
                .encryption_key(tokenstore_tests::TEST_KEY)
                .pool_size(8)
                .clock(clock.clone())
                .open()
                .await
                .expect("open");
            Arc::new(store)
        };
        let stores = [open().await, open().await];
        Self {
            stores,
            clock,
            _db: db,
        }
    }

    fn store(&self, i: usize) -> Arc<PostgresTokenStore> {
        Arc::clone(&self.stores[i % 2])
    }
}

/// Runs `body` on runtime `R`, failing if it takes longer than [`DEADLINE`].
fn bounded<R: Runtime, F: Future<Output = ()> + Send + 'static>(body: F) {
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        R::block_on(body);
        let _ = done.send(());
    });
    match finished.recv_timeout(DEADLINE) {
        Ok(()) => worker.join().expect("body"),
        Err(_) if worker.is_finished() => {
            // The body panicked: re-raise its panic.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(_) => panic!("the test did not finish within {DEADLINE:?} (deadlock?)"),
    }
}

/// Spawns `CALLERS` tasks `task(store_i, i)` alternating the two stores.
async fn race<R, T, Fut>(
    pair: &Pair,
    task: impl Fn(Arc<PostgresTokenStore>, usize) -> Fut,
) -> Vec<T>
where
    R: Runtime,
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| R::spawn(task(pair.store(i), i)))
        .collect();
    let mut out = Vec::with_capacity(CALLERS);
    for t in tasks {
        out.push(t.await);
    }
    out
}

async fn try_delete_exactly_once<R: Runtime>() {
    let pair = Pair::new().await;
    for round in 0..ROUNDS {
        let code = full_code("code-shared", "sess-1", pair.clock.now());
        pair.stores[round % 2]
            .store_auth_code(Arc::new(code))
            .await
            .unwrap();
        let won = race::<R, _, _>(&pair, |store, _| async move {
            store.try_delete_auth_code("code-shared").await.unwrap()
        })
        .await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}");
        for store in &pair.stores {
            assert!(store.load_auth_code("code-shared").await.unwrap().is_none());
        }
    }
}

async fn consume_state_exactly_once<R: Runtime>() {
    let pair = Pair::new().await;
    for round in 0..ROUNDS {
        let state = full_state("state-shared", pair.clock.now());
        let expected = Arc::new(state);
        pair.stores[round % 2]
            .store_state(Arc::clone(&expected))
            .await
            .unwrap();
        let got = race::<R, _, _>(&pair, |store, _| async move {
            store.consume_state("state-shared").await.unwrap()
        })
        .await;
        let winners: Vec<_> = got.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(winners[0], expected, "round {round}: the record itself");
    }
}

/// The keys of call `i`: ids, access and refresh tokens drawn from small,
/// differently sized pools, so concurrent calls overlap on every kind of key
/// and in chains (a call can share its id with one session and its refresh
/// token with another).
fn keys(i: usize) -> (String, String, String) {
    (
        format!("sess-{}", i % 7),
        format!("access-{}", i % 11),
        format!("refresh-{}", i % 5),
    )
}

async fn rotations_never_deadlock_or_share_keys<R: Runtime>() {
    let pair = Pair::new().await;
    let now = pair.clock.now();
    let results = race::<R, _, _>(&pair, move |store, i| async move {
        let (id, access, refresh) = keys(i);
        let session = full_session(&id, &access, &refresh, now);
        store.store_session(Arc::new(session)).await
    })
    .await;
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "call {i} failed: {r:?}");
    }
    let contents = pair.stores[0].contents().await.unwrap();
    assert!(!contents.sessions.is_empty());
    let mut seen = HashSet::new();
    for s in &contents.sessions {
        assert!(seen.insert(format!("id:{}", s.session_id)), "shared id");
        assert!(
            seen.insert(format!("a:{:?}", s.access_hash().to_hex())),
            "shared access"
        );
        let refresh = s.refresh_hash().map(|h| TokenHash::to_hex(&h));
        assert!(seen.insert(format!("r:{refresh:?}")), "shared refresh");
        // Every survivor is one of the written sessions, whole.
        let i = (0..CALLERS)
            .find(|&i| keys(i).0 == s.session_id && keys(i).1 == s.access_token.expose())
            .expect("a written session");
        let (id, access, refresh) = keys(i);
        assert_eq!(**s, full_session(&id, &access, &refresh, now));
    }
    // Every key resolves, on both stores, to the one live session holding it.
    for store in &pair.stores {
        for i in 0..CALLERS {
            let (id, access, refresh) = keys(i);
            let by_id = store.load_session_by_id(&id).await.unwrap();
            assert!(by_id.is_none_or(|s| s.session_id == id));
            let by_access = store.load_session_by_token(&access).await.unwrap();
            assert!(by_access.is_none_or(|s| s.access_token.expose() == access));
            let by_refresh = store.load_session_by_refresh_token(&refresh).await.unwrap();
            assert!(by_refresh.is_none_or(|s| {
                s.refresh_token.as_ref().map(|t| t.expose()) == Some(refresh.as_str())
            }));
        }
    }
}

/// A write on one store is seen by a read on the other at once (no caching
/// in the backend).
#[allow(clippy::extra_unused_type_parameters)] // one signature for the macro
async fn writes_are_seen_by_the_other_store<R: Runtime>() {
    let pair = Pair::new().await;
    let now = pair.clock.now();
    let [a, b] = &pair.stores;
    a.store_session(Arc::new(full_session("s", "a1", "r1", now)))
        .await
        .unwrap();
    assert!(b.load_session_by_token("a1").await.unwrap().is_some());
    b.store_session(Arc::new(full_session("s", "a2", "r2", now)))
        .await
        .unwrap();
    assert!(a.load_session_by_token("a1").await.unwrap().is_none());
    assert!(
        a.load_session_by_refresh_token("r1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(a.load_session_by_token("a2").await.unwrap().is_some());
    a.delete_session_by_id("s").await.unwrap();
    assert!(
        b.load_session_by_refresh_token("r2")
            .await
            .unwrap()
            .is_none()
    );
}

macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod tokio_runtime {
            $(#[test] fn $name() { super::bounded::<super::Tokio, _>(super::$name::<super::Tokio>()); })*
        }
        mod smol_runtime {
            $(#[test] fn $name() { super::bounded::<super::Smol, _>(super::$name::<super::Smol>()); })*
        }
    };
}

on_both_runtimes!(
    try_delete_exactly_once,
    consume_state_exactly_once,
    rotations_never_deadlock_or_share_keys,
    writes_are_seen_by_the_other_store,
);
