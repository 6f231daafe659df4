//! The durable outbound queue.
//!
//! Each message is two files in the spool folder: `<id>.msg` (the bytes to
//! send, CRLF) and `<id>.env` (sender, times, and each recipient's state).
//! Both are written to a temporary name, fsync'd, renamed and the folder
//! fsync'd before [`Spool::enqueue`] returns, so a message is safe before
//! the submitting client hears 250. State changes rewrite `<id>.env` the
//! same way; a message whose `.env` is missing was never acknowledged.
//! The folder's descriptor is kept open from [`Spool::open`] and fsync'd,
//! so a writeback error since start is reported (and answered 4xx), never
//! lost. Leftovers (temporary files, bodies without an envelope) older
//! than 36 hours are removed at open and by [`Spool::clean_tmp`]: younger
//! ones may belong to a write in progress in another process (the daemon,
//! while `postern queue` opens the spool).

use crate::maildir::{fsync, remove_old_files, test_syncs_skipped, TMP_MAX_AGE};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The most recipients one queued message may have.
pub const MAX_RCPTS: usize = 10_000;
/// The largest envelope file read.
const MAX_ENV: u64 = 4 << 20;

/// Where a recipient stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RcptStatus {
    /// Not delivered yet.
    Pending,
    /// Handed to the smarthost.
    Delivered,
    /// Failed for good (bounced).
    Failed,
}

impl RcptStatus {
    fn as_str(self) -> &'static str {
        match self {
            RcptStatus::Pending => "pending",
            RcptStatus::Delivered => "delivered",
            RcptStatus::Failed => "failed",
        }
    }
}

/// One recipient of a queued message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedRcpt {
    /// The address.
    pub address: String,
    /// Its state.
    pub status: RcptStatus,
    /// The last reply about it ("" before the first attempt).
    pub last_reply: String,
    /// For a local copy kept for retry: the mailbox folder it goes to
    /// (like `Junk`); `None` for INBOX (and for every remote recipient).
    pub folder: Option<String>,
}

/// A queued message's envelope and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Queue id (letters and digits only).
    pub id: String,
    /// Reverse path; empty for `<>` (a bounce).
    pub from: String,
    /// When it was queued (Unix seconds).
    pub created: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When to try next (Unix seconds).
    pub next_attempt: u64,
    /// Recipients.
    pub rcpts: Vec<QueuedRcpt>,
}

impl QueuedMessage {
    /// A message just queued at `now`: every recipient pending, no attempt
    /// yet, the first one due at once.
    pub fn new(id: &str, from: &str, rcpts: &[String], now: u64) -> Self {
        QueuedMessage {
            id: id.to_owned(),
            from: from.to_owned(),
            created: now,
            attempts: 0,
            next_attempt: now,
            rcpts: rcpts
                .iter()
                .map(|a| QueuedRcpt {
                    address: a.clone(),
                    status: RcptStatus::Pending,
                    last_reply: String::new(),
                    folder: None,
                })
                .collect(),
        }
    }

    /// [`Self::new`] with each recipient's folder (`folders[i]` for
    /// `rcpts[i]`; a missing entry is INBOX).
    pub fn with_folders(
        id: &str,
        from: &str,
        rcpts: &[String],
        folders: &[Option<String>],
        now: u64,
    ) -> Self {
        let mut m = Self::new(id, from, rcpts, now);
        for (r, f) in m.rcpts.iter_mut().zip(folders) {
            r.folder.clone_from(f);
        }
        m
    }

    /// Recipients still to deliver.
    pub fn pending(&self) -> impl Iterator<Item = &QueuedRcpt> {
        self.rcpts
            .iter()
            .filter(|r| r.status == RcptStatus::Pending)
    }
}

/// Queue figures for `postern queue list` and the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages queued.
    pub size: usize,
    /// Age of the oldest, in seconds.
    pub oldest_age: u64,
    /// Messages that have had at least one failed attempt.
    pub deferred: usize,
}

/// The spool folder.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    /// The folder, open from start: its fsync makes renames durable and
    /// reports writeback errors since it was opened.
    dir_fd: Arc<File>,
}

