//! The configuration file (TOML), checked at start. Every error names the
//! file, the line and the key.
//!
//! ```toml
//! hostname = "mail.example.com"
//! data_dir = "/var/mail"                      # Maildir root: <data_dir>/<domain>/<user>/
//!
//! [directory]                                 # docker-mailserver's files
//! accounts = "/tmp/docker-mailserver/postfix-accounts.cf"
//! virtual = "/tmp/docker-mailserver/postfix-virtual.cf"
//! quotas = "/tmp/docker-mailserver/dovecot-quotas.cf"   # optional: user@domain:5G
//!
//! [imap]
//! quota_mib = 0                               # storage per account; 0: unlimited
//! idle_poll_secs = 5                          # IDLE: look for changes made by other programs
//! max_connections = 1000                      # IMAP sessions at once (its own budget)
//! max_connections_per_client = 100            # per real client address
//!
//! [tls]
//! cert = "/etc/letsencrypt/live/example.com/fullchain.pem"
//! key = "/etc/letsencrypt/live/example.com/privkey.pem"
//! reload_check_secs = 10                      # how often the files are checked for change
//!
//! [smtp]                                      # limits (Postfix defaults)
//! max_message_size = 10240000
//! max_recipients = 1000
//! hard_error_limit = 20
//! command_timeout_secs = 300
//! data_timeout_secs = 300
//! bare_newline = "reject"                     # or "normalize"
//! max_connections = 2000                      # SMTP sessions at once
//! max_connections_per_client = 50             # per real client address
//!
//! [postscreen]                                # MX checks, postscreen(8)'s names
//! greet_pause_ms = 0                          # >0: "220-" first, PREGREET test
//! greet_action = "ignore"                     # ignore | drop
//! pipelining_enable = false                   # commands pipelined before EHLO
//! pipelining_action = "ignore"
//! non_smtp_command_enable = false             # GET /, POST, CONNECT, binary
//! non_smtp_command_action = "drop"
//! bare_newline_enable = false                 # command lines ended by LF alone
//! bare_newline_action = "ignore"
//! access_list = ["10.0.20.0/24"]              # networks no check applies to
//!
//! [rate]                                      # per real client address (anvil)
//! connection_rate_limit = 10                  # MX connections a minute (0: off)
//! message_rate_limit = 30                     # MX MAIL commands a minute (0: off)
//! time_unit_secs = 60                         # anvil_rate_time_unit
//! exceptions = ["10.0.20.0/24"]               # smtpd_client_event_limit_exceptions
//!
//! [log]
//! format = "tracing"                          # tracing (default) | syslog
//! file = "/var/log/mail.log"                  # syslog lines here (default: stdout)
//!
//! [relay]                                     # optional: the smarthost
//! host = "smtp-relay.brevo.com"
//! port = 587
//! sasl_passwd = "/etc/postern/sasl_passwd"    # [host]:port user:password
//! require_tls = true
//! daily_limit = 300
//!
//! [[listener]]
//! address = "0.0.0.0:2525"
//! protocol = "smtp"                           # smtp | submission | imap | http
//! tls = "starttls"                            # none | starttls | implicit
//! proxy = "required"                          # forbidden (default) | required
//! trusted_networks = ["10.0.20.0/24"]
//!
//! [[listener]]                                # /metrics, /healthz, /readyz
//! address = "0.0.0.0:9100"
//! protocol = "http"                           # plain HTTP only (tls = "none")
//! ```
//!
//! Limits: every number has a default no looser than Postfix's or
//! Dovecot's and a range outside which the file is refused (a value out of
//! range is a typo or a door left open, never silently clamped):
//!
//! | key                               | default  | allowed                 |
//! |-----------------------------------|----------|-------------------------|
//! | `smtp.max_message_size`           | 10240000 | 1024 to 64 MiB          |
//! | `smtp.max_recipients`             | 1000     | 1 to 10,000             |
//! | `smtp.max_line`                   | 2048     | 512 to 65,536           |
//! | `smtp.hard_error_limit`           | 20       | 1 to 1,000              |
//! | `smtp.command_timeout_secs`       | 300      | 1 to 3,600              |
//! | `smtp.data_timeout_secs`          | 300      | 1 to 3,600              |
//! | `smtp.max_connections`            | 2000     | 1 to 100,000            |
//! | `smtp.max_connections_per_client` | 50       | 1 to `max_connections`  |
//! | `imap.quota_mib`                  | 0 (none) | 0 to 16 TiB             |
//! | `imap.idle_poll_secs`             | 5        | 1 to 86,400             |
//! | `imap.max_connections`            | 1000     | 1 to 100,000            |
//! | `imap.max_connections_per_client` | 100      | 1 to 100,000            |
//! | `imap.mime_max_parts`             | 1000     | 1 to 100,000            |
//! | `imap.mime_max_depth`             | 50       | 1 to 100                |
//! | `imap.summary_cache_mib`          | 32       | 1 to 4,096              |
//! | `spam.cache_mib`                  | 64       | 1 to 4,096              |
//! | `tls.reload_check_secs`           | 10       | 1 to 86,400             |
//! | `shutdown_grace_secs`             | 30       | 0 to 3,600              |
//! | `auth_failure_delay_ms`           | 1000     | 0 to 60,000             |
//! | `relay.daily_limit`               | 0 (none) | 0 to 1,000,000          |
//! | `relay.concurrency`               | 4        | 1 to 64                 |
//! | `relay.scan_interval_secs`        | 5        | 1 to 86,400             |
//! | `listener.proxy_timeout_secs`     | 5        | 1 to 300                |
//! | `postscreen.greet_pause_ms`       | 0 (off)  | 0 to 60,000             |
//! | `rate.connection_rate_limit`      | 10 (MX)  | 0 (off) to 1,000,000    |
//! | `rate.message_rate_limit`         | 30 (MX)  | 0 (off) to 1,000,000    |
//! | `rate.time_unit_secs`             | 60       | 1 to 86,400             |
//!
//! [`Config::load`] checks the file itself; [`Config::check_files`] (run
//! by `postern check-config`) also checks that every file it names exists
//! and parses: accounts, virtual, quotas, certificate and key, relay
//! `sasl_passwd` and CA file.

