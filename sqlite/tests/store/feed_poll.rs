//! The invalidation log, read side: several stores on one file see each
//! other's writes, watermarks advance, pruning past a watermark is a gap, and
//! the log is opt-in but a property of the file.

use crate::common::{Env, full_client, full_session};
use crate::feed::{Cursor, feed, logged, now_mark, poll, session_keys};
use futures_lite::future::block_on;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::cache::CacheKey;
use tokenstore_core::feed::{KIND_CLIENT, Watermark};
use tokenstore_core::{StoreError, TokenStore};

fn table_exists(env: &Env, table: &str) -> bool {
    let n: i64 = env
        .raw()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .expect("sqlite_master");
    n == 1
}

#[test]
fn two_stores_on_one_file_see_each_others_writes() {
    let env = Env::new();
    let (a, b) = (logged(&env), logged(&env));
    let (mut seen_by_a, mut seen_by_b) = (Cursor::new(&a), Cursor::new(&b));
    assert_eq!(seen_by_a.at, seen_by_b.at, "one file, one watermark");
    for n in 0..5u32 {
        let before = seen_by_b.at;
        let session = full_session(&env, n);
        block_on(a.store_session(Arc::new(session.clone()))).expect("store on a");
        assert_eq!(seen_by_b.take(&b), session_keys(&session), "round {n}");
        assert!(seen_by_b.at > before, "round {n}: the watermark advances");
        // Re-polling from the returned watermark gives nothing old.
        assert_eq!(seen_by_b.take(&b), HashSet::new(), "round {n}");

        let id = format!("session-{n}");
        block_on(b.delete_session_by_id(&id)).expect("delete on b");
        let seen = seen_by_a.take(&a);
        assert_eq!(seen, session_keys(&session), "round {n}");
        assert_eq!(
            seen_by_b.take(&b),
            session_keys(&session),
            "its own write too"
        );
        assert_eq!(seen_by_a.at, seen_by_b.at, "round {n}");
    }
    block_on(a.close()).expect("close a");
    block_on(b.close()).expect("close b");
}

#[test]
fn a_write_is_in_the_next_poll_of_any_store_as_soon_as_it_returns() {
    let env = Env::new();
    let writer = logged(&env);
    let readers: Vec<_> = (0..3).map(|_| logged(&env)).collect();
    let mut cursors: Vec<_> = readers.iter().map(Cursor::new).collect();
    for n in 0..20u32 {
        let client = full_client(&env, &format!("client-{n}"));
        block_on(writer.store_client(client)).expect("store");
        let want = HashSet::from([CacheKey::Client(format!("client-{n}"))]);
        for (reader, cursor) in readers.iter().zip(&mut cursors) {
            assert_eq!(cursor.take(reader), want, "write {n}");
        }
    }
    let marks: HashSet<_> = cursors.iter().map(|c| c.at).collect();
    assert_eq!(marks, HashSet::from([now_mark(&writer)]));
}

#[test]
fn the_first_poll_asks_only_for_the_watermark() {
    let env = Env::new();
    let store = logged(&env);
    let empty = poll(&store, None);
    assert_eq!(
        (empty.keys.len(), empty.watermark, empty.gap),
        (0, Watermark(0), false)
    );
    block_on(store.store_client(full_client(&env, "c"))).expect("store");
    let first = poll(&store, None);
    assert_eq!((first.keys.len(), first.gap), (0, false));
    assert!(first.watermark > empty.watermark);
    let from_start = poll(&store, Some(Watermark(0)));
    assert_eq!(from_start.keys, vec![CacheKey::Client("c".into())]);
    assert_eq!(
        (from_start.watermark, from_start.gap),
        (first.watermark, false)
    );
}

