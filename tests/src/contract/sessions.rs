//! Sessions: three ways in (access token, id, refresh token), mxcp's expiry
//! rules, uniqueness of every key, deletes.

use super::{by_id, by_refresh, by_token, put};
use crate::compare::{assert_session_eq, session_ids};
use crate::sample::{DAY, HOUR, MICRO, SECOND, full_session, live_session, session};
use crate::{Factory, Fixture, Runtime, T0};
use std::sync::Arc;
use tokenstore_core::TokenStore;

/// Every field comes back as stored, by access token.
pub async fn round_trip_every_field_by_token<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", fx.now());
    put(&fx, &s).await;
    assert_session_eq(&by_token(&fx, "at-1").await.expect("by token"), &s);
}

/// Every field comes back as stored, by session id.
pub async fn round_trip_every_field_by_id<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", fx.now());
    put(&fx, &s).await;
    assert_session_eq(&by_id(&fx, "sess-1").await.expect("by id"), &s);
}

/// Every field comes back as stored, by refresh token.
pub async fn round_trip_every_field_by_refresh<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", fx.now());
    put(&fx, &s).await;
    assert_session_eq(&by_refresh(&fx, "rt-1").await.expect("by refresh"), &s);
}

/// A session with every optional field empty comes back with them empty.
pub async fn round_trip_minimal<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = session("sess-min", "at-min", None, T0 + HOUR, None, T0);
    put(&fx, &s).await;
    let got = by_token(&fx, "at-min").await.expect("by token");
    assert_session_eq(&got, &s);
    assert!(got.refresh_token.is_none() && got.refresh_expires_at.is_none());
    assert_session_eq(&by_id(&fx, "sess-min").await.expect("by id"), &s);
}

/// Loads return `issued_at = Some(created_at)`, whatever was stored.
pub async fn issued_at_is_created_at<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let mut none = full_session("sess-none", "at-none", "rt-none", fx.now());
    none.issued_at = None;
    let mut other = full_session("sess-other", "at-other", "rt-other", fx.now());
    other.issued_at = Some(T0 + 5 * SECOND);
    put(&fx, &none).await;
    put(&fx, &other).await;
    for (token, s) in [("at-none", &none), ("at-other", &other)] {
        let got = by_token(&fx, token).await.expect("by token");
        assert_eq!(got.issued_at, Some(s.created_at));
        assert_session_eq(&got, s);
    }
}

/// Unknown tokens and ids are `None`, and looking them up changes nothing.
pub async fn unknown_is_none<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-1", "rt-1", fx.now())).await;
    assert!(by_token(&fx, "at-2").await.is_none());
    assert!(by_id(&fx, "sess-2").await.is_none());
    assert!(by_refresh(&fx, "rt-2").await.is_none());
    assert_eq!(session_ids(&fx.contents().await), ["sess-1"]);
}

/// Each lookup takes only its own kind of key: an access token is not a
/// refresh token or an id, and deleting by the wrong kind deletes nothing.
pub async fn keys_are_not_interchangeable<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-1", "rt-1", fx.now())).await;
    assert!(by_token(&fx, "rt-1").await.is_none());
    assert!(by_token(&fx, "sess-1").await.is_none());
    assert!(by_refresh(&fx, "at-1").await.is_none());
    assert!(by_refresh(&fx, "sess-1").await.is_none());
    assert!(by_id(&fx, "at-1").await.is_none());
    fx.store.delete_session_by_token("rt-1").await.unwrap();
    fx.store.delete_session_by_token("sess-1").await.unwrap();
    fx.store.delete_session_by_id("at-1").await.unwrap();
    assert_eq!(session_ids(&fx.contents().await), ["sess-1"]);
    assert!(by_token(&fx, "at-1").await.is_some());
}

/// Access expired, refresh live: hidden by token and by id, returned by
/// refresh token, and kept.
pub async fn access_expired_refresh_live<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", fx.now());
    put(&fx, &s).await;
    fx.advance(2 * HOUR);
    assert!(by_token(&fx, "at-1").await.is_none());
    assert!(by_id(&fx, "sess-1").await.is_none());
    assert_session_eq(&by_refresh(&fx, "rt-1").await.expect("by refresh"), &s);
    assert_eq!(session_ids(&fx.contents().await), ["sess-1"]);
}

/// Both tokens expired: a lookup by access token returns nothing and deletes.
pub async fn both_expired_deleted_by_token<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-1", "rt-1", fx.now())).await;
    put(&fx, &full_session("sess-2", "at-2", "rt-2", fx.now())).await;
    fx.advance(31 * DAY);
    assert!(by_token(&fx, "at-1").await.is_none());
    assert_eq!(session_ids(&fx.contents().await), ["sess-2"]);
    fx.set_time(T0);
    assert!(by_refresh(&fx, "rt-1").await.is_none());
}

