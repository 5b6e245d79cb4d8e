//! Delegate faults: retries up to `max_retries`, errors surfaced to `flush()`,
//! to durable writers and to `close()`, nothing lost, recovery once the fault
//! clears. Each scenario runs on the three paths a flush can take: bulk calls
//! (memory), single calls (memory without bulk) and one atomic batch (SQLite).
//!
//! The buffer's clock is manual: a retry happens only when the test moves the
//! clock past its backoff, so the attempts are counted exactly.

use crate::common::{BOUND, buffer, issue, issue_all, quiet_config, reference, script, sleep};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokenstore::buffer::BufferConfig;
use tokenstore::{Ack, BufferedTokenStore, TokenStore};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{Contents, ManualClock, MemoryTokenStore, StoreError};
use tokenstore_sqlite::SqliteTokenStore;
use tokenstore_tests::compare::assert_contents_eq;
use tokenstore_tests::probe::{Faults, FlakyStore, WithoutBulk, injected_fault};
use tokenstore_tests::sample;
use tokenstore_tests::{Runtime, T0, TEST_KEY};

/// A backend under the [`FlakyStore`], and the path its flushes take.
pub(crate) trait Backend: TokenStore + Sized + 'static {
    type Guard: Send + Sync + 'static;
    /// Whether scripts hold session writes only, so that a batch's first step
    /// is on this backend's path (plans run non-session writes first).
    const SESSIONS_ONLY: bool;
    async fn open(clock: ManualClock) -> (Self, Self::Guard);
    /// Everything the backend holds (also after it was closed).
    async fn held(&self, guard: &Self::Guard) -> Contents;
    /// The refusals on this backend's path; panics if another path saw any.
    fn on_path(faults: Faults) -> u64;
}

/// Bulk calls for sessions: the memory store.
impl Backend for MemoryTokenStore {
    type Guard = ();
    const SESSIONS_ONLY: bool = true;
    async fn open(clock: ManualClock) -> (Self, ()) {
        (Self::new(clock), ())
    }
    async fn held(&self, _: &()) -> Contents {
        self.contents()
    }
    fn on_path(faults: Faults) -> u64 {
        assert_eq!((faults.single, faults.batch), (0, 0), "{faults:?}");
        faults.bulk
    }
}

/// Single calls: the memory store without its bulk capability.
impl Backend for WithoutBulk<MemoryTokenStore> {
    type Guard = ();
    const SESSIONS_ONLY: bool = false;
    async fn open(clock: ManualClock) -> (Self, ()) {
        (Self::new(MemoryTokenStore::new(clock)), ())
    }
    async fn held(&self, _: &()) -> Contents {
        self.inner().contents()
    }
    fn on_path(faults: Faults) -> u64 {
        assert_eq!((faults.bulk, faults.batch), (0, 0), "{faults:?}");
        faults.single
    }
}

/// One atomic batch: SQLite.
impl Backend for SqliteTokenStore {
    type Guard = (TempDir, ManualClock);
    const SESSIONS_ONLY: bool = false;
    async fn open(clock: ManualClock) -> (Self, Self::Guard) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Self::builder(dir.path().join("tokens.sqlite"))
            .encryption_key(TEST_KEY)
            .clock(clock.clone())
            .open()
            .await
            .expect("open the SQLite store");
        (store, (dir, clock))
    }
    async fn held(&self, (dir, clock): &Self::Guard) -> Contents {
        // A fresh connection: works after this one was closed.
        let other = Self::builder(dir.path().join("tokens.sqlite"))
            .encryption_key(TEST_KEY)
            .clock(clock.clone())
            .open()
            .await
            .expect("reopen the SQLite store");
        let held = other.contents().await.expect("contents");
        other.close().await.expect("close");
        held
    }
    fn on_path(faults: Faults) -> u64 {
        assert_eq!((faults.single, faults.bulk), (0, 0), "{faults:?}");
        faults.batch
    }
}

const MAX_RETRIES: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(10);

fn config() -> BufferConfig {
    BufferConfig {
        max_retries: MAX_RETRIES,
        retry_backoff: BACKOFF,
        ..quiet_config()
    }
}

