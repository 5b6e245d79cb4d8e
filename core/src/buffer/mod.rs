//! The write-buffer machine: pure, synchronous and deterministic.
//!
//! [`BufferMachine`] decides which writes are accepted, how they coalesce, when a
//! batch is flushed, what happens when one fails, which durable writer learns
//! what, and when the buffer is drained. It owns no clock, lock, thread or
//! future: time comes in as `now`, and the adapter applies the batches it hands
//! out.

mod op;
mod overlay;
mod queue;
mod reads;

pub use crate::{SessionKey, WriteOp};
pub use op::{Step, apply, apply_batch, plan};
pub use overlay::{ClientList, OneTime, Read, ReadKind, ReadTicket};

use crate::{StoreError, Timestamp};
use op::OpHashes;
use queue::{Entry, Queue};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Settings of the write buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferConfig {
    /// A flush starts as soon as this many writes are pending, and no batch
    /// holds more. Default 256; zero counts as one.
    pub max_batch_size: usize,
    /// A flush starts once the oldest pending write has waited this long (a
    /// write that replaces a pending one keeps the older acceptance time); zero
    /// flushes as soon as no batch is in flight. Default 5 ms.
    pub max_delay: Duration,
    /// Writes held at most (pending and in flight); past it, writers wait.
    /// Default 10,000; zero counts as one.
    pub max_pending: usize,
    /// Retries of a failed batch before its writes go back to the queue.
    /// Default 3.
    pub max_retries: u32,
    /// Delay before the first retry; it doubles with each retry. Default 10 ms.
    pub retry_backoff: Duration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 256,
            max_delay: Duration::from_millis(5),
            max_pending: 10_000,
            max_retries: 3,
            retry_backoff: Duration::from_millis(10),
        }
    }
}

impl BufferConfig {
    /// The configuration the machine runs with: sizes of at least one.
    fn normalized(mut self) -> Self {
        self.max_batch_size = self.max_batch_size.max(1);
        self.max_pending = self.max_pending.max(1);
        self
    }
}

/// The sequence number of an accepted write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// A write that was not accepted, handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: Refusal,
    /// The write, to try again later.
    pub op: WriteOp,
}

/// Why a write was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_pending` writes are held: wait for a batch to finish, then retry.
    Full,
    /// Close has begun: the write gets `StoreError::Closed`.
    Closed,
}

/// A flush in progress; see [`BufferMachine::flush_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushTicket {
    /// The newest write the flush covers.
    pub target: Seq,
    failures_before: u64,
}

/// A batch to apply to the delegate, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Identifies the batch in [`BufferMachine::handle_batch_result`].
    pub id: u64,
    /// The writes, in the order they must be applied.
    pub writes: Vec<WriteOp>,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
}

/// What a batch's result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Applied: these writes (including the ones they superseded) are durable.
    Applied(Vec<Seq>),
    /// Failed; the same batch will be handed out again after a backoff.
    Retrying,
    /// Failed for good: the writes went back to the queue (or, while closing,
    /// stay there as unapplied), and these writes' durable writers get the
    /// error.
    Failed {
        /// The writes the batch covered.
        seqs: Vec<Seq>,
        /// The last error.
        error: StoreError,
    },
    /// The result was for a batch that is not in flight; nothing changed.
    Unknown,
}

/// Where the buffer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepting writes.
    Running,
    /// `close()` began: no new writes, everything held is flushed.
    Closing,
    /// A batch failed for good while closing: flushing stopped, and
    /// [`BufferMachine::take_unapplied`] holds what is left.
    CloseFailed,
}

struct InFlight {
    id: u64,
    entries: Vec<(u64, Entry)>,
    attempt: u32,
    /// While waiting to retry: when.
    retry_at: Option<Timestamp>,
}

impl InFlight {
    /// Every write the batch covers (its own and those they superseded), in order.
    fn covered(&self) -> Vec<Seq> {
        let mut seqs: Vec<Seq> = self
            .entries
            .iter()
            .flat_map(|(_, e)| e.covers.iter().map(|&s| Seq(s)))
            .collect();
        seqs.sort_unstable();
        seqs
    }

