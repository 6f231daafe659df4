//! `[srs]`: the Sender Rewriting Scheme for forwarded mail, compatible
//! with postsrsd (same secret file, same addresses).
//!
//! ```toml
//! [srs]
//! enable = true                               # default when the section exists
//! domain = "example.com"                      # SRS addresses are @example.com
//! secret_file = "/etc/postsrsd.secret"        # first line signs; more lines are older secrets
//! exclude_domains = ["partner.test", ".corp.test"]  # never rewritten (postsrsd's SRS_EXCLUDE_DOMAINS;
//!                                             # a leading dot: every domain under it)
//! ```

use super::{line_of, ConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSrs {
    enable: Option<bool>,
    domain: Spanned<String>,
    secret_file: Spanned<PathBuf>,
    exclude_domains: Option<Spanned<Vec<String>>>,
}

/// The most domains `exclude_domains` may list.
const MAX_EXCLUDED: usize = 1000;

/// The checked `[srs]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrsConfig {
    /// The domain SRS addresses are written at, lower-case.
    pub domain: String,
    /// postsrsd's secret file.
    pub secret_file: PathBuf,
    /// The line of `secret_file`, for `check-config`'s errors.
    pub line: usize,
    /// Sender domains never rewritten, lower-case; `.parent` is every
    /// domain under `parent` ([`postern_core::srs::excluded`]).
    pub exclude_domains: Vec<String>,
}

/// Whether `d` is made of a domain name's characters and not too long.
fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Checks `[srs]`; `None` when absent or disabled.
pub(super) fn parse(
    raw: Option<&Spanned<RawSrs>>,
    text: &str,
    file: &Path,
    abs: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<SrsConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let r = raw.get_ref();
    if r.enable == Some(false) {
        return Ok(None);
    }
    let domain = r.domain.get_ref().trim().to_ascii_lowercase();
    if !is_domain(&domain) {
        return Err(ConfigError {
            file: file.to_owned(),
            line: Some(line_of(text, r.domain.span().start)),
            key: Some("srs.domain".into()),
            message: "must be a domain name".into(),
        });
    }
    let mut exclude_domains = Vec::new();
    if let Some(list) = &r.exclude_domains {
        let bad = |message: String| ConfigError {
            file: file.to_owned(),
            line: Some(line_of(text, list.span().start)),
            key: Some("srs.exclude_domains".into()),
            message,
        };
        if list.get_ref().len() > MAX_EXCLUDED {
            return Err(bad(format!("at most {MAX_EXCLUDED} domains")));
        }
        for d in list.get_ref() {
            let d = d.trim().to_ascii_lowercase();
            if !is_domain(d.strip_prefix('.').unwrap_or(&d)) {
                return Err(bad(format!(
                    "{d:?} is not a domain name (or .domain for every domain under it)"
                )));
            }
            exclude_domains.push(d);
        }
    }
    Ok(Some(SrsConfig {
        exclude_domains,
        domain,
        secret_file: abs(r.secret_file.get_ref()),
        line: line_of(text, r.secret_file.span().start),
    }))
}
