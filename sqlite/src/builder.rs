//! [`SqliteTokenStoreBuilder`]: how a [`SqliteTokenStore`] is configured and opened.

use crate::SqliteTokenStore;
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

/// Configures and opens a [`SqliteTokenStore`]; made by [`SqliteTokenStore::builder`].
///
/// Defaults: no encryption key and no plaintext (so storing a token fails until
/// one of them is set), `synchronous = FULL`, a 5 s busy timeout, the system clock.
pub struct SqliteTokenStoreBuilder {
    path: PathBuf,
    key: Option<Secret>,
    allow_plaintext: bool,
    synchronous: Synchronous,
    busy_timeout: Duration,
    clock: Arc<dyn Clock>,
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
        }
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

    /// The clock every expiry decision reads ([`SystemClock`] by default).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Opens the database, creating the file, its directory and mxcp's tables
    /// when missing, and starts the connection thread.
    ///
    /// Fails with [`StoreError::InvalidConfig`] for a key that is not a Fernet
    /// key, and [`StoreError::Backend`] when the file cannot be opened.
    pub async fn open(self) -> Result<SqliteTokenStore, StoreError> {
        let codec = SecretCodec::new(self.key.as_ref(), self.allow_plaintext)?;
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
        };
        let encrypted = codec.encrypts();
        let path = settings.path.clone();
        let worker = Worker::start(settings, codec, Arc::clone(&counters)).await?;
        Ok(SqliteTokenStore::new(
            worker, self.clock, counters, path, encrypted,
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
            .finish()
    }
}
