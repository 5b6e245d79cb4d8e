//! [`PostgresTokenStoreBuilder`]: how a [`PostgresTokenStore`] is configured and opened.

use crate::PostgresTokenStore;
use crate::conn::Shared;
use crate::conninfo::split_tls;
use crate::hints::{self, Notifier};
use crate::schema::{quote, valid_name};
use crate::sql::Sql;
use crate::store::Feed;
use crate::tls::{Tls, TlsMode};
use crate::worker::{FeedTasks, HintTasks, Settings, Worker, targets};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::feed::HintBoard;
use tokenstore_core::{Clock, Secret, StoreError, SystemClock};
use tokio_postgres::Config;

/// The schema the tables live in when none is set.
pub const DEFAULT_SCHEMA: &str = "tokenstore";
/// Connections when no pool size is set.
pub const DEFAULT_POOL_SIZE: usize = 4;
/// The statement timeout when none is set.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dialling a server may take when the URL sets no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long invalidation-log rows are kept when no retention is set.
pub const DEFAULT_INVALIDATION_RETENTION: Duration = Duration::from_secs(600);

/// Configures and opens a [`PostgresTokenStore`]; made by
/// [`PostgresTokenStore::builder`] or [`PostgresTokenStore::builder_with_config`].
///
/// Defaults: no encryption key and no plaintext (so storing a token fails
/// until one of them is set), schema `tokenstore`, 4 connections, a 30 s
/// statement timeout, a 10 s connect timeout, the system clock, TLS as
/// the URL or config says (`sslmode=prefer` when it says nothing), and the
/// invalidation feed on: the log, hints, and a 10-minute retention.
pub struct PostgresTokenStoreBuilder {
    config: Result<Config, StoreError>,
    tls_mode: Option<TlsMode>,
    root_cert: Option<PathBuf>,
    pool_size: usize,
    statement_timeout: Option<Duration>,
    schema: String,
    key: Option<Secret>,
    allow_plaintext: bool,
    clock: Arc<dyn Clock>,
    invalidation_log: bool,
    invalidation_hints: bool,
    invalidation_retention: Duration,
}

impl PostgresTokenStoreBuilder {
    pub(crate) fn from_url(url: &str) -> Self {
        // tokio-postgres knows neither verify-ca / verify-full nor
        // sslrootcert: those are taken out first, the rest is its to parse.
        let (rest, tls) = match split_tls(url) {
            Ok(split) => split,
            Err(e) => return Self::new(Err(e)),
        };
        // The URL may hold the password: the error never quotes it.
        let config = Config::from_str(&rest).map_err(|_| {
            StoreError::InvalidConfig(
                "the PostgreSQL URL could not be parsed (expected postgresql://... or \
                 key=value pairs)"
                    .to_owned(),
            )
        });
        let mut builder = Self::new(config);
        builder.tls_mode = tls.mode;
        builder.root_cert = tls.root_cert;
        builder
    }

    pub(crate) fn from_config(config: Config) -> Self {
        Self::new(Ok(config))
    }

    fn new(config: Result<Config, StoreError>) -> Self {
        Self {
            config,
            tls_mode: None,
            root_cert: None,
            pool_size: DEFAULT_POOL_SIZE,
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            schema: DEFAULT_SCHEMA.to_owned(),
            key: None,
            allow_plaintext: false,
            clock: Arc::new(SystemClock),
            invalidation_log: true,
            invalidation_hints: true,
            invalidation_retention: DEFAULT_INVALIDATION_RETENTION,
        }
    }

