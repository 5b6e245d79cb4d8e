//! When a newer write makes an older one unnecessary (coalescing), and how a
//! batch of writes is applied to a delegate.

use crate::{StoredSession, TokenHash, WriteOp};
use std::sync::Arc;

/// The token hashes a held write names, computed once when the buffer takes
/// the write: a session read compares them with every held write's, and
/// hashing each held write's tokens again on every read cost one SHA-256 per
/// held write per read, under the buffer's lock (about a tenth of the CPU
/// samples of the main job's buffered stack, by `perf`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OpHashes {
    /// A stored session's access token, or the token a delete names.
    pub(crate) access: Option<TokenHash>,
    /// A stored session's refresh token, if it has one.
    pub(crate) refresh: Option<TokenHash>,
}

impl OpHashes {
    pub(crate) fn of(op: &WriteOp) -> Self {
        match op {
            WriteOp::StoreSession(s) => Self::of_session(s),
            WriteOp::DeleteSessionByToken(t) => Self {
                access: Some(TokenHash::of(t.expose())),
                refresh: None,
            },
            _ => Self::default(),
        }
    }

    pub(crate) fn of_session(s: &StoredSession) -> Self {
        Self {
            access: Some(s.access_hash()),
            refresh: s.refresh_hash(),
        }
    }
}

/// What a write is coalesced by: a newer write can only replace an older one
/// with the same slot.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    State(String),
    AuthCode(String),
    Client(String),
    SessionStore(TokenHash),
    SessionDeleteByHash(TokenHash),
    SessionDeleteById(String),
}

impl WriteOp {
    /// The key coalescing goes by, from the hashes `self` names.
    pub(crate) fn slot_hashed(&self, hashes: &OpHashes) -> Slot {
        match self {
            Self::StoreState(r) => Slot::State(r.state.clone()),
            Self::RemoveState(k) => Slot::State(k.clone()),
            Self::StoreAuthCode(r) => Slot::AuthCode(r.code.clone()),
            Self::DeleteAuthCode(k) => Slot::AuthCode(k.clone()),
            Self::StoreSession(s) => {
                Slot::SessionStore(hashes.access.unwrap_or_else(|| s.access_hash()))
            }
            Self::DeleteSessionByToken(t) => Slot::SessionDeleteByHash(
                hashes.access.unwrap_or_else(|| TokenHash::of(t.expose())),
            ),
            Self::DeleteSessionById(id) => Slot::SessionDeleteById(id.clone()),
            Self::StoreClient(r) => Slot::Client(r.client_id.clone()),
            Self::DeleteClient(k) => Slot::Client(k.clone()),
        }
    }

    /// Whether applying `self` after `older` (with any writes in between) leaves
    /// the delegate as it would be without `older`.
    ///
    /// States, codes and clients are one key each: the last write wins, and a
    /// delete after a store leaves the delete. Sessions are unique by three keys,
    /// and a store removes every session sharing any of them, so a session store
    /// only replaces an older store whose keys are all among its own (the same
    /// session stored again); a delete replaces only the same delete. A delete
    /// after a store does not replace it: the store's removals of other sessions
    /// (a token rotation) must still happen.
    pub fn supersedes(&self, older: &Self) -> bool {
        self.supersedes_hashed(&OpHashes::of(self), older, &OpHashes::of(older))
    }

    /// [`supersedes`](Self::supersedes), from the hashes each write names.
    pub(crate) fn supersedes_hashed(
        &self,
        hashes: &OpHashes,
        older: &Self,
        older_hashes: &OpHashes,
    ) -> bool {
        match (self, older) {
            (Self::StoreSession(new), Self::StoreSession(old)) => {
                hashes.access == older_hashes.access
                    && new.session_id == old.session_id
                    && (old.refresh_token.is_none() || hashes.refresh == older_hashes.refresh)
            }
            (Self::StoreSession(_), _) | (_, Self::StoreSession(_)) => false,
            _ => self.slot_hashed(hashes) == older.slot_hashed(older_hashes),
        }
    }
}

/// One step of applying a batch to a delegate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A single call.
    Single(WriteOp),
    /// `BulkSessionStore::bulk_store_sessions` with these sessions, in order.
    BulkStoreSessions(Vec<Arc<StoredSession>>),
    /// `BulkSessionStore::bulk_delete_sessions_by_hash` with these hashes.
    BulkDeleteSessions(Vec<TokenHash>),
}

