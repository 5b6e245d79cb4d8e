//! The model-based property tests (`tests/model.rs`'s harness) on PostgreSQL:
//! the bare store, the wrapper stacks over it, and two stores on one database
//! used in turn ([`TwoPostgres`]), each compared step by step with
//! `MemoryTokenStore`.
//!
//! 32 cases per test by default (every write is a committed transaction on a
//! server; each case gets a fresh database); `TOKENSTORE_PROPTEST_CASES`
//! overrides, as in `tests/model.rs`.

#[path = "model/ops.rs"]
mod ops;
#[path = "model/run.rs"]
mod run;
#[path = "model/stacks.rs"]
#[allow(dead_code)]
mod stacks;

use stacks::{ModelBuffered, ModelCached, Probe};
use tokenstore_core::StoreError;
use tokenstore_postgres::PostgresTokenStore;
use tokenstore_tests::{Alternating, PostgresFactory, Smol, Tokio, TwoPostgres};

/// Default cases per test.
const CASES: u32 = 32;

impl Probe for PostgresTokenStore {
    async fn flush_all(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn negative_hits(&self) -> u64 {
        0
    }
}

impl<S: Probe> Probe for Alternating<S> {
    async fn flush_all(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn negative_hits(&self) -> u64 {
        0
    }
}

macro_rules! model_tests {
    ($($name:ident: $factory:ty, $runtime:ty;)*) => {
        $(
            #[test]
            fn $name() {
                run::check::<$factory, $runtime>(CASES);
            }
        )*
    };
}

model_tests! {
    postgres_tokio: PostgresFactory, Tokio;
    two_postgres_tokio: TwoPostgres, Tokio;
    two_postgres_smol: TwoPostgres, Smol;
    cached_postgres_smol: ModelCached<PostgresFactory>, Smol;
    buffered_postgres_tokio: ModelBuffered<PostgresFactory, false>, Tokio;
    durable_two_postgres_smol: ModelBuffered<TwoPostgres, true>, Smol;
    cached_buffered_postgres_tokio: ModelCached<ModelBuffered<PostgresFactory, false>>, Tokio;
}
