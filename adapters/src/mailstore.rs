//! The IMAP mailbox store over Maildir++ (the layout Dovecot and
//! docker-mailserver use): folders as `.Name` (`.A.B` for `A/B`), flags in
//! file names (`:2,FRS`), keywords in `dovecot-keywords`, and UIDs with
//! UIDVALIDITY in `dovecot-uidlist`, read and written in Dovecot's own
//! format so a mailbox taken over from Dovecot keeps its UIDs and clients
//! do not download everything again.

use crate::directory::Mailbox;
use crate::maildir::{crlf_to_lf, sync_dir, Maildir};
use postern_core::imap::event::{
    ListEntry, MailboxAnswer, MailboxRequest, MailboxView, MessageMeta, StatusCounts, StoreMode,
};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest message body read for FETCH or SEARCH.
const MAX_MESSAGE: u64 = 64 << 20;

/// A message file as found on disk.
#[derive(Clone, Debug)]
struct Entry {
    uid: u32,
    base: String,
    path: PathBuf,
    flags: Vec<String>,
    size: u64,
    mtime: i64,
}

/// One folder's UID list.
#[derive(Clone, Debug, Default)]
struct UidList {
    validity: u32,
    next: u32,
    /// base name -> uid
    uids: HashMap<String, u32>,
}

/// The store of all accounts under a Maildir root.
#[derive(Debug)]
pub struct MailStore {
    maildir: Arc<Maildir>,
    /// One lock per folder path, so two sessions never assign UIDs at once.
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    /// The last scan of each folder, valid while neither `new/` nor `cur/`
    /// changed (their modification times): SELECT, STORE and IDLE on a
    /// large mailbox then cost two stats instead of a directory scan.
    scans: Mutex<HashMap<PathBuf, Scan>>,
    /// The message list of each settled scan, shared by every session.
    views: Mutex<HashMap<PathBuf, SharedView>>,
}

/// A message list shared by the sessions on an unchanged folder.
type SharedView = (Stamp, Arc<Vec<MessageMeta>>);

/// A folder scan and the stamp it was taken at.
type Scan = (Stamp, Arc<Vec<Entry>>);

/// Modification times of a folder's `new/` and `cur/`.
type Stamp = (SystemTime, SystemTime);

/// A stamp younger than this is not trusted: a change in the same clock
/// tick would not move it (the "racy git" problem).
const STAMP_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

fn stamp(dir: &Path) -> Option<Stamp> {
    let m = |p: PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(dir.join("new"))?, m(dir.join("cur"))?))
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn no(code: &'static str, text: impl Into<String>) -> MailboxAnswer {
    MailboxAnswer::No {
        code: Some(code),
        text: text.into(),
    }
}

