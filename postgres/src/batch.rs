//! The atomic-batch capability: a flush of mixed writes in one transaction,
//! set-based.
//!
//! Every write is checked on the caller's side first, as the single operations
//! check theirs. The batch is then reduced to what applying it one by one
//! would leave:
//!
//! - states, codes and clients: per key, the last write wins (a store or a
//!   delete), and writes to different keys commute; so each table gets one
//!   `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO UPDATE` of its final
//!   stores and one `DELETE ... = ANY(...)` of its final deletes;
//! - sessions: a row that was there before the batch is gone afterwards
//!   exactly when some write of the batch matched one of its keys, so one
//!   `DELETE` of every row sharing a key with any write; a session the batch
//!   stores survives exactly when no later write matches one of its keys, and
//!   the survivors share no key, so one `INSERT ... SELECT FROM UNNEST(...)`.
//!
//! All of it runs in one transaction: one commit, or nothing.

use crate::PostgresTokenStore;
use crate::conn::Db;
use crate::error::Fail;
use crate::log::Keys;
use crate::session::{self, Touched};
use crate::types::{JsonOwned, PgTime};
use crate::worker::Mode;
use crate::{client, code};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::codec::json::encode_list;
use tokenstore_core::{
    AuthCodeRecord, BatchWriteStore, BoxFuture, ClientRecord, Secret, StateRecord, StoreError,
    StoredSession, TokenHash,
};
use tokio_postgres::types::ToSql;

/// A run of session writes reduced to its effect (see the module docs).
#[derive(Default)]
pub(crate) struct SessionRun {
    touched: Touched,
    slots: Vec<Option<Arc<StoredSession>>>,
    by_access: HashMap<TokenHash, usize>,
    by_id: HashMap<String, usize>,
    by_refresh: HashMap<TokenHash, usize>,
}

impl SessionRun {
    fn remove(&mut self, slot: Option<usize>) {
        let Some(s) = slot.and_then(|i| self.slots[i].take()) else {
            return;
        };
        self.by_access.remove(&s.access_hash());
        self.by_id.remove(&s.session_id);
        if let Some(r) = s.refresh_hash() {
            self.by_refresh.remove(&r);
        }
    }

    /// A store: replaces every earlier stored session sharing a key.
    pub(crate) fn store(&mut self, s: Arc<StoredSession>) {
        let (access, refresh) = (s.access_hash(), s.refresh_hash());
        self.remove(self.by_access.get(&access).copied());
        self.remove(self.by_id.get(&s.session_id).copied());
        self.remove(refresh.and_then(|r| self.by_refresh.get(&r).copied()));
        let i = self.slots.len();
        self.by_access.insert(access, i);
        self.by_id.insert(s.session_id.clone(), i);
        self.touched.access.push(access);
        self.touched.ids.push(s.session_id.clone());
        if let Some(r) = refresh {
            self.by_refresh.insert(r, i);
            self.touched.refresh.push(r);
        }
        self.slots.push(Some(s));
    }

    /// A delete by access-token hash.
    fn delete_by_access(&mut self, hash: TokenHash) {
        self.remove(self.by_access.get(&hash).copied());
        self.touched.access.push(hash);
    }

    /// A delete by session id.
    fn delete_by_id(&mut self, id: String) {
        self.remove(self.by_id.get(&id).copied());
        self.touched.ids.push(id);
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.touched.access.is_empty() && self.touched.ids.is_empty()
    }

    /// The keys touched and the surviving sessions, in their original order.
    pub(crate) fn finish(self) -> (Touched, Vec<Arc<StoredSession>>) {
        (self.touched, self.slots.into_iter().flatten().collect())
    }
}

/// The batch, reduced.
#[derive(Default)]
struct Plan {
    states: BTreeMap<String, Option<Arc<StateRecord>>>,
    codes: BTreeMap<String, Option<Arc<AuthCodeRecord>>>,
    clients: BTreeMap<String, Option<Arc<ClientRecord>>>,
    sessions: Option<(Touched, Vec<Arc<StoredSession>>)>,
}

