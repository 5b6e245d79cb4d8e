//! [`PostgresTokenStore`]: the [`TokenStore`] contract on PostgreSQL.
//!
//! Each method checks its input, reads the clock, and sends one job to the
//! runtime thread; the job does the encoding, encryption and SQL there.

use crate::builder::{Info, PostgresTokenStoreBuilder};
use crate::conn::Db;
use crate::error::Fail;
use crate::hints::Notifier;
use crate::session::{By, Key};
use crate::worker::{Mode, Worker};
use crate::{client, code, session, state};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use tokenstore_core::feed::{HintBoard, InvalidationFeed};
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BulkSessionStore, CleanupCounts, ClientRecord, Clock,
    Contents, StateRecord, StoreError, StoredSession, TokenHash, TokenStore, validate_key,
};

/// A [`TokenStore`] in a PostgreSQL database that several instances may share.
///
/// Made by [`PostgresTokenStore::builder`]. The connections live on a runtime
/// thread the store owns, so it works under tokio, smol or a plain
/// `block_on`. It has the bulk ([`TokenStore::bulk`]), atomic-batch
/// ([`TokenStore::batch_writer`]) and, unless turned off, invalidation-feed
/// ([`TokenStore::invalidation_feed`]) capabilities. See the [crate docs](crate).
pub struct PostgresTokenStore {
    worker: Worker,
    clock: Arc<dyn Clock>,
    info: Info,
    feed: Feed,
}

/// The store's side of the invalidation feed.
pub(crate) struct Feed {
    /// Whether writes append to the log.
    pub(crate) logs: bool,
    /// The board the listener raises; `None` without hints.
    pub(crate) board: Option<Arc<HintBoard>>,
    /// Told after every logged write committed; `None` without hints.
    pub(crate) notifier: Option<Arc<Notifier>>,
}

impl PostgresTokenStore {
    /// Starts configuring a store at `url`: `postgresql://user:password@host:port/db?...`
    /// or libpq key-value pairs (`host=/run/postgresql dbname=auth`).
    pub fn builder(url: &str) -> PostgresTokenStoreBuilder {
        PostgresTokenStoreBuilder::from_url(url)
    }

    /// Starts configuring a store with a ready [`tokio_postgres::Config`].
    pub fn builder_with_config(config: tokio_postgres::Config) -> PostgresTokenStoreBuilder {
        PostgresTokenStoreBuilder::from_config(config)
    }

    pub(crate) fn new(worker: Worker, clock: Arc<dyn Clock>, info: Info, feed: Feed) -> Self {
        Self {
            worker,
            clock,
            info,
            feed,
        }
    }

    /// The hint board, when hints are on.
    pub(crate) fn hint_board(&self) -> Option<&HintBoard> {
        self.feed.board.as_deref()
    }

    /// Everything stored, expired rows included, in [`Contents`]' order, read
    /// in one snapshot. A corrupt row fails the call.
    pub async fn contents(&self) -> Result<Contents, StoreError> {
        self.run("contents", Mode::Snapshot, |db| async move {
            Ok(Contents {
                states: arcs(state::all(&db).await?),
                auth_codes: arcs(code::all(&db).await?),
                sessions: arcs(session::all(&db).await?),
                clients: arcs(client::all(&db).await?),
            })
        })
        .await
    }

    /// Runs a job on the runtime thread.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        mode: Mode,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Db) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Fail>> + Send + 'static,
    {
        self.worker.run(op, mode, f).await
    }

    /// Runs a write that can invalidate cached keys (and so logs them); once
    /// its `COMMIT` returned, tells the notifier, which may send a hint.
    pub(crate) async fn write<T, F, Fut>(
        &self,
        op: &'static str,
        mode: Mode,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Db) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Fail>> + Send + 'static,
    {
        let out = self.worker.run(op, mode, f).await?;
        if let Some(notifier) = &self.feed.notifier {
            notifier.committed();
        }
        Ok(out)
    }

    async fn load_session(
        &self,
        op: &'static str,
        by: By,
        key: Key,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        let now = self.clock.now();
        let key = Arc::new(key);
        let found = self
            .run(op, Mode::Auto, move |db| {
                let key = Arc::clone(&key);
                async move { session::load(&db, by, &key, now).await }
            })
            .await?;
        Ok(found.map(Arc::new))
    }
}

fn arcs<T>(records: Vec<T>) -> Vec<Arc<T>> {
    records.into_iter().map(Arc::new).collect()
}

