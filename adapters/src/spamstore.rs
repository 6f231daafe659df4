//! The per-user spam classifiers: by default one small file,
//! `postern-spam`, beside each user's Maildir
//! (`<root>/<domain>/<user>/postern-spam`), written crash-safely (a
//! temporary file, fsync, rename, fsync of the folder); with the database
//! backend a table row per user (`pg::spam`), the same bytes. A stored
//! classifier that cannot be read back (torn, damaged, another format) is
//! replaced by an empty classifier and reported once through the warning
//! hook; it never blocks a delivery. Loaded classifiers are kept in a
//! cache bounded in count and in bytes ([`MAX_CACHED_BYTES`]), so a
//! learned move counts for the very next message; a
//! backend shared by several replicas keeps a version per classifier
//! ([`SpamBackend::stamp`]): each use of a cached classifier first asks
//! for the stored version (one small read) and reads it again when
//! another replica learned since, so a move learned on one replica
//! counts for the very next message on every replica (a backend without
//! versions has its cached classifiers read again after
//! [`SHARED_FRESH`]); learning reads, changes and writes the stored one
//! in one step (no replica overwrites another's learning).

use postern_core::spam::bayes::{Class, Classifier, Learned};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The file name beside each Maildir.
pub const FILE_NAME: &str = "postern-spam";
/// Largest classifier read (a full one, 300,000 tokens, is about 6 MB).
pub const MAX_BYTES: u64 = 16 << 20;
/// Classifiers kept in memory at once.
const MAX_CACHED: usize = 256;
/// Bytes of classifiers kept in memory at once. A classifier with the
/// most tokens it keeps holds about 11 MiB, so without this the count
/// alone would allow nearly 3 GiB, far beyond the pod's 256 MiB limit;
/// this keeps five of the largest, or hundreds of young ones. The one
/// being loaded is always kept, whatever its size.
pub const MAX_CACHED_BYTES: usize = 64 << 20;
/// How long a classifier of a shared backend is used before it is read
/// again (another replica may have learned meanwhile).
pub const SHARED_FRESH: Duration = Duration::from_secs(60);

/// Told of problems that are handled (a rebuilt file, a failed write).
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// Where the serialized classifiers are kept. `user` is lowercased.
pub trait SpamBackend: Send + Sync {
    /// The stored bytes of `user`'s classifier; `None` when there is none.
    fn load(&self, user: &str) -> io::Result<Option<Vec<u8>>>;
    /// Read-modify-write: `f` gets the stored bytes and returns the bytes
    /// to store (`None`: nothing changed), atomically against every other
    /// writer of the same user, other processes included. Returns the
    /// stored version after it ([`SpamBackend::stamp`]).
    fn update(
        &self,
        user: &str,
        f: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> io::Result<Option<u64>>;
    /// Stores `bytes` as `user`'s classifier (what the one writer learned).
    fn save(&self, user: &str, bytes: &[u8]) -> io::Result<()> {
        self.update(user, &mut |_| Some(bytes.to_vec())).map(|_| ())
    }
    /// The version of `user`'s stored classifier, which changes with
    /// every write (one small read); `None` when the backend keeps none.
    fn stamp(&self, _user: &str) -> io::Result<Option<u64>> {
        Ok(None)
    }
    /// [`SpamBackend::load`] with the version of what it read.
    fn load_stamped(&self, user: &str) -> io::Result<(Option<Vec<u8>>, Option<u64>)> {
        Ok((self.load(user)?, None))
    }
    /// Where `user`'s classifier lives, for messages.
    fn describe(&self, user: &str) -> String;
    /// Whether other processes write it too (cached copies then age).
    fn shared(&self) -> bool {
        false
    }
}

/// The classifiers as files beside the Maildirs of one root (one process
/// writes them: the store's lock serializes the updates).
#[derive(Debug)]
pub struct FileSpam {
    root: PathBuf,
}

impl FileSpam {
    /// The files under the Maildir tree `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of `user` (`local@domain`), None for a malformed address.
    pub fn path(&self, user: &str) -> Option<PathBuf> {
        let (local, domain) = user.rsplit_once('@')?;
        let (local, domain) = (local.to_lowercase(), domain.to_lowercase());
        let safe = |s: &str| {
            !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
        };
        (safe(&local) && safe(&domain)).then(|| self.root.join(domain).join(local).join(FILE_NAME))
    }

