//! The atomic-batch capability: any mix of writes in one transaction, with the
//! outcome of the same writes applied one by one, and nothing at all on failure.

use crate::common::{Env, full_client, full_code, full_session, full_state, secrets_of};
use crate::writes::{Gen, KINDS, kind};
use futures_lite::future::block_on;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::buffer::{Step, WriteOp, apply};
use tokenstore_core::{
    ClientRecord, Contents, InvalidInput, MAX_KEY_BYTES, MemoryTokenStore, Secret, StateRecord,
    StoreError, TokenStore,
};
use tokenstore_sqlite::SqliteTokenStore;

/// Fails an insert of client `poison`, but only once state `marker` is in the
/// table: proof that the writes before it in the batch did run.
const POISON: &str = "CREATE TRIGGER poison BEFORE INSERT ON oauth_clients \
    WHEN NEW.client_id = 'poison' AND EXISTS (SELECT 1 FROM states WHERE state = 'marker') \
    BEGIN SELECT RAISE(ABORT, 'injected failure'); END";

fn batch(store: &SqliteTokenStore, writes: Vec<WriteOp>) -> Result<(), StoreError> {
    let writer = store.batch_writer().expect("SqliteTokenStore has batches");
    block_on(writer.apply_batch(writes))
}

/// The writes one by one, as a flush without the capability applies them.
fn one_by_one(store: &impl TokenStore, writes: &[WriteOp]) -> Result<(), StoreError> {
    block_on(async {
        for op in writes {
            apply(store, Step::Single(op.clone())).await?;
        }
        Ok(())
    })
}

fn contents(store: &SqliteTokenStore) -> Contents {
    block_on(store.contents()).expect("contents")
}

fn state(env: &Env, key: &str, ttl_secs: u64) -> WriteOp {
    WriteOp::StoreState(Arc::new(StateRecord::new(
        key,
        env.later(ttl_secs),
        env.now(),
    )))
}

