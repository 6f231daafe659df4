//! Two `postern` daemon processes on one PostgreSQL cluster and one S3
//! bucket (moto), as two replicas of a deployment: mail accepted by SMTP
//! on replica A wakes an IMAP IDLE on replica B, which fetches the body;
//! a STORE on B wakes an IDLE on A and is seen by a new SELECT on A;
//! killing A mid-delivery loses no acknowledged message; spam moved into
//! Junk on A files the next similar spam through B into Junk; and with
//! the database stopped under a daemon, its failures are logged and
//! answered NO / 4xx. The waits are bounded reads (socket timeouts) and
//! bounded polls, never sleeps as synchronisation.

mod common;

use common::pg::{PgCluster, S3Server};
use common::{Client, Daemon};

/// SMTP (MX, plain), then IMAP allowing LOGIN without TLS (loopback).
const LISTENERS: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"none\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"none\"\nallow_plaintext_auth = true\n";

/// The store settings of the replicas: PostgreSQL at `url` (with the
/// `[postgres]` lines `postgres_extra`), the bucket on `s3`.
fn store_toml(url: &str, postgres_extra: &str, s3: &S3Server, secret: &std::path::Path) -> String {
    // IDLE looks at the store by itself only hourly: what wakes it in
    // this test is the change notification.
    format!(
        "[imap]\nidle_poll_secs = 3600\n[store]\nbackend = \"postgres\"\n\
         [postgres]\nurl = \"{url}\"\nmax_connections = 4\n{postgres_extra}\
         [s3]\nendpoint = \"{}\"\nbucket = \"postern-replicas\"\naccess_key = \"testing\"\n\
         secret_key_file = \"{}\"\n",
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

/// A PostgreSQL cluster, an S3 server, the folder of the bucket's
/// secret and `N` daemons on both (None: a peer is missing, skip).
fn replicas<const N: usize>() -> Option<(PgCluster, S3Server, tempfile::TempDir, [Daemon; N])> {
    let c = PgCluster::start()?;
    let s3 = S3Server::start()?;
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("s3-secret");
    std::fs::write(&secret, "testing\n").unwrap();
    let extra = store_toml(&c.url(), "", &s3, &secret);
    let daemons = std::array::from_fn(|_| Daemon::start_with(LISTENERS, "", &extra));
    Some((c, s3, secrets, daemons))
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
    let Some((_c, _s3, _secrets, [a, b])) = replicas() else {
        return;
    };
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

/// The body of message `t`-`i` of the kill test: about 4 KiB, its number
/// in the Subject and on its last line, so a truncated copy shows.
fn numbered(t: usize, i: usize) -> String {
    let mut s = format!(
        "From: <sender@example.net>\r\nTo: <alice@example.com>\r\nSubject: kill {t}-{i}\r\n\r\n"
    );
    for l in 0..60 {
        s.push_str(&format!(
            "line {l:02} of {t}-{i} ........................................................\r\n"
        ));
    }
    s.push_str(&format!("end of kill {t}-{i}\r\n"));
    s
}

/// One SMTP client of the kill test: numbered messages to alice through
/// one connection, each recorded once it got its 250; stops at the first
/// error (the replica was killed) or after `max`.
fn sender(
    addr: std::net::SocketAddr,
    t: usize,
    max: usize,
    acked: &std::sync::Mutex<Vec<(usize, usize)>>,
) -> Result<(), String> {
    let mut smtp = Client::connect(addr).map_err(|e| e.to_string())?;
    let check = |r: std::io::Result<String>, want: &str| -> Result<(), String> {
        let r = r.map_err(|e| e.to_string())?;
        if r.starts_with(want) {
            Ok(())
        } else {
            Err(r)
        }
    };
    check(smtp.reply(), "220")?;
    check(smtp.cmd("EHLO client.example.net"), "250")?;
    for i in 0..max {
        check(smtp.cmd("MAIL FROM:<sender@example.net>"), "250")?;
        check(smtp.cmd("RCPT TO:<alice@example.com>"), "250")?;
        check(smtp.cmd("DATA"), "354")?;
        smtp.send(numbered(t, i).as_bytes())
            .map_err(|e| e.to_string())?;
        check(smtp.cmd("."), "250")?;
        acked.lock().map_err(|e| e.to_string())?.push((t, i));
    }
    Ok(())
}

#[test]
fn killing_a_replica_mid_delivery_loses_no_acknowledged_message() {
    let Some((_c, _s3, _secrets, [mut a, b])) = replicas() else {
        return;
    };
    let (a_smtp, b_imap) = (a.addrs[0], b.addrs[1]);

    // Four clients send to A; A is killed once 40 messages got their 250
    // (the clients are then in the middle of their next ones).
    const CLIENTS: usize = 4;
    const MAX: usize = 500;
    const KILL_AFTER: usize = 40;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let acked = acked.clone();
            std::thread::spawn(move || sender(a_smtp, t, MAX, &acked))
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let n = acked.lock().unwrap().len();
        if n >= KILL_AFTER {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {n} messages acknowledged in 180 s:\n{}",
            a.log_text()
        );
        assert!(
            !threads.iter().all(|h| h.is_finished()),
            "every client stopped after {n} messages:\n{}",
            a.log_text()
        );
        // Polling the clients' progress (bounded), not a synchronisation.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    a.kill9();
    let mut ended_by_kill = 0;
    for h in threads {
        if h.join().unwrap().is_err() {
            ended_by_kill += 1;
        }
    }
    assert_eq!(
        ended_by_kill, CLIENTS,
        "every client was cut off by the kill"
    );
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} messages acknowledged before the kill", acked.len());

    // Replica B sees every acknowledged message exactly once, and every
    // message it shows whole (an unacknowledged one may be there or not).
    let mut imap_b = login(b_imap);
    let sel = imap(&mut imap_b, "s", "SELECT INBOX");
    let exists: usize = sel
        .iter()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .unwrap_or_else(|| panic!("{sel:#?}"));
    assert!(exists >= acked.len(), "{exists} < {}", acked.len());
    let mut seen = std::collections::HashMap::<(usize, usize), usize>::new();
    for n in 1..=exists {
        let text = imap(&mut imap_b, &format!("f{n}"), &format!("FETCH {n} BODY[]")).join("\r\n");
        let subject = text
            .split("Subject: kill ")
            .nth(1)
            .and_then(|r| r.split("\r\n").next())
            .unwrap_or_else(|| panic!("message {n} without its subject: {text}"));
        let (t, i) = subject
            .split_once('-')
            .and_then(|(t, i)| Some((t.parse().ok()?, i.parse().ok()?)))
            .unwrap_or_else(|| panic!("message {n}: subject {subject}"));
        let whole = numbered(t, i);
        let body = whole.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(
            text.contains(body.trim_end()),
            "message {n} ({t}-{i}) is not whole: {text}"
        );
        *seen.entry((t, i)).or_default() += 1;
    }
    for m in &acked {
        assert_eq!(seen.get(m), Some(&1), "acknowledged {m:?} on B: {seen:?}");
    }
    for (m, count) in &seen {
        assert_eq!(*count, 1, "{m:?} stored {count} times");
    }
    eprintln!(
        "B holds {exists} messages: {} acknowledged, {} delivered without an acknowledgement",
        acked.len(),
        exists - acked.len()
    );
}

/// The lines up to and with the reply tagged `tag` (whatever it says).
fn tagged(c: &mut Client, tag: &str, cmd: &str) -> Vec<String> {
    c.send(format!("{tag} {cmd}\r\n").as_bytes()).unwrap();
    let mut lines = Vec::new();
    loop {
        let l = c
            .line()
            .unwrap_or_else(|e| panic!("{cmd}: {e} after {lines:#?}"));
        let done = l.starts_with(&format!("{tag} "));
        lines.push(l);
        if done {
            return lines;
        }
        assert!(lines.len() < 1000, "{cmd}: {lines:#?}");
    }
}

/// One message to alice through `addr`: the first reply that is not 2xx
/// or 3xx, or the final reply.
fn deliver_once(addr: std::net::SocketAddr, subject: &str, body: &str) -> String {
    let mut smtp = Client::connect(addr).unwrap();
    assert!(smtp.reply().unwrap().starts_with("220"));
    let data = format!(
        "From: <sender@example.net>\r\nTo: <alice@example.com>\r\nSubject: {subject}\r\n\r\n{body}\r\n."
    );
    for cmd in [
        "EHLO client.example.net",
        "MAIL FROM:<sender@example.net>",
        "RCPT TO:<alice@example.com>",
        "DATA",
        data.as_str(),
    ] {
        let r = smtp.cmd(cmd).unwrap();
        if !(r.starts_with('2') || r.starts_with('3')) || cmd == data {
            let _ = smtp.cmd("QUIT");
            return r;
        }
    }
    unreachable!("the loop returns at the message's end")
}

/// Polls `d`'s log (bounded: 30 s) until it contains `what`.
fn log_shows(d: &Daemon, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !d.log_text().contains(what) {
        assert!(
            std::time::Instant::now() < deadline,
            "the log lacks {what:?}:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_store_failure_is_logged_and_refused() {
    let Some((c, _s3, _secrets, [a])) = replicas() else {
        return;
    };
    let accepted = deliver_once(a.addrs[0], "before", "the database is up");
    assert!(accepted.starts_with("250"), "{accepted}");
    let mut session = login(a.addrs[1]);
    imap(&mut session, "s", "SELECT INBOX");

    // The database goes away under the running daemon.
    c.stop();
    let status = tagged(&mut session, "t", "STATUS INBOX (MESSAGES)");
    let last = status.last().cloned().unwrap_or_default();
    assert!(last.starts_with("t NO"), "{status:#?}");
    log_shows(
        &a,
        "mailbox store: STATUS \"INBOX\" of alice@example.com failed: postgres",
    );
    let refused = deliver_once(a.addrs[0], "after", "the database is down");
    assert!(refused.starts_with('4'), "{refused}");
    log_shows(&a, "local delivery to alice@example.com failed");
    let log = a.log_text();
    assert!(!log.contains("the database is down"), "no contents: {log}");
    assert!(!log.contains("alice-pw"), "no passwords: {log}");
}

/// Python helpers: mail to alice through an SMTP port, an IMAP session
/// (plain LOGIN on loopback), a search by subject.
fn python_prelude() -> &'static str {
    r#"
import imaplib, smtplib, re, email.utils
def send(port, subject, body):
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    msg = ("From: sender@example.net\r\nTo: alice@example.com\r\nSubject: " + subject + "\r\n"
           + "Date: " + email.utils.formatdate() + "\r\nMessage-ID: <" + re.sub(r"\W", "", subject) + "@example.net>\r\n"
           + "\r\n" + body + "\r\n")
    try:
        s.sendmail("sender@example.net", ["alice@example.com"], msg.encode())
    finally:
        s.quit()
def imap(port):
    b = imaplib.IMAP4("127.0.0.1", port)
    typ, _ = b.login("alice@example.com", "alice-pw"); assert typ == "OK"
    return b
def find(b, folder, subject):
    typ, _ = b.select(folder); assert typ == "OK", folder
    typ, data = b.uid("SEARCH", None, "SUBJECT", '"' + subject + '"'); assert typ == "OK"
    return data[0].decode().split()
spam = "Cheap replica watches and designer handbags, huge discount offer, click now, limited stock, order today and win a bonus gift"
ham = "Here are the notes of the project meeting: agenda for the quarterly review, budget figures, and the action items for next week"
"#
}

#[test]
fn junk_learned_on_one_replica_files_the_next_spam_on_the_other() {
    if !common::peer("python3") {
        return;
    }
    let Some((_c, _s3, _secrets, [a, b])) = replicas() else {
        return;
    };
    let script = format!(
        r#"{prelude}
(a_smtp, a_imap, b_smtp, b_imap) = ({}, {}, {}, {})
# B scores a first message with alice's (untrained) classifier: it keeps a copy.
send(b_smtp, "probe one offer", spam + " probe")
ia = imap(a_imap)
assert find(ia, "INBOX", "probe one") != [], "untrained: INBOX"
for i in range(10):
    send(a_smtp, "offer number %d" % i, spam + " variant %d" % i)
    send(b_smtp, "meeting notes %d" % i, ham + " variant %d" % i)
# On A: the spam moved into Junk, the ham marked $NotJunk (kept).
uids = find(ia, "INBOX", "offer number")
assert len(uids) == 10, uids
typ, _ = ia.uid("MOVE", ",".join(uids), "Junk"); assert typ == "OK"
uids = find(ia, "INBOX", "meeting notes")
assert len(uids) == 10, uids
typ, _ = ia.uid("STORE", ",".join(uids), "+FLAGS", "($NotJunk)"); assert typ == "OK"
# At once, through B: the next similar spam lands in Junk, ham in INBOX.
send(b_smtp, "probe two offer", spam + " probe two")
send(b_smtp, "meeting notes late", ham + " late")
ib = imap(b_imap)
assert find(ib, "INBOX", "probe two") == [], "trained on A: not in B's INBOX"
assert len(find(ib, "Junk", "probe two")) == 1, "in Junk on B"
assert len(find(ia, "Junk", "probe two")) == 1, "in Junk on A"
assert find(ib, "INBOX", "meeting notes late") != [], "ham in INBOX"
print("learned across replicas")
"#,
        a.addrs[0].port(),
        a.addrs[1].port(),
        b.addrs[0].port(),
        b.addrs[1].port(),
        prelude = python_prelude()
    );
    assert_eq!(
        common::python(&script).trim(),
        "learned across replicas",
        "A:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    let log = a.log_text();
    assert!(
        log.contains("learned 10 message(s) as Spam; now 10 spam, 0 ham"),
        "{log}"
    );
    assert!(
        log.contains("learned 10 message(s) as Ham; now 10 spam, 10 ham"),
        "{log}"
    );
}

#[test]
fn a_replica_reaches_the_database_over_verified_tls() {
    let Some(c) = PgCluster::start_tls() else {
        return;
    };
    let Some(s3) = S3Server::start() else { return };
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("s3-secret");
    std::fs::write(&secret, "testing\n").unwrap();
    let ca = secrets.path().join("pg-ca.crt");
    std::fs::write(&ca, c.ca_pem().0).unwrap();
    let extra = store_toml(
        &format!("{} sslmode=require", c.url()),
        &format!("ca_file = \"{}\"\n", ca.display()),
        &s3,
        &secret,
    );
    assert!(extra.contains("sslmode=require") && extra.contains("ca_file"));
    let d = Daemon::start_with(LISTENERS, "", &extra);
    let accepted = deliver_once(d.addrs[0], "over tls", "through a verified connection");
    assert!(accepted.starts_with("250"), "{accepted}");
    let (all, tls) = c.postern_tls_connections();
    assert!(
        all >= 2 && tls == all,
        "{tls} of {all} connections over TLS"
    );
}
