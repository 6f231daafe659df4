//! IMAP with real peers: Python's imaplib runs the roundtrip probe's flow
//! over IMAPS on the stock listener, and through HAProxy (send-proxy-v2) on
//! the PROXY listener.

mod common;

use common::{free_port, peer, python, tool, Client, Daemon, HaProxy};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

const LISTENERS: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\nproxy = \"required\"\ntrusted_networks = [\"127.0.0.1/32\"]\n";

fn deliver(mx: SocketAddr, marker: &str) {
    let mut c = Client::connect(mx).expect("connect");
    c.reply().expect("greeting");
    c.cmd("EHLO probe.example.net").expect("ehlo");
    assert!(c
        .cmd("MAIL FROM:<probe@example.net>")
        .expect("mail")
        .starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<alice@example.com>")
        .expect("rcpt")
        .starts_with("250"));
    assert!(c.cmd("DATA").expect("data").starts_with("354"));
    let r = c
        .cmd(&format!(
            "Subject: roundtrip {marker}\r\nFrom: probe@example.net\r\n\r\nbody of {marker}\r\n."
        ))
        .expect("dot");
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT").expect("quit");
}

/// The probe's flow in imaplib; prints what it found.
fn probe(host: &str, port: u16, marker: &str, source: Option<&str>) -> String {
    let src = source
        .map(|s| format!("source_address=(\"{s}\", 0), "))
        .unwrap_or_default();
    let script = format!(
        r#"
import imaplib, ssl, socket
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class M(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, {src})
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
m = M("{host}", {port}, ssl_context=ctx)
typ, _ = m.login("alice@example.com", "alice-pw"); assert typ == "OK", typ
typ, data = m.select("INBOX"); assert typ == "OK", (typ, data)
typ, data = m.search(None, '(SUBJECT "{marker}")'); assert typ == "OK", typ
ids = data[0].split(); assert len(ids) == 1, data
typ, msg = m.fetch(ids[0], "(RFC822)"); assert typ == "OK", typ
body = msg[0][1].decode()
assert "body of {marker}" in body, body
typ, _ = m.store(ids[0], "+FLAGS", "\\Deleted"); assert typ == "OK", typ
typ, data = m.expunge(); assert typ == "OK", typ
typ, data = m.search(None, "ALL")
print("found", len(ids), "left", len(data[0].split()))
m.logout()
"#
    );
    python(&script)
}

#[test]
fn imaplib_runs_the_roundtrip_probe_on_imaps_and_through_haproxy() {
    if !peer("python3") || !peer("haproxy") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let (mx, imaps, alt) = (d.addrs[0], d.addrs[1], d.addrs[2]);

    deliver(mx, "m-1a2b");
    let out = probe("127.0.0.1", imaps.port(), "m-1a2b", None);
    assert_eq!(out.trim(), "found 1 left 0");
    assert!(d.new_mail("alice", "example.com").is_empty());
    let cur = d.dir.path().join("mail/example.com/alice/cur");
    assert_eq!(
        std::fs::read_dir(&cur).map(|r| r.count()).unwrap_or(0),
        0,
        "expunged from disk"
    );
    assert!(d
        .dir
        .path()
        .join("mail/example.com/alice/dovecot-uidlist")
        .is_file());

    // The same through HAProxy with send-proxy-v2, from 127.0.0.7.
    let hap = HaProxy::start(d.dir.path(), alt);
    deliver(mx, "m-3c4d");
    let out = probe("127.0.0.1", hap.port, "m-3c4d", Some("127.0.0.7"));
    drop(hap);
    assert_eq!(out.trim(), "found 1 left 0");
    let log = d.log_text();
    assert!(
        log.contains("imap-login: Login: user=<alice@example.com>, method=PLAIN, rip=127.0.0.7"),
        "{log}"
    );
}

