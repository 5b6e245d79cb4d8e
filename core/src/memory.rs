//! [`MemoryTokenStore`]: the in-memory backend and the reference model of the
//! contract.

use crate::cache::CacheKey;
use crate::feed::{self, HintBoard, InvalidationFeed, Invalidations, Watermark};
use crate::store::BoxFuture;
use crate::{
    AuthCodeRecord, BulkSessionStore, CleanupCounts, ClientRecord, Clock, SessionVisibility,
    StateRecord, StoreError, StoredSession, Timestamp, TokenHash, TokenStore, validate_key,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Everything a store holds, expired records included, ordered by key.
///
/// For tests that compare whole stores (for example a bulk call against the loop
/// of single calls). Sessions are ordered by access-token hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contents {
    /// States by state value.
    pub states: Vec<Arc<StateRecord>>,
    /// Codes by code.
    pub auth_codes: Vec<Arc<AuthCodeRecord>>,
    /// Sessions by access-token hash.
    pub sessions: Vec<Arc<StoredSession>>,
    /// Clients by client id.
    pub clients: Vec<Arc<ClientRecord>>,
}

/// The in-memory [`TokenStore`], and the reference model every other backend and
/// wrapper stack is compared with.
///
/// It implements every rule of the contract exactly, including the session
/// uniqueness rule, and offers the bulk capability (as loops of the single
/// operations, under one lock).
///
/// ```
/// use std::sync::Arc;
/// use tokenstore_core::{Clock, ManualClock, MemoryTokenStore, StateRecord, Timestamp, TokenStore};
///
/// # futures_lite::future::block_on(async {
/// let clock = ManualClock::new(Timestamp::from_unix_secs(1_000));
/// let store = MemoryTokenStore::new(clock.clone());
/// let expires = clock.now() + std::time::Duration::from_secs(600);
/// store.store_state(Arc::new(StateRecord::new("st-1", expires, clock.now()))).await?;
/// assert!(store.consume_state("st-1").await?.is_some());
/// assert!(store.consume_state("st-1").await?.is_none()); // one-time
/// # Ok::<(), tokenstore_core::StoreError>(())
/// # }).unwrap();
/// ```
pub struct MemoryTokenStore {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    /// Wake-ups for followers of the log, when it is kept with hints.
    hints: Option<HintBoard>,
    /// Whether the invalidation log is kept.
    logged: bool,
}

#[derive(Default)]
struct Inner {
    closed: bool,
    states: HashMap<String, Arc<StateRecord>>,
    codes: HashMap<String, Arc<AuthCodeRecord>>,
    sessions: HashMap<TokenHash, Arc<StoredSession>>,
    by_id: HashMap<String, TokenHash>,
    by_refresh: HashMap<TokenHash, TokenHash>,
    clients: BTreeMap<String, Arc<ClientRecord>>,
    /// The invalidation log, when kept.
    log: Option<Log>,
}

/// The invalidation log: every key a write removed or replaced, numbered from
/// 1; the watermark is the number of the last entry seen.
struct Log {
    entries: VecDeque<(u64, Timestamp, CacheKey)>,
    /// The number of the last entry logged (0: none yet).
    last: u64,
    /// The number of the last entry pruned (0: none yet).
    pruned_through: u64,
    retention: Duration,
}

impl Log {
    fn push(&mut self, now: Timestamp, keys: Vec<CacheKey>) {
        for key in keys {
            self.last += 1;
            self.entries.push_back((self.last, now, key));
        }
        while let Some(&(n, at, _)) = self.entries.front() {
            if now.saturating_duration_since(at) <= self.retention {
                break;
            }
            self.pruned_through = n;
            self.entries.pop_front();
        }
    }

    fn since(&self, since: Option<Watermark>) -> Invalidations {
        let watermark = Watermark(self.last);
        let Some(Watermark(from)) = since else {
            return Invalidations {
                keys: Vec::new(),
                watermark,
                gap: false,
            };
        };
        Invalidations {
            keys: self
                .entries
                .iter()
                .filter(|(n, ..)| *n > from)
                .map(|(_, _, key)| key.clone())
                .collect(),
            watermark,
            gap: from < self.pruned_through || from > self.last,
        }
    }
}

