//! The IMAP server session: a sans-IO state machine driven exactly like
//! [`crate::smtp::SmtpSession`] (the loop is written there): bytes and time
//! in, outputs out, questions answered by the runtime. The session keeps
//! the client's view of the selected mailbox (UIDs in sequence order and
//! their flags); the store keeps the truth.

use super::event::{
    Event, MailboxAnswer, MailboxRequest, MailboxView, MessageMeta, Notice, StatusCounts,
    StoreMode, Stored, Summary,
};
use super::fetch::{self, Item, Key};
use super::framing::{FrameLimits, Framed, Framer};
use super::parse::{parse_command, Command, ParseError, Value};
use super::set::SeqSet;
use crate::proxy::{ClientAddress, ProxyConfig, ProxyGate, ProxyStep};
use crate::smtp::TlsMode;
use crate::{sasl, Secret};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Server-wide IMAP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapConfig {
    /// Name in the greeting.
    pub hostname: String,
    /// Framing limits.
    pub limits: FrameLimits,
    /// Autologout (RFC 9051 5.4: at least 30 minutes).
    pub idle_timeout: Duration,
    /// Unprocessed input held while a question is out.
    pub max_pipelined: usize,
}

impl ImapConfig {
    /// Defaults for `hostname`.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            limits: FrameLimits::default(),
            idle_timeout: Duration::from_secs(30 * 60),
            max_pipelined: 256 * 1024,
        }
    }
}

/// One IMAP listener's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapListener {
    /// TLS mode (993: implicit).
    pub tls: TlsMode,
    /// PROXY policy.
    pub proxy: ProxyConfig,
}

/// What the session wants done.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Start TLS (see the SMTP session for `early`).
    StartTls {
        /// Bytes that belong to the handshake.
        early: Vec<u8>,
    },
    /// A question or a fact.
    Event(Event),
    /// Flush and close.
    Close,
}

/// Answer to `Event::Connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectAnswer {
    /// Greet.
    Accept,
    /// `* BYE` and close.
    Refuse(String),
}

/// Answer to `Event::Login`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginAnswer {
    /// Logged in as this account.
    Success(String),
    /// Bad credentials.
    Failure,
    /// The directory could not answer.
    TempFail,
}

#[derive(Debug)]
struct Selected {
    name: String,
    read_only: bool,
    view: MailboxView,
}

#[derive(Debug)]
enum State {
    NotAuthenticated,
    Authenticated(String),
    Selected(String, Selected),
    Logout,
}

#[derive(Debug)]
enum Phase {
    Proxy,
    Connect,
    Tls { greet: bool },
    Ready,
    AuthPlain { tag: String },
    Idle { tag: String },
    Wait(Pending),
    Closed,
}

#[derive(Debug)]
enum Pending {
    Login {
        tag: String,
        username: String,
    },
    Select {
        tag: String,
        name: String,
        read_only: bool,
    },
    Simple {
        tag: String,
        what: &'static str,
    },
    List {
        tag: String,
        lsub: bool,
        sub_attr: bool,
        special_only: bool,
        status: Option<Vec<String>>,
        /// RECURSIVEMATCH with SUBSCRIBED: the patterns asked.
        recursive: Option<Vec<String>>,
        /// UTF-8 patterns to match on the names as shown (IMAP4rev2).
        filter: Option<Vec<String>>,
    },
    Status {
        tag: String,
        name: String,
        items: Vec<String>,
    },
    Fetch {
        tag: String,
        uid: bool,
        items: Vec<Item>,
        targets: Vec<(u32, u32)>,
        data: FetchData,
        /// Messages for the next batches.
        rest: Vec<(u32, u32)>,
    },
    Search {
        tag: String,
        uid: bool,
        key: Key,
        form: SearchForm,
        /// Hits found with message bytes, waiting for SORT's summaries.
        hits: Option<Vec<(u32, u32)>>,
        /// While reading messages in batches: the hits so far and the
        /// UIDs still to read.
        scan: Option<Scan>,
    },
    Quota {
        tag: String,
        root_of: Option<String>,
    },
    Store {
        tag: String,
        uid: bool,
        silent: bool,
        /// UNCHANGEDSINCE was given.
        conditional: bool,
    },
    Expunge {
        tag: String,
        closing: bool,
    },
    Append {
        tag: String,
        target: String,
    },
    Copy {
        tag: String,
        moving: bool,
    },
    Poll {
        tag: String,
        what: &'static str,
        code: Option<String>,
    },
}

/// What FETCH has gathered from the store.
#[derive(Debug, Default)]
struct FetchData {
    bodies: Option<Vec<(u32, Vec<u8>)>>,
    summaries: Option<Vec<(u32, Summary)>>,
}

/// A SEARCH reading messages in batches: the (sequence, UID) hits so
/// far and the UIDs still to read.
type Scan = (Vec<(u32, u32)>, Vec<u32>);

/// How SEARCH answers: plain `* SEARCH`, ESEARCH's `RETURN (...)`, or SORT.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SearchForm {
    Plain,
    Extended(Vec<String>),
    Sort(Vec<(SortBy, bool)>),
}

/// A SORT criterion (RFC 5256); the bool is REVERSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
}

/// One IMAP connection.
#[derive(Debug)]
pub struct ImapSession {
    cfg: Arc<ImapConfig>,
    listener: Arc<ImapListener>,
    gate: Option<ProxyGate>,
    address: ClientAddress,
    phase: Phase,
    state: State,
    inbuf: Vec<u8>,
    framer: Framer,
    outputs: VecDeque<Output>,
    now: Instant,
    deadline: Option<Instant>,
    tls: bool,
    /// Where the COPY under way copies to.
    copy_target: Option<String>,
    /// CONDSTORE is on (RFC 7162 3.1: ENABLE or a CONDSTORE-using command).
    condstore: bool,
    /// IMAP4rev2 is on (ENABLE IMAP4rev2): RFC 9051 responses.
    rev2: bool,
    /// SEARCHRES's `$` (RFC 5182): the UIDs the last SEARCH saved.
    saved: Vec<u32>,
}

fn quote(s: &str) -> String {
    if s.bytes().all(|b| {
        b.is_ascii_graphic()
            && b != b'"'
            && b != b'\\'
            && b != b'('
            && b != b')'
            && b != b'{'
            && b != b'%'
            && b != b'*'
    }) && !s.is_empty()
        && !s.eq_ignore_ascii_case("NIL")
    {
        return s.to_owned();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Whether a mailbox name stays inside the account.
pub fn safe_mailbox_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('/')
        && !name.starts_with('~')
        && !name.ends_with('/')
        && !name.contains("//")
        && !name
            .split('/')
            .any(|p| p == ".." || p == "." || p.starts_with('.'))
        && !name.contains(['\\', '\0'])
        && !name.chars().any(char::is_control)
}

/// Canonical form: `INBOX` in any case is `INBOX`.
/// IMAP LIST wildcards: `*` matches anything, `%` anything but `/`.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8], budget: &mut u32) -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| m(rest, &n[i..], budget)),
            Some((b'%', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != b'/')
                .any(|i| m(rest, &n[i..], budget)),
            Some((c, rest)) => {
                n.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && m(rest, &n[1..], budget)
            }
        }
    }
    let mut budget = 100_000;
    m(pattern.as_bytes(), name.as_bytes(), &mut budget)
}

/// Subscribed names with no mailbox (RFC 5258 3.1: `LIST (SUBSCRIBED)`
/// returns them, marked `\NonExistent`).
pub fn nonexistent_subscriptions(
    subs: &[String],
    names: &[String],
    patterns: &[String],
) -> Vec<super::event::ListEntry> {
    subs.iter()
        .filter(|s| !names.contains(s))
        .filter(|s| patterns.iter().any(|p| wildcard(p, s)))
        .map(|s| super::event::ListEntry {
            name: s.clone(),
            attributes: vec!["\\NonExistent".into(), "\\Subscribed".into()],
            status: None,
        })
        .collect()
}

fn canonical(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_owned()
    } else {
        name.to_owned()
    }
}

const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

