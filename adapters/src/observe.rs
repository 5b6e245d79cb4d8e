//! What the adapters report through the [`metrics`] facade and [`tracing`].
//!
//! Nothing here decides anything: the machines keep their own counters
//! ([`CacheMetrics`], [`BufferMetrics`]), and this module only hands them, and
//! the time the adapters' delegate calls and flushes took, to whichever
//! recorder and subscriber the application installed. Without one, the
//! facade's calls do nothing. No name, label or field ever holds a token, a
//! token hash, a key, an identifier or a user: labels take values from the short
//! fixed lists below.
//!
//! # Metrics
//!
//! Labels: `kind` is `state`, `auth_code`, `session` or `client`; `layer` is
//! `cache` or `buffer` (which wrapper made the call); `operation` is the name of
//! the [`TokenStore`](tokenstore_core::TokenStore) method called on the
//! delegate (`load_session_by_token`, `consume_state`, `store_client`, ...);
//! `outcome` is `ok` or `error` for a delegate call, and `applied`, `retrying`
//! or `failed` for a flush.
//!
//! Counters of the cache, one series per `kind` (the fields of
//! [`KindMetrics`]):
//! `tokenstore_cache_lookups_total`, `tokenstore_cache_hits_total`,
//! `tokenstore_cache_negative_hits_total`, `tokenstore_cache_misses_total`,
//! `tokenstore_cache_waits_total`, `tokenstore_cache_fills_total`,
//! `tokenstore_cache_negative_fills_total`,
//! `tokenstore_cache_stale_fills_refused_total`,
//! `tokenstore_cache_invalidations_total`, `tokenstore_cache_evictions_total`,
//! `tokenstore_cache_expirations_total`.
//!
//! Counters of the cache's feed follower, no label (the fields of
//! [`FeedMetrics`]):
//! `tokenstore_cache_feed_polls_total`, `tokenstore_cache_feed_poll_failures_total`,
//! `tokenstore_cache_feed_gaps_total`, `tokenstore_cache_feed_keys_received_total`,
//! `tokenstore_cache_feed_hints_total`, `tokenstore_cache_feed_unconfirmed_total`,
//! `tokenstore_cache_feed_clock_steps_back_total`, `tokenstore_cache_feed_lapses_total`.
//!
//! Gauges of the cache: `tokenstore_cache_entries{kind}` (cached records of
//! `auth_code`, `session` and `client`; a session counts once whatever keys reach
//! it), `tokenstore_cache_negative_entries` (all kinds), and
//! `tokenstore_cache_feed_lag_seconds` (only for a cache that follows a feed,
//! while freshness is confirmed: the time since the start of the last poll that
//! confirmed it, see [`CacheMachine::feed_lag`](tokenstore_core::cache::CacheMachine::feed_lag)).
//!
//! Counters of the buffer, no label (the fields of [`BufferMetrics`]):
//! `tokenstore_buffer_accepted_total`, `tokenstore_buffer_refused_full_total`,
//! `tokenstore_buffer_refused_closed_total`, `tokenstore_buffer_coalesced_total`,
//! `tokenstore_buffer_batches_total`, `tokenstore_buffer_applied_writes_total`,
//! `tokenstore_buffer_applied_batches_total`,
//! `tokenstore_buffer_failed_attempts_total`, `tokenstore_buffer_failed_batches_total`.
//! Gauge: `tokenstore_buffer_pending_writes` (writes held, pending and in flight).
//!
//! Histograms: `tokenstore_buffer_flush_batch_size` (writes in each batch
//! attempt), `tokenstore_buffer_flush_seconds{outcome}` (each batch attempt,
//! from the delegate call to its result), and
//! `tokenstore_delegate_call_seconds{layer, operation, outcome}` (each call a
//! wrapper makes to its delegate, except a flush's batch and `close`: the
//! cache's misses, writes, one-time calls, `list_clients`, `cleanup_expired` and
//! forwarded bulk and batch calls; the buffer's reads and one-time calls that it
//! could not answer itself, `list_clients`, `cleanup_expired` and forwarded bulk
//! and batch calls). In a cache over a buffer, a miss is timed by both layers:
//! `layer="cache"` includes the buffer's own work.
//!
//! ## When they are published
//!
//! - Histograms are recorded when the call or flush ends (a call dropped half
//!   way records nothing).
//! - Counters and gauges come from the machines' own counters, which stay the
//!   source (a cache hit costs no facade call). They are published by
//!   `publish_metrics()` on [`CachingTokenStore`](crate::CachingTokenStore) and
//!   [`BufferedTokenStore`](crate::BufferedTokenStore); the buffer also
//!   publishes after every batch result, and the cache after every feed poll
//!   and on `close()`. A cache without a feed publishes only then: call its
//!   `publish_metrics()` before each scrape (it costs one lock and some fifty
//!   facade calls).
//! - Each publication adds what changed since the wrapper's previous one:
//!   counters by [`Counter::increment`](metrics::Counter::increment), entry and
//!   pending gauges by `increment`/`decrement`. So several wrappers in one
//!   process add up (two caches give the sum of their hits), and a dropped
//!   wrapper takes its entries and pending writes back out of the gauges. The
//!   feed lag is set ([`Gauge::set`](metrics::Gauge::set)): with several
//!   followers it is the last one published. After the drop, a flush or poll
//!   still running publishes nothing.
//! - What changed before a recorder was installed is published to the
//!   recorder current at that publication; a counter is registered (at zero) by
//!   the first publication, so every series exists once published.
//!
//! # Tracing
//!
//! Spans at `debug` level, target `tokenstore::observe`:
//!
//! - `delegate_call`, around each delegate call the histogram above times, with
//!   fields `layer`, `operation`, and once it ends `outcome` (`ok` or `error`)
//!   and `elapsed_us`.
//! - `flush`, around each batch attempt, with fields `batch_size`, `attempt`,
//!   and once it ends `outcome` (`applied`, `retrying`, `failed`) and
//!   `elapsed_us`.
//!
//! A cache hit, and a read the buffer answers itself, create no span.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};
use tokenstore_core::StoreError;
use tokenstore_core::buffer::{BatchOutcome, BufferMachine, BufferMetrics};
use tokenstore_core::cache::{CacheMetrics, FeedMetrics, Kind, KindMetrics};
use tracing::Instrument;
use tracing::field::Empty;

