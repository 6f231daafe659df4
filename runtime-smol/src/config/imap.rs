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

#[cfg(test)]
mod tests {
    use super::super::Config;
    use postern_core::imap::session::HierarchySeparator;
    use std::path::Path;

    const BASE: &str = "hostname = \"mail.example.com\"\ndata_dir = \"mail\"\n\
        [directory]\naccounts = \"postfix-accounts.cf\"\n";

    fn parse(extra: &str) -> Result<Config, super::ConfigError> {
        Config::parse(
            &format!("{BASE}{extra}"),
            Path::new("p.toml"),
            Path::new("."),
        )
    }

    fn imap_listener(address: &str, more: &str) -> String {
        format!(
            "[[listener]]\naddress = \"{address}\"\nprotocol = \"imap\"\ntls = \"none\"\n{more}"
        )
    }

    #[test]
    fn separator_is_slash_unless_dot_is_asked_for() {
        let c = parse(&imap_listener("127.0.0.1:143", "")).unwrap();
        assert_eq!(c.hierarchy_separator, HierarchySeparator::Slash);
        let dot = format!(
            "[imap]\nhierarchy_separator = \".\"\n{}",
            imap_listener("127.0.0.1:143", "")
        );
        assert_eq!(
            parse(&dot).unwrap().hierarchy_separator,
            HierarchySeparator::Dot
        );
        let bad = format!(
            "[imap]\nhierarchy_separator = \"\\\\\"\n{}",
            imap_listener("127.0.0.1:143", "")
        );
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("imap.hierarchy_separator"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
    }

    #[test]
    fn plaintext_auth_is_off_by_default_and_only_for_imap() {
        let c = parse(&imap_listener("127.0.0.1:143", "")).unwrap();
        assert!(!c.listeners[0].allow_plaintext_auth);
        assert!(c.warnings().is_empty());
        let on = imap_listener("127.0.0.1:143", "allow_plaintext_auth = true\n");
        let c = parse(&on).unwrap();
        assert!(c.listeners[0].allow_plaintext_auth);
        // Loopback: nothing to warn about.
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let smtp = "[[listener]]\naddress = \"127.0.0.1:25\"\nprotocol = \"smtp\"\n\
            allow_plaintext_auth = true\n";
        let e = parse(smtp).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("listener[1].allow_plaintext_auth"),
            "{e}"
        );
    }

    #[test]
    fn plaintext_auth_on_an_open_listener_is_warned_about() {
        let open = imap_listener("0.0.0.0:143", "allow_plaintext_auth = true\n");
        let w = parse(&open).unwrap().warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("listener[1].allow_plaintext_auth"), "{w:?}");
        assert!(w[0].contains("0.0.0.0:143"), "{w:?}");
        // Behind HAProxy (PROXY required from trusted networks): no warning.
        let proxied = imap_listener(
            "0.0.0.0:143",
            "allow_plaintext_auth = true\nproxy = \"required\"\ntrusted_networks = [\"10.0.20.0/24\"]\n",
        );
        assert!(parse(&proxied).unwrap().warnings().is_empty());
    }
}
