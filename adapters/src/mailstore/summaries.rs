//! `postern-summaries`: parsed ENVELOPE, BODY, BODYSTRUCTURE and SORT
//! keys per message, cached on disk (no fsync: rebuilt if lost) and in
//! memory, both bounded in bytes.
//!
//! Memory: the summaries of all folders together take at most
//! [`SummaryCacheLimits::max_bytes`]; past it the oldest to come into
//! memory go first (they stay in the file). A summary larger than
//! [`SummaryCacheLimits::max_entry_bytes`] (a message with an absurd MIME
//! structure) is neither kept in memory nor written to the file: it is
//! computed again, in bounded time, when asked for.
//!
//! File: records are appended; when the file holds many more records than
//! the folder has messages it is rewritten with the newest record of each
//! live message, read from the file itself, so it never holds more than
//! about twice the live messages' records, each of bounded size.

use super::index::Folder;
use super::{lock, MailStore, MailStoreError};
use postern_core::imap::event::{SortKeys, Summary};
use postern_core::imap::limits::MimeLimits;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

/// The version of what `postern-summaries` holds: a cache written by an
/// older Postern (other ENVELOPE or BODYSTRUCTURE text) is rebuilt.
/// Version 3: MIME structure bounded (`postern_core::imap::limits`).
pub(super) const SUMMARY_FORMAT: u32 = 3;

/// The bounds of the in-memory summary cache (settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryCacheLimits {
    /// The most bytes the summaries of all folders take in memory
    /// together (32 MiB by default: about 30,000 ordinary messages).
    pub max_bytes: usize,
    /// A summary larger than this is not cached, in memory or on disk
    /// (64 KiB by default, as Dovecot's `mail_cache_record_max_size`).
    pub max_entry_bytes: usize,
    /// The MIME limits summaries are made under (the IMAP session's
    /// `mime`, so that cached BODYSTRUCTUREs and live sections agree).
    pub mime: MimeLimits,
}

impl Default for SummaryCacheLimits {
    fn default() -> Self {
        SummaryCacheLimits {
            max_bytes: 32 << 20,
            max_entry_bytes: 64 << 10,
            mime: MimeLimits::default(),
        }
    }
}

/// What a summary costs in memory: its text and the bookkeeping around it
/// (the map entry, the strings' headers, the eviction queue).
pub(super) fn summary_size(s: &Summary) -> usize {
    s.envelope.len()
        + s.body.len()
        + s.bodystructure.len()
        + s.sort.from.len()
        + s.sort.to.len()
        + s.sort.cc.len()
        + s.sort.subject.len()
        + 256
}

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

/// One record of `postern-summaries`, or None for a bad line.
fn parse_line(l: &str) -> Option<(u32, Summary)> {
    let p: Vec<&str> = l.split('\t').collect();
    let [uid, env, body, bs, date, from, to, cc, subject] = p.as_slice() else {
        return None;
    };
    let uid = uid.parse::<u32>().ok()?;
    Some((
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
    ))
}

/// The first line of `postern-summaries`: the UIDVALIDITY, the format,
/// and the MIME limits when they are not the defaults (a cache made under
/// other limits is made again, or its section numbers would not match).
fn header(validity: u32, mime: MimeLimits) -> String {
    if mime == MimeLimits::default() {
        format!("V{validity} F{SUMMARY_FORMAT}")
    } else {
        format!(
            "V{validity} F{SUMMARY_FORMAT} P{} D{}",
            mime.max_parts, mime.max_depth
        )
    }
}

/// The records of `postern-summaries` (for this UIDVALIDITY), one line at
/// a time, with their line numbers (the header is line 0); None when the
/// file is missing or written for another UIDVALIDITY or format.
fn records(
    dir: &Path,
    validity: u32,
    mime: MimeLimits,
) -> Option<impl Iterator<Item = (usize, String)>> {
    let f = File::open(dir.join("postern-summaries")).ok()?;
    let mut lines = io::BufReader::new(f).lines();
    match lines.next() {
        Some(Ok(h)) if h == header(validity, mime) => {}
        _ => return None,
    }
    Some(
        lines
            .map_while(Result::ok)
            .enumerate()
            .map(|(i, l)| (i + 1, l)),
    )
}

