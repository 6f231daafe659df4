//! The mailbox list and counts: LIST and LSUB with LIST-EXTENDED
//! (RFC 5258), LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154), STATUS,
//! QUOTA (RFC 9208), NAMESPACE, and CREATE/DELETE/RENAME/SUBSCRIBE.

use super::{HierarchySeparator, ImapSession, Pending};
use crate::imap::command::{Args, List, Mailbox, Rename, Status};
use crate::imap::event::{Code, ListEntry, MailboxRequest};
use crate::imap::response;
use std::fmt::Write as _;

/// What CREATE, DELETE, SUBSCRIBE and UNSUBSCRIBE do to a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Manage {
    Create,
    Delete,
    Subscribe,
    Unsubscribe,
}

/// A LIST or LSUB waiting for the store's entries: how to pick and show them.
#[derive(Debug)]
pub(super) struct ListQuery {
    pub(super) tag: String,
    lsub: bool,
    sub_attr: bool,
    special_only: bool,
    status: Option<Vec<String>>,
    /// RECURSIVEMATCH with SUBSCRIBED: the patterns asked.
    recursive: Option<Vec<String>>,
    /// UTF-8 patterns to match on the names as shown (IMAP4rev2).
    filter: Option<Vec<String>>,
    /// A `%` pattern: a parent the pattern matches is listed (`\NonExistent`,
    /// LSUB's `\Noselect`) when only a child of it exists or is subscribed.
    parents: bool,
}

/// Canonical form: `INBOX` in any case is `INBOX`.
/// IMAP LIST wildcards: `*` matches anything, `%` anything but `/`.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    wildcard_with(pattern, name, b'/')
}

/// [`wildcard`] with `%` stopping at `sep`.
pub(super) fn wildcard_with(pattern: &str, name: &str, sep: u8) -> bool {
    fn m(p: &[u8], n: &[u8], sep: u8, budget: &mut u32) -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| m(rest, &n[i..], sep, budget)),
            Some((b'%', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != sep)
                .any(|i| m(rest, &n[i..], sep, budget)),
            Some((c, rest)) => {
                n.first().is_some_and(|x| x.eq_ignore_ascii_case(c))
                    && m(rest, &n[1..], sep, budget)
            }
        }
    }
    let mut budget = 100_000;
    m(pattern.as_bytes(), name.as_bytes(), sep, &mut budget)
}

/// Subscribed names with no mailbox (RFC 5258 3.1: `LIST (SUBSCRIBED)`
/// returns them, marked `\NonExistent`).
pub fn nonexistent_subscriptions(
    subs: &[String],
    names: &[String],
    patterns: &[String],
) -> Vec<crate::imap::event::ListEntry> {
    subs.iter()
        .filter(|s| !names.contains(s))
        .filter(|s| patterns.iter().any(|p| wildcard(p, s)))
        .map(|s| crate::imap::event::ListEntry {
            name: s.clone(),
            attributes: vec!["\\NonExistent".into(), "\\Subscribed".into()],
            status: None,
        })
        .collect()
}

