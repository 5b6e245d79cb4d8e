//! The async runtimes the suites run on: tokio and smol.
//!
//! A [`Runtime`] drives one test body to completion ([`Runtime::block_on`]) and
//! runs spawned futures on worker threads ([`Runtime::spawn`]), so concurrency
//! tests get callers that truly run in parallel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};
use std::thread;

/// A spawned future; await it for its output (a panic in the task is re-raised).
pub struct Task<T>(Pin<Box<dyn Future<Output = T> + Send>>);

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.0.as_mut().poll(cx)
    }
}

/// An async runtime, as the suites need it.
pub trait Runtime: 'static {
    /// Runs `future` to completion on the current thread, with the runtime
    /// available to [`Runtime::spawn`] calls made inside it.
    fn block_on<F: Future>(future: F) -> F::Output;

    /// Runs `future` on the runtime's worker threads.
    ///
    /// Call only from inside [`Runtime::block_on`].
    fn spawn<F>(future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
}

/// How many worker threads each runtime uses.
pub const WORKER_THREADS: usize = 2;

/// tokio's multi-threaded runtime with [`WORKER_THREADS`] workers, one per test.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

impl Runtime for Tokio {
    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .enable_time()
            .build()
            .expect("build a tokio runtime")
            .block_on(future)
    }

    fn spawn<F>(future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::runtime::Handle::current().spawn(future);
        Task(Box::pin(async move {
            match handle.await {
                Ok(output) => output,
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => panic!("spawned task failed: {e}"),
                },
            }
        }))
    }
}

/// smol: `block_on` on the test thread, spawned tasks on a shared executor with
/// [`WORKER_THREADS`] threads of its own.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

/// The executor behind [`Smol::spawn`]; its worker threads start on first use.
fn smol_executor() -> &'static smol::Executor<'static> {
    static EXECUTOR: smol::Executor<'static> = smol::Executor::new();
    static WORKERS: Once = Once::new();
    WORKERS.call_once(|| {
        for i in 0..WORKER_THREADS {
            thread::Builder::new()
                .name(format!("smol-worker-{i}"))
                .spawn(|| smol::block_on(EXECUTOR.run(smol::future::pending::<()>())))
                .expect("spawn a smol worker thread");
        }
    });
    &EXECUTOR
}

impl Runtime for Smol {
    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }

    fn spawn<F>(future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Task(Box::pin(smol_executor().spawn(future)))
    }
}
