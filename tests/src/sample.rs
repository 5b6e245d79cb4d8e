//! Sample records: every field set (to prove round trips) or only what a test
//! needs.
//!
//! Times carry odd microseconds so a backend that rounds or truncates them is
//! caught; strings carry non-ASCII text so an encoding bug is caught.

use serde_json::json;
use std::time::Duration;
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, Secret, StateRecord, StoredSession, Timestamp,
    TokenEndpointAuthMethod, UserInfo,
};

/// One second.
pub const SECOND: Duration = Duration::from_secs(1);
/// One minute.
pub const MINUTE: Duration = Duration::from_secs(60);
/// One hour.
pub const HOUR: Duration = Duration::from_secs(3600);
/// One day.
pub const DAY: Duration = Duration::from_secs(86_400);
/// One microsecond, the resolution of [`Timestamp`].
pub const MICRO: Duration = Duration::from_micros(1);

/// `now` moved back by a duration with odd microseconds (a creation time).
pub fn created(now: Timestamp) -> Timestamp {
    now - Duration::from_micros(4_321_987)
}

/// A state with every field set, expiring ten minutes (and a bit) after `now`.
pub fn full_state(state: &str, now: Timestamp) -> StateRecord {
    StateRecord {
        state: state.to_owned(),
        client_id: Some(format!("client-of-{state}")),
        redirect_uri: Some("https://app.example.com/callback?x=1&y=é".to_owned()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned()),
        code_challenge_method: Some("S256".to_owned()),
        provider_code_verifier: Some(Secret::new(format!("verifier-of-{state}"))),
        client_state: Some(format!("client-state-of-{state}")),
        provider_scopes_requested: vec!["openid".into(), "read:user".into(), "ünïcode".into()],
        expires_at: now + 10 * MINUTE + Duration::from_micros(123_457),
        created_at: created(now),
    }
}

/// A state with only the required fields, expiring at `expires_at`.
pub fn state(state: &str, expires_at: Timestamp, now: Timestamp) -> StateRecord {
    StateRecord::new(state, expires_at, now)
}

/// An authorization code with every field set, expiring five minutes (and a
/// bit) after `now`.
pub fn full_code(code: &str, session_id: &str, now: Timestamp) -> AuthCodeRecord {
    AuthCodeRecord {
        code: code.to_owned(),
        session_id: session_id.to_owned(),
        client_id: Some(format!("client-of-{code}")),
        redirect_uri: Some("http://localhost:8765/cb".to_owned()),
        code_challenge: Some(format!("challenge-of-{code}")),
        code_challenge_method: Some("S256".to_owned()),
        scopes: vec!["mxcp:access".into(), "tools:run".into()],
        expires_at: now + 5 * MINUTE + Duration::from_micros(654_321),
        created_at: created(now),
    }
}

/// An authorization code with only the required fields, expiring at `expires_at`.
pub fn code(code: &str, session_id: &str, expires_at: Timestamp, now: Timestamp) -> AuthCodeRecord {
    AuthCodeRecord::new(code, session_id, expires_at, now)
}

/// User info with every field set, for user `user_id`.
pub fn full_user(user_id: &str) -> UserInfo {
    let raw = json!({
        "login": format!("login-of-{user_id}"),
        "id": 42,
        "site_admin": false,
        "bio": null,
        "orgs": ["acme", "ünïcode"],
        "plan": { "name": "pro", "seats": 3 },
    });
    let serde_json::Value::Object(raw_profile) = raw else {
        unreachable!("the literal is an object")
    };
    UserInfo {
        provider: "github".to_owned(),
        user_id: user_id.to_owned(),
        username: format!("name-of-{user_id}"),
        email: Some(format!("{user_id}@example.com")),
        name: Some("Zoë Ångström 🦀".to_owned()),
        avatar_url: Some("https://avatars.example.com/u/42?v=4".to_owned()),
        raw_profile: Some(raw_profile),
        provider_scopes_granted: vec!["read:user".into(), "repo".into()],
        capabilities: vec!["admin".into(), "tools:run".into()],
    }
}

/// A session with every field set: access token live for an hour, refresh
/// token for thirty days (each plus odd microseconds).
pub fn full_session(
    session_id: &str,
    access: &str,
    refresh: &str,
    now: Timestamp,
) -> StoredSession {
    let created_at = created(now);
    StoredSession {
        session_id: session_id.to_owned(),
        provider: "github".to_owned(),
        user_info: full_user(&format!("user-of-{session_id}")),
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(refresh)),
        provider_access_token: Some(Secret::new(format!("gho_provider-access-of-{session_id}"))),
        provider_refresh_token: Some(Secret::new(format!("ghr_provider-refresh-of-{session_id}"))),
        provider_expires_at: Some(now + 8 * HOUR + Duration::from_micros(1)),
        access_expires_at: Some(now + HOUR + Duration::from_micros(999_999)),
        refresh_expires_at: Some(now + 30 * DAY + Duration::from_micros(500_001)),
        created_at,
        issued_at: Some(created_at),
    }
}

/// A session with only what expiry tests need: ids, tokens and expiries.
pub fn session(
    session_id: &str,
    access: &str,
    refresh: Option<&str>,
    access_expires_at: Timestamp,
    refresh_expires_at: Option<Timestamp>,
    now: Timestamp,
) -> StoredSession {
    let user = UserInfo::new("github", format!("user-of-{session_id}"), "someone");
    let mut s = StoredSession::new(session_id, user, access, access_expires_at, now);
    s.refresh_token = refresh.map(Secret::new);
    s.refresh_expires_at = refresh_expires_at;
    s
}

/// A live session (access for an hour, refresh for a day when given).
pub fn live_session(
    session_id: &str,
    access: &str,
    refresh: Option<&str>,
    now: Timestamp,
) -> StoredSession {
    let refresh_expiry = refresh.map(|_| now + DAY);
    session(session_id, access, refresh, now + HOUR, refresh_expiry, now)
}

/// A client with every field set.
pub fn full_client(client_id: &str, now: Timestamp) -> ClientRecord {
    ClientRecord {
        client_id: client_id.to_owned(),
        client_secret: Some(Secret::new(format!("client-secret-of-{client_id}"))),
        token_endpoint_auth_method: Some(TokenEndpointAuthMethod::ClientSecretPost),
        redirect_uris: vec![
            "https://app.example.com/cb".into(),
            "http://127.0.0.1:33418/".into(),
        ],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        response_types: vec!["code".into()],
        scope: Some("mxcp:access openid".to_owned()),
        client_name: Some(format!("Client «{client_id}»")),
        created_at: created(now),
    }
}

/// A client with only the required fields.
pub fn client(client_id: &str, now: Timestamp) -> ClientRecord {
    ClientRecord::new(client_id, now)
}
