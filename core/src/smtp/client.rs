//! The SMTP client session used to relay to the smarthost: a sans-IO state
//! machine (RFC 5321 with PIPELINING, STARTTLS, AUTH PLAIN/LOGIN, SIZE,
//! 8BITMIME, SMTPUTF8), the mirror of [`super::SmtpSession`].
//!
//! ```text
//! let mut c = SmtpClient::new(config, job, now);
//! loop {
//!     while let Some(out) = c.poll_output() {
//!         match out {
//!             ClientOutput::Send(bytes) => write them,
//!             ClientOutput::StartTls    => handshake (verify the server), then c.handle_tls_established(),
//!             ClientOutput::Done(outcome) => record each recipient's outcome; close; stop.
//!         }
//!     }
//!     select! { bytes = read() => c.handle_input(now, &bytes) (0 bytes: c.handle_eof()),
//!               _ = sleep_until(c.poll_timeout()) => c.handle_timeout(now) }
//! }
//! ```
//!
//! Every recipient ends `Delivered`, `Deferred` (try again later) or
//! `Failed` (bounce). A connection lost after the final dot and before its
//! reply defers: the message may then arrive twice, which beats a loss.

use super::address::Address;
use super::reply::Reply;
use crate::secret::Secret;
use crate::timer::TimerTable;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest reply line accepted from a server.
const MAX_REPLY_LINE: usize = 4096;
/// The most lines in one reply.
const MAX_REPLY_LINES: usize = 256;

/// How the client behaves towards the smarthost.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The name sent in EHLO.
    pub ehlo: String,
    /// Refuse to send without TLS (defer instead).
    pub require_tls: bool,
    /// SASL credentials (user, password); AUTH is then required.
    pub credentials: Option<(String, Secret<String>)>,
    /// How long to wait for each reply (Postfix `smtp_*_timeout`: 300 s).
    pub reply_timeout: Duration,
    /// How long to wait for the reply to the final dot (Postfix
    /// `smtp_data_done_timeout`: 600 s).
    pub data_done_timeout: Duration,
}

impl ClientConfig {
    /// Defaults like Postfix's, TLS required.
    pub fn new(ehlo: impl Into<String>) -> Self {
        Self {
            ehlo: ehlo.into(),
            require_tls: true,
            credentials: None,
            reply_timeout: Duration::from_secs(300),
            data_done_timeout: Duration::from_secs(600),
        }
    }
}

/// One message to send.
#[derive(Clone, Debug)]
pub struct Job {
    /// Reverse path (`None`: `<>`).
    pub mail_from: Option<Address>,
    /// Recipients, in order.
    pub rcpts: Vec<Address>,
    /// The message, CRLF line ends, not dot-stuffed.
    pub data: Arc<Vec<u8>>,
    /// Whether the message has 8-bit content (send BODY=8BITMIME).
    pub eight_bit: bool,
    /// Whether addresses need SMTPUTF8.
    pub smtputf8: bool,
}

/// What became of one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The smarthost took responsibility.
    Delivered(Reply),
    /// Try again later.
    Deferred(Reply),
    /// Permanent failure: bounce.
    Failed(Reply),
}

impl RcptOutcome {
    fn from_reply(r: &Reply) -> Self {
        match r.code {
            200..=399 => RcptOutcome::Delivered(r.clone()),
            500..=599 => RcptOutcome::Failed(r.clone()),
            _ => RcptOutcome::Deferred(r.clone()),
        }
    }
}

/// The result of a session: one outcome per recipient, in job order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Per recipient.
    pub recipients: Vec<RcptOutcome>,
}

/// What the client wants done.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum ClientOutput {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Start TLS now (the reply to STARTTLS was 220).
    StartTls,
    /// Finished: record the outcome and close the connection.
    Done(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    StartTls,
    Tls,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPass,
    AuthResult,
    Mail,
    Rcpt(usize),
    Data,
    Dot,
    Done,
}

#[derive(Default, Debug)]
struct Caps {
    starttls: bool,
    pipelining: bool,
    auth_plain: bool,
    auth_login: bool,
    eight_bit: bool,
    smtputf8: bool,
    size: bool,
}

/// The client's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    /// Waiting for a reply to a command (`smtp_*_timeout`).
    Reply,
    /// Waiting for the reply after the final dot (`smtp_data_done_timeout`).
    DataDone,
}

