//! loom models of `BufferedTokenStore`: a flush racing `close()`, durable
//! acknowledgements, and backpressure.
#![cfg(tokenstore_loom)]

use loom::thread;
use std::sync::Arc;
use tokenstore::{Ack, BufferedTokenStore, StoreError, TokenStore};
use tokenstore_loom::{LoomRuntime, Probe, block_on, buffer_config, clock, model, state};

type Store = BufferedTokenStore<Arc<Probe>>;

fn buffered(probe: &Arc<Probe>, max_pending: usize, max_retries: u32, ack: Ack) -> Arc<Store> {
    Arc::new(BufferedTokenStore::with_clock(
        Arc::clone(probe),
        buffer_config(max_pending, max_retries),
        ack,
        LoomRuntime,
        clock(),
    ))
}

/// Runs `f("b")` on a new loom thread and `f("a")` on the current one (one loom
/// thread fewer than two spawned writers), then joins; returns both results.
fn writers<T: Send + 'static>(f: impl Fn(&'static str) -> T + Clone + Send + 'static) -> [T; 2] {
    let other = {
        let f = f.clone();
        thread::spawn(move || f("b"))
    };
    let a = f("a");
    [a, other.join().unwrap()]
}

/// After a clean close: nothing held, nothing handed back.
fn assert_drained(store: &Store) {
    assert_eq!(store.pending(), 0, "writes still held after close");
    assert!(
        store.take_unapplied().is_empty(),
        "writes handed back after a clean close"
    );
}

/// (a) A writer stores two states and flushes while another thread closes the
/// store. Every write that was accepted is applied exactly once (close drains
/// it, or the flush did); every write refused with `Closed` is never applied;
/// the flush and the close both succeed; the flush worker exits (loom reports
/// a deadlock if any of them is left waiting).
#[test]
fn flush_racing_close_loses_and_repeats_nothing() {
    model("flush racing close", || {
        let probe = Arc::new(Probe::new(clock()));
        let store = buffered(&probe, 8, 0, Ack::Queued);

        let closer = {
            let store = Arc::clone(&store);
            thread::spawn(move || block_on(store.close()))
        };
        // The main thread is the writer (one loom thread fewer to explore).
        let (a, b, flushed) = block_on(async {
            let a = store.store_state(state("a")).await;
            let b = store.store_state(state("b")).await;
            let flushed = store.flush().await;
            (a, b, flushed)
        });
        let closed = closer.join().unwrap();

        assert_eq!(closed, Ok(()), "close must drain cleanly");
        assert_eq!(flushed, Ok(()), "a flush racing close must not fail");
        for (key, result) in [("a", a), ("b", b)] {
            match result {
                Ok(()) => {
                    assert_eq!(probe.applied(key), 1, "accepted write {key} applied once");
                    assert!(
                        probe.holds_state(key),
                        "accepted write {key} is in the delegate"
                    );
                }
                Err(StoreError::Closed) => {
                    assert_eq!(
                        probe.applied(key),
                        0,
                        "refused write {key} must not be applied"
                    );
                }
                Err(other) => panic!("unexpected error for {key}: {other}"),
            }
        }
        assert_drained(&store);
    });
}

/// (a') The same race with a delegate that fails its first batch for good
/// (`max_retries` zero). Nothing is dropped silently: every accepted write is
/// either applied exactly once or handed back by `take_unapplied` after `close`
/// reported `WritesNotApplied` with their count, never both; the flush returns
/// (`Ok`, or the injected error) and the worker exits.
#[test]
fn flush_racing_failing_close_drops_nothing() {
    model("flush racing a failing close", || {
        let probe = Arc::new(Probe::failing(clock(), 1));
        let store = buffered(&probe, 8, 0, Ack::Queued);

        let closer = {
            let store = Arc::clone(&store);
            thread::spawn(move || block_on(store.close()))
        };
        let (a, b, flushed) = block_on(async {
            let a = store.store_state(state("a")).await;
            let b = store.store_state(state("b")).await;
            let flushed = store.flush().await;
            (a, b, flushed)
        });
        let closed = closer.join().unwrap();

        let unapplied: Vec<String> = store
            .take_unapplied()
            .iter()
            .map(|op| match op {
                tokenstore::buffer::WriteOp::StoreState(r) => r.state.clone(),
                other => panic!("unexpected write handed back: {other:?}"),
            })
            .collect();
        match closed {
            Ok(()) => assert!(
                unapplied.is_empty(),
                "close said Ok but handed back {unapplied:?}"
            ),
            Err(StoreError::WritesNotApplied { count }) => {
                assert_eq!(
                    count,
                    unapplied.len(),
                    "close's count and the writes handed back"
                )
            }
            Err(other) => panic!("unexpected close error: {other}"),
        }
        assert!(
            matches!(&flushed, Ok(()) | Err(StoreError::Backend(_))),
            "unexpected flush result {flushed:?}"
        );
        for (key, result) in [("a", a), ("b", b)] {
            let handed_back = unapplied.iter().filter(|k| *k == key).count();
            match result {
                Ok(()) => assert_eq!(
                    probe.applied(key) + handed_back,
                    1,
                    "accepted write {key}: applied {} times, handed back {handed_back} times",
                    probe.applied(key)
                ),
                Err(StoreError::Closed) => {
                    assert_eq!(probe.applied(key) + handed_back, 0, "refused write {key}")
                }
                Err(other) => panic!("unexpected error for {key}: {other}"),
            }
        }
        assert_eq!(store.pending(), 0, "writes still held after close");
    });
}

