//! The input rules every backend shares: no NUL byte in a key or in a field
//! stored as its own text column, and no stored time before
//! `MIN_STORABLE_TIME`. Each rule is checked field by field, and no error
//! shows the value it refused.

use tokenstore_core::{
    AuthCodeRecord, ClientRecord, InvalidInput, MIN_STORABLE_TIME, Secret, StateRecord, StoreError,
    StoredSession, Timestamp, UserInfo, WriteOp, validate_key,
};

use std::sync::Arc;
use std::time::Duration;

const NOW: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

/// A value with a NUL byte that is also easy to spot in an error's text.
const NUL: &str = "secret-value-\0-tail";

const TOO_EARLY: Timestamp = Timestamp::from_unix_micros(MIN_STORABLE_TIME.as_unix_micros() - 1);

fn nul(field: &'static str) -> Result<(), InvalidInput> {
    Err(InvalidInput::NulByte { field })
}

fn early(field: &'static str) -> Result<(), InvalidInput> {
    Err(InvalidInput::TimeTooEarly { field })
}

fn state() -> StateRecord {
    StateRecord::new("st", NOW, NOW)
}

fn code() -> AuthCodeRecord {
    AuthCodeRecord::new("code", "sid", NOW, NOW)
}

fn session() -> StoredSession {
    let mut s = StoredSession::new("sid", UserInfo::new("p", "u", "n"), "at", NOW, NOW);
    s.refresh_token = Some(Secret::new("rt"));
    s
}

fn client() -> ClientRecord {
    ClientRecord::new("client", NOW)
}

/// A change to a record, and what `validate` answers for the changed record.
type Case<R> = (fn(&mut R), Result<(), InvalidInput>);

/// Runs `validate` on `base` changed by each edit, expecting the paired result.
fn check<R: Clone>(base: R, validate: fn(&R) -> Result<(), InvalidInput>, cases: Vec<Case<R>>) {
    assert_eq!(validate(&base), Ok(()), "the base record is valid");
    for (i, (edit, expected)) in cases.into_iter().enumerate() {
        let mut r = base.clone();
        edit(&mut r);
        assert_eq!(validate(&r), expected, "case {i}");
    }
}

#[test]
fn min_storable_time_is_postgres_earliest_timestamptz() {
    // PostgreSQL's MIN_TIMESTAMP, in microseconds from 2000-01-01 UTC.
    let pg_min_from_2000: i64 = -211_813_488_000_000_000;
    let unix_2000 = Timestamp::from_unix_secs(946_684_800).as_unix_micros();
    assert_eq!(
        MIN_STORABLE_TIME.as_unix_micros(),
        pg_min_from_2000 + unix_2000
    );
    assert_eq!(
        MIN_STORABLE_TIME,
        Timestamp::from_unix_secs(-210_866_803_200)
    );
}

#[test]
fn keys_with_a_nul_byte_are_refused_wherever_it_sits() {
    for key in ["\0", "\0key", "k\0y", "key\0", NUL] {
        for field in ["state", "code", "session_id", "access_token", "client_id"] {
            assert_eq!(validate_key(field, key), nul(field), "{key:?}");
        }
    }
    assert_eq!(validate_key("state", "no nul: \u{1} \u{7f} é"), Ok(()));
}

#[test]
fn empty_and_oversized_keys_keep_their_own_errors() {
    assert_eq!(
        validate_key("code", ""),
        Err(InvalidInput::EmptyKey { field: "code" })
    );
    let long = format!("\0{}", "k".repeat(tokenstore_core::MAX_KEY_BYTES));
    assert!(matches!(
        validate_key("code", &long),
        Err(InvalidInput::KeyTooLong { field: "code", .. })
    ));
}

