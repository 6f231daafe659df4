//! The SMTP server session: a sans-IO state machine (RFC 5321 with
//! PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, STARTTLS,
//! AUTH PLAIN/LOGIN and CHUNKING).
//!
//! # Driving a session
//!
//! The runtime owns the socket and the clock; the session owns the
//! protocol. One loop, written once here and followed by every runtime:
//!
//! ```text
//! let mut s = SmtpSession::new(config, listener, peer, local, now);
//! loop {
//!     // 1. drain every output, in order
//!     while let Some(out) = s.poll_output() {
//!         match out {
//!             Output::Send(bytes)        => write them,
//!             Output::StartTls { early } => handshake (feeding `early` first),
//!                                           then s.handle_tls_established(info),
//!             Output::Event(question)    => find the answer, call s.answer_*(..),
//!             Output::Event(Notice(n))   => log it,
//!             Output::Close              => flush and close; stop.
//!         }
//!     }
//!     // 2. wait for input or the timer
//!     select! {
//!         bytes = read()            => s.handle_input(now, &bytes) (or s.handle_eof()),
//!         _ = sleep_until(s.poll_timeout()) => s.handle_timeout(now),
//!     }
//! }
//! ```
//!
//! While a question is unanswered the session processes no input (it holds
//! what arrives, up to `max_pipelined`), so the runtime should answer
//! before reading more.

use super::address::{parse_path, split_path_arg, Address, Path, PathError};
use super::command::{self, Command, CommandError};
use super::config::{ListenerConfig, PostscreenAction, Role, SmtpConfig, TlsMode};
use super::data::{DataError, DataReceiver};
use super::event::{
    AuthAnswer, AuthRequest, BodyType, ConnectAnswer, Envelope, Event, MailAnswer, MailRequest,
    Message, Notice, RcptAnswer, RcptRequest, Recipient, Reject, SmtpTimer, StoreAnswer, TlsInfo,
};
use super::replies;
use super::reply::Reply;
use crate::front::{Front, Opening, Passed};
use crate::policy::delivery::MessageRefusal;
use crate::policy::recipient::{RcptRefusal, RcptVerdict};
use crate::proxy::{AddressSource, ClientAddress};
use crate::sasl::{self, SaslError};
use crate::timer::TimerTable;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

mod commands;
mod transaction;

/// What the session wants the runtime to do next.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Write these bytes to the client.
    Send(Vec<u8>),
    /// Start the TLS handshake now. `early` holds bytes already received
    /// that belong to the handshake (only after a PROXY header on an
    /// implicit-TLS listener); bytes pipelined after STARTTLS are never
    /// here: they were discarded.
    StartTls {
        /// Bytes to feed the TLS layer before reading the socket.
        early: Vec<u8>,
    },
    /// A question to answer or a fact to log.
    Event(Event),
    /// Flush what was sent and close the connection.
    Close,
}

/// Counters for the disconnect log line (Postfix style `ehlo=1 mail=1 ...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Commands received.
    pub commands: u32,
    /// Commands answered with an error.
    pub errors: u32,
    /// Messages accepted.
    pub messages: u32,
    /// Recipients accepted.
    pub recipients: u32,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the PROXY gate to decide.
    Proxy,
    /// Waiting for `answer_connect`.
    Connect,
    /// Waiting for `handle_tls_established`; `greet` after implicit TLS.
    Tls { greet: bool },
    /// Reading commands.
    Command,
    /// `334` sent for PLAIN, waiting for the response line.
    AuthPlain,
    /// LOGIN, waiting for the user name (`None`) or the password.
    AuthLogin { username: Option<String> },
    /// Inside DATA.
    Data(Box<DataReceiver>),
    /// Inside a BDAT chunk; `refuse` is the reply owed once it is consumed.
    Bdat {
        remaining: u64,
        last: bool,
        refuse: Option<Reply>,
    },
    /// A question is out.
    Wait(Pending),
    /// Done.
    Closed,
}

#[derive(Debug)]
enum Pending {
    Auth {
        mechanism: &'static str,
        username: String,
    },
    Mail(Transaction),
    Rcpt(Address),
    Store,
}

