//! `postern probe --config FILE`: the end-to-end roundtrip probe the
//! CronJob runs. It sends a uniquely marked message (SMTP submission with
//! AUTH, or an HTTP send API such as Brevo's, so that it comes back over
//! the external MX path), polls IMAP until the marker shows up, deletes the
//! message, pushes the result to a Pushgateway (job `email_roundtrip`),
//! optionally GETs an Uptime Kuma push URL, and exits non-zero on failure.
//!
//! A one-shot command: plain blocking sockets with a deadline on every
//! read, rustls for TLS, the core's [`SmtpClient`] for submission and the
//! core's [`postern_core::probe`] for all protocol text.
//!
//! Its own small TOML file (not a section of the daemon's configuration:
//! the CronJob runs elsewhere, with other secrets, and needs none of the
//! daemon's settings):
//!
//! ```toml
//! from = "probe@example.com"          # envelope and header sender
//! to = "probe@example.com"            # the mailbox read back over IMAP
//! timeout_secs = 300                  # send to found, at most (default 300)
//! poll_interval_secs = 5              # IMAP SEARCH every (default 5)
//!
//! [smtp]                              # either SMTP submission ...
//! host = "smtp-relay.brevo.com"
//! port = 587
//! user = "probe@example.com"
//! password = "..."                    # or password_file = "/secrets/smtp"
//! tls = "starttls"                    # starttls | none
//! # tls_name = "..."  ca_file = "..." # server name checked; trust anchors (default: web PKI)
//!
//! [http]                              # ... or an HTTP send API
//! url = "https://api.brevo.com/v3/smtp/email"
//! header = "api-key"
//! key = "..."                         # or key_file
//! # template = '{"to":[{"email":"{{to}}"}], ...}'  (default: Brevo's; {{from}} {{to}} {{subject}} {{text}} {{marker}})
//!
//! [imap]                              # IMAPS
//! host = "mailserver.mailserver.svc"
//! port = 993
//! user = "probe@example.com"
//! password = "..."                    # or password_file
//!
//! [pushgateway]
//! url = "http://pushgateway.monitoring:9091"
//! # job = "email_roundtrip"
//!
//! [uptime_kuma]                       # optional: GET on success
//! url = "https://kuma.example.com/api/push/TOKEN?status=up&msg=OK"
//! ```

use postern_core::probe::{self as text, Report, Url};
use postern_core::smtp::client::{ClientConfig, ClientOutput, Job, RcptOutcome, SmtpClient};
use postern_core::Secret;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest line or HTTP response read from a server.
const MAX_READ: usize = 1 << 20;
/// The longest wait for one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest wait for the Pushgateway and Uptime Kuma, each.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

type R<T> = Result<T, String>;

/// The probe's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The sender (envelope and `From:`).
    pub from: String,
    /// The recipient: the mailbox read back over IMAP.
    pub to: String,
    /// Longest wait from sending to finding the message, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How often IMAP is searched, in seconds.
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Send by SMTP submission.
    pub smtp: Option<SmtpSend>,
    /// Send through an HTTP send API.
    pub http: Option<HttpSend>,
    /// Where the message is looked for.
    pub imap: ImapConfig,
    /// Where the result is pushed.
    pub pushgateway: Pushgateway,
    /// An optional Uptime Kuma push monitor.
    pub uptime_kuma: Option<UptimeKuma>,
}

fn default_timeout() -> u64 {
    300
}

fn default_poll() -> u64 {
    5
}

/// SMTP submission settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSend {
    /// Server host.
    pub host: String,
    /// Server port (587).
    #[serde(default = "default_submission")]
    pub port: u16,
    /// SASL user.
    pub user: String,
    /// SASL password.
    pub password: Option<String>,
    /// A file holding the SASL password (instead of `password`).
    pub password_file: Option<PathBuf>,
    /// `starttls` (default) or `none`.
    #[serde(default = "default_starttls")]
    pub tls: String,
    /// The TLS server name checked (default: `host`).
    pub tls_name: Option<String>,
    /// Trust anchors (PEM); default: the web PKI.
    pub ca_file: Option<PathBuf>,
}

