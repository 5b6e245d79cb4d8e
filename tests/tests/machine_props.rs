//! Property tests of the two sans-IO machines, driven directly (no runtime).
//!
//! - `coalescing`: any interleaving of writes of every [`WriteOp`] kind
//!   (queued, durable and internal), `poll_batch`, batch results (success;
//!   failure after part of the batch was applied, then retry or give up),
//!   flushes, `close` and clock steps. Each batch handed out is applied with
//!   [`apply_batch`] (or, for a failure, a prefix of its [`plan`] with
//!   [`apply`]) to one [`MemoryTokenStore`]; every accepted write is applied
//!   one by one, when accepted, to another. Once drained (what a failed close
//!   hands back applied as the caller would), both hold the same contents,
//!   every accepted write was acknowledged as applied exactly once, every flush
//!   finished, and along the way refusals follow `max_pending` and `close`,
//!   and at most one batch is in flight. Every durable writer gets, once, the
//!   outcome of the first batch that held its write (or `WritesNotApplied`
//!   when close failed first), and nothing before. Whenever no batch is in
//!   flight or waiting to retry and no cooldown holds, a poll starts a batch
//!   once a write that no batch held yet has waited `max_delay` (a rewritten
//!   key included: superseding never postpones a flush).
//! - `cache_safety`: lookups, fills (with records the delegate could answer
//!   for the key, or none), abandons, writes of every kind, close and clock
//!   steps on a [`CacheMachine`] with a random configuration. A hit is never at
//!   or past `expiry - skew - clock_resolution` (per key: refresh expiry by
//!   refresh token), nor past `fill time + ttl_cap - skew - clock_resolution`;
//!   it is the record of the last fill of that key that landed, and no write
//!   named any key of that record since the fill's ticket was issued (so
//!   nothing is served after an invalidation until a newer fill). A negative
//!   hit is never past `negative_ttl`, nor after a write to its key or a fill
//!   of a record with that key. A stale fill never lands; single flight holds
//!   (a miss only when no ticket for the key is out, a wait only when one is);
//!   counters add up and capacities hold.
//!
//! Case counts: 1,024 for `coalescing` and 512 for `cache_safety` by default
//! (a few seconds each in debug); `TOKENSTORE_PROPTEST_CASES=<n>` sets `n` for
//! both:
//!
//! ```text
//! TOKENSTORE_PROPTEST_CASES=20000 cargo test -p tokenstore-tests --test machine_props
//! ```

use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::SessionKey;
use tokenstore_core::buffer::{
    Batch, BatchOutcome, BufferConfig, BufferMachine, FlushTicket, Refusal, Seq, Step, WriteOp,
    apply, apply_batch, plan,
};
use tokenstore_core::cache::{
    CacheConfig, CacheKey, CacheMachine, Cached, FillOutcome, FillTicket, Kind, Lookup, Write,
};
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, ManualClock, MemoryTokenStore, Secret, StateRecord, StoreError,
    StoredSession, Timestamp, TokenHash, TokenStore, UserInfo,
};

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

use tokenstore_tests::props::config;

/// Runs a memory-store future to completion (they never wait, so the first
/// poll is ready; the loop only keeps the function honest).
fn now_or_never<T>(f: impl std::future::Future<Output = T>) -> T {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

// ---------------------------------------------------------------------------
// (a) Coalescing equivalence of the write buffer.
// ---------------------------------------------------------------------------

/// A write, by small indices (keys 0..3, tokens 0..4, session ids 0..3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum W {
    StoreState {
        key: u8,
        tag: u8,
    },
    RemoveState {
        key: u8,
    },
    StoreCode {
        key: u8,
        tag: u8,
    },
    DeleteCode {
        key: u8,
    },
    StoreSession {
        id: u8,
        access: u8,
        refresh: Option<u8>,
        tag: u8,
    },
    DeleteByToken {
        access: u8,
    },
    DeleteById {
        id: u8,
    },
    StoreClient {
        id: u8,
        tag: u8,
    },
    DeleteClient {
        id: u8,
    },
}

impl fmt::Debug for W {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::StoreState { key, tag } => write!(f, "StoreState{{key:{key}, tag:{tag}}}"),
            Self::RemoveState { key } => write!(f, "RemoveState{{key:{key}}}"),
            Self::StoreCode { key, tag } => write!(f, "StoreCode{{key:{key}, tag:{tag}}}"),
            Self::DeleteCode { key } => write!(f, "DeleteCode{{key:{key}}}"),
            Self::StoreSession {
                id,
                access,
                refresh,
                tag,
            } => {
                write!(f, "StoreSession{{id:{id}, access:{access}")?;
                if let Some(r) = refresh {
                    write!(f, ", refresh:{r}")?;
                }
                write!(f, ", tag:{tag}}}")
            }
            Self::DeleteByToken { access } => write!(f, "DeleteByToken{{access:{access}}}"),
            Self::DeleteById { id } => write!(f, "DeleteById{{id:{id}}}"),
            Self::StoreClient { id, tag } => write!(f, "StoreClient{{id:{id}, tag:{tag}}}"),
            Self::DeleteClient { id } => write!(f, "DeleteClient{{id:{id}}}"),
        }
    }
}

