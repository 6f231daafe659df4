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
//! (CONDSTORE mod-sequences, an append-only log, with QRESYNC's expunged
//! UIDs, logged before their files go, and the `\Recent` mark) and
//! `postern-summaries` (parsed ENVELOPE/BODYSTRUCTURE/SORT keys per
//! message). Lost, `postern-modseq` costs clients a full resync, not mail.

mod error;
mod files;
mod flags;
mod index;
mod modseq;
mod requests;
mod summaries;
#[cfg(test)]
mod tests;
mod uidlist;

pub use error::MailStoreError;
pub use flags::FLAG_LETTERS;
pub use summaries::SummaryCacheLimits;

use crate::directory::Mailbox;
use crate::maildir::{ChangeHook, DeliveryJob, Maildir};
use crate::store::{
    ChangeListener, Clock, Delivery, MailboxId, MailboxStore, StoreError, SystemClock, Version,
};
use files::list_folders;
use index::{stamp, Folder, NewList};
use postern_core::imap::event::{Code, MailboxAnswer, MailboxRequest};
use requests::no;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// The store of all accounts under a Maildir root.
#[derive(Debug)]
pub struct MailStore {
    maildir: Arc<Maildir>,
    folders: Mutex<HashMap<PathBuf, Arc<Mutex<Folder>>>>,
    /// APPENDs written and synced in `tmp/`, per folder, waiting for the
    /// folder's lock to be filed together (group commit).
    appends: Mutex<HashMap<PathBuf, Vec<Arc<requests::AppendJob>>>>,
    /// Storage limit per account in bytes (None: unlimited).
    quota: Option<u64>,
    /// Per-account limits (docker-mailserver's `dovecot-quotas.cf`).
    quotas: HashMap<String, u64>,
    /// The time, and new UIDVALIDITY values.
    clock: Arc<dyn Clock>,
    /// The bounds of the in-memory summary cache.
    summary_limits: SummaryCacheLimits,
    /// Counts summaries into memory over all folders: their age, for
    /// evicting the oldest first.
    summary_clock: std::sync::atomic::AtomicU64,
    /// Held while a subscriptions file is read, changed and written back:
    /// two sessions of one account subscribing at once must not lose one
    /// of the changes.
    subscriptions: Mutex<()>,
    /// Each account's storage use as last counted (bytes) and when, by
    /// account folder. The quota checks of RCPT and of delivery read it
    /// instead of counting every folder again: a count lists a folder
    /// whose `new/` changed, and with 10,000 messages in an INBOX that
    /// was 4 ms of CPU per message. Deliveries add to it; an IMAP request
    /// that adds or removes messages forgets it; after [`USAGE_TTL`] it
    /// is counted again (changes by other programs).
    usage: Mutex<Usage>,
}

/// The counted storage use of accounts (see [`MailStore::counted_use`]).
#[derive(Debug, Default)]
struct Usage {
    /// Bytes and when counted, by account folder.
    counts: HashMap<PathBuf, (u64, Instant)>,
    /// How many counts were forgotten: a count that was under way while
    /// one was forgotten may predate the change, and is not kept.
    forgotten: u64,
}

/// How long a counted storage use is trusted for the quota checks.
const USAGE_TTL: Duration = Duration::from_secs(60);

fn lock(f: &Mutex<Folder>) -> std::sync::MutexGuard<'_, Folder> {
    f.lock().unwrap_or_else(|e| e.into_inner())
}

impl MailStore {
    /// A store over the same tree the delivery writes to, no quota.
    pub fn new(maildir: Arc<Maildir>) -> Self {
        Self {
            maildir,
            folders: Mutex::new(HashMap::new()),
            appends: Mutex::new(HashMap::new()),
            quota: None,
            quotas: HashMap::new(),
            clock: Arc::new(SystemClock),
            summary_limits: SummaryCacheLimits::default(),
            summary_clock: std::sync::atomic::AtomicU64::new(0),
            subscriptions: Mutex::new(()),
            usage: Mutex::new(Usage::default()),
        }
    }

    /// Sets the bounds of the in-memory summary cache.
    pub fn with_summary_cache(mut self, limits: SummaryCacheLimits) -> Self {
        self.summary_limits = limits;
        self
    }

