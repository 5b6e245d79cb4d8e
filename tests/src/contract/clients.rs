//! Registered clients: store, load, list (by client id), delete, replace.

use crate::compare::assert_client_eq;
use crate::sample::{client, full_client};
use crate::{Factory, Fixture, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::{TokenEndpointAuthMethod, TokenStore};

/// Every field of a client comes back as stored.
pub async fn round_trip_every_field<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_client("client-full", fx.now());
    fx.store
        .store_client(Arc::new(record.clone()))
        .await
        .unwrap();
    let got = fx.store.load_client("client-full").await.unwrap();
    assert_client_eq(&got.expect("stored"), &record);
}

/// A client with every optional field empty comes back with them empty.
pub async fn round_trip_minimal<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = client("client-min", fx.now());
    fx.store
        .store_client(Arc::new(record.clone()))
        .await
        .unwrap();
    let got = fx.store.load_client("client-min").await.unwrap();
    assert_client_eq(&got.expect("stored"), &record);
}

/// Each token endpoint auth method round-trips.
pub async fn every_auth_method_round_trips<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let methods = [
        TokenEndpointAuthMethod::None,
        TokenEndpointAuthMethod::ClientSecretPost,
        TokenEndpointAuthMethod::ClientSecretBasic,
        TokenEndpointAuthMethod::PrivateKeyJwt,
    ];
    for method in methods {
        let mut record = full_client(&format!("client-{}", method.as_str()), fx.now());
        record.token_endpoint_auth_method = Some(method);
        fx.store.store_client(Arc::new(record)).await.unwrap();
    }
    for method in methods {
        let id = format!("client-{}", method.as_str());
        let got = fx.store.load_client(&id).await.unwrap().expect("stored");
        assert_eq!(got.token_endpoint_auth_method, Some(method));
    }
}

/// An unknown client is `None`.
pub async fn unknown_is_none<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_client("client-known", fx.now());
    fx.store.store_client(Arc::new(record)).await.unwrap();
    assert!(
        fx.store
            .load_client("client-unknown")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        fx.store
            .load_client("CLIENT-KNOWN")
            .await
            .unwrap()
            .is_none()
    );
}

/// An empty store lists no client.
pub async fn list_empty<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    assert!(fx.store.list_clients().await.unwrap().is_empty());
}

/// `list_clients` returns every client, ordered by client id, whatever the
/// order of registration.
pub async fn list_sorted_by_client_id<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let ids = [
        "mango",
        "Apple",
        "banana",
        "apple",
        "cherry-2",
        "cherry-10",
        "Zed",
    ];
    for id in ids {
        let record = full_client(id, fx.now());
        fx.store.store_client(Arc::new(record)).await.unwrap();
    }
    let listed = fx.store.list_clients().await.unwrap();
    let listed_ids: Vec<&str> = listed.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(
        listed_ids,
        [
            "Apple",
            "Zed",
            "apple",
            "banana",
            "cherry-10",
            "cherry-2",
            "mango"
        ]
    );
    for c in &listed {
        assert_client_eq(c, &full_client(&c.client_id, T0));
    }
}

/// Deleting a client removes it (from load and list), only it, idempotently.
pub async fn delete_removes_only_it<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    for id in ["client-a", "client-b"] {
        let record = full_client(id, fx.now());
        fx.store.store_client(Arc::new(record)).await.unwrap();
    }
    fx.store.delete_client("client-a").await.unwrap();
    fx.store.delete_client("client-a").await.unwrap();
    fx.store.delete_client("client-never").await.unwrap();
    assert!(fx.store.load_client("client-a").await.unwrap().is_none());
    let listed = fx.store.list_clients().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_client_eq(&listed[0], &full_client("client-b", T0));
}

/// Storing a client with an existing id replaces it, fields included.
pub async fn store_replaces_same_id<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let old = full_client("client-dup", fx.now());
    let mut new = client("client-dup", fx.now());
    new.token_endpoint_auth_method = Some(TokenEndpointAuthMethod::None);
    new.redirect_uris = vec!["https://new.example.com/cb".to_owned()];
    fx.store.store_client(Arc::new(old)).await.unwrap();
    fx.store.store_client(Arc::new(new.clone())).await.unwrap();
    let got = fx.store.load_client("client-dup").await.unwrap();
    assert_client_eq(&got.expect("the replacement"), &new);
    assert_eq!(fx.store.list_clients().await.unwrap().len(), 1);
}

/// Clients never expire: a year later they are all still there.
pub async fn clients_do_not_expire<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let record = full_client("client-old", fx.now());
    fx.store
        .store_client(Arc::new(record.clone()))
        .await
        .unwrap();
    fx.advance(crate::sample::DAY * 366);
    let counts = fx.store.cleanup_expired().await.unwrap();
    assert_eq!(counts, Default::default());
    let got = fx.store.load_client("client-old").await.unwrap();
    assert_client_eq(&got.expect("still registered"), &record);
}
