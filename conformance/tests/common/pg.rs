//! Real database and object store peers for the PostgreSQL backend's
//! tests: a PostgreSQL cluster of the test's own (`initdb` + `pg_ctl` in
//! a temporary folder, on a free loopback port; as root, run through the
//! unprivileged `postgres` or `nobody` user that owns the folder), and
//! moto's S3 server. Both are stopped when dropped. Missing tools: a skip,
//! or a failure under `POSTERN_REQUIRE_PEERS=1`.

use super::{free_port, run};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn require(what: &str) {
    if std::env::var("POSTERN_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{what} is required (POSTERN_REQUIRE_PEERS=1) but not installed: run conformance/install-peers");
    }
    eprintln!("SKIPPED: {what} is not installed (conformance/install-peers installs it)");
}

/// The folder holding `initdb` and `pg_ctl`: on PATH, or Debian's
/// versioned folder (newest first).
fn pg_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The unprivileged user a root test runs PostgreSQL as.
fn service_user() -> &'static str {
    let has = |u: &str| {
        Command::new("id")
            .arg(u)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if has("postgres") {
        "postgres"
    } else {
        "nobody"
    }
}

/// A PostgreSQL cluster of one test.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<&'static str>,
    /// The loopback port it listens on.
    pub port: u16,
}

impl PgCluster {
    /// Makes and starts a cluster; `None` (skip) if PostgreSQL is missing.
    pub fn start() -> Option<PgCluster> {
        Self::start_with(false)
    }

    /// [`PgCluster::start`] with TLS on: a certificate for 127.0.0.1 and
    /// `localhost` signed by a test CA ([`PgCluster::ca_pem`]); plain
    /// connections are still accepted.
    pub fn start_tls() -> Option<PgCluster> {
        if !super::peer("openssl") {
            require("openssl");
            return None;
        }
        Self::start_with(true)
    }