#[derive(Debug)]
struct Transaction {
    from: Option<Address>,
    body: BodyType,
    smtputf8: bool,
    declared_size: Option<u64>,
    rcpts: Vec<Recipient>,
    /// BDAT chunks so far (`None` until the first BDAT).
    chunks: Option<Vec<u8>>,
}

enum Flow {
    Continue,
    /// Drop the rest of the input (after STARTTLS).
    DiscardRest,
}

/// One SMTP server connection. See the module documentation for the loop
/// that drives it.
#[derive(Debug)]
pub struct SmtpSession {
    cfg: Arc<SmtpConfig>,
    listener: Arc<ListenerConfig>,
    front: Front,
    phase: Phase,
    inbuf: Vec<u8>,
    outputs: VecDeque<Output>,
    now: Instant,
    timers: TimerTable<SmtpTimer>,
    discarding_line: bool,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<TlsInfo>,
    auth_user: Option<String>,
    txn: Option<Transaction>,
    stats: Stats,
    auth_failures: u32,
    shutting_down: bool,
    /// When the connection was accepted.
    connected_at: Instant,
    /// Whether the postscreen checks apply to this client.
    screen: bool,
    /// While the greet pause runs: when the final greeting line is due.
    greet_until: Option<Instant>,
    /// Each postscreen violation is reported once per connection.
    seen_pregreet: bool,
    seen_pipelining: bool,
    seen_bare_newline: bool,
    /// The verb of the last command (`"CONNECT"` before any).
    last_verb: &'static str,
}

impl SmtpSession {
    /// A session for a connection from `peer` to `local` accepted at `now`.
    pub fn new(
        cfg: Arc<SmtpConfig>,
        listener: Arc<ListenerConfig>,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Self {
        let (front, opening) = Front::new(listener.proxy.clone(), listener.tls, peer, local, now);
        let mut s = Self {
            cfg,
            listener,
            front,
            phase: Phase::Proxy,
            inbuf: Vec::new(),
            outputs: VecDeque::new(),
            now,
            timers: TimerTable::default(),
            discarding_line: false,
            helo: None,
            esmtp: false,
            tls: None,
            auth_user: None,
            txn: None,
            stats: Stats::default(),
            auth_failures: 0,
            shutting_down: false,
            connected_at: now,
            screen: false,
            greet_until: None,
            seen_pregreet: false,
            seen_pipelining: false,
            seen_bare_newline: false,
            last_verb: "CONNECT",
        };
        s.arm();
        match opening {
            Opening::Refused(e) => {
                s.notice(Notice::ProxyRefused(e));
                s.close();
            }
            Opening::AwaitHeader => {}
            Opening::Ask(address) => {
                s.phase = Phase::Connect;
                s.push(Output::Event(Event::Connect(address)));
            }
        }
        s
    }

    // ----- getters -----

    /// The client and server addresses (the PROXY source once decoded).
    pub fn client(&self) -> ClientAddress {
        self.front.address()
    }

    /// The authenticated user, if any.
    pub fn authenticated(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// Whether TLS is active.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Counters for the disconnect log line.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether the session is closed (after `Output::Close`).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the session would process input now (no question pending).
    /// A runtime may stop reading while this is false.
    pub fn wants_input(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Wait(_) | Phase::Connect | Phase::Tls { .. } | Phase::Closed
        )
    }

    /// Bytes held inside the session (unprocessed input, a partial PROXY
    /// header, message data). Bounded by the limits.
    pub fn buffered_len(&self) -> usize {
        let data = match &self.phase {
            Phase::Data(rx) => rx.buffered_len(),
            _ => 0,
        };
        let chunks = self
            .txn
            .as_ref()
            .and_then(|t| t.chunks.as_ref())
            .map_or(0, Vec::len);
        self.inbuf.len() + self.front.buffered_len() + data + chunks
    }

    /// The most bytes [`Self::buffered_len`] may reach.
    pub fn buffer_limit(&self) -> usize {
        let l = &self.cfg.limits;
        let msg = usize::try_from(l.max_message_size).unwrap_or(usize::MAX);
        l.max_pipelined
            .saturating_add(l.max_line)
            .saturating_add(msg)
            .saturating_add(self.listener.proxy.max_header)
    }

    // ----- inputs -----

    /// Bytes from the client (already decrypted under TLS).
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.now = now;
        match self.phase {
            Phase::Closed => return,
            Phase::Tls { .. } => {
                // Plain bytes while the handshake should be running: never
                // process them as commands.
                self.notice(Notice::DiscardedAfterStartTls(bytes.len()));
                return;
            }
            _ => {}
        }
        let input = match self.front.input(bytes) {
            Passed::Hold => return,
            Passed::Refused(e) => {
                self.notice(Notice::ProxyRefused(e));
                self.close();
                return;
            }
            Passed::Known { address, mut rest } => {
                self.phase = Phase::Connect;
                self.push(Output::Event(Event::Connect(address)));
                self.inbuf.append(&mut rest);
                self.check_overflow();
                return;
            }
            Passed::Bytes(b) => b,
        };
        let input: &[u8] = &input;
        if self.greet_until.is_some() {
            self.pregreet(input);
            return;
        }
        self.arm();
        if self.inbuf.is_empty() {
            let n = self.run(input);
            if n < input.len() && !self.is_closed() {
                self.inbuf.extend_from_slice(&input[n..]);
            }
        } else {
            self.inbuf.extend_from_slice(input);
            self.resume();
        }
        self.check_overflow();
    }

