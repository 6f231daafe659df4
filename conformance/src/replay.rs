//! Replays a transcript against the SMTP core with a fixed clock and a
//! mock runtime (an in-memory directory and store), no IO at all.

use crate::transcript::{escape, Step, Transcript};
use postern_core::policy::admission::Refusal;
use postern_core::policy::delivery::MessageRefusal;
use postern_core::policy::recipient::RcptRefusal;
use postern_core::policy::sender::MailRefusal;
use postern_core::proxy::{AddressSource, ProxyConfig, ProxyPolicy};
use postern_core::smtp::{
    AuthAnswer, BareNewline, ConnectAnswer, Event, ListenerConfig, MailAnswer, Output, RcptAnswer,
    Role, SmtpConfig, SmtpSession, StoreAnswer, TlsInfo, TlsMode,
};
use postern_core::Networks;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the mock store answers `Message` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// `Stored { id: "Q<n>" }`.
    Ok,
    /// `TempFail(None)`: 452 4.3.1.
    TempFail,
    /// `Reject(554 5.7.1 ...)`.
    Reject,
}

/// The mock runtime's directory and switches.
#[derive(Clone, Debug)]
pub struct MockRuntime {
    domains: HashSet<String>,
    users: HashSet<String>,
    catchall: HashSet<String>,
    passwords: HashMap<String, String>,
    reject_senders: HashSet<String>,
    rcpt_tempfail: HashSet<String>,
    store: StoreMode,
    refuse_connect: bool,
    auth_tempfail: bool,
    next_id: u32,
}

impl Default for MockRuntime {
    fn default() -> Self {
        Self {
            domains: ["example.com".to_owned()].into(),
            users: ["alice@example.com".to_owned(), "bob@example.com".to_owned()].into(),
            catchall: HashSet::new(),
            passwords: [("alice@example.com".to_owned(), "secret".to_owned())].into(),
            reject_senders: HashSet::new(),
            rcpt_tempfail: HashSet::new(),
            store: StoreMode::Ok,
            refuse_connect: false,
            auth_tempfail: false,
            next_id: 1,
        }
    }
}

/// Everything a session is built from.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Server settings.
    pub config: SmtpConfig,
    /// Listener settings.
    pub listener: ListenerConfig,
    /// Socket peer.
    pub peer: SocketAddr,
    /// Socket local address.
    pub local: SocketAddr,
    /// The mock runtime.
    pub runtime: MockRuntime,
}

fn list(arg: &str) -> impl Iterator<Item = String> + '_ {
    arg.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
}

fn duration(v: &str) -> Result<Duration, String> {
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n.parse().map_err(|_| format!("bad duration {v:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit {v:?}")),
    }
}

/// A postscreen action: `ignore` or `drop`.
fn action(v: &str) -> Result<postern_core::smtp::PostscreenAction, String> {
    match v {
        "ignore" => Ok(postern_core::smtp::PostscreenAction::Ignore),
        "drop" => Ok(postern_core::smtp::PostscreenAction::Drop),
        _ => Err(format!("postscreen action {v:?}: ignore or drop")),
    }
}

