//! The log lines of the SMTP and IMAP sessions, in the two formats of
//! `[log] format`:
//!
//! - `tracing` (the default): every line through `tracing`, as before;
//! - `syslog`: the lines CrowdSec's stock parsers read, with the program
//!   names and texts Postfix and Dovecot write and a syslog header
//!   (`Dec  1 19:10:00 host postfix/smtpd[pid]: ...`), on stdout or in
//!   `[log] file`. Lines with no Postfix or Dovecot form still go through
//!   `tracing`.
//!
//! The texts come from the core's notices and replies: this module only
//! formats lines. Client addresses are the real ones (the PROXY source),
//! IPv4 written plainly (never `::ffff:a.b.c.d`). A PROXY `LOCAL`
//! connection (a health check) never gets a line that reads as an attack,
//! and neither does a client that connects and leaves without a word (a
//! TCP probe): Postfix's `lost connection after CONNECT` is not written.
//! Text the client chose (user names, HELO names, addresses, pre-greet
//! bytes) is escaped so that it cannot start a line of its own.

use crate::config::{LogConfig, LogFormat};
use postern_core::proxy::{AddressSource, ClientAddress};
use postern_core::smtp::{ListenerConfig, Notice, Reject, Role, TlsMode};
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// Where syslog lines go, once [`init`] chose the syslog format.
struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    host: String,
    pid: u32,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// Sets the format up for the process: with `syslog`, opens `[log] file`
/// (appending) or takes stdout. Call once, before the sessions start.
pub fn init(cfg: &LogConfig, hostname: &str) -> std::io::Result<()> {
    if cfg.format != LogFormat::Syslog {
        return Ok(());
    }
    let out: Box<dyn Write + Send> = match &cfg.file {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let short = hostname.split('.').next().unwrap_or(hostname);
    let _ = SINK.set(Sink {
        out: Mutex::new(out),
        host: short.to_owned(),
        pid: std::process::id(),
    });
    Ok(())
}

/// The Postfix and Dovecot program names of the lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `postfix/smtpd`: the MX.
    Smtpd,
    /// `postfix/submission/smtpd`: submission with STARTTLS (587).
    SubmissionSmtpd,
    /// `postfix/smtps/smtpd`: submission over implicit TLS (465).
    SmtpsSmtpd,
    /// `postfix/postscreen`: the MX checks before the session proper.
    Postscreen,
    /// `dovecot`: IMAP logins.
    Dovecot,
}

impl Program {
    /// The smtpd program of a listener.
    pub fn smtpd(listener: &ListenerConfig) -> Self {
        match (listener.role, listener.tls) {
            (Role::Mx, _) => Program::Smtpd,
            (Role::Submission, TlsMode::Implicit) => Program::SmtpsSmtpd,
            (Role::Submission, _) => Program::SubmissionSmtpd,
        }
    }

    /// The name in the syslog header.
    pub fn name(self) -> &'static str {
        match self {
            Program::Smtpd => "postfix/smtpd",
            Program::SubmissionSmtpd => "postfix/submission/smtpd",
            Program::SmtpsSmtpd => "postfix/smtps/smtpd",
            Program::Postscreen => "postfix/postscreen",
            Program::Dovecot => "dovecot",
        }
    }
}

/// Whether a line is a warning (an attack sign) or information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Information.
    Info,
    /// A warning.
    Warn,
}

/// Writes one line: in the syslog format with its header, else through
/// `tracing` with the client address as a field.
pub fn line(level: Level, program: Program, client: IpAddr, text: &str) {
    if let Some(sink) = SINK.get() {
        let stamp = syslog_time(SystemTime::now());
        let l = format!(
            "{stamp} {} {}[{}]: {text}\n",
            sink.host,
            program.name(),
            sink.pid
        );
        let mut out = sink.out.lock().unwrap_or_else(|e| e.into_inner());
        // A log that cannot be written must not stop the mail.
        let _ = out.write_all(l.as_bytes()).and_then(|()| out.flush());
        return;
    }
    let client = plain(client);
    match level {
        Level::Info => info!(client = %client, "{text}"),
        Level::Warn => warn!(client = %client, "{text}"),
    }
}

