//! STORE (with UNCHANGEDSINCE, RFC 7162), COPY/MOVE and UID EXPUNGE.

use super::{mailbox, modifier, sequence_set, ArgError, Args, Mailbox, SequenceSet};
use crate::imap::parse::Value;
use std::borrow::Cow;

/// How STORE changes flags.
pub use crate::imap::event::StoreMode;

/// STORE's arguments.
#[derive(Debug)]
pub struct Store {
    /// Which messages.
    pub set: SequenceSet,
    /// Replace, add or remove.
    pub mode: StoreMode,
    /// `.SILENT`: no FETCH responses.
    pub silent: bool,
    /// The flags.
    pub flags: Vec<String>,
    /// The UNCHANGEDSINCE modifier (RFC 7162 3.1.3).
    pub unchanged_since: Option<u64>,
}

/// COPY's and MOVE's arguments.
#[derive(Debug)]
pub struct CopyMove {
    /// Which messages.
    pub set: SequenceSet,
    /// The target mailbox.
    pub mailbox: Mailbox,
}

/// The system flags a client may set (RFC 9051 2.3.2; not `\Recent`).
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// Whether every flag may be set by a client: the system flags but
/// `\Recent`, and keywords (RFC 9051 2.3.2).
pub fn valid_flags(flags: &[String]) -> bool {
    flags.iter().all(|f| {
        if f.starts_with('\\') {
            SYSTEM_FLAGS.iter().any(|s| s.eq_ignore_ascii_case(f))
        } else {
            !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
        }
    })
}

pub(super) fn uid_expunge(args: &[Value<'_>]) -> Args<Option<SequenceSet>> {
    sequence_set(args.first())
        .map(Some)
        .ok_or_else(|| ArgError::bad("Syntax: UID EXPUNGE set"))
}

pub(super) fn store(args: &[Value<'_>]) -> Args<Store> {
    // STORE modifiers: (UNCHANGEDSINCE n) (RFC 7162 3.1.3).
    let mut unchanged_since = None;
    let mut rest = args.get(1..).unwrap_or_default();
    if let Some(Value::List(m)) = rest.first() {
        unchanged_since = Some(modifier(
            m,
            "UNCHANGEDSINCE",
            "Bad UNCHANGEDSINCE value",
            "Unknown STORE modifier",
        )?);
        rest = &rest[1..];
    }
    let bad = |text: &'static str| ArgError::Bad {
        mailboxes: Vec::new(),
        condstore: unchanged_since.is_some(),
        text: text.into(),
    };
    let (Some(set), Some(Value::Atom(op)), Some(flags)) =
        (sequence_set(args.first()), rest.first(), rest.get(1))
    else {
        return Err(bad("Syntax: STORE set [+-]FLAGS[.SILENT] (flags)"));
    };
    let op = op.to_ascii_uppercase();
    let silent = op.ends_with(".SILENT");
    let mode = match op.trim_end_matches(".SILENT") {
        "FLAGS" => StoreMode::Replace,
        "+FLAGS" => StoreMode::Add,
        "-FLAGS" => StoreMode::Remove,
        _ => return Err(bad("Unknown STORE operation")),
    };
    let flags: Vec<String> = match flags {
        Value::List(l) => l
            .iter()
            .filter_map(|f| f.as_astring().map(Cow::into_owned))
            .collect(),
        other => other
            .as_astring()
            .map(|s| vec![s.into_owned()])
            .unwrap_or_default(),
    };
    if !valid_flags(&flags) {
        return Err(bad("Invalid flag in the list"));
    }
    Ok(Store {
        set,
        mode,
        silent,
        flags,
        unchanged_since,
    })
}

pub(super) fn copy(args: &[Value<'_>], name: &str) -> Args<CopyMove> {
    let Some(set) = sequence_set(args.first()) else {
        return Err(ArgError::bad(format!("Syntax: {name} set mailbox")));
    };
    let mailbox = mailbox(args.get(1))?;
    Ok(CopyMove { set, mailbox })
}
