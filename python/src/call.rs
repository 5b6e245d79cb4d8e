//! Rust futures as Python awaitables, completed on the caller's event loop.
//!
//! Every call is polled once at once, on the calling thread, with the GIL
//! released and inside the runtime's context: a cache hit, a queued buffered
//! write or a refused input is answered in that poll, and the result goes back
//! as a plain value with no thread hop (the package's `async def` wrappers
//! return it).
//!
//! A call still pending after that poll has sent work to a backend (the SQLite
//! connection thread, a PostgreSQL socket driven by the tokio runtime). It
//! gets an `asyncio.Future` of the running loop and a waker that, when the
//! backend answers, queues the call on that loop's [`Channel`] and writes one
//! byte to a socket the loop watches (`loop.add_reader`). The loop's reader
//! callback ([`Drain`]) polls the ready calls (GIL released), converts the
//! results and completes their futures, all on the loop's own thread. So the
//! answer costs two thread wake-ups (to the backend and back), the tokio
//! threads never take the GIL, and completions that arrive together are
//! delivered in one callback (at most [`MAX_PER_DRAIN`] per turn of the loop, so
//! a burst of answers never holds the loop for long). The loop never waits on
//! store I/O.
//!
//! We measured `pyo3-async-runtimes`' `future_into_py` first: it spawns the
//! future on tokio, then a blocking task that takes the GIL and calls
//! `call_soon_threadsafe`, four to five wake-ups per call; a bare SQLite load
//! took about 300 µs that way on this machine, no faster than mxcp's thread
//! pool (see python/README.md for the numbers with this design).
//!
//! A cancelled `asyncio.Future` is left alone: the store call still runs to
//! its end (as a call handed to mxcp's executor does), and its result is
//! dropped.

use crate::errors::to_py;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::cell::RefCell;
use std::future::Future;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use tokenstore::StoreError;

/// The runtime the backends' tasks run on: tokio, multi-threaded, beside
/// asyncio (never inside it).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("tokenstore")
            .enable_all()
            .build()
            .expect("the tokio runtime could not start")
    })
}

/// A finished call's result, converted to Python on the loop's thread.
type Output = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;
type Call = Pin<Box<dyn Future<Output = Output> + Send>>;

/// Runs `fut`: its converted result now when the first poll finishes it,
/// else an `asyncio.Future` of the running loop that completes with it.
pub(crate) fn run<T, F, C>(py: Python<'_>, fut: F, out: C) -> PyResult<Py<PyAny>>
where
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let mut call: Call = Box::pin(async move {
        let result = fut.await;
        Box::new(move |py: Python<'_>| match result {
            Ok(value) => out(py, value),
            Err(e) => Err(to_py(py, e)),
        }) as Output
    });
    if let Poll::Ready(output) = poll(py, &mut call, Waker::noop()) {
        return output(py);
    }
    // Pending: from here on the loop's channel is woken. The second poll
    // hands the backend the real waker (an answer that came in between is
    // seen by it).
    let channel = Channel::of_running_loop(py)?;
    let future = channel
        .event_loop
        .call_method0(py, pyo3::intern!(py, "create_future"))?;
    let task = Arc::new(Task {
        call: Mutex::new(None),
        future: future.clone_ref(py),
        channel,
    });
    let waker = Waker::from(Arc::clone(&task));
    match poll(py, &mut call, &waker) {
        Poll::Ready(output) => output(py),
        Poll::Pending => {
            *lock(&task.call) = Some(call);
            Ok(future)
        }
    }
}

