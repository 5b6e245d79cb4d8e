//! `max_pending`: writers past it wait, the buffer never holds more, and every
//! write lands.

use crate::common::{bounded, buffer, eventually, sleep};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::{Ack, TokenStore};
use tokenstore_core::{ManualClock, MemoryTokenStore};
use tokenstore_tests::probe::FlakyStore;
use tokenstore_tests::sample;
use tokenstore_tests::{Runtime, T0};

const WRITERS: usize = 32;
const MAX_PENDING: usize = 4;

/// 32 concurrent writers over a buffer of 4, flushing into a delegate that is
/// first held at a gate, then slow: every writer completes, `pending()` never
/// exceeds 4 (sampled throughout), writers were made to wait, and every write
/// is in the delegate at the end.
pub(crate) async fn writers_wait_and_all_land<R: Runtime>() {
    let clock = ManualClock::new(T0);
    let delegate = Arc::new(FlakyStore::new(MemoryTokenStore::new(clock.clone())));
    delegate.gate().arm();
    let config = BufferConfig {
        max_batch_size: 2,
        max_delay: Duration::ZERO,
        max_pending: MAX_PENDING,
        max_retries: 0,
        retry_backoff: Duration::from_millis(1),
    };
    let store = Arc::new(buffer(delegate.clone(), config, Ack::Queued, clock));
    let completed = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (store, completed) = (store.clone(), completed.clone());
            R::spawn(async move {
                let result = if i % 2 == 0 {
                    let c = sample::client(&format!("bp-client-{i}"), T0);
                    store.store_client(Arc::new(c)).await
                } else {
                    let s = sample::live_session(
                        &format!("bp-sid-{i}"),
                        &format!("bp-access-{i}"),
                        None,
                        T0,
                    );
                    store.store_session(Arc::new(s)).await
                };
                completed.fetch_add(1, Ordering::SeqCst);
                result
            })
        })
        .collect();

    let mut max_seen = 0;
    let mut samples = 0u64;
    let mut sample = |store: &tokenstore::BufferedTokenStore<_>| {
        let held = store.pending();
        max_seen = max_seen.max(held);
        samples += 1;
        held
    };
    // The first batch is held at the gate; the buffer fills and writers wait.
    bounded("the first batch at the gate", delegate.gate().entered()).await;
    // Exactly `max_pending` writes are accepted (and their writers return);
    // the others are refused for room and wait.
    eventually("a full buffer with waiting writers", || {
        let done = completed.load(Ordering::SeqCst);
        assert!(done <= MAX_PENDING, "{done} writes accepted past the limit");
        sample(&store) == MAX_PENDING && store.metrics().refused_full > 0 && done == MAX_PENDING
    })
    .await;
    let stuck_at = completed.load(Ordering::SeqCst);
    for _ in 0..20 {
        sample(&store);
        sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        completed.load(Ordering::SeqCst),
        stuck_at,
        "a writer completed while the buffer was full and stuck"
    );

    // Open the gate; every later delegate write takes a millisecond.
    delegate.set_write_delay(Duration::from_millis(1));
    delegate.gate().open();
    let deadline = Instant::now() + crate::common::BOUND;
    while completed.load(Ordering::SeqCst) < WRITERS {
        assert!(Instant::now() < deadline, "writers still waiting");
        sample(&store);
        sleep(Duration::from_micros(200)).await;
    }
    for (i, writer) in writers.into_iter().enumerate() {
        writer
            .await
            .unwrap_or_else(|e| panic!("writer {i} failed: {e}"));
    }
    store.flush().await.expect("flush");
    sample(&store);
    assert!(max_seen <= MAX_PENDING, "pending reached {max_seen}");
    assert_eq!(max_seen, MAX_PENDING);
    println!("backpressure: {samples} samples of pending(), max {max_seen}");

    let m = store.metrics();
    assert_eq!(m.accepted, WRITERS as u64);
    assert!(m.refused_full > 0, "{m:?}");
    let held = delegate.inner().contents();
    assert_eq!(held.clients.len() + held.sessions.len(), WRITERS);
    for i in 0..WRITERS {
        let found = if i % 2 == 0 {
            delegate
                .inner()
                .load_client(&format!("bp-client-{i}"))
                .await
                .expect("load")
                .is_some()
        } else {
            delegate
                .inner()
                .load_session_by_token(&format!("bp-access-{i}"))
                .await
                .expect("load")
                .is_some()
        };
        assert!(found, "write {i} is missing from the delegate");
    }
    store.close().await.expect("close");
}