impl ImapSession {
    /// LIST and LSUB, with LIST-EXTENDED (RFC 5258) selection and return
    /// options, several patterns, and LIST-STATUS (RFC 5819).
    pub(super) fn list(&mut self, user: String, tag: &str, args: Args<List>, lsub: bool) {
        let Some(args) = self.take(tag, args) else {
            return;
        };
        if args.condstore {
            self.condstore_on();
        }
        let List {
            reference,
            patterns,
            extended,
            subscribed: subscribed_only,
            special_use: special_only,
            recursive_match: recursive,
            return_subscribed: ret_sub,
            return_status: status,
            ..
        } = args;
        let kw = if lsub { "LSUB" } else { "LIST" };
        if !extended && patterns.len() == 1 && patterns[0].is_empty() {
            // RFC 9051 6.3.9: an empty pattern asks for the delimiter.
            let d = self.delimiter();
            self.send_str(&format!("* {kw} (\\Noselect) {d} \"\"\r\n"));
            return self.completed(tag, kw);
        }
        let patterns: Vec<String> = patterns
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| format!("{reference}{p}"))
            .collect();
        if patterns.is_empty() {
            return self.completed(tag, kw);
        }
        let with_status = status.is_some();
        // RECURSIVEMATCH with SUBSCRIBED: every mailbox, then the session
        // picks (a parent of a subscribed child the patterns miss is
        // listed with CHILDINFO). Under IMAP4rev2 the patterns are UTF-8
        // and the stored names modified UTF-7: every mailbox too, and the
        // session matches the names as the client reads them.
        //
        // A `%` pattern (LIST, LSUB) must also name a parent that only
        // has a child (RFC 3501 6.3.9, RFC 5258 3): every mailbox too.
        let parents = patterns.iter().any(|p| p.contains('%')) && (lsub || !subscribed_only);
        let (request_patterns, recursive, filter) = if recursive && subscribed_only {
            (vec!["*".to_owned()], Some(patterns), None)
        } else if self.rev2 || parents || self.cfg.hierarchy_separator != HierarchySeparator::Slash
        {
            (vec!["*".to_owned()], None, Some(patterns))
        } else {
            (patterns, None, None)
        };
        self.ask(
            user,
            MailboxRequest::List {
                patterns: request_patterns,
                subscribed_only: subscribed_only && recursive.is_none(),
                with_status,
            },
            Pending::List(ListQuery {
                tag: tag.to_owned(),
                lsub,
                sub_attr: ret_sub || subscribed_only,
                special_only,
                status,
                parents: parents || recursive.is_some(),
                recursive,
                filter,
            }),
        );
    }

    pub(super) fn listed(&mut self, q: ListQuery, entries: &[ListEntry]) {
        let ListQuery {
            tag,
            lsub,
            sub_attr,
            special_only,
            status,
            recursive,
            filter,
            parents,
        } = q;
        let kw = if lsub { "LSUB" } else { "LIST" };
        let patterns = recursive.as_ref().or(filter.as_ref());
        let with_parents;
        let entries = match (parents, patterns) {
            (true, Some(p)) => {
                with_parents = self.with_parents(entries, p, lsub);
                &with_parents[..]
            }
            _ => entries,
        };
        let subscribed =
            |e: &crate::imap::event::ListEntry| e.attributes.iter().any(|a| a == "\\Subscribed");
        let mut r = String::new();
        for e in entries {
            if let Some(f) = &filter {
                let shown = self.shown(&e.name);
                if !f.iter().any(|p| self.pattern_matches(p, &shown)) {
                    continue;
                }
            }
            let mut childinfo = "";
            if let Some(patterns) = &recursive {
                if !patterns
                    .iter()
                    .any(|p| self.pattern_matches(p, &self.shown(&e.name)))
                {
                    continue;
                }
                let prefix = format!("{}/", e.name);
                let child = entries.iter().any(|c| {
                    c.name.starts_with(&prefix)
                        && subscribed(c)
                        && !patterns
                            .iter()
                            .any(|p| self.pattern_matches(p, &self.shown(&c.name)))
                });
                if child {
                    childinfo = " (\"CHILDINFO\" (\"SUBSCRIBED\"))";
                } else if !subscribed(e) {
                    continue;
                }
            }
            if special_only && !e.attributes.iter().any(|a| is_special_use(a)) {
                continue;
            }
            let attrs: Vec<&str> = e
                .attributes
                .iter()
                .map(String::as_str)
                .filter(|a| sub_attr || !a.eq_ignore_ascii_case("\\Subscribed"))
                // RFC 3501 6.3.9: LSUB marks a vanished mailbox \Noselect.
                .map(|a| {
                    if lsub && a == "\\NonExistent" {
                        "\\Noselect"
                    } else {
                        a
                    }
                })
                .collect();
            let _ = write!(
                r,
                "* {kw} {} {} {}{childinfo}\r\n",
                response::flag_list(&attrs),
                self.delimiter(),
                response::astring(&self.shown(&e.name))
            );
            // RFC 5819 2: no STATUS for the selected mailbox (its
            // changes come as EXISTS, EXPUNGE and FETCH).
            if let (Some(items), Some(counts), false) =
                (&status, &e.status, self.selected() == Some(e.name.as_str()))
            {
                r.push_str(&response::status_data(&self.shown(&e.name), items, counts));
            }
        }
        self.send_str(&r);
        self.completed(&tag, kw);
    }

    /// The entries and, for every entry the patterns miss, each parent of
    /// it the patterns match that is not an entry itself: it is listed as
    /// `\NonExistent \HasChildren` (LSUB: `\Noselect`), in name order.
    fn with_parents(
        &self,
        entries: &[ListEntry],
        patterns: &[String],
        lsub: bool,
    ) -> Vec<ListEntry> {
        let matches = |n: &str| {
            patterns
                .iter()
                .any(|p| self.pattern_matches(p, &self.shown(n)))
        };
        let mut out = entries.to_vec();
        for e in entries {
            if matches(&e.name) {
                continue;
            }
            let mut at = 0;
            while let Some(i) = e.name[at..].find('/') {
                let parent = &e.name[..at + i];
                at += i + 1;
                if matches(parent) && !out.iter().any(|x| x.name == parent) {
                    let attributes = if lsub {
                        vec!["\\NonExistent".to_owned()]
                    } else {
                        vec!["\\NonExistent".to_owned(), "\\HasChildren".to_owned()]
                    };
                    out.push(ListEntry {
                        name: parent.to_owned(),
                        attributes,
                        status: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub(super) fn status(&mut self, user: String, tag: &str, args: Args<Status>) {
        let t = tag.to_owned();
        let Some(Status { mailbox, items }) = self.take(tag, args) else {
            return;
        };
        let Some(name) = self.mailbox_name(tag, &mailbox) else {
            return;
        };
        if items.iter().any(|i| i == "HIGHESTMODSEQ") {
            self.condstore_on();
        }
        self.ask(
            user,
            MailboxRequest::Status {
                mailbox: name.clone(),
            },
            Pending::Status {
                tag: t,
                name,
                items,
            },
        );
    }

    pub(super) fn get_quota(&mut self, user: String, tag: &str, args: Args<String>) {
        let Some(root) = self.take(tag, args) else {
            return;
        };
        // The one quota root is "".
        if !root.is_empty() {
            return self.no(tag, Code::NonExistent, "No such quota root");
        }
        let pending = Pending::Quota {
            tag: tag.to_owned(),
            root_of: None,
        };
        self.ask(user, MailboxRequest::Quota, pending);
    }

    pub(super) fn get_quota_root(&mut self, user: String, tag: &str, args: Args<Mailbox>) {
        let Some(mailbox) = self.take(tag, args) else {
            return;
        };
        let Some(name) = self.mailbox_name(tag, &mailbox) else {
            return;
        };
        let pending = Pending::Quota {
            tag: tag.to_owned(),
            root_of: Some(name),
        };
        self.ask(user, MailboxRequest::Quota, pending);
    }

    pub(super) fn quota(
        &mut self,
        tag: &str,
        root_of: Option<&str>,
        used: u64,
        limit: Option<u64>,
    ) {
        // Every account has the one root "" (QUOTA is advertised before
        // login, for all accounts alike). Without a limit it has no
        // resource: RFC 9208's quota-resource needs a limit beside the
        // usage, and its quota-list may be empty (as Dovecot's quota
        // plugin answers for an unlimited user).
        let mut r = String::new();
        if let Some(name) = &root_of {
            let _ = write!(
                r,
                "* QUOTAROOT {} \"\"\r\n",
                response::astring(&self.shown(name))
            );
        }
        match limit {
            Some(l) => {
                // RFC 9208: STORAGE in units of 1024 octets.
                let _ = write!(
                    r,
                    "* QUOTA \"\" (STORAGE {} {})\r\n",
                    used.div_ceil(1024),
                    l / 1024
                );
            }
            None => r.push_str("* QUOTA \"\" ()\r\n"),
        }
        let what = if root_of.is_some() {
            "GETQUOTAROOT"
        } else {
            "GETQUOTA"
        };
        self.send_str(&r);
        self.completed(tag, what);
    }

    /// CREATE, DELETE, SUBSCRIBE and UNSUBSCRIBE.
    pub(super) fn manage(&mut self, user: String, tag: &str, args: Args<Mailbox>, how: Manage) {
        let Some(mut mailbox) = self.take(tag, args) else {
            return;
        };
        // RFC 9051 6.3.4: a trailing delimiter on CREATE is ignored.
        let sep = self.cfg.hierarchy_separator.as_char();
        if how == Manage::Create && mailbox.0.len() > 1 && mailbox.0.ends_with(sep) {
            mailbox.0.pop();
        }
        let Some(mailbox) = self.mailbox_name(tag, &mailbox) else {
            return;
        };
        if how == Manage::Create && !self.creatable(tag, &mailbox) {
            return;
        }
        let (request, what) = match how {
            Manage::Create => (MailboxRequest::Create { mailbox }, "CREATE"),
            Manage::Delete => (MailboxRequest::Delete { mailbox }, "DELETE"),
            Manage::Subscribe => (MailboxRequest::Subscribe { mailbox, on: true }, "SUBSCRIBE"),
            Manage::Unsubscribe => (
                MailboxRequest::Subscribe { mailbox, on: false },
                "UNSUBSCRIBE",
            ),
        };
        let tag = tag.to_owned();
        self.ask(user, request, Pending::Simple { tag, what });
    }

    pub(super) fn rename(&mut self, user: String, tag: &str, args: Args<Rename>) {
        let Some(Rename { from, to }) = self.take(tag, args) else {
            return;
        };
        let Some(from) = self.mailbox_name(tag, &from) else {
            return;
        };
        let Some(to) = self.mailbox_name(tag, &to) else {
            return;
        };
        if !self.creatable(tag, &to) {
            return;
        }
        self.ask(
            user,
            MailboxRequest::Rename { from, to },
            Pending::Simple {
                tag: tag.to_owned(),
                what: "RENAME",
            },
        );
    }
}

/// A mailbox's LIST attributes among the account's `names`: children,
/// subscription, special use (RFC 6154), as both stores give them.
pub fn list_attributes<'a>(
    mut names: impl Iterator<Item = &'a String>,
    n: &str,
    subscribed: bool,
) -> Vec<String> {
    let prefix = format!("{n}/");
    let children = names.any(|c| c.starts_with(&prefix));
    let mut attributes = vec![if children {
        "\\HasChildren"
    } else {
        "\\HasNoChildren"
    }
    .to_owned()];
    if subscribed {
        attributes.push("\\Subscribed".into());
    }
    if let Some(su) = special_use(n) {
        attributes.push(su.into());
    }
    attributes
}

/// The special use of the folders docker-mailserver and common clients
/// create (RFC 6154).
pub fn special_use(name: &str) -> Option<&'static str> {
    match name {
        "Drafts" => Some("\\Drafts"),
        "Sent" | "Sent Messages" | "Sent Items" => Some("\\Sent"),
        "Junk" | "Spam" => Some("\\Junk"),
        "Trash" | "Deleted Messages" => Some("\\Trash"),
        "Archive" => Some("\\Archive"),
        _ => None,
    }
}

fn is_special_use(attr: &str) -> bool {
    [
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
    ]
    .iter()
    .any(|s| s.eq_ignore_ascii_case(attr))
}
