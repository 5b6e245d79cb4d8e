//! A single-threaded, seeded executor with simulated time.
//!
//! Each step polls one ready task, chosen with the seeded [`Rng`], so the
//! interleaving of tasks is a function of the seed. Time is a [`ManualClock`]
//! that moves only when no task is ready: it jumps to the earliest timer and
//! wakes every timer due by then. Nothing reads the system clock and nothing
//! spawns a thread.

use super::rng::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokenstore::runtime::{Runtime, Task};
use tokenstore_core::{Clock, ManualClock, Timestamp};

/// The state a task, a waker or a timer may touch (behind one lock; never held
/// while a task is polled).
struct Inner {
    /// Task slots: `None` once finished (or while being polled).
    tasks: Vec<Option<Task>>,
    finished: Vec<bool>,
    ready: BTreeSet<usize>,
    /// Timers by (deadline, registration number).
    timers: BTreeMap<(Timestamp, u64), Waker>,
    next_timer: u64,
    /// Set by [`SimRuntime::crash`]: after the current poll, every task but
    /// the one polled is dropped.
    crash_requested: bool,
    /// The task being polled.
    current: Option<usize>,
}

struct Shared {
    inner: Mutex<Inner>,
    clock: ManualClock,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct TaskWaker {
    id: usize,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut inner = self.shared.lock();
        if !inner.finished.get(self.id).copied().unwrap_or(true) {
            inner.ready.insert(self.id);
        }
    }
}

/// The handle the wrappers see: spawns on the executor, sleeps in simulated
/// time.
#[derive(Clone)]
pub(crate) struct SimRuntime {
    shared: Arc<Shared>,
}

impl fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRuntime")
            .field("now", &self.shared.clock.now())
            .finish_non_exhaustive()
    }
}

impl SimRuntime {
    /// The simulated clock (clones share its time).
    pub(crate) fn clock(&self) -> ManualClock {
        self.shared.clock.clone()
    }

    /// Spawns a task; returns its id.
    pub(crate) fn spawn_task(&self, task: Task) -> usize {
        let mut inner = self.shared.lock();
        let id = inner.tasks.len();
        inner.tasks.push(Some(task));
        inner.finished.push(false);
        inner.ready.insert(id);
        id
    }

    /// Whether task `id` has finished.
    pub(crate) fn is_finished(&self, id: usize) -> bool {
        self.shared.lock().finished[id]
    }

    /// Drops every task but the calling one once its poll returns: the process
    /// dies, nothing in flight completes, nothing is closed.
    pub(crate) fn crash(&self) {
        self.shared.lock().crash_requested = true;
    }

    /// A future that is ready once simulated time reaches `now + d`.
    pub(crate) fn sleep_for(&self, d: Duration) -> SimSleep {
        SimSleep {
            shared: self.shared.clone(),
            deadline: self.shared.clock.now() + d,
            key: None,
        }
    }

    /// Gives other tasks a chance to run (ready again at once).
    pub(crate) fn yield_now(&self) -> YieldNow {
        YieldNow(false)
    }
}

impl Runtime for SimRuntime {
    fn spawn(&self, task: Task) {
        self.spawn_task(task);
    }

    fn sleep(&self, duration: Duration) -> Task {
        Box::pin(self.sleep_for(duration))
    }
}

/// Completes when simulated time reaches its deadline.
pub(crate) struct SimSleep {
    shared: Arc<Shared>,
    deadline: Timestamp,
    key: Option<(Timestamp, u64)>,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut inner = this.shared.lock();
        if this.shared.clock.now() >= this.deadline {
            if let Some(key) = this.key.take() {
                inner.timers.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = match this.key {
            Some(key) => key,
            None => {
                let key = (this.deadline, inner.next_timer);
                inner.next_timer += 1;
                this.key = Some(key);
                key
            }
        };
        inner.timers.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for SimSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.shared.lock().timers.remove(&key);
        }
    }
}

/// Pending once, then ready (waking itself).
pub(crate) struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Why [`Executor::run`] stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stall {
    /// No task ready, no timer armed, and the root task not finished: some
    /// task waits for a wake-up that will never come.
    Deadlock { waiting: usize },
    /// The step budget ran out (a livelock, or a workload far too large).
    StepLimit,
    /// The `stop` callback asked to stop (an invariant failed).
    Stopped,
}

/// The executor. Owns the scheduler's random stream.
pub(crate) struct Executor {
    shared: Arc<Shared>,
    rng: Rng,
    /// Steps taken (polls).
    pub(crate) steps: u64,
    /// Times the clock jumped.
    pub(crate) jumps: u64,
}

