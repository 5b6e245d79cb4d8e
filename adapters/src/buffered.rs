//! [`BufferedTokenStore`]: the write buffer's async driver.
//!
//! Every decision (acceptance, coalescing, triggers, retries, read-your-writes,
//! drain) is made by [`BufferMachine`]; this file takes the lock, runs the flush
//! worker on the [`Runtime`], calls the delegate and reports results.

use crate::observe::{BufferDelta, Flush, Layer, Observed, delegate_call};
use crate::runtime::Runtime;
use crate::sync::{Event, Mutex};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokenstore_core::buffer::{
    BatchOutcome, BufferConfig, BufferMachine, BufferMetrics, OneTime, Read, ReadKind, ReadTicket,
    Refusal, Seq, SessionKey, WriteOp, apply_batch,
};
use tokenstore_core::feed::InvalidationFeed;
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BoxFuture, BulkSessionStore, CleanupCounts, ClientRecord,
    Clock, Secret, StateRecord, StoreError, StoredSession, SystemClock, Timestamp, TokenHash,
    TokenStore, validate_key,
};
use tracing::Instrument;

/// When a buffered write call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ack {
    /// Once the write is accepted: fastest; a crash can lose what was queued.
    #[default]
    Queued,
    /// Once the batch holding the write is committed (group commit: concurrent
    /// writers share a batch, and each gets that batch's error). A durable write
    /// starts a flush as soon as the worker is idle, whatever `max_delay` is;
    /// writes arriving while a batch commits gather for the next one.
    Durable,
}

/// A write buffer in front of any [`TokenStore`].
///
/// Writes are queued in a [`BufferMachine`], coalesced, and applied by one flush
/// worker in batches (through the delegate's atomic-batch or bulk capability
/// when it has one). Reads and one-time calls are never queued behind writes, and
/// see this process's pending writes. [`flush`](Self::flush) and
/// [`close`](TokenStore::close) report errors; a close that cannot apply every
/// write keeps them for [`take_unapplied`](Self::take_unapplied).
///
/// ```
/// use std::sync::Arc;
/// use tokenstore::buffer::BufferConfig;
/// use tokenstore::runtime::TokioRuntime;
/// use tokenstore::{Ack, BufferedTokenStore, MemoryTokenStore, StateRecord, SystemClock};
/// use tokenstore::{Clock, TokenStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = BufferedTokenStore::new(
///     MemoryTokenStore::new(SystemClock),
///     BufferConfig::default(),
///     Ack::Queued,
///     TokioRuntime::current(),
/// );
/// let now = SystemClock.now();
/// let state = StateRecord::new("st-1", now + std::time::Duration::from_secs(600), now);
/// store.store_state(Arc::new(state)).await?; // queued
/// assert!(store.consume_state("st-1").await?.is_some()); // read-your-writes
/// store.close().await?; // drains
/// # Ok::<(), tokenstore::StoreError>(())
/// # }).unwrap();
/// ```
pub struct BufferedTokenStore<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    inner: S,
    clock: Arc<dyn Clock>,
    runtime: Arc<dyn Runtime>,
    ack: Ack,
    /// The machine, and its counters and held writes as last published to
    /// the facade.
    machine: Mutex<Observed<BufferMachine, (BufferMetrics, usize)>>,
    /// Wakes the flush worker (a write, a flush request, close).
    wake: Event,
    /// Notified after every batch result (space freed, acknowledgements, drain).
    changed: Event,
}