/// The `layer` label and span field: which wrapper called its delegate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    Cache,
    Buffer,
}

impl Layer {
    fn label(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Buffer => "buffer",
        }
    }
}

/// Runs one delegate call inside a `delegate_call` span and records its time
/// in `tokenstore_delegate_call_seconds`.
pub(crate) async fn delegate_call<T>(
    layer: Layer,
    operation: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let span = tracing::debug_span!(
        target: "tokenstore::observe",
        "delegate_call",
        layer = layer.label(),
        operation,
        outcome = Empty,
        elapsed_us = Empty,
    );
    let start = Instant::now();
    let result = call.instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    span.record("outcome", outcome);
    span.record("elapsed_us", micros(elapsed));
    metrics::histogram!(
        "tokenstore_delegate_call_seconds",
        "layer" => layer.label(),
        "operation" => operation,
        "outcome" => outcome,
    )
    .record(elapsed.as_secs_f64());
    result
}

/// One batch attempt being applied: its span and its start.
pub(crate) struct Flush {
    span: tracing::Span,
    size: usize,
    start: Instant,
}

impl Flush {
    /// Opens the `flush` span of a batch of `size` writes, attempt `attempt`.
    pub(crate) fn start(size: usize, attempt: u32) -> Self {
        let span = tracing::debug_span!(
            target: "tokenstore::observe",
            "flush",
            batch_size = size,
            attempt,
            outcome = Empty,
            elapsed_us = Empty,
        );
        Self {
            span,
            size,
            start: Instant::now(),
        }
    }

