//! The operations of a model run: small indices into small key pools (so keys
//! collide), compact `Debug` for readable shrunk cases, and the proptest
//! strategies that generate them.

use proptest::prelude::*;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, Secret, StateRecord, StoredSession, Timestamp, UserInfo,
};

/// Keys (states, codes, session ids, clients) are drawn from this many values.
const KEYS: u8 = 3;
/// Tokens (access and refresh alike, so one session's refresh token can be
/// another's access token) are drawn from this many values.
const TOKENS: u8 = 4;
/// The index that stands for the empty key (invalid input).
const EMPTY: u8 = u8::MAX;
/// The index that stands for key 0 with a NUL byte appended (invalid input,
/// which a backend that cut keys at the NUL would confuse with key 0).
const NUL: u8 = u8::MAX - 1;

/// A key: `<n>` in Debug, `""` for the empty key and `0\0` for key 0 with
/// a NUL byte (both invalid).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key(pub(crate) u8);

impl Key {
    fn text(self, prefix: &str) -> String {
        match self.0 {
            EMPTY => String::new(),
            NUL => format!("{prefix}0\0"),
            n => format!("{prefix}{n}"),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            EMPTY => f.write_str("\"\""),
            NUL => f.write_str("0\\0"),
            n => write!(f, "{n}"),
        }
    }
}

/// A token of the shared access/refresh pool.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok(pub(crate) u8);

impl Tok {
    fn text(self) -> String {
        Key(self.0).text("tok-")
    }
}

impl fmt::Debug for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Key(self.0).fmt(f)
    }
}

/// An expiry relative to the time of the operation, in milliseconds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exp(pub(crate) i64);

impl Exp {
    fn at(self, now: Timestamp) -> Timestamp {
        let d = Duration::from_millis(self.0.unsigned_abs());
        if self.0 < 0 { now - d } else { now + d }
    }
}

impl fmt::Debug for Exp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { '-' } else { '+' };
        write!(f, "{sign}{}", Millis(self.0.unsigned_abs()))
    }
}

/// A clock step.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step(pub(crate) u64);

impl Step {
    pub(crate) fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", Millis(self.0))
    }
}

