//! TLS through rustls against throwaway clusters on a loopback port: one with
//! `ssl = on` and a certificate for `localhost` / `127.0.0.1` its own CA
//! signed, one with `ssl = off`. Whether a store's connections really are
//! encrypted is read from `pg_stat_ssl` for the store's own backends.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokenstore_core::{ManualClock, StoreError, StoredSession, Timestamp, TokenStore, UserInfo};
use tokenstore_pgtest::{Server, Ssl, TestDatabase};
use tokenstore_postgres::{PostgresTokenStore, TlsMode};
use tokio_postgres::NoTls;

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

fn ssl_on() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start_tcp(Ssl::On).expect("a cluster with ssl = on"))
}

fn ssl_off() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start_tcp(Ssl::Off).expect("a cluster with ssl = off"))
}

fn ca(server: &Server) -> &Path {
    server.ca_cert().expect("the cluster's CA")
}

/// `url` (with `query` appended) for the database, and the database.
fn url(server: &'static Server, host: &str, query: &str) -> (String, TestDatabase) {
    let db = server.database();
    let url = server.tcp_url(host, db.name()).expect("a TCP cluster");
    (format!("{url}{query}"), db)
}

/// As [`url`], for the `postgres` database: for opens that fail before
/// logging in, which need no database of their own (creating one takes
/// about a second with fsync on).
fn admin_url(server: &Server, host: &str, query: &str) -> String {
    let url = server.tcp_url(host, "postgres").expect("a TCP cluster");
    format!("{url}{query}")
}

async fn open(url: &str) -> Result<PostgresTokenStore, StoreError> {
    PostgresTokenStore::builder(url)
        .allow_plaintext_tokens(true)
        .pool_size(2)
        .clock(ManualClock::new(T0))
        .open()
        .await
}

/// Whether each of the store's connections to `db` is encrypted, from the
/// server's side (asked over the admin's Unix socket).
async fn ssl_of_store_connections(server: &Server, db: &TestDatabase) -> Vec<bool> {
    let (client, conn) = server.admin_config().connect(NoTls).await.expect("admin");
    let driver = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'tokenstore'",
            &[&db.name()],
        )
        .await
        .expect("pg_stat_ssl");
    drop(client);
    let _ = driver.await;
    rows.iter().map(|r| r.get(0)).collect()
}

/// Stores a session and reads it back by its token.
async fn round_trip(store: &PostgresTokenStore) {
    let user = UserInfo::new("github", "42", "octocat");
    let expires = T0 + Duration::from_secs(3600);
    let session = StoredSession::new("sess-tls", user, "access-tls", expires, T0);
    store.store_session(Arc::new(session)).await.expect("store");
    let loaded = store
        .load_session_by_token("access-tls")
        .await
        .expect("load")
        .expect("found");
    assert_eq!(loaded.session_id, "sess-tls");
}

/// `err` with its Debug, checked not to show the cluster's password.
fn shown(server: &Server, err: &StoreError) -> String {
    let text = format!("{err} | {err:?}");
    let password = server.password().expect("password");
    assert!(!text.contains(password), "the password leaked: {text}");
    text
}