    fn batch(&self) -> Batch {
        Batch {
            id: self.id,
            writes: self.entries.iter().map(|(_, e)| e.op.clone()).collect(),
            attempt: self.attempt,
        }
    }
}

/// The write-buffer machine.
///
/// # Driving it: writes, flushes and close
///
/// 1. For a write, call [`accept`](Self::accept) (or
///    [`accept_durable`](Self::accept_durable) when the caller waits for the
///    commit). On [`Refusal::Full`], wait until a batch result was reported,
///    then call again; on [`Refusal::Closed`], fail the write with
///    `StoreError::Closed`.
/// 2. After every call, call [`poll_batch`](Self::poll_batch): a batch, if one is
///    due, to apply with [`apply_batch`] (one transaction, bulk calls or single
///    calls, whatever the delegate offers). Report its result with
///    [`handle_batch_result`](Self::handle_batch_result), then poll again. At
///    most one batch is in flight.
/// 3. Arm one timer for [`poll_timeout`](Self::poll_timeout) and poll when it
///    fires.
/// 4. A durable writer waits until
///    [`take_durable_outcome`](Self::take_durable_outcome) answers its
///    sequence number (once: the outcome of the first batch that held its
///    write, or the failed close's error), checking after every batch result
///    and after close; a writer that goes away calls
///    [`forget_durable`](Self::forget_durable).
/// 5. `flush()`: [`handle_flush`](Self::handle_flush), then poll until
///    [`flush_status`](Self::flush_status) answers. `close()`:
///    [`handle_close`](Self::handle_close), then poll until
///    [`close_status`](Self::close_status) answers.
///
/// # Driving it: reads and one-time calls
///
/// Reads are never queued behind writes, but they see every accepted write.
///
/// 1. For a load, call `read_session`, [`read_auth_code`](Self::read_auth_code)
///    or `read_client`. [`Read::Known`] is the answer. [`Read::Ask`] carries a
///    [`ReadTicket`]: ask the delegate, then hand the ticket and its answer to
///    the matching `resolve_*` (the ticket knows its key), which lays the
///    buffer's writes over the answer; if the delegate failed (or the read was
///    dropped), hand the ticket to [`abandon_read`](Self::abandon_read).
///    `list_clients` always asks: [`read_clients`](Self::read_clients), then
///    `resolve_clients`.
/// 2. For `consume_state` and `try_delete_auth_code`, call the method of the
///    same name. [`OneTime::Decided`] is the answer (the record was still
///    queued in the buffer, and its removal is queued); on
///    [`OneTime::AskDelegate`] the delegate decides; on
///    [`OneTime::AwaitBatch`] wait for the outcome of the batch in flight and
///    call again (a record in that batch may reach the delegate, where
///    another instance could take it, before its removal would). After the delegate answered `try_delete_auth_code`,
///    call [`handle_code_taken`](Self::handle_code_taken).
/// 3. A read may queue a write (a dead session or expired code deleted on
///    read, as the delegate would): when
///    [`take_queued_internally`](Self::take_queued_internally) says so after
///    it, poll for a batch.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tokenstore_core::buffer::{BatchOutcome, BufferConfig, BufferMachine, Read, WriteOp};
/// use tokenstore_core::{AuthCodeRecord, StateRecord, Timestamp};
///
/// let t0 = Timestamp::from_unix_secs(1_000);
/// let config = BufferConfig { max_delay: Duration::from_millis(5), ..BufferConfig::default() };
/// let mut buffer = BufferMachine::new(config);
/// let state = |v: &str| WriteOp::StoreState(Arc::new(StateRecord::new(v, t0 + Duration::from_secs(60), t0)));
/// buffer.accept(t0, state("a")).unwrap();
/// buffer.accept(t0, state("a")).unwrap(); // coalesces with the first
/// assert!(buffer.poll_batch(t0).is_none()); // not due yet
/// assert_eq!(buffer.poll_timeout(), Some(t0 + Duration::from_millis(5)));
///
/// // A read of something the buffer does not hold asks the delegate.
/// let Read::Ask(ticket) = buffer.read_auth_code(t0, "code-1") else { unreachable!() };
/// let code = AuthCodeRecord::new("code-1", "sid", t0 + Duration::from_secs(60), t0);
/// let from_delegate = Some(Arc::new(code));
/// let answer = buffer.resolve_auth_code(t0, ticket, from_delegate.clone());
/// assert_eq!(answer, from_delegate);
/// // A pending state is consumed from the buffer.
/// assert!(matches!(buffer.consume_state(t0, "a"), tokenstore_core::buffer::OneTime::Decided(Some(_))));
///
/// let batch = buffer.poll_batch(t0 + Duration::from_millis(5)).expect("due");
/// assert_eq!(batch.writes.len(), 1); // the removal of "a" replaced its store
/// let outcome = buffer.handle_batch_result(t0, batch.id, Ok(()));
/// assert!(matches!(outcome, BatchOutcome::Applied(seqs) if seqs.len() == 3));
/// assert!(buffer.is_drained());
/// ```
pub struct BufferMachine {
    config: BufferConfig,
    phase: Phase,
    next_seq: u64,
    next_batch: u64,
    queue: Queue,
    in_flight: Option<InFlight>,
    /// Flush everything up to this sequence number regardless of triggers.
    flush_until: Option<u64>,
    /// After a final failure, no new batch before this.
    cooldown_until: Option<Timestamp>,
    /// The oldest write handed out by `take_unapplied`: never applied here.
    given_up_from: Option<u64>,
    /// The most writes the next batch takes: `max_batch_size`, halved by each
    /// batch that fails for good and doubled back by each success, so that a
    /// delegate applying a batch call by call still makes progress when calls
    /// fail often.
    batch_limit: usize,
    /// The newest write [`prepare_next`](Self::prepare_next) handed out.
    prepared_through: u64,
    last_now: Timestamp,
    metrics: BufferMetrics,
    /// Batches that failed for good so far (what a flush ticket compares).
    failures: u64,
    /// The oldest write of the last batch that failed for good, and its error.
    last_failure: Option<(Seq, StoreError)>,
    /// Durable writers by sequence number: `None` while they wait, then the
    /// outcome until they take it.
    durable: BTreeMap<u64, Option<Result<(), StoreError>>>,
    /// Outstanding delegate reads: ticket id to the oldest unapplied write when
    /// the read began.
    reads: BTreeMap<u64, u64>,
    next_read: u64,
    /// Changes the delegate made while a read that may not have seen them was
    /// out, in order: applied writes at `(seq, APPLIED)`, and codes a one-time
    /// call took at the delegate at `(s, n)`, where `s` is the oldest held
    /// write's sequence number then, or the next one (so the removal comes
    /// after every write applied before it and before every write applied
    /// after it, and inside the range of every read then out), and `n` counts
    /// up.
    retained: BTreeMap<(u64, u64), (WriteOp, OpHashes)>,
    /// Whether the buffer queued a write of its own since
    /// [`take_queued_internally`](BufferMachine::take_queued_internally) last
    /// answered.
    queued_internally: bool,
}

