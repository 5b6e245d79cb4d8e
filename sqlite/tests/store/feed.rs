//! The invalidation log, write side: every write that can invalidate a cached
//! key logs exactly that write's keys, in its own transaction, through single
//! calls, atomic batches and bulk calls alike.

use crate::common::{Env, full_client, full_code, full_session, full_state, secrets_of};
use crate::writes::Gen;
use futures_lite::future::block_on;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::buffer::{Step, WriteOp, apply};
use tokenstore_core::cache::CacheKey;
use tokenstore_core::feed::{InvalidationFeed, Invalidations, Watermark};
use tokenstore_core::{
    Contents, Secret, SessionKey, StoreError, StoredSession, TokenHash, TokenStore,
};
use tokenstore_sqlite::SqliteTokenStore;

/// Fails an insert of client `poison` (as in `batch.rs`, without the marker).
const POISON: &str = "CREATE TRIGGER poison BEFORE INSERT ON oauth_clients \
    WHEN NEW.client_id = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END";

/// The store with the log on, encrypted with the environment's key.
pub(crate) fn logged(env: &Env) -> SqliteTokenStore {
    block_on(env.builder().invalidation_log(true).open()).expect("open with the log")
}

pub(crate) fn feed(store: &SqliteTokenStore) -> &dyn InvalidationFeed {
    store.invalidation_feed().expect("the store logs")
}

pub(crate) fn poll(store: &SqliteTokenStore, since: Option<Watermark>) -> Invalidations {
    block_on(feed(store).invalidations_since(since)).expect("poll")
}

pub(crate) fn now_mark(store: &SqliteTokenStore) -> Watermark {
    poll(store, None).watermark
}

/// What a cursor of one poller sees: the keys logged since its last look.
pub(crate) struct Cursor {
    pub(crate) at: Watermark,
}

impl Cursor {
    pub(crate) fn new(store: &SqliteTokenStore) -> Self {
        Self {
            at: now_mark(store),
        }
    }

    /// The keys logged since the last call; there must be no gap.
    pub(crate) fn take(&mut self, store: &SqliteTokenStore) -> HashSet<CacheKey> {
        let got = poll(store, Some(self.at));
        assert!(!got.gap, "unexpected gap after {:?}", self.at);
        assert!(got.watermark >= self.at, "the watermark went back");
        self.at = got.watermark;
        got.keys.into_iter().collect()
    }
}

pub(crate) fn session_keys(s: &StoredSession) -> HashSet<CacheKey> {
    CacheKey::of_session(s).into_iter().collect()
}

fn code_key(code: &str) -> CacheKey {
    CacheKey::AuthCode(TokenHash::of(code))
}

fn client_key(id: &str) -> CacheKey {
    CacheKey::Client(id.to_owned())
}

fn set<const N: usize>(keys: [CacheKey; N]) -> HashSet<CacheKey> {
    keys.into_iter().collect()
}

fn union(a: HashSet<CacheKey>, b: HashSet<CacheKey>) -> HashSet<CacheKey> {
    a.union(&b).cloned().collect()
}

/// Session `n` rotated: same id, new tokens `access-{n}b` and `refresh-{n}b`.
fn rotated(env: &Env, n: u32) -> StoredSession {
    let mut s = full_session(env, n);
    s.access_token = Secret::new(format!("access-{n}b"));
    s.refresh_token = Some(Secret::new(format!("refresh-{n}b")));
    s
}

fn log_rows(env: &Env) -> i64 {
    env.raw()
        .query_row("SELECT count(*) FROM tokenstore_invalidations", [], |r| {
            r.get(0)
        })
        .expect("count")
}

