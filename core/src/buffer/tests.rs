use super::*;
use crate::{
    AuthCodeRecord, ClientRecord, ManualClock, MemoryTokenStore, Secret, StateRecord,
    StoredSession, TokenStore, UserInfo,
};
use std::sync::Arc;

const MS: Duration = Duration::from_millis(1);

fn t0() -> Timestamp {
    Timestamp::from_unix_secs(1_000_000)
}

fn state(k: &str) -> WriteOp {
    WriteOp::StoreState(Arc::new(StateRecord::new(
        k,
        t0() + Duration::from_secs(600),
        t0(),
    )))
}

fn session(id: &str, access: &str, refresh: Option<&str>) -> WriteOp {
    let mut s = StoredSession::new(
        id,
        UserInfo::new("p", "u", "n"),
        access,
        t0() + Duration::from_secs(600),
        t0(),
    );
    s.refresh_token = refresh.map(Secret::new);
    WriteOp::StoreSession(Arc::new(s))
}

fn config() -> BufferConfig {
    BufferConfig {
        max_batch_size: 4,
        max_delay: Duration::from_millis(10),
        max_pending: 8,
        max_retries: 2,
        retry_backoff: Duration::from_millis(5),
    }
}

#[test]
fn size_trigger_flushes_at_max_batch_size() {
    let mut b = BufferMachine::new(config());
    for i in 0..3 {
        b.accept(t0(), state(&format!("s{i}"))).unwrap();
    }
    assert!(b.poll_batch(t0()).is_none());
    b.accept(t0(), state("s3")).unwrap();
    assert_eq!(b.poll_batch(t0()).map(|batch| batch.writes.len()), Some(4));
}

#[test]
fn time_trigger_flushes_after_max_delay() {
    let mut b = BufferMachine::new(config());
    b.accept(t0(), state("a")).unwrap();
    b.accept(t0() + 3 * MS, state("b")).unwrap();
    assert_eq!(b.poll_timeout(), Some(t0() + 10 * MS));
    assert!(b.poll_batch(t0() + 9 * MS).is_none());
    assert_eq!(
        b.poll_batch(t0() + 10 * MS).map(|batch| batch.writes.len()),
        Some(2)
    );
    assert_eq!(
        b.poll_timeout(),
        None,
        "nothing waits for time while a batch is in flight"
    );
}

#[test]
fn zero_delay_flushes_when_idle() {
    let mut b = BufferMachine::new(BufferConfig {
        max_delay: Duration::ZERO,
        ..config()
    });
    b.accept(t0(), state("a")).unwrap();
    let first = b.poll_batch(t0()).expect("due at once");
    b.accept(t0(), state("b")).unwrap();
    b.accept(t0(), state("c")).unwrap();
    assert!(b.poll_batch(t0()).is_none(), "one batch in flight");
    b.handle_batch_result(t0(), first.id, Ok(()));
    assert_eq!(
        b.poll_batch(t0()).map(|batch| batch.writes.len()),
        Some(2),
        "the others share one batch"
    );
}

#[test]
fn last_write_wins_per_key() {
    let mut b = BufferMachine::new(config());
    let s1 = b.accept(t0(), state("a")).unwrap();
    let s2 = b.accept(t0(), WriteOp::RemoveState("a".into())).unwrap();
    let s3 = b.accept(t0(), state("a")).unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).unwrap();
    assert_eq!(batch.writes, vec![state("a")]);
    assert_eq!(
        b.handle_batch_result(t0(), batch.id, Ok(())),
        BatchOutcome::Applied(vec![s1, s2, s3])
    );
    assert_eq!(b.metrics().coalesced, 2);
}

#[test]
fn delete_after_store_leaves_the_delete_for_single_key_records() {
    let mut b = BufferMachine::new(config());
    let code = Arc::new(AuthCodeRecord::new(
        "c",
        "sid",
        t0() + Duration::from_secs(60),
        t0(),
    ));
    b.accept(t0(), WriteOp::StoreAuthCode(code)).unwrap();
    b.accept(t0(), WriteOp::DeleteAuthCode("c".into())).unwrap();
    b.handle_flush();
    assert_eq!(
        b.poll_batch(t0()).unwrap().writes,
        vec![WriteOp::DeleteAuthCode("c".into())]
    );
}

#[test]
fn session_rotation_is_never_coalesced_away() {
    let mut b = BufferMachine::new(config());
    // Login, rotate, logout: dropping the rotation would resurrect the first session.
    b.accept(t0(), session("sid", "a1", Some("r1"))).unwrap();
    b.accept(t0(), session("sid", "a2", Some("r2"))).unwrap();
    b.accept(t0(), WriteOp::DeleteSessionByToken(Secret::new("a2")))
        .unwrap();
    b.handle_flush();
    assert_eq!(b.poll_batch(t0()).unwrap().writes.len(), 3);
}

#[test]
fn the_same_session_stored_again_coalesces() {
    let mut b = BufferMachine::new(config());
    b.accept(t0(), session("sid", "a1", None)).unwrap();
    b.accept(t0(), session("sid", "a1", Some("r1"))).unwrap();
    b.accept(t0(), session("sid", "a1", Some("r1"))).unwrap();
    b.handle_flush();
    assert_eq!(
        b.poll_batch(t0()).unwrap().writes,
        vec![session("sid", "a1", Some("r1"))]
    );
}

#[test]
fn full_buffer_refuses_until_a_batch_finishes() {
    let mut b = BufferMachine::new(config());
    for i in 0..8 {
        b.accept(t0(), state(&format!("s{i}"))).unwrap();
    }
    assert_eq!(
        b.accept(t0(), state("x")).map_err(|r| r.reason),
        Err(Refusal::Full)
    );
    let batch = b.poll_batch(t0()).unwrap();
    assert_eq!(
        b.accept(t0(), state("x")).map_err(|r| r.reason),
        Err(Refusal::Full),
        "in flight still counts"
    );
    b.handle_batch_result(t0(), batch.id, Ok(()));
    assert!(b.accept(t0(), state("x")).is_ok());
}

