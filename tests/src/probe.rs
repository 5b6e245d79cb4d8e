//! Delegates that let a test see and steer what a wrapper asks of its backend.
//!
//! - [`CountingStore`] forwards every call and counts it per method
//!   ([`Calls`]), bulk calls included.
//! - [`GatedStore`] forwards every call, but once its [`Gate`] is armed, a
//!   `load_session_by_token` reads the backend and then waits until the test
//!   opens the gate: a delegate call held half way, for races.
//! - [`WithoutBulk`] forwards every call but hides the bulk and atomic-batch
//!   capabilities, so a wrapper has to fall back to single calls.
//! - [`FlakyStore`] fails writes on demand (a number of times, or while a
//!   switch is on) on every path a write can take: single calls, bulk calls
//!   and atomic batches; its writes can also be held at a [`Gate`] or slowed
//!   down.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BoxFuture, BulkSessionStore, CleanupCounts, ClientRecord,
    StateRecord, StoreError, StoredSession, TokenHash, TokenStore,
};

/// How many times each method of a [`CountingStore`] was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)] // One field per method, named after it.
pub struct Calls {
    pub store_state: u64,
    pub consume_state: u64,
    pub store_auth_code: u64,
    pub load_auth_code: u64,
    pub delete_auth_code: u64,
    pub try_delete_auth_code: u64,
    pub store_session: u64,
    pub load_session_by_token: u64,
    pub load_session_by_id: u64,
    pub load_session_by_refresh_token: u64,
    pub delete_session_by_token: u64,
    pub delete_session_by_id: u64,
    pub store_client: u64,
    pub load_client: u64,
    pub list_clients: u64,
    pub delete_client: u64,
    pub cleanup_expired: u64,
    pub close: u64,
    pub bulk_store_sessions: u64,
    pub bulk_delete_sessions_by_hash: u64,
    pub bulk_cleanup_expired: u64,
}

impl Calls {
    /// Session loads of every kind (by token, id and refresh token).
    pub fn session_loads(&self) -> u64 {
        self.load_session_by_token + self.load_session_by_id + self.load_session_by_refresh_token
    }
}

/// Forwards every call to `inner` and counts it (see [`CountingStore::calls`]).
///
/// A call is counted when it starts, before the inner store answers. The bulk
/// capability is offered exactly when `inner` has it, and bulk calls are
/// counted too.
pub struct CountingStore<S> {
    inner: S,
    calls: Mutex<Calls>,
}

impl<S: TokenStore> CountingStore<S> {
    /// Wraps `inner`, with every count at zero.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            calls: Mutex::new(Calls::default()),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The counts so far.
    pub fn calls(&self) -> Calls {
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, field: fn(&mut Calls) -> &mut u64) {
        *field(&mut self.calls.lock().unwrap_or_else(PoisonError::into_inner)) += 1;
    }
}

impl<S: fmt::Debug> fmt::Debug for CountingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingStore")
            .field("inner", &self.inner)
            .field(
                "calls",
                &*self.calls.lock().unwrap_or_else(PoisonError::into_inner),
            )
            .finish()
    }
}

impl<S: TokenStore> TokenStore for CountingStore<S> {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        self.count(|c| &mut c.store_state);
        self.inner.store_state(record).await
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        self.count(|c| &mut c.consume_state);
        self.inner.consume_state(state).await
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        self.count(|c| &mut c.store_auth_code);
        self.inner.store_auth_code(record).await
    }

    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        self.count(|c| &mut c.load_auth_code);
        self.inner.load_auth_code(code).await
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        self.count(|c| &mut c.delete_auth_code);
        self.inner.delete_auth_code(code).await
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        self.count(|c| &mut c.try_delete_auth_code);
        self.inner.try_delete_auth_code(code).await
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        self.count(|c| &mut c.store_session);
        self.inner.store_session(record).await
    }

    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.count(|c| &mut c.load_session_by_token);
        self.inner.load_session_by_token(access_token).await
    }

    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.count(|c| &mut c.load_session_by_id);
        self.inner.load_session_by_id(session_id).await
    }

    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.count(|c| &mut c.load_session_by_refresh_token);
        self.inner
            .load_session_by_refresh_token(refresh_token)
            .await
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        self.count(|c| &mut c.delete_session_by_token);
        self.inner.delete_session_by_token(access_token).await
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        self.count(|c| &mut c.delete_session_by_id);
        self.inner.delete_session_by_id(session_id).await
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        self.count(|c| &mut c.store_client);
        self.inner.store_client(record).await
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        self.count(|c| &mut c.load_client);
        self.inner.load_client(client_id).await
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        self.count(|c| &mut c.list_clients);
        self.inner.list_clients().await
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.count(|c| &mut c.delete_client);
        self.inner.delete_client(client_id).await
    }

    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        self.count(|c| &mut c.cleanup_expired);
        self.inner.cleanup_expired().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.count(|c| &mut c.close);
        self.inner.close().await
    }

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.inner.bulk().map(|_| self as &dyn BulkSessionStore)
    }
}

