//! Which delegate calls a flush makes: bulk calls for session writes when the
//! delegate has the bulk capability (and no atomic batch), single calls when
//! it has neither, with the same final contents.

use crate::common::{buffer, issue_all, quiet_config, reference, script};
use std::sync::Arc;
use tokenstore::{Ack, TokenStore};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{Contents, ManualClock, MemoryTokenStore};
use tokenstore_tests::compare::assert_contents_eq;
use tokenstore_tests::probe::{Calls, CountingStore, WithoutBulk};
use tokenstore_tests::{Runtime, T0};

/// Session writes of the script, by kind: (stores, deletes by token, deletes by id).
fn session_writes(writes: &[WriteOp]) -> (u64, u64, u64) {
    let count = |f: fn(&WriteOp) -> bool| writes.iter().filter(|w| f(w)).count() as u64;
    (
        count(|w| matches!(w, WriteOp::StoreSession(_))),
        count(|w| matches!(w, WriteOp::DeleteSessionByToken(_))),
        count(|w| matches!(w, WriteOp::DeleteSessionById(_))),
    )
}

/// Runs `writes` through a buffer over `delegate`, one flush; returns the
/// delegate's calls and contents.
async fn flush_through<S: TokenStore + 'static>(
    delegate: Arc<CountingStore<S>>,
    contents: impl Fn(&S) -> Contents,
    writes: &[WriteOp],
) -> (Calls, Contents) {
    let clock = ManualClock::new(T0);
    let store = buffer(delegate.clone(), quiet_config(), Ack::Queued, clock);
    issue_all(&store, writes).await;
    assert_eq!(
        delegate.calls(),
        Calls::default(),
        "a write reached the delegate before the flush"
    );
    store.flush().await.expect("flush");
    assert_eq!(store.metrics().applied_batches, 1, "one flush, one batch");
    let calls = delegate.calls();
    let held = contents(delegate.inner());
    store.close().await.expect("close");
    (calls, held)
}

/// A delegate with bulk and no atomic batch (`CountingStore<MemoryTokenStore>`)
/// gets session stores and deletes by token as bulk calls, never as single
/// calls; a delegate without either (`WithoutBulk`) gets single calls; both end
/// with the reference model's contents.
pub(crate) async fn bulk_and_fallback_parity<R: Runtime>() {
    let writes = script("bulk", T0, false);
    let (stores, deletes_by_token, deletes_by_id) = session_writes(&writes);
    assert!(stores > 1 && deletes_by_token > 0 && deletes_by_id > 0);

    let with_bulk = Arc::new(CountingStore::new(MemoryTokenStore::new(ManualClock::new(
        T0,
    ))));
    assert!(with_bulk.bulk().is_some(), "the spy offers bulk");
    assert!(
        with_bulk.batch_writer().is_none(),
        "the spy offers no atomic batch"
    );
    let (bulk_calls, bulk_contents) =
        flush_through(with_bulk, MemoryTokenStore::contents, &writes).await;
    assert!(bulk_calls.bulk_store_sessions > 0, "{bulk_calls:?}");
    assert!(
        bulk_calls.bulk_delete_sessions_by_hash > 0,
        "{bulk_calls:?}"
    );
    assert_eq!(bulk_calls.store_session, 0, "{bulk_calls:?}");
    assert_eq!(bulk_calls.delete_session_by_token, 0, "{bulk_calls:?}");
    // Deletes by id have no bulk form.
    assert_eq!(bulk_calls.delete_session_by_id, deletes_by_id);
    // Consecutive session writes of one kind share a call.
    assert!(
        bulk_calls.bulk_store_sessions + bulk_calls.bulk_delete_sessions_by_hash
            < stores + deletes_by_token,
        "{bulk_calls:?}"
    );

    let without = Arc::new(CountingStore::new(WithoutBulk::new(MemoryTokenStore::new(
        ManualClock::new(T0),
    ))));
    assert!(without.bulk().is_none() && without.batch_writer().is_none());
    let (single_calls, single_contents) =
        flush_through(without, |s| s.inner().contents(), &writes).await;
    assert_eq!(single_calls.bulk_store_sessions, 0);
    assert_eq!(single_calls.bulk_delete_sessions_by_hash, 0);
    assert_eq!(single_calls.delete_session_by_token, deletes_by_token);
    assert_eq!(single_calls.delete_session_by_id, deletes_by_id);
    // Every session store is its own call (none of the script's coalesce).
    assert_eq!(single_calls.store_session, stores);

    // The non-session writes took the same single calls on both paths.
    assert_eq!(bulk_calls.store_state, single_calls.store_state);
    assert_eq!(bulk_calls.store_client, single_calls.store_client);
    assert_eq!(bulk_calls.delete_client, single_calls.delete_client);

    assert_eq!(
        bulk_contents, single_contents,
        "bulk and single paths differ"
    );
    assert_contents_eq(&bulk_contents, &reference(T0, &writes).await);
}

/// A flush of session stores only, many of them: one bulk call carries them
/// all, and the delegate holds exactly what one-by-one calls leave.
pub(crate) async fn many_sessions_one_bulk_call<R: Runtime>() {
    let writes: Vec<WriteOp> = (0..500)
        .map(|i| {
            WriteOp::StoreSession(Arc::new(tokenstore_tests::sample::live_session(
                &format!("many-{i}"),
                &format!("many-access-{i}"),
                Some(&format!("many-refresh-{i}")),
                T0,
            )))
        })
        .collect();
    let spy = Arc::new(CountingStore::new(MemoryTokenStore::new(ManualClock::new(
        T0,
    ))));
    let (calls, held) = flush_through(spy, MemoryTokenStore::contents, &writes).await;
    assert_eq!(calls.bulk_store_sessions, 1, "{calls:?}");
    assert_eq!(calls.store_session, 0, "{calls:?}");
    assert_eq!(held.sessions.len(), 500);
    assert_contents_eq(&held, &reference(T0, &writes).await);
}