#[test]
fn failure_is_retried_with_backoff_then_requeued() {
    let mut b = BufferMachine::new(config()); // 2 retries, 5 ms doubling
    let seq = b.accept(t0(), state("a")).unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).unwrap();
    let err = StoreError::Backend("disk".into());
    assert_eq!(
        b.handle_batch_result(t0(), batch.id, Err(err.clone())),
        BatchOutcome::Retrying
    );
    assert_eq!(b.poll_timeout(), Some(t0() + 5 * MS));
    assert!(b.poll_batch(t0() + 4 * MS).is_none());
    let retry = b.poll_batch(t0() + 5 * MS).unwrap();
    assert_eq!((retry.id, retry.attempt), (batch.id, 2));
    assert_eq!(
        b.handle_batch_result(t0() + 5 * MS, retry.id, Err(err.clone())),
        BatchOutcome::Retrying
    );
    assert_eq!(b.poll_timeout(), Some(t0() + 15 * MS));
    let last = b.poll_batch(t0() + 15 * MS).unwrap();
    let outcome = b.handle_batch_result(t0() + 15 * MS, last.id, Err(err.clone()));
    assert_eq!(
        outcome,
        BatchOutcome::Failed {
            seqs: vec![seq],
            error: err
        }
    );
    assert!(
        !b.is_flushed(seq),
        "the write is back in the queue, not lost"
    );
    assert_eq!(b.held(), 1);
    let again = b
        .poll_batch(t0() + Duration::from_secs(1))
        .expect("flushed again after the cooldown");
    assert_eq!(
        b.handle_batch_result(t0() + Duration::from_secs(1), again.id, Ok(())),
        BatchOutcome::Applied(vec![seq])
    );
    assert!(b.is_flushed(seq));
}

#[test]
fn requeued_write_superseded_by_a_newer_one_is_dropped() {
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 0,
        ..config()
    });
    let old = b.accept(t0(), state("a")).unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).unwrap();
    let new = b.accept(t0(), WriteOp::RemoveState("a".into())).unwrap();
    b.handle_batch_result(t0(), batch.id, Err(StoreError::Backend("x".into())));
    b.handle_flush();
    let next = b.poll_batch(t0() + Duration::from_secs(1)).unwrap();
    assert_eq!(next.writes, vec![WriteOp::RemoveState("a".into())]);
    assert_eq!(
        b.handle_batch_result(t0(), next.id, Ok(())),
        BatchOutcome::Applied(vec![old, new])
    );
}

#[test]
fn close_refuses_new_writes_and_drains() {
    let mut b = BufferMachine::new(config());
    b.accept(t0(), state("a")).unwrap();
    b.handle_close();
    assert_eq!(
        b.accept(t0(), state("b")),
        Err(Refused {
            reason: Refusal::Closed,
            op: state("b")
        })
    );
    let batch = b.poll_batch(t0()).expect("close flushes at once");
    b.handle_batch_result(t0(), batch.id, Ok(()));
    assert!(b.is_drained());
    assert!(b.take_unapplied().is_empty());
}

#[test]
fn close_with_a_failing_delegate_returns_every_unapplied_write_in_order() {
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 1,
        ..config()
    });
    b.accept(t0(), state("a")).unwrap();
    b.accept(t0(), state("b")).unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).unwrap();
    b.accept(t0(), state("c")).unwrap();
    b.handle_close();
    let err = StoreError::Backend("down".into());
    assert_eq!(
        b.handle_batch_result(t0(), batch.id, Err(err.clone())),
        BatchOutcome::Retrying
    );
    let retry = b.poll_batch(t0() + Duration::from_secs(1)).unwrap();
    assert!(matches!(
        b.handle_batch_result(t0(), retry.id, Err(err)),
        BatchOutcome::Failed { .. }
    ));
    assert!(b.close_failed());
    assert!(
        b.poll_batch(t0() + Duration::from_secs(9)).is_none(),
        "flushing stops"
    );
    assert_eq!(b.take_unapplied(), vec![state("a"), state("b"), state("c")]);
}

#[test]
fn time_going_backwards_neither_panics_nor_stalls() {
    let mut b = BufferMachine::new(config());
    b.accept(t0(), state("a")).unwrap();
    let earlier = t0() - Duration::from_secs(3600);
    assert!(b.poll_batch(earlier).is_none());
    assert!(b.poll_timeout().is_some_and(|t| t <= earlier + 10 * MS));
    assert!(b.poll_batch(earlier + 10 * MS).is_some());
}

#[test]
fn stale_batch_results_change_nothing() {
    let mut b = BufferMachine::new(config());
    b.accept(t0(), state("a")).unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).unwrap();
    assert_eq!(
        b.handle_batch_result(t0(), batch.id + 1, Ok(())),
        BatchOutcome::Unknown
    );
    assert_eq!(b.held(), 1);
}

#[test]
fn plan_groups_session_runs_for_bulk_and_keeps_their_order() {
    let writes = vec![
        session("s1", "a1", None),
        state("x"),
        session("s2", "a2", None),
        WriteOp::DeleteSessionByToken(Secret::new("a1")),
        WriteOp::DeleteSessionByToken(Secret::new("a2")),
        WriteOp::DeleteSessionById("s3".into()),
        session("s4", "a4", None),
    ];
    let steps = plan(&writes, true);
    assert_eq!(steps.len(), 5);
    assert!(matches!(&steps[0], Step::Single(WriteOp::StoreState(_))));
    assert!(matches!(&steps[1], Step::BulkStoreSessions(v) if v.len() == 2));
    assert!(matches!(&steps[2], Step::BulkDeleteSessions(v) if v.len() == 2));
    assert!(matches!(
        &steps[3],
        Step::Single(WriteOp::DeleteSessionById(_))
    ));
    assert!(matches!(&steps[4], Step::BulkStoreSessions(v) if v.len() == 1));
    assert_eq!(plan(&writes, false).len(), writes.len());
}