pub mod dns;
pub mod msgauth;

use postern_core::proxy::{ProxyConfig, ProxyPolicy};
use postern_core::smtp::{BareNewline, Postscreen, PostscreenAction, SmtpConfig, SmtpLimits};
use postern_core::Networks;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
mod spam;

pub mod dkim;
pub mod srs;

/// The largest configuration file read.
const MAX_CONFIG: u64 = 1 << 20;

/// A configuration that cannot be used, with where.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key, when known (`listener[2].proxy`).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    hostname: Spanned<String>,
    data_dir: Spanned<PathBuf>,
    directory: Spanned<RawDirectory>,
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    imap: RawImap,
    #[serde(default)]
    shutdown_grace_secs: Option<Spanned<u64>>,
    #[serde(default)]
    auth_failure_delay_ms: Option<Spanned<u64>>,
    #[serde(default)]
    queue_dir: Option<PathBuf>,
    #[serde(default)]
    relay: Option<Spanned<RawRelay>>,
    #[serde(default)]
    postscreen: RawPostscreen,
    #[serde(default)]
    rate: RawRate,
    #[serde(default)]
    log: RawLog,
    store: Option<Spanned<store::RawStore>>,
    postgres: Option<Spanned<store::RawPostgres>>,
    s3: Option<Spanned<store::RawS3>>,
    #[serde(default)]
    spam: spam::RawSpam,
    #[serde(default)]
    dns: dns::RawDns,
    #[serde(default)]
    auth: msgauth::RawAuth,
    mta_sts: Option<Spanned<RawMtaSts>>,
    dkim: Option<Spanned<dkim::RawDkim>>,
    srs: Option<Spanned<srs::RawSrs>>,
    listener: Vec<Spanned<RawListener>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    host: String,
    port: u16,
    sasl_passwd: Option<Spanned<PathBuf>>,
    require_tls: Option<bool>,
    ca_file: Option<Spanned<PathBuf>>,
    daily_limit: Option<Spanned<u32>>,
    concurrency: Option<Spanned<usize>>,
    scan_interval_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    accounts: Spanned<PathBuf>,
    #[serde(rename = "virtual")]
    virtual_file: Option<Spanned<PathBuf>>,
    quotas: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawImap {
    quota_mib: Option<Spanned<u64>>,
    idle_poll_secs: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u64>>,
    max_connections_per_client: Option<Spanned<u64>>,
    hierarchy_separator: Option<Spanned<String>>,
    mime_max_parts: Option<Spanned<u64>>,
    mime_max_depth: Option<Spanned<u64>>,
    summary_cache_mib: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
    reload_check_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    max_message_size: Option<Spanned<u64>>,
    max_recipients: Option<Spanned<usize>>,
    max_line: Option<Spanned<usize>>,
    hard_error_limit: Option<Spanned<u32>>,
    command_timeout_secs: Option<Spanned<u64>>,
    data_timeout_secs: Option<Spanned<u64>>,
    bare_newline: Option<Spanned<String>>,
    max_connections: Option<Spanned<usize>>,
    max_connections_per_client: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Spanned<String>,
    protocol: Spanned<String>,
    #[serde(default)]
    tls: Option<Spanned<String>>,
    #[serde(default)]
    proxy: Option<Spanned<String>>,
    #[serde(default)]
    trusted_networks: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    proxy_timeout_secs: Option<Spanned<u64>>,
    allow_plaintext_auth: Option<Spanned<bool>>,
}

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// SMTP for incoming mail (MX).
    Smtp,
    /// SMTP submission (AUTH required).
    Submission,
    /// IMAP.
    Imap,
    /// HTTP: `/metrics`, `/healthz`, `/readyz` (plain text, no TLS).
    Http,
}

