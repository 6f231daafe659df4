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
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The file name beside each Maildir.
pub const FILE_NAME: &str = "postern-spam";
/// Largest classifier read (a full classifier is about 2 MiB).
pub const MAX_BYTES: u64 = 16 << 20;
/// Classifiers kept in memory at once.
const MAX_CACHED: usize = 256;
/// Bytes of classifiers kept in memory at once. A classifier with the
/// most tokens it keeps holds about 8 MiB, so without this the count
/// alone would allow 2 GiB, far beyond the pod's 256 MiB limit; this
/// keeps eight of the largest, or hundreds of young ones. The one being
/// loaded is always kept, whatever its size.
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
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Ok(m) if m.len() > MAX_BYTES => Err(io::Error::other("file too large")),
            _ => fs::read(&path).map(Some),
        }
    }

    fn update(
        &self,
        user: &str,
        f: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> io::Result<Option<u64>> {
        let stored = self.load(user).unwrap_or(None);
        match f(stored) {
            Some(bytes) => write_durably(&self.file(user)?, &bytes).map(|()| None),
            None => Ok(None),
        }
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
    /// warning.
    fn parse(&self, user: &str, stored: io::Result<Option<Vec<u8>>>) -> Classifier {
        let r = stored.map_err(|e| e.to_string()).and_then(|b| match b {
            None => Ok(Classifier::new()),
            Some(b) => Classifier::from_bytes(&b).map_err(|e| e.to_string()),
        });
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

    fn classifier(&self, user: &str) -> Option<Cached> {
        let key = user.to_lowercase();
        let valid = |k: &str| {
            k.rsplit_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        };
        if !valid(&key) || (self.files.is_some() && self.path(&key).is_none()) {
            return None;
        }
        if let Some(e) = self.cache.lock().ok()?.get_mut(&key) {
            e.used = Instant::now();
            return Some(e.classifier.clone());
        }
        let (stored, stamp) = match self.backend.load_stamped(&key) {
            Ok((b, s)) => (Ok(b), s),
            Err(e) => (Err(e), None),
        };
        let parsed = self.parse(&key, stored);
        let bytes = parsed.memory_bytes();
        let c = Arc::new(Mutex::new((parsed, Instant::now(), stamp)));
        let mut cache = self.cache.lock().ok()?;
        if let Some(e) = cache.get(&key) {
            // Another thread loaded it meanwhile.
            return Some(e.classifier.clone());
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
        Some(c)
    }

    /// Drops cached classifiers, those unused longest first, until one
    /// more of `incoming` bytes fits both the count and the byte budget.
    /// A classifier in use (held by a scoring or a learning request) is
    /// counted at its size when last seen and kept: a learning request
    /// may be writing it out, and a copy read again meanwhile would miss
    /// what it learned. So the budget can be passed by as many
    /// classifiers as are in use at once, a number the threads bound.
    fn make_room(&self, cache: &mut HashMap<String, Entry>, incoming: usize) {
        let mut total = incoming;
        let mut ages: Vec<(Instant, String)> = Vec::with_capacity(cache.len());
        for (key, e) in cache.iter_mut() {
            if let Ok(g) = e.classifier.try_lock() {
                e.bytes = g.0.memory_bytes();
                ages.push((e.used, key.clone()));
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
        let Some(c) = self.classifier(user) else {
            return f(&Classifier::new());
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
            Ok((stored, stamp)) => *g = (self.parse(&key, Ok(stored)), Instant::now(), stamp),
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
        let c = self
            .classifier(user)
            .ok_or_else(|| io::Error::other(format!("bad account address {user:?}")))?;
        let mut g = c
            .lock()
            .map_err(|_| io::Error::other("spam classifier lock poisoned"))?;
        let account = user.to_lowercase();
        if !self.backend.shared() {
            // The one writer: learn in place, store when changed.
            let learned = g.0.learn(key, tokens, class);
            if learned != Learned::Unchanged {
                if let Err(e) = self.backend.save(&account, &g.0.to_bytes()) {
                    (self.warn)(&format!("cannot save {}: {e}", self.backend.describe(user)));
                    return Err(e);
                }
            }
            return Ok(learned);
        }
        let mut learned = Learned::Unchanged;
        let mut result: Option<Classifier> = None;
        let stamp = self.backend.update(&account, &mut |stored| {
            let mut cl = self.parse(&account, Ok(stored));
            learned = cl.learn(key, tokens, class);
            let bytes = (learned != Learned::Unchanged).then(|| cl.to_bytes());
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
