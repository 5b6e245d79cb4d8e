//! Shards of the read cache ([`ShardPlan`]).

use super::{CacheConfig, CacheKey, Write};
use crate::{SessionKey, TokenHash};
use std::hash::BuildHasher;

/// The fewest entries of any kind a shard is planned with: below it, fewer
/// shards are used.
pub const MIN_SHARD_CAPACITY: usize = 64;

/// The most shards a cache has.
pub const MAX_SHARDS: usize = 256;

/// Which shards a write must be reported to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This one.
    One(usize),
    /// Every shard, in order.
    All,
}

/// How the read cache is split into shards: one [`CacheMachine`](super::CacheMachine) per shard, each behind a
/// lock of its own, so misses, fills and writes on different shards never wait
/// for each other (hits take no lock: see [`HitView`](super::HitView)).
///
/// [`ShardPlan`] decides everything about the split; an adapter only holds the
/// shards and loops where the plan says so:
///
/// - **How many.** [`CacheConfig::shards`] is an upper bound: the plan takes
///   the largest power of two at most that, and at most the smallest non-zero
///   capacity divided by [`MIN_SHARD_CAPACITY`], so a small cache is one shard
///   and behaves exactly as the unsharded machine (same evictions).
/// - **Capacities.** Each kind's capacity is split so the shards' capacities
///   add up to it exactly: the total bound holds.
/// - **Lookups and fills** go to the shard of their key ([`ShardPlan::of_key`]);
///   a fill's ticket comes from that shard and goes back to it.
/// - **Writes.** A code or client write goes to the shard of its one key. A
///   session write goes to **every** shard ([`Route::All`]): a session filled
///   in one shard (under the key it was looked up by) is indexed there by all
///   three of its keys, so any shard holding it finds it by whichever key a
///   write names, evicts it whole, and refuses the fills in flight that the
///   write could make stale. Each shard is then exactly the proven machine on
///   the writes that concern it; sessions cost a few more lock round trips per
///   write (rare next to reads) and may be cached once per shard they were
///   looked up in.
/// - **The feed.** Every shard follows the feed: each is given every poll's
///   answer, every hint and every lapse (see `CachingTokenStore`).
///
/// ```
/// use tokenstore_core::cache::{CacheConfig, CacheKey, Route, ShardPlan, Write};
/// use tokenstore_core::{SessionKey, TokenHash};
///
/// let plan = ShardPlan::new(&CacheConfig::default());
/// assert_eq!(plan.count(), 16);
/// let configs = plan.configs();
/// assert_eq!(configs.iter().map(|c| c.session_capacity).sum::<usize>(), 100_000);
///
/// let key = CacheKey::Session(SessionKey::Access(TokenHash::of("token")));
/// assert!(plan.of_key(&key) < 16);
/// assert_eq!(plan.of_write(&Write::DeleteSessionById("sid")), Route::All);
/// assert!(matches!(plan.of_write(&Write::Client("c1")), Route::One(_)));
///
/// // A small cache is one shard.
/// let small = CacheConfig { session_capacity: 16, ..CacheConfig::default() };
/// assert_eq!(ShardPlan::new(&small).count(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    config: CacheConfig,
    /// A power of two.
    count: usize,
}

impl ShardPlan {
    /// The plan for `config`.
    pub fn new(config: &CacheConfig) -> Self {
        let smallest = [
            config.session_capacity,
            config.auth_code_capacity,
            config.client_capacity,
            config.negative_capacity,
        ]
        .into_iter()
        .filter(|&c| c > 0)
        .min()
        .unwrap_or(usize::MAX);
        let limit = config
            .shards
            .min(smallest / MIN_SHARD_CAPACITY)
            .clamp(1, MAX_SHARDS);
        // The largest power of two at most `limit`.
        let count = 1 << limit.ilog2();
        Self {
            config: config.clone(),
            count,
        }
    }

    /// How many shards.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Each shard's configuration, in shard order: the whole configuration with
    /// every capacity split so the parts add up to it.
    pub fn configs(&self) -> Vec<CacheConfig> {
        (0..self.count)
            .map(|i| {
                let part = |total: usize| total / self.count + usize::from(i < total % self.count);
                CacheConfig {
                    session_capacity: part(self.config.session_capacity),
                    auth_code_capacity: part(self.config.auth_code_capacity),
                    client_capacity: part(self.config.client_capacity),
                    negative_capacity: part(self.config.negative_capacity),
                    ..self.config.clone()
                }
            })
            .collect()
    }

