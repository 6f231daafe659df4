//! The interfaces between the protocol sessions and the stores: one trait
//! per store (mailboxes, outbound queue, directory, shared counters) and a
//! change notification keyed by mailbox, not by a file-system path.
//!
//! Every method is synchronous and takes `&self`; every implementation is
//! `Send + Sync`, and the runtime decides which thread runs a call. No
//! signature names a file-system path, and no implementation may keep
//! state about a session that only one process could hold: UIDs,
//! mod-sequences, queue state and rate counters live in the store, so a
//! later backend on a shared database can serve several Postern replicas.

use crate::directory::Resolution;
use crate::spool::{QueueStats, QueuedMessage, Spool};
use postern_core::imap::event::{MailboxAnswer, MailboxRequest};
use postern_core::smtp::Address;
use std::sync::Arc;

pub mod counters;

pub use counters::{legacy_day_count, CounterError, Counters, FileCounters, MemCounters, Window};

/// One mailbox of one account: what a change notification and a version
/// stamp are about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId {
    /// The account address (`user@domain`, lower-case).
    pub user: String,
    /// The mailbox name as IMAP gives it (`INBOX`, `Archive/2026`).
    pub mailbox: String,
}

impl MailboxId {
    /// The id of `user`'s `mailbox`; the account address is lower-cased.
    pub fn new(user: &str, mailbox: &str) -> Self {
        Self {
            user: user.to_lowercase(),
            mailbox: mailbox.to_owned(),
        }
    }

    /// The id of `user`'s INBOX.
    pub fn inbox(user: &str) -> Self {
        Self::new(user, "INBOX")
    }
}

impl std::fmt::Display for MailboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.user, self.mailbox)
    }
}

/// A cheap stamp that changes when a mailbox's messages or flags do: the
/// runtime compares two before waking an idling session. Opaque: only
/// equality means anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub u64);

/// Told of each mailbox that changed (a delivery, another session's STORE
/// or EXPUNGE): IDLE wakes on it.
pub type ChangeListener = Arc<dyn Fn(&MailboxId) + Send + Sync>;

/// One message for one account's INBOX (or Junk), as local delivery hands it over.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The account address (`user@domain`).
    pub user: String,
    /// Trace header lines to put first (CRLF).
    pub prefix: Vec<u8>,
    /// The message (CRLF); shared by the recipients of one transaction.
    pub message: Arc<Vec<u8>>,
    /// The folder (like `Junk`), `None` for INBOX. A folder that does not
    /// exist is created.
    pub folder: Option<String>,
}

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The account does not exist or cannot be opened.
    #[error("account {0} unavailable")]
    NoAccount(String),
    /// The storage under the store failed.
    #[error("{op}: {source}")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The store's backend is down or refused (a later database backend).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The account has no room for the message under its quota (checked
    /// at delivery; a later attempt may find room).
    #[error("mailbox of {0} is full")]
    Full(String),
    /// The message is larger than the account's quota allows even when
    /// empty: no later attempt can deliver it.
    #[error("message too big for the quota of {0}")]
    TooBig(String),
}

impl StoreError {
    /// The quota's verdict on a delivery to `user`
    /// ([`postern_core::imap::rules::delivery_room`]) as a store result.
    pub fn from_room(
        room: postern_core::imap::rules::DeliveryRoom,
        user: &str,
    ) -> Result<(), StoreError> {
        use postern_core::imap::rules::DeliveryRoom as R;
        match room {
            R::Fits => Ok(()),
            R::Full => Err(StoreError::Full(user.to_owned())),
            R::NeverFits => Err(StoreError::TooBig(user.to_owned())),
        }
    }
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io { op, source } => {
                std::io::Error::new(source.kind(), format!("{op}: {source}"))
            }
            other => std::io::Error::other(other.to_string()),
        }
    }
}

/// The mailbox store: everything the IMAP session asks, local delivery,
/// the quota check at SMTP RCPT, and change notification for IDLE.
pub trait MailboxStore: Send + Sync {
    /// Answers one request of the IMAP session for `user` (an account
    /// address). A failure of the store is `NO [SERVERBUG]`, never a panic.
    fn answer(&self, user: &str, request: MailboxRequest) -> MailboxAnswer;

    /// Answers `request` from memory when the store can do so without
    /// waiting on disk or on another request (a Poll when nothing changed,
    /// STATUS counts, summaries already cached); `None` when it cannot,
    /// and the caller then runs [`Self::answer`] where blocking is
    /// allowed. When it answers, it answers exactly as [`Self::answer`]
    /// would. It never blocks: a lock held elsewhere means `None`. The
    /// runtime tries it on its executor first, which saves a round trip
    /// to the blocking pool for the most frequent requests.
    fn answer_cached(&self, user: &str, request: &MailboxRequest) -> Option<MailboxAnswer> {
        let _ = (user, request);
        None
    }

