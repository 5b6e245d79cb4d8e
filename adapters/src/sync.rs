//! The synchronisation primitives the adapters use, in one place.
//!
//! Normal builds use `std::sync::Mutex` and `event-listener`. Built with
//! `RUSTFLAGS="--cfg tokenstore_loom"`, the same names are small equivalents on
//! loom's primitives, so loom models explore the adapters' real code. (A global
//! `--cfg loom` would also switch smol's own dependencies to loom types and
//! break the build, hence the crate-specific cfg.)

/// A mutex that shrugs off poisoning: the machines it guards keep their
/// invariants between calls, so a panic elsewhere leaves them usable.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(imp::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(imp::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> imp::MutexGuard<'_, T> {
        imp::lock(&self.0)
    }
}

pub(crate) use imp::{Event, EventListener};

#[cfg(not(tokenstore_loom))]
mod imp {
    pub(crate) use event_listener::{Event, EventListener};
    pub(crate) use std::sync::{Mutex, MutexGuard};

    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(tokenstore_loom)]
mod imp {
    //! An `Event` with event-listener's API (`new`, `listen`, `notify`) on loom.
    pub(crate) use loom::sync::{Mutex, MutexGuard};
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[derive(Debug, Default)]
    struct State {
        generation: u64,
        wakers: Vec<Waker>,
    }

    /// Wakes every listener created before a `notify`.
    #[derive(Debug, Default)]
    pub(crate) struct Event(loom::sync::Arc<Mutex<State>>);

    impl Event {
        pub(crate) fn new() -> Self {
            Self::default()
        }

        pub(crate) fn listen(&self) -> EventListener {
            let generation = lock(&self.0).generation;
            EventListener {
                state: self.0.clone(),
                generation,
            }
        }

        /// Notifies every current listener (the count is ignored: all are woken).
        pub(crate) fn notify(&self, _count: usize) -> usize {
            let wakers = {
                let mut state = lock(&self.0);
                state.generation += 1;
                std::mem::take(&mut state.wakers)
            };
            let n = wakers.len();
            wakers.into_iter().for_each(Waker::wake);
            n
        }
    }

    /// Completes once the event was notified after the listener was created.
    #[derive(Debug)]
    pub(crate) struct EventListener {
        state: loom::sync::Arc<Mutex<State>>,
        generation: u64,
    }

    impl Future for EventListener {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut state = lock(&self.state);
            if state.generation != self.generation {
                return Poll::Ready(());
            }
            state.wakers.push(cx.waker().clone());
            Poll::Pending
        }
    }
}
