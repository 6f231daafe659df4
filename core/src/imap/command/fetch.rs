//! FETCH (RFC 9051 6.4.5) with CHANGEDSINCE (RFC 7162).

use super::{is_atom, modifier, sequence_set, ArgError, Args, SequenceSet};
use crate::imap::fetch::{self, Item};
use crate::imap::parse::Value;

/// FETCH's arguments.
#[derive(Debug)]
pub struct Fetch {
    /// Which messages.
    pub set: SequenceSet,
    /// The items asked (macros expanded).
    pub items: Vec<Item>,
    /// The CHANGEDSINCE modifier (RFC 7162 3.1.4.1).
    pub changed_since: Option<u64>,
    /// The VANISHED modifier (RFC 7162 3.2.6): with CHANGEDSINCE, on
    /// UID FETCH, after ENABLE QRESYNC.
    pub vanished: bool,
}

pub(super) fn fetch_args(args: &[Value<'_>]) -> Args<Fetch> {
    let syntax = || ArgError::bad("Syntax: FETCH set items");
    let (Some(set), Some(items)) = (sequence_set(args.first()), args.get(1)) else {
        return Err(syntax());
    };
    let items = fetch::parse_items(items).map_err(ArgError::bad)?;
    // FETCH modifiers: (CHANGEDSINCE n) (RFC 7162 3.1.4.1).
    let (changed_since, vanished) = match args.get(2) {
        None => (None, false),
        Some(Value::List(m)) => {
            // (CHANGEDSINCE n [VANISHED]), VANISHED before or after.
            let vanished = m.iter().any(|v| is_atom(v, "VANISHED"));
            let rest: Vec<Value<'_>> = m
                .iter()
                .filter(|v| !is_atom(v, "VANISHED"))
                .cloned()
                .collect();
            if m.len() - rest.len() > 1 {
                return Err(ArgError::bad("Unknown FETCH modifier"));
            }
            let since = modifier(
                &rest,
                "CHANGEDSINCE",
                "Bad CHANGEDSINCE value",
                "Unknown FETCH modifier",
            )?;
            (Some(since), vanished)
        }
        Some(_) => return Err(syntax()),
    };
    Ok(Fetch {
        set,
        items,
        changed_since,
        vanished,
    })
}