/// How to apply `writes` (in order): with `bulk`, consecutive session stores and
/// consecutive session deletes by hash become one bulk call each. Writes to
/// states, codes and clients never touch sessions, so they run first, in their
/// own order, and the session writes keep theirs.
pub fn plan(writes: &[WriteOp], bulk: bool) -> Vec<Step> {
    let mut steps: Vec<Step> = writes
        .iter()
        .filter(|w| !w.is_session())
        .cloned()
        .map(Step::Single)
        .collect();
    for w in writes.iter().filter(|w| w.is_session()) {
        match (w, steps.last_mut()) {
            (WriteOp::StoreSession(s), Some(Step::BulkStoreSessions(run))) if bulk => {
                run.push(s.clone())
            }
            (WriteOp::DeleteSessionByToken(t), Some(Step::BulkDeleteSessions(run))) if bulk => {
                run.push(TokenHash::of(t.expose()))
            }
            (WriteOp::StoreSession(s), _) if bulk => {
                steps.push(Step::BulkStoreSessions(vec![s.clone()]))
            }
            (WriteOp::DeleteSessionByToken(t), _) if bulk => {
                steps.push(Step::BulkDeleteSessions(vec![TokenHash::of(t.expose())]))
            }
            _ => steps.push(Step::Single(w.clone())),
        }
    }
    steps
}

/// Applies a whole batch to `store` by the best path it offers: one atomic call
/// when it has the [`BatchWriteStore`](crate::BatchWriteStore) capability (one
/// SQLite transaction), otherwise the [`plan`] with bulk calls where it has the
/// bulk capability, and single calls for the rest.
pub async fn apply_batch<S: crate::TokenStore + ?Sized>(
    store: &S,
    writes: Vec<WriteOp>,
) -> Result<(), crate::StoreError> {
    if let Some(batch) = store.batch_writer() {
        return batch.apply_batch(writes).await;
    }
    for step in plan(&writes, store.bulk().is_some()) {
        apply(store, step).await?;
    }
    Ok(())
}

/// Applies one step to `store`: the one piece of I/O a flush does, shared by the
/// adapters, the tests and the fuzzers.
///
/// [`plan`] makes bulk steps only for a store that has the bulk capability.
/// Given one anyway, a store without it runs [`Step::BulkStoreSessions`] as the
/// loop of single calls, but fails [`Step::BulkDeleteSessions`] with
/// [`StoreError::Backend`](crate::StoreError::Backend): the step holds only
/// hashes, and the contract deletes by token.
pub async fn apply<S: crate::TokenStore + ?Sized>(
    store: &S,
    step: Step,
) -> Result<(), crate::StoreError> {
    match step {
        Step::Single(op) => apply_one(store, op).await,
        Step::BulkStoreSessions(sessions) => match store.bulk() {
            Some(bulk) => bulk.bulk_store_sessions(sessions).await,
            None => {
                for s in sessions {
                    store.store_session(s).await?;
                }
                Ok(())
            }
        },
        Step::BulkDeleteSessions(hashes) => match store.bulk() {
            Some(bulk) => bulk.bulk_delete_sessions_by_hash(hashes).await.map(drop),
            None => Err(crate::StoreError::Backend(
                "a bulk delete was planned for a store without the bulk capability".into(),
            )),
        },
    }
}

async fn apply_one<S: crate::TokenStore + ?Sized>(
    store: &S,
    op: WriteOp,
) -> Result<(), crate::StoreError> {
    match op {
        WriteOp::StoreState(r) => store.store_state(r).await,
        WriteOp::RemoveState(k) => store.consume_state(&k).await.map(drop),
        WriteOp::StoreAuthCode(r) => store.store_auth_code(r).await,
        WriteOp::DeleteAuthCode(k) => store.delete_auth_code(&k).await,
        WriteOp::StoreSession(s) => store.store_session(s).await,
        WriteOp::DeleteSessionByToken(t) => store.delete_session_by_token(t.expose()).await,
        WriteOp::DeleteSessionById(id) => store.delete_session_by_id(&id).await,
        WriteOp::StoreClient(r) => store.store_client(r).await,
        WriteOp::DeleteClient(k) => store.delete_client(&k).await,
    }
}
