//! Settings of the SMTP server session.

use super::data::BareNewline;
use crate::net::Networks;
use crate::proxy::ProxyConfig;
use std::time::Duration;

/// Server-wide SMTP settings, shared by every session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// The name in the greeting, EHLO reply and Received headers.
    pub hostname: String,
    /// Text after the hostname in the greeting.
    pub banner: String,
    /// The domain `RCPT TO:<postmaster>` (no domain) is delivered to.
    pub postmaster_domain: String,
    /// The limits.
    pub limits: SmtpLimits,
    /// What to do with bare CR / bare LF in message data.
    pub bare_newline: BareNewline,
    /// The postscreen-like checks of MX listeners.
    pub postscreen: Postscreen,
}

impl SmtpConfig {
    /// Settings with Postfix-like defaults for `hostname`.
    pub fn new(hostname: impl Into<String>) -> Self {
        let hostname = hostname.into();
        Self {
            postmaster_domain: hostname.clone(),
            hostname,
            banner: "ESMTP Postern".to_owned(),
            limits: SmtpLimits::default(),
            bare_newline: BareNewline::default(),
            postscreen: Postscreen::default(),
        }
    }
}

/// Every limit of an SMTP session, each a named setting. Defaults are no
/// looser than Postfix's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpLimits {
    /// Longest command line, CRLF included (Postfix `line_length_limit`: 2048).
    pub max_line: usize,
    /// Recipients per message (`smtpd_recipient_limit`: 1000).
    pub max_recipients: usize,
    /// Largest message in bytes (`message_size_limit`: 10240000).
    pub max_message_size: u64,
    /// Errors before the session is closed (`smtpd_hard_error_limit`: 20).
    pub hard_error_limit: u32,
    /// Failed AUTH attempts before the session is closed (3, as Dovecot's
    /// login processes; Postfix counts them as errors only).
    pub max_auth_failures: u32,
    /// Idle time allowed while a command is awaited (`smtpd_timeout`: 300 s).
    pub command_timeout: Duration,
    /// Idle time allowed inside DATA or a BDAT chunk (`smtpd_timeout`: 300 s).
    pub data_timeout: Duration,
    /// Unprocessed input held while the session waits for the runtime
    /// (pipelined commands); more than this closes the session.
    pub max_pipelined: usize,
}

impl Default for SmtpLimits {
    fn default() -> Self {
        Self {
            max_line: 2048,
            max_recipients: 1000,
            max_message_size: 10_240_000,
            hard_error_limit: 20,
            max_auth_failures: 3,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
            max_pipelined: 256 * 1024,
        }
    }
}

/// What a postscreen-like check does with a client that fails it
/// (postscreen's `*_action` settings; `enforce` is not offered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostscreenAction {
    /// Log the violation and carry on.
    Ignore,
    /// Log it, answer `521` and close the connection.
    Drop,
}

/// The postscreen-like checks on MX listeners, each named after its
/// postscreen(8) setting. They run inside the SMTP session itself (no
/// hand-off to another process), so a client that passes them never has to
/// reconnect; clients from [`Postscreen::allow`], PROXY `LOCAL` health
/// checks and submission listeners skip them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Postscreen {
    /// `postscreen_greet_wait`, here a pause before the last greeting line:
    /// a non-zero pause sends `220-host banner` first and the final
    /// `220 host banner` after it; a client that talks before the final
    /// line is a `PREGREET` talker. Zero (the default, unlike postscreen's
    /// 6 s) sends a single greeting line at once and turns the test off.
    pub greet_pause: std::time::Duration,
    /// `postscreen_greet_action` (postscreen: `ignore`).
    pub greet_action: PostscreenAction,
    /// `postscreen_pipelining_enable` (postscreen: no): a client that
    /// sends a command before the answer to its EHLO/HELO (RFC 2920 lets
    /// it pipeline only once PIPELINING is announced).
    pub pipelining_enable: bool,
    /// `postscreen_pipelining_action` (`ignore` here; postscreen's
    /// `enforce` is not offered).
    pub pipelining_action: PostscreenAction,
    /// `postscreen_non_smtp_command_enable` (postscreen: no): a line like
    /// `GET /`, `POST`, `CONNECT`, or one that does not start with a
    /// letter (`postscreen_forbidden_commands`).
    pub non_smtp_command_enable: bool,
    /// `postscreen_non_smtp_command_action` (postscreen: `drop`).
    pub non_smtp_command_action: PostscreenAction,
    /// `postscreen_bare_newline_enable` (postscreen: no): a command line
    /// ended by LF without CR.
    pub bare_newline_enable: bool,
    /// `postscreen_bare_newline_action` (postscreen: `ignore`).
    pub bare_newline_action: PostscreenAction,
    /// `postscreen_access_list`'s permit entries: networks no check
    /// applies to.
    pub allow: Networks,
}

impl Default for Postscreen {
    fn default() -> Self {
        Self {
            greet_pause: std::time::Duration::ZERO,
            greet_action: PostscreenAction::Ignore,
            pipelining_enable: false,
            pipelining_action: PostscreenAction::Ignore,
            non_smtp_command_enable: false,
            non_smtp_command_action: PostscreenAction::Drop,
            bare_newline_enable: false,
            bare_newline_action: PostscreenAction::Ignore,
            allow: Networks::none(),
        }
    }
}

impl Postscreen {
    /// Whether any check is on (a `HANGUP` before EHLO is reported then).
    pub fn any(&self) -> bool {
        !self.greet_pause.is_zero()
            || self.pipelining_enable
            || self.non_smtp_command_enable
            || self.bare_newline_enable
    }
}

/// What a listener is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Receives mail for local domains from anyone (port 25 / 2525). No AUTH.
    Mx,
    /// Takes mail from authenticated users (587 / 465 and their twins):
    /// AUTH offered under TLS, and required before MAIL.
    Submission,
}

/// How a listener does TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS at all.
    None,
    /// Plain text with STARTTLS offered (RFC 3207).
    StartTls,
    /// TLS from the first byte (after any PROXY header), as on 465.
    Implicit,
}

/// One listener's settings, shared by its sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// MX or submission.
    pub role: Role,
    /// TLS mode.
    pub tls: TlsMode,
    /// PROXY header policy.
    pub proxy: ProxyConfig,
}

impl ListenerConfig {
    /// An MX listener with STARTTLS and no PROXY header.
    pub fn mx() -> Self {
        Self {
            role: Role::Mx,
            tls: TlsMode::StartTls,
            proxy: ProxyConfig::forbidden(),
        }
    }

    /// A submission listener with STARTTLS and no PROXY header.
    pub fn submission() -> Self {
        Self {
            role: Role::Submission,
            tls: TlsMode::StartTls,
            proxy: ProxyConfig::forbidden(),
        }
    }
}
