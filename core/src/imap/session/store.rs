//! Changing messages: STORE (with CONDSTORE's UNCHANGEDSINCE), COPY and
//! MOVE (RFC 6851) with COPYUID, EXPUNGE and UID EXPUNGE (RFC 4315), and
//! APPEND with APPENDUID.

use super::select::Uid;
use super::{ImapSession, Pending, PollFor, State};
use crate::imap::command::{Append, Args, CopyMove, SequenceSet, Store};
use crate::imap::event::{Code, MailboxAnswer, MailboxRequest, StoreMode, Stored};
use crate::imap::response::{self, ResponseCode, Status};
use crate::imap::set::SeqSet;
use std::fmt::Write as _;

impl ImapSession {
    pub(super) fn store(
        &mut self,
        user: String,
        tag: &str,
        args: Args<Store>,
        mailbox: String,
        uid: bool,
    ) {
        if self.read_only() {
            return self.no(tag, Code::ReadOnly, "Mailbox is read-only");
        }
        let Some(args) = self.take(tag, args) else {
            return;
        };
        if args.unchanged_since.is_some() {
            self.condstore_on();
        }
        let set = self.set_of(&args.set, uid);
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
                mode: args.mode,
                flags: args.flags,
                unchanged_since: args.unchanged_since,
            },
            Pending::Store {
                tag: tag.to_owned(),
                uid,
                silent: args.silent,
                conditional: args.unchanged_since.is_some(),
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
        // A keyword new to the mailbox is announced before it is used.
        let used: Vec<String> = changed.iter().flat_map(|c| c.flags.clone()).collect();
        let mut r = self.announce_keywords(&used);
        for c in changed {
            let Some(seq) = self.seq_of(Uid(c.uid)) else {
                continue;
            };
            // RFC 7162 3.2.4: with QRESYNC on, every FETCH names the UID.
            let uid_part = if uid || self.qresync {
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
                    self.flags_shown(c.uid, &c.flags)
                );
            } else if self.condstore && (conditional || before.get(&c.uid) != Some(&c.modseq)) {
                // RFC 7162 3.1.3: .SILENT still reports the MODSEQ
                // of what changed, and of all a conditional STORE passed.
                let _ = write!(
                    r,
                    "* {seq} FETCH ({}{})\r\n",
                    uid_part.trim_start().to_owned() + if uid_part.is_empty() { "" } else { " " },
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

    /// COPY, or MOVE (`moving`).
    pub(super) fn copy(
        &mut self,
        user: String,
        tag: &str,
        args: Args<CopyMove>,
        mailbox: String,
        uid: bool,
        moving: bool,
    ) {
        let name = if moving { "MOVE" } else { "COPY" };
        let Some(args) = self.take(tag, args) else {
            return;
        };
        let set = self.set_of(&args.set, uid);
        let Some(to) = self.mailbox_name(tag, &args.mailbox) else {
            return;
        };
        if !uid && self.out_of_range(&set) {
            return self.bad(tag, "Invalid message sequence number");
        }
        if moving && self.read_only() {
            return self.no(tag, Code::ReadOnly, "Mailbox is read-only");
        }
        let uids = self.uids_of(&set, uid);
        if uids.is_empty() {
            return self.completed(tag, name);
        }
        self.copy_target = Some(to.clone());
        // MOVE onto the selected mailbox (RFC 6851 3.3 allows it): a COPY,
        // then the originals go as UID STORE +FLAGS (\Deleted) and UID
        // EXPUNGE would take them.
        let store_moves = moving && to != mailbox;
        self.ask(
            user,
            MailboxRequest::Copy {
                mailbox,
                uids,
                to,
                moving: store_moves,
            },
            Pending::Copy {
                tag: tag.to_owned(),
                moving,
            },
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
        if moving && self.copy_target.as_deref() == self.selected() {
            self.copy_target = None;
            let (Some(user), Some(mailbox)) = (
                self.user().map(str::to_owned),
                self.selected().map(str::to_owned),
            ) else {
                return self.bad(&tag, "No mailbox selected");
            };
            self.ask(
                user,
                MailboxRequest::Store {
                    mailbox,
                    uids: from.to_vec(),
                    mode: StoreMode::Add,
                    flags: vec!["\\Deleted".into()],
                    unchanged_since: None,
                },
                Pending::MoveHere {
                    tag,
                    code,
                    from: from.to_vec(),
                },
            );
        } else if moving {
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

    /// MOVE onto the selected mailbox: the originals are flagged, now
    /// expunge them; once expunged, report them and the copies.
    pub(super) fn move_here(
        &mut self,
        tag: String,
        code: ResponseCode,
        from: Vec<u32>,
        answer: MailboxAnswer,
    ) {
        let (Some(user), Some(mailbox)) = (
            self.user().map(str::to_owned),
            self.selected().map(str::to_owned),
        ) else {
            return self.bad(&tag, "No mailbox selected");
        };
        match answer {
            MailboxAnswer::Flags { changed, .. } => {
                self.apply_flags(&changed);
                self.ask(
                    user,
                    MailboxRequest::Expunge {
                        mailbox,
                        uids: Some(from.clone()),
                    },
                    Pending::MoveHere { tag, code, from },
                );
            }
            MailboxAnswer::Expunged(uids) => {
                let lines = self.remove_uids(&uids);
                let moved = response::untagged(Status::Ok, Some(&code), "Moved");
                self.send_str(&(moved + &lines));
                // The copies come as EXISTS.
                let request = self.poll_request(mailbox);
                self.ask(
                    user,
                    request,
                    Pending::Poll {
                        tag,
                        then: PollFor::Command {
                            what: "MOVE",
                            code: None,
                        },
                    },
                );
            }
            _ => self.no(&tag, Code::ServerBug, "Unexpected answer from the store"),
        }
    }

    /// EXPUNGE, or UID EXPUNGE with its set.
    pub(super) fn expunge(
        &mut self,
        user: String,
        tag: &str,
        args: Args<Option<SequenceSet>>,
        mailbox: String,
    ) {
        if self.read_only() {
            return self.no(tag, Code::ReadOnly, "Mailbox is read-only");
        }
        let Some(set) = self.take(tag, args) else {
            return;
        };
        let uids = set.map(|set| {
            let set = self.set_of(&set, true);
            self.uids_of(&set, true)
        });
        self.ask(
            user,
            MailboxRequest::Expunge { mailbox, uids },
            Pending::Expunge {
                tag: tag.to_owned(),
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

    pub(super) fn append(&mut self, user: String, tag: &str, args: Args<Append>) {
        let Some(args) = self.take(tag, args) else {
            return;
        };
        let Some(name) = self.mailbox_name(tag, &args.mailbox) else {
            return;
        };
        self.ask(
            user,
            MailboxRequest::Append {
                mailbox: name.clone(),
                flags: args.flags,
                data: args.data,
                date: args.date,
            },
            Pending::Append {
                tag: tag.to_owned(),
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
