//! # tokenstore-pgtest
//!
//! A throwaway PostgreSQL for tokenstore's tests, benches and main job, and a
//! fresh database for each test.
//!
//! - [`shared`]: the one [`Server`] of this process, started on first use. It
//!   is the server at `TOKENSTORE_PG_URL` when that variable is set, otherwise a
//!   new cluster: `initdb` into a temporary directory, then `pg_ctl start` with
//!   the Unix socket in that directory, no TCP listener and `fsync` on.
//! - [`Server::start`]: a cluster of the caller's own (for tests that restart
//!   or stop it), stopped when dropped.
//! - [`Server::start_tcp`]: the same, also listening on a free loopback TCP
//!   port (127.0.0.1 only), where the superuser logs in with a password
//!   (`scram-sha-256`); with [`Ssl::On`], `ssl = on` and a server certificate
//!   for `localhost` and `127.0.0.1` signed by a CA made for this cluster
//!   ([`Server::ca_cert`]). [`unrelated_ca_pem`] makes a CA that signed nothing.
//! - [`Server::database`]: `CREATE DATABASE` with a unique name; the
//!   [`TestDatabase`] drops it (`WITH (FORCE)`) when it is dropped.
//!
//! The binaries are `initdb` and `pg_ctl` from `PATH`, else from the newest
//! `/usr/lib/postgresql/*/bin` (where Debian's `postgresql` package puts them).
//! When this process runs as root (PostgreSQL refuses to), they run as the
//! `postgres` system user through `runuser -u postgres --` (or `su postgres`),
//! and the temporary directory is handed to that user.
//!
//! **Cleanup.** Each cluster has a watcher: a small `sh` child whose standard
//! input is a pipe held by this process. When this process ends in any way
//! (normal exit, a panic, an abort, a kill), the pipe closes, and the watcher
//! stops the cluster (`pg_ctl stop -m immediate`) and removes its directory. A
//! [`Server`] of one's own does the same when it is dropped, and waits for it.
//!
//! **No silent skips.** When no PostgreSQL can be found or started,
//! [`shared`] panics with a message saying what to install or set.
//!
//! ```no_run
//! let db = tokenstore_pgtest::shared().database();
//! let config = db.config(); // a tokio_postgres::Config for the fresh database
//! # drop(config);
//! ```
#![deny(missing_docs)]

mod certs;

pub use certs::unrelated_ca_pem;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls};

/// The environment variable naming an existing server to use instead of a
/// throwaway cluster: a libpq URL or key-value string whose user may
/// `CREATE DATABASE`.
pub const URL_VAR: &str = "TOKENSTORE_PG_URL";

/// The superuser of a throwaway cluster.
const SUPERUSER: &str = "postgres";

/// What went wrong starting or using a server; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn fail(message: impl Into<String>) -> Error {
    Error(message.into())
}

/// The server of this process: `TOKENSTORE_PG_URL`'s, or a throwaway cluster
/// started on first use and stopped when the process ends.
///
/// # Panics
///
/// When no PostgreSQL can be found or started (the message says why and what
/// to install); every later call panics with the same message.
pub fn shared() -> &'static Server {
    static SHARED: OnceLock<Result<Server, Error>> = OnceLock::new();
    match SHARED.get_or_init(Server::from_env_or_start) {
        Ok(server) => server,
        Err(e) => panic!("tokenstore-pgtest: {e}"),
    }
}

/// A PostgreSQL server the tests may create databases on.
pub struct Server {
    admin: Config,
    cluster: Option<Cluster>,
}

/// A throwaway cluster this process started.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    watcher: Option<(Child, ChildStdin)>,
    tcp: Option<Tcp>,
}

/// Whether a cluster of [`Server::start_tcp`] offers TLS on its TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ssl {
    /// `ssl = off`: the server answers a TLS request with "no".
    Off,
    /// `ssl = on`, with a certificate for `localhost` and `127.0.0.1` signed
    /// by the CA at [`Server::ca_cert`].
    On,
}

/// What a cluster listening on a loopback port adds.
struct Tcp {
    port: u16,
    password: String,
    ca: Option<PathBuf>,
}

/// How many free ports are tried before giving up (another process may take
/// the port between our probe and the server's bind).
const PORT_ATTEMPTS: usize = 5;