fn default_submission() -> u16 {
    587
}

fn default_starttls() -> String {
    "starttls".into()
}

/// HTTP send API settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSend {
    /// The endpoint (`http://` or `https://`), POSTed to.
    pub url: String,
    /// The header carrying the key (`api-key` for Brevo).
    pub header: String,
    /// The key.
    pub key: Option<String>,
    /// A file holding the key (instead of `key`).
    pub key_file: Option<PathBuf>,
    /// The JSON body with placeholders (default: Brevo's).
    pub template: Option<String>,
    /// Trust anchors (PEM); default: the web PKI.
    pub ca_file: Option<PathBuf>,
}

/// The IMAPS mailbox the probe reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// Server host.
    pub host: String,
    /// Server port (993, implicit TLS).
    #[serde(default = "default_imaps")]
    pub port: u16,
    /// Login.
    pub user: String,
    /// Password.
    pub password: Option<String>,
    /// A file holding the password (instead of `password`).
    pub password_file: Option<PathBuf>,
    /// The TLS server name checked (default: `host`).
    pub tls_name: Option<String>,
    /// Trust anchors (PEM); default: the web PKI.
    pub ca_file: Option<PathBuf>,
}

fn default_imaps() -> u16 {
    993
}

/// The Pushgateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pushgateway {
    /// Its base URL (`http://pushgateway:9091`).
    pub url: String,
    /// The job (default `email_roundtrip`).
    pub job: Option<String>,
    /// Trust anchors for an `https://` URL; default: the web PKI.
    pub ca_file: Option<PathBuf>,
}

/// An Uptime Kuma push monitor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UptimeKuma {
    /// The push URL, fetched with GET after a success.
    pub url: String,
    /// Trust anchors for an `https://` URL; default: the web PKI.
    pub ca_file: Option<PathBuf>,
}

