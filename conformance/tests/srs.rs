//! SRS against Debian's postsrsd 1.10 with the same secret and domain:
//! each decodes what the other encodes, for odd, upper-case, `+`-tagged
//! and already-SRS senders; a message to an alias that forwards outside
//! reaches the smarthost (smtp-sink) with an SRS envelope sender that
//! postsrsd reverses; a bounce to that address is relayed back to the
//! original sender; forged and expired SRS addresses get 550.

mod common;
mod sink;

use common::{free_port, peer, tool, wait_for_port, Client, Daemon};
use postern_core::srs::Mailbox;
use postern_runtime_smol::srs::Srs;
use sink::{mail_from, relay_to, Sink};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DOMAIN: &str = "example.com";
const SECRETS: &str = "current-secret-Xy9\nolder-secret\n";

struct Postsrsd {
    child: Child,
    forward: u16,
    reverse: u16,
}

impl Postsrsd {
    fn start(secret: &Path) -> Postsrsd {
        let (forward, reverse) = (free_port(), free_port());
        let child = Command::new(tool("postsrsd"))
            .arg(format!("-s{}", secret.display()))
            .arg(format!("-d{DOMAIN}"))
            .args(["-l127.0.0.1", "-4"])
            .arg(format!("-f{forward}"))
            .arg(format!("-r{reverse}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postsrsd");
        wait_for_port(forward, "postsrsd forward");
        wait_for_port(reverse, "postsrsd reverse");
        Postsrsd {
            child,
            forward,
            reverse,
        }
    }

    /// One tcp_table lookup: `get <address>` -> `200 <answer>` or `500 ...`.
    fn get(port: u16, address: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect postsrsd");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // tcp_table(5): the key is URL-encoded (%XX) where needed.
        let mut key = String::new();
        for b in address.bytes() {
            if b.is_ascii_alphanumeric() || b"@.=-_+/".contains(&b) {
                key.push(b as char);
            } else {
                key.push_str(&format!("%{b:02X}"));
            }
        }
        s.write_all(format!("get {key}\n").as_bytes())
            .expect("write");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("read");
        let line = line.trim_end();
        let decoded = url_decode(line.get(4..).unwrap_or(""));
        match line.get(..3) {
            Some("200") => Ok(decoded),
            _ => Err(line.to_owned()),
        }
    }

    fn forward(&self, address: &str) -> Result<String, String> {
        Self::get(self.forward, address)
    }

    fn reverse(&self, address: &str) -> Result<String, String> {
        Self::get(self.reverse, address)
    }
}

impl Drop for Postsrsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn split(address: &str) -> Mailbox {
    let (l, d) = address.rsplit_once('@').expect("@");
    Mailbox {
        local: l.into(),
        domain: d.into(),
    }
}

fn ours() -> Srs {
    let secrets: Vec<Vec<u8>> = SECRETS.lines().map(|l| l.as_bytes().to_vec()).collect();
    Srs::new(DOMAIN, &secrets)
}

const SENDERS: &[&str] = &[
    "user@other.org",
    "John.Doe@Other.ORG",
    "first.last+tag@lists.example.net",
    "o'neil@irish.test",
    "a=b=c@weird.test",
    "x_y-z!#$&*%@odd.test",
    "UPPER+CASE@SHOUT.TEST",
    "1234567890@digits.test",
    "SRS0=abcd=AB=orig.test=bob@first.test",
    "srs0=WXyz=7Q=Orig.Test=Bob+x@First.Test",
    "SRS1=abcd=first.test==efgh=CD=orig.test=carol@second.test",
];

#[test]
fn postern_and_postsrsd_decode_each_others_addresses() {
    if !peer("postsrsd") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("postsrsd.secret");
    std::fs::write(&secret, SECRETS).expect("secret");
    let p = Postsrsd::start(&secret);
    let srs = ours();
    for &sender in SENDERS {
        let theirs = p.forward(sender).expect("postsrsd forward");
        let mine = srs.forward(&split(sender), now()).expect("postern forward");
        // The same day on both sides (unless the test straddles midnight).
        assert_eq!(mine.to_string(), theirs, "encoding of {sender}");
        // Each reverses the other's, and a lower-cased copy.
        let back_mine = srs
            .reverse(&split(&theirs).local, now())
            .expect("postern reverse");
        let back_theirs = p.reverse(&mine.to_string()).expect("postsrsd reverse");
        assert_eq!(back_mine.to_string(), back_theirs, "reversal of {theirs}");
        if !sender.to_ascii_uppercase().starts_with("SRS") {
            assert_eq!(back_theirs, sender);
        }
        let lower = theirs.to_ascii_lowercase();
        let back = srs
            .reverse(&split(&lower).local, now())
            .expect("lower-cased");
        assert_eq!(
            back.to_string().to_ascii_lowercase(),
            back_theirs.to_ascii_lowercase(),
            "lower-cased {lower}"
        );
    }
    // Encoded with the older secret (second line): both still decode it.
    let old = Srs::new(DOMAIN, &[b"older-secret".to_vec()]);
    let by_old = old
        .forward(&split("late@bounce.test"), now())
        .expect("old")
        .to_string();
    assert_eq!(p.reverse(&by_old).as_deref(), Ok("late@bounce.test"));
    assert_eq!(
        srs.reverse(&split(&by_old).local, now())
            .expect("older secret")
            .to_string(),
        "late@bounce.test"
    );
    // 22 days old, or a forged hash: both refuse.
    let stale = srs
        .forward(&split("old@past.test"), now() - 22 * 86_400)
        .expect("stale")
        .to_string();
    assert!(p.reverse(&stale).is_err());
    assert!(srs.reverse(&split(&stale).local, now()).is_err());
    let good = srs
        .forward(&split("v@x.test"), now())
        .expect("good")
        .to_string();
    let forged = format!("SRS0=AAAA{}", &good[9..]);
    assert!(p.reverse(&forged).is_err(), "{forged}");
    assert!(srs.reverse(&split(&forged).local, now()).is_err());
    // A sender in our own domain is not rewritten (postsrsd answers it as is).
    assert_eq!(
        p.forward("alice@example.com").as_deref(),
        Ok("alice@example.com")
    );
}

const MX: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n";

fn send(addr: std::net::SocketAddr, from: &str, to: &str, subject: &str) -> Vec<String> {
    let mut c = Client::connect(addr).expect("connect");
    let mut replies = vec![c.reply().expect("greeting")];
    replies.push(c.cmd("EHLO sender.test").expect("ehlo"));
    replies.push(c.cmd(&format!("MAIL FROM:<{from}>")).expect("mail"));
    let rcpt = c.cmd(&format!("RCPT TO:<{to}>")).expect("rcpt");
    let accepted = rcpt.starts_with("250");
    replies.push(rcpt);
    if accepted {
        replies.push(c.cmd("DATA").expect("data"));
        c.send(
            format!(
                "From: <{}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n.\r\n",
                if from.is_empty() {
                    "mailer-daemon@remote.example"
                } else {
                    from
                }
            )
            .as_bytes(),
        )
        .expect("body");
        replies.push(c.reply().expect("end of data"));
    }
    let _ = c.cmd("QUIT");
    replies
}

#[test]
fn forwarded_mail_gets_an_srs_sender_and_its_bounce_goes_back() {
    if !peer("postsrsd") || !peer("smtp-sink") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("postsrsd.secret");
    std::fs::write(&secret, SECRETS).expect("secret");
    let p = Postsrsd::start(&secret);
    let sink = Sink::start(dir.path());
    let extra = format!(
        "{}[srs]\ndomain = \"{DOMAIN}\"\nsecret_file = \"{}\"\n\
         exclude_domains = [\"partner.test\", \".corp.test\"]\n",
        relay_to(sink.port),
        secret.display()
    );
    let d = Daemon::start_with(MX, "fwd@example.com friend@remote.example\n", &extra);
    let mx = d.addrs[0];

    // An outside sender to the forwarding alias: the copy leaves with an
    // SRS0 envelope sender at our domain, which postsrsd reverses.
    let r = send(
        mx,
        "Sender+Tag@Outside.test",
        "fwd@example.com",
        "forward me",
    );
    assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    let (_, m) = sink.wait_for("Subject: forward me", Duration::from_secs(30));
    let envelope = mail_from(&m);
    assert!(
        envelope.starts_with("SRS0=") && envelope.ends_with("@example.com"),
        "{envelope}"
    );
    assert_eq!(
        p.reverse(&envelope).as_deref(),
        Ok("Sender+Tag@outside.test")
    );
    assert!(String::from_utf8_lossy(&m).contains("X-Rcpt-Args: <friend@remote.example>"));

    // A sender in our own domain keeps its address.
    let r = send(mx, "alice@example.com", "fwd@example.com", "our own sender");
    assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    let (_, m) = sink.wait_for("Subject: our own sender", Duration::from_secs(30));
    assert_eq!(mail_from(&m), "alice@example.com");

    // Senders in `exclude_domains` keep theirs (postsrsd's
    // SRS_EXCLUDE_DOMAINS): the domain itself, and under `.corp.test`
    // every subdomain but not corp.test itself.
    for (sender, kept) in [
        ("bob@partner.test", true),
        ("eve@eu.corp.test", true),
        ("ann@corp.test", false),
        ("joe@sub.partner.test", false),
    ] {
        let subject = format!("excluded? {sender}");
        let r = send(mx, sender, "fwd@example.com", &subject);
        assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
        let (_, m) = sink.wait_for(&format!("Subject: {subject}"), Duration::from_secs(30));
        let envelope = mail_from(&m);
        if kept {
            assert_eq!(envelope, sender);
        } else {
            assert!(envelope.starts_with("SRS0="), "{sender}: {envelope}");
            assert_eq!(p.reverse(&envelope).as_deref(), Ok(sender));
        }
    }

    // The bounce of the forwarded copy: to the SRS address, from <>,
    // relayed to the original sender.
    let r = send(mx, "", &envelope, "bounce back");
    assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    let (_, m) = sink.wait_for("Subject: bounce back", Duration::from_secs(30));
    let text = String::from_utf8_lossy(&m);
    assert!(
        text.contains("X-Rcpt-Args: <Sender+Tag@outside.test>"),
        "{text}"
    );
    assert_eq!(mail_from(&m), "");

    // postsrsd's own encoding is reversed by Postern too.
    let theirs = p.forward("someone@elsewhere.test").expect("postsrsd");
    let r = send(mx, "", &theirs, "their encoding");
    assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    let (_, m) = sink.wait_for("Subject: their encoding", Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&m).contains("X-Rcpt-Args: <someone@elsewhere.test>"));