impl Setup {
    /// Builds the setup from a transcript's header directives.
    pub fn from_header(header: &[(String, String)]) -> Result<Self, String> {
        let mut config = SmtpConfig::new("mx.example.com");
        config.postmaster_domain = "example.com".to_owned();
        let mut role = Role::Mx;
        let mut tls = TlsMode::StartTls;
        let mut required = false;
        let mut trusted = Networks::parse(["10.0.20.0/24"]).map_err(|e| e.to_string())?;
        let mut allow_v1 = false;
        let mut proxy_timeout = Duration::from_secs(5);
        let mut peer: SocketAddr = "10.0.20.5:40000".parse().map_err(|_| "peer")?;
        let mut local: SocketAddr = "10.0.20.1:25".parse().map_err(|_| "local")?;
        let mut runtime = MockRuntime::default();
        let mut domains_set = false;
        let mut users_set = false;
        for (name, arg) in header {
            match name.as_str() {
                "listener" => {
                    role = match arg.as_str() {
                        "mx" => Role::Mx,
                        "submission" => Role::Submission,
                        _ => return Err(format!("@listener {arg:?}")),
                    }
                }
                "tls" => {
                    tls = match arg.as_str() {
                        "none" => TlsMode::None,
                        "starttls" => TlsMode::StartTls,
                        "implicit" => TlsMode::Implicit,
                        _ => return Err(format!("@tls {arg:?}")),
                    }
                }
                "proxy" => {
                    required = match arg.as_str() {
                        "required" => true,
                        "forbidden" => false,
                        _ => return Err(format!("@proxy {arg:?}")),
                    }
                }
                "trusted" => {
                    trusted = Networks::parse(arg.split(',').filter(|s| !s.trim().is_empty()))
                        .map_err(|e| e.to_string())?
                }
                "proxy-v1" => allow_v1 = arg == "allow",
                "peer" => peer = arg.parse().map_err(|_| format!("@peer {arg:?}"))?,
                "local" => local = arg.parse().map_err(|_| format!("@local {arg:?}"))?,
                "domains" => {
                    if !domains_set {
                        runtime.domains.clear();
                        domains_set = true;
                    }
                    runtime.domains.extend(list(arg));
                }
                "users" => {
                    if !users_set {
                        runtime.users.clear();
                        users_set = true;
                    }
                    runtime.users.extend(list(arg));
                }
                "catchall" => runtime.catchall.extend(list(arg)),
                "password" => {
                    let (u, p) = arg.split_once(' ').ok_or("@password USER PASS")?;
                    runtime.passwords.insert(u.to_owned(), p.to_owned());
                }
                "reject-sender" => runtime.reject_senders.extend(list(arg)),
                "rcpt-tempfail" => runtime.rcpt_tempfail.extend(list(arg)),
                "set" => {
                    for kv in arg.split(' ').filter(|s| !s.is_empty()) {
                        let (k, v) = kv.split_once('=').ok_or(format!("@set {kv:?}"))?;
                        let num = || v.parse::<u64>().map_err(|_| format!("@set {kv:?}"));
                        let l = &mut config.limits;
                        match k {
                            "max_line" => l.max_line = num()? as usize,
                            "max_recipients" => l.max_recipients = num()? as usize,
                            "max_message_size" => l.max_message_size = num()?,
                            "hard_error_limit" => l.hard_error_limit = num()? as u32,
                            "max_auth_failures" => l.max_auth_failures = num()? as u32,
                            "max_pipelined" => l.max_pipelined = num()? as usize,
                            "command_timeout" => l.command_timeout = duration(v)?,
                            "data_timeout" => l.data_timeout = duration(v)?,
                            "proxy_timeout" => proxy_timeout = duration(v)?,
                            "hostname" => config.hostname = v.to_owned(),
                            // The postscreen checks: a pause, then each
                            // test enabled with its action.
                            "greet_pause" => config.postscreen.greet_pause = duration(v)?,
                            "greet_action" => config.postscreen.greet_action = action(v)?,
                            "pipelining" => {
                                config.postscreen.pipelining_enable = true;
                                config.postscreen.pipelining_action = action(v)?;
                            }
                            "non_smtp_command" => {
                                config.postscreen.non_smtp_command_enable = true;
                                config.postscreen.non_smtp_command_action = action(v)?;
                            }
                            "bare_newline_command" => {
                                config.postscreen.bare_newline_enable = true;
                                config.postscreen.bare_newline_action = action(v)?;
                            }
                            "postscreen_allow" => {
                                config.postscreen.allow =
                                    Networks::parse(v.split(',')).map_err(|e| e.to_string())?
                            }
                            "bare_newline" => {
                                config.bare_newline = match v {
                                    "reject" => BareNewline::Reject,
                                    "normalize" => BareNewline::Normalize,
                                    _ => return Err(format!("@set {kv:?}")),
                                }
                            }
                            _ => return Err(format!("unknown setting {k:?}")),
                        }
                    }
                }
                other => return Err(format!("unknown header directive @{other}")),
            }
        }
        let mut proxy = if required {
            ProxyConfig::required(trusted)
        } else {
            ProxyConfig::forbidden()
        };
        if let ProxyPolicy::Required { allow_v1: a, .. } = &mut proxy.policy {
            *a = allow_v1;
        }
        proxy.timeout = proxy_timeout;
        Ok(Self {
            config,
            listener: ListenerConfig { role, tls, proxy },
            peer,
            local,
            runtime,
        })
    }
}