/// The pause after a batch failed for good (`backoff * 2^max_retries`).
fn cooldown() -> Duration {
    BACKOFF * (1 << MAX_RETRIES)
}

struct Rig<B: Backend> {
    clock: ManualClock,
    flaky: Arc<FlakyStore<B>>,
    store: Arc<BufferedTokenStore<Arc<FlakyStore<B>>>>,
    guard: B::Guard,
}

impl<B: Backend> Rig<B> {
    async fn new(ack: Ack) -> Self {
        let clock = ManualClock::new(T0);
        let (backend, guard) = B::open(clock.clone()).await;
        let flaky = Arc::new(FlakyStore::new(backend));
        let store = Arc::new(buffer(flaky.clone(), config(), ack, clock.clone()));
        Self {
            clock,
            flaky,
            store,
            guard,
        }
    }

    async fn held(&self) -> Contents {
        self.flaky.inner().held(&self.guard).await
    }

    fn refusals(&self) -> u64 {
        B::on_path(self.flaky.faults())
    }

    /// Lets retries happen until the delegate refused `failures` attempts in
    /// all, or `done` holds: after the k-th refusal, the clock moves by the
    /// k-th backoff (again, each ms, until the next attempt shows), and never
    /// after the `failures`-th.
    async fn drive(&self, failures: u64, done: impl Fn() -> bool) {
        let deadline = Instant::now() + BOUND;
        let mut k = self.flaky.faults().total();
        while k < failures && !done() {
            assert!(Instant::now() < deadline, "no attempt after {k} refusals");
            if k >= 1 {
                let exp = u32::try_from(k - 1).expect("few attempts");
                self.clock.advance(BACKOFF * (1 << exp));
            }
            sleep(Duration::from_millis(1)).await;
            k = self.flaky.faults().total();
        }
    }
}

fn script_for<B: Backend>(p: &str) -> Vec<WriteOp> {
    script(p, T0, B::SESSIONS_ONLY)
}

/// The delegate refuses `max_retries` attempts; the last retry applies the
/// batch: `flush()` succeeds and nothing is lost.
pub(crate) async fn transient<R: Runtime, B: Backend>() {
    let rig = Rig::<B>::new(Ack::Queued).await;
    let writes = script_for::<B>("transient");
    issue_all(&*rig.store, &writes).await;
    rig.flaky.fail_next(u64::from(MAX_RETRIES));
    let done = Arc::new(AtomicBool::new(false));
    let flush = {
        let (store, done) = (rig.store.clone(), done.clone());
        R::spawn(async move {
            let result = store.flush().await;
            done.store(true, Ordering::SeqCst);
            result
        })
    };
    rig.drive(u64::from(MAX_RETRIES) + 1, || done.load(Ordering::SeqCst))
        .await;
    flush.await.expect("the last retry succeeds");
    assert_eq!(rig.refusals(), u64::from(MAX_RETRIES));
    let m = rig.store.metrics();
    assert_eq!(m.failed_attempts, u64::from(MAX_RETRIES), "{m:?}");
    assert_eq!(m.failed_batches, 0, "{m:?}");
    assert_eq!(m.applied_batches, 1, "{m:?}");
    assert_eq!(m.batches, u64::from(MAX_RETRIES) + 1, "{m:?}");
    assert_eq!(rig.store.pending(), 0);
    assert_contents_eq(&rig.held().await, &reference(T0, &writes).await);
    rig.store.close().await.expect("close");
}

