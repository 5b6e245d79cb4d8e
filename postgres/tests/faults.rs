//! Faults on a cluster of the test's own: a wrong password, and the server
//! restarted (`pg_ctl restart -m immediate`) under a running store.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenstore_core::{ManualClock, StateRecord, StoreError, Timestamp, TokenStore};
use tokenstore_pgtest::Server;
use tokenstore_postgres::PostgresTokenStore;
use tokio_postgres::NoTls;

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);
const PASSWORD: &str = "s3cret-Pw-771";

async fn admin(server: &Server, sql: &str) {
    let (client, conn) = server.admin_config().connect(NoTls).await.expect("connect");
    let driver = tokio::spawn(conn);
    client.batch_execute(sql).await.expect("admin sql");
    drop(client);
    let _ = driver.await;
}

/// A role `app` that must log in with [`PASSWORD`] over the Unix socket.
async fn password_role(server: &Server) {
    admin(
        server,
        &format!("CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'"),
    )
    .await;
    admin(server, "CREATE DATABASE appdb OWNER app").await;
    let hba = server.dir().expect("own cluster").join("data/pg_hba.conf");
    std::fs::write(&hba, "local all app scram-sha-256\nlocal all all trust\n").expect("pg_hba");
    server.pg_ctl(&["reload"]).expect("reload");
}

fn app_config(server: &Server, password: &str) -> tokio_postgres::Config {
    let mut config = server.admin_config();
    config.user("app").password(password).dbname("appdb");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_that_never_shows_it() {
    let server = Server::start().expect("a cluster of our own");
    password_role(&server).await;
    // The reload is asynchronous in the server: wait (bounded) until it bites.
    let wrong = "wrong-Pw-5521";
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        let attempt = PostgresTokenStore::builder_with_config(app_config(&server, wrong))
            .allow_plaintext_tokens(true)
            .open()
            .await;
        match attempt {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(_) => panic!("the wrong password was accepted"),
        }
    };
    let text = format!("{err} {err:?}");
    assert!(text.contains("28P01"), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    let builder = PostgresTokenStore::builder_with_config(app_config(&server, PASSWORD));
    assert!(!format!("{builder:?}").contains(PASSWORD));
    // The right password opens, and the store's Debug does not show it either.
    let store = builder
        .allow_plaintext_tokens(true)
        .open()
        .await
        .expect("right password");
    assert!(!format!("{store:?}").contains(PASSWORD));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_typed_error_then_the_pool_reconnects() {
    let server = Server::start().expect("a cluster of our own");
    let db = server.database();
    let store = PostgresTokenStore::builder_with_config(db.config())
        .allow_plaintext_tokens(true)
        .pool_size(2)
        .clock(ManualClock::new(T0))
        .open()
        .await
        .unwrap();
    let state = |i: usize| {
        let expires = T0 + Duration::from_secs(60);
        Arc::new(StateRecord::new(format!("st-{i}"), expires, T0))
    };
    store.store_state(state(0)).await.unwrap();
    server
        .pg_ctl(&["-m", "immediate", "-w", "stop"])
        .expect("stop");
    // While it is down: a transient Backend error naming where it dialled.
    let err = store
        .store_state(state(1))
        .await
        .expect_err("the server is down");
    assert!(
        matches!(err, StoreError::Backend(_)) && err.is_transient(),
        "{err:?}"
    );
    let socket_dir = server.dir().expect("own").display().to_string();
    assert!(err.to_string().contains(&socket_dir), "{err}");
    server.pg_ctl(&["-w", "start"]).expect("start");
    // Up again: the pool dials fresh connections (bounded wait for the server).
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.store_state(state(2)).await {
        assert!(e.is_transient(), "{e:?}");
        assert!(Instant::now() < deadline, "no reconnect within 30 s: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Committed before the crash: still there (fsync on). Refused while down: absent.
    assert!(store.consume_state("st-0").await.unwrap().is_some());
    assert!(store.consume_state("st-1").await.unwrap().is_none());
    assert!(store.consume_state("st-2").await.unwrap().is_some());
    server
        .pg_ctl(&["-m", "immediate", "-w", "restart"])
        .expect("restart");
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.store_state(state(3)).await {
        assert!(e.is_transient(), "{e:?}");
        assert!(Instant::now() < deadline, "no reconnect within 30 s: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await.unwrap();
}
