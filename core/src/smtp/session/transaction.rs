//! The mail transaction: MAIL, RCPT, DATA and BDAT, up to the store question.

use super::*;

impl SmtpSession {
    pub(super) fn mail(&mut self, arg: &str) {
        if self.helo.is_none() {
            return self.reply(&replies::NEED_HELO);
        }
        if self.txn.is_some() {
            return self.reply(&replies::NESTED_MAIL);
        }
        if self.listener.role == Role::Submission {
            if self.listener.tls == TlsMode::StartTls && self.tls.is_none() {
                return self.reply(&replies::NEED_STARTTLS);
            }
            if self.auth_user.is_none() {
                return self.reply(&replies::AUTH_REQUIRED);
            }
        }
        let Ok((path, params)) = split_path_arg(arg) else {
            return self.reply(&replies::BAD_SENDER_SYNTAX);
        };
        let from = match parse_path(path) {
            Ok(p) => p.map(|p| p.address),
            Err(_) => return self.reply(&replies::BAD_SENDER_SYNTAX),
        };
        let mut txn = Transaction {
            from,
            body: BodyType::SevenBit,
            smtputf8: false,
            declared_size: None,
            rcpts: Vec::new(),
            chunks: None,
        };
        if !params.is_empty() && !self.esmtp {
            return self.reply(&replies::PARAMETERS_NEED_EHLO);
        }
        for p in params.split(' ').filter(|p| !p.is_empty()) {
            let (key, value) = match p.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (p, None),
            };
            if key.eq_ignore_ascii_case("SIZE") {
                let Some(v) =
                    value.filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                else {
                    return self.reply(&replies::BAD_SIZE_PARAMETER);
                };
                // More digits than a u64 holds is simply too big.
                let n = v.parse::<u64>().unwrap_or(u64::MAX);
                if n > self.cfg.limits.max_message_size {
                    return self.reply(&replies::SIZE_EXCEEDS_LIMIT);
                }
                txn.declared_size = Some(n);
            } else if key.eq_ignore_ascii_case("BODY") {
                match value {
                    Some(v) if v.eq_ignore_ascii_case("7BIT") => txn.body = BodyType::SevenBit,
                    Some(v) if v.eq_ignore_ascii_case("8BITMIME") => {
                        txn.body = BodyType::EightBitMime
                    }
                    Some(v) if v.eq_ignore_ascii_case("BINARYMIME") => {
                        // RFC 3030 BINARYMIME is not offered.
                        return self.reply(&replies::BINARYMIME_UNSUPPORTED);
                    }
                    _ => return self.reply(&replies::BAD_BODY_PARAMETER),
                }
            } else if key.eq_ignore_ascii_case("SMTPUTF8") && value.is_none() {
                txn.smtputf8 = true;
            } else if key.eq_ignore_ascii_case("AUTH") && value.is_some() {
                // RFC 4954 5: accepted and not trusted.
            } else {
                let r = replies::unsupported_option(&sanitize(key));
                return self.reply(&r);
            }
        }
        if txn.from.as_ref().is_some_and(|a| !a.is_ascii()) && !txn.smtputf8 {
            return self.reply(&replies::NEED_SMTPUTF8);
        }
        self.stats_event(Event::MailFrom(MailRequest {
            from: txn.from.clone(),
            authenticated: self.auth_user.clone(),
        }));
        self.phase = Phase::Wait(Pending::Mail(txn));
    }

    pub(super) fn rcpt(&mut self, arg: &str) {
        let Some(txn) = self.txn.as_ref() else {
            return self.reply(&replies::NEED_MAIL);
        };
        if txn.chunks.is_some() {
            return self.reply(&replies::RCPT_AFTER_BDAT);
        }
        if txn.rcpts.len() >= self.cfg.limits.max_recipients {
            return self.reply(&replies::TOO_MANY_RECIPIENTS);
        }
        let smtputf8 = txn.smtputf8;
        let Ok((path, params)) = split_path_arg(arg) else {
            return self.reply(&replies::BAD_RECIPIENT_SYNTAX);
        };
        let path = if path.eq_ignore_ascii_case("postmaster") {
            Ok(Some(Path {
                address: Address::new("postmaster", self.cfg.postmaster_domain.clone()),
                rerouted: false,
            }))
        } else {
            parse_path(path)
        };
        let path = match path {
            Ok(Some(p)) => p,
            Ok(None) | Err(PathError::Null) => return self.reply(&replies::BAD_RECIPIENT_SYNTAX),
            Err(_) => return self.reply(&replies::BAD_RECIPIENT_SYNTAX),
        };
        if let Some(p) = params.split(' ').find(|p| !p.is_empty()) {
            let key = p.split_once('=').map_or(p, |(k, _)| k);
            let r = replies::unsupported_option(&sanitize(key));
            return self.reply(&r);
        }
        if !path.address.is_ascii() && !smtputf8 {
            return self.reply(&replies::NEED_SMTPUTF8);
        }
        self.stats_event(Event::RcptTo(RcptRequest {
            to: path.address.clone(),
            rerouted: path.rerouted,
            authenticated: self.auth_user.clone(),
        }));
        self.phase = Phase::Wait(Pending::Rcpt(path.address));
    }

    pub(super) fn data(&mut self) {
        let Some(txn) = self.txn.as_ref() else {
            return self.reply(&replies::NEED_RCPT);
        };
        if txn.chunks.is_some() {
            return self.reply(&replies::DATA_AFTER_BDAT);
        }
        if txn.rcpts.is_empty() {
            return self.reply(&replies::NO_VALID_RECIPIENTS);
        }
        let hint = txn.declared_size.unwrap_or(0) as usize;
        self.send(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        self.phase = Phase::Data(Box::new(DataReceiver::new(
            self.cfg.limits.max_message_size,
            self.cfg.bare_newline,
            hint,
        )));
        self.arm();
    }

    pub(super) fn end_of_data(&mut self) {
        let Phase::Data(rx) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        match rx.finish() {
            Ok(data) => self.ask_store(data),
            Err(DataError::TooBig) => {
                self.txn = None;
                self.reply(&replies::MESSAGE_TOO_BIG);
            }
            Err(DataError::BareNewline) => {
                self.txn = None;
                self.reply(&replies::BARE_NEWLINE);
            }
        }
        self.arm();
    }

    pub(super) fn bdat(&mut self, size: u64, last: bool) {
        let refuse = match self.txn.as_mut() {
            None => Some(replies::NEED_MAIL),
            Some(t) if t.rcpts.is_empty() => Some(replies::NO_VALID_RECIPIENTS),
            Some(t) => {
                t.chunks.get_or_insert_with(Vec::new);
                None
            }
        };
        self.phase = Phase::Bdat {
            remaining: size,
            last,
            refuse,
        };
        self.arm();
        if size == 0 {
            self.end_of_chunk();
        }
    }

    pub(super) fn bdat_bytes(&mut self, bytes: &[u8]) {
        let max = self.cfg.limits.max_message_size;
        if let (Phase::Bdat { refuse: None, .. }, Some(txn)) = (&mut self.phase, self.txn.as_mut())
        {
            if let Some(chunks) = txn.chunks.as_mut() {
                if (chunks.len() + bytes.len()) as u64 > max {
                    // Keep consuming the chunk, keep nothing, refuse at its end.
                    txn.chunks = Some(Vec::new());
                    if let Phase::Bdat { refuse, .. } = &mut self.phase {
                        *refuse = Some(replies::MESSAGE_TOO_BIG);
                    }
                } else {
                    chunks.extend_from_slice(bytes);
                }
            }
        }
    }

    pub(super) fn end_of_chunk(&mut self) {
        let Phase::Bdat {
            last,
            refuse,
            remaining,
        } = std::mem::replace(&mut self.phase, Phase::Command)
        else {
            return;
        };
        debug_assert_eq!(remaining, 0);
        self.arm();
        if let Some(reply) = refuse {
            // The transaction is over: later chunks get "need MAIL".
            self.txn = None;
            return self.reply(&reply);
        }
        let Some(txn) = self.txn.as_mut() else { return };
        if last {
            let data = txn.chunks.take().unwrap_or_default();
            self.ask_store(data);
        } else {
            let n = txn.chunks.as_ref().map_or(0, Vec::len);
            let r = replies::octets_received(n);
            self.reply(&r);
        }
    }

    pub(super) fn ask_store(&mut self, data: Vec<u8>) {
        let Some(txn) = self.txn.as_ref() else { return };
        let envelope = Envelope {
            mail_from: txn.from.clone(),
            rcpt_to: txn.rcpts.clone(),
            body: txn.body,
            smtputf8: txn.smtputf8,
            helo: self.helo.clone().unwrap_or_default(),
            esmtp: self.esmtp,
            client: self.front.address(),
            tls: self.tls.clone(),
            authenticated: self.auth_user.clone(),
        };
        self.push(Output::Event(Event::Message(Box::new(Message {
            envelope,
            data,
        }))));
        self.phase = Phase::Wait(Pending::Store);
    }
}

/// A parameter name fit to echo back: printable ASCII, at most 32 bytes.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}
