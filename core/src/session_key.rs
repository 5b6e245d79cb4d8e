//! [`SessionKey`]: the three ways a session is found.

use crate::{SessionVisibility, StoredSession, Timestamp, TokenHash};
use std::fmt;

/// What a session is looked up by: each of the three is unique among stored
/// sessions. The write buffer, the read cache and the backends all key session
/// reads by it. Its `Debug` shows only the variant.
///
/// ```
/// use tokenstore_core::{SessionKey, StoredSession, Timestamp, TokenHash, UserInfo};
///
/// let t0 = Timestamp::from_unix_secs(1_700_000_000);
/// let session = StoredSession::new("sid", UserInfo::new("p", "u", "n"), "at", t0, t0);
/// assert!(SessionKey::Access(TokenHash::of("at")).finds(&session));
/// assert_eq!(SessionKey::all_of(&session).len(), 2); // no refresh token
/// assert_eq!(format!("{:?}", SessionKey::Id("sid".into())), "SessionKey::Id(..)");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SessionKey {
    /// By the SHA-256 of the access token.
    Access(TokenHash),
    /// By session id.
    Id(String),
    /// By the SHA-256 of the refresh token.
    Refresh(TokenHash),
}

impl SessionKey {
    /// Every key `session` can be found by (the refresh key only when it has a
    /// refresh token).
    pub fn all_of(session: &StoredSession) -> Vec<Self> {
        let mut keys = Vec::with_capacity(3);
        keys.push(Self::Access(session.access_hash()));
        keys.push(Self::Id(session.session_id.clone()));
        keys.extend(session.refresh_hash().map(Self::Refresh));
        keys
    }

    /// Whether `session` is found by this key.
    pub fn finds(&self, session: &StoredSession) -> bool {
        match self {
            Self::Access(h) => session.access_hash() == *h,
            Self::Id(id) => session.session_id == *id,
            Self::Refresh(h) => session.refresh_hash() == Some(*h),
        }
    }

    /// How a load by this key treats `session` at `now`: by refresh token the
    /// refresh expiry rules, otherwise the access expiry rules.
    pub fn visibility(&self, session: &StoredSession, now: Timestamp) -> SessionVisibility {
        match self {
            Self::Refresh(_) => session.visibility_by_refresh(now),
            Self::Access(_) | Self::Id(_) => session.visibility_by_access(now),
        }
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Access(_) => "Access",
            Self::Id(_) => "Id",
            Self::Refresh(_) => "Refresh",
        };
        write!(f, "SessionKey::{name}(..)")
    }
}
