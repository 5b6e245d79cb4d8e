//! The invalidation feed: what writes on other instances removed or replaced
//! (`DESIGN.md` section 7).
//!
//! A store that has the [`InvalidationFeed`] capability writes, in the same
//! transaction as every write that can invalidate a cached record, one log row
//! per cache key the write removed or replaced (hashes and ids only). A cache
//! polls the log with the [`Watermark`] of its previous poll and evicts what it
//! gets back; [`CacheMachine`](crate::cache::CacheMachine) decides everything
//! else (when to poll, when a hit may be served, what a gap means).
//!
//! Hints ([`HintBoard`]) only wake a poller early. The poll is the truth: a lost
//! hint costs latency, never correctness.
//!
//! Every backend logs the same keys for the same write, and stores a key as a
//! `(kind, bytes)` pair through [`encode_key`] and [`decode_key`]:
//!
//! ```
//! use tokenstore_core::cache::CacheKey;
//! use tokenstore_core::feed::{decode_key, encode_key};
//! use tokenstore_core::{SessionKey, TokenHash};
//!
//! let key = CacheKey::Session(SessionKey::Access(TokenHash::of("access-token")));
//! let (kind, bytes) = encode_key(&key);
//! assert_eq!(decode_key(kind, &bytes), Some(key));
//! assert_eq!(decode_key(99, &bytes), None);
//! ```

use crate::cache::CacheKey;
use crate::{BoxFuture, SessionKey, StoreError, StoredSession, TokenHash};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A position in a store's invalidation log, as that store counts it
/// (PostgreSQL: a transaction-id horizon; SQLite: a rowid; memory: a counter).
/// Only the store that handed it out interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(pub u64);

/// One poll's answer: see [`InvalidationFeed::invalidations_since`].
#[derive(Clone, PartialEq, Eq)]
pub struct Invalidations {
    /// The cache keys of every record that a write committed after the asked
    /// watermark removed or replaced. Duplicates, and keys from before the
    /// watermark, are allowed (evicting twice is harmless); a missing key is not.
    pub keys: Vec<CacheKey>,
    /// Where the next poll starts.
    pub watermark: Watermark,
    /// The log no longer holds everything after the asked watermark (it was
    /// pruned past it, or the store is not the one that handed it out): the
    /// caller cannot know what it missed and must drop every cached entry.
    pub gap: bool,
}

impl fmt::Debug for Invalidations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys show only their kinds (`CacheKey`'s own Debug).
        f.debug_struct("Invalidations")
            .field("keys", &self.keys.len())
            .field("watermark", &self.watermark)
            .field("gap", &self.gap)
            .finish()
    }
}

/// Optional: the keys that writes (on any instance) invalidated since a
/// watermark; see [`TokenStore::invalidation_feed`](crate::TokenStore::invalidation_feed).
///
/// The promise a cache builds on: one call's answer holds every key logged by
/// every write that committed before the call was made and after the asked
/// watermark (or says `gap`).
pub trait InvalidationFeed: Send + Sync {
    /// The keys invalidated after `since`, and the watermark to ask from next.
    /// `None` asks only for the current watermark (an empty cache needs no keys
    /// from before it started): `keys` is then empty and `gap` false.
    ///
    /// The answer must be computed after the call was made (so a write that
    /// returned before it is included) and in one snapshot of the log.
    fn invalidations_since(
        &self,
        since: Option<Watermark>,
    ) -> BoxFuture<'_, Result<Invalidations, StoreError>>;

    /// Wake-up hints, when the store has them: raised after a logged write
    /// committed (possibly on another instance) and whenever hints may have been
    /// lost (a reconnect), so a poller polls at once instead of on its timer.
    fn hints(&self) -> Option<&HintBoard> {
        None
    }
}

/// A counter of wake-ups that pollers wait on; see [`InvalidationFeed::hints`].
///
/// ```
/// use tokenstore_core::feed::HintBoard;
///
/// let board = HintBoard::new();
/// let seen = board.generation();
/// board.raise();
/// // A waiter that last saw `seen` wakes at once.
/// let now = futures_lite::future::block_on(board.wait_past(seen));
/// assert!(now > seen);
/// ```
#[derive(Default)]
pub struct HintBoard {
    generation: AtomicU64,
    event: event_listener::Event,
}

