//! Bad input gets a typed error and changes nothing; a closed store refuses
//! everything.

use super::{by_token, seed_mixed};
use crate::compare::{
    assert_client_eq, assert_code_eq, assert_contents_eq, assert_session_eq, assert_state_eq,
};
use crate::sample::{
    HOUR, code, full_client, full_code, full_session, full_state, live_session, state,
};
use crate::{Factory, Fixture, Runtime, T0};
use std::fmt;
use std::sync::Arc;
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, Contents, InvalidInput, MAX_KEY_BYTES, MAX_PROFILE_DEPTH,
    MIN_STORABLE_TIME, Secret, StateRecord, StoreError, StoredSession, Timestamp, TokenHash,
    TokenStore,
};

/// Panics unless `result` is exactly the error `expected`.
#[track_caller]
fn assert_err<T: fmt::Debug>(op: &str, result: Result<T, StoreError>, expected: &StoreError) {
    match result {
        Err(e) => assert_eq!(&e, expected, "{op}: wrong error"),
        Ok(v) => panic!("{op}: expected {expected:?}, got Ok({v:?})"),
    }
}

fn empty(field: &'static str) -> StoreError {
    StoreError::InvalidInput(InvalidInput::EmptyKey { field })
}

fn too_long(field: &'static str) -> StoreError {
    StoreError::InvalidInput(InvalidInput::KeyTooLong {
        field,
        len: MAX_KEY_BYTES + 1,
        max: MAX_KEY_BYTES,
    })
}

fn long_key() -> String {
    "k".repeat(MAX_KEY_BYTES + 1)
}

/// Empty keys in state operations: typed error, nothing changed.
pub async fn empty_keys_states<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let s = fx
        .store
        .store_state(Arc::new(state("", T0 + HOUR, T0)))
        .await;
    assert_err("store_state", s, &empty("state"));
    assert_err(
        "consume_state",
        fx.store.consume_state("").await,
        &empty("state"),
    );
    assert_contents_eq(&fx.contents().await, &before);
}

/// Empty keys in auth code operations: typed error, nothing changed.
pub async fn empty_keys_auth_codes<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let no_code = code("", "sess-live", T0 + HOUR, T0);
    let r = fx.store.store_auth_code(Arc::new(no_code)).await;
    assert_err("store_auth_code", r, &empty("code"));
    let no_session = code("code-new", "", T0 + HOUR, T0);
    let r = fx.store.store_auth_code(Arc::new(no_session)).await;
    assert_err("store_auth_code", r, &empty("session_id"));
    assert_err(
        "load_auth_code",
        fx.store.load_auth_code("").await,
        &empty("code"),
    );
    assert_err(
        "delete_auth_code",
        fx.store.delete_auth_code("").await,
        &empty("code"),
    );
    let r = fx.store.try_delete_auth_code("").await;
    assert_err("try_delete_auth_code", r, &empty("code"));
    assert_contents_eq(&fx.contents().await, &before);
}

/// Empty keys in session operations: typed error, nothing changed.
pub async fn empty_keys_sessions<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let no_id = live_session("", "at-new", Some("rt-new"), T0);
    let r = fx.store.store_session(Arc::new(no_id)).await;
    assert_err("store_session", r, &empty("session_id"));
    let no_access = live_session("sess-new", "", Some("rt-new"), T0);
    let r = fx.store.store_session(Arc::new(no_access)).await;
    assert_err("store_session", r, &empty("access_token"));
    let r = fx.store.load_session_by_token("").await;
    assert_err("load_session_by_token", r, &empty("access_token"));
    let r = fx.store.load_session_by_id("").await;
    assert_err("load_session_by_id", r, &empty("session_id"));
    let r = fx.store.load_session_by_refresh_token("").await;
    assert_err("load_session_by_refresh_token", r, &empty("refresh_token"));
    let r = fx.store.delete_session_by_token("").await;
    assert_err("delete_session_by_token", r, &empty("access_token"));
    let r = fx.store.delete_session_by_id("").await;
    assert_err("delete_session_by_id", r, &empty("session_id"));
    assert_contents_eq(&fx.contents().await, &before);
}

