//! What the benchmarks share: the login session they all write.

use std::sync::Arc;
use std::time::Duration;
use tokenstore::{Secret, StoredSession, Timestamp, UserInfo};

/// Login session `n`: an access and a refresh token (distinct per `n`), an
/// email, two scopes, an hour of access and a day of refresh from `now`.
pub(crate) fn session(n: u64, now: Timestamp) -> Arc<StoredSession> {
    let mut user = UserInfo::new("github", format!("user-{n}"), format!("login-{n}"));
    user.email = Some(format!("user{n}@example.com"));
    user.provider_scopes_granted = vec!["openid".into(), "email".into()];
    let mix = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut s = StoredSession::new(
        format!("sid-{n:010}"),
        user,
        format!("at-{n:010}-{mix:016x}{:016x}", mix.rotate_left(17)),
        now + Duration::from_secs(3_600),
        now,
    );
    s.refresh_token = Some(Secret::new(format!(
        "rt-{n:010}-{:016x}",
        mix.rotate_left(31)
    )));
    s.refresh_expires_at = Some(now + Duration::from_secs(86_400));
    Arc::new(s)
}
