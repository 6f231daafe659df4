//! Relay credentials in Postfix's `sasl_passwd` format, as docker-mailserver
//! keeps them: one `[host]:port user:password` per line.

use postern_core::Secret;

/// Credentials for one smarthost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayCredentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: Secret<String>,
}

/// Why no credentials came out of a `sasl_passwd` file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslPasswdError {
    /// No line is for this smarthost.
    #[error("no entry for [{host}]:{port}")]
    NotFound {
        /// The smarthost.
        host: String,
        /// Its port.
        port: u16,
    },
    /// The line for the smarthost has no `user:password`.
    #[error("line {line}: expected user:password")]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
}

impl From<SaslPasswdError> for std::io::Error {
    fn from(e: SaslPasswdError) -> Self {
        let kind = match e {
            SaslPasswdError::NotFound { .. } => std::io::ErrorKind::NotFound,
            SaslPasswdError::Malformed { .. } => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

/// Finds the credentials for `host`:`port` (`[host]:port`, `[host]`, or
/// `host` entries match, as in Postfix's lookup order).
pub fn find(text: &str, host: &str, port: u16) -> Option<RelayCredentials> {
    lookup(text, host, port).ok()
}

/// As [`find`], saying why nothing was found.
pub fn lookup(text: &str, host: &str, port: u16) -> Result<RelayCredentials, SaslPasswdError> {
    let keys = [
        format!("[{host}]:{port}"),
        format!("[{host}]"),
        format!("{host}:{port}"),
        host.to_owned(),
    ];
    for key in keys {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            if !k.eq_ignore_ascii_case(&key) {
                continue;
            }
            let (user, password) = v
                .trim()
                .split_once(':')
                .ok_or(SaslPasswdError::Malformed { line: n + 1 })?;
            return Ok(RelayCredentials {
                user: user.to_owned(),
                password: Secret::new(password.to_owned()),
            });
        }
    }
    Err(SaslPasswdError::NotFound {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_format() {
        let t = "# relay\n[smtp-relay.brevo.com]:587 a7e778001@smtp-brevo.com:xsmtpsib-key:with:colons\n";
        let c = find(t, "smtp-relay.brevo.com", 587).unwrap();
        assert_eq!(c.user, "a7e778001@smtp-brevo.com");
        assert_eq!(c.password.expose(), "xsmtpsib-key:with:colons");
        assert!(find(t, "smtp-relay.brevo.com", 465).is_none());
        assert_eq!(
            lookup("[h]:25 nopassword\n", "h", 25).unwrap_err(),
            SaslPasswdError::Malformed { line: 1 }
        );
        assert!(matches!(
            lookup(t, "other", 25),
            Err(SaslPasswdError::NotFound { .. })
        ));
    }
}
