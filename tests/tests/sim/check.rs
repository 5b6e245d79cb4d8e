//! The invariants, and what they are checked against.
//!
//! Every key the workload touches (a state, a code, and a session's access
//! token, id and refresh token) has a history of versions: the initial
//! absence, then one version per write that names it, in the order its one
//! owner issued them (each key is written by one client, sequentially; other
//! clients only read it or race one-time calls on it). A version is pending
//! until its call returns, then `Ok`, `Failed` (an error after the write was
//! accepted: the buffer keeps it and applies it later) or `Rejected` (never
//! accepted, or a one-time call that did not win).
//!
//! - Stale reads: a read that began after version `L` completed must return
//!   `L` or a later version that was not rejected.
//! - Durability: the delegate's value of a key is always `D` (the last version
//!   acknowledged durably: `Ack::Durable`, or covered by a successful
//!   `flush()`) or a later one; checked whenever the delegate may have changed
//!   and after a crash.
//! - One-time calls: at most one `consume_state` / `try_delete_auth_code` wins
//!   per stored value.
//! - Durable outcomes (`Ack::Durable` over the atomic-batch delegate, in
//!   `client.rs`): a write answers `Ok` exactly when the first buffer batch
//!   that held it was applied (the delegate logs its batch calls).
//! - Close: after `close()` returned `Ok`, the delegate equals the model (every
//!   accepted write applied one by one); after `WritesNotApplied { count }`,
//!   the delegate plus the `count` writes of `take_unapplied()` equals it.

use super::trace::Trace;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokenstore_core::buffer::{Step, WriteOp, apply};
use tokenstore_core::{Contents, MemoryTokenStore, StoreError};

/// Polls a memory-store future, which never waits.
pub(crate) fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a memory-store call waited"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Ok,
    Failed,
    Rejected,
}

#[derive(Debug, Clone)]
struct Ver {
    /// What the key holds after this version: an identifying string (a token,
    /// a state, a code), or `None` for absent.
    val: Option<String>,
    done: u64,
    status: Status,
    durable: bool,
}

/// A write in progress: the versions it created.
#[derive(Debug)]
#[must_use = "a write must be ended"]
pub(crate) struct WriteId(Vec<(String, usize)>);

/// A read in progress: when it began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadId(u64);

/// Counts of what was checked (to show the checks are not vacuous).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) reads: u64,
    pub(crate) reads_present: u64,
    pub(crate) writes_ok: u64,
    pub(crate) writes_failed: u64,
    pub(crate) writes_rejected: u64,
    pub(crate) durable_acks: u64,
    pub(crate) one_time_wins: u64,
    pub(crate) one_time_losses: u64,
    pub(crate) durability_checks: u64,
}

pub(crate) struct Checker {
    ev: u64,
    hist: HashMap<String, Vec<Ver>>,
    consumed: HashMap<String, u32>,
    /// The reference: every accepted write applied one by one.
    model: MemoryTokenStore,
    /// The delegate's committed state.
    delegate: Arc<MemoryTokenStore>,
    durable_mode: bool,
    trace: Trace,
    /// Keys acknowledged durably since the last durability check.
    newly_durable: bool,
    /// Delegate changes since the last check.
    changes: u64,
    pub(crate) violations: Vec<String>,
    pub(crate) counts: Counts,
}