impl<S: TokenStore> BulkSessionStore for CountingStore<S> {
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.count(|c| &mut c.bulk_store_sessions);
        match self.inner.bulk() {
            Some(bulk) => bulk.bulk_store_sessions(sessions),
            None => Box::pin(async { Err(no_bulk()) }),
        }
    }

    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.count(|c| &mut c.bulk_delete_sessions_by_hash);
        match self.inner.bulk() {
            Some(bulk) => bulk.bulk_delete_sessions_by_hash(hashes),
            None => Box::pin(async { Err(no_bulk()) }),
        }
    }

    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
        self.count(|c| &mut c.bulk_cleanup_expired);
        match self.inner.bulk() {
            Some(bulk) => bulk.bulk_cleanup_expired(),
            None => Box::pin(async { Err(no_bulk()) }),
        }
    }
}

fn no_bulk() -> StoreError {
    StoreError::Backend("the inner store has no bulk capability".into())
}

/// Holds delegate calls half way until the test opens it.
///
/// A fresh gate is disarmed: calls pass. Once [`armed`](Self::arm), every
/// gated call announces itself ([`entered`](Self::entered)) and waits;
/// [`open`](Self::open) releases every waiting call and every later one, for
/// good.
pub struct Gate {
    armed: AtomicBool,
    entered_tx: smol::channel::Sender<()>,
    entered_rx: smol::channel::Receiver<()>,
    open_tx: smol::channel::Sender<()>,
    open_rx: smol::channel::Receiver<()>,
}

impl Gate {
    /// A disarmed, closed gate.
    pub fn new() -> Self {
        let (entered_tx, entered_rx) = smol::channel::unbounded();
        let (open_tx, open_rx) = smol::channel::unbounded();
        Self {
            armed: AtomicBool::new(false),
            entered_tx,
            entered_rx,
            open_tx,
            open_rx,
        }
    }

    /// From now on, gated calls wait for [`open`](Self::open).
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Releases every waiting call and lets every later one through.
    pub fn open(&self) {
        self.open_tx.close();
    }

    /// Waits until one more gated call has reached the gate.
    pub async fn entered(&self) {
        self.entered_rx
            .recv()
            .await
            .expect("the gate owns a sender");
    }

    /// Gated calls that reached the gate and were not yet awaited by
    /// [`entered`](Self::entered).
    pub fn unannounced(&self) -> usize {
        self.entered_rx.len()
    }

    /// Where a gated call stops while the gate is armed and closed.
    async fn pass(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        self.entered_tx
            .send(())
            .await
            .expect("the gate owns a receiver");
        // `recv` fails once the gate is opened (the channel is closed); nothing
        // is ever sent on it.
        let _ = self.open_rx.recv().await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("armed", &self.armed.load(Ordering::SeqCst))
            .field("open", &self.open_tx.is_closed())
            .finish()
    }
}

/// Forwards every call to `inner`; `load_session_by_token` and
/// `load_auth_code` pass its [`Gate`] after the inner store answered (so they
/// hold what they read while the test writes).
#[derive(Debug)]
pub struct GatedStore<S> {
    inner: S,
    gate: Gate,
}