#[test]
fn a_watermark_past_the_last_id_is_a_gap() {
    let env = Env::new();
    let store = logged(&env);
    block_on(store.store_client(full_client(&env, "c"))).expect("store");
    let now = now_mark(&store);
    for since in [now.0 + 1, now.0 + 1_000, i64::MAX as u64, u64::MAX] {
        let got = poll(&store, Some(Watermark(since)));
        assert!(got.gap, "{since}");
        assert_eq!((got.keys.len(), got.watermark), (0, now), "{since}");
    }
}

#[test]
fn an_unreadable_log_row_is_a_gap() {
    let env = Env::new();
    let store = logged(&env);
    let before = now_mark(&store);
    let raw = env.raw();
    let client = KIND_CLIENT.to_string();
    for (kind, key) in [
        ("99", "x'00'"),
        ("1", "x'0011'"),
        (client.as_str(), "'text, not a blob'"),
        (client.as_str(), "x'fffe'"),
        ("70000", "x'00'"),
        ("'1'", "x'00'"),
    ] {
        let mark = now_mark(&store);
        let sql = format!(
            "INSERT INTO tokenstore_invalidations (kind, key, at) VALUES ({kind}, {key}, 0)"
        );
        raw.execute_batch(&sql).expect("insert");
        let got = poll(&store, Some(mark));
        assert!(got.gap, "kind {kind}, key {key}");
        assert!(got.watermark > mark);
        assert!(
            !poll(&store, Some(got.watermark)).gap,
            "the next poll is clean"
        );
    }
    assert!(poll(&store, Some(before)).gap);
}