impl<S: TokenStore + 'static> BufferedTokenStore<S> {
    /// Wraps `inner`, flushing on `runtime`, telling time with the system clock.
    pub fn new(inner: S, config: BufferConfig, ack: Ack, runtime: impl Runtime) -> Self {
        Self::with_clock(inner, config, ack, runtime, SystemClock)
    }

    /// Wraps `inner` with a given clock (a test's or a simulation's).
    pub fn with_clock(
        inner: S,
        config: BufferConfig,
        ack: Ack,
        runtime: impl Runtime,
        clock: impl Clock + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            inner,
            clock: Arc::new(clock),
            runtime: Arc::new(runtime),
            ack,
            machine: Mutex::new(Observed::new(BufferMachine::new(config))),
            wake: Event::new(),
            changed: Event::new(),
        });
        shared
            .runtime
            .spawn(Box::pin(worker(Arc::downgrade(&shared))));
        Self { shared }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.shared.inner
    }

    /// The buffer's counters.
    pub fn metrics(&self) -> BufferMetrics {
        self.shared.machine.lock().metrics()
    }

    /// Publishes the buffer's counters and its pending-writes gauge through the
    /// [`metrics`] facade: what changed since this buffer's previous publication
    /// (see [`observe`](crate::observe) for the names and the contract). The
    /// flush worker also calls it after every batch result.
    pub fn publish_metrics(&self) {
        publish(&self.shared);
    }

    /// Writes held (pending and in flight).
    pub fn pending(&self) -> usize {
        self.shared.machine.lock().held()
    }

    /// Applies every write accepted before this call; the first error of a batch
    /// holding one of them is returned (the writes stay queued).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let flush = self.shared.machine.lock().handle_flush();
        self.shared.wake.notify(usize::MAX);
        loop {
            let listener = {
                let machine = self.shared.machine.lock();
                if let Some(outcome) = machine.flush_status(&flush) {
                    return outcome;
                }
                self.shared.changed.listen()
            };
            listener.await;
        }
    }

    /// The writes a failed `close()` could not apply, in order (taking them).
    ///
    /// Until they are taken, reads and one-time calls still see them, as they
    /// did before the close; afterwards they are the caller's to apply.
    pub fn take_unapplied(&self) -> Vec<WriteOp> {
        self.shared.machine.lock().take_unapplied()
    }

    /// Queues a write, waiting while the buffer is full; with [`Ack::Durable`],
    /// also waits for its batch.
    /// Checks `op` ([`WriteOp::validate`]: bad input is refused here, before
    /// it is queued, never by a later batch), then queues it.
    async fn write(&self, op: WriteOp) -> Result<(), StoreError> {
        op.validate()?;
        let seq = self.accept(op).await?;
        self.shared.wake.notify(usize::MAX);
        match self.shared.ack {
            Ack::Queued => Ok(()),
            Ack::Durable => self.durable(seq).await,
        }
    }

    /// Offers `op` to the machine until it is accepted (or refused for good).
    async fn accept(&self, mut op: WriteOp) -> Result<Seq, StoreError> {
        loop {
            let listener = {
                let mut machine = self.shared.machine.lock();
                let now = self.shared.clock.now();
                let accepted = match self.shared.ack {
                    Ack::Queued => machine.accept(now, op),
                    Ack::Durable => machine.accept_durable(now, op),
                };
                match accepted {
                    Ok(seq) => return Ok(seq),
                    Err(refused) if refused.reason == Refusal::Closed => {
                        return Err(StoreError::Closed);
                    }
                    Err(refused) => op = refused.op,
                }
                self.shared.changed.listen()
            };
            self.shared.wake.notify(usize::MAX);
            listener.await;
        }
    }

    /// Waits until the machine answers the durable writer of `seq`.
    async fn durable(&self, seq: Seq) -> Result<(), StoreError> {
        let _forget = DurableGuard {
            shared: &self.shared,
            seq,
        };
        loop {
            let listener = {
                let mut machine = self.shared.machine.lock();
                if let Some(outcome) = machine.take_durable_outcome(seq) {
                    return outcome;
                }
                self.shared.changed.listen()
            };
            listener.await;
        }
    }

    /// Runs a read: answered by the buffer, or by the delegate with the buffer's
    /// writes laid over its answer.
    async fn read<T: ReadKind, Fut>(
        &self,
        operation: &'static str,
        decide: impl FnOnce(&mut BufferMachine, Timestamp) -> Read<T>,
        fetch: impl FnOnce() -> Fut,
        resolve: impl FnOnce(
            &mut BufferMachine,
            Timestamp,
            ReadTicket<T>,
            Option<Arc<T>>,
        ) -> Option<Arc<T>>,
    ) -> Result<Option<Arc<T>>, StoreError>
    where
        Fut: Future<Output = Result<Option<Arc<T>>, StoreError>>,
    {
        let now = self.shared.clock.now();
        let (decided, queued) = {
            let mut machine = self.shared.machine.lock();
            let decided = decide(&mut machine, now);
            (decided, machine.take_queued_internally())
        };
        // The worker is woken only when the read queued a delete of its own.
        if queued {
            self.shared.wake.notify(usize::MAX);
        }
        let ticket = match decided {
            Read::Known(answer) => return Ok(answer),
            Read::Ask(ticket) => ticket,
        };
        let mut guard = ReadGuard {
            shared: &self.shared,
            ticket: Some(ticket),
        };
        let answer = delegate_call(Layer::Buffer, operation, fetch()).await;
        let ticket = guard.ticket.take().expect("ticket is taken once");
        let mut machine = self.shared.machine.lock();
        match answer {
            Ok(answer) => {
                let now = self.shared.clock.now();
                let resolved = resolve(&mut machine, now, ticket, answer);
                let queued = machine.take_queued_internally();
                drop(machine);
                if queued {
                    self.shared.wake.notify(usize::MAX);
                }
                Ok(resolved)
            }
            Err(error) => {
                machine.abandon_read(ticket);
                Err(error)
            }
        }
    }

    /// A one-time call: decided by the buffer when the record is still
    /// queued in it, by the delegate otherwise; asked again after the batch
    /// in flight when that batch holds a write of the record.
    async fn one_time<T, Fut>(
        &self,
        operation: &'static str,
        decide: impl Fn(&mut BufferMachine, Timestamp) -> OneTime<T>,
        delegate: impl FnOnce() -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, StoreError>>,
    {
        enum Step<T, L> {
            /// The answer, and whether the buffer queued a removal for it.
            Answer(T, bool),
            Ask,
            Wait(L),
        }
        loop {
            let step = {
                let mut machine = self.shared.machine.lock();
                match decide(&mut machine, self.shared.clock.now()) {
                    OneTime::Decided(answer) => {
                        Step::Answer(answer, machine.take_queued_internally())
                    }
                    OneTime::AskDelegate => Step::Ask,
                    // Listening before the lock is released: no batch result
                    // can slip in between.
                    OneTime::AwaitBatch => Step::Wait(self.shared.changed.listen()),
                }
            };
            match step {
                Step::Answer(answer, queued) => {
                    if queued {
                        self.shared.wake.notify(usize::MAX);
                    }
                    return Ok(answer);
                }
                Step::Ask => return delegate_call(Layer::Buffer, operation, delegate()).await,
                Step::Wait(listener) => {
                    self.shared.wake.notify(usize::MAX);
                    listener.await;
                }
            }
        }
    }

    async fn session(
        &self,
        operation: &'static str,
        key: SessionKey,
        fetch: impl Future<Output = Result<Option<Arc<StoredSession>>, StoreError>>,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.read(
            operation,
            |m, now| m.read_session(now, &key),
            || fetch,
            |m, now, t, a| m.resolve_session(now, t, a),
        )
        .await
    }
}