impl Executor {
    pub(crate) fn new(rng: Rng, start: Timestamp) -> Self {
        Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    tasks: Vec::new(),
                    finished: Vec::new(),
                    ready: BTreeSet::new(),
                    timers: BTreeMap::new(),
                    next_timer: 0,
                    crash_requested: false,
                    current: None,
                }),
                clock: ManualClock::new(start),
            }),
            rng,
            steps: 0,
            jumps: 0,
        }
    }

    pub(crate) fn runtime(&self) -> SimRuntime {
        SimRuntime {
            shared: self.shared.clone(),
        }
    }

    /// Runs until task `root` finishes. After every step, `after_step(step,
    /// polled task, now)` is called; returning `false` stops the run.
    pub(crate) fn run(
        &mut self,
        root: usize,
        max_steps: u64,
        mut after_step: impl FnMut(u64, usize, Timestamp) -> bool,
    ) -> Result<(), Stall> {
        loop {
            let picked = {
                let mut inner = self.shared.lock();
                if inner.finished[root] {
                    return Ok(());
                }
                if inner.ready.is_empty() {
                    // Time moves only now: to the earliest timer.
                    let Some((&(deadline, _), _)) = inner.timers.iter().next() else {
                        let waiting = inner.finished.iter().filter(|f| !**f).count();
                        return Err(Stall::Deadlock { waiting });
                    };
                    if deadline > self.shared.clock.now() {
                        self.shared.clock.set(deadline);
                        self.jumps += 1;
                    }
                    let now = self.shared.clock.now();
                    let due: Vec<(Timestamp, u64)> = inner
                        .timers
                        .range(..=(now, u64::MAX))
                        .map(|(k, _)| *k)
                        .collect();
                    let wakers: Vec<Waker> =
                        due.iter().filter_map(|k| inner.timers.remove(k)).collect();
                    drop(inner);
                    wakers.into_iter().for_each(Waker::wake);
                    continue;
                }
                let n = self.rng.below(inner.ready.len() as u64) as usize;
                let id = *inner.ready.iter().nth(n).expect("n < len");
                inner.ready.remove(&id);
                match inner.tasks[id].take() {
                    Some(task) => {
                        inner.current = Some(id);
                        Some((id, task))
                    }
                    None => None,
                }
            };
            let Some((id, mut task)) = picked else {
                continue;
            };
            self.steps += 1;
            let waker = Waker::from(Arc::new(TaskWaker {
                id,
                shared: self.shared.clone(),
            }));
            let done = task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            let dropped = {
                let mut inner = self.shared.lock();
                inner.current = None;
                if done {
                    inner.finished[id] = true;
                    inner.ready.remove(&id);
                    drop(inner);
                    drop(task);
                    Vec::new()
                } else {
                    inner.tasks[id] = Some(task);
                    if std::mem::take(&mut inner.crash_requested) {
                        // The process dies: every other task goes, unpolled.
                        let mut dropped = Vec::new();
                        for other in 0..inner.tasks.len() {
                            if other != id && !inner.finished[other] {
                                inner.finished[other] = true;
                                inner.ready.remove(&other);
                                dropped.extend(inner.tasks[other].take());
                            }
                        }
                        dropped
                    } else {
                        Vec::new()
                    }
                }
            };
            // Dropped outside the lock: a task's destructors may wake or spawn.
            drop(dropped);
            if !after_step(self.steps, id, self.shared.clock.now()) {
                return Err(Stall::Stopped);
            }
            if self.steps >= max_steps {
                return Err(Stall::StepLimit);
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Break the cycles (a task holds the runtime, the runtime its tasks).
        let tasks: Vec<Task> = {
            let mut inner = self.shared.lock();
            inner.timers.clear();
            inner.tasks.iter_mut().filter_map(Option::take).collect()
        };
        drop(tasks);
        self.shared.lock().timers.clear();
    }
}

#[test]
fn time_jumps_to_the_next_timer_and_only_then() {
    let start = Timestamp::from_unix_secs(1_000);
    let mut exec = Executor::new(Rng::new(1), start);
    let rt = exec.runtime();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (rt2, log2) = (rt.clone(), log.clone());
    let root = rt.spawn_task(Box::pin(async move {
        let clock = rt2.clock();
        for ms in [5u64, 0, 20] {
            rt2.sleep_for(Duration::from_millis(ms)).await;
            log2.lock().unwrap().push(clock.now());
        }
    }));
    exec.run(root, 1_000, |_, _, _| true).expect("runs");
    let ms = |m: u64| start + Duration::from_millis(m);
    assert_eq!(*log.lock().unwrap(), vec![ms(5), ms(5), ms(25)]);
    assert_eq!(exec.jumps, 2);
}

#[test]
fn a_task_that_waits_forever_is_reported_as_a_deadlock() {
    let mut exec = Executor::new(Rng::new(1), Timestamp::from_unix_secs(1));
    let rt = exec.runtime();
    let root = rt.spawn_task(Box::pin(std::future::pending::<()>()));
    assert_eq!(
        exec.run(root, 1_000, |_, _, _| true),
        Err(Stall::Deadlock { waiting: 1 })
    );
}

#[test]
fn the_schedule_is_a_function_of_the_seed() {
    fn order(seed: u64) -> Vec<usize> {
        let mut exec = Executor::new(Rng::new(seed), Timestamp::from_unix_secs(1));
        let rt = exec.runtime();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut ids = Vec::new();
        for t in 0..6 {
            let (rt2, log2) = (rt.clone(), log.clone());
            ids.push(rt.spawn_task(Box::pin(async move {
                for _ in 0..3 {
                    log2.lock().unwrap().push(t);
                    rt2.yield_now().await;
                }
            })));
        }
        let rt3 = rt.clone();
        let root = rt.spawn_task(Box::pin(async move {
            while !ids.iter().all(|id| rt3.is_finished(*id)) {
                rt3.yield_now().await;
            }
        }));
        exec.run(root, 10_000, |_, _, _| true).expect("runs");
        log.lock().unwrap().clone()
    }
    assert_eq!(order(3), order(3));
    let distinct: BTreeSet<Vec<usize>> = (0..8).map(order).collect();
    assert!(distinct.len() > 1, "different seeds interleave differently");
}