#[test]
fn debug_shows_no_key_or_token() {
    let mut b = BufferMachine::new(config());
    b.accept(
        t0(),
        session("sid-secret", "tok-secret", Some("ref-secret")),
    )
    .unwrap();
    b.accept(
        t0(),
        WriteOp::DeleteSessionByToken(Secret::new("del-secret")),
    )
    .unwrap();
    let keys = [
        SessionKey::Id("sid-secret".into()),
        SessionKey::Access(crate::TokenHash::of("tok-secret")),
    ];
    let text = format!("{b:?} {:?} {keys:?}", b.held_writes().collect::<Vec<_>>());
    assert!(!text.contains("secret"), "{text}");
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_write(rng: &mut Rng) -> WriteOp {
    let k = |rng: &mut Rng| format!("k{}", rng.below(3));
    match rng.below(10) {
        0 => state(&k(rng)),
        1 => WriteOp::RemoveState(k(rng)),
        2 => WriteOp::StoreAuthCode(Arc::new(AuthCodeRecord::new(
            k(rng),
            "sid",
            t0() + Duration::from_secs(60),
            t0(),
        ))),
        3 => WriteOp::DeleteAuthCode(k(rng)),
        4 => WriteOp::StoreClient(Arc::new(ClientRecord::new(k(rng), t0()))),
        5 => WriteOp::DeleteClient(k(rng)),
        6 | 7 => {
            let refresh = rng.below(3);
            let refresh = (refresh < 2).then(|| format!("r{refresh}"));
            session(
                &format!("id{}", rng.below(3)),
                &format!("a{}", rng.below(3)),
                refresh.as_deref(),
            )
        }
        8 => WriteOp::DeleteSessionByToken(Secret::new(format!("a{}", rng.below(3)))),
        _ => WriteOp::DeleteSessionById(format!("id{}", rng.below(3))),
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

/// Applies a batch's plan; with `fail_after`, applies only that many steps and
/// reports a failure (a partial application, as a crash in the middle of a
/// batch without a transaction would leave).
fn apply_batch(
    store: &MemoryTokenStore,
    batch: &Batch,
    bulk: bool,
    fail_after: Option<usize>,
) -> Result<(), StoreError> {
    for (i, step) in plan(&batch.writes, bulk).into_iter().enumerate() {
        if fail_after == Some(i) {
            return Err(StoreError::Backend("injected".into()));
        }
        run(apply(store, step))?;
    }
    if fail_after.is_some() {
        return Err(StoreError::Backend("injected after the last step".into()));
    }
    Ok(())
}

/// The property the design rests on: whatever the interleaving of writes,
/// flushes and failures (partial ones included), the delegate ends exactly as if
/// every accepted write had been applied one by one.
#[test]
fn coalesced_flushes_equal_one_by_one_application() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let clock = ManualClock::new(t0());
        let reference = MemoryTokenStore::new(clock.clone());
        let buffered = MemoryTokenStore::new(clock.clone());
        let bulk = seed % 2 == 0;
        let mut b = BufferMachine::new(BufferConfig {
            max_pending: 1_000,
            max_retries: 1,
            ..config()
        });
        let mut now = t0();
        for _ in 0..60 {
            now = now + Duration::from_millis(rng.below(8));
            let write = random_write(&mut rng);
            run(apply(&reference, Step::Single(write.clone()))).unwrap();
            b.accept(now, write).unwrap();
            if rng.below(4) == 0 {
                b.handle_flush();
            }
            if let Some(batch) = b.poll_batch(now) {
                let fail = (rng.below(5) == 0).then(|| rng.below(4) as usize);
                let result = apply_batch(&buffered, &batch, bulk, fail);
                b.handle_batch_result(now, batch.id, result);
            }
        }
        b.handle_close();
        let mut guard = 0;
        while !b.is_drained() {
            now = now + Duration::from_secs(1);
            if let Some(batch) = b.poll_batch(now) {
                let result = apply_batch(&buffered, &batch, bulk, None);
                b.handle_batch_result(now, batch.id, result);
            }
            guard += 1;
            assert!(guard < 100, "seed {seed}: the buffer does not drain");
        }
        assert_eq!(buffered.contents(), reference.contents(), "seed {seed}");
    }
}

mod read_your_writes {
    use super::*;
    use crate::{TokenHash, TokenStore};

    /// The buffered side: the machine plus the delegate its batches go to.
    struct Buffered {
        machine: BufferMachine,
        delegate: MemoryTokenStore,
        bulk: bool,
    }

    impl Buffered {
        /// Hands out and applies every due batch (failing some).
        fn pump(&mut self, now: Timestamp, rng: &mut Rng) {
            while let Some(batch) = self.machine.poll_batch(now) {
                let fail = (rng.below(6) == 0).then(|| rng.below(3) as usize);
                let result = apply_batch(&self.delegate, &batch, self.bulk, fail);
                self.machine.handle_batch_result(now, batch.id, result);
            }
        }
    }

    fn short_session(rng: &mut Rng, now: Timestamp) -> WriteOp {
        let mut s = StoredSession::new(
            format!("id{}", rng.below(3)),
            UserInfo::new("p", "u", "n"),
            format!("a{}", rng.below(3)),
            now + Duration::from_millis(rng.below(40)),
            now,
        );
        if rng.below(3) > 0 {
            s.refresh_token = Some(Secret::new(format!("r{}", rng.below(2))));
            s.refresh_expires_at =
                (rng.below(2) == 0).then(|| now + Duration::from_millis(rng.below(80)));
        }
        s.issued_at = Some(now - Duration::from_secs(1));
        WriteOp::StoreSession(Arc::new(s))
    }

    fn short_code(rng: &mut Rng, now: Timestamp) -> WriteOp {
        let c = AuthCodeRecord::new(
            format!("k{}", rng.below(3)),
            "sid",
            now + Duration::from_millis(rng.below(30)),
            now,
        );
        WriteOp::StoreAuthCode(Arc::new(c))
    }

    fn short_state(rng: &mut Rng, now: Timestamp) -> WriteOp {
        let s = StateRecord::new(
            format!("k{}", rng.below(3)),
            now + Duration::from_millis(rng.below(30)),
            now,
        );
        WriteOp::StoreState(Arc::new(s))
    }

    fn session_key(rng: &mut Rng) -> (SessionKey, String) {
        match rng.below(3) {
            0 => {
                let t = format!("a{}", rng.below(3));
                (SessionKey::Access(TokenHash::of(&t)), t)
            }
            1 => {
                let id = format!("id{}", rng.below(3));
                (SessionKey::Id(id.clone()), id)
            }
            _ => {
                let t = format!("r{}", rng.below(2));
                (SessionKey::Refresh(TokenHash::of(&t)), t)
            }
        }
    }

    async fn reference_session(
        store: &MemoryTokenStore,
        key: &SessionKey,
        raw: &str,
    ) -> Option<Arc<StoredSession>> {
        match key {
            SessionKey::Access(_) => store.load_session_by_token(raw).await,
            SessionKey::Id(_) => store.load_session_by_id(raw).await,
            SessionKey::Refresh(_) => store.load_session_by_refresh_token(raw).await,
        }
        .unwrap()
    }

    /// A read through the buffer; batches may be applied while it is in flight,
    /// before or after the delegate answers.
    fn buffered_session(
        b: &mut Buffered,
        now: Timestamp,
        key: &SessionKey,
        raw: &str,
        rng: &mut Rng,
    ) -> Option<Arc<StoredSession>> {
        let ticket = match b.machine.read_session(now, key) {
            Read::Known(answer) => return answer,
            Read::Ask(ticket) => ticket,
        };
        if rng.below(2) == 0 {
            b.machine.handle_flush();
            b.pump(now, rng);
        }
        let answer = run(reference_session(&b.delegate, key, raw));
        if rng.below(2) == 0 {
            b.machine.handle_flush();
            b.pump(now, rng);
        }
        b.machine.resolve_session(now, ticket, answer)
    }

    fn buffered_code(
        b: &mut Buffered,
        now: Timestamp,
        code: &str,
        rng: &mut Rng,
    ) -> Option<Arc<AuthCodeRecord>> {
        let ticket = match b.machine.read_auth_code(now, code) {
            Read::Known(answer) => return answer,
            Read::Ask(ticket) => ticket,
        };
        if rng.below(2) == 0 {
            b.machine.handle_flush();
            b.pump(now, rng);
        }
        let answer = run(b.delegate.load_auth_code(code)).unwrap();
        b.machine.resolve_auth_code(now, ticket, answer)
    }

    fn buffered_clients(b: &mut Buffered, now: Timestamp, rng: &mut Rng) -> Vec<Arc<ClientRecord>> {
        let ticket = b.machine.read_clients();
        let listed = run(b.delegate.list_clients()).unwrap();
        if rng.below(2) == 0 {
            b.machine.handle_flush();
            b.pump(now, rng);
        }
        b.machine.resolve_clients(ticket, listed)
    }

    /// Every answer through the buffer equals the reference's, at every step,
    /// and the final contents agree.
    #[test]
    fn reads_and_one_time_operations_see_every_accepted_write() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
            let clock = ManualClock::new(t0());
            let reference = MemoryTokenStore::new(clock.clone());
            let config = BufferConfig {
                max_pending: 1_000,
                max_retries: 1,
                ..config()
            };
            let mut b = Buffered {
                machine: BufferMachine::new(config),
                delegate: MemoryTokenStore::new(clock.clone()),
                bulk: seed % 2 == 0,
            };
            for step in 0..80 {
                clock.advance(Duration::from_millis(rng.below(6)));
                let now = crate::Clock::now(&clock);
                let ctx = format!("seed {seed} step {step}");
                match rng.below(12) {
                    0..=3 => {
                        let write = match rng.below(4) {
                            0 => short_session(&mut rng, now),
                            1 => short_code(&mut rng, now),
                            2 => short_state(&mut rng, now),
                            _ => random_write(&mut rng),
                        };
                        run(apply(&reference, Step::Single(write.clone()))).unwrap();
                        b.machine.accept(now, write).unwrap();
                    }
                    4 | 5 => {
                        let (key, raw) = session_key(&mut rng);
                        let expected = run(reference_session(&reference, &key, &raw));
                        assert_eq!(
                            buffered_session(&mut b, now, &key, &raw, &mut rng),
                            expected,
                            "{ctx}: session {key:?}"
                        );
                    }
                    6 => {
                        let code = format!("k{}", rng.below(3));
                        let expected = run(reference.load_auth_code(&code)).unwrap();
                        assert_eq!(
                            buffered_code(&mut b, now, &code, &mut rng),
                            expected,
                            "{ctx}: code"
                        );
                    }
                    7 => {
                        let expected = run(reference.list_clients()).unwrap();
                        assert_eq!(
                            buffered_clients(&mut b, now, &mut rng),
                            expected,
                            "{ctx}: clients"
                        );
                    }
                    8 => {
                        let key = format!("k{}", rng.below(3));
                        // Decided first: a call that must wait for the batch
                        // in flight is not made yet, on either side.
                        let got = match b.machine.consume_state(now, &key) {
                            OneTime::Decided(x) => Some(x),
                            OneTime::AskDelegate => {
                                Some(run(b.delegate.consume_state(&key)).unwrap())
                            }
                            OneTime::AwaitBatch => None,
                        };
                        if let Some(got) = got {
                            let expected = run(reference.consume_state(&key)).unwrap();
                            assert_eq!(got, expected, "{ctx}: consume");
                        }
                    }
                    9 => {
                        let code = format!("k{}", rng.below(3));
                        let got = match b.machine.try_delete_auth_code(now, &code) {
                            OneTime::Decided(x) => Some(x),
                            OneTime::AskDelegate => {
                                let taken = run(b.delegate.try_delete_auth_code(&code)).unwrap();
                                b.machine.handle_code_taken(&code);
                                Some(taken)
                            }
                            OneTime::AwaitBatch => None,
                        };
                        if let Some(got) = got {
                            let expected = run(reference.try_delete_auth_code(&code)).unwrap();
                            assert_eq!(got, expected, "{ctx}: try_delete");
                        }
                    }
                    10 => {
                        b.machine.handle_flush();
                    }
                    _ => {}
                }
                b.pump(now, &mut rng);
                assert_eq!(b.machine.reads_in_flight(), 0);
            }
            b.machine.handle_close();
            for _ in 0..100 {
                if b.machine.is_drained() {
                    break;
                }
                clock.advance(Duration::from_secs(1));
                let now = crate::Clock::now(&clock);
                if let Some(batch) = b.machine.poll_batch(now) {
                    let result = apply_batch(&b.delegate, &batch, b.bulk, None);
                    b.machine.handle_batch_result(now, batch.id, result);
                }
            }
            assert!(b.machine.is_drained(), "seed {seed}: not drained");
            assert_eq!(
                b.delegate.contents(),
                reference.contents(),
                "seed {seed}: contents"
            );
        }
    }
}