/// What a server says about a mailbox: (UIDVALIDITY, [(UID, sorted flags)]).
fn imap_state(port: u16, tls: bool, user: &str, password: &str, mailbox: &str) -> String {
    let script = format!(
        r#"
import imaplib, ssl, re
if {tls}:
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
else:
    m = imaplib.IMAP4("127.0.0.1", {port})
m.login("{user}", "{password}")
typ, data = m.status("{mailbox}", "(UIDVALIDITY UIDNEXT MESSAGES)")
v = re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1).decode()
m.select("{mailbox}", readonly=True)
typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
rows = []
for d in data:
    if d is None: continue
    s = d.decode() if isinstance(d, bytes) else d[0].decode()
    uid = re.search(r"UID (\d+)", s).group(1)
    # \Recent belongs to whichever session saw a message first, not to the mailbox.
    flags = sorted(f for f in re.search(r"FLAGS \(([^)]*)\)", s).group(1).split() if f != "\\Recent")
    rows.append(uid + ":" + ",".join(flags))
print(v, " ".join(sorted(rows, key=lambda r: int(r.split(":")[0]))))
m.logout()
"#,
        tls = if tls { "True" } else { "False" }
    );
    python(&script).trim().to_owned()
}

#[test]
fn a_maildir_written_by_dovecot_keeps_its_uids_flags_and_keywords() {
    if !peer("dovecot") || !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let root = d.dir.path();
    let dv = root.join("dovecot");
    std::fs::create_dir_all(dv.join("run")).expect("dir");
    let port = free_port();
    let hash = postern_adapters::directory::sha512_crypt_hash("alice-pw", "dovecotcompat123")
        .expect("hash");
    std::fs::write(dv.join("users"), format!("alice@example.com:{hash}\n")).expect("users");
    std::fs::write(
        dv.join("dovecot.conf"),
        format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {r}/run\nstate_dir = {r}/state\nlog_path = {r}/log\nssl = no\n\
             disable_plaintext_auth = no\nauth_mechanisms = plain login\n\
             mail_location = maildir:{m}/%d/%n\n\
             passdb {{\n  driver = passwd-file\n  args = {r}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={r}/home/%d/%n\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n",
            r = dv.display(),
            m = root.join("mail").display()
        ),
    )
    .expect("conf");
    // Dovecot will not deliver as root: it writes as nobody.
    let mail = root.join("mail");
    std::fs::create_dir_all(&mail).expect("mail dir");
    let _ = Command::new("chmod").args(["0777"]).arg(&mail).status();
    let _ = Command::new("chmod").args(["0755"]).arg(root).status();
    let mut dovecot = Command::new(tool("dovecot"))
        .args(["-F", "-c"])
        .arg(dv.join("dovecot.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dovecot");
    common::wait_for_port_or_show(port, "dovecot", Some(&dv.join("log")));
    // Dovecot writes the mailbox: messages with flags and a keyword, a folder.
    let script = format!(
        r#"
import imaplib, time
m = imaplib.IMAP4("127.0.0.1", {port})
m.login("alice@example.com", "alice-pw")
m.create("Archive")
for i, flags in enumerate([r"(\Seen)", r"(\Flagged $Label1)", "()", r"(\Seen \Answered)"]):
    m.append("INBOX", flags, None, ("Subject: dovecot %d\r\n\r\nbody %d\r\n" % (i, i)).encode())
m.append("Archive", r"(\Seen)", None, b"Subject: archived\r\n\r\nold\r\n")
m.select("INBOX"); m.store("3", "+FLAGS", r"(\Deleted)"); m.expunge()
m.logout()
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_dovecot_inbox = imap_state(port, false, "alice@example.com", "alice-pw", "INBOX");
    let by_dovecot_archive = imap_state(port, false, "alice@example.com", "alice-pw", "Archive");
    let _ = dovecot.kill();
    let _ = dovecot.wait();
    // The same Maildir through Postern.
    let imaps = d.addrs[1].port();
    let by_postern_inbox = imap_state(imaps, true, "alice@example.com", "alice-pw", "INBOX");
    let by_postern_archive = imap_state(imaps, true, "alice@example.com", "alice-pw", "Archive");
    assert!(by_dovecot_inbox.contains("$Label1"), "{by_dovecot_inbox}");
    assert_eq!(
        by_postern_inbox, by_dovecot_inbox,
        "INBOX: UIDVALIDITY, UIDs, flags and keywords"
    );
    assert_eq!(by_postern_archive, by_dovecot_archive, "Archive folder");
}

fn mbsync(cfg: &std::path::Path) -> String {
    let out = Command::new(tool("mbsync"))
        .arg("-c")
        .arg(cfg)
        .arg("-a")
        .output()
        .expect("mbsync");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync failed:\n{text}");
    text
}

/// Files of a local Maildir folder: (path, content).
fn local_mail(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut v = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            for e in rd.filter_map(Result::ok) {
                v.push((
                    e.path(),
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                ));
            }
        }
    }
    v.sort();
    v
}

#[test]
fn mbsync_syncs_both_ways() {
    if !peer("mbsync") || !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let (mx, imaps) = (d.addrs[0], d.addrs[1]);
    for m in ["sync-1", "sync-2", "sync-3"] {
        deliver(mx, m);
    }
    let local = d.dir.path().join("local");
    std::fs::create_dir_all(&local).expect("local");
    // A folder that exists only on the near side, with one message.
    let notes = local.join("Notes");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(notes.join(sub)).expect("notes");
    }
    std::fs::write(
        notes.join("cur/1700000000.1.laptop:2,S"),
        "Subject: a local note\n\nwritten offline\n",
    )
    .expect("note");
    let cfg = d.dir.path().join("mbsyncrc");
    std::fs::write(
        &cfg,
        format!(
            "IMAPAccount postern\nHost 127.0.0.1\nPort {port}\nUser alice@example.com\nPass alice-pw\nSSLType IMAPS\nCertificateFile {cert}\n\n\
             IMAPStore remote\nAccount postern\n\n\
             MaildirStore near\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :near:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            port = imaps.port(),
            cert = d.dir.path().join("cert.pem").display(),
            local = local.display()
        ),
    )
    .expect("mbsyncrc");
    mbsync(&cfg);
    // Down: the three messages; up: the Notes folder and its message.
    let inbox = local_mail(&local.join("INBOX"));
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    assert!(inbox
        .iter()
        .any(|(_, m)| m.contains("Subject: roundtrip sync-2")));
    let server_notes = imap_state(imaps.port(), true, "alice@example.com", "alice-pw", "Notes");
    assert!(server_notes.ends_with(" 1:\\Seen"), "{server_notes}");

    // A flag set on the near side reaches the server; one set on the
    // server reaches the near side.
    let (path, _) = inbox
        .iter()
        .find(|(_, m)| m.contains("sync-1"))
        .expect("sync-1")
        .clone();
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let flagged = match name.split_once(":2,") {
        Some((base, flags)) => format!("{base}:2,F{flags}"),
        None => format!("{name}:2,F"),
    };
    std::fs::rename(&path, local.join("INBOX/cur").join(&flagged)).expect("flag locally");
    let script = format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
m.login("alice@example.com", "alice-pw"); m.select("INBOX")
typ, data = m.search(None, '(SUBJECT "sync-3")'); m.store(data[0].split()[0], "+FLAGS", r"(\Seen)")
m.logout()
"#,
        port = imaps.port()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mbsync(&cfg);
    let server = imap_state(imaps.port(), true, "alice@example.com", "alice-pw", "INBOX");
    assert!(
        server.contains(":\\Flagged"),
        "near-side flag reached the server: {server}"
    );
    let near = local_mail(&local.join("INBOX"));
    let s3 = near
        .iter()
        .find(|(_, m)| m.contains("sync-3"))
        .expect("sync-3");
    let s3_name =
        s3.0.file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
    assert!(
        s3_name.split(":2,").nth(1).is_some_and(|f| f.contains('S')),
        "server flag reached the near side: {s3_name}"
    );
    assert_eq!(near.len(), 3);
}

