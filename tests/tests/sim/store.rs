//! [`SimStore`]: the simulated delegate.
//!
//! It wraps a [`MemoryTokenStore`], which stands for the committed state (what
//! a database would hold on disk), and adds, on every call, a random latency
//! before and after the call and, at a seeded rate, an injected failure. A
//! failure happens before anything is applied, so a failed call changed
//! nothing. Depending on [`Caps`], it offers the bulk capability and the
//! atomic-batch capability (each with its own latency and faults) or neither.

use super::executor::SimRuntime;
use super::rng::Rng;
use super::trace::Trace;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokenstore_core::buffer::{Step, WriteOp, apply};
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BoxFuture, BulkSessionStore, CleanupCounts, ClientRecord,
    MemoryTokenStore, StateRecord, StoreError, StoredSession, TokenHash, TokenStore,
};

/// Faults as drawn.
pub(crate) const NORMAL: u8 = 0;
/// No more injected failures.
pub(crate) const CALM: u8 = 1;
/// Every call fails.
pub(crate) const STORM: u8 = 2;

/// Which optional capabilities the delegate offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caps {
    /// Only single calls.
    Plain,
    /// The bulk capability (`bulk()`).
    Bulk,
    /// The atomic batch (`batch_writer()`) and the bulk capability.
    Batch,
}

/// Fault settings of a [`SimStore`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Faults {
    /// Chance of an injected failure per call, in thousandths.
    pub(crate) error_per_mille: u64,
    /// Latency before and after a call is drawn from `0..=max_latency`
    /// (microseconds); zero half of the time.
    pub(crate) max_latency_us: u64,
}

/// Counters of what the delegate did.
#[derive(Debug, Default)]
pub(crate) struct DelegateStats {
    pub(crate) calls: AtomicU64,
    pub(crate) injected: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) bulk_calls: AtomicU64,
}

/// The simulated delegate.
pub(crate) struct SimStore {
    mem: Arc<MemoryTokenStore>,
    rt: SimRuntime,
    rng: Mutex<Rng>,
    faults: Faults,
    caps: Caps,
    trace: Trace,
    /// Set whenever the committed state may have changed.
    dirty: Arc<AtomicBool>,
    stats: Arc<DelegateStats>,
    /// The fault mode: [`NORMAL`], [`CALM`] (no more injected failures) or
    /// [`STORM`] (every call fails).
    mode: Arc<AtomicU8>,
    /// Every atomic-batch call so far: its writes, and whether it was applied.
    batch_log: Mutex<Vec<(Vec<WriteOp>, bool)>>,
}

impl fmt::Debug for SimStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStore")
            .field("caps", &self.caps)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl SimStore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mem: Arc<MemoryTokenStore>,
        rt: SimRuntime,
        rng: Rng,
        faults: Faults,
        caps: Caps,
        trace: Trace,
        dirty: Arc<AtomicBool>,
        stats: Arc<DelegateStats>,
        mode: Arc<AtomicU8>,
    ) -> Self {
        Self {
            mem,
            rt,
            rng: Mutex::new(rng),
            faults,
            caps,
            trace,
            dirty,
            stats,
            mode,
            batch_log: Mutex::new(Vec::new()),
        }
    }

    /// Atomic-batch calls so far.
    pub(crate) fn batch_calls(&self) -> usize {
        self.batch_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the first buffer batch holding `op` among the atomic-batch calls
    /// from call `from` on was applied; `None` if no such call held it.
    ///
    /// The calls are cut into the buffer's batches as its machine makes them,
    /// one at a time: a batch is its first call and its retries, and ends at
    /// the first success or after `max_retries + 1` failed calls.
    pub(crate) fn first_batch_applied(
        &self,
        from: usize,
        op: &WriteOp,
        max_retries: u32,
    ) -> Option<bool> {
        let log = self
            .batch_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut attempt = 0;
        for (i, (writes, applied)) in log.iter().enumerate() {
            attempt += 1;
            let last = *applied || attempt > max_retries;
            if last {
                attempt = 0;
                if i >= from && writes.contains(op) {
                    return Some(*applied);
                }
            }
        }
        None
    }

    fn draw_latency(&self) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        if self.faults.max_latency_us == 0 || rng.chance(500) {
            return Duration::ZERO;
        }
        Duration::from_micros(rng.range(1, self.faults.max_latency_us))
    }

    async fn latency(&self) {
        let d = self.draw_latency();
        if d.is_zero() {
            self.rt.yield_now().await;
        } else {
            self.rt.sleep_for(d).await;
        }
    }

    /// Before a call: latency, then maybe an injected failure (nothing applied).
    async fn enter(&self, what: &str, writes: bool) -> Result<(), StoreError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.latency().await;
        let fail = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            rng.chance(self.faults.error_per_mille)
        };
        let fail = match self.mode.load(Ordering::SeqCst) {
            CALM => false,
            STORM => true,
            _ => fail,
        };
        if fail {
            self.stats.injected.fetch_add(1, Ordering::Relaxed);
            self.trace
                .line(format!("  delegate {what}: injected failure"));
            return Err(StoreError::Backend("injected by the simulation".into()));
        }
        if writes {
            self.dirty.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Runs one call with latency and faults around it.
    async fn call<T>(
        &self,
        what: &str,
        writes: bool,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.enter(what, writes).await?;
        // The memory store's futures finish on their first poll: the call is
        // applied atomically here, with no other task in between.
        let out = f.await;
        self.trace.line(format!(
            "  delegate {what}: {}",
            if out.is_ok() { "ok" } else { "error" }
        ));
        self.latency().await;
        out
    }
}