fn poll(py: Python<'_>, call: &mut Call, waker: &Waker) -> Poll<Output> {
    py.detach(|| {
        let _context = runtime().enter();
        call.as_mut().poll(&mut Context::from_waker(waker))
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pending call and the future it completes.
struct Task {
    /// `None` once finished (a late wake-up finds nothing to do).
    call: Mutex<Option<Call>>,
    future: Py<PyAny>,
    channel: Arc<Channel>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        let channel = Arc::clone(&self.channel);
        channel.push(self);
    }
}

/// The ready calls of one event loop, and the socket pair that tells the
/// loop there are some.
struct Channel {
    ready: Mutex<Vec<Arc<Task>>>,
    signal: UnixStream,
    watched: UnixStream,
    event_loop: Py<PyAny>,
}

thread_local! {
    /// The channel of the loop last seen running on this thread.
    static CURRENT: RefCell<Option<Arc<Channel>>> = const { RefCell::new(None) };
}

impl Channel {
    /// The running loop's channel, made and watched on first use.
    fn of_running_loop(py: Python<'_>) -> PyResult<Arc<Self>> {
        static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let get = GET_RUNNING_LOOP.get_or_try_init(py, || {
            py.import("asyncio")?
                .getattr("get_running_loop")
                .map(Bound::unbind)
        })?;
        let event_loop = get.call0(py)?;
        if let Some(channel) = CURRENT.with(|c| c.borrow().clone())
            && channel.event_loop.is(&event_loop)
        {
            return Ok(channel);
        }
        let (signal, watched) = UnixStream::pair()?;
        signal.set_nonblocking(true)?;
        watched.set_nonblocking(true)?;
        let channel = Arc::new(Self {
            ready: Mutex::new(Vec::new()),
            signal,
            watched,
            event_loop,
        });
        let drain = Py::new(py, Drain(Arc::clone(&channel)))?;
        channel.event_loop.call_method1(
            py,
            pyo3::intern!(py, "add_reader"),
            (channel.watched.as_raw_fd(), drain),
        )?;
        CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(&channel)));
        Ok(channel)
    }

    /// Queues a woken call; the first in an empty queue signals the loop.
    fn push(&self, task: Arc<Task>) {
        let first = {
            let mut ready = lock(&self.ready);
            ready.push(task);
            ready.len() == 1
        };
        if first {
            // A full socket means unread signals: the loop will drain anyway.
            let _ = (&self.signal).write(&[1]);
        }
    }
}

/// Calls finished per turn of the loop: converting a session to a pydantic
/// model takes about 11 µs, so one turn spends well under a millisecond here
/// however many answers arrived together.
const MAX_PER_DRAIN: usize = 32;

/// The loop's reader callback: polls the ready calls, completes their futures.
#[pyclass(frozen)]
struct Drain(Arc<Channel>);

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let channel = &self.0;
        let mut sink = [0u8; 256];
        loop {
            match (&channel.watched).read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        let ready: Vec<Arc<Task>> = {
            let mut ready = lock(&channel.ready);
            let n = ready.len().min(MAX_PER_DRAIN);
            let batch = ready.drain(..n).collect();
            if !ready.is_empty() {
                // The rest waits for the loop's next turn, after whatever else
                // is ready (a ticker, other I/O): no pushes will signal a
                // queue that is not empty, so this callback does.
                let _ = (&channel.signal).write(&[1]);
            }
            batch
        };
        let finished: Vec<(Arc<Task>, Output)> = py.detach(|| {
            let _context = runtime().enter();
            let mut finished = Vec::new();
            for task in ready {
                let mut slot = lock(&task.call);
                let Some(call) = slot.as_mut() else { continue };
                let waker = Waker::from(Arc::clone(&task));
                if let Poll::Ready(output) = call.as_mut().poll(&mut Context::from_waker(&waker)) {
                    *slot = None;
                    drop(slot);
                    finished.push((task, output));
                }
            }
            finished
        });
        for (task, output) in finished {
            let future = task.future.bind(py);
            let result = output(py);
            if future
                .call_method0(pyo3::intern!(py, "done"))?
                .is_truthy()?
            {
                continue; // cancelled by its awaiter
            }
            match result {
                Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,))?,
                Err(e) => {
                    future.call_method1(pyo3::intern!(py, "set_exception"), (e.value(py),))?
                }
            };
        }
        Ok(())
    }
}

/// `None`, for calls that return nothing.
pub(crate) fn unit(py: Python<'_>, (): ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}