/// Reads and checks the probe's configuration file.
pub fn load(path: &Path) -> R<ProbeConfig> {
    let raw = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cfg: ProbeConfig =
        toml::from_str(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &mut Option<PathBuf>| {
        if let Some(f) = p.as_mut() {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
    };
    if let Some(s) = cfg.smtp.as_mut() {
        rel(&mut s.password_file);
        rel(&mut s.ca_file);
    }
    if let Some(h) = cfg.http.as_mut() {
        rel(&mut h.key_file);
        rel(&mut h.ca_file);
    }
    rel(&mut cfg.imap.password_file);
    rel(&mut cfg.imap.ca_file);
    rel(&mut cfg.pushgateway.ca_file);
    if let Some(k) = cfg.uptime_kuma.as_mut() {
        rel(&mut k.ca_file);
    }
    let fail = |m: &str| Err(format!("{}: {m}", path.display()));
    match (&cfg.smtp, &cfg.http) {
        (Some(_), Some(_)) => return fail("[smtp] and [http] both set: choose one way to send"),
        (None, None) => return fail("neither [smtp] nor [http]: nothing sends the message"),
        _ => {}
    }
    if let Some(s) = &cfg.smtp {
        if s.tls != "starttls" && s.tls != "none" {
            return fail("smtp.tls must be \"starttls\" or \"none\"");
        }
    }
    if let Some(h) = &cfg.http {
        if text::parse_url(&h.url).is_none() || !text::one_line(&h.header) {
            return fail("http.url must be an http:// or https:// URL, http.header one line");
        }
    }
    if text::parse_url(&cfg.pushgateway.url).is_none() {
        return fail("pushgateway.url must be an http:// or https:// URL");
    }
    if let Some(k) = &cfg.uptime_kuma {
        if text::parse_url(&k.url).is_none() {
            return fail("uptime_kuma.url must be an http:// or https:// URL");
        }
    }
    if cfg.timeout_secs == 0 || cfg.poll_interval_secs == 0 {
        return fail("timeout_secs and poll_interval_secs must be at least 1");
    }
    Ok(cfg)
}

/// A secret given inline or in a file (trailing newline dropped).
fn secret(inline: &Option<String>, file: &Option<PathBuf>, what: &str) -> R<String> {
    match (inline, file) {
        (Some(v), None) => Ok(v.clone()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("{what}: {}: {e}", f.display())),
        _ => Err(format!(
            "{what}: give exactly one of the value and the file"
        )),
    }
}

/// Runs the probe; the exit code says whether the roundtrip (and the
/// pushes) succeeded.
pub fn main(config: &Path) -> ExitCode {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern probe: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let outcome = roundtrip(&cfg, started);
    let duration = started.elapsed().as_secs_f64();
    let report = Report {
        success: outcome.is_ok(),
        duration_secs: duration,
        finished_unix: crate::clock::unix_now(),
    };
    let mut ok = match &outcome {
        Ok(()) => {
            println!("postern probe: roundtrip ok in {duration:.3} s");
            true
        }
        Err(e) => {
            eprintln!("postern probe: roundtrip failed after {duration:.3} s: {e}");
            false
        }
    };
    if let Err(e) = push(&cfg.pushgateway, &report) {
        eprintln!("postern probe: pushgateway: {e}");
        ok = false;
    }
    if let (true, Some(kuma)) = (report.success, &cfg.uptime_kuma) {
        if let Err(e) = kuma_push(kuma) {
            eprintln!("postern probe: uptime kuma: {e}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Sends, finds and deletes one marked message.
fn roundtrip(cfg: &ProbeConfig, started: Instant) -> R<()> {
    let deadline = started + Duration::from_secs(cfg.timeout_secs);
    let now = crate::clock::unix_now();
    let marker = text::marker(now, nonce());
    if let Some(s) = &cfg.smtp {
        send_smtp(cfg, s, &marker, deadline)?;
        println!(
            "postern probe: sent {marker} by SMTP to {}:{}",
            s.host, s.port
        );
    } else if let Some(h) = &cfg.http {
        send_http(cfg, h, &marker, deadline)?;
        println!("postern probe: sent {marker} through {}", h.url);
    }
    let poll = Duration::from_secs(cfg.poll_interval_secs);
    find_and_delete(&cfg.imap, &marker, deadline, poll)
}

/// A number unlikely to repeat (the standard library's per-process random
/// hash keys, the process id and the clock).
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

fn tls_config(ca_file: Option<&Path>) -> R<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(postern_adapters::tls_client::client_config_from(
        ca_file,
    )?))
}

/// A connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(t) => t,
            Stream::Tls(t) => &t.sock,
        }
    }

    /// Bounds the next read by `until` (at least a millisecond).
    fn read_until(&self, until: Instant) -> std::io::Result<()> {
        let left = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        self.tcp().set_read_timeout(Some(left))?;
        self.tcp()
            .set_write_timeout(Some(left.max(CONNECT_TIMEOUT)))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(t) => t.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(t) => t.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(t) => t.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

fn connect(host: &str, port: u16, deadline: Instant) -> R<TcpStream> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}:{port}: {e}"))?
        .collect();
    let mut last = format!("{host}:{port}: no address");
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{host}:{port}: timed out"));
        }
        match TcpStream::connect_timeout(&a, left.min(CONNECT_TIMEOUT)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("{host}:{port}: {e}"),
        }
    }
    Err(last)
}

fn wrap_tls(tcp: TcpStream, name: &str, ca_file: Option<&Path>) -> R<Stream> {
    let config = tls_config(ca_file)?;
    let server =
        ServerName::try_from(name.to_owned()).map_err(|e| format!("TLS name {name}: {e}"))?;
    let conn = rustls::ClientConnection::new(config, server).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Handshake now, so that a certificate problem is reported as such.
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("TLS with {name}: {e}"))?;
    }
    Ok(Stream::Tls(Box::new(s)))
}