#[test]
fn a_mixed_batch_equals_the_writes_one_by_one() {
    for seed in 1..=5u64 {
        let (env, loop_env) = (Env::new(), Env::new());
        let (batched, looped) = (env.open(), loop_env.open());
        let model = MemoryTokenStore::new(env.clock.clone());
        let (mut seen, mut held) = ([0usize; KINDS], [0usize; 4]);
        for round in 0..3 {
            let at = format!("seed {seed}, round {round}");
            let writes = Gen::new(seed * 100 + round, env.now()).writes(300);
            writes.iter().for_each(|w| seen[kind(w)] += 1);
            batch(&batched, writes.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
            one_by_one(&looped, &writes).unwrap_or_else(|e| panic!("{at}: {e}"));
            one_by_one(&model, &writes).unwrap_or_else(|e| panic!("{at}: {e}"));
            let got = contents(&batched);
            assert_eq!(got, contents(&looped), "{at}: batch vs SQLite one by one");
            assert_eq!(got, model.contents(), "{at}: batch vs the memory model");
            let sizes = [
                got.states.len(),
                got.auth_codes.len(),
                got.sessions.len(),
                got.clients.len(),
            ];
            held = std::array::from_fn(|i| held[i].max(sizes[i]));
            for e in [&env, &loop_env] {
                e.clock.advance(Duration::from_secs(400));
            }
        }
        assert!(seen.iter().all(|&n| n >= 10), "seed {seed}: {seen:?}");
        assert!(held.iter().all(|&n| n > 0), "seed {seed}: {held:?}");
    }
}

#[test]
fn login_rotation_and_logout_in_one_batch_leave_no_old_token() {
    let env = Env::new();
    let store = env.open();
    batch(
        &store,
        vec![
            state(&env, "old", 10),
            WriteOp::StoreSession(Arc::new(full_session(&env, 3))),
        ],
    )
    .expect("first batch");
    env.clock.advance(Duration::from_secs(60)); // state "old" has expired
    let login = full_session(&env, 1);
    let mut rotated = full_session(&env, 2);
    rotated.session_id = login.session_id.clone();
    let mut renamed = ClientRecord::clone(&full_client(&env, "c1"));
    renamed.client_name = Some("Renamed".into());
    let writes = vec![
        WriteOp::StoreSession(Arc::new(login)),
        WriteOp::StoreSession(Arc::new(rotated.clone())),
        WriteOp::RemoveState("old".into()),
        WriteOp::StoreAuthCode(full_code(&env, "code-1")),
        WriteOp::DeleteAuthCode("code-1".into()),
        WriteOp::StoreClient(full_client(&env, "c1")),
        WriteOp::StoreClient(Arc::new(renamed.clone())),
        WriteOp::DeleteSessionById("session-3".into()),
    ];
    batch(&store, writes).expect("second batch");
    let rotated = Arc::new(rotated.normalized());
    let expected = Contents {
        sessions: vec![rotated.clone()],
        clients: vec![Arc::new(renamed)],
        ..Contents::default()
    };
    assert_eq!(contents(&store), expected);
    block_on(async {
        assert_eq!(store.load_session_by_token("access-1").await?, None);
        assert_eq!(
            store.load_session_by_refresh_token("refresh-1").await?,
            None
        );
        assert_eq!(store.load_session_by_id("session-1").await?, Some(rotated));
        Ok::<_, StoreError>(())
    })
    .expect("loads");
    let logout = WriteOp::DeleteSessionByToken(Secret::new("access-2"));
    batch(&store, vec![logout]).expect("logout");
    assert!(contents(&store).sessions.is_empty());
}

#[test]
fn a_batch_is_one_commit_whatever_its_size() {
    for n in [1, 100, 10_000] {
        let env = Env::new();
        let store = env.open();
        let model = MemoryTokenStore::new(env.clock.clone());
        let writes = Gen::new(n as u64, env.now()).writes(n);
        assert_eq!(writes.len(), n);
        let before = store.stats();
        batch(&store, writes.clone()).expect("batch");
        let after = store.stats();
        assert_eq!(after.commits - before.commits, 1, "{n} writes");
        assert_eq!(after.rollbacks, before.rollbacks, "{n} writes");
        one_by_one(&model, &writes).expect("model");
        assert_eq!(contents(&store), model.contents(), "{n} writes");
    }
}

#[test]
fn the_same_writes_one_by_one_cost_a_commit_each() {
    let env = Env::new();
    let store = env.open();
    let writes = Gen::new(100, env.now()).writes(100);
    let before = store.stats().commits;
    one_by_one(&store, &writes).expect("one by one");
    assert_eq!(store.stats().commits - before, 100);
}

#[test]
fn an_empty_batch_commits_nothing() {
    let env = Env::new();
    let store = env.open();
    let before = store.stats();
    batch(&store, Vec::new()).expect("empty batch");
    assert_eq!(store.stats(), before);
}

fn invalid_writes(env: &Env) -> Vec<(WriteOp, InvalidInput)> {
    let mut no_expiry = full_session(env, 7);
    no_expiry.access_expires_at = None;
    let long = "x".repeat(MAX_KEY_BYTES + 1);
    let too_long = |field| InvalidInput::KeyTooLong {
        field,
        len: MAX_KEY_BYTES + 1,
        max: MAX_KEY_BYTES,
    };
    let empty = |field| InvalidInput::EmptyKey { field };
    let nameless = Arc::new(ClientRecord::new("", env.now()));
    vec![
        (WriteOp::RemoveState(String::new()), empty("state")),
        (
            WriteOp::StoreSession(Arc::new(no_expiry)),
            InvalidInput::MissingAccessExpiry,
        ),
        (WriteOp::DeleteAuthCode(long.clone()), too_long("code")),
        (
            WriteOp::DeleteSessionByToken(Secret::new("")),
            empty("access_token"),
        ),
        (
            WriteOp::DeleteSessionById(String::new()),
            empty("session_id"),
        ),
        (WriteOp::StoreClient(nameless), empty("client_id")),
        (WriteOp::DeleteClient(long.clone()), too_long("client_id")),
        (state(env, &long, 60), too_long("state")),
    ]
}

#[test]
fn one_invalid_write_fails_the_whole_batch_and_changes_nothing() {
    let env = Env::new();
    let store = env.open();
    batch(&store, Gen::new(1, env.now()).writes(200)).expect("first batch");
    let (before, stats) = (contents(&store), store.stats());
    assert!(!before.sessions.is_empty() && !before.clients.is_empty());
    for (i, (bad, expected)) in invalid_writes(&env).into_iter().enumerate() {
        let mut writes = Gen::new(100 + i as u64, env.now()).writes(100);
        writes.insert(50 + i, bad);
        let result = batch(&store, writes);
        assert_eq!(result, Err(StoreError::InvalidInput(expected)), "case {i}");
        assert_eq!(contents(&store), before, "case {i}");
        assert_eq!(store.stats(), stats, "case {i}: nothing reached SQLite");
    }
}

#[test]
fn a_failure_mid_batch_rolls_back_every_write() {
    let env = Env::new();
    let store = env.open();
    let model = MemoryTokenStore::new(env.clock.clone());
    let first = Gen::new(7, env.now()).writes(300);
    batch(&store, first.clone()).expect("first batch");
    one_by_one(&model, &first).expect("model");
    env.raw().execute_batch(POISON).expect("trigger");
    let (before, stats) = (contents(&store), store.stats());
    let mut writes = Gen::new(8, env.now()).writes(400);
    writes.insert(100, state(&env, "marker", 600));
    writes.insert(300, WriteOp::StoreClient(full_client(&env, "poison")));
    let err = batch(&store, writes.clone()).expect_err("the trigger fails the batch");
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("injected failure")),
        "{err:?}"
    );
    assert_eq!(contents(&store), before);
    assert_eq!(store.stats().commits, stats.commits);
    assert_eq!(store.stats().rollbacks, stats.rollbacks + 1);
    // The store goes on: the batch without the poison applies whole.
    writes.remove(300);
    batch(&store, writes.clone()).expect("batch without the poison");
    one_by_one(&model, &writes).expect("model");
    assert_eq!(contents(&store), model.contents());
}