    fn file(&self, user: &str) -> io::Result<PathBuf> {
        self.path(user)
            .ok_or_else(|| io::Error::other(format!("bad account address {user:?}")))
    }
}

impl SpamBackend for FileSpam {
    fn load(&self, user: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.file(user)?;
        // Only a regular file, never followed through a link (a FIFO would
        // block the open, a device would never end), and read through a
        // limit: the size seen first may not be the size read.
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
            Ok(m) if !m.is_file() => return Err(io::Error::other("not a regular file")),
            Ok(_) => {}
        }
        let f = fs::File::open(&path)?;
        if !f.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut bytes = Vec::new();
        io::Read::take(f, MAX_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(io::Error::other("file too large"));
        }
        Ok(Some(bytes))
    }

    fn update(
        &self,
        user: &str,
        f: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> io::Result<Option<u64>> {
        read_modify_write(self, user, f)
    }

    fn save(&self, user: &str, bytes: &[u8]) -> io::Result<()> {
        write_durably(&self.file(user)?, bytes)
    }

    fn describe(&self, user: &str) -> String {
        match self.path(user) {
            Some(p) => p.display().to_string(),
            None => format!("the spam classifier of {user:?}"),
        }
    }
}

/// A cached classifier, when it was read and its stored version.
type Cached = Arc<Mutex<(Classifier, Instant, Option<u64>)>>;

/// A cache entry: the classifier, its size when last seen unheld, and
/// when it was last asked for.
struct Entry {
    classifier: Cached,
    bytes: usize,
    used: Instant,
}

/// The classifiers of every user.
pub struct SpamStore {
    backend: Arc<dyn SpamBackend>,
    files: Option<FileSpam>,
    cache: Mutex<HashMap<String, Entry>>,
    cache_bytes: usize,
    warn: Warn,
}

impl std::fmt::Debug for SpamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpamStore")
            .field("files", &self.files)
            .finish()
    }
}

impl SpamStore {
    /// The classifiers under the Maildir tree `root`; `warn` hears about
    /// rebuilt files and failed writes.
    pub fn new(root: impl Into<PathBuf>, warn: Warn) -> Self {
        let root = root.into();
        let mut s = Self::with_backend(Arc::new(FileSpam::new(root.clone())), warn);
        s.files = Some(FileSpam::new(root));
        s
    }

    /// The classifiers in `backend` (the database's, for one).
    pub fn with_backend(backend: Arc<dyn SpamBackend>, warn: Warn) -> Self {
        Self {
            backend,
            files: None,
            cache: Mutex::new(HashMap::new()),
            cache_bytes: MAX_CACHED_BYTES,
            warn,
        }
    }