impl W {
    fn op(self) -> WriteOp {
        let exp = T0 + Duration::from_secs(600);
        match self {
            Self::StoreState { key, tag } => {
                let mut r = StateRecord::new(format!("st-{key}"), exp, T0);
                r.client_state = Some(format!("tag-{tag}"));
                WriteOp::StoreState(Arc::new(r))
            }
            Self::RemoveState { key } => WriteOp::RemoveState(format!("st-{key}")),
            Self::StoreCode { key, tag } => {
                let r = AuthCodeRecord::new(format!("code-{key}"), format!("sess-{tag}"), exp, T0);
                WriteOp::StoreAuthCode(Arc::new(r))
            }
            Self::DeleteCode { key } => WriteOp::DeleteAuthCode(format!("code-{key}")),
            Self::StoreSession {
                id,
                access,
                refresh,
                tag,
            } => {
                let user = UserInfo::new("github", format!("user-{id}"), format!("tag-{tag}"));
                let mut s = StoredSession::new(
                    format!("sess-{id}"),
                    user,
                    format!("tok-{access}"),
                    exp,
                    T0,
                );
                s.refresh_token = refresh.map(|r| Secret::new(format!("tok-{r}")));
                WriteOp::StoreSession(Arc::new(s))
            }
            Self::DeleteByToken { access } => {
                WriteOp::DeleteSessionByToken(Secret::new(format!("tok-{access}")))
            }
            Self::DeleteById { id } => WriteOp::DeleteSessionById(format!("sess-{id}")),
            Self::StoreClient { id, tag } => {
                let mut c = ClientRecord::new(format!("client-{id}"), T0);
                c.client_name = Some(format!("tag-{tag}"));
                WriteOp::StoreClient(Arc::new(c))
            }
            Self::DeleteClient { id } => WriteOp::DeleteClient(format!("client-{id}")),
        }
    }
}

/// A step of the buffer machine's driver.
#[derive(Clone, Copy, PartialEq, Eq)]
enum B {
    /// `accept` (or `accept_durable`).
    Write {
        w: W,
        durable: bool,
    },
    /// `accept_internal` (a consumed pending state, a delete-on-read).
    Internal(W),
    /// `poll_batch`.
    Poll,
    /// The in-flight batch's result: success, or a failure after the first
    /// `applied % (steps + 1)` steps of its plan took effect.
    Result {
        ok: bool,
        applied: u8,
    },
    Flush,
    Close,
    Advance(u64),
    /// Every durable writer takes its outcome, if it has one (writers take
    /// them late, after several batches, as waiters woken late do).
    TakeDurable,
}

impl fmt::Debug for B {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { w, durable: false } => write!(f, "{w:?}"),
            Self::Write { w, durable: true } => write!(f, "Durable({w:?})"),
            Self::Internal(w) => write!(f, "Internal({w:?})"),
            Self::Poll => f.write_str("Poll"),
            Self::Result { ok: true, .. } => f.write_str("Ok"),
            Self::Result { ok: false, applied } => write!(f, "Fail{{applied:{applied}}}"),
            Self::Flush => f.write_str("Flush"),
            Self::Close => f.write_str("Close"),
            Self::Advance(ms) => write!(f, "Advance({ms}ms)"),
            Self::TakeDurable => f.write_str("TakeDurable"),
        }
    }
}

fn w_strategy() -> impl Strategy<Value = W> {
    let key = 0..3u8;
    let tok = 0..4u8;
    let tag = 0..2u8;
    prop_oneof![
        1 => (key.clone(), tag.clone()).prop_map(|(key, tag)| W::StoreState { key, tag }),
        1 => key.clone().prop_map(|key| W::RemoveState { key }),
        1 => (key.clone(), tag.clone()).prop_map(|(key, tag)| W::StoreCode { key, tag }),
        1 => key.clone().prop_map(|key| W::DeleteCode { key }),
        3 => (key.clone(), tok.clone(), prop::option::of(tok.clone()), tag.clone()).prop_map(
            |(id, access, refresh, tag)| W::StoreSession {
                id,
                access,
                refresh,
                tag
            }
        ),
        1 => tok.prop_map(|access| W::DeleteByToken { access }),
        1 => key.clone().prop_map(|id| W::DeleteById { id }),
        1 => (key.clone(), tag).prop_map(|(id, tag)| W::StoreClient { id, tag }),
        1 => key.prop_map(|id| W::DeleteClient { id }),
    ]
}

fn b_strategy() -> impl Strategy<Value = B> {
    prop_oneof![
        10 => (w_strategy(), prop::bool::weighted(0.2)).prop_map(|(w, durable)| B::Write { w, durable }),
        1 => w_strategy().prop_map(B::Internal),
        4 => Just(B::Poll),
        4 => (prop::bool::weighted(0.6), any::<u8>()).prop_map(|(ok, applied)| B::Result { ok, applied }),
        1 => Just(B::Flush),
        1 => Just(B::Close),
        3 => prop_oneof![Just(0u64), Just(1), Just(2), Just(5), Just(10), Just(50)].prop_map(B::Advance),
        2 => Just(B::TakeDurable),
    ]
}

