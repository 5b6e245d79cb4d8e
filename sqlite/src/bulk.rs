//! The bulk capability: many session writes in one transaction.

use crate::SqliteTokenStore;
use crate::session;
use std::sync::Arc;
use tokenstore_core::{
    BoxFuture, BulkSessionStore, CleanupCounts, StoreError, StoredSession, TokenHash, TokenStore,
};

impl BulkSessionStore for SqliteTokenStore {
    /// Validates every session, then stores them in order in one transaction
    /// (one commit), reusing the prepared statements. Any failure leaves the
    /// store unchanged.
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for s in &sessions {
                s.validate()?;
            }
            self.run("bulk_store_sessions", move |db| {
                db.write(|ctx| sessions.iter().try_for_each(|s| session::store(ctx, s)))
            })
            .await
        })
    }

    /// Deletes the listed sessions in one transaction, with `DELETE ... IN (...)`
    /// chunked under SQLite's variable limit; returns how many were deleted.
    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.run("bulk_delete_sessions_by_hash", move |db| {
            db.write(|ctx| session::delete_hashes(ctx, &hashes))
        }))
    }

    /// [`cleanup_expired`](TokenStore::cleanup_expired), which already is three
    /// `DELETE`s in one transaction.
    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
        Box::pin(TokenStore::cleanup_expired(self))
    }
}
