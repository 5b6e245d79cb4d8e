//! Counters add up, and no `Debug` of the cache shows a token, a hash, a
//! secret, a session id or a user id.

use super::{CacheFixture, count_parked, wait_until};
use crate::sample::{MINUTE, SECOND, client, code, full_client, full_code, full_session, session};
use crate::{Factory, Runtime, T0};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokenstore::cache::{CacheConfig, CacheKey, CacheMachine, FillOutcome, KindMetrics, Lookup};
use tokenstore_core::SessionKey;
use tokenstore_core::{Secret, StateRecord, TokenHash, TokenStore};

/// A small, seeded pseudo-random generator (SplitMix64).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// What the mixed workload issued, per kind.
#[derive(Debug, Default)]
struct Issued {
    session_loads: u64,
    code_loads: u64,
    client_loads: u64,
    session_writes: u64,
    code_writes: u64,
    client_writes: u64,
    state_writes: u64,
}

/// Runs `steps` seeded operations through the cache (loads of every kind,
/// writes of every kind, time moving by up to 90 s), counting what it issued.
async fn mixed_workload<F: Factory>(fx: &CacheFixture<F>, seed: u64, steps: usize) -> Issued {
    let mut rng = Rng(seed);
    let mut issued = Issued::default();
    for _ in 0..steps {
        let (a, b, c) = (rng.below(6), rng.below(6), rng.below(6));
        let now = fx.now();
        match rng.below(16) {
            0..=2 => {
                issued.session_loads += 1;
                let _ = fx.by_token(&format!("at-{a}")).await;
            }
            3 | 4 => {
                issued.session_loads += 1;
                let _ = fx.by_id(&format!("sess-{a}")).await;
            }
            5 => {
                issued.session_loads += 1;
                let _ = fx.by_refresh(&format!("rt-{a}")).await;
            }
            6 | 7 => {
                issued.session_writes += 1;
                let ttl = MINUTE * (1 + rng.below(20) as u32);
                let (id, at, rt) = (format!("sess-{a}"), format!("at-{b}"), format!("rt-{c}"));
                let refresh = Some(now + 2 * ttl);
                fx.put(&session(&id, &at, Some(&rt), now + ttl, refresh, now))
                    .await;
            }
            8 => {
                issued.session_writes += 1;
                let deleted = if a % 2 == 0 {
                    fx.store.delete_session_by_token(&format!("at-{b}")).await
                } else {
                    fx.store.delete_session_by_id(&format!("sess-{b}")).await
                };
                deleted.unwrap();
            }
            9 | 10 => {
                issued.code_loads += 1;
                let _ = fx.code(&format!("code-{a}")).await;
            }
            11 => {
                issued.code_writes += 1;
                let key = format!("code-{a}");
                match b % 3 {
                    0 => {
                        let ttl = MINUTE * (1 + rng.below(10) as u32);
                        let record = code(&key, "sess-0", now + ttl, now);
                        fx.store.store_auth_code(Arc::new(record)).await.unwrap();
                    }
                    1 => fx.store.delete_auth_code(&key).await.unwrap(),
                    _ => {
                        let _ = fx.store.try_delete_auth_code(&key).await.unwrap();
                    }
                }
            }
            12 => {
                issued.client_loads += 1;
                let _ = fx.client(&format!("client-{a}")).await;
            }
            13 => {
                issued.client_writes += 1;
                let id = format!("client-{a}");
                let written = if b % 2 == 0 {
                    fx.store.store_client(Arc::new(client(&id, now))).await
                } else {
                    fx.store.delete_client(&id).await
                };
                written.unwrap();
            }
            14 => {
                issued.state_writes += 2;
                let record = StateRecord::new(format!("state-{a}"), now + MINUTE, now);
                fx.store.store_state(Arc::new(record)).await.unwrap();
                let _ = fx.store.consume_state(&format!("state-{b}")).await.unwrap();
            }
            _ => fx.advance(SECOND * rng.below(91) as u32),
        }
    }
    issued
}

/// `lookups == hits + misses + negative_hits + waits`.
#[track_caller]
fn assert_adds_up(what: &str, m: &KindMetrics) {
    assert_eq!(
        m.lookups,
        m.hits + m.misses + m.negative_hits + m.waits,
        "{what}: {m:?}"
    );
}