impl Server {
    /// The server at `TOKENSTORE_PG_URL` when set, else [`Server::start`].
    pub fn from_env_or_start() -> Result<Self, Error> {
        match std::env::var(URL_VAR) {
            Ok(url) => Self::at_url(&url),
            Err(std::env::VarError::NotPresent) => Self::start(),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(fail(format!("{URL_VAR} is not valid UTF-8")))
            }
        }
    }

    /// An existing server, reached with `url`; its database is the one the
    /// tests' `CREATE DATABASE` runs in.
    pub fn at_url(url: &str) -> Result<Self, Error> {
        // The URL may hold a password: never echo it.
        let admin = Config::from_str(url)
            .map_err(|_| fail(format!("{URL_VAR} is not a PostgreSQL URL")))?;
        Ok(Self {
            admin,
            cluster: None,
        })
    }

    /// Starts a new throwaway cluster of this caller's own, stopped when the
    /// returned server is dropped (or the process ends).
    pub fn start() -> Result<Self, Error> {
        Self::start_cluster(None)
    }

    /// As [`Server::start`], and also listening on a free port of 127.0.0.1
    /// (probed by binding port 0; retried a few times if the server then
    /// cannot bind it), with `ssl` as asked. Over TCP the superuser `postgres`
    /// logs in with [`Server::password`] (`host all all 127.0.0.1/32
    /// scram-sha-256`, TLS or not); the Unix socket stays `trust`.
    pub fn start_tcp(ssl: Ssl) -> Result<Self, Error> {
        Self::start_cluster(Some(ssl))
    }

    fn start_cluster(tcp: Option<Ssl>) -> Result<Self, Error> {
        let bin = find_bin_dir(std::env::var_os("PATH"), Path::new(DEBIAN_ROOT))?;
        let as_postgres = running_as_root()?;
        let dir = make_dir(as_postgres)?;
        let mut cluster = Cluster {
            dir,
            bin,
            as_postgres,
            watcher: None,
            tcp: None,
        };
        cluster.watcher = Some(cluster.spawn_watcher()?);
        cluster.init()?;
        match tcp {
            None => cluster.start()?,
            Some(ssl) => cluster.start_tcp(ssl)?,
        }
        let mut admin = Config::new();
        admin
            .host_path(&cluster.dir)
            .user(SUPERUSER)
            .dbname("postgres");
        if let Some(tcp) = &cluster.tcp {
            // The Unix socket's name carries the port.
            admin.port(tcp.port);
            let sql = format!("ALTER ROLE {SUPERUSER} PASSWORD '{}'", tcp.password);
            admin_sql(&admin, sql)?;
        }
        Ok(Self {
            admin,
            cluster: Some(cluster),
        })
    }

    /// A connection config for the server's admin database.
    pub fn admin_config(&self) -> Config {
        self.admin.clone()
    }

    /// The directory holding the cluster's data, socket and log, when this
    /// process started the cluster.
    pub fn dir(&self) -> Option<&Path> {
        self.cluster.as_ref().map(|c| c.dir.as_path())
    }

    /// The loopback TCP port of a cluster of [`Server::start_tcp`].
    pub fn port(&self) -> Option<u16> {
        self.tcp().map(|t| t.port)
    }

    /// The superuser's password over TCP, for a cluster of [`Server::start_tcp`].
    pub fn password(&self) -> Option<&str> {
        self.tcp().map(|t| t.password.as_str())
    }

    /// The PEM file of the CA that signed the server certificate, for a
    /// cluster of [`Server::start_tcp`] with [`Ssl::On`].
    pub fn ca_cert(&self) -> Option<&Path> {
        self.tcp().and_then(|t| t.ca.as_deref())
    }

    /// `postgresql://postgres:<password>@<host>:<port>/<dbname>` for a cluster
    /// of [`Server::start_tcp`] (no query: append `?sslmode=...`).
    pub fn tcp_url(&self, host: &str, dbname: &str) -> Option<String> {
        let tcp = self.tcp()?;
        Some(format!(
            "postgresql://{SUPERUSER}:{}@{host}:{}/{dbname}",
            tcp.password, tcp.port
        ))
    }

    fn tcp(&self) -> Option<&Tcp> {
        self.cluster.as_ref().and_then(|c| c.tcp.as_ref())
    }

    /// Runs `pg_ctl <args> -D <data>` on this process's cluster (for tests
    /// that stop, restart or signal it); the server at a URL has none.
    pub fn pg_ctl(&self, args: &[&str]) -> Result<(), Error> {
        let cluster = self
            .cluster
            .as_ref()
            .ok_or_else(|| fail("the server at the URL is not this process's to control"))?;
        cluster.pg_ctl(args)
    }

    /// A fresh, empty database.
    ///
    /// # Panics
    ///
    /// When it cannot be created (the message says why).
    pub fn database(&self) -> TestDatabase {
        match self.try_database() {
            Ok(db) => db,
            Err(e) => panic!("tokenstore-pgtest: {e}"),
        }
    }

    /// A fresh, empty database, or why not.
    pub fn try_database(&self) -> Result<TestDatabase, Error> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tokenstore_test_{}_{n}", std::process::id());
        admin_sql(&self.admin, format!("CREATE DATABASE {name}"))?;
        let mut config = self.admin.clone();
        config.dbname(&name);
        Ok(TestDatabase {
            name,
            config,
            admin: self.admin.clone(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(cluster) = &mut self.cluster {
            cluster.stop_and_remove();
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("dir", &self.dir())
            .field("port", &self.port())
            .field("from_url", &self.cluster.is_none())
            .finish_non_exhaustive()
    }
}

/// A database of its own for one test; dropped (`DROP DATABASE ... WITH
/// (FORCE)`, which ends its remaining connections) when this is dropped.
pub struct TestDatabase {
    name: String,
    config: Config,
    admin: Config,
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection config for the database.
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// The database as a libpq key-value connection string (host, port, user,
    /// password when the server's URL had one, dbname).
    pub fn conninfo(&self) -> String {
        conninfo(&self.config)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin_sql(&self.admin, sql) {
            // Leaving a database behind is not worth a panic in a destructor.
            eprintln!("tokenstore-pgtest: could not drop {}: {e}", self.name);
        }
    }
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A key-value connection string for `config`, values single-quoted.
fn conninfo(config: &Config) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        let host = match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        };
        parts.push(format!("host={}", quote(&host)));
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", quote(user)));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!(
            "password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={}", quote(db)));
    }
    parts.join(" ")
}