/// Sessions are encoded before the batch's transaction begins, so a missing
/// key refuses the whole batch before anything is written: no commit, no
/// rollback, nothing changed.
#[test]
fn a_missing_encryption_key_mid_batch_refuses_every_write() {
    let env = Env::new();
    let store = block_on(env.bare().open()).expect("open without a key");
    let public = Arc::new(ClientRecord::new("public", env.now()));
    let first = vec![
        WriteOp::StoreState(full_state(&env, "kept")),
        WriteOp::StoreAuthCode(full_code(&env, "code-0")),
        WriteOp::StoreClient(public),
    ];
    batch(&store, first).expect("no token column written");
    let (before, stats) = (contents(&store), store.stats());
    assert_eq!(
        (before.states.len(), before.auth_codes.len()),
        (1, 1),
        "{before:?}"
    );
    let writes = vec![
        WriteOp::RemoveState("kept".into()),
        WriteOp::DeleteAuthCode("code-0".into()),
        WriteOp::DeleteClient("public".into()),
        state(&env, "new", 600),
        WriteOp::StoreSession(Arc::new(full_session(&env, 1))),
        state(&env, "after", 600),
    ];
    assert_eq!(
        batch(&store, writes),
        Err(StoreError::EncryptionKeyRequired)
    );
    assert_eq!(contents(&store), before);
    assert_eq!(store.stats(), stats, "no transaction was opened");
}

#[test]
fn after_close_a_batch_is_refused_with_closed() {
    let env = Env::new();
    let store = env.open();
    batch(&store, Gen::new(3, env.now()).writes(50)).expect("batch");
    let before = contents(&store);
    block_on(store.close()).expect("close");
    let writes = Gen::new(4, env.now()).writes(50);
    assert_eq!(batch(&store, writes), Err(StoreError::Closed));
    assert_eq!(batch(&store, Vec::new()), Err(StoreError::Closed));
    assert_eq!(contents(&env.open()), before);
}

