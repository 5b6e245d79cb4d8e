//! Sessions encoded ahead of their batch ([`BatchWriteStore::prepare`]): a
//! write buffer hands over the writes its next batch will probably hold while
//! the batch in flight commits, and their hashing, sealing and JSON encoding
//! is done then, on the buffer's thread; the batch finds them here, so the
//! writer thread runs only SQL.
//!
//! Entries are keyed by the record's `Arc` (its address, checked against a
//! `Weak` so a reused address never matches another record) and taken by the
//! batch that applies them. Entries of records nobody holds any more (a write
//! coalesced away) are swept when the map grows.
//!
//! [`BatchWriteStore::prepare`]: tokenstore_core::BatchWriteStore::prepare

use crate::session::Encoded;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use tokenstore_core::StoredSession;

/// Past this many entries, a new one first sweeps the dead.
const SWEEP_AT: usize = 4_096;

/// The sessions encoded ahead of their batch.
#[derive(Default)]
pub(crate) struct Prepared {
    sessions: Mutex<HashMap<usize, (Weak<StoredSession>, Encoded)>>,
}

fn address(s: &Arc<StoredSession>) -> usize {
    Arc::as_ptr(s) as usize
}

impl Prepared {
    /// Whether `s` is already encoded.
    pub(crate) fn has(&self, s: &Arc<StoredSession>) -> bool {
        let map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&address(s))
            .and_then(|(weak, _)| weak.upgrade())
            .is_some_and(|held| Arc::ptr_eq(&held, s))
    }

    /// Keeps the encoding of `s` for its batch.
    pub(crate) fn put(&self, s: &Arc<StoredSession>, encoded: Encoded) {
        let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            map.retain(|_, (weak, _)| weak.strong_count() > 0);
        }
        map.insert(address(s), (Arc::downgrade(s), encoded));
    }

    /// The encoding of `s`, if it was prepared (and forgets it).
    pub(crate) fn take(&self, s: &Arc<StoredSession>) -> Option<Encoded> {
        let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let (weak, encoded) = map.remove(&address(s))?;
        // The same record, not another one at a reused address.
        weak.upgrade()
            .is_some_and(|held| Arc::ptr_eq(&held, s))
            .then_some(encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenstore_core::codec::secrets::SecretCodec;
    use tokenstore_core::{Timestamp, UserInfo};

    fn session(n: u32) -> Arc<StoredSession> {
        let t = Timestamp::from_unix_secs(1_700_000_000);
        let user = UserInfo::new("p", "u", "n");
        Arc::new(StoredSession::new(
            format!("s{n}"),
            user,
            format!("a{n}"),
            t,
            t,
        ))
    }

    fn encoded(s: &StoredSession) -> Encoded {
        let codec = SecretCodec::new(None, true).expect("plaintext codec");
        crate::session::encode(&codec, s).expect("encode")
    }

    #[test]
    fn an_encoding_is_taken_once_by_its_own_record() {
        let prepared = Prepared::default();
        let (a, b) = (session(1), session(2));
        prepared.put(&a, encoded(&a));
        assert!(prepared.has(&a) && !prepared.has(&b));
        assert!(prepared.take(&b).is_none());
        assert!(prepared.take(&a).is_some());
        assert!(prepared.take(&a).is_none(), "taken once");
    }

    #[test]
    fn a_dropped_record_never_matches_a_new_one_at_its_address() {
        let prepared = Prepared::default();
        let a = session(1);
        prepared.put(&a, encoded(&a));
        drop(a);
        // Whatever address the allocator gives the next record, the old
        // entry's record is gone: nothing matches.
        for n in 0..100 {
            let b = session(n);
            assert!(!prepared.has(&b));
            assert!(prepared.take(&b).is_none());
        }
    }

    #[test]
    fn dead_entries_are_swept_as_the_map_grows() {
        let prepared = Prepared::default();
        for n in 0..(2 * SWEEP_AT as u32) {
            let s = session(n);
            prepared.put(&s, encoded(&s));
        }
        let len = prepared.sessions.lock().unwrap().len();
        assert!(len <= SWEEP_AT, "{len} entries kept");
    }
}