impl Plan {
    fn new(writes: Vec<WriteOp>) -> Self {
        let mut plan = Self::default();
        let mut run = SessionRun::default();
        for op in writes {
            match op {
                WriteOp::StoreState(r) => {
                    plan.states.insert(r.state.clone(), Some(r));
                }
                WriteOp::RemoveState(k) => {
                    plan.states.insert(k, None);
                }
                WriteOp::StoreAuthCode(r) => {
                    plan.codes.insert(r.code.clone(), Some(r));
                }
                WriteOp::DeleteAuthCode(k) => {
                    plan.codes.insert(k, None);
                }
                WriteOp::StoreSession(s) => run.store(s),
                WriteOp::DeleteSessionByToken(t) => run.delete_by_access(TokenHash::of(t.expose())),
                WriteOp::DeleteSessionById(id) => run.delete_by_id(id),
                WriteOp::StoreClient(r) => {
                    plan.clients.insert(r.client_id.clone(), Some(r));
                }
                WriteOp::DeleteClient(k) => {
                    plan.clients.insert(k, None);
                }
            }
        }
        if !run.is_empty() {
            plan.sessions = Some(run.finish());
        }
        plan
    }

    async fn apply(&self, db: &Db) -> Result<(), Fail> {
        self.apply_states(db).await?;
        self.apply_codes(db).await?;
        self.apply_clients(db).await?;
        if let Some((touched, survivors)) = &self.sessions {
            session::replace_many(db, touched, survivors).await?;
        }
        Ok(())
    }

