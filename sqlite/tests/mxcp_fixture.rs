//! Interop with mxcp 0.12.3: a database written by the real mxcp (with a known
//! Fernet key) opens and reads field for field as mxcp stored it, and the
//! columns this crate writes for the same records are byte-identical to mxcp's
//! (except Fernet tokens, which embed a random IV, and the key order inside
//! `raw_profile`).
//!
//! The fixture (`tests/fixtures/mxcp_0_12_3.{sqlite,json}` at the workspace
//! root) is made by `tests/fixtures/make_mxcp_fixture.py`; this test reads a
//! copy and never changes it.
//!
//! A second fixture, `sqlite/tests/fixtures/mxcp_0_12_3_times.{sqlite,json}`
//! (made by `make_mxcp_times.py` beside it), holds 540 `time.time()`-like
//! times written by mxcp, each with what Python printed for `round(x, 6)`:
//! every one reads back as that microsecond, and expires just after it.

use futures_lite::future::block_on;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, ManualClock, Secret, StateRecord, StoreError, StoredSession,
    Timestamp, TokenEndpointAuthMethod, TokenStore, UserInfo,
};
use tokenstore_sqlite::SqliteTokenStore;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("mxcp_0_12_3.json")).expect("fixture JSON");
    serde_json::from_str(&text).expect("valid JSON")
}

/// A private copy of the fixture database.
fn copy_of_fixture(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("mxcp.sqlite");
    std::fs::copy(fixture("mxcp_0_12_3.sqlite"), &path).expect("copy fixture");
    path
}

fn open(path: &Path, key: &str) -> SqliteTokenStore {
    // Any time before the fixture's expiries (2100) will do.
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_764_000_100));
    let builder = SqliteTokenStore::builder(path)
        .encryption_key(key)
        .clock(clock);
    block_on(builder.open()).expect("open the mxcp database")
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is text"))
        .to_owned()
}

fn opt_text(v: &Value, field: &str) -> Option<String> {
    v[field].as_str().map(str::to_owned)
}

