//! Issue 14, item 5: the counters, gauges and histograms the adapters publish
//! through the `metrics` facade, caught by a `DebuggingRecorder` installed on
//! the test's thread (the stacks run on a current-thread runtime, so the flush
//! worker publishes on that thread too).

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokenstore::buffer::{BufferConfig, BufferMetrics};
use tokenstore::cache::{CacheConfig, CacheMetrics, Kind};
use tokenstore::observe::{METRICS, MetricType};
use tokenstore::runtime::TokioRuntime;
use tokenstore::{Ack, BufferedTokenStore, CachingTokenStore, TokenHash};
use tokenstore_core::{Clock, ManualClock, MemoryTokenStore, StoreError, TokenStore};
use tokenstore_tests::T0;
use tokenstore_tests::sample;

type Series = Vec<(CompositeKey, DebugValue)>;

/// Runs `body` on a current-thread runtime with a fresh recorder installed on
/// this thread, and returns what the recorder holds at the end with the body's
/// output (a wrapper the body returns is dropped only after the snapshot, so
/// its entries are still in the gauges).
fn recorded<T, F: Future<Output = T>>(body: impl FnOnce() -> F) -> (Series, T) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let out = metrics::with_local_recorder(&recorder, || runtime.block_on(body()));
    let series = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    (series, out)
}

fn find<'a>(
    series: &'a Series,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    series.iter().find_map(|(key, value)| {
        let k = key.key();
        let mut have: Vec<(&str, &str)> = k.labels().map(|l| (l.key(), l.value())).collect();
        let mut want = labels.to_vec();
        have.sort_unstable();
        want.sort_unstable();
        (key.kind() == kind && k.name() == name && have == want).then_some(value)
    })
}

fn counter(series: &Series, name: &str, labels: &[(&str, &str)]) -> u64 {
    match find(series, MetricKind::Counter, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("counter {name}{labels:?}: {other:?}"),
    }
}

fn gauge(series: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(series, MetricKind::Gauge, name, labels) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("gauge {name}{labels:?}: {other:?}"),
    }
}

fn histogram(series: &Series, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    match find(series, MetricKind::Histogram, name, labels) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
        None => Vec::new(),
        other => panic!("histogram {name}{labels:?}: {other:?}"),
    }
}

/// Every series is in `observe::METRICS` with its type and label names, and
/// every catalogued metric whose name starts with one of `prefixes`, but
/// `absent`, was published.
fn assert_catalogued(series: &Series, prefixes: &[&str], absent: &[&str]) {
    for (key, _) in series {
        let name = key.key().name();
        let info = METRICS.iter().find(|m| m.name == name);
        let info = info.unwrap_or_else(|| panic!("{name} is not in observe::METRICS"));
        let kind = match info.kind {
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge => MetricKind::Gauge,
            MetricType::Histogram => MetricKind::Histogram,
        };
        assert_eq!(key.kind(), kind, "{name}");
        let mut labels: Vec<&str> = key.key().labels().map(|l| l.key()).collect();
        labels.sort_unstable();
        let mut want = info.labels.to_vec();
        want.sort_unstable();
        assert_eq!(labels, want, "{name}");
    }
    let expected = METRICS
        .iter()
        .filter(|m| prefixes.iter().any(|p| m.name.starts_with(p)))
        .filter(|m| !absent.contains(&m.name));
    for m in expected {
        assert!(
            series.iter().any(|(k, _)| k.key().name() == m.name),
            "{} was never published",
            m.name
        );
    }
}

/// Every name and label value, as one text.
fn all_text(series: &Series) -> String {
    let mut text = String::new();
    for (key, _) in series {
        text.push_str(key.key().name());
        for label in key.key().labels() {
            text.push_str(&format!(" {}={}", label.key(), label.value()));
        }
        text.push('\n');
    }
    text
}

/// Fails if `text` holds any of `secrets` (and the lowercase or uppercase hex
/// of their SHA-256, the form hashes take on disk and in the feed).
fn assert_no_secret(text: &str, secrets: &[&str]) {
    let lower = text.to_lowercase();
    for secret in secrets {
        let hex = TokenHash::of(secret).to_hex();
        assert!(
            !lower.contains(&secret.to_lowercase()),
            "{secret:?} in:\n{text}"
        );
        assert!(!lower.contains(&hex), "the hash of {secret:?} in:\n{text}");
    }
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::State, "state"),
    (Kind::AuthCode, "auth_code"),
    (Kind::Session, "session"),
    (Kind::Client, "client"),
];

