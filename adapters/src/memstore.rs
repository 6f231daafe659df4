//! A mailbox store in memory: the same answers as the Maildir store (the
//! IMAP transcripts run against both), for tests, benchmarks and
//! development. Accounts appear on first use with the default folders
//! (INBOX, Drafts, Sent, Junk, Trash, all subscribed), as a Maildir
//! account does. Bounded: past `max_bytes` of messages in all, APPEND,
//! COPY and delivery are refused.

use crate::store::{
    ChangeListener, Clock, Delivery, MailboxId, MailboxStore, StoreError, SystemClock, Version,
};
use postern_core::imap::event::{
    Code, ListEntry, MailboxAnswer, MailboxRequest, MailboxView, MessageMeta, StatusCounts, Stored,
};
use postern_core::imap::rules::{self, StoreStep};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// The default bound on message bytes over all accounts.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// Why the in-memory store refused a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemStoreError {
    /// The user is not an account address (`user@domain`).
    #[error("{0} is not an account address")]
    NotAnAccount(String),
    /// The store holds its bound of message bytes.
    #[error("memory store full: {needed} bytes asked, {room} free")]
    Full {
        /// The message's size.
        needed: u64,
        /// What is left under the bound.
        room: u64,
    },
}

impl From<MemStoreError> for StoreError {
    fn from(e: MemStoreError) -> Self {
        match e {
            MemStoreError::NotAnAccount(u) => StoreError::NoAccount(u),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<MemStoreError> for std::io::Error {
    fn from(e: MemStoreError) -> Self {
        std::io::Error::other(e)
    }
}

/// The folders every account starts with.
const DEFAULT_FOLDERS: [&str; 5] = ["INBOX", "Drafts", "Sent", "Junk", "Trash"];

#[derive(Clone, Debug)]
struct Msg {
    uid: u32,
    flags: Vec<String>,
    data: Arc<Vec<u8>>,
    modseq: u64,
    /// INTERNALDATE.
    date: i64,
}

#[derive(Clone, Debug, Default)]
struct Folder {
    messages: Vec<Msg>,
    uid_next: u32,
    uid_validity: u32,
    highest_modseq: u64,
    /// Keywords ever set, in order (as Maildir's `dovecot-keywords`).
    keywords: Vec<String>,
    /// The messages' bytes.
    bytes: u64,
}

impl Folder {
    fn new(uid_validity: u32) -> Self {
        Folder {
            messages: Vec::new(),
            uid_next: 1,
            uid_validity,
            highest_modseq: 1,
            keywords: Vec::new(),
            bytes: 0,
        }
    }

    fn find(&self, uid: u32) -> Option<&Msg> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &self.messages[i])
    }

    fn add(&mut self, flags: &[String], data: Arc<Vec<u8>>, date: i64) -> u32 {
        let uid = rules::next_uid(&mut self.uid_next);
        let flags = rules::canonical_flags(flags, &mut self.keywords);
        let modseq = rules::next_modseq(&mut self.highest_modseq);
        self.bytes += data.len() as u64;
        self.messages.push(Msg {
            uid,
            flags,
            data,
            modseq,
            date,
        });
        uid
    }

    fn remove(&mut self, uids: &[u32]) {
        if uids.is_empty() {
            return;
        }
        self.messages.retain(|m| !uids.contains(&m.uid));
        self.bytes = self.messages.iter().map(|m| m.data.len() as u64).sum();
        rules::next_modseq(&mut self.highest_modseq);
    }

    fn counts(&self) -> StatusCounts {
        let n = |it: usize| u32::try_from(it).unwrap_or(u32::MAX);
        let deleted = || {
            self.messages
                .iter()
                .filter(|m| rules::has_flag(&m.flags, rules::DELETED))
        };
        StatusCounts {
            messages: n(self.messages.len()),
            unseen: n(self
                .messages
                .iter()
                .filter(|m| !rules::has_flag(&m.flags, rules::SEEN))
                .count()),
            uid_next: self.uid_next,
            uid_validity: self.uid_validity,
            recent: 0,
            size: self.bytes,
            highest_modseq: self.highest_modseq,
            deleted: n(deleted().count()),
            deleted_storage: deleted().map(|m| m.data.len() as u64).sum(),
        }
    }

    fn meta(&self) -> Arc<Vec<MessageMeta>> {
        Arc::new(
            self.messages
                .iter()
                .map(|m| MessageMeta {
                    uid: m.uid,
                    flags: m.flags.clone(),
                    size: m.data.len() as u64,
                    internal_date: m.date,
                    modseq: m.modseq,
                })
                .collect(),
        )
    }
}

#[derive(Clone, Debug, Default)]
struct Account {
    folders: BTreeMap<String, Folder>,
    subscribed: BTreeSet<String>,
}

impl Account {
    fn used(&self) -> u64 {
        self.folders.values().map(|f| f.bytes).sum()
    }
}

/// The in-memory store of every account.
pub struct MemStore {
    accounts: Mutex<BTreeMap<String, Account>>,
    clock: Arc<dyn Clock>,
    /// The storage limit of accounts not in `quotas` (None: unlimited).
    quota: Option<u64>,
    /// Per-account storage limits, lower-case keys.
    quotas: HashMap<String, u64>,
    /// The bound on message bytes over all accounts.
    max_bytes: u64,
    listener: OnceLock<ChangeListener>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore")
            .field("clock", &self.clock)
            .field("quota", &self.quota)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl MemStore {
    /// An empty store taking the time and UIDVALIDITY values from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            accounts: Mutex::new(BTreeMap::new()),
            clock,
            quota: None,
            quotas: HashMap::new(),
            max_bytes: DEFAULT_MAX_BYTES,
            listener: OnceLock::new(),
        }
    }

