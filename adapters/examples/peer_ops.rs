//! The Rust side of the mxcp peer comparison (`tests/peers/mxcp_peer.sh`):
//! times `store_session` and `load_session_by_token` from one caller, one call
//! at a time, on the bare `SqliteTokenStore` and on the full stack (the read
//! cache over the write buffer, `Ack::Queued`, over SQLite), and prints the
//! figures as one JSON object.
//!
//! The records have the shape the peer script stores in mxcp: a login session
//! with an access and a refresh token, an email and two scopes. Files are WAL
//! with `synchronous = FULL`, secrets sealed with Fernet.
//!
//! Run: `cargo run --release -p tokenstore --example peer_ops -- [SESSIONS]`
//! (default 2,000).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore::buffer::BufferConfig;
use tokenstore::cache::CacheConfig;
use tokenstore::runtime::TokioRuntime;
use tokenstore::sqlite::{SqliteTokenStore, Synchronous, generate_key};
use tokenstore::{
    Ack, BufferedTokenStore, CachingTokenStore, Clock, Secret, StoredSession, SystemClock,
    Timestamp, TokenStore, UserInfo,
};

fn main() {
    let n: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("SESSIONS must be a number"),
        None => 2_000,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let json = rt.block_on(run(n));
    println!("{json}");
}

async fn run(n: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = generate_key();
    let now = SystemClock.now();
    let sessions: Vec<_> = (0..n).map(|i| session(i, now)).collect();
    let tokens: Vec<String> = sessions
        .iter()
        .map(|s| s.access_token.expose().to_owned())
        .collect();

    // Bare SQLite.
    let bare = open(&dir.path().join("bare.sqlite"), &key).await;
    let store_bare = per_call(n, async {
        for s in &sessions {
            bare.store_session(s.clone()).await.expect("store");
        }
    })
    .await;
    let load_bare = per_call(n, load_all(&bare, &tokens)).await;
    bare.close().await.expect("close");

    // Cache over buffer over SQLite; the store loop's time includes the flush.
    let sqlite = open(&dir.path().join("stack.sqlite"), &key).await;
    let stack = CachingTokenStore::new(
        BufferedTokenStore::new(
            sqlite,
            BufferConfig::default(),
            Ack::Queued,
            TokioRuntime::current(),
        ),
        CacheConfig::default(),
    );
    let store_stack = per_call(n, async {
        for s in &sessions {
            stack.store_session(s.clone()).await.expect("store");
        }
        stack.inner().flush().await.expect("flush");
    })
    .await;
    let load_cold = per_call(n, load_all(&stack, &tokens)).await;
    let load_warm = per_call(n, load_all(&stack, &tokens)).await;
    let hits = stack.metrics().sessions.hits;
    stack.close().await.expect("close");

    serde_json::json!({
        "sessions": n,
        "sqlite": {
            "store_session_us": store_bare,
            "load_session_by_token_us": load_bare,
        },
        "stack": {
            "store_session_us": store_stack,
            "load_session_by_token_cold_us": load_cold,
            "load_session_by_token_warm_us": load_warm,
            "cache_hits": hits,
        },
    })
}

async fn load_all<S: TokenStore>(store: &S, tokens: &[String]) {
    for t in tokens {
        let found = store.load_session_by_token(t).await.expect("load");
        assert!(found.is_some(), "every stored session loads");
    }
}

/// Microseconds per call of `n` calls made by `work`.
async fn per_call(n: u64, work: impl Future<Output = ()>) -> f64 {
    let start = Instant::now();
    work.await;
    start.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64
}

async fn open(path: &Path, key: &str) -> SqliteTokenStore {
    SqliteTokenStore::builder(path)
        .encryption_key(key)
        .synchronous(Synchronous::Full)
        .open()
        .await
        .expect("open sqlite")
}

/// A login session; `tests/peers/mxcp_peer.py` builds the same one in mxcp.
fn session(n: u64, now: Timestamp) -> Arc<StoredSession> {
    let mut user = UserInfo::new("github", format!("user-{n}"), format!("login-{n}"));
    user.email = Some(format!("user{n}@example.com"));
    user.provider_scopes_granted = vec!["openid".into(), "email".into()];
    let mut s = StoredSession::new(
        format!("sid-{n:010}"),
        user,
        format!(
            "at-{n:010}-{:032x}",
            u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ),
        now + Duration::from_secs(3_600),
        now,
    );
    s.refresh_token = Some(Secret::new(format!("rt-{n:010}")));
    s.refresh_expires_at = Some(now + Duration::from_secs(86_400));
    Arc::new(s)
}
