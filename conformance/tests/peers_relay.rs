//! Submission and relay with real peers: swaks and Python's smtplib submit
//! (587 STARTTLS, 465 implicit TLS), Postfix's smtp-sink plays the
//! smarthost, and its faults (5xx, 4xx, a dropped connection, down) lead
//! to the documented retry or bounce. The queue survives SIGKILL.

mod common;
mod sink;

use common::{peer, queue_cli, tool, Daemon};
use sink::{relay_to, Sink};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBMISSION: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"submission\"\ntls = \"starttls\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"submission\"\ntls = \"implicit\"\n";

fn swaks(server: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool("swaks"))
        .arg("--server")
        .arg(server.to_string())
        .args(["--helo", "laptop.example.com"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("swaks");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn submit(server: SocketAddr, to: &str, subject: &str) -> (bool, String) {
    swaks(
        server,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.com",
            "--auth-password",
            "alice-pw",
            "--from",
            "alice@example.com",
            "--to",
            to,
            "--header",
            &format!("Subject: {subject}"),
        ],
    )
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A smarthost port where nothing listens: port 1 (tcpmux, served by
/// nobody here), not a free port from the OS, which a test running beside
/// could be given for its own listener (once a TLS listener of another
/// test answered where a refused connection was expected).
fn unreachable_port() -> u16 {
    assert!(
        std::net::TcpStream::connect("127.0.0.1:1").is_err(),
        "something listens on 127.0.0.1:1"
    );
    1
}

#[test]
fn swaks_submits_on_587_and_465_and_bad_submissions_are_refused() {
    if !peer("swaks") {
        return;
    }
    let d = Daemon::start(SUBMISSION, "info@example.com alice@example.com\n");
    let (s587, s465) = (d.addrs[0], d.addrs[1]);
    let (ok, out) = submit(s587, "bob@example.com", "over 587");
    assert!(ok, "{out}");
    let (ok, out) = swaks(
        s465,
        &[
            "--tlsc",
            "--auth",
            "LOGIN",
            "--auth-user",
            "alice@example.com",
            "--auth-password",
            "alice-pw",
            "--from",
            "info@example.com",
            "--to",
            "bob@example.com",
            "--header",
            "Subject: over 465",
        ],
    );
    assert!(ok, "{out}");
    let bob = d.new_mail("bob", "example.com");
    assert_eq!(bob.len(), 2);
    assert!(bob
        .iter()
        .all(|(_, m)| String::from_utf8_lossy(m).contains("with ESMTPSA id")));

    let (ok, out) = swaks(
        s587,
        &[
            "--tls",
            "--from",
            "alice@example.com",
            "--to",
            "bob@example.com",
        ],
    );
    assert!(
        !ok && out.contains("530 5.7.0 Authentication required"),
        "{out}"
    );
    let (ok, out) = swaks(
        s587,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.com",
            "--auth-password",
            "wrong",
            "--from",
            "alice@example.com",
            "--to",
            "bob@example.com",
        ],
    );
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    let (ok, out) = swaks(
        s587,
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.com",
            "--auth-password",
            "alice-pw",
            "--from",
            "alice@example.com",
            "--to",
            "bob@example.com",
        ],
    );
    assert!(
        !ok && !out.contains("235 "),
        "no AUTH before STARTTLS: {out}"
    );
    let (ok, out) = submit(s587, "bob@example.com", "x");
    assert!(ok, "{out}");
    let (ok, out) = swaks(
        s587,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.com",
            "--auth-password",
            "alice-pw",
            "--from",
            "bob@example.com",
            "--to",
            "bob@example.com",
        ],
    );
    assert!(
        !ok && out.contains("553 5.7.1"),
        "sending as someone else: {out}"
    );
    let log = d.log_text();
    assert!(
        log.contains("unknown[127.0.0.1]: SASL PLAIN authentication failed"),
        "{log}"
    );
    assert!(
        log.contains("unknown[127.0.0.1]: SASL PLAIN authentication failed")
            && log.contains("sasl_username=alice@example.com")
    );
}

