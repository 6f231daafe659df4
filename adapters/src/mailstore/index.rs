//! A folder's in-memory index: its messages in UID order with flags,
//! sizes, dates and mod-sequences, brought up to date from `new/` and
//! `cur/` only when their modification times moved, and incrementally.

use super::files::{crlf_size, size_from_name, write_atomic};
use super::flags::{parse_info, read_keywords, split_name};
use super::modseq::{expunged_record, read_modlog};
use super::uidlist::{new_uidlist, read_uidlist};
use crate::maildir::sync_dir;
use postern_core::imap::event::{MailboxView, MessageMeta, StatusCounts, Summary};
use postern_core::imap::rules;
use postern_core::imap::vanished::{self, Tombstones};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::fs::OpenOptions;
use std::io;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A message file as found on disk.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) uid: u32,
    /// The file name in `cur/`.
    pub(super) name: String,
    /// Its length before `:2,` (the base name).
    pub(super) base_len: usize,
    pub(super) flags: Vec<String>,
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) modseq: u64,
}

/// The order Maildir names sort in by arrival: the seconds before the first
/// dot, then the microseconds of an `M<usec>` part and the counter of a
/// `Q<n>` part after it (`1764633600.M99999P7Q3.host` comes before
/// `1764633600.M100000P7Q1.host`, which plain string order gets wrong),
/// then the name itself. Names in other forms sort by what they have.
pub(super) fn arrival_key(base: &str) -> (u64, u64, u64, &str) {
    let number = |s: &str| -> u64 {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().unwrap_or(0)
    };
    let (secs, rest) = base.split_once('.').unwrap_or((base, ""));
    let unique = rest.split('.').next().unwrap_or("");
    let after = |tag: char| unique.find(tag).map_or(0, |i| number(&unique[i + 1..]));
    (number(secs), after('M'), after('Q'), base)
}

impl Entry {
    pub(super) fn base(&self) -> &str {
        &self.name[..self.base_len]
    }
}

/// One folder's index.
#[derive(Debug, Default)]
pub(super) struct Folder {
    pub(super) loaded: bool,
    /// The directory stamp the index matches.
    pub(super) stamp: Option<Stamp>,
    /// Whether that stamp is old enough to be trusted for good.
    pub(super) verified: bool,
    pub(super) validity: u32,
    pub(super) next: u32,
    pub(super) entries: Vec<Entry>,
    pub(super) keywords: Vec<String>,
    pub(super) highest_modseq: u64,
    /// The mod-sequence of messages the log does not list.
    pub(super) modseq_base: u64,
    /// Lines in `postern-modseq` (compacted when much longer than needed).
    pub(super) modlog_lines: usize,
    /// The lowest UID no session has taken as `\Recent`.
    pub(super) first_recent: u32,
    /// Expunged UIDs with their mod-sequences (QRESYNC).
    pub(super) tombstones: Tombstones,
    /// The message list handed to sessions; rebuilt after a change.
    pub(super) view: Option<Arc<Vec<MessageMeta>>>,
    pub(super) summaries: Option<HashMap<u32, Summary>>,
    /// The bytes those summaries take (as `summaries::summary_size` counts).
    pub(super) summary_bytes: usize,
    /// When each summary came into memory (the store's count) and its UID,
    /// oldest first: the eviction order. May name UIDs already gone.
    pub(super) summary_order: VecDeque<(u64, u32)>,
    pub(super) summary_lines: usize,
    /// When `cur/` was last listed whole: between listings, a scan after
    /// which only `new/` changed moves its files without listing `cur/`
    /// again (a delivery to an INBOX of 10,000 messages with a client in
    /// IDLE listed them all each time).
    pub(super) listed_at: Option<Instant>,
}

/// What a folder needs to start a UID list: the time, and a UIDVALIDITY
/// (asked for only when a new list is made).
pub(super) struct NewList<'a> {
    pub(super) now: i64,
    pub(super) validity: &'a dyn Fn() -> u32,
}

/// Modification times of a folder's `new/`, `cur/` and `dovecot-uidlist`.
pub(super) type Stamp = (SystemTime, SystemTime, Option<SystemTime>);

/// A stamp younger than this is not trusted for good: a change in the
/// same clock tick would not move it (the "racy git" problem). The index
/// is checked once more when its stamp has settled.
pub(super) const STAMP_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn stamp(dir: &Path) -> Option<Stamp> {
    let m = |p: PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((
        m(dir.join("new"))?,
        m(dir.join("cur"))?,
        m(dir.join("dovecot-uidlist")),
    ))
}

