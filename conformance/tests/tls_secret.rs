//! The certificate mounted from a Kubernetes Secret: the kubelet swaps a
//! `..data` symlink to a new timestamped directory, and the daemon serves
//! the new certificate within `reload_check_secs`, without a restart; a
//! broken new version keeps the old certificate (logged and counted).

mod common;

use common::{peer, tool, Daemon};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LISTENERS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n\
     [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"http\"\n";

/// The SHA-256 fingerprint of the certificate the server presents.
fn served(addr: SocketAddr) -> String {
    let mut child = Command::new(tool("openssl"))
        .args(["s_client", "-starttls", "smtp", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("s_client output");
    let pem = String::from_utf8_lossy(&out.stdout);
    let start = pem
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = pem.find("-----END CERTIFICATE-----").expect("its end") + 25;
    fingerprint(&pem[start..end])
}

fn fingerprint(pem: &str) -> String {
    let mut child = Command::new(tool("openssl"))
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem.as_bytes())
        .expect("pem in");
    let out = child.wait_with_output().expect("x509 output");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A new timestamped directory with a certificate for `name`; returns
/// its fingerprint.
fn version(secret: &Path, stamp: &str, name: &str) -> String {
    let dir = secret.join(format!("..{stamp}"));
    std::fs::create_dir(&dir).expect("version dir");
    postern_runtime_smol::tls::ensure_self_signed(
        &[name.into()],
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
    )
    .expect("certificate");
    fingerprint(&std::fs::read_to_string(dir.join("tls.crt")).expect("pem"))
}

/// The kubelet's swap: a `..data_tmp` symlink renamed over `..data`.
fn swap(secret: &Path, stamp: &str) {
    let tmp = secret.join("..data_tmp");
    symlink(format!("..{stamp}"), &tmp).expect("..data_tmp");
    std::fs::rename(&tmp, secret.join("..data")).expect("rename over ..data");
}

fn metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: postern\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Polls until `served` gives `want`, within `secs`.
fn wait_served(mx: SocketAddr, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if served(mx) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not serving {want} after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_kubernetes_secret_swap_reloads_the_certificate_and_a_broken_one_is_kept_out() {
    if !peer("openssl") {
        return;
    }
    let mut d = Daemon::start(LISTENERS, "");
    // Point the daemon at a Secret volume laid out as the kubelet does.
    d.kill9();
    let secret = d.dir.path().join("secret");
    std::fs::create_dir(&secret).expect("secret dir");
    let first = version(
        &secret,
        "2026_12_01_20_13_00.123456789",
        "first.example.com",
    );
    swap(&secret, "2026_12_01_20_13_00.123456789");
    symlink("..data/tls.crt", secret.join("tls.crt")).expect("tls.crt");
    symlink("..data/tls.key", secret.join("tls.key")).expect("tls.key");
    let config = std::fs::read_to_string(&d.config).expect("config");
    let config = config
        .replace("cert = \"cert.pem\"", "cert = \"secret/tls.crt\"")
        .replace("key = \"key.pem\"", "key = \"secret/tls.key\"");
    assert!(config.contains("secret/tls.crt") && config.contains("reload_check_secs = 1"));
    std::fs::write(&d.config, config).expect("config");
    d.spawn();
    let (mx, http) = (d.addrs[0], d.addrs[1]);
    assert_eq!(served(mx), first);

    // A renewed certificate: a new timestamped directory, then the swap.
    let second = version(
        &secret,
        "2026_12_01_21_13_00.987654321",
        "second.example.com",
    );
    assert_ne!(first, second);
    swap(&secret, "2026_12_01_21_13_00.987654321");
    // reload_check_secs = 1: well within 10 s.
    wait_served(mx, &second, 10);

    // A broken version: the second certificate stays in service.
    let broken = secret.join("..2026_12_01_22_13_00.555555555");
    std::fs::create_dir(&broken).expect("broken dir");
    std::fs::write(
        broken.join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nbroken\n",
    )
    .expect("broken crt");
    std::fs::write(broken.join("tls.key"), "not a key\n").expect("broken key");
    swap(&secret, "2026_12_01_22_13_00.555555555");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d
        .log_text()
        .contains("TLS certificate not reloaded, keeping the old one")
    {
        assert!(
            Instant::now() < deadline,
            "no kept-the-old-one line:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served(mx), second);
    let text = metrics(http);
    assert!(
        text.lines()
            .any(|l| l.starts_with("postern_tls_reload_failures_total ") && l.ends_with(" 1")),
        "{text}"
    );
    // Reported once, not at every check.
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        assert_eq!(served(mx), second);
    }
    assert_eq!(
        d.log_text()
            .matches("TLS certificate not reloaded, keeping the old one")
            .count(),
        1
    );
}