#[test]
fn session_writes_log_their_keys_and_the_replaced_rows_keys() {
    let env = Env::new();
    let store = logged(&env);
    let mut cursor = Cursor::new(&store);
    block_on(async {
        let first = full_session(&env, 1);
        store.store_session(Arc::new(first.clone())).await?;
        assert_eq!(cursor.take(&store), session_keys(&first));

        // A rotation: the old access and refresh hashes are logged with the new.
        let second = rotated(&env, 1);
        store.store_session(Arc::new(second.clone())).await?;
        let got = cursor.take(&store);
        assert_eq!(got, union(session_keys(&first), session_keys(&second)));
        let old_access = CacheKey::Session(SessionKey::Access(TokenHash::of("access-1")));
        let old_refresh = CacheKey::Session(SessionKey::Refresh(TokenHash::of("refresh-1")));
        assert!(got.contains(&old_access) && got.contains(&old_refresh));

        // One store that replaces two rows (by refresh token and by id).
        let other = full_session(&env, 2);
        store.store_session(Arc::new(other.clone())).await?;
        cursor.take(&store);
        let mut merged = full_session(&env, 3);
        merged.session_id = "session-2".into();
        merged.refresh_token = Some(Secret::new("refresh-1b"));
        store.store_session(Arc::new(merged.clone())).await?;
        let replaced = union(session_keys(&second), session_keys(&other));
        assert_eq!(cursor.take(&store), union(replaced, session_keys(&merged)));

        store.delete_session_by_token("access-3").await?;
        assert_eq!(cursor.take(&store), session_keys(&merged));
        store.delete_session_by_token("access-3").await?;
        assert_eq!(cursor.take(&store), HashSet::new(), "nothing was deleted");

        let fourth = full_session(&env, 4);
        store.store_session(Arc::new(fourth.clone())).await?;
        cursor.take(&store);
        store.delete_session_by_id("session-4").await?;
        assert_eq!(cursor.take(&store), session_keys(&fourth));
        store.delete_session_by_id("session-4").await?;
        assert_eq!(cursor.take(&store), HashSet::new(), "nothing was deleted");
        store.close().await
    })
    .expect("session writes");
}

#[test]
fn code_and_client_writes_log_their_keys() {
    let env = Env::new();
    let store = logged(&env);
    let mut cursor = Cursor::new(&store);
    let (code, client) = (full_code(&env, "code-1"), full_client(&env, "client-1"));
    block_on(async {
        store.store_auth_code(Arc::clone(&code)).await?;
        assert_eq!(cursor.take(&store), set([code_key("code-1")]));
        store.delete_auth_code("code-1").await?;
        assert_eq!(cursor.take(&store), set([code_key("code-1")]));
        store.delete_auth_code("code-1").await?;
        assert_eq!(cursor.take(&store), HashSet::new(), "nothing was deleted");

        store.store_auth_code(Arc::clone(&code)).await?;
        cursor.take(&store);
        assert!(store.try_delete_auth_code("code-1").await?);
        assert_eq!(cursor.take(&store), set([code_key("code-1")]));
        assert!(!store.try_delete_auth_code("code-1").await?);
        assert_eq!(cursor.take(&store), HashSet::new(), "nothing was deleted");

        store.store_client(Arc::clone(&client)).await?;
        assert_eq!(cursor.take(&store), set([client_key("client-1")]));
        store.delete_client("client-1").await?;
        assert_eq!(cursor.take(&store), set([client_key("client-1")]));
        store.delete_client("client-1").await?;
        assert_eq!(cursor.take(&store), HashSet::new(), "nothing was deleted");
        store.close().await
    })
    .expect("code and client writes");
}

