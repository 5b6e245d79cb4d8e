//! PostgresTokenStore beyond the contract suite: the schema and its version,
//! connection errors, the password and key kept out of every message,
//! encryption, and corrupt rows failing closed.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore_core::{
    ManualClock, Secret, StateRecord, StoreError, StoredSession, Timestamp, TokenStore, UserInfo,
};
use tokenstore_pgtest::TestDatabase;
use tokenstore_postgres::{PostgresTokenStore, generate_key};
use tokio_postgres::NoTls;

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

/// Runs `sql` on `db` and returns the first column of every row as text.
async fn sql(db: &TestDatabase, sql: &str) -> Vec<Option<String>> {
    let (client, conn) = db.config().connect(NoTls).await.expect("connect");
    let driver = tokio::spawn(conn);
    let rows = client.simple_query(sql).await.expect("query");
    drop(client);
    let _ = driver.await;
    rows.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect()
}

async fn open(db: &TestDatabase, key: &str) -> Result<PostgresTokenStore, StoreError> {
    PostgresTokenStore::builder_with_config(db.config())
        .encryption_key(key)
        .clock(ManualClock::new(T0))
        .open()
        .await
}

fn session(id: &str, access: &str, refresh: &str) -> StoredSession {
    let mut s = StoredSession::new(
        id,
        UserInfo::new("github", "42", "octocat"),
        access,
        T0 + Duration::from_secs(3600),
        T0,
    );
    s.refresh_token = Some(Secret::new(refresh));
    s.provider_access_token = Some(Secret::new("gho_provider"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_the_schema_at_the_current_version() {
    let db = tokenstore_pgtest::shared().database();
    let store = open(&db, &generate_key()).await.unwrap();
    store.close().await.unwrap();
    assert_eq!(
        sql(&db, "SELECT version FROM tokenstore.schema_version").await,
        [Some("2".into())]
    );
    let tables = sql(
        &db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tokenstore' \
         ORDER BY table_name COLLATE \"C\"",
    )
    .await;
    let names: Vec<_> = tables.into_iter().flatten().collect();
    assert_eq!(
        names,
        [
            "auth_codes",
            "invalidations",
            "invalidations_meta",
            "oauth_clients",
            "schema_version",
            "sessions",
            "states"
        ]
    );
    // Opening again leaves one version row.
    open(&db, &generate_key())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    assert_eq!(
        sql(&db, "SELECT count(*) FROM tokenstore.schema_version").await,
        [Some("1".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_left_alone() {
    let db = tokenstore_pgtest::shared().database();
    open(&db, &generate_key())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    sql(&db, "UPDATE tokenstore.schema_version SET version = 99").await;
    let err = open(&db, &generate_key()).await.expect_err("newer schema");
    let StoreError::InvalidConfig(message) = &err else {
        panic!("not InvalidConfig: {err:?}");
    };
    assert!(message.contains("version 99"), "{message}");
    assert_eq!(
        sql(&db, "SELECT version FROM tokenstore.schema_version").await,
        [Some("99".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_create_the_schema_once() {
    let db = Arc::new(tokenstore_pgtest::shared().database());
    let key = generate_key();
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let (db, key) = (Arc::clone(&db), key.clone());
            tokio::spawn(async move { open(&db, &key).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    assert_eq!(
        sql(&db, "SELECT count(*) FROM tokenstore.schema_version").await,
        [Some("1".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_keep_stores_apart() {
    let db = tokenstore_pgtest::shared().database();
    let key = generate_key();
    let in_schema = |name: &'static str| {
        PostgresTokenStore::builder_with_config(db.config())
            .schema(name)
            .encryption_key(key.clone())
            .clock(ManualClock::new(T0))
            .open()
    };
    let (a, b) = (
        in_schema("tenant_a").await.unwrap(),
        in_schema("tenant_b").await.unwrap(),
    );
    a.store_session(Arc::new(session("s", "tok", "ref")))
        .await
        .unwrap();
    assert!(a.load_session_by_token("tok").await.unwrap().is_some());
    assert!(b.load_session_by_token("tok").await.unwrap().is_none());
    for bad in ["", "1abc", "a-b", "x\"y", "pg_catalog"] {
        let err = PostgresTokenStore::builder_with_config(db.config())
            .schema(bad)
            .allow_plaintext_tokens(true)
            .open()
            .await
            .expect_err("a bad schema name");
        assert!(
            matches!(err, StoreError::InvalidConfig(_)),
            "{bad}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_by_host_and_port() {
    let started = Instant::now();
    // Port 1 on loopback: nothing listens there.
    let err = PostgresTokenStore::builder("postgresql://tokens:hunter2-secret@127.0.0.1:1/auth")
        .allow_plaintext_tokens(true)
        .open()
        .await
        .expect_err("nothing listens on port 1");
    let text = format!("{err} {err:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(matches!(err, StoreError::Backend(_)));
    assert!(started.elapsed() < Duration::from_secs(15));
    let missing = PostgresTokenStore::builder("host=/nonexistent/dir port=5999 user=x")
        .allow_plaintext_tokens(true)
        .open()
        .await
        .expect_err("no socket there");
    assert!(
        missing.to_string().contains("/nonexistent/dir:5999"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_never_shown() {
    let url = "postgresql://tokens:hunter2-secret@127.0.0.1:1/auth";
    let builder = PostgresTokenStore::builder(url).encryption_key(generate_key());
    let shown = format!("{builder:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("has_password: true"), "{shown}");
    // An unparsable URL is refused without quoting it.
    let err = PostgresTokenStore::builder("postgresql://u:hunter2-secret@host:notaport/db")
        .allow_plaintext_tokens(true)
        .open()
        .await
        .expect_err("bad URL");
    assert!(matches!(err, StoreError::InvalidConfig(_)));
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    // A store's Debug shows where it is, not the key.
    let db = tokenstore_pgtest::shared().database();
    let key = generate_key();
    let store = open(&db, &key).await.unwrap();
    let shown = format!("{store:?}");
    assert!(
        shown.contains(db.name()) && !shown.contains(&key),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_fernet_tokens_and_a_wrong_key_fails_closed() {
    let db = tokenstore_pgtest::shared().database();
    let key = generate_key();
    let store = open(&db, &key).await.unwrap();
    store
        .store_session(Arc::new(session("s", "tok-A", "ref-A")))
        .await
        .unwrap();
    store.close().await.unwrap();
    // The column holds a standard Fernet token under our key.
    let sealed = sql(
        &db,
        "SELECT access_token_encrypted FROM tokenstore.sessions",
    )
    .await;
    let sealed = sealed[0].clone().expect("sealed");
    assert!(!sealed.contains("tok-A"));
    let fernet = fernet::Fernet::new(&key).expect("key");
    assert_eq!(fernet.decrypt(&sealed).expect("decrypts"), b"tok-A");
    // Another key: a typed error, never a record.
    let other = open(&db, &generate_key()).await.unwrap();
    let err = other
        .load_session_by_token("tok-A")
        .await
        .expect_err("wrong key");
    assert_eq!(
        err,
        StoreError::Decrypt {
            table: "sessions",
            column: "access_token_encrypted"
        }
    );
    // No key and no opt-in: refused before anything is written.
    let strict = PostgresTokenStore::builder_with_config(db.config())
        .clock(ManualClock::new(T0))
        .open()
        .await
        .unwrap();
    let err = strict
        .store_session(Arc::new(session("s2", "t2", "r2")))
        .await;
    assert_eq!(err, Err(StoreError::EncryptionKeyRequired));
    assert_eq!(
        sql(&db, "SELECT count(*) FROM tokenstore.sessions").await,
        [Some("1".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_fail_closed_and_stay() {
    let db = tokenstore_pgtest::shared().database();
    let store = open(&db, &generate_key()).await.unwrap();
    store
        .store_session(Arc::new(session("s", "tok", "ref")))
        .await
        .unwrap();
    let state = StateRecord::new("st", T0 + Duration::from_secs(600), T0);
    store.store_state(Arc::new(state)).await.unwrap();
    sql(
        &db,
        r#"UPDATE tokenstore.sessions SET user_info = '{"unknown": 1}'"#,
    )
    .await;
    let err = store
        .load_session_by_token("tok")
        .await
        .expect_err("corrupt");
    assert_eq!(
        err,
        StoreError::Corrupt {
            table: "sessions",
            column: "user_info"
        }
    );
    sql(
        &db,
        "UPDATE tokenstore.states SET provider_scopes_requested = '[1, 2]'",
    )
    .await;
    let err = store.consume_state("st").await.expect_err("corrupt");
    assert_eq!(
        err,
        StoreError::Corrupt {
            table: "states",
            column: "provider_scopes_requested"
        }
    );
    // The failed consume rolled back: the row is still there.
    assert_eq!(
        sql(&db, "SELECT count(*) FROM tokenstore.states").await,
        [Some("1".into())]
    );
    // A hash that is not the hash of the stored token is refused.
    sql(&db, r#"UPDATE tokenstore.sessions SET user_info = '{"provider":"github","user_id":"42","username":"octocat"}',
        access_token_hash = sha256('other')"#).await;
    let err = store
        .load_session_by_id("s")
        .await
        .expect_err("mismatched hash");
    assert_eq!(
        err,
        StoreError::Corrupt {
            table: "sessions",
            column: "access_token_hash"
        }
    );
    // An infinite time is corrupt, not a time.
    sql(
        &db,
        "UPDATE tokenstore.states SET provider_scopes_requested = '[]', expires_at = 'infinity'",
    )
    .await;
    let err = store.consume_state("st").await.expect_err("infinite");
    assert_eq!(
        err,
        StoreError::Corrupt {
            table: "states",
            column: "expires_at"
        }
    );
}

/// One store's life: open, store, load, expire, close.
async fn life(db: &TestDatabase, schema: &str) {
    let clock = ManualClock::new(T0);
    let store = PostgresTokenStore::builder_with_config(db.config())
        .schema(schema)
        .encryption_key(generate_key())
        .clock(clock.clone())
        .open()
        .await
        .unwrap();
    store
        .store_session(Arc::new(session("s", "tok", "ref")))
        .await
        .unwrap();
    let found = store.load_session_by_refresh_token("ref").await.unwrap();
    assert_eq!(found.map(|s| s.session_id.clone()).as_deref(), Some("s"));
    clock.advance(Duration::from_secs(3601));
    assert!(store.load_session_by_token("tok").await.unwrap().is_none());
    store.close().await.unwrap();
    assert_eq!(store.load_session_by_id("s").await, Err(StoreError::Closed));
}

#[test]
fn works_under_smol_and_a_bare_block_on() {
    let db = tokenstore_pgtest::shared().database();
    smol::block_on(life(&db, "under_smol"));
    futures_lite::future::block_on(life(&db, "under_block_on"));
}

/// The cost of the hop to the store's runtime thread and back, next to a
/// round trip to the server: printed, and bounded loosely so a broken hop
/// (a wake-up lost, a timer in the path) fails.
#[test]
fn the_hop_costs_little_next_to_the_round_trip() {
    let db = tokenstore_pgtest::shared().database();
    let key = generate_key();
    futures_lite::future::block_on(async {
        let store = open(&db, &key).await.unwrap();
        const N: u32 = 2_000;
        let started = Instant::now();
        for _ in 0..N {
            store.load_client("nobody").await.unwrap();
        }
        let per_call = started.elapsed() / N;
        // An empty batch is one job that takes an idle connection and sends nothing.
        let writer = store.batch_writer().expect("batch capability");
        let started = Instant::now();
        for _ in 0..N {
            writer.apply_batch(Vec::new()).await.unwrap();
        }
        let hop = started.elapsed() / N;
        eprintln!("load_client (hop + one statement): {per_call:?}; the hop alone: {hop:?}");
        assert!(hop < per_call, "hop {hop:?} vs call {per_call:?}");
        assert!(hop < Duration::from_millis(2), "hop {hop:?}");
        store.close().await.unwrap();
    });
}