/// Every documented cache counter equals the stats type's field.
fn assert_cache_counters(series: &Series, m: &CacheMetrics) {
    for (kind, label) in KINDS {
        let k = m.kind(kind);
        let fields = [
            ("tokenstore_cache_lookups_total", k.lookups),
            ("tokenstore_cache_hits_total", k.hits),
            ("tokenstore_cache_negative_hits_total", k.negative_hits),
            ("tokenstore_cache_misses_total", k.misses),
            ("tokenstore_cache_waits_total", k.waits),
            ("tokenstore_cache_fills_total", k.fills),
            ("tokenstore_cache_negative_fills_total", k.negative_fills),
            (
                "tokenstore_cache_stale_fills_refused_total",
                k.stale_fills_refused,
            ),
            ("tokenstore_cache_invalidations_total", k.invalidations),
            ("tokenstore_cache_evictions_total", k.evictions),
            ("tokenstore_cache_expirations_total", k.expirations),
        ];
        for (name, want) in fields {
            assert_eq!(
                counter(series, name, &[("kind", label)]),
                want,
                "{name}{{kind={label}}}"
            );
        }
    }
    let feed = [
        ("tokenstore_cache_feed_polls_total", m.feed.polls),
        (
            "tokenstore_cache_feed_poll_failures_total",
            m.feed.poll_failures,
        ),
        ("tokenstore_cache_feed_gaps_total", m.feed.gaps),
        (
            "tokenstore_cache_feed_keys_received_total",
            m.feed.keys_received,
        ),
        ("tokenstore_cache_feed_hints_total", m.feed.hints),
        (
            "tokenstore_cache_feed_unconfirmed_total",
            m.feed.unconfirmed,
        ),
        (
            "tokenstore_cache_feed_clock_steps_back_total",
            m.feed.clock_steps_back,
        ),
        ("tokenstore_cache_feed_lapses_total", m.feed.lapses),
    ];
    for (name, want) in feed {
        assert_eq!(counter(series, name, &[]), want, "{name}");
    }
}

/// Every documented buffer counter equals the stats type's field.
fn assert_buffer_counters(series: &Series, m: &BufferMetrics) {
    let fields = [
        ("tokenstore_buffer_accepted_total", m.accepted),
        ("tokenstore_buffer_refused_full_total", m.refused_full),
        ("tokenstore_buffer_refused_closed_total", m.refused_closed),
        ("tokenstore_buffer_coalesced_total", m.coalesced),
        ("tokenstore_buffer_batches_total", m.batches),
        ("tokenstore_buffer_applied_writes_total", m.applied_writes),
        ("tokenstore_buffer_applied_batches_total", m.applied_batches),
        ("tokenstore_buffer_failed_attempts_total", m.failed_attempts),
        ("tokenstore_buffer_failed_batches_total", m.failed_batches),
    ];
    for (name, want) in fields {
        assert_eq!(counter(series, name, &[]), want, "{name}");
    }
}

type Stack = CachingTokenStore<BufferedTokenStore<MemoryTokenStore>>;

fn stack(clock: &ManualClock, config: BufferConfig) -> Stack {
    let buffer = BufferedTokenStore::with_clock(
        MemoryTokenStore::new(clock.clone()),
        config,
        Ack::Queued,
        TokioRuntime::current(),
        clock.clone(),
    );
    // One shard: one fill serves the session's three keys (the counts below).
    let config = CacheConfig {
        shards: 1,
        ..CacheConfig::default()
    };
    CachingTokenStore::with_clock(buffer, config, clock.clone())
}

/// Never due by time: only `flush()` and size start a batch.
fn manual_flush() -> BufferConfig {
    BufferConfig {
        max_delay: Duration::from_secs(3600),
        ..BufferConfig::default()
    }
}

const ACCESS: &str = "at-5b0e7c1d";
const REFRESH: &str = "rt-91fa22c4";
const SESSION_ID: &str = "sid-4e7d0a";
const CLIENT_ID: &str = "cid-c0ffee17";
const CODE: &str = "code-8d2f61";
const STATE: &str = "state-3a9be0";

