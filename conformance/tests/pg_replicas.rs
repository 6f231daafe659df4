//! Two `postern` daemon processes on one PostgreSQL cluster and one S3
//! bucket (moto), as two replicas of a deployment: mail accepted by SMTP
//! on replica A wakes an IMAP IDLE on replica B, which fetches the body;
//! a STORE on B wakes an IDLE on A and is seen by a new SELECT on A. The
//! waits are bounded reads (socket timeouts), never sleeps.

mod common;

use common::pg::{PgCluster, S3Server};
use common::{Client, Daemon};

/// SMTP (MX, plain), then IMAP allowing LOGIN without TLS (loopback).
const LISTENERS: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"none\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"none\"\nallow_plaintext_auth = true\n";

fn store_toml(c: &PgCluster, s3: &S3Server, secret: &std::path::Path) -> String {
    // IDLE looks at the store by itself only hourly: what wakes it in
    // this test is the change notification.
    format!(
        "[imap]\nidle_poll_secs = 3600\n[store]\nbackend = \"postgres\"\n\
         [postgres]\nurl = \"{}\"\nmax_connections = 4\n\
         [s3]\nendpoint = \"{}\"\nbucket = \"postern-replicas\"\naccess_key = \"testing\"\n\
         secret_key_file = \"{}\"\n",
        c.url(),
        s3.endpoint,
        secret.display()
    )
}

/// Sends an IMAP command under `tag`; the lines up to and with the
/// tagged reply (which must be OK).
fn imap(c: &mut Client, tag: &str, cmd: &str) -> Vec<String> {
    c.send(format!("{tag} {cmd}\r\n").as_bytes()).unwrap();
    until(c, &format!("{tag} "), &format!("{tag} {cmd}"))
}

/// Lines until one starts with `prefix` (bounded by the socket's read
/// timeout: a silent server fails the test).
fn until(c: &mut Client, prefix: &str, what: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = c
            .line()
            .unwrap_or_else(|e| panic!("{what}: {e} after {lines:#?}"));
        let done = l.starts_with(prefix);
        lines.push(l);
        if done {
            let last = lines.last().map(String::as_str).unwrap_or("");
            if prefix.ends_with(' ') && !prefix.starts_with(['+', '*']) {
                assert!(last.contains(" OK"), "{what}: {lines:#?}");
            }
            return lines;
        }
        assert!(lines.len() < 1000, "{what}: {lines:#?}");
    }
}

fn login(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr).unwrap();
    let greeting = c.line().unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    imap(&mut c, "l", "LOGIN alice@example.com alice-pw");
    c
}

#[test]
fn two_replicas_share_mail_idle_and_flags() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("s3-secret");
    std::fs::write(&secret, "testing\n").unwrap();
    let extra = store_toml(&c, &s3, &secret);
    let a = Daemon::start_with(LISTENERS, "", &extra);
    let b = Daemon::start_with(LISTENERS, "", &extra);
    for d in [&a, &b] {
        assert!(
            d.log_text().contains("store: PostgreSQL"),
            "{}",
            d.log_text()
        );
    }
    let (a_smtp, a_imap, b_imap) = (a.addrs[0], a.addrs[1], b.addrs[1]);

    // B idles on alice's INBOX (the account is made on first use).
    let mut idler = login(b_imap);
    let sel = imap(&mut idler, "s", "SELECT INBOX");
    assert!(sel.iter().any(|l| l == "* 0 EXISTS"), "{sel:#?}");
    idler.send(b"i IDLE\r\n").unwrap();
    until(&mut idler, "+ ", "IDLE");

    // Mail for alice through replica A's SMTP.
    let mut smtp = Client::connect(a_smtp).unwrap();
    assert!(smtp.reply().unwrap().starts_with("220"));
    assert!(smtp
        .cmd("EHLO client.example.net")
        .unwrap()
        .starts_with("250"));
    assert!(smtp
        .cmd("MAIL FROM:<sender@example.net>")
        .unwrap()
        .starts_with("250"));
    assert!(smtp
        .cmd("RCPT TO:<alice@example.com>")
        .unwrap()
        .starts_with("250"));
    assert!(smtp.cmd("DATA").unwrap().starts_with("354"));
    let accepted = smtp
        .cmd("From: <sender@example.net>\r\nTo: <alice@example.com>\r\nSubject: across replicas\r\n\r\nthe marker 7f3a\r\n.")
        .unwrap();
    assert!(accepted.starts_with("250"), "{accepted}");
    let sent = std::time::Instant::now();
    smtp.cmd("QUIT").unwrap();

    // B's IDLE hears it (NOTIFY from A's commit), then fetches the body.
    let heard = until(&mut idler, "* 1 EXISTS", "EXISTS on B after delivery on A");
    eprintln!("B heard {heard:?} {:?} after A's 250", sent.elapsed());
    idler.send(b"DONE\r\n").unwrap();
    until(&mut idler, "i ", "IDLE done");
    let body = imap(&mut idler, "f", "FETCH 1 BODY[]");
    let text = body.join("\n");
    assert!(text.contains("the marker 7f3a"), "{text}");
    assert!(text.contains("Subject: across replicas"), "{text}");

    // A idles too; B flags the message; A's IDLE hears the FETCH.
    let mut watcher = login(a_imap);
    imap(&mut watcher, "s", "SELECT INBOX");
    watcher.send(b"w IDLE\r\n").unwrap();
    until(&mut watcher, "+ ", "IDLE on A");
    imap(&mut idler, "t", "STORE 1 +FLAGS (\\Flagged)");
    let stored = std::time::Instant::now();
    let heard = until(&mut watcher, "* 1 FETCH", "FETCH on A after STORE on B");
    eprintln!("A heard {heard:?} {:?} after B's STORE", stored.elapsed());
    let last = heard.last().cloned().unwrap_or_default();
    assert!(last.contains("\\Flagged"), "{heard:#?}");
    watcher.send(b"DONE\r\n").unwrap();
    until(&mut watcher, "w ", "IDLE done on A");

    // A new session on A sees the flag at SELECT.
    let mut fresh = login(a_imap);
    imap(&mut fresh, "s", "SELECT INBOX");
    let flags = imap(&mut fresh, "f", "FETCH 1 FLAGS").join("\n");
    assert!(flags.contains("\\Flagged"), "{flags}");
    for d in [&a, &b] {
        assert!(!d.log_text().contains("LISTEN lost"), "{}", d.log_text());
    }
}
