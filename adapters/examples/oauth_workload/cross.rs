//! The main job's cross-instance check (`--instances N`, issue 12): each user's
//! writes go to their home instance, validations to the others, so every
//! revocation has to cross instances through the store's invalidation feed.
//!
//! A read of a revoked token on another instance that started at or after the
//! revoke returned plus `B` and still found the session is a stale serve (must
//! be 0). For every logout one other instance watches the old token: it reads it
//! every millisecond until it is refused, and the time from the revoke's return
//! to that refusal is one propagation sample.

use super::{CLIENTS, Stack, name};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use tokenstore::runtime::Runtime;
use tokenstore::{Clock, StoreError, SystemClock, Timestamp, TokenStore};

/// Between two reads of a watched token.
const WATCH_EVERY: Duration = Duration::from_millis(1);

/// What the instances of one stack share for the check.
pub(crate) struct Cross {
    /// Instances of the stack (1: no cross-instance check).
    pub(crate) n: usize,
    /// The caches' feed bound `B`.
    pub(crate) bound: Duration,
    /// Writes return before they commit (`Ack::Queued` under the stack): another
    /// instance may miss a write for a while after it returned (the bound then
    /// counts from the batch's commit, normally 5 ms after the return).
    pub(crate) queued: bool,
    runtime: Arc<dyn Runtime>,
    stats: Mutex<Stats>,
    watching: AtomicUsize,
}

/// What the check saw over one stack's run.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    /// Revocations whose old token was read on another instance afterwards.
    pub(crate) checked: u64,
    /// Reads on another instance, started at or after the revoke returned plus
    /// `B`, that still found the revoked session.
    pub(crate) stale: u64,
    /// Revoke return to first refusal on the watching instance, per watch.
    pub(crate) propagation: Vec<Duration>,
    /// Watches that gave up (still served long past the bound) or failed.
    pub(crate) broken: u64,
}

impl Stats {
    /// The `q`-quantile of the propagation samples, if there are any.
    pub(crate) fn propagation_quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.propagation.clone();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        Some(sorted[(last as f64 * q).round() as usize])
    }
}

/// A token revoked (logout or rotation) by its user's home instance.
pub(crate) struct Revoked {
    pub(crate) token: String,
    pub(crate) home: usize,
    /// When the revoking call returned.
    pub(crate) at: Timestamp,
    /// Already counted as checked.
    checked: bool,
}

impl Revoked {
    pub(crate) fn new(token: String, home: usize, at: Timestamp) -> Self {
        Self {
            token,
            home,
            at,
            checked: false,
        }
    }
}

impl Cross {
    pub(crate) fn new(n: usize, bound: Duration, queued: bool, runtime: Arc<dyn Runtime>) -> Self {
        Self {
            n,
            bound,
            queued,
            runtime,
            stats: Mutex::new(Stats::default()),
            watching: AtomicUsize::new(0),
        }
    }

    /// Whether the stack runs several instances.
    pub(crate) fn on(&self) -> bool {
        self.n > 1
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A read of `revoked` on another instance started at `started`; `served`:
    /// it still found the session. Counts the revocation as checked (once) and
    /// the read as a stale serve when it started past the bound.
    pub(crate) fn remote_read(&self, revoked: &mut Revoked, started: Timestamp, served: bool) {
        let mut stats = self.stats();
        if !revoked.checked {
            revoked.checked = true;
            stats.checked += 1;
        }
        if served && started >= revoked.at + self.bound {
            stats.stale += 1;
        }
    }

    /// Whether a read on another instance that started at `started` may miss a
    /// session whose write returned at `written`: only while a queued write may
    /// not have committed yet.
    pub(crate) fn may_miss(&self, started: Timestamp, written: Timestamp) -> bool {
        self.queued && started < written + self.bound
    }

    /// Counts `revoked` as checked and watches it on `store` (another
    /// instance) in a task of its own until it is refused.
    pub(crate) fn watch<S: TokenStore + 'static>(
        self: &Arc<Self>,
        store: Arc<S>,
        revoked: &mut Revoked,
    ) {
        revoked.checked = true;
        self.stats().checked += 1;
        self.watching.fetch_add(1, Ordering::SeqCst);
        let (cross, token, at) = (Arc::clone(self), revoked.token.clone(), revoked.at);
        self.runtime.spawn(Box::pin(async move {
            cross.watch_until_refused(&*store, &token, at).await;
            cross.watching.fetch_sub(1, Ordering::SeqCst);
        }));
    }