/// Both tokens expired: a lookup by id returns nothing and deletes.
pub async fn both_expired_deleted_by_id<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-1", "rt-1", fx.now())).await;
    put(&fx, &full_session("sess-2", "at-2", "rt-2", fx.now())).await;
    fx.advance(31 * DAY);
    assert!(by_id(&fx, "sess-1").await.is_none());
    assert_eq!(session_ids(&fx.contents().await), ["sess-2"]);
    fx.set_time(T0);
    assert!(by_token(&fx, "at-1").await.is_none());
}

/// Both tokens expired: a lookup by refresh token returns nothing and deletes.
pub async fn both_expired_deleted_by_refresh<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-1", "rt-1", fx.now())).await;
    put(&fx, &full_session("sess-2", "at-2", "rt-2", fx.now())).await;
    fx.advance(31 * DAY);
    assert!(by_refresh(&fx, "rt-1").await.is_none());
    assert_eq!(session_ids(&fx.contents().await), ["sess-2"]);
    fx.set_time(T0);
    assert!(by_id(&fx, "sess-1").await.is_none());
}

/// Without a refresh token, an expired access token deletes the session on a
/// lookup by token or by id.
pub async fn no_refresh_deleted_on_access_expiry<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &session("sess-a", "at-a", None, T0 + HOUR, None, T0)).await;
    put(&fx, &session("sess-b", "at-b", None, T0 + HOUR, None, T0)).await;
    put(
        &fx,
        &session("sess-c", "at-c", None, T0 + 3 * HOUR, None, T0),
    )
    .await;
    fx.advance(HOUR + SECOND);
    assert!(by_token(&fx, "at-a").await.is_none());
    assert_eq!(session_ids(&fx.contents().await), ["sess-b", "sess-c"]);
    assert!(by_id(&fx, "sess-b").await.is_none());
    assert_eq!(session_ids(&fx.contents().await), ["sess-c"]);
    assert!(by_token(&fx, "at-c").await.is_some());
}

/// `refresh_expires_at: None` means the refresh token never expires.
pub async fn refresh_without_expiry_never_expires<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = session("sess-1", "at-1", Some("rt-1"), T0 + HOUR, None, T0);
    put(&fx, &s).await;
    fx.advance(50 * 365 * DAY);
    assert!(by_token(&fx, "at-1").await.is_none());
    assert!(by_id(&fx, "sess-1").await.is_none());
    assert_session_eq(&by_refresh(&fx, "rt-1").await.expect("by refresh"), &s);
    let counts = fx.store.cleanup_expired().await.unwrap();
    assert_eq!(counts.sessions, 0);
    assert_session_eq(&by_refresh(&fx, "rt-1").await.expect("after cleanup"), &s);
}

/// Refresh expired, access live: hidden by refresh token but kept, and still
/// returned by access token and id.
pub async fn refresh_expired_access_live<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = session(
        "sess-1",
        "at-1",
        Some("rt-1"),
        T0 + 2 * HOUR,
        Some(T0 + HOUR),
        T0,
    );
    put(&fx, &s).await;
    fx.advance(HOUR + SECOND);
    assert!(by_refresh(&fx, "rt-1").await.is_none());
    assert_eq!(session_ids(&fx.contents().await), ["sess-1"]);
    assert_session_eq(&by_token(&fx, "at-1").await.expect("by token"), &s);
    assert_session_eq(&by_id(&fx, "sess-1").await.expect("by id"), &s);
}

/// `access_expires_at == now` is live by token and id; a microsecond later it
/// is not.
pub async fn access_expiry_boundary<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let deadline = T0 + HOUR;
    let s = session("sess-1", "at-1", Some("rt-1"), deadline, None, T0);
    put(&fx, &s).await;
    fx.set_time(deadline);
    assert_session_eq(&by_token(&fx, "at-1").await.expect("at deadline"), &s);
    assert_session_eq(&by_id(&fx, "sess-1").await.expect("at deadline"), &s);
    fx.set_time(deadline + MICRO);
    assert!(by_token(&fx, "at-1").await.is_none());
    assert!(by_id(&fx, "sess-1").await.is_none());
}

