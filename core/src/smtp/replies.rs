//! The SMTP reply catalogue: every reply the server session writes, in one
//! place, with Postfix's texts and RFC 3463 enhanced status codes. The
//! session and the policy verdicts name replies from here; nothing else
//! (and never the runtime) composes an SMTP reply.

use super::reply::Reply;
use super::Address;
use crate::policy::admission::Refusal;
use crate::policy::delivery::MessageRefusal;
use crate::policy::recipient::RcptRefusal;
use crate::policy::sender::MailRefusal;
use std::borrow::Cow;

const fn fixed(code: u16, status: &'static str, text: &'static str) -> Reply {
    Reply {
        code,
        status: Cow::Borrowed(status),
        text: Cow::Borrowed(text),
    }
}

/// `214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS AUTH`
pub const HELP: Reply = fixed(
    214,
    "2.0.0",
    "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS AUTH",
);

/// `220 2.0.0 Ready to start TLS`
pub const READY_FOR_TLS: Reply = fixed(220, "2.0.0", "Ready to start TLS");

/// `221 2.0.0 Bye`
pub const BYE: Reply = fixed(221, "2.0.0", "Bye");

/// `235 2.7.0 Authentication successful`
pub const AUTH_OK: Reply = fixed(235, "2.7.0", "Authentication successful");

/// `250 2.0.0 Ok`
pub const OK: Reply = fixed(250, "2.0.0", "Ok");

/// `250 2.1.5 Ok`
pub const RECIPIENT_OK: Reply = fixed(250, "2.1.5", "Ok");

/// `250 2.1.0 Ok`
pub const SENDER_OK: Reply = fixed(250, "2.1.0", "Ok");

/// `252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery`
pub const CANNOT_VRFY: Reply = fixed(
    252,
    "2.5.2",
    "Cannot VRFY user, but will accept message and attempt delivery",
);

/// `452 4.3.1 Insufficient system storage`
pub const STORAGE_TEMPFAIL: Reply = fixed(452, "4.3.1", "Insufficient system storage");

/// `452 4.5.3 Error: too many recipients`
pub const TOO_MANY_RECIPIENTS: Reply = fixed(452, "4.5.3", "Error: too many recipients");

/// `454 4.7.0 Temporary authentication failure`
pub const AUTH_TEMPFAIL: Reply = fixed(454, "4.7.0", "Temporary authentication failure");

/// `500 5.5.2 Error: line too long`
pub const LINE_TOO_LONG: Reply = fixed(500, "5.5.2", "Error: line too long");

/// `500 5.5.2 Error: command not recognized`
pub const UNRECOGNIZED: Reply = fixed(500, "5.5.2", "Error: command not recognized");

/// `501 5.7.0 Authentication aborted`
pub const AUTH_ABORTED: Reply = fixed(501, "5.7.0", "Authentication aborted");

/// `501 5.5.2 Cannot decode response`
pub const AUTH_BAD_BASE64: Reply = fixed(501, "5.5.2", "Cannot decode response");

/// `501 5.5.4 Bad BODY parameter`
pub const BAD_BODY_PARAMETER: Reply = fixed(501, "5.5.4", "Bad BODY parameter");

/// `501 5.1.3 Bad recipient address syntax`
pub const BAD_RECIPIENT_SYNTAX: Reply = fixed(501, "5.1.3", "Bad recipient address syntax");

/// `501 5.1.7 Bad sender address syntax`
pub const BAD_SENDER_SYNTAX: Reply = fixed(501, "5.1.7", "Bad sender address syntax");

/// `501 5.5.4 Bad SIZE parameter`
pub const BAD_SIZE_PARAMETER: Reply = fixed(501, "5.5.4", "Bad SIZE parameter");

/// `502 5.5.1 EXPN command is disabled`
pub const EXPN_DISABLED: Reply = fixed(502, "5.5.1", "EXPN command is disabled");

/// `502 5.5.1 Error: command not implemented`
pub const NOT_IMPLEMENTED: Reply = fixed(502, "5.5.1", "Error: command not implemented");

/// `503 5.5.1 Error: already authenticated`
pub const ALREADY_AUTHENTICATED: Reply = fixed(503, "5.5.1", "Error: already authenticated");

/// `503 5.5.1 Error: MAIL transaction in progress`
pub const AUTH_IN_TRANSACTION: Reply = fixed(503, "5.5.1", "Error: MAIL transaction in progress");

/// `503 5.5.1 Error: authentication not enabled`
pub const AUTH_NOT_ENABLED: Reply = fixed(503, "5.5.1", "Error: authentication not enabled");

/// `503 5.5.1 Error: DATA after BDAT`
pub const DATA_AFTER_BDAT: Reply = fixed(503, "5.5.1", "Error: DATA after BDAT");

/// `503 5.5.1 Error: send HELO/EHLO first`
pub const NEED_HELO: Reply = fixed(503, "5.5.1", "Error: send HELO/EHLO first");

/// `503 5.5.1 Error: need MAIL command`
pub const NEED_MAIL: Reply = fixed(503, "5.5.1", "Error: need MAIL command");

