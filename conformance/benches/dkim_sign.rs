//! Outbound DKIM signing on one core: messages signed per second with an
//! RSA-2048 key (Rspamd's layout, made by `openssl genpkey`), and with
//! RSA-2048 plus Ed25519 (dual signing), through the same
//! `postern_runtime_smol::dkim::Signer` the outbound filter uses. A
//! 4 KiB message with the usual header set. Target: 2,000 messages/s per
//! core (RSA-2048 alone), counted in this thread's CPU time; OpenSSL's
//! `speed rsa2048` is printed beside it as the machine's own ceiling.
//!
//! Run: `cargo bench -p postern-conformance --bench dkim_sign`

use postern_runtime_smol::config::dkim::DkimConfig;
use postern_runtime_smol::dkim::{Signed, Signer};
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUDGET: Duration = Duration::from_secs(4);
const TARGET: f64 = 2000.0;

fn message() -> Vec<u8> {
    let mut m = String::from(
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@remote.example>\r\nCc: carol@remote.example\r\n\
         Subject: quarterly figures\r\nDate: Tue, 01 Dec 2026 21:00:00 +0000\r\n\
         Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    while m.len() < 4096 {
        m.push_str("The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    m.into_bytes()
}

/// This thread's time on a CPU (Linux `schedstat`, nanoseconds): "per
/// core" stays true on a machine shared with other builds.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Messages signed per second of CPU time (wall time where schedstat is
/// missing).
fn rate(signer: &Signer, msg: &[u8]) -> f64 {
    let ours = |_: &str| true;
    // Warm up, and check it signs at all.
    assert!(matches!(signer.sign(msg, &ours), Signed::Header(..)));
    let start = Instant::now();
    let cpu0 = cpu_ns();
    let mut n = 0u64;
    while start.elapsed() < BUDGET {
        for _ in 0..50 {
            black_box(signer.sign(black_box(msg), &ours));
        }
        n += 50;
    }
    let secs = match (cpu0, cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => start.elapsed().as_secs_f64(),
    };
    n as f64 / secs
}

/// OpenSSL's own RSA-2048 signing rate on this machine (`openssl speed`,
/// CPU time), for comparison.
fn openssl_rsa2048() -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "2", "rsa2048"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa 2048"))?;
    // "rsa 2048 bits 0.000652s 0.000019s   1534.0  52631.6"
    line.split_whitespace().nth(5)?.parse().ok()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dkim = dir.path().join("rspamd/dkim");
    std::fs::create_dir_all(&dkim).expect("mkdir");
    let gen = |algo: &[&str], file: &str| {
        let ok = Command::new("openssl")
            .args(["genpkey"])
            .args(algo)
            .arg("-out")
            .arg(dkim.join(file))
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "openssl genpkey {file}");
    };
    gen(
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "rsa-2048-mail-example.com.private",
    );
    let cfg = DkimConfig {
        selector: "mail".into(),
        ed25519_selector: "ed25519".into(),
        dir: Some(dir.path().to_owned()),
        keys: Vec::new(),
        line: 0,
    };
    let msg = message();
    let rsa = Signer::load(&cfg).expect("rsa key");
    let r = rate(&rsa, &msg);
    println!(
        "dkim sign RSA-2048, {} B message, one core: {r:.0} messages/s ({:.2}x the 2,000/s target)",
        msg.len(),
        r / TARGET
    );
    gen(
        &["-algorithm", "ed25519"],
        "ed25519-ed25519-example.com.private",
    );
    let both = Signer::load(&cfg).expect("both keys");
    let r2 = rate(&both, &msg);
    println!("dkim sign RSA-2048 + Ed25519 (dual), one core: {r2:.0} messages/s");
    if let Some(o) = openssl_rsa2048() {
        println!(
            "openssl speed rsa2048 on this machine: {o:.0} signs/s (Postern signs {:.2}x that)",
            r / o
        );
    }
}
