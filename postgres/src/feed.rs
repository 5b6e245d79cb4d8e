//! The read side of the invalidation feed: polls, the watermark, pruning.
//!
//! A [`Watermark`] is a transaction-id horizon. A poll is one statement, so
//! one snapshot, and reads every log row with `xid >=` the asked watermark.
//! The watermark it hands out is the lower of two bounds:
//!
//! - the `xmin` of its own snapshot (`pg_snapshot_xmin(pg_current_snapshot())`):
//!   every transaction with an id below it has ended, so every log row of a
//!   committed one was visible to this poll; rows of transactions still
//!   running have ids at or above it and are read by the next poll. A
//!   sequence would not do: sequence values are taken before commit, so
//!   `seq > last` skips rows that commit out of order;
//! - one past the *floor*, the highest id of a log row this poll saw, or the
//!   prune mark when higher. Those ids belong to committed, durable writes. The
//!   `xmin` alone may count ids of transactions whose commit was never
//!   flushed (an asynchronous commit, such as the hint `NOTIFY`s, or an
//!   abort): after a crash PostgreSQL hands such ids out again, and a log row
//!   written under one would sit below the watermark. No durable id is reused,
//!   so no row committed after the crash falls below the floor.
//!
//! Re-reading a few rows is harmless; when the log is idle the watermark is
//! one past its last row, so a poll reads nothing twice.
//!
//! Gaps: `invalidations_meta.pruned_through` is the highest id pruning ever
//! deleted; a poll from a watermark at or below it may have lost rows. A poll
//! whose own bounds are below the asked watermark (`xmin`, or one past the
//! floor) is on a database that is not the one that handed it out (restored
//! from a backup, or one that lost committed log rows in a crash). Either
//! answers `gap`.

use crate::PostgresTokenStore;
use crate::conn::Db;
use crate::error::{Fail, corrupt};
use crate::worker::{Inner, Mode};
use std::time::Duration;
use tokenstore_core::feed::{HintBoard, InvalidationFeed, Invalidations, Watermark, decode_key};
use tokenstore_core::{BoxFuture, StoreError};
use tokio_postgres::Row;

const META: &str = "invalidations_meta";

/// A hundred years in seconds: the longest age pruning asks about.
const CENTURY_SECS: f64 = 100.0 * 365.25 * 86_400.0;

/// The statements on `invalidations` and `invalidations_meta`.
pub(crate) struct Statements {
    poll: String,
    watermark: String,
    prune: String,
}

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        // The snapshot's horizon, the prune mark and the log's highest id.
        let bounds = format!(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, \
             (SELECT pruned_through::text FROM {s}.{META}) AS pruned, \
             (SELECT max(xid)::text FROM {s}.invalidations) AS top"
        );
        Self {
            // One statement, so one snapshot: the bounds and the rows (at
            // least one row, with NULL kind and key when none).
            poll: format!(
                "SELECT h.xmin, h.pruned, h.top, u.kind, u.key FROM ({bounds}) AS h \
                 LEFT JOIN {s}.invalidations AS i ON i.xid >= $1::text::xid8 \
                 LEFT JOIN LATERAL unnest(i.kinds, i.keys) AS u(kind, key) ON true"
            ),
            watermark: bounds,
            // One statement, so one transaction: the rows go, and the prune
            // mark rises to the highest id that went.
            prune: format!(
                "WITH gone AS (DELETE FROM {s}.invalidations \
                 WHERE at < clock_timestamp() - make_interval(secs => $1::float8) RETURNING xid), \
                 raised AS (UPDATE {s}.{META} SET pruned_through = \
                 GREATEST(pruned_through, (SELECT max(xid) FROM gone)) \
                 WHERE EXISTS (SELECT 1 FROM gone)) \
                 SELECT count(*) FROM gone"
            ),
        }
    }
}

fn xid(text: Option<String>, table: &'static str, column: &'static str) -> Result<u64, Fail> {
    let parsed = text.and_then(|t| t.parse().ok());
    Ok(parsed.ok_or_else(|| corrupt(table, column))?)
}

/// What one snapshot says about the log as a whole (see the module docs).
struct Bounds {
    /// The snapshot's `xmin`.
    xmin: u64,
    /// The prune mark.
    pruned: u64,
    /// One past the highest id of a log row or of the prune mark.
    floor: u64,
}

impl Bounds {
    /// Reads the first three columns of a poll's (or the bounds') row.
    fn of(row: &Row) -> Result<Self, Fail> {
        let xmin = xid(row.try_get(0)?, "invalidations", "xid")?;
        let pruned = xid(row.try_get(1)?, META, "pruned_through")?;
        let top: Option<String> = row.try_get(2)?;
        let top = top
            .map(|t| xid(Some(t), "invalidations", "xid"))
            .transpose()?;
        let floor = top.unwrap_or(0).max(pruned).saturating_add(1);
        Ok(Self {
            xmin,
            pruned,
            floor,
        })
    }