fn list(v: &Value, field: &str) -> Vec<String> {
    let items = v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is a list"));
    items
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

fn time(v: &Value, field: &str) -> Timestamp {
    opt_time(v, field).unwrap_or_else(|| panic!("{field} is a time"))
}

fn opt_time(v: &Value, field: &str) -> Option<Timestamp> {
    v[field].as_f64().map(Timestamp::from_unix_secs_f64)
}

fn secret(v: &Value, field: &str) -> Option<Secret> {
    opt_text(v, field).map(Secret::new)
}

fn state_from(v: &Value) -> StateRecord {
    let mut s = StateRecord::new(
        text(v, "state"),
        time(v, "expires_at"),
        time(v, "created_at"),
    );
    s.client_id = opt_text(v, "client_id");
    s.redirect_uri = opt_text(v, "redirect_uri");
    s.code_challenge = opt_text(v, "code_challenge");
    s.code_challenge_method = opt_text(v, "code_challenge_method");
    s.provider_code_verifier = secret(v, "provider_code_verifier");
    s.client_state = opt_text(v, "client_state");
    s.provider_scopes_requested = list(v, "provider_scopes_requested");
    s
}

fn code_from(v: &Value) -> AuthCodeRecord {
    let (expires, created) = (time(v, "expires_at"), time(v, "created_at"));
    let mut c = AuthCodeRecord::new(text(v, "code"), text(v, "session_id"), expires, created);
    c.client_id = opt_text(v, "client_id");
    c.redirect_uri = opt_text(v, "redirect_uri");
    c.code_challenge = opt_text(v, "code_challenge");
    c.code_challenge_method = opt_text(v, "code_challenge_method");
    c.scopes = list(v, "mxcp_scopes");
    c
}

fn user_from(v: &Value) -> UserInfo {
    let mut u = UserInfo::new(text(v, "provider"), text(v, "user_id"), text(v, "username"));
    u.email = opt_text(v, "email");
    u.name = opt_text(v, "name");
    u.avatar_url = opt_text(v, "avatar_url");
    u.raw_profile = v["raw_profile"].as_object().cloned();
    u.provider_scopes_granted = list(v, "provider_scopes_granted");
    u.capabilities = list(v, "capabilities");
    u
}

/// The session as every store returns it: `issued_at` is `created_at`.
fn session_from(v: &Value) -> StoredSession {
    let created = time(v, "created_at");
    let access_expires = time(v, "access_expires_at");
    let user = user_from(&v["user_info"]);
    let mut s = StoredSession::new(
        text(v, "session_id"),
        user,
        text(v, "access_token"),
        access_expires,
        created,
    );
    s.provider = text(v, "provider");
    s.refresh_token = secret(v, "refresh_token");
    s.provider_access_token = secret(v, "provider_access_token");
    s.provider_refresh_token = secret(v, "provider_refresh_token");
    s.provider_expires_at = opt_time(v, "provider_expires_at");
    s.refresh_expires_at = opt_time(v, "refresh_expires_at");
    s
}

fn client_from(v: &Value) -> ClientRecord {
    let mut c = ClientRecord::new(text(v, "client_id"), time(v, "created_at"));
    c.client_secret = secret(v, "client_secret");
    c.token_endpoint_auth_method = opt_text(v, "token_endpoint_auth_method")
        .map(|m| TokenEndpointAuthMethod::parse(&m).expect("a known method"));
    c.redirect_uris = list(v, "redirect_uris");
    c.grant_types = list(v, "grant_types");
    c.response_types = list(v, "response_types");
    c.scope = opt_text(v, "scope");
    c.client_name = opt_text(v, "client_name");
    c
}

fn records(json: &Value, kind: &str) -> Vec<Value> {
    json[kind]
        .as_array()
        .unwrap_or_else(|| panic!("{kind} is a list"))
        .clone()
}

/// Field-by-field comparison (record `Debug` hides most fields on purpose).
fn assert_same_session(got: &StoredSession, want: &StoredSession) {
    let id = &want.session_id;
    assert_eq!(got.session_id, want.session_id);
    assert_eq!(got.provider, want.provider, "{id}: provider");
    let (gu, wu) = (&got.user_info, &want.user_info);
    assert_eq!(
        (&gu.provider, &gu.user_id, &gu.username),
        (&wu.provider, &wu.user_id, &wu.username),
        "{id}"
    );
    assert_eq!(
        (&gu.email, &gu.name, &gu.avatar_url),
        (&wu.email, &wu.name, &wu.avatar_url),
        "{id}"
    );
    assert_eq!(gu.raw_profile, wu.raw_profile, "{id}: raw_profile");
    assert_eq!(
        gu.provider_scopes_granted, wu.provider_scopes_granted,
        "{id}"
    );
    assert_eq!(gu.capabilities, wu.capabilities, "{id}: capabilities");
    assert_eq!(
        got.access_token.expose(),
        want.access_token.expose(),
        "{id}: access_token"
    );
    let expose = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_owned());
    assert_eq!(
        expose(&got.refresh_token),
        expose(&want.refresh_token),
        "{id}: refresh_token"
    );
    assert_eq!(
        expose(&got.provider_access_token),
        expose(&want.provider_access_token),
        "{id}"
    );
    assert_eq!(
        expose(&got.provider_refresh_token),
        expose(&want.provider_refresh_token),
        "{id}"
    );
    assert_eq!(
        got.provider_expires_at, want.provider_expires_at,
        "{id}: provider_expires_at"
    );
    assert_eq!(
        got.access_expires_at, want.access_expires_at,
        "{id}: access_expires_at"
    );
    assert_eq!(
        got.refresh_expires_at, want.refresh_expires_at,
        "{id}: refresh_expires_at"
    );
    assert_eq!(got.created_at, want.created_at, "{id}: created_at");
    assert_eq!(
        got.issued_at,
        Some(want.created_at),
        "{id}: issued_at is created_at"
    );
    assert!(got == want, "{id}: records differ");
}

