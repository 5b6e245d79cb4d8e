//! What the writer thread ([`crate::worker`]) and the reader threads
//! ([`crate::readers`]) share: the caller's end of a thread's queue, closed
//! once under its lock, and a job that answers through a oneshot.

use crate::error::thread_gone;
use futures_channel::oneshot;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use tokenstore_core::StoreError;

/// A job for a thread that owns a `C` (a connection and its codec).
pub(crate) type Job<C> = Box<dyn FnOnce(&mut C) + Send>;

/// Where a job's answer arrives.
pub(crate) type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

/// `f` as a job that runs inside `span` and sends its result back. The caller
/// may have given up waiting; the work is done either way.
pub(crate) fn job<C, T, F>(span: tracing::Span, f: F) -> (Job<C>, Answer<T>)
where
    T: Send + 'static,
    F: FnOnce(&mut C) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = Box::new(move |c: &mut C| {
        let _span = span.entered();
        let _ = reply.send(f(c));
    });
    (job, answer)
}

/// The answer of a job, or the error of a thread that went away.
pub(crate) async fn answer<T>(answer: Answer<T>) -> Result<T, StoreError> {
    answer.await.map_err(|_| thread_gone())?
}

/// The sending end of a thread's queue, until it is closed.
pub(crate) struct Inbox<M>(Mutex<Option<mpsc::Sender<M>>>);

impl<M> Inbox<M> {
    pub(crate) fn new(sender: mpsc::Sender<M>) -> Self {
        Self(Mutex::new(Some(sender)))
    }

    /// Sends under the lock, so nothing can follow what [`close`](Self::close)'s
    /// taker sends last. [`StoreError::Closed`] once closed.
    pub(crate) fn send(&self, msg: M) -> Result<(), StoreError> {
        let sender = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = sender.as_ref().ok_or(StoreError::Closed)?;
        sender.send(msg).map_err(|_| thread_gone())
    }

    /// Closes it: the sender, to send the last messages with, the first time
    /// only.
    pub(crate) fn close(&self) -> Option<mpsc::Sender<M>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Whether [`close`](Self::close) has been called.
    pub(crate) fn is_closed(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }
}