/// Empty keys in client operations: typed error, nothing changed.
pub async fn empty_keys_clients<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let r = fx.store.store_client(Arc::new(full_client("", T0))).await;
    assert_err("store_client", r, &empty("client_id"));
    assert_err(
        "load_client",
        fx.store.load_client("").await,
        &empty("client_id"),
    );
    assert_err(
        "delete_client",
        fx.store.delete_client("").await,
        &empty("client_id"),
    );
    assert_contents_eq(&fx.contents().await, &before);
}

/// A session with an empty refresh token is refused, and does not replace the
/// stored session it shares its id and access token with.
pub async fn empty_refresh_token<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let existing = full_session("sess-1", "at-1", "rt-1", T0);
    super::put(&fx, &existing).await;
    let before = fx.contents().await;
    let mut bad = full_session("sess-1", "at-1", "rt-1", T0);
    bad.refresh_token = Some(Secret::new(""));
    let r = fx.store.store_session(Arc::new(bad)).await;
    assert_err("store_session", r, &empty("refresh_token"));
    assert_contents_eq(&fx.contents().await, &before);
    assert_session_eq(&by_token(&fx, "at-1").await.expect("kept"), &existing);
}

/// A session without an access expiry is refused, and does not replace the
/// stored sessions it shares keys with.
pub async fn session_without_access_expiry<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let a = full_session("sess-a", "at-a", "rt-a", T0);
    let b = full_session("sess-b", "at-b", "rt-b", T0);
    super::put(&fx, &a).await;
    super::put(&fx, &b).await;
    let before = fx.contents().await;
    let mut bad = full_session("sess-a", "at-new", "rt-b", T0);
    bad.access_expires_at = None;
    let r = fx.store.store_session(Arc::new(bad)).await;
    let missing = StoreError::InvalidInput(InvalidInput::MissingAccessExpiry);
    assert_err("store_session", r, &missing);
    assert_contents_eq(&fx.contents().await, &before);
    assert_session_eq(&by_token(&fx, "at-a").await.expect("kept"), &a);
    assert_session_eq(&by_token(&fx, "at-b").await.expect("kept"), &b);
}

/// A raw profile `depth` levels deep (the profile object is level 1).
fn nested_profile(depth: usize) -> serde_json::Map<String, serde_json::Value> {
    let mut value = serde_json::Value::Null;
    for _ in 1..depth {
        value = serde_json::Value::Array(vec![value]);
    }
    let mut profile = serde_json::Map::new();
    profile.insert("nested".to_owned(), value);
    profile
}

/// A raw profile at the depth limit is stored and read back equal; one level
/// deeper is refused with a typed error and changes nothing (JSON that deep
/// could be written but not read back).
pub async fn profile_depth_limit<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let mut deepest = full_session("sess-deep", "at-deep", "rt-deep", T0);
    deepest.user_info.raw_profile = Some(nested_profile(MAX_PROFILE_DEPTH));
    super::put(&fx, &deepest).await;
    assert_session_eq(&by_token(&fx, "at-deep").await.expect("stored"), &deepest);
    let before = fx.contents().await;
    let mut bad = full_session("sess-deep", "at-deep", "rt-deep", T0);
    bad.user_info.raw_profile = Some(nested_profile(MAX_PROFILE_DEPTH + 1));
    let r = fx.store.store_session(Arc::new(bad)).await;
    let too_deep = StoreError::InvalidInput(InvalidInput::ProfileTooDeep {
        max: MAX_PROFILE_DEPTH,
    });
    assert_err("store_session", r, &too_deep);
    assert_contents_eq(&fx.contents().await, &before);
    assert_session_eq(&by_token(&fx, "at-deep").await.expect("kept"), &deepest);
}

/// Oversized keys in state and code operations: typed error, nothing changed.
pub async fn oversized_keys_states_and_codes<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let long = long_key();
    let r = fx
        .store
        .store_state(Arc::new(state(&long, T0 + HOUR, T0)))
        .await;
    assert_err("store_state", r, &too_long("state"));
    assert_err(
        "consume_state",
        fx.store.consume_state(&long).await,
        &too_long("state"),
    );
    let r = fx
        .store
        .store_auth_code(Arc::new(code(&long, "s", T0 + HOUR, T0)))
        .await;
    assert_err("store_auth_code", r, &too_long("code"));
    let r = fx
        .store
        .store_auth_code(Arc::new(code("c", &long, T0 + HOUR, T0)))
        .await;
    assert_err("store_auth_code", r, &too_long("session_id"));
    assert_err(
        "load_auth_code",
        fx.store.load_auth_code(&long).await,
        &too_long("code"),
    );
    let r = fx.store.delete_auth_code(&long).await;
    assert_err("delete_auth_code", r, &too_long("code"));
    let r = fx.store.try_delete_auth_code(&long).await;
    assert_err("try_delete_auth_code", r, &too_long("code"));
    assert_contents_eq(&fx.contents().await, &before);
}

