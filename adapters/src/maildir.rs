//! Maildir++ delivery (<https://cr.yp.to/proto/maildir.html>), crash-safe.
//!
//! A message is written to `tmp/`, fsync'd, renamed into `new/`, and the
//! `new/` directory is fsync'd, all before [`Maildir::deliver`] returns: a
//! kill -9 or a power cut after that cannot lose it, and nothing
//! half-written ever appears in `new/`. Every sync is made on a descriptor
//! opened before the writes it covers (the file's own, and the directory's
//! opened before the rename), since Linux reports a writeback error only to
//! descriptors open when it happened. Leftovers in `tmp/` older than 36
//! hours (the Maildir convention) are removed by [`Maildir::clean_tmp`]. Files are stored with LF line ends,
//! as Postfix and Dovecot store them; the name carries the file size
//! (`S=`) and the CRLF size (`W=`), as Dovecot's do.

use crate::directory::Mailbox;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old a file in `tmp/` must be before it counts as the leftover of an
/// interrupted delivery and is removed (the Maildir convention: 36 hours).
pub const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

/// The test-only environment variable that turns every sync of the
/// Maildir store and the spool into a no-op, so that the crash-consistency
/// test can show its checker catches missing syncs. Never a setting: with
/// it, acknowledged mail is not durable. Read once, at the first use.
pub const TEST_SKIP_SYNC_ENV: &str = "POSTERN_TEST_SKIP_SYNC";

/// Whether [`TEST_SKIP_SYNC_ENV`] is `1` (read once; a loud warning on
/// stderr when it is).
pub fn test_syncs_skipped() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| {
        let skip = std::env::var_os(TEST_SKIP_SYNC_ENV).is_some_and(|v| v == "1");
        if skip {
            eprintln!(
                "WARNING: {TEST_SKIP_SYNC_ENV}=1: every fsync and syncfs is SKIPPED; \
                 acknowledged mail is NOT durable. This switch exists for the \
                 crash-consistency test only."
            );
        }
        skip
    })
}

/// fsyncs an open file or directory (unless the test switch skips syncs).
pub fn fsync(f: &File) -> io::Result<()> {
    if test_syncs_skipped() {
        return Ok(());
    }
    f.sync_all()
}