#[test]
fn counters_gauges_and_histograms_match_the_stats_types() {
    let (series, (cache, buffer, pending, user, _store)) = recorded(|| async {
        let clock = ManualClock::new(T0);
        let store = stack(&clock, manual_flush());
        let now = clock.now();
        let session = sample::full_session(SESSION_ID, ACCESS, REFRESH, now);
        let user = session.user_info.user_id.clone();
        store.store_session(Arc::new(session)).await.unwrap();
        store
            .store_client(Arc::new(sample::full_client(CLIENT_ID, now)))
            .await
            .unwrap();
        store.inner().flush().await.unwrap();
        for _ in 0..3 {
            assert!(store.load_session_by_token(ACCESS).await.unwrap().is_some());
        }
        assert!(
            store
                .load_session_by_refresh_token(REFRESH)
                .await
                .unwrap()
                .is_some()
        );
        assert!(store.load_client(CLIENT_ID).await.unwrap().is_some());
        assert!(
            store
                .load_auth_code("code-unknown-1")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .load_auth_code("code-unknown-1")
                .await
                .unwrap()
                .is_none()
        );
        // A publication in the middle: the next one adds only what changed.
        store.publish_metrics();
        store.inner().publish_metrics();
        assert!(
            store
                .load_session_by_id(SESSION_ID)
                .await
                .unwrap()
                .is_some()
        );
        let code = sample::full_code(CODE, SESSION_ID, now);
        store.store_auth_code(Arc::new(code)).await.unwrap();
        let state = sample::full_state(STATE, now);
        store.store_state(Arc::new(state)).await.unwrap();
        // Published while two writes are pending, then flushed (the worker
        // publishes after the batch).
        store.publish_metrics();
        store.inner().publish_metrics();
        let pending = store.inner().pending();
        store.inner().flush().await.unwrap();
        store.publish_metrics();
        (
            store.metrics(),
            store.inner().metrics(),
            pending,
            user,
            store,
        )
    });
    assert_cache_counters(&series, &cache);
    assert_buffer_counters(&series, &buffer);
    // Not vacuous: the operations above moved these.
    assert_eq!(
        cache.sessions.hits,
        2 + 1 + 1,
        "two repeats by token, then by refresh token and by id: one entry, three keys"
    );
    assert_eq!(cache.sessions.misses, 1);
    assert_eq!(cache.auth_codes.negative_hits, 1);
    assert_eq!(buffer.applied_writes, 4);
    assert_eq!(pending, 2);

    let entries = |kind| gauge(&series, "tokenstore_cache_entries", &[("kind", kind)]);
    assert_eq!(entries("session"), cache.session_entries as f64);
    assert_eq!(entries("session"), 1.0);
    assert_eq!(entries("client"), 1.0);
    assert_eq!(entries("auth_code"), cache.auth_code_entries as f64);
    let negative = gauge(&series, "tokenstore_cache_negative_entries", &[]);
    assert_eq!(negative, cache.negative_entries as f64);
    // Published after the last batch: nothing held any more.
    assert_eq!(gauge(&series, "tokenstore_buffer_pending_writes", &[]), 0.0);

    let sizes = histogram(&series, "tokenstore_buffer_flush_batch_size", &[]);
    assert_eq!(sizes, vec![2.0, 2.0], "two flushes of two writes");
    let applied = histogram(
        &series,
        "tokenstore_buffer_flush_seconds",
        &[("outcome", "applied")],
    );
    assert_eq!(applied.len(), 2);
    assert!(applied.iter().all(|s| *s >= 0.0));

    let calls = |layer, operation| {
        let labels = [
            ("layer", layer),
            ("operation", operation),
            ("outcome", "ok"),
        ];
        histogram(&series, "tokenstore_delegate_call_seconds", &labels).len()
    };
    assert_eq!(
        calls("cache", "load_session_by_token"),
        1,
        "one miss, two hits"
    );
    assert_eq!(calls("cache", "load_session_by_refresh_token"), 0, "a hit");
    assert_eq!(calls("cache", "load_session_by_id"), 0, "a hit");
    assert_eq!(
        calls("cache", "load_auth_code"),
        1,
        "one miss, one negative hit"
    );
    assert_eq!(calls("cache", "store_session"), 1);
    assert_eq!(calls("buffer", "load_session_by_token"), 1);
    assert_eq!(calls("buffer", "load_client"), 1);

    let absent = ["tokenstore_cache_feed_lag_seconds"];
    assert_catalogued(&series, &["tokenstore_"], &absent);

    let text = all_text(&series);
    assert_no_secret(
        &text,
        &[
            ACCESS,
            REFRESH,
            SESSION_ID,
            CLIENT_ID,
            CODE,
            STATE,
            "code-unknown-1",
            &user,
        ],
    );
    assert_no_secret(&text, &[&format!("client-secret-of-{CLIENT_ID}")]);
}

#[test]
fn wrappers_add_up_and_a_dropped_cache_takes_its_entries_out() {
    let (series, kept) = recorded(|| async {
        let clock = ManualClock::new(T0);
        let shared = Arc::new(MemoryTokenStore::new(clock.clone()));
        let now = clock.now();
        let session = sample::live_session(SESSION_ID, ACCESS, None, now);
        shared.store_session(Arc::new(session)).await.unwrap();
        let config = CacheConfig::default;
        let kept = CachingTokenStore::with_clock(shared.clone(), config(), clock.clone());
        let dropped = CachingTokenStore::with_clock(shared.clone(), config(), clock.clone());
        for cache in [&kept, &dropped] {
            cache.load_session_by_token(ACCESS).await.unwrap();
            cache.load_session_by_token(ACCESS).await.unwrap();
            cache.publish_metrics();
        }
        dropped.load_session_by_token(ACCESS).await.unwrap();
        dropped.publish_metrics();
        drop(dropped);
        kept
    });
    let kept = kept.metrics();
    let hits = counter(
        &series,
        "tokenstore_cache_hits_total",
        &[("kind", "session")],
    );
    assert_eq!(hits, 1 + 2, "the sum of both caches");
    assert_eq!(kept.session_entries, 1);
    let entries = gauge(&series, "tokenstore_cache_entries", &[("kind", "session")]);
    assert_eq!(entries, 1.0, "only the cache still alive");
}