/// Oversized keys in session and client operations: typed error, nothing changed.
pub async fn oversized_keys_sessions_and_clients<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let long = long_key();
    let bad_sessions: [(StoredSession, &str); 3] = [
        (live_session(&long, "at-n", Some("rt-n"), T0), "session_id"),
        (
            live_session("sess-n", &long, Some("rt-n"), T0),
            "access_token",
        ),
        (
            live_session("sess-n", "at-n", Some(&long), T0),
            "refresh_token",
        ),
    ];
    for (s, field) in bad_sessions {
        let r = fx.store.store_session(Arc::new(s)).await;
        assert_err("store_session", r, &too_long(field));
    }
    let r = fx.store.load_session_by_token(&long).await;
    assert_err("load_session_by_token", r, &too_long("access_token"));
    let r = fx.store.load_session_by_id(&long).await;
    assert_err("load_session_by_id", r, &too_long("session_id"));
    let r = fx.store.load_session_by_refresh_token(&long).await;
    assert_err(
        "load_session_by_refresh_token",
        r,
        &too_long("refresh_token"),
    );
    let r = fx.store.delete_session_by_token(&long).await;
    assert_err("delete_session_by_token", r, &too_long("access_token"));
    let r = fx.store.delete_session_by_id(&long).await;
    assert_err("delete_session_by_id", r, &too_long("session_id"));
    let r = fx
        .store
        .store_client(Arc::new(full_client(&long, T0)))
        .await;
    assert_err("store_client", r, &too_long("client_id"));
    assert_err(
        "load_client",
        fx.store.load_client(&long).await,
        &too_long("client_id"),
    );
    let r = fx.store.delete_client(&long).await;
    assert_err("delete_client", r, &too_long("client_id"));
    assert_contents_eq(&fx.contents().await, &before);
}

/// Keys of exactly [`MAX_KEY_BYTES`] bytes are accepted everywhere and round-trip.
pub async fn max_size_keys_accepted<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let key = |c: char| c.to_string().repeat(MAX_KEY_BYTES);
    let (st, cd, sid, at, rt, cid) = (key('s'), key('c'), key('i'), key('a'), key('r'), key('l'));
    fx.store
        .store_state(Arc::new(state(&st, T0 + HOUR, T0)))
        .await
        .unwrap();
    let record = code(&cd, &sid, T0 + HOUR, T0);
    fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    let s = full_session(&sid, &at, &rt, T0);
    super::put(&fx, &s).await;
    let client = full_client(&cid, T0);
    fx.store.store_client(Arc::new(client)).await.unwrap();
    assert_eq!(
        fx.store
            .consume_state(&st)
            .await
            .unwrap()
            .expect("state")
            .state,
        st
    );
    let loaded = fx.store.load_auth_code(&cd).await.unwrap().expect("code");
    assert_eq!((&loaded.code, &loaded.session_id), (&cd, &sid));
    assert!(fx.store.try_delete_auth_code(&cd).await.unwrap());
    assert_session_eq(&by_token(&fx, &at).await.expect("by token"), &s);
    assert_session_eq(&super::by_id(&fx, &sid).await.expect("by id"), &s);
    assert_session_eq(&super::by_refresh(&fx, &rt).await.expect("by refresh"), &s);
    assert_eq!(
        fx.store
            .load_client(&cid)
            .await
            .unwrap()
            .expect("client")
            .client_id,
        cid
    );
}

