//! What the SMTP session asks of, and tells, the runtime.
//!
//! A question (`Connect`, `Auth`, `MailFrom`, `RcptTo`, `Message`) stops
//! the session in a named waiting state until the runtime calls the
//! matching `answer_*` method; a `Notice` is a fact to log.

use super::address::Address;
use super::reply::Reply;
use crate::policy::admission::Refusal;
use crate::policy::delivery::MessageRefusal;
use crate::policy::recipient::RcptVerdict;
use crate::policy::sender::MailVerdict;
use crate::proxy::{ClientAddress, ProxyError};
use crate::secret::Secret;
use std::time::Duration;

/// The SMTP session's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTimer {
    /// Waiting for a command (`smtpd_timeout`).
    Command,
    /// Waiting for message data inside DATA or BDAT.
    Data,
    /// The greet pause: the final greeting line is due.
    Greet,
}

/// An event from the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The client address is known (after the PROXY gate): may it go on?
    /// Answer with [`super::SmtpSession::answer_connect`].
    Connect(ClientAddress),
    /// Check these credentials. Answer with `answer_auth`.
    Auth(AuthRequest),
    /// May this sender start a transaction? Answer with `answer_mail`.
    MailFrom(MailRequest),
    /// Where does this recipient go? Answer with `answer_rcpt`.
    RcptTo(RcptRequest),
    /// Store this message durably. Answer with `answer_message` only once
    /// it is on disk (fsync'd).
    Message(Box<Message>),
    /// A fact for the log.
    Notice(Notice),
}

/// AUTH credentials to check.
#[derive(Debug, PartialEq, Eq)]
pub struct AuthRequest {
    /// `PLAIN` or `LOGIN`.
    pub mechanism: &'static str,
    /// The login name.
    pub username: String,
    /// The password, redacted in `Debug`.
    pub password: Secret<String>,
}

/// A MAIL FROM to check (sender policy, ownership on submission, SPF).
#[derive(Debug, PartialEq, Eq)]
pub struct MailRequest {
    /// The reverse path; `None` is the null sender `<>`.
    pub from: Option<Address>,
    /// The authenticated user, if any.
    pub authenticated: Option<String>,
}

/// A recipient to look up.
#[derive(Debug, PartialEq, Eq)]
pub struct RcptRequest {
    /// The final address (routing in the path already followed).
    pub to: Address,
    /// Whether the client routed (source route, `%`, `!`, quoted `@`).
    pub rerouted: bool,
    /// The authenticated user, if any.
    pub authenticated: Option<String>,
}

/// The runtime's answer to [`Event::Connect`]: the admission verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectAnswer {
    /// Greet the client.
    Accept,
    /// Refused by the admission policy: `421 4.7.0` (unless under
    /// implicit TLS) and close.
    Refuse(Refusal),
}

/// The runtime's answer to [`Event::Auth`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthAnswer {
    /// Good credentials: the session is authenticated as `user`.
    Success {
        /// The canonical account name.
        user: String,
    },
    /// Bad credentials (`535 5.7.8`).
    Failure,
    /// The directory could not answer (`454 4.7.0`).
    TempFail,
}

/// The runtime's answer to [`Event::MailFrom`]: the sender verdict
/// ([`crate::policy::sender::mail_verdict`]).
pub type MailAnswer = MailVerdict;

/// The runtime's answer to [`Event::RcptTo`]: the recipient verdict
/// ([`crate::policy::recipient::rcpt_verdict`]). The session refuses a
/// remote recipient from an unauthenticated client whatever the answer.
pub type RcptAnswer = RcptVerdict;

/// The runtime's answer to [`Event::Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAnswer {
    /// Stored durably under this id.
    Stored {
        /// The queue or message id, shown in the 250 reply.
        id: String,
    },
    /// Not stored: the delivery verdict's reason.
    Refuse(MessageRefusal),
}

/// What a message body declares (RFC 6152 BODY=).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    /// No BODY parameter, or BODY=7BIT.
    SevenBit,
    /// BODY=8BITMIME.
    EightBitMime,
}

