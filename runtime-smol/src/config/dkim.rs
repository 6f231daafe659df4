//! `[dkim]`: outbound DKIM signing. Keys are read from docker-mailserver's
//! layouts under `dir` (Rspamd's `rspamd/dkim/rsa-<bits>-<selector>-<domain>.private`
//! and `ed25519-<ed25519_selector>-<domain>.private`, also with DMS's `.txt` ending; OpenDKIM's `opendkim/KeyTable`
//! and `SigningTable`, or `opendkim/keys/<domain>/<selector>.private`),
//! and from explicit `[[dkim.key]]` entries, which win.
//!
//! ```toml
//! [dkim]
//! selector = "mail"                           # default
//! ed25519_selector = "ed25519"                # default: a second key needs its own DNS name
//! dir = "/tmp/docker-mailserver"              # the layouts above
//! [[dkim.key]]                                # optional, per domain
//! domain = "example.com"
//! rsa = "/etc/postern/dkim/example.com.private"    # PEM, PKCS#1 or PKCS#8
//! ed25519 = "/etc/postern/dkim/example.com.ed25519" # optional second signature
//! ```
//!
//! The keys themselves are loaded and checked by `crate::dkim` (at start
//! and by `check-config`).

use super::{line_of, ConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDkim {
    enable: Option<bool>,
    selector: Option<Spanned<String>>,
    ed25519_selector: Option<Spanned<String>>,
    dir: Option<Spanned<PathBuf>>,
    #[serde(default)]
    key: Vec<Spanned<RawKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    domain: Spanned<String>,
    rsa: Option<Spanned<PathBuf>>,
    ed25519: Option<Spanned<PathBuf>>,
}

/// The checked `[dkim]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimConfig {
    /// The selector (`mail`).
    pub selector: String,
    /// The Ed25519 key's selector (`ed25519`).
    pub ed25519_selector: String,
    /// docker-mailserver's configuration folder.
    pub dir: Option<PathBuf>,
    /// Explicit keys.
    pub keys: Vec<DkimKeyFiles>,
    /// The line of the section, for `check-config`'s errors.
    pub line: usize,
}

/// One domain's key files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimKeyFiles {
    /// The signing domain, lower-case.
    pub domain: String,
    /// The RSA key.
    pub rsa: Option<PathBuf>,
    /// The Ed25519 key.
    pub ed25519: Option<PathBuf>,
}

fn is_label_text(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// Checks `[dkim]`; `None` when absent or disabled.
pub(super) fn parse(
    raw: Option<&Spanned<RawDkim>>,
    text: &str,
    file: &Path,
    abs: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<DkimConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let at = |span: std::ops::Range<usize>, key: &str, message: String| ConfigError {
        file: file.to_owned(),
        line: Some(line_of(text, span.start)),
        key: Some(key.to_owned()),
        message,
    };
    let r = raw.get_ref();
    if r.enable == Some(false) {
        return Ok(None);
    }
    let selector = match &r.selector {
        None => "mail".to_owned(),
        Some(s) if is_label_text(s.get_ref()) => s.get_ref().clone(),
        Some(s) => return Err(at(s.span(), "dkim.selector", "must be a DNS label".into())),
    };
    let ed25519_selector = match &r.ed25519_selector {
        None => "ed25519".to_owned(),
        Some(s) if is_label_text(s.get_ref()) => s.get_ref().clone(),
        Some(s) => {
            return Err(at(
                s.span(),
                "dkim.ed25519_selector",
                "must be a DNS label".into(),
            ))
        }
    };
    let mut keys = Vec::new();
    for (i, k) in r.key.iter().enumerate() {
        let k = k.get_ref();
        let domain = k.domain.get_ref().trim().to_ascii_lowercase();
        if !is_label_text(&domain) {
            return Err(at(
                k.domain.span(),
                &format!("dkim.key[{i}].domain"),
                "must be a domain name".into(),
            ));
        }
        if k.rsa.is_none() && k.ed25519.is_none() {
            return Err(at(
                k.domain.span(),
                &format!("dkim.key[{i}]"),
                "names no key file (rsa or ed25519)".into(),
            ));
        }
        keys.push(DkimKeyFiles {
            domain,
            rsa: k.rsa.as_ref().map(|p| abs(p.get_ref())),
            ed25519: k.ed25519.as_ref().map(|p| abs(p.get_ref())),
        });
    }
    let dir = r.dir.as_ref().map(|d| abs(d.get_ref()));
    if dir.is_none() && keys.is_empty() {
        return Err(at(
            raw.span(),
            "dkim",
            "needs dir or at least one [[dkim.key]]".into(),
        ));
    }
    Ok(Some(DkimConfig {
        selector,
        ed25519_selector,
        dir,
        keys,
        line: line_of(text, raw.span().start),
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = "hostname = \"mx.example.com\"\ndata_dir = \"mail\"\n[directory]\naccounts = \"a.cf\"\n[[listener]]\naddress = \"127.0.0.1:25\"\nprotocol = \"smtp\"\n";

    fn parse(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(
            &format!("{BASE}{extra}"),
            Path::new("/etc/postern.toml"),
            Path::new("/etc"),
        )
    }

    #[test]
    fn dkim_section_defaults_paths_and_errors() {
        let c = parse("[dkim]\ndir = \"dms\"\n").unwrap();
        let d = c.dkim.unwrap();
        assert_eq!(d.selector, "mail");
        assert_eq!(d.ed25519_selector, "ed25519");
        assert_eq!(d.dir.as_deref(), Some(Path::new("/etc/dms")));
        assert!(parse("[dkim]\ndir = \"dms\"\nenable = false\n")
            .unwrap()
            .dkim
            .is_none());
        let e = parse("[dkim]\nselector = \"mail\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("dkim"));
        let e = parse("[dkim]\ndir = \"d\"\nselector = \"a b\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("dkim.selector"));
        assert_eq!(e.line, Some(10));
        let e = parse("[dkim]\n[[dkim.key]]\ndomain = \"example.com\"\n").unwrap_err();
        assert!(e.message.contains("names no key file"), "{e}");
        let c = parse("[dkim]\n[[dkim.key]]\ndomain = \"Example.COM\"\nrsa = \"k.pem\"\n").unwrap();
        let k = &c.dkim.unwrap().keys[0];
        assert_eq!(k.domain, "example.com");
        assert_eq!(k.rsa.as_deref(), Some(Path::new("/etc/k.pem")));
    }

    #[test]
    fn srs_section() {
        let c = parse("[srs]\ndomain = \"Example.com\"\nsecret_file = \"s\"\n").unwrap();
        let s = c.srs.unwrap();
        assert_eq!(s.domain, "example.com");
        assert_eq!(s.secret_file, Path::new("/etc/s"));
        let e = parse("[srs]\ndomain = \"bad domain\"\nsecret_file = \"s\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("srs.domain"));
        assert!(parse("[srs]\ndomain = \"x.test\"\n").is_err());
    }
}