/// Why a delivery into the Maildir tree failed. Every cause answers 4xx
/// upstream: nothing is acknowledged unless it is durable.
#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    /// A mailbox folder (or its `maildirfolder` marker) could not be created.
    #[error("cannot create folder {path}: {source}")]
    CreateFolder {
        /// The folder or marker.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The message file could not be created in `tmp/`.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Writing the message failed (disk full, quota).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A directory could not be opened to sync it.
    #[error("cannot open directory {path}: {source}")]
    OpenDir {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An fsync or syncfs failed (a writeback error): the data may not be
    /// on disk.
    #[error("cannot sync {path}: {source}")]
    Sync {
        /// The file, directory or file system root.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Moving the file from `tmp/` into `new/` failed.
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        /// The name in `tmp/`.
        from: PathBuf,
        /// The name in `new/`.
        to: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Reading the tree (to look for leftovers) failed.
    #[error("cannot read {path}: {source}")]
    Scan {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A thread panicked while holding the kept sync descriptor.
    #[error("the sync descriptor's lock is poisoned")]
    Poisoned,
}

impl MaildirError {
    /// The kind of the underlying system error (`Other` when there is none).
    pub fn kind(&self) -> io::ErrorKind {
        match self.source_io() {
            Some(e) => e.kind(),
            None => io::ErrorKind::Other,
        }
    }

    fn source_io(&self) -> Option<&io::Error> {
        match self {
            MaildirError::CreateFolder { source, .. }
            | MaildirError::Create { source, .. }
            | MaildirError::Write { source, .. }
            | MaildirError::OpenDir { source, .. }
            | MaildirError::Sync { source, .. }
            | MaildirError::Rename { source, .. }
            | MaildirError::Scan { source, .. } => Some(source),
            MaildirError::Poisoned => None,
        }
    }

    /// The same error again (one failed sync fails every file it covered).
    fn replicate(&self) -> Self {
        let copy = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            MaildirError::CreateFolder { path, source } => MaildirError::CreateFolder {
                path: path.clone(),
                source: copy(source),
            },
            MaildirError::Create { path, source } => MaildirError::Create {
                path: path.clone(),
                source: copy(source),
            },
            MaildirError::Write { path, source } => MaildirError::Write {
                path: path.clone(),
                source: copy(source),
            },
            MaildirError::OpenDir { path, source } => MaildirError::OpenDir {
                path: path.clone(),
                source: copy(source),
            },
            MaildirError::Sync { path, source } => MaildirError::Sync {
                path: path.clone(),
                source: copy(source),
            },
            MaildirError::Rename { from, to, source } => MaildirError::Rename {
                from: from.clone(),
                to: to.clone(),
                source: copy(source),
            },
            MaildirError::Scan { path, source } => MaildirError::Scan {
                path: path.clone(),
                source: copy(source),
            },
            MaildirError::Poisoned => MaildirError::Poisoned,
        }
    }
}

impl From<MaildirError> for io::Error {
    fn from(e: MaildirError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

fn open_dir(path: &Path) -> Result<File, MaildirError> {
    File::open(path).map_err(|source| MaildirError::OpenDir {
        path: path.to_owned(),
        source,
    })
}

fn fsync_at(f: &File, path: &Path) -> Result<(), MaildirError> {
    fsync(f).map_err(|source| MaildirError::Sync {
        path: path.to_owned(),
        source,
    })
}

/// The Maildir folders every account gets, with their IMAP special use.
pub const DEFAULT_FOLDERS: &[&str] = &[".Drafts", ".Sent", ".Junk", ".Trash"];

/// A Maildir++ tree: `<root>/<domain>/<user>/{cur,new,tmp}`.
#[derive(Debug)]
pub struct Maildir {
    root: PathBuf,
    host: String,
    counter: AtomicU64,
    /// Mailboxes known to exist (saves three stats per delivery).
    known: Mutex<HashSet<Mailbox>>,
    /// Held while an account's folders are made, so that a second thread
    /// delivering to the same new account waits for all of them (it used to
    /// see INBOX made and go on before Drafts or Junk existed).
    creating: Mutex<()>,
    /// Told of every folder a delivery or the IMAP store changed.
    on_change: OnceLock<ChangeHook>,
}

/// A callback told of each changed folder directory (IDLE wakes on it).
pub struct ChangeHook(pub Box<dyn Fn(&Path) + Send + Sync>);

impl std::fmt::Debug for ChangeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeHook")
    }
}

/// One message for one mailbox, for [`Maildir::deliver_batch`].
#[derive(Clone, Debug)]
pub struct DeliveryJob {
    /// Where.
    pub mailbox: Mailbox,
    /// Trace header lines to put first (CRLF).
    pub prefix: Vec<u8>,
    /// The message (CRLF).
    pub message: Arc<Vec<u8>>,
    /// A folder's name (`Junk`), `None` for INBOX.
    pub folder: Option<String>,
}

impl Maildir {
    /// A tree under `root`; `hostname` goes into file names.
    pub fn new(root: impl Into<PathBuf>, hostname: &str) -> Self {
        test_syncs_skipped();
        let host = hostname.replace('/', "\\057").replace(':', "\\072");
        let root: PathBuf = root.into();
        Self {
            root,
            host,
            counter: AtomicU64::new(0),
            known: Mutex::new(HashSet::new()),
            creating: Mutex::new(()),
            on_change: OnceLock::new(),
        }
    }

    /// Sets the hook told of changed folders (once; later calls are ignored).
    pub fn set_on_change(&self, hook: ChangeHook) {
        let _ = self.on_change.set(hook);
    }

    /// Tells the hook a folder changed.
    pub fn changed(&self, folder: &Path) {
        if let Some(h) = self.on_change.get() {
            (h.0)(folder);
        }
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of a mailbox's INBOX.
    pub fn mailbox_path(&self, mb: &Mailbox) -> PathBuf {
        self.root.join(&mb.domain).join(&mb.user)
    }

    /// Where `mb` lives if it is known to exist already (ensured before,
    /// by this process), without touching the disk.
    pub fn known(&self, mb: &Mailbox) -> Option<PathBuf> {
        let known = self.known.lock().map(|k| k.contains(mb)).unwrap_or(false);
        known.then(|| self.mailbox_path(mb))
    }

    /// Creates the mailbox (INBOX and the default folders) if missing,
    /// fsyncing each new directory's parent.
    pub fn ensure(&self, mb: &Mailbox) -> Result<PathBuf, MaildirError> {
        let inbox = self.mailbox_path(mb);
        if self.is_known(mb) {
            return Ok(inbox);
        }
        // One account at a time: every folder exists before any thread
        // treats the account as known. A poisoned lock only means another
        // thread panicked while creating; the steps below are idempotent.
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_known(mb) {
            return Ok(inbox);
        }
        // An account made before (by us or by Dovecot) is taken as it is.
        let complete = ["cur", "new", "tmp"].iter().all(|d| inbox.join(d).is_dir());
        if !complete {
            self.create_account(mb, &inbox)?;
        }
        if let Ok(mut k) = self.known.lock() {
            k.insert(mb.clone());
        }
        Ok(inbox)
    }

    fn is_known(&self, mb: &Mailbox) -> bool {
        self.known.lock().map(|k| k.contains(mb)).unwrap_or(false)
    }

    /// Makes the account's INBOX and default folders, each durable; the
    /// ones that exist already (a Dovecot volume) are left as they are.
    fn create_account(&self, mb: &Mailbox, inbox: &Path) -> Result<(), MaildirError> {
        if !self.root.is_dir() {
            fs::create_dir_all(&self.root).map_err(|source| MaildirError::CreateFolder {
                path: self.root.clone(),
                source,
            })?;
        }
        create_dir_synced(&self.root.join(&mb.domain))?;
        create_dir_synced(inbox)?;
        for sub in ["cur", "new", "tmp"] {
            create_dir_synced(&inbox.join(sub))?;
        }
        for folder in DEFAULT_FOLDERS {
            create_folder(&inbox.join(folder))?;
        }
        Ok(())
    }

    /// The Maildir++ folder `name` (one level, like `Junk`) of the mailbox
    /// at `inbox`, created if missing. A name with `/`, a leading dot or a
    /// control character is refused.
    fn ensure_folder(&self, inbox: &Path, name: &str) -> Result<PathBuf, MaildirError> {
        let bad = name.is_empty()
            || name.starts_with('.')
            || name.contains(['/', '\\'])
            || name.chars().any(char::is_control);
        let f = inbox.join(format!(".{name}"));
        if bad {
            return Err(MaildirError::CreateFolder {
                path: f,
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad folder name"),
            });
        }
        if f.join("new").is_dir() && f.join("tmp").is_dir() {
            return Ok(f);
        }
        create_folder(&f)?;
        Ok(f)
    }

    /// Delivers `prefix` (header lines, CRLF) and `message` (CRLF) to the
    /// mailbox's `new/`, durably. Returns the file name.
    pub fn deliver(
        &self,
        mb: &Mailbox,
        prefix: &[u8],
        message: &[u8],
    ) -> Result<String, MaildirError> {
        let inbox = self.ensure(mb)?;
        let mut body = Vec::with_capacity(prefix.len() + message.len());
        crlf_to_lf(&mut body, prefix);
        crlf_to_lf(&mut body, message);
        let wire_size = prefix.len() + message.len();
        let name = self.unique_name(body.len(), wire_size);
        let tmp = inbox.join("tmp").join(&name);
        let result = (|| {
            // Opened before the rename, so its fsync reports any error since.
            let new_dir = inbox.join("new");
            let dir = open_dir(&new_dir)?;
            let mut f = create_tmp(&tmp)?;
            f.write_all(&body).map_err(|source| MaildirError::Write {
                path: tmp.clone(),
                source,
            })?;
            fsync_at(&f, &tmp)?;
            drop(f);
            rename(&tmp, &new_dir.join(&name))?;
            fsync_at(&dir, &new_dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.changed(&inbox);
        Ok(name)
    }

    /// Delivers several messages as one group commit: every file is written
    /// to `tmp/`, the files are fsync'd at once (the data is durable), every
    /// file is renamed into `new/`, and each `new/` directory touched is
    /// fsync'd (the names are durable). The fsyncs of one step run on
    /// several threads at once, so the file system commits them together
    /// (ext4 and XFS join concurrent fsyncs into one journal commit) without
    /// flushing anyone else's dirty data, as a `syncfs` would. One writer
    /// doing this in turn also avoids the directory-lock fights of many
    /// threads creating files in one `tmp/`. A failed sync fails the files
    /// it covered, and they are removed: nothing acknowledged is lost,
    /// nothing half-written is left in `new/`.
    pub fn deliver_batch(&self, jobs: &[DeliveryJob]) -> Vec<Result<String, MaildirError>> {
        let mut results: Vec<Result<String, MaildirError>> = Vec::with_capacity(jobs.len());
        let mut staged: Vec<Staged> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let r = (|| {
                let mut inbox = self.ensure(&job.mailbox)?;
                if let Some(folder) = &job.folder {
                    inbox = self.ensure_folder(&inbox, folder)?;
                }
                let mut body = Vec::with_capacity(job.prefix.len() + job.message.len());
                crlf_to_lf(&mut body, &job.prefix);
                crlf_to_lf(&mut body, &job.message);
                let name = self.unique_name(body.len(), job.prefix.len() + job.message.len());
                let tmp = inbox.join("tmp").join(&name);
                let mut f = create_tmp(&tmp)?;
                if let Err(source) = f.write_all(&body) {
                    let _ = fs::remove_file(&tmp);
                    return Err(MaildirError::Write { path: tmp, source });
                }
                staged.push(Staged {
                    job: i,
                    new: inbox.join("new").join(&name),
                    tmp,
                    file: f,
                });
                Ok(name)
            })();
            results.push(r);
        }
        // The data: every file's own descriptor, the one that wrote it.
        let synced = sync_all(staged.iter().map(|s| (&s.file, s.tmp.as_path())));
        let mut written = Vec::with_capacity(staged.len());
        for (s, r) in staged.into_iter().zip(synced) {
            match r {
                Ok(()) => written.push(s),
                Err(e) => {
                    let _ = fs::remove_file(&s.tmp);
                    results[s.job] = Err(e);
                }
            }
        }
        // The names: each `new/` opened before the renames into it.
        let mut dirs: Vec<(PathBuf, Result<File, MaildirError>)> = Vec::new();
        for s in &written {
            if let Some(d) = s.new.parent() {
                if !dirs.iter().any(|(p, _)| p == d) {
                    dirs.push((d.to_owned(), open_dir(d)));
                }
            }
        }
        let mut renamed = Vec::with_capacity(written.len());
        for s in written {
            let dir_ok = dirs
                .iter()
                .find(|(p, _)| Some(p.as_path()) == s.new.parent())
                .map(|(_, d)| d.as_ref().map(|_| ()).map_err(MaildirError::replicate));
            let r = match dir_ok {
                Some(Err(e)) => Err(e),
                _ => rename(&s.tmp, &s.new),
            };
            match r {
                Ok(()) => renamed.push(s),
                Err(e) => {
                    let _ = fs::remove_file(&s.tmp);
                    results[s.job] = Err(e);
                }
            }
        }
        let open: Vec<(&File, &Path)> = dirs
            .iter()
            .filter_map(|(p, d)| d.as_ref().ok().map(|d| (d, p.as_path())))
            .collect();
        let dir_results = sync_all(open.iter().copied());
        for ((_, path), r) in open.iter().zip(dir_results) {
            let Err(e) = r else { continue };
            for s in renamed.iter().filter(|s| s.new.parent() == Some(*path)) {
                let _ = fs::remove_file(&s.new);
                results[s.job] = Err(e.replicate());
            }
        }
        let mut touched: Vec<&Path> = renamed
            .iter()
            .filter(|s| results[s.job].is_ok())
            .filter_map(|s| s.new.parent().and_then(Path::parent))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for folder in touched {
            self.changed(folder);
        }
        results
    }

    /// Removes files older than `max_age` (at `now`) from every `tmp/` of
    /// the tree (each account's INBOX and folders): leftovers of
    /// deliveries interrupted by a crash. Returns how many were removed.
    /// Folders whose name starts with a dot at the domain level (the
    /// spool's `.postern-queue`) are not Maildirs and are left alone.
    pub fn clean_tmp(&self, max_age: Duration, now: SystemTime) -> Result<usize, MaildirError> {
        let mut removed = 0;
        let domains = match fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(MaildirError::Scan {
                    path: self.root.clone(),
                    source,
                })
            }
        };
        for domain in domains.filter_map(Result::ok) {
            if domain.file_name().to_string_lossy().starts_with('.')
                || !domain.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let Ok(users) = fs::read_dir(domain.path()) else {
                continue;
            };
            for user in users.filter_map(Result::ok) {
                if !user.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let inbox = user.path();
                removed += remove_old_files(&inbox.join("tmp"), max_age, now, |_| true);
                let Ok(folders) = fs::read_dir(&inbox) else {
                    continue;
                };
                for folder in folders.filter_map(Result::ok) {
                    if folder.file_name().to_string_lossy().starts_with('.')
                        && folder.file_type().is_ok_and(|t| t.is_dir())
                    {
                        removed +=
                            remove_old_files(&folder.path().join("tmp"), max_age, now, |_| true);
                    }
                }
            }
        }
        Ok(removed)
    }

    fn unique_name(&self, size: usize, wire_size: usize) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{:06}P{}Q{}.{},S={},W={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            n,
            self.host,
            size,
            wire_size
        )
    }
}

/// Removes the regular files in `dir` older than `max_age` whose name
/// `wanted` accepts; returns how many. A missing `dir` has none.
pub(crate) fn remove_old_files(
    dir: &Path,
    max_age: Duration,
    now: SystemTime,
    wanted: impl Fn(&str) -> bool,
) -> usize {
    let Some(cutoff) = now.checked_sub(max_age) else {
        return 0;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.filter_map(Result::ok) {
        let Ok(meta) = e.metadata() else { continue };
        let old = meta.modified().is_ok_and(|m| m < cutoff);
        if meta.is_file()
            && old
            && wanted(&e.file_name().to_string_lossy())
            && fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

fn create_tmp(tmp: &Path) -> Result<File, MaildirError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|source| MaildirError::Create {
            path: tmp.to_owned(),
            source,
        })
}

fn rename(from: &Path, to: &Path) -> Result<(), MaildirError> {
    fs::rename(from, to).map_err(|source| MaildirError::Rename {
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    })
}

/// Makes the Maildir++ folder `f` (its `cur/`, `new/`, `tmp/` and the
/// empty `maildirfolder` file Dovecot marks folders with), each durable;
/// what exists already is left as it is.
fn create_folder(f: &Path) -> Result<(), MaildirError> {
    create_dir_synced(f)?;
    for sub in ["cur", "new", "tmp"] {
        create_dir_synced(&f.join(sub))?;
    }
    let marker = f.join("maildirfolder");
    if !marker.exists() {
        let dir = open_dir(f)?;
        File::create(&marker).map_err(|source| MaildirError::CreateFolder {
            path: marker.clone(),
            source,
        })?;
        fsync_at(&dir, f)?;
    }
    Ok(())
}

/// A file of a group commit written to `tmp/`, waiting for its sync and
/// its rename into `new/`.
struct Staged {
    job: usize,
    tmp: PathBuf,
    new: PathBuf,
    file: File,
}

/// fsyncs every descriptor on the sync threads (see
/// [`crate::syncpool`]) and answers in the same order.
fn sync_all<'a>(
    files: impl Iterator<Item = (&'a File, &'a Path)>,
) -> Vec<Result<(), MaildirError>> {
    let files: Vec<(&File, &Path)> = files.collect();
    let refs: Vec<&File> = files.iter().map(|(f, _)| *f).collect();
    crate::syncpool::sync_many(&refs)
        .into_iter()
        .zip(&files)
        .map(|(r, (_, p))| {
            r.map_err(|source| MaildirError::Sync {
                path: p.to_path_buf(),
                source,
            })
        })
        .collect()
}

fn create_dir_synced(dir: &Path) -> Result<(), MaildirError> {
    let parent = match dir.parent() {
        Some(p) => Some((open_dir(p)?, p)),
        None => None,
    };
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some((f, p)) = parent {
                fsync_at(&f, p)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(MaildirError::CreateFolder {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// fsyncs a directory so a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fsync(&File::open(dir)?)
}

/// Appends `data` with each CRLF turned into LF.
pub fn crlf_to_lf(out: &mut Vec<u8>, data: &[u8]) {
    let mut start = 0;
    for i in memchr::memmem::find_iter(data, b"\r\n") {
        out.extend_from_slice(&data[start..i]);
        out.push(b'\n');
        start = i + 2;
    }
    out.extend_from_slice(&data[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_tmp_removes_only_old_leftovers() {
        let dir =
            std::env::temp_dir().join(format!("postern-maildir-clean-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let md = Maildir::new(&dir, "mx.example.com");
        let mb = Mailbox {
            domain: "example.com".into(),
            user: "alice".into(),
        };
        let inbox = md.ensure(&mb).unwrap();
        let now = SystemTime::now();
        let old = now - TMP_MAX_AGE - Duration::from_secs(60);
        let young = now - TMP_MAX_AGE + Duration::from_secs(60);
        let put = |path: PathBuf, mtime: SystemTime| {
            let f = File::create(&path).unwrap();
            f.set_modified(mtime).unwrap();
        };
        put(inbox.join("tmp/old-inbox"), old);
        put(inbox.join("tmp/young-inbox"), young);
        put(inbox.join(".Sent/tmp/old-sent"), old);
        put(inbox.join(".Sent/tmp/young-sent"), young);
        put(inbox.join("new/old-but-delivered"), old);
        // Not a Maildir: the spool's folder under the root is left alone.
        fs::create_dir_all(dir.join(".postern-queue/x/tmp")).unwrap();
        put(dir.join(".postern-queue/x/tmp/old"), old);
        assert_eq!(md.clean_tmp(TMP_MAX_AGE, now).unwrap(), 2);
        assert!(!inbox.join("tmp/old-inbox").exists());
        assert!(!inbox.join(".Sent/tmp/old-sent").exists());
        assert!(inbox.join("tmp/young-inbox").exists());
        assert!(inbox.join(".Sent/tmp/young-sent").exists());
        assert!(inbox.join("new/old-but-delivered").exists());
        assert!(dir.join(".postern-queue/x/tmp/old").exists());
        assert_eq!(md.clean_tmp(TMP_MAX_AGE, now).unwrap(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batch_delivers_each_and_reports_each() {
        let dir =
            std::env::temp_dir().join(format!("postern-maildir-batch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let md = Maildir::new(&dir, "mx.example.com");
        let alice = Mailbox {
            domain: "example.com".into(),
            user: "alice".into(),
        };
        let bob = Mailbox {
            domain: "example.com".into(),
            user: "bob".into(),
        };
        let msg = Arc::new(b"Subject: x\r\n\r\nhi\r\n".to_vec());
        // bob's new/ is a file: his delivery fails, alice's do not.
        md.ensure(&bob).unwrap();
        fs::remove_dir(dir.join("example.com/bob/new")).unwrap();
        fs::write(dir.join("example.com/bob/new"), b"x").unwrap();
        let jobs: Vec<DeliveryJob> = [&alice, &bob, &alice]
            .iter()
            .map(|m| DeliveryJob {
                mailbox: (*m).clone(),
                prefix: b"Return-Path: <a@b>\r\n".to_vec(),
                message: msg.clone(),
                folder: None,
            })
            .collect();
        let r = md.deliver_batch(&jobs);
        assert!(r[0].is_ok() && r[1].is_err() && r[2].is_ok(), "{r:?}");
        assert!(matches!(r[1], Err(MaildirError::Rename { .. })), "{r:?}");
        assert_eq!(
            fs::read_dir(dir.join("example.com/alice/new"))
                .unwrap()
                .count(),
            2
        );
        assert_eq!(
            fs::read_dir(dir.join("example.com/bob/tmp"))
                .unwrap()
                .count(),
            0
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn delivers_into_new_with_lf() {
        let dir = std::env::temp_dir().join(format!("postern-maildir-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let md = Maildir::new(&dir, "mx.example.com");
        let mb = Mailbox {
            domain: "example.com".into(),
            user: "alice".into(),
        };
        let name = md
            .deliver(&mb, b"Return-Path: <a@b>\r\n", b"Subject: x\r\n\r\nhi\r\n")
            .unwrap();
        let path = dir.join("example.com/alice/new").join(&name);
        assert_eq!(
            fs::read(&path).unwrap(),
            b"Return-Path: <a@b>\nSubject: x\n\nhi\n"
        );
        assert!(name.ends_with(",S=34,W=38"), "{name}");
        assert!(dir.join("example.com/alice/.Junk/cur").is_dir());
        assert_eq!(
            fs::read_dir(dir.join("example.com/alice/tmp"))
                .unwrap()
                .count(),
            0
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batch_delivers_into_a_folder_and_refuses_bad_names() {
        let dir =
            std::env::temp_dir().join(format!("postern-maildir-folder-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let md = Maildir::new(&dir, "mx.example.com");
        let mb = Mailbox {
            domain: "example.com".into(),
            user: "alice".into(),
        };
        let job = |folder: Option<&str>| DeliveryJob {
            mailbox: mb.clone(),
            prefix: Vec::new(),
            message: Arc::new(b"Subject: x\r\n\r\nhi\r\n".to_vec()),
            folder: folder.map(str::to_owned),
        };
        let r = md.deliver_batch(&[
            job(Some("Junk")),
            job(Some("Quarantine")),
            job(Some("../x")),
        ]);
        assert!(r[0].is_ok() && r[1].is_ok(), "{r:?}");
        assert!(r[2].is_err());
        let count = |f: &str| {
            fs::read_dir(dir.join("example.com/alice").join(f).join("new"))
                .unwrap()
                .count()
        };
        assert_eq!((count(".Junk"), count(".Quarantine"), count("")), (1, 1, 0));
        assert!(dir
            .join("example.com/alice/.Quarantine/maildirfolder")
            .is_file());
        fs::remove_dir_all(&dir).unwrap();
    }
}
