//! [`SqliteTokenStore`]: the [`TokenStore`] contract on SQLite.
//!
//! Each method checks its input, reads the clock, and sends one job to the
//! writer thread (writes) or to a reader thread (reads); the job does the
//! encoding, encryption and SQL. A lookup whose reader finds a row the expiry
//! rules call dead runs again on the writer, which deletes the row if it is
//! still there and still dead, in the same job, and answers the lookup.

use crate::builder::SqliteTokenStoreBuilder;
use crate::prepared::Prepared;
use crate::readers::Readers;
use crate::schema::Counters;
use crate::worker::{Ctx, Db, Worker};
use crate::{client, code, feed, session, state};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::feed::InvalidationFeed;
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BulkSessionStore, CleanupCounts, ClientRecord, Clock,
    Contents, SessionKey, StateRecord, StoreError, StoredSession, TokenHash, TokenStore,
    validate_key,
};

/// A [`TokenStore`] in an SQLite file with mxcp 0.12.3's schema.
///
/// Made by [`SqliteTokenStore::builder`]. Every write, and every read that
/// deletes (an expired row found by a lookup), runs on one dedicated writer
/// thread with its own connection; every other read runs on one of a small set
/// of reader threads with read-only connections
/// ([`readers`](SqliteTokenStoreBuilder::readers)), so a validation never
/// queues behind another request's commit. No SQLite call runs on the caller's
/// executor, so the store works on any async runtime. It has the bulk
/// capability ([`TokenStore::bulk`]) and the atomic-batch capability
/// ([`TokenStore::batch_writer`]), and the invalidation feed
/// ([`TokenStore::invalidation_feed`]) when the file has an
/// [invalidation log](SqliteTokenStoreBuilder::invalidation_log). See the
/// [crate docs](crate) for an example.
pub struct SqliteTokenStore {
    worker: Worker,
    /// `None` with no reader threads: reads run on the writer.
    readers: Option<Readers>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    path: PathBuf,
    encrypted: bool,
    logging: bool,
    /// The secret columns' codec, for the encoding done off the writer
    /// thread (a batch's sessions).
    pub(crate) codec: SecretCodec,
    /// Sessions encoded ahead of their batch.
    pub(crate) prepared: Prepared,
}

/// Counters of a [`SqliteTokenStore`], from SQLite's commit and rollback hooks.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SqliteStats {
    /// Transactions committed (each autocommit statement counts as one).
    pub commits: u64,
    /// Transactions rolled back.
    pub rollbacks: u64,
}

impl SqliteTokenStore {
    /// Starts configuring a store in the file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteTokenStoreBuilder {
        SqliteTokenStoreBuilder::new(path)
    }

    pub(crate) fn new(
        worker: Worker,
        readers: Option<Readers>,
        codec: SecretCodec,
        clock: Arc<dyn Clock>,
        counters: Arc<Counters>,
        path: PathBuf,
        logging: bool,
    ) -> Self {
        Self {
            worker,
            readers,
            encrypted: codec.encrypts(),
            codec,
            prepared: Prepared::default(),
            clock,
            counters,
            path,
            logging,
        }
    }

    /// Everything stored, expired rows included, in [`Contents`]' order (the
    /// order of [`MemoryTokenStore::contents`](tokenstore_core::MemoryTokenStore::contents)),
    /// read in one snapshot. A corrupt row fails the call.
    pub async fn contents(&self) -> Result<Contents, StoreError> {
        self.read_snapshot("contents", read_contents).await
    }

    /// The commit and rollback counts so far.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            rollbacks: self.counters.rollbacks.load(Ordering::Relaxed),
        }
    }

    /// How many reader threads the store runs (0: reads run on the writer).
    pub fn readers(&self) -> usize {
        self.readers.as_ref().map_or(0, Readers::count)
    }

    /// Runs a read on the first idle reader, or on the writer when there are
    /// no readers. `f` must not write (a reader's connection is read-only).
    pub(crate) async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.readers {
            Some(readers) => readers.run(op, move |r| f(r.ctx())).await,
            None => self.worker.run(op, move |db| f(db.ctx())).await,
        }
    }

    /// [`read`](Self::read) in one read transaction: one snapshot.
    pub(crate) async fn read_snapshot<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.readers {
            Some(readers) => readers.run(op, move |r| r.snapshot(f)).await,
            None => self.worker.run(op, move |db| db.snapshot(f)).await,
        }
    }

    /// Runs a job on the writer thread.
    pub(crate) async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    {
        self.worker.run(op, f).await
    }

    async fn load_session(
        &self,
        op: &'static str,
        key: SessionKey,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        let now = self.clock.now();
        let read_key = key.clone();
        match self
            .read(op, move |ctx| session::read(ctx, &read_key, now))
            .await?
        {
            session::Loaded::Live(found) => Ok(Some(Arc::from(found))),
            session::Loaded::Absent => Ok(None),
            // Deleting is a write: the writer looks again and deletes what it
            // finds dead, so a row written since the reader looked survives.
            session::Loaded::Dead => {
                let found = self
                    .run(op, move |db| session::load(db.ctx(), &key, now))
                    .await?;
                Ok(found.map(Arc::new))
            }
        }
    }
}

