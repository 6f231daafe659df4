//! Commands on mailboxes: SELECT/EXAMINE, CREATE, RENAME, LIST/LSUB,
//! STATUS and APPEND.

use super::{is_atom, mailbox, valid_flags, ArgError, Args, Mailbox};
use crate::imap::fetch;
use crate::imap::parse::Value;
use crate::imap::response::STATUS_ITEMS;
use std::borrow::Cow;

/// SELECT's and EXAMINE's arguments.
#[derive(Debug)]
pub struct Select {
    /// The mailbox.
    pub mailbox: Mailbox,
    /// The `(CONDSTORE)` parameter (RFC 7162 3.1.8).
    pub condstore: bool,
    /// The `(QRESYNC (...))` parameter (RFC 7162 3.2.5).
    pub qresync: Option<Qresync>,
}

/// SELECT's QRESYNC parameter: what the client knows of the mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qresync {
    /// The UIDVALIDITY the client's cache is for.
    pub uid_validity: u32,
    /// The last HIGHESTMODSEQ the client saw.
    pub modseq: u64,
    /// The UIDs the client knows (None: all).
    pub known_uids: Option<crate::imap::set::SeqSet>,
    /// Sequence numbers and the UIDs the client has for them
    /// (parsed, accepted, and not needed: the store's list is exact or
    /// the known range is answered whole).
    pub seq_match: Option<(crate::imap::set::SeqSet, crate::imap::set::SeqSet)>,
}

/// RENAME's arguments.
#[derive(Debug)]
pub struct Rename {
    /// The existing name.
    pub from: Mailbox,
    /// The new name.
    pub to: Mailbox,
}

/// LIST's and LSUB's arguments.
#[derive(Debug)]
pub struct List {
    /// The reference name.
    pub reference: String,
    /// The patterns (several with LIST-EXTENDED).
    pub patterns: Vec<String>,
    /// LIST-EXTENDED syntax was used (selection or return options, a
    /// pattern list): `""` is then a pattern like any other.
    pub extended: bool,
    /// Selection option SUBSCRIBED (always for LSUB).
    pub subscribed: bool,
    /// Selection option SPECIAL-USE (RFC 6154).
    pub special_use: bool,
    /// Selection option RECURSIVEMATCH.
    pub recursive_match: bool,
    /// Return option SUBSCRIBED.
    pub return_subscribed: bool,
    /// Return option STATUS (RFC 5819): the items, upper-cased.
    pub return_status: Option<Vec<String>>,
    /// A STATUS return option asked for HIGHESTMODSEQ: CONDSTORE goes on
    /// (RFC 7162 3.1).
    pub condstore: bool,
}

/// STATUS's arguments.
#[derive(Debug)]
pub struct Status {
    /// The mailbox.
    pub mailbox: Mailbox,
    /// The items, upper-cased, each one of [`crate::imap::response::STATUS_ITEMS`].
    pub items: Vec<String>,
}

/// APPEND's arguments.
#[derive(Debug)]
pub struct Append {
    /// The target mailbox.
    pub mailbox: Mailbox,
    /// The flags to set.
    pub flags: Vec<String>,
    /// INTERNALDATE (Unix seconds), when given.
    pub date: Option<i64>,
    /// The message.
    pub data: Vec<u8>,
}

