//! Outbound DKIM signing on one core: messages signed per second with an
//! RSA-2048 key (Rspamd's layout, made by `openssl genpkey`), and with
//! RSA-2048 plus Ed25519 (dual signing), through the same
//! `postern_runtime_smol::dkim::Signer` the outbound filter uses. A
//! 4 KiB message with the usual header set. Target: 2,000 messages/s per
//! core (RSA-2048 alone), counted in this thread's CPU time; OpenSSL's
//! `speed rsa2048` is printed beside it as the machine's own ceiling.
//!
//! Beside the full per-message path it measures the key operation alone
//! (mail-auth's `RsaKey` / `Ed25519Key` over ring, signing a 32-byte
//! input: what every message costs at the least), so the share of the
//! rest (finding the author, canonicalisation, body hash, the header) is
//! visible.
//!
//! Run: `cargo bench -p postern-conformance --bench dkim_sign`
//! (`DKIM_BENCH_ONLY=4` runs the fifth case alone, for `perf record`).

use mail_auth::common::crypto::SigningKey;
use mail_auth::common::headers::{HeaderWriter as _, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use postern_runtime_smol::config::dkim::DkimConfig;
use postern_runtime_smol::dkim::{load_ed25519, load_rsa, Signed, Signer};
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUDGET: Duration = Duration::from_secs(4);
const ROUNDS: u32 = 4;
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

/// One measured case: a name and one unit of work.
type Case<'a> = (&'a str, Box<dyn FnMut() + 'a>);

/// Runs the cases in turns ([`ROUNDS`] rounds of [`BUDGET`] / `ROUNDS`
/// each, interleaved, so a neighbour's build slows them alike); calls per
/// second of this thread's CPU time for each.
fn interleaved(cases: &mut [Case<'_>]) -> Vec<f64> {
    let mut done = vec![(0u64, 0f64); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in cases.iter_mut().enumerate() {
            let (n, secs) = per_cpu_second(&mut **f, BUDGET / ROUNDS);
            done[i].0 += n;
            done[i].1 += secs;
        }
    }
    done.iter().map(|(n, s)| *n as f64 / s).collect()
}

/// Runs `f` for `budget`: calls made and this thread's CPU seconds
/// (wall time where schedstat is missing).
fn per_cpu_second(f: &mut dyn FnMut(), budget: Duration) -> (u64, f64) {
    let start = Instant::now();
    let cpu0 = cpu_ns();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..20 {
            f();
        }
        n += 20;
    }
    let secs = match (cpu0, cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => start.elapsed().as_secs_f64(),
    };
    (n, secs)
}

/// mail-auth's own hashing (one digest call per byte of a relaxed body),
/// as Postern signed before its buffered body hash: the comparison.
struct Unbuffered<'a, K>(&'a K);

impl<K: SigningKey> SigningKey for Unbuffered<'_, K> {
    type Hasher = K::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

/// Signs `msg` with mail-auth's signer over `key` (the same header list
/// and canonicalisation as Postern's signer).
fn plain_sign(key: impl SigningKey, msg: &[u8]) -> Option<String> {
    DkimSigner::from_key(key)
        .domain("example.com")
        .selector("mail")
        .headers(SIGNED)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(msg)
        .ok()
        .map(|s| s.to_header())
}