impl HintBoard {
    /// A board no hint was raised on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises a hint: every waiter wakes.
    pub fn raise(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.event.notify(usize::MAX);
    }

    /// How many hints were raised so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Completes with the generation once it is past `seen`.
    pub async fn wait_past(&self, seen: u64) -> u64 {
        loop {
            let now = self.generation();
            if now > seen {
                return now;
            }
            let listener = self.event.listen();
            let now = self.generation();
            if now > seen {
                return now;
            }
            listener.await;
        }
    }
}

impl fmt::Debug for HintBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HintBoard")
            .field("generation", &self.generation())
            .finish()
    }
}

/// Decides when a store sends a wake-up hint (PostgreSQL's `NOTIFY`) after
/// logged writes commit: at once when none is in flight, else once more right
/// after the one in flight, however many writes committed meanwhile. Hints are
/// sent after commit on their own connection, never inside a write's
/// transaction.
///
/// ```
/// use tokenstore_core::feed::HintCoalescer;
///
/// let mut hints = HintCoalescer::default();
/// assert!(hints.committed()); // send one now
/// assert!(!hints.committed()); // one is in flight: folded
/// assert!(!hints.committed());
/// assert!(hints.sent()); // the folded ones: send one more
/// assert!(!hints.sent()); // nothing new: idle
/// ```
#[derive(Debug, Default, Clone)]
pub struct HintCoalescer {
    in_flight: bool,
    pending: bool,
}

impl HintCoalescer {
    /// A logged write committed. `true`: send a hint now.
    pub fn committed(&mut self) -> bool {
        if self.in_flight {
            self.pending = true;
            false
        } else {
            self.in_flight = true;
            true
        }
    }

    /// The hint in flight was sent (or failed). `true`: send another now, for
    /// the writes that committed meanwhile.
    pub fn sent(&mut self) -> bool {
        if self.pending {
            self.pending = false;
            true
        } else {
            self.in_flight = false;
            false
        }
    }
}

/// What a write must log: the keys of every record it removed or replaced and
/// of the record it stored. States are never cached and log nothing.
///
/// Backends call these with what the write's own statements returned (a
/// rotation's replaced sessions come from its `DELETE ... RETURNING`), so every
/// backend logs the same keys.
pub mod log {
    use super::{CacheKey, StoredSession, TokenHash};

    /// A session was stored: its own keys and those of every session it replaced.
    pub fn stored_session<'a>(
        stored: &StoredSession,
        replaced: impl IntoIterator<Item = &'a StoredSession>,
    ) -> Vec<CacheKey> {
        let mut keys = CacheKey::of_session(stored);
        for old in replaced {
            keys.extend(CacheKey::of_session(old));
        }
        keys
    }

    /// A session was deleted (by token or by id): every key it was reachable by.
    pub fn deleted_session(deleted: &StoredSession) -> Vec<CacheKey> {
        CacheKey::of_session(deleted)
    }

    /// A session row was removed or replaced, known only by its stored columns
    /// (the backend's `RETURNING` gives these without decoding the row).
    pub fn session_columns(
        access: TokenHash,
        refresh: Option<TokenHash>,
        session_id: &str,
    ) -> Vec<CacheKey> {
        use crate::SessionKey;
        let mut keys = vec![
            CacheKey::Session(SessionKey::Access(access)),
            CacheKey::Session(SessionKey::Id(session_id.to_owned())),
        ];
        keys.extend(refresh.map(|h| CacheKey::Session(SessionKey::Refresh(h))));
        keys
    }

    /// An authorization code was stored, deleted or taken: logged by its hash.
    pub fn auth_code(code: &str) -> CacheKey {
        CacheKey::AuthCode(TokenHash::of(code))
    }

    /// A client was stored or deleted.
    pub fn client(client_id: &str) -> CacheKey {
        CacheKey::Client(client_id.to_owned())
    }
}

