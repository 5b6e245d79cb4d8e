//! Comparisons that say which field differs.
//!
//! Records hide their secrets and identifiers from `Debug`, so a plain
//! `assert_eq!` on two records prints little; these helpers name the fields
//! (never their values) that differ.

use tokenstore_core::{AuthCodeRecord, ClientRecord, Contents, StateRecord, StoredSession};

/// Collects the names of differing fields.
#[derive(Debug, Default)]
struct Diff(Vec<&'static str>);

impl Diff {
    fn check<T: PartialEq + ?Sized>(&mut self, name: &'static str, a: &T, b: &T) -> &mut Self {
        if a != b {
            self.0.push(name);
        }
        self
    }
}

/// The fields in which two states differ.
pub fn state_differences(a: &StateRecord, b: &StateRecord) -> Vec<&'static str> {
    let mut d = Diff::default();
    d.check("state", &a.state, &b.state)
        .check("client_id", &a.client_id, &b.client_id)
        .check("redirect_uri", &a.redirect_uri, &b.redirect_uri)
        .check("code_challenge", &a.code_challenge, &b.code_challenge)
        .check(
            "code_challenge_method",
            &a.code_challenge_method,
            &b.code_challenge_method,
        )
        .check(
            "provider_code_verifier",
            &a.provider_code_verifier,
            &b.provider_code_verifier,
        )
        .check("client_state", &a.client_state, &b.client_state)
        .check(
            "provider_scopes_requested",
            &a.provider_scopes_requested,
            &b.provider_scopes_requested,
        )
        .check("expires_at", &a.expires_at, &b.expires_at)
        .check("created_at", &a.created_at, &b.created_at);
    d.0
}

/// The fields in which two authorization codes differ.
pub fn code_differences(a: &AuthCodeRecord, b: &AuthCodeRecord) -> Vec<&'static str> {
    let mut d = Diff::default();
    d.check("code", &a.code, &b.code)
        .check("session_id", &a.session_id, &b.session_id)
        .check("client_id", &a.client_id, &b.client_id)
        .check("redirect_uri", &a.redirect_uri, &b.redirect_uri)
        .check("code_challenge", &a.code_challenge, &b.code_challenge)
        .check(
            "code_challenge_method",
            &a.code_challenge_method,
            &b.code_challenge_method,
        )
        .check("scopes", &a.scopes, &b.scopes)
        .check("expires_at", &a.expires_at, &b.expires_at)
        .check("created_at", &a.created_at, &b.created_at);
    d.0
}

/// The fields in which two sessions differ (`user_info.*` for the user's).
pub fn session_differences(a: &StoredSession, b: &StoredSession) -> Vec<&'static str> {
    let (u, v) = (&a.user_info, &b.user_info);
    let mut d = Diff::default();
    d.check("session_id", &a.session_id, &b.session_id)
        .check("provider", &a.provider, &b.provider)
        .check("user_info.provider", &u.provider, &v.provider)
        .check("user_info.user_id", &u.user_id, &v.user_id)
        .check("user_info.username", &u.username, &v.username)
        .check("user_info.email", &u.email, &v.email)
        .check("user_info.name", &u.name, &v.name)
        .check("user_info.avatar_url", &u.avatar_url, &v.avatar_url)
        .check("user_info.raw_profile", &u.raw_profile, &v.raw_profile)
        .check(
            "user_info.provider_scopes_granted",
            &u.provider_scopes_granted,
            &v.provider_scopes_granted,
        )
        .check("user_info.capabilities", &u.capabilities, &v.capabilities)
        .check("access_token", &a.access_token, &b.access_token)
        .check("refresh_token", &a.refresh_token, &b.refresh_token)
        .check(
            "provider_access_token",
            &a.provider_access_token,
            &b.provider_access_token,
        )
        .check(
            "provider_refresh_token",
            &a.provider_refresh_token,
            &b.provider_refresh_token,
        )
        .check(
            "provider_expires_at",
            &a.provider_expires_at,
            &b.provider_expires_at,
        )
        .check(
            "access_expires_at",
            &a.access_expires_at,
            &b.access_expires_at,
        )
        .check(
            "refresh_expires_at",
            &a.refresh_expires_at,
            &b.refresh_expires_at,
        )
        .check("created_at", &a.created_at, &b.created_at)
        .check("issued_at", &a.issued_at, &b.issued_at);
    d.0
}