/// Gives a read ticket back if the read is dropped before the delegate answered.
struct ReadGuard<'a, S, T: ReadKind + ?Sized> {
    shared: &'a Shared<S>,
    ticket: Option<ReadTicket<T>>,
}

impl<S, T: ReadKind + ?Sized> Drop for ReadGuard<'_, S, T> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.shared.machine.lock().abandon_read(ticket);
        }
    }
}

/// Stops tracking a durable write's outcome if its writer goes away.
struct DurableGuard<'a, S> {
    shared: &'a Shared<S>,
    seq: Seq,
}

impl<S> Drop for DurableGuard<'_, S> {
    fn drop(&mut self) {
        self.shared.machine.lock().forget_durable(self.seq);
    }
}

/// The flush worker: applies due batches, arms one timer, exits when the store
/// is gone or closed and drained.
async fn worker<S: TokenStore + 'static>(weak: Weak<Shared<S>>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let (batch, timeout, listener, done) = {
            let mut machine = shared.machine.lock();
            let now = shared.clock.now();
            let batch = machine.poll_batch(now);
            let done = machine.closing_done();
            (batch, machine.poll_timeout(), shared.wake.listen(), done)
        };
        if let Some(batch) = batch {
            let flush = Flush::start(batch.writes.len(), batch.attempt);
            let applying = apply_batch(&shared.inner, batch.writes).instrument(flush.span());
            let result = match shared.inner.batch_writer() {
                Some(writer) => commit_while_preparing(&shared, writer, applying).await,
                None => applying.await,
            };
            let (outcome, delta) = report(&shared, batch.id, result);
            flush.end(&outcome);
            delta.emit();
            shared.changed.notify(usize::MAX);
            continue;
        }
        if done {
            shared.changed.notify(usize::MAX);
            return;
        }
        let now = shared.clock.now();
        let runtime = shared.runtime.clone();
        drop(shared);
        match timeout {
            Some(at) => {
                let sleep = runtime.sleep(
                    at.saturating_duration_since(now)
                        .max(Duration::from_micros(100)),
                );
                futures_lite::future::or(listener, sleep).await;
            }
            None => listener.await,
        }
    }
}

