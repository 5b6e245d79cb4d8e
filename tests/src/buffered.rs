//! [`Buffered`]: a factory for [`BufferedTokenStore`] over any other factory's store.

use crate::Factory;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tokenstore::buffer::BufferConfig;
use tokenstore::runtime::{Runtime, SmolRuntime, TokioRuntime};
use tokenstore::{Ack, BufferedTokenStore};
use tokenstore_core::{Contents, ManualClock};

/// The buffer configuration the contract suite runs with: a flush starts as
/// soon as the worker is idle (the suite's clock only moves when a test moves
/// it, so a delay would never pass), batches of up to 64 writes.
pub fn contract_buffer_config() -> BufferConfig {
    BufferConfig {
        max_batch_size: 64,
        max_delay: Duration::ZERO,
        max_pending: 1_000,
        max_retries: 2,
        retry_backoff: Duration::from_millis(1),
    }
}

/// [`BufferedTokenStore`] with [`contract_buffer_config`] over a fresh store of
/// `F`, acknowledging writes when queued, or when durable with `DURABLE`.
///
/// ```text
/// contract_suite!(buffered_memory_tokio, Buffered<MemoryFactory, false>, Tokio);
/// ```
pub struct Buffered<F, const DURABLE: bool>(PhantomData<F>);

impl<F, const DURABLE: bool> std::fmt::Debug for Buffered<F, DURABLE> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffered(durable: {DURABLE})")
    }
}

/// The runtime of the test that is running: tokio's when inside a tokio
/// runtime, smol's otherwise.
fn current_runtime() -> Arc<dyn Runtime> {
    match TokioRuntime::try_current() {
        Some(tokio) => Arc::new(tokio),
        None => Arc::new(SmolRuntime),
    }
}

impl<F: Factory, const DURABLE: bool> Factory for Buffered<F, DURABLE> {
    type Store = BufferedTokenStore<F::Store>;
    type Guard = F::Guard;

    async fn make(clock: ManualClock) -> (Self::Store, F::Guard) {
        let (inner, guard) = F::make(clock.clone()).await;
        let ack = if DURABLE { Ack::Durable } else { Ack::Queued };
        let config = contract_buffer_config();
        let store = BufferedTokenStore::with_clock(inner, config, ack, current_runtime(), clock);
        (store, guard)
    }

    async fn contents(store: &Self::Store, guard: &F::Guard) -> Contents {
        store.flush().await.expect("the buffer flushes");
        F::contents(store.inner(), guard).await
    }

    fn config_secrets() -> Vec<String> {
        F::config_secrets()
    }
}