#[test]
fn flush_status_reports_applied_or_the_failure_of_a_covered_batch() {
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 0,
        ..config()
    });
    b.accept(t0(), state("a")).unwrap();
    let flush = b.handle_flush();
    assert_eq!(b.flush_status(&flush), None);
    let batch = b.poll_batch(t0()).unwrap();
    let err = StoreError::Backend("disk".into());
    b.handle_batch_result(t0(), batch.id, Err(err.clone()));
    assert_eq!(b.flush_status(&flush), Some(Err(err)));
    // A flush begun after that failure waits for the retry instead.
    let again = b.handle_flush();
    assert_eq!(b.flush_status(&again), None);
    let retry = b.poll_batch(t0() + Duration::from_secs(1)).unwrap();
    b.handle_batch_result(t0(), retry.id, Ok(()));
    assert_eq!(b.flush_status(&again), Some(Ok(())));
}

#[test]
fn durable_writes_are_due_at_once_and_gather_while_a_batch_is_in_flight() {
    let mut b = BufferMachine::new(config());
    // A queued write waits for its delay; a durable one makes the queue due now.
    b.accept(t0(), state("queued")).unwrap();
    assert!(b.poll_batch(t0()).is_none());
    b.accept_durable(t0(), state("d1")).unwrap();
    let first = b.poll_batch(t0()).expect("a durable write is due at once");
    assert_eq!(first.writes.len(), 2);
    // Group commit: three durable writers arrive while the batch is in flight.
    for k in ["d2", "d3", "d4"] {
        b.accept_durable(t0(), state(k)).unwrap();
    }
    assert!(
        b.poll_batch(t0()).is_none(),
        "one batch in flight at a time"
    );
    b.handle_batch_result(t0(), first.id, Ok(()));
    let second = b.poll_batch(t0()).expect("the gathered writes are due");
    assert_eq!(second.writes.len(), 3);
    b.handle_batch_result(t0(), second.id, Ok(()));
    // Nothing durable is left: a later queued write waits for its delay again.
    b.accept(t0(), state("late")).unwrap();
    assert!(b.poll_batch(t0()).is_none());
    assert_eq!(b.poll_timeout(), Some(t0() + 10 * MS));
}

