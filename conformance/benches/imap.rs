//! IMAP beside Dovecot on copies of the same 10,000-message Maildir, both
//! over IMAPS on loopback, driven by the same Python imaplib client:
//! SELECT + the header FETCH Roundcube's message list does (cold, then
//! warm), a mixed workload from 10 persistent clients (timed once all
//! are logged in), and the same with a login and logout around every few
//! commands. Then another user's NOOP latency while alice runs body
//! searches and BODYSTRUCTURE fetches over her whole INBOX on 3
//! connections (the issue's "one user's heavy command never stalls another
//! user's NOOP by more than ~50 ms"). Then Postern's RSS with 1,000 idle IDLE sessions from 10
//! loopback addresses.
//!
//! `POSTERN_BENCH_DAEMON=/path/to/postern-test-daemon` runs another
//! build (an older one, for a before/after in one sitting).
//!
//! Run: `cargo bench -p postern-conformance --bench imap`

#[path = "../tests/common/mod.rs"]
mod common;

use common::imap_load::{make_maildir, PY_PRELUDE};
use common::{free_port, python, tool, Daemon};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const MESSAGES: usize = 10_000;

/// After [`PY_PRELUDE`].
const CLIENT: &str = r#"
PORT = {port}
def list_page(m):
    m.select("INBOX")
    typ, d = m.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT CONTENT-TYPE CC REPLY-TO)])")
    assert typ == "OK" and len(d) > 9000, (typ, len(d))
out = []
for label in ("cold", "warm"):
    t = time.time(); m = conn(PORT); list_page(m); m.logout(); out.append("%.3f" % (time.time() - t))
errors = []
def mixed(n, relog, ready):
    m = conn(PORT); m.select("INBOX")
    # Persistent clients: the clock starts once all are logged in.
    ready.wait()
    for i in range(n):
        if relog and i % 4 == 0:
            m.logout(); m = conn(PORT); m.select("INBOX")
        op = i % 5
        r = command(m, op, random.randint(1, 9000))
        if r[0] != "OK": errors.append((op, r))
    m.logout()
for relog in (False, True):
    N = 150
    ready = threading.Barrier(11)
    def run(n, relog):
        try: mixed(n, relog, ready)
        except Exception as e:
            errors.append(("exception", repr(e)))
            ready.abort()
    ts = [threading.Thread(target=run, args=(N, relog)) for _ in range(10)]
    [x.start() for x in ts]
    ready.wait()
    t = time.time()
    [x.join() for x in ts]
    out.append("%.1f" % (10 * N / (time.time() - t)))
# Every command must have succeeded, or the figures compare nothing.
assert not errors, errors[:3]
print(" ".join(out))
"#;

/// Bob's NOOP latency (ms: median, 99th percentile, worst) over 5 s while
/// alice's 3 connections search every body and fetch every BODYSTRUCTURE,
/// and how many of those heavy commands completed meanwhile. After
/// [`PY_PRELUDE`].
const NOOP_UNDER_LOAD: &str = r#"
PORT = {port}
stop = threading.Event(); heavy = [0]; errors = []
def busy(i):
    m = conn(PORT); m.select("INBOX", readonly=True)
    while not stop.is_set():
        if i % 2 == 0: r = m.uid("SEARCH", "BODY", "needle-%d" % heavy[0])
        else: r = m.fetch("1:*", "(BODYSTRUCTURE)")
        if r[0] != "OK": errors.append(r[0])
        heavy[0] += 1
    m.logout()
ts = [threading.Thread(target=busy, args=(i,)) for i in range(3)]
b = conn(PORT, "bob@example.com", "bob-pw"); b.select("INBOX")
[t.start() for t in ts]
time.sleep(0.5)  # load, not synchronisation: let the heavy commands start
lat = []; end = time.time() + 5
while time.time() < end:
    t = time.time(); r = b.noop(); lat.append((time.time() - t) * 1000)
    if r[0] != "OK": errors.append(r[0])
    time.sleep(0.01)
