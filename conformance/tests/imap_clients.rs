//! IMAP with real clients on the daemon: Python's imaplib, `curl imap://`
//! and mbsync log in on a plain port that allows it
//! (`allow_plaintext_auth`), imaplib is refused on one that does not;
//! imaplib runs THREAD (REFERENCES and ORDEREDSUBJECT) on a realistic
//! reply chain and the searches Roundcube 1.6 sends for non-ASCII words
//! (literals, `CHARSET UTF-8`) against encoded subjects, senders and
//! bodies; clients see `.` as the hierarchy separator on a Dovecot-style
//! Maildir++ tree; and two live connections on one Maildir (one appends,
//! stores and expunges while the other IDLEs, then fetches) agree.
//!
//! The exchanges are printed (`cargo test --test imap_clients --
//! --nocapture`): `C:` what the client sent, `S:` what the server said.

mod common;

use common::{peer, tool, Daemon};
use std::net::SocketAddr;
use std::process::Command;

/// Plain IMAP allowing LOGIN, plain IMAP refusing it (the default),
/// IMAPS.
const LISTENERS: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"none\"\nallow_plaintext_auth = true\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"none\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n";

/// Python that prints every line imaplib exchanges (`C:` sent, `S:`
/// received; literal bodies from the server are not lines and are left
/// out), and `raw(m, bytes)`: a command sent as given (literals and all)
/// under a new tag, returning the untagged lines and the tagged one.
const TRACED: &str = r#"
import imaplib, re, sys
class T(imaplib.IMAP4):
    def send(self, data):
        for l in data.split(b"\r\n"):
            if l:
                print("C:", l.decode("utf-8", "replace"))
        super().send(data)
    def readline(self):
        l = super().readline()
        print("S:", l.decode("utf-8", "replace").rstrip("\r\n"))
        return l
def raw(m, cmd):
    tag = m._new_tag()
    m.send(tag + b" " + cmd + b"\r\n")
    untagged = []
    while True:
        l = m.readline()
        if l.startswith(tag + b" "):
            return untagged, l
        untagged.append(l)
def uids(untagged):
    for l in untagged:
        if l.startswith(b"* SEARCH"):
            return sorted(int(x) for x in l.split()[2:])
    raise AssertionError(untagged)
"#;