/// One relay connection. See the module documentation for the loop.
#[derive(Debug)]
pub struct SmtpClient {
    cfg: Arc<ClientConfig>,
    job: Job,
    queue: VecDeque<Expect>,
    inbuf: Vec<u8>,
    lines: Vec<String>,
    out: VecDeque<ClientOutput>,
    caps: Caps,
    tls: bool,
    outcomes: Vec<Option<RcptOutcome>>,
    mail_reply: Option<Reply>,
    timers: TimerTable<ClientTimer>,
    now: Instant,
    /// Where the session stands, for the messages of a deferral.
    stage: &'static str,
}

impl SmtpClient {
    /// A client for `job`, connected at `now` (the greeting is awaited).
    pub fn new(cfg: Arc<ClientConfig>, job: Job, now: Instant) -> Self {
        let n = job.rcpts.len();
        let mut c = Self {
            timers: TimerTable::default(),
            cfg,
            job,
            queue: VecDeque::from([Expect::Greeting]),
            inbuf: Vec::new(),
            lines: Vec::new(),
            out: VecDeque::new(),
            caps: Caps::default(),
            tls: false,
            outcomes: vec![None; n],
            mail_reply: None,
            now,
            stage: "greeting",
        };
        c.timers.set(ClientTimer::Reply, now + c.cfg.reply_timeout);
        if n == 0 {
            c.finish_all(
                RcptOutcome::Failed,
                Reply::new(554, "5.5.1", "no recipients"),
            );
        }
        c
    }