/// After a seeded mixed workload (and a burst of concurrent readers, so that
/// waits happen too): per kind, lookups add up, equal the loads issued,
/// misses equal the delegate's load calls, invalidations equal the writes.
pub async fn metrics_add_up_after_mixed_workload<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let issued = mixed_workload(&fx, 0x00c0_ffee, 1_500).await;
    concurrent_burst::<F, R>(&fx).await;
    let (m, calls) = (fx.metrics(), fx.calls());
    for (what, kind) in [
        ("sessions", &m.sessions),
        ("codes", &m.auth_codes),
        ("clients", &m.clients),
        ("states", &m.states),
    ] {
        assert_adds_up(what, kind);
    }
    // Every load is answered by exactly one lookup that did not wait.
    let burst = BURST as u64;
    assert_eq!(
        m.sessions.lookups - m.sessions.waits,
        issued.session_loads + burst
    );
    assert!(m.sessions.waits >= burst - 1);
    assert_eq!(
        (m.auth_codes.lookups, m.auth_codes.waits),
        (issued.code_loads, 0)
    );
    assert_eq!(
        (m.clients.lookups, m.clients.waits),
        (issued.client_loads, 0)
    );
    assert_eq!(m.states.lookups, 0);
    assert_eq!(m.sessions.misses, calls.session_loads());
    assert_eq!(m.auth_codes.misses, calls.load_auth_code);
    assert_eq!(m.clients.misses, calls.load_client);
    assert_eq!(m.sessions.invalidations, issued.session_writes + 1);
    assert_eq!(m.auth_codes.invalidations, issued.code_writes);
    assert_eq!(m.clients.invalidations, issued.client_writes);
    assert_eq!(m.states.invalidations, issued.state_writes);
    for (what, kind) in [("sessions", &m.sessions), ("codes", &m.auth_codes)] {
        assert!(kind.hits > 0 && kind.negative_hits > 0, "{what}: {kind:?}");
        assert!(kind.expirations > 0, "{what}: {kind:?}");
        assert!(kind.fills + kind.negative_fills <= kind.misses, "{what}");
    }
}

/// Readers in [`concurrent_burst`].
const BURST: usize = 10;

/// Stores a session and has [`BURST`] readers miss on it at once, the first
/// held at the gate until the others are parked waiting for it.
async fn concurrent_burst<F: Factory, R: Runtime>(fx: &CacheFixture<F>) {
    fx.put(&full_session(
        "sess-burst",
        "at-burst",
        "rt-burst",
        fx.now(),
    ))
    .await;
    let waits_before = fx.metrics().sessions.waits;
    fx.gate().arm();
    let parked = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..BURST)
        .map(|_| {
            let store = fx.store.clone();
            let read = async move { store.load_session_by_token("at-burst").await.unwrap() };
            R::spawn(count_parked(read, parked.clone()))
        })
        .collect();
    fx.gate().entered().await;
    wait_until("every reader is parked", || {
        parked.load(Ordering::SeqCst) == BURST
    })
    .await;
    fx.gate().open();
    for task in tasks {
        assert!(task.await.is_some());
    }
    assert!(fx.metrics().sessions.waits >= waits_before + BURST as u64 - 1);
}

const SESSION_ID: &str = "SID-q7w3e9";
const ACCESS: &str = "AT-SECRET-m4n8b2";
const REFRESH: &str = "RT-SECRET-v6c1x5";
const PROVIDER_ACCESS: &str = "PAT-SECRET-z9l2k7";
const USER_ID: &str = "UID-j3h8g4";
const USERNAME: &str = "UNAME-f5d1s6";
const EMAIL: &str = "EMAIL-p2o9i3@example.org";
const CODE: &str = "CODE-SECRET-u8y4t1";
const CLIENT_ID: &str = "CLIENT-ID-r6e2w0";
const CLIENT_SECRET: &str = "CSECRET-a1s7d3";
const UNKNOWN: &str = "UNKNOWN-TOKEN-k5j9h2";

/// Every string no `Debug` may show: tokens, their hashes, secrets, the
/// session id and the user's identifiers. (Client ids are not secret: records
/// show them; a [`CacheKey`] shows no part of any key.)
fn needles<F: Factory>() -> Vec<String> {
    let mut all: Vec<String> = [
        SESSION_ID,
        ACCESS,
        REFRESH,
        PROVIDER_ACCESS,
        USER_ID,
        USERNAME,
        EMAIL,
        CODE,
        CLIENT_SECRET,
        UNKNOWN,
    ]
    .map(String::from)
    .into();
    for token in [ACCESS, REFRESH, UNKNOWN] {
        all.push(TokenHash::of(token).to_hex());
    }
    all.extend(F::config_secrets());
    all
}