/// Small limits so that batch-size triggers, backpressure, retries and give-ups
/// all happen.
fn buffer_config_strategy() -> impl Strategy<Value = BufferConfig> {
    (
        1..6usize,
        prop_oneof![Just(0u64), Just(5)],
        1..12usize,
        0..3u32,
    )
        .prop_map(
            |(max_batch_size, delay, max_pending, max_retries)| BufferConfig {
                max_batch_size,
                max_delay: millis(delay),
                max_pending,
                max_retries,
                retry_backoff: millis(1),
            },
        )
}

/// The driver's view of one run.
struct Driver {
    machine: BufferMachine,
    now: Timestamp,
    /// Gets every batch (or part of it, on a failure).
    batched: MemoryTokenStore,
    /// Gets every accepted write, one by one, when accepted.
    one_by_one: MemoryTokenStore,
    in_flight: Option<Batch>,
    accepted: HashSet<Seq>,
    acknowledged: HashSet<Seq>,
    flushes: Vec<FlushTicket>,
    closing: bool,
    /// When each write that no finished batch held yet was accepted.
    unbatched: BTreeMap<Seq, Timestamp>,
    /// The machine holds a failed batch to hand out again.
    retrying: bool,
    /// After a batch failed for good: no batch before this.
    cooldown_until: Option<Timestamp>,
    /// Durable writers not yet answered, and what they are owed (`None` until
    /// a batch that held their write has a final result).
    owed: BTreeMap<Seq, Option<Result<(), StoreError>>>,
}

impl Driver {
    fn new(config: BufferConfig) -> Self {
        let clock = ManualClock::new(T0);
        Self {
            machine: BufferMachine::new(config),
            now: T0,
            batched: MemoryTokenStore::new(clock.clone()),
            one_by_one: MemoryTokenStore::new(clock),
            in_flight: None,
            accepted: HashSet::new(),
            acknowledged: HashSet::new(),
            flushes: Vec::new(),
            closing: false,
            unbatched: BTreeMap::new(),
            retrying: false,
            cooldown_until: None,
            owed: BTreeMap::new(),
        }
    }

    fn accept(&mut self, seq: Seq, op: WriteOp) -> Result<(), TestCaseError> {
        prop_assert!(
            self.accepted.insert(seq),
            "sequence number {seq:?} given twice"
        );
        self.unbatched.insert(seq, self.now);
        now_or_never(apply(&self.one_by_one, Step::Single(op)))
            .map_err(|e| TestCaseError::fail(format!("one-by-one write failed: {e}")))
    }

    fn step(&mut self, b: B) -> Result<(), TestCaseError> {
        match b {
            B::Write { w, durable } => {
                let full = self.machine.held() >= self.machine.config().max_pending.max(1);
                let result = if durable {
                    self.machine.accept_durable(self.now, w.op())
                } else {
                    self.machine.accept(self.now, w.op())
                };
                match result {
                    Ok(seq) => {
                        prop_assert!(!self.closing, "a write was accepted after close");
                        prop_assert!(!full, "a write was accepted past max_pending");
                        self.accept(seq, w.op())?;
                        if durable {
                            self.owed.insert(seq, None);
                        }
                    }
                    Err(refused) => {
                        let expected = if self.closing {
                            Refusal::Closed
                        } else {
                            prop_assert!(full, "a write was refused below max_pending");
                            Refusal::Full
                        };
                        prop_assert_eq!(refused.reason, expected);
                        prop_assert!(
                            refused.op == w.op(),
                            "the refused write was not handed back"
                        );
                    }
                }
            }
            B::Internal(w) => {
                let seq = self.machine.accept_internal(self.now, w.op());
                self.accept(seq, w.op())?;
            }
            B::Poll => match &self.in_flight {
                Some(_) => prop_assert!(
                    self.machine.poll_batch(self.now).is_none(),
                    "a second batch was handed out while one was in flight"
                ),
                None => {
                    self.in_flight = self.machine.poll_batch(self.now);
                    if self.in_flight.is_some() {
                        self.retrying = false;
                    } else {
                        self.no_write_starves()?;
                    }
                }
            },
            B::Result { ok, applied } => {
                if let Some(batch) = self.in_flight.take() {
                    self.report(batch, ok, applied)?;
                }
            }
            B::Flush => {
                let ticket = self.machine.handle_flush();
                self.flushes.push(ticket);
            }
            B::Close => {
                self.machine.handle_close();
                self.closing = true;
            }
            B::Advance(ms) => self.now = self.now + millis(ms),
            B::TakeDurable => self.check_durable()?,
        }
        Ok(())
    }

    /// After a poll that started no batch: with none in flight or waiting to
    /// retry, no cooldown and no failed close, no write that no batch held
    /// yet has waited `max_delay`.
    fn no_write_starves(&self) -> Result<(), TestCaseError> {
        let idle = !self.retrying && !self.machine.close_failed();
        let cooling = self.cooldown_until.is_some_and(|c| self.now < c);
        let max_delay = self.machine.config().max_delay;
        if let (true, false, Some(oldest)) = (idle, cooling, self.unbatched.values().min()) {
            prop_assert!(
                self.now < *oldest + max_delay,
                "a write accepted at +{:?} still waits at +{:?} (max_delay {max_delay:?})",
                oldest.saturating_duration_since(T0),
                self.now.saturating_duration_since(T0)
            );
        }
        Ok(())
    }