/// `503 5.5.1 Error: need RCPT command`
pub const NEED_RCPT: Reply = fixed(503, "5.5.1", "Error: need RCPT command");

/// `503 5.5.1 Error: nested MAIL command`
pub const NESTED_MAIL: Reply = fixed(503, "5.5.1", "Error: nested MAIL command");

/// `503 5.5.1 Error: RCPT after BDAT`
pub const RCPT_AFTER_BDAT: Reply = fixed(503, "5.5.1", "Error: RCPT after BDAT");

/// `504 5.5.4 Unsupported authentication mechanism`
pub const AUTH_MECHANISM_UNSUPPORTED: Reply =
    fixed(504, "5.5.4", "Unsupported authentication mechanism");

/// `530 5.7.0 Authentication required`
pub const AUTH_REQUIRED: Reply = fixed(530, "5.7.0", "Authentication required");

/// `530 5.7.0 Must issue a STARTTLS command first`
pub const NEED_STARTTLS: Reply = fixed(530, "5.7.0", "Must issue a STARTTLS command first");

/// `535 5.7.8 Error: authentication failed: authentication failure`
pub const AUTH_FAILED: Reply = fixed(
    535,
    "5.7.8",
    "Error: authentication failed: authentication failure",
);

/// `535 5.7.8 Error: authentication failed: malformed response`
pub const AUTH_MALFORMED: Reply = fixed(
    535,
    "5.7.8",
    "Error: authentication failed: malformed response",
);

/// `550 5.5.2 Error: bare <CR> or <LF> received in message data`
pub const BARE_NEWLINE: Reply = fixed(
    550,
    "5.5.2",
    "Error: bare <CR> or <LF> received in message data",
);

/// `552 5.3.4 Error: message file too big`
pub const MESSAGE_TOO_BIG: Reply = fixed(552, "5.3.4", "Error: message file too big");

/// `552 5.3.4 Message size exceeds fixed limit`
pub const SIZE_EXCEEDS_LIMIT: Reply = fixed(552, "5.3.4", "Message size exceeds fixed limit");

/// `553 5.6.7 Must declare SMTPUTF8 to send an UTF-8 address`
pub const NEED_SMTPUTF8: Reply = fixed(
    553,
    "5.6.7",
    "Must declare SMTPUTF8 to send an UTF-8 address",
);

/// `554 5.5.1 Error: no valid recipients`
pub const NO_VALID_RECIPIENTS: Reply = fixed(554, "5.5.1", "Error: no valid recipients");

/// `554 5.5.1 Error: TLS already active`
pub const TLS_ALREADY_ACTIVE: Reply = fixed(554, "5.5.1", "Error: TLS already active");

/// `555 5.5.4 Unsupported option: BODY=BINARYMIME`
pub const BINARYMIME_UNSUPPORTED: Reply =
    fixed(555, "5.5.4", "Unsupported option: BODY=BINARYMIME");

/// `555 5.5.4 Unsupported option: ESMTP parameters need EHLO`
pub const PARAMETERS_NEED_EHLO: Reply = fixed(
    555,
    "5.5.4",
    "Unsupported option: ESMTP parameters need EHLO",
);

/// `521 5.5.1 Protocol error`: postscreen's answer to a `PREGREET` talker
/// it drops.
pub const PROTOCOL_ERROR: Reply = fixed(521, "5.5.1", "Protocol error");

/// `521 5.7.0 Error: I can break rules, too. Goodbye.`: postscreen's answer
/// to a client it drops for pipelining, a non-SMTP command or a bare newline.
pub const BREAK_RULES: Reply = fixed(521, "5.7.0", "Error: I can break rules, too. Goodbye.");

/// `220-host banner`: the first greeting line during a greet pause (the
/// final `220 ` line follows when the pause is over).
pub fn greeting_first_line(hostname: &str, banner: &str) -> Vec<u8> {
    format!("220-{hostname} {banner}\r\n").into_bytes()
}

/// `220 host banner`: the greeting (no enhanced code, RFC 2034 3).
pub fn greeting(hostname: &str, banner: &str) -> Reply {
    Reply::new(220, "", format!("{hostname} {banner}"))
}

/// The EHLO reply: the extensions this session offers, one per line.
pub fn ehlo(hostname: &str, max_size: u64, starttls: bool, auth: bool) -> Vec<u8> {
    let mut r = Vec::with_capacity(256);
    r.extend_from_slice(b"250-");
    r.extend_from_slice(hostname.as_bytes());
    r.extend_from_slice(b"\r\n250-PIPELINING\r\n250-SIZE ");
    r.extend_from_slice(max_size.to_string().as_bytes());
    r.extend_from_slice(b"\r\n");
    if starttls {
        r.extend_from_slice(b"250-STARTTLS\r\n");
    }
    if auth {
        r.extend_from_slice(b"250-AUTH PLAIN LOGIN\r\n");
    }
    r.extend_from_slice(
        b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
    );
    r
}

/// `250 2.0.0 Ok: queued as ID`: the message is durable.
pub fn queued(id: &str) -> Reply {
    Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
}

