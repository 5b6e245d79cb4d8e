//! A deterministic generator of mixed writes (every `WriteOp` kind) over small
//! key spaces, so keys collide: the batches a write buffer would flush.

use crate::model::Rng;
use std::sync::Arc;
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, Secret, StateRecord, StoredSession, Timestamp,
    TokenEndpointAuthMethod, UserInfo,
};

/// How many `WriteOp` kinds there are.
pub(crate) const KINDS: usize = 9;

/// The index of `op`'s kind, below [`KINDS`].
pub(crate) fn kind(op: &WriteOp) -> usize {
    match op {
        WriteOp::StoreState(_) => 0,
        WriteOp::RemoveState(_) => 1,
        WriteOp::StoreAuthCode(_) => 2,
        WriteOp::DeleteAuthCode(_) => 3,
        WriteOp::StoreSession(_) => 4,
        WriteOp::DeleteSessionByToken(_) => 5,
        WriteOp::DeleteSessionById(_) => 6,
        WriteOp::StoreClient(_) => 7,
        WriteOp::DeleteClient(_) => 8,
    }
}

/// Makes writes from a seed; records get times around `now`, some already
/// expired.
pub(crate) struct Gen {
    rng: Rng,
    now: Timestamp,
}

impl Gen {
    pub(crate) fn new(seed: u64, now: Timestamp) -> Self {
        Self {
            rng: Rng(seed),
            now,
        }
    }

    /// `n` writes: single random writes mixed with short stories on one key
    /// (stored then removed, login → rotation → logout, stored → replaced →
    /// deleted).
    pub(crate) fn writes(&mut self, n: usize) -> Vec<WriteOp> {
        let mut out = Vec::with_capacity(n + 4);
        while out.len() < n {
            if self.rng.below(4) == 0 {
                self.story(&mut out);
            } else {
                out.push(self.write());
            }
        }
        out.truncate(n);
        out
    }

    fn write(&mut self) -> WriteOp {
        match self.rng.below(10) {
            0 => WriteOp::StoreState(self.state()),
            1 => WriteOp::RemoveState(self.rng.key("st", 5)),
            2 => WriteOp::StoreAuthCode(self.code()),
            3 => WriteOp::DeleteAuthCode(self.rng.key("code", 5)),
            4 | 5 => WriteOp::StoreSession(self.random_session()),
            6 => WriteOp::DeleteSessionByToken(Secret::new(self.rng.key("acc", 10))),
            7 => WriteOp::DeleteSessionById(self.rng.key("sid", 6)),
            8 => WriteOp::StoreClient(self.client()),
            _ => WriteOp::DeleteClient(self.rng.key("client", 4)),
        }
    }

    fn story(&mut self, out: &mut Vec<WriteOp>) {
        match self.rng.below(4) {
            0 => {
                let state = self.state();
                let key = state.state.clone();
                out.extend([WriteOp::StoreState(state), WriteOp::RemoveState(key)]);
            }
            1 => {
                let code = self.code();
                let key = code.code.clone();
                out.extend([WriteOp::StoreAuthCode(code), WriteOp::DeleteAuthCode(key)]);
            }
            2 => self.login_rotation_logout(out),
            _ => {
                let (first, second) = (self.client(), self.client());
                let id = first.client_id.clone();
                let mut replaced = ClientRecord::clone(&second);
                replaced.client_id = id.clone();
                out.push(WriteOp::StoreClient(first));
                out.push(WriteOp::StoreClient(Arc::new(replaced)));
                if self.rng.below(3) > 0 {
                    out.push(WriteOp::DeleteClient(id));
                }
            }
        }
    }

    /// A login, a refresh that rotates both tokens under the same session id,
    /// and (usually) a logout by the new access token or by the id.
    fn login_rotation_logout(&mut self, out: &mut Vec<WriteOp>) {
        let sid = self.rng.key("sid", 6);
        let (a1, r1) = (self.rng.key("acc", 10), self.rng.key("ref", 8));
        let (a2, r2) = (self.rng.key("acc", 10), self.rng.key("ref", 8));
        out.push(WriteOp::StoreSession(self.session(&sid, &a1, Some(r1))));
        out.push(WriteOp::StoreSession(self.session(&sid, &a2, Some(r2))));
        match self.rng.below(3) {
            0 => out.push(WriteOp::DeleteSessionByToken(Secret::new(a2))),
            1 => out.push(WriteOp::DeleteSessionById(sid)),
            _ => {}
        }
    }

    fn state(&mut self) -> Arc<StateRecord> {
        let key = self.rng.key("st", 5);
        let mut s = StateRecord::new(key, self.rng.time(self.now), self.now);
        s.client_id = (self.rng.below(2) == 0).then(|| self.rng.key("client", 4));
        s.provider_code_verifier = (self.rng.below(2) == 0).then(|| Secret::new("verifier"));
        s.provider_scopes_requested = vec![self.rng.key("scope", 3)];
        Arc::new(s)
    }

    fn code(&mut self) -> Arc<AuthCodeRecord> {
        let (key, sid) = (self.rng.key("code", 5), self.rng.key("sid", 6));
        let mut c = AuthCodeRecord::new(key, sid, self.rng.time(self.now), self.now);
        c.redirect_uri = (self.rng.below(2) == 0).then(|| "https://app.example/cb".into());
        c.scopes = vec![self.rng.key("scope", 3)];
        Arc::new(c)
    }

    fn random_session(&mut self) -> Arc<StoredSession> {
        let (sid, access) = (self.rng.key("sid", 6), self.rng.key("acc", 10));
        let refresh = (self.rng.below(3) > 0).then(|| self.rng.key("ref", 8));
        self.session(&sid, &access, refresh)
    }

    fn session(&mut self, sid: &str, access: &str, refresh: Option<String>) -> Arc<StoredSession> {
        let user = UserInfo::new("github", self.rng.key("user", 3), "octocat");
        let expires = self.rng.time(self.now);
        let mut s = StoredSession::new(sid, user, access, expires, self.now);
        s.refresh_expires_at = refresh.as_ref().and_then(|_| self.rng.maybe_time(self.now));
        s.refresh_token = refresh.map(Secret::new);
        s.provider_access_token = (self.rng.below(2) == 0).then(|| Secret::new("provider-at"));
        s.issued_at = self.rng.maybe_time(self.now);
        Arc::new(s)
    }

    fn client(&mut self) -> Arc<ClientRecord> {
        let mut c = ClientRecord::new(self.rng.key("client", 4), self.now);
        c.client_secret = (self.rng.below(2) == 0).then(|| Secret::new("client-secret"));
        c.token_endpoint_auth_method =
            (self.rng.below(2) == 0).then_some(TokenEndpointAuthMethod::ClientSecretBasic);
        c.redirect_uris = vec![self.rng.key("https://app.example/", 3)];
        c.client_name = Some(self.rng.key("app ", 5));
        Arc::new(c)
    }
}