    /// A batch holding `seqs` has a final result: their durable writers, if
    /// not answered yet, are owed `outcome`, and they were batched.
    fn finished(&mut self, seqs: &[Seq], outcome: &Result<(), StoreError>) {
        for seq in seqs {
            self.unbatched.remove(seq);
            if let Some(owed @ None) = self.owed.get_mut(seq) {
                *owed = Some(outcome.clone());
            }
        }
    }

    /// Every durable writer gets what it is owed, once, and nothing before.
    fn check_durable(&mut self) -> Result<(), TestCaseError> {
        let seqs: Vec<Seq> = self.owed.keys().copied().collect();
        for seq in seqs {
            let got = self.machine.take_durable_outcome(seq);
            prop_assert_eq!(&got, &self.owed[&seq], "durable writer {:?}", seq);
            if got.is_some() {
                self.owed.remove(&seq);
                let again = self.machine.take_durable_outcome(seq);
                prop_assert_eq!(again, None, "durable writer {:?} answered twice", seq);
            }
        }
        prop_assert_eq!(self.machine.durable_waiting(), self.owed.len());
        Ok(())
    }

    fn report(&mut self, batch: Batch, ok: bool, applied: u8) -> Result<(), TestCaseError> {
        let result = if ok {
            now_or_never(apply_batch(&self.batched, batch.writes))
                .map_err(|e| TestCaseError::fail(format!("a batch failed to apply: {e}")))?;
            Ok(())
        } else {
            let steps = plan(&batch.writes, self.batched.bulk().is_some());
            let applied = usize::from(applied) % (steps.len() + 1);
            for step in steps.into_iter().take(applied) {
                now_or_never(apply(&self.batched, step))
                    .map_err(|e| TestCaseError::fail(format!("a batch step failed: {e}")))?;
            }
            Err(StoreError::Backend("injected failure".into()))
        };
        match self.machine.handle_batch_result(self.now, batch.id, result) {
            BatchOutcome::Applied(seqs) => {
                prop_assert!(ok, "a failed batch was reported applied");
                for &seq in &seqs {
                    prop_assert!(self.accepted.contains(&seq), "{seq:?} was never accepted");
                    prop_assert!(self.acknowledged.insert(seq), "{seq:?} acknowledged twice");
                }
                self.finished(&seqs, &Ok(()));
                self.cooldown_until = None;
            }
            BatchOutcome::Retrying => {
                prop_assert!(!ok, "a successful batch was reported failed");
                self.retrying = true;
            }
            BatchOutcome::Failed { seqs, error } => {
                prop_assert!(!ok, "a successful batch was reported failed");
                self.finished(&seqs, &Err(error));
                let config = self.machine.config();
                let pause = config.retry_backoff * 2u32.pow(config.max_retries);
                self.cooldown_until = Some(self.now + pause);
                if self.closing {
                    // Close failed: every writer still waiting is told now.
                    let left = Err(StoreError::WritesNotApplied {
                        count: self.machine.held(),
                    });
                    for owed in self.owed.values_mut().filter(|o| o.is_none()) {
                        *owed = Some(left.clone());
                    }
                }
            }
            BatchOutcome::Unknown => {
                return Err(TestCaseError::fail("the in-flight batch was unknown"));
            }
        }
        Ok(())
    }

    /// Lets every batch succeed until the buffer is drained (or a failed close
    /// stopped it: then its unapplied writes are applied, as the caller would).
    fn drain(&mut self) -> Result<bool, TestCaseError> {
        for _ in 0..10_000 {
            if let Some(batch) = self.in_flight.take() {
                self.report(batch, true, 0)?;
                continue;
            }
            if let Some(batch) = self.machine.poll_batch(self.now) {
                self.in_flight = Some(batch);
                self.retrying = false;
                continue;
            }
            self.check_durable()?;
            if self.machine.is_drained() {
                prop_assert!(self.owed.is_empty(), "a durable writer was never answered");
                return Ok(false);
            }
            if self.machine.close_failed() {
                prop_assert!(
                    self.owed.is_empty(),
                    "a failed close left a durable writer waiting"
                );
                let left = self.machine.take_unapplied();
                prop_assert!(!left.is_empty(), "a failed close left nothing unapplied");
                now_or_never(apply_batch(&self.batched, left))
                    .map_err(|e| TestCaseError::fail(format!("unapplied writes failed: {e}")))?;
                return Ok(true);
            }
            self.machine.handle_flush();
            let next = self.machine.poll_timeout().filter(|&t| t > self.now);
            self.now = next.unwrap_or(self.now + millis(1));
        }
        Err(TestCaseError::fail("the buffer never drained"))
    }
}