/// `250 2.0.0 Ok: N octets received`: a BDAT chunk that is not the last.
pub fn octets_received(n: usize) -> Reply {
    Reply::new(250, "2.0.0", format!("Ok: {n} octets received"))
}

/// `421 4.4.2`: the client was silent past the timeout.
pub fn timeout(hostname: &str) -> Reply {
    Reply::new(421, "4.4.2", format!("{hostname} Error: timeout exceeded"))
}

/// `421 4.3.2`: the server is shutting down.
pub fn shutting_down(hostname: &str) -> Reply {
    Reply::new(
        421,
        "4.3.2",
        format!("{hostname} Service shutting down, closing connection"),
    )
}

/// `421 4.7.0`: more pipelined input than the limit.
pub fn too_much_pipelining(hostname: &str) -> Reply {
    Reply::new(
        421,
        "4.7.0",
        format!("{hostname} Error: too much pipelined input"),
    )
}

/// `421 4.7.0`: the hard error limit is reached.
pub fn too_many_errors(hostname: &str) -> Reply {
    Reply::new(421, "4.7.0", format!("{hostname} Error: too many errors"))
}

/// `421 4.7.0`: too many failed AUTH attempts on this connection.
pub fn too_many_auth_failures(hostname: &str) -> Reply {
    Reply::new(
        421,
        "4.7.0",
        format!("{hostname} Error: too many authentication failures"),
    )
}

/// `501 5.5.4 TEXT`: a command's arguments are malformed.
pub fn syntax(text: &str) -> Reply {
    Reply::new(501, "5.5.4", text.to_owned())
}

/// `555 5.5.4 Unsupported option: KEY`.
pub fn unsupported_option(key: &str) -> Reply {
    Reply::new(555, "5.5.4", format!("Unsupported option: {key}"))
}

/// The reply for a connection the admission policy refuses.
pub fn connection_refused(hostname: &str, refusal: &Refusal) -> Reply {
    match refusal {
        Refusal::ServerFull => Reply::new(
            421,
            "4.7.0",
            format!("{hostname} Error: too many connections"),
        ),
        Refusal::TooManyConnections { ip } | Refusal::ConnectionRate { ip } => Reply::new(
            421,
            "4.7.0",
            format!(
                "{hostname} Error: too many connections from {}",
                crate::net::canonical(*ip)
            ),
        ),
    }
}

/// The reply for a sender the policy refuses.
pub fn mail_refused(from: Option<&Address>, refusal: &MailRefusal) -> Reply {
    let from = from.map(ToString::to_string).unwrap_or_default();
    match refusal {
        MailRefusal::NotOwned { user } => Reply::new(
            553,
            "5.7.1",
            format!("<{from}>: Sender address rejected: not owned by user {user}"),
        ),
        MailRefusal::MessageRate { ip } => Reply::new(
            450,
            "4.7.1",
            format!("Error: too much mail from {}", crate::net::canonical(*ip)),
        ),
    }
}

/// The reply for a recipient the policy refuses.
pub fn rcpt_refused(to: &Address, refusal: &RcptRefusal) -> Reply {
    match refusal {
        RcptRefusal::RelayDenied => {
            Reply::new(554, "5.7.1", format!("<{to}>: Relay access denied"))
        }
        RcptRefusal::UnknownUser => Reply::new(
            550,
            "5.1.1",
            format!("<{to}>: Recipient address rejected: User unknown in virtual mailbox table"),
        ),
        RcptRefusal::TempFail => {
            Reply::new(451, "4.3.0", format!("<{to}>: Temporary lookup failure"))
        }
        RcptRefusal::MailboxFull => Reply::new(552, "5.2.2", format!("<{to}>: Mailbox full")),
        RcptRefusal::ForwardingUnavailable => Reply::new(
            451,
            "4.3.0",
            format!("<{to}>: forwarding to outside addresses needs a smarthost"),
        ),
        RcptRefusal::BadSrs => Reply::new(
            550,
            "5.1.1",
            format!("<{to}>: Recipient address rejected: invalid SRS address"),
        ),
        RcptRefusal::RelayNotConfigured => Reply::new(
            451,
            "4.3.0",
            format!("<{to}>: relaying through a smarthost is not configured"),
        ),
    }
}

/// The reply at the end of DATA for a message the delivery verdict refuses.
pub fn message_refused(refusal: &MessageRefusal) -> Reply {
    match refusal {
        MessageRefusal::TempFail => STORAGE_TEMPFAIL,
        MessageRefusal::MailboxFull => fixed(452, "4.2.2", "Mailbox full, try again later"),
        MessageRefusal::TooBigForMailbox => fixed(
            552,
            "5.2.2",
            "Message too big for the recipient's mailbox quota",
        ),
        MessageRefusal::Spam => fixed(554, "5.7.1", "Message rejected as spam"),
        MessageRefusal::DmarcReject => fixed(
            550,
            "5.7.1",
            "Message rejected: it fails the DMARC policy of its From domain",
        ),
    }
}

/// `250 host`: the HELO reply.
pub fn helo(hostname: &str) -> Reply {
    Reply::new(250, "", hostname.to_owned())
}
