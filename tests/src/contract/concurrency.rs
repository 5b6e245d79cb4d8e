//! Concurrent callers, spawned on the runtime's worker threads: one-time
//! operations stay one-time, and uniqueness holds.

use super::{by_id, by_refresh, by_token};
use crate::compare::assert_state_eq;
use crate::sample::{full_code, full_state, live_session};
use crate::{Factory, Fixture, Runtime, T0};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokenstore_core::TokenStore;

/// How many callers race for one record.
pub const CALLERS: usize = 32;

/// How many times each one-time race is run, on fresh records.
pub const ROUNDS: usize = 8;

/// Spawns `n` tasks running `task(store, i)`, lets them all start at once (each
/// spins, yielding, on a start gate), and returns their outputs in order.
async fn race<F, R, T, Fut>(
    fx: &Fixture<F>,
    n: usize,
    task: fn(Arc<F::Store>, usize) -> Fut,
) -> Vec<T>
where
    F: Factory,
    R: Runtime,
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let gate = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (gate, store) = (gate.clone(), fx.store.clone());
            R::spawn(async move {
                while !gate.load(Ordering::Acquire) {
                    smol::future::yield_now().await;
                }
                task(store, i).await
            })
        })
        .collect();
    gate.store(true, Ordering::Release);
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// 32 concurrent `try_delete_auth_code` calls on one live code: exactly one
/// `true` (in each of [`ROUNDS`] rounds).
pub async fn try_delete_exactly_one_winner<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    for round in 0..ROUNDS {
        let record = full_code("code-race", "sess-1", T0);
        fx.store.store_auth_code(Arc::new(record)).await.unwrap();
        let results = race::<F, R, _, _>(&fx, CALLERS, |store, _| async move {
            store.try_delete_auth_code("code-race").await.unwrap()
        })
        .await;
        let winners = results.iter().filter(|won| **won).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        let after = fx.store.load_auth_code("code-race").await.unwrap();
        assert!(after.is_none(), "round {round}");
    }
}

/// 8 codes, each raced by 8 callers: exactly one winner per code.
pub async fn try_delete_one_winner_per_code<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    for c in 0..8 {
        let record = full_code(&format!("code-{c}"), "sess-1", T0);
        fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    }
    let results = race::<F, R, _, _>(&fx, 64, |store, i| async move {
        let c = i % 8;
        (
            c,
            store
                .try_delete_auth_code(&format!("code-{c}"))
                .await
                .unwrap(),
        )
    })
    .await;
    for c in 0..8 {
        let wins = results
            .iter()
            .filter(|(code, won)| *code == c && *won)
            .count();
        assert_eq!(wins, 1, "code-{c}");
    }
    assert!(fx.contents().await.auth_codes.is_empty());
}

/// 32 concurrent `consume_state` calls on one state: exactly one gets it (in
/// each of [`ROUNDS`] rounds).
pub async fn consume_state_exactly_one_winner<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_state("st-race", T0);
    for round in 0..ROUNDS {
        fx.store
            .store_state(Arc::new(record.clone()))
            .await
            .unwrap();
        let results = race::<F, R, _, _>(&fx, CALLERS, |store, _| async move {
            store.consume_state("st-race").await.unwrap()
        })
        .await;
        let winners: Vec<_> = results.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "round {round}");
        assert_state_eq(&winners[0], &record);
        assert!(fx.contents().await.states.is_empty(), "round {round}");
    }
}

/// 8 tasks each storing 25 distinct sessions: all 200 are stored and load.
pub async fn parallel_stores_all_land<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    race::<F, R, _, _>(&fx, 8, |store, t| async move {
        for j in 0..25 {
            let n = t * 25 + j;
            let s = live_session(
                &format!("sess-{n}"),
                &format!("at-{n}"),
                Some(&format!("rt-{n}")),
                T0,
            );
            store.store_session(Arc::new(s)).await.unwrap();
        }
    })
    .await;
    assert_eq!(fx.contents().await.sessions.len(), 200);
    for n in 0..200 {
        let s = by_refresh(&fx, &format!("rt-{n}")).await.expect("stored");
        assert_eq!(
            (s.session_id.clone(), s.access_token.expose()),
            (format!("sess-{n}"), format!("at-{n}").as_str())
        );
    }
}

/// 16 concurrent rotations of one session id: one session remains, reachable
/// by its own tokens, and no other rotation's tokens load.
pub async fn concurrent_rotations_leave_one<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    race::<F, R, _, _>(&fx, 16, |store, i| async move {
        let s = live_session("sess-1", &format!("at-{i}"), Some(&format!("rt-{i}")), T0);
        store.store_session(Arc::new(s)).await.unwrap();
    })
    .await;
    let contents = fx.contents().await;
    assert_eq!(contents.sessions.len(), 1);
    let winner = by_id(&fx, "sess-1").await.expect("one rotation won");
    let access = winner.access_token.expose().to_owned();
    let refresh = winner
        .refresh_token
        .as_ref()
        .expect("refresh")
        .expose()
        .to_owned();
    assert_eq!(access.strip_prefix("at-"), refresh.strip_prefix("rt-"));
    for i in 0..16 {
        let (a, r) = (format!("at-{i}"), format!("rt-{i}"));
        assert_eq!(by_token(&fx, &a).await.is_some(), a == access, "{a}");
        assert_eq!(by_refresh(&fx, &r).await.is_some(), r == refresh, "{r}");
    }
}

/// Readers racing writers of other sessions always see their own session.
pub async fn reads_unaffected_by_other_writes<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = live_session("sess-stable", "at-stable", Some("rt-stable"), T0);
    super::put(&fx, &s).await;
    let results = race::<F, R, _, _>(&fx, 16, |store, i| async move {
        if i % 2 == 0 {
            for j in 0..10 {
                let n = format!("{i}-{j}");
                let s = live_session(&format!("sess-{n}"), &format!("at-{n}"), None, T0);
                store.store_session(Arc::new(s)).await.unwrap();
                store
                    .delete_session_by_id(&format!("sess-{n}"))
                    .await
                    .unwrap();
            }
            true
        } else {
            let mut all_found = true;
            for _ in 0..10 {
                let found = store.load_session_by_token("at-stable").await.unwrap();
                all_found &= found.is_some_and(|s| s.session_id == "sess-stable");
            }
            all_found
        }
    })
    .await;
    assert!(results.iter().all(|ok| *ok), "{results:?}");
    assert_eq!(
        crate::compare::session_ids(&fx.contents().await),
        ["sess-stable"]
    );
}