/// An event as the transcript writes it, and whether it must be matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The summary (`message from=<..> ...`).
    pub text: String,
    /// `message`, `starttls` and `close` must be matched by an `E:` line.
    pub mandatory: bool,
    /// The message bytes, for `message` events.
    pub data: Option<Vec<u8>>,
}

/// Drives one session with the mock runtime, in memory.
pub struct Driver {
    /// The session under test.
    pub session: SmtpSession,
    runtime: MockRuntime,
    now: Instant,
    /// Server bytes not yet matched by `S:` lines.
    pub output: Vec<u8>,
    /// Events not yet matched by `E:` lines.
    pub events: VecDeque<Recorded>,
    /// The whole session as `C:`/`S:`/`E:` lines (for snapshots).
    pub log: Vec<String>,
    tls_pending: bool,
}

impl Driver {
    /// Starts a session at a fixed instant.
    pub fn new(setup: Setup) -> Self {
        let now = Instant::now();
        let session = SmtpSession::new(
            Arc::new(setup.config),
            Arc::new(setup.listener),
            setup.peer,
            setup.local,
            now,
        );
        let mut d = Self {
            session,
            runtime: setup.runtime,
            now,
            output: Vec::new(),
            events: VecDeque::new(),
            log: Vec::new(),
            tls_pending: false,
        };
        d.drain();
        d
    }

    /// Client bytes, delivered in one read.
    pub fn input(&mut self, bytes: &[u8]) {
        self.log.push(format!("C~ {}", escape(bytes)));
        self.session.handle_input(self.now, bytes);
        self.drain();
    }