impl MemoryTokenStore {
    /// An empty store that tells time with `clock`.
    pub fn new(clock: impl Clock + 'static) -> Self {
        Self {
            clock: Arc::new(clock),
            inner: Mutex::new(Inner::default()),
            hints: None,
            logged: false,
        }
    }

    /// Keeps an invalidation log, so the store has the
    /// [`InvalidationFeed`] capability: several caches sharing this store (as
    /// `Arc<MemoryTokenStore>`, one per simulated instance) each learn what
    /// writes through the others removed or replaced. Entries older than
    /// `retention` are pruned; a follower further behind gets a gap. Every
    /// logged write also raises a [hint](InvalidationFeed::hints).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tokenstore_core::{Clock, ManualClock, MemoryTokenStore, StoredSession, Timestamp, TokenStore, UserInfo};
    ///
    /// # futures_lite::future::block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_unix_secs(1_000));
    /// let store = MemoryTokenStore::new(clock.clone()).with_invalidation_log(Duration::from_secs(600));
    /// let feed = store.invalidation_feed().expect("the log is kept");
    /// let start = feed.invalidations_since(None).await?.watermark;
    ///
    /// let session = StoredSession::new(
    ///     "sid", UserInfo::new("p", "u", "n"), "tok", clock.now() + Duration::from_secs(60), clock.now(),
    /// );
    /// store.store_session(Arc::new(session)).await?;
    /// let found = feed.invalidations_since(Some(start)).await?;
    /// assert_eq!(found.keys.len(), 2); // by access token and by id
    /// assert!(!found.gap);
    /// # Ok::<(), tokenstore_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn with_invalidation_log(self, retention: Duration) -> Self {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log = Some(Log {
            entries: VecDeque::new(),
            last: 0,
            pruned_through: 0,
            retention,
        });
        Self {
            hints: Some(HintBoard::new()),
            logged: true,
            ..self
        }
    }

    /// Keeps the log without raising hints: followers learn of writes only on
    /// their poll timer (as on SQLite).
    pub fn without_hints(self) -> Self {
        Self {
            hints: None,
            ..self
        }
    }

    /// Logs `keys` (when the log is kept) and raises a hint.
    fn log(&self, inner: &mut Inner, now: Timestamp, keys: Vec<CacheKey>) {
        if let Some(log) = inner.log.as_mut().filter(|_| !keys.is_empty()) {
            log.push(now, keys);
            if let Some(hints) = &self.hints {
                hints.raise();
            }
        }
    }

    /// Everything held, expired records included.
    pub fn contents(&self) -> Contents {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut states: Vec<_> = inner.states.values().cloned().collect();
        states.sort_by(|a, b| a.state.cmp(&b.state));
        let mut auth_codes: Vec<_> = inner.codes.values().cloned().collect();
        auth_codes.sort_by(|a, b| a.code.cmp(&b.code));
        let mut sessions: Vec<_> = inner.sessions.iter().collect();
        sessions.sort_by_key(|(hash, _)| **hash);
        Contents {
            states,
            auth_codes,
            sessions: sessions.into_iter().map(|(_, s)| s.clone()).collect(),
            clients: inner.clients.values().cloned().collect(),
        }
    }

    /// Locks the state for an operation at the current time; fails once closed.
    fn open(&self) -> Result<(MutexGuard<'_, Inner>, Timestamp), StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.closed {
            return Err(StoreError::Closed);
        }
        Ok((inner, self.clock.now()))
    }
}

impl fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MemoryTokenStore")
            .field("closed", &inner.closed)
            .field("states", &inner.states.len())
            .field("auth_codes", &inner.codes.len())
            .field("sessions", &inner.sessions.len())
            .field("clients", &inner.clients.len())
            .finish()
    }
}

