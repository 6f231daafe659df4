//! `[auth]`: message authentication of mail arriving on the MX listeners
//! (SPF, DKIM, DMARC, ARC; submissions are never checked).
//!
//! ```toml
//! [auth]
//! enable = true          # default false: no DNS lookups, no A-R header
//! reject = true          # DMARC fail under p=reject: 550 5.7.1 at end of DATA
//! quarantine = true      # DMARC fail under p=quarantine: to the Junk folder
//! junk_folder = "Junk"   # quarantined mail and spam go here; moves into and out of it teach the spam filter
//! budget_secs = 20       # all DNS work of one message; below smtp.data_timeout_secs
//! ```
//!
//! | key                | default                          | allowed                          |
//! |--------------------|----------------------------------|----------------------------------|
//! | `auth.budget_secs` | 20 (at most half the data timeout) | 1 to below `smtp.data_timeout_secs` |

use super::{ConfigError, Range};
use postern_core::policy::msgauth::AuthSettings;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    enable: Option<bool>,
    reject: Option<bool>,
    quarantine: Option<bool>,
    junk_folder: Option<Spanned<String>>,
    budget_secs: Option<Spanned<u64>>,
}

/// The checked `[auth]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Check inbound MX mail at all.
    pub enable: bool,
    /// The actions on DMARC failures.
    pub settings: AuthSettings,
    /// Where quarantined mail goes (a Maildir++ folder name).
    pub junk_folder: String,
    /// The time all DNS work of one message may take; what is not answered
    /// by then is a `temperror`.
    pub budget: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enable: false,
            settings: AuthSettings::default(),
            junk_folder: "Junk".into(),
            budget: Duration::from_secs(20),
        }
    }
}

impl RawAuth {
    /// Checks the section; the budget must end before `data_timeout`.
    pub(super) fn check(
        &self,
        data_timeout: Duration,
        at: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
    ) -> Result<AuthConfig, ConfigError> {
        let d = AuthConfig::default();
        let most = data_timeout.as_secs().saturating_sub(1).max(1);
        let default_budget = d.budget.as_secs().min((data_timeout.as_secs() / 2).max(1));
        let budget = Range("auth.budget_secs", default_budget, 1, most)
            .get(self.budget_secs.as_ref(), at)?;
        let junk_folder = match &self.junk_folder {
            None => d.junk_folder,
            Some(f) => {
                let name = f.get_ref();
                if name.is_empty()
                    || name.len() > 64
                    || name.starts_with('.')
                    || name.eq_ignore_ascii_case("INBOX")
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' '))
                {
                    return Err(at(
                        f.span(),
                        "auth.junk_folder",
                        format!("{name:?}: a folder name of letters, digits, '-', '_' or space"),
                    ));
                }
                name.clone()
            }
        };
        Ok(AuthConfig {
            enable: self.enable.unwrap_or(d.enable),
            settings: AuthSettings {
                reject: self.reject.unwrap_or(d.settings.reject),
                quarantine: self.quarantine.unwrap_or(d.settings.quarantine),
            },
            junk_folder,
            budget: Duration::from_secs(budget),
        })
    }
}