/// Reads `postern-summaries` (for this UIDVALIDITY) into `f`'s memory
/// cache, up to the byte bounds; bad lines are skipped (their messages are
/// parsed again). Sets the file's line count.
fn load(f: &mut Folder, dir: &Path, store: &MailStore) {
    f.summaries = Some(HashMap::new());
    f.summary_bytes = 0;
    f.summary_order.clear();
    f.summary_lines = 0;
    let Some(recs) = records(dir, f.validity, store.summary_limits.mime) else {
        return;
    };
    let mut n = 1;
    for (_, l) in recs {
        n += 1;
        if l.len() > store.summary_limits.max_entry_bytes.saturating_mul(2) {
            continue;
        }
        let Some((uid, s)) = parse_line(&l) else {
            continue;
        };
        if f.summary_bytes < store.summary_limits.max_bytes {
            f.remember_summary(uid, s, store);
        }
    }
    f.summary_lines = n;
}

impl Folder {
    /// Keeps a summary in memory, unless it is over the per-message cap.
    fn remember_summary(&mut self, uid: u32, s: Summary, store: &MailStore) {
        let size = summary_size(&s);
        if size > store.summary_limits.max_entry_bytes {
            return;
        }
        let age = store.summary_clock.fetch_add(1, Ordering::Relaxed);
        let cache = self.summaries.get_or_insert_with(HashMap::new);
        if let Some(old) = cache.insert(uid, s) {
            self.summary_bytes = self.summary_bytes.saturating_sub(summary_size(&old));
        }
        self.summary_bytes += size;
        self.summary_order.push_back((age, uid));
    }

    /// Forgets these messages' summaries (expunged).
    pub(super) fn forget_summaries(&mut self, uids: &[u32]) {
        let Some(cache) = self.summaries.as_mut() else {
            return;
        };
        for u in uids {
            if let Some(old) = cache.remove(u) {
                self.summary_bytes = self.summary_bytes.saturating_sub(summary_size(&old));
            }
        }
        if self.summary_order.len() > 2 * cache.len() + 64 {
            self.summary_order.retain(|(_, u)| cache.contains_key(u));
        }
    }

    /// The age of the oldest summary in memory.
    fn oldest_summary(&self) -> Option<u64> {
        self.summary_order.front().map(|(age, _)| *age)
    }

    /// Drops summaries from memory, oldest first, while older than
    /// `before` and over `bytes`; returns the bytes freed. A folder left
    /// with none reads its file again next time.
    fn evict_summaries(&mut self, before: u64, mut bytes: usize) -> usize {
        let mut freed = 0;
        while bytes > 0 {
            let Some(&(age, uid)) = self.summary_order.front() else {
                break;
            };
            if age > before {
                break;
            }
            self.summary_order.pop_front();
            let Some(old) = self.summaries.as_mut().and_then(|c| c.remove(&uid)) else {
                continue;
            };
            let size = summary_size(&old);
            self.summary_bytes = self.summary_bytes.saturating_sub(size);
            freed += size;
            bytes = bytes.saturating_sub(size);
        }
        if self.summaries.as_ref().is_some_and(HashMap::is_empty) {
            self.summaries = None;
            self.summary_order.clear();
            self.summary_bytes = 0;
        }
        freed
    }
}