/// The TLS state the runtime reports after a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// Like `TLSv1.3`.
    pub version: String,
    /// Like `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// Everything known about a message besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path; `None` is `<>`.
    pub mail_from: Option<Address>,
    /// Accepted recipients, in order, without duplicates.
    pub rcpt_to: Vec<Recipient>,
    /// BODY= parameter.
    pub body: BodyType,
    /// Whether SMTPUTF8 was given.
    pub smtputf8: bool,
    /// The HELO/EHLO name.
    pub helo: String,
    /// Whether EHLO (not HELO) was used.
    pub esmtp: bool,
    /// The client and server addresses.
    pub client: ClientAddress,
    /// TLS, if active.
    pub tls: Option<TlsInfo>,
    /// The authenticated user, if any.
    pub authenticated: Option<String>,
}

impl Envelope {
    /// The protocol name for a Received header (RFC 3848: SMTP, ESMTP,
    /// ESMTPS, ESMTPA, ESMTPSA).
    pub fn protocol(&self) -> &'static str {
        match (self.esmtp, self.tls.is_some(), self.authenticated.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }
}

/// One accepted recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The final address.
    pub address: Address,
    /// Local delivery, or relay.
    pub local: bool,
}

/// A complete message to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Envelope.
    pub envelope: Envelope,
    /// The message as received, CRLF line ends, dot-unstuffed.
    pub data: Vec<u8>,
}

/// Facts worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The PROXY gate refused the connection.
    ProxyRefused(ProxyError),
    /// Bytes that came after STARTTLS in the same read were dropped (a
    /// command injection attempt, CVE-2011-0411 style).
    DiscardedAfterStartTls(usize),
    /// The hard error limit was reached.
    TooManyErrors,
    /// Too many failed AUTH attempts on this connection.
    TooManyAuthFailures,
    /// The client was idle too long: this timer fired.
    Timeout(SmtpTimer),
    /// The client sent more pipelined input than the session holds.
    InputOverflow,
    /// The client closed the connection; `during` names the state.
    LostConnection {
        /// `"DATA"`, `"BDAT"`, `"AUTH"`, or the last command's verb
        /// (`"CONNECT"` before any), as Postfix's `lost connection after`.
        during: &'static str,
    },
    /// postscreen's `PREGREET`: the client talked before the greeting was
    /// over.
    Pregreet {
        /// Bytes received before the final greeting line.
        bytes: usize,
        /// Time from the connection to the first of them.
        after: Duration,
        /// The first bytes (at most 100), as sent.
        text: Vec<u8>,
    },
    /// postscreen's `COMMAND PIPELINING`: a command came before the
    /// answer to the one before it, ahead of EHLO.
    Pipelining {
        /// The verb of the command that was followed too early.
        after: &'static str,
        /// The first bytes that followed it (at most 100).
        text: Vec<u8>,
    },
    /// postscreen's `NON-SMTP COMMAND`: an HTTP or CONNECT line, or one
    /// that does not start with a letter.
    NonSmtpCommand {
        /// The verb of the last command before it (`"CONNECT"` before any).
        after: &'static str,
        /// The line (at most 100 bytes).
        text: Vec<u8>,
    },
    /// postscreen's `BARE NEWLINE`: a command line ended by LF alone.
    BareNewline {
        /// The verb of the last command before it (`"CONNECT"` before any).
        after: &'static str,
    },
    /// postscreen's `HANGUP`: the client went away before EHLO/HELO.
    Hangup {
        /// Time from the connection.
        after: Duration,
        /// `"tests before SMTP handshake"` (during the greet pause) or
        /// `"tests after SMTP handshake"`.
        stage: &'static str,
    },
    /// AUTH failed for this user name.
    AuthFailed {
        /// The name given.
        username: String,
        /// `PLAIN` or `LOGIN`.
        mechanism: &'static str,
    },
    /// A message was refused at its end, with this reply.
    MessageRejected(Reply),
    /// The connection was refused with this reply.
    Refused(Reply),
    /// A sender was refused (Postfix logs it as
    /// `NOQUEUE: reject: MAIL from ...`).
    MailRejected(Reject),
    /// A recipient was refused (Postfix logs it as
    /// `NOQUEUE: reject: RCPT from ...`).
    RcptRejected(Reject),
}

/// A refused MAIL or RCPT with what Postfix's `NOQUEUE: reject:` line shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The reply sent.
    pub reply: Reply,
    /// The reverse path (`None` for `<>` or before MAIL).
    pub from: Option<Address>,
    /// The recipient refused (RCPT only).
    pub to: Option<Address>,
    /// The HELO/EHLO name, if given.
    pub helo: Option<String>,
    /// `"SMTP"` after HELO, `"ESMTP"` after EHLO.
    pub proto: &'static str,
}