/// Milliseconds, printed in the largest unit that divides them.
struct Millis(u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        match ms {
            0 => f.write_str("0s"),
            _ if ms.is_multiple_of(86_400_000) => write!(f, "{}d", ms / 86_400_000),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}min", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// One step of a model run.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Op {
    StoreState {
        key: Key,
        expires: Exp,
    },
    ConsumeState {
        key: Key,
    },
    StoreCode {
        key: Key,
        session: Key,
        expires: Exp,
    },
    LoadCode {
        key: Key,
    },
    DeleteCode {
        key: Key,
    },
    TryDeleteCode {
        key: Key,
    },
    StoreSession {
        id: Key,
        access: Tok,
        refresh: Option<Tok>,
        /// `None`: no access expiry (refused as invalid input).
        expires: Option<Exp>,
        /// `None`: the refresh token never expires.
        refresh_expires: Option<Exp>,
        tag: u8,
    },
    ByToken {
        access: Tok,
    },
    ById {
        id: Key,
    },
    ByRefresh {
        refresh: Tok,
    },
    DeleteByToken {
        access: Tok,
    },
    DeleteById {
        id: Key,
    },
    StoreClient {
        id: Key,
        tag: u8,
    },
    LoadClient {
        id: Key,
    },
    ListClients,
    DeleteClient {
        id: Key,
    },
    Cleanup,
    /// `flush()` on stacks with a write buffer; nothing elsewhere.
    Flush,
    Advance(Step),
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StoreState { key, expires } => {
                write!(f, "StoreState{{key:{key:?}, expires:{expires:?}}}")
            }
            Self::ConsumeState { key } => write!(f, "ConsumeState{{key:{key:?}}}"),
            Self::StoreCode {
                key,
                session,
                expires,
            } => write!(
                f,
                "StoreCode{{key:{key:?}, session:{session:?}, expires:{expires:?}}}"
            ),
            Self::LoadCode { key } => write!(f, "LoadCode{{key:{key:?}}}"),
            Self::DeleteCode { key } => write!(f, "DeleteCode{{key:{key:?}}}"),
            Self::TryDeleteCode { key } => write!(f, "TryDeleteCode{{key:{key:?}}}"),
            Self::StoreSession {
                id,
                access,
                refresh,
                expires,
                refresh_expires,
                tag,
            } => {
                write!(f, "StoreSession{{id:{id:?}, access:{access:?}")?;
                if let Some(r) = refresh {
                    write!(f, ", refresh:{r:?}")?;
                }
                match expires {
                    Some(e) => write!(f, ", expires:{e:?}")?,
                    None => f.write_str(", expires:none")?,
                }
                if refresh.is_some() {
                    match refresh_expires {
                        Some(e) => write!(f, ", refresh_expires:{e:?}")?,
                        None => f.write_str(", refresh_expires:never")?,
                    }
                }
                if *tag != 0 {
                    write!(f, ", tag:{tag}")?;
                }
                f.write_str("}")
            }
            Self::ByToken { access } => write!(f, "ByToken{{access:{access:?}}}"),
            Self::ById { id } => write!(f, "ById{{id:{id:?}}}"),
            Self::ByRefresh { refresh } => write!(f, "ByRefresh{{refresh:{refresh:?}}}"),
            Self::DeleteByToken { access } => write!(f, "DeleteByToken{{access:{access:?}}}"),
            Self::DeleteById { id } => write!(f, "DeleteById{{id:{id:?}}}"),
            Self::StoreClient { id, tag } => write!(f, "StoreClient{{id:{id:?}, tag:{tag}}}"),
            Self::LoadClient { id } => write!(f, "LoadClient{{id:{id:?}}}"),
            Self::ListClients => f.write_str("ListClients"),
            Self::DeleteClient { id } => write!(f, "DeleteClient{{id:{id:?}}}"),
            Self::Cleanup => f.write_str("Cleanup"),
            Self::Flush => f.write_str("Flush"),
            Self::Advance(step) => write!(f, "Advance({step:?})"),
        }
    }
}

/// The state value of `key`.
pub(crate) fn state_key(key: Key) -> String {
    key.text("st-")
}

/// The code of `key`.
pub(crate) fn code_key(key: Key) -> String {
    key.text("code-")
}

/// The session id of `key`.
pub(crate) fn session_id(key: Key) -> String {
    key.text("sess-")
}

/// The client id of `key`.
pub(crate) fn client_id(key: Key) -> String {
    key.text("client-")
}

/// The raw token of `tok`.
pub(crate) fn token(tok: Tok) -> String {
    tok.text()
}

pub(crate) fn state_record(key: Key, expires: Exp, now: Timestamp) -> Arc<StateRecord> {
    let mut r = StateRecord::new(state_key(key), expires.at(now), now);
    r.client_state = Some(format!("cs-{}", key.0));
    Arc::new(r)
}

pub(crate) fn code_record(
    key: Key,
    session: Key,
    expires: Exp,
    now: Timestamp,
) -> Arc<AuthCodeRecord> {
    let mut r = AuthCodeRecord::new(code_key(key), session_id(session), expires.at(now), now);
    r.scopes = vec!["openid".to_owned()];
    Arc::new(r)
}

pub(crate) fn session_record(
    id: Key,
    access: Tok,
    refresh: Option<Tok>,
    expires: Option<Exp>,
    refresh_expires: Option<Exp>,
    tag: u8,
    now: Timestamp,
) -> Arc<StoredSession> {
    let user = UserInfo::new("github", format!("user-{}", id.0), format!("tag-{tag}"));
    let mut s = StoredSession::new(session_id(id), user, token(access), now, now);
    s.access_expires_at = expires.map(|e| e.at(now));
    s.refresh_token = refresh.map(|r| Secret::new(token(r)));
    s.refresh_expires_at = refresh.and(refresh_expires).map(|e| e.at(now));
    Arc::new(s)
}