impl Protocol {
    /// The name in the configuration file (and in metric labels).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Imap => "imap",
            Protocol::Http => "http",
        }
    }
}

/// TLS mode of a listener.
pub use postern_core::smtp::TlsMode;

/// One listener.
#[derive(Clone, Debug)]
pub struct Listener {
    /// Where to listen.
    pub address: SocketAddr,
    /// What it speaks.
    pub protocol: Protocol,
    /// TLS mode.
    pub tls: TlsMode,
    /// PROXY policy.
    pub proxy: ProxyConfig,
    /// IMAP: LOGIN without TLS (see `config/imap.rs`).
    pub allow_plaintext_auth: bool,
}

/// TLS files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// How often to check the files for change.
    pub reload_check: Duration,
}

/// The smarthost all outbound mail goes through.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Host name (also the TLS server name checked).
    pub host: String,
    /// Port (587 for submission with STARTTLS).
    pub port: u16,
    /// Postfix-style `sasl_passwd` file with the credentials.
    pub sasl_passwd: Option<PathBuf>,
    /// Refuse to send without TLS (default: yes).
    pub require_tls: bool,
    /// Trust this CA (PEM) instead of the public web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Messages relayed per UTC day before deferring (0: no cap).
    pub daily_limit: u32,
    /// Connections to the smarthost at once.
    pub concurrency: usize,
    /// How often the queue is scanned for due messages.
    pub scan_interval: Duration,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from.
    pub file: PathBuf,
    /// Server name.
    pub hostname: String,
    /// Maildir root.
    pub data_dir: PathBuf,
    /// `postfix-accounts.cf`.
    pub accounts: PathBuf,
    /// `postfix-virtual.cf`.
    pub virtual_file: Option<PathBuf>,
    /// `dovecot-quotas.cf` (per-account storage limits).
    pub quotas_file: Option<PathBuf>,
    /// Storage limit per account in bytes (None: unlimited).
    pub quota: Option<u64>,
    /// While a client idles, how often its folder is checked for changes
    /// made outside this process (ours wake it at once).
    pub idle_poll: Duration,
    /// IMAP connections at once (Dovecot's imap-login `process_limit`).
    pub imap_max_connections: usize,
    /// IMAP connections at once from one real client address.
    pub imap_max_connections_per_client: u32,
    /// The IMAP hierarchy separator clients see (see `config/imap.rs`).
    pub hierarchy_separator: postern_core::imap::session::HierarchySeparator,
    /// How much MIME structure IMAP describes per message (parts, depth).
    pub mime: postern_core::imap::limits::MimeLimits,
    /// The bytes the IMAP summary cache may hold in memory.
    pub summary_cache_bytes: usize,
    /// TLS certificate and key, if any listener uses TLS.
    pub tls: Option<TlsFiles>,
    /// SMTP settings.
    pub smtp: SmtpConfig,
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// How long sessions in DATA may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long a failed AUTH waits before its answer.
    pub auth_failure_delay: Duration,
    /// The outbound queue folder.
    pub queue_dir: PathBuf,
    /// SMTP sessions at once, over all listeners.
    pub max_connections: usize,
    /// SMTP sessions at once from one client address (Postfix
    /// `smtpd_client_connection_count_limit`: 50).
    pub max_connections_per_client: u32,
    /// The smarthost, if outbound mail is relayed.
    pub relay: Option<RelayConfig>,
    /// Per-client rate limits.
    pub rate: RateConfig,
    /// The log's format and file.
    pub log: LogConfig,
    /// The resolver for message authentication (`config/dns.rs`).
    pub dns: dns::DnsConfig,
    /// Message authentication on the MX (`config/msgauth.rs`).
    pub auth: msgauth::AuthConfig,
    /// The MTA-STS policy served on the HTTP listener, if any.
    pub mta_sts: Option<postern_core::mtasts::Policy>,
    /// Outbound DKIM signing (`[dkim]`, `config/dkim.rs`).
    pub dkim: Option<dkim::DkimConfig>,
    /// SRS for forwarded mail (`[srs]`, `config/srs.rs`).
    pub srs: Option<srs::SrsConfig>,
    /// The line of each key that names a file (`directory.accounts`,
    /// `tls.cert`, ...), for [`Config::check_files`]'s errors.
    pub file_lines: std::collections::BTreeMap<&'static str, usize>,
    /// `[spam]`: scoring and learning (`config/spam.rs`).
    pub spam: postern_core::policy::spam::SpamSettings,
    /// Which backend keeps mail, queue and counters (`[store]`).
    pub store: store::StoreBackend,
}