#[test]
fn failed_calls_and_flushes_are_labelled_as_such() {
    let (series, _store) = recorded(|| async {
        let clock = ManualClock::new(T0);
        let config = BufferConfig {
            max_retries: 0,
            ..manual_flush()
        };
        let store = stack(&clock, config);
        let now = clock.now();
        let state = sample::full_state(STATE, now);
        store.store_state(Arc::new(state)).await.unwrap();
        store.inner().inner().close().await.unwrap();
        let flushed = store.inner().flush().await;
        assert!(matches!(flushed, Err(StoreError::Closed)), "{flushed:?}");
        let loaded = store.load_client(CLIENT_ID).await;
        assert!(matches!(loaded, Err(StoreError::Closed)), "{loaded:?}");
        // Past the cooldown, close tries once more, fails, and keeps the write.
        clock.advance(Duration::from_secs(1));
        let closed = store.close().await;
        assert!(
            matches!(closed, Err(StoreError::WritesNotApplied { .. })),
            "{closed:?}"
        );
        assert_eq!(store.inner().take_unapplied().len(), 1);
        store.publish_metrics();
        store.inner().publish_metrics();
        store
    });
    let failed = histogram(
        &series,
        "tokenstore_buffer_flush_seconds",
        &[("outcome", "failed")],
    );
    assert_eq!(failed.len(), 2, "the flush, then close's try");
    assert!(
        histogram(
            &series,
            "tokenstore_buffer_flush_seconds",
            &[("outcome", "applied")]
        )
        .is_empty()
    );
    assert_eq!(
        counter(&series, "tokenstore_buffer_failed_batches_total", &[]),
        2
    );
    for layer in ["cache", "buffer"] {
        let labels = [
            ("layer", layer),
            ("operation", "load_client"),
            ("outcome", "error"),
        ];
        let errors = histogram(&series, "tokenstore_delegate_call_seconds", &labels);
        assert_eq!(errors.len(), 1, "{layer}");
    }
    assert_no_secret(&all_text(&series), &[STATE, CLIENT_ID]);
}

#[test]
fn a_following_cache_publishes_its_feed_lag_and_polls() {
    let (series, _cache) = recorded(|| async {
        let clock = ManualClock::new(T0);
        let log = Duration::from_secs(600);
        let store = MemoryTokenStore::new(clock.clone()).with_invalidation_log(log);
        let runtime = TokioRuntime::current();
        let config = CacheConfig::default();
        let cache = CachingTokenStore::following_with_clock(store, config, clock.clone(), runtime)
            .expect("the memory store has a feed");
        // The memory feed answers at once: the poll that started is done when
        // its count shows here (one thread).
        while cache.metrics().feed.polls == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_millis(250));
        cache.publish_metrics();
        cache
    });
    let lag = gauge(&series, "tokenstore_cache_feed_lag_seconds", &[]);
    assert_eq!(lag, 0.25, "from the start of the confirming poll");
    assert!(counter(&series, "tokenstore_cache_feed_polls_total", &[]) >= 1);
    assert_catalogued(&series, &["tokenstore_cache_"], &[]);
}

#[test]
fn the_pending_gauge_holds_the_writes_held_at_the_last_publication() {
    let (series, (pending, _store)) = recorded(|| async {
        let clock = ManualClock::new(T0);
        let store = stack(&clock, manual_flush());
        let now = clock.now();
        for state in ["state-p1", "state-p2", "state-p3"] {
            let record = sample::full_state(state, now);
            store.store_state(Arc::new(record)).await.unwrap();
        }
        store.inner().publish_metrics();
        // Still held when the snapshot is taken (dropped unflushed afterwards).
        (store.inner().pending(), store)
    });
    assert_eq!(pending, 3);
    assert_eq!(gauge(&series, "tokenstore_buffer_pending_writes", &[]), 3.0);
    assert_eq!(counter(&series, "tokenstore_buffer_accepted_total", &[]), 3);
    assert!(histogram(&series, "tokenstore_buffer_flush_batch_size", &[]).is_empty());
}
