//! No token, secret, token hash or user identifier in any `Debug` or
//! `Display` output: not of records, not of errors, not of the store.

use super::{by_id, by_refresh, by_token, put};
use crate::sample::{HOUR, full_client, full_code, full_session, full_state};
use crate::{Factory, Fixture, Runtime, T0};
use std::fmt;
use std::sync::Arc;
use tokenstore_core::{MAX_KEY_BYTES, Secret, StoreError, TokenHash, TokenStore};

const SESSION_ID: &str = "SID-4n8w2q";
const ACCESS: &str = "AT-SECRET-x9v3k2";
const REFRESH: &str = "RT-SECRET-p7c1m4";
const PROVIDER_ACCESS: &str = "PAT-SECRET-b5z8t6";
const PROVIDER_REFRESH: &str = "PRT-SECRET-h2j9r1";
const USER_ID: &str = "UID-k3s8d0";
const USERNAME: &str = "UNAME-f6g2l9";
const EMAIL: &str = "EMAIL-w1e4@example.org";
const NAME: &str = "NAME-q8y5u3";
const STATE: &str = "STATE-SECRET-a6n2v7";
const VERIFIER: &str = "VERIFIER-SECRET-c4m9x1";
const CODE: &str = "CODE-SECRET-e3r7t5";
const CLIENT_SECRET: &str = "CSECRET-z2b6n8";

/// Every string that must never be shown, with the token hashes and the
/// factory's configuration secrets.
fn needles<F: Factory>() -> Vec<String> {
    let mut all: Vec<String> = [
        SESSION_ID,
        ACCESS,
        REFRESH,
        PROVIDER_ACCESS,
        PROVIDER_REFRESH,
        USER_ID,
        USERNAME,
        EMAIL,
        NAME,
        STATE,
        VERIFIER,
        CODE,
        CLIENT_SECRET,
    ]
    .map(String::from)
    .into();
    all.push(TokenHash::of(ACCESS).to_hex());
    all.push(TokenHash::of(REFRESH).to_hex());
    all.extend(F::config_secrets());
    all
}

/// Panics if the `Debug` (plain and pretty) of `value` shows a needle.
#[track_caller]
fn assert_debug_clean<F: Factory, T: fmt::Debug + ?Sized>(what: &str, value: &T) {
    for text in [format!("{value:?}"), format!("{value:#?}")] {
        assert_clean::<F>(what, &text);
    }
}

#[track_caller]
fn assert_clean<F: Factory>(what: &str, text: &str) {
    for needle in needles::<F>() {
        assert!(!text.contains(&needle), "{what} shows a secret: {text}");
    }
}

/// Panics if the `Debug` or `Display` of the error shows a needle.
#[track_caller]
fn assert_error_clean<F: Factory>(what: &str, error: &StoreError) {
    assert_debug_clean::<F, _>(what, error);
    assert_clean::<F>(what, &error.to_string());
}

/// Stores one record of each kind, built from the needles.
async fn store_secrets<F: Factory>(fx: &Fixture<F>) {
    let mut s = full_session(SESSION_ID, ACCESS, REFRESH, T0);
    s.provider_access_token = Some(Secret::new(PROVIDER_ACCESS));
    s.provider_refresh_token = Some(Secret::new(PROVIDER_REFRESH));
    s.user_info.user_id = USER_ID.to_owned();
    s.user_info.username = USERNAME.to_owned();
    s.user_info.email = Some(EMAIL.to_owned());
    s.user_info.name = Some(NAME.to_owned());
    put(fx, &s).await;
    let mut st = full_state(STATE, T0);
    st.provider_code_verifier = Some(Secret::new(VERIFIER));
    st.client_id = Some("client-1".to_owned());
    fx.store.store_state(Arc::new(st)).await.unwrap();
    let mut c = full_code(CODE, SESSION_ID, T0);
    c.client_id = Some("client-1".to_owned());
    fx.store.store_auth_code(Arc::new(c)).await.unwrap();
    let mut client = full_client("client-1", T0);
    client.client_secret = Some(Secret::new(CLIENT_SECRET));
    fx.store.store_client(Arc::new(client)).await.unwrap();
}

/// Records as loaded from the store show no secret or identifier.
pub async fn records_debug_hides_secrets<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    store_secrets(&fx).await;
    let s = by_token(&fx, ACCESS).await.expect("session");
    assert_eq!(
        s.access_token.expose(),
        ACCESS,
        "the secret itself survives"
    );
    assert_debug_clean::<F, _>("session by token", &s);
    assert_debug_clean::<F, _>("session by id", &by_id(&fx, SESSION_ID).await);
    assert_debug_clean::<F, _>("session by refresh", &by_refresh(&fx, REFRESH).await);
    assert_debug_clean::<F, _>("user info", &s.user_info);
    let c = fx.store.load_auth_code(CODE).await.unwrap();
    assert_debug_clean::<F, _>("auth code", &c.expect("code"));
    let clients = fx.store.list_clients().await.unwrap();
    assert_eq!(
        clients[0].client_secret.as_ref().map(Secret::expose),
        Some(CLIENT_SECRET)
    );
    assert_debug_clean::<F, _>("clients", &clients);
    let st = fx.store.consume_state(STATE).await.unwrap();
    assert_eq!(
        st.as_ref()
            .and_then(|s| s.provider_code_verifier.as_ref())
            .map(Secret::expose),
        Some(VERIFIER)
    );
    assert_debug_clean::<F, _>("state", &st);
}

/// The store's own `Debug` shows no record's secret, nor a configuration secret.
pub async fn store_debug_hides_secrets<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    store_secrets(&fx).await;
    assert!(by_token(&fx, ACCESS).await.is_some());
    assert_debug_clean::<F, _>("the store", fx.store());
    assert_debug_clean::<F, _>("the contents", &fx.contents().await);
    fx.store.close().await.unwrap();
    assert_debug_clean::<F, _>("the closed store", fx.store());
}

/// Errors caused by secret-bearing input never repeat it.
pub async fn errors_hide_secrets<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    store_secrets(&fx).await;
    let pad = |s: &str| format!("{s}{}", "0".repeat(MAX_KEY_BYTES));
    let errors = [
        fx.store.load_session_by_token(&pad(ACCESS)).await.err(),
        fx.store
            .load_session_by_refresh_token(&pad(REFRESH))
            .await
            .err(),
        fx.store.load_session_by_id(&pad(SESSION_ID)).await.err(),
        fx.store.delete_session_by_token(&pad(ACCESS)).await.err(),
        fx.store.consume_state(&pad(STATE)).await.err(),
        fx.store.try_delete_auth_code(&pad(CODE)).await.err(),
        store_long_session::<F>(&fx).await.err(),
    ];
    for (i, e) in errors.iter().enumerate() {
        let e = e.as_ref().unwrap_or_else(|| panic!("call {i} should fail"));
        assert_error_clean::<F>("an input error", e);
    }
    fx.store.close().await.unwrap();
    let closed = fx.store.load_session_by_token(ACCESS).await.unwrap_err();
    assert_eq!(closed, StoreError::Closed);
    assert_error_clean::<F>("the closed error", &closed);
}

async fn store_long_session<F: Factory>(fx: &Fixture<F>) -> Result<(), StoreError> {
    let mut s = full_session(SESSION_ID, ACCESS, REFRESH, T0 + HOUR);
    s.refresh_token = Some(Secret::new(format!(
        "{REFRESH}{}",
        "0".repeat(MAX_KEY_BYTES)
    )));
    fx.store.store_session(Arc::new(s)).await
}
