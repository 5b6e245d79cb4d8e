//! The throwaway cluster works: fresh databases, a cluster of one's own that
//! stops when dropped, and a server given by URL.

use std::path::Path;
use std::time::{Duration, Instant};
use tokenstore_pgtest::{Server, Ssl, TestDatabase, shared};
use tokio_postgres::NoTls;

/// Runs `sql` on `db` and returns the first column of every row as text.
fn query(config: tokio_postgres::Config, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = config.connect(NoTls).await?;
        let driver = tokio::spawn(conn);
        let rows = client.simple_query(sql).await?;
        drop(client);
        let _ = driver.await;
        Ok(rows
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect())
    })
}

/// Whether `pid` runs (a zombie has exited; it lingers only until reaped).
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
fn postmaster_pid(dir: &Path) -> u32 {
    let text = std::fs::read_to_string(dir.join("data/postmaster.pid")).expect("postmaster.pid");
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid")
}

#[test]
fn each_database_is_fresh_and_separate() {
    let (a, b) = (shared().database(), shared().database());
    assert_ne!(a.name(), b.name());
    query(
        a.config(),
        "CREATE TABLE t (x int); INSERT INTO t VALUES (7)",
    )
    .expect("create");
    assert_eq!(query(a.config(), "SELECT x FROM t").expect("select"), ["7"]);
    let err = query(b.config(), "SELECT x FROM t").expect_err("b has no table t");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    );
}

#[test]
fn the_server_runs_with_fsync_on_and_no_tcp() {
    let db = shared().database();
    assert_eq!(query(db.config(), "SHOW fsync").expect("fsync"), ["on"]);
    if shared().dir().is_some() {
        assert_eq!(
            query(db.config(), "SHOW listen_addresses").expect("listen"),
            [""]
        );
    }
}

#[test]
fn a_dropped_database_is_gone() {
    let db = shared().database();
    let name = db.name().to_owned();
    let admin = shared().admin_config();
    drop(db);
    let sql = format!("SELECT datname FROM pg_database WHERE datname = '{name}'");
    assert!(query(admin, &sql).expect("query").is_empty());
}

#[test]
fn an_own_cluster_stops_and_is_removed_on_drop() {
    let server = Server::start().expect("start a cluster");
    let dir = server.dir().expect("our own").to_path_buf();
    let pid = postmaster_pid(&dir);
    assert!(pid_alive(pid));
    let db: TestDatabase = server.database();
    assert_eq!(query(db.config(), "SELECT 1").expect("select"), ["1"]);
    drop(db);
    drop(server);
    assert!(!pid_alive(pid), "postmaster {pid} still running");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn pg_ctl_restart_keeps_the_cluster_usable() {
    let server = Server::start().expect("start a cluster");
    let dir = server.dir().expect("our own").to_path_buf();
    let before = postmaster_pid(&dir);
    server
        .pg_ctl(&["-m", "immediate", "-w", "restart"])
        .expect("restart");
    let after = postmaster_pid(&dir);
    assert_ne!(before, after);
    let deadline = Instant::now() + Duration::from_secs(30);
    let db = loop {
        match server.try_database() {
            Ok(db) => break db,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not ready yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(query(db.config(), "SELECT 2").expect("select"), ["2"]);
}

#[test]
fn a_server_given_by_url_is_used_as_is() {
    let db = shared().database();
    let server = Server::at_url(&db.conninfo()).expect("parse");
    assert!(server.dir().is_none());
    let inner = server.database();
    assert_eq!(
        query(inner.config(), "SELECT current_database()").expect("q"),
        [inner.name()]
    );
    assert!(server.pg_ctl(&["status"]).is_err());
}

#[test]
fn a_tcp_cluster_with_ssl_serves_its_certificate_on_loopback() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let server = Server::start_tcp(Ssl::On).expect("start a TLS cluster");
    let dir = server.dir().expect("our own").to_path_buf();
    let port = server.port().expect("a TCP port");
    let admin = server.admin_config();
    for (setting, value) in [
        ("ssl", "on".to_owned()),
        ("fsync", "on".to_owned()),
        ("listen_addresses", "127.0.0.1".to_owned()),
        ("port", port.to_string()),
    ] {
        let shown = query(admin.clone(), &format!("SHOW {setting}")).expect("show");
        assert_eq!(shown, [value], "{setting}");
    }
    let key = std::fs::metadata(dir.join("data/server.key")).expect("server.key");
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let data = std::fs::metadata(dir.join("data")).expect("data dir");
    assert_eq!(
        key.uid(),
        data.uid(),
        "the key belongs to the server's user"
    );
    let ca = std::fs::read_to_string(server.ca_cert().expect("a CA")).expect("ca.crt");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_ne!(ca, tokenstore_pgtest::unrelated_ca_pem());
    drop(server);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_tcp_cluster_without_ssl_wants_the_password() {
    let server = Server::start_tcp(Ssl::Off).expect("start a TCP cluster");
    assert!(server.ca_cert().is_none());
    assert_eq!(
        query(server.admin_config(), "SHOW ssl").expect("show"),
        ["off"]
    );
    let mut tcp = tokio_postgres::Config::new();
    tcp.host("127.0.0.1")
        .port(server.port().expect("port"))
        .user("postgres")
        .dbname("postgres");
    let err = query(tcp.clone().password("wrong").clone(), "SELECT 1").expect_err("wrong");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD)
    );
    let right = server.password().expect("password");
    assert_eq!(
        query(tcp.password(right).clone(), "SELECT 1").expect("login"),
        ["1"]
    );
}
