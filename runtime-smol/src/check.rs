//! `check-config`: every file the configuration names exists and parses,
//! beyond the checks `Config::load` makes of the file itself. Apart from
//! `config.rs` so that the configuration does not depend on the TLS and
//! relay modules that read those files.

use crate::config::{Config, ConfigError};
use std::path::Path;

/// The largest file named by the configuration that is read to check it.
const MAX_NAMED_FILE: u64 = 64 << 20;

impl Config {
    /// Checks that every file the configuration names exists and parses:
    /// accounts and virtual (docker-mailserver's formats), quotas, the TLS
    /// certificate and key, and the relay's `sasl_passwd` (with an entry
    /// for the smarthost) and CA file. An error names the configuration
    /// file, the line and key that name the file, and what is wrong (with
    /// the file's own line where there is one).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let err = |key: &'static str, message: String| ConfigError {
            file: self.file.clone(),
            line: self.file_lines.get(key).copied(),
            key: Some(key.to_owned()),
            message,
        };
        let exists = |key: &'static str, path: &Path| -> Result<(), ConfigError> {
            match std::fs::metadata(path) {
                Ok(m) if !m.is_file() => Err(err(key, format!("{}: not a file", path.display()))),
                Ok(m) if m.len() > MAX_NAMED_FILE => Err(err(
                    key,
                    format!("{}: larger than {MAX_NAMED_FILE} bytes", path.display()),
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(err(key, format!("{}: {e}", path.display()))),
            }
        };
        use postern_adapters::directory::{Directory, DirectoryError};
        exists("directory.accounts", &self.accounts)?;
        if let Some(v) = &self.virtual_file {
            exists("directory.virtual", v)?;
        }
        if let Err(e) = Directory::load(&self.accounts, self.virtual_file.as_deref()) {
            let key = match &e {
                DirectoryError::Io { path, .. } | DirectoryError::Syntax { path, .. }
                    if Some(path) == self.virtual_file.as_ref() =>
                {
                    "directory.virtual"
                }
                _ => "directory.accounts",
            };
            return Err(err(key, e.to_string()));
        }
        if let Some(q) = &self.quotas_file {
            exists("directory.quotas", q)?;
            let text = std::fs::read_to_string(q)
                .map_err(|e| err("directory.quotas", format!("{}: {e}", q.display())))?;
            let (_, bad) = postern_adapters::directory::read_quotas(&text);
            if let Some(b) = bad.first() {
                return Err(err("directory.quotas", format!("{}: {b}", q.display())));
            }
        }
        if let Some(t) = &self.tls {
            exists("tls.cert", &t.cert)?;
            exists("tls.key", &t.key)?;
            if let Err(crate::tls::TlsError::File { path, message }) =
                crate::tls::ReloadingCert::load(t.clone())
            {
                let key = if Path::new(&path) == t.key {
                    "tls.key"
                } else {
                    "tls.cert"
                };
                return Err(err(key, format!("{path}: {message}")));
            }
        }
        if let Some(r) = &self.relay {
            if let Some(p) = &r.sasl_passwd {
                exists("relay.sasl_passwd", p)?;
                let text = std::fs::read_to_string(p)
                    .map_err(|e| err("relay.sasl_passwd", format!("{}: {e}", p.display())))?;
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let well_formed = line
                        .split_once(char::is_whitespace)
                        .is_some_and(|(_, v)| v.trim().split_once(':').is_some());
                    if !well_formed {
                        return Err(err(
                            "relay.sasl_passwd",
                            format!(
                                "{}:{}: expected [host]:port user:password",
                                p.display(),
                                n + 1
                            ),
                        ));
                    }
                }
            }
            if let Some(p) = &r.ca_file {
                exists("relay.ca_file", p)?;
                use rustls::pki_types::pem::PemObject;
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(p)
                    .map_err(|e| err("relay.ca_file", format!("{}: {e}", p.display())))?
                    .count();
                if certs == 0 {
                    return Err(err(
                        "relay.ca_file",
                        format!("{}: no certificate in the file", p.display()),
                    ));
                }
            }
            use crate::smarthost::RelayError;
            match crate::smarthost::Relay::new(r.clone(), &self.hostname) {
                Ok(_) => {}
                Err(e @ RelayError::Credentials(_)) => {
                    return Err(err("relay.sasl_passwd", e.to_string()))
                }
                Err(e @ RelayError::Ca(_)) => return Err(err("relay.ca_file", e.to_string())),
            }
        }
        if let Some(d) = &self.dkim {
            if let Err(e) = crate::dkim::Signer::load(d) {
                return Err(ConfigError {
                    file: self.file.clone(),
                    line: Some(d.line),
                    key: Some("dkim".into()),
                    message: e.to_string(),
                });
            }
        }
        if let Some(s) = &self.srs {
            if let Err(e) = crate::srs::Srs::load(s) {
                return Err(ConfigError {
                    file: self.file.clone(),
                    line: Some(s.line),
                    key: Some("srs.secret_file".into()),
                    message: e.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    const FULL: &str = r#"hostname = "mail.example.com"
data_dir = "mail"
[directory]
accounts = "accounts.cf"
virtual = "virtual.cf"
quotas = "quotas.cf"
[tls]
cert = "cert.pem"
key = "key.pem"
[relay]
host = "smtp.example.net"
port = 587
sasl_passwd = "sasl_passwd"
ca_file = "ca.pem"
[[listener]]
address = "127.0.0.1:0"
protocol = "smtp"
tls = "starttls"
"#;

    /// A folder with the configuration and every file it names, all good.
    fn setup(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "postern-check-config-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let hash =
            postern_adapters::directory::sha512_crypt_hash("pw", "checkconfigsalt1").unwrap();
        fs::write(
            dir.join("accounts.cf"),
            format!("alice@example.com|{hash}\n"),
        )
        .unwrap();
        fs::write(
            dir.join("virtual.cf"),
            "postmaster@example.com alice@example.com\n",
        )
        .unwrap();
        fs::write(dir.join("quotas.cf"), "alice@example.com:5G\n").unwrap();
        crate::tls::ensure_self_signed(
            &["localhost".into()],
            &dir.join("cert.pem"),
            &dir.join("key.pem"),
        )
        .unwrap();
        fs::copy(dir.join("cert.pem"), dir.join("ca.pem")).unwrap();
        fs::write(
            dir.join("sasl_passwd"),
            "# relay\n[smtp.example.net]:587 user:secret\n",
        )
        .unwrap();
        fs::write(dir.join("postern.toml"), FULL).unwrap();
        dir
    }

    fn check(dir: &Path) -> Result<Config, ConfigError> {
        let c = Config::load(&dir.join("postern.toml"))?;
        c.check_files().map(|()| c)
    }

    /// Breaks one file of a good setup; returns the check's error.
    fn broken(name: &str, file: &str, content: Option<&str>) -> ConfigError {
        let dir = setup(name);
        match content {
            Some(text) => fs::write(dir.join(file), text).unwrap(),
            None => fs::remove_file(dir.join(file)).unwrap(),
        }
        let e = check(&dir).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        e
    }

    fn assert_at(e: &ConfigError, line: usize, key: &str, contains: &str) {
        assert_eq!(e.line, Some(line), "{e}");
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains(contains), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("postern.toml:{line}: {key}: ")),
            "{e}"
        );
    }

    #[test]
    fn every_named_file_good_is_ok() {
        let dir = setup("good");
        let c = check(&dir).unwrap();
        assert_eq!(c.file_lines.get("relay.ca_file"), Some(&14));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_or_broken_directory_files() {
        assert_at(
            &broken("acc-missing", "accounts.cf", None),
            4,
            "directory.accounts",
            "accounts.cf",
        );
        assert_at(
            &broken("acc-bad", "accounts.cf", Some("no separator here\n")),
            4,
            "directory.accounts",
            "accounts.cf:1",
        );
        assert_at(
            &broken("virt-missing", "virtual.cf", None),
            5,
            "directory.virtual",
            "virtual.cf",
        );
        assert_at(
            &broken("quota-bad", "quotas.cf", Some("alice@example.com:5X\n")),
            6,
            "directory.quotas",
            "line 1",
        );
        assert_at(
            &broken("quota-missing", "quotas.cf", None),
            6,
            "directory.quotas",
            "quotas.cf",
        );
    }

    #[test]
    fn missing_or_broken_tls_files() {
        assert_at(
            &broken("cert-missing", "cert.pem", None),
            8,
            "tls.cert",
            "cert.pem",
        );
        assert_at(
            &broken("cert-bad", "cert.pem", Some("not a certificate\n")),
            8,
            "tls.cert",
            "cert.pem",
        );
        assert_at(
            &broken("key-missing", "key.pem", None),
            9,
            "tls.key",
            "key.pem",
        );
        assert_at(
            &broken(
                "key-bad",
                "key.pem",
                Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            ),
            9,
            "tls.key",
            "key.pem",
        );
    }

    #[test]
    fn missing_or_broken_relay_files() {
        assert_at(
            &broken("sasl-missing", "sasl_passwd", None),
            13,
            "relay.sasl_passwd",
            "sasl_passwd",
        );
        assert_at(
            &broken("sasl-bad", "sasl_passwd", Some("[smtp.example.net]:587\n")),
            13,
            "relay.sasl_passwd",
            "sasl_passwd:1",
        );
        assert_at(
            &broken(
                "sasl-other",
                "sasl_passwd",
                Some("[other.example]:587 u:p\n"),
            ),
            13,
            "relay.sasl_passwd",
            "no entry",
        );
        assert_at(
            &broken("ca-missing", "ca.pem", None),
            14,
            "relay.ca_file",
            "ca.pem",
        );
        assert_at(
            &broken("ca-bad", "ca.pem", Some("not pem\n")),
            14,
            "relay.ca_file",
            "no certificate",
        );
    }

    /// Parses the full configuration with `setting` put in `[table]`
    /// (at the top when `table` is empty); returns the error.
    fn limit_error(table: &str, setting: &str) -> ConfigError {
        let header = format!("[{table}]\n");
        let text = if table.is_empty() {
            format!("{setting}\n{FULL}")
        } else if FULL.contains(&header) {
            FULL.replacen(&header, &format!("{header}{setting}\n"), 1)
        } else {
            format!("{FULL}{header}{setting}\n")
        };
        Config::parse(&text, Path::new("postern.toml"), Path::new("/etc")).unwrap_err()
    }

    #[test]
    fn sizes_and_counts_within_sane_maximums() {
        let e = limit_error("smtp", "max_message_size = 99999999999999");
        assert_at(&e, 20, "smtp.max_message_size", "67108864");
        let ok = format!("{FULL}[smtp]\nmax_message_size = 67108864\nmax_recipients = 10000\n");
        assert!(Config::parse(&ok, Path::new("p.toml"), Path::new("/etc")).is_ok());
        assert_at(
            &limit_error("smtp", "max_recipients = 10001"),
            20,
            "smtp.max_recipients",
            "out of range",
        );
        assert_at(
            &limit_error("smtp", "max_line = 100"),
            20,
            "smtp.max_line",
            "512",
        );
        assert_at(
            &limit_error("smtp", "command_timeout_secs = 0"),
            20,
            "smtp.command_timeout_secs",
            "out of range",
        );
        assert_at(
            &limit_error(
                "smtp",
                "max_connections = 10\nmax_connections_per_client = 11",
            ),
            21,
            "smtp.max_connections_per_client",
            "1 to 10",
        );
        assert_at(
            &limit_error("imap", "idle_poll_secs = 0"),
            20,
            "imap.idle_poll_secs",
            "1 to 86400",
        );
        assert_at(
            &limit_error("relay", "concurrency = 0"),
            11,
            "relay.concurrency",
            "1 to 64",
        );
        assert_at(
            &limit_error("relay", "daily_limit = 2000000"),
            11,
            "relay.daily_limit",
            "out of range",
        );
        assert_at(
            &limit_error("tls", "reload_check_secs = 0"),
            8,
            "tls.reload_check_secs",
            "out of range",
        );
        assert_at(
            &limit_error("", "shutdown_grace_secs = 86400"),
            1,
            "shutdown_grace_secs",
            "0 to 3600",
        );
    }
}
