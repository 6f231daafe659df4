//! The mailbox list and counts: LIST and LSUB with LIST-EXTENDED
//! (RFC 5258), LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154), STATUS,
//! QUOTA (RFC 9208), NAMESPACE, and CREATE/DELETE/RENAME/SUBSCRIBE.

use super::{ImapSession, Pending};
use crate::imap::event::{Code, ListEntry, MailboxRequest};
use crate::imap::parse::{Command, Value};
use crate::imap::response::{self, STATUS_ITEMS};
use std::fmt::Write as _;

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
}

/// Canonical form: `INBOX` in any case is `INBOX`.
/// IMAP LIST wildcards: `*` matches anything, `%` anything but `/`.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8], budget: &mut u32) -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| m(rest, &n[i..], budget)),
            Some((b'%', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != b'/')
                .any(|i| m(rest, &n[i..], budget)),
            Some((c, rest)) => {
                n.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && m(rest, &n[1..], budget)
            }
        }
    }
    let mut budget = 100_000;
    m(pattern.as_bytes(), name.as_bytes(), &mut budget)
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
    pub(super) fn list(&mut self, user: String, tag: &str, cmd: &Command<'_>) {
        let lsub = cmd.name == "LSUB";
        let mut args = cmd.args.as_slice();
        let mut subscribed_only = lsub;
        let mut special_only = false;
        let mut recursive = false;
        // LIST-EXTENDED syntax (selection or return options, a pattern
        // list): `""` is then a pattern like any other (RFC 5258 3).
        let mut extended = false;
        let atom_is =
            |v: &Value<'_>, w: &str| matches!(v, Value::Atom(a) if a.eq_ignore_ascii_case(w));
        if !lsub {
            if let Some(Value::List(sel)) = args.first() {
                extended = true;
                for o in sel {
                    if atom_is(o, "SUBSCRIBED") {
                        subscribed_only = true;
                    } else if atom_is(o, "SPECIAL-USE") {
                        special_only = true;
                    } else if atom_is(o, "RECURSIVEMATCH") {
                        recursive = true;
                    } else if !atom_is(o, "REMOTE") {
                        return self.bad(tag, "Unknown LIST selection option");
                    }
                }
                // RFC 5258 3.1: RECURSIVEMATCH alone (or with REMOTE) is BAD.
                if recursive && !subscribed_only && !special_only {
                    return self.bad(tag, "RECURSIVEMATCH needs another selection option");
                }
                args = &args[1..];
            }
        }
        let reference = args.first().and_then(Value::as_astring);
        let patterns: Option<Vec<String>> = match args.get(1) {
            Some(Value::List(ps)) if !lsub && !ps.is_empty() => {
                extended = true;
                ps.iter()
                    .map(|p| p.as_astring().map(|p| p.into_owned()))
                    .collect()
            }
            Some(v) => v.as_astring().map(|p| vec![p.into_owned()]),
            None => None,
        };
        let (Some(reference), Some(patterns)) = (reference, patterns) else {
            return self.bad(tag, "Syntax: LIST reference pattern");
        };
        let mut ret_sub = false;
        let mut status = None;
        match (args.get(2), args.get(3)) {
            (None, _) => {}
            (Some(r), Some(Value::List(opts))) if !lsub && atom_is(r, "RETURN") => {
                extended = true;
                let mut i = 0;
                while let Some(o) = opts.get(i) {
                    if atom_is(o, "SUBSCRIBED") {
                        ret_sub = true;
                    } else if atom_is(o, "STATUS") {
                        let Some(Value::List(items)) = opts.get(i + 1) else {
                            return self.bad(tag, "Syntax: RETURN (STATUS (items))");
                        };
                        let items: Vec<String> = items
                            .iter()
                            .filter_map(|v| v.as_astring().map(|s| s.to_ascii_uppercase()))
                            .collect();
                        if items.is_empty() {
                            return self.bad(tag, "Syntax: RETURN (STATUS (items))");
                        }
                        if items.iter().any(|x| !STATUS_ITEMS.contains(&x.as_str())) {
                            return self.bad(tag, "Unknown STATUS item");
                        }
                        if items.iter().any(|x| x == "HIGHESTMODSEQ") {
                            self.condstore_on();
                        }
                        status = Some(items);
                        i += 1;
                    } else if !(atom_is(o, "CHILDREN") || atom_is(o, "SPECIAL-USE")) {
                        return self.bad(tag, "Unknown LIST return option");
                    }
                    i += 1;
                }
            }
            _ => return self.bad(tag, "Syntax: LIST ... RETURN (options)"),
        }
        let kw = if lsub { "LSUB" } else { "LIST" };
        if !extended && patterns.len() == 1 && patterns[0].is_empty() {
            // RFC 9051 6.3.9: an empty pattern asks for the delimiter.
            self.send_str(&format!("* {kw} (\\Noselect) \"/\" \"\"\r\n"));
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
        let (request_patterns, recursive, filter) = if recursive && subscribed_only {
            (vec!["*".to_owned()], Some(patterns), None)
        } else if self.rev2 {
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
        } = q;
        let kw = if lsub { "LSUB" } else { "LIST" };
        let subscribed =
            |e: &crate::imap::event::ListEntry| e.attributes.iter().any(|a| a == "\\Subscribed");
        let mut r = String::new();
        for e in entries {
            if let Some(f) = &filter {
                let shown = self.shown(&e.name);
                if !f.iter().any(|p| wildcard(p, &shown)) {
                    continue;
                }
            }
            let mut childinfo = "";
            if let Some(patterns) = &recursive {
                if !patterns.iter().any(|p| wildcard(p, &self.shown(&e.name))) {
                    continue;
                }
                let prefix = format!("{}/", e.name);
                let child = entries.iter().any(|c| {
                    c.name.starts_with(&prefix)
                        && subscribed(c)
                        && !patterns.iter().any(|p| wildcard(p, &self.shown(&c.name)))
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
                "* {kw} {} \"/\" {}{childinfo}\r\n",
                response::flag_list(&attrs),
                response::astring(&self.shown(&e.name))
            );
            if let (Some(items), Some(counts)) = (&status, &e.status) {
                r.push_str(&response::status_data(&self.shown(&e.name), items, counts));
            }
        }
        self.send_str(&r);
        self.completed(&tag, kw);
    }

    pub(super) fn status(&mut self, user: String, tag: &str, cmd: &Command<'_>) {
        let t = tag.to_owned();
        let Some(name) = self.mailbox_arg(tag, cmd.args.first()) else {
            return;
        };
        let Some(Value::List(items)) = cmd.args.get(1) else {
            return self.bad(tag, "Syntax: STATUS mailbox (items)");
        };
        let items: Vec<String> = items
            .iter()
            .filter_map(|i| i.as_astring().map(|s| s.to_ascii_uppercase()))
            .collect();
        if items.is_empty() {
            return self.bad(tag, "Syntax: STATUS mailbox (items)");
        }
        if let Some(bad) = items.iter().find(|i| !STATUS_ITEMS.contains(&i.as_str())) {
            return self.bad(tag, &format!("Unknown STATUS item {bad}"));
        }
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

    pub(super) fn get_quota(&mut self, user: String, tag: &str, cmd: &Command<'_>) {
        let t = tag.to_owned();
        let Some(arg) = cmd.args.first().and_then(Value::as_astring) else {
            return self.bad(tag, &format!("Syntax: {} name", cmd.name));
        };
        let root_of = if cmd.name == "GETQUOTAROOT" {
            let Some(name) = self.mailbox_arg(tag, cmd.args.first()) else {
                return;
            };
            Some(name)
        } else if !arg.is_empty() {
            return self.no(tag, Code::NonExistent, "No such quota root");
        } else {
            None
        };
        self.ask(
            user,
            MailboxRequest::Quota,
            Pending::Quota { tag: t, root_of },
        );
    }

    pub(super) fn quota(
        &mut self,
        tag: &str,
        root_of: Option<&str>,
        used: u64,
        limit: Option<u64>,
    ) {
        let mut r = String::new();
        if let Some(name) = &root_of {
            let _ = write!(r, "* QUOTAROOT {}", response::astring(&self.shown(name)));
            if limit.is_some() {
                r.push_str(" \"\"");
            }
            r.push_str("\r\n");
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
            None if root_of.is_none() => {
                return self.no(tag, Code::NonExistent, "No such quota root");
            }
            None => {}
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
    pub(super) fn manage(&mut self, user: String, tag: &str, cmd: &Command<'_>) {
        let t = tag.to_owned();
        // RFC 9051 6.3.4: a trailing delimiter on CREATE is ignored.
        let trimmed = match (
            cmd.name.as_str(),
            cmd.args.first().and_then(Value::as_astring),
        ) {
            ("CREATE", Some(n)) if n.len() > 1 && n.ends_with('/') => {
                Some(n[..n.len() - 1].to_owned())
            }
            _ => None,
        };
        let arg = trimmed.map(|n| Value::Quoted(std::borrow::Cow::Owned(n)));
        let Some(name) = self.mailbox_arg(tag, arg.as_ref().or(cmd.args.first())) else {
            return;
        };
        let (request, what) = match cmd.name.as_str() {
            "CREATE" => (MailboxRequest::Create { mailbox: name }, "CREATE"),
            "DELETE" => (MailboxRequest::Delete { mailbox: name }, "DELETE"),
            "SUBSCRIBE" => (
                MailboxRequest::Subscribe {
                    mailbox: name,
                    on: true,
                },
                "SUBSCRIBE",
            ),
            _ => (
                MailboxRequest::Subscribe {
                    mailbox: name,
                    on: false,
                },
                "UNSUBSCRIBE",
            ),
        };
        self.ask(user, request, Pending::Simple { tag: t, what });
    }

    pub(super) fn rename(&mut self, user: String, tag: &str, cmd: &Command<'_>) {
        let t = tag.to_owned();
        let Some(from) = self.mailbox_arg(tag, cmd.args.first()) else {
            return;
        };
        let Some(to) = self.mailbox_arg(tag, cmd.args.get(1)) else {
            return;
        };
        self.ask(
            user,
            MailboxRequest::Rename { from, to },
            Pending::Simple {
                tag: t,
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