/// (c) Two durable writers, the delegate healthy or failing its first batch
/// (`max_retries` zero, so that batch fails for good). Each waiter returns once,
/// with the outcome of the first batch that held its write, whatever the
/// schedule: `Ok` only once its write is in the delegate, and that batch's
/// error if it failed, even when the requeued write is committed by a later
/// batch before the waiter wakes. A healthy delegate gives every waiter `Ok`.
/// The failed writes go back to the queue, and close applies every write
/// exactly once.
fn durable_waiters(failures: usize) {
    model(
        &format!("durable waiters, {failures} failed batch(es)"),
        move || {
            let probe = Arc::new(Probe::failing(clock(), failures));
            let store = buffered(&probe, 8, 0, Ack::Durable);

            let results = writers({
                let store = Arc::clone(&store);
                let probe = Arc::clone(&probe);
                move |key| {
                    let result = block_on(store.store_state(state(key)));
                    // Checked the moment the waiter returns.
                    if result.is_ok() {
                        assert_eq!(probe.applied(key), 1, "Ok before {key} was committed");
                    }
                    assert_eq!(
                        Some(result.clone()),
                        probe.first_outcome(key),
                        "waiter {key} must get the outcome of the first batch that held its write"
                    );
                    result
                }
            });

            if failures == 0 {
                assert!(
                    results.iter().all(Result::is_ok),
                    "no batch failed: {results:?}"
                );
            }
            assert_eq!(block_on(store.close()), Ok(()));
            for key in ["a", "b"] {
                assert_eq!(probe.applied(key), 1, "write {key} applied exactly once");
            }
            assert_drained(&store);
        },
    );
}

#[test]
fn durable_waiters_get_their_batch_result() {
    durable_waiters(0);
}

#[test]
fn durable_waiters_get_their_batch_error() {
    durable_waiters(1);
}

/// (c') With one retry, the first batch's failure is retried and every durable
/// waiter gets `Ok`, once its write is committed.
#[test]
fn durable_waiters_after_a_retry() {
    model("durable waiters after a retry", || {
        let probe = Arc::new(Probe::failing(clock(), 1));
        let store = buffered(&probe, 8, 1, Ack::Durable);
        writers({
            let store = Arc::clone(&store);
            let probe = Arc::clone(&probe);
            move |key| {
                let result = block_on(store.store_state(state(key)));
                assert_eq!(result, Ok(()), "a retried batch succeeded");
                assert_eq!(probe.applied(key), 1, "Ok before {key} was committed");
            }
        });
        assert_eq!(block_on(store.close()), Ok(()));
        assert_drained(&store);
    });
}

/// (d) Backpressure: with `max_pending = 1`, two writers; the second waits
/// for the first's batch to free space. No wake-up is lost (loom reports a
/// deadlock if the waiting writer is never woken), and both writes are applied
/// exactly once.
fn backpressure(ack: Ack) {
    model(&format!("backpressure, {ack:?}"), move || {
        let probe = Arc::new(Probe::new(clock()));
        let store = buffered(&probe, 1, 0, ack);
        let results = writers({
            let store = Arc::clone(&store);
            move |key| block_on(store.store_state(state(key)))
        });
        assert_eq!(results, [Ok(()), Ok(())]);
        assert_eq!(block_on(store.close()), Ok(()));
        for key in ["a", "b"] {
            assert_eq!(probe.applied(key), 1, "write {key} applied exactly once");
        }
        assert!(
            probe.batches().iter().all(|b| b.keys.len() == 1),
            "max_pending = 1 lets one write be held at a time"
        );
        assert_drained(&store);
    });
}

#[test]
fn backpressure_wakes_the_waiting_writer() {
    backpressure(Ack::Queued);
}

#[test]
fn backpressure_wakes_the_waiting_durable_writer() {
    backpressure(Ack::Durable);
}