#[test]
fn pruning_by_age_turns_old_watermarks_into_gaps() {
    let env = Env::new();
    let store = logged(&env);
    let start = now_mark(&store);
    block_on(store.store_client(full_client(&env, "old"))).expect("store");
    let after_old = now_mark(&store);

    // Not yet past the retention (10 minutes): nothing is pruned.
    env.clock.advance(Duration::from_secs(599));
    block_on(store.store_client(full_client(&env, "mid"))).expect("store");
    assert!(!poll(&store, Some(start)).gap);
    let after_mid = now_mark(&store);

    // Past it (and past the minute between prunes): the first row goes.
    env.clock.advance(Duration::from_secs(62));
    block_on(store.store_client(full_client(&env, "new"))).expect("store");
    let from_start = poll(&store, Some(start));
    assert!(from_start.gap, "rows after the watermark were pruned");
    let from_old = poll(&store, Some(after_old));
    assert!(!from_old.gap, "nothing after this watermark was pruned");
    let want = [
        CacheKey::Client("mid".into()),
        CacheKey::Client("new".into()),
    ];
    assert_eq!(from_old.keys, want);
    let current = poll(&store, Some(from_old.watermark));
    assert!(!current.gap && current.keys.is_empty());

    // cleanup_expired prunes at once, whatever the minute says; ids go on
    // from the last one even with the log empty (AUTOINCREMENT).
    env.clock.advance(Duration::from_secs(601));
    block_on(store.cleanup_expired()).expect("cleanup");
    let last = now_mark(&store);
    assert!(poll(&store, Some(after_mid)).gap);
    assert!(!poll(&store, Some(last)).gap);
    let rows: i64 = env
        .raw()
        .query_row("SELECT count(*) FROM tokenstore_invalidations", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(rows, 0);
    block_on(store.store_client(full_client(&env, "after"))).expect("store");
    let got = poll(&store, Some(last));
    assert_eq!((got.keys.len(), got.gap), (1, false));
    assert!(got.watermark > last, "ids are not reused after a prune");
}

#[test]
fn the_retention_is_configurable_and_a_second_store_sees_the_prune() {
    let env = Env::new();
    let builder = env.builder().invalidation_log(true);
    let short = block_on(
        builder
            .invalidation_retention(Duration::from_secs(30))
            .open(),
    );
    let short = short.expect("open");
    let other = logged(&env);
    let start = now_mark(&other);
    block_on(short.store_client(full_client(&env, "c"))).expect("store");
    env.clock.advance(Duration::from_secs(20));
    block_on(short.cleanup_expired()).expect("cleanup");
    assert!(!poll(&other, Some(start)).gap, "20 s < 30 s");
    env.clock.advance(Duration::from_secs(12));
    block_on(short.cleanup_expired()).expect("cleanup");
    assert!(poll(&other, Some(start)).gap, "pruned by the other store");
}

#[test]
fn the_log_is_opt_in_and_a_property_of_the_file() {
    let env = Env::new();
    let plain = env.open();
    assert!(plain.invalidation_feed().is_none());
    block_on(plain.store_client(full_client(&env, "c"))).expect("store");
    assert!(!table_exists(&env, "tokenstore_invalidations"));

    let on = logged(&env);
    assert!(table_exists(&env, "tokenstore_invalidations"));
    assert!(table_exists(&env, "tokenstore_invalidations_meta"));
    // Opened without the option on a file with the log: it logs too.
    let later = env.open();
    let mut cursor = Cursor::new(&on);
    block_on(later.delete_client("c")).expect("delete");
    assert_eq!(
        cursor.take(&on),
        HashSet::from([CacheKey::Client("c".into())])
    );
    assert!(later.invalidation_feed().is_some());
    // A store opened before the log existed does not log until reopened.
    assert!(plain.invalidation_feed().is_none());
    block_on(plain.close()).expect("close");
    let reopened = env.open();
    assert!(reopened.invalidation_feed().is_some());
    let explicit_off = block_on(env.builder().invalidation_log(false).open());
    assert!(explicit_off.expect("open").invalidation_feed().is_some());
}

#[test]
fn the_log_table_never_reuses_ids() {
    let env = Env::new();
    let _store = logged(&env);
    let sql: String = env
        .raw()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'tokenstore_invalidations'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    assert!(sql.contains("AUTOINCREMENT"), "{sql}");
}

#[test]
fn a_poll_after_close_is_closed_and_the_feed_has_no_hints() {
    let env = Env::new();
    let store = logged(&env);
    assert!(feed(&store).hints().is_none());
    block_on(store.close()).expect("close");
    let got = block_on(feed(&store).invalidations_since(None));
    assert_eq!(got, Err(StoreError::Closed));
}

#[test]
fn polls_run_on_any_runtime_without_blocking_it() {
    // Two polls in flight at once on one thread: each waits on the
    // connection thread, not on the caller's.
    let env = Env::new();
    let store = logged(&env);
    block_on(store.store_client(full_client(&env, "c"))).expect("store");
    let (x, y) = block_on(futures_lite::future::zip(
        feed(&store).invalidations_since(Some(Watermark(0))),
        feed(&store).invalidations_since(None),
    ));
    assert_eq!(x.expect("x").keys.len(), 1);
    assert!(!y.expect("y").gap);
}

#[test]
fn a_poller_racing_two_writers_misses_no_key() {
    const PER_WRITER: u32 = 100;
    let env = Env::new();
    let writers: Vec<_> = (0..2).map(|_| logged(&env)).collect();
    let poller = logged(&env);
    let mut cursor = Cursor::new(&poller);
    let mut seen = HashSet::new();
    std::thread::scope(|scope| {
        for (w, store) in writers.iter().enumerate() {
            let env = &env;
            scope.spawn(move || {
                for n in 0..PER_WRITER {
                    let client = full_client(env, &format!("w{w}-{n}"));
                    block_on(store.store_client(client)).expect("store");
                }
            });
        }
        // Polls while the writers run (bounded), each from the last watermark.
        for _ in 0..2_000 {
            seen.extend(cursor.take(&poller));
            if seen.len() == 2 * PER_WRITER as usize {
                break;
            }
        }
    });
    seen.extend(cursor.take(&poller));
    let want: HashSet<_> = (0..2)
        .flat_map(|w| (0..PER_WRITER).map(move |n| CacheKey::Client(format!("w{w}-{n}"))))
        .collect();
    assert_eq!(seen, want);
}
