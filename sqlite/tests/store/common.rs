//! Shared fixtures: a temporary database, a manual clock, full records.

use futures_lite::future::block_on;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, Clock, ManualClock, Secret, StateRecord, StoredSession,
    Timestamp, TokenEndpointAuthMethod, UserInfo,
};
use tokenstore_sqlite::{SqliteTokenStore, SqliteTokenStoreBuilder, generate_key};

/// The tests' epoch (with a fractional part, to exercise REAL seconds).
pub(crate) const T0_MICROS: i64 = 1_764_000_000_123_456;

/// A temporary directory, a manual clock and a Fernet key.
pub(crate) struct Env {
    pub(crate) dir: TempDir,
    pub(crate) clock: ManualClock,
    pub(crate) key: String,
}

impl Env {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            clock: ManualClock::new(Timestamp::from_unix_micros(T0_MICROS)),
            key: generate_key(),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("tokens.sqlite")
    }

    /// A builder for this file and clock, without a key.
    pub(crate) fn bare(&self) -> SqliteTokenStoreBuilder {
        SqliteTokenStore::builder(self.path()).clock(self.clock.clone())
    }

    /// A builder with this environment's key.
    pub(crate) fn builder(&self) -> SqliteTokenStoreBuilder {
        self.bare().encryption_key(self.key.clone())
    }

    /// The store, encrypted with this environment's key.
    pub(crate) fn open(&self) -> SqliteTokenStore {
        block_on(self.builder().open()).expect("open")
    }

    /// A second, plain rusqlite connection to the same file.
    pub(crate) fn raw(&self) -> Connection {
        Connection::open(self.path()).expect("raw connection")
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn later(&self, secs: u64) -> Timestamp {
        self.now() + Duration::from_secs(secs)
    }
}

/// A state with every field set.
pub(crate) fn full_state(env: &Env, name: &str) -> Arc<StateRecord> {
    let mut s = StateRecord::new(name, env.later(600), env.now());
    s.client_id = Some("client-1".into());
    s.redirect_uri = Some("https://app.example/cb".into());
    s.code_challenge = Some("challenge".into());
    s.code_challenge_method = Some("S256".into());
    s.provider_code_verifier = Some(Secret::new("verifier-secret"));
    s.client_state = Some("client-state".into());
    s.provider_scopes_requested = vec!["openid".into(), "email".into()];
    Arc::new(s)
}

/// An auth code with every field set.
pub(crate) fn full_code(env: &Env, code: &str) -> Arc<AuthCodeRecord> {
    let mut c = AuthCodeRecord::new(code, "session-1", env.later(60), env.now());
    c.client_id = Some("client-1".into());
    c.redirect_uri = Some("https://app.example/cb".into());
    c.code_challenge = Some("challenge".into());
    c.code_challenge_method = Some("S256".into());
    c.scopes = vec!["read".into(), "wrïte".into()];
    Arc::new(c)
}

/// User info with every field set.
pub(crate) fn full_user() -> UserInfo {
    let mut u = UserInfo::new("github", "user-42", "octocat");
    u.email = Some("octo@example.com".into());
    u.name = Some("The Octocat".into());
    u.avatar_url = Some("https://avatars.example/42".into());
    let profile = serde_json::json!({"login": "octocat", "id": 42, "nested": {"ok": true}});
    u.raw_profile = profile.as_object().cloned();
    u.provider_scopes_granted = vec!["read:user".into()];
    u.capabilities = vec!["admin".into()];
    u
}

/// A session with every field set; its tokens are `access-{n}` and `refresh-{n}`.
pub(crate) fn full_session(env: &Env, n: u32) -> StoredSession {
    let mut s = StoredSession::new(
        format!("session-{n}"),
        full_user(),
        format!("access-{n}"),
        env.later(3600),
        env.now(),
    );
    s.refresh_token = Some(Secret::new(format!("refresh-{n}")));
    s.provider_access_token = Some(Secret::new(format!("provider-access-{n}")));
    s.provider_refresh_token = Some(Secret::new(format!("provider-refresh-{n}")));
    s.provider_expires_at = Some(env.later(1800));
    s.refresh_expires_at = Some(env.later(86_400));
    s
}

/// A confidential client with every field set.
pub(crate) fn full_client(env: &Env, id: &str) -> Arc<ClientRecord> {
    let mut c = ClientRecord::new(id, env.now());
    c.client_secret = Some(Secret::new(format!("client-secret-{id}")));
    c.token_endpoint_auth_method = Some(TokenEndpointAuthMethod::ClientSecretPost);
    c.redirect_uris = vec!["https://app.example/cb".into()];
    c.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    c.response_types = vec!["code".into()];
    c.scope = Some("read write".into());
    c.client_name = Some("Example App".into());
    Arc::new(c)
}

/// Every secret value the full records above carry, for leak checks.
pub(crate) fn secrets_of(n: u32, client: &str) -> Vec<String> {
    vec![
        format!("access-{n}"),
        format!("refresh-{n}"),
        format!("provider-access-{n}"),
        format!("provider-refresh-{n}"),
        format!("client-secret-{client}"),
    ]
}
