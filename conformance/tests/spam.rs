//! The spam filter in the daemon, driven by Python's smtplib and imaplib:
//! a user's moves into Junk (and `$NotJunk` keywords) teach their
//! classifier so that the next similar message lands in Junk; moving one
//! back un-learns it; GTUBE is refused at end of DATA with 554 5.7.1; a
//! document with macros is junked; the X-Spam headers are visible to an
//! IMAP client.

mod common;

use common::{peer, python, Daemon};

const LISTENERS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"none\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n";

/// Python helpers shared by the scripts: send over SMTP, open IMAP.
fn prelude(mx: u16, imaps: u16) -> String {
    format!(
        r#"
import imaplib, smtplib, ssl, re, email.utils
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def send(subject, body, extra=""):
    s = smtplib.SMTP("127.0.0.1", {mx}, timeout=20)
    msg = ("From: sender@example.net\r\nTo: alice@example.com\r\nSubject: " + subject + "\r\n"
           + "Date: " + email.utils.formatdate() + "\r\nMessage-ID: <" + re.sub(r"\W", "", subject) + "@example.net>\r\n"
           + extra + "\r\n" + body + "\r\n")
    try:
        s.sendmail("sender@example.net", ["alice@example.com"], msg.encode())
        return "250"
    except smtplib.SMTPDataError as e:
        return str(e.smtp_code) + " " + e.smtp_error.decode()
    finally:
        s.quit()
def imap():
    b = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
    typ, _ = b.login("alice@example.com", "alice-pw"); assert typ == "OK"
    return b
def find(b, folder, subject):
    typ, _ = b.select(folder); assert typ == "OK", folder
    typ, data = b.uid("SEARCH", None, "SUBJECT", '"' + subject + '"'); assert typ == "OK"
    return data[0].decode().split()
def headers(b, folder, subject):
    uids = find(b, folder, subject)
    assert len(uids) == 1, (folder, subject, uids)
    typ, data = b.uid("FETCH", uids[0], "(BODY.PEEK[HEADER.FIELDS (X-SPAM X-SPAM-SCORE X-SPAM-STATUS)])")
    assert typ == "OK"
    return data[0][1].decode()
"#
    )
}

#[test]
fn moves_into_junk_teach_the_next_similar_message() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let (mx, imaps) = (d.addrs[0].port(), d.addrs[1].port());
    let script = format!(
        r#"{prelude}
spam = "Cheap replica watches and designer handbags, huge discount offer, click now, limited stock, order today and win a bonus gift"
ham = "Here are the notes of the project meeting: agenda for the quarterly review, budget figures, and the action items for next week"
assert send("probe one offer", spam + " probe") == "250"
b = imap()
assert find(b, "INBOX", "probe one") != [], "untrained: delivered to INBOX"
h = headers(b, "INBOX", "probe one")
assert "X-Spam-Score:" in h and "X-Spam: Yes" not in h, h
for i in range(10):
    assert send("offer number %d" % i, spam + " variant %d" % i) == "250"
    assert send("meeting notes %d" % i, ham + " variant %d" % i) == "250"
b.select("INBOX")
uids = find(b, "INBOX", "offer number")
assert len(uids) == 10, uids
typ, _ = b.uid("MOVE", ",".join(uids), "Junk"); assert typ == "OK"
uids = find(b, "INBOX", "meeting notes")
typ, _ = b.uid("STORE", ",".join(uids), "+FLAGS", "($NotJunk)"); assert typ == "OK"
# At once: the next similar message is junked.
assert send("probe two offer", spam + " probe two") == "250"
assert find(b, "INBOX", "probe two") == [], "trained: not in INBOX"
h = headers(b, "Junk", "probe two")
assert "X-Spam: Yes" in h and "BAYES_SPAM" in h, h
# Similar ham still arrives in INBOX.
assert send("meeting notes late", ham + " late") == "250"
assert find(b, "INBOX", "meeting notes late") != []
# Moving one back out of Junk un-learns it (learned as ham instead).
uids = find(b, "Junk", "offer number 3")
typ, _ = b.uid("MOVE", uids[0], "INBOX"); assert typ == "OK"
b.logout()
print("learned")
"#,
        prelude = prelude(mx, imaps)
    );
    assert_eq!(python(&script).trim(), "learned");
    let log = d.log_text();
    assert!(
        log.contains("learned 10 message(s) as Spam; now 10 spam, 0 ham"),
        "{log}"
    );
    assert!(
        log.contains("learned 10 message(s) as Ham; now 10 spam, 10 ham"),
        "{log}"
    );
    assert!(
        log.contains("learned 1 message(s) as Ham; now 9 spam, 11 ham"),
        "{log}"
    );
    let file = d.dir.path().join("mail/example.com/alice/postern-spam");
    assert!(file.is_file(), "classifier file beside the Maildir");
}