/// Runs a script after [`TRACED`]; prints its exchange; fails the test
/// unless it succeeds; returns its output.
fn traced(name: &str, script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{TRACED}{script}"))
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("---- {name} ----\n{stdout}");
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn daemon() -> (Daemon, SocketAddr, SocketAddr, SocketAddr) {
    let d = Daemon::start(LISTENERS, "");
    let (open, closed, imaps) = (d.addrs[0], d.addrs[1], d.addrs[2]);
    (d, open, closed, imaps)
}

#[test]
fn imaplib_curl_and_mbsync_log_in_on_a_plain_port_that_allows_it() {
    if !peer("python3") || !peer("curl") || !peer("mbsync") {
        return;
    }
    let (d, open, closed, _) = daemon();
    // imaplib: LOGIN without TLS, then a message to read back.
    let out = traced(
        "imaplib, allow_plaintext_auth = true",
        &format!(
            r#"
m = T("127.0.0.1", {port})
assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities, m.capabilities
typ, _ = m.login("alice@example.com", "alice-pw"); assert typ == "OK", typ
typ, _ = m.append("INBOX", None, None, b"Subject: over plain IMAP\r\n\r\nread me back\r\n"); assert typ == "OK", typ
m.logout()
print("imaplib logged in")
"#,
            port = open.port()
        ),
    );
    assert!(out.contains("imaplib logged in"), "{out}");

    // With the setting off (the default), imaplib is refused.
    let out = traced(
        "imaplib, allow_plaintext_auth = false",
        &format!(
            r#"
m = T("127.0.0.1", {port})
assert "LOGINDISABLED" in m.capabilities and "AUTH=PLAIN" not in m.capabilities, m.capabilities
try:
    m.login("alice@example.com", "alice-pw")
    print("logged in?!")
except imaplib.IMAP4.error as e:
    print("refused:", e)
"#,
            port = closed.port()
        ),
    );
    assert!(out.contains("refused:"), "{out}");
    assert!(out.contains("PRIVACYREQUIRED"), "{out}");

    // curl reads the message back over imap:// (it picks AUTHENTICATE
    // PLAIN from the capabilities).
    let curl = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-u",
            "alice@example.com:alice-pw",
        ])
        .arg(format!("imap://127.0.0.1:{}/INBOX;UID=1", open.port()))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&curl.stdout);
    println!("---- curl imap:// ----\n{body}");
    assert!(
        curl.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(body.contains("read me back"), "{body}");
    let refused = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-u",
            "alice@example.com:alice-pw",
        ])
        .arg(format!("imap://127.0.0.1:{}/INBOX;UID=1", closed.port()))
        .output()
        .expect("curl");
    assert!(
        !refused.status.success(),
        "curl logged in with LOGINDISABLED"
    );

    // mbsync pulls INBOX over the plain port.
    let local = d.dir.path().join("local");
    std::fs::create_dir_all(&local).expect("local");
    let cfg = d.dir.path().join("mbsyncrc");
    std::fs::write(
        &cfg,
        format!(
            "IMAPAccount postern\nHost 127.0.0.1\nPort {port}\nUser alice@example.com\nPass alice-pw\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount postern\n\n\
             MaildirStore near\nPath {local}/\nInbox {local}/INBOX\n\n\
             Channel sync\nFar :remote:INBOX\nNear :near:INBOX\nCreate Near\nSyncState *\n",
            port = open.port(),
            local = local.display()
        ),
    )
    .expect("mbsyncrc");
    let out = Command::new(tool("mbsync"))
        .arg("-c")
        .arg(&cfg)
        .arg("-a")
        .output()
        .expect("mbsync");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("---- mbsync ----\n{text}");
    assert!(out.status.success(), "mbsync failed:\n{text}");
    let pulled: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|s| {
            std::fs::read_dir(local.join("INBOX").join(s))
                .into_iter()
                .flatten()
        })
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    assert!(pulled[0].contains("read me back"), "{pulled:?}");
}

/// Python for `m.append("Threads", ...)` of one message.
fn thread_message(id: u32, date: &str, subject: &str, refs: &str) -> String {
    format!(
        "Message-ID: <t{id}@example.net>\\r\\nDate: {date}\\r\\nFrom: a@example.net\\r\\n{refs}Subject: {subject}\\r\\n\\r\\nmessage {id}\\r\\n"
    )
}

