//! The workload: logical clients running OAuth flows against the stack.
//!
//! Each client owns its keys (its states, codes, session ids and tokens) and
//! writes them one call at a time; the others only read them or race one-time
//! calls on the states and codes it publishes (a replayed callback). Every
//! call is recorded in the [`Checker`] when it begins and when it returns.

use super::check::{Checker, ReadId, Status};
use super::executor::SimRuntime;
use super::rng::Rng;
use super::store::SimStore;
use super::trace::Trace;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokenstore::cache::CacheMetrics;
use tokenstore::{BufferedTokenStore, CachingTokenStore};
use tokenstore_core::buffer::WriteOp;
use tokenstore_core::{
    AuthCodeRecord, Clock, ManualClock, Secret, StateRecord, StoreError, StoredSession, Timestamp,
    TokenStore, UserInfo,
};

/// The wrapper stacks the simulation drives.
pub(crate) trait SimStack: TokenStore + 'static {
    /// The write buffer in the stack.
    fn buffer(&self) -> &BufferedTokenStore<SimStore>;
    /// The read cache's counters, when the stack has one.
    fn cache_metrics(&self) -> Option<CacheMetrics>;
}

impl SimStack for BufferedTokenStore<SimStore> {
    fn buffer(&self) -> &BufferedTokenStore<SimStore> {
        self
    }
    fn cache_metrics(&self) -> Option<CacheMetrics> {
        None
    }
}

impl SimStack for CachingTokenStore<BufferedTokenStore<SimStore>> {
    fn buffer(&self) -> &BufferedTokenStore<SimStore> {
        self.inner()
    }
    fn cache_metrics(&self) -> Option<CacheMetrics> {
        Some(self.metrics())
    }
}

/// A state or code another client may race for.
#[derive(Debug, Clone)]
enum OneTimeKey {
    State(String),
    Code(String),
}

/// What the clients share.
pub(crate) struct World<S> {
    pub(crate) store: Arc<S>,
    pub(crate) chk: Arc<Mutex<Checker>>,
    pub(crate) trace: Trace,
    pub(crate) rt: SimRuntime,
    pub(crate) clock: ManualClock,
    pub(crate) start: Timestamp,
    published: Mutex<Vec<OneTimeKey>>,
    latch: Latch,
    /// Set when `close()` begins.
    pub(crate) closing: std::sync::atomic::AtomicBool,
    /// With `Ack::Durable` over the atomic-batch delegate: the buffer's
    /// `max_retries`, to check each durable writer's outcome against the first
    /// batch that held its write.
    durable_retries: Option<u32>,
}

impl<S: SimStack> World<S> {
    pub(crate) fn new(
        store: Arc<S>,
        chk: Arc<Mutex<Checker>>,
        trace: Trace,
        rt: SimRuntime,
        clients: usize,
        durable_retries: Option<u32>,
    ) -> Self {
        let clock = rt.clock();
        let start = clock.now();
        Self {
            store,
            chk,
            trace,
            rt,
            clock,
            start,
            published: Mutex::new(Vec::new()),
            latch: Latch::new(clients),
            closing: std::sync::atomic::AtomicBool::new(false),
            durable_retries,
        }
    }

    fn chk(&self) -> MutexGuard<'_, Checker> {
        self.chk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self, c: usize, what: String) {
        let t = self.clock.now().saturating_duration_since(self.start);
        self.trace
            .line(format!("t={:>9}us c{c} {what}", t.as_micros()));
    }

    /// Waits until every client finished.
    pub(crate) async fn clients_done(&self) {
        std::future::poll_fn(|cx| self.latch.poll(cx.waker())).await;
    }
}

/// Counts clients down; wakes the one waiter at zero.
struct Latch(Mutex<(usize, Option<Waker>)>);