#[test]
fn state_refuses_nul_in_every_text_column_but_not_in_json() {
    check(
        state(),
        StateRecord::validate,
        vec![
            (|r| r.state = NUL.into(), nul("state")),
            (|r| r.client_id = Some(NUL.into()), nul("client_id")),
            (|r| r.redirect_uri = Some(NUL.into()), nul("redirect_uri")),
            (
                |r| r.code_challenge = Some(NUL.into()),
                nul("code_challenge"),
            ),
            (
                |r| r.code_challenge_method = Some(NUL.into()),
                nul("code_challenge_method"),
            ),
            (
                |r| r.provider_code_verifier = Some(Secret::new(NUL)),
                nul("provider_code_verifier"),
            ),
            (|r| r.client_state = Some(NUL.into()), nul("client_state")),
            (|r| r.provider_scopes_requested = vec![NUL.into()], Ok(())),
        ],
    );
}

#[test]
fn auth_code_refuses_nul_in_every_text_column_but_not_in_json() {
    check(
        code(),
        AuthCodeRecord::validate,
        vec![
            (|r| r.code = NUL.into(), nul("code")),
            (|r| r.session_id = NUL.into(), nul("session_id")),
            (|r| r.client_id = Some(NUL.into()), nul("client_id")),
            (|r| r.redirect_uri = Some(NUL.into()), nul("redirect_uri")),
            (
                |r| r.code_challenge = Some(NUL.into()),
                nul("code_challenge"),
            ),
            (
                |r| r.code_challenge_method = Some(NUL.into()),
                nul("code_challenge_method"),
            ),
            (|r| r.scopes = vec![NUL.into()], Ok(())),
        ],
    );
}

#[test]
fn session_refuses_nul_in_every_text_column_but_not_in_user_info() {
    check(
        session(),
        StoredSession::validate,
        vec![
            (|s| s.session_id = NUL.into(), nul("session_id")),
            (|s| s.access_token = Secret::new(NUL), nul("access_token")),
            (
                |s| s.refresh_token = Some(Secret::new(NUL)),
                nul("refresh_token"),
            ),
            (|s| s.provider = NUL.into(), nul("provider")),
            (
                |s| s.provider_access_token = Some(Secret::new(NUL)),
                nul("provider_access_token"),
            ),
            (
                |s| s.provider_refresh_token = Some(Secret::new(NUL)),
                nul("provider_refresh_token"),
            ),
            (|s| s.user_info = nul_user_info(), Ok(())),
        ],
    );
}

/// User info with a NUL byte in every field: it is stored as JSON, which
/// escapes NUL.
fn nul_user_info() -> UserInfo {
    let mut user = UserInfo::new(NUL, NUL, NUL);
    user.email = Some(NUL.into());
    user.name = Some(NUL.into());
    user.avatar_url = Some(NUL.into());
    let mut profile = serde_json::Map::new();
    profile.insert(NUL.into(), serde_json::Value::String(NUL.into()));
    user.raw_profile = Some(profile);
    user.provider_scopes_granted = vec![NUL.into()];
    user.capabilities = vec![NUL.into()];
    user
}

#[test]
fn client_refuses_nul_in_every_text_column_but_not_in_json() {
    check(
        client(),
        ClientRecord::validate,
        vec![
            (|r| r.client_id = NUL.into(), nul("client_id")),
            (
                |r| r.client_secret = Some(Secret::new(NUL)),
                nul("client_secret"),
            ),
            (|r| r.scope = Some(NUL.into()), nul("scope")),
            (|r| r.client_name = Some(NUL.into()), nul("client_name")),
            (
                |r| {
                    r.redirect_uris = vec![NUL.into()];
                    r.grant_types = vec![NUL.into()];
                    r.response_types = vec![NUL.into()];
                },
                Ok(()),
            ),
        ],
    );
}

