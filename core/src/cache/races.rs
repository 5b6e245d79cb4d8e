//! Fill tickets against invalidations: the stale-fill race, and single flight.

use super::CacheKey;
use foldhash::HashMap;

/// Permission to fill one key, handed out by a miss.
///
/// Give it back exactly once: to a `fill_*` method with the delegate's answer, or
/// to [`CacheMachine::abandon`](super::CacheMachine::abandon) when the delegate
/// failed or the caller gave up. Until then, other lookups of the key are told to
/// wait (single flight).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a fill ticket must be given back to the machine (fill or abandon)"]
pub struct FillTicket {
    pub(crate) key: CacheKey,
    pub(crate) epoch: u64,
}

impl FillTicket {
    /// The key this ticket fills.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }
}

/// Epochs of outstanding tickets and of invalidations that happened while any
/// ticket was outstanding. Invalidations older than every outstanding ticket can
/// no longer refuse anything and are pruned, so memory follows the number of
/// fills in flight, not the number of writes.
#[derive(Default)]
pub(crate) struct Races {
    epoch: u64,
    /// Tickets at or below this epoch are refused (a feed gap).
    floor: u64,
    in_flight: HashMap<CacheKey, u64>,
    invalidated: HashMap<CacheKey, u64>,
}

impl Races {
    /// Issues a ticket for `key`, or `None` while another is in flight for it.
    pub(crate) fn issue(&mut self, key: &CacheKey) -> Option<FillTicket> {
        if self.in_flight.contains_key(key) {
            return None;
        }
        self.epoch += 1;
        self.in_flight.insert(key.clone(), self.epoch);
        Some(FillTicket {
            key: key.clone(),
            epoch: self.epoch,
        })
    }

    /// Records an invalidation of `key` (needed only while tickets are out).
    pub(crate) fn invalidate(&mut self, key: &CacheKey) {
        if self.in_flight.is_empty() {
            return;
        }
        self.epoch += 1;
        self.invalidated.insert(key.clone(), self.epoch);
    }

    /// Returns the ticket; `true` when none of `keys` was invalidated after it
    /// was issued (the fill may land).
    pub(crate) fn redeem(&mut self, ticket: &FillTicket, keys: &[CacheKey]) -> bool {
        if self.in_flight.get(&ticket.key) == Some(&ticket.epoch) {
            self.in_flight.remove(&ticket.key);
        }
        let fresh = ticket.epoch > self.floor
            && std::iter::once(&ticket.key)
                .chain(keys)
                .all(|k| self.invalidated.get(k).is_none_or(|&e| e < ticket.epoch));
        self.prune();
        fresh
    }

    /// Refuses every ticket handed out so far (a feed gap: what they read may
    /// predate invalidations nobody can name any more).
    pub(crate) fn refuse_outstanding(&mut self) {
        self.floor = self.epoch;
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.in_flight.len()
    }

    fn prune(&mut self) {
        if self.in_flight.is_empty() {
            self.invalidated.clear();
        } else if self.invalidated.len() > 64 + 2 * self.in_flight.len() {
            let oldest = self.in_flight.values().copied().min().unwrap_or(u64::MAX);
            self.invalidated.retain(|_, e| *e > oldest);
        }
    }
}