impl ImapSession {
    /// A session for a connection from `peer` to `local` at `now`.
    pub fn new(
        cfg: Arc<ImapConfig>,
        listener: Arc<ImapListener>,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Self {
        let mut gate = ProxyGate::new(listener.proxy.clone(), peer, local, now);
        let address = gate.socket_address();
        let first = gate.on_connect();
        let mut s = Self {
            cfg,
            listener,
            gate: Some(gate),
            address,
            phase: Phase::Proxy,
            state: State::NotAuthenticated,
            inbuf: Vec::new(),
            framer: Framer::default(),
            outputs: VecDeque::new(),
            now,
            deadline: None,
            tls: false,
            copy_target: None,
            condstore: false,
            rev2: false,
            saved: Vec::new(),
        };
        s.arm();
        if let ProxyStep::Refused(e) = first {
            s.notice(Notice::ProxyRefused(e));
            s.close();
        } else if !s.listener.proxy.is_required() {
            if s.listener.tls == TlsMode::Implicit {
                s.gate = None;
            }
            s.phase = Phase::Connect;
            s.outputs.push_back(Output::Event(Event::Connect(address)));
        }
        s
    }

    /// The client and server addresses.
    pub fn client(&self) -> ClientAddress {
        self.address
    }

    /// The logged-in user.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated(u) | State::Selected(u, _) => Some(u),
            _ => None,
        }
    }

    /// The selected mailbox's name.
    pub fn selected(&self) -> Option<&str> {
        match &self.state {
            State::Selected(_, s) => Some(&s.name),
            _ => None,
        }
    }

    /// Whether the session is in IDLE (the runtime should then tell it
    /// about changes with [`Self::handle_mailbox_changed`]).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle { .. })
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Bytes held (bounded by the limits).
    pub fn buffered_len(&self) -> usize {
        self.inbuf.len() + self.gate.as_ref().map_or(0, ProxyGate::buffered_len)
    }

    /// The next output.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let gate = self.gate.as_ref().and_then(ProxyGate::poll_timeout);
        let own = if matches!(self.phase, Phase::Wait(_) | Phase::Connect | Phase::Closed) {
            None
        } else {
            self.deadline
        };
        match (gate, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The clock moved on.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some(gate) = self.gate.as_mut() {
            match gate.handle_timeout(now) {
                ProxyStep::Refused(e) => {
                    self.gate = None;
                    self.notice(Notice::ProxyRefused(e));
                    return self.close();
                }
                ProxyStep::Done { rest, .. } => {
                    self.gate = None;
                    self.inbuf.splice(0..0, rest);
                    return self.process();
                }
                ProxyStep::NeedMore => {}
            }
        }
        if self.poll_timeout().is_some_and(|d| now >= d) && self.gate.is_none() {
            self.notice(Notice::Timeout);
            if !matches!(self.phase, Phase::Tls { .. } | Phase::Proxy) {
                self.send_str("* BYE Autologout; idle for too long\r\n");
            }
            self.close();
        }
    }

    /// The client closed its side.
    pub fn handle_eof(&mut self) {
        if !self.is_closed() {
            self.notice(Notice::LostConnection);
            self.phase = Phase::Closed;
            self.outputs.push_back(Output::Close);
        }
    }

    /// The TLS handshake asked for is done.
    pub fn handle_tls_established(&mut self) {
        let Phase::Tls { greet } = self.phase else {
            return;
        };
        self.tls = true;
        self.inbuf.clear();
        self.framer.reset();
        self.phase = Phase::Ready;
        self.arm();
        if greet {
            self.greet();
        }
    }

    /// Bytes from the client.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.now = now;
        match self.phase {
            Phase::Closed => return,
            Phase::Tls { .. } => {
                self.notice(Notice::DiscardedAfterStartTls(bytes.len()));
                return;
            }
            _ => {}
        }
        if let Some(gate) = self.gate.as_mut() {
            match gate.handle_input(bytes) {
                ProxyStep::NeedMore => return,
                ProxyStep::Refused(e) => {
                    self.gate = None;
                    self.notice(Notice::ProxyRefused(e));
                    return self.close();
                }
                ProxyStep::Done { address, rest } => {
                    self.gate = None;
                    if matches!(self.phase, Phase::Proxy) {
                        self.address = address;
                        self.phase = Phase::Connect;
                        self.outputs
                            .push_back(Output::Event(Event::Connect(address)));
                    }
                    self.inbuf.extend_from_slice(&rest);
                }
            }
        } else {
            self.inbuf.extend_from_slice(bytes);
        }
        self.arm();
        if self.inbuf.len() > self.cfg.max_pipelined + self.cfg.limits.max_line
            && matches!(self.phase, Phase::Wait(_) | Phase::Connect)
        {
            self.notice(Notice::ProtocolLimit("pipelined input"));
            self.send_str("* BYE Too much pipelined input\r\n");
            return self.close();
        }
        self.process();
    }

    /// Answers `Event::Connect`.
    pub fn answer_connect(&mut self, answer: ConnectAnswer) {
        if !matches!(self.phase, Phase::Connect) {
            return;
        }
        match answer {
            ConnectAnswer::Refuse(text) => {
                if self.listener.tls != TlsMode::Implicit {
                    self.send_str(&format!("* BYE {text}\r\n"));
                }
                self.close();
            }
            ConnectAnswer::Accept if self.listener.tls == TlsMode::Implicit => {
                let early = std::mem::take(&mut self.inbuf);
                self.phase = Phase::Tls { greet: true };
                self.outputs.push_back(Output::StartTls { early });
            }
            ConnectAnswer::Accept => {
                self.greet();
                self.phase = Phase::Ready;
                self.process();
            }
        }
    }

    /// Answers `Event::Login`.
    pub fn answer_login(&mut self, answer: LoginAnswer) {
        let Phase::Wait(Pending::Login { .. }) = self.phase else {
            return;
        };
        let Phase::Wait(Pending::Login { tag, username }) =
            std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            return;
        };
        match answer {
            LoginAnswer::Success(user) => {
                self.state = State::Authenticated(user);
                let caps = self.capabilities();
                self.send_str(&format!("{tag} OK [CAPABILITY {caps}] Logged in\r\n"));
            }
            LoginAnswer::Failure => {
                self.notice(Notice::LoginFailed { username });
                self.send_str(&format!(
                    "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                ));
            }
            LoginAnswer::TempFail => self.send_str(&format!(
                "{tag} NO [UNAVAILABLE] Temporary authentication failure\r\n"
            )),
        }
        self.process();
    }

    /// The selected mailbox changed (a delivery, another session): while
    /// idling, the session asks for the new view and reports the changes.
    pub fn handle_mailbox_changed(&mut self) {
        if let (Phase::Idle { .. }, State::Selected(user, sel)) = (&self.phase, &self.state) {
            let (user, mailbox) = (user.clone(), sel.name.clone());
            let Phase::Idle { tag } = std::mem::replace(&mut self.phase, Phase::Ready) else {
                return;
            };
            self.ask(
                user,
                MailboxRequest::Poll { mailbox },
                Pending::Poll {
                    tag,
                    what: "IDLE-CONTINUE",
                    code: None,
                },
            );
        }
    }

    // ----- internals -----

    fn arm(&mut self) {
        self.deadline = Some(self.now + self.cfg.idle_timeout);
    }

    fn notice(&mut self, n: Notice) {
        self.outputs.push_back(Output::Event(Event::Notice(n)));
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Some(Output::Send(b)) = self.outputs.back_mut() {
            b.extend_from_slice(bytes);
        } else {
            self.outputs.push_back(Output::Send(bytes.to_vec()));
        }
    }

    fn send_str(&mut self, s: &str) {
        self.send(s.as_bytes());
    }

    fn close(&mut self) {
        if !self.is_closed() {
            self.phase = Phase::Closed;
            self.inbuf = Vec::new();
            self.outputs.push_back(Output::Close);
        }
    }

    fn greet(&mut self) {
        let caps = self.capabilities();
        let g = format!(
            "* OK [CAPABILITY {caps}] {} Postern ready.\r\n",
            self.cfg.hostname
        );
        self.send_str(&g);
    }

    fn capabilities(&self) -> String {
        let mut c = String::from("IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SORT QUOTA QUOTA=RES-STORAGE CONDSTORE BINARY SEARCHRES STATUS=SIZE IMAP4rev2");
        if self.user().is_none() {
            if self.listener.tls == TlsMode::StartTls && !self.tls {
                c.push_str(" STARTTLS");
            }
            if self.tls {
                c.push_str(" AUTH=PLAIN");
            } else {
                c.push_str(" LOGINDISABLED");
            }
        }
        c
    }

    /// A mailbox name as the client reads it: UTF-8 under IMAP4rev2.
    fn shown(&self, name: &str) -> String {
        if self.rev2 {
            super::utf7::decode(name).unwrap_or_else(|| name.to_owned())
        } else {
            name.to_owned()
        }
    }

    /// A sequence set argument; `$` is the saved search result (RFC 5182),
    /// as UIDs or as the sequence numbers they have now.
    fn set_arg(&self, s: &str, uid: bool) -> Option<SeqSet> {
        if s != "$" {
            return SeqSet::parse(s);
        }
        if uid {
            return Some(SeqSet::from_numbers(&self.saved));
        }
        let seqs: Vec<u32> = self
            .saved
            .iter()
            .filter_map(|u| self.seq_of(*u).and_then(|s| u32::try_from(s).ok()))
            .collect();
        Some(SeqSet::from_numbers(&seqs))
    }

    /// Turns CONDSTORE on (RFC 7162 3.1): the first enabling command with
    /// a mailbox selected gets the mailbox's HIGHESTMODSEQ first.
    fn condstore_on(&mut self) {
        if self.condstore {
            return;
        }
        self.condstore = true;
        if let Some(h) = self.view().map(|v| v.highest_modseq) {
            self.send_str(&format!("* OK [HIGHESTMODSEQ {h}] Highest\r\n"));
        }
    }

    fn ask(&mut self, user: String, request: MailboxRequest, pending: Pending) {
        self.outputs
            .push_back(Output::Event(Event::Mailbox { user, request }));
        self.phase = Phase::Wait(pending);
    }

    /// Frames and runs commands until input runs out or a question is out.
    fn process(&mut self) {
        loop {
            match &self.phase {
                Phase::Ready | Phase::AuthPlain { .. } | Phase::Idle { .. } => {}
                _ => return,
            }
            if self.inbuf.is_empty() {
                return;
            }
            // Continuation lines (AUTHENTICATE, IDLE's DONE) are plain lines.
            if matches!(self.phase, Phase::AuthPlain { .. } | Phase::Idle { .. }) {
                let Some(nl) = memchr::memchr(b'\n', &self.inbuf) else {
                    if self.inbuf.len() > self.cfg.limits.max_line {
                        self.notice(Notice::ProtocolLimit("line"));
                        self.send_str("* BYE Line too long\r\n");
                        self.close();
                    }
                    return;
                };
                let line: Vec<u8> = self.inbuf.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned();
                self.continuation_line(&text);
                continue;
            }
            match self.framer.frame(&self.inbuf, &self.cfg.limits) {
                Framed::Incomplete { continuation } => {
                    if continuation {
                        self.send_str("+ Ready for literal data\r\n");
                    }
                    return;
                }
                Framed::Command { len } => {
                    let bytes: Vec<u8> = self.inbuf.drain(..len).collect();
                    self.framer.reset();
                    self.command(&bytes);
                }
                Framed::LiteralTooLarge {
                    tag,
                    sync: true,
                    len,
                } => {
                    self.inbuf.drain(..len.min(self.inbuf.len()));
                    self.framer.reset();
                    let tag = tag.unwrap_or_else(|| "*".into());
                    self.send_str(&format!("{tag} NO [TOOBIG] Literal too large\r\n"));
                }
                Framed::LiteralTooLarge { sync: false, .. } => {
                    self.notice(Notice::ProtocolLimit("literal"));
                    self.send_str("* BYE Literal too large\r\n");
                    return self.close();
                }
                Framed::LineTooLong => {
                    self.notice(Notice::ProtocolLimit("line"));
                    self.send_str("* BYE Line too long\r\n");
                    return self.close();
                }
                Framed::TooManyLiterals => {
                    self.notice(Notice::ProtocolLimit("literals"));
                    self.send_str("* BYE Too many literals\r\n");
                    return self.close();
                }
            }
        }
    }

    fn continuation_line(&mut self, text: &str) {
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::AuthPlain { tag } => self.plain_response(&tag, text),
            Phase::Idle { tag } => {
                if text.eq_ignore_ascii_case("DONE") {
                    self.send_str(&format!("{tag} OK IDLE terminated\r\n"));
                } else {
                    self.send_str(&format!("{tag} BAD Expected DONE\r\n"));
                }
            }
            other => self.phase = other,
        }
    }

    fn command(&mut self, bytes: &[u8]) {
        let cmd = match parse_command(bytes) {
            Ok(c) => c,
            Err(ParseError::NoTag) => return self.send_str("* BAD Invalid tag\r\n"),
            Err(ParseError::Syntax { tag, message }) => {
                return self.send_str(&format!("{tag} BAD {message}\r\n"))
            }
        };
        let tag = cmd.tag.to_owned();
        let bad = |s: &mut Self, m: &str| s.send_str(&format!("{tag} BAD {m}\r\n"));
        let authenticated = self.user().map(str::to_owned);
        match (cmd.name.as_str(), &authenticated) {
            ("CAPABILITY", _) => {
                let caps = self.capabilities();
                self.send_str(&format!(
                    "* CAPABILITY {caps}\r\n{tag} OK CAPABILITY completed\r\n"
                ));
            }
            ("NOOP", _) => self.poll_or_ok(&tag, "NOOP"),
            ("CHECK", Some(_)) => self.poll_or_ok(&tag, "CHECK"),
            ("LOGOUT", _) => {
                self.send_str(&format!(
                    "* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n"
                ));
                self.state = State::Logout;
                self.close();
            }
            ("ID", _) => self.send_str(&format!(
                "* ID (\"name\" \"Postern\")\r\n{tag} OK ID completed\r\n"
            )),
            ("STARTTLS", None) => {
                if self.listener.tls != TlsMode::StartTls || self.tls {
                    return bad(self, "STARTTLS not available");
                }
                self.send_str(&format!("{tag} OK Begin TLS negotiation now\r\n"));
                let dropped = self.inbuf.len();
                if dropped > 0 {
                    self.notice(Notice::DiscardedAfterStartTls(dropped));
                }
                self.inbuf.clear();
                self.phase = Phase::Tls { greet: false };
                self.outputs
                    .push_back(Output::StartTls { early: Vec::new() });
            }
            ("LOGIN", None) => {
                if !self.tls {
                    return self
                        .send_str(&format!("{tag} NO [PRIVACYREQUIRED] LOGIN needs TLS\r\n"));
                }
                let (Some(u), Some(p), 2) = (
                    cmd.args.first().and_then(Value::as_astring),
                    cmd.args.get(1).and_then(Value::as_astring),
                    cmd.args.len(),
                ) else {
                    return bad(self, "Syntax: LOGIN user password");
                };
                self.login(tag, u.into_owned(), p.into_owned());
            }
            ("AUTHENTICATE", None) => {
                if !self.tls {
                    return self.send_str(&format!(
                        "{tag} NO [PRIVACYREQUIRED] AUTHENTICATE needs TLS\r\n"
                    ));
                }
                match (cmd.args.first(), cmd.args.get(1)) {
                    (Some(Value::Atom(m)), ir) if m.eq_ignore_ascii_case("PLAIN") => {
                        match ir.and_then(Value::as_astring) {
                            Some(ir) => self.plain_response(&tag, &ir),
                            None => {
                                self.send_str("+ \r\n");
                                self.phase = Phase::AuthPlain { tag };
                            }
                        }
                    }
                    _ => self.send_str(&format!("{tag} NO [CANNOT] Unsupported mechanism\r\n")),
                }
            }
            ("STARTTLS" | "LOGIN" | "AUTHENTICATE", Some(_)) => bad(self, "Already authenticated"),
            (_, None) => bad(self, "Log in first"),
            (_, Some(user)) => self.authenticated_command(user.clone(), &tag, &cmd),
        }
    }

    fn login(&mut self, tag: String, username: String, password: String) {
        self.outputs.push_back(Output::Event(Event::Login {
            username: username.clone(),
            password: Secret::new(password),
        }));
        self.phase = Phase::Wait(Pending::Login { tag, username });
    }

    fn plain_response(&mut self, tag: &str, text: &str) {
        match sasl::decode_plain(text) {
            Ok(c) => self.login(tag.to_owned(), c.username, c.password.expose().clone()),
            Err(sasl::SaslError::Cancelled) => {
                self.send_str(&format!("{tag} BAD Authentication cancelled\r\n"))
            }
            Err(_) => self.send_str(&format!(
                "{tag} NO [AUTHENTICATIONFAILED] Malformed response\r\n"
            )),
        }
    }

    fn poll_or_ok(&mut self, tag: &str, what: &'static str) {
        match &self.state {
            State::Selected(user, sel) => {
                let (user, mailbox) = (user.clone(), sel.name.clone());
                self.ask(
                    user,
                    MailboxRequest::Poll { mailbox },
                    Pending::Poll {
                        tag: tag.to_owned(),
                        what,
                        code: None,
                    },
                );
            }
            _ => self.send_str(&format!("{tag} OK {what} completed\r\n")),
        }
    }

    fn mailbox_arg(&mut self, tag: &str, v: Option<&Value<'_>>) -> Option<String> {
        let name = v.and_then(Value::as_astring).map(|n| canonical(&n));
        // IMAP4rev2 names are UTF-8; the store keeps modified UTF-7.
        let name = name.map(|n| {
            if self.rev2 {
                super::utf7::encode(&n)
            } else {
                n
            }
        });
        match name {
            Some(n) if safe_mailbox_name(&n) => Some(n),
            Some(_) => {
                self.send_str(&format!("{tag} NO [CANNOT] Invalid mailbox name\r\n"));
                None
            }
            None => {
                self.send_str(&format!("{tag} BAD Missing mailbox name\r\n"));
                None
            }
        }
    }

    fn authenticated_command(&mut self, user: String, tag: &str, cmd: &Command<'_>) {
        let t = tag.to_owned();
        let selected = match &self.state {
            State::Selected(_, s) => Some((s.name.clone(), s.read_only)),
            _ => None,
        };
        match cmd.name.as_str() {
            "ENABLE" => {
                if cmd.args.is_empty() {
                    return self.send_str(&format!("{tag} BAD Syntax: ENABLE capability...\r\n"));
                }
                // RFC 5161: only what is supported and newly enabled is listed.
                let wants = cmd.args.iter().any(|a| {
                    a.as_astring()
                        .is_some_and(|c| c.eq_ignore_ascii_case("CONDSTORE"))
                });
                let rev2 = cmd.args.iter().any(|a| {
                    a.as_astring()
                        .is_some_and(|c| c.eq_ignore_ascii_case("IMAP4rev2"))
                });
                let mut newly = String::new();
                if wants && !self.condstore {
                    newly.push_str(" CONDSTORE");
                }
                if rev2 && !self.rev2 {
                    newly.push_str(" IMAP4rev2");
                    self.rev2 = true;
                }
                self.send_str(&format!("* ENABLED{newly}\r\n"));
                if wants {
                    self.condstore_on();
                }
                self.send_str(&format!("{tag} OK ENABLE completed\r\n"));
            }
            "GETQUOTAROOT" | "GETQUOTA" => {
                let Some(arg) = cmd.args.first().and_then(Value::as_astring) else {
                    return self.send_str(&format!("{tag} BAD Syntax: {} name\r\n", cmd.name));
                };
                let root_of = if cmd.name == "GETQUOTAROOT" {
                    let Some(name) = self.mailbox_arg(tag, cmd.args.first()) else {
                        return;
                    };
                    Some(name)
                } else if !arg.is_empty() {
                    return self
                        .send_str(&format!("{tag} NO [NONEXISTENT] No such quota root\r\n"));
                } else {
                    None
                };
                self.ask(
                    user,
                    MailboxRequest::Quota,
                    Pending::Quota { tag: t, root_of },
                );
            }
            "SETQUOTA" => self.send_str(&format!(
                "{tag} NO [NOPERM] Quotas are set by the administrator\r\n"
            )),
            "NAMESPACE" => self.send_str(&format!(
                "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n{tag} OK NAMESPACE completed\r\n"
            )),
            "IDLE" => {
                self.send_str("+ idling\r\n");
                self.phase = Phase::Idle { tag: t };
            }
            "SELECT" | "EXAMINE" => {
                self.saved.clear();
                if let State::Selected(u, _) = &self.state {
                    // RFC 9051 6.3.2: a failed SELECT leaves no mailbox selected.
                    self.state = State::Authenticated(u.clone());
                    self.send_str("* OK [CLOSED] Previous mailbox closed\r\n");
                }
                let Some(name) = self.mailbox_arg(tag, cmd.args.first()) else {
                    return;
                };
                let read_only = cmd.name == "EXAMINE";
                let condstore = |p: &Value<'_>| matches!(p, Value::Atom(a) if a.eq_ignore_ascii_case("CONDSTORE"));
                match cmd.args.get(1) {
                    None => {}
                    Some(Value::List(params)) if params.is_empty() => {}
                    Some(Value::List(params)) if params.iter().all(condstore) => {
                        self.condstore_on()
                    }
                    Some(_) => {
                        return self.send_str(&format!("{tag} BAD Unknown SELECT parameter\r\n"))
                    }
                }
                self.ask(
                    user,
                    MailboxRequest::Select {
                        mailbox: name.clone(),
                    },
                    Pending::Select {
                        tag: t,
                        name,
                        read_only,
                    },
                );
            }
            "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" => {
                // RFC 9051 6.3.4: a trailing delimiter on CREATE is ignored.
                let trimmed = match (
                    cmd.name.as_str(),
                    cmd.args.first().and_then(Value::as_astring),
                ) {
                    ("CREATE", Some(n)) if n.len() > 1 && n.ends_with('/') => {
                        Some(n[..n.len() - 1].to_owned())
                    }
                    _ => None,
                };
                let arg = trimmed.map(|n| Value::Quoted(std::borrow::Cow::Owned(n)));
                let Some(name) = self.mailbox_arg(tag, arg.as_ref().or(cmd.args.first())) else {
                    return;
                };
                let (request, what) = match cmd.name.as_str() {
                    "CREATE" => (MailboxRequest::Create { mailbox: name }, "CREATE"),
                    "DELETE" => (MailboxRequest::Delete { mailbox: name }, "DELETE"),
                    "SUBSCRIBE" => (
                        MailboxRequest::Subscribe {
                            mailbox: name,
                            on: true,
                        },
                        "SUBSCRIBE",
                    ),
                    _ => (
                        MailboxRequest::Subscribe {
                            mailbox: name,
                            on: false,
                        },
                        "UNSUBSCRIBE",
                    ),
                };
                self.ask(user, request, Pending::Simple { tag: t, what });
            }
            "RENAME" => {
                let Some(from) = self.mailbox_arg(tag, cmd.args.first()) else {
                    return;
                };
                let Some(to) = self.mailbox_arg(tag, cmd.args.get(1)) else {
                    return;
                };
                self.ask(
                    user,
                    MailboxRequest::Rename { from, to },
                    Pending::Simple {
                        tag: t,
                        what: "RENAME",
                    },
                );
            }
            "LIST" | "LSUB" => self.list(user, tag, cmd),
            "STATUS" => {
                let Some(name) = self.mailbox_arg(tag, cmd.args.first()) else {
                    return;
                };
                let Some(Value::List(items)) = cmd.args.get(1) else {
                    return self.send_str(&format!("{tag} BAD Syntax: STATUS mailbox (items)\r\n"));
                };
                let items: Vec<String> = items
                    .iter()
                    .filter_map(|i| i.as_astring().map(|s| s.to_ascii_uppercase()))
                    .collect();
                if items.is_empty() {
                    return self.send_str(&format!("{tag} BAD Syntax: STATUS mailbox (items)\r\n"));
                }
                if let Some(bad) = items.iter().find(|i| !STATUS_ITEMS.contains(&i.as_str())) {
                    return self.send_str(&format!("{tag} BAD Unknown STATUS item {bad}\r\n"));
                }
                if items.iter().any(|i| i == "HIGHESTMODSEQ") {
                    self.condstore_on();
                }
                self.ask(
                    user,
                    MailboxRequest::Status {
                        mailbox: name.clone(),
                    },
                    Pending::Status {
                        tag: t,
                        name,
                        items,
                    },
                );
            }
            "APPEND" => {
                let Some(name) = self.mailbox_arg(tag, cmd.args.first()) else {
                    return;
                };
                let mut flags = Vec::new();
                let mut data = None;
                let mut date = None;
                for v in &cmd.args[1..] {
                    match v {
                        Value::List(fl) => {
                            flags = fl
                                .iter()
                                .filter_map(|f| f.as_astring().map(|s| s.into_owned()))
                                .collect()
                        }
                        Value::Literal(d) => data = Some(d.to_vec()),
                        Value::Quoted(q) => match fetch::parse_date_time(q) {
                            Some(d) => date = Some(d),
                            None => {
                                return self.send_str(&format!("{tag} BAD Invalid date-time\r\n"))
                            }
                        },
                        _ => {}
                    }
                }
                let Some(data) = data else {
                    return self.send_str(&format!(
                        "{tag} BAD Syntax: APPEND mailbox [(flags)] [date] literal\r\n"
                    ));
                };
                if !valid_flags(&flags) {
                    return self.send_str(&format!("{tag} BAD Invalid flag in the list\r\n"));
                }
                self.ask(
                    user,
                    MailboxRequest::Append {
                        mailbox: name.clone(),
                        flags,
                        data,
                        date,
                    },
                    Pending::Append {
                        tag: t,
                        target: name,
                    },
                );
            }
            _ => match selected {
                None => self.send_str(&format!("{tag} BAD No mailbox selected\r\n")),
                Some((mailbox, read_only)) => {
                    self.selected_command(user, tag, cmd, mailbox, read_only)
                }
            },
        }
    }

    /// LIST and LSUB, with LIST-EXTENDED (RFC 5258) selection and return
    /// options, several patterns, and LIST-STATUS (RFC 5819).
    fn list(&mut self, user: String, tag: &str, cmd: &Command<'_>) {
        let lsub = cmd.name == "LSUB";
        let mut args = cmd.args.as_slice();
        let mut subscribed_only = lsub;
        let mut special_only = false;
        let mut recursive = false;
        // LIST-EXTENDED syntax (selection or return options, a pattern
        // list): `""` is then a pattern like any other (RFC 5258 3).
        let mut extended = false;
        let atom_is =
            |v: &Value<'_>, w: &str| matches!(v, Value::Atom(a) if a.eq_ignore_ascii_case(w));
        if !lsub {
            if let Some(Value::List(sel)) = args.first() {
                extended = true;
                for o in sel {
                    if atom_is(o, "SUBSCRIBED") {
                        subscribed_only = true;
                    } else if atom_is(o, "SPECIAL-USE") {
                        special_only = true;
                    } else if atom_is(o, "RECURSIVEMATCH") {
                        recursive = true;
                    } else if !atom_is(o, "REMOTE") {
                        return self
                            .send_str(&format!("{tag} BAD Unknown LIST selection option\r\n"));
                    }
                }
                // RFC 5258 3.1: RECURSIVEMATCH alone (or with REMOTE) is BAD.
                if recursive && !subscribed_only && !special_only {
                    return self.send_str(&format!(
                        "{tag} BAD RECURSIVEMATCH needs another selection option\r\n"
                    ));
                }
                args = &args[1..];
            }
        }
        let reference = args.first().and_then(Value::as_astring);
        let patterns: Option<Vec<String>> = match args.get(1) {
            Some(Value::List(ps)) if !lsub && !ps.is_empty() => {
                extended = true;
                ps.iter()
                    .map(|p| p.as_astring().map(|p| p.into_owned()))
                    .collect()
            }
            Some(v) => v.as_astring().map(|p| vec![p.into_owned()]),
            None => None,
        };
        let (Some(reference), Some(patterns)) = (reference, patterns) else {
            return self.send_str(&format!("{tag} BAD Syntax: LIST reference pattern\r\n"));
        };
        let mut ret_sub = false;
        let mut status = None;
        match (args.get(2), args.get(3)) {
            (None, _) => {}
            (Some(r), Some(Value::List(opts))) if !lsub && atom_is(r, "RETURN") => {
                extended = true;
                let mut i = 0;
                while let Some(o) = opts.get(i) {
                    if atom_is(o, "SUBSCRIBED") {
                        ret_sub = true;
                    } else if atom_is(o, "STATUS") {
                        let Some(Value::List(items)) = opts.get(i + 1) else {
                            return self.send_str(&format!(
                                "{tag} BAD Syntax: RETURN (STATUS (items))\r\n"
                            ));
                        };
                        let items: Vec<String> = items
                            .iter()
                            .filter_map(|v| v.as_astring().map(|s| s.to_ascii_uppercase()))
                            .collect();
                        if items.is_empty() {
                            return self.send_str(&format!(
                                "{tag} BAD Syntax: RETURN (STATUS (items))\r\n"
                            ));
                        }
                        if items.iter().any(|x| !STATUS_ITEMS.contains(&x.as_str())) {
                            return self.send_str(&format!("{tag} BAD Unknown STATUS item\r\n"));
                        }
                        if items.iter().any(|x| x == "HIGHESTMODSEQ") {
                            self.condstore_on();
                        }
                        status = Some(items);
                        i += 1;
                    } else if !(atom_is(o, "CHILDREN") || atom_is(o, "SPECIAL-USE")) {
                        return self.send_str(&format!("{tag} BAD Unknown LIST return option\r\n"));
                    }
                    i += 1;
                }
            }
            _ => return self.send_str(&format!("{tag} BAD Syntax: LIST ... RETURN (options)\r\n")),
        }
        let kw = if lsub { "LSUB" } else { "LIST" };
        if !extended && patterns.len() == 1 && patterns[0].is_empty() {
            return self.send_str(&format!(
                "* {kw} (\\Noselect) \"/\" \"\"\r\n{tag} OK {kw} completed\r\n"
            ));
        }
        let patterns: Vec<String> = patterns
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| format!("{reference}{p}"))
            .collect();
        if patterns.is_empty() {
            return self.send_str(&format!("{tag} OK {kw} completed\r\n"));
        }
        let with_status = status.is_some();
        // RECURSIVEMATCH with SUBSCRIBED: every mailbox, then the session
        // picks (a parent of a subscribed child the patterns miss is
        // listed with CHILDINFO). Under IMAP4rev2 the patterns are UTF-8
        // and the stored names modified UTF-7: every mailbox too, and the
        // session matches the names as the client reads them.
        let (request_patterns, recursive, filter) = if recursive && subscribed_only {
            (vec!["*".to_owned()], Some(patterns), None)
        } else if self.rev2 {
            (vec!["*".to_owned()], None, Some(patterns))
        } else {
            (patterns, None, None)
        };
        self.ask(
            user,
            MailboxRequest::List {
                patterns: request_patterns,
                subscribed_only: subscribed_only && recursive.is_none(),
                with_status,
            },
            Pending::List {
                tag: tag.to_owned(),
                lsub,
                sub_attr: ret_sub || subscribed_only,
                special_only,
                status,
                recursive,
                filter,
            },
        );
    }

    fn selected_command(
        &mut self,
        user: String,
        tag: &str,
        cmd: &Command<'_>,
        mailbox: String,
        read_only: bool,
    ) {
        let t = tag.to_owned();
        let (uid, name) = match cmd.name.strip_prefix("UID ") {
            Some(n) => (true, n),
            None => (false, cmd.name.as_str()),
        };
        match name {
            "CLOSE" | "UNSELECT" if !uid => {
                self.saved.clear();
                if name == "CLOSE" && !read_only {
                    self.ask(
                        user,
                        MailboxRequest::Expunge {
                            mailbox,
                            uids: None,
                        },
                        Pending::Expunge {
                            tag: t,
                            closing: true,
                        },
                    );
                } else {
                    self.state = State::Authenticated(user);
                    self.send_str(&format!("{tag} OK {name} completed\r\n"));
                }
            }
            "EXPUNGE" => {
                if read_only {
                    return self
                        .send_str(&format!("{tag} NO [READ-ONLY] Mailbox is read-only\r\n"));
                }
                let uids = if uid {
                    let Some(set) = cmd
                        .args
                        .first()
                        .and_then(Value::as_astring)
                        .and_then(|s| self.set_arg(&s, uid))
                    else {
                        return self.send_str(&format!("{tag} BAD Syntax: UID EXPUNGE set\r\n"));
                    };
                    Some(self.uids_of(&set, true))
                } else {
                    None
                };
                self.ask(
                    user,
                    MailboxRequest::Expunge { mailbox, uids },
                    Pending::Expunge {
                        tag: t,
                        closing: false,
                    },
                );
            }
            "FETCH" => {
                let (Some(set), Some(items)) = (
                    cmd.args
                        .first()
                        .and_then(Value::as_astring)
                        .and_then(|s| self.set_arg(&s, uid)),
                    cmd.args.get(1),
                ) else {
                    return self.send_str(&format!("{tag} BAD Syntax: FETCH set items\r\n"));
                };
                let mut items = match fetch::parse_items(items) {
                    Ok(i) => i,
                    Err(e) => return self.send_str(&format!("{tag} BAD {e}\r\n")),
                };
                // FETCH modifiers: (CHANGEDSINCE n) (RFC 7162 3.1.4.1).
                let mut changed_since = None;
                match cmd.args.get(2) {
                    None => {}
                    Some(Value::List(m)) => match m.as_slice() {
                        [Value::Atom(a), n] if a.eq_ignore_ascii_case("CHANGEDSINCE") => {
                            match n.as_astring().and_then(|n| n.parse::<u64>().ok()) {
                                Some(n) => changed_since = Some(n),
                                None => {
                                    return self
                                        .send_str(&format!("{tag} BAD Bad CHANGEDSINCE value\r\n"))
                                }
                            }
                        }
                        _ => {
                            return self.send_str(&format!("{tag} BAD Unknown FETCH modifier\r\n"))
                        }
                    },
                    Some(_) => {
                        return self.send_str(&format!("{tag} BAD Syntax: FETCH set items\r\n"))
                    }
                }
                if changed_since.is_some() || items.contains(&Item::Modseq) {
                    self.condstore_on();
                }
                if uid && !items.contains(&Item::Uid) {
                    items.insert(0, Item::Uid);
                }
                if (changed_since.is_some() || (self.condstore && items.contains(&Item::Flags)))
                    && !items.contains(&Item::Modseq)
                {
                    items.push(Item::Modseq);
                }
                if !uid && self.out_of_range(&set) {
                    return self
                        .send_str(&format!("{tag} BAD Invalid message sequence number\r\n"));
                }
                let mut targets = self.resolve(&set, uid);
                if let Some(n) = changed_since {
                    targets.retain(|(_, u)| self.meta(*u).is_some_and(|m| m.modseq > n));
                }
                if targets.is_empty() || !items.iter().any(Item::needs_body) {
                    let data = FetchData::default();
                    return self.finish_fetch(t, uid, items, targets, data, Vec::new());
                }
                self.fetch_batch(user, mailbox, t, uid, items, targets);
            }
            "SEARCH" | "SORT" => {
                let mut args = cmd.args.as_slice();
                let mut form = SearchForm::Plain;
                if name == "SORT" {
                    let Some(Value::List(crit)) = args.first() else {
                        return self.send_str(&format!(
                            "{tag} BAD Syntax: SORT (criteria) charset keys\r\n"
                        ));
                    };
                    let Some(crit) = parse_sort(crit) else {
                        return self.send_str(&format!("{tag} BAD Unknown sort criterion\r\n"));
                    };
                    // RFC 5256: the charset is required.
                    let Some(cs) = args.get(1).and_then(Value::as_astring) else {
                        return self.send_str(&format!("{tag} BAD SORT needs a charset\r\n"));
                    };
                    // The charset is required: `SORT (DATE) ALL` has none.
                    if args.len() < 3 {
                        return self.send_str(&format!("{tag} BAD SEARCH needs a key\r\n"));
                    }
                    if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
                        return self.send_str(&format!(
                            "{tag} NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset\r\n"
                        ));
                    }
                    form = SearchForm::Sort(crit);
                    args = &args[2..];
                } else if let Some(Value::Atom(a)) = args.first() {
                    // ESEARCH (RFC 4731): RETURN (MIN MAX ALL COUNT); () means ALL.
                    if a.eq_ignore_ascii_case("RETURN") {
                        let Some(Value::List(opts)) = args.get(1) else {
                            return self.send_str(&format!(
                                "{tag} BAD Syntax: SEARCH RETURN (options)\r\n"
                            ));
                        };
                        let mut ret = Vec::new();
                        for o in opts {
                            match o.as_astring().map(|o| o.to_ascii_uppercase()).as_deref() {
                                Some(w @ ("MIN" | "MAX" | "ALL" | "COUNT" | "SAVE")) => {
                                    if !ret.iter().any(|r| r == w) {
                                        ret.push(w.to_owned());
                                    }
                                }
                                _ => {
                                    return self.send_str(&format!(
                                        "{tag} BAD Unknown SEARCH return option\r\n"
                                    ))
                                }
                            }
                        }
                        if ret.is_empty() {
                            ret.push("ALL".to_owned());
                        }
                        form = SearchForm::Extended(ret);
                        args = &args[2..];
                    }
                }
                // RFC 9051 6.4.4: IMAP4rev2 answers SEARCH with ESEARCH.
                if self.rev2 && form == SearchForm::Plain {
                    form = SearchForm::Extended(vec!["ALL".to_owned()]);
                }
                let saving =
                    matches!(&form, SearchForm::Extended(r) if r.iter().any(|o| o == "SAVE"));
                let previous = self.saved.clone();
                let key = match fetch::parse_search(args).map(|mut k| {
                    k.resolve_saved(&previous);
                    k
                }) {
                    Ok(k) => k,
                    // RFC 9051 6.4.4: an unknown charset is a NO, not a BAD.
                    Err(e) if e.starts_with("[BADCHARSET") => {
                        // RFC 5182 2.1: a SEARCH that saves and fails (NO)
                        // empties `$`; a BAD leaves it alone.
                        if saving {
                            self.saved.clear();
                        }
                        return self.send_str(&format!("{tag} NO {e}\r\n"));
                    }
                    Err(e) => return self.send_str(&format!("{tag} BAD {e}\r\n")),
                };
                if key.uses_modseq() {
                    self.condstore_on();
                }
                let _ = mailbox;
                let scan = key.needs_body().then(|| {
                    let uids = self
                        .view()
                        .map(|v| v.messages.iter().map(|m| m.uid).collect())
                        .unwrap_or_default();
                    (Vec::new(), uids)
                });
                self.search_hits(user, t, uid, key, form, scan, &[]);
            }
            "STORE" => {
                if read_only {
                    return self
                        .send_str(&format!("{tag} NO [READ-ONLY] Mailbox is read-only\r\n"));
                }
                // STORE modifiers: (UNCHANGEDSINCE n) (RFC 7162 3.1.3).
                let mut unchanged_since = None;
                let mut rest = cmd.args.get(1..).unwrap_or_default();
                if let Some(Value::List(m)) = rest.first() {
                    match m.as_slice() {
                        [Value::Atom(a), n] if a.eq_ignore_ascii_case("UNCHANGEDSINCE") => {
                            match n.as_astring().and_then(|n| n.parse::<u64>().ok()) {
                                Some(n) => unchanged_since = Some(n),
                                None => {
                                    return self.send_str(&format!(
                                        "{tag} BAD Bad UNCHANGEDSINCE value\r\n"
                                    ))
                                }
                            }
                        }
                        _ => {
                            return self.send_str(&format!("{tag} BAD Unknown STORE modifier\r\n"))
                        }
                    }
                    rest = &rest[1..];
                    self.condstore_on();
                }
                let (Some(set), Some(Value::Atom(op)), Some(flags)) = (
                    cmd.args
                        .first()
                        .and_then(Value::as_astring)
                        .and_then(|s| self.set_arg(&s, uid)),
                    rest.first(),
                    rest.get(1),
                ) else {
                    return self.send_str(&format!(
                        "{tag} BAD Syntax: STORE set [+-]FLAGS[.SILENT] (flags)\r\n"
                    ));
                };
                let op = op.to_ascii_uppercase();
                let silent = op.ends_with(".SILENT");
                let mode = match op.trim_end_matches(".SILENT") {
                    "FLAGS" => StoreMode::Replace,
                    "+FLAGS" => StoreMode::Add,
                    "-FLAGS" => StoreMode::Remove,
                    _ => return self.send_str(&format!("{tag} BAD Unknown STORE operation\r\n")),
                };
                let flags: Vec<String> = match flags {
                    Value::List(l) => l
                        .iter()
                        .filter_map(|f| f.as_astring().map(|s| s.into_owned()))
                        .collect(),
                    other => other
                        .as_astring()
                        .map(|s| vec![s.into_owned()])
                        .unwrap_or_default(),
                };
                if !valid_flags(&flags) {
                    return self.send_str(&format!("{tag} BAD Invalid flag in the list\r\n"));
                }
                if !uid && self.out_of_range(&set) {
                    return self
                        .send_str(&format!("{tag} BAD Invalid message sequence number\r\n"));
                }
                let uids = self.uids_of(&set, uid);
                if uids.is_empty() {
                    return self.send_str(&format!("{tag} OK STORE completed\r\n"));
                }
                self.ask(
                    user,
                    MailboxRequest::Store {
                        mailbox,
                        uids,
                        mode,
                        flags,
                        unchanged_since,
                    },
                    Pending::Store {
                        tag: t,
                        uid,
                        silent,
                        conditional: unchanged_since.is_some(),
                    },
                );
            }
            "COPY" | "MOVE" => {
                let Some(set) = cmd
                    .args
                    .first()
                    .and_then(Value::as_astring)
                    .and_then(|s| self.set_arg(&s, uid))
                else {
                    return self.send_str(&format!("{tag} BAD Syntax: {name} set mailbox\r\n"));
                };
                let Some(to) = self.mailbox_arg(tag, cmd.args.get(1)) else {
                    return;
                };
                if !uid && self.out_of_range(&set) {
                    return self
                        .send_str(&format!("{tag} BAD Invalid message sequence number\r\n"));
                }
                let moving = name == "MOVE";
                if moving && read_only {
                    return self
                        .send_str(&format!("{tag} NO [READ-ONLY] Mailbox is read-only\r\n"));
                }
                let uids = self.uids_of(&set, uid);
                if uids.is_empty() {
                    return self.send_str(&format!("{tag} OK {name} completed\r\n"));
                }
                self.copy_target = Some(to.clone());
                self.ask(
                    user,
                    MailboxRequest::Copy {
                        mailbox,
                        uids,
                        to,
                        moving,
                    },
                    Pending::Copy { tag: t, moving },
                );
            }
            _ => self.send_str(&format!("{tag} BAD Unknown command\r\n")),
        }
    }

    fn view(&self) -> Option<&MailboxView> {
        match &self.state {
            State::Selected(_, s) => Some(&s.view),
            _ => None,
        }
    }

    /// Whether a sequence set names a number past the last message (or
    /// `*` in an empty mailbox): RFC 9051 9 says BAD.
    fn out_of_range(&self, set: &SeqSet) -> bool {
        let n = self
            .view()
            .map_or(0, |v| u32::try_from(v.messages.len()).unwrap_or(u32::MAX));
        set.highest()
            .is_some_and(|h| h == u32::MAX && n == 0 || h != u32::MAX && h > n)
    }

    /// (sequence number, UID) of the messages a set names.
    fn resolve(&self, set: &SeqSet, uid: bool) -> Vec<(u32, u32)> {
        let Some(v) = self.view() else {
            return Vec::new();
        };
        let max_seq = u32::try_from(v.messages.len()).unwrap_or(u32::MAX);
        let max_uid = v.messages.last().map_or(0, |m| m.uid);
        v.messages
            .iter()
            .enumerate()
            .map(|(i, m)| (u32::try_from(i + 1).unwrap_or(u32::MAX), m.uid))
            .filter(|&(seq, u)| {
                if uid {
                    set.contains(u, max_uid)
                } else {
                    set.contains(seq, max_seq)
                }
            })
            .collect()
    }

    /// The UIDs of the messages a set names.
    fn uids_of(&self, set: &SeqSet, uid: bool) -> Vec<u32> {
        self.resolve(set, uid).into_iter().map(|(_, u)| u).collect()
    }

    /// The view's index of a UID (messages are in UID order).
    fn index_of(&self, uid: u32) -> Option<usize> {
        self.view()
            .and_then(|v| v.messages.binary_search_by_key(&uid, |m| m.uid).ok())
    }

    fn meta(&self, uid: u32) -> Option<&MessageMeta> {
        let i = self.index_of(uid)?;
        self.view().and_then(|v| v.messages.get(i))
    }

    fn flags_list(flags: &[String]) -> String {
        format!("({})", flags.join(" "))
    }

    /// Asks the store for the next batch of a FETCH: a few megabytes of
    /// messages at a time, so a `FETCH 1:* BODY[]` never holds a whole
    /// mailbox in memory, and the client reads one batch while the store
    /// reads the next.
    fn fetch_batch(
        &mut self,
        user: String,
        mailbox: String,
        tag: String,
        uid: bool,
        items: Vec<Item>,
        mut targets: Vec<(u32, u32)>,
    ) {
        let bytes = items.iter().any(Item::needs_bytes);
        let header_only = items
            .iter()
            .filter(|i| i.needs_body())
            .all(|i| i.header_only() || *i == Item::Envelope);
        let (max_n, max_bytes) = match (bytes, header_only) {
            (false, _) => (2048, u64::MAX),
            (true, true) => (512, u64::MAX),
            (true, false) => (512, 4 << 20),
        };
        let n = self.batch_len(targets.iter().map(|(_, u)| *u), max_n, max_bytes);
        let rest = targets.split_off(n.max(1).min(targets.len()));
        let uids = targets.iter().map(|(_, u)| *u).collect();
        // ENVELOPE and BODYSTRUCTURE alone come from the store's cached
        // summaries; header sections need only the header.
        let request = if bytes {
            MailboxRequest::Bodies {
                mailbox,
                uids,
                header_only,
            }
        } else {
            MailboxRequest::Summaries { mailbox, uids }
        };
        self.ask(
            user,
            request,
            Pending::Fetch {
                tag,
                uid,
                items,
                targets,
                data: FetchData::default(),
                rest,
            },
        );
    }

    /// Ends a FETCH whose BINARY met an encoding it cannot undo: the
    /// messages answered so far, then `NO [UNKNOWN-CTE]` (RFC 3516 4.1).
    fn unknown_cte(&mut self, tag: &str, out: &[u8], cte: &str) {
        self.send(out);
        let cte: String = cte
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(40)
            .collect();
        self.send_str(&format!(
            "{tag} NO [UNKNOWN-CTE] Cannot decode Content-Transfer-Encoding {cte}\r\n"
        ));
    }

    /// How many of these messages go in one batch: at most `max_n`, and
    /// no more once `max_bytes` is reached (one at least).
    fn batch_len(&self, uids: impl Iterator<Item = u32>, max_n: usize, max_bytes: u64) -> usize {
        let mut n = 0;
        let mut sum = 0u64;
        for u in uids {
            if n >= max_n || (n > 0 && sum >= max_bytes) {
                break;
            }
            sum += self.meta(u).map_or(0, |m| m.size);
            n += 1;
        }
        n
    }

    fn finish_fetch(
        &mut self,
        tag: String,
        uid: bool,
        items: Vec<Item>,
        targets: Vec<(u32, u32)>,
        data: FetchData,
        rest: Vec<(u32, u32)>,
    ) {
        let mut out = Vec::new();
        let by_uid: std::collections::HashMap<u32, &[u8]> = data
            .bodies
            .iter()
            .flatten()
            .map(|(u, d)| (*u, d.as_slice()))
            .collect();
        let summaries: std::collections::HashMap<u32, &Summary> = data
            .summaries
            .iter()
            .flatten()
            .map(|(u, d)| (*u, d))
            .collect();
        for (seq, uid) in &targets {
            let Some(meta) = self.meta(*uid).cloned() else {
                continue;
            };
            let body = by_uid.get(uid).copied();
            let summary = summaries.get(uid).copied();
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for item in &items {
                match item {
                    Item::Flags => {
                        parts.push(format!("FLAGS {}", Self::flags_list(&meta.flags)).into_bytes())
                    }
                    Item::Uid => parts.push(format!("UID {uid}").into_bytes()),
                    Item::Size => parts.push(format!("RFC822.SIZE {}", meta.size).into_bytes()),
                    Item::InternalDate => parts.push(
                        format!("INTERNALDATE {}", fetch::internal_date(meta.internal_date))
                            .into_bytes(),
                    ),
                    Item::Modseq => parts.push(format!("MODSEQ ({})", meta.modseq).into_bytes()),
                    Item::Envelope => {
                        let e = match (summary, body) {
                            (Some(s), _) => s.envelope.clone(),
                            (None, Some(b)) => super::mime::envelope(b),
                            (None, None) => "NIL".to_owned(),
                        };
                        parts.push(format!("ENVELOPE {e}").into_bytes());
                    }
                    Item::Structure(ext) => {
                        let name = if *ext { "BODYSTRUCTURE" } else { "BODY" };
                        let s = match (summary, body) {
                            (Some(s), _) if *ext => s.bodystructure.clone(),
                            (Some(s), _) => s.body.clone(),
                            (None, Some(b)) => super::mime::bodystructure(b, *ext),
                            (None, None) => "NIL".to_owned(),
                        };
                        parts.push(format!("{name} {s}").into_bytes());
                    }
                    Item::Body {
                        section,
                        partial,
                        label,
                        ..
                    } => {
                        let Some(b) = body else {
                            parts.push(format!("{label} NIL").into_bytes());
                            continue;
                        };
                        let bytes = cut(fetch::section_bytes(b, section), *partial);
                        parts.push(literal(label, "", &bytes));
                    }
                    Item::Binary {
                        path,
                        partial,
                        label,
                        ..
                    } => {
                        let Some(b) = body else {
                            parts.push(format!("{label} NIL").into_bytes());
                            continue;
                        };
                        let bytes = match super::mime::binary(b, path) {
                            Ok(x) => cut(x, *partial),
                            Err(e) => return self.unknown_cte(&tag, &out, &e.0),
                        };
                        // RFC 3516 4.3: literal8 when the data has NULs.
                        let tilde = if bytes.contains(&0) { "~" } else { "" };
                        parts.push(literal(label, tilde, &bytes));
                    }
                    Item::BinarySize { path, label } => {
                        let n = match body.map(|b| super::mime::binary(b, path)) {
                            Some(Ok(x)) => x.len(),
                            Some(Err(e)) => return self.unknown_cte(&tag, &out, &e.0),
                            None => 0,
                        };
                        parts.push(format!("{label} {n}").into_bytes());
                    }
                }
            }
            out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(p);
            }
            out.extend_from_slice(b")\r\n");
        }
        if !rest.is_empty() {
            if let (Some(user), Some(mailbox)) = (
                self.user().map(str::to_owned),
                self.selected().map(str::to_owned),
            ) {
                self.send(&out);
                return self.fetch_batch(user, mailbox, tag, uid, items, rest);
            }
        }
        out.extend_from_slice(format!("{tag} OK FETCH completed\r\n").as_bytes());
        self.send(&out);
    }

    /// Evaluates a search on the view (with message bytes when the key
    /// needs them), then answers, or asks for summaries to SORT by.
    ///
    /// A key that needs message bytes reads them in batches (`scan`: the
    /// hits so far and the UIDs left), a few megabytes at a time.
    #[allow(clippy::too_many_arguments)]
    fn search_hits(
        &mut self,
        user: String,
        tag: String,
        uid: bool,
        key: Key,
        form: SearchForm,
        scan: Option<Scan>,
        bodies: &[(u32, Vec<u8>)],
    ) {
        let (max_seq, max_uid) = self.view().map_or((0, 0), |v| {
            (
                u32::try_from(v.messages.len()).unwrap_or(u32::MAX),
                v.messages.last().map_or(0, |m| m.uid),
            )
        });
        let hits = match scan {
            Some((mut found, mut rest)) => {
                for (u, body) in bodies {
                    let (Some(i), Some(m)) = (self.index_of(*u), self.meta(*u)) else {
                        continue;
                    };
                    let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
                    if key.matches(m, seq, max_seq, max_uid, Some(body)) {
                        found.push((seq, *u));
                    }
                }
                if !rest.is_empty() {
                    let Some(mailbox) = self.selected().map(str::to_owned) else {
                        return self.send_str(&format!("{tag} NO No mailbox selected\r\n"));
                    };
                    let n = self.batch_len(rest.iter().copied(), 512, 4 << 20);
                    let later = rest.split_off(n.min(rest.len()));
                    let header_only = !key.needs_text();
                    return self.ask(
                        user,
                        MailboxRequest::Bodies {
                            mailbox,
                            uids: rest,
                            header_only,
                        },
                        Pending::Search {
                            tag,
                            uid,
                            key,
                            form,
                            hits: None,
                            scan: Some((found, later)),
                        },
                    );
                }
                found.sort_unstable();
                found
            }
            None => {
                let mut hits = Vec::new();
                if let Some(v) = self.view() {
                    for (i, m) in v.messages.iter().enumerate() {
                        let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
                        if key.matches(m, seq, max_seq, max_uid, None) {
                            hits.push((seq, m.uid));
                        }
                    }
                }
                hits
            }
        };
        match (&form, self.selected().map(str::to_owned)) {
            (SearchForm::Sort(_), Some(mailbox)) if !hits.is_empty() => {
                let uids = hits.iter().map(|(_, u)| *u).collect();
                self.ask(
                    user,
                    MailboxRequest::Summaries { mailbox, uids },
                    Pending::Search {
                        tag,
                        uid,
                        key,
                        form,
                        hits: Some(hits),
                        scan: None,
                    },
                );
            }
            _ => self.finish_search(&tag, uid, &key, &form, hits, &[]),
        }
    }

    /// Writes the SEARCH, ESEARCH or SORT answer.
    fn finish_search(
        &mut self,
        tag: &str,
        uid: bool,
        key: &Key,
        form: &SearchForm,
        mut hits: Vec<(u32, u32)>,
        summaries: &[(u32, Summary)],
    ) {
        let number = |h: &(u32, u32)| if uid { h.1 } else { h.0 };
        // RFC 7162 3.1.5: a search with MODSEQ reports the highest one found.
        let modseq = if key.uses_modseq() {
            hits.iter()
                .filter_map(|(_, u)| self.meta(*u).map(|m| m.modseq))
                .max()
        } else {
            None
        };
        // `* SEARCH 2 5 (MODSEQ 9)` or `* SORT ...`, then the tagged OK.
        let list = |what: &str, hits: &[(u32, u32)], r: &mut String| {
            let _ = write!(r, "* {what}");
            for h in hits {
                let _ = write!(r, " {}", number(h));
            }
            if let Some(m) = modseq {
                let _ = write!(r, " (MODSEQ {m})");
            }
            let _ = write!(r, "\r\n{tag} OK {what} completed\r\n");
        };
        let mut r = String::new();
        match form {
            SearchForm::Plain => {
                list("SEARCH", &hits, &mut r);
            }
            SearchForm::Extended(ret) => {
                if ret.iter().any(|o| o == "SAVE") {
                    // RFC 5182 2.1: with MIN or MAX, only those are saved.
                    let by_num = |a: &&(u32, u32), b: &&(u32, u32)| number(a).cmp(&number(b));
                    let min = ret.iter().any(|o| o == "MIN");
                    let max = ret.iter().any(|o| o == "MAX");
                    self.saved = if min || max {
                        let mut v = Vec::new();
                        if let (true, Some(h)) = (min, hits.iter().min_by(by_num)) {
                            v.push(h.1);
                        }
                        if let (true, Some(h)) = (max, hits.iter().max_by(by_num)) {
                            v.push(h.1);
                        }
                        v.dedup();
                        v
                    } else {
                        hits.iter().map(|h| h.1).collect()
                    };
                    if ret.len() == 1 {
                        // SAVE alone: no ESEARCH response.
                        let _ = write!(r, "{tag} OK SEARCH completed\r\n");
                        return self.send_str(&r);
                    }
                }
                let _ = write!(r, "* ESEARCH (TAG \"{tag}\")");
                if uid {
                    r.push_str(" UID");
                }
                let nums: Vec<u32> = hits.iter().map(number).collect();
                for o in ret {
                    match o.as_str() {
                        "MIN" => {
                            if let Some(x) = nums.iter().min() {
                                let _ = write!(r, " MIN {x}");
                            }
                        }
                        "MAX" => {
                            if let Some(x) = nums.iter().max() {
                                let _ = write!(r, " MAX {x}");
                            }
                        }
                        "COUNT" => {
                            let _ = write!(r, " COUNT {}", nums.len());
                        }
                        "SAVE" => {}
                        _ => {
                            if !nums.is_empty() {
                                let _ = write!(r, " ALL {}", SeqSet::compact(&nums));
                            }
                        }
                    }
                }
                // RFC 4731 3.2: with only MIN and/or MAX, the highest
                // mod-sequence of the messages returned.
                let modseq = if ret.iter().any(|o| o == "ALL" || o == "COUNT") {
                    modseq
                } else {
                    let pick = |h: Option<&(u32, u32)>| {
                        h.and_then(|(_, u)| self.meta(*u)).map(|m| m.modseq)
                    };
                    let by_num = |a: &&(u32, u32), b: &&(u32, u32)| number(a).cmp(&number(b));
                    let min = ret
                        .iter()
                        .any(|o| o == "MIN")
                        .then(|| pick(hits.iter().min_by(by_num)));
                    let max = ret
                        .iter()
                        .any(|o| o == "MAX")
                        .then(|| pick(hits.iter().max_by(by_num)));
                    modseq.and(min.flatten().max(max.flatten()))
                };
                if let (Some(m), false) = (modseq, nums.is_empty()) {
                    let _ = write!(r, " MODSEQ {m}");
                }
                let _ = write!(r, "\r\n{tag} OK SEARCH completed\r\n");
            }
            SearchForm::Sort(crit) => {
                let by_uid: std::collections::HashMap<u32, &Summary> =
                    summaries.iter().map(|(u, s)| (*u, s)).collect();
                let default = Summary::default();
                let metas: std::collections::HashMap<u32, (u64, i64)> = hits
                    .iter()
                    .filter_map(|(_, u)| self.meta(*u).map(|m| (*u, (m.size, m.internal_date))))
                    .collect();
                hits.sort_by(|a, b| {
                    let (sa, sb) = (
                        by_uid.get(&a.1).copied().unwrap_or(&default),
                        by_uid.get(&b.1).copied().unwrap_or(&default),
                    );
                    let (ma, mb) = (
                        metas.get(&a.1).copied().unwrap_or_default(),
                        metas.get(&b.1).copied().unwrap_or_default(),
                    );
                    for (by, reverse) in crit {
                        let o = match by {
                            SortBy::Arrival => ma.1.cmp(&mb.1),
                            SortBy::Size => ma.0.cmp(&mb.0),
                            SortBy::Date => sa
                                .sort
                                .date
                                .unwrap_or(ma.1)
                                .cmp(&sb.sort.date.unwrap_or(mb.1)),
                            // i;unicode-casemap (RFC 5051): titlecase,
                            // upper case for ASCII.
                            SortBy::From => casemap(&sa.sort.from, &sb.sort.from),
                            SortBy::To => casemap(&sa.sort.to, &sb.sort.to),
                            SortBy::Cc => casemap(&sa.sort.cc, &sb.sort.cc),
                            SortBy::Subject => casemap(&sa.sort.subject, &sb.sort.subject),
                        };
                        let o = if *reverse { o.reverse() } else { o };
                        if o != std::cmp::Ordering::Equal {
                            return o;
                        }
                    }
                    // RFC 5256: ties go by sequence number.
                    a.0.cmp(&b.0)
                });
                list("SORT", &hits, &mut r);
            }
        }
        self.send_str(&r);
    }

    /// Answers `Event::Mailbox`.
    pub fn answer_mailbox(&mut self, answer: MailboxAnswer) {
        let Phase::Wait(p) = std::mem::replace(&mut self.phase, Phase::Ready) else {
            return;
        };
        if matches!(p, Pending::Login { .. }) {
            self.phase = Phase::Wait(p);
            return;
        }
        if let MailboxAnswer::No { code, text } = &answer {
            let tag = pending_tag(&p);
            let code = code.map(|c| format!("[{c}] ")).unwrap_or_default();
            self.send_str(&format!("{tag} NO {code}{text}\r\n"));
            return self.process();
        }
        match (p, answer) {
            (
                Pending::Select {
                    tag,
                    name,
                    read_only,
                },
                MailboxAnswer::View(view),
            ) => {
                let mut flags: Vec<String> = SYSTEM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
                flags.extend(view.keywords.iter().cloned());
                let mut r = format!("* FLAGS {}\r\n", Self::flags_list(&flags));
                let perm = if read_only {
                    "()".to_owned()
                } else {
                    format!("({} \\*)", flags.join(" "))
                };
                let _ = write!(
                    r,
                    "* OK [PERMANENTFLAGS {perm}] Flags permitted\r\n* {} EXISTS\r\n",
                    view.messages.len()
                );
                // IMAP4rev2 has neither RECENT nor the UNSEEN code (RFC 9051 6.3.2).
                if !self.rev2 {
                    r.push_str("* 0 RECENT\r\n");
                }
                if let (false, Some(i)) = (
                    self.rev2,
                    view.messages
                        .iter()
                        .position(|m| !m.flags.iter().any(|f| f == "\\Seen")),
                ) {
                    let _ = write!(r, "* OK [UNSEEN {}] First unseen\r\n", i + 1);
                }
                let _ = write!(
                    r,
                    "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n\
                     * OK [HIGHESTMODSEQ {}] Highest\r\n",
                    view.uid_validity, view.uid_next, view.highest_modseq
                );
                if self.rev2 {
                    // RFC 9051 6.3.2: IMAP4rev2 requires a LIST for the name.
                    let _ = writeln!(
                        r,
                        "* LIST ({}) \"/\" {}\r",
                        view.attributes.join(" "),
                        quote(&self.shown(&name))
                    );
                }
                let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
                let verb = if read_only { "EXAMINE" } else { "SELECT" };
                let _ = write!(r, "{tag} OK [{mode}] {verb} completed\r\n");
                self.send_str(&r);
                if let Some(user) = self.user().map(str::to_owned) {
                    self.state = State::Selected(
                        user,
                        Selected {
                            name,
                            read_only,
                            view,
                        },
                    );
                }
            }
            (Pending::Simple { tag, what }, _) => {
                self.send_str(&format!("{tag} OK {what} completed\r\n"))
            }
            (
                Pending::List {
                    tag,
                    lsub,
                    sub_attr,
                    special_only,
                    status,
                    recursive,
                    filter,
                },
                MailboxAnswer::List(entries),
            ) => {
                let kw = if lsub { "LSUB" } else { "LIST" };
                let subscribed =
                    |e: &super::event::ListEntry| e.attributes.iter().any(|a| a == "\\Subscribed");
                let mut r = String::new();
                for e in &entries {
                    if let Some(f) = &filter {
                        let shown = self.shown(&e.name);
                        if !f.iter().any(|p| wildcard(p, &shown)) {
                            continue;
                        }
                    }
                    let mut childinfo = "";
                    if let Some(patterns) = &recursive {
                        if !patterns.iter().any(|p| wildcard(p, &self.shown(&e.name))) {
                            continue;
                        }
                        let prefix = format!("{}/", e.name);
                        let child = entries.iter().any(|c| {
                            c.name.starts_with(&prefix)
                                && subscribed(c)
                                && !patterns.iter().any(|p| wildcard(p, &self.shown(&c.name)))
                        });
                        if child {
                            childinfo = " (\"CHILDINFO\" (\"SUBSCRIBED\"))";
                        } else if !subscribed(e) {
                            continue;
                        }
                    }
                    if special_only && !e.attributes.iter().any(|a| is_special_use(a)) {
                        continue;
                    }
                    let attrs: Vec<&str> = e
                        .attributes
                        .iter()
                        .map(String::as_str)
                        .filter(|a| sub_attr || !a.eq_ignore_ascii_case("\\Subscribed"))
                        // RFC 3501 6.3.9: LSUB marks a vanished mailbox \Noselect.
                        .map(|a| {
                            if lsub && a == "\\NonExistent" {
                                "\\Noselect"
                            } else {
                                a
                            }
                        })
                        .collect();
                    let _ = write!(
                        r,
                        "* {kw} ({}) \"/\" {}{childinfo}\r\n",
                        attrs.join(" "),
                        quote(&self.shown(&e.name))
                    );
                    if let (Some(items), Some(counts)) = (&status, &e.status) {
                        let _ = write!(
                            r,
                            "* STATUS {} ({})\r\n",
                            quote(&self.shown(&e.name)),
                            status_parts(items, counts)
                        );
                    }
                }
                let _ = write!(r, "{tag} OK {kw} completed\r\n");
                self.send_str(&r);
            }
            (Pending::Status { tag, name, items }, MailboxAnswer::Status(s)) => {
                self.send_str(&format!(
                    "* STATUS {} ({})\r\n{tag} OK STATUS completed\r\n",
                    quote(&self.shown(&name)),
                    status_parts(&items, &s)
                ));
            }
            (Pending::Quota { tag, root_of }, MailboxAnswer::Quota { used, limit }) => {
                let mut r = String::new();
                if let Some(name) = &root_of {
                    let _ = write!(r, "* QUOTAROOT {}", quote(&self.shown(name)));
                    if limit.is_some() {
                        r.push_str(" \"\"");
                    }
                    r.push_str("\r\n");
                }
                match limit {
                    Some(l) => {
                        // RFC 9208: STORAGE in units of 1024 octets.
                        let _ = write!(
                            r,
                            "* QUOTA \"\" (STORAGE {} {})\r\n",
                            used.div_ceil(1024),
                            l / 1024
                        );
                    }
                    None if root_of.is_none() => {
                        return self
                            .send_str(&format!("{tag} NO [NONEXISTENT] No such quota root\r\n"));
                    }
                    None => {}
                }
                let what = if root_of.is_some() {
                    "GETQUOTAROOT"
                } else {
                    "GETQUOTA"
                };
                let _ = write!(r, "{tag} OK {what} completed\r\n");
                self.send_str(&r);
            }
            (
                Pending::Fetch {
                    tag,
                    uid,
                    items,
                    targets,
                    rest,
                    ..
                },
                MailboxAnswer::Bodies(bodies),
            ) => {
                // A non-PEEK body fetch sets \Seen (RFC 9051 6.4.5).
                let marks: Vec<u32> = if items.iter().any(|i| {
                    matches!(
                        i,
                        Item::Body { peek: false, .. } | Item::Binary { peek: false, .. }
                    )
                }) && !self.read_only()
                {
                    targets
                        .iter()
                        .map(|(_, u)| *u)
                        .filter(|u| {
                            self.meta(*u)
                                .is_some_and(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                match (
                    marks.is_empty(),
                    self.user().map(str::to_owned),
                    self.selected().map(str::to_owned),
                ) {
                    (false, Some(user), Some(mailbox)) => {
                        let mut items = items;
                        if !items.contains(&Item::Flags) {
                            items.push(Item::Flags);
                        }
                        if self.condstore && !items.contains(&Item::Modseq) {
                            items.push(Item::Modseq);
                        }
                        self.ask(
                            user,
                            MailboxRequest::Store {
                                mailbox,
                                uids: marks,
                                mode: StoreMode::Add,
                                flags: vec!["\\Seen".into()],
                                unchanged_since: None,
                            },
                            Pending::Fetch {
                                tag,
                                uid,
                                items,
                                targets,
                                data: FetchData {
                                    bodies: Some(bodies),
                                    summaries: None,
                                },
                                rest,
                            },
                        );
                        return;
                    }
                    _ => {
                        let data = FetchData {
                            bodies: Some(bodies),
                            summaries: None,
                        };
                        self.finish_fetch(tag, uid, items, targets, data, rest)
                    }
                }
            }
            (
                Pending::Fetch {
                    tag,
                    uid,
                    items,
                    targets,
                    rest,
                    ..
                },
                MailboxAnswer::Summaries(summaries),
            ) => {
                let data = FetchData {
                    bodies: None,
                    summaries: Some(summaries),
                };
                self.finish_fetch(tag, uid, items, targets, data, rest)
            }
            (
                Pending::Fetch {
                    tag,
                    uid,
                    items,
                    targets,
                    data,
                    rest,
                },
                MailboxAnswer::Flags { changed, .. },
            ) => {
                self.apply_flags(&changed);
                self.finish_fetch(tag, uid, items, targets, data, rest);
            }
            (
                Pending::Search {
                    tag,
                    uid,
                    key,
                    form,
                    hits: None,
                    scan: Some(scan),
                },
                MailboxAnswer::Bodies(bodies),
            ) => match self.user().map(str::to_owned) {
                Some(user) => self.search_hits(user, tag, uid, key, form, Some(scan), &bodies),
                None => self.send_str(&format!("{tag} BAD Not logged in\r\n")),
            },
            (
                Pending::Search {
                    tag,
                    uid,
                    key,
                    form,
                    hits: Some(hits),
                    ..
                },
                MailboxAnswer::Summaries(summaries),
            ) => self.finish_search(&tag, uid, &key, &form, hits, &summaries),
            (
                Pending::Store {
                    tag,
                    uid,
                    silent,
                    conditional,
                },
                MailboxAnswer::Flags { changed, modified },
            ) => {
                let before: std::collections::HashMap<u32, u64> = changed
                    .iter()
                    .filter_map(|c| self.meta(c.uid).map(|m| (c.uid, m.modseq)))
                    .collect();
                self.apply_flags(&changed);
                let mut r = String::new();
                for c in &changed {
                    let Some(seq) = self.seq_of(c.uid) else {
                        continue;
                    };
                    let uid_part = if uid {
                        format!(" UID {}", c.uid)
                    } else {
                        String::new()
                    };
                    let modseq = if self.condstore {
                        format!(" MODSEQ ({})", c.modseq)
                    } else {
                        String::new()
                    };
                    if !silent {
                        let _ = write!(
                            r,
                            "* {seq} FETCH (FLAGS {}{uid_part}{modseq})\r\n",
                            Self::flags_list(&c.flags)
                        );
                    } else if self.condstore
                        && (conditional || before.get(&c.uid) != Some(&c.modseq))
                    {
                        // RFC 7162 3.1.3: .SILENT still reports the MODSEQ
                        // of what changed, and of all a conditional STORE passed.
                        let _ = write!(
                            r,
                            "* {seq} FETCH ({}{})\r\n",
                            uid_part.trim_start().to_owned() + if uid { " " } else { "" },
                            modseq.trim_start()
                        );
                    }
                }
                if modified.is_empty() {
                    let _ = write!(r, "{tag} OK STORE completed\r\n");
                } else {
                    let nums: Vec<u32> = modified
                        .iter()
                        .filter_map(|u| {
                            if uid {
                                Some(*u)
                            } else {
                                self.seq_of(*u).and_then(|s| u32::try_from(s).ok())
                            }
                        })
                        .collect();
                    let _ = write!(
                        r,
                        "{tag} OK [MODIFIED {}] Conditional STORE failed\r\n",
                        SeqSet::compact(&nums)
                    );
                }
                self.send_str(&r);
            }
            (Pending::Expunge { tag, closing }, MailboxAnswer::Expunged(uids)) => {
                let lines = self.remove_uids(&uids);
                if closing {
                    if let Some(user) = self.user().map(str::to_owned) {
                        self.state = State::Authenticated(user);
                    }
                    self.send_str(&format!("{tag} OK CLOSE completed\r\n"));
                } else {
                    self.send_str(&format!("{lines}{tag} OK EXPUNGE completed\r\n"));
                }
            }
            (
                Pending::Append { tag, target },
                MailboxAnswer::Uids {
                    uid_validity, to, ..
                },
            ) => {
                let uid = to.first().copied().unwrap_or(0);
                let code = format!("APPENDUID {uid_validity} {uid}");
                if self.selected() == Some(target.as_str()) {
                    // RFC 9051 6.3.12: tell at once about the new message.
                    return self.resync(tag, "APPEND", code);
                }
                self.send_str(&format!("{tag} OK [{code}] APPEND completed\r\n"));
            }
            (
                Pending::Copy { tag, moving },
                MailboxAnswer::Uids {
                    uid_validity,
                    from,
                    to,
                },
            ) => {
                let set = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
                let code = format!("COPYUID {uid_validity} {} {}", set(&from), set(&to));
                if moving {
                    let lines = self.remove_uids(&from);
                    self.send_str(&format!(
                        "* OK [{code}] Moved\r\n{lines}{tag} OK MOVE completed\r\n"
                    ));
                } else if self.copy_target.take().as_deref() == self.selected() {
                    return self.resync(tag, "COPY", code);
                } else {
                    self.send_str(&format!("{tag} OK [{code}] COPY completed\r\n"));
                }
            }
            (Pending::Poll { tag, what, code }, MailboxAnswer::Changed(view)) => {
                let lines = self.sync_view(view);
                if what == "IDLE-CONTINUE" {
                    self.send_str(&lines);
                    self.phase = Phase::Idle { tag };
                } else {
                    let code = code.map(|c| format!("[{c}] ")).unwrap_or_default();
                    self.send_str(&format!("{lines}{tag} OK {code}{what} completed\r\n"));
                }
            }
            (p, _) => {
                let tag = pending_tag(&p);
                self.send_str(&format!(
                    "{tag} NO [SERVERBUG] Unexpected answer from the store\r\n"
                ));
            }
        }
        self.process();
    }

    /// Asks for the selected mailbox's state, then finishes `what` with
    /// the changes and `code` (after APPEND or COPY into it).
    fn resync(&mut self, tag: String, what: &'static str, code: String) {
        let (Some(user), Some(mailbox)) = (
            self.user().map(str::to_owned),
            self.selected().map(str::to_owned),
        ) else {
            return self.send_str(&format!("{tag} OK [{code}] {what} completed\r\n"));
        };
        self.ask(
            user,
            MailboxRequest::Poll { mailbox },
            Pending::Poll {
                tag,
                what,
                code: Some(code),
            },
        );
    }

    fn read_only(&self) -> bool {
        matches!(&self.state, State::Selected(_, s) if s.read_only)
    }

    fn seq_of(&self, uid: u32) -> Option<usize> {
        self.index_of(uid).map(|i| i + 1)
    }

    fn apply_flags(&mut self, changed: &[Stored]) {
        if let State::Selected(_, s) = &mut self.state {
            let messages = Arc::make_mut(&mut s.view.messages);
            for c in changed {
                if let Ok(i) = messages.binary_search_by_key(&c.uid, |m| m.uid) {
                    messages[i].flags = c.flags.clone();
                    messages[i].modseq = c.modseq;
                    s.view.highest_modseq = s.view.highest_modseq.max(c.modseq);
                }
            }
        }
    }

    /// Removes UIDs from the view; returns the EXPUNGE lines (highest
    /// sequence number first, so each stays right).
    fn remove_uids(&mut self, uids: &[u32]) -> String {
        let mut lines = String::new();
        if let State::Selected(_, s) = &mut self.state {
            let mut seqs: Vec<usize> = uids
                .iter()
                .filter_map(|u| s.view.messages.binary_search_by_key(u, |m| m.uid).ok())
                .collect();
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            seqs.dedup();
            if !seqs.is_empty() {
                let messages = Arc::make_mut(&mut s.view.messages);
                for i in seqs {
                    messages.remove(i);
                    let _ = write!(lines, "* {} EXPUNGE\r\n", i + 1);
                }
            }
        }
        lines
    }

    /// Brings the view up to date; returns EXPUNGE, EXISTS and FETCH lines.
    fn sync_view(&mut self, new: MailboxView) -> String {
        let gone: Vec<u32> = match self.view() {
            Some(v) => v
                .messages
                .iter()
                .map(|m| m.uid)
                .filter(|u| new.messages.binary_search_by_key(u, |n| n.uid).is_err())
                .collect(),
            None => return String::new(),
        };
        let mut lines = self.remove_uids(&gone);
        let condstore = self.condstore;
        if let State::Selected(_, s) = &mut self.state {
            let old_max = s.view.messages.last().map_or(0, |m| m.uid);
            let same = Arc::ptr_eq(&s.view.messages, &new.messages);
            if same || *s.view.messages == *new.messages {
                // Nothing changed: keep sharing the store's copy.
                s.view.messages = new.messages.clone();
            } else {
                let messages = Arc::make_mut(&mut s.view.messages);
                for (i, m) in messages.iter_mut().enumerate() {
                    if let Ok(k) = new.messages.binary_search_by_key(&m.uid, |n| n.uid) {
                        let n = &new.messages[k];
                        if n.flags != m.flags || (condstore && n.modseq != m.modseq) {
                            m.flags = n.flags.clone();
                            m.modseq = n.modseq;
                            let modseq = if condstore {
                                format!(" MODSEQ ({})", m.modseq)
                            } else {
                                String::new()
                            };
                            let _ = write!(
                                lines,
                                "* {} FETCH (FLAGS {}{modseq})\r\n",
                                i + 1,
                                Self::flags_list(&m.flags)
                            );
                        }
                    }
                }
                let before = messages.len();
                messages.extend(new.messages.iter().filter(|n| n.uid > old_max).cloned());
                if messages.len() != before {
                    let _ = write!(lines, "* {} EXISTS\r\n", messages.len());
                }
            }
            s.view.uid_next = new.uid_next;
            s.view.highest_modseq = new.highest_modseq;
        }
        lines
    }
}

fn pending_tag(p: &Pending) -> &str {
    match p {
        Pending::Login { tag, .. }
        | Pending::Select { tag, .. }
        | Pending::Simple { tag, .. }
        | Pending::List { tag, .. }
        | Pending::Status { tag, .. }
        | Pending::Fetch { tag, .. }
        | Pending::Search { tag, .. }
        | Pending::Quota { tag, .. }
        | Pending::Store { tag, .. }
        | Pending::Expunge { tag, .. }
        | Pending::Append { tag, .. }
        | Pending::Copy { tag, .. }
        | Pending::Poll { tag, .. } => tag,
    }
}

/// `<offset.length>` of some bytes (clamped to what there is).
fn cut(mut bytes: Vec<u8>, partial: Option<(u64, u64)>) -> Vec<u8> {
    if let Some((o, l)) = partial {
        let o = usize::try_from(o).unwrap_or(usize::MAX).min(bytes.len());
        let end = o
            .saturating_add(usize::try_from(l).unwrap_or(usize::MAX))
            .min(bytes.len());
        bytes.truncate(end);
        bytes.drain(..o);
    }
    bytes
}

/// `LABEL {n}` CRLF and the bytes (`~{n}` with `tilde`).
fn literal(label: &str, tilde: &str, bytes: &[u8]) -> Vec<u8> {
    let mut p = format!("{label} {tilde}{{{}}}\r\n", bytes.len()).into_bytes();
    p.extend_from_slice(bytes);
    p
}

/// A mailbox's LIST attributes among the account's `names`: children,
/// subscription, special use (RFC 6154), as both stores give them.
pub fn list_attributes<'a>(
    mut names: impl Iterator<Item = &'a String>,
    n: &str,
    subscribed: bool,
) -> Vec<String> {
    let prefix = format!("{n}/");
    let children = names.any(|c| c.starts_with(&prefix));
    let mut attributes = vec![if children {
        "\\HasChildren"
    } else {
        "\\HasNoChildren"
    }
    .to_owned()];
    if subscribed {
        attributes.push("\\Subscribed".into());
    }
    if let Some(su) = special_use(n) {
        attributes.push(su.into());
    }
    attributes
}

/// The special use of the folders docker-mailserver and common clients
/// create (RFC 6154).
pub fn special_use(name: &str) -> Option<&'static str> {
    match name {
        "Drafts" => Some("\\Drafts"),
        "Sent" | "Sent Messages" | "Sent Items" => Some("\\Sent"),
        "Junk" | "Spam" => Some("\\Junk"),
        "Trash" | "Deleted Messages" => Some("\\Trash"),
        "Archive" => Some("\\Archive"),
        _ => None,
    }
}

/// The STATUS items understood (RFC 9051 6.3.11, RFC 8438 SIZE, RFC 7162).
const STATUS_ITEMS: &[&str] = &[
    "MESSAGES",
    "UNSEEN",
    "UIDNEXT",
    "UIDVALIDITY",
    "RECENT",
    "SIZE",
    "HIGHESTMODSEQ",
    "DELETED",
    "DELETED-STORAGE",
];

/// `MESSAGES 3 UNSEEN 1`... for the items asked, in their order.
fn status_parts(items: &[String], s: &StatusCounts) -> String {
    let mut parts = Vec::new();
    for i in items {
        let v = match i.as_str() {
            "MESSAGES" => u64::from(s.messages),
            "UNSEEN" => u64::from(s.unseen),
            "UIDNEXT" => u64::from(s.uid_next),
            "UIDVALIDITY" => u64::from(s.uid_validity),
            "RECENT" => u64::from(s.recent),
            "SIZE" => s.size,
            "HIGHESTMODSEQ" => s.highest_modseq,
            "DELETED" => u64::from(s.deleted),
            "DELETED-STORAGE" => s.deleted_storage,
            _ => continue,
        };
        parts.push(format!("{i} {v}"));
    }
    parts.join(" ")
}

fn is_special_use(attr: &str) -> bool {
    [
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
    ]
    .iter()
    .any(|s| s.eq_ignore_ascii_case(attr))
}

/// Compares two strings as `i;unicode-casemap` does (RFC 5051), near
/// enough: character by character, upper-cased.
fn casemap(a: &str, b: &str) -> std::cmp::Ordering {
    a.chars()
        .flat_map(char::to_uppercase)
        .cmp(b.chars().flat_map(char::to_uppercase))
}

/// SORT criteria (RFC 5256): `REVERSE` applies to the next key.
fn parse_sort(crit: &[Value<'_>]) -> Option<Vec<(SortBy, bool)>> {
    let mut out = Vec::new();
    let mut reverse = false;
    for c in crit {
        let Value::Atom(a) = c else { return None };
        let by = match a.to_ascii_uppercase().as_str() {
            "REVERSE" if !reverse => {
                reverse = true;
                continue;
            }
            "ARRIVAL" => SortBy::Arrival,
            "CC" => SortBy::Cc,
            "DATE" => SortBy::Date,
            "FROM" => SortBy::From,
            "SIZE" => SortBy::Size,
            "SUBJECT" => SortBy::Subject,
            "TO" => SortBy::To,
            _ => return None,
        };
        out.push((by, reverse));
        reverse = false;
    }
    (!out.is_empty() && !reverse).then_some(out)
}

/// Whether every flag may be set by a client: the system flags but
/// `\Recent`, and keywords (RFC 9051 2.3.2).
fn valid_flags(flags: &[String]) -> bool {
    flags.iter().all(|f| {
        if f.starts_with('\\') {
            SYSTEM_FLAGS.iter().any(|s| s.eq_ignore_ascii_case(f))
        } else {
            !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_account() {
        for bad in [
            "../x", "/etc", "~root", "a/../b", ".hidden", "a//b", "x\\y", "",
        ] {
            assert!(!safe_mailbox_name(bad), "{bad}");
        }
        for good in ["INBOX", "Sent", "Archive/2026", "Ünïcode"] {
            assert!(safe_mailbox_name(good), "{good}");
        }
    }
}