#[test]
fn every_stored_time_is_refused_before_the_minimum_and_kept_at_it() {
    check(
        state(),
        StateRecord::validate,
        vec![
            (|r| r.expires_at = TOO_EARLY, early("expires_at")),
            (|r| r.created_at = Timestamp::MIN, early("created_at")),
            (|r| r.created_at = MIN_STORABLE_TIME, Ok(())),
        ],
    );
    check(
        code(),
        AuthCodeRecord::validate,
        vec![
            (|r| r.expires_at = TOO_EARLY, early("expires_at")),
            (|r| r.created_at = TOO_EARLY, early("created_at")),
            (|r| r.expires_at = MIN_STORABLE_TIME, Ok(())),
        ],
    );
    check(
        client(),
        ClientRecord::validate,
        vec![
            (|r| r.created_at = TOO_EARLY, early("created_at")),
            (|r| r.created_at = MIN_STORABLE_TIME, Ok(())),
        ],
    );
}

#[test]
fn every_stored_session_time_is_refused_before_the_minimum() {
    check(
        session(),
        StoredSession::validate,
        vec![
            (
                |s| s.provider_expires_at = Some(TOO_EARLY),
                early("provider_expires_at"),
            ),
            (
                |s| s.access_expires_at = Some(TOO_EARLY),
                early("access_expires_at"),
            ),
            (
                |s| s.refresh_expires_at = Some(TOO_EARLY),
                early("refresh_expires_at"),
            ),
            (|s| s.created_at = TOO_EARLY, early("created_at")),
            // Not stored: loads return `created_at` in its place.
            (|s| s.issued_at = Some(Timestamp::MIN), Ok(())),
            (
                |s| {
                    s.provider_expires_at = Some(MIN_STORABLE_TIME);
                    s.access_expires_at = Some(MIN_STORABLE_TIME);
                    s.refresh_expires_at = Some(MIN_STORABLE_TIME);
                    s.created_at = MIN_STORABLE_TIME;
                },
                Ok(()),
            ),
            (|s| s.access_expires_at = Some(Timestamp::MAX), Ok(())),
        ],
    );
}

#[test]
fn write_ops_check_what_their_single_operation_checks() {
    let mut bad_state = state();
    bad_state.client_state = Some(NUL.into());
    let mut old_code = code();
    old_code.created_at = TOO_EARLY;
    let mut bad_session = session();
    bad_session.provider = NUL.into();
    let mut bad_client = client();
    bad_client.scope = Some(NUL.into());
    let cases = [
        (
            WriteOp::StoreState(Arc::new(bad_state)),
            nul("client_state"),
        ),
        (WriteOp::RemoveState(NUL.into()), nul("state")),
        (
            WriteOp::StoreAuthCode(Arc::new(old_code)),
            early("created_at"),
        ),
        (WriteOp::DeleteAuthCode(NUL.into()), nul("code")),
        (
            WriteOp::StoreSession(Arc::new(bad_session)),
            nul("provider"),
        ),
        (
            WriteOp::DeleteSessionByToken(Secret::new(NUL)),
            nul("access_token"),
        ),
        (WriteOp::DeleteSessionById(NUL.into()), nul("session_id")),
        (WriteOp::StoreClient(Arc::new(bad_client)), nul("scope")),
        (WriteOp::DeleteClient(NUL.into()), nul("client_id")),
        (WriteOp::DeleteClient("fine".into()), Ok(())),
    ];
    for (op, expected) in cases {
        assert_eq!(op.validate(), expected, "{op:?}");
    }
}

#[test]
fn errors_never_show_the_refused_value() {
    let mut s = session();
    s.provider_access_token = Some(Secret::new(NUL));
    let mut c = client();
    c.created_at = TOO_EARLY - Duration::from_secs(1);
    let errors = [
        validate_key("access_token", NUL).unwrap_err(),
        s.validate().unwrap_err(),
        c.validate().unwrap_err(),
    ];
    // The digits every rendering of the refused time (seconds or
    // microseconds) starts with.
    let when = "210866";
    for e in errors {
        let store = StoreError::from(e.clone());
        for text in [
            e.to_string(),
            format!("{e:?}"),
            store.to_string(),
            format!("{store:?}"),
        ] {
            assert!(!text.contains("secret-value"), "value leaked: {text}");
            assert!(!text.contains('\0'), "a NUL in: {text:?}");
            assert!(!text.contains(when), "the time leaked: {text}");
        }
    }
}
