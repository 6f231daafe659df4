//! The monitoring listener (`protocol = "http"`): `/metrics` checked by
//! `promtool` and scraped by a real Prometheus on loopback, `/readyz`
//! following the mail store, and bad input (a flood, huge headers, a slow
//! client) bounded like the mail listeners.

mod common;

use common::{free_port, peer, tool, wait_for_port_or_show, Client, Daemon};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LISTENERS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n\
     [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"http\"\n";

/// The daemon with an MX (`addrs[0]`) and a monitoring listener (`addrs[1]`).
fn daemon() -> Daemon {
    Daemon::start(LISTENERS, "")
}

/// One request; returns (status, head, body).
fn request(addr: SocketAddr, raw: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(raw).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: postern\r\nUser-Agent: test\r\n\r\n").as_bytes(),
    );
    (status, body)
}

/// The value of the sample whose line starts with `series` (0 if absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Sends one message to alice through the MX.
fn deliver(mx: SocketAddr) {
    let mut c = Client::connect(mx).expect("connect");
    assert!(c.reply().expect("greeting").starts_with("220"));
    c.cmd("EHLO metrics.example").expect("ehlo");
    assert!(c
        .cmd("MAIL FROM:<s@example.net>")
        .expect("mail")
        .starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<alice@example.com>")
        .expect("rcpt")
        .starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<nobody@example.com>")
        .expect("rcpt")
        .starts_with("550"));
    assert!(c.cmd("DATA").expect("data").starts_with("354"));
    let r = c.cmd("Subject: counted\r\n\r\nbody\r\n.").expect("dot");
    assert!(r.starts_with("250"), "{r}");
    let _ = c.cmd("QUIT");
}

