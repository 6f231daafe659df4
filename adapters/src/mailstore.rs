//! The IMAP mailbox store over Maildir++ (the layout Dovecot and
//! docker-mailserver use): folders as `.Name` (`.A.B` for `A/B`), flags in
//! file names (`:2,FRS`), keywords in `dovecot-keywords`, and UIDs with
//! UIDVALIDITY in `dovecot-uidlist`, read and written in Dovecot's own
//! format so a mailbox taken over from Dovecot keeps its UIDs and clients
//! do not download everything again.
//!
//! Each folder has one in-memory index (its messages in UID order, with
//! flags, sizes, dates and mod-sequences), guarded by one lock. The index
//! is brought up to date from the directory only when `new/` or `cur/`
//! changed (their modification times), and then incrementally: known
//! files cost a name comparison, not a stat. The store's own changes
//! (STORE, APPEND, EXPUNGE, MOVE) update the index in place. Two files
//! beside Dovecot's are Postern's own and rebuildable: `postern-modseq`
//! (CONDSTORE mod-sequences, an append-only log) and `postern-summaries`
//! (parsed ENVELOPE/BODYSTRUCTURE/SORT keys per message).

use crate::directory::Mailbox;
use crate::maildir::{crlf_to_lf, sync_dir, ChangeHook, DeliveryJob, Maildir};
use crate::store::{
    ChangeListener, Clock, Delivery, MailboxId, MailboxStore, StoreError, SystemClock, Version,
};
use postern_core::imap::event::{
    Code, ListEntry, MailboxAnswer, MailboxRequest, MailboxView, MessageMeta, SortKeys,
    StatusCounts, StoreMode, Stored, Summary,
};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest message body read for FETCH or SEARCH.
const MAX_MESSAGE: u64 = 64 << 20;
/// The version of what `postern-summaries` holds: a cache written by an
/// older Postern (other ENVELOPE or BODYSTRUCTURE text) is rebuilt.
const SUMMARY_FORMAT: u32 = 2;
/// The largest header read when only the header is asked for.
const MAX_HEADER: usize = 1 << 20;
/// Summaries kept in memory over all folders; past this a folder's are
/// dropped after use and read again from `postern-summaries`.
const MAX_SUMMARIES_IN_MEMORY: usize = 50_000;

/// A message file as found on disk.
#[derive(Clone, Debug)]
struct Entry {
    uid: u32,
    /// The file name in `cur/`.
    name: String,
    /// Its length before `:2,` (the base name).
    base_len: usize,
    flags: Vec<String>,
    size: u64,
    mtime: i64,
    modseq: u64,
}

impl Entry {
    fn base(&self) -> &str {
        &self.name[..self.base_len]
    }
}

/// One folder's UID list (as read from `dovecot-uidlist`).
#[derive(Clone, Debug, Default)]
struct UidList {
    validity: u32,
    next: u32,
    /// base name -> uid
    uids: HashMap<String, u32>,
}

/// One folder's index.
#[derive(Debug, Default)]
struct Folder {
    loaded: bool,
    /// The directory stamp the index matches.
    stamp: Option<Stamp>,
    /// Whether that stamp is old enough to be trusted for good.
    verified: bool,
    validity: u32,
    next: u32,
    entries: Vec<Entry>,
    keywords: Vec<String>,
    highest_modseq: u64,
    /// The mod-sequence of messages the log does not list.
    modseq_base: u64,
    /// Lines in `postern-modseq` (compacted when much longer than needed).
    modlog_lines: usize,
    /// The message list handed to sessions; rebuilt after a change.
    view: Option<Arc<Vec<MessageMeta>>>,
    summaries: Option<HashMap<u32, Summary>>,
    summary_lines: usize,
}

/// The store of all accounts under a Maildir root.
#[derive(Debug)]
pub struct MailStore {
    maildir: Arc<Maildir>,
    folders: Mutex<HashMap<PathBuf, Arc<Mutex<Folder>>>>,
    /// Storage limit per account in bytes (None: unlimited).
    quota: Option<u64>,
    /// Per-account limits (docker-mailserver's `dovecot-quotas.cf`).
    quotas: HashMap<String, u64>,
    /// The time, and new UIDVALIDITY values.
    clock: Arc<dyn Clock>,
}

/// What a folder needs to start a UID list: the time, and a UIDVALIDITY
/// (asked for only when a new list is made).
struct NewList<'a> {
    now: i64,
    validity: &'a dyn Fn() -> u32,
}

/// Modification times of a folder's `new/`, `cur/` and `dovecot-uidlist`.
type Stamp = (SystemTime, SystemTime, Option<SystemTime>);

/// A stamp younger than this is not trusted for good: a change in the
/// same clock tick would not move it (the "racy git" problem). The index
/// is checked once more when its stamp has settled.
const STAMP_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

fn stamp(dir: &Path) -> Option<Stamp> {
    let m = |p: PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((
        m(dir.join("new"))?,
        m(dir.join("cur"))?,
        m(dir.join("dovecot-uidlist")),
    ))
}

fn settled(st: Option<Stamp>) -> bool {
    st.is_some_and(|st| {
        SystemTime::now()
            .duration_since(st.0.max(st.1))
            .is_ok_and(|d| d > STAMP_SETTLE)
    })
}

fn no(code: Code, text: impl Into<String>) -> MailboxAnswer {
    MailboxAnswer::No {
        code: Some(code),
        text: text.into(),
    }
}

fn lock(f: &Mutex<Folder>) -> std::sync::MutexGuard<'_, Folder> {
    f.lock().unwrap_or_else(|e| e.into_inner())
}

