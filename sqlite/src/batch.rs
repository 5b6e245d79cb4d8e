//! The atomic-batch capability: a flush of mixed writes in one transaction.
//!
//! Every write is checked on the caller's side first, as the single operations
//! check theirs, so an invalid write fails the batch before anything is sent,
//! and its sessions are encoded there too (hashes, Fernet, JSON), or were
//! already, by [`BatchWriteStore::prepare`] while the batch before committed.
//! The rest is one job on the writer thread, SQL only: one `BEGIN IMMEDIATE`, the
//! writes in order through the same functions (and cached prepared statements)
//! the single operations use, one `COMMIT`, or a rollback of everything when
//! any write fails.

use crate::SqliteTokenStore;
use crate::worker::Ctx;
use crate::{client, code, session, state};
use std::sync::Arc;
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BoxFuture, ClientRecord, StateRecord, StoreError,
    StoredSession, TokenHash,
};

/// A checked write, as the connection thread applies it. A session delete by
/// token carries the token's hash (hex), so the raw token stays on the
/// caller's side.
enum Write {
    StoreState(Arc<StateRecord>),
    RemoveState(String),
    StoreCode(Arc<AuthCodeRecord>),
    DeleteCode(String),
    StoreSession(Arc<StoredSession>, session::Encoded),
    DeleteSessionByHash(String),
    DeleteSessionById(String),
    StoreClient(Arc<ClientRecord>),
    DeleteClient(String),
}

impl Write {
    /// Checks `op` exactly as the single operation it stands for checks its
    /// input, then converts it (a session with its encoding, prepared or
    /// made now).
    fn check(op: WriteOp, store: &SqliteTokenStore) -> Result<Self, StoreError> {
        op.validate()?;
        Ok(match op {
            WriteOp::StoreState(r) => Self::StoreState(r),
            WriteOp::RemoveState(k) => Self::RemoveState(k),
            WriteOp::StoreAuthCode(r) => Self::StoreCode(r),
            WriteOp::DeleteAuthCode(k) => Self::DeleteCode(k),
            WriteOp::StoreSession(s) => {
                let encoded = match store.prepared.take(&s) {
                    Some(encoded) => encoded,
                    None => session::encode(&store.codec, &s)?,
                };
                Self::StoreSession(s, encoded)
            }
            WriteOp::DeleteSessionByToken(t) => {
                Self::DeleteSessionByHash(TokenHash::of(t.expose()).to_hex())
            }
            WriteOp::DeleteSessionById(id) => Self::DeleteSessionById(id),
            WriteOp::StoreClient(r) => Self::StoreClient(r),
            WriteOp::DeleteClient(k) => Self::DeleteClient(k),
        })
    }

    /// Applies the write inside the batch's transaction.
    fn apply(&self, ctx: Ctx<'_>) -> Result<(), StoreError> {
        match self {
            Self::StoreState(r) => state::insert(ctx, r),
            Self::RemoveState(k) => state::remove(ctx, k),
            Self::StoreCode(r) => code::insert(ctx, r),
            Self::DeleteCode(k) => code::delete(ctx, k),
            Self::StoreSession(s, encoded) => session::store_encoded(ctx, s, encoded),
            Self::DeleteSessionByHash(h) => session::delete_by_access(ctx, h),
            Self::DeleteSessionById(id) => session::delete_by_id(ctx, id),
            Self::StoreClient(r) => client::insert(ctx, r),
            Self::DeleteClient(k) => client::delete(ctx, k),
        }
    }
}

impl BatchWriteStore for SqliteTokenStore {
    /// Checks every write, then applies them in order in one `BEGIN IMMEDIATE`
    /// transaction: one commit for the whole batch, or, when any write fails
    /// (a missing encryption key, an SQLite error), a rollback that leaves the
    /// store unchanged.
    ///
    /// The outcome is that of the single operations one by one, with one
    /// deliberate difference: [`WriteOp::RemoveState`] deletes the row whatever
    /// it holds, expired, live or corrupt, where `consume_state` would fail on a
    /// live row it cannot decode (its answer, which is ignored here, would be
    /// wrong). An empty batch opens no transaction; after `close` every batch
    /// fails with [`StoreError::Closed`].
    fn apply_batch(&self, writes: Vec<WriteOp>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let writes = writes
                .into_iter()
                .map(|op| Write::check(op, self))
                .collect::<Result<Vec<_>, _>>()?;
            if writes.is_empty() {
                return self.run("apply_batch", |_| Ok(())).await;
            }
            self.run("apply_batch", move |db| {
                db.write(|ctx| writes.iter().try_for_each(|w| w.apply(ctx)))
            })
            .await
        })
    }

    /// Encodes the sessions among `writes` (hashes, Fernet tokens, JSON) on
    /// the caller's thread, for the batch that will hold them. Invalid ones,
    /// and any the codec refuses, are left for `apply_batch` to refuse.
    fn prepare(&self, writes: &[WriteOp]) {
        for op in writes {
            if let WriteOp::StoreSession(s) = op
                && s.validate().is_ok()
                && !self.prepared.has(s)
                && let Ok(encoded) = session::encode(&self.codec, s)
            {
                self.prepared.put(s, encoded);
            }
        }
    }
}
