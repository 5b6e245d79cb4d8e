//! [`TwoPostgres`]: two [`PostgresTokenStore`]s on one database behind one
//! [`Alternating`] store, so every suite that runs on a factory (the contract
//! suite, the model-based property tests) checks the contract *across*
//! instances: consecutive calls go to different stores, as consecutive
//! requests of a client go to different replicas behind a load balancer.

use crate::{Factory, PostgresFactory};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BulkSessionStore, CleanupCounts, ClientRecord, Contents,
    ManualClock, StateRecord, StoreError, StoredSession, TokenStore,
};
use tokenstore_pgtest::TestDatabase;
use tokenstore_postgres::PostgresTokenStore;

/// Two stores used in turn: call `n` goes to store `n % 2`. `close` closes
/// both; the capabilities are taken from the store whose turn it is.
pub struct Alternating<S> {
    stores: [S; 2],
    next: AtomicUsize,
}

impl<S> Alternating<S> {
    /// `a` and `b`, used in turn starting with `a`.
    pub fn new(a: S, b: S) -> Self {
        Self {
            stores: [a, b],
            next: AtomicUsize::new(0),
        }
    }

    /// The store whose turn it is (and moves the turn on).
    fn pick(&self) -> &S {
        &self.stores[self.next.fetch_add(1, Ordering::Relaxed) % 2]
    }

    /// Both stores.
    pub fn stores(&self) -> &[S; 2] {
        &self.stores
    }
}

impl<S: fmt::Debug> fmt::Debug for Alternating<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alternating")
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

impl<S: TokenStore> TokenStore for Alternating<S> {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        self.pick().store_state(record).await
    }
    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        self.pick().consume_state(state).await
    }
    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        self.pick().store_auth_code(record).await
    }
    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        self.pick().load_auth_code(code).await
    }
    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        self.pick().delete_auth_code(code).await
    }
    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        self.pick().try_delete_auth_code(code).await
    }
    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        self.pick().store_session(record).await
    }
    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.pick().load_session_by_token(access_token).await
    }
    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.pick().load_session_by_id(session_id).await
    }
    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.pick()
            .load_session_by_refresh_token(refresh_token)
            .await
    }
    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        self.pick().delete_session_by_token(access_token).await
    }
    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        self.pick().delete_session_by_id(session_id).await
    }
    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        self.pick().store_client(record).await
    }
    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        self.pick().load_client(client_id).await
    }
    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        self.pick().list_clients().await
    }
    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.pick().delete_client(client_id).await
    }
    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        self.pick().cleanup_expired().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        let (a, b) = (self.stores[0].close().await, self.stores[1].close().await);
        a.and(b)
    }
    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.pick().bulk()
    }
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        self.pick().batch_writer()
    }
}

/// Two [`PostgresTokenStore`]s (the suite's key, one clock) on one fresh
/// database, used in turn.
#[derive(Debug, Clone, Copy)]
pub struct TwoPostgres;

impl Factory for TwoPostgres {
    type Store = Alternating<PostgresTokenStore>;
    type Guard = TestDatabase;

    async fn make(clock: ManualClock) -> (Self::Store, TestDatabase) {
        let db = tokenstore_pgtest::shared().database();
        let a = PostgresFactory::open(&db, clock.clone()).await;
        let b = PostgresFactory::open(&db, clock).await;
        (Alternating::new(a, b), db)
    }

    async fn contents(store: &Self::Store, db: &TestDatabase) -> Contents {
        PostgresFactory::contents(&store.stores()[0], db).await
    }

    fn config_secrets() -> Vec<String> {
        PostgresFactory::config_secrets()
    }
}
