//! The daemon driven by real peers nobody here wrote: swaks, HAProxy with
//! send-proxy-v2 and Postfix's smtp-source; plus SIGKILL crash safety and
//! the SIGTERM shutdown, against the real process.

mod common;

use common::{peer, tool, Client, Daemon, HaProxy};
use std::collections::HashSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MX_STARTTLS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n";
const ALIASES: &str = "info@example.com bob@example.com\n@example.org alice@example.com\n";

fn swaks(server: SocketAddr, extra: &[&str]) -> (bool, String) {
    let out = Command::new(tool("swaks"))
        .arg("--server")
        .arg(server.to_string())
        .args([
            "--from",
            "sender@example.net",
            "--helo",
            "client.example.net",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run swaks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn swaks_delivers_to_account_alias_and_catchall_plain_and_starttls() {
    if !peer("swaks") {
        return;
    }
    let d = Daemon::start(MX_STARTTLS, ALIASES);
    let mx = d.addrs[0];

    let (ok, out) = swaks(
        mx,
        &[
            "--to",
            "alice@example.com",
            "--header",
            "Subject: plain to account",
            "--body",
            "body one",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = swaks(
        mx,
        &[
            "--tls",
            "--to",
            "info@example.com",
            "--header",
            "Subject: tls to alias",
            "--body",
            "body two",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("TLS started"), "{out}");
    let (ok, out) = swaks(
        mx,
        &[
            "--to",
            "whoever@example.org",
            "--header",
            "Subject: to catch-all",
            "--body",
            "body three",
        ],
    );
    assert!(ok, "{out}");

    let alice = d.new_mail("alice", "example.com");
    let bob = d.new_mail("bob", "example.com");
    assert_eq!(alice.len(), 2, "alice: {alice:?}");
    assert_eq!(bob.len(), 1, "bob: {bob:?}");
    let a: Vec<String> = alice.iter().map(|(_, b)| text(b)).collect();
    let plain = a
        .iter()
        .find(|m| m.contains("Subject: plain to account"))
        .expect("plain message");
    assert!(plain.starts_with("Return-Path: <sender@example.net>\nDelivered-To: alice@example.com\nReceived: from client.example.net (unknown [127.0.0.1])\n"), "{plain}");
    assert!(
        plain.contains("with ESMTP id ") && plain.contains("body one"),
        "{plain}"
    );
    assert!(!plain.contains('\r'), "Maildir files use LF line ends");
    let catch = a
        .iter()
        .find(|m| m.contains("Subject: to catch-all"))
        .expect("catch-all message");
    assert!(
        catch.contains("for <whoever@example.org>") && catch.contains("body three"),
        "{catch}"
    );
    let tls = text(&bob[0].1);
    assert!(
        tls.contains("(using TLSv1.3 with cipher") && tls.contains("with ESMTPS id"),
        "{tls}"
    );
    assert!(
        tls.contains("Subject: tls to alias") && tls.contains("body two"),
        "{tls}"
    );

    let (ok, out) = swaks(mx, &["--to", "nobody@example.com"]);
    assert!(!ok && out.contains("550 5.1.1"), "{out}");
    let (ok, out) = swaks(mx, &["--to", "someone@remote.example"]);
    assert!(!ok && out.contains("554 5.7.1"), "{out}");
}

#[test]
fn haproxy_send_proxy_v2_gives_the_real_client_address() {
    if !peer("haproxy") || !peer("swaks") {
        return;
    }
    let listeners = format!(
        "{MX_STARTTLS}[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\nproxy = \"required\"\ntrusted_networks = [\"127.0.0.1/32\"]\n"
    );
    let d = Daemon::start(&listeners, ALIASES);
    let (stock, alt) = (d.addrs[0], d.addrs[1]);

    let hap = HaProxy::start(d.dir.path(), alt);
    let hp_port = hap.port;

    // A client on 127.0.0.7 through HAProxy: Postern must see 127.0.0.7.
    let (ok, out) = swaks(
        format!("127.0.0.1:{hp_port}").parse().expect("addr"),
        &[
            "--local-interface",
            "127.0.0.7",
            "--tls",
            "--to",
            "alice@example.com",
            "--header",
            "Subject: via haproxy",
        ],
    );
    assert!(ok, "{out}");
    let mail = d.new_mail("alice", "example.com");
    assert_eq!(mail.len(), 1);
    let m = text(&mail[0].1);
    assert!(
        m.contains("Received: from client.example.net (unknown [127.0.0.7])"),
        "{m}"
    );
    let log = d.log_text();
    assert!(log.contains("connect from unknown[127.0.0.7]"), "{log}");

    // The alt listener refuses a client without the header: no greeting.
    let mut c = Client::connect(alt).expect("connect alt");
    c.send(b"EHLO direct.example\r\n").expect("send");
    let got = c.read_to_end();
    assert!(
        got.is_empty(),
        "no byte may come without a PROXY header, got {:?}",
        text(&got)
    );

    // The stock listener refuses a connection that sends a header.
    let mut c = Client::connect(stock).expect("connect stock");
    assert!(c.reply().expect("greeting").starts_with("220 "));
    c.send(&postern_core::proxy::encode_v2(
        "192.0.2.9:1234".parse().expect("a"),
        stock,
        false,
    ))
    .expect("send header");
    let rest = c.read_to_end();
    assert!(!text(&rest).contains("250"), "{:?}", text(&rest));
    let log = d.log_text();
    assert!(log.contains("PROXY refused: missing PROXY header"), "{log}");
    assert!(
        log.contains("PROXY refused: PROXY header on a listener that does not accept one"),
        "{log}"
    );
}

#[test]
fn smtp_source_2000_messages_over_10_sessions_each_stored_once() {
    if !peer("smtp-source") {
        return;
    }
    let d = Daemon::start(MX_STARTTLS, "");
    let out = Command::new(tool("smtp-source"))
        .args([
            "-c",
            "-l",
            "4096",
            "-m",
            "2000",
            "-s",
            "10",
            "-f",
            "sender@example.net",
            "-t",
            "alice@example.com",
        ])
        .arg(d.addrs[0].to_string())
        .stdout(Stdio::null())
        .output()
        .expect("smtp-source");
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mail = d.new_mail("alice", "example.com");
    assert_eq!(mail.len(), 2000, "every message on disk exactly once");
    let ids: HashSet<String> = mail
        .iter()
        .filter_map(|(_, b)| {
            text(b)
                .lines()
                .find(|l| l.contains(" id "))
                .map(|l| l.split(" id ").nth(1).unwrap_or("").to_owned())
        })
        .collect();
    assert_eq!(ids.len(), 2000, "2000 distinct queue ids");
    assert!(
        mail.iter().all(|(_, b)| b.len() > 4096),
        "every message complete"
    );
}

/// A tiny PRNG (xorshift) for kill timing: no dependency, seed in the output.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_message() {
    let mut d = Daemon::start(MX_STARTTLS, "");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Rng(seed);
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    for round in 0..20 {
        let addr = d.addrs[0];
        let stop = Arc::new(AtomicBool::new(false));
        let acks_this_round = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (acked, counter, stop, acks) = (
                acked.clone(),
                counter.clone(),
                stop.clone(),
                acks_this_round.clone(),
            );
            clients.push(std::thread::spawn(move || {
                let Ok(mut c) = Client::connect(addr) else {
                    return;
                };
                if c.reply().is_err() || c.cmd("EHLO crash.example").is_err() {
                    return;
                }
                for _ in 0..500 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let marker = format!("m{round}-{n}");
                    let body =
                        "MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n";
                    if c.send(body.as_bytes()).is_err()
                        || c.reply().is_err()
                        || c.reply().is_err()
                        || c.reply().is_err()
                    {
                        return;
                    }
                    let msg = format!(
                        "Subject: {marker}\r\n\r\n{}\r\nEND-{marker}\r\n.\r\n",
                        "x".repeat(2000)
                    );
                    if c.send(msg.as_bytes()).is_err() {
                        return;
                    }
                    match c.reply() {
                        Ok(r) if r.starts_with("250 ") => {
                            acked.lock().expect("lock").push(marker);
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => return,
                    }
                }
            }));
        }
        // Kill after a random number of acknowledged messages (0..40): the
        // other connections are then at random points of their sessions.
        let target = (rng.next() % 40) as usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        while acks_this_round.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            std::thread::yield_now();
        }
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.join();
        }
        d.spawn();
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "the test must have acknowledged messages to check (got {})",
        acked.len()
    );
    let mail = d.new_mail("alice", "example.com");
    let mut found = HashSet::new();
    for (name, bytes) in &mail {
        let t = text(bytes);
        let marker = t
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned();
        assert!(
            t.ends_with(&format!("END-{marker}\n")),
            "incomplete message in new/: {name}"
        );
        found.insert(marker);
    }
    let lost: Vec<&String> = acked.iter().filter(|m| !found.contains(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!(
        "{} acknowledged, {} on disk after 20 kills",
        acked.len(),
        mail.len()
    );
}

#[test]
fn sigterm_lets_a_message_in_data_finish_then_says_421() {
    let mut d = Daemon::start(MX_STARTTLS, "");
    let addr = d.addrs[0];
    let mut busy = Client::connect(addr).expect("connect");
    busy.reply().expect("greeting");
    busy.cmd("EHLO busy.example").expect("ehlo");
    assert!(busy
        .cmd("MAIL FROM:<s@example.net>")
        .expect("mail")
        .starts_with("250"));
    assert!(busy
        .cmd("RCPT TO:<alice@example.com>")
        .expect("rcpt")
        .starts_with("250"));
    assert!(busy.cmd("DATA").expect("data").starts_with("354"));
    busy.send(b"Subject: finishing after SIGTERM\r\n\r\nfirst half\r\n")
        .expect("half");
    let mut idle = Client::connect(addr).expect("connect idle");
    idle.reply().expect("greeting");
    idle.cmd("EHLO idle.example").expect("ehlo");

    let mut child = d.term();
    // The idle session is told 421 4.3.2 and closed.
    let idle_says = text(&idle.read_to_end());
    assert!(idle_says.starts_with("421 4.3.2 "), "{idle_says:?}");
    // The session in DATA finishes its message and is acknowledged.
    busy.send(b"second half\r\n.\r\n").expect("rest");
    let r = busy.reply().expect("after dot");
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    let after = text(&busy.read_to_end());
    assert!(after.starts_with("421 4.3.2 "), "{after:?}");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    // No new connections once it stopped.
    assert!(
        TcpStream::connect(addr)
            .map(|mut s| {
                let mut b = [0u8; 1];
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                s.read(&mut b).unwrap_or(0)
            })
            .unwrap_or(0)
            == 0
    );
    let mail = d.new_mail("alice", "example.com");
    assert_eq!(mail.len(), 1);
    assert!(text(&mail[0].1).contains("first half\nsecond half\n"));
}

fn cert_fingerprint_from_server(addr: SocketAddr) -> Option<String> {
    let mut child = Command::new(tool("openssl"))
        .args(["s_client", "-starttls", "smtp", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    drop(child.stdin.take());
    let out = child.wait_with_output().ok()?;
    let pem = String::from_utf8_lossy(&out.stdout);
    let start = pem.find("-----BEGIN CERTIFICATE-----")?;
    let end = pem.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    fingerprint(&pem[start..end])
}

fn fingerprint(pem: &str) -> Option<String> {
    use std::io::Write;
    let mut child = Command::new(tool("openssl"))
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(pem.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn certificate_files_reload_without_restart() {
    if !peer("openssl") {
        return;
    }
    let d = Daemon::start(MX_STARTTLS, "");
    let mx = d.addrs[0];
    let root = d.dir.path();
    let old = cert_fingerprint_from_server(mx).expect("first handshake");
    assert_eq!(
        Some(old.clone()),
        fingerprint(&std::fs::read_to_string(root.join("cert.pem")).expect("pem"))
    );
    // A renewed certificate, written the way certbot does (new files, then swap).
    let fresh = root.join("fresh");
    std::fs::create_dir(&fresh).expect("dir");
    postern_runtime_smol::tls::ensure_self_signed(
        &["renewed.example.com".into()],
        &fresh.join("cert.pem"),
        &fresh.join("key.pem"),
    )
    .expect("new cert");
    let want =
        fingerprint(&std::fs::read_to_string(fresh.join("cert.pem")).expect("pem")).expect("fp");
    assert_ne!(want, old);
    std::fs::rename(fresh.join("key.pem"), root.join("key.pem")).expect("swap key");
    std::fs::rename(fresh.join("cert.pem"), root.join("cert.pem")).expect("swap cert");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = cert_fingerprint_from_server(mx).expect("handshake");
        if now == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still the old certificate after 15 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The log line follows the swap: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log_text().contains("TLS certificate reloaded") {
        assert!(Instant::now() < deadline, "no reload logged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failing_disk_answers_452_and_leaves_nothing_half_written() {
    let d = Daemon::start(MX_STARTTLS, "");
    // Make delivery fail: the mailbox's new/ is a file, so the rename fails.
    let inbox = d.dir.path().join("mail/example.com/alice");
    for sub in ["cur", "tmp"] {
        std::fs::create_dir_all(inbox.join(sub)).expect("dir");
    }
    std::fs::write(inbox.join("new"), b"not a directory").expect("file");
    let mut c = Client::connect(d.addrs[0]).expect("connect");
    c.reply().expect("greeting");
    c.cmd("EHLO disk.example").expect("ehlo");
    assert!(c
        .cmd("MAIL FROM:<s@example.net>")
        .expect("mail")
        .starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<alice@example.com>")
        .expect("rcpt")
        .starts_with("250"));
    assert!(c.cmd("DATA").expect("data").starts_with("354"));
    let r = c.cmd("Subject: doomed\r\n\r\nbody\r\n.").expect("dot");
    assert_eq!(r, "452 4.3.1 Insufficient system storage");
    assert_eq!(
        std::fs::read_dir(inbox.join("tmp")).expect("tmp").count(),
        0,
        "tmp/ cleaned up"
    );
    // The session goes on, and the next message works once the disk does.
    std::fs::remove_file(inbox.join("new")).expect("rm");
    std::fs::create_dir(inbox.join("new")).expect("mkdir");
    assert!(c
        .cmd("MAIL FROM:<s@example.net>")
        .expect("mail")
        .starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<alice@example.com>")
        .expect("rcpt")
        .starts_with("250"));
    assert!(c.cmd("DATA").expect("data").starts_with("354"));
    assert!(c
        .cmd("Subject: fine\r\n\r\nbody\r\n.")
        .expect("dot")
        .starts_with("250 2.0.0"));
    assert_eq!(d.new_mail("alice", "example.com").len(), 1);
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "hostname = \"mx.example.com\"\ndata_dir = \"m\"\n[directory]\naccounts = \"a\"\n[[listener]]\naddress = \"0.0.0.0:25\"\nprotocol = \"smtp\"\nproxy = \"required\"\ntrusted_networks = [\"10.0.20.0/33\"]\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_postern-test-daemon"))
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:9: listener[1].trusted_networks: not a network"),
        "{err}"
    );
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/postern.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_postern-test-daemon"))
        .arg("check-config")
        .arg(&good)
        .output()
        .expect("run");
    // The reference deployment names files that exist only in the pod:
    // check-config names the first one missing, with its line and key.
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "postern.toml:12: directory.accounts: /tmp/docker-mailserver/postfix-accounts.cf"
        ),
        "{err}"
    );
}

#[test]
fn connection_limits_count_the_real_client_and_free_their_places() {
    let d = Daemon::start(
        &format!("{MX_STARTTLS}\n[smtp]\nmax_connections_per_client = 2\n"),
        "",
    );
    let mx = d.addrs[0];
    let mut a = Client::connect(mx).expect("a");
    let mut b = Client::connect(mx).expect("b");
    assert!(a.reply().expect("a greeting").starts_with("220 "));
    assert!(b.reply().expect("b greeting").starts_with("220 "));
    let mut c = Client::connect(mx).expect("c");
    let refused = c.reply().expect("c reply");
    assert_eq!(
        refused,
        "421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1"
    );
    assert!(c.read_to_end().is_empty(), "closed after the 421");
    // A session that ends frees its place.
    assert!(a.cmd("QUIT").expect("quit").starts_with("221"));
    let _ = a.read_to_end();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut e = Client::connect(mx).expect("e");
        if e.reply().expect("e reply").starts_with("220 ") {
            break;
        }
        assert!(Instant::now() < deadline, "the place was never freed");
    }
    assert!(d
        .log_text()
        .contains("NOQUEUE: reject: CONNECT from unknown[127.0.0.1]: 421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1; proto=SMTP"));
}

#[test]
fn connection_and_message_rates_per_client_as_postfix_anvil() {
    let d = Daemon::start(
        &format!("{MX_STARTTLS}\n[rate]\nconnection_rate_limit = 3\nmessage_rate_limit = 2\n"),
        "",
    );
    let mx = d.addrs[0];
    let mut a = Client::connect(mx).expect("a");
    assert!(a.reply().expect("greeting").starts_with("220 "));
    assert!(a
        .cmd("EHLO client.example.net")
        .expect("ehlo")
        .starts_with("250 "));
    for _ in 0..2 {
        let r = a.cmd("MAIL FROM:<s@example.net>").expect("mail");
        assert_eq!(r, "250 2.1.0 Ok");
        assert_eq!(a.cmd("RSET").expect("rset"), "250 2.0.0 Ok");
    }
    let r = a.cmd("MAIL FROM:<s@example.net>").expect("mail");
    assert_eq!(r, "450 4.7.1 Error: too much mail from 127.0.0.1");
    for _ in 0..2 {
        let mut c = Client::connect(mx).expect("c");
        assert!(c.reply().expect("greeting").starts_with("220 "));
    }
    let mut c = Client::connect(mx).expect("4th");
    assert_eq!(
        c.reply().expect("refused"),
        "421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1"
    );
    let log = d.log_text();
    assert!(
        log.contains("NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 450 4.7.1 Error: too much mail from 127.0.0.1; from=<s@example.net> proto=ESMTP helo=<client.example.net>"),
        "{log}"
    );
}
