//! The runtime-specific part of the adapters: spawning and sleeping.
//!
//! [`Runtime`] is all a wrapper needs from an async runtime. tokio and smol
//! implementations come with the `tokio` and `smol` features; on another runtime
//! (or in a deterministic simulation) implement it yourself, or drive the
//! machines in `tokenstore_core` directly.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[cfg(feature = "smol")]
mod smol;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(feature = "smol")]
pub use self::smol::SmolRuntime;
#[cfg(feature = "tokio")]
pub use self::tokio::{TokioClock, TokioRuntime};

/// A boxed `Send` future with no output, as the runtime spawns it.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Spawning and timers: what a wrapper needs from an async runtime.
///
/// A runtime that runs every task on its own OS thread (a sketch of what a
/// user on another runtime writes; real runtimes do better):
///
/// ```
/// use std::time::Duration;
/// use tokenstore::runtime::{Runtime, Task};
///
/// #[derive(Debug)]
/// struct ThreadPerTask;
///
/// impl Runtime for ThreadPerTask {
///     fn spawn(&self, task: Task) {
///         std::thread::spawn(move || futures_lite::future::block_on(task));
///     }
///     fn sleep(&self, duration: Duration) -> Task {
///         let deadline = std::time::Instant::now() + duration;
///         // A blocking sleep is acceptable here only because every task has its own thread.
///         Box::pin(async move { std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now())) })
///     }
/// }
/// futures_lite::future::block_on(ThreadPerTask.sleep(Duration::from_millis(1)));
/// ```
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// Runs `task` in the background until it completes.
    fn spawn(&self, task: Task);

    /// A future that completes `duration` after this call (the deadline is
    /// fixed when `sleep` is called, not when the future is first polled), on
    /// a timer that does not follow steps of the wall clock.
    fn sleep(&self, duration: Duration) -> Task;
}

/// A shared runtime is a runtime (so one can be chosen at run time as
/// `Arc<dyn Runtime>`).
impl<R: Runtime + ?Sized> Runtime for std::sync::Arc<R> {
    fn spawn(&self, task: Task) {
        (**self).spawn(task);
    }

    fn sleep(&self, duration: Duration) -> Task {
        (**self).sleep(duration)
    }
}