#[test]
fn imaplib_threads_a_reply_chain_by_references_and_by_subject() {
    if !peer("python3") {
        return;
    }
    let (_d, open, _, _) = daemon();
    let koeln = "=?UTF-8?Q?Treffen_in_K=C3=B6ln?=";
    // Sequence numbers 1 to 7 (UIDs 2 to 8, after a placeholder).
    let messages = [
        // 1: the root of the chain (10:00).
        thread_message(1, "Mon, 2 Nov 2026 10:00:00 +0000", koeln, ""),
        // 2: a reply to 1.
        thread_message(
            2,
            "Mon, 2 Nov 2026 11:00:00 +0000",
            &format!("Re: {koeln}"),
            "In-Reply-To: <t1@example.net>\\r\\nReferences: <t1@example.net>\\r\\n",
        ),
        // 3: a reply to 2, its subject "RE: Re: ...".
        thread_message(
            3,
            "Mon, 2 Nov 2026 12:00:00 +0000",
            &format!("RE: Re: {koeln}"),
            "In-Reply-To: <t2@example.net>\\r\\nReferences: <t1@example.net> <t2@example.net>\\r\\n",
        ),
        // 4: another conversation (10:30).
        thread_message(4, "Mon, 2 Nov 2026 10:30:00 +0000", "Quarterly numbers", ""),
        // 5: a forward of 1 (References only, "Fwd:").
        thread_message(
            5,
            "Mon, 2 Nov 2026 13:00:00 +0000",
            &format!("Fwd: {koeln}"),
            "References: <t1@example.net>\\r\\n",
        ),
        // 6: a reply to 4.
        thread_message(
            6,
            "Mon, 2 Nov 2026 14:00:00 +0000",
            "Re: Quarterly numbers",
            "In-Reply-To: <t4@example.net>\\r\\nReferences: <t4@example.net>\\r\\n",
        ),
        // 7: a reply whose parent is not here (09:00), alone.
        thread_message(
            7,
            "Mon, 2 Nov 2026 09:00:00 +0000",
            "Re: Lunch",
            "In-Reply-To: <gone@example.net>\\r\\n",
        ),
    ];
    let appends: String = messages
        .iter()
        .map(|m| {
            format!("typ, _ = m.append(\"Threads\", None, None, b\"{m}\"); assert typ == \"OK\"\n")
        })
        .collect();
    let out = traced(
        "THREAD through imaplib",
        &format!(
            r#"
m = T("127.0.0.1", {port})
m.login("alice@example.com", "alice-pw")
typ, _ = m.create("Threads"); assert typ == "OK", typ
typ, _ = m.append("Threads", None, None, b"Subject: placeholder\r\n\r\ngone soon\r\n"); assert typ == "OK"
{appends}
typ, _ = m.select("Threads"); assert typ == "OK", typ
typ, _ = m.store("1", "+FLAGS", "\\Deleted"); assert typ == "OK", typ
typ, _ = m.expunge(); assert typ == "OK", typ
typ, refs = m.thread("REFERENCES", "UTF-8", "ALL"); assert typ == "OK", typ
typ, subj = m.thread("ORDEREDSUBJECT", "UTF-8", "ALL"); assert typ == "OK", typ
typ, uid_refs = m.uid("THREAD", "REFERENCES", "UTF-8", "ALL"); assert typ == "OK", typ
print("REFERENCES", refs[0].decode())
print("ORDEREDSUBJECT", subj[0].decode())
print("UID REFERENCES", uid_refs[0].decode())
m.logout()
"#,
            port = open.port()
        ),
    );
    let line = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    // RFC 5256: threads in the order of their first message's date (7 at
    // 09:00, 1 at 10:00, 4 at 10:30); 1 has two children, 2 (with 3
    // under it) and the forward 5; 6 answers 4.
    assert_eq!(line("REFERENCES "), "(7)(1 (2 3)(5))(4 6)");
    // ORDEREDSUBJECT: one thread per base subject (Re:, RE:, Fwd: and
    // the encoded word taken off), the rest siblings under the first.
    assert_eq!(line("ORDEREDSUBJECT "), "(7)(1 (2)(3)(5))(4 6)");
    // UID THREAD: the same tree in UIDs (one above the sequence numbers:
    // the placeholder with UID 1 was expunged).
    assert_eq!(line("UID REFERENCES "), "(8)(2 (3 4)(6))(5 7)");
}