fn coalescing_case(config: BufferConfig, steps: Vec<B>) -> Result<(), TestCaseError> {
    let mut d = Driver::new(config);
    for b in steps {
        d.step(b)?;
    }
    let close_failed = d.drain()?;
    let (batched, one_by_one) = (d.batched.contents(), d.one_by_one.contents());
    prop_assert!(
        batched == one_by_one,
        "batched and one-by-one contents differ: {} / {} states, {} / {} codes, {} / {} \
         sessions, {} / {} clients",
        batched.states.len(),
        one_by_one.states.len(),
        batched.auth_codes.len(),
        one_by_one.auth_codes.len(),
        batched.sessions.len(),
        one_by_one.sessions.len(),
        batched.clients.len(),
        one_by_one.clients.len(),
    );
    if !close_failed {
        let missing = d.accepted.difference(&d.acknowledged).count();
        prop_assert_eq!(missing, 0, "accepted writes never acknowledged as applied");
        for ticket in &d.flushes {
            prop_assert_eq!(d.machine.flush_status(ticket), Some(Ok(())));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn coalescing(config in buffer_config_strategy(), steps in vec(b_strategy(), 0..80)) {
        coalescing_case(config, steps)?;
    }
}

// ---------------------------------------------------------------------------
// (b) Cache safety of the read-cache machine.
// ---------------------------------------------------------------------------

/// A key of the cache, by small indices.
#[derive(Clone, Copy, PartialEq, Eq)]
enum K {
    Access(u8),
    Id(u8),
    Refresh(u8),
    Code(u8),
    Client(u8),
}

impl fmt::Debug for K {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Access(n) => write!(f, "access:{n}"),
            Self::Id(n) => write!(f, "id:{n}"),
            Self::Refresh(n) => write!(f, "refresh:{n}"),
            Self::Code(n) => write!(f, "code:{n}"),
            Self::Client(n) => write!(f, "client:{n}"),
        }
    }
}

impl K {
    fn key(self) -> CacheKey {
        match self {
            Self::Access(n) => {
                CacheKey::Session(SessionKey::Access(TokenHash::of(&format!("tok-{n}"))))
            }
            Self::Id(n) => CacheKey::Session(SessionKey::Id(format!("sess-{n}"))),
            Self::Refresh(n) => {
                CacheKey::Session(SessionKey::Refresh(TokenHash::of(&format!("tok-{n}"))))
            }
            Self::Code(n) => CacheKey::AuthCode(TokenHash::of(&format!("code-{n}"))),
            Self::Client(n) => CacheKey::Client(format!("client-{n}")),
        }
    }
}

/// A write that passes through the cache.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CW {
    /// Stores session `n` of the pool.
    StoreSession(u8),
    DeleteByToken(u8),
    DeleteById(u8),
    Code(u8),
    Client(u8),
    State,
}

impl fmt::Debug for CW {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StoreSession(n) => write!(f, "StoreSession(pool:{n})"),
            Self::DeleteByToken(n) => write!(f, "DeleteByToken(access:{n})"),
            Self::DeleteById(n) => write!(f, "DeleteById(id:{n})"),
            Self::Code(n) => write!(f, "WriteCode(code:{n})"),
            Self::Client(n) => write!(f, "WriteClient(client:{n})"),
            Self::State => f.write_str("WriteState"),
        }
    }
}

/// A step of the cache machine's driver.
#[derive(Clone, Copy, PartialEq, Eq)]
enum C {
    Lookup(K),
    /// Fills the `ticket`-th outstanding ticket with the `pick`-th pool record
    /// the delegate could answer for its key (none when `None` or no record
    /// fits).
    Fill {
        ticket: u8,
        pick: Option<u8>,
    },
    Abandon {
        ticket: u8,
    },
    Write(CW),
    Close,
    Advance(u64),
}

impl fmt::Debug for C {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lookup(k) => write!(f, "Lookup({k:?})"),
            Self::Fill { ticket, pick } => match pick {
                Some(p) => write!(f, "Fill{{ticket:{ticket}, pick:{p}}}"),
                None => write!(f, "Fill{{ticket:{ticket}, none}}"),
            },
            Self::Abandon { ticket } => write!(f, "Abandon{{ticket:{ticket}}}"),
            Self::Write(w) => write!(f, "{w:?}"),
            Self::Close => f.write_str("Close"),
            Self::Advance(ms) => write!(f, "Advance({ms}ms)"),
        }
    }
}

/// A pool session: ids 0..3, tokens 0..4 (shared by access and refresh),
/// expiries in ms after T0 (`None`: the refresh token never expires).
#[derive(Clone, Copy, PartialEq, Eq)]
struct SessionSpec {
    id: u8,
    access: u8,
    refresh: Option<(u8, Option<i64>)>,
    expires: i64,
}

impl fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{id:{}, access:{}, expires:{}ms",
            self.id, self.access, self.expires
        )?;
        match self.refresh {
            Some((r, Some(e))) => write!(f, ", refresh:{r}, refresh_expires:{e}ms}}"),
            Some((r, None)) => write!(f, ", refresh:{r}, refresh_expires:never}}"),
            None => f.write_str("}"),
        }
    }
}

fn at(offset_ms: i64) -> Timestamp {
    let d = millis(offset_ms.unsigned_abs());
    if offset_ms < 0 { T0 - d } else { T0 + d }
}

impl SessionSpec {
    fn record(self) -> Arc<StoredSession> {
        let user = UserInfo::new("github", format!("user-{}", self.id), "someone");
        let mut s = StoredSession::new(
            format!("sess-{}", self.id),
            user,
            format!("tok-{}", self.access),
            at(self.expires),
            T0,
        );
        if let Some((r, e)) = self.refresh {
            s.refresh_token = Some(Secret::new(format!("tok-{r}")));
            s.refresh_expires_at = e.map(at);
        }
        Arc::new(s)
    }
}

/// Codes: key 0..3 and expiry; clients: key 0..3 and a tag.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pools {
    sessions: Vec<SessionSpec>,
    codes: Vec<(u8, i64)>,
    clients: Vec<(u8, u8)>,
}