/// The delegate refuses every attempt: `max_retries` retries, then `flush()`
/// returns the delegate's error, the writes stay held and nothing more is
/// tried during the cooldown; once the fault clears, `flush()` applies them
/// all.
pub(crate) async fn permanent<R: Runtime, B: Backend>() {
    let rig = Rig::<B>::new(Ack::Queued).await;
    let before = script_for::<B>("before");
    issue_all(&*rig.store, &before).await;
    rig.store.flush().await.expect("a healthy flush");
    let writes = script_for::<B>("failing");
    issue_all(&*rig.store, &writes).await;
    let held_writes = rig.store.pending();
    rig.flaky.set_failing(true);

    let flush = {
        let store = rig.store.clone();
        R::spawn(async move { store.flush().await })
    };
    let attempts = u64::from(MAX_RETRIES) + 1;
    rig.drive(attempts, || false).await;
    let error = crate::common::bounded("flush to fail", flush).await;
    assert_eq!(error, Err(injected_fault()));
    assert_eq!(
        rig.refusals(),
        attempts,
        "one attempt and max_retries retries"
    );
    let m = rig.store.metrics();
    assert_eq!(
        (m.failed_attempts, m.failed_batches),
        (attempts, 1),
        "{m:?}"
    );
    // Requeued, not dropped; and no new attempt while the clock stays.
    assert_eq!(rig.store.pending(), held_writes);
    sleep(Duration::from_millis(30)).await;
    assert_eq!(rig.refusals(), attempts, "an attempt during the cooldown");
    assert_contents_eq(&rig.held().await, &reference(T0, &before).await);

    rig.flaky.set_failing(false);
    rig.clock.advance(cooldown());
    crate::common::bounded("the recovery flush", rig.store.flush())
        .await
        .expect("the fault cleared");
    assert_eq!(rig.store.pending(), 0);
    let all: Vec<WriteOp> = before.iter().chain(&writes).cloned().collect();
    assert_contents_eq(&rig.held().await, &reference(T0, &all).await);
    rig.store.close().await.expect("close");
}

/// Durable writers of batches that fail for good each get the delegate's
/// error, after every retry: a lone writer's batch is tried exactly
/// `max_retries + 1` times; concurrent writers (a durable write is due at once,
/// so they may spread over several batches) all get the error too. Their
/// writes stay held and land once the fault clears.
pub(crate) async fn durable_writers_get_the_error<R: Runtime, B: Backend>() {
    const WRITERS: usize = 8;
    let rig = Rig::<B>::new(Ack::Durable).await;
    rig.flaky.set_failing(true);
    let writes: Vec<WriteOp> = (0..=WRITERS)
        .map(|i| {
            WriteOp::StoreSession(Arc::new(sample::live_session(
                &format!("dw-sid-{i}"),
                &format!("dw-access-{i}"),
                None,
                T0,
            )))
        })
        .collect();

    // A lone durable writer: due at once, retried, then told.
    let lone = {
        let (store, op) = (rig.store.clone(), writes[0].clone());
        R::spawn(async move { issue(&*store, op).await })
    };
    let attempts = u64::from(MAX_RETRIES) + 1;
    rig.drive(attempts, || false).await;
    let outcome = crate::common::bounded("the lone durable writer", lone).await;
    assert_eq!(outcome, Err(injected_fault()));
    assert_eq!(rig.refusals(), attempts);
    let m = rig.store.metrics();
    assert_eq!(
        (m.failed_attempts, m.failed_batches),
        (attempts, 1),
        "{m:?}"
    );
    assert_eq!(rig.store.pending(), 1, "the failed write is held");

    // Concurrent durable writers: each gets the error.
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = writes[1..]
        .iter()
        .cloned()
        .map(|op| {
            let (store, done) = (rig.store.clone(), done.clone());
            R::spawn(async move {
                let outcome = issue(&*store, op).await;
                done.fetch_add(1, Ordering::SeqCst);
                outcome
            })
        })
        .collect();
    let deadline = Instant::now() + BOUND;
    while done.load(Ordering::SeqCst) < WRITERS {
        assert!(Instant::now() < deadline, "durable writers never answered");
        // Past any backoff and the cooldown.
        rig.clock.advance(cooldown());
        sleep(Duration::from_millis(1)).await;
    }
    for (i, writer) in writers.into_iter().enumerate() {
        assert_eq!(writer.await, Err(injected_fault()), "writer {i}");
    }
    let m = rig.store.metrics();
    assert!(m.failed_batches >= 2, "{m:?}");
    assert_eq!(m.applied_batches, 0, "{m:?}");
    assert_eq!(crate::common::records(&rig.held().await), 0);

    rig.flaky.set_failing(false);
    rig.clock.advance(cooldown());
    crate::common::bounded("the recovery flush", rig.store.flush())
        .await
        .expect("the fault cleared");
    assert_eq!(rig.store.pending(), 0);
    assert_eq!(rig.refusals(), rig.store.metrics().failed_attempts);
    assert_contents_eq(&rig.held().await, &reference(T0, &writes).await);
    rig.store.close().await.expect("close");
}