    async fn watch_until_refused<S: TokenStore>(&self, store: &S, token: &str, at: Timestamp) {
        // Far past any bound: a watch still served then is broken.
        let give_up = self.bound * 10 + Duration::from_secs(5);
        loop {
            let started = SystemClock.now();
            let served = match store.load_session_by_token(token).await {
                Ok(found) => found.is_some(),
                Err(error) => {
                    eprintln!("\nwatch of a revoked token failed: {error}");
                    self.stats().broken += 1;
                    return;
                }
            };
            if !served {
                let waited = SystemClock.now().saturating_duration_since(at);
                self.stats().propagation.push(waited);
                return;
            }
            if started >= at + self.bound {
                self.stats().stale += 1;
            }
            if started.saturating_duration_since(at) > give_up {
                self.stats().broken += 1;
                return;
            }
            self.runtime.sleep(WATCH_EVERY).await;
        }
    }

    /// Waits until every watch has ended; returns what the check saw.
    pub(crate) async fn settle(&self) -> Stats {
        while self.watching.load(Ordering::SeqCst) > 0 {
            self.pause().await;
        }
        self.stats().clone()
    }

    /// A short wait (5 ms) between two tries.
    pub(crate) async fn pause(&self) {
        self.runtime.sleep(Duration::from_millis(5)).await;
    }

    /// Waits until a revoke that returned now is past the bound everywhere
    /// (the end-of-run check through every instance starts after it).
    pub(crate) async fn past_bound(&self) {
        self.runtime
            .sleep(self.bound + Duration::from_millis(50))
            .await;
    }
}

/// What the cross-instance check of one stack saw.
pub(crate) struct CrossReport {
    pub(crate) instances: usize,
    pub(crate) stats: Stats,
    /// The end-of-run check through each instance's stack: (live sessions
    /// found, revoked tokens refused) per instance.
    pub(crate) per_instance: Vec<(u64, u64)>,
}

/// Waits until every instance loads every client registered through the first
/// (a queued write may not have committed yet), so the run starts with them
/// everywhere.
pub(crate) async fn clients_everywhere<S: TokenStore>(
    instances: &[Arc<S>],
    cross: &Cross,
) -> Result<(), StoreError> {
    let started = Instant::now();
    for store in instances {
        for c in 0..CLIENTS {
            while store.load_client(&format!("client-{c}")).await?.is_none() {
                if started.elapsed() > Duration::from_secs(10) + cross.bound * 10 {
                    return Err(StoreError::Backend(format!(
                        "client-{c} never reached every instance"
                    )));
                }
                cross.pause().await;
            }
        }
    }
    Ok(())
}

/// The cross-instance columns: `-` without several instances.
pub(crate) fn cross_columns(cross: Option<&CrossReport>) -> (String, String, String) {
    let Some(cross) = cross else {
        return ("-".into(), "-".into(), "-".into());
    };
    let p99 = cross
        .stats
        .propagation_quantile(0.99)
        .map_or("-".to_string(), |d| format!("{:.1} ms", ms(d)));
    (
        cross.stats.checked.to_string(),
        p99,
        cross.stats.stale.to_string(),
    )
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The propagation figures and the end-of-run check through each instance.
pub(crate) fn print_cross(stack: Stack, cross: &CrossReport) {
    let s = &cross.stats;
    let q = |q| s.propagation_quantile(q).map_or(f64::NAN, ms);
    println!(
        "{}: across {} instances: {} revocations checked on another instance, {} stale serves; \
         propagation (logout returned to first refusal on a watching instance) over {} \
         watches: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} watches broken",
        name(stack),
        cross.instances,
        s.checked,
        s.stale,
        s.propagation.len(),
        q(0.5),
        q(0.99),
        q(1.0),
        s.broken
    );
    let each: Vec<String> = cross
        .per_instance
        .iter()
        .enumerate()
        .map(|(i, (live, revoked))| {
            format!("instance {i}: {live} live load, {revoked} revoked refused")
        })
        .collect();
    println!(
        "{}: checked through every instance's stack after the bound: {}",
        name(stack),
        each.join("; ")
    );
}
