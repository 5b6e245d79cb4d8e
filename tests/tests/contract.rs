//! The contract suite, instantiated per backend and per runtime.
//!
//! Test names say where they run: `memory_tokio::sessions::rotation_invalidates_old_tokens`.

use tokenstore_tests::{MemoryFactory, Smol, SqliteFactory, Tokio, contract_suite};

contract_suite!(memory_tokio, MemoryFactory, Tokio);
contract_suite!(memory_smol, MemoryFactory, Smol);
contract_suite!(sqlite_tokio, SqliteFactory, Tokio);
contract_suite!(sqlite_smol, SqliteFactory, Smol);
