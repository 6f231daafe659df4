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
mod names;
mod qresync;
mod search;
mod select;
mod store;

pub use list::{list_attributes, nonexistent_subscriptions, special_use, wildcard};
pub use names::HierarchySeparator;
pub use select::safe_mailbox_name;

use self::fetch::FetchJob;
use self::list::ListQuery;
use self::search::Scan;
use self::select::{Seq, Uid};
use super::command::SearchForm;
use super::framing::{FrameLimits, Framer};
use super::response::{self, ResponseCode, Status};
use super::search::Key;
use crate::front::{Front, Opening, Passed};
pub use crate::imap::event::ImapTimer;
use crate::imap::event::{Code, Event, MailboxAnswer, MailboxRequest, MailboxView, Notice};
use crate::policy::admission::Refusal;
use crate::proxy::{ClientAddress, ProxyConfig};
use crate::smtp::TlsMode;
use crate::timer::TimerTable;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Server-wide IMAP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapConfig {
    /// Name in the greeting.
    pub hostname: String,
    /// Framing limits once logged in.
    pub limits: FrameLimits,
    /// Autologout of a logged-in client (RFC 9051 5.4: at least 30
    /// minutes of inactivity; Dovecot's imap process uses 30 minutes).
    pub idle_timeout: Duration,
    /// Unprocessed input held beyond the command being framed (Dovecot's
    /// `imap_max_line_length` bounds its input buffer the same way).
    pub max_pipelined: usize,
    /// How long a client may stay connected without logging in, counted
    /// from the connection (Dovecot's login process closes a client that has
    /// not logged in after 3 minutes: `CLIENT_LOGIN_TIMEOUT_MSECS` in
    /// `login-common/client-common.h`, not a setting there).
    pub login_timeout: Duration,
    /// The largest literal before login, for every command (Dovecot's
    /// imap-login reads a parameter into its small input buffer,
    /// `LOGIN_MAX_INBUF_SIZE`, SASL data into `LOGIN_MAX_AUTH_BUF_SIZE`,
    /// 8 KiB, and has no APPEND to take a large one). Neither is a
    /// setting in Dovecot; here it is.
    pub max_prelogin_literal: u64,
    /// The longest command line before login (Dovecot's imap-login: the
    /// same small buffers); it also bounds what may wait pipelined behind
    /// a LOGIN the directory has not answered yet.
    pub max_prelogin_line: usize,
    /// The hierarchy separator clients see (`[imap] hierarchy_separator`).
    pub hierarchy_separator: HierarchySeparator,
    /// How much MIME structure FETCH describes (`[imap] mime_max_parts`,
    /// `mime_max_depth`); the store's summaries must use the same.
    pub mime: crate::imap::limits::MimeLimits,
}