/// Rewrites `postern-summaries`: the newest record of every live message
/// from the old file, then `fresh` (just parsed), then what memory holds
/// that the file lacked. Returns the new file's line count.
fn compact(
    f: &Folder,
    dir: &Path,
    fresh: &[(u32, Summary)],
    max_line: usize,
    mime: MimeLimits,
) -> io::Result<usize> {
    let live: HashSet<u32> = f.entries.iter().map(|e| e.uid).collect();
    let fresh_uids: HashSet<u32> = fresh.iter().map(|(u, _)| *u).collect();
    // The line holding each message's newest record.
    let mut newest: HashMap<u32, usize> = HashMap::new();
    if let Some(recs) = records(dir, f.validity, mime) {
        for (i, l) in recs {
            let uid = l.split('\t').next().and_then(|u| u.parse::<u32>().ok());
            if let Some(uid) = uid.filter(|u| live.contains(u) && !fresh_uids.contains(u)) {
                if l.len() <= max_line {
                    newest.insert(uid, i);
                }
            }
        }
    }
    let path = dir.join("postern-summaries");
    let tmp = path.with_extension("postern-tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    writeln!(out, "{}", header(f.validity, mime))?;
    let mut lines = 1;
    let mut written: HashSet<u32> = HashSet::new();
    if let Some(recs) = records(dir, f.validity, mime) {
        for (i, l) in recs {
            let uid = l.split('\t').next().and_then(|u| u.parse::<u32>().ok());
            if let Some(uid) = uid.filter(|u| newest.get(u) == Some(&i)) {
                out.write_all(l.as_bytes())?;
                out.write_all(b"\n")?;
                written.insert(uid);
                lines += 1;
            }
        }
    }
    for (u, s) in fresh {
        out.write_all(summary_line(*u, s).as_bytes())?;
        written.insert(*u);
        lines += 1;
    }
    if let Some(cache) = &f.summaries {
        for e in &f.entries {
            if let Some(s) = cache.get(&e.uid).filter(|_| !written.contains(&e.uid)) {
                out.write_all(summary_line(e.uid, s).as_bytes())?;
                lines += 1;
            }
        }
    }
    out.flush()?;
    drop(out);
    // A cache: written without fsync, rebuilt if lost.
    fs::rename(&tmp, &path)?;
    Ok(lines)
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
                load(f, dir, self);
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
                    parsed.push((
                        u,
                        postern_core::imap::mime::summary_with(&b, self.summary_limits.mime),
                    ));
                }
            }
            let cap = self.summary_limits.max_entry_bytes;
            self.with(dir, |f| {
                // Too large to cache: given, but neither kept nor written.
                let keep: Vec<(u32, Summary)> = parsed
                    .iter()
                    .filter(|(_, s)| summary_size(s) <= cap)
                    .cloned()
                    .collect();
                let live = f.entries.len();
                if f.summary_lines == 0 || f.summary_lines + keep.len() > 2 * live + 1024 {
                    let mime = self.summary_limits.mime;
                    f.summary_lines = compact(f, dir, &keep, cap.saturating_mul(2), mime)?;
                } else if !keep.is_empty() {
                    let mut text = String::new();
                    for (u, s) in &keep {
                        text.push_str(&summary_line(*u, s));
                    }
                    let path = dir.join("postern-summaries");
                    let mut file = OpenOptions::new().append(true).open(&path)?;
                    file.write_all(text.as_bytes())?;
                    f.summary_lines += keep.len();
                }
                for (u, s) in keep {
                    f.remember_summary(u, s, self);
                }
                Ok(())
            })?;
            have.extend(parsed);
            let order: HashMap<u32, usize> =
                uids.iter().enumerate().map(|(i, u)| (*u, i)).collect();
            have.sort_by_key(|(u, _)| order.get(u).copied().unwrap_or(usize::MAX));
        }
        self.bound_summaries();
        Ok(have)
    }

    /// Bounds memory: while the summaries of all folders take more than
    /// the limit, the oldest go (from whichever folder holds them).
    fn bound_summaries(&self) {
        let folders: Vec<_> = {
            let l = self.folders.lock().unwrap_or_else(|e| e.into_inner());
            l.values().cloned().collect()
        };
        // One folder's lock at a time, never with the map's.
        let mut total: usize = folders.iter().map(|f| lock(f).summary_bytes).sum();
        let limit = self.summary_limits.max_bytes;
        while total > limit {
            // The folder with the oldest summary, and the next oldest age
            // in any other folder: evict up to there, then look again.
            let ages: Vec<Option<u64>> = folders.iter().map(|f| lock(f).oldest_summary()).collect();
            let Some((i, _)) = ages
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|a| (i, a)))
                .min_by_key(|(_, a)| *a)
            else {
                break;
            };
            let next = ages
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, a)| *a)
                .min()
                .unwrap_or(u64::MAX);
            let freed = lock(&folders[i]).evict_summaries(next, total - limit);
            if freed == 0 && lock(&folders[i]).oldest_summary().is_none() {
                // Nothing left to free there (stale queue entries only).
                continue;
            }
            total = total.saturating_sub(freed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::Maildir;
    use postern_core::imap::event::{MailboxAnswer, MailboxRequest};
    use std::path::PathBuf;
    use std::sync::Arc;

    const USER: &str = "erin@example.com";

    fn store(limits: SummaryCacheLimits) -> (MailStore, PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("postern-summaries-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")))
            .with_summary_cache(limits);
        (s, dir)
    }

    fn append(s: &MailStore, mailbox: &str, data: Vec<u8>) {
        s.answer(
            USER,
            MailboxRequest::Append {
                mailbox: mailbox.into(),
                flags: vec![],
                data,
                date: None,
            },
        );
    }

    fn ask(s: &MailStore, mailbox: &str, uid: u32) -> Summary {
        let MailboxAnswer::Summaries(mut v) = s.answer(
            USER,
            MailboxRequest::Summaries {
                mailbox: mailbox.into(),
                uids: vec![uid],
            },
        ) else {
            panic!("no summaries")
        };
        v.remove(0).1
    }

    fn in_memory(s: &MailStore) -> (usize, Vec<u32>) {
        let l = s.folders.lock().unwrap();
        let mut uids = Vec::new();
        let mut bytes = 0;
        for f in l.values() {
            let f = lock(f);
            bytes += f.summary_bytes;
            if let Some(c) = &f.summaries {
                assert_eq!(f.summary_bytes, c.values().map(summary_size).sum::<usize>());
                uids.extend(c.keys().copied());
            }
        }
        uids.sort_unstable();
        (bytes, uids)
    }

    fn message(i: usize) -> Vec<u8> {
        format!("From: a{i}@example.net\r\nSubject: message {i}\r\n\r\nbody {i}\r\n").into_bytes()
    }

    #[test]
    fn memory_is_bounded_in_bytes_oldest_first() {
        let limits = SummaryCacheLimits {
            max_bytes: 4096,
            max_entry_bytes: 2048,
            ..Default::default()
        };
        let (s, dir) = store(limits);
        s.answer(
            USER,
            MailboxRequest::Create {
                mailbox: "Other".into(),
            },
        );
        for i in 0..30 {
            append(&s, "INBOX", message(i));
            append(&s, "Other", message(100 + i));
        }
        for uid in 1..=30 {
            assert_eq!(
                ask(&s, "INBOX", uid).sort.subject,
                format!("message {}", uid - 1)
            );
            assert_eq!(
                ask(&s, "Other", uid).sort.subject,
                format!("message {}", 99 + uid)
            );
            let (bytes, _) = in_memory(&s);
            assert!(bytes <= limits.max_bytes, "{bytes}");
        }
        // The newest stayed, the oldest went; the file still has them all.
        let (_, uids) = in_memory(&s);
        assert!(uids.contains(&30) && !uids.contains(&1), "{uids:?}");
        let file = fs::read_to_string(dir.join("example.com/erin/postern-summaries")).unwrap();
        assert_eq!(file.lines().count(), 31);
        // Asked again, an evicted summary is parsed again and appended
        // (the file is compacted when such copies pile up).
        assert_eq!(ask(&s, "INBOX", 1).sort.subject, "message 0");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_summary_over_the_cap_is_not_cached() {
        let limits = SummaryCacheLimits {
            max_bytes: 1 << 20,
            max_entry_bytes: 700,
            ..Default::default()
        };
        let (s, dir) = store(limits);
        append(&s, "INBOX", message(1));
        let mut big = b"Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..20 {
            big.extend_from_slice(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        }
        big.extend_from_slice(b"--b--\r\n");
        append(&s, "INBOX", big);
        for _ in 0..3 {
            assert_eq!(ask(&s, "INBOX", 1).sort.subject, "message 1");
            assert!(ask(&s, "INBOX", 2).bodystructure.contains("\"MIXED\""));
        }
        assert_eq!(in_memory(&s).1, vec![1]);
        let file = fs::read_to_string(dir.join("example.com/erin/postern-summaries")).unwrap();
        assert_eq!(file.lines().count(), 2, "{file}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_is_compacted_from_itself() {
        let (s, dir) = store(SummaryCacheLimits::default());
        for i in 0..5 {
            append(&s, "INBOX", message(i));
        }
        for uid in 1..=5 {
            ask(&s, "INBOX", uid);
        }
        let path = dir.join("example.com/erin/postern-summaries");
        // Stale copies (as an evicted summary parsed again leaves).
        let mut text = fs::read_to_string(&path).unwrap();
        let record = text.lines().nth(1).unwrap().to_owned();
        for _ in 0..2000 {
            text.push_str(&record);
            text.push('\n');
        }
        fs::write(&path, text).unwrap();
        let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
        append(&again, "INBOX", message(5));
        assert_eq!(ask(&again, "INBOX", 6).sort.subject, "message 5");
        let file = fs::read_to_string(&path).unwrap();
        assert_eq!(file.lines().count(), 7, "{file}");
        let third = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
        for uid in 1..=6 {
            assert_eq!(
                ask(&third, "INBOX", uid).sort.subject,
                format!("message {}", uid - 1)
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
