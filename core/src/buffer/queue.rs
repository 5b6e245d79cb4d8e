//! The pending writes: coalesced by slot, ordered by sequence number, and
//! indexed by acceptance time so that the oldest is found in O(log n).

use super::op::{OpHashes, Slot};
use crate::{Timestamp, WriteOp};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A pending write.
pub(super) struct Entry {
    pub(super) op: WriteOp,
    /// The tokens' hashes `op` names.
    pub(super) hashes: OpHashes,
    /// This write and the older writes it superseded.
    pub(super) covers: Vec<u64>,
    /// When the oldest write it covers was accepted: superseding a write never
    /// postpones its flush.
    pub(super) accepted_at: Timestamp,
}

impl Entry {
    fn slot(&self) -> Slot {
        self.op.slot_hashed(&self.hashes)
    }

    /// Whether this write makes `older` unnecessary ([`WriteOp::supersedes`]).
    fn supersedes(&self, older: &Self) -> bool {
        self.op
            .supersedes_hashed(&self.hashes, &older.op, &older.hashes)
    }
}

/// The queue of pending writes.
#[derive(Default)]
pub(super) struct Queue {
    entries: BTreeMap<u64, Entry>,
    /// The pending write of each slot, for coalescing.
    slots: HashMap<Slot, u64>,
    /// `(accepted_at, seq)` of every entry.
    by_time: BTreeSet<(Timestamp, u64)>,
}

impl Queue {
    /// Queues `op` as write `seq`; returns whether it superseded a pending write
    /// (which it then replaces, keeping the older acceptance time).
    pub(super) fn push(&mut self, seq: u64, op: WriteOp, now: Timestamp) -> bool {
        let mut entry = Entry {
            hashes: OpHashes::of(&op),
            op,
            covers: vec![seq],
            accepted_at: now,
        };
        let slot = entry.slot();
        let older = self.slots.get(&slot).copied();
        let coalesced = older.is_some_and(|older| entry.supersedes(&self.entries[&older]));
        if let (true, Some(older)) = (coalesced, older) {
            let old = self.remove(older);
            entry.covers.extend(old.covers);
            entry.accepted_at = entry.accepted_at.min(old.accepted_at);
        }
        self.slots.insert(slot, seq);
        self.insert(seq, entry);
        coalesced
    }

    /// Puts the writes of a failed batch back (they keep their sequence numbers
    /// and acceptance times), except those a newer pending write supersedes,
    /// which it absorbs; returns how many were absorbed.
    pub(super) fn requeue(&mut self, entries: Vec<(u64, Entry)>) -> u64 {
        let mut absorbed = 0;
        for (seq, entry) in entries {
            let slot = entry.slot();
            match self.slots.get(&slot).copied() {
                // Only a newer write can absorb a requeued one: two writes of
                // one failed batch may share a slot, oldest requeued first.
                Some(newer) if newer > seq && self.entries[&newer].supersedes(&entry) => {
                    let mut kept = self.remove_entry_only(newer);
                    kept.covers.extend(entry.covers);
                    kept.accepted_at = kept.accepted_at.min(entry.accepted_at);
                    self.insert(newer, kept);
                    absorbed += 1;
                }
                Some(other) if other > seq => self.insert(seq, entry),
                _ => {
                    self.slots.insert(slot, seq);
                    self.insert(seq, entry);
                }
            }
        }
        absorbed
    }

    /// Takes the front of the queue, oldest first: at most `limit` writes.
    pub(super) fn take_front(&mut self, limit: usize) -> Vec<(u64, Entry)> {
        let Some(&first_left) = self.entries.keys().nth(limit) else {
            return self.take_all();
        };
        let rest = self.entries.split_off(&first_left);
        let front = std::mem::replace(&mut self.entries, rest);
        for (seq, entry) in &front {
            self.by_time.remove(&(entry.accepted_at, *seq));
            let slot = entry.slot();
            if self.slots.get(&slot) == Some(seq) {
                self.slots.remove(&slot);
            }
        }
        front.into_iter().collect()
    }

    /// The writes at the front of the queue (what
    /// [`take_front`](Self::take_front) would take now, at most `limit`)
    /// with a sequence number above `after`, oldest first.
    pub(super) fn front_after(
        &self,
        limit: usize,
        after: u64,
    ) -> impl Iterator<Item = (u64, &WriteOp)> {
        self.entries
            .iter()
            .take(limit)
            .filter(move |(seq, _)| **seq > after)
            .map(|(seq, e)| (*seq, &e.op))
    }

    /// Takes every pending write, oldest first.
    pub(super) fn take_all(&mut self) -> Vec<(u64, Entry)> {
        self.slots.clear();
        self.by_time.clear();
        std::mem::take(&mut self.entries).into_iter().collect()
    }

    /// When the oldest pending write was accepted.
    pub(super) fn oldest_accepted(&self) -> Option<Timestamp> {
        self.by_time.first().map(|&(at, _)| at)
    }

    /// The lowest pending sequence number.
    pub(super) fn first_seq(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// The oldest write any pending entry covers.
    pub(super) fn oldest_covered(&self) -> Option<u64> {
        self.entries
            .values()
            .flat_map(|e| e.covers.iter().copied())
            .min()
    }

    /// Pending writes (after coalescing).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pending writes, oldest first.
    pub(super) fn ops(&self) -> impl Iterator<Item = &WriteOp> + Clone {
        self.entries.values().map(|e| &e.op)
    }

    /// The pending writes with their hashes, oldest first.
    pub(super) fn hashed_ops(&self) -> impl Iterator<Item = (&WriteOp, &OpHashes)> + Clone {
        self.entries.values().map(|e| (&e.op, &e.hashes))
    }

    /// After time went back to `now`: no write counts as accepted later.
    pub(super) fn clamp_accepted(&mut self, now: Timestamp) {
        let later: Vec<(Timestamp, u64)> = self.by_time.range((now, 0)..).copied().collect();
        for (at, seq) in later {
            if at > now {
                let mut entry = self.remove_entry_only(seq);
                entry.accepted_at = now;
                self.insert(seq, entry);
            }
        }
    }

    fn insert(&mut self, seq: u64, entry: Entry) {
        self.by_time.insert((entry.accepted_at, seq));
        self.entries.insert(seq, entry);
    }

    /// Removes entry `seq` and its slot.
    fn remove(&mut self, seq: u64) -> Entry {
        let entry = self.remove_entry_only(seq);
        self.slots.remove(&entry.slot());
        entry
    }

    /// Removes entry `seq`, leaving its slot pointing at it.
    fn remove_entry_only(&mut self, seq: u64) -> Entry {
        let entry = self.entries.remove(&seq).expect("indexed entry is queued");
        self.by_time.remove(&(entry.accepted_at, seq));
        entry
    }
}