    /// Client bytes in the given pieces (for split properties).
    pub fn input_split(&mut self, bytes: &[u8], cuts: &[usize]) {
        let mut start = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let c = c.clamp(start, bytes.len());
            if c > start {
                self.session.handle_input(self.now, &bytes[start..c]);
                self.drain();
            }
            start = c;
        }
    }

    /// The client closed.
    pub fn eof(&mut self) {
        self.log.push("@eof".into());
        self.session.handle_eof();
        self.drain();
    }

    /// Moves the clock and fires the timer if due.
    pub fn advance(&mut self, by: Duration) {
        self.log.push(format!("@advance {}ms", by.as_millis()));
        self.now += by;
        if self.session.poll_timeout().is_some_and(|t| t <= self.now) {
            self.session.handle_timeout(self.now);
        }
        self.drain();
    }

    /// Completes a TLS handshake the session asked for.
    pub fn tls_established(&mut self) -> Result<(), String> {
        if !self.tls_pending {
            return Err("@tls-established but the session did not ask for TLS".into());
        }
        self.tls_pending = false;
        self.log.push("@tls-established".into());
        self.session.handle_tls_established(TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        });
        self.drain();
        Ok(())
    }

    /// Applies a mid-session directive that changes the mock runtime.
    pub fn directive(&mut self, name: &str, arg: &str) -> Result<(), String> {
        match (name, arg) {
            ("store", "ok") => self.runtime.store = StoreMode::Ok,
            ("store", "tempfail") => self.runtime.store = StoreMode::TempFail,
            ("store", "reject") => self.runtime.store = StoreMode::Reject,
            ("connect", "refuse") => self.runtime.refuse_connect = true,
            ("auth", "tempfail") => self.runtime.auth_tempfail = true,
            ("auth", "ok") => self.runtime.auth_tempfail = false,
            ("shutdown", "") => self.session.handle_shutdown(),
            _ => return Err(format!("unknown directive @{name} {arg}")),
        }
        self.drain();
        Ok(())
    }

    fn record(&mut self, text: String, mandatory: bool, data: Option<Vec<u8>>) {
        self.log.push(format!("E: {text}"));
        self.events.push_back(Recorded {
            text,
            mandatory,
            data,
        });
    }

    /// Drains every output, answering questions like a runtime would.
    pub fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Send(bytes) => {
                    for line in String::from_utf8_lossy(&bytes).split_inclusive("\r\n") {
                        self.log
                            .push(format!("S: {}", line.trim_end_matches("\r\n")));
                    }
                    self.output.extend_from_slice(&bytes);
                }
                Output::StartTls { early } => {
                    self.tls_pending = true;
                    // Which read the handshake's first bytes arrive in
                    // depends on how the client's bytes were split, so
                    // they are an optional event of their own.
                    if !early.is_empty() {
                        self.record(format!("tls-early {}", escape(&early)), false, None);
                    }
                    self.record("starttls".to_owned(), true, None);
                }
                Output::Close => self.record("close".into(), true, None),
                Output::Event(e) => self.answer(e),
            }
        }
    }

    fn answer(&mut self, e: Event) {
        let rt = &mut self.runtime;
        match e {
            Event::Connect(a) => {
                let source = match a.source {
                    AddressSource::Socket => "socket",
                    AddressSource::Proxy => "proxy",
                    AddressSource::ProxyLocal => "proxy-local",
                };
                let refuse = rt.refuse_connect;
                self.record(format!("connect {} source={source}", a.client), false, None);
                self.session.answer_connect(
                    self.now,
                    if refuse {
                        ConnectAnswer::Refuse(Refusal::TooManyConnections { ip: a.client.ip() })
                    } else {
                        ConnectAnswer::Accept
                    },
                );
            }
            Event::Auth(r) => {
                let answer = if rt.auth_tempfail {
                    AuthAnswer::TempFail
                } else if rt.passwords.get(&r.username) == Some(r.password.expose()) {
                    AuthAnswer::Success {
                        user: r.username.clone(),
                    }
                } else {
                    AuthAnswer::Failure
                };
                self.record(format!("auth {} {}", r.mechanism, r.username), false, None);
                self.session.answer_auth(self.now, answer);
            }
            Event::MailFrom(r) => {
                let from = r.from.as_ref().map(|a| a.to_string()).unwrap_or_default();
                let answer = if rt.reject_senders.contains(&from.to_ascii_lowercase()) {
                    MailAnswer::Refuse(MailRefusal::NotOwned {
                        user: r
                            .authenticated
                            .clone()
                            .unwrap_or_else(|| "anonymous".into()),
                    })
                } else {
                    MailAnswer::Accept
                };
                self.record(format!("mail <{from}>"), false, None);
                self.session.answer_mail(self.now, answer);
            }
            Event::RcptTo(r) => {
                let addr = r.to.to_string();
                let key = addr.to_ascii_lowercase();
                let answer = if rt.rcpt_tempfail.contains(&key) {
                    RcptAnswer::Refuse(RcptRefusal::TempFail)
                } else if rt.domains.contains(&r.to.domain) {
                    if rt.users.contains(&key) || rt.catchall.contains(&r.to.domain) {
                        RcptAnswer::Local
                    } else {
                        RcptAnswer::Refuse(RcptRefusal::UnknownUser)
                    }
                } else {
                    RcptAnswer::Remote
                };
                let suffix = if r.rerouted { " rerouted" } else { "" };
                self.record(format!("rcpt <{addr}>{suffix}"), false, None);
                self.session.answer_rcpt(self.now, answer);
            }
            Event::Message(m) => {
                let env = &m.envelope;
                let from = env
                    .mail_from
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let to: Vec<String> = env
                    .rcpt_to
                    .iter()
                    .map(|r| format!("<{}>", r.address))
                    .collect();
                let text = format!(
                    "message from=<{from}> to={} size={} proto={}",
                    to.join(","),
                    m.data.len(),
                    env.protocol()
                );
                let answer = match rt.store {
                    StoreMode::Ok => {
                        let id = format!("Q{}", rt.next_id);
                        rt.next_id += 1;
                        StoreAnswer::Stored { id }
                    }
                    StoreMode::TempFail => StoreAnswer::Refuse(MessageRefusal::TempFail),
                    StoreMode::Reject => StoreAnswer::Refuse(MessageRefusal::Spam),
                };
                self.record(text, true, Some(m.data));
                self.session.answer_message(self.now, answer);
            }
            Event::Notice(n) => self.record(format!("notice {n:?}"), false, None),
        }
    }

    /// Takes the next whole server line, if there is one.
    pub fn next_server_line(&mut self) -> Option<String> {
        let end = memchr_crlf(&self.output)?;
        let line = String::from_utf8_lossy(&self.output[..end]).into_owned();
        self.output.drain(..end + 2);
        Some(line)
    }
}