/// Where an applied write sits in `BufferMachine::retained`: after the codes
/// taken at the delegate while it was still unapplied.
const APPLIED: u64 = u64::MAX;

/// Counters of the write buffer (numbers only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferMetrics {
    /// Writes accepted (the buffer's own included: removals behind consumed
    /// pending states, deletes a read implies).
    pub accepted: u64,
    /// Writes refused because the buffer was full.
    pub refused_full: u64,
    /// Writes refused because the buffer was closing.
    pub refused_closed: u64,
    /// Writes dropped because a newer write superseded them.
    pub coalesced: u64,
    /// Batches handed out (retries included).
    pub batches: u64,
    /// Writes in batches that were applied.
    pub applied_writes: u64,
    /// Batches applied.
    pub applied_batches: u64,
    /// Batch attempts that failed.
    pub failed_attempts: u64,
    /// Batches that failed for good (after every retry).
    pub failed_batches: u64,
}

impl BufferMachine {
    /// An empty buffer.
    pub fn new(config: BufferConfig) -> Self {
        let config = config.normalized();
        Self {
            batch_limit: config.max_batch_size,
            prepared_through: 0,
            config,
            phase: Phase::Running,
            next_seq: 1,
            next_batch: 1,
            queue: Queue::default(),
            in_flight: None,
            flush_until: None,
            cooldown_until: None,
            given_up_from: None,
            last_now: Timestamp::MIN,
            metrics: BufferMetrics::default(),
            failures: 0,
            last_failure: None,
            durable: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            retained: BTreeMap::new(),
            queued_internally: false,
        }
    }

