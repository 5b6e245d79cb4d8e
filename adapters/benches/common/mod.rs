//! What the benchmarks share: the login session they all write, the write
//! stacks, and the writer loop.

// Each bench includes this module and uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::runtime::TokioRuntime;
use tokenstore::{
    Ack, BufferedTokenStore, Clock, Secret, StoredSession, SystemClock, Timestamp, TokenStore,
    UserInfo,
};

/// Login session `n`: an access and a refresh token (distinct per `n`), an
/// email, two scopes, an hour of access and a day of refresh from `now`.
pub(crate) fn session(n: u64, now: Timestamp) -> Arc<StoredSession> {
    let mut user = UserInfo::new("github", format!("user-{n}"), format!("login-{n}"));
    user.email = Some(format!("user{n}@example.com"));
    user.provider_scopes_granted = vec!["openid".into(), "email".into()];
    let mix = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut s = StoredSession::new(
        format!("sid-{n:010}"),
        user,
        format!("at-{n:010}-{mix:016x}{:016x}", mix.rotate_left(17)),
        now + Duration::from_secs(3_600),
        now,
    );
    s.refresh_token = Some(Secret::new(format!(
        "rt-{n:010}-{:016x}",
        mix.rotate_left(31)
    )));
    s.refresh_expires_at = Some(now + Duration::from_secs(86_400));
    Arc::new(s)
}

/// The write stacks the write benchmarks measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stack {
    Bare,
    Queued,
    /// `Ack::Durable` with `max_delay` = 0.
    DurableNow,
    /// `Ack::Durable` with the default `BufferConfig` (`max_delay` 5 ms).
    DurableDefault,
}

impl Stack {
    pub(crate) const ALL: [Self; 4] = [
        Self::Bare,
        Self::Queued,
        Self::DurableNow,
        Self::DurableDefault,
    ];

    /// The buffer's configuration and acknowledgement, `None` for bare.
    pub(crate) fn buffer(self) -> Option<(BufferConfig, Ack)> {
        match self {
            Self::Bare => None,
            Self::Queued => Some((BufferConfig::default(), Ack::Queued)),
            Self::DurableNow => Some((
                BufferConfig {
                    max_delay: Duration::ZERO,
                    ..BufferConfig::default()
                },
                Ack::Durable,
            )),
            Self::DurableDefault => Some((BufferConfig::default(), Ack::Durable)),
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Queued => "queued",
            Self::DurableNow => "durable d=0",
            Self::DurableDefault => "durable d=5ms",
        }
    }
}

/// `writers` tokio tasks storing new sessions (numbered from `first`) until
/// `budget` has passed since `start`; returns the rows written and, with one
/// writer, every call's latency.
pub(crate) async fn drive<S: TokenStore + 'static>(
    store: Arc<S>,
    first: u64,
    writers: usize,
    budget: Duration,
    start: Instant,
) -> (u64, Vec<Duration>) {
    let next = Arc::new(AtomicU64::new(first));
    let now = SystemClock.now();
    let record = writers == 1;
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                let (mut rows, mut lat) = (0u64, Vec::new());
                while start.elapsed() < budget {
                    let s = session(next.fetch_add(1, Ordering::Relaxed), now);
                    let t = Instant::now();
                    store.store_session(s).await.expect("store_session");
                    if record {
                        lat.push(t.elapsed());
                    }
                    rows += 1;
                }
                (rows, lat)
            })
        })
        .collect();
    let (mut rows, mut latencies) = (0, Vec::new());
    for task in tasks {
        let (r, l) = task.await.expect("writer task");
        rows += r;
        latencies.extend(l);
    }
    (rows, latencies)
}

/// What a buffered run did: rows, time until `flush()` returned, per-call
/// latencies (one writer only), applied writes per applied batch.
pub(crate) struct Buffered {
    pub(crate) rows: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) avg_batch: f64,
}

/// [`drive`] through a `BufferedTokenStore` over `store` on tokio; the clock
/// stops when `flush()` returns, so only committed rows count.
pub(crate) async fn drive_buffered<S: TokenStore + 'static>(
    store: Arc<S>,
    (config, ack): (BufferConfig, Ack),
    first: u64,
    writers: usize,
    budget: Duration,
) -> Buffered {
    let buffered = Arc::new(BufferedTokenStore::new(
        store,
        config,
        ack,
        TokioRuntime::current(),
    ));
    let start = Instant::now();
    let (rows, latencies) = drive(buffered.clone(), first, writers, budget, start).await;
    buffered.flush().await.expect("flush");
    let elapsed = start.elapsed();
    let m = buffered.metrics();
    assert_eq!(m.applied_writes, rows, "every accepted write was applied");
    buffered.close().await.expect("close the buffer");
    Buffered {
        rows,
        elapsed,
        latencies,
        avg_batch: m.applied_writes as f64 / m.applied_batches.max(1) as f64,
    }
}

/// The median of `values` (the upper one of an even count).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The writer counts: 1, 8 and 64 unless `TOKENSTORE_BENCH_WRITERS` lists
/// others (comma-separated; empty: no write runs).
pub(crate) fn writer_counts() -> Vec<usize> {
    env_list("TOKENSTORE_BENCH_WRITERS").unwrap_or_else(|| vec![1, 8, 64])
}

/// The comma-separated numbers environment variable `name` lists (empty
/// entries skipped), or `None` when it is not set.
pub(crate) fn env_list(name: &str) -> Option<Vec<usize>> {
    let list = std::env::var(name).ok()?;
    Some(
        list.split(',')
            .filter(|n| !n.trim().is_empty())
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: comma-separated numbers"))
            })
            .collect(),
    )
}
