//! Issue 14, item 6: the spans the adapters open, caught by a layer that keeps
//! every span's name and fields, every later record and every event, at
//! `trace` level, installed as the global subscriber (so events of SQLite's own
//! connection threads are caught too; this binary holds one test for that
//! reason). The operations of the contract run through a cache over a buffer
//! over SQLite; nothing caught may hold a token, a token's hash, a client
//! secret, an identifier or a user id of the test.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenstore::buffer::BufferConfig;
use tokenstore::cache::CacheConfig;
use tokenstore::runtime::TokioRuntime;
use tokenstore::sqlite::SqliteTokenStore;
use tokenstore::{Ack, BufferedTokenStore, CachingTokenStore, TokenHash};
use tokenstore_core::{Clock, ManualClock, TokenStore};
use tokenstore_tests::sample::{self, HOUR};
use tokenstore_tests::{T0, TEST_KEY};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One thing the subscriber was told.
#[derive(Debug, Clone)]
struct Caught {
    /// `span`, `record` or `event`.
    what: &'static str,
    /// The span's name (for a record, the name of the span recorded into).
    name: String,
    /// Every field as ` name=value`.
    fields: String,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Caught>>>);

impl Capture {
    fn push(&self, what: &'static str, name: &str, fields: Fields) {
        let caught = Caught {
            what,
            name: name.to_owned(),
            fields: fields.0,
        };
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(caught);
    }

    fn all(&self) -> Vec<Caught> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn len(&self) -> usize {
        self.all().len()
    }
}

#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let meta = attrs.metadata();
        fields.0.push_str(&format!(" target={}", meta.target()));
        self.push("span", meta.name(), fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let name = ctx.span(id).map_or("?", |s| s.name());
        self.push("record", name, fields);
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        fields.0.push_str(&format!(" target={}", meta.target()));
        self.push("event", meta.name(), fields);
    }
}

const SID: &str = "sid-a81f3c";
const SID2: &str = "sid-b92e4d";
const SID_OLD: &str = "sid-c03d5e";
const A1: &str = "at-1d6f0b88";
const R1: &str = "rt-2e7a1c99";
const A2: &str = "at-3f8b2daa";
const R2: &str = "rt-4a9c3ebb";
const A3: &str = "at-5b0d4fcc";
const R3: &str = "rt-6c1e5add";
const A_OLD: &str = "at-7d2f6bee";
const CID: &str = "cid-8e3a7cff";
const CODE: &str = "code-9f4b8d01";
const CODE2: &str = "code-0a5c9e12";
const STATE: &str = "state-1b6d0f23";
const STATE2: &str = "state-2c7e1a34";

