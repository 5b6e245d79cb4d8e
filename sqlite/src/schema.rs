//! Opening the connection: pragmas, hooks and mxcp 0.12.3's schema.

use crate::error::backend;
use crate::feed;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokenstore_core::{Clock, StoreError};

/// mxcp 0.12.3's four tables, column for column, plus one index of ours.
///
/// mxcp has no index on `sessions.refresh_token_hash`; an extra index leaves the
/// file readable and writable by mxcp.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS states (
    state TEXT PRIMARY KEY,
    client_id TEXT,
    redirect_uri TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    provider_code_verifier TEXT,
    client_state TEXT,
    provider_scopes_requested TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_codes (
    code TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    client_id TEXT,
    redirect_uri TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    mxcp_scopes TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    access_token_hash TEXT PRIMARY KEY,
    access_token_encrypted TEXT NOT NULL,
    refresh_token_hash TEXT,
    refresh_token_encrypted TEXT,
    session_id TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    user_info TEXT NOT NULL,
    provider_access_token TEXT,
    provider_refresh_token TEXT,
    provider_expires_at REAL,
    access_expires_at REAL,
    refresh_expires_at REAL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_clients (
    client_id TEXT PRIMARY KEY,
    client_secret TEXT,
    token_endpoint_auth_method TEXT,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    response_types TEXT NOT NULL,
    scope TEXT,
    client_name TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tokenstore_sessions_refresh_token_hash
    ON sessions (refresh_token_hash);
";

/// SQLite's `synchronous` setting: how hard a commit waits for the disk.
///
/// In WAL mode `Normal` can lose the last commits on power loss (never on a
/// process crash) but never corrupts the file; `Full`, the default, loses none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Synchronous {
    /// No syncing at all: fastest, and a power loss may corrupt the file.
    Off,
    /// Sync at checkpoints only.
    Normal,
    /// Sync the WAL at every commit (the default).
    #[default]
    Full,
    /// As `Full`, and also sync the directory after a journal is deleted.
    Extra,
}

impl Synchronous {
    fn as_sql(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
            Self::Extra => "EXTRA",
        }
    }
}

/// What the connection thread needs to open the database.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) path: PathBuf,
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    /// Create the invalidation log (a file that has one logs anyway).
    pub(crate) invalidation_log: bool,
    /// How long log rows are kept.
    pub(crate) retention: Duration,
    /// The clock that stamps and prunes log rows.
    pub(crate) clock: Arc<dyn Clock>,
}

/// Commit and rollback counts, updated by SQLite's hooks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) rollbacks: AtomicU64,
}

/// Opens (creating if needed) the database, sets it up and creates the schema;
/// also answers whether the store logs invalidations ([`feed::open`]).
pub(crate) fn open(
    settings: &Settings,
    counters: &Arc<Counters>,
) -> Result<(Connection, bool), StoreError> {
    create_parent_dir(settings)?;
    let mut conn = Connection::open(&settings.path).map_err(backend)?;
    configure(&conn, settings).map_err(backend)?;
    install_hooks(&mut conn, counters).map_err(backend)?;
    conn.execute_batch(SCHEMA).map_err(backend)?;
    let logging = feed::open(&conn, settings.invalidation_log).map_err(backend)?;
    Ok((conn, logging))
}

/// Creates the file's directory, as mxcp does.
fn create_parent_dir(settings: &Settings) -> Result<(), StoreError> {
    match settings.path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(format!(
                "cannot create the database directory: {}",
                e.kind()
            ))
        }),
        _ => Ok(()),
    }
}

fn configure(conn: &Connection, settings: &Settings) -> rusqlite::Result<()> {
    conn.busy_timeout(settings.busy_timeout)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "SQLite did not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", settings.synchronous.as_sql())
}

fn install_hooks(conn: &mut Connection, counters: &Arc<Counters>) -> rusqlite::Result<()> {
    let commits = Arc::clone(counters);
    conn.commit_hook(Some(move || {
        commits.commits.fetch_add(1, Ordering::Relaxed);
        false // let the commit proceed
    }))?;
    let rollbacks = Arc::clone(counters);
    conn.rollback_hook(Some(move || {
        rollbacks.rollbacks.fetch_add(1, Ordering::Relaxed);
    }))
}