#[track_caller]
fn assert_debug_clean<F: Factory>(what: &str, value: &dyn fmt::Debug) {
    for text in [format!("{value:?}"), format!("{value:#?}")] {
        for needle in needles::<F>() {
            assert!(!text.contains(&needle), "{what} shows {needle}: {text}");
        }
    }
}

/// The secret-bearing session of [`debug_shows_no_identifiers`].
fn secret_session() -> tokenstore_core::StoredSession {
    let mut s = full_session(SESSION_ID, ACCESS, REFRESH, T0);
    s.provider_access_token = Some(Secret::new(PROVIDER_ACCESS));
    s.user_info.user_id = USER_ID.to_owned();
    s.user_info.username = USERNAME.to_owned();
    s.user_info.email = Some(EMAIL.to_owned());
    s
}

/// Every key the cache can hold, built from the needles.
fn every_key() -> Vec<CacheKey> {
    vec![
        CacheKey::Session(SessionKey::Access(TokenHash::of(ACCESS))),
        CacheKey::Session(SessionKey::Id(SESSION_ID.to_owned())),
        CacheKey::Session(SessionKey::Refresh(TokenHash::of(REFRESH))),
        CacheKey::AuthCode(TokenHash::of(CODE)),
        CacheKey::Client(CLIENT_ID.to_owned()),
    ]
}

/// With entries (positive and negative) of every kind cached, the `Debug`
/// of the store, its metrics, a machine holding the same entries, its
/// lookups and tickets, and every `CacheKey` show no identifier (a key shows
/// only its variant).
pub async fn debug_shows_no_identifiers<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::new().await;
    let s = secret_session();
    fx.put(&s).await;
    let mut c = full_code(CODE, SESSION_ID, T0);
    c.client_id = Some(CLIENT_ID.to_owned());
    fx.store.store_auth_code(Arc::new(c.clone())).await.unwrap();
    let mut client = full_client(CLIENT_ID, T0);
    client.client_secret = Some(Secret::new(CLIENT_SECRET));
    fx.store
        .store_client(Arc::new(client.clone()))
        .await
        .unwrap();
    assert!(fx.by_token(ACCESS).await.is_some());
    assert!(fx.code(CODE).await.is_some());
    assert!(fx.client(CLIENT_ID).await.is_some());
    assert!(fx.by_token(UNKNOWN).await.is_none());
    let m = fx.metrics();
    assert_eq!((m.session_entries, m.auth_code_entries), (1, 1));
    assert_eq!((m.client_entries, m.negative_entries), (1, 1));
    assert_debug_clean::<F>("the store", &*fx.store);
    assert_debug_clean::<F>("the metrics", &m);
    for key in every_key() {
        assert_debug_clean::<F>("a cache key", &key);
        let shown = format!("{key:?}");
        assert!(
            shown.starts_with("CacheKey::") && shown.ends_with("(..)"),
            "{shown}"
        );
    }

    let mut machine = CacheMachine::new(CacheConfig::default());
    let now = T0 + Duration::from_secs(1);
    for key in every_key() {
        match machine.lookup(now, &key) {
            Lookup::Miss(ticket) => {
                assert_debug_clean::<F>("a fill ticket", &ticket);
                let outcome = match &key {
                    CacheKey::AuthCode(_) => {
                        machine.fill_auth_code(now, ticket, Some(Arc::new(c.clone())))
                    }
                    CacheKey::Client(_) => {
                        machine.fill_client(now, ticket, Some(Arc::new(client.clone())))
                    }
                    _ => machine.fill_session(now, ticket, Some(Arc::new(s.clone()))),
                };
                assert_eq!(outcome, FillOutcome::Cached);
            }
            Lookup::Hit(_) => {} // A session key, filled through another key.
            other => panic!("expected a miss or a hit, got {other:?}"),
        }
        let hit = machine.lookup(now, &key);
        assert!(matches!(hit, Lookup::Hit(_)));
        assert_debug_clean::<F>("a hit", &hit);
    }
    let unknown = CacheKey::Session(SessionKey::Access(TokenHash::of(UNKNOWN)));
    let Lookup::Miss(ticket) = machine.lookup(now, &unknown) else {
        panic!("unknown keys miss");
    };
    machine.fill_session(now, ticket, None);
    assert_debug_clean::<F>("the machine", &machine);
    assert_debug_clean::<F>("the machine's metrics", &machine.metrics());
    assert_eq!(machine.metrics().negative_entries, 1);
}
