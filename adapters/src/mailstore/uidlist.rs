//! `dovecot-uidlist`, read and written in Dovecot's own format: UIDs and
//! UIDVALIDITY survive a move between Dovecot and Postern.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// One folder's UID list (as read from `dovecot-uidlist`).
#[derive(Clone, Debug, Default)]
pub(super) struct UidList {
    pub(super) validity: u32,
    pub(super) next: u32,
    /// base name -> uid
    pub(super) uids: HashMap<String, u32>,
}

pub(super) fn new_uidlist(validity: u32) -> UidList {
    UidList {
        validity: validity.max(1),
        next: 1,
        uids: HashMap::new(),
    }
}

/// Reads `dovecot-uidlist` (version 3: `3 V<validity> N<next> ...`, then
/// `<uid> [ext...] :<base name>`; version 1: `1 <validity> <next>`).
pub(super) fn read_uidlist(dir: &Path) -> Option<UidList> {
    let text = fs::read_to_string(dir.join("dovecot-uidlist")).ok()?;
    let mut lines = text.lines();
    let header = lines.next()?;
    let mut words = header.split_whitespace();
    let version = words.next()?;
    let mut list = UidList::default();
    match version {
        "3" => {
            for w in words {
                if let Some(v) = w.strip_prefix('V') {
                    list.validity = v.parse().ok()?;
                } else if let Some(n) = w.strip_prefix('N') {
                    list.next = n.parse().ok()?;
                }
            }
        }
        "1" => {
            list.validity = words.next()?.parse().ok()?;
            list.next = words.next()?.parse().ok()?;
        }
        _ => return None,
    }
    for l in lines {
        let (uid, rest) = l.split_once(' ')?;
        let uid: u32 = uid.parse().ok()?;
        let base = match rest.split_once(':') {
            Some((_, b)) if version == "3" => b,
            _ => rest.rsplit(' ').next().unwrap_or(rest),
        };
        list.uids.insert(base.to_owned(), uid);
        list.next = list.next.max(uid + 1);
    }
    if list.validity == 0 {
        return None;
    }
    Some(list)
}