#[test]
fn a_database_written_by_mxcp_reads_field_for_field() {
    let json = expected();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(
        &copy_of_fixture(&dir),
        json["fernet_key"].as_str().expect("key"),
    );
    block_on(async {
        let contents = store.contents().await?;
        assert_eq!(contents.states.len(), 1);
        assert_eq!(contents.auth_codes.len(), 1);
        assert_eq!(contents.sessions.len(), 2);
        assert_eq!(contents.clients.len(), 1);
        for v in records(&json, "sessions") {
            let want = session_from(&v);
            let by_token = store
                .load_session_by_token(want.access_token.expose())
                .await?;
            assert_same_session(&by_token.expect("by access token"), &want);
            let by_id = store.load_session_by_id(&want.session_id).await?;
            assert_same_session(&by_id.expect("by id"), &want);
            if let Some(refresh) = &want.refresh_token {
                let by_refresh = store
                    .load_session_by_refresh_token(refresh.expose())
                    .await?;
                assert_same_session(&by_refresh.expect("by refresh token"), &want);
            }
        }
        for v in records(&json, "clients") {
            let want = Arc::new(client_from(&v));
            let got = store.load_client(&want.client_id).await?.expect("client");
            assert_eq!(
                got.client_secret.as_ref().map(Secret::expose),
                want.client_secret.as_ref().map(Secret::expose)
            );
            assert_eq!(
                got.token_endpoint_auth_method,
                want.token_endpoint_auth_method
            );
            assert_eq!(
                (&got.redirect_uris, &got.grant_types, &got.response_types),
                (&want.redirect_uris, &want.grant_types, &want.response_types)
            );
            assert_eq!(
                (&got.scope, &got.client_name, got.created_at),
                (&want.scope, &want.client_name, want.created_at)
            );
            assert_eq!(got, want);
            assert_eq!(store.list_clients().await?, vec![want]);
        }
        for v in records(&json, "auth_codes") {
            let want = code_from(&v);
            let got = store.load_auth_code(&want.code).await?.expect("auth code");
            assert_eq!(
                (&got.session_id, &got.client_id, &got.redirect_uri),
                (&want.session_id, &want.client_id, &want.redirect_uri)
            );
            assert_eq!(
                (&got.code_challenge, &got.code_challenge_method),
                (&want.code_challenge, &want.code_challenge_method)
            );
            assert_eq!(
                (&got.scopes, got.expires_at, got.created_at),
                (&want.scopes, want.expires_at, want.created_at)
            );
            assert_eq!(*got, want);
        }
        for v in records(&json, "states") {
            let want = state_from(&v);
            let got = store.consume_state(&want.state).await?.expect("state");
            assert_eq!(
                (&got.client_id, &got.redirect_uri, &got.client_state),
                (&want.client_id, &want.redirect_uri, &want.client_state)
            );
            assert_eq!(
                (&got.code_challenge, &got.code_challenge_method),
                (&want.code_challenge, &want.code_challenge_method)
            );
            assert_eq!(
                got.provider_code_verifier.as_ref().map(Secret::expose),
                want.provider_code_verifier.as_ref().map(Secret::expose)
            );
            assert_eq!(
                (
                    &got.provider_scopes_requested,
                    got.expires_at,
                    got.created_at
                ),
                (
                    &want.provider_scopes_requested,
                    want.expires_at,
                    want.created_at
                )
            );
            assert_eq!(*got, want);
        }
        Ok::<_, StoreError>(())
    })
    .expect("every record reads");
}

#[test]
fn the_wrong_key_on_the_mxcp_database_is_a_decrypt_error() {
    let json = expected();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&copy_of_fixture(&dir), &tokenstore_sqlite::generate_key());
    let session = &records(&json, "sessions")[0];
    let err = block_on(store.load_session_by_token(&text(session, "access_token"))).err();
    let expected = StoreError::Decrypt {
        table: "sessions",
        column: "access_token_encrypted",
    };
    assert_eq!(err, Some(expected));
}

/// Every row of `table` with its secret columns and `skip` left out, ordered.
fn plain_rows(
    conn: &Connection,
    table: &str,
    key: &str,
    skip: &[&str],
) -> Vec<Vec<(String, SqlValue)>> {
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))
        .expect("select");
    let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let rows = stmt.query_map([], |row| {
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if !skip.contains(&name.as_str()) {
                out.push((name.clone(), row.get::<_, SqlValue>(i)?));
            }
        }
        Ok(out)
    });
    rows.expect("rows")
        .collect::<Result<_, _>>()
        .expect("values")
}

const SECRETS: &[&str] = &[
    "access_token_encrypted",
    "refresh_token_encrypted",
    "provider_access_token",
    "provider_refresh_token",
    "client_secret",
];