/// The address as CrowdSec reads it: IPv4-mapped IPv6 as plain IPv4.
pub fn plain(ip: IpAddr) -> IpAddr {
    postern_core::net::canonical(ip)
}

/// Logs an SMTP session's notice: Postfix's smtpd and postscreen lines
/// where Postfix has one, else a `tracing` line.
pub fn smtp_notice(listener: &ListenerConfig, client: &ClientAddress, n: &Notice) {
    let ip = plain(client.client.ip());
    let port = client.client.port();
    let smtpd = Program::smtpd(listener);
    // A health check's connection is never an attack, whatever it did.
    let attack_lines = client.source != AddressSource::ProxyLocal;
    let screen = |level: Level, text: String| {
        if attack_lines {
            line(level, Program::Postscreen, ip, &text);
        } else {
            info!(client = %ip, "health check: {text}");
        }
    };
    match n {
        Notice::AuthFailed {
            username,
            mechanism,
        } if attack_lines => line(
            Level::Warn,
            smtpd,
            ip,
            &format!(
                "warning: unknown[{ip}]: SASL {mechanism} authentication failed: authentication failure, sasl_username={}",
                clean(username)
            ),
        ),
        Notice::RcptRejected(r) if attack_lines => {
            line(Level::Info, smtpd, ip, &noqueue("RCPT", ip, r));
        }
        Notice::MailRejected(r) if attack_lines => {
            line(Level::Warn, smtpd, ip, &noqueue("MAIL", ip, r));
        }
        Notice::Refused(reply) if attack_lines => line(
            Level::Warn,
            smtpd,
            ip,
            &format!("NOQUEUE: reject: CONNECT from unknown[{ip}]: {reply}; proto=SMTP"),
        ),
        Notice::LostConnection { during } if attack_lines && *during != "CONNECT" => line(
            Level::Info,
            smtpd,
            ip,
            &format!("lost connection after {during} from unknown[{ip}]"),
        ),
        Notice::Pregreet { bytes, after, text } => screen(
            Level::Warn,
            format!(
                "PREGREET {bytes} after {} from [{ip}]:{port}: {}",
                secs(*after, 2),
                escape(text)
            ),
        ),
        Notice::Pipelining { after, text } => screen(
            Level::Warn,
            format!(
                "COMMAND PIPELINING from [{ip}]:{port} after {after}: {}",
                escape(text)
            ),
        ),
        Notice::NonSmtpCommand { after, text } => screen(
            Level::Warn,
            format!(
                "NON-SMTP COMMAND from [{ip}]:{port} after {after}: {}",
                escape(text)
            ),
        ),
        Notice::BareNewline { after } => screen(
            Level::Warn,
            format!("BARE NEWLINE from [{ip}]:{port} after {after}"),
        ),
        Notice::Hangup { after, stage } => screen(
            Level::Info,
            format!("HANGUP after {} from [{ip}]:{port} in {stage}", secs(*after, 1)),
        ),
        Notice::ProxyRefused(e) => warn!(peer = %ip, "PROXY refused: {e}"),
        other => info!(client = %ip, "{other:?}"),
    }
}

/// Logs a failed IMAP login as Dovecot's imap-login does.
pub fn imap_login_failed(client: &ClientAddress, user: &str, attempts: u32, took: Duration) {
    if client.source == AddressSource::ProxyLocal {
        return;
    }
    let (ip, lip) = (plain(client.client.ip()), plain(client.server.ip()));
    line(
        Level::Warn,
        Program::Dovecot,
        ip,
        &format!(
            "imap-login: Disconnected (auth failed, {attempts} attempts in {} secs): user=<{}>, method=PLAIN, rip={ip}, lip={lip}, TLS, session=<{}>",
            took.as_secs(),
            clean(user),
            session_id()
        ),
    );
}

