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

/// A call a probe's hooks are told about: one per method of [`TokenStore`] and
/// [`BulkSessionStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // One variant per method, named after it.
pub enum Call {
    StoreState,
    ConsumeState,
    StoreAuthCode,
    LoadAuthCode,
    DeleteAuthCode,
    TryDeleteAuthCode,
    StoreSession,
    LoadSessionByToken,
    LoadSessionById,
    LoadSessionByRefreshToken,
    DeleteSessionByToken,
    DeleteSessionById,
    StoreClient,
    LoadClient,
    ListClients,
    DeleteClient,
    CleanupExpired,
    Close,
    BulkStoreSessions,
    BulkDeleteSessionsByHash,
    BulkCleanupExpired,
}

impl Call {
    /// A single call that writes (what [`FlakyStore`] can refuse).
    pub fn is_single_write(self) -> bool {
        !matches!(
            self,
            Self::LoadAuthCode
                | Self::LoadSessionByToken
                | Self::LoadSessionById
                | Self::LoadSessionByRefreshToken
                | Self::LoadClient
                | Self::ListClients
                | Self::Close
                | Self::BulkStoreSessions
                | Self::BulkDeleteSessionsByHash
                | Self::BulkCleanupExpired
        )
    }
}

/// `impl TokenStore for $probe<S>`: every method runs the probe's
/// `before(call)` hook (whose error is the call's answer), then the inner
/// store's method, then the `after(call)` hook. The block holds what the
/// probe says of the capabilities (`bulk`, `batch_writer`); left empty, it
/// offers none.
macro_rules! forward_token_store {
    ($probe:ident { $($caps:tt)* }) => {
        impl<S: TokenStore> TokenStore for $probe<S> {
            forward_token_store!(@call store_state(record: Arc<StateRecord>) -> (), StoreState);
            forward_token_store!(@call consume_state(state: &str) -> Option<Arc<StateRecord>>, ConsumeState);
            forward_token_store!(@call store_auth_code(record: Arc<AuthCodeRecord>) -> (), StoreAuthCode);
            forward_token_store!(@call load_auth_code(code: &str) -> Option<Arc<AuthCodeRecord>>, LoadAuthCode);
            forward_token_store!(@call delete_auth_code(code: &str) -> (), DeleteAuthCode);
            forward_token_store!(@call try_delete_auth_code(code: &str) -> bool, TryDeleteAuthCode);
            forward_token_store!(@call store_session(record: Arc<StoredSession>) -> (), StoreSession);
            forward_token_store!(@call load_session_by_token(access_token: &str) -> Option<Arc<StoredSession>>, LoadSessionByToken);
            forward_token_store!(@call load_session_by_id(session_id: &str) -> Option<Arc<StoredSession>>, LoadSessionById);
            forward_token_store!(@call load_session_by_refresh_token(refresh_token: &str) -> Option<Arc<StoredSession>>, LoadSessionByRefreshToken);
            forward_token_store!(@call delete_session_by_token(access_token: &str) -> (), DeleteSessionByToken);
            forward_token_store!(@call delete_session_by_id(session_id: &str) -> (), DeleteSessionById);
            forward_token_store!(@call store_client(record: Arc<ClientRecord>) -> (), StoreClient);
            forward_token_store!(@call load_client(client_id: &str) -> Option<Arc<ClientRecord>>, LoadClient);
            forward_token_store!(@call list_clients() -> Vec<Arc<ClientRecord>>, ListClients);
            forward_token_store!(@call delete_client(client_id: &str) -> (), DeleteClient);
            forward_token_store!(@call cleanup_expired() -> CleanupCounts, CleanupExpired);
            forward_token_store!(@call close() -> (), Close);
            $($caps)*
        }
    };
    (@call $name:ident($($arg:ident: $ty:ty),*) -> $out:ty, $call:ident) => {
        async fn $name(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
            self.before(Call::$call).await?;
            let out = self.inner.$name($($arg),*).await;
            self.after(Call::$call).await;
            out
        }
    };
}

