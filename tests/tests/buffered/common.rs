//! What every buffered test uses: the adapter's runtime, bounded waits, the
//! scripts of writes and their one-by-one reference.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::runtime::{Runtime, SmolRuntime, TokioRuntime};
use tokenstore::{Ack, BufferedTokenStore};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{
    Clock, Contents, ManualClock, MemoryTokenStore, Secret, StoreError, Timestamp, TokenStore,
};
use tokenstore_tests::sample::{self, HOUR, MINUTE};

/// The longest any single wait in these tests may take.
pub(crate) const BOUND: Duration = Duration::from_secs(5);

/// The longest a whole test may take before it is reported as hung.
pub(crate) const WATCHDOG: Duration = Duration::from_secs(25);

/// The adapter runtime of the test that is running: tokio's inside a tokio
/// runtime, smol's otherwise.
pub(crate) fn adapter_runtime() -> Arc<dyn Runtime> {
    match TokioRuntime::try_current() {
        Some(tokio) => Arc::new(tokio),
        None => Arc::new(SmolRuntime),
    }
}

/// Sleeps on a real timer (async-io's, which runs beside any executor).
pub(crate) async fn sleep(d: Duration) {
    smol::Timer::after(d).await;
}

/// `future`'s output, or `None` if it took longer than `limit`.
pub(crate) async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(future.await) }, async {
        sleep(limit).await;
        None
    })
    .await
}

/// `future`'s output; panics naming `what` if it took longer than [`BOUND`].
#[track_caller]
pub(crate) fn bounded<T>(what: &str, future: impl Future<Output = T>) -> impl Future<Output = T> {
    let what = what.to_owned();
    async move {
        match within(BOUND, future).await {
            Some(out) => out,
            None => panic!("timed out after {BOUND:?} waiting for {what}"),
        }
    }
}

/// Polls `done` every millisecond until it holds; panics naming `what` after
/// [`BOUND`].
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {BOUND:?} waiting for {what}"
        );
        sleep(Duration::from_millis(1)).await;
    }
}

/// A configuration in which nothing but `flush()` and `close()` starts a
/// flush: huge batches, an hour of delay, room for every write.
pub(crate) fn quiet_config() -> BufferConfig {
    BufferConfig {
        max_batch_size: 100_000,
        max_delay: HOUR,
        max_pending: 100_000,
        max_retries: 3,
        retry_backoff: Duration::from_millis(10),
    }
}

/// A buffer over `inner` on the current runtime.
pub(crate) fn buffer<S: TokenStore + 'static>(
    inner: S,
    config: BufferConfig,
    ack: Ack,
    clock: impl Clock + 'static,
) -> BufferedTokenStore<S> {
    BufferedTokenStore::with_clock(inner, config, ack, adapter_runtime(), clock)
}

/// Issues one write through any store's single-operation API.
pub(crate) async fn issue<S: TokenStore + ?Sized>(
    store: &S,
    op: WriteOp,
) -> Result<(), StoreError> {
    match op {
        WriteOp::StoreState(r) => store.store_state(r).await,
        WriteOp::RemoveState(k) => store.consume_state(&k).await.map(drop),
        WriteOp::StoreAuthCode(r) => store.store_auth_code(r).await,
        WriteOp::DeleteAuthCode(k) => store.delete_auth_code(&k).await,
        WriteOp::StoreSession(s) => store.store_session(s).await,
        WriteOp::DeleteSessionByToken(t) => store.delete_session_by_token(t.expose()).await,
        WriteOp::DeleteSessionById(id) => store.delete_session_by_id(&id).await,
        WriteOp::StoreClient(r) => store.store_client(r).await,
        WriteOp::DeleteClient(k) => store.delete_client(&k).await,
    }
}

/// Issues every write, in order, failing the test on any error.
pub(crate) async fn issue_all<S: TokenStore + ?Sized>(store: &S, writes: &[WriteOp]) {
    for (i, op) in writes.iter().enumerate() {
        if let Err(e) = issue(store, op.clone()).await {
            panic!("write {i} ({op:?}) failed: {e}");
        }
    }
}

/// What the reference model holds after `writes`, applied one by one at
/// `now`.
pub(crate) async fn reference(now: Timestamp, writes: &[WriteOp]) -> Contents {
    let model = MemoryTokenStore::new(ManualClock::new(now));
    issue_all(&model, writes).await;
    model.contents()
}

/// A mixed script of writes, keys prefixed with `p`: sessions stored,
/// one rotated (same id, new tokens), one deleted by token, one by id; and,
/// unless `sessions_only`, states, codes and clients stored, replaced and
/// deleted.
pub(crate) fn script(p: &str, now: Timestamp, sessions_only: bool) -> Vec<WriteOp> {
    let session = |i: usize, generation: usize| {
        WriteOp::StoreSession(Arc::new(sample::live_session(
            &format!("{p}-sid-{i}"),
            &format!("{p}-access-{i}-{generation}"),
            Some(&format!("{p}-refresh-{i}-{generation}")),
            now,
        )))
    };
    let mut w: Vec<WriteOp> = (0..6).map(|i| session(i, 0)).collect();
    w.push(session(1, 1));
    w.push(WriteOp::DeleteSessionByToken(Secret::new(format!(
        "{p}-access-2-0"
    ))));
    w.push(WriteOp::DeleteSessionById(format!("{p}-sid-3")));
    w.push(session(6, 0));
    if sessions_only {
        return w;
    }
    let state =
        |k: &str| WriteOp::StoreState(Arc::new(sample::full_state(&format!("{p}-state-{k}"), now)));
    let code = |k: &str| {
        WriteOp::StoreAuthCode(Arc::new(sample::code(
            &format!("{p}-code-{k}"),
            &format!("{p}-sid-0"),
            now + 5 * MINUTE,
            now,
        )))
    };
    let client = |k: &str, name: &str| {
        let mut c = sample::full_client(&format!("{p}-client-{k}"), now);
        c.client_name = Some(name.to_owned());
        WriteOp::StoreClient(Arc::new(c))
    };
    w.extend([
        state("a"),
        state("b"),
        code("a"),
        code("b"),
        WriteOp::DeleteAuthCode(format!("{p}-code-a")),
        client("a", "first"),
        client("b", "first"),
        client("a", "second"),
        WriteOp::DeleteClient(format!("{p}-client-b")),
        session(7, 0),
    ]);
    w
}

/// How many records `contents` holds, all kinds together.
pub(crate) fn records(contents: &Contents) -> usize {
    contents.states.len()
        + contents.auth_codes.len()
        + contents.sessions.len()
        + contents.clients.len()
}