impl Inner {
    fn remove_session(&mut self, access: &TokenHash) -> Option<Arc<StoredSession>> {
        let old = self.sessions.remove(access)?;
        self.by_id.remove(&old.session_id);
        if let Some(refresh) = old.refresh_hash() {
            self.by_refresh.remove(&refresh);
        }
        Some(old)
    }

    /// Stores `record`; returns the keys to log (its own and those of every
    /// session it replaced).
    fn insert_session(&mut self, record: Arc<StoredSession>) -> Vec<CacheKey> {
        let access = record.access_hash();
        let refresh = record.refresh_hash();
        let mut replaced = Vec::new();
        replaced.extend(self.remove_session(&access));
        if let Some(old) = self.by_id.get(&record.session_id).copied() {
            replaced.extend(self.remove_session(&old));
        }
        if let Some(old) = refresh.and_then(|r| self.by_refresh.get(&r).copied()) {
            replaced.extend(self.remove_session(&old));
        }
        let keys = feed::log::stored_session(&record, replaced.iter().map(|s| &**s));
        let record = if record.issued_at == Some(record.created_at) {
            record
        } else {
            Arc::new(StoredSession::clone(&record).normalized())
        };
        self.by_id.insert(record.session_id.clone(), access);
        if let Some(refresh) = refresh {
            self.by_refresh.insert(refresh, access);
        }
        self.sessions.insert(access, record);
        keys
    }

    /// Applies the by-access rule to the session at `access`.
    fn visible_by_access(
        &mut self,
        access: TokenHash,
        now: Timestamp,
    ) -> Option<Arc<StoredSession>> {
        let session = self.sessions.get(&access)?;
        match session.visibility_by_access(now) {
            SessionVisibility::Live => Some(session.clone()),
            SessionVisibility::Hidden => None,
            SessionVisibility::Dead => {
                self.remove_session(&access);
                None
            }
        }
    }

    /// Deletes the sessions at `hashes`: how many, and the keys to log.
    fn delete_sessions(&mut self, hashes: &[TokenHash]) -> (u64, Vec<CacheKey>) {
        let mut keys = Vec::new();
        let mut count = 0;
        for h in hashes {
            if let Some(old) = self.remove_session(h) {
                count += 1;
                keys.extend(feed::log::deleted_session(&old));
            }
        }
        (count, keys)
    }

    fn cleanup(&mut self, now: Timestamp) -> CleanupCounts {
        let states = self.states.len();
        self.states.retain(|_, s| !s.is_expired(now));
        let codes = self.codes.len();
        self.codes.retain(|_, c| !c.is_expired(now));
        let dead: Vec<TokenHash> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_dead(now))
            .map(|(h, _)| *h)
            .collect();
        CleanupCounts {
            states: (states - self.states.len()) as u64,
            auth_codes: (codes - self.codes.len()) as u64,
            // Removed because dead: no cache serves them, so nothing is logged.
            sessions: self.delete_sessions(&dead).0,
        }
    }
}