impl Latch {
    fn new(n: usize) -> Self {
        Self(Mutex::new((n, None)))
    }
    fn count_down(&self) {
        let waker = {
            let mut g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            g.0 -= 1;
            if g.0 == 0 { g.1.take() } else { None }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
    fn poll(&self, waker: &Waker) -> Poll<()> {
        let mut g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if g.0 == 0 {
            Poll::Ready(())
        } else {
            g.1 = Some(waker.clone());
            Poll::Pending
        }
    }
}

struct CountDown<'a>(&'a Latch);

impl Drop for CountDown<'_> {
    fn drop(&mut self) {
        self.0.count_down();
    }
}

/// A session the client may hold.
#[derive(Debug, Clone)]
struct Sess {
    at: String,
    rt: String,
}

struct Client<'w, S> {
    id: usize,
    w: &'w World<S>,
    rng: Rng,
    n: u64,
    logins: u64,
    sid: String,
    /// Sessions of `sid` that may be stored (the last is the current one).
    maybe: Vec<Sess>,
    /// Tokens rotated away or logged out (must not come back).
    retired: Vec<String>,
    closed: bool,
}

const LIFETIME: Duration = Duration::from_secs(3600);

fn status(r: &Result<(), StoreError>) -> Status {
    match r {
        Ok(()) => Status::Ok,
        Err(StoreError::Closed) => Status::Rejected,
        Err(_) => Status::Failed,
    }
}

fn outcome<T>(r: &Result<T, StoreError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(StoreError::Closed) => "closed",
        Err(_) => "error",
    }
}

/// Runs one client: `ops` operations, or until the store is closed.
pub(crate) async fn client<S: SimStack>(w: Arc<World<S>>, id: usize, rng: Rng, ops: u64) {
    let _done = CountDown(&w.latch);
    let mut c = Client {
        id,
        w: &w,
        rng,
        n: 0,
        logins: 0,
        sid: String::new(),
        maybe: Vec::new(),
        retired: Vec::new(),
        closed: false,
    };
    for _ in 0..ops {
        if c.closed {
            break;
        }
        let roll = c.rng.below(100);
        match roll {
            _ if c.maybe.is_empty() => c.login().await,
            0..=9 => c.login().await,
            10..=44 => c.validate().await,
            45..=59 => c.refresh().await,
            60..=69 => c.logout().await,
            70..=79 => c.replay().await,
            80..=84 => c.flush().await,
            _ => c.think().await,
        }
        if c.rng.chance(300) {
            c.think().await;
        }
    }
    w.log(id, "done".into());
}