    /// The span to run the batch's delegate call in.
    pub(crate) fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    /// Records how the attempt ended: span fields and the flush histograms.
    pub(crate) fn end(self, outcome: &BatchOutcome) {
        let elapsed = self.start.elapsed();
        let outcome = match outcome {
            BatchOutcome::Applied(_) => "applied",
            BatchOutcome::Retrying => "retrying",
            BatchOutcome::Failed { .. } => "failed",
            // A result for a batch not in flight: not an attempt that ended.
            BatchOutcome::Unknown => return,
        };
        self.span.record("outcome", outcome);
        self.span.record("elapsed_us", micros(elapsed));
        metrics::histogram!("tokenstore_buffer_flush_batch_size").record(self.size as f64);
        metrics::histogram!("tokenstore_buffer_flush_seconds", "outcome" => outcome)
            .record(elapsed.as_secs_f64());
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What a metric is, in the facade's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A counter (only goes up).
    Counter,
    /// A gauge (a level).
    Gauge,
    /// A histogram (a distribution of observations).
    Histogram,
}

/// One metric the adapters publish: its name, type, labels, unit and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// The metric's name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// The names of its labels (their values are listed in the module docs).
    pub labels: &'static [&'static str],
    /// Its unit, if it has one.
    pub unit: Option<metrics::Unit>,
    /// What it counts or measures.
    pub help: &'static str,
}

const fn info(
    name: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    unit: Option<metrics::Unit>,
    help: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        labels,
        unit,
        help,
    }
}

use MetricType::{Counter as C, Gauge as G, Histogram as H};
const KIND: &[&str] = &["kind"];
const SECONDS: Option<metrics::Unit> = Some(metrics::Unit::Seconds);
const COUNT: Option<metrics::Unit> = Some(metrics::Unit::Count);

