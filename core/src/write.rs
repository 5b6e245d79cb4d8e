//! [`WriteOp`]: one write of the contract, as a value (what the write buffer
//! queues and what [`BatchWriteStore`](crate::BatchWriteStore) applies).

use crate::{
    AuthCodeRecord, ClientRecord, InvalidInput, Secret, StateRecord, StoredSession, validate_key,
};
use std::fmt;
use std::sync::Arc;

/// One write of the [`TokenStore`](crate::TokenStore) contract, as a value: what
/// the write buffer holds until a flush applies it, and what a
/// [`BatchWriteStore`](crate::BatchWriteStore) applies in one transaction.
#[derive(Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// `store_state`.
    StoreState(Arc<StateRecord>),
    /// Removes a state at the delegate (a `consume_state` whose answer is
    /// ignored): queued when a state still in the buffer is consumed.
    RemoveState(String),
    /// `store_auth_code`.
    StoreAuthCode(Arc<AuthCodeRecord>),
    /// `delete_auth_code`.
    DeleteAuthCode(String),
    /// `store_session`.
    StoreSession(Arc<StoredSession>),
    /// `delete_session_by_token` (the token is kept for delegates without the
    /// bulk capability; bulk deletes use its hash).
    DeleteSessionByToken(Secret),
    /// `delete_session_by_id`.
    DeleteSessionById(String),
    /// `store_client`.
    StoreClient(Arc<ClientRecord>),
    /// `delete_client`.
    DeleteClient(String),
}

impl WriteOp {
    /// Checks the write exactly as the single operation it stands for checks
    /// its input (a record's `validate`, or [`validate_key`] for a removal).
    ///
    /// A write that passes can be applied by every backend; the write buffer
    /// checks each write with it before accepting it, and every
    /// [`BatchWriteStore`](crate::BatchWriteStore) checks a whole batch with
    /// it before applying any of it.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match self {
            Self::StoreState(r) => r.validate(),
            Self::RemoveState(k) => validate_key("state", k),
            Self::StoreAuthCode(r) => r.validate(),
            Self::DeleteAuthCode(k) => validate_key("code", k),
            Self::StoreSession(s) => s.validate(),
            Self::DeleteSessionByToken(t) => validate_key("access_token", t.expose()),
            Self::DeleteSessionById(id) => validate_key("session_id", id),
            Self::StoreClient(r) => r.validate(),
            Self::DeleteClient(k) => validate_key("client_id", k),
        }
    }

    /// Whether the write is to a session.
    pub fn is_session(&self) -> bool {
        matches!(
            self,
            Self::StoreSession(_) | Self::DeleteSessionByToken(_) | Self::DeleteSessionById(_)
        )
    }
}

impl fmt::Debug for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::StoreState(_) => "StoreState",
            Self::RemoveState(_) => "RemoveState",
            Self::StoreAuthCode(_) => "StoreAuthCode",
            Self::DeleteAuthCode(_) => "DeleteAuthCode",
            Self::StoreSession(_) => "StoreSession",
            Self::DeleteSessionByToken(_) => "DeleteSessionByToken",
            Self::DeleteSessionById(_) => "DeleteSessionById",
            Self::StoreClient(_) => "StoreClient",
            Self::DeleteClient(_) => "DeleteClient",
        };
        write!(f, "WriteOp::{name}(..)")
    }
}
