//! # tokenstore
//!
//! A token store an OAuth 2.0 authorization server can embed: one async contract
//! ([`TokenStore`]), an in-memory backend ([`MemoryTokenStore`]), a SQLite backend
//! (feature `sqlite`, [`sqlite::SqliteTokenStore`]), and wrappers that make any
//! backend faster without changing what it answers:
//!
//! - [`CachingTokenStore`]: a read cache (per-entry TTL from the record's own
//!   expiry, capped and skewed; negative caching; invalidation on every write;
//!   bounded memory; counters without PII).
//! - [`BufferedTokenStore`]: a write buffer (coalescing, flush on size or delay,
//!   group commit with [`Ack::Durable`], one transaction per flush on SQLite,
//!   read-your-writes, drain on close, no silent loss).
//!
//! Every decision is made by a sans-IO machine in [`tokenstore_core`] (re-exported
//! here); this crate holds them behind a lock and does the I/O they ask for. The
//! runtime-specific part is the small [`runtime::Runtime`] trait, with tokio and
//! smol implementations behind the `tokio` and `smol` features.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokenstore::{cache::CacheConfig, CachingTokenStore, MemoryTokenStore, SystemClock};
//! use tokenstore::{Clock, StoredSession, TokenStore, UserInfo};
//!
//! # futures_lite::future::block_on(async {
//! let store = CachingTokenStore::new(MemoryTokenStore::new(SystemClock), CacheConfig::default());
//! let now = SystemClock.now();
//! let session = StoredSession::new(
//!     "sid", UserInfo::new("github", "42", "octocat"), "access-token",
//!     now + Duration::from_secs(3600), now,
//! );
//! store.store_session(Arc::new(session)).await?;
//! let found = store.load_session_by_token("access-token").await?;
//! assert_eq!(found.map(|s| s.session_id.clone()).as_deref(), Some("sid"));
//! # Ok::<(), tokenstore::StoreError>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

mod buffered;
mod cached;
pub mod observe;
pub mod runtime;
mod sync;

pub use buffered::{Ack, BufferedTokenStore};
pub use cached::CachingTokenStore;
pub use tokenstore_core::*;

/// The SQLite backend (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use tokenstore_sqlite as sqlite;

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub use tokenstore_postgres as postgres;
