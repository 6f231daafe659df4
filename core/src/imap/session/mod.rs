//! The IMAP server session: a sans-IO state machine driven exactly like
//! [`crate::smtp::SmtpSession`] (the loop is written there): bytes and time
//! in, outputs out, questions answered by the runtime. The session keeps
//! the client's view of the selected mailbox (UIDs in sequence order and
//! their flags); the store keeps the truth.
//!
//! This file holds the session's shape (getters, `handle_*` inputs,
//! `answer_*` answers, `poll_*` outputs). `dispatch` frames commands,
//! runs each in the state it is allowed in, and routes the store's
//! answers back. Each family of commands lives beside them: `auth`
//! (greeting, capabilities, STARTTLS, LOGIN, AUTHENTICATE, ENABLE),
//! `select` (SELECT and the view of the selected mailbox), `fetch`,
//! `store` (STORE, COPY/MOVE, EXPUNGE, APPEND), `search` (SEARCH,
//! ESEARCH, SORT) and `list` (LIST, STATUS, QUOTA, mailbox management).

mod auth;
mod dispatch;
mod fetch;
mod list;
mod search;
mod select;
mod store;

pub use list::{list_attributes, nonexistent_subscriptions, special_use, wildcard};
pub use select::safe_mailbox_name;

use self::fetch::FetchJob;
use self::list::ListQuery;
use self::search::Scan;
use self::select::{Seq, Uid};
use super::command::SearchForm;
use super::framing::{FrameLimits, Framer};
use super::response::{self, ResponseCode, Status};
use super::search::Key;
use crate::imap::event::{Code, Event, MailboxAnswer, MailboxRequest, MailboxView, Notice};
use crate::proxy::{ClientAddress, ProxyConfig, ProxyGate, ProxyStep};
use crate::smtp::TlsMode;
use std::collections::VecDeque;
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
    List(ListQuery),
    Status {
        tag: String,
        name: String,
        items: Vec<String>,
    },
    Fetch(FetchJob),
    Search {
        tag: String,
        uid: bool,
        key: Key,
        form: SearchForm,
        /// Hits found with message bytes, waiting for SORT's summaries.
        hits: Option<Vec<(Seq, Uid)>>,
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
        then: PollFor,
    },
}