    /// The next thing to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    /// When [`Self::handle_timeout`] must run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next().map(|(at, _)| at)
    }

    /// The reply timer expired: defer what is still open.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some(which) = self.timers.expired(now) {
            let what = match which {
                ClientTimer::Reply => "the reply",
                ClientTimer::DataDone => "the reply after the message data",
            };
            let text = format!("timeout waiting for {what} to {}", self.stage);
            // The timer that fired was the wait: defer what is still open.
            self.finish_all(RcptOutcome::Deferred, Reply::new(421, "4.4.2", text));
        }
    }

    /// Postern is shutting down: say QUIT and defer every recipient
    /// without a final outcome (they stay queued and go out after the
    /// restart; one already past its final dot may then arrive twice,
    /// which beats a loss).
    pub fn handle_shutdown(&mut self) {
        if !self.waiting() {
            return;
        }
        self.send(b"QUIT\r\n".to_vec());
        self.defer_open(Reply::new(
            421,
            "4.3.2",
            format!(
                "shutting down while waiting for the reply to {}",
                self.stage
            ),
        ));
    }

    /// Whether the session still waits on the server (not done).
    fn waiting(&self) -> bool {
        self.timers.next().is_some()
    }

    /// Waits for the next reply with the reply timeout.
    fn rearm(&mut self) {
        self.timers.clear();
        self.timers
            .set(ClientTimer::Reply, self.now + self.cfg.reply_timeout);
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self) {
        if self.waiting() {
            let text = format!(
                "lost connection with the smarthost while waiting for the reply to {}",
                self.stage
            );
            self.defer_open(Reply::new(421, "4.4.2", text));
        }
    }

    /// The TLS handshake the client asked for succeeded (and the
    /// certificate verified): EHLO again (RFC 3207 4.2).
    pub fn handle_tls_established(&mut self) {
        if self.queue.front() != Some(&Expect::Tls) {
            return;
        }
        self.queue.pop_front();
        self.tls = true;
        self.caps = Caps::default();
        self.inbuf.clear();
        self.ehlo();
    }

    /// Bytes from the server.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.now = now;
        if !self.waiting() || self.queue.front() == Some(&Expect::Tls) {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        while let Some(pos) = memchr::memchr(b'\n', &self.inbuf) {
            let raw: Vec<u8> = self.inbuf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            let last = line.len() < 4 || line.as_bytes()[3] != b'-';
            let bad = line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit);
            if bad || self.lines.len() >= MAX_REPLY_LINES {
                self.defer_open(Reply::new(
                    421,
                    "4.5.0",
                    format!("malformed reply from the smarthost: {line:.80}"),
                ));
                return;
            }
            self.lines.push(line);
            if last {
                let reply = self.take_reply();
                self.on_reply(reply);
                if !self.waiting() || self.queue.front() == Some(&Expect::Tls) {
                    return;
                }
            }
        }
        if self.inbuf.len() > MAX_REPLY_LINE {
            self.defer_open(Reply::new(
                421,
                "4.5.0",
                "reply line too long from the smarthost",
            ));
        }
    }

    /// The reply in `lines`: its code, the enhanced status of its last
    /// line (if any), and the text of every line (status stripped), joined
    /// with LF so EHLO keywords stay one per line.
    fn take_reply(&mut self) -> Reply {
        let lines = std::mem::take(&mut self.lines);
        let code = lines
            .last()
            .and_then(|l| l.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(451);
        let texts: Vec<&str> = lines.iter().map(|l| l.get(4..).unwrap_or("")).collect();
        let last = texts.last().copied().unwrap_or("");
        let status = match last.split_once(' ') {
            Some((s, _)) if is_enhanced(s) => s.to_owned(),
            _ if is_enhanced(last) => last.to_owned(),
            _ => String::new(),
        };
        let text: Vec<&str> = texts
            .iter()
            .map(|t| {
                if status.is_empty() {
                    t
                } else {
                    t.strip_prefix(status.as_str()).map_or(*t, str::trim_start)
                }
            })
            .collect();
        Reply::new(code, status, text.join("\n"))
    }

    fn send(&mut self, bytes: Vec<u8>) {
        if let Some(ClientOutput::Send(b)) = self.out.back_mut() {
            b.extend_from_slice(&bytes);
        } else {
            self.out.push_back(ClientOutput::Send(bytes));
        }
    }

    fn await_reply(&mut self, e: Expect, stage: &'static str) {
        self.queue.push_back(e);
        if self.queue.len() == 1 {
            self.stage = stage;
        }
        let (which, t) = if e == Expect::Dot {
            (ClientTimer::DataDone, self.cfg.data_done_timeout)
        } else {
            (ClientTimer::Reply, self.cfg.reply_timeout)
        };
        self.timers.clear();
        self.timers.set(which, self.now + t);
    }

    fn ehlo(&mut self) {
        self.send(format!("EHLO {}\r\n", self.cfg.ehlo).into_bytes());
        self.await_reply(Expect::Ehlo, "EHLO");
    }

    fn on_reply(&mut self, r: Reply) {
        let Some(what) = self.queue.pop_front() else {
            return self.defer_open(Reply::new(
                421,
                "4.5.0",
                "unexpected reply from the smarthost",
            ));
        };
        self.stage = match self.queue.front() {
            Some(Expect::Rcpt(_)) => "RCPT",
            Some(Expect::Data) => "DATA",
            Some(Expect::Dot) => "end of data",
            _ => self.stage,
        };
        self.rearm();
        match what {
            Expect::Greeting => {
                if r.code != 220 {
                    return self.session_failure(r);
                }
                self.ehlo();
            }
            Expect::Ehlo => {
                if r.code != 250 {
                    return self.session_failure(r);
                }
                for l in r.text.lines().skip(1) {
                    let mut words = l.split_whitespace();
                    let kw = words.next().unwrap_or("").to_ascii_uppercase();
                    match kw.as_str() {
                        "STARTTLS" => self.caps.starttls = true,
                        "PIPELINING" => self.caps.pipelining = true,
                        "8BITMIME" => self.caps.eight_bit = true,
                        "SMTPUTF8" => self.caps.smtputf8 = true,
                        "SIZE" => self.caps.size = true,
                        "AUTH" => {
                            for m in words {
                                match m.to_ascii_uppercase().as_str() {
                                    "PLAIN" => self.caps.auth_plain = true,
                                    "LOGIN" => self.caps.auth_login = true,
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
                self.after_ehlo();
            }
            Expect::StartTls => {
                if r.code != 220 {
                    return self.defer_open(Reply::new(
                        421,
                        "4.7.0",
                        format!("smarthost refused STARTTLS: {r}"),
                    ));
                }
                self.queue.push_front(Expect::Tls);
                self.rearm();
                self.out.push_back(ClientOutput::StartTls);
            }
            Expect::Tls => {}
            Expect::AuthPlain | Expect::AuthResult => {
                if r.code == 235 {
                    self.mail_transaction();
                } else {
                    self.defer_open(Reply::new(
                        454,
                        "4.7.0",
                        format!("SASL authentication failed; the smarthost said: {r}"),
                    ));
                }
            }
            Expect::AuthLoginUser | Expect::AuthLoginPass => {
                if r.code != 334 {
                    return self.defer_open(Reply::new(
                        454,
                        "4.7.0",
                        format!("SASL authentication failed; the smarthost said: {r}"),
                    ));
                }
                let Some((user, pass)) = self.cfg.credentials.clone() else {
                    return;
                };
                if what == Expect::AuthLoginUser {
                    self.send(format!("{}\r\n", STANDARD.encode(user.as_bytes())).into_bytes());
                    self.await_reply(Expect::AuthLoginPass, "AUTH");
                } else {
                    self.send(
                        format!("{}\r\n", STANDARD.encode(pass.expose().as_bytes())).into_bytes(),
                    );
                    self.await_reply(Expect::AuthResult, "AUTH");
                }
            }
            Expect::Mail => {
                if r.code != 250 {
                    self.mail_reply = Some(r.clone());
                    let outcome = RcptOutcome::from_reply(&r);
                    for o in self.outcomes.iter_mut() {
                        *o = Some(outcome.clone());
                    }
                }
                if !self.caps.pipelining {
                    if self.mail_reply.is_some() {
                        return self.quit();
                    }
                    self.send_rcpt(0);
                }
            }
            Expect::Rcpt(i) => {
                if self.mail_reply.is_none() && !(200..300).contains(&r.code) {
                    self.outcomes[i] = Some(RcptOutcome::from_reply(&r));
                }
                if !self.caps.pipelining {
                    if i + 1 < self.job.rcpts.len() {
                        self.send_rcpt(i + 1);
                    } else if self.accepted() == 0 {
                        self.quit();
                    } else {
                        self.send(b"DATA\r\n".to_vec());
                        self.await_reply(Expect::Data, "DATA");
                    }
                }
            }
            Expect::Data => {
                if r.code == 354 {
                    if self.accepted() == 0 || self.mail_reply.is_some() {
                        // RFC 2920 3.1: the server took DATA though nothing
                        // is accepted; end an empty message and give up.
                        self.send(b".\r\n".to_vec());
                        self.await_reply(Expect::Done, "end of data");
                        return;
                    }
                    let body = stuff(&self.job.data);
                    self.send(body);
                    self.await_reply(Expect::Dot, "end of data");
                } else {
                    let outcome = RcptOutcome::from_reply(&r);
                    for o in self.outcomes.iter_mut().filter(|o| o.is_none()) {
                        *o = Some(outcome.clone());
                    }
                    self.quit();
                }
            }
            Expect::Dot => {
                let outcome = RcptOutcome::from_reply(&r);
                for o in self.outcomes.iter_mut().filter(|o| o.is_none()) {
                    *o = Some(outcome.clone());
                }
                self.quit();
            }
            Expect::Done => self.quit(),
        }
    }

    fn after_ehlo(&mut self) {
        if !self.tls && self.caps.starttls {
            self.send(b"STARTTLS\r\n".to_vec());
            self.await_reply(Expect::StartTls, "STARTTLS");
            return;
        }
        if !self.tls && self.cfg.require_tls {
            return self.defer_open(Reply::new(
                421,
                "4.7.0",
                "TLS is required, but the smarthost does not offer STARTTLS",
            ));
        }
        if let Some((user, pass)) = self.cfg.credentials.clone() {
            if self.caps.auth_plain {
                let mut raw = vec![0u8];
                raw.extend_from_slice(user.as_bytes());
                raw.push(0);
                raw.extend_from_slice(pass.expose().as_bytes());
                self.send(format!("AUTH PLAIN {}\r\n", STANDARD.encode(raw)).into_bytes());
                self.await_reply(Expect::AuthPlain, "AUTH");
            } else if self.caps.auth_login {
                self.send(b"AUTH LOGIN\r\n".to_vec());
                self.await_reply(Expect::AuthLoginUser, "AUTH");
            } else {
                self.defer_open(Reply::new(
                    454,
                    "4.7.0",
                    "the smarthost offers no AUTH mechanism we can use (PLAIN, LOGIN)",
                ));
            }
            return;
        }
        self.mail_transaction();
    }

    fn mail_transaction(&mut self) {
        if self.job.smtputf8 && !self.caps.smtputf8 {
            return self.finish_all(
                RcptOutcome::Failed,
                Reply::new(553, "5.6.7", "the smarthost does not support SMTPUTF8"),
            );
        }
        let from = self
            .job
            .mail_from
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut cmd = format!("MAIL FROM:<{from}>");
        if self.caps.size {
            cmd.push_str(&format!(" SIZE={}", self.job.data.len()));
        }
        if self.job.eight_bit && self.caps.eight_bit {
            cmd.push_str(" BODY=8BITMIME");
        }
        if self.job.smtputf8 {
            cmd.push_str(" SMTPUTF8");
        }
        cmd.push_str("\r\n");
        self.send(cmd.into_bytes());
        self.await_reply(Expect::Mail, "MAIL FROM");
        if self.caps.pipelining {
            for i in 0..self.job.rcpts.len() {
                self.send_rcpt(i);
            }
            self.send(b"DATA\r\n".to_vec());
            self.await_reply(Expect::Data, "DATA");
        }
    }

    fn send_rcpt(&mut self, i: usize) {
        let to = self.job.rcpts[i].to_string();
        self.send(format!("RCPT TO:<{to}>\r\n").into_bytes());
        self.await_reply(Expect::Rcpt(i), "RCPT TO");
    }

    fn accepted(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_none()).count()
    }

    fn quit(&mut self) {
        self.send(b"QUIT\r\n".to_vec());
        let n = self.outcomes.len();
        let recipients = std::mem::take(&mut self.outcomes)
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| RcptOutcome::Deferred(Reply::new(451, "4.3.0", "no outcome")))
            })
            .collect::<Vec<_>>();
        debug_assert_eq!(recipients.len(), n);
        self.done(recipients);
    }

    fn done(&mut self, recipients: Vec<RcptOutcome>) {
        self.timers.clear();
        self.queue.clear();
        self.out
            .push_back(ClientOutput::Done(Outcome { recipients }));
    }

    /// A failure that ends the session before MAIL: by its code.
    fn session_failure(&mut self, r: Reply) {
        if (500..600).contains(&r.code) {
            self.finish_all(RcptOutcome::Failed, r);
        } else {
            self.defer_open(r);
        }
    }

    fn finish_all(&mut self, f: fn(Reply) -> RcptOutcome, r: Reply) {
        let recipients = self
            .outcomes
            .iter()
            .map(|o| o.clone().unwrap_or_else(|| f(r.clone())))
            .collect();
        self.outcomes.clear();
        self.done(recipients);
    }

    /// Defers every recipient without a final outcome.
    fn defer_open(&mut self, r: Reply) {
        if !self.waiting() {
            return;
        }
        self.finish_all(RcptOutcome::Deferred, r);
    }
}

fn is_enhanced(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Dot-stuffs a CRLF message and appends the end marker.
pub fn stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 8);
    if data.first() == Some(&b'.') {
        out.push(b'.');
    }
    let mut start = 0;
    for i in memchr::memmem::find_iter(data, b"\r\n.") {
        out.extend_from_slice(&data[start..i + 2]);
        out.push(b'.');
        start = i + 2;
    }
    out.extend_from_slice(&data[start..]);
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: usize) -> Job {
        Job {
            mail_from: Some(Address::new("a", "example.com")),
            rcpts: (0..n)
                .map(|i| Address::new(format!("r{i}"), "remote.example"))
                .collect(),
            data: Arc::new(b"Subject: x\r\n\r\n.dot\r\n".to_vec()),
            eight_bit: false,
            smtputf8: false,
        }
    }

    fn sent(c: &mut SmtpClient) -> String {
        let mut s = String::new();
        while let Some(o) = c.poll_output() {
            match o {
                ClientOutput::Send(b) => s.push_str(&String::from_utf8_lossy(&b)),
                ClientOutput::StartTls => s.push_str("<TLS>"),
                ClientOutput::Done(o) => s.push_str(&format!("<DONE {:?}>", o.recipients)),
            }
        }
        s
    }

    #[test]
    fn shutdown_says_quit_and_defers_the_open_recipients() {
        let now = Instant::now();
        let cfg = Arc::new(ClientConfig::new("relay.example.com"));
        let mut c = SmtpClient::new(cfg, job(2), now);
        c.handle_input(now, b"220 smarthost ESMTP\r\n");
        assert_eq!(sent(&mut c), "EHLO relay.example.com\r\n");
        c.handle_shutdown();
        let out = sent(&mut c);
        assert!(
            out.starts_with("QUIT\r\n<DONE [Deferred(Reply { code: 421, status: \"4.3.2\""),
            "{out}"
        );
        assert_eq!(c.poll_timeout(), None);
        c.handle_shutdown();
        assert_eq!(
            sent(&mut c),
            "",
            "a finished session ignores a second shutdown"
        );
    }

    #[test]
    fn the_timer_that_fired_is_named_in_the_deferral() {
        let now = Instant::now();
        let cfg = Arc::new(ClientConfig::new("relay.example.com"));
        let mut c = SmtpClient::new(cfg, job(1), now);
        let due = c.poll_timeout().expect("waiting for the greeting");
        c.handle_timeout(due);
        let out = sent(&mut c);
        assert!(
            out.contains("timeout waiting for the reply to greeting"),
            "{out}"
        );
    }

    /// A scripted smarthost without PIPELINING, with AUTH LOGIN only.
    #[test]
    fn login_without_pipelining_step_by_step() {
        let now = Instant::now();
        let mut cfg = ClientConfig::new("relay.example.com");
        cfg.credentials = Some(("u".into(), Secret::new("p".into())));
        let mut c = SmtpClient::new(Arc::new(cfg), job(2), now);
        c.handle_input(now, b"220 smarthost ESMTP\r\n");
        assert_eq!(sent(&mut c), "EHLO relay.example.com\r\n");
        c.handle_input(now, b"250-smarthost\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n");
        assert_eq!(sent(&mut c), "STARTTLS\r\n");
        c.handle_input(now, b"220 2.0.0 go ahead\r\n");
        assert_eq!(sent(&mut c), "<TLS>");
        c.handle_tls_established();
        assert_eq!(sent(&mut c), "EHLO relay.example.com\r\n");
        c.handle_input(now, b"250-smarthost\r\n250 AUTH LOGIN\r\n");
        assert_eq!(sent(&mut c), "AUTH LOGIN\r\n");
        c.handle_input(now, b"334 VXNlcm5hbWU6\r\n");
        assert_eq!(sent(&mut c), "dQ==\r\n");
        c.handle_input(now, b"334 UGFzc3dvcmQ6\r\n");
        assert_eq!(sent(&mut c), "cA==\r\n");
        c.handle_input(now, b"235 2.7.0 ok\r\n");
        assert_eq!(sent(&mut c), "MAIL FROM:<a@example.com>\r\n");
        c.handle_input(now, b"250 2.1.0 ok\r\n");
        assert_eq!(sent(&mut c), "RCPT TO:<r0@remote.example>\r\n");
        c.handle_input(now, b"550 5.1.1 no such user\r\n");
        assert_eq!(sent(&mut c), "RCPT TO:<r1@remote.example>\r\n");
        c.handle_input(now, b"250 2.1.5 ok\r\n");
        assert_eq!(sent(&mut c), "DATA\r\n");
        c.handle_input(now, b"354 go\r\n");
        assert_eq!(sent(&mut c), "Subject: x\r\n\r\n..dot\r\n.\r\n");
        c.handle_input(now, b"250 2.0.0 queued\r\n");
        let out = sent(&mut c);
        assert!(out.starts_with("QUIT\r\n<DONE [Failed("), "{out}");
        assert!(out.contains("Delivered("), "{out}");
    }

    #[test]
    fn lost_after_the_dot_defers() {
        let now = Instant::now();
        let mut cfg = ClientConfig::new("r");
        cfg.require_tls = false;
        let mut c = SmtpClient::new(Arc::new(cfg), job(1), now);
        c.handle_input(now, b"220 x\r\n");
        c.handle_input(now, b"250-x\r\n250 PIPELINING\r\n");
        assert_eq!(
            sent(&mut c),
            "EHLO r\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<r0@remote.example>\r\nDATA\r\n"
        );
        c.handle_input(now, b"250 ok\r\n250 ok\r\n354 go\r\n");
        let _ = sent(&mut c);
        c.handle_eof();
        let out = sent(&mut c);
        assert!(
            out.starts_with("<DONE [Deferred(Reply { code: 421"),
            "{out}"
        );
    }

    #[test]
    fn tls_required_but_not_offered_defers() {
        let now = Instant::now();
        let mut c = SmtpClient::new(Arc::new(ClientConfig::new("r")), job(1), now);
        c.handle_input(now, b"220 x\r\n250 x\r\n");
        let out = sent(&mut c);
        assert!(
            out.contains("<DONE [Deferred(") && out.contains("TLS is required"),
            "{out}"
        );
    }

    #[test]
    fn stuffing() {
        assert_eq!(stuff(b".a\r\n.\r\nb"), b"..a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(stuff(b""), b".\r\n");
    }
}
