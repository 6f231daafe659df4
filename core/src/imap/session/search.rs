//! SEARCH (RFC 9051 6.4.4), ESEARCH's RETURN options (RFC 4731),
//! SEARCHRES's `$` (RFC 5182) and SORT (RFC 5256): evaluating the key on
//! the view, reading message bytes in batches when the key needs them,
//! and the answer lines.

use super::select::{Seq, Uid};
use super::{ImapSession, Pending};
use crate::imap::command::{Args, Search, SearchForm, SearchReturn, SortKey};
use crate::imap::event::{MailboxRequest, Summary};
use crate::imap::response::{self, Status};
use crate::imap::search::Key;
use crate::imap::set::SeqSet;
use crate::imap::thread::{self, Algorithm, Msg};
use std::fmt::Write as _;

/// A SEARCH reading messages in batches: the (sequence, UID) hits so
/// far and the UIDs still to read.
pub(super) type Scan = (Vec<(Seq, Uid)>, Vec<Uid>);

/// A THREAD reading the headers of its hits in batches.
#[derive(Debug)]
pub(super) struct ThreadJob {
    pub(super) tag: String,
    uid: bool,
    algorithm: Algorithm,
    /// What the headers read so far say.
    msgs: Vec<Msg>,
    /// The hits whose headers are still to read.
    rest: Vec<(Seq, Uid)>,
}

impl ImapSession {
    /// SEARCH or SORT.
    pub(super) fn search(&mut self, user: String, tag: &str, args: Args<Search>, uid: bool) {
        let t = tag.to_owned();
        let Some(Search { mut form, mut key }) = self.take(tag, args) else {
            return;
        };
        // RFC 9051 6.4.4: IMAP4rev2 answers SEARCH with ESEARCH.
        if self.rev2 && form == SearchForm::Plain {
            form = SearchForm::Extended(vec![SearchReturn::All]);
        }
        let saved: Vec<u32> = self.saved.iter().map(|u| u.0).collect();
        key.resolve_saved(&saved);
        if key.uses_modseq() {
            self.condstore_on();
        }
        let scan = key.needs_body().then(|| {
            let uids = self
                .view()
                .map(|v| v.messages.iter().map(|m| Uid(m.uid)).collect())
                .unwrap_or_default();
            (Vec::new(), uids)
        });
        self.search_hits(user, t, uid, key, form, scan, &[]);
    }