impl TokenStore for PostgresTokenStore {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        record.validate()?;
        self.run("store_state", Mode::Auto, move |db| {
            let record = Arc::clone(&record);
            async move { state::upsert(&db, &record).await }
        })
        .await
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        validate_key("state", state)?;
        let (state, now) = (Arc::<str>::from(state), self.clock.now());
        let found = self
            .run("consume_state", Mode::Tx, move |db| {
                let state = Arc::clone(&state);
                async move { state::consume(&db, &state, now).await }
            })
            .await?;
        Ok(found.map(Arc::new))
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        record.validate()?;
        self.write("store_auth_code", Mode::Auto, move |db| {
            let record = Arc::clone(&record);
            async move { code::upsert(&db, &record).await }
        })
        .await
    }

    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        validate_key("code", code)?;
        let (code, now) = (Arc::<str>::from(code), self.clock.now());
        let found = self
            .run("load_auth_code", Mode::Auto, move |db| {
                let code = Arc::clone(&code);
                async move { code::load(&db, &code, now).await }
            })
            .await?;
        Ok(found.map(Arc::new))
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        validate_key("code", code)?;
        let code = Arc::<str>::from(code);
        self.write("delete_auth_code", Mode::Auto, move |db| {
            let code = Arc::clone(&code);
            async move { code::delete(&db, &code).await }
        })
        .await
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        validate_key("code", code)?;
        let (code, now) = (Arc::<str>::from(code), self.clock.now());
        self.write("try_delete_auth_code", Mode::Auto, move |db| {
            let code = Arc::clone(&code);
            async move { code::try_delete(&db, &code, now).await }
        })
        .await
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        record.validate()?;
        self.write("store_session", Mode::Tx, move |db| {
            let record = Arc::clone(&record);
            async move { session::store(&db, &record).await }
        })
        .await
    }

    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("access_token", access_token)?;
        let key = Key::Hash(TokenHash::of(access_token));
        self.load_session("load_session_by_token", By::Access, key)
            .await
    }

    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("session_id", session_id)?;
        let key = Key::Id(session_id.to_owned());
        self.load_session("load_session_by_id", By::Id, key).await
    }

    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("refresh_token", refresh_token)?;
        let key = Key::Hash(TokenHash::of(refresh_token));
        self.load_session("load_session_by_refresh_token", By::Refresh, key)
            .await
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        validate_key("access_token", access_token)?;
        let hash = TokenHash::of(access_token);
        self.write(
            "delete_session_by_token",
            Mode::Auto,
            move |db| async move { session::delete_by_access(&db, hash).await },
        )
        .await
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        validate_key("session_id", session_id)?;
        let id = Arc::<str>::from(session_id);
        self.write("delete_session_by_id", Mode::Auto, move |db| {
            let id = Arc::clone(&id);
            async move { session::delete_by_id(&db, &id).await }
        })
        .await
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        record.validate()?;
        self.write("store_client", Mode::Auto, move |db| {
            let record = Arc::clone(&record);
            async move { client::upsert(&db, &record).await }
        })
        .await
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        validate_key("client_id", client_id)?;
        let id = Arc::<str>::from(client_id);
        let found = self
            .run("load_client", Mode::Auto, move |db| {
                let id = Arc::clone(&id);
                async move { client::load(&db, &id).await }
            })
            .await?;
        Ok(found.map(Arc::new))
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        let clients = self
            .run("list_clients", Mode::Auto, |db| async move {
                client::all(&db).await
            })
            .await?;
        Ok(arcs(clients))
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        validate_key("client_id", client_id)?;
        let id = Arc::<str>::from(client_id);
        self.write("delete_client", Mode::Auto, move |db| {
            let id = Arc::clone(&id);
            async move { client::delete(&db, &id).await }
        })
        .await
    }

    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        let now = self.clock.now();
        self.run("cleanup_expired", Mode::Tx, move |db| async move {
            Ok(CleanupCounts {
                states: state::delete_expired(&db, now).await?,
                auth_codes: code::delete_expired(&db, now).await?,
                sessions: session::delete_dead(&db, now).await?,
            })
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.worker.close().await
    }

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        Some(self)
    }

    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        Some(self)
    }

    /// `Some` unless the log was turned off with
    /// [`invalidation_log(false)`](crate::PostgresTokenStoreBuilder::invalidation_log).
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        if self.feed.logs { Some(self) } else { None }
    }
}

impl fmt::Debug for PostgresTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTokenStore")
            .field("targets", &self.info.targets)
            .field("dbname", &self.info.dbname)
            .field("user", &self.info.user)
            .field("schema", &self.info.schema)
            .field("pool_size", &self.info.pool_size)
            .field("encrypted", &self.info.encrypted)
            .field("tls", &self.info.tls)
            .field("invalidation_log", &self.feed.logs)
            .field("invalidation_hints", &self.feed.board.is_some())
            .field("closed", &self.worker.is_closed())
            .field("clock", &self.clock)
            .finish()
    }
}
