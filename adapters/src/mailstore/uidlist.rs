//! `dovecot-uidlist`, read and written in Dovecot's own format: UIDs and
//! UIDVALIDITY survive a move between Dovecot and Postern.

use std::collections::HashMap;
use std::fs;
use std::io;
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
/// `Ok(None)` when there is none, or its header cannot be read (a new
/// list, with a new UIDVALIDITY, replaces it); an error when it cannot be
/// read now (too many open files, a disk error): the caller fails and
/// tries again, rather than give every message a new UID. A line that
/// does not parse (one torn by a crash while it was appended) is skipped,
/// and the others keep their UIDs.
pub(super) fn read_uidlist(dir: &Path) -> io::Result<Option<UidList>> {
    let bytes = match fs::read(dir.join("dovecot-uidlist")) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(parse_uidlist(&String::from_utf8_lossy(&bytes)))
}

fn parse_uidlist(text: &str) -> Option<UidList> {
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
        let Some((uid, rest)) = l.split_once(' ') else {
            continue;
        };
        let Some(uid) = uid.parse::<u32>().ok().filter(|u| *u > 0) else {
            continue;
        };
        let base = match rest.split_once(':') {
            Some((_, b)) if version == "3" => b,
            _ => rest.rsplit(' ').next().unwrap_or(rest),
        };
        list.uids.insert(base.to_owned(), uid);
        list.next = list.next.max(uid.saturating_add(1));
    }
    if list.validity == 0 {
        return None;
    }
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_line_is_skipped_and_a_read_error_is_an_error() {
        let dir = std::env::temp_dir().join(format!("postern-uidlist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        assert!(matches!(read_uidlist(&dir), Ok(None)));
        // The last line was being appended when the machine stopped.
        fs::write(
            dir.join("dovecot-uidlist"),
            "3 V1796000000 N3\n1 :1796.M1P2.mx\n2 :1796.M2P2.mx\n3",
        )
        .expect("write");
        let list = read_uidlist(&dir).expect("read").expect("a list");
        assert_eq!(list.validity, 1_796_000_000);
        assert_eq!(list.uids.get("1796.M2P2.mx"), Some(&2));
        assert_eq!(list.next, 3);
        // Not readable now: an error, not a new list.
        fs::remove_file(dir.join("dovecot-uidlist")).expect("rm");
        fs::create_dir(dir.join("dovecot-uidlist")).expect("in the way");
        assert!(read_uidlist(&dir).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
