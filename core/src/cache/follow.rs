//! Following an invalidation feed: the poll schedule and the freshness gate.
//!
//! The rule (`DESIGN.md` section 7): a hit, positive or negative, is served only
//! while the last successful poll *started* within the bound `B` of `now`. A
//! poll that started at `c` has applied every invalidation committed before
//! `c`, so an entry served at `now < c + B` was invalidated, if at all, less
//! than `B` ago.

use crate::Timestamp;
use crate::feed::Watermark;
use std::time::Duration;

/// Permission to poll the feed once, handed out by
/// [`CacheMachine::begin_poll`](super::CacheMachine::begin_poll).
///
/// Give it back exactly once: to
/// [`handle_invalidations`](super::CacheMachine::handle_invalidations) with the
/// feed's answer, or to [`handle_poll_failed`](super::CacheMachine::handle_poll_failed).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a poll ticket must be given back to the machine (invalidations or failure)"]
pub struct PollTicket {
    pub(crate) id: u64,
    pub(crate) started_at: Timestamp,
    pub(crate) since: Option<Watermark>,
    pub(crate) steps: u64,
    pub(crate) bound: Duration,
}

impl PollTicket {
    /// The watermark to ask the feed from (`None`: the first poll, which asks
    /// only for the current watermark).
    pub fn since(&self) -> Option<Watermark> {
        self.since
    }

    /// When the poll started (the `now` given to `begin_poll`).
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// How long to wait for the feed's answer before reporting the poll
    /// failed, and when its lapse timer fires: `B` (the poll confirms nothing
    /// once `B` has passed since it started).
    pub fn give_up_after(&self) -> Duration {
        self.bound
    }

    /// The token to hand to
    /// [`handle_lapse`](super::CacheMachine::handle_lapse) once `B` has passed
    /// since this poll started, measured on a timer that does not follow the
    /// wall clock (the runtime's): freshness this poll confirmed then ends even
    /// if the wall clock stepped back.
    pub fn lapse(&self) -> Lapse {
        Lapse { id: self.id }
    }
}

/// See [`PollTicket::lapse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lapse {
    id: u64,
}

/// When to poll next: the answer of
/// [`CacheMachine::poll_timeout`](super::CacheMachine::poll_timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollTimer {
    /// The feed is off (or the cache closed): never.
    Off,
    /// Poll now: call `begin_poll`.
    Due,
    /// Sleep this long (or until a hint), then ask again.
    After(Duration),
    /// A poll is in flight. Wait for it, but give it up after this long
    /// (report it failed), then ask again.
    InFlight(Duration),
}

impl PollTimer {
    /// The more urgent of two timers (several shards' machines, one poller):
    /// due before any wait, the shorter wait first, off only when both are.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenstore_core::cache::PollTimer;
    ///
    /// let ms = Duration::from_millis;
    /// assert_eq!(PollTimer::After(ms(5)).sooner(PollTimer::InFlight(ms(3))), PollTimer::InFlight(ms(3)));
    /// assert_eq!(PollTimer::Off.sooner(PollTimer::After(ms(5))), PollTimer::After(ms(5)));
    /// assert_eq!(PollTimer::After(ms(1)).sooner(PollTimer::Due), PollTimer::Due);
    /// assert_eq!(PollTimer::Off.sooner(PollTimer::Off), PollTimer::Off);
    /// ```
    #[must_use]
    pub fn sooner(self, other: Self) -> Self {
        use PollTimer::{After, Due, InFlight, Off};
        match (self, other) {
            (Due, _) | (_, Due) => Due,
            (Off, timer) | (timer, Off) => timer,
            (InFlight(x), InFlight(y)) => InFlight(x.min(y)),
            (After(x), After(y)) => After(x.min(y)),
            (After(x), InFlight(y)) | (InFlight(y), After(x)) => {
                if x < y {
                    After(x)
                } else {
                    InFlight(y)
                }
            }
        }
    }
}

/// Counters of the feed follower. Numbers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedMetrics {
    /// Polls started.
    pub polls: u64,
    /// Polls that failed or were given up.
    pub poll_failures: u64,
    /// Answers that reported a gap: every entry was dropped.
    pub gaps: u64,
    /// Keys received from the feed (duplicates included).
    pub keys_received: u64,
    /// Hints received.
    pub hints: u64,
    /// Lookups that found an entry but could not serve it because freshness was
    /// not confirmed (they read through).
    pub unconfirmed: u64,
    /// Steps of the clock backwards that were detected (each drops freshness).
    pub clock_steps_back: u64,
    /// Confirmations ended by their poll's lapse timer rather than by a newer
    /// poll (polls failing or slow).
    pub lapses: u64,
}

/// The follower's state inside the machine.
#[derive(Debug)]
pub(crate) struct Follower {
    pub(crate) bound: Duration,
    /// Tolerance for readings of `now` that arrive out of order.
    slack: Duration,
    /// The start of the last successful poll, and that poll's id.
    confirmed_at: Option<Timestamp>,
    confirmed_by: Option<u64>,
    watermark: Option<Watermark>,
    in_flight: Option<(u64, Timestamp)>,
    /// When the last poll started.
    last_start: Option<Timestamp>,
    /// The least time between the starts of two polls a hint asks for, so a
    /// busy store (a hint after every commit) costs a bounded poll rate.
    hint_gap: Duration,
    next_id: u64,
    hinted: bool,
    next_poll: Option<Timestamp>,
    latest_now: Option<Timestamp>,
    /// Detected backward steps of the clock; a poll that started before one
    /// confirms nothing.
    steps: u64,
    pub(crate) metrics: FeedMetrics,
}

