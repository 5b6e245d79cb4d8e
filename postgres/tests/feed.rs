//! The invalidation feed of PostgresTokenStore (`DESIGN.md` section 7): what
//! each write logs, polls across two stores on one database, the
//! out-of-order commit a sequence would miss, hints (and their listener
//! killed), a restart, pruning, and the log turned off.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::cache::CacheKey;
use tokenstore_core::feed::{InvalidationFeed, Invalidations, Watermark, encode_key, log};
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, ManualClock, Secret, StateRecord, StoreError, StoredSession,
    Timestamp, TokenHash, TokenStore, UserInfo,
};
use tokenstore_pgtest::{Server, TestDatabase};
use tokenstore_postgres::{PostgresTokenStore, PostgresTokenStoreBuilder, generate_key};
use tokio_postgres::{Client, NoTls};

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);
const HOUR: Duration = Duration::from_secs(3600);
/// How long a test waits for something that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

/// A raw connection to `config`'s database (its driver runs on a task).
async fn raw(config: &tokio_postgres::Config) -> Client {
    let (client, conn) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

fn builder(config: tokio_postgres::Config, clock: &ManualClock) -> PostgresTokenStoreBuilder {
    PostgresTokenStore::builder_with_config(config)
        .encryption_key(generate_key())
        .clock(clock.clone())
}

async fn open(db: &TestDatabase, clock: &ManualClock) -> PostgresTokenStore {
    builder(db.config(), clock).open().await.expect("open")
}

fn feed(store: &PostgresTokenStore) -> &dyn InvalidationFeed {
    store
        .invalidation_feed()
        .expect("the feed is on by default")
}

/// The log's rows, as sorted `(kind, bytes)`.
async fn rows(client: &Client) -> Vec<(i16, Vec<u8>)> {
    let rows = client
        .query(
            "SELECT u.kind, u.key FROM tokenstore.invalidations AS i, \
             unnest(i.kinds, i.keys) AS u(kind, key)",
            &[],
        )
        .await
        .expect("read the log");
    let mut out: Vec<_> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    out.sort();
    out
}

/// The rows logged since the last call (each call empties the log).
async fn take(client: &Client) -> Vec<(i16, Vec<u8>)> {
    let out = rows(client).await;
    client
        .batch_execute("DELETE FROM tokenstore.invalidations")
        .await
        .expect("empty the log");
    out
}

/// `keys` as sorted `(kind, bytes)`, to compare with [`rows`].
fn encoded(keys: impl IntoIterator<Item = CacheKey>) -> Vec<(i16, Vec<u8>)> {
    let mut out: Vec<_> = keys.into_iter().map(|k| encode_key(&k)).collect();
    out.sort();
    out
}

fn session(id: &str, access: &str, refresh: Option<&str>) -> StoredSession {
    let mut s = StoredSession::new(
        id,
        UserInfo::new("github", "42", "octocat"),
        access,
        T0 + HOUR,
        T0,
    );
    s.refresh_token = refresh.map(Secret::new);
    s.refresh_expires_at = refresh.map(|_| T0 + HOUR);
    s.provider_access_token = Some(Secret::new("gho_provider_secret_x1"));
    s
}

fn code(code: &str) -> AuthCodeRecord {
    AuthCodeRecord::new(code, "sid-1", T0 + HOUR, T0)
}

fn client(id: &str) -> ClientRecord {
    let mut c = ClientRecord::new(id, T0);
    c.client_secret = Some(Secret::new(format!("client-secret-of-{id}")));
    c
}

fn keys_of(s: &StoredSession) -> Vec<CacheKey> {
    log::deleted_session(s)
}

/// Polls `feed` from `since` until `want` holds (bounded), returning the answer.
async fn poll_until(
    feed: &dyn InvalidationFeed,
    since: Option<Watermark>,
    want: impl Fn(&Invalidations) -> bool,
) -> Invalidations {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = feed.invalidations_since(since).await.expect("poll");
        if want(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "not within {PATIENCE:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writes_log_exactly_their_keys() {
    let db = tokenstore_pgtest::shared().database();
    let clock = ManualClock::new(T0);
    let store = open(&db, &clock).await;
    let raw = raw(&db.config()).await;

    // A new session: its three keys.
    let s1 = session("sid-1", "access-1", Some("refresh-1"));
    store.store_session(Arc::new(s1.clone())).await.unwrap();
    assert_eq!(take(&raw).await, encoded(keys_of(&s1)));
    // A rotation (same id): the new keys and the replaced row's access and refresh hashes.
    let s2 = session("sid-1", "access-2", Some("refresh-2"));
    store.store_session(Arc::new(s2.clone())).await.unwrap();
    assert_eq!(take(&raw).await, encoded(log::stored_session(&s2, [&s1])));
    let logged = encoded(log::stored_session(&s2, [&s1]));
    for old in [
        CacheKey::Session(tokenstore_core::SessionKey::Access(TokenHash::of(
            "access-1",
        ))),
        CacheKey::Session(tokenstore_core::SessionKey::Refresh(TokenHash::of(
            "refresh-1",
        ))),
    ] {
        assert!(logged.contains(&encode_key(&old)));
    }
    // A session replacing two rows at once (one by access hash, one by refresh hash).
    let s3 = session("sid-3", "access-3", None);
    store.store_session(Arc::new(s3.clone())).await.unwrap();
    take(&raw).await;
    let s4 = session("sid-4", "access-3", Some("refresh-2"));
    store.store_session(Arc::new(s4.clone())).await.unwrap();
    assert_eq!(
        take(&raw).await,
        encoded(log::stored_session(&s4, [&s2, &s3]))
    );
    // The row's columns give the same keys as the record.
    assert_eq!(
        encoded(log::session_columns(
            TokenHash::of("access-2"),
            Some(TokenHash::of("refresh-2")),
            "sid-1"
        )),
        encoded(keys_of(&s2))
    );

    // Deletes log the deleted row's keys; a delete of nothing logs nothing.
    store.delete_session_by_token("access-3").await.unwrap();
    assert_eq!(take(&raw).await, encoded(keys_of(&s4)));
    store.delete_session_by_token("access-3").await.unwrap();
    assert_eq!(take(&raw).await, []);
    store.store_session(Arc::new(s1.clone())).await.unwrap();
    take(&raw).await;
    store.delete_session_by_id("sid-1").await.unwrap();
    assert_eq!(take(&raw).await, encoded(keys_of(&s1)));
    store.delete_session_by_id("sid-1").await.unwrap();
    assert_eq!(take(&raw).await, []);

    // Codes, by hash: stored always, deleted or taken when a row went.
    let c = log::auth_code("code-1");
    store
        .store_auth_code(Arc::new(code("code-1")))
        .await
        .unwrap();
    assert_eq!(take(&raw).await, encoded([c.clone()]));
    store.delete_auth_code("code-1").await.unwrap();
    assert_eq!(take(&raw).await, encoded([c.clone()]));
    store.delete_auth_code("code-1").await.unwrap();
    assert_eq!(take(&raw).await, []);
    store
        .store_auth_code(Arc::new(code("code-1")))
        .await
        .unwrap();
    take(&raw).await;
    assert!(store.try_delete_auth_code("code-1").await.unwrap());
    assert_eq!(take(&raw).await, encoded([c.clone()]));
    assert!(!store.try_delete_auth_code("code-1").await.unwrap());
    assert_eq!(take(&raw).await, []);

    // Clients.
    store.store_client(Arc::new(client("app-1"))).await.unwrap();
    assert_eq!(take(&raw).await, encoded([log::client("app-1")]));
    store.delete_client("app-1").await.unwrap();
    assert_eq!(take(&raw).await, encoded([log::client("app-1")]));
    store.delete_client("app-1").await.unwrap();
    assert_eq!(take(&raw).await, []);

    // States log nothing; nor do deletes of expired rows, on read or in cleanup.
    let state = StateRecord::new("st-1", T0 + HOUR, T0);
    store.store_state(Arc::new(state)).await.unwrap();
    assert!(store.consume_state("st-1").await.unwrap().is_some());
    store.store_session(Arc::new(s3.clone())).await.unwrap();
    store
        .store_auth_code(Arc::new(code("code-2")))
        .await
        .unwrap();
    store
        .store_session(Arc::new(session("sid-5", "access-5", None)))
        .await
        .unwrap();
    take(&raw).await;
    clock.advance(2 * HOUR);
    assert!(
        store
            .load_session_by_token("access-3")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.load_auth_code("code-2").await.unwrap().is_none());
    let cleaned = store.cleanup_expired().await.unwrap();
    assert_eq!(cleaned.sessions, 1);
    assert_eq!(take(&raw).await, []);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_bulk_calls_log_what_they_changed_and_a_failed_batch_nothing() {
    let db = tokenstore_pgtest::shared().database();
    let clock = ManualClock::new(T0);
    let store = open(&db, &clock).await;
    let raw = raw(&db.config()).await;
    let old = session("sid-old", "access-old", Some("refresh-old"));
    let doomed = session("sid-doomed", "access-doomed", None);
    store.store_session(Arc::new(old.clone())).await.unwrap();
    store.store_session(Arc::new(doomed.clone())).await.unwrap();
    store
        .store_auth_code(Arc::new(code("code-old")))
        .await
        .unwrap();
    store
        .store_client(Arc::new(client("app-old")))
        .await
        .unwrap();
    take(&raw).await;

    let new = session("sid-old", "access-new", Some("refresh-new"));
    let batch = vec![
        WriteOp::StoreState(Arc::new(StateRecord::new("st", T0 + HOUR, T0))),
        WriteOp::StoreSession(Arc::new(new.clone())),
        WriteOp::DeleteSessionByToken(Secret::new("access-doomed")),
        WriteOp::DeleteSessionByToken(Secret::new("access-missing")),
        WriteOp::DeleteSessionById("sid-missing".into()),
        WriteOp::StoreAuthCode(Arc::new(code("code-new"))),
        WriteOp::DeleteAuthCode("code-old".into()),
        WriteOp::DeleteAuthCode("code-missing".into()),
        WriteOp::StoreClient(Arc::new(client("app-new"))),
        WriteOp::DeleteClient("app-old".into()),
        WriteOp::DeleteClient("app-missing".into()),
    ];
    let writer = store.batch_writer().expect("batch capability");
    writer.apply_batch(batch).await.unwrap();
    let mut want = log::stored_session(&new, [&old]);
    want.extend(keys_of(&doomed));
    want.extend([
        log::auth_code("code-new"),
        log::auth_code("code-old"),
        log::client("app-new"),
        log::client("app-old"),
    ]);
    assert_eq!(take(&raw).await, encoded(want));

    // A batch that fails after its code statements ran (the session cannot be
    // sealed: this store has no key) is rolled back, log rows included.
    let keyless = PostgresTokenStore::builder_with_config(db.config())
        .open()
        .await
        .unwrap();
    let failing = vec![
        WriteOp::StoreAuthCode(Arc::new(code("code-rolled-back"))),
        WriteOp::DeleteAuthCode("code-new".into()),
        WriteOp::StoreSession(Arc::new(session("sid-x", "access-x", None))),
    ];
    let err = keyless
        .batch_writer()
        .unwrap()
        .apply_batch(failing)
        .await
        .expect_err("no key");
    assert!(matches!(err, StoreError::EncryptionKeyRequired), "{err:?}");
    assert_eq!(take(&raw).await, []);
    assert!(store.load_auth_code("code-new").await.unwrap().is_some());
    keyless.close().await.unwrap();

    // Bulk: the stored sessions' keys and every replaced row's; deletes by hash.
    let a = session("sid-a", "access-a", Some("refresh-new"));
    let b = session("sid-b", "access-b", None);
    let bulk = store.bulk().expect("bulk capability");
    bulk.bulk_store_sessions(vec![Arc::new(a.clone()), Arc::new(b.clone())])
        .await
        .unwrap();
    let mut want = log::stored_session(&a, [&new]);
    want.extend(keys_of(&b));
    assert_eq!(take(&raw).await, encoded(want));
    let hashes = vec![TokenHash::of("access-a"), TokenHash::of("access-missing")];
    assert_eq!(bulk.bulk_delete_sessions_by_hash(hashes).await.unwrap(), 1);
    assert_eq!(take(&raw).await, encoded(keys_of(&a)));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_holds_no_token_code_or_secret() {
    let db = tokenstore_pgtest::shared().database();
    let clock = ManualClock::new(T0);
    let store = open(&db, &clock).await;
    let secrets = [
        "ACCESS-zq81",
        "REFRESH-zq82",
        "CODE-zq83",
        "gho_provider_secret_x1",
        "client-secret-of-app-zq",
    ];
    let s = session("sid-z", secrets[0], Some(secrets[1]));
    store.store_session(Arc::new(s.clone())).await.unwrap();
    store
        .store_session(Arc::new(session("sid-z", "ACCESS-zq84", None)))
        .await
        .unwrap();
    store.delete_session_by_id("sid-z").await.unwrap();
    store
        .store_auth_code(Arc::new(code(secrets[2])))
        .await
        .unwrap();
    assert!(store.try_delete_auth_code(secrets[2]).await.unwrap());
    store
        .store_client(Arc::new(client("app-zq")))
        .await
        .unwrap();
    store.delete_client("app-zq").await.unwrap();
    let writer = store.batch_writer().unwrap();
    writer
        .apply_batch(vec![
            WriteOp::StoreSession(Arc::new(s)),
            WriteOp::StoreAuthCode(Arc::new(code(secrets[2]))),
            WriteOp::DeleteAuthCode(secrets[2].into()),
            WriteOp::DeleteSessionByToken(Secret::new(secrets[0])),
        ])
        .await
        .unwrap();
    let logged = rows(&raw(&db.config()).await).await;
    assert!(logged.len() > 10, "{}", logged.len());
    for (_, bytes) in &logged {
        for secret in secrets {
            let needle = secret.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a raw secret in the log"
            );
        }
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_store_reaches_the_other_and_no_later_write_is_lost() {
    let db = tokenstore_pgtest::shared().database();
    let clock = ManualClock::new(T0);
    let (a, b) = (open(&db, &clock).await, open(&db, &clock).await);
    let start = feed(&b).invalidations_since(None).await.unwrap();
    assert!(start.keys.is_empty() && !start.gap, "{start:?}");
    let mut mark = start.watermark;
    for i in 0..20 {
        let id = format!("app-{i}");
        a.store_client(Arc::new(client(&id))).await.unwrap();
        let want = log::client(&id);
        let got = poll_until(feed(&b), Some(mark), |got| got.keys.contains(&want)).await;
        assert!(!got.gap, "{got:?}");
        assert!(got.watermark >= mark);
        mark = got.watermark;
    }
    // Writes made between polls all come back from the last watermark.
    for i in 0..5 {
        a.delete_client(&format!("app-{i}")).await.unwrap();
    }
    let got = feed(&b).invalidations_since(Some(mark)).await.unwrap();
    for i in 0..5 {
        assert!(got.keys.contains(&log::client(&format!("app-{i}"))), "{i}");
    }
    // A watermark this database never handed out (from the future, or another
    // database) is a gap; so is one at the prune mark's initial 0.
    let alien = Watermark(got.watermark.0 + 1_000_000);
    assert!(feed(&b).invalidations_since(Some(alien)).await.unwrap().gap);
    assert!(
        feed(&b)
            .invalidations_since(Some(Watermark(0)))
            .await
            .unwrap()
            .gap
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
    let err = feed(&b).invalidations_since(Some(mark)).await.unwrap_err();
    assert_eq!(err, StoreError::Closed);
}

/// THE test of the watermark: T1 writes a log row and stays open; T2 commits
/// a later row; a poll returns T2's key; T1 commits; the next poll from the
/// watermark the first one returned must return T1's key, though T1's
/// transaction id is lower than T2's (`id > last seen` would skip it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_commits_after_a_later_one_is_not_skipped() {
    let db = tokenstore_pgtest::shared().database();
    let clock = ManualClock::new(T0);
    let store = open(&db, &clock).await;
    let before = feed(&store)
        .invalidations_since(None)
        .await
        .unwrap()
        .watermark;
    let (t1, t2) = (raw(&db.config()).await, raw(&db.config()).await);
    let insert = |id: &str| {
        format!(
            "INSERT INTO tokenstore.invalidations (kinds, keys) \
             VALUES (ARRAY[{}]::smallint[], ARRAY['{id}'::bytea]) RETURNING xid::text",
            tokenstore_core::feed::KIND_CLIENT
        )
    };
    let xid = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> u64 {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|x| x.parse().unwrap()),
                _ => None,
            })
            .expect("a row")
    };
    t1.batch_execute("BEGIN").await.unwrap();
    let x1 = xid(t1.simple_query(&insert("client-t1")).await.unwrap());
    let x2 = xid(t2.simple_query(&insert("client-t2")).await.unwrap());
    assert!(x1 < x2, "T1 {x1} took its id before T2 {x2}");

    let first = feed(&store)
        .invalidations_since(Some(before))
        .await
        .unwrap();
    assert!(first.keys.contains(&log::client("client-t2")), "{first:?}");
    assert!(!first.keys.contains(&log::client("client-t1")));
    assert!(!first.gap);
    assert!(first.watermark.0 <= x1, "the horizon waits for T1");
    assert!(
        first.watermark.0 < x2,
        "the next poll re-reads T2 too (harmless)"
    );

    t1.batch_execute("COMMIT").await.unwrap();
    let second = feed(&store)
        .invalidations_since(Some(first.watermark))
        .await
        .unwrap();
    assert!(
        second.keys.contains(&log::client("client-t1")),
        "{second:?}"
    );
    assert!(!second.gap);
    // Once the horizon passes T2 (other tests' transactions on the shared
    // cluster may hold it back a while), neither comes back.
    let past = poll_until(feed(&store), Some(second.watermark), |g| g.watermark.0 > x2).await;
    let third = feed(&store)
        .invalidations_since(Some(past.watermark))
        .await
        .unwrap();
    for gone in ["client-t1", "client-t2"] {
        assert!(!third.keys.contains(&log::client(gone)), "{third:?}");
    }
    store.close().await.unwrap();
}

/// A rolled-back write logs nothing: the rows are the transaction's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_log_row_is_never_reported() {
    let db = tokenstore_pgtest::shared().database();
    let store = open(&db, &ManualClock::new(T0)).await;
    let before = feed(&store)
        .invalidations_since(None)
        .await
        .unwrap()
        .watermark;
    let t = raw(&db.config()).await;
    t.batch_execute(
        "BEGIN; INSERT INTO tokenstore.invalidations (kinds, keys) \
         VALUES (ARRAY[5]::smallint[], ARRAY['gone'::bytea]); ROLLBACK",
    )
    .await
    .unwrap();
    let got = feed(&store)
        .invalidations_since(Some(before))
        .await
        .unwrap();
    assert!(got.keys.is_empty() && !got.gap, "{got:?}");
    store.close().await.unwrap();
}

/// The highest transaction id in the log.
async fn top_xid(raw: &Client) -> u64 {
    let row = raw
        .query_one("SELECT max(xid)::text FROM tokenstore.invalidations", &[])
        .await
        .unwrap();
    let top: String = row.get(0);
    top.parse().unwrap()
}

/// The watermark never runs past the log's last durable row: transaction ids
/// used by other transactions since (the hint NOTIFYs commit asynchronously,
/// and PostgreSQL may hand such ids out again after a crash) do not raise it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watermark_stays_at_the_log_s_last_row_while_other_ids_are_used() {
    let db = tokenstore_pgtest::shared().database();
    let store = open(&db, &ManualClock::new(T0)).await;
    store.store_client(Arc::new(client("app-1"))).await.unwrap();
    let raw = raw(&db.config()).await;
    let top = top_xid(&raw).await;
    for _ in 0..5 {
        raw.batch_execute(
            "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_current_xact_id(); COMMIT",
        )
        .await
        .unwrap();
    }
    let got = feed(&store).invalidations_since(None).await.unwrap();
    assert!(got.watermark.0 <= top + 1, "{got:?} past {top}");
    let got = feed(&store)
        .invalidations_since(Some(got.watermark))
        .await
        .unwrap();
    assert!(got.watermark.0 <= top + 1 && !got.gap, "{got:?}");
    // A watermark past the log's last row and prune mark is another
    // database's (or one that lost rows): a gap.
    let ahead = Watermark(top + 2);
    assert!(
        feed(&store)
            .invalidations_since(Some(ahead))
            .await
            .unwrap()
            .gap
    );
    store.close().await.unwrap();
}