    /// The configuration (sizes of zero read as one).
    pub fn config(&self) -> &BufferConfig {
        &self.config
    }

    /// Accepts a write into the queue, coalescing it with an older pending write
    /// it supersedes.
    pub fn accept(&mut self, now: Timestamp, op: WriteOp) -> Result<Seq, Refused> {
        self.observe(now);
        let reason = if self.phase != Phase::Running {
            self.metrics.refused_closed += 1;
            Refusal::Closed
        } else if self.held() >= self.config.max_pending {
            self.metrics.refused_full += 1;
            Refusal::Full
        } else {
            return Ok(self.enqueue(now, op));
        };
        Err(Refused { reason, op })
    }

    /// Accepts a write whose caller waits until it is committed
    /// (`Ack::Durable`): like [`accept`](Self::accept), but the write is due at
    /// once, whatever `max_delay` says, and its outcome waits for
    /// [`take_durable_outcome`](Self::take_durable_outcome). This is group
    /// commit: while one batch is in flight, durable writes gather in the
    /// queue, and the next [`poll_batch`](Self::poll_batch) takes them all in
    /// one batch. A lone writer therefore waits for its own commit only, never
    /// for a timer.
    pub fn accept_durable(&mut self, now: Timestamp, op: WriteOp) -> Result<Seq, Refused> {
        let seq = self.accept(now, op)?;
        self.flush_until = Some(self.flush_until.map_or(seq.0, |t| t.max(seq.0)));
        self.durable.insert(seq.0, None);
        Ok(seq)
    }

    /// Queues a write the buffer itself needs (the removal behind a consumed
    /// pending state, or a delete a read implies); never refused.
    pub fn accept_internal(&mut self, now: Timestamp, op: WriteOp) -> Seq {
        self.observe(now);
        self.queued_internally = true;
        self.enqueue(now, op)
    }

    /// Whether a read or one-time call queued a write of the buffer's own
    /// ([`accept_internal`](Self::accept_internal)) since the last call, which
    /// it resets. A driver wakes its flush worker after a read only then: a
    /// read that queued nothing changes no batch, no timer and nothing to
    /// prepare, and waking the worker after every read costs a wake-up of its
    /// task (often of another thread) per read.
    pub fn take_queued_internally(&mut self) -> bool {
        std::mem::take(&mut self.queued_internally)
    }

    fn enqueue(&mut self, now: Timestamp, op: WriteOp) -> Seq {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.queue.push(seq, op, now) {
            self.metrics.coalesced += 1;
        }
        Seq(seq)
    }

    /// The outcome for the durable writer of `seq`, once decided, and only
    /// once: `Ok` when the first batch that held its write was applied, that
    /// batch's error when it failed for good (the write was requeued: `Err`
    /// means "not confirmed durable"), or
    /// [`StoreError::WritesNotApplied`] when close failed before any batch
    /// held it. `None` while it is undecided (or was already taken).
    pub fn take_durable_outcome(&mut self, seq: Seq) -> Option<Result<(), StoreError>> {
        match self.durable.get(&seq.0) {
            Some(Some(_)) => self.durable.remove(&seq.0).flatten(),
            _ => None,
        }
    }

    /// The durable writer of `seq` went away: its outcome is not kept.
    pub fn forget_durable(&mut self, seq: Seq) {
        self.durable.remove(&seq.0);
    }

    /// Durable writers still waiting for their outcome.
    pub fn durable_waiting(&self) -> usize {
        self.durable.values().filter(|o| o.is_none()).count()
    }

