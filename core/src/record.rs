//! The four records an authorization server keeps, with their validation and
//! expiry rules.
//!
//! Field names follow mxcp 0.12.3. Secrets are [`Secret`]s; the `Debug` of every
//! record prints no token, secret, key or user identifier.
//!
//! What every backend can store is decided here, once, so that every backend
//! and wrapper refuses the same input with the same [`InvalidInput`]: see
//! [`validate_key`] and each record's `validate`.

use crate::error::InvalidInput;
use crate::{Secret, Timestamp, TokenHash};
use std::fmt;

/// The longest key (state, code, token, session id, client id) a store accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 8 * 1024;

/// The earliest time a record may hold: 4713-11-24 BC 00:00 UTC (Unix time
/// −210,866,803,200 s), the earliest PostgreSQL's `timestamptz` can hold.
///
/// Every store refuses a record with an earlier time with
/// [`InvalidInput::TimeTooEarly`], whatever its backend, so that the backends
/// agree. Every later time, up to [`Timestamp::MAX`], is storable everywhere.
pub const MIN_STORABLE_TIME: Timestamp = Timestamp::from_unix_micros(-210_866_803_200_000_000);

/// The deepest nesting of [`UserInfo::raw_profile`] a store accepts, counting
/// the profile object itself as level 1. Deeper JSON could be written but not
/// read back (JSON readers, serde_json's among them, stop at 128 levels).
pub const MAX_PROFILE_DEPTH: usize = 64;