impl<S: TokenStore> GatedStore<S> {
    /// Wraps `inner` behind a fresh, disarmed gate.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            gate: Gate::new(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The gate of `load_session_by_token` and `load_auth_code`.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl<S: TokenStore> TokenStore for GatedStore<S> {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        self.inner.store_state(record).await
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        self.inner.consume_state(state).await
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        self.inner.store_auth_code(record).await
    }

    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        let found = self.inner.load_auth_code(code).await;
        self.gate.pass().await;
        found
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        self.inner.delete_auth_code(code).await
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        self.inner.try_delete_auth_code(code).await
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        self.inner.store_session(record).await
    }

    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        let found = self.inner.load_session_by_token(access_token).await;
        self.gate.pass().await;
        found
    }

    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.inner.load_session_by_id(session_id).await
    }

    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.inner
            .load_session_by_refresh_token(refresh_token)
            .await
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        self.inner.delete_session_by_token(access_token).await
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        self.inner.delete_session_by_id(session_id).await
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        self.inner.store_client(record).await
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        self.inner.load_client(client_id).await
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        self.inner.list_clients().await
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.inner.delete_client(client_id).await
    }

    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        self.inner.cleanup_expired().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.inner.bulk()
    }
}

/// Forwards every call to `inner`, but offers neither the bulk nor the
/// atomic-batch capability (whatever `inner` has): the single-call path.
#[derive(Debug)]
pub struct WithoutBulk<S> {
    inner: S,
}

impl<S: TokenStore> WithoutBulk<S> {
    /// Wraps `inner`, hiding its capabilities.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: TokenStore> TokenStore for WithoutBulk<S> {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        self.inner.store_state(record).await
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        self.inner.consume_state(state).await
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        self.inner.store_auth_code(record).await
    }

    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        self.inner.load_auth_code(code).await
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        self.inner.delete_auth_code(code).await
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        self.inner.try_delete_auth_code(code).await
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        self.inner.store_session(record).await
    }

    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.inner.load_session_by_token(access_token).await
    }

    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.inner.load_session_by_id(session_id).await
    }

    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.inner
            .load_session_by_refresh_token(refresh_token)
            .await
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        self.inner.delete_session_by_token(access_token).await
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        self.inner.delete_session_by_id(session_id).await
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        self.inner.store_client(record).await
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        self.inner.load_client(client_id).await
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        self.inner.list_clients().await
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.inner.delete_client(client_id).await
    }

    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        self.inner.cleanup_expired().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

/// Writes a [`FlakyStore`] refused, per path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Single write calls refused (`store_*`, `delete_*`, `consume_state`,
    /// `try_delete_auth_code`, `cleanup_expired`).
    pub single: u64,
    /// Bulk calls refused.
    pub bulk: u64,
    /// Atomic batches refused.
    pub batch: u64,
}

impl Faults {
    /// Refusals on every path.
    pub fn total(&self) -> u64 {
        self.single + self.bulk + self.batch
    }
}

/// The error a [`FlakyStore`] fails a write with.
pub fn injected_fault() -> StoreError {
    StoreError::Backend("injected fault".into())
}

/// Forwards every call to `inner`, failing writes on demand.
///
/// A write (a single write call, a bulk call or an atomic batch: whatever path
/// a wrapper takes) first passes the [`Gate`] (see [`gate`](Self::gate)), then
/// waits the [`write delay`](Self::set_write_delay), then fails with
/// [`injected_fault`] while [`failing`](Self::set_failing) is on or while
/// [`fail_next`](Self::fail_next) has refusals left (each refusal uses one);
/// otherwise it reaches `inner`. Reads always pass. The bulk and atomic-batch
/// capabilities are offered exactly when `inner` has them.
pub struct FlakyStore<S> {
    inner: S,
    failing: AtomicBool,
    fail_next: AtomicU64,
    write_delay_micros: AtomicU64,
    faults: Mutex<Faults>,
    gate: Gate,
}

