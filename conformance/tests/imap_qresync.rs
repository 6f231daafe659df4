//! QRESYNC (RFC 7162 3.2) and `\Recent` with a real client: Python's
//! imaplib over IMAPS against the daemon (its own Maildir store), raw
//! commands through `_simple_command` where imaplib has no method.
//!
//! A phone (`phone`) syncs and goes away knowing UIDVALIDITY and
//! HIGHESTMODSEQ; a webmail session (`web`) flags one message and
//! expunges two while a third session (`live`, QRESYNC on) has the
//! mailbox selected. `live` learns of the expunge as `* VANISHED`; the
//! phone comes back with `SELECT INBOX (QRESYNC (...))` and gets
//! `VANISHED (EARLIER)` and the FETCH of the flagged message, then
//! `UID FETCH ... (CHANGEDSINCE m VANISHED)` says the same.

mod common;

use common::{peer, python, Daemon};

const LISTENERS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n";

/// The client side, in imaplib; prints one `key=value` line per finding.
fn script(port: u16) -> String {
    format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def connect():
    m = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
    typ, _ = m.login("alice@example.com", "alice-pw"); assert typ == "OK", typ
    return m

def untagged(m, key):
    return [d.decode() if isinstance(d, bytes) else d for d in m.untagged_responses.pop(key, [])]

seed = connect()
for i in range(1, 5):
    msg = ("Subject: m%d\r\nFrom: a@example.net\r\n\r\nbody %d\r\n" % (i, i)).encode()
    typ, data = seed.append("INBOX", None, None, msg); assert typ == "OK", (typ, data)
seed.logout()

# The phone syncs once and goes offline with UIDVALIDITY and HIGHESTMODSEQ.
phone = connect()
typ, data = phone.enable("QRESYNC"); assert typ == "OK", (typ, data)
print("enabled=" + " ".join(untagged(phone, "ENABLED")))
typ, data = phone.select("INBOX"); assert typ == "OK", (typ, data)
print("phone_recent=" + phone.response("RECENT")[1][0].decode())
validity = phone.response("UIDVALIDITY")[1][0].decode()
modseq = phone.response("HIGHESTMODSEQ")[1][0].decode()
phone.logout()

# A live session with QRESYNC on keeps INBOX selected.
live = connect()
typ, data = live.enable("QRESYNC"); assert typ == "OK", (typ, data)
typ, data = live.select("INBOX"); assert typ == "OK", (typ, data)
print("live_recent=" + live.response("RECENT")[1][0].decode())

# Webmail flags UID 1 and expunges UIDs 2 and 3.
web = connect()
typ, data = web.select("INBOX"); assert typ == "OK", (typ, data)
typ, data = web.uid("STORE", "1", "+FLAGS", "(\\Flagged)"); assert typ == "OK", (typ, data)
typ, data = web.uid("STORE", "2:3", "+FLAGS", "(\\Deleted)"); assert typ == "OK", (typ, data)
typ, data = web.expunge(); assert typ == "OK", (typ, data)
print("web_expunge=" + " ".join(d.decode() for d in data if d))
web.logout()

typ, data = live.noop(); assert typ == "OK", (typ, data)
print("live_vanished=" + " ".join(untagged(live, "VANISHED")))
print("live_expunge=" + " ".join(untagged(live, "EXPUNGE")))
print("live_fetch=" + " | ".join(untagged(live, "FETCH")))
live.logout()

# The phone comes back: SELECT with what it knows.
phone = connect()
typ, data = phone.enable("QRESYNC"); assert typ == "OK", (typ, data)
typ, data = phone._simple_command("SELECT", "INBOX (QRESYNC (%s %s 1:4))" % (validity, modseq))
assert typ == "OK", (typ, data)
phone.state = "SELECTED"
print("select_vanished=" + " ".join(untagged(phone, "VANISHED")))
print("select_fetch=" + " | ".join(untagged(phone, "FETCH")))
print("select_exists=" + " ".join(untagged(phone, "EXISTS")))
typ, data = phone._simple_command("UID", "FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE %s VANISHED)" % modseq)
assert typ == "OK", (typ, data)
print("uid_fetch_vanished=" + " ".join(untagged(phone, "VANISHED")))
print("uid_fetch=" + " | ".join(untagged(phone, "FETCH")))
# Another UIDVALIDITY: no VANISHED, no FETCH, but [CLOSED] for the old one.
typ, data = phone._simple_command("EXAMINE", "INBOX (QRESYNC (%d %s 1:4))" % (int(validity) + 1, modseq))
assert typ == "OK", (typ, data)
print("closed=" + str("CLOSED" in phone.untagged_responses))
print("mismatch_vanished=" + " ".join(untagged(phone, "VANISHED")))
phone.is_readonly = True
phone.logout()
"#
    )
}

#[test]
fn imaplib_resyncs_with_qresync_after_another_session_expunged_and_flagged() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let out = python(&script(d.addrs[0].port()));
    eprintln!("{out}");
    let got = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .to_owned()
    };
    assert_eq!(got("enabled"), "QRESYNC", "{out}");
    // The first read-write session after the APPENDs takes them as recent;
    // the next one does not.
    assert_eq!(got("phone_recent"), "4", "{out}");
    assert_eq!(got("live_recent"), "0", "{out}");
    assert_eq!(got("web_expunge"), "3 2", "{out}");
    // The live QRESYNC session hears VANISHED, never EXPUNGE.
    assert_eq!(got("live_vanished"), "2:3", "{out}");
    assert_eq!(got("live_expunge"), "", "{out}");
    assert!(got("live_fetch").contains("FLAGS (\\Flagged)"), "{out}");
    // The phone's SELECT (QRESYNC ...).
    assert_eq!(got("select_vanished"), "(EARLIER) 2:3", "{out}");
    let fetch = got("select_fetch");
    assert!(
        fetch.starts_with("1 (UID 1 FLAGS (\\Flagged) MODSEQ ("),
        "{out}"
    );
    assert!(!fetch.contains('|'), "only UID 1 changed: {out}");
    assert_eq!(got("select_exists"), "2", "{out}");
    // UID FETCH (CHANGEDSINCE m VANISHED).
    assert_eq!(got("uid_fetch_vanished"), "(EARLIER) 2:3", "{out}");
    let fetch = got("uid_fetch");
    assert!(
        fetch.starts_with("1 (UID 1 FLAGS (\\Flagged) MODSEQ ("),
        "{out}"
    );
    assert!(!fetch.contains('|'), "{out}");
    assert_eq!(got("closed"), "True", "{out}");
    assert_eq!(got("mismatch_vanished"), "", "{out}");
}
