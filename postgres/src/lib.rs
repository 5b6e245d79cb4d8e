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
//!   in a schema of their own (`tokenstore` by default), plus `schema_version`
//!   and the invalidation feed's `invalidations` and `invalidations_meta`.
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
//! - **Invalidation feed** ([`InvalidationFeed`](tokenstore_core::feed::InvalidationFeed),
//!   `DESIGN.md` section 7): several instances sharing the database each keep
//!   a read cache, and learn from the feed which keys any instance's writes
//!   removed or replaced.
//!   - *The log*: table `invalidations (xid xid8, kinds smallint[], keys
//!     bytea[], at timestamptz)`, indexed on `xid`. Every write that can
//!     invalidate a cached key (a session store, rotation or delete; a code
//!     store, delete or take; a client store or delete; in single calls,
//!     batches and bulk calls) appends one row holding all the keys it touched
//!     (a kind and the bytes of each) **in the same statement**, so the rows
//!     commit exactly when the write does. Rows hold what
//!     [`feed::encode_key`](tokenstore_core::feed::encode_key) makes of the
//!     key: token and code SHA-256 digests and ids, never a token, code or
//!     secret. A delete logs only when it removed a row; states, deletes of
//!     expired rows and `cleanup_expired` log nothing. Off with
//!     [`invalidation_log(false)`](PostgresTokenStoreBuilder::invalidation_log).
//!   - *The watermark* is a transaction-id horizon, not a sequence (sequence
//!     values are taken before commit, so `seq > last` skips a row that
//!     commits after a later one): a poll is one statement, so one snapshot,
//!     that returns every row with `xid >=` the asked watermark and, as the
//!     next watermark, the snapshot's `xmin` (every transaction below it has
//!     ended and is visible), or one past the log's highest id when that is
//!     lower (`xmin` may count ids of commits never flushed, which PostgreSQL
//!     reuses after a crash). A few rows are read twice; none is missed. A
//!     long transaction anywhere in the cluster holds the horizon back, so
//!     polls then re-read more rows. The store's own writes must commit
//!     durably (`synchronous_commit` on or `local`, the default).
//!   - *Gaps*: `invalidations_meta.pruned_through` is the highest id pruning
//!     ever deleted; a poll from a watermark at or below it, or above the
//!     database's own bounds (a restored or different database, or one that
//!     lost log rows), or meeting a row it cannot read, answers `gap`, and
//!     the caller drops its cache.
//!   - *Pruning*: a task deletes rows older than the
//!     [retention](PostgresTokenStoreBuilder::invalidation_retention)
//!     (10 minutes by default) about once a minute, raising the prune mark in
//!     the same statement; [`PostgresTokenStore::prune_invalidations`] does it
//!     at once.
//!   - *Hints*: a listener on a dedicated connection runs `LISTEN` on a
//!     channel named after the schema (`tokenstore_feed_` and a hash of the
//!     name) and raises the [`HintBoard`](tokenstore_core::feed::HintBoard) on
//!     every notification and after every (re)connect; after a logged write
//!     commits, a notifier sends a coalesced `NOTIFY` on its own connection,
//!     never inside the write's transaction. Hints only wake pollers early: a
//!     lost one costs latency, never correctness. Off with
//!     [`invalidation_hints(false)`](PostgresTokenStoreBuilder::invalidation_hints);
//!     they need a direct connection (not PgBouncer in transaction mode).
//!   - Needs PostgreSQL 13 or later (`xid8`, `pg_current_xact_id`).
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
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_INVALIDATION_RETENTION, DEFAULT_POOL_SIZE, DEFAULT_SCHEMA,
    DEFAULT_STATEMENT_TIMEOUT, PostgresTokenStoreBuilder,
};
pub use store::PostgresTokenStore;
pub use tls::TlsMode;
pub use tokenstore_core::codec::secrets::generate_key;
pub use tokio_postgres::Config;
