//! Hints: `LISTEN` / `NOTIFY` wake-ups for the invalidation feed's pollers.
//!
//! Hints carry no data and promise nothing; the poll is the truth. Two tasks
//! on the store's runtime, each with a dedicated connection of its own (never
//! a pooled one):
//!
//! - the **listener** runs `LISTEN` on the store's channel and raises the
//!   [`HintBoard`] on every notification, and once after every successful
//!   (re)connect and `LISTEN` (hints sent while it was down are lost). When
//!   its connection fails (or stops answering a health check) it reconnects
//!   after a bounded backoff, 50 ms doubling to 1 s, until the store closes;
//! - the **notifier** sends `NOTIFY` after logged writes committed, when the
//!   store's [`HintCoalescer`] says so: never inside a write's transaction (a
//!   `NOTIFY` takes a cluster-wide lock at commit), on a connection with
//!   `synchronous_commit = off`. A failed `NOTIFY` is dropped and its
//!   connection made again at the next one.

use crate::tls::Tls;
use crate::worker::dial;
use futures_channel::mpsc;
use futures_lite::StreamExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokenstore_core::TokenHash;
use tokenstore_core::feed::{HintBoard, HintCoalescer};
use tokio_postgres::{AsyncMessage, Client, Config};

/// The listener's first reconnect delay.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The listener's longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often the listener checks that its connection still answers.
const HEALTH_EVERY: Duration = Duration::from_secs(10);
/// How long a health check or a `NOTIFY` may take before its connection is
/// given up.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The channel of the store in schema `schema` (unquoted):
/// `tokenstore_feed_` and 16 hex digits of the SHA-256 of the name, so every
/// schema has its own and no name is cut at PostgreSQL's 63 bytes.
pub(crate) fn channel(schema: &str) -> String {
    let hash = TokenHash::of(schema);
    let hex: String = hash.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("tokenstore_feed_{hex}")
}

/// How the hint tasks dial their connections.
pub(crate) struct Dialer {
    config: Config,
    tls: Tls,
}

impl Dialer {
    /// `config` with its application name suffixed by `role` (so the
    /// connection shows in `pg_stat_activity` as, e.g., `tokenstore listener`).
    pub(crate) fn new(config: &Config, tls: &Tls, role: &str) -> Self {
        let mut config = config.clone();
        let name = config.get_application_name().unwrap_or("tokenstore");
        let name = format!("{name} {role}");
        config.application_name(&name);
        Self {
            config,
            tls: tls.clone(),
        }
    }
}

/// The store's side of the notifier: reports commits of logged writes.
pub(crate) struct Notifier {
    coalescer: Mutex<HintCoalescer>,
    wake: mpsc::UnboundedSender<()>,
}

impl Notifier {
    /// The handle and the wake-ups the notifier task waits on.
    pub(crate) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<()>) {
        let (wake, woken) = mpsc::unbounded();
        let notifier = Self {
            coalescer: Mutex::new(HintCoalescer::default()),
            wake,
        };
        (Arc::new(notifier), woken)
    }

    /// A logged write committed (its `COMMIT` returned).
    pub(crate) fn committed(&self) {
        if self.coalescer().committed() {
            // The task is gone only once the store is closing.
            let _ = self.wake.unbounded_send(());
        }
    }

    fn coalescer(&self) -> std::sync::MutexGuard<'_, HintCoalescer> {
        self.coalescer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The notifier task: one `NOTIFY` per wake-up, and one more each time the
/// coalescer folded commits into the one in flight.
pub(crate) async fn notify(
    notifier: Arc<Notifier>,
    mut woken: mpsc::UnboundedReceiver<()>,
    dialer: Dialer,
    channel: String,
) {
    let sql = format!("NOTIFY \"{channel}\"");
    let mut conn = None;
    while woken.next().await.is_some() {
        loop {
            send(&mut conn, &dialer, &sql).await;
            if !notifier.coalescer().sent() {
                break;
            }
        }
    }
}

/// Sends one `NOTIFY`, dialling first when there is no live connection; a
/// failure drops the connection (and the hint).
async fn send(conn: &mut Option<Client>, dialer: &Dialer, sql: &str) {
    if conn.as_ref().is_none_or(Client::is_closed) {
        *conn = notifier_connection(dialer).await;
    }
    let Some(client) = conn.as_ref() else { return };
    let sent = tokio::time::timeout(ANSWER_WITHIN, client.batch_execute(sql)).await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("an invalidation hint (NOTIFY) was not sent; hints are best effort");
        *conn = None;
    }
}

async fn notifier_connection(dialer: &Dialer) -> Option<Client> {
    let (client, link) = dial(&dialer.config, &dialer.tls).await.ok()?;
    // Ends when the client is dropped (or the connection fails).
    tokio::spawn(async move {
        let _ = link.await;
    });
    let set = client.batch_execute("SET synchronous_commit = off");
    match tokio::time::timeout(ANSWER_WITHIN, set).await {
        Ok(Ok(())) => Some(client),
        _ => None,
    }
}

/// The listener task: listens, and reconnects with a bounded backoff, until
/// it is aborted (the store closes).
pub(crate) async fn listen(board: Arc<HintBoard>, dialer: Dialer, channel: String) {
    let sql = format!("LISTEN \"{channel}\"");
    let mut delay = MIN_BACKOFF;
    loop {
        if listen_once(&board, &dialer, &sql).await {
            delay = MIN_BACKOFF;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: dial, `LISTEN`, raise, then raise on every
/// notification until the connection fails. `true` when `LISTEN` succeeded.
async fn listen_once(board: &HintBoard, dialer: &Dialer, sql: &str) -> bool {
    let Ok((client, mut link)) = dial(&dialer.config, &dialer.tls).await else {
        return false;
    };
    let listened = AtomicBool::new(false);
    let drive = async {
        loop {
            let message = futures_lite::future::poll_fn(|cx| link.poll_message(cx)).await;
            match message {
                Some(Ok(AsyncMessage::Notification(_))) => board.raise(),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    };
    let subscribe = async {
        let answered = tokio::time::timeout(ANSWER_WITHIN, client.batch_execute(sql)).await;
        if !matches!(answered, Ok(Ok(()))) {
            return;
        }
        listened.store(true, Ordering::Release);
        board.raise();
        loop {
            tokio::time::sleep(HEALTH_EVERY).await;
            let check = tokio::time::timeout(ANSWER_WITHIN, client.simple_query("SELECT 1"));
            if !matches!(check.await, Ok(Ok(_))) {
                return;
            }
        }
    };
    futures_lite::future::or(drive, subscribe).await;
    tracing::debug!("the invalidation listener's connection ended; reconnecting");
    listened.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_has_its_own_short_channel() {
        let a = channel("tokenstore");
        assert_eq!(a, channel("tokenstore"));
        assert_ne!(a, channel("Tokenstore"));
        assert_ne!(
            channel(&"a".repeat(63)),
            channel(&format!("{}b", "a".repeat(62)))
        );
        assert!(a.len() <= 63 && a.starts_with("tokenstore_feed_"), "{a}");
    }
}