fn memchr_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// A replay that did not go as the transcript says.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}\n--- session so far ---\n{log}")]
pub struct ReplayError {
    /// Transcript line.
    pub line: usize,
    /// What differed.
    pub message: String,
    /// The session up to the failure.
    pub log: String,
}

/// Replays a transcript; returns the session log (for snapshots).
pub fn replay(t: &Transcript) -> Result<Vec<String>, ReplayError> {
    let setup = Setup::from_header(&t.header).map_err(|message| ReplayError {
        line: 0,
        message,
        log: String::new(),
    })?;
    let mut d = Driver::new(setup);
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_line = 0;
    let mut expected_data: Option<(usize, Vec<u8>, Vec<u8>)> = None;
    let mut last_message: Option<Vec<u8>> = None;
    let fail = |d: &Driver, line: usize, message: String| ReplayError {
        line,
        message,
        log: d.log.join("\n"),
    };
    let check_data = |d: &Driver, exp: &mut Option<(usize, Vec<u8>, Vec<u8>)>| {
        if let Some((line, want, got)) = exp.take() {
            if want != got {
                return Err(fail(
                    d,
                    line,
                    format!(
                        "stored message differs:\n want {}\n got  {}",
                        escape(&want),
                        escape(&got)
                    ),
                ));
            }
        }
        Ok(())
    };
    for (line, step) in &t.steps {
        let line = *line;
        if let Step::Client(bytes) = step {
            if pending.is_empty() {
                pending_line = line;
            }
            pending.extend_from_slice(bytes);
            continue;
        }
        if let Step::Directive(name, arg) = step {
            if name == "proxy-header" {
                if pending.is_empty() {
                    pending_line = line;
                }
                pending.extend(proxy_header(arg).map_err(|m| fail(&d, line, m))?);
                continue;
            }
        }
        if !pending.is_empty() {
            let _ = pending_line;
            d.input(&std::mem::take(&mut pending));
        }
        if !matches!(step, Step::DataLine(_)) {
            check_data(&d, &mut expected_data)?;
        }
        match step {
            Step::Client(_) => {}
            Step::Server(want) => match d.next_server_line() {
                Some(got) if &got == want => {}
                Some(got) => {
                    return Err(fail(
                        &d,
                        line,
                        format!("server said {got:?}, expected {want:?}"),
                    ))
                }
                None => {
                    return Err(fail(
                        &d,
                        line,
                        format!("server said nothing, expected {want:?}"),
                    ))
                }
            },
            Step::Event(want) => loop {
                let Some(ev) = d.events.pop_front() else {
                    return Err(fail(&d, line, format!("no event {want:?}")));
                };
                if &ev.text == want {
                    last_message = ev.data;
                    break;
                }
                if ev.mandatory {
                    return Err(fail(
                        &d,
                        line,
                        format!("event {:?} came, expected {want:?}", ev.text),
                    ));
                }
            },
            Step::DataLine(bytes) => match (expected_data.as_mut(), last_message.take()) {
                (Some((_, want, _)), _) => want.extend_from_slice(bytes),
                (None, Some(got)) => expected_data = Some((line, bytes.clone(), got)),
                (None, None) => {
                    return Err(fail(
                        &d,
                        line,
                        "D: line without a message event before it".into(),
                    ))
                }
            },
            Step::Directive(name, arg) => {
                let r = match name.as_str() {
                    "tls-established" => d.tls_established(),
                    "advance" => duration(arg).map(|by| d.advance(by)),
                    "eof" => {
                        d.eof();
                        Ok(())
                    }
                    _ => d.directive(name, arg),
                };
                r.map_err(|m| fail(&d, line, m))?;
            }
        }
    }
    if !pending.is_empty() {
        d.input(&std::mem::take(&mut pending));
    }
    check_data(&d, &mut expected_data)?;
    let end = t.steps.last().map_or(0, |s| s.0);
    if !d.output.is_empty() {
        return Err(fail(
            &d,
            end,
            format!(
                "unexpected server output at the end: {:?}",
                String::from_utf8_lossy(&d.output)
            ),
        ));
    }
    if let Some(ev) = d.events.iter().find(|e| e.mandatory) {
        return Err(fail(
            &d,
            end,
            format!("unmatched event at the end: {:?}", ev.text),
        ));
    }
    Ok(d.log)
}