impl Follower {
    pub(crate) fn new(bound: Duration) -> Self {
        Self {
            bound,
            slack: (bound / 8).min(Duration::from_millis(100)),
            confirmed_at: None,
            confirmed_by: None,
            watermark: None,
            in_flight: None,
            last_start: None,
            hint_gap: (bound / 200).clamp(Duration::from_millis(1), Duration::from_millis(5)),
            next_id: 0,
            hinted: false,
            next_poll: None,
            latest_now: None,
            steps: 0,
            metrics: FeedMetrics::default(),
        }
    }

    /// Notes a reading of the clock; a step back by more than the slack drops
    /// freshness (time since the last poll can no longer be told) and makes a
    /// poll due.
    pub(crate) fn observe(&mut self, now: Timestamp) {
        match self.latest_now {
            Some(latest) if now + self.slack < latest => {
                self.steps += 1;
                self.metrics.clock_steps_back += 1;
                self.confirmed_at = None;
                self.confirmed_by = None;
                self.next_poll = Some(now);
                self.latest_now = Some(now);
            }
            Some(latest) if now <= latest => {}
            _ => self.latest_now = Some(now),
        }
    }

    /// May an entry be served at `now`? `resolution`: how far `now` may lag.
    pub(crate) fn confirmed(&self, now: Timestamp, resolution: Duration) -> bool {
        // A reading a little before `c` (threads read the clock, then queue on
        // the lock) counts as no time elapsed; one far before it was a step back,
        // which `observe` caught and which dropped `confirmed_at`.
        self.confirmed_at
            .is_some_and(|c| now.saturating_duration_since(c) + resolution < self.bound)
    }

    /// Time from the start of the last poll that confirmed freshness to `now`;
    /// `None` while freshness is not confirmed.
    pub(crate) fn lag(&self, now: Timestamp) -> Option<Duration> {
        self.confirmed_at.map(|c| now.saturating_duration_since(c))
    }

    pub(crate) fn negative_cap(&self) -> Duration {
        self.bound
    }

    pub(crate) fn begin(&mut self, now: Timestamp) -> Option<PollTicket> {
        self.observe(now);
        if self.in_flight.is_some() {
            return None;
        }
        self.next_id += 1;
        self.in_flight = Some((self.next_id, now));
        self.last_start = Some(now);
        self.hinted = false;
        self.metrics.polls += 1;
        Some(PollTicket {
            id: self.next_id,
            started_at: now,
            since: self.watermark,
            steps: self.steps,
            bound: self.bound,
        })
    }

    /// Ends the poll of `ticket`; `false` if it is not the one in flight.
    fn finish(&mut self, ticket: &PollTicket) -> bool {
        if self.in_flight.map(|(id, _)| id) != Some(ticket.id) {
            return false;
        }
        self.in_flight = None;
        true
    }

    /// A successful answer: the watermark moves and, unless the clock stepped
    /// back since the poll started, freshness is confirmed from its start.
    /// `true` when this poll's confirmation is now the current one.
    pub(crate) fn succeeded(
        &mut self,
        now: Timestamp,
        ticket: &PollTicket,
        watermark: Watermark,
    ) -> bool {
        self.observe(now);
        if !self.finish(ticket) {
            return false;
        }
        self.watermark = Some(watermark);
        if ticket.steps != self.steps {
            self.next_poll = Some(now);
            return false;
        }
        self.next_poll = Some(ticket.started_at + self.bound / 2);
        if self.confirmed_at.is_some_and(|c| c > ticket.started_at) {
            return false;
        }
        self.confirmed_at = Some(ticket.started_at);
        self.confirmed_by = Some(ticket.id);
        true
    }

    /// `B` has passed on the runtime's timer since poll `lapse` started: if its
    /// confirmation is still the current one, it ends.
    pub(crate) fn lapse(&mut self, now: Timestamp, lapse: Lapse) {
        self.observe(now);
        if self.confirmed_by == Some(lapse.id) {
            self.confirmed_at = None;
            self.confirmed_by = None;
            self.metrics.lapses += 1;
            self.next_poll = Some(now);
        }
    }

    pub(crate) fn failed(&mut self, now: Timestamp, ticket: &PollTicket) {
        self.observe(now);
        if self.finish(ticket) {
            self.metrics.poll_failures += 1;
            self.next_poll = Some(now + self.retry());
        }
    }

    pub(crate) fn hint(&mut self, now: Timestamp) {
        self.observe(now);
        self.metrics.hints += 1;
        self.hinted = true;
    }

    /// Forgets the watermark: the next poll starts the log afresh (after a gap).
    pub(crate) fn restart(&mut self, watermark: Watermark) {
        self.watermark = Some(watermark);
    }

    pub(crate) fn timer(&self, now: Timestamp) -> PollTimer {
        if let Some((_, started)) = self.in_flight {
            let give_up = started + self.bound;
            return PollTimer::InFlight(give_up.saturating_duration_since(now));
        }
        if self.hinted {
            // (A start "in the future" is a clock that went back: no wait.)
            return match self.last_start {
                Some(s) if s <= now && now < s + self.hint_gap => {
                    PollTimer::After((s + self.hint_gap).saturating_duration_since(now))
                }
                _ => PollTimer::Due,
            };
        }
        match self.next_poll {
            None => PollTimer::Due,
            Some(at) if at <= now => PollTimer::Due,
            Some(at) => PollTimer::After(at.saturating_duration_since(now)),
        }
    }

    /// How long after a failed poll the next one starts.
    fn retry(&self) -> Duration {
        (self.bound / 8).max(Duration::from_millis(1))
    }
}