    /// The client closed its side.
    pub fn handle_eof(&mut self) {
        if let Some(e) = self.front.eof() {
            self.notice(Notice::ProxyRefused(e));
            self.close();
            return;
        }
        let during = match self.phase {
            Phase::Closed => return,
            Phase::Data(_) => "DATA",
            Phase::Bdat { .. } => "BDAT",
            Phase::AuthPlain | Phase::AuthLogin { .. } => "AUTH",
            _ => self.last_verb,
        };
        if self.screen
            && self.cfg.postscreen.any()
            && self.helo.is_none()
            && self.tls.is_none()
            && matches!(self.phase, Phase::Command)
        {
            let stage = if self.greet_until.is_some() {
                "tests before SMTP handshake"
            } else {
                "tests after SMTP handshake"
            };
            let after = self.now.saturating_duration_since(self.connected_at);
            self.notice(Notice::Hangup { after, stage });
        } else {
            self.notice(Notice::LostConnection { during });
        }
        self.phase = Phase::Closed;
        self.push(Output::Close);
    }

    /// The TLS handshake the session asked for has completed.
    pub fn handle_tls_established(&mut self, info: TlsInfo) {
        let Phase::Tls { greet } = self.phase else {
            return;
        };
        // RFC 3207 4.2: forget everything learned before TLS.
        self.tls = Some(info);
        self.helo = None;
        self.esmtp = false;
        self.auth_user = None;
        self.txn = None;
        self.inbuf.clear();
        self.phase = Phase::Command;
        self.arm();
        if greet {
            self.greet();
        }
    }