/// Builds the bytes of an `@proxy-header` directive.
pub fn proxy_header(arg: &str) -> Result<Vec<u8>, String> {
    let words: Vec<&str> = arg.split_whitespace().collect();
    let addr = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("bad address {s:?}"))
    };
    match words.as_slice() {
        ["v2", src, dst] => Ok(postern_core::proxy::encode_v2(
            addr(src)?,
            addr(dst)?,
            false,
        )),
        ["v2", src, dst, "crc"] => Ok(postern_core::proxy::encode_v2(addr(src)?, addr(dst)?, true)),
        ["v2-local"] => Ok(postern_core::proxy::encode_v2_local()),
        ["v1", rest @ ..] => Ok(format!("PROXY {}\r\n", rest.join(" ")).into_bytes()),
        ["hex", hex] => {
            let hex = hex.as_bytes();
            if hex.len() % 2 != 0 {
                return Err("odd hex".into());
            }
            hex.chunks(2)
                .map(|c| {
                    std::str::from_utf8(c)
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok())
                        .ok_or_else(|| "bad hex".to_owned())
                })
                .collect()
        }
        _ => Err(format!("bad @proxy-header {arg:?}")),
    }
}

/// What a session produced: server bytes and the event summaries
/// (notices left out), for comparing runs of the same transcript.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Everything the server sent.
    pub output: Vec<u8>,
    /// Every event but notices and TLS early bytes, with stored message bytes.
    pub events: Vec<(String, Option<Vec<u8>>)>,
}

/// Runs a transcript's client side without checking expectations,
/// cutting each client read at the positions `cuts` picks for its length.
pub fn run_with_cuts(
    t: &Transcript,
    cuts: &mut dyn FnMut(usize) -> Vec<usize>,
) -> Result<Outcome, String> {
    let setup = Setup::from_header(&t.header)?;
    let mut d = Driver::new(setup);
    let mut pending: Vec<u8> = Vec::new();
    let mut flush = |d: &mut Driver, pending: &mut Vec<u8>| {
        if !pending.is_empty() {
            let bytes = std::mem::take(pending);
            let c = cuts(bytes.len());
            d.input_split(&bytes, &c);
        }
    };
    for (_, step) in &t.steps {
        match step {
            Step::Client(b) => pending.extend_from_slice(b),
            Step::Directive(n, a) if n == "proxy-header" => pending.extend(proxy_header(a)?),
            Step::Directive(n, a) => {
                flush(&mut d, &mut pending);
                match n.as_str() {
                    "tls-established" => d.tls_established()?,
                    "advance" => d.advance(duration(a)?),
                    "eof" => d.eof(),
                    _ => d.directive(n, a)?,
                }
            }
            _ => flush(&mut d, &mut pending),
        }
    }
    flush(&mut d, &mut pending);
    let events = d
        .events
        .into_iter()
        .filter(|e| !e.text.starts_with("notice ") && !e.text.starts_with("tls-early "))
        .map(|e| (e.text, e.data))
        .collect();
    Ok(Outcome {
        output: d.output,
        events,
    })
}