/// `\Seen` etc. to Maildir letters and back (keywords apart).
pub const FLAG_LETTERS: [(char, &str); 6] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('P', "$Forwarded"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

fn split_name(name: &str) -> (usize, &str) {
    match name.find(":2,") {
        Some(i) => (i, &name[i + 3..]),
        None => (name.len(), ""),
    }
}

impl Folder {
    /// Brings the index up to date with the directory.
    fn refresh(&mut self, dir: &Path, clock: &NewList<'_>) -> io::Result<()> {
        let st = stamp(dir);
        if self.loaded && st.map(|s| s.2) != self.stamp.map(|s| s.2) {
            // Someone else wrote the UID list (a Maildir copied in): start over.
            *self = Folder::default();
        }
        if self.loaded && st.is_some() && st == self.stamp {
            if self.verified {
                return Ok(());
            }
            if !settled(st) {
                // Our own recent change, or a scan a moment ago.
                return Ok(());
            }
            // Settled since: look once more, then trust it.
        }
        self.rescan(dir, clock)
    }

    fn rescan(&mut self, dir: &Path, clock: &NewList<'_>) -> io::Result<()> {
        // new/ -> cur/ (a session has seen them: no longer \Recent).
        if let Ok(rd) = fs::read_dir(dir.join("new")) {
            for e in rd.filter_map(Result::ok) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') {
                    continue;
                }
                let _ = fs::rename(e.path(), dir.join("cur").join(format!("{n}:2,")));
            }
        }
        let st = stamp(dir);
        let mut uidlist = None;
        let mut logged: HashMap<u32, u64> = HashMap::new();
        if !self.loaded {
            let existing = read_uidlist(dir);
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
            self.keywords = read_keywords(dir);
            let (lines, base, highest, map) = read_modlog(dir, self.validity, fresh_base);
            self.modlog_lines = lines;
            self.modseq_base = base;
            self.highest_modseq = highest.max(base);
            logged = map;
            uidlist = Some(list.uids);
        } else {
            let kw = read_keywords(dir);
            if kw != self.keywords {
                self.keywords = kw;
            }
        }
        let old: HashMap<&str, usize> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.base(), i))
            .collect();
        let mut keep: Vec<Option<Entry>> = vec![None; self.entries.len()];
        let mut fresh: Vec<Entry> = Vec::new();
        let mut flag_changes: Vec<u32> = Vec::new();
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
            let mtime = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            let size =
                size_from_name(base).unwrap_or_else(|| crlf_size(&e.path()).unwrap_or(meta.len()));
            let uid = uidlist
                .as_ref()
                .and_then(|l| l.get(base).copied())
                .unwrap_or(0);
            fresh.push(Entry {
                uid,
                flags: parse_info(info, &self.keywords),
                name: name.clone(),
                base_len,
                size,
                mtime,
                modseq: 0,
            });
        }
        let removed = keep.iter().filter(|k| k.is_none()).count();
        let mut entries: Vec<Entry> = keep.into_iter().flatten().collect();
        // Newcomers without a UID get one in the order they arrived (the
        // name starts with the time).
        fresh.sort_by(|a, b| a.base().cmp(b.base()));
        let first_load_log = !self.loaded;
        let mut appended = Vec::new();
        let mut log = Vec::new();
        let listed = uidlist.as_ref().map_or(0, HashMap::len);
        let mut matched = 0;
        for mut e in fresh {
            if e.uid == 0 {
                e.uid = self.next;
                self.next += 1;
                appended.push(e.uid);
                self.highest_modseq += 1;
                e.modseq = self.highest_modseq;
                log.push((e.uid, e.modseq));
            } else {
                matched += 1;
                e.modseq = logged.get(&e.uid).copied().unwrap_or(self.modseq_base);
            }
            self.next = self.next.max(e.uid + 1);
            entries.push(e);
        }
        let changed_flags: std::collections::HashSet<u32> = flag_changes.iter().copied().collect();
        for e in entries
            .iter_mut()
            .filter(|e| changed_flags.contains(&e.uid))
        {
            self.highest_modseq += 1;
            e.modseq = self.highest_modseq;
            log.push((e.uid, e.modseq));
        }
        if removed > 0 || (first_load_log && self.modlog_lines == 0) {
            if removed > 0 {
                self.highest_modseq += 1;
            }
            // A new log is written at once, so its base stays put.
            log.push((0, self.highest_modseq));
        }
        entries.sort_by_key(|e| e.uid);
        entries.dedup_by_key(|e| e.uid);
        let first_load = !self.loaded;
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

    /// After a change of our own: the index is right; remember the stamp.
    fn touched(&mut self, dir: &Path) {
        self.view = None;
        self.stamp = stamp(dir);
        self.verified = false;
    }

    fn index_of(&self, uid: u32) -> Option<usize> {
        self.entries.binary_search_by_key(&uid, |e| e.uid).ok()
    }

    fn write_uidlist(&self, dir: &Path) -> io::Result<()> {
        let mut text = format!("3 V{} N{}\n", self.validity, self.next);
        for e in &self.entries {
            text.push_str(&format!("{} :{}\n", e.uid, e.base()));
        }
        write_atomic(&dir.join("dovecot-uidlist"), text.as_bytes())
    }

    /// Adds lines for new UIDs to `dovecot-uidlist` (Dovecot appends too;
    /// readers take the next UID past the highest listed).
    fn append_uidlist(&self, dir: &Path, uids: &[u32]) -> io::Result<()> {
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

    /// Appends (uid, modseq) records to `postern-modseq`; uid 0 records
    /// the highest mod-sequence (after an expunge). Compacts when long.
    fn log_modseqs(&mut self, dir: &Path, records: &[(u32, u64)]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let path = dir.join("postern-modseq");
        if self.modlog_lines == 0 || self.modlog_lines > 2 * self.entries.len() + 1024 {
            let mut text = format!(
                "V{} B{}\n0 {}\n",
                self.validity, self.modseq_base, self.highest_modseq
            );
            for e in self.entries.iter().filter(|e| e.modseq != self.modseq_base) {
                text.push_str(&format!("{} {}\n", e.uid, e.modseq));
            }
            self.modlog_lines = text.lines().count();
            return write_atomic(&path, text.as_bytes());
        }
        let mut text = String::new();
        for (u, m) in records {
            text.push_str(&format!("{u} {m}\n"));
        }
        let mut f = OpenOptions::new().append(true).create(true).open(&path)?;
        f.write_all(text.as_bytes())?;
        self.modlog_lines += records.len();
        Ok(())
    }

    fn bump(&mut self, i: usize) -> u64 {
        self.highest_modseq += 1;
        self.entries[i].modseq = self.highest_modseq;
        self.highest_modseq
    }

    fn view(&mut self) -> Arc<Vec<MessageMeta>> {
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

    fn counts(&self) -> StatusCounts {
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
            recent: 0,
            size: self.entries.iter().map(|m| m.size).sum(),
            highest_modseq: self.highest_modseq,
            deleted: u32::try_from(self.deleted().count()).unwrap_or(u32::MAX),
            deleted_storage: self.deleted().map(|m| m.size).sum(),
        }
    }

    fn deleted(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|m| m.flags.iter().any(|f| f == "\\Deleted"))
    }
}

