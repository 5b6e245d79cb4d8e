//! The set-based bulk and batch paths of `PostgresTokenStore` leave exactly
//! what the loop of single calls leaves on the reference model.
//!
//! Seeded random runs over small key pools (so writes overlap on every kind
//! of key, within a batch and with the rows already there): the same initial
//! writes go to both stores one by one, then one batch (or bulk call) goes to
//! PostgreSQL and its single-call loop to `MemoryTokenStore`; the whole
//! contents must be equal.

use std::sync::Arc;
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{Clock, ManualClock, MemoryTokenStore, Secret, TokenHash, TokenStore};
use tokenstore_tests::compare::assert_contents_eq;
use tokenstore_tests::sample::{HOUR, full_client, full_code, full_session, full_state, session};
use tokenstore_tests::{PostgresFactory, Runtime, T0, Tokio};

/// Runs per test, each on a fresh database.
const SEEDS: u64 = 12;
/// Writes before the batch, and in it.
const WRITES: usize = 40;

/// A small deterministic generator (xorshift64*), enough to pick writes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// A random write over small key pools.
fn write(rng: &mut Rng, clock: &ManualClock) -> WriteOp {
    let now = clock.now();
    let k = |rng: &mut Rng, n| rng.below(n);
    match rng.below(9) {
        0 => WriteOp::StoreState(Arc::new(full_state(&format!("st-{}", k(rng, 4)), now))),
        1 => WriteOp::RemoveState(format!("st-{}", k(rng, 4))),
        2 => WriteOp::StoreAuthCode(Arc::new(full_code(&format!("c-{}", k(rng, 4)), "s", now))),
        3 => WriteOp::DeleteAuthCode(format!("c-{}", k(rng, 4))),
        4 | 5 => WriteOp::StoreSession(Arc::new(random_session(rng, clock))),
        6 => WriteOp::DeleteSessionByToken(Secret::new(format!("a-{}", k(rng, 6)))),
        7 => WriteOp::DeleteSessionById(format!("s-{}", k(rng, 5))),
        _ => match rng.below(2) {
            0 => WriteOp::StoreClient(Arc::new(full_client(&format!("cl-{}", k(rng, 3)), now))),
            _ => WriteOp::DeleteClient(format!("cl-{}", k(rng, 3))),
        },
    }
}

fn random_session(rng: &mut Rng, clock: &ManualClock) -> tokenstore_core::StoredSession {
    let now = clock.now();
    let (id, access) = (format!("s-{}", rng.below(5)), format!("a-{}", rng.below(6)));
    match rng.below(3) {
        0 => full_session(&id, &access, &format!("r-{}", rng.below(4)), now),
        1 => session(&id, &access, None, now + HOUR, None, now),
        _ => {
            let refresh = format!("r-{}", rng.below(4));
            session(&id, &access, Some(&refresh), now + HOUR, None, now)
        }
    }
}

/// Applies one write with the single call it stands for.
async fn apply_single(store: &impl TokenStore, op: WriteOp) {
    match op {
        WriteOp::StoreState(r) => store.store_state(r).await.unwrap(),
        WriteOp::RemoveState(k) => drop(store.consume_state(&k).await.unwrap()),
        WriteOp::StoreAuthCode(r) => store.store_auth_code(r).await.unwrap(),
        WriteOp::DeleteAuthCode(k) => store.delete_auth_code(&k).await.unwrap(),
        WriteOp::StoreSession(s) => store.store_session(s).await.unwrap(),
        WriteOp::DeleteSessionByToken(t) => {
            store.delete_session_by_token(t.expose()).await.unwrap()
        }
        WriteOp::DeleteSessionById(id) => store.delete_session_by_id(&id).await.unwrap(),
        WriteOp::StoreClient(r) => store.store_client(r).await.unwrap(),
        WriteOp::DeleteClient(k) => store.delete_client(&k).await.unwrap(),
    }
}

fn clone_op(op: &WriteOp) -> WriteOp {
    match op {
        WriteOp::StoreState(r) => WriteOp::StoreState(Arc::clone(r)),
        WriteOp::RemoveState(k) => WriteOp::RemoveState(k.clone()),
        WriteOp::StoreAuthCode(r) => WriteOp::StoreAuthCode(Arc::clone(r)),
        WriteOp::DeleteAuthCode(k) => WriteOp::DeleteAuthCode(k.clone()),
        WriteOp::StoreSession(s) => WriteOp::StoreSession(Arc::clone(s)),
        WriteOp::DeleteSessionByToken(t) => WriteOp::DeleteSessionByToken(Secret::new(t.expose())),
        WriteOp::DeleteSessionById(id) => WriteOp::DeleteSessionById(id.clone()),
        WriteOp::StoreClient(r) => WriteOp::StoreClient(Arc::clone(r)),
        WriteOp::DeleteClient(k) => WriteOp::DeleteClient(k.clone()),
    }
}

/// The same initial writes on a fresh PostgreSQL store and a fresh model.
async fn seeded(
    rng: &mut Rng,
) -> (
    tokenstore_postgres::PostgresTokenStore,
    MemoryTokenStore,
    tokenstore_pgtest::TestDatabase,
    ManualClock,
) {
    let clock = ManualClock::new(T0);
    let db = tokenstore_pgtest::shared().database();
    let pg = PostgresFactory::open(&db, clock.clone()).await;
    let model = MemoryTokenStore::new(clock.clone());
    for _ in 0..WRITES {
        let op = write(rng, &clock);
        apply_single(&model, clone_op(&op)).await;
        apply_single(&pg, op).await;
    }
    (pg, model, db, clock)
}

#[test]
fn apply_batch_matches_the_single_call_loop() {
    Tokio::block_on(async {
        for seed in 1..=SEEDS {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let (pg, model, _db, clock) = seeded(&mut rng).await;
            let batch: Vec<WriteOp> = (0..WRITES).map(|_| write(&mut rng, &clock)).collect();
            for op in &batch {
                apply_single(&model, clone_op(op)).await;
            }
            let writer = pg.batch_writer().expect("the batch capability");
            writer.apply_batch(batch).await.unwrap();
            let actual = pg.contents().await.unwrap();
            eprintln!("seed {seed}: {} sessions", actual.sessions.len());
            assert_contents_eq(&actual, &model.contents());
        }
    });
}

#[test]
fn bulk_calls_match_the_single_call_loop() {
    Tokio::block_on(async {
        for seed in 1..=SEEDS {
            let mut rng = Rng(seed.wrapping_mul(0xbf58_476d_1ce4_e5b9));
            let (pg, model, _db, clock) = seeded(&mut rng).await;
            let sessions: Vec<_> = (0..WRITES)
                .map(|_| Arc::new(random_session(&mut rng, &clock)))
                .collect();
            let bulk = pg.bulk().expect("the bulk capability");
            bulk.bulk_store_sessions(sessions.clone()).await.unwrap();
            for s in sessions {
                model.store_session(s).await.unwrap();
            }
            let hashes: Vec<_> = (0..4)
                .map(|_| TokenHash::of(&format!("a-{}", rng.below(6))))
                .collect();
            let deleted = bulk
                .bulk_delete_sessions_by_hash(hashes.clone())
                .await
                .unwrap();
            let expected = model
                .bulk()
                .unwrap()
                .bulk_delete_sessions_by_hash(hashes)
                .await
                .unwrap();
            assert_eq!(deleted, expected, "seed {seed}");
            assert_contents_eq(&pg.contents().await.unwrap(), &model.contents());
        }
    });
}
