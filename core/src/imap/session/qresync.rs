//! `\Recent` (RFC 3501 2.3.2) and QRESYNC (RFC 7162 3.2): the recent
//! messages of this session, SELECT's QRESYNC parameter answered with
//! `VANISHED (EARLIER)` and the FETCH of what changed, `UID FETCH ...
//! (CHANGEDSINCE m VANISHED)`, and `* VANISHED` in place of EXPUNGE once
//! QRESYNC is enabled.

use super::{ImapSession, Pending, State};
use crate::imap::command::{Args, Fetch, Qresync};
use crate::imap::event::{MailboxRequest, MailboxView, MessageMeta};
use crate::imap::response;
use crate::imap::set::SeqSet;
use crate::imap::vanished::{missing_ranges, ranges_text};
use std::borrow::Cow;
use std::fmt::Write as _;

/// The most (sequence number, UID) pairs of a QRESYNC sequence match
/// looked at.
const MAX_SEQ_MATCH: u64 = 100_000;

/// The highest UID the client's (sequence number, UID) pairs show that
/// nothing at or below it was expunged (RFC 7162 3.2.5.2): where its
/// sequence number still names the same UID, the messages below it are
/// the ones the client had (new ones get higher UIDs). 0: none.
pub(super) fn intact_below(seqs: &SeqSet, uids: &SeqSet, present: &[u32]) -> u32 {
    let count = |s: &SeqSet| {
        s.ranges()
            .iter()
            .map(|&(a, b)| u64::from(b.saturating_sub(a)) + 1)
            .sum::<u64>()
    };
    let numbers = |s: &SeqSet| {
        s.ranges()
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .collect::<Vec<u32>>()
    };
    let star = |s: &SeqSet| s.ranges().iter().any(|&(_, b)| b == u32::MAX);
    if count(seqs) > MAX_SEQ_MATCH || count(uids) > MAX_SEQ_MATCH || star(seqs) || star(uids) {
        return 0;
    }
    let (seqs, uids) = (numbers(seqs), numbers(uids));
    if seqs.len() != uids.len() {
        return 0;
    }
    seqs.iter()
        .zip(&uids)
        .filter(|&(&s, &u)| {
            usize::try_from(s)
                .ok()
                .and_then(|s| present.get(s.checked_sub(1)?))
                == Some(&u)
        })
        .map(|(_, &u)| u)
        .max()
        .unwrap_or(0)
}

/// SELECT with QRESYNC between the store's view and its expunged UIDs.
#[derive(Debug)]
pub(super) struct SelectJob {
    pub(super) tag: String,
    pub(super) name: String,
    pub(super) read_only: bool,
    pub(super) view: MailboxView,
    pub(super) params: Qresync,
}

/// UID FETCH with CHANGEDSINCE and VANISHED, waiting for the expunged UIDs.
#[derive(Debug)]
pub(super) struct FetchVanishedJob {
    pub(super) tag: String,
    pub(super) user: String,
    pub(super) mailbox: String,
    pub(super) fetch: Fetch,
    pub(super) uids: SeqSet,
}

impl ImapSession {
    /// Whether a read-write SELECT or poll in this session takes
    /// recency (IMAP4rev2 has no `\Recent`).
    pub(super) fn takes_recent(&self, read_only: bool) -> bool {
        !read_only && !self.rev2
    }

    /// The request for a fresh view of the selected `mailbox`.
    pub(super) fn poll_request(&self, mailbox: String) -> MailboxRequest {
        MailboxRequest::Poll {
            mailbox,
            take_recent: self.takes_recent(self.read_only()),
        }
    }

    /// Whether `uid` is recent in this session.
    pub(super) fn is_recent(&self, uid: u32) -> bool {
        !self.rev2
            && self
                .view()
                .is_some_and(|v| v.recent.binary_search(&uid).is_ok())
    }

    /// A message's flags as the client sees them: `\Recent` added where
    /// this session holds it.
    pub(super) fn flags_shown(&self, uid: u32, flags: &[String]) -> String {
        if self.is_recent(uid) {
            let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
            all.push("\\Recent");
            response::flag_list(&all)
        } else {
            response::flag_list(flags)
        }
    }

