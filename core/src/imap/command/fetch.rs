//! FETCH (RFC 9051 6.4.5) with CHANGEDSINCE (RFC 7162).

use super::{modifier, sequence_set, ArgError, Args, SequenceSet};
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
}

pub(super) fn fetch_args(args: &[Value<'_>]) -> Args<Fetch> {
    let syntax = || ArgError::bad("Syntax: FETCH set items");
    let (Some(set), Some(items)) = (sequence_set(args.first()), args.get(1)) else {
        return Err(syntax());
    };
    let items = fetch::parse_items(items).map_err(ArgError::bad)?;
    // FETCH modifiers: (CHANGEDSINCE n) (RFC 7162 3.1.4.1).
    let changed_since = match args.get(2) {
        None => None,
        Some(Value::List(m)) => Some(modifier(
            m,
            "CHANGEDSINCE",
            "Bad CHANGEDSINCE value",
            "Unknown FETCH modifier",
        )?),
        Some(_) => return Err(syntax()),
    };
    Ok(Fetch {
        set,
        items,
        changed_since,
    })
}
