//! `postern-summaries`: parsed ENVELOPE, BODY, BODYSTRUCTURE and SORT
//! keys per message, cached on disk (no fsync: rebuilt if lost) and in
//! memory up to a bound over all folders.

use super::{lock, MailStore, MailStoreError};
use postern_core::imap::event::{SortKeys, Summary};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::Path;

/// The version of what `postern-summaries` holds: a cache written by an
/// older Postern (other ENVELOPE or BODYSTRUCTURE text) is rebuilt.
pub(super) const SUMMARY_FORMAT: u32 = 2;

/// Summaries kept in memory over all folders; past this a folder's are
/// dropped after use and read again from `postern-summaries`.
pub(super) const MAX_SUMMARIES_IN_MEMORY: usize = 50_000;

pub(super) fn escape_field(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}

pub(super) fn unescape_field(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('t') => o.push('\t'),
                Some('n') => o.push('\n'),
                Some('r') => o.push('\r'),
                Some(x) => o.push(x),
                None => {}
            }
        } else {
            o.push(c);
        }
    }
    o
}

/// One `postern-summaries` record: tab-separated, escaped fields.
pub(super) fn summary_line(uid: u32, s: &Summary) -> String {
    let date = s
        .sort
        .date
        .map_or_else(|| "-".to_owned(), |d| d.to_string());
    format!(
        "{uid}\t{}\t{}\t{}\t{date}\t{}\t{}\t{}\t{}\n",
        escape_field(&s.envelope),
        escape_field(&s.body),
        escape_field(&s.bodystructure),
        escape_field(&s.sort.from),
        escape_field(&s.sort.to),
        escape_field(&s.sort.cc),
        escape_field(&s.sort.subject),
    )
}

/// Reads `postern-summaries` (for this UIDVALIDITY); bad lines are skipped
/// (their messages are parsed again).
pub(super) fn read_summaries(dir: &Path, validity: u32) -> (HashMap<u32, Summary>, usize) {
    let mut map = HashMap::new();
    let Ok(f) = File::open(dir.join("postern-summaries")) else {
        return (map, 0);
    };
    let mut lines = io::BufReader::new(f).lines();
    match lines.next() {
        Some(Ok(h)) if h == format!("V{validity} F{SUMMARY_FORMAT}") => {}
        _ => return (map, 0),
    }
    let mut n = 1;
    for l in lines.map_while(Result::ok) {
        n += 1;
        let p: Vec<&str> = l.split('\t').collect();
        let [uid, env, body, bs, date, from, to, cc, subject] = p.as_slice() else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        map.insert(
            uid,
            Summary {
                envelope: unescape_field(env),
                body: unescape_field(body),
                bodystructure: unescape_field(bs),
                sort: SortKeys {
                    date: date.parse().ok(),
                    from: unescape_field(from),
                    to: unescape_field(to),
                    cc: unescape_field(cc),
                    subject: unescape_field(subject),
                },
            },
        );
    }
    (map, n)
}

impl MailStore {
    /// Parsed summaries, from the cache or parsed now (and cached).
    pub(super) fn summaries(
        &self,
        dir: &Path,
        uids: &[u32],
    ) -> Result<Vec<(u32, Summary)>, MailStoreError> {
        let (mut have, missing) = self.with(dir, |f| {
            if f.summaries.is_none() {
                let (map, lines) = read_summaries(dir, f.validity);
                f.summaries = Some(map);
                f.summary_lines = lines;
            }
            let cache = f.summaries.as_ref();
            let mut have = Vec::with_capacity(uids.len());
            let mut missing = Vec::new();
            for u in uids {
                match cache.and_then(|c| c.get(u)) {
                    Some(s) => have.push((*u, s.clone())),
                    None => missing.push(*u),
                }
            }
            Ok((have, missing))
        })?;
        if !missing.is_empty() {
            // A few messages at a time: the first SORT of a big mailbox
            // parses every message, but never holds them all at once.
            let mut parsed: Vec<(u32, Summary)> = Vec::with_capacity(missing.len());
            for chunk in missing.chunks(32) {
                for (u, b) in self.bodies(dir, chunk, false)? {
                    parsed.push((u, postern_core::imap::mime::summary(&b)));
                }
            }
            self.with(dir, |f| {
                let mut text = String::new();
                for (u, s) in &parsed {
                    text.push_str(&summary_line(*u, s));
                }
                let path = dir.join("postern-summaries");
                let live = f.entries.len();
                let cache = f.summaries.get_or_insert_with(HashMap::new);
                for (u, s) in &parsed {
                    cache.insert(*u, s.clone());
                }
                if f.summary_lines == 0 || f.summary_lines > 2 * live + 1024 {
                    // Start over: header, then every live message's record.
                    let mut all = format!("V{} F{SUMMARY_FORMAT}\n", f.validity);
                    for e in &f.entries {
                        if let Some(s) = cache.get(&e.uid) {
                            all.push_str(&summary_line(e.uid, s));
                        }
                    }
                    f.summary_lines = all.lines().count();
                    // A cache: written without fsync, rebuilt if lost.
                    let tmp = path.with_extension("postern-tmp");
                    fs::write(&tmp, all)?;
                    fs::rename(&tmp, &path)?;
                } else {
                    let mut file = OpenOptions::new().append(true).open(&path)?;
                    file.write_all(text.as_bytes())?;
                    f.summary_lines += parsed.len();
                }
                Ok(())
            })?;
            have.extend(parsed);
            let order: HashMap<u32, usize> =
                uids.iter().enumerate().map(|(i, u)| (*u, i)).collect();
            have.sort_by_key(|(u, _)| order.get(u).copied().unwrap_or(usize::MAX));
        }
        // Bound memory: past the limit, drop this folder's copy (the file stays).
        let total: usize = {
            let l = self.folders.lock().unwrap_or_else(|e| e.into_inner());
            l.values()
                .map(|f| lock(f).summaries.as_ref().map_or(0, HashMap::len))
                .sum()
        };
        if total > MAX_SUMMARIES_IN_MEMORY {
            lock(&self.state(dir)).summaries = None;
        }
        Ok(have)
    }
}