/// Logs a successful IMAP login as Dovecot's imap-login does.
pub fn imap_login(client: &ClientAddress, account: &str) {
    let (ip, lip) = (plain(client.client.ip()), plain(client.server.ip()));
    line(
        Level::Info,
        Program::Dovecot,
        ip,
        &format!(
            "imap-login: Login: user=<{}>, method=PLAIN, rip={ip}, lip={lip}, mpid={}, TLS, session=<{}>",
            clean(account),
            std::process::id(),
            session_id()
        ),
    );
}

/// Postfix's `NOQUEUE: reject: CMD from unknown[IP]: REPLY; from=<..>
/// to=<..> proto=.. helo=<..>`.
fn noqueue(cmd: &str, ip: IpAddr, r: &Reject) -> String {
    let mut s = format!("NOQUEUE: reject: {cmd} from unknown[{ip}]: {}; ", r.reply);
    let from = r.from.as_ref().map(ToString::to_string).unwrap_or_default();
    s.push_str(&format!("from=<{}> ", clean(&from)));
    if let Some(to) = &r.to {
        s.push_str(&format!("to=<{}> ", clean(&to.to_string())));
    }
    s.push_str(&format!("proto={}", r.proto));
    if let Some(h) = &r.helo {
        s.push_str(&format!(" helo=<{}>", clean(h)));
    }
    s
}

/// A Dovecot-like session id, unique in the process.
fn session_id() -> String {
    format!("{:012x}", SESSIONS.fetch_add(1, Ordering::Relaxed))
}

/// Seconds with `places` decimals (`6.03`).
fn secs(d: Duration, places: usize) -> String {
    format!("{:.*}", places, d.as_secs_f64())
}

/// Client text made safe for one log line: control characters become
/// `?` (as Postfix's printable()), at most 256 characters.
fn clean(s: &str) -> String {
    s.chars()
        .take(256)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Client bytes written C-style (`EHLO x\r\n`), as postscreen shows them.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 8);
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// The RFC 3164 timestamp (`Dec  1 19:10:00`), in UTC.
fn syslog_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (_, month, day) = postern_core::datetime::civil_from_days(days);
    let rest = secs % 86_400;
    let name = usize::try_from(month - 1)
        .ok()
        .and_then(|m| MONTHS.get(m))
        .unwrap_or(&"Jan");
    format!(
        "{name} {day:>2} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_time_is_rfc3164() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_152_200); // 2026-12-01 19:10:00 UTC
        assert_eq!(syslog_time(t), "Dec  1 19:10:00");
        assert_eq!(syslog_time(UNIX_EPOCH), "Jan  1 00:00:00");
    }

    #[test]
    fn client_text_stays_on_one_line() {
        assert_eq!(clean("a\r\nDec 1 fake: line"), "a??Dec 1 fake: line");
        assert_eq!(escape(b"EHLO x\r\n\x16"), "EHLO x\\r\\n\\x16");
    }

    #[test]
    fn noqueue_lines_read_as_postfix_writes_them() {
        use postern_core::smtp::{Address, Reply};
        let addr = |l: &str, d: &str| Address {
            local: l.into(),
            domain: d.into(),
        };
        let r = Reject {
            reply: Reply::new(
                554,
                "5.7.1",
                String::from("<x@remote.example>: Relay access denied"),
            ),
            from: Some(addr("a", "example.net")),
            to: Some(addr("x", "remote.example")),
            helo: Some("evil\r\nDec  1 00:00:00 mx fake".into()),
            proto: "ESMTP",
        };
        let ip: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            noqueue("RCPT", plain(ip), &r),
            "NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 554 5.7.1 <x@remote.example>: \
             Relay access denied; from=<a@example.net> to=<x@remote.example> proto=ESMTP \
             helo=<evil??Dec  1 00:00:00 mx fake>"
        );
    }

    #[test]
    fn mapped_ipv4_is_written_plainly() {
        let ip: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(plain(ip).to_string(), "192.0.2.7");
    }
}