/// Multi-byte characters count in bytes: a key of `MAX_KEY_BYTES / 2 + 1`
/// two-byte characters is too long.
pub async fn key_limit_counts_bytes<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let long = "é".repeat(MAX_KEY_BYTES / 2 + 1);
    let r = fx.store.consume_state(&long).await;
    let expected = StoreError::InvalidInput(InvalidInput::KeyTooLong {
        field: "state",
        len: MAX_KEY_BYTES + 2,
        max: MAX_KEY_BYTES,
    });
    assert_err("consume_state", r, &expected);
    let fits = "é".repeat(MAX_KEY_BYTES / 2);
    fx.store
        .store_state(Arc::new(state(&fits, T0 + HOUR, T0)))
        .await
        .unwrap();
    assert!(fx.store.consume_state(&fits).await.unwrap().is_some());
}

/// After `close`, every operation returns `Closed` (bulk ones included).
pub async fn closed_store_refuses_everything<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    fx.store.close().await.unwrap();
    let closed = StoreError::Closed;
    let st = Arc::new(state("st-new", T0 + HOUR, T0));
    assert_err("store_state", fx.store.store_state(st).await, &closed);
    assert_err(
        "consume_state",
        fx.store.consume_state("st-live").await,
        &closed,
    );
    let cd = Arc::new(code("code-new", "sess-live", T0 + HOUR, T0));
    assert_err(
        "store_auth_code",
        fx.store.store_auth_code(cd).await,
        &closed,
    );
    assert_err(
        "load_auth_code",
        fx.store.load_auth_code("code-live-1").await,
        &closed,
    );
    let r = fx.store.delete_auth_code("code-live-1").await;
    assert_err("delete_auth_code", r, &closed);
    let r = fx.store.try_delete_auth_code("code-live-2").await;
    assert_err("try_delete_auth_code", r, &closed);
    closed_sessions_and_clients(&fx).await;
    assert_err("cleanup_expired", fx.store.cleanup_expired().await, &closed);
    if let Some(bulk) = fx.store.bulk() {
        let s = vec![Arc::new(live_session("sess-new", "at-new", None, T0))];
        assert_err(
            "bulk_store_sessions",
            bulk.bulk_store_sessions(s).await,
            &closed,
        );
        let hashes = vec![TokenHash::of("at-live")];
        let r = bulk.bulk_delete_sessions_by_hash(hashes).await;
        assert_err("bulk_delete_sessions_by_hash", r, &closed);
        assert_err(
            "bulk_cleanup_expired",
            bulk.bulk_cleanup_expired().await,
            &closed,
        );
    }
}

async fn closed_sessions_and_clients<F: Factory>(fx: &Fixture<F>) {
    let closed = StoreError::Closed;
    let s = Arc::new(live_session("sess-new", "at-new", Some("rt-new"), T0));
    assert_err("store_session", fx.store.store_session(s).await, &closed);
    let r = fx.store.load_session_by_token("at-live").await;
    assert_err("load_session_by_token", r, &closed);
    let r = fx.store.load_session_by_id("sess-live").await;
    assert_err("load_session_by_id", r, &closed);
    let r = fx.store.load_session_by_refresh_token("rt-live").await;
    assert_err("load_session_by_refresh_token", r, &closed);
    let r = fx.store.delete_session_by_token("at-live").await;
    assert_err("delete_session_by_token", r, &closed);
    let r = fx.store.delete_session_by_id("sess-live").await;
    assert_err("delete_session_by_id", r, &closed);
    let c = Arc::new(full_client("client-new", T0));
    assert_err("store_client", fx.store.store_client(c).await, &closed);
    assert_err(
        "load_client",
        fx.store.load_client("client-1").await,
        &closed,
    );
    assert_err("list_clients", fx.store.list_clients().await, &closed);
    assert_err(
        "delete_client",
        fx.store.delete_client("client-1").await,
        &closed,
    );
}

/// `close` is idempotent: closing again succeeds, and the store stays closed.
pub async fn close_is_idempotent<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = live_session("sess-1", "at-1", None, T0);
    super::put(&fx, &s).await;
    fx.store.close().await.unwrap();
    fx.store.close().await.unwrap();
    fx.store.close().await.unwrap();
    let r = fx.store.load_session_by_token("at-1").await;
    assert_err("load_session_by_token", r, &StoreError::Closed);
}

fn nul(field: &'static str) -> StoreError {
    StoreError::InvalidInput(InvalidInput::NulByte { field })
}

