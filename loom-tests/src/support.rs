//! What the models share (built only under `--cfg tokenstore_loom`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokenstore::buffer::{BufferConfig, Step, WriteOp, apply};
use tokenstore::runtime::{Runtime, Task};
use tokenstore::{
    AuthCodeRecord, BatchWriteStore, BoxFuture, CleanupCounts, ClientRecord, ManualClock,
    MemoryTokenStore, StateRecord, StoreError, StoredSession, Timestamp, TokenStore, UserInfo,
};

/// Runs a future to completion on the current loom thread.
pub use loom::future::block_on;

/// A [`Runtime`] for loom models: every spawned task gets its own loom thread
/// driven by [`loom::future::block_on`], so loom explores the task's
/// interleavings with the callers' and detects a task that never wakes.
///
/// Its timers never fire. The models configure the buffer so that no write ever
/// waits for time (`max_delay` and `retry_backoff` zero, see
/// [`buffer_config`]); a timer that completed at once could make a worker that
/// re-arms it loop without end, while one that never fires turns any hidden
/// reliance on a timer into a deadlock loom reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoomRuntime;

impl Runtime for LoomRuntime {
    fn spawn(&self, task: Task) {
        // The handle is dropped: loom still requires the thread to finish before
        // an execution ends, and reports a deadlock if it is left waiting.
        drop(loom::thread::spawn(move || block_on(task)));
    }

    fn sleep(&self, _duration: Duration) -> Task {
        Box::pin(std::future::pending())
    }
}

/// The write buffer's settings in the models: every write is due at once, a
/// failed batch fails for good on its first attempt (`max_retries` zero) or is
/// retried at once, and at most `max_pending` writes are held.
pub fn buffer_config(max_pending: usize, max_retries: u32) -> BufferConfig {
    BufferConfig {
        max_batch_size: 64,
        max_delay: Duration::ZERO,
        max_pending,
        max_retries,
        retry_backoff: Duration::ZERO,
    }
}

/// The models' fixed start time.
pub fn t0() -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_000)
}

/// A manual clock at [`t0`]; the models never move it.
pub fn clock() -> ManualClock {
    ManualClock::new(t0())
}

/// A state record named `key`, valid for ten minutes.
pub fn state(key: &str) -> Arc<StateRecord> {
    Arc::new(StateRecord::new(key, t0() + Duration::from_secs(600), t0()))
}

/// A session `session_id` reached by `access_token`, for user `username`,
/// valid for an hour.
pub fn session(session_id: &str, access_token: &str, username: &str) -> Arc<StoredSession> {
    Arc::new(StoredSession::new(
        session_id,
        UserInfo::new("github", "42", username),
        access_token,
        t0() + Duration::from_secs(3600),
        t0(),
    ))
}

/// One batch as the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLog {
    /// The state keys the batch stored, in order (other writes show as `"-"`).
    pub keys: Vec<String>,
    /// Whether the batch was applied (`false`: an injected failure, nothing applied).
    pub applied: bool,
}

#[derive(Debug, Default)]
struct Log {
    batches: Vec<BatchLog>,
    applied: HashMap<String, usize>,
}

/// A delegate that applies writes to a [`MemoryTokenStore`] and records them.
///
/// It advertises an atomic batch writer, so the buffer hands it each batch
/// whole: the probe logs every batch, counts how often each state was stored,
/// and can fail the next batches (before applying any of their writes).
///
/// Its bookkeeping uses `std::sync` (invisible to loom): no critical section
/// holds a loom operation or an await, so no thread ever blocks on it.
#[derive(Debug)]
pub struct Probe {
    inner: MemoryTokenStore,
    log: Mutex<Log>,
    fail_next: AtomicUsize,
}

impl Probe {
    /// A probe over an empty memory store on `clock`.
    pub fn new(clock: ManualClock) -> Self {
        Self {
            inner: MemoryTokenStore::new(clock),
            log: Mutex::new(Log::default()),
            fail_next: AtomicUsize::new(0),
        }
    }

    /// A probe whose first `failures` batches fail with a backend error.
    pub fn failing(clock: ManualClock, failures: usize) -> Self {
        let probe = Self::new(clock);
        probe.fail_next.store(failures, Ordering::SeqCst);
        probe
    }