#[test]
fn states_expiry_deletes_and_cleanup_log_nothing() {
    let env = Env::new();
    let store = logged(&env);
    block_on(async {
        store.store_auth_code(full_code(&env, "code-1")).await?;
        store.store_session(Arc::new(full_session(&env, 1))).await?;
        let mut cursor = Cursor::new(&store);
        store.store_state(full_state(&env, "state-1")).await?;
        assert!(store.consume_state("state-1").await?.is_some());
        store.store_state(full_state(&env, "state-2")).await?;
        assert_eq!(
            cursor.take(&store),
            HashSet::new(),
            "states are never cached"
        );

        // Two days on everything is dead: loads delete on read, and cleanup
        // removes the expired state; none of it logs.
        env.clock.advance(Duration::from_secs(2 * 86_400));
        assert!(store.load_auth_code("code-1").await?.is_none());
        assert!(store.load_session_by_token("access-1").await?.is_none());
        let counts = store.cleanup_expired().await?;
        assert_eq!(counts.states, 1);
        assert!(store.contents().await?.auth_codes.is_empty());
        assert_eq!(cursor.take(&store), HashSet::new());
        store.close().await
    })
    .expect("unlogged writes");
}

#[test]
fn batches_and_bulk_calls_log_the_same_keys_as_single_calls() {
    let env = Env::new();
    let store = logged(&env);
    let first = full_session(&env, 1);
    block_on(store.store_session(Arc::new(first.clone()))).expect("store");
    block_on(store.store_client(full_client(&env, "client-1"))).expect("client");
    let mut cursor = Cursor::new(&store);

    let (second, third) = (rotated(&env, 1), full_session(&env, 3));
    let writes = vec![
        WriteOp::StoreState(full_state(&env, "state-1")),
        WriteOp::StoreSession(Arc::new(second.clone())),
        WriteOp::StoreAuthCode(full_code(&env, "code-1")),
        WriteOp::StoreSession(Arc::new(third.clone())),
        WriteOp::DeleteSessionById("session-3".into()),
        WriteOp::DeleteAuthCode("code-1".into()),
        WriteOp::DeleteAuthCode("code-missing".into()),
        WriteOp::StoreClient(full_client(&env, "client-2")),
        WriteOp::DeleteClient("client-1".into()),
        WriteOp::DeleteClient("client-missing".into()),
        WriteOp::DeleteSessionByToken(Secret::new("access-missing")),
    ];
    let writer = store.batch_writer().expect("batches");
    block_on(writer.apply_batch(writes)).expect("batch");
    let mut want = union(session_keys(&first), session_keys(&second));
    want.extend(session_keys(&third));
    want.extend([code_key("code-1"), client_key("client-2")]);
    want.insert(client_key("client-1"));
    assert_eq!(cursor.take(&store), want);

    let writes = vec![WriteOp::DeleteSessionByToken(Secret::new("access-1b"))];
    block_on(writer.apply_batch(writes)).expect("batch");
    assert_eq!(cursor.take(&store), session_keys(&second));

    let bulk = store.bulk().expect("bulk");
    let sessions: Vec<_> = (10..20).map(|n| Arc::new(full_session(&env, n))).collect();
    block_on(bulk.bulk_store_sessions(sessions.clone())).expect("bulk store");
    let all: HashSet<_> = sessions.iter().flat_map(|s| session_keys(s)).collect();
    assert_eq!(cursor.take(&store), all);

    // A bulk rotation: the replaced rows' keys come back too.
    let rotations: Vec<_> = (10..12).map(|n| Arc::new(rotated(&env, n))).collect();
    block_on(bulk.bulk_store_sessions(rotations.clone())).expect("bulk rotate");
    let mut want: HashSet<_> = rotations.iter().flat_map(|s| session_keys(s)).collect();
    want.extend(sessions[..2].iter().flat_map(|s| session_keys(s)));
    assert_eq!(cursor.take(&store), want);

    let mut hashes: Vec<_> = sessions[2..].iter().map(|s| s.access_hash()).collect();
    hashes.push(TokenHash::of("access-missing"));
    let deleted = block_on(bulk.bulk_delete_sessions_by_hash(hashes)).expect("bulk delete");
    assert_eq!(deleted, 8, "the count is unchanged by RETURNING");
    let want: HashSet<_> = sessions[2..].iter().flat_map(|s| session_keys(s)).collect();
    assert_eq!(cursor.take(&store), want);
    block_on(store.close()).expect("close");
}

