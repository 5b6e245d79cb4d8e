//! # tokenstore-core
//!
//! The runtime-free heart of tokenstore: the records an OAuth 2.0 authorization
//! server keeps, the async [`TokenStore`] contract every backend and wrapper
//! implements, its reference model [`MemoryTokenStore`], and
//! the sans-IO machines that decide caching and write buffering.
//!
//! Nothing here spawns a thread, opens a file or depends on an async runtime.
//! Time comes from a [`Clock`] ([`SystemClock`] in production, [`ManualClock`] in
//! tests and simulations) and is Unix time ([`Timestamp`]).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokenstore_core::*;
//!
//! # futures_lite::future::block_on(async {
//! let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
//! let store = MemoryTokenStore::new(clock.clone());
//!
//! let user = UserInfo::new("github", "42", "octocat");
//! let mut session = StoredSession::new(
//!     "session-1",
//!     user,
//!     "access-token",
//!     clock.now() + Duration::from_secs(3600),
//!     clock.now(),
//! );
//! session.refresh_token = Some(Secret::new("refresh-token"));
//! store.store_session(Arc::new(session)).await?;
//!
//! let found = store.load_session_by_token("access-token").await?.expect("live");
//! assert_eq!(found.session_id, "session-1");
//!
//! // An hour later the access token has expired, but the refresh token still works.
//! clock.advance(Duration::from_secs(3601));
//! assert!(store.load_session_by_token("access-token").await?.is_none());
//! assert!(store.load_session_by_refresh_token("refresh-token").await?.is_some());
//! # Ok::<(), StoreError>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

pub mod buffer;
pub mod cache;
pub mod codec;
mod error;
pub mod feed;
mod hash;
mod memory;
mod record;
mod secret;
mod session_key;
mod store;
mod time;
mod write;

pub use error::{InvalidInput, StoreError};
pub use hash::TokenHash;
pub use memory::{Contents, MemoryTokenStore};
pub use record::{
    AuthCodeRecord, ClientRecord, MAX_KEY_BYTES, MAX_PROFILE_DEPTH, MIN_STORABLE_TIME,
    SessionVisibility, StateRecord, StoredSession, TokenEndpointAuthMethod, UserInfo, by_access,
    by_refresh, validate_key,
};
pub use secret::Secret;
pub use session_key::SessionKey;
pub use store::{BatchWriteStore, BoxFuture, BulkSessionStore, CleanupCounts, TokenStore};
pub use time::{Clock, CoarseSystemClock, ManualClock, SystemClock, Timestamp};
pub use write::WriteOp;
