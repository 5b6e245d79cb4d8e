//! Seeded scripts of mixed operations, replayed on the store under test and
//! on a [`MemoryTokenStore`] (the reference model) sharing its clock: every
//! answer and the whole contents must match.
//!
//! The scripts draw from small pools of keys so that replacements through
//! shared session ids, access tokens and refresh tokens, expiries on every
//! path, one-time operations and cleanups all interleave.

use crate::compare::{assert_contents_eq, session_differences};
use crate::sample::{MINUTE, SECOND};
use crate::{Factory, Fixture, Runtime};
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::{
    AuthCodeRecord, CleanupCounts, ClientRecord, Clock, MemoryTokenStore, Secret, StateRecord,
    StoreError, StoredSession, TokenStore, UserInfo,
};

/// A small, seeded pseudo-random generator (SplitMix64): the same seed gives
/// the same script on every platform.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn key(&mut self, prefix: &str, pool: u64) -> String {
        format!("{prefix}-{}", self.below(pool))
    }

    fn minutes(&mut self, max: u64) -> Duration {
        MINUTE * self.below(max + 1) as u32 + SECOND * self.below(60) as u32
    }
}

/// One step of a script.
#[derive(Debug)]
enum Op {
    StoreState(Arc<StateRecord>),
    ConsumeState(String),
    StoreCode(Arc<AuthCodeRecord>),
    LoadCode(String),
    DeleteCode(String),
    TryDeleteCode(String),
    StoreSession(Arc<StoredSession>),
    ByToken(String),
    ById(String),
    ByRefresh(String),
    DeleteByToken(String),
    DeleteById(String),
    StoreClient(Arc<ClientRecord>),
    LoadClient(String),
    ListClients,
    DeleteClient(String),
    Cleanup,
    Advance(Duration),
}

/// What a step answered.
#[derive(Debug, PartialEq)]
enum Answer {
    Done,
    State(Option<Arc<StateRecord>>),
    Code(Option<Arc<AuthCodeRecord>>),
    Removed(bool),
    Session(Option<Arc<StoredSession>>),
    Client(Option<Arc<ClientRecord>>),
    Clients(Vec<Arc<ClientRecord>>),
    Counts(CleanupCounts),
}

fn random_session(rng: &mut Rng, now: tokenstore_core::Timestamp) -> StoredSession {
    let id = rng.key("sess", 5);
    let user = UserInfo::new("github", format!("user-{}", rng.below(1000)), "someone");
    let access_expires = now + rng.minutes(90);
    let mut s = StoredSession::new(id, user, rng.key("at", 7), access_expires, now);
    if rng.below(4) != 0 {
        s.refresh_token = Some(Secret::new(rng.key("rt", 7)));
        s.refresh_expires_at = (rng.below(4) != 0).then(|| now + rng.minutes(240));
    }
    s
}

fn random_op(rng: &mut Rng, now: tokenstore_core::Timestamp) -> Op {
    match rng.below(18) {
        0 => {
            let st = StateRecord::new(rng.key("st", 4), now + rng.minutes(30), now);
            Op::StoreState(Arc::new(st))
        }
        1 => Op::ConsumeState(rng.key("st", 4)),
        2 => {
            let (code, session) = (rng.key("code", 4), rng.key("sess", 5));
            let c = AuthCodeRecord::new(code, session, now + rng.minutes(20), now);
            Op::StoreCode(Arc::new(c))
        }
        3 => Op::LoadCode(rng.key("code", 4)),
        4 => Op::DeleteCode(rng.key("code", 4)),
        5 => Op::TryDeleteCode(rng.key("code", 4)),
        6..=8 => Op::StoreSession(Arc::new(random_session(rng, now))),
        9 => Op::ByToken(rng.key("at", 7)),
        10 => Op::ById(rng.key("sess", 5)),
        11 => Op::ByRefresh(rng.key("rt", 7)),
        12 => Op::DeleteByToken(rng.key("at", 7)),
        13 => Op::DeleteById(rng.key("sess", 5)),
        14 => {
            let mut c = ClientRecord::new(rng.key("client", 3), now);
            c.client_name = Some(format!("name-{}", rng.below(100)));
            Op::StoreClient(Arc::new(c))
        }
        15 => match rng.below(3) {
            0 => Op::LoadClient(rng.key("client", 3)),
            1 => Op::ListClients,
            _ => Op::DeleteClient(rng.key("client", 3)),
        },
        16 => Op::Cleanup,
        _ => Op::Advance(rng.minutes(40)),
    }
}

