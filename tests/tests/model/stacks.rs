//! The stacks under test: the shared factories ([`MemoryFactory`],
//! [`SqliteFactory`]) under a cache and a write buffer configured so that the
//! model's clock steps cross every timer ([`model_cache_config`],
//! [`model_buffer_config`]), and [`Probe`]: what the harness asks of a stack
//! beyond the contract (flush it, count its negative cache hits).
//!
//! [`MemoryFactory`]: tokenstore_tests::MemoryFactory
//! [`SqliteFactory`]: tokenstore_tests::SqliteFactory

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tokenstore::buffer::BufferConfig;
use tokenstore::cache::CacheConfig;
use tokenstore::runtime::{Runtime, SmolRuntime, TokioRuntime};
use tokenstore::{Ack, BufferedTokenStore, CachingTokenStore};
use tokenstore_core::{Contents, ManualClock, MemoryTokenStore, StoreError, TokenStore};
use tokenstore_sqlite::SqliteTokenStore;
use tokenstore_tests::Factory;

/// The cache of the model runs: entries live at most 20 s, lose 1 s to skew,
/// and absences are remembered for 5 s; small capacities so that eviction
/// happens too. The clock steps of [`super::ops`] cross each of these.
pub(crate) fn model_cache_config() -> CacheConfig {
    CacheConfig {
        ttl_cap: Duration::from_secs(20),
        skew: Duration::from_secs(1),
        negative_ttl: Duration::from_secs(5),
        session_capacity: 3,
        auth_code_capacity: 2,
        client_capacity: 2,
        negative_capacity: 3,
        ..CacheConfig::default()
    }
}

/// The buffer of the model runs: a flush is due 2 s (of the manual clock)
/// after the oldest pending write, or at 4 pending writes; at most 8 held.
pub(crate) fn model_buffer_config() -> BufferConfig {
    BufferConfig {
        max_batch_size: 4,
        max_delay: Duration::from_secs(2),
        max_pending: 8,
        max_retries: 2,
        retry_backoff: Duration::from_millis(1),
    }
}

/// What the harness needs from a stack besides the contract.
pub(crate) trait Probe: TokenStore {
    /// Applies every buffered write (nothing to do without a buffer).
    fn flush_all(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Negative cache hits so far, all kinds (zero without a cache).
    fn negative_hits(&self) -> u64;
}

impl Probe for MemoryTokenStore {
    async fn flush_all(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn negative_hits(&self) -> u64 {
        0
    }
}

impl Probe for SqliteTokenStore {
    async fn flush_all(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn negative_hits(&self) -> u64 {
        0
    }
}

impl<S: Probe> Probe for CachingTokenStore<S> {
    fn flush_all(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner().flush_all()
    }
    fn negative_hits(&self) -> u64 {
        let m = self.metrics();
        m.sessions.negative_hits + m.auth_codes.negative_hits + m.clients.negative_hits
    }
}

impl<S: Probe + 'static> Probe for BufferedTokenStore<S> {
    fn flush_all(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.flush()
    }
    fn negative_hits(&self) -> u64 {
        self.inner().negative_hits()
    }
}

/// [`CachingTokenStore`] with [`model_cache_config`] over a fresh store of `F`.
pub(crate) struct ModelCached<F>(PhantomData<F>);

impl<F: Factory> Factory for ModelCached<F> {
    type Store = CachingTokenStore<F::Store>;
    type Guard = F::Guard;

    async fn make(clock: ManualClock) -> (Self::Store, F::Guard) {
        let (inner, guard) = F::make(clock.clone()).await;
        let store = CachingTokenStore::with_clock(inner, model_cache_config(), clock);
        (store, guard)
    }

    async fn contents(store: &Self::Store, guard: &F::Guard) -> Contents {
        F::contents(store.inner(), guard).await
    }
}

/// [`CachingTokenStore`] with [`model_cache_config`]'s timers split into 4
/// shards (capacities of 256, enough for the plan to shard: a session's keys
/// land in different shards, its writes reach all of them) over a fresh store
/// of `F`.
pub(crate) struct ModelSharded<F>(PhantomData<F>);

impl<F: Factory> Factory for ModelSharded<F> {
    type Store = CachingTokenStore<F::Store>;
    type Guard = F::Guard;

    async fn make(clock: ManualClock) -> (Self::Store, F::Guard) {
        let (inner, guard) = F::make(clock.clone()).await;
        let config = CacheConfig {
            session_capacity: 256,
            auth_code_capacity: 256,
            client_capacity: 256,
            negative_capacity: 256,
            shards: 4,
            ..model_cache_config()
        };
        let store = CachingTokenStore::with_clock(inner, config, clock);
        assert_eq!(store.shards(), 4);
        (store, guard)
    }

    async fn contents(store: &Self::Store, guard: &F::Guard) -> Contents {
        F::contents(store.inner(), guard).await
    }
}

/// [`BufferedTokenStore`] with [`model_buffer_config`] over a fresh store of
/// `F`, acknowledging when queued, or when durable with `DURABLE`.
pub(crate) struct ModelBuffered<F, const DURABLE: bool>(PhantomData<F>);

/// The runtime of the running test: tokio's inside a tokio runtime, else smol's.
fn current_runtime() -> Arc<dyn Runtime> {
    match TokioRuntime::try_current() {
        Some(tokio) => Arc::new(tokio),
        None => Arc::new(SmolRuntime),
    }
}

impl<F: Factory, const DURABLE: bool> Factory for ModelBuffered<F, DURABLE> {
    type Store = BufferedTokenStore<F::Store>;
    type Guard = F::Guard;

    async fn make(clock: ManualClock) -> (Self::Store, F::Guard) {
        let (inner, guard) = F::make(clock.clone()).await;
        let ack = if DURABLE { Ack::Durable } else { Ack::Queued };
        let store = BufferedTokenStore::with_clock(
            inner,
            model_buffer_config(),
            ack,
            current_runtime(),
            clock,
        );
        (store, guard)
    }

    async fn contents(store: &Self::Store, guard: &F::Guard) -> Contents {
        store.flush().await.expect("the buffer flushes");
        F::contents(store.inner(), guard).await
    }
}
