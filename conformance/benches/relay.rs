//! Submission to smarthost: 1,000 messages submitted by 10 clients
//! (Python smtplib: STARTTLS, AUTH LOGIN, as Roundcube does) and relayed
//! to Postfix's smtp-sink, through Postern and through Postfix (with TLS
//! and Dovecot SASL, the same work), in one run. Prints messages per
//! second, from the first submission until the sink has them all.
//!
//! Run: `cargo bench -p postern-conformance --bench relay`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{free_port, tool, Daemon};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLIENTS: usize = 10;
const PER_CLIENT: usize = 100;

fn sink(dir: &Path) -> (Child, u16) {
    let port = free_port();
    std::fs::create_dir_all(dir).expect("dir");
    let _ = Command::new("chown").arg("postfix").arg(dir).status();
    let child = Command::new(tool("smtp-sink"))
        .args(["-u", "postfix", "-d"])
        .arg(format!("{}/%s.", dir.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("1000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink");
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Submits CLIENTS x PER_CLIENT messages; returns when all got 250.
fn submit(port: u16, user: &str, password: &str) {
    let script = format!(
        r#"
import smtplib, ssl, threading
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
body = "x" * 76 + "\r\n"
msg = ("From: {user}\r\nTo: friend@remote.example\r\nSubject: bench\r\n\r\n" + body * 50).encode()
errors = []
def worker(n):
    try:
        s = smtplib.SMTP("127.0.0.1", {port}, local_hostname="bench.example.com")
        s.starttls(context=ctx); s.ehlo("bench.example.com")
        s.user, s.password = "{user}", "{password}"
        s.auth("LOGIN", s.auth_login)
        for i in range({per}):
            s.sendmail("{user}", ["friend@remote.example"], msg)
        s.quit()
    except Exception as e:
        errors.append(repr(e))
ts = [threading.Thread(target=worker, args=(i,)) for i in range({clients})]
[t.start() for t in ts]; [t.join() for t in ts]
assert not errors, errors
"#,
        per = PER_CLIENT,
        clients = CLIENTS
    );
    common::python(&script);
}

fn wait_for(dir: &Path, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(dir) < n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for t in ["smtp-sink", "postfix", "dovecot", "python3"] {
        if !tool(t).is_file() && !Path::new("/usr/bin/python3").is_file() {
            println!("relay bench: {t} is needed (conformance/install-peers); nothing measured");
            return;
        }
    }
    let total = CLIENTS * PER_CLIENT;
    println!("Relay: {total} messages ({CLIENTS} clients x {PER_CLIENT}, STARTTLS + AUTH LOGIN) submitted and relayed to smtp-sink");
    let work = tempfile::tempdir().expect("dir");
    let _ = Command::new("chmod").arg("755").arg(work.path()).status();

    // Postern.
    let (mut s1, p1) = sink(&work.path().join("sink-postern"));
    let d = Daemon::start_with(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"submission\"\ntls = \"starttls\"\n",
        "",
        &format!("[relay]\nhost = \"127.0.0.1\"\nport = {p1}\nrequire_tls = false\nconcurrency = 20\nscan_interval_secs = 1\n"),
    );
    let start = Instant::now();
    submit(d.addrs[0].port(), common::USERS[0].0, common::USERS[0].1);
    let submitted = start.elapsed();
    let ok = wait_for(&work.path().join("sink-postern"), total);
    let t_postern = start.elapsed();
    drop(d);
    let _ = s1.kill();
    let _ = s1.wait();
    println!(
        "  Postern: submitted in {:.2} s, all at the sink after {:.2} s = {:>6.0} msg/s{}",
        submitted.as_secs_f64(),
        t_postern.as_secs_f64(),
        total as f64 / t_postern.as_secs_f64(),
        if ok { "" } else { " (NOT all relayed)" }
    );

    // Postfix with TLS and Dovecot SASL, relaying to its own sink.
    let (mut s2, p2) = sink(&work.path().join("sink-postfix"));
    let pf = common::smarthost::Smarthost::start_relaying(Some(p2));
    let start = Instant::now();
    submit(
        pf.port,
        common::smarthost::USER,
        common::smarthost::PASSWORD,
    );
    let submitted = start.elapsed();
    let ok = wait_for(&work.path().join("sink-postfix"), total);
    let t_postfix = start.elapsed();
    if !ok {
        let log = std::fs::read_to_string(pf.root().join("log/postfix.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        println!(
            "  Postfix log (last lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    drop(pf);
    let _ = s2.kill();
    let _ = s2.wait();
    println!(
        "  Postfix: submitted in {:.2} s, all at the sink after {:.2} s = {:>6.0} msg/s{}",
        submitted.as_secs_f64(),
        t_postfix.as_secs_f64(),
        total as f64 / t_postfix.as_secs_f64(),
        if ok { "" } else { " (NOT all relayed)" }
    );
    println!(
        "  ratio Postern/Postfix: {:.2}x   target at least 1x",
        t_postfix.as_secs_f64() / t_postern.as_secs_f64()
    );
}