#[test]
fn a_refused_durable_write_changes_nothing() {
    let mut b = BufferMachine::new(config());
    b.handle_close();
    let refused = b.accept_durable(t0(), state("x")).unwrap_err();
    assert_eq!(refused.reason, Refusal::Closed);
    assert!(b.is_drained());
    assert!(b.poll_batch(t0()).is_none());
}

#[test]
fn after_a_batch_fails_for_good_a_forced_flush_waits_for_the_cooldown_only() {
    let mut b = BufferMachine::new(BufferConfig {
        max_delay: Duration::from_secs(10),
        ..config() // 2 retries, 5 ms doubling: cooldown 20 ms
    });
    b.accept_durable(t0(), state("a")).unwrap();
    let err = StoreError::Backend("disk".into());
    let mut now = t0();
    let mut batch = b.poll_batch(now).unwrap();
    loop {
        match b.handle_batch_result(now, batch.id, Err(err.clone())) {
            BatchOutcome::Retrying => {
                now = b.poll_timeout().unwrap();
                batch = b.poll_batch(now).unwrap();
            }
            BatchOutcome::Failed { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Another durable writer arrives during the cooldown: the queue is due as
    // soon as the cooldown ends, not after max_delay.
    b.accept_durable(now, state("b")).unwrap();
    let cooldown_end = now + 20 * MS;
    assert_eq!(b.poll_timeout(), Some(cooldown_end));
    assert!(b.poll_batch(cooldown_end - MS).is_none());
    assert_eq!(b.poll_batch(cooldown_end).map(|b| b.writes.len()), Some(2));
}

#[test]
fn a_full_queue_is_due_at_once_and_its_deadline_says_so() {
    let mut b = BufferMachine::new(BufferConfig {
        max_delay: Duration::from_secs(10),
        ..config() // batches of 4
    });
    for k in ["a", "b", "c", "d"] {
        b.accept(t0(), state(k)).unwrap();
    }
    assert_eq!(b.poll_timeout(), Some(t0()));
}

#[test]
fn batches_hold_at_most_max_batch_size_writes_in_order() {
    let mut b = BufferMachine::new(BufferConfig {
        max_pending: 100,
        ..config() // batches of 4
    });
    for i in 0..10 {
        b.accept(t0(), state(&format!("s{i}"))).unwrap();
    }
    // A later write to a key of the first batch still coalesces with it only
    // while it is queued: s9 was queued, s0 goes to the first batch.
    b.accept(t0(), state("s9")).unwrap();
    b.handle_flush();
    let mut sizes = Vec::new();
    let mut keys = Vec::new();
    while let Some(batch) = b.poll_batch(t0()) {
        sizes.push(batch.writes.len());
        for w in &batch.writes {
            if let WriteOp::StoreState(s) = w {
                keys.push(s.state.clone());
            }
        }
        b.handle_batch_result(t0(), batch.id, Ok(()));
    }
    assert_eq!(sizes, vec![4, 4, 2]);
    let expected: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    assert_eq!(keys, expected);
    assert!(b.is_drained());
}

#[test]
fn after_a_failed_close_no_flush_reports_success_for_given_up_writes() {
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 0,
        ..config()
    });
    let applied = b.accept(t0(), state("a")).unwrap();
    b.handle_flush();
    let first = b.poll_batch(t0()).unwrap();
    b.handle_batch_result(t0(), first.id, Ok(()));
    b.accept(t0(), state("b")).unwrap();
    let before = b.handle_flush();
    b.handle_close();
    let batch = b.poll_batch(t0()).unwrap();
    let err = StoreError::Backend("disk".into());
    b.handle_batch_result(t0(), batch.id, Err(err.clone()));
    assert!(b.close_failed());
    assert_eq!(b.take_unapplied().len(), 1);
    // The queue is empty now, but "b" was never applied.
    assert_eq!(b.flush_status(&before), Some(Err(err.clone())));
    let after = b.handle_flush();
    assert_eq!(b.flush_status(&after), Some(Err(err)));
    assert!(b.is_flushed(applied), "what was applied stays applied");
}

#[test]
fn batches_shrink_after_a_final_failure_and_grow_back_after_successes() {
    let mut b = BufferMachine::new(BufferConfig {
        max_pending: 100,
        max_retries: 0,
        ..config() // batches of 4, cooldown 5 ms
    });
    for i in 0..12 {
        b.accept(t0(), state(&format!("s{i}"))).unwrap();
    }
    b.handle_flush();
    let err = StoreError::Backend("disk".into());
    let mut now = t0();
    let mut sizes = Vec::new();
    // Two final failures, then successes only.
    for fail in [true, true, false, false, false, false, false, false] {
        let Some(batch) = b.poll_batch(now) else {
            break;
        };
        sizes.push(batch.writes.len());
        let result = if fail { Err(err.clone()) } else { Ok(()) };
        b.handle_batch_result(now, batch.id, result);
        now = now + Duration::from_secs(1); // past any cooldown
    }
    assert_eq!(sizes, vec![4, 2, 1, 2, 4, 4, 1]);
    assert!(b.is_drained());
}

#[test]
fn a_failed_batch_requeued_keeps_the_newer_of_two_stores_sharing_a_token() {
    // Found by the coalescing property test: two stores of one access token
    // (different ids, so neither supersedes in the queue) fail together; the
    // older, requeued first, must not absorb the newer.
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 0,
        ..config()
    });
    let older = session("s1", "tok", Some("r"));
    let newer = session("s1", "tok", None);
    b.accept(t0(), older).unwrap();
    b.accept(t0(), newer.clone()).unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).unwrap();
    let err = StoreError::Backend("disk".into());
    b.handle_batch_result(t0(), batch.id, Err(err));
    let again = b
        .poll_batch(t0() + Duration::from_secs(1))
        .expect("requeued writes flush after the cooldown");
    assert_eq!(
        again.writes.last(),
        Some(&newer),
        "the newer store is applied last"
    );
}

