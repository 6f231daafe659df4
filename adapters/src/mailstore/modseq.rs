//! `postern-modseq`: CONDSTORE mod-sequences as an append-only log,
//! compacted when much longer than needed; rebuildable.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead};
use std::path::Path;

/// `postern-modseq`: `V<validity> B<base>`, then `<uid> <modseq>` lines
/// (uid 0: the highest; unlisted messages have the base). Returns (lines,
/// base, highest, uid -> modseq); a log for another UIDVALIDITY (or none)
/// counts as empty, with `fresh_base`.
pub(super) fn read_modlog(
    dir: &Path,
    validity: u32,
    fresh_base: u64,
) -> (usize, u64, u64, HashMap<u32, u64>) {
    let mut map = HashMap::new();
    let Ok(f) = File::open(dir.join("postern-modseq")) else {
        return (0, fresh_base, fresh_base, map);
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
        return (0, fresh_base, fresh_base, map);
    };
    let mut n = 1;
    let mut highest = base;
    for l in lines.map_while(Result::ok) {
        n += 1;
        let Some((u, m)) = l.split_once(' ') else {
            continue;
        };
        let (Ok(u), Ok(m)) = (u.parse::<u32>(), m.parse::<u64>()) else {
            continue;
        };
        highest = highest.max(m);
        if u != 0 {
            map.insert(u, m);
        }
    }
    (n, base, highest, map)
}