/// Sorts connections into those refused with a 503 (counted) and those
/// held open: waits (bounded) until `refusals` have their answer, then a
/// little longer to see that no more come.
fn sort_out(conns: Vec<TcpStream>, refusals: usize) -> (Vec<TcpStream>, usize) {
    for s in &conns {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let mut answered = vec![false; conns.len()];
    let pass = |answered: &mut Vec<bool>| {
        for (i, s) in conns.iter().enumerate() {
            if answered[i] {
                continue;
            }
            let mut buf = [0u8; 64];
            match (&*s).read(&mut buf) {
                Ok(n) if n > 0 => {
                    let got = &buf[..n];
                    assert!(
                        got.starts_with(b"HTTP/1.1 503") || b"HTTP/1.1 503".starts_with(got),
                        "unexpected {:?}",
                        String::from_utf8_lossy(got)
                    );
                    answered[i] = true;
                }
                Ok(_) => panic!("closed without an answer"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        answered.iter().filter(|a| **a).count()
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    while pass(&mut answered) < refusals && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let refused = pass(&mut answered);
    let held = conns
        .into_iter()
        .zip(answered)
        .filter(|(_, a)| !a)
        .map(|(s, _)| s)
        .collect();
    (held, refused)
}

#[test]
fn metrics_pass_promtool_and_count_a_delivery() {
    let d = daemon();
    let (mx, web) = (d.addrs[0], d.addrs[1]);
    let (status, head, before) = request(web, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let accepted = "postern_messages_total{result=\"accepted\",reason=\"stored\"}";
    let stored = "postern_deliveries_total{destination=\"mailbox\",result=\"ok\"}";
    assert_eq!(sample(&before, accepted), 0.0);
    deliver(mx);
    let (_, after) = get(web, "/metrics");
    assert_eq!(sample(&after, accepted), 1.0, "{after}");
    assert_eq!(sample(&after, stored), 1.0, "{after}");
    assert_eq!(
        sample(
            &after,
            "postern_messages_total{result=\"rejected\",reason=\"rcpt_550\"}"
        ),
        1.0,
        "{after}"
    );
    for family in [
        "postern_connections_total{",
        "postern_sessions{",
        "postern_queue_messages ",
        "postern_queue_oldest_age_seconds ",
        "postern_queue_deferred_messages ",
        "postern_relay_sent_today ",
        "postern_relay_daily_limit ",
        "postern_imap_sessions ",
        "postern_imap_idle_sessions ",
        "postern_listeners_bound 2",
    ] {
        assert!(after.contains(family), "{family} missing:\n{after}");
    }
    let expiry = sample(&after, "postern_certificate_expiry_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(expiry > now, "certificate expiry {expiry} not after now");

    if !peer("promtool") {
        return;
    }
    let file = d.dir.path().join("metrics.txt");
    std::fs::write(&file, &after).expect("write");
    let out = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: exit {}, said {said:?}", out.status);
    assert!(out.status.success(), "promtool: {said}\n{after}");
    assert!(said.trim().is_empty(), "promtool lint: {said}");
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The first value of an instant query's answer, if any.
fn query(prom: SocketAddr, q: &str) -> Option<f64> {
    let mut s = TcpStream::connect(prom).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!(
            "GET /api/v1/query?query={} HTTP/1.1\r\nHost: prom\r\nConnection: close\r\n\r\n",
            encode(q)
        )
        .as_bytes(),
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    // ..."value":[1733080000.123,"1"]...
    let v = out.split("\"value\":[").nth(1)?;
    let v = v.split(',').nth(1)?;
    v.trim_start_matches('"').split('"').next()?.parse().ok()
}

/// Polls `q` until `want` holds, for at most `limit`.
fn wait_query(prom: SocketAddr, q: &str, want: impl Fn(f64) -> bool, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let v = query(prom, q);
        if let Some(v) = v.filter(|v| want(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus: {q} is {v:?} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prometheus with its own folder; killed by its PID when dropped.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_it() {
    if !peer("prometheus") {
        return;
    }
    let d = daemon();
    let (mx, web) = (d.addrs[0], d.addrs[1]);
    let dir = d.dir.path().join("prometheus");
    std::fs::create_dir_all(dir.join("data")).expect("dir");
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: postern\n    static_configs:\n      - targets: ['{web}']\n"
        ),
    )
    .expect("config");
    let port = free_port();
    let log = dir.join("prometheus.log");
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("log"),
        ))
        .spawn()
        .expect("prometheus");
    let prom = Prometheus {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    wait_for_port_or_show(port, "prometheus", Some(&log));
    let up = wait_query(
        prom.addr,
        "up{job=\"postern\"}",
        |v| v == 1.0,
        Duration::from_secs(60),
    );
    eprintln!("Prometheus: up{{job=\"postern\"}} = {up}");
    let counter =
        "sum(postern_deliveries_total{destination=\"mailbox\",result=\"ok\"}) or vector(0)";
    let before = wait_query(prom.addr, counter, |_| true, Duration::from_secs(30));
    deliver(mx);
    let after = wait_query(prom.addr, counter, |v| v > before, Duration::from_secs(30));
    eprintln!("Prometheus: {counter} went from {before} to {after}");
    drop(prom);
}

#[test]
fn readyz_follows_the_mail_store() {
    let d = daemon();
    let web = d.addrs[1];
    assert_eq!(get(web, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(web, "/readyz"), (200, "ready\n".to_owned()));
    // Unwritable for root too: file modes do not stop root (chmod 0555
    // would not), but a path through a regular file cannot be created by
    // anyone (ENOTDIR). So the data folder is swapped for a file, as if
    // its volume had gone away.
    let mail = d.dir.path().join("mail");
    let away = d.dir.path().join("mail.away");
    std::fs::rename(&mail, &away).expect("move away");
    std::fs::write(&mail, b"not a folder").expect("file");
    let (status, body) = get(web, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("mail store: cannot write in"), "{body}");
    // The process itself is still healthy.
    assert_eq!(get(web, "/healthz").0, 200);
    std::fs::remove_file(&mail).expect("rm");
    std::fs::rename(&away, &mail).expect("move back");
    assert_eq!(get(web, "/readyz"), (200, "ready\n".to_owned()));
    // Nothing left behind by the probe.
    let left: Vec<_> = std::fs::read_dir(&mail)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".postern-readyz")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_http_flood_is_capped_per_address_and_the_mx_still_greets() {
    let d = daemon();
    let (mx, web) = (d.addrs[0], d.addrs[1]);
    let flood: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(web).expect("connect"))
        .collect();
    let (held, refused) = sort_out(flood, 84);
    assert_eq!((held.len(), refused), (16, 84), "16 places per address");
    // Mail is not affected by the HTTP budget.
    let mut c = Client::connect(mx).expect("mx");
    assert!(c.reply().expect("greeting").starts_with("220"));
    let _ = c.cmd("QUIT");
    // A real request from the flooding address is refused too.
    assert_eq!(get(web, "/metrics").0, 503);
    drop(held);
    // The places come back once the flood is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (status, body) = get(web, "/metrics");
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "no place after the flood");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        sample(
            &metrics,
            "postern_admission_refused_total{service=\"http\",reason=\"too_many_connections\"}"
        ) >= 84.0,
        "{metrics}"
    );
}

#[test]
fn huge_headers_get_431_and_a_closed_connection() {
    let d = daemon();
    let web = d.addrs[1];
    let mut s = TcpStream::connect(web).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
    let pad = format!("X-Pad: {}\r\n", "a".repeat(1000));
    while head.len() < 200 * 1024 {
        head.extend_from_slice(pad.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        // The server stops reading past its limit; the rest may fail.
        let _ = w.write_all(&head);
    });
    let mut out = Vec::new();
    let r = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{r:?} {text}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text}");
    // read_to_end returned: the server closed the connection.
    writer.join().expect("writer");
    // Other bad input is answered, never crashes the listener.
    assert_eq!(request(web, b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(request(web, b"\x16\x03\x01\x00\x00").0, 400);
    assert_eq!(request(web, b"GET /nope HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(get(web, "/healthz").0, 200);
}

#[test]
fn a_slow_client_is_cut_off_with_408() {
    let d = daemon();
    let web = d.addrs[1];
    let mut s = TcpStream::connect(web).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let start = Instant::now();
    s.write_all(b"GET /metrics HTTP/1.1\r\n").expect("part");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let took = start.elapsed();
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[test]
fn behind_a_proxy_the_http_listener_counts_the_proxy_source() {
    let d = Daemon::start(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"http\"\nproxy = \"required\"\n\
         trusted_networks = [\"127.0.0.0/8\"]\n",
        "",
    );
    let web = d.addrs[0];
    let server: SocketAddr = "10.0.20.1:9100".parse().expect("addr");
    // 20 connections from one real client behind the proxy: 16 places.
    let conns: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = TcpStream::connect(web).expect("connect");
            let src: SocketAddr = format!("203.0.113.7:{}", 40000 + i).parse().expect("src");
            s.write_all(&postern_core::proxy::encode_v2(src, server, false))
                .expect("header");
            s
        })
        .collect();
    let (held, refused) = sort_out(conns, 4);
    assert_eq!((held.len(), refused), (16, 4), "{}", d.log_text());
    // Another real client behind the same proxy is served.
    let mut other =
        postern_core::proxy::encode_v2("198.51.100.9:50000".parse().expect("src"), server, false);
    other.extend_from_slice(b"GET /metrics HTTP/1.1\r\n\r\n");
    let (status, _, body) = request(web, &other);
    assert_eq!(status, 200);
    assert!(
        sample(
            &body,
            "postern_admission_refused_total{service=\"http\",reason=\"too_many_connections\"}"
        ) >= 1.0,
        "{body}"
    );
    // No header: closed without an answer, and counted.
    let (status, head, _) = request(web, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(status, 0, "{head}");
    drop(held);
    let (_, _, body) = request(web, &other);
    assert!(
        sample(&body, "postern_proxy_refused_total{protocol=\"http\"}") >= 1.0,
        "{body}"
    );
}

/// Polls `/metrics` until `series` has `want` (bounded); returns the text.
fn wait_sample(web: SocketAddr, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = get(web, "/metrics");
        if sample(&body, series) == want {
            return body;
        }
        assert!(Instant::now() < deadline, "{series} is not {want}:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn imap_sessions_idle_failed_logins_and_tls_failures_are_counted() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"http\"\n",
        "",
    );
    let (imaps, web) = (d.addrs[0], d.addrs[1]);
    // A client that is not speaking TLS to the implicit TLS port.
    let mut junk = TcpStream::connect(imaps).expect("connect");
    junk.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    junk.write_all(b"a LOGIN alice@example.com alice-pw\r\n")
        .expect("junk");
    let _ = junk.read_to_end(&mut Vec::new());
    wait_sample(
        web,
        "postern_tls_handshake_failures_total{protocol=\"imap\"}",
        1.0,
    );
    let script = format!(
        r#"
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def session():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port})), server_hostname="localhost")
    f = s.makefile("rb")
    f.readline()
    return s, f
def cmd(s, f, tag, text):
    s.sendall(("%s %s\r\n" % (tag, text)).encode())
    while True:
        l = f.readline().decode()
        if not l or l.startswith(tag + " "):
            return l.strip()
s, f = session()
print("bad login:", cmd(s, f, "a", "LOGIN alice@example.com wrong-pw"), flush=True)
s.close()
s, f = session()
print("login:", cmd(s, f, "b", "LOGIN alice@example.com alice-pw"), flush=True)
print("select:", cmd(s, f, "c", "SELECT INBOX"), flush=True)
s.sendall(b"d IDLE\r\n")
print("idling", f.readline().decode().strip(), flush=True)
sys.stdin.readline()
s.sendall(b"DONE\r\n")
while not f.readline().decode().startswith("d "):
    pass
print("logout:", cmd(s, f, "e", "LOGOUT"), flush=True)
"#,
        port = imaps.port()
    );
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = std::io::BufReader::new(py.stdout.take().expect("stdout"));
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut out, &mut line).expect("read") == 0 {
            panic!("python ended before IDLE: {said}");
        }
        said.push_str(&line);
        if line.starts_with("idling") {
            break;
        }
    }
    assert!(said.contains("bad login: a NO"), "{said}");
    let body = wait_sample(web, "postern_imap_idle_sessions", 1.0);
    assert_eq!(sample(&body, "postern_imap_sessions"), 1.0, "{body}");
    assert_eq!(
        sample(&body, "postern_auth_failures_total{protocol=\"imap\"}"),
        1.0,
        "{body}"
    );
    py.stdin
        .take()
        .expect("stdin")
        .write_all(b"\n")
        .expect("done");
    let status = py.wait().expect("wait");
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    assert!(status.success(), "{said}{rest}");
    assert!(rest.contains("logout: e OK"), "{rest}");
    wait_sample(web, "postern_imap_idle_sessions", 0.0);
    wait_sample(web, "postern_imap_sessions", 0.0);
}