#[test]
fn secrets_stay_out_of_errors_and_debug() {
    let env = Env::new();
    let store = env.open();
    let refuse = "CREATE TRIGGER refuse BEFORE INSERT ON sessions \
        BEGIN SELECT RAISE(ABORT, 'refused'); END";
    env.raw().execute_batch(refuse).expect("trigger");
    let failing = vec![
        WriteOp::StoreClient(full_client(&env, "c9")),
        WriteOp::DeleteSessionByToken(Secret::new("access-9")),
        WriteOp::StoreSession(Arc::new(full_session(&env, 9))),
    ];
    let long_token = format!("refresh-9{}", "z".repeat(MAX_KEY_BYTES));
    let invalid = vec![WriteOp::DeleteSessionByToken(Secret::new(long_token))];
    let keyless = block_on(Env::new().bare().open()).expect("open without a key");
    let keyless_writes = vec![WriteOp::StoreSession(Arc::new(full_session(&env, 9)))];
    let errors = [
        batch(&store, failing.clone()).expect_err("trigger"),
        batch(&store, invalid.clone()).expect_err("too long"),
        batch(&keyless, keyless_writes).expect_err("no key"),
    ];
    assert!(matches!(&errors[0], StoreError::Backend(m) if m.contains("refused")));
    let mut texts: Vec<String> = errors
        .iter()
        .flat_map(|e| [format!("{e}"), format!("{e:?}")])
        .collect();
    texts.extend([
        format!("{store:?}"),
        format!("{failing:?}"),
        format!("{invalid:?}"),
    ]);
    for text in &texts {
        for secret in secrets_of(9, "c9") {
            assert!(!text.contains(&secret), "{secret} leaked into {text}");
        }
    }
}

#[test]
fn remove_state_takes_a_row_consume_state_would_refuse_as_corrupt() {
    let env = Env::new();
    let store = env.open();
    batch(
        &store,
        vec![state(&env, "bad", 600), state(&env, "good", 600)],
    )
    .expect("batch");
    let tamper = "UPDATE states SET provider_scopes_requested = 'not json' WHERE state = 'bad'";
    env.raw().execute_batch(tamper).expect("tamper");
    let corrupt = StoreError::Corrupt {
        table: "states",
        column: "provider_scopes_requested",
    };
    assert_eq!(block_on(store.consume_state("bad")), Err(corrupt));
    batch(&store, vec![WriteOp::RemoveState("bad".into())]).expect("remove");
    let states = contents(&store).states;
    let keys: Vec<_> = states.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(keys, ["good"]);
}

/// Prepared ahead ([`BatchWriteStore::prepare`]: every write, half of them,
/// or writes that never reach a batch), a batch leaves exactly what the same
/// batch unprepared leaves, and invalid writes are still refused by the batch.
#[test]
fn prepared_batches_equal_unprepared_ones() {
    for seed in 1..=3u64 {
        let (env, plain_env) = (Env::new(), Env::new());
        let (prepared, plain) = (env.open(), plain_env.open());
        let writer = prepared.batch_writer().expect("batches");
        for round in 0..3 {
            let at = format!("seed {seed}, round {round}");
            let writes = Gen::new(seed * 100 + round, env.now()).writes(200);
            let part = match round {
                0 => &writes[..],
                1 => &writes[..writes.len() / 2],
                _ => &[],
            };
            writer.prepare(part);
            // Prepared but never applied: forgotten, harmless.
            writer.prepare(&Gen::new(seed * 1_000 + round, env.now()).writes(20));
            batch(&prepared, writes.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
            batch(&plain, writes).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(contents(&prepared), contents(&plain), "{at}");
            for e in [&env, &plain_env] {
                e.clock.advance(Duration::from_secs(400));
            }
        }
    }
    // A session without an access expiry cannot be prepared and fails its batch.
    let env = Env::new();
    let store = env.open();
    let mut bad = full_session(&env, 1);
    bad.access_expires_at = None;
    let bad = WriteOp::StoreSession(Arc::new(bad));
    let writer = store.batch_writer().expect("batches");
    writer.prepare(std::slice::from_ref(&bad));
    let err = batch(&store, vec![bad]).expect_err("refused");
    assert!(
        matches!(
            err,
            StoreError::InvalidInput(InvalidInput::MissingAccessExpiry)
        ),
        "{err:?}"
    );
    assert!(contents(&store).sessions.is_empty());
    // Without a key, preparing seals nothing and the batch is refused as before.
    let keyless = block_on(env.bare().open()).expect("open");
    let session = WriteOp::StoreSession(Arc::new(full_session(&env, 2)));
    let writer = keyless.batch_writer().expect("batches");
    writer.prepare(std::slice::from_ref(&session));
    let err = batch(&keyless, vec![session]).expect_err("no key");
    assert!(matches!(err, StoreError::EncryptionKeyRequired), "{err:?}");
}