/// Every metric the adapters publish. [`describe_metrics`] hands their units
/// and meanings to the recorder; the README lists them too.
pub const METRICS: &[MetricInfo] = &[
    info(
        "tokenstore_cache_lookups_total",
        C,
        KIND,
        None,
        "Cache lookups (hits + negative hits + misses + waits).",
    ),
    info(
        "tokenstore_cache_hits_total",
        C,
        KIND,
        None,
        "Lookups answered with a cached record.",
    ),
    info(
        "tokenstore_cache_negative_hits_total",
        C,
        KIND,
        None,
        "Lookups answered 'absent' from a negative entry.",
    ),
    info(
        "tokenstore_cache_misses_total",
        C,
        KIND,
        None,
        "Lookups that asked the delegate.",
    ),
    info(
        "tokenstore_cache_waits_total",
        C,
        KIND,
        None,
        "Lookups that waited for another caller's fill of the same key.",
    ),
    info(
        "tokenstore_cache_fills_total",
        C,
        KIND,
        None,
        "Records cached by a fill.",
    ),
    info(
        "tokenstore_cache_negative_fills_total",
        C,
        KIND,
        None,
        "Absences cached by a fill.",
    ),
    info(
        "tokenstore_cache_stale_fills_refused_total",
        C,
        KIND,
        None,
        "Fills refused because their key was invalidated after the miss.",
    ),
    info(
        "tokenstore_cache_invalidations_total",
        C,
        KIND,
        None,
        "Writes that passed through the cache.",
    ),
    info(
        "tokenstore_cache_evictions_total",
        C,
        KIND,
        None,
        "Entries evicted to respect a capacity.",
    ),
    info(
        "tokenstore_cache_expirations_total",
        C,
        KIND,
        None,
        "Entries found past their deadline and dropped.",
    ),
    info(
        "tokenstore_cache_feed_polls_total",
        C,
        &[],
        None,
        "Polls of the invalidation feed started.",
    ),
    info(
        "tokenstore_cache_feed_poll_failures_total",
        C,
        &[],
        None,
        "Feed polls that failed or were given up.",
    ),
    info(
        "tokenstore_cache_feed_gaps_total",
        C,
        &[],
        None,
        "Feed answers that reported a gap (every entry dropped).",
    ),
    info(
        "tokenstore_cache_feed_keys_received_total",
        C,
        &[],
        None,
        "Keys received from the feed.",
    ),
    info(
        "tokenstore_cache_feed_hints_total",
        C,
        &[],
        None,
        "Wake-up hints received from the feed.",
    ),
    info(
        "tokenstore_cache_feed_unconfirmed_total",
        C,
        &[],
        None,
        "Lookups that read through because freshness was not confirmed.",
    ),
    info(
        "tokenstore_cache_feed_clock_steps_back_total",
        C,
        &[],
        None,
        "Steps of the clock backwards detected.",
    ),
    info(
        "tokenstore_cache_feed_lapses_total",
        C,
        &[],
        None,
        "Confirmations ended by their poll's lapse timer.",
    ),
    info(
        "tokenstore_cache_entries",
        G,
        KIND,
        COUNT,
        "Records cached now (auth_code, session, client).",
    ),
    info(
        "tokenstore_cache_negative_entries",
        G,
        &[],
        COUNT,
        "Negative entries cached now, all kinds.",
    ),
    info(
        "tokenstore_cache_feed_lag_seconds",
        G,
        &[],
        SECONDS,
        "Time since the start of the last feed poll that confirmed freshness.",
    ),
    info(
        "tokenstore_buffer_accepted_total",
        C,
        &[],
        None,
        "Writes accepted by the buffer.",
    ),
    info(
        "tokenstore_buffer_refused_full_total",
        C,
        &[],
        None,
        "Write attempts refused because the buffer was full (the writer waits).",
    ),
    info(
        "tokenstore_buffer_refused_closed_total",
        C,
        &[],
        None,
        "Writes refused because the buffer was closing.",
    ),
    info(
        "tokenstore_buffer_coalesced_total",
        C,
        &[],
        None,
        "Writes dropped because a newer write superseded them.",
    ),
    info(
        "tokenstore_buffer_batches_total",
        C,
        &[],
        None,
        "Batches handed out, retries included.",
    ),
    info(
        "tokenstore_buffer_applied_writes_total",
        C,
        &[],
        None,
        "Writes in batches that were applied.",
    ),
    info(
        "tokenstore_buffer_applied_batches_total",
        C,
        &[],
        None,
        "Batches applied.",
    ),
    info(
        "tokenstore_buffer_failed_attempts_total",
        C,
        &[],
        None,
        "Batch attempts that failed.",
    ),
    info(
        "tokenstore_buffer_failed_batches_total",
        C,
        &[],
        None,
        "Batches that failed after every retry.",
    ),
    info(
        "tokenstore_buffer_pending_writes",
        G,
        &[],
        COUNT,
        "Writes held by the buffer (pending and in flight).",
    ),
    info(
        "tokenstore_buffer_flush_batch_size",
        H,
        &[],
        COUNT,
        "Writes in each batch attempt.",
    ),
    info(
        "tokenstore_buffer_flush_seconds",
        H,
        &["outcome"],
        SECONDS,
        "Time of each batch attempt, by outcome.",
    ),
    info(
        "tokenstore_delegate_call_seconds",
        H,
        &["layer", "operation", "outcome"],
        SECONDS,
        "Time of each call a wrapper made to its delegate (flush batches aside).",
    ),
];