/// A number's range: (key, default, least, most).
struct Range<T>(&'static str, T, T, T);

impl<T: Copy + PartialOrd + fmt::Display> Range<T> {
    /// The value (or the default), refused with line and key outside the range.
    fn get(
        &self,
        v: Option<&Spanned<T>>,
        at: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
    ) -> Result<T, ConfigError> {
        let Range(key, default, min, max) = self;
        let Some(v) = v else {
            return Ok(*default);
        };
        let x = *v.get_ref();
        if x < *min || x > *max {
            return Err(at(
                v.span(),
                key,
                format!("{x} is out of range: {min} to {max} (default {default})"),
            ));
        }
        Ok(x)
    }
}

/// Most bytes in a message (`smtp.max_message_size`): 64 MiB, the most
/// the Maildir store reads back for FETCH (a message stored bigger could
/// never be read), and a quarter of the pod's memory limit.
pub const MAX_MESSAGE_SIZE: u64 = 64 << 20;
/// Most recipients of a message (`smtp.max_recipients`): as many as one
/// queue entry holds, so that a message whose recipients are all remote
/// (or whose failed local copies are all kept for retry) can be queued.
pub const MAX_RECIPIENTS: usize = postern_adapters::spool::MAX_RCPTS;

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Config {
    /// Reads and checks a configuration file. Relative paths inside it are
    /// taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err0 = |message: String| ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err0(e.to_string()))?;
        if meta.len() > MAX_CONFIG {
            return Err(err0(format!("larger than {MAX_CONFIG} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err0(e.to_string()))?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::parse(&text, path, &base)
    }

    /// Checks configuration text.
    pub fn parse(text: &str, file: &Path, base: &Path) -> Result<Self, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: None,
            message: e.message().to_owned(),
        })?;
        let at = |span: std::ops::Range<usize>, key: &str, message: String| ConfigError {
            file: file.to_owned(),
            line: Some(line_of(text, span.start)),
            key: Some(key.to_owned()),
            message,
        };
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let hostname = raw.hostname.get_ref().trim().to_owned();
        if hostname.is_empty()
            || !hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(at(
                raw.hostname.span(),
                "hostname",
                "must be a DNS name".into(),
            ));
        }

        let mut smtp = SmtpConfig::new(hostname.clone());
        let d = SmtpLimits::default();
        let s = &raw.smtp;
        smtp.limits = SmtpLimits {
            max_message_size: Range(
                "smtp.max_message_size",
                d.max_message_size,
                1024,
                MAX_MESSAGE_SIZE,
            )
            .get(s.max_message_size.as_ref(), &at)?,
            max_recipients: Range("smtp.max_recipients", d.max_recipients, 1, MAX_RECIPIENTS)
                .get(s.max_recipients.as_ref(), &at)?,
            // RFC 5321 4.5.3.1.4: at least 512.
            max_line: Range("smtp.max_line", d.max_line, 512, 65_536)
                .get(s.max_line.as_ref(), &at)?,
            hard_error_limit: Range("smtp.hard_error_limit", d.hard_error_limit, 1, 1000)
                .get(s.hard_error_limit.as_ref(), &at)?,
            command_timeout: Duration::from_secs(
                Range(
                    "smtp.command_timeout_secs",
                    d.command_timeout.as_secs(),
                    1,
                    3600,
                )
                .get(s.command_timeout_secs.as_ref(), &at)?,
            ),
            data_timeout: Duration::from_secs(
                Range("smtp.data_timeout_secs", d.data_timeout.as_secs(), 1, 3600)
                    .get(s.data_timeout_secs.as_ref(), &at)?,
            ),
            max_pipelined: d.max_pipelined,
            max_auth_failures: d.max_auth_failures,
        };
        let max_connections =
            Range("smtp.max_connections", 2000, 1, 100_000).get(s.max_connections.as_ref(), &at)?;
        let max_connections_per_client = Range(
            "smtp.max_connections_per_client",
            50,
            1,
            u32::try_from(max_connections).unwrap_or(u32::MAX),
        )
        .get(s.max_connections_per_client.as_ref(), &at)?;
        let mut file_lines = std::collections::BTreeMap::new();
        let dir = raw.directory.get_ref();
        file_lines.insert(
            "directory.accounts",
            line_of(text, dir.accounts.span().start),
        );
        if let Some(v) = &dir.virtual_file {
            file_lines.insert("directory.virtual", line_of(text, v.span().start));
        }
        if let Some(q) = &dir.quotas {
            file_lines.insert("directory.quotas", line_of(text, q.span().start));
        }
        if let Some(b) = &s.bare_newline {
            smtp.bare_newline = match b.get_ref().as_str() {
                "reject" => BareNewline::Reject,
                "normalize" => BareNewline::Normalize,
                other => {
                    return Err(at(
                        b.span(),
                        "smtp.bare_newline",
                        format!("{other:?}: expected \"reject\" or \"normalize\""),
                    ))
                }
            };
        }
        let domain = hostname
            .split_once('.')
            .map_or(hostname.as_str(), |(_, d)| d);
        smtp.postmaster_domain = domain.to_owned();

        let tls = match raw.tls.as_ref().map(Spanned::get_ref) {
            None => None,
            Some(t) => {
                file_lines.insert("tls.cert", line_of(text, t.cert.span().start));
                file_lines.insert("tls.key", line_of(text, t.key.span().start));
                Some(TlsFiles {
                    cert: abs(t.cert.get_ref()),
                    key: abs(t.key.get_ref()),
                    reload_check: Duration::from_secs(
                        Range("tls.reload_check_secs", 10, 1, 86_400)
                            .get(t.reload_check_secs.as_ref(), &at)?,
                    ),
                })
            }
        };

        if raw.listener.is_empty() {
            return Err(at(
                0..0,
                "listener",
                "at least one [[listener]] is needed".into(),
            ));
        }
        let mut listeners = Vec::new();
        for (i, l) in raw.listener.iter().enumerate() {
            let k = |name: &str| format!("listener[{}].{name}", i + 1);
            let r = l.get_ref();
            let address: SocketAddr = r.address.get_ref().parse().map_err(|_| {
                at(
                    r.address.span(),
                    &k("address"),
                    format!("{:?} is not IP:port", r.address.get_ref()),
                )
            })?;
            if address.port() != 0 && listeners.iter().any(|x: &Listener| x.address == address) {
                return Err(at(
                    r.address.span(),
                    &k("address"),
                    format!("{address} is used twice"),
                ));
            }
            let protocol = match r.protocol.get_ref().as_str() {
                "smtp" => Protocol::Smtp,
                "submission" => Protocol::Submission,
                "imap" => Protocol::Imap,
                "http" => Protocol::Http,
                other => {
                    return Err(at(
                        r.protocol.span(),
                        &k("protocol"),
                        format!("{other:?}: expected smtp, submission, imap or http"),
                    ))
                }
            };
            let tls_mode = match r.tls.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
                None => TlsMode::None,
                Some(("none", _)) => TlsMode::None,
                Some(("starttls", _)) => TlsMode::StartTls,
                Some(("implicit", _)) => TlsMode::Implicit,
                Some((other, span)) => {
                    return Err(at(
                        span,
                        &k("tls"),
                        format!("{other:?}: expected none, starttls or implicit"),
                    ))
                }
            };
            if protocol == Protocol::Http && tls_mode != TlsMode::None {
                return Err(at(
                    l.span(),
                    &k("tls"),
                    "an http listener is plain HTTP on the pod network: tls = \"none\"".into(),
                ));
            }
            if tls_mode != TlsMode::None && tls.is_none() {
                return Err(at(
                    l.span(),
                    &k("tls"),
                    "TLS needs a [tls] section with cert and key".into(),
                ));
            }
            let required = match r.proxy.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
                None | Some(("forbidden", _)) => false,
                Some(("required", _)) => true,
                Some((other, span)) => {
                    return Err(at(
                        span,
                        &k("proxy"),
                        format!("{other:?}: expected required or forbidden"),
                    ))
                }
            };
            let mut proxy = if required {
                let Some(nets) = &r.trusted_networks else {
                    return Err(at(
                        l.span(),
                        &k("trusted_networks"),
                        "proxy = \"required\" needs the networks HAProxy connects from".into(),
                    ));
                };
                let trusted = Networks::parse(nets.get_ref().iter().map(String::as_str))
                    .map_err(|e| at(nets.span(), &k("trusted_networks"), e.to_string()))?;
                ProxyConfig::required(trusted)
            } else {
                if r.trusted_networks.is_some() {
                    return Err(at(
                        l.span(),
                        &k("trusted_networks"),
                        "only used with proxy = \"required\"".into(),
                    ));
                }
                ProxyConfig::forbidden()
            };
            if let Some(t) = &r.proxy_timeout_secs {
                let range = Range("listener.proxy_timeout_secs", 5, 1, 300);
                let secs =
                    range.get(Some(t), &|span, _, m| at(span, &k("proxy_timeout_secs"), m))?;
                proxy.timeout = Duration::from_secs(secs);
            }
            debug_assert!(matches!(proxy.policy, ProxyPolicy::Required { .. }) == required);
            listeners.push(Listener {
                address,
                protocol,
                tls: tls_mode,
                proxy,
                allow_plaintext_auth: imap::plaintext_auth(
                    r.allow_plaintext_auth.as_ref(),
                    protocol,
                    &k("allow_plaintext_auth"),
                    &at,
                )?,
            });
        }

        let relay = match &raw.relay {
            None => None,
            Some(r) => {
                let span = r.span();
                let r = r.get_ref();
                if r.host.trim().is_empty() || r.host.contains(['/', ' ', '[', ']']) {
                    return Err(at(
                        span,
                        "relay.host",
                        format!("{:?} is not a host name", r.host),
                    ));
                }
                if r.port == 0 {
                    return Err(at(span, "relay.port", "must not be 0".into()));
                }
                if let Some(p) = &r.sasl_passwd {
                    file_lines.insert("relay.sasl_passwd", line_of(text, p.span().start));
                }
                if let Some(p) = &r.ca_file {
                    file_lines.insert("relay.ca_file", line_of(text, p.span().start));
                }
                Some(RelayConfig {
                    host: r.host.trim().to_owned(),
                    port: r.port,
                    sasl_passwd: r.sasl_passwd.as_ref().map(|p| abs(p.get_ref())),
                    require_tls: r.require_tls.unwrap_or(true),
                    ca_file: r.ca_file.as_ref().map(|p| abs(p.get_ref())),
                    daily_limit: Range("relay.daily_limit", 0, 0, 1_000_000)
                        .get(r.daily_limit.as_ref(), &at)?,
                    concurrency: Range("relay.concurrency", 4, 1, 64)
                        .get(r.concurrency.as_ref(), &at)?,
                    scan_interval: Duration::from_secs(
                        Range("relay.scan_interval_secs", 5, 1, 86_400)
                            .get(r.scan_interval_secs.as_ref(), &at)?,
                    ),
                })
            }
        };
        let action = |v: &Option<Spanned<String>>,
                      key: &str,
                      default: PostscreenAction|
         -> Result<PostscreenAction, ConfigError> {
            match v.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
                None => Ok(default),
                Some(("ignore", _)) => Ok(PostscreenAction::Ignore),
                Some(("drop", _)) => Ok(PostscreenAction::Drop),
                Some((other, span)) => Err(at(
                    span,
                    key,
                    format!("{other:?}: expected \"ignore\" or \"drop\""),
                )),
            }
        };
        let nets = |v: &Option<Spanned<Vec<String>>>, key: &str| -> Result<Networks, ConfigError> {
            match v {
                None => Ok(Networks::none()),
                Some(n) => Networks::parse(n.get_ref().iter().map(String::as_str))
                    .map_err(|e| at(n.span(), key, e.to_string())),
            }
        };
        let ps = &raw.postscreen;
        let d = Postscreen::default();
        smtp.postscreen = Postscreen {
            greet_pause: Duration::from_millis(
                Range("postscreen.greet_pause_ms", 0, 0, 60_000)
                    .get(ps.greet_pause_ms.as_ref(), &at)?,
            ),
            greet_action: action(&ps.greet_action, "postscreen.greet_action", d.greet_action)?,
            pipelining_enable: ps.pipelining_enable.unwrap_or(d.pipelining_enable),
            pipelining_action: action(
                &ps.pipelining_action,
                "postscreen.pipelining_action",
                d.pipelining_action,
            )?,
            non_smtp_command_enable: ps
                .non_smtp_command_enable
                .unwrap_or(d.non_smtp_command_enable),
            non_smtp_command_action: action(
                &ps.non_smtp_command_action,
                "postscreen.non_smtp_command_action",
                d.non_smtp_command_action,
            )?,
            bare_newline_enable: ps.bare_newline_enable.unwrap_or(d.bare_newline_enable),
            bare_newline_action: action(
                &ps.bare_newline_action,
                "postscreen.bare_newline_action",
                d.bare_newline_action,
            )?,
            allow: nets(&ps.access_list, "postscreen.access_list")?,
        };
        let r = &raw.rate;
        let rate = RateConfig {
            connection_rate_limit: Range("rate.connection_rate_limit", 10, 0, 1_000_000)
                .get(r.connection_rate_limit.as_ref(), &at)?,
            message_rate_limit: Range("rate.message_rate_limit", 30, 0, 1_000_000)
                .get(r.message_rate_limit.as_ref(), &at)?,
            time_unit: Duration::from_secs(
                Range("rate.time_unit_secs", 60, 1, 86_400).get(r.time_unit_secs.as_ref(), &at)?,
            ),
            exceptions: nets(&r.exceptions, "rate.exceptions")?,
        };
        let mta_sts = match &raw.mta_sts {
            None => None,
            Some(m) => {
                use postern_core::mtasts::{Mode, Policy};
                let r = m.get_ref();
                let mode = match r.mode.get_ref().as_str() {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => {
                        return Err(at(
                            r.mode.span(),
                            "mta_sts.mode",
                            format!("{other:?}: expected enforce, testing or none"),
                        ))
                    }
                };
                let max_age = Range(
                    "mta_sts.max_age_secs",
                    604_800,
                    86_400,
                    postern_core::mtasts::MAX_AGE_LIMIT,
                )
                .get(r.max_age_secs.as_ref(), &at)?;
                let policy = Policy {
                    mode,
                    mx: r.mx.clone(),
                    max_age,
                };
                if let Err(e) = policy.validate() {
                    return Err(at(m.span(), "mta_sts", e.to_string()));
                }
                Some(policy)
            }
        };
        let log = LogConfig {
            format: match raw
                .log
                .format
                .as_ref()
                .map(|f| (f.get_ref().as_str(), f.span()))
            {
                None | Some(("tracing", _)) => LogFormat::Tracing,
                Some(("syslog", _)) => LogFormat::Syslog,
                Some((other, span)) => {
                    return Err(at(
                        span,
                        "log.format",
                        format!("{other:?}: expected \"tracing\" or \"syslog\""),
                    ))
                }
            },
            file: raw.log.file.as_deref().map(abs),
        };

        let data_dir = abs(raw.data_dir.get_ref());
        let queue_dir = raw
            .queue_dir
            .as_deref()
            .map(abs)
            .unwrap_or_else(|| data_dir.join(".postern-queue"));

        let quota_mib =
            Range("imap.quota_mib", 0, 0, 16 << 20).get(raw.imap.quota_mib.as_ref(), &at)?;
        let idle_poll = Range("imap.idle_poll_secs", 5, 1, 86_400)
            .get(raw.imap.idle_poll_secs.as_ref(), &at)?;
        let imap_max_connections = Range("imap.max_connections", 1000, 1, 100_000)
            .get(raw.imap.max_connections.as_ref(), &at)?;
        let imap_max_connections_per_client =
            Range("imap.max_connections_per_client", 100, 1, 100_000)
                .get(raw.imap.max_connections_per_client.as_ref(), &at)?;
        let mime_parts = Range("imap.mime_max_parts", 1000, 1, 100_000)
            .get(raw.imap.mime_max_parts.as_ref(), &at)?;
        let mime_depth =
            Range("imap.mime_max_depth", 50, 1, 100).get(raw.imap.mime_max_depth.as_ref(), &at)?;
        let summary_mib = Range("imap.summary_cache_mib", 32, 1, 4096)
            .get(raw.imap.summary_cache_mib.as_ref(), &at)?;
        let shutdown_grace =
            Range("shutdown_grace_secs", 30, 0, 3600).get(raw.shutdown_grace_secs.as_ref(), &at)?;
        let auth_failure_delay = Range("auth_failure_delay_ms", 1000, 0, 60_000)
            .get(raw.auth_failure_delay_ms.as_ref(), &at)?;

        let store = store::parse(
            raw.store.as_ref(),
            raw.postgres.as_ref(),
            raw.s3.as_ref(),
            base,
            &at,
        )?;
        let dkim = dkim::parse(raw.dkim.as_ref(), text, file, &abs)?;
        let srs = srs::parse(raw.srs.as_ref(), text, file, &abs)?;
        Ok(Config {
            dkim,
            srs,
            dns: raw.dns.check(&at)?,
            auth: raw.auth.check(smtp.limits.data_timeout, &at)?,
            spam: spam::settings(&raw.spam, &at)?,
            store,
            max_connections,
            max_connections_per_client,
            rate,
            log,
            mta_sts,
            file_lines,
            queue_dir,
            relay,
            file: file.to_owned(),
            hostname,
            data_dir,
            accounts: abs(dir.accounts.get_ref()),
            virtual_file: dir.virtual_file.as_ref().map(|p| abs(p.get_ref())),
            quotas_file: dir.quotas.as_ref().map(|p| abs(p.get_ref())),
            quota: (quota_mib > 0).then(|| quota_mib.saturating_mul(1 << 20)),
            imap_max_connections: usize::try_from(imap_max_connections).unwrap_or(usize::MAX),
            imap_max_connections_per_client: u32::try_from(imap_max_connections_per_client)
                .unwrap_or(u32::MAX),
            idle_poll: Duration::from_secs(idle_poll),
            hierarchy_separator: imap::separator(raw.imap.hierarchy_separator.as_ref(), &at)?,
            mime: postern_core::imap::limits::MimeLimits {
                max_parts: usize::try_from(mime_parts).unwrap_or(usize::MAX),
                max_depth: usize::try_from(mime_depth).unwrap_or(usize::MAX),
            },
            summary_cache_bytes: usize::try_from(summary_mib << 20).unwrap_or(usize::MAX),
            tls,
            smtp,
            listeners,
            shutdown_grace: Duration::from_secs(shutdown_grace),
            auth_failure_delay: Duration::from_millis(auth_failure_delay),
        })
    }
}

mod imap;
mod sections;
pub use sections::{LogConfig, LogFormat, RateConfig};
use sections::{RawLog, RawMtaSts, RawPostscreen, RawRate};
pub mod store;
#[cfg(test)]
mod tests;