#[test]
fn roundcube_searches_for_non_ascii_words_find_encoded_headers_and_bodies() {
    if !peer("python3") {
        return;
    }
    let (_d, open, _, _) = daemon();
    let out = traced(
        "Roundcube's non-ASCII searches through imaplib",
        &format!(
            r#"
import base64
latin1_body = base64.b64encode("Wir fahren nach Köln, Herr Müller.\r\n".encode("latin-1"))
messages = [
    # UID 1: "Treffen in Köln" in an RFC 2047 Q-encoded UTF-8 subject.
    b"From: Alice <alice@example.org>\r\nSubject: =?UTF-8?Q?Treffen_in_K=C3=B6ln?=\r\n\r\nSee you there.\r\n",
    # UID 2: "Jürgen Müller" in an ISO-8859-1 encoded From.
    b"From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <jm@example.net>\r\nSubject: Hello\r\n\r\nHi.\r\n",
    # UID 3: "Größe" in a quoted-printable UTF-8 body (soft line break too).
    b"From: shop@example.net\r\nSubject: Order\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nDie Gr=C3=B6=C3=9Fe ist XL, =\r\ndanke.\r\n",
    # UID 4: "Köln" and "Müller" in a base64 ISO-8859-1 body.
    b"From: travel@example.net\r\nSubject: Trip\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n" + latin1_body + b"\r\n",
    # UID 5: "Größe" in a B-encoded UTF-8 subject.
    b"From: bob@example.net\r\nSubject: =?UTF-8?B?R3LDtsOfZQ==?=\r\n\r\ntable\r\n",
    # UID 6: the ASCII look-alikes only (must not match).
    b"From: Muller <m@example.net>\r\nSubject: Koln Muller Grosse\r\n\r\nKoln Muller Grosse\r\n",
]
m = T("127.0.0.1", {port})
m.login("alice@example.com", "alice-pw")
for msg in messages:
    typ, _ = m.append("INBOX", None, None, msg); assert typ == "OK", typ
typ, _ = m.select("INBOX"); assert typ == "OK", typ

def lit(word):
    b = word.encode()
    return b"{{%d+}}\r\n" % len(b) + b
# rcmail_action_mail_search::search_input_text: one criterion per
# searched field, ORed; rcube_imap_generic::escape makes a non-ASCII
# word a literal (LITERAL+ since the server offers it); rcube_imap
# prefixes CHARSET UTF-8 when the criteria are not ASCII.
def roundcube(word, fields):
    parts = [(b"BODY " if f == "body" else b"HEADER " + f.upper().encode() + b" ") + lit(word) for f in fields]
    return b"OR " * (len(parts) - 1) + b" ".join(parts)
for word, fields in [
    ("Köln", ["subject", "from", "body"]),
    ("Müller", ["subject", "from", "body"]),
    ("Größe", ["subject", "from", "body"]),
    ("Köln", ["subject", "from"]),
    ("Müller", ["subject", "from"]),
    ("köln", ["subject", "from", "body"]),
]:
    untagged, done = raw(m, b"UID SEARCH CHARSET UTF-8 " + roundcube(word, fields))
    assert b" OK " in done, done
    print("FOUND", word, "+".join(fields), uids(untagged))
# Roundcube with a sort column sends SORT with the same criteria.
untagged, done = raw(m, b"UID SORT (DATE) UTF-8 " + roundcube("Größe", ["subject", "from", "body"]))
print("SORTED Größe", [l for l in untagged if l.startswith(b"* SORT")][0].decode().split()[2:])
# An ASCII word inside an encoded subject (Roundcube sends no CHARSET).
untagged, done = raw(m, b"UID SEARCH HEADER SUBJECT Treffen")
print("FOUND Treffen subject", uids(untagged))
m.logout()
"#,
            port = open.port()
        ),
    );
    let found = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    assert_eq!(found("FOUND Köln subject+from+body "), "[1, 4]");
    assert_eq!(found("FOUND Müller subject+from+body "), "[2, 4]");
    assert_eq!(found("FOUND Größe subject+from+body "), "[3, 5]");
    assert_eq!(found("FOUND Köln subject+from "), "[1]");
    assert_eq!(found("FOUND Müller subject+from "), "[2]");
    // i;unicode-casemap: the case does not matter.
    assert_eq!(found("FOUND köln subject+from+body "), "[1, 4]");
    assert_eq!(found("SORTED Größe "), "['3', '5']");
    assert_eq!(found("FOUND Treffen subject "), "[1]");
}

#[test]
fn a_dovecot_maildir_tree_is_served_with_the_dot_separator() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start_with(LISTENERS, "", "[imap]\nhierarchy_separator = \".\"\n");
    let open = d.addrs[0];
    // A folder as Dovecot's Maildir++ layout keeps it, written behind the
    // daemon's back (the account folder appears at the first login).
    let account = d.dir.path().join("mail/example.com/alice");
    let archive = account.join(".Archive.2024");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(archive.join(sub)).expect("folder");
    }
    std::fs::write(
        archive.join("cur/1700000000.M1P1.dovecot:2,S"),
        "Subject: kept by Dovecot\r\n\r\nold mail\r\n",
    )
    .expect("message");
    let out = traced(
        "hierarchy_separator = \".\"",
        &format!(
            r#"
m = T("127.0.0.1", {port})
m.login("alice@example.com", "alice-pw")
typ, ns = m.namespace(); print("NAMESPACE", ns[0].decode())
typ, data = m.list("\"\"", "Archive.%"); assert typ == "OK", typ
print("LISTED", [d.decode() for d in data])
typ, data = m.select("Archive.2024"); assert typ == "OK", (typ, data)
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); assert typ == "OK", typ
print("SUBJECT", data[0][1].decode().strip())
typ, data = m.create("Projects.Q1"); assert typ == "OK", (typ, data)
typ, data = m.create("Projects/Q1"); assert typ == "NO", (typ, data)
print("REFUSED", data[0].decode())
m.logout()
"#,
            port = open.port()
        ),
    );
    let line = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    assert_eq!(line("NAMESPACE "), "((\"\" \".\")) NIL NIL");
    assert_eq!(
        line("LISTED "),
        "['(\\\\HasNoChildren) \".\" Archive.2024']"
    );
    assert_eq!(line("SUBJECT "), "Subject: kept by Dovecot");
    assert!(line("REFUSED ").contains("cannot contain \"/\""), "{out}");
    // On disk the new folder is Maildir++ too.
    assert!(account.join(".Projects.Q1/cur").is_dir(), "{account:?}");
}

