//! The contract suite, instantiated per backend and per runtime.
//!
//! Test names say where they run: `memory_tokio::sessions::rotation_invalidates_old_tokens`;
//! `cached_<backend>_<runtime>` is the read cache over that backend.

use tokenstore_tests::{
    Cached, MemoryFactory, Smol, SqliteFactory, Tokio, cache_machine_suite, cache_suite,
    contract_suite,
};

contract_suite!(memory_tokio, MemoryFactory, Tokio);
contract_suite!(memory_smol, MemoryFactory, Smol);
contract_suite!(sqlite_tokio, SqliteFactory, Tokio);
contract_suite!(sqlite_smol, SqliteFactory, Smol);
contract_suite!(cached_memory_tokio, Cached<MemoryFactory>, Tokio);
contract_suite!(cached_memory_smol, Cached<MemoryFactory>, Smol);
contract_suite!(cached_sqlite_tokio, Cached<SqliteFactory>, Tokio);
contract_suite!(cached_sqlite_smol, Cached<SqliteFactory>, Smol);

cache_suite!(cache_memory_tokio, MemoryFactory, Tokio);
cache_suite!(cache_memory_smol, MemoryFactory, Smol);
cache_suite!(cache_sqlite_tokio, SqliteFactory, Tokio);
cache_suite!(cache_sqlite_smol, SqliteFactory, Smol);
cache_machine_suite!(cache_machine);
