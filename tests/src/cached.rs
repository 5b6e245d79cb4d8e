//! [`Cached`]: a factory for [`CachingTokenStore`] over any other factory's store.

use crate::Factory;
use std::marker::PhantomData;
use std::time::Duration;
use tokenstore::CachingTokenStore;
use tokenstore::cache::CacheConfig;
use tokenstore_core::{Contents, ManualClock};

/// The cache configuration the contract suite runs with: entries live until
/// their record's own expiry (minus the default skew) rather than a short cap,
/// and absences are remembered for a minute, so that as many reads as possible
/// are answered from the cache while the contract is checked.
pub fn contract_cache_config() -> CacheConfig {
    CacheConfig {
        ttl_cap: Duration::from_secs(365 * 86_400),
        negative_ttl: Duration::from_secs(60),
        ..CacheConfig::default()
    }
}

/// [`CachingTokenStore`] with [`contract_cache_config`] over a fresh store of
/// `F`, telling time with the same [`ManualClock`] as its delegate.
///
/// ```text
/// contract_suite!(cached_memory_tokio, Cached<MemoryFactory>, Tokio);
/// ```
pub struct Cached<F>(PhantomData<F>);

impl<F> std::fmt::Debug for Cached<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cached")
    }
}

impl<F: Factory> Factory for Cached<F> {
    type Store = CachingTokenStore<F::Store>;
    type Guard = F::Guard;

    async fn make(clock: ManualClock) -> (Self::Store, F::Guard) {
        let (inner, guard) = F::make(clock.clone()).await;
        let store = CachingTokenStore::with_clock(inner, contract_cache_config(), clock);
        (store, guard)
    }

    async fn contents(store: &Self::Store, guard: &F::Guard) -> Contents {
        F::contents(store.inner(), guard).await
    }

    fn config_secrets() -> Vec<String> {
        F::config_secrets()
    }
}