    /// Answers every waiting durable writer among `seqs`.
    fn settle(&mut self, seqs: &[Seq], outcome: &Result<(), StoreError>) {
        for seq in seqs {
            if let Some(slot @ None) = self.durable.get_mut(&seq.0) {
                *slot = Some(outcome.clone());
            }
        }
    }

    /// Asks for everything accepted so far to be flushed; returns what to pass
    /// to [`flush_status`](Self::flush_status).
    pub fn handle_flush(&mut self) -> FlushTicket {
        let target = self.next_seq - 1;
        self.flush_until = Some(self.flush_until.map_or(target, |t| t.max(target)));
        FlushTicket {
            target: Seq(target),
            failures_before: self.failures,
        }
    }

    /// Where a flush stands: `Some(Ok(()))` once every write it covers was
    /// applied, `Some(Err(..))` when a batch holding one of them failed for good
    /// since the flush began (the writes stay queued), `None` while it goes on.
    pub fn flush_status(&self, flush: &FlushTicket) -> Option<Result<(), StoreError>> {
        if self.is_flushed(flush.target) {
            return Some(Ok(()));
        }
        let last_error = || self.last_failure.as_ref().map(|(_, e)| e.clone());
        if self.phase == Phase::CloseFailed {
            // Flushing stopped for good: what this flush covers is not applied
            // and never will be by this buffer.
            return Some(Err(last_error().unwrap_or(StoreError::Closed)));
        }
        let failed_since = self.failures != flush.failures_before;
        match &self.last_failure {
            Some((oldest, _)) if failed_since && *oldest <= flush.target => last_error().map(Err),
            _ => None,
        }
    }

    /// Begins closing: no new writes, and everything pending is flushed.
    pub fn handle_close(&mut self) {
        if self.phase == Phase::Running {
            self.phase = Phase::Closing;
        }
        self.handle_flush();
    }

    /// Where a close stands: `None` while it drains, `Some(Ok(()))` once
    /// nothing is held (everything was applied, or taken by
    /// [`take_unapplied`](Self::take_unapplied)), and
    /// [`StoreError::WritesNotApplied`] once a batch failed for good and the
    /// writes left are kept for `take_unapplied`. Call it after
    /// [`handle_close`](Self::handle_close).
    pub fn close_status(&self) -> Option<Result<(), StoreError>> {
        if self.is_drained() {
            Some(Ok(()))
        } else if self.phase == Phase::CloseFailed {
            Some(Err(StoreError::WritesNotApplied { count: self.held() }))
        } else {
            None
        }
    }

    /// The batch to apply now, if one is due and none is in flight (or the one
    /// in flight is due for a retry).
    pub fn poll_batch(&mut self, now: Timestamp) -> Option<Batch> {
        self.observe(now);
        if let Some(f) = &mut self.in_flight {
            return match f.retry_at {
                Some(at) if at <= now => {
                    f.retry_at = None;
                    f.attempt += 1;
                    self.metrics.batches += 1;
                    Some(f.batch())
                }
                _ => None,
            };
        }
        if self.next_flush_at().is_none_or(|at| at > now) {
            return None;
        }
        let flight = InFlight {
            id: self.next_batch,
            entries: self.queue.take_front(self.batch_limit),
            attempt: 1,
            retry_at: None,
        };
        self.next_batch += 1;
        self.metrics.batches += 1;
        Some(self.in_flight.insert(flight).batch())
    }

    /// The writes the next batch would hold if it started now (the front of
    /// the queue, at most the batch limit) that no earlier call handed out,
    /// for a delegate to [`prepare`](crate::BatchWriteStore::prepare) while
    /// the batch in flight commits. A preview only: coalescing or a failed
    /// batch may still change the next batch, and a prepared write that is
    /// not in it is simply not used. Each write is handed out once (a write
    /// requeued by a failed batch is not handed out again).
    pub fn prepare_next(&mut self) -> Vec<WriteOp> {
        let fresh: Vec<(u64, WriteOp)> = self
            .queue
            .front_after(self.batch_limit, self.prepared_through)
            .map(|(seq, op)| (seq, op.clone()))
            .collect();
        if let Some(&(last, _)) = fresh.last() {
            self.prepared_through = last;
        }
        fresh.into_iter().map(|(_, op)| op).collect()
    }