    /// A message as SEARCH sees it: with `\Recent` among its flags where
    /// this session holds it (RECENT, NEW, OLD).
    pub(super) fn with_recent<'a>(&self, m: &'a MessageMeta) -> Cow<'a, MessageMeta> {
        if self.is_recent(m.uid) {
            let mut m = m.clone();
            m.flags.push("\\Recent".to_owned());
            Cow::Owned(m)
        } else {
            Cow::Borrowed(m)
        }
    }

    /// `* n RECENT` for the view (nothing under IMAP4rev2).
    pub(super) fn recent_line(&self) -> String {
        match self.view() {
            Some(v) if !self.rev2 => format!("* {} RECENT\r\n", v.recent.len()),
            _ => String::new(),
        }
    }

    /// Lines telling the client that `uids` are gone: one `* VANISHED`
    /// once QRESYNC is on (RFC 7162 3.2.10), else nothing (the caller
    /// writes EXPUNGE lines).
    pub(super) fn vanished_line(&self, uids: &[u32]) -> Option<String> {
        (self.qresync && !uids.is_empty())
            .then(|| format!("* VANISHED {}\r\n", SeqSet::compact(uids)))
    }

    /// SELECT's view came with a QRESYNC parameter for the same
    /// UIDVALIDITY: ask which UIDs went since the client's mod-sequence.
    pub(super) fn select_qresync(&mut self, user: String, job: SelectJob) {
        let request = MailboxRequest::Vanished {
            mailbox: job.name.clone(),
            since: job.params.modseq,
        };
        self.ask(user, request, Pending::SelectVanished(Box::new(job)));
    }

    /// The expunged UIDs came: SELECT's answer with `VANISHED (EARLIER)`
    /// and the FETCH of every message changed since (RFC 7162 3.2.5.1).
    pub(super) fn select_vanished(&mut self, job: SelectJob, uids: &[u32], floor: u64) {
        let SelectJob {
            tag,
            name,
            read_only,
            view,
            params,
        } = job;
        let top = view.uid_next.saturating_sub(1);
        let known = |u: u32| {
            params
                .known_uids
                .as_ref()
                .is_none_or(|k| k.contains(u, top))
        };
        let present: Vec<u32> = view.messages.iter().map(|m| m.uid).collect();
        let gone = if params.modseq >= floor {
            let exact: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|&u| known(u) && present.binary_search(&u).is_err())
                .collect();
            SeqSet::compact(&exact)
        } else {
            // Not known exactly: every UID of the client's range that
            // is not here (RFC 7162 3.2.5.1 allows it), above the UIDs
            // the client's sequence match shows intact (3.2.5.2).
            let whole = [(1, u32::MAX)];
            let range = params
                .known_uids
                .as_ref()
                .map_or(&whole[..], SeqSet::ranges);
            let intact = params
                .seq_match
                .as_ref()
                .map_or(0, |(seqs, uids)| intact_below(seqs, uids, &present));
            let above: Vec<(u32, u32)> = range
                .iter()
                .map(|&(a, b)| (a.max(intact.saturating_add(1)), b))
                .filter(|&(a, b)| a <= b)
                .collect();
            ranges_text(&missing_ranges(&above, view.uid_next, &present))
        };
        let mut extra = String::new();
        if !gone.is_empty() {
            let _ = write!(extra, "* VANISHED (EARLIER) {gone}\r\n");
        }
        let recent = |u: u32| !self.rev2 && view.recent.binary_search(&u).is_ok();
        for (i, m) in view.messages.iter().enumerate() {
            if m.modseq <= params.modseq || !known(m.uid) {
                continue;
            }
            let flags = if recent(m.uid) {
                let mut f: Vec<&str> = m.flags.iter().map(String::as_str).collect();
                f.push("\\Recent");
                response::flag_list(&f)
            } else {
                response::flag_list(&m.flags)
            };
            let _ = write!(
                extra,
                "* {} FETCH (UID {} FLAGS {flags} MODSEQ ({}))\r\n",
                i + 1,
                m.uid,
                m.modseq
            );
        }
        self.selected_view(tag, name, read_only, view, &extra);
    }

    /// UID FETCH with VANISHED: checked (RFC 7162 3.2.6: UID FETCH,
    /// with CHANGEDSINCE, QRESYNC enabled; BAD otherwise), then the
    /// expunged UIDs are asked before the FETCH runs.
    pub(super) fn fetch_vanished(
        &mut self,
        user: String,
        tag: &str,
        fetch: Fetch,
        mailbox: String,
        uid: bool,
    ) {
        if !self.qresync {
            return self.bad(tag, "Unknown FETCH modifier");
        }
        let Some(since) = fetch.changed_since.filter(|_| uid) else {
            return self.bad(tag, "VANISHED needs UID FETCH with CHANGEDSINCE");
        };
        let uids = self.set_of(&fetch.set, true);
        self.ask_fetch_vanished(user, tag, fetch, mailbox, uids, since);
    }

    fn ask_fetch_vanished(
        &mut self,
        user: String,
        tag: &str,
        fetch: Fetch,
        mailbox: String,
        uids: SeqSet,
        since: u64,
    ) {
        let request = MailboxRequest::Vanished {
            mailbox: mailbox.clone(),
            since,
        };
        let job = FetchVanishedJob {
            tag: tag.to_owned(),
            user: user.clone(),
            mailbox,
            fetch,
            uids,
        };
        self.ask(user, request, Pending::FetchVanished(Box::new(job)));
    }

    /// The expunged UIDs came: `* VANISHED (EARLIER)` for those in the
    /// UID set, then the FETCH itself.
    pub(super) fn fetched_vanished(&mut self, job: FetchVanishedJob, uids: &[u32], floor: u64) {
        let FetchVanishedJob {
            tag,
            user,
            mailbox,
            mut fetch,
            uids: set,
        } = job;
        let since = fetch.changed_since.unwrap_or(0);
        let (uid_next, present): (u32, Vec<u32>) = match self.view() {
            Some(v) => (v.uid_next, v.messages.iter().map(|m| m.uid).collect()),
            None => (1, Vec::new()),
        };
        let top = uid_next.saturating_sub(1);
        let gone = if since >= floor {
            let exact: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|&u| set.contains(u, top) && present.binary_search(&u).is_err())
                .collect();
            SeqSet::compact(&exact)
        } else {
            ranges_text(&missing_ranges(set.ranges(), uid_next, &present))
        };
        if !gone.is_empty() {
            self.send_str(&format!("* VANISHED (EARLIER) {gone}\r\n"));
        }
        fetch.vanished = false;
        let args: Args<Fetch> = Ok(fetch);
        self.fetch(user, &tag, args, mailbox, true);
    }

    /// ENABLE QRESYNC (RFC 7162 3.2.3): CONDSTORE too.
    pub(super) fn qresync_on(&mut self) -> bool {
        let newly = !self.qresync;
        self.qresync = true;
        self.condstore_on();
        newly
    }

    /// Keeps the session's recent set to messages still in the view.
    pub(super) fn forget_recent(&mut self, uids: &[u32]) {
        if let State::Selected(_, s) = &mut self.state {
            if s.view.recent.is_empty() {
                return;
            }
            let mut gone = uids.to_vec();
            gone.sort_unstable();
            s.view.recent.retain(|u| gone.binary_search(u).is_err());
        }
    }
}