/// Which writes of `script(p, .., sessions_only)` the buffer coalesces away
/// (a later write to the same key replaces them): the first store of client
/// `a`, the store of client `b` and the store of code `a` (both deleted later).
fn coalesced_away(p: &str, op: &WriteOp) -> bool {
    match op {
        WriteOp::StoreClient(c) => {
            c.client_id == format!("{p}-client-b")
                || (c.client_id == format!("{p}-client-a")
                    && c.client_name.as_deref() == Some("first"))
        }
        WriteOp::StoreAuthCode(c) => c.code == format!("{p}-code-a"),
        _ => false,
    }
}

/// `close()` over a delegate that always fails returns
/// `WritesNotApplied { count }`, and `take_unapplied()` returns exactly the
/// accepted writes that did not reach the delegate (coalesced, in order);
/// those plus what the delegate holds equal every write one by one.
pub(crate) async fn close_keeps_unapplied<R: Runtime, B: Backend>() {
    let rig = Rig::<B>::new(Ack::Queued).await;
    let applied = script_for::<B>("applied");
    issue_all(&*rig.store, &applied).await;
    rig.store.flush().await.expect("a healthy flush");

    let failing = script_for::<B>("unapplied");
    issue_all(&*rig.store, &failing).await;
    rig.flaky.set_failing(true);
    let close = {
        let store = rig.store.clone();
        R::spawn(async move { store.close().await })
    };
    let attempts = u64::from(MAX_RETRIES) + 1;
    rig.drive(attempts, || false).await;
    let closed = crate::common::bounded("close to fail", close).await;
    let expected: Vec<WriteOp> = failing
        .iter()
        .filter(|w| !coalesced_away("unapplied", w))
        .cloned()
        .collect();
    assert_eq!(
        closed,
        Err(StoreError::WritesNotApplied {
            count: expected.len()
        })
    );
    assert_eq!(rig.refusals(), attempts);
    let unapplied = rig.store.take_unapplied();
    assert_eq!(unapplied, expected);
    assert!(rig.store.take_unapplied().is_empty(), "taken once");
    assert_eq!(rig.store.pending(), 0);

    // The store is closed to writes, open to reads of what it holds.
    let late = sample::client("late", T0);
    assert_eq!(
        rig.store.store_client(Arc::new(late)).await,
        Err(StoreError::Closed)
    );

    // Nothing lost: the delegate holds the applied writes, and the unapplied
    // ones complete them.
    let held = rig.held().await;
    assert_contents_eq(&held, &reference(T0, &applied).await);
    let recovered = MemoryTokenStore::new(ManualClock::new(T0));
    issue_all(&recovered, &applied).await;
    issue_all(&recovered, &unapplied).await;
    let all: Vec<WriteOp> = applied.iter().chain(&failing).cloned().collect();
    assert_contents_eq(&recovered.contents(), &reference(T0, &all).await);
}

