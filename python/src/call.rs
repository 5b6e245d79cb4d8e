//! Rust futures as Python awaitables.
//!
//! Every call is polled once at once, on the calling thread, with the GIL
//! released and inside the runtime's context: a cache hit, a queued buffered
//! write or a refused input is answered in that poll, and the result goes back
//! as a plain value, with no thread hop (the package's `async def` wrappers
//! return it). A call that is still pending (it sent work to a backend's
//! thread or socket) is handed to `pyo3-async-runtimes`, which runs it on its
//! tokio runtime and completes an `asyncio.Future` on the caller's loop
//! through `call_soon_threadsafe`; the wrapper awaits that. So the event loop
//! never waits on store I/O, and the GIL is never held while Rust works.

use crate::errors::to_py;
use pyo3::prelude::*;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use tokenstore::StoreError;

/// The runtime calls run on (pyo3-async-runtimes' multi-threaded tokio).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `fut`: its converted result now when the first poll finishes it,
/// else an `asyncio.Future` that completes on the running loop.
pub(crate) fn run<T, F, C>(py: Python<'_>, fut: F, out: C) -> PyResult<Py<PyAny>>
where
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let mut fut = Box::pin(fut);
    let first = py.detach(|| {
        let _context = runtime().enter();
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    });
    match first {
        Poll::Ready(result) => match result {
            Ok(value) => out(py, value),
            Err(e) => Err(to_py(py, e)),
        },
        Poll::Pending => {
            let awaitable = pyo3_async_runtimes::tokio::future_into_py(py, async move {
                let result = fut.await;
                Python::attach(|py| match result {
                    Ok(value) => out(py, value),
                    Err(e) => Err(to_py(py, e)),
                })
            })?;
            Ok(awaitable.unbind())
        }
    }
}

/// `None`, for calls that return nothing.
pub(crate) fn unit(py: Python<'_>, (): ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}