impl TokenStore for SimStore {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        self.call("store_state", true, self.mem.store_state(record))
            .await
    }
    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        self.call("consume_state", true, self.mem.consume_state(state))
            .await
    }
    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        self.call("store_auth_code", true, self.mem.store_auth_code(record))
            .await
    }
    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        self.call("load_auth_code", false, self.mem.load_auth_code(code))
            .await
    }
    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        self.call("delete_auth_code", true, self.mem.delete_auth_code(code))
            .await
    }
    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        self.call(
            "try_delete_auth_code",
            true,
            self.mem.try_delete_auth_code(code),
        )
        .await
    }
    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        self.call("store_session", true, self.mem.store_session(record))
            .await
    }
    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.call(
            "load_session_by_token",
            false,
            self.mem.load_session_by_token(access_token),
        )
        .await
    }
    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.call(
            "load_session_by_id",
            false,
            self.mem.load_session_by_id(session_id),
        )
        .await
    }
    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.call(
            "load_session_by_refresh_token",
            false,
            self.mem.load_session_by_refresh_token(refresh_token),
        )
        .await
    }
    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        self.call(
            "delete_session_by_token",
            true,
            self.mem.delete_session_by_token(access_token),
        )
        .await
    }
    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        self.call(
            "delete_session_by_id",
            true,
            self.mem.delete_session_by_id(session_id),
        )
        .await
    }
    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        self.call("store_client", true, self.mem.store_client(record))
            .await
    }
    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        self.call("load_client", false, self.mem.load_client(client_id))
            .await
    }
    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        self.call("list_clients", false, self.mem.list_clients())
            .await
    }
    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.call("delete_client", true, self.mem.delete_client(client_id))
            .await
    }
    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        self.call("cleanup_expired", true, self.mem.cleanup_expired())
            .await
    }
    /// No fault is injected into close: the buffer's drain is what is tested.
    async fn close(&self) -> Result<(), StoreError> {
        self.latency().await;
        self.trace.line("  delegate close".into());
        self.mem.close().await
    }
    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        match self.caps {
            Caps::Plain => None,
            Caps::Bulk | Caps::Batch => Some(self),
        }
    }
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        match self.caps {
            Caps::Batch => Some(self),
            Caps::Plain | Caps::Bulk => None,
        }
    }
}

impl BulkSessionStore for SimStore {
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.stats.bulk_calls.fetch_add(1, Ordering::Relaxed);
            let bulk = self.mem.bulk().expect("the memory store has bulk");
            let n = sessions.len();
            self.call(
                &format!("bulk_store_sessions({n})"),
                true,
                bulk.bulk_store_sessions(sessions),
            )
            .await
        })
    }

    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            self.stats.bulk_calls.fetch_add(1, Ordering::Relaxed);
            let bulk = self.mem.bulk().expect("the memory store has bulk");
            let n = hashes.len();
            self.call(
                &format!("bulk_delete_sessions_by_hash({n})"),
                true,
                bulk.bulk_delete_sessions_by_hash(hashes),
            )
            .await
        })
    }

    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
        Box::pin(async move {
            let bulk = self.mem.bulk().expect("the memory store has bulk");
            self.call("bulk_cleanup_expired", true, bulk.bulk_cleanup_expired())
                .await
        })
    }
}

impl BatchWriteStore for SimStore {
    /// All or nothing: a fault fails the batch before any write; then every
    /// write is applied to the memory store in one poll (no other task runs in
    /// between), like one transaction.
    fn apply_batch(&self, writes: Vec<WriteOp>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            let n = writes.len();
            let mem = &*self.mem;
            let logged = writes.clone();
            let out = self
                .call(&format!("apply_batch({n})"), true, async move {
                    for w in writes {
                        apply(mem, Step::Single(w)).await?;
                    }
                    Ok(())
                })
                .await;
            self.batch_log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((logged, out.is_ok()));
            out
        })
    }
}