impl TokenStore for MemoryTokenStore {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        record.validate()?;
        let (mut inner, _) = self.open()?;
        inner.states.insert(record.state.clone(), record);
        Ok(())
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        validate_key("state", state)?;
        let (mut inner, now) = self.open()?;
        Ok(inner.states.remove(state).filter(|s| !s.is_expired(now)))
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        record.validate()?;
        let (mut inner, now) = self.open()?;
        let key = feed::log::auth_code(&record.code);
        inner.codes.insert(record.code.clone(), record);
        self.log(&mut inner, now, vec![key]);
        Ok(())
    }

    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        validate_key("code", code)?;
        let (mut inner, now) = self.open()?;
        let found = inner.codes.get(code).cloned();
        match found {
            Some(c) if c.is_expired(now) => {
                inner.codes.remove(code);
                Ok(None)
            }
            other => Ok(other),
        }
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        validate_key("code", code)?;
        let (mut inner, now) = self.open()?;
        if inner.codes.remove(code).is_some() {
            self.log(&mut inner, now, vec![feed::log::auth_code(code)]);
        }
        Ok(())
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        validate_key("code", code)?;
        let (mut inner, now) = self.open()?;
        let removed = inner.codes.remove(code);
        if removed.is_some() {
            self.log(&mut inner, now, vec![feed::log::auth_code(code)]);
        }
        Ok(removed.is_some_and(|c| !c.is_expired(now)))
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        record.validate()?;
        let (mut inner, now) = self.open()?;
        let keys = inner.insert_session(record);
        self.log(&mut inner, now, keys);
        Ok(())
    }

    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("access_token", access_token)?;
        let (mut inner, now) = self.open()?;
        Ok(inner.visible_by_access(TokenHash::of(access_token), now))
    }

    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("session_id", session_id)?;
        let (mut inner, now) = self.open()?;
        let Some(access) = inner.by_id.get(session_id).copied() else {
            return Ok(None);
        };
        Ok(inner.visible_by_access(access, now))
    }

    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("refresh_token", refresh_token)?;
        let (mut inner, now) = self.open()?;
        let Some(access) = inner.by_refresh.get(&TokenHash::of(refresh_token)).copied() else {
            return Ok(None);
        };
        let session = inner.sessions[&access].clone();
        match session.visibility_by_refresh(now) {
            SessionVisibility::Live => Ok(Some(session)),
            SessionVisibility::Hidden => Ok(None),
            SessionVisibility::Dead => {
                inner.remove_session(&access);
                Ok(None)
            }
        }
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        validate_key("access_token", access_token)?;
        let (mut inner, now) = self.open()?;
        let (_, keys) = inner.delete_sessions(&[TokenHash::of(access_token)]);
        self.log(&mut inner, now, keys);
        Ok(())
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        validate_key("session_id", session_id)?;
        let (mut inner, now) = self.open()?;
        if let Some(access) = inner.by_id.get(session_id).copied() {
            let (_, keys) = inner.delete_sessions(&[access]);
            self.log(&mut inner, now, keys);
        }
        Ok(())
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        record.validate()?;
        let (mut inner, now) = self.open()?;
        let key = feed::log::client(&record.client_id);
        inner.clients.insert(record.client_id.clone(), record);
        self.log(&mut inner, now, vec![key]);
        Ok(())
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        validate_key("client_id", client_id)?;
        let (inner, _) = self.open()?;
        Ok(inner.clients.get(client_id).cloned())
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        let (inner, _) = self.open()?;
        Ok(inner.clients.values().cloned().collect())
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        validate_key("client_id", client_id)?;
        let (mut inner, now) = self.open()?;
        if inner.clients.remove(client_id).is_some() {
            self.log(&mut inner, now, vec![feed::log::client(client_id)]);
        }
        Ok(())
    }

    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        let (mut inner, now) = self.open()?;
        Ok(inner.cleanup(now))
    }

    async fn close(&self) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.closed = true;
        Ok(())
    }

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        Some(self)
    }

    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        self.logged.then_some(self as &dyn InvalidationFeed)
    }
}

impl InvalidationFeed for MemoryTokenStore {
    fn invalidations_since(
        &self,
        since: Option<Watermark>,
    ) -> BoxFuture<'_, Result<Invalidations, StoreError>> {
        Box::pin(async move {
            let (inner, _) = self.open()?;
            Ok(inner.log.as_ref().map_or(
                Invalidations {
                    keys: Vec::new(),
                    watermark: Watermark(0),
                    gap: true,
                },
                |log| log.since(since),
            ))
        })
    }

    fn hints(&self) -> Option<&HintBoard> {
        self.hints.as_ref()
    }
}

impl BulkSessionStore for MemoryTokenStore {
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for s in &sessions {
                s.validate()?;
            }
            let (mut inner, now) = self.open()?;
            let mut keys = Vec::new();
            for s in sessions {
                keys.extend(inner.insert_session(s));
            }
            self.log(&mut inner, now, keys);
            Ok(())
        })
    }

    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let (mut inner, now) = self.open()?;
            let (count, keys) = inner.delete_sessions(&hashes);
            self.log(&mut inner, now, keys);
            Ok(count)
        })
    }

    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
        Box::pin(self.cleanup_expired())
    }
}