/// Whether `id` is a valid queue id (so it can name files safely).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Why the spool could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The queue id is empty, too long, or not letters and digits.
    #[error("bad queue id {0:?}")]
    BadId(String),
    /// A message needs between 1 and 10,000 recipients.
    #[error("bad recipient count {0} (1 to {MAX_RCPTS})")]
    RecipientCount(usize),
    /// The spool folder could not be created or opened.
    #[error("cannot open the queue folder {path}: {source}")]
    OpenFolder {
        /// The folder.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A temporary file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Writing a file failed (disk full, quota).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An fsync failed: what was written may not be on disk.
    #[error("cannot sync {path}: {source}")]
    Sync {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Renaming a temporary file to its final name failed.
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        /// The temporary name.
        from: PathBuf,
        /// The final name.
        to: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Reading a file or the folder failed (a missing message included).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Removing a message's files failed.
    #[error("cannot remove {path}: {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An envelope file is larger than any this spool writes.
    #[error("{path}: envelope file of {size} bytes is too large")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// An envelope file does not parse.
    #[error("{path}: {reason}")]
    BadEnvelope {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        reason: EnvelopeError,
    },
}

/// What is wrong in an envelope (`.env`) file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The first line is not `postern-queue 1`.
    #[error("not a postern queue file")]
    NotQueueFile,
    /// A field is missing at the end.
    #[error("missing {0}")]
    Missing(&'static str),
    /// Another field stands where one was expected.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        /// The field expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A number field does not parse.
    #[error("bad {0}")]
    BadNumber(&'static str),
    /// A recipient's status is not pending, delivered or failed.
    #[error("bad status {0}")]
    BadStatus(String),
    /// More than 10,000 recipients.
    #[error("too many recipients")]
    TooManyRecipients,
    /// The id is not valid, or there is no recipient.
    #[error("bad id or no recipients")]
    BadIdOrNoRecipients,
}

impl SpoolError {
    /// The kind of the underlying system error (`InvalidInput` for a bad
    /// id or recipient count, `InvalidData` for a bad envelope file).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            SpoolError::BadId(_) | SpoolError::RecipientCount(_) => io::ErrorKind::InvalidInput,
            SpoolError::OpenFolder { source, .. }
            | SpoolError::Create { source, .. }
            | SpoolError::Write { source, .. }
            | SpoolError::Sync { source, .. }
            | SpoolError::Rename { source, .. }
            | SpoolError::Read { source, .. }
            | SpoolError::Remove { source, .. } => source.kind(),
            SpoolError::TooLarge { .. } | SpoolError::BadEnvelope { .. } => {
                io::ErrorKind::InvalidData
            }
        }
    }
}

impl From<SpoolError> for io::Error {
    fn from(e: SpoolError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

fn checked_id(id: &str) -> Result<(), SpoolError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(SpoolError::BadId(id.to_owned()))
    }
}