/// Runs one step on `store`.
async fn apply<S: TokenStore>(store: &S, op: &Op) -> Result<Answer, StoreError> {
    Ok(match op {
        Op::StoreState(r) => store.store_state(r.clone()).await.map(|()| Answer::Done)?,
        Op::ConsumeState(k) => Answer::State(store.consume_state(k).await?),
        Op::StoreCode(r) => store
            .store_auth_code(r.clone())
            .await
            .map(|()| Answer::Done)?,
        Op::LoadCode(k) => Answer::Code(store.load_auth_code(k).await?),
        Op::DeleteCode(k) => store.delete_auth_code(k).await.map(|()| Answer::Done)?,
        Op::TryDeleteCode(k) => Answer::Removed(store.try_delete_auth_code(k).await?),
        Op::StoreSession(r) => store
            .store_session(r.clone())
            .await
            .map(|()| Answer::Done)?,
        Op::ByToken(k) => Answer::Session(store.load_session_by_token(k).await?),
        Op::ById(k) => Answer::Session(store.load_session_by_id(k).await?),
        Op::ByRefresh(k) => Answer::Session(store.load_session_by_refresh_token(k).await?),
        Op::DeleteByToken(k) => store
            .delete_session_by_token(k)
            .await
            .map(|()| Answer::Done)?,
        Op::DeleteById(k) => store.delete_session_by_id(k).await.map(|()| Answer::Done)?,
        Op::StoreClient(r) => store.store_client(r.clone()).await.map(|()| Answer::Done)?,
        Op::LoadClient(k) => Answer::Client(store.load_client(k).await?),
        Op::ListClients => Answer::Clients(store.list_clients().await?),
        Op::DeleteClient(k) => store.delete_client(k).await.map(|()| Answer::Done)?,
        Op::Cleanup => Answer::Counts(store.cleanup_expired().await?),
        Op::Advance(_) => Answer::Done,
    })
}

/// Says how two answers differ without printing secrets.
fn mismatch(got: &Answer, want: &Answer) -> String {
    match (got, want) {
        (Answer::Session(Some(a)), Answer::Session(Some(b))) => {
            format!("sessions differ in {:?}", session_differences(a, b))
        }
        (Answer::Session(a), Answer::Session(b)) => {
            format!(
                "got a session: {}, the model has one: {}",
                a.is_some(),
                b.is_some()
            )
        }
        _ => format!("got {got:?}, the model answered {want:?}"),
    }
}

/// Replays the script of `seed` on the fixture's store and on the model.
async fn replay<F: Factory>(seed: u64, steps: usize) {
    let fx = Fixture::<F>::new().await;
    let model = MemoryTokenStore::new(fx.clock.clone());
    let mut rng = Rng(seed);
    for step in 0..steps {
        let op = random_op(&mut rng, fx.clock.now());
        if let Op::Advance(d) = op {
            fx.advance(d);
            continue;
        }
        let got = apply(fx.store(), &op).await.expect("the store failed");
        let want = apply(&model, &op).await.expect("the model failed");
        if got != want {
            panic!(
                "seed {seed}, step {step}, {op:?}: {}",
                mismatch(&got, &want)
            );
        }
        if step % 50 == 49 {
            assert_contents_eq(&fx.contents().await, &model.contents());
        }
    }
    assert_contents_eq(&fx.contents().await, &model.contents());
}

/// Four seeded scripts of 300 steps each answer exactly as the model does.
pub async fn scripts_match_reference_model<F: Factory, R: Runtime>() {
    for seed in 1..=4 {
        replay::<F>(seed, 300).await;
    }
}

/// A long script (2,000 steps) answers exactly as the model does.
pub async fn long_script_matches_reference_model<F: Factory, R: Runtime>() {
    replay::<F>(0x5eed_cafe, 2000).await;
}