/// `refresh_expires_at == now` is live by refresh token; a microsecond later
/// (access expired too) the session is gone.
pub async fn refresh_expiry_boundary<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let deadline = T0 + DAY;
    let s = session(
        "sess-1",
        "at-1",
        Some("rt-1"),
        T0 + HOUR,
        Some(deadline),
        T0,
    );
    put(&fx, &s).await;
    fx.set_time(deadline);
    assert_session_eq(&by_refresh(&fx, "rt-1").await.expect("at deadline"), &s);
    fx.set_time(deadline + MICRO);
    assert!(by_refresh(&fx, "rt-1").await.is_none());
    assert!(fx.contents().await.sessions.is_empty());
}

/// A refresh that rotates both tokens (same session id) leaves no way to load
/// the old tokens.
pub async fn rotation_invalidates_old_tokens<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-old", "rt-old", fx.now())).await;
    fx.advance(HOUR / 2);
    let rotated = full_session("sess-1", "at-new", "rt-new", fx.now());
    put(&fx, &rotated).await;
    assert!(by_token(&fx, "at-old").await.is_none());
    assert!(by_refresh(&fx, "rt-old").await.is_none());
    assert_session_eq(
        &by_token(&fx, "at-new").await.expect("new access"),
        &rotated,
    );
    assert_session_eq(
        &by_refresh(&fx, "rt-new").await.expect("new refresh"),
        &rotated,
    );
    assert_session_eq(&by_id(&fx, "sess-1").await.expect("by id"), &rotated);
    assert_eq!(fx.contents().await.sessions.len(), 1);
}

/// A session sharing only the refresh token with a stored one replaces it.
pub async fn shared_refresh_token_replaces<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(
        &fx,
        &full_session("sess-old", "at-old", "rt-shared", fx.now()),
    )
    .await;
    put(
        &fx,
        &full_session("sess-other", "at-other", "rt-other", fx.now()),
    )
    .await;
    let new = full_session("sess-new", "at-new", "rt-shared", fx.now());
    put(&fx, &new).await;
    assert!(by_token(&fx, "at-old").await.is_none());
    assert!(by_id(&fx, "sess-old").await.is_none());
    assert_session_eq(
        &by_refresh(&fx, "rt-shared").await.expect("the new one"),
        &new,
    );
    assert_eq!(
        session_ids(&fx.contents().await),
        ["sess-new", "sess-other"]
    );
}

/// A session sharing only the session id with a stored one replaces it (and
/// the old refresh token goes with it, even though the new one has none).
pub async fn shared_session_id_replaces<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(
        &fx,
        &full_session("sess-shared", "at-old", "rt-old", fx.now()),
    )
    .await;
    put(
        &fx,
        &full_session("sess-other", "at-other", "rt-other", fx.now()),
    )
    .await;
    let new = session("sess-shared", "at-new", None, T0 + HOUR, None, T0);
    put(&fx, &new).await;
    assert!(by_token(&fx, "at-old").await.is_none());
    assert!(by_refresh(&fx, "rt-old").await.is_none());
    assert_session_eq(&by_id(&fx, "sess-shared").await.expect("the new one"), &new);
    assert_eq!(
        session_ids(&fx.contents().await),
        ["sess-other", "sess-shared"]
    );
}

/// A session sharing only the access token with a stored one replaces it.
pub async fn shared_access_token_replaces<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(
        &fx,
        &full_session("sess-old", "at-shared", "rt-old", fx.now()),
    )
    .await;
    put(
        &fx,
        &full_session("sess-other", "at-other", "rt-other", fx.now()),
    )
    .await;
    let new = full_session("sess-new", "at-shared", "rt-new", fx.now());
    put(&fx, &new).await;
    assert!(by_id(&fx, "sess-old").await.is_none());
    assert!(by_refresh(&fx, "rt-old").await.is_none());
    assert_session_eq(
        &by_token(&fx, "at-shared").await.expect("the new one"),
        &new,
    );
    assert_eq!(
        session_ids(&fx.contents().await),
        ["sess-new", "sess-other"]
    );
}

/// A session sharing its id with one stored session and its refresh token
/// with another replaces both.
pub async fn sharing_with_two_replaces_both<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-a", "at-a", "rt-a", fx.now())).await;
    put(&fx, &full_session("sess-b", "at-b", "rt-b", fx.now())).await;
    put(&fx, &full_session("sess-c", "at-c", "rt-c", fx.now())).await;
    let new = full_session("sess-a", "at-new", "rt-b", fx.now());
    put(&fx, &new).await;
    for token in ["at-a", "at-b"] {
        assert!(by_token(&fx, token).await.is_none(), "{token} still loads");
    }
    assert!(by_id(&fx, "sess-b").await.is_none());
    assert!(by_refresh(&fx, "rt-a").await.is_none());
    assert_session_eq(&by_id(&fx, "sess-a").await.expect("the new one"), &new);
    assert_session_eq(&by_refresh(&fx, "rt-b").await.expect("the new one"), &new);
    assert_eq!(session_ids(&fx.contents().await), ["sess-a", "sess-c"]);
}