/// Checks that `profile` nests arrays and objects at most
/// [`MAX_PROFILE_DEPTH`] levels deep (without recursion, so any depth is safe
/// to check).
fn validate_profile(
    profile: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), InvalidInput> {
    use serde_json::Value;
    let mut containers: Vec<(&Value, usize)> = profile.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = containers.pop() {
        if matches!(value, Value::Array(_) | Value::Object(_)) && depth > MAX_PROFILE_DEPTH {
            return Err(InvalidInput::ProfileTooDeep {
                max: MAX_PROFILE_DEPTH,
            });
        }
        match value {
            Value::Array(items) => containers.extend(items.iter().map(|c| (c, depth + 1))),
            Value::Object(fields) => containers.extend(fields.values().map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a key (state, code, token, session id, client id): non-empty, at
/// most [`MAX_KEY_BYTES`] bytes, and without a NUL byte
/// ([`InvalidInput::NulByte`]: PostgreSQL's `text` cannot hold one).
///
/// Every call that takes a key checks it, lookups and deletes included: a key
/// no store could hold is refused with the same error by every call on every
/// backend, rather than being looked up.
pub fn validate_key(field: &'static str, key: &str) -> Result<(), InvalidInput> {
    if key.is_empty() {
        return Err(InvalidInput::EmptyKey { field });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(InvalidInput::KeyTooLong {
            field,
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    if has_nul(key.as_bytes()) {
        return Err(InvalidInput::NulByte { field });
    }
    Ok(())
}

/// Whether `bytes` holds a NUL byte. Every lookup checks its key, cache hits
/// included, so this tests eight bytes at a time (`w - 0x01.. & !w & 0x80..`
/// is non-zero exactly when the word `w` has a zero byte), the last word
/// overlapping the one before it. Under callgrind, `validate_key` of a
/// 32-byte token takes 71 instructions this way and 84 with `contains(&0)`.
fn has_nul(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_in = |word: &[u8; 8]| {
        let w = u64::from_ne_bytes(*word);
        w.wrapping_sub(ONES) & !w & HIGHS != 0
    };
    let (words, rest) = bytes.as_chunks::<8>();
    if words.iter().any(zero_in) {
        return true;
    }
    match bytes.last_chunk::<8>() {
        Some(last) if !rest.is_empty() => zero_in(last),
        _ => rest.contains(&0),
    }
}

/// Checks fields stored as their own text columns: no NUL byte.
fn validate_texts(fields: &[(&'static str, Option<&str>)]) -> Result<(), InvalidInput> {
    match fields
        .iter()
        .find(|(_, text)| text.is_some_and(|t| has_nul(t.as_bytes())))
    {
        Some(&(field, _)) => Err(InvalidInput::NulByte { field }),
        None => Ok(()),
    }
}

/// Checks stored times: none earlier than [`MIN_STORABLE_TIME`].
fn validate_times(fields: &[(&'static str, Option<Timestamp>)]) -> Result<(), InvalidInput> {
    match fields
        .iter()
        .find(|(_, time)| time.is_some_and(|t| t < MIN_STORABLE_TIME))
    {
        Some(&(field, _)) => Err(InvalidInput::TimeTooEarly { field }),
        None => Ok(()),
    }
}

/// The secret's text, as the text column that holds it with the plaintext
/// opt-in would.
fn exposed(secret: Option<&Secret>) -> Option<&str> {
    secret.map(Secret::expose)
}

/// A persisted OAuth `state`: one-time, expiring.
#[derive(Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// The state value generated by the server (the key).
    pub state: String,
    /// The client that started the authorization request.
    pub client_id: Option<String>,
    /// The client's redirect URI.
    pub redirect_uri: Option<String>,
    /// The client's PKCE challenge.
    pub code_challenge: Option<String>,
    /// The client's PKCE method (for example `S256`).
    pub code_challenge_method: Option<String>,
    /// The verifier for the upstream provider's PKCE. mxcp stores it in plain text.
    pub provider_code_verifier: Option<Secret>,
    /// The client's own `state`, returned in the redirect.
    pub client_state: Option<String>,
    /// Scopes requested from the provider.
    pub provider_scopes_requested: Vec<String>,
    /// When it expires (expired when `expires_at < now`).
    pub expires_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
}

impl StateRecord {
    /// A state with only the required fields set.
    pub fn new(state: impl Into<String>, expires_at: Timestamp, created_at: Timestamp) -> Self {
        Self {
            state: state.into(),
            client_id: None,
            redirect_uri: None,
            code_challenge: None,
            code_challenge_method: None,
            provider_code_verifier: None,
            client_state: None,
            provider_scopes_requested: Vec::new(),
            expires_at,
            created_at,
        }
    }

    /// Checks the record can be stored: a valid key ([`validate_key`]), no
    /// NUL byte in any text field (the scopes, stored as JSON, may hold one),
    /// and no time before [`MIN_STORABLE_TIME`].
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_key("state", &self.state)?;
        validate_texts(&[
            ("client_id", self.client_id.as_deref()),
            ("redirect_uri", self.redirect_uri.as_deref()),
            ("code_challenge", self.code_challenge.as_deref()),
            (
                "code_challenge_method",
                self.code_challenge_method.as_deref(),
            ),
            (
                "provider_code_verifier",
                exposed(self.provider_code_verifier.as_ref()),
            ),
            ("client_state", self.client_state.as_deref()),
        ])?;
        validate_times(&[
            ("expires_at", Some(self.expires_at)),
            ("created_at", Some(self.created_at)),
        ])
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at < now
    }
}

impl fmt::Debug for StateRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateRecord")
            .field("client_id", &self.client_id)
            .field("code_challenge_method", &self.code_challenge_method)
            .field("scopes", &self.provider_scopes_requested.len())
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A persisted authorization code bound to a session: loaded, then deleted.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthCodeRecord {
    /// The code (the key).
    pub code: String,
    /// The session the code grants.
    pub session_id: String,
    /// The client the code was issued to.
    pub client_id: Option<String>,
    /// The redirect URI the code was issued for.
    pub redirect_uri: Option<String>,
    /// The client's PKCE challenge.
    pub code_challenge: Option<String>,
    /// The client's PKCE method.
    pub code_challenge_method: Option<String>,
    /// Granted scopes (mxcp's `mxcp_scopes` column).
    pub scopes: Vec<String>,
    /// When it expires (expired when `expires_at < now`).
    pub expires_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
}

impl AuthCodeRecord {
    /// A code with only the required fields set.
    pub fn new(
        code: impl Into<String>,
        session_id: impl Into<String>,
        expires_at: Timestamp,
        created_at: Timestamp,
    ) -> Self {
        Self {
            code: code.into(),
            session_id: session_id.into(),
            client_id: None,
            redirect_uri: None,
            code_challenge: None,
            code_challenge_method: None,
            scopes: Vec::new(),
            expires_at,
            created_at,
        }
    }

    /// Checks the record can be stored: valid keys ([`validate_key`]) for the
    /// code and the session id, no NUL byte in any text field (the scopes,
    /// stored as JSON, may hold one), and no time before
    /// [`MIN_STORABLE_TIME`].
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_key("code", &self.code)?;
        validate_key("session_id", &self.session_id)?;
        validate_texts(&[
            ("client_id", self.client_id.as_deref()),
            ("redirect_uri", self.redirect_uri.as_deref()),
            ("code_challenge", self.code_challenge.as_deref()),
            (
                "code_challenge_method",
                self.code_challenge_method.as_deref(),
            ),
        ])?;
        validate_times(&[
            ("expires_at", Some(self.expires_at)),
            ("created_at", Some(self.created_at)),
        ])
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at < now
    }
}

impl fmt::Debug for AuthCodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCodeRecord")
            .field("client_id", &self.client_id)
            .field("code_challenge_method", &self.code_challenge_method)
            .field("scopes", &self.scopes.len())
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Normalized user information from the identity provider.
#[derive(Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The provider's name.
    pub provider: String,
    /// The user's id at the provider.
    pub user_id: String,
    /// The user's name at the provider.
    pub username: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// The provider's raw profile (a JSON object in mxcp), at most
    /// [`MAX_PROFILE_DEPTH`] levels deep.
    pub raw_profile: Option<serde_json::Map<String, serde_json::Value>>,
    /// Scopes the provider granted.
    pub provider_scopes_granted: Vec<String>,
    /// Capabilities of the user.
    pub capabilities: Vec<String>,
}

impl UserInfo {
    /// User info with only the required fields set.
    pub fn new(
        provider: impl Into<String>,
        user_id: impl Into<String>,
        username: impl Into<String>,
    ) -> Self {
        Self {
            provider: provider.into(),
            user_id: user_id.into(),
            username: username.into(),
            email: None,
            name: None,
            avatar_url: None,
            raw_profile: None,
            provider_scopes_granted: Vec::new(),
            capabilities: Vec::new(),
        }
    }
}

impl fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInfo")
            .field("provider", &self.provider)
            .field("scopes", &self.provider_scopes_granted.len())
            .field("capabilities", &self.capabilities.len())
            .finish_non_exhaustive()
    }
}

/// A session: access and refresh tokens bound to a user.
///
/// Unique by access-token hash, refresh-token hash and session id: storing a
/// session replaces every stored session that shares any of them.
///
/// `issued_at` is not persisted by mxcp's schema: every store hands it back as
/// `Some(created_at)` on load, and so does [`StoredSession::normalized`].
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session id.
    pub session_id: String,
    /// The provider's name.
    pub provider: String,
    /// Who the session belongs to.
    pub user_info: UserInfo,
    /// The access token (found by its hash).
    pub access_token: Secret,
    /// The refresh token, if any (found by its hash).
    pub refresh_token: Option<Secret>,
    /// The provider's access token.
    pub provider_access_token: Option<Secret>,
    /// The provider's refresh token.
    pub provider_refresh_token: Option<Secret>,
    /// When the provider's token expires.
    pub provider_expires_at: Option<Timestamp>,
    /// When the access token expires; required to store.
    pub access_expires_at: Option<Timestamp>,
    /// When the refresh token expires; `None` means never.
    pub refresh_expires_at: Option<Timestamp>,
    /// When the session was created.
    pub created_at: Timestamp,
    /// When the tokens were issued; loads return `Some(created_at)`.
    pub issued_at: Option<Timestamp>,
}

/// What a lookup may do with a session it found, given the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionVisibility {
    /// Return it.
    Live,
    /// Do not return it, but keep it: the other token may still reach it.
    Hidden,
    /// Do not return it, and delete it: it can never be returned again.
    Dead,
}

impl StoredSession {
    /// A session with only the required fields set.
    pub fn new(
        session_id: impl Into<String>,
        user_info: UserInfo,
        access_token: impl Into<Secret>,
        access_expires_at: Timestamp,
        created_at: Timestamp,
    ) -> Self {
        Self {
            session_id: session_id.into(),
            provider: user_info.provider.clone(),
            user_info,
            access_token: access_token.into(),
            refresh_token: None,
            provider_access_token: None,
            provider_refresh_token: None,
            provider_expires_at: None,
            access_expires_at: Some(access_expires_at),
            refresh_expires_at: None,
            created_at,
            issued_at: Some(created_at),
        }
    }

    /// Checks the session can be stored: valid keys ([`validate_key`]) for the
    /// session id and the tokens, an access expiry, no NUL byte in `provider`
    /// or the provider's tokens (`user_info`, stored as JSON, may hold one),
    /// no time before [`MIN_STORABLE_TIME`] (`issued_at` is not stored), and a
    /// raw profile at most [`MAX_PROFILE_DEPTH`] deep.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_key("session_id", &self.session_id)?;
        validate_key("access_token", self.access_token.expose())?;
        if let Some(refresh) = &self.refresh_token {
            validate_key("refresh_token", refresh.expose())?;
        }
        if self.access_expires_at.is_none() {
            return Err(InvalidInput::MissingAccessExpiry);
        }
        validate_texts(&[
            ("provider", Some(&self.provider)),
            (
                "provider_access_token",
                exposed(self.provider_access_token.as_ref()),
            ),
            (
                "provider_refresh_token",
                exposed(self.provider_refresh_token.as_ref()),
            ),
        ])?;
        validate_times(&[
            ("provider_expires_at", self.provider_expires_at),
            ("access_expires_at", self.access_expires_at),
            ("refresh_expires_at", self.refresh_expires_at),
            ("created_at", Some(self.created_at)),
        ])?;
        if let Some(profile) = &self.user_info.raw_profile {
            validate_profile(profile)?;
        }
        Ok(())
    }

    /// The same session as every store returns it (`issued_at = Some(created_at)`).
    pub fn normalized(mut self) -> Self {
        self.issued_at = Some(self.created_at);
        self
    }

    /// The hash of the access token.
    pub fn access_hash(&self) -> TokenHash {
        TokenHash::of(self.access_token.expose())
    }

    /// The hash of the refresh token, if any.
    pub fn refresh_hash(&self) -> Option<TokenHash> {
        self.refresh_token
            .as_ref()
            .map(|t| TokenHash::of(t.expose()))
    }

    /// What a lookup by access token or by session id may do at `now`.
    pub fn visibility_by_access(&self, now: Timestamp) -> SessionVisibility {
        by_access(
            self.access_expires_at,
            self.refresh_token.is_some(),
            self.refresh_expires_at,
            now,
        )
    }

    /// What a lookup by refresh token may do at `now`.
    pub fn visibility_by_refresh(&self, now: Timestamp) -> SessionVisibility {
        by_refresh(self.access_expires_at, self.refresh_expires_at, now)
    }

    /// Whether no lookup can ever return it again (what `cleanup_expired` removes).
    pub fn is_dead(&self, now: Timestamp) -> bool {
        self.visibility_by_access(now) == SessionVisibility::Dead
    }
}

fn expired(at: Option<Timestamp>, now: Timestamp) -> bool {
    at.is_some_and(|t| t < now)
}

/// mxcp's rule for lookups by access token or session id, on raw column values:
/// an expired access token hides the session; it is deleted when it has no
/// refresh token or the refresh token has expired too.
pub fn by_access(
    access_expires_at: Option<Timestamp>,
    has_refresh: bool,
    refresh_expires_at: Option<Timestamp>,
    now: Timestamp,
) -> SessionVisibility {
    if !expired(access_expires_at, now) {
        SessionVisibility::Live
    } else if !has_refresh || expired(refresh_expires_at, now) {
        SessionVisibility::Dead
    } else {
        SessionVisibility::Hidden
    }
}

/// mxcp's rule for lookups by refresh token, on raw column values: an expired
/// refresh token hides the session; it is deleted when the access token has
/// expired as well.
pub fn by_refresh(
    access_expires_at: Option<Timestamp>,
    refresh_expires_at: Option<Timestamp>,
    now: Timestamp,
) -> SessionVisibility {
    if !expired(refresh_expires_at, now) {
        SessionVisibility::Live
    } else if expired(access_expires_at, now) {
        SessionVisibility::Dead
    } else {
        SessionVisibility::Hidden
    }
}

impl fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSession")
            .field("provider", &self.provider)
            .field("user_info", &self.user_info)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// How a client authenticates at the token endpoint (RFC 7591).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenEndpointAuthMethod {
    /// A public client.
    None,
    /// `client_secret` in the request body.
    ClientSecretPost,
    /// HTTP Basic authentication.
    ClientSecretBasic,
    /// A signed JWT.
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    /// The registered name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Parses a registered name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "client_secret_post" => Self::ClientSecretPost,
            "client_secret_basic" => Self::ClientSecretBasic,
            "private_key_jwt" => Self::PrivateKeyJwt,
            _ => return None,
        })
    }
}

