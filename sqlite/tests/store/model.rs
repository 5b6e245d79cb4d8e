//! Random operation sequences on `SqliteTokenStore` and on the reference model
//! `MemoryTokenStore`, compared result by result and whole store by whole store.

use crate::common::Env;
use futures_lite::future::block_on;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, Clock, ManualClock, MemoryTokenStore, Secret, StateRecord,
    StoreError, StoredSession, Timestamp, TokenEndpointAuthMethod, TokenHash, TokenStore, UserInfo,
};
use tokenstore_sqlite::SqliteTokenStore;

/// A small deterministic generator (SplitMix64), so a failing seed replays.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn key(&mut self, prefix: &str, pool: u64) -> String {
        format!("{prefix}{}", self.below(pool))
    }

    /// A time around `now`: up to 10 minutes before or 20 minutes after, to the
    /// microsecond.
    pub(crate) fn time(&mut self, now: Timestamp) -> Timestamp {
        let offset = self.below(1_800_000_000) as i64 - 600_000_000;
        Timestamp::from_unix_micros(now.as_unix_micros() + offset)
    }

    pub(crate) fn maybe_time(&mut self, now: Timestamp) -> Option<Timestamp> {
        (self.below(4) > 0).then(|| self.time(now))
    }
}

struct Pair {
    clock: ManualClock,
    sqlite: SqliteTokenStore,
    memory: MemoryTokenStore,
}

fn session(rng: &mut Rng, now: Timestamp) -> Arc<StoredSession> {
    let user = UserInfo::new("p", rng.key("user", 3), "name");
    let mut s = StoredSession::new(rng.key("sid", 5), user, rng.key("acc", 8), now, now);
    s.access_expires_at = Some(rng.time(now));
    s.refresh_token = (rng.below(3) > 0).then(|| Secret::new(rng.key("ref", 6)));
    s.refresh_expires_at = rng.maybe_time(now);
    s.provider_access_token = (rng.below(2) == 0).then(|| Secret::new("pat"));
    s.issued_at = rng.maybe_time(now);
    Arc::new(s)
}

fn client(rng: &mut Rng, now: Timestamp) -> Arc<ClientRecord> {
    let mut c = ClientRecord::new(rng.key("client", 4), now);
    c.client_secret = (rng.below(2) == 0).then(|| Secret::new("shh"));
    c.token_endpoint_auth_method = (rng.below(2) == 0).then_some(TokenEndpointAuthMethod::None);
    c.redirect_uris = vec![rng.key("https://x/", 3)];
    Arc::new(c)
}