/// Log-row kind: a session by access-token hash.
pub const KIND_SESSION_ACCESS: i16 = 1;
/// Log-row kind: a session by refresh-token hash.
pub const KIND_SESSION_REFRESH: i16 = 2;
/// Log-row kind: a session by id.
pub const KIND_SESSION_ID: i16 = 3;
/// Log-row kind: an authorization code by hash.
pub const KIND_AUTH_CODE: i16 = 4;
/// Log-row kind: a client by id.
pub const KIND_CLIENT: i16 = 5;

/// A key as a log row stores it: `(kind, bytes)`. Tokens and codes are stored
/// as their SHA-256 digests (32 bytes); ids as their UTF-8 bytes.
pub fn encode_key(key: &CacheKey) -> (i16, Vec<u8>) {
    match key {
        CacheKey::Session(SessionKey::Access(h)) => (KIND_SESSION_ACCESS, h.as_bytes().to_vec()),
        CacheKey::Session(SessionKey::Refresh(h)) => (KIND_SESSION_REFRESH, h.as_bytes().to_vec()),
        CacheKey::Session(SessionKey::Id(id)) => (KIND_SESSION_ID, id.as_bytes().to_vec()),
        CacheKey::AuthCode(h) => (KIND_AUTH_CODE, h.as_bytes().to_vec()),
        CacheKey::Client(id) => (KIND_CLIENT, id.as_bytes().to_vec()),
    }
}

/// The key a log row stores, or `None` for a row this version cannot read (an
/// unknown kind, a digest of the wrong length, an id that is not UTF-8). A
/// poller that meets one must treat the answer as a gap.
pub fn decode_key(kind: i16, bytes: &[u8]) -> Option<CacheKey> {
    let hash = || <[u8; 32]>::try_from(bytes).ok().map(TokenHash::from_bytes);
    let text = || std::str::from_utf8(bytes).ok().map(str::to_owned);
    Some(match kind {
        KIND_SESSION_ACCESS => CacheKey::Session(SessionKey::Access(hash()?)),
        KIND_SESSION_REFRESH => CacheKey::Session(SessionKey::Refresh(hash()?)),
        KIND_SESSION_ID => CacheKey::Session(SessionKey::Id(text()?)),
        KIND_AUTH_CODE => CacheKey::AuthCode(hash()?),
        KIND_CLIENT => CacheKey::Client(text()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_bad_rows_are_refused() {
        let keys = [
            CacheKey::Session(SessionKey::Access(TokenHash::of("a"))),
            CacheKey::Session(SessionKey::Refresh(TokenHash::of("r"))),
            CacheKey::Session(SessionKey::Id("sid-ü".into())),
            CacheKey::AuthCode(TokenHash::of("code")),
            CacheKey::Client("client".into()),
        ];
        for key in keys {
            let (kind, bytes) = encode_key(&key);
            assert_eq!(decode_key(kind, &bytes), Some(key));
        }
        assert_eq!(decode_key(KIND_SESSION_ACCESS, &[0; 31]), None);
        assert_eq!(decode_key(KIND_CLIENT, &[0xff, 0xfe]), None);
        assert_eq!(decode_key(0, b"x"), None);
    }

    #[test]
    fn debug_shows_no_key() {
        let hash = TokenHash::of("access-token");
        let found = Invalidations {
            keys: vec![
                CacheKey::Session(SessionKey::Access(hash)),
                CacheKey::Session(SessionKey::Id("session-id-7".into())),
                CacheKey::Client("client-9".into()),
            ],
            watermark: Watermark(12),
            gap: false,
        };
        let shown = format!("{found:?}");
        assert!(shown.contains("keys: 3"), "{shown}");
        for secret in [
            hash.to_hex().as_str(),
            "session-id-7",
            "client-9",
            "access-token",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn a_waiter_sees_a_hint_raised_before_it_waited() {
        let board = HintBoard::new();
        board.raise();
        assert_eq!(futures_lite::future::block_on(board.wait_past(0)), 1);
    }
}