impl MailStore {
    /// A store over the same tree the delivery writes to, no quota.
    pub fn new(maildir: Arc<Maildir>) -> Self {
        Self {
            maildir,
            folders: Mutex::new(HashMap::new()),
            quota: None,
            quotas: HashMap::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Takes the time and new UIDVALIDITY values from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The mailbox a folder directory holds (the reverse of
    /// [`Self::folder`]): `<root>/<domain>/<user>[/.A.B]`.
    fn id_of(root: &Path, dir: &Path) -> Option<MailboxId> {
        let rel = dir.strip_prefix(root).ok()?;
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        let (domain, user, folder) = match parts.as_slice() {
            [d, u] => (*d, *u, "INBOX".to_owned()),
            [d, u, f] => (*d, *u, f.strip_prefix('.')?.replace('.', "/")),
            _ => return None,
        };
        Some(MailboxId::new(&format!("{user}@{domain}"), &folder))
    }

    /// A new UIDVALIDITY for the folder at `dir`.
    fn new_validity(&self, dir: &Path) -> u32 {
        match Self::id_of(self.maildir.root(), dir) {
            Some(id) => self.clock.uid_validity(&id),
            None => u32::try_from(self.clock.now()).unwrap_or(1).max(1),
        }
    }

    /// Sets the storage limit: `default` for every account, `per_user`
    /// for some (bytes).
    pub fn with_quota(mut self, default: Option<u64>, per_user: HashMap<String, u64>) -> Self {
        self.quota = default;
        self.quotas = per_user;
        self
    }

    fn account(&self, user: &str) -> Option<PathBuf> {
        let (local, domain) = user.rsplit_once('@')?;
        let mb = Mailbox {
            domain: domain.to_lowercase(),
            user: local.to_lowercase(),
        };
        self.maildir.ensure(&mb).ok()
    }

    /// The folder directory for an IMAP name (`/`-separated).
    fn folder(root: &Path, name: &str) -> Option<PathBuf> {
        if name == "INBOX" {
            return Some(root.to_owned());
        }
        if name.contains('.') || !postern_core::imap::session::safe_mailbox_name(name) {
            return None;
        }
        Some(root.join(format!(".{}", name.replace('/', "."))))
    }

    fn state(&self, dir: &Path) -> Arc<Mutex<Folder>> {
        let mut l = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        l.entry(dir.to_owned()).or_default().clone()
    }

    /// Runs `f` on a folder's up-to-date index, under its lock.
    fn with<T>(&self, dir: &Path, f: impl FnOnce(&mut Folder) -> io::Result<T>) -> io::Result<T> {
        let state = self.state(dir);
        let mut g = lock(&state);
        let validity = || self.new_validity(dir);
        g.refresh(
            dir,
            &NewList {
                now: self.clock.now(),
                validity: &validity,
            },
        )?;
        f(&mut g)
    }

    fn forget(&self, dir: &Path) {
        let mut l = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        l.retain(|p, _| !p.starts_with(dir));
    }

    /// Answers a request for `user`. Disk errors become `NO [SERVERBUG]`.
    pub fn answer(&self, user: &str, req: MailboxRequest) -> MailboxAnswer {
        let Some(root) = self.account(user) else {
            return no(Code::ServerBug, "Account unavailable");
        };
        match self.answer_io(user, &root, req) {
            Ok(a) => a,
            Err(e) => no(Code::ServerBug, format!("Internal error: {e}")),
        }
    }

    /// Whether an account has used up its storage limit (delivery then
    /// answers 552 5.2.2, as Dovecot's LMTP does).
    pub fn over_quota(&self, user: &str) -> bool {
        let Some(limit) = self.limit(user) else {
            return false;
        };
        match self.account(user) {
            Some(root) => self.used(&root).is_ok_and(|u| u >= limit),
            None => false,
        }
    }

    fn limit(&self, user: &str) -> Option<u64> {
        self.quotas
            .get(&user.to_lowercase())
            .copied()
            .or(self.quota)
    }

    fn used(&self, root: &Path) -> io::Result<u64> {
        let mut used = 0;
        for name in list_folders(root)? {
            if let Some(dir) = Self::folder(root, &name) {
                used += self.with(&dir, |f| Ok(f.entries.iter().map(|e| e.size).sum::<u64>()))?;
            }
        }
        Ok(used)
    }

    fn answer_io(&self, user: &str, root: &Path, req: MailboxRequest) -> io::Result<MailboxAnswer> {
        use MailboxRequest as R;
        enum Kind {
            Poll,
            Other,
        }
        let req_kind = if matches!(req, R::Poll { .. }) {
            Kind::Poll
        } else {
            Kind::Other
        };
        let folder_or = |name: &str| Self::folder(root, name);
        let existing = |name: &str| folder_or(name).filter(|d| d.join("cur").is_dir());
        let missing = || no(Code::NonExistent, "Mailbox doesn't exist");
        match req {
            R::List {
                patterns,
                subscribed_only,
                with_status,
            } => {
                let subs = read_subscriptions(root);
                let names = list_folders(root)?;
                let mut out = Vec::new();
                for n in &names {
                    if !patterns
                        .iter()
                        .any(|p| postern_core::imap::session::wildcard(p, n))
                        || (subscribed_only && !subs.contains(n))
                    {
                        continue;
                    }
                    let attributes = postern_core::imap::session::list_attributes(
                        names.iter(),
                        n,
                        subs.contains(n),
                    );
                    let status = match (with_status, existing(n)) {
                        (true, Some(dir)) => Some(self.with(&dir, |f| Ok(f.counts()))?),
                        _ => None,
                    };
                    out.push(ListEntry {
                        name: n.clone(),
                        attributes,
                        status,
                    });
                }
                if subscribed_only {
                    out.extend(postern_core::imap::session::nonexistent_subscriptions(
                        &subs, &names, &patterns,
                    ));
                    out.sort_by(|a, b| a.name.cmp(&b.name));
                }
                Ok(MailboxAnswer::List(out))
            }
            R::Select { mailbox } | R::Poll { mailbox } => {
                let poll = matches!(req_kind, Kind::Poll);
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                let attributes = if poll {
                    Vec::new()
                } else {
                    postern_core::imap::session::list_attributes(
                        list_folders(root)?.iter(),
                        &mailbox,
                        false,
                    )
                };
                self.with(&dir, |f| {
                    let view = MailboxView {
                        uid_validity: f.validity,
                        uid_next: f.next,
                        messages: f.view(),
                        keywords: f
                            .keywords
                            .iter()
                            .filter(|k| !k.is_empty())
                            .cloned()
                            .collect(),
                        highest_modseq: f.highest_modseq,
                        attributes,
                    };
                    // Poll's answer is the same view, named for what it is.
                    Ok(if poll {
                        MailboxAnswer::Changed(view)
                    } else {
                        MailboxAnswer::View(view)
                    })
                })
            }
            R::Status { mailbox } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                self.with(&dir, |f| Ok(MailboxAnswer::Status(f.counts())))
            }
            R::Quota => Ok(MailboxAnswer::Quota {
                used: self.used(root)?,
                limit: self.limit(user),
            }),
            R::Create { mailbox } => {
                let Some(dir) = folder_or(&mailbox) else {
                    return Ok(no(Code::Cannot, "Invalid mailbox name"));
                };
                if dir.join("cur").is_dir() {
                    return Ok(no(Code::AlreadyExists, "Mailbox already exists"));
                }
                for sub in ["", "cur", "new", "tmp"] {
                    let d = if sub.is_empty() {
                        dir.clone()
                    } else {
                        dir.join(sub)
                    };
                    match fs::create_dir(&d) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                }
                File::create(dir.join("maildirfolder"))?;
                // The UID list now: the UIDVALIDITY is the creation's.
                self.with(&dir, |_| Ok(()))?;
                sync_dir(root)?;
                Ok(MailboxAnswer::Ok)
            }
            R::Delete { mailbox } => {
                if mailbox == "INBOX" {
                    return Ok(no(Code::Cannot, "INBOX cannot be deleted"));
                }
                let Some(dir) = folder_or(&mailbox).filter(|d| d.is_dir()) else {
                    return Ok(missing());
                };
                fs::remove_dir_all(&dir)?;
                sync_dir(root)?;
                self.forget(&dir);
                Ok(MailboxAnswer::Ok)
            }
            R::Rename { from, to } => {
                let (Some(a), Some(b)) = (folder_or(&from), folder_or(&to)) else {
                    return Ok(no(Code::Cannot, "Invalid mailbox name"));
                };
                if from == "INBOX" {
                    return Ok(no(Code::Cannot, "Renaming INBOX is not supported"));
                }
                if !a.is_dir() {
                    return Ok(missing());
                }
                if b.exists() {
                    return Ok(no(Code::AlreadyExists, "Target mailbox exists"));
                }
                // Children move with their parent: `.A.x` -> `.B.x`.
                let prefix = format!(".{}.", from.replace('/', "."));
                let target = format!(".{}.", to.replace('/', "."));
                for e in fs::read_dir(root)?.filter_map(Result::ok) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if let Some(rest) = n.strip_prefix(&prefix) {
                        self.forget(&e.path());
                        fs::rename(e.path(), root.join(format!("{target}{rest}")))?;
                    }
                }
                self.forget(&a);
                fs::rename(&a, &b)?;
                sync_dir(root)?;
                Ok(MailboxAnswer::Ok)
            }
            R::Subscribe { mailbox, on } => {
                let mut subs = read_subscriptions(root);
                if on {
                    if !subs.contains(&mailbox) {
                        subs.push(mailbox);
                    }
                } else {
                    subs.retain(|s| s != &mailbox);
                }
                let mut text = String::new();
                for s in &subs {
                    text.push_str(s);
                    text.push('\n');
                }
                write_atomic(&root.join("subscriptions"), text.as_bytes())?;
                Ok(MailboxAnswer::Ok)
            }
            R::Bodies {
                mailbox,
                uids,
                header_only,
            } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                Ok(MailboxAnswer::Bodies(self.bodies(
                    &dir,
                    &uids,
                    header_only,
                )?))
            }
            R::Summaries { mailbox, uids } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                Ok(MailboxAnswer::Summaries(self.summaries(&dir, &uids)?))
            }
            R::Store {
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                let answer = self.with(&dir, |f| {
                    let mut keywords = f.keywords.clone();
                    let mut changed = Vec::new();
                    let mut modified = Vec::new();
                    let mut log = Vec::new();
                    for u in &uids {
                        let Some(i) = f.index_of(*u) else { continue };
                        if unchanged_since.is_some_and(|n| f.entries[i].modseq > n) {
                            modified.push(*u);
                            continue;
                        }
                        let e = &f.entries[i];
                        let mut new = e.flags.clone();
                        match mode {
                            StoreMode::Replace => new = flags.clone(),
                            StoreMode::Add => {
                                for fl in &flags {
                                    if !new.iter().any(|x| x.eq_ignore_ascii_case(fl)) {
                                        new.push(fl.clone());
                                    }
                                }
                            }
                            StoreMode::Remove => {
                                new.retain(|x| !flags.iter().any(|fl| fl.eq_ignore_ascii_case(x)))
                            }
                        }
                        let info = flag_info(&new, &mut keywords);
                        let name = format!("{}:2,{info}", e.base());
                        if name != e.name {
                            fs::rename(dir.join("cur").join(&e.name), dir.join("cur").join(&name))?;
                            let flags = parse_info(&info, &keywords);
                            let e = &mut f.entries[i];
                            e.name = name;
                            e.flags = flags;
                            let m = f.bump(i);
                            log.push((*u, m));
                        }
                        let e = &f.entries[i];
                        changed.push(Stored {
                            uid: e.uid,
                            flags: e.flags.clone(),
                            modseq: e.modseq,
                        });
                    }
                    if keywords != f.keywords {
                        write_keywords(&dir, &keywords)?;
                        f.keywords = keywords;
                    }
                    if !log.is_empty() {
                        f.log_modseqs(&dir, &log)?;
                        f.touched(&dir);
                    }
                    Ok((MailboxAnswer::Flags { changed, modified }, !log.is_empty()))
                })?;
                if answer.1 {
                    self.maildir.changed(&dir);
                }
                Ok(answer.0)
            }
            R::Expunge { mailbox, uids } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                let gone = self.with(&dir, |f| {
                    let doomed: Vec<u32> = f
                        .entries
                        .iter()
                        .filter(|e| e.flags.iter().any(|x| x == "\\Deleted"))
                        .filter(|e| uids.as_ref().is_none_or(|u| u.contains(&e.uid)))
                        .map(|e| e.uid)
                        .collect();
                    f.remove(&dir, &doomed)?;
                    Ok(doomed)
                })?;
                if !gone.is_empty() {
                    self.maildir.changed(&dir);
                }
                Ok(MailboxAnswer::Expunged(gone))
            }
            R::Append {
                mailbox,
                flags,
                data,
                date,
            } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(no(Code::TryCreate, "Mailbox doesn't exist"));
                };
                if let Some(limit) = self.limit(user) {
                    if self.used(root)? + data.len() as u64 > limit {
                        return Ok(no(Code::OverQuota, "Quota exceeded"));
                    }
                }
                let (validity, uid) = self.append(&dir, &flags, &data, date)?;
                Ok(MailboxAnswer::Uids {
                    uid_validity: validity,
                    from: Vec::new(),
                    to: vec![uid],
                })
            }
            R::Copy {
                mailbox,
                uids,
                to,
                moving,
            } => {
                let (Some(src), Some(dst)) = (existing(&mailbox), existing(&to)) else {
                    return Ok(no(Code::TryCreate, "Mailbox doesn't exist"));
                };
                if src == dst && moving {
                    return Ok(no(Code::Cannot, "Source and target are the same mailbox"));
                }
                let picked: Vec<(u32, String, Vec<String>, u64, i64)> = self.with(&src, |f| {
                    Ok(uids
                        .iter()
                        .filter_map(|u| f.index_of(*u))
                        .map(|i| {
                            let e = &f.entries[i];
                            (e.uid, e.name.clone(), e.flags.clone(), e.size, e.mtime)
                        })
                        .collect())
                })?;
                if let Some(limit) = self.limit(user) {
                    let adding: u64 = if moving {
                        0
                    } else {
                        picked.iter().map(|p| p.3).sum()
                    };
                    if self.used(root)? + adding > limit {
                        return Ok(no(Code::OverQuota, "Quota exceeded"));
                    }
                }
                let mut from = Vec::new();
                let mut new = Vec::new();
                let mut validity = 0;
                // The copy keeps the INTERNALDATE (RFC 9051 6.4.7).
                for (uid, name, flags, _, mtime) in &picked {
                    let data = match read_message(&src.join("cur").join(name)) {
                        Ok(d) => d,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    let (v, u) = self.append(&dst, flags, &data, Some(*mtime))?;
                    validity = v;
                    from.push(*uid);
                    new.push(u);
                }
                if moving && !from.is_empty() {
                    self.with(&src, |f| f.remove(&src, &from))?;
                    self.maildir.changed(&src);
                }
                if validity == 0 {
                    validity = self.with(&dst, |f| Ok(f.validity))?;
                }
                Ok(MailboxAnswer::Uids {
                    uid_validity: validity,
                    from,
                    to: new,
                })
            }
        }
    }

    /// Message bytes (CRLF), or only their headers.
    fn bodies(
        &self,
        dir: &Path,
        uids: &[u32],
        header_only: bool,
    ) -> io::Result<Vec<(u32, Vec<u8>)>> {
        let names = |uids: &[u32]| {
            self.with(dir, |f| {
                Ok(uids
                    .iter()
                    .filter_map(|u| f.index_of(*u).map(|i| (*u, f.entries[i].name.clone())))
                    .collect::<Vec<_>>())
            })
        };
        let mut out = Vec::with_capacity(uids.len());
        let mut retry = Vec::new();
        for (u, name) in names(uids)? {
            let path = dir.join("cur").join(&name);
            let r = if header_only {
                read_header(&path)
            } else {
                read_message(&path)
            };
            match r {
                Ok(b) => out.push((u, b)),
                // Renamed by a flag change meanwhile: look again below.
                Err(e) if e.kind() == io::ErrorKind::NotFound => retry.push(u),
                Err(e) => return Err(e),
            }
        }
        if !retry.is_empty() {
            for (u, name) in names(&retry)? {
                let path = dir.join("cur").join(&name);
                let r = if header_only {
                    read_header(&path)
                } else {
                    read_message(&path)
                };
                if let Ok(b) = r {
                    out.push((u, b));
                }
            }
            let order: HashMap<u32, usize> =
                uids.iter().enumerate().map(|(i, u)| (*u, i)).collect();
            out.sort_by_key(|(u, _)| order.get(u).copied().unwrap_or(usize::MAX));
        }
        Ok(out)
    }

    /// Parsed summaries, from the cache or parsed now (and cached).
    fn summaries(&self, dir: &Path, uids: &[u32]) -> io::Result<Vec<(u32, Summary)>> {
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

    /// Writes a message into a folder's cur/ with flags; returns
    /// (UIDVALIDITY, UID).
    fn append(
        &self,
        dir: &Path,
        flags: &[String],
        data: &[u8],
        date: Option<i64>,
    ) -> io::Result<(u32, u32)> {
        let mut body = Vec::with_capacity(data.len());
        crlf_to_lf(&mut body, data);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = format!(
            "{}.M{}P{}Q{n}.postern,S={},W={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            body.len(),
            data.len()
        );
        let tmp = dir.join("tmp").join(&base);
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(&body)?;
        // INTERNALDATE is the file's modification time, as in Dovecot.
        let mtime = date.unwrap_or_else(|| self.clock.now());
        if let Some(t) = u64::try_from(mtime)
            .ok()
            .and_then(|s| UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
        {
            f.set_modified(t)?;
        }
        f.sync_all()?;
        drop(f);
        let r = self.with(dir, |f| {
            let mut keywords = f.keywords.clone();
            let info = flag_info(flags, &mut keywords);
            if keywords != f.keywords {
                write_keywords(dir, &keywords)?;
                f.keywords = keywords;
            }
            let name = format!("{base}:2,{info}");
            fs::rename(&tmp, dir.join("cur").join(&name))?;
            sync_dir(&dir.join("cur"))?;
            let uid = f.next;
            f.next += 1;
            f.highest_modseq += 1;
            f.entries.push(Entry {
                uid,
                flags: parse_info(&info, &f.keywords),
                base_len: base.len(),
                name,
                size: data.len() as u64,
                mtime,
                modseq: f.highest_modseq,
            });
            f.append_uidlist(dir, &[uid])?;
            let m = f.highest_modseq;
            f.log_modseqs(dir, &[(uid, m)])?;
            f.touched(dir);
            Ok((f.validity, uid))
        });
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        } else {
            self.maildir.changed(dir);
        }
        r
    }
}