#[test]
fn a_roundcube_page_view_works_over_imaps() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let (mx, imaps) = (d.addrs[0], d.addrs[1]);
    deliver(mx, "rc-1");
    // What Roundcube does for one page, on a fresh connection each time.
    let script = format!(
        r#"
import imaplib, ssl, re
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
imaplib.Commands["ID"] = ("NONAUTH", "AUTH", "SELECTED")
def page():
    m = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
    m.authenticate("PLAIN", lambda _: b"\0alice@example.com\0alice-pw")
    m._simple_command("ID", '("name" "Roundcube" "version" "1.6.13")')
    typ, ns = m.namespace(); assert typ == "OK", ns
    typ, subs = m._simple_command("LIST", "(SUBSCRIBED)", '""', '"*"'); assert typ == "OK"
    names = [l for l in m.untagged_responses.get("LIST", [])]
    assert any(b"\\Sent" in l for l in names) and any(b"INBOX" in l for l in names), names
    typ, st = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)"); assert typ == "OK", st
    typ, _ = m.select("INBOX"); assert typ == "OK"
    typ, data = m.uid("SEARCH", "ALL"); uids = data[0].split(); assert uids, data
    typ, data = m.uid("FETCH", b",".join(uids).decode(), "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT CONTENT-TYPE)])")
    assert typ == "OK" and b"Subject: roundtrip rc-1" in data[0][1], data
    typ, data = m.uid("FETCH", uids[0].decode(), "(BODYSTRUCTURE)"); assert typ == "OK" and b'"TEXT" "PLAIN"' in data[0], data
    typ, data = m.uid("FETCH", uids[0].decode(), "(BODY.PEEK[1])"); assert typ == "OK" and b"body of rc-1" in data[0][1], data
    return m, uids
