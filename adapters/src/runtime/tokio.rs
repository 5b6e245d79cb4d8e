//! The tokio [`Runtime`](super::Runtime).

use super::{Runtime, Task};
use std::time::Duration;

/// Spawns on a tokio runtime and sleeps with `tokio::time` (so tests that pause
/// tokio's time jump over flush delays instead of waiting).
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
