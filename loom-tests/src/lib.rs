//! loom models of the adapters' races, on the adapters' real code.
//!
//! `tokenstore`'s adapters take every lock and every notification through one
//! module (`adapters/src/sync.rs`) that, built with
//! `RUSTFLAGS="--cfg tokenstore_loom"`, swaps in small equivalents on loom's
//! primitives. The models in `tests/` drive [`BufferedTokenStore`] and
//! [`CachingTokenStore`] from loom threads and check, over every interleaving
//! loom explores, what the design promises: no accepted write lost or applied
//! twice when a flush races `close()`, no stale cache fill, every durable waiter
//! answered once with its batch's result, no lost wake-up under backpressure.
//!
//! This library holds what the models share: a loom [`Runtime`], a probe
//! delegate that counts what reaches it, and record builders. Without the cfg
//! the crate is empty. See `README.md` for how to run the models.
//!
//! [`BufferedTokenStore`]: tokenstore::BufferedTokenStore
//! [`CachingTokenStore`]: tokenstore::CachingTokenStore
//! [`Runtime`]: tokenstore::runtime::Runtime

#[cfg(tokenstore_loom)]
mod support;

#[cfg(tokenstore_loom)]
pub use support::*;