#[test]
fn two_live_sessions_on_one_maildir_agree() {
    if !peer("python3") {
        return;
    }
    let (d, open, _, _) = daemon();
    let out = traced(
        "two sessions: A idles, B changes the mailbox",
        &format!(
            r#"
def flags_by_uid(m):
    data, _ = raw(m, b"UID FETCH 1:* (FLAGS)")
    rows = {{}}
    for l in data:
        s = l.decode()
        u = re.search(r"UID (\d+)", s)
        if u:
            f = re.search(r"FLAGS \(([^)]*)\)", s).group(1).split()
            rows[int(u.group(1))] = sorted(x for x in f if x != "\\Recent")
    return rows
a = T("127.0.0.1", {port}); a.login("alice@example.com", "alice-pw")
b = T("127.0.0.1", {port}); b.login("alice@example.com", "alice-pw")
for i in (1, 2, 3):
    typ, _ = b.append("INBOX", None, None, b"Subject: m%d\r\n\r\nbody\r\n" % i); assert typ == "OK"
typ, data = a.select("INBOX"); assert typ == "OK" and data[0] == b"3", data
typ, data = b.select("INBOX"); assert typ == "OK", data
a.sock.settimeout(30)
tag = a._new_tag()
a.send(tag + b" IDLE\r\n")
assert a.readline().startswith(b"+"), "no continuation"
# B: a new message, a flag on UID 1, UID 2 expunged.
typ, _ = b.append("INBOX", None, None, b"Subject: m4\r\n\r\nbody\r\n"); assert typ == "OK"
typ, _ = b.uid("STORE", "1", "+FLAGS", "(\\Flagged)"); assert typ == "OK"
typ, _ = b.uid("STORE", "2", "+FLAGS", "(\\Deleted)"); assert typ == "OK"
typ, _ = b.expunge(); assert typ == "OK"
# A hears all three while idling (each read waits at most 30 s). When
# A's poll comes after B's EXPUNGE, the new message's EXISTS follows the
# EXPUNGE and counts 3.
seen = set()
while seen != {{"exists", "flagged", "expunge"}}:
    l = a.readline()
    n = re.match(rb"\* (\d+) EXISTS", l)
    if n and int(n.group(1)) == (3 if "expunge" in seen else 4): seen.add("exists")
    if re.match(rb"\* 1 FETCH .*\\Flagged", l): seen.add("flagged")
    if re.match(rb"\* 2 EXPUNGE", l): seen.add("expunge")
a.send(b"DONE\r\n")
while not a.readline().startswith(tag + b" OK"):
    pass
va, vb = flags_by_uid(a), flags_by_uid(b)
print("A", va)
print("B", vb)
assert va == vb, (va, vb)
data, _ = raw(a, b"FETCH 1:* (UID)")
print("A SEQ", [l.decode().strip() for l in data])
a.logout(); b.logout()
"#,
            port = open.port()
        ),
    );
    let line = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    assert_eq!(
        line("A "),
        "{1: ['\\\\Flagged'], 3: [], 4: []}",
        "the idler's view after the other session's changes"
    );
    assert_eq!(line("B "), line("A "));
    assert_eq!(
        line("A SEQ "),
        "['* 1 FETCH (UID 1)', '* 2 FETCH (UID 3)', '* 3 FETCH (UID 4)']"
    );
    // The store on disk agrees: three messages left in the Maildir.
    let inbox = d.dir.path().join("mail/example.com/alice");
    let files: usize = ["cur", "new"]
        .iter()
        .map(|s| {
            std::fs::read_dir(inbox.join(s))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(files, 3);
}