#[test]
fn the_same_records_written_here_match_mxcps_columns() {
    let json = expected();
    let key = json["fernet_key"].as_str().expect("key");
    let dir = tempfile::tempdir().expect("temp dir");
    let ours_path = dir.path().join("ours.sqlite");
    let ours = open(&ours_path, key);
    block_on(async {
        for v in records(&json, "states") {
            ours.store_state(Arc::new(state_from(&v))).await?;
        }
        for v in records(&json, "auth_codes") {
            ours.store_auth_code(Arc::new(code_from(&v))).await?;
        }
        for v in records(&json, "sessions") {
            ours.store_session(Arc::new(session_from(&v))).await?;
        }
        for v in records(&json, "clients") {
            ours.store_client(Arc::new(client_from(&v))).await?;
        }
        ours.close().await
    })
    .expect("written");
    let (mxcp, ours) = (
        Connection::open(copy_of_fixture(&dir)).expect("mxcp"),
        Connection::open(&ours_path).expect("ours"),
    );
    // raw_profile's keys are sorted here and in insertion order in mxcp's file.
    let mut skip = SECRETS.to_vec();
    skip.push("user_info");
    for (table, key) in [
        ("states", "state"),
        ("auth_codes", "code"),
        ("sessions", "session_id"),
        ("oauth_clients", "client_id"),
    ] {
        assert_eq!(
            plain_rows(&ours, table, key, &skip),
            plain_rows(&mxcp, table, key, &skip),
            "{table}"
        );
    }
    let user_info = |conn: &Connection, id: &str| -> String {
        conn.query_row(
            "SELECT user_info FROM sessions WHERE session_id = ?1",
            [id],
            |r| r.get(0),
        )
        .expect("user_info")
    };
    for v in records(&json, "sessions") {
        let id = text(&v, "session_id");
        let (a, b) = (user_info(&ours, &id), user_info(&mxcp, &id));
        let parse = |s: &str| serde_json::from_str::<Map<String, Value>>(s).expect("object");
        assert_eq!(parse(&a), parse(&b), "{id}: user_info");
        if v["user_info"]["raw_profile"].is_null() {
            assert_eq!(a, b, "{id}: user_info bytes");
        }
    }
}

/// The times fixture: a file of `sqlite/tests/fixtures`.
fn times_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One time mxcp stored, and what Python printed for `round(stored, 6)`.
struct PythonTime {
    table: String,
    key: String,
    column: String,
    stored: f64,
    micros: i64,
}

/// The fixture's key and times.
fn python_times() -> (String, Vec<PythonTime>) {
    let path = times_fixture("mxcp_0_12_3_times.json");
    let raw = std::fs::read_to_string(path).expect("times fixture JSON");
    let json: Value = serde_json::from_str(&raw).expect("valid JSON");
    let entries = records(&json, "times");
    let times = entries.iter().map(|v| PythonTime {
        table: text(v, "table"),
        key: text(v, "key"),
        column: text(v, "column"),
        stored: v["stored"].as_f64().expect("stored is a number"),
        micros: python_micros(&text(v, "round6")),
    });
    let times = times.collect();
    (text(&json, "fernet_key"), times)
}

/// Microseconds from Python's repr of a number rounded to 6 decimals, read
/// as decimal text (no float arithmetic): "1796154906.34579" is
/// 1796154906345790.
fn python_micros(printed: &str) -> i64 {
    let (sign, digits) = match printed.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, printed),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(frac.len() <= 6, "{printed}: more than 6 decimals");
    let whole: i64 = whole.parse().unwrap_or_else(|_| panic!("{printed}"));
    let frac: i64 = format!("{frac:0<6}")
        .parse()
        .unwrap_or_else(|_| panic!("{printed}"));
    sign * (whole * 1_000_000 + frac)
}

/// Every time in `contents`, by table, key and column.
fn times_read(contents: &tokenstore_core::Contents) -> Vec<((&str, String, &str), Timestamp)> {
    let mut out = Vec::new();
    for s in &contents.states {
        out.push((("states", s.state.clone(), "expires_at"), s.expires_at));
        out.push((("states", s.state.clone(), "created_at"), s.created_at));
    }
    for c in &contents.auth_codes {
        out.push((("auth_codes", c.code.clone(), "expires_at"), c.expires_at));
        out.push((("auth_codes", c.code.clone(), "created_at"), c.created_at));
    }
    for s in &contents.sessions {
        let id = &s.session_id;
        for (column, t) in [
            ("provider_expires_at", s.provider_expires_at),
            ("access_expires_at", s.access_expires_at),
            ("refresh_expires_at", s.refresh_expires_at),
            ("created_at", Some(s.created_at)),
        ] {
            if let Some(t) = t {
                out.push((("sessions", id.clone(), column), t));
            }
        }
    }
    for c in &contents.clients {
        out.push((
            ("oauth_clients", c.client_id.clone(), "created_at"),
            c.created_at,
        ));
    }
    out
}