/// The pools as records (one `Arc` each, so a hit can be matched to its fill).
struct Records {
    sessions: Vec<Arc<StoredSession>>,
    codes: Vec<Arc<AuthCodeRecord>>,
    clients: Vec<Arc<ClientRecord>>,
}

impl Pools {
    fn records(&self) -> Records {
        Records {
            sessions: self.sessions.iter().map(|s| s.record()).collect(),
            codes: self
                .codes
                .iter()
                .map(|&(k, e)| {
                    Arc::new(AuthCodeRecord::new(
                        format!("code-{k}"),
                        "sess-0",
                        at(e),
                        T0,
                    ))
                })
                .collect(),
            clients: self
                .clients
                .iter()
                .map(|&(k, tag)| {
                    let mut c = ClientRecord::new(format!("client-{k}"), T0);
                    c.client_name = Some(format!("tag-{tag}"));
                    Arc::new(c)
                })
                .collect(),
        }
    }
}

fn expiry_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(-1_000i64),
        Just(0),
        Just(500),
        Just(1_000),
        Just(1_500),
        Just(2_000),
        Just(5_000),
        Just(15_000),
        Just(60_000),
    ]
}

fn pools_strategy() -> impl Strategy<Value = Pools> {
    let session = (
        0..3u8,
        0..4u8,
        prop::option::of((0..4u8, prop::option::of(expiry_offset()))),
        expiry_offset(),
    )
        .prop_map(|(id, access, refresh, expires)| SessionSpec {
            id,
            access,
            refresh,
            expires,
        });
    (
        vec(session, 1..8),
        vec((0..3u8, expiry_offset()), 1..5),
        vec((0..3u8, 0..3u8), 1..5),
    )
        .prop_map(|(sessions, codes, clients)| Pools {
            sessions,
            codes,
            clients,
        })
}

fn cache_config_strategy() -> impl Strategy<Value = CacheConfig> {
    let capacity = prop_oneof![Just(0usize), Just(1), Just(2), Just(3), Just(16)];
    (
        prop_oneof![Just(0u64), Just(1_000), Just(3_000), Just(10_000)],
        prop_oneof![Just(0u64), Just(250), Just(1_000)],
        prop_oneof![Just(0u64), Just(1_000), Just(2_000)],
        (
            capacity.clone(),
            capacity.clone(),
            capacity.clone(),
            capacity,
        ),
        prop_oneof![Just(0u64), Just(10)],
    )
        .prop_map(
            |(cap, skew, negative, (sessions, codes, clients, negatives), resolution)| {
                CacheConfig {
                    ttl_cap: millis(cap),
                    skew: millis(skew),
                    negative_ttl: millis(negative),
                    session_capacity: sessions,
                    auth_code_capacity: codes,
                    client_capacity: clients,
                    negative_capacity: negatives,
                    clock_resolution: millis(resolution),
                    feed_bound: None,
                    // The machine itself is one shard; the plan is the adapter's.
                    shards: 1,
                }
            },
        )
}

fn k_strategy() -> impl Strategy<Value = K> {
    prop_oneof![
        (0..4u8).prop_map(K::Access),
        (0..3u8).prop_map(K::Id),
        (0..4u8).prop_map(K::Refresh),
        (0..3u8).prop_map(K::Code),
        (0..3u8).prop_map(K::Client),
    ]
}

fn c_strategy() -> impl Strategy<Value = C> {
    let write = prop_oneof![
        3 => any::<u8>().prop_map(CW::StoreSession),
        1 => (0..4u8).prop_map(CW::DeleteByToken),
        1 => (0..3u8).prop_map(CW::DeleteById),
        1 => (0..3u8).prop_map(CW::Code),
        1 => (0..3u8).prop_map(CW::Client),
        1 => Just(CW::State),
    ];
    prop_oneof![
        8 => k_strategy().prop_map(C::Lookup),
        6 => (any::<u8>(), prop::option::weighted(0.8, any::<u8>()))
            .prop_map(|(ticket, pick)| C::Fill { ticket, pick }),
        1 => any::<u8>().prop_map(|ticket| C::Abandon { ticket }),
        3 => write.prop_map(C::Write),
        1 => Just(C::Close),
        4 => prop_oneof![
            Just(1u64),
            Just(250),
            Just(500),
            Just(999),
            Just(1_000),
            Just(2_000),
            Just(5_000),
            Just(10_000)
        ]
        .prop_map(C::Advance),
    ]
}

/// A cached record, by identity.
#[derive(Clone)]
enum Rec {
    Session(Arc<StoredSession>),
    Code(Arc<AuthCodeRecord>),
    Client(Arc<ClientRecord>),
}

impl Rec {
    fn keys(&self) -> Vec<CacheKey> {
        match self {
            Self::Session(s) => CacheKey::of_session(s),
            Self::Code(c) => vec![CacheKey::AuthCode(TokenHash::of(&c.code))],
            Self::Client(c) => vec![CacheKey::Client(c.client_id.clone())],
        }
    }