async fn open_encrypted(server: &'static Server, host: &str, query: &str) {
    let (url, db) = url(server, host, query);
    let store = open(&url).await.unwrap_or_else(|e| panic!("{query}: {e}"));
    round_trip(&store).await;
    assert_eq!(
        ssl_of_store_connections(server, &db).await,
        [true],
        "{query}"
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_every_connection_and_the_store_works() {
    // channel_binding=require: SCRAM-SHA-256-PLUS, bound to the server's certificate.
    open_encrypted(
        ssl_on(),
        "localhost",
        "?sslmode=require&channel_binding=require",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_ca_accepts_each_name_in_the_certificate() {
    let ca = ca(ssl_on()).display().to_string();
    let query = format!("?sslmode=verify-full&sslrootcert={ca}");
    open_encrypted(ssl_on(), "localhost", &query).await;
    open_encrypted(ssl_on(), "127.0.0.1", &query).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_sets_the_mode_and_root_over_the_url() {
    let server = ssl_on();
    let (url, db) = url(server, "localhost", "?sslmode=disable");
    let store = PostgresTokenStore::builder(&url)
        .tls_mode(TlsMode::VerifyFull)
        .tls_root_cert(ca(server))
        .allow_plaintext_tokens(true)
        .open()
        .await
        .expect("verify-full through the builder");
    assert_eq!(ssl_of_store_connections(server, &db).await, [true]);
    assert!(format!("{store:?}").contains("VerifyFull"), "{store:?}");
    store.close().await.unwrap();
}

/// A file holding the PEM of a CA that signed nothing of the cluster's.
fn unrelated_ca() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), tokenstore_pgtest::unrelated_ca_pem()).expect("write");
    file
}

fn assert_verification_failed(server: &Server, err: &StoreError, at: &str) {
    let text = shown(server, err);
    assert!(matches!(err, StoreError::InvalidConfig(_)), "{text}");
    assert!(!err.is_transient(), "{text}");
    assert!(text.contains("TLS verification failed"), "{text}");
    assert!(text.contains(at), "names {at}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_is_refused_under_verify_full_and_require_with_a_root() {
    let server = ssl_on();
    let other = unrelated_ca();
    let port = server.port().expect("port");
    for mode in ["verify-full", "verify-ca", "require"] {
        let query = format!("?sslmode={mode}&sslrootcert={}", other.path().display());
        let url = admin_url(server, "localhost", &query);
        let err = open(&url).await.expect_err(mode);
        assert_verification_failed(server, &err, &format!("localhost:{port}"));
        assert!(
            err.to_string().contains(&format!("sslmode={mode}")),
            "{err}"
        );
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_not_in_the_certificate_fails_verify_full_but_not_verify_ca() {
    let server = ssl_on();
    let db = server.database();
    let port = server.port().expect("port");
    // Dials 127.0.0.1 (hostaddr) but checks the name `host`, which the
    // certificate (localhost, 127.0.0.1) does not hold.
    let conninfo = |mode: &str| {
        format!(
            "host=wrong-name.invalid hostaddr=127.0.0.1 port={port} user=postgres \
             password='{}' dbname={} sslmode={mode} sslrootcert='{}'",
            server.password().expect("password"),
            db.name(),
            ca(server).display()
        )
    };
    let err = open(&conninfo("verify-full"))
        .await
        .expect_err("wrong name");
    assert_verification_failed(server, &err, &format!("wrong-name.invalid:{port}"));
    assert!(err.to_string().contains("not valid for name"), "{err}");
    let store = open(&conninfo("verify-ca"))
        .await
        .expect("the chain is fine");
    assert_eq!(ssl_of_store_connections(server, &db).await, [true]);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_ssl_is_a_clear_error() {
    let server = ssl_off();
    let port = server.port().expect("port");
    for mode in ["require", "verify-full"] {
        let query = format!("?sslmode={mode}&sslrootcert={}", ca(ssl_on()).display());
        let url = admin_url(server, "127.0.0.1", &query);
        let err = open(&url).await.expect_err(mode);
        let text = shown(server, &err);
        assert!(matches!(err, StoreError::InvalidConfig(_)), "{text}");
        assert!(
            text.contains(&format!(
                "PostgreSQL at 127.0.0.1:{port} does not offer TLS"
            )),
            "{text}"
        );
    }
    // prefer (the default) falls back to a plain connection.
    let (url, db) = url(server, "127.0.0.1", "?sslmode=prefer");
    let store = open(&url).await.expect("prefer connects in plain");
    assert_eq!(ssl_of_store_connections(server, &db).await, [false]);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_connects_in_plain_to_the_ssl_server() {
    let server = ssl_on();
    let (url, db) = url(server, "localhost", "?sslmode=disable");
    let store = open(&url).await.expect("disable");
    round_trip(&store).await;
    assert_eq!(ssl_of_store_connections(server, &db).await, [false]);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_over_tls_never_shows_it() {
    let server = ssl_on();
    let port = server.port().expect("port");
    let url = format!(
        "postgresql://postgres:Wr0ng-tls-Pw@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca(server).display()
    );
    let err = open(&url).await.expect_err("wrong password");
    let text = shown(server, &err);
    assert!(
        text.contains("28P01") && !text.contains("Wr0ng-tls-Pw"),
        "{text}"
    );
    let builder = PostgresTokenStore::builder(&url);
    let debug = format!("{builder:?}");
    assert!(!debug.contains("Wr0ng-tls-Pw"), "{debug}");
    assert!(debug.contains("VerifyFull"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_root_file_fails_open_before_dialling() {
    let server = ssl_on();
    let garbage = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(garbage.path(), "not PEM at all").expect("write");
    let missing = garbage.path().with_extension("absent");
    for path in [garbage.path(), missing.as_path()] {
        let query = format!("?sslmode=verify-full&sslrootcert={}", path.display());
        let url = admin_url(server, "localhost", &query);
        let err = open(&url).await.expect_err("bad root file");
        let text = shown(server, &err);
        assert!(matches!(err, StoreError::InvalidConfig(_)), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    let url = admin_url(server, "localhost", "?sslmode=verify-full");
    let err = open(&url).await.expect_err("verify-full without a root");
    assert!(
        shown(server, &err).contains("needs a root certificate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_does_not_apply_to_a_unix_socket() {
    // The ssl = on cluster's Unix socket: as in libpq, even verify-full
    // connects there, without TLS (PostgreSQL offers none on a socket).
    let server = ssl_on();
    let db = server.database();
    let url = format!(
        "host='{}' port={} user=postgres dbname={} sslmode=verify-full sslrootcert='{}'",
        server.dir().expect("our own").display(),
        server.port().expect("port"),
        db.name(),
        ca(server).display()
    );
    let store = open(&url).await.expect("Unix socket");
    round_trip(&store).await;
    assert_eq!(ssl_of_store_connections(server, &db).await, [false]);
    store.close().await.unwrap();
}