impl<S: TokenStore> FlakyStore<S> {
    /// Wraps `inner`; every write passes until told otherwise.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
            fail_next: AtomicU64::new(0),
            write_delay_micros: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
            gate: Gate::new(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Fails every write while `on`.
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// Fails the next `n` writes (replacing any count left).
    pub fn fail_next(&self, n: u64) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Makes every write wait `delay` (a real timer) before it is decided.
    pub fn set_write_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.write_delay_micros.store(micros, Ordering::SeqCst);
    }

    /// The gate every write passes first (disarmed at first).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The writes refused so far, per path.
    pub fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gate, delay, then the decision: `Err` (counted on `path`) or `Ok`.
    async fn admit(&self, path: fn(&mut Faults) -> &mut u64) -> Result<(), StoreError> {
        self.gate.pass().await;
        let micros = self.write_delay_micros.load(Ordering::SeqCst);
        if micros > 0 {
            smol::Timer::after(Duration::from_micros(micros)).await;
        }
        let refuse = self.failing.load(Ordering::SeqCst)
            || self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if refuse {
            *path(&mut self.faults.lock().unwrap_or_else(PoisonError::into_inner)) += 1;
            return Err(injected_fault());
        }
        Ok(())
    }

    async fn single(&self) -> Result<(), StoreError> {
        self.admit(|f| &mut f.single).await
    }
}

impl<S: fmt::Debug> fmt::Debug for FlakyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlakyStore")
            .field("inner", &self.inner)
            .field("failing", &self.failing.load(Ordering::SeqCst))
            .field("fail_next", &self.fail_next.load(Ordering::SeqCst))
            .field(
                "faults",
                &*self.faults.lock().unwrap_or_else(PoisonError::into_inner),
            )
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S: TokenStore> TokenStore for FlakyStore<S> {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        self.single().await?;
        self.inner.store_state(record).await
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        self.single().await?;
        self.inner.consume_state(state).await
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        self.single().await?;
        self.inner.store_auth_code(record).await
    }

    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        self.inner.load_auth_code(code).await
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        self.single().await?;
        self.inner.delete_auth_code(code).await
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        self.single().await?;
        self.inner.try_delete_auth_code(code).await
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        self.single().await?;
        self.inner.store_session(record).await
    }

    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.inner.load_session_by_token(access_token).await
    }

    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.inner.load_session_by_id(session_id).await
    }

    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.inner
            .load_session_by_refresh_token(refresh_token)
            .await
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        self.single().await?;
        self.inner.delete_session_by_token(access_token).await
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        self.single().await?;
        self.inner.delete_session_by_id(session_id).await
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        self.single().await?;
        self.inner.store_client(record).await
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        self.inner.load_client(client_id).await
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        self.inner.list_clients().await
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.single().await?;
        self.inner.delete_client(client_id).await
    }

    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        self.single().await?;
        self.inner.cleanup_expired().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.inner.bulk().map(|_| self as &dyn BulkSessionStore)
    }

    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        self.inner
            .batch_writer()
            .map(|_| self as &dyn BatchWriteStore)
    }
}

impl<S: TokenStore> BulkSessionStore for FlakyStore<S> {
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.admit(|f| &mut f.bulk).await?;
            match self.inner.bulk() {
                Some(bulk) => bulk.bulk_store_sessions(sessions).await,
                None => Err(no_bulk()),
            }
        })
    }

    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            self.admit(|f| &mut f.bulk).await?;
            match self.inner.bulk() {
                Some(bulk) => bulk.bulk_delete_sessions_by_hash(hashes).await,
                None => Err(no_bulk()),
            }
        })
    }

    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
        Box::pin(async move {
            self.admit(|f| &mut f.bulk).await?;
            match self.inner.bulk() {
                Some(bulk) => bulk.bulk_cleanup_expired().await,
                None => Err(no_bulk()),
            }
        })
    }
}

impl<S: TokenStore> BatchWriteStore for FlakyStore<S> {
    fn apply_batch(&self, writes: Vec<WriteOp>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.admit(|f| &mut f.batch).await?;
            match self.inner.batch_writer() {
                Some(batch) => batch.apply_batch(writes).await,
                None => Err(StoreError::Backend(
                    "the inner store has no atomic-batch capability".into(),
                )),
            }
        })
    }
}