    /// Whether `user` has used up the storage limit (SMTP RCPT then
    /// answers 552 5.2.2). A store that cannot tell answers `false`.
    fn over_quota(&self, user: &str) -> bool;

    /// A stamp of the mailbox's state (None: no such mailbox).
    fn version(&self, mailbox: &MailboxId) -> Option<Version>;

    /// Delivers a batch to INBOXes durably (group commit): one result per
    /// delivery, in order; `Ok` only once the message is durable.
    fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>>;

    /// Sets who is told of changed mailboxes (once; later calls are ignored).
    fn on_change(&self, listener: ChangeListener);
}

/// The durable outbound queue.
pub trait Queue: Send + Sync {
    /// Queues a message durably under `id`; returns its state.
    fn enqueue(
        &self,
        id: &str,
        from: &str,
        rcpts: &[String],
        data: &[u8],
        now: u64,
    ) -> Result<QueuedMessage, QueueError> {
        self.enqueue_with_folders(id, from, rcpts, &[], data, now)
    }
    /// [`Self::enqueue`] with the mailbox folder of each recipient
    /// (`folders[i]` for `rcpts[i]`, a missing entry or `None` is INBOX):
    /// local copies kept for retry go where they were meant to (Junk).
    fn enqueue_with_folders(
        &self,
        id: &str,
        from: &str,
        rcpts: &[String],
        folders: &[Option<String>],
        data: &[u8],
        now: u64,
    ) -> Result<QueuedMessage, QueueError>;
    /// Rewrites a message's state durably.
    fn update(&self, message: &QueuedMessage) -> Result<(), QueueError>;
    /// Writes the state a worker settled on after an attempt on a message
    /// it loaded with `loaded_next_attempt`, atomically against
    /// [`Self::retry_now`]: a `next_attempt` changed meanwhile (a retry
    /// asked for during the attempt) is kept, and a message removed
    /// meanwhile stays removed.
    fn settle(&self, message: &QueuedMessage, loaded_next_attempt: u64) -> Result<(), QueueError>;
    /// Makes a message due now (`postern queue retry`).
    fn retry_now(&self, id: &str) -> Result<(), QueueError>;
    /// A message's state.
    fn load(&self, id: &str) -> Result<QueuedMessage, QueueError>;
    /// A message's bytes.
    fn data(&self, id: &str) -> Result<Vec<u8>, QueueError>;
    /// Removes a message.
    fn remove(&self, id: &str) -> Result<(), QueueError>;
    /// Every queued message, oldest first, and the ids that could not be
    /// read (with why).
    fn list(&self) -> Result<(Vec<QueuedMessage>, Vec<String>), QueueError>;
    /// Figures for monitoring at `now` (Unix seconds).
    fn stats(&self, now: u64) -> Result<QueueStats, QueueError>;
    /// Takes message `id` for `worker` until `until` (Unix seconds) unless
    /// another worker holds it at `now`: with several replicas on one
    /// queue, one message is attempted by one of them at a time. True if
    /// `worker` holds it now (a claim it already held is extended).
    fn claim(&self, id: &str, worker: &str, now: u64, until: u64) -> Result<bool, QueueError>;
    /// Gives back `worker`'s claim on `id` (after an attempt).
    fn release(&self, id: &str, worker: &str) -> Result<(), QueueError>;
}

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue id is not letters and digits.
    #[error("bad queue id {0:?}")]
    BadId(String),
    /// No message has this id.
    #[error("no queued message {0}")]
    NotFound(String),
    /// A stored envelope is damaged, or the request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The storage under the queue failed.
    #[error("queue: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for QueueError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::InvalidData => QueueError::Invalid(e.to_string()),
            _ => QueueError::Io(e),
        }
    }
}

impl From<crate::spool::SpoolError> for QueueError {
    fn from(e: crate::spool::SpoolError) -> Self {
        match e {
            crate::spool::SpoolError::BadId(id) => QueueError::BadId(id),
            other => QueueError::from(std::io::Error::from(other)),
        }
    }
}

impl From<QueueError> for std::io::Error {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Io(e) => e,
            QueueError::NotFound(_) => std::io::Error::new(std::io::ErrorKind::NotFound, e),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// The spool folder is the queue of a single Postern.
impl Queue for Spool {
    fn enqueue_with_folders(
        &self,
        id: &str,
        from: &str,
        rcpts: &[String],
        folders: &[Option<String>],
        data: &[u8],
        now: u64,
    ) -> Result<QueuedMessage, QueueError> {
        if !crate::spool::valid_id(id) {
            return Err(QueueError::BadId(id.to_owned()));
        }
        Ok(Spool::enqueue_with_folders(
            self, id, from, rcpts, folders, data, now,
        )?)
    }