pub(crate) fn client_record(id: Key, tag: u8, now: Timestamp) -> Arc<ClientRecord> {
    let mut c = ClientRecord::new(client_id(id), now);
    c.client_name = Some(format!("tag-{tag}"));
    Arc::new(c)
}

/// A key of the pool, now and then the empty key or one with a NUL byte.
fn key() -> impl Strategy<Value = Key> {
    prop_oneof![30 => 0..KEYS, 1 => Just(EMPTY), 1 => Just(NUL)].prop_map(Key)
}

/// A token of the pool, now and then the empty token or one with a NUL byte.
fn tok() -> impl Strategy<Value = Tok> {
    prop_oneof![30 => 0..TOKENS, 1 => Just(EMPTY), 1 => Just(NUL)].prop_map(Tok)
}

/// Expiries around the cache's skew (1 s), negative TTL (5 s) and TTL cap
/// (20 s), and far beyond; one already past.
fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        2 => Just(1_000i64),
        2 => Just(2_000),
        3 => Just(5_000),
        3 => Just(20_000),
        3 => Just(30_000),
        4 => Just(120_000),
        4 => Just(3_600_000),
        1 => Just(-5_000),
        1 => Just(0),
        1 => Just(1),
    ]
    .prop_map(Exp)
}

/// Clock steps that cross the buffer's `max_delay` (2 s), the cache's skew,
/// negative TTL and cap, and the records' expiries (the same values, so that a
/// run lands exactly on an expiry as well as past it).
fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(1u64),
        3 => Just(500),
        4 => Just(1_000),
        4 => Just(2_000),
        3 => Just(3_000),
        3 => Just(5_000),
        2 => Just(10_000),
        2 => Just(20_000),
        2 => Just(31_000),
        1 => Just(120_000),
        1 => Just(3_600_000),
        1 => Just(86_400_000),
    ]
    .prop_map(Step)
}

fn store_session() -> impl Strategy<Value = Op> {
    (
        key(),
        tok(),
        prop::option::weighted(0.7, tok()),
        prop::option::weighted(0.95, exp()),
        prop::option::weighted(0.7, exp()),
        0..3u8,
    )
        .prop_map(
            |(id, access, refresh, expires, refresh_expires, tag)| Op::StoreSession {
                id,
                access,
                refresh,
                expires,
                refresh_expires,
                tag,
            },
        )
}

/// Any operation, weighted towards sessions (the richest rules) and clock steps.
pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (key(), exp()).prop_map(|(key, expires)| Op::StoreState { key, expires }),
        2 => key().prop_map(|key| Op::ConsumeState { key }),
        3 => (key(), key(), exp()).prop_map(|(key, session, expires)| Op::StoreCode {
            key,
            session,
            expires
        }),
        2 => key().prop_map(|key| Op::LoadCode { key }),
        2 => key().prop_map(|key| Op::DeleteCode { key }),
        2 => key().prop_map(|key| Op::TryDeleteCode { key }),
        8 => store_session(),
        4 => tok().prop_map(|access| Op::ByToken { access }),
        3 => key().prop_map(|id| Op::ById { id }),
        3 => tok().prop_map(|refresh| Op::ByRefresh { refresh }),
        2 => tok().prop_map(|access| Op::DeleteByToken { access }),
        2 => key().prop_map(|id| Op::DeleteById { id }),
        2 => (key(), 0..3u8).prop_map(|(id, tag)| Op::StoreClient { id, tag }),
        2 => key().prop_map(|id| Op::LoadClient { id }),
        1 => Just(Op::ListClients),
        2 => key().prop_map(|id| Op::DeleteClient { id }),
        2 => Just(Op::Cleanup),
        2 => Just(Op::Flush),
        8 => step().prop_map(Op::Advance),
    ]
}
