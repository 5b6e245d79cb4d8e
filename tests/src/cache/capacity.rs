//! Bounds: each kind keeps at most its capacity of entries, and a flood of
//! unknown keys keeps at most `negative_capacity` negative entries; what goes
//! over is evicted and counted.

use super::{CacheFixture, config};
use crate::sample::{HOUR, client, code, live_session};
use crate::{Factory, Runtime, T0};
use std::sync::Arc;
use tokenstore::cache::CacheConfig;
use tokenstore_core::TokenStore;

/// Session capacity in [`session_capacity_bounds_entries`].
pub const SESSION_CAPACITY: usize = 16;
/// Code and client capacity in [`code_and_client_capacity_bound_entries`].
pub const SMALL_CAPACITY: usize = 8;
/// Negative capacity in [`negative_capacity_bounds_flood`].
pub const NEGATIVE_CAPACITY: usize = 100;
/// Unknown keys looked up in [`negative_capacity_bounds_flood`].
pub const FLOOD: usize = 2_000;

/// 10 × `session_capacity` distinct sessions read through the cache: the
/// entry count climbs to the capacity and stays there, and every fill past it
/// evicts one entry.
pub async fn session_capacity_bounds_entries<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::with_config(CacheConfig {
        session_capacity: SESSION_CAPACITY,
        ..config()
    })
    .await;
    let n = 10 * SESSION_CAPACITY;
    for i in 0..n {
        let s = live_session(&format!("sess-{i}"), &format!("at-{i}"), None, T0);
        fx.backend.store_session(Arc::new(s)).await.unwrap();
    }
    for i in 0..n {
        assert!(fx.by_token(&format!("at-{i}")).await.is_some());
        assert_eq!(fx.metrics().session_entries, (i + 1).min(SESSION_CAPACITY));
    }
    let m = fx.metrics();
    assert_eq!(m.sessions.fills, n as u64);
    assert_eq!(m.sessions.evictions, (n - SESSION_CAPACITY) as u64);
    let before = fx.calls().load_session_by_token;
    assert!(fx.by_token(&format!("at-{}", n - 1)).await.is_some());
    assert_eq!(
        fx.calls().load_session_by_token,
        before,
        "the newest is kept"
    );
    assert!(fx.by_token("at-0").await.is_some());
    assert_eq!(
        fx.calls().load_session_by_token,
        before + 1,
        "the oldest is not"
    );
    assert_eq!(fx.metrics().session_entries, SESSION_CAPACITY);
}

/// Codes and clients are bounded by their own capacities.
pub async fn code_and_client_capacity_bound_entries<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::with_config(CacheConfig {
        auth_code_capacity: SMALL_CAPACITY,
        client_capacity: SMALL_CAPACITY,
        ..config()
    })
    .await;
    let n = 10 * SMALL_CAPACITY;
    for i in 0..n {
        let c = code(&format!("code-{i}"), "sess-1", T0 + HOUR, T0);
        fx.backend.store_auth_code(Arc::new(c)).await.unwrap();
        let record = client(&format!("client-{i}"), T0);
        fx.backend.store_client(Arc::new(record)).await.unwrap();
    }
    for i in 0..n {
        assert!(fx.code(&format!("code-{i}")).await.is_some());
        assert!(fx.client(&format!("client-{i}")).await.is_some());
    }
    let m = fx.metrics();
    assert_eq!(
        (m.auth_code_entries, m.client_entries),
        (SMALL_CAPACITY, SMALL_CAPACITY)
    );
    let evicted = (n - SMALL_CAPACITY) as u64;
    assert_eq!(
        (m.auth_codes.evictions, m.clients.evictions),
        (evicted, evicted)
    );
    assert_eq!(m.session_entries + m.negative_entries, 0);
}

/// A flood of [`FLOOD`] unknown keys of every kind: the negative entries
/// (all kinds together) never exceed `negative_capacity`, and every one past
/// it evicts one.
pub async fn negative_capacity_bounds_flood<F: Factory, R: Runtime>() {
    let fx = CacheFixture::<F>::with_config(CacheConfig {
        negative_capacity: NEGATIVE_CAPACITY,
        ..config()
    })
    .await;
    for i in 0..FLOOD {
        let key = format!("unknown-{i}");
        let found = match i % 5 {
            0 => fx.by_token(&key).await.is_some(),
            1 => fx.by_id(&key).await.is_some(),
            2 => fx.by_refresh(&key).await.is_some(),
            3 => fx.code(&key).await.is_some(),
            _ => fx.client(&key).await.is_some(),
        };
        assert!(!found);
        assert!(fx.metrics().negative_entries <= NEGATIVE_CAPACITY);
    }
    let m = fx.metrics();
    assert_eq!(m.negative_entries, NEGATIVE_CAPACITY);
    let fills = m.sessions.negative_fills + m.auth_codes.negative_fills + m.clients.negative_fills;
    assert_eq!(fills, FLOOD as u64);
    let evictions = m.sessions.evictions + m.auth_codes.evictions + m.clients.evictions;
    assert_eq!(evictions, (FLOOD - NEGATIVE_CAPACITY) as u64);
    assert_eq!(
        m.session_entries + m.auth_code_entries + m.client_entries,
        0
    );
}