    fn update(&self, message: &QueuedMessage) -> Result<(), QueueError> {
        if !crate::spool::valid_id(&message.id) {
            return Err(QueueError::BadId(message.id.clone()));
        }
        Ok(Spool::update(self, message)?)
    }

    fn settle(&self, message: &QueuedMessage, loaded_next_attempt: u64) -> Result<(), QueueError> {
        queue_io(
            &message.id,
            Spool::settle(self, message, loaded_next_attempt),
        )
    }

    fn retry_now(&self, id: &str) -> Result<(), QueueError> {
        queue_io(id, Spool::retry_now(self, id))
    }

    fn load(&self, id: &str) -> Result<QueuedMessage, QueueError> {
        queue_io(id, Spool::load(self, id))
    }

    fn data(&self, id: &str) -> Result<Vec<u8>, QueueError> {
        queue_io(id, Spool::data(self, id))
    }

    fn remove(&self, id: &str) -> Result<(), QueueError> {
        queue_io(id, Spool::remove(self, id))?;
        let _ = std::fs::remove_file(claim_path(self, id));
        Ok(())
    }

    fn list(&self) -> Result<(Vec<QueuedMessage>, Vec<String>), QueueError> {
        Ok(Spool::list(self)?)
    }

    fn stats(&self, now: u64) -> Result<QueueStats, QueueError> {
        Ok(Spool::stats(self, now)?)
    }

    /// A claim is a file `<id>.claim` beside the message holding
    /// `<worker> <until>`, made with create-new (one taker wins) and
    /// replaced when it has expired.
    fn claim(&self, id: &str, worker: &str, now: u64, until: u64) -> Result<bool, QueueError> {
        if !crate::spool::valid_id(id) {
            return Err(QueueError::BadId(id.to_owned()));
        }
        if worker.is_empty() || worker.contains(char::is_whitespace) {
            return Err(QueueError::Invalid(format!("bad worker name {worker:?}")));
        }
        let path = claim_path(self, id);
        let line = format!("{worker} {until}\n");
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                std::io::Write::write_all(&mut f, line.as_bytes())?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let held = std::fs::read_to_string(&path).unwrap_or_default();
        let (holder, expiry) = held.trim().split_once(' ').unwrap_or(("", "0"));
        if holder != worker && expiry.parse::<u64>().unwrap_or(0) > now {
            return Ok(false);
        }
        let tmp = self.dir().join(format!("tmp.{id}.claim"));
        std::fs::write(&tmp, line.as_bytes())?;
        std::fs::rename(&tmp, &path)?;
        Ok(true)
    }

    fn release(&self, id: &str, worker: &str) -> Result<(), QueueError> {
        if !crate::spool::valid_id(id) {
            return Err(QueueError::BadId(id.to_owned()));
        }
        let path = claim_path(self, id);
        let held = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if held.split_once(' ').map(|(w, _)| w) == Some(worker) {
            std::fs::remove_file(&path)?;
        }
        Ok(())
    }
}

/// Where a spool keeps the claim on message `id` (a checked id).
fn claim_path(spool: &Spool, id: &str) -> std::path::PathBuf {
    spool.dir().join(format!("{id}.claim"))
}

/// A spool result for one id: a bad id and a missing file get their own
/// variants.
fn queue_io<T>(id: &str, r: Result<T, crate::spool::SpoolError>) -> Result<T, QueueError> {
    if !crate::spool::valid_id(id) {
        return Err(QueueError::BadId(id.to_owned()));
    }
    r.map_err(std::io::Error::from).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => QueueError::NotFound(id.to_owned()),
        _ => QueueError::from(e),
    })
}

/// Accounts, aliases and limits, as the sessions ask about them.
pub trait Directory: Send + Sync {
    /// Where a (final) address leads.
    fn resolve(&self, address: &Address) -> Resolution;
    /// Checks a login; the account address on success.
    fn verify(&self, username: &str, password: &str) -> Option<String>;
    /// Whether account `user` may send as `address`.
    fn owns(&self, user: &str, address: &Address) -> bool;
    /// Whether `domain` is one of ours.
    fn is_local_domain(&self, domain: &str) -> bool;
    /// The account's storage limit in bytes (None: unlimited).
    fn quota(&self, user: &str) -> Option<u64>;
}

impl Directory for crate::directory::Directory {
    fn resolve(&self, address: &Address) -> Resolution {
        crate::directory::Directory::resolve(self, address)
    }

    fn verify(&self, username: &str, password: &str) -> Option<String> {
        crate::directory::Directory::verify(self, username, password)
    }

    fn owns(&self, user: &str, address: &Address) -> bool {
        crate::directory::Directory::owns(self, user, address)
    }