#[test]
fn a_bulk_delete_past_one_chunk_logs_every_row() {
    let env = Env::new();
    let store = block_on(
        env.bare()
            .allow_plaintext_tokens(true)
            .invalidation_log(true)
            .open(),
    )
    .expect("open");
    let bulk = store.bulk().expect("bulk");
    let sessions: Vec<_> = (0..1_203)
        .map(|n| {
            let user = tokenstore_core::UserInfo::new("p", format!("u{n}"), "n");
            let s = StoredSession::new(
                format!("s{n}"),
                user,
                format!("a{n}"),
                env.later(60),
                env.now(),
            );
            Arc::new(s)
        })
        .collect();
    block_on(bulk.bulk_store_sessions(sessions.clone())).expect("bulk store");
    let mut cursor = Cursor::new(&store);
    let hashes = sessions.iter().map(|s| s.access_hash()).collect();
    assert_eq!(
        block_on(bulk.bulk_delete_sessions_by_hash(hashes)),
        Ok(1_203)
    );
    let want: HashSet<_> = sessions.iter().flat_map(|s| session_keys(s)).collect();
    assert_eq!(cursor.take(&store), want);
}

#[test]
fn a_failed_write_logs_nothing() {
    let env = Env::new();
    let store = logged(&env);
    env.raw().execute_batch(POISON).expect("trigger");
    let before = now_mark(&store);
    let writer = store.batch_writer().expect("batches");

    // Refused before the transaction: an invalid write in the batch.
    let invalid = vec![
        WriteOp::StoreSession(Arc::new(full_session(&env, 1))),
        WriteOp::DeleteClient(String::new()),
    ];
    assert!(block_on(writer.apply_batch(invalid)).is_err());
    // Failed inside the transaction, after two logged writes.
    let poisoned = vec![
        WriteOp::StoreSession(Arc::new(full_session(&env, 1))),
        WriteOp::StoreAuthCode(full_code(&env, "code-1")),
        WriteOp::StoreClient(full_client(&env, "poison")),
    ];
    assert!(matches!(
        block_on(writer.apply_batch(poisoned)),
        Err(StoreError::Backend(_))
    ));
    assert!(block_on(store.store_client(full_client(&env, "poison"))).is_err());
    let bulk = store.bulk().expect("bulk");
    let mut bad = full_session(&env, 2);
    bad.session_id = String::new();
    let sessions = vec![Arc::new(full_session(&env, 3)), Arc::new(bad)];
    assert!(block_on(bulk.bulk_store_sessions(sessions)).is_err());

    // Without a key, storing a session fails after nothing was written.
    let keyless = block_on(env.bare().open()).expect("open without a key");
    let refused = block_on(keyless.store_session(Arc::new(full_session(&env, 4))));
    assert_eq!(refused, Err(StoreError::EncryptionKeyRequired));

    let after = poll(&store, Some(before));
    assert_eq!(
        (after.keys.len(), after.watermark, after.gap),
        (0, before, false)
    );
    assert_eq!(log_rows(&env), 0);
    assert_eq!(
        block_on(store.contents()).expect("contents"),
        Contents::default()
    );
}

