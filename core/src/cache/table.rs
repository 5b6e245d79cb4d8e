//! A bounded table of entries reachable by one or more keys, evicted by SIEVE.
//!
//! SIEVE (Zhang et al., NSDI 2024) keeps entries in insertion order with a
//! "visited" bit; a hand walks from the oldest entry towards the newest, clearing
//! bits, and evicts the first entry it finds unvisited. A hit only sets a bit, so
//! lookups never reorder anything. Everything here is deterministic: eviction
//! order depends only on the sequence of calls.
//!
//! A hit by an entry's first key must touch as little memory as possible: the
//! primary index maps that key to the value (an `Arc` and deadlines) and the
//! entry's visited bit, so such a hit reads one hash bucket and nothing else.
//! The other keys (a session's id and refresh hash) live in a side map from key
//! to slot, and their hits take one more step, through the order list's node
//! to the primary bucket. So the primary index holds one bucket per entry,
//! however many keys it has, and stays small enough to sit in the CPU's caches:
//! sessions are validated by access token far more often than found by id or
//! refresh token. The order list holds only keys and links.
//!
//! The primary index is an [`scc::HashIndex`], whose reads take no lock and
//! write no shared memory: the table (behind its shard's lock) is its only
//! writer, and [`HitView`](super::HitView) reads it from any thread without
//! the lock ([`Table::index`]). Its values are never changed in place; the
//! visited bit is an atomic, set by either reader.

use foldhash::HashMap;
use foldhash::HashMapExt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const NIL: u32 = u32::MAX;

struct Node<K> {
    /// The primary key first, then the aliases.
    keys: Vec<K>,
    /// Towards the newest entry.
    newer: u32,
    /// Towards the oldest entry.
    older: u32,
}

/// What an entry's primary key finds: its slot, the value, and its visited bit.
pub(crate) struct Indexed<V> {
    slot: u32,
    visited: AtomicBool,
    pub(crate) value: V,
}

impl<V> Indexed<V> {
    /// Marks the entry visited. Written only when clear: a hit on a visited
    /// entry then writes no memory, so threads hitting the same entries keep
    /// sharing its cache line instead of taking it from each other's cores.
    pub(crate) fn visit(&self) {
        if !self.visited.load(Ordering::Relaxed) {
            self.visited.store(true, Ordering::Relaxed);
        }
    }
}

/// The primary index: each entry's first key to its slot, value and bit.
pub(crate) type Index<K, V> = scc::HashIndex<K, Indexed<V>, foldhash::fast::RandomState>;

/// Entries with several keys each, at most `capacity` of them.
pub(crate) struct Table<K, V> {
    nodes: Vec<Option<Node<K>>>,
    free: Vec<u32>,
    /// Each entry's first key; shared with the lock-free readers.
    index: Arc<Index<K, V>>,
    /// Each entry's other keys, to its slot.
    aliases: HashMap<K, u32>,
    newest: u32,
    oldest: u32,
    hand: u32,
    len: usize,
    capacity: usize,
}