/// Awaits the batch `applying` and meanwhile, each time writes arrive, hands
/// the ones the next batch will probably hold ([`BufferMachine::prepare_next`])
/// to the delegate's [`prepare`](BatchWriteStore::prepare): their encoding
/// overlaps this batch's commit instead of following it.
async fn commit_while_preparing<S, F: Future>(
    shared: &Shared<S>,
    writer: &dyn BatchWriteStore,
    applying: F,
) -> F::Output {
    let mut applying = std::pin::pin!(applying);
    loop {
        let arrived = shared.wake.listen();
        // The batch first: its SQL runs while the next one is prepared.
        if let Some(out) = futures_lite::future::poll_once(applying.as_mut()).await {
            return out;
        }
        let next = shared.machine.lock().prepare_next();
        if !next.is_empty() {
            writer.prepare(&next);
        }
        let done = async { Some(applying.as_mut().await) };
        let woken = async {
            arrived.await;
            None
        };
        if let Some(out) = futures_lite::future::or(done, woken).await {
            return out;
        }
    }
}

/// Reports a batch's result to the machine (which answers its durable
/// writers) and takes, under the same lock, what changed in its counters for
/// the facade; the caller then wakes everyone waiting on a change.
fn report<S>(
    shared: &Shared<S>,
    id: u64,
    result: Result<(), StoreError>,
) -> (BatchOutcome, BufferDelta) {
    let now = shared.clock.now();
    let (outcome, delta) = {
        let mut machine = shared.machine.lock();
        let outcome = machine.handle_batch_result(now, id, result);
        (outcome, machine.buffer_delta())
    };
    match &outcome {
        BatchOutcome::Failed { seqs, error } => {
            tracing::warn!(writes = seqs.len(), %error, "a buffered batch failed after its retries");
        }
        BatchOutcome::Retrying => tracing::debug!("a buffered batch failed; retrying"),
        BatchOutcome::Applied(_) | BatchOutcome::Unknown => {}
    }
    (outcome, delta)
}

/// Publishes what changed in the buffer's counters since the last publication.
fn publish<S>(shared: &Shared<S>) {
    let delta = shared.machine.lock().buffer_delta();
    delta.emit();
}