#[test]
fn smtplib_submits_like_roundcube_and_the_relay_delivers_once() {
    if !peer("python3") || !peer("smtp-sink") {
        return;
    }
    let probe = Daemon::start(SUBMISSION, "");
    let sink = Sink::start_with(probe.dir.path(), &[]);
    drop(probe);
    let d = Daemon::start_with(SUBMISSION, "", &relay_to(sink.port));
    let script = format!(
        r#"
import smtplib, ssl
from email.message import EmailMessage
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for i in range(5):
    s = smtplib.SMTP("127.0.0.1", {port}, local_hostname="roundcube.example.com")
    s.starttls(context=ctx)
    s.ehlo("roundcube.example.com")
    s.user, s.password = "alice@example.com", "alice-pw"
    code, _ = s.auth("LOGIN", s.auth_login)
    assert code == 235, code
    m = EmailMessage()
    m["From"] = "alice@example.com"; m["To"] = "friend@remote.example, bob@example.com"
    m["Subject"] = "roundcube %d" % i
    m["DKIM-Ready"] = "header %d kept byte for byte" % i
    m.set_content("hello %d\n.line starting with a dot\n" % i)
    s.send_message(m)
    s.quit()
print("ok")
"#,
        port = d.addrs[0].port()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Local recipients are delivered locally, not relayed.
    assert_eq!(d.new_mail("bob", "example.com").len(), 5);
    // The sink makes its file at MAIL FROM and writes it at the end of
    // DATA: wait for every message's text, then for an empty queue (no
    // second attempt can still be under way).
    wait_until(
        "5 messages at the smarthost",
        Duration::from_secs(20),
        || {
            let got = sink.texts();
            (0..5).all(|i| {
                got.iter()
                    .any(|m| m.contains(&format!("Subject: roundcube {i}\n")))
            })
        },
    );
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_cli(&d, &["list"]).contains("-- 0 queued")
    });
    let got = sink.texts();
    assert_eq!(got.len(), 5, "each relayed message arrives once");
    for i in 0..5 {
        let m = got
            .iter()
            .find(|m| m.contains(&format!("Subject: roundcube {i}\n")))
            .unwrap_or_else(|| panic!("message {i}: {got:?}"));
        assert!(
            m.contains(&format!("DKIM-Ready: header {i} kept byte for byte\n")),
            "{m}"
        );
        assert!(
            m.contains("\n.line starting with a dot\n"),
            "dot-stuffing undone at the sink: {m}"
        );
        assert!(
            m.contains("X-Rcpt-Args: <friend@remote.example>\n"),
            "only the remote recipient is relayed: {m}"
        );
        assert!(m.contains("X-Mail-Args: <alice@example.com>"), "{m}");
    }
    let list = queue_cli(&d, &["list"]);
    assert!(list.contains("-- 0 queued"), "{list}");
}