/// Everything the test stored that must never show: tokens, identifiers,
/// user ids, client secret, the Fernet key and the derived secrets of the
/// sample records.
fn secrets() -> Vec<String> {
    let mut s: Vec<String> = [
        SID, SID2, SID_OLD, A1, R1, A2, R2, A3, R3, A_OLD, CID, CODE, CODE2, STATE, STATE2,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for sid in [SID, SID2, SID_OLD] {
        s.push(format!("user-of-{sid}"));
        s.push(format!("gho_provider-access-of-{sid}"));
        s.push(format!("ghr_provider-refresh-of-{sid}"));
    }
    for state in [STATE, STATE2] {
        s.push(format!("verifier-of-{state}"));
        s.push(format!("client-state-of-{state}"));
    }
    s.push(format!("client-secret-of-{CID}"));
    s.push(TEST_KEY.to_owned());
    s
}

fn assert_no_secret(caught: &[Caught]) {
    let text: String = caught
        .iter()
        .map(|c| format!("{} {}{}\n", c.what, c.name, c.fields))
        .collect();
    let lower = text.to_lowercase();
    for secret in secrets() {
        assert!(
            !lower.contains(&secret.to_lowercase()),
            "{secret:?} in:\n{text}"
        );
        let hex = TokenHash::of(&secret).to_hex();
        assert!(!lower.contains(&hex), "the hash of {secret:?} in:\n{text}");
    }
}

/// Whether a `delegate_call` span of `layer` calling `operation` was opened.
fn called(caught: &[Caught], layer: &str, operation: &str) -> bool {
    let want = format!(" layer={layer} operation={operation} ");
    caught
        .iter()
        .any(|c| c.what == "span" && c.name == "delegate_call" && c.fields.contains(&want))
}

type Stack = CachingTokenStore<BufferedTokenStore<SqliteTokenStore>>;

async fn stack(clock: &ManualClock, dir: &std::path::Path) -> Stack {
    let sqlite = SqliteTokenStore::builder(dir.join("tokens.sqlite"))
        .encryption_key(TEST_KEY)
        .clock(clock.clone())
        .open()
        .await
        .expect("open the SQLite store");
    let config = BufferConfig {
        max_delay: Duration::from_secs(3600),
        ..BufferConfig::default()
    };
    let runtime = TokioRuntime::current();
    let buffer =
        BufferedTokenStore::with_clock(sqlite, config, Ack::Queued, runtime, clock.clone());
    CachingTokenStore::with_clock(buffer, CacheConfig::default(), clock.clone())
}

/// The contract's operations, every kind, through the whole stack.
async fn run(store: &Stack, clock: &ManualClock, capture: &Capture) {
    let now = clock.now();
    let flush = || store.inner().flush();

    // States: one answered by the buffer (still queued), one by the delegate.
    store
        .store_state(Arc::new(sample::full_state(STATE, now)))
        .await
        .unwrap();
    assert!(store.consume_state(STATE).await.unwrap().is_some());
    store
        .store_state(Arc::new(sample::full_state(STATE2, now)))
        .await
        .unwrap();
    flush().await.unwrap();
    assert!(store.consume_state(STATE2).await.unwrap().is_some());

    // Codes: load (miss, then hit), take once, delete another.
    store
        .store_auth_code(Arc::new(sample::full_code(CODE, SID, now)))
        .await
        .unwrap();
    store
        .store_auth_code(Arc::new(sample::full_code(CODE2, SID, now)))
        .await
        .unwrap();
    flush().await.unwrap();
    assert!(store.load_auth_code(CODE).await.unwrap().is_some());
    assert!(store.load_auth_code(CODE).await.unwrap().is_some());
    assert!(store.try_delete_auth_code(CODE).await.unwrap());
    store.delete_auth_code(CODE2).await.unwrap();

    // Sessions: load by every key, rotate by refresh, delete by token and id.
    let first = sample::full_session(SID, A1, R1, now);
    store.store_session(Arc::new(first)).await.unwrap();
    flush().await.unwrap();
    assert!(store.load_session_by_token(A1).await.unwrap().is_some());
    // The id may live in another shard of the cache: fill it there too.
    assert!(store.load_session_by_id(SID).await.unwrap().is_some());
    // A hit opens no span and emits no event.
    let before = capture.len();
    assert!(store.load_session_by_token(A1).await.unwrap().is_some());
    assert!(store.load_session_by_id(SID).await.unwrap().is_some());
    assert_eq!(capture.len(), before, "a cache hit left a trace");
    let refreshed = store.load_session_by_refresh_token(R1).await.unwrap();
    assert!(refreshed.is_some());
    store
        .store_session(Arc::new(sample::full_session(SID, A2, R2, now)))
        .await
        .unwrap();
    flush().await.unwrap();
    assert!(store.load_session_by_token(A1).await.unwrap().is_none());
    assert!(
        store
            .load_session_by_refresh_token(R1)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .load_session_by_refresh_token(R2)
            .await
            .unwrap()
            .is_some()
    );
    store.delete_session_by_token(A2).await.unwrap();
    store
        .store_session(Arc::new(sample::full_session(SID2, A3, R3, now)))
        .await
        .unwrap();
    flush().await.unwrap();
    assert!(store.load_session_by_id(SID2).await.unwrap().is_some());
    store.delete_session_by_id(SID2).await.unwrap();
    flush().await.unwrap();
    assert!(store.load_session_by_id(SID2).await.unwrap().is_none());

    // Clients, with a client secret.
    store
        .store_client(Arc::new(sample::full_client(CID, now)))
        .await
        .unwrap();
    flush().await.unwrap();
    let client = store.load_client(CID).await.unwrap().expect("stored");
    assert!(client.client_secret.is_some());
    assert_eq!(store.list_clients().await.unwrap().len(), 1);
    store.delete_client(CID).await.unwrap();

    // Cleanup of a session whose tokens expired.
    let old = sample::session(SID_OLD, A_OLD, None, now + HOUR, None, now);
    store.store_session(Arc::new(old)).await.unwrap();
    flush().await.unwrap();
    clock.advance(2 * HOUR);
    let cleaned = store.cleanup_expired().await.unwrap();
    assert_eq!(cleaned.sessions, 1);
    store.close().await.unwrap();
}

#[test]
fn spans_name_the_operation_and_never_a_secret() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = ManualClock::new(T0);
        let store = stack(&clock, dir.path()).await;
        run(&store, &clock, &capture).await;
    });
    let caught = capture.all();

    // (a) The spans are there, so the check below is not vacuous.
    let expected = [
        ("cache", "load_session_by_token"),
        ("buffer", "load_session_by_token"),
        ("cache", "load_session_by_refresh_token"),
        ("buffer", "load_session_by_id"),
        ("cache", "load_auth_code"),
        ("buffer", "load_auth_code"),
        ("cache", "consume_state"),
        ("buffer", "consume_state"),
        ("cache", "try_delete_auth_code"),
        ("buffer", "try_delete_auth_code"),
        ("cache", "store_session"),
        ("cache", "delete_session_by_token"),
        ("cache", "delete_session_by_id"),
        ("cache", "store_client"),
        ("buffer", "load_client"),
        ("buffer", "list_clients"),
        ("buffer", "cleanup_expired"),
    ];
    for (layer, operation) in expected {
        assert!(
            called(&caught, layer, operation),
            "no {layer} {operation} span"
        );
    }
    let flushes = caught
        .iter()
        .filter(|c| c.what == "span" && c.name == "flush")
        .count();
    assert!(flushes >= 8, "{flushes} flush spans");
    let recorded = |name: &str, field: &str| {
        caught
            .iter()
            .filter(|c| c.what == "record" && c.name == name && c.fields.contains(field))
            .count()
    };
    assert_eq!(
        recorded("flush", " outcome=applied"),
        flushes,
        "every flush applied"
    );
    assert_eq!(
        recorded("flush", " elapsed_us="),
        flushes,
        "every flush timed"
    );
    let ended_ok = caught
        .iter()
        .filter(|c| c.what == "record" && c.name == "delegate_call")
        .filter(|c| c.fields.contains(" outcome=ok"))
        .count();
    assert!(
        ended_ok >= expected.len(),
        "{ended_ok} delegate calls ended ok"
    );
    assert!(
        caught
            .iter()
            .any(|c| c.what == "span" && c.name == "flush" && c.fields.contains(" batch_size=1 ")),
        "a flush of one write"
    );

    // (b) Nothing caught holds a secret, an identifier or a hash of one.
    assert_no_secret(&caught);
}