impl<S: TokenStore + 'static> TokenStore for BufferedTokenStore<S> {
    async fn store_state(&self, record: Arc<StateRecord>) -> Result<(), StoreError> {
        self.write(WriteOp::StoreState(record)).await
    }

    async fn consume_state(&self, state: &str) -> Result<Option<Arc<StateRecord>>, StoreError> {
        validate_key("state", state)?;
        let inner = &self.shared.inner;
        self.one_time(
            "consume_state",
            |m, now| m.consume_state(now, state),
            || inner.consume_state(state),
        )
        .await
    }

    async fn store_auth_code(&self, record: Arc<AuthCodeRecord>) -> Result<(), StoreError> {
        self.write(WriteOp::StoreAuthCode(record)).await
    }

    async fn load_auth_code(&self, code: &str) -> Result<Option<Arc<AuthCodeRecord>>, StoreError> {
        validate_key("code", code)?;
        self.read(
            "load_auth_code",
            |m, now| m.read_auth_code(now, code),
            || self.shared.inner.load_auth_code(code),
            |m, now, t, a| m.resolve_auth_code(now, t, a),
        )
        .await
    }

    async fn delete_auth_code(&self, code: &str) -> Result<(), StoreError> {
        self.write(WriteOp::DeleteAuthCode(code.to_owned())).await
    }

    async fn try_delete_auth_code(&self, code: &str) -> Result<bool, StoreError> {
        validate_key("code", code)?;
        let shared = &self.shared;
        self.one_time(
            "try_delete_auth_code",
            |m, now| m.try_delete_auth_code(now, code),
            || async move {
                let taken = shared.inner.try_delete_auth_code(code).await?;
                shared.machine.lock().handle_code_taken(code);
                Ok(taken)
            },
        )
        .await
    }

    async fn store_session(&self, record: Arc<StoredSession>) -> Result<(), StoreError> {
        self.write(WriteOp::StoreSession(record)).await
    }

    async fn load_session_by_token(
        &self,
        access_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("access_token", access_token)?;
        let key = SessionKey::Access(TokenHash::of(access_token));
        let fetch = self.shared.inner.load_session_by_token(access_token);
        self.session("load_session_by_token", key, fetch).await
    }

    async fn load_session_by_id(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("session_id", session_id)?;
        let key = SessionKey::Id(session_id.to_owned());
        let fetch = self.shared.inner.load_session_by_id(session_id);
        self.session("load_session_by_id", key, fetch).await
    }

    async fn load_session_by_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        validate_key("refresh_token", refresh_token)?;
        let key = SessionKey::Refresh(TokenHash::of(refresh_token));
        let fetch = self
            .shared
            .inner
            .load_session_by_refresh_token(refresh_token);
        self.session("load_session_by_refresh_token", key, fetch)
            .await
    }

    async fn delete_session_by_token(&self, access_token: &str) -> Result<(), StoreError> {
        self.write(WriteOp::DeleteSessionByToken(Secret::new(access_token)))
            .await
    }

    async fn delete_session_by_id(&self, session_id: &str) -> Result<(), StoreError> {
        self.write(WriteOp::DeleteSessionById(session_id.to_owned()))
            .await
    }

    async fn store_client(&self, record: Arc<ClientRecord>) -> Result<(), StoreError> {
        self.write(WriteOp::StoreClient(record)).await
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        validate_key("client_id", client_id)?;
        self.read(
            "load_client",
            |m, _| m.read_client(client_id),
            || self.shared.inner.load_client(client_id),
            |m, _, t, a| m.resolve_client(t, a),
        )
        .await
    }

    async fn list_clients(&self) -> Result<Vec<Arc<ClientRecord>>, StoreError> {
        let ticket = self.shared.machine.lock().read_clients();
        let mut guard = ReadGuard {
            shared: &self.shared,
            ticket: Some(ticket),
        };
        let listed = self.shared.inner.list_clients();
        let listed = delegate_call(Layer::Buffer, "list_clients", listed).await;
        let ticket = guard.ticket.take().expect("ticket is taken once");
        let mut machine = self.shared.machine.lock();
        match listed {
            Ok(listed) => Ok(machine.resolve_clients(ticket, listed)),
            Err(error) => {
                machine.abandon_read(ticket);
                Err(error)
            }
        }
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.write(WriteOp::DeleteClient(client_id.to_owned()))
            .await
    }

    /// Flushes first, so that what cleanup removes and counts is exactly what
    /// one-by-one application would hold.
    async fn cleanup_expired(&self) -> Result<CleanupCounts, StoreError> {
        self.flush().await?;
        let cleanup = self.shared.inner.cleanup_expired();
        delegate_call(Layer::Buffer, "cleanup_expired", cleanup).await
    }

    /// Stops accepting writes, drains the buffer, then closes the delegate. If a
    /// batch fails for good, the writes left are kept for
    /// [`take_unapplied`](BufferedTokenStore::take_unapplied) and the error is
    /// [`StoreError::WritesNotApplied`].
    async fn close(&self) -> Result<(), StoreError> {
        self.shared.machine.lock().handle_close();
        self.shared.wake.notify(usize::MAX);
        // Writers waiting for room must learn at once that the store is closing.
        self.shared.changed.notify(usize::MAX);
        let drained = loop {
            let listener = {
                let machine = self.shared.machine.lock();
                if let Some(status) = machine.close_status() {
                    break status;
                }
                self.shared.changed.listen()
            };
            listener.await;
        };
        // Durable writers the failed close answered must hear of it.
        self.shared.changed.notify(usize::MAX);
        self.shared.wake.notify(usize::MAX);
        let closed = self.shared.inner.close().await;
        // The writes a failed close kept stay in the machine (reads keep seeing
        // them) until the caller takes them.
        drained.and(closed)
    }

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.shared
            .inner
            .bulk()
            .map(|_| self as &dyn BulkSessionStore)
    }

    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        self.shared
            .inner
            .batch_writer()
            .map(|_| self as &dyn BatchWriteStore)
    }

    /// The delegate's feed, untouched: it reports what the store committed,
    /// which for writes still queued here is nothing yet (the cache above the
    /// buffer, if any, evicted them when they were accepted).
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        self.shared.inner.invalidation_feed()
    }
}