fn too_early(field: &'static str) -> StoreError {
    StoreError::InvalidInput(InvalidInput::TimeTooEarly { field })
}

/// A change that makes a record invalid, and the field the error names.
type Edit<R> = (fn(&mut R), &'static str);

/// A text with a NUL byte, for the fields that are not keys.
const NUL_TEXT: &str = "before\0after";

/// One microsecond before [`MIN_STORABLE_TIME`].
const TOO_EARLY: Timestamp = Timestamp::from_unix_micros(MIN_STORABLE_TIME.as_unix_micros() - 1);

/// A NUL byte in a state or code key: typed error, nothing changed. Each key
/// is a stored key with a NUL appended, so a backend that cut it at the NUL
/// would reach the stored record.
pub async fn nul_in_keys_states_and_codes<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let st = Arc::new(state("st-live\0", T0 + HOUR, T0));
    assert_err("store_state", fx.store.store_state(st).await, &nul("state"));
    let r = fx.store.consume_state("st-live\0").await;
    assert_err("consume_state", r, &nul("state"));
    let bad_code = code("code-live-1\0", "sess-live", T0 + HOUR, T0);
    let r = fx.store.store_auth_code(Arc::new(bad_code)).await;
    assert_err("store_auth_code", r, &nul("code"));
    let bad_session = code("code-live-1", "sess-live\0", T0 + HOUR, T0);
    let r = fx.store.store_auth_code(Arc::new(bad_session)).await;
    assert_err("store_auth_code", r, &nul("session_id"));
    let r = fx.store.load_auth_code("code-live-1\0").await;
    assert_err("load_auth_code", r, &nul("code"));
    let r = fx.store.delete_auth_code("code-live-1\0").await;
    assert_err("delete_auth_code", r, &nul("code"));
    let r = fx.store.try_delete_auth_code("\0code-live-2").await;
    assert_err("try_delete_auth_code", r, &nul("code"));
    assert_contents_eq(&fx.contents().await, &before);
}

/// A NUL byte in a session or client key: typed error, nothing changed (the
/// stored sessions the refused one shares its other keys with stay).
pub async fn nul_in_keys_sessions_and_clients<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let bad_sessions = [
        (live_session("sess-live\0", "at-n", None, T0), "session_id"),
        (
            live_session("sess-n", "at-live\0", None, T0),
            "access_token",
        ),
        (
            live_session("sess-live", "at-live", Some("rt-\0live"), T0),
            "refresh_token",
        ),
    ];
    for (s, field) in bad_sessions {
        let r = fx.store.store_session(Arc::new(s)).await;
        assert_err("store_session", r, &nul(field));
    }
    let r = fx.store.load_session_by_token("at-live\0").await;
    assert_err("load_session_by_token", r, &nul("access_token"));
    let r = fx.store.load_session_by_id("sess-live\0").await;
    assert_err("load_session_by_id", r, &nul("session_id"));
    let r = fx.store.load_session_by_refresh_token("rt-live\0").await;
    assert_err("load_session_by_refresh_token", r, &nul("refresh_token"));
    let r = fx.store.delete_session_by_token("at-live\0").await;
    assert_err("delete_session_by_token", r, &nul("access_token"));
    let r = fx.store.delete_session_by_id("sess-live\0").await;
    assert_err("delete_session_by_id", r, &nul("session_id"));
    let c = Arc::new(full_client("client-1\0", T0));
    assert_err(
        "store_client",
        fx.store.store_client(c).await,
        &nul("client_id"),
    );
    let r = fx.store.load_client("client-1\0").await;
    assert_err("load_client", r, &nul("client_id"));
    let r = fx.store.delete_client("client-1\0").await;
    assert_err("delete_client", r, &nul("client_id"));
    assert_contents_eq(&fx.contents().await, &before);
}