/// `\Seen` etc. to Maildir letters and back (keywords apart).
const FLAG_LETTERS: [(char, &str); 6] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('P', "$Forwarded"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

impl MailStore {
    /// A store over the same tree the delivery writes to.
    pub fn new(maildir: Arc<Maildir>) -> Self {
        Self {
            maildir,
            locks: Mutex::new(HashMap::new()),
            scans: Mutex::new(HashMap::new()),
            views: Mutex::new(HashMap::new()),
        }
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

    fn lock(&self, dir: &Path) -> Arc<Mutex<()>> {
        let mut l = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        l.entry(dir.to_owned()).or_default().clone()
    }

    /// Answers a request for `user`. Disk errors become `NO [SERVERBUG]`.
    pub fn answer(&self, user: &str, req: MailboxRequest) -> MailboxAnswer {
        let Some(root) = self.account(user) else {
            return no("SERVERBUG", "Account unavailable");
        };
        match self.answer_io(&root, req) {
            Ok(a) => a,
            Err(e) => no("SERVERBUG", format!("Internal error: {e}")),
        }
    }

    fn answer_io(&self, root: &Path, req: MailboxRequest) -> io::Result<MailboxAnswer> {
        use MailboxRequest as R;
        let folder_or = |name: &str| Self::folder(root, name);
        let missing = || no("NONEXISTENT", "Mailbox doesn't exist");
        match req {
            R::List {
                pattern,
                subscribed_only,
            } => {
                let subs = read_subscriptions(root);
                let names = list_folders(root)?;
                let mut out = Vec::new();
                for n in &names {
                    if !wildcard(&pattern, n) || (subscribed_only && !subs.contains(n)) {
                        continue;
                    }
                    let children = names.iter().any(|c| c.starts_with(&format!("{n}/")));
                    let mut attributes = vec![if children {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    }
                    .to_owned()];
                    if subs.contains(n) {
                        attributes.push("\\Subscribed".into());
                    }
                    if let Some(su) = special_use(n) {
                        attributes.push(su.into());
                    }
                    out.push(ListEntry {
                        name: n.clone(),
                        attributes,
                    });
                }
                Ok(MailboxAnswer::List(out))
            }
            R::Select { mailbox } | R::Poll { mailbox } => {
                let Some(dir) = folder_or(&mailbox).filter(|d| d.join("cur").is_dir()) else {
                    return Ok(missing());
                };
                let view = self.view(&dir)?;
                Ok(MailboxAnswer::View(view))
            }
            R::Status { mailbox } => {
                let Some(dir) = folder_or(&mailbox).filter(|d| d.join("cur").is_dir()) else {
                    return Ok(missing());
                };
                let v = self.view(&dir)?;
                Ok(MailboxAnswer::Status(StatusCounts {
                    messages: u32::try_from(v.messages.len()).unwrap_or(u32::MAX),
                    unseen: u32::try_from(
                        v.messages
                            .iter()
                            .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                            .count(),
                    )
                    .unwrap_or(0),
                    uid_next: v.uid_next,
                    uid_validity: v.uid_validity,
                    recent: 0,
                    size: v.messages.iter().map(|m| m.size).sum(),
                }))
            }
            R::Create { mailbox } => {
                let Some(dir) = folder_or(&mailbox) else {
                    return Ok(no("CANNOT", "Invalid mailbox name"));
                };
                if dir.join("cur").is_dir() {
                    return Ok(no("ALREADYEXISTS", "Mailbox already exists"));
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
                sync_dir(root)?;
                Ok(MailboxAnswer::Ok)
            }
            R::Delete { mailbox } => {
                if mailbox == "INBOX" {
                    return Ok(no("CANNOT", "INBOX cannot be deleted"));
                }
                let Some(dir) = folder_or(&mailbox).filter(|d| d.is_dir()) else {
                    return Ok(missing());
                };
                fs::remove_dir_all(&dir)?;
                sync_dir(root)?;
                Ok(MailboxAnswer::Ok)
            }
            R::Rename { from, to } => {
                let (Some(a), Some(b)) = (folder_or(&from), folder_or(&to)) else {
                    return Ok(no("CANNOT", "Invalid mailbox name"));
                };
                if from == "INBOX" {
                    return Ok(no("CANNOT", "Renaming INBOX is not supported"));
                }
                if !a.is_dir() {
                    return Ok(missing());
                }
                if b.exists() {
                    return Ok(no("ALREADYEXISTS", "Target mailbox exists"));
                }
                // Children move with their parent: `.A.x` -> `.B.x`.
                let prefix = format!(".{}.", from.replace('/', "."));
                let target = format!(".{}.", to.replace('/', "."));
                for e in fs::read_dir(root)?.filter_map(Result::ok) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if let Some(rest) = n.strip_prefix(&prefix) {
                        fs::rename(e.path(), root.join(format!("{target}{rest}")))?;
                    }
                }
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
            R::Bodies { mailbox, uids } => {
                let Some(dir) = folder_or(&mailbox) else {
                    return Ok(missing());
                };
                let entries = self.entries(&dir)?;
                let mut out = Vec::with_capacity(uids.len());
                for u in uids {
                    if let Some(e) = entries.iter().find(|e| e.uid == u) {
                        if let Ok(b) = read_message(&e.path) {
                            out.push((u, b));
                        }
                    }
                }
                Ok(MailboxAnswer::Bodies(out))
            }
            R::Store {
                mailbox,
                uids,
                mode,
                flags,
            } => {
                let Some(dir) = folder_or(&mailbox) else {
                    return Ok(missing());
                };
                let lock = self.lock(&dir);
                let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
                let mut keywords = read_keywords(&dir);
                let entries = self.entries_locked(&dir)?;
                let mut changed = Vec::new();
                for e in entries.iter().filter(|e| uids.contains(&e.uid)) {
                    let mut new = e.flags.clone();
                    match mode {
                        StoreMode::Replace => new = flags.clone(),
                        StoreMode::Add => {
                            for f in &flags {
                                if !new.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                                    new.push(f.clone());
                                }
                            }
                        }
                        StoreMode::Remove => {
                            new.retain(|x| !flags.iter().any(|f| f.eq_ignore_ascii_case(x)))
                        }
                    }
                    let info = flag_info(&new, &mut keywords);
                    let target = dir.join("cur").join(format!("{}:2,{info}", e.base));
                    if target != e.path {
                        fs::rename(&e.path, &target)?;
                    }
                    changed.push((e.uid, parse_info(&info, &keywords)));
                }
                write_keywords(&dir, &keywords)?;
                Ok(MailboxAnswer::Flags(changed))
            }
            R::Expunge { mailbox, uids } => {
                let Some(dir) = folder_or(&mailbox) else {
                    return Ok(missing());
                };
                let lock = self.lock(&dir);
                let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
                let entries = self.entries_locked(&dir)?;
                let mut gone = Vec::new();
                for e in entries
                    .iter()
                    .filter(|e| e.flags.iter().any(|f| f == "\\Deleted"))
                {
                    if uids.as_ref().is_some_and(|u| !u.contains(&e.uid)) {
                        continue;
                    }
                    fs::remove_file(&e.path)?;
                    gone.push(e.uid);
                }
                if !gone.is_empty() {
                    sync_dir(&dir.join("cur"))?;
                    let mut list = read_uidlist(&dir).unwrap_or_default();
                    list.uids.retain(|_, u| !gone.contains(u));
                    write_uidlist(&dir, &list)?;
                }
                Ok(MailboxAnswer::Expunged(gone))
            }
            R::Append {
                mailbox,
                flags,
                data,
            } => {
                let Some(dir) = folder_or(&mailbox).filter(|d| d.join("cur").is_dir()) else {
                    return Ok(no("TRYCREATE", "Mailbox doesn't exist"));
                };
                let (validity, uid) = self.append(&dir, &flags, &data)?;
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
                let (Some(src), Some(dst)) = (
                    folder_or(&mailbox),
                    folder_or(&to).filter(|d| d.join("cur").is_dir()),
                ) else {
                    return Ok(no("TRYCREATE", "Mailbox doesn't exist"));
                };
                let entries = self.entries(&src)?;
                let mut from = Vec::new();
                let mut new = Vec::new();
                let mut validity = 0;
                for e in entries.iter().filter(|e| uids.contains(&e.uid)) {
                    let data = read_message(&e.path)?;
                    let (v, u) = self.append(&dst, &e.flags, &data)?;
                    validity = v;
                    from.push(e.uid);
                    new.push(u);
                }
                if moving {
                    let lock = self.lock(&src);
                    let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
                    for e in entries.iter().filter(|e| from.contains(&e.uid)) {
                        fs::remove_file(&e.path)?;
                    }
                    sync_dir(&src.join("cur"))?;
                }
                if validity == 0 {
                    validity = read_uidlist(&dst).map_or(0, |l| l.validity);
                }
                Ok(MailboxAnswer::Uids {
                    uid_validity: validity,
                    from,
                    to: new,
                })
            }
        }
    }

    /// Writes a message into a folder's cur/ with flags; returns
    /// (UIDVALIDITY, UID).
    fn append(&self, dir: &Path, flags: &[String], data: &[u8]) -> io::Result<(u32, u32)> {
        let lock = self.lock(dir);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        // Make sure existing files have their UIDs first.
        let _ = self.entries_locked(dir)?;
        let mut keywords = read_keywords(dir);
        let info = flag_info(flags, &mut keywords);
        write_keywords(dir, &keywords)?;
        let mut body = Vec::with_capacity(data.len());
        crlf_to_lf(&mut body, data);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let base = format!(
            "{}.M{}P{}.postern,S={},W={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            body.len(),
            data.len()
        );
        let tmp = dir.join("tmp").join(&base);
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join("cur").join(format!("{base}:2,{info}")))?;
        sync_dir(&dir.join("cur"))?;
        let mut list = read_uidlist(dir).unwrap_or_else(new_uidlist);
        let uid = list.next;
        list.next += 1;
        list.uids.insert(base, uid);
        write_uidlist(dir, &list)?;
        Ok((list.validity, uid))
    }

    fn view(&self, dir: &Path) -> io::Result<MailboxView> {
        let entries = self.entries(dir)?;
        let list = read_uidlist(dir).unwrap_or_else(new_uidlist);
        let keywords = read_keywords(dir);
        // Sessions on an unchanged folder share one list of messages.
        let st = stamp(dir);
        let shared = self.views.lock().ok().and_then(|v| {
            v.get(dir)
                .filter(|(s, _)| Some(*s) == st)
                .map(|(_, m)| m.clone())
        });
        let messages = match shared {
            Some(m) => m,
            None => {
                let m: Arc<Vec<MessageMeta>> = Arc::new(
                    entries
                        .into_iter()
                        .map(|e| MessageMeta {
                            uid: e.uid,
                            flags: e.flags,
                            size: e.size,
                            internal_date: e.mtime,
                        })
                        .collect(),
                );
                let cached = self
                    .scans
                    .lock()
                    .ok()
                    .is_some_and(|c| c.get(dir).is_some_and(|(s, _)| Some(*s) == st));
                if let (true, Some(st), Ok(mut v)) = (cached, st, self.views.lock()) {
                    v.insert(dir.to_owned(), (st, m.clone()));
                }
                m
            }
        };
        Ok(MailboxView {
            uid_validity: list.validity,
            uid_next: list.next,
            messages,
            keywords,
        })
    }

    fn entries(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        let lock = self.lock(dir);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.entries_locked(dir)
    }

    /// Every message of a folder, new/ moved to cur/, UIDs assigned to
    /// newcomers (and written to `dovecot-uidlist`), in UID order.
    fn entries_locked(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        let before = stamp(dir);
        if let Some(st) = before {
            let cached = self
                .scans
                .lock()
                .ok()
                .and_then(|c| c.get(dir).filter(|(s, _)| *s == st).map(|(_, e)| e.clone()));
            if let Some(entries) = cached {
                return Ok(entries.as_ref().clone());
            }
        }
        let entries = self.scan(dir)?;
        // Remember the scan only when the folder has been still for a while.
        if let Some(st) = stamp(dir) {
            let settled = SystemTime::now()
                .duration_since(st.0.max(st.1))
                .is_ok_and(|d| d > STAMP_SETTLE);
            if let Ok(mut c) = self.scans.lock() {
                if settled {
                    c.insert(dir.to_owned(), (st, Arc::new(entries.clone())));
                } else {
                    c.remove(dir);
                }
            }
        }
        Ok(entries)
    }

    /// A cheap token that changes when a folder's messages or flags do:
    /// the runtime checks it before waking an idling session.
    pub fn version(&self, user: &str, mailbox: &str) -> Option<Stamp> {
        let root = self.account(user)?;
        stamp(&Self::folder(&root, mailbox)?)
    }

    fn scan(&self, dir: &Path) -> io::Result<Vec<Entry>> {
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
        let keywords = read_keywords(dir);
        let mut list = read_uidlist(dir).unwrap_or_else(new_uidlist);
        let mut found = Vec::new();
        for e in fs::read_dir(dir.join("cur"))?.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let (base, info) = match name.split_once(":2,") {
                Some((b, i)) => (b.to_owned(), i.to_owned()),
                None => (name.clone(), String::new()),
            };
            let meta = e.metadata()?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            let size =
                size_from_name(&base).unwrap_or_else(|| crlf_size(&e.path()).unwrap_or(meta.len()));
            found.push(Entry {
                uid: 0,
                flags: parse_info(&info, &keywords),
                base,
                path: e.path(),
                size,
                mtime,
            });
        }
        let mut dirty = false;
        // Newcomers get UIDs in the order they arrived (name starts with the time).
        found.sort_by(|a, b| a.base.cmp(&b.base));
        for e in found.iter_mut() {
            match list.uids.get(&e.base) {
                Some(u) => e.uid = *u,
                None => {
                    e.uid = list.next;
                    list.next += 1;
                    list.uids.insert(e.base.clone(), e.uid);
                    dirty = true;
                }
            }
        }
        // Forget UIDs of files that are gone.
        let before = list.uids.len();
        list.uids.retain(|b, _| found.iter().any(|e| &e.base == b));
        dirty |= list.uids.len() != before;
        if dirty || !dir.join("dovecot-uidlist").exists() {
            write_uidlist(dir, &list)?;
        }
        found.sort_by_key(|e| e.uid);
        Ok(found)
    }
}

