//! # tokenstore-tests
//!
//! The contract suite of tokenstore, written once and run against every backend
//! and every wrapper stack, on tokio and on smol (`DESIGN.md` section 6).
//!
//! - [`Runtime`]: `block_on` and `spawn`, implemented by [`Tokio`] and [`Smol`].
//! - [`Factory`]: makes a fresh store with a [`ManualClock`](tokenstore_core::ManualClock)
//!   and reads its whole [`Contents`](tokenstore_core::Contents);
//!   [`MemoryFactory`] is the reference model's, [`SqliteFactory`] the SQLite backend's,
//!   [`PostgresFactory`] the PostgreSQL backend's (a fresh database per test),
//!   [`TwoPostgres`] two PostgreSQL stores on one database used in turn,
//!   and [`Cached`] puts a [`CachingTokenStore`](tokenstore::CachingTokenStore) over
//!   any of them.
//! - [`contract`]: the test bodies, `pub async fn name<F: Factory, R: Runtime>()`,
//!   one module per operation family.
//! - [`contract_suite!`]: emits one `#[test]` per body for a factory and a
//!   runtime, named `<suite>::<family>::<test>`, for example
//!   `memory_tokio::sessions::rotation_invalidates_old_tokens`.
//!
//! `tests/contract.rs` instantiates the suite:
//!
//! ```text
//! use tokenstore_tests::{MemoryFactory, Smol, Tokio, contract_suite};
//!
//! contract_suite!(memory_tokio, MemoryFactory, Tokio);
//! contract_suite!(memory_smol, MemoryFactory, Smol);
//! ```
//!
//! Tests are deterministic: time moves only through the fixture's manual clock,
//! and nothing sleeps.

mod buffered;
pub mod cache;
mod cached;
pub mod compare;
pub mod contract;
pub mod crash;
mod factory;
pub mod instances;
mod postgres;
pub mod probe;
pub mod props;
pub mod replica;
mod runtime;
pub mod sample;
mod sqlite;
mod suite;
mod two_instances;

pub use buffered::{Buffered, contract_buffer_config};
pub use cached::{Cached, contract_cache_config};
pub use factory::{Factory, Fixture, MemoryFactory, Plain, T0};
pub use postgres::PostgresFactory;
pub use runtime::{Runtime, Smol, Task, Tokio, WORKER_THREADS};
pub use sqlite::{SqliteFactory, TEST_KEY};
pub use two_instances::{Alternating, TwoPostgres};

/// The README's Rust blocks, compiled as doctests of this crate (which has every
/// feature of `tokenstore` on, smol's included); `no_run` blocks only compile.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