#[test]
fn every_time_mxcp_wrote_reads_as_the_microsecond_python_printed() {
    let (key, times) = python_times();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("times.sqlite");
    std::fs::copy(times_fixture("mxcp_0_12_3_times.sqlite"), &path).expect("copy fixture");
    let store = open(&path, &key);
    let contents = block_on(store.contents()).expect("contents");
    let read: std::collections::HashMap<_, _> = times_read(&contents).into_iter().collect();
    assert_eq!(read.len(), times.len(), "every stored time is in the JSON");
    let mut wrong = Vec::new();
    for t in &times {
        let got = read[&(t.table.as_str(), t.key.clone(), t.column.as_str())];
        if got.as_unix_micros() != t.micros {
            wrong.push(format!("{} {} {}: {got:?}", t.table, t.key, t.column));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ: {wrong:#?}",
        wrong.len(),
        times.len()
    );
}

#[test]
fn the_times_fixture_json_holds_the_doubles_mxcp_stored() {
    let (_, times) = python_times();
    let conn = Connection::open(times_fixture("mxcp_0_12_3_times.sqlite")).expect("open");
    for t in &times {
        let key_column = match t.table.as_str() {
            "states" => "state",
            "auth_codes" => "code",
            "sessions" => "session_id",
            _ => "client_id",
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {key_column} = ?1",
            t.column, t.table
        );
        let stored: f64 = conn
            .query_row(&sql, [&t.key], |r| r.get(0))
            .expect("the stored REAL");
        assert_eq!(
            stored.to_bits(),
            t.stored.to_bits(),
            "{} {}",
            t.key,
            t.column
        );
    }
}

#[test]
fn mxcp_expiries_last_until_the_microsecond_python_printed() {
    let (key, times) = python_times();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("times.sqlite");
    std::fs::copy(times_fixture("mxcp_0_12_3_times.sqlite"), &path).expect("copy fixture");
    let clock = ManualClock::new(Timestamp::EPOCH);
    let builder = SqliteTokenStore::builder(&path)
        .encryption_key(key.as_str())
        .clock(clock.clone());
    let store = block_on(builder.open()).expect("open the mxcp database");
    let expiries = |table: &str| {
        let mut e: Vec<i64> = times
            .iter()
            .filter(|t| t.table == table && t.column == "expires_at")
            .map(|t| t.micros)
            .collect();
        e.sort_unstable();
        e
    };
    let (states, codes) = (expiries("states"), expiries("auth_codes"));
    let mut all: Vec<i64> = states.iter().chain(&codes).copied().collect();
    all.sort_unstable();
    let (mut gone_states, mut gone_codes) = (0, 0);
    let before = |list: &[i64], now: i64| list.iter().filter(|&&e| e < now).count() as u64;
    for now in all.into_iter().flat_map(|e| [e, e + 1]) {
        clock.set(Timestamp::from_unix_micros(now));
        let counts = block_on(store.cleanup_expired()).expect("cleanup");
        (gone_states, gone_codes) = (gone_states + counts.states, gone_codes + counts.auth_codes);
        assert_eq!(gone_states, before(&states, now), "states at {now}");
        assert_eq!(gone_codes, before(&codes, now), "codes at {now}");
    }
}

#[test]
fn a_database_written_by_mxcp_gains_the_invalidation_log_and_still_reads() {
    use std::collections::HashSet;
    use tokenstore_core::cache::CacheKey;
    use tokenstore_core::feed::Watermark;
    let json = expected();
    let key = json["fernet_key"].as_str().expect("key");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = copy_of_fixture(&dir);
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_764_000_100));
    let builder = SqliteTokenStore::builder(&path)
        .encryption_key(key)
        .clock(clock)
        .invalidation_log(true);
    let store = block_on(builder.open()).expect("open with the log");
    let feed = store.invalidation_feed().expect("the log is on");
    block_on(async {
        let contents = store.contents().await?;
        assert_eq!(contents.sessions.len(), 2);
        let want = session_from(&records(&json, "sessions")[0]);
        store.delete_session_by_id(&want.session_id).await?;
        let got = feed.invalidations_since(Some(Watermark(0))).await?;
        let keys: HashSet<_> = got.keys.into_iter().collect();
        let expected: HashSet<_> = CacheKey::of_session(&want).into_iter().collect();
        assert_eq!((keys, got.gap), (expected, false));
        assert_eq!(store.contents().await?.sessions.len(), 1);
        store.close().await
    })
    .expect("reads and writes with the log");
    // mxcp's own statements still run on the file.
    let raw = Connection::open(&path).expect("raw");
    let n: i64 = raw
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1);
}