fn new_uidlist() -> UidList {
    UidList {
        validity: u32::try_from(now_secs()).unwrap_or(1).max(1),
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

fn write_uidlist(dir: &Path, list: &UidList) -> io::Result<()> {
    let mut sorted: Vec<(&String, &u32)> = list.uids.iter().collect();
    sorted.sort_by_key(|(_, u)| **u);
    let mut text = format!("3 V{} N{}\n", list.validity, list.next);
    for (base, uid) in sorted {
        text.push_str(&format!("{uid} :{base}\n"));
    }
    write_atomic(&dir.join("dovecot-uidlist"), text.as_bytes())
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

/// A message as IMAP serves it: CRLF line ends.
fn read_message(path: &Path) -> io::Result<Vec<u8>> {
    if fs::metadata(path)?.len() > MAX_MESSAGE {
        return Err(io::Error::other("message too large to serve"));
    }
    let raw = fs::read(path)?;
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in &raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Ok(out)
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

fn special_use(name: &str) -> Option<&'static str> {
    match name {
        "Drafts" => Some("\\Drafts"),
        "Sent" | "Sent Messages" | "Sent Items" => Some("\\Sent"),
        "Junk" | "Spam" => Some("\\Junk"),
        "Trash" | "Deleted Messages" => Some("\\Trash"),
        "Archive" => Some("\\Archive"),
        _ => None,
    }
}

/// IMAP LIST wildcards: `*` matches anything, `%` anything but `/`.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8], budget: &mut u32) -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| m(rest, &n[i..], budget)),
            Some((b'%', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != b'/')
                .any(|i| m(rest, &n[i..], budget)),
            Some((c, rest)) => {
                n.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && m(rest, &n[1..], budget)
            }
        }
    }
    let mut budget = 100_000;
    m(pattern.as_bytes(), name.as_bytes(), &mut budget)
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
                pattern: "*".into(),
                subscribed_only: false,
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
        let MailboxAnswer::Bodies(b) = s.answer(
            "bob@example.com",
            MailboxRequest::Bodies {
                mailbox: "INBOX".into(),
                uids: vec![42],
            },
        ) else {
            panic!()
        };
        assert_eq!(b[0].1, b"z\r\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
