//! The write-buffer machine against the one-by-one application of its writes.
//!
//! Arbitrary interleavings of writes of every [`WriteOp`] kind over a small key
//! space, batch polls, batch results (success, injected failures that retry and
//! then give up, results for batches that are not in flight), explicit flushes,
//! close, clock steps forwards and backwards, and reads and one-time operations
//! answered by the machine. Two [`MemoryTokenStore`]s share one clock:
//! `batched` receives every flushed batch through [`apply_batch`] (the path the
//! adapter uses), `serial` every accepted write at once, one by one, in sequence
//! order. A failure may come after part of the batch's plan was applied, as
//! with a delegate without atomic batches. Checked:
//! - whenever nothing is pending or in flight, and after the final drain, the two
//!   stores hold the same records, and every accepted sequence number was
//!   acknowledged;
//! - every sequence number is acknowledged at most once, never after a failure
//!   that reported it unless it was handed out again, and a write that
//!   close could not apply is handed back by `take_unapplied` (applying what it
//!   hands back makes the stores equal);
//! - a refused write is refused for the right reason and handed back intact;
//! - one batch at a time, retries resend the same writes, a failure is retried
//!   exactly `max_retries` times, a result for a batch not in flight is `Unknown`;
//! - a flush reports success exactly when every write it covers was
//!   acknowledged, and failure only after a batch failed for good since it began;
//! - every read, `consume_state` and `try_delete_auth_code` answers what the
//!   one-by-one store answers at the same time;
//! - every durable writer gets, once, the outcome of the first batch that held
//!   its write (`Ok` or that batch's error), or `WritesNotApplied` when close
//!   failed before a batch held it, and nothing before;
//! - draining after close never gets stuck.
//!
//! Shared by the fuzz target `coalescing` and the stable replay test
//! `tests/tests/fuzz_corpus.rs` (both include this file with `#[path]`).

use arbitrary::Arbitrary;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::buffer::{
    Batch, BatchOutcome, BufferConfig, BufferMachine, ClientList, FlushTicket, OneTime, Read,
    ReadTicket, Refusal, Seq, SessionKey, Step, WriteOp, apply, apply_batch, plan,
};
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, ManualClock, MemoryTokenStore, Secret, SessionVisibility,
    StateRecord, StoreError, StoredSession, Timestamp, TokenHash, TokenStore, UserInfo,
};

