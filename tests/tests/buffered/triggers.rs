//! Flush triggers through the adapter: size, time (manual and system clock),
//! and coalescing to the last value.

use crate::common::{
    BOUND, buffer, eventually, issue_all, quiet_config, records, reference, script, sleep,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::{Ack, TokenStore};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{Clock, ManualClock, MemoryTokenStore, SystemClock};
use tokenstore_tests::probe::CountingStore;
use tokenstore_tests::sample::{self, MINUTE};
use tokenstore_tests::{Runtime, T0, compare::assert_contents_eq};

fn client(id: usize, now: tokenstore_core::Timestamp) -> WriteOp {
    WriteOp::StoreClient(Arc::new(sample::client(&format!("client-{id}"), now)))
}

/// `max_batch_size` writes start a flush on their own: the delegate gets them
/// with no `flush()`, no clock movement and an hour of `max_delay`; one write
/// fewer does not.
pub(crate) async fn size_trigger<R: Runtime>() {
    const N: usize = 8;
    let clock = ManualClock::new(T0);
    let delegate = Arc::new(CountingStore::new(MemoryTokenStore::new(clock.clone())));
    let config = BufferConfig {
        max_batch_size: N,
        ..quiet_config()
    };
    let store = buffer(delegate.clone(), config, Ack::Queued, clock.clone());

    let writes: Vec<WriteOp> = (0..2 * N).map(|i| client(i, T0)).collect();
    issue_all(&store, &writes[..N - 1]).await;
    // Give the worker ample time to (wrongly) flush N - 1 writes.
    sleep(Duration::from_millis(50)).await;
    assert_eq!(
        delegate.calls().store_client,
        0,
        "flushed below the batch size"
    );
    assert_eq!(store.pending(), N - 1);

    issue_all(&store, &writes[N - 1..N]).await;
    // The delegate holds the writes a moment before the buffer has counted
    // the batch it sent them in: wait for both.
    eventually("the size-triggered batch", || {
        delegate.inner().contents().clients.len() == N && store.metrics().applied_batches >= 1
    })
    .await;
    assert_eq!(store.metrics().applied_batches, 1);
    assert_eq!(store.metrics().applied_writes, N as u64);

    // The trigger fires again for the next N.
    issue_all(&store, &writes[N..]).await;
    eventually("the second size-triggered batch", || {
        delegate.inner().contents().clients.len() == 2 * N && store.metrics().applied_batches >= 2
    })
    .await;
    assert_eq!(store.metrics().applied_batches, 2);
    assert_eq!(store.pending(), 0);
    assert_contents_eq(&delegate.inner().contents(), &reference(T0, &writes).await);
    assert_eq!(clock.now(), T0, "nothing moved the clock");
    store.close().await.expect("close drains");
}

/// Fewer than `max_batch_size` writes reach the delegate once the buffer's
/// clock has moved `max_delay` past the oldest: not before, however long the
/// test waits in real time, and without a `flush()`.
pub(crate) async fn time_trigger_manual_clock<R: Runtime>() {
    let delay = Duration::from_millis(50);
    let clock = ManualClock::new(T0);
    let delegate = Arc::new(MemoryTokenStore::new(clock.clone()));
    let config = BufferConfig {
        max_delay: delay,
        ..quiet_config()
    };
    let store = buffer(delegate.clone(), config, Ack::Queued, clock.clone());
    let writes = script("time", T0, false);
    issue_all(&store, &writes).await;

    // Three real delays pass; the buffer's clock does not move.
    sleep(3 * delay).await;
    assert_eq!(records(&delegate.contents()), 0, "flushed before max_delay");
    clock.advance(delay - Duration::from_micros(1));
    sleep(2 * delay).await;
    assert_eq!(records(&delegate.contents()), 0, "flushed before max_delay");

    clock.advance(Duration::from_micros(1));
    let expected = reference(T0, &writes).await;
    eventually("the time-triggered batch", || {
        delegate.contents() == expected && store.metrics().applied_batches >= 1
    })
    .await;
    assert_eq!(store.metrics().applied_batches, 1);
    // Read back from the delegate directly.
    let back = delegate
        .load_session_by_token("time-access-1-1")
        .await
        .expect("load")
        .expect("the rotated session is persisted");
    assert_eq!(back.session_id, "time-sid-1");
    assert!(
        delegate
            .load_client("time-client-b")
            .await
            .expect("load")
            .is_none()
    );
    store.close().await.expect("close drains");
}

/// With the system clock: writes arrive without a flush, and not before
/// `max_delay` after the first was accepted.
pub(crate) async fn time_trigger_system_clock<R: Runtime>() {
    let delay = Duration::from_millis(30);
    let now = SystemClock.now();
    let delegate = Arc::new(MemoryTokenStore::new(SystemClock));
    let config = BufferConfig {
        max_delay: delay,
        ..quiet_config()
    };
    let store = buffer(delegate.clone(), config, Ack::Queued, SystemClock);
    let writes = script("wall", now, false);
    let started = Instant::now();
    issue_all(&store, &writes).await;
    let expected = reference(now, &writes).await;
    eventually("the time-triggered batch", || {
        delegate.contents() == expected && store.metrics().applied_batches >= 1
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= delay - Duration::from_millis(1),
        "flushed after {waited:?}, before max_delay {delay:?}"
    );
    assert!(waited < BOUND);
    assert_eq!(store.metrics().applied_batches, 1);
    store.close().await.expect("close drains");
}

/// One key rewritten every `max_delay / 2` (a hot client record) still reaches
/// the delegate about `max_delay` after its first write, while the rewrites go
/// on: a write that replaces a pending one keeps the older acceptance time.
/// Real time and the system clock; the slack covers scheduling on a busy
/// machine, and the rewriting lasts ten times `max_delay`, so a buffer that
/// postponed the flush on every rewrite would not flush before it ends.
pub(crate) async fn rewritten_key_flushes_within_max_delay<R: Runtime>() {
    let delay = Duration::from_millis(40);
    let slack = Duration::from_millis(150);
    let delegate = Arc::new(MemoryTokenStore::new(SystemClock));
    let config = BufferConfig {
        max_delay: delay,
        ..quiet_config()
    };
    let store = buffer(delegate.clone(), config, Ack::Queued, SystemClock);
    let started = Instant::now();
    let mut arrived = None;
    for round in 0..20 {
        let mut c = sample::client("hot-client", SystemClock.now());
        c.client_name = Some(format!("rev {round}"));
        store.store_client(Arc::new(c)).await.expect("queued");
        sleep(delay / 2).await;
        if !delegate.contents().clients.is_empty() {
            arrived = Some(started.elapsed());
            break;
        }
    }
    let arrived = arrived.expect("the rewritten key never reached the delegate while rewritten");
    assert!(
        arrived < delay + slack,
        "the rewritten key reached the delegate after {arrived:?} (max_delay {delay:?})"
    );
    store.close().await.expect("close drains");
}

/// Several writes to one key before a flush persist one value, the last, with
/// one delegate call per key.
pub(crate) async fn last_write_wins<R: Runtime>() {
    let clock = ManualClock::new(T0);
    let delegate = Arc::new(CountingStore::new(MemoryTokenStore::new(clock.clone())));
    let store = buffer(delegate.clone(), quiet_config(), Ack::Queued, clock.clone());

    let mut writes = Vec::new();
    for round in 0..5 {
        let mut c = sample::full_client("the-client", T0);
        c.client_name = Some(format!("name {round}"));
        writes.push(WriteOp::StoreClient(Arc::new(c)));
        let mut s = sample::full_state("the-state", T0);
        s.client_state = Some(format!("client state {round}"));
        writes.push(WriteOp::StoreState(Arc::new(s)));
        let code = sample::code("the-code", &format!("sid-{round}"), T0 + MINUTE, T0);
        writes.push(WriteOp::StoreAuthCode(Arc::new(code)));
        let mut session = sample::full_session("the-sid", "the-access", "the-refresh", T0);
        session.provider = format!("provider {round}");
        writes.push(WriteOp::StoreSession(Arc::new(session)));
    }
    // A store then a delete leaves the delete.
    writes.push(WriteOp::StoreAuthCode(Arc::new(sample::full_code(
        "gone", "the-sid", T0,
    ))));
    writes.push(WriteOp::DeleteAuthCode("gone".into()));
    issue_all(&store, &writes).await;
    assert_eq!(store.pending(), 5, "one write per key is held");
    assert_eq!(store.metrics().coalesced, 4 * 4 + 1);

    store.flush().await.expect("flush");
    let calls = delegate.calls();
    assert_eq!(calls.store_client, 1);
    assert_eq!(calls.store_state, 1);
    assert_eq!(calls.store_auth_code, 1);
    assert_eq!(calls.delete_auth_code, 1);
    assert_eq!(calls.store_session + calls.bulk_store_sessions, 1);
    let held = delegate.inner().contents();
    assert_eq!(held.clients.len(), 1);
    assert_eq!(held.clients[0].client_name.as_deref(), Some("name 4"));
    assert_eq!(held.states.len(), 1);
    assert_eq!(
        held.states[0].client_state.as_deref(),
        Some("client state 4")
    );
    assert_eq!(held.auth_codes.len(), 1);
    assert_eq!(held.auth_codes[0].session_id, "sid-4");
    assert_eq!(held.sessions.len(), 1);
    assert_eq!(held.sessions[0].provider, "provider 4");
    assert_contents_eq(&held, &reference(T0, &writes).await);
    store.close().await.expect("close drains");
}