    /// Where the next poll starts.
    fn watermark(&self) -> Watermark {
        Watermark(self.xmin.min(self.floor))
    }

    /// Whether a poll from `since` may have missed rows.
    fn gap(&self, since: Watermark) -> bool {
        since.0 <= self.pruned || self.xmin < since.0 || self.floor < since.0
    }
}

/// One poll; see the module docs.
async fn poll(db: &Db, since: Option<Watermark>) -> Result<Invalidations, Fail> {
    let sql = &db.sql().feed;
    let Some(since) = since else {
        let row = db.query_opt(&sql.watermark, &[]).await?;
        let row = row.ok_or_else(|| corrupt("invalidations", "xid"))?;
        return Ok(Invalidations {
            keys: Vec::new(),
            watermark: Bounds::of(&row)?.watermark(),
            gap: false,
        });
    };
    let rows = db.query(&sql.poll, &[&since.0.to_string()]).await?;
    let first = rows
        .first()
        .ok_or_else(|| corrupt("invalidations", "xid"))?;
    let bounds = Bounds::of(first)?;
    let mut gap = bounds.gap(since);
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind: Option<i16> = row.try_get(3)?;
        let bytes: Option<&[u8]> = row.try_get(4)?;
        let (Some(kind), Some(bytes)) = (kind, bytes) else {
            continue;
        };
        match decode_key(kind, bytes) {
            Some(key) => keys.push(key),
            // A row this version cannot read: what it names is unknown.
            None => gap = true,
        }
    }
    Ok(Invalidations {
        keys,
        watermark: bounds.watermark(),
        gap,
    })
}

/// Deletes the log rows older than `older_than`, raising the prune mark;
/// returns how many went.
pub(crate) async fn prune(db: &Db, older_than: Duration) -> Result<u64, Fail> {
    // An interval holds about 178 million years; a century keeps everything.
    let secs = older_than.as_secs_f64().min(CENTURY_SECS);
    let row = db.query_opt(&db.sql().feed.prune, &[&secs]).await?;
    let count: i64 = row.map(|r| r.try_get(0)).transpose()?.unwrap_or_default();
    Ok(u64::try_from(count).unwrap_or_default())
}

/// How often the pruning task runs for a retention: half of it, between 1 s
/// and a minute.
pub(crate) fn prune_interval(retention: Duration) -> Duration {
    (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// The pruning task: prunes by age every [`prune_interval`], until aborted
/// (the store closes). A failed prune is retried at the next tick.
pub(crate) async fn prune_every(inner: std::sync::Arc<Inner>, retention: Duration) {
    let every = prune_interval(retention);
    loop {
        tokio::time::sleep(every).await;
        let pruned = inner
            .attempt("prune_invalidations", Mode::Auto, &move |db| async move {
                prune(&db, retention).await
            })
            .await;
        if let Err(e) = pruned {
            tracing::debug!("pruning the invalidation log failed (retried later): {e}");
        }
    }
}

impl PostgresTokenStore {
    /// Deletes the invalidation log's rows older than `older_than` now, as the
    /// store's periodic pruning does with its
    /// [retention](crate::PostgresTokenStoreBuilder::invalidation_retention);
    /// returns how many went. A poll from a watermark handed out before a
    /// pruned row was written then answers `gap`. For tests and operators;
    /// works (and logs nothing) also with the log turned off.
    pub async fn prune_invalidations(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.run("prune_invalidations", Mode::Auto, move |db| async move {
            prune(&db, older_than).await
        })
        .await
    }
}

impl InvalidationFeed for PostgresTokenStore {
    /// One statement (one snapshot) on a pooled connection: the new
    /// watermark (the snapshot's `xmin`, or one past the log's highest id when
    /// lower; see the crate docs), the prune mark, and every log row with
    /// `xid >= since`. `gap` when `since` is at or below the prune mark,
    /// above this database's bounds (another database, or one that lost log
    /// rows), or a row cannot be read. Fails as the other calls do when the server is unreachable;
    /// [`StoreError::Closed`] after `close`.
    fn invalidations_since(
        &self,
        since: Option<Watermark>,
    ) -> BoxFuture<'_, Result<Invalidations, StoreError>> {
        Box::pin(
            self.run("invalidations_since", Mode::Auto, move |db| async move {
                poll(&db, since).await
            }),
        )
    }

    fn hints(&self) -> Option<&HintBoard> {
        self.hint_board()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_runs_often_enough_and_not_too_often() {
        assert_eq!(
            prune_interval(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            prune_interval(Duration::from_secs(10)),
            Duration::from_secs(5)
        );
        assert_eq!(prune_interval(Duration::ZERO), Duration::from_secs(1));
    }
}
