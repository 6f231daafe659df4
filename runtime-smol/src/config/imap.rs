//! The IMAP settings for taking over an existing deployment:
//! `[imap] hierarchy_separator` and a listener's `allow_plaintext_auth`,
//! and the warnings `check-config` prints about them.
//!
//! ```toml
//! [imap]
//! hierarchy_separator = "/"     # "/" (default) or "." (Dovecot's Maildir++ default)
//!
//! [[listener]]
//! address = "127.0.0.1:143"
//! protocol = "imap"
//! tls = "none"
//! allow_plaintext_auth = true   # LOGIN without TLS: TLS ends in front, or a trusted network
//! ```

use super::{Config, ConfigError, Protocol};
use postern_core::imap::session::HierarchySeparator;
use postern_core::proxy::ProxyPolicy;
use toml::Spanned;

/// `[imap] hierarchy_separator`: `/` unless `.` is asked for.
pub(super) fn separator(
    raw: Option<&Spanned<String>>,
    at: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) -> Result<HierarchySeparator, ConfigError> {
    match raw.map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("/", _)) => Ok(HierarchySeparator::Slash),
        Some((".", _)) => Ok(HierarchySeparator::Dot),
        Some((other, span)) => Err(at(
            span,
            "imap.hierarchy_separator",
            format!("{other:?}: expected \"/\" or \".\""),
        )),
    }
}

/// A listener's `allow_plaintext_auth`: only an IMAP listener has one.
pub(super) fn plaintext_auth(
    raw: Option<&Spanned<bool>>,
    protocol: Protocol,
    key: &str,
    at: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) -> Result<bool, ConfigError> {
    match raw {
        Some(v) if *v.get_ref() && protocol != Protocol::Imap => Err(at(
            v.span(),
            key,
            "only an imap listener takes allow_plaintext_auth".into(),
        )),
        Some(v) => Ok(*v.get_ref()),
        None => Ok(false),
    }
}

impl Config {
    /// What `check-config` (and the daemon at start) warns about: a
    /// setting that is allowed but likely a mistake. Today: passwords
    /// accepted in the clear on a listener that anyone may reach (not
    /// loopback, no PROXY header from a trusted proxy in front).
    pub fn warnings(&self) -> Vec<String> {
        self.listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.allow_plaintext_auth
                    && !l.address.ip().is_loopback()
                    && !matches!(l.proxy.policy, ProxyPolicy::Required { .. })
            })
            .map(|(i, l)| {
                format!(
                    "{}: listener[{}].allow_plaintext_auth: passwords are accepted without TLS on {}, \
                     which is not loopback and takes no PROXY header: only do this on a trusted network",
                    self.file.display(),
                    i + 1,
                    l.address
                )
            })
            .collect()
    }
}