/// A NUL byte in any text field of a state or code: typed error naming the
/// field, and the stored record with the same key is not replaced.
pub async fn nul_in_text_fields_states_and_codes<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let states: [Edit<StateRecord>; 6] = [
        (|r| r.client_id = Some(NUL_TEXT.into()), "client_id"),
        (|r| r.redirect_uri = Some(NUL_TEXT.into()), "redirect_uri"),
        (
            |r| r.code_challenge = Some(NUL_TEXT.into()),
            "code_challenge",
        ),
        (
            |r| r.code_challenge_method = Some(NUL_TEXT.into()),
            "code_challenge_method",
        ),
        (
            |r| r.provider_code_verifier = Some(Secret::new(NUL_TEXT)),
            "provider_code_verifier",
        ),
        (|r| r.client_state = Some(NUL_TEXT.into()), "client_state"),
    ];
    for (edit, field) in states {
        let mut r = full_state("st-live", T0);
        edit(&mut r);
        let result = fx.store.store_state(Arc::new(r)).await;
        assert_err("store_state", result, &nul(field));
    }
    let codes: [Edit<AuthCodeRecord>; 4] = [
        (|r| r.client_id = Some(NUL_TEXT.into()), "client_id"),
        (|r| r.redirect_uri = Some(NUL_TEXT.into()), "redirect_uri"),
        (
            |r| r.code_challenge = Some(NUL_TEXT.into()),
            "code_challenge",
        ),
        (
            |r| r.code_challenge_method = Some(NUL_TEXT.into()),
            "code_challenge_method",
        ),
    ];
    for (edit, field) in codes {
        let mut r = full_code("code-live-1", "sess-live", T0);
        edit(&mut r);
        let result = fx.store.store_auth_code(Arc::new(r)).await;
        assert_err("store_auth_code", result, &nul(field));
    }
    assert_contents_eq(&fx.contents().await, &before);
}

/// A NUL byte in a text field of a session (its provider and the provider's
/// tokens) or of a client: typed error naming the field, and the stored
/// record with the same keys is not replaced.
pub async fn nul_in_text_fields_sessions_and_clients<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let sessions: [Edit<StoredSession>; 3] = [
        (|s| s.provider = NUL_TEXT.into(), "provider"),
        (
            |s| s.provider_access_token = Some(Secret::new(NUL_TEXT)),
            "provider_access_token",
        ),
        (
            |s| s.provider_refresh_token = Some(Secret::new(NUL_TEXT)),
            "provider_refresh_token",
        ),
    ];
    for (edit, field) in sessions {
        let mut s = full_session("sess-live", "at-live", "rt-live", T0);
        edit(&mut s);
        let result = fx.store.store_session(Arc::new(s)).await;
        assert_err("store_session", result, &nul(field));
    }
    let clients: [Edit<ClientRecord>; 3] = [
        (
            |r| r.client_secret = Some(Secret::new(NUL_TEXT)),
            "client_secret",
        ),
        (|r| r.scope = Some(NUL_TEXT.into()), "scope"),
        (|r| r.client_name = Some(NUL_TEXT.into()), "client_name"),
    ];
    for (edit, field) in clients {
        let mut r = full_client("client-1", T0);
        edit(&mut r);
        let result = fx.store.store_client(Arc::new(r)).await;
        assert_err("store_client", result, &nul(field));
    }
    assert_contents_eq(&fx.contents().await, &before);
}

/// Fields stored as JSON (scope lists, URI lists, `user_info` with its raw
/// profile) may hold a NUL byte: JSON escapes it, so every backend stores and
/// returns it.
pub async fn nul_in_json_fields_round_trips<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let mut st = full_state("st-json", T0);
    st.provider_scopes_requested.push(NUL_TEXT.into());
    fx.store.store_state(Arc::new(st.clone())).await.unwrap();
    let mut cd = full_code("code-json", "sess-json", T0);
    cd.scopes.push(NUL_TEXT.into());
    fx.store
        .store_auth_code(Arc::new(cd.clone()))
        .await
        .unwrap();
    let mut s = full_session("sess-json", "at-json", "rt-json", T0);
    let user = &mut s.user_info;
    (user.provider, user.user_id, user.username) = ("\0".into(), "u\0".into(), NUL_TEXT.into());
    user.email = Some(NUL_TEXT.into());
    user.capabilities.push(NUL_TEXT.into());
    let profile = user.raw_profile.get_or_insert_default();
    profile.insert(NUL_TEXT.into(), serde_json::Value::String("\0".into()));
    super::put(&fx, &s).await;
    let mut cl = full_client("client-json", T0);
    cl.redirect_uris.push(NUL_TEXT.into());
    cl.grant_types.push(NUL_TEXT.into());
    fx.store.store_client(Arc::new(cl.clone())).await.unwrap();
    let got = fx.store.consume_state("st-json").await.unwrap();
    assert_state_eq(&got.expect("state"), &st);
    let got = fx.store.load_auth_code("code-json").await.unwrap();
    assert_code_eq(&got.expect("code"), &cd);
    assert_session_eq(&by_token(&fx, "at-json").await.expect("session"), &s);
    let got = fx.store.load_client("client-json").await.unwrap();
    assert_client_eq(&got.expect("client"), &cl);
}