#[test]
fn a_code_taken_at_the_delegate_is_not_answered_to_a_read_that_began_before() {
    // Found by the coalescing fuzz target: a read of a code is out, a store of
    // the code is applied, then try_delete_auth_code takes it at the delegate.
    // The read must not answer the code from the retained store.
    let delegate = MemoryTokenStore::new(ManualClock::new(t0()));
    let mut b = BufferMachine::new(config());
    let Read::Ask(ticket) = b.read_auth_code(t0(), "c") else {
        panic!("nothing is buffered: the delegate is asked");
    };
    let code = AuthCodeRecord::new("c", "sid", t0() + Duration::from_secs(60), t0());
    b.accept(t0(), WriteOp::StoreAuthCode(Arc::new(code)))
        .unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).expect("flushed");
    apply_batch(&delegate, &batch, false, None).unwrap();
    b.handle_batch_result(t0(), batch.id, Ok(()));
    assert_eq!(b.try_delete_auth_code(t0(), "c"), OneTime::AskDelegate);
    assert!(run(delegate.try_delete_auth_code("c")).unwrap());
    b.handle_code_taken("c");
    let answer = run(delegate.load_auth_code("c")).unwrap();
    assert_eq!(b.resolve_auth_code(t0(), ticket, answer), None);
    // A later write of the code is answered again.
    let again = AuthCodeRecord::new("c", "sid2", t0() + Duration::from_secs(60), t0());
    b.accept(t0(), WriteOp::StoreAuthCode(Arc::new(again)))
        .unwrap();
    assert!(matches!(b.read_auth_code(t0(), "c"), Read::Known(Some(_))));
}

#[test]
fn a_taken_code_is_retained_only_while_reads_are_out() {
    let mut b = BufferMachine::new(config());
    b.handle_code_taken("c");
    let Read::Ask(ticket) = b.read_auth_code(t0(), "c") else {
        panic!("nothing is buffered: the delegate is asked");
    };
    let code = AuthCodeRecord::new("c", "sid", t0() + Duration::from_secs(60), t0());
    let answer = Some(Arc::new(code));
    assert_eq!(
        b.resolve_auth_code(t0(), ticket, answer.clone()),
        answer,
        "a code taken before the read began does not hide the delegate's answer"
    );
}

