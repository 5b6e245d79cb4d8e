//! The bulk capability: many session writes in one set-based transaction.

use crate::PostgresTokenStore;
use crate::batch::SessionRun;
use crate::session;
use crate::worker::Mode;
use std::sync::Arc;
use tokenstore_core::{
    BoxFuture, BulkSessionStore, CleanupCounts, StoreError, StoredSession, TokenHash, TokenStore,
};

impl BulkSessionStore for PostgresTokenStore {
    /// Validates every session, then stores them in one transaction with two
    /// statements whatever their number: one `DELETE` of every row sharing a
    /// key with any of them, one `INSERT ... SELECT FROM UNNEST(...)` of those
    /// no later session in the list replaced. The outcome is the loop of
    /// single stores'; any failure leaves the store unchanged.
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for s in &sessions {
                s.validate()?;
            }
            if sessions.is_empty() {
                return self
                    .run("bulk_store_sessions", Mode::Auto, |_| async { Ok(()) })
                    .await;
            }
            let mut run = SessionRun::default();
            for s in sessions {
                run.store(s);
            }
            let run = Arc::new(run.finish());
            self.write("bulk_store_sessions", Mode::Tx, move |db| {
                let run = Arc::clone(&run);
                async move { session::replace_many(&db, &run.0, &run.1).await }
            })
            .await
        })
    }

    /// Deletes the listed sessions with one `DELETE ... WHERE access_token_hash
    /// = ANY($1)`; returns how many were deleted.
    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let hashes = Arc::new(hashes);
        Box::pin(
            self.write("bulk_delete_sessions_by_hash", Mode::Auto, move |db| {
                let hashes = Arc::clone(&hashes);
                async move { session::delete_hashes(&db, &hashes).await }
            }),
        )
    }

    /// [`cleanup_expired`](TokenStore::cleanup_expired), which already is three
    /// set-based `DELETE`s in one transaction.
    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
        Box::pin(TokenStore::cleanup_expired(self))
    }
}