fn named(db: &TestDatabase, name: &str) -> tokio_postgres::Config {
    let mut config = db.config();
    config.application_name(name);
    config
}

/// The pid of the listener connection of the store named `name`, once there is one.
async fn listener_pid(raw: &Client, name: &str) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let row = raw
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                &[&format!("{name} listener")],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "no listener for {name}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn raised_past(board: &tokenstore_core::feed::HintBoard, seen: u64, what: &str) -> u64 {
    tokio::time::timeout(PATIENCE, board.wait_past(seen))
        .await
        .unwrap_or_else(|_| panic!("no hint within {PATIENCE:?}: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_wake_the_other_store_and_survive_a_killed_listener() {
    let db = tokenstore_pgtest::shared().database();
    let clock = ManualClock::new(T0);
    let a = open(&db, &clock).await;
    let b = builder(named(&db, "replica-b"), &clock)
        .open()
        .await
        .unwrap();
    let board = feed(&b).hints().expect("hints are on by default");
    let raw = raw(&db.config()).await;
    let pid = listener_pid(&raw, "replica-b").await;
    // The first LISTEN raised once; wait for it so the next raise is the write's.
    let seen = raised_past(board, 0, "after the first LISTEN").await;

    a.store_client(Arc::new(client("app-1"))).await.unwrap();
    let seen = raised_past(board, seen, "a write through A").await;
    let got = poll_until(feed(&b), Some(Watermark(3)), |g| {
        g.keys.contains(&log::client("app-1"))
    })
    .await;
    let mark = got.watermark;

    // Kill B's listener: it reconnects, raises (hints may have been lost), and
    // hears later writes again.
    let killed: bool = raw
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let seen = raised_past(board, seen, "the listener's reconnect").await;
    let again = listener_pid(&raw, "replica-b").await;
    assert_ne!(again, pid);
    a.delete_client("app-1").await.unwrap();
    raised_past(board, seen, "a write through A after the reconnect").await;
    let got = feed(&b).invalidations_since(Some(mark)).await.unwrap();
    assert!(got.keys.contains(&log::client("app-1")));

    // Many writes coalesce into few hints, and the last one is always followed by one.
    let seen = board.generation();
    let writes: Vec<_> = (0..50)
        .map(|i| a.store_client(Arc::new(client(&format!("burst-{i}")))))
        .collect();
    for w in writes {
        w.await.unwrap();
    }
    raised_past(board, seen, "a burst of writes").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    // Closing ends the hint connections.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left: i64 = raw
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'replica-b %'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} hint connections left after close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_can_be_turned_off_and_the_log_too() {
    let db = tokenstore_pgtest::shared().database();
    let clock = ManualClock::new(T0);
    let quiet = builder(db.config(), &clock)
        .invalidation_hints(false)
        .open()
        .await
        .unwrap();
    assert!(feed(&quiet).hints().is_none());
    quiet.store_client(Arc::new(client("app-q"))).await.unwrap();
    let got = feed(&quiet)
        .invalidations_since(Some(Watermark(3)))
        .await
        .unwrap();
    assert!(got.keys.contains(&log::client("app-q")));
    quiet.close().await.unwrap();

    let off = builder(db.config(), &clock)
        .invalidation_log(false)
        .open()
        .await
        .unwrap();
    assert!(off.invalidation_feed().is_none());
    let raw = raw(&db.config()).await;
    take(&raw).await;
    let s = session("sid-off", "access-off", Some("refresh-off"));
    off.store_session(Arc::new(s.clone())).await.unwrap();
    off.store_session(Arc::new(session("sid-off", "access-off-2", None)))
        .await
        .unwrap();
    off.delete_session_by_token("access-off-2").await.unwrap();
    off.store_auth_code(Arc::new(code("code-off")))
        .await
        .unwrap();
    off.delete_auth_code("code-off").await.unwrap();
    off.store_auth_code(Arc::new(code("code-off")))
        .await
        .unwrap();
    assert!(off.try_delete_auth_code("code-off").await.unwrap());
    off.store_client(Arc::new(client("app-off"))).await.unwrap();
    off.delete_client("app-off").await.unwrap();
    off.batch_writer()
        .unwrap()
        .apply_batch(vec![
            WriteOp::StoreSession(Arc::new(s)),
            WriteOp::StoreAuthCode(Arc::new(code("code-off"))),
            WriteOp::DeleteAuthCode("code-off".into()),
            WriteOp::StoreClient(Arc::new(client("app-off"))),
            WriteOp::DeleteClient("app-off".into()),
        ])
        .await
        .unwrap();
    let bulk = off.bulk().unwrap();
    bulk.bulk_store_sessions(vec![Arc::new(session("sid-b", "access-b", None))])
        .await
        .unwrap();
    let gone = bulk
        .bulk_delete_sessions_by_hash(vec![TokenHash::of("access-b"), TokenHash::of("access-off")])
        .await
        .unwrap();
    assert_eq!(gone, 2);
    assert_eq!(rows(&raw).await, []);
    assert!(!format!("{off:?}").contains("invalidation_log: true"));
    off.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_turns_an_old_watermark_into_a_gap_and_leaves_a_fresh_one_alone() {
    let db = tokenstore_pgtest::shared().database();
    let store = open(&db, &ManualClock::new(T0)).await;
    let old = feed(&store)
        .invalidations_since(None)
        .await
        .unwrap()
        .watermark;
    store.store_client(Arc::new(client("app-1"))).await.unwrap();
    let raw = raw(&db.config()).await;
    let written = top_xid(&raw).await;
    // A watermark past the row (other tests' transactions on the shared
    // cluster may hold the horizon back a while).
    let fresh = poll_until(feed(&store), Some(old), |g| g.watermark.0 > written).await;
    assert!(fresh.keys.contains(&log::client("app-1")) && !fresh.gap);
    // Nothing is old enough for the default retention.
    assert_eq!(
        store
            .prune_invalidations(Duration::from_secs(600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.prune_invalidations(Duration::MAX).await.unwrap(), 0);
    assert!(
        !feed(&store)
            .invalidations_since(Some(old))
            .await
            .unwrap()
            .gap
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.prune_invalidations(Duration::ZERO).await.unwrap(), 1);
    let got = feed(&store).invalidations_since(Some(old)).await.unwrap();
    assert!(got.gap, "rows after {old:?} were pruned: {got:?}");
    let got = feed(&store)
        .invalidations_since(Some(fresh.watermark))
        .await
        .unwrap();
    assert!(
        !got.gap,
        "nothing after {:?} was pruned: {got:?}",
        fresh.watermark
    );
    // A later write after the prune is reported from the fresh watermark.
    store.delete_client("app-1").await.unwrap();
    let got = feed(&store)
        .invalidations_since(Some(fresh.watermark))
        .await
        .unwrap();
    assert!(got.keys.contains(&log::client("app-1")) && !got.gap);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_prunes_by_age_on_its_own() {
    let db = tokenstore_pgtest::shared().database();
    let store = builder(db.config(), &ManualClock::new(T0))
        .invalidation_retention(Duration::from_millis(200))
        .open()
        .await
        .unwrap();
    let old = feed(&store)
        .invalidations_since(None)
        .await
        .unwrap()
        .watermark;
    store.store_client(Arc::new(client("app-1"))).await.unwrap();
    let raw = raw(&db.config()).await;
    assert_eq!(rows(&raw).await.len(), 1);
    // The task runs every second at this retention.
    let deadline = Instant::now() + PATIENCE;
    while !rows(&raw).await.is_empty() {
        assert!(Instant::now() < deadline, "not pruned within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        feed(&store)
            .invalidations_since(Some(old))
            .await
            .unwrap()
            .gap
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_one_schema_is_migrated_and_gets_a_feed() {
    let db = tokenstore_pgtest::shared().database();
    let clock = ManualClock::new(T0);
    let key = generate_key();
    let open_with = |key: String| {
        PostgresTokenStore::builder_with_config(db.config())
            .encryption_key(key)
            .clock(clock.clone())
            .open()
    };
    let store = open_with(key.clone()).await.unwrap();
    store.store_client(Arc::new(client("app-1"))).await.unwrap();
    store.close().await.unwrap();
    let raw = raw(&db.config()).await;
    raw.batch_execute(
        "DROP TABLE tokenstore.invalidations, tokenstore.invalidations_meta; \
         UPDATE tokenstore.schema_version SET version = 1",
    )
    .await
    .unwrap();
    let store = open_with(key).await.unwrap();
    let version: i32 = raw
        .query_one("SELECT version FROM tokenstore.schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 2);
    assert!(store.load_client("app-1").await.unwrap().is_some());
    let mark = feed(&store)
        .invalidations_since(None)
        .await
        .unwrap()
        .watermark;
    store.delete_client("app-1").await.unwrap();
    let got = feed(&store).invalidations_since(Some(mark)).await.unwrap();
    assert_eq!(got.keys, [log::client("app-1")]);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_fails_while_the_server_is_down_and_works_after_a_restart() {
    let server = Server::start().expect("a cluster of our own");
    let db = server.database();
    let clock = ManualClock::new(T0);
    let a = open(&db, &clock).await;
    let b = builder(named(&db, "replica-b"), &clock)
        .open()
        .await
        .unwrap();
    let board = feed(&b).hints().unwrap();
    let seen = raised_past(board, 0, "after the first LISTEN").await;
    a.store_client(Arc::new(client("app-1"))).await.unwrap();
    let got = poll_until(feed(&b), Some(Watermark(3)), |g| {
        g.keys.contains(&log::client("app-1"))
    })
    .await;
    let mark = got.watermark;
    let seen = raised_past(board, seen, "the write before the stop").await;

    server
        .pg_ctl(&["-m", "immediate", "-w", "stop"])
        .expect("stop");
    // While it is down: errors, never an empty success.
    for _ in 0..3 {
        let err = feed(&b)
            .invalidations_since(Some(mark))
            .await
            .expect_err("the server is down");
        assert!(err.is_transient(), "{err:?}");
        let err = feed(&b).invalidations_since(None).await.expect_err("down");
        assert!(err.is_transient(), "{err:?}");
    }
    server.pg_ctl(&["-w", "start"]).expect("start");

    // Up again: the write that follows reaches B's poll from the old watermark,
    // and B's listener came back (it raised) and hears A's writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = a.delete_client("app-1").await {
        assert!(e.is_transient(), "{e:?}");
        assert!(Instant::now() < deadline, "no reconnect within 30 s: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = poll_until(feed(&b), Some(mark), |g| {
        g.keys.contains(&log::client("app-1"))
    })
    .await;
    assert!(!got.gap, "{got:?}");
    let seen = raised_past(board, seen, "the listener's reconnect after the restart").await;
    let raw = raw(&db.config()).await;
    listener_pid(&raw, "replica-b").await;
    // The reconnect raise may have come before the write's: wait for one more
    // write's hint.
    let later = board.generation().max(seen);
    a.store_client(Arc::new(client("app-2"))).await.unwrap();
    raised_past(board, later, "a write after the restart").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}