/// Submission through the core's SMTP client session.
fn send_smtp(cfg: &ProbeConfig, s: &SmtpSend, marker: &str, deadline: Instant) -> R<()> {
    let password = secret(&s.password, &s.password_file, "smtp password")?;
    let addr = |a: &str| match postern_core::smtp::address::parse_path(a) {
        Ok(Some(p)) => Ok(p.address),
        _ => Err(format!("not an address: {a}")),
    };
    let job = Job {
        mail_from: Some(addr(&cfg.from)?),
        rcpts: vec![addr(&cfg.to)?],
        data: Arc::new(text::message(
            &cfg.from,
            &cfg.to,
            marker,
            i64::try_from(crate::clock::unix_now()).unwrap_or(0),
        )),
        eight_bit: false,
        smtputf8: false,
    };
    let ehlo = cfg.from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut cc = ClientConfig::new(ehlo);
    cc.require_tls = s.tls == "starttls";
    cc.credentials = Some((s.user.clone(), Secret::new(password)));
    let left = deadline.saturating_duration_since(Instant::now());
    cc.reply_timeout = left.min(Duration::from_secs(60));
    cc.data_done_timeout = left.min(Duration::from_secs(120));
    let tcp = connect(&s.host, s.port, deadline)?;
    let mut conn = Some(Stream::Plain(tcp));
    let mut client = SmtpClient::new(Arc::new(cc), job, Instant::now());
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(out) = client.poll_output() {
            match out {
                ClientOutput::Send(bytes) => {
                    let r = match conn.as_mut() {
                        Some(c) => c.write_all(&bytes).and_then(|()| c.flush()),
                        None => Err(std::io::ErrorKind::NotConnected.into()),
                    };
                    if r.is_err() {
                        client.handle_eof();
                    }
                }
                ClientOutput::StartTls => match conn.take() {
                    Some(Stream::Plain(tcp)) => {
                        let name = s.tls_name.as_deref().unwrap_or(&s.host);
                        conn = Some(wrap_tls(tcp, name, s.ca_file.as_deref())?);
                        client.handle_tls_established();
                    }
                    _ => client.handle_eof(),
                },
                ClientOutput::Done(outcome) => {
                    return match outcome.recipients.first() {
                        Some(RcptOutcome::Delivered(_)) => Ok(()),
                        Some(RcptOutcome::Deferred(r) | RcptOutcome::Failed(r)) => {
                            Err(format!("SMTP submission refused: {r}"))
                        }
                        None => Err("SMTP submission: no outcome".into()),
                    };
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            client.handle_eof();
            continue;
        };
        let until = client
            .poll_timeout()
            .unwrap_or(deadline)
            .min(deadline.max(Instant::now()));
        if c.read_until(until).is_err() {
            client.handle_eof();
            continue;
        }
        match c.read(&mut buf) {
            Ok(0) => client.handle_eof(),
            Ok(k) => client.handle_input(Instant::now(), &buf[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= deadline {
                    return Err("SMTP submission timed out".into());
                }
                client.handle_timeout(Instant::now());
            }
            Err(_) => client.handle_eof(),
        }
    }
}

/// One HTTP/1.1 exchange; returns the status and the whole response.
fn http(
    url: &Url,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    ca_file: Option<&Path>,
    deadline: Instant,
) -> R<(u16, String)> {
    let tcp = connect(&url.host, url.port, deadline)?;
    let mut s = if url.tls {
        wrap_tls(tcp, &url.host, ca_file)?
    } else {
        Stream::Plain(tcp)
    };
    s.read_until(deadline).map_err(|e| e.to_string())?;
    s.write_all(&text::http_request(method, url, headers, body))
        .and_then(|()| s.flush())
        .map_err(|e| format!("{}:{}: {e}", url.host, url.port))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        s.read_until(deadline).map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                out.extend_from_slice(&buf[..k]);
                if out.len() > MAX_READ {
                    return Err("response too large".into());
                }
                // A server keeping the connection open despite `close`.
                if text::http_complete(&out) {
                    break;
                }
            }
            // A TLS peer that closes without close_notify: the response is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => break,
            Err(e) => return Err(format!("{}:{}: {e}", url.host, url.port)),
        }
    }
    let status = text::http_status(&out).ok_or("not an HTTP response")?;
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