pub(super) fn select(args: &[Value<'_>]) -> Args<Select> {
    let mailbox = mailbox(args.first())?;
    let mut condstore = false;
    let mut qresync = None;
    let unknown = |m: &Mailbox| ArgError::bad("Unknown SELECT parameter").after(m);
    match args.get(1) {
        None => {}
        Some(Value::List(params)) => {
            let mut i = 0;
            while i < params.len() {
                if is_atom(&params[i], "CONDSTORE") {
                    condstore = true;
                    i += 1;
                } else if is_atom(&params[i], "QRESYNC") && qresync.is_none() {
                    let Some(Value::List(q)) = params.get(i + 1) else {
                        return Err(unknown(&mailbox));
                    };
                    qresync = Some(qresync_param(q).map_err(|e| e.after(&mailbox))?);
                    i += 2;
                } else {
                    return Err(unknown(&mailbox));
                }
            }
        }
        Some(_) => return Err(unknown(&mailbox)),
    }
    if args.len() > 2 {
        return Err(unknown(&mailbox));
    }
    Ok(Select {
        mailbox,
        condstore,
        qresync,
    })
}

/// `(uidvalidity modseq [known-uids [(seq-set uid-set)]])` (RFC 7162 3.2.5).
fn qresync_param(q: &[Value<'_>]) -> Args<Qresync> {
    use crate::imap::set::SeqSet;
    let bad = || ArgError::bad("Bad QRESYNC parameter");
    let number = |v: Option<&Value<'_>>| {
        v.and_then(Value::as_astring)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0)
    };
    let uid_validity = number(q.first())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(bad)?;
    let modseq = number(q.get(1)).ok_or_else(bad)?;
    // A set without `*` (RFC 7162's known-uids is a sequence-set of UIDs;
    // `*` is allowed there and means the highest).
    let set = |v: &Value<'_>| v.as_astring().and_then(|s| SeqSet::parse(&s));
    let (known_uids, rest) = match q.get(2) {
        Some(Value::List(_)) | None => (None, q.get(2)),
        Some(v) => (Some(set(v).ok_or_else(bad)?), q.get(3)),
    };
    let seq_match = match rest {
        None => None,
        Some(Value::List(pair)) => match pair.as_slice() {
            [a, b] => Some((set(a).ok_or_else(bad)?, set(b).ok_or_else(bad)?)),
            _ => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    };
    let used = 2 + usize::from(known_uids.is_some()) + usize::from(seq_match.is_some());
    if q.len() != used {
        return Err(bad());
    }
    Ok(Qresync {
        uid_validity,
        modseq,
        known_uids,
        seq_match,
    })
}

pub(super) fn create(args: &[Value<'_>]) -> Args<Mailbox> {
    // RFC 9051 6.3.4: the session takes a trailing delimiter off (it
    // knows which character the delimiter is).
    mailbox(args.first())
}

pub(super) fn rename(args: &[Value<'_>]) -> Args<Rename> {
    let from = mailbox(args.first())?;
    let to = mailbox(args.get(1)).map_err(|e| e.after(&from))?;
    Ok(Rename { from, to })
}

pub(super) fn status(args: &[Value<'_>]) -> Args<Status> {
    let mailbox = mailbox(args.first())?;
    let syntax = || ArgError::bad("Syntax: STATUS mailbox (items)").after(&mailbox);
    let Some(Value::List(items)) = args.get(1) else {
        return Err(syntax());
    };
    let items: Vec<String> = items
        .iter()
        .filter_map(|i| i.as_astring().map(|s| s.to_ascii_uppercase()))
        .collect();
    if items.is_empty() {
        return Err(syntax());
    }
    if let Some(bad) = items.iter().find(|i| !STATUS_ITEMS.contains(&i.as_str())) {
        return Err(ArgError::bad(format!("Unknown STATUS item {bad}")).after(&mailbox));
    }
    Ok(Status { mailbox, items })
}

pub(super) fn append(args: &[Value<'_>]) -> Args<Append> {
    let mailbox = mailbox(args.first())?;
    let mut flags = Vec::new();
    let mut data = None;
    let mut date = None;
    for v in args.get(1..).unwrap_or_default() {
        match v {
            Value::List(fl) => {
                flags = fl
                    .iter()
                    .filter_map(|f| f.as_astring().map(Cow::into_owned))
                    .collect()
            }
            Value::Literal(d) => data = Some(d.to_vec()),
            Value::Quoted(q) => match fetch::parse_date_time(q) {
                Some(d) => date = Some(d),
                None => return Err(ArgError::bad("Invalid date-time").after(&mailbox)),
            },
            Value::Atom(_) => {}
        }
    }
    let Some(data) = data else {
        return Err(
            ArgError::bad("Syntax: APPEND mailbox [(flags)] [date] literal").after(&mailbox),
        );
    };
    if !valid_flags(&flags) {
        return Err(ArgError::bad("Invalid flag in the list").after(&mailbox));
    }
    Ok(Append {
        mailbox,
        flags,
        date,
        data,
    })
}

/// LIST and LSUB, with LIST-EXTENDED (RFC 5258) selection and return
/// options, several patterns, and LIST-STATUS (RFC 5819).
pub(super) fn list(all: &[Value<'_>], lsub: bool) -> Args<List> {
    let mut args = all;
    let mut l = List {
        reference: String::new(),
        patterns: Vec::new(),
        extended: false,
        subscribed: lsub,
        special_use: false,
        recursive_match: false,
        return_subscribed: false,
        return_status: None,
        condstore: false,
    };
    if !lsub {
        if let Some(Value::List(sel)) = args.first() {
            l.extended = true;
            for o in sel {
                if is_atom(o, "SUBSCRIBED") {
                    l.subscribed = true;
                } else if is_atom(o, "SPECIAL-USE") {
                    l.special_use = true;
                } else if is_atom(o, "RECURSIVEMATCH") {
                    l.recursive_match = true;
                } else if !is_atom(o, "REMOTE") {
                    return Err(ArgError::bad("Unknown LIST selection option"));
                }
            }
            // RFC 5258 3.1: RECURSIVEMATCH alone (or with REMOTE) is BAD.
            if l.recursive_match && !l.subscribed && !l.special_use {
                return Err(ArgError::bad(
                    "RECURSIVEMATCH needs another selection option",
                ));
            }
            args = &args[1..];
        }
    }
    let reference = args.first().and_then(Value::as_astring);
    let patterns: Option<Vec<String>> = match args.get(1) {
        Some(Value::List(ps)) if !lsub && !ps.is_empty() => {
            l.extended = true;
            ps.iter()
                .map(|p| p.as_astring().map(Cow::into_owned))
                .collect()
        }
        Some(v) => v.as_astring().map(|p| vec![p.into_owned()]),
        None => None,
    };
    let (Some(reference), Some(patterns)) = (reference, patterns) else {
        return Err(ArgError::bad("Syntax: LIST reference pattern"));
    };
    l.reference = reference.into_owned();
    l.patterns = patterns;
    match (args.get(2), args.get(3)) {
        (None, _) => {}
        (Some(r), Some(Value::List(opts))) if !lsub && is_atom(r, "RETURN") => {
            l.extended = true;
            let mut i = 0;
            while let Some(o) = opts.get(i) {
                // A fault after STATUS (HIGHESTMODSEQ) still turns CONDSTORE on.
                let condstore = l.condstore;
                let bad = |text: &'static str| ArgError::Bad {
                    mailboxes: Vec::new(),
                    condstore,
                    text: text.into(),
                };
                if is_atom(o, "SUBSCRIBED") {
                    l.return_subscribed = true;
                } else if is_atom(o, "STATUS") {
                    let Some(Value::List(items)) = opts.get(i + 1) else {
                        return Err(bad("Syntax: RETURN (STATUS (items))"));
                    };
                    let items: Vec<String> = items
                        .iter()
                        .filter_map(|v| v.as_astring().map(|s| s.to_ascii_uppercase()))
                        .collect();
                    if items.is_empty() {
                        return Err(bad("Syntax: RETURN (STATUS (items))"));
                    }
                    if items.iter().any(|x| !STATUS_ITEMS.contains(&x.as_str())) {
                        return Err(bad("Unknown STATUS item"));
                    }
                    l.condstore |= items.iter().any(|x| x == "HIGHESTMODSEQ");
                    l.return_status = Some(items);
                    i += 1;
                } else if !(is_atom(o, "CHILDREN") || is_atom(o, "SPECIAL-USE")) {
                    return Err(bad("Unknown LIST return option"));
                }
                i += 1;
            }
        }
        _ => return Err(ArgError::bad("Syntax: LIST ... RETURN (options)")),
    }
    Ok(l)
}
