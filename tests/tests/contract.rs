//! The contract suite, instantiated per backend and per runtime.
//!
//! Test names say where they run: `memory_tokio::sessions::rotation_invalidates_old_tokens`;
//! `cached_<backend>_<runtime>` is the read cache over that backend,
//! `buffered_` / `durable_` the write buffer (`Ack::Queued` / `Ack::Durable`),
//! `cached_buffered_` the cache over the buffer; `plain_` marks a delegate
//! without the bulk and batch capabilities (the stacks must work without
//! them and must not advertise them). The PostgreSQL stacks build with the
//! `postgres` feature (they need a server: see the README).

use tokenstore_tests::{
    Buffered, Cached, MemoryFactory, Plain, Smol, SqliteFactory, Tokio, cache_machine_suite,
    cache_suite, contract_suite,
};
#[cfg(feature = "postgres")]
use tokenstore_tests::{PostgresFactory, TwoPostgres};

contract_suite!(memory_tokio, MemoryFactory, Tokio);
contract_suite!(memory_smol, MemoryFactory, Smol);
contract_suite!(sqlite_tokio, SqliteFactory, Tokio);
contract_suite!(sqlite_smol, SqliteFactory, Smol);
#[cfg(feature = "postgres")]
contract_suite!(postgres_tokio, PostgresFactory, Tokio);
#[cfg(feature = "postgres")]
contract_suite!(postgres_smol, PostgresFactory, Smol);
#[cfg(feature = "postgres")]
contract_suite!(two_postgres_tokio, TwoPostgres, Tokio);
#[cfg(feature = "postgres")]
contract_suite!(two_postgres_smol, TwoPostgres, Smol);
contract_suite!(cached_memory_tokio, Cached<MemoryFactory>, Tokio);
contract_suite!(cached_memory_smol, Cached<MemoryFactory>, Smol);
contract_suite!(cached_sqlite_tokio, Cached<SqliteFactory>, Tokio);
contract_suite!(cached_sqlite_smol, Cached<SqliteFactory>, Smol);
contract_suite!(buffered_memory_tokio, Buffered<MemoryFactory, false>, Tokio);
contract_suite!(buffered_memory_smol, Buffered<MemoryFactory, false>, Smol);
contract_suite!(durable_memory_tokio, Buffered<MemoryFactory, true>, Tokio);
contract_suite!(durable_memory_smol, Buffered<MemoryFactory, true>, Smol);
contract_suite!(buffered_sqlite_tokio, Buffered<SqliteFactory, false>, Tokio);
contract_suite!(buffered_sqlite_smol, Buffered<SqliteFactory, false>, Smol);
contract_suite!(durable_sqlite_tokio, Buffered<SqliteFactory, true>, Tokio);
contract_suite!(durable_sqlite_smol, Buffered<SqliteFactory, true>, Smol);
contract_suite!(
    cached_buffered_sqlite_tokio,
    Cached<Buffered<SqliteFactory, false>>,
    Tokio
);
contract_suite!(
    cached_buffered_sqlite_smol,
    Cached<Buffered<SqliteFactory, false>>,
    Smol
);
contract_suite!(plain_memory_tokio, Plain<MemoryFactory>, Tokio, without bulk);
contract_suite!(
    buffered_plain_memory_smol,
    Buffered<Plain<MemoryFactory>, false>,
    Smol,
    without bulk
);
contract_suite!(
    cached_buffered_plain_sqlite_tokio,
    Cached<Buffered<Plain<SqliteFactory>, true>>,
    Tokio,
    without bulk
);

#[cfg(feature = "postgres")]
contract_suite!(cached_postgres_tokio, Cached<PostgresFactory>, Tokio);
#[cfg(feature = "postgres")]
contract_suite!(cached_postgres_smol, Cached<PostgresFactory>, Smol);
#[cfg(feature = "postgres")]
contract_suite!(buffered_postgres_tokio, Buffered<PostgresFactory, false>, Tokio);
#[cfg(feature = "postgres")]
contract_suite!(buffered_postgres_smol, Buffered<PostgresFactory, false>, Smol);
#[cfg(feature = "postgres")]
contract_suite!(durable_postgres_tokio, Buffered<PostgresFactory, true>, Tokio);
#[cfg(feature = "postgres")]
contract_suite!(durable_postgres_smol, Buffered<PostgresFactory, true>, Smol);
#[cfg(feature = "postgres")]
contract_suite!(
    cached_buffered_postgres_tokio,
    Cached<Buffered<PostgresFactory, false>>,
    Tokio
);
#[cfg(feature = "postgres")]
contract_suite!(
    cached_buffered_postgres_smol,
    Cached<Buffered<PostgresFactory, false>>,
    Smol
);

cache_suite!(cache_memory_tokio, MemoryFactory, Tokio);
cache_suite!(cache_memory_smol, MemoryFactory, Smol);
cache_suite!(cache_sqlite_tokio, SqliteFactory, Tokio);
cache_suite!(cache_sqlite_smol, SqliteFactory, Smol);
#[cfg(feature = "postgres")]
cache_suite!(cache_postgres_tokio, PostgresFactory, Tokio);
#[cfg(feature = "postgres")]
cache_suite!(cache_postgres_smol, PostgresFactory, Smol);
cache_machine_suite!(cache_machine);
