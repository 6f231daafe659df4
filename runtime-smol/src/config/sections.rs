//! The plain sections of the configuration file (`[mta_sts]`,
//! `[postscreen]`, `[rate]`, `[log]`): their raw TOML forms and the
//! settings they become. Checked and converted in `config/mod.rs`.

use postern_core::Networks;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMtaSts {
    pub(super) mode: Spanned<String>,
    #[serde(default)]
    pub(super) mx: Vec<String>,
    pub(super) max_age_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostscreen {
    pub(super) greet_pause_ms: Option<Spanned<u64>>,
    pub(super) greet_action: Option<Spanned<String>>,
    pub(super) pipelining_enable: Option<bool>,
    pub(super) pipelining_action: Option<Spanned<String>>,
    pub(super) non_smtp_command_enable: Option<bool>,
    pub(super) non_smtp_command_action: Option<Spanned<String>>,
    pub(super) bare_newline_enable: Option<bool>,
    pub(super) bare_newline_action: Option<Spanned<String>>,
    pub(super) access_list: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    pub(super) connection_rate_limit: Option<Spanned<u32>>,
    pub(super) message_rate_limit: Option<Spanned<u32>>,
    pub(super) time_unit_secs: Option<Spanned<u64>>,
    pub(super) exceptions: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<Spanned<String>>,
    pub(super) file: Option<PathBuf>,
}

/// How the daemon writes its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// The format of the SMTP and IMAP security lines.
    pub format: LogFormat,
    /// Where syslog lines go (`None`: stdout).
    pub file: Option<PathBuf>,
}

/// `[log] format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Every line through `tracing` on stdout (the default).
    Tracing,
    /// The Postfix and Dovecot lines CrowdSec's parsers read, with a
    /// syslog header, on stdout or in `[log] file`; the other lines go
    /// through `tracing` on stderr (stdout when a file is set).
    Syslog,
}

/// Per-client rate limits (`[rate]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// MX connections per client per `time_unit` (0: off).
    pub connection_rate_limit: u32,
    /// MX transactions (MAIL) per client per `time_unit` (0: off).
    pub message_rate_limit: u32,
    /// The rate window (`anvil_rate_time_unit`).
    pub time_unit: Duration,
    /// Addresses no per-client limit applies to.
    pub exceptions: Networks,
}