m, uids = page(); m.logout()
m, uids = page()
# Save a sent message the way Roundcube does, and move the first message to Trash.
typ, data = m.append("Sent", r"(\Seen)", None, b"Subject: sent by me\r\n\r\nhi\r\n"); assert typ == "OK" and b"APPENDUID" in data[0], data
typ, data = m.uid("MOVE", uids[0].decode(), "Trash"); assert typ == "OK", data
typ, st = m.status("Trash", "(MESSAGES)"); assert b"MESSAGES 1" in st[0], st
typ, st = m.status("Sent", "(MESSAGES)"); assert b"MESSAGES 1" in st[0], st
m.logout()
print("ok")
"#,
        port = imaps.port()
    );
    assert_eq!(python(&script).trim(), "ok");
}

/// RFC 9051 7.3.1/7.5.1 with two sessions: a session idling on INBOX is
/// told at once of a message delivered by SMTP (EXISTS), of another
/// session's flag change (FETCH) and of its EXPUNGE. The daemon's own
/// polling for outside changes is set to an hour, so only the push from
/// delivery and the store can wake it.
#[test]
fn idle_hears_deliveries_flag_changes_and_expunges_at_once() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start_with(LISTENERS, "", "[imap]\nidle_poll_secs = 3600\n");
    let (mx, imaps) = (d.addrs[0], d.addrs[1]);
    let script = format!(
        r#"
import imaplib, smtplib, socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
a = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {imaps}), timeout=20), server_hostname="x")
buf = b""
def until(needle):
    global buf
    while needle not in buf:
        chunk = a.recv(65536)
        assert chunk, ("closed", buf)
        buf += chunk
    i = buf.index(needle) + len(needle)
    seen, buf = buf[:i], buf[i:]
    return seen
until(b"\r\n")
a.sendall(b"a1 LOGIN alice@example.com alice-pw\r\n"); until(b"a1 OK")
a.sendall(b"a2 SELECT INBOX\r\n"); s = until(b"a2 OK"); assert b"* 0 EXISTS" in s, s
a.sendall(b"a3 IDLE\r\n"); until(b"+ idling\r\n")
smtp = smtplib.SMTP("127.0.0.1", {mx}, timeout=20)
smtp.sendmail("bob@example.net", ["alice@example.com"], b"Subject: pushed\r\n\r\nhello\r\n")
smtp.quit()
# The idling session has the mailbox read-write: the new message is
# \\Recent there (RFC 3501 2.3.2), and its count comes with EXISTS.
until(b"* 1 EXISTS\r\n* 1 RECENT\r\n")
b = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
b.login("alice@example.com", "alice-pw"); b.select("INBOX")
assert b.response("RECENT")[1] == [b"0"], b.response("RECENT")
typ, _ = b.store("1", "+FLAGS", "(\\Flagged)"); assert typ == "OK"
s = until(b")\r\n"); assert b"* 1 FETCH (FLAGS (\\Flagged \\Recent))" in s, s
typ, _ = b.store("1", "+FLAGS", "(\\Deleted)"); assert typ == "OK"
until(b")\r\n")
typ, _ = b.expunge(); assert typ == "OK"
b.logout()
until(b"* 1 EXPUNGE\r\n")
a.sendall(b"DONE\r\n"); until(b"a3 OK IDLE terminated\r\n")
a.sendall(b"a4 LOGOUT\r\n"); until(b"a4 OK")
print("pushed")
"#,
        imaps = imaps.port(),
        mx = mx.port()
    );
    assert_eq!(python(&script).trim(), "pushed");
}

