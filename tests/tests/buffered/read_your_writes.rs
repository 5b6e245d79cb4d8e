//! Read-your-writes before any flush: the buffer answers from its pending
//! writes, and one-time calls on buffered records are decided once.

use crate::common::{buffer, quiet_config};
use std::sync::Arc;
use tokenstore::{Ack, TokenStore};
use tokenstore_core::{ManualClock, MemoryTokenStore};
use tokenstore_tests::compare::{assert_contents_eq, assert_session_eq, assert_state_eq};
use tokenstore_tests::probe::{Calls, CountingStore, GatedStore};
use tokenstore_tests::sample;
use tokenstore_tests::{Runtime, T0};

/// Runs the same calls on the buffered store and on the reference model and
/// checks both answers agree; returns the buffered answer.
macro_rules! both {
    ($buffered:expr, $model:expr, |$s:ident| $call:expr) => {{
        let a = {
            let $s = $buffered;
            $call.await.expect("buffered call")
        };
        let b = {
            let $s = $model;
            $call.await.expect("model call")
        };
        assert_eq!(
            a,
            b,
            "the buffer and the model disagree on {}",
            stringify!($call)
        );
        a
    }};
}

/// Stores, deletes and one-time calls answered before any flush (no delegate
/// read at all), equal to the reference model's answers; a state stored and
/// consumed before the flush is consumed once and never stored at the
/// delegate.
pub(crate) async fn before_any_flush<R: Runtime>() {
    let clock = ManualClock::new(T0);
    let delegate = Arc::new(CountingStore::new(MemoryTokenStore::new(clock.clone())));
    let store = buffer(delegate.clone(), quiet_config(), Ack::Queued, clock.clone());
    let model = MemoryTokenStore::new(clock.clone());
    let (b, m) = (&store, &model);

    // A session: stored, read by every key.
    let session = Arc::new(sample::full_session(
        "ryw-sid",
        "ryw-access",
        "ryw-refresh",
        T0,
    ));
    both!(b, m, |s| s.store_session(session.clone()));
    let by_token = both!(b, m, |s| s.load_session_by_token("ryw-access")).expect("by token");
    assert_session_eq(&by_token, &session);
    assert!(both!(b, m, |s| s.load_session_by_id("ryw-sid")).is_some());
    assert!(both!(b, m, |s| s.load_session_by_refresh_token("ryw-refresh")).is_some());
    // Deleted: gone by every key.
    both!(b, m, |s| s.delete_session_by_token("ryw-access"));
    assert!(both!(b, m, |s| s.load_session_by_token("ryw-access")).is_none());
    assert!(both!(b, m, |s| s.load_session_by_id("ryw-sid")).is_none());
    assert!(both!(b, m, |s| s.load_session_by_refresh_token("ryw-refresh")).is_none());
    // Stored again, deleted by id.
    both!(b, m, |s| s.store_session(session.clone()));
    assert!(both!(b, m, |s| s.load_session_by_token("ryw-access")).is_some());
    both!(b, m, |s| s.delete_session_by_id("ryw-sid"));
    assert!(both!(b, m, |s| s.load_session_by_token("ryw-access")).is_none());

    // A state stored and consumed before the flush: once.
    let state = Arc::new(sample::full_state("ryw-state", T0));
    both!(b, m, |s| s.store_state(state.clone()));
    let consumed = both!(b, m, |s| s.consume_state("ryw-state")).expect("consumed once");
    assert_state_eq(&consumed, &state);
    assert!(both!(b, m, |s| s.consume_state("ryw-state")).is_none());

    // A code: loaded (not consumed), then removed exactly once.
    let code = Arc::new(sample::full_code("ryw-code", "ryw-sid", T0));
    both!(b, m, |s| s.store_auth_code(code.clone()));
    assert!(both!(b, m, |s| s.load_auth_code("ryw-code")).is_some());
    assert!(both!(b, m, |s| s.try_delete_auth_code("ryw-code")));
    assert!(!both!(b, m, |s| s.try_delete_auth_code("ryw-code")));
    assert!(both!(b, m, |s| s.load_auth_code("ryw-code")).is_none());

    // A client: stored, listed, deleted.
    let client = Arc::new(sample::full_client("ryw-client", T0));
    both!(b, m, |s| s.store_client(client.clone()));
    assert!(both!(b, m, |s| s.load_client("ryw-client")).is_some());
    assert_eq!(both!(b, m, |s| s.list_clients()).len(), 1);
    both!(b, m, |s| s.delete_client("ryw-client"));
    assert!(both!(b, m, |s| s.load_client("ryw-client")).is_none());

    // Nothing above needed the delegate except the client listing (a list is
    // always read through), and nothing was written to it yet.
    let calls = delegate.calls();
    assert_eq!(
        calls,
        Calls {
            list_clients: 1,
            ..Calls::default()
        },
        "the buffer asked the delegate"
    );
    assert_eq!(store.metrics().applied_batches, 0);

    store.flush().await.expect("flush");
    let calls = delegate.calls();
    assert_eq!(
        calls.store_state, 0,
        "the consumed state reached the delegate"
    );
    assert_eq!(
        calls.store_auth_code, 0,
        "the removed code reached the delegate"
    );
    assert!(
        delegate
            .inner()
            .consume_state("ryw-state")
            .await
            .expect("consume")
            .is_none()
    );
    assert_contents_eq(&delegate.inner().contents(), &model.contents());
    store.close().await.expect("close");
}