    /// Sets the storage limit: `default` for every account, `per_user`
    /// for some (bytes).
    pub fn with_quota(mut self, default: Option<u64>, per_user: HashMap<String, u64>) -> Self {
        self.quota = default;
        self.quotas = per_user;
        self
    }

    /// Sets the bound on message bytes over all accounts.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    fn limit(&self, user: &str) -> Option<u64> {
        self.quotas
            .get(&user.to_lowercase())
            .copied()
            .or(self.quota)
    }

    /// Runs `f` on `user`'s account (made on first use), under the lock.
    fn with<T>(&self, user: &str, f: impl FnOnce(&mut Account, u64) -> T) -> T {
        let mut all = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = all.values().map(Account::used).sum();
        let key = user.to_lowercase();
        if !all.contains_key(&key) {
            let mut a = Account::default();
            for name in DEFAULT_FOLDERS {
                let v = self.clock.uid_validity(&MailboxId::new(&key, name));
                a.folders.insert(name.to_owned(), Folder::new(v));
                a.subscribed.insert(name.to_owned());
            }
            all.insert(key.clone(), a);
        }
        let room = self.max_bytes.saturating_sub(total);
        match all.get_mut(&key) {
            Some(a) => f(a, room),
            None => f(&mut Account::default(), room),
        }
    }

    fn changed(&self, user: &str, mailbox: &str) {
        if let Some(l) = self.listener.get() {
            l(&MailboxId::new(user, mailbox));
        }
    }

    fn answer_in(
        &self,
        user: &str,
        a: &mut Account,
        room: u64,
        req: MailboxRequest,
    ) -> (MailboxAnswer, Vec<String>) {
        use MailboxRequest as R;
        let missing = || rules::missing(false);
        let poll = matches!(req, R::Poll { .. });
        if let Some(no) = rules::manage_refusal(&req, &|n| a.folders.contains_key(n)) {
            return (no, Vec::new());
        }
        let answer = match req {
            R::List {
                patterns,
                subscribed_only,
                with_status,
            } => {
                let names: Vec<String> = a.folders.keys().cloned().collect();
                let mut entries: Vec<ListEntry> = names
                    .iter()
                    .filter(|n| {
                        patterns
                            .iter()
                            .any(|p| postern_core::imap::session::wildcard(p, n))
                    })
                    .filter(|n| !subscribed_only || a.subscribed.contains(*n))
                    .map(|n| ListEntry {
                        name: n.clone(),
                        attributes: postern_core::imap::session::list_attributes(
                            names.iter(),
                            n,
                            a.subscribed.contains(n),
                        ),
                        status: with_status
                            .then(|| a.folders.get(n).map(Folder::counts))
                            .flatten(),
                    })
                    .collect();
                if subscribed_only {
                    let subs: Vec<String> = a.subscribed.iter().cloned().collect();
                    entries.extend(postern_core::imap::session::nonexistent_subscriptions(
                        &subs, &names, &patterns,
                    ));
                    entries.sort_by(|x, y| x.name.cmp(&y.name));
                }
                MailboxAnswer::List(entries)
            }
            R::Select { mailbox } | R::Poll { mailbox } => {
                match a.folders.get(&mailbox) {
                    Some(f) => MailboxAnswer::View(MailboxView {
                        uid_validity: f.uid_validity,
                        uid_next: f.uid_next,
                        messages: f.meta(),
                        keywords: f.keywords.clone(),
                        highest_modseq: f.highest_modseq,
                        // Poll needs no attributes (SELECT shows them once).
                        attributes: if poll {
                            Vec::new()
                        } else {
                            postern_core::imap::session::list_attributes(
                                a.folders.keys(),
                                &mailbox,
                                false,
                            )
                        },
                    }),
                    None => missing(),
                }
            }
            R::Status { mailbox } => a
                .folders
                .get(&mailbox)
                .map_or_else(missing, |f| MailboxAnswer::Status(f.counts())),
            R::Quota => MailboxAnswer::Quota {
                used: a.used(),
                limit: self.limit(user),
            },
            R::Create { mailbox } => {
                let v = self.clock.uid_validity(&MailboxId::new(user, &mailbox));
                a.folders.insert(mailbox, Folder::new(v));
                MailboxAnswer::Ok
            }
            R::Delete { mailbox } => {
                a.folders.remove(&mailbox);
                MailboxAnswer::Ok
            }
            R::Rename { from, to } => {
                let moving: Vec<(String, String)> = a
                    .folders
                    .keys()
                    .filter_map(|n| rules::renamed(n, &from, &to).map(|t| (n.clone(), t)))
                    .collect();
                for (old, new) in moving {
                    if let Some(f) = a.folders.remove(&old) {
                        a.folders.insert(new, f);
                    }
                }
                MailboxAnswer::Ok
            }
            R::Subscribe { mailbox, on } => {
                if on {
                    a.subscribed.insert(mailbox);
                } else {
                    a.subscribed.remove(&mailbox);
                }
                MailboxAnswer::Ok
            }
            R::Bodies {
                mailbox,
                uids,
                header_only,
            } => match a.folders.get(&mailbox) {
                Some(f) => MailboxAnswer::Bodies(
                    uids.iter()
                        .filter_map(|u| {
                            f.find(*u).map(|m| {
                                let end = if header_only {
                                    postern_core::imap::fetch::header_len(&m.data)
                                } else {
                                    m.data.len()
                                };
                                (*u, m.data[..end].to_vec())
                            })
                        })
                        .collect(),
                ),
                None => missing(),
            },
            R::Summaries { mailbox, uids } => match a.folders.get(&mailbox) {
                Some(f) => MailboxAnswer::Summaries(
                    uids.iter()
                        .filter_map(|u| {
                            f.find(*u)
                                .map(|m| (*u, postern_core::imap::mime::summary(&m.data)))
                        })
                        .collect(),
                ),
                None => missing(),
            },
            R::Store {
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let Some(f) = a.folders.get_mut(&mailbox) else {
                    return (missing(), Vec::new());
                };
                let mut changed = Vec::new();
                let mut modified = Vec::new();
                let mut any = false;
                for u in &uids {
                    let Ok(i) = f.messages.binary_search_by_key(u, |m| m.uid) else {
                        continue;
                    };
                    let m = &f.messages[i];
                    match rules::store_step(
                        &m.flags,
                        m.modseq,
                        mode,
                        &flags,
                        unchanged_since,
                        &mut f.keywords,
                    ) {
                        StoreStep::Modified => {
                            modified.push(*u);
                            continue;
                        }
                        StoreStep::Unchanged => {}
                        StoreStep::Changed(new) => {
                            let modseq = rules::next_modseq(&mut f.highest_modseq);
                            let m = &mut f.messages[i];
                            m.flags = new;
                            m.modseq = modseq;
                            any = true;
                        }
                    }
                    let m = &f.messages[i];
                    changed.push(Stored {
                        uid: m.uid,
                        flags: m.flags.clone(),
                        modseq: m.modseq,
                    });
                }
                let touched = if any { vec![mailbox] } else { Vec::new() };
                return (MailboxAnswer::Flags { changed, modified }, touched);
            }
            R::Expunge { mailbox, uids } => {
                let Some(f) = a.folders.get_mut(&mailbox) else {
                    return (missing(), Vec::new());
                };
                let gone = rules::expunge_set(
                    f.messages.iter().map(|m| (m.uid, m.flags.as_slice())),
                    uids.as_deref(),
                );
                f.remove(&gone);
                let touched = if gone.is_empty() {
                    Vec::new()
                } else {
                    vec![mailbox]
                };
                return (MailboxAnswer::Expunged(gone), touched);
            }
            R::Append {
                mailbox,
                flags,
                data,
                date,
            } => {
                if !a.folders.contains_key(&mailbox) {
                    return (rules::missing(true), Vec::new());
                }
                let adding = data.len() as u64;
                if !rules::quota_allows(a.used(), adding, self.limit(user)) || adding > room {
                    return (rules::over_quota(), Vec::new());
                }
                let date = date.unwrap_or_else(|| self.clock.now());
                let Some(f) = a.folders.get_mut(&mailbox) else {
                    return (rules::missing(true), Vec::new());
                };
                let uid = f.add(&flags, Arc::new(data), date);
                return (
                    MailboxAnswer::Uids {
                        uid_validity: f.uid_validity,
                        from: Vec::new(),
                        to: vec![uid],
                    },
                    vec![mailbox],
                );
            }
            R::Copy {
                mailbox,
                uids,
                to,
                moving,
            } => {
                let (src, dst) = (a.folders.get(&mailbox), a.folders.get(&to));
                if let Some(no) =
                    rules::copy_refusal(src.is_some(), dst.is_some(), mailbox == to, moving)
                {
                    return (no, Vec::new());
                }
                let picked: Vec<Msg> = src
                    .map(|f| uids.iter().filter_map(|u| f.find(*u)).cloned().collect())
                    .unwrap_or_default();
                let adding = rules::copy_adds(moving, picked.iter().map(|m| m.data.len() as u64));
                if !rules::quota_allows(a.used(), adding, self.limit(user)) || adding > room {
                    return (rules::over_quota(), Vec::new());
                }
                let Some(d) = a.folders.get_mut(&to) else {
                    return (rules::missing(true), Vec::new());
                };
                let from: Vec<u32> = picked.iter().map(|m| m.uid).collect();
                let new: Vec<u32> = picked
                    .iter()
                    .map(|m| d.add(&m.flags, m.data.clone(), m.date))
                    .collect();
                let uid_validity = d.uid_validity;
                let mut touched = vec![to];
                if moving && !from.is_empty() {
                    if let Some(s) = a.folders.get_mut(&mailbox) {
                        s.remove(&from);
                    }
                    touched.push(mailbox);
                }
                if new.is_empty() {
                    touched.clear();
                }
                return (
                    MailboxAnswer::Uids {
                        uid_validity,
                        from,
                        to: new,
                    },
                    touched,
                );
            }
        };
        (answer, Vec::new())
    }
}