/// Runs `sql` on the admin database, on a helper thread with a runtime of its
/// own, so it works inside or outside any async runtime.
fn admin_sql(admin: &Config, sql: String) -> Result<(), Error> {
    let admin = admin.clone();
    let thread = std::thread::Builder::new()
        .name("tokenstore-pgtest".to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| fail(format!("cannot build a runtime: {e}")))?;
            rt.block_on(run_sql(&admin, &sql))
        })
        .map_err(|e| fail(format!("cannot start a thread: {e}")))?;
    thread
        .join()
        .unwrap_or_else(|_| Err(fail("the admin thread panicked")))
}

async fn run_sql(admin: &Config, sql: &str) -> Result<(), Error> {
    let (client, connection) = admin
        .connect(NoTls)
        .await
        .map_err(|e| fail(format!("cannot connect to the test server: {}", chain(&e))))?;
    let driver = tokio::spawn(connection);
    let done = client
        .batch_execute(sql)
        .await
        .map_err(|e| fail(format!("`{sql}` failed: {}", chain(&e))));
    drop(client);
    let _ = driver.await;
    done
}

/// Where Debian's `postgresql-NN` packages install, one folder per version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// The directory holding `initdb` and `pg_ctl`: `initdb` on `path`, else the
/// newest `<debian>/*/bin/initdb`.
fn find_bin_dir(path: Option<std::ffi::OsString>, debian: &Path) -> Result<PathBuf, Error> {
    let on_path = path
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("initdb"))
        .find(|p| p.is_file());
    let initdb = match on_path {
        Some(p) => p,
        None => newest_debian_initdb(debian).ok_or_else(|| {
            fail(
                "no PostgreSQL found: neither `initdb` on PATH nor \
                 /usr/lib/postgresql/*/bin/initdb exists. Install PostgreSQL \
                 (Debian: apt-get install -y postgresql) or set TOKENSTORE_PG_URL \
                 to a server whose user may CREATE DATABASE",
            )
        })?,
    };
    // Resolve symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin).
    let real = std::fs::canonicalize(&initdb)
        .map_err(|e| fail(format!("cannot resolve {}: {e}", initdb.display())))?;
    let dir = real.parent().map(Path::to_path_buf).unwrap_or_default();
    if !dir.join("pg_ctl").is_file() {
        return Err(fail(format!("no pg_ctl beside {}", real.display())));
    }
    Ok(dir)
}

fn newest_debian_initdb(debian: &Path) -> Option<PathBuf> {
    let versions = std::fs::read_dir(debian).ok()?;
    versions
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let initdb = e.path().join("bin").join("initdb");
            initdb.is_file().then_some((version, initdb))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, initdb)| initdb)
}

