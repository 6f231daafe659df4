//! FETCH (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE): the
//! items asked, the batches read from the store, the `\Seen` a non-PEEK
//! body fetch sets, and the `* n FETCH (...)` lines.

use super::select::{Seq, Uid};
use super::{ImapSession, Pending};
use crate::imap::command::{Args, Fetch};
use crate::imap::event::{Code, MailboxRequest, StoreMode, Summary};
use crate::imap::fetch::{self, Item};
use crate::imap::response::{self, Status};

/// What FETCH has gathered from the store.
#[derive(Debug, Default)]
pub(super) struct FetchData {
    bodies: Option<Vec<(u32, Vec<u8>)>>,
    pub(super) summaries: Option<Vec<(u32, Summary)>>,
}

/// A FETCH under way: what was asked, the messages of this batch, what
/// the store gave so far, and the messages of the next batches.
#[derive(Debug)]
pub(super) struct FetchJob {
    pub(super) tag: String,
    uid: bool,
    items: Vec<Item>,
    targets: Vec<(Seq, Uid)>,
    pub(super) data: FetchData,
    /// Messages for the next batches.
    rest: Vec<(Seq, Uid)>,
    /// Some messages asked for are gone from the store (expunged by
    /// another session, still in this session's view).
    expunged: bool,
}

impl ImapSession {
    pub(super) fn fetch(
        &mut self,
        user: String,
        tag: &str,
        args: Args<Fetch>,
        mailbox: String,
        uid: bool,
    ) {
        let t = tag.to_owned();
        let Some(args) = self.take(tag, args) else {
            return;
        };
        if args.vanished {
            return self.fetch_vanished(user, tag, args, mailbox, uid);
        }
        let Fetch {
            set,
            mut items,
            changed_since,
            ..
        } = args;
        let set = self.set_of(&set, uid);
        if changed_since.is_some() || items.contains(&Item::Modseq) {
            self.condstore_on();
        }
        // RFC 7162 3.2.4: with QRESYNC on, every FETCH names the UID.
        if (uid || self.qresync) && !items.contains(&Item::Uid) {
            items.insert(0, Item::Uid);
        }
        if (changed_since.is_some() || (self.condstore && items.contains(&Item::Flags)))
            && !items.contains(&Item::Modseq)
        {
            items.push(Item::Modseq);
        }
        if !uid && self.out_of_range(&set) {
            return self.bad(tag, "Invalid message sequence number");
        }
        let mut targets = self.resolve(&set, uid);
        if let Some(n) = changed_since {
            targets.retain(|(_, u)| self.meta(*u).is_some_and(|m| m.modseq > n));
        }
        if targets.is_empty() || !items.iter().any(Item::needs_body) {
            return self.finish_fetch(FetchJob {
                tag: t,
                uid,
                items,
                targets,
                data: FetchData::default(),
                rest: Vec::new(),
                expunged: false,
            });
        }
        self.fetch_batch(user, mailbox, t, uid, items, targets, false);
    }