/// The fields in which two clients differ.
pub fn client_differences(a: &ClientRecord, b: &ClientRecord) -> Vec<&'static str> {
    let mut d = Diff::default();
    d.check("client_id", &a.client_id, &b.client_id)
        .check("client_secret", &a.client_secret, &b.client_secret)
        .check(
            "token_endpoint_auth_method",
            &a.token_endpoint_auth_method,
            &b.token_endpoint_auth_method,
        )
        .check("redirect_uris", &a.redirect_uris, &b.redirect_uris)
        .check("grant_types", &a.grant_types, &b.grant_types)
        .check("response_types", &a.response_types, &b.response_types)
        .check("scope", &a.scope, &b.scope)
        .check("client_name", &a.client_name, &b.client_name)
        .check("created_at", &a.created_at, &b.created_at);
    d.0
}

/// Panics, naming the differing fields, unless the states are equal.
#[track_caller]
pub fn assert_state_eq(actual: &StateRecord, expected: &StateRecord) {
    let diff = state_differences(actual, expected);
    assert!(diff.is_empty(), "states differ in {diff:?}");
}

/// Panics, naming the differing fields, unless the codes are equal.
#[track_caller]
pub fn assert_code_eq(actual: &AuthCodeRecord, expected: &AuthCodeRecord) {
    let diff = code_differences(actual, expected);
    assert!(diff.is_empty(), "auth codes differ in {diff:?}");
}

/// Panics, naming the differing fields, unless the session equals `expected`
/// as stores return it ([`StoredSession::normalized`]).
#[track_caller]
pub fn assert_session_eq(actual: &StoredSession, expected: &StoredSession) {
    let diff = session_differences(actual, &expected.clone().normalized());
    assert!(diff.is_empty(), "sessions differ in {diff:?}");
}

/// Panics, naming the differing fields, unless the clients are equal.
#[track_caller]
pub fn assert_client_eq(actual: &ClientRecord, expected: &ClientRecord) {
    let diff = client_differences(actual, expected);
    assert!(diff.is_empty(), "clients differ in {diff:?}");
}

/// Panics, naming the kind, position and fields of the first difference,
/// unless the two contents are equal.
#[track_caller]
pub fn assert_contents_eq(actual: &Contents, expected: &Contents) {
    if actual == expected {
        return;
    }
    let problem = first_difference("states", &actual.states, &expected.states, |a, b| {
        state_differences(a, b)
    })
    .or_else(|| {
        first_difference(
            "auth_codes",
            &actual.auth_codes,
            &expected.auth_codes,
            |a, b| code_differences(a, b),
        )
    })
    .or_else(|| {
        first_difference("sessions", &actual.sessions, &expected.sessions, |a, b| {
            session_differences(a, b)
        })
    })
    .or_else(|| {
        first_difference("clients", &actual.clients, &expected.clients, |a, b| {
            client_differences(a, b)
        })
    });
    panic!(
        "contents differ: {}",
        problem.unwrap_or_else(|| "(no field differs?)".to_owned())
    );
}

fn first_difference<T>(
    kind: &str,
    actual: &[T],
    expected: &[T],
    diff: impl Fn(&T, &T) -> Vec<&'static str>,
) -> Option<String> {
    if actual.len() != expected.len() {
        return Some(format!(
            "{kind}: {} records, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    actual
        .iter()
        .zip(expected)
        .enumerate()
        .find_map(|(i, (a, b))| {
            let fields = diff(a, b);
            (!fields.is_empty()).then(|| format!("{kind}[{i}] differs in {fields:?}"))
        })
}

/// The session ids in `contents`, sorted.
pub fn session_ids(contents: &Contents) -> Vec<String> {
    let mut ids: Vec<String> = contents
        .sessions
        .iter()
        .map(|s| s.session_id.clone())
        .collect();
    ids.sort();
    ids
}

/// The state values in `contents`, sorted.
pub fn state_keys(contents: &Contents) -> Vec<String> {
    let mut keys: Vec<String> = contents.states.iter().map(|s| s.state.clone()).collect();
    keys.sort();
    keys
}

/// The codes in `contents`, sorted.
pub fn code_keys(contents: &Contents) -> Vec<String> {
    let mut keys: Vec<String> = contents.auth_codes.iter().map(|c| c.code.clone()).collect();
    keys.sort();
    keys
}
