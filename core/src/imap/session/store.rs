//! Changing messages: STORE (with CONDSTORE's UNCHANGEDSINCE), COPY and
//! MOVE (RFC 6851) with COPYUID, EXPUNGE and UID EXPUNGE (RFC 4315), and
//! APPEND with APPENDUID.

use super::select::Uid;
use super::{valid_flags, ImapSession, Pending, State};
use crate::imap::event::{Code, MailboxRequest, StoreMode, Stored};
use crate::imap::fetch;
use crate::imap::parse::{Command, Value};
use crate::imap::response::{self, ResponseCode, Status};
use crate::imap::set::SeqSet;
use std::fmt::Write as _;

impl ImapSession {
    pub(super) fn store(
        &mut self,
        user: String,
        tag: &str,
        cmd: &Command<'_>,
        mailbox: String,
        read_only: bool,
        uid: bool,
    ) {
        let t = tag.to_owned();
        if read_only {
            return self.no(tag, Code::ReadOnly, "Mailbox is read-only");
        }
        // STORE modifiers: (UNCHANGEDSINCE n) (RFC 7162 3.1.3).
        let mut unchanged_since = None;
        let mut rest = cmd.args.get(1..).unwrap_or_default();
        if let Some(Value::List(m)) = rest.first() {
            match m.as_slice() {
                [Value::Atom(a), n] if a.eq_ignore_ascii_case("UNCHANGEDSINCE") => {
                    match n.as_astring().and_then(|n| n.parse::<u64>().ok()) {
                        Some(n) => unchanged_since = Some(n),
                        None => return self.bad(tag, "Bad UNCHANGEDSINCE value"),
                    }
                }
                _ => return self.bad(tag, "Unknown STORE modifier"),
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
            return self.bad(tag, "Syntax: STORE set [+-]FLAGS[.SILENT] (flags)");
        };
        let op = op.to_ascii_uppercase();
        let silent = op.ends_with(".SILENT");
        let mode = match op.trim_end_matches(".SILENT") {
            "FLAGS" => StoreMode::Replace,
            "+FLAGS" => StoreMode::Add,
            "-FLAGS" => StoreMode::Remove,
            _ => return self.bad(tag, "Unknown STORE operation"),
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
            return self.bad(tag, "Invalid flag in the list");
        }
        if !uid && self.out_of_range(&set) {
            return self.bad(tag, "Invalid message sequence number");
        }
        let uids = self.uids_of(&set, uid);
        if uids.is_empty() {
            return self.completed(tag, "STORE");
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

    pub(super) fn stored(
        &mut self,
        tag: &str,
        uid: bool,
        silent: bool,
        conditional: bool,
        changed: &[Stored],
        modified: &[u32],
    ) {
        let before: std::collections::HashMap<u32, u64> = changed
            .iter()
            .filter_map(|c| self.meta(Uid(c.uid)).map(|m| (c.uid, m.modseq)))
            .collect();
        self.apply_flags(changed);
        let mut r = String::new();
        for c in changed {
            let Some(seq) = self.seq_of(Uid(c.uid)) else {
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
                    response::flag_list(&c.flags)
                );
            } else if self.condstore && (conditional || before.get(&c.uid) != Some(&c.modseq)) {
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
            r.push_str(&response::tagged(tag, Status::Ok, None, "STORE completed"));
        } else {
            let nums: Vec<u32> = modified
                .iter()
                .filter_map(|u| {
                    if uid {
                        Some(*u)
                    } else {
                        self.seq_of(Uid(*u)).map(|s| s.0)
                    }
                })
                .collect();
            let code = ResponseCode::Modified(SeqSet::compact(&nums));
            r.push_str(&response::tagged(
                tag,
                Status::Ok,
                Some(&code),
                "Conditional STORE failed",
            ));
        }
        self.send_str(&r);
    }

    pub(super) fn copy(
        &mut self,
        user: String,
        tag: &str,
        cmd: &Command<'_>,
        mailbox: String,
        read_only: bool,
        uid: bool,
    ) {
        let t = tag.to_owned();
        let name = if cmd.name.ends_with("MOVE") {
            "MOVE"
        } else {
            "COPY"
        };
        let Some(set) = cmd
            .args
            .first()
            .and_then(Value::as_astring)
            .and_then(|s| self.set_arg(&s, uid))
        else {
            return self.bad(tag, &format!("Syntax: {name} set mailbox"));
        };
        let Some(to) = self.mailbox_arg(tag, cmd.args.get(1)) else {
            return;
        };
        if !uid && self.out_of_range(&set) {
            return self.bad(tag, "Invalid message sequence number");
        }
        let moving = name == "MOVE";
        if moving && read_only {
            return self.no(tag, Code::ReadOnly, "Mailbox is read-only");
        }
        let uids = self.uids_of(&set, uid);
        if uids.is_empty() {
            return self.completed(tag, name);
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

    pub(super) fn copied(
        &mut self,
        tag: String,
        moving: bool,
        uid_validity: u32,
        from: &[u32],
        to: &[u32],
    ) {
        let set = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let code = ResponseCode::CopyUid {
            uid_validity,
            from: set(from),
            to: set(to),
        };
        if moving {
            let lines = self.remove_uids(from);
            let moved = response::untagged(Status::Ok, Some(&code), "Moved");
            self.send_str(&(moved + &lines));
            self.completed(&tag, "MOVE");
        } else if self.copy_target.take().as_deref() == self.selected() {
            self.resync(tag, "COPY", code)
        } else {
            self.reply(&tag, Status::Ok, Some(code), "COPY completed");
        }
    }

    pub(super) fn expunge(
        &mut self,
        user: String,
        tag: &str,
        cmd: &Command<'_>,
        mailbox: String,
        read_only: bool,
        uid: bool,
    ) {
        let t = tag.to_owned();
        if read_only {
            return self.no(tag, Code::ReadOnly, "Mailbox is read-only");
        }
        let uids = if uid {
            let Some(set) = cmd
                .args
                .first()
                .and_then(Value::as_astring)
                .and_then(|s| self.set_arg(&s, uid))
            else {
                return self.bad(tag, "Syntax: UID EXPUNGE set");
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

    pub(super) fn expunged(&mut self, tag: &str, closing: bool, uids: &[u32]) {
        let lines = self.remove_uids(uids);
        if closing {
            if let Some(user) = self.user().map(str::to_owned) {
                self.state = State::Authenticated(user);
            }
            self.completed(tag, "CLOSE");
        } else {
            self.send_str(&lines);
            self.completed(tag, "EXPUNGE");
        }
    }

    pub(super) fn append(&mut self, user: String, tag: &str, cmd: &Command<'_>) {
        let t = tag.to_owned();
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
                    None => return self.bad(tag, "Invalid date-time"),
                },
                _ => {}
            }
        }
        let Some(data) = data else {
            return self.bad(tag, "Syntax: APPEND mailbox [(flags)] [date] literal");
        };
        if !valid_flags(&flags) {
            return self.bad(tag, "Invalid flag in the list");
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

    pub(super) fn appended(&mut self, tag: String, target: &str, uid_validity: u32, to: &[u32]) {
        let uid = to.first().copied().unwrap_or(0);
        let code = ResponseCode::AppendUid { uid_validity, uid };
        if self.selected() == Some(target) {
            // RFC 9051 6.3.12: tell at once about the new message.
            return self.resync(tag, "APPEND", code);
        }
        self.reply(&tag, Status::Ok, Some(code), "APPEND completed");
    }
}