#[test]
fn smarthost_faults_retry_or_bounce_and_the_queue_survives_sigkill() {
    if !peer("smtp-sink") || !peer("swaks") {
        return;
    }
    // Nothing listens on the smarthost port yet: everything is deferred.
    let port = unreachable_port();
    let mut d = Daemon::start_with(SUBMISSION, "", &relay_to(port));
    for i in 0..10 {
        let (ok, out) = submit(d.addrs[0], "friend@remote.example", &format!("queued {i}"));
        assert!(ok, "{out}");
    }
    wait_until("10 deferred", Duration::from_secs(20), || {
        queue_cli(&d, &["list"]).contains("-- 10 queued, 10 deferred")
    });
    let list = queue_cli(&d, &["list"]);
    let id = list.split_whitespace().next().expect("an id").to_owned();
    let show = queue_cli(&d, &["show", &id]);
    assert!(
        show.contains("pending   <friend@remote.example> 421 4.4.1 connect to 127.0.0.1:"),
        "{show}"
    );
    // A crash with a full queue, then the smarthost comes up.
    d.kill9();
    let sink = Sink::start_with(d.dir.path(), &[]);
    // Same data, config and queue: the relay now points at the sink.
    let mut d = d;
    set_relay_port(&d, sink.port, false);
    d.spawn();
    let retry = queue_cli(&d, &["retry", "all"]);
    assert_eq!(retry.lines().count(), 10, "{retry}");
    wait_until("all 10 at the smarthost", Duration::from_secs(30), || {
        sink.texts().len() >= 10
    });
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_cli(&d, &["list"]).contains("-- 0 queued")
    });
    let got = sink.texts();
    assert_eq!(got.len(), 10);
    for i in 0..10 {
        assert_eq!(
            got.iter()
                .filter(|m| m.contains(&format!("Subject: queued {i}\n")))
                .count(),
            1,
            "message {i} once"
        );
    }
    d.kill9();
    drop(sink);

    // A smarthost that refuses the recipient for good: a bounce to alice.
    let hard = Sink::start_with(d.dir.path(), &["-f", "RCPT"]);
    set_relay_port(&d, hard.port, false);
    d.spawn();
    let (ok, out) = submit(d.addrs[0], "ghost@remote.example", "will bounce");
    assert!(ok, "{out}");
    wait_until("a bounce in alice's INBOX", Duration::from_secs(20), || {
        !d.new_mail("alice", "example.com").is_empty()
    });
    let bounce = String::from_utf8_lossy(&d.new_mail("alice", "example.com")[0].1).into_owned();
    assert!(bounce.starts_with("Return-Path: <>\n"), "{bounce}");
    assert!(
        bounce.contains("Content-Type: message/delivery-status"),
        "{bounce}"
    );
    assert!(
        bounce.contains(
            "Final-Recipient: rfc822; ghost@remote.example\nAction: failed\nStatus: 5.3.0"
        ),
        "{bounce}"
    );
    assert!(bounce.contains("Subject: will bounce"), "{bounce}");
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_cli(&d, &["list"]).contains("-- 0 queued")
    });
    d.kill9();
    drop(hard);

    // 4xx after the data, and a drop after the final dot: both stay queued.
    for flags in [["-r", "."], ["-q", "."], ["-q", "DATA"]] {
        let s = Sink::start_with(d.dir.path(), &flags);
        set_relay_port(&d, s.port, false);
        d.spawn();
        let (ok, out) = submit(
            d.addrs[0],
            "later@remote.example",
            &format!("fault {}", flags[0]),
        );
        assert!(ok, "{out}");
        wait_until("a deferral", Duration::from_secs(20), || {
            queue_cli(&d, &["list"]).contains("1 deferred")
        });
        let list = queue_cli(&d, &["list"]);
        let id = list.split_whitespace().next().expect("id").to_owned();
        let show = queue_cli(&d, &["show", &id]);
        assert!(
            show.contains("pending   <later@remote.example> 4"),
            "{show}"
        );
        assert_eq!(
            queue_cli(&d, &["delete", &id]).trim(),
            format!("{id}: deleted")
        );
        d.kill9();
    }
}

fn relay_tls(port: u16, ca: Option<&Path>, passwd_file: &Path) -> String {
    let ca = ca
        .map(|c| format!("ca_file = \"{}\"\n", c.display()))
        .unwrap_or_default();
    format!(
        "[relay]\nhost = \"127.0.0.1\"\nport = {port}\nsasl_passwd = \"{}\"\n{ca}scan_interval_secs = 1\n",
        passwd_file.display()
    )
}