/// `close()` begins while the buffer is full and writers wait for room: every
/// writer completes, either accepted (and then in the delegate once close
/// returns) or refused with `Closed` (and then absent); close drains.
pub(crate) async fn close_while_writers_wait<R: Runtime>() {
    let clock = ManualClock::new(T0);
    let delegate = Arc::new(FlakyStore::new(MemoryTokenStore::new(clock.clone())));
    delegate.gate().arm();
    let config = BufferConfig {
        max_batch_size: 2,
        max_delay: Duration::ZERO,
        max_pending: MAX_PENDING,
        max_retries: 0,
        retry_backoff: Duration::from_millis(1),
    };
    let store = Arc::new(buffer(delegate.clone(), config, Ack::Queued, clock));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = store.clone();
            R::spawn(async move {
                let c = sample::client(&format!("cw-client-{i}"), T0);
                store.store_client(Arc::new(c)).await
            })
        })
        .collect();
    bounded("the first batch at the gate", delegate.gate().entered()).await;
    eventually("writers refused for a full buffer", || {
        store.metrics().refused_full > 0
    })
    .await;
    let close = {
        let store = store.clone();
        R::spawn(async move { store.close().await })
    };
    // Close has begun (its flag shows in the buffer's Debug) before the gate
    // opens. Writers waiting for room are told `Closed` only when the batch
    // in flight ends (see the report), so no refusal is awaited here.
    eventually("close to begin", || {
        format!("{store:?}").contains("closing: true")
    })
    .await;
    delegate.gate().open();
    bounded("close", close).await.expect("close drains");

    let held = delegate.inner().contents();
    let mut accepted = 0;
    for (i, writer) in writers.into_iter().enumerate() {
        let id = format!("cw-client-{i}");
        let present = held.clients.iter().any(|c| c.client_id == id);
        match bounded("a writer", writer).await {
            Ok(()) => {
                accepted += 1;
                assert!(present, "accepted write {i} was lost");
            }
            Err(tokenstore::StoreError::Closed) => assert!(!present, "refused write {i} landed"),
            Err(e) => panic!("writer {i}: {e}"),
        }
    }
    let m = store.metrics();
    assert_eq!(m.accepted, accepted);
    assert!(accepted >= MAX_PENDING as u64, "{m:?}");
    assert!(accepted < WRITERS as u64, "close refused nobody: {m:?}");
    assert_eq!(m.refused_closed, WRITERS as u64 - accepted, "{m:?}");
    assert_eq!(store.pending(), 0);
}
/// Regression: a writer waiting for room is told `Closed` as soon as `close()`
/// begins, not when the batch in flight ends (here it is held at a gate).
pub(crate) async fn close_refuses_waiting_writers_at_once<R: Runtime>() {
    let clock = ManualClock::new(T0);
    let delegate = Arc::new(FlakyStore::new(MemoryTokenStore::new(clock.clone())));
    delegate.gate().arm();
    let config = BufferConfig {
        max_batch_size: 1,
        max_delay: Duration::ZERO,
        max_pending: 1,
        max_retries: 0,
        retry_backoff: Duration::from_millis(1),
    };
    let store = Arc::new(buffer(delegate.clone(), config, Ack::Queued, clock));
    store
        .store_client(Arc::new(sample::client("first", T0)))
        .await
        .unwrap();
    bounded("the batch at the gate", delegate.gate().entered()).await;
    let waiting = {
        let store = store.clone();
        R::spawn(async move {
            store
                .store_client(Arc::new(sample::client("second", T0)))
                .await
        })
    };
    eventually("the writer to wait", || store.metrics().refused_full > 0).await;
    let close = {
        let store = store.clone();
        R::spawn(async move { store.close().await })
    };
    let refused = crate::common::within(Duration::from_secs(1), waiting).await;
    delegate.gate().open();
    let _ = bounded("close", close).await;
    assert_eq!(
        refused,
        Some(Err(tokenstore::StoreError::Closed)),
        "the waiting writer was not refused within 1 s of close()"
    );
}