impl MailboxStore for MailStore {
    fn answer(&self, user: &str, request: MailboxRequest) -> MailboxAnswer {
        MailStore::answer(self, user, request)
    }

    fn over_quota(&self, user: &str) -> bool {
        MailStore::over_quota(self, user)
    }

    /// The modification times of the folder's `new/`, `cur/` and UID
    /// list, hashed: two stats, no listing.
    fn version(&self, mailbox: &MailboxId) -> Option<Version> {
        use std::hash::{Hash, Hasher};
        let root = self.account(&mailbox.user)?;
        let st = stamp(&Self::folder(&root, &mailbox.mailbox)?)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        st.hash(&mut h);
        Some(Version(h.finish()))
    }

    fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>> {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut at = Vec::with_capacity(batch.len());
        let mut out: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
        for d in batch {
            match d.user.rsplit_once('@') {
                Some((local, domain)) => {
                    at.push(out.len());
                    out.push(Ok(()));
                    jobs.push(DeliveryJob {
                        mailbox: Mailbox {
                            domain: domain.to_lowercase(),
                            user: local.to_lowercase(),
                        },
                        prefix: d.prefix.clone(),
                        message: d.message.clone(),
                    });
                }
                None => out.push(Err(StoreError::NoAccount(d.user.clone()))),
            }
        }
        let now = self.clock.now();
        let system = SystemClock.now();
        for ((i, r), job) in at
            .into_iter()
            .zip(self.maildir.deliver_batch(&jobs))
            .zip(&jobs)
        {
            match r {
                // INTERNALDATE is the store clock's time of delivery: with
                // another clock than the system's (tests), date the file.
                Ok(name) if (now - system).abs() > 1 => {
                    let path = self.maildir.mailbox_path(&job.mailbox).join("new");
                    if let Some(t) = u64::try_from(now)
                        .ok()
                        .and_then(|s| UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
                    {
                        let _ = File::options()
                            .append(true)
                            .open(path.join(name))
                            .and_then(|f| f.set_modified(t));
                    }
                }
                Ok(_) => {}
                Err(source) => {
                    out[i] = Err(StoreError::Io {
                        op: "delivery",
                        source,
                    })
                }
            }
        }
        out
    }

    fn on_change(&self, listener: ChangeListener) {
        let root = self.maildir.root().to_owned();
        self.maildir.set_on_change(ChangeHook(Box::new(move |dir| {
            if let Some(id) = Self::id_of(&root, dir) {
                listener(&id);
            }
        })));
    }
}

impl Folder {
    /// Deletes these messages' files and forgets them.
    fn remove(&mut self, dir: &Path, uids: &[u32]) -> io::Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
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
        if let Some(c) = self.summaries.as_mut() {
            for u in uids {
                c.remove(u);
            }
        }
        self.write_uidlist(dir)?;
        self.highest_modseq += 1;
        let h = self.highest_modseq;
        self.log_modseqs(dir, &[(0, h)])?;
        self.touched(dir);
        Ok(())
    }
}