fn running_as_root() -> Result<bool, Error> {
    Ok(output(Command::new("id").arg("-u"))?.trim() == "0")
}

/// The trimmed standard output of a command that must succeed.
fn output(cmd: &mut Command) -> Result<String, Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A new temporary directory, owned by the `postgres` user when we are root.
fn make_dir(as_postgres: bool) -> Result<PathBuf, Error> {
    let dir = tempfile::Builder::new()
        .prefix("tokenstore-pg-")
        .tempdir()
        .map_err(|e| fail(format!("cannot create a temporary directory: {e}")))?
        .keep();
    if as_postgres {
        hand_to_postgres(&dir)?;
    }
    Ok(dir)
}

/// The uid and gid of the `postgres` system user.
fn postgres_ids() -> Result<(u32, u32), Error> {
    let id = |flag: &str| -> Result<u32, Error> {
        output(Command::new("id").args([flag, SUPERUSER]))?
            .parse()
            .map_err(|_| fail("`id` printed no number"))
    };
    id("-u").and_then(|uid| Ok((uid, id("-g")?))).map_err(|e| {
        fail(format!(
            "running as root, but there is no `postgres` system user to run \
             PostgreSQL as (Debian's postgresql package creates it): {e}"
        ))
    })
}

/// `chown postgres:postgres path`.
fn hand_to_postgres(path: &Path) -> Result<(), Error> {
    let (uid, gid) = postgres_ids()?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| fail(format!("cannot chown {}: {e}", path.display())))
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, Error> {
    let probe = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| fail(format!("cannot bind a loopback port: {e}")))?;
    probe
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| fail(format!("cannot read the probed port: {e}")))
}