/// Deleting by access token removes the session from every lookup, and only it.
pub async fn delete_by_token<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-1", "rt-1", fx.now())).await;
    let other = full_session("sess-2", "at-2", "rt-2", fx.now());
    put(&fx, &other).await;
    fx.store.delete_session_by_token("at-1").await.unwrap();
    assert!(by_token(&fx, "at-1").await.is_none());
    assert!(by_id(&fx, "sess-1").await.is_none());
    assert!(by_refresh(&fx, "rt-1").await.is_none());
    assert_session_eq(&by_token(&fx, "at-2").await.expect("untouched"), &other);
    assert_eq!(session_ids(&fx.contents().await), ["sess-2"]);
}

/// Deleting by session id removes the session from every lookup, and only it.
pub async fn delete_by_id<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-1", "rt-1", fx.now())).await;
    let other = full_session("sess-2", "at-2", "rt-2", fx.now());
    put(&fx, &other).await;
    fx.store.delete_session_by_id("sess-1").await.unwrap();
    assert!(by_token(&fx, "at-1").await.is_none());
    assert!(by_id(&fx, "sess-1").await.is_none());
    assert!(by_refresh(&fx, "rt-1").await.is_none());
    assert_session_eq(&by_id(&fx, "sess-2").await.expect("untouched"), &other);
    assert_eq!(session_ids(&fx.contents().await), ["sess-2"]);
}

/// Deletes of absent sessions succeed and change nothing; deleting twice is
/// the same as deleting once.
pub async fn deletes_are_idempotent<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    put(&fx, &full_session("sess-1", "at-1", "rt-1", fx.now())).await;
    put(&fx, &full_session("sess-2", "at-2", "rt-2", fx.now())).await;
    fx.store
        .delete_session_by_token("at-unknown")
        .await
        .unwrap();
    fx.store.delete_session_by_id("sess-unknown").await.unwrap();
    assert_eq!(fx.contents().await.sessions.len(), 2);
    fx.store.delete_session_by_token("at-1").await.unwrap();
    fx.store.delete_session_by_token("at-1").await.unwrap();
    fx.store.delete_session_by_id("sess-1").await.unwrap();
    fx.store.delete_session_by_id("sess-2").await.unwrap();
    fx.store.delete_session_by_id("sess-2").await.unwrap();
    fx.store.delete_session_by_token("at-2").await.unwrap();
    assert!(fx.contents().await.sessions.is_empty());
}

/// A deleted session can be stored again under the same keys.
pub async fn store_after_delete<F: Factory, R: Runtime>() {
    let fx = Fixture::<F>::new().await;
    let s = full_session("sess-1", "at-1", "rt-1", fx.now());
    put(&fx, &s).await;
    fx.store.delete_session_by_id("sess-1").await.unwrap();
    assert!(by_token(&fx, "at-1").await.is_none());
    put(&fx, &s).await;
    assert_session_eq(&by_token(&fx, "at-1").await.expect("stored again"), &s);
    assert_session_eq(&by_refresh(&fx, "rt-1").await.expect("stored again"), &s);
}

/// 500 sessions: each one loads its own record by every key.
pub async fn isolation_of_many<F: Factory, R: Runtime>() {
    const N: usize = 500;
    let fx = Fixture::<F>::new().await;
    for i in 0..N {
        let s = live_session(
            &format!("sess-{i}"),
            &format!("at-{i}"),
            Some(&format!("rt-{i}")),
            T0,
        );
        fx.store.store_session(Arc::new(s)).await.unwrap();
    }
    assert_eq!(fx.contents().await.sessions.len(), N);
    for i in 0..N {
        let user = format!("user-of-sess-{i}");
        let t = by_token(&fx, &format!("at-{i}")).await.expect("by token");
        assert_eq!(
            (t.session_id.as_str(), t.user_info.user_id.as_str()),
            (format!("sess-{i}").as_str(), user.as_str())
        );
        let d = by_id(&fx, &format!("sess-{i}")).await.expect("by id");
        assert_eq!(d.access_token.expose(), format!("at-{i}"));
        let r = by_refresh(&fx, &format!("rt-{i}"))
            .await
            .expect("by refresh");
        assert_eq!(r.session_id, format!("sess-{i}"));
    }
}