#[test]
fn gtube_is_refused_and_a_macro_document_is_junked_with_headers() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let (mx, imaps) = (d.addrs[0].port(), d.addrs[1].port());
    let script = format!(
        r#"{prelude}
import base64
r = send("gtube", "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")
assert r.startswith("554 5.7.1"), r
doc = b"PK\x03\x04" + bytes(26) + b"word/vbaProject.bin" + bytes(64)
att = base64.b64encode(doc).decode()
body = ("--B\r\nContent-Type: text/plain\r\n\r\nPlease see the invoice.\r\n--B\r\n"
        "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document\r\n"
        "Content-Disposition: attachment; filename=\"invoice.docx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + att + "\r\n--B--")
extra = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n"
assert send("invoice attached", body, extra) == "250"
b = imap()
assert find(b, "INBOX", "invoice") == []
h = headers(b, "Junk", "invoice")
assert "X-Spam: Yes" in h and "OFFICE_MACRO" in h, h
b.logout()
print("junked")
"#,
        prelude = prelude(mx, imaps)
    );
    assert_eq!(python(&script).trim(), "junked");
    assert!(
        d.new_mail("alice", "example.com").is_empty(),
        "nothing in INBOX"
    );
}

#[test]
fn the_configured_junk_folder_teaches_and_sender_spam_headers_are_stripped() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start_with(LISTENERS, "", "[auth]\njunk_folder = \"Spam\"\n");
    let (mx, imaps) = (d.addrs[0].port(), d.addrs[1].port());
    let script = format!(
        r#"{prelude}
spam = "Cheap replica watches and designer handbags, huge discount offer, click now, limited stock, order today and win a bonus gift"
ham = "Here are the notes of the project meeting: agenda for the quarterly review, budget figures, and the action items for next week"
# A sender pre-marks its message as ham: its X-Spam fields do not reach the user.
forged = "X-Spam: No\r\nX-Spam-Score: -99.00\r\nX-Spam-Status: No, score=-99.00 required=5.00 tests=TRUSTED\r\n"
assert send("premarked hello", ham + " premarked", forged) == "250"
b = imap()
h = headers(b, "INBOX", "premarked hello")
assert "-99" not in h and "TRUSTED" not in h, h
assert h.count("X-Spam-Score:") == 1 and h.count("X-Spam-Status:") == 1, h
for i in range(10):
    assert send("offer number %d" % i, spam + " variant %d" % i) == "250"
    assert send("meeting notes %d" % i, ham + " variant %d" % i) == "250"
b.create("Spam")
# A move into a folder merely named Junk teaches nothing.
uids = find(b, "INBOX", "offer number 9")
typ, _ = b.uid("COPY", uids[0], "Junk"); assert typ == "OK", "COPY to Junk"
uids = find(b, "INBOX", "offer number")
typ, _ = b.uid("MOVE", ",".join(uids), "Spam"); assert typ == "OK"
uids = find(b, "INBOX", "meeting notes")
typ, _ = b.uid("STORE", ",".join(uids), "+FLAGS", "($NotJunk)"); assert typ == "OK"
# The next similar message lands in the configured folder, even when the
# sender marks it as ham.
assert send("probe two offer", spam + " probe two", forged) == "250"
assert find(b, "INBOX", "probe two") == [], "trained: not in INBOX"
h = headers(b, "Spam", "probe two")
assert "X-Spam: Yes" in h and "BAYES_SPAM" in h and "-99" not in h, h
b.logout()
print("learned")
"#,
        prelude = prelude(mx, imaps)
    );
    assert_eq!(python(&script).trim(), "learned");
    let log = d.log_text();
    assert!(
        log.contains("learned 10 message(s) as Spam; now 10 spam, 0 ham"),
        "{log}"
    );
    assert!(
        !log.contains("learned 1 message(s) as Spam"),
        "the copy into Junk taught nothing: {log}"
    );
}