/// Writes that arrive while a batch is failing: a newer write to a key of
/// the failing batch replaces it when the batch goes back to the queue (the
/// old value never lands after the new one), a session rotation does not
/// replace the old session's store but still ends with only the new session;
/// after recovery the delegate equals the reference model.
pub(crate) async fn superseded_while_failing<R: Runtime, B: Backend>() {
    let rig = Rig::<B>::new(Ack::Queued).await;
    let client = |name: &str| {
        let mut c = sample::full_client("sw-client", T0);
        c.client_name = Some(name.to_owned());
        WriteOp::StoreClient(Arc::new(c))
    };
    let session = |generation: u32| {
        WriteOp::StoreSession(Arc::new(sample::live_session(
            "sw-sid",
            &format!("sw-access-{generation}"),
            Some(&format!("sw-refresh-{generation}")),
            T0,
        )))
    };
    let first = vec![client("old"), session(1)];
    let second = vec![client("new"), session(2)];
    rig.flaky.set_failing(true);
    issue_all(&*rig.store, &first).await;
    let flush = {
        let store = rig.store.clone();
        R::spawn(async move { store.flush().await })
    };
    // The batch is in flight (refused once) when the newer writes arrive.
    rig.drive(1, || false).await;
    issue_all(&*rig.store, &second).await;
    assert_eq!(rig.store.pending(), 4, "in flight and queued");
    let attempts = u64::from(MAX_RETRIES) + 1;
    rig.drive(attempts, || false).await;
    assert_eq!(
        crate::common::bounded("flush to fail", flush).await,
        Err(injected_fault())
    );
    assert_eq!(rig.flaky.faults().total(), attempts);
    // The old client went away; the old session store stays (a rotation
    // does not supersede it).
    assert_eq!(rig.store.pending(), 3);
    assert_eq!(rig.store.metrics().coalesced, 1);

    rig.flaky.set_failing(false);
    rig.clock.advance(cooldown());
    crate::common::bounded("the recovery flush", rig.store.flush())
        .await
        .expect("the fault cleared");
    let all: Vec<WriteOp> = first.iter().chain(&second).cloned().collect();
    let held = rig.held().await;
    assert_contents_eq(&held, &reference(T0, &all).await);
    assert_eq!(held.clients[0].client_name.as_deref(), Some("new"));
    assert_eq!(held.sessions.len(), 1);
    rig.store.close().await.expect("close");
}

type Bulk = MemoryTokenStore;
type Single = WithoutBulk<MemoryTokenStore>;
type Batch = SqliteTokenStore;

macro_rules! per_path {
    ($($scenario:ident => $bulk:ident, $single:ident, $batch:ident;)*) => {$(
        pub(crate) async fn $bulk<R: Runtime>() {
            $scenario::<R, Bulk>().await
        }
        pub(crate) async fn $single<R: Runtime>() {
            $scenario::<R, Single>().await
        }
        pub(crate) async fn $batch<R: Runtime>() {
            $scenario::<R, Batch>().await
        }
    )*};
}

per_path! {
    transient => transient_bulk, transient_single, transient_batch;
    permanent => permanent_bulk, permanent_single, permanent_batch;
    durable_writers_get_the_error => durable_error_bulk, durable_error_single, durable_error_batch;
    close_keeps_unapplied => close_unapplied_bulk, close_unapplied_single, close_unapplied_batch;
    superseded_while_failing => superseded_bulk, superseded_single, superseded_batch;
}

/// Regression: a `flush()` asked for during the cooldown after a failed batch
/// waited for `max_delay` (10 s here) instead of the cooldown (200 ms).
pub(crate) async fn flush_during_cooldown_waits_for_the_cooldown_only<R: Runtime>() {
    use tokenstore_core::SystemClock;
    let delegate = Arc::new(FlakyStore::new(MemoryTokenStore::new(SystemClock)));
    let config = BufferConfig {
        max_batch_size: 1000,
        max_delay: Duration::from_secs(10),
        max_pending: 1000,
        max_retries: 0,
        retry_backoff: Duration::from_millis(200),
    };
    let store = buffer(delegate.clone(), config, Ack::Queued, SystemClock);
    let now = tokenstore_core::Clock::now(&SystemClock);
    store
        .store_client(Arc::new(sample::client("c", now)))
        .await
        .unwrap();
    delegate.fail_next(1);
    assert_eq!(store.flush().await, Err(injected_fault()));
    let started = Instant::now();
    store.flush().await.expect("second flush");
    let took = started.elapsed();
    println!("second flush took {took:?} (cooldown 200 ms, max_delay 10 s)");
    assert!(took < Duration::from_secs(2), "second flush took {took:?}");
    store.close().await.unwrap();
}
