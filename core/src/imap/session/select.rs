//! Mailbox selection and the session's view of the selected mailbox:
//! SELECT/EXAMINE, CLOSE/UNSELECT, NOOP/CHECK/IDLE polls, mailbox names,
//! and keeping the view (sequence numbers, UIDs, flags) in step with the
//! store's changes.

use super::{ImapSession, Pending, Phase, PollFor, Selected, State};
use crate::imap::command::{Args, Mailbox, Select, SequenceSet, SYSTEM_FLAGS};
use crate::imap::event::{Code, MailboxRequest, MailboxView, MessageMeta, Stored};
use crate::imap::response::{self, ResponseCode, Status};
use crate::imap::set::SeqSet;
use std::fmt::Write as _;
use std::sync::Arc;

/// Whether a mailbox name stays inside the account.
pub fn safe_mailbox_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('/')
        && !name.starts_with('~')
        && !name.ends_with('/')
        && !name.contains("//")
        && !name
            .split('/')
            .any(|p| p == ".." || p == "." || p.starts_with('.'))
        && !name.contains(['\\', '\0'])
        && !name.chars().any(char::is_control)
}

fn canonical(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_owned()
    } else {
        name.to_owned()
    }
}

/// A message's UID (RFC 9051 2.3.1.1): stays with the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Uid(pub(super) u32);

/// A message sequence number (RFC 9051 2.3.1.2): its place, from 1, in
/// the client's view of the mailbox; it moves down as messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Seq(pub(super) u32);

