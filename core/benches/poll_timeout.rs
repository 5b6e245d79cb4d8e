//! What `BufferMachine::poll_timeout` and a `poll_batch` that finds nothing due
//! cost with many writes pending: the adapter's flush worker calls both after
//! every write it is woken for.
//!
//! `cargo bench -p tokenstore-core --bench poll_timeout` prints nanoseconds per
//! call at 10, 1,000 and 10,000 pending writes, and each size's ratio to the
//! 10-write case (1.0x means the cost does not grow with the queue).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore_core::buffer::{BufferConfig, BufferMachine, WriteOp};
use tokenstore_core::{StateRecord, Timestamp};

fn machine(pending: usize, t0: Timestamp) -> BufferMachine {
    let mut buffer = BufferMachine::new(BufferConfig {
        max_batch_size: usize::MAX,
        max_pending: usize::MAX,
        max_delay: Duration::from_secs(3600),
        ..BufferConfig::default()
    });
    let expires = t0 + Duration::from_secs(600);
    for i in 0..pending {
        let at = t0 + Duration::from_micros(i as u64);
        let op = WriteOp::StoreState(Arc::new(StateRecord::new(format!("s{i}"), expires, at)));
        if buffer.accept(at, op).is_err() {
            panic!("the bench's buffer has room");
        }
    }
    buffer
}

/// Nanoseconds per call of `f`, the best of five rounds of `calls` calls.
fn per_call(calls: u32, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(calls)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    let now = t0 + Duration::from_secs(1);
    let mut base = None;
    println!("| pending | poll_timeout ns | vs 10 | poll_batch (not due) ns | vs 10 |");
    println!("|---|---|---|---|---|");
    for pending in [10, 1_000, 10_000] {
        let mut buffer = machine(pending, t0);
        let timeout = per_call(20_000, || {
            black_box(black_box(&buffer).poll_timeout());
        });
        let poll = per_call(20_000, || {
            assert!(black_box(&mut buffer).poll_batch(now).is_none());
        });
        let (t10, p10) = *base.get_or_insert((timeout, poll));
        println!(
            "| {pending} | {timeout:.1} | {:.1}x | {poll:.1} | {:.1}x |",
            timeout / t10,
            poll / p10
        );
    }
}