/// The delegate's capabilities, forwarded: a bulk or batch call first flushes
/// what this buffer holds, then goes to the delegate as one call, so it comes
/// after every write accepted before it, as the loop of single calls would.
/// (The buffer's own flushes already use the delegate's capabilities; these
/// are for a caller above the buffer, such as another wrapper.)
impl<S: TokenStore + 'static> BufferedTokenStore<S> {
    async fn flushed_then<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.flush().await?;
        delegate_call(Layer::Buffer, operation, call).await
    }
}

fn lost(what: &str) -> StoreError {
    StoreError::Backend(format!("the delegate lost its {what} capability"))
}

impl<S: TokenStore + 'static> BulkSessionStore for BufferedTokenStore<S> {
    fn bulk_store_sessions(
        &self,
        sessions: Vec<Arc<StoredSession>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let bulk = self.shared.inner.bulk().ok_or_else(|| lost("bulk"))?;
            self.flushed_then("bulk_store_sessions", bulk.bulk_store_sessions(sessions))
                .await
        })
    }

    fn bulk_delete_sessions_by_hash(
        &self,
        hashes: Vec<TokenHash>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let bulk = self.shared.inner.bulk().ok_or_else(|| lost("bulk"))?;
            let call = bulk.bulk_delete_sessions_by_hash(hashes);
            self.flushed_then("bulk_delete_sessions_by_hash", call)
                .await
        })
    }

    fn bulk_cleanup_expired(&self) -> BoxFuture<'_, Result<CleanupCounts, StoreError>> {
        Box::pin(async move {
            let bulk = self.shared.inner.bulk().ok_or_else(|| lost("bulk"))?;
            self.flushed_then("bulk_cleanup_expired", bulk.bulk_cleanup_expired())
                .await
        })
    }
}

impl<S: TokenStore + 'static> BatchWriteStore for BufferedTokenStore<S> {
    fn apply_batch(&self, writes: Vec<WriteOp>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let batch = self
                .shared
                .inner
                .batch_writer()
                .ok_or_else(|| lost("batch"))?;
            self.flushed_then("apply_batch", batch.apply_batch(writes))
                .await
        })
    }
}

impl<S> Drop for BufferedTokenStore<S> {
    fn drop(&mut self) {
        let mut machine = self.shared.machine.lock();
        let pending = machine.held();
        if pending > 0 {
            tracing::error!(
                pending,
                "BufferedTokenStore dropped holding writes (no close(), or a failed close whose take_unapplied() was never called): they are lost"
            );
        }
        let retired = machine.retire();
        drop(machine);
        retired.emit();
        self.shared.wake.notify(usize::MAX);
    }
}

impl<S: fmt::Debug> fmt::Debug for BufferedTokenStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedTokenStore")
            .field("inner", &self.shared.inner)
            .field("ack", &self.shared.ack)
            .field("machine", &**self.shared.machine.lock())
            .finish_non_exhaustive()
    }
}
