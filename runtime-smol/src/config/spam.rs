//! The `[spam]` section: scoring of mail arriving on the MX listeners and
//! learning from the users' Junk folder.
//!
//! ```toml
//! [spam]
//! enabled = true        # score mail from MX listeners (never authenticated submissions)
//! junk_score = 5.0      # at or above: delivered to the user's Junk folder
//! reject_score = 15.0   # at or above: refused at end of DATA (554 5.7.1)
//! add_headers = true    # X-Spam, X-Spam-Score, X-Spam-Status
//! learn = true          # MOVE/COPY into or out of Junk, $Junk/$NotJunk train the user's classifier
//! cache_mib = 64        # classifiers kept in memory (1 to 4,096; the largest takes about 11 MiB)
//! ```

use super::{ConfigError, Range};
use postern_core::policy::spam::SpamSettings;
use serde::Deserialize;
use toml::Spanned;

/// The section as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpam {
    enabled: Option<bool>,
    junk_score: Option<Spanned<f64>>,
    reject_score: Option<Spanned<f64>>,
    add_headers: Option<bool>,
    learn: Option<bool>,
    cache_mib: Option<Spanned<u64>>,
}

type At<'a> = &'a dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError;

/// Checks the section: scores in range, and the reject score above the junk score.
pub(super) fn settings(raw: &RawSpam, at: At<'_>) -> Result<SpamSettings, ConfigError> {
    let d = SpamSettings::default();
    let junk_score =
        Range("spam.junk_score", d.junk_score, -100.0, 1000.0).get(raw.junk_score.as_ref(), at)?;
    let reject_score = Range("spam.reject_score", d.reject_score, -100.0, 10_000.0)
        .get(raw.reject_score.as_ref(), at)?;
    if reject_score < junk_score {
        let span = raw.reject_score.as_ref().map_or(0..0, Spanned::span);
        return Err(at(
            span,
            "spam.reject_score",
            format!("{reject_score} is below spam.junk_score ({junk_score})"),
        ));
    }
    let cache_mib =
        Range("spam.cache_mib", d.cache_mib, 1, 4096).get(raw.cache_mib.as_ref(), at)?;
    Ok(SpamSettings {
        enabled: raw.enabled.unwrap_or(d.enabled),
        junk_score,
        reject_score,
        add_headers: raw.add_headers.unwrap_or(d.add_headers),
        learn: raw.learn.unwrap_or(d.learn),
        cache_mib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<SpamSettings, String> {
        let raw: RawSpam = toml::from_str(text).map_err(|e| e.to_string())?;
        let at = |_: std::ops::Range<usize>, key: &str, message: String| ConfigError {
            file: "t.toml".into(),
            line: None,
            key: Some(key.to_owned()),
            message,
        };
        settings(&raw, &at).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_ranges_and_order() {
        assert_eq!(check(""), Ok(SpamSettings::default()));
        let s = check("junk_score = 4.5\nreject_score = 20.0\nlearn = false\n");
        assert_eq!(
            s.map(|s| (s.junk_score, s.reject_score, s.learn)),
            Ok((4.5, 20.0, false))
        );
        assert!(check("junk_score = 8.0\nreject_score = 7.0\n")
            .is_err_and(|e| e.contains("spam.reject_score")));
        assert!(check("junk_score = 5000.0\n").is_err_and(|e| e.contains("spam.junk_score")));
        assert_eq!(check("cache_mib = 8\n").map(|s| s.cache_mib), Ok(8));
        assert!(check("cache_mib = 0\n").is_err_and(|e| e.contains("spam.cache_mib")));
        assert!(check("bogus = 1\n").is_err());
    }
}