    /// The same store keeping at most `bytes` of classifiers in memory
    /// (default [`MAX_CACHED_BYTES`]).
    pub fn with_cache_budget(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Classifiers in memory and about how many bytes they hold.
    pub fn cached(&self) -> (usize, usize) {
        self.cache
            .lock()
            .map_or((0, 0), |c| (c.len(), c.values().map(|e| e.bytes).sum()))
    }

    /// The file of `user` (`local@domain`) with the file backend; None
    /// for a malformed address or another backend.
    pub fn path(&self, user: &str) -> Option<PathBuf> {
        self.files.as_ref()?.path(user)
    }

    /// Parses stored bytes; damaged ones give an empty classifier and a
    /// warning (the next learning replaces them).
    fn parse(&self, user: &str, stored: Option<Vec<u8>>) -> Classifier {
        let r = match stored {
            None => Ok(Classifier::new()),
            Some(b) => Classifier::from_bytes(&b).map_err(|e| e.to_string()),
        };
        match r {
            Ok(c) => c,
            Err(e) => {
                (self.warn)(&format!(
                    "spam classifier {} unreadable ({e}): starting again empty",
                    self.backend.describe(user)
                ));
                Classifier::new()
            }
        }
    }

    /// `user`'s classifier, from the cache or read; `Ok(None)` for a
    /// malformed address. A read that fails (not a damaged file: the
    /// file system or database failing) is an error and nothing is
    /// cached, so no learning is ever written over a classifier that
    /// could not be read.
    fn classifier(&self, user: &str) -> io::Result<Option<Cached>> {
        let key = user.to_lowercase();
        let valid = |k: &str| {
            k.rsplit_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        };
        if !valid(&key) || (self.files.is_some() && self.path(&key).is_none()) {
            return Ok(None);
        }
        let poisoned = || io::Error::other("spam classifier cache lock poisoned");
        if let Some(e) = self.cache.lock().map_err(|_| poisoned())?.get_mut(&key) {
            e.used = Instant::now();
            return Ok(Some(e.classifier.clone()));
        }
        let (stored, stamp) = self.backend.load_stamped(&key)?;
        let parsed = self.parse(&key, stored);
        let bytes = parsed.memory_bytes();
        let c = Arc::new(Mutex::new((parsed, Instant::now(), stamp)));
        let mut cache = self.cache.lock().map_err(|_| poisoned())?;
        if let Some(e) = cache.get(&key) {
            // Another thread loaded it meanwhile.
            return Ok(Some(e.classifier.clone()));
        }
        self.make_room(&mut cache, bytes);
        cache.insert(
            key,
            Entry {
                classifier: c.clone(),
                bytes,
                used: Instant::now(),
            },
        );
        Ok(Some(c))
    }

    /// Drops cached classifiers, those unused longest first, until one
    /// more of `incoming` bytes fits both the count and the byte budget.
    /// A classifier in use (handed out to a scoring or a learning request,
    /// which clone it under the cache's lock, or held by one) is counted
    /// at its size when last seen and kept: a learning request may be
    /// about to change it, and a copy read again meanwhile would miss
    /// what it learned, then be written over it. So the budget can be
    /// passed by as many classifiers as are in use at once, a number the
    /// threads bound.
    fn make_room(&self, cache: &mut HashMap<String, Entry>, incoming: usize) {
        let mut total = incoming;
        let mut ages: Vec<(Instant, String)> = Vec::with_capacity(cache.len());
        for (key, e) in cache.iter_mut() {
            if Arc::strong_count(&e.classifier) == 1 {
                if let Ok(g) = e.classifier.try_lock() {
                    e.bytes = g.0.memory_bytes();
                    ages.push((e.used, key.clone()));
                }
            }
            total = total.saturating_add(e.bytes);
        }
        ages.sort_unstable();
        let mut count = cache.len() + 1;
        for (_, key) in ages {
            if count <= MAX_CACHED && total <= self.cache_bytes {
                break;
            }
            if let Some(e) = cache.remove(&key) {
                total = total.saturating_sub(e.bytes);
                count -= 1;
            }
        }
    }

    /// Runs `f` on `user`'s classifier (an empty one when the user has
    /// none or the address is malformed).
    pub fn with<R>(&self, user: &str, f: impl FnOnce(&Classifier) -> R) -> R {
        let c = match self.classifier(user) {
            Ok(Some(c)) => c,
            Ok(None) => return f(&Classifier::new()),
            Err(e) => {
                (self.warn)(&format!(
                    "cannot read {} ({e}): this message is scored without it",
                    self.backend.describe(user)
                ));
                return f(&Classifier::new());
            }
        };
        let mut g = match c.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if self.backend.shared() {
            self.refresh(user, &mut g);
        }
        f(&g.0)
    }

    /// Runs `f` on `user`'s classifier only when that needs no waiting:
    /// it is in memory, its backend is not shared with other replicas (no
    /// freshness to check), and nobody holds it (a learning request may be
    /// writing it out). None otherwise: then [`Self::with`], off the
    /// executor, does it.
    pub fn try_with<R>(&self, user: &str, f: impl FnOnce(&Classifier) -> R) -> Option<R> {
        if self.backend.shared() {
            return None;
        }
        let c = {
            let mut cache = self.cache.lock().ok()?;
            let e = cache.get_mut(&user.to_lowercase())?;
            e.used = Instant::now();
            e.classifier.clone()
        };
        let g = c.try_lock().ok()?;
        Some(f(&g.0))
    }

    /// Reads a shared backend's classifier again when another replica
    /// changed it since (its version moved; without versions, when the
    /// copy is [`SHARED_FRESH`] old). On a failed read the copy in hand
    /// serves, with a warning.
    fn refresh(&self, user: &str, g: &mut (Classifier, Instant, Option<u64>)) {
        let key = user.to_lowercase();
        let stale = match self.backend.stamp(&key) {
            Ok(Some(now)) => g.2 != Some(now),
            Ok(None) => g.1.elapsed() >= SHARED_FRESH,
            Err(e) => {
                (self.warn)(&format!("cannot read {}: {e}", self.backend.describe(user)));
                false
            }
        };
        if !stale {
            return;
        }
        match self.backend.load_stamped(&key) {
            Ok((stored, stamp)) => *g = (self.parse(&key, stored), Instant::now(), stamp),
            Err(e) => {
                (self.warn)(&format!("cannot read {}: {e}", self.backend.describe(user)));
                g.1 = Instant::now();
            }
        }
    }

    /// Learns a message for `user` and stores the classifier durably when
    /// anything changed (learning on what is stored now: with a shared
    /// backend, what other replicas learned is kept).
    pub fn learn(&self, user: &str, key: u64, tokens: &[u64], class: Class) -> io::Result<Learned> {
        let mut learned = self.learn_all(user, &[(key, tokens)], class)?;
        Ok(learned.pop().unwrap_or(Learned::Unchanged))
    }

    /// Learns several messages (one IMAP MOVE's) as `class` under one lock
    /// and stores the classifier once: a move of hundreds of messages
    /// writes it once, not once per message. One result per message, in
    /// order; nothing is stored when a read or the write fails.
    pub fn learn_all(
        &self,
        user: &str,
        messages: &[(u64, &[u64])],
        class: Class,
    ) -> io::Result<Vec<Learned>> {
        let c = self
            .classifier(user)?
            .ok_or_else(|| io::Error::other(format!("bad account address {user:?}")))?;
        let mut g = c
            .lock()
            .map_err(|_| io::Error::other("spam classifier lock poisoned"))?;
        let account = user.to_lowercase();
        let learn_into = |cl: &mut Classifier| -> Vec<Learned> {
            messages
                .iter()
                .map(|(key, tokens)| cl.learn(*key, tokens, class))
                .collect()
        };
        let changed = |l: &[Learned]| l.iter().any(|x| *x != Learned::Unchanged);
        if !self.backend.shared() {
            // The one writer: learn on a copy, store it when changed, and
            // keep it only once stored (memory never runs ahead of disk).
            let mut cl = g.0.clone();
            let learned = learn_into(&mut cl);
            if changed(&learned) {
                if let Err(e) = self.backend.save(&account, &cl.to_bytes()) {
                    (self.warn)(&format!("cannot save {}: {e}", self.backend.describe(user)));
                    return Err(e);
                }
                g.0 = cl;
            }
            return Ok(learned);
        }
        let mut learned = Vec::new();
        let mut result: Option<Classifier> = None;
        let stamp = self.backend.update(&account, &mut |stored| {
            let mut cl = self.parse(&account, stored);
            learned = learn_into(&mut cl);
            let bytes = changed(&learned).then(|| cl.to_bytes());
            result = Some(cl);
            bytes
        });
        let stamp = match stamp {
            Ok(s) => s,
            Err(e) => {
                (self.warn)(&format!("cannot save {}: {e}", self.backend.describe(user)));
                return Err(e);
            }
        };
        if let Some(cl) = result {
            *g = (cl, Instant::now(), stamp);
        }
        Ok(learned)
    }
}

/// [`SpamBackend::update`] for a backend with one writer: load, change,
/// save. A read error stops it: writing what was learned on an empty
/// classifier would replace everything the user taught.
fn read_modify_write(
    backend: &dyn SpamBackend,
    user: &str,
    f: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
) -> io::Result<Option<u64>> {
    let stored = backend.load(user)?;
    match f(stored) {
        Some(bytes) => backend.save(user, &bytes).map(|()| None),
        None => Ok(None),
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename,
/// then fsyncs the folder.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent folder"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    let r = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn learns_persists_and_rebuilds_a_broken_file() {
        let dir = std::env::temp_dir().join(format!("postern-spamstore-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let warned = Arc::new(AtomicUsize::new(0));
        let w = warned.clone();
        let warn: Warn = Arc::new(move |_| {
            w.fetch_add(1, Ordering::SeqCst);
        });
        let s = SpamStore::new(&dir, warn.clone());
        assert_eq!(s.with("a@x.test", |c| c.counts()), (0, 0));
        assert_eq!(
            s.learn("A@x.test", 7, &[1, 2, 3], Class::Spam).ok(),
            Some(Learned::Added)
        );
        assert_eq!(
            s.learn("a@x.test", 7, &[1, 2, 3], Class::Spam).ok(),
            Some(Learned::Unchanged)
        );
        let path = dir.join("x.test/a").join(FILE_NAME);
        assert!(path.is_file());
        // A second store (a restart) reads it back.
        let s2 = SpamStore::new(&dir, warn.clone());
        assert_eq!(s2.with("a@x.test", |c| c.counts()), (1, 0));
        // A damaged file: empty again, one warning, learning works.
        let mut b = fs::read(&path).unwrap_or_default();
        let n = b.len();
        b[n / 2] ^= 0xff;
        fs::write(&path, &b).ok();
        let s3 = SpamStore::new(&dir, warn);
        assert_eq!(s3.with("a@x.test", |c| c.counts()), (0, 0));
        assert_eq!(warned.load(Ordering::SeqCst), 1);
        assert!(s3.learn("a@x.test", 8, &[4], Class::Ham).is_ok());
        assert!(s3.path("../x@y").is_none() || s3.path("a@..").is_none());
        assert!(s3.path("nobody").is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cache_keeps_to_its_byte_budget_and_never_drops_a_classifier_in_use() {
        let dir = std::env::temp_dir().join(format!("postern-spambudget-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        const BUDGET: usize = 1 << 20;
        let s = SpamStore::new(&dir, Arc::new(|_| {})).with_cache_budget(BUDGET);
        // Each user's classifier holds 4,000 tokens, over 100 KB.
        let tokens = |u: u64| (0..4000u64).map(move |t| u << 32 | t).collect::<Vec<_>>();
        let mut largest = 0;
        for u in 0..30u64 {
            let user = format!("u{u}@x.test");
            assert!(s.learn(&user, u, &tokens(u), Class::Spam).is_ok());
            let bytes = s.with(&user, |c| c.memory_bytes());
            assert!(bytes > 100_000, "{bytes}");
            largest = largest.max(bytes);
            let (n, held) = s.cached();
            assert!(held <= BUDGET, "{n} classifiers, {held} bytes");
            // u0 is asked for after every other: the last to go. Its
            // file is gone, so a copy read again would be empty.
            if u == 0 {
                let file = s.path("u0@x.test").expect("path");
                fs::remove_file(file).expect("remove");
            }
            s.with("u0@x.test", |c| assert_eq!(c.counts(), (1, 0)));
        }
        // Without the budget all 30 would be kept.
        assert!(30 * largest > 2 * BUDGET);
        assert!(s.cached().0 < 30);
        // The one in steady use stayed; one unused was dropped from
        // memory, and is read back whole.
        assert_eq!(s.try_with("u0@x.test", |c| c.counts()), Some((1, 0)));
        assert_eq!(s.try_with("u2@x.test", |c| c.counts()), None);
        assert_eq!(s.with("u2@x.test", |c| c.token_count()), 4000);
        // A classifier in use stays in memory while others come and go.
        s.with("u1@x.test", |_| {
            for u in 2..30u64 {
                s.with(&format!("u{u}@x.test"), |c| assert_eq!(c.counts(), (1, 0)));
            }
        });
        assert_eq!(s.try_with("u1@x.test", |c| c.counts()), Some((1, 0)));
        let _ = fs::remove_dir_all(&dir);
    }

    /// A backend over files that can be made to fail its reads, and that
    /// counts its writes.
    struct Flaky {
        files: FileSpam,
        fail_reads: std::sync::atomic::AtomicBool,
        saves: AtomicUsize,
    }

    impl SpamBackend for Flaky {
        fn load(&self, user: &str) -> io::Result<Option<Vec<u8>>> {
            if self.fail_reads.load(Ordering::SeqCst) {
                return Err(io::Error::from_raw_os_error(24)); // EMFILE
            }
            self.files.load(user)
        }
        fn update(
            &self,
            user: &str,
            f: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
        ) -> io::Result<Option<u64>> {
            read_modify_write(self, user, f)
        }
        fn save(&self, user: &str, bytes: &[u8]) -> io::Result<()> {
            self.saves.fetch_add(1, Ordering::SeqCst);
            self.files.save(user, bytes)
        }
        fn describe(&self, user: &str) -> String {
            self.files.describe(user)
        }
    }

    #[test]
    fn a_failed_read_is_never_written_over_and_a_move_is_stored_once() {
        let dir = std::env::temp_dir().join(format!("postern-spamflaky-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let backend = Arc::new(Flaky {
            files: FileSpam::new(&dir),
            fail_reads: false.into(),
            saves: AtomicUsize::new(0),
        });
        let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
        let w = warnings.clone();
        let warn: Warn = Arc::new(move |m| {
            if let Ok(mut w) = w.lock() {
                w.push(m.to_owned());
            }
        });
        let s = SpamStore::with_backend(backend.clone(), warn.clone());
        // One move of 50 messages: learned together, stored once.
        let tokens: Vec<Vec<u64>> = (0..50u64).map(|m| vec![m, m + 100, 7]).collect();
        let moved: Vec<(u64, &[u64])> = (0..50u64)
            .map(|m| (m, tokens[m as usize].as_slice()))
            .collect();
        let learned = s.learn_all("u@x.test", &moved, Class::Spam).expect("learn");
        assert_eq!(learned.len(), 50);
        assert!(learned.iter().all(|l| *l != Learned::Unchanged));
        assert_eq!(backend.saves.load(Ordering::SeqCst), 1);

        // A restart, and the first read fails (too many open files).
        let s = SpamStore::with_backend(backend.clone(), warn);
        backend.fail_reads.store(true, Ordering::SeqCst);
        assert_eq!(s.with("u@x.test", |c| c.counts()), (0, 0));
        assert!(
            warnings
                .lock()
                .map(|w| w.iter().any(|m| m.contains("cannot read")))
                .unwrap_or(false),
            "{warnings:?}"
        );
        assert!(s.learn("u@x.test", 99, &[1, 2], Class::Ham).is_err());
        assert_eq!(backend.saves.load(Ordering::SeqCst), 1, "nothing written");
        // Once reads work again, everything taught is there.
        backend.fail_reads.store(false, Ordering::SeqCst);
        assert_eq!(s.with("u@x.test", |c| c.counts()), (50, 0));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_classifier_handed_out_is_never_dropped_from_memory() {
        let dir = std::env::temp_dir().join(format!("postern-spamheld-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = SpamStore::new(&dir, Arc::new(|_| {})).with_cache_budget(1);
        // Handed out (as `learn` has it between the cache and its lock),
        // not locked: others coming in over the budget leave it cached.
        let held = s.classifier("a@x.test").expect("read").expect("valid");
        for u in 0..5 {
            assert!(s
                .learn(&format!("b{u}@x.test"), u, &[u], Class::Ham)
                .is_ok());
        }
        let again = s.classifier("a@x.test").expect("read").expect("valid");
        assert!(Arc::ptr_eq(&held, &again));
        drop((held, again));
        // Not handed out any more: the next one in over the budget drops it.
        assert!(s.learn("c@x.test", 1, &[1], Class::Ham).is_ok());
        assert_eq!(s.try_with("a@x.test", |_| ()), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_a_regular_file_is_read_and_never_past_the_limit() {
        let dir = std::env::temp_dir().join(format!("postern-spamfifo-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let files = FileSpam::new(&dir);
        let path = files.path("a@x.test").expect("path");
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        // A FIFO would block an open for reading until a writer came.
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "mkfifo");
        assert!(files.load("a@x.test").is_err());
        fs::remove_file(&path).expect("rm fifo");
        // A link to a device that never ends.
        std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
        assert!(files.load("a@x.test").is_err());
        fs::remove_file(&path).expect("rm link");
        // A file over the limit.
        let f = fs::File::create(&path).expect("create");
        f.set_len(MAX_BYTES + 1).expect("grow");
        assert!(files.load("a@x.test").is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn try_with_never_reads_or_waits() {
        let dir = std::env::temp_dir().join(format!("postern-spamtry-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = SpamStore::new(&dir, Arc::new(|_| {}));
        assert!(s.learn("a@x.test", 1, &[1, 2], Class::Spam).is_ok());
        // A restart: on disk, not yet in memory, so not without reading.
        let s = SpamStore::new(&dir, Arc::new(|_| {}));
        assert_eq!(s.try_with("a@x.test", |c| c.counts()), None);
        assert_eq!(s.with("A@x.test", |c| c.counts()), (1, 0));
        assert_eq!(s.try_with("A@X.test", |c| c.counts()), Some((1, 0)));
        // Held by someone else (here: `with` itself): not without waiting.
        assert_eq!(
            s.with("a@x.test", |_| s.try_with("a@x.test", |c| c.counts())),
            None
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
