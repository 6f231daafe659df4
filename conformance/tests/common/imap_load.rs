//! The IMAP benches' data and client, shared so that their figures compare
//! the same work: a Maildir of alice's INBOX (and an empty Drafts, and a
//! one-message INBOX for bob) named as an MTA names its files, and the
//! Python imaplib prelude with the mixed workload's commands.

use std::path::Path;

/// Writes `<root>/example.com/alice/` with `messages` messages in `cur/`
/// (a third of them `\Seen`) and a `.Drafts` folder, and
/// `<root>/example.com/bob/` with one.
pub fn make_maildir(root: &Path, messages: usize) {
    let inbox = root.join("example.com/alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(inbox.join(sub)).expect("dir");
        // Drafts, for the APPENDs (Dovecot does not create it by itself).
        std::fs::create_dir_all(inbox.join(".Drafts").join(sub)).expect("dir");
    }
    std::fs::write(inbox.join(".Drafts/maildirfolder"), b"").expect("marker");
    // Bob, whose NOOPs the imap bench times while alice is busy.
    let bob = root.join("example.com/bob");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(bob.join(sub)).expect("dir");
    }
    let note = "Subject: hello bob\n\nhi\n";
    std::fs::write(bob.join("cur").join(maildir_name(1, note.len(), "S")), note).expect("write");
    for i in 0..messages {
        let body = format!(
            "Return-Path: <s{i}@example.net>\nDate: Wed, 25 Nov 2026 06:{:02}:00 +0000\nFrom: Sender {i} <s{i}@example.net>\nTo: alice@example.com\nSubject: message number {i}\nMessage-ID: <{i}@example.net>\nContent-Type: text/plain; charset=utf-8\n\n{}\n",
            i % 60,
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n".repeat(30)
        );
        let flags = if i % 3 == 0 { "S" } else { "" };
        std::fs::write(
            inbox.join("cur").join(maildir_name(i, body.len(), flags)),
            body,
        )
        .expect("write");
    }
}

/// A realistic Maildir file name for the `i`th delivery, as an MTA writes
/// it (`time.MusecPpid.host,S=size:2,flags`): deliveries minutes apart,
/// microseconds and process ids that vary. (Synthetic names sharing a long
/// prefix made Dovecot's file name comparison most of its run time.)
fn maildir_name(i: usize, size: usize, flags: &str) -> String {
    // A fixed xorshift sequence: varied, and the same in every run.
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let time = 1_700_000_000 + (i as u64) * 97 + x % 60;
    let usec = (x >> 8) % 1_000_000;
    let pid = 1000 + (x >> 32) % 60_000;
    format!("{time}.M{usec}P{pid}.mail.example.com,S={size}:2,{flags}")
}

/// The Python start of an IMAP bench client: `conn(port)` logs alice in
/// over IMAPS (no certificate check), and `command(m, kind, k)` runs one
/// command of the mixed workload (`kind` 0 to 4, in the order of `KINDS`;
/// `k` a UID) and returns imaplib's answer.
pub const PY_PRELUDE: &str = r#"
import imaplib, ssl, time, threading, random, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def conn(port, user="alice@example.com", pw="alice-pw"):
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx); m.login(user, pw); return m
KINDS = ("select", "fetch", "search", "store", "append")
def command(m, kind, k):
    if kind == 0: return m.select("INBOX")
    if kind == 1: return m.uid("FETCH", str(k), "(FLAGS BODY.PEEK[HEADER])")
    if kind == 2: return m.uid("SEARCH", "UNSEEN", "UID", "%d:%d" % (k, k + 50))
    if kind == 3: return m.uid("STORE", str(k), "+FLAGS", "(\\Flagged)")
    # Each draft its own (a content-addressed store keeps equal ones once).
    return m.append("Drafts", None, None, b"Subject: draft %d\r\n\r\nx\r\n" % random.getrandbits(60))
"#;