/// A storage limit (`[imap] quota_mib`): GETQUOTAROOT reports use and
/// limit in KiB (RFC 9208), and once the account is full APPEND answers
/// NO [OVERQUOTA] and delivery 552 5.2.2 at RCPT, as Dovecot's LMTP does.
#[test]
fn quota_is_reported_and_enforced() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start_with(LISTENERS, "", "[imap]\nquota_mib = 1\n");
    let (mx, imaps) = (d.addrs[0], d.addrs[1]);
    let script = format!(
        r#"
import imaplib, smtplib, ssl, re
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
m.login("alice@example.com", "alice-pw")
typ, data = m.getquotaroot("INBOX"); assert typ == "OK", data
assert data == [[b'INBOX ""'], [b'"" (STORAGE 0 1024)']], data
smtp = smtplib.SMTP("127.0.0.1", {mx}, timeout=20)
big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100
smtp.sendmail("bob@example.net", ["alice@example.com"], big)
try:
    smtp.sendmail("bob@example.net", ["alice@example.com"], b"Subject: more\r\n\r\nx\r\n")
    raise SystemExit("accepted over quota")
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients["alice@example.com"]
    assert code == 552 and text.startswith(b"5.2.2"), (code, text)
smtp.quit()
typ, data = m.getquotaroot("INBOX"); assert typ == "OK", data
used = int(re.search(rb"STORAGE (\d+) 1024", data[1][0]).group(1))
assert used > 1024, data
typ, data = m.append("Drafts", None, None, b"Subject: draft\r\n\r\nx\r\n")
assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
m.logout()
print("enforced", used)
"#,
        imaps = imaps.port(),
        mx = mx.port()
    );
    let out = python(&script);
    assert!(out.trim().starts_with("enforced "), "{out}");
    assert!(d
        .log_text()
        .contains("552 5.2.2 <alice@example.com>: Mailbox full"));
}

/// The quota holds at delivery too: a message that would bring the
/// account more than a tenth over its limit (Dovecot's `quota_grace`)
/// gets 452 4.2.2 at the end of DATA although RCPT found room, one that
/// no room could hold 552 5.2.2, and neither leaves anything in the
/// mailbox; a smaller one is delivered.
#[test]
fn a_message_too_big_for_the_room_left_is_deferred_at_data() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start_with(LISTENERS, "", "[imap]\nquota_mib = 1\n");
    let (mx, imaps) = (d.addrs[0], d.addrs[1]);
    let script = format!(
        r#"
import imaplib, smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def of(subject, lines):
    return ("Subject: %s\r\n\r\n" % subject).encode() + (b"x" * 998 + b"\r\n") * lines
def refused(smtp, text):
    try:
        smtp.sendmail("bob@example.net", ["alice@example.com"], text)
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error[:5]
    raise SystemExit("accepted")
smtp = smtplib.SMTP("127.0.0.1", {mx}, timeout=20)
# 1.3 MB can never fit 1 MiB and its tenth of grace.
assert refused(smtp, of("huge", 1300)) == (552, b"5.2.2")
# 1.0 MB fits; RCPT then still finds room, but 0.2 MB more would not.
smtp.sendmail("bob@example.net", ["alice@example.com"], of("first", 1000))
assert refused(smtp, of("second", 200)) == (452, b"4.2.2")
smtp.sendmail("bob@example.net", ["alice@example.com"], b"Subject: small\r\n\r\nx\r\n")
smtp.quit()
m = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
m.login("alice@example.com", "alice-pw")
typ, data = m.select("INBOX"); assert typ == "OK" and data == [b"2"], data
typ, data = m.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
subjects = [p[1].strip() for p in data if isinstance(p, tuple)]
assert subjects == [b"Subject: first", b"Subject: small"], subjects
m.logout()
print("deferred")
"#,
        imaps = imaps.port(),
        mx = mx.port()
    );
    assert_eq!(python(&script).trim(), "deferred");
    let log = d.log_text();
    assert!(
        log.contains("mailbox of alice@example.com is full"),
        "{log}"
    );
    assert!(
        log.contains("message too big for the quota of alice@example.com"),
        "{log}"
    );
}
