//! Outbound DKIM with real peers: a message submitted with AUTH reaches
//! the smarthost (Postfix's smtp-sink) signed once by RSA-2048 and once by
//! Ed25519, and Python's dkimpy verifies both with our public keys (no
//! DNS: its `dnsfunc` answers from the test's keys). Keys come from
//! docker-mailserver's layouts: Rspamd's (`openssl genpkey`, PKCS#8) and
//! OpenDKIM's (`opendkim-genkey`, with KeyTable and SigningTable naming
//! container paths). A From domain without a key is sent unsigned; a
//! 1024-bit key or an Ed25519 key in the RSA place is a check-config error.

mod common;
mod sink;

use common::{peer, tool, Daemon};
use sink::{relay_to, strip_sink_headers, Sink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const PYTHON: &str = "/usr/bin/python3";

/// Runs a command and returns its stdout, failing the test on error.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The base64 of a key's public half in DER (SubjectPublicKeyInfo for
/// RSA; the raw 32 bytes for Ed25519, as RFC 8463 puts them in DNS).
fn public_b64(private: &Path, ed25519: bool) -> String {
    let der = run(Command::new(tool("openssl"))
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(private));
    let der = if ed25519 {
        der[der.len() - 32..].to_vec()
    } else {
        der
    };
    let b64 = run(Command::new(tool("base64"))
        .arg("-w0")
        .stdin(Stdio::piped())
        .arg("/dev/stdin")
        .stdin({
            let p = private.with_extension("pubder");
            std::fs::write(&p, &der).expect("pub");
            std::fs::File::open(&p).expect("open")
        }));
    String::from_utf8(b64).expect("base64")
}

/// dkimpy's verdict on each DKIM-Signature of `msg`, with `records`
/// (`selector._domainkey.domain` -> TXT) as the only DNS.
fn dkimpy(dir: &Path, msg: &[u8], records: &[(String, String)]) -> String {
    let file = dir.join("signed.eml");
    // smtp-sink writes its dump with bare LF line ends: back to CRLF.
    let text = String::from_utf8_lossy(msg).replace("\r\n", "\n");
    std::fs::write(&file, text.replace('\n', "\r\n")).expect("write");
    let mut table = String::new();
    for (name, txt) in records {
        table.push_str(&format!("{name}\t{txt}\n"));
    }
    std::fs::write(dir.join("records.tsv"), table).expect("records");
    let script = r#"
import sys, dkim
msg = open(sys.argv[1], 'rb').read()
records = {}
for line in open(sys.argv[2]):
    name, txt = line.rstrip('\n').split('\t', 1)
    records[name] = txt.encode()
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    return records.get(n.rstrip('.').lower())
d = dkim.DKIM(msg)
count = sum(1 for l in msg.split(b'\r\n') if l.lower().startswith(b'dkim-signature:'))
for i in range(count):
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        print('error', i, e)
        ok = False
    tags = d.signature_fields
    print('sig', i, tags.get(b'a', b'').decode(), tags.get(b'd', b'').decode(), tags.get(b's', b'').decode(), 'pass' if ok else 'fail', tags.get(b'h', b'').decode().replace(' ', ''), 'l=' + str(b'l' in tags))
"#;
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .arg(&file)
        .arg(dir.join("records.tsv"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn submit(server: std::net::SocketAddr, from_header: &str, to: &str, subject: &str) {
    let out = Command::new(tool("swaks"))
        .arg("--server")
        .arg(server.to_string())
        .args(["--helo", "laptop.example.com", "--tls", "--auth", "PLAIN"])
        .args([
            "--auth-user",
            "alice@example.com",
            "--auth-password",
            "alice-pw",
        ])
        .args(["--from", "alice@example.com", "--to", to])
        .args(["--header", &format!("From: {from_header}")])
        .args(["--header", &format!("Subject: {subject}")])
        .args(["--header", "Cc: carol@remote.example"])
        .args([
            "--body",
            "Hello,\r\n\r\nsigned   body  with  spaces \r\n\r\n\r\n",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("swaks");
    assert!(
        out.status.success(),
        "swaks: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docker-mailserver's config folder with an Rspamd RSA-2048 and Ed25519
/// key for example.com and an OpenDKIM key (opendkim-genkey) for
/// example.org. Returns the DNS records.
fn dms_keys(dms: &Path) -> Vec<(String, String)> {
    let rspamd = dms.join("rspamd/dkim");
    std::fs::create_dir_all(&rspamd).expect("mkdir");
    let rsa = rspamd.join("rsa-2048-mail-example.com.private.txt");
    run(Command::new(tool("openssl"))
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&rsa));
    let ed = rspamd.join("ed25519-ed25519-example.com.private");
    run(Command::new(tool("openssl"))
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&ed));
    let keys = dms.join("opendkim/keys/example.org");
    std::fs::create_dir_all(&keys).expect("mkdir");
    run(Command::new(tool("opendkim-genkey"))
        .args(["-b", "2048", "-s", "mail", "-d", "example.org", "-D"])
        .arg(&keys));
    std::fs::write(
        dms.join("opendkim/KeyTable"),
        "mail._domainkey.example.org example.org:mail:/etc/opendkim/keys/example.org/mail.private\n",
    )
    .expect("KeyTable");
    std::fs::write(
        dms.join("opendkim/SigningTable"),
        "*@example.org mail._domainkey.example.org\n",
    )
    .expect("SigningTable");
    // opendkim-genkey's own DNS record: `mail IN TXT ( "v=DKIM1; h=sha256; k=rsa; " "p=..." )`.
    let txt = std::fs::read_to_string(keys.join("mail.txt")).expect("mail.txt");
    let mut record = String::new();
    let mut rest = txt.as_str();
    while let Some(i) = rest.find('"') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('"') else { break };
        record.push_str(&after[..j]);
        rest = &after[j + 1..];
    }
    assert!(record.contains("p="), "{txt}");
    vec![
        (
            "mail._domainkey.example.com".into(),
            format!("v=DKIM1; k=rsa; p={}", public_b64(&rsa, false)),
        ),
        (
            "ed25519._domainkey.example.com".into(),
            format!("v=DKIM1; k=ed25519; p={}", public_b64(&ed, true)),
        ),
        ("mail._domainkey.example.org".into(), record),
    ]
}

const SUBMISSION: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"submission\"\ntls = \"starttls\"\n";

#[test]
fn submitted_mail_reaches_the_smarthost_signed_and_dkimpy_verifies_it() {
    if !peer("swaks") || !peer("smtp-sink") || !peer("opendkim-genkey") || !peer("openssl") {
        return;
    }
    if !Path::new(PYTHON).is_file() || !dkimpy_installed() {
        return;
    }
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let dms = keys_dir.path().join("docker-mailserver");
    let records = dms_keys(&dms);
    let sink = Sink::start(keys_dir.path());
    let extra = format!(
        "{}[dkim]\ndir = \"{}\"\n",
        relay_to(sink.port),
        dms.display()
    );
    let d = Daemon::start_with(SUBMISSION, "info@example.org alice@example.com\n", &extra);
    let s = d.addrs[0];

    // example.com: Rspamd's RSA-2048 and Ed25519 keys, both verify.
    submit(
        s,
        "Alice <alice@example.com>",
        "friend@remote.example",
        "signed twice",
    );
    let (_, raw) = sink.wait_for("Subject: signed twice", Duration::from_secs(30));
    let msg = strip_sink_headers(&raw);
    let text = String::from_utf8_lossy(&msg).into_owned();
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
    let verdict = dkimpy(keys_dir.path(), &msg, &records);
    assert!(
        verdict.contains("sig 0 rsa-sha256 example.com mail pass"),
        "{verdict}\n{text}"
    );
    assert!(
        verdict.contains("sig 1 ed25519-sha256 example.com ed25519 pass"),
        "{verdict}"
    );
    assert!(
        verdict.contains("l=False") && !verdict.contains("l=True"),
        "{verdict}"
    );
    let h = verdict
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(6))
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(h.starts_with("from:") || h.contains(":from"), "{h}");
    assert_eq!(h.matches("from").count(), 2, "From over-signed: {h}");
    assert!(
        !h.contains("reply-to") && !h.contains("references"),
        "absent fields unsigned: {h}"
    );
    assert!(text.contains("c=relaxed/relaxed"), "{text}");

    // A changed body no longer verifies (the test can fail).
    let tampered = text.replacen("signed   body", "signed body!", 1);
    let verdict = dkimpy(keys_dir.path(), tampered.as_bytes(), &records);
    assert!(
        verdict.contains("sig 0 rsa-sha256 example.com mail fail"),
        "{verdict}"
    );

    // example.org: OpenDKIM's layout (KeyTable paths under /etc/opendkim).
    submit(
        s,
        "Info <info@example.org>",
        "friend@remote.example",
        "opendkim layout",
    );
    let (_, raw) = sink.wait_for("Subject: opendkim layout", Duration::from_secs(30));
    let msg = strip_sink_headers(&raw);
    let verdict = dkimpy(keys_dir.path(), &msg, &records);
    assert!(
        verdict.contains("sig 0 rsa-sha256 example.org mail pass"),
        "{verdict}\n{}",
        String::from_utf8_lossy(&msg)
    );
    assert_eq!(verdict.lines().count(), 1, "{verdict}");

    // A From domain without a key: sent unsigned, with a log line.
    submit(
        s,
        "Someone <someone@unsigned.example>",
        "friend@remote.example",
        "no key here",
    );
    let (_, raw) = sink.wait_for("Subject: no key here", Duration::from_secs(30));
    assert!(!String::from_utf8_lossy(&raw).contains("DKIM-Signature:"));
    assert!(
        d.log_text()
            .contains("not DKIM-signed: no key for the From domain unsigned.example"),
        "{}",
        d.log_text()
    );
}

fn dkimpy_installed() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import dkim"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("POSTERN_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("python3-dkim is required (POSTERN_REQUIRE_PEERS=1) but not installed");
        }
        eprintln!("SKIPPED: python3-dkim is not installed");
    }
    ok
}

/// `postern check-config` on a `[dkim]` naming `key` for example.com.
fn check_config_with_key(dir: &Path, key: &Path) -> (bool, String) {
    std::fs::write(
        dir.join("accounts.cf"),
        "alice@example.com|{SHA512-CRYPT}$6$x$y\n",
    )
    .expect("accounts");
    let cfg = dir.join("postern.toml");
    std::fs::write(
        &cfg,
        format!(
            "hostname = \"mx.example.com\"\ndata_dir = \"mail\"\n[directory]\naccounts = \"accounts.cf\"\n\
             [dkim]\n[[dkim.key]]\ndomain = \"example.com\"\nrsa = \"{}\"\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n",
            key.display()
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_postern-test-daemon"))
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("check-config");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn keys_of_the_wrong_size_or_type_are_check_config_errors() {
    if !peer("openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small.private");
    run(Command::new(tool("openssl"))
        .args(["genrsa", "-traditional", "-out"])
        .arg(&small)
        .arg("1024"));
    let (ok, out) = check_config_with_key(dir.path(), &small);
    assert!(!ok, "{out}");
    assert!(
        out.contains("dkim") && out.contains("at least 2048 bits"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");

    let ed = dir.path().join("ed.private");
    run(Command::new(tool("openssl"))
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&ed));
    let (ok, out) = check_config_with_key(dir.path(), &ed);
    assert!(
        !ok && out.contains("an Ed25519 key where an RSA key is expected"),
        "{out}"
    );

    let garbage = dir.path().join("garbage.private");
    std::fs::write(&garbage, "not a key\n").expect("write");
    let (ok, out) = check_config_with_key(dir.path(), &garbage);
    assert!(!ok && out.contains("not a PEM private key"), "{out}");

    // A PKCS#1 2048-bit key is fine.
    let good = dir.path().join("good.private");
    run(Command::new(tool("openssl"))
        .args(["genrsa", "-traditional", "-out"])
        .arg(&good)
        .arg("2048"));
    let (ok, out) = check_config_with_key(dir.path(), &good);
    assert!(ok, "{out}");
}
