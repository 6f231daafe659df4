//! A message to several local mailboxes of which one fails (its folder is
//! unusable) while another's copy is durable: the client gets 250 (a 452
//! would make it send again and duplicate the durable copy), the failed
//! copy waits in the durable queue, and once the mailbox works again the
//! queue worker delivers it: each mailbox ends with exactly one copy.

mod common;

use common::{queue_cli, Client, Daemon};
use std::time::{Duration, Instant};

const SMTP: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n";

#[test]
fn a_failed_local_copy_beside_a_durable_one_is_acknowledged_and_retried_from_the_queue() {
    let mut d = Daemon::start(SMTP, "");
    // bob's mailbox folder is a plain file: every delivery to it fails.
    let bob = d.dir.path().join("mail/example.com/bob");
    let _ = std::fs::remove_dir_all(&bob);
    std::fs::create_dir_all(bob.parent().expect("parent")).expect("domain folder");
    std::fs::write(&bob, b"not a folder").expect("block bob");

    let done = send(
        &d,
        &["alice@example.com", "bob@example.com"],
        "X-Spam: Yes\r\nSubject: partial\r\n\r\nhello both\r\n",
    );
    assert!(done.starts_with("250 2.0.0 Ok: queued as "), "{done}");
    let id = done
        .trim_start_matches("250 2.0.0 Ok: queued as ")
        .trim()
        .to_owned();

    assert_eq!(
        d.new_mail("alice", "example.com").len(),
        1,
        "alice's copy is durable"
    );
    let listed = queue_cli(&d, &["list"]);
    assert!(
        listed.contains("pending bob@example.com"),
        "bob's copy waits in the queue:\n{listed}"
    );
    assert!(!listed.contains("alice@example.com"), "{listed}");

    // The worker's first attempt (woken at once) fails while bob's
    // mailbox is blocked; wait until it is recorded, so the retry below
    // follows a failure (a retry asked for during an attempt is kept too:
    // `Queue::settle`).
    common::wait_for_queue_listing(&d, "attempts 1");
    // The mailbox works again; the retry is made due and the worker scans
    // at start.
    std::fs::remove_file(&bob).expect("unblock bob");
    let _ = queue_cli(&d, &["retry", "all"]);
    let mut child = d.term();
    let _ = child.wait();
    d.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.new_mail("bob", "example.com").is_empty() {
        assert!(
            Instant::now() < deadline,
            "bob's copy was never delivered from the queue:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let bobs = d.new_mail("bob", "example.com");
    assert_eq!(bobs.len(), 1);
    let text = String::from_utf8_lossy(&bobs[0].1);
    assert!(
        text.starts_with(
            "Return-Path: <sender@example.net>\nDelivered-To: bob@example.com\nReceived: "
        ),
        "{text}"
    );
    assert!(text.contains("hello both"), "{text}");
    // The X-Spam field the sender wrote is gone from the copy kept for
    // retry, as from the one stored at once; ours is there.
    assert!(!text.contains("X-Spam: Yes"), "{text}");
    assert!(text.contains("X-Spam-Status: No"), "{text}");
    let alices = d.new_mail("alice", "example.com");
    assert!(!String::from_utf8_lossy(&alices[0].1).contains("X-Spam: Yes"));
    assert!(
        text.contains(&format!(" id {id};")),
        "the trace names the acknowledged id {id}: {text}"
    );
    assert_eq!(
        d.new_mail("alice", "example.com").len(),
        1,
        "alice got no second copy"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue_cli(&d, &["list"]).contains("bob@example.com") {
        assert!(
            Instant::now() < deadline,
            "the queue entry was never removed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon with `fwd@example.com` leading to alice's mailbox and to an
/// outside address (a forward, queued for a relay nobody answers on), and
/// alice's mailbox folder a plain file unless `alice_works`.
fn forwarding_daemon(alice_works: bool) -> Daemon {
    assert!(
        std::net::TcpStream::connect("127.0.0.1:1").is_err(),
        "something listens on 127.0.0.1:1"
    );
    let d = Daemon::start_with(
        SMTP,
        "fwd@example.com alice@example.com,friend@remote.example\n",
        "[relay]\nhost = \"127.0.0.1\"\nport = 1\nrequire_tls = false\nscan_interval_secs = 3600\n",
    );
    if !alice_works {
        let alice = d.dir.path().join("mail/example.com/alice");
        let _ = std::fs::remove_dir_all(&alice);
        std::fs::create_dir_all(alice.parent().expect("parent")).expect("domain folder");
        std::fs::write(&alice, b"not a folder").expect("block alice");
    }
    d
}

/// One message to fwd@example.com; the reply to the end of DATA.
fn send_to_fwd(d: &Daemon) -> String {
    send(
        d,
        &["fwd@example.com"],
        "Subject: forwarded\r\n\r\nhello\r\n",
    )
}

/// Sends `text` (CRLF lines) from sender@example.net to `rcpts`; the
/// reply to the end of DATA.
fn send(d: &Daemon, rcpts: &[&str], text: &str) -> String {
    let mut c = Client::connect(d.addrs[0]).expect("connect");
    assert!(c.reply().expect("greeting").starts_with("220 "));
    assert!(c
        .cmd("EHLO client.example.net")
        .expect("ehlo")
        .starts_with("250"));
    assert!(c
        .cmd("MAIL FROM:<sender@example.net>")
        .expect("mail")
        .starts_with("250"));
    for r in rcpts {
        let reply = c.cmd(&format!("RCPT TO:<{r}>")).expect("rcpt");
        assert!(reply.starts_with("250"), "{reply}");
    }
    assert!(c.cmd("DATA").expect("data").starts_with("354"));
    let done = c.cmd(&format!("{text}.")).expect("end of data");
    let _ = c.cmd("QUIT");
    done
}

#[test]
fn a_queued_forward_is_durable_so_a_failed_local_copy_is_kept_not_refused() {
    let d = forwarding_daemon(false);
    let done = send_to_fwd(&d);
    // The forward is in the queue: a 452 would have the client send again
    // and queue the forward twice.
    assert!(done.starts_with("250 "), "{done}\n{}", d.log_text());
    let listed = queue_cli(&d, &["list"]);
    assert_eq!(
        listed.matches("friend@remote.example").count(),
        1,
        "{listed}"
    );
    assert!(listed.contains("pending alice@example.com"), "{listed}");
}

#[test]
fn a_queue_that_cannot_be_written_leaves_nothing_behind_its_452() {
    let d = forwarding_daemon(true);
    // The queue folder becomes a plain file: no entry can be written.
    let queue = d.dir.path().join("mail/.postern-queue");
    std::fs::rename(&queue, d.dir.path().join("queue-away")).expect("move the queue");
    std::fs::write(&queue, b"not a folder").expect("block the queue");
    let done = send_to_fwd(&d);
    assert!(done.starts_with("452 "), "{done}");
    // alice's copy was not stored either: the client's retry must not
    // give her a second one.
    assert!(d.new_mail("alice", "example.com").is_empty());
}

/// A copy whose mailbox has no room left (RCPT found it under its
/// quota; the message would bring it more than a tenth over) waits in
/// the queue as a full mailbox, `452 4.2.2`, beside the copy delivered.
#[test]
fn a_copy_for_a_full_mailbox_waits_in_the_queue_as_full() {
    let d = Daemon::start_with(SMTP, "", "[imap]\nquota_mib = 1\n");
    // bob has used 1,000,000 of his 1,048,576 bytes.
    let cur = d.dir.path().join("mail/example.com/bob/cur");
    std::fs::create_dir_all(&cur).expect("bob's cur/");
    for sub in ["new", "tmp"] {
        std::fs::create_dir_all(cur.with_file_name(sub)).expect("bob's folders");
    }
    let mut old = b"Subject: old\n\n".to_vec();
    old.resize(1_000_000, b'x');
    std::fs::write(cur.join("1700000000.M1P1.host,S=1000000:2,S"), old).expect("bob's mail");
    let mut text = "Subject: sizeable\r\n\r\n".to_owned();
    for _ in 0..200 {
        text.push_str(&"y".repeat(998));
        text.push_str("\r\n");
    }
    let done = send(&d, &["alice@example.com", "bob@example.com"], &text);
    assert!(done.starts_with("250 2.0.0 Ok: queued as "), "{done}");
    assert_eq!(d.new_mail("alice", "example.com").len(), 1);
    common::wait_for_queue_listing(&d, "attempts 1");
    let listed = queue_cli(&d, &["list"]);
    let id = listed
        .lines()
        .find(|l| l.contains("bob@example.com"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("bob's copy is queued:\n{listed}"))
        .to_owned();
    let shown = queue_cli(&d, &["show", &id]);
    assert!(
        shown.contains(
            "<bob@example.com> 452 4.2.2 mailbox full: mailbox of bob@example.com is full"
        ),
        "{shown}"
    );
}