    /// Takes the time and new UIDVALIDITY values from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the storage limit: `default` for every account, `per_user`
    /// for some (bytes).
    pub fn with_quota(mut self, default: Option<u64>, per_user: HashMap<String, u64>) -> Self {
        self.quota = default;
        self.quotas = per_user;
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

    /// Whether the folder's index matches `st` but scanned it while it was
    /// young, and `st` has settled since (its next use scans once more).
    fn to_verify(&self, dir: &Path, st: index::Stamp) -> bool {
        let Some(state) = self.loaded_state(dir) else {
            return false;
        };
        let Ok(g) = state.try_lock() else {
            return false;
        };
        g.loaded && g.stamp == Some(st) && !g.verified && index::settled(Some(st))
    }

    /// A folder's index state if one was made (without making one).
    fn loaded_state(&self, dir: &Path) -> Option<Arc<Mutex<Folder>>> {
        let l = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        l.get(dir).cloned()
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

    /// Runs `f` on a folder's index if it can be had at once and is up
    /// to date (the three stats of its stamp): `None` when the index is
    /// not loaded, is busy (another request holds its lock, maybe for
    /// disk work), or the directory changed and needs a scan.
    fn with_current<T>(&self, dir: &Path, f: impl FnOnce(&mut Folder) -> Option<T>) -> Option<T> {
        let state = self.loaded_state(dir)?;
        let mut g = match state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        if !g.current(stamp(dir)) {
            return None;
        }
        f(&mut g)
    }

    /// [`MailboxStore::answer_cached`]: Poll, STATUS and cached summaries
    /// from an up-to-date index, as `answer` would give them.
    pub fn answer_cached(&self, user: &str, req: &MailboxRequest) -> Option<MailboxAnswer> {
        let (local, domain) = user.rsplit_once('@')?;
        let root = self.maildir.known(&Mailbox {
            domain: domain.to_lowercase(),
            user: local.to_lowercase(),
        })?;
        match req {
            MailboxRequest::Poll {
                mailbox,
                take_recent,
            } => {
                let dir = Self::folder(&root, mailbox)?;
                self.with_current(&dir, |f| {
                    // Taking recency writes the mark: not from memory.
                    if *take_recent && f.first_recent < f.next {
                        return None;
                    }
                    Some(MailboxAnswer::Changed(
                        f.current_view(Vec::new(), Vec::new()),
                    ))
                })
            }
            MailboxRequest::Vanished { mailbox, since } => {
                let dir = Self::folder(&root, mailbox)?;
                self.with_current(&dir, |f| {
                    Some(MailboxAnswer::Vanished {
                        uids: f.tombstones.since(*since),
                        floor: f.tombstones.floor(),
                    })
                })
            }
            MailboxRequest::Status { mailbox } => {
                let dir = Self::folder(&root, mailbox)?;
                self.with_current(&dir, |f| Some(MailboxAnswer::Status(f.counts())))
            }
            MailboxRequest::Summaries { mailbox, uids } => {
                let dir = Self::folder(&root, mailbox)?;
                self.with_current(&dir, |f| {
                    let cache = f.summaries.as_ref()?;
                    let mut have = Vec::with_capacity(uids.len());
                    for u in uids {
                        have.push((*u, cache.get(u)?.clone()));
                    }
                    Some(MailboxAnswer::Summaries(have))
                })
            }
            _ => None,
        }
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
        let resizes = matches!(
            req,
            MailboxRequest::Append { .. }
                | MailboxRequest::Copy { .. }
                | MailboxRequest::Expunge { .. }
                | MailboxRequest::Delete { .. }
        );
        let answer = match self.answer_io(user, &root, req) {
            Ok(a) => a,
            Err(e) => no(Code::ServerBug, format!("Internal error: {e}")),
        };
        // After the change; a count under way meanwhile is not kept.
        if resizes {
            let mut usage = self.usage_lock();
            usage.counts.remove(&root);
            usage.forgotten += 1;
        }
        answer
    }

    /// Whether an account has used up its storage limit (delivery then
    /// answers 552 5.2.2, as Dovecot's LMTP does).
    pub fn over_quota(&self, user: &str) -> bool {
        let Some(limit) = self.limit(user) else {
            return false;
        };
        match self.account(user) {
            Some(root) => self
                .counted_use(&root)
                .is_ok_and(|u| postern_core::imap::rules::quota_full(u, Some(limit))),
            None => false,
        }
    }

    fn limit(&self, user: &str) -> Option<u64> {
        self.quotas
            .get(&user.to_lowercase())
            .copied()
            .or(self.quota)
    }

    /// Whether the delivery fits its account's quota (Dovecot's rule, see
    /// [`postern_core::imap::rules::delivery_room`]); when it does, its
    /// bytes are added to the account's counted use at once, so the next
    /// delivery of the batch sees them. Returns the account folder and the
    /// bytes added, to take back if the delivery fails.
    fn room_for(&self, d: &Delivery) -> Result<Option<(PathBuf, u64)>, StoreError> {
        let Some(limit) = self.limit(&d.user) else {
            return Ok(None);
        };
        let Some(root) = self.account(&d.user) else {
            return Ok(None);
        };
        let counted = self.counted_use(&root).map_err(|source| StoreError::Io {
            op: "quota",
            source,
        })?;
        let adding = (d.prefix.len() + d.message.len()) as u64;
        // Checked and added under one lock: two deliveries at once (the
        // group commit and a bounce) cannot both take the last room.
        let mut usage = self.usage_lock();
        let entry = usage.counts.get_mut(&root);
        let used = entry.as_ref().map_or(counted, |e| e.0);
        let room = postern_core::imap::rules::delivery_room(used, adding, Some(limit));
        StoreError::from_room(room, &d.user)?;
        if let Some(e) = entry {
            e.0 = e.0.saturating_add(adding);
        }
        drop(usage);
        Ok(Some((root, adding)))
    }

    fn usage_lock(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The account's storage use as last counted, counted again when
    /// there is none younger than [`USAGE_TTL`].
    fn counted_use(&self, root: &Path) -> io::Result<u64> {
        if let Some(&(used, at)) = self.usage_lock().counts.get(root) {
            if at.elapsed() < USAGE_TTL {
                return Ok(used);
            }
        }
        self.used(root)
    }

    /// Takes `bytes` a failed delivery added back from a counted use.
    fn take_back_use(&self, root: &Path, bytes: u64) {
        if let Some((used, _)) = self.usage_lock().counts.get_mut(root) {
            *used = used.saturating_sub(bytes);
        }
    }

    /// Counts the account's storage use (every folder's messages) and
    /// keeps the count for the quota checks.
    fn used(&self, root: &Path) -> io::Result<u64> {
        let (started, forgotten) = (Instant::now(), self.usage_lock().forgotten);
        let mut used = 0;
        for name in list_folders(root)? {
            if let Some(dir) = Self::folder(root, &name) {
                used += self.with(&dir, |f| Ok(f.entries.iter().map(|e| e.size).sum::<u64>()))?;
            }
        }
        let mut usage = self.usage_lock();
        if usage.forgotten == forgotten {
            usage.counts.insert(root.to_owned(), (used, started));
        }
        Ok(used)
    }
}

impl MailboxStore for MailStore {
    fn answer(&self, user: &str, request: MailboxRequest) -> MailboxAnswer {
        MailStore::answer(self, user, request)
    }

    fn answer_cached(&self, user: &str, request: &MailboxRequest) -> Option<MailboxAnswer> {
        MailStore::answer_cached(self, user, request)
    }

    fn over_quota(&self, user: &str) -> bool {
        MailStore::over_quota(self, user)
    }

    /// The modification times of the folder's `new/`, `cur/` and UID
    /// list, hashed: two stats, no listing.
    fn version(&self, mailbox: &MailboxId) -> Option<Version> {
        use std::hash::{Hash, Hasher};
        let root = self.account(&mailbox.user)?;
        let dir = Self::folder(&root, &mailbox.mailbox)?;
        let st = stamp(&dir)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        st.hash(&mut h);
        // An index that scanned this stamp while it was young may have
        // missed a delivery made in the same clock tick (directory times
        // are coarse on Linux before 6.13): once the stamp has settled
        // the version moves, so an IDLE session asks again and the index
        // looks once more.
        if self.to_verify(&dir, st) {
            true.hash(&mut h);
        }
        Some(Version(h.finish()))
    }

    fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>> {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut at = Vec::with_capacity(batch.len());
        let mut out: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
        // The bytes each delivery added to its account's counted use.
        let mut counted: Vec<Option<(PathBuf, u64)>> = Vec::with_capacity(batch.len());
        for d in batch {
            let room = match self.room_for(d) {
                Ok(room) => room,
                Err(e) => {
                    out.push(Err(e));
                    counted.push(None);
                    continue;
                }
            };
            counted.push(room);
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
                        folder: d.folder.clone(),
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
                    let mut path = self.maildir.mailbox_path(&job.mailbox);
                    if let Some(f) = &job.folder {
                        path = path.join(format!(".{f}"));
                    }
                    let path = path.join("new");
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
                        source: source.into(),
                    })
                }
            }
        }
        // What failed takes no room after all.
        for (r, room) in out.iter().zip(counted) {
            if let (Err(_), Some((root, bytes))) = (r, room) {
                self.take_back_use(&root, bytes);
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
