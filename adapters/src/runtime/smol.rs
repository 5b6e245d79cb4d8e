//! The smol [`Runtime`](super::Runtime).

use super::{Runtime, Task};
use std::time::Duration;

/// Spawns on smol's global executor and sleeps with `smol::Timer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    fn spawn(&self, task: Task) {
        smol::spawn(task).detach();
    }

    fn sleep(&self, duration: Duration) -> Task {
        // The deadline is fixed now, not at the first poll.
        let timer = smol::Timer::after(duration);
        Box::pin(async move {
            timer.await;
        })
    }
}