#[test]
fn a_key_rewritten_more_often_than_max_delay_still_flushes_within_max_delay() {
    // One client record re-stored every max_delay / 2: each write supersedes
    // the last, and the first acceptance time still sets the deadline.
    let mut b = BufferMachine::new(config());
    let half = config().max_delay / 2;
    let client = |i: u32| {
        let mut c = ClientRecord::new("hot-client", t0());
        c.client_name = Some(format!("rev {i}"));
        WriteOp::StoreClient(Arc::new(c))
    };
    let mut flushed_at = None;
    for i in 0..6 {
        let now = t0() + half * i;
        b.accept(now, client(i)).unwrap();
        assert!(b.poll_timeout() <= Some(t0() + config().max_delay));
        if let Some(batch) = b.poll_batch(now) {
            assert_eq!(batch.writes, vec![client(i)], "the last write wins");
            flushed_at = Some(now);
            break;
        }
    }
    assert_eq!(flushed_at, Some(t0() + config().max_delay));
}

#[test]
fn a_requeued_write_absorbed_by_a_newer_one_keeps_its_acceptance_time() {
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 0,
        ..config()
    });
    b.accept(t0(), state("a")).unwrap();
    let batch = b.poll_batch(t0() + 10 * MS).expect("due by delay");
    b.accept(t0() + 11 * MS, state("a")).unwrap();
    let outcome = b.handle_batch_result(t0() + 12 * MS, batch.id, Err(StoreError::Closed));
    assert!(matches!(outcome, BatchOutcome::Failed { .. }));
    // The newer write absorbed the failed one: due at the end of the cooldown,
    // not max_delay after the newer write.
    let cooldown_end = t0() + 12 * MS + config().retry_backoff;
    assert_eq!(b.poll_timeout(), Some(cooldown_end));
}

#[test]
fn each_durable_writer_gets_the_outcome_of_the_first_batch_that_held_its_write_once() {
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 0,
        ..config()
    });
    let a = b.accept_durable(t0(), state("a")).unwrap();
    let first = b.poll_batch(t0()).expect("durable writes are due at once");
    assert_eq!(b.take_durable_outcome(a), None, "undecided while in flight");
    let error = StoreError::Backend("injected".into());
    b.handle_batch_result(t0(), first.id, Err(error.clone()));
    assert_eq!(b.take_durable_outcome(a), Some(Err(error)));
    assert_eq!(b.take_durable_outcome(a), None, "answered once");
    // The requeued write is applied later; its writer was already answered.
    let second = b.poll_batch(t0() + 100 * MS).expect("after the cooldown");
    let c = b.accept_durable(t0() + 100 * MS, state("c")).unwrap();
    b.handle_batch_result(t0() + 100 * MS, second.id, Ok(()));
    assert_eq!(b.take_durable_outcome(a), None);
    assert_eq!(b.take_durable_outcome(c), None, "c was not in that batch");
    let third = b.poll_batch(t0() + 100 * MS).expect("c is due");
    b.handle_batch_result(t0() + 100 * MS, third.id, Ok(()));
    assert_eq!(b.take_durable_outcome(c), Some(Ok(())));
    assert_eq!(b.durable_waiting(), 0);
}

#[test]
fn a_superseded_durable_write_is_answered_by_the_batch_of_the_write_that_replaced_it() {
    let mut b = BufferMachine::new(config());
    let old = b.accept_durable(t0(), state("a")).unwrap();
    let new = b.accept_durable(t0(), state("a")).unwrap();
    let batch = b.poll_batch(t0()).expect("due");
    assert_eq!(batch.writes.len(), 1);
    b.handle_batch_result(t0(), batch.id, Ok(()));
    assert_eq!(b.take_durable_outcome(old), Some(Ok(())));
    assert_eq!(b.take_durable_outcome(new), Some(Ok(())));
}

#[test]
fn a_failed_close_answers_every_waiting_durable_writer() {
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 0,
        max_batch_size: 1,
        ..config()
    });
    let a = b.accept_durable(t0(), state("a")).unwrap();
    let c = b.accept_durable(t0(), state("c")).unwrap();
    let forgotten = b.accept_durable(t0(), state("d")).unwrap();
    b.forget_durable(forgotten);
    b.handle_close();
    assert_eq!(b.close_status(), None, "draining");
    let batch = b.poll_batch(t0()).expect("close flushes");
    let error = StoreError::Backend("down".into());
    b.handle_batch_result(t0(), batch.id, Err(error.clone()));
    assert!(b.close_failed());
    let left = StoreError::WritesNotApplied { count: 3 };
    assert_eq!(b.close_status(), Some(Err(left.clone())));
    assert_eq!(
        b.take_durable_outcome(a),
        Some(Err(error)),
        "its batch's error"
    );
    assert_eq!(
        b.take_durable_outcome(c),
        Some(Err(left)),
        "never in a batch"
    );
    assert_eq!(
        b.take_durable_outcome(forgotten),
        None,
        "its writer went away"
    );
    assert_eq!(b.durable_waiting(), 0);
    assert_eq!(b.take_unapplied().len(), 3);
}

#[test]
fn a_close_that_drains_reports_ok() {
    let mut b = BufferMachine::new(config());
    b.accept(t0(), state("a")).unwrap();
    b.handle_close();
    assert_eq!(
        b.accept(t0(), state("b")).unwrap_err().reason,
        Refusal::Closed
    );
    let batch = b.poll_batch(t0()).expect("close flushes at once");
    assert_eq!(b.close_status(), None);
    b.handle_batch_result(t0(), batch.id, Ok(()));
    assert_eq!(b.close_status(), Some(Ok(())));
    assert!(b.closing_done());
}