    /// The bodies of a batch came: mark them `\Seen` first when a
    /// non-PEEK item asks for it, then answer.
    pub(super) fn fetched_bodies(&mut self, job: FetchJob, bodies: Vec<(u32, Vec<u8>)>) {
        let FetchJob {
            tag,
            uid,
            items,
            targets,
            rest,
            expunged,
            ..
        } = job;
        // A non-PEEK body fetch sets \Seen (RFC 9051 6.4.5).
        let marks: Vec<u32> = if items.iter().any(|i| {
            matches!(
                i,
                Item::Body { peek: false, .. } | Item::Binary { peek: false, .. }
            )
        }) && !self.read_only()
        {
            targets
                .iter()
                .map(|(_, u)| *u)
                .filter(|u| {
                    self.meta(*u)
                        .is_some_and(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                })
                .map(|u| u.0)
                .collect()
        } else {
            Vec::new()
        };
        match (
            marks.is_empty(),
            self.user().map(str::to_owned),
            self.selected().map(str::to_owned),
        ) {
            (false, Some(user), Some(mailbox)) => {
                let mut items = items;
                if !items.contains(&Item::Flags) {
                    items.push(Item::Flags);
                }
                if self.condstore && !items.contains(&Item::Modseq) {
                    items.push(Item::Modseq);
                }
                self.ask(
                    user,
                    MailboxRequest::Store {
                        mailbox,
                        uids: marks,
                        mode: StoreMode::Add,
                        flags: vec!["\\Seen".into()],
                        unchanged_since: None,
                    },
                    Pending::Fetch(FetchJob {
                        tag,
                        uid,
                        items,
                        targets,
                        data: FetchData {
                            bodies: Some(bodies),
                            summaries: None,
                        },
                        rest,
                        expunged,
                    }),
                );
            }
            _ => {
                let data = FetchData {
                    bodies: Some(bodies),
                    summaries: None,
                };
                self.finish_fetch(FetchJob {
                    tag,
                    uid,
                    items,
                    targets,
                    data,
                    rest,
                    expunged,
                })
            }
        }
    }

    /// Asks the store for the next batch of a FETCH: a few megabytes of
    /// messages at a time, so a `FETCH 1:* BODY[]` never holds a whole
    /// mailbox in memory, and the client reads one batch while the store
    /// reads the next.
    #[allow(clippy::too_many_arguments)] // the FETCH state, passed along batch by batch
    fn fetch_batch(
        &mut self,
        user: String,
        mailbox: String,
        tag: String,
        uid: bool,
        items: Vec<Item>,
        mut targets: Vec<(Seq, Uid)>,
        expunged: bool,
    ) {
        let bytes = items.iter().any(Item::needs_bytes);
        let header_only = items
            .iter()
            .filter(|i| i.needs_body())
            .all(|i| i.header_only() || *i == Item::Envelope);
        let (max_n, max_bytes) = match (bytes, header_only) {
            (false, _) => (2048, u64::MAX),
            (true, true) => (512, u64::MAX),
            (true, false) => (512, 4 << 20),
        };
        let n = self.batch_len(targets.iter().map(|(_, u)| *u), max_n, max_bytes);
        let rest = targets.split_off(n.max(1).min(targets.len()));
        let uids = targets.iter().map(|(_, u)| u.0).collect();
        // ENVELOPE and BODYSTRUCTURE alone come from the store's cached
        // summaries; header sections need only the header.
        let request = if bytes {
            MailboxRequest::Bodies {
                mailbox,
                uids,
                header_only,
            }
        } else {
            MailboxRequest::Summaries { mailbox, uids }
        };
        self.ask(
            user,
            request,
            Pending::Fetch(FetchJob {
                tag,
                uid,
                items,
                targets,
                data: FetchData::default(),
                rest,
                expunged,
            }),
        );
    }

    /// Ends a FETCH whose BINARY met an encoding it cannot undo: the
    /// messages answered so far, then `NO [UNKNOWN-CTE]` (RFC 3516 4.1).
    fn unknown_cte(&mut self, tag: &str, out: &[u8], cte: &str) {
        self.send(out);
        let cte: String = cte
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(40)
            .collect();
        let text = format!("Cannot decode Content-Transfer-Encoding {cte}");
        self.no(tag, Code::UnknownCte, &text);
    }

    /// How many of these messages go in one batch: at most `max_n`, and
    /// no more once `max_bytes` is reached (one at least).
    pub(super) fn batch_len(
        &self,
        uids: impl Iterator<Item = Uid>,
        max_n: usize,
        max_bytes: u64,
    ) -> usize {
        let mut n = 0;
        let mut sum = 0u64;
        for u in uids {
            if n >= max_n || (n > 0 && sum >= max_bytes) {
                break;
            }
            sum += self.meta(u).map_or(0, |m| m.size);
            n += 1;
        }
        n
    }

    /// Writes the FETCH lines of a batch, then asks for the next batch or
    /// ends with the tagged OK.
    pub(super) fn finish_fetch(&mut self, job: FetchJob) {
        let FetchJob {
            tag,
            uid,
            items,
            targets,
            data,
            rest,
            mut expunged,
        } = job;
        let mut out = Vec::new();
        let needs_data = items.iter().any(Item::needs_body);
        let by_uid: std::collections::HashMap<Uid, &[u8]> = data
            .bodies
            .iter()
            .flatten()
            .map(|(u, d)| (Uid(*u), d.as_slice()))
            .collect();
        let summaries: std::collections::HashMap<Uid, &Summary> = data
            .summaries
            .iter()
            .flatten()
            .map(|(u, d)| (Uid(*u), d))
            .collect();
        for (seq, uid) in &targets {
            let Some(meta) = self.meta(*uid).cloned() else {
                continue;
            };
            let body = by_uid.get(uid).copied();
            let summary = summaries.get(uid).copied();
            if needs_data && body.is_none() && summary.is_none() {
                // Expunged by another session: no made-up NILs; the
                // tagged NO says some were left out (RFC 2180 4.1.2).
                expunged = true;
                continue;
            }
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for item in &items {
                match item {
                    Item::Flags => parts.push(
                        format!("FLAGS {}", self.flags_shown(meta.uid, &meta.flags)).into_bytes(),
                    ),
                    Item::Uid => parts.push(format!("UID {uid}").into_bytes()),
                    Item::Size => parts.push(format!("RFC822.SIZE {}", meta.size).into_bytes()),
                    Item::InternalDate => parts.push(
                        format!("INTERNALDATE {}", fetch::internal_date(meta.internal_date))
                            .into_bytes(),
                    ),
                    Item::Modseq => parts.push(format!("MODSEQ ({})", meta.modseq).into_bytes()),
                    Item::Envelope => {
                        let e = match (summary, body) {
                            (Some(s), _) => s.envelope.clone(),
                            (None, Some(b)) => crate::imap::mime::envelope(b),
                            (None, None) => "NIL".to_owned(),
                        };
                        parts.push(format!("ENVELOPE {e}").into_bytes());
                    }
                    Item::Structure(ext) => {
                        let name = if *ext { "BODYSTRUCTURE" } else { "BODY" };
                        let s = match (summary, body) {
                            (Some(s), _) if *ext => s.bodystructure.clone(),
                            (Some(s), _) => s.body.clone(),
                            (None, Some(b)) => {
                                crate::imap::mime::bodystructure_with(b, *ext, self.cfg.mime)
                            }
                            (None, None) => "NIL".to_owned(),
                        };
                        parts.push(format!("{name} {s}").into_bytes());
                    }
                    Item::Body {
                        section,
                        partial,
                        label,
                        ..
                    } => {
                        let Some(b) = body else {
                            parts.push(format!("{label} NIL").into_bytes());
                            continue;
                        };
                        let bytes = cut(
                            fetch::section_bytes_with(b, section, self.cfg.mime),
                            *partial,
                        );
                        parts.push(response::literal(label, &bytes));
                    }
                    Item::Binary {
                        path,
                        partial,
                        label,
                        ..
                    } => {
                        let Some(b) = body else {
                            parts.push(format!("{label} NIL").into_bytes());
                            continue;
                        };
                        let bytes = match crate::imap::mime::binary_with(b, path, self.cfg.mime) {
                            Ok(x) => cut(x, *partial),
                            Err(e) => return self.unknown_cte(&tag, &out, &e.0),
                        };
                        // RFC 3516 4.3: literal8 when the data has NULs.
                        parts.push(if bytes.contains(&0) {
                            response::literal8(label, &bytes)
                        } else {
                            response::literal(label, &bytes)
                        });
                    }
                    Item::BinarySize { path, label } => {
                        let n = match body
                            .map(|b| crate::imap::mime::binary_with(b, path, self.cfg.mime))
                        {
                            Some(Ok(x)) => x.len(),
                            Some(Err(e)) => return self.unknown_cte(&tag, &out, &e.0),
                            None => 0,
                        };
                        parts.push(format!("{label} {n}").into_bytes());
                    }
                }
            }
            out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(p);
            }
            out.extend_from_slice(b")\r\n");
        }
        if !rest.is_empty() {
            if let (Some(user), Some(mailbox)) = (
                self.user().map(str::to_owned),
                self.selected().map(str::to_owned),
            ) {
                self.send(&out);
                return self.fetch_batch(user, mailbox, tag, uid, items, rest, expunged);
            }
        }
        let end = if expunged {
            response::tagged(
                &tag,
                Status::No,
                Some(&Code::ExpungeIssued.into()),
                "Some of the requested messages no longer exist",
            )
        } else {
            response::tagged(&tag, Status::Ok, None, "FETCH completed")
        };
        out.extend_from_slice(end.as_bytes());
        self.send(&out);
    }
}

/// `<offset.length>` of some bytes (clamped to what there is).
fn cut(mut bytes: Vec<u8>, partial: Option<(u64, u64)>) -> Vec<u8> {
    if let Some((o, l)) = partial {
        let o = usize::try_from(o).unwrap_or(usize::MAX).min(bytes.len());
        let end = o
            .saturating_add(usize::try_from(l).unwrap_or(usize::MAX))
            .min(bytes.len());
        bytes.truncate(end);
        bytes.drain(..o);
    }
    bytes
}