    /// When to poll again at the latest, if anything is waiting for time.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.in_flight {
            Some(f) => f.retry_at,
            None => self.next_flush_at(),
        }
    }

    /// When the next batch may start, with none in flight: the one flush
    /// trigger. A flush or durable write asked, or a full batch is pending: at
    /// once; otherwise `max_delay` after the oldest pending write was accepted;
    /// never during a cooldown, and never after a failed close.
    fn next_flush_at(&self) -> Option<Timestamp> {
        let oldest = self.queue.oldest_accepted()?;
        if self.phase == Phase::CloseFailed {
            return None;
        }
        let at = if self.forced() || self.queue.len() >= self.config.max_batch_size {
            oldest
        } else {
            oldest + self.config.max_delay
        };
        Some(self.cooldown_until.map_or(at, |c| c.max(at)))
    }

    /// Whether a flush or durable write asked for a queued write to go now.
    fn forced(&self) -> bool {
        self.flush_until
            .is_some_and(|t| self.queue.first_seq().is_some_and(|s| s <= t))
    }

    /// Reports the result of applying batch `id`.
    pub fn handle_batch_result(
        &mut self,
        now: Timestamp,
        id: u64,
        result: Result<(), StoreError>,
    ) -> BatchOutcome {
        self.observe(now);
        match &self.in_flight {
            Some(f) if f.id == id && f.retry_at.is_none() => {}
            _ => return BatchOutcome::Unknown,
        }
        match result {
            Ok(()) => self.applied(),
            Err(error) => self.failed(now, error),
        }
    }

    /// Whether every write up to `target` was applied.
    pub fn is_flushed(&self, target: Seq) -> bool {
        self.oldest_unapplied().is_none_or(|s| s > target.0)
    }

    /// Whether nothing is pending or in flight.
    pub fn is_drained(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_none()
    }

    /// Whether close began and has finished: drained, or stopped by a failure.
    pub fn closing_done(&self) -> bool {
        self.phase != Phase::Running && self.close_status().is_some()
    }

    /// Whether close began and a batch then failed for good: flushing stopped,
    /// and [`take_unapplied`](Self::take_unapplied) holds what is left.
    pub fn close_failed(&self) -> bool {
        self.phase == Phase::CloseFailed
    }

    /// After a close that failed ([`close_failed`](Self::close_failed)): every
    /// write not applied, in order, leaving the buffer empty (for `close()` to
    /// return instead of dropping them). Otherwise nothing: a running buffer
    /// keeps its writes and flushes them itself.
    pub fn take_unapplied(&mut self) -> Vec<WriteOp> {
        if self.phase != Phase::CloseFailed {
            return Vec::new();
        }
        let oldest = self.oldest_unapplied();
        self.given_up_from = self.given_up_from.into_iter().chain(oldest).min();
        let mut out: Vec<(u64, Entry)> = self.in_flight.take().map_or(Vec::new(), |f| f.entries);
        out.extend(self.queue.take_all());
        out.sort_by_key(|(s, _)| *s);
        out.into_iter().map(|(_, e)| e.op).collect()
    }

    /// Writes held (pending and in flight), after coalescing.
    pub fn held(&self) -> usize {
        self.queue.len() + self.in_flight.as_ref().map_or(0, |f| f.entries.len())
    }

    /// Counters.
    pub fn metrics(&self) -> BufferMetrics {
        BufferMetrics {
            accepted: self.next_seq - 1,
            ..self.metrics
        }
    }

    /// The pending and in-flight writes, oldest first (for read-your-writes).
    pub fn held_writes(&self) -> impl Iterator<Item = &WriteOp> + Clone {
        self.flight_writes().chain(self.queue.ops())
    }

    /// The writes of the batch in flight (also while it waits to be retried).
    fn flight_writes(&self) -> impl Iterator<Item = &WriteOp> + Clone {
        self.flight_hashed().map(|(op, _)| op)
    }

    /// [`held_writes`](Self::held_writes) with the hashes each names.
    fn held_hashed(&self) -> impl Iterator<Item = (&WriteOp, &OpHashes)> + Clone {
        self.flight_hashed().chain(self.queue.hashed_ops())
    }

    fn flight_hashed(&self) -> impl Iterator<Item = (&WriteOp, &OpHashes)> + Clone {
        self.in_flight
            .iter()
            .flat_map(|f| f.entries.iter().map(|(_, e)| (&e.op, &e.hashes)))
    }

    /// The retry delay after failed attempt `attempt` (1 for the first):
    /// `retry_backoff`, doubling with each attempt.
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.config.retry_backoff.saturating_mul(1 << doublings)
    }

    fn applied(&mut self) -> BatchOutcome {
        let f = self.in_flight.take().expect("checked in flight");
        if let Some(&oldest_read) = self.reads.values().min() {
            for (seq, e) in &f.entries {
                if *seq >= oldest_read {
                    self.retained
                        .insert((*seq, APPLIED), (e.op.clone(), e.hashes));
                }
            }
        }
        self.cooldown_until = None;
        self.batch_limit = self
            .batch_limit
            .saturating_mul(2)
            .min(self.config.max_batch_size);
        self.metrics.applied_batches += 1;
        self.metrics.applied_writes += f.entries.len() as u64;
        let seqs = f.covered();
        self.settle(&seqs, &Ok(()));
        if self.is_drained() || self.flush_until.is_some_and(|t| self.is_flushed(Seq(t))) {
            self.flush_until = None;
        }
        BatchOutcome::Applied(seqs)
    }

    fn failed(&mut self, now: Timestamp, error: StoreError) -> BatchOutcome {
        self.metrics.failed_attempts += 1;
        let f = self.in_flight.as_ref().expect("checked in flight");
        if f.attempt <= self.config.max_retries {
            let retry_at = now + self.backoff(f.attempt);
            self.in_flight.as_mut().expect("checked").retry_at = Some(retry_at);
            return BatchOutcome::Retrying;
        }
        self.metrics.failed_batches += 1;
        self.failures += 1;
        self.batch_limit = (self.batch_limit / 2).max(1);
        let f = self.in_flight.take().expect("checked in flight");
        let seqs = f.covered();
        self.last_failure = seqs.first().map(|s| (*s, error.clone()));
        self.metrics.coalesced += self.queue.requeue(f.entries);
        self.settle(&seqs, &Err(error.clone()));
        if self.phase == Phase::Running {
            self.cooldown_until = Some(now + self.backoff(self.config.max_retries + 1));
        } else {
            self.close_failed_for_good();
        }
        BatchOutcome::Failed { seqs, error }
    }

    /// A batch failed for good while closing: flushing stops, and every durable
    /// writer still waiting holds one of the writes left, so it is told now.
    fn close_failed_for_good(&mut self) {
        self.phase = Phase::CloseFailed;
        let left = Err(StoreError::WritesNotApplied { count: self.held() });
        for slot in self.durable.values_mut().filter(|s| s.is_none()) {
            *slot = Some(left.clone());
        }
    }

    fn oldest_unapplied(&self) -> Option<u64> {
        let flying = self
            .in_flight
            .iter()
            .flat_map(|f| f.entries.iter().flat_map(|(_, e)| e.covers.iter().copied()))
            .min();
        self.queue
            .oldest_covered()
            .into_iter()
            .chain(flying)
            .chain(self.given_up_from)
            .min()
    }

    /// Keeps the machine sane when time goes backwards: nothing waits longer than
    /// its delay from the earliest time seen since.
    fn observe(&mut self, now: Timestamp) {
        if now < self.last_now {
            self.queue.clamp_accepted(now);
            let soonest = now + self.config.retry_backoff;
            if let Some(f) = &mut self.in_flight {
                f.retry_at = f.retry_at.map(|r| r.min(soonest));
            }
            self.cooldown_until = self.cooldown_until.map(|c| c.min(soonest));
        }
        self.last_now = now;
    }
}

impl fmt::Debug for BufferMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferMachine")
            .field("pending", &self.queue.len())
            .field(
                "in_flight",
                &self.in_flight.as_ref().map(|f| f.entries.len()),
            )
            .field("closing", &(self.phase != Phase::Running))
            .field("phase", &self.phase)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