    async fn apply_states(&self, db: &Db) -> Result<(), Fail> {
        let (stores, deletes) = split(&self.states);
        delete_keys(db, &db.sql().states.delete_many, deletes, &Keys::default()).await?;
        if stores.is_empty() {
            return Ok(());
        }
        let mut c = StateColumns::default();
        for r in stores {
            c.push(r);
        }
        db.execute(
            &db.sql().states.upsert_many,
            &[
                &c.state,
                &c.client_id,
                &c.redirect_uri,
                &c.code_challenge,
                &c.code_challenge_method,
                &c.verifier,
                &c.client_state,
                &c.scopes,
                &c.expires_at,
                &c.created_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn apply_codes(&self, db: &Db) -> Result<(), Fail> {
        let (stores, deletes) = split(&self.codes);
        let logged = code::keys(deletes.iter().copied());
        delete_keys(db, &db.sql().codes.delete_many, deletes, &logged).await?;
        if stores.is_empty() {
            return Ok(());
        }
        let mut c = CodeColumns::default();
        for r in stores {
            c.push(r);
        }
        let logged = code::keys(c.code.iter().map(String::as_str));
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![
            &c.code,
            &c.session_id,
            &c.client_id,
            &c.redirect_uri,
            &c.code_challenge,
            &c.code_challenge_method,
            &c.scopes,
            &c.expires_at,
            &c.created_at,
        ];
        logged.append(db.logs(), &mut p);
        db.execute(&db.sql().codes.upsert_many, &p).await?;
        Ok(())
    }

    async fn apply_clients(&self, db: &Db) -> Result<(), Fail> {
        let (stores, deletes) = split(&self.clients);
        let logged = client::keys(deletes.iter().copied());
        delete_keys(db, &db.sql().clients.delete_many, deletes, &logged).await?;
        if stores.is_empty() {
            return Ok(());
        }
        let mut c = ClientColumns::default();
        for r in stores {
            c.push(db, r)?;
        }
        let logged = client::keys(c.client_id.iter().map(String::as_str));
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![
            &c.client_id,
            &c.secret,
            &c.method,
            &c.redirect_uris,
            &c.grant_types,
            &c.response_types,
            &c.scope,
            &c.client_name,
            &c.created_at,
        ];
        logged.append(db.logs(), &mut p);
        db.execute(&db.sql().clients.upsert_many, &p).await?;
        Ok(())
    }
}

/// The final stores and the deleted keys of one table.
fn split<T>(ops: &BTreeMap<String, Option<Arc<T>>>) -> (Vec<&T>, Vec<&str>) {
    let mut stores = Vec::new();
    let mut deletes = Vec::new();
    for (key, op) in ops {
        match op {
            Some(r) => stores.push(r.as_ref()),
            None => deletes.push(key.as_str()),
        }
    }
    (stores, deletes)
}

/// `DELETE ... = ANY($1)` of `keys`; `logged` holds their log keys, in
/// order, for the logged statements of codes and clients (empty for states,
/// which log nothing and whose statement takes no more parameters).
async fn delete_keys(db: &Db, sql: &str, keys: Vec<&str>, logged: &Keys) -> Result<(), Fail> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![&keys];
    logged.append(db.logs() && !logged.is_empty(), &mut p);
    db.execute(sql, &p).await?;
    Ok(())
}

#[derive(Default)]
struct StateColumns {
    state: Vec<String>,
    client_id: Vec<Option<String>>,
    redirect_uri: Vec<Option<String>>,
    code_challenge: Vec<Option<String>>,
    code_challenge_method: Vec<Option<String>>,
    verifier: Vec<Option<String>>,
    client_state: Vec<Option<String>>,
    scopes: Vec<JsonOwned>,
    expires_at: Vec<PgTime>,
    created_at: Vec<PgTime>,
}

impl StateColumns {
    fn push(&mut self, r: &StateRecord) {
        self.state.push(r.state.clone());
        self.client_id.push(r.client_id.clone());
        self.redirect_uri.push(r.redirect_uri.clone());
        self.code_challenge.push(r.code_challenge.clone());
        self.code_challenge_method
            .push(r.code_challenge_method.clone());
        self.verifier.push(
            r.provider_code_verifier
                .as_ref()
                .map(|v| Secret::expose(v).to_owned()),
        );
        self.client_state.push(r.client_state.clone());
        self.scopes
            .push(JsonOwned(encode_list(&r.provider_scopes_requested)));
        self.expires_at.push(PgTime(r.expires_at));
        self.created_at.push(PgTime(r.created_at));
    }
}

#[derive(Default)]
struct CodeColumns {
    code: Vec<String>,
    session_id: Vec<String>,
    client_id: Vec<Option<String>>,
    redirect_uri: Vec<Option<String>>,
    code_challenge: Vec<Option<String>>,
    code_challenge_method: Vec<Option<String>>,
    scopes: Vec<JsonOwned>,
    expires_at: Vec<PgTime>,
    created_at: Vec<PgTime>,
}

impl CodeColumns {
    fn push(&mut self, r: &AuthCodeRecord) {
        self.code.push(r.code.clone());
        self.session_id.push(r.session_id.clone());
        self.client_id.push(r.client_id.clone());
        self.redirect_uri.push(r.redirect_uri.clone());
        self.code_challenge.push(r.code_challenge.clone());
        self.code_challenge_method
            .push(r.code_challenge_method.clone());
        self.scopes.push(JsonOwned(encode_list(&r.scopes)));
        self.expires_at.push(PgTime(r.expires_at));
        self.created_at.push(PgTime(r.created_at));
    }
}

#[derive(Default)]
struct ClientColumns {
    client_id: Vec<String>,
    secret: Vec<Option<String>>,
    method: Vec<Option<&'static str>>,
    redirect_uris: Vec<JsonOwned>,
    grant_types: Vec<JsonOwned>,
    response_types: Vec<JsonOwned>,
    scope: Vec<Option<String>>,
    client_name: Vec<Option<String>>,
    created_at: Vec<PgTime>,
}

impl ClientColumns {
    fn push(&mut self, db: &Db, r: &ClientRecord) -> Result<(), StoreError> {
        let e = client::encode(db.codec(), r)?;
        self.client_id.push(r.client_id.clone());
        self.secret.push(e.secret);
        self.method.push(e.method);
        self.redirect_uris.push(JsonOwned(e.redirect_uris));
        self.grant_types.push(JsonOwned(e.grant_types));
        self.response_types.push(JsonOwned(e.response_types));
        self.scope.push(r.scope.clone());
        self.client_name.push(r.client_name.clone());
        self.created_at.push(PgTime(r.created_at));
        Ok(())
    }
}

impl BatchWriteStore for PostgresTokenStore {
    /// Checks every write, then applies the reduced batch (see the module
    /// docs) in one transaction: one commit, or, when anything fails (a
    /// missing encryption key, a database error), a rollback that leaves the
    /// store unchanged.
    ///
    /// As in `tokenstore-sqlite`, [`WriteOp::RemoveState`] deletes the row
    /// whatever it holds. An empty batch opens no transaction; after `close`
    /// every batch fails with [`StoreError::Closed`].
    fn apply_batch(&self, writes: Vec<WriteOp>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for w in &writes {
                w.validate()?;
            }
            if writes.is_empty() {
                return self
                    .run("apply_batch", Mode::Auto, |_| async { Ok(()) })
                    .await;
            }
            let plan = Arc::new(Plan::new(writes));
            self.write("apply_batch", Mode::Tx, move |db| {
                let plan = Arc::clone(&plan);
                async move { plan.apply(&db).await }
            })
            .await
        })
    }
}