    fn is_local_domain(&self, domain: &str) -> bool {
        crate::directory::Directory::is_local_domain(self, domain)
    }

    fn quota(&self, user: &str) -> Option<u64> {
        crate::directory::Directory::quota(self, user)
    }
}

/// Where a store takes the time and new UIDVALIDITY values from: the
/// system clock in service, a fixed one in tests so two stores answer
/// byte for byte alike.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, Unix seconds (INTERNALDATE of a message that comes without one).
    fn now(&self) -> i64;
    /// The UIDVALIDITY for `mailbox`, which is getting a new UID list.
    fn uid_validity(&self, mailbox: &MailboxId) -> u32 {
        let _ = mailbox;
        u32::try_from(self.now()).unwrap_or(1).max(1)
    }
}

/// The system clock; UIDVALIDITY is the time a UID list is made.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
    }

    /// The time, but never one handed out before by this process: a
    /// folder deleted and made again in the same second (or the default
    /// folders, made together) must not get the UIDVALIDITY of the old
    /// one, whose messages clients keep cached under it.
    fn uid_validity(&self, _mailbox: &MailboxId) -> u32 {
        use std::sync::atomic::{AtomicU32, Ordering};
        static LAST: AtomicU32 = AtomicU32::new(0);
        let now = u32::try_from(self.now()).unwrap_or(1).max(1);
        let previous = LAST
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or(0);
        now.max(previous.saturating_add(1))
    }
}

/// A clock that stands still, for tests and transcripts. UIDVALIDITY is
/// 1000 + the place of a default folder (INBOX, Drafts, Sent, Junk,
/// Trash), and counts up from 2005 for any other mailbox, in the order
/// the store asks.
#[derive(Debug)]
pub struct FixedClock {
    now: i64,
    next: std::sync::atomic::AtomicU32,
}

impl FixedClock {
    /// A clock that always says `now`.
    pub fn new(now: i64) -> Self {
        Self {
            now,
            next: std::sync::atomic::AtomicU32::new(2005),
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.now
    }

    fn uid_validity(&self, mailbox: &MailboxId) -> u32 {
        match crate::maildir::DEFAULT_FOLDERS
            .iter()
            .position(|f| f.strip_prefix('.') == Some(mailbox.mailbox.as_str()))
        {
            Some(i) => 1001 + u32::try_from(i).unwrap_or(0),
            None if mailbox.mailbox == "INBOX" => 1000,
            None => self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_validities() {
        let c = FixedClock::new(5);
        let id = |m: &str| MailboxId::new("A@x.org", m);
        assert_eq!(c.uid_validity(&id("INBOX")), 1000);
        assert_eq!(c.uid_validity(&id("Drafts")), 1001);
        assert_eq!(c.uid_validity(&id("Trash")), 1004);
        assert_eq!(c.uid_validity(&id("Work")), 2005);
        assert_eq!(c.uid_validity(&id("Play")), 2006);
        assert_eq!(id("INBOX").user, "a@x.org");
    }

    #[test]
    fn spool_is_a_queue() {
        let dir = tempdir("queue");
        let spool = Spool::open(&dir).unwrap();
        let q: &dyn Queue = &spool;
        let m = q
            .enqueue("abc1", "a@x.org", &["b@y.org".into()], b"hi\r\n", 10)
            .unwrap();
        assert_eq!(q.load("abc1").unwrap(), m);
        assert_eq!(q.data("abc1").unwrap(), b"hi\r\n");
        assert!(matches!(q.load("../x"), Err(QueueError::BadId(_))));
        assert!(matches!(q.load("nope"), Err(QueueError::NotFound(_))));
        assert_eq!(q.stats(15).unwrap().oldest_age, 5);
        assert!(q.claim("abc1", "pod-a", 100, 160).unwrap());
        assert!(!q.claim("abc1", "pod-b", 120, 180).unwrap());
        assert!(q.claim("abc1", "pod-a", 150, 210).unwrap());
        assert!(q.claim("abc1", "pod-b", 211, 270).unwrap());
        q.release("abc1", "pod-a").unwrap();
        assert!(!q.claim("abc1", "pod-a", 212, 270).unwrap());
        q.release("abc1", "pod-b").unwrap();
        assert!(q.claim("abc1", "pod-a", 213, 270).unwrap());
        assert!(q.claim("abc1", "bad name", 0, 1).is_err());
        q.remove("abc1").unwrap();
        assert!(q.list().unwrap().0.is_empty());
        assert!(!dir.join("abc1.claim").exists());
        let e: std::io::Error = QueueError::NotFound("x".into()).into();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    pub(crate) fn tempdir(tag: &str) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d =
            std::env::temp_dir().join(format!("postern-store-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
