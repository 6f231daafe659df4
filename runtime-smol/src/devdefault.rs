//! The embedded default: `postern serve` with no configuration runs a
//! development server on loopback, so a newcomer sees it work at once.
//!
//! It creates `./postern-data/` with a self-signed certificate, a
//! docker-mailserver style accounts file holding one demo account (its
//! password generated once and kept in `demo-password`), and the
//! `postern.toml` it runs with: the same file format a real deployment
//! uses, to copy and edit.

use crate::tls::{ensure_self_signed, write_private};
use postern_adapters::directory::sha512_crypt_hash;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The development domain.
pub const DOMAIN: &str = "example.test";
/// The demo account.
pub const DEMO_USER: &str = "demo@example.test";

/// What the default set-up made.
pub struct DevSetup {
    /// The generated configuration file.
    pub config: PathBuf,
    /// The demo account's password.
    pub password: String,
}

fn random_token(len: usize) -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = vec![0u8; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// Creates (or reuses) the development set-up under `dir`.
pub fn prepare(dir: &Path) -> Result<DevSetup, String> {
    let e = |what: &str, err: &dyn std::fmt::Display| format!("{}: {what}: {err}", dir.display());
    std::fs::create_dir_all(dir.join("tls")).map_err(|x| e("create", &x))?;
    let names = vec!["localhost".to_owned(), format!("mail.{DOMAIN}")];
    ensure_self_signed(&names, &dir.join("tls/cert.pem"), &dir.join("tls/key.pem"))
        .map_err(|x| e("certificate", &x))?;

    let pw_file = dir.join("demo-password");
    let password = match std::fs::read_to_string(&pw_file) {
        Ok(p) if !p.trim().is_empty() => p.trim().to_owned(),
        _ => {
            let p = random_token(16).map_err(|x| e("random", &x))?;
            write_private(&pw_file, p.as_bytes()).map_err(|x| e("demo-password", &x))?;
            // A new password means a new accounts file.
            let _ = std::fs::remove_file(dir.join("postfix-accounts.cf"));
            p
        }
    };
    let accounts = dir.join("postfix-accounts.cf");
    if !accounts.exists() {
        let salt = random_token(16).map_err(|x| e("random", &x))?;
        let hash = sha512_crypt_hash(&password, &salt).ok_or_else(|| e("hash", &"failed"))?;
        write_private(&accounts, format!("{DEMO_USER}|{hash}\n").as_bytes())
            .map_err(|x| e("accounts", &x))?;
    }
    let virtual_file = dir.join("postfix-virtual.cf");
    if !virtual_file.exists() {
        let text = format!("# alias@domain target[,target]; @domain target is a catch-all\npostmaster@{DOMAIN} {DEMO_USER}\n");
        std::fs::write(&virtual_file, text).map_err(|x| e("virtual", &x))?;
    }
    let config = dir.join("postern.toml");
    std::fs::write(&config, DEFAULT_TOML).map_err(|x| e("postern.toml", &x))?;
    Ok(DevSetup { config, password })
}

/// The development configuration (relative paths are from its folder).
pub const DEFAULT_TOML: &str = r#"# Postern's embedded development configuration, written by `postern serve`.
# Loopback only, unprivileged ports, a self-signed certificate.
hostname = "mail.example.test"
data_dir = "mail"
shutdown_grace_secs = 10

[directory]
accounts = "postfix-accounts.cf"
virtual = "postfix-virtual.cf"

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"
reload_check_secs = 5

# MX: incoming mail for example.test, STARTTLS offered.
[[listener]]
address = "127.0.0.1:2525"
protocol = "smtp"
tls = "starttls"

# Submission: AUTH after STARTTLS, for the demo account.
[[listener]]
address = "127.0.0.1:5587"
protocol = "submission"
tls = "starttls"

# Submission over implicit TLS.
[[listener]]
address = "127.0.0.1:4465"
protocol = "submission"
tls = "implicit"

# IMAP over implicit TLS.
[[listener]]
address = "127.0.0.1:10993"
protocol = "imap"
tls = "implicit"

# Monitoring: /metrics, /healthz, /readyz over plain HTTP.
[[listener]]
address = "127.0.0.1:9100"
protocol = "http"
"#;
