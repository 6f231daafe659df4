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
const MAX_RCPTS: usize = 10_000;
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

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Spool {
    /// Opens (creating) the spool, keeps its folder open for syncs, and
    /// removes leftovers of interrupted writes older than 36 hours.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        test_syncs_skipped();
        fs::create_dir_all(&dir)?;
        let dir_fd = Arc::new(File::open(&dir)?);
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

    fn sync_folder(&self) -> io::Result<()> {
        fsync(&self.dir_fd)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_atomic(&self, name: &str, bytes: &[u8], sync_folder: bool) -> io::Result<()> {
        let tmp = self.dir.join(format!("tmp.{name}"));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(bytes)?;
            fsync(&f)?;
            fs::rename(&tmp, self.dir.join(name))?;
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
    ) -> io::Result<QueuedMessage> {
        if !valid_id(id) {
            return Err(bad(format!("bad queue id {id:?}")));
        }
        if rcpts.is_empty() || rcpts.len() > MAX_RCPTS {
            return Err(bad("bad recipient count"));
        }
        let msg = QueuedMessage {
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
                })
                .collect(),
        };
        self.write_atomic(&format!("{id}.msg"), data, false)?;
        if let Err(e) = self.write_atomic(&format!("{id}.env"), encode(&msg).as_bytes(), true) {
            let _ = fs::remove_file(self.dir.join(format!("{id}.msg")));
            return Err(e);
        }
        Ok(msg)
    }

    /// Rewrites a message's state durably.
    pub fn update(&self, msg: &QueuedMessage) -> io::Result<()> {
        if !valid_id(&msg.id) {
            return Err(bad("bad queue id"));
        }
        self.write_atomic(&format!("{}.env", msg.id), encode(msg).as_bytes(), true)
    }

    /// A message's state.
    pub fn load(&self, id: &str) -> io::Result<QueuedMessage> {
        if !valid_id(id) {
            return Err(bad(format!("bad queue id {id:?}")));
        }
        let path = self.dir.join(format!("{id}.env"));
        if fs::metadata(&path)?.len() > MAX_ENV {
            return Err(bad("envelope file too large"));
        }
        decode(&fs::read_to_string(path)?)
    }

    /// A message's bytes.
    pub fn data(&self, id: &str) -> io::Result<Vec<u8>> {
        if !valid_id(id) {
            return Err(bad(format!("bad queue id {id:?}")));
        }
        fs::read(self.dir.join(format!("{id}.msg")))
    }

    /// Removes a message (both files).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        if !valid_id(id) {
            return Err(bad(format!("bad queue id {id:?}")));
        }
        fs::remove_file(self.dir.join(format!("{id}.env")))?;
        let _ = fs::remove_file(self.dir.join(format!("{id}.msg")));
        self.sync_folder()
    }

    /// Every queued message, oldest first. Unreadable envelopes are skipped
    /// (and reported in the second list).
    pub fn list(&self) -> io::Result<(Vec<QueuedMessage>, Vec<String>)> {
        let mut ok = Vec::new();
        let mut broken = Vec::new();
        for e in fs::read_dir(&self.dir)?.filter_map(Result::ok) {
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
    pub fn stats(&self, now: u64) -> io::Result<QueueStats> {
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
    }
    s
}

fn decode(text: &str) -> io::Result<QueuedMessage> {
    let mut lines = text.lines();
    if lines.next() != Some("postern-queue 1") {
        return Err(bad("not a postern queue file"));
    }
    let mut field = |name: &str| -> io::Result<String> {
        let l = lines.next().ok_or_else(|| bad(format!("missing {name}")))?;
        let (k, v) = l.split_once(' ').unwrap_or((l, ""));
        if k != name {
            return Err(bad(format!("expected {name}, found {k}")));
        }
        Ok(v.to_owned())
    };
    let num = |v: String, what: &str| v.parse::<u64>().map_err(|_| bad(format!("bad {what}")));
    let id = field("id")?;
    let from = field("from")?;
    let created = num(field("created")?, "created")?;
    let attempts =
        u32::try_from(num(field("attempts")?, "attempts")?).map_err(|_| bad("bad attempts"))?;
    let next_attempt = num(field("next")?, "next")?;
    let mut rcpts = Vec::new();
    while let Ok(status) = field("rcpt") {
        let status = match status.as_str() {
            "pending" => RcptStatus::Pending,
            "delivered" => RcptStatus::Delivered,
            "failed" => RcptStatus::Failed,
            other => return Err(bad(format!("bad status {other}"))),
        };
        let address = field("addr")?;
        let last_reply = field("reply")?;
        rcpts.push(QueuedRcpt {
            address,
            status,
            last_reply,
        });
        if rcpts.len() > MAX_RCPTS {
            return Err(bad("too many recipients"));
        }
    }
    if !valid_id(&id) || rcpts.is_empty() {
        return Err(bad("bad id or no recipients"));
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
        assert!(s.load("../etc/passwd").is_err());
        s.remove("Q1").unwrap();
        assert!(s.list().unwrap().0.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