impl ImapConfig {
    /// Defaults for `hostname`.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            limits: FrameLimits::default(),
            idle_timeout: Duration::from_secs(30 * 60),
            max_pipelined: 256 * 1024,
            login_timeout: Duration::from_secs(3 * 60),
            max_prelogin_literal: 8 * 1024,
            max_prelogin_line: 8 * 1024,
            hierarchy_separator: HierarchySeparator::Slash,
            mime: crate::imap::limits::MimeLimits::default(),
        }
    }

    /// The framing limits before login: small literals and lines.
    pub fn prelogin_limits(&self) -> FrameLimits {
        FrameLimits {
            max_line: self.limits.max_line.min(self.max_prelogin_line),
            max_literal: self.limits.max_literal.min(self.max_prelogin_literal),
            max_append_literal: self.limits.max_literal.min(self.max_prelogin_literal),
            max_literals: self.limits.max_literals,
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
    /// LOGIN and AUTHENTICATE without TLS (no `LOGINDISABLED`): for a
    /// listener behind a TLS-terminating proxy or on a trusted network.
    pub allow_plaintext_auth: bool,
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
    /// `* BYE` (the session words it; nothing under implicit TLS) and close.
    Refuse(Refusal),
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
        qresync: Option<super::command::Qresync>,
    },
    /// SELECT (QRESYNC ...): the view came, the expunged UIDs are asked.
    SelectVanished(Box<self::qresync::SelectJob>),
    /// UID FETCH (CHANGEDSINCE m VANISHED): the expunged UIDs first.
    FetchVanished(Box<self::qresync::FetchVanishedJob>),
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
    Thread(self::search::ThreadJob),
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
    /// MOVE onto the selected mailbox, after its COPY: the originals are
    /// flagged `\Deleted` (the store answers Flags), then expunged by UID
    /// (it answers Expunged).
    MoveHere {
        tag: String,
        code: ResponseCode,
        from: Vec<u32>,
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
    /// FETCH, STORE, SEARCH, SORT or a UID command: report the changes
    /// (EXPUNGE only when `expunge`, RFC 9051 7.5.1), then run it.
    Run {
        body: Box<super::command::CommandBody>,
        expunge: bool,
    },
}

/// One IMAP connection.
#[derive(Debug)]
pub struct ImapSession {
    cfg: Arc<ImapConfig>,
    listener: Arc<ImapListener>,
    front: Front,
    phase: Phase,
    state: State,
    inbuf: Vec<u8>,
    framer: Framer,
    outputs: VecDeque<Output>,
    now: Instant,
    timers: TimerTable<ImapTimer>,
    tls: bool,
    /// Where the COPY under way copies to.
    copy_target: Option<String>,
    /// CONDSTORE is on (RFC 7162 3.1: ENABLE or a CONDSTORE-using command).
    condstore: bool,
    /// QRESYNC is on (RFC 7162 3.2.3: ENABLE QRESYNC): VANISHED instead
    /// of EXPUNGE, SELECT's QRESYNC parameter.
    qresync: bool,
    /// IMAP4rev2 is on (ENABLE IMAP4rev2): RFC 9051 responses.
    rev2: bool,
    /// SEARCHRES's `$` (RFC 5182): the UIDs the last SEARCH saved.
    saved: Vec<Uid>,
    /// The view was brought up to date for the command being run.
    synced: bool,
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
        let (front, opening) = Front::new(listener.proxy.clone(), listener.tls, peer, local, now);
        let mut timers = TimerTable::default();
        timers.set(ImapTimer::Login, now + cfg.login_timeout);
        let mut s = Self {
            cfg,
            listener,
            front,
            phase: Phase::Proxy,
            state: State::NotAuthenticated,
            inbuf: Vec::new(),
            framer: Framer::default(),
            outputs: VecDeque::new(),
            now,
            timers,
            tls: false,
            copy_target: None,
            condstore: false,
            qresync: false,
            rev2: false,
            saved: Vec::new(),
            synced: false,
        };
        match opening {
            Opening::Refused(e) => {
                s.notice(Notice::ProxyRefused(e));
                s.close();
            }
            Opening::AwaitHeader => {}
            Opening::Ask(address) => {
                s.phase = Phase::Connect;
                s.outputs.push_back(Output::Event(Event::Connect(address)));
            }
        }
        s
    }

    /// The client and server addresses.
    pub fn client(&self) -> ClientAddress {
        self.front.address()
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
        self.inbuf.len() + self.front.buffered_len()
    }

    /// The next output.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let gate = self.front.poll_timeout();
        let own = self.timer_running().then(|| self.timers.next()).flatten();
        match (gate, own.map(|(at, _)| at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The clock moved on (at or after [`Self::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.front.timeout(now) {
            Passed::Hold | Passed::Known { .. } => {}
            Passed::Refused(e) => {
                self.notice(Notice::ProxyRefused(e));
                return self.close();
            }
            Passed::Bytes(rest) => {
                // Held bytes that were not a header after all.
                self.inbuf.splice(0..0, rest.iter().copied());
                return self.process();
            }
        }
        if !self.timer_running() {
            return;
        }
        let Some(which) = self.timers.expired(now) else {
            return;
        };
        self.notice(Notice::Timeout(which));
        if !matches!(self.phase, Phase::Tls { .. } | Phase::Proxy) {
            match which {
                ImapTimer::Login => self.bye("Disconnected for inactivity during login"),
                ImapTimer::Idle | ImapTimer::Autologout => {
                    self.bye("Autologout; idle for too long")
                }
            }
        }
        self.close();
    }

    /// The client closed its side.
    ///
    /// Before the PROXY header is whole, this is the gate's refusal
    /// (`Missing`, or `Truncated` with the bytes it had), as for SMTP.
    pub fn handle_eof(&mut self) {
        if let Some(e) = self.front.eof() {
            self.notice(Notice::ProxyRefused(e));
            return self.close();
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
        match self.front.input(bytes) {
            Passed::Hold => return,
            Passed::Refused(e) => {
                self.notice(Notice::ProxyRefused(e));
                return self.close();
            }
            Passed::Known { address, rest } => {
                self.phase = Phase::Connect;
                self.outputs
                    .push_back(Output::Event(Event::Connect(address)));
                self.inbuf.extend_from_slice(&rest);
            }
            Passed::Bytes(b) => self.inbuf.extend_from_slice(&b),
        }
        self.arm();
        // Input held while a question is out is bounded as it comes; any
        // other read is first worked through, and what it leaves is bounded.
        if matches!(self.phase, Phase::Wait(_) | Phase::Connect) && self.overflowing() {
            return;
        }
        self.process();
        self.overflowing();
    }

    /// Answers `Event::Connect`; `now` is when the answer came.
    pub fn answer_connect(&mut self, now: Instant, answer: ConnectAnswer) {
        if !matches!(self.phase, Phase::Connect) {
            return;
        }
        self.answered(now);
        match answer {
            ConnectAnswer::Refuse(refusal) => {
                // Under implicit TLS every byte belongs to the handshake.
                if self.listener.tls != TlsMode::Implicit {
                    self.bye(&refused_text(&refusal));
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
                self.timers.stop(ImapTimer::Login);
                self.arm();
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
            let request = self.poll_request(mailbox);
            self.ask(
                user,
                request,
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

    /// Restarts the inactivity timer of a logged-in client (the login
    /// timer, counted from the connection, is never moved).
    fn arm(&mut self) {
        if self.user().is_none() {
            return;
        }
        let (which, other) = if matches!(self.phase, Phase::Idle { .. }) {
            (ImapTimer::Idle, ImapTimer::Autologout)
        } else {
            (ImapTimer::Autologout, ImapTimer::Idle)
        };
        self.timers.stop(other);
        self.timers.set(which, self.now + self.cfg.idle_timeout);
    }

    /// Whether the session's own timers run (not while the runtime answers).
    fn timer_running(&self) -> bool {
        !matches!(self.phase, Phase::Wait(_) | Phase::Connect | Phase::Closed)
    }

    /// The framing limits now: small ones until the client logs in.
    fn frame_limits(&self) -> super::framing::FrameLimits {
        if self.user().is_some() {
            self.cfg.limits.clone()
        } else {
            self.cfg.prelogin_limits()
        }
    }

    /// Ends the session when unprocessed input passes its bound: the
    /// command being framed (a line and a literal) plus `max_pipelined`.
    fn overflowing(&mut self) -> bool {
        if self.is_closed() {
            return true;
        }
        let l = self.frame_limits();
        let literal =
            usize::try_from(l.max_literal.max(l.max_append_literal)).unwrap_or(usize::MAX);
        let pipelined = if self.user().is_some() {
            self.cfg.max_pipelined
        } else {
            self.cfg.max_pipelined.min(self.cfg.max_prelogin_line)
        };
        let bound = pipelined.saturating_add(l.max_line).saturating_add(literal);
        if self.inbuf.len() <= bound {
            return false;
        }
        self.notice(Notice::ProtocolLimit("pipelined input"));
        self.bye("Too much pipelined input");
        self.close();
        true
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
        let name = self.cfg.hierarchy_separator.shown(name);
        if self.rev2 {
            crate::imap::utf7::decode(&name).unwrap_or(name)
        } else {
            name
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

/// The `* BYE` text of a refused connection.
fn refused_text(refusal: &Refusal) -> String {
    match refusal {
        Refusal::ServerFull => "Server is full".into(),
        Refusal::TooManyConnections { ip } | Refusal::ConnectionRate { ip } => {
            format!("Too many connections from {ip}")
        }
    }
}

fn pending_tag(p: &Pending) -> &str {
    match p {
        Pending::SelectVanished(job) => &job.tag,
        Pending::FetchVanished(job) => &job.tag,
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
        | Pending::MoveHere { tag, .. }
        | Pending::Thread(self::search::ThreadJob { tag, .. })
        | Pending::Poll { tag, .. } => tag,
    }
}

#[cfg(test)]
mod tests;