    /// The clock moved on (at or after [`Self::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.front.timeout(now) {
            Passed::Hold | Passed::Known { .. } => {}
            Passed::Refused(e) => {
                self.notice(Notice::ProxyRefused(e));
                self.close();
                return;
            }
            Passed::Bytes(rest) => {
                // Held bytes that were not a header after all.
                self.inbuf.splice(0..0, rest.iter().copied());
                if !matches!(self.phase, Phase::Connect) {
                    self.resume();
                }
                return;
            }
        }
        if !self.timer_running() {
            return;
        }
        let Some(which) = self.timers.expired(now) else {
            return;
        };
        if which == SmtpTimer::Greet {
            self.greet_until = None;
            self.greet();
            self.arm();
            self.resume();
            return;
        }
        self.notice(Notice::Timeout(which));
        if matches!(self.phase, Phase::Proxy | Phase::Tls { .. }) {
            self.close();
        } else {
            let r = replies::timeout(&self.cfg.hostname);
            self.reply(&r);
            self.close();
        }
    }

    /// The server is shutting down. A session inside a message finishes it
    /// (the runtime gives it a deadline); any other is told
    /// `421 4.3.2` and closed, now or right after that message.
    pub fn handle_shutdown(&mut self) {
        self.shutting_down = true;
        match self.phase {
            Phase::Closed => {}
            Phase::Data(_) | Phase::Bdat { .. } | Phase::Wait(Pending::Store) => {}
            Phase::Proxy | Phase::Tls { .. } => self.close(),
            _ => self.shutdown_now(),
        }
    }

    /// Whether a message is being received or stored (shutdown waits for it).
    pub fn in_transaction(&self) -> bool {
        matches!(
            self.phase,
            Phase::Data(_) | Phase::Bdat { .. } | Phase::Wait(Pending::Store)
        )
    }

    fn shutdown_now(&mut self) {
        let r = replies::shutting_down(&self.cfg.hostname);
        self.reply(&r);
        self.close();
    }

    // ----- answers -----

    /// Answers [`Event::Connect`].
    pub fn answer_connect(&mut self, now: Instant, answer: ConnectAnswer) {
        if !matches!(self.phase, Phase::Connect) {
            return;
        }
        self.now = now;
        match answer {
            ConnectAnswer::Refuse(refusal) => {
                let reply = replies::connection_refused(&self.cfg.hostname, &refusal);
                // Under implicit TLS every byte belongs to the handshake:
                // close without a plain-text reply.
                if self.listener.tls != TlsMode::Implicit {
                    self.reply(&reply);
                }
                self.notice(Notice::Refused(reply));
                self.close();
            }
            ConnectAnswer::Accept => {
                if self.listener.tls == TlsMode::Implicit {
                    let early = std::mem::take(&mut self.inbuf);
                    self.phase = Phase::Tls { greet: true };
                    self.push(Output::StartTls { early });
                } else {
                    self.screen = self.screened();
                    self.phase = Phase::Command;
                    let pause = self.cfg.postscreen.greet_pause;
                    if self.screen && !pause.is_zero() {
                        let first =
                            replies::greeting_first_line(&self.cfg.hostname, &self.cfg.banner);
                        self.send(&first);
                        self.greet_until = Some(now + pause);
                        self.arm();
                        if !self.inbuf.is_empty() {
                            // Bytes that came before any greeting at all.
                            let early = std::mem::take(&mut self.inbuf);
                            self.pregreet(&early);
                        }
                        return;
                    }
                    self.greet();
                    self.arm();
                    self.resume();
                }
            }
        }
    }

    /// Answers [`Event::Auth`].
    pub fn answer_auth(&mut self, now: Instant, answer: AuthAnswer) {
        let Phase::Wait(Pending::Auth { .. }) = self.phase else {
            return;
        };
        self.now = now;
        let Phase::Wait(Pending::Auth {
            mechanism,
            username,
        }) = std::mem::replace(&mut self.phase, Phase::Command)
        else {
            return;
        };
        match answer {
            AuthAnswer::Success { user } => {
                self.auth_user = Some(user);
                self.reply(&replies::AUTH_OK);
            }
            AuthAnswer::Failure => {
                self.notice(Notice::AuthFailed {
                    username,
                    mechanism,
                });
                self.auth_failures += 1;
                self.reply(&replies::AUTH_FAILED);
                if self.auth_failures >= self.cfg.limits.max_auth_failures && !self.is_closed() {
                    self.notice(Notice::TooManyAuthFailures);
                    let r = replies::too_many_auth_failures(&self.cfg.hostname);
                    self.send_bytes_of(&r);
                    self.close();
                }
            }
            AuthAnswer::TempFail => {
                self.reply(&replies::AUTH_TEMPFAIL);
            }
        }
        self.after_answer();
    }

    /// Answers [`Event::MailFrom`].
    pub fn answer_mail(&mut self, now: Instant, answer: MailAnswer) {
        let Phase::Wait(Pending::Mail(_)) = self.phase else {
            return;
        };
        self.now = now;
        let Phase::Wait(Pending::Mail(txn)) = std::mem::replace(&mut self.phase, Phase::Command)
        else {
            return;
        };
        match answer {
            MailAnswer::Accept => {
                self.txn = Some(txn);
                self.reply(&replies::SENDER_OK);
            }
            MailAnswer::Refuse(refusal) => {
                let reply = replies::mail_refused(txn.from.as_ref(), &refusal);
                let reject = self.reject(reply.clone(), txn.from.clone(), None);
                self.notice(Notice::MailRejected(reject));
                self.reply(&reply);
            }
        }
        self.after_answer();
    }

    /// Answers [`Event::RcptTo`]. The relay decision is made here: a
    /// remote recipient is accepted only from an authenticated client.
    pub fn answer_rcpt(&mut self, now: Instant, answer: RcptAnswer) {
        let Phase::Wait(Pending::Rcpt(_)) = self.phase else {
            return;
        };
        let Phase::Wait(Pending::Rcpt(to)) = std::mem::replace(&mut self.phase, Phase::Command)
        else {
            return;
        };
        self.now = now;
        let verdict = match answer {
            RcptVerdict::Remote if self.auth_user.is_none() => {
                RcptVerdict::Refuse(RcptRefusal::RelayDenied)
            }
            other => other,
        };
        let local = match verdict {
            RcptVerdict::Local => Some(true),
            RcptVerdict::Remote => Some(false),
            RcptVerdict::Refuse(refusal) => {
                let reply = replies::rcpt_refused(&to, &refusal);
                let from = self.txn.as_ref().and_then(|t| t.from.clone());
                let reject = self.reject(reply.clone(), from, Some(to.clone()));
                self.notice(Notice::RcptRejected(reject));
                self.reply(&reply);
                None
            }
        };
        if let (Some(local), Some(txn)) = (local, self.txn.as_mut()) {
            if !txn.rcpts.iter().any(|r| r.address == to) {
                txn.rcpts.push(Recipient { address: to, local });
                self.stats.recipients += 1;
            }
            self.reply(&replies::RECIPIENT_OK);
        }
        self.after_answer();
    }

    /// Answers [`Event::Message`]. Call it with `Stored` only once the
    /// message is durable: the 250 goes out now.
    pub fn answer_message(&mut self, now: Instant, answer: StoreAnswer) {
        let Phase::Wait(Pending::Store) = self.phase else {
            return;
        };
        self.now = now;
        self.phase = Phase::Command;
        self.txn = None;
        match answer {
            StoreAnswer::Stored { id } => {
                self.stats.messages += 1;
                self.reply(&replies::queued(&id));
            }
            StoreAnswer::Refuse(refusal) => {
                let reply = replies::message_refused(&refusal);
                if !matches!(
                    refusal,
                    MessageRefusal::TempFail | MessageRefusal::MailboxFull
                ) {
                    self.notice(Notice::MessageRejected(reply.clone()));
                }
                self.reply(&reply);
            }
        }
        self.after_answer();
    }

    // ----- outputs -----

    /// The next thing for the runtime to do, in order.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let gate = self.front.poll_timeout();
        let own = if self.timer_running() {
            self.timers.next().map(|(at, _)| at)
        } else {
            None
        };
        match (gate, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- internals -----

    fn timer_running(&self) -> bool {
        !matches!(self.phase, Phase::Wait(_) | Phase::Connect | Phase::Closed)
    }

    fn arm(&mut self) {
        if let Some(at) = self.greet_until {
            self.timers.clear();
            self.timers.set(SmtpTimer::Greet, at);
            return;
        }
        let (which, t) = match self.phase {
            Phase::Data(_) | Phase::Bdat { .. } => (SmtpTimer::Data, self.cfg.limits.data_timeout),
            _ => (SmtpTimer::Command, self.cfg.limits.command_timeout),
        };
        self.timers.clear();
        self.timers.set(which, self.now + t);
    }

    fn after_answer(&mut self) {
        if self.is_closed() {
            return;
        }
        if self.shutting_down && !self.in_transaction() {
            return self.shutdown_now();
        }
        self.arm();
        self.resume();
    }

    fn check_overflow(&mut self) {
        if self.inbuf.len() > self.cfg.limits.max_pipelined + self.cfg.limits.max_line
            && !self.is_closed()
        {
            self.inbuf = Vec::new();
            self.notice(Notice::InputOverflow);
            let r = replies::too_much_pipelining(&self.cfg.hostname);
            self.reply(&r);
            self.close();
        }
    }

    /// Processes held input until it runs out or a question is asked.
    fn resume(&mut self) {
        if self.inbuf.is_empty() {
            return;
        }
        let mut buf = std::mem::take(&mut self.inbuf);
        let n = self.run(&buf);
        if matches!(self.phase, Phase::Tls { .. } | Phase::Closed) {
            // STARTTLS or close: whatever was held is gone.
            return;
        }
        buf.drain(..n);
        // Keep anything that arrived meanwhile (nothing, in a sans-IO call).
        buf.append(&mut self.inbuf);
        self.inbuf = buf;
    }

    /// Whether the postscreen checks apply: an MX listener, a client
    /// outside the allow list, and not a PROXY `LOCAL` health check.
    fn screened(&self) -> bool {
        let a = self.front.address();
        self.listener.role == Role::Mx
            && a.source != AddressSource::ProxyLocal
            && !self.cfg.postscreen.allow.contains(a.client.ip())
    }

    /// Bytes during the greet pause: a `PREGREET` talker. They are held
    /// (and answered after the greeting) unless the action drops the client.
    fn pregreet(&mut self, bytes: &[u8]) {
        if !self.seen_pregreet {
            self.seen_pregreet = true;
            let after = self.now.saturating_duration_since(self.connected_at);
            self.notice(Notice::Pregreet {
                bytes: bytes.len() + self.inbuf.len(),
                after,
                text: bytes[..bytes.len().min(100)].to_vec(),
            });
            if self.cfg.postscreen.greet_action == PostscreenAction::Drop {
                self.greet_until = None;
                self.reply(&replies::PROTOCOL_ERROR);
                self.close();
                return;
            }
        }
        self.inbuf.extend_from_slice(bytes);
        self.check_overflow();
    }

    /// What Postfix's `NOQUEUE: reject:` line shows besides the reply.
    fn reject(&self, reply: Reply, from: Option<Address>, to: Option<Address>) -> Reject {
        Reject {
            reply,
            from,
            to,
            helo: self.helo.clone(),
            proto: if self.esmtp { "ESMTP" } else { "SMTP" },
        }
    }

    /// Drops the client for a postscreen violation when `action` says so.
    /// Returns whether it did.
    fn screen_drop(&mut self, action: PostscreenAction) -> bool {
        if action != PostscreenAction::Drop {
            return false;
        }
        self.reply(&replies::BREAK_RULES);
        self.close();
        true
    }

    fn greet(&mut self) {
        let g = replies::greeting(&self.cfg.hostname, &self.cfg.banner);
        self.reply(&g);
    }

    fn stats_event(&mut self, e: Event) {
        self.push(Output::Event(e));
    }

    fn notice(&mut self, n: Notice) {
        self.push(Output::Event(Event::Notice(n)));
    }

    fn push(&mut self, o: Output) {
        self.outputs.push_back(o);
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Some(Output::Send(buf)) = self.outputs.back_mut() {
            buf.extend_from_slice(bytes);
        } else {
            self.outputs.push_back(Output::Send(bytes.to_vec()));
        }
    }

    /// Sends a reply; an error reply is counted, and the session closes
    /// at the hard error limit.
    fn reply(&mut self, reply: &Reply) {
        self.send_bytes_of(reply);
        if !reply.is_error() {
            return;
        }
        self.stats.errors += 1;
        if self.stats.errors >= self.cfg.limits.hard_error_limit && !self.is_closed() {
            self.notice(Notice::TooManyErrors);
            let r = replies::too_many_errors(&self.cfg.hostname);
            self.send_bytes_of(&r);
            self.close();
        }
    }

    fn send_bytes_of(&mut self, reply: &Reply) {
        let mut out = Vec::with_capacity(64);
        reply.write_to(&mut out);
        self.send(&out);
    }

    fn close(&mut self) {
        if !self.is_closed() {
            self.phase = Phase::Closed;
            self.inbuf = Vec::new();
            self.txn = None;
            self.push(Output::Close);
        }
    }
}
