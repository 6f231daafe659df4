//! `[srs]`: the Sender Rewriting Scheme for forwarded mail, compatible
//! with postsrsd (same secret file, same addresses).
//!
//! ```toml
//! [srs]
//! enable = true                               # default when the section exists
//! domain = "example.com"                      # SRS addresses are @example.com
//! secret_file = "/etc/postsrsd.secret"        # first line signs; more lines are older secrets
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
}

/// The checked `[srs]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrsConfig {
    /// The domain SRS addresses are written at, lower-case.
    pub domain: String,
    /// postsrsd's secret file.
    pub secret_file: PathBuf,
    /// The line of `secret_file`, for `check-config`'s errors.
    pub line: usize,
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
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid {
        return Err(ConfigError {
            file: file.to_owned(),
            line: Some(line_of(text, r.domain.span().start)),
            key: Some("srs.domain".into()),
            message: "must be a domain name".into(),
        });
    }
    Ok(Some(SrsConfig {
        domain,
        secret_file: abs(r.secret_file.get_ref()),
        line: line_of(text, r.secret_file.span().start),
    }))
}
