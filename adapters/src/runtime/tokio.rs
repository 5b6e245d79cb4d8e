//! The tokio [`Runtime`](super::Runtime).

use super::{Runtime, Task};
use std::time::Duration;
use tokenstore_core::{Clock, SystemClock, Timestamp};

/// Spawns on a tokio runtime and sleeps with `tokio::time`.
///
/// With tokio's time paused (`start_paused(true)`, `tokio::time::pause`), the
/// flush timer jumps instead of waiting; give the stack a [`TokioClock`] too,
/// so that the time the machines are told moves with it.
#[derive(Debug, Clone)]
pub struct TokioRuntime(tokio::runtime::Handle);

impl TokioRuntime {
    /// The runtime of the calling task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::runtime::Handle::current` does; use
    /// [`TokioRuntime::try_current`] to get `None` instead.
    pub fn current() -> Self {
        Self(tokio::runtime::Handle::current())
    }

    /// The runtime of the calling task, or `None` outside a tokio runtime.
    pub fn try_current() -> Option<Self> {
        tokio::runtime::Handle::try_current().ok().map(Self)
    }

    /// A specific runtime.
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        Self(handle)
    }
}

impl Runtime for TokioRuntime {
    fn spawn(&self, task: Task) {
        drop(self.0.spawn(task));
    }

    fn sleep(&self, duration: Duration) -> Task {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A [`Clock`] that follows tokio's time: a Unix time fixed at construction
/// plus the `tokio::time::Instant` time elapsed since. Under paused time it
/// moves only when tokio's clock is advanced (or auto-advances), so flush
/// delays and cache lifetimes pass in no real time.
///
/// Make it inside the runtime whose time it should follow.
///
/// ```
/// use std::time::Duration;
/// use tokenstore::runtime::TokioClock;
/// use tokenstore::{Clock, Timestamp};
///
/// let rt = tokio::runtime::Builder::new_current_thread()
///     .enable_time()
///     .start_paused(true)
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let clock = TokioClock::new(Timestamp::from_unix_secs(1_700_000_000));
///     tokio::time::sleep(Duration::from_secs(3600)).await; // instant: time is paused
///     assert_eq!(clock.now(), Timestamp::from_unix_secs(1_700_003_600));
/// });
/// ```
#[derive(Debug, Clone)]
pub struct TokioClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `base` now.
    pub fn new(base: Timestamp) -> Self {
        Self {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    /// A clock that reads the system's time now, then follows tokio's.
    pub fn from_system() -> Self {
        Self::new(SystemClock.now())
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base + self.start.elapsed()
    }
}