    /// Evaluates a search on the view (with message bytes when the key
    /// needs them), then answers, or asks for summaries to SORT by.
    ///
    /// A key that needs message bytes reads them in batches (`scan`: the
    /// hits so far and the UIDs left), a few megabytes at a time.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn search_hits(
        &mut self,
        user: String,
        tag: String,
        uid: bool,
        key: Key,
        form: SearchForm,
        scan: Option<Scan>,
        bodies: &[(u32, Vec<u8>)],
    ) {
        let (max_seq, max_uid) = self.view().map_or((0, 0), |v| {
            (
                u32::try_from(v.messages.len()).unwrap_or(u32::MAX),
                v.messages.last().map_or(0, |m| m.uid),
            )
        });
        let hits = match scan {
            Some((mut found, mut rest)) => {
                for (u, body) in bodies {
                    let u = Uid(*u);
                    let (Some(seq), Some(m)) = (self.seq_of(u), self.meta(u)) else {
                        continue;
                    };
                    if key.matches(&self.with_recent(m), seq.0, max_seq, max_uid, Some(body)) {
                        found.push((seq, u));
                    }
                }
                if !rest.is_empty() {
                    let Some(mailbox) = self.selected().map(str::to_owned) else {
                        return self.reply(&tag, Status::No, None, "No mailbox selected");
                    };
                    let n = self.batch_len(rest.iter().copied(), 512, 4 << 20);
                    let later = rest.split_off(n.min(rest.len()));
                    let header_only = !key.needs_text();
                    return self.ask(
                        user,
                        MailboxRequest::Bodies {
                            mailbox,
                            uids: rest.iter().map(|u| u.0).collect(),
                            header_only,
                        },
                        Pending::Search {
                            tag,
                            uid,
                            key,
                            form,
                            hits: None,
                            scan: Some((found, later)),
                        },
                    );
                }
                found.sort_unstable();
                found
            }
            None => {
                let mut hits = Vec::new();
                if let Some(v) = self.view() {
                    for (i, m) in v.messages.iter().enumerate() {
                        let seq = Seq::at(i);
                        if key.matches(&self.with_recent(m), seq.0, max_seq, max_uid, None) {
                            hits.push((seq, Uid(m.uid)));
                        }
                    }
                }
                hits
            }
        };
        match (&form, self.selected().map(str::to_owned)) {
            (SearchForm::Thread(algorithm), Some(_)) => {
                let job = ThreadJob {
                    tag,
                    uid,
                    algorithm: *algorithm,
                    msgs: Vec::new(),
                    rest: hits,
                };
                self.thread_batch(job, &[]);
            }
            (SearchForm::Sort(_), Some(mailbox)) if !hits.is_empty() => {
                let uids = hits.iter().map(|(_, u)| u.0).collect();
                self.ask(
                    user,
                    MailboxRequest::Summaries { mailbox, uids },
                    Pending::Search {
                        tag,
                        uid,
                        key,
                        form,
                        hits: Some(hits),
                        scan: None,
                    },
                );
            }
            _ => self.finish_search(&tag, uid, &key, &form, hits, &[]),
        }
    }

    /// Writes the SEARCH, ESEARCH or SORT answer.
    pub(super) fn finish_search(
        &mut self,
        tag: &str,
        uid: bool,
        key: &Key,
        form: &SearchForm,
        mut hits: Vec<(Seq, Uid)>,
        summaries: &[(u32, Summary)],
    ) {
        // The number the client asked for: the UID or the sequence number.
        let number = |h: &(Seq, Uid)| if uid { h.1 .0 } else { h.0 .0 };
        // RFC 7162 3.1.5: a search with MODSEQ reports the highest one found.
        let modseq = if key.uses_modseq() {
            hits.iter()
                .filter_map(|(_, u)| self.meta(*u).map(|m| m.modseq))
                .max()
        } else {
            None
        };
        // `* SEARCH 2 5 (MODSEQ 9)` or `* SORT ...`, then the tagged OK.
        let list = |what: &str, hits: &[(Seq, Uid)], r: &mut String| {
            let _ = write!(r, "* {what}");
            for h in hits {
                let _ = write!(r, " {}", number(h));
            }
            if let Some(m) = modseq {
                let _ = write!(r, " (MODSEQ {m})");
            }
            r.push_str("\r\n");
            r.push_str(&response::tagged(
                tag,
                Status::Ok,
                None,
                &format!("{what} completed"),
            ));
        };
        let mut r = String::new();
        match form {
            SearchForm::Plain => {
                list("SEARCH", &hits, &mut r);
            }
            SearchForm::Extended(ret) => {
                if ret.contains(&SearchReturn::Save) {
                    // RFC 5182 2.1: with MIN or MAX, only those are saved.
                    let by_num = |a: &&(Seq, Uid), b: &&(Seq, Uid)| number(a).cmp(&number(b));
                    let min = ret.contains(&SearchReturn::Min);
                    let max = ret.contains(&SearchReturn::Max);
                    self.saved = if min || max {
                        let mut v = Vec::new();
                        if let (true, Some(h)) = (min, hits.iter().min_by(by_num)) {
                            v.push(h.1);
                        }
                        if let (true, Some(h)) = (max, hits.iter().max_by(by_num)) {
                            v.push(h.1);
                        }
                        v.dedup();
                        v
                    } else {
                        hits.iter().map(|h| h.1).collect()
                    };
                    if ret.len() == 1 {
                        // SAVE alone: no ESEARCH response.
                        r.push_str(&response::tagged(tag, Status::Ok, None, "SEARCH completed"));
                        return self.send_str(&r);
                    }
                }
                let _ = write!(r, "* ESEARCH (TAG {})", response::quoted(tag));
                if uid {
                    r.push_str(" UID");
                }
                let nums: Vec<u32> = hits.iter().map(number).collect();
                for o in ret {
                    match o {
                        SearchReturn::Min => {
                            if let Some(x) = nums.iter().min() {
                                let _ = write!(r, " MIN {x}");
                            }
                        }
                        SearchReturn::Max => {
                            if let Some(x) = nums.iter().max() {
                                let _ = write!(r, " MAX {x}");
                            }
                        }
                        SearchReturn::Count => {
                            let _ = write!(r, " COUNT {}", nums.len());
                        }
                        SearchReturn::Save => {}
                        SearchReturn::All => {
                            if !nums.is_empty() {
                                let _ = write!(r, " ALL {}", SeqSet::compact(&nums));
                            }
                        }
                    }
                }
                // RFC 4731 3.2: with only MIN and/or MAX, the highest
                // mod-sequence of the messages returned.
                let modseq = if ret
                    .iter()
                    .any(|o| *o == SearchReturn::All || *o == SearchReturn::Count)
                {
                    modseq
                } else {
                    let pick = |h: Option<&(Seq, Uid)>| {
                        h.and_then(|(_, u)| self.meta(*u)).map(|m| m.modseq)
                    };
                    let by_num = |a: &&(Seq, Uid), b: &&(Seq, Uid)| number(a).cmp(&number(b));
                    let min = ret
                        .contains(&SearchReturn::Min)
                        .then(|| pick(hits.iter().min_by(by_num)));
                    let max = ret
                        .contains(&SearchReturn::Max)
                        .then(|| pick(hits.iter().max_by(by_num)));
                    modseq.and(min.flatten().max(max.flatten()))
                };
                if let (Some(m), false) = (modseq, nums.is_empty()) {
                    let _ = write!(r, " MODSEQ {m}");
                }
                r.push_str("\r\n");
                r.push_str(&response::tagged(tag, Status::Ok, None, "SEARCH completed"));
            }
            SearchForm::Sort(crit) => {
                let by_uid: std::collections::HashMap<Uid, &Summary> =
                    summaries.iter().map(|(u, s)| (Uid(*u), s)).collect();
                let default = Summary::default();
                let metas: std::collections::HashMap<Uid, (u64, i64)> = hits
                    .iter()
                    .filter_map(|(_, u)| self.meta(*u).map(|m| (*u, (m.size, m.internal_date))))
                    .collect();
                hits.sort_by(|a, b| {
                    let (sa, sb) = (
                        by_uid.get(&a.1).copied().unwrap_or(&default),
                        by_uid.get(&b.1).copied().unwrap_or(&default),
                    );
                    let (ma, mb) = (
                        metas.get(&a.1).copied().unwrap_or_default(),
                        metas.get(&b.1).copied().unwrap_or_default(),
                    );
                    for (by, reverse) in crit {
                        let o = match by {
                            SortKey::Arrival => ma.1.cmp(&mb.1),
                            SortKey::Size => ma.0.cmp(&mb.0),
                            SortKey::Date => sa
                                .sort
                                .date
                                .unwrap_or(ma.1)
                                .cmp(&sb.sort.date.unwrap_or(mb.1)),
                            // i;unicode-casemap (RFC 5051): titlecase,
                            // upper case for ASCII.
                            SortKey::From => casemap(&sa.sort.from, &sb.sort.from),
                            SortKey::To => casemap(&sa.sort.to, &sb.sort.to),
                            SortKey::Cc => casemap(&sa.sort.cc, &sb.sort.cc),
                            SortKey::Subject => casemap(&sa.sort.subject, &sb.sort.subject),
                        };
                        let o = if *reverse { o.reverse() } else { o };
                        if o != std::cmp::Ordering::Equal {
                            return o;
                        }
                    }
                    // RFC 5256: ties go by sequence number.
                    a.0.cmp(&b.0)
                });
                list("SORT", &hits, &mut r);
            }
            // Answered by `thread_batch` once the headers are read.
            SearchForm::Thread(_) => {
                list("THREAD", &[], &mut r);
            }
        }
        self.send_str(&r);
    }
}