/// The `h=` list Postern's signer uses for [`message`].
const SIGNED: [&str; 9] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "From",
];

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
    let ed_dir = tempfile::tempdir().expect("tempdir");
    let gen = |dir: &std::path::Path, algo: &[&str], file: &str| {
        let dkim = dir.join("rspamd/dkim");
        std::fs::create_dir_all(&dkim).expect("mkdir");
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
        dkim.join(file)
    };
    let rsa_file = gen(
        dir.path(),
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "rsa-2048-mail-example.com.private",
    );
    let cfg = |d: &std::path::Path| DkimConfig {
        selector: "mail".into(),
        ed25519_selector: "ed25519".into(),
        dir: Some(d.to_owned()),
        keys: Vec::new(),
        line: 0,
    };
    let msg = message();
    let ours = |_: &str| true;
    let rsa = Signer::load(&cfg(dir.path())).expect("rsa key");
    assert!(matches!(rsa.sign(&msg, &ours), Signed::Header(..)));
    // Ed25519 alone (another folder), and both keys (dual signing).
    let ed_file = gen(
        ed_dir.path(),
        &["-algorithm", "ed25519"],
        "ed25519-ed25519-example.com.private",
    );
    let ed_only = Signer::load(&cfg(ed_dir.path())).expect("ed25519 key");
    assert!(matches!(ed_only.sign(&msg, &ours), Signed::Header(..)));
    std::fs::copy(
        &ed_file,
        dir.path()
            .join("rspamd/dkim/ed25519-ed25519-example.com.private"),
    )
    .expect("copy");
    let both = Signer::load(&cfg(dir.path())).expect("both keys");
    let raw_rsa = load_rsa(&rsa_file).expect("rsa key");
    let raw_ed = load_ed25519(&ed_file).expect("ed25519 key");
    assert!(plain_sign(Unbuffered(&raw_rsa), &msg).is_some());
    let input = [7u8; 32];
    let mut cases: Vec<Case<'_>> = vec![
        (
            "RSA-2048 key operation alone (mail-auth's RsaKey over ring, 32-byte input)",
            Box::new(|| {
                black_box(raw_rsa.sign(black_box(&input[..])).ok());
            }),
        ),
        (
            "Postern's signer, RSA-2048 (the outbound filter's path)",
            Box::new(|| {
                black_box(rsa.sign(black_box(&msg), &ours));
            }),
        ),
        (
            "mail-auth's signer with its per-byte body hash, RSA-2048 (before)",
            Box::new(|| {
                black_box(plain_sign(Unbuffered(&raw_rsa), black_box(&msg)));
            }),
        ),
        (
            "Ed25519 key operation alone (32-byte input)",
            Box::new(|| {
                black_box(raw_ed.sign(black_box(&input[..])).ok());
            }),
        ),
        (
            "Postern's signer, Ed25519 only",
            Box::new(|| {
                black_box(ed_only.sign(black_box(&msg), &ours));
            }),
        ),
        (
            "mail-auth's signer with its per-byte body hash, Ed25519 (before)",
            Box::new(|| {
                black_box(plain_sign(Unbuffered(&raw_ed), black_box(&msg)));
            }),
        ),
        (
            "Postern's signer, RSA-2048 + Ed25519 (dual)",
            Box::new(|| {
                black_box(both.sign(black_box(&msg), &ours));
            }),
        ),
    ];
    // For a profiler: `DKIM_BENCH_ONLY=<n>` runs case n (from 0) alone.
    if let Some(n) = std::env::var("DKIM_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut one = cases.swap_remove(n.min(cases.len() - 1));
        let (calls, secs) = per_cpu_second(&mut *one.1, BUDGET * 2);
        println!("{:.0}/s  {}", calls as f64 / secs, one.0);
        return;
    }
    let rates = interleaved(&mut cases);
    println!(
        "DKIM signing, {} B message, one core (CPU time, {ROUNDS} interleaved rounds):",
        msg.len()
    );
    for ((name, _), r) in cases.iter().zip(&rates) {
        println!("  {r:>8.0}/s  {:>7.1} us  {name}", 1e6 / r);
    }
    let (key, full) = (rates[0], rates[1]);
    println!(
        "RSA-2048: {full:.0} messages/s ({:.2}x the 2,000/s target); the key operation alone {key:.0}/s, \
         so everything else costs {:.1} us/message",
        full / TARGET,
        1e6 / full - 1e6 / key
    );
    println!(
        "Ed25519 only: everything but the key operation costs {:.1} us/message (mail-auth's per-byte hashing: {:.1} us)",
        1e6 / rates[4] - 1e6 / rates[3],
        1e6 / rates[5] - 1e6 / rates[3]
    );
    if let Some(o) = openssl_rsa2048() {
        println!(
            "openssl speed rsa2048 on this machine: {o:.0} signs/s (Postern signs {:.2}x that)",
            full / o
        );
    }
}