fn send_http(cfg: &ProbeConfig, h: &HttpSend, marker: &str, deadline: Instant) -> R<()> {
    let key = secret(&h.key, &h.key_file, "http key")?;
    if !text::one_line(&key) {
        return Err("http key: more than one line".into());
    }
    let url = text::parse_url(&h.url).ok_or("http.url")?;
    let template = h.template.as_deref().unwrap_or(text::BREVO_TEMPLATE);
    let body = text::fill_template(template, &cfg.from, &cfg.to, marker);
    let headers = [
        (h.header.as_str(), key.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    let (status, response) = http(
        &url,
        "POST",
        &headers,
        body.as_bytes(),
        h.ca_file.as_deref(),
        deadline,
    )?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        let first = response.lines().next().unwrap_or("");
        Err(format!("send API answered {status}: {first}"))
    }
}

/// An IMAP connection that reads whole lines.
struct Imap {
    s: Stream,
    buf: Vec<u8>,
    tag: u32,
    deadline: Instant,
}

impl Imap {
    fn line(&mut self) -> R<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned());
            }
            if self.buf.len() > MAX_READ {
                return Err("IMAP line too long".into());
            }
            self.s
                .read_until(self.deadline)
                .map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("IMAP server closed the connection".into()),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err("IMAP timed out (the probe's timeout)".into())
                }
                Err(e) => return Err(format!("IMAP: {e}")),
            }
        }
    }

    /// Sends a command; returns the untagged lines and whether it ended OK.
    fn cmd(&mut self, command: &str) -> R<(Vec<String>, bool, String)> {
        self.tag += 1;
        let tag = format!("p{}", self.tag);
        self.s
            .read_until(self.deadline)
            .map_err(|e| e.to_string())?;
        self.s
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .and_then(|()| self.s.flush())
            .map_err(|e| format!("IMAP: {e}"))?;
        let mut untagged = Vec::new();
        loop {
            let line = self.line()?;
            if let Some(ok) = text::tagged_status(&line, &tag) {
                return Ok((untagged, ok, line));
            }
            if untagged.len() > 100_000 {
                return Err("IMAP: too many response lines".into());
            }
            untagged.push(line);
        }
    }

    /// A command that must end OK.
    fn ok(&mut self, command: &str, what: &str) -> R<Vec<String>> {
        let (lines, ok, end) = self.cmd(command)?;
        if ok {
            Ok(lines)
        } else {
            Err(format!("IMAP {what} refused: {end}"))
        }
    }
}

/// Logs in, searches for the marker until it shows or the deadline
/// passes, and deletes what it found.
fn find_and_delete(i: &ImapConfig, marker: &str, deadline: Instant, poll: Duration) -> R<()> {
    let password = secret(&i.password, &i.password_file, "imap password")?;
    let tcp = connect(&i.host, i.port, deadline)?;
    let name = i.tls_name.as_deref().unwrap_or(&i.host);
    let s = wrap_tls(tcp, name, i.ca_file.as_deref())?;
    let mut c = Imap {
        s,
        buf: Vec::new(),
        tag: 0,
        deadline,
    };
    let greeting = c.line()?;
    if !greeting.starts_with("* OK") {
        return Err(format!("IMAP greeting: {greeting}"));
    }
    let user = text::imap_quote(&i.user).ok_or("imap user: not a quotable string")?;
    let pass = text::imap_quote(&password).ok_or("imap password: not a quotable string")?;
    let (_, ok, end) = c.cmd(&format!("LOGIN {user} {pass}"))?;
    if !ok {
        return Err(format!("IMAP login refused: {end}"));
    }
    c.ok("SELECT INBOX", "SELECT")?;
    let wanted = text::imap_quote(marker).ok_or("marker")?;
    let uids = loop {
        c.ok("NOOP", "NOOP")?;
        let lines = c.ok(&format!("UID SEARCH SUBJECT {wanted}"), "SEARCH")?;
        let hits: Vec<u32> = lines
            .iter()
            .filter_map(|l| text::search_hits(l))
            .flatten()
            .collect();
        if !hits.is_empty() {
            break hits;
        }
        let next = Instant::now() + poll;
        if next >= deadline {
            return Err(format!("{marker} not in the mailbox before the timeout"));
        }
        std::thread::sleep(poll);
    };
    let set: Vec<String> = uids.iter().map(ToString::to_string).collect();
    let set = set.join(",");
    c.ok(
        &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
        "STORE",
    )?;
    let (_, ok, _) = c.cmd(&format!("UID EXPUNGE {set}"))?;
    if !ok {
        c.ok("EXPUNGE", "EXPUNGE")?;
    }
    println!("postern probe: found {marker} (UID {set}) and deleted it");
    let _ = c.cmd("LOGOUT");
    Ok(())
}