impl Spool {
    /// Opens (creating) the spool, keeps its folder open for syncs, and
    /// removes leftovers of interrupted writes older than 36 hours.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let dir = dir.into();
        test_syncs_skipped();
        let opened = fs::create_dir_all(&dir).and_then(|()| File::open(&dir));
        let dir_fd = match opened {
            Ok(f) => Arc::new(f),
            Err(source) => return Err(SpoolError::OpenFolder { path: dir, source }),
        };
        let spool = Self { dir, dir_fd };
        spool.clean_tmp(TMP_MAX_AGE, SystemTime::now());
        Ok(spool)
    }

    /// Removes leftovers of interrupted writes older than `max_age` (at
    /// `now`): temporary files, and message bodies without an envelope.
    /// Returns how many were removed.
    pub fn clean_tmp(&self, max_age: Duration, now: SystemTime) -> usize {
        remove_old_files(&self.dir, max_age, now, |name| {
            name.starts_with("tmp.")
                || name
                    .strip_suffix(".msg")
                    .is_some_and(|id| !self.dir.join(format!("{id}.env")).exists())
        })
    }

    fn sync_folder(&self) -> Result<(), SpoolError> {
        fsync(&self.dir_fd).map_err(|source| SpoolError::Sync {
            path: self.dir.clone(),
            source,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_atomic(&self, name: &str, bytes: &[u8], sync_folder: bool) -> Result<(), SpoolError> {
        // Unique per writer: the daemon and `postern queue` may rewrite the
        // same entry at once, and must not rename each other's file away.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("tmp.{name}.{}.{n}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|source| SpoolError::Create {
                    path: tmp.clone(),
                    source,
                })?;
            f.write_all(bytes).map_err(|source| SpoolError::Write {
                path: tmp.clone(),
                source,
            })?;
            fsync(&f).map_err(|source| SpoolError::Sync {
                path: tmp.clone(),
                source,
            })?;
            let to = self.dir.join(name);
            fs::rename(&tmp, &to).map_err(|source| SpoolError::Rename {
                from: tmp.clone(),
                to,
                source,
            })?;
            if sync_folder {
                self.sync_folder()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Queues a message durably (both files and the folder fsync'd).
    pub fn enqueue(
        &self,
        id: &str,
        from: &str,
        rcpts: &[String],
        data: &[u8],
        now: u64,
    ) -> Result<QueuedMessage, SpoolError> {
        self.enqueue_with_folders(id, from, rcpts, &[], data, now)
    }

    /// [`Self::enqueue`] with each recipient's mailbox folder (local copies
    /// kept for retry; see [`QueuedMessage::with_folders`]).
    pub fn enqueue_with_folders(
        &self,
        id: &str,
        from: &str,
        rcpts: &[String],
        folders: &[Option<String>],
        data: &[u8],
        now: u64,
    ) -> Result<QueuedMessage, SpoolError> {
        checked_id(id)?;
        if rcpts.is_empty() || rcpts.len() > MAX_RCPTS {
            return Err(SpoolError::RecipientCount(rcpts.len()));
        }
        let msg = QueuedMessage::with_folders(id, from, rcpts, folders, now);
        self.write_atomic(&format!("{id}.msg"), data, false)?;
        if let Err(e) = self.write_atomic(&format!("{id}.env"), encode(&msg).as_bytes(), true) {
            // The envelope may be in place already (the folder's sync is
            // what failed): an entry the caller was told failed must not
            // stay, least of all without its message.
            let _ = fs::remove_file(self.dir.join(format!("{id}.env")));
            let _ = fs::remove_file(self.dir.join(format!("{id}.msg")));
            return Err(e);
        }
        Ok(msg)
    }

    /// Rewrites a message's state durably.
    pub fn update(&self, msg: &QueuedMessage) -> Result<(), SpoolError> {
        checked_id(&msg.id)?;
        self.write_atomic(&format!("{}.env", msg.id), encode(msg).as_bytes(), true)
    }

    /// Runs `f` holding the spool's lock (`.lock`, an advisory lock that
    /// `postern queue` and the daemon both take for a read-modify-write
    /// of one message's state).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, SpoolError>) -> Result<T, SpoolError> {
        let path = self.dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| SpoolError::Create {
                path: path.clone(),
                source,
            })?;
        lock.lock()
            .map_err(|source| SpoolError::Write { path, source })?;
        let r = f();
        // Closing the file gives the lock back as well.
        let _ = lock.unlock();
        r
    }

    /// Writes the state a worker settled on after an attempt, keeping what
    /// someone else changed meanwhile: a `next_attempt` other than the one
    /// the worker loaded (`postern queue retry`) stays, and a message
    /// removed meanwhile (`postern queue delete`) stays removed.
    pub fn settle(&self, msg: &QueuedMessage, loaded_next_attempt: u64) -> Result<(), SpoolError> {
        checked_id(&msg.id)?;
        self.locked(|| {
            let current = match self.load(&msg.id) {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            let mut settled = msg.clone();
            if current.next_attempt != loaded_next_attempt {
                settled.next_attempt = current.next_attempt;
            }
            self.update(&settled)
        })
    }

    /// Makes a message due now (`postern queue retry`), in turn with the
    /// worker's [`Self::settle`].
    pub fn retry_now(&self, id: &str) -> Result<(), SpoolError> {
        checked_id(id)?;
        self.locked(|| {
            let mut m = self.load(id)?;
            m.next_attempt = 0;
            self.update(&m)
        })
    }

    /// A message's state.
    pub fn load(&self, id: &str) -> Result<QueuedMessage, SpoolError> {
        checked_id(id)?;
        let path = self.dir.join(format!("{id}.env"));
        let read = |source| SpoolError::Read {
            path: path.clone(),
            source,
        };
        let size = fs::metadata(&path).map_err(read)?.len();
        if size > MAX_ENV {
            return Err(SpoolError::TooLarge { path, size });
        }
        let text = fs::read_to_string(&path).map_err(read)?;
        decode(&text).map_err(|reason| SpoolError::BadEnvelope { path, reason })
    }

    /// A message's bytes.
    pub fn data(&self, id: &str) -> Result<Vec<u8>, SpoolError> {
        checked_id(id)?;
        let path = self.dir.join(format!("{id}.msg"));
        fs::read(&path).map_err(|source| SpoolError::Read { path, source })
    }

    /// Removes a message (both files).
    pub fn remove(&self, id: &str) -> Result<(), SpoolError> {
        checked_id(id)?;
        let env = self.dir.join(format!("{id}.env"));
        fs::remove_file(&env).map_err(|source| SpoolError::Remove { path: env, source })?;
        let _ = fs::remove_file(self.dir.join(format!("{id}.msg")));
        self.sync_folder()
    }

    /// Every queued message, oldest first. Unreadable envelopes are skipped
    /// (and reported in the second list).
    pub fn list(&self) -> Result<(Vec<QueuedMessage>, Vec<String>), SpoolError> {
        let mut ok = Vec::new();
        let mut broken = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|source| SpoolError::Read {
            path: self.dir.clone(),
            source,
        })?;
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".env") else {
                continue;
            };
            if name.starts_with("tmp.") {
                continue;
            }
            match self.load(id) {
                Ok(m) => ok.push(m),
                Err(err) => broken.push(format!("{id}: {err}")),
            }
        }
        ok.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok((ok, broken))
    }

    /// Figures for monitoring.
    pub fn stats(&self, now: u64) -> Result<QueueStats, SpoolError> {
        let (msgs, _) = self.list()?;
        Ok(QueueStats {
            size: msgs.len(),
            oldest_age: msgs
                .iter()
                .map(|m| now.saturating_sub(m.created))
                .max()
                .unwrap_or(0),
            deferred: msgs.iter().filter(|m| m.attempts > 0).count(),
        })
    }
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn encode(m: &QueuedMessage) -> String {
    let mut s = String::from("postern-queue 1\n");
    let _ = writeln!(s, "id {}", m.id);
    let _ = writeln!(s, "from {}", clean(&m.from));
    let _ = writeln!(s, "created {}", m.created);
    let _ = writeln!(s, "attempts {}", m.attempts);
    let _ = writeln!(s, "next {}", m.next_attempt);
    for r in &m.rcpts {
        let _ = writeln!(s, "rcpt {}", r.status.as_str());
        let _ = writeln!(s, "addr {}", clean(&r.address));
        let _ = writeln!(s, "reply {}", clean(&r.last_reply));
        // Only when set: files without the line (written before it
        // existed) read as INBOX.
        if let Some(f) = &r.folder {
            let _ = writeln!(s, "folder {}", clean(f));
        }
    }
    s
}