impl Seq {
    /// The sequence number of the message at `index` in the view.
    pub(super) fn at(index: usize) -> Self {
        Seq(u32::try_from(index + 1).unwrap_or(u32::MAX))
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ImapSession {
    /// SELECT, or EXAMINE (`read_only`).
    pub(super) fn select(&mut self, user: String, tag: &str, args: Args<Select>, read_only: bool) {
        let t = tag.to_owned();
        self.saved.clear();
        if let State::Selected(u, _) = &self.state {
            // RFC 9051 6.3.2: a failed SELECT leaves no mailbox selected.
            self.state = State::Authenticated(u.clone());
            let closed = ResponseCode::from(Code::Closed);
            self.send_str(&response::untagged(
                Status::Ok,
                Some(&closed),
                "Previous mailbox closed",
            ));
        }
        let Some(args) = self.take(tag, args) else {
            return;
        };
        let Some(name) = self.mailbox_name(tag, &args.mailbox) else {
            return;
        };
        if args.qresync.is_some() && !self.qresync {
            // RFC 7162 3.2.5: QRESYNC must be enabled first.
            return self.bad(tag, "QRESYNC is not enabled");
        }
        if args.condstore || args.qresync.is_some() {
            self.condstore_on();
        }
        self.ask(
            user,
            MailboxRequest::Select {
                mailbox: name.clone(),
                take_recent: self.takes_recent(read_only),
            },
            Pending::Select {
                tag: t,
                name,
                read_only,
                qresync: args.qresync,
            },
        );
    }

    /// CLOSE (expunging first when read-write) or UNSELECT.
    pub(super) fn close_mailbox(&mut self, user: String, tag: &str, name: &str, mailbox: String) {
        let t = tag.to_owned();
        self.saved.clear();
        if name == "CLOSE" && !self.read_only() {
            self.ask(
                user,
                MailboxRequest::Expunge {
                    mailbox,
                    uids: None,
                },
                Pending::Expunge {
                    tag: t,
                    closing: true,
                },
            );
        } else {
            self.state = State::Authenticated(user);
            self.completed(tag, name);
        }
    }

    /// `* FLAGS` and `* OK [PERMANENTFLAGS]` again when `flags` hold
    /// keywords the client has not been told of (RFC 9051 7.3.5: FLAGS
    /// names every flag the mailbox uses), and the view learns them.
    pub(super) fn announce_keywords(&mut self, flags: &[String]) -> String {
        let State::Selected(_, s) = &mut self.state else {
            return String::new();
        };
        let mut new = false;
        for f in flags {
            if !f.starts_with('\\') && !s.view.keywords.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                s.view.keywords.push(f.clone());
                new = true;
            }
        }
        if !new {
            return String::new();
        }
        let mut all: Vec<String> = SYSTEM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        all.extend(s.view.keywords.iter().cloned());
        let mut r = format!("* FLAGS {}\r\n", response::flag_list(&all));
        let perm = if s.read_only {
            Vec::new()
        } else {
            all.push("\\*".to_owned());
            all
        };
        r.push_str(&response::untagged(
            Status::Ok,
            Some(&ResponseCode::PermanentFlags(perm)),
            "Flags permitted",
        ));
        r
    }

    /// SELECT's answer for `view`; `extra` (QRESYNC's VANISHED and
    /// FETCH lines) goes just before the tagged OK.
    pub(super) fn selected_view(
        &mut self,
        tag: String,
        name: String,
        read_only: bool,
        view: MailboxView,
        extra: &str,
    ) {
        let mut flags: Vec<String> = SYSTEM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        flags.extend(view.keywords.iter().cloned());
        let mut r = format!("* FLAGS {}\r\n", response::flag_list(&flags));
        let perm = if read_only {
            Vec::new()
        } else {
            flags.push("\\*".to_owned());
            flags
        };
        r.push_str(&response::untagged(
            Status::Ok,
            Some(&ResponseCode::PermanentFlags(perm)),
            "Flags permitted",
        ));
        let _ = write!(r, "* {} EXISTS\r\n", view.messages.len());
        // IMAP4rev2 has neither RECENT nor the UNSEEN code (RFC 9051 6.3.2).
        if !self.rev2 {
            let _ = write!(r, "* {} RECENT\r\n", view.recent.len());
        }
        if let (false, Some(i)) = (
            self.rev2,
            view.messages
                .iter()
                .position(|m| !m.flags.iter().any(|f| f == "\\Seen")),
        ) {
            let code = ResponseCode::Unseen(i + 1);
            r.push_str(&response::untagged(Status::Ok, Some(&code), "First unseen"));
        }
        for (code, text) in [
            (ResponseCode::UidValidity(view.uid_validity), "UIDs valid"),
            (ResponseCode::UidNext(view.uid_next), "Predicted next UID"),
            (ResponseCode::HighestModseq(view.highest_modseq), "Highest"),
        ] {
            r.push_str(&response::untagged(Status::Ok, Some(&code), text));
        }
        if self.rev2 {
            // RFC 9051 6.3.2: IMAP4rev2 requires a LIST for the name.
            let _ = writeln!(
                r,
                "* LIST ({}) {} {}\r",
                view.attributes.join(" "),
                self.delimiter(),
                response::astring(&self.shown(&name))
            );
        }
        r.push_str(extra);
        let (mode, text) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        r.push_str(&response::tagged(
            &tag,
            Status::Ok,
            Some(&mode.into()),
            text,
        ));
        self.send_str(&r);
        if let Some(user) = self.user().map(str::to_owned) {
            self.state = State::Selected(
                user,
                Selected {
                    name,
                    read_only,
                    view,
                },
            );
        }
    }

    /// The view the session asked for came: report the changes, then go
    /// on idling or finish the command that asked.
    pub(super) fn polled(&mut self, tag: String, then: PollFor, view: MailboxView) {
        let expunge = !matches!(then, PollFor::Run { expunge: false, .. });
        let lines = self.sync_view(view, expunge);
        self.send_str(&lines);
        match then {
            PollFor::Idle => self.phase = Phase::Idle { tag },
            PollFor::Command { what, code } => {
                self.reply(&tag, Status::Ok, code, &format!("{what} completed"))
            }
            PollFor::Run { body, .. } => match (
                self.user().map(str::to_owned),
                self.selected().map(str::to_owned),
            ) {
                (Some(user), Some(mailbox)) => {
                    self.synced = true;
                    self.selected_command(user, &tag, *body, mailbox);
                }
                _ => self.bad(&tag, "No mailbox selected"),
            },
        }
    }

    pub(super) fn poll_or_ok(&mut self, tag: &str, what: &'static str) {
        match &self.state {
            State::Selected(user, sel) => {
                let (user, mailbox) = (user.clone(), sel.name.clone());
                let request = self.poll_request(mailbox);
                self.ask(
                    user,
                    request,
                    Pending::Poll {
                        tag: tag.to_owned(),
                        then: PollFor::Command { what, code: None },
                    },
                );
            }
            _ => self.completed(tag, what),
        }
    }

    /// A mailbox name as the store knows it (`INBOX` canonical, modified
    /// UTF-7 under IMAP4rev2), or `NO [CANNOT]` when it would leave the
    /// account.
    pub(super) fn mailbox_name(&mut self, tag: &str, mailbox: &Mailbox) -> Option<String> {
        let name = canonical(&mailbox.0);
        // IMAP4rev2 names are UTF-8; the store keeps modified UTF-7.
        let name = if self.rev2 {
            crate::imap::utf7::encode(&name)
        } else {
            name
        };
        if !safe_mailbox_name(&name) {
            self.no(tag, Code::Cannot, "Invalid mailbox name");
            return None;
        }
        let name = match self.cfg.hierarchy_separator.to_store(&name) {
            Ok(n) => n,
            Err(why) => {
                self.no(tag, Code::Cannot, why);
                return None;
            }
        };
        if safe_mailbox_name(&name) {
            Some(name)
        } else {
            self.no(tag, Code::Cannot, "Invalid mailbox name");
            None
        }
    }

    /// Whether a new mailbox may have this name (the store's form): well
    /// formed modified UTF-7 (no raw 8-bit name from a client that has
    /// not enabled IMAP4rev2's UTF-8), and a decoded form that stays
    /// inside the account too (no `..`, no leading `/`, no control
    /// character hidden in an `&` run). `NO [CANNOT]` otherwise.
    pub(super) fn creatable(&mut self, tag: &str, name: &str) -> bool {
        let ok = crate::imap::utf7::is_canonical(name)
            && crate::imap::utf7::decode(name).is_some_and(|d| safe_mailbox_name(&d));
        if !ok {
            self.no(tag, Code::Cannot, "Invalid mailbox name");
        }
        ok
    }

    /// A sequence set argument; `$` is the saved search result (RFC 5182),
    /// as UIDs or as the sequence numbers they have now.
    pub(super) fn set_of(&self, set: &SequenceSet, uid: bool) -> SeqSet {
        let SequenceSet::Set(set) = set else {
            return self.saved_set(uid);
        };
        set.clone()
    }

    fn saved_set(&self, uid: bool) -> SeqSet {
        let seqs: Vec<u32> = if uid {
            self.saved.iter().map(|u| u.0).collect()
        } else {
            self.saved
                .iter()
                .filter_map(|u| self.seq_of(*u))
                .map(|s| s.0)
                .collect()
        };
        SeqSet::from_numbers(&seqs)
    }

    pub(super) fn view(&self) -> Option<&MailboxView> {
        match &self.state {
            State::Selected(_, s) => Some(&s.view),
            _ => None,
        }
    }

    /// Whether a sequence set names a number past the last message (or
    /// `*` in an empty mailbox): RFC 9051 9 says BAD.
    pub(super) fn out_of_range(&self, set: &SeqSet) -> bool {
        let n = self
            .view()
            .map_or(0, |v| u32::try_from(v.messages.len()).unwrap_or(u32::MAX));
        set.highest()
            .is_some_and(|h| h == u32::MAX && n == 0 || h != u32::MAX && h > n)
    }

    /// (sequence number, UID) of the messages a set names.
    pub(super) fn resolve(&self, set: &SeqSet, uid: bool) -> Vec<(Seq, Uid)> {
        let Some(v) = self.view() else {
            return Vec::new();
        };
        let max_seq = u32::try_from(v.messages.len()).unwrap_or(u32::MAX);
        let max_uid = v.messages.last().map_or(0, |m| m.uid);
        v.messages
            .iter()
            .enumerate()
            .map(|(i, m)| (Seq::at(i), Uid(m.uid)))
            .filter(|&(seq, u)| {
                if uid {
                    set.contains(u.0, max_uid)
                } else {
                    set.contains(seq.0, max_seq)
                }
            })
            .collect()
    }

    /// The UIDs of the messages a set names.
    pub(super) fn uids_of(&self, set: &SeqSet, uid: bool) -> Vec<u32> {
        self.resolve(set, uid)
            .into_iter()
            .map(|(_, u)| u.0)
            .collect()
    }

    /// The view's index of a UID (messages are in UID order).
    pub(super) fn index_of(&self, uid: Uid) -> Option<usize> {
        self.view()
            .and_then(|v| v.messages.binary_search_by_key(&uid.0, |m| m.uid).ok())
    }

    /// A message's place and flags in the view.
    pub(super) fn meta(&self, uid: Uid) -> Option<&MessageMeta> {
        let i = self.index_of(uid)?;
        self.view().and_then(|v| v.messages.get(i))
    }

    /// Asks for the selected mailbox's state, then finishes `what` with
    /// the changes and `code` (after APPEND or COPY into it).
    pub(super) fn resync(&mut self, tag: String, what: &'static str, code: ResponseCode) {
        let (Some(user), Some(mailbox)) = (
            self.user().map(str::to_owned),
            self.selected().map(str::to_owned),
        ) else {
            return self.reply(&tag, Status::Ok, Some(code), &format!("{what} completed"));
        };
        let request = self.poll_request(mailbox);
        self.ask(
            user,
            request,
            Pending::Poll {
                tag,
                then: PollFor::Command {
                    what,
                    code: Some(code),
                },
            },
        );
    }

    pub(super) fn read_only(&self) -> bool {
        matches!(&self.state, State::Selected(_, s) if s.read_only)
    }

    /// A message's sequence number in the view.
    pub(super) fn seq_of(&self, uid: Uid) -> Option<Seq> {
        self.index_of(uid).map(Seq::at)
    }

    pub(super) fn apply_flags(&mut self, changed: &[Stored]) {
        if let State::Selected(_, s) = &mut self.state {
            let messages = Arc::make_mut(&mut s.view.messages);
            for c in changed {
                if let Ok(i) = messages.binary_search_by_key(&c.uid, |m| m.uid) {
                    messages[i].flags = c.flags.clone();
                    messages[i].modseq = c.modseq;
                    s.view.highest_modseq = s.view.highest_modseq.max(c.modseq);
                }
            }
        }
    }

    /// Removes UIDs from the view; returns the EXPUNGE lines (highest
    /// sequence number first, so each stays right), or one VANISHED line
    /// once QRESYNC is on.
    pub(super) fn remove_uids(&mut self, uids: &[u32]) -> String {
        self.forget_recent(uids);
        if self.qresync {
            let mut present: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| self.index_of(Uid(*u)).is_some())
                .collect();
            present.sort_unstable();
            present.dedup();
            if let State::Selected(_, s) = &mut self.state {
                if !present.is_empty() {
                    Arc::make_mut(&mut s.view.messages)
                        .retain(|m| present.binary_search(&m.uid).is_err());
                }
            }
            return self.vanished_line(&present).unwrap_or_default();
        }
        let mut lines = String::new();
        if let State::Selected(_, s) = &mut self.state {
            let mut seqs: Vec<usize> = uids
                .iter()
                .filter_map(|u| s.view.messages.binary_search_by_key(u, |m| m.uid).ok())
                .collect();
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            seqs.dedup();
            if !seqs.is_empty() {
                // Highest first: each line's number is still right after
                // the ones before it. Then one pass removes them all (one
                // `remove` each was quadratic: 3 s for 50,000 of 100,000).
                for i in &seqs {
                    let _ = write!(lines, "* {} EXPUNGE\r\n", i + 1);
                }
                seqs.reverse();
                let mut doomed = seqs.iter().peekable();
                let mut at = 0usize;
                Arc::make_mut(&mut s.view.messages).retain(|_| {
                    let gone = doomed.next_if_eq(&&at).is_some();
                    at += 1;
                    !gone
                });
            }
        }
        lines
    }