stop.set(); [t.join() for t in ts]; b.logout()
assert not errors, errors[:3]
lat.sort()
print("%.1f %.1f %.1f %d" % (lat[len(lat)//2], lat[int(len(lat)*0.99)], lat[-1], heavy[0]))
"#;

/// Runs a client script (after [`PY_PRELUDE`]) against `port`; what it
/// printed.
fn drive(script: &str, port: u16) -> String {
    python(&format!(
        "{PY_PRELUDE}{}",
        script.replace("{port}", &port.to_string())
    ))
}

struct Dovecot {
    child: Child,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dovecot(dir: &Path, mail: &Path, cert: &Path, key: &Path, port: u16) -> Dovecot {
    std::fs::create_dir_all(dir.join("run")).expect("dir");
    let hash = postern_adapters::directory::sha512_crypt_hash("alice-pw", "benchsalt1234567")
        .expect("hash");
    std::fs::write(
        dir.join("users"),
        format!(
            "alice@example.com:{hash}\nbob@example.com:{}\n",
            postern_adapters::directory::sha512_crypt_hash("bob-pw", "benchsalt7654321")
                .expect("hash")
        ),
    )
    .expect("users");
    std::fs::write(
        dir.join("dovecot.conf"),
        format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/log\n\
             ssl = required\nssl_cert = <{c}\nssl_key = <{k}\nauth_mechanisms = plain login\nmail_location = maildir:{m}/%d/%n\n\
             mail_max_userip_connections = 1000\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/users\n}}\nuserdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={d}/home/%d/%n\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = 0\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n",
            d = dir.display(),
            m = mail.display(),
            c = cert.display(),
            k = key.display()
        ),
    )
    .expect("conf");
    let child = Command::new(tool("dovecot"))
        .args(["-F", "-c"])
        .arg(dir.join("dovecot.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dovecot");
    common::wait_for_port_or_show(port, "dovecot", Some(&dir.join("log")));
    Dovecot { child }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !tool("dovecot").is_file() {
        println!("imap bench: dovecot is needed (conformance/install-peers); nothing measured");
        return;
    }
    let d = Daemon::start(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n",
        "",
    );
    let root = d.dir.path();
    make_maildir(&root.join("mail"), MESSAGES);
    let dv_mail = root.join("dovecot-mail");
    let _ = Command::new("cp")
        .arg("-a")
        .arg(root.join("mail"))
        .arg(&dv_mail)
        .status();
    let _ = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&dv_mail)
        .status();
    let _ = Command::new("chmod").args(["0755"]).arg(root).status();
    let _ = Command::new("chmod")
        .args(["0644"])
        .arg(root.join("key.pem"))
        .status();
    let dport = free_port();
    let dv = start_dovecot(
        &root.join("dovecot"),
        &dv_mail,
        &root.join("cert.pem"),
        &root.join("key.pem"),
        dport,
    );

    println!(
        "IMAP: {MESSAGES}-message INBOX, IMAPS on loopback, Python imaplib client (same for both)"
    );
    let p = drive(CLIENT, d.addrs[0].port());
    let q = drive(CLIENT, dport);

    let (p, q): (Vec<f64>, Vec<f64>) = (
        p.split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect(),
        q.split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect(),
    );
    let row = |name: &str, a: f64, b: f64, lower_better: bool, unit: &str| {
        let ratio = if lower_better { b / a } else { a / b };
        println!("  {name:<42} Postern {a:>8.2} {unit}   Dovecot {b:>8.2} {unit}   Postern is {ratio:.2}x");
    };
    if p.len() == 4 && q.len() == 4 {
        row("SELECT + header FETCH 1:*, cold", p[0], q[0], true, "s");
        row("SELECT + header FETCH 1:*, warm", p[1], q[1], true, "s");
        row(
            "mixed workload, 10 persistent clients",
            p[2],
            q[2],
            false,
            "op/s",
        );
        row(
            "mixed, login+logout every 4 commands",
            p[3],
            q[3],
            false,
            "op/s",
        );
    }

    // 1,000 sessions idling in IDLE.
    let pid = d.pid();
    let before = rss_kib(pid);
    let script = format!(
        r#"
import socket, ssl, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conns = []
for i in range(1000):
    # From 10 loopback addresses: 100 each, within the per-client cap.
    src = ("127.0.0.%d" % (1 + i % 10), 0)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port}), source_address=src), server_hostname="x")
    s.recv(4096)
    s.sendall(b"a LOGIN alice@example.com alice-pw\r\nb SELECT INBOX\r\nc IDLE\r\n")
    buf = b""
    while b"+ idling" not in buf:
        buf += s.recv(65536)
    conns.append(s)
print("idle", len(conns), flush=True)
import sys
sys.stdin.read()
"#,
        port = d.addrs[0].port()
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = child.stdout.take().expect("stdout");
    let mut line = [0u8; 16];
    let _ = std::io::Read::read(&mut out, &mut line);
    let busy = rss_kib(pid);
    drop(child.stdin.take());
    let _ = child.wait();
    println!(
        "  Postern RSS: {:.1} MiB before, {:.1} MiB with 1,000 sessions in IDLE on the 10,000-message INBOX (target < 64 MiB)",
        before as f64 / 1024.0,
        busy as f64 / 1024.0
    );

    // Last, so that the RSS above is not that of caches this fills.
    let pn = drive(NOOP_UNDER_LOAD, d.addrs[0].port());
    let qn = drive(NOOP_UNDER_LOAD, dport);
    drop(dv);
    let nums = |s: &str| -> Vec<f64> {
        s.split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let (pn, qn) = (nums(&pn), nums(&qn));
    if pn.len() == 4 && qn.len() == 4 {
        println!("  bob's NOOP while alice searches bodies and fetches BODYSTRUCTURE 1:* on 3 connections (5 s):");
        println!(
            "    Postern: median {:.1} ms, p99 {:.1} ms, worst {:.1} ms ({} heavy commands done)   target: worst <= 50 ms",
            pn[0], pn[1], pn[2], pn[3]
        );
        println!(
            "    Dovecot: median {:.1} ms, p99 {:.1} ms, worst {:.1} ms ({} heavy commands done)",
            qn[0], qn[1], qn[2], qn[3]
        );
    }
}