#[test]
fn accepted_counts_every_write_the_queue_took() {
    let mut b = BufferMachine::new(config());
    b.accept(t0(), state("a")).unwrap();
    b.accept(t0(), state("a")).unwrap();
    b.accept_internal(t0(), WriteOp::RemoveState("a".into()));
    let m = b.metrics();
    assert_eq!((m.accepted, m.coalesced), (3, 2));
}

#[test]
fn zero_sizes_in_the_config_read_as_one() {
    let b = BufferMachine::new(BufferConfig {
        max_batch_size: 0,
        max_pending: 0,
        ..config()
    });
    assert_eq!((b.config().max_batch_size, b.config().max_pending), (1, 1));
}

#[test]
fn a_one_time_call_waits_for_the_batch_in_flight_that_holds_its_record() {
    // If the buffer answered consume_state from a store in the batch in
    // flight and queued the removal, the batch would put the state in the
    // delegate before the removal: another instance sharing the delegate (or
    // this one after a crash) could take it a second time.
    let mut b = BufferMachine::new(config());
    b.accept(t0(), state("s")).unwrap();
    let code = AuthCodeRecord::new("c", "sid", t0() + Duration::from_secs(60), t0());
    b.accept(t0(), WriteOp::StoreAuthCode(Arc::new(code)))
        .unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).expect("flushed");
    assert_eq!(b.consume_state(t0(), "s"), OneTime::AwaitBatch);
    assert_eq!(b.try_delete_auth_code(t0(), "c"), OneTime::AwaitBatch);
    assert_eq!(b.held(), 2, "waiting queued nothing");
    // Another key is not held up.
    assert_eq!(b.consume_state(t0(), "other"), OneTime::AskDelegate);
    b.handle_batch_result(t0(), batch.id, Ok(()));
    // Applied: now only the delegate knows.
    assert_eq!(b.consume_state(t0(), "s"), OneTime::AskDelegate);
    assert_eq!(b.try_delete_auth_code(t0(), "c"), OneTime::AskDelegate);
}

#[test]
fn a_one_time_call_is_decided_by_the_buffer_again_once_its_batch_failed_for_good() {
    let mut b = BufferMachine::new(BufferConfig {
        max_retries: 0,
        ..config()
    });
    b.accept(t0(), state("s")).unwrap();
    b.handle_flush();
    let batch = b.poll_batch(t0()).expect("flushed");
    assert_eq!(b.consume_state(t0(), "s"), OneTime::AwaitBatch);
    b.handle_batch_result(t0(), batch.id, Err(StoreError::Backend("down".into())));
    // Requeued: the delegate never got it, so the buffer decides.
    assert!(matches!(
        b.consume_state(t0(), "s"),
        OneTime::Decided(Some(_))
    ));
    assert_eq!(b.consume_state(t0(), "s"), OneTime::Decided(None));
}

#[test]
fn prepare_next_hands_out_the_next_batch_once() {
    let mut m = BufferMachine::new(BufferConfig {
        max_batch_size: 2,
        ..config()
    });
    let now = t0();
    for k in ["a", "b", "c"] {
        m.accept(now, state(k)).unwrap();
    }
    // The front of the queue up to the batch limit, then nothing new.
    assert_eq!(m.prepare_next(), vec![state("a"), state("b")]);
    assert!(m.prepare_next().is_empty());
    let batch = m.poll_batch(now).expect("a full batch is due");
    assert_eq!(batch.writes, vec![state("a"), state("b")]);
    // While it is in flight: the write left over, then a new one.
    assert_eq!(m.prepare_next(), vec![state("c")]);
    m.accept(now, state("d")).unwrap();
    assert_eq!(m.prepare_next(), vec![state("d")]);
    // A newer write of a prepared key replaces it and is handed out again.
    m.accept(now, state("c")).unwrap();
    assert_eq!(m.prepare_next(), vec![state("c")]);
    m.accept(now, state("e")).unwrap();
    assert!(m.prepare_next().is_empty(), "beyond the batch limit");
    m.handle_batch_result(now, batch.id, Ok(()));
    let next = m.poll_batch(now).expect("due");
    assert_eq!(next.writes, vec![state("d"), state("c")]);
    // Now inside the limit.
    assert_eq!(m.prepare_next(), vec![state("e")]);
    assert!(m.prepare_next().is_empty());
}

#[test]
fn only_a_read_that_queues_a_write_asks_for_the_worker() {
    let mut b = BufferMachine::new(config());
    assert!(!b.take_queued_internally());
    b.accept(t0(), session("sid", "tok", None)).unwrap();
    // A write accepted from a caller is the caller's to announce.
    assert!(!b.take_queued_internally());
    let key = SessionKey::Access(crate::TokenHash::of("tok"));
    assert!(matches!(b.read_session(t0(), &key), Read::Known(Some(_))));
    assert!(!b.take_queued_internally(), "a live read queues nothing");
    let Read::Ask(ticket) = b.read_session(t0(), &SessionKey::Id("other".into())) else {
        panic!("nothing buffered for this key: the delegate is asked");
    };
    assert_eq!(b.resolve_session(t0(), ticket, None), None);
    assert!(!b.take_queued_internally(), "nor does a delegate read");
    // Past the session's expiry the read deletes it, as the delegate would.
    let late = t0() + Duration::from_secs(601);
    assert!(matches!(b.read_session(late, &key), Read::Known(None)));
    assert!(b.take_queued_internally());
    assert!(!b.take_queued_internally(), "the flag is taken once");
    let code = AuthCodeRecord::new("c", "sid", t0() + Duration::from_secs(60), t0());
    b.accept(t0(), WriteOp::StoreAuthCode(Arc::new(code)))
        .unwrap();
    assert!(matches!(b.read_auth_code(late, "c"), Read::Known(None)));
    assert!(
        b.take_queued_internally(),
        "an expired code is deleted on read"
    );
}
