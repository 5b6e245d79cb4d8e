//! How a suite gets a fresh store: the [`Factory`] trait, and the [`Fixture`]
//! every test body starts from.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::{Clock, Contents, ManualClock, MemoryTokenStore, Timestamp, TokenStore};

/// Where every fixture's clock starts: 2023-11-14T22:13:20Z.
pub const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

/// Makes fresh, empty stores of one kind (a backend, or a wrapper stack over one).
///
/// Implement it once per stack, then instantiate the suite with
/// [`contract_suite!`](crate::contract_suite).
pub trait Factory: 'static {
    /// The store under test (any [`TokenStore`], possibly wrapping another).
    type Store: TokenStore + fmt::Debug + 'static;

    /// What the factory keeps beside the store: what must outlive it (a
    /// temporary directory, for example) and whatever [`Factory::contents`]
    /// needs; `()` when there is nothing. Dropped after the store.
    type Guard: Send + 'static;

    /// A fresh, empty store that tells time with `clock`.
    fn make(clock: ManualClock) -> impl Future<Output = (Self::Store, Self::Guard)>;

    /// Everything `store` holds, expired records included (for whole-state
    /// comparisons). For a wrapper, what its innermost backend holds once the
    /// wrapper has applied every write it accepted (flush first if it buffers).
    ///
    /// A wrapper's factory can be generic over the factory of what it wraps
    /// and answer with the inner factory's `contents` of the wrapped store.
    fn contents(store: &Self::Store, guard: &Self::Guard) -> impl Future<Output = Contents>;

    /// Secrets of the store's configuration (an encryption key, for example)
    /// that must never appear in its `Debug` output.
    fn config_secrets() -> Vec<String> {
        Vec::new()
    }
}

/// [`MemoryTokenStore`], the reference model.
#[derive(Debug, Clone, Copy)]
pub struct MemoryFactory;

impl Factory for MemoryFactory {
    type Store = MemoryTokenStore;
    type Guard = ();

    async fn make(clock: ManualClock) -> (MemoryTokenStore, ()) {
        (MemoryTokenStore::new(clock), ())
    }

    async fn contents(store: &MemoryTokenStore, _: &()) -> Contents {
        store.contents()
    }
}

/// A fresh store from `F` with its clock at [`T0`].
pub struct Fixture<F: Factory> {
    /// The store's clock: the only way time moves in a test.
    pub clock: ManualClock,
    /// The store, shared so spawned tasks can call it.
    pub store: Arc<F::Store>,
    // Declared after `store`, so dropped after it.
    guard: F::Guard,
}

impl<F: Factory> Fixture<F> {
    /// A fresh, empty store at [`T0`].
    pub async fn new() -> Self {
        let clock = ManualClock::new(T0);
        let (store, guard) = F::make(clock.clone()).await;
        Self {
            clock,
            store: Arc::new(store),
            guard,
        }
    }

    /// The store.
    pub fn store(&self) -> &F::Store {
        &self.store
    }

    /// The current time of the store's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Sets the clock (it may go backwards).
    pub fn set_time(&self, t: Timestamp) {
        self.clock.set(t);
    }

    /// Everything the store holds.
    pub async fn contents(&self) -> Contents {
        F::contents(&self.store, &self.guard).await
    }
}

impl<F: Factory> fmt::Debug for Fixture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("clock", &self.clock)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A fresh store of `F` behind [`WithoutBulk`](crate::probe::WithoutBulk): no
/// bulk or batch capability, for stacks that must work without them.
///
/// ```text
/// contract_suite!(buffered_plain_memory_tokio, Buffered<Plain<MemoryFactory>, false>, Tokio, without bulk);
/// ```
pub struct Plain<F>(std::marker::PhantomData<F>);

impl<F> std::fmt::Debug for Plain<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plain")
    }
}

impl<F: Factory> Factory for Plain<F> {
    type Store = crate::probe::WithoutBulk<F::Store>;
    type Guard = F::Guard;

    async fn make(clock: ManualClock) -> (Self::Store, F::Guard) {
        let (inner, guard) = F::make(clock).await;
        (crate::probe::WithoutBulk::new(inner), guard)
    }

    async fn contents(store: &Self::Store, guard: &F::Guard) -> Contents {
        F::contents(store.inner(), guard).await
    }

    fn config_secrets() -> Vec<String> {
        F::config_secrets()
    }
}