    /// How many connections the store keeps at most (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The server-side `statement_timeout` of every connection (30 s by
    /// default); `None` leaves the server's setting.
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// The schema the tables live in (`tokenstore` by default), created when
    /// missing: 1 to 63 ASCII letters, digits or `_`, not starting with a
    /// digit or `pg_`. Several stores may share a database in separate schemas.
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = name.into();
        self
    }

    /// Encrypts the secret columns with this Fernet key (URL-safe base64 of 32
    /// bytes, as [`generate_key`](crate::generate_key) and Python's
    /// `Fernet.generate_key()` make): the same key format and sealed values as
    /// `tokenstore-sqlite`, so a record moved between the backends decrypts.
    pub fn encryption_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(Secret::new(key));
        self
    }

    /// Without an encryption key, stores and reads tokens in plain text instead
    /// of refusing them with [`StoreError::EncryptionKeyRequired`]. Logs a
    /// warning at open. Ignored when a key is set.
    pub fn allow_plaintext_tokens(mut self, allow: bool) -> Self {
        self.allow_plaintext = allow;
        self
    }

    /// Whether and how connections use TLS (through rustls), overriding the
    /// URL's `sslmode` or the config's [`ssl_mode`](Config::ssl_mode).
    ///
    /// Without it the URL's `sslmode` applies, else
    /// [`TlsMode::Prefer`] (TLS when the server offers it, unchecked). See
    /// [`TlsMode`] for what each mode checks; TLS never applies to
    /// Unix-socket hosts.
    ///
    /// ```no_run
    /// use tokenstore_core::TokenStore as _;
    /// use tokenstore_postgres::{PostgresTokenStore, TlsMode};
    ///
    /// # async fn open() -> Result<(), tokenstore_core::StoreError> {
    /// // The same as "postgresql://auth@db.internal/auth?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem".
    /// let store = PostgresTokenStore::builder("postgresql://auth@db.internal/auth")
    ///     .tls_mode(TlsMode::VerifyFull)
    ///     .tls_root_cert("/etc/ssl/db-ca.pem")
    ///     .encryption_key(std::env::var("TOKEN_KEY").unwrap_or_default())
    ///     .open()
    ///     .await?;
    /// # store.close().await
    /// # }
    /// ```
    pub fn tls_mode(mut self, mode: TlsMode) -> Self {
        self.tls_mode = Some(mode);
        self
    }

    /// The PEM file of the certificate authorities the server's certificate
    /// must chain to (libpq's `sslrootcert`), overriding the URL's.
    ///
    /// Needed by [`TlsMode::VerifyCa`] and [`TlsMode::VerifyFull`]; with
    /// [`TlsMode::Require`] or [`TlsMode::Prefer`] it turns the chain check
    /// on, as in libpq. Read when the store opens: a missing file or one with
    /// no usable PEM certificate fails [`open`](Self::open) with
    /// [`StoreError::InvalidConfig`].
    pub fn tls_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_cert = Some(path.into());
        self
    }

    /// The clock every expiry decision reads ([`SystemClock`] by default).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Whether writes append the cache keys they invalidate to the
    /// invalidation log (on by default), which gives the store the
    /// [`InvalidationFeed`](tokenstore_core::feed::InvalidationFeed)
    /// capability, so the read caches of several instances sharing the
    /// database stay fresh. Off, every write skips its log rows and
    /// [`invalidation_feed`](tokenstore_core::TokenStore::invalidation_feed)
    /// is `None`: for a single instance, or to measure the log's cost.
    pub fn invalidation_log(mut self, on: bool) -> Self {
        self.invalidation_log = on;
        self
    }

    /// Whether the store sends and listens for `LISTEN` / `NOTIFY` wake-up
    /// hints (on by default, and only with the log on): a poller then hears of
    /// other instances' writes within a round trip instead of at its next poll.
    /// Needs a direct connection (a PgBouncer in transaction mode drops
    /// `LISTEN` silently): two more connections beside the pool, shown in
    /// `pg_stat_activity` under the store's application name followed by
    /// ` listener` and ` notifier`.
    pub fn invalidation_hints(mut self, on: bool) -> Self {
        self.invalidation_hints = on;
        self
    }

    /// How long invalidation-log rows are kept (10 minutes by default); older
    /// ones are pruned about once a minute (every half of it when shorter, at
    /// least 1 s apart). Keep it well past the caches' feed bound and poll
    /// period: a poller that falls further behind gets a gap and drops its
    /// cache.
    pub fn invalidation_retention(mut self, retention: Duration) -> Self {
        self.invalidation_retention = retention;
        self
    }

    /// Connects, creates or migrates the schema (one transaction under an
    /// advisory lock), and starts the store's runtime thread.
    ///
    /// Fails with [`StoreError::InvalidConfig`] for an unparsable URL, a bad
    /// schema name, pool size or key, an unknown `sslmode`, a missing or
    /// unreadable root certificate, or a database whose schema is newer than
    /// this crate; also, naming the host and port, when the server's
    /// certificate fails the TLS check ("TLS verification failed for
    /// PostgreSQL at host:port ...") or the server does not offer the TLS the
    /// mode requires: retrying does not help. Fails with
    /// [`StoreError::Backend`] naming the host and port when the server cannot
    /// be reached or refuses the login.
    pub async fn open(self) -> Result<PostgresTokenStore, StoreError> {
        let mut config = self.config?;
        if !valid_name(&self.schema) {
            return Err(StoreError::InvalidConfig(
                "the schema name must be 1 to 63 ASCII letters, digits or _, \
                 not starting with a digit or pg_"
                    .to_owned(),
            ));
        }
        if self.pool_size == 0 {
            return Err(StoreError::InvalidConfig(
                "the pool size must be at least 1".to_owned(),
            ));
        }
        let codec = SecretCodec::new(self.key.as_ref(), self.allow_plaintext)?;
        if !codec.encrypts() && self.allow_plaintext {
            tracing::warn!(
                "tokens are stored in plain text: no encryption key is set and \
                 allow_plaintext_tokens is on, so there is no at-rest protection"
            );
        }
        apply_defaults(&mut config, self.statement_timeout);
        let mode = self.tls_mode.unwrap_or_else(|| TlsMode::of(&config));
        let tls = Tls::new(mode, self.root_cert.as_deref(), &mut config)?;
        let info = Info {
            targets: targets(&config),
            dbname: config.get_dbname().map(str::to_owned),
            user: config.get_user().map(str::to_owned),
            schema: self.schema.clone(),
            pool_size: self.pool_size,
            encrypted: codec.encrypts(),
            tls: mode,
        };
        let logs = self.invalidation_log;
        let hints = (logs && self.invalidation_hints).then(|| {
            let (notifier, woken) = Notifier::new();
            HintTasks {
                board: Arc::new(HintBoard::new()),
                notifier,
                woken,
                channel: hints::channel(&self.schema),
            }
        });
        let feed = Feed {
            logs,
            board: hints.as_ref().map(|h| Arc::clone(&h.board)),
            notifier: hints.as_ref().map(|h| Arc::clone(&h.notifier)),
        };
        let settings = Settings {
            config,
            tls,
            pool_size: self.pool_size,
            shared: Shared {
                sql: Sql::new(&quote(&self.schema), logs),
                codec,
                logs,
            },
            schema: self.schema,
            feed: logs.then_some(FeedTasks {
                retention: self.invalidation_retention,
                hints,
            }),
        };
        let worker = Worker::start(settings).await?;
        Ok(PostgresTokenStore::new(worker, self.clock, info, feed))
    }
}

