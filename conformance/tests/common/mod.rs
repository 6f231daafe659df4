//! Shared support for the real-peer tests: a daemon in a private folder,
//! started as its own process on OS-chosen loopback ports, and the check
//! for peer tools (required in CI through `POSTERN_REQUIRE_PEERS=1`).

#![allow(dead_code, unreachable_pub)]

pub mod dns;
pub mod imap_load;
pub mod pg;
pub mod smarthost;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a peer tool is installed. Missing: a failure when
/// `POSTERN_REQUIRE_PEERS=1` (CI), else a skip with a note.
pub fn peer(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .any(|p| p.join(tool).is_file())
        })
        .unwrap_or(false);
    if !found {
        if std::env::var("POSTERN_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{tool} is required (POSTERN_REQUIRE_PEERS=1) but not installed: run conformance/install-peers");
        }
        eprintln!("SKIPPED: {tool} is not installed (conformance/install-peers installs it)");
    }
    found
}

/// The full path of a tool (sbin included, where Postfix's tools live).
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// A free loopback port (for peers that cannot report the port they bound).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 0");
    l.local_addr().expect("addr").port()
}

/// Users every test daemon has: (address, password).
pub const USERS: &[(&str, &str)] = &[
    ("alice@example.com", "alice-pw"),
    ("bob@example.com", "bob-pw"),
];

/// A daemon process with its own folder.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
    pub addrs: Vec<SocketAddr>,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes accounts, aliases, a certificate and `listeners` (TOML
    /// `[[listener]]` tables with `127.0.0.1:0` addresses) and starts.
    pub fn start(listeners: &str, virtual_aliases: &str) -> Daemon {
        Self::start_with(listeners, virtual_aliases, "")
    }

    /// Like [`Daemon::start`], with more TOML tables appended (`[relay]`).
    pub fn start_with(listeners: &str, virtual_aliases: &str, extra: &str) -> Daemon {
        Self::start_with_env(listeners, virtual_aliases, extra, &[])
    }

    /// Like [`Daemon::start_with`], with these environment variables set
    /// for the process (and its restarts).
    pub fn start_with_env(
        listeners: &str,
        virtual_aliases: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("postern-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let mut accounts = String::new();
        for (i, (user, pw)) in USERS.iter().enumerate() {
            let salt = format!("testsalt{i:08}");
            let h = postern_adapters::directory::sha512_crypt_hash(pw, &salt).expect("hash");
            accounts.push_str(&format!("{user}|{h}\n"));
        }
        std::fs::write(root.join("postfix-accounts.cf"), accounts).expect("accounts");
        std::fs::write(root.join("postfix-virtual.cf"), virtual_aliases).expect("virtual");
        postern_runtime_smol::tls::ensure_self_signed(
            &["localhost".into(), "mx.example.com".into()],
            &root.join("cert.pem"),
            &root.join("key.pem"),
        )
        .expect("cert");
        // Tests open many connections from 127.0.0.1: no per-client rates
        // unless a test sets its own `[rate]`.
        let rate = if listeners.contains("[rate]") || extra.contains("[rate]") {
            ""
        } else {
            "[rate]\nconnection_rate_limit = 0\nmessage_rate_limit = 0\n"
        };
        let config = root.join("postern.toml");
        let toml = format!(
            "hostname = \"mx.example.com\"\ndata_dir = \"mail\"\nshutdown_grace_secs = 20\nauth_failure_delay_ms = 50\n\
             [directory]\naccounts = \"postfix-accounts.cf\"\nvirtual = \"postfix-virtual.cf\"\n\
             [tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nreload_check_secs = 1\n\
             {rate}{listeners}\n{extra}"
        );
        std::fs::write(&config, toml).expect("config");
        let log = root.join("postern.log");
        let mut d = Daemon {
            config,
            log,
            addrs: Vec::new(),
            child: None,
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn();
        d
    }

    /// (Re)starts the process and waits for its `ready:` line.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let before = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        // Benches may run another build beside this one (before/after).
        let bin = std::env::var_os("POSTERN_BENCH_DAEMON")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_postern-test-daemon").into());
        let child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("POSTERN_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let fresh = text.get(before as usize..).unwrap_or("");
            if let Some(line) = fresh.lines().find(|l| l.contains("ready: ")) {
                let list = line.split("ready: ").nth(1).unwrap_or("");
                self.addrs = list
                    .split_whitespace()
                    .map(|a| a.parse().expect("addr"))
                    .collect();
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("daemon exited with {status} before ready:\n{fresh}");
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready in 30 s:\n{fresh}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the child to wait on.
    pub fn term(&mut self) -> Child {
        let c = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        c
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Files in a mailbox's `new/` (INBOX, or a folder like `.Junk`).
    pub fn new_mail(&self, user: &str, domain: &str) -> Vec<(String, Vec<u8>)> {
        let dir = self
            .dir
            .path()
            .join("mail")
            .join(domain)
            .join(user)
            .join("new");
        let mut out: Vec<(String, Vec<u8>)> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).expect("read mail"),
                    )
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `cmd`; fails the test (with the command and what it printed)
/// unless it succeeds; returns its standard output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (at most 20 s) until `postern queue list` shows `needle` (the
/// relay worker's first attempt recorded: `attempts 1`).
pub fn wait_for_queue_listing(d: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !queue_cli(d, &["list"]).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the queue:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `postern queue --config <the daemon's config> ARGS`; fails the
/// test unless it succeeds; returns what it printed.
pub fn queue_cli(d: &Daemon, args: &[&str]) -> String {
    run(Command::new(env!("CARGO_BIN_EXE_postern-test-daemon"))
        .args(["queue", "--config"])
        .arg(&d.config)
        .args(args))
}

/// A minimal SMTP client for tests that need exact control.
pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// Reads one whole reply (all its lines); returns the last line.
    pub fn reply(&mut self) -> std::io::Result<String> {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(line.trim_end().to_owned());
            }
        }
    }

    /// Reads one line (without CRLF).
    pub fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)
    }

    pub fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Reads until the server closes; returns what came.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.r.read_to_end(&mut v);
        v
    }
}