/// A password for a cluster's superuser over TCP: unique, not secret (the
/// cluster lives as long as the test and listens on loopback only).
fn new_password() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("pgtest-{}-{nanos:08x}", std::process::id())
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command running `program` from the PostgreSQL binaries, as the
    /// `postgres` user when we are root.
    fn command(&self, program: &str, args: &[String]) -> Command {
        let program = self.bin.join(program);
        let mut cmd = if !self.as_postgres {
            let mut cmd = Command::new(&program);
            cmd.args(args);
            cmd
        } else if Path::new("/usr/sbin/runuser").is_file() || Path::new("/sbin/runuser").is_file() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", SUPERUSER, "--"]).arg(&program).args(args);
            cmd
        } else {
            let quoted: Vec<String> = std::iter::once(program.display().to_string())
                .chain(args.iter().cloned())
                .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                .collect();
            let mut cmd = Command::new("su");
            cmd.args([SUPERUSER, "-s", "/bin/sh", "-c"])
                .arg(quoted.join(" "));
            cmd
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// The watcher: waits for end of file on its standard input (this
    /// process's end of the pipe closing), then stops the cluster and removes
    /// its directory. It ignores the signals a terminal sends, so a Ctrl-C
    /// reaches it only as the end of the pipe.
    fn spawn_watcher(&self) -> Result<(Child, ChildStdin), Error> {
        let stop = self.command("pg_ctl", &self.stop_args("immediate"));
        let script = "trap '' INT TERM HUP QUIT; cat >/dev/null; dir=$1; shift; \
                      \"$@\" >/dev/null 2>&1; rm -rf \"$dir\"";
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&self.dir)
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start the cleanup watcher: {e}")))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| fail("watcher has no stdin"))?;
        Ok((child, stdin))
    }

    fn stop_args(&self, mode: &str) -> Vec<String> {
        let data = self.data().display().to_string();
        ["-D", &data, "-m", mode, "-w", "stop"]
            .map(String::from)
            .into()
    }

    fn init(&self) -> Result<(), Error> {
        let data = self.data().display().to_string();
        let args = [
            "-D",
            &data,
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            // The data directory is thrown away; the server itself runs with fsync on.
            "--no-sync",
        ]
        .map(String::from);
        output(&mut self.command("initdb", &args))
            .map(drop)
            .map_err(|e| fail(format!("initdb failed: {e}")))?;
        // In the configuration file rather than on pg_ctl's command line, so a
        // later `pg_ctl start` or `restart` by a test gets the same settings.
        let settings = format!(
            "\n# tokenstore-pgtest\nunix_socket_directories = '{}'\nlisten_addresses = ''\n\
             fsync = on\nmax_connections = 200\n",
            self.dir.display()
        );
        self.append_conf(&settings)
    }

    fn append_conf(&self, settings: &str) -> Result<(), Error> {
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .map_err(|e| fail(format!("cannot read {}: {e}", conf.display())))?;
        text.push_str(settings);
        write_file(&conf, &text)
    }

    /// Configures TCP (and TLS) and starts, trying another free port when
    /// the server could not bind the one probed.
    fn start_tcp(&mut self, ssl: Ssl) -> Result<(), Error> {
        let ca = match ssl {
            Ssl::On => Some(self.write_certs()?),
            Ssl::Off => None,
        };
        write_file(
            &self.data().join("pg_hba.conf"),
            "# tokenstore-pgtest\nlocal all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )?;
        let ssl_setting = if ca.is_some() { "on" } else { "off" };
        self.append_conf(&format!("ssl = {ssl_setting}\ninclude '{TCP_CONF}'\n"))?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let listen = format!("listen_addresses = '127.0.0.1'\nport = {port}\n");
            write_file(&self.data().join(TCP_CONF), &listen)?;
            match self.start() {
                Ok(()) => {
                    let password = new_password();
                    self.tcp = Some(Tcp { port, password, ca });
                    return Ok(());
                }
                Err(e) if e.0.contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(fail(format!(
            "no free loopback port in {PORT_ATTEMPTS} attempts; last: {}",
            last.map_or_else(String::new, |e| e.0)
        )))
    }

    /// `server.crt` and `server.key` (mode 0600, the server's user's) in the
    /// data directory, and the CA's certificate beside it; its path.
    fn write_certs(&self) -> Result<PathBuf, Error> {
        let certs = certs::server_certs()?;
        let ca = self.dir.join("ca.crt");
        write_file(&ca, &certs.ca)?;
        let cert = self.data().join("server.crt");
        write_file(&cert, &certs.cert)?;
        let key = self.data().join("server.key");
        write_private(&key, &certs.key)?;
        if self.as_postgres {
            hand_to_postgres(&cert)?;
            hand_to_postgres(&key)?;
        }
        Ok(ca)
    }

    fn start(&self) -> Result<(), Error> {
        self.pg_ctl(&["-w", "-t", "60", "start"]).map_err(|e| {
            fail(format!(
                "pg_ctl start failed: {e}; server log: {}",
                self.log_tail()
            ))
        })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), Error> {
        let data = self.data().display().to_string();
        // With a log file a (re)started postmaster does not inherit our pipes.
        let log = self.dir.join("log").display().to_string();
        let mut all: Vec<String> = vec!["-D".into(), data, "-l".into(), log];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        output(&mut self.command("pg_ctl", &all)).map(drop)
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        let _ =
            std::fs::File::open(self.dir.join("log")).and_then(|mut f| f.read_to_string(&mut text));
        let start = text.len().saturating_sub(2000);
        text[text.floor_char_boundary_compat(start)..].to_owned()
    }

    /// Closes the watcher's pipe and waits for it: the cluster is stopped and
    /// its directory removed when this returns.
    fn stop_and_remove(&mut self) {
        if let Some((mut child, stdin)) = self.watcher.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The file in the data directory that sets the TCP address and port.
const TCP_CONF: &str = "tokenstore-tcp.conf";

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
}

/// Writes `text` to a new file only its owner may read (as a key must be).
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
}

/// `str::floor_char_boundary` for the workspace's Rust version.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for String {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        while !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_postgresql_is_a_clear_error() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = find_bin_dir(Some(empty.path().into()), empty.path()).expect_err("none");
        assert!(err.0.contains("no PostgreSQL found"), "{err}");
        assert!(err.0.contains("apt-get install -y postgresql"), "{err}");
        assert!(err.0.contains(URL_VAR), "{err}");
    }

    #[test]
    fn newest_debian_version_wins() {
        let root = tempfile::tempdir().expect("tempdir");
        for version in ["9", "15", "13", "notes"] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).expect("mkdir");
            std::fs::write(bin.join("initdb"), "").expect("initdb");
            std::fs::write(bin.join("pg_ctl"), "").expect("pg_ctl");
        }
        let found = find_bin_dir(None, root.path()).expect("found");
        assert!(found.ends_with("15/bin"), "{}", found.display());
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = Server::at_url("postgresql://u:hunter2@host:notaport/db").expect_err("bad");
        assert!(!err.0.contains("hunter2"), "{err}");
        assert!(err.0.contains(URL_VAR), "{err}");
    }
}