impl Checker {
    pub(crate) fn new(
        model: MemoryTokenStore,
        delegate: Arc<MemoryTokenStore>,
        durable_mode: bool,
        trace: Trace,
    ) -> Self {
        Self {
            ev: 1,
            hist: HashMap::new(),
            consumed: HashMap::new(),
            model,
            delegate,
            durable_mode,
            trace,
            newly_durable: false,
            changes: 0,
            violations: Vec::new(),
            counts: Counts::default(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.ev += 1;
        self.ev
    }

    pub(crate) fn violation(&mut self, what: String) {
        self.trace.line(format!("VIOLATION: {what}"));
        self.violations.push(what);
    }

    /// Begins a write that sets each key to its value.
    pub(crate) fn begin_write(&mut self, effects: Vec<(String, Option<String>)>) -> WriteId {
        let _ = self.tick();
        let mut ids = Vec::with_capacity(effects.len());
        for (key, val) in effects {
            let versions = self.hist.entry(key.clone()).or_insert_with(|| {
                vec![Ver {
                    val: None,
                    done: 0,
                    status: Status::Ok,
                    durable: true,
                }]
            });
            versions.push(Ver {
                val,
                done: u64::MAX,
                status: Status::Pending,
                durable: false,
            });
            ids.push((key, versions.len() - 1));
        }
        WriteId(ids)
    }

    /// Ends a write. `model_op` is what it did, applied to the model when the
    /// write was accepted (`Ok` or `Failed`).
    pub(crate) fn end_write(&mut self, w: WriteId, status: Status, model_op: Option<WriteOp>) {
        match status {
            Status::Ok => self.counts.writes_ok += 1,
            Status::Failed => self.counts.writes_failed += 1,
            Status::Rejected => self.counts.writes_rejected += 1,
            Status::Pending => unreachable!("a write ends with an outcome"),
        }
        let durable = status == Status::Ok && self.durable_mode;
        self.finish(w, status, durable, model_op);
    }

    fn finish(&mut self, w: WriteId, status: Status, durable: bool, model_op: Option<WriteOp>) {
        let done = self.tick();
        if durable {
            self.counts.durable_acks += 1;
            self.newly_durable = true;
        }
        for (key, i) in w.0 {
            let v = &mut self.hist.get_mut(&key).expect("begun")[i];
            v.status = status;
            v.done = done;
            v.durable = durable;
        }
        if matches!(status, Status::Ok | Status::Failed)
            && let Some(op) = model_op
        {
            let applied = now_or_never(apply(&self.model, Step::Single(op)));
            if let Err(e) = applied {
                self.violation(format!("the model refused an accepted write: {e}"));
            }
        }
    }

    /// A one-time call (`consume_state`, `try_delete_auth_code`) began on `key`.
    pub(crate) fn begin_one_time(&mut self, key: &str) -> WriteId {
        self.begin_write(vec![(key.to_owned(), None)])
    }

    /// A one-time call ended: `won` when it returned the record / `true`.
    pub(crate) fn end_one_time(&mut self, w: WriteId, key: &str, won: bool, model_op: WriteOp) {
        if won {
            self.counts.one_time_wins += 1;
            let n = self.consumed.entry(key.to_owned()).or_insert(0);
            *n += 1;
            if *n > 1 {
                let n = *n;
                self.violation(format!("one-time key {key} was consumed {n} times"));
            }
            // Not durable even with `Ack::Durable`: a one-time call the buffer
            // decides (the record was still held) returns before the removal
            // it queues is committed.
            self.finish(w, Status::Ok, false, Some(model_op));
        } else {
            self.counts.one_time_losses += 1;
            self.finish(w, Status::Rejected, false, None);
        }
    }

    pub(crate) fn begin_read(&mut self) -> ReadId {
        ReadId(self.tick())
    }

    /// A read of `key` that began at `r` returned `got`.
    pub(crate) fn end_read(&mut self, key: &str, r: ReadId, got: Option<&str>) {
        self.end_read_except(key, r, got, None);
    }

    /// Like [`end_read`](Self::end_read), for the answer of a one-time call:
    /// its own version (`own`) cannot explain what it read.
    pub(crate) fn end_read_except(
        &mut self,
        key: &str,
        r: ReadId,
        got: Option<&str>,
        own: Option<&WriteId>,
    ) {
        let _ = self.tick();
        self.counts.reads += 1;
        if got.is_some() {
            self.counts.reads_present += 1;
        }
        let Some(versions) = self.hist.get(key) else {
            if got.is_some() {
                self.violation(format!("read of never-written key {key} returned a value"));
            }
            return;
        };
        let last = versions
            .iter()
            .rposition(|v| v.status == Status::Ok && v.done < r.0)
            .expect("the initial version");
        let own = own.and_then(|w| w.0.iter().find(|(k, _)| k == key).map(|(_, i)| *i));
        let ok = versions.iter().enumerate().skip(last).any(|(i, v)| {
            Some(i) != own && v.status != Status::Rejected && v.val.as_deref() == got
        });
        if !ok {
            let expected: Vec<String> = versions[last..]
                .iter()
                .filter(|v| v.status != Status::Rejected)
                .map(|v| describe(v.val.as_deref()))
                .collect();
            self.violation(format!(
                "stale or unknown read of {key}: got {}, allowed {expected:?} (version {last} of {} completed before the read began)",
                describe(got),
                versions.len() - 1
            ));
        }
    }

    /// A `flush()` that began at `r` succeeded: every write completed before it
    /// is durable.
    pub(crate) fn flushed(&mut self, r: ReadId) {
        for versions in self.hist.values_mut() {
            for v in versions.iter_mut() {
                if matches!(v.status, Status::Ok | Status::Failed) && v.done < r.0 && !v.durable {
                    v.durable = true;
                    self.newly_durable = true;
                }
            }
        }
    }

    /// Whether a durability check is due: something became durable, or the
    /// delegate changed (every 8th change, to keep a run fast; the end of the
    /// run is always checked).
    pub(crate) fn take_check_due(&mut self, delegate_changed: bool) -> bool {
        self.changes += u64::from(delegate_changed);
        if std::mem::take(&mut self.newly_durable) || self.changes >= 8 {
            self.changes = 0;
            return true;
        }
        false
    }

    /// No durably acknowledged write is missing from the delegate, unless a later
    /// write to its key replaced it.
    pub(crate) fn check_durable(&mut self, context: &str) {
        self.counts.durability_checks += 1;
        let held = key_values(&self.delegate.contents());
        let mut found = Vec::new();
        for (key, versions) in &self.hist {
            let d = versions.iter().rposition(|v| v.durable).expect("initial");
            let now = held.get(key).map(String::as_str);
            let ok = versions[d..]
                .iter()
                .any(|v| v.status != Status::Rejected && v.val.as_deref() == now);
            if !ok {
                found.push(format!(
                    "{context}: durable write lost: the delegate holds {} for {key}, but version {d} ({}) was acknowledged durably",
                    describe(now),
                    describe(versions[d].val.as_deref())
                ));
            }
        }
        found.sort();
        for f in found {
            self.violation(f);
        }
    }

    /// After `close()` returned `Ok`: the delegate equals the model.
    pub(crate) fn check_drained(&mut self) {
        let held = self.delegate.contents();
        let want = self.model.contents();
        if held != want {
            let diff = diff(&held, &want);
            self.violation(format!(
                "close() returned Ok but the delegate differs from the one-by-one application of every accepted write: {diff}"
            ));
        }
    }

    /// After `close()` returned `WritesNotApplied { count }`: the delegate plus
    /// `unapplied` equals the model.
    pub(crate) fn check_unapplied(&mut self, count: usize, unapplied: Vec<WriteOp>) {
        if count != unapplied.len() {
            self.violation(format!(
                "close() reported {count} unapplied writes, take_unapplied() returned {}",
                unapplied.len()
            ));
        }
        if unapplied.is_empty() {
            self.violation("close() failed with no unapplied writes".into());
        }
        let scratch = copy_of(&self.delegate.contents());
        for op in unapplied {
            if let Err(e) = now_or_never(apply(&scratch, Step::Single(op))) {
                self.violation(format!("an unapplied write cannot be applied: {e}"));
            }
        }
        let got = scratch.contents();
        let want = self.model.contents();
        if got != want {
            let diff = diff(&got, &want);
            self.violation(format!(
                "the delegate plus take_unapplied() differs from every accepted write: {diff}"
            ));
        }
    }

    pub(crate) fn keys(&self) -> usize {
        self.hist.len()
    }
}

fn describe(v: Option<&str>) -> String {
    match v {
        Some(v) => format!("Some({v})"),
        None => "None".into(),
    }
}

/// What each key holds in `c`, as the histories name values.
fn key_values(c: &Contents) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for s in &c.states {
        out.insert(format!("state:{}", s.state), s.state.clone());
    }
    for a in &c.auth_codes {
        out.insert(format!("code:{}", a.code), a.code.clone());
    }
    for s in &c.sessions {
        let at = s.access_token.expose().to_owned();
        out.insert(format!("tok:{at}"), at.clone());
        out.insert(format!("sid:{}", s.session_id), at.clone());
        if let Some(rt) = &s.refresh_token {
            out.insert(format!("rt:{}", rt.expose()), at.clone());
        }
    }
    out
}

/// A fresh memory store holding `c`.
fn copy_of(c: &Contents) -> MemoryTokenStore {
    let m = MemoryTokenStore::new(tokenstore_core::ManualClock::new(
        tokenstore_core::Timestamp::from_unix_secs(0),
    ));
    let run = |r: Result<(), StoreError>| r.expect("copying a valid record");
    for s in &c.states {
        run(now_or_never(tokenstore_core::TokenStore::store_state(
            &m,
            s.clone(),
        )));
    }
    for a in &c.auth_codes {
        run(now_or_never(tokenstore_core::TokenStore::store_auth_code(
            &m,
            a.clone(),
        )));
    }
    for s in &c.sessions {
        run(now_or_never(tokenstore_core::TokenStore::store_session(
            &m,
            s.clone(),
        )));
    }
    for cl in &c.clients {
        run(now_or_never(tokenstore_core::TokenStore::store_client(
            &m,
            cl.clone(),
        )));
    }
    m
}

/// A short description of how two contents differ (keys only).
fn diff(got: &Contents, want: &Contents) -> String {
    let g = key_values(got);
    let w = key_values(want);
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in &g {
        match w.get(k) {
            None => {
                out.insert(k, format!("extra {v}"));
            }
            Some(x) if x != v => {
                out.insert(k, format!("holds {v}, want {x}"));
            }
            Some(_) => {}
        }
    }
    for (k, v) in &w {
        if !g.contains_key(k) {
            out.insert(k, format!("missing {v}"));
        }
    }
    if out.is_empty() {
        return "same keys, different record fields".into();
    }
    let shown: Vec<String> = out
        .iter()
        .take(12)
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    format!("{} keys differ: {}", out.len(), shown.join("; "))
}