fn decode(text: &str) -> Result<QueuedMessage, EnvelopeError> {
    let mut lines = text.lines().peekable();
    if lines.next() != Some("postern-queue 1") {
        return Err(EnvelopeError::NotQueueFile);
    }
    let mut field = |name| next_field(&mut lines, name);
    let num = |v: String, what: &'static str| {
        v.parse::<u64>().map_err(|_| EnvelopeError::BadNumber(what))
    };
    let id = field("id")?;
    let from = field("from")?;
    let created = num(field("created")?, "created")?;
    let attempts = u32::try_from(num(field("attempts")?, "attempts")?)
        .map_err(|_| EnvelopeError::BadNumber("attempts"))?;
    let next_attempt = num(field("next")?, "next")?;
    let mut rcpts = Vec::new();
    while let Ok(status) = next_field(&mut lines, "rcpt") {
        let status = match status.as_str() {
            "pending" => RcptStatus::Pending,
            "delivered" => RcptStatus::Delivered,
            "failed" => RcptStatus::Failed,
            other => return Err(EnvelopeError::BadStatus(other.chars().take(64).collect())),
        };
        let address = next_field(&mut lines, "addr")?;
        let last_reply = next_field(&mut lines, "reply")?;
        // Optional (absent from older files): the folder of a local copy.
        let folder = if lines.peek().is_some_and(|l| l.starts_with("folder ")) {
            Some(next_field(&mut lines, "folder")?)
        } else {
            None
        };
        rcpts.push(QueuedRcpt {
            address,
            status,
            last_reply,
            folder,
        });
        if rcpts.len() > MAX_RCPTS {
            return Err(EnvelopeError::TooManyRecipients);
        }
    }
    if !valid_id(&id) || rcpts.is_empty() {
        return Err(EnvelopeError::BadIdOrNoRecipients);
    }
    Ok(QueuedMessage {
        id,
        from,
        created,
        attempts,
        next_attempt,
        rcpts,
    })
}

