//! Authorization codes: loaded without being consumed, then removed; removed
//! "for real" exactly once.

use crate::compare::{assert_code_eq, code_keys};
use crate::sample::{MICRO, MINUTE, SECOND, code, full_code};
use crate::{Factory, Fixture, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::TokenStore;

/// Every field of a code comes back as stored.
pub async fn round_trip_every_field<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_code("code-full", "sess-1", fx.now());
    fx.store
        .store_auth_code(Arc::new(record.clone()))
        .await
        .unwrap();
    let got = fx.store.load_auth_code("code-full").await.unwrap();
    assert_code_eq(&got.expect("a live code"), &record);
}

/// A code with every optional field empty comes back with them empty.
pub async fn round_trip_minimal<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = code("code-min", "sess-1", fx.now() + MINUTE, fx.now());
    fx.store
        .store_auth_code(Arc::new(record.clone()))
        .await
        .unwrap();
    let got = fx.store.load_auth_code("code-min").await.unwrap();
    assert_code_eq(&got.expect("a live code"), &record);
}

/// Loading does not consume: the code loads again and again.
pub async fn load_is_non_consuming<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_code("code-re", "sess-1", fx.now());
    fx.store
        .store_auth_code(Arc::new(record.clone()))
        .await
        .unwrap();
    for _ in 0..3 {
        let got = fx.store.load_auth_code("code-re").await.unwrap();
        assert_code_eq(&got.expect("still there"), &record);
    }
    assert_eq!(code_keys(&fx.contents().await), ["code-re"]);
}

/// An unknown code is `None`.
pub async fn unknown_is_none<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_code("code-known", "sess-1", fx.now());
    fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    assert!(
        fx.store
            .load_auth_code("code-unknown")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        fx.store
            .load_auth_code("CODE-KNOWN")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(code_keys(&fx.contents().await), ["code-known"]);
}

/// `delete_auth_code` removes the code, only it, and is idempotent.
pub async fn delete_removes_only_it<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    for key in ["code-a", "code-b"] {
        let record = full_code(key, "sess-1", fx.now());
        fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    }
    fx.store.delete_auth_code("code-a").await.unwrap();
    assert!(fx.store.load_auth_code("code-a").await.unwrap().is_none());
    fx.store.delete_auth_code("code-a").await.unwrap();
    fx.store.delete_auth_code("code-never").await.unwrap();
    let b = fx.store.load_auth_code("code-b").await.unwrap();
    assert_code_eq(
        &b.expect("code-b stays"),
        &full_code("code-b", "sess-1", T0),
    );
    assert_eq!(code_keys(&fx.contents().await), ["code-b"]);
}

/// `try_delete_auth_code` is `true` exactly once, then `false`.
pub async fn try_delete_true_exactly_once<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_code("code-once", "sess-1", fx.now());
    fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    assert!(fx.store.try_delete_auth_code("code-once").await.unwrap());
    assert!(!fx.store.try_delete_auth_code("code-once").await.unwrap());
    assert!(!fx.store.try_delete_auth_code("code-once").await.unwrap());
    assert!(
        fx.store
            .load_auth_code("code-once")
            .await
            .unwrap()
            .is_none()
    );
    assert!(fx.contents().await.auth_codes.is_empty());
}

/// `try_delete_auth_code` on a code never stored is `false`.
pub async fn try_delete_unknown_is_false<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_code("code-known", "sess-1", fx.now());
    fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    assert!(!fx.store.try_delete_auth_code("code-unknown").await.unwrap());
    assert_eq!(code_keys(&fx.contents().await), ["code-known"]);
}

/// An expired code is not returned and is removed (it stays gone when the
/// clock is set back).
pub async fn expired_not_returned_and_removed<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = code("code-exp", "sess-1", T0 + 5 * MINUTE, T0);
    fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    fx.advance(5 * MINUTE + SECOND);
    assert!(fx.store.load_auth_code("code-exp").await.unwrap().is_none());
    assert!(fx.contents().await.auth_codes.is_empty());
    fx.set_time(T0);
    assert!(fx.store.load_auth_code("code-exp").await.unwrap().is_none());
}

/// `try_delete_auth_code` on an expired code is `false` and removes it.
pub async fn try_delete_expired_is_false<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = code("code-exp", "sess-1", T0 + 5 * MINUTE, T0);
    fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    fx.advance(5 * MINUTE + SECOND);
    assert!(!fx.store.try_delete_auth_code("code-exp").await.unwrap());
    assert!(fx.contents().await.auth_codes.is_empty());
    fx.set_time(T0);
    assert!(!fx.store.try_delete_auth_code("code-exp").await.unwrap());
}

/// `expires_at == now` is still live (load and try-delete); one microsecond
/// later it has expired.
pub async fn expiry_boundary<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let deadline = T0 + MINUTE;
    for key in ["code-load", "code-try", "code-past"] {
        let record = code(key, "sess-1", deadline, T0);
        fx.store.store_auth_code(Arc::new(record)).await.unwrap();
    }
    fx.set_time(deadline);
    let loaded = fx.store.load_auth_code("code-load").await.unwrap();
    assert_eq!(loaded.expect("live at its deadline").expires_at, deadline);
    assert!(fx.store.try_delete_auth_code("code-try").await.unwrap());
    fx.set_time(deadline + MICRO);
    assert!(
        fx.store
            .load_auth_code("code-load")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!fx.store.try_delete_auth_code("code-past").await.unwrap());
}

/// Storing a code that exists replaces the old record.
pub async fn store_replaces_same_code<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let old = full_code("code-dup", "sess-old", fx.now());
    let new = code("code-dup", "sess-new", fx.now() + 2 * MINUTE, fx.now());
    fx.store.store_auth_code(Arc::new(old)).await.unwrap();
    fx.store
        .store_auth_code(Arc::new(new.clone()))
        .await
        .unwrap();
    assert_eq!(fx.contents().await.auth_codes.len(), 1);
    let got = fx.store.load_auth_code("code-dup").await.unwrap();
    assert_code_eq(&got.expect("the replacement"), &new);
}
