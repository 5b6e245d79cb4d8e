//! # tokenstore-postgres
//!
//! [`PostgresTokenStore`]: the [`TokenStore`](tokenstore_core::TokenStore)
//! contract in a PostgreSQL database that several instances of a server share.
//!
//! - **Runtime**: the store owns a small current-thread tokio runtime on a
//!   thread of its own, with its connection pool. Callers send it jobs through
//!   `futures-channel` queues and await plain oneshot futures, so the store
//!   works under tokio, under smol, or with a bare `block_on`, and a smol user
//!   runs no tokio runtime of their own.
//! - **Schema**: tables `states`, `auth_codes`, `sessions` and `oauth_clients`
//!   in a schema of their own (`tokenstore` by default), plus `schema_version`.
//!   `open()` creates or migrates it in one transaction under an advisory lock
//!   and refuses a schema newer than this crate with
//!   [`StoreError::InvalidConfig`](tokenstore_core::StoreError::InvalidConfig).
//!   Types: token hashes are `bytea` (32 bytes); times `timestamptz`, exact to
//!   the microsecond; lists and `user_info` `json` (kept as written, unlike
//!   `jsonb`, which rewrites numbers); keys `text COLLATE "C"` (byte-wise
//!   equality and order); secrets `text`. What `text` and `timestamptz` cannot
//!   hold (a NUL byte, a time before 4713 BC) is refused in core, as on every
//!   backend, with a typed
//!   [`InvalidInput`](tokenstore_core::InvalidInput) before anything is sent.
//! - **Uniqueness**: access-token hash, refresh-token hash and session id are
//!   each unique (primary key and unique constraints); a session store deletes
//!   the rows sharing any of them and inserts, in one transaction, under
//!   advisory locks on its keys taken in a global order. Conflicts with
//!   concurrent transactions (serialization failures, deadlocks, unique
//!   violations) are retried a bounded number of times, then reported as
//!   [`StoreError::Backend`](tokenstore_core::StoreError::Backend).
//! - **One-time operations**: `consume_state` and `try_delete_auth_code` are
//!   each one atomic `DELETE ... RETURNING`, so exactly one caller wins across
//!   every instance.
//! - **Encryption at rest**: as `tokenstore-sqlite`: a Fernet
//!   [key](PostgresTokenStoreBuilder::encryption_key) or the explicit
//!   [plaintext opt-in](PostgresTokenStoreBuilder::allow_plaintext_tokens);
//!   sealed values are the same Fernet tokens, so a record moved between the
//!   backends decrypts with the same key.
//! - **Bulk and batch**: [`TokenStore::bulk`](tokenstore_core::TokenStore::bulk)
//!   and [`TokenStore::batch_writer`](tokenstore_core::TokenStore::batch_writer),
//!   set-based (`UNNEST` arrays, `= ANY(...)`), one transaction each.
//! - **TLS**: through rustls, with libpq's `sslmode` meanings (`disable`,
//!   `prefer`, `require`, `verify-ca`, `verify-full`) and `sslrootcert` for
//!   the CA file, in the URL or with
//!   [`tls_mode`](PostgresTokenStoreBuilder::tls_mode) and
//!   [`tls_root_cert`](PostgresTokenStoreBuilder::tls_root_cert); see
//!   [`TlsMode`]. Not over Unix sockets, where PostgreSQL offers none.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokenstore_core::{Clock, StoredSession, SystemClock, TokenStore, UserInfo};
//! use tokenstore_postgres::{PostgresTokenStore, generate_key};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = generate_key(); // keep it: the tokens cannot be read without it
//! futures_lite::future::block_on(async {
//!     let store = PostgresTokenStore::builder("postgresql://auth@localhost/auth")
//!         .encryption_key(key)
//!         .pool_size(8)
//!         .open()
//!         .await?;
//!     let now = SystemClock.now();
//!     let user = UserInfo::new("github", "42", "octocat");
//!     let session = StoredSession::new("session-1", user, "access-token", now + Duration::from_secs(3600), now);
//!     store.store_session(Arc::new(session)).await?;
//!     assert!(store.load_session_by_token("access-token").await?.is_some());
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
mod cols;
mod conn;
mod conninfo;
mod error;
mod feed;
mod hints;
mod log;
mod schema;
mod session;
mod sql;
mod state;
mod store;
mod tls;
mod types;
mod worker;

pub use builder::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_INVALIDATION_RETENTION, DEFAULT_POOL_SIZE, DEFAULT_SCHEMA, DEFAULT_STATEMENT_TIMEOUT,
    PostgresTokenStoreBuilder,
};
pub use store::PostgresTokenStore;
pub use tls::TlsMode;
pub use tokenstore_core::codec::secrets::generate_key;
pub use tokio_postgres::Config;