impl<S: SimStack> Client<'_, S> {
    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    fn now(&self) -> Timestamp {
        self.w.clock.now()
    }

    fn note_closed<T>(&mut self, r: &Result<T, StoreError>) {
        if matches!(r, Err(StoreError::Closed)) {
            self.closed = true;
        }
    }

    async fn think(&mut self) {
        let us = self.rng.range(1, 3_000);
        self.w.rt.sleep_for(Duration::from_micros(us)).await;
    }

    /// A write: versions recorded before the call, the outcome after.
    async fn write(
        &mut self,
        what: String,
        effects: Vec<(String, Option<String>)>,
        op: WriteOp,
    ) -> Status {
        let wid = self.w.chk().begin_write(effects);
        let from = self.w.store.buffer().inner().batch_calls();
        let r = super::apply_write(&*self.w.store, op.clone()).await;
        let st = status(&r);
        self.w.log(self.id, format!("{what} -> {}", outcome(&r)));
        self.check_durable_outcome(&what, from, &op, st);
        self.w.chk().end_write(wid, st, Some(op));
        self.note_closed(&r);
        st
    }

    /// A durable writer gets the outcome of the first batch that held its
    /// write: `Ok` exactly when that batch was applied (a batch that failed for
    /// good answers `Err`, even if a later one applies the requeued write).
    fn check_durable_outcome(&self, what: &str, from: usize, op: &WriteOp, st: Status) {
        let Some(max_retries) = self.w.durable_retries else {
            return;
        };
        if !matches!(st, Status::Ok | Status::Failed) {
            return;
        }
        let delegate = self.w.store.buffer().inner();
        match (delegate.first_batch_applied(from, op, max_retries), st) {
            (Some(true), Status::Ok) | (Some(false) | None, Status::Failed) => {}
            (first, st) => self.w.chk().violation(format!(
                "durable {what} answered {st:?}, but the first batch holding it {}",
                match first {
                    Some(true) => "was applied",
                    Some(false) => "failed for good",
                    None => "never came",
                }
            )),
        }
    }

    async fn login(&mut self) {
        let n = self.next();
        let now = self.now();
        // Authorization request: the state.
        let st = format!("st-{}-{n}", self.id);
        let rec = Arc::new(StateRecord::new(st.clone(), now + LIFETIME, now));
        let stored = self
            .write(
                format!("store_state(st{n})"),
                vec![(format!("state:{st}"), Some(st.clone()))],
                WriteOp::StoreState(rec),
            )
            .await;
        if stored == Status::Rejected {
            return;
        }
        if self.rng.chance(300) {
            self.publish(OneTimeKey::State(st.clone()));
        }
        if self.rng.chance(200) {
            self.think().await;
        }
        // The callback: consume the state.
        let won = self.consume_state(&st, "consume_state").await;
        if won != Some(true) {
            return;
        }
        // The code, loaded and consumed by the token endpoint.
        if self.maybe.is_empty() || self.rng.chance(300) {
            self.logins += 1;
            self.sid = format!("sid-{}-{}", self.id, self.logins);
            self.maybe.clear();
        }
        let code = format!("ac-{}-{n}", self.id);
        let rec = Arc::new(AuthCodeRecord::new(
            code.clone(),
            self.sid.clone(),
            now + LIFETIME,
            now,
        ));
        let stored = self
            .write(
                format!("store_auth_code(ac{n})"),
                vec![(format!("code:{code}"), Some(code.clone()))],
                WriteOp::StoreAuthCode(rec),
            )
            .await;
        if stored == Status::Rejected {
            return;
        }
        if self.rng.chance(300) {
            self.publish(OneTimeKey::Code(code.clone()));
        }
        let key = format!("code:{code}");
        let r = self.w.chk().begin_read();
        let loaded = self.w.store.load_auth_code(&code).await;
        self.w.log(
            self.id,
            format!("load_auth_code(ac{n}) -> {}", outcome(&loaded)),
        );
        self.note_closed(&loaded);
        if let Ok(found) = &loaded {
            if let Some(f) = found
                && f.code != code
            {
                self.w
                    .chk()
                    .violation(format!("load_auth_code({code}) returned another code"));
            }
            self.w
                .chk()
                .end_read(&key, r, found.as_ref().map(|f| f.code.as_str()));
        }
        if self.rng.chance(100) {
            // The client gives up: the code is deleted without being used.
            self.write(
                format!("delete_auth_code(ac{n})"),
                vec![(key, None)],
                WriteOp::DeleteAuthCode(code.clone()),
            )
            .await;
            return;
        }
        let won = self.try_delete_code(&code, "try_delete_auth_code").await;
        if won != Some(true) {
            return;
        }
        self.store_new_session("login").await;
    }

    /// `consume_state`, checked: `Some(won)` when it answered.
    async fn consume_state(&mut self, st: &str, what: &str) -> Option<bool> {
        let key = format!("state:{st}");
        let r = self.w.chk().begin_read();
        let wid = self.w.chk().begin_one_time(&key);
        let res = self.w.store.consume_state(st).await;
        self.w.log(
            self.id,
            format!(
                "{what}({st}) -> {}",
                match &res {
                    Ok(Some(_)) => "won",
                    Ok(None) => "none",
                    Err(_) => outcome(&res),
                }
            ),
        );
        self.note_closed(&res);
        let mut chk = self.w.chk();
        match res {
            Ok(found) => {
                if let Some(f) = &found
                    && f.state != st
                {
                    chk.violation(format!("consume_state({st}) returned another state"));
                }
                let got = found.as_ref().map(|f| f.state.as_str());
                chk.end_read_except(&key, r, got, Some(&wid));
                let won = found.is_some();
                chk.end_one_time(wid, &key, won, WriteOp::RemoveState(st.to_owned()));
                Some(won)
            }
            Err(_) => {
                chk.end_one_time(wid, &key, false, WriteOp::RemoveState(st.to_owned()));
                None
            }
        }
    }

    /// `try_delete_auth_code`, checked: `Some(won)` when it answered.
    async fn try_delete_code(&mut self, code: &str, what: &str) -> Option<bool> {
        let key = format!("code:{code}");
        let r = self.w.chk().begin_read();
        let wid = self.w.chk().begin_one_time(&key);
        let res = self.w.store.try_delete_auth_code(code).await;
        self.w.log(
            self.id,
            format!("{what}({code}) -> {:?}", res.as_ref().ok()),
        );
        self.note_closed(&res);
        let mut chk = self.w.chk();
        match res {
            Ok(won) => {
                chk.end_read_except(&key, r, won.then_some(code), Some(&wid));
                chk.end_one_time(wid, &key, won, WriteOp::DeleteAuthCode(code.to_owned()));
                Some(won)
            }
            Err(_) => {
                chk.end_one_time(wid, &key, false, WriteOp::DeleteAuthCode(code.to_owned()));
                None
            }
        }
    }

    fn publish(&mut self, k: OneTimeKey) {
        let mut p = self
            .w
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        p.push(k);
    }

    /// Another client's state or code, replayed.
    async fn replay(&mut self) {
        let picked = {
            let p = self
                .w
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if p.is_empty() {
                None
            } else {
                Some(self.rng.pick(&p).clone())
            }
        };
        match picked {
            Some(OneTimeKey::State(st)) => {
                self.consume_state(&st, "replay consume_state").await;
            }
            Some(OneTimeKey::Code(code)) => {
                self.try_delete_code(&code, "replay try_delete_auth_code")
                    .await;
            }
            None => self.think().await,
        }
    }

    /// Stores a new session for `sid`, replacing every one it may hold.
    async fn store_new_session(&mut self, why: &str) {
        let n = self.next();
        let now = self.now();
        let sess = Sess {
            at: format!("at-{}-{n}", self.id),
            rt: format!("rt-{}-{n}", self.id),
        };
        let user = UserInfo::new("sim", format!("user-{}", self.id), format!("u{}", self.id));
        let mut record =
            StoredSession::new(self.sid.clone(), user, sess.at.clone(), now + LIFETIME, now);
        record.refresh_token = Some(Secret::new(sess.rt.clone()));
        record.refresh_expires_at = Some(now + 2 * LIFETIME);
        let mut effects = Vec::new();
        for old in &self.maybe {
            effects.push((format!("tok:{}", old.at), None));
            effects.push((format!("rt:{}", old.rt), None));
        }
        effects.push((format!("tok:{}", sess.at), Some(sess.at.clone())));
        effects.push((format!("sid:{}", self.sid), Some(sess.at.clone())));
        effects.push((format!("rt:{}", sess.rt), Some(sess.at.clone())));
        let st = self
            .write(
                format!("store_session({why}, at{n})"),
                effects,
                WriteOp::StoreSession(Arc::new(record)),
            )
            .await;
        match st {
            Status::Ok => {
                self.retired.extend(self.maybe.drain(..).map(|s| s.at));
                self.maybe.push(sess);
            }
            Status::Failed => self.maybe.push(sess),
            Status::Rejected | Status::Pending => {}
        }
    }

    async fn validate(&mut self) {
        let n = self.next();
        let Some(cur) = self.maybe.last().cloned() else {
            return;
        };
        enum By {
            Token(String),
            Id(String),
        }
        let (by, what) = match self.rng.below(10) {
            0..=4 => (By::Token(cur.at), "load_session_by_token"),
            5 | 6 => (By::Id(self.sid.clone()), "load_session_by_id"),
            7 if !self.retired.is_empty() => (
                By::Token(self.rng.pick(&self.retired).clone()),
                "load_session_by_token(retired)",
            ),
            _ => (
                By::Token(format!("unknown-{}-{n}", self.id)),
                "load_session_by_token(unknown)",
            ),
        };
        let r = self.w.chk().begin_read();
        let (key, res) = match by {
            By::Token(t) => (
                format!("tok:{t}"),
                self.w.store.load_session_by_token(&t).await,
            ),
            By::Id(id) => (
                format!("sid:{id}"),
                self.w.store.load_session_by_id(&id).await,
            ),
        };
        self.end_session_read(&key, r, &res, what);
    }

    async fn refresh(&mut self) {
        let Some(cur) = self.maybe.last().cloned() else {
            return;
        };
        let key = format!("rt:{}", cur.rt);
        let r = self.w.chk().begin_read();
        let res = self.w.store.load_session_by_refresh_token(&cur.rt).await;
        let present = self.end_session_read(&key, r, &res, "load_session_by_refresh_token");
        if present {
            self.store_new_session("refresh").await;
        }
    }

    async fn logout(&mut self) {
        let Some(cur) = self.maybe.last().cloned() else {
            return;
        };
        let n = self.n;
        let mut effects = Vec::new();
        let by_id = self.rng.chance(500);
        let (op, what) = if by_id {
            for m in &self.maybe {
                effects.push((format!("tok:{}", m.at), None));
                effects.push((format!("rt:{}", m.rt), None));
            }
            (
                WriteOp::DeleteSessionById(self.sid.clone()),
                format!("delete_session_by_id(n{n})"),
            )
        } else {
            effects.push((format!("tok:{}", cur.at), None));
            effects.push((format!("rt:{}", cur.rt), None));
            (
                WriteOp::DeleteSessionByToken(Secret::new(cur.at.clone())),
                format!("delete_session_by_token(n{n})"),
            )
        };
        effects.push((format!("sid:{}", self.sid), None));
        if self.write(what, effects, op).await == Status::Ok {
            self.retired.extend(self.maybe.drain(..).map(|s| s.at));
        }
    }

    async fn flush(&mut self) {
        let r = self.w.chk().begin_read();
        let res = self.w.store.buffer().flush().await;
        self.w.log(self.id, format!("flush -> {}", outcome(&res)));
        self.note_closed(&res);
        // An Ok flush proves durability, even one overlapping a failed close.
        if res.is_ok() {
            self.w.chk().flushed(r);
        }
    }

    /// Checks a session read; returns whether it found a session.
    fn end_session_read(
        &mut self,
        key: &str,
        r: ReadId,
        res: &Result<Option<Arc<StoredSession>>, StoreError>,
        what: &str,
    ) -> bool {
        self.w.log(
            self.id,
            format!(
                "{what} -> {}",
                match res {
                    Ok(Some(_)) => "found",
                    Ok(None) => "none",
                    Err(_) => outcome(res),
                }
            ),
        );
        self.note_closed(res);
        let Ok(found) = res else {
            return false;
        };
        let mut chk = self.w.chk();
        if let Some(s) = found {
            let (kind, value) = key.split_once(':').expect("kind:value");
            let consistent = match kind {
                "tok" => s.access_token.expose() == value,
                "sid" => s.session_id == value,
                "rt" => s
                    .refresh_token
                    .as_ref()
                    .is_some_and(|t| t.expose() == value),
                _ => false,
            };
            if !consistent {
                chk.violation(format!(
                    "{what} for {key} returned a session without that key"
                ));
            }
        }
        chk.end_read(key, r, found.as_ref().map(|s| s.access_token.expose()));
        found.is_some()
    }
}
