//! Attacks from one address that must not cost the others more than a
//! bounded amount, against the real daemon on loopback:
//! - an IMAP flood fills its per-address cap, then its next connection is
//!   closed, while the MX still greets that same address (its own budget)
//!   and a user from another address logs in over IMAPS;
//! - SMTP AUTH guessing: the third failure on a connection ends it
//!   (`421 4.7.0`), and the real user logs in at once from another address.

mod common;

use common::{peer, python, Daemon};

const LISTENERS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"submission\"\ntls = \"starttls\"\n";

/// Per-address IMAP cap for the test (the default is 100).
const CAP: usize = 8;

#[test]
fn an_imap_flood_from_one_address_leaves_the_mx_and_other_users_alone() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start_with(
        LISTENERS,
        "",
        &format!("[imap]\nmax_connections_per_client = {CAP}\n"),
    );
    let (mx, imap) = (d.addrs[0].port(), d.addrs[1].port());
    let script = format!(
        r#"
import imaplib, socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def imaps(src):
    s = socket.create_connection(("127.0.0.1", {imap}), 10, source_address=(src, 0))
    t = ctx.wrap_socket(s, server_hostname="localhost")
    line = t.recv(200)
    assert line.startswith(b"* OK"), line
    return t
held = [imaps("127.0.0.2") for _ in range({CAP})]
print("held", len(held))
try:
    imaps("127.0.0.2")
    print("extra admitted")
except (ssl.SSLError, ConnectionError, OSError, AssertionError) as e:
    print("extra refused")
mx = socket.create_connection(("127.0.0.1", {mx}), 10, source_address=("127.0.0.2", 0))
print("mx", mx.recv(200).decode().split(" ")[0])
class M(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=("127.0.0.3", 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
m = M("127.0.0.1", {imap}, ssl_context=ctx)
typ, _ = m.login("alice@example.com", "alice-pw")
print("other address login", typ)
m.logout()
held[0].close()
"#
    );
    let out = python(&script);
    assert!(out.contains(&format!("held {CAP}")), "{out}");
    assert!(out.contains("extra refused"), "{out}");
    assert!(out.contains("mx 220"), "{out}");
    assert!(out.contains("other address login OK"), "{out}");
    assert!(
        d.log_text()
            .contains("connection refused: TooManyConnections { ip: 127.0.0.2 }"),
        "{}",
        d.log_text()
    );
}

#[test]
fn smtp_auth_guessing_is_cut_off_and_the_user_still_logs_in_elsewhere() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let submission = d.addrs[2].port();
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", {submission}, source_address=("127.0.0.4", 0), timeout=30)
s.starttls(context=ctx); s.ehlo()
codes = []
for i in range(5):
    try:
        s.user, s.password = "alice@example.com", "guess-%d" % i
        s.auth("PLAIN", s.auth_plain)
        codes.append("235")
    except smtplib.SMTPAuthenticationError as e:
        codes.append(str(e.smtp_code))
    except smtplib.SMTPServerDisconnected:
        codes.append("closed")
        break
print("guesser", " ".join(codes))
u = smtplib.SMTP("127.0.0.1", {submission}, source_address=("127.0.0.5", 0), timeout=30)
u.starttls(context=ctx); u.ehlo()
print("user", u.login("alice@example.com", "alice-pw")[0])
u.quit()
"#
    );
    let out = python(&script);
    // Three 535s; the 421 that followed the third is what the fourth try
    // reads, and the connection is gone.
    assert!(out.contains("guesser 535 535 535 421 closed"), "{out}");
    assert!(out.contains("user 235"), "{out}");
}