/// One fuzz input: the buffer's settings and the operations (at most 300 run).
#[derive(Arbitrary, Debug)]
pub(crate) struct Input {
    config: ConfigPick,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct ConfigPick {
    batch: u8,
    delay_ms: u8,
    pending: u8,
    retries: u8,
    backoff_ms: u8,
}

impl ConfigPick {
    fn config(&self) -> BufferConfig {
        BufferConfig {
            max_batch_size: usize::from(self.batch % 8) + 1,
            max_delay: Duration::from_millis(u64::from(self.delay_ms % 50)),
            max_pending: usize::from(self.pending % 24) + 1,
            max_retries: u32::from(self.retries % 4),
            retry_backoff: Duration::from_millis(u64::from(self.backoff_ms % 20)),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Write {
        pick: WritePick,
        /// Through `accept_durable`.
        durable: bool,
    },
    /// `poll_batch` now.
    Poll,
    /// The batch in flight (or, if none is waiting for a result, the last one)
    /// succeeded.
    Succeed,
    /// The batch in flight (or the last one) failed.
    Fail,
    /// The batch in flight failed after the first `steps` steps of its plan
    /// were applied (a delegate without atomic batches fails partway).
    FailPartway {
        steps: u8,
    },
    /// A result for a batch id that is not in flight.
    StaleResult {
        id_offset: u8,
    },
    Flush,
    Close,
    Advance {
        millis: u16,
    },
    Rewind {
        millis: u16,
    },
    /// Jump to the machine's `poll_timeout`, if it is later.
    Timer,
    /// Durable writers take their outcomes (late: several batches may have
    /// finished since their write).
    TakeDurable,
    /// Start a read: answered by the machine, or a ticket to resolve later.
    Read(ReadPick),
    /// Resolve (or, when the delegate fails, abandon) an outstanding read.
    Resolve {
        read: u8,
        delegate_fails: bool,
    },
    ConsumeState {
        key: u8,
    },
    TryDeleteCode {
        key: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum WritePick {
    StoreState {
        key: u8,
        ttl: u8,
    },
    RemoveState {
        key: u8,
    },
    StoreCode {
        key: u8,
        ttl: u8,
    },
    DeleteCode {
        key: u8,
    },
    StoreSession {
        id: u8,
        access: u8,
        refresh: Option<u8>,
        access_ttl: u8,
        refresh_ttl: Option<u8>,
    },
    DeleteSessionByToken {
        access: u8,
    },
    DeleteSessionById {
        id: u8,
    },
    StoreClient {
        key: u8,
    },
    DeleteClient {
        key: u8,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ReadPick {
    SessionByAccess(u8),
    SessionById(u8),
    SessionByRefresh(u8),
    Code(u8),
    Client(u8),
    Clients,
}

fn state_key(k: u8) -> String {
    format!("st{}", k % 3)
}
fn code_key(k: u8) -> String {
    format!("code{}", k % 3)
}
fn session_id(k: u8) -> String {
    format!("sid{}", k % 3)
}
fn access_token(k: u8) -> String {
    format!("at{}", k % 4)
}
fn refresh_token(k: u8) -> String {
    format!("rt{}", k % 3)
}
fn client_key(k: u8) -> String {
    format!("cl{}", k % 3)
}

/// An expiry between 2 s before and 5 s after `now`, so clock steps cross it.
fn expiry(now: Timestamp, ttl: u8) -> Timestamp {
    now - Duration::from_secs(2) + Duration::from_millis(u64::from(ttl % 8) * 1000)
}

fn block<F: Future>(f: F) -> F::Output {
    smol::block_on(f)
}

struct Run {
    config: BufferConfig,
    machine: BufferMachine,
    clock: ManualClock,
    /// Receives the flushed batches.
    batched: MemoryTokenStore,
    /// Receives every accepted write at once.
    serial: MemoryTokenStore,
    now: Timestamp,
    /// The latest time seen so far.
    latest: Timestamp,
    /// Makes every written record distinct.
    tag: u64,
    acked: BTreeSet<u64>,
    /// Batches that failed for good so far.
    failures: u64,
    /// The batch handed out last, while it has no final result.
    in_flight: Option<Batch>,
    /// Whether `in_flight` failed an attempt and waits to be handed out again.
    retrying: bool,
    last_batch: u64,
    flushes: Vec<(FlushTicket, u64)>,
    reads: Vec<(Ticket, ReadPick)>,
    closed: bool,
    /// Durable writers not yet answered: the outcome they are owed once a
    /// batch that held their write has a final result (`None` before).
    durable: BTreeMap<u64, Option<Result<(), StoreError>>>,
}

/// An outstanding read's ticket.
enum Ticket {
    Session(ReadTicket<StoredSession>),
    Code(ReadTicket<AuthCodeRecord>),
    Client(ReadTicket<ClientRecord>),
    Clients(ReadTicket<ClientList>),
}

impl Ticket {
    fn abandon(self, machine: &mut BufferMachine) {
        match self {
            Self::Session(t) => machine.abandon_read(t),
            Self::Code(t) => machine.abandon_read(t),
            Self::Client(t) => machine.abandon_read(t),
            Self::Clients(t) => machine.abandon_read(t),
        }
    }
}

/// Runs `input` and panics on the first violation.
pub(crate) fn check(input: Input) {
    let config = input.config.config();
    let start = Timestamp::from_unix_secs(1_700_000_000);
    let clock = ManualClock::new(start);
    let mut run = Run {
        machine: BufferMachine::new(config.clone()),
        config,
        batched: MemoryTokenStore::new(clock.clone()),
        serial: MemoryTokenStore::new(clock.clone()),
        clock,
        now: start,
        latest: start,
        tag: 0,
        acked: BTreeSet::new(),
        failures: 0,
        in_flight: None,
        retrying: false,
        last_batch: 0,
        flushes: Vec::new(),
        reads: Vec::new(),
        closed: false,
        durable: BTreeMap::new(),
    };
    for op in input.ops.into_iter().take(300) {
        run.step(op);
        run.latest = run.latest.max(run.now);
        run.invariants();
    }
    run.drain();
}

impl Run {
    fn accepted(&self) -> u64 {
        self.machine.metrics().accepted
    }

    fn step(&mut self, op: Op) {
        self.clock.set(self.now);
        match op {
            Op::Write { pick, durable } => self.write(pick, durable),
            Op::Poll => self.poll(),
            Op::Succeed => self.succeed(),
            Op::Fail => self.fail(),
            Op::FailPartway { steps } => {
                if let Some(batch) = self.waiting() {
                    let plan = plan(&batch.writes, true);
                    let done = usize::from(steps) % (plan.len() + 1);
                    for step in plan.into_iter().take(done) {
                        block(apply(&self.batched, step)).expect("a step applies");
                    }
                }
                self.fail();
            }
            Op::StaleResult { id_offset } => {
                let base = self.in_flight.as_ref().map_or(self.last_batch, |b| b.id);
                let id = base + 1 + u64::from(id_offset);
                let outcome = self.machine.handle_batch_result(self.now, id, Ok(()));
                assert_eq!(outcome, BatchOutcome::Unknown, "a result for batch {id}");
            }
            Op::Flush => {
                let ticket = self.machine.handle_flush();
                assert_eq!(
                    ticket.target.0,
                    self.accepted(),
                    "a flush covers every write"
                );
                self.flushes.push((ticket, self.failures));
            }
            Op::Close => {
                self.machine.handle_close();
                self.closed = true;
            }
            Op::Advance { millis } => self.now = self.now + Duration::from_millis(millis.into()),
            Op::Rewind { millis } => self.now = self.now - Duration::from_millis(millis.into()),
            Op::Timer => {
                if let Some(t) = self.machine.poll_timeout() {
                    self.now = self.now.max(t);
                }
            }
            Op::Read(pick) => self.read(pick),
            Op::TakeDurable => self.check_durable(),
            Op::Resolve {
                read,
                delegate_fails,
            } => {
                if self.reads.is_empty() {
                    return;
                }
                let (ticket, pick) = self.reads.remove(usize::from(read) % self.reads.len());
                if delegate_fails {
                    ticket.abandon(&mut self.machine);
                } else {
                    self.resolve(ticket, pick);
                }
            }
            Op::ConsumeState { key } => {
                let key = state_key(key);
                // Decided first: a call that waits for the batch in flight
                // is not made yet, on either side (and changed nothing).
                let got = match self.machine.consume_state(self.now, &key) {
                    OneTime::Decided(answer) => answer,
                    OneTime::AskDelegate => {
                        block(self.batched.consume_state(&key)).expect("delegate consume")
                    }
                    OneTime::AwaitBatch => {
                        self.check_awaits(|w| {
                            matches!(w, WriteOp::StoreState(r) if r.state == key)
                                || matches!(w, WriteOp::RemoveState(k) if *k == key)
                        });
                        return;
                    }
                };
                let expected = block(self.serial.consume_state(&key)).expect("serial consume");
                assert_eq!(got, expected, "consume_state");
            }
            Op::TryDeleteCode { key } => {
                let key = code_key(key);
                let got = match self.machine.try_delete_auth_code(self.now, &key) {
                    OneTime::Decided(answer) => answer,
                    OneTime::AskDelegate => {
                        let taken = block(self.batched.try_delete_auth_code(&key))
                            .expect("delegate try_delete");
                        self.machine.handle_code_taken(&key);
                        taken
                    }
                    OneTime::AwaitBatch => {
                        self.check_awaits(|w| {
                            matches!(w, WriteOp::StoreAuthCode(r) if r.code == key)
                                || matches!(w, WriteOp::DeleteAuthCode(k) if *k == key)
                        });
                        return;
                    }
                };
                let expected =
                    block(self.serial.try_delete_auth_code(&key)).expect("serial try_delete");
                assert_eq!(got, expected, "try_delete_auth_code");
            }
        }
    }

    fn make_write(&mut self, pick: WritePick) -> WriteOp {
        self.tag += 1;
        let tag = Some(format!("v{}", self.tag));
        let now = self.now;
        match pick {
            WritePick::StoreState { key, ttl } => {
                let mut r = StateRecord::new(state_key(key), expiry(now, ttl), now);
                r.client_state = tag;
                WriteOp::StoreState(Arc::new(r))
            }
            WritePick::RemoveState { key } => WriteOp::RemoveState(state_key(key)),
            WritePick::StoreCode { key, ttl } => {
                let mut r = AuthCodeRecord::new(code_key(key), "sid0", expiry(now, ttl), now);
                r.client_id = tag;
                WriteOp::StoreAuthCode(Arc::new(r))
            }
            WritePick::DeleteCode { key } => WriteOp::DeleteAuthCode(code_key(key)),
            WritePick::StoreSession {
                id,
                access,
                refresh,
                access_ttl,
                refresh_ttl,
            } => {
                let mut user = UserInfo::new("p", "u", "n");
                user.name = tag;
                let mut s = StoredSession::new(
                    session_id(id),
                    user,
                    access_token(access),
                    expiry(now, access_ttl),
                    now,
                );
                if let Some(r) = refresh {
                    s.refresh_token = Some(Secret::new(refresh_token(r)));
                    s.refresh_expires_at = refresh_ttl.map(|t| expiry(now, t));
                }
                WriteOp::StoreSession(Arc::new(s))
            }
            WritePick::DeleteSessionByToken { access } => {
                WriteOp::DeleteSessionByToken(Secret::new(access_token(access)))
            }
            WritePick::DeleteSessionById { id } => WriteOp::DeleteSessionById(session_id(id)),
            WritePick::StoreClient { key } => {
                let mut r = ClientRecord::new(client_key(key), now);
                r.client_name = tag;
                WriteOp::StoreClient(Arc::new(r))
            }
            WritePick::DeleteClient { key } => WriteOp::DeleteClient(client_key(key)),
        }
    }

    fn write(&mut self, pick: WritePick, durable: bool) {
        let op = self.make_write(pick);
        let next = self.accepted() + 1;
        let held = self.machine.held();
        let accepted = if durable {
            self.machine.accept_durable(self.now, op.clone())
        } else {
            self.machine.accept(self.now, op.clone())
        };
        match accepted {
            Ok(seq) => {
                assert!(!self.closed, "a write accepted after close");
                assert_eq!(seq.0, next, "sequence numbers are consecutive");
                if durable {
                    self.durable.insert(seq.0, None);
                }
                block(apply(&self.serial, Step::Single(op))).expect("serial write");
            }
            Err(refused) => {
                assert_eq!(refused.op, op, "a refused write is handed back intact");
                match refused.reason {
                    Refusal::Closed => assert!(self.closed, "refused as closed before close"),
                    Refusal::Full => {
                        assert!(!self.closed, "refused as full after close");
                        assert!(held >= self.config.max_pending, "refused as full with room");
                    }
                }
            }
        }
    }

    /// A one-time call waits only for a batch in flight holding a write of
    /// its record.
    fn check_awaits(&self, names: impl Fn(&WriteOp) -> bool) {
        let batch = self
            .in_flight
            .as_ref()
            .expect("awaits only with a batch in flight");
        assert!(
            batch.writes.iter().any(names),
            "awaits a batch holding no write of the record"
        );
    }

    fn poll(&mut self) {
        let waiting = self.in_flight.is_some() && !self.retrying;
        let Some(batch) = self.machine.poll_batch(self.now) else {
            return;
        };
        assert!(!waiting, "a second batch while one is in flight");
        assert!(!batch.writes.is_empty(), "an empty batch");
        match self.in_flight.take() {
            Some(old) => {
                assert!(self.retrying);
                assert_eq!(batch.id, old.id, "a retry keeps its id");
                assert_eq!(batch.writes, old.writes, "a retry resends the same writes");
                assert_eq!(batch.attempt, old.attempt + 1, "attempts count up");
            }
            None => {
                assert!(batch.id > self.last_batch, "batch ids grow");
                assert_eq!(batch.attempt, 1);
            }
        }
        self.last_batch = batch.id;
        self.retrying = false;
        self.in_flight = Some(batch);
    }

    /// The batch waiting for its result, if any.
    fn waiting(&self) -> Option<&Batch> {
        self.in_flight.as_ref().filter(|_| !self.retrying)
    }

    fn succeed(&mut self) {
        let Some(batch) = self.waiting().cloned() else {
            let outcome = self
                .machine
                .handle_batch_result(self.now, self.last_batch, Ok(()));
            assert_eq!(
                outcome,
                BatchOutcome::Unknown,
                "a result with nothing waiting"
            );
            return;
        };
        block(apply_batch(&self.batched, batch.writes.clone())).expect("batch applies");
        match self.machine.handle_batch_result(self.now, batch.id, Ok(())) {
            BatchOutcome::Applied(seqs) => {
                assert!(
                    seqs.len() >= batch.writes.len(),
                    "each write acknowledges itself"
                );
                for s in seqs {
                    assert!(
                        s.0 >= 1 && s.0 <= self.accepted(),
                        "seq {} never accepted",
                        s.0
                    );
                    assert!(self.acked.insert(s.0), "seq {} acknowledged twice", s.0);
                    self.owe(s, &Ok(()));
                }
            }
            other => panic!("a successful batch answered {other:?}"),
        }
        self.in_flight = None;
    }

    fn fail(&mut self) {
        let error = StoreError::Backend("injected".into());
        let Some(batch) = self.waiting().cloned() else {
            let outcome = self
                .machine
                .handle_batch_result(self.now, self.last_batch, Err(error));
            assert_eq!(
                outcome,
                BatchOutcome::Unknown,
                "a result with nothing waiting"
            );
            return;
        };
        let outcome = self
            .machine
            .handle_batch_result(self.now, batch.id, Err(error.clone()));
        if batch.attempt <= self.config.max_retries {
            assert_eq!(outcome, BatchOutcome::Retrying, "attempt {}", batch.attempt);
            self.retrying = true;
            return;
        }
        match outcome {
            BatchOutcome::Failed { seqs, error: e } => {
                assert_eq!(e, error, "the failure carries the last error");
                assert!(seqs.len() >= batch.writes.len());
                for s in seqs {
                    assert!(
                        !self.acked.contains(&s.0),
                        "seq {} failed after its ack",
                        s.0
                    );
                    self.owe(s, &Err(error.clone()));
                }
                if self.closed {
                    // Close failed: every other waiting writer is told now.
                    let left = Err(StoreError::WritesNotApplied {
                        count: self.machine.held(),
                    });
                    for owed in self.durable.values_mut().filter(|o| o.is_none()) {
                        *owed = Some(left.clone());
                    }
                }
            }
            other => panic!("the last attempt failed and answered {other:?}"),
        }
        self.failures += 1;
        self.in_flight = None;
        self.retrying = false;
    }

    fn session_key(pick: ReadPick) -> Option<SessionKey> {
        Some(match pick {
            ReadPick::SessionByAccess(k) => SessionKey::Access(TokenHash::of(&access_token(k))),
            ReadPick::SessionById(k) => SessionKey::Id(session_id(k)),
            ReadPick::SessionByRefresh(k) => SessionKey::Refresh(TokenHash::of(&refresh_token(k))),
            _ => return None,
        })
    }

    /// What `store` answers to a session read.
    fn load_session(store: &MemoryTokenStore, pick: ReadPick) -> Option<Arc<StoredSession>> {
        block(async {
            match pick {
                ReadPick::SessionByAccess(k) => store.load_session_by_token(&access_token(k)).await,
                ReadPick::SessionById(k) => store.load_session_by_id(&session_id(k)).await,
                ReadPick::SessionByRefresh(k) => {
                    store.load_session_by_refresh_token(&refresh_token(k)).await
                }
                _ => unreachable!("not a session read"),
            }
        })
        .expect("session read")
    }

    fn read(&mut self, pick: ReadPick) {
        let now = self.now;
        let ticket = match pick {
            ReadPick::SessionByAccess(_)
            | ReadPick::SessionById(_)
            | ReadPick::SessionByRefresh(_) => {
                let key = Self::session_key(pick).expect("a session read");
                match self.machine.read_session(now, &key) {
                    Read::Known(got) => {
                        let expected = Self::load_session(&self.serial, pick);
                        self.same_session(pick, got, expected);
                        return;
                    }
                    Read::Ask(ticket) => Ticket::Session(ticket),
                }
            }
            ReadPick::Code(k) => match self.machine.read_auth_code(now, &code_key(k)) {
                Read::Known(got) => {
                    let expected = block(self.serial.load_auth_code(&code_key(k)));
                    self.same_code(got, expected.expect("serial read"));
                    return;
                }
                Read::Ask(ticket) => Ticket::Code(ticket),
            },
            ReadPick::Client(k) => match self.machine.read_client(&client_key(k)) {
                Read::Known(got) => {
                    let expected = block(self.serial.load_client(&client_key(k)));
                    assert_eq!(got, expected.expect("serial read"), "{pick:?}");
                    return;
                }
                Read::Ask(ticket) => Ticket::Client(ticket),
            },
            ReadPick::Clients => Ticket::Clients(self.machine.read_clients()),
        };
        self.reads.push((ticket, pick));
    }

    /// The delegate (`batched`) answers now; the machine's answer must be what
    /// `serial` answers now.
    fn resolve(&mut self, ticket: Ticket, pick: ReadPick) {
        let now = self.now;
        match (ticket, pick) {
            (Ticket::Session(ticket), _) => {
                let answer = Self::load_session(&self.batched, pick);
                let got = self.machine.resolve_session(now, ticket, answer);
                let expected = Self::load_session(&self.serial, pick);
                self.same_session(pick, got, expected);
            }
            (Ticket::Code(ticket), ReadPick::Code(k)) => {
                let answer = block(self.batched.load_auth_code(&code_key(k))).expect("read");
                let got = self.machine.resolve_auth_code(now, ticket, answer);
                let expected = block(self.serial.load_auth_code(&code_key(k))).expect("read");
                self.same_code(got, expected);
            }
            (Ticket::Client(ticket), ReadPick::Client(k)) => {
                let answer = block(self.batched.load_client(&client_key(k))).expect("read");
                let got = self.machine.resolve_client(ticket, answer);
                let expected = block(self.serial.load_client(&client_key(k))).expect("read");
                assert_eq!(got, expected, "{pick:?}");
            }
            (Ticket::Clients(ticket), _) => {
                let listed = block(self.batched.list_clients()).expect("list");
                let got = self.machine.resolve_clients(ticket, listed);
                let expected = block(self.serial.list_clients()).expect("list");
                assert_eq!(got, expected, "list_clients");
            }
            (_, pick) => unreachable!("a ticket of another kind than {pick:?}"),
        }
    }

    /// A batch with a final result held write `s`: its durable writer, if it
    /// was not answered yet, is owed `outcome`.
    fn owe(&mut self, s: Seq, outcome: &Result<(), StoreError>) {
        if let Some(owed @ None) = self.durable.get_mut(&s.0) {
            *owed = Some(outcome.clone());
        }
    }

    /// Every durable writer gets exactly what it is owed, once, and nothing
    /// before.
    fn check_durable(&mut self) {
        let seqs: Vec<u64> = self.durable.keys().copied().collect();
        for s in seqs {
            let got = self.machine.take_durable_outcome(Seq(s));
            let owed = &self.durable[&s];
            assert_eq!(&got, owed, "durable writer {s}");
            if got.is_some() {
                self.durable.remove(&s);
                let again = self.machine.take_durable_outcome(Seq(s));
                assert_eq!(again, None, "durable writer {s} answered twice");
            }
        }
        assert_eq!(self.machine.durable_waiting(), self.durable.len());
    }

    /// Whether the clock is behind the latest time seen, and `got` (where
    /// the one-by-one store has nothing) could have been deleted as dead at
    /// that latest time: the machine evaluates an applied write's record at
    /// the current time and cannot know the delegate already deleted it. A
    /// known deviation (reported) that only a clock going backwards exposes.
    fn resurrected(&self, dead_at_latest: bool) -> bool {
        self.now < self.latest && dead_at_latest
    }

    fn same_session(
        &self,
        pick: ReadPick,
        got: Option<Arc<StoredSession>>,
        expected: Option<Arc<StoredSession>>,
    ) {
        if let (Some(s), None) = (&got, &expected) {
            let dead = match pick {
                ReadPick::SessionByRefresh(_) => s.visibility_by_refresh(self.latest),
                _ => s.visibility_by_access(self.latest),
            } == SessionVisibility::Dead;
            if self.resurrected(dead) {
                return;
            }
        }
        assert_eq!(got, expected, "{pick:?}");
    }

    fn same_code(&self, got: Option<Arc<AuthCodeRecord>>, expected: Option<Arc<AuthCodeRecord>>) {
        if let (Some(c), None) = (&got, &expected)
            && self.resurrected(c.is_expired(self.latest))
        {
            return;
        }
        assert_eq!(got, expected, "auth code read");
    }

    fn all_acked_up_to(&self, target: u64) -> bool {
        (1..=target).all(|s| self.acked.contains(&s))
    }

    fn invariants(&mut self) {
        assert_eq!(
            self.machine.reads_in_flight(),
            self.reads.len(),
            "read tickets"
        );
        let mut open = Vec::new();
        for (ticket, failures) in std::mem::take(&mut self.flushes) {
            let done = self.all_acked_up_to(ticket.target.0);
            match self.machine.flush_status(&ticket) {
                Some(Ok(())) => assert!(done, "a flush succeeded before its writes were applied"),
                Some(Err(_)) => {
                    assert!(!done, "a flush failed after its writes were applied");
                    assert!(
                        self.failures > failures || self.machine.close_failed(),
                        "a flush failed with no failed batch since it began"
                    );
                }
                None => {
                    assert!(
                        !done,
                        "a flush whose writes were all applied is still going"
                    );
                    open.push((ticket, failures));
                }
            }
        }
        self.flushes = open;
        if self.machine.is_drained() {
            assert!(self.in_flight.is_none(), "drained with a batch in flight");
            self.assert_equal("drained");
        }
    }

    fn assert_equal(&self, when: &str) {
        assert!(
            self.all_acked_up_to(self.accepted()),
            "{when}: an accepted write was never acknowledged"
        );
        assert_eq!(
            self.batched.contents(),
            self.serial.contents(),
            "{when}: the batches and the one-by-one writes disagree"
        );
    }

    /// Closes and drives the machine until it is drained or close has failed,
    /// acknowledging every batch.
    fn drain(&mut self) {
        self.machine.handle_close();
        self.closed = true;
        for (ticket, _) in std::mem::take(&mut self.reads) {
            ticket.abandon(&mut self.machine);
        }
        let mut steps = 0;
        while !self.machine.is_drained() && !self.machine.close_failed() {
            steps += 1;
            assert!(steps < 10_000, "drain does not end");
            self.clock.set(self.now);
            if self.waiting().is_some() {
                self.succeed();
                continue;
            }
            if self.machine.poll_batch(self.now).is_some_and(|b| {
                self.last_batch = b.id;
                self.in_flight = Some(b);
                self.retrying = false;
                true
            }) {
                continue;
            }
            match self.machine.poll_timeout() {
                Some(t) if t > self.now => self.now = t,
                Some(_) => panic!("a batch is due but none is handed out"),
                None => panic!("writes are held but nothing will flush them"),
            }
        }
        assert!(self.machine.closing_done(), "close is not done");
        self.check_durable();
        assert!(
            self.durable.is_empty(),
            "a durable writer was never answered"
        );
        if self.machine.close_failed() {
            let unapplied = self.machine.take_unapplied();
            assert!(
                self.machine.is_drained(),
                "take_unapplied leaves the buffer empty"
            );
            let missing = !self.all_acked_up_to(self.accepted());
            assert_eq!(
                missing,
                !unapplied.is_empty(),
                "unapplied writes are handed back exactly when some were not acknowledged"
            );
            for op in unapplied {
                block(apply(&self.batched, Step::Single(op))).expect("unapplied write");
            }
            assert_eq!(
                self.batched.contents(),
                self.serial.contents(),
                "after applying the writes close handed back"
            );
        } else {
            self.assert_equal("after close");
        }
    }
}