    fn same(&self, hit: &Cached) -> bool {
        match (self, hit) {
            (Self::Session(a), Cached::Session(b)) => Arc::ptr_eq(a, b),
            (Self::Code(a), Cached::AuthCode(b)) => Arc::ptr_eq(a, b),
            (Self::Client(a), Cached::Client(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The record's own expiry as seen through `key`.
    fn expiry(&self, key: &CacheKey) -> Option<Timestamp> {
        match (self, key) {
            (Self::Session(s), CacheKey::Session(SessionKey::Refresh(_))) => s.refresh_expires_at,
            (Self::Session(s), _) => s.access_expires_at,
            (Self::Code(c), _) => Some(c.expires_at),
            (Self::Client(_), _) => None,
        }
    }

    fn can_answer(&self, key: &CacheKey) -> bool {
        self.keys().contains(key)
    }
}

/// A fill that landed.
#[derive(Clone)]
struct Landed {
    record: Rec,
    at: Timestamp,
    /// The step its ticket was issued at.
    issued: u64,
}

struct CacheModel {
    step: u64,
    /// The step of the last write naming each key.
    written: HashMap<CacheKey, u64>,
    last_write: u64,
    /// Per key, the last positive fill that landed there and was not since
    /// removed by a write or by a newer fill sharing one of its keys.
    landed: HashMap<CacheKey, Landed>,
    /// Per key, the last negative fill that landed (time, ticket step).
    negative: HashMap<CacheKey, (Timestamp, u64)>,
    tickets: Vec<(FillTicket, u64)>,
    closed: bool,
}

impl CacheModel {
    /// Removes the landed entry at `key`, with all its keys.
    fn forget(&mut self, key: &CacheKey) {
        if let Some(l) = self.landed.get(key).cloned() {
            for k in l.record.keys() {
                self.landed.remove(&k);
            }
        }
    }

    fn written_since(&self, key: &CacheKey, issued: u64) -> bool {
        self.written.get(key).is_some_and(|&w| w > issued)
    }
}

/// Whether two hits are the same cached record (the same allocation).
fn same_record(a: &Cached, b: &Cached) -> bool {
    match (a, b) {
        (Cached::Session(a), Cached::Session(b)) => Arc::ptr_eq(a, b),
        (Cached::AuthCode(a), Cached::AuthCode(b)) => Arc::ptr_eq(a, b),
        (Cached::Client(a), Cached::Client(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

fn cache_case(config: CacheConfig, pools: Pools, steps: Vec<C>) -> Result<(), TestCaseError> {
    let records = pools.records();
    let mut cache = CacheMachine::new(config.clone());
    // The lock-free view of the same tables, asked before every lookup as
    // the adapter does: each of its hits must be the machine's own.
    let view = cache.hit_view();
    let mut now = T0;
    let mut m = CacheModel {
        step: 0,
        written: HashMap::new(),
        last_write: 0,
        landed: HashMap::new(),
        negative: HashMap::new(),
        tickets: Vec::new(),
        closed: false,
    };
    let skew = config.skew + config.clock_resolution;
    for c in steps {
        m.step += 1;
        match c {
            C::Lookup(k) => {
                let key = k.key();
                let out = m.tickets.iter().any(|(t, _)| *t.key() == key);
                let viewed = view.lookup(now, &key);
                let answer = cache.lookup(now, &key);
                if let Some(v) = &viewed {
                    prop_assert!(
                        matches!(&answer, Lookup::Hit(hit) if same_record(hit, v)),
                        "{:?}: the view served what the machine did not",
                        k
                    );
                }
                match answer {
                    Lookup::Hit(hit) => {
                        let l = m.landed.get(&key).ok_or_else(|| {
                            TestCaseError::fail(format!("{k:?}: a hit with no fill landed"))
                        })?;
                        prop_assert!(l.record.same(&hit), "{:?}: not the last landed fill", k);
                        for x in l.record.keys() {
                            prop_assert!(
                                !m.written_since(&x, l.issued),
                                "{:?}: served after a write to one of its keys",
                                k
                            );
                        }
                        if let Some(e) = l.record.expiry(&key) {
                            prop_assert!(now < e - skew, "{:?}: served past expiry - skew", k);
                        }
                        prop_assert!(
                            now < l.at + config.ttl_cap - skew,
                            "{:?}: served past fill time + ttl_cap - skew",
                            k
                        );
                    }
                    Lookup::NegativeHit => {
                        let (at, issued) = *m.negative.get(&key).ok_or_else(|| {
                            TestCaseError::fail(format!("{k:?}: a negative hit with no fill"))
                        })?;
                        prop_assert!(
                            !m.written_since(&key, issued),
                            "{:?}: absent after a write",
                            k
                        );
                        prop_assert!(
                            now < at + config.negative_ttl,
                            "{:?}: absent past negative_ttl",
                            k
                        );
                    }
                    Lookup::Miss(t) => {
                        prop_assert!(!out, "{:?}: a second ticket for one key", k);
                        m.tickets.push((t, m.step));
                    }
                    Lookup::Wait => prop_assert!(out, "{:?}: told to wait with no fill out", k),
                    Lookup::Closed => prop_assert!(m.closed, "Closed before close"),
                }
            }
            C::Fill { ticket, pick } => {
                if m.tickets.is_empty() {
                    continue;
                }
                let (t, issued) = m.tickets.remove(usize::from(ticket) % m.tickets.len());
                let key = t.key().clone();
                let candidates: Vec<Rec> = match key.kind() {
                    Kind::Session => records
                        .sessions
                        .iter()
                        .map(|s| Rec::Session(s.clone()))
                        .collect(),
                    Kind::AuthCode => records.codes.iter().map(|c| Rec::Code(c.clone())).collect(),
                    Kind::Client => records
                        .clients
                        .iter()
                        .map(|c| Rec::Client(c.clone()))
                        .collect(),
                    Kind::State => Vec::new(),
                };
                let candidates: Vec<Rec> = candidates
                    .into_iter()
                    .filter(|r| r.can_answer(&key))
                    .collect();
                let record = match pick {
                    Some(p) if !candidates.is_empty() => {
                        Some(candidates[usize::from(p) % candidates.len()].clone())
                    }
                    _ => None,
                };
                let keys = record.as_ref().map(Rec::keys).unwrap_or_default();
                let stale = std::iter::once(&key)
                    .chain(&keys)
                    .any(|x| m.written_since(x, issued));
                let outcome = match &record {
                    None => match key.kind() {
                        Kind::Session => cache.fill_session(now, t, None),
                        Kind::AuthCode => cache.fill_auth_code(now, t, None),
                        _ => cache.fill_client(now, t, None),
                    },
                    Some(Rec::Session(s)) => cache.fill_session(now, t, Some(s.clone())),
                    Some(Rec::Code(c)) => cache.fill_auth_code(now, t, Some(c.clone())),
                    Some(Rec::Client(c)) => cache.fill_client(now, t, Some(c.clone())),
                };
                if stale {
                    prop_assert_eq!(outcome, FillOutcome::Refused, "a stale fill landed");
                }
                if outcome == FillOutcome::Refused {
                    prop_assert!(
                        m.last_write > issued,
                        "refused with no write since the ticket"
                    );
                }
                match (outcome, record) {
                    (FillOutcome::Cached, Some(r)) => {
                        for x in r.keys() {
                            m.forget(&x);
                            m.negative.remove(&x);
                        }
                        let landed = Landed {
                            record: r.clone(),
                            at: now,
                            issued,
                        };
                        for x in r.keys() {
                            m.landed.insert(x, landed.clone());
                        }
                    }
                    (FillOutcome::CachedNegative, None) => {
                        m.negative.insert(key, (now, issued));
                    }
                    (FillOutcome::Cached | FillOutcome::CachedNegative, _) => {
                        return Err(TestCaseError::fail(format!(
                            "{c:?}: outcome {outcome:?} does not fit the answer"
                        )));
                    }
                    (FillOutcome::NotCached | FillOutcome::Refused, _) => {}
                }
            }
            C::Abandon { ticket } => {
                if !m.tickets.is_empty() {
                    let (t, _) = m.tickets.remove(usize::from(ticket) % m.tickets.len());
                    cache.abandon(t);
                }
            }
            C::Write(w) => {
                let keys;
                match w {
                    CW::StoreSession(n) => {
                        let s = &records.sessions[usize::from(n) % records.sessions.len()];
                        keys = CacheKey::of_session(s);
                        cache.handle_write(Write::StoreSession(s));
                    }
                    CW::DeleteByToken(n) => {
                        let h = TokenHash::of(&format!("tok-{n}"));
                        keys = vec![CacheKey::Session(SessionKey::Access(h))];
                        cache.handle_write(Write::DeleteSessionByHash(h));
                    }
                    CW::DeleteById(n) => {
                        let id = format!("sess-{n}");
                        keys = vec![CacheKey::Session(SessionKey::Id(id.clone()))];
                        cache.handle_write(Write::DeleteSessionById(&id));
                    }
                    CW::Code(n) => {
                        let code = format!("code-{n}");
                        keys = vec![CacheKey::AuthCode(TokenHash::of(&code))];
                        cache.handle_write(Write::AuthCode(&code));
                    }
                    CW::Client(n) => {
                        let id = format!("client-{n}");
                        keys = vec![CacheKey::Client(id.clone())];
                        cache.handle_write(Write::Client(&id));
                    }
                    CW::State => {
                        keys = Vec::new();
                        cache.handle_write(Write::State);
                    }
                }
                m.last_write = m.step;
                for k in keys {
                    m.forget(&k);
                    m.negative.remove(&k);
                    m.written.insert(k, m.step);
                }
            }
            C::Close => {
                cache.handle_close();
                m.closed = true;
            }
            C::Advance(ms) => now = now + millis(ms),
        }
        let metrics = cache.metrics();
        for kind in [Kind::Session, Kind::AuthCode, Kind::Client] {
            let k = metrics.kind(kind);
            prop_assert_eq!(k.lookups, k.hits + k.misses + k.negative_hits + k.waits);
        }
        prop_assert!(metrics.session_entries <= config.session_capacity);
        prop_assert!(metrics.auth_code_entries <= config.auth_code_capacity);
        prop_assert!(metrics.client_entries <= config.client_capacity);
        prop_assert!(metrics.negative_entries <= config.negative_capacity);
        prop_assert_eq!(cache.fills_in_flight(), m.tickets.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn cache_safety(
        config in cache_config_strategy(),
        pools in pools_strategy(),
        steps in vec(c_strategy(), 0..120),
    ) {
        cache_case(config, pools, steps)?;
    }
}
