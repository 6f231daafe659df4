//! Reading commands: lines and the command dispatch, EHLO, STARTTLS and AUTH.

use super::*;

impl SmtpSession {
    pub(super) fn run(&mut self, input: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            match &mut self.phase {
                Phase::Command | Phase::AuthPlain | Phase::AuthLogin { .. } => {
                    let rest = &input[pos..];
                    if rest.is_empty() {
                        return pos;
                    }
                    let max = self.cfg.limits.max_line;
                    match memchr::memchr(b'\n', rest) {
                        Some(k) => {
                            pos += k + 1;
                            if self.discarding_line {
                                self.discarding_line = false;
                                continue;
                            }
                            if k + 1 > max {
                                self.reply(&replies::LINE_TOO_LONG);
                                continue;
                            }
                            let bare = !rest[..k].ends_with(b"\r");
                            let line = rest[..k].strip_suffix(b"\r").unwrap_or(&rest[..k]);
                            if matches!(self.phase, Phase::Command) && self.screen {
                                let next = &input[pos..];
                                if self.screen_line(line, bare, next) {
                                    return input.len();
                                }
                            }
                            if let Flow::DiscardRest = self.line(line) {
                                let dropped = input.len() - pos;
                                if dropped > 0 {
                                    self.notice(Notice::DiscardedAfterStartTls(dropped));
                                }
                                return input.len();
                            }
                        }
                        None => {
                            if self.discarding_line {
                                return input.len();
                            }
                            if rest.len() >= max {
                                self.discarding_line = true;
                                self.reply(&replies::LINE_TOO_LONG);
                                return input.len();
                            }
                            return pos;
                        }
                    }
                }
                Phase::Data(rx) => {
                    let (n, done) = rx.feed(&input[pos..]);
                    pos += n;
                    if !done {
                        return pos;
                    }
                    self.end_of_data();
                    if self.shutting_down && !self.in_transaction() {
                        self.shutdown_now();
                    }
                }
                Phase::Bdat { remaining, .. } => {
                    let avail = (input.len() - pos) as u64;
                    let take = avail.min(*remaining);
                    *remaining -= take;
                    let done = *remaining == 0;
                    let end = pos + take as usize;
                    self.bdat_bytes(&input[pos..end]);
                    pos = end;
                    if !done {
                        return pos;
                    }
                    self.end_of_chunk();
                    if self.shutting_down && !self.in_transaction() {
                        self.shutdown_now();
                    }
                }
                Phase::Proxy
                | Phase::Connect
                | Phase::Tls { .. }
                | Phase::Wait(_)
                | Phase::Closed => {
                    return pos;
                }
            }
        }
    }

    pub(super) fn line(&mut self, line: &[u8]) -> Flow {
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::AuthPlain => {
                let text = String::from_utf8_lossy(line);
                match sasl::decode_plain(&text) {
                    Ok(c) => self.ask_auth("PLAIN", c.username, c.password),
                    Err(e) => self.sasl_error(e),
                }
                Flow::Continue
            }
            Phase::AuthLogin { username: None } => {
                let text = String::from_utf8_lossy(line);
                match sasl::decode_login_step(&text) {
                    Ok(u) => {
                        self.send(b"334 UGFzc3dvcmQ6\r\n");
                        self.phase = Phase::AuthLogin { username: Some(u) };
                    }
                    Err(e) => self.sasl_error(e),
                }
                Flow::Continue
            }
            Phase::AuthLogin { username: Some(u) } => {
                let text = String::from_utf8_lossy(line);
                match sasl::decode_login_step(&text) {
                    Ok(p) => self.ask_auth("LOGIN", u, crate::Secret::new(p)),
                    Err(e) => self.sasl_error(e),
                }
                Flow::Continue
            }
            _ => {
                self.stats.commands += 1;
                let after = self.last_verb;
                self.last_verb = verb_name(line);
                let ps = &self.cfg.postscreen;
                if self.screen && ps.non_smtp_command_enable && is_non_smtp(line) {
                    let action = ps.non_smtp_command_action;
                    self.notice(Notice::NonSmtpCommand {
                        after,
                        text: line[..line.len().min(100)].to_vec(),
                    });
                    if self.screen_drop(action) {
                        return Flow::Continue;
                    }
                }
                match command::parse(line) {
                    Ok(cmd) => self.command(cmd),
                    Err(CommandError::Unrecognized) => {
                        self.reply(&replies::UNRECOGNIZED);
                        Flow::Continue
                    }
                    Err(CommandError::Syntax(msg)) => {
                        let r = replies::syntax(msg);
                        self.reply(&r);
                        Flow::Continue
                    }
                }
            }
        }
    }

    pub(super) fn command(&mut self, cmd: Command<'_>) -> Flow {
        match cmd {
            Command::Noop => self.reply(&replies::OK),
            Command::Helo(name) => {
                self.helo = Some(name.to_owned());
                self.esmtp = false;
                self.txn = None;
                let r = replies::helo(&self.cfg.hostname);
                self.reply(&r);
            }
            Command::Ehlo(name) => {
                self.helo = Some(name.to_owned());
                self.esmtp = true;
                self.txn = None;
                self.ehlo_reply();
            }
            Command::Mail(arg) => self.mail(arg),
            Command::Rcpt(arg) => self.rcpt(arg),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.txn = None;
                self.reply(&replies::OK);
            }
            Command::Quit => {
                self.reply(&replies::BYE);
                self.close();
            }
            Command::Vrfy => self.reply(&replies::CANNOT_VRFY),
            Command::Expn => self.reply(&replies::EXPN_DISABLED),
            Command::Help => self.reply(&replies::HELP),
            Command::NotImplemented => self.reply(&replies::NOT_IMPLEMENTED),
            Command::StartTls => return self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
        }
        Flow::Continue
    }

    pub(super) fn ehlo_reply(&mut self) {
        let starttls = self.listener.tls == TlsMode::StartTls && self.tls.is_none();
        let r = replies::ehlo(
            &self.cfg.hostname,
            self.cfg.limits.max_message_size,
            starttls,
            self.auth_offered(),
        );
        self.send(&r);
    }

    pub(super) fn auth_offered(&self) -> bool {
        self.listener.role == Role::Submission && self.tls.is_some()
    }

    pub(super) fn starttls(&mut self) -> Flow {
        if self.listener.tls != TlsMode::StartTls {
            self.reply(&replies::NOT_IMPLEMENTED);
            return Flow::Continue;
        }
        if self.tls.is_some() {
            self.reply(&replies::TLS_ALREADY_ACTIVE);
            return Flow::Continue;
        }
        self.reply(&replies::READY_FOR_TLS);
        self.phase = Phase::Tls { greet: false };
        self.push(Output::StartTls { early: Vec::new() });
        Flow::DiscardRest
    }

    pub(super) fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        if self.listener.role != Role::Submission || self.listener.tls == TlsMode::None {
            return self.reply(&replies::AUTH_NOT_ENABLED);
        }
        if self.tls.is_none() {
            return self.reply(&replies::NEED_STARTTLS);
        }
        if self.helo.is_none() {
            return self.reply(&replies::NEED_HELO);
        }
        if self.auth_user.is_some() {
            return self.reply(&replies::ALREADY_AUTHENTICATED);
        }
        if self.txn.is_some() {
            return self.reply(&replies::AUTH_IN_TRANSACTION);
        }
        if mechanism.eq_ignore_ascii_case("PLAIN") {
            match initial {
                Some(ir) => match sasl::decode_plain(ir) {
                    Ok(c) => self.ask_auth("PLAIN", c.username, c.password),
                    Err(e) => self.sasl_error(e),
                },
                None => {
                    self.send(b"334 \r\n");
                    self.phase = Phase::AuthPlain;
                }
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            match initial {
                Some(ir) => match sasl::decode_login_step(ir) {
                    Ok(u) => {
                        self.send(b"334 UGFzc3dvcmQ6\r\n");
                        self.phase = Phase::AuthLogin { username: Some(u) };
                    }
                    Err(e) => self.sasl_error(e),
                },
                None => {
                    self.send(b"334 VXNlcm5hbWU6\r\n");
                    self.phase = Phase::AuthLogin { username: None };
                }
            }
        } else {
            self.reply(&replies::AUTH_MECHANISM_UNSUPPORTED);
        }
    }

    pub(super) fn ask_auth(
        &mut self,
        mechanism: &'static str,
        username: String,
        password: crate::Secret<String>,
    ) {
        self.push(Output::Event(Event::Auth(AuthRequest {
            mechanism,
            username: username.clone(),
            password,
        })));
        self.phase = Phase::Wait(Pending::Auth {
            mechanism,
            username,
        });
    }

    pub(super) fn sasl_error(&mut self, e: SaslError) {
        self.phase = Phase::Command;
        match e {
            SaslError::Cancelled => self.reply(&replies::AUTH_ABORTED),
            SaslError::Base64 => self.reply(&replies::AUTH_BAD_BASE64),
            SaslError::Malformed | SaslError::AuthzidMismatch => {
                self.reply(&replies::AUTH_MALFORMED)
            }
        }
    }

    /// The postscreen checks on one command line, before it runs: a bare
    /// newline, and commands pipelined before the EHLO/HELO answer (`next`:
    /// what followed the line in the same input). Returns whether the
    /// client was dropped.
    fn screen_line(&mut self, line: &[u8], bare: bool, next: &[u8]) -> bool {
        let ps = &self.cfg.postscreen;
        let (bare_on, bare_action) = (ps.bare_newline_enable, ps.bare_newline_action);
        let (pipe_on, pipe_action) = (ps.pipelining_enable, ps.pipelining_action);
        if bare && bare_on && !self.seen_bare_newline {
            self.seen_bare_newline = true;
            self.notice(Notice::BareNewline {
                after: self.last_verb,
            });
            if self.screen_drop(bare_action) {
                return true;
            }
        }
        if pipe_on
            && !self.seen_pipelining
            && !next.is_empty()
            && self.helo.is_none()
            && self.tls.is_none()
        {
            self.seen_pipelining = true;
            self.notice(Notice::Pipelining {
                after: verb_name(line),
                text: next[..next.len().min(100)].to_vec(),
            });
            if self.screen_drop(pipe_action) {
                return true;
            }
        }
        false
    }
}

/// The verb of a command line as a name for the logs (`"UNKNOWN"` for
/// anything else), like Postfix's `lost connection after RCPT`.
fn verb_name(line: &[u8]) -> &'static str {
    const VERBS: &[&str] = &[
        "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
        "HELP", "STARTTLS", "AUTH", "ETRN",
    ];
    let word = line.split(|b| *b == b' ').next().unwrap_or(&[]);
    VERBS
        .iter()
        .find(|v| v.as_bytes().eq_ignore_ascii_case(word))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// postscreen's default `postscreen_forbidden_commands`: `CONNECT`, `GET`,
/// `POST` (any case), and a line that does not start with a letter.
fn is_non_smtp(line: &[u8]) -> bool {
    let Some(first) = line.first() else {
        return false;
    };
    if !first.is_ascii_alphabetic() {
        return true;
    }
    let word = line.split(|b| *b == b' ').next().unwrap_or(&[]);
    ["CONNECT", "GET", "POST"]
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(word))
}