/// A registered OAuth client.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The client id (the key).
    pub client_id: String,
    /// The client secret, for confidential clients.
    pub client_secret: Option<Secret>,
    /// How the client authenticates at the token endpoint.
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    /// Allowed redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Allowed response types.
    pub response_types: Vec<String>,
    /// Registered scope string.
    pub scope: Option<String>,
    /// Human-readable name.
    pub client_name: Option<String>,
    /// When it was registered.
    pub created_at: Timestamp,
}

impl ClientRecord {
    /// A client with only the required fields set.
    pub fn new(client_id: impl Into<String>, created_at: Timestamp) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: None,
            token_endpoint_auth_method: None,
            redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            response_types: Vec::new(),
            scope: None,
            client_name: None,
            created_at,
        }
    }

    /// Checks the record can be stored: a valid key ([`validate_key`]), no
    /// NUL byte in the secret, scope or name (the lists, stored as JSON, may
    /// hold one), and a creation time not before [`MIN_STORABLE_TIME`].
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_key("client_id", &self.client_id)?;
        validate_texts(&[
            ("client_secret", exposed(self.client_secret.as_ref())),
            ("scope", self.scope.as_deref()),
            ("client_name", self.client_name.as_deref()),
        ])?;
        validate_times(&[("created_at", Some(self.created_at))])
    }
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("has_client_secret", &self.client_secret.is_some())
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("client_name", &self.client_name)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionVisibility::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_secs(s)
    }

    #[test]
    fn access_rule_follows_mxcp() {
        let now = t(100);
        assert_eq!(by_access(Some(t(100)), false, None, now), Live);
        assert_eq!(by_access(Some(t(99)), false, None, now), Dead);
        assert_eq!(by_access(Some(t(99)), true, None, now), Hidden);
        assert_eq!(by_access(Some(t(99)), true, Some(t(200)), now), Hidden);
        assert_eq!(by_access(Some(t(99)), true, Some(t(99)), now), Dead);
        assert_eq!(by_access(None, false, None, now), Live);
    }

    #[test]
    fn refresh_rule_follows_mxcp() {
        let now = t(100);
        assert_eq!(by_refresh(Some(t(50)), Some(t(150)), now), Live);
        assert_eq!(by_refresh(Some(t(50)), None, now), Live);
        assert_eq!(by_refresh(Some(t(150)), Some(t(50)), now), Hidden);
        assert_eq!(by_refresh(Some(t(50)), Some(t(50)), now), Dead);
    }

    #[test]
    fn a_nul_is_found_at_every_position_of_every_length() {
        for len in 0..70 {
            let clean = vec![b'a'; len];
            assert!(!has_nul(&clean), "len {len}");
            for at in 0..len {
                let mut bytes = clean.clone();
                bytes[at] = 0;
                assert!(has_nul(&bytes), "len {len}, NUL at {at}");
            }
        }
        let key = format!("{}\0", "t".repeat(32));
        assert_eq!(
            validate_key("access_token", &key),
            Err(InvalidInput::NulByte {
                field: "access_token"
            })
        );
    }

    #[test]
    fn validation_catches_bad_keys() {
        let user = UserInfo::new("p", "u", "n");
        let mut s = StoredSession::new("sid", user, "tok", t(10), t(0));
        assert_eq!(s.validate(), Ok(()));
        s.refresh_token = Some(Secret::new(""));
        assert_eq!(
            s.validate(),
            Err(InvalidInput::EmptyKey {
                field: "refresh_token"
            })
        );
        s.refresh_token = None;
        s.access_expires_at = None;
        assert_eq!(s.validate(), Err(InvalidInput::MissingAccessExpiry));
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            StateRecord::new(long, t(1), t(0)).validate(),
            Err(InvalidInput::KeyTooLong { field: "state", .. })
        ));
    }

    #[test]
    fn debug_hides_identifiers() {
        let mut user = UserInfo::new("github", "user-42", "octocat");
        user.email = Some("octo@example.com".into());
        let mut s = StoredSession::new("sess-1", user, "tok-secret", t(10), t(0));
        s.refresh_token = Some("refresh-secret".into());
        let text = format!("{s:?}");
        for needle in [
            "user-42",
            "octocat",
            "octo@",
            "sess-1",
            "tok-secret",
            "refresh-secret",
        ] {
            assert!(!text.contains(needle), "{needle} leaked in {text}");
        }
    }

    #[test]
    fn profile_depth_is_checked_at_every_branch_without_recursion() {
        use serde_json::{Map, Value};
        let t = Timestamp::from_unix_secs(1_700_000_000);
        let deep = |depth: usize, wide: bool| {
            let mut value = Value::Null;
            for _ in 1..depth {
                value = Value::Array(vec![Value::Bool(true), value]);
            }
            let mut profile = Map::new();
            if wide {
                profile.insert("flat".into(), Value::Array(vec![Value::Null]));
            }
            profile.insert(
                "deep".into(),
                Value::Object(Map::from_iter([("x".into(), value)])),
            );
            profile
        };
        let session = |profile| {
            let mut s = StoredSession::new("sid", UserInfo::new("p", "u", "n"), "at", t, t);
            s.user_info.raw_profile = Some(profile);
            s
        };
        // The object under "deep" adds a level: `deep(d)` is d + 1 levels.
        assert_eq!(
            session(deep(MAX_PROFILE_DEPTH - 1, true)).validate(),
            Ok(())
        );
        let refused = Err(InvalidInput::ProfileTooDeep {
            max: MAX_PROFILE_DEPTH,
        });
        assert_eq!(session(deep(MAX_PROFILE_DEPTH, true)).validate(), refused);
        assert_eq!(session(deep(5_000, false)).validate(), refused);
    }
}