impl<K, V> Table<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            index: Arc::new(Index::with_hasher(foldhash::fast::RandomState::default())),
            aliases: HashMap::new(),
            newest: NIL,
            oldest: NIL,
            hand: NIL,
            len: 0,
            capacity: capacity.min(NIL as usize - 1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The primary index, for readers that do not hold the table's lock.
    pub(crate) fn index(&self) -> &Arc<Index<K, V>> {
        &self.index
    }

    /// Drops every entry; the primary index stays the same one, so readers
    /// holding it see the table empty.
    pub(crate) fn clear(&mut self) {
        self.index.clear_sync();
        self.aliases.clear();
        self.nodes.clear();
        self.free.clear();
        self.newest = NIL;
        self.oldest = NIL;
        self.hand = NIL;
        self.len = 0;
    }

    /// The value reachable by `key`, marking it visited.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let read = |_: &K, found: &Indexed<V>| {
            found.visit();
            found.value.clone()
        };
        // One bucket for a hit by the primary key.
        if let Some(value) = self.index.peek_with(key, read) {
            return Some(value);
        }
        let slot = *self.aliases.get(key)?;
        let primary = &self.node(slot).keys[0];
        let value = self.index.peek_with(primary, read);
        Some(value.expect("every linked entry is indexed"))
    }

    fn slot_of(&self, key: &K) -> Option<u32> {
        match self.index.peek_with(key, |_, i| i.slot) {
            Some(slot) => Some(slot),
            None => self.aliases.get(key).copied(),
        }
    }

    /// Removes the entry reachable by `key` (with all its keys); returns its keys
    /// and value.
    pub(crate) fn remove(&mut self, key: &K) -> Option<(Vec<K>, V)> {
        let slot = self.slot_of(key)?;
        Some(self.unlink(slot))
    }

    /// Inserts an entry under `keys`, first removing every entry reachable by any
    /// of them. Returns the keys of the entry evicted to make room, if any.
    /// With capacity zero nothing is stored.
    pub(crate) fn insert(&mut self, keys: Vec<K>, value: V) -> Option<Vec<K>> {
        for key in &keys {
            self.remove(key);
        }
        if self.capacity == 0 {
            return None;
        }
        let evicted = (self.len >= self.capacity).then(|| self.evict());
        let slot = self.alloc(Node {
            keys,
            newer: NIL,
            older: self.newest,
        });
        self.link_newest(slot, value);
        evicted
    }

    fn node(&self, slot: u32) -> &Node<K> {
        self.nodes[slot as usize]
            .as_ref()
            .expect("linked slot is occupied")
    }

    fn node_mut(&mut self, slot: u32) -> &mut Node<K> {
        self.nodes[slot as usize]
            .as_mut()
            .expect("linked slot is occupied")
    }

    fn alloc(&mut self, node: Node<K>) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = Some(node);
                slot
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn link_newest(&mut self, slot: u32, value: V) {
        let node = self.nodes[slot as usize]
            .as_ref()
            .expect("linked slot is occupied");
        let (primary, aliases) = node.keys.split_first().expect("an entry has a key");
        for alias in aliases {
            self.aliases.insert(alias.clone(), slot);
        }
        let primary = primary.clone();
        let indexed = Indexed {
            slot,
            visited: AtomicBool::new(false),
            value,
        };
        // Every key of the entry was removed first (`insert`), and the table
        // is the index's only writer.
        let inserted = self.index.insert_sync(primary, indexed);
        assert!(inserted.is_ok(), "a primary key is indexed once");
        if self.newest != NIL {
            let newest = self.newest;
            self.node_mut(newest).newer = slot;
        }
        self.newest = slot;
        if self.oldest == NIL {
            self.oldest = slot;
        }
        self.len += 1;
    }

    fn unlink(&mut self, slot: u32) -> (Vec<K>, V) {
        let node = self.nodes[slot as usize]
            .take()
            .expect("linked slot is occupied");
        let primary = &node.keys[0];
        let value = self.index.peek_with(primary, |_, i| i.value.clone());
        self.index.remove_sync(primary);
        for alias in &node.keys[1..] {
            self.aliases.remove(alias);
        }
        if self.hand == slot {
            self.hand = node.newer;
        }
        match node.older {
            NIL => self.oldest = node.newer,
            older => self.node_mut(older).newer = node.newer,
        }
        match node.newer {
            NIL => self.newest = node.older,
            newer => self.node_mut(newer).older = node.older,
        }
        self.free.push(slot);
        self.len -= 1;
        (node.keys, value.expect("every linked entry is indexed"))
    }

    /// Whether the entry at `slot` was visited by any of its keys; clears the
    /// bit.
    fn take_visited(&mut self, slot: u32) -> bool {
        let primary = &self.node(slot).keys[0];
        self.index
            .peek_with(primary, |_, i| i.visited.swap(false, Ordering::Relaxed))
            .unwrap_or(false)
    }

    /// Walks the hand from old to new, sparing visited entries once; returns the
    /// evicted entry's keys.
    fn evict(&mut self) -> Vec<K> {
        let mut slot = if self.hand == NIL {
            self.oldest
        } else {
            self.hand
        };
        loop {
            if slot == NIL {
                slot = self.oldest;
            }
            if !self.take_visited(slot) {
                break;
            }
            slot = self.node(slot).newer;
        }
        self.hand = self.node(slot).newer;
        self.unlink(slot).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_a_hard_bound() {
        let mut t = Table::new(3);
        let evicted = (0..30).filter(|&i| t.insert(vec![i], i).is_some()).count();
        assert_eq!(t.len(), 3);
        assert_eq!(evicted, 27);
        assert_eq!(t.index.len(), 3);
    }

    #[test]
    fn visited_entries_survive_one_pass() {
        let mut t = Table::new(3);
        for i in 0..3 {
            t.insert(vec![i], i);
        }
        assert_eq!(t.get(&0), Some(0));
        t.insert(vec![3], 3); // hand spares 0, evicts 1
        assert!(t.get(&1).is_none());
        assert!(t.get(&0).is_some() && t.get(&2).is_some() && t.get(&3).is_some());
    }

    #[test]
    fn one_entry_many_keys() {
        let mut t = Table::new(10);
        t.insert(vec!["a", "b", "c"], 1);
        assert_eq!(t.get(&"b"), Some(1));
        // Inserting under a shared key replaces the whole old entry.
        t.insert(vec!["c", "d"], 2);
        assert_eq!(t.get(&"a"), None);
        assert_eq!(t.get(&"b"), None);
        assert_eq!(t.get(&"d"), Some(2));
        assert_eq!(t.remove(&"c"), Some((vec!["c", "d"], 2)));
        assert_eq!(t.len(), 0);
        assert!(t.index.is_empty() && t.aliases.is_empty());
    }

    #[test]
    fn one_primary_bucket_per_entry_and_alias_hits_count_as_visits() {
        let mut t = Table::new(2);
        t.insert(vec!["a1", "a2", "a3"], 1);
        t.insert(vec!["b1", "b2"], 2);
        assert_eq!((t.index.len(), t.aliases.len()), (2, 3));
        // A hit by an alias spares the entry from the hand, as one by its
        // primary key would.
        assert_eq!(t.get(&"a3"), Some(1));
        assert_eq!(t.insert(vec!["c1"], 3), Some(vec!["b1", "b2"]));
        assert_eq!(t.get(&"a2"), Some(1));
        assert_eq!(t.get(&"b2"), None);
        // Removing by an alias takes the whole entry.
        assert_eq!(t.remove(&"a2"), Some((vec!["a1", "a2", "a3"], 1)));
        assert_eq!((t.index.len(), t.aliases.len()), (1, 0));
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let mut t = Table::new(0);
        assert_eq!(t.insert(vec![1], 1), None);
        assert_eq!(t.get(&1), None);
    }

    #[test]
    fn removal_keeps_links_consistent() {
        let mut t = Table::new(4);
        for i in 0..4 {
            t.insert(vec![i], i);
        }
        t.get(&0);
        t.insert(vec![4], 4); // evicts 1, hand now at 2
        t.remove(&2); // the hand's node goes away
        t.insert(vec![5], 5);
        t.insert(vec![6], 6);
        assert_eq!(t.len(), 4);
        let mut seen = 0;
        let mut slot = t.oldest;
        while slot != NIL {
            seen += 1;
            slot = t.node(slot).newer;
        }
        assert_eq!(seen, 4);
    }
}