/// Describes every metric of [`METRICS`] (unit and meaning) to the recorder
/// installed now, for exporters that print them (Prometheus's `# HELP`). Call
/// it once after installing the recorder; without it the metrics are the same,
/// only undescribed.
pub fn describe_metrics() {
    for m in METRICS {
        match (m.kind, m.unit) {
            (MetricType::Counter, _) => metrics::describe_counter!(m.name, m.help),
            (MetricType::Gauge, Some(unit)) => metrics::describe_gauge!(m.name, unit, m.help),
            (MetricType::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (MetricType::Histogram, Some(unit)) => {
                metrics::describe_histogram!(m.name, unit, m.help);
            }
            (MetricType::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::State, "state"),
    (Kind::AuthCode, "auth_code"),
    (Kind::Session, "session"),
    (Kind::Client, "client"),
];

type Field<M> = fn(&M) -> u64;

const KIND_COUNTERS: [(&str, Field<KindMetrics>); 11] = [
    ("tokenstore_cache_lookups_total", |m| m.lookups),
    ("tokenstore_cache_hits_total", |m| m.hits),
    ("tokenstore_cache_negative_hits_total", |m| m.negative_hits),
    ("tokenstore_cache_misses_total", |m| m.misses),
    ("tokenstore_cache_waits_total", |m| m.waits),
    ("tokenstore_cache_fills_total", |m| m.fills),
    ("tokenstore_cache_negative_fills_total", |m| {
        m.negative_fills
    }),
    ("tokenstore_cache_stale_fills_refused_total", |m| {
        m.stale_fills_refused
    }),
    ("tokenstore_cache_invalidations_total", |m| m.invalidations),
    ("tokenstore_cache_evictions_total", |m| m.evictions),
    ("tokenstore_cache_expirations_total", |m| m.expirations),
];

const FEED_COUNTERS: [(&str, Field<FeedMetrics>); 8] = [
    ("tokenstore_cache_feed_polls_total", |m| m.polls),
    ("tokenstore_cache_feed_poll_failures_total", |m| {
        m.poll_failures
    }),
    ("tokenstore_cache_feed_gaps_total", |m| m.gaps),
    ("tokenstore_cache_feed_keys_received_total", |m| {
        m.keys_received
    }),
    ("tokenstore_cache_feed_hints_total", |m| m.hints),
    ("tokenstore_cache_feed_unconfirmed_total", |m| m.unconfirmed),
    ("tokenstore_cache_feed_clock_steps_back_total", |m| {
        m.clock_steps_back
    }),
    ("tokenstore_cache_feed_lapses_total", |m| m.lapses),
];

const BUFFER_COUNTERS: [(&str, Field<BufferMetrics>); 9] = [
    ("tokenstore_buffer_accepted_total", |m| m.accepted),
    ("tokenstore_buffer_refused_full_total", |m| m.refused_full),
    ("tokenstore_buffer_refused_closed_total", |m| {
        m.refused_closed
    }),
    ("tokenstore_buffer_coalesced_total", |m| m.coalesced),
    ("tokenstore_buffer_batches_total", |m| m.batches),
    ("tokenstore_buffer_applied_writes_total", |m| {
        m.applied_writes
    }),
    ("tokenstore_buffer_applied_batches_total", |m| {
        m.applied_batches
    }),
    ("tokenstore_buffer_failed_attempts_total", |m| {
        m.failed_attempts
    }),
    ("tokenstore_buffer_failed_batches_total", |m| {
        m.failed_batches
    }),
];

/// Adds `now - before` to a counter (registering it even when nothing changed).
fn add(name: &'static str, labels: &[(&'static str, &'static str)], before: u64, now: u64) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|&(k, v)| metrics::Label::from_static_parts(k, v))
        .collect();
    metrics::counter!(name, labels).increment(now.saturating_sub(before));
}

/// Moves a gauge from `before` to `now` by a relative step.
fn shift(name: &'static str, labels: &[(&'static str, &'static str)], before: usize, now: usize) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|&(k, v)| metrics::Label::from_static_parts(k, v))
        .collect();
    let gauge = metrics::gauge!(name, labels);
    if now >= before {
        gauge.increment((now - before) as f64);
    } else {
        gauge.decrement((before - now) as f64);
    }
}

/// A machine and what of its counters was last published, under one lock: a
/// publication reads the counters and swaps in the new snapshot in the same
/// critical section, then calls the facade outside it. Two publications thus
/// add disjoint changes, whatever their order. Derefs to the machine.
#[derive(Debug)]
pub(crate) struct Observed<M, P> {
    machine: M,
    published: P,
    /// Set when the wrapper is dropped: a task still running then (a flush,
    /// a poll) publishes nothing more, so the gauges stay retired.
    retired: bool,
}

impl<M, P: Default> Observed<M, P> {
    pub(crate) fn new(machine: M) -> Self {
        Self {
            machine,
            published: P::default(),
            retired: false,
        }
    }
}

impl<M, P> Deref for Observed<M, P> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.machine
    }
}

impl<M, P> DerefMut for Observed<M, P> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.machine
    }
}

