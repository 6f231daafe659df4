//! DNS for the message-authentication tests, on loopback only: Debian's
//! `nsd` serving `testdata/dns/test.zone` in the foreground, and a UDP/TCP
//! server that never answers (the slow-DNS case). Each is stopped by its
//! PID when dropped. Give the daemon [`Nsd::config`] (`[dns] servers`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The folder of the test zone and its keys.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dns")
}

/// A DNS server process, stopped (SIGTERM, then SIGKILL) by PID on drop.
pub struct DnsServer {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl DnsServer {
    /// The daemon's `[dns]` section pointing at this server.
    pub fn config(&self) -> String {
        format!(
            "[dns]\nservers = [\"{}\"]\ntimeout_ms = 3000\nattempts = 2\n",
            self.addr
        )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both UDP and TCP, from the OS.
fn free_udp_tcp_port() -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = u.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for UDP and TCP");
}

/// A DNS query for `name` TXT (id 0x1234).
fn txt_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(u8::try_from(label.len()).expect("label"));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 16, 0, 1]);
    q
}

/// Starts nsd on a free loopback port serving the test zone; `None` when
/// nsd is not installed (a failure under `POSTERN_REQUIRE_PEERS=1`).
pub fn start_nsd() -> Option<DnsServer> {
    if !super::peer("nsd") {
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("postern-nsd-")
        .tempdir()
        .expect("tempdir");
    let d = dir.path();
    std::fs::copy(testdata().join("test.zone"), d.join("test.zone")).expect("zone");
    let port = free_udp_tcp_port();
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
         zonesdir: \"{dir}\"\n  pidfile: \"{dir}/nsd.pid\"\n  database: \"\"\n  \
         xfrdfile: \"{dir}/xfrd.state\"\n  zonelistfile: \"{dir}/zone.list\"\n  \
         logfile: \"{dir}/nsd.log\"\n  server-count: 1\n  verbosity: 1\n  \
         hide-version: yes\n\nremote-control:\n  control-enable: no\n\n\
         zone:\n  name: test\n  zonefile: test.zone\n",
        dir = d.display()
    );
    std::fs::write(d.join("nsd.conf"), conf).expect("conf");
    let child = Command::new(super::tool("nsd"))
        .args(["-d", "-c"])
        .arg(d.join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(d.join("stderr")).expect("stderr"),
        ))
        .spawn()
        .expect("spawn nsd");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = DnsServer {
        addr,
        child,
        _dir: dir,
    };
    // Ready when it answers a query over UDP (bounded).
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        let _ = sock.send_to(&txt_query("reject.test"), addr);
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n > 12 && buf[..2] == [0x12, 0x34] {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nsd did not answer on {addr}: {}{}",
            std::fs::read_to_string(server._dir.path().join("stderr")).unwrap_or_default(),
            std::fs::read_to_string(server._dir.path().join("nsd.log")).unwrap_or_default()
        );
    }
    assert!(TcpStream::connect(addr).is_ok(), "nsd TCP on {addr}");
    Some(server)
}

/// A server that reads DNS queries over UDP and TCP and never answers.
pub fn start_silent() -> DnsServer {
    let dir = tempfile::Builder::new()
        .prefix("postern-silent-dns-")
        .tempdir()
        .expect("tempdir");
    let script = r#"
import socket, sys, threading
# The UDP port the OS hands out may be taken for TCP by another test:
# try again with another (a bounded number of times).
for attempt in range(100):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port))
        break
    except OSError:
        u.close()
        t.close()
else:
    sys.exit("no port free for both UDP and TCP")
t.listen(64)
held = []
def accept():
    while True:
        c, _ = t.accept()
        held.append(c)
threading.Thread(target=accept, daemon=True).start()
print(port, flush=True)
while True:
    u.recvfrom(65535)
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line.trim().parse().expect("port number");
    DnsServer {
        addr: ([127, 0, 0, 1], port).into(),
        child,
        _dir: dir,
    }
}

/// Runs dkimpy's `tool` with the arguments `before`, the test key `key`
/// and `after`, and `msg` on its standard input; its output, which must
/// start with `starts`, with CRLF line ends (dkimpy writes LF).
fn dkimpy(
    tool: &str,
    before: &[&str],
    key: &str,
    after: &[&str],
    msg: &[u8],
    starts: &str,
) -> Vec<u8> {
    let mut child = Command::new(super::tool(tool))
        .args(before)
        .arg(testdata().join("keys").join(key))
        .args(after)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(tool);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(msg)
        .expect("write");
    let out = child.wait_with_output().expect("dkimpy output");
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        out.status.success() && text.starts_with(starts),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// Signs `msg` with dkimpy's `dkimsign` (relaxed/relaxed); the signature
/// header comes first.
pub fn dkimsign(msg: &[u8], selector: &str, domain: &str, key: &str) -> Vec<u8> {
    let canon = ["--hcanon", "relaxed", "--bcanon", "relaxed"];
    let before = [&canon[..], &[selector, domain]].concat();
    dkimpy("dkimsign", &before, key, &[], msg, "")
}

/// Whether dkimpy's `arcsign` can seal here: the script and the
/// `authres` module it needs (Debian's `python3-authres`, for the system
/// Python the script names). Missing: a failure under
/// `POSTERN_REQUIRE_PEERS=1`, else a skip, as [`super::peer`].
pub fn arcsign_available() -> bool {
    if !super::peer("arcsign") {
        return false;
    }
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import dkim, authres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("POSTERN_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("python3-authres is required (POSTERN_REQUIRE_PEERS=1) for arcsign but not installed: run conformance/install-peers");
        }
        eprintln!("SKIPPED: python3-authres is not installed (arcsign needs it)");
    }
    ok
}

/// Seals `msg` with dkimpy's `arcsign` (ARC set i=1, relaxed/relaxed) for
/// the ADMD `srv_id`, whose `Authentication-Results` header `msg` must
/// carry; the ARC headers come first, CRLF-ended.
pub fn arcsign(msg: &[u8], selector: &str, domain: &str, key: &str, srv_id: &str) -> Vec<u8> {
    dkimpy(
        "arcsign",
        &[selector, domain],
        key,
        &[srv_id],
        msg,
        "ARC-Seal:",
    )
}