    /// The shard that looks `key` up, fills it and takes its writes.
    pub fn of_key(&self, key: &CacheKey) -> usize {
        let mask = self.count - 1;
        if mask == 0 {
            return 0;
        }
        let spread = match key {
            // A SHA-256 digest is already uniform: its first bytes will do.
            CacheKey::Session(SessionKey::Access(h) | SessionKey::Refresh(h))
            | CacheKey::AuthCode(h) => digest_prefix(h),
            CacheKey::Session(SessionKey::Id(id)) | CacheKey::Client(id) => {
                // Fixed seeds: the same key has the same shard in every run.
                foldhash::fast::FixedState::with_seed(0x746f_6b65_6e73_746f).hash_one(id)
            }
        };
        (spread as usize) & mask
    }

    /// The shards a write must be reported to: the shard of a code's or a
    /// client's key; every shard for a session write; shard 0 for a state write
    /// (counted once, never cached).
    pub fn of_write(&self, write: &Write<'_>) -> Route {
        match *write {
            Write::State => Route::One(0),
            Write::AuthCode(code) => {
                Route::One(self.of_key(&CacheKey::AuthCode(TokenHash::of(code))))
            }
            Write::Client(id) => Route::One(self.of_key(&CacheKey::Client(id.to_owned()))),
            Write::StoreSession(_)
            | Write::DeleteSessionByHash(_)
            | Write::DeleteSessionById(_) => {
                if self.count == 1 {
                    Route::One(0)
                } else {
                    Route::All
                }
            }
        }
    }
}

fn digest_prefix(hash: &TokenHash) -> u64 {
    let bytes = hash.as_bytes();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(shards: usize, capacity: usize) -> ShardPlan {
        ShardPlan::new(&CacheConfig {
            shards,
            session_capacity: capacity,
            ..CacheConfig::default()
        })
    }

    #[test]
    fn the_count_is_a_power_of_two_within_both_limits() {
        assert_eq!(plan(16, 100_000).count(), 16);
        assert_eq!(plan(12, 100_000).count(), 8);
        assert_eq!(plan(1, 100_000).count(), 1);
        assert_eq!(plan(0, 100_000).count(), 1);
        assert_eq!(plan(16, 1_000).count(), 8); // 1,000 / 64 = 15
        assert_eq!(plan(16, 127).count(), 1);
        assert_eq!(plan(16, 128).count(), 2);
        assert_eq!(plan(100_000, 100_000_000).count(), 128); // the other capacities: 10,000
        let all_zero = CacheConfig {
            session_capacity: 0,
            auth_code_capacity: 0,
            client_capacity: 0,
            negative_capacity: 0,
            ..CacheConfig::default()
        };
        assert_eq!(ShardPlan::new(&all_zero).count(), 16);
    }

    #[test]
    fn capacities_add_up_exactly() {
        for (shards, capacity) in [(16, 100_000), (8, 1_001), (4, 257), (2, 129)] {
            let p = plan(shards, capacity);
            let configs = p.configs();
            assert_eq!(configs.len(), p.count());
            let sum = |f: fn(&CacheConfig) -> usize| configs.iter().map(f).sum::<usize>();
            assert_eq!(sum(|c| c.session_capacity), capacity);
            assert_eq!(sum(|c| c.auth_code_capacity), 10_000);
            assert_eq!(sum(|c| c.client_capacity), 10_000);
            assert_eq!(sum(|c| c.negative_capacity), 10_000);
            let max = configs.iter().map(|c| c.session_capacity).max().unwrap();
            let min = configs.iter().map(|c| c.session_capacity).min().unwrap();
            assert!(max - min <= 1);
        }
    }

    #[test]
    fn keys_spread_over_every_shard_the_same_way_each_time() {
        let p = plan(16, 100_000);
        let mut seen = [0usize; 16];
        for i in 0..1_600 {
            let keys = [
                CacheKey::Session(SessionKey::Access(TokenHash::of(&format!("a{i}")))),
                CacheKey::Session(SessionKey::Id(format!("id{i}"))),
                CacheKey::Client(format!("c{i}")),
            ];
            for key in &keys {
                let shard = p.of_key(key);
                assert_eq!(shard, p.of_key(key));
                seen[shard] += 1;
            }
        }
        // 4,800 keys over 16 shards: 300 each on average.
        assert!(seen.iter().all(|&n| (200..400).contains(&n)), "{seen:?}");
    }

    #[test]
    fn writes_go_where_their_keys_are() {
        let p = plan(16, 100_000);
        let code = Write::AuthCode("code-1");
        assert_eq!(
            p.of_write(&code),
            Route::One(p.of_key(&CacheKey::AuthCode(TokenHash::of("code-1"))))
        );
        assert_eq!(
            p.of_write(&Write::Client("c1")),
            Route::One(p.of_key(&CacheKey::Client("c1".into())))
        );
        assert_eq!(p.of_write(&Write::State), Route::One(0));
        let by_hash = Write::DeleteSessionByHash(TokenHash::of("t"));
        assert_eq!(p.of_write(&by_hash), Route::All);
        assert_eq!(plan(1, 100_000).of_write(&by_hash), Route::One(0));
    }
}