impl ImapSession {
    /// THREAD: takes what a batch of headers says, asks for the next
    /// batch, or answers `* THREAD` once all are read.
    pub(super) fn thread_batch(&mut self, mut job: ThreadJob, bodies: &[(u32, Vec<u8>)]) {
        for (u, header) in bodies {
            let u = Uid(*u);
            let (Some(seq), Some(date)) = (self.seq_of(u), self.meta(u).map(|m| m.internal_date))
            else {
                continue;
            };
            let number = if job.uid { u.0 } else { seq.0 };
            job.msgs.push(Msg::from_header(number, header, date));
        }
        if !job.rest.is_empty() {
            if let (Some(user), Some(mailbox)) = (
                self.user().map(str::to_owned),
                self.selected().map(str::to_owned),
            ) {
                // As SEARCH reads headers: a few megabytes at a time.
                let n = self.batch_len(job.rest.iter().map(|(_, u)| *u), 512, 4 << 20);
                let later = job.rest.split_off(n);
                let uids = job.rest.iter().map(|(_, u)| u.0).collect();
                job.rest = later;
                return self.ask(
                    user,
                    MailboxRequest::Bodies {
                        mailbox,
                        uids,
                        header_only: true,
                    },
                    Pending::Thread(job),
                );
            }
        }
        let mut r = String::from("* THREAD ");
        r.push_str(&thread::threads(job.algorithm, &job.msgs));
        let r = r.trim_end().to_owned() + "\r\n";
        self.send_str(&r);
        self.completed(&job.tag, "THREAD");
    }
}

/// Compares two strings as `i;unicode-casemap` does (RFC 5051), near
/// enough: character by character, upper-cased.
fn casemap(a: &str, b: &str) -> std::cmp::Ordering {
    a.chars()
        .flat_map(char::to_uppercase)
        .cmp(b.chars().flat_map(char::to_uppercase))
}