fn read_contents(ctx: Ctx<'_>) -> Result<Contents, StoreError> {
    Ok(Contents {
        states: arcs(state::all(ctx)?),
        auth_codes: arcs(code::all(ctx)?),
        sessions: arcs(session::all(ctx)?),
        clients: arcs(client::all(ctx)?),
    })
}

fn arcs<T>(records: Vec<T>) -> Vec<Arc<T>> {
    records.into_iter().map(Arc::new).collect()
}

fn hex(token: &str) -> String {
    TokenHash::of(token).to_hex()
}

impl TokenStore for SqliteTokenStore {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        record.validate()?;
        self.run("store_state", move |db| state::insert(db.ctx(), &record))
            .await
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        validate_key("state", state)?;
        let (state, now) = (state.to_owned(), self.clock.now());
        let found = self
            .run("consume_state", move |db| {
                db.write(|ctx| state::consume(ctx, &state, now))
            })
            .await?;
        Ok(found.map(Arc::new))
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        record.validate()?;
        self.run("store_auth_code", move |db| {
            db.logged(|ctx| code::insert(ctx, &record))
        })
        .await
    }

    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        validate_key("code", code)?;
        let (code, now) = (code.to_owned(), self.clock.now());
        let read = code.clone();
        match self
            .read("load_auth_code", move |ctx| code::read(ctx, &read, now))
            .await?
        {
            code::Loaded::Live(found) => Ok(Some(Arc::new(found))),
            code::Loaded::Absent => Ok(None),
            code::Loaded::Expired => {
                let found = self
                    .run("load_auth_code", move |db| code::load(db.ctx(), &code, now))
                    .await?;
                Ok(found.map(Arc::new))
            }
        }
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        validate_key("code", code)?;
        let code = code.to_owned();
        self.run("delete_auth_code", move |db| {
            db.logged(|ctx| code::delete(ctx, &code))
        })
        .await
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        validate_key("code", code)?;
        let (code, now) = (code.to_owned(), self.clock.now());
        self.run("try_delete_auth_code", move |db| {
            db.write(|ctx| code::try_delete(ctx, &code, now))
        })
        .await
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        record.validate()?;
        self.run("store_session", move |db| {
            db.write(|ctx| session::store(ctx, &record))
        })
        .await
    }

    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("access_token", access_token)?;
        let key = SessionKey::Access(TokenHash::of(access_token));
        self.load_session("load_session_by_token", key).await
    }

    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("session_id", session_id)?;
        let key = SessionKey::Id(session_id.to_owned());
        self.load_session("load_session_by_id", key).await
    }

    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("refresh_token", refresh_token)?;
        let key = SessionKey::Refresh(TokenHash::of(refresh_token));
        self.load_session("load_session_by_refresh_token", key)
            .await
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        validate_key("access_token", access_token)?;
        let key = hex(access_token);
        self.run("delete_session_by_token", move |db| {
            db.logged(|ctx| session::delete_by_access(ctx, &key))
        })
        .await
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        validate_key("session_id", session_id)?;
        let id = session_id.to_owned();
        self.run("delete_session_by_id", move |db| {
            db.logged(|ctx| session::delete_by_id(ctx, &id))
        })
        .await
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        record.validate()?;
        self.run("store_client", move |db| {
            db.logged(|ctx| client::insert(ctx, &record))
        })
        .await
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        validate_key("client_id", client_id)?;
        let id = client_id.to_owned();
        let found = self
            .read("load_client", move |ctx| client::load(ctx, &id))
            .await?;
        Ok(found.map(Arc::new))
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        let clients = self.read("list_clients", client::all).await?;
        Ok(arcs(clients))
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        validate_key("client_id", client_id)?;
        let id = client_id.to_owned();
        self.run("delete_client", move |db| {
            db.logged(|ctx| client::delete(ctx, &id))
        })
        .await
    }

    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        let now = self.clock.now();
        self.run("cleanup_expired", move |db| {
            db.write(|ctx| cleanup(ctx, now))
        })
        .await
    }

    /// Closes the readers (after the reads already sent), then the writer
    /// (after the jobs already sent, so a read's deletion still runs).
    async fn close(&self) -> Result<(), StoreError> {
        let readers = match &self.readers {
            Some(readers) => readers.close().await,
            None => Ok(()),
        };
        let writer = self.worker.close().await;
        readers.and(writer)
    }

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        Some(self)
    }

    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        Some(self)
    }

    /// `Some` when the file has an invalidation log (see
    /// [`SqliteTokenStoreBuilder::invalidation_log`]); polling only, no hints.
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        self.logging.then_some(self as &dyn InvalidationFeed)
    }
}

/// Removes every expired state and code and every dead session (logging
/// nothing: no lookup could return them), and prunes the invalidation log.
fn cleanup(ctx: Ctx<'_>, now: tokenstore_core::Timestamp) -> Result<CleanupCounts, StoreError> {
    let counts = CleanupCounts {
        states: state::delete_expired(ctx, now)?,
        auth_codes: code::delete_expired(ctx, now)?,
        sessions: session::delete_dead(ctx, now)?,
    };
    feed::prune(ctx)?;
    Ok(counts)
}

impl fmt::Debug for SqliteTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTokenStore")
            .field("path", &self.path)
            .field("encrypted", &self.encrypted)
            .field("invalidation_log", &self.logging)
            .field("readers", &self.readers())
            .field("closed", &self.worker.is_closed())
            .field("stats", &self.stats())
            .field("clock", &self.clock)
            .finish()
    }
}
