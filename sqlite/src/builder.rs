//! [`SqliteTokenStoreBuilder`]: how a [`SqliteTokenStore`] is configured and opened.

use crate::SqliteTokenStore;
use crate::readers::{self, MAX_READERS, Readers};
use crate::schema::{Counters, Settings, Synchronous};
use crate::worker::Worker;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::{Clock, Secret, StoreError, SystemClock};

/// The busy timeout when none is set.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long invalidation-log rows are kept when no retention is set.
const DEFAULT_RETENTION: Duration = Duration::from_secs(600);

/// Configures and opens a [`SqliteTokenStore`]; made by [`SqliteTokenStore::builder`].
///
/// Defaults: no encryption key and no plaintext (so storing a token fails until
/// one of them is set), `synchronous = FULL`, a 5 s busy timeout, the system
/// clock, no invalidation log (unless the file has one) kept 10 minutes, one
/// reader thread per core (2 to 8).
pub struct SqliteTokenStoreBuilder {
    path: PathBuf,
    key: Option<Secret>,
    allow_plaintext: bool,
    synchronous: Synchronous,
    busy_timeout: Duration,
    clock: Arc<dyn Clock>,
    invalidation_log: bool,
    retention: Duration,
    /// `None`: [`readers::default_readers`].
    readers: Option<usize>,
}

