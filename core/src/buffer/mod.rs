//! The write-buffer machine: pure, synchronous and deterministic.
//!
//! [`BufferMachine`] decides which writes are accepted, how they coalesce, when a
//! batch is flushed, what happens when one fails, and when the buffer is drained.
//! It owns no clock, lock, thread or future: time comes in as `now`, and the
//! adapter applies the batches it hands out.

mod op;
mod overlay;

pub use op::{Step, WriteOp, apply, apply_batch, plan};
pub use overlay::{OneTime, Read, ReadTicket, SessionKey};

use crate::{AuthCodeRecord, ClientRecord, StateRecord, StoreError, StoredSession, Timestamp};
use op::Slot;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Where an applied write sits in `BufferMachine::retained`: after the codes
/// taken at the delegate while it was still unapplied.
const APPLIED: u64 = u64::MAX;

/// Settings of the write buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferConfig {
    /// A flush starts as soon as this many writes are pending, and no batch
    /// holds more. Default 256.
    pub max_batch_size: usize,
    /// A flush starts once the oldest pending write has waited this long; zero
    /// flushes as soon as no batch is in flight. Default 5 ms.
    pub max_delay: Duration,
    /// Writes held at most (pending and in flight); past it, writers wait.
    /// Default 10,000.
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
    /// stay there as unapplied), and these writes' waiters get the error.
    Failed {
        /// The writes the batch covered.
        seqs: Vec<Seq>,
        /// The last error.
        error: StoreError,
    },
    /// The result was for a batch that is not in flight; nothing changed.
    Unknown,
}

struct Entry {
    op: WriteOp,
    /// This write and the older writes it superseded.
    covers: Vec<u64>,
    accepted_at: Timestamp,
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
}

struct InFlight {
    id: u64,
    entries: Vec<(u64, Entry)>,
    attempt: u32,
    /// While waiting to retry: when.
    retry_at: Option<Timestamp>,
}

/// The write-buffer machine.
///
/// # Driving it
///
/// 1. For a write, call [`handle_write`](Self::handle_write). On
///    [`Refusal::Full`], wait until a batch result was reported, then call again;
///    on [`Refusal::Closed`], fail the write with `StoreError::Closed`.
/// 2. After every call, call [`poll_batch`](Self::poll_batch): a batch, if one is
///    due, to apply with [`plan`] (bulk calls where the delegate has them).
///    Report its result with [`handle_batch_result`](Self::handle_batch_result),
///    then poll again. At most one batch is in flight.
/// 3. Arm one timer for [`poll_timeout`](Self::poll_timeout) and poll when it
///    fires.
/// 4. `flush()`: [`handle_flush`](Self::handle_flush), then poll until
///    [`flush_status`](Self::flush_status) answers. `close()`: [`handle_close`](Self::handle_close), then
///    poll until [`is_drained`](Self::is_drained) or a batch fails for good, and
///    return [`take_unapplied`](Self::take_unapplied).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tokenstore_core::buffer::{BatchOutcome, BufferConfig, BufferMachine, WriteOp};
/// use tokenstore_core::{StateRecord, Timestamp};
///
/// let t0 = Timestamp::from_unix_secs(1_000);
/// let config = BufferConfig { max_delay: Duration::from_millis(5), ..BufferConfig::default() };
/// let mut buffer = BufferMachine::new(config);
/// let state = |v: &str| WriteOp::StoreState(Arc::new(StateRecord::new(v, t0 + Duration::from_secs(60), t0)));
/// buffer.handle_write(t0, state("a")).unwrap();
/// buffer.handle_write(t0, state("a")).unwrap(); // coalesces with the first
/// assert!(buffer.poll_batch(t0).is_none()); // not due yet
/// assert_eq!(buffer.poll_timeout(), Some(t0 + Duration::from_millis(5)));
///
/// let batch = buffer.poll_batch(t0 + Duration::from_millis(5)).expect("due");
/// assert_eq!(batch.writes.len(), 1);
/// let outcome = buffer.handle_batch_result(t0, batch.id, Ok(()));
/// assert!(matches!(outcome, BatchOutcome::Applied(seqs) if seqs.len() == 2));
/// assert!(buffer.is_drained());
/// ```
pub struct BufferMachine {
    config: BufferConfig,
    next_seq: u64,
    next_batch: u64,
    queue: BTreeMap<u64, Entry>,
    slots: HashMap<Slot, u64>,
    in_flight: Option<InFlight>,
    /// Flush everything up to this sequence number regardless of triggers.
    flush_until: Option<u64>,
    /// After a final failure, no new batch before this.
    cooldown_until: Option<Timestamp>,
    closing: bool,
    /// Set when a batch failed for good while closing: flushing stops.
    close_failed: bool,
    /// The oldest write handed out by `take_unapplied`: never applied here.
    given_up_from: Option<u64>,
    /// The most writes the next batch takes: `max_batch_size`, halved by each
    /// batch that fails for good and doubled back by each success, so that a
    /// delegate applying a batch call by call still makes progress when calls
    /// fail often.
    batch_limit: usize,
    last_now: Timestamp,
    metrics: BufferMetrics,
    /// The oldest write of the last batch that failed for good, and its error.
    last_failure: Option<(Seq, StoreError)>,
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
    retained: BTreeMap<(u64, u64), WriteOp>,
}

