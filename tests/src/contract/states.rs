//! States: stored, consumed once, never returned once expired.

use crate::compare::{assert_state_eq, state_keys};
use crate::sample::{MICRO, MINUTE, SECOND, full_state, state};
use crate::{Factory, Fixture, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::TokenStore;

/// Every field of a state comes back as stored.
pub async fn round_trip_every_field<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_state("st-full", fx.now());
    fx.store
        .store_state(Arc::new(record.clone()))
        .await
        .unwrap();
    let got = fx.store.consume_state("st-full").await.unwrap();
    assert_state_eq(&got.expect("a live state"), &record);
}

/// A state with every optional field empty comes back with them empty.
pub async fn round_trip_minimal<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = state("st-min", fx.now() + MINUTE, fx.now());
    fx.store
        .store_state(Arc::new(record.clone()))
        .await
        .unwrap();
    let got = fx.store.consume_state("st-min").await.unwrap();
    assert_state_eq(&got.expect("a live state"), &record);
}

/// `consume_state` returns the record once, then `None`, and removes it.
pub async fn consume_is_one_time<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_state("st-once", fx.now());
    fx.store
        .store_state(Arc::new(record.clone()))
        .await
        .unwrap();
    let first = fx.store.consume_state("st-once").await.unwrap();
    assert_state_eq(&first.expect("first consume"), &record);
    assert!(fx.store.consume_state("st-once").await.unwrap().is_none());
    assert!(fx.store.consume_state("st-once").await.unwrap().is_none());
    assert!(fx.contents().await.states.is_empty());
}

/// An unknown state is `None`, and consuming it changes nothing.
pub async fn unknown_is_none<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_state("st-known", fx.now());
    fx.store.store_state(Arc::new(record)).await.unwrap();
    assert!(
        fx.store
            .consume_state("st-unknown")
            .await
            .unwrap()
            .is_none()
    );
    assert!(fx.store.consume_state("ST-KNOWN").await.unwrap().is_none());
    assert_eq!(state_keys(&fx.contents().await), ["st-known"]);
}

/// An expired state is not returned and is removed (it stays gone when the
/// clock is set back).
pub async fn expired_not_returned_and_removed<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = state("st-exp", T0 + 10 * MINUTE, T0);
    fx.store.store_state(Arc::new(record)).await.unwrap();
    fx.advance(10 * MINUTE + SECOND);
    assert!(fx.store.consume_state("st-exp").await.unwrap().is_none());
    assert!(fx.contents().await.states.is_empty());
    fx.set_time(T0);
    assert!(fx.store.consume_state("st-exp").await.unwrap().is_none());
}

/// `expires_at == now` is still live; one microsecond later it has expired.
pub async fn expiry_boundary<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let deadline = T0 + MINUTE;
    for key in ["st-edge", "st-past"] {
        let record = state(key, deadline, T0);
        fx.store.store_state(Arc::new(record)).await.unwrap();
    }
    fx.set_time(deadline);
    let at_deadline = fx.store.consume_state("st-edge").await.unwrap();
    assert_eq!(
        at_deadline.expect("live at its deadline").expires_at,
        deadline
    );
    fx.set_time(deadline + MICRO);
    assert!(fx.store.consume_state("st-past").await.unwrap().is_none());
}

/// Storing a state with an existing value replaces the old record.
pub async fn store_replaces_same_key<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let old = full_state("st-dup", fx.now());
    let mut new = state("st-dup", fx.now() + 2 * MINUTE, fx.now());
    new.client_id = Some("the-new-client".to_owned());
    fx.store.store_state(Arc::new(old)).await.unwrap();
    fx.store.store_state(Arc::new(new.clone())).await.unwrap();
    assert_eq!(fx.contents().await.states.len(), 1);
    let got = fx.store.consume_state("st-dup").await.unwrap();
    assert_state_eq(&got.expect("the replacement"), &new);
}

/// Consuming one state leaves the others alone.
pub async fn consume_leaves_others<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    for key in ["st-a", "st-b", "st-c"] {
        let record = full_state(key, fx.now());
        fx.store.store_state(Arc::new(record)).await.unwrap();
    }
    let b = fx.store.consume_state("st-b").await.unwrap();
    assert_eq!(b.expect("st-b").state, "st-b");
    assert_eq!(state_keys(&fx.contents().await), ["st-a", "st-c"]);
    for key in ["st-a", "st-c"] {
        let got = fx.store.consume_state(key).await.unwrap();
        assert_state_eq(&got.expect("still there"), &full_state(key, T0));
    }
}