/// One random operation on both stores; panics when they disagree.
fn step(pair: &Pair, rng: &mut Rng) -> Result<(), StoreError> {
    let (s, m, now) = (&pair.sqlite, &pair.memory, pair.clock.now());
    block_on(async {
        match rng.below(20) {
            0 => {
                let r = Arc::new(StateRecord::new(rng.key("st", 4), rng.time(now), now));
                assert_eq!(s.store_state(r.clone()).await, m.store_state(r).await);
            }
            1 => {
                let k = rng.key("st", 4);
                assert_eq!(s.consume_state(&k).await?, m.consume_state(&k).await?);
            }
            2 => {
                let mut r = AuthCodeRecord::new(rng.key("code", 4), "sid", rng.time(now), now);
                r.scopes = vec![rng.key("scope", 3)];
                let r = Arc::new(r);
                assert_eq!(
                    s.store_auth_code(r.clone()).await,
                    m.store_auth_code(r).await
                );
            }
            3 => {
                let k = rng.key("code", 4);
                assert_eq!(s.load_auth_code(&k).await?, m.load_auth_code(&k).await?);
            }
            4 => {
                let k = rng.key("code", 4);
                assert_eq!(
                    s.try_delete_auth_code(&k).await?,
                    m.try_delete_auth_code(&k).await?
                );
            }
            5 => {
                let k = rng.key("code", 4);
                assert_eq!(s.delete_auth_code(&k).await, m.delete_auth_code(&k).await);
            }
            6 | 7 => {
                let r = session(rng, now);
                assert_eq!(s.store_session(r.clone()).await, m.store_session(r).await);
            }
            8 => {
                let k = rng.key("acc", 8);
                let got = s.load_session_by_token(&k).await?;
                assert_eq!(got, m.load_session_by_token(&k).await?);
            }
            9 => {
                let k = rng.key("sid", 5);
                assert_eq!(
                    s.load_session_by_id(&k).await?,
                    m.load_session_by_id(&k).await?
                );
            }
            10 => {
                let k = rng.key("ref", 6);
                let got = s.load_session_by_refresh_token(&k).await?;
                assert_eq!(got, m.load_session_by_refresh_token(&k).await?);
            }
            11 => {
                let k = rng.key("acc", 8);
                assert_eq!(
                    s.delete_session_by_token(&k).await,
                    m.delete_session_by_token(&k).await
                );
            }
            12 => {
                let k = rng.key("sid", 5);
                assert_eq!(
                    s.delete_session_by_id(&k).await,
                    m.delete_session_by_id(&k).await
                );
            }
            13 => {
                let r = client(rng, now);
                assert_eq!(s.store_client(r.clone()).await, m.store_client(r).await);
            }
            14 => {
                let k = rng.key("client", 4);
                assert_eq!(s.load_client(&k).await?, m.load_client(&k).await?);
                assert_eq!(s.list_clients().await?, m.list_clients().await?);
                let k = rng.key("client", 4);
                assert_eq!(s.delete_client(&k).await, m.delete_client(&k).await);
            }
            15 => assert_eq!(s.cleanup_expired().await?, m.cleanup_expired().await?),
            16 => {
                let batch: Vec<_> = (0..rng.below(5)).map(|_| session(rng, now)).collect();
                let (sb, mb) = (s.bulk().expect("bulk"), m.bulk().expect("bulk"));
                let got = sb.bulk_store_sessions(batch.clone()).await;
                assert_eq!(got, mb.bulk_store_sessions(batch).await);
            }
            17 => {
                let hashes: Vec<_> = (0..rng.below(4))
                    .map(|_| TokenHash::of(&rng.key("acc", 8)))
                    .collect();
                let (sb, mb) = (s.bulk().expect("bulk"), m.bulk().expect("bulk"));
                let got = sb.bulk_delete_sessions_by_hash(hashes.clone()).await?;
                assert_eq!(got, mb.bulk_delete_sessions_by_hash(hashes).await?);
            }
            _ => pair
                .clock
                .advance(Duration::from_micros(rng.below(400_000_000))),
        }
        Ok(())
    })
}

fn run(seed: u64, steps: usize, readers: usize) {
    let env = Env::new();
    let sqlite = block_on(env.builder().readers(readers).open()).expect("open");
    assert_eq!(sqlite.readers(), readers);
    let pair = Pair {
        clock: env.clock.clone(),
        sqlite,
        memory: MemoryTokenStore::new(env.clock.clone()),
    };
    let mut rng = Rng(seed);
    for i in 0..steps {
        step(&pair, &mut rng).unwrap_or_else(|e| panic!("seed {seed}, step {i}: {e}"));
        if i % 50 == 49 {
            let contents = block_on(pair.sqlite.contents()).expect("contents");
            assert_eq!(contents, pair.memory.contents(), "seed {seed}, step {i}");
        }
    }
}

#[test]
fn random_sequences_match_the_reference_model() {
    for seed in 1..=6 {
        run(seed, 400, 2);
    }
}

/// The same with every read on the writer's connection.
#[test]
fn random_sequences_match_the_reference_model_without_readers() {
    for seed in 7..=9 {
        run(seed, 400, 0);
    }
}