fn push(p: &Pushgateway, report: &Report) -> R<()> {
    let base = text::parse_url(&p.url).ok_or("pushgateway.url")?;
    let url = text::pushgateway_url(&base, p.job.as_deref().unwrap_or(text::JOB));
    let body = text::pushgateway_body(report);
    let deadline = Instant::now() + PUSH_TIMEOUT;
    let headers = [("Content-Type", "text/plain; version=0.0.4")];
    // POST: replaces only the metrics pushed, so a failure keeps the
    // group's last success time.
    let (status, response) = http(
        &url,
        "POST",
        &headers,
        body.as_bytes(),
        p.ca_file.as_deref(),
        deadline,
    )?;
    if (200..300).contains(&status) {
        println!("postern probe: pushed to {}", p.url);
        Ok(())
    } else {
        Err(format!(
            "answered {status}: {}",
            response.lines().next().unwrap_or("")
        ))
    }
}

fn kuma_push(k: &UptimeKuma) -> R<()> {
    let url = text::parse_url(&k.url).ok_or("uptime_kuma.url")?;
    let deadline = Instant::now() + PUSH_TIMEOUT;
    let (status, _) = http(&url, "GET", &[], b"", k.ca_file.as_deref(), deadline)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("postern-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const IMAP_PGW: &str = "[imap]\nhost = \"h\"\nuser = \"u\"\npassword_file = \"imap.pw\"\n\
                            [pushgateway]\nurl = \"http://pgw:9091\"\n";

    #[test]
    fn configurations_are_checked() {
        let ok = write(
            "ok.toml",
            &format!(
                "from = \"p@example.com\"\nto = \"p@example.com\"\n\
                 [http]\nurl = \"https://api.brevo.com/v3/smtp/email\"\nheader = \"api-key\"\nkey = \"k\"\n{IMAP_PGW}"
            ),
        );
        let c = load(&ok).unwrap();
        assert_eq!(
            (c.timeout_secs, c.poll_interval_secs, c.imap.port),
            (300, 5, 993)
        );
        assert_eq!(
            c.imap.password_file,
            Some(ok.parent().unwrap().join("imap.pw"))
        );
        std::fs::write(ok.parent().unwrap().join("imap.pw"), "secret\n").unwrap();
        assert_eq!(
            secret(&c.imap.password, &c.imap.password_file, "imap").unwrap(),
            "secret"
        );
        let both = write(
            "both.toml",
            &format!(
                "from = \"p@x\"\nto = \"p@x\"\n[smtp]\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n\
                 [http]\nurl = \"http://a/\"\nheader = \"k\"\nkey = \"k\"\n{IMAP_PGW}"
            ),
        );
        assert!(load(&both).unwrap_err().contains("both set"));
        let tls = write(
            "tls.toml",
            &format!("from = \"p@x\"\nto = \"p@x\"\n[smtp]\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\ntls = \"implicit\"\n{IMAP_PGW}"),
        );
        assert!(load(&tls).unwrap_err().contains("smtp.tls"));
        let unknown = write(
            "unknown.toml",
            &format!("from = \"p@x\"\nto = \"p@x\"\ntypo = 1\n{IMAP_PGW}"),
        );
        assert!(load(&unknown).is_err());
        assert!(secret(&Some("a".into()), &Some("f".into()), "x").is_err());
    }
}