/// What changed in a cache's counters between two publications.
#[must_use = "a delta publishes nothing until it is emitted"]
pub(crate) struct CacheDelta {
    before: CacheMetrics,
    now: CacheMetrics,
    lag: Option<Duration>,
}

impl Observed<(), CacheMetrics> {
    /// The change since the last publication, which it becomes: `snapshot`
    /// is the cache's counters now (over all its shards) and its feed lag,
    /// read while this lock is held.
    pub(crate) fn cache_delta(
        &mut self,
        snapshot: impl FnOnce() -> (CacheMetrics, Option<Duration>),
    ) -> CacheDelta {
        let (metrics, lag) = if self.retired {
            (self.published, None)
        } else {
            snapshot()
        };
        CacheDelta {
            before: std::mem::replace(&mut self.published, metrics),
            now: metrics,
            lag,
        }
    }

    /// The change that takes this cache's entries out of the gauges (it is
    /// being dropped).
    pub(crate) fn retire(&mut self) -> CacheDelta {
        self.retired = true;
        let gone = CacheMetrics {
            session_entries: 0,
            auth_code_entries: 0,
            client_entries: 0,
            negative_entries: 0,
            ..self.published
        };
        CacheDelta {
            before: std::mem::replace(&mut self.published, gone),
            now: gone,
            lag: None,
        }
    }
}

impl CacheDelta {
    /// Hands the change to the facade (call it without holding the lock).
    pub(crate) fn emit(self) {
        let Self { before, now, lag } = self;
        for (kind, label) in KINDS {
            let (before, after) = (before.kind(kind), now.kind(kind));
            for (name, field) in KIND_COUNTERS {
                add(name, &[("kind", label)], field(before), field(after));
            }
        }
        for (name, field) in FEED_COUNTERS {
            add(name, &[], field(&before.feed), field(&now.feed));
        }
        let entries = [
            ("auth_code", before.auth_code_entries, now.auth_code_entries),
            ("session", before.session_entries, now.session_entries),
            ("client", before.client_entries, now.client_entries),
        ];
        for (label, before, now) in entries {
            shift("tokenstore_cache_entries", &[("kind", label)], before, now);
        }
        shift(
            "tokenstore_cache_negative_entries",
            &[],
            before.negative_entries,
            now.negative_entries,
        );
        if let Some(lag) = lag {
            metrics::gauge!("tokenstore_cache_feed_lag_seconds").set(lag.as_secs_f64());
        }
    }
}

/// What changed in a buffer's counters and held writes between two
/// publications.
#[must_use = "a delta publishes nothing until it is emitted"]
pub(crate) struct BufferDelta {
    before: (BufferMetrics, usize),
    now: (BufferMetrics, usize),
}

impl Observed<BufferMachine, (BufferMetrics, usize)> {
    /// The change since the last publication, which it becomes.
    pub(crate) fn buffer_delta(&mut self) -> BufferDelta {
        let snapshot = if self.retired {
            self.published
        } else {
            (self.machine.metrics(), self.machine.held())
        };
        BufferDelta {
            before: std::mem::replace(&mut self.published, snapshot),
            now: snapshot,
        }
    }

    /// The change that takes this buffer's held writes out of the gauge.
    pub(crate) fn retire(&mut self) -> BufferDelta {
        self.retired = true;
        let gone = (self.published.0, 0);
        BufferDelta {
            before: std::mem::replace(&mut self.published, gone),
            now: gone,
        }
    }
}

impl BufferDelta {
    /// Hands the change to the facade (call it without holding the lock).
    pub(crate) fn emit(self) {
        let Self { before, now } = self;
        for (name, field) in BUFFER_COUNTERS {
            add(name, &[], field(&before.0), field(&now.0));
        }
        shift("tokenstore_buffer_pending_writes", &[], before.1, now.1);
    }
}
