//! Cache keys, kinds and the writes that invalidate them.

use crate::{SessionKey, StoredSession, TokenHash, WriteOp};
use std::fmt;

/// The kinds of record the cache knows, for configuration and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// OAuth states (never cached: their only read, `consume_state`, is one-time).
    State,
    /// Authorization codes.
    AuthCode,
    /// Sessions.
    Session,
    /// Registered clients.
    Client,
}

/// What a cached record is found by. Its `Debug` shows only the variant.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// A session, by any of its three keys.
    Session(SessionKey),
    /// An authorization code, by its SHA-256 (the raw code is never kept as a
    /// key, so a log of keys never holds one).
    AuthCode(TokenHash),
    /// A client by id.
    Client(String),
}

impl CacheKey {
    /// The kind of record behind the key.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Session(_) => Kind::Session,
            Self::AuthCode(_) => Kind::AuthCode,
            Self::Client(_) => Kind::Client,
        }
    }

    /// Every key a session can be found by.
    pub fn of_session(session: &StoredSession) -> Vec<Self> {
        SessionKey::all_of(session)
            .into_iter()
            .map(Self::Session)
            .collect()
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(_) => f.write_str("CacheKey::Session(..)"),
            Self::AuthCode(_) => f.write_str("CacheKey::AuthCode(..)"),
            Self::Client(_) => f.write_str("CacheKey::Client(..)"),
        }
    }
}

/// A write that passed through the cache: every key it can affect is evicted.
///
/// Report it after the delegate call returned, whatever its outcome.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// `store_state` or `consume_state` (counted only: states are never cached).
    State,
    /// `store_auth_code`, `delete_auth_code` or `try_delete_auth_code`.
    AuthCode(&'a str),
    /// `store_session` with the new record.
    StoreSession(&'a StoredSession),
    /// `delete_session_by_token`, by the access token's hash.
    DeleteSessionByHash(TokenHash),
    /// `delete_session_by_id`.
    DeleteSessionById(&'a str),
    /// `store_client` or `delete_client`.
    Client(&'a str),
}

impl<'a> From<&'a WriteOp> for Write<'a> {
    /// What a write of a batch ([`BatchWriteStore`](crate::BatchWriteStore))
    /// does to the cache: the same as the single call it stands for.
    fn from(op: &'a WriteOp) -> Self {
        match op {
            WriteOp::StoreState(_) | WriteOp::RemoveState(_) => Self::State,
            WriteOp::StoreAuthCode(r) => Self::AuthCode(&r.code),
            WriteOp::DeleteAuthCode(code) => Self::AuthCode(code),
            WriteOp::StoreSession(s) => Self::StoreSession(s),
            WriteOp::DeleteSessionByToken(t) => {
                Self::DeleteSessionByHash(TokenHash::of(t.expose()))
            }
            WriteOp::DeleteSessionById(id) => Self::DeleteSessionById(id),
            WriteOp::StoreClient(r) => Self::Client(&r.client_id),
            WriteOp::DeleteClient(id) => Self::Client(id),
        }
    }
}

/// The keys a write invalidates, computed once: for a session write that means
/// hashing its tokens, which a cache split into shards would otherwise do once
/// per shard (a session write is reported to every shard,
/// [`CacheMachine::handle_write_keys`](super::CacheMachine::handle_write_keys)).
///
/// ```
/// use tokenstore_core::cache::{CacheConfig, CacheMachine, Write, WriteKeys};
///
/// let mut shards = [
///     CacheMachine::new(CacheConfig::default()),
///     CacheMachine::new(CacheConfig::default()),
/// ];
/// let keys = WriteKeys::of(&Write::DeleteSessionById("session-1"));
/// for shard in &mut shards {
///     shard.handle_write_keys(&keys);
/// }
/// assert_eq!(shards[1].metrics().sessions.invalidations, 1);
/// ```
#[derive(Clone)]
pub struct WriteKeys {
    kind: Kind,
    keys: Vec<CacheKey>,
}

impl WriteKeys {
    /// The keys `write` invalidates.
    pub fn of(write: &Write<'_>) -> Self {
        Self {
            kind: write.kind(),
            keys: write.keys(),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn keys(&self) -> &[CacheKey] {
        &self.keys
    }
}

/// Shows the kind and how many keys, never the keys.
impl fmt::Debug for WriteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteKeys")
            .field("kind", &self.kind)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Write<'_> {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Self::State => Kind::State,
            Self::AuthCode(_) => Kind::AuthCode,
            Self::StoreSession(_) | Self::DeleteSessionByHash(_) | Self::DeleteSessionById(_) => {
                Kind::Session
            }
            Self::Client(_) => Kind::Client,
        }
    }

    pub(crate) fn keys(&self) -> Vec<CacheKey> {
        match *self {
            Self::State => Vec::new(),
            Self::AuthCode(code) => vec![CacheKey::AuthCode(TokenHash::of(code))],
            Self::StoreSession(s) => CacheKey::of_session(s),
            Self::DeleteSessionByHash(h) => vec![CacheKey::Session(SessionKey::Access(h))],
            Self::DeleteSessionById(id) => vec![CacheKey::Session(SessionKey::Id(id.to_owned()))],
            Self::Client(id) => vec![CacheKey::Client(id.to_owned())],
        }
    }
}
