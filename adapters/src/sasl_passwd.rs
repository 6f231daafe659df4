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

/// Finds the credentials for `host`:`port` (`[host]:port`, `[host]`, or
/// `host` entries match, as in Postfix's lookup order).
pub fn find(text: &str, host: &str, port: u16) -> Option<RelayCredentials> {
    let keys = [
        format!("[{host}]:{port}"),
        format!("[{host}]"),
        format!("{host}:{port}"),
        host.to_owned(),
    ];
    for key in keys {
        for line in text.lines() {
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
            let (user, password) = v.trim().split_once(':')?;
            return Some(RelayCredentials {
                user: user.to_owned(),
                password: Secret::new(password.to_owned()),
            });
        }
    }
    None
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
    }
}
