//! The [`TokenStore`] contract and the optional [`BulkSessionStore`] capability.

use crate::WriteOp;
use crate::feed::InvalidationFeed;
use crate::{AuthCodeRecord, ClientRecord, StateRecord, StoreError, StoredSession, TokenHash};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, `Send` future: the shape of the object-safe [`BulkSessionStore`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`TokenStore::cleanup_expired`] removed, per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupCounts {
    /// Expired states removed.
    pub states: u64,
    /// Expired authorization codes removed.
    pub auth_codes: u64,
    /// Sessions removed that no lookup could return again.
    pub sessions: u64,
}

/// The token store contract: single operations, async, backend-agnostic.
///
/// Every backend and every wrapper stack shows the same semantics
/// (`DESIGN.md` section 3):
///
/// - States are one-time: [`consume_state`](Self::consume_state) returns a record
///   once, then `None`. Auth codes are loaded without being consumed, then removed;
///   [`try_delete_auth_code`](Self::try_delete_auth_code) returns `true` exactly once
///   for a live code. Expired states and codes are never returned.
/// - Sessions are keyed by the SHA-256 of the access token (and of the refresh
///   token). Access-token hash, refresh-token hash and session id are each unique:
///   storing a session replaces every stored session that shares any of them.
/// - Expiry follows mxcp (see [`StoredSession::visibility_by_access`] and
///   [`StoredSession::visibility_by_refresh`]); expired rows are deleted on read
///   where mxcp deletes them, and [`cleanup_expired`](Self::cleanup_expired) removes
///   exactly what can never be returned again.
/// - Time comes from the store's [`Clock`](crate::Clock).
/// - Bad input gets a typed error and changes nothing; after [`close`](Self::close)
///   every operation returns [`StoreError::Closed`]. What is bad is decided in
///   core, identically for every backend: an empty key, a key over
///   [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES) or holding a NUL byte (lookups and
///   deletes included, see [`validate_key`](crate::validate_key)); a NUL byte in
///   any field stored as its own text column (secrets included; lists and
///   `user_info` are JSON and may hold one); a stored time before
///   [`MIN_STORABLE_TIME`](crate::MIN_STORABLE_TIME); a session without an access
///   expiry or with a raw profile deeper than
///   [`MAX_PROFILE_DEPTH`](crate::MAX_PROFILE_DEPTH). See each record's
///   `validate`.
///
/// Records go in and come out as `Arc`s, so a wrapper can hold, queue or cache
/// them and a cache hit costs a reference count rather than a deep copy.
///
/// The methods return `impl Future + Send` (written as `async fn` in
/// implementations): no allocation on the single-operation path, and the futures
/// can be spawned on a multi-threaded runtime. The price is that `TokenStore` is
/// not dyn-compatible; wrappers are generic over their delegate instead.
pub trait TokenStore: Send + Sync {
    /// Stores a state, replacing one with the same value.
    fn store_state(
        &self,
        record: Arc<StateRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes and returns a live state; `None` if absent or expired (an expired one
    /// is removed too).
    fn consume_state(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<Arc<StateRecord>>, StoreError>> + Send;

    /// Stores an authorization code, replacing one with the same code.
    fn store_auth_code(
        &self,
        record: Arc<AuthCodeRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Loads a live code without consuming it; an expired one is removed.
    fn load_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<Arc<AuthCodeRecord>>, StoreError>> + Send;

    /// Removes a code if present.
    fn delete_auth_code(&self, code: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a code; `true` only for the one caller that removed it while it was
    /// live. An expired code is removed and reported as `false`.
    fn try_delete_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a session, replacing every session sharing its access-token hash,
    /// refresh-token hash or session id.
    fn store_session(
        &self,
        record: Arc<StoredSession>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Loads a session by its raw access token.
    fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send;

    /// Loads a session by its id (same expiry rule as by access token).
    fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send;

    /// Loads a session by its raw refresh token.
    fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send;

    /// Deletes the session with this access token, if any.
    fn delete_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the session with this id, if any.
    fn delete_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a client, replacing one with the same id.
    fn store_client(
        &self,
        record: Arc<ClientRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Loads a client.
    fn load_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<ClientRecord>>, StoreError>> + Send;

    /// Every client, ordered by client id.
    fn list_clients(
        &self,
    ) -> impl Future<Output = Result<Vec<Arc<ClientRecord>>, StoreError>> + Send;

    /// Deletes a client, if present.
    fn delete_client(&self, client_id: &str)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes every expired state and code and every session no lookup can return
    /// again; returns the counts.
    fn cleanup_expired(&self) -> impl Future<Output = Result<CleanupCounts, StoreError>> + Send;

    /// Closes the store. Idempotent; afterwards every operation returns
    /// [`StoreError::Closed`].
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The bulk capability, when this store has one (feature detection at run time).
    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        None
    }

    /// The atomic-batch capability, when this store has one (feature detection at
    /// run time): the write buffer then applies a whole flush of mixed writes in
    /// one call (for SQLite, one transaction).
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        None
    }

    /// The invalidation feed, when this store has one (feature detection at run
    /// time): the keys that writes on any instance invalidated, which lets the
    /// read cache of every instance keep the staleness bound of `DESIGN.md`
    /// section 7.
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        None
    }
}

/// Optional: applies a batch of mixed writes atomically; see
/// [`TokenStore::batch_writer`].
///
/// The outcome equals applying every write one by one in order, and either all of
/// them take effect or none does. Every write is validated before anything
/// changes; an invalid one fails the whole batch with its
/// [`StoreError::InvalidInput`].
pub trait BatchWriteStore: Send + Sync {
    /// Applies `writes` in order, atomically.
    fn apply_batch(&self, writes: Vec<WriteOp>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Does the CPU work of writes that a later [`apply_batch`](Self::apply_batch)
    /// will probably receive (hashing, sealing, encoding), on the caller's
    /// thread, so the batch in flight and this work overlap. A write buffer
    /// calls it with [`BufferMachine::prepare_next`](crate::buffer::BufferMachine::prepare_next)
    /// while a batch commits.
    ///
    /// Only an optimisation: it changes nothing stored, a write prepared but
    /// never applied is forgotten, one applied unprepared is prepared then, and
    /// a write that cannot be prepared (invalid, no key) is left for
    /// `apply_batch` to refuse. The default does nothing.
    fn prepare(&self, writes: &[WriteOp]) {
        let _ = writes;
    }
}

/// Optional bulk operations on sessions; see [`TokenStore::bulk`].
///
/// A bulk call leaves the store exactly as the loop of single calls in the same
/// order would. Its futures are boxed so the capability can be handed out as
/// `Option<&dyn BulkSessionStore>`: one allocation per bulk call, amortized over
/// the whole batch, while [`TokenStore`]'s single-operation path stays
/// allocation-free.
pub trait BulkSessionStore: Send + Sync {
    /// Stores every session in order (each with [`TokenStore::store_session`]'s
    /// replacement rule), atomically where the backend can.
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Deletes every session whose access-token hash is listed; returns how many
    /// were deleted.
    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Same outcome as [`TokenStore::cleanup_expired`], by the fastest path the
    /// backend has.
    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>>;
}

/// A shared store is a store: several wrappers (or a wrapper and direct callers)
/// can use one backend.
impl<S: TokenStore + ?Sized> TokenStore for Arc<S> {
    fn store_state(
        &self,
        record: Arc<StateRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).store_state(record)
    }
    fn consume_state(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<Arc<StateRecord>>, StoreError>> + Send {
        (**self).consume_state(state)
    }
    fn store_auth_code(
        &self,
        record: Arc<AuthCodeRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).store_auth_code(record)
    }
    fn load_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<Arc<AuthCodeRecord>>, StoreError>> + Send {
        (**self).load_auth_code(code)
    }
    fn delete_auth_code(&self, code: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete_auth_code(code)
    }
    fn try_delete_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).try_delete_auth_code(code)
    }
    fn store_session(
        &self,
        record: Arc<StoredSession>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).store_session(record)
    }
    fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        (**self).load_session_by_token(access_token)
    }
    fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        (**self).load_session_by_id(session_id)
    }
    fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        (**self).load_session_by_refresh_token(refresh_token)
    }
    fn delete_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete_session_by_token(access_token)
    }
    fn delete_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete_session_by_id(session_id)
    }
    fn store_client(
        &self,
        record: Arc<ClientRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).store_client(record)
    }
    fn load_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<ClientRecord>>, StoreError>> + Send {
        (**self).load_client(client_id)
    }
    fn list_clients(
        &self,
    ) -> impl Future<Output = Result<Vec<Arc<ClientRecord>>, StoreError>> + Send {
        (**self).list_clients()
    }
    fn delete_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete_client(client_id)
    }
    fn cleanup_expired(&self) -> impl Future<Output = Result<CleanupCounts, StoreError>> + Send {
        (**self).cleanup_expired()
    }
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).close()
    }
    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        (**self).bulk()
    }
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        (**self).batch_writer()
    }
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        (**self).invalidation_feed()
    }
}
