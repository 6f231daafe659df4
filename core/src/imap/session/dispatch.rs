//! The dispatch: framing the input into commands (and the continuation
//! lines of AUTHENTICATE and IDLE), running each command by the state it
//! is allowed in, and routing the store's answer to the command that
//! waits for it.

use super::list::Manage;
use super::{pending_tag, ImapSession, Pending, Phase, PollFor, State};
use crate::imap::command::{self, ArgError, Args, Command, CommandBody};
use crate::imap::event::{Code, MailboxAnswer, Notice};
use crate::imap::framing::{self, Framed};
use crate::imap::parse::ParseError;
use crate::imap::response::{self, Status};

impl ImapSession {
    /// Frames and runs commands until input runs out or a question is out.
    pub(super) fn process(&mut self) {
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
                    if self.inbuf.len() > self.frame_limits().max_line {
                        self.notice(Notice::ProtocolLimit("line"));
                        self.bye("Line too long");
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
            let limits = self.frame_limits();
            let before_login = self.user().is_none();
            match self.framer.frame(&self.inbuf, &limits) {
                Framed::Incomplete { continuation: true }
                    if before_login && !literal_before_login(&self.inbuf) =>
                {
                    // A command that needs a login gets no continuation
                    // before it: the client sends nothing more of it (the
                    // continuation is asked for only at the end of the
                    // buffer, so the whole buffer is this command).
                    let tag = framing::tag_of(&self.inbuf).unwrap_or_else(|| "*".into());
                    self.inbuf.clear();
                    self.framer.reset();
                    self.bad(&tag, "Log in first");
                }
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
                    let needs_login = before_login && !literal_before_login(&self.inbuf);
                    self.inbuf.drain(..len.min(self.inbuf.len()));
                    self.framer.reset();
                    let tag = tag.unwrap_or_else(|| "*".into());
                    if needs_login {
                        self.bad(&tag, "Log in first");
                    } else {
                        self.no(&tag, Code::TooBig, "Literal too large");
                    }
                }
                Framed::LiteralTooLarge { sync: false, .. } => {
                    self.notice(Notice::ProtocolLimit("literal"));
                    self.bye("Literal too large");
                    return self.close();
                }
                Framed::LineTooLong => {
                    self.notice(Notice::ProtocolLimit("line"));
                    self.bye("Line too long");
                    return self.close();
                }
                Framed::TooManyLiterals => {
                    self.notice(Notice::ProtocolLimit("literals"));
                    self.bye("Too many literals");
                    return self.close();
                }
            }
        }
    }

    fn continuation_line(&mut self, text: &str) {
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::AuthPlain { tag } => self.plain_response(&tag, text),
            Phase::Idle { tag } => {
                self.arm();
                if text.eq_ignore_ascii_case("DONE") {
                    self.reply(&tag, Status::Ok, None, "IDLE terminated");
                } else {
                    self.bad(&tag, "Expected DONE");
                }
            }
            other => self.phase = other,
        }
    }

    fn command(&mut self, bytes: &[u8]) {
        let Command { tag, body } = match command::parse(bytes) {
            Ok(c) => c,
            Err(ParseError::NoTag) => return self.send_str("* BAD Invalid tag\r\n"),
            Err(ParseError::Syntax { tag, message }) => return self.bad(&tag, message),
        };
        let authenticated = self.user().map(str::to_owned);
        match (body, authenticated) {
            (CommandBody::Capability, _) => {
                let caps = self.capabilities();
                self.send_str(&format!("* CAPABILITY {caps}\r\n"));
                self.completed(&tag, "CAPABILITY");
            }
            (CommandBody::Noop, _) => self.poll_or_ok(&tag, "NOOP"),
            (CommandBody::Check, Some(_)) => self.poll_or_ok(&tag, "CHECK"),
            (CommandBody::Logout, _) => {
                self.bye("Logging out");
                self.completed(&tag, "LOGOUT");
                self.state = State::Logout;
                self.close();
            }
            (CommandBody::Id, _) => {
                self.send_str("* ID (\"name\" \"Postern\")\r\n");
                self.completed(&tag, "ID");
            }
            (CommandBody::StartTls, None) => self.starttls(&tag),
            (CommandBody::Login(args), None) => self.login_command(&tag, args),
            (CommandBody::Authenticate(args), None) => self.authenticate(&tag, args),
            (
                CommandBody::StartTls | CommandBody::Login(_) | CommandBody::Authenticate(_),
                Some(_),
            ) => self.bad(&tag, "Already authenticated"),
            (_, None) => self.bad(&tag, "Log in first"),
            (body, Some(user)) => self.authenticated_command(user, &tag, body),
        }
    }

    fn authenticated_command(&mut self, user: String, tag: &str, body: CommandBody) {
        match body {
            CommandBody::Enable(args) => self.enable(tag, args),
            CommandBody::GetQuota(args) => self.get_quota(user, tag, args),
            CommandBody::GetQuotaRoot(args) => self.get_quota_root(user, tag, args),
            CommandBody::SetQuota => {
                self.no(tag, Code::NoPerm, "Quotas are set by the administrator")
            }
            CommandBody::Namespace => {
                let ns = format!("* NAMESPACE ((\"\" {})) NIL NIL\r\n", self.delimiter());
                self.send_str(&ns);
                self.completed(tag, "NAMESPACE");
            }
            CommandBody::Idle => {
                self.send_str("+ idling\r\n");
                self.phase = Phase::Idle {
                    tag: tag.to_owned(),
                };
                self.arm();
            }
            CommandBody::Select(args) => self.select(user, tag, args, false),
            CommandBody::Examine(args) => self.select(user, tag, args, true),
            CommandBody::Create(args) => self.manage(user, tag, args, Manage::Create),
            CommandBody::Delete(args) => self.manage(user, tag, args, Manage::Delete),
            CommandBody::Subscribe(args) => self.manage(user, tag, args, Manage::Subscribe),
            CommandBody::Unsubscribe(args) => self.manage(user, tag, args, Manage::Unsubscribe),
            CommandBody::Rename(args) => self.rename(user, tag, args),
            CommandBody::List(args) => self.list(user, tag, args, false),
            CommandBody::Lsub(args) => self.list(user, tag, args, true),
            CommandBody::Status(args) => self.status(user, tag, args),
            CommandBody::Append(args) => self.append(user, tag, args),
            body => match self.selected().map(str::to_owned) {
                None => self.bad(tag, "No mailbox selected"),
                Some(mailbox) => self.selected_command(user, tag, body, mailbox),
            },
        }
    }

    pub(super) fn selected_command(
        &mut self,
        user: String,
        tag: &str,
        body: CommandBody,
        mailbox: String,
    ) {
        // Other sessions' changes first (RFC 9051 7.5.1): what they added
        // and flagged now, what they expunged only where EXPUNGE may be
        // sent (not during FETCH, STORE, SEARCH or SORT by number).
        let expunge = match &body {
            CommandBody::Fetch { uid, .. }
            | CommandBody::Store { uid, .. }
            | CommandBody::Search { uid, .. } => Some(*uid),
            CommandBody::Copy { uid: true, .. } => Some(true),
            _ => None,
        };
        if let Some(expunge) = expunge {
            if !std::mem::take(&mut self.synced) {
                let request = self.poll_request(mailbox);
                return self.ask(
                    user,
                    request,
                    Pending::Poll {
                        tag: tag.to_owned(),
                        then: PollFor::Run {
                            body: Box::new(body),
                            expunge,
                        },
                    },
                );
            }
        }
        match body {
            CommandBody::Close => self.close_mailbox(user, tag, "CLOSE", mailbox),
            CommandBody::Unselect => self.close_mailbox(user, tag, "UNSELECT", mailbox),
            CommandBody::Expunge(args) => self.expunge(user, tag, args, mailbox),
            CommandBody::Fetch { uid, args } => self.fetch(user, tag, args, mailbox, uid),
            CommandBody::Search { uid, args } => self.search(user, tag, args, uid),
            CommandBody::Store { uid, args } => self.store(user, tag, args, mailbox, uid),
            CommandBody::Copy { uid, moving, args } => {
                self.copy(user, tag, args, mailbox, uid, moving)
            }
            _ => self.bad(tag, "Unknown command"),
        }
    }

    /// The arguments, or the answer to arguments that were refused (the
    /// mailbox names read before the fault checked first, as always).
    pub(super) fn take<T>(&mut self, tag: &str, args: Args<T>) -> Option<T> {
        match args {
            Ok(a) => Some(a),
            Err(ArgError::Bad {
                mailboxes,
                condstore,
                text,
            }) => {
                for m in &mailboxes {
                    self.mailbox_name(tag, m)?;
                }
                if condstore {
                    self.condstore_on();
                }
                self.bad(tag, &text);
                None
            }
            // RFC 9051 6.4.4: an unknown charset is a NO, not a BAD.
            Err(ArgError::BadCharset { saving }) => {
                // RFC 5182 2.1: a SEARCH that saves and fails (NO)
                // empties `$`; a BAD leaves it alone.
                if saving {
                    self.saved.clear();
                }
                self.no(tag, Code::BadCharset, "unsupported charset");
                None
            }
        }
    }

    /// Hands the store's answer to the command that waits for it.
    pub(super) fn route_answer(&mut self, p: Pending, answer: MailboxAnswer) {
        match (p, answer) {
            (
                Pending::Select {
                    tag,
                    name,
                    read_only,
                    qresync: Some(params),
                },
                MailboxAnswer::View(view),
            ) if params.uid_validity == view.uid_validity => match self.user().map(str::to_owned) {
                Some(user) => self.select_qresync(
                    user,
                    super::qresync::SelectJob {
                        tag,
                        name,
                        read_only,
                        view,
                        params,
                    },
                ),
                None => self.bad(&tag, "Not logged in"),
            },
            (
                Pending::Select {
                    tag,
                    name,
                    read_only,
                    ..
                },
                MailboxAnswer::View(view),
            ) => self.selected_view(tag, name, read_only, view, ""),
            (Pending::SelectVanished(job), MailboxAnswer::Vanished { uids, floor }) => {
                self.select_vanished(*job, &uids, floor)
            }
            (Pending::FetchVanished(job), MailboxAnswer::Vanished { uids, floor }) => {
                self.fetched_vanished(*job, &uids, floor)
            }
            (Pending::Simple { tag, what }, _) => self.completed(&tag, what),
            (Pending::List(q), MailboxAnswer::List(entries)) => self.listed(q, &entries),
            (Pending::Status { tag, name, items }, MailboxAnswer::Status(s)) => {
                self.send_str(&response::status_data(&self.shown(&name), &items, &s));
                self.completed(&tag, "STATUS");
            }
            (Pending::Quota { tag, root_of }, MailboxAnswer::Quota { used, limit }) => {
                self.quota(&tag, root_of.as_deref(), used, limit)
            }
            (Pending::Fetch(job), MailboxAnswer::Bodies(bodies)) => {
                self.fetched_bodies(job, bodies)
            }
            (Pending::Fetch(mut job), MailboxAnswer::Summaries(summaries)) => {
                job.data.summaries = Some(summaries);
                self.finish_fetch(job)
            }
            (Pending::Fetch(job), MailboxAnswer::Flags { changed, .. }) => {
                self.apply_flags(&changed);
                self.finish_fetch(job);
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
                None => self.bad(&tag, "Not logged in"),
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
            ) => self.stored(&tag, uid, silent, conditional, &changed, &modified),
            (Pending::Expunge { tag, closing }, MailboxAnswer::Expunged(uids)) => {
                self.expunged(&tag, closing, &uids)
            }
            (
                Pending::Append { tag, target },
                MailboxAnswer::Uids {
                    uid_validity, to, ..
                },
            ) => self.appended(tag, &target, uid_validity, &to),
            (
                Pending::Copy { tag, moving },
                MailboxAnswer::Uids {
                    uid_validity,
                    from,
                    to,
                },
            ) => self.copied(tag, moving, uid_validity, &from, &to),
            (Pending::MoveHere { tag, code, from }, answer) => {
                self.move_here(tag, code, from, answer)
            }
            (Pending::Thread(job), MailboxAnswer::Bodies(bodies)) => {
                self.thread_batch(job, &bodies)
            }
            (Pending::Poll { tag, then }, MailboxAnswer::Changed(view)) => {
                self.polled(tag, then, view)
            }
            (p, _) => {
                let tag = pending_tag(&p);
                self.no(tag, Code::ServerBug, "Unexpected answer from the store");
            }
        }
    }
}

/// Whether the command at the start of `buf` may carry a literal before
/// login: LOGIN and AUTHENTICATE (credentials), ID (client names). Any
/// other command needs a login first (or takes no literal at all).
fn literal_before_login(buf: &[u8]) -> bool {
    let mut words = buf.splitn(3, |&b| b == b' ');
    let _tag = words.next();
    words.next().is_some_and(|w| {
        [&b"LOGIN"[..], b"AUTHENTICATE", b"ID"]
            .iter()
            .any(|c| w.eq_ignore_ascii_case(c))
    })
}
