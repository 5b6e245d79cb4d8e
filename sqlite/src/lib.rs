//! # tokenstore-sqlite
//!
//! [`SqliteTokenStore`]: the [`TokenStore`](tokenstore_core::TokenStore)
//! contract in an SQLite file that mxcp 0.12.3 can read and write too.
//!
//! - **Schema**: mxcp's four tables `states`, `auth_codes`, `sessions` and
//!   `oauth_clients`, column for column, plus an index on
//!   `sessions(refresh_token_hash)`. Times are REAL Unix seconds; lists and
//!   `user_info` are JSON text, written byte for byte as mxcp writes them.
//! - **Encryption at rest**: with an [encryption key](SqliteTokenStoreBuilder::encryption_key)
//!   the token and client-secret columns hold Fernet tokens, exactly as mxcp
//!   writes them, so a file and its key move between mxcp and this crate.
//!   Without a key, storing or reading a secret fails with
//!   [`StoreError::EncryptionKeyRequired`](tokenstore_core::StoreError::EncryptionKeyRequired)
//!   unless plain text was [allowed](SqliteTokenStoreBuilder::allow_plaintext_tokens).
//!   An undecryptable or malformed row fails closed with `Decrypt` or `Corrupt`:
//!   never a wrong record, never a panic.
//! - **Threading**: a writer thread owns the one read-write connection and runs
//!   every write (and every read that deletes an expired row); a few reader
//!   threads with read-only connections run the other reads
//!   ([`readers`](SqliteTokenStoreBuilder::readers), by default one per core, 2
//!   to 8), so reads never wait for commits. No SQLite call blocks the async
//!   executor, and the store runs on tokio, smol or a plain `block_on`. The
//!   database is in WAL mode (readers and the writer never block each other)
//!   with a busy timeout and a configurable [`Synchronous`] level.
//! - **Bulk**: [`TokenStore::bulk`](tokenstore_core::TokenStore::bulk) returns
//!   the [`BulkSessionStore`](tokenstore_core::BulkSessionStore) capability:
//!   many sessions stored or deleted in one transaction.
//! - **Atomic batches**: [`TokenStore::batch_writer`](tokenstore_core::TokenStore::batch_writer)
//!   returns the [`BatchWriteStore`](tokenstore_core::BatchWriteStore)
//!   capability: any mix of writes (states, codes, sessions, clients; stores
//!   and deletes) in one transaction, so a write buffer's flush costs one commit.
//! - **Invalidation feed** (opt-in): with
//!   [`invalidation_log(true)`](SqliteTokenStoreBuilder::invalidation_log), or
//!   on a file that already has the log, every write that can invalidate a
//!   cached key also logs that key (a hash or an id, never a secret) in the
//!   same transaction, and
//!   [`TokenStore::invalidation_feed`](tokenstore_core::TokenStore::invalidation_feed)
//!   returns the [`InvalidationFeed`](tokenstore_core::feed::InvalidationFeed)
//!   capability: the keys that any store on the file (in any process) logged
//!   after a watermark, the log's rowid. So several processes sharing one file
//!   can each keep a read cache. Polling only (no hints); rows older than a
//!   [retention](SqliteTokenStoreBuilder::invalidation_retention) are pruned,
//!   and a poll from before the pruned rows answers `gap`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokenstore_core::{Clock, ManualClock, StoredSession, Timestamp, TokenStore, UserInfo};
//! use tokenstore_sqlite::{SqliteTokenStore, Synchronous, generate_key};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let key = generate_key(); // keep it: the tokens cannot be read without it
//! let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
//! futures_lite::future::block_on(async {
//!     let store = SqliteTokenStore::builder(dir.path().join("auth.sqlite"))
//!         .encryption_key(key.clone())
//!         .synchronous(Synchronous::Full)
//!         .clock(clock.clone())
//!         .open()
//!         .await?;
//!
//!     let user = UserInfo::new("github", "42", "octocat");
//!     let expires = clock.now() + Duration::from_secs(3600);
//!     let session = StoredSession::new("session-1", user, "access-token", expires, clock.now());
//!     store.store_session(Arc::new(session)).await?;
//!     let found = store.load_session_by_token("access-token").await?;
//!     assert_eq!(found.map(|s| s.session_id.clone()).as_deref(), Some("session-1"));
//!
//!     // One hour later the session has expired and is deleted on read.
//!     clock.advance(Duration::from_secs(3601));
//!     assert!(store.load_session_by_token("access-token").await?.is_none());
//!     store.close().await?;
//!     Ok(())
//! })
//! # }
//! ```
#![deny(missing_docs)]

mod batch;
mod builder;
mod bulk;
mod client;
mod code;
mod columns;
mod error;
mod feed;
mod jobs;
mod prepared;
mod readers;
mod schema;
mod session;
mod state;
mod store;
mod worker;

pub use builder::SqliteTokenStoreBuilder;
pub use schema::Synchronous;
pub use store::{SqliteStats, SqliteTokenStore};
pub use tokenstore_core::codec::secrets::generate_key;