#[test]
fn relays_through_a_postfix_smarthost_with_verified_tls_and_sasl() {
    if !peer("postfix") || !peer("dovecot") || !peer("openssl") || !peer("swaks") {
        return;
    }
    let sh = common::smarthost::Smarthost::start();
    let passwd = sh.root().join("sasl_passwd");
    std::fs::write(
        &passwd,
        format!(
            "[127.0.0.1]:{} {}:{}\n",
            sh.port,
            common::smarthost::USER,
            common::smarthost::PASSWORD
        ),
    )
    .expect("passwd");

    // Good CA and password: relayed, once each, over TLS with AUTH.
    let d = Daemon::start_with(SUBMISSION, "", &relay_tls(sh.port, Some(&sh.ca), &passwd));
    for i in 0..3 {
        let (ok, out) = submit(
            d.addrs[0],
            "friend@remote.example",
            &format!("via smarthost {i}"),
        );
        assert!(ok, "{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sh.messages().len() < 3 {
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(sh.root().join("log/postfix.log")).unwrap_or_default();
            panic!(
                "not at the smarthost:\n{}\n{}\n--- smarthost log ---\n{log}",
                queue_cli(&d, &["list"]),
                d.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = sh.messages();
    assert_eq!(got.len(), 3);
    for i in 0..3 {
        let m = got
            .iter()
            .find(|m| m.contains(&format!("Subject: via smarthost {i}\n")))
            .expect("message");
        assert!(
            m.contains("(Authenticated sender: relayuser)") && m.contains("with ESMTPSA id"),
            "{m}"
        );
        assert!(m.contains("(using TLSv1.3"), "{m}");
        assert!(
            m.contains("by mx.example.com (Postern) with ESMTPSA"),
            "our own Received header travels: {m}"
        );
    }
    drop(d);

    // The wrong password: deferred (Postfix treats SASL failures as temporary too).
    let bad = sh.root().join("bad_passwd");
    std::fs::write(
        &bad,
        format!(
            "[127.0.0.1]:{} {}:wrong\n",
            sh.port,
            common::smarthost::USER
        ),
    )
    .expect("passwd");
    let d = Daemon::start_with(SUBMISSION, "", &relay_tls(sh.port, Some(&sh.ca), &bad));
    let (ok, out) = submit(d.addrs[0], "friend@remote.example", "wrong password");
    assert!(ok, "{out}");
    wait_until("a deferral", Duration::from_secs(20), || {
        queue_cli(&d, &["list"]).contains("1 deferred")
    });
    let id = queue_cli(&d, &["list"])
        .split_whitespace()
        .next()
        .expect("id")
        .to_owned();
    let show = queue_cli(&d, &["show", &id]);
    assert!(
        show.contains("SASL authentication failed") && show.contains("535"),
        "{show}"
    );
    drop(d);

    // A certificate we do not trust (no private CA configured): deferred, never sent.
    let d = Daemon::start_with(SUBMISSION, "", &relay_tls(sh.port, None, &passwd));
    let (ok, out) = submit(d.addrs[0], "friend@remote.example", "untrusted certificate");
    assert!(ok, "{out}");
    wait_until("a deferral", Duration::from_secs(20), || {
        queue_cli(&d, &["list"]).contains("1 deferred")
    });
    let id = queue_cli(&d, &["list"])
        .split_whitespace()
        .next()
        .expect("id")
        .to_owned();
    let show = queue_cli(&d, &["show", &id]);
    assert!(
        show.contains("TLS with 127.0.0.1:") && show.contains("failed"),
        "{show}"
    );
    assert_eq!(
        sh.messages().len(),
        3,
        "nothing sent over an unverified connection"
    );
}

#[test]
fn daily_cap_defers_and_expired_messages_bounce() {
    if !peer("smtp-sink") || !peer("swaks") {
        return;
    }
    let probe = tempfile::tempdir().expect("dir");
    let sink = Sink::start_with(probe.path(), &[]);
    let extra = format!("{}daily_limit = 2\n", relay_to(sink.port));
    let monitored =
        format!("{SUBMISSION}[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"http\"\n");
    let mut d = Daemon::start_with(&monitored, "", &extra);
    for i in 0..3 {
        let (ok, out) = submit(d.addrs[0], "friend@remote.example", &format!("capped {i}"));
        assert!(ok, "{out}");
        if i < 2 {
            wait_until("relayed", Duration::from_secs(20), || {
                sink.texts().len() > i
            });
        }
    }
    wait_until(
        "the third deferred by the cap",
        Duration::from_secs(20),
        || d.log_text().contains("daily relay limit of 2 reached"),
    );
    // The log line comes just before the queue file is rewritten: wait for the file.
    let next_in = |list: &str| -> u64 {
        list.split("next in ")
            .nth(1)
            .and_then(|r| r.split('s').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    wait_until("the deferral in the queue", Duration::from_secs(20), || {
        next_in(&queue_cli(&d, &["list"])) > 0
    });
    let list = queue_cli(&d, &["list"]);
    assert!(list.contains("-- 1 queued"), "{list}");
    let next = next_in(&list);
    assert!(
        next > 0 && next <= 86_400,
        "deferred to the next UTC day, not failed: {list}"
    );
    assert_eq!(sink.texts().len(), 2);
    // The monitoring listener shows the cap, today's count and the queue.
    let metrics = {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(d.addrs[2]).expect("metrics");
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("get");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    for line in [
        "postern_relay_daily_limit 2\n",
        "postern_relay_sent_today 2\n",
        "postern_queue_messages 1\n",
        "postern_deliveries_total{destination=\"relay\",result=\"sent\"} 2\n",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    d.kill9();

    // A message older than the queue lifetime (5 days) that fails again
    // is bounced to its sender with "delivery time expired".
    let list = queue_cli(&d, &["list"]);
    let id = list.split_whitespace().next().expect("id").to_owned();
    let env = d
        .dir
        .path()
        .join("mail/.postern-queue")
        .join(format!("{id}.env"));
    let text = std::fs::read_to_string(&env).expect("env");
    let old = text
        .lines()
        .map(|l| {
            if l.starts_with("created ") {
                "created 1000".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&env, old + "\n").expect("env");
    set_relay_port(&d, unreachable_port(), true);
    d.spawn();
    queue_cli(&d, &["retry", &id]);
    wait_until("the expiry bounce", Duration::from_secs(20), || {
        !d.new_mail("alice", "example.com").is_empty()
    });
    let bounce = String::from_utf8_lossy(&d.new_mail("alice", "example.com")[0].1).into_owned();
    assert!(
        bounce.contains("<friend@remote.example>: delivery time expired; last error:"),
        "{bounce}"
    );
    assert!(bounce.contains("Status: 4.4.7"), "{bounce}");
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_cli(&d, &["list"]).contains("-- 0 queued")
    });
}

/// Points the daemon's `[relay]` at `port` (for its next start), and with
/// `uncapped` drops the daily limit.
fn set_relay_port(d: &Daemon, port: u16, uncapped: bool) {
    let cfg = std::fs::read_to_string(&d.config).expect("cfg");
    let cfg: Vec<String> = cfg
        .lines()
        .filter(|l| !(uncapped && l.starts_with("daily_limit")))
        .map(|l| {
            if l.starts_with("port = ") {
                format!("port = {port}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&d.config, cfg.join("\n") + "\n").expect("cfg");
}

/// A bounce for a sender whose mailbox is full is dropped, as Postfix
/// drops a bounce it cannot deliver: the queue is left empty, and the
/// refused recipient is not sent the message again every few minutes.
#[test]
fn a_bounce_to_a_full_mailbox_is_dropped_not_retried() {
    if !peer("smtp-sink") || !peer("python3") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let hard = Sink::start_with(dir.path(), &["-f", "RCPT"]);
    let d = Daemon::start_with(
        SUBMISSION,
        "",
        &format!("{}[imap]\nquota_mib = 1\n", relay_to(hard.port)),
    );
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
s.starttls(context=ctx)
s.login("alice@example.com", "alice-pw")
# 1.1 MB: within the tenth of grace of an empty 1 MiB account, and then full.
s.sendmail("alice@example.com", ["alice@example.com"],
           b"Subject: fill\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100)
s.sendmail("alice@example.com", ["ghost@remote.example"], b"Subject: will bounce\r\n\r\nx\r\n")
s.quit()
print("sent")
"#,
        port = d.addrs[0].port()
    );
    assert_eq!(common::python(&script).trim(), "sent");
    wait_until("the bounce dropped", Duration::from_secs(20), || {
        d.log_text().contains("bounce to alice@example.com dropped")
    });
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_cli(&d, &["list"]).contains("-- 0 queued")
    });
    let log = d.log_text();
    assert!(
        log.contains("mailbox of alice@example.com is full"),
        "{log}"
    );
    // The quota's count of the account may have moved the fill to cur/.
    let inbox = d.dir.path().join("mail/example.com/alice");
    let files = |sub: &str| std::fs::read_dir(inbox.join(sub)).map_or(0, Iterator::count);
    assert_eq!(files("new") + files("cur"), 1, "only the fill");
}
