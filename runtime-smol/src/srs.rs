//! SRS for forwarded mail: postsrsd's secret file and ring's HMAC-SHA1
//! under `postern_core::srs` (the format, the stamps, the checks).

use crate::config::srs::SrsConfig;
use postern_core::srs::{self, Mailbox, SrsError};
use std::path::Path;

/// The largest secret file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;
/// The most secrets kept (postsrsd reads lines of at most 1 KiB).
const MAX_SECRETS: usize = 64;
const MAX_SECRET_LEN: usize = 1023;

/// The SRS domain and secrets.
pub struct Srs {
    /// The domain SRS addresses are written at.
    pub domain: String,
    keys: Vec<ring::hmac::Key>,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srs")
            .field("domain", &self.domain)
            .field("secrets", &self.keys.len())
            .finish()
    }
}

/// The secret file is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SecretError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The secrets of postsrsd's file: one per non-empty line, the first one
/// signs.
pub fn read_secrets(path: &Path) -> Result<Vec<Vec<u8>>, SecretError> {
    let err = |message: String| SecretError {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_SECRET_FILE {
        return Err(err(format!("larger than {MAX_SECRET_FILE} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut secrets = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_SECRET_LEN {
            return Err(err(format!(
                "line {}: longer than {MAX_SECRET_LEN} bytes",
                n + 1
            )));
        }
        if secrets.len() == MAX_SECRETS {
            return Err(err(format!("more than {MAX_SECRETS} secrets")));
        }
        secrets.push(line.to_vec());
    }
    if secrets.is_empty() {
        return Err(err("no secret in the file".into()));
    }
    Ok(secrets)
}

impl Srs {
    /// Reads the secret file `[srs]` names.
    pub fn load(cfg: &SrsConfig) -> Result<Self, SecretError> {
        let secrets = read_secrets(&cfg.secret_file)?;
        Ok(Self::new(&cfg.domain, &secrets))
    }

    /// SRS at `domain` with these secrets (the first signs).
    pub fn new(domain: &str, secrets: &[Vec<u8>]) -> Self {
        Srs {
            domain: domain.to_ascii_lowercase(),
            keys: secrets
                .iter()
                .map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, s))
                .collect(),
        }
    }

    fn mac(&self, index: usize, data: &[u8]) -> Option<[u8; 20]> {
        let key = self.keys.get(index)?;
        let tag = ring::hmac::sign(key, data);
        tag.as_ref().try_into().ok()
    }

    /// The rewritten envelope sender for a forwarded copy, on `unix_now`.
    pub fn forward(&self, sender: &Mailbox, unix_now: u64) -> Result<Mailbox, SrsError> {
        let mac = |i: usize, d: &[u8]| self.mac(i, d);
        srs::forward(sender, &self.domain, srs::day(unix_now), &mac)
    }

    /// Whether an address is an SRS address at our SRS domain.
    pub fn is_ours(&self, local: &str, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.domain) && srs::is_srs(local)
    }

    /// The original sender behind an SRS local part, on `unix_now`.
    pub fn reverse(&self, local: &str, unix_now: u64) -> Result<Mailbox, SrsError> {
        let mac = |i: usize, d: &[u8]| self.mac(i, d);
        let own = |d: &str| d.eq_ignore_ascii_case(&self.domain);
        srs::reverse_fully(local, srs::day(unix_now), &mac, &own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_file_is_postsrsds() {
        let dir = std::env::temp_dir().join(format!("postern-srs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        std::fs::write(&f, "first\r\n\nsecond\n").unwrap();
        assert_eq!(
            read_secrets(&f).unwrap(),
            [b"first".to_vec(), b"second".to_vec()]
        );
        std::fs::write(&f, "\n\n").unwrap();
        assert!(read_secrets(&f).unwrap_err().message.contains("no secret"));
        std::fs::write(&f, "x".repeat(2000)).unwrap();
        assert!(read_secrets(&f)
            .unwrap_err()
            .message
            .contains("longer than"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hmac_sha1_matches_a_known_postsrsd_address() {
        // postsrsd 1.10 -s (secret "topsecret") -d example.com answered
        // `get user@other.org` with this on day 0x274 ("JU").
        let srs = Srs::new("example.com", &[b"topsecret".to_vec()]);
        let day_ju = (9 * 32 + 20) * 86_400;
        let f = srs
            .forward(
                &Mailbox {
                    local: "user".into(),
                    domain: "other.org".into(),
                },
                day_ju,
            )
            .unwrap();
        assert_eq!(f.to_string(), "SRS0=tw1i=JU=other.org=user@example.com");
        assert_eq!(
            srs.reverse(&f.local, day_ju + 86_400).unwrap().to_string(),
            "user@other.org"
        );
    }
}
