//! `postern probe`: the end-to-end roundtrip probe against the real daemon
//! (SMTP submission with AUTH, IMAPS), pushing to Debian's
//! `prometheus-pushgateway`; and the HTTP send API variant through a local
//! stand-in for Brevo that delivers the message to the daemon's MX.

mod common;

use common::{free_port, peer, tool, wait_for_port_or_show, Daemon};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const LISTENERS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n\
     [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"submission\"\ntls = \"starttls\"\n\
     [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n";

/// A child process killed (by its own id) when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `prometheus-pushgateway` on a free loopback port.
fn pushgateway(dir: &Path) -> (Peer, u16) {
    let port = free_port();
    let log = dir.join("pushgateway.log");
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new(tool("prometheus-pushgateway"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::from(out.try_clone().expect("clone")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("prometheus-pushgateway");
    let p = Peer(child);
    wait_for_port_or_show(port, "prometheus-pushgateway", Some(&log));
    (p, port)
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of the `email_roundtrip_*` series `name` of job
/// `email_roundtrip` on the Pushgateway's /metrics.
fn pushed(port: u16, name: &str) -> Option<f64> {
    let text = get(SocketAddr::from(([127, 0, 0, 1], port)), "/metrics");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("job=\"email_roundtrip\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The probe's configuration: `send` is its `[smtp]` or `[http]` table.
fn probe_config(d: &Daemon, send: &str, imap_password: &str, pgw: u16) -> std::path::PathBuf {
    let cert = d.dir.path().join("cert.pem");
    let imap = d.addrs[2];
    let text = format!(
        "from = \"bob@example.com\"\nto = \"alice@example.com\"\ntimeout_secs = 20\npoll_interval_secs = 1\n\
         {send}\n\
         [imap]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"alice@example.com\"\npassword = \"{imap_password}\"\n\
         tls_name = \"localhost\"\nca_file = \"{}\"\n\
         [pushgateway]\nurl = \"http://127.0.0.1:{pgw}\"\n",
        imap.port(),
        cert.display()
    );
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = d.dir.path().join(format!("probe-{n}.toml"));
    std::fs::write(&path, text).expect("probe config");
    path
}

fn run_probe(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postern-test-daemon"))
        .args(["probe", "--config"])
        .arg(config)
        .output()
        .expect("run probe")
}

fn show(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// No message of alice's mailbox (new/ or cur/) carries a probe marker.
fn no_probe_left(d: &Daemon) {
    let root = d.dir.path().join("mail/example.com/alice");
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(root.join(sub)) {
            for e in rd.filter_map(Result::ok) {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                assert!(!text.contains("postern-probe-"), "left: {:?}", e.path());
            }
        }
    }
}

#[test]
fn the_probe_roundtrips_by_submission_and_pushes_the_result() {
    if !peer("prometheus-pushgateway") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let (_pgw, port) = pushgateway(d.dir.path());
    let smtp = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"bob@example.com\"\npassword = \"bob-pw\"\n\
         tls = \"starttls\"\ntls_name = \"localhost\"\nca_file = \"{}\"\n",
        d.addrs[1].port(),
        d.dir.path().join("cert.pem").display()
    );
    let good = probe_config(&d, &smtp, "alice-pw", port);
    let out = run_probe(&good);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("roundtrip ok"), "{}", show(&out));
    assert_eq!(pushed(port, "email_roundtrip_success"), Some(1.0));
    let last = pushed(port, "email_roundtrip_last_success_timestamp").expect("last success");
    assert!(last > 1.7e9, "{last}");
    let took = pushed(port, "email_roundtrip_duration_seconds").expect("duration");
    assert!((0.0..20.0).contains(&took), "{took}");
    no_probe_left(&d);

    // A wrong IMAP password: non-zero exit, success 0, the last success kept.
    let bad = probe_config(&d, &smtp, "wrong-pw", port);
    let out = run_probe(&bad);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(show(&out).contains("IMAP login refused"), "{}", show(&out));
    assert_eq!(pushed(port, "email_roundtrip_success"), Some(0.0));
    assert_eq!(
        pushed(port, "email_roundtrip_last_success_timestamp"),
        Some(last)
    );

    // A configuration without a way to send is refused before anything runs.
    let none = probe_config(&d, "", "alice-pw", port);
    let out = run_probe(&none);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

/// A stand-in for Brevo's transactional API: checks the key, then delivers
/// the JSON's message to the daemon's MX over SMTP, like the real service.
const SEND_API: &str = r#"
import http.server, json, smtplib, sys
from email.message import EmailMessage
mx_port = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("api-key") != "test-key" or self.path != "/v3/smtp/email":
            self.send_response(401); self.end_headers(); return
        j = json.loads(body)
        m = EmailMessage()
        m["From"] = j["sender"]["email"]
        m["To"] = j["to"][0]["email"]
        m["Subject"] = j["subject"]
        for k, v in j.get("headers", {}).items():
            m[k] = v
        m.set_content(j["textContent"])
        with smtplib.SMTP("127.0.0.1", mx_port, timeout=20) as s:
            s.send_message(m)
        out = b'{"messageId":"<stand-in@brevo>"}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

#[test]
fn the_probe_roundtrips_through_an_http_send_api() {
    if !peer("prometheus-pushgateway") || !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let (_pgw, port) = pushgateway(d.dir.path());
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SEND_API)
        .arg(d.addrs[0].port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("port line");
    let api = Peer(child);
    let api_port: u16 = first.trim().parse().expect("port");
    let http = format!(
        "[http]\nurl = \"http://127.0.0.1:{api_port}/v3/smtp/email\"\nheader = \"api-key\"\nkey = \"test-key\"\n"
    );
    let cfg = probe_config(&d, &http, "alice-pw", port);
    let out = run_probe(&cfg);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("through http://127.0.0.1"),
        "{}",
        show(&out)
    );
    assert_eq!(pushed(port, "email_roundtrip_success"), Some(1.0));
    no_probe_left(&d);

    // The API refusing the key: non-zero, success 0.
    let wrong = http.replace("test-key", "other-key");
    let cfg = probe_config(&d, &wrong, "alice-pw", port);
    let out = run_probe(&cfg);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("send API answered 401"),
        "{}",
        show(&out)
    );
    assert_eq!(pushed(port, "email_roundtrip_success"), Some(0.0));
    drop(api);
}