impl SqliteTokenStoreBuilder {
    pub(crate) fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            key: None,
            allow_plaintext: false,
            synchronous: Synchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            clock: Arc::new(SystemClock),
            invalidation_log: false,
            retention: DEFAULT_RETENTION,
            readers: None,
        }
    }

    /// How many reader threads run reads beside the writer, each with a
    /// read-only connection (default: one per core the process may use, at
    /// least 2 and at most 8; at most 64).
    ///
    /// In WAL mode readers and the writer never block each other, so with
    /// readers a lookup never waits for another request's commit. Every read
    /// starts a new read transaction, so a read made after a write returned
    /// sees it. Writes, one-time calls and the deletion of an expired row a
    /// lookup found run on the writer. `0` runs every read on the writer too
    /// (one connection, as mxcp does). An in-memory database (`:memory:`)
    /// always runs with 0: another connection would open another database.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// futures_lite::future::block_on(async {
    ///     let store = tokenstore_sqlite::SqliteTokenStore::builder(dir.path().join("auth.sqlite"))
    ///         .readers(3)
    ///         .open()
    ///         .await?;
    ///     assert_eq!(store.readers(), 3);
    ///     tokenstore_core::TokenStore::close(&store).await
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = Some(readers);
        self
    }

    /// Encrypts the secret columns with this Fernet key (URL-safe base64 of 32
    /// bytes, as [`generate_key`](crate::generate_key) and Python's
    /// `Fernet.generate_key()` make). Use the key mxcp was given to share its file.
    pub fn encryption_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(Secret::new(key));
        self
    }

    /// Without an encryption key, stores and reads tokens in plain text instead of
    /// refusing them with [`StoreError::EncryptionKeyRequired`]. Logs a warning at
    /// open. Ignored when a key is set.
    pub fn allow_plaintext_tokens(mut self, allow: bool) -> Self {
        self.allow_plaintext = allow;
        self
    }

    /// SQLite's `synchronous` setting ([`Synchronous::Full`] by default).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a statement waits for another connection's lock before failing.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The clock every expiry decision reads ([`SystemClock`] by default). It
    /// also stamps and prunes the invalidation log's rows.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Keeps an invalidation log in the file (off by default), so
    /// [`TokenStore::invalidation_feed`](tokenstore_core::TokenStore::invalidation_feed)
    /// returns the [`InvalidationFeed`](tokenstore_core::feed::InvalidationFeed)
    /// capability and the read cache of every store on the file (in this
    /// process or another) learns what the others' writes invalidated.
    ///
    /// `true` creates two tables of ours, `tokenstore_invalidations` and
    /// `tokenstore_invalidations_meta`, next to mxcp's (mxcp ignores them).
    ///
    /// **The log is a property of the file, not of one store**: a store opened
    /// on a file that already has the log's tables logs whatever this option
    /// says, so turning it on in one process makes every tokenstore process
    /// that opens the file afterwards log too. A store already open when the
    /// tables were created does not start logging until it is reopened, and
    /// mxcp itself never logs: a cache can only learn of the writes of stores
    /// that log. `false` never removes the tables.
    ///
    /// Without a log, writes cost nothing extra and `invalidation_feed()` is
    /// `None`. With one, each write that can invalidate a cached key (a session,
    /// code or client stored or deleted) runs in one transaction with a row per
    /// key: hashes and ids only, never a token, code or secret.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tokenstore_core::cache::CacheKey;
    /// use tokenstore_core::{ClientRecord, Timestamp, TokenStore};
    /// use tokenstore_sqlite::SqliteTokenStore;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("auth.sqlite");
    /// futures_lite::future::block_on(async {
    ///     let a = SqliteTokenStore::builder(&path).invalidation_log(true).open().await?;
    ///     // Opened without the option, on a file that has the log: it logs too.
    ///     let b = SqliteTokenStore::builder(&path).open().await?;
    ///     let feed = b.invalidation_feed().expect("the file has the log");
    ///     let start = feed.invalidations_since(None).await?.watermark;
    ///
    ///     let client = ClientRecord::new("client-1", Timestamp::from_unix_secs(1_700_000_000));
    ///     a.store_client(Arc::new(client)).await?;
    ///     let seen = feed.invalidations_since(Some(start)).await?;
    ///     assert_eq!(seen.keys, vec![CacheKey::Client("client-1".into())]);
    ///     assert!(!seen.gap && seen.watermark > start);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn invalidation_log(mut self, on: bool) -> Self {
        self.invalidation_log = on;
        self
    }

    /// How long the invalidation log keeps a row (10 minutes by default).
    ///
    /// Keep it well past the cache's freshness bound (about a second) and the
    /// longest pause a poller may take: a poller whose watermark is older than
    /// the pruned rows is told `gap` and drops its whole cache.
    ///
    /// The rule: after a write, at most once a minute, and on every
    /// [`cleanup_expired`](tokenstore_core::TokenStore::cleanup_expired), a
    /// store deletes the log's oldest rows up to the first one younger than the
    /// retention (ages by the store's [clock](Self::clock), in whole seconds),
    /// and records the last id it deleted, so a poll from before it is a gap.
    /// A row is never deleted younger than the retention.
    pub fn invalidation_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Opens the database, creating the file, its directory and mxcp's tables
    /// when missing (and the invalidation log's, when asked for), and starts
    /// the connection thread.
    ///
    /// Fails with [`StoreError::InvalidConfig`] for a key that is not a Fernet
    /// key or more than 64 [readers](Self::readers), and
    /// [`StoreError::Backend`] when the file cannot be opened.
    pub async fn open(self) -> Result<SqliteTokenStore, StoreError> {
        let codec = SecretCodec::new(self.key.as_ref(), self.allow_plaintext)?;
        let wanted = self.readers.unwrap_or_else(readers::default_readers);
        if wanted > MAX_READERS {
            return Err(StoreError::InvalidConfig(format!(
                "at most {MAX_READERS} SQLite readers, not {wanted}"
            )));
        }
        let readers = if readers::is_in_memory(&self.path) {
            0
        } else {
            wanted
        };
        if !codec.encrypts() && self.allow_plaintext {
            tracing::warn!(
                "tokens are stored in plain text: no encryption key is set and \
                 allow_plaintext_tokens is on, so there is no at-rest protection"
            );
        }
        let counters = Arc::new(Counters::default());
        let settings = Settings {
            path: self.path,
            synchronous: self.synchronous,
            busy_timeout: self.busy_timeout,
            invalidation_log: self.invalidation_log,
            retention: self.retention,
            clock: Arc::clone(&self.clock),
        };
        let path = settings.path.clone();
        let busy_timeout = settings.busy_timeout;
        let reader_codec = codec.clone();
        let (worker, logging) = Worker::start(settings, codec, Arc::clone(&counters)).await?;
        // The writer has created the file and switched it to WAL: the readers'
        // read-only connections can open it now.
        let readers = if readers == 0 {
            None
        } else {
            match Readers::start(&path, readers, busy_timeout, &reader_codec).await {
                Ok(readers) => Some(readers),
                Err(err) => {
                    let _ = worker.close().await;
                    return Err(err);
                }
            }
        };
        Ok(SqliteTokenStore::new(
            worker,
            readers,
            reader_codec,
            self.clock,
            counters,
            path,
            logging,
        ))
    }
}

impl fmt::Debug for SqliteTokenStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTokenStoreBuilder")
            .field("path", &self.path)
            .field("has_encryption_key", &self.key.is_some())
            .field("allow_plaintext_tokens", &self.allow_plaintext)
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .field("clock", &self.clock)
            .field("invalidation_log", &self.invalidation_log)
            .field("invalidation_retention", &self.retention)
            .field("readers", &self.readers)
            .finish()
    }
}
