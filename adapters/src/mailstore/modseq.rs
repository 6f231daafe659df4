//! `postern-modseq`: CONDSTORE mod-sequences as an append-only log,
//! compacted when much longer than needed; rebuildable. Beside the
//! mod-sequences it keeps what QRESYNC and `\Recent` need: the UIDs
//! expunged with the mod-sequence of their expunge (`X`), the lowest
//! mod-sequence those are complete from (`F`), and the lowest UID no
//! session has taken as recent (`R`). Older readers skip these lines.

use postern_core::imap::set::SeqSet;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead};
use std::path::Path;

/// The most UIDs one `X` line may name (a bound on what a damaged or
/// hostile file can make us hold).
const MAX_LINE_UIDS: u64 = 100_000;

/// What `postern-modseq` holds.
#[derive(Debug, Default)]
pub(super) struct Modlog {
    /// Lines read.
    pub(super) lines: usize,
    /// The mod-sequence of messages not listed.
    pub(super) base: u64,
    /// The highest mod-sequence seen.
    pub(super) highest: u64,
    /// uid -> mod-sequence.
    pub(super) map: HashMap<u32, u64>,
    /// `R`: the lowest UID not yet taken as recent (the last line wins).
    pub(super) first_recent: Option<u32>,
    /// `F`: the tombstones are complete from this mod-sequence (the
    /// highest line wins).
    pub(super) floor: Option<u64>,
    /// `X modseq uid-set`: expunged UIDs, in the order logged.
    pub(super) expunged: Vec<(u64, Vec<u32>)>,
}

/// `postern-modseq`: `V<validity> B<base>`, then `<uid> <modseq>` lines
/// (uid 0: the highest; unlisted messages have the base), and the `R`,
/// `F` and `X` lines above. A log for another UIDVALIDITY (or none)
/// counts as empty, with `fresh_base`.
pub(super) fn read_modlog(dir: &Path, validity: u32, fresh_base: u64) -> Modlog {
    let empty = Modlog {
        base: fresh_base,
        highest: fresh_base,
        ..Modlog::default()
    };
    let Ok(f) = File::open(dir.join("postern-modseq")) else {
        return empty;
    };
    let mut lines = io::BufReader::new(f).lines();
    let base = match lines.next() {
        Some(Ok(h)) => {
            let mut w = h.split(' ');
            match (w.next(), w.next().and_then(|b| b.strip_prefix('B'))) {
                (Some(v), Some(b)) if v == format!("V{validity}") => b.parse::<u64>().ok(),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(base) = base else {
        return empty;
    };
    let mut log = Modlog {
        lines: 1,
        base,
        highest: base,
        ..Modlog::default()
    };
    for l in lines.map_while(Result::ok) {
        log.lines += 1;
        let Some((u, m)) = l.split_once(' ') else {
            continue;
        };
        match u {
            "R" => {
                if let Ok(r) = m.parse::<u32>() {
                    log.first_recent = Some(r);
                }
                continue;
            }
            "F" => {
                if let Ok(f) = m.parse::<u64>() {
                    log.floor = Some(log.floor.unwrap_or(0).max(f));
                }
                continue;
            }
            "X" => {
                if let Some(x) = expunged_line(m) {
                    log.highest = log.highest.max(x.0);
                    log.expunged.push(x);
                }
                continue;
            }
            _ => {}
        }
        let (Ok(u), Ok(m)) = (u.parse::<u32>(), m.parse::<u64>()) else {
            continue;
        };
        log.highest = log.highest.max(m);
        if u != 0 {
            log.map.insert(u, m);
        }
    }
    log
}

/// `<modseq> <uid-set>` of an `X` line; `None` when malformed or naming
/// more UIDs than [`MAX_LINE_UIDS`].
fn expunged_line(rest: &str) -> Option<(u64, Vec<u32>)> {
    let (m, set) = rest.split_once(' ')?;
    let m = m.parse::<u64>().ok()?;
    let set = SeqSet::parse(set)?;
    let mut total = 0u64;
    for &(a, b) in set.ranges() {
        if b == u32::MAX {
            return None;
        }
        total += u64::from(b - a) + 1;
    }
    if total > MAX_LINE_UIDS {
        return None;
    }
    let uids = set.ranges().iter().flat_map(|&(a, b)| a..=b).collect();
    Some((m, uids))
}

/// The `X` line for `uids` expunged at `modseq`.
pub(super) fn expunged_record(modseq: u64, uids: &[u32]) -> String {
    format!("X {modseq} {}\n", SeqSet::compact(uids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_qresync_lines() {
        let dir = std::env::temp_dir().join(format!("postern-modlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("postern-modseq"),
            "V7 B3\n0 5\n4 6\nR 5\nX 8 1:2,4\nF 2\nX 9 *\nX 9 1:4294967294\nR 6\n",
        )
        .unwrap();
        let log = read_modlog(&dir, 7, 1);
        assert_eq!(log.first_recent, Some(6));
        assert_eq!(log.floor, Some(2));
        assert_eq!(log.expunged, vec![(8, vec![1, 2, 4])]);
        assert_eq!(log.highest, 8);
        assert_eq!(log.map.get(&4), Some(&6));
        assert_eq!(read_modlog(&dir, 8, 1).base, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
