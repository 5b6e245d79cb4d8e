//! Read-your-writes: how pending, in-flight and recently applied writes change
//! what the delegate answers.
//!
//! A read first looks at the writes the buffer holds. If one of them names the
//! key, the answer follows from the writes alone. Otherwise the delegate is
//! asked, with a [`ReadTicket`] recording the oldest write not yet applied when
//! the read began; the delegate's answer is then passed through every write from
//! that one on (pending, in flight, or applied while the read was in flight, which
//! the machine retains for as long as such a ticket is out). Passing an answer
//! through a write the delegate had already seen changes nothing, so the result
//! is right whichever of them the delegate saw.

use super::op::OpHashes;
use crate::{
    AuthCodeRecord, ClientRecord, SessionKey, SessionVisibility, StateRecord, StoredSession,
    Timestamp, WriteOp,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Permission to resolve one delegate read of a `T`, holding what the read is
/// keyed by; give it back to the matching `resolve_*` method, or to
/// `abandon_read` if the delegate failed. Its `Debug` shows no key.
#[must_use = "a read ticket must be given back (resolve or abandon)"]
pub struct ReadTicket<T: ReadKind + ?Sized> {
    pub(crate) id: u64,
    pub(crate) start: u64,
    pub(crate) key: T::Key,
}

impl<T: ReadKind + ?Sized> std::fmt::Debug for ReadTicket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadTicket")
            .field("id", &self.id)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// What a [`ReadTicket`] reads, and so what it is keyed by.
pub trait ReadKind {
    /// The key of one read.
    type Key;
}

impl ReadKind for StoredSession {
    type Key = SessionKey;
}

impl ReadKind for AuthCodeRecord {
    /// The code.
    type Key = String;
}

impl ReadKind for ClientRecord {
    /// The client id.
    type Key = String;
}

/// What `list_clients` reads: every client.
#[derive(Debug)]
pub struct ClientList;

impl ReadKind for ClientList {
    type Key = ();
}

/// The answer to a read, or what to do to get it.
#[derive(Debug)]
pub enum Read<T: ReadKind> {
    /// Decided by the buffer's writes: answer this, without asking the delegate.
    Known(Option<Arc<T>>),
    /// Ask the delegate, then pass its answer and the ticket to `resolve_*`.
    Ask(ReadTicket<T>),
}

/// The decision for a one-time operation.
#[derive(Debug, PartialEq, Eq)]
pub enum OneTime<T> {
    /// Decided by the buffer (the record was still in it); answer this.
    Decided(T),
    /// Not in the buffer: the delegate decides.
    AskDelegate,
    /// A write naming the key is in the batch in flight: applying it may put
    /// the record in the delegate, where another instance sharing it (or this
    /// one after a crash) could take it, before a removal queued now would
    /// land. Change nothing; wait until that batch's outcome is reported
    /// ([`handle_batch_result`](super::BufferMachine::handle_batch_result)),
    /// then ask again.
    AwaitBatch,
}

/// Whether `op` names `key` (it decides who holds the key afterwards).
fn names_session(op: &WriteOp, hashes: &OpHashes, key: &SessionKey) -> bool {
    match (op, key) {
        (WriteOp::StoreSession(_) | WriteOp::DeleteSessionByToken(_), SessionKey::Access(h)) => {
            hashes.access == Some(*h)
        }
        (WriteOp::StoreSession(_), SessionKey::Refresh(h)) => hashes.refresh == Some(*h),
        (WriteOp::StoreSession(s), SessionKey::Id(id)) => s.session_id == *id,
        (WriteOp::DeleteSessionById(i), SessionKey::Id(id)) => i == id,
        _ => false,
    }
}

/// Whether applying `op` (naming `hashes`) removes `held` (whose tokens hash
/// to `held_hashes`) from the store.
fn removes_session(
    op: &WriteOp,
    hashes: &OpHashes,
    held: &StoredSession,
    held_hashes: &OpHashes,
) -> bool {
    match op {
        WriteOp::StoreSession(s) => {
            hashes.access == held_hashes.access
                || s.session_id == held.session_id
                || (hashes.refresh.is_some() && hashes.refresh == held_hashes.refresh)
        }
        WriteOp::DeleteSessionByToken(_) => hashes.access == held_hashes.access,
        WriteOp::DeleteSessionById(id) => *id == held.session_id,
        _ => false,
    }
}

/// The session holding `key` after `writes`, starting from `before` (what the
/// delegate answered, if it was asked): `Err(())` when no write names the key
/// and `before` is needed but unknown.
pub(crate) fn session_after<'a>(
    writes: impl Iterator<Item = (&'a WriteOp, &'a OpHashes)> + Clone,
    key: &SessionKey,
    before: Option<Option<Arc<StoredSession>>>,
) -> Result<(Option<Arc<StoredSession>>, bool), ()> {
    let last_naming = writes
        .clone()
        .enumerate()
        .filter(|(_, (w, hashes))| names_session(w, hashes, key))
        .last();
    let (mut holder, skip, from_writes) = match last_naming {
        Some((i, (WriteOp::StoreSession(s), hashes))) => (Some((s.clone(), *hashes)), i + 1, true),
        Some((i, _)) => (None, i + 1, true),
        // The delegate's answer is hashed once here, not once per write.
        None => (
            before.ok_or(())?.map(|s| {
                let hashes = OpHashes::of_session(&s);
                (s, hashes)
            }),
            0,
            false,
        ),
    };
    for (w, hashes) in writes.skip(skip) {
        if holder
            .as_ref()
            .is_some_and(|(h, held_hashes)| removes_session(w, hashes, h, held_hashes))
        {
            holder = None;
        }
    }
    Ok((holder.map(|(s, _)| s), from_writes))
}