    /// Brings the view up to date; returns EXPUNGE, EXISTS and FETCH lines.
    /// Without `expunge`, messages gone from the store stay in the view
    /// (with their last flags) until a command that may report them.
    pub(super) fn sync_view(&mut self, new: MailboxView, expunge: bool) -> String {
        // Both lists are in UID order: one walk finds what is gone.
        let gone: Vec<u32> = match self.view() {
            Some(_) if !expunge => Vec::new(),
            Some(v) => {
                let mut rest = new.messages.iter().map(|n| n.uid).peekable();
                let mut gone = Vec::new();
                for m in v.messages.iter() {
                    while rest.next_if(|&u| u < m.uid).is_some() {}
                    if rest.peek() != Some(&m.uid) {
                        gone.push(m.uid);
                    }
                }
                gone
            }
            None => return String::new(),
        };
        let mut lines = self.remove_uids(&gone);
        let same = self
            .view()
            .is_some_and(|v| Arc::ptr_eq(&v.messages, &new.messages));
        let mut used: Vec<String> = new.keywords.clone();
        if !same {
            for f in new.messages.iter().flat_map(|m| m.flags.iter()) {
                if !used.contains(f) {
                    used.push(f.clone());
                }
            }
        }
        lines.push_str(&self.announce_keywords(&used));
        let condstore = self.condstore;
        let rev2 = self.rev2;
        let qresync = self.qresync;
        let mut exists = false;
        if let State::Selected(_, s) = &mut self.state {
            if !new.recent.is_empty() {
                s.view.recent.extend(new.recent.iter().copied());
                s.view.recent.sort_unstable();
                s.view.recent.dedup();
            }
            let recent = &s.view.recent;
            let old_max = s.view.messages.last().map_or(0, |m| m.uid);
            let same = Arc::ptr_eq(&s.view.messages, &new.messages);
            let known = s.view.messages.len();
            if same || *s.view.messages == *new.messages {
                // Nothing changed: keep sharing the store's copy.
                s.view.messages = new.messages.clone();
            } else if new.messages.get(..known) == Some(&s.view.messages[..]) {
                // Only messages added after the known ones (a delivery):
                // share the store's copy instead of copying the view.
                s.view.messages = new.messages.clone();
                let _ = write!(lines, "* {} EXISTS\r\n", s.view.messages.len());
                exists = true;
            } else {
                let messages = Arc::make_mut(&mut s.view.messages);
                for (i, m) in messages.iter_mut().enumerate() {
                    if let Ok(k) = new.messages.binary_search_by_key(&m.uid, |n| n.uid) {
                        let n = &new.messages[k];
                        if n.flags != m.flags || (condstore && n.modseq != m.modseq) {
                            m.flags = n.flags.clone();
                            m.modseq = n.modseq;
                            let modseq = if condstore {
                                format!(" MODSEQ ({})", m.modseq)
                            } else {
                                String::new()
                            };
                            let flags = if !rev2 && recent.binary_search(&m.uid).is_ok() {
                                let mut f: Vec<&str> = m.flags.iter().map(String::as_str).collect();
                                f.push("\\Recent");
                                response::flag_list(&f)
                            } else {
                                response::flag_list(&m.flags)
                            };
                            // RFC 7162 3.2.4: with QRESYNC on, the UID too.
                            let uid = if qresync {
                                format!("UID {} ", m.uid)
                            } else {
                                String::new()
                            };
                            let _ =
                                write!(lines, "* {} FETCH ({uid}FLAGS {flags}{modseq})\r\n", i + 1);
                        }
                    }
                }
                let before = messages.len();
                messages.extend(new.messages.iter().filter(|n| n.uid > old_max).cloned());
                if messages.len() != before {
                    let _ = write!(lines, "* {} EXISTS\r\n", messages.len());
                    exists = true;
                }
            }
            s.view.uid_next = new.uid_next;
            s.view.highest_modseq = new.highest_modseq;
        }
        if exists {
            // RFC 3501 7.3.2: RECENT goes with a change of the size.
            lines.push_str(&self.recent_line());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_account() {
        for bad in [
            "../x", "/etc", "~root", "a/../b", ".hidden", "a//b", "x\\y", "",
        ] {
            assert!(!safe_mailbox_name(bad), "{bad}");
        }
        for good in ["INBOX", "Sent", "Archive/2026", "Ünïcode"] {
            assert!(safe_mailbox_name(good), "{good}");
        }
    }
}
