//! Model-based property tests of every wrapper stack (`DESIGN.md` section 6).
//!
//! Random sequences of every contract operation (states, codes, sessions by
//! token, id and refresh token, clients, `cleanup_expired`, and `flush()` on
//! buffered stacks) over small key pools, so keys collide: sessions share ids,
//! access tokens and refresh tokens (one pool serves both, so one session's
//! refresh token can be another's access token), and a store with a known id
//! rotates its tokens. Between steps a [`ManualClock`] moves by steps that
//! cross record expiries, the cache's skew, `negative_ttl` and `ttl_cap`, and
//! the buffer's `max_delay` ([`stacks::model_cache_config`],
//! [`stacks::model_buffer_config`]). Each step runs on the stack under test and
//! on a [`MemoryTokenStore`] (the reference model) with the same clock; every
//! answer and error must be equal, then the whole contents, then what `close`
//! and the calls after it answer. The one documented divergence (a negative
//! cache hit skips the backend's delete-on-read) is allowed for exactly the
//! rows it concerns; see `run::Lazy`.
//!
//! A failure is shrunk to a minimal sequence, printed with compact names such
//! as `StoreSession{id:1, access:2, refresh:0, expires:+30s, refresh_expires:never}`
//! (keys and tokens are indices into the pools).
//!
//! Case counts: 256 cases per stack over memory and 64 per stack over SQLite
//! (whose writes are synced transactions) by default, up to 60 operations
//! each; the whole file runs in about 45 s in debug on two cores. Set
//! `TOKENSTORE_PROPTEST_CASES=<n>` to run `n` cases per test:
//!
//! ```text
//! TOKENSTORE_PROPTEST_CASES=500 cargo test -p tokenstore-tests --test model
//! ```
//!
//! [`ManualClock`]: tokenstore_core::ManualClock
//! [`MemoryTokenStore`]: tokenstore_core::MemoryTokenStore

#[path = "model/fixed.rs"]
mod fixed;
#[path = "model/ops.rs"]
mod ops;
#[path = "model/run.rs"]
mod run;
#[path = "model/stacks.rs"]
mod stacks;

use stacks::{ModelBuffered, ModelCached, ModelSharded};
use tokenstore_tests::{Buffered, Cached, MemoryFactory, Smol, SqliteFactory, Tokio};

/// Default cases for stacks over memory (fast).
const MEMORY_CASES: u32 = 256;
/// Default cases for stacks over SQLite (every write is a synced transaction).
const SQLITE_CASES: u32 = 64;

/// Emits one `#[test]` per stack and runtime.
macro_rules! model_tests {
    ($($name:ident: $factory:ty, $runtime:ty, $cases:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run::check::<$factory, $runtime>($cases);
            }
        )*
    };
}

model_tests! {
    cached_memory_tokio: ModelCached<MemoryFactory>, Tokio, MEMORY_CASES;
    cached_memory_smol: ModelCached<MemoryFactory>, Smol, MEMORY_CASES;
    buffered_memory_tokio: ModelBuffered<MemoryFactory, false>, Tokio, MEMORY_CASES;
    buffered_memory_smol: ModelBuffered<MemoryFactory, false>, Smol, MEMORY_CASES;
    durable_memory_tokio: ModelBuffered<MemoryFactory, true>, Tokio, MEMORY_CASES;
    durable_memory_smol: ModelBuffered<MemoryFactory, true>, Smol, MEMORY_CASES;
    cached_buffered_memory_tokio: ModelCached<ModelBuffered<MemoryFactory, false>>, Tokio, MEMORY_CASES;
    cached_buffered_memory_smol: ModelCached<ModelBuffered<MemoryFactory, false>>, Smol, MEMORY_CASES;
    sharded_memory_tokio: ModelSharded<MemoryFactory>, Tokio, MEMORY_CASES;
    sharded_buffered_memory_smol: ModelSharded<ModelBuffered<MemoryFactory, false>>, Smol, MEMORY_CASES;
    sqlite_tokio: SqliteFactory, Tokio, SQLITE_CASES;
    cached_sqlite_tokio: ModelCached<SqliteFactory>, Tokio, SQLITE_CASES;
    buffered_sqlite_tokio: ModelBuffered<SqliteFactory, false>, Tokio, SQLITE_CASES;
    durable_sqlite_smol: ModelBuffered<SqliteFactory, true>, Smol, SQLITE_CASES;
    cached_buffered_sqlite_tokio: ModelCached<ModelBuffered<SqliteFactory, false>>, Tokio, SQLITE_CASES;
    // The contract suite's own stacks and configuration (entries live until
    // their record's expiry, absences for a minute, a flush as soon as the
    // worker is idle).
    contract_config_cached_buffered_memory_tokio: Cached<Buffered<MemoryFactory, false>>, Tokio, MEMORY_CASES;
    contract_config_cached_buffered_sqlite_smol: Cached<Buffered<SqliteFactory, false>>, Smol, SQLITE_CASES;
}
