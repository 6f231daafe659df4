//! The MTA-STS policy (RFC 8461): the text served at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` that tells sending
//! servers to require TLS with a valid certificate for our MX.

/// The policy mode (RFC 8461 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Senders must not deliver without a valid TLS connection to an MX.
    Enforce,
    /// Senders deliver anyway and report failures (TLSRPT).
    Testing,
    /// The domain has no active policy (used to withdraw one).
    None,
}

impl Mode {
    /// The mode as written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// The longest `max_age` RFC 8461 allows (about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A policy to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The mode.
    pub mode: Mode,
    /// The MX host patterns (`mail.example.com`, `*.example.net`).
    pub mx: Vec<String>,
    /// Seconds senders may cache the policy.
    pub max_age: u64,
}

/// Why a policy is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No MX pattern (required unless the mode is `none`).
    #[error("at least one mx pattern is needed unless mode is none")]
    NoMx,
    /// An MX pattern is not a host name or a `*.` wildcard of one.
    #[error("not an MX host pattern: {0:?}")]
    BadMx(String),
    /// `max_age` is over RFC 8461's limit.
    #[error("max_age {0} is over {MAX_AGE_LIMIT} seconds")]
    MaxAge(u64),
}

fn valid_host(h: &str) -> bool {
    let h = h.strip_prefix("*.").unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl Policy {
    /// Checks the policy against RFC 8461's rules.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.mx.is_empty() && self.mode != Mode::None {
            return Err(PolicyError::NoMx);
        }
        if let Some(bad) = self.mx.iter().find(|m| !valid_host(m)) {
            return Err(PolicyError::BadMx(bad.clone()));
        }
        if self.max_age > MAX_AGE_LIMIT {
            return Err(PolicyError::MaxAge(self.max_age));
        }
        Ok(())
    }

    /// The policy file (RFC 8461 3.2: `key: value` lines, CRLF).
    pub fn text(&self) -> String {
        let mut s = format!("version: STSv1\r\nmode: {}\r\n", self.mode.as_str());
        for mx in &self.mx {
            s.push_str(&format!("mx: {mx}\r\n"));
        }
        s.push_str(&format!("max_age: {}\r\n", self.max_age));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_text_is_rfc_8461s_format() {
        let p = Policy {
            mode: Mode::Enforce,
            mx: vec!["mail.example.com".into(), "*.backup.example.net".into()],
            max_age: 604_800,
        };
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(
            p.text(),
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.backup.example.net\r\nmax_age: 604800\r\n"
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let p = |mode, mx: &[&str], max_age| Policy {
            mode,
            mx: mx.iter().map(|s| (*s).to_owned()).collect(),
            max_age,
        };
        assert_eq!(p(Mode::Enforce, &[], 60).validate(), Err(PolicyError::NoMx));
        assert_eq!(p(Mode::None, &[], 60).validate(), Ok(()));
        assert!(matches!(
            p(Mode::Testing, &["mail example.com"], 60).validate(),
            Err(PolicyError::BadMx(_))
        ));
        assert!(matches!(
            p(Mode::Testing, &["a.*.example.com"], 60).validate(),
            Err(PolicyError::BadMx(_))
        ));
        assert_eq!(
            p(Mode::Enforce, &["mx.example.com"], MAX_AGE_LIMIT + 1).validate(),
            Err(PolicyError::MaxAge(MAX_AGE_LIMIT + 1))
        );
    }
}