pub(super) fn settled(st: Option<Stamp>) -> bool {
    st.is_some_and(|st| {
        SystemTime::now()
            .duration_since(st.0.max(st.1))
            .is_ok_and(|d| d > STAMP_SETTLE)
    })
}

impl Folder {
    /// Brings the index up to date with the directory.
    pub(super) fn refresh(&mut self, dir: &Path, clock: &NewList<'_>) -> io::Result<()> {
        let st = stamp(dir);
        if self.loaded && st.map(|s| s.2) != self.stamp.map(|s| s.2) {
            // Someone else wrote the UID list (a Maildir copied in): start over.
            *self = Folder::default();
        }
        if self.current(st) {
            return Ok(());
        }
        self.rescan(dir, clock)
    }

    /// Whether the index, loaded already, matches the directory stamped
    /// `st` and needs no scan.
    pub(super) fn current(&self, st: Option<Stamp>) -> bool {
        // A stamp that matches but has only settled since is looked at
        // once more, then trusted; a young one is our own recent change,
        // or a scan a moment ago.
        self.loaded && st.is_some() && st == self.stamp && (self.verified || !settled(st))
    }

    pub(super) fn rescan(&mut self, dir: &Path, clock: &NewList<'_>) -> io::Result<()> {
        // Only new/ changed since the last scan (cur/ and the UID list
        // as they were), and cur/ was listed whole a moment ago: the
        // files moved from new/ are all that is new in cur/. A change by
        // another program at the same moment shows at the next whole
        // listing: within STAMP_SETTLE under load, or when the stamp has
        // settled.
        let before = stamp(dir);
        let only_new = self.loaded
            && before.is_some_and(|b| {
                self.stamp
                    .is_some_and(|p| p != b && p.1 == b.1 && p.2 == b.2)
            })
            && self.listed_at.is_some_and(|t| t.elapsed() < STAMP_SETTLE);
        // new/ -> cur/. Which session sees them as \Recent is the
        // folder's mark (`first_recent`), not the directory: a first load
        // without a mark makes the messages found in new/ the recent ones.
        let mut from_new: HashSet<String> = HashSet::new();
        let mut moved: Vec<String> = Vec::new();
        if let Ok(rd) = fs::read_dir(dir.join("new")) {
            for e in rd.filter_map(Result::ok) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') {
                    continue;
                }
                let to = format!("{n}:2,");
                if fs::rename(e.path(), dir.join("cur").join(&to)).is_ok() {
                    if !self.loaded {
                        from_new.insert(n);
                    }
                    moved.push(to);
                }
            }
        }
        let mut first_recent: Option<u32> = None;
        let mut expunged_log: Vec<(u64, Vec<u32>)> = Vec::new();
        let st = stamp(dir);
        let mut uidlist = None;
        let mut logged: HashMap<u32, u64> = HashMap::new();
        if !self.loaded {
            let existing = read_uidlist(dir)?;
            // UIDs clients may have cached, but no mod-sequences of ours
            // (a Maildir taken over from Dovecot, or a lost log): start
            // above any number a client can hold, so CONDSTORE clients
            // fetch every flag once. A new UID list means a new
            // UIDVALIDITY, and clients start over anyway: start at 1.
            let fresh_base = if existing.is_some() {
                u64::try_from(clock.now).unwrap_or(1).max(1)
            } else {
                1
            };
            let list = existing.unwrap_or_else(|| new_uidlist((clock.validity)()));
            self.validity = list.validity;
            self.next = list.next.max(1);
            self.keywords = read_keywords(dir)?;
            let log = read_modlog(dir, self.validity, fresh_base);
            self.modlog_lines = log.lines;
            self.modseq_base = log.base;
            self.highest_modseq = log.highest.max(log.base);
            // Without an `F` line (no log, or one from before QRESYNC)
            // nothing is known of earlier expunges.
            self.tombstones = Tombstones::new(log.floor.unwrap_or(self.highest_modseq));
            first_recent = log.first_recent;
            expunged_log = log.expunged;
            logged = log.map;
            uidlist = Some(list.uids);
        } else {
            // Unreadable now: the table in memory stays.
            if let Ok(kw) = read_keywords(dir) {
                if kw != self.keywords {
                    self.keywords = kw;
                }
            }
        }
        let mut fresh: Vec<Entry> = Vec::new();
        let mut flag_changes: Vec<u32> = Vec::new();
        let (mut entries, removed_uids) = if only_new {
            for name in &moved {
                let path = dir.join("cur").join(name);
                // Gone already (taken by another program): the next
                // whole listing tells.
                let Ok(meta) = fs::metadata(&path) else {
                    continue;
                };
                fresh.push(self.new_entry(name, &path, &meta, 0));
            }
            (std::mem::take(&mut self.entries), Vec::new())
        } else {
            let listing = Instant::now();
            let old: HashMap<&str, usize> = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.base(), i))
                .collect();
            let mut keep: Vec<Option<Entry>> = vec![None; self.entries.len()];
            for e in fs::read_dir(dir.join("cur"))?.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let (base_len, info) = split_name(&name);
                let base = &name[..base_len];
                if let Some(&i) = old.get(base) {
                    let mut entry = self.entries[i].clone();
                    if entry.name != name {
                        // Flags changed by someone else.
                        entry.flags = parse_info(info, &self.keywords);
                        entry.name = name.clone();
                        entry.base_len = base_len;
                        flag_changes.push(entry.uid);
                    }
                    keep[i] = Some(entry);
                    continue;
                }
                let meta = e.metadata()?;
                let uid = uidlist
                    .as_ref()
                    .and_then(|l| l.get(base).copied())
                    .unwrap_or(0);
                fresh.push(self.new_entry(&name, &e.path(), &meta, uid));
            }
            let removed_uids: Vec<u32> = keep
                .iter()
                .zip(&self.entries)
                .filter(|(k, _)| k.is_none())
                .map(|(_, e)| e.uid)
                .collect();
            self.listed_at = Some(listing);
            (keep.into_iter().flatten().collect(), removed_uids)
        };
        let removed = removed_uids.len();
        // Newcomers without a UID get one in the order they arrived (the
        // name starts with the time).
        fresh.sort_by(|a, b| arrival_key(a.base()).cmp(&arrival_key(b.base())));
        let first_load_log = !self.loaded;
        let mut appended = Vec::new();
        let mut log = Vec::new();
        let listed = uidlist.as_ref().map_or(0, HashMap::len);
        let mut matched = 0;
        for mut e in fresh {
            if e.uid == 0 {
                e.uid = rules::next_uid(&mut self.next);
                appended.push(e.uid);
                e.modseq = rules::next_modseq(&mut self.highest_modseq);
                log.push((e.uid, e.modseq));
            } else {
                matched += 1;
                e.modseq = logged.get(&e.uid).copied().unwrap_or(self.modseq_base);
            }
            self.next = self.next.max(e.uid.saturating_add(1));
            entries.push(e);
        }
        let changed_flags: std::collections::HashSet<u32> = flag_changes.iter().copied().collect();
        for e in entries
            .iter_mut()
            .filter(|e| changed_flags.contains(&e.uid))
        {
            e.modseq = rules::next_modseq(&mut self.highest_modseq);
            log.push((e.uid, e.modseq));
        }
        let mut extra = String::new();
        if removed > 0 || (first_load_log && self.modlog_lines == 0) {
            if removed > 0 {
                // Removed by someone else: gone at this mod-sequence.
                let m = rules::next_modseq(&mut self.highest_modseq);
                self.tombstones.record(m, &removed_uids);
                extra.push_str(&expunged_record(m, &removed_uids));
            }
            // A new log is written at once, so its base stays put.
            log.push((0, self.highest_modseq));
        }
        entries.sort_by_key(|e| e.uid);
        entries.dedup_by_key(|e| e.uid);
        let first_load = !self.loaded;
        if first_load {
            let present: HashSet<u32> = entries.iter().map(|e| e.uid).collect();
            for (m, uids) in expunged_log {
                self.tombstones.record(m, &uids);
            }
            // An expunge logged but cut short before its files went.
            self.tombstones.keep_missing(|u| present.contains(&u));
            if let Some(list) = uidlist.as_ref() {
                let known: HashSet<u32> = self.tombstones.since(0).into_iter().collect();
                if list
                    .values()
                    .any(|u| !present.contains(u) && !known.contains(u))
                {
                    // Listed once, gone now, and not by us: when is unknown.
                    self.tombstones.raise_floor(self.highest_modseq);
                }
            }
            self.first_recent = first_recent.unwrap_or_else(|| {
                entries
                    .iter()
                    .filter(|e| from_new.contains(e.base()))
                    .map(|e| e.uid)
                    .min()
                    .unwrap_or(self.next)
            });
            if first_recent.is_none() {
                // Kept, or a restart would find them all in cur/.
                extra.push_str(&format!("R {}\n", self.first_recent));
            }
        }
        let changed = first_load || removed > 0 || !appended.is_empty() || !flag_changes.is_empty();
        self.entries = entries;
        self.loaded = true;
        let stale = first_load && (matched != listed || !dir.join("dovecot-uidlist").exists());
        if removed > 0 || stale {
            self.write_uidlist(dir)?;
        } else if !appended.is_empty() {
            self.append_uidlist(dir, &appended)?;
        }
        self.log_modseqs(dir, &log)?;
        if !extra.is_empty() {
            self.log_lines(dir, &extra, false)?;
        }
        if changed {
            self.view = None;
        }
        // Our own UID list writes are not news; keep the directory times
        // from before the scan (a change during it shows next time).
        self.stamp = st.map(|(n, c, _)| {
            let u = fs::metadata(dir.join("dovecot-uidlist"))
                .and_then(|m| m.modified())
                .ok();
            (n, c, u)
        });
        self.verified = settled(st);
        Ok(())
    }

    /// The entry of a message file found in `cur/` (UID 0: none yet).
    fn new_entry(&self, name: &str, path: &Path, meta: &fs::Metadata, uid: u32) -> Entry {
        let (base_len, info) = split_name(name);
        let mtime = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let size = size_from_name(&name[..base_len])
            .unwrap_or_else(|| crlf_size(path).unwrap_or(meta.len()));
        Entry {
            uid,
            flags: parse_info(info, &self.keywords),
            name: name.to_owned(),
            base_len,
            size,
            mtime,
            modseq: 0,
        }
    }

    /// After a change of our own: the index is right; remember the stamp.
    pub(super) fn touched(&mut self, dir: &Path) {
        self.view = None;
        self.stamp = stamp(dir);
        self.verified = false;
    }

    pub(super) fn index_of(&self, uid: u32) -> Option<usize> {
        self.entries.binary_search_by_key(&uid, |e| e.uid).ok()
    }

    pub(super) fn bump(&mut self, i: usize) -> u64 {
        let m = rules::next_modseq(&mut self.highest_modseq);
        self.entries[i].modseq = m;
        m
    }

    pub(super) fn view(&mut self) -> Arc<Vec<MessageMeta>> {
        if let Some(v) = &self.view {
            return v.clone();
        }
        let v: Arc<Vec<MessageMeta>> = Arc::new(
            self.entries
                .iter()
                .map(|e| MessageMeta {
                    uid: e.uid,
                    flags: e.flags.clone(),
                    size: e.size,
                    internal_date: e.mtime,
                    modseq: e.modseq,
                })
                .collect(),
        );
        self.view = Some(v.clone());
        v
    }

    /// The mailbox as SELECT and Poll give it, with these LIST attributes
    /// and the UIDs made recent for the asking session.
    pub(super) fn current_view(
        &mut self,
        attributes: Vec<String>,
        recent: Vec<u32>,
    ) -> MailboxView {
        MailboxView {
            recent,
            uid_validity: self.validity,
            uid_next: self.next,
            messages: self.view(),
            keywords: self
                .keywords
                .iter()
                .filter(|k| !k.is_empty())
                .cloned()
                .collect(),
            highest_modseq: self.highest_modseq,
            attributes,
        }
    }

    pub(super) fn counts(&self) -> StatusCounts {
        StatusCounts {
            messages: u32::try_from(self.entries.len()).unwrap_or(u32::MAX),
            unseen: u32::try_from(
                self.entries
                    .iter()
                    .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                    .count(),
            )
            .unwrap_or(0),
            uid_next: self.next,
            uid_validity: self.validity,
            recent: vanished::recent_count(self.first_recent, self.entries.iter().map(|e| e.uid)),
            size: self.entries.iter().map(|m| m.size).sum(),
            highest_modseq: self.highest_modseq,
            deleted: u32::try_from(self.deleted().count()).unwrap_or(u32::MAX),
            deleted_storage: self.deleted().map(|m| m.size).sum(),
        }
    }

    pub(super) fn deleted(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|m| m.flags.iter().any(|f| f == "\\Deleted"))
    }

    /// Deletes these messages' files and forgets them.
    pub(super) fn remove(&mut self, dir: &Path, uids: &[u32]) -> io::Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        // The tombstones first, durably: a crash after this leaves UIDs
        // listed as expunged that still exist, which the next load
        // forgets; the other order could lose an expunge QRESYNC must
        // report.
        let gone: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| self.index_of(*u).is_some())
            .collect();
        let h = rules::next_modseq(&mut self.highest_modseq);
        self.tombstones.record(h, &gone);
        let record = format!("{}0 {h}\n", expunged_record(h, &gone));
        self.log_lines(dir, &record, true)?;
        for u in uids {
            if let Some(i) = self.index_of(*u) {
                match fs::remove_file(dir.join("cur").join(&self.entries[i].name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        sync_dir(&dir.join("cur"))?;
        self.entries.retain(|e| !uids.contains(&e.uid));
        self.forget_summaries(uids);
        self.write_uidlist(dir)?;
        self.touched(dir);
        Ok(())
    }
}

/// The folder's own files: `postern-modseq` (CONDSTORE mod-sequences).
impl Folder {
    /// Appends (uid, modseq) records to `postern-modseq`; uid 0 records
    /// the highest mod-sequence (after an expunge). Compacts when long.
    pub(super) fn log_modseqs(&mut self, dir: &Path, records: &[(u32, u64)]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for (u, m) in records {
            text.push_str(&format!("{u} {m}\n"));
        }
        self.log_lines(dir, &text, false)
    }

    /// Appends whole lines to `postern-modseq` (synced when `sync`), or
    /// rewrites it compacted (atomically) when it is new or much longer
    /// than what it describes.
    pub(super) fn log_lines(&mut self, dir: &Path, text: &str, sync: bool) -> io::Result<()> {
        let path = dir.join("postern-modseq");
        let bound = 2 * (self.entries.len() + self.tombstones.len()) + 1024;
        if self.modlog_lines == 0 || self.modlog_lines > bound {
            let mut text = format!(
                "V{} B{}\n0 {}\nR {}\nF {}\n",
                self.validity,
                self.modseq_base,
                self.highest_modseq,
                self.first_recent,
                self.tombstones.floor()
            );
            for (m, uids) in self.tombstones.groups() {
                text.push_str(&expunged_record(m, &uids));
            }
            for e in self.entries.iter().filter(|e| e.modseq != self.modseq_base) {
                text.push_str(&format!("{} {}\n", e.uid, e.modseq));
            }
            self.modlog_lines = text.lines().count();
            return write_atomic(&path, text.as_bytes());
        }
        let mut f = OpenOptions::new().append(true).create(true).open(&path)?;
        f.write_all(text.as_bytes())?;
        if sync {
            f.sync_data()?;
        }
        self.modlog_lines += text.lines().count();
        Ok(())
    }

    /// Takes recency for a read-write session (RFC 3501 2.3.2): the
    /// messages at or above the mark, which moves past them (logged).
    pub(super) fn take_recent(&mut self, dir: &Path) -> io::Result<Vec<u32>> {
        if self.first_recent >= self.next {
            return Ok(Vec::new());
        }
        let taken = vanished::take_recent(
            &mut self.first_recent,
            self.next,
            self.entries.iter().map(|e| e.uid),
        );
        let line = format!("R {}\n", self.first_recent);
        self.log_lines(dir, &line, false)?;
        Ok(taken)
    }
}

/// The folder's own files: `dovecot-uidlist`.
impl Folder {
    pub(super) fn write_uidlist(&self, dir: &Path) -> io::Result<()> {
        let mut text = format!("3 V{} N{}\n", self.validity, self.next);
        for e in &self.entries {
            text.push_str(&format!("{} :{}\n", e.uid, e.base()));
        }
        write_atomic(&dir.join("dovecot-uidlist"), text.as_bytes())
    }

    /// Adds lines for new UIDs to `dovecot-uidlist` (Dovecot appends too;
    /// readers take the next UID past the highest listed).
    pub(super) fn append_uidlist(&self, dir: &Path, uids: &[u32]) -> io::Result<()> {
        let path = dir.join("dovecot-uidlist");
        if !path.exists() {
            return self.write_uidlist(dir);
        }
        let mut text = String::new();
        for u in uids {
            if let Some(i) = self.index_of(*u) {
                text.push_str(&format!("{u} :{}\n", self.entries[i].base()));
            }
        }
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()
    }
}