/// Applies the delegate's visibility rule to a session the writes hold: the
/// answer, and whether the delegate would delete it on this read.
pub(crate) fn visible_session(
    s: Option<Arc<StoredSession>>,
    key: &SessionKey,
    now: Timestamp,
) -> (Option<Arc<StoredSession>>, bool) {
    let Some(s) = s else {
        return (None, false);
    };
    match key.visibility(&s, now) {
        SessionVisibility::Live if s.issued_at == Some(s.created_at) => (Some(s), false),
        // Loads hand back `issued_at = created_at`, as every store does.
        SessionVisibility::Live => (Some(Arc::new(StoredSession::clone(&s).normalized())), false),
        SessionVisibility::Hidden => (None, false),
        SessionVisibility::Dead => (None, true),
    }
}

/// The outcome of the last write for which `names` answers: `Some(Some(r))`
/// when it stores `r`, `Some(None)` when it removes, `None` when no write names
/// the key.
fn last_naming<'a, T>(
    writes: impl Iterator<Item = &'a WriteOp>,
    names: impl Fn(&WriteOp) -> Option<Option<Arc<T>>>,
) -> Option<Option<Arc<T>>> {
    writes.fold(None, |acc, w| names(w).or(acc))
}

/// The last write naming state `key`, if any.
pub(crate) fn last_state<'a>(
    writes: impl Iterator<Item = &'a WriteOp>,
    key: &str,
) -> Option<Option<Arc<StateRecord>>> {
    last_naming(writes, |w| match w {
        WriteOp::StoreState(r) if r.state == key => Some(Some(r.clone())),
        WriteOp::RemoveState(k) if k == key => Some(None),
        _ => None,
    })
}

/// The last write naming code `key`, if any.
pub(crate) fn last_code<'a>(
    writes: impl Iterator<Item = &'a WriteOp>,
    key: &str,
) -> Option<Option<Arc<AuthCodeRecord>>> {
    last_naming(writes, |w| match w {
        WriteOp::StoreAuthCode(r) if r.code == key => Some(Some(r.clone())),
        WriteOp::DeleteAuthCode(k) if k == key => Some(None),
        _ => None,
    })
}

/// The last write naming client `key`, if any.
pub(crate) fn last_client<'a>(
    writes: impl Iterator<Item = &'a WriteOp>,
    key: &str,
) -> Option<Option<Arc<ClientRecord>>> {
    last_naming(writes, |w| match w {
        WriteOp::StoreClient(r) if r.client_id == key => Some(Some(r.clone())),
        WriteOp::DeleteClient(k) if k == key => Some(None),
        _ => None,
    })
}

/// The delegate's client list with `writes` applied, ordered by client id.
pub(crate) fn clients_after<'a>(
    writes: impl Iterator<Item = &'a WriteOp>,
    listed: Vec<Arc<ClientRecord>>,
) -> Vec<Arc<ClientRecord>> {
    let mut clients: BTreeMap<String, Arc<ClientRecord>> = listed
        .into_iter()
        .map(|c| (c.client_id.clone(), c))
        .collect();
    for w in writes {
        match w {
            WriteOp::StoreClient(r) => {
                clients.insert(r.client_id.clone(), r.clone());
            }
            WriteOp::DeleteClient(k) => {
                clients.remove(k);
            }
            _ => {}
        }
    }
    clients.into_values().collect()
}