    /// Postern's open connections (application `postern`) and how many
    /// of them are over TLS, as the server sees them.
    pub fn postern_tls_connections(&self) -> (i64, i64) {
        let row = self
            .admin()
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'postern'",
                &[],
            )
            .expect("pg_stat_ssl");
        (row.get(0), row.get(1))
    }

    /// The test CA that signed the server's certificate (with
    /// [`PgCluster::start_tls`]), and another that did not.
    pub fn ca_pem(&self) -> (Vec<u8>, Vec<u8>) {
        let read = |n: &str| std::fs::read(self.dir.path().join(n)).expect("CA file");
        (read("ca.crt"), read("other-ca.crt"))
    }

    /// A CA, another CA and the server's certificate and key in the data
    /// folder, with openssl.
    fn make_certs(&self) {
        let d = self.dir.path();
        let data = self.data();
        super::test_pki(d, "/CN=localhost", "IP:127.0.0.1,DNS:localhost");
        let other = d.join("other");
        std::fs::create_dir_all(&other).expect("mkdir");
        super::test_pki(&other, "/CN=localhost", "IP:127.0.0.1,DNS:localhost");
        std::fs::copy(other.join("ca.crt"), d.join("other-ca.crt")).expect("copy");
        for f in ["server.crt", "server.key"] {
            std::fs::copy(d.join(f), data.join(f)).expect("copy");
            run(Command::new("chmod").arg("0600").arg(data.join(f)));
            if let Some(u) = self.user {
                run(Command::new("chown").arg(format!("{u}:")).arg(data.join(f)));
            }
        }
    }

    fn start_with(tls: bool) -> Option<PgCluster> {
        let Some(bin) = pg_bin() else {
            require("PostgreSQL (initdb, pg_ctl)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("postern-pg-")
            .tempdir()
            .expect("tempdir");
        let user = is_root().then(service_user);
        if let Some(u) = user {
            let ok = Command::new("chown")
                .arg(format!("{u}:"))
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success(), "chown {u} {}", dir.path().display());
        }
        let mut c = PgCluster {
            dir,
            bin,
            user,
            port: 0,
        };
        c.run(
            "initdb",
            &[
                "-D",
                &c.data().to_string_lossy(),
                "-U",
                "postern",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        if tls {
            c.make_certs();
        }
        // The port is free when asked; another process may take it before
        // the server binds: then try another.
        for _ in 0..5 {
            c.port = free_port();
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -F -c max_connections=60 -c shared_buffers=16MB -c shared_preload_libraries=pg_stat_statements{}",
                c.port,
                c.dir.path().display(),
                if tls { " -c ssl=on" } else { "" }
            );
            if c.try_run(
                "pg_ctl",
                &[
                    "-D",
                    &c.data().to_string_lossy(),
                    "-l",
                    &c.log().to_string_lossy(),
                    "-w",
                    "-t",
                    "120",
                    "-o",
                    &opts,
                    "start",
                ],
            ) {
                return Some(c);
            }
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(c.log()).unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        match self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> bool {
        self.command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        run(self.command(tool).args(args).current_dir(self.dir.path()));
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a
    /// crashed database; the test fails if it does not stop.
    pub fn stop(&self) {
        run(&mut self.stop_command());
    }

    /// `pg_ctl stop -m immediate`, waiting until the server is gone.
    fn stop_command(&self) -> Command {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path());
        c
    }

    /// The connection string of the superuser `postern` to database
    /// `postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The connection string of the superuser `postern` to database `db`.
    pub fn url_of(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=postern dbname={db}", self.port)
    }

    /// A connection of the superuser to database `postgres`.
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect")
    }

    /// [`PgCluster::admin`] with the pg_stat_statements extension made
    /// (statements counted; the library is preloaded by every cluster).
    pub fn counting_admin(&self) -> postgres::Client {
        let mut admin = self.admin();
        admin
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .expect("pg_stat_statements");
        admin
    }

    /// The server's processes: the postmaster and its children (the
    /// backends, the writers, autovacuum).
    pub fn pids(&self) -> Vec<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap_or_default();
        let Some(main) = text.lines().next().and_then(|l| l.trim().parse().ok()) else {
            return Vec::new();
        };
        let mut out = vec![main];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if super::proc_stat(pid).and_then(|f| f.get(1)?.parse().ok()) == Some(main) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .stop_command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// moto's S3 server on a free loopback port.
pub struct S3Server {
    child: Child,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts moto in server mode (its log in a folder of its own);
    /// `None` (skip) if it is not installed.
    pub fn start() -> Option<S3Server> {
        if !super::peer("moto_server") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("postern-s3-")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).expect("moto log");
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::from(out.try_clone().expect("clone")))
                .stderr(Stdio::from(out.try_clone().expect("clone")))
                .spawn()
                .expect("moto_server");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(S3Server {
                        child,
                        dir,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    });
                }
                if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "moto_server did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl S3Server {
    /// The body store on `bucket` of this server, its metadata in `pg`
    /// (moto takes any key; the bucket is not created here).
    pub fn blobs(
        &self,
        pg: std::sync::Arc<postern_adapters::pg::Pg>,
        bucket: &str,
    ) -> std::sync::Arc<postern_adapters::pg::Blobs> {
        let config = postern_adapters::pg::S3Config {
            endpoint: self.endpoint.clone(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            access_key: "testing".into(),
            secret_key: "testing".into(),
        };
        std::sync::Arc::new(postern_adapters::pg::Blobs::new(pg, &config).expect("blobs"))
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// The S3 requests it logged so far: (PUT, HEAD, GET).
    pub fn requests(&self) -> (usize, usize, usize) {
        let log = self.log_text();
        let n = |m: &str| log.matches(&format!("\"{m} /")).count();
        (n("PUT"), n("HEAD"), n("GET"))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `[store]`, `[postgres]` and `[s3]` tables of a daemon on the
    /// database at `url` (8 connections) and `bucket` of this server; the
    /// secret is written into `dir`.
    pub fn store_config(&self, url: &str, bucket: &str, dir: &std::path::Path) -> String {
        let secret = dir.join("s3-secret");
        std::fs::write(&secret, "testing\n").expect("secret");
        format!(
            "[store]\nbackend = \"postgres\"\n[postgres]\nurl = \"{url}\"\nmax_connections = 8\n\
             [s3]\nendpoint = \"{}\"\nbucket = \"{bucket}\"\naccess_key = \"testing\"\n\
             secret_key_file = \"{}\"\n",
            self.endpoint,
            secret.display()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Statements the server ran since the last reset (pg_stat_statements;
/// statements are prepared once per connection, so one statement is one
/// round trip; BEGIN and COMMIT count; the statistics queries do not).
pub fn statements(admin: &mut postgres::Client) -> i64 {
    round_trips(admin).0
}

/// (statements, explicit transactions: COMMITs) since the last reset, as
/// [`statements`] counts them.
pub fn round_trips(admin: &mut postgres::Client) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT COALESCE(sum(calls), 0)::bigint, \
             COALESCE(sum(calls) FILTER (WHERE upper(query) LIKE 'COMMIT%'), 0)::bigint \
             FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%'",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}