/// Our defaults on top of the caller's config: the statement timeout (as a
/// startup option, so it costs no round trip), a connect timeout and an
/// application name when the URL set none.
fn apply_defaults(config: &mut Config, statement_timeout: Option<Duration>) {
    if let Some(timeout) = statement_timeout {
        let ms = timeout.as_millis().max(1);
        let option = format!("-c statement_timeout={ms}");
        let options = match config.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {option}"),
            _ => option,
        };
        config.options(&options);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("tokenstore");
    }
}

/// What a store's `Debug` shows about its configuration (no password).
#[derive(Clone)]
pub(crate) struct Info {
    pub(crate) targets: String,
    pub(crate) dbname: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) encrypted: bool,
    pub(crate) tls: TlsMode,
}

impl fmt::Debug for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Info")
            .field("targets", &self.targets)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("encrypted", &self.encrypted)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for PostgresTokenStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (targets, dbname, has_password) = match &self.config {
            Ok(c) => (
                targets(c),
                c.get_dbname().map(str::to_owned),
                c.get_password().is_some(),
            ),
            Err(_) => ("(unparsable URL)".to_owned(), None, false),
        };
        f.debug_struct("PostgresTokenStoreBuilder")
            .field("targets", &targets)
            .field("dbname", &dbname)
            .field("has_password", &has_password)
            .field("tls_mode", &self.tls_mode)
            .field("tls_root_cert", &self.root_cert)
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("schema", &self.schema)
            .field("has_encryption_key", &self.key.is_some())
            .field("allow_plaintext_tokens", &self.allow_plaintext)
            .field("clock", &self.clock)
            .field("invalidation_log", &self.invalidation_log)
            .field("invalidation_hints", &self.invalidation_hints)
            .field("invalidation_retention", &self.invalidation_retention)
            .finish()
    }
}