/// What a fresh view of the selected mailbox is asked for.
#[derive(Debug)]
enum PollFor {
    /// IDLE: report the changes and go on idling.
    Idle,
    /// A command (NOOP, CHECK, APPEND or COPY into the selected mailbox):
    /// report the changes, then `tag OK [code] what completed`.
    Command {
        what: &'static str,
        code: Option<ResponseCode>,
    },
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
    saved: Vec<Uid>,
}

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
                self.bye("Autologout; idle for too long");
            }
            self.close();
        }
    }

    /// The client closed its side.
    ///
    /// Before the PROXY header is whole, this is the gate's refusal
    /// (`Missing`, or `Truncated` with the bytes it had), as for SMTP.
    pub fn handle_eof(&mut self) {
        if let Some(gate) = self.gate.as_mut() {
            if let ProxyStep::Refused(e) = gate.handle_eof() {
                self.gate = None;
                self.notice(Notice::ProxyRefused(e));
                return self.close();
            }
        }
        if !self.is_closed() {
            self.notice(Notice::LostConnection);
            self.phase = Phase::Closed;
            self.outputs.push_back(Output::Close);
        }
    }

    /// The server is shutting down: `* BYE` (once the client has been
    /// greeted or could be) and close. IMAP acknowledges nothing it has
    /// not already stored, so nothing is waited for.
    pub fn handle_shutdown(&mut self) {
        match self.phase {
            Phase::Closed => {}
            Phase::Proxy | Phase::Tls { .. } => self.close(),
            _ => {
                self.bye("Server shutting down");
                self.close();
            }
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
            self.bye("Too much pipelined input");
            return self.close();
        }
        self.process();
    }

    /// Answers `Event::Connect`; `now` is when the answer came.
    pub fn answer_connect(&mut self, now: Instant, answer: ConnectAnswer) {
        if !matches!(self.phase, Phase::Connect) {
            return;
        }
        self.answered(now);
        match answer {
            ConnectAnswer::Refuse(text) => {
                if self.listener.tls != TlsMode::Implicit {
                    self.bye(&text);
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

    /// Answers `Event::Login`; the idle timer starts again from `now`.
    pub fn answer_login(&mut self, now: Instant, answer: LoginAnswer) {
        let Phase::Wait(Pending::Login { .. }) = self.phase else {
            return;
        };
        self.answered(now);
        let Phase::Wait(Pending::Login { tag, username }) =
            std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            return;
        };
        match answer {
            LoginAnswer::Success(user) => {
                self.state = State::Authenticated(user);
                let caps = self.capabilities();
                self.reply(
                    &tag,
                    Status::Ok,
                    Some(ResponseCode::Capability(caps)),
                    "Logged in",
                );
            }
            LoginAnswer::Failure => {
                self.notice(Notice::LoginFailed { username });
                self.no(&tag, Code::AuthenticationFailed, "Authentication failed.");
            }
            LoginAnswer::TempFail => {
                self.no(&tag, Code::Unavailable, "Temporary authentication failure")
            }
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
                    then: PollFor::Idle,
                },
            );
        }
    }

    // ----- internals -----

    /// An answer came at `now`: the client's idle time starts again from
    /// it, so a slow store or directory never shortens the client's timeout.
    fn answered(&mut self, now: Instant) {
        self.now = now;
        self.arm();
    }

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

    /// `tag STATUS [code] text`.
    fn reply(&mut self, tag: &str, status: Status, code: Option<ResponseCode>, text: &str) {
        self.send_str(&response::tagged(tag, status, code.as_ref(), text));
    }

    /// `tag BAD text`: the command was not understood.
    fn bad(&mut self, tag: &str, text: &str) {
        self.reply(tag, Status::Bad, None, text);
    }

    /// `tag NO [code] text`: the command failed.
    fn no(&mut self, tag: &str, code: Code, text: &str) {
        self.reply(tag, Status::No, Some(code.into()), text);
    }

    /// `* BYE text`: the server is closing the connection.
    fn bye(&mut self, text: &str) {
        self.send_str(&response::untagged(Status::Bye, None, text));
    }

    /// `tag OK what completed`.
    fn completed(&mut self, tag: &str, what: &str) {
        self.reply(tag, Status::Ok, None, &format!("{what} completed"));
    }

    fn close(&mut self) {
        if !self.is_closed() {
            self.phase = Phase::Closed;
            self.inbuf = Vec::new();
            self.outputs.push_back(Output::Close);
        }
    }

    /// A mailbox name as the client reads it: UTF-8 under IMAP4rev2.
    fn shown(&self, name: &str) -> String {
        if self.rev2 {
            crate::imap::utf7::decode(name).unwrap_or_else(|| name.to_owned())
        } else {
            name.to_owned()
        }
    }

    fn ask(&mut self, user: String, request: MailboxRequest, pending: Pending) {
        self.outputs
            .push_back(Output::Event(Event::Mailbox { user, request }));
        self.phase = Phase::Wait(pending);
    }

    /// Answers `Event::Mailbox`; the idle timer starts again from `now`
    /// (but for the look IDLE takes on its own).
    pub fn answer_mailbox(&mut self, now: Instant, answer: MailboxAnswer) {
        let Phase::Wait(p) = std::mem::replace(&mut self.phase, Phase::Ready) else {
            return;
        };
        if matches!(p, Pending::Login { .. }) {
            self.phase = Phase::Wait(p);
            return;
        }
        if matches!(
            p,
            Pending::Poll {
                then: PollFor::Idle,
                ..
            }
        ) {
            // The server looked while the client idles: not client activity.
            self.now = now;
        } else {
            self.answered(now);
        }
        if let MailboxAnswer::No { code, text } = &answer {
            let tag = pending_tag(&p);
            let r = response::tagged(tag, Status::No, code.map(ResponseCode::from).as_ref(), text);
            self.send_str(&r);
            return self.process();
        }
        self.route_answer(p, answer);
        self.process();
    }
}

fn pending_tag(p: &Pending) -> &str {
    match p {
        Pending::Login { tag, .. }
        | Pending::Select { tag, .. }
        | Pending::Simple { tag, .. }
        | Pending::List(ListQuery { tag, .. })
        | Pending::Status { tag, .. }
        | Pending::Fetch(FetchJob { tag, .. })
        | Pending::Search { tag, .. }
        | Pending::Quota { tag, .. }
        | Pending::Store { tag, .. }
        | Pending::Expunge { tag, .. }
        | Pending::Append { tag, .. }
        | Pending::Copy { tag, .. }
        | Pending::Poll { tag, .. } => tag,
    }
}

#[cfg(test)]
mod tests;