/// Counters of the write buffer (numbers only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferMetrics {
    /// Writes accepted.
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
        let batch_limit = config.max_batch_size.max(1);
        Self {
            config,
            next_seq: 1,
            next_batch: 1,
            queue: BTreeMap::new(),
            slots: HashMap::new(),
            in_flight: None,
            flush_until: None,
            cooldown_until: None,
            closing: false,
            close_failed: false,
            last_now: Timestamp::MIN,
            metrics: BufferMetrics::default(),
            last_failure: None,
            given_up_from: None,
            batch_limit,
            reads: BTreeMap::new(),
            next_read: 1,
            retained: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BufferConfig {
        &self.config
    }

    /// Accepts a write, coalescing it with an older pending write it supersedes.
    pub fn handle_write(&mut self, now: Timestamp, op: WriteOp) -> Result<Seq, Refused> {
        self.observe(now);
        let reason = if self.closing {
            self.metrics.refused_closed += 1;
            Refusal::Closed
        } else if self.held() >= self.config.max_pending.max(1) {
            self.metrics.refused_full += 1;
            Refusal::Full
        } else {
            return Ok(self.enqueue(now, op));
        };
        Err(Refused { reason, op })
    }

    /// Accepts a write whose caller waits until it is committed
    /// (`Ack::Durable`): like [`handle_write`](Self::handle_write), but the write
    /// is due at once, whatever `max_delay` says. This is group commit: while
    /// one batch is in flight, durable writes gather in the queue, and the next
    /// [`poll_batch`](Self::poll_batch) takes them all in one batch. A lone
    /// writer therefore waits for its own commit only, never for a timer.
    pub fn handle_durable_write(&mut self, now: Timestamp, op: WriteOp) -> Result<Seq, Refused> {
        let seq = self.handle_write(now, op)?;
        self.flush_until = Some(self.flush_until.map_or(seq.0, |t| t.max(seq.0)));
        Ok(seq)
    }

    /// Queues a write the buffer itself needs (the removal behind a consumed
    /// pending state, or a delete a read implies); never refused.
    pub fn handle_internal_write(&mut self, now: Timestamp, op: WriteOp) -> Seq {
        self.observe(now);
        self.enqueue(now, op)
    }

    fn enqueue(&mut self, now: Timestamp, op: WriteOp) -> Seq {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut covers = vec![seq];
        let slot = op.slot();
        if let Some(&older) = self.slots.get(&slot)
            && op.supersedes(&self.queue[&older].op)
        {
            let old = self.queue.remove(&older).expect("indexed entry is queued");
            covers.extend(old.covers);
            self.metrics.coalesced += 1;
        }
        self.slots.insert(slot, seq);
        self.queue.insert(
            seq,
            Entry {
                op,
                covers,
                accepted_at: now,
            },
        );
        self.metrics.accepted += 1;
        Seq(seq)
    }

    /// Asks for everything accepted so far to be flushed; returns what to pass
    /// to [`flush_status`](Self::flush_status).
    pub fn handle_flush(&mut self) -> FlushTicket {
        let target = self.next_seq - 1;
        self.flush_until = Some(self.flush_until.map_or(target, |t| t.max(target)));
        FlushTicket {
            target: Seq(target),
            failures_before: self.metrics.failed_batches,
        }
    }

    /// Where a flush stands: `Some(Ok(()))` once every write it covers was
    /// applied, `Some(Err(..))` when a batch holding one of them failed for good
    /// since the flush began (the writes stay queued), `None` while it goes on.
    pub fn flush_status(&self, flush: &FlushTicket) -> Option<Result<(), StoreError>> {
        if self.is_flushed(flush.target) {
            return Some(Ok(()));
        }
        if self.close_failed {
            // Flushing stopped for good: what this flush covers is not applied
            // and never will be by this buffer.
            let error = self.last_failure.as_ref().map(|(_, e)| e.clone());
            return Some(Err(error.unwrap_or(StoreError::Closed)));
        }
        match &self.last_failure {
            Some((oldest, error))
                if self.metrics.failed_batches != flush.failures_before
                    && *oldest <= flush.target =>
            {
                Some(Err(error.clone()))
            }
            _ => None,
        }
    }

    /// Begins closing: no new writes, and everything pending is flushed.
    pub fn handle_close(&mut self) {
        self.closing = true;
        self.handle_flush();
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
                    Some(Self::batch_of(f))
                }
                _ => None,
            };
        }
        if !self.due(now) {
            return None;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let entries = self.take_front();
        let flight = InFlight {
            id,
            entries,
            attempt: 1,
            retry_at: None,
        };
        let batch = Self::batch_of(&flight);
        self.in_flight = Some(flight);
        self.metrics.batches += 1;
        Some(batch)
    }

    /// When to poll again at the latest, if anything is waiting for time.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if let Some(f) = &self.in_flight {
            return f.retry_at;
        }
        let oldest = self.oldest_accepted()?;
        if self.close_failed {
            return None;
        }
        // Due regardless of time (a flush or durable write asked, or a full
        // batch): only a cooldown can hold it back; otherwise the delay runs.
        let due = if self.forced() || self.queue.len() >= self.config.max_batch_size.max(1) {
            oldest
        } else {
            oldest + self.config.max_delay
        };
        Some(self.cooldown_until.map_or(due, |c| c.max(due)))
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
        self.closing && (self.is_drained() || self.close_failed)
    }

    /// Whether close began and a batch then failed for good: flushing stopped,
    /// and [`take_unapplied`](Self::take_unapplied) holds what is left.
    pub fn close_failed(&self) -> bool {
        self.close_failed
    }

    /// After a close that failed ([`close_failed`](Self::close_failed)): every
    /// write not applied, in order, leaving the buffer empty (for `close()` to
    /// return instead of dropping them). Otherwise nothing: a running buffer
    /// keeps its writes and flushes them itself.
    pub fn take_unapplied(&mut self) -> Vec<WriteOp> {
        if !self.close_failed {
            return Vec::new();
        }
        let oldest = self.oldest_unapplied();
        self.given_up_from = self.given_up_from.into_iter().chain(oldest).min();
        let mut out: Vec<(u64, WriteOp)> = Vec::new();
        if let Some(f) = self.in_flight.take() {
            out.extend(f.entries.into_iter().map(|(s, e)| (s, e.op)));
        }
        out.extend(
            std::mem::take(&mut self.queue)
                .into_iter()
                .map(|(s, e)| (s, e.op)),
        );
        self.slots.clear();
        out.sort_by_key(|(s, _)| *s);
        out.into_iter().map(|(_, op)| op).collect()
    }

    /// Writes held (pending and in flight), after coalescing.
    pub fn held(&self) -> usize {
        self.queue.len() + self.in_flight.as_ref().map_or(0, |f| f.entries.len())
    }

    /// Counters.
    pub fn metrics(&self) -> BufferMetrics {
        self.metrics
    }

    /// The pending and in-flight writes, oldest first (for read-your-writes).
    pub fn held_writes(&self) -> impl Iterator<Item = &WriteOp> + Clone {
        let flight = self
            .in_flight
            .iter()
            .flat_map(|f| f.entries.iter().map(|(_, e)| &e.op));
        flight.chain(self.queue.values().map(|e| &e.op))
    }

    /// Decides a session read from the buffer's writes, or asks for the delegate.
    pub fn read_session(&mut self, now: Timestamp, key: &SessionKey) -> Read<StoredSession> {
        match overlay::session_after(self.held_writes(), key, None) {
            Ok((held, _)) => Read::Known(self.visible_session(now, held, key)),
            Err(()) => Read::Ask(self.issue_read()),
        }
    }

    /// The answer to a session read, given what the delegate answered.
    pub fn resolve_session(
        &mut self,
        now: Timestamp,
        ticket: ReadTicket,
        key: &SessionKey,
        answer: Option<Arc<StoredSession>>,
    ) -> Option<Arc<StoredSession>> {
        let (held, from_writes) =
            overlay::session_after(self.writes_since(ticket.start), key, Some(answer))
                .expect("the delegate's answer is known");
        self.redeem(ticket);
        if from_writes {
            self.visible_session(now, held, key)
        } else {
            held
        }
    }

    /// Decides an authorization-code read from the buffer's writes, or asks.
    pub fn read_auth_code(&mut self, now: Timestamp, code: &str) -> Read<AuthCodeRecord> {
        match overlay::last_code(self.held_writes(), code) {
            Some(found) => Read::Known(self.live_code(now, found)),
            None => Read::Ask(self.issue_read()),
        }
    }

    /// The answer to a code read, given what the delegate answered.
    pub fn resolve_auth_code(
        &mut self,
        now: Timestamp,
        ticket: ReadTicket,
        code: &str,
        answer: Option<Arc<AuthCodeRecord>>,
    ) -> Option<Arc<AuthCodeRecord>> {
        let found = overlay::last_code(self.writes_since(ticket.start), code);
        self.redeem(ticket);
        match found {
            Some(found) => self.live_code(now, found),
            None => answer,
        }
    }

    /// Decides a client read from the buffer's writes, or asks.
    pub fn read_client(&mut self, client_id: &str) -> Read<ClientRecord> {
        match overlay::last_client(self.held_writes(), client_id) {
            Some(found) => Read::Known(found),
            None => Read::Ask(self.issue_read()),
        }
    }

    /// The answer to a client read, given what the delegate answered.
    pub fn resolve_client(
        &mut self,
        ticket: ReadTicket,
        client_id: &str,
        answer: Option<Arc<ClientRecord>>,
    ) -> Option<Arc<ClientRecord>> {
        let found = overlay::last_client(self.writes_since(ticket.start), client_id);
        self.redeem(ticket);
        found.unwrap_or(answer)
    }

    /// A ticket for `list_clients` (the delegate is always asked).
    pub fn read_clients(&mut self) -> ReadTicket {
        self.issue_read()
    }

    /// The client list, given the delegate's.
    pub fn resolve_clients(
        &mut self,
        ticket: ReadTicket,
        listed: Vec<Arc<ClientRecord>>,
    ) -> Vec<Arc<ClientRecord>> {
        let clients = overlay::clients_after(self.writes_since(ticket.start), listed);
        self.redeem(ticket);
        clients
    }

    /// Gives back a ticket whose delegate read failed or was dropped.
    pub fn abandon_read(&mut self, ticket: ReadTicket) {
        self.redeem(ticket);
    }

    /// Decides `consume_state` when the state's last write is still in the
    /// buffer (queueing its removal at the delegate); otherwise the delegate
    /// decides.
    pub fn consume_state(
        &mut self,
        now: Timestamp,
        key: &str,
    ) -> OneTime<Option<Arc<StateRecord>>> {
        let Some(found) = overlay::last_state(self.held_writes(), key) else {
            return OneTime::AskDelegate;
        };
        if found.is_some() {
            self.handle_internal_write(now, WriteOp::RemoveState(key.to_owned()));
        }
        OneTime::Decided(found.filter(|s| !s.is_expired(now)))
    }

    /// Decides `try_delete_auth_code` when the code's last write is still in the
    /// buffer (queueing the delete); otherwise the delegate decides.
    pub fn try_delete_auth_code(&mut self, now: Timestamp, code: &str) -> OneTime<bool> {
        let Some(found) = overlay::last_code(self.held_writes(), code) else {
            return OneTime::AskDelegate;
        };
        if found.is_some() {
            self.handle_internal_write(now, WriteOp::DeleteAuthCode(code.to_owned()));
        }
        OneTime::Decided(found.is_some_and(|c| !c.is_expired(now)))
    }

    /// Reports that the delegate decided `try_delete_auth_code(code)` (after
    /// [`OneTime::AskDelegate`]) and answered: the code is gone from the
    /// delegate. A read of it that was in flight then must not answer it from
    /// a write applied before, so the removal is retained like an applied
    /// write. Not needed when the delegate failed.
    pub fn handle_code_taken(&mut self, code: &str) {
        if self.reads.is_empty() {
            return;
        }
        let held = self.in_flight.iter().flat_map(|f| f.entries.iter());
        let oldest_held = held
            .map(|(seq, _)| *seq)
            .chain(self.queue.keys().next().copied())
            .min()
            .unwrap_or(self.next_seq);
        // After any code already taken at this point.
        let n = self
            .retained
            .range((oldest_held, 0)..(oldest_held, APPLIED))
            .next_back()
            .map_or(1, |(&(_, n), _)| n + 1);
        self.retained
            .insert((oldest_held, n), WriteOp::DeleteAuthCode(code.to_owned()));
    }

    /// Delegate reads in flight.
    pub fn reads_in_flight(&self) -> usize {
        self.reads.len()
    }

    fn visible_session(
        &mut self,
        now: Timestamp,
        held: Option<Arc<StoredSession>>,
        key: &SessionKey,
    ) -> Option<Arc<StoredSession>> {
        let dead_token = held.as_ref().map(|s| s.access_token.clone());
        let (answer, dead) = overlay::visible_session(held, key, now);
        if let (true, Some(token)) = (dead, dead_token) {
            // The delegate deletes a dead session on read; so does the buffer.
            self.handle_internal_write(now, WriteOp::DeleteSessionByToken(token));
        }
        answer
    }

    fn live_code(
        &mut self,
        now: Timestamp,
        found: Option<Arc<AuthCodeRecord>>,
    ) -> Option<Arc<AuthCodeRecord>> {
        match found {
            Some(c) if c.is_expired(now) => {
                // The delegate removes an expired code on read; so does the buffer.
                self.handle_internal_write(now, WriteOp::DeleteAuthCode(c.code.clone()));
                None
            }
            other => other,
        }
    }

    fn issue_read(&mut self) -> ReadTicket {
        let id = self.next_read;
        self.next_read += 1;
        let start = self.oldest_unapplied().unwrap_or(self.next_seq);
        self.reads.insert(id, start);
        ReadTicket { id, start }
    }

    fn redeem(&mut self, ticket: ReadTicket) {
        self.reads.remove(&ticket.id);
        match self.reads.values().min() {
            None => self.retained.clear(),
            Some(&oldest) => self.retained = self.retained.split_off(&(oldest, 0)),
        }
    }

    /// Writes a read that began at `start` may not have seen, in order.
    fn writes_since(&self, start: u64) -> impl Iterator<Item = &WriteOp> + Clone {
        self.retained
            .range((start, 0)..)
            .map(|(_, w)| w)
            .chain(self.held_writes())
    }

    /// When the oldest pending write was accepted.
    fn oldest_accepted(&self) -> Option<Timestamp> {
        self.queue.values().map(|e| e.accepted_at).min()
    }

    fn due(&self, now: Timestamp) -> bool {
        let Some(oldest) = self.oldest_accepted() else {
            return false;
        };
        if self.close_failed || self.cooldown_until.is_some_and(|c| now < c) {
            return false;
        }
        self.forced()
            || self.queue.len() >= self.config.max_batch_size.max(1)
            || now.saturating_duration_since(oldest) >= self.config.max_delay
    }

    /// Whether a flush or durable write asked for a queued write to go now.
    fn forced(&self) -> bool {
        self.flush_until
            .is_some_and(|t| self.queue.keys().next().is_some_and(|&s| s <= t))
    }

    /// Takes the front of the queue, oldest first: at most `batch_limit`
    /// writes, so that a non-atomic delegate retries a bounded batch.
    fn take_front(&mut self) -> Vec<(u64, Entry)> {
        let Some(&first_left) = self.queue.keys().nth(self.batch_limit) else {
            self.slots.clear();
            return std::mem::take(&mut self.queue).into_iter().collect();
        };
        let rest = self.queue.split_off(&first_left);
        let front = std::mem::replace(&mut self.queue, rest);
        for (seq, entry) in &front {
            let slot = entry.op.slot();
            if self.slots.get(&slot) == Some(seq) {
                self.slots.remove(&slot);
            }
        }
        front.into_iter().collect()
    }

    fn batch_of(f: &InFlight) -> Batch {
        Batch {
            id: f.id,
            writes: f.entries.iter().map(|(_, e)| e.op.clone()).collect(),
            attempt: f.attempt,
        }
    }

    fn applied(&mut self) -> BatchOutcome {
        let f = self.in_flight.take().expect("checked in flight");
        if let Some(&oldest_read) = self.reads.values().min() {
            for (seq, e) in &f.entries {
                if *seq >= oldest_read {
                    self.retained.insert((*seq, APPLIED), e.op.clone());
                }
            }
        }
        self.cooldown_until = None;
        self.batch_limit = self
            .batch_limit
            .saturating_mul(2)
            .min(self.config.max_batch_size.max(1));
        self.metrics.applied_batches += 1;
        self.metrics.applied_writes += f.entries.len() as u64;
        let seqs = f.covered();
        if self.is_drained() || self.flush_until.is_some_and(|t| self.is_flushed(Seq(t))) {
            self.flush_until = None;
        }
        BatchOutcome::Applied(seqs)
    }

    fn failed(&mut self, now: Timestamp, error: StoreError) -> BatchOutcome {
        self.metrics.failed_attempts += 1;
        let f = self.in_flight.as_mut().expect("checked in flight");
        if f.attempt <= self.config.max_retries {
            let backoff = self
                .config
                .retry_backoff
                .saturating_mul(1 << (f.attempt - 1).min(16));
            f.retry_at = Some(now + backoff);
            return BatchOutcome::Retrying;
        }
        self.metrics.failed_batches += 1;
        self.batch_limit = (self.batch_limit / 2).max(1);
        let f = self.in_flight.take().expect("checked in flight");
        let seqs = f.covered();
        self.last_failure = seqs.first().map(|s| (*s, error.clone()));
        self.requeue(f.entries);
        if self.closing {
            self.close_failed = true;
        } else {
            let pause = self
                .config
                .retry_backoff
                .saturating_mul(1 << self.config.max_retries.min(16));
            self.cooldown_until = Some(now + pause);
        }
        BatchOutcome::Failed { seqs, error }
    }

    /// Puts failed writes back in front (they keep their sequence numbers), except
    /// those a newer pending write supersedes.
    fn requeue(&mut self, entries: Vec<(u64, Entry)>) {
        for (seq, entry) in entries {
            let slot = entry.op.slot();
            match self.slots.get(&slot) {
                // Only a newer write can absorb a requeued one: two writes of
                // one failed batch may share a slot, oldest requeued first.
                Some(&newer) if newer > seq && self.queue[&newer].op.supersedes(&entry.op) => {
                    let covers = entry.covers;
                    self.queue
                        .get_mut(&newer)
                        .expect("indexed")
                        .covers
                        .extend(covers);
                    self.metrics.coalesced += 1;
                }
                Some(&other) => {
                    if other < seq {
                        self.slots.insert(slot, seq);
                    }
                    self.queue.insert(seq, entry);
                }
                None => {
                    self.slots.insert(slot, seq);
                    self.queue.insert(seq, entry);
                }
            }
        }
    }

    fn oldest_unapplied(&self) -> Option<u64> {
        let queued = self
            .queue
            .values()
            .flat_map(|e| e.covers.iter().copied())
            .min();
        let flying = self
            .in_flight
            .iter()
            .flat_map(|f| f.entries.iter().flat_map(|(_, e)| e.covers.iter().copied()))
            .min();
        queued
            .into_iter()
            .chain(flying)
            .chain(self.given_up_from)
            .min()
    }

    /// Keeps the machine sane when time goes backwards: nothing waits longer than
    /// its delay from the earliest time seen since.
    fn observe(&mut self, now: Timestamp) {
        if now < self.last_now {
            for e in self.queue.values_mut() {
                e.accepted_at = e.accepted_at.min(now);
            }
            if let Some(f) = &mut self.in_flight {
                f.retry_at = f.retry_at.map(|r| r.min(now + self.config.retry_backoff));
            }
            self.cooldown_until = self
                .cooldown_until
                .map(|c| c.min(now + self.config.retry_backoff));
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
            .field("closing", &self.closing)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
