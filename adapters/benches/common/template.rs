//! Copies of a prefilled template database, one per benchmark run, so every
//! run starts from the same rows (`benches/postgres.rs`, `benches/feed.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokenstore::{Clock, SystemClock, TokenStore};
use tokio_postgres::{Client, Config};

/// Fills a template's `store` with `rows` sessions (`common::session`), in
/// bulk calls of 5,000.
pub(crate) async fn prefill(store: &impl TokenStore, rows: u64) {
    let now = SystemClock.now();
    let bulk = store.bulk().expect("postgres has bulk");
    for start in (0..rows).step_by(5_000) {
        let chunk = (start..(start + 5_000).min(rows))
            .map(|n| crate::common::session(n, now))
            .collect();
        bulk.bulk_store_sessions(chunk).await.expect("prefill");
    }
}

/// A database copied from the template for one run, dropped by
/// [`Copies::finish`].
pub(crate) struct RunDb {
    pub(crate) name: String,
    pub(crate) config: Config,
}

/// The admin connection that copies `template` for each run.
pub(crate) struct Copies {
    pub(crate) admin: Client,
    base: Config,
    template: String,
    tag: &'static str,
    made: AtomicU64,
}

impl Copies {
    /// Copies of `template` through `admin`, named `<template>_<tag>_<n>`;
    /// `base` is the server's connection config.
    pub(crate) fn new(admin: Client, base: Config, template: &str, tag: &'static str) -> Self {
        Self {
            admin,
            base,
            template: template.to_owned(),
            tag,
            made: AtomicU64::new(0),
        }
    }

    /// A fresh copy of the template.
    pub(crate) async fn fresh(&self) -> RunDb {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}_{}_{n}", self.template, self.tag);
        let sql = format!("CREATE DATABASE {name} TEMPLATE {}", self.template);
        // The template's last connections may take a moment to go.
        let mut tries = 0;
        while let Err(e) = self.admin.batch_execute(&sql).await {
            tries += 1;
            assert!(tries < 50, "copy the template: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut config = self.base.clone();
        config.dbname(&name);
        RunDb { name, config }
    }

    /// Drops a run's copy.
    pub(crate) async fn finish(&self, db: RunDb) {
        let sql = format!("DROP DATABASE {} WITH (FORCE)", db.name);
        self.admin
            .batch_execute(&sql)
            .await
            .expect("drop a run's database");
    }
}
