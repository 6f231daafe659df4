//! Before and around login: the greeting, CAPABILITY, STARTTLS, LOGIN,
//! AUTHENTICATE PLAIN (RFC 4616), and ENABLE (RFC 5161).

use super::{ImapSession, Output, Pending, Phase};
use crate::imap::command::{Args, Authenticate, Login};
use crate::imap::event::{Code, Event, Notice};
use crate::imap::response::{self, ResponseCode, Status};
use crate::smtp::TlsMode;
use crate::{sasl, Secret};

impl ImapSession {
    pub(super) fn greet(&mut self) {
        let caps = self.capabilities();
        let text = format!("{} Postern ready.", self.cfg.hostname);
        let code = ResponseCode::Capability(caps);
        self.send_str(&response::untagged(Status::Ok, Some(&code), &text));
    }

    pub(super) fn capabilities(&self) -> String {
        let mut c = String::from("IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES QUOTA QUOTA=RES-STORAGE CONDSTORE QRESYNC BINARY SEARCHRES STATUS=SIZE IMAP4rev2");
        if self.user().is_none() {
            if self.listener.tls == TlsMode::StartTls && !self.tls {
                c.push_str(" STARTTLS");
            }
            if self.login_allowed() {
                c.push_str(" AUTH=PLAIN");
            } else {
                c.push_str(" LOGINDISABLED");
            }
        }
        c
    }

    /// Credentials may be sent: under TLS, or on a listener that allows
    /// them in the clear (`allow_plaintext_auth`).
    fn login_allowed(&self) -> bool {
        self.tls || self.listener.allow_plaintext_auth
    }

    pub(super) fn starttls(&mut self, tag: &str) {
        if self.listener.tls != TlsMode::StartTls || self.tls {
            return self.bad(tag, "STARTTLS not available");
        }
        self.reply(tag, Status::Ok, None, "Begin TLS negotiation now");
        let dropped = self.inbuf.len();
        if dropped > 0 {
            self.notice(Notice::DiscardedAfterStartTls(dropped));
        }
        self.inbuf.clear();
        self.phase = Phase::Tls { greet: false };
        self.outputs
            .push_back(Output::StartTls { early: Vec::new() });
    }

    pub(super) fn login_command(&mut self, tag: &str, args: Args<Login>) {
        if !self.login_allowed() {
            return self.no(tag, Code::PrivacyRequired, "LOGIN needs TLS");
        }
        let Some(Login { username, password }) = self.take(tag, args) else {
            return;
        };
        self.login(tag.to_owned(), username, password);
    }

    pub(super) fn authenticate(&mut self, tag: &str, args: Authenticate) {
        if !self.login_allowed() {
            return self.no(tag, Code::PrivacyRequired, "AUTHENTICATE needs TLS");
        }
        if args.mechanism != "PLAIN" {
            return self.no(tag, Code::Cannot, "Unsupported mechanism");
        }
        match args.initial_response {
            Some(ir) => self.plain_response(tag, &ir),
            None => {
                self.send_str("+ \r\n");
                self.phase = Phase::AuthPlain {
                    tag: tag.to_owned(),
                };
            }
        }
    }

    fn login(&mut self, tag: String, username: String, password: Secret<String>) {
        self.outputs.push_back(Output::Event(Event::Login {
            username: username.clone(),
            password,
        }));
        self.phase = Phase::Wait(Pending::Login { tag, username });
    }

    pub(super) fn plain_response(&mut self, tag: &str, text: &str) {
        match sasl::decode_plain(text) {
            Ok(c) => self.login(tag.to_owned(), c.username, c.password),
            Err(sasl::SaslError::Cancelled) => self.bad(tag, "Authentication cancelled"),
            Err(_) => self.no(tag, Code::AuthenticationFailed, "Malformed response"),
        }
    }

    pub(super) fn enable(&mut self, tag: &str, args: Args<Vec<String>>) {
        let Some(capabilities) = self.take(tag, args) else {
            return;
        };
        // RFC 5161: only what is supported and newly enabled is listed.
        let wants = capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case("CONDSTORE"));
        let rev2 = capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case("IMAP4rev2"));
        let qresync = capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case("QRESYNC"));
        let mut newly = String::new();
        if wants && !self.condstore {
            newly.push_str(" CONDSTORE");
        }
        if qresync && !self.qresync {
            newly.push_str(" QRESYNC");
        }
        if rev2 && !self.rev2 {
            newly.push_str(" IMAP4rev2");
            self.rev2 = true;
        }
        self.send_str(&format!("* ENABLED{newly}\r\n"));
        if wants {
            self.condstore_on();
        }
        if qresync {
            // RFC 7162 3.2.3: QRESYNC implies CONDSTORE.
            self.qresync_on();
        }
        self.completed(tag, "ENABLE");
    }

    /// Turns CONDSTORE on (RFC 7162 3.1): the first enabling command with
    /// a mailbox selected gets the mailbox's HIGHESTMODSEQ first.
    pub(super) fn condstore_on(&mut self) {
        if self.condstore {
            return;
        }
        self.condstore = true;
        if let Some(h) = self.view().map(|v| v.highest_modseq) {
            let code = ResponseCode::HighestModseq(h);
            self.send_str(&response::untagged(Status::Ok, Some(&code), "Highest"));
        }
    }
}
