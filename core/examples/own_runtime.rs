//! Driving tokenstore's machines from a runtime of your own.
//!
//! `CachingTokenStore` and `BufferedTokenStore` (crate `tokenstore`) are thin
//! drivers for two pure machines. If you run your own executor, a simulation,
//! or no async runtime at all, drive the machines yourself: feed them events and
//! the time, do the I/O they ask for, report the result. This example does it
//! with a manual clock and `block_on` standing in for your executor.
//!
//! Run: `cargo run -p tokenstore-core --example own_runtime`.

use futures_lite::future::block_on;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::SessionKey;
use tokenstore_core::buffer::{BatchOutcome, BufferConfig, BufferMachine, WriteOp, apply_batch};
use tokenstore_core::cache::{CacheConfig, CacheKey, CacheMachine, Cached, Lookup, Write};
use tokenstore_core::{
    Clock, ManualClock, MemoryTokenStore, StoreError, StoredSession, Timestamp, TokenHash,
    TokenStore, UserInfo,
};

fn main() -> Result<(), StoreError> {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let backend = MemoryTokenStore::new(clock.clone());

    // 1. The write buffer: accept a write, ask when to wake up, flush when due.
    let mut buffer = BufferMachine::new(BufferConfig {
        max_delay: Duration::from_millis(5),
        ..BufferConfig::default()
    });
    let session = StoredSession::new(
        "session-1",
        UserInfo::new("github", "42", "octocat"),
        "access-token",
        clock.now() + Duration::from_secs(3600),
        clock.now(),
    );
    let seq = match buffer.accept(clock.now(), WriteOp::StoreSession(Arc::new(session))) {
        Ok(seq) => seq,
        // `Refusal::Full`: wait for a batch result, then offer `refused.op` again;
        // `Refusal::Closed`: answer `StoreError::Closed`.
        Err(refused) => return Err(StoreError::Backend(format!("{:?}", refused.reason))),
    };
    println!("buffer: accepted write {seq:?}");
    assert!(buffer.poll_batch(clock.now()).is_none(), "not due yet");

    // Your timer: sleep until the deadline the machine names (here: move the clock).
    let wake_at = buffer.poll_timeout().expect("a write is waiting");
    clock.set(wake_at);
    let batch = buffer.poll_batch(clock.now()).expect("due now");
    println!(
        "buffer: flushing batch {} of {} write(s)",
        batch.id,
        batch.writes.len()
    );
    // Your I/O: apply the batch (atomically when the backend can), report back.
    let result = block_on(apply_batch(&backend, batch.writes));
    match buffer.handle_batch_result(clock.now(), batch.id, result) {
        BatchOutcome::Applied(seqs) => println!("buffer: {} write(s) durable", seqs.len()),
        other => println!("buffer: {other:?}"),
    }
    assert!(buffer.is_drained());

    // 2. The read cache: look up, ask the backend on a miss, fill with the ticket.
    let mut cache = CacheMachine::new(CacheConfig::default());
    let key = CacheKey::Session(SessionKey::Access(TokenHash::of("access-token")));
    for round in 1..=2 {
        match cache.lookup(clock.now(), &key) {
            Lookup::Hit(Cached::Session(found)) => {
                println!(
                    "cache: round {round}: hit, expires {:?}",
                    found.access_expires_at
                );
            }
            Lookup::Miss(ticket) => {
                let found = block_on(backend.load_session_by_token("access-token"))?;
                let outcome = cache.fill_session(clock.now(), ticket, found);
                println!("cache: round {round}: miss, filled: {outcome:?}");
            }
            other => println!("cache: round {round}: {other:?}"),
        }
    }

    // A write that passes through to the backend is reported afterwards; the
    // cache then forgets every key it can affect.
    block_on(backend.delete_session_by_token("access-token"))?;
    cache.handle_write(Write::DeleteSessionByHash(TokenHash::of("access-token")));
    let after = cache.lookup(clock.now(), &key);
    println!("cache: after the delete: {after:?}");
    let Lookup::Miss(ticket) = after else {
        panic!("a deleted session is not served from the cache");
    };
    cache.abandon(ticket); // a lookup you do not follow up gives its ticket back

    let m = cache.metrics();
    println!(
        "cache counters: {} lookups, {} hits, {} misses",
        m.sessions.lookups, m.sessions.hits, m.sessions.misses
    );
    Ok(())
}
