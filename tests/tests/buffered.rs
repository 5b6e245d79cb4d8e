//! Adapter-level tests of the write buffer, `BufferedTokenStore`, on tokio and
//! on smol (issue 4): flush triggers, the bulk path and its single-call
//! fallback, durable acknowledgement over SQLite with group commit, delegate
//! faults (retries, surfaced errors, unapplied writes on close, recovery),
//! backpressure, read-your-writes before a flush, and capabilities through
//! stacks of the cache and the buffer in either order.
//!
//! Test names say where they run: `tokio::faults::permanent_batch`. Time is
//! a manual clock wherever the buffer's decisions depend on it; where real
//! time is involved, waits are polls bounded by `common::BOUND`, and every
//! test has a watchdog.

// Every body is `async fn name<R: Runtime>()`, instantiated once per runtime;
// a body that spawns nothing still runs inside `R::block_on`, and the buffer
// picks its adapter runtime from that context (`common::adapter_runtime`).
#![allow(
    clippy::extra_unused_type_parameters,
    reason = "the runtime parameter selects where the body runs, not what it calls"
)]

#[path = "buffered/backpressure.rs"]
mod backpressure;
#[path = "buffered/bulk.rs"]
mod bulk;
#[path = "buffered/common.rs"]
mod common;
#[path = "buffered/durable.rs"]
mod durable;
#[path = "buffered/faults.rs"]
mod faults;
#[path = "buffered/read_your_writes.rs"]
mod read_your_writes;
#[path = "buffered/stacks.rs"]
mod stacks;
#[path = "buffered/triggers.rs"]
mod triggers;

/// One `#[test]` per body and runtime: `<runtime>::<family>::<test>`.
macro_rules! on_runtimes {
    ($($family:ident { $($test:ident),* $(,)? })*) => {
        on_runtimes!(@runtime tokio, tokenstore_tests::Tokio, $($family { $($test),* })*);
        on_runtimes!(@runtime smol, tokenstore_tests::Smol, $($family { $($test),* })*);
    };
    (@runtime $rt:ident, $runtime:ty, $($family:ident { $($test:ident),* })*) => {
        mod $rt {
            $(mod $family {
                $(#[test]
                fn $test() {
                    <$runtime as tokenstore_tests::Runtime>::block_on(async {
                        let body = crate::$family::$test::<$runtime>();
                        if crate::common::within(crate::common::WATCHDOG, body).await.is_none() {
                            panic!("hung for {:?}", crate::common::WATCHDOG);
                        }
                    });
                })*
            })*
        }
    };
}

on_runtimes! {
    stacks {
        buffer_over_cache_flushes_in_one_commit,
        cache_over_buffer_flushes_in_one_commit,
        bulk_and_batch_through_the_cache_leave_no_stale_read,
    }
    triggers {
        size_trigger,
        time_trigger_manual_clock,
        time_trigger_system_clock,
        rewritten_key_flushes_within_max_delay,
        last_write_wins,
    }
    bulk {
        bulk_and_fallback_parity,
        many_sessions_one_bulk_call,
    }
    durable {
        visible_from_second_connection,
        group_commit,
    }
    faults {
        transient_bulk,
        transient_single,
        transient_batch,
        permanent_bulk,
        permanent_single,
        permanent_batch,
        durable_error_bulk,
        durable_error_single,
        durable_error_batch,
        close_unapplied_bulk,
        close_unapplied_single,
        close_unapplied_batch,
        superseded_bulk,
        superseded_single,
        superseded_batch,
        flush_during_cooldown_waits_for_the_cooldown_only,
    }
    backpressure {
        writers_wait_and_all_land,
        close_while_writers_wait,
        close_refuses_waiting_writers_at_once,
    }
    read_your_writes {
        before_any_flush,
        read_out_while_a_code_is_taken,
        one_time_calls_wait_for_the_batch_in_flight,
    }
}