/// `postern-modseq`: `V<validity> B<base>`, then `<uid> <modseq>` lines
/// (uid 0: the highest; unlisted messages have the base). Returns (lines,
/// base, highest, uid -> modseq); a log for another UIDVALIDITY (or none)
/// counts as empty, with `fresh_base`.
fn read_modlog(dir: &Path, validity: u32, fresh_base: u64) -> (usize, u64, u64, HashMap<u32, u64>) {
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

fn escape_field(s: &str) -> String {
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

fn unescape_field(s: &str) -> String {
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
fn summary_line(uid: u32, s: &Summary) -> String {
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
fn read_summaries(dir: &Path, validity: u32) -> (HashMap<u32, Summary>, usize) {
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

/// The header of a message file (up to and with the empty line), CRLF.
fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let from = raw.len().saturating_sub(3);
        raw.extend_from_slice(&chunk[..n]);
        if let Some(i) = memchr::memmem::find(&raw[from..], b"\n\n") {
            raw.truncate(from + i + 2);
            break;
        }
        if let Some(i) = memchr::memmem::find(&raw[from..], b"\n\r\n") {
            raw.truncate(from + i + 3);
            break;
        }
        if raw.len() > MAX_HEADER {
            break;
        }
    }
    Ok(lf_to_crlf(&raw))
}

fn new_uidlist(validity: u32) -> UidList {
    UidList {
        validity: validity.max(1),
        next: 1,
        uids: HashMap::new(),
    }
}

/// Reads `dovecot-uidlist` (version 3: `3 V<validity> N<next> ...`, then
/// `<uid> [ext...] :<base name>`; version 1: `1 <validity> <next>`).
fn read_uidlist(dir: &Path) -> Option<UidList> {
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

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("postern-tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(p) = path.parent() {
        sync_dir(p)?;
    }
    Ok(())
}

/// `dovecot-keywords`: `<index> <keyword>` lines; index 0 is letter `a`.
fn read_keywords(dir: &Path) -> Vec<String> {
    let mut out: BTreeMap<usize, String> = BTreeMap::new();
    if let Ok(t) = fs::read_to_string(dir.join("dovecot-keywords")) {
        for l in t.lines() {
            if let Some((i, k)) = l.split_once(' ') {
                if let Ok(i) = i.parse::<usize>() {
                    if i < 26 {
                        out.insert(i, k.to_owned());
                    }
                }
            }
        }
    }
    let n = out.keys().next_back().map_or(0, |m| m + 1);
    (0..n)
        .map(|i| out.get(&i).cloned().unwrap_or_default())
        .collect()
}

fn write_keywords(dir: &Path, keywords: &[String]) -> io::Result<()> {
    if keywords.is_empty() {
        return Ok(());
    }
    let text: String = keywords
        .iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .map(|(i, k)| format!("{i} {k}\n"))
        .collect();
    if fs::read_to_string(dir.join("dovecot-keywords"))
        .ok()
        .as_deref()
        == Some(text.as_str())
    {
        return Ok(());
    }
    write_atomic(&dir.join("dovecot-keywords"), text.as_bytes())
}

/// The `:2,` info letters for flags (keywords get letters, added as needed).
fn flag_info(flags: &[String], keywords: &mut Vec<String>) -> String {
    let mut letters: Vec<char> = Vec::new();
    for f in flags {
        if let Some((c, _)) = FLAG_LETTERS.iter().find(|(_, n)| n.eq_ignore_ascii_case(f)) {
            letters.push(*c);
        } else if !f.starts_with('\\') {
            let i = match keywords.iter().position(|k| k == f) {
                Some(i) => i,
                None if keywords.len() < 26 => {
                    keywords.push(f.clone());
                    keywords.len() - 1
                }
                None => continue,
            };
            letters.push((b'a' + u8::try_from(i).unwrap_or(25)) as char);
        }
    }
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}

fn parse_info(info: &str, keywords: &[String]) -> Vec<String> {
    let mut flags = Vec::new();
    for c in info.chars() {
        if let Some((_, n)) = FLAG_LETTERS.iter().find(|(l, _)| *l == c) {
            flags.push((*n).to_owned());
        } else if c.is_ascii_lowercase() {
            if let Some(k) = keywords
                .get((c as u8 - b'a') as usize)
                .filter(|k| !k.is_empty())
            {
                flags.push(k.clone());
            }
        }
    }
    // IMAP order: system flags first, as written above.
    flags
}

fn size_from_name(base: &str) -> Option<u64> {
    base.split(',')
        .find_map(|p| p.strip_prefix("W="))
        .and_then(|w| w.parse().ok())
}

fn crlf_size(path: &Path) -> io::Result<u64> {
    let b = fs::read(path)?;
    let lfs = b.iter().filter(|&&c| c == b'\n').count() as u64;
    let crlfs = b.windows(2).filter(|w| w == b"\r\n").count() as u64;
    Ok(b.len() as u64 + lfs - crlfs)
}

/// Bytes with LF line ends (as stored) with CRLF ones (as served).
fn lf_to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// A message as IMAP serves it: CRLF line ends.
fn read_message(path: &Path) -> io::Result<Vec<u8>> {
    if fs::metadata(path)?.len() > MAX_MESSAGE {
        return Err(io::Error::other("message too large to serve"));
    }
    let raw = fs::read(path)?;
    Ok(lf_to_crlf(&raw))
}

/// Subscribed folders; before the account ever changed them, INBOX and
/// the special-use folders (as docker-mailserver's `auto = subscribe`).
fn read_subscriptions(root: &Path) -> Vec<String> {
    match fs::read_to_string(root.join("subscriptions")) {
        Ok(t) => t
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("V\t"))
            .map(|l| l.replace('\t', "/"))
            .collect(),
        Err(_) => ["INBOX", "Drafts", "Sent", "Junk", "Trash"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    }
}

fn list_folders(root: &Path) -> io::Result<Vec<String>> {
    let mut names = vec!["INBOX".to_owned()];
    for e in fs::read_dir(root)?.filter_map(Result::ok) {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(rest) = n.strip_prefix('.') {
            if !rest.is_empty() && e.path().join("cur").is_dir() {
                names.push(rest.replace('.', "/"));
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (MailStore, PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("postern-mailstore-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        (
            MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com"))),
            dir,
        )
    }

    #[test]
    fn flags_keywords_and_uids_persist() {
        let (s, dir) = store();
        let u = "alice@example.com";
        let appended = s.answer(
            u,
            MailboxRequest::Append {
                mailbox: "INBOX".into(),
                flags: vec!["\\Seen".into(), "$Label1".into()],
                data: b"Subject: a\r\n\r\nx\r\n".to_vec(),
                date: Some(1_795_588_686),
            },
        );
        let MailboxAnswer::Uids {
            to, uid_validity, ..
        } = appended
        else {
            panic!("{appended:?}")
        };
        assert_eq!(to, vec![1]);
        let MailboxAnswer::View(v) = s.answer(
            u,
            MailboxRequest::Select {
                mailbox: "INBOX".into(),
            },
        ) else {
            panic!()
        };
        assert_eq!(v.uid_validity, uid_validity);
        assert_eq!(
            v.messages[0].flags,
            vec!["\\Seen".to_owned(), "$Label1".to_owned()]
        );
        assert_eq!(v.messages[0].size, 17);
        assert_eq!(v.messages[0].internal_date, 1_795_588_686);
        let inbox = dir.join("example.com/alice");
        assert!(fs::read_to_string(inbox.join("dovecot-keywords"))
            .unwrap()
            .contains("0 $Label1"));
        let names: Vec<String> = fs::read_dir(inbox.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names[0].ends_with(":2,Sa"), "{names:?}");
        let MailboxAnswer::List(l) = s.answer(
            u,
            MailboxRequest::List {
                patterns: vec!["*".into()],
                subscribed_only: false,
                with_status: true,
            },
        ) else {
            panic!()
        };
        let names: Vec<&str> = l.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["Drafts", "INBOX", "Junk", "Sent", "Trash"]);
        assert!(l[3].attributes.contains(&"\\Sent".to_owned()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_flag_stores_lose_nothing() {
        let (s, dir) = store();
        let s = Arc::new(s);
        let u = "carol@example.com";
        for _ in 0..40 {
            s.answer(
                u,
                MailboxRequest::Append {
                    mailbox: "INBOX".into(),
                    flags: vec![],
                    data: b"Subject: x\r\n\r\ny\r\n".to_vec(),
                    date: None,
                },
            );
        }
        let threads: Vec<_> = ["\\Flagged", "\\Answered", "$Work"]
            .into_iter()
            .map(|flag| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for uid in 1..=40 {
                        let a = s.answer(
                            u,
                            MailboxRequest::Store {
                                mailbox: "INBOX".into(),
                                uids: vec![uid],
                                mode: StoreMode::Add,
                                flags: vec![flag.to_owned()],
                                unchanged_since: None,
                            },
                        );
                        assert!(matches!(a, MailboxAnswer::Flags { .. }), "{a:?}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let MailboxAnswer::View(v) = s.answer(
            u,
            MailboxRequest::Select {
                mailbox: "INBOX".into(),
            },
        ) else {
            panic!()
        };
        assert_eq!(v.messages.len(), 40);
        for m in v.messages.iter() {
            assert_eq!(
                m.flags,
                vec!["\\Flagged", "\\Answered", "$Work"],
                "uid {}",
                m.uid
            );
        }
        // 40 appends and 120 flag changes, each its own mod-sequence.
        assert_eq!(v.highest_modseq, 1 + 40 + 120);
        // A second store over the same tree (a restart) sees the same.
        let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
        let MailboxAnswer::View(w) = again.answer(
            u,
            MailboxRequest::Select {
                mailbox: "INBOX".into(),
            },
        ) else {
            panic!()
        };
        assert_eq!(w.highest_modseq, v.highest_modseq);
        assert_eq!(
            w.messages
                .iter()
                .map(|m| (m.uid, m.modseq, m.flags.clone()))
                .collect::<Vec<_>>(),
            v.messages
                .iter()
                .map(|m| (m.uid, m.modseq, m.flags.clone()))
                .collect::<Vec<_>>()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn summaries_are_cached_on_disk() {
        let (s, dir) = store();
        let u = "dave@example.com";
        s.answer(
            u,
            MailboxRequest::Append {
                mailbox: "INBOX".into(),
                flags: vec![],
                data: b"From: Bob <bob@example.net>\r\nSubject: Re: hi\r\n\r\nbody\r\n".to_vec(),
                date: None,
            },
        );
        let ask = |s: &MailStore| {
            s.answer(
                u,
                MailboxRequest::Summaries {
                    mailbox: "INBOX".into(),
                    uids: vec![1],
                },
            )
        };
        let MailboxAnswer::Summaries(first) = ask(&s) else {
            panic!()
        };
        assert_eq!(first[0].1.sort.subject, "hi");
        assert_eq!(first[0].1.sort.from, "bob");
        let cache = dir.join("example.com/dave/postern-summaries");
        let text = fs::read_to_string(&cache).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        // Another store reads the cache: the message file is not needed.
        let cur = dir.join("example.com/dave/cur");
        for e in fs::read_dir(&cur).unwrap() {
            fs::write(e.unwrap().path(), b"Subject: changed behind our back\n\n").unwrap();
        }
        let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
        let MailboxAnswer::Summaries(second) = ask(&again) else {
            panic!()
        };
        assert_eq!(second, first);
        // A damaged cache is rebuilt from the messages.
        fs::write(&cache, "garbage\n").unwrap();
        let third = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
        let MailboxAnswer::Summaries(rebuilt) = ask(&third) else {
            panic!()
        };
        assert_eq!(rebuilt[0].1.sort.subject, "changed behind our back");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_a_dovecot_uidlist() {
        let (s, dir) = store();
        let inbox = dir.join("example.com/bob");
        s.answer(
            "bob@example.com",
            MailboxRequest::Status {
                mailbox: "INBOX".into(),
            },
        );
        fs::write(
            inbox.join("cur/1700000000.M1P1.host,S=5,W=6:2,S"),
            b"x\ny\n\n",
        )
        .unwrap();
        fs::write(inbox.join("cur/1700000001.M2P1.host:2,"), b"z\n").unwrap();
        fs::write(inbox.join("dovecot-uidlist"), "3 V1700000000 N43 Gabc\n41 :1700000000.M1P1.host,S=5,W=6\n42 W3 :1700000001.M2P1.host\n").unwrap();
        let MailboxAnswer::View(v) = s.answer(
            "bob@example.com",
            MailboxRequest::Select {
                mailbox: "INBOX".into(),
            },
        ) else {
            panic!()
        };
        assert_eq!(v.uid_validity, 1_700_000_000);
        assert_eq!(v.uid_next, 43);
        assert_eq!(
            v.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            vec![41, 42]
        );
        assert_eq!(v.messages[0].flags, vec!["\\Seen".to_owned()]);
        assert_eq!(v.messages[1].size, 3);
        // Taken over without our mod-sequences: they start above anything
        // a client could hold, the same for every message, and stay put.
        assert!(v.highest_modseq > 1_700_000_000, "{}", v.highest_modseq);
        assert!(v.messages.iter().all(|m| m.modseq == v.highest_modseq));
        let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
        let MailboxAnswer::View(w) = again.answer(
            "bob@example.com",
            MailboxRequest::Select {
                mailbox: "INBOX".into(),
            },
        ) else {
            panic!()
        };
        assert_eq!(w.highest_modseq, v.highest_modseq);
        let MailboxAnswer::Bodies(b) = s.answer(
            "bob@example.com",
            MailboxRequest::Bodies {
                mailbox: "INBOX".into(),
                uids: vec![42],
                header_only: false,
            },
        ) else {
            panic!()
        };
        assert_eq!(b[0].1, b"z\r\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