    /// The error an injected failure returns.
    pub fn injected() -> StoreError {
        StoreError::Backend("injected failure".into())
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many times state `key` was stored at the delegate.
    pub fn applied(&self, key: &str) -> usize {
        self.log().applied.get(key).copied().unwrap_or(0)
    }

    /// Every batch handed to the probe, in order.
    pub fn batches(&self) -> Vec<BatchLog> {
        self.log().batches.clone()
    }

    /// The outcome of the first batch that held state `key` (`None`: no batch
    /// held it yet).
    pub fn first_outcome(&self, key: &str) -> Option<Result<(), StoreError>> {
        self.log()
            .batches
            .iter()
            .find(|b| b.keys.iter().any(|k| k == key))
            .map(|b| {
                if b.applied {
                    Ok(())
                } else {
                    Err(Self::injected())
                }
            })
    }

    /// Whether state `key` is held by the memory store (read without consuming).
    pub fn holds_state(&self, key: &str) -> bool {
        self.inner.contents().states.iter().any(|s| s.state == key)
    }

    fn take_failure(&self) -> bool {
        self.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn key_of(op: &WriteOp) -> String {
    match op {
        WriteOp::StoreState(r) => r.state.clone(),
        _ => "-".to_owned(),
    }
}

impl BatchWriteStore for Probe {
    fn apply_batch(&self, writes: Vec<WriteOp>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let keys: Vec<String> = writes.iter().map(key_of).collect();
            if self.take_failure() {
                self.log().batches.push(BatchLog {
                    keys,
                    applied: false,
                });
                return Err(Self::injected());
            }
            for op in writes {
                apply(&self.inner, Step::Single(op)).await?;
            }
            let mut log = self.log();
            for key in keys.iter().filter(|k| *k != "-") {
                *log.applied.entry(key.clone()).or_default() += 1;
            }
            log.batches.push(BatchLog {
                keys,
                applied: true,
            });
            Ok(())
        })
    }
}

impl TokenStore for Probe {
    fn store_state(
        &self,
        record: Arc<StateRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.store_state(record)
    }
    fn consume_state(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<Arc<StateRecord>>, StoreError>> + Send {
        self.inner.consume_state(state)
    }
    fn store_auth_code(
        &self,
        record: Arc<AuthCodeRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.store_auth_code(record)
    }
    fn load_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<Arc<AuthCodeRecord>>, StoreError>> + Send {
        self.inner.load_auth_code(code)
    }
    fn delete_auth_code(&self, code: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete_auth_code(code)
    }
    fn try_delete_auth_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.inner.try_delete_auth_code(code)
    }
    fn store_session(
        &self,
        record: Arc<StoredSession>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.store_session(record)
    }
    fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        self.inner.load_session_by_token(access_token)
    }
    fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        self.inner.load_session_by_id(session_id)
    }
    fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>> + Send {
        self.inner.load_session_by_refresh_token(refresh_token)
    }
    fn delete_session_by_token(
        &self,
        access_token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete_session_by_token(access_token)
    }
    fn delete_session_by_id(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete_session_by_id(session_id)
    }
    fn store_client(
        &self,
        record: Arc<ClientRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.store_client(record)
    }
    fn load_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<ClientRecord>>, StoreError>> + Send {
        self.inner.load_client(client_id)
    }
    fn list_clients(
        &self,
    ) -> impl Future<Output = Result<Vec<Arc<ClientRecord>>, StoreError>> + Send {
        self.inner.list_clients()
    }
    fn delete_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete_client(client_id)
    }
    fn cleanup_expired(&self) -> impl Future<Output = Result<CleanupCounts, StoreError>> + Send {
        self.inner.cleanup_expired()
    }
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.close()
    }
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        Some(self)
    }
}

/// Explores every interleaving of `f` that loom's bounds allow, and prints how
/// many executions that took (shown with `--nocapture`). The preemption bound
/// is `LOOM_MAX_PREEMPTIONS`, or 2 when unset (loom's own default, no bound,
/// does not finish on these models).
pub fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let executions = Arc::new(AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    let bound = builder.preemption_bound;
    let counter = Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "loom model {name}: {} executions (preemption bound {bound:?})",
        executions.load(Ordering::Relaxed)
    );
}