/// A stored time before [`MIN_STORABLE_TIME`] in any record: typed error
/// naming the field, and the stored record with the same keys is not
/// replaced.
pub async fn time_before_min_storable_refused<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    seed_mixed(&fx).await;
    let before = fx.contents().await;
    let states: [Edit<StateRecord>; 2] = [
        (|r| r.expires_at = TOO_EARLY, "expires_at"),
        (|r| r.created_at = Timestamp::MIN, "created_at"),
    ];
    for (edit, field) in states {
        let mut r = full_state("st-live", T0);
        edit(&mut r);
        let result = fx.store.store_state(Arc::new(r)).await;
        assert_err("store_state", result, &too_early(field));
    }
    let codes: [Edit<AuthCodeRecord>; 2] = [
        (|r| r.expires_at = TOO_EARLY, "expires_at"),
        (|r| r.created_at = TOO_EARLY, "created_at"),
    ];
    for (edit, field) in codes {
        let mut r = full_code("code-live-1", "sess-live", T0);
        edit(&mut r);
        let result = fx.store.store_auth_code(Arc::new(r)).await;
        assert_err("store_auth_code", result, &too_early(field));
    }
    let mut cl = full_client("client-1", T0);
    cl.created_at = TOO_EARLY;
    let result = fx.store.store_client(Arc::new(cl)).await;
    assert_err("store_client", result, &too_early("created_at"));
    early_session_times_refused(&fx).await;
    assert_contents_eq(&fx.contents().await, &before);
}

async fn early_session_times_refused<F: Factory>(fx: &Fixture<F>) {
    let sessions: [Edit<StoredSession>; 4] = [
        (
            |s| s.provider_expires_at = Some(TOO_EARLY),
            "provider_expires_at",
        ),
        (
            |s| s.access_expires_at = Some(TOO_EARLY),
            "access_expires_at",
        ),
        (
            |s| s.refresh_expires_at = Some(TOO_EARLY),
            "refresh_expires_at",
        ),
        (|s| s.created_at = TOO_EARLY, "created_at"),
    ];
    for (edit, field) in sessions {
        let mut s = full_session("sess-live", "at-live", "rt-live", T0);
        edit(&mut s);
        let result = fx.store.store_session(Arc::new(s)).await;
        assert_err("store_session", result, &too_early(field));
    }
}

/// Every time exactly at [`MIN_STORABLE_TIME`] is stored and read back
/// exactly, in every record kind.
pub async fn min_storable_time_round_trips<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let min = MIN_STORABLE_TIME;
    let mut st = full_state("st-min", T0);
    (st.expires_at, st.created_at) = (min, min);
    fx.store.store_state(Arc::new(st.clone())).await.unwrap();
    let mut cd = full_code("code-min", "sess-min", T0);
    (cd.expires_at, cd.created_at) = (min, min);
    fx.store
        .store_auth_code(Arc::new(cd.clone()))
        .await
        .unwrap();
    let mut s = full_session("sess-min", "at-min", "rt-min", T0);
    s.provider_expires_at = Some(min);
    s.access_expires_at = Some(min);
    s.refresh_expires_at = Some(min);
    s.created_at = min;
    super::put(&fx, &s).await;
    let mut cl = full_client("client-min", T0);
    cl.created_at = min;
    fx.store.store_client(Arc::new(cl.clone())).await.unwrap();
    let expected = Contents {
        states: vec![Arc::new(st)],
        auth_codes: vec![Arc::new(cd)],
        sessions: vec![Arc::new(s.normalized())],
        clients: vec![Arc::new(cl.clone())],
    };
    assert_contents_eq(&fx.contents().await, &expected);
    let got = fx.store.load_client("client-min").await.unwrap();
    assert_client_eq(&got.expect("client"), &cl);
}