impl MailboxStore for MemStore {
    fn answer(&self, user: &str, request: MailboxRequest) -> MailboxAnswer {
        if !user.contains('@') {
            return rules::refuse(Code::ServerBug, "Account unavailable");
        }
        let poll = matches!(request, MailboxRequest::Poll { .. });
        let (answer, touched) = self.with(user, |a, room| self.answer_in(user, a, room, request));
        for m in touched {
            self.changed(user, &m);
        }
        match answer {
            MailboxAnswer::View(v) if poll => MailboxAnswer::Changed(v),
            other => other,
        }
    }

    /// Everything here is in memory, and its lock is only ever held for
    /// memory work: the requests that only read (Poll, STATUS, summaries)
    /// are answered at once, as by `answer`.
    fn answer_cached(&self, user: &str, request: &MailboxRequest) -> Option<MailboxAnswer> {
        match request {
            MailboxRequest::Poll { .. }
            | MailboxRequest::Status { .. }
            | MailboxRequest::Summaries { .. } => Some(self.answer(user, request.clone())),
            _ => None,
        }
    }

    fn over_quota(&self, user: &str) -> bool {
        let limit = self.limit(user);
        self.with(user, |a, _| rules::quota_full(a.used(), limit))
    }

    fn version(&self, mailbox: &MailboxId) -> Option<Version> {
        self.with(&mailbox.user, |a, _| {
            a.folders
                .get(&mailbox.mailbox)
                .map(|f| Version((u64::from(f.uid_validity) << 40) ^ f.highest_modseq))
        })
    }

    fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>> {
        let now = self.clock.now();
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            if !d.user.contains('@') {
                out.push(Err(MemStoreError::NotAnAccount(d.user.clone()).into()));
                continue;
            }
            let folder = if d.junk { "Junk" } else { "INBOX" };
            let mut data = Vec::with_capacity(d.prefix.len() + d.message.len());
            data.extend_from_slice(&d.prefix);
            data.extend_from_slice(&d.message);
            let r = self.with(&d.user, |a, room| {
                let needed = data.len() as u64;
                if needed > room {
                    return Err(MemStoreError::Full { needed, room });
                }
                match a.folders.get_mut(folder) {
                    Some(f) => {
                        f.add(&[], Arc::new(data), now);
                        Ok(())
                    }
                    None => Err(MemStoreError::NotAnAccount(d.user.clone())),
                }
            });
            if r.is_ok() {
                self.changed(&d.user, folder);
            }
            out.push(r.map_err(StoreError::from));
        }
        out
    }

    fn on_change(&self, listener: ChangeListener) {
        let _ = self.listener.set(listener);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FixedClock;
    use postern_core::imap::event::StoreMode;

    fn req_append(mailbox: &str, flags: &[&str], data: &[u8]) -> MailboxRequest {
        MailboxRequest::Append {
            mailbox: mailbox.into(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            data: data.to_vec(),
            date: None,
        }
    }

    #[test]
    fn accounts_appear_with_default_folders_and_notify() {
        let s = MemStore::new(Arc::new(FixedClock::new(1_795_588_686)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let w = seen.clone();
        s.on_change(Arc::new(move |id: &MailboxId| {
            w.lock().unwrap().push(id.clone())
        }));
        let u = "Alice@Example.com";
        let a = s.answer(u, req_append("INBOX", &["\\seen", "$X"], b"a\r\n"));
        assert_eq!(
            a,
            MailboxAnswer::Uids {
                uid_validity: 1000,
                from: vec![],
                to: vec![1]
            }
        );
        let before = s.version(&MailboxId::inbox(u));
        let r = s.answer(
            u,
            MailboxRequest::Store {
                mailbox: "INBOX".into(),
                uids: vec![1],
                mode: StoreMode::Add,
                flags: vec!["\\Flagged".into()],
                unchanged_since: None,
            },
        );
        let MailboxAnswer::Flags { changed, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(changed[0].flags, vec!["\\Flagged", "\\Seen", "$X"]);
        assert_ne!(before, s.version(&MailboxId::inbox(u)));
        assert_eq!(
            s.deliver(&[Delivery {
                user: u.into(),
                prefix: vec![],
                message: Arc::new(b"b\r\n".to_vec()),
                junk: false,
            }])
            .len(),
            1
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(
            seen.lock().unwrap()[0],
            MailboxId::inbox("alice@example.com")
        );
        assert!(matches!(
            s.answer("nobody", MailboxRequest::Quota),
            MailboxAnswer::No {
                code: Some(Code::ServerBug),
                ..
            }
        ));
    }

    #[test]
    fn bounded_in_bytes() {
        let s = MemStore::default().with_max_bytes(10);
        let u = "a@x.org";
        assert!(matches!(
            s.answer(u, req_append("INBOX", &[], b"12345678")),
            MailboxAnswer::Uids { .. }
        ));
        assert!(matches!(
            s.answer(u, req_append("INBOX", &[], b"12345")),
            MailboxAnswer::No {
                code: Some(Code::OverQuota),
                ..
            }
        ));
        assert!(s.deliver(&[Delivery {
            user: u.into(),
            prefix: vec![],
            message: Arc::new(b"12345".to_vec()),
            junk: false,
        }])[0]
            .is_err());
        assert!(!s.over_quota(u));
        let q = MemStore::default().with_quota(Some(8), HashMap::new());
        q.answer(u, req_append("INBOX", &[], b"12345678"));
        assert!(q.over_quota(u));
    }
}