    // Forged, malformed and expired SRS addresses: 550 at RCPT.
    let forged = format!("SRS0=AAAA{}", &envelope[9..]);
    let stale = ours()
        .forward(&split("old@past.test"), now() - 30 * 86_400)
        .expect("stale")
        .to_string();
    for bad in [forged.as_str(), "SRS0=abc@example.com", stale.as_str()] {
        let r = send(mx, "", bad, "never");
        let rcpt = r.last().cloned().unwrap_or_default();
        assert!(
            rcpt.starts_with("550 5.1.1") && rcpt.contains("invalid SRS address"),
            "{bad}: {r:?}"
        );
    }
}

#[test]
fn a_forwarded_copy_that_bounces_is_returned_to_the_original_sender() {
    if !peer("smtp-sink") || !peer("openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("postsrsd.secret");
    std::fs::write(&secret, SECRETS).expect("secret");
    // The smarthost refuses every recipient for good.
    let hard = Sink::start_with(dir.path(), &["-f", "RCPT"]);
    // Postern's bounces are DKIM-signed too (From MAILER-DAEMON@mx.example.com:
    // example.com's key, the parent domain's).
    let key = dir.path().join("example.com.private");
    let made = Command::new(tool("openssl"))
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "openssl genpkey");
    let extra = format!(
        "{}[srs]\ndomain = \"{DOMAIN}\"\nsecret_file = \"{}\"\n\
         [dkim]\n[[dkim.key]]\ndomain = \"example.com\"\nrsa = \"{}\"\n",
        relay_to(hard.port),
        secret.display(),
        key.display()
    );
    let d = Daemon::start_with(MX, "fwd@example.com ghost@remote.example\n", &extra);
    let r = send(
        d.addrs[0],
        "writer@outside.test",
        "fwd@example.com",
        "refused downstream",
    );
    assert!(r.last().is_some_and(|l| l.starts_with("250")), "{r:?}");
    // The forwarded copy is refused; Postern's bounce goes to the SRS
    // sender, which it reverses: the bounce is relayed to the writer.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = d.log_text();
        if log.contains("to=<writer@outside.test>") {
            assert!(log.contains("to=<ghost@remote.example>"), "{log}");
            // The forwarded copy (From an outside domain) went unsigned;
            // the bounce (From MAILER-DAEMON@mx.example.com) was signed.
            assert!(
                log.contains("not DKIM-signed: no key for the From domain outside.test"),
                "{log}"
            );
            assert!(
                log.contains("DKIM-Signature added (d=example.com)"),
                "{log}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no bounce to the writer:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