/// `impl BulkSessionStore for $probe<S>` over the inner store's bulk
/// capability, each call after the probe's `before` hook.
macro_rules! forward_bulk {
    ($probe:ident) => {
        impl<S: TokenStore> BulkSessionStore for $probe<S> {
            fn bulk_store_sessions(
                &self,
                sessions: Vec<Arc<StoredSession>>,
            ) -> BoxFuture<'_, Result<(), StoreError>> {
                Box::pin(async move {
                    self.before(Call::BulkStoreSessions).await?;
                    let bulk = self.inner.bulk().ok_or_else(no_bulk)?;
                    bulk.bulk_store_sessions(sessions).await
                })
            }

            fn bulk_delete_sessions_by_hash(
                &self,
                hashes: Vec<TokenHash>,
            ) -> BoxFuture<'_, Result<u64, StoreError>> {
                Box::pin(async move {
                    self.before(Call::BulkDeleteSessionsByHash).await?;
                    let bulk = self.inner.bulk().ok_or_else(no_bulk)?;
                    bulk.bulk_delete_sessions_by_hash(hashes).await
                })
            }

            fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
                Box::pin(async move {
                    self.before(Call::BulkCleanupExpired).await?;
                    let bulk = self.inner.bulk().ok_or_else(no_bulk)?;
                    bulk.bulk_cleanup_expired().await
                })
            }
        }
    };
}

fn no_bulk() -> StoreError {
    StoreError::Backend("the inner store has no bulk capability".into())
}

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
    /// The count of `call`.
    fn of(&mut self, call: Call) -> &mut u64 {
        match call {
            Call::StoreState => &mut self.store_state,
            Call::ConsumeState => &mut self.consume_state,
            Call::StoreAuthCode => &mut self.store_auth_code,
            Call::LoadAuthCode => &mut self.load_auth_code,
            Call::DeleteAuthCode => &mut self.delete_auth_code,
            Call::TryDeleteAuthCode => &mut self.try_delete_auth_code,
            Call::StoreSession => &mut self.store_session,
            Call::LoadSessionByToken => &mut self.load_session_by_token,
            Call::LoadSessionById => &mut self.load_session_by_id,
            Call::LoadSessionByRefreshToken => &mut self.load_session_by_refresh_token,
            Call::DeleteSessionByToken => &mut self.delete_session_by_token,
            Call::DeleteSessionById => &mut self.delete_session_by_id,
            Call::StoreClient => &mut self.store_client,
            Call::LoadClient => &mut self.load_client,
            Call::ListClients => &mut self.list_clients,
            Call::DeleteClient => &mut self.delete_client,
            Call::CleanupExpired => &mut self.cleanup_expired,
            Call::Close => &mut self.close,
            Call::BulkStoreSessions => &mut self.bulk_store_sessions,
            Call::BulkDeleteSessionsByHash => &mut self.bulk_delete_sessions_by_hash,
            Call::BulkCleanupExpired => &mut self.bulk_cleanup_expired,
        }
    }

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

    async fn before(&self, call: Call) -> Result<(), StoreError> {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        *calls.of(call) += 1;
        Ok(())
    }

    async fn after(&self, _: Call) {}
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

forward_token_store!(CountingStore {
    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.inner.bulk().map(|_| self as &dyn BulkSessionStore)
    }
});
forward_bulk!(CountingStore);

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

impl<S> GatedStore<S> {
    async fn before(&self, _: Call) -> Result<(), StoreError> {
        Ok(())
    }

    async fn after(&self, call: Call) {
        if matches!(call, Call::LoadAuthCode | Call::LoadSessionByToken) {
            self.gate.pass().await;
        }
    }
}

forward_token_store!(GatedStore {
    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.inner.bulk()
    }
});

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

impl<S> WithoutBulk<S> {
    async fn before(&self, _: Call) -> Result<(), StoreError> {
        Ok(())
    }

    async fn after(&self, _: Call) {}
}

forward_token_store!(WithoutBulk {});

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

    async fn before(&self, call: Call) -> Result<(), StoreError> {
        match call {
            Call::BulkStoreSessions | Call::BulkDeleteSessionsByHash | Call::BulkCleanupExpired => {
                self.admit(|f| &mut f.bulk).await
            }
            call if call.is_single_write() => self.admit(|f| &mut f.single).await,
            _ => Ok(()),
        }
    }

    async fn after(&self, _: Call) {}
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

forward_token_store!(FlakyStore {
    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.inner.bulk().map(|_| self as &dyn BulkSessionStore)
    }

    fn invalidation_feed(&self) -> Option<&dyn tokenstore_core::feed::InvalidationFeed> {
        self.inner.invalidation_feed()
    }

    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        self.inner
            .batch_writer()
            .map(|_| self as &dyn BatchWriteStore)
    }
});
forward_bulk!(FlakyStore);

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

    /// Passes through: preparing changes nothing stored, so it never fails.
    fn prepare(&self, writes: &[WriteOp]) {
        if let Some(batch) = self.inner.batch_writer() {
            batch.prepare(writes);
        }
    }
}