/// Waits (bounded) until something listens on a loopback port.
pub fn wait_for_port(port: u16, what: &str) {
    wait_for_port_or_show(port, what, None);
}

/// As [`wait_for_port`]; on failure the message shows the peer's `log`.
pub fn wait_for_port_or_show(port: u16, what: &str, log: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            log.and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fields of `/proc/PID/stat` after the command name: `[0]` the
/// state, `[1]` the parent, `[11]` and `[12]` user and system CPU time in
/// clock ticks, `[13]` and `[14]` those of its waited-for children.
pub fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Runs a Python script; fails the test unless it succeeds; returns stdout.
pub fn python(script: &str) -> String {
    run(Command::new("python3").arg("-c").arg(script))
}

/// HAProxy on a free loopback port forwarding to `backend` with
/// `send-proxy-v2`; stopped when dropped.
pub struct HaProxy {
    pub port: u16,
    child: Child,
}

impl HaProxy {
    pub fn start(dir: &Path, backend: SocketAddr) -> HaProxy {
        let port = free_port();
        let cfg = dir.join(format!("haproxy-{port}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend front\n  bind 127.0.0.1:{port}\n  default_backend postern\n\
                 backend postern\n  server s1 {backend} send-proxy-v2\n"
            ),
        )
        .expect("haproxy cfg");
        let child = Command::new(tool("haproxy"))
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy");
        wait_for_port(port, "haproxy");
        HaProxy { port, child }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA (`ca.crt`, `ca.key`) and a server certificate it signed
/// (`server.crt`, `server.key`, EC P-256) for `subject` and the names in
/// `san` (`DNS:x,IP:127.0.0.1`), made in `dir` with openssl.
pub fn test_pki(dir: &Path, subject: &str, san: &str) {
    let openssl = |args: &[&str]| {
        run(Command::new(tool("openssl")).current_dir(dir).args(args));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "30",
        "-subj",
        "/CN=Test Private CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&ca);
    let mut req = vec!["req", "-new"];
    req.extend(ec);
    req.extend([
        "-subj",
        subject,
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&req);
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
    )
    .expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        "server.crt",
        "-extfile",
        "ext.cnf",
    ]);
}