/// A code read that is out at the delegate while a store of the code is
/// flushed and `try_delete_auth_code` takes it there answers `None`, not the
/// store it missed (found by the coalescing fuzz target).
pub(crate) async fn read_out_while_a_code_is_taken<R: Runtime>() {
    let clock = ManualClock::new(T0);
    let delegate = Arc::new(GatedStore::new(MemoryTokenStore::new(clock.clone())));
    let store = Arc::new(buffer(
        delegate.clone(),
        quiet_config(),
        Ack::Queued,
        clock.clone(),
    ));
    delegate.gate().arm();
    let reader = {
        let store = store.clone();
        R::spawn(async move { store.load_auth_code("taken-code").await })
    };
    // The delegate answered (nothing yet); the read is held before it returns.
    delegate.gate().entered().await;
    let code = Arc::new(sample::full_code("taken-code", "taken-sid", T0));
    store.store_auth_code(code).await.expect("store");
    store.flush().await.expect("flush");
    assert!(
        store
            .try_delete_auth_code("taken-code")
            .await
            .expect("try_delete"),
        "the delegate takes the flushed code"
    );
    delegate.gate().open();
    assert_eq!(
        reader.await.expect("read"),
        None,
        "a read still out answered a code that was taken"
    );
    assert!(store.load_auth_code("taken-code").await.unwrap().is_none());
    store.close().await.expect("close");
}

/// A state and a code whose stores are in the batch in flight (held at the
/// delegate's gate): `consume_state` and `try_delete_auth_code` wait for that
/// batch instead of answering from it, then the delegate decides. Answering
/// from the batch and queueing the removal would let the batch put both in
/// the delegate first, where another instance sharing it could take them a
/// second time (and a crash in between would bring them back).
pub(crate) async fn one_time_calls_wait_for_the_batch_in_flight<R: Runtime>() {
    use crate::common::{bounded, sleep};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokenstore_tests::probe::FlakyStore;

    let clock = ManualClock::new(T0);
    let delegate = Arc::new(FlakyStore::new(MemoryTokenStore::new(clock.clone())));
    delegate.gate().arm();
    let store = Arc::new(buffer(delegate.clone(), quiet_config(), Ack::Queued, clock));
    let later = T0 + Duration::from_secs(600);
    let state = sample::state("ot-state", later, T0);
    store.store_state(Arc::new(state.clone())).await.unwrap();
    let code = sample::code("ot-code", "ot-sid", later, T0);
    store.store_auth_code(Arc::new(code)).await.unwrap();
    // Both stores in one batch, held at the gate.
    let flush = {
        let store = store.clone();
        R::spawn(async move { store.flush().await })
    };
    bounded("the batch at the gate", delegate.gate().entered()).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let consume = {
        let (store, answered) = (store.clone(), answered.clone());
        R::spawn(async move {
            let out = store.consume_state("ot-state").await;
            answered.fetch_add(1, Ordering::SeqCst);
            out
        })
    };
    let take = {
        let (store, answered) = (store.clone(), answered.clone());
        R::spawn(async move {
            let out = store.try_delete_auth_code("ot-code").await;
            answered.fetch_add(1, Ordering::SeqCst);
            out
        })
    };
    sleep(Duration::from_millis(30)).await;
    assert_eq!(
        answered.load(Ordering::SeqCst),
        0,
        "a one-time call was answered from the batch in flight"
    );
    delegate.gate().open();
    let consumed = bounded("consume_state", consume).await.unwrap();
    assert_eq!(consumed.as_deref(), Some(&state));
    assert!(bounded("try_delete_auth_code", take).await.unwrap());
    bounded("the flush", flush).await.unwrap();
    // Another instance on the same delegate finds both gone, at once.
    assert_eq!(delegate.consume_state("ot-state").await.unwrap(), None);
    assert!(!delegate.try_delete_auth_code("ot-code").await.unwrap());
    store.close().await.unwrap();
}