#[test]
fn the_log_holds_no_token_code_or_secret() {
    let env = Env::new();
    let store = logged(&env);
    block_on(async {
        for n in 1..=3 {
            store.store_session(Arc::new(full_session(&env, n))).await?;
            store.store_session(Arc::new(rotated(&env, n))).await?;
            store
                .store_auth_code(full_code(&env, &format!("code-{n}")))
                .await?;
            store
                .store_client(full_client(&env, &format!("client-{n}")))
                .await?;
        }
        store.delete_session_by_token("access-1b").await?;
        store.delete_session_by_id("session-2").await?;
        store.delete_auth_code("code-1").await?;
        assert!(store.try_delete_auth_code("code-2").await?);
        store.delete_client("client-1").await?;
        store.close().await
    })
    .expect("writes");
    let mut secrets: Vec<String> = (1..=3)
        .flat_map(|n| {
            let mut s = secrets_of(n, &format!("client-{n}"));
            s.extend([format!("access-{n}b"), format!("refresh-{n}b")]);
            s.push(format!("code-{n}"));
            s
        })
        .collect();
    secrets.push("verifier-secret".into());
    let raw = env.raw();
    let mut stmt = raw
        .prepare("SELECT kind, key, typeof(key) FROM tokenstore_invalidations")
        .expect("select");
    let rows: Vec<(i64, Vec<u8>, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("decode");
    assert!(rows.len() > 30, "{} rows", rows.len());
    for (kind, key, class) in &rows {
        assert_eq!(class, "blob", "kind {kind}");
        for secret in &secrets {
            let found = key.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "a kind-{kind} row holds a secret");
        }
    }
}

/// Every key of every record that differs between `before` and `after`.
fn changed(before: &Contents, after: &Contents) -> HashSet<CacheKey> {
    let mut keys = HashSet::new();
    for (a, b) in [(before, after), (after, before)] {
        for s in a.sessions.iter().filter(|s| !b.sessions.contains(s)) {
            keys.extend(session_keys(s));
        }
        for c in a.auth_codes.iter().filter(|c| !b.auth_codes.contains(c)) {
            keys.insert(code_key(&c.code));
        }
        for c in a.clients.iter().filter(|c| !b.clients.contains(c)) {
            keys.insert(client_key(&c.client_id));
        }
    }
    keys
}

/// Every key the records in `contents` and the records `writes` store have.
fn reachable(contents: &[&Contents], writes: &[WriteOp]) -> HashSet<CacheKey> {
    let mut keys = HashSet::new();
    for c in contents {
        keys.extend(c.sessions.iter().flat_map(|s| session_keys(s)));
        keys.extend(c.auth_codes.iter().map(|r| code_key(&r.code)));
        keys.extend(c.clients.iter().map(|r| client_key(&r.client_id)));
    }
    for op in writes {
        match op {
            WriteOp::StoreSession(s) => keys.extend(session_keys(s)),
            WriteOp::StoreAuthCode(r) => drop(keys.insert(code_key(&r.code))),
            WriteOp::StoreClient(r) => drop(keys.insert(client_key(&r.client_id))),
            _ => {}
        }
    }
    keys
}

#[test]
fn generated_writes_log_every_key_they_change_and_no_other() {
    for seed in 1..=4u64 {
        let env = Env::new();
        let (batched, single) = (logged(&env), Env::new());
        let looped = logged(&single);
        // Short batches over Gen's small key pools, so a missing key is rarely
        // covered by another write's.
        for round in 0..40u64 {
            let writes = Gen::new(seed * 1_000 + round, env.now()).writes(4);
            for (store, by_batch) in [(&batched, true), (&looped, false)] {
                let at = format!("seed {seed}, round {round}, batch {by_batch}");
                let mut cursor = Cursor::new(store);
                let before = block_on(store.contents()).expect("contents");
                block_on(async {
                    if by_batch {
                        let writer = store.batch_writer().expect("batches");
                        return writer.apply_batch(writes.clone()).await;
                    }
                    for op in &writes {
                        apply(store, Step::Single(op.clone())).await?;
                    }
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{at}: {e}"));
                let after = block_on(store.contents()).expect("contents");
                let logged = cursor.take(store);
                let missing = changed(&before, &after).difference(&logged).count();
                assert_eq!(missing, 0, "{at}: changed keys not logged");
                let extra = logged
                    .difference(&reachable(&[&before, &after], &writes))
                    .count();
                assert_eq!(extra, 0, "{at}: logged keys of no record");
            }
            env.clock.advance(Duration::from_secs(40));
            single.clock.advance(Duration::from_secs(40));
        }
    }
}