/// The value of the next line, which must be the field `name`.
fn next_field<'a>(
    lines: &mut impl Iterator<Item = &'a str>,
    name: &'static str,
) -> Result<String, EnvelopeError> {
    let l = lines.next().ok_or(EnvelopeError::Missing(name))?;
    let (k, v) = l.split_once(' ').unwrap_or((l, ""));
    if k != name {
        return Err(EnvelopeError::Unexpected {
            expected: name,
            found: k.chars().take(64).collect(),
        });
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_update_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("postern-spool-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Spool::open(&dir).unwrap();
        let mut m = s
            .enqueue(
                "Q1",
                "alice@example.com",
                &["a@x.example".into(), "b@y.example".into()],
                b"Subject: x\r\n\r\nhi\r\n",
                100,
            )
            .unwrap();
        m.rcpts[0].status = RcptStatus::Delivered;
        m.rcpts[0].last_reply = "250 2.0.0 ok\nqueued".into();
        m.attempts = 1;
        m.next_attempt = 400;
        s.update(&m).unwrap();
        // Leftovers of an interrupted write vanish at the next open once
        // older than 36 hours; younger ones may be a write in progress.
        let old = SystemTime::now() - TMP_MAX_AGE - Duration::from_secs(60);
        for (name, mtime) in [
            ("tmp.Q2.env", Some(old)),
            ("Q3.msg", Some(old)),
            ("tmp.Q4.env", None),
            ("Q5.msg", None),
        ] {
            let f = File::create(dir.join(name)).unwrap();
            if let Some(t) = mtime {
                f.set_modified(t).unwrap();
            }
        }
        let s = Spool::open(&dir).unwrap();
        assert!(dir.join("tmp.Q4.env").exists() && dir.join("Q5.msg").exists());
        assert_eq!(s.clean_tmp(TMP_MAX_AGE, SystemTime::now()), 0);
        assert_eq!(
            s.clean_tmp(Duration::ZERO, SystemTime::now() + Duration::from_secs(1)),
            2
        );
        let (all, broken) = s.list().unwrap();
        assert!(broken.is_empty());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].rcpts[0].last_reply, "250 2.0.0 ok queued");
        assert_eq!(all[0].pending().count(), 1);
        assert_eq!(s.data("Q1").unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert!(!dir.join("Q3.msg").exists() && !dir.join("tmp.Q2.env").exists());
        assert_eq!(
            s.stats(160).unwrap(),
            QueueStats {
                size: 1,
                oldest_age: 60,
                deferred: 1
            }
        );
        assert!(matches!(s.load("../etc/passwd"), Err(SpoolError::BadId(_))));
        fs::write(dir.join("Q6.env"), b"postern-queue 1\nid Q6\nfrom\n").unwrap();
        assert!(matches!(
            s.load("Q6"),
            Err(SpoolError::BadEnvelope {
                reason: EnvelopeError::Missing("created"),
                ..
            })
        ));
        let io: io::Error = s.load("Q7").unwrap_err().into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        fs::remove_file(dir.join("Q6.env")).unwrap();
        s.remove("Q1").unwrap();
        assert!(s.list().unwrap().0.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_local_copy_keeps_its_folder_and_old_files_read_as_inbox() {
        let dir = std::env::temp_dir().join(format!("postern-spool-folder-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Spool::open(&dir).unwrap();
        let m = s
            .enqueue_with_folders(
                "F1",
                "a@x.example",
                &["alice@example.com".into(), "bob@example.com".into()],
                &[Some("Junk".into()), None],
                b"x\r\n",
                5,
            )
            .unwrap();
        let back = s.load("F1").unwrap();
        assert_eq!(back, m);
        assert_eq!(back.rcpts[0].folder.as_deref(), Some("Junk"));
        assert_eq!(back.rcpts[1].folder, None);
        let mut upd = back.clone();
        upd.attempts = 1;
        s.update(&upd).unwrap();
        assert_eq!(
            s.load("F1").unwrap().rcpts[0].folder.as_deref(),
            Some("Junk")
        );
        // A file written before folders were kept: every copy to INBOX.
        fs::write(
            dir.join("F2.env"),
            "postern-queue 1\nid F2\nfrom a@x.example\ncreated 1\nattempts 0\nnext 1\n\
             rcpt pending\naddr alice@example.com\nreply \n\
             rcpt pending\naddr bob@example.com\nreply \n",
        )
        .unwrap();
        let old = s.load("F2").unwrap();
        assert_eq!(old.rcpts.len(), 2);
        assert!(old.rcpts.iter().all(|r| r.folder.is_none()));
        // A folder line where a recipient is due is damage, not skipped.
        fs::write(
            dir.join("F3.env"),
            "postern-queue 1\nid F3\nfrom\ncreated 1\nattempts 0\nnext 1\nfolder Junk\n",
        )
        .unwrap();
        assert!(s.load("F3").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
